//! Runbooks: named DAGs of steps from a fixed catalogue, the built-in ones, and the rules that
//! make a runbook safe to follow (acyclic; a delete after the export and after every check).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::document::{self, Diagnostic, Document, FileKind, FileReport, value_span};

/// The steps the engine knows, as runbooks name them in `uses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
pub enum StepKind {
    /// Info Mart has extracted everything UCS holds for the contact.
    #[serde(rename = "infomart/etl-complete")]
    EtlComplete,
    /// GMS holds no pending callback for the contact.
    #[serde(rename = "gms/no-pending-callbacks")]
    NoPendingCallbacks,
    /// On-premise: the contact's interactions still in progress or in a workbin must be stopped
    /// in Interaction Server before the contact is erased (the seed's Step #2: "such
    /// interactions must be stopped. Agents must remove all interactions from workbins").
    ///
    /// The step does not stop them itself, and blocks with the list (id, media type, status,
    /// workbin) until an operator has. Why, from the documentation:
    /// - Stopping an interaction is a request to Interaction Server, which then notifies UCS
    ///   that processing is finished (Composer's Stop Interaction block,
    ///   docs.genesys.com/Documentation/Composer/latest/Help/StopInteractionBlock).
    /// - UCS's `StopInteraction` (docs.genesys.com/Documentation/UCS/latest/RESTAPI/
    ///   OMInteractionsStopInteraction) records a stop in UCS's database; the page says nothing
    ///   of Interaction Server, and it lists the queue and workbin fields (`Queue`,
    ///   `WorkbinAgentId`, `WorkbinPlaceId`, ...) among those it does not save, i.e. it does not
    ///   move an interaction out of a queue or workbin.
    /// - Nothing else documented for UCS removes an interaction from Interaction Server's queues
    ///   or workbins.
    ///
    /// Calling UCS alone could mark an interaction stopped in UCS while Interaction Server still
    /// routes it or keeps it in a workbin, so the step no longer claims to stop anything: the
    /// operator stops them in Interaction Server (the agent desktop, a Composer strategy's Stop
    /// Interaction block, or Interaction Server's administration), then plans again.
    #[serde(rename = "ucs/stop-in-progress")]
    StopInProgress,
    /// Cloud: any interaction still in progress blocks (wait for it).
    #[serde(rename = "ucs/require-no-in-progress")]
    RequireNoInProgress,
    /// Delete the contact's Context Services data: its services (with their states and tasks),
    /// the anonymous services keyed by its phone numbers, and its profile.
    #[serde(rename = "context-services/delete-profile")]
    DeleteProfile,
    /// Export the contact and its interactions.
    #[serde(rename = "ucs/export")]
    Export,
    /// Delete the contact and everything attached to it.
    #[serde(rename = "ucs/delete-contact")]
    DeleteContact,
    /// Confirm the contact is gone from main and archive.
    #[serde(rename = "ucs/verify-absent")]
    VerifyAbsent,
}

impl StepKind {
    /// Every step of the catalogue.
    pub const ALL: [StepKind; 8] = [
        Self::EtlComplete,
        Self::NoPendingCallbacks,
        Self::StopInProgress,
        Self::RequireNoInProgress,
        Self::DeleteProfile,
        Self::Export,
        Self::DeleteContact,
        Self::VerifyAbsent,
    ];

    /// The step a runbook names with `uses: NAME`.
    pub fn from_name(name: &str) -> Option<StepKind> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The name runbooks use.
    pub fn name(self) -> &'static str {
        match self {
            Self::EtlComplete => "infomart/etl-complete",
            Self::NoPendingCallbacks => "gms/no-pending-callbacks",
            Self::StopInProgress => "ucs/stop-in-progress",
            Self::RequireNoInProgress => "ucs/require-no-in-progress",
            Self::DeleteProfile => "context-services/delete-profile",
            Self::Export => "ucs/export",
            Self::DeleteContact => "ucs/delete-contact",
            Self::VerifyAbsent => "ucs/verify-absent",
        }
    }

    /// Whether the step only observes and decides (a failed check blocks what follows).
    pub fn is_check(self) -> bool {
        matches!(
            self,
            Self::EtlComplete
                | Self::NoPendingCallbacks
                | Self::StopInProgress
                | Self::RequireNoInProgress
        )
    }

    /// Whether the step deletes anything (a UCS contact, a Context Services profile or service,
    /// a callback): such a step must come after the export and after every step that
    /// [`precedes_delete`](Self::precedes_delete).
    pub fn deletes(self) -> bool {
        matches!(self, Self::DeleteProfile | Self::DeleteContact)
    }

    /// Whether the step must have run before anything is deleted: every check, the stopping of
    /// interactions and the export; not the deleting steps themselves nor the verification.
    pub fn precedes_delete(self) -> bool {
        !self.deletes() && self != Self::VerifyAbsent
    }

    /// Whether a runbook running `self` runs the check `needed`: the same step, or either of
    /// the two in-progress checks for the other (`ucs/stop-in-progress`, on premise, and
    /// `ucs/require-no-in-progress`, in the cloud, both block while any interaction is in
    /// progress or in a workbin; they differ only in what they tell the operator).
    pub fn covers(self, needed: StepKind) -> bool {
        let in_progress = |kind: StepKind| {
            matches!(kind, StepKind::StopInProgress | StepKind::RequireNoInProgress)
        };
        self == needed || (in_progress(self) && in_progress(needed))
    }

    /// The scopes the step can run at.
    pub fn scopes(self) -> &'static [Scope] {
        match self {
            Self::EtlComplete => &[Scope::Request, Scope::Contact],
            _ => &[Scope::Contact],
        }
    }
}

impl std::fmt::Display for StepKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// How often a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Once for the whole request.
    Request,
    /// Once per resolved contact.
    Contact,
}

impl Scope {
    /// As runbooks and plans write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Contact => "contact",
        }
    }
}

/// One step of a runbook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The step's id within the runbook.
    pub id: String,
    /// The catalogue step it runs.
    pub uses: StepKind,
    /// How often it runs.
    pub scope: Scope,
    /// The steps that must succeed first.
    #[serde(default)]
    pub after: Vec<String>,
}

/// A check of the built-in runbook a deleting runbook leaves out on purpose, with why. The plan
/// shows it as a blocker-level warning (`runbook::check-waived`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    /// The check waived.
    pub check: StepKind,
    /// Why (operator text, not personal data; at most [`WAIVER_REASON_MAX`] characters).
    pub reason: String,
}

/// The longest waiver reason a runbook may give (the schema holds it; plans cut to it).
pub const WAIVER_REASON_MAX: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunbookFile {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: RunbookMetadata,
    steps: Vec<Step>,
    #[serde(default)]
    waives: Vec<Waiver>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunbookMetadata {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

/// Where a runbook came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into the binary.
    BuiltIn,
    /// Read from a file.
    File(PathBuf),
}

/// A runbook: a named DAG of steps.
#[derive(Debug, Clone)]
pub struct Runbook {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its steps, in file order.
    pub steps: Vec<Step>,
    /// Where it came from.
    pub origin: Origin,
    /// sha256 of its file's bytes, so a plan can pin the exact runbook.
    pub sha256: String,
    /// For a file that has the name of a built-in runbook and other bytes: the sha256 of the
    /// built-in it replaces. Every plan that follows it names the file and warns
    /// (`runbook::overrides-built-in`).
    pub replaces_built_in: Option<String>,
    /// The built-in checks it leaves out on purpose, with the file's reasons.
    pub waives: Vec<Waiver>,
}

impl Runbook {
    /// Reads a runbook from a parsed document (schema first).
    pub fn from_document(
        document: &Document,
        report: &mut FileReport,
        origin: Option<Origin>,
    ) -> Option<Runbook> {
        let file: RunbookFile = document::typed(FileKind::Runbook, document, report)?;
        Some(Runbook {
            name: file.metadata.name,
            description: file.metadata.description,
            steps: file.steps,
            origin: origin.unwrap_or_else(|| Origin::File(report.path.clone())),
            sha256: sha256_hex(report.source.as_bytes()),
            replaces_built_in: None,
            waives: file.waives,
        })
    }

    /// Whether any step deletes anything (see [`StepKind::deletes`]).
    pub fn deletes(&self) -> bool {
        self.steps.iter().any(|s| s.uses.deletes())
    }

    /// Whether any step exports.
    pub fn exports(&self) -> bool {
        self.steps.iter().any(|s| s.uses == StepKind::Export)
    }

    /// The rules beyond the schema: unique ids, known `after`, no cycle, scopes, and a delete
    /// (transitively) after an export and after every other step that must precede it.
    pub fn check(&self, spans: &document::yaml::SpanMap) -> Vec<Diagnostic> {
        let document = Document { value: serde_json::Value::Null, spans: spans.clone() };
        let mut diagnostics = Vec::new();
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        for (index, step) in self.steps.iter().enumerate() {
            if let Some(first) = index_of.get(step.id.as_str()) {
                diagnostics.push(
                    Diagnostic::error(
                        "runbook::duplicate-step",
                        format!("two steps have the id `{}`", step.id),
                        value_span(&document, &format!("/steps/{index}/id")),
                    )
                    .label("second step with this id")
                    .related(value_span(&document, &format!("/steps/{first}/id")), "first one"),
                );
            } else {
                index_of.insert(&step.id, index);
            }
            if !step.uses.scopes().contains(&step.scope) {
                diagnostics.push(
                    Diagnostic::error(
                        "runbook::scope",
                        format!(
                            "`{}` runs once per contact; it cannot have `scope: request`",
                            step.uses.name()
                        ),
                        value_span(&document, &format!("/steps/{index}/scope")),
                    )
                    .label("use `scope: contact`"),
                );
            }
            for (position, after) in step.after.iter().enumerate() {
                if !self.steps.iter().any(|s| &s.id == after) {
                    let mut diagnostic = Diagnostic::error(
                        "runbook::unknown-after",
                        format!(
                            "step `{}` comes after `{after}`, which is not a step of this runbook",
                            step.id
                        ),
                        value_span(&document, &format!("/steps/{index}/after/{position}")),
                    )
                    .label("no such step");
                    if let Some(close) = document::diagnostic::did_you_mean(
                        after,
                        self.steps.iter().map(|s| s.id.as_str()),
                    ) {
                        diagnostic = diagnostic.help(format!("did you mean `{close}`?"));
                    }
                    diagnostics.push(diagnostic);
                }
            }
        }
        if let Some(cycle) = self.find_cycle() {
            let first =
                cycle.first().and_then(|id| index_of.get(id.as_str())).copied().unwrap_or(0);
            diagnostics.push(
                Diagnostic::error(
                    "runbook::cycle",
                    format!("the steps wait for each other in a cycle: {}", cycle.join(" -> ")),
                    value_span(&document, &format!("/steps/{first}/after")),
                )
                .label("part of the cycle")
                .help("remove one of these `after` entries so the steps can run in some order"),
            );
            return diagnostics;
        }
        let ancestors = self.ancestors();
        let exports: Vec<&Step> =
            self.steps.iter().filter(|s| s.uses == StepKind::Export).collect();
        for (index, step) in self.steps.iter().enumerate() {
            let before = ancestors.get(step.id.as_str());
            let is_before = |id: &str| before.is_some_and(|set| set.contains(id));
            if step.uses.deletes() {
                let what = match step.uses {
                    StepKind::DeleteProfile => {
                        format!("the step `{}` deletes Context Services data and", step.id)
                    }
                    _ => format!("the delete step `{}`", step.id),
                };
                if exports.is_empty() || !exports.iter().any(|e| is_before(&e.id)) {
                    diagnostics.push(
                        Diagnostic::error(
                            "runbook::delete-before-export",
                            format!("{what} does not come after an export step"),
                            value_span(&document, &format!("/steps/{index}")),
                        )
                        .label("this step deletes")
                        .help("every step that deletes must come after the export, so a failed export leaves nothing half-erased: add an `ucs/export` step and list it (directly or through another step) in this step's `after`; requests that want no export say so with `exportWaiver`"),
                    );
                }
                let missing: Vec<&str> = self
                    .steps
                    .iter()
                    .filter(|s| s.uses.precedes_delete() && s.uses != StepKind::Export)
                    .filter(|s| !is_before(&s.id))
                    .map(|s| s.id.as_str())
                    .collect();
                if !missing.is_empty() {
                    diagnostics.push(
                        Diagnostic::error(
                            "runbook::delete-before-check",
                            format!(
                                "{what} does not come after {}",
                                missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
                            ),
                            value_span(&document, &format!("/steps/{index}")),
                        )
                        .label("this step deletes")
                        .help("nothing may be deleted before every check has passed: add them to `after`"),
                    );
                }
            }
            if step.uses == StepKind::VerifyAbsent {
                let after_delete = self
                    .steps
                    .iter()
                    .any(|s| s.uses == StepKind::DeleteContact && is_before(&s.id));
                if !after_delete {
                    diagnostics.push(
                            Diagnostic::error(
                                "runbook::verify-before-delete",
                                format!("the step `{}` verifies absence but does not come after a delete step", step.id),
                                value_span(&document, &format!("/steps/{index}")),
                            )
                            .label("this verification"),
                        );
                }
            }
        }
        // The checks of the built-in for its scope, once the structure is sound (a runbook
        // with a structural error is reported for that first).
        if !diagnostics.iter().any(|d| d.severity == document::Severity::Error) {
            diagnostics.extend(self.check_required(&document));
        }
        diagnostics.extend(self.check_waivers(&document));
        diagnostics
    }

    /// The built-in runbook whose checks this one must run when it deletes: the built-in of
    /// the same name, else `forget-me-on-premise` (every deleting built-in runs the same
    /// checks: Info Mart's ETL, GMS's callbacks and an in-progress check).
    pub fn reference_built_in(&self) -> Option<&'static Runbook> {
        built_in_runbook(&self.name)
            .filter(|built_in| built_in.deletes())
            .or_else(|| built_in_runbook(REFERENCE_BUILT_IN))
    }

    /// The checks of [`reference_built_in`](Self::reference_built_in) this runbook neither
    /// runs nor waives (none when it deletes nothing).
    pub fn missing_checks(&self) -> Vec<StepKind> {
        let Some(reference) = self.reference_built_in().filter(|_| self.deletes()) else {
            return Vec::new();
        };
        let mut missing: Vec<StepKind> = Vec::new();
        for needed in reference.steps.iter().map(|s| s.uses).filter(|k| k.is_check()) {
            let run = self.steps.iter().any(|s| s.uses.covers(needed));
            let waived = self.waives.iter().any(|w| w.check.covers(needed));
            if !run && !waived && !missing.contains(&needed) {
                missing.push(needed);
            }
        }
        missing
    }

    /// The waivers that take effect: of a check the reference built-in runs and this deleting
    /// runbook does not.
    pub fn effective_waivers(&self) -> Vec<&Waiver> {
        let Some(reference) = self.reference_built_in().filter(|_| self.deletes()) else {
            return Vec::new();
        };
        self.waives
            .iter()
            .filter(|w| !self.steps.iter().any(|s| s.uses.covers(w.check)))
            .filter(|w| reference.steps.iter().any(|s| s.uses.covers(w.check)))
            .collect()
    }

    /// A deleting runbook runs every check of the built-in for its scope or waives it.
    fn check_required(&self, document: &Document) -> Vec<Diagnostic> {
        let missing = self.missing_checks();
        let (Some(reference), false) = (self.reference_built_in(), missing.is_empty()) else {
            return Vec::new();
        };
        let index = self.steps.iter().position(|s| s.uses.deletes()).unwrap_or(0);
        let names: Vec<String> = missing.iter().map(|k| format!("`{}`", k.name())).collect();
        let example = missing.first().map_or("gms/no-pending-callbacks", |k| k.name());
        vec![
            Diagnostic::error(
                "runbook::missing-check",
                format!(
                    "this runbook deletes without {}, which the built-in runbook `{}` runs before \
                     anything is deleted",
                    names.join(", "),
                    reference.name
                ),
                value_span(document, &format!("/steps/{index}/uses")),
            )
            .label("deletes without those checks")
            .help(format!(
                "add the missing check steps and list them in this step's `after`; or, if a check \
                 does not apply here, waive it in this file with the reason, which every plan then \
                 shows: `waives: [{{check: {example}, reason: \"...\"}}]`"
            )),
        ]
    }

    /// Waivers have a reason and waive something.
    fn check_waivers(&self, document: &Document) -> Vec<Diagnostic> {
        let mut diagnostics = Vec::new();
        let effective = self.effective_waivers();
        for (index, waiver) in self.waives.iter().enumerate() {
            if waiver.reason.trim().is_empty() {
                diagnostics.push(
                    Diagnostic::error(
                        "runbook::waiver-without-reason",
                        format!("the waiver of `{}` gives no reason", waiver.check.name()),
                        value_span(document, &format!("/waives/{index}/reason")),
                    )
                    .label("an empty reason")
                    .help("say why the check does not apply here: every plan shows it to the reviewer"),
                );
            }
            if !effective.iter().any(|w| std::ptr::eq(*w, waiver)) {
                let why = if !self.deletes() {
                    "this runbook deletes nothing, so no check needs waiving".to_owned()
                } else if self.steps.iter().any(|s| s.uses.covers(waiver.check)) {
                    format!("this runbook runs `{}`; the waiver has no effect", waiver.check.name())
                } else {
                    format!(
                        "the built-in runbook does not run `{}`; the waiver has no effect",
                        waiver.check.name()
                    )
                };
                diagnostics.push(
                    Diagnostic::warning(
                        "runbook::waiver-unused",
                        why,
                        value_span(document, &format!("/waives/{index}/check")),
                    )
                    .label("waives nothing")
                    .help("remove this waiver"),
                );
            }
        }
        diagnostics
    }

    /// A cycle of step ids (first repeated at the end), if the `after` edges have one.
    pub fn find_cycle(&self) -> Option<Vec<String>> {
        let edges: HashMap<&str, Vec<&str>> = self
            .steps
            .iter()
            .map(|s| (s.id.as_str(), s.after.iter().map(String::as_str).collect()))
            .collect();
        // 0 unvisited, 1 on the path, 2 done.
        let mut state: HashMap<&str, u8> = HashMap::new();
        let mut path: Vec<&str> = Vec::new();
        fn visit<'a>(
            node: &'a str,
            edges: &HashMap<&'a str, Vec<&'a str>>,
            state: &mut HashMap<&'a str, u8>,
            path: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            match state.get(node) {
                Some(2) => return None,
                Some(1) => {
                    let start = path.iter().position(|n| *n == node).unwrap_or(0);
                    let mut cycle: Vec<String> = path
                        .get(start..)
                        .unwrap_or_default()
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect();
                    cycle.push(node.to_owned());
                    return Some(cycle);
                }
                _ => {}
            }
            state.insert(node, 1);
            path.push(node);
            for next in edges.get(node).into_iter().flatten() {
                if edges.contains_key(next)
                    && let Some(cycle) = visit(next, edges, state, path)
                {
                    return Some(cycle);
                }
            }
            path.pop();
            state.insert(node, 2);
            None
        }
        for step in &self.steps {
            if let Some(cycle) = visit(&step.id, &edges, &mut state, &mut path) {
                return Some(cycle);
            }
        }
        None
    }

    /// For each step, every step it (transitively) comes after.
    pub fn ancestors(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let direct: HashMap<&str, &Vec<String>> =
            self.steps.iter().map(|s| (s.id.as_str(), &s.after)).collect();
        let mut result = BTreeMap::new();
        for step in &self.steps {
            let mut seen: BTreeSet<&str> = BTreeSet::new();
            let mut todo: Vec<&str> = step.after.iter().map(String::as_str).collect();
            while let Some(id) = todo.pop() {
                if seen.insert(id)
                    && let Some(next) = direct.get(id)
                {
                    todo.extend(next.iter().map(String::as_str));
                }
            }
            result.insert(step.id.as_str(), seen);
        }
        result
    }

    /// The steps in an order that respects `after` (file order among independent steps), or
    /// `None` when there is a cycle.
    pub fn order(&self) -> Option<Vec<&Step>> {
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut order = Vec::with_capacity(self.steps.len());
        while order.len() < self.steps.len() {
            let next = self.steps.iter().find(|s| {
                !done.contains(s.id.as_str()) && s.after.iter().all(|a| done.contains(a.as_str()))
            })?;
            done.insert(&next.id);
            order.push(next);
        }
        Some(order)
    }
}

/// The built-in whose checks a deleting runbook with a name of its own must run.
const REFERENCE_BUILT_IN: &str = "forget-me-on-premise";

/// The built-in runbooks, as shipped in `runbooks/`.
const BUILT_IN: [(&str, &str); 4] = [
    ("forget-me-on-premise", include_str!("../../runbooks/forget-me-on-premise.yaml")),
    ("forget-me-cloud", include_str!("../../runbooks/forget-me-cloud.yaml")),
    ("export-only", include_str!("../../runbooks/export-only.yaml")),
    ("batch-delete", include_str!("../../runbooks/batch-delete.yaml")),
];

/// The runbooks a request may name: the built-in ones, then files that add or override.
#[derive(Debug, Clone, Default)]
pub struct RunbookLibrary {
    runbooks: BTreeMap<String, Runbook>,
}

impl RunbookLibrary {
    /// The built-in runbooks.
    pub fn built_in() -> Self {
        let mut library = Self::default();
        for (name, text) in BUILT_IN {
            let path = PathBuf::from(format!("<built-in>/runbooks/{name}.yaml"));
            let mut report = FileReport::new(&path, std::sync::Arc::new(text.to_owned()));
            let runbook = document::yaml::load_str(text, &document::Limits::MANIFEST)
                .ok()
                .and_then(|doc| Runbook::from_document(&doc, &mut report, Some(Origin::BuiltIn)));
            // The built-ins are tested to load and pass every rule; one that does not is left
            // out rather than crashing a tool that may not even need it.
            if let Some(runbook) = runbook {
                library.runbooks.insert(runbook.name.clone(), runbook);
            }
        }
        library
    }

    /// Adds every runbook file in `dir`, overriding built-ins of the same name. Returns the
    /// reports of the files with findings: files with errors are not added; a file that
    /// replaces a built-in is added with a warning (`runbook::overrides-built-in`) on its name.
    /// A file with the very bytes of the built-in of its name (a copy of `runbooks/`) replaces
    /// nothing: the built-in stays, with no warning.
    pub fn add_dir(&mut self, dir: &Path) -> Vec<FileReport> {
        let files = match document::collect_files(&[dir.to_owned()]) {
            Ok(files) => files,
            Err((path, error)) => {
                let mut report = FileReport::new(&path, std::sync::Arc::new(String::new()));
                report.diagnostics.push(Diagnostic::error(
                    "io::read",
                    format!("cannot read the runbooks folder: {error}"),
                    0..0,
                ));
                return vec![report];
            }
        };
        let mut reports = Vec::new();
        for path in files {
            let document::Loaded { mut report, document } = document::load(&path);
            let runbook = document.as_ref().and_then(|document| {
                let mut runbook = Runbook::from_document(document, &mut report, None)?;
                report.diagnostics.extend(runbook.check(&document.spans));
                if let Some(built_in) = built_in_runbook(&runbook.name)
                    && built_in.sha256 != runbook.sha256
                {
                    runbook.replaces_built_in = Some(built_in.sha256.clone());
                    report.diagnostics.push(
                        Diagnostic::warning(
                            "runbook::overrides-built-in",
                            format!(
                                "this runbook replaces the built-in runbook `{}` for every request \
                                 that names it",
                                runbook.name
                            ),
                            value_span(document, "/metadata/name"),
                        )
                        .label("the name of a built-in runbook")
                        .help(
                            "every plan that follows it names this file and its sha256 and warns; \
                             to add a runbook beside the built-ins instead, give it a name of its own",
                        ),
                    );
                }
                Some(runbook)
            });
            report.sort();
            match runbook {
                Some(runbook) if !report.has_errors() => {
                    let same_as_built_in = runbook.origin != Origin::BuiltIn
                        && runbook.replaces_built_in.is_none()
                        && built_in_runbook(&runbook.name).is_some();
                    if !same_as_built_in {
                        self.runbooks.insert(runbook.name.clone(), runbook);
                    }
                    if !report.diagnostics.is_empty() {
                        reports.push(report);
                    }
                }
                _ => reports.push(report),
            }
        }
        reports
    }

    /// The runbook named `name`.
    pub fn get(&self, name: &str) -> Option<&Runbook> {
        self.runbooks.get(name)
    }

    /// Every runbook name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.runbooks.keys().map(String::as_str)
    }
}

/// The built-in runbook named `name`.
fn built_in_runbook(name: &str) -> Option<&'static Runbook> {
    static BUILT_INS: std::sync::LazyLock<RunbookLibrary> =
        std::sync::LazyLock::new(RunbookLibrary::built_in);
    BUILT_INS.get(name)
}

/// Lowercase hex sha256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_runbook_loads_and_passes_every_rule() {
        for (name, text) in BUILT_IN {
            let doc = document::yaml::load_str(text, &document::Limits::MANIFEST).unwrap();
            let mut report = FileReport::new(Path::new(name), std::sync::Arc::new(text.into()));
            let runbook = Runbook::from_document(&doc, &mut report, Some(Origin::BuiltIn))
                .unwrap_or_else(|| panic!("{name}: {:?}", report.diagnostics));
            assert_eq!(runbook.name, name);
            assert_eq!(runbook.check(&doc.spans), vec![], "{name}");
            assert!(runbook.order().is_some());
        }
        assert_eq!(RunbookLibrary::built_in().names().count(), 4);
    }

    fn check(text: &str) -> Vec<String> {
        let doc = document::yaml::load_str(text, &document::Limits::MANIFEST).unwrap();
        let mut report = FileReport::new(Path::new("t.yaml"), std::sync::Arc::new(text.into()));
        let runbook = Runbook::from_document(&doc, &mut report, Some(Origin::BuiltIn)).unwrap();
        runbook.check(&doc.spans).into_iter().map(|d| d.code.to_string()).collect()
    }

    #[test]
    fn every_step_that_deletes_comes_after_the_export_and_the_checks() {
        let head = "apiVersion: ucs-gdpr/v1\nkind: Runbook\nmetadata: { name: t }\nsteps:\n";
        let context_first = format!(
            "{head}  - {{ id: context, uses: context-services/delete-profile, scope: contact }}\n\
             \x20 - {{ id: export, uses: ucs/export, scope: contact, after: [context] }}\n"
        );
        assert_eq!(check(&context_first), ["runbook::delete-before-export"]);
        let context_before_check = format!(
            "{head}  - {{ id: callbacks, uses: gms/no-pending-callbacks, scope: contact }}\n\
             \x20 - {{ id: export, uses: ucs/export, scope: contact }}\n\
             \x20 - {{ id: context, uses: context-services/delete-profile, scope: contact, after: [export] }}\n"
        );
        assert_eq!(check(&context_before_check), ["runbook::delete-before-check"]);
        let fine = format!(
            "{head}  - {{ id: callbacks, uses: gms/no-pending-callbacks, scope: contact }}\n\
             \x20 - {{ id: etl, uses: infomart/etl-complete, scope: request }}\n\
             \x20 - {{ id: in-flight, uses: ucs/require-no-in-progress, scope: contact }}\n\
             \x20 - {{ id: export, uses: ucs/export, scope: contact, after: [callbacks, etl, in-flight] }}\n\
             \x20 - {{ id: context, uses: context-services/delete-profile, scope: contact, after: [export] }}\n"
        );
        assert_eq!(check(&fine), Vec::<String>::new());
        for kind in [StepKind::DeleteProfile, StepKind::DeleteContact] {
            assert!(kind.deletes() && !kind.precedes_delete(), "{kind:?}");
        }
    }

    #[test]
    fn a_deleting_runbook_runs_or_waives_every_check_of_the_built_in_for_its_scope() {
        let head = "apiVersion: ucs-gdpr/v1\nkind: Runbook\nmetadata: { name: mine }\n";
        let steps = "steps:\n\
             \x20 - { id: export, uses: ucs/export, scope: contact }\n\
             \x20 - { id: delete, uses: ucs/delete-contact, scope: contact, after: [export] }\n";
        assert_eq!(check(&format!("{head}{steps}")), ["runbook::missing-check"]);
        let waive = |checks: &[&str]| {
            let list: Vec<String> =
                checks.iter().map(|c| format!("  - {{ check: {c}, reason: r }}\n")).collect();
            format!("{head}waives:\n{}{steps}", list.concat())
        };
        let all = ["infomart/etl-complete", "gms/no-pending-callbacks", "ucs/stop-in-progress"];
        assert_eq!(check(&waive(&all)), Vec::<String>::new());
        // Either in-progress check stands for the other.
        let cloud =
            ["infomart/etl-complete", "gms/no-pending-callbacks", "ucs/require-no-in-progress"];
        assert_eq!(check(&waive(&cloud)), Vec::<String>::new());
        assert_eq!(check(&waive(&all[..2])), ["runbook::missing-check"]);
        // A waiver in a runbook that deletes nothing has no effect.
        let export_only = format!(
            "{head}waives:\n  - {{ check: gms/no-pending-callbacks, reason: r }}\n\
             steps:\n  - {{ id: export, uses: ucs/export, scope: contact }}\n"
        );
        assert_eq!(check(&export_only), ["runbook::waiver-unused"]);
        // The built-ins need no waiver, and a runbook with the checks none.
        let library = RunbookLibrary::built_in();
        for name in library.names() {
            let runbook = library.get(name).unwrap();
            assert_eq!(runbook.missing_checks(), vec![], "{name}");
            assert!(runbook.effective_waivers().is_empty(), "{name}");
        }
    }

    #[test]
    fn built_in_runbooks_delete_nothing_before_the_export() {
        let library = RunbookLibrary::built_in();
        for name in library.names() {
            let runbook = library.get(name).unwrap();
            let ancestors = runbook.ancestors();
            for step in runbook.steps.iter().filter(|s| s.uses.deletes()) {
                let before = &ancestors[step.id.as_str()];
                assert!(
                    runbook
                        .steps
                        .iter()
                        .any(|s| s.uses == StepKind::Export && before.contains(s.id.as_str())),
                    "{name}: {} deletes before the export",
                    step.id
                );
            }
        }
    }

    #[test]
    fn order_puts_every_step_after_its_dependencies() {
        let library = RunbookLibrary::built_in();
        let runbook = library.get("forget-me-on-premise").unwrap();
        let order: Vec<&str> = runbook.order().unwrap().iter().map(|s| s.id.as_str()).collect();
        let position = |id: &str| order.iter().position(|s| *s == id).unwrap();
        for step in &runbook.steps {
            for after in &step.after {
                assert!(position(after) < position(&step.id));
            }
        }
    }
}
