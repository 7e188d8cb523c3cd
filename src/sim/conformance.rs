//! How the simulator holds its callers to Genesys's documented UCS 9.1 REST API: the documented
//! fault shape (`FaultCode`/`FaultString`), strict parameter checking, and the conformance
//! journal of every non-conforming request (exposed on `/sim/stats` and
//! [`super::RunningSim::conformance`]).
//!
//! Pages this follows (docs.genesys.com, stored copies read through the `pages` corpus):
//! - `Documentation/UCS/latest/RESTAPI/Welcome` (also `9.1.x`): the URI form, POST/PUT bodies
//!   `{"Parameters":{...},"UserData":{...}}`, GET/DELETE with query parameters, the verbs
//!   (POST creates, PUT updates, GET reads, DELETE deletes), JSON answers.
//! - `Documentation/UCS/latest/RESTAPI/NewBehaviors`: faults carry a `FaultCode` and a
//!   `FaultString`: `204 Incorrect value for parameter '<name>', expected '<what>' but was
//!   '<what>'` and `510 Msg: Interaction '<id>' not found in database`.
//! - `Documentation/UCS/latest/RESTAPI/OMContactsIdentifyContact`: its fault table,
//!   `201 Missing parameter '<name>'`.
//!
//! The journal never holds a value a caller sent (values may be personal data): only the
//! operation and what was wrong with the request's shape.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// `FaultCode` of a missing mandatory parameter (documented: IdentifyContact's fault table).
pub(crate) const FAULT_MISSING_PARAMETER: u32 = 201;
/// `FaultCode` of a parameter UCS does not know.
///
/// **Assumption**: no public page gives the code UCS answers for an unknown parameter; 202 sits
/// between the documented 201 (missing) and 204 (incorrect value).
pub(crate) const FAULT_UNKNOWN_PARAMETER: u32 = 202;
/// `FaultCode` of a request sent with the wrong HTTP verb.
///
/// **Assumption**: not documented; the Welcome page only says which verb each kind of method
/// takes.
pub(crate) const FAULT_WRONG_VERB: u32 = 203;
/// `FaultCode` of a parameter with an incorrect value (documented: NewBehaviors).
pub(crate) const FAULT_INCORRECT_VALUE: u32 = 204;
/// `FaultCode` of an object that is not in the database (documented: NewBehaviors, for an
/// interaction; used for contacts and documents alike — **Assumption**).
pub(crate) const FAULT_NOT_FOUND: u32 = 510;
/// `FaultCode` of a server-side failure.
///
/// **Assumption**: not documented; used with HTTP 500 (permanent) and 503 (transient).
pub(crate) const FAULT_SERVER: u32 = 500;

/// A UCS fault: the documented body `{"FaultCode": <int>, "FaultString": "<text>"}` and the
/// HTTP status it is sent with.
///
/// **Assumption**: the pages show the pair as `FaultCode=510 FaultString=...` (ESP style) and say
/// REST answers are JSON key/value documents, so the body is a JSON object with these two keys,
/// the code an integer. The HTTP statuses are not documented: 400 for parameter faults, 404 for
/// "not found in database", 405 for a wrong verb, 500/503 for server failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UcsFault {
    /// The fault code.
    #[serde(rename = "FaultCode")]
    pub fault_code: u32,
    /// The fault text.
    #[serde(rename = "FaultString")]
    pub fault_string: String,
    /// The HTTP status (not serialized).
    #[serde(skip)]
    pub status: u16,
}

impl UcsFault {
    /// A fault with an HTTP status.
    pub(crate) fn new(status: StatusCode, code: u32, text: impl Into<String>) -> Self {
        Self { fault_code: code, fault_string: text.into(), status: status.as_u16() }
    }

    /// `201 Missing parameter '<name>'`.
    pub(crate) fn missing(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            FAULT_MISSING_PARAMETER,
            format!("Missing parameter '{name}'"),
        )
    }

    /// `202 Unknown parameter '<name>'`.
    pub(crate) fn unknown(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            FAULT_UNKNOWN_PARAMETER,
            format!("Unknown parameter '{name}'"),
        )
    }

    /// `204 Incorrect value for parameter '<name>', expected '<expected>' but was '<was>'`.
    /// `was` describes the value's kind, never the value itself.
    pub(crate) fn incorrect(name: &str, expected: &str, was: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            FAULT_INCORRECT_VALUE,
            format!(
                "Incorrect value for parameter '{name}', expected '{expected}' but was '{was}'"
            ),
        )
    }

    /// `510 Msg: <Entity> '<id>' not found in database`.
    pub(crate) fn not_found(entity: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            FAULT_NOT_FOUND,
            format!("Msg: {entity} '{id}' not found in database"),
        )
    }

    /// `203`: the method takes another verb.
    pub(crate) fn wrong_verb(method: &str, expected: &str, was: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            FAULT_WRONG_VERB,
            format!("Method '{method}' is called with {expected}, not {was}"),
        )
    }

    /// A server failure, HTTP `status` (500 or 503).
    pub(crate) fn server(status: StatusCode, server: &str, text: &str) -> Self {
        Self::new(status, FAULT_SERVER, format!("Server: {server} Msg: {text}"))
    }
}

impl IntoResponse for UcsFault {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, axum::Json(self)).into_response()
    }
}

/// One kind of non-conforming request: which operation, what was wrong (never a value), and
/// how many times it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonConformity {
    /// The operation (`IdentifyContact`, `StopInteraction`, ...).
    pub operation: String,
    /// What was wrong, e.g. `unknown parameter FromIndex`.
    pub problem: String,
    /// How many requests had it.
    pub count: u64,
}

/// What the journal holds: the non-conforming requests, the documented-but-dangerous ones, and
/// the contacts identification created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conformance {
    /// Every kind of request the documentation does not allow, in the order first seen.
    pub non_conforming: Vec<NonConformity>,
    /// Requests the documentation allows but that a GDPR tool must not send: an
    /// `IdentifyContact` without `"CreateContact":"false"` (UCS's default creates a contact),
    /// and each contact so created.
    pub dangerous: Vec<NonConformity>,
    /// Contacts created by `IdentifyContact` (its dangerous default).
    pub contacts_created: u64,
}

impl Conformance {
    /// Whether no request was non-conforming or dangerous and no contact was created.
    pub fn is_clean(&self) -> bool {
        self.non_conforming.is_empty() && self.dangerous.is_empty() && self.contacts_created == 0
    }

    /// Every dangerous request's problem.
    pub fn problems_dangerous(&self) -> Vec<&str> {
        self.dangerous.iter().map(|n| n.problem.as_str()).collect()
    }

    /// The problems recorded for `operation`.
    pub fn problems(&self, operation: &str) -> Vec<&str> {
        self.non_conforming
            .iter()
            .filter(|n| n.operation == operation)
            .map(|n| n.problem.as_str())
            .collect()
    }
}

/// The kinds seen, in order, and where each (operation, problem) is in the list.
type Entries = (Vec<NonConformity>, BTreeMap<(String, String), usize>);

/// The running journal. Deduplicated by (operation, problem), so it stays small however many
/// requests arrive.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    entries: Mutex<Entries>,
    dangerous: Mutex<Entries>,
    contacts_created: AtomicU64,
}

fn add(entries: &Mutex<Entries>, operation: &str, problem: String) {
    let mut guard = match entries.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    let (list, index) = &mut *guard;
    let key = (operation.to_owned(), problem);
    match index.get(&key) {
        Some(&at) => {
            if let Some(entry) = list.get_mut(at) {
                entry.count += 1;
            }
        }
        None => {
            index.insert(key.clone(), list.len());
            list.push(NonConformity { operation: key.0, problem: key.1, count: 1 });
        }
    }
}

fn list(entries: &Mutex<Entries>) -> Vec<NonConformity> {
    match entries.lock() {
        Ok(guard) => guard.0.clone(),
        Err(poisoned) => poisoned.into_inner().0.clone(),
    }
}

impl Journal {
    /// Records one non-conforming request.
    pub(crate) fn record(&self, operation: &str, problem: impl Into<String>) {
        let problem = problem.into();
        tracing::warn!(operation, problem = %problem, "non-conforming UCS request");
        add(&self.entries, operation, problem);
    }

    /// Records a documented but dangerous request.
    pub(crate) fn record_dangerous(&self, operation: &str, problem: impl Into<String>) {
        let problem = problem.into();
        tracing::warn!(operation, problem = %problem, "dangerous UCS request");
        add(&self.dangerous, operation, problem);
    }

    /// Records a fault answered for a non-conforming request, and returns it.
    pub(crate) fn refuse(
        &self,
        operation: &str,
        problem: impl Into<String>,
        fault: UcsFault,
    ) -> UcsFault {
        self.record(operation, problem);
        fault
    }

    /// Counts a contact created by identification.
    pub(crate) fn contact_created(&self) {
        self.contacts_created.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot.
    pub(crate) fn snapshot(&self) -> Conformance {
        Conformance {
            non_conforming: list(&self.entries),
            dangerous: list(&self.dangerous),
            contacts_created: self.contacts_created.load(Ordering::Relaxed),
        }
    }
}

/// One documented (or, where marked, assumed) query parameter of a GET/DELETE method.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Param {
    pub(crate) name: &'static str,
    pub(crate) mandatory: bool,
}

/// A mandatory parameter.
pub(crate) const fn required(name: &'static str) -> Param {
    Param { name, mandatory: true }
}

/// An optional parameter.
pub(crate) const fn optional(name: &'static str) -> Param {
    Param { name, mandatory: false }
}

/// Checks a GET/DELETE query against the method's parameters: every name known, with its
/// documented casing, given once; every mandatory one present. Answers the parameters by name,
/// or the fault to send (the request is journaled).
pub(crate) fn check_query<'a>(
    journal: &Journal,
    operation: &str,
    pairs: &'a [(String, String)],
    spec: &[Param],
) -> Result<BTreeMap<&'static str, &'a str>, UcsFault> {
    let mut found = BTreeMap::new();
    for (name, value) in pairs {
        match spec.iter().find(|p| p.name == name) {
            Some(param) => {
                if found.insert(param.name, value.as_str()).is_some() {
                    return Err(journal.refuse(
                        operation,
                        format!("parameter {} given more than once", param.name),
                        UcsFault::incorrect(param.name, "one value", "several values"),
                    ));
                }
            }
            None => {
                let problem = match spec.iter().find(|p| p.name.eq_ignore_ascii_case(name)) {
                    Some(param) => format!(
                        "parameter {} has the wrong casing (documented: {})",
                        printable(name),
                        param.name
                    ),
                    None => format!("unknown parameter {}", printable(name)),
                };
                return Err(journal.refuse(
                    operation,
                    problem,
                    UcsFault::unknown(&printable(name)),
                ));
            }
        }
    }
    check_mandatory(journal, operation, spec, |name| found.contains_key(name))?;
    Ok(found)
}

/// Journals and refuses the first mandatory parameter that `present` says is missing.
pub(crate) fn check_mandatory(
    journal: &Journal,
    operation: &str,
    spec: &[Param],
    present: impl Fn(&str) -> bool,
) -> Result<(), UcsFault> {
    match spec.iter().find(|p| p.mandatory && !present(p.name)) {
        Some(param) => Err(journal.refuse(
            operation,
            format!("missing parameter {}", param.name),
            UcsFault::missing(param.name),
        )),
        None => Ok(()),
    }
}

/// A parameter name as it may be shown: names are not personal data, but a caller could put
/// anything there, so only a short run of plain characters is kept.
pub(crate) fn printable(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        .take(64)
        .collect();
    if cleaned.is_empty() { "(unprintable)".to_owned() } else { cleaned }
}

/// A documented `"true"`/`"false"` string parameter. `None` when absent.
pub(crate) fn string_bool(
    journal: &Journal,
    operation: &str,
    name: &str,
    value: Option<&str>,
) -> Result<Option<bool>, UcsFault> {
    match value {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(journal.refuse(
            operation,
            format!("{name} is not \"true\" or \"false\""),
            UcsFault::incorrect(name, "true or false", "another string"),
        )),
    }
}

/// The kind of a JSON value, for fault texts and the journal (never the value).
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a JSON boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a KVList",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_deduplicates_and_keeps_first_seen_order() {
        let journal = Journal::default();
        journal.record("A", "x");
        journal.record("B", "y");
        journal.record("A", "x");
        let snapshot = journal.snapshot();
        assert_eq!(snapshot.non_conforming.len(), 2);
        assert_eq!(snapshot.non_conforming.first().map(|n| n.count), Some(2));
        assert!(!snapshot.is_clean());
    }

    #[test]
    fn queries_are_checked_by_exact_name() {
        let journal = Journal::default();
        let spec = [required("ContactId"), optional("DataSource")];
        let pairs = vec![("contactid".to_owned(), "x".to_owned())];
        let fault = check_query(&journal, "Op", &pairs, &spec).unwrap_err();
        assert_eq!(fault.fault_code, FAULT_UNKNOWN_PARAMETER);
        assert_eq!(
            journal.snapshot().problems("Op"),
            ["parameter contactid has the wrong casing (documented: ContactId)"]
        );
        let fault = check_query(&journal, "Op", &[], &spec).unwrap_err();
        assert_eq!(fault.fault_string, "Missing parameter 'ContactId'");
    }
}
