//! The simulator's UCS 9.1 REST methods, served as Genesys documents them, not as our client
//! happens to call them: the verb, the parameter names and their casing, the mandatory
//! parameters, unknown parameters refused with a UCS fault, the documented fault shape, and the
//! dangerous default of `IdentifyContact` (it creates a contact unless `CreateContact` is the
//! string `"false"`). Every non-conforming request is journaled ([`super::conformance`]).
//!
//! Per method, the page followed (docs.genesys.com, `Documentation/UCS/latest/RESTAPI/...`):
//! - `OMContactsIdentifyContact`: POST; `TenantId` (Integer, mandatory), `CreateContact`,
//!   `ReturnUnique` (strings `"true"`/`"false"`), `DatePattern`, `SubscriberId`, `MediaType`,
//!   and contact attribute names flat in `Parameters`; the answer `NumberOfContactsFound`
//!   (capped by the select limit, at most 1 when `CreateContact` is true), `ContactId`,
//!   `ContactIdList`, `ContactCreated` (a string).
//! - `OMInteractionsGetInteractionsForContact`: GET; `ContactId` (mandatory), `DataSource`
//!   ("Ignored in 9.0"), `SearchCriteria`, `SortCriteria`, `AttributeList`, `TenantId`,
//!   `SubscriberId`. No paging parameter.
//! - `OMInteractionsStopInteraction`: PUT; `InteractionId` and `TenantId` mandatory, `Reason`,
//!   `Delete` (`"true"`/`"false"`), `InteractionType`, `MediaType`; any other key is user data
//!   that UCS saves (documented), so it is not refused.
//! - `Welcome`: GET/DELETE take query parameters, POST/PUT a `{"Parameters":..,"UserData":..}`
//!   body; answers are JSON (so `GetDocument` answers JSON too).
//!
//! `OMContacts/GetAttributes`, `OMContacts/Delete`, `OMInteractions/GetInteractionContent` and
//! `OMInteractions/GetDocument`: their per-method pages were not found in the stored copies
//! (searched by title and by their parameter names). Their parameters are the names Platform
//! SDK's requests use (`ContactId`, `AttributeList`; `InteractionId`, `IncludeAttachments`,
//! `IncludeBinaryContent`, `DataSource`; `DocumentId`), plus `TenantId`/`SubscriberId`, which
//! the documented methods of the same services take: **Assumption**, and unknown names are still
//! refused (a misspelt name is never silently ignored).

// Handlers short-circuit with the error response itself; boxing it would buy nothing here.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt as _;

use super::conformance::{
    Param, UcsFault, check_mandatory, check_query, json_kind, optional, printable, required,
    string_bool,
};
use super::faults::ConnectionKill;
use super::server::{SimState, run_store, serve};
use super::store::StoreError;
use crate::ucs::wire::{self, Operation};
use crate::ucs::{AttachmentId, ContactId, DataSource, InteractionId};

type Shared = State<Arc<SimState>>;
type Conn = ConnectInfo<ConnectionKill>;
type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;
/// A KVList of a POST/PUT body.
type Params = Map<String, Value>;

/// `PUT`: stop an interaction (page `OMInteractionsStopInteraction`). `wire` has the same path.
const STOP_INTERACTION: &str = "/ucs/v1/OMInteractions/StopInteraction";

/// Standard UCS contact attribute names, always known to identification besides those the
/// dataset's contacts carry. **Assumption**: the attribute schema is configuration; these are
/// the names the IdentifyContact page's example and the UCS contact model use.
const STANDARD_ATTRIBUTES: [&str; 5] =
    ["FirstName", "LastName", "Title", "EmailAddress", "PhoneNumber"];

/// The documented parameters of IdentifyContact other than contact attribute names.
const IDENTIFY_PARAMS: [Param; 6] = [
    required("TenantId"),
    optional("CreateContact"),
    optional("ReturnUnique"),
    optional("DatePattern"),
    optional("SubscriberId"),
    optional("MediaType"),
];

const GET_ATTRIBUTES_PARAMS: [Param; 4] = [
    required("ContactId"),
    optional("AttributeList"),
    optional("TenantId"),
    optional("SubscriberId"),
];

const DELETE_CONTACT_PARAMS: [Param; 3] =
    [required("ContactId"), optional("TenantId"), optional("SubscriberId")];

const GET_INTERACTIONS_PARAMS: [Param; 7] = [
    required("ContactId"),
    optional("DataSource"),
    optional("SearchCriteria"),
    optional("SortCriteria"),
    optional("AttributeList"),
    optional("TenantId"),
    optional("SubscriberId"),
];

const GET_CONTENT_PARAMS: [Param; 5] = [
    required("InteractionId"),
    optional("IncludeAttachments"),
    optional("IncludeBinaryContent"),
    optional("DataSource"),
    optional("TenantId"),
];

const GET_DOCUMENT_PARAMS: [Param; 4] = [
    required("DocumentId"),
    optional("IncludeBinaryContent"),
    optional("DataSource"),
    optional("TenantId"),
];

const STOP_PARAMS: [Param; 6] = [
    required("InteractionId"),
    required("TenantId"),
    optional("Reason"),
    optional("Delete"),
    optional("InteractionType"),
    optional("MediaType"),
];

/// The UCS routes, each answering any other verb with a fault (journaled).
pub(crate) fn routes(router: Router<Arc<SimState>>) -> Router<Arc<SimState>> {
    router
        .route(wire::IDENTIFY_CONTACT, strict(post(identify), Operation::IdentifyContact, "POST"))
        .route(wire::GET_ATTRIBUTES, strict(get(attributes), Operation::GetAttributes, "GET"))
        .route(
            wire::DELETE_CONTACT,
            strict(delete(delete_contact), Operation::DeleteContact, "DELETE"),
        )
        .route(
            wire::GET_INTERACTIONS,
            strict(get(interactions), Operation::GetInteractionsForContact, "GET"),
        )
        .route(wire::GET_CONTENT, strict(get(content), Operation::GetInteractionContent, "GET"))
        .route(wire::GET_DOCUMENT, strict(get(document), Operation::GetDocument, "GET"))
        .route(STOP_INTERACTION, strict(put(stop), Operation::StopInteraction, "PUT"))
}

/// `router`, answering every other verb with the wrong-verb fault.
///
/// **Assumption**: what UCS answers to a wrong verb is not documented; HTTP 405 with a fault.
fn strict(
    router: MethodRouter<Arc<SimState>>,
    operation: Operation,
    expected: &'static str,
) -> MethodRouter<Arc<SimState>> {
    router.fallback(move |State(sim): Shared, method: Method| async move {
        let was = printable(method.as_str());
        sim.journal
            .refuse(
                operation.as_str(),
                format!("{was} instead of {expected}"),
                UcsFault::wrong_verb(operation.as_str(), expected, &was),
            )
            .into_response()
    })
}

macro_rules! try_response {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(response) => return IntoResponse::into_response(response),
        }
    };
}

fn json_response(value: &Value) -> Response {
    axum::Json(value).into_response()
}

fn storage(sim: &SimState, error: &StoreError) -> UcsFault {
    tracing::error!(%error, "simulator storage failed");
    UcsFault::server(StatusCode::INTERNAL_SERVER_ERROR, &sim.server, "storage failure")
}

/// The query's pairs, or the fault for a query that does not parse.
fn query_pairs(
    sim: &SimState,
    operation: Operation,
    query: Pairs,
) -> Result<Vec<(String, String)>, UcsFault> {
    match query {
        Ok(Query(pairs)) => Ok(pairs),
        Err(_) => Err(sim.journal.refuse(
            operation.as_str(),
            "query string does not parse",
            UcsFault::incorrect("(query)", "key=value pairs", "unparseable"),
        )),
    }
}

/// A checked `TenantId` query value: an Integer.
fn tenant_query(sim: &SimState, operation: Operation, value: Option<&str>) -> Result<(), UcsFault> {
    match value {
        Some(text) if text.parse::<u32>().is_err() => Err(sim.journal.refuse(
            operation.as_str(),
            "TenantId is not an Integer",
            UcsFault::incorrect("TenantId", "an Integer", "another string"),
        )),
        _ => Ok(()),
    }
}

/// `DataSource`: "Ignored in 9.0" on the GetInteractionsForContact page; `main`/`archive` are
/// the roles UCS 8.5 deployments name (the 8.5 flavour is another helper's work).
fn data_source(
    sim: &SimState,
    operation: Operation,
    value: Option<&str>,
) -> Result<DataSource, UcsFault> {
    match value {
        None => Ok(DataSource::Main),
        Some(name) => wire::data_source_from_name(name).ok_or_else(|| {
            sim.journal.refuse(
                operation.as_str(),
                "DataSource is not main or archive",
                UcsFault::incorrect("DataSource", "main or archive", "another string"),
            )
        }),
    }
}

/// The seed's missing-archive text, as a fault. **Assumption** for the code and status; the
/// text is the seed's log line.
fn no_data_source(sim: &SimState, source: DataSource) -> UcsFault {
    UcsFault::server(
        StatusCode::INTERNAL_SERVER_ERROR,
        &sim.server,
        &format!("{} '{}' found", wire::NO_DATA_SOURCE_MESSAGE, source.as_str()),
    )
}

fn id<T>(
    sim: &SimState,
    operation: Operation,
    name: &str,
    text: &str,
    parse: impl Fn(&str) -> Result<T, crate::ucs::InvalidId>,
) -> Result<T, UcsFault> {
    parse(text).map_err(|_| {
        sim.journal.refuse(
            operation.as_str(),
            format!("{name} is not a 16-character id"),
            UcsFault::incorrect(name, "an id of at most 16 characters", "another string"),
        )
    })
}

/// `AttributeList` as names. **Assumption**: how a KVList travels in a query string is not
/// documented; a comma-separated list of names or a JSON list (or object, by keys) is accepted.
fn attribute_list(value: Option<&str>) -> Option<BTreeSet<String>> {
    let text = value?;
    let names = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => {
            items.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        }
        Ok(Value::Object(map)) => map.into_iter().map(|(k, _)| k).collect(),
        _ => text.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
    };
    Some(names)
}

/// A POST/PUT body: `{"Parameters":{...},"UserData":{...}}`; answers `Parameters` and
/// `UserData` (empty when absent).
fn envelope(
    sim: &SimState,
    operation: Operation,
    body: &[u8],
) -> Result<(Params, Params), UcsFault> {
    let op = operation.as_str();
    let Ok(Value::Object(mut top)) = serde_json::from_slice::<Value>(body) else {
        return Err(sim.journal.refuse(
            op,
            "body is not a JSON object",
            UcsFault::incorrect("Parameters", "a JSON body with Parameters", "not a JSON object"),
        ));
    };
    if let Some(key) = top.keys().find(|k| *k != "Parameters" && *k != "UserData") {
        let key = printable(key);
        return Err(sim.journal.refuse(
            op,
            format!("unknown top-level key {key}"),
            UcsFault::unknown(&key),
        ));
    }
    let user_data = match top.remove("UserData") {
        None => Map::new(),
        Some(Value::Object(user_data)) => user_data,
        Some(other) => {
            let kind = json_kind(&other);
            return Err(sim.journal.refuse(
                op,
                format!("UserData is {kind}, not a KVList"),
                UcsFault::incorrect("UserData", "a KVList", kind),
            ));
        }
    };
    match top.remove("Parameters") {
        Some(Value::Object(parameters)) => Ok((parameters, user_data)),
        Some(other) => {
            let kind = json_kind(&other);
            Err(sim.journal.refuse(
                op,
                format!("Parameters is {kind}, not a KVList"),
                UcsFault::incorrect("Parameters", "a KVList", kind),
            ))
        }
        None => Err(sim.journal.refuse(
            op,
            "missing parameter Parameters",
            UcsFault::missing("Parameters"),
        )),
    }
}

/// Refuses a body key that differs from a documented name only by its casing.
fn casing(sim: &SimState, operation: Operation, key: &str, spec: &[Param]) -> Result<(), UcsFault> {
    match spec.iter().find(|p| p.name != key && p.name.eq_ignore_ascii_case(key)) {
        Some(param) => {
            let key = printable(key);
            Err(sim.journal.refuse(
                operation.as_str(),
                format!("parameter {key} has the wrong casing (documented: {})", param.name),
                UcsFault::unknown(&key),
            ))
        }
        None => Ok(()),
    }
}

/// A body's `TenantId`: an Integer (the IdentifyContact example sends `"TenantId":101`).
fn tenant_body(sim: &SimState, operation: Operation, value: &Value) -> Result<u32, UcsFault> {
    value.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
        let kind = json_kind(value);
        sim.journal.refuse(
            operation.as_str(),
            format!("TenantId is {kind}, not an Integer"),
            UcsFault::incorrect("TenantId", "an Integer", kind),
        )
    })
}

/// A body's documented `"true"`/`"false"` string; a JSON boolean is refused (journaled).
fn bool_body(
    sim: &SimState,
    operation: Operation,
    name: &str,
    value: Option<&Value>,
) -> Result<Option<bool>, UcsFault> {
    match value {
        None => Ok(None),
        Some(Value::String(text)) => {
            string_bool(&sim.journal, operation.as_str(), name, Some(text))
        }
        Some(other) => {
            let kind = json_kind(other);
            Err(sim.journal.refuse(
                operation.as_str(),
                format!("{name} is {kind}, not the string \"true\"/\"false\""),
                UcsFault::incorrect(name, "the string true or false", kind),
            ))
        }
    }
}

/// A body's documented String parameter.
fn string_body<'a>(
    sim: &SimState,
    operation: Operation,
    name: &str,
    value: Option<&'a Value>,
) -> Result<Option<&'a str>, UcsFault> {
    match value {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => {
            let kind = json_kind(other);
            Err(sim.journal.refuse(
                operation.as_str(),
                format!("{name} is {kind}, not a String"),
                UcsFault::incorrect(name, "a String", kind),
            ))
        }
    }
}

async fn identify(State(sim): Shared, ConnectInfo(kill): Conn, body: Bytes) -> Response {
    let op = Operation::IdentifyContact;
    serve(&sim, &kill, op, async {
        let (params, user_data) = try_response!(envelope(&sim, op, &body));
        for key in params.keys() {
            try_response!(casing(&sim, op, key, &IDENTIFY_PARAMS));
        }
        try_response!(check_mandatory(&sim.journal, op.as_str(), &IDENTIFY_PARAMS, |name| {
            params.contains_key(name)
        }));
        let tenant = match params.get("TenantId") {
            Some(value) => try_response!(tenant_body(&sim, op, value)),
            None => return UcsFault::missing("TenantId").into_response(),
        };
        let create =
            try_response!(bool_body(&sim, op, "CreateContact", params.get("CreateContact")));
        let unique = try_response!(bool_body(&sim, op, "ReturnUnique", params.get("ReturnUnique")));
        for name in ["DatePattern", "SubscriberId", "MediaType"] {
            try_response!(string_body(&sim, op, name, params.get(name)));
        }
        let known = try_response!(
            run_store(&sim, |s| s.attribute_names()).await.map_err(|e| storage(&sim, &e))
        );
        let mut criteria = BTreeMap::new();
        for (key, value) in &params {
            if IDENTIFY_PARAMS.iter().any(|p| p.name == key) {
                continue;
            }
            let name = printable(key);
            match value {
                Value::String(text) => {
                    if known.contains(key) || STANDARD_ATTRIBUTES.contains(&key.as_str()) {
                        criteria.insert(key.clone(), text.clone());
                    } else {
                        // The page: only names of defined contact attributes are used; UCS
                        // ignores the others. Journaled, not refused.
                        sim.journal.record(
                            op.as_str(),
                            format!("parameter {name} is not a contact attribute (ignored)"),
                        );
                    }
                }
                other => {
                    let kind = json_kind(other);
                    return sim
                        .journal
                        .refuse(
                            op.as_str(),
                            format!("unknown parameter {name} ({kind})"),
                            UcsFault::unknown(&name),
                        )
                        .into_response();
                }
            }
        }
        // The page: "Each attribute of UserData whose name corresponds to a defined
        // ContactAttribute name is used by UCS for contact identification"; other user data is
        // not a criterion (and not an error).
        for (key, value) in &user_data {
            if let Value::String(text) = value
                && (known.contains(key) || STANDARD_ATTRIBUTES.contains(&key.as_str()))
            {
                criteria.entry(key.clone()).or_insert_with(|| text.clone());
            }
        }
        // The documented default: absent, CreateContact is the media's strategy, else true.
        let creates = create.unwrap_or(true);
        if create.is_none() {
            sim.journal
                .record_dangerous(op.as_str(), "CreateContact missing (UCS defaults to true)");
        }
        let lookup = criteria.clone();
        let mut ids = try_response!(
            run_store(&sim, move |s| s.identify(tenant, &lookup))
                .await
                .map_err(|e| storage(&sim, &e))
        );
        let mut created = false;
        if ids.is_empty() && creates {
            let id = try_response!(
                run_store(&sim, move |s| s.create_contact(tenant, &criteria))
                    .await
                    .map_err(|e| storage(&sim, &e))
            );
            sim.journal.contact_created();
            sim.journal.record_dangerous(
                op.as_str(),
                if create.is_none() {
                    "CreateContact missing: contact created"
                } else {
                    "CreateContact \"true\": contact created"
                },
            );
            tracing::warn!(contact = %id, "IdentifyContact created a contact");
            ids.push(id);
            created = true;
        }
        // "Cannot be superior to 1 if CreateContact is true. Cannot be higher than the
        // configured schema/select-limit."
        let limit = if creates { 1 } else { sim.select_limit.max(1) };
        ids.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut answer = Map::new();
        answer.insert("NumberOfContactsFound".into(), json!(ids.len()));
        // ReturnUnique: "If more than 1 contact is found, UCS won't return a sublist".
        let list = !(unique == Some(true) && ids.len() > 1);
        if list {
            if let Some(first) = ids.first() {
                answer.insert("ContactId".into(), json!(first));
            }
            if !ids.is_empty() {
                // **Assumption**: the repeated ContactIdList key of ESP is a JSON list here.
                answer.insert("ContactIdList".into(), json!(ids));
            }
        }
        answer.insert("ContactCreated".into(), json!(if created { "true" } else { "false" }));
        json_response(&Value::Object(answer))
    })
    .await
}

async fn attributes(State(sim): Shared, ConnectInfo(kill): Conn, query: Pairs) -> Response {
    let op = Operation::GetAttributes;
    serve(&sim, &kill, op, async {
        let pairs = try_response!(query_pairs(&sim, op, query));
        let q =
            try_response!(check_query(&sim.journal, op.as_str(), &pairs, &GET_ATTRIBUTES_PARAMS));
        try_response!(tenant_query(&sim, op, q.get("TenantId").copied()));
        let text = q.get("ContactId").copied().unwrap_or_default();
        let contact = try_response!(id(&sim, op, "ContactId", text, ContactId::new));
        let wanted = attribute_list(q.get("AttributeList").copied());
        let key = contact.clone();
        let found = try_response!(
            run_store(&sim, move |s| s.contact(key.as_str())).await.map_err(|e| storage(&sim, &e))
        );
        let Some(mut found) = found else {
            return UcsFault::not_found("Contact", contact.as_str()).into_response();
        };
        if let Some(wanted) = wanted {
            found.attributes.retain(|name, _| wanted.contains(name));
        }
        // **Assumption**: the answer's shape (ContactId, TenantId, Attributes: name -> values).
        axum::Json(&found).into_response()
    })
    .await
}

async fn delete_contact(State(sim): Shared, ConnectInfo(kill): Conn, query: Pairs) -> Response {
    let op = Operation::DeleteContact;
    serve(&sim, &kill, op, async {
        let pairs = try_response!(query_pairs(&sim, op, query));
        let q =
            try_response!(check_query(&sim.journal, op.as_str(), &pairs, &DELETE_CONTACT_PARAMS));
        try_response!(tenant_query(&sim, op, q.get("TenantId").copied()));
        let text = q.get("ContactId").copied().unwrap_or_default();
        let contact = try_response!(id(&sim, op, "ContactId", text, ContactId::new));
        let key = contact.clone();
        let half = super::server::halfway();
        let deleted = try_response!(
            run_store(&sim, move |s| if half {
                s.delete_contact_halfway(key.as_str())
            } else {
                s.delete_contact(key.as_str())
            })
            .await
            .map_err(|e| storage(&sim, &e))
        );
        if deleted {
            tracing::info!(contact = %contact, "simulator deleted a contact");
            // **Assumption**: the answer carries nothing documented; the id is echoed.
            json_response(&json!({ "ContactId": contact.as_str() }))
        } else {
            UcsFault::not_found("Contact", contact.as_str()).into_response()
        }
    })
    .await
}

async fn interactions(State(sim): Shared, ConnectInfo(kill): Conn, query: Pairs) -> Response {
    let op = Operation::GetInteractionsForContact;
    serve(&sim, &kill, op, async {
        let pairs = try_response!(query_pairs(&sim, op, query));
        let q =
            try_response!(check_query(&sim.journal, op.as_str(), &pairs, &GET_INTERACTIONS_PARAMS));
        try_response!(tenant_query(&sim, op, q.get("TenantId").copied()));
        let text = q.get("ContactId").copied().unwrap_or_default();
        let contact = try_response!(id(&sim, op, "ContactId", text, ContactId::new));
        let source = try_response!(data_source(&sim, op, q.get("DataSource").copied()));
        // SearchCriteria and SortCriteria are accepted and not applied: how their KVLists
        // travel in a query string is not documented (lenient where the pages are silent).
        let wanted = attribute_list(q.get("AttributeList").copied());
        if !sim.store.has_source(source) {
            return no_data_source(&sim, source).into_response();
        }
        // "The Tenant of the Contact and its Interactions; Contact Tenant if not specified":
        // a contact of another tenant is not found.
        let tenant = q.get("TenantId").and_then(|t| t.parse::<u32>().ok());
        let key = contact.clone();
        let found = try_response!(
            run_store(&sim, move |s| {
                match s.contact(key.as_str())? {
                    Some(found) if tenant.is_none_or(|t| Some(t) == found.tenant_id) => {}
                    _ => return Ok(None),
                }
                s.interactions(source, key.as_str(), 0, u32::MAX).map(|(list, _)| Some(list))
            })
            .await
            .map_err(|e| storage(&sim, &e))
        );
        let Some(found) = found else {
            return UcsFault::not_found("Contact", contact.as_str()).into_response();
        };
        // **Assumption**: the answer's shape: `Interactions`, a list of the interactions'
        // attributes (all of them, or `Id` and those `AttributeList` names). The whole list in
        // one answer: the page has no paging parameter.
        let list: Vec<Value> = found
            .iter()
            .map(|interaction| {
                let mut value = serde_json::to_value(interaction).unwrap_or(Value::Null);
                if let (Some(wanted), Value::Object(map)) = (&wanted, &mut value) {
                    map.retain(|name, _| name == "Id" || wanted.contains(name));
                }
                value
            })
            .collect();
        json_response(&json!({ "Interactions": list }))
    })
    .await
}

async fn content(State(sim): Shared, ConnectInfo(kill): Conn, query: Pairs) -> Response {
    let op = Operation::GetInteractionContent;
    serve(&sim, &kill, op, async {
        let pairs = try_response!(query_pairs(&sim, op, query));
        let q = try_response!(check_query(&sim.journal, op.as_str(), &pairs, &GET_CONTENT_PARAMS));
        try_response!(tenant_query(&sim, op, q.get("TenantId").copied()));
        let text = q.get("InteractionId").copied().unwrap_or_default();
        let interaction = try_response!(id(&sim, op, "InteractionId", text, InteractionId::new));
        let attachments = try_response!(string_bool(
            &sim.journal,
            op.as_str(),
            "IncludeAttachments",
            q.get("IncludeAttachments").copied()
        ));
        try_response!(string_bool(
            &sim.journal,
            op.as_str(),
            "IncludeBinaryContent",
            q.get("IncludeBinaryContent").copied()
        ));
        let source = try_response!(data_source(&sim, op, q.get("DataSource").copied()));
        if !sim.store.has_source(source) {
            return no_data_source(&sim, source).into_response();
        }
        let key = interaction.clone();
        let found = try_response!(
            run_store(&sim, move |s| s.content(source, key.as_str()))
                .await
                .map_err(|e| storage(&sim, &e))
        );
        let Some(found) = found else {
            return UcsFault::not_found("Interaction", interaction.as_str()).into_response();
        };
        let mut value = serde_json::to_value(&found).unwrap_or(Value::Null);
        // **Assumption**: attachments are listed only when asked for (PSDK's flag's name says
        // so; its default is not documented).
        if attachments != Some(true)
            && let Value::Object(map) = &mut value
        {
            map.remove("Attachments");
        }
        json_response(&value)
    })
    .await
}

async fn document(
    State(sim): Shared,
    ConnectInfo(kill): Conn,
    headers: HeaderMap,
    query: Pairs,
) -> Response {
    let op = Operation::GetDocument;
    serve(&sim, &kill, op, async {
        let pairs = try_response!(query_pairs(&sim, op, query));
        let q = try_response!(check_query(&sim.journal, op.as_str(), &pairs, &GET_DOCUMENT_PARAMS));
        try_response!(tenant_query(&sim, op, q.get("TenantId").copied()));
        // The Welcome page: answers are JSON. A caller that only accepts raw bytes expects
        // what UCS does not send.
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*");
        if !accept.contains("json") && !accept.contains("*/*") {
            sim.journal.record(
                op.as_str(),
                "expects raw bytes (Accept without JSON): UCS answers JSON, content base64",
            );
        }
        let text = q.get("DocumentId").copied().unwrap_or_default();
        let document = try_response!(id(&sim, op, "DocumentId", text, AttachmentId::new));
        let binary = try_response!(string_bool(
            &sim.journal,
            op.as_str(),
            "IncludeBinaryContent",
            q.get("IncludeBinaryContent").copied()
        ));
        let source = try_response!(data_source(&sim, op, q.get("DataSource").copied()));
        if !sim.store.has_source(source) {
            return no_data_source(&sim, source).into_response();
        }
        let key = document.clone();
        let found = try_response!(
            run_store(&sim, move |s| s.document(source, key.as_str()))
                .await
                .map_err(|e| storage(&sim, &e))
        );
        let Some(found) = found else {
            return UcsFault::not_found("Document", document.as_str()).into_response();
        };
        // **Assumption**: the answer's keys are PSDK's attachment names, the bytes base64 in
        // `Content`, present only with `IncludeBinaryContent=true`.
        let meta = json!({
            "DocumentId": document.as_str(),
            "TheName": found.name,
            "MimeType": found.mime_type,
            "TheSize": found.size,
        });
        if binary != Some(true) {
            return json_response(&meta);
        }
        let file = match tokio::fs::File::open(&found.path).await {
            Ok(file) => file,
            Err(e) => {
                let e = StoreError::Io { path: found.path, source: e };
                return storage(&sim, &e).into_response();
            }
        };
        let mut head = serde_json::to_string(&meta).unwrap_or_else(|_| "{".to_owned());
        head.pop(); // the closing brace: the content follows
        head.push_str(",\"Content\":\"");
        let encoded = found.size.div_ceil(3).saturating_mul(4);
        let length = u64::try_from(head.len()).unwrap_or(u64::MAX) + encoded + 2;
        (
            [
                (header::CONTENT_TYPE, wire::JSON.to_owned()),
                (header::CONTENT_LENGTH, length.to_string()),
            ],
            Body::from_stream(base64_json(head, file)),
        )
            .into_response()
    })
    .await
}

/// Where a streamed base64 document is.
enum Phase {
    Head(String),
    Body,
    Tail,
    Done,
}

/// Bytes read and base64-encoded per chunk: a multiple of 3, so only the last chunk pads.
const CHUNK: usize = 48 * 1024;

/// `head`, the file base64-encoded chunk by chunk, then `"}`: memory stays bounded however large
/// the document.
fn base64_json(
    head: String,
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold((file, Phase::Head(head)), |(mut file, phase)| async move {
        match phase {
            Phase::Head(head) => Some((Ok(Bytes::from(head)), (file, Phase::Body))),
            Phase::Body => {
                let mut buffer = vec![0u8; CHUNK];
                let mut filled = 0;
                while filled < CHUNK {
                    let Some(rest) = buffer.get_mut(filled..) else { break };
                    match file.read(rest).await {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => return Some((Err(e), (file, Phase::Done))),
                    }
                }
                buffer.truncate(filled);
                let next = if filled < CHUNK { Phase::Tail } else { Phase::Body };
                let encoded = base64::engine::general_purpose::STANDARD.encode(&buffer);
                Some((Ok(Bytes::from(encoded)), (file, next)))
            }
            Phase::Tail => Some((Ok(Bytes::from_static(b"\"}")), (file, Phase::Done))),
            Phase::Done => None,
        }
    })
}

async fn stop(State(sim): Shared, ConnectInfo(kill): Conn, body: Bytes) -> Response {
    let op = Operation::StopInteraction;
    serve(&sim, &kill, op, async {
        let (params, _user_data) = try_response!(envelope(&sim, op, &body));
        for key in params.keys() {
            // Other keys are user data UCS saves (documented), but a documented name in the
            // wrong casing would be saved as user data instead of acting: refused.
            try_response!(casing(&sim, op, key, &STOP_PARAMS));
        }
        try_response!(check_mandatory(&sim.journal, op.as_str(), &STOP_PARAMS, |name| {
            params.contains_key(name)
        }));
        if let Some(value) = params.get("TenantId") {
            try_response!(tenant_body(&sim, op, value));
        }
        let text =
            try_response!(string_body(&sim, op, "InteractionId", params.get("InteractionId")))
                .unwrap_or_default();
        let interaction = try_response!(id(&sim, op, "InteractionId", text, InteractionId::new));
        let reason = try_response!(string_body(&sim, op, "Reason", params.get("Reason")))
            .unwrap_or_default()
            .to_owned();
        let remove = try_response!(bool_body(&sim, op, "Delete", params.get("Delete")));
        for name in ["InteractionType", "MediaType"] {
            try_response!(string_body(&sim, op, name, params.get(name)));
        }
        let key = interaction.clone();
        let stopped = try_response!(
            run_store(&sim, move |s| {
                let stopped = s.stop(key.as_str(), &reason)?;
                // "If true and if the Interaction has no child, it will be deleted."
                if stopped && remove == Some(true) {
                    s.delete_interaction(key.as_str())?;
                }
                Ok(stopped)
            })
            .await
            .map_err(|e| storage(&sim, &e))
        );
        if stopped {
            json_response(&json!({}))
        } else {
            UcsFault::not_found("Interaction", interaction.as_str()).into_response()
        }
    })
    .await
}
