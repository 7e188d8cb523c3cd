//! `ucs-gdpr validate` and `ucs-gdpr schema`.

use std::path::{Path, PathBuf};

use crate::environment::{self, Environments};
use crate::manifest::{self, Annotation, FileKind, FileReport, Severity};
use crate::runbook::RunbookLibrary;

use super::failure::Failure;
use super::{Exit, ci, render};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files or directories (walked for *.yaml and *.yml); the kind is read from `kind:`.
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,
    /// The environments file requests are checked against (default: ./ucs-gdpr.yaml if present).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// A folder of runbooks that add to or override the built-in ones (default: ./runbooks).
    #[arg(long, value_name = "DIR")]
    runbooks: Option<PathBuf>,
    /// How to print the findings (on stdout, except `text`'s, which go to stderr).
    #[arg(long, value_enum, default_value_t)]
    format: ValidateFormat,
}

/// `validate`'s output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
enum ValidateFormat {
    /// For a person: each finding with its source line (stderr), then a summary (stdout).
    #[default]
    Text,
    /// One array of `{file, line, column, endLine, endColumn, severity, code, message}`.
    Json,
    /// GitHub Actions workflow commands (`::error file=...::...`): annotations on the diff.
    Github,
    /// SARIF 2.1.0, for code scanning (`github/codeql-action/upload-sarif`, GitLab, Azure).
    Sarif,
    /// JUnit XML: a test case per file, failing with its errors.
    Junit,
}

#[derive(Debug, clap::Args)]
pub(crate) struct SchemaArgs {
    /// Which file kind.
    #[arg(value_enum)]
    kind: SchemaKind,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SchemaKind {
    Request,
    Runbook,
    Environments,
}

/// Everything a request is checked against, loaded once.
pub(crate) struct Setting {
    pub(crate) runbooks: RunbookLibrary,
    pub(crate) environments: Option<Environments>,
    /// Reports of the runbook and environments files that failed to load.
    pub(crate) reports: Vec<FileReport>,
}

/// Loads the runbook library and the environments file named by the flags or found by default.
pub(crate) fn load_setting(env_file: Option<&Path>, runbooks_dir: Option<&Path>) -> Setting {
    let mut runbooks = RunbookLibrary::built_in();
    let mut reports = Vec::new();
    let default_runbooks = Path::new("runbooks");
    match runbooks_dir {
        Some(dir) => reports.extend(runbooks.add_dir(dir)),
        None if default_runbooks.is_dir() => reports.extend(runbooks.add_dir(default_runbooks)),
        None => {}
    }
    let env_file = env_file.map(Path::to_owned).or_else(|| {
        let default = PathBuf::from(environment::DEFAULT_FILE);
        default.is_file().then_some(default)
    });
    let environments = env_file.and_then(|path| match Environments::load(&path) {
        Ok((environments, report)) => {
            if !report.diagnostics.is_empty() {
                reports.push(report);
            }
            Some(environments)
        }
        Err(report) => {
            reports.push(report);
            None
        }
    });
    Setting { runbooks, environments, reports }
}

pub(crate) fn run(args: &Args) -> Result<Exit, Failure> {
    let files = manifest::collect_files(&args.paths).map_err(|(path, error)| {
        Failure::new(format!("cannot read `{}`: {error}", path.display()))
    })?;
    let setting = load_setting(args.env_file.as_deref(), args.runbooks.as_deref());
    let context = manifest::Context {
        runbooks: &setting.runbooks,
        environments: setting.environments.as_ref(),
        now: jiff::Timestamp::now(),
    };
    let mut reports = setting.reports.clone();
    let mut kinds = Vec::new();
    for file in &files {
        // The environments file given as context is reported once, not twice.
        if reports.iter().any(|r| &r.path == file) {
            continue;
        }
        let validated = crate::validate::file(file, &context);
        kinds.push(validated.kind);
        reports.push(validated.report);
    }
    let failed = reports.iter().any(FileReport::has_errors);
    match args.format {
        ValidateFormat::Json => {
            let annotations: Vec<Annotation> =
                reports.iter().flat_map(FileReport::annotations).collect();
            println!("{}", encoded(&annotations)?);
        }
        ValidateFormat::Sarif => println!("{}", encoded(&ci::sarif(&reports))?),
        ValidateFormat::Github => print!("{}", ci::github(&reports)),
        ValidateFormat::Junit => print!("{}", ci::junit(&reports)),
        ValidateFormat::Text => print_text(&reports, files.len()),
    }
    // The reasons are in the report just printed.
    if failed { Err(Failure::reported()) } else { Ok(Exit::Success) }
}

/// `value` as pretty JSON.
fn encoded(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map_err(|error| Failure::internal(format!("cannot encode the diagnostics: {error}")))
}

fn print_text(reports: &[FileReport], checked: usize) {
    let mut errors = 0;
    let mut warnings = 0;
    for report in reports {
        for rendered in report.rendered() {
            eprint!("{}", render::diagnostic(&rendered));
        }
        for diagnostic in &report.diagnostics {
            match diagnostic.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
        }
    }
    let clean = reports.iter().filter(|r| r.diagnostics.is_empty()).count();
    println!(
        "{checked} file{} checked: {clean} clean, {errors} error{}, {warnings} warning{}",
        if checked == 1 { "" } else { "s" },
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
    );
}

pub(crate) fn schema(args: &SchemaArgs) -> Result<Exit, Failure> {
    let kind = match args.kind {
        SchemaKind::Request => FileKind::Request,
        SchemaKind::Runbook => FileKind::Runbook,
        SchemaKind::Environments => FileKind::Environments,
    };
    print!("{}", manifest::schema::text(kind));
    Ok(Exit::Success)
}
