//! The simulator's HTTP side: exactly the routes, fields and status codes of [`wire`], over
//! the [`Store`], with fault injection in front of every call.

// Handlers short-circuit with the error response itself; boxing it would buy nothing here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tokio_util::sync::CancellationToken;

use super::faults::{ConnectionKill, FaultKind, Faults, ScriptedFault};
use super::store::{Store, StoreError};
use crate::ucs::wire::{self, Operation};
use crate::ucs::{AttachmentId, CallbackId, ContactId, DataSource, InteractionId};

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct SimState {
    pub(crate) store: Arc<Store>,
    pub(crate) faults: Faults,
    pub(crate) server: String,
    pub(crate) shutdown: CancellationToken,
}

type Shared = State<Arc<SimState>>;
type Conn = ConnectInfo<ConnectionKill>;
type Params = Query<HashMap<String, String>>;

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route(wire::IDENTIFY_CONTACT, post(identify))
        .route(wire::GET_ATTRIBUTES, get(attributes))
        .route(wire::DELETE_CONTACT, axum::routing::delete(delete_contact))
        .route(wire::GET_INTERACTIONS, get(interactions))
        .route(wire::GET_CONTENT, get(content))
        .route(wire::GET_DOCUMENT, get(document))
        .route(wire::STOP_INTERACTION, put(stop))
        .route(&format!("{}/{{id}}", wire::PROFILES), get(profile).delete(delete_profile))
        .route(&format!("{}/{{service}}", wire::CALLBACKS), get(callbacks))
        .route(&format!("{}/{{service}}/{{id}}", wire::CALLBACKS), axum::routing::delete(cancel))
        .route("/sim/stats", get(stats))
        .route("/sim/faults", post(script))
        .fallback(|State(sim): Shared| async move {
            error(&sim, StatusCode::NOT_FOUND, "NoSuchEndpoint", "no such endpoint")
        })
        .with_state(state)
}

/// Answers a UCS fault (`FaultCode`/`FaultString`, `.../RESTAPI/NewBehaviors`). A stand-in
/// until the simulator models UCS's documented faults method by method.
fn error(sim: &SimState, status: StatusCode, code: &str, message: &str) -> Response {
    let fault_code = match code {
        wire::CODE_NOT_FOUND => wire::FAULT_NOT_IN_DATABASE,
        wire::CODE_BAD_REQUEST => wire::FAULT_INCORRECT_VALUE,
        _ => "1",
    };
    let body = wire::Fault {
        code: fault_code.to_owned(),
        string: format!("Server: {} Msg: {message}", sim.server),
    };
    let mut value = serde_json::to_value(&body).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("FaultCode".to_owned(), fault_code.parse::<u32>().unwrap_or(1).into());
    }
    (status, axum::Json(value)).into_response()
}

fn not_found(sim: &SimState, what: &str) -> Response {
    error(
        sim,
        StatusCode::NOT_FOUND,
        wire::CODE_NOT_FOUND,
        &format!("{what} not found in database"),
    )
}

fn bad_request(sim: &SimState, message: &str) -> Response {
    error(sim, StatusCode::BAD_REQUEST, wire::CODE_BAD_REQUEST, message)
}

fn internal(sim: &SimState, error_: &StoreError) -> Response {
    tracing::error!(error = %error_, "simulator storage failed");
    error(sim, StatusCode::INTERNAL_SERVER_ERROR, wire::CODE_INTERNAL, "storage failure")
}

tokio::task_local! {
    /// When the current call may answer at the earliest (arrival + injected latency).
    static ANSWER_AT: Instant;
}

/// Runs a blocking store call off the runtime. The blocking thread also serves the injected
/// latency (the query overlaps it): one thread hand-off per call instead of two, which is
/// what keeps the simulator out of the way of latency-bound measurements.
async fn blocking<T: Send + 'static>(
    sim: &SimState,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    let store = sim.store.clone();
    let answer_at = ANSWER_AT.try_with(|at| *at).ok();
    let job = move || {
        let result = f(&store);
        if let Some(wait) = answer_at.and_then(|at| at.checked_duration_since(Instant::now())) {
            std::thread::sleep(wait);
        }
        result
    };
    match tokio::task::spawn_blocking(job).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(internal(sim, &e)),
        Err(_) => Err(error(sim, StatusCode::INTERNAL_SERVER_ERROR, wire::CODE_INTERNAL, "panic")),
    }
}

/// Counts the call, injects latency and faults, and runs `work` unless a fault replaces it.
/// A timeout or reset runs the work first and then loses the answer: the nastiest case for a
/// client (did my delete happen?).
async fn serve(
    sim: &SimState,
    kill: &ConnectionKill,
    operation: Operation,
    work: impl Future<Output = Response>,
) -> Response {
    let decision = sim.faults.arrive(operation);
    let answer_at = Instant::now() + decision.delay;
    let work = ANSWER_AT.scope(answer_at, work);
    let Some(fault) = decision.fault else {
        let response = work.await;
        sim.faults.wait_until(answer_at).await;
        return response;
    };
    sim.faults.wait_until(answer_at).await;
    tracing::debug!(operation = %operation, fault = ?fault, "injecting a fault");
    match fault {
        FaultKind::Unavailable => {
            error(sim, StatusCode::SERVICE_UNAVAILABLE, wire::CODE_UNAVAILABLE, "injected fault")
        }
        FaultKind::Permanent => {
            error(sim, StatusCode::INTERNAL_SERVER_ERROR, wire::CODE_INTERNAL, "injected fault")
        }
        FaultKind::Timeout => {
            drop(work.await);
            sim.shutdown.cancelled().await;
            error(sim, StatusCode::SERVICE_UNAVAILABLE, wire::CODE_UNAVAILABLE, "shutting down")
        }
        FaultKind::Reset => {
            drop(work.await);
            kill.kill();
            error(sim, StatusCode::SERVICE_UNAVAILABLE, wire::CODE_UNAVAILABLE, "dropped")
        }
        FaultKind::Garbage => {
            ([(header::CONTENT_TYPE, wire::JSON)], "{\"Interactions\": [<<garbage>>")
                .into_response()
        }
        FaultKind::Truncated => {
            // Half a body, a pause so it is flushed with the headers, then an error: hyper
            // aborts the connection mid-body.
            let body = Body::from_stream(futures_util::stream::unfold(0u8, |step| async move {
                match step {
                    0 => Some((Ok(Bytes::from_static(b"{\"ContactId\":\"")), 1)),
                    1 => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Some((Err(std::io::Error::other("injected truncation")), 2))
                    }
                    _ => None,
                }
            }));
            ([(header::CONTENT_TYPE, wire::JSON), (header::CONTENT_LENGTH, "4096")], body)
                .into_response()
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    axum::Json(value).into_response()
}

fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(String::as_str)
}

fn source_param(sim: &SimState, params: &HashMap<String, String>) -> Result<DataSource, Response> {
    match param(params, wire::Q_DATA_SOURCE) {
        None => Ok(DataSource::Main),
        Some(name) => wire::data_source_from_name(name)
            .ok_or_else(|| bad_request(sim, "DataSource must be main or archive")),
    }
}

fn id_param<T>(
    sim: &SimState,
    params: &HashMap<String, String>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, crate::ucs::InvalidId>,
) -> Result<T, Response> {
    let text = param(params, name).ok_or_else(|| bad_request(sim, &format!("{name} missing")))?;
    parse(text).map_err(|e| bad_request(sim, &e.to_string()))
}

fn no_data_source(sim: &SimState, source: DataSource) -> Response {
    error(
        sim,
        StatusCode::NOT_FOUND,
        "NoDataSource",
        &format!("{} '{}' found", wire::NO_DATA_SOURCE_MESSAGE, source.as_str()),
    )
}

macro_rules! try_response {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(response) => return response,
        }
    };
}

async fn identify(State(sim): Shared, ConnectInfo(kill): Conn, body: Bytes) -> Response {
    serve(&sim, &kill, Operation::IdentifyContact, async {
        type Parameters = serde_json::Map<String, serde_json::Value>;
        let Ok(request) = serde_json::from_slice::<wire::Envelope<Parameters>>(&body) else {
            return bad_request(&sim, "body must be {\"Parameters\":{\"TenantId\":..,..}}");
        };
        let mut params = request.parameters;
        let Some(tenant) = params
            .remove(wire::P_TENANT_ID)
            .and_then(|t| t.as_u64())
            .and_then(|t| u32::try_from(t).ok())
        else {
            return bad_request(&sim, "Missing parameter 'TenantId'");
        };
        if params.remove(wire::P_CREATE_CONTACT).as_ref().and_then(|v| v.as_str())
            != Some(wire::FALSE)
        {
            return bad_request(&sim, "CreateContact other than \"false\" is not supported");
        }
        params.remove(wire::P_RETURN_UNIQUE);
        let mut fields = std::collections::BTreeMap::new();
        for (name, value) in params {
            let Some(value) = value.as_str() else {
                return bad_request(&sim, "attribute values must be strings");
            };
            fields.insert(name, value.to_owned());
        }
        let ids = try_response!(blocking(&sim, move |s| s.identify(tenant, &fields)).await);
        let mut answer = serde_json::json!({
            "NumberOfContactsFound": ids.len(),
            "ContactIdList": ids,
            "ContactCreated": wire::FALSE,
        });
        if let (Some(object), [one]) = (answer.as_object_mut(), ids.as_slice()) {
            object.insert("ContactId".to_owned(), one.clone().into());
        }
        json(&answer)
    })
    .await
}

async fn attributes(State(sim): Shared, ConnectInfo(kill): Conn, Query(q): Params) -> Response {
    serve(&sim, &kill, Operation::GetAttributes, async {
        let id = try_response!(id_param(&sim, &q, wire::Q_CONTACT_ID, ContactId::new));
        match try_response!(blocking(&sim, move |s| s.contact(id.as_str())).await) {
            Some(contact) => json(&contact),
            None => not_found(&sim, "contact"),
        }
    })
    .await
}

async fn delete_contact(State(sim): Shared, ConnectInfo(kill): Conn, Query(q): Params) -> Response {
    serve(&sim, &kill, Operation::DeleteContact, async {
        let id = try_response!(id_param(&sim, &q, wire::Q_CONTACT_ID, ContactId::new));
        let subject = id.clone();
        if try_response!(blocking(&sim, move |s| s.delete_contact(id.as_str())).await) {
            tracing::info!(contact = %subject, "simulator deleted a contact");
            json(&serde_json::json!({ "ContactId": subject }))
        } else {
            not_found(&sim, "contact")
        }
    })
    .await
}

async fn interactions(State(sim): Shared, ConnectInfo(kill): Conn, Query(q): Params) -> Response {
    serve(&sim, &kill, Operation::GetInteractionsForContact, async {
        let id = try_response!(id_param(&sim, &q, wire::Q_CONTACT_ID, ContactId::new));
        let source = try_response!(source_param(&sim, &q));
        if !sim.store.has_source(source) {
            return no_data_source(&sim, source);
        }
        let found = try_response!(
            blocking(&sim, move |s| {
                if !s.contact_exists(id.as_str())? {
                    return Ok(None);
                }
                s.interactions(source, id.as_str(), 0, u32::MAX).map(Some)
            })
            .await
        );
        match found {
            Some((interactions, _)) => json(&wire::InteractionsResult { interactions }),
            None => not_found(&sim, "contact"),
        }
    })
    .await
}

async fn content(State(sim): Shared, ConnectInfo(kill): Conn, Query(q): Params) -> Response {
    serve(&sim, &kill, Operation::GetInteractionContent, async {
        let id = try_response!(id_param(&sim, &q, wire::Q_INTERACTION_ID, InteractionId::new));
        let source = try_response!(source_param(&sim, &q));
        if !sim.store.has_source(source) {
            return no_data_source(&sim, source);
        }
        match try_response!(blocking(&sim, move |s| s.content(source, id.as_str())).await) {
            Some(content) => json(&content),
            None => not_found(&sim, "interaction"),
        }
    })
    .await
}

async fn document(State(sim): Shared, ConnectInfo(kill): Conn, Query(q): Params) -> Response {
    serve(&sim, &kill, Operation::GetDocument, async {
        let id = try_response!(id_param(&sim, &q, wire::Q_DOCUMENT_ID, AttachmentId::new));
        let document_id = id.as_str().to_owned();
        let source = try_response!(source_param(&sim, &q));
        if !sim.store.has_source(source) {
            return no_data_source(&sim, source);
        }
        let Some(found) =
            try_response!(blocking(&sim, move |s| s.document(source, id.as_str())).await)
        else {
            return not_found(&sim, "document");
        };
        let file = match tokio::fs::File::open(&found.path).await {
            Ok(file) => file,
            Err(e) => {
                let e = StoreError::Io { path: found.path, source: e };
                return internal(&sim, &e);
            }
        };
        // JSON, the content base64 in `Content`, encoded as the file streams.
        let head = serde_json::json!({ "DocumentId": document_id, "TheSize": found.size });
        let head = head.to_string();
        let head = Bytes::from(format!("{},\"Content\":\"", head.trim_end_matches('}')));
        let chunks = tokio_util::io::ReaderStream::with_capacity(file, 48 * 1024);
        let body = futures_util::stream::unfold(
            (Some(head), Some(chunks), Vec::<u8>::new()),
            |(head, chunks, mut carry)| async move {
                use base64::Engine as _;
                use futures_util::StreamExt as _;
                let engine = base64::engine::general_purpose::STANDARD;
                if let Some(head) = head {
                    return Some((Ok::<Bytes, std::io::Error>(head), (None, chunks, carry)));
                }
                let mut chunks = chunks?;
                match chunks.next().await {
                    Some(Ok(bytes)) => {
                        carry.extend_from_slice(&bytes);
                        let whole = carry.len() / 3 * 3;
                        let encoded = engine.encode(carry.get(..whole).unwrap_or_default());
                        carry.drain(..whole);
                        Some((Ok(Bytes::from(encoded)), (None, Some(chunks), carry)))
                    }
                    Some(Err(e)) => Some((Err(e), (None, None, carry))),
                    None => {
                        let tail = format!("{}\"}}", engine.encode(&carry));
                        Some((Ok(Bytes::from(tail)), (None, None, Vec::new())))
                    }
                }
            },
        );
        ([(header::CONTENT_TYPE, wire::JSON)], Body::from_stream(body)).into_response()
    })
    .await
}

async fn stop(State(sim): Shared, ConnectInfo(kill): Conn, body: Bytes) -> Response {
    serve(&sim, &kill, Operation::StopInteraction, async {
        let Ok(request) = serde_json::from_slice::<wire::Envelope<wire::StopParams>>(&body) else {
            return bad_request(
                &sim,
                "body must be {\"Parameters\":{\"InteractionId\":..,\"TenantId\":..,..}}",
            );
        };
        let params = request.parameters;
        let id = try_response!(
            InteractionId::new(&params.interaction_id)
                .map_err(|e| bad_request(&sim, &e.to_string()))
        );
        let reason = params.reason;
        if try_response!(blocking(&sim, move |s| s.stop(id.as_str(), &reason)).await) {
            json(&serde_json::json!({}))
        } else {
            not_found(&sim, "interaction")
        }
    })
    .await
}

async fn profile(State(sim): Shared, ConnectInfo(kill): Conn, Path(id): Path<String>) -> Response {
    serve(&sim, &kill, Operation::GetProfile, async {
        let id = try_response!(ContactId::new(&id).map_err(|e| bad_request(&sim, &e.to_string())));
        let key = id.clone();
        match try_response!(blocking(&sim, move |s| s.profile(key.as_str())).await) {
            Some(mut fields) => {
                fields.insert(wire::PROFILE_ID_FIELD.to_owned(), id.as_str().into());
                json(&fields)
            }
            None => not_found(&sim, "profile"),
        }
    })
    .await
}

async fn delete_profile(
    State(sim): Shared,
    ConnectInfo(kill): Conn,
    Path(id): Path<String>,
) -> Response {
    serve(&sim, &kill, Operation::DeleteProfile, async {
        let id = try_response!(ContactId::new(&id).map_err(|e| bad_request(&sim, &e.to_string())));
        if try_response!(blocking(&sim, move |s| s.delete_profile(id.as_str())).await) {
            StatusCode::NO_CONTENT.into_response()
        } else {
            not_found(&sim, "profile")
        }
    })
    .await
}

async fn callbacks(
    State(sim): Shared,
    ConnectInfo(kill): Conn,
    Path(_service): Path<String>,
    Query(q): Params,
) -> Response {
    serve(&sim, &kill, Operation::ListCallbacks, async {
        let id = try_response!(id_param(&sim, &q, wire::Q_CALLBACK_CUSTOMER, ContactId::new));
        let found = try_response!(blocking(&sim, move |s| s.callbacks(id.as_str())).await);
        json(&found)
    })
    .await
}

async fn cancel(
    State(sim): Shared,
    ConnectInfo(kill): Conn,
    Path((_service, id)): Path<(String, String)>,
) -> Response {
    serve(&sim, &kill, Operation::CancelCallback, async {
        let id = try_response!(CallbackId::new(&id).map_err(|e| bad_request(&sim, &e.to_string())));
        if try_response!(blocking(&sim, move |s| s.cancel_callback(id.as_str())).await) {
            json(&serde_json::json!({}))
        } else {
            not_found(&sim, "callback")
        }
    })
    .await
}

async fn stats(State(sim): Shared) -> Response {
    json(&sim.faults.stats())
}

async fn script(State(sim): Shared, body: Bytes) -> Response {
    match serde_json::from_slice::<Vec<ScriptedFault>>(&body) {
        Ok(faults) => {
            sim.faults.script(&faults);
            json(&serde_json::json!({ "installed": faults.len() }))
        }
        Err(_) => bad_request(
            &sim,
            "body must be [{\"operation\":\"GetAttributes\",\"nth\":1,\"kind\":\"unavailable\"}]",
        ),
    }
}
