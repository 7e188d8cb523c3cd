//! The audit record and the validated values it is made of.
//!
//! Every string in a record has a narrow, validated shape (identifiers, digests, short
//! lowercase tokens); there is no free-text field, so a name, an e-mail address, a phone
//! number or message text has nowhere to go. Subjects appear only as keyed HMAC digests
//! ([`SubjectDigest`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical;

/// The domain-separation prefix of a record hash: a record hash can never be confused with
/// the hash of any other canonical JSON the tool produces (plans, checkpoints).
pub const RECORD_HASH_DOMAIN: &[u8] = b"ucs-gdpr/audit/v1\n";

/// A value that does not have the shape its field requires. The message names the field and
/// the rule, never the rejected value (it may be exactly the personal data being kept out).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {rule}")]
pub struct RecordError {
    /// The field (or value kind) that was rejected.
    pub field: &'static str,
    /// What the field must look like.
    pub rule: &'static str,
}

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $field:literal, $rule:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl $name {
            /// Validates `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, RecordError> {
                let value = value.into();
                if Self::is_valid(&value) {
                    Ok(Self(value))
                } else {
                    Err(RecordError { field: $field, rule: $rule })
                }
            }

            /// Whether `value` has the shape [`new`](Self::new) accepts (checked without
            /// allocating: the verifier's fast path).
            pub(crate) fn is_valid(value: &str) -> bool {
                let check: fn(&str) -> bool = $check;
                check(value)
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = RecordError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn is_identifier(value: &str, max: usize) -> bool {
    (1..=max).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && value.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn is_lower_hex(value: &str, len: usize) -> bool {
    value.len() == len && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_token(value: &str) -> bool {
    // Short lowercase codes such as `http.503` or `contact-not-found`. A run of six or more
    // digits is refused: that is what a phone number or an account number looks like.
    let mut digit_run = 0;
    let no_long_digit_run = value.bytes().all(|b| {
        digit_run = if b.is_ascii_digit() { digit_run + 1 } else { 0 };
        digit_run < 6
    });
    (1..=48).contains(&value.len())
        && value.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        && no_long_digit_run
}

fn is_utc_time(value: &str) -> bool {
    value.ends_with('Z') && value.len() <= 40 && value.parse::<jiff::Timestamp>().is_ok()
}

validated_string!(
    /// Who acted: an operator or service identity such as `agent.smith` or `ci-runner`
    /// (`[A-Za-z0-9._-]`, at most 64 characters, no `@`: not an e-mail address).
    Actor,
    "actor",
    "1 to 64 characters of [A-Za-z0-9._-], starting with a letter or digit",
    |v| is_identifier(v, 64)
);

validated_string!(
    /// A data-subject request id, the manifest's `metadata.id` (`DSR-2026-0142`).
    RequestId,
    "request id",
    "1 to 64 characters of [A-Za-z0-9._-], starting with a letter or digit",
    |v| is_identifier(v, 64)
);

validated_string!(
    /// A runbook step id (`delete`, `in-flight`).
    StepId,
    "step id",
    "1 to 64 characters of [A-Za-z0-9._-], starting with a letter or digit",
    |v| is_identifier(v, 64)
);

validated_string!(
    /// A UCS contact id: 16 characters `[A-Za-z0-9]`.
    ContactId,
    "contact id",
    "exactly 16 characters of [A-Za-z0-9]",
    |v| v.len() == 16 && v.bytes().all(|b| b.is_ascii_alphanumeric())
);

validated_string!(
    /// A SHA-256 digest: 64 lowercase hex digits (record hashes, plan ids, file checksums).
    Sha256Hex,
    "sha256 digest",
    "64 lowercase hex digits",
    |v| is_lower_hex(v, 64)
);

validated_string!(
    /// A keyed HMAC-SHA256 digest of a subject identifier: 64 lowercase hex digits.
    SubjectDigest,
    "subject digest",
    "64 lowercase hex digits (an HMAC-SHA256)",
    |v| is_lower_hex(v, 64)
);

validated_string!(
    /// A short machine token for error codes and reasons: `[a-z0-9._-]`, at most 48
    /// characters, no run of six digits.
    Token,
    "token",
    "1 to 48 characters of [a-z0-9._-] with no run of six or more digits",
    is_token
);

validated_string!(
    /// The id of an ed25519 verifying key: the first 16 hex digits of the sha256 of its bytes
    /// ([`key_id`](crate::audit::key_id)).
    KeyId,
    "key id",
    "16 lowercase hex digits",
    |v| is_lower_hex(v, 16)
);

validated_string!(
    /// A record time: RFC 3339 in UTC (`2026-11-29T10:15:00.123Z`).
    RecordTime,
    "time",
    "an RFC 3339 timestamp in UTC ending in Z",
    is_utc_time
);

impl Sha256Hex {
    /// The hash that the first record links to: 64 zeros.
    pub fn genesis() -> Self {
        Self("0".repeat(64))
    }

    /// The SHA-256 digest of `bytes`.
    pub fn digest(bytes: &[u8]) -> Self {
        Self(canonical::sha256_hex(bytes))
    }
}

impl Actor {
    /// The actor of records the tool writes on its own behalf (`log.recovered`).
    pub fn system() -> Self {
        Self("ucs-gdpr".to_owned())
    }
}

impl SubjectDigest {
    /// Wraps hex that is a digest by construction.
    pub(crate) fn from_trusted_hex(hex: String) -> Self {
        Self(hex)
    }
}

impl RecordTime {
    /// The time `timestamp`, at millisecond precision.
    pub fn from_timestamp(timestamp: jiff::Timestamp) -> Self {
        Self(format!("{timestamp:.3}"))
    }
}

/// What happened. Serialised as `run.start`, `step.intent`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Event {
    /// A run of `apply` started.
    #[serde(rename = "run.start")]
    RunStart,
    /// A run of `apply` ended (its outcome says how).
    #[serde(rename = "run.end")]
    RunEnd,
    /// `apply` refused to run (stale plan, missing approval).
    #[serde(rename = "run.refused")]
    RunRefused,
    /// An approval bound to a plan id was recorded.
    #[serde(rename = "approval")]
    Approval,
    /// A step is about to have a side effect; written and fsynced before it.
    #[serde(rename = "step.intent")]
    StepIntent,
    /// A step finished successfully.
    #[serde(rename = "step.done")]
    StepDone,
    /// A step failed.
    #[serde(rename = "step.failed")]
    StepFailed,
    /// A step was skipped (a hold, a failed dependency).
    #[serde(rename = "step.skipped")]
    StepSkipped,
    /// A step is retried after a transient failure.
    #[serde(rename = "step.retry")]
    StepRetry,
    /// A torn last line was moved aside when the log was reopened.
    #[serde(rename = "log.recovered")]
    LogRecovered,
    /// A run of one shard of a plan starts in that shard's log segment: binds the plan, the
    /// shard (`reason: shard-I-of-N`) and its contacts (`count`, and `sha256` of their sorted
    /// ids); see `apply::shard`.
    #[serde(rename = "shard.start")]
    ShardStart,
}

impl Event {
    /// The name as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunStart => "run.start",
            Self::RunEnd => "run.end",
            Self::RunRefused => "run.refused",
            Self::Approval => "approval",
            Self::StepIntent => "step.intent",
            Self::StepDone => "step.done",
            Self::StepFailed => "step.failed",
            Self::StepSkipped => "step.skipped",
            Self::StepRetry => "step.retry",
            Self::LogRecovered => "log.recovered",
            Self::ShardStart => "shard.start",
        }
    }

    /// Whether this event closes a `step.intent` (the step's side effect is accounted for).
    pub fn is_step_outcome(self) -> bool {
        matches!(self, Self::StepDone | Self::StepFailed | Self::StepSkipped)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a step or a run turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Done as planned.
    Ok,
    /// Failed (see the detail's `code`).
    Failed,
    /// Not done on purpose (a hold, a failed dependency).
    Skipped,
    /// The thing to delete was already gone: success, recorded as such.
    AlreadyAbsent,
    /// Refused by a check or a policy.
    Refused,
    /// Blocked by a check that did not pass.
    Blocked,
}

impl Outcome {
    /// The name as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::AlreadyAbsent => "already-absent",
            Self::Refused => "refused",
            Self::Blocked => "blocked",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Typed facts about an event. A fixed set of keys; counts, sizes, digests and short tokens
/// only.
///
/// Fields are declared in the canonical key order (camelCase names sorted by bytes), so that
/// serialising the struct directly yields canonical JSON; a test holds this.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Detail {
    /// Who approved (on `approval` records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<Actor>,
    /// A number of attachments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<u64>,
    /// The attempt number of a retried step (1 for the first try).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// A size in bytes (an export file, attachments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// An error code (`http.503`, `ucs.timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Token>,
    /// A count of things (contacts resolved, records deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The data source (`main`, `archive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source: Option<Token>,
    /// How long the step took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// When an approval stops counting (on `approval` records of approvals that expire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<RecordTime>,
    /// The observed-state fingerprint of a contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Sha256Hex>,
    /// An HTTP status returned by a remote system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// A number of interactions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactions: Option<u64>,
    /// The id of the registered key that verified an approval (on `approval` records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<KeyId>,
    /// A reason code (`hold`, `check-failed`, `stale-plan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Token>,
    /// A SHA-256 checksum (an export file, the manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Hex>,
    /// The SHA-256 of an approval's signature bytes (on `approval` records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_sha256: Option<Sha256Hex>,
    /// The keyed digest of a subject identifier (a `match` map, a contact id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectDigest>,
    /// How many torn bytes were moved aside (on `log.recovered` records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn_bytes: Option<u64>,
    /// The byte offset where a torn line started (on `log.recovered` records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torn_offset: Option<u64>,
}

impl Detail {
    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// What the caller says about an event; the log adds `seq`, `time`, `prev` and `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Who acted.
    pub actor: Actor,
    /// What happened.
    pub event: Event,
    /// The request it belongs to.
    pub request_id: Option<RequestId>,
    /// The plan being applied.
    pub plan_id: Option<Sha256Hex>,
    /// The runbook step.
    pub step: Option<StepId>,
    /// The contact the step acts on.
    pub contact: Option<ContactId>,
    /// How it turned out.
    pub outcome: Option<Outcome>,
    /// Typed facts.
    pub detail: Option<Detail>,
}

impl Entry {
    /// An entry with only an actor and an event.
    pub fn new(actor: Actor, event: Event) -> Self {
        Self {
            actor,
            event,
            request_id: None,
            plan_id: None,
            step: None,
            contact: None,
            outcome: None,
            detail: None,
        }
    }

    /// With a request id.
    #[must_use]
    pub fn request(mut self, request_id: RequestId) -> Self {
        self.request_id = Some(request_id);
        self
    }

    /// With a plan id.
    #[must_use]
    pub fn plan(mut self, plan_id: Sha256Hex) -> Self {
        self.plan_id = Some(plan_id);
        self
    }

    /// With a step id.
    #[must_use]
    pub fn step(mut self, step: StepId) -> Self {
        self.step = Some(step);
        self
    }

    /// With a contact id.
    #[must_use]
    pub fn contact(mut self, contact: ContactId) -> Self {
        self.contact = Some(contact);
        self
    }

    /// With an outcome.
    #[must_use]
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = Some(outcome);
        self
    }

    /// With typed facts (an empty detail is left out).
    #[must_use]
    pub fn detail(mut self, detail: Detail) -> Self {
        self.detail = (!detail.is_empty()).then_some(detail);
        self
    }
}

/// One line of the audit log.
///
/// Fields are declared in the canonical key order (camelCase names sorted by bytes), so that
/// serialising the struct directly yields canonical JSON (fast to write and to verify); a
/// test holds this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditRecord {
    /// Who acted.
    pub actor: Actor,
    /// The contact the step acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<ContactId>,
    /// Typed facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
    /// What happened.
    pub event: Event,
    /// The hash of this record: see [`record_hash`].
    pub hash: Sha256Hex,
    /// How it turned out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The plan being applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<Sha256Hex>,
    /// The hash of the previous record (64 zeros for `seq` 0).
    pub prev: Sha256Hex,
    /// The request it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    /// The position in the log, contiguous from 0.
    pub seq: u64,
    /// The runbook step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepId>,
    /// When the record was written.
    pub time: RecordTime,
}

/// The record without its hash, borrowed: what the hash covers. Same key order as
/// [`AuditRecord`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordBody<'a> {
    actor: &'a Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact: Option<&'a ContactId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a Detail>,
    event: Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan_id: Option<&'a Sha256Hex>,
    prev: &'a Sha256Hex,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a RequestId>,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<&'a StepId>,
    time: &'a RecordTime,
}

impl AuditRecord {
    /// Seals `entry` as record `seq` after the record hashed `prev`; returns the record and
    /// its line (canonical JSON and a newline).
    pub(crate) fn seal(
        entry: Entry,
        seq: u64,
        time: RecordTime,
        prev: Sha256Hex,
    ) -> Result<(Self, Vec<u8>), RecordError> {
        let mut record = Self {
            seq,
            time,
            request_id: entry.request_id,
            plan_id: entry.plan_id,
            actor: entry.actor,
            event: entry.event,
            step: entry.step,
            contact: entry.contact,
            outcome: entry.outcome,
            detail: entry.detail.filter(|detail| !detail.is_empty()),
            prev,
            hash: Sha256Hex::genesis(),
        };
        record.hash = record.compute_hash()?;
        let mut line = Vec::with_capacity(512);
        serde_json::to_writer(&mut line, &record).map_err(|_| UNSERIALISABLE)?;
        line.push(b'\n');
        Ok((record, line))
    }

    /// The hash this record must carry: SHA-256 over [`RECORD_HASH_DOMAIN`] and the canonical
    /// JSON of the record without `hash` (the same bytes as [`record_hash`] hashes).
    pub fn compute_hash(&self) -> Result<Sha256Hex, RecordError> {
        let body = RecordBody {
            actor: &self.actor,
            contact: self.contact.as_ref(),
            detail: self.detail.as_ref(),
            event: self.event,
            outcome: self.outcome,
            plan_id: self.plan_id.as_ref(),
            prev: &self.prev,
            request_id: self.request_id.as_ref(),
            seq: self.seq,
            step: self.step.as_ref(),
            time: &self.time,
        };
        let mut bytes = Vec::with_capacity(512);
        bytes.extend_from_slice(RECORD_HASH_DOMAIN);
        serde_json::to_writer(&mut bytes, &body).map_err(|_| UNSERIALISABLE)?;
        Ok(Sha256Hex::digest(&bytes))
    }
}

/// Serialising plain strings and numbers cannot fail; this keeps the signatures total.
const UNSERIALISABLE: RecordError = RecordError { field: "record", rule: "serialisable as JSON" };

/// The hash of a record given as a JSON object without its `hash` key: SHA-256 over
/// [`RECORD_HASH_DOMAIN`] followed by the canonical JSON.
pub fn record_hash(without_hash: &Value) -> Sha256Hex {
    let mut bytes = Vec::with_capacity(512);
    bytes.extend_from_slice(RECORD_HASH_DOMAIN);
    canonical::write(without_hash, &mut bytes);
    Sha256Hex::digest(&bytes)
}

/// A line of the log parsed and checked on its own (not against its neighbours).
#[derive(Debug)]
pub(crate) struct ParsedLine {
    pub(crate) record: AuditRecord,
    /// Whether the stored hash matches the recomputed one.
    pub(crate) hash_matches: bool,
}

/// Why a line is not an audit record. Deliberately vague about content: the line may hold
/// anything, including personal data someone pasted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineError {
    /// Not a JSON object.
    NotJson,
    /// JSON, but not the record schema (unknown key, wrong type, invalid value).
    NotARecord,
}

impl LineError {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::NotJson => "not a JSON object",
            Self::NotARecord => "JSON, but not a valid audit record",
        }
    }
}

/// Parses one line (without its newline), checks the record schema and recomputes its hash.
pub(crate) fn parse_line(line: &[u8]) -> Result<ParsedLine, LineError> {
    let record: AuditRecord = serde_json::from_slice(line).map_err(|error| {
        if error.classify() == serde_json::error::Category::Data {
            LineError::NotARecord
        } else {
            LineError::NotJson
        }
    })?;
    let hash_matches = record.compute_hash().is_ok_and(|hash| hash == record.hash);
    Ok(ParsedLine { record, hash_matches })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_that_could_carry_personal_data_are_refused() {
        assert!(Actor::new("jane.doe@company.com").is_err());
        assert!(Actor::new("Jane Doe").is_err());
        assert!(ContactId::new("0001SaD2PVY4312").is_err());
        assert!(ContactId::new("0001SaD2PVY4312K").is_ok());
        assert!(Token::new("call-me-0612345678").is_err());
        assert!(Token::new("Hello there").is_err());
        assert!(Token::new("http.503").is_ok());
        assert!(Sha256Hex::new("AB".repeat(32)).is_err());
        assert!(RecordTime::new("2026-11-29T10:15:00+01:00").is_err());
        assert!(RecordTime::new("2026-11-29T10:15:00.123Z").is_ok());
    }

    #[test]
    fn errors_name_the_rule_not_the_value() {
        let error = Actor::new("jane.doe@company.com").unwrap_err();
        assert!(!error.to_string().contains("jane"));
        assert_eq!(
            error.to_string(),
            "invalid actor: 1 to 64 characters of [A-Za-z0-9._-], starting with a letter or digit"
        );
    }

    #[test]
    fn a_record_with_free_text_in_its_detail_does_not_parse() {
        let (_, line) = AuditRecord::seal(
            Entry::new(Actor::new("ops").unwrap(), Event::RunStart),
            0,
            RecordTime::new("2026-11-29T10:15:00.000Z").unwrap(),
            Sha256Hex::genesis(),
        )
        .unwrap();
        let text = String::from_utf8(line).unwrap();
        assert!(parse_line(text.trim_end().as_bytes()).unwrap().hash_matches);
        let tampered = text.replace(r#""event""#, r#""detail":{"note":"Jane Doe"},"event""#);
        assert_eq!(parse_line(tampered.trim_end().as_bytes()).unwrap_err(), LineError::NotARecord);
    }

    #[test]
    fn a_record_serialises_directly_to_canonical_json() {
        let token = || Some(Token::new("x.y").unwrap());
        let digest = || Some(Sha256Hex::digest(b"x"));
        let detail = Detail {
            approver: Some(Actor::new("lead").unwrap()),
            attachments: Some(1),
            attempt: Some(2),
            bytes: Some(3),
            code: token(),
            count: Some(4),
            data_source: token(),
            duration_ms: Some(5),
            expires_at: Some(RecordTime::new("2026-12-05T00:00:00Z").unwrap()),
            fingerprint: digest(),
            http_status: Some(503),
            interactions: Some(6),
            key_id: Some(KeyId::new("0123456789abcdef").unwrap()),
            reason: token(),
            sha256: digest(),
            signature_sha256: digest(),
            subject: Some(SubjectDigest::from_trusted_hex("a".repeat(64))),
            torn_bytes: Some(7),
            torn_offset: Some(8),
        };
        let entry = Entry::new(Actor::new("ops").unwrap(), Event::StepDone)
            .request(RequestId::new("DSR-1").unwrap())
            .plan(Sha256Hex::digest(b"plan"))
            .step(StepId::new("delete").unwrap())
            .contact(ContactId::new("0001SaD2PVY4312K").unwrap())
            .outcome(Outcome::AlreadyAbsent)
            .detail(detail);
        let time = RecordTime::new("2026-11-29T10:15:00.000Z").unwrap();
        let (record, line) = AuditRecord::seal(entry, 7, time, Sha256Hex::digest(b"p")).unwrap();
        let mut value = serde_json::to_value(&record).unwrap();
        let mut canonical_line = canonical::to_vec(&value);
        canonical_line.push(b'\n');
        assert_eq!(String::from_utf8(line).unwrap(), String::from_utf8(canonical_line).unwrap());
        value.as_object_mut().unwrap().remove("hash");
        assert_eq!(record_hash(&value), record.hash);
    }
}
