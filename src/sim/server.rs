//! The simulator's HTTP side over the [`Store`], with fault injection in front of every call.
//! The UCS methods are in [`super::ucs_api`] (served as Genesys documents them); Context
//! Services and GMS routes are here.

// Handlers short-circuit with the error response itself; boxing it would buy nothing here.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use super::conformance::{Journal, UcsFault};
use super::faults::{ConnectionKill, FaultKind, Faults, ScriptedFault, Stats};
use super::store::{Store, StoreError};
use crate::ucs::wire::{self, Operation};

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
    /// The calls being answered now, and the most there were at once.
    pub(crate) in_flight: InFlight,
}

/// Counts the calls under way (every route but the simulator's own `/sim/...`), keeping the
/// peak: what a client's concurrency limit is checked against.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    now: std::sync::atomic::AtomicU64,
    peak: std::sync::atomic::AtomicU64,
}

impl InFlight {
    fn enter(&self) -> InFlightCall<'_> {
        use std::sync::atomic::Ordering;
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        InFlightCall(self)
    }

    fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One call under way; leaves the count when dropped (answered, or abandoned by the client).
struct InFlightCall<'a>(&'a InFlight);

impl Drop for InFlightCall<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl SimState {
    /// Calls, injected faults and the conformance journal.
    pub(crate) fn stats(&self) -> Stats {
        let mut stats = self.faults.stats();
        let conformance = self.journal.snapshot();
        stats.non_conforming = conformance.non_conforming;
        stats.dangerous = conformance.dangerous;
        stats.contacts_created = conformance.contacts_created;
        stats.peak_in_flight = self.in_flight.peak();
        stats
    }
}

type Shared = State<Arc<SimState>>;

pub(crate) fn router(state: Arc<SimState>) -> Router {
    super::services::routes(super::ucs_api::routes(Router::new()))
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
        .layer(axum::middleware::from_fn_with_state(state.clone(), note_contact))
        .with_state(state)
}

/// An error of Context Services or GMS: `{"message": ..., "exception": ...}`, as their API
/// pages show (UCS methods answer UCS faults instead, see `ucs_api`).
fn error(_sim: &SimState, status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "message": message, "exception": code });
    (status, axum::Json(body)).into_response()
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
    /// The contact the current call is about, for the faults scripted per contact.
    static CALL_CONTACT: Option<String>;
    /// Set while a call under the `halfway` fault does its work: a handler that can stop half
    /// way (`DeleteContact`) does only part of it.
    static HALFWAY: bool;
}

/// Whether the current call is to do only part of its work (the `halfway` fault).
pub(crate) fn halfway() -> bool {
    HALFWAY.try_with(|half| *half).unwrap_or(false)
}

/// Notes which contact a call is about (see [`contact_named`]) for the fault injector, and
/// counts the call while it is under way.
async fn note_contact(
    State(sim): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let _call = (!request.uri().path().starts_with("/sim/")).then(|| sim.in_flight.enter());
    let contact = contact_named(request.uri());
    CALL_CONTACT.scope(contact, next.run(request)).await
}

/// The contact a call names: the UCS methods' `ContactId` query parameter, or the id in a
/// Context Services profile or customer path. A malformed name is left to the handler.
fn contact_named(uri: &axum::http::Uri) -> Option<String> {
    let query = uri.query().unwrap_or_default();
    let in_query = query.split('&').find_map(|pair| {
        pair.strip_prefix(wire::Q_CONTACT_ID).and_then(|rest| rest.strip_prefix('='))
    });
    let path = uri.path();
    let in_path = path
        .strip_prefix(wire::context_services::PROFILES)
        .or_else(|| path.strip_prefix(wire::context_services::CUSTOMERS))
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.split('/').next());
    in_query.or(in_path).filter(|id| !id.is_empty()).map(str::to_owned)
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
pub(super) async fn blocking<T: Send + 'static>(
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
    let contact = CALL_CONTACT.try_with(Clone::clone).ok().flatten();
    let decision = sim.faults.arrive(operation, contact.as_deref());
    let answer_at = Instant::now() + decision.delay;
    let half = decision.fault == Some(FaultKind::Halfway);
    let work = ANSWER_AT.scope(answer_at, HALFWAY.scope(half, work));
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
        FaultKind::Halfway => {
            drop(work.await);
            injected(sim, operation, StatusCode::INTERNAL_SERVER_ERROR, "injected fault")
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
