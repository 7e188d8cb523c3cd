//! `ucs-gdpr audit`: verify, show, keygen.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Exit, Format};
use crate::audit::{
    self, AuditError, AuditRecord, Checkpoint, FaultKind, VerifyOptions, VerifyReport,
};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Check every record, link, sequence number and the checkpoint's signature.
    Verify(VerifyArgs),
    /// Show the timeline of a request (or of the whole log).
    Show(ShowArgs),
    /// Make a key pair for signing checkpoints.
    Keygen(KeygenArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The audit log (JSON Lines).
    log: PathBuf,
    /// A checkpoint kept elsewhere: reveals records removed from the end of the log.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The public key the checkpoint must be signed with (`audit-signing.pub`).
    #[arg(long, requires = "checkpoint")]
    public_key: Option<PathBuf>,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// The audit log (JSON Lines).
    log: PathBuf,
    /// Only the records of this request.
    #[arg(long)]
    request: Option<String>,
    /// How to print the timeline.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {
    /// The directory to write `audit-signing.key` (secret, mode 0600) and `audit-signing.pub`.
    #[arg(long)]
    out: PathBuf,
}

pub(crate) fn run(command: &Command) -> Exit {
    let result = match command {
        Command::Verify(args) => verify(args),
        Command::Show(args) => show(args),
        Command::Keygen(args) => keygen(args),
    };
    result.unwrap_or_else(|error| {
        eprintln!("error: {error}");
        Exit::Failure
    })
}

fn verify(args: &VerifyArgs) -> Result<Exit, AuditError> {
    let checkpoint = args.checkpoint.as_deref().map(Checkpoint::read).transpose()?;
    let public_key = args.public_key.as_deref().map(audit::load_verifying_key).transpose()?;
    let report = audit::verify_file(&args.log, &VerifyOptions { checkpoint, public_key })?;
    match args.format {
        Format::Text => print!("{}", verify_text(&args.log, &report)),
        Format::Json => {
            let mut document = serde_json::to_value(&report).unwrap_or_default();
            if let Value::Object(map) = &mut document {
                map.insert("log".to_owned(), json!(args.log.display().to_string()));
            }
            println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
        }
    }
    Ok(if report.ok { Exit::Success } else { Exit::Failure })
}

fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// What a person reads: the verdict first, then each fault by line, then what is not a
/// fault but worth knowing.
fn verify_text(log: &Path, report: &VerifyReport) -> String {
    let mut out = String::new();
    let log = log.display();
    if report.ok {
        let _ = writeln!(
            out,
            "{log}: OK: {}, {}, {}; every hash, link and sequence number checks out",
            plural(report.records, "record", "records"),
            plural(report.runs, "run", "runs"),
            plural(report.requests, "request", "requests"),
        );
    } else {
        let _ = writeln!(
            out,
            "{log}: FAILED: {} in {}",
            plural(u64::try_from(report.faults.len()).unwrap_or(u64::MAX), "fault", "faults"),
            plural(report.lines, "line", "lines"),
        );
    }
    for fault in &report.faults {
        let place =
            fault.line.map_or_else(|| "checkpoint".to_owned(), |line| format!("line {line}"));
        let _ = writeln!(out, "{place}: {}: {}", fault.kind.as_str(), fault.message);
    }
    for intent in &report.interrupted {
        let mut what = Vec::new();
        if let Some(request) = &intent.request_id {
            what.push(format!("request {request}"));
        }
        if let Some(step) = &intent.step {
            what.push(format!("step {step}"));
        }
        if let Some(contact) = &intent.contact {
            what.push(format!("contact {contact}"));
        }
        let why = if report.ok {
            "the run stopped there (not tampering: re-run apply to complete it)"
        } else {
            "a run stopped there, or its outcome is among the faults above"
        };
        let _ = writeln!(
            out,
            "interrupted: line {} (seq {}): step.intent{} has no outcome; {why}",
            intent.line,
            intent.seq,
            if what.is_empty() { String::new() } else { format!(" for {}", what.join(", ")) },
        );
    }
    if report.writer_active {
        let _ = writeln!(
            out,
            "note: a writer holds the log; verified up to the last complete record{}",
            report
                .unchecked_last_line
                .map(|line| format!(" (line {line} was being written)"))
                .unwrap_or_default()
        );
    }
    for recovered in &report.recovered {
        let bytes = recovered.torn_bytes.map_or_else(String::new, |b| format!(" of {b} bytes"));
        let _ = writeln!(
            out,
            "recovered: line {}: a torn write{bytes} was moved aside to the .torn file when the \
             log was reopened",
            recovered.line
        );
    }
    match &report.checkpoint {
        Some(checkpoint) => {
            let covered = !report.faults.iter().any(|fault| {
                matches!(fault.kind, FaultKind::TruncatedTail | FaultKind::CheckpointMismatch)
            });
            let key = checkpoint.key_id.as_deref().unwrap_or("none");
            let signature = match checkpoint.signature {
                "valid" => format!("signature valid (key {key})"),
                "not-checked" => {
                    format!("signed by key {key}, signature not checked (give --public-key)")
                }
                "unsigned" => "not signed".to_owned(),
                other => format!("signature {other}"),
            };
            let _ = writeln!(
                out,
                "checkpoint: {} records{}, {} after it; {signature}",
                checkpoint.size,
                if covered { ", head matches" } else { "" },
                plural(checkpoint.records_after, "record", "records"),
            );
        }
        None => {
            let _ = writeln!(
                out,
                "note: no --checkpoint given: records removed from the end of the log cannot be \
                 detected without a checkpoint kept elsewhere"
            );
        }
    }
    out
}

fn show(args: &ShowArgs) -> Result<Exit, AuditError> {
    let (records, unreadable) = audit::read_records(&args.log)?;
    let selected: Vec<&(u64, AuditRecord)> = records
        .iter()
        .filter(|(_, record)| {
            args.request.as_deref().is_none_or(|wanted| {
                record.request_id.as_ref().is_some_and(|id| id.as_str() == wanted)
            })
        })
        .collect();
    match args.format {
        Format::Json => {
            let records: Vec<Value> = selected
                .iter()
                .map(|(line, record)| {
                    let mut value = serde_json::to_value(record).unwrap_or_default();
                    if let Value::Object(map) = &mut value {
                        map.insert("line".to_owned(), json!(line));
                    }
                    value
                })
                .collect();
            let document = json!({
                "request": args.request,
                "records": records,
                "unreadableLines": unreadable,
            });
            println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
        }
        Format::Text => print!("{}", show_text(args.request.as_deref(), &selected, unreadable)),
    }
    Ok(if selected.is_empty() && args.request.is_some() { Exit::Failure } else { Exit::Success })
}

fn show_text(request: Option<&str>, records: &[&(u64, AuditRecord)], unreadable: u64) -> String {
    let mut out = String::new();
    let subject = request.map_or_else(|| "the whole log".to_owned(), |id| format!("request {id}"));
    let _ = writeln!(out, "{subject}: {}", plural(records.len() as u64, "record", "records"));
    if records.is_empty() {
        return out;
    }
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|(line, record)| {
            let dash = || "-".to_owned();
            [
                line.to_string(),
                record.time.to_string(),
                record.event.to_string(),
                record.step.as_ref().map_or_else(dash, ToString::to_string),
                record.contact.as_ref().map_or_else(dash, ToString::to_string),
                record.outcome.map_or_else(dash, |outcome| outcome.to_string()),
                detail_text(record),
            ]
        })
        .collect();
    let header = ["line", "time", "event", "step", "contact", "outcome", "detail"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut write_row = |cells: &[&str]| {
        let line: Vec<String> =
            cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    };
    write_row(&header);
    for row in &rows {
        write_row(&row.each_ref().map(String::as_str));
    }
    if unreadable > 0 {
        let _ = writeln!(
            out,
            "note: {} not shown (not records); run `ucs-gdpr audit verify`",
            plural(unreadable, "line", "lines")
        );
    }
    out
}

fn detail_text(record: &AuditRecord) -> String {
    let Some(Value::Object(map)) =
        record.detail.as_ref().and_then(|d| serde_json::to_value(d).ok())
    else {
        return String::new();
    };
    map.iter()
        .map(|(key, value)| match value {
            Value::String(text) => format!("{key}={text}"),
            other => format!("{key}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn keygen(args: &KeygenArgs) -> Result<Exit, AuditError> {
    let files = audit::generate_key_pair(&args.out)?;
    println!("secret key: {} (keep it secret; mode 0600)", files.secret.display());
    println!("public key: {} (give it to verifiers)", files.public.display());
    println!("key id:     {}", files.key_id);
    Ok(Exit::Success)
}
