//! The Genesys scripts' TARGET (`exportUcsInteractions.sh` and `deleteContact.sh`), and the
//! in-memory request `ucs-gdpr export` and `ucs-gdpr delete` build from it.
//!
//! A TARGET is one contact id, a comma-separated list of them, or a JSON identification request
//! such as `{"TenantId":101,"EmailAddress":"jane.doe@company.com"}`. The request made from it
//! goes through the same schema and rules as a manifest file, so the commands are not a second
//! code path: they feed the same planner and executor.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{Context, Diagnostic, FileKind, FileReport, Limits, Request, rules, typed, yaml};
use crate::audit::SubjectDigester;
use crate::ucs::ContactId;

/// The forms a TARGET may take, for error messages.
pub const ACCEPTED_FORMS: &str = "\
a TARGET is one of:
  0001SaD2PVY4312K                                       one contact id (16 letters or digits)
  \"0001SaD2PVY4312K,0001SaD2PVY4315J\"                    a comma-separated list of contact ids, quoted
  '{\"TenantId\":101,\"EmailAddress\":\"name@example.com\"}'   a JSON identification request, quoted; TenantId is required";

/// Who a script command acts on.
#[derive(Clone, PartialEq, Eq)]
pub enum Target {
    /// Contacts named by id, in the order given, each once.
    Ids(Vec<ContactId>),
    /// Contacts found by `TenantId` and attribute values (personal data).
    Identification(BTreeMap<String, Value>),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ids(ids) => f.debug_tuple("Ids").field(ids).finish(),
            // The values are personal data: only the attribute names.
            Self::Identification(criteria) => {
                f.debug_tuple("Identification").field(&criteria.keys().collect::<Vec<_>>()).finish()
            }
        }
    }
}

/// Why a TARGET is not one of the accepted forms. Messages never quote the value (it may be
/// an e-mail address typed in the wrong place).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Nothing given.
    #[error("the TARGET is empty")]
    Empty,
    /// An item of an id list is not a contact id.
    #[error(
        "item {position} of the TARGET is not a contact id: it has {len} character(s), a contact \
         id has 16 letters or digits"
    )]
    NotAnId {
        /// 1-based position in the list.
        position: usize,
        /// Its length in characters.
        len: usize,
    },
    /// The TARGET starts like JSON but is not valid JSON.
    #[error("the TARGET is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not an object.
    #[error("the TARGET's JSON must be an object such as {{\"TenantId\":101,...}}")]
    NotAnObject,
    /// No `TenantId`.
    #[error("the TARGET's JSON has no `TenantId`: an identification request names its tenant")]
    NoTenant,
    /// `TenantId` is not a tenant number.
    #[error("the TARGET's `TenantId` must be a whole number such as 101")]
    BadTenant,
    /// Only `TenantId`: that would match every contact of the tenant.
    #[error("the TARGET's JSON names no attribute besides `TenantId` (it would match everyone)")]
    NoAttributes,
    /// An attribute value that is not a string or a number.
    #[error("the TARGET's attribute `{0}` must be a string or a number")]
    BadAttribute(String),
}

impl Target {
    /// Parses a TARGET exactly as the scripts take it.
    ///
    /// # Errors
    /// A TARGET that is neither an id list nor a JSON identification request with `TenantId`.
    pub fn parse(text: &str) -> Result<Target, TargetError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TargetError::Empty);
        }
        if text.starts_with('{') || text.starts_with('[') || text.starts_with('"') {
            return Self::parse_json(text);
        }
        let mut ids: Vec<ContactId> = Vec::new();
        for (index, item) in text.split(',').enumerate() {
            let item = item.trim();
            let id = ContactId::new(item).map_err(|_| TargetError::NotAnId {
                position: index + 1,
                len: item.chars().count(),
            })?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(Target::Ids(ids))
    }

    fn parse_json(text: &str) -> Result<Target, TargetError> {
        let value: Value =
            serde_json::from_str(text).map_err(|error| TargetError::Json(error.to_string()))?;
        let Value::Object(map) = value else { return Err(TargetError::NotAnObject) };
        let tenant = map.get("TenantId").ok_or(TargetError::NoTenant)?;
        let tenant = match tenant {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
        .filter(|t| u32::try_from(*t).is_ok())
        .ok_or(TargetError::BadTenant)?;
        let mut criteria = BTreeMap::new();
        criteria.insert("TenantId".to_owned(), Value::from(tenant));
        for (name, value) in map {
            if name == "TenantId" {
                continue;
            }
            match value {
                Value::String(_) | Value::Number(_) => {
                    criteria.insert(name, value);
                }
                _ => return Err(TargetError::BadAttribute(name)),
            }
        }
        if criteria.len() < 2 {
            return Err(TargetError::NoAttributes);
        }
        Ok(Target::Identification(criteria))
    }

    /// The request subjects: ids as `contactId`, an identification request as one `match`.
    /// `expect` is `all` for an export (the scripts export every match) and `one` for a delete
    /// (several matches block: the operator names the contacts by id).
    fn subjects(&self, every_match: bool) -> Value {
        match self {
            Target::Ids(ids) => ids.iter().map(|id| json!({ "contactId": id.as_str() })).collect(),
            Target::Identification(criteria) => json!([{
                "match": criteria,
                "expect": if every_match { "all" } else { "one" },
            }]),
        }
    }

    /// The subjects with identification requests replaced by their keyed digest, for hashes
    /// that end up in the audit trail and the plan.
    fn digested(&self, digester: &SubjectDigester) -> Value {
        match self {
            Target::Ids(ids) => ids.iter().map(|id| Value::from(id.as_str())).collect(),
            Target::Identification(criteria) => {
                let object = Value::Object(criteria.clone().into_iter().collect());
                json!({ "match": digester.digest(&object).as_str() })
            }
        }
    }
}

/// What a script command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `exportUcsInteractions.sh`: the `export-only` runbook.
    Export,
    /// `deleteContact.sh`: the environment's forget-me runbook; exports first, deletes only
    /// with `confirm` (`-confirm`).
    Delete {
        /// The script's `-confirm`.
        confirm: bool,
    },
}

impl Operation {
    /// The prefix of the generated request id.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Operation::Export => "EXPORT",
            Operation::Delete { .. } => "DELETE",
        }
    }
}

/// Everything a script command's request says besides its TARGET.
#[derive(Debug, Clone)]
pub struct ScriptRequest<'a> {
    /// What to do.
    pub operation: Operation,
    /// The environment's name.
    pub environment: &'a str,
    /// The runbook (`export-only`, or the environment's forget runbook).
    pub runbook: &'a str,
    /// How the request arrived (`email`, `chat`, `voice`, `web`, `letter`).
    pub channel: &'a str,
    /// Who verified the requester (a login name).
    pub verified_by: &'a str,
    /// When the request was received (now).
    pub received_at: jiff::Timestamp,
}

/// A request built from a TARGET, checked like a manifest file.
#[derive(Debug)]
pub struct BuiltRequest {
    /// The typed request.
    pub request: Request,
    /// What stands in for the manifest's path in the plan (no personal data).
    pub manifest_path: String,
    /// sha256 of the request with identification requests replaced by their keyed digest.
    pub manifest_sha256: String,
}

impl ScriptRequest<'_> {
    /// The request id: `EXPORT-<yyyymmdd>-<8 hex>` or `DELETE-...`, the hex from a hash of the
    /// operation, the time to the nanosecond and the subjects (identification requests as their
    /// keyed digest, so the id reveals nothing about them). The same inputs give the same id.
    pub fn request_id(&self, target: &Target, digester: &SubjectDigester) -> String {
        let seed = json!({
            "operation": self.operation.id_prefix(),
            "receivedAt": self.received_at.to_string(),
            "environment": self.environment,
            "subjects": target.digested(digester),
        });
        let hash = crate::canonical::sha256_hex(&crate::canonical::to_vec(&seed));
        let date = self.received_at.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
        format!(
            "{}-{:04}{:02}{:02}-{}",
            self.operation.id_prefix(),
            date.year(),
            date.month(),
            date.day(),
            hash.get(..8).unwrap_or(&hash)
        )
    }

    /// The request document (a manifest's content), before validation.
    fn document(&self, id: &str, target: &Target) -> Value {
        let mut spec = json!({
            "environment": self.environment,
            "runbook": self.runbook,
            "subjects": target.subjects(self.operation == Operation::Export),
            // Every match is exported and the forget runbooks export before they delete, as
            // the Genesys procedure does; both data sources, attachments inlined.
            "export": {},
        });
        if let Operation::Delete { confirm } = self.operation
            && let Some(spec) = spec.as_object_mut()
        {
            spec.insert("delete".into(), json!({ "confirm": confirm }));
        }
        json!({
            "apiVersion": "ucs-gdpr/v1",
            "kind": "Request",
            "metadata": {
                "id": id,
                "receivedAt": self.received_at.to_string(),
                "channel": self.channel,
                "verifiedBy": self.verified_by,
            },
            "spec": spec,
        })
    }

    /// Builds the request and checks it with the request schema and rules, as `plan` checks a
    /// manifest file.
    ///
    /// # Errors
    /// The error diagnostics (for example an environment or runbook the context does not know,
    /// or a `--channel` the schema does not accept).
    pub fn build(
        &self,
        target: &Target,
        digester: &SubjectDigester,
        context: &Context<'_>,
    ) -> Result<BuiltRequest, Vec<Diagnostic>> {
        let id = self.request_id(target, digester);
        let document = self.document(&id, target);
        let text = serde_json::to_string_pretty(&document).unwrap_or_default();
        let parsed = yaml::load_bytes(text.as_bytes(), &Limits::MANIFEST).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| Diagnostic::error(e.kind.code(), e.message, e.span))
                .collect::<Vec<_>>()
        })?;
        let name = format!("(ucs-gdpr {} {id})", self.operation.id_prefix().to_lowercase());
        let mut report = FileReport::new(std::path::Path::new(&name), Arc::new(String::new()));
        let request = typed::<Request>(FileKind::Request, &parsed, &mut report);
        if let Some(request) = &request {
            report.diagnostics.extend(rules::check_request(request, &parsed, context));
        }
        let errors: Vec<Diagnostic> = report
            .diagnostics
            .into_iter()
            .filter(|d| d.severity == super::Severity::Error)
            .collect();
        match request {
            Some(request) if errors.is_empty() => {
                let mut hashed = document;
                if let Some(spec) = hashed.pointer_mut("/spec/subjects") {
                    *spec = target.digested(digester);
                }
                Ok(BuiltRequest {
                    request,
                    manifest_path: name,
                    manifest_sha256: crate::canonical::sha256_hex(&crate::canonical::to_vec(
                        &hashed,
                    )),
                })
            }
            _ => Err(errors),
        }
    }
}

/// An attribute value masked for display: `j***@company.com`, `J***`, `+44 *** *958`.
pub fn mask(value: &str) -> String {
    let value = value.trim();
    let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
    if let Some((local, domain)) = value.split_once('@') {
        return format!("{}***@{domain}", first(local));
    }
    let digits: Vec<char> = value.chars().filter(char::is_ascii_digit).collect();
    let phone_like =
        digits.len() >= 6 && value.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
    if phone_like {
        let prefix = if value.starts_with('+') {
            value.split([' ', '-']).next().unwrap_or("+").to_owned() + " "
        } else {
            String::new()
        };
        let tail: String = digits.iter().skip(digits.len().saturating_sub(3)).collect();
        return format!("{prefix}*** *{tail}");
    }
    if value.is_empty() { String::new() } else { format!("{}***", first(value)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_a_list_and_json_are_targets() {
        assert!(
            matches!(Target::parse("0001SaD2PVY4312K"), Ok(Target::Ids(ids)) if ids.len() == 1)
        );
        assert!(matches!(
            Target::parse("0001SaD2PVY4312K, 0001SaD2PVY4315J,0001SaD2PVY4312K"),
            Ok(Target::Ids(ids)) if ids.len() == 2
        ));
        let Ok(Target::Identification(criteria)) =
            Target::parse(r#"{"TenantId":101,"EmailAddress":"jane.doe@company.com"}"#)
        else {
            panic!("not an identification request")
        };
        assert_eq!(criteria.get("TenantId"), Some(&Value::from(101)));
    }

    #[test]
    fn bad_targets_say_what_is_wrong_without_quoting_it() {
        assert_eq!(
            Target::parse("jane.doe@company.com"),
            Err(TargetError::NotAnId { position: 1, len: 20 })
        );
        assert_eq!(Target::parse(r#"{"EmailAddress":"x@y.z"}"#), Err(TargetError::NoTenant));
        assert_eq!(Target::parse(r#"{"TenantId":101}"#), Err(TargetError::NoAttributes));
        assert_eq!(Target::parse("[1]"), Err(TargetError::NotAnObject));
        assert!(matches!(Target::parse("{\"TenantId\":101"), Err(TargetError::Json(_))));
    }

    #[test]
    fn values_are_masked() {
        assert_eq!(mask("jane.doe@company.com"), "j***@company.com");
        assert_eq!(mask("Jane"), "J***");
        assert_eq!(mask("+44 20 7946 0958"), "+44 *** *958");
        assert_eq!(mask("José"), "J***");
        assert_eq!(mask(""), "");
    }
}
