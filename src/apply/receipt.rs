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
    /// Per contact.
    pub contacts: Vec<ContactReceipt>,
    /// The audit log's last hash after the run.
    pub audit_head: String,
    /// The audit log's record count after the run.
    pub audit_records: u64,
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
        contacts: Vec<ContactReceipt>,
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
        }
    }

    /// Whether every contact finished without a failure.
    pub fn succeeded(&self) -> bool {
        !self.interrupted && self.contacts.iter().all(|c| !c.failed())
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
        let cumulative = bag.root().join(crate::export::RECEIPT);
        if let Ok(existing) = std::fs::read(&cumulative)
            && let Ok(old) = serde_json::from_slice::<Receipt>(&existing)
            && old.kind == "Receipt"
        {
            bag.keep(&old.file_name(), &existing)?;
        }
        bag.keep(&self.file_name(), &pretty(self))?;
        let mut runs = Vec::new();
        for name in bag.kept() {
            if !(name.starts_with("receipt-") && name.ends_with(".json")) {
                continue;
            }
            let Ok(bytes) = std::fs::read(bag.root().join(&name)) else { continue };
            match serde_json::from_slice::<Receipt>(&bytes) {
                Ok(receipt)
                    if receipt.kind == "Receipt" && receipt.request_id == self.request_id =>
                {
                    let sha256 = crate::canonical::sha256_hex(&bytes);
                    runs.push((name, sha256, receipt));
                }
                _ => {
                    tracing::warn!(
                        receipt = %name,
                        "a kept receipt could not be read as this request's; left out of receipt.json"
                    );
                }
            }
        }
        let built = CumulativeReceipt::build(&self.request_id, runs);
        bag.replace(crate::export::RECEIPT, &pretty(&built))?;
        Ok(built)
    }

    /// A human summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Receipt for request {} (plan {})", self.request_id, self.plan_id);
        for contact in &self.contacts {
            let _ = writeln!(out, "  contact {}: {}", contact.contact_id, contact.summary());
        }
        let deleted = self.contacts.iter().filter(|c| c.deleted()).count();
        let failed = self.contacts.iter().filter(|c| c.failed()).count();
        let _ = writeln!(
            out,
            "{} contact(s): {} deleted or already absent, {} failed{}; audit head {} ({} records)",
            self.contacts.len(),
            deleted,
            failed,
            if self.interrupted { ", INTERRUPTED: run apply again to resume" } else { "" },
            self.audit_head,
            self.audit_records
        );
        out
    }
}

fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
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
    /// Per contact, over every run.
    pub contacts: Vec<ContactReceipt>,
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
        runs.sort_by(|a, b| {
            (&a.2.finished_at, a.2.audit_records, a.2.run, &a.0).cmp(&(
                &b.2.finished_at,
                b.2.audit_records,
                b.2.run,
                &b.0,
            ))
        });
        let mut contacts: BTreeMap<String, ContactReceipt> = BTreeMap::new();
        for (_, _, receipt) in &runs {
            let by = DoneBy {
                run: receipt.run,
                actor: receipt.actor.clone().unwrap_or_default(),
                plan_id: receipt.plan_id.clone(),
            };
            for contact in &receipt.contacts {
                let mut contact = contact.clone();
                for step in &mut contact.steps {
                    if step.acted() && step.done_by.is_none() {
                        step.done_by = Some(by.clone());
                    }
                }
                match contacts.get_mut(&contact.contact_id) {
                    None => {
                        contacts.insert(contact.contact_id.clone(), contact);
                    }
                    Some(merged) => merged.merge(contact),
                }
            }
        }
        let last = runs.last().map(|(_, _, r)| r);
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
            contacts: contacts.into_values().collect(),
        }
    }
}

impl ContactReceipt {
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
