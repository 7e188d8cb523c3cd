//! What was done for one request, across all its runs, from the audit log alone.
//!
//! [`request_report`] reads the log once for the request's records and verifies it, and
//! returns a [`RequestReport`]: the runs (who, which plan, when, how they ended), the
//! approvals and refusals, and each contact's final state. It holds what the records hold:
//! ids, counts, codes and times, never personal data.
//!
//! **Runs.** The log has no run id of its own; a run is the records of one request from its
//! first record (an `approval`, a `run.start` or a `run.refused`) to its `run.end` or
//! `run.refused`. Runs cannot interleave (one writer holds the log for a whole run). A run's
//! id is the `seq` of its `run.start` record, or of its `run.refused` record when it was
//! refused, so it can be found with `audit show`.
//!
//! **Steps.** The records name steps by the runbook's ids, not by what they use, so what a
//! step did is read from its records, as the executor (`apply::run`) writes them: an export is
//! a `step.done` with the export's `sha256` (and its counts); a deletion is a `step.done` after
//! a `step.intent` of the same step and contact without a `sha256`, a Context Services profile
//! deletion (`context-services/delete-profile`) the one of them that carries a `count` (of
//! services deleted); a `step.done` without intent after a deletion is the check that the
//! contact is gone; a `step.skipped` with reason `hold` is a legal hold.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::AuditError;
use super::record::{AuditRecord, Event, Outcome};
use super::verify::{Fault, VerifyOptions, for_each_record, verify_file};

/// What the log says about one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestReport {
    /// The request id.
    pub request_id: String,
    /// Whether the whole log verifies (every line, link, seq and hash); when it does not,
    /// what this report says rests on records that may have been changed.
    pub log_verifies: bool,
    /// The faults verification found in the log (lines, kinds, seqs; no content).
    pub faults: Vec<Fault>,
    /// The request's records in the log.
    pub records: u64,
    /// Its runs, in order.
    pub runs: Vec<Run>,
    /// Every approval recorded, in order.
    pub approvals: Vec<Approval>,
    /// Every refusal, in order.
    pub refusals: Vec<Refusal>,
    /// Each contact the runs acted on, by id.
    pub contacts: Vec<ContactState>,
}

/// One run of `apply` for the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// The `seq` of its `run.start` (or `run.refused`) record.
    pub id: u64,
    /// Who ran it.
    pub actor: String,
    /// The plan it ran.
    pub plan_id: Option<String>,
    /// The time of its first record.
    pub started: String,
    /// The time of its `run.end` or `run.refused` record.
    pub ended: Option<String>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The reason code recorded with its end (`interrupted`) or refusal (`stale-plan`).
    pub reason: Option<String>,
    /// Contacts in its plan, as its `run.start` recorded.
    pub contacts: Option<u64>,
    /// Who approved it.
    pub approvers: Vec<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    /// `run.end` with outcome `ok`: every contact finished.
    Completed,
    /// `run.end` with another outcome: a contact failed, or the run was stopped (Ctrl-C).
    Failed,
    /// `run.refused`: nothing was done.
    Refused,
    /// No `run.end`: the run stopped without one (a crash, a kill), or is still running.
    Unfinished,
}

impl RunOutcome {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Refused => "refused",
            Self::Unfinished => "unfinished",
        }
    }
}

/// An `approval` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The run it was recorded by.
    pub run: u64,
    /// Its `seq`.
    pub seq: u64,
    /// When.
    pub time: String,
    /// Who approved.
    pub approver: Option<String>,
    /// The plan approved.
    pub plan_id: Option<String>,
    /// The id of the registered key its signature verified with.
    pub key_id: Option<String>,
    /// The SHA-256 of its signature bytes.
    pub signature_sha256: Option<String>,
    /// When it stops counting, when it expires.
    pub expires_at: Option<String>,
}

/// A `run.refused` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// The run refused.
    pub run: u64,
    /// When.
    pub time: String,
    /// Who asked.
    pub actor: String,
    /// The plan refused.
    pub plan_id: Option<String>,
    /// The reason code (`approval-not-enough`, `stale-plan`, `blocked`, ...).
    pub reason: Option<String>,
}

/// Where a contact ended up, after every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinalState {
    /// Deleted from UCS (or found already gone when its delete ran).
    Deleted,
    /// Exported, not deleted.
    Exported,
    /// Kept under a legal hold.
    Held,
    /// A step failed and no later run completed it.
    Failed,
    /// A step announced a side effect and recorded no outcome (the run stopped there).
    Interrupted,
    /// Checks only: nothing was exported or deleted.
    Untouched,
}

impl FinalState {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Exported => "exported",
            Self::Held => "held",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Untouched => "untouched",
        }
    }
}

/// One contact's final state and the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactState {
    /// The UCS contact id.
    pub contact: String,
    /// Where it ended up.
    pub state: FinalState,
    /// Its export, when one was recorded (the last one).
    pub export: Option<Exported>,
    /// Its deletion from UCS, when recorded.
    pub deleted: Option<StepFact>,
    /// Its Context Services profile's deletion, when recorded.
    pub context_services_deleted: Option<StepFact>,
    /// Whether a check after the deletion found it gone.
    pub verified_absent: bool,
    /// Whether a run kept it under a legal hold.
    pub held: bool,
    /// The failure no later run made good.
    pub failed: Option<Failure>,
    /// The step whose intent has no outcome.
    pub interrupted_at: Option<StepFact>,
    /// `step.retry` records about it.
    pub retries: u64,
}

/// An export's counts, from its `step.done` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exported {
    /// The step.
    pub step: String,
    /// The run.
    pub run: u64,
    /// Interactions exported.
    pub interactions: Option<u64>,
    /// Attachments exported.
    pub attachments: Option<u64>,
    /// Bytes written.
    pub bytes: Option<u64>,
    /// The sha256 over the export's manifest lines.
    pub sha256: Option<String>,
}

/// Which step of which run, and how it turned out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepFact {
    /// The step.
    pub step: String,
    /// The run.
    pub run: u64,
    /// The recorded outcome (`ok`, `already-absent`), when any.
    pub outcome: Option<String>,
    /// A count recorded with it (Context Services services deleted).
    pub count: Option<u64>,
}

/// A `step.failed` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The step that failed.
    pub step: String,
    /// The run.
    pub run: u64,
    /// The error code.
    pub code: Option<String>,
    /// The HTTP status, when a remote system answered.
    pub http_status: Option<u16>,
}

/// Reads the log at `path` and reports what it says about `request` (one record at a time:
/// the log is never held whole).
///
/// # Errors
/// The log cannot be read.
pub fn request_report(path: &Path, request: &str) -> Result<RequestReport, AuditError> {
    let verification = verify_file(path, &VerifyOptions::default())?;
    let mut reading = Reading::default();
    for_each_record(path, |_, record| {
        if record.request_id.as_ref().is_some_and(|id| id.as_str() == request) {
            reading.record(&record);
        }
    })?;
    Ok(reading.report(request, verification.ok, verification.faults))
}

/// Reads the log at `path` once, one record at a time, and reports on every request it has
/// records of, by id.
///
/// # Errors
/// The log cannot be read.
pub fn request_reports(path: &Path) -> Result<BTreeMap<String, RequestReport>, AuditError> {
    let verification = verify_file(path, &VerifyOptions::default())?;
    let mut by_request: BTreeMap<String, Reading> = BTreeMap::new();
    for_each_record(path, |_, record| {
        if let Some(id) = &record.request_id {
            by_request.entry(id.to_string()).or_default().record(&record);
        }
    })?;
    Ok(by_request
        .into_iter()
        .map(|(id, reading)| {
            let report = reading.report(&id, verification.ok, verification.faults.clone());
            (id, report)
        })
        .collect())
}

/// One request's records as they are read: what they say so far, and how many.
#[derive(Default)]
struct Reading {
    builder: Builder,
    records: u64,
}

impl Reading {
    fn record(&mut self, record: &AuditRecord) {
        self.builder.record(record);
        self.records += 1;
    }

    fn report(self, request: &str, verifies: bool, faults: Vec<Fault>) -> RequestReport {
        let (runs, approvals, refusals, contacts) = self.builder.finish();
        RequestReport {
            request_id: request.to_owned(),
            log_verifies: verifies,
            faults,
            records: self.records,
            runs,
            approvals,
            refusals,
            contacts,
        }
    }
}

/// A run being read.
struct Open {
    run: Run,
    /// Its `run.start` was seen.
    started: bool,
    /// The approvals recorded before its id was known.
    approvals: Vec<Approval>,
}

/// A contact's record of intents, as the log is read.
#[derive(Default)]
struct Contact {
    state: Option<ContactState>,
    /// Steps with an intent and no outcome yet, with their run.
    pending: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Builder {
    open: Option<Open>,
    runs: Vec<Run>,
    approvals: Vec<Approval>,
    refusals: Vec<Refusal>,
    contacts: BTreeMap<String, Contact>,
}

fn text<T: ToString>(value: Option<&T>) -> Option<String> {
    value.map(ToString::to_string)
}

/// Whether an outcome is a success (also one this reader does not know yet).
fn succeeded(outcome: Option<Outcome>) -> bool {
    !matches!(
        outcome,
        Some(Outcome::Failed | Outcome::Skipped | Outcome::Refused | Outcome::Blocked)
    )
}

impl Builder {
    /// The open run for `record`, opening one (closing the open one when it cannot be the
    /// same run: another plan, or a second start).
    fn run_for(&mut self, record: &AuditRecord) -> &mut Open {
        let other_plan = self.open.as_ref().is_some_and(|open| {
            record.plan_id.is_some()
                && open.run.plan_id.is_some()
                && open.run.plan_id != text(record.plan_id.as_ref())
        });
        let restarted = self.open.as_ref().is_some_and(|open| {
            open.started
                && matches!(record.event, Event::RunStart | Event::Approval | Event::ShardStart)
        });
        if other_plan || restarted {
            self.close(None);
        }
        self.open.get_or_insert_with(|| Open {
            run: Run {
                id: record.seq,
                actor: record.actor.to_string(),
                plan_id: text(record.plan_id.as_ref()),
                started: record.time.to_string(),
                ended: None,
                outcome: RunOutcome::Unfinished,
                reason: None,
                contacts: None,
                approvers: Vec::new(),
            },
            started: false,
            approvals: Vec::new(),
        })
    }

    /// Closes the open run, with its end record when there is one.
    fn close(&mut self, end: Option<&AuditRecord>) {
        let Some(mut open) = self.open.take() else { return };
        if let Some(end) = end {
            open.run.ended = Some(end.time.to_string());
            open.run.reason = text(end.detail.as_ref().and_then(|d| d.reason.as_ref()));
            open.run.outcome = match end.event {
                Event::RunRefused => RunOutcome::Refused,
                _ if end.outcome == Some(Outcome::Ok) => RunOutcome::Completed,
                _ => RunOutcome::Failed,
            };
            if end.event == Event::RunRefused {
                if !open.started {
                    open.run.id = end.seq;
                }
                self.refusals.push(Refusal {
                    run: open.run.id,
                    time: end.time.to_string(),
                    actor: end.actor.to_string(),
                    plan_id: text(end.plan_id.as_ref()),
                    reason: open.run.reason.clone(),
                });
            }
        }
        for mut approval in open.approvals {
            approval.run = open.run.id;
            self.approvals.push(approval);
        }
        self.runs.push(open.run);
    }

    fn record(&mut self, record: &AuditRecord) {
        match record.event {
            Event::Approval => {
                let open = self.run_for(record);
                let approver = text(record.detail.as_ref().and_then(|d| d.approver.as_ref()));
                if let Some(approver) = &approver {
                    open.run.approvers.push(approver.clone());
                }
                open.approvals.push(Approval {
                    run: open.run.id,
                    seq: record.seq,
                    time: record.time.to_string(),
                    approver,
                    plan_id: text(record.plan_id.as_ref()),
                    key_id: text(record.detail.as_ref().and_then(|d| d.key_id.as_ref())),
                    signature_sha256: text(
                        record.detail.as_ref().and_then(|d| d.signature_sha256.as_ref()),
                    ),
                    expires_at: text(record.detail.as_ref().and_then(|d| d.expires_at.as_ref())),
                });
            }
            Event::RunStart => {
                let open = self.run_for(record);
                open.started = true;
                open.run.id = record.seq;
                open.run.contacts = record.detail.as_ref().and_then(|d| d.count);
            }
            Event::RunEnd | Event::RunRefused => {
                self.run_for(record);
                self.close(Some(record));
            }
            Event::LogRecovered => {}
            // A shard's run opens with it; the run's own records follow.
            Event::ShardStart => {
                self.run_for(record);
            }
            _ => {
                let run = self.run_for(record).run.id;
                if let Some(contact) = &record.contact {
                    let contact = self.contacts.entry(contact.to_string()).or_default();
                    contact.step(record, run);
                }
            }
        }
    }

    fn finish(mut self) -> (Vec<Run>, Vec<Approval>, Vec<Refusal>, Vec<ContactState>) {
        self.close(None);
        let contacts = self
            .contacts
            .into_values()
            .filter_map(|contact| {
                let mut state = contact.state?;
                if let Some((step, run)) = contact.pending.into_iter().next() {
                    state.interrupted_at = Some(StepFact { step, run, outcome: None, count: None });
                }
                state.state = if state.failed.is_some() {
                    FinalState::Failed
                } else if state.interrupted_at.is_some() {
                    FinalState::Interrupted
                } else if state.deleted.is_some() {
                    FinalState::Deleted
                } else if state.held {
                    FinalState::Held
                } else if state.export.is_some() {
                    FinalState::Exported
                } else {
                    FinalState::Untouched
                };
                Some(state)
            })
            .collect();
        (self.runs, self.approvals, self.refusals, contacts)
    }
}

impl Contact {
    fn step(&mut self, record: &AuditRecord, run: u64) {
        let state = self.state.get_or_insert_with(|| ContactState {
            contact: record.contact.as_ref().map(ToString::to_string).unwrap_or_default(),
            state: FinalState::Untouched,
            export: None,
            deleted: None,
            context_services_deleted: None,
            verified_absent: false,
            held: false,
            failed: None,
            interrupted_at: None,
            retries: 0,
        });
        let Some(step) = record.step.as_ref().map(ToString::to_string) else { return };
        let detail = record.detail.clone().unwrap_or_default();
        let outcome = text(record.outcome.as_ref());
        match record.event {
            Event::StepIntent => {
                self.pending.insert(step, run);
            }
            Event::StepRetry => state.retries += 1,
            Event::StepFailed => {
                self.pending.remove(&step);
                state.failed = Some(Failure {
                    step,
                    run,
                    code: text(detail.code.as_ref()),
                    http_status: detail.http_status,
                });
            }
            Event::StepSkipped => {
                self.pending.remove(&step);
                if detail.reason.as_ref().is_some_and(|reason| reason.as_str() == "hold") {
                    state.held = true;
                }
            }
            Event::StepDone if succeeded(record.outcome) => {
                let had_intent = self.pending.remove(&step).is_some();
                if state.failed.as_ref().is_some_and(|failed| failed.step == step) {
                    state.failed = None;
                }
                if detail.sha256.is_some() {
                    state.export = Some(Exported {
                        step,
                        run,
                        interactions: detail.interactions,
                        attachments: detail.attachments,
                        bytes: detail.bytes,
                        sha256: text(detail.sha256.as_ref()),
                    });
                } else if had_intent && detail.count.is_some() {
                    state.context_services_deleted =
                        Some(StepFact { step, run, outcome, count: detail.count });
                } else if had_intent {
                    state.deleted = Some(StepFact { step, run, outcome, count: None });
                } else if state.deleted.is_some() {
                    state.verified_absent = true;
                }
            }
            _ => {}
        }
    }
}
