//! The executor: runs exactly the approved plan against UCS, writing an audit intent before every
//! side effect and its outcome after, exporting before deleting, and resuming from the audit log.
//!
//! Order of business: [`authorize`] (the gate: the manifest unchanged, the plan bound to this
//! policy and target, its approvals) makes the [`ApprovedPlan`] that [`run`] requires; `run`
//! then plans again, read-only, and refuses unless the result equals the approved plan (contacts
//! this plan already acted on are exempt: their change is ours), then runs the steps in DAG
//! order per contact, contacts in parallel. A contact is deleted only after its export is on disk and verified (invariant 1),
//! and only when the plan says so (invariant 2).

pub mod approval;
mod compare;
pub mod gate;
pub mod receipt;
pub mod shard;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, stream};

use crate::audit::{self, AuditLog, Detail, Entry, Event, Outcome};
use crate::export::{self, Bag, ContactExport, ExportOptions, ExportedFile, PayloadKind, Tag};
use crate::plan::{self, ContactPlan, Plan, PlanInput, StepStatus};
use crate::runbook::{Runbook, Scope, StepKind};
use crate::ucs::{
    CallSite, ContactId, DataSource, DeleteOutcome, ErrorKind, InteractionListing, RetryEvent, Ucs,
    UcsError, list_all_interactions,
};

pub use gate::{
    ApprovedPlan, ContactItem, Outputs, OutputsError, PlanSource, authorize, authorize_source,
    authorize_without_deletion,
};
pub use receipt::{ContactReceipt, CumulativeReceipt, DoneBy, Receipt, RunSummary, StepReceipt};
pub use shard::{Shard, ShardError};

/// Why apply did not run, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The plan's approvals do not satisfy the policy.
    #[error(transparent)]
    Approval(#[from] approval::ApprovalError),
    /// The plan has blockers: nothing can be applied.
    #[error("the plan has {0} blocker(s); resolve them and plan again")]
    Blocked(usize),
    /// The world changed since the plan was made.
    #[error("the plan is stale: the live state no longer matches it")]
    Stale(Vec<String>),
    /// The plan differs from what planning again from the manifest, the runbook, the policy and
    /// the live state gives (it was edited, or made from other inputs).
    #[error("the plan does not match what planning again gives; nothing was changed")]
    Mismatch(Vec<String>),
    /// The plan was made under another policy, or against another target, than the
    /// environment it is applied with.
    #[error(
        "the plan was made under another {what} than environment `{environment}` has now: it \
         cannot run with this environments file; nothing was changed"
    )]
    Unbound {
        /// `policy` or `target`.
        what: &'static str,
        /// The environment.
        environment: String,
    },
    /// UCS could not be read while checking the plan against the live state, even after
    /// retrying: nothing is known to have changed, and nothing was done.
    #[error(
        "UCS is unreachable: the live state could not be read to check the plan ({0}); nothing \
         was changed"
    )]
    Unreachable(String),
    /// A plan that deletes, where the policy requires approval, offered without approvals.
    #[error("environment `{0}` requires an approved plan before anything is deleted")]
    NeedsApproval(String),
    /// The manifest the plan was made from changed or is gone.
    #[error("the request manifest `{path}` {why}")]
    Manifest {
        /// The manifest.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// The audit log cannot be written.
    #[error("the audit log cannot be written")]
    Audit(#[from] audit::AuditError),
    /// The export folder cannot be prepared.
    #[error("the export package cannot be prepared")]
    Export(#[from] export::ExportError),
    /// A value could not go into an audit record.
    #[error("an audit record could not be made: {0}")]
    Record(String),
}

/// What apply needs besides the plan.
pub struct ApplyContext<'a> {
    /// A fresh plan input for the same request, to check for staleness.
    pub input: PlanInput<'a>,
    /// The runbook.
    pub runbook: &'a Runbook,
    /// The folder of the environments file (approver keys are found from there).
    pub base_dir: PathBuf,
    /// Who runs it (an operator login, validated).
    pub actor: String,
    /// The audit log file.
    pub audit_log: PathBuf,
    /// The signing key for the checkpoint.
    pub signing_key: Option<ed25519_dalek::SigningKey>,
    /// Where export bags go.
    pub exports_dir: PathBuf,
    /// Contacts at once.
    pub concurrency: usize,
    /// Set to stop scheduling new contacts (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// Retries the client reported (its retry hook pushes them here), drained into the log,
    /// each under the contact and step of its [`CallSite`].
    pub retries: Arc<Mutex<Vec<RetryEvent>>>,
    /// Told how far the re-check is, and each time a contact is finished.
    pub progress: &'a (dyn Fn(&Progress<'_>) + Sync),
    /// Only this shard's contacts are re-checked and run (`audit_log` and `exports_dir` are
    /// then the shard's own); `None`: the whole plan.
    pub shard: Option<Shard>,
}

impl std::fmt::Debug for ApplyContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyContext")
            .field("runbook", &self.runbook.name)
            .field("actor", &self.actor)
            .field("audit_log", &self.audit_log)
            .field("exports_dir", &self.exports_dir)
            .field("concurrency", &self.concurrency)
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

/// How far a run is: a contact finished (or, before anything is done, how far the re-check
/// is, see [`Stage`]).
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// What is counted.
    pub stage: Stage,
    /// Contacts finished so far, this one included (in the re-check: subjects resolved or
    /// contacts read).
    pub done: usize,
    /// Contacts in the plan (in the re-check: subjects or contacts to read).
    pub total: usize,
    /// The contact just finished (empty in the re-check).
    pub contact: &'a str,
    /// What happened to it, in a few words (ids and outcomes only; empty in the re-check).
    pub summary: &'a str,
}

/// What a [`Progress`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The re-check against the live state before anything is done (planning again), in its
    /// phase.
    Recheck(plan::Phase),
    /// The run: contacts finished.
    Contacts,
}

impl std::fmt::Display for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stage {
            Stage::Contacts => write!(
                f,
                "[{}/{}] contact {}: {}",
                self.done, self.total, self.contact, self.summary
            ),
            Stage::Recheck(plan::Phase::Resolving) => {
                write!(f, "re-check: {}/{} subjects resolved", self.done, self.total)
            }
            Stage::Recheck(plan::Phase::Reading) => {
                write!(f, "re-check: {}/{} contacts read", self.done, self.total)
            }
        }
    }
}

/// The audit log shared by contacts running in parallel.
struct Trail {
    log: audit::SharedLog,
    actor: audit::Actor,
    request: audit::RequestId,
    plan: audit::Sha256Hex,
}

impl Trail {
    fn entry(&self, event: Event) -> Entry {
        Entry::new(self.actor.clone(), event).request(self.request.clone()).plan(self.plan.clone())
    }

    fn with(&self, event: Event, step: &str, contact: Option<&str>) -> Result<Entry, ApplyError> {
        let mut entry = self.entry(event);
        entry =
            entry.step(audit::StepId::new(step).map_err(|e| ApplyError::Record(e.to_string()))?);
        if let Some(contact) = contact {
            entry = entry.contact(
                audit::ContactId::new(contact).map_err(|e| ApplyError::Record(e.to_string()))?,
            );
        }
        Ok(entry)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuditLog> {
        self.log.lock()
    }

    /// Writes an intent before a side effect and waits until it is fsynced (group-committed
    /// with other contacts' intents, off the runtime's threads: see [`audit::SharedLog`]).
    async fn intent(&self, step: &str, contact: &str, detail: Detail) -> Result<(), ApplyError> {
        let entry = self.with(Event::StepIntent, step, Some(contact))?.detail(detail);
        self.log.append_intent(entry).await?;
        Ok(())
    }

    /// Records an outcome (group-committed).
    fn outcome(
        &self,
        event: Event,
        step: &str,
        contact: Option<&str>,
        outcome: Outcome,
        detail: Detail,
    ) -> Result<(), ApplyError> {
        let entry = self.with(event, step, contact)?.outcome(outcome).detail(detail);
        self.lock().append(entry)?;
        Ok(())
    }

    /// Records the retries the client reported from `step` of `contact` (each retry carries
    /// its [`CallSite`]: contacts run concurrently, so the buffer holds other contacts' retries
    /// too, which stay for their own step to record). A retry from no step of a run (a plan
    /// made before it) is not part of its trail and is dropped here.
    fn retries(
        &self,
        retries: &Mutex<Vec<RetryEvent>>,
        step: &str,
        contact: Option<&str>,
    ) -> Result<(), ApplyError> {
        let mine: Vec<RetryEvent> = {
            let mut buffer = retries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let (mine, rest): (Vec<RetryEvent>, Vec<RetryEvent>) =
                std::mem::take(&mut *buffer).into_iter().partition(|retry| {
                    retry.site.as_ref().is_some_and(|site| {
                        site.step.as_deref() == Some(step)
                            && (contact.is_none() || site.contact.as_deref() == contact)
                    })
                });
            *buffer = rest
                .into_iter()
                .filter(|r| r.site.as_ref().is_some_and(|s| s.step.is_some()))
                .collect();
            mine
        };
        for retry in mine {
            let detail = Detail {
                attempt: Some(retry.attempt),
                http_status: retry.status,
                code: audit::Token::new(retry.kind.code()).ok(),
                reason: audit::Token::new(retry.operation.as_str().to_lowercase()).ok(),
                ..Detail::default()
            };
            let contact = retry.site.as_ref().and_then(|site| site.contact.as_deref());
            self.outcome(Event::StepRetry, step, contact, Outcome::Failed, detail)?;
        }
        Ok(())
    }
}

/// A step the log shows this plan finished: how, with which facts, and in which run by whom.
#[derive(Debug, Clone)]
struct DoneStep {
    outcome: Outcome,
    facts: Facts,
    by: DoneBy,
}

/// What a resumed step's receipt takes from its `step.done` record: its counts, and whether the
/// outcome was confirmed after a lost answer.
#[derive(Debug, Clone, Copy, Default)]
struct Facts {
    interactions: Option<u64>,
    attachments: Option<u64>,
    bytes: Option<u64>,
    count: Option<u64>,
    absent_after_lost_answer: bool,
}

impl Facts {
    fn of(detail: Option<&Detail>) -> Self {
        let Some(detail) = detail else { return Self::default() };
        Self {
            interactions: detail.interactions,
            attachments: detail.attachments,
            bytes: detail.bytes,
            count: detail.count,
            absent_after_lost_answer: detail
                .reason
                .as_ref()
                .is_some_and(|r| r.as_str() == ABSENT_AFTER_LOST_ANSWER),
        }
    }
}

impl DoneStep {
    /// The step's receipt in a run that resumes it: the earlier run's outcome, counts and name.
    fn resumed(&self, step: &str, kind: StepKind) -> StepReceipt {
        let facts = self.facts;
        let mut receipt = StepReceipt::resumed(step, self.outcome);
        match kind {
            StepKind::Export => {
                receipt.count = facts.interactions;
                receipt.attachments = facts.attachments;
                receipt.bytes = facts.bytes;
            }
            _ => receipt.count = facts.count,
        }
        receipt.confirmed_by =
            facts.absent_after_lost_answer.then(|| ABSENT_AFTER_LOST_ANSWER.to_owned());
        receipt.done_by = Some(self.by.clone());
        receipt
    }
}

/// What the audit log shows this plan already did, per contact: read record by record (the
/// log is never held whole) into a compact form: step ids and actors are small indexes into
/// tables, and of each `step.done` only what a resumed step's receipt needs is kept.
#[derive(Debug, Default)]
struct Done {
    plan_id: String,
    /// The step ids seen, by index.
    steps: Vec<String>,
    /// The actors seen, by index.
    actors: Vec<String>,
    /// Per contact, the steps with an intent or an outcome.
    contacts: BTreeMap<Box<str>, ContactDone>,
    /// Whether any intent was recorded.
    any_intent: bool,
}

/// A run and its actor (an index into [`Done::actors`]).
#[derive(Debug, Clone, Copy)]
struct By {
    run: Option<u64>,
    actor: u32,
}

/// One contact's steps, and the sha256 of its export's files from the last `step.done` that
/// recorded one.
#[derive(Debug, Clone, Default)]
struct ContactDone {
    entries: Vec<DoneEntry>,
    export_sha256: Option<Box<str>>,
}

/// One step of one contact: its last intent, its last outcome.
#[derive(Debug, Clone)]
struct DoneEntry {
    step: u32,
    intent: Option<By>,
    outcome: Option<(Outcome, Facts, By)>,
}

fn intern(table: &mut Vec<String>, text: &str) -> u32 {
    let found = table.iter().position(|t| t == text);
    let index = found.unwrap_or_else(|| {
        table.push(text.to_owned());
        table.len() - 1
    });
    u32::try_from(index).unwrap_or(u32::MAX)
}

impl Done {
    fn read(log: &Path, plan_id: &str) -> Result<Done, ApplyError> {
        let mut done = Done { plan_id: plan_id.to_owned(), ..Done::default() };
        if !log.exists() {
            return Ok(done);
        }
        // A record belongs to the run whose `run.start` precedes it: one writer holds the log
        // at a time, so a run's records follow its start.
        let mut run = None;
        audit::for_each_record(log, |_, record| {
            if record.plan_id.as_ref().map(audit::Sha256Hex::as_str) != Some(plan_id) {
                return;
            }
            if record.event == Event::RunStart {
                run = Some(record.seq);
            }
            if !matches!(record.event, Event::StepIntent | Event::StepDone) {
                return;
            }
            let (Some(contact), Some(step)) = (&record.contact, &record.step) else { return };
            let by = By { run, actor: intern(&mut done.actors, record.actor.as_str()) };
            let step = intern(&mut done.steps, step.as_str());
            let known = match done.contacts.get_mut(contact.as_str()) {
                Some(known) => known,
                None => done.contacts.entry(contact.as_str().into()).or_default(),
            };
            if record.event == Event::StepDone
                && let Some(sha) = record.detail.as_ref().and_then(|d| d.sha256.as_ref())
            {
                known.export_sha256 = Some(sha.as_str().into());
            }
            let entries = &mut known.entries;
            let entry = match entries.iter().position(|e| e.step == step) {
                Some(at) => entries.get_mut(at),
                None => {
                    entries.push(DoneEntry { step, intent: None, outcome: None });
                    entries.last_mut()
                }
            };
            let Some(entry) = entry else { return };
            if record.event == Event::StepIntent {
                entry.intent = Some(by);
                done.any_intent = true;
                return;
            }
            let outcome = record.outcome.unwrap_or(Outcome::Ok);
            entry.outcome = Some((outcome, Facts::of(record.detail.as_ref()), by));
        })?;
        Ok(done)
    }

    fn done_by(&self, by: By) -> DoneBy {
        DoneBy {
            run: by.run,
            actor: usize::try_from(by.actor)
                .ok()
                .and_then(|a| self.actors.get(a))
                .cloned()
                .unwrap_or_default(),
            plan_id: self.plan_id.clone(),
        }
    }

    fn entry(&self, contact: &str, step: &str) -> Option<&DoneEntry> {
        let step = self.steps.iter().position(|s| s == step)?;
        self.contacts
            .get(contact)?
            .entries
            .iter()
            .find(|e| usize::try_from(e.step).is_ok_and(|s| s == step))
    }

    fn is_done(&self, contact: &str, step: &str) -> Option<DoneStep> {
        let (outcome, facts, by) = self.entry(contact, step)?.outcome?;
        Some(DoneStep { outcome, facts, by: self.done_by(by) })
    }

    /// The sha256 the last `step.done` of `contact` that recorded one recorded, if any.
    fn export_digest(&self, contact: &str) -> Option<&str> {
        self.contacts.get(contact)?.export_sha256.as_deref()
    }

    /// The earlier run of this plan that announced a side effect of `step` on `contact` and
    /// recorded no outcome for it (it was killed, or lost the answer, in between).
    fn unfinished_intent(&self, contact: &str, step: &str) -> Option<DoneBy> {
        let entry = self.entry(contact, step)?;
        if entry.outcome.is_some() {
            return None;
        }
        entry.intent.map(|by| self.done_by(by))
    }

    /// Whether this plan already had a side effect on any contact.
    fn any_touched(&self) -> bool {
        self.any_intent
    }

    /// Whether this plan already had a side effect on the contact (its state is ours to change).
    fn touched(&self, contact: &str) -> bool {
        self.contacts.get(contact).is_some_and(|c| c.entries.iter().any(|e| e.intent.is_some()))
    }
}

/// How a delete is confirmed when its answer was lost and the contact was then found absent.
const ABSENT_AFTER_LOST_ANSWER: &str = "absent-after-lost-answer";

/// Runs an approved plan. Returns the receipt (also written into the bag) whatever happened to each
/// contact; an `Err` means nothing was applied.
///
/// # Errors
/// Approvals, blockers, a stale plan, or an audit log that cannot be written; in each case no
/// side effect has happened (a refusal is recorded in the log when the log can be written).
pub async fn run<U: Ucs>(
    approved: &ApprovedPlan,
    context: &ApplyContext<'_>,
    ucs: &U,
) -> Result<Receipt, ApplyError> {
    let source = approved.source();
    let plan = source.head();
    let body = &plan.body;
    let actor =
        audit::Actor::new(context.actor.clone()).map_err(|e| ApplyError::Record(e.to_string()))?;
    let trail = Trail {
        log: audit::SharedLog::new(AuditLog::open_with(
            &context.audit_log,
            audit::LogOptions { signing_key: context.signing_key.clone(), ..Default::default() },
        )?)?,
        actor,
        request: audit::RequestId::new(body.request.id.clone())
            .map_err(|e| ApplyError::Record(e.to_string()))?,
        plan: audit::Sha256Hex::new(plan.plan_id.clone())
            .map_err(|e| ApplyError::Record(e.to_string()))?,
    };
    // Each accepted approval: who, the registered key that verified it, the digest of its
    // signature, and its expiry when it has one.
    for accepted in approved.accepted() {
        let detail = Detail {
            approver: audit::Actor::new(accepted.by.clone()).ok(),
            key_id: audit::KeyId::new(accepted.key_id.clone()).ok(),
            signature_sha256: audit::Sha256Hex::new(accepted.signature_sha256.clone()).ok(),
            expires_at: accepted.expires_at.clone().and_then(|t| audit::RecordTime::new(t).ok()),
            ..Detail::default()
        };
        trail.lock().append(trail.entry(Event::Approval).outcome(Outcome::Ok).detail(detail))?;
    }
    // The gate let the plan through for an environment; this must be that one (a plan is bound
    // to the policy and the target it was made under).
    if let Some(error) =
        gate::unbound(plan, context.input.environment, context.input.environment_name)
    {
        let reason = match &error {
            ApplyError::Unbound { what: "target", .. } => "target-differs",
            _ => "policy-differs",
        };
        return refuse(trail, reason, error);
    }
    if !body.blockers.is_empty() {
        return refuse(trail, "blocked", ApplyError::Blocked(body.blockers.len()));
    }
    let done = Done::read(&context.audit_log, &plan.plan_id)?;
    // A shard re-checks and runs its own contacts only; the others' are other shards' (their
    // state may be changing right now) and are left out of the comparison.
    let mine = |id: &str| context.shard.is_none_or(|shard| shard.contains_id(id));
    let exempt = |id: &str| done.touched(id) || !mine(id);

    // Stale-plan detection: plan again, compare. "UCS could not be read" is not "UCS changed":
    // a re-check that cannot read is retried, and if it still cannot, refused as unreachable.
    // Its retries are recorded under the `plan.recheck` phase (a runbook step id has no `.`),
    // each under the contact whose read it was. The re-check is pass 1 over the plan's
    // contacts: each fresh contact is compared with the approved one as both stream in id
    // order, every line is hashed (against the header) and its digest kept for pass 2.
    let told = |step: plan::Progress| {
        (context.progress)(&Progress {
            stage: Stage::Recheck(step.phase),
            done: step.done,
            total: step.total,
            contact: "",
            summary: "",
        });
    };
    let recheck = || {
        CallSite::step(None, RECHECK).scope(recheck(
            source,
            &context.input,
            ucs,
            &told,
            &mine,
            &exempt,
        ))
    };
    let mut pass = recheck().await?;
    for pause in RECHECK_PAUSES {
        if unreadable(&pass.fresh).is_none() {
            break;
        }
        tokio::time::sleep(pause).await;
        pass = recheck().await?;
    }
    trail.retries(&context.retries, RECHECK, None)?;
    if let Some(fault) = pass.fault {
        return refuse(trail, "plan-mismatch", ApplyError::Mismatch(vec![fault]));
    }
    if let Some(what) = unreadable(&pass.fresh) {
        return refuse(trail, "unreachable", ApplyError::Unreachable(what));
    }
    let changes = differences(plan, &pass.fresh, &exempt, pass.changes);
    if !changes.is_empty() {
        return refuse(trail, "stale-plan", ApplyError::Stale(changes));
    }
    // Every action-relevant field, not only the fingerprints: an edited plan whose id was
    // recomputed is refused here.
    let edits = compare::head_mismatches(
        plan,
        &pass.fresh,
        &exempt,
        done.any_touched() || context.shard.is_some(),
        pass.edits,
    );
    if !edits.is_empty() {
        return refuse(trail, "plan-mismatch", ApplyError::Mismatch(edits));
    }

    let total = pass.mine;
    let started = trail.lock().append_durable(
        trail
            .entry(Event::RunStart)
            .detail(Detail { count: Some(total as u64), ..Detail::default() }),
    )?;
    // The run id, as the audit log knows it: the seq of this run's `run.start`.
    let this_run = DoneBy {
        run: Some(started.seq),
        actor: context.actor.clone(),
        plan_id: plan.plan_id.clone(),
    };

    // Request-scope steps: their checks were just re-run by the fresh plan.
    for step in &body.request_steps {
        let (event, outcome) = match step.status {
            StepStatus::Ready => (Event::StepDone, Outcome::Ok),
            _ => (Event::StepSkipped, Outcome::Skipped),
        };
        let reason = match step.status {
            StepStatus::NotConfigured => audit::Token::new("not-configured").ok(),
            _ => None,
        };
        let entry = trail.entry(event).step(
            audit::StepId::new(step.id.clone()).map_err(|e| ApplyError::Record(e.to_string()))?,
        );
        trail
            .lock()
            .append(entry.outcome(outcome).detail(Detail { reason, ..Detail::default() }))?;
    }

    let bag = if body.export.is_some() {
        let bag = Bag::open_or_create(&context.exports_dir, &body.request.id)?;
        // A killed run's receipt files beside the bag (`Receipt::keep` writes there).
        if let Some(beside) = bag.root().parent() {
            receipt::remove_stale_temporaries(beside);
        }
        keep_plan_and_approvals(&bag, approved)?;
        Some(bag)
    } else {
        None
    };
    // Pass 2: the same lines again, each refused unless it is the line pass 1 checked (a plan
    // file swapped in between stops the run there).
    let swapped = AtomicBool::new(false);
    let checked = pass.digests;
    let contacts = source
        .contacts()
        .map_err(|e| ApplyError::Mismatch(vec![e]))?
        .zip(checked.iter().map(Some).chain(std::iter::repeat(None)))
        .map_while(|(item, digest)| match (item, digest) {
            (Ok((contact, line)), Some(expected)) if line == *expected => Some(contact),
            _ => {
                swapped.store(true, Ordering::SeqCst);
                None
            }
        })
        // A shard runs its own contacts only.
        .filter(|contact| mine(contact.contact_id.as_str()));
    let finished = std::sync::atomic::AtomicUsize::new(0);
    // Each contact's receipt goes to a spool beside the audit log as it finishes (in id order,
    // through a small reorder buffer): only counts stay in memory.
    let spool_dir = context.audit_log.parent().filter(|d| !d.as_os_str().is_empty());
    let spool_dir = spool_dir.unwrap_or_else(|| Path::new("."));
    let spool_error = |e: std::io::Error| {
        ApplyError::Export(export::ExportError::io("write the receipt spool in", spool_dir, e))
    };
    // A killed run's spools here are removed first: this run holds the audit log's lock, and
    // each file is removed only if no process holds its own lock (another shard's run, writing
    // its segment beside this log, holds its spool's).
    receipt::remove_stale_temporaries(spool_dir);
    let mut spool = receipt::Spool::new_in(spool_dir).map_err(spool_error)?;
    let mut spool_failed = None;
    let mut ran = 0;
    let mut finishing = stream::iter(contacts.enumerate())
        .map(|(index, contact)| {
            let trail = &trail;
            let done = &done;
            let bag = bag.as_ref();
            let finished = &finished;
            let this_run = &this_run;
            async move {
                let contact = &contact;
                let receipt = if context.stop.load(Ordering::SeqCst) {
                    ContactReceipt::not_started(contact)
                } else {
                    run_contact(contact, plan, context, trail, done, bag, ucs, this_run).await
                };
                let done = finished.fetch_add(1, Ordering::SeqCst) + 1;
                (context.progress)(&Progress {
                    stage: Stage::Contacts,
                    done,
                    total,
                    contact: contact.contact_id.as_str(),
                    summary: &receipt.summary(),
                });
                (index, receipt)
            }
        })
        .buffer_unordered(context.concurrency.max(1));
    while let Some((index, receipt)) = finishing.next().await {
        ran += 1;
        // A spool that cannot be written does not stop the contacts in flight (each is in the
        // audit log); the run ends and then reports it.
        if spool_failed.is_none()
            && let Err(error) = spool.push(index, receipt)
        {
            spool_failed = Some(error);
        }
    }
    drop(finishing);
    if swapped.load(Ordering::SeqCst) || ran != total {
        trail.lock().append_durable(trail.entry(Event::RunEnd).outcome(Outcome::Failed).detail(
            Detail {
                count: Some(ran as u64),
                reason: audit::Token::new("plan-changed").ok(),
                ..Detail::default()
            },
        ))?;
        finish(trail)?;
        return Err(ApplyError::Mismatch(vec![format!(
            "the plan file changed while it ran: {} of its {} contact(s) were run, the rest not \
             started",
            ran,
            checked.len()
        )]));
    }
    let receipts = match spool_failed {
        None => spool.finish(),
        Some(error) => Err(error),
    };
    let (failed, interrupted) = match &receipts {
        Ok(receipts) => (receipts.failed() > 0, receipts.not_started() > 0),
        Err(_) => (true, false),
    };
    let outcome = if failed || interrupted { Outcome::Failed } else { Outcome::Ok };
    let reason = if interrupted { audit::Token::new("interrupted").ok() } else { None };
    trail.lock().append_durable(trail.entry(Event::RunEnd).outcome(outcome).detail(Detail {
        count: Some(ran as u64),
        reason,
        ..Detail::default()
    }))?;
    let receipts = match receipts {
        Ok(receipts) => receipts,
        Err(error) => {
            finish(trail)?;
            return Err(spool_error(error));
        }
    };
    let head = trail.lock().head().as_str().to_owned();
    let size = trail.lock().len();
    finish(trail)?;
    let mut receipt =
        Receipt::new(plan, receipts, head, size, interrupted, Some(started.seq), &context.actor);
    receipt.shard = context.shard.map(Shard::label);
    if let Some(bag) = &bag {
        bag.finish()?;
        receipt.keep(bag)?;
        let language = plan.body.request.language.as_deref();
        let language = language.and_then(crate::export::Language::from_tag).unwrap_or_default();
        crate::export::write_index(bag, language).await?;
    }
    Ok(receipt)
}

/// The phase the re-check's retries are recorded under (as their step).
const RECHECK: &str = "plan.recheck";

/// Keeps the plan this run runs (`plans/plan-<planId>.json`, the bytes `plan --out` writes) and
/// its approvals (`approvals/plan-<planId>.approval.<by>.json`) in the bag, before any contact
/// is touched; a different file of the same name is kept and the new one goes beside it.
fn keep_plan_and_approvals(bag: &Bag, approved: &ApprovedPlan) -> Result<(), ApplyError> {
    let plan = approved.plan();
    let name = format!("{}/plan-{}.json", export::PLANS_DIR, plan.plan_id);
    match approved.source() {
        gate::PlanSource::Memory(plan) => bag.keep(&name, &plan.to_canonical_json())?,
        gate::PlanSource::File(file) => bag.keep_file(&name, file.path())?,
    };
    for approval in approved.approvals() {
        // The approver's name is a login the policy lists; only a name that is also a valid
        // audit actor (no separators, no dots first) names a file.
        let by = audit::Actor::new(approval.by.clone())
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|_| crate::canonical::sha256_hex(approval.by.as_bytes()));
        let name = format!("{}/plan-{}.approval.{by}.json", export::APPROVALS_DIR, plan.plan_id);
        bag.keep(&name, &approval.to_json())?;
    }
    Ok(())
}

/// Pauses before each new attempt of a re-check that could not read UCS.
const RECHECK_PAUSES: [std::time::Duration; 2] =
    [std::time::Duration::from_millis(500), std::time::Duration::from_secs(2)];

/// What of a fresh plan could not be read (a subject, a contact), in a few words; `None` when
/// everything was read.
fn unreadable(fresh: &Plan) -> Option<String> {
    let blockers: Vec<&plan::Blocker> = fresh
        .body
        .blockers
        .iter()
        .filter(|b| b.code == "subject::unreadable" || b.code == "step::ucs/read")
        .collect();
    let first = blockers.first()?;
    let what = match (&first.contact_id, first.subject) {
        (Some(contact), _) => format!("contact {contact}"),
        (None, Some(subject)) => format!("subject {subject}"),
        (None, None) => "the request".to_owned(),
    };
    Some(if blockers.len() > 1 {
        format!("{what} and {} more could not be read", blockers.len() - 1)
    } else {
        format!("{what} could not be read")
    })
}

/// Records a refusal (durably), closes the log with its checkpoint, and returns the error.
fn refuse(trail: Trail, reason: &str, error: ApplyError) -> Result<Receipt, ApplyError> {
    let detail = Detail { reason: audit::Token::new(reason).ok(), ..Detail::default() };
    trail
        .lock()
        .append_durable(trail.entry(Event::RunRefused).outcome(Outcome::Refused).detail(detail))?;
    finish(trail)?;
    Err(error)
}

fn finish(trail: Trail) -> Result<(), ApplyError> {
    let log = trail.log.into_inner();
    log.finish()?;
    Ok(())
}

/// What pass 1 (the re-check) found.
struct Pass {
    /// The fresh plan, without its contacts.
    fresh: Plan,
    /// The approved contacts that changed or are gone (stale), in id order.
    changes: Vec<String>,
    /// Every action-relevant field of the contacts that differs.
    edits: compare::ContactDiffs,
    /// The sha256 of each approved contact line, in the file's order.
    digests: Vec<[u8; 32]>,
    /// How many of the plan's contacts are this run's (a shard's part, or all).
    mine: usize,
    /// A plan file whose lines do not match its header, or cannot be read.
    fault: Option<String>,
}

/// Pass 1: plans again into a sink that takes each fresh contact, in id order, beside the
/// approved one (streamed from the plan), and compares them; every approved line is hashed and
/// the file checked against its header. Holds a digest per contact, never the contacts.
async fn recheck<U: Ucs>(
    source: &gate::PlanSource,
    input: &PlanInput<'_>,
    ucs: &U,
    told: &(dyn Fn(plan::Progress) + Sync),
    mine: &(dyn Fn(&str) -> bool + Sync),
    exempt: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Pass, ApplyError> {
    let part = |id: &ContactId| mine(id.as_str());
    let approved = source.contacts().map_err(|e| ApplyError::Mismatch(vec![e]))?;
    let mut approved = approved.peekable();
    let mut changes = Vec::new();
    let mut edits = compare::ContactDiffs::default();
    // One per contact line the plan lists (capped: the count is checked as the lines are read).
    let listed = usize::try_from(source.contact_count()).unwrap_or(usize::MAX);
    let mut digests = Vec::with_capacity(listed.min(crate::plan::file::MAX_RESERVED));
    let mut fault = None;
    let mut count = 0usize;
    let mut take = |approved: &mut std::iter::Peekable<_>, digests: &mut Vec<[u8; 32]>| {
        let next: Option<gate::ContactItem> = Iterator::next(approved);
        match next {
            Some(Ok((contact, digest))) => {
                digests.push(digest);
                if mine(contact.contact_id.as_str()) {
                    count += 1;
                }
                Some(contact)
            }
            Some(Err(error)) => {
                fault.get_or_insert(error);
                None
            }
            None => None,
        }
    };
    let mut sink = |fresh: ContactPlan| -> Result<(), std::convert::Infallible> {
        loop {
            let order = match approved.peek() {
                Some(Ok((contact, _))) => contact.contact_id.cmp(&fresh.contact_id),
                Some(Err(_)) => {
                    take(&mut approved, &mut digests);
                    continue;
                }
                None => std::cmp::Ordering::Greater,
            };
            match order {
                // An approved contact that planning again does not find.
                std::cmp::Ordering::Less => {
                    if let Some(gone) = take(&mut approved, &mut digests)
                        && !exempt(gone.contact_id.as_str())
                    {
                        changes.push(format!("contact {} is gone", gone.contact_id));
                        edits.add(Some(&gone), None);
                    }
                }
                std::cmp::Ordering::Equal => {
                    if let Some(before) = take(&mut approved, &mut digests)
                        && !exempt(before.contact_id.as_str())
                    {
                        if let Some(change) = changed(&before, &fresh) {
                            changes.push(change);
                        }
                        edits.add(Some(&before), Some(&fresh));
                    }
                    return Ok(());
                }
                // A contact the approved plan does not hold.
                std::cmp::Ordering::Greater => {
                    if !exempt(fresh.contact_id.as_str()) {
                        edits.add(None, Some(&fresh));
                    }
                    return Ok(());
                }
            }
        }
    };
    let fresh = match plan::build_into(input, ucs, told, &part, &mut sink).await {
        Ok(body) => body,
        Err(never) => match never {},
    };
    // The approved contacts after the last fresh one are gone; the end checks the file.
    while approved.peek().is_some() {
        if let Some(gone) = take(&mut approved, &mut digests)
            && !exempt(gone.contact_id.as_str())
        {
            changes.push(format!("contact {} is gone", gone.contact_id));
            edits.add(Some(&gone), None);
        }
    }
    Ok(Pass {
        fresh: Plan { plan_id: String::new(), body: fresh },
        changes,
        edits,
        digests,
        mine: count,
        fault,
    })
}

/// How an approved contact changed, by its fingerprint, in words; `None` when it did not.
fn changed(contact: &ContactPlan, now: &ContactPlan) -> Option<String> {
    if now.fingerprint == contact.fingerprint {
        return None;
    }
    let mut what = Vec::new();
    for (source, before) in &contact.sources {
        if let Some(after) = now.sources.get(source) {
            if after.interactions != before.interactions {
                what.push(format!(
                    "{} interaction(s) in {source}, was {}",
                    after.interactions, before.interactions
                ));
            }
            if after.in_flight != before.in_flight {
                what.push(format!(
                    "{} in progress in {source}, was {}",
                    after.in_flight, before.in_flight
                ));
            }
        }
    }
    if what.is_empty() {
        what.push("an interaction's status, workbin or modification changed, or its attributes or Context Services data".to_owned());
    }
    Some(format!("contact {} changed: {}", contact.contact_id, what.join("; ")))
}

/// What differs between the approved plan and a fresh one, ignoring contacts this plan already
/// acted on: `contacts`, what changed of the contacts (gathered as they streamed), in its place.
fn differences(
    approved: &Plan,
    fresh: &Plan,
    exempt: &dyn Fn(&str) -> bool,
    contacts: Vec<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let (a, f) = (&approved.body, &fresh.body);
    if a.runbook.sha256 != f.runbook.sha256 {
        out.push("the runbook changed since the plan was made".to_owned());
    }
    // By index: a shard's fresh plan leaves out the subjects that name other shards' contacts.
    // The planner makes them in index order, one per index: found by a binary search (a map
    // of them cost about 40 bytes a subject).
    let fresh_subject = |index: usize| {
        f.subjects.binary_search_by_key(&index, |s| s.index).ok().and_then(|at| f.subjects.get(at))
    };
    for old in &a.subjects {
        if old.contact_id.as_ref().is_some_and(|c| exempt(c.as_str())) {
            continue;
        }
        let Some(new) = fresh_subject(old.index) else {
            out.push(format!("subject {} is not resolved any more", old.index));
            continue;
        };
        if old.outcome != new.outcome {
            let touched = match &old.outcome {
                plan::Resolution::Found { contacts } => contacts.iter().any(|c| exempt(c.as_str())),
                _ => false,
            };
            if !touched {
                out.push(format!("subject {} now resolves differently", old.index));
            }
        }
    }
    out.extend(contacts);
    if !f.blockers.is_empty() {
        for blocker in &f.blockers {
            out.push(format!("now blocked: {}", blocker.message));
        }
    }
    out
}

/// Runs one contact's steps in order; a failure stops that contact, not the others.
#[allow(clippy::too_many_arguments)]
async fn run_contact<U: Ucs>(
    contact: &ContactPlan,
    plan: &Plan,
    context: &ApplyContext<'_>,
    trail: &Trail,
    done: &Done,
    bag: Option<&Bag>,
    ucs: &U,
    this_run: &DoneBy,
) -> ContactReceipt {
    let mut receipt = ContactReceipt::planned(contact);
    let id = contact.contact_id.as_str();
    let Ok(contact_id) = ContactId::new(id) else {
        receipt.fail("contact", "invalid-contact-id");
        return receipt;
    };
    let mut exported = false;
    let order = context.runbook.order().unwrap_or_default();
    for step in order.iter().filter(|s| s.scope == Scope::Contact) {
        let planned = contact.steps.iter().find(|p| p.id == step.id);
        let status = planned.map_or(StepStatus::Skipped, |p| p.status);
        let result = if contact.hold.is_some() {
            skip(trail, &step.id, id, "hold")
                .map(|()| StepReceipt::skipped(&step.id, "hold"))
                .map_err(StepFailure::from)
        } else {
            let previous = done.is_done(id, &step.id);
            // The step's calls carry its contact and step, so their retries are recorded here.
            CallSite::step(Some(id), &step.id)
                .scope(execute(
                    step.uses,
                    &step.id,
                    status,
                    previous.as_ref(),
                    contact,
                    &contact_id,
                    plan,
                    context,
                    trail,
                    done,
                    bag,
                    ucs,
                    this_run,
                    &mut exported,
                ))
                .await
        };
        let _ = trail.retries(&context.retries, &step.id, Some(id));
        match result {
            Ok(mut step_receipt) => {
                step_receipt.uses = step.uses.name().to_owned();
                if step_receipt.acted() && step_receipt.done_by.is_none() {
                    step_receipt.done_by = Some(this_run.clone());
                }
                receipt.steps.push(step_receipt);
            }
            Err(failure) => {
                let code = failure.code();
                tracing::warn!(contact = id, step = %step.id, error = ?failure, "step failed");
                let _ = trail.outcome(
                    Event::StepFailed,
                    &step.id,
                    Some(id),
                    Outcome::Failed,
                    Detail {
                        code: audit::Token::new(code.clone()).ok(),
                        http_status: failure.status(),
                        ..Detail::default()
                    },
                );
                receipt.fail(&step.id, &code);
                return receipt;
            }
        }
    }
    receipt
}

/// A step that failed, typed for the receipt and the log.
#[derive(Debug)]
enum StepFailure {
    Ucs(UcsError),
    Export(export::ExportError),
    Audit(ApplyError),
    Precondition(&'static str),
    StillPresent,
}

impl StepFailure {
    fn code(&self) -> String {
        match self {
            Self::Ucs(error) => {
                format!("ucs.{}.{}", error.operation.as_str(), error.kind.code()).to_lowercase()
            }
            Self::Export(export::ExportError::Ucs(error)) => {
                format!("export.ucs.{}.{}", error.operation.as_str(), error.kind.code())
                    .to_lowercase()
            }
            Self::Export(export::ExportError::Mismatch { .. }) => "export.mismatch".to_owned(),
            Self::Export(export::ExportError::Io { .. }) => "export.io".to_owned(),
            Self::Export(_) => "export.failed".to_owned(),
            Self::Audit(ApplyError::Record(_)) => "audit.record".to_owned(),
            Self::Audit(_) => "audit.write".to_owned(),
            Self::Precondition(code) => (*code).to_owned(),
            Self::StillPresent => "verify.still-present".to_owned(),
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            Self::Ucs(error) => error.status,
            _ => None,
        }
    }
}

impl From<UcsError> for StepFailure {
    fn from(error: UcsError) -> Self {
        Self::Ucs(error)
    }
}

impl From<ApplyError> for StepFailure {
    fn from(error: ApplyError) -> Self {
        Self::Audit(error)
    }
}

impl From<export::ExportError> for StepFailure {
    fn from(error: export::ExportError) -> Self {
        Self::Export(error)
    }
}

/// A delete's outcome as the audit trail records it: gone already is success, said as such; a
/// delete whose answer was lost and whose target was then found absent is this delete's.
fn recorded(outcome: DeleteOutcome) -> Outcome {
    match outcome {
        DeleteOutcome::Deleted | DeleteOutcome::AbsentAfterLostAnswer => Outcome::Ok,
        DeleteOutcome::AlreadyAbsent => Outcome::AlreadyAbsent,
    }
}

fn skip(trail: &Trail, step: &str, contact: &str, reason: &str) -> Result<(), ApplyError> {
    trail.outcome(
        Event::StepSkipped,
        step,
        Some(contact),
        Outcome::Skipped,
        Detail { reason: audit::Token::new(reason).ok(), ..Detail::default() },
    )
}

#[allow(clippy::too_many_arguments)]
async fn execute<U: Ucs>(
    kind: StepKind,
    step: &str,
    status: StepStatus,
    previous: Option<&DoneStep>,
    contact: &ContactPlan,
    contact_id: &ContactId,
    plan: &Plan,
    context: &ApplyContext<'_>,
    trail: &Trail,
    done: &Done,
    bag: Option<&Bag>,
    ucs: &U,
    this_run: &DoneBy,
    exported: &mut bool,
) -> Result<StepReceipt, StepFailure> {
    let id = contact.contact_id.as_str();
    // Resume: a step this plan finished is not done again (an export is re-verified first).
    if let Some(earlier) = previous
        && kind != StepKind::Export
    {
        return Ok(earlier.resumed(step, kind));
    }
    match kind {
        StepKind::EtlComplete
        | StepKind::NoPendingCallbacks
        | StepKind::StopInProgress
        | StepKind::RequireNoInProgress => {
            // Checks: the fresh plan just ran them; a failure there refused the run. On premise,
            // in-progress interactions are stopped in Interaction Server by an operator, never
            // here (see `StepKind::StopInProgress`): the fresh plan blocks while any is left.
            let (event, outcome, why) = match status {
                StepStatus::Ready => (Event::StepDone, Outcome::Ok, None),
                // Nothing in progress: the on-premise check passed.
                StepStatus::NothingToDo if kind == StepKind::StopInProgress => {
                    (Event::StepDone, Outcome::Ok, None)
                }
                StepStatus::NotConfigured => {
                    (Event::StepSkipped, Outcome::Skipped, Some("not-configured"))
                }
                _ => (Event::StepSkipped, Outcome::Skipped, Some("not-applicable")),
            };
            trail.outcome(
                event,
                step,
                Some(id),
                outcome,
                Detail { reason: why.and_then(|w| audit::Token::new(w).ok()), ..Detail::default() },
            )?;
            Ok(StepReceipt::new(step, outcome))
        }
        StepKind::DeleteProfile => {
            if status != StepStatus::Ready || !contact.delete {
                skip(trail, step, id, "not-planned")?;
                return Ok(StepReceipt::skipped(step, "not-planned"));
            }
            // Invariant 1 holds for every step that deletes, not only the contact's.
            if plan.body.export.is_some() && !*exported {
                return Err(StepFailure::Precondition("delete.export-not-verified"));
            }
            trail.intent(step, id, Detail::default()).await?;
            // Since Context Services 8.5.0 a profile's services (with their states and tasks)
            // outlive it: each is deleted first, then the profile.
            let mut services = 0u64;
            if plan::configured_gms(context.input.environment) {
                let mut found = ucs.list_services(contact_id).await?;
                match ucs.get_contact(contact_id).await {
                    Ok(record) => found.extend(ucs.list_anonymous_services(&record).await?),
                    Err(error) if error.kind == ErrorKind::NotFound => {}
                    Err(error) => return Err(error.into()),
                }
                for service in &found {
                    ucs.delete_service(&service.id).await?;
                    services += 1;
                }
            }
            let outcome = recorded(ucs.delete_profile(contact_id).await?);
            let outcome = if services > 0 { Outcome::Ok } else { outcome };
            trail.outcome(
                Event::StepDone,
                step,
                Some(id),
                outcome,
                Detail { count: Some(services), ..Detail::default() },
            )?;
            Ok(StepReceipt { count: Some(services), ..StepReceipt::new(step, outcome) })
        }
        StepKind::Export => {
            let (Some(bag), Some(export)) = (bag, plan.body.export.as_ref()) else {
                skip(trail, step, id, "no-export")?;
                return Ok(StepReceipt::skipped(step, "no-export"));
            };
            if !contact.export {
                skip(trail, step, id, "not-planned")?;
                return Ok(StepReceipt::skipped(step, "not-planned"));
            }
            // Resume: files recorded as exported are re-verified, never re-fetched (the contact
            // may already be gone).
            if let Some(earlier) = previous {
                let recorded = done.export_digest(id).unwrap_or_default().to_owned();
                verify_recorded(bag, contact_id, &recorded)?;
                *exported = true;
                return Ok(earlier.resumed(step, kind));
            }
            let mut options = ExportOptions::from_plan(export);
            options.page_size = context.input.page_size;
            options.context_services_services =
                options.context_services && plan::configured_gms(context.input.environment);
            options.run = this_run.run;
            // A contact whose live data is now a strict part of the export the bag holds is
            // one whose delete stopped half way: that export is the complete one. Keep it, do
            // not export again, and let the delete finish.
            if let Some(kept) = half_deleted(bag, contact, contact_id, &options, ucs).await? {
                export::verify_contact(bag, &kept)?;
                *exported = true;
                tracing::info!(
                    contact = id,
                    "half-deleted contact: the earlier export is kept and the delete resumed"
                );
                trail.outcome(
                    Event::StepDone,
                    step,
                    Some(id),
                    Outcome::Ok,
                    Detail { reason: audit::Token::new(HALF_DELETED).ok(), ..export_detail(&kept) },
                )?;
                let mut receipt = StepReceipt::new(step, Outcome::Ok).exported(&kept);
                receipt.reason = Some(HALF_DELETED.to_owned());
                return Ok(receipt);
            }
            trail.intent(step, id, Detail::default()).await?;
            // `export_contact` verifies the files against their checksums before it returns.
            let result = export::export_contact(ucs, bag, contact_id, &options).await?;
            *exported = true;
            trail.outcome(Event::StepDone, step, Some(id), Outcome::Ok, export_detail(&result))?;
            Ok(StepReceipt::new(step, Outcome::Ok).exported(&result))
        }
        StepKind::DeleteContact => {
            if !contact.delete || status != StepStatus::Ready {
                let why = if plan.body.delete == plan::DeleteMode::ReportOnly {
                    "not-confirmed"
                } else {
                    "not-planned"
                };
                skip(trail, step, id, why)?;
                return Ok(StepReceipt::skipped(step, why));
            }
            // Invariant 1: an export the request asked for is on disk and verified first.
            if plan.body.export.is_some() && !*exported {
                return Err(StepFailure::Precondition("delete.export-not-verified"));
            }
            trail.intent(step, id, Detail::default()).await?;
            let answer = ucs.delete_contact(contact_id).await?;
            // Who deleted it. Only a contact absent before any delete of this plan was sent is
            // `already-absent`: one whose delete lost its answer and that is then absent was
            // deleted by that delete, in this run (the connector confirmed it by a read) or in an
            // earlier run of this plan that announced the delete and never recorded its outcome
            // (it was killed, or lost the answer, in between).
            let (outcome, confirmed, by) = match answer {
                DeleteOutcome::Deleted => (Outcome::Ok, None, None),
                DeleteOutcome::AbsentAfterLostAnswer => {
                    (Outcome::Ok, Some(ABSENT_AFTER_LOST_ANSWER), None)
                }
                DeleteOutcome::AlreadyAbsent => match done.unfinished_intent(id, step) {
                    Some(earlier) => (Outcome::Ok, Some(ABSENT_AFTER_LOST_ANSWER), Some(earlier)),
                    None => (Outcome::AlreadyAbsent, None, None),
                },
            };
            let detail = Detail {
                reason: confirmed.and_then(|c| audit::Token::new(c).ok()),
                ..Detail::default()
            };
            trail.outcome(Event::StepDone, step, Some(id), outcome, detail)?;
            let mut receipt = StepReceipt::new(step, outcome);
            receipt.confirmed_by = confirmed.map(str::to_owned);
            receipt.done_by = by;
            Ok(receipt)
        }
        StepKind::VerifyAbsent => {
            if !contact.delete || status != StepStatus::Ready {
                skip(trail, step, id, "not-planned")?;
                return Ok(StepReceipt::skipped(step, "not-planned"));
            }
            match ucs.get_contact(contact_id).await {
                Err(error) if error.kind == ErrorKind::NotFound => {}
                Err(error) => return Err(error.into()),
                Ok(_) => return Err(StepFailure::StillPresent),
            }
            let mut left = 0u64;
            for &source in context.input.ucs_version.data_sources() {
                match list_all_interactions(ucs, contact_id, source, context.input.page_size).await
                {
                    Ok(InteractionListing::Found(list)) => left += list.len() as u64,
                    Ok(InteractionListing::SourceUnavailable { .. }) => {}
                    Err(error) if error.kind == ErrorKind::NotFound => {}
                    Err(error) => return Err(error.into()),
                }
            }
            if left > 0 {
                return Err(StepFailure::StillPresent);
            }
            trail.outcome(Event::StepDone, step, Some(id), Outcome::Ok, Detail::default())?;
            Ok(StepReceipt::new(step, Outcome::Ok))
        }
    }
}

/// The manifest lines of a contact's files (`<sha256>  data/<file>`), sorted.
fn manifest_lines(files: impl IntoIterator<Item = (String, String)>) -> String {
    let mut lines: Vec<String> =
        files.into_iter().map(|(path, sha)| format!("{sha}  {path}\n")).collect();
    lines.sort();
    lines.concat()
}

/// What the audit trail records of an export: the sha256 of its manifest lines, which name
/// each file with its own sha256.
/// The audit detail of a verified export: its digest, bytes and counts.
fn export_detail(export: &ContactExport) -> Detail {
    Detail {
        sha256: audit::Sha256Hex::new(export_digest(export)).ok(),
        bytes: Some(export.files.iter().map(|f| f.size).sum()),
        interactions: Some(export.interactions()),
        attachments: Some(export.attachments()),
        ..Detail::default()
    }
}

fn export_digest(export: &ContactExport) -> String {
    crate::canonical::sha256_hex(
        manifest_lines(export.files.iter().map(|f| (f.path.clone(), f.sha256.clone()))).as_bytes(),
    )
}

/// On resume: one of the contact's exports in the bag (the first, or a re-export beside it)
/// must have manifest lines that hash to what the audit trail recorded, and each of its files
/// on disk must match its line. Streams the files (they can be large).
fn verify_recorded(bag: &Bag, contact: &ContactId, recorded: &str) -> Result<(), StepFailure> {
    use sha2::Digest as _;
    let listed = bag.listed_exports(contact).map_err(StepFailure::Export)?;
    let complete = |files: &export::ListedFiles| {
        files.contains_key(&PayloadKind::Contact) && files.contains_key(&PayloadKind::Interactions)
    };
    if !listed.values().any(complete) {
        return Err(StepFailure::Precondition("export.not-in-manifest"));
    }
    let lines = |files: &export::ListedFiles| {
        manifest_lines(files.values().map(|(path, sha, _)| (path.clone(), sha.clone())))
    };
    let Some(files) = listed.values().find(|files| {
        complete(files) && crate::canonical::sha256_hex(lines(files).as_bytes()) == recorded
    }) else {
        return Err(StepFailure::Precondition("export.manifest-differs-from-audit"));
    };
    for (path, sha, _) in files.values() {
        let mut file = std::fs::File::open(bag.root().join(path))
            .map_err(|_| StepFailure::Precondition("export.file-missing"))?;
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let read = std::io::Read::read(&mut file, &mut buffer)
                .map_err(|_| StepFailure::Precondition("export.file-unreadable"))?;
            if read == 0 {
                break;
            }
            hasher.update(buffer.get(..read).unwrap_or_default());
        }
        if crate::canonical::hex(&hasher.finalize()) != *sha {
            return Err(StepFailure::Precondition("export.file-differs"));
        }
    }
    Ok(())
}

/// How the audit trail and the receipt say that an export step kept the bag's earlier,
/// complete export of a contact whose delete had stopped half way.
const HALF_DELETED: &str = "half-deleted-earlier-export-kept";

/// The order of a contact's exports in the bag: the first (the seed's names), then each
/// re-export by its run.
fn export_order(tag: Option<&Tag>) -> (u64, u64) {
    let Some(tag) = tag else { return (0, 0) };
    let mut parts = tag.as_str().strip_prefix("run-").unwrap_or_default().split('-');
    let run = parts.next().and_then(|p| p.parse::<u64>().ok()).unwrap_or(0);
    let n = parts.next().and_then(|p| p.parse::<u64>().ok()).unwrap_or(1);
    (run.saturating_add(1), n)
}

/// When the bag's latest export of `contact` is verified evidence and the contact's live data
/// is a strict part of it (the same contact, every live interaction in that export, no more
/// attachments per data source than it holds, and fewer interactions or attachments in all):
/// a delete that stopped half way. Returns that export.
async fn half_deleted<U: Ucs>(
    bag: &Bag,
    contact: &ContactPlan,
    id: &ContactId,
    options: &ExportOptions,
    ucs: &U,
) -> Result<Option<ContactExport>, StepFailure> {
    let listed = bag.listed_exports(id).map_err(StepFailure::Export)?;
    let Some((tag, files)) = listed.iter().max_by_key(|(tag, _)| export_order(tag.as_ref())) else {
        return Ok(None);
    };
    if !(files.contains_key(&PayloadKind::Contact)
        && files.contains_key(&PayloadKind::Interactions))
    {
        return Ok(None);
    }
    let Ok(earlier) = export::exported_ids(bag, id, tag.as_ref()) else { return Ok(None) };
    let (mut live_total, mut earlier_total) = (0u64, 0u64);
    let mut wanted: Vec<DataSource> = Vec::new();
    for source in &options.sources {
        if !wanted.contains(source) {
            wanted.push(*source);
        }
    }
    for source in wanted {
        let Some(before) = earlier.get(&source) else { return Ok(None) };
        earlier_total += before.interactions.len() as u64 + before.attachments;
        match list_all_interactions(ucs, id, source, options.page_size).await? {
            InteractionListing::Found(list) => {
                if !before.available
                    || !list.iter().all(|i| before.interactions.contains(i.id.as_str()))
                {
                    return Ok(None);
                }
                let attachments =
                    contact.sources.get(&source).map_or(0, |counts| counts.attachments);
                if attachments > before.attachments {
                    return Ok(None);
                }
                live_total += list.len() as u64 + attachments;
            }
            InteractionListing::SourceUnavailable { .. } if !before.available => {}
            InteractionListing::SourceUnavailable { .. } => return Ok(None),
        }
    }
    if live_total >= earlier_total {
        return Ok(None);
    }
    let sources = earlier
        .iter()
        .map(|(source, ids)| {
            let counts = export::SourceExport {
                available: ids.available,
                interactions: ids.interactions.len() as u64,
                attachments: ids.attachments,
                ..export::SourceExport::default()
            };
            (*source, counts)
        })
        .collect();
    let files = files
        .iter()
        .map(|(kind, (path, sha256, size))| ExportedFile {
            kind: *kind,
            path: path.clone(),
            sha256: sha256.clone(),
            size: *size,
        })
        .collect();
    Ok(Some(ContactExport { contact: id.clone(), files, sources, beside: tag.clone() }))
}

impl ContactExport {
    /// Interactions exported, over every data source.
    pub fn interactions(&self) -> u64 {
        self.sources.values().map(|s| s.interactions).sum()
    }

    /// Attachments exported, over every data source.
    pub fn attachments(&self) -> u64 {
        self.sources.values().map(|s| s.attachments).sum()
    }
}
