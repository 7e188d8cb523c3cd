//! The simulator's Context Services and GMS endpoints, strict where the pages speak (see
//! [`wire::context_services`] and [`wire::gms`]): the documented verbs and paths only, only the
//! documented query parameters (an unknown one is refused with a 400 and the
//! `{"message","exception"}` body), the documented not-found answers (`DeleteServiceByID`
//! answers 400 with a `NotFoundException`), and every non-conforming request journaled (names
//! of parameters only, never their values) for `/sim/stats`'s `nonConforming`.

// Handlers short-circuit with the error response itself; boxing it would buy nothing here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::faults::ConnectionKill;
use super::server::{SimState, blocking, serve};
use super::store::StoredService;
use crate::ucs::wire::context_services as cs;
use crate::ucs::wire::{Operation, gms};
use crate::ucs::{CallbackId, ContactId, ServiceId};

type Shared = State<Arc<SimState>>;
type Conn = ConnectInfo<ConnectionKill>;
type Params = Query<HashMap<String, String>>;

/// The Java package of Context Services' exceptions, as the pages' examples show it.
const CS_EXCEPTIONS: &str = "com.genesyslab.gsg.services.contextservices.exceptions";
/// **Assumption**: the GMS callback exceptions' package (the page names
/// `CallbackExceptionNotFound` without one).
const GMS_EXCEPTIONS: &str = "com.genesyslab.gsg.services.callback";

/// Adds the Context Services and GMS routes.
pub(crate) fn routes(router: Router<Arc<SimState>>) -> Router<Arc<SimState>> {
    use Operation as Op;
    router
        .route(
            &format!("{}/{{id}}", cs::PROFILES),
            get(profile).delete(delete_profile).fallback(wrong_verb(Op::GetProfile)),
        )
        .route(
            &format!("{}/{{id}}/{}", cs::CUSTOMERS, cs::SERVICES_SEGMENT),
            get(customer_services).fallback(wrong_verb(Op::ListServices)),
        )
        .route(
            &format!("{}/{{key}}", cs::ANONYMOUS_SERVICES),
            get(anonymous_services).fallback(wrong_verb(Op::ListAnonymousServices)),
        )
        .route(
            &format!("{}/{{id}}", cs::SERVICES),
            axum::routing::delete(delete_service).fallback(wrong_verb(Op::DeleteService)),
        )
        .route(
            &format!("{}/{{id}}/{}", cs::SERVICES, cs::STATES_SEGMENT),
            get(states).fallback(wrong_verb(Op::GetServiceStates)),
        )
        .route(
            &format!("{}/{{id}}/{}", cs::SERVICES, cs::TASKS_SEGMENT),
            get(tasks).fallback(wrong_verb(Op::GetServiceTasks)),
        )
        .route(gms::CALLBACKS, get(all_callbacks).fallback(wrong_verb(Op::ListCallbacks)))
        .route(
            &format!("{}/{{service}}", gms::CALLBACKS),
            get(service_callbacks).fallback(wrong_verb(Op::ListCallbacks)),
        )
        .route(
            &format!("{}/{{service}}/{{id}}", gms::CALLBACKS),
            axum::routing::delete(cancel_callback).fallback(wrong_verb(Op::CancelCallback)),
        )
}

/// A verb the page does not document on a known path: 405 with the documented error body,
/// journaled under the path's operation.
fn wrong_verb(
    operation: Operation,
) -> impl Fn(Shared, axum::http::Method) -> std::future::Ready<Response> + Clone + Send + 'static {
    move |State(sim): Shared, method: axum::http::Method| {
        sim.journal
            .record(operation.as_str(), format!("verb {method} is not documented on this path"));
        std::future::ready(cs_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} is not supported here"),
            &format!("{CS_EXCEPTIONS}.MethodNotAllowedException"),
        ))
    }
}

fn cs_error(status: StatusCode, message: &str, exception: &str) -> Response {
    let body = cs::CsError { message: message.to_owned(), exception: exception.to_owned() };
    (status, axum::Json(body)).into_response()
}

fn cs_not_found(what: &str) -> Response {
    cs_error(
        StatusCode::NOT_FOUND,
        &format!("{what} not found"),
        &format!("{CS_EXCEPTIONS}.NotFoundException"),
    )
}

/// Refuses (400, journaled) a request with a query parameter the page does not document.
fn only_documented(
    sim: &SimState,
    operation: Operation,
    params: &HashMap<String, String>,
    documented: &[&str],
) -> Result<(), Response> {
    let mut unknown: Vec<&str> =
        params.keys().map(String::as_str).filter(|k| !documented.contains(k)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    let names: String = unknown
        .iter()
        .map(|k| k.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect())
        .collect::<Vec<String>>()
        .join(", ");
    sim.journal.record(operation.as_str(), format!("undocumented query parameter(s): {names}"));
    Err(cs_error(
        StatusCode::BAD_REQUEST,
        &format!("unexpected parameter(s): {names}"),
        &format!("{CS_EXCEPTIONS}.BadRequestException"),
    ))
}

fn bad_id(sim: &SimState, operation: Operation, what: &str) -> Response {
    sim.journal.record(operation.as_str(), format!("{what} is not a valid id"));
    cs_error(
        StatusCode::BAD_REQUEST,
        &format!("invalid {what}"),
        &format!("{CS_EXCEPTIONS}.BadRequestException"),
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

fn json<T: Serialize>(value: &T) -> Response {
    axum::Json(value).into_response()
}

async fn profile(State(sim): Shared, ConnectInfo(kill): Conn, Path(id): Path<String>) -> Response {
    let operation = Operation::GetProfile;
    serve(&sim, &kill, operation, async {
        let Ok(id) = ContactId::new(&id) else {
            return bad_id(&sim, operation, "customer_id");
        };
        let key = id.clone();
        match try_response!(blocking(&sim, move |s| s.profile(key.as_str())).await) {
            Some(mut fields) => {
                fields.insert(cs::PROFILE_ID_FIELD.to_owned(), id.as_str().into());
                json(&fields)
            }
            None => cs_not_found("profile"),
        }
    })
    .await
}

async fn delete_profile(
    State(sim): Shared,
    ConnectInfo(kill): Conn,
    Path(id): Path<String>,
) -> Response {
    let operation = Operation::DeleteProfile;
    serve(&sim, &kill, operation, async {
        let Ok(id) = ContactId::new(&id) else {
            return bad_id(&sim, operation, "customer_id");
        };
        if try_response!(blocking(&sim, move |s| s.delete_profile(id.as_str())).await) {
            StatusCode::OK.into_response()
        } else {
            cs_not_found("profile")
        }
    })
    .await
}

/// `QueryServices`' documented filters (both forms).
const SERVICE_QUERY: &[&str] = &["started_from", "started_to", "extensions"];

fn resources(services: Vec<StoredService>) -> Vec<serde_json::Value> {
    services.into_iter().map(|s| serde_json::Value::Object(s.resource)).collect()
}

async fn customer_services(
    State(sim): Shared,
    ConnectInfo(kill): Conn,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    let operation = Operation::ListServices;
    serve(&sim, &kill, operation, async {
        try_response!(only_documented(&sim, operation, &q, SERVICE_QUERY));
        let Ok(id) = ContactId::new(&id) else {
            return bad_id(&sim, operation, "customer_id");
        };
        let found =
            try_response!(blocking(&sim, move |s| s.cs_services(Some(id.as_str()), None)).await);
        json(&resources(found))
    })
    .await
}

async fn anonymous_services(
    State(sim): Shared,
    ConnectInfo(kill): Conn,
    Path(key): Path<String>,
    Query(q): Params,
) -> Response {
    let operation = Operation::ListAnonymousServices;
    serve(&sim, &kill, operation, async {
        try_response!(only_documented(&sim, operation, &q, SERVICE_QUERY));
        let found = try_response!(blocking(&sim, move |s| s.cs_services(None, Some(&key))).await);
        json(&resources(found))
    })
    .await
}

/// `QueryStates` / `QueryTasks`: the documented filters of either.
const NESTED_QUERY: &[&str] =
    &["state_types", "task_types", "state_id", "active_tasks", "completed_tasks", "extensions"];

async fn nested(
    sim: Arc<SimState>,
    kill: ConnectionKill,
    operation: Operation,
    id: String,
    q: HashMap<String, String>,
) -> Response {
    serve(&sim, &kill, operation, async {
        try_response!(only_documented(&sim, operation, &q, NESTED_QUERY));
        let Ok(id) = ServiceId::new(&id) else {
            return bad_id(&sim, operation, "service_id");
        };
        let key = id.clone();
        match try_response!(blocking(&sim, move |s| s.cs_service(key.as_str())).await) {
            Some(service) if operation == Operation::GetServiceStates => json(&service.states),
            Some(service) => json(&service.tasks),
            None => cs_error(
                StatusCode::BAD_REQUEST,
                &format!("There are no service found for : {id}"),
                &format!("{CS_EXCEPTIONS}.NotFoundException"),
            ),
        }
    })
    .await
}

async fn states(
    State(sim): Shared,
    ConnectInfo(kill): Conn,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    nested(sim, kill, Operation::GetServiceStates, id, q).await
}

async fn tasks(
    State(sim): Shared,
    ConnectInfo(kill): Conn,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    nested(sim, kill, Operation::GetServiceTasks, id, q).await
}

async fn delete_service(
    State(sim): Shared,
    ConnectInfo(kill): Conn,
    Path(id): Path<String>,
    Query(q): Params,
) -> Response {
    let operation = Operation::DeleteService;
    serve(&sim, &kill, operation, async {
        try_response!(only_documented(&sim, operation, &q, &[]));
        let Ok(id) = ServiceId::new(&id) else {
            return bad_id(&sim, operation, "service_id");
        };
        let key = id.clone();
        if try_response!(blocking(&sim, move |s| s.delete_cs_service(key.as_str())).await) {
            StatusCode::OK.into_response()
        } else {
            // As DeleteServiceByID documents it: 400, not 404.
            cs_error(
                StatusCode::BAD_REQUEST,
                &format!("There are no service found for : {id}"),
                &format!("{CS_EXCEPTIONS}.NotFoundException"),
            )
        }
    })
    .await
}

/// The callback query's parameters: the properties it filters on (`_customer_number`,
/// `_callback_state`) and **Assumption** `operand` (a public client library's).
const CALLBACK_QUERY: &[&str] = &[gms::Q_CUSTOMER_NUMBER, gms::F_STATE, "operand"];

async fn callbacks(
    sim: Arc<SimState>,
    kill: ConnectionKill,
    service: Option<String>,
    q: HashMap<String, String>,
) -> Response {
    let operation = Operation::ListCallbacks;
    serve(&sim, &kill, operation, async {
        try_response!(only_documented(&sim, operation, &q, CALLBACK_QUERY));
        if let Some(service) = &service
            && !gms::is_service_name(service)
        {
            return bad_id(&sim, operation, "service name");
        }
        let Some(number) = q.get(gms::Q_CUSTOMER_NUMBER).cloned() else {
            sim.journal.record(operation.as_str(), "no `_customer_number` to query by".to_owned());
            return cs_error(
                StatusCode::BAD_REQUEST,
                "a property to query by is required",
                &format!("{GMS_EXCEPTIONS}.CallbackExceptionBadRequest"),
            );
        };
        let found =
            try_response!(blocking(&sim, move |s| s.callbacks(&number, service.as_deref())).await);
        json(&found)
    })
    .await
}

async fn all_callbacks(State(sim): Shared, ConnectInfo(kill): Conn, Query(q): Params) -> Response {
    callbacks(sim, kill, None, q).await
}

async fn service_callbacks(
    State(sim): Shared,
    ConnectInfo(kill): Conn,
    Path(service): Path<String>,
    Query(q): Params,
) -> Response {
    callbacks(sim, kill, Some(service), q).await
}

async fn cancel_callback(
    State(sim): Shared,
    ConnectInfo(kill): Conn,
    Path((service, id)): Path<(String, String)>,
) -> Response {
    let operation = Operation::CancelCallback;
    serve(&sim, &kill, operation, async {
        if !gms::is_service_name(&service) {
            return bad_id(&sim, operation, "service name");
        }
        let Ok(id) = CallbackId::new(&id) else {
            return bad_id(&sim, operation, "callback id");
        };
        if try_response!(blocking(&sim, move |s| s.cancel_callback(&service, id.as_str())).await) {
            json(&serde_json::json!({}))
        } else {
            cs_error(
                StatusCode::NOT_FOUND,
                "callback not found",
                &format!("{GMS_EXCEPTIONS}.CallbackExceptionNotFound"),
            )
        }
    })
    .await
}
