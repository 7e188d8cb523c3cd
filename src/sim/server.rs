//! The simulator's HTTP side over the [`Store`], with fault injection in front of every call.
//! The UCS methods are in [`super::ucs_api`] (served as Genesys documents them); Context
//! Services and GMS routes are here.

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
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use super::conformance::{Journal, UcsFault};
use super::faults::{ConnectionKill, FaultKind, Faults, ScriptedFault, Stats};
use super::store::{Store, StoreError};
use crate::ucs::wire::{self, Operation};
use crate::ucs::{CallbackId, ContactId};

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct SimState {
    pub(crate) store: Arc<Store>,
    pub(crate) faults: Faults,
    /// The conformance journal of the UCS methods.
    pub(crate) journal: Journal,
    /// UCS's `schema/select-limit` (IdentifyContact answers at most this many ids).
    pub(crate) select_limit: u32,
    pub(crate) server: String,
    pub(crate) shutdown: CancellationToken,
}

impl SimState {
    /// Calls, injected faults and the conformance journal.
    pub(crate) fn stats(&self) -> Stats {
        let mut stats = self.faults.stats();
        let conformance = self.journal.snapshot();
        stats.non_conforming = conformance.non_conforming;
        stats.dangerous = conformance.dangerous;
        stats.contacts_created = conformance.contacts_created;
        stats
    }
}

type Shared = State<Arc<SimState>>;
type Conn = ConnectInfo<ConnectionKill>;
type Params = Query<HashMap<String, String>>;

pub(crate) fn router(state: Arc<SimState>) -> Router {
    super::ucs_api::routes(Router::new())
        .route(&format!("{}/{{id}}", wire::PROFILES), get(profile).delete(delete_profile))
        .route(&format!("{}/{{service}}", wire::CALLBACKS), get(callbacks))
        .route(&format!("{}/{{service}}/{{id}}", wire::CALLBACKS), axum::routing::delete(cancel))
        .route("/sim/stats", get(stats))
        .route("/sim/faults", post(script))
        .fallback(|State(sim): Shared, uri: axum::http::Uri| async move {
            if let Some(method) = uri.path().strip_prefix("/ucs/v1/") {
                // **Assumption**: what UCS answers for a method it does not have is not
                // documented; a wrong-verb-like fault, journaled.
                let method = super::conformance::printable(method);
                return sim
                    .journal
                    .refuse(
                        "(unknown)",
                        format!("unknown UCS method {method}"),
                        UcsFault::new(
                            StatusCode::NOT_FOUND,
                            super::conformance::FAULT_WRONG_VERB,
                            format!("Unknown method '{method}'"),
                        ),
                    )
                    .into_response();
            }
            error(&sim, StatusCode::NOT_FOUND, "NoSuchEndpoint", "no such endpoint")
        })
        .with_state(state)
}

/// An error of Context Services or GMS: `{"message": ..., "exception": ...}`, as their API
/// pages show (UCS methods answer UCS faults instead, see `ucs_api`).
fn error(_sim: &SimState, status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "message": message, "exception": code });
    (status, axum::Json(body)).into_response()
}

fn not_found(sim: &SimState, what: &str) -> Response {
    error(sim, StatusCode::NOT_FOUND, wire::CODE_NOT_FOUND, &format!("{what} not found"))
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
pub(crate) async fn run_store<T: Send + 'static>(
    sim: &SimState,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = sim.store.clone();
    let answer_at = ANSWER_AT.try_with(|at| *at).ok();
    let job = move || {
        let result = f(&store);
        if let Some(wait) = answer_at.and_then(|at| at.checked_duration_since(Instant::now())) {
            std::thread::sleep(wait);
        }
        result
    };
    tokio::task::spawn_blocking(job).await.unwrap_or(Err(StoreError::Panicked))
}

/// [`run_store`] for the Context Services and GMS handlers: a storage failure as their error.
async fn blocking<T: Send + 'static>(
    sim: &SimState,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    run_store(sim, f).await.map_err(|e| internal(sim, &e))
}

/// Counts the call, injects latency and faults, and runs `work` unless a fault replaces it.
/// A timeout or reset runs the work first and then loses the answer: the nastiest case for a
/// client (did my delete happen?).
pub(crate) async fn serve(
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
            injected(sim, operation, StatusCode::SERVICE_UNAVAILABLE, "injected fault")
        }
        FaultKind::Permanent => {
            injected(sim, operation, StatusCode::INTERNAL_SERVER_ERROR, "injected fault")
        }
        FaultKind::Timeout => {
            drop(work.await);
            sim.shutdown.cancelled().await;
            injected(sim, operation, StatusCode::SERVICE_UNAVAILABLE, "shutting down")
        }
        FaultKind::Reset => {
            drop(work.await);
            kill.kill();
            injected(sim, operation, StatusCode::SERVICE_UNAVAILABLE, "dropped")
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

/// An injected failure: a UCS fault for the UCS methods (the documented shape), the old error
/// body for the Context Services and GMS routes.
fn injected(sim: &SimState, operation: Operation, status: StatusCode, text: &str) -> Response {
    match operation {
        Operation::IdentifyContact
        | Operation::GetAttributes
        | Operation::DeleteContact
        | Operation::GetInteractionsForContact
        | Operation::GetInteractionContent
        | Operation::GetDocument
        | Operation::StopInteraction => UcsFault::server(status, &sim.server, text).into_response(),
        _ => {
            let code = if status == StatusCode::SERVICE_UNAVAILABLE {
                wire::CODE_UNAVAILABLE
            } else {
                wire::CODE_INTERNAL
            };
            error(sim, status, code, text)
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    axum::Json(value).into_response()
}

fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(String::as_str)
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

macro_rules! try_response {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(response) => return response,
        }
    };
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
    json(&sim.stats())
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
