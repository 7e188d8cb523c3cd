//! The gate: what must hold before a plan runs, held by the library so that every front end
//! goes through it. [`authorize`] is the only way to make an [`ApprovedPlan`], and [`run`]
//! (crate::apply::run) takes nothing else: the manifest is the one the plan was made from, the
//! plan was made under this environment's policy and against its target, and its approvals
//! satisfy the policy. Every refusal is recorded in the audit log (`run.refused` with a reason
//! code) before it is returned.
//!
//! The policy's defaults (where the audit log and the exports go) live here too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::audit::{self, AuditLog, Detail, Entry, Event, Outcome};
use crate::environment::{Environment, Environments};
use crate::plan::{ContactPlan, Plan, PlanFile};

use super::approval::{self, Approval};
use super::{ApplyContext, ApplyError};

/// The audit log of an environment whose policy names none, relative to the environments file.
pub const DEFAULT_AUDIT_LOG: &str = "ucs-gdpr-audit.jsonl";
/// Where export bags go when the policy names no folder, relative to the environments file.
pub const DEFAULT_EXPORTS: &str = "exports";

/// A plan as apply takes it: whole in memory (small plans, the scripts' front end), or a plan
/// file read as a stream, its contacts one at a time (what scales).
#[derive(Debug, Clone)]
pub enum PlanSource {
    /// A plan in memory, contacts included.
    Memory(Plan),
    /// A plan file: its header and subjects in memory, its contacts read on demand.
    File(PlanFile),
}

/// A contact of a plan with the sha256 of its line, or why it cannot be read.
pub type ContactItem = Result<(ContactPlan, [u8; 32]), String>;

impl PlanSource {
    /// The plan's header and subjects (for [`PlanSource::Memory`] the whole plan; never read its
    /// contacts from here: use [`contacts`](Self::contacts)).
    pub fn head(&self) -> &Plan {
        match self {
            Self::Memory(plan) => plan,
            Self::File(file) => file.head(),
        }
    }

    /// The plan id.
    pub fn plan_id(&self) -> &str {
        &self.head().plan_id
    }

    /// How many contacts the plan holds.
    pub fn contact_count(&self) -> u64 {
        match self {
            Self::Memory(plan) => plan.body.contacts.len() as u64,
            Self::File(file) => file.records().contacts.count,
        }
    }

    /// The contacts in the plan's order, each with the sha256 of its line; for a file, the last
    /// item is an error when the lines do not match the header.
    ///
    /// # Errors
    /// The file cannot be opened again.
    pub fn contacts(&self) -> Result<Box<dyn Iterator<Item = ContactItem> + Send + '_>, String> {
        match self {
            Self::Memory(plan) => Ok(Box::new(plan.body.contacts.iter().map(|contact| {
                let digest =
                    crate::plan::file::line_digest(&crate::plan::file::contact_line(contact));
                Ok((contact.clone(), digest))
            }))),
            Self::File(file) => Ok(Box::new(file.contacts()?)),
        }
    }

    /// Whether the plan would delete anything.
    fn deletes(&self) -> bool {
        let head = self.head();
        head.body.delete == crate::plan::DeleteMode::Confirmed
            || head.body.summary.to_delete > 0
            || head.body.contacts.iter().any(|c| c.delete)
    }
}

impl From<Plan> for PlanSource {
    fn from(plan: Plan) -> Self {
        Self::Memory(plan)
    }
}

impl From<PlanFile> for PlanSource {
    fn from(file: PlanFile) -> Self {
        Self::File(file)
    }
}

/// A plan that passed the gate for one environment. Only [`authorize`] makes one.
#[derive(Debug, Clone)]
pub struct ApprovedPlan {
    plan: PlanSource,
    approvers: BTreeSet<String>,
    accepted: Vec<approval::Accepted>,
    /// The approvals given, each of which passed (kept in the export bag by the run).
    approvals: Vec<Approval>,
}

impl ApprovedPlan {
    /// The plan's header and subjects (the whole plan when it is in memory; a plan file's
    /// contacts are read through [`source`](Self::source)).
    pub fn plan(&self) -> &Plan {
        self.plan.head()
    }

    /// The plan as it was given: in memory, or a plan file.
    pub fn source(&self) -> &PlanSource {
        &self.plan
    }

    /// The approvers whose approvals were accepted (none where approval is not required and
    /// none was given).
    pub fn approvers(&self) -> &BTreeSet<String> {
        &self.approvers
    }

    /// The accepted approvals, one per approver, sorted by approver: who, the key that verified
    /// it, the digest of its signature and its expiry.
    pub fn accepted(&self) -> &[approval::Accepted] {
        &self.accepted
    }

    /// The approvals given to the gate, as given (each passed it).
    pub fn approvals(&self) -> &[Approval] {
        &self.approvals
    }
}

/// Where an environment's runs write: its audit log, its export bags, and the checkpoint key,
/// with the policy's defaults applied and paths resolved from the environments file.
pub struct Outputs {
    /// The audit log.
    pub audit_log: PathBuf,
    /// The folder of export bags.
    pub exports_dir: PathBuf,
    /// The key that signs the log's checkpoint.
    pub signing_key: Option<ed25519_dalek::SigningKey>,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("audit_log", &self.audit_log)
            .field("exports_dir", &self.exports_dir)
            .field("signing_key", &self.signing_key.is_some())
            .finish()
    }
}

/// Why the outputs of an environment cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum OutputsError {
    /// A folder cannot be created.
    #[error("cannot create `{}`: {source}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The signing key cannot be read.
    #[error("cannot read the signing key")]
    SigningKey(#[source] audit::KeyError),
}

impl Outputs {
    /// Applies the policy's defaults, creates the folders and loads the signing key.
    ///
    /// # Errors
    /// A folder that cannot be created, or a signing key that cannot be read.
    pub fn prepare(
        environments: &Environments,
        environment: &Environment,
    ) -> Result<Self, OutputsError> {
        let base = &environments.base_dir;
        let policy = &environment.policy;
        let audit_log =
            base.join(policy.audit_log.clone().unwrap_or_else(|| DEFAULT_AUDIT_LOG.into()));
        let exports_dir =
            base.join(policy.exports.clone().unwrap_or_else(|| DEFAULT_EXPORTS.into()));
        for dir in [crate::durable::parent_dir(&audit_log), exports_dir.clone()] {
            std::fs::create_dir_all(&dir)
                .map_err(|source| OutputsError::Folder { path: dir.clone(), source })?;
        }
        let signing_key = match &policy.signing_key {
            None => None,
            Some(path) => {
                Some(audit::load_signing_key(&base.join(path)).map_err(OutputsError::SigningKey)?)
            }
        };
        Ok(Self { audit_log, exports_dir, signing_key })
    }

    /// The export bag of a plan.
    pub fn bag(&self, plan: &Plan) -> PathBuf {
        self.exports_dir.join(&plan.body.request.id)
    }

    /// The audit log segment of `shard` of `plan`: beside the audit log, named by the plan
    /// (its id's first 12 digits) and the shard, `audit.plan-<id12>.shard-I-of-N.jsonl`, so
    /// that each plan's shards have their own segments in an audit log shared by requests.
    pub fn segment(&self, plan: &Plan, shard: super::Shard) -> PathBuf {
        shard.segment(&super::shard::plan_log(&self.audit_log, &plan.plan_id))
    }

    /// The folder that holds the export bag of `shard` of `plan`:
    /// `<exports>/<request>.shard-I-of-N`, the bag `<request>` inside it.
    pub fn shard_exports_dir(&self, plan: &Plan, shard: super::Shard) -> PathBuf {
        shard.exports_dir(&self.exports_dir, &plan.body.request.id)
    }

    /// The export bag of `shard` of `plan`.
    pub fn shard_bag(&self, plan: &Plan, shard: super::Shard) -> PathBuf {
        self.shard_exports_dir(plan, shard).join(&plan.body.request.id)
    }
}

/// Lets `plan` through the gate of the environment in `context`, with `approvals`: the
/// manifest is unchanged since planning, the plan was made under this policy and against this
/// target, and the approvals satisfy the policy. A refusal is recorded in the audit log.
///
/// # Errors
/// The first check that fails ([`ApplyError::Manifest`], [`ApplyError::Unbound`],
/// [`ApplyError::Approval`]), or an audit log that cannot be written.
pub fn authorize(
    plan: &Plan,
    approvals: &[Approval],
    context: &ApplyContext<'_>,
) -> Result<ApprovedPlan, ApplyError> {
    authorize_source(PlanSource::Memory(plan.clone()), approvals, context)
}

/// [`authorize`] for a plan in memory or a plan file.
///
/// # Errors
/// As [`authorize`].
pub fn authorize_source(
    source: PlanSource,
    approvals: &[Approval],
    context: &ApplyContext<'_>,
) -> Result<ApprovedPlan, ApplyError> {
    let input = &context.input;
    let plan = source.head();
    bound(plan, context)?;
    let now = jiff::Timestamp::now();
    match approval::verify(&plan.plan_id, approvals, input.environment, &context.base_dir, now) {
        Ok(accepted) => Ok(ApprovedPlan {
            plan: source,
            approvers: accepted.iter().map(|a| a.by.clone()).collect(),
            accepted,
            approvals: approvals.to_vec(),
        }),
        Err(error) => Err(refused(plan, context, approval_reason(&error), error.into())?),
    }
}

/// Lets a plan that deletes nothing through without approvals, for a front end that only
/// exports (`ucs-gdpr export`, the Genesys `exportUcsInteractions.sh` replacement, which
/// Genesys runs without a review step): the manifest and the policy and target bindings are
/// checked as by [`authorize`], and a plan that would delete anything is refused here whatever
/// the policy says. A refusal is recorded in the audit log.
///
/// # Errors
/// As [`authorize`], or [`ApplyError::NeedsApproval`] for a plan that deletes.
pub fn authorize_without_deletion(
    plan: &Plan,
    context: &ApplyContext<'_>,
) -> Result<ApprovedPlan, ApplyError> {
    let input = &context.input;
    let source = PlanSource::Memory(plan.clone());
    bound(plan, context)?;
    if source.deletes() && input.environment.requires_approval() {
        let error = ApplyError::NeedsApproval(input.environment_name.to_owned());
        return Err(refused(plan, context, "approval-required", error)?);
    }
    Ok(ApprovedPlan {
        plan: source,
        approvers: BTreeSet::new(),
        accepted: Vec::new(),
        approvals: Vec::new(),
    })
}

/// The manifest is the one the plan was made from, and the plan was made under this
/// environment's policy and against its target; a refusal is recorded.
fn bound(plan: &Plan, context: &ApplyContext<'_>) -> Result<(), ApplyError> {
    let input = &context.input;
    let body = &plan.body;
    if body.request.manifest_sha256 != input.manifest_sha256 {
        let error = ApplyError::Manifest {
            path: body.request.manifest_path.clone(),
            why: "changed since the plan was made; plan again".to_owned(),
        };
        return Err(refused(plan, context, "manifest-changed", error)?);
    }
    // The subjects file is part of the request: its digest is in the plan.
    let now = input.request.subjects_file.as_ref();
    if body.request.subjects_file.as_ref() != now {
        let file = body.request.subjects_file.as_ref().or(now).map_or("", |f| f.path.as_str());
        let error = ApplyError::Manifest {
            path: body.request.manifest_path.clone(),
            why: format!(
                "names the subjects file `{file}`, which changed since the plan was made; plan again"
            ),
        };
        return Err(refused(plan, context, "subjects-file-changed", error)?);
    }
    if let Some(error) = unbound(plan, input.environment, input.environment_name) {
        let reason = match &error {
            ApplyError::Unbound { what: "target", .. } => "target-differs",
            _ => "policy-differs",
        };
        return Err(refused(plan, context, reason, error)?);
    }
    Ok(())
}

/// The refusal when the plan was made under another policy or against another target than
/// `environment`'s.
pub(crate) fn unbound(plan: &Plan, environment: &Environment, name: &str) -> Option<ApplyError> {
    let recorded = &plan.body.environment;
    let now = &environment.digests;
    let what = if recorded.policy_sha256 != now.policy {
        "policy"
    } else if recorded.target_sha256 != now.target {
        "target"
    } else {
        return None;
    };
    Some(ApplyError::Unbound { what, environment: name.to_owned() })
}

fn approval_reason(error: &approval::ApprovalError) -> &'static str {
    use approval::ApprovalError as E;
    match error {
        E::Unreadable { .. } => "approval-unreadable",
        E::WrongPlan { .. } => "approval-wrong-plan",
        E::Forged { .. } => "approval-forged",
        E::NotAnApprover { .. } => "approval-not-an-approver",
        E::Unsigned { .. } => "approval-unsigned",
        E::NoKey { .. } => "approval-no-key",
        E::Expired { .. } => "approval-expired",
        E::BadExpiry { .. } => "approval-bad-expiry",
        E::NotEnough { .. } => "approval-not-enough",
    }
}

/// Records `run.refused` with `reason` (durably) and returns `error` to be returned; an audit
/// log that cannot be written is the error instead.
fn refused(
    plan: &Plan,
    context: &ApplyContext<'_>,
    reason: &str,
    error: ApplyError,
) -> Result<ApplyError, ApplyError> {
    record_refusal(plan, &context.actor, &context.audit_log, context.signing_key.clone(), reason)?;
    Ok(error)
}

/// Appends a durable `run.refused` record for `plan` to the log at `path`, and closes it.
///
/// # Errors
/// The log cannot be written, or a value cannot go into a record.
pub(crate) fn record_refusal(
    plan: &Plan,
    actor: &str,
    path: &Path,
    signing_key: Option<ed25519_dalek::SigningKey>,
    reason: &str,
) -> Result<(), ApplyError> {
    let record = |e: audit::RecordError| ApplyError::Record(e.to_string());
    let mut log =
        AuditLog::open_with(path, audit::LogOptions { signing_key, ..Default::default() })?;
    let entry = Entry::new(audit::Actor::new(actor.to_owned()).map_err(record)?, Event::RunRefused)
        .request(audit::RequestId::new(plan.body.request.id.clone()).map_err(record)?)
        .plan(audit::Sha256Hex::new(plan.plan_id.clone()).map_err(record)?)
        .outcome(Outcome::Refused)
        .detail(Detail { reason: audit::Token::new(reason).ok(), ..Detail::default() });
    log.append_durable(entry)?;
    log.finish()?;
    Ok(())
}
