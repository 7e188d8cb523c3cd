//! `ucs-gdpr plan`: resolve, check and count, read-only, and write a reviewable plan.

use std::path::{Path, PathBuf};

use crate::environment::{Connection, Environments};
use crate::manifest::{self, FileReport};
use crate::plan::{self, Plan};
use crate::runbook::RunbookLibrary;

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

/// Validates a manifest for planning, printing its diagnostics; `None` when it cannot be planned.
pub(crate) fn prepare(
    manifest_path: &Path,
    env_file: Option<&Path>,
    runbooks_dir: Option<&Path>,
) -> Option<Prepared> {
    let (runbooks, environments) = setting_or_explain(env_file, runbooks_dir)?;
    let context = manifest::Context {
        runbooks: &runbooks,
        environments: Some(&environments),
        now: jiff::Timestamp::now(),
    };
    let (report, request) = manifest::load_request(manifest_path, &context);
    print_reports(std::slice::from_ref(&report));
    let request = request?;
    let manifest_sha256 = crate::canonical::sha256_hex(report.source.as_bytes());
    Some(Prepared {
        request,
        manifest_path: manifest_path.display().to_string(),
        manifest_sha256,
        environments,
        runbooks,
    })
}

/// Loads the runbooks and the environments file, printing what is wrong with them; `None` when
/// there is no usable environments file (and says how to give one).
pub(crate) fn setting_or_explain(
    env_file: Option<&Path>,
    runbooks_dir: Option<&Path>,
) -> Option<(RunbookLibrary, Environments)> {
    let Setting { runbooks, environments, reports } = load_setting(env_file, runbooks_dir);
    print_reports(&reports);
    // A runbook file that is not valid is not left out quietly: a request naming it would
    // otherwise run the built-in of that name, or fail as if it did not exist.
    if environments.is_some() && reports.iter().any(FileReport::has_errors) {
        eprintln!(
            "error: nothing is planned while a runbook file is not valid: fix it, or move it out \
             of the runbooks folder"
        );
        return None;
    }
    let Some(environments) = environments else {
        if reports.iter().all(|r| !r.has_errors()) {
            eprintln!(
                "error: no environments file: pass --env-file FILE or create ./{}",
                crate::environment::DEFAULT_FILE
            );
        }
        return None;
    };
    Some((runbooks, environments))
}

pub(crate) fn print_reports(reports: &[FileReport]) {
    for report in reports {
        for rendered in report.rendered() {
            eprint!("{}", render::diagnostic(&rendered));
        }
    }
}

/// Builds the plan of a prepared request over a live connection.
pub(crate) async fn make_plan(prepared: &Prepared, connection: &Connection) -> Option<Plan> {
    match crate::session::Session::new(prepared, connection) {
        Ok(session) => Some(session.plan().await),
        Err(error) => {
            eprintln!("error: {error}");
            None
        }
    }
}

/// A runtime for the async stages.
pub(crate) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => Some(runtime),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            None
        }
    }
}

pub(crate) fn run(args: &Args) -> Exit {
    let Some(prepared) =
        prepare(&args.manifest, args.env_file.as_deref(), args.runbooks.as_deref())
    else {
        return Exit::Failure;
    };
    let Some(runtime) = runtime() else { return Exit::Internal };
    let plan = runtime.block_on(async {
        let connection =
            match prepared.environments.connect(&prepared.request.spec.environment, None).await {
                Ok(connection) => connection,
                Err(error) => {
                    eprintln!(
                        "error: cannot connect to `{}`: {}",
                        prepared.request.spec.environment,
                        chain(&error)
                    );
                    return None;
                }
            };
        let plan = make_plan(&prepared, &connection).await;
        if let Err(error) = connection.close().await {
            eprintln!("error: {error}");
            return None;
        }
        plan
    });
    let Some(plan) = plan else { return Exit::Failure };
    if let Some(out) = &args.out
        && let Err(error) = write_plan(&plan, out)
    {
        eprintln!("error: cannot write the plan to `{}`: {error}", out.display());
        return Exit::Failure;
    }
    let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    if args.count {
        print!("{}", plan::render::count(&plan));
    } else {
        match args.format {
            PlanFormat::Text => print!("{}", plan::render::text(&plan, today)),
            PlanFormat::Markdown => print!("{}", plan::render::markdown(&plan, today)),
            PlanFormat::Json => {
                println!("{}", String::from_utf8_lossy(&plan.to_canonical_json()));
            }
        }
    }
    if plan.is_blocked() {
        Exit::Failure
    } else if args.detailed_exitcode && plan.body.summary.changes {
        Exit::Changes
    } else {
        Exit::Success
    }
}

/// Writes a plan atomically.
pub(crate) fn write_plan(plan: &Plan, path: &Path) -> std::io::Result<()> {
    let mut bytes = plan.to_canonical_json();
    bytes.push(b'\n');
    crate::durable::write_atomically(path, &bytes)
}

/// An error and its causes on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
