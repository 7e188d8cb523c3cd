//! `ucs-gdpr audit`: verify, show, keygen.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::failure::Failure;
use super::{Exit, Format};
use crate::audit::{
    self, AuditError, AuditRecord, Checkpoint, Fault, FaultKind, VerifyOptions, VerifyReport,
    segments,
};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Check every record, link, sequence number and the checkpoint's signature.
    #[command(after_long_help = EXAMPLES_VERIFY)]
    Verify(VerifyArgs),
    /// Show the timeline of a request (or of the whole log).
    #[command(after_long_help = EXAMPLES_SHOW)]
    Show(ShowArgs),
    /// What was done for one request across all its runs, from the log alone.
    #[command(after_long_help = EXAMPLES_REPORT)]
    Report(ReportArgs),
    /// Make a key pair for signing checkpoints.
    #[command(after_long_help = EXAMPLES_KEYGEN)]
    Keygen(KeygenArgs),
}

// Examples shown by each subcommand's `--help`; those naming examples/ run in `tests/cli.rs`.
const EXAMPLES_VERIFY: &str = "\
Examples:
  ucs-gdpr audit verify examples/out/audit.jsonl
  ucs-gdpr audit verify audit.jsonl --checkpoint kept/audit.jsonl.checkpoint.json --public-key keys/audit-signing.pub
  ucs-gdpr audit verify audit.jsonl --plan plan.json     # and the segments of its shards beside it
  ucs-gdpr audit verify segments/*.jsonl --plan plan.json   # one sharded run's segments, together";

const EXAMPLES_SHOW: &str = "\
Examples:
  ucs-gdpr audit show examples/out/audit.jsonl --request DSR-2026-0142
  ucs-gdpr audit show examples/out/audit.jsonl --contact 0001SaD2PVY4312K --since 2026-11-01 --format json";

const EXAMPLES_REPORT: &str = "\
Examples:
  ucs-gdpr audit report examples/out/audit.jsonl DSR-2026-0142
  ucs-gdpr audit report examples/out/audit.jsonl DSR-2026-0142 --format markdown";

const EXAMPLES_KEYGEN: &str = "\
Examples:
  ucs-gdpr audit keygen --out keys      # keys/audit-signing.key (0600) and keys/audit-signing.pub";

#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The audit log (JSON Lines). The segments of sharded runs beside it
    /// (`<log>.plan-<id>.shard-I-of-N.jsonl`) are checked too, each run's together. Several
    /// files: the segments of one sharded run, checked together.
    #[arg(required = true, num_args = 1..)]
    logs: Vec<PathBuf>,
    /// The plan of a sharded run: its contacts must each be in exactly one segment, and the
    /// missing ones are named; only that plan's segments are checked.
    #[arg(long, value_name = "PLAN")]
    plan: Option<PathBuf>,
    /// A checkpoint kept elsewhere: reveals records removed from the end of the log (one log
    /// only).
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
    #[arg(long, value_name = "ID")]
    request: Option<String>,
    /// Only the records about this contact id.
    #[arg(long, value_name = "CONTACT_ID")]
    contact: Option<String>,
    /// Only the records written at or after this time: RFC 3339 (`2026-12-01T09:00:00Z`) or a
    /// date (`2026-12-01`, from its start in UTC).
    #[arg(long, value_name = "TIME|DATE", value_parser = parse_since)]
    since: Option<jiff::Timestamp>,
    /// How to print the timeline: `json` is JSON Lines, one object per record.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// `--since`: an RFC 3339 instant, or a date meaning its first moment in UTC.
fn parse_since(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(timestamp) = text.parse::<jiff::Timestamp>() {
        return Ok(timestamp);
    }
    text.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|date| date.to_zoned_datetime(jiff::tz::TimeZone::UTC).ok())
        .map(|zoned| zoned.timestamp())
        .ok_or_else(|| {
            "expected an RFC 3339 time (2026-12-01T09:00:00Z) or a date (2026-12-01)".to_owned()
        })
}

#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// The audit log (JSON Lines).
    log: PathBuf,
    /// The request id (the manifest's `metadata.id`).
    request: String,
    /// How to print the report: `markdown` for a ticket or a pull request.
    #[arg(long, value_enum, default_value_t)]
    format: ReportFormat,
}

/// `audit report`'s output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    /// For a terminal.
    #[default]
    Text,
    /// For a ticket, a pull request or a DPO's file.
    Markdown,
    /// The report as one JSON document.
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {
    /// The directory to write `audit-signing.key` (secret, mode 0600) and `audit-signing.pub`.
    #[arg(long)]
    out: PathBuf,
}

pub(crate) fn run(command: &Command) -> Exit {
    let result = match command {
        Command::Verify(args) => return verify(args).unwrap_or_else(|failure| failure.report()),
        Command::Show(args) => show(args),
        Command::Report(args) => report(args),
        Command::Keygen(args) => keygen(args),
    };
    result.unwrap_or_else(|error| Failure::new(error.to_string()).report())
}

fn verify(args: &VerifyArgs) -> Result<Exit, Failure> {
    let failed = |error: AuditError| Failure::new(error.to_string());
    // The plan as a stream (checked line by line against its id): its id and its contacts' ids,
    // never the whole plan in memory.
    let plan = match &args.plan {
        None => None,
        Some(path) => {
            // One pass: each line is checked against the header as its id is taken.
            let unreadable = |e: String| super::apply::plan_failure(path, &e);
            let file = crate::plan::PlanFile::open(path).map_err(unreadable)?;
            let mut ids = std::collections::BTreeSet::new();
            for item in file.contacts().map_err(unreadable)? {
                let (contact, _) = item.map_err(unreadable)?;
                ids.insert(contact.contact_id.as_str().to_owned());
            }
            Some((file.head().plan_id.clone(), ids))
        }
    };
    let contacts = plan.as_ref().map(|(_, ids)| ids);
    // Several files: one sharded run's segments.
    let (log, runs) = match args.logs.as_slice() {
        [log] => {
            let mut groups = if log.is_dir() {
                std::collections::BTreeMap::new()
            } else {
                // A folder that cannot be listed has no segments to find; the log itself then
                // says what is wrong with it.
                segments::find_segments(log).unwrap_or_default()
            };
            if let Some((plan_id, _)) = &plan {
                let tag = format!("plan-{}", plan_id.get(..12).unwrap_or_default());
                groups.retain(|name, _| *name == tag);
            }
            let single = log.exists() || groups.is_empty();
            (single.then_some(log), groups.into_values().collect::<Vec<_>>())
        }
        many => {
            if args.checkpoint.is_some() {
                return Err(Failure::usage(
                    "--checkpoint checks one log; each segment's checkpoint is beside it",
                ));
            }
            (None, vec![many.to_vec()])
        }
    };
    let mut ok = true;
    let mut document = serde_json::Map::new();
    if let Some(log) = log {
        let checkpoint =
            args.checkpoint.as_deref().map(Checkpoint::read).transpose().map_err(failed)?;
        let public_key = args
            .public_key
            .as_deref()
            .map(audit::load_verifying_key)
            .transpose()
            .map_err(|e| Failure::new(e.to_string()))?;
        let report =
            audit::verify_file(log, &VerifyOptions { checkpoint, public_key }).map_err(failed)?;
        ok &= report.ok;
        match args.format {
            Format::Text => print!("{}", verify_text(log, &report)),
            Format::Json => {
                let mut value = serde_json::to_value(&report).unwrap_or_default();
                if let Value::Object(map) = &mut value {
                    map.insert("log".to_owned(), json!(log.display().to_string()));
                }
                if runs.is_empty() {
                    println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
                } else {
                    document.insert("log".to_owned(), value);
                }
            }
        }
    }
    let mut reports = Vec::new();
    for paths in &runs {
        let report = segments::verify_segments(paths, contacts).map_err(failed)?;
        ok &= report.ok;
        if args.format == Format::Text {
            print!("{}", segments_text(&report));
        }
        reports.push(report);
    }
    if args.format == Format::Json && !runs.is_empty() {
        document
            .insert("shardedRuns".to_owned(), serde_json::to_value(&reports).unwrap_or_default());
        println!("{}", serde_json::to_string_pretty(&Value::Object(document)).unwrap_or_default());
    }
    Ok(if ok { Exit::Success } else { Exit::Failure })
}

/// A sharded run's segments, checked together, as a person reads it.
fn segments_text(report: &segments::SegmentsReport) -> String {
    let mut out = String::new();
    let plan = report.plan_id.as_deref().unwrap_or("(not agreed)");
    let shards = report.shards.map_or_else(|| "?".to_owned(), |n| n.to_string());
    if report.ok {
        let _ = writeln!(
            out,
            "sharded run of plan {plan}: OK: {shards} shard(s), each once; {} contact(s), each \
             in exactly one segment; every chain verifies",
            report.contacts
        );
    } else {
        let _ = writeln!(
            out,
            "sharded run of plan {plan}: FAILED: {}",
            plural(report.faults.len() as u64, "fault", "faults")
        );
    }
    for segment in &report.segments {
        let _ = writeln!(
            out,
            "  {}: {}: {}, {} contact(s){}",
            segment.shard.as_deref().unwrap_or("not a segment"),
            segment.path.display(),
            plural(segment.verify.records, "record", "records"),
            segment.contacts,
            if segment.verify.ok { "" } else { ", DOES NOT VERIFY" },
        );
    }
    for fault in &report.faults {
        let _ = writeln!(out, "{}: {}", fault.kind, fault.message);
        if !fault.contacts.is_empty() {
            let _ = writeln!(out, "  contacts: {}", fault.contacts.join(", "));
        }
    }
    out
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

/// A line of the log as `show` prints it: the record (or `None` for a line that is not one)
/// and the fault verification found at that line, if any.
struct Shown<'a> {
    line: u64,
    record: Option<&'a AuditRecord>,
    fault: Option<&'a Fault>,
}

fn show(args: &ShowArgs) -> Result<Exit, AuditError> {
    let lines = audit::read_lines(&args.log)?;
    let report = audit::verify_file(&args.log, &VerifyOptions::default())?;
    let fault_at = |line: u64| report.faults.iter().find(|fault| fault.line == Some(line));
    let wanted =
        |record: &AuditRecord| {
            args.request.as_deref().is_none_or(|wanted| {
                record.request_id.as_ref().is_some_and(|id| id.as_str() == wanted)
            }) && args.contact.as_deref().is_none_or(|wanted| {
                record.contact.as_ref().is_some_and(|id| id.as_str() == wanted)
            }) && args.since.is_none_or(|since| {
                record.time.as_str().parse::<jiff::Timestamp>().is_ok_and(|time| time >= since)
            })
        };
    // A line that is not a record cannot be told apart by request, contact or time: it is
    // always shown, since it may be one of the wanted records, damaged.
    // A line a writer is still writing is not shown (verify left it unchecked, too).
    let shown: Vec<Shown<'_>> = lines
        .iter()
        .filter(|line| Some(line.line) != report.unchecked_last_line)
        .filter(|line| line.record.as_ref().is_none_or(wanted))
        .map(|line| Shown {
            line: line.line,
            record: line.record.as_ref(),
            fault: fault_at(line.line),
        })
        .collect();
    let matched = shown.iter().filter(|line| line.record.is_some()).count();
    match args.format {
        Format::Json => {
            let mut out = String::new();
            for line in &shown {
                let _ = writeln!(out, "{}", show_json(line));
            }
            print!("{out}");
        }
        Format::Text => print!("{}", show_text(args, &shown, matched)),
    }
    if !report.ok {
        eprint!("{}", unverified_warning(&args.log, &report, &lines));
        return Ok(Exit::Failure);
    }
    let filtered = args.request.is_some() || args.contact.is_some();
    Ok(if matched == 0 && filtered { Exit::Failure } else { Exit::Success })
}

/// The warning when the log does not verify: each fault with its line and the record's seq.
fn unverified_warning(log: &Path, report: &VerifyReport, lines: &[audit::LogLine]) -> String {
    let mut out = String::new();
    let count = u64::try_from(report.faults.len()).unwrap_or(u64::MAX);
    let _ = writeln!(
        out,
        "warning: {} does not verify ({}); the records are shown as written, the lines \
         concerned marked `!`",
        log.display(),
        plural(count, "fault", "faults"),
    );
    for fault in &report.faults {
        let place =
            fault.line.map_or_else(|| "checkpoint".to_owned(), |line| format!("line {line}"));
        let written = fault
            .line
            .and_then(|line| lines.iter().find(|shown| shown.line == line))
            .and_then(|line| line.record.as_ref())
            .map(|record| record.seq);
        let seq = match (fault.seq, written) {
            (Some(seq), Some(written)) if seq != written => {
                format!(" (seq {seq}; the line says seq {written})")
            }
            (Some(seq), _) | (None, Some(seq)) => format!(" (seq {seq})"),
            (None, None) => String::new(),
        };
        let _ = writeln!(out, "warning: {place}{seq}: {}: {}", fault.kind.as_str(), fault.message);
    }
    let _ = writeln!(
        out,
        "warning: run `ucs-gdpr audit verify {}` for the whole report",
        log.display()
    );
    out
}

/// One JSON object per line, with every key always present (`null` when the record has no
/// such field), so a pipeline can rely on the names.
fn show_json(line: &Shown<'_>) -> String {
    let record = line.record;
    let text = |value: Option<String>| value.map_or(Value::Null, Value::String);
    let value = json!({
        "line": line.line,
        "seq": record.map(|r| r.seq),
        "time": text(record.map(|r| r.time.to_string())),
        "requestId": text(record.and_then(|r| r.request_id.as_ref()).map(ToString::to_string)),
        "actor": text(record.map(|r| r.actor.to_string())),
        "planId": text(record.and_then(|r| r.plan_id.as_ref()).map(ToString::to_string)),
        "event": text(record.map(|r| r.event.to_string())),
        "step": text(record.and_then(|r| r.step.as_ref()).map(ToString::to_string)),
        "contact": text(record.and_then(|r| r.contact.as_ref()).map(ToString::to_string)),
        "outcome": text(record.and_then(|r| r.outcome).map(|o| o.to_string())),
        "detail": record
            .and_then(|r| r.detail.as_ref())
            .and_then(|d| serde_json::to_value(d).ok())
            .unwrap_or(Value::Null),
        "hash": text(record.map(|r| r.hash.to_string())),
        "verified": line.fault.is_none() && record.is_some(),
        "fault": line.fault.map_or(Value::Null, |fault| json!({
            "kind": fault.kind.as_str(),
            "seq": fault.seq,
            "message": fault.message,
        })),
    });
    serde_json::to_string(&value).unwrap_or_default()
}

/// A plan id as the timeline shows it: its first 12 hex digits (enough to tell plans apart
/// on a screen; `--format json` has the whole id).
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn show_text(args: &ShowArgs, lines: &[Shown<'_>], matched: usize) -> String {
    let mut out = String::new();
    let mut what = Vec::new();
    if let Some(request) = &args.request {
        what.push(format!("request {request}"));
    }
    if let Some(contact) = &args.contact {
        what.push(format!("contact {contact}"));
    }
    if let Some(since) = &args.since {
        what.push(format!("since {since}"));
    }
    let subject = if what.is_empty() { "the whole log".to_owned() } else { what.join(", ") };
    let _ = writeln!(out, "{subject}: {}", plural(matched as u64, "record", "records"));
    if lines.is_empty() {
        return out;
    }
    let marked = lines.iter().any(|line| line.fault.is_some() || line.record.is_none());
    let rows: Vec<[String; 12]> = lines
        .iter()
        .map(|line| {
            let dash = || "-".to_owned();
            let mark = if line.fault.is_some() || line.record.is_none() { "!" } else { "" };
            let Some(record) = line.record else {
                let mut row = [(); 12].map(|()| dash());
                row[0] = mark.to_owned();
                row[1] = line.line.to_string();
                row[7] = "(not a record)".to_owned();
                return row;
            };
            [
                mark.to_owned(),
                line.line.to_string(),
                record.seq.to_string(),
                record.time.to_string(),
                record.request_id.as_ref().map_or_else(dash, ToString::to_string),
                record.actor.to_string(),
                record.plan_id.as_ref().map_or_else(dash, |id| short(id.as_str()).to_owned()),
                record.event.to_string(),
                record.step.as_ref().map_or_else(dash, ToString::to_string),
                record.contact.as_ref().map_or_else(dash, ToString::to_string),
                record.outcome.map_or_else(dash, |outcome| outcome.to_string()),
                detail_text(record),
            ]
        })
        .collect();
    let header = [
        "", "line", "seq", "time", "request", "actor", "plan", "event", "step", "contact",
        "outcome", "detail",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let skip = usize::from(!marked);
    let mut write_row = |cells: &[&str]| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .skip(skip)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    };
    write_row(&header);
    for row in &rows {
        write_row(&row.each_ref().map(String::as_str));
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

fn report(args: &ReportArgs) -> Result<Exit, AuditError> {
    let report = audit::request_report(&args.log, &args.request)?;
    match args.format {
        ReportFormat::Text => print!("{}", report_text(&args.log, &report)),
        ReportFormat::Markdown => print!("{}", report_markdown(&args.log, &report)),
        ReportFormat::Json => {
            let mut document = serde_json::to_value(&report).unwrap_or_default();
            if let Value::Object(map) = &mut document {
                map.insert("log".to_owned(), json!(args.log.display().to_string()));
            }
            println!("{}", serde_json::to_string_pretty(&document).unwrap_or_default());
        }
    }
    if report.records == 0 {
        Failure::new(format!("{} has no record of request {}", args.log.display(), args.request))
            .report();
        return Ok(Exit::Failure);
    }
    if !report.log_verifies {
        eprintln!(
            "warning: {} does not verify: this report rests on records that may have been \
             changed; run `ucs-gdpr audit verify {}`",
            args.log.display(),
            args.log.display()
        );
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}

/// Left-aligned columns, two spaces apart, trailing spaces trimmed.
fn table(header: &[&str], rows: &[Vec<String>], indent: &str) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|cell| (*cell).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> =
            row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "{indent}{}", cells.join("  ").trim_end());
    }
    out
}

fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

fn verdict(report: &audit::RequestReport) -> String {
    let records = plural(report.records, "record", "records");
    if report.log_verifies {
        return format!("the log verifies; {records} of this request");
    }
    let faults: Vec<String> = report
        .faults
        .iter()
        .map(|fault| {
            let place = fault.line.map_or_else(|| "checkpoint".to_owned(), |l| format!("line {l}"));
            let seq = fault.seq.map(|seq| format!(" (seq {seq})")).unwrap_or_default();
            format!("{place}{seq} {}", fault.kind.as_str())
        })
        .collect();
    format!(
        "THE LOG DOES NOT VERIFY ({}): what follows rests on records that may have been \
         changed; {records} of this request",
        faults.join(", ")
    )
}

fn run_rows(report: &audit::RequestReport) -> Vec<Vec<String>> {
    let dash = || "-".to_owned();
    report
        .runs
        .iter()
        .map(|run| {
            let mut outcome = run.outcome.as_str().to_owned();
            if let Some(reason) = &run.reason {
                let _ = write!(outcome, " ({reason})");
            }
            vec![
                run.id.to_string(),
                run.actor.clone(),
                run.plan_id.as_deref().map_or_else(dash, |id| short(id).to_owned()),
                run.started.clone(),
                run.ended.clone().unwrap_or_else(dash),
                outcome,
                run.contacts.map_or_else(dash, |count| count.to_string()),
                if run.approvers.is_empty() { dash() } else { run.approvers.join(", ") },
            ]
        })
        .collect()
}

const RUN_HEADER: [&str; 8] =
    ["run", "actor", "plan", "started", "ended", "outcome", "contacts", "approved by"];
const CONTACT_HEADER: [&str; 5] = ["contact", "state", "export", "deletion", "failure"];

fn contact_rows(report: &audit::RequestReport) -> Vec<Vec<String>> {
    let dash = || "-".to_owned();
    report
        .contacts
        .iter()
        .map(|contact| {
            let export = contact.export.as_ref().map_or_else(dash, |export| {
                let count = |value: Option<u64>, one, many| {
                    value.map(|value| plural(value, one, many)).unwrap_or_default()
                };
                let counts: Vec<String> = [
                    count(export.interactions, "interaction", "interactions"),
                    count(export.attachments, "attachment", "attachments"),
                    count(export.bytes, "byte", "bytes"),
                ]
                .into_iter()
                .filter(|text| !text.is_empty())
                .collect();
                format!("{} (step {}, run {})", counts.join(", "), export.step, export.run)
            });
            let mut deletion = Vec::new();
            if let Some(deleted) = &contact.deleted {
                let how = match deleted.outcome.as_deref() {
                    Some("already-absent") => "already absent",
                    _ => "deleted",
                };
                deletion.push(format!("{how} (step {}, run {})", deleted.step, deleted.run));
            }
            if contact.verified_absent {
                deletion.push("verified absent".to_owned());
            }
            if let Some(context) = &contact.context_services_deleted {
                deletion.push(format!(
                    "Context Services profile deleted with {} (step {}, run {})",
                    plural(context.count.unwrap_or_default(), "service", "services"),
                    context.step,
                    context.run
                ));
            }
            if contact.held {
                deletion.push("kept: legal hold".to_owned());
            }
            let mut failure = Vec::new();
            if let Some(failed) = &contact.failed {
                let status =
                    failed.http_status.map(|status| format!(", HTTP {status}")).unwrap_or_default();
                failure.push(format!(
                    "step {} failed: {}{status} (run {})",
                    failed.step,
                    failed.code.as_deref().unwrap_or("no code"),
                    failed.run
                ));
            }
            if let Some(step) = &contact.interrupted_at {
                failure.push(format!("step {} has no outcome (run {})", step.step, step.run));
            }
            if contact.retries > 0 {
                failure.push(plural(contact.retries, "retry", "retries"));
            }
            vec![
                contact.contact.clone(),
                contact.state.as_str().to_owned(),
                export,
                if deletion.is_empty() { dash() } else { deletion.join("; ") },
                if failure.is_empty() { dash() } else { failure.join("; ") },
            ]
        })
        .collect()
}

fn approval_line(approval: &audit::report::Approval) -> String {
    let mut line = format!(
        "run {}: {} at {} (seq {}), plan {}",
        approval.run,
        approval.approver.as_deref().unwrap_or("(no approver recorded)"),
        approval.time,
        approval.seq,
        approval.plan_id.as_deref().map_or("-", short)
    );
    if let Some(key) = &approval.key_id {
        let _ = write!(line, ", signed with key {key}");
    }
    if let Some(digest) = &approval.signature_sha256 {
        let _ = write!(line, " (signature sha256 {})", short(digest));
    }
    if let Some(expires) = &approval.expires_at {
        let _ = write!(line, ", expires {expires}");
    }
    line
}

fn refusal_line(refusal: &audit::report::Refusal) -> String {
    format!(
        "run {}: {} at {} by {}, plan {}",
        refusal.run,
        refusal.reason.as_deref().unwrap_or("no reason recorded"),
        refusal.time,
        refusal.actor,
        refusal.plan_id.as_deref().map_or("-", short)
    )
}

/// What a person reads: the verdict on the log, then runs, approvals, refusals, contacts.
fn report_text(log: &Path, report: &audit::RequestReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "request {}, from {}", report.request_id, log.display());
    let _ = writeln!(out, "{}", verdict(report));
    let _ = writeln!(out, "\nruns: {}", report.runs.len());
    if !report.runs.is_empty() {
        out.push_str(&table(&RUN_HEADER, &run_rows(report), "  "));
    }
    let _ = writeln!(out, "\napprovals: {}", report.approvals.len());
    for approval in &report.approvals {
        let _ = writeln!(out, "  {}", approval_line(approval));
    }
    let _ = writeln!(out, "\nrefusals: {}", report.refusals.len());
    for refusal in &report.refusals {
        let _ = writeln!(out, "  {}", refusal_line(refusal));
    }
    let _ = writeln!(out, "\ncontacts: {}", report.contacts.len());
    if !report.contacts.is_empty() {
        out.push_str(&table(&CONTACT_HEADER, &contact_rows(report), "  "));
    }
    out
}

fn report_markdown(log: &Path, report: &audit::RequestReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Request `{}`\n", report.request_id);
    let _ = writeln!(out, "From the audit log `{}`: {}.\n", log.display(), verdict(report));
    let _ = writeln!(out, "### Runs ({})\n", report.runs.len());
    if !report.runs.is_empty() {
        let _ = writeln!(out, "{}", markdown_table(&RUN_HEADER, &run_rows(report)));
    }
    let _ = writeln!(out, "### Approvals ({})\n", report.approvals.len());
    for approval in &report.approvals {
        let _ = writeln!(out, "- {}", approval_line(approval));
    }
    if !report.approvals.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "### Refusals ({})\n", report.refusals.len());
    for refusal in &report.refusals {
        let _ = writeln!(out, "- {}", refusal_line(refusal));
    }
    if !report.refusals.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "### Contacts ({})\n", report.contacts.len());
    if !report.contacts.is_empty() {
        out.push_str(&markdown_table(&CONTACT_HEADER, &contact_rows(report)));
    }
    out
}

fn keygen(args: &KeygenArgs) -> Result<Exit, AuditError> {
    let files = audit::generate_key_pair(&args.out)?;
    println!("secret key: {} (keep it secret; mode 0600)", files.secret.display());
    println!("public key: {} (give it to verifiers)", files.public.display());
    println!("key id:     {}", files.key_id);
    Ok(Exit::Success)
}
