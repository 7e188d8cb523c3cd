//! The erasure receipt: per contact, what was planned and what happened, each step's outcome,
//! and the audit log's head hash that proves it. No personal data: ids, counts, outcomes.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::audit::Outcome;
use crate::plan::{ContactPlan, Plan};

/// The receipt of one run of a plan.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// Always `Receipt`.
    pub kind: String,
    /// The request.
    pub request_id: String,
    /// The plan applied.
    pub plan_id: String,
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
#[derive(Debug, Clone, Serialize)]
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

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
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
        }
    }

    pub(super) fn skipped(step: &str, reason: &str) -> Self {
        Self { reason: Some(reason.to_owned()), ..Self::new(step, Outcome::Skipped) }
    }

    pub(super) fn resumed(step: &str, outcome: Outcome) -> Self {
        Self { resumed: true, ..Self::new(step, outcome) }
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
    ) -> Self {
        Self {
            kind: "Receipt".into(),
            request_id: plan.body.request.id.clone(),
            plan_id: plan.plan_id.clone(),
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

    /// Writes `receipt.json` beside the bag's tag files, atomically.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, bag_root: &Path) -> Result<(), crate::export::ExportError> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        let path = bag_root.join("receipt.json");
        // The receipt of another plan of the same request is proof too: keep it under its
        // plan's name rather than overwrite it.
        if let Ok(existing) = std::fs::read(&path)
            && let Ok(existing) = serde_json::from_slice::<serde_json::Value>(&existing)
            && let Some(other) = existing.get("planId").and_then(serde_json::Value::as_str)
            && other != self.plan_id
            && other.len() >= 12
            && other.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let kept = bag_root.join(format!("receipt-{}.json", other.get(..12).unwrap_or(other)));
            std::fs::rename(&path, &kept)
                .map_err(|source| crate::export::ExportError::io("rename", &path, source))?;
        }
        crate::durable::write_atomically(&path, &bytes)
            .map_err(|source| crate::export::ExportError::io("write", &path, source))
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
