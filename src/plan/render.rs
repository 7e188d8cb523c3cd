//! Plans as people read them: `text` for a terminal, `markdown` for a pull-request comment, and
//! the `--count` figures of the Genesys scripts' simulation mode. Every renderer shows only
//! what the plan holds, so none can show personal data.

use std::fmt::Write as _;

use crate::manifest::model::Expect;
use crate::ucs::DataSource;

use super::model::{
    ContactPlan, DeleteMode, OtherRecord, Plan, Resolution, StepPlan, StepStatus,
    SubjectResolution, Warning, WarningLevel,
};

/// Days from `today` to the plan's deadline (negative when overdue).
pub fn days_left(plan: &Plan, today: jiff::civil::Date) -> Option<i64> {
    let deadline: jiff::civil::Date = plan.body.request.deadline.parse().ok()?;
    let span = today.until(deadline).ok()?;
    Some(i64::from(span.get_days()))
}

fn deadline_line(plan: &Plan, today: jiff::civil::Date) -> String {
    let deadline = &plan.body.request.deadline;
    match days_left(plan, today) {
        Some(days) if days < 0 => format!("deadline {deadline}: OVERDUE by {} day(s)", -days),
        Some(days) => format!("deadline {deadline}: {days} day(s) left"),
        None => format!("deadline {deadline}"),
    }
}

fn subject_line(subject: &SubjectResolution) -> String {
    let who = match (&subject.contact_id, &subject.match_digest) {
        (Some(id), _) => format!("contactId {id}"),
        (None, Some(digest)) => format!(
            "match {} (expect {})",
            digest.get(..12).unwrap_or(digest),
            subject.expect.map_or("one", Expect::as_str)
        ),
        (None, None) => "?".to_owned(),
    };
    let outcome = match &subject.outcome {
        Resolution::Found { contacts } => format!("-> {}", joined(contacts, ", ")),
        Resolution::AlreadyAbsent => "-> already absent (nothing to do)".to_owned(),
        Resolution::NoMatch => "-> no contact matches".to_owned(),
        Resolution::Ambiguous { candidates } => {
            let list: Vec<String> = candidates
                .iter()
                .map(|c| {
                    let counts: Vec<String> =
                        c.interactions.iter().map(|(s, n)| format!("{s} {n}")).collect();
                    format!(
                        "{} ({}; first {}, last {})",
                        c.contact_id,
                        counts.join(", "),
                        c.first_interaction.as_deref().unwrap_or("-"),
                        c.last_interaction.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            format!("-> {} candidates: {}", candidates.len(), list.join("; "))
        }
        Resolution::Unreadable { reason } => format!("-> could not be read: {reason}"),
    };
    format!("subject {}: {who} {outcome}", subject.index)
}

/// One possible other record: its id, what it shares with whom, and its facts.
fn other_record_line(record: &OtherRecord) -> String {
    let counts: Vec<String> = record.interactions.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let shared: Vec<String> = record
        .shared
        .iter()
        .map(|v| format!("{} {}", v.attribute, v.digest.get(..12).unwrap_or(&v.digest)))
        .collect();
    format!(
        "{} shares {} with {} ({} interaction(s){}; first {}, last {})",
        record.contact_id,
        shared.join(", "),
        joined(&record.shares_with, ", "),
        record.interactions.values().sum::<u64>(),
        if counts.is_empty() { String::new() } else { format!(": {}", counts.join(", ")) },
        record.first_interaction.as_deref().unwrap_or("-"),
        record.last_interaction.as_deref().unwrap_or("-")
    )
}

fn step_line(step: &StepPlan) -> String {
    let first = step.notes.first().map(String::as_str).unwrap_or_default();
    format!("{:<10} {:<32} {:<15} {first}", step.id, step.uses, step.status.as_str())
}

fn contact_heading(contact: &ContactPlan) -> String {
    let mut parts = Vec::new();
    if let Some(reason) = &contact.hold {
        parts.push(format!("HELD ({reason})"));
    }
    if contact.steps.iter().any(|s| s.status == StepStatus::Blocked) {
        parts.push("BLOCKED".to_owned());
    }
    if contact.export {
        parts.push("export".to_owned());
    }
    if contact.delete {
        parts.push("delete".to_owned());
    }
    if parts.is_empty() {
        parts.push("report only".to_owned());
    }
    let sources: Vec<String> = contact
        .sources
        .iter()
        .map(|(source, counts)| {
            if counts.available {
                format!(
                    "{source}: {} interactions, {} attachments, {} bytes",
                    counts.interactions, counts.attachments, counts.bytes
                )
            } else {
                format!("{source}: unavailable")
            }
        })
        .collect();
    format!("contact {} [{}] {}", contact.contact_id, parts.join(", "), sources.join("; "))
}

/// One line of totals.
pub fn summary_line(plan: &Plan) -> String {
    let s = &plan.body.summary;
    let interactions: Vec<String> =
        s.interactions.iter().map(|(source, n)| format!("{n} in {source}")).collect();
    format!(
        "{} contact(s): {} to export, {} to delete, {} held, {} already absent; interactions {}; \
         {} attachment(s), {} bytes; {} blocker(s)",
        s.contacts,
        s.to_export,
        s.to_delete,
        s.held,
        s.already_absent,
        if interactions.is_empty() { "none".to_owned() } else { interactions.join(", ") },
        s.attachments,
        s.bytes,
        s.blockers
    )
}

/// ` (local file ...)` after the runbook's name when it was read from a file; nothing for a
/// built-in (the plans of built-in runbooks read as they always have).
fn local_origin(plan: &Plan) -> String {
    let runbook = &plan.body.runbook;
    if runbook.origin.is_some() { format!(" ({})", runbook.origin_words()) } else { String::new() }
}

/// Blocker-level warnings first, the rest in the plan's order.
fn by_weight(warnings: &[Warning]) -> Vec<&Warning> {
    let mut sorted: Vec<&Warning> = warnings.iter().collect();
    sorted.sort_by_key(|w| std::cmp::Reverse(w.level));
    sorted
}

fn delete_words(mode: DeleteMode) -> &'static str {
    match mode {
        DeleteMode::None => "nothing is deleted",
        DeleteMode::ReportOnly => "delete NOT confirmed: apply only reports",
        DeleteMode::Confirmed => "delete confirmed",
    }
}

/// The plan for a terminal: blockers first, then each contact, then a summary line.
pub fn text(plan: &Plan, today: jiff::civil::Date) -> String {
    text_of(plan, plan.body.contacts.iter().cloned(), today)
}

/// The most the details of a plan for a terminal hold (subjects, contacts, other records):
/// past it they are counted, not printed, and the plan file holds them.
pub const TEXT_BUDGET: usize = 256 * 1024;

/// [`text`] of a plan whose contacts come one at a time (`plan`'s own are not read): the
/// header, the blockers and the warnings in full, the details until [`TEXT_BUDGET`], the
/// summary.
pub fn text_of(
    plan: &Plan,
    contacts: impl Iterator<Item = ContactPlan>,
    today: jiff::civil::Date,
) -> String {
    let body = &plan.body;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Plan {} for request {} ({}, runbook {}{}, environment {}, UCS {})",
        plan.plan_id.get(..12).unwrap_or(&plan.plan_id),
        body.request.id,
        deadline_line(plan, today),
        body.runbook.name,
        local_origin(plan),
        body.environment.name,
        body.environment.ucs_version
    );
    let _ = writeln!(
        out,
        "export: {}; {}",
        body.export.as_ref().map_or_else(
            || if body.export_waived { "waived".to_owned() } else { "none".to_owned() },
            |e| format!(
                "{} (attachments {})",
                joined(&e.data_sources, " + "),
                e.attachments.as_str()
            )
        ),
        delete_words(body.delete)
    );
    if !body.blockers.is_empty() {
        let _ = writeln!(out, "\nBLOCKERS ({})", body.blockers.len());
        for blocker in &body.blockers {
            let at = match (&blocker.contact_id, blocker.subject, &blocker.step) {
                (Some(c), _, Some(step)) => format!("contact {c}, step {step}"),
                (Some(c), _, None) => format!("contact {c}"),
                (None, Some(s), _) => format!("subject {s}"),
                (None, None, Some(step)) => format!("step {step}"),
                (None, None, None) => "request".to_owned(),
            };
            let _ = writeln!(out, "  ✗ {at}: {}", blocker.message);
        }
    }
    if !body.warnings.is_empty() {
        let _ = writeln!(out, "\nWARNINGS ({})", body.warnings.len());
        for warning in by_weight(&body.warnings) {
            let mark = if warning.level == WarningLevel::Blocker { "‼" } else { "!" };
            let _ = writeln!(out, "  {mark} {}", warning.message);
        }
    }
    let mut folded = Folded::new(out, TEXT_BUDGET);
    folded.push("\nSubjects\n");
    for subject in &body.subjects {
        folded.item("subject(s)", &format!("  {}\n", subject_line(subject)));
    }
    if !body.request_steps.is_empty() {
        folded.push("\nRequest steps\n");
        for step in &body.request_steps {
            folded.item("request step(s)", &format!("  {}\n", step_line(step)));
        }
    }
    for contact in contacts {
        let mut section = format!("\n{}\n", contact_heading(&contact));
        for step in &contact.steps {
            let _ = writeln!(section, "  {}", step_line(step));
            for note in step.notes.iter().skip(1) {
                let _ = writeln!(section, "  {:<10} {:<32} {:<15} {note}", "", "", "");
            }
        }
        folded.item("contact(s)", &section);
    }
    if !body.other_records.is_empty() {
        folded.push("\nPossible other records of the same person\n");
        for record in &body.other_records {
            folded.item("possible other record(s)", &format!("  {}\n", other_record_line(record)));
        }
    }
    let mut out = folded.finish_text(&plan.plan_id);
    let _ = writeln!(out, "\n{}", summary_line(plan));
    out
}

/// The plan as a pull-request comment: a summary table, blockers, per-contact details folded.
pub fn markdown(plan: &Plan, today: jiff::civil::Date) -> String {
    markdown_of(plan, plan.body.contacts.iter().cloned(), today)
}

/// [`markdown`] of a plan whose contacts come one at a time (`plan`'s own are not read); once
/// the budget is spent the rest are only counted.
pub fn markdown_of(
    plan: &Plan,
    contacts: impl Iterator<Item = ContactPlan>,
    today: jiff::civil::Date,
) -> String {
    let body = &plan.body;
    let s = &body.summary;
    let mut out = String::new();
    let _ = writeln!(out, "### ucs-gdpr plan for `{}`\n", body.request.id);
    let _ = writeln!(
        out,
        "Plan `{}` · runbook `{}`{} · environment `{}` (UCS {}) · {}\n",
        plan.plan_id,
        body.runbook.name,
        local_origin(plan),
        body.environment.name,
        body.environment.ucs_version,
        deadline_line(plan, today)
    );
    let _ = writeln!(out, "| contacts | export | delete | held | already absent | blockers |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} |\n",
        s.contacts, s.to_export, s.to_delete, s.held, s.already_absent, s.blockers
    );
    let interactions: Vec<String> =
        s.interactions.iter().map(|(source, n)| format!("{n} in `{source}`")).collect();
    let _ = writeln!(
        out,
        "Interactions: {} · attachments: {} ({} bytes) · {}\n",
        if interactions.is_empty() { "none".to_owned() } else { interactions.join(", ") },
        s.attachments,
        s.bytes,
        delete_words(body.delete)
    );
    let mut folded = Folded::new(out, MARKDOWN_BUDGET);
    if body.blockers.is_empty() {
        folded.push("**No blockers.**\n\n");
    } else {
        folded.push("#### Blockers\n\n");
        for blocker in &body.blockers {
            let at = blocker
                .contact_id
                .as_ref()
                .map(|c| format!("contact `{c}`"))
                .or_else(|| blocker.subject.map(|n| format!("subject {n}")))
                .unwrap_or_else(|| "request".to_owned());
            folded.item("blocker(s)", &format!("- :x: {at}: {}\n", blocker.message));
        }
        folded.push("\n");
    }
    if !body.warnings.is_empty() {
        folded.push("#### Warnings\n\n");
        for warning in by_weight(&body.warnings) {
            let mark =
                if warning.level == WarningLevel::Blocker { ":bangbang:" } else { ":warning:" };
            folded.item("warning(s)", &format!("- {mark} {}\n", warning.message));
        }
        folded.push("\n");
    }
    folded.push("#### Subjects\n\n");
    for subject in &body.subjects {
        folded.item("subject(s)", &format!("- {}\n", subject_line(subject)));
    }
    folded.push("\n");
    for step in &body.request_steps {
        folded.item(
            "request step(s)",
            &format!(
                "- request step `{}` (`{}`): **{}**: {}\n",
                step.id,
                step.uses,
                step.status.as_str(),
                step.notes.join("; ")
            ),
        );
    }
    for contact in contacts {
        if folded.full {
            folded.item("contact(s)", "");
            continue;
        }
        let contact = &contact;
        let mut section = format!("\n<details><summary>{}</summary>\n\n", contact_heading(contact));
        section.push_str("| step | uses | status | notes |\n|---|---|---|---|\n");
        for step in &contact.steps {
            let _ = writeln!(
                section,
                "| `{}` | `{}` | {} | {} |",
                step.id,
                step.uses,
                step.status.as_str(),
                step.notes.join("<br>")
            );
        }
        let _ = writeln!(section, "\nFingerprint `{}`\n\n</details>", contact.fingerprint);
        folded.item("contact(s)", &section);
    }
    if !body.other_records.is_empty() {
        folded.push("\n#### Possible other records of the same person\n\n");
        for record in &body.other_records {
            folded.item("possible other record(s)", &format!("- {}\n", other_record_line(record)));
        }
    }
    folded.finish(&plan.plan_id)
}

/// The most a markdown plan holds: a GitHub comment holds 65,536 characters, and this counts
/// bytes (at least as many), with room left for the note on what was left out.
pub const MARKDOWN_BUDGET: usize = 65_536 - 1_024;

/// A markdown plan within a budget: parts are kept in order while they fit; once one does not,
/// every later item is only counted, by kind, and the end says what was left out and where it
/// is. The summary and the blockers come first, so they are the last to be left out.
struct Folded {
    out: String,
    limit: usize,
    full: bool,
    left_out: Vec<(&'static str, usize)>,
}

impl Folded {
    fn new(out: String, limit: usize) -> Self {
        Self { out, limit, full: false, left_out: Vec::new() }
    }

    /// A heading or separator: kept while nothing has been left out.
    fn push(&mut self, text: &str) {
        if !self.full && self.out.len() + text.len() <= self.limit {
            self.out.push_str(text);
        }
    }

    /// One item of a list: kept while it fits, else counted under `kind`.
    fn item(&mut self, kind: &'static str, text: &str) {
        if !self.full && self.out.len() + text.len() <= self.limit {
            self.out.push_str(text);
            return;
        }
        self.full = true;
        match self.left_out.last_mut() {
            Some((last, count)) if *last == kind => *count += 1,
            _ => self.left_out.push((kind, 1)),
        }
    }

    /// For a terminal: what was left out, and where it is, on one line.
    fn finish_text(mut self, plan_id: &str) -> String {
        if !self.left_out.is_empty() {
            let counts: Vec<String> =
                self.left_out.iter().map(|(kind, n)| format!("{n} more {kind}")).collect();
            let _ = writeln!(
                self.out,
                "\n… {} not shown: the plan is too long to print whole. The plan file holds them \
                 all (plan {plan_id}; `ucs-gdpr show PLAN_FILE --format json`).",
                counts.join(", ")
            );
        }
        self.out
    }

    fn finish(mut self, plan_id: &str) -> String {
        if !self.left_out.is_empty() {
            let counts: Vec<String> =
                self.left_out.iter().map(|(kind, n)| format!("{n} more {kind}")).collect();
            let _ = writeln!(
                self.out,
                "\n> [!NOTE]\n> This plan is too long for one comment: {} not shown. The plan \
                 file holds them all (plan `{plan_id}`); `ucs-gdpr show PLAN_FILE` prints it \
                 whole.",
                counts.join(", ")
            );
        }
        self.out
    }
}

/// The seed's `-count` simulation mode: how many contacts and interactions per data source
/// would be exported and deleted.
pub fn count(plan: &Plan) -> String {
    count_of(plan, plan.body.contacts.iter().cloned())
}

/// [`count`] of a plan whose contacts come one at a time (`plan`'s own are not read).
pub fn count_of(plan: &Plan, contacts: impl Iterator<Item = ContactPlan>) -> String {
    let body = &plan.body;
    let mut out = String::new();
    let export_sources = body.export.as_ref().map(|e| e.data_sources.clone());
    let (mut exported, mut deleted) = (0u64, 0u64);
    let mut to_export = std::collections::BTreeMap::<DataSource, u64>::new();
    let mut to_delete = std::collections::BTreeMap::<DataSource, u64>::new();
    for contact in contacts {
        if contact.export {
            exported += 1;
            for (source, counts) in &contact.sources {
                if export_sources.as_deref().is_none_or(|o| o.contains(source)) {
                    *to_export.entry(*source).or_default() += counts.interactions;
                }
            }
        }
        if contact.delete {
            deleted += 1;
            for (source, counts) in &contact.sources {
                *to_delete.entry(*source).or_default() += counts.interactions;
            }
        }
    }
    let _ = writeln!(out, "contacts to export: {exported}");
    for (source, n) in to_export {
        let _ = writeln!(out, "interactions to export from {source}: {n}");
    }
    let _ = writeln!(out, "contacts to delete: {deleted}");
    for (source, n) in to_delete {
        let _ = writeln!(out, "interactions to delete from {source}: {n}");
    }
    out
}

/// The items' `Display` forms joined by `separator`.
fn joined<T: std::fmt::Display>(items: &[T], separator: &str) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(separator)
}
