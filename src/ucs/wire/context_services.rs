//! Context Services: a customer's profile, and its services with their states and tasks.
//!
//! Pages (Context Services 8.5.x API reference, docs.genesys.com/Documentation/CS/8.5.1/API/...):
//! - `QueryCustomerProfile`: `GET /profiles/${customer_id}` answers the profile, `customer_id`
//!   and the attributes at the top level.
//! - `DeleteCustomerProfile` (CS/latest): `DELETE /profiles/${customer_id}`, 200 or 404; since
//!   8.5.0 the service, state and task data are no longer handled by UCS and are **not**
//!   deleted with the profile: they are deleted one service at a time, below.
//! - `QueryServices` (CS/8.5.1, modified in 8.5.111): `GET /genesys/1/cs/customers/${customer_id}/services`
//!   (the customer's services) and `GET /genesys/1/cs/services/anonymous/${contact_key}`
//!   (services started before the customer was identified, keyed by a "contact key" such as
//!   the number the customer called from). Both answer `Service[]`.
//! - `QueryStates` / `QueryTasks`: `GET /genesys/1/cs/services/${service_id}/states` and
//!   `.../tasks` answer `State[]` and `Task[]` (all of them, active and completed).
//! - `DeleteServiceByID` (CS/8.5.1): `DELETE /genesys/1/cs/services/${service_id}` deletes the
//!   service with its states and tasks; 200 OK; an unknown id answers **400** with
//!   `{"message":"There are no service found for : …","exception":"…NotFoundException"}`.
//! - Errors, on every page: `{"message": …, "exception": …}`.
//!
//! The `/genesys/1/cs/...` services API is the one GMS serves (the pages' "CS API proxy GMS"
//! figure), so those calls go to the GMS base URL; the profile calls go to the Context
//! Services (UCS) base URL.

use serde::{Deserialize, Serialize};

/// Context Services profiles, under the Context Services base URL: `/profiles/{id}`.
pub const PROFILES: &str = "/profiles";

/// The profile's id field.
///
/// **Assumption**: the profile id is the UCS contact id (Context Services runs inside UCS and
/// its customer profiles are the UCS contacts; the page limits `customer_id` to 16 characters,
/// as UCS contact ids are). A deployment that keys profiles otherwise needs a lookup here.
pub const PROFILE_ID_FIELD: &str = "customer_id";

/// The customer's services, under the GMS base URL: `/genesys/1/cs/customers/{id}/services`.
pub const CUSTOMERS: &str = "/genesys/1/cs/customers";
/// The last segment of the customer's services path.
pub const SERVICES_SEGMENT: &str = "services";
/// A service by id (`/genesys/1/cs/services/{id}`), and its `/states` and `/tasks`.
pub const SERVICES: &str = "/genesys/1/cs/services";
/// Anonymous services by contact key: `/genesys/1/cs/services/anonymous/{contact_key}`.
pub const ANONYMOUS_SERVICES: &str = "/genesys/1/cs/services/anonymous";
/// The states of a service: `{SERVICES}/{id}/states`.
pub const STATES_SEGMENT: &str = "states";
/// The tasks of a service: `{SERVICES}/{id}/tasks`.
pub const TASKS_SEGMENT: &str = "tasks";

/// A service's id field. The pages type it "integer" and show ids such as
/// `361-a3793cef-d559-4f9f-a95d-64555a4ba371` in their examples: the client takes a number or
/// a string (see [`service_id_text`]).
pub const SERVICE_ID_FIELD: &str = "service_id";

/// The error body of Context Services and GMS: `{"message": ..., "exception": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CsError {
    /// Human text; may quote ids or keys, so it is never copied into errors.
    #[serde(default)]
    pub message: String,
    /// The Java exception class, e.g.
    /// `com.genesyslab.gsg.services.contextservices.exceptions.NotFoundException`.
    #[serde(default)]
    pub exception: String,
}

impl CsError {
    /// The exception's class name without its package (safe as an error code).
    pub fn short_exception(&self) -> &str {
        self.exception.rsplit('.').next().unwrap_or_default()
    }

    /// Whether the exception says "not found" (`NotFoundException`,
    /// `CallbackExceptionNotFound`, ...).
    pub fn is_not_found(&self) -> bool {
        self.short_exception().contains("NotFound")
    }
}

/// A service's id as text, from a number or a string; `None` when it is neither or is not safe
/// as a URL segment (1 to 64 letters, digits, `-` or `_`).
pub fn service_id_text(value: &serde_json::Value) -> Option<String> {
    let text = match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Number(number) if number.is_u64() => number.to_string(),
        _ => return None,
    };
    ((1..=64).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_not_found_answer_of_delete_service_is_recognised() {
        // DeleteServiceByID's documented error answer (400 Bad Request).
        let body = r#"{
            "message": "There are no service found for : 361-a3793cef-d559-4f9f-a95d-64555a4ba371",
            "exception": "com.genesyslab.gsg.services.contextservices.exceptions.NotFoundException"
        }"#;
        let error: CsError = serde_json::from_str(body).unwrap();
        assert!(error.is_not_found());
        assert_eq!(error.short_exception(), "NotFoundException");
    }

    #[test]
    fn service_ids_are_numbers_or_safe_strings() {
        assert_eq!(service_id_text(&serde_json::json!(15)).as_deref(), Some("15"));
        assert_eq!(
            service_id_text(&serde_json::json!("361-a3793cef-d559-4f9f-a95d-64555a4ba371"))
                .as_deref(),
            Some("361-a3793cef-d559-4f9f-a95d-64555a4ba371")
        );
        assert_eq!(service_id_text(&serde_json::json!("../x")), None);
        assert_eq!(service_id_text(&serde_json::json!(-1)), None);
    }
}
