//! The request register: every request manifest in a folder with its state and its deadline.
//!
//! [`build`] reads three things and nothing else: the manifests (their id, runbook,
//! environment, `receivedAt` and `deadline`), the plans and approvals saved as files (by `plan
//! --out`, `approve`, and into the export bags), and each environment's audit log. From them
//! each request gets a [`State`] and its days left until the deadline of GDPR Art. 12(3): the
//! manifest's `deadline`, or one month after `receivedAt` (the extension by two further months
//! is the manifest's `deadline`, up to three months, which `validate` checks).
//!
//! Where the files are looked for:
//! - plans and approvals: every `*.json` under the manifests folder (recursively), under each
//!   extra folder given ([`RegisterInput::plan_dirs`], recursively), directly in the folders
//!   of [`RegisterInput::flat_dirs`] (the CLI gives the current folder) and in the
//!   environments file's folder, and in each request's export bag
//!   (`<exports>/<request id>/`, recursively: `plan.json`, `plans/`, `approvals/`). A plan
//!   counts for a manifest when it names the request and the manifest's sha256 (a plan of an
//!   earlier version of the manifest does not: `apply` would refuse it). Of those, the
//!   current plan is the one the request's last run ran when a file of it is found (else the
//!   newest), named by a file outside an export bag before a bag's `plans/` copy. Approvals by
//!   the policy's approvers are counted, not verified (`apply` verifies them, with their keys).
//! - runs: the audit log of the manifest's environment (`policy.auditLog`), read once per log.
//!
//! The register holds ids, names of files, dates and counts: no personal data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::audit::RequestReport;
use crate::audit::report::{FinalState, RunOutcome};
use crate::environment::Environments;
use crate::manifest;
use crate::plan::Plan;
use crate::runbook::RunbookLibrary;

/// How many days before its deadline a request is flagged as nearly due.
pub const NEARLY_DUE_DAYS: i64 = 7;

/// What the register is built from.
#[derive(Debug)]
pub struct RegisterInput<'a> {
    /// The folder of request manifests (walked for `*.yaml`/`*.yml`; other kinds are skipped).
    pub manifests_dir: &'a Path,
    /// The environments file, when there is one.
    pub environments: Option<&'a Environments>,
    /// The runbooks requests may name.
    pub runbooks: &'a RunbookLibrary,
    /// More folders where plans and approvals are kept, searched with their subfolders.
    pub plan_dirs: Vec<PathBuf>,
    /// Folders searched for plans and approvals without their subfolders (the current
    /// folder, where `plan --out plan.json` writes).
    pub flat_dirs: Vec<PathBuf>,
    /// The day to count from (UTC).
    pub today: jiff::civil::Date,
    /// Requests due in this many days or fewer are flagged as nearly due.
    pub nearly_due_days: i64,
}

/// Why the register cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The manifests folder cannot be read.
    #[error("cannot read the manifests folder `{}`: {source}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Register {
    /// The manifests folder.
    pub folder: String,
    /// The day counted from.
    pub today: String,
    /// The nearly-due threshold in days.
    pub nearly_due_days: i64,
    /// One entry per request manifest, in file order.
    pub requests: Vec<Entry>,
    /// Requests past their deadline and not complete.
    pub overdue: usize,
    /// Requests due within the threshold and not complete.
    pub nearly_due: usize,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// No plan of this manifest, no run.
    NotPlanned,
    /// A plan of this manifest exists; it is not (yet) approved.
    Planned,
    /// A plan of this manifest has the approvals its environment requires.
    Approved,
    /// A run started, and not every contact is done (a failure, a stop, a crash).
    PartlyApplied,
    /// The last run completed for every contact.
    Complete,
    /// The current plan has blockers, the last run was refused as blocked, or the manifest
    /// does not validate.
    Blocked,
}

impl State {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotPlanned => "not planned",
            Self::Planned => "planned",
            Self::Approved => "approved",
            Self::PartlyApplied => "partly applied",
            Self::Complete => "complete",
            Self::Blocked => "blocked",
        }
    }
}

/// How a request stands against its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Due {
    /// Complete: the deadline no longer matters.
    Done,
    /// More days left than the threshold.
    OnTime,
    /// Due within the threshold.
    NearlyDue,
    /// Past its deadline.
    Overdue,
    /// No deadline could be read (the manifest does not validate).
    Unknown,
}

impl Due {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::OnTime => "on time",
            Self::NearlyDue => "nearly due",
            Self::Overdue => "overdue",
            Self::Unknown => "unknown",
        }
    }
}

/// One request manifest in the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The manifest file.
    pub file: String,
    /// The request id (`metadata.id`).
    pub request_id: Option<String>,
    /// Its runbook.
    pub runbook: Option<String>,
    /// Its environment.
    pub environment: Option<String>,
    /// When it was received (RFC 3339).
    pub received_at: Option<String>,
    /// When the answer is due.
    pub deadline: Option<String>,
    /// Whether the deadline is the manifest's own (`true`) or one month after receipt.
    pub deadline_explicit: bool,
    /// Days from today to the deadline (negative when overdue).
    pub days_left: Option<i64>,
    /// Against the deadline.
    pub due: Due,
    /// Where it stands.
    pub state: State,
    /// The current plan of this manifest, when one was found.
    pub plan_id: Option<String>,
    /// Its file.
    pub plan_file: Option<String>,
    /// Distinct approvers of the current plan found in approval files.
    pub approvals: usize,
    /// The approvals the environment requires (`None`: no approval required).
    pub approvals_required: Option<usize>,
    /// Runs of the request in the audit log (refusals included).
    pub runs: usize,
    /// Whether the audit log verifies (`None`: no log, or no record of the request).
    pub audit_log_verifies: Option<bool>,
    /// What else a person should know, in a few words.
    pub notes: Vec<String>,
}

/// A plan file found on disk.
struct FoundPlan {
    path: PathBuf,
    plan: Plan,
    modified: std::time::SystemTime,
}

/// Plans and approvals found on disk.
#[derive(Default)]
struct Found {
    plans: Vec<FoundPlan>,
    /// Approvers by plan id.
    approvals: BTreeMap<String, BTreeSet<String>>,
    seen: BTreeSet<PathBuf>,
}

impl Found {
    fn scan(&mut self, dir: &Path, recursive: bool) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let Ok(file_type) = entry.file_type() else { continue };
            if file_type.is_dir() {
                if recursive {
                    self.scan(&path, true);
                }
            } else if path.extension().is_some_and(|ext| ext == "json") {
                self.read(&path, &entry);
            }
        }
    }

    fn read(&mut self, path: &Path, entry: &std::fs::DirEntry) {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        if !self.seen.insert(key) {
            return;
        }
        let Ok(metadata) = entry.metadata() else { return };
        // A plan is read as a stream (its header, then each line checked against it): a plan of
        // many contacts is never held whole.
        if let Ok(plan) = crate::plan::PlanFile::open(path) {
            if plan.verify().is_ok() {
                let modified = metadata.modified().unwrap_or(std::time::UNIX_EPOCH);
                self.plans.push(FoundPlan {
                    path: path.to_owned(),
                    plan: plan.head().clone(),
                    modified,
                });
            }
            return;
        }
        // Approvals are small; anything large is not one (an export's data).
        if metadata.len() > 64 * 1024 * 1024 {
            return;
        }
        let Ok(bytes) = std::fs::read(path) else { return };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return };
        let kind = value.get("kind").and_then(serde_json::Value::as_str);
        if kind == Some("Approval") {
            let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
            if let (Some(plan), Some(by)) = (field("planId"), field("by")) {
                self.approvals.entry(plan.to_owned()).or_default().insert(by.to_owned());
            }
        }
    }
}

/// What one manifest says.
struct Manifest {
    id: String,
    runbook: String,
    environment: String,
    received_at: jiff::Timestamp,
    deadline: jiff::civil::Date,
    deadline_explicit: bool,
    sha256: String,
}

fn read_manifest(
    path: &Path,
    context: &manifest::Context<'_>,
) -> Option<Result<Manifest, Option<String>>> {
    // Only requests: runbooks, environments files and datasets in the folder are not entries.
    let loaded = manifest::load(path);
    let document = loaded.document.as_ref()?;
    let kind = document.value.get("kind").and_then(serde_json::Value::as_str);
    if kind != Some("Request") {
        return None;
    }
    let id = document
        .value
        .pointer("/metadata/id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let (report, request) = manifest::load_request(path, context);
    let Some(request) = request.filter(|_| !report.has_errors()) else {
        return Some(Err(id));
    };
    Some(Ok(Manifest {
        id: request.metadata.id.clone(),
        runbook: request.spec.runbook.clone(),
        environment: request.spec.environment.clone(),
        received_at: request.metadata.received_at,
        deadline: request.metadata.effective_deadline(),
        deadline_explicit: request.metadata.deadline.is_some(),
        sha256: crate::canonical::sha256_hex(report.source.as_bytes()),
    }))
}

/// Whether the plan file at `path` is the copy `apply` keeps in an export bag
/// (`<bag>/plans/plan-<id>.json`).
fn is_bag_copy(path: &Path) -> bool {
    path.parent().is_some_and(|plans| {
        plans.file_name().is_some_and(|n| n == crate::export::PLANS_DIR)
            && plans.parent().is_some_and(|bag| bag.join("bagit.txt").is_file())
    })
}

/// Builds the register of the manifests in `input.manifests_dir`.
///
/// # Errors
/// The manifests folder cannot be read.
pub fn build(input: &RegisterInput<'_>) -> Result<Register, RegisterError> {
    let folder = input.manifests_dir;
    let files = manifest::collect_files(&[folder.to_owned()])
        .map_err(|(path, source)| RegisterError::Folder { path, source })?;
    let context = manifest::Context {
        runbooks: input.runbooks,
        environments: input.environments,
        now: jiff::Timestamp::now(),
    };
    let manifests: Vec<(PathBuf, Result<Manifest, Option<String>>)> = files
        .iter()
        .filter_map(|path| read_manifest(path, &context).map(|read| (path.clone(), read)))
        .collect();

    let mut found = Found::default();
    found.scan(folder, true);
    for dir in &input.plan_dirs {
        found.scan(dir, true);
    }
    for dir in &input.flat_dirs {
        found.scan(dir, false);
    }
    if let Some(environments) = input.environments {
        found.scan(&environments.base_dir, false);
    }
    // The audit logs and bags of the environments the manifests name.
    let mut logs: BTreeMap<PathBuf, Option<Trail>> = BTreeMap::new();
    let mut requests_by_env: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, manifest) in &manifests {
        if let Ok(manifest) = manifest {
            requests_by_env
                .entry(manifest.environment.clone())
                .or_default()
                .push(manifest.id.clone());
        }
    }
    for (name, ids) in &requests_by_env {
        let Some((log, exports)) = outputs(input.environments, name) else { continue };
        for id in ids {
            found.scan(&exports.join(id), true);
        }
        logs.entry(log.clone()).or_insert_with(|| read_trail(&log));
    }

    let requests: Vec<Entry> = manifests
        .into_iter()
        .map(|(path, manifest)| {
            let file = path.display().to_string();
            match manifest {
                Ok(manifest) => {
                    let trail = outputs(input.environments, &manifest.environment)
                        .and_then(|(log, _)| logs.get(&log))
                        .and_then(Option::as_ref);
                    entry(input, &found, trail, file, &manifest)
                }
                Err(id) => invalid(file, id),
            }
        })
        .collect();
    let count = |due: Due| requests.iter().filter(|entry| entry.due == due).count();
    Ok(Register {
        folder: folder.display().to_string(),
        today: input.today.to_string(),
        nearly_due_days: input.nearly_due_days,
        overdue: count(Due::Overdue),
        nearly_due: count(Due::NearlyDue),
        requests,
    })
}

/// What an environment's audit trail says, per request: its log and the segments beside it
/// (a plan run in shards keeps each shard's records in a segment of its own,
/// `audit.plan-<id12>.shard-I-of-N.jsonl`).
struct Trail {
    reports: BTreeMap<String, RequestReport>,
    /// Per request, the shards of a sharded run whose last run did not complete (or that have
    /// no run at all), by label (`shard-1-of-4`).
    unfinished_shards: BTreeMap<String, BTreeSet<String>>,
}

/// Reads the log at `log` and its segments; `None` when there is neither, or the log cannot
/// be read. A segment that cannot be read counts as a shard that has not finished.
fn read_trail(log: &Path) -> Option<Trail> {
    let mut reports =
        if log.is_file() { crate::audit::request_reports(log).ok()? } else { BTreeMap::new() };
    let segments = crate::audit::segments::find_segments(log).unwrap_or_default();
    if !log.is_file() && segments.is_empty() {
        return None;
    }
    let base = log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut unfinished_shards: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for paths in segments.values() {
        // The shards of one plan: which requests they ran, and which shards finished each.
        let mut count = 0;
        let mut finished: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        for path in paths {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let Some(shard) = name.and_then(|name| crate::shard::segment_of(&base, &name)) else {
                continue;
            };
            count = count.max(shard.count());
            let Ok(segment) = crate::audit::request_reports(path) else { continue };
            for (id, report) in segment {
                let last = report.runs.iter().rfind(|run| run.outcome != RunOutcome::Refused);
                let done = finished.entry(id.clone()).or_default();
                if last.is_some_and(|run| run.outcome == RunOutcome::Completed) {
                    done.insert(shard.index());
                }
                match reports.get_mut(&id) {
                    Some(into) => merge_report(into, report),
                    None => {
                        reports.insert(id, report);
                    }
                }
            }
        }
        for (id, done) in finished {
            let missing = (0..count).filter(|index| !done.contains(index));
            let labels = missing.map(|index| format!("shard-{index}-of-{count}"));
            unfinished_shards.entry(id).or_default().extend(labels);
        }
    }
    unfinished_shards.retain(|_, labels| !labels.is_empty());
    Some(Trail { reports, unfinished_shards })
}

/// Adds a segment's report of a request to the report so far: its runs after the others, a
/// contact it acted on replacing the same contact's earlier state.
fn merge_report(into: &mut RequestReport, from: RequestReport) {
    into.log_verifies &= from.log_verifies;
    into.faults.extend(from.faults);
    into.records += from.records;
    into.runs.extend(from.runs);
    into.approvals.extend(from.approvals);
    into.refusals.extend(from.refusals);
    for contact in from.contacts {
        match into.contacts.iter_mut().find(|c| c.contact == contact.contact) {
            Some(slot) => *slot = contact,
            None => into.contacts.push(contact),
        }
    }
}

/// The audit log and exports folder of environment `name`, as `apply` resolves them.
fn outputs(environments: Option<&Environments>, name: &str) -> Option<(PathBuf, PathBuf)> {
    let environments = environments?;
    let policy = &environments.environments.get(name)?.policy;
    let base = &environments.base_dir;
    let log =
        policy.audit_log.clone().unwrap_or_else(|| crate::apply::gate::DEFAULT_AUDIT_LOG.into());
    let exports =
        policy.exports.clone().unwrap_or_else(|| crate::apply::gate::DEFAULT_EXPORTS.into());
    Some((base.join(log), base.join(exports)))
}

fn invalid(file: String, id: Option<String>) -> Entry {
    Entry {
        notes: vec![format!("the manifest does not validate: run `ucs-gdpr validate {file}`")],
        file,
        request_id: id,
        runbook: None,
        environment: None,
        received_at: None,
        deadline: None,
        deadline_explicit: false,
        days_left: None,
        due: Due::Unknown,
        state: State::Blocked,
        plan_id: None,
        plan_file: None,
        approvals: 0,
        approvals_required: None,
        runs: 0,
        audit_log_verifies: None,
    }
}

fn entry(
    input: &RegisterInput<'_>,
    found: &Found,
    trail: Option<&Trail>,
    file: String,
    manifest: &Manifest,
) -> Entry {
    let mut notes = Vec::new();
    let environment = input.environments.and_then(|e| e.environments.get(&manifest.environment));
    if input.environments.is_some() && environment.is_none() {
        notes.push(format!(
            "environment `{}` is not in the environments file",
            manifest.environment
        ));
    }
    let approvals_required = environment
        .filter(|e| e.requires_approval())
        .map(|e| usize::try_from(e.policy.min_approvals.unwrap_or(1)).unwrap_or(usize::MAX));
    let report = trail.and_then(|trail| trail.reports.get(&manifest.id));
    // The current plan: of this request and this version of the manifest, the one the
    // request's last run ran (when a file of it is found), else the newest; of its files, one
    // outside an export bag before the copy `apply` keeps in a bag's `plans/` (every shard's
    // bag part holds one, written when it ran: newer than the plan), then the newest.
    let of_request: Vec<&FoundPlan> =
        found.plans.iter().filter(|p| p.plan.body.request.id == manifest.id).collect();
    let of_manifest: Vec<&FoundPlan> = of_request
        .iter()
        .filter(|p| p.plan.body.request.manifest_sha256 == manifest.sha256)
        .copied()
        .collect();
    let ran = report.and_then(|r| {
        let planned = |run: &&crate::audit::report::Run| run.plan_id.is_some();
        let started = r.runs.iter().rev().filter(|run| run.outcome != RunOutcome::Refused);
        started.clone().find(planned).or_else(|| r.runs.iter().rev().find(planned))
    });
    let ran = ran.and_then(|run| run.plan_id.as_deref());
    let newest = of_manifest.iter().max_by_key(|p| (!is_bag_copy(&p.path), p.modified)).copied();
    let plan_id = of_manifest
        .iter()
        .find(|p| Some(p.plan.plan_id.as_str()) == ran)
        .or(newest.as_ref())
        .map(|p| p.plan.plan_id.as_str());
    let current = of_manifest
        .iter()
        .filter(|p| Some(p.plan.plan_id.as_str()) == plan_id)
        .max_by_key(|p| (!is_bag_copy(&p.path), p.modified))
        .copied();
    if current.is_none() && !of_request.is_empty() {
        notes.push("a plan of an earlier version of the manifest was found: plan again".to_owned());
    }
    if let (Some(current), Some(newest)) = (current, newest)
        && newest.plan.plan_id != current.plan.plan_id
    {
        notes.push(format!(
            "a newer plan ({}) was found, not yet run",
            newest.plan.plan_id.get(..12).unwrap_or_default()
        ));
    }
    // Approvals by someone the policy does not list never count (`apply` refuses them).
    let approvals = current.and_then(|p| found.approvals.get(&p.plan.plan_id)).map_or(0, |by| {
        by.iter().filter(|by| environment.is_none_or(|e| e.policy.approvers.contains(*by))).count()
    });
    let unfinished_shards = trail.and_then(|trail| trail.unfinished_shards.get(&manifest.id));
    let started: Vec<&crate::audit::report::Run> = report
        .map(|r| r.runs.iter().filter(|run| run.outcome != RunOutcome::Refused).collect())
        .unwrap_or_default();
    let unfinished_contacts = report.map_or(0, |r| {
        r.contacts
            .iter()
            .filter(|c| matches!(c.state, FinalState::Failed | FinalState::Interrupted))
            .count()
    });
    let last_refusal = report
        .and_then(|r| r.runs.last())
        .filter(|run| run.outcome == RunOutcome::Refused)
        .map(|run| run.reason.clone().unwrap_or_else(|| "no reason recorded".to_owned()));
    if let Some(reason) = &last_refusal {
        notes.push(format!("the last run was refused: {reason}"));
    }
    let plan_blocked = current.is_some_and(|p| p.plan.is_blocked());
    if let Some(plan) = current.filter(|p| p.plan.is_blocked()) {
        notes.push(format!("the plan has {} blocker(s)", plan.plan.body.blockers.len()));
    }
    if let Some(shards) = unfinished_shards {
        let shards: Vec<&str> = shards.iter().map(String::as_str).collect();
        notes.push(format!(
            "{} of the plan's shards did not finish ({}): run each with `apply PLAN --shard I/N`",
            shards.len(),
            shards.join(", ")
        ));
    }
    let complete = unfinished_shards.is_none()
        && started
            .last()
            .is_some_and(|run| run.outcome == RunOutcome::Completed && unfinished_contacts == 0);
    let state = if complete {
        State::Complete
    } else if plan_blocked || last_refusal.as_deref() == Some("blocked") {
        State::Blocked
    } else if !started.is_empty() {
        if unfinished_contacts > 0 {
            notes.push(format!("{unfinished_contacts} contact(s) failed or interrupted: apply the plan again to resume"));
        }
        State::PartlyApplied
    } else if current.is_some() && approvals_required.is_some_and(|required| approvals >= required)
    {
        State::Approved
    } else if current.is_some() {
        if approvals_required.is_none() && environment.is_some() {
            notes.push("no approval required".to_owned());
        }
        State::Planned
    } else {
        State::NotPlanned
    };
    let audit_log_verifies = report.map(|r| r.log_verifies);
    if audit_log_verifies == Some(false) {
        notes.push("the audit log does not verify: run `ucs-gdpr audit verify`".to_owned());
    }
    let days_left =
        input.today.until(manifest.deadline).ok().map(|span| i64::from(span.get_days()));
    let due = match days_left {
        _ if state == State::Complete => Due::Done,
        Some(days) if days < 0 => Due::Overdue,
        Some(days) if days <= input.nearly_due_days => Due::NearlyDue,
        Some(_) => Due::OnTime,
        None => Due::Unknown,
    };
    Entry {
        file,
        request_id: Some(manifest.id.clone()),
        runbook: Some(manifest.runbook.clone()),
        environment: Some(manifest.environment.clone()),
        received_at: Some(manifest.received_at.to_string()),
        deadline: Some(manifest.deadline.to_string()),
        deadline_explicit: manifest.deadline_explicit,
        days_left,
        due,
        state,
        plan_id: current.map(|p| p.plan.plan_id.clone()),
        plan_file: current.map(|p| p.path.display().to_string()),
        approvals,
        approvals_required,
        runs: report.map_or(0, |r| r.runs.len()),
        audit_log_verifies,
        notes,
    }
}
