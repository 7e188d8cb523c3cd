//! `ucs-gdpr export` and `ucs-gdpr delete`: the Genesys scripts' interface
//! (`exportUcsInteractions.sh TARGET [-count]`, `deleteContact.sh TARGET [-confirm]`).
//!
//! Not a second code path: the TARGET becomes an in-memory request (`export-only`, or the
//! environment's forget runbook), checked by the request schema and rules, planned by
//! `plan::build` and run by `apply::run` with its checks, audit trail, bag and receipt. What is
//! different is the output: one timestamped line per event on stdout, in the spirit of the
//! scripts' log, and the seed-named files copied into the current folder (or `--out DIR`).

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use crate::environment::{Connection, EnvironmentType, Environments};
use crate::export::PayloadKind;
use crate::manifest::{
    self,
    target::{ACCEPTED_FORMS, Operation, ScriptRequest, Target},
};
use crate::plan::{ContactPlan, Plan, Resolution};
use crate::ucs::{ContactId, DataSource, Ucs as _};

use super::Exit;
use super::apply::{Run, actor, interrupt_flag, prepare_outputs, retry_hook};
use super::failure::Failure;
use super::plan::{Prepared, make_plan, runtime, setting_or_explain};

/// The runbook `delete` uses when the environment names none (`policy.forgetRunbook`).
const DEFAULT_FORGET_RUNBOOK: &str = "forget-me-on-premise";

#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// A contact id, a quoted comma-separated list of ids, or a quoted JSON identification
    /// request such as '{"TenantId":101,"EmailAddress":"name@example.com"}'.
    target: String,
    /// Only count the contacts and interactions that would be exported; write nothing (the
    /// script's `-count`).
    #[arg(long)]
    count: bool,
    /// Where `contact-<id>.json` and `interactions-for-contact-<id>.json` go (default: the
    /// current folder, as with the script).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
pub(crate) struct DeleteArgs {
    /// A contact id, a quoted comma-separated list of ids, or a quoted JSON identification
    /// request such as '{"TenantId":101,"EmailAddress":"name@example.com"}'.
    target: String,
    /// Export, then delete the contacts with all their interactions (the script's `-confirm`).
    /// Without it, only the contacts found and their attributes are reported, values masked.
    #[arg(long)]
    confirm: bool,
    /// Show attribute values unmasked (on a terminal only, never into a file or the log).
    #[arg(long)]
    show_values: bool,
    /// Where the exported files go before the delete (default: the current folder).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// The flags both commands share.
#[derive(Debug, clap::Args)]
struct Common {
    /// The environment (default: the only one in the environments file).
    #[arg(long, value_name = "NAME")]
    env: Option<String>,
    /// The environments file (default: ./ucs-gdpr.yaml).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// A folder of runbooks that add to or override the built-in ones (default: ./runbooks).
    #[arg(long, value_name = "DIR")]
    runbooks: Option<PathBuf>,
    /// Who verified the requester and runs this, for the request and the audit trail
    /// (default: $USER).
    #[arg(long, value_name = "NAME")]
    verified_by: Option<String>,
    /// How the request arrived: email, chat, voice, web or letter.
    #[arg(long, value_name = "CHANNEL", default_value = "email")]
    channel: String,
}

/// The scripts spell their flags with one dash (`-count`, `-confirm`), which clap reads as
/// clusters of short flags: for `export` and `delete` only, and before any `--`, they become
/// `--count` and `--confirm`.
pub(crate) fn script_spellings(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let args: Vec<OsString> = args.into_iter().collect();
    if !args.get(1).is_some_and(|command| command == "export" || command == "delete") {
        return args;
    }
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut rest = args.into_iter();
    out.extend(rest.by_ref().take(2));
    for arg in rest.by_ref() {
        if arg == "--" {
            out.push(arg);
            break;
        }
        if arg == "-count" || arg == "-confirm" {
            out.push(OsString::from(format!("-{}", arg.to_string_lossy())));
            continue;
        }
        // The seed document's own example glues the flag to the JSON
        // (`"{\"TenantId\":101,...}"-count`); no TARGET ends that way, so split it off.
        let glued = arg.to_str().and_then(|text| {
            ["-count", "-confirm"].into_iter().find_map(|flag| {
                text.strip_suffix(flag).filter(|json| json.ends_with('}')).map(|json| (json, flag))
            })
        });
        match glued {
            Some((json, flag)) => {
                out.push(OsString::from(json));
                out.push(OsString::from(format!("-{flag}")));
            }
            None => out.push(arg),
        }
    }
    out.extend(rest);
    out
}

pub(crate) fn export(args: &ExportArgs) -> Exit {
    let invocation = Invocation {
        operation: Operation::Export,
        target: &args.target,
        count: args.count,
        show_values: false,
        out: args.out.as_deref(),
        common: &args.common,
    };
    invocation.run()
}

pub(crate) fn delete(args: &DeleteArgs) -> Exit {
    let invocation = Invocation {
        operation: Operation::Delete { confirm: args.confirm },
        target: &args.target,
        count: false,
        show_values: args.show_values,
        out: args.out.as_deref(),
        common: &args.common,
    };
    invocation.run()
}

/// One line of the log: `<local time>: <event>`, as the scripts print it.
fn log(line: &str) {
    let now = jiff::ZonedDateTime::now();
    let stamp = jiff::fmt::strtime::format("%a %b %d %H:%M:%S %Z %Y", &now)
        .unwrap_or_else(|_| now.timestamp().to_string());
    // Above any progress bar (on a terminal the bar is on stderr, the lines on stdout).
    super::progress::suspended(|| println!("{stamp}: {line}"));
}

struct Invocation<'a> {
    operation: Operation,
    target: &'a str,
    count: bool,
    show_values: bool,
    out: Option<&'a Path>,
    common: &'a Common,
}

impl Invocation<'_> {
    /// Whether this run writes files (an export, or a confirmed delete, which exports first).
    fn writes(&self) -> bool {
        match self.operation {
            Operation::Export => !self.count,
            Operation::Delete { confirm } => confirm,
        }
    }

    fn run(&self) -> Exit {
        let target = match Target::parse(self.target) {
            Ok(target) => target,
            Err(error) => {
                return Failure::usage(format!("{error}\n\n{ACCEPTED_FORMS}")).report();
            }
        };
        if self.show_values && !std::io::stdout().is_terminal() {
            return Failure::usage(
                "--show-values prints attribute values to a terminal only, and the output is not \
                 a terminal (a file or a pipe would keep them); run it without redirecting",
            )
            .report();
        }
        let common = self.common;
        let (runbooks, environments) =
            match setting_or_explain(common.env_file.as_deref(), common.runbooks.as_deref()) {
                Ok(setting) => setting,
                Err(failure) => return failure.report(),
            };
        let Some(environment_name) = choose_environment(&environments, common.env.as_deref())
        else {
            return Exit::Failure;
        };
        let Some(environment) = environments.get(&environment_name) else {
            return Exit::Failure;
        };
        let runbook = match self.operation {
            Operation::Export => "export-only".to_owned(),
            Operation::Delete { .. } => environment
                .policy
                .forget_runbook
                .clone()
                .unwrap_or_else(|| DEFAULT_FORGET_RUNBOOK.to_owned()),
        };
        // Invariant: nothing unapproved runs where approval is required. An export deletes
        // nothing, so it runs; a confirmed delete goes through plan, approve and apply.
        if self.operation == (Operation::Delete { confirm: true })
            && environment.requires_approval()
        {
            eprintln!(
                "error: environment `{environment_name}` requires an approved plan before anything \
                 is deleted; nothing was done.\n\
                 hint: run `ucs-gdpr delete TARGET --env {environment_name}` without --confirm to \
                 see what would be deleted, then write a request manifest (runbook `{runbook}`, the \
                 contacts as subjects, `export: {{}}`, `delete: {{ confirm: true }}`) and run\n  \
                 ucs-gdpr plan REQUEST.yaml --out plan.json\n  \
                 ucs-gdpr approve plan.json --by NAME\n  \
                 ucs-gdpr apply plan.json --approval plan.approval.NAME.json"
            );
            return Exit::Failure;
        }
        let verified_by = actor(common.verified_by.as_deref());
        let out = absolute(self.out.unwrap_or_else(|| Path::new(".")));

        log(match (self.operation, self.count) {
            (Operation::Export, false) => "Starting interaction export",
            (Operation::Export, true) => {
                "Starting interaction count (simulation: nothing is written)"
            }
            (Operation::Delete { confirm: true }, _) => "Starting contact deletion",
            (Operation::Delete { confirm: false }, _) => {
                "Starting contact report (nothing is deleted without -confirm)"
            }
        });
        if self.writes() {
            log(&format!(
                "Export path is {}",
                self.out.unwrap_or_else(|| Path::new(".")).display()
            ));
            if out.is_dir() {
                log(&format!("Directory exists: {}", out.display()));
            } else if let Err(error) = std::fs::create_dir_all(&out) {
                return Failure::new(format!("cannot create `{}`: {error}", out.display()))
                    .report();
            } else {
                log(&format!("Directory created: {}", out.display()));
            }
        }

        let runtime = match runtime() {
            Ok(runtime) => runtime,
            Err(failure) => return failure.report(),
        };
        // A new invocation is a new request: it plans afresh, finding what this one finished.
        let stop = interrupt_flag(
            &runtime,
            "Run the same command again to finish: a new request that finds what this one did.",
        );
        let script = ScriptRequest {
            // The report without -confirm previews what -confirm would do, so its plan is
            // the confirmed one (planning is read-only; the report writes nothing).
            operation: match self.operation {
                Operation::Delete { .. } => Operation::Delete { confirm: true },
                Operation::Export => Operation::Export,
            },
            environment: &environment_name,
            runbook: &runbook,
            channel: &common.channel,
            verified_by: &verified_by,
            received_at: jiff::Timestamp::now(),
        };
        runtime.block_on(async {
            let (retries, hook) = retry_hook();
            if let (EnvironmentType::Rest, Some(ucs)) = (environment.kind, &environment.ucs) {
                log(&format!("Connecting to UCS at {}", host_port(&ucs.url)));
            }
            let connection = match environments.connect(&environment_name, Some(hook)).await {
                Ok(connection) => connection,
                Err(error) => {
                    return Failure::caused(
                        format!("cannot connect to `{environment_name}`"),
                        &error,
                    )
                    .report();
                }
            };
            if let Some(simulator) = &connection.simulator {
                log(&format!("Connecting to UCS at {} (embedded simulator)", simulator.address()));
            }
            let context = manifest::Context {
                runbooks: &runbooks,
                environments: Some(&environments),
                now: jiff::Timestamp::now(),
            };
            let built = match script.build(&target, &connection.digester, &context) {
                Ok(built) => built,
                Err(diagnostics) => {
                    for diagnostic in diagnostics {
                        eprintln!("error[{}]: {}", diagnostic.code, diagnostic.message);
                    }
                    let _ = shutdown(connection).await;
                    return Exit::Failure;
                }
            };
            let prepared = Prepared {
                request: built.request,
                manifest_path: built.manifest_path,
                manifest_sha256: built.manifest_sha256,
                environments: environments.clone(),
                runbooks: runbooks.clone(),
            };
            let exit = self.with_plan(&prepared, &out, &connection, retries, &stop).await;
            super::progress::summarise_retries(connection.client.retried());
            if shutdown(connection).await { exit } else { Exit::Internal }
        })
    }

    async fn with_plan(
        &self,
        prepared: &Prepared,
        out: &Path,
        connection: &Connection,
        retries: std::sync::Arc<std::sync::Mutex<Vec<crate::ucs::RetryEvent>>>,
        stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Exit {
        let spec = &prepared.request.spec;
        log(&format!(
            "Request {} (runbook {}, environment {})",
            prepared.request.metadata.id, spec.runbook, spec.environment
        ));
        let plan = match make_plan(prepared, connection).await {
            Ok(plan) => plan,
            Err(failure) => return failure.report(),
        };
        log_resolution(&plan);
        log_runbook_warnings(&plan);
        if self.count {
            for contact in &plan.body.contacts {
                log(&contact_counts(contact));
            }
            for line in crate::plan::render::count(&plan).lines() {
                log(&capitalised(line));
            }
            log_blockers(&plan);
            log("Done (simulation: nothing was written)");
            return if plan.is_blocked() { Exit::Failure } else { Exit::Success };
        }
        if self.operation == (Operation::Delete { confirm: false }) {
            return self.report(&plan, connection).await;
        }
        log_blockers(&plan);
        let Some(environment) = prepared.environments.get(&spec.environment) else {
            return Exit::Failure;
        };
        let outputs = match prepare_outputs(&prepared.environments, environment) {
            Ok(outputs) => outputs,
            Err(failure) => return failure.report(),
        };
        let shown = super::progress::RunProgress::new(log);
        let progress = |event: &crate::apply::Progress<'_>| shown.show(event);
        let run = Run {
            prepared,
            plan: crate::apply::PlanSource::Memory(plan.clone()),
            approvals: &[],
            without_deletion: self.operation == Operation::Export,
            concurrency: None,
            actor: actor(self.common.verified_by.as_deref()),
            stop,
            progress: &progress,
            shard: None,
        };
        let executed = run.execute(&outputs, connection, retries).await;
        shown.end();
        let receipt = match executed {
            Ok(receipt) => receipt,
            Err(error) => {
                Failure::from(&error).report();
                log(&format!(
                    "Nothing was exported or deleted; the audit log records the refusal: {}",
                    outputs.audit_log.display()
                ));
                return Exit::Failure;
            }
        };
        let bag = absolute(&outputs.bag(&plan));
        // The library keeps the plan (`plans/`) and the receipts in the bag.
        let mut failed = !receipt.succeeded();
        for contact in receipt.contacts.iter() {
            let contact = match contact {
                Ok(contact) => contact,
                Err(error) => {
                    Failure::new(format!("cannot read the run's receipt back: {error}")).report();
                    failed = true;
                    break;
                }
            };
            let planned =
                plan.body.contacts.iter().find(|c| c.contact_id.as_str() == contact.contact_id);
            let exported =
                contact.steps.iter().any(|s| s.uses == "ucs/export" && s.outcome == "ok");
            if exported && let Ok(id) = ContactId::new(&contact.contact_id) {
                for kind in [PayloadKind::Contact, PayloadKind::Interactions] {
                    let to = out.join(kind.file_name(&id));
                    log(&format!(
                        "Saving {} to {}",
                        if kind == PayloadKind::Contact { "contact info" } else { "interactions" },
                        to.display()
                    ));
                    if let Err(error) =
                        copy_durably(&bag.join(crate::export::Bag::relative_path(kind, &id)), &to)
                    {
                        Failure::new(format!("cannot write `{}`: {error}", to.display())).report();
                        failed = true;
                    }
                }
                if let Some(planned) = planned {
                    log_sources(planned);
                }
            }
            for step in &contact.steps {
                if let Some(line) = step_line(&contact.contact_id, step) {
                    log(&line);
                }
            }
            if let Some((step, code)) = &contact.failure {
                log(&format!("Contact Id '{}' FAILED at step {step}: {code}", contact.contact_id));
            }
        }
        log(&format!("Export package (BagIt) with receipt and plan: {}", bag.display()));
        log(&format!("Audit log: {}", absolute(&outputs.audit_log).display()));
        log(if failed { "Done, with failures" } else { "Done" });
        if failed { Exit::Failure } else { Exit::Success }
    }

    /// `delete` without `-confirm`: the contacts found and their attributes, values masked
    /// unless `--show-values` (checked to be a terminal). Nothing is written anywhere.
    async fn report(&self, plan: &Plan, connection: &Connection) -> Exit {
        let mut ids: Vec<ContactId> =
            plan.body.contacts.iter().map(|c| c.contact_id.clone()).collect();
        for subject in &plan.body.subjects {
            if let Resolution::Ambiguous { candidates } = &subject.outcome {
                ids.extend(candidates.iter().map(|c| c.contact_id.clone()));
            }
        }
        ids.sort();
        ids.dedup();
        for id in &ids {
            match connection.client.get_contact(id).await {
                Ok(contact) => {
                    log(&format!("Contact Id '{id}' (tenant {}) has attributes:", contact.tenant));
                    for (name, values) in &contact.attributes {
                        let shown: Vec<String> = values
                            .iter()
                            .map(|v| {
                                if self.show_values { v.clone() } else { manifest::target::mask(v) }
                            })
                            .collect();
                        log(&format!("  {name}: {}", shown.join(", ")));
                    }
                }
                Err(error) => log(&format!("Contact Id '{id}' could not be read: {error}")),
            }
            if let Some(planned) = plan.body.contacts.iter().find(|c| &c.contact_id == id) {
                log(&contact_counts(planned));
            }
        }
        log_blockers(plan);
        let s = &plan.body.summary;
        // What -confirm would do: the confirmed plan's counts, or nothing at all when it is
        // blocked (a blocker stops the whole request, as the Genesys procedure requires).
        log(&if plan.is_blocked() {
            "With -confirm: nothing would be exported or deleted, because the blockers above stop \
             the whole request"
                .to_owned()
        } else {
            format!(
                "With -confirm: {} contact(s) would be exported, then {} deleted with all their \
                 interactions",
                s.to_export, s.to_delete
            )
        });
        log("Done (nothing was deleted: add -confirm to delete)");
        Exit::Success
    }
}

/// `--env NAME`, or the only environment of the file.
fn choose_environment(environments: &Environments, flag: Option<&str>) -> Option<String> {
    let names: Vec<&str> = environments.names().collect();
    match flag {
        Some(name) if names.contains(&name) => Some(name.to_owned()),
        Some(name) => {
            Failure::new(format!(
                "there is no environment `{name}` in the environments file; it has: {}",
                names.join(", ")
            ))
            .report();
            None
        }
        None => match names.as_slice() {
            [only] => Some((*only).to_owned()),
            _ => {
                Failure::new(format!(
                    "the environments file has {} environments: pass --env NAME (one of: {})",
                    names.len(),
                    names.join(", ")
                ))
                .report();
                None
            }
        },
    }
}

/// Stops the embedded simulator; a request it saw that UCS as documented would refuse is a
/// bug of this tool, said on stderr (the command then fails).
async fn shutdown(connection: Connection) -> bool {
    match connection.close().await {
        Ok(()) => true,
        Err(error) => {
            Failure::internal(error.to_string()).report();
            false
        }
    }
}

/// `host:port` of a URL, for the log (never its credentials or path).
fn host_port(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => format!(
            "{}:{}",
            url.host_str().unwrap_or("?"),
            url.port_or_known_default().map_or_else(|| "?".to_owned(), |p| p.to_string())
        ),
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn capitalised(line: &str) -> String {
    let mut chars = line.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// How each subject resolved, as the scripts log "Retrieve contact" and "Found contact Id".
fn log_resolution(plan: &Plan) {
    for subject in &plan.body.subjects {
        match (&subject.contact_id, &subject.match_digest) {
            (Some(id), _) => log(&format!("Retrieve contact '{id}'")),
            (None, Some(digest)) => log(&format!(
                "Identify contacts (tenant {}, identification request {})",
                plan.body.environment.tenant,
                digest.get(..12).unwrap_or(digest)
            )),
            (None, None) => {}
        }
        match &subject.outcome {
            Resolution::Found { contacts } => {
                for id in contacts {
                    log(&format!("Found contact Id '{id}'"));
                }
            }
            Resolution::AlreadyAbsent => log(&format!(
                "Contact '{}' not found: nothing to do (already deleted, or never existed)",
                subject.contact_id.as_ref().map_or("?", ContactId::as_str)
            )),
            Resolution::NoMatch => log("No contact matches the identification request"),
            Resolution::Ambiguous { candidates } => {
                log(&format!(
                    "{} contacts match the identification request; name the ones to delete by id:",
                    candidates.len()
                ));
                for c in candidates {
                    let counts: Vec<String> =
                        c.interactions.iter().map(|(s, n)| format!("{n} in {s}")).collect();
                    log(&format!(
                        "  Found contact Id '{}' (interactions: {}; first {}, last {})",
                        c.contact_id,
                        counts.join(", "),
                        c.first_interaction.as_deref().unwrap_or("-"),
                        c.last_interaction.as_deref().unwrap_or("-")
                    ));
                }
            }
            Resolution::Unreadable { reason } => {
                log(&format!("Subject {} could not be read: {reason}", subject.index));
            }
        }
    }
}

/// The plan's warnings about the runbook itself (a local file replacing a built-in, a waived
/// check), before anything runs.
fn log_runbook_warnings(plan: &Plan) {
    for warning in plan.body.warnings.iter().filter(|w| w.code.starts_with("runbook::")) {
        log(&format!("WARNING: {}", warning.message));
    }
}

fn log_blockers(plan: &Plan) {
    for blocker in &plan.body.blockers {
        match (&blocker.contact_id, &blocker.step) {
            (Some(id), Some(step)) => {
                log(&format!("Blocked: contact Id '{id}', step {step}: {}", blocker.message));
            }
            (Some(id), None) => log(&format!("Blocked: contact Id '{id}': {}", blocker.message)),
            _ => log(&format!("Blocked: {}", blocker.message)),
        }
    }
}

/// A contact's data sources, `main` first as the scripts log them.
fn sources(contact: &ContactPlan) -> Vec<(&DataSource, &crate::plan::SourceCounts)> {
    // `DataSource` orders `main` before `archive`.
    contact.sources.iter().collect()
}

fn contact_counts(contact: &ContactPlan) -> String {
    let sources: Vec<String> = sources(contact)
        .into_iter()
        .map(|(source, counts)| {
            if counts.available {
                format!("{} interaction(s) in {source}", counts.interactions)
            } else {
                format!("no {source} data source")
            }
        })
        .collect();
    format!("Contact Id '{}': {}", contact.contact_id, sources.join(", "))
}

/// The scripts' per-source lines: exported from a data source, or none found and why.
fn log_sources(contact: &ContactPlan) {
    let id = &contact.contact_id;
    for (source, counts) in sources(contact) {
        if !counts.available {
            log(&format!("No interactions found for contact Id '{id}' in source {source}"));
            if let Some(reason) = &counts.reason {
                log(&format!("Reason: {reason}"));
            }
        } else if counts.interactions == 0 {
            log(&format!("No interactions found for contact Id '{id}' in source {source}"));
        } else {
            log(&format!(
                "Successfully exported all interactions for contactId {id} from DataSource {source}"
            ));
        }
    }
}

/// What a step did, as a log line (checks and skipped steps say nothing).
fn step_line(id: &str, step: &crate::apply::StepReceipt) -> Option<String> {
    let resumed = if step.resumed { " (done in an earlier run)" } else { "" };
    match (step.uses.as_str(), step.outcome.as_str()) {
        ("ucs/stop-in-progress", "ok") if step.count.unwrap_or(0) > 0 => Some(format!(
            "Stopped {} interaction(s) in progress for contact Id '{id}'{resumed}",
            step.count.unwrap_or(0)
        )),
        ("context-services/delete-profile", "ok") => {
            Some(format!("Deleted the Context Services profile of contact Id '{id}'{resumed}"))
        }
        ("ucs/delete-contact", "ok") => {
            Some(format!("Deleted contact Id '{id}' with all its interactions{resumed}"))
        }
        ("ucs/delete-contact", "already-absent") => {
            Some(format!("Contact Id '{id}' was already deleted{resumed}"))
        }
        ("ucs/delete-contact", "skipped") => Some(format!(
            "Contact Id '{id}' was not deleted ({})",
            step.reason.as_deref().unwrap_or("skipped")
        )),
        ("ucs/verify-absent", "ok") => {
            Some(format!("Verified contact Id '{id}' and its interactions are gone{resumed}"))
        }
        _ => None,
    }
}

/// Copies a verified bag file to the scripts' place: a temporary name, fsynced, renamed.
fn copy_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    let dir = crate::durable::parent_dir(to);
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.partial"));
    let copied = std::fs::copy(from, &temporary)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    if copied != std::fs::metadata(from)?.len() {
        let _ = std::fs::remove_file(&temporary);
        return Err(std::io::Error::other("the copy is shorter than the exported file"));
    }
    std::fs::rename(&temporary, to)?;
    crate::durable::sync_dir(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spell(args: &[&str]) -> Vec<String> {
        script_spellings(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_scripts_single_dash_flags_become_long_flags() {
        assert_eq!(spell(&["u", "export", "X", "-count"]), ["u", "export", "X", "--count"]);
        assert_eq!(spell(&["u", "delete", "X", "-confirm"]), ["u", "delete", "X", "--confirm"]);
        assert_eq!(spell(&["u", "export", "{}-count"]), ["u", "export", "{}", "--count"]);
        assert_eq!(spell(&["u", "export", "--", "-count"]), ["u", "export", "--", "-count"]);
        assert_eq!(spell(&["u", "plan", "-count"]), ["u", "plan", "-count"]);
    }
}
