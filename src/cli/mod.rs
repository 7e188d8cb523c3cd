//! Command-line definitions, output formats and exit codes.
//!
//! This is the only module that prints. Each subcommand lives in its own file and returns an
//! [`Exit`]; errors are rendered here with miette.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod apply;
mod audit;
mod ci;
mod docs;
mod failure;
mod plan;
mod progress;
mod receipt;
mod render;
mod scripts;
mod sim;
mod status;
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
#[command(
    name = "ucs-gdpr",
    version,
    about,
    propagate_version = true,
    after_long_help = EXAMPLES_MAIN
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written to stderr (their level comes from `RUST_LOG`, default `warn`).
    #[arg(long, global = true, value_enum, default_value_t, help_heading = "Global options")]
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

/// Sends tracing events to stderr, above any progress bar (see [`progress::LogWriter`]).
/// Events carry ids, counts and codes, never personal data.
fn install_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(progress::LogWriter);
    // Only fails when a subscriber is already set (never in the binary).
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

// Examples shown by `--help` (not `-h`). Every one runs from the clone's root against the demo
// environment of examples/ucs-gdpr.yaml (`tests/cli.rs` runs the read-only ones).
const EXAMPLES_MAIN: &str = "\
Examples (from the clone's root; the demo UCS is built in):
  ucs-gdpr validate --env-file examples/ucs-gdpr.yaml examples/requests runbooks
  ucs-gdpr plan --env-file examples/ucs-gdpr.yaml examples/requests/1-access-request.yaml
  ucs-gdpr apply --env-file examples/ucs-gdpr.yaml examples/requests
  ucs-gdpr audit verify examples/out/audit.jsonl
  ucs-gdpr completions bash > ~/.local/share/bash-completion/completions/ucs-gdpr";

const EXAMPLES_COMPLETIONS: &str = "\
Examples:
  ucs-gdpr completions bash > ~/.local/share/bash-completion/completions/ucs-gdpr
  ucs-gdpr completions zsh > ~/.zfunc/_ucs-gdpr      # with fpath+=~/.zfunc before compinit
  ucs-gdpr completions fish > ~/.config/fish/completions/ucs-gdpr.fish";

const EXAMPLES_MAN: &str = "\
Examples:
  ucs-gdpr man | man -l -
  ucs-gdpr man --out /usr/local/share/man/man1      # ucs-gdpr.1, ucs-gdpr-plan.1, ...";

const EXAMPLES_VALIDATE: &str = "\
Examples:
  ucs-gdpr validate --env-file examples/ucs-gdpr.yaml examples/requests runbooks
  ucs-gdpr validate --format json --env-file examples/ucs-gdpr.yaml examples/requests
  ucs-gdpr validate --format github --env-file examples/ucs-gdpr.yaml examples/requests
  ucs-gdpr validate --format sarif . > ucs-gdpr.sarif     # for code scanning";

const EXAMPLES_SCHEMA: &str = "\
Examples:
  ucs-gdpr schema request > request.schema.json
  ucs-gdpr schema environments";

const EXAMPLES_PLAN: &str = "\
Examples:
  ucs-gdpr plan --env-file examples/ucs-gdpr.yaml examples/requests/2-forget-me-by-contact-id.yaml
  ucs-gdpr plan request.yaml --out plan.json --format markdown   # paste into the pull request
  ucs-gdpr plan request.yaml --count                             # the scripts' -count
  ucs-gdpr plan request.yaml --detailed-exitcode                 # 2 when there are changes";

const EXAMPLES_SHOW: &str = "\
Examples:
  ucs-gdpr show plan.json                      # what the plan does, as `plan` prints it
  ucs-gdpr show plan.json --format markdown    # for the pull request";

const EXAMPLES_APPROVE: &str = "\
Examples:
  ucs-gdpr approve plan.json --by dpo.alice
  ucs-gdpr approve plan.json --by dpo.alice --key alice.key --comment \"ticket 4711\"
  ucs-gdpr approve plan.json --by dpo.alice --key alice.key --expires 72h   # counts for 3 days";

const EXAMPLES_APPLY: &str = "\
Examples:
  ucs-gdpr apply --env-file examples/ucs-gdpr.yaml examples/requests   # where no approval is needed
  ucs-gdpr apply plan.json --approval plan.approval.dpo.alice.json
  ucs-gdpr apply plan.json --approval plan.approval.dpo.alice.json --shard 0/4   # shard 0 of 4";

const EXAMPLES_EXPORT: &str = "\
Examples:
  ucs-gdpr export 0001SaD2PVY4312K -count --env-file examples/ucs-gdpr.yaml --env demo
  ucs-gdpr export \"0001SaD2PVY4312K,0001SaD2PVY4315J\" --env-file examples/ucs-gdpr.yaml --env demo
  ucs-gdpr export '{\"TenantId\":101,\"EmailAddress\":\"jane.doe@company.com\"}' --env production";

const EXAMPLES_DELETE: &str = "\
Examples:
  ucs-gdpr delete 0001SaD2PVY4312K --env-file examples/ucs-gdpr.yaml --env demo   # report only
  ucs-gdpr delete 0001SaD2PVY4312K -confirm --env-file examples/ucs-gdpr.yaml --env demo";

const EXAMPLES_AUDIT: &str = "\
Examples:
  ucs-gdpr audit verify examples/out/audit.jsonl
  ucs-gdpr audit show examples/out/audit.jsonl --request DSR-2026-0142
  ucs-gdpr audit show examples/out/audit.jsonl --contact 0001SaD2PVY4312K --since 2026-11-01
  ucs-gdpr audit report examples/out/audit.jsonl DSR-2026-0142 --format markdown
  ucs-gdpr audit keygen --out keys";

const EXAMPLES_STATUS: &str = "\
Examples:
  ucs-gdpr status --env-file examples/ucs-gdpr.yaml               # examples/requests
  ucs-gdpr status --env-file examples/ucs-gdpr.yaml examples/requests --format markdown
  ucs-gdpr status requests/ --plans reviews/ --format json        # exit 1 when one is overdue";

const EXAMPLES_RECEIPT: &str = "\
Examples:
  ucs-gdpr receipt merge plan.json --env-file ucs-gdpr.yaml   # after every `apply plan.json --shard I/N`";

const EXAMPLES_SIM: &str = "\
Examples:
  ucs-gdpr sim serve --dataset examples/sim/demo.yaml     # prints its http://127.0.0.1:PORT
  ucs-gdpr sim generate --help";

#[derive(Debug, Subcommand)]
enum Command {
    /// Check request manifests, runbooks and environments files.
    #[command(after_long_help = EXAMPLES_VALIDATE)]
    Validate(validate::Args),
    /// Print the JSON Schema of a file kind.
    #[command(after_long_help = EXAMPLES_SCHEMA)]
    Schema(validate::SchemaArgs),
    /// Resolve a request against its environment, read-only, and print what would happen.
    #[command(after_long_help = EXAMPLES_PLAN)]
    Plan(plan::Args),
    /// Print a saved plan (text, markdown or its JSON).
    #[command(after_long_help = EXAMPLES_SHOW)]
    Show(apply::ShowArgs),
    /// Approve a plan: an approval bound to its plan id, optionally signed.
    #[command(after_long_help = EXAMPLES_APPROVE)]
    Approve(apply::ApproveArgs),
    /// Apply an approved plan (or plan and apply requests where no approval is needed).
    #[command(after_long_help = EXAMPLES_APPLY)]
    Apply(apply::ApplyArgs),
    /// Export contacts as Genesys's `exportUcsInteractions.sh` does (`TARGET [-count]`).
    #[command(after_long_help = EXAMPLES_EXPORT)]
    Export(scripts::ExportArgs),
    /// Delete contacts as Genesys's `deleteContact.sh` does (`TARGET [-confirm]`).
    #[command(after_long_help = EXAMPLES_DELETE)]
    Delete(scripts::DeleteArgs),
    /// The request register: every request manifest's state, deadline and days left.
    #[command(after_long_help = EXAMPLES_STATUS)]
    Status(status::Args),
    /// Verify, inspect and key the audit trail.
    #[command(subcommand, after_long_help = EXAMPLES_AUDIT)]
    Audit(audit::Command),
    /// Receipts of runs: merge a sharded run's parts into one.
    #[command(subcommand, after_long_help = EXAMPLES_RECEIPT)]
    Receipt(receipt::Command),
    /// Run or feed the built-in UCS simulator.
    #[command(subcommand, after_long_help = EXAMPLES_SIM)]
    Sim(sim::Command),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_long_help = EXAMPLES_COMPLETIONS)]
    Completions(docs::CompletionsArgs),
    /// Print the man page (roff), or write one per command with `--out DIR`.
    #[command(after_long_help = EXAMPLES_MAN)]
    Man(docs::ManArgs),
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
    // Every failure is rendered here, once, in one form (`error:`, details, `hint:`), with the
    // exit status it carries.
    let result: Result<Exit, failure::Failure> = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Schema(args) => validate::schema(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Show(args) => apply::show(&args),
        Command::Approve(args) => apply::approve(&args),
        Command::Apply(args) => apply::apply(&args),
        Command::Export(args) => Ok(scripts::export(&args)),
        Command::Delete(args) => Ok(scripts::delete(&args)),
        Command::Status(args) => status::run(&args),
        Command::Audit(command) => Ok(audit::run(&command)),
        Command::Receipt(command) => receipt::run(&command),
        Command::Sim(command) => sim::run(&command),
        Command::Completions(args) => docs::completions(&args),
        Command::Man(args) => docs::man(&args),
    };
    result.unwrap_or_else(|failure| failure.report()).into()
}
