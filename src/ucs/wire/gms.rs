//! The GMS Callback Services API: how pending callbacks are found and cancelled.
//!
//! Page: GMS 8.5.x API, "Callback Services API"
//! (docs.genesys.com/Documentation/GMS/8.5.2/API/CallbackServicesAPI). Callback services live
//! under `/genesys/1/service/callback/{callback-execution-name}`; a query by properties returns
//! records that always carry `_id`, `_desired_time`, `_service_name`, `_callback_state`,
//! `_expiration_time` and `_customer_number` (and the keys of the service's
//! `_customer_lookup_keys` option); a record is cancelled with
//! `DELETE /genesys/1/service/callback/{service}/{id}`. Errors are `{"message","exception"}`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// GMS callbacks, under the GMS base URL: `/genesys/1/service/callback[/{service}[/{id}]]`.
pub const CALLBACKS: &str = "/genesys/1/service/callback";

/// Query parameter of the callback query: the number the customer asked to be called on.
///
/// **Assumption** for the query *across* services (no `{service}` segment): the Callback
/// Services API page documents the query by properties per service; Genesys's own public
/// tests query `GET /genesys/1/service/callback?_customer_number=…` across every service, and
/// that is what is sent, so a callback is found whatever service holds it. The state is not
/// filtered on the server (the tests' `_callback_state=!COMPLETED` syntax is not on the page):
/// every record comes back and the client decides what is pending.
pub const Q_CUSTOMER_NUMBER: &str = "_customer_number";

/// The queries that find a contact's callbacks: `_customer_number` with each of its phone
/// numbers ([`phone_numbers`]), then each configured lookup key (GMS property -> contact
/// attribute) with each value of that attribute. Personal data: never log the result.
///
/// **Assumption** for the lookup keys: the page says records carry the keys of the service's
/// `_customer_lookup_keys` option and can be queried by properties; which keys a deployment has
/// is its configuration, so they come from the environment (`gms.lookupKeys`), none by default.
pub fn lookups(
    attributes: &BTreeMap<String, Vec<String>>,
    lookup_keys: &[(String, String)],
) -> Vec<(String, String)> {
    let mut queries: Vec<(String, String)> = phone_numbers(attributes)
        .into_iter()
        .map(|number| (Q_CUSTOMER_NUMBER.to_owned(), number))
        .collect();
    for (property, attribute) in lookup_keys {
        for value in attributes.get(attribute).into_iter().flatten() {
            let query = (property.clone(), value.clone());
            if !value.trim().is_empty() && !queries.contains(&query) {
                queries.push(query);
            }
        }
    }
    queries
}

/// `_callback_state`: `SCHEDULED`, `QUEUED`, `ROUTING`, `PROCESSING`, `COMPLETED`, ...
pub const F_STATE: &str = "_callback_state";

/// A callback record as the callback query lists it (the always-returned keys; any others are
/// ignored).
#[derive(Clone, Serialize, Deserialize)]
pub struct WireCallback {
    /// The callback id.
    #[serde(rename = "_id")]
    pub id: String,
    /// The callback service (execution name) that holds it: where it is cancelled.
    #[serde(rename = "_service_name")]
    pub service_name: String,
    /// `SCHEDULED`, `QUEUED`, `ROUTING`, `PROCESSING`, `COMPLETED`, ...
    #[serde(rename = "_callback_state")]
    pub state: String,
    /// When the customer asked to be called: the page's examples show ISO 8601 with a zone
    /// (`2016-06-14T13:05:00.000Z`). Kept as text; the client parses it if it can.
    #[serde(rename = "_desired_time", default)]
    pub desired_time: Option<String>,
    /// The number to call. Personal data.
    #[serde(rename = "_customer_number", default)]
    pub customer_number: String,
}

impl fmt::Debug for WireCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireCallback")
            .field("id", &self.id)
            .field("service_name", &self.service_name)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// The callback query's answer.
///
/// **Assumption** (tolerant): an array of records, or a single record object when there is
/// exactly one, as a public GMS client library accepts both.
#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
#[allow(missing_debug_implementations)] // holds phone numbers: no Debug at all
pub enum CallbacksResult {
    /// Several records (or none).
    Many(Vec<WireCallback>),
    /// Exactly one record.
    One(Box<WireCallback>),
}

impl CallbacksResult {
    /// The records, whatever the shape.
    pub fn into_vec(self) -> Vec<WireCallback> {
        match self {
            CallbacksResult::Many(records) => records,
            CallbacksResult::One(record) => vec![*record],
        }
    }
}

/// Whether a GMS service (execution) name is safe as a URL segment: 1 to 64 letters, digits,
/// `_`, `-` or `.`, as the environments schema allowed for `gms.service`.
pub fn is_service_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The contact's phone numbers to look callbacks up by: every value of every attribute whose
/// name says it holds a phone number, as stored and, when different, reduced to its digits
/// (with a leading `+` kept), deduplicated. Personal data: never log the result.
///
/// **Assumption**: UCS's standard contact attribute is `PhoneNumber`; deployments add others
/// (`MobilePhone`, `HomePhone`, `WorkPhone`, ...), so any attribute whose name contains `phone`
/// or `mobile` (any case) counts. GMS matches `_customer_number` as stored, and the number may
/// have been entered in another format than UCS's, hence both forms.
pub fn phone_numbers(attributes: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut numbers: Vec<String> = Vec::new();
    for (name, values) in attributes {
        let lower = name.to_ascii_lowercase();
        if !(lower.contains("phone") || lower.contains("mobile")) {
            continue;
        }
        for value in values {
            let trimmed = value.trim();
            if trimmed.is_empty() {
                continue;
            }
            let mut digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
            if digits.is_empty() {
                continue;
            }
            if trimmed.starts_with('+') {
                digits.insert(0, '+');
            }
            for form in [trimmed.to_owned(), digits] {
                if !numbers.contains(&form) {
                    numbers.push(form);
                }
            }
        }
    }
    numbers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_come_from_every_phone_attribute_in_both_forms() {
        let attributes = BTreeMap::from([
            ("PhoneNumber".to_owned(), vec!["+44 20 7946 0958".to_owned()]),
            ("MobilePhone".to_owned(), vec!["07700900123".to_owned()]),
            ("EmailAddress".to_owned(), vec!["a@b.example".to_owned()]),
        ]);
        assert_eq!(
            phone_numbers(&attributes),
            ["07700900123", "+44 20 7946 0958", "+442079460958"]
        );
    }

    #[test]
    fn lookup_keys_add_queries_after_the_phone_numbers() {
        let attributes = BTreeMap::from([
            ("PhoneNumber".to_owned(), vec!["5551234".to_owned()]),
            ("EmailAddress".to_owned(), vec!["a@b.example".to_owned(), " ".to_owned()]),
        ]);
        let keys = [
            ("_customer_email".to_owned(), "EmailAddress".to_owned()),
            ("_loyalty_id".to_owned(), "LoyaltyId".to_owned()),
        ];
        assert_eq!(
            lookups(&attributes, &keys),
            [
                (Q_CUSTOMER_NUMBER.to_owned(), "5551234".to_owned()),
                ("_customer_email".to_owned(), "a@b.example".to_owned())
            ]
        );
    }

    #[test]
    fn the_callback_answer_may_be_an_array_or_one_object() {
        let one = r#"{"_id":"a-1","_service_name":"cb","_callback_state":"QUEUED",
            "_desired_time":"2016-06-14T13:05:00.000Z","_expiration_time":"x","_customer_number":"1"}"#;
        let parsed: CallbacksResult = serde_json::from_str(one).unwrap();
        assert_eq!(parsed.into_vec().len(), 1);
        let many: CallbacksResult = serde_json::from_str(&format!("[{one},{one}]")).unwrap();
        assert_eq!(many.into_vec().len(), 2);
        let none: CallbacksResult = serde_json::from_str("[]").unwrap();
        assert!(none.into_vec().is_empty());
    }
}
