//! `ucs-gdpr plan`: resolve, check and count, read-only, and write a reviewable plan.

use std::path::{Path, PathBuf};

use crate::environment::{Connection, Environments};
use crate::manifest::{self, FileReport};
use crate::plan::{self, Plan};
use crate::runbook::RunbookLibrary;

use super::failure::Failure;
use super::progress::{self, PlanProgress};
use super::validate::{Setting, load_setting};
use super::{Exit, render};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The request manifest.
    manifest: PathBuf,
    /// The environments file (default: ./ucs-gdpr.yaml).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// A folder of runbooks that add to or override the built-in ones (default: ./runbooks).
    #[arg(long, value_name = "DIR")]
    runbooks: Option<PathBuf>,
    /// Also write the plan (canonical JSON) to this file, for `approve` and `apply`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// How to print the plan.
    #[arg(long, value_enum, default_value_t)]
    format: PlanFormat,
    /// Only count what would be exported and deleted (the Genesys scripts' `-count`).
    #[arg(long)]
    count: bool,
    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error or blockers.
    #[arg(long)]
    detailed_exitcode: bool,
}

/// How a plan is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum PlanFormat {
    /// For a terminal.
    #[default]
    Text,
    /// A pull-request comment.
    Markdown,
    /// The plan itself.
    Json,
}

pub(crate) use crate::session::Prepared;

/// Validates a manifest for planning, printing its diagnostics; a failure when it cannot be
/// planned.
pub(crate) fn prepare(
    manifest_path: &Path,
    env_file: Option<&Path>,
    runbooks_dir: Option<&Path>,
) -> Result<Prepared, Failure> {
    let (runbooks, environments) = setting_or_explain(env_file, runbooks_dir)?;
    let context = manifest::Context {
        runbooks: &runbooks,
        environments: Some(&environments),
        now: jiff::Timestamp::now(),
    };
    let (report, request) = manifest::load_request(manifest_path, &context);
    print_reports(std::slice::from_ref(&report));
    let request = request.ok_or_else(Failure::reported)?;
    let manifest_sha256 = crate::canonical::sha256_hex(report.source.as_bytes());
    Ok(Prepared {
        request,
        manifest_path: manifest_path.display().to_string(),
        manifest_sha256,
        environments,
        runbooks,
    })
}

/// Loads the runbooks and the environments file, printing what is wrong with them; a failure
/// when there is no usable environments file (saying how to give one).
pub(crate) fn setting_or_explain(
    env_file: Option<&Path>,
    runbooks_dir: Option<&Path>,
) -> Result<(RunbookLibrary, Environments), Failure> {
    let Setting { runbooks, environments, reports } = load_setting(env_file, runbooks_dir);
    print_reports(&reports);
    // A runbook file that is not valid is not left out quietly: a request naming it would
    // otherwise run the built-in of that name, or fail as if it did not exist.
    if environments.is_some() && reports.iter().any(FileReport::has_errors) {
        return Err(Failure::new(
            "nothing is planned while a runbook file is not valid: fix it, or move it out of the \
             runbooks folder",
        ));
    }
    let Some(environments) = environments else {
        if reports.iter().all(|r| !r.has_errors()) {
            return Err(Failure::new(format!(
                "no environments file: pass --env-file FILE or create ./{}",
                crate::environment::DEFAULT_FILE
            )));
        }
        return Err(Failure::reported());
    };
    Ok((runbooks, environments))
}

pub(crate) fn print_reports(reports: &[FileReport]) {
    for report in reports {
        for rendered in report.rendered() {
            eprint!("{}", render::diagnostic(&rendered));
        }
    }
}

/// Builds the plan of a prepared request over a live connection, with its progress on a
/// terminal (subjects resolved, then contacts read).
pub(crate) async fn make_plan(
    prepared: &Prepared,
    connection: &Connection,
) -> Result<Plan, Failure> {
    let session = crate::session::Session::new(prepared, connection)
        .map_err(|error| Failure::new(error.to_string()))?;
    let shown = PlanProgress::new("plan");
    let progress = |step: plan::Progress| shown.show(step.phase, step.done, step.total);
    let input = session.plan_input(None);
    let plan = plan::build_with_progress(&input, &connection.client, &progress).await;
    shown.end();
    Ok(plan)
}

/// A runtime for the async stages.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::internal(format!("cannot start the async runtime: {error}")))
}

pub(crate) fn run(args: &Args) -> Result<Exit, Failure> {
    let prepared = prepare(&args.manifest, args.env_file.as_deref(), args.runbooks.as_deref())?;
    let runtime = runtime()?;
    // The plan is written as it is made (one contact at a time), to `--out` or to a scratch
    // file that is removed once printed.
    let (path, scratch) = match &args.out {
        Some(out) => (out.clone(), None),
        None => {
            let path =
                std::env::temp_dir().join(format!("ucs-gdpr-plan-{}.jsonl", std::process::id()));
            (path.clone(), Some(Scratch(path)))
        }
    };
    let cannot_write = |error: &dyn std::fmt::Display| {
        Failure::new(format!("cannot write the plan to `{}`: {error}", path.display()))
    };
    let plan = runtime.block_on(async {
        // Retries are counted for the bar and summarised; planning records nothing.
        let hook: crate::ucs::RetryHook = std::sync::Arc::new(progress::count_retry);
        let environment = &prepared.request.spec.environment;
        let connection =
            prepared.environments.connect(environment, Some(hook)).await.map_err(|error| {
                Failure::caused(format!("cannot connect to `{environment}`"), &error)
            })?;
        let session = crate::session::Session::new(&prepared, &connection)
            .map_err(|error| Failure::new(error.to_string()))?;
        let shown = PlanProgress::new("plan");
        let told = |step: plan::Progress| shown.show(step.phase, step.done, step.total);
        let input = session.plan_input(None);
        let plan = plan::build_to_file(&input, &connection.client, &told, &path).await;
        shown.end();
        progress::summarise_retries(connection.client.retried());
        connection.close().await.map_err(|error| Failure::new(error.to_string()))?;
        plan.map_err(|error| cannot_write(&error))
    })?;
    let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    print_plan(&plan, if args.count { None } else { Some(args.format) }, today)?;
    drop(scratch);
    let head = plan.head();
    Ok(if head.is_blocked() {
        Exit::Failure
    } else if args.detailed_exitcode && head.body.summary.changes {
        Exit::Changes
    } else {
        Exit::Success
    })
}

/// A file removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The contacts of a plan file, one at a time, for a renderer (the file was checked whole
/// before; a line that cannot be read now ends the list).
pub(crate) fn contacts_of(plan: &plan::PlanFile) -> impl Iterator<Item = plan::ContactPlan> {
    plan.contacts().into_iter().flatten().map_while(Result::ok).map(|(contact, _)| contact)
}

/// Prints a plan file as `format` (`None`: the `--count` figures), reading its contacts one at
/// a time.
pub(crate) fn print_plan(
    plan: &plan::PlanFile,
    format: Option<PlanFormat>,
    today: jiff::civil::Date,
) -> Result<(), Failure> {
    let head = plan.head();
    match format {
        None => print!("{}", plan::render::count_of(head, contacts_of(plan))),
        Some(PlanFormat::Text) => {
            print!("{}", plan::render::text_of(head, contacts_of(plan), today));
        }
        Some(PlanFormat::Markdown) => {
            print!("{}", plan::render::markdown_of(head, contacts_of(plan), today));
        }
        Some(PlanFormat::Json) => {
            use std::io::Write as _;
            let mut file = std::fs::File::open(plan.path()).map_err(|error| {
                Failure::new(format!("cannot read `{}`: {error}", plan.path().display()))
            })?;
            let mut stdout = std::io::stdout().lock();
            std::io::copy(&mut file, &mut stdout)
                .and_then(|_| stdout.flush())
                .map_err(|error| Failure::new(format!("cannot print the plan: {error}")))?;
        }
    }
    Ok(())
}

pub(crate) use super::failure::chain;
