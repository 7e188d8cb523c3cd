//! `ucs-gdpr status [DIR]`: the request register (the library's `register::build`, rendered).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::register::{self, Due, Register, RegisterInput};

use super::Exit;
use super::failure::Failure;
use super::validate::load_setting;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The folder of request manifests (default: `requests/` beside the environments file).
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The environments file (default: ./ucs-gdpr.yaml): where each environment's audit log
    /// and export bags are.
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// A folder of runbooks that add to or override the built-in ones (default: ./runbooks).
    #[arg(long, value_name = "DIR")]
    runbooks: Option<PathBuf>,
    /// Another folder where plans and approvals are kept (repeatable; searched with its
    /// subfolders).
    #[arg(long = "plans", value_name = "DIR")]
    plans: Vec<PathBuf>,
    /// How to print the register.
    #[arg(long, value_enum, default_value_t)]
    format: StatusFormat,
    /// Count the days from this date instead of today (UTC), for rehearsals and tests.
    #[arg(long, value_name = "DATE", hide = true)]
    today: Option<jiff::civil::Date>,
}

/// `status`'s output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum StatusFormat {
    /// For a terminal.
    #[default]
    Text,
    /// A table for a ticket, a wiki page or a pull request.
    Markdown,
    /// The register as one JSON document.
    Json,
}

pub(crate) fn run(args: &Args) -> Result<Exit, Failure> {
    let setting = load_setting(args.env_file.as_deref(), args.runbooks.as_deref());
    super::plan::print_reports(&setting.reports);
    if setting.reports.iter().any(crate::manifest::FileReport::has_errors) {
        return Err(Failure::reported());
    }
    let dir = args.dir.clone().unwrap_or_else(|| {
        let base = setting.environments.as_ref().map(|e| e.base_dir.clone()).unwrap_or_default();
        let requests = base.join("requests");
        if requests.is_dir() { requests } else { base.join(".") }
    });
    let today = args.today.unwrap_or_else(|| {
        jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date()
    });
    let input = RegisterInput {
        manifests_dir: &dir,
        environments: setting.environments.as_ref(),
        runbooks: &setting.runbooks,
        plan_dirs: args.plans.clone(),
        flat_dirs: vec![PathBuf::from(".")],
        today,
        nearly_due_days: register::NEARLY_DUE_DAYS,
    };
    let register = register::build(&input).map_err(|error| Failure::new(error.to_string()))?;
    match args.format {
        StatusFormat::Text => print!("{}", text(&register)),
        StatusFormat::Markdown => print!("{}", markdown(&register)),
        StatusFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&register).unwrap_or_default());
        }
    }
    if register.overdue > 0 {
        return Err(Failure::new(format!(
            "{} overdue (past the deadline and not complete)",
            if register.overdue == 1 {
                "1 request is".to_owned()
            } else {
                format!("{} requests are", register.overdue)
            }
        )));
    }
    Ok(Exit::Success)
}

const HEADER: [&str; 8] =
    ["request", "state", "runbook", "deadline", "days left", "due", "file", "notes"];

fn rows(register: &Register, folder: &Path) -> Vec<Vec<String>> {
    let dash = || "-".to_owned();
    register
        .requests
        .iter()
        .map(|entry| {
            let mut state = entry.state.as_str().to_owned();
            if let Some(required) = entry.approvals_required
                && entry.plan_id.is_some()
                && entry.state == register::State::Planned
            {
                let _ = write!(state, " ({}/{required} approvals)", entry.approvals);
            }
            let due = match entry.due {
                Due::Overdue => "OVERDUE".to_owned(),
                Due::NearlyDue => "NEARLY DUE".to_owned(),
                other => other.as_str().to_owned(),
            };
            let deadline = entry.deadline.clone().map_or_else(dash, |deadline| {
                if entry.deadline_explicit { deadline } else { format!("{deadline}*") }
            });
            let file = Path::new(&entry.file)
                .strip_prefix(folder)
                .map_or_else(|_| entry.file.clone(), |p| p.display().to_string());
            vec![
                entry.request_id.clone().unwrap_or_else(dash),
                state,
                entry.runbook.clone().unwrap_or_else(dash),
                deadline,
                entry.days_left.map_or_else(dash, |days| days.to_string()),
                due,
                file,
                if entry.notes.is_empty() { dash() } else { entry.notes.join("; ") },
            ]
        })
        .collect()
}

fn summary(register: &Register) -> String {
    let count = register.requests.len();
    format!(
        "{count} request{}: {} overdue, {} nearly due (deadline in {} days or fewer); * = one \
         month after receivedAt (GDPR Art. 12(3)), else the manifest's deadline",
        if count == 1 { "" } else { "s" },
        register.overdue,
        register.nearly_due,
        register.nearly_due_days
    )
}

fn text(register: &Register) -> String {
    let mut out = String::new();
    let folder = Path::new(&register.folder);
    let _ = writeln!(out, "requests in {} on {}", register.folder, register.today);
    let rows = rows(register, folder);
    let mut widths: Vec<usize> = HEADER.iter().map(|cell| cell.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let header: Vec<String> = HEADER.iter().map(|cell| (*cell).to_owned()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> =
            row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    let _ = writeln!(out, "{}", summary(register));
    out
}

fn markdown(register: &Register) -> String {
    let mut out = String::new();
    let folder = Path::new(&register.folder);
    let _ = writeln!(out, "## Requests in `{}` on {}\n", register.folder, register.today);
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADER.len()));
    for row in rows(register, folder) {
        let _ = writeln!(out, "| {} |", row.join(" | ").replace('*', "\\*"));
    }
    let _ = writeln!(out, "\n{}", summary(register).replace('*', "\\*"));
    out
}
