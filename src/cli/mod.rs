//! Command-line definitions, output formats and exit codes.
//!
//! This is the only module that prints. Each subcommand lives in its own file and returns an
//! [`Exit`]; errors are rendered here with miette.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod apply;
mod audit;
mod ci;
mod plan;
mod render;
mod scripts;
mod sim;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) use render::Format;

/// The process exit codes, documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for succeeded (warnings allowed).
    Success = 0,
    /// An input is invalid, a check failed, a verification failed, or an operation failed.
    Failure = 1,
    /// `--detailed-exitcode` only: the plan has changes to apply.
    Changes = 2,
    /// The command line itself is wrong (unknown flag, missing argument).
    Usage = 64,
    /// A bug or an environment problem the tool cannot attribute to its input.
    Internal = 70,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// GDPR requests against Genesys Universal Contact Server, as reviewable, auditable runbooks.
#[derive(Debug, Parser)]
#[command(name = "ucs-gdpr", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to stderr (their level comes from `RUST_LOG`, default `warn`).
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: LogFormat,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per event, for log collectors.
    Json,
}

/// Sends tracing events to stderr. Events carry ids, counts and codes, never personal data.
fn install_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // Only fails when a subscriber is already set (never in the binary).
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check request manifests, runbooks and environments files.
    Validate(validate::Args),
    /// Print the JSON Schema of a file kind.
    Schema(validate::SchemaArgs),
    /// Resolve a request against its environment, read-only, and print what would happen.
    Plan(plan::Args),
    /// Approve a plan: an approval bound to its plan id, optionally signed.
    Approve(apply::ApproveArgs),
    /// Apply an approved plan (or plan and apply requests where no approval is needed).
    Apply(apply::ApplyArgs),
    /// Export contacts as Genesys's `exportUcsInteractions.sh` does (`TARGET [-count]`).
    Export(scripts::ExportArgs),
    /// Delete contacts as Genesys's `deleteContact.sh` does (`TARGET [-confirm]`).
    Delete(scripts::DeleteArgs),
    /// Verify, inspect and key the audit trail.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Run or feed the built-in UCS simulator.
    #[command(subcommand)]
    Sim(sim::Command),
}

/// The exit status of a command whose reader went away (`ucs-gdpr ... | head`): 128 + SIGPIPE,
/// what a shell reports for `yes | head` and the other tools of a pipeline.
pub const BROKEN_PIPE_STATUS: i32 = 141;

/// A print to a closed stdout or stderr ends the process quietly with [`BROKEN_PIPE_STATUS`]
/// instead of a panic message and 101. Rust ignores SIGPIPE, so `println!` to a closed pipe
/// panics with std's "failed printing to stdout: Broken pipe"; that panic, and only it, is
/// turned into the exit every other tool of a pipeline has. Any other panic reaches the default
/// hook unchanged.
fn end_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std")
            && (message.contains("Broken pipe") || message.contains("os error 32"))
        {
            std::process::exit(BROKEN_PIPE_STATUS);
        }
        default(info);
    }));
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(scripts::script_spellings(std::env::args_os())) {
        Ok(cli) => cli,
        Err(error) => {
            let exit = if error.use_stderr() { Exit::Usage } else { Exit::Success };
            // Printing can only fail when the terminal is gone; there is nobody left to tell.
            let _ = error.print();
            return exit.into();
        }
    };
    end_quietly_on_broken_pipe();
    render::install_miette_hook();
    install_logging(cli.log_format);
    let exit = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Schema(args) => validate::schema(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Approve(args) => apply::approve(&args),
        Command::Apply(args) => apply::apply(&args),
        Command::Export(args) => scripts::export(&args),
        Command::Delete(args) => scripts::delete(&args),
        Command::Audit(command) => audit::run(&command),
        Command::Sim(command) => sim::run(&command),
    };
    exit.into()
}
