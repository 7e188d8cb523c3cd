//! The erasure receipt: per contact, what was planned and what happened, each step's outcome,
//! who did it (run, actor, plan), and the audit log's head hash that proves it. No personal
//! data: ids, counts, outcomes.
//!
//! Each run keeps its own receipt in the bag, `receipt-<run>.json` (the run id is the `seq` of
//! the run's `run.start` record in the audit log), never replaced; `receipt.json` is the
//! cumulative receipt over every run of the request, rebuilt from the per-run receipts in the
//! bag after each run (see [`CumulativeReceipt`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::audit::Outcome;
use crate::export::{Bag, ExportError};
use crate::plan::{ContactPlan, Plan};

/// The receipt of one run of a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// Always `Receipt`.
    pub kind: String,
    /// The request.
    pub request_id: String,
    /// The plan applied.
    pub plan_id: String,
    /// The run: the `seq` of its `run.start` record in the audit log (absent in receipts
    /// written before runs were numbered).
    #[serde(default)]
    pub run: Option<u64>,
    /// Who ran it.
    #[serde(default)]
    pub actor: Option<String>,
    /// The environment.
    pub environment: String,
    /// The runbook.
    pub runbook: String,
    /// When the run ended.
    pub finished_at: String,
    /// Whether the run was stopped before every contact was done (resume by running it again).
    pub interrupted: bool,
    /// Per contact, sorted by contact id: in memory for a receipt read back, on disk (a spool
    /// file, read back one contact at a time) for the receipt a run returns.
    pub contacts: Contacts,
    /// The audit log's last hash after the run.
    pub audit_head: String,
    /// The audit log's record count after the run.
    pub audit_records: u64,
    /// The shard this run ran (`shard-I-of-N`), when the plan ran in shards; its contacts are
    /// that shard's only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

/// What happened to one contact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactReceipt {
    /// The contact id.
    pub contact_id: String,
    /// Whether a hold kept it.
    pub held: bool,
    /// Planned: exported.
    pub planned_export: bool,
    /// Planned: deleted.
    pub planned_delete: bool,
    /// Planned interactions per data source.
    pub planned_interactions: std::collections::BTreeMap<String, u64>,
    /// The steps, in order.
    pub steps: Vec<StepReceipt>,
    /// The step that failed, with its code.
    pub failure: Option<(String, String)>,
    /// Not started (the run was interrupted first).
    pub not_started: bool,
}

/// Who did a step: the run (the `seq` of its `run.start` record in the audit log), its actor
/// and its plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DoneBy {
    /// The run, when known.
    pub run: Option<u64>,
    /// Who ran it.
    pub actor: String,
    /// The plan it ran.
    pub plan_id: String,
}

/// One step's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReceipt {
    /// The step id.
    pub step: String,
    /// The catalogue step.
    pub uses: String,
    /// `ok`, `already-absent`, `skipped`, ...
    pub outcome: String,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A count (interactions exported, or Context Services services deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Attachments exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<u64>,
    /// Bytes exported (the files on disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Done in an earlier run of this plan (resume).
    pub resumed: bool,
    /// Which run did it, who ran it, and with which plan (for a resumed step: the earlier run
    /// the audit log names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_by: Option<DoneBy>,
    /// How an outcome was established when the answer itself was lost
    /// (`absent-after-lost-answer`: the delete's answer was lost and the contact was then
    /// found absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<String>,
}

impl StepReceipt {
    pub(super) fn new(step: &str, outcome: Outcome) -> Self {
        Self {
            step: step.to_owned(),
            uses: String::new(),
            outcome: outcome.as_str().to_owned(),
            reason: None,
            count: None,
            attachments: None,
            bytes: None,
            resumed: false,
            done_by: None,
            confirmed_by: None,
        }
    }

    pub(super) fn skipped(step: &str, reason: &str) -> Self {
        Self { reason: Some(reason.to_owned()), ..Self::new(step, Outcome::Skipped) }
    }

    pub(super) fn resumed(step: &str, outcome: Outcome) -> Self {
        Self { resumed: true, ..Self::new(step, outcome) }
    }

    /// Whether the step did something (or found it done): not skipped.
    pub fn acted(&self) -> bool {
        self.outcome != Outcome::Skipped.as_str()
    }

    pub(super) fn exported(self, export: &crate::export::ContactExport) -> Self {
        Self {
            count: Some(export.interactions()),
            attachments: Some(export.attachments()),
            bytes: Some(export.files.iter().map(|f| f.size).sum()),
            ..self
        }
    }
}

impl ContactReceipt {
    pub(super) fn planned(contact: &ContactPlan) -> Self {
        Self {
            contact_id: contact.contact_id.to_string(),
            held: contact.hold.is_some(),
            planned_export: contact.export,
            planned_delete: contact.delete,
            planned_interactions: contact
                .sources
                .iter()
                .map(|(source, counts)| (source.as_str().to_owned(), counts.interactions))
                .collect(),
            steps: Vec::new(),
            failure: None,
            not_started: false,
        }
    }

    pub(super) fn not_started(contact: &ContactPlan) -> Self {
        Self { not_started: true, ..Self::planned(contact) }
    }

    pub(super) fn fail(&mut self, step: &str, code: &str) {
        self.failure = Some((step.to_owned(), code.to_owned()));
    }

    /// Whether a step failed.
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Whether the contact was deleted (or found already absent) in this or an earlier run.
    pub fn deleted(&self) -> bool {
        self.steps.iter().any(|s| {
            s.uses == crate::runbook::StepKind::DeleteContact.name()
                && (s.outcome == "ok" || s.outcome == "already-absent")
        })
    }

    /// One line for progress output.
    pub fn summary(&self) -> String {
        if self.not_started {
            return "not started (interrupted)".to_owned();
        }
        if self.held {
            return "held, nothing done".to_owned();
        }
        if let Some((step, code)) = &self.failure {
            return format!("FAILED at {step} ({code})");
        }
        let words: Vec<String> = self
            .steps
            .iter()
            .filter(|s| s.outcome != "skipped")
            .map(|s| {
                let resumed = if s.resumed { ", earlier run" } else { "" };
                format!("{} {}{resumed}", s.step, s.outcome)
            })
            .collect();
        if words.is_empty() { "nothing to do".to_owned() } else { words.join(", ") }
    }
}

impl Receipt {
    pub(super) fn new(
        plan: &Plan,
        contacts: Contacts,
        audit_head: String,
        audit_records: u64,
        interrupted: bool,
        run: Option<u64>,
        actor: &str,
    ) -> Self {
        Self {
            kind: "Receipt".into(),
            request_id: plan.body.request.id.clone(),
            plan_id: plan.plan_id.clone(),
            run,
            actor: Some(actor.to_owned()),
            environment: plan.body.environment.name.clone(),
            runbook: plan.body.runbook.name.clone(),
            finished_at: format!("{:.0}", jiff::Timestamp::now()),
            interrupted,
            contacts,
            audit_head,
            audit_records,
            shard: None,
        }
    }

    /// Whether every contact finished without a failure.
    pub fn succeeded(&self) -> bool {
        !self.interrupted && self.contacts.failed() == 0
    }

    /// The name of this run's receipt in the bag: `receipt-<run>.json` (`receipt-<plan>.json`,
    /// the plan id's first 12 digits, for a receipt without a run).
    pub fn file_name(&self) -> String {
        match self.run {
            Some(run) => format!("receipt-{run}.json"),
            None => format!("receipt-{}.json", self.plan_id.get(..12).unwrap_or("unknown")),
        }
    }

    /// Keeps this run's receipt in the bag as [`Receipt::file_name`] (never replacing another
    /// run's: a different file of that name stays, this one goes beside it), then rebuilds the
    /// cumulative `receipt.json` from every run's receipt in the bag. Both are listed in the
    /// bag's tag manifest. A `receipt.json` from before receipts were cumulative is kept as
    /// its run's receipt first.
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn keep(&self, bag: &Bag) -> Result<CumulativeReceipt, ExportError> {
        // Temporary files go beside the bag, not in it: a run killed while writing leaves no
        // stray file in the bag.
        let dir = bag.root().parent().unwrap_or(bag.root());
        let cumulative = bag.root().join(crate::export::RECEIPT);
        if let Some((old, _, _)) = scan_receipt(&cumulative)
            && old.kind == "Receipt"
        {
            bag.keep_file(&old.file_name(), &cumulative)?;
        }
        let this = pretty_file(dir, self)?;
        bag.keep_file(&self.file_name(), &this.path)?;
        drop(this);
        let mut runs = Vec::new();
        for name in bag.kept() {
            if !(name.starts_with("receipt-") && name.ends_with(".json")) {
                continue;
            }
            let path = bag.root().join(&name);
            match scan_receipt(&path) {
                Some((head, sha256, sorted))
                    if head.kind == "Receipt" && head.request_id == self.request_id =>
                {
                    runs.push(KeptFile { name, path, sha256, head, sorted });
                }
                _ => {
                    tracing::warn!(
                        receipt = %name,
                        "a kept receipt could not be read as this request's; left out of receipt.json"
                    );
                }
            }
        }
        let built = CumulativeReceipt::build_from_files(&self.request_id, runs, dir)
            .map_err(|e| ExportError::io("merge the receipts in", bag.root(), e))?;
        let file = pretty_file(dir, &built)?;
        bag.replace_file(crate::export::RECEIPT, &file.path)?;
        Ok(built)
    }

    /// A human summary (one line per contact: see [`Receipt::write_text`] to stream it).
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        let _ = self.write_text(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Writes the human summary to `out`, one contact at a time.
    ///
    /// # Errors
    /// `out` cannot be written, or the spooled contacts cannot be read back.
    pub fn write_text(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        writeln!(out, "Receipt for request {} (plan {})", self.request_id, self.plan_id)?;
        for contact in self.contacts.iter() {
            let contact = contact?;
            writeln!(out, "  contact {}: {}", contact.contact_id, contact.summary())?;
        }
        writeln!(
            out,
            "{} contact(s): {} deleted or already absent, {} failed{}; audit head {} ({} records)",
            self.contacts.len(),
            self.contacts.deleted(),
            self.contacts.failed(),
            if self.interrupted { ", INTERRUPTED: run apply again to resume" } else { "" },
            self.audit_head,
            self.audit_records
        )
    }
}

/// `receipt.json`: every run of the request, and per contact what every run did, merged.
///
/// Built from the per-run receipts kept in the bag, not from the audit log: the bag is the
/// evidence that is handed over and archived, and must stand alone (the audit log is the
/// operator's, shared by every request). Each per-run receipt names the audit head after its
/// run, so each is tied to the log; and a run killed before it wrote its receipt is not lost,
/// because the next run's resumed steps carry the counts and the run the audit log names.
///
/// Merging, run by run in the order they finished: a contact a run did not start keeps what
/// earlier runs did; a step a run resumed, or skipped where an earlier run acted, keeps the
/// earlier run's entry (with its counts and `doneBy`); otherwise the later run's entry
/// replaces it. A contact's `failure` is its latest run's. `plannedInteractions` are those of
/// the first run that planned the contact (before anything of it was deleted).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CumulativeReceipt {
    /// Always `CumulativeReceipt`.
    pub kind: String,
    /// The request.
    pub request_id: String,
    /// Every run, in the order they finished.
    pub runs: Vec<RunSummary>,
    /// Whether the latest run was interrupted.
    pub interrupted: bool,
    /// Per contact, over every run, sorted by contact id.
    pub contacts: Contacts,
    /// The audit log's last hash after the latest run.
    pub audit_head: String,
    /// The audit log's record count after the latest run.
    pub audit_records: u64,
}

/// One run in the cumulative receipt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The run (the `seq` of its `run.start` record), when known.
    pub run: Option<u64>,
    /// Its receipt in the bag.
    pub receipt: String,
    /// The sha256 of that file.
    pub sha256: String,
    /// The plan it ran.
    pub plan_id: String,
    /// Who ran it.
    pub actor: Option<String>,
    /// When it ended.
    pub finished_at: String,
    /// Whether it was interrupted.
    pub interrupted: bool,
    /// The audit log's last hash after it.
    pub audit_head: String,
}

impl CumulativeReceipt {
    /// Merges per-run receipts (file name, its sha256, the receipt) into one.
    pub fn build(request_id: &str, mut runs: Vec<(String, String, Receipt)>) -> Self {
        runs.sort_by_cached_key(|(name, _, receipt)| ReceiptHead::of(receipt).order(name));
        let mut contacts: BTreeMap<String, ContactReceipt> = BTreeMap::new();
        for (_, _, receipt) in &runs {
            let by = ReceiptHead::of(receipt).done_by();
            for contact in receipt.contacts.iter() {
                let Ok(mut contact) = contact else { continue };
                contact.credit(&by);
                match contacts.get_mut(&contact.contact_id) {
                    None => {
                        contacts.insert(contact.contact_id.clone(), contact);
                    }
                    Some(merged) => merged.merge(contact),
                }
            }
        }
        let heads: Vec<(String, String, ReceiptHead)> = runs
            .iter()
            .map(|(name, sha256, receipt)| (name.clone(), sha256.clone(), ReceiptHead::of(receipt)))
            .collect();
        Self::assemble(request_id, &heads, Contacts::from_vec(contacts.into_values().collect()))
    }

    /// The cumulative receipt of `runs` (file name, sha256, head; in order) and their merged
    /// `contacts`: the last run's state, and a summary of each.
    fn assemble(
        request_id: &str,
        runs: &[(String, String, ReceiptHead)],
        contacts: Contacts,
    ) -> Self {
        let last = runs.last().map(|(_, _, head)| head);
        Self {
            kind: "CumulativeReceipt".into(),
            request_id: request_id.to_owned(),
            interrupted: last.is_some_and(|r| r.interrupted),
            audit_head: last.map(|r| r.audit_head.clone()).unwrap_or_default(),
            audit_records: last.map_or(0, |r| r.audit_records),
            runs: runs
                .iter()
                .map(|(name, sha256, r)| RunSummary {
                    run: r.run,
                    receipt: name.clone(),
                    sha256: sha256.clone(),
                    plan_id: r.plan_id.clone(),
                    actor: r.actor.clone(),
                    finished_at: r.finished_at.clone(),
                    interrupted: r.interrupted,
                    audit_head: r.audit_head.clone(),
                })
                .collect(),
            contacts,
        }
    }
}

impl ContactReceipt {
    /// Names `by` as the doer of each step this run's receipt says it acted on and names no
    /// one for (a run receipt leaves its own steps' `doneBy` out).
    fn credit(&mut self, by: &DoneBy) {
        for step in &mut self.steps {
            if step.acted() && step.done_by.is_none() {
                step.done_by = Some(by.clone());
            }
        }
    }

    /// Folds a later run's receipt of the same contact into this one (see
    /// [`CumulativeReceipt`]).
    fn merge(&mut self, later: ContactReceipt) {
        if later.not_started {
            return;
        }
        if self.not_started {
            self.planned_interactions = later.planned_interactions.clone();
        }
        self.not_started = false;
        self.held = later.held;
        self.planned_export |= later.planned_export;
        self.planned_delete |= later.planned_delete;
        self.failure = later.failure;
        for step in later.steps {
            match self.steps.iter_mut().find(|s| s.step == step.step) {
                None => self.steps.push(step),
                Some(earlier) => {
                    let keep_earlier = step.resumed || (!step.acted() && earlier.acted());
                    if !keep_earlier {
                        *earlier = step;
                    }
                }
            }
        }
    }
}

/// The receipt of a plan run in shards: every shard's part merged into one, written by
/// `ucs-gdpr receipt merge` once every shard has run (see [`merge_shards`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardedReceipt {
    /// Always `ShardedReceipt`.
    pub kind: String,
    /// The request.
    pub request_id: String,
    /// The plan the shards ran.
    pub plan_id: String,
    /// How many shards.
    pub shards: u32,
    /// Each shard's part, by index.
    pub parts: Vec<ShardPart>,
    /// Per contact of the plan, over every shard (each in exactly one), sorted by contact id.
    pub contacts: Contacts,
    /// When the parts were merged.
    pub merged_at: String,
}

/// One shard's part of a [`ShardedReceipt`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardPart {
    /// `shard-I-of-N`.
    pub shard: String,
    /// The shard's export bag, as given.
    pub bag: String,
    /// The shard's runs of the plan, each with its receipt's file and sha256 and the audit
    /// segment's head after it.
    pub runs: Vec<RunSummary>,
    /// The shard's contacts.
    pub contacts: u64,
}

/// Why the shards' parts cannot be merged into one receipt. Names shards, folders and contact
/// ids, never personal data.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// No part was given or found.
    #[error("no shard's export bag was found; run every shard first")]
    NoParts,
    /// A part cannot be read, or is not a valid bag.
    #[error("the bag part `{}` {why}", path.display())]
    Part {
        /// The folder.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Parts of runs split different ways.
    #[error("the parts are shards of runs split {0} ways; a run has one shard count")]
    Counts(String),
    /// A shard has no part.
    #[error("shard(s) {} missing: each of 0..{count} must have run", shards.join(", "))]
    Missing {
        /// The missing shards (`I/N`).
        shards: Vec<String>,
        /// N.
        count: u32,
    },
    /// A shard has more than one part.
    #[error("shard {shard} is given more than once: {}", bags.join(", "))]
    Duplicated {
        /// The shard (`I/N`).
        shard: String,
        /// Its parts.
        bags: Vec<String>,
    },
    /// A shard's part does not cover its contacts: some were never run, or not started.
    #[error(
        "shard {shard} is incomplete: {} of its {expected} contact(s) have no finished run{}; \
         run the shard again to complete it",
        contacts.len(), listed(contacts)
    )]
    Incomplete {
        /// The shard (`I/N`).
        shard: String,
        /// Its contacts in the plan.
        expected: usize,
        /// The contacts without a receipt, or not started.
        contacts: Vec<String>,
    },
    /// The merge's temporary files cannot be written or read back.
    #[error("cannot write the merge's temporary files in `{}`: {why}", dir.display())]
    Spool {
        /// The folder.
        dir: std::path::PathBuf,
        /// What went wrong.
        why: String,
    },
    /// A part holds contacts that are not its shard's in the plan.
    #[error("shard {shard}'s part holds {} contact(s) that are not its own in the plan{}", contacts.len(), listed(contacts))]
    Foreign {
        /// The shard (`I/N`).
        shard: String,
        /// The contacts.
        contacts: Vec<String>,
    },
}

fn listed(ids: &[String]) -> String {
    const SHOWN: usize = 20;
    if ids.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = ids.iter().take(SHOWN).map(String::as_str).collect();
    let more =
        if ids.len() > SHOWN { format!(" and {} more", ids.len() - SHOWN) } else { String::new() };
    format!(": {}{more}", shown.join(", "))
}

/// The run receipts of `plan_id`'s shard runs kept in the bag at `bag` (read only; the bag is
/// validated first), each read through once, one contact at a time: the shard they name, and
/// each receipt's file name, path, sha256 and head.
fn shard_runs(
    plan_id: &str,
    bag: &std::path::Path,
) -> Result<(crate::shard::Shard, Vec<KeptFile>), MergeError> {
    let part = |why: String| MergeError::Part { path: bag.to_owned(), why };
    crate::export::validate_dir(bag).map_err(|e| part(format!("does not validate: {e}")))?;
    let entries = std::fs::read_dir(bag).map_err(|e| part(format!("cannot be read: {e}")))?;
    let mut runs = Vec::new();
    let mut shards = std::collections::BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| part(format!("cannot be read: {e}")))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("receipt-") && name.ends_with(".json")) {
            continue;
        }
        let path = entry.path();
        let scanned = scan_receipt_file(&path).map_err(|e| part(format!("cannot be read: {e}")))?;
        let Some((head, sha256, sorted)) = scanned else { continue };
        if head.kind != "Receipt" || head.plan_id != plan_id {
            continue;
        }
        let Some(label) = &head.shard else {
            return Err(part(format!("holds {name}, a run of the plan that was not a shard's")));
        };
        let shard = crate::shard::Shard::from_label(label)
            .ok_or_else(|| part(format!("holds {name}, whose shard is not I/N")))?;
        shards.insert(shard);
        runs.push(KeptFile { name, path, sha256, head, sorted });
    }
    let mut shards = shards.into_iter();
    match (shards.next(), shards.next()) {
        (Some(shard), None) => Ok((shard, runs)),
        (None, _) => Err(part("holds no receipt of a shard's run of this plan".to_owned())),
        (Some(_), Some(_)) => Err(part("holds the receipts of several shards".to_owned())),
    }
}

/// Merges the shards' parts of a run of `plan` into one receipt: `ids` are the plan's contact
/// ids (`plan` itself may be its head without its contacts, as [`crate::plan::PlanFile::head`]
/// gives it: a plan of many contacts need not be read whole), `bags` the shards' export bags.
/// Refuses unless every shard `0..N-1` has exactly one part, each part's bag validates, and
/// each shard's contacts in the plan all have a finished (started) run in its part and no
/// other contact is there.
///
/// Streamed: each part's run receipts are read one contact at a time and merged by contact id
/// (as [`CumulativeReceipt`] merges a bag's runs; in memory only for a receipt file whose
/// contacts are not in id order), each part's merged contacts spooled in `spool_dir`, then
/// the parts' spools merged by contact id into the receipt's own spool there (hidden
/// temporary files, removed when the receipt is dropped). What stays in memory is the plan's
/// contact ids and the runs' heads.
///
/// # Errors
/// The first thing that keeps the parts from making one complete receipt, or a spool that
/// cannot be written.
pub fn merge_shards(
    plan: &Plan,
    ids: &[&str],
    bags: &[std::path::PathBuf],
    spool_dir: &std::path::Path,
) -> Result<ShardedReceipt, MergeError> {
    merge_parts(&plan.body.request.id, &plan.plan_id, ids, bags, spool_dir)
}

/// [`merge_shards`] of the plan `plan_id` of request `request_id`, whose contacts are `ids`.
fn merge_parts(
    request_id: &str,
    plan_id: &str,
    ids: &[&str],
    bags: &[std::path::PathBuf],
    spool_dir: &std::path::Path,
) -> Result<ShardedReceipt, MergeError> {
    if bags.is_empty() {
        return Err(MergeError::NoParts);
    }
    let mut parts = Vec::new();
    for bag in bags {
        let (shard, runs) = shard_runs(plan_id, bag)?;
        parts.push((shard, bag, runs));
    }
    let counts: std::collections::BTreeSet<u32> = parts.iter().map(|p| p.0.count()).collect();
    let count = match (counts.first(), counts.len()) {
        (Some(count), 1) => *count,
        _ => {
            let counts: Vec<String> = counts.iter().map(u32::to_string).collect();
            return Err(MergeError::Counts(counts.join(", ")));
        }
    };
    let mut by_index: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (position, part) in parts.iter().enumerate() {
        by_index.entry(part.0.index()).or_default().push(position);
    }
    for (index, positions) in &by_index {
        if positions.len() > 1 {
            return Err(MergeError::Duplicated {
                shard: format!("{index}/{count}"),
                bags: positions
                    .iter()
                    .filter_map(|p| parts.get(*p))
                    .map(|p| p.1.display().to_string())
                    .collect(),
            });
        }
    }
    let missing: Vec<String> =
        (0..count).filter(|i| !by_index.contains_key(i)).map(|i| format!("{i}/{count}")).collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing { shards: missing, count });
    }
    parts.sort_by_key(|p| p.0.index());
    let spool_error =
        |e: std::io::Error| MergeError::Spool { dir: spool_dir.to_owned(), why: e.to_string() };
    // The receipt's own spool first: a folder that cannot be written is said so, not blamed
    // on a part.
    let mut spool = Spool::new_in(spool_dir).map_err(spool_error)?;
    let mut merged_parts = Vec::new();
    let mut out_parts = Vec::new();
    for (shard, bag, runs) in parts {
        let unreadable = |e: std::io::Error| unreadable_part(bag, &e);
        let merged =
            CumulativeReceipt::build_from_files(request_id, runs, spool_dir).map_err(unreadable)?;
        let expected: std::collections::BTreeSet<&str> =
            ids.iter().copied().filter(|id| shard.contains_id(id)).collect();
        let mut remaining = expected.clone();
        let mut foreign = Vec::new();
        let mut unfinished = Vec::new();
        for contact in merged.contacts.iter() {
            let contact = contact.map_err(unreadable)?;
            if !remaining.remove(contact.contact_id.as_str()) {
                foreign.push(contact.contact_id);
            } else if contact.not_started {
                unfinished.push(contact.contact_id);
            }
        }
        if !foreign.is_empty() {
            foreign.sort();
            foreign.dedup();
            return Err(MergeError::Foreign { shard: shard.to_string(), contacts: foreign });
        }
        unfinished.extend(remaining.into_iter().map(str::to_owned));
        if !unfinished.is_empty() {
            unfinished.sort();
            return Err(MergeError::Incomplete {
                shard: shard.to_string(),
                expected: expected.len(),
                contacts: unfinished,
            });
        }
        out_parts.push(ShardPart {
            shard: shard.label(),
            bag: bag.display().to_string(),
            runs: merged.runs,
            contacts: expected.len() as u64,
        });
        merged_parts.push((bag, merged.contacts));
    }
    // Every part's contacts in contact id order; a contact id in two parts (which the checks
    // above rule out) would come out twice, the lower shard's first.
    let mut streams: Vec<_> =
        merged_parts.iter().map(|(bag, contacts)| (*bag, contacts.iter())).collect();
    let mut heap = std::collections::BinaryHeap::new();
    let mut heads: Vec<Option<ContactReceipt>> = Vec::with_capacity(streams.len());
    for (index, (bag, stream)) in streams.iter_mut().enumerate() {
        let head = stream.next().transpose().map_err(|e| unreadable_part(bag, &e))?;
        if let Some(head) = &head {
            heap.push(std::cmp::Reverse((head.contact_id.clone(), index)));
        }
        heads.push(head);
    }
    let mut n = 0;
    while let Some(std::cmp::Reverse((_, index))) = heap.pop() {
        let (Some(slot), Some((bag, stream))) = (heads.get_mut(index), streams.get_mut(index))
        else {
            continue;
        };
        let Some(contact) = slot.take() else { continue };
        let next = stream.next().transpose().map_err(|e| unreadable_part(bag, &e))?;
        if let Some(next) = &next {
            heap.push(std::cmp::Reverse((next.contact_id.clone(), index)));
        }
        *slot = next;
        spool.push(n, contact).map_err(spool_error)?;
        n += 1;
    }
    drop(streams);
    let contacts = spool.finish().map_err(spool_error)?;
    drop(merged_parts);
    Ok(ShardedReceipt {
        kind: "ShardedReceipt".into(),
        request_id: request_id.to_owned(),
        plan_id: plan_id.to_owned(),
        shards: count,
        parts: out_parts,
        contacts,
        merged_at: format!("{:.0}", jiff::Timestamp::now()),
    })
}

fn unreadable_part(bag: &std::path::Path, e: &std::io::Error) -> MergeError {
    MergeError::Part {
        path: bag.to_owned(),
        why: format!("has receipts that cannot be read back: {e}"),
    }
}

impl ShardedReceipt {
    /// Whether every contact finished without a failure.
    pub fn succeeded(&self) -> bool {
        self.contacts.failed() == 0 && self.contacts.not_started() == 0
    }

    /// Writes the receipt as the file `receipt merge` writes (pretty JSON and a newline), one
    /// contact at a time.
    ///
    /// # Errors
    /// `out` cannot be written, or the spooled contacts cannot be read back.
    pub fn write_json(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self).map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    }

    /// A human summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Receipt for request {} (plan {}), {} shard(s)",
            self.request_id, self.plan_id, self.shards
        );
        for part in &self.parts {
            let _ = writeln!(
                out,
                "  {}: {} contact(s), {} run(s), bag {}",
                part.shard,
                part.contacts,
                part.runs.len(),
                part.bag
            );
        }
        let _ = writeln!(
            out,
            "{} contact(s), each in exactly one shard: {} deleted or already absent, {} failed",
            self.contacts.len(),
            self.contacts.deleted(),
            self.contacts.failed()
        );
        out
    }
}

/// A receipt's contacts, sorted by contact id, with the counts the summaries need: in memory
/// (a receipt read back from a file), or spooled to a file one JSON line per contact (the
/// receipt a run returns: a run of many contacts never holds them all). Serialises as the JSON
/// array of contacts either way, read back one contact at a time.
#[derive(Debug, Clone, Default)]
pub struct Contacts {
    kept: Kept,
    tally: Tally,
}

#[derive(Debug, Clone)]
enum Kept {
    Memory(Vec<ContactReceipt>),
    Spool(std::sync::Arc<TempFile>),
}

impl Default for Kept {
    fn default() -> Self {
        Self::Memory(Vec::new())
    }
}

/// What the summaries count.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    total: usize,
    deleted: usize,
    failed: usize,
    not_started: usize,
}

impl Tally {
    fn add(&mut self, contact: &ContactReceipt) {
        self.total += 1;
        self.deleted += usize::from(contact.deleted());
        self.failed += usize::from(contact.failed());
        self.not_started += usize::from(contact.not_started);
    }
}

impl Contacts {
    /// Contacts held in memory (sorted here by contact id).
    pub fn from_vec(mut contacts: Vec<ContactReceipt>) -> Self {
        contacts.sort_by(|a, b| a.contact_id.cmp(&b.contact_id));
        let mut tally = Tally::default();
        contacts.iter().for_each(|c| tally.add(c));
        Self { kept: Kept::Memory(contacts), tally }
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.tally.total
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tally.total == 0
    }

    /// How many were deleted (or found already absent).
    pub fn deleted(&self) -> usize {
        self.tally.deleted
    }

    /// How many failed.
    pub fn failed(&self) -> usize {
        self.tally.failed
    }

    /// How many were not started.
    pub fn not_started(&self) -> usize {
        self.tally.not_started
    }

    /// Each contact in contact id order, read back one at a time from the spool (an error when
    /// the spool cannot be read).
    pub fn iter(&self) -> Box<dyn Iterator<Item = std::io::Result<ContactReceipt>> + '_> {
        match &self.kept {
            Kept::Memory(contacts) => Box::new(contacts.iter().cloned().map(Ok)),
            Kept::Spool(file) => match std::fs::File::open(&file.path) {
                Ok(file) => Box::new(SpoolReader { lines: std::io::BufReader::new(file) }),
                Err(error) => Box::new(std::iter::once(Err(error))),
            },
        }
    }

    /// Every contact in memory at once (for small receipts and tests).
    ///
    /// # Errors
    /// The spool cannot be read.
    pub fn to_vec(&self) -> std::io::Result<Vec<ContactReceipt>> {
        self.iter().collect()
    }
}

struct SpoolReader {
    lines: std::io::BufReader<std::fs::File>,
}

impl Iterator for SpoolReader {
    type Item = std::io::Result<ContactReceipt>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = String::new();
        match std::io::BufRead::read_line(&mut self.lines, &mut line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_str(&line).map_err(std::io::Error::other)),
            Err(error) => Some(Err(error)),
        }
    }
}

impl Serialize for Contacts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq as _};
        // No length: the count is known, but a spool read back must not be trusted to match it.
        let mut seq = serializer.serialize_seq(None)?;
        for contact in self.iter() {
            seq.serialize_element(&contact.map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Contacts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<ContactReceipt>::deserialize(deserializer).map(Self::from_vec)
    }
}

/// Writes a run's contacts to a spool file as they finish. They finish in any order (several
/// at once); each comes with its index in the plan (the plan is in contact id order) and waits
/// in a small reorder buffer until every contact before it is written, so the spool is in
/// contact id order without holding every contact.
pub(super) struct Spool {
    out: std::io::BufWriter<std::fs::File>,
    file: TempFile,
    dir: std::path::PathBuf,
    waiting: BTreeMap<usize, ContactReceipt>,
    /// At most this many wait in memory; the rest (behind a contact that takes long) wait in
    /// the overflow file, only their place kept in memory.
    waiting_max: usize,
    overflow: Option<Overflow>,
    next: usize,
    last: Option<String>,
    sorted: bool,
    tally: Tally,
}

impl Spool {
    /// A spool in `dir` (a hidden temporary file, removed when the receipt is dropped).
    pub(super) fn new_in(dir: &std::path::Path) -> std::io::Result<Self> {
        let (file, out) = TempFile::create_in(dir, ".receipt-spool-")?;
        Ok(Self {
            out: std::io::BufWriter::new(out),
            file,
            dir: dir.to_owned(),
            waiting: BTreeMap::new(),
            waiting_max: SPOOL_WAITING_MAX,
            overflow: None,
            next: 0,
            last: None,
            sorted: true,
            tally: Tally::default(),
        })
    }

    /// The contact at `index` in the plan finished.
    pub(super) fn push(&mut self, index: usize, contact: ContactReceipt) -> std::io::Result<()> {
        if index != self.next && self.waiting.len() >= self.waiting_max {
            let overflow = match &mut self.overflow {
                Some(overflow) => overflow,
                None => self.overflow.insert(Overflow::new_in(&self.dir)?),
            };
            overflow.put(index, &contact)?;
        } else {
            self.waiting.insert(index, contact);
        }
        loop {
            let contact = match self.waiting.remove(&self.next) {
                Some(contact) => contact,
                None => match self.overflow.as_mut().map(|o| o.take(self.next)).transpose()? {
                    Some(Some(contact)) => contact,
                    _ => break,
                },
            };
            self.write(&contact)?;
            self.next += 1;
        }
        Ok(())
    }

    fn write(&mut self, contact: &ContactReceipt) -> std::io::Result<()> {
        use std::io::Write as _;
        if self.last.as_deref().is_some_and(|last| last >= contact.contact_id.as_str()) {
            self.sorted = false;
        }
        self.last = Some(contact.contact_id.clone());
        self.tally.add(contact);
        serde_json::to_writer(&mut self.out, contact).map_err(std::io::Error::other)?;
        self.out.write_all(b"\n")
    }

    /// Every contact handed in, in contact id order (any still waiting, after a gap in the
    /// indexes, are written last; a spool found out of order is sorted, in memory).
    pub(super) fn finish(mut self) -> std::io::Result<Contacts> {
        let mut waiting = std::mem::take(&mut self.waiting);
        if let Some(mut overflow) = self.overflow.take() {
            let indexes: Vec<usize> = overflow.places.keys().copied().collect();
            for index in indexes {
                if let Some(contact) = overflow.take(index)? {
                    waiting.insert(index, contact);
                }
            }
        }
        for contact in waiting.into_values() {
            self.write(&contact)?;
        }
        let out = self.out.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        drop(out);
        let contacts =
            Contacts { kept: Kept::Spool(std::sync::Arc::new(self.file)), tally: self.tally };
        if self.sorted {
            return Ok(contacts);
        }
        Ok(Contacts::from_vec(contacts.to_vec()?))
    }
}

/// How many finished contacts wait in memory for one before them (see [`Spool`]).
const SPOOL_WAITING_MAX: usize = 1024;

/// Contacts waiting for one before them, in a file: each one's place (offset, length) by its
/// index in the plan.
struct Overflow {
    file: std::fs::File,
    _name: TempFile,
    end: u64,
    places: BTreeMap<usize, (u64, usize)>,
}

impl Overflow {
    fn new_in(dir: &std::path::Path) -> std::io::Result<Self> {
        let (name, file) = TempFile::create_in(dir, ".receipt-spool-")?;
        Ok(Self { file, _name: name, end: 0, places: BTreeMap::new() })
    }

    fn put(&mut self, index: usize, contact: &ContactReceipt) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let bytes = serde_json::to_vec(contact).map_err(std::io::Error::other)?;
        self.file.write_all_at(&bytes, self.end)?;
        self.places.insert(index, (self.end, bytes.len()));
        self.end += bytes.len() as u64;
        Ok(())
    }

    fn take(&mut self, index: usize) -> std::io::Result<Option<ContactReceipt>> {
        use std::os::unix::fs::FileExt as _;
        let Some((offset, len)) = self.places.remove(&index) else { return Ok(None) };
        let mut bytes = vec![0; len];
        self.file.read_exact_at(&mut bytes, offset)?;
        serde_json::from_slice(&bytes).map(Some).map_err(std::io::Error::other)
    }
}

/// A file of this process's own, removed when dropped. It holds an exclusive lock (`flock`) on
/// the file as long as it lives, so that a later run can tell a file left by a killed process
/// (nobody holds its lock: the kernel released it with the process) from one in use (see
/// [`remove_stale_temporaries`]).
#[derive(Debug)]
pub(super) struct TempFile {
    path: std::path::PathBuf,
    _lock: std::fs::File,
}

/// The prefixes of the temporary files a receipt is written through (a [`TempFile`] each:
/// `<prefix><pid>-<n>`).
const TEMP_PREFIXES: [&str; 2] = [".receipt-spool-", ".receipt-"];

impl TempFile {
    /// A new file in `dir` named `<prefix><pid>-<n>` (created, never an existing one; 0600),
    /// locked before it is returned.
    fn create_in(dir: &std::path::Path, prefix: &str) -> std::io::Result<(Self, std::fs::File)> {
        use std::os::unix::fs::MetadataExt as _;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!("{prefix}{}-{n}", std::process::id()));
            let mut options = std::fs::OpenOptions::new();
            // Private, as the receipts in the bag are.
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, crate::durable::PRIVATE_FILE);
            let file = match options.read(true).write(true).create_new(true).open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            // Another run cleaning the folder may have found it in the instant before it was
            // locked, taken its lock and removed it: then it is not ours any more; another name.
            let lock = file.try_clone()?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => continue,
                // A filesystem without locks: the file is used unlocked (and a later run, which
                // cannot lock it either, never removes it).
                Err(std::fs::TryLockError::Error(_)) => {}
            }
            let ours = file.metadata()?;
            match std::fs::symlink_metadata(&path) {
                Ok(named) if named.dev() == ours.dev() && named.ino() == ours.ino() => {
                    return Ok((Self { path, _lock: lock }, file));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether `name` is a [`TempFile`]'s: one of [`TEMP_PREFIXES`], then `<pid>-<n>`.
fn is_temp_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    TEMP_PREFIXES.iter().any(|prefix| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.split_once('-'))
            .is_some_and(|(pid, n)| digits(pid) && digits(n))
    })
}

/// Removes the receipt temporary files in `dir` that a killed run left (`.receipt-spool-<pid>-<n>`
/// beside the audit log, `.receipt-<pid>-<n>` beside the bag): each one whose lock this call can
/// take, which proves that no process holds it (a live one's [`TempFile`] holds it until it is
/// removed; the kernel releases a killed one's). A file in use by another run, of this request
/// or another, is left alone. Returns how many were removed, and says so in a log line (the
/// folder and the count: no personal data).
pub(crate) fn remove_stale_temporaries(dir: &std::path::Path) -> usize {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_temp_name(name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = std::fs::File::open(&path) else { continue };
        if file.try_lock().is_err() {
            continue;
        }
        // Still the file just locked (not one a new run made under the same name since).
        let same = match (file.metadata(), std::fs::symlink_metadata(&path)) {
            (Ok(locked), Ok(named)) => locked.dev() == named.dev() && locked.ino() == named.ino(),
            _ => false,
        };
        if same && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::warn!(
            dir = %dir.display(),
            removed,
            "removed receipt temporary file(s) left by a run that was killed (no process held them)"
        );
    }
    removed
}

/// A kept run receipt's fields other than its contacts (read without them).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceiptHead {
    kind: String,
    request_id: String,
    plan_id: String,
    #[serde(default)]
    run: Option<u64>,
    #[serde(default)]
    actor: Option<String>,
    // Required as in [`Receipt`], so that a file is read the same way.
    #[serde(rename = "environment")]
    _environment: String,
    #[serde(rename = "runbook")]
    _runbook: String,
    finished_at: String,
    interrupted: bool,
    audit_head: String,
    audit_records: u64,
    #[serde(default)]
    shard: Option<String>,
}

impl ReceiptHead {
    /// The head of a receipt in memory.
    fn of(receipt: &Receipt) -> Self {
        ReceiptHead {
            kind: receipt.kind.clone(),
            request_id: receipt.request_id.clone(),
            plan_id: receipt.plan_id.clone(),
            run: receipt.run,
            actor: receipt.actor.clone(),
            _environment: receipt.environment.clone(),
            _runbook: receipt.runbook.clone(),
            finished_at: receipt.finished_at.clone(),
            interrupted: receipt.interrupted,
            audit_head: receipt.audit_head.clone(),
            audit_records: receipt.audit_records,
            shard: receipt.shard.clone(),
        }
    }

    /// Who did the steps of this run.
    fn done_by(&self) -> DoneBy {
        DoneBy {
            run: self.run,
            actor: self.actor.clone().unwrap_or_default(),
            plan_id: self.plan_id.clone(),
        }
    }

    /// Where the run kept as `name` goes among the runs of a cumulative receipt: by when it
    /// ended, then its audit record count, run and file name.
    fn order(&self, name: &str) -> (String, u64, Option<u64>, String) {
        (self.finished_at.clone(), self.audit_records, self.run, name.to_owned())
    }

    fn file_name(&self) -> String {
        match self.run {
            Some(run) => format!("receipt-{run}.json"),
            None => format!("receipt-{}.json", self.plan_id.get(..12).unwrap_or("unknown")),
        }
    }
}

/// Reads a receipt object from `deserializer`: every field but `contacts` into the head, each
/// element of `contacts` handed to `each` as it is read (never the array whole). `each`
/// returns `false` to stop reading (an error).
struct ReceiptVisit<F> {
    each: F,
}

impl<'de, F: FnMut(ContactReceipt) -> bool> serde::de::DeserializeSeed<'de> for ReceiptVisit<F> {
    type Value = ReceiptHead;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, F: FnMut(ContactReceipt) -> bool> serde::de::Visitor<'de> for ReceiptVisit<F> {
    type Value = ReceiptHead;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a receipt")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        mut self,
        mut map: A,
    ) -> Result<Self::Value, A::Error> {
        use serde::de::Error as _;
        let mut others = serde_json::Map::new();
        let mut contacts = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "contacts" {
                if contacts {
                    return Err(A::Error::duplicate_field("contacts"));
                }
                map.next_value_seed(ContactsVisit { each: &mut self.each })?;
                contacts = true;
            } else {
                let value: serde_json::Value = map.next_value()?;
                if others.insert(key.clone(), value).is_some() {
                    return Err(A::Error::custom(format!("duplicate field `{key}`")));
                }
            }
        }
        if !contacts {
            return Err(A::Error::missing_field("contacts"));
        }
        serde_json::from_value(serde_json::Value::Object(others)).map_err(A::Error::custom)
    }
}

struct ContactsVisit<'a, F> {
    each: &'a mut F,
}

impl<'de, F: FnMut(ContactReceipt) -> bool> serde::de::DeserializeSeed<'de>
    for ContactsVisit<'_, F>
{
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(ContactReceipt) -> bool> serde::de::Visitor<'de> for ContactsVisit<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of contacts")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error as _;
        while let Some(contact) = seq.next_element::<ContactReceipt>()? {
            if !(self.each)(contact) {
                return Err(A::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

/// Reads the receipt in `reader` (JSON, nothing after it but whitespace), handing each contact
/// to `each` as it comes.
fn visit_receipt(
    reader: impl std::io::Read,
    each: impl FnMut(ContactReceipt) -> bool,
) -> Result<ReceiptHead, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let head = serde::de::DeserializeSeed::deserialize(ReceiptVisit { each }, &mut de)?;
    de.end()?;
    Ok(head)
}

/// A reader that hashes what it reads.
struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let read = self.inner.read(buf)?;
        self.hasher.update(buf.get(..read).unwrap_or_default());
        Ok(read)
    }
}

/// Reads the receipt file at `path` through once, one contact at a time: its head, its
/// sha256, and whether its contacts are in contact id order. `None`: not a receipt (or not
/// readable), as `serde_json::from_slice::<Receipt>` would refuse it.
fn scan_receipt(path: &std::path::Path) -> Option<(ReceiptHead, String, bool)> {
    scan_receipt_file(path).ok().flatten()
}

/// [`scan_receipt`], telling a file that cannot be read (an error) from one that is not a
/// receipt (`None`).
fn scan_receipt_file(
    path: &std::path::Path,
) -> std::io::Result<Option<(ReceiptHead, String, bool)>> {
    use sha2::Digest as _;
    let file = std::fs::File::open(path)?;
    let mut reader = Hashing { inner: std::io::BufReader::new(file), hasher: sha2::Sha256::new() };
    let mut last: Option<String> = None;
    let mut sorted = true;
    let head = visit_receipt(&mut reader, |contact| {
        if last.as_deref().is_some_and(|l| l > contact.contact_id.as_str()) {
            sorted = false;
        }
        last = Some(contact.contact_id);
        true
    });
    match head {
        Ok(head) => Ok(Some((head, crate::canonical::hex(&reader.hasher.finalize()), sorted))),
        Err(error) if error.is_io() => Err(error.into()),
        Err(_) => Ok(None),
    }
}

/// The contacts of the receipt file at `path`, one at a time, read by a thread of their own
/// and handed over through a small bounded channel (a pull iterator over a push parser).
fn stream_contacts(
    path: &std::path::Path,
) -> impl Iterator<Item = std::io::Result<ContactReceipt>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<ContactReceipt>>(64);
    let path = path.to_owned();
    std::thread::spawn(move || {
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) => {
                let _ = tx.send(Err(error));
                return;
            }
        };
        let sent = tx.clone();
        let read = visit_receipt(std::io::BufReader::new(file), |c| sent.send(Ok(c)).is_ok());
        if let Err(error) = read {
            // The receiver may be gone (it stopped reading): nothing to tell then.
            let _ = tx.send(Err(std::io::Error::other(error)));
        }
    });
    rx.into_iter()
}

/// The k-way merge of runs' contacts, each run's in contact id order, the runs in the order
/// they finished: per contact id, the contact of the first run that has it with each acting
/// step's `doneBy` filled in with that run, then each later run's folded in (the semantics of
/// [`CumulativeReceipt::build`]). Each merged contact goes to `out` in contact id order. A run
/// out of id order is an error (`InvalidData`).
fn merge_runs<I: Iterator<Item = std::io::Result<ContactReceipt>>>(
    runs: Vec<(DoneBy, I)>,
    mut out: impl FnMut(ContactReceipt) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let (bys, mut streams): (Vec<DoneBy>, Vec<I>) = runs.into_iter().unzip();
    let mut heads: Vec<Option<ContactReceipt>> = Vec::with_capacity(streams.len());
    let mut heap = BinaryHeap::new();
    for (index, stream) in streams.iter_mut().enumerate() {
        let head = stream.next().transpose()?;
        if let Some(head) = &head {
            heap.push(Reverse((head.contact_id.clone(), index)));
        }
        heads.push(head);
    }
    let mut merged: Option<ContactReceipt> = None;
    while let Some(Reverse((id, index))) = heap.pop() {
        let (Some(slot), Some(stream), Some(by)) =
            (heads.get_mut(index), streams.get_mut(index), bys.get(index))
        else {
            continue;
        };
        let Some(mut contact) = slot.take() else { continue };
        let next = stream.next().transpose()?;
        if let Some(next) = &next {
            if next.contact_id < id {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a run's receipt is not in contact id order",
                ));
            }
            heap.push(Reverse((next.contact_id.clone(), index)));
        }
        *slot = next;
        contact.credit(by);
        match &mut merged {
            Some(current) if current.contact_id == contact.contact_id => current.merge(contact),
            _ => {
                if let Some(done) = merged.replace(contact) {
                    out(done)?;
                }
            }
        }
    }
    if let Some(done) = merged {
        out(done)?;
    }
    Ok(())
}

/// A run receipt kept in the bag, read through once: its file name, path, sha256 and head.
struct KeptFile {
    name: String,
    path: std::path::PathBuf,
    sha256: String,
    head: ReceiptHead,
    sorted: bool,
}

impl CumulativeReceipt {
    /// [`CumulativeReceipt::build`] over the receipt files kept in a bag, streamed: each file
    /// is read one contact at a time, the runs merged by contact id, the merged contacts
    /// spooled in `spool_dir`. Files whose contacts are not in id order (not written by this
    /// version) are merged in memory instead.
    fn build_from_files(
        request_id: &str,
        mut runs: Vec<KeptFile>,
        spool_dir: &std::path::Path,
    ) -> std::io::Result<Self> {
        runs.sort_by_cached_key(|r| r.head.order(&r.name));
        let contacts = if runs.iter().all(|r| r.sorted) {
            let mut spool = Spool::new_in(spool_dir)?;
            let mut n = 0;
            let streams =
                runs.iter().map(|r| (r.head.done_by(), stream_contacts(&r.path))).collect();
            merge_runs(streams, |contact| {
                spool.push(n, contact)?;
                n += 1;
                Ok(())
            })?;
            spool.finish()?
        } else {
            let mut whole = Vec::new();
            for run in &runs {
                let bytes = std::fs::read(&run.path)?;
                let receipt: Receipt =
                    serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
                whole.push((run.name.clone(), run.sha256.clone(), receipt));
            }
            CumulativeReceipt::build(request_id, whole).contacts
        };
        let heads: Vec<(String, String, ReceiptHead)> =
            runs.into_iter().map(|r| (r.name, r.sha256, r.head)).collect();
        Ok(Self::assemble(request_id, &heads, contacts))
    }
}

/// Writes `value` as pretty JSON and a newline to a temporary file in `dir` (streamed), for
/// the bag to copy in.
fn pretty_file<T: Serialize>(dir: &std::path::Path, value: &T) -> Result<TempFile, ExportError> {
    use std::io::Write as _;
    let io = |action, e| ExportError::io(action, dir, e);
    let (file, out) = TempFile::create_in(dir, ".receipt-").map_err(|e| io("create", e))?;
    let mut out = std::io::BufWriter::new(out);
    serde_json::to_writer_pretty(&mut out, value)
        .map_err(|e| io("write", std::io::Error::other(e)))?;
    out.write_all(b"\n").map_err(|e| io("write", e))?;
    drop(out.into_inner().map_err(|e| io("write", e.into_error()))?);
    Ok(file)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn contact(id: &str, failed: bool, not_started: bool) -> ContactReceipt {
        let mut step = StepReceipt::new("delete", Outcome::Ok);
        step.uses = crate::runbook::StepKind::DeleteContact.name().to_owned();
        step.count = Some(3);
        ContactReceipt {
            contact_id: id.to_owned(),
            held: false,
            planned_export: false,
            planned_delete: true,
            planned_interactions: BTreeMap::from([("ucs".to_owned(), 2)]),
            steps: if not_started { Vec::new() } else { vec![step] },
            failure: failed.then(|| ("delete".to_owned(), "ucs.timeout".to_owned())),
            not_started,
        }
    }

    #[test]
    fn the_spool_writes_contacts_finishing_out_of_order_in_plan_order_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new_in(dir.path()).unwrap();
        let all = [
            contact("c0", false, false),
            contact("c1", true, false),
            contact("c2", false, true),
            contact("c3", false, false),
        ];
        for index in [2, 0, 3, 1] {
            spool.push(index, all[index].clone()).unwrap();
        }
        // Only c0 could be written so far before c1 came; now all four are out.
        assert!(spool.waiting.is_empty());
        let contacts = spool.finish().unwrap();
        let ids: Vec<String> =
            contacts.iter().map(|c| c.unwrap().contact_id).collect::<Vec<String>>();
        assert_eq!(ids, ["c0", "c1", "c2", "c3"]);
        assert_eq!(
            (contacts.len(), contacts.deleted(), contacts.failed(), contacts.not_started()),
            (4, 3, 1, 1)
        );
        // Serialised from the spool, the array is byte for byte the one of the same contacts
        // in memory.
        let from_vec = Contacts::from_vec(all.to_vec());
        assert_eq!(
            serde_json::to_string_pretty(&contacts).unwrap(),
            serde_json::to_string_pretty(&from_vec).unwrap()
        );
        assert_eq!(
            serde_json::to_string_pretty(&contacts).unwrap(),
            serde_json::to_string_pretty(&all.to_vec()).unwrap()
        );
        let spool = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap();
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&spool.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let empty = Spool::new_in(dir.path()).unwrap().finish().unwrap();
        assert_eq!(serde_json::to_string_pretty(&empty).unwrap(), "[]");
        drop(empty);
        // The spool is gone with the last copy of the contacts.
        let copy = contacts.clone();
        drop(contacts);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(copy);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_finished_spool_stays_locked_and_only_files_nobody_holds_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new_in(dir.path()).unwrap();
        spool.push(0, contact("a", false, false)).unwrap();
        // Finished: its writer is closed, its lock is not.
        let contacts = spool.finish().unwrap();
        let stale = dir.path().join(".receipt-spool-1-0");
        std::fs::write(&stale, b"{}").unwrap();
        let unlike = dir.path().join(".receipt-spool-1-x");
        std::fs::write(&unlike, b"{}").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()), 1);
        assert!(!stale.exists() && unlike.exists());
        assert_eq!(contacts.to_vec().unwrap().len(), 1);
        assert!(is_temp_name(".receipt-12-3") && is_temp_name(".receipt-spool-12-3"));
        assert!(!is_temp_name(".receipt-12") && !is_temp_name(".receipt-spool--3"));
        assert!(!is_temp_name("receipt-12-3") && !is_temp_name(".receipt-12-3.tmp"));
    }

    #[test]
    fn contacts_behind_a_slow_one_overflow_to_a_file_and_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new_in(dir.path()).unwrap();
        spool.waiting_max = 2;
        let ids: Vec<String> = (0..10).map(|i| format!("c{i:02}")).collect();
        // c00 is slow: all the others finish first (and c05 never does: a gap).
        for i in (1..10).filter(|i| *i != 5) {
            spool.push(i, contact(&ids[i], false, false)).unwrap();
            assert!(spool.waiting.len() <= 2);
        }
        assert_eq!(spool.overflow.as_ref().unwrap().places.len(), 6);
        spool.push(0, contact(&ids[0], false, false)).unwrap();
        // c00..c04 went out; c06.. wait for c05.
        assert_eq!(spool.next, 5);
        let contacts = spool.finish().unwrap();
        let read: Vec<String> = contacts.iter().map(|c| c.unwrap().contact_id).collect();
        let expected: Vec<&String> = ids.iter().filter(|id| id.as_str() != "c05").collect();
        assert_eq!(read.iter().collect::<Vec<_>>(), expected);
        assert_eq!(contacts.len(), 9);
        // The overflow file is gone once finished; the spool stays with the contacts.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_spool_out_of_id_order_is_sorted_and_a_gap_does_not_lose_contacts() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new_in(dir.path()).unwrap();
        spool.push(0, contact("b", false, false)).unwrap();
        spool.push(1, contact("a", false, false)).unwrap();
        // Index 2 never comes.
        spool.push(3, contact("c", false, false)).unwrap();
        let contacts = spool.finish().unwrap();
        let ids: Vec<String> = contacts.iter().map(|c| c.unwrap().contact_id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    fn by(run: u64) -> DoneBy {
        DoneBy { run: Some(run), actor: format!("op{run}"), plan_id: "p".repeat(64) }
    }

    fn step(id: &str, outcome: Outcome, resumed: bool) -> StepReceipt {
        StepReceipt { resumed, uses: id.to_owned(), ..StepReceipt::new(id, outcome) }
    }

    fn with_steps(id: &str, steps: Vec<StepReceipt>) -> ContactReceipt {
        ContactReceipt { steps, ..contact(id, false, false) }
    }

    fn receipt_of(run: u64, finished_at: &str, contacts: Vec<ContactReceipt>) -> Receipt {
        Receipt {
            kind: "Receipt".into(),
            request_id: "DSR-1".into(),
            plan_id: "p".repeat(64),
            run: Some(run),
            actor: Some(format!("op{run}")),
            environment: "test".into(),
            runbook: "batch-delete".into(),
            finished_at: finished_at.into(),
            interrupted: contacts.iter().any(|c| c.not_started),
            contacts: Contacts::from_vec(contacts),
            audit_head: format!("head{run}"),
            audit_records: run * 10,
            shard: None,
        }
    }

    /// Run 1 was killed after a, b (b's delete failed) and before c; run 2 resumed a, redid
    /// b and did c; run 3 planned only d and e (overlapping nothing) and d also in run 2.
    fn three_runs() -> Vec<Receipt> {
        let one = receipt_of(
            1,
            "2026-01-01T00:00:01Z",
            vec![
                with_steps(
                    "a",
                    vec![step("export", Outcome::Ok, false), step("delete", Outcome::Ok, false)],
                ),
                ContactReceipt {
                    failure: Some(("delete".into(), "ucs.timeout".into())),
                    ..with_steps(
                        "b",
                        vec![
                            step("export", Outcome::Ok, false),
                            step("delete", Outcome::Failed, false),
                        ],
                    )
                },
                contact("c", false, true),
            ],
        );
        let two = receipt_of(
            2,
            "2026-01-01T00:00:02Z",
            vec![
                with_steps(
                    "a",
                    vec![step("export", Outcome::Ok, true), step("delete", Outcome::Ok, true)],
                ),
                with_steps(
                    "b",
                    vec![step("export", Outcome::Ok, true), step("delete", Outcome::Ok, false)],
                ),
                with_steps(
                    "c",
                    vec![
                        step("export", Outcome::Skipped, false),
                        step("delete", Outcome::AlreadyAbsent, false),
                    ],
                ),
                with_steps("d", vec![step("delete", Outcome::Ok, false)]),
            ],
        );
        let three = receipt_of(
            3,
            "2026-01-01T00:00:03Z",
            vec![
                with_steps("d", vec![step("delete", Outcome::Skipped, false)]),
                with_steps("e", vec![step("delete", Outcome::Ok, false)]),
            ],
        );
        vec![one, two, three]
    }

    #[test]
    fn the_k_way_merge_gives_what_the_in_memory_build_gives() {
        let runs = three_runs();
        let expected = CumulativeReceipt::build(
            "DSR-1",
            runs.iter().map(|r| (r.file_name(), "sha".to_owned(), r.clone())).collect(),
        );
        let streams: Vec<_> = runs
            .iter()
            .map(|r| (by(r.run.unwrap()), r.contacts.to_vec().unwrap().into_iter().map(Ok)))
            .collect();
        let mut merged = Vec::new();
        merge_runs(streams, |c| {
            merged.push(c);
            Ok(())
        })
        .unwrap();
        let expected = expected.contacts.to_vec().unwrap();
        assert_eq!(
            serde_json::to_string_pretty(&merged).unwrap(),
            serde_json::to_string_pretty(&expected).unwrap()
        );
        // And what that is: a's steps are run 1's, b's delete run 2's, c run 2's, d's delete
        // run 2's (run 3 skipped it), e run 3's.
        let done_by = |c: usize, s: usize| merged[c].steps[s].done_by.as_ref().unwrap().run;
        assert_eq!(
            merged.iter().map(|c| c.contact_id.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "d", "e"]
        );
        assert_eq!((done_by(0, 0), done_by(0, 1)), (Some(1), Some(1)));
        assert_eq!((done_by(1, 0), done_by(1, 1)), (Some(1), Some(2)));
        assert!(merged[1].failure.is_none());
        assert!(!merged[2].not_started);
        assert_eq!(done_by(2, 1), Some(2));
        assert_eq!(done_by(3, 0), Some(2));
        assert_eq!(done_by(4, 0), Some(3));
    }

    #[test]
    fn the_k_way_merge_refuses_a_run_out_of_id_order() {
        let streams = vec![(
            by(1),
            vec![contact("b", false, false), contact("a", false, false)].into_iter().map(Ok),
        )];
        let error = merge_runs(streams, |_| Ok(())).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_streaming_reader_finds_contacts_among_other_keys_and_refuses_what_serde_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let receipt = &three_runs()[1];
        // Keys before and after `contacts`, one unknown, in another order than written.
        let mut value = serde_json::to_value(receipt).unwrap();
        value["somethingNew"] = serde_json::json!({"contacts": [1, 2]});
        let contacts = value.as_object_mut().unwrap().remove("contacts").unwrap();
        let mut text = String::from("{\"contacts\": ");
        text.push_str(&contacts.to_string());
        for (key, value) in value.as_object().unwrap() {
            text.push_str(&format!(", {}: {value}", serde_json::to_string(key).unwrap()));
        }
        text.push_str("}\n");
        let path = dir.path().join("receipt-2.json");
        std::fs::write(&path, &text).unwrap();
        let (head, sha256, sorted) = scan_receipt(&path).unwrap();
        assert_eq!((head.kind.as_str(), head.run, head.audit_records), ("Receipt", Some(2), 20));
        assert_eq!(sha256, crate::canonical::sha256_hex(text.as_bytes()));
        assert!(sorted);
        let read: Vec<String> = stream_contacts(&path).map(|c| c.unwrap().contact_id).collect();
        assert_eq!(read, ["a", "b", "c", "d"]);
        // What `from_slice::<Receipt>` refuses, the reader refuses too.
        for bad in [
            text.replace("\"contacts\": ", "\"contactz\": "),
            format!("{text} trailing"),
            text.replace("\"auditRecords\"", "\"auditRecordz\""),
            text.replace("\"contactId\":\"b\"", "\"contactId\":7"),
        ] {
            assert!(serde_json::from_str::<Receipt>(&bad).is_err());
            std::fs::write(&path, &bad).unwrap();
            assert!(scan_receipt(&path).is_none(), "{bad}");
        }
        // Out of order: read, and said to be.
        let mut unsorted = receipt.clone();
        let mut list = unsorted.contacts.to_vec().unwrap();
        list.reverse();
        let mut tally = Tally::default();
        list.iter().for_each(|c| tally.add(c));
        unsorted.contacts = Contacts { kept: Kept::Memory(list), tally };
        std::fs::write(&path, serde_json::to_vec(&unsorted).unwrap()).unwrap();
        assert!(!scan_receipt(&path).unwrap().2);
    }
    /// The shard merge as it was before it streamed, every receipt and contact whole in
    /// memory (`CumulativeReceipt::build` per part, then one sort): what the streamed merge
    /// must give, byte for byte, refusals included.
    fn merge_in_memory(
        request_id: &str,
        plan_id: &str,
        ids: &[&str],
        bags: &[std::path::PathBuf],
    ) -> Result<ShardedReceipt, MergeError> {
        if bags.is_empty() {
            return Err(MergeError::NoParts);
        }
        let mut parts = Vec::new();
        for bag in bags {
            let part = |why: String| MergeError::Part { path: bag.clone(), why };
            crate::export::validate_dir(bag)
                .map_err(|e| part(format!("does not validate: {e}")))?;
            let mut runs = Vec::new();
            let mut shards = std::collections::BTreeSet::new();
            for entry in std::fs::read_dir(bag).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().to_string_lossy().into_owned();
                if !(name.starts_with("receipt-") && name.ends_with(".json")) {
                    continue;
                }
                let bytes = std::fs::read(entry.path()).unwrap();
                let Ok(receipt) = serde_json::from_slice::<Receipt>(&bytes) else { continue };
                if receipt.kind != "Receipt" || receipt.plan_id != plan_id {
                    continue;
                }
                let Some(label) = &receipt.shard else {
                    return Err(part(format!(
                        "holds {name}, a run of the plan that was not a shard's"
                    )));
                };
                let shard = crate::shard::Shard::from_label(label)
                    .ok_or_else(|| part(format!("holds {name}, whose shard is not I/N")))?;
                shards.insert(shard);
                runs.push((name, crate::canonical::sha256_hex(&bytes), receipt));
            }
            let shard = match (shards.first(), shards.len()) {
                (Some(shard), 1) => *shard,
                (None, _) => {
                    return Err(part("holds no receipt of a shard's run of this plan".to_owned()));
                }
                _ => return Err(part("holds the receipts of several shards".to_owned())),
            };
            parts.push((shard, bag, runs));
        }
        let counts: std::collections::BTreeSet<u32> = parts.iter().map(|p| p.0.count()).collect();
        if counts.len() != 1 {
            let counts: Vec<String> = counts.iter().map(u32::to_string).collect();
            return Err(MergeError::Counts(counts.join(", ")));
        }
        let count = *counts.first().unwrap();
        let mut by_index: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (position, part) in parts.iter().enumerate() {
            by_index.entry(part.0.index()).or_default().push(position);
        }
        for (index, positions) in &by_index {
            if positions.len() > 1 {
                return Err(MergeError::Duplicated {
                    shard: format!("{index}/{count}"),
                    bags: positions.iter().map(|p| parts[*p].1.display().to_string()).collect(),
                });
            }
        }
        let missing: Vec<String> = (0..count)
            .filter(|i| !by_index.contains_key(i))
            .map(|i| format!("{i}/{count}"))
            .collect();
        if !missing.is_empty() {
            return Err(MergeError::Missing { shards: missing, count });
        }
        parts.sort_by_key(|p| p.0.index());
        let mut contacts = Vec::new();
        let mut out_parts = Vec::new();
        for (shard, bag, runs) in parts {
            let merged = CumulativeReceipt::build(request_id, runs);
            let merged_contacts = merged.contacts.to_vec().unwrap();
            let expected: std::collections::BTreeSet<&str> =
                ids.iter().copied().filter(|id| shard.contains_id(id)).collect();
            let have: BTreeMap<&str, &ContactReceipt> =
                merged_contacts.iter().map(|c| (c.contact_id.as_str(), c)).collect();
            let foreign: Vec<String> = have
                .keys()
                .filter(|id| !expected.contains(*id))
                .map(|id| (*id).to_owned())
                .collect();
            if !foreign.is_empty() {
                return Err(MergeError::Foreign { shard: shard.to_string(), contacts: foreign });
            }
            let unfinished: Vec<String> = expected
                .iter()
                .filter(|id| have.get(*id).is_none_or(|c| c.not_started))
                .map(|id| (*id).to_owned())
                .collect();
            if !unfinished.is_empty() {
                return Err(MergeError::Incomplete {
                    shard: shard.to_string(),
                    expected: expected.len(),
                    contacts: unfinished,
                });
            }
            out_parts.push(ShardPart {
                shard: shard.label(),
                bag: bag.display().to_string(),
                runs: merged.runs,
                contacts: expected.len() as u64,
            });
            contacts.extend(merged_contacts);
        }
        contacts.sort_by(|a, b| a.contact_id.cmp(&b.contact_id));
        Ok(ShardedReceipt {
            kind: "ShardedReceipt".into(),
            request_id: request_id.to_owned(),
            plan_id: plan_id.to_owned(),
            shards: count,
            parts: out_parts,
            contacts: Contacts::from_vec(contacts),
            merged_at: "then".into(),
        })
    }

    /// A shard's part: a bag in its own exports folder under `dir` holding `receipts` (each
    /// with its contacts reversed, out of id order, where `unsorted` says so).
    fn part_bag(
        dir: &std::path::Path,
        name: &str,
        receipts: &[(Receipt, bool)],
    ) -> std::path::PathBuf {
        let exports = dir.join(name);
        let bag = Bag::open_or_create(&exports, "DSR-1").unwrap();
        for (receipt, unsorted) in receipts {
            let mut receipt = receipt.clone();
            if *unsorted {
                let mut list = receipt.contacts.to_vec().unwrap();
                list.reverse();
                let tally = receipt.contacts.tally;
                receipt.contacts = Contacts { kept: Kept::Memory(list), tally };
            }
            bag.keep(&receipt.file_name(), &serde_json::to_vec_pretty(&receipt).unwrap()).unwrap();
        }
        bag.finish().unwrap();
        bag.root().to_owned()
    }

    fn sharded(run: u64, at: &str, shard: &str, contacts: Vec<ContactReceipt>) -> Receipt {
        Receipt { shard: Some(shard.to_owned()), ..receipt_of(run, at, contacts) }
    }

    fn done(id: &str, resumed: bool) -> ContactReceipt {
        let mut delete = step("delete", Outcome::Ok, resumed);
        delete.uses = crate::runbook::StepKind::DeleteContact.name().to_owned();
        with_steps(id, vec![step("export", Outcome::Ok, resumed), delete])
    }

    #[test]
    fn the_streamed_shard_merge_writes_what_the_in_memory_merge_writes_and_refuses_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let spool = tempfile::tempdir().unwrap();
        let owned: Vec<String> = (0..40).map(|i| format!("c{i:02}")).collect();
        let ids: Vec<&str> = owned.iter().map(String::as_str).collect();
        let of = |s: u32| -> Vec<&str> {
            ids.iter().copied().filter(|id| crate::shard::of(id, 3) == s).collect()
        };
        let (zero, one, two) = (of(0), of(1), of(2));
        assert!(zero.len() > 3 && one.len() > 3 && two.len() > 3);
        let label = |s: u32| format!("shard-{s}-of-3");
        // Shard 0: one run, everything done.
        let shard0 = vec![(
            sharded(
                4,
                "2026-01-01T00:00:04Z",
                &label(0),
                zero.iter().map(|id| done(id, false)).collect(),
            ),
            false,
        )];
        // Shard 1: run 5 failed one contact and was killed before the last two; run 9 resumed
        // what was done, redid the failed one and did the rest; run 12 found it all done.
        let first: Vec<ContactReceipt> = one
            .iter()
            .enumerate()
            .map(|(i, id)| match i {
                1 => ContactReceipt {
                    failure: Some(("delete".into(), "ucs.timeout".into())),
                    ..with_steps(
                        id,
                        vec![
                            step("export", Outcome::Ok, false),
                            step("delete", Outcome::Failed, false),
                        ],
                    )
                },
                i if i + 2 >= one.len() => contact(id, false, true),
                _ => done(id, false),
            })
            .collect();
        let second: Vec<ContactReceipt> = one
            .iter()
            .enumerate()
            .map(|(i, id)| match i {
                1 => with_steps(
                    id,
                    vec![step("export", Outcome::Ok, true), step("delete", Outcome::Ok, false)],
                ),
                i if i + 2 >= one.len() => done(id, false),
                _ => done(id, true),
            })
            .collect();
        let third: Vec<ContactReceipt> = one.iter().map(|id| done(id, true)).collect();
        let shard1 = vec![
            (sharded(5, "2026-01-01T00:00:05Z", &label(1), first.clone()), false),
            (sharded(9, "2026-01-01T00:00:09Z", &label(1), second), false),
            (sharded(12, "2026-01-01T00:00:12Z", &label(1), third), false),
        ];
        // Shard 2: two runs, the second's file out of id order (merged in memory).
        let shard2 = vec![
            (
                sharded(
                    6,
                    "2026-01-01T00:00:06Z",
                    &label(2),
                    two.iter().map(|id| contact(id, false, true)).collect(),
                ),
                false,
            ),
            (
                sharded(
                    8,
                    "2026-01-01T00:00:08Z",
                    &label(2),
                    two.iter().map(|id| done(id, false)).collect(),
                ),
                true,
            ),
        ];
        let b0 = part_bag(dir.path(), "zero", &shard0);
        let b1 = part_bag(dir.path(), "one", &shard1);
        let b2 = part_bag(dir.path(), "two", &shard2);
        let json = |r: &ShardedReceipt| {
            let mut out = Vec::new();
            r.write_json(&mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let same = |bags: &[std::path::PathBuf]| {
            let streamed = merge_parts("DSR-1", &"p".repeat(64), &ids, bags, spool.path());
            let in_memory = merge_in_memory("DSR-1", &"p".repeat(64), &ids, bags);
            match (streamed, in_memory) {
                (Ok(mut streamed), Ok(in_memory)) => {
                    streamed.merged_at = "then".into();
                    assert_eq!(json(&streamed), json(&in_memory));
                    assert_eq!(streamed.text(), in_memory.text());
                    assert_eq!(streamed.succeeded(), in_memory.succeeded());
                    Ok(streamed)
                }
                (Err(streamed), Err(in_memory)) => {
                    assert_eq!(streamed.to_string(), in_memory.to_string());
                    Err(streamed)
                }
                (streamed, in_memory) => panic!(
                    "{:?} against {:?}",
                    streamed.map(|r| json(&r)),
                    in_memory.map(|r| json(&r))
                ),
            }
        };
        let merged = same(&[b2.clone(), b0.clone(), b1.clone()]).unwrap();
        // And what that is: every contact once, in id order, each with its runs' doers.
        let contacts = merged.contacts.to_vec().unwrap();
        assert_eq!(contacts.iter().map(|c| c.contact_id.as_str()).collect::<Vec<_>>(), ids);
        assert!(merged.succeeded());
        assert_eq!(merged.parts.iter().map(|p| p.runs.len()).collect::<Vec<_>>(), [1, 3, 2]);
        let find = |id: &str| contacts.iter().find(|c| c.contact_id == id).unwrap();
        let runs = |id: &str| -> Vec<Option<u64>> {
            find(id).steps.iter().map(|s| s.done_by.as_ref().unwrap().run).collect()
        };
        assert_eq!(runs(zero[0]), [Some(4), Some(4)]);
        assert_eq!(runs(one[0]), [Some(5), Some(5)]);
        assert_eq!(runs(one[1]), [Some(5), Some(9)]);
        assert_eq!(runs(one[one.len() - 1]), [Some(9), Some(9)]);
        assert_eq!(runs(two[0]), [Some(8), Some(8)]);
        // The spools are gone with the receipt.
        assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 1);
        drop(merged);
        assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);

        // Every refusal, the same.
        let refused = |bags: &[std::path::PathBuf]| same(bags).err().unwrap();
        assert!(matches!(refused(&[]), MergeError::NoParts));
        assert!(matches!(refused(&[b0.clone(), b1.clone()]), MergeError::Missing { .. }));
        assert!(matches!(
            refused(&[b0.clone(), b1.clone(), b2.clone(), b1.clone()]),
            MergeError::Duplicated { .. }
        ));
        let halves = part_bag(
            dir.path(),
            "halves",
            &[(sharded(3, "2026-01-01T00:00:03Z", "shard-0-of-2", vec![]), false)],
        );
        assert!(matches!(refused(&[b0.clone(), b1.clone(), halves]), MergeError::Counts(_)));
        let killed = part_bag(
            dir.path(),
            "killed",
            &[(sharded(5, "2026-01-01T00:00:05Z", &label(1), first), false)],
        );
        let MergeError::Incomplete { contacts, .. } = refused(&[b0.clone(), killed, b2.clone()])
        else {
            panic!()
        };
        assert_eq!(contacts, one[one.len() - 2..]);
        let short = part_bag(
            dir.path(),
            "short",
            &[(
                sharded(
                    4,
                    "2026-01-01T00:00:04Z",
                    &label(0),
                    zero[1..].iter().map(|id| done(id, false)).collect(),
                ),
                true,
            )],
        );
        let MergeError::Incomplete { contacts, .. } = refused(&[short, b1.clone(), b2.clone()])
        else {
            panic!()
        };
        assert_eq!(contacts, [zero[0]]);
        let mut wider: Vec<ContactReceipt> = zero.iter().map(|id| done(id, false)).collect();
        wider.push(done(two[0], false));
        let wider = part_bag(
            dir.path(),
            "wider",
            &[(sharded(4, "2026-01-01T00:00:04Z", &label(0), wider), false)],
        );
        let MergeError::Foreign { contacts, .. } = refused(&[wider, b1.clone(), b2.clone()]) else {
            panic!()
        };
        assert_eq!(contacts, [two[0]]);
        let whole = part_bag(
            dir.path(),
            "whole",
            &[(receipt_of(2, "2026-01-01T00:00:02Z", vec![]), false)],
        );
        assert!(matches!(refused(&[b0.clone(), whole, b2.clone()]), MergeError::Part { .. }));
        let mixed = part_bag(dir.path(), "mixed", &[shard0[0].clone(), shard1[0].clone()]);
        assert!(matches!(refused(&[mixed, b1.clone(), b2.clone()]), MergeError::Part { .. }));
        let other = Receipt { plan_id: "q".repeat(64), ..shard0[0].0.clone() };
        let other = part_bag(dir.path(), "other", &[(other, false)]);
        assert!(matches!(refused(&[other, b1.clone(), b2.clone()]), MergeError::Part { .. }));
        std::fs::write(b0.join("receipt-4.json"), b"{}").unwrap();
        assert!(matches!(refused(&[b0, b1, b2]), MergeError::Part { .. }));
    }
}
