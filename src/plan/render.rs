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
    let _ = writeln!(out, "\nSubjects");
    for subject in &body.subjects {
        let _ = writeln!(out, "  {}", subject_line(subject));
    }
    if !body.request_steps.is_empty() {
        let _ = writeln!(out, "\nRequest steps");
        for step in &body.request_steps {
            let _ = writeln!(out, "  {}", step_line(step));
        }
    }
    for contact in &body.contacts {
        let _ = writeln!(out, "\n{}", contact_heading(contact));
        for step in &contact.steps {
            let _ = writeln!(out, "  {}", step_line(step));
            for note in step.notes.iter().skip(1) {
                let _ = writeln!(out, "  {:<10} {:<32} {:<15} {note}", "", "", "");
            }
        }
    }
    if !body.other_records.is_empty() {
        let _ = writeln!(out, "\nPossible other records of the same person");
        for record in &body.other_records {
            let _ = writeln!(out, "  {}", other_record_line(record));
        }
    }
    let _ = writeln!(out, "\n{}", summary_line(plan));
    out
}

/// The plan as a pull-request comment: a summary table, blockers, per-contact details folded.
pub fn markdown(plan: &Plan, today: jiff::civil::Date) -> String {
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
    if body.blockers.is_empty() {
        let _ = writeln!(out, "**No blockers.**\n");
    } else {
        let _ = writeln!(out, "#### Blockers\n");
        for blocker in &body.blockers {
            let at = blocker
                .contact_id
                .as_ref()
                .map(|c| format!("contact `{c}`"))
                .or_else(|| blocker.subject.map(|n| format!("subject {n}")))
                .unwrap_or_else(|| "request".to_owned());
            let _ = writeln!(out, "- :x: {at}: {}", blocker.message);
        }
        let _ = writeln!(out);
    }
    if !body.warnings.is_empty() {
        let _ = writeln!(out, "#### Warnings\n");
        for warning in by_weight(&body.warnings) {
            let mark =
                if warning.level == WarningLevel::Blocker { ":bangbang:" } else { ":warning:" };
            let _ = writeln!(out, "- {mark} {}", warning.message);
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "#### Subjects\n");
    for subject in &body.subjects {
        let _ = writeln!(out, "- {}", subject_line(subject));
    }
    let _ = writeln!(out);
    for step in &body.request_steps {
        let _ = writeln!(
            out,
            "- request step `{}` (`{}`): **{}**: {}",
            step.id,
            step.uses,
            step.status.as_str(),
            step.notes.join("; ")
        );
    }
    for contact in &body.contacts {
        let _ = writeln!(out, "\n<details><summary>{}</summary>\n", contact_heading(contact));
        let _ = writeln!(out, "| step | uses | status | notes |");
        let _ = writeln!(out, "|---|---|---|---|");
        for step in &contact.steps {
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} | {} |",
                step.id,
                step.uses,
                step.status.as_str(),
                step.notes.join("<br>")
            );
        }
        let _ = writeln!(out, "\nFingerprint `{}`\n\n</details>", contact.fingerprint);
    }
    if !body.other_records.is_empty() {
        let _ = writeln!(out, "\n#### Possible other records of the same person\n");
        for record in &body.other_records {
            let _ = writeln!(out, "- {}", other_record_line(record));
        }
    }
    out
}

/// The seed's `-count` simulation mode: how many contacts and interactions per data source
/// would be exported and deleted.
pub fn count(plan: &Plan) -> String {
    let body = &plan.body;
    let mut out = String::new();
    let exported: Vec<&ContactPlan> = body.contacts.iter().filter(|c| c.export).collect();
    let deleted: Vec<&ContactPlan> = body.contacts.iter().filter(|c| c.delete).collect();
    let per_source = |contacts: &[&ContactPlan], only: Option<&[DataSource]>| {
        let mut totals = std::collections::BTreeMap::<DataSource, u64>::new();
        for contact in contacts {
            for (source, counts) in &contact.sources {
                if only.is_none_or(|o| o.contains(source)) {
                    *totals.entry(*source).or_default() += counts.interactions;
                }
            }
        }
        totals
    };
    let export_sources = body.export.as_ref().map(|e| e.data_sources.clone());
    let _ = writeln!(out, "contacts to export: {}", exported.len());
    for (source, n) in per_source(&exported, export_sources.as_deref()) {
        let _ = writeln!(out, "interactions to export from {source}: {n}");
    }
    let _ = writeln!(out, "contacts to delete: {}", deleted.len());
    for (source, n) in per_source(&deleted, None) {
        let _ = writeln!(out, "interactions to delete from {source}: {n}");
    }
    out
}

/// The items' `Display` forms joined by `separator`.
fn joined<T: std::fmt::Display>(items: &[T], separator: &str) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(separator)
}
