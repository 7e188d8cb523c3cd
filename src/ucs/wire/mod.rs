//! THE wire mapping: every URL path, verb, JSON field name and fault meaning the connector
//! relies on, in one place. The REST transport ([`RestClient`](super::RestClient)) speaks it;
//! the simulator serves it.
//!
//! Every UCS item names the page of the *Universal Contact Server 9.1 API Reference Guide* it
//! follows (`docs.genesys.com/Documentation/UCS/9.1.x/RESTAPI/...`, also published under
//! `.../UCS/latest/RESTAPI/...` and as the "UCS 9.1.x RESTAPI book"). Where no public page
//! says, the item is marked **Assumption**, names the evidence used, and the client is
//! tolerant there (optional fields, several shapes accepted).
//!
//! General rules, from `.../RESTAPI/Welcome`:
//! - POST and PUT: `<base>/ucs/v1/<service>/<method>` with a JSON body
//!   `{"Parameters":{...},"UserData":{...}}`; GET and DELETE: the same path with
//!   `?key1=value1&key2=value2`. `<base>` is UCS's `http/base-url` option, part of the
//!   configured URL.
//! - POST creates, PUT updates, GET reads, DELETE deletes.
//! - Responses are JSON key/value documents (so `GetDocument` content comes in JSON too).
//!
//! Faults, from `.../RESTAPI/NewBehaviors` and the per-method fault tables (e.g.
//! `.../RESTAPI/OMContactsIdentifyContact`: `201 Missing parameter 'SubscriberId'`): a fault
//! carries `FaultCode` (a number) and `FaultString` (text that may quote the request, so it
//! may hold personal data). The client keeps the code and never copies the text, except to
//! recognise a few fixed texts (see [`classify_fault`]).
//!
//! Tenancy: the OM methods take `TenantId` as a parameter (mandatory on `StopInteraction`,
//! `IdentifyContact`; "the contact's tenant if not specified" on
//! `GetInteractionsForContact`). The `X-Genesys-TenantId` header belongs to the 9.1 profile
//! (Context Services) methods (`.../RESTAPI/identifyProfiles`), not to the OM methods.
//!
//! Context Services (profiles, services, states, tasks) are in [`context_services`], GMS
//! callbacks in [`gms`], each item naming its page.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};

use super::{DataSource, InteractionStatus};

pub mod context_services;
pub mod document;
pub mod gms;

/// Every call the connector makes; also the names `/sim/stats` counts them under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// `POST <ucs>/ucs/v1/OMContacts/IdentifyContact`
    IdentifyContact,
    /// `GET <ucs>/ucs/v1/OMContacts/GetAttributes?ContactId=&AttributeList=`
    GetAttributes,
    /// `DELETE <ucs>/ucs/v1/OMContacts/Delete?ContactId=`
    DeleteContact,
    /// `GET <ucs>/ucs/v1/OMInteractions/GetInteractionsForContact?ContactId=&AttributeList=&DataSource=`
    GetInteractionsForContact,
    /// `GET <ucs>/ucs/v1/OMInteractions/GetInteractionContent?InteractionId=&IncludeAttachments=&IncludeBinaryContent=&DataSource=`
    GetInteractionContent,
    /// `GET <ucs>/ucs/v1/OMInteractions/GetDocument?DocumentId=&IncludeBinaryContent=&DataSource=`
    GetDocument,
    /// `PUT <ucs>/ucs/v1/OMInteractions/StopInteraction`
    StopInteraction,
    /// `GET <context-services>/profiles/{id}` (see [`context_services`])
    GetProfile,
    /// `DELETE <context-services>/profiles/{id}`
    DeleteProfile,
    /// `GET <gms>/genesys/1/cs/customers/{id}/services`
    ListServices,
    /// `GET <gms>/genesys/1/cs/services/anonymous/{contact_key}`
    ListAnonymousServices,
    /// `GET <gms>/genesys/1/cs/services/{id}/states`
    GetServiceStates,
    /// `GET <gms>/genesys/1/cs/services/{id}/tasks`
    GetServiceTasks,
    /// `DELETE <gms>/genesys/1/cs/services/{id}`
    DeleteService,
    /// `GET <gms>/genesys/1/service/callback?_customer_number=` (see [`gms`])
    ListCallbacks,
    /// `DELETE <gms>/genesys/1/service/callback/{service}/{id}`
    CancelCallback,
}

/// Which server an operation is sent to (and authenticated against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// UCS's REST API.
    Ucs,
    /// Context Services' profile API.
    ContextServices,
    /// GMS: callbacks, and the Context Services services API it serves.
    Gms,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 16] = [
        Operation::IdentifyContact,
        Operation::GetAttributes,
        Operation::DeleteContact,
        Operation::GetInteractionsForContact,
        Operation::GetInteractionContent,
        Operation::GetDocument,
        Operation::StopInteraction,
        Operation::GetProfile,
        Operation::DeleteProfile,
        Operation::ListServices,
        Operation::ListAnonymousServices,
        Operation::GetServiceStates,
        Operation::GetServiceTasks,
        Operation::DeleteService,
        Operation::ListCallbacks,
        Operation::CancelCallback,
    ];

    /// The operation's name (as in `/sim/stats` and in errors).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::IdentifyContact => "IdentifyContact",
            Operation::GetAttributes => "GetAttributes",
            Operation::DeleteContact => "DeleteContact",
            Operation::GetInteractionsForContact => "GetInteractionsForContact",
            Operation::GetInteractionContent => "GetInteractionContent",
            Operation::GetDocument => "GetDocument",
            Operation::StopInteraction => "StopInteraction",
            Operation::GetProfile => "GetProfile",
            Operation::DeleteProfile => "DeleteProfile",
            Operation::ListServices => "ListServices",
            Operation::ListAnonymousServices => "ListAnonymousServices",
            Operation::GetServiceStates => "GetServiceStates",
            Operation::GetServiceTasks => "GetServiceTasks",
            Operation::DeleteService => "DeleteService",
            Operation::ListCallbacks => "ListCallbacks",
            Operation::CancelCallback => "CancelCallback",
        }
    }

    /// The server the operation goes to.
    pub fn backend(self) -> Backend {
        match self {
            Operation::GetProfile | Operation::DeleteProfile => Backend::ContextServices,
            Operation::ListServices
            | Operation::ListAnonymousServices
            | Operation::GetServiceStates
            | Operation::GetServiceTasks
            | Operation::DeleteService
            | Operation::ListCallbacks
            | Operation::CancelCallback => Backend::Gms,
            _ => Backend::Ucs,
        }
    }

    /// The operation named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// Whether repeating the call cannot change the outcome, so it may be retried blindly.
    /// A contact delete is the one exception: it is confirmed instead (see the connector).
    pub fn is_idempotent(self) -> bool {
        self != Operation::DeleteContact
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Paths of the UCS REST API are appended to the configured base URL (which holds any
// `<base>` prefix); they all start with `/ucs/v1` (`.../RESTAPI/Welcome`, "URI Form").

/// `POST`: identify contacts by attributes (`.../RESTAPI/OMContactsIdentifyContact`).
pub const IDENTIFY_CONTACT: &str = "/ucs/v1/OMContacts/IdentifyContact";
/// `GET`: a contact's attributes, `ContactId` in the query (the guide's table of contents:
/// OMContacts/GetAttributes, book p. 105).
///
/// **Assumption**: the method's own page was not readable in any stored copy. The verb is the
/// general rule's (GET reads); `ContactId` as PSDK's `RequestGetAttributes` names it; no
/// `AttributeList` is sent, meant as "all attributes" (PSDK sends the list of the wanted ones;
/// a server that answers none without it fails the plan visibly: no attribute, no match).
pub const GET_ATTRIBUTES: &str = "/ucs/v1/OMContacts/GetAttributes";
/// `DELETE`: a contact and all its interactions, `ContactId` in the query (table of contents:
/// OMContacts/Delete, book p. 104).
///
/// **Assumption**: the method's own page was not readable. The verb is the general rule's
/// (DELETE deletes); `ContactId` as PSDK's `RequestDeleteContact` names it; the answer's body
/// is not read beyond a fault; a not-found fault is "already absent".
pub const DELETE_CONTACT: &str = "/ucs/v1/OMContacts/Delete";
/// `GET`: a contact's interactions (`.../RESTAPI/OMInteractionsGetInteractionsForContact`).
pub const GET_INTERACTIONS: &str = "/ucs/v1/OMInteractions/GetInteractionsForContact";
/// `GET`: an interaction's content (`.../RESTAPI/OMInteractionsGetInteractionContent`).
pub const GET_CONTENT: &str = "/ucs/v1/OMInteractions/GetInteractionContent";
/// `GET`: a document (attachment) with its content (`.../RESTAPI/OMInteractionsGetDocument`).
pub const GET_DOCUMENT: &str = "/ucs/v1/OMInteractions/GetDocument";
/// `PUT`: stop an interaction (`.../RESTAPI/OMInteractionsStopInteraction`).
pub const STOP_INTERACTION: &str = "/ucs/v1/OMInteractions/StopInteraction";

/// Parameter: contact id (GetAttributes, Delete, GetInteractionsForContact).
pub const Q_CONTACT_ID: &str = "ContactId";
/// Parameter: interaction id (GetInteractionContent, StopInteraction).
pub const Q_INTERACTION_ID: &str = "InteractionId";
/// Parameter: document id (GetDocument).
pub const Q_DOCUMENT_ID: &str = "DocumentId";
/// Parameter: the data source role, `main` or `archive`. `.../OMInteractionsGetInteractionsForContact`
/// documents it as "Ignored in 9.0"; UCS 8.5 honours it.
pub const Q_DATA_SOURCE: &str = "DataSource";
/// Parameter: the attributes to deliver (GetInteractionsForContact, GetAttributes).
///
/// **Assumption**: the page types it `KVList`; in a GET query the list is sent as the
/// attribute names joined by commas (nothing public shows a KVList in a query string).
pub const Q_ATTRIBUTE_LIST: &str = "AttributeList";
/// Parameter of GetInteractionContent: deliver the attachments' metadata.
pub const Q_INCLUDE_ATTACHMENTS: &str = "IncludeAttachments";
/// Parameter of GetInteractionContent and GetDocument: deliver binary content.
pub const Q_INCLUDE_BINARY_CONTENT: &str = "IncludeBinaryContent";
/// The tenant parameter.
pub const P_TENANT_ID: &str = "TenantId";
/// IdentifyContact: whether to create a contact when none matches. A STRING, `"true"` or
/// `"false"`, whose documented default is the media's configuration, otherwise `"true"`:
/// the client always sends [`FALSE`].
pub const P_CREATE_CONTACT: &str = "CreateContact";
/// IdentifyContact: when `"true"` and several contacts match, UCS returns no list. The client
/// sends [`FALSE`]: it wants every match.
pub const P_RETURN_UNIQUE: &str = "ReturnUnique";
/// IdentifyContact: the date pattern parameter (never an attribute name).
pub const P_DATE_PATTERN: &str = "DatePattern";
/// The documented string form of false.
pub const FALSE: &str = "false";
/// The documented string form of true.
pub const TRUE: &str = "true";

/// Names that are IdentifyContact parameters, never contact attributes: a request that tries
/// to set one as an attribute is refused before it is sent (it could turn `CreateContact` on).
pub const IDENTIFY_RESERVED: [&str; 4] =
    [P_TENANT_ID, P_CREATE_CONTACT, P_RETURN_UNIQUE, P_DATE_PATTERN];

/// The interaction attributes the connector asks `GetInteractionsForContact` to deliver.
///
/// `Id`, `MediaTypeId`, `TypeId`, `Status`, `StartDate`, `EndDate` are Interaction-table
/// attributes (the page says the method "returns only attributes from the Interaction table").
/// **Assumption**: `ModifiedDate` is the table's modification stamp (used for the plan's
/// fingerprint). **Assumption**: `Workbin` and `AttachmentCount` are asked for by name, so a
/// server that has them delivers them (the simulator does); they are not documented
/// Interaction-table attributes, and a UCS without them answers without them: the workbin is
/// then unknown (an interaction parked in an Interaction Server workbin is still not
/// `Stopped`, so its status alone blocks the deletion) and the attachment count is read from
/// the content at export.
pub const INTERACTION_ATTRIBUTES: [&str; 9] = [
    "Id",
    "MediaTypeId",
    "TypeId",
    "Status",
    "StartDate",
    "EndDate",
    "ModifiedDate",
    "Workbin",
    "AttachmentCount",
];

/// The data source role's name on the wire.
pub fn data_source_name(source: DataSource) -> &'static str {
    source.as_str()
}

/// The data source named `name` on the wire.
pub fn data_source_from_name(name: &str) -> Option<DataSource> {
    match name {
        "main" => Some(DataSource::Main),
        "archive" => Some(DataSource::Archive),
        _ => None,
    }
}

/// The request body of POST and PUT calls: `{"Parameters":{...},"UserData":{...}}`
/// (`.../RESTAPI/Welcome`, "Syntax for POST and PUT").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<P> {
    /// The operation's parameters.
    #[serde(rename = "Parameters")]
    pub parameters: P,
    /// Free-form user data; the connector sends `{}`.
    #[serde(rename = "UserData", default)]
    pub user_data: serde_json::Map<String, serde_json::Value>,
}

/// An attribute name that is an IdentifyContact parameter (see [`IDENTIFY_RESERVED`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedName;

/// The `Parameters` of `IdentifyContact`, flat as `.../RESTAPI/OMContactsIdentifyContact`
/// documents them: `TenantId` (Integer, mandatory), each contact attribute under its own name
/// (`EmailAddress`, `FirstName`, ...: "each attribute ... whose name corresponds to a defined
/// ContactAttribute name is used for contact identification"), `CreateContact: "false"` (a
/// string; the default would be the media's strategy, otherwise true: identifying a data
/// subject could create a contact) and `ReturnUnique: "false"` (the documented default, sent
/// so that several matches always come back as a list).
pub fn identify_parameters(
    tenant: u32,
    attributes: &BTreeMap<String, String>,
) -> Result<serde_json::Map<String, serde_json::Value>, ReservedName> {
    let mut parameters = serde_json::Map::new();
    for (name, value) in attributes {
        if IDENTIFY_RESERVED.iter().any(|reserved| reserved.eq_ignore_ascii_case(name)) {
            return Err(ReservedName);
        }
        parameters.insert(name.clone(), serde_json::Value::String(value.clone()));
    }
    parameters.insert(P_TENANT_ID.to_owned(), serde_json::Value::from(tenant));
    parameters.insert(P_CREATE_CONTACT.to_owned(), FALSE.into());
    parameters.insert(P_RETURN_UNIQUE.to_owned(), FALSE.into());
    Ok(parameters)
}

/// The `IdentifyContact` answer (`.../RESTAPI/OMContactsIdentifyContact`, "Response"):
/// `NumberOfContactsFound` (Integer, mandatory; "cannot be higher than the configured
/// schema/select-limit"), `ContactId` (when a contact was found), `ContactIdList` (the ids,
/// "contains (NumberOfContactsFound) Ids"), `ContactCreated` ("true" if the call created one).
/// Contact.Identify answers are one JSON document (`.../RESTAPI/Welcome`).
///
/// Tolerant: numbers and booleans are accepted as JSON numbers/booleans or as strings, the
/// list as an array or as one (comma-separated) string.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IdentifyResult {
    /// How many contacts matched (capped by the select limit).
    #[serde(rename = "NumberOfContactsFound", default, deserialize_with = "lenient_u64")]
    pub number_found: Option<u64>,
    /// The matching contact, when there is one.
    #[serde(rename = "ContactId", default)]
    pub contact_id: Option<String>,
    /// The matching contacts.
    #[serde(rename = "ContactIdList", default, deserialize_with = "string_list")]
    pub contact_id_list: Vec<String>,
    /// Whether this call created a contact (it must never be true).
    #[serde(rename = "ContactCreated", default, deserialize_with = "lenient_bool")]
    pub contact_created: Option<bool>,
}

/// The `GetAttributes` answer.
///
/// **Assumption**: the per-method page (`.../RESTAPI/OMContactsGetAttributes`, book p. 105)
/// was not readable; PSDK's `RequestGetAttributes` takes `ContactId` + `AttributeList` and
/// `EventGetAttributes` answers the attributes with several values each. Accepted shapes:
/// `Attributes` as an object (name -> value, or name -> list of values, or name -> list of
/// `{"AttrValue": ...}`), or as a list of `{"AttrName": ..., "AttrValue": ...}` /
/// `{"AttrName": ..., "AttributesInfoList"|"Values": [...]}`. `TenantId` may be absent (the
/// configured tenant is used then).
#[derive(Clone, Serialize, Deserialize)]
#[allow(missing_debug_implementations)] // holds personal data: no Debug at all
pub struct AttributesResult {
    /// The contact id.
    #[serde(rename = "ContactId", alias = "Id")]
    pub contact_id: String,
    /// Its tenant.
    #[serde(rename = "TenantId", default, deserialize_with = "lenient_u32")]
    pub tenant_id: Option<u32>,
    /// Attribute name -> values.
    #[serde(
        rename = "Attributes",
        alias = "AttributeList",
        default,
        deserialize_with = "attribute_map"
    )]
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// The `GetInteractionsForContact` answer.
///
/// The request follows `.../RESTAPI/OMInteractionsGetInteractionsForContact`: `ContactId`,
/// `DataSource` ("Ignored in 9.0"), `AttributeList`, and NO paging (the method has none: it
/// delivers "all of or some (depending on the filtering)" of a contact's interactions, as an
/// interaction history). Chosen over `InteractionListGet`/`NextPage`/`Release` (scroll
/// cursors that must be released, and whose 9.1 behaviour changed per `.../NewBehaviors`):
/// one contact's history is bounded, and a call without server-side state cannot leak a
/// cursor when the client fails half-way.
///
/// **Assumption** (the answer example was not readable): the interactions come as a list,
/// either the whole answer or under `Interactions` / `InteractionData` / `InteractionList`;
/// each is an object of the requested attributes ([`WireInteraction`]).
#[derive(Debug, Clone, Serialize)]
pub struct InteractionsResult {
    /// The interactions.
    #[serde(rename = "Interactions")]
    pub interactions: Vec<WireInteraction>,
}

impl<'de> Deserialize<'de> for InteractionsResult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let list = match value {
            serde_json::Value::Array(list) => list,
            serde_json::Value::Object(mut object) => {
                let key =
                    ["Interactions", "InteractionData", "InteractionList", "InteractionsList"]
                        .into_iter()
                        .find(|key| object.contains_key(*key));
                match key.and_then(|key| object.remove(key)) {
                    Some(serde_json::Value::Array(list)) => list,
                    Some(serde_json::Value::Null) | None => Vec::new(),
                    Some(one @ serde_json::Value::Object(_)) => vec![one],
                    Some(_) => return Err(serde::de::Error::custom("interactions are not a list")),
                }
            }
            serde_json::Value::Null => Vec::new(),
            _ => return Err(serde::de::Error::custom("not an interaction list")),
        };
        let interactions = list
            .into_iter()
            .map(|item| serde_json::from_value(item).map_err(serde::de::Error::custom))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { interactions })
    }
}

/// One listed interaction: Interaction-table attributes (see [`INTERACTION_ATTRIBUTES`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireInteraction {
    /// The interaction id.
    #[serde(rename = "Id", alias = "InteractionId")]
    pub id: String,
    /// `email`, `chat`, `voice`, ...
    #[serde(rename = "MediaTypeId", alias = "MediaType")]
    pub media_type_id: String,
    /// `Inbound`, `Outbound`, `Internal`, ... (StopInteraction's `InteractionType`).
    #[serde(
        rename = "TypeId",
        alias = "InteractionType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub type_id: Option<String>,
    /// `New`, `Pending`, `InProcess`, `Stopped` (the Interaction History resource's `state`
    /// values); **Assumption**: also accepted as numbers 0 to 3 in that order (PSDK `Statuses`).
    #[serde(rename = "Status", deserialize_with = "lenient_status")]
    pub status: InteractionStatus,
    /// **Assumption**: the workbin an interaction is parked in, when the answer names it
    /// (not an Interaction-table attribute; absent means unknown, read as none).
    #[serde(rename = "Workbin", default)]
    pub workbin: Option<String>,
    /// When it started.
    #[serde(rename = "StartDate", default, deserialize_with = "lenient_timestamp")]
    pub start_date: Option<Timestamp>,
    /// When it ended.
    #[serde(rename = "EndDate", default, deserialize_with = "lenient_timestamp")]
    pub end_date: Option<Timestamp>,
    /// Changes whenever the interaction does. **Assumption**: named `ModifiedDate`.
    #[serde(rename = "ModifiedDate", deserialize_with = "required_timestamp")]
    pub modified_date: Timestamp,
    /// **Assumption**: the attachment count, when the answer gives it (0 otherwise; the
    /// export reads the real attachments from the content).
    #[serde(rename = "AttachmentCount", default, deserialize_with = "lenient_u32_zero")]
    pub attachment_count: u32,
}

/// The `GetInteractionContent` answer; the request sends `InteractionId`,
/// `IncludeAttachments=true`, `IncludeBinaryContent=false` (the bytes come from
/// `GetDocument`, streamed) and `DataSource`.
///
/// **Assumption**: the per-method page (`.../RESTAPI/OMInteractionsGetInteractionContent`,
/// book p. 175) was not readable; field names follow PSDK's `EventGetInteractionContent`
/// (`InteractionAttributes` with `Id`, `Subject`, `Text`, `StructuredText`; `Attachments`
/// with `DocumentId`, `TheName`, `MimeType`, `TheSize`). Attributes are accepted at the top
/// level or under `InteractionAttributes`.
#[derive(Clone, Serialize)]
#[allow(missing_debug_implementations)] // holds personal data: no Debug at all
pub struct ContentResult {
    /// The interaction id.
    #[serde(rename = "Id")]
    pub id: String,
    /// Subject, if any.
    #[serde(rename = "Subject", default)]
    pub subject: Option<String>,
    /// Plain text body / transcript.
    #[serde(rename = "Text", default)]
    pub text: Option<String>,
    /// **Assumption**: structured text / user data as one JSON object.
    #[serde(rename = "StructuredFields", default)]
    pub structured_fields: serde_json::Map<String, serde_json::Value>,
    /// The attachments' metadata.
    #[serde(rename = "Attachments", default)]
    pub attachments: Vec<WireAttachment>,
}

#[derive(Deserialize)]
struct ContentFields {
    #[serde(rename = "Id", alias = "InteractionId")]
    id: Option<String>,
    #[serde(rename = "Subject", default)]
    subject: Option<String>,
    #[serde(rename = "Text", default)]
    text: Option<String>,
    #[serde(
        rename = "StructuredFields",
        alias = "StructuredText",
        default,
        deserialize_with = "object_or_text"
    )]
    structured_fields: serde_json::Map<String, serde_json::Value>,
    #[serde(
        rename = "Attachments",
        alias = "AttachmentList",
        default,
        deserialize_with = "list_or_null"
    )]
    attachments: Vec<WireAttachment>,
}

impl<'de> Deserialize<'de> for ContentResult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut object = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        // Attributes nested under InteractionAttributes are lifted to the top level.
        if let Some(serde_json::Value::Object(nested)) = object.remove("InteractionAttributes") {
            for (key, value) in nested {
                object.entry(key).or_insert(value);
            }
        }
        let fields: ContentFields = serde_json::from_value(serde_json::Value::Object(object))
            .map_err(serde::de::Error::custom)?;
        Ok(Self {
            id: fields.id.ok_or_else(|| serde::de::Error::custom("no interaction id"))?,
            subject: fields.subject,
            text: fields.text,
            structured_fields: fields.structured_fields,
            attachments: fields.attachments,
        })
    }
}

/// An attachment's metadata, with PSDK's field names (see [`ContentResult`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireAttachment {
    /// The document id for `GetDocument`.
    #[serde(rename = "DocumentId", alias = "Id")]
    pub document_id: String,
    /// The file name.
    #[serde(rename = "TheName", default)]
    pub the_name: String,
    /// The MIME type.
    #[serde(rename = "MimeType", default)]
    pub mime_type: String,
    /// The size in bytes.
    #[serde(rename = "TheSize", deserialize_with = "required_u64")]
    pub the_size: u64,
}

/// Where `GetDocument` puts the document's bytes, base64 in a JSON string.
///
/// **Assumption**: the per-method page (`.../RESTAPI/OMInteractionsGetDocument`, book p. 173)
/// was not readable. The request is `DocumentId`, `IncludeBinaryContent=true`, `DataSource`
/// (PSDK `RequestGetDocument`); by the general rule the answer is JSON, binary values in JSON
/// being base64 text. The first string field with one of these names, at any depth, is the
/// content; it is decoded while it streams ([`document::DocumentDecoder`]).
pub const DOCUMENT_CONTENT_FIELDS: [&str; 3] = ["Content", "BinaryContent", "TheContent"];

/// `StopInteraction` parameters, as `.../RESTAPI/OMInteractionsStopInteraction` lists them:
/// `InteractionId` (mandatory), `Reason`, `Delete` ("true"/"false", default false: the
/// connector sends "false", deletion is `OMContacts/Delete`'s job), `InteractionType`,
/// `MediaType`, `TenantId` (Integer, mandatory). The verb is PUT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StopParams {
    /// The interaction id.
    #[serde(rename = "InteractionId")]
    pub interaction_id: String,
    /// Why (free text, no personal data).
    #[serde(rename = "Reason")]
    pub reason: String,
    /// Always "false".
    #[serde(rename = "Delete", default = "false_text")]
    pub delete: String,
    /// The interaction's type (its `TypeId`), when known.
    #[serde(rename = "InteractionType", default, skip_serializing_if = "Option::is_none")]
    pub interaction_type: Option<String>,
    /// The interaction's media type.
    #[serde(rename = "MediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The tenant.
    #[serde(rename = "TenantId")]
    pub tenant_id: u32,
}

fn false_text() -> String {
    FALSE.to_owned()
}

/// A UCS fault: `{"FaultCode": 510, "FaultString": "Msg: Interaction '…' not found in
/// database"}` (`.../RESTAPI/NewBehaviors`; fault tables on each method page).
///
/// **Assumption**: the HTTP status of a fault is not documented; a fault is recognised in any
/// answer, whatever its status, by a top-level `FaultCode`. The code is accepted as a number
/// or a string.
#[derive(Clone, Serialize, Deserialize)]
pub struct Fault {
    /// The fault's code.
    #[serde(rename = "FaultCode", deserialize_with = "code_text")]
    pub code: String,
    /// The fault's text. May hold personal data: never copied into errors or logs.
    #[serde(rename = "FaultString", default)]
    pub string: String,
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fault").field("code", &self.code).finish_non_exhaustive()
    }
}

impl Fault {
    /// The fault in a JSON answer, if it is one.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let object = value.as_object()?;
        object.get("FaultCode")?;
        serde_json::from_value(value).ok()
    }

    /// The server name in a text of the form `Server: <name> Msg: ...` (as the seed's log
    /// shows UCS faults), if there is one. The caller sanitises it.
    pub fn server(&self) -> Option<&str> {
        let rest = self.string.split_once("Server:")?.1.trim_start();
        rest.split_whitespace().next()
    }
}

/// The documented fault code of an object missing from the database
/// (`FaultCode=510 FaultString=Msg: Interaction '…' not found in database`, `.../NewBehaviors`).
pub const FAULT_NOT_IN_DATABASE: &str = "510";
/// The documented fault code of a missing parameter (`201 Missing parameter '…'`,
/// `.../OMContactsIdentifyContact`).
pub const FAULT_MISSING_PARAMETER: &str = "201";
/// The documented fault code of a parameter with a wrong value (`204 Incorrect value for
/// parameter '…'`, `.../NewBehaviors`).
pub const FAULT_INCORRECT_VALUE: &str = "204";
/// The fixed text of the missing archive role, as the seed's log shows it (`Server: ucs85-…
/// Msg: No data source with role 'archive' found`). A UCS 8.5 behaviour.
pub const NO_DATA_SOURCE_MESSAGE: &str = "No data source with role";

/// What a failed (or faulted) answer means to the connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMeaning {
    /// The contact / interaction / document does not exist.
    NotFound,
    /// The deployment has no data source with the role asked for.
    NoDataSource,
    /// Try again later.
    Transient,
    /// Do not retry.
    Permanent,
}

/// Classifies an answer that is an HTTP error or carries a [`Fault`]. Fixed texts only are
/// looked for in `FaultString`, and it is never copied.
///
/// - "No data source with role" (the seed's log) -> [`FaultMeaning::NoDataSource`];
/// - HTTP 404, or fault 510 whose text says "not found" -> [`FaultMeaning::NotFound`];
/// - HTTP 408, 429, 502, 503, 504 -> [`FaultMeaning::Transient`];
/// - anything else (e.g. 201 missing parameter, 204 incorrect value, HTTP 500) ->
///   [`FaultMeaning::Permanent`]: a refused request does not heal by itself.
pub fn classify_fault(status: u16, fault: Option<&Fault>) -> FaultMeaning {
    if let Some(fault) = fault {
        if fault.string.contains(NO_DATA_SOURCE_MESSAGE) {
            return FaultMeaning::NoDataSource;
        }
        if fault.code == FAULT_NOT_IN_DATABASE
            && fault.string.to_ascii_lowercase().contains("not found")
        {
            return FaultMeaning::NotFound;
        }
    }
    match status_meaning(status) {
        StatusMeaning::NotFound => FaultMeaning::NotFound,
        StatusMeaning::Transient => FaultMeaning::Transient,
        StatusMeaning::Success | StatusMeaning::Permanent => FaultMeaning::Permanent,
    }
}

// Error codes of the simulator's Context Services and GMS answers (not UCS: those are faults).

/// Error code: no such profile / callback (HTTP 404).
pub const CODE_NOT_FOUND: &str = "NotFound";
/// Error code: the request is invalid (HTTP 400).
pub const CODE_BAD_REQUEST: &str = "BadRequest";
/// Error code: the server is (temporarily) unavailable (HTTP 503).
pub const CODE_UNAVAILABLE: &str = "ServiceUnavailable";
/// Error code: an internal server error (HTTP 500).
pub const CODE_INTERNAL: &str = "InternalError";

/// What an HTTP status means to the connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMeaning {
    /// 2xx.
    Success,
    /// 404.
    NotFound,
    /// 408, 429, 502, 503, 504: try again later.
    Transient,
    /// Any other status: do not retry.
    Permanent,
}

/// Classifies an HTTP status. 500 is permanent: a server bug does not heal by itself.
pub fn status_meaning(status: u16) -> StatusMeaning {
    match status {
        200..=299 => StatusMeaning::Success,
        404 => StatusMeaning::NotFound,
        408 | 429 | 502 | 503 | 504 => StatusMeaning::Transient,
        _ => StatusMeaning::Permanent,
    }
}

/// The content type of every JSON answer.
pub const JSON: &str = "application/json";
/// A raw byte answer. Not what UCS documents for `GetDocument` (JSON), accepted as well.
pub const OCTET_STREAM: &str = "application/octet-stream";

// Lenient field readers: UCS's KV lists come through JSON with strings where a number or a
// boolean is meant (the pages type `CreateContact` "String: true or false").

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => {
            Some(n.as_u64().ok_or_else(|| serde::de::Error::custom("not a count"))?)
        }
        serde_json::Value::String(s) => {
            Some(s.trim().parse().map_err(|_| serde::de::Error::custom("not a count"))?)
        }
        serde_json::Value::Null => None,
        _ => return Err(serde::de::Error::custom("not a count")),
    })
}

fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    lenient_u64(d)?
        .map(|n| u32::try_from(n).map_err(|_| serde::de::Error::custom("out of range")))
        .transpose()
}

fn lenient_u32_zero<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(lenient_u32(d)?.unwrap_or(0))
}

fn required_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    lenient_u64(d)?.ok_or_else(|| serde::de::Error::custom("missing size"))
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Some(b),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case(TRUE) => Some(true),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case(FALSE) => Some(false),
        serde_json::Value::Null => None,
        _ => return Err(serde::de::Error::custom("not true or false")),
    })
}

fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(serde::de::Error::custom("not a list of ids")),
            })
            .collect::<Result<_, _>>()?,
        serde_json::Value::String(s) => s
            .split([',', ' ', ';'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        serde_json::Value::Null => Vec::new(),
        _ => return Err(serde::de::Error::custom("not a list of ids")),
    })
}

fn code_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::String(s) => Ok(s.trim().to_owned()),
        _ => Err(serde::de::Error::custom("not a fault code")),
    }
}

fn list_or_null<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(Vec::new()),
        one @ serde_json::Value::Object(_) => {
            Ok(vec![serde_json::from_value(one).map_err(serde::de::Error::custom)?])
        }
        other => serde_json::from_value(other).map_err(serde::de::Error::custom),
    }
}

fn object_or_text<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<serde_json::Map<String, serde_json::Value>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Object(object) => object,
        serde_json::Value::Null => serde_json::Map::new(),
        // Structured text that is not an object is kept whole under one key.
        other => serde_json::Map::from_iter([("StructuredText".to_owned(), other)]),
    })
}

/// Parses a UCS date: RFC 3339, or with a space instead of `T` and/or a `+hhmm` offset (as the
/// Interaction History pages show `2013-11-25 21:02:22.000+0200`), or epoch milliseconds.
pub fn parse_timestamp(value: &serde_json::Value) -> Option<Timestamp> {
    match value {
        serde_json::Value::String(text) => {
            let text = text.trim();
            if let Ok(t) = text.parse::<Timestamp>() {
                return Some(t);
            }
            let mut fixed = text.replacen(' ', "T", 1);
            // `+0200` -> `+02:00`
            let bytes = fixed.as_bytes();
            let len = bytes.len();
            if len > 5
                && matches!(bytes.get(len - 5), Some(b'+' | b'-'))
                && bytes.get(len - 4..).is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            {
                fixed.insert(len - 2, ':');
            }
            fixed.parse::<Timestamp>().ok()
        }
        serde_json::Value::Number(n) => {
            n.as_i64().and_then(|ms| Timestamp::from_millisecond(ms).ok())
        }
        _ => None,
    }
}

fn lenient_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    if value.is_null() {
        return Ok(None);
    }
    parse_timestamp(&value).map(Some).ok_or_else(|| serde::de::Error::custom("not a date"))
}

fn required_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
    lenient_timestamp(d)?.ok_or_else(|| serde::de::Error::custom("missing date"))
}

fn lenient_status<'de, D: Deserializer<'de>>(d: D) -> Result<InteractionStatus, D::Error> {
    let status = match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "new" => Some(InteractionStatus::New),
            "pending" => Some(InteractionStatus::Pending),
            "inprocess" | "in_process" | "in process" => Some(InteractionStatus::InProcess),
            "stopped" => Some(InteractionStatus::Stopped),
            _ => None,
        },
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(0) => Some(InteractionStatus::New),
            Some(1) => Some(InteractionStatus::Pending),
            Some(2) => Some(InteractionStatus::InProcess),
            Some(3) => Some(InteractionStatus::Stopped),
            _ => None,
        },
        _ => None,
    };
    status.ok_or_else(|| serde::de::Error::custom("unknown interaction status"))
}

fn value_text(value: serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn values_of(value: serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                serde_json::Value::Object(mut object) => object
                    .remove("AttrValue")
                    .or_else(|| object.remove("Value"))
                    .and_then(value_text),
                other => value_text(other),
            })
            .collect(),
        serde_json::Value::Object(mut object) => object
            .remove("AttrValue")
            .or_else(|| object.remove("Value"))
            .and_then(value_text)
            .into_iter()
            .collect(),
        other => value_text(other).into_iter().collect(),
    }
}

fn attribute_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    let mut map = BTreeMap::new();
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Object(object) => {
            for (name, value) in object {
                map.insert(name, values_of(value));
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                let serde_json::Value::Object(mut object) = item else {
                    return Err(serde::de::Error::custom("not an attribute"));
                };
                let Some(serde_json::Value::String(name)) = object.remove("AttrName") else {
                    return Err(serde::de::Error::custom("attribute without a name"));
                };
                let values = ["AttributesInfoList", "Values", "AttrValue", "Value"]
                    .into_iter()
                    .find_map(|key| object.remove(key))
                    .map(values_of)
                    .unwrap_or_default();
                map.entry(name).or_insert_with(Vec::new).extend(values);
            }
        }
        serde_json::Value::Null => {}
        _ => return Err(serde::de::Error::custom("not an attribute list")),
    }
    Ok(map)
}
