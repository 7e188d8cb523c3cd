//! The plan: what will happen to whom, bound to the state it was computed from.
//!
//! The body is canonical JSON and `planId` is the sha256 of it, so the same request against the
//! same state gives a byte-identical body and the same id. Nothing in a plan is personal data:
//! contact ids, counts, dates, statuses and HMAC digests only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::model::{Attachments, Channel, Expect};
use crate::runbook::{Scope, StepKind};
use crate::ucs::{ContactId, DataSource, UcsVersion};

/// The format version written into every plan.
pub const PLAN_API_VERSION: &str = "ucs-gdpr/v1";

/// A plan and its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plan {
    /// sha256 of the canonical JSON of `body`.
    pub plan_id: String,
    /// Everything the plan says.
    pub body: PlanBody,
}

/// Everything a plan says; hashed into the plan id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanBody {
    /// Always `ucs-gdpr/v1`.
    pub api_version: String,
    /// Always `Plan`.
    pub kind: String,
    /// The request the plan is for.
    pub request: RequestInfo,
    /// Where it runs.
    pub environment: EnvironmentInfo,
    /// The runbook it follows.
    pub runbook: RunbookInfo,
    /// What the export covers, when there is one.
    pub export: Option<ExportInfo>,
    /// Whether the request waived the export explicitly.
    pub export_waived: bool,
    /// What happens to contacts that may be deleted.
    pub delete: DeleteMode,
    /// How each subject of the manifest resolved.
    pub subjects: Vec<SubjectResolution>,
    /// Request-scope steps (once for the whole request).
    pub request_steps: Vec<StepPlan>,
    /// Per contact, sorted by id.
    pub contacts: Vec<ContactPlan>,
    /// Everything that stops the plan from being applied.
    pub blockers: Vec<Blocker>,
    /// Contacts outside the plan that share an identifying value (an e-mail address, a phone
    /// number) with a contact in it: possibly other records of the same person. Sorted by id.
    pub other_records: Vec<OtherRecord>,
    /// What a reviewer must know that does not stop the plan (a forget-me plan that leaves
    /// possible other records of the person out).
    pub warnings: Vec<Warning>,
    /// The totals.
    pub summary: Summary,
}

/// A contact outside the plan that shares an identifying value with contacts in it. Holds no
/// personal data: the shared value is only named by its attribute and an HMAC digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtherRecord {
    /// Its contact id.
    pub contact_id: ContactId,
    /// The plan's contacts it shares a value with.
    pub shares_with: Vec<ContactId>,
    /// What it shares: attribute names and value digests.
    pub shared: Vec<SharedValue>,
    /// Interactions per data source.
    pub interactions: BTreeMap<DataSource, u64>,
    /// Its first interaction's start.
    pub first_interaction: Option<String>,
    /// Its last interaction's start.
    pub last_interaction: Option<String>,
}

/// An identifying value two contacts share, without the value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedValue {
    /// The attribute, such as `EmailAddress`.
    pub attribute: String,
    /// The HMAC digest of `{attribute: value}` (the plan's digester, as a `match` subject's).
    pub digest: String,
}

/// Something a reviewer must know; it does not block.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Warning {
    /// The contact it concerns, if one.
    pub contact_id: Option<ContactId>,
    /// A stable code.
    pub code: String,
    /// What and why, in plain words.
    pub message: String,
    /// How much it weighs: absent for a notice; `blocker` for what a reviewer must weigh as
    /// they would a blocker although it does not stop the plan (a check the runbook waives).
    #[serde(default, skip_serializing_if = "WarningLevel::is_notice")]
    pub level: WarningLevel,
}

/// How much a warning weighs.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum WarningLevel {
    /// Worth knowing.
    #[default]
    Notice,
    /// To be weighed as a blocker would be: shown first, and marked.
    Blocker,
}

impl WarningLevel {
    /// Whether this is the default level (not written into plans).
    pub fn is_notice(&self) -> bool {
        *self == Self::Notice
    }
}

/// The request, as facts a reviewer needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestInfo {
    /// The request id.
    pub id: String,
    /// The manifest file as it was named when planning (apply re-reads it to re-resolve the
    /// subjects, and refuses it when its sha256 differs).
    pub manifest_path: String,
    /// sha256 of the manifest file's bytes.
    pub manifest_sha256: String,
    /// When the request arrived (RFC 3339).
    pub received_at: String,
    /// When the answer is due (a date).
    pub deadline: String,
    /// How it arrived.
    pub channel: Channel,
    /// Who verified the requester.
    pub verified_by: String,
    /// The ticket reference, if any.
    pub ticket: Option<String>,
    /// The language of the readable export page, when the manifest says one (absent from the
    /// plan otherwise, so plans of manifests without one are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The subjects file the request names, with its digest: its ids are the `contactId`
    /// subjects after the manifest's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects_file: Option<crate::manifest::model::SubjectsFileInfo>,
}

/// The environment the plan was computed against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentInfo {
    /// Its name in the environments file.
    pub name: String,
    /// `embedded` or `rest`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tenant.
    pub tenant: u64,
    /// Which UCS it is: `9.1` (one store; `main` is its only data source) or `8.5` (`main` and
    /// `archive`).
    pub ucs_version: UcsVersion,
    /// sha256 of the policy the plan was made under (approval rule, approvers, their keys,
    /// checks): apply refuses the plan under any other.
    pub policy_sha256: String,
    /// sha256 of the target the plan was made against (the UCS and the services its checks
    /// read): apply refuses the plan against any other.
    pub target_sha256: String,
}

/// The runbook, pinned by its content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunbookInfo {
    /// Its name.
    pub name: String,
    /// sha256 of its file.
    pub sha256: String,
    /// Where it was read from: absent for a built-in runbook, the file's path (as found in the
    /// runbooks folder) for a local one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// For a local file with the name of a built-in runbook: the sha256 of the built-in it
    /// replaces (the plan then warns `runbook::overrides-built-in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_built_in: Option<String>,
    /// The built-in checks it waives (it deletes without them), with the file's reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waives: Vec<WaiverInfo>,
    /// Its steps in execution order.
    pub steps: Vec<StepInfo>,
}

/// A check the runbook waives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaiverInfo {
    /// The check step, such as `gms/no-pending-callbacks`.
    pub check: StepKind,
    /// The runbook's reason (operator text, at most 200 characters).
    pub reason: String,
}

impl RunbookInfo {
    /// Where the runbook came from, as a reviewer reads it: `built-in`, or the local file and
    /// its sha256 (and that it replaces the built-in of its name).
    pub fn origin_words(&self) -> String {
        match &self.origin {
            None => "built-in".to_owned(),
            Some(path) => format!(
                "{} `{path}`, sha256 {}",
                if self.replaces_built_in.is_some() {
                    "LOCAL FILE replacing the built-in:"
                } else {
                    "local file"
                },
                self.sha256.get(..12).unwrap_or(&self.sha256)
            ),
        }
    }
}

/// One runbook step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepInfo {
    /// The step id.
    pub id: String,
    /// The catalogue step.
    pub uses: StepKind,
    /// `request` or `contact`.
    pub scope: Scope,
    /// Steps it waits for.
    pub after: Vec<String>,
}

/// What the export covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportInfo {
    /// `main`, `archive`.
    pub data_sources: Vec<DataSource>,
    /// `inline` or `omit`.
    pub attachments: Attachments,
    /// Whether each contact's Context Services data (profile, services with their states and
    /// tasks) goes into the bag as `context-services-<id>.json`: when the environment has
    /// Context Services.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub context_services: bool,
}

/// What happens to contacts that may be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteMode {
    /// The runbook or the request deletes nothing.
    None,
    /// `delete` without `confirm: true`: apply only reports, like the script without -confirm.
    ReportOnly,
    /// Contacts are deleted.
    Confirmed,
}

/// How one subject of the manifest resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectResolution {
    /// 1-based position in `spec.subjects`.
    pub index: usize,
    /// The contact id, for a `contactId` subject.
    pub contact_id: Option<ContactId>,
    /// The HMAC digest of the identification request, for a `match` subject.
    pub match_digest: Option<String>,
    /// `one` or `all`, for a `match` subject.
    pub expect: Option<Expect>,
    /// What was found.
    pub outcome: Resolution,
}

/// The contacts a subject found: one, held inline (every `contactId` subject, and most matches:
/// no allocation for each of a batch's subjects), or several. Written as the list of their ids
/// either way.
#[derive(Debug, Clone)]
pub struct FoundContacts(Held);

#[derive(Debug, Clone)]
enum Held {
    One(ContactId),
    Many(Box<[ContactId]>),
}

/// Equal when they list the same ids, however they are held.
impl PartialEq for FoundContacts {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for FoundContacts {}

impl FoundContacts {
    /// One contact.
    pub fn one(id: ContactId) -> Self {
        Self(Held::One(id))
    }
}

impl From<Vec<ContactId>> for FoundContacts {
    fn from(mut ids: Vec<ContactId>) -> Self {
        match ids.pop() {
            Some(id) if ids.is_empty() => Self::one(id),
            Some(id) => {
                ids.push(id);
                Self(Held::Many(ids.into_boxed_slice()))
            }
            None => Self(Held::Many(Box::default())),
        }
    }
}

impl std::ops::Deref for FoundContacts {
    type Target = [ContactId];

    fn deref(&self) -> &[ContactId] {
        match &self.0 {
            Held::One(id) => std::slice::from_ref(id),
            Held::Many(ids) => ids,
        }
    }
}

impl<'a> IntoIterator for &'a FoundContacts {
    type Item = &'a ContactId;
    type IntoIter = std::slice::Iter<'a, ContactId>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Serialize for FoundContacts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for FoundContacts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<ContactId>::deserialize(deserializer).map(Self::from)
    }
}

/// What a subject resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Resolution {
    /// These contacts.
    Found {
        /// Their ids.
        contacts: FoundContacts,
    },
    /// The contact id does not exist (already erased, or never was): nothing to do.
    AlreadyAbsent,
    /// The identification request matched nobody.
    NoMatch,
    /// More matches than `expect: one` allows: a reviewer must name the contacts.
    Ambiguous {
        /// The candidates with facts that help decide, none of them personal.
        candidates: Vec<Candidate>,
    },
    /// The state could not be read.
    Unreadable {
        /// Why (an error kind and operation; no personal data).
        reason: String,
    },
}

/// A candidate of an ambiguous match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Candidate {
    /// Its contact id.
    pub contact_id: ContactId,
    /// Interactions per data source.
    pub interactions: BTreeMap<DataSource, u64>,
    /// Its first interaction's start.
    pub first_interaction: Option<String>,
    /// Its last interaction's start.
    pub last_interaction: Option<String>,
}

/// Everything planned for one contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactPlan {
    /// The contact id.
    pub contact_id: ContactId,
    /// The subjects (1-based) that resolved to it.
    pub subjects: Vec<usize>,
    /// The reason it is kept, when a hold applies.
    pub hold: Option<String>,
    /// What each data source holds for it.
    pub sources: BTreeMap<DataSource, SourceCounts>,
    /// sha256 over its interactions' ids, statuses and modification stamps and its attribute
    /// names: apply refuses to run when this changed.
    pub fingerprint: String,
    /// Its steps, in execution order.
    pub steps: Vec<StepPlan>,
    /// Whether it will be exported.
    pub export: bool,
    /// Whether it will be deleted.
    pub delete: bool,
}

/// What one data source holds for a contact.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceCounts {
    /// `false` when the deployment has no data source with this role.
    pub available: bool,
    /// Why it is unavailable (the server's reason).
    pub reason: Option<String>,
    /// Interactions.
    pub interactions: u64,
    /// Interactions still in progress or in a workbin.
    pub in_flight: u64,
    /// Attachments.
    pub attachments: u64,
    /// Attachment bytes (counted when the export inlines them).
    pub bytes: u64,
    /// The first interaction's start.
    pub first_interaction: Option<String>,
    /// The last interaction's start.
    pub last_interaction: Option<String>,
}

/// What a step will do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepPlan {
    /// The step id.
    pub id: String,
    /// The catalogue step, or the planner's own reading of the contact.
    pub uses: StepUse,
    /// The decision.
    pub status: StepStatus,
    /// Facts behind the decision (ids, counts, statuses; never personal data).
    pub notes: Vec<String>,
}

/// What a planned step runs: a step of the runbook catalogue, or, for a contact whose state
/// could not be read, the planner's reading itself (written `ucs/read`), which blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepUse {
    /// A catalogue step.
    Step(StepKind),
    /// Reading the contact's state (only ever blocked).
    ReadContact,
}

impl StepUse {
    /// The name written in plans: the catalogue name, or `ucs/read`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Step(kind) => kind.name(),
            Self::ReadContact => "ucs/read",
        }
    }

    /// The catalogue step, when it is one.
    pub fn kind(self) -> Option<StepKind> {
        match self {
            Self::Step(kind) => Some(kind),
            Self::ReadContact => None,
        }
    }
}

impl From<StepKind> for StepUse {
    fn from(kind: StepKind) -> Self {
        Self::Step(kind)
    }
}

impl PartialEq<StepKind> for StepUse {
    fn eq(&self, other: &StepKind) -> bool {
        *self == Self::Step(*other)
    }
}

impl std::fmt::Display for StepUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl Serialize for StepUse {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for StepUse {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name == Self::ReadContact.name() {
            return Ok(Self::ReadContact);
        }
        StepKind::from_name(&name).map(Self::Step).ok_or_else(|| {
            serde::de::Error::custom(format!("`{name}` is not a step of the catalogue"))
        })
    }
}

/// A step's decision at plan time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// A check that passed, or an action that will run.
    Ready,
    /// Nothing to do (no profile, nothing in progress, no export asked).
    NothingToDo,
    /// Apply will only report (a delete without `confirm`).
    ReportOnly,
    /// Skipped (a hold, a subject already absent, an earlier blocker).
    Skipped,
    /// The environment does not configure what the check needs.
    NotConfigured,
    /// The step blocks the plan.
    Blocked,
}

impl StepStatus {
    /// The word a person reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::NothingToDo => "nothing to do",
            Self::ReportOnly => "report only",
            Self::Skipped => "skipped",
            Self::NotConfigured => "not configured",
            Self::Blocked => "BLOCKED",
        }
    }
}

/// Something that stops the plan from being applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Blocker {
    /// The contact it concerns, if one.
    pub contact_id: Option<ContactId>,
    /// The subject (1-based) it concerns, if one.
    pub subject: Option<usize>,
    /// The step that blocks, if one.
    pub step: Option<String>,
    /// A stable code.
    pub code: String,
    /// What blocks and why, in plain words.
    pub message: String,
}

/// The totals.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Summary {
    /// Contacts resolved.
    pub contacts: u64,
    /// Contacts that will be exported.
    pub to_export: u64,
    /// Contacts that will be deleted.
    pub to_delete: u64,
    /// Contacts kept by a hold.
    pub held: u64,
    /// Subjects already absent.
    pub already_absent: u64,
    /// Blockers.
    pub blockers: u64,
    /// Interactions per data source, over the contacts exported or deleted.
    pub interactions: BTreeMap<DataSource, u64>,
    /// Attachments over those contacts.
    pub attachments: u64,
    /// Attachment bytes over those contacts.
    pub bytes: u64,
    /// Whether applying the plan would change anything.
    pub changes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found contacts are written as the list of their ids, one or many, and read back the
    /// same: a plan's bytes (and so its id) do not depend on how they are held.
    #[test]
    fn found_contacts_are_a_list_of_ids_however_many() {
        let id = |s: &str| ContactId::new(s).unwrap();
        for ids in [
            vec![],
            vec![id("0001SaD2PVY4312K")],
            vec![id("0001SaD2PVY4312K"), id("0001TbE3QWZ5520L"), id("0002AaB3CDE4567F")],
        ] {
            let found = FoundContacts::from(ids.clone());
            assert_eq!(&*found, ids.as_slice());
            let json = serde_json::to_string(&found).unwrap();
            assert_eq!(json, serde_json::to_string(&ids).unwrap());
            assert_eq!(serde_json::from_str::<FoundContacts>(&json).unwrap(), found);
        }
        assert_eq!(
            FoundContacts::one(id("0001SaD2PVY4312K")),
            FoundContacts::from(vec![id("0001SaD2PVY4312K")])
        );
        // One is held inline: no larger than the list's own header.
        assert!(std::mem::size_of::<FoundContacts>() <= std::mem::size_of::<Vec<ContactId>>());
    }

    #[test]
    fn step_uses_are_written_by_their_catalogue_names_and_unknown_ones_refused() {
        for kind in StepKind::ALL {
            let json = serde_json::to_string(&StepUse::from(kind)).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(serde_json::from_str::<StepUse>(&json).unwrap(), kind);
        }
        assert_eq!(serde_json::to_string(&StepUse::ReadContact).unwrap(), "\"ucs/read\"");
        assert_eq!(serde_json::from_str::<StepUse>("\"ucs/read\"").unwrap(), StepUse::ReadContact);
        assert!(serde_json::from_str::<StepUse>("\"ucs/format-disk\"").is_err());
    }

    #[test]
    fn a_plan_contact_id_that_is_not_an_id_is_refused_when_read() {
        let blocker = |id: &str| {
            serde_json::from_value::<Blocker>(serde_json::json!({
                "contactId": id, "subject": null, "step": null, "code": "c", "message": "m",
            }))
        };
        assert!(blocker("0001SaD2PVY4312K").is_ok());
        assert!(blocker("../../etc/passwd").is_err());
    }
}
