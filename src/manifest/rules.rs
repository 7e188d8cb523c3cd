//! The rules a request must follow beyond its schema, each with its own code.

use std::collections::HashMap;

use super::diagnostic::did_you_mean;
use super::model::{Request, Subject};
use super::{Context, Diagnostic, Document, key_span, value_span};

/// How far in the future `receivedAt` may be before it is an error (clock skew).
const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// Checks a request that passed its schema.
pub(super) fn check_request(
    request: &Request,
    document: &Document,
    context: &Context<'_>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let spec = &request.spec;
    out.extend(no_subjects(document));
    duplicate_subjects(request, document, &mut out);
    holds(request, document, &mut out);
    dates(request, document, context, &mut out);

    out.extend(unknown_environment(&spec.environment, document, context));

    if let Some(delete) = &spec.delete
        && !delete.confirm
    {
        out.push(
            Diagnostic::warning(
                "request::delete-unconfirmed",
                "`delete` is not confirmed: apply will only report what it would delete",
                key_span(document, "/spec/delete"),
            )
            .label("no `confirm: true`")
            .help("add `confirm: true` under `delete` once the request is approved for erasure"),
        );
    }
    if spec.export.is_some() && spec.export_waiver.is_some() {
        out.push(
            Diagnostic::warning(
                "request::waiver-with-export",
                "the request both exports and waives the export; the waiver has no effect",
                key_span(document, "/spec/exportWaiver"),
            )
            .label("remove this, or remove `export`"),
        );
    }

    let Some(runbook) = context.runbooks.get(&spec.runbook) else {
        out.extend(unknown_runbook(&spec.runbook, document, context));
        return out;
    };
    if runbook.deletes() && spec.export.is_none() && spec.export_waiver.is_none() {
        out.push(
            Diagnostic::error(
                "request::erasure-without-export",
                format!(
                    "the runbook `{}` deletes, but the request neither exports nor waives the export",
                    runbook.name
                ),
                key_span(document, "/spec"),
            )
            .label("no `export` and no `exportWaiver`")
            .help(
                "an erasure without an export must be a decision: add `export:` to keep a copy, \
                 or `exportWaiver: {reason: ...}` to record why none is kept",
            ),
        );
    }
    if !runbook.deletes() && spec.delete.is_some() {
        out.push(
            Diagnostic::error(
                "request::delete-not-in-runbook",
                format!(
                    "the runbook `{}` never deletes, but the request has a `delete` section",
                    runbook.name
                ),
                key_span(document, "/spec/delete"),
            )
            .label("nothing would be deleted")
            .help("remove `delete`, or choose a forget-me runbook"),
        );
    }
    if !runbook.exports() && spec.export.is_some() {
        out.push(
            Diagnostic::error(
                "request::export-not-in-runbook",
                format!(
                    "the runbook `{}` has no export step, but the request asks for an export",
                    runbook.name
                ),
                key_span(document, "/spec/export"),
            )
            .label("nothing would be exported"),
        );
    }
    out
}

/// The name checks, on a request that failed its schema: a typo in a runbook or environment
/// name is worth reporting alongside the schema's findings.
pub(super) fn check_names(document: &Document, context: &Context<'_>) -> Vec<Diagnostic> {
    let name = |pointer: &str| document.value.pointer(pointer).and_then(serde_json::Value::as_str);
    let mut out: Vec<Diagnostic> = no_subjects(document).into_iter().collect();
    if let Some(environment) = name("/spec/environment") {
        out.extend(unknown_environment(environment, document, context));
    }
    if let Some(runbook) = name("/spec/runbook") {
        out.extend(unknown_runbook(runbook, document, context));
    }
    out
}

/// A request about nobody: a `spec` with neither `subjects` nor `subjectsFile`. Checked on the
/// document, so it is reported with the schema's errors too (a misspelt `subject:`).
fn no_subjects(document: &Document) -> Option<Diagnostic> {
    let spec = document.value.pointer("/spec")?.as_object()?;
    if spec.contains_key("subjects") || spec.contains_key("subjectsFile") {
        return None;
    }
    Some(
        Diagnostic::error(
            "request::no-subjects",
            "`spec` names no data subject: it has neither `subjects` nor `subjectsFile`",
            key_span(document, "/spec"),
        )
        .label("add `subjects` (or `subjectsFile`) here")
        .help(
            "list the contacts under `subjects`, or name a file of contact ids in `subjectsFile`",
        ),
    )
}

fn unknown_environment(
    name: &str,
    document: &Document,
    context: &Context<'_>,
) -> Option<Diagnostic> {
    let environments = context.environments?;
    if environments.get(name).is_some() {
        return None;
    }
    let diagnostic = Diagnostic::error(
        "request::unknown-environment",
        format!("there is no environment named `{name}` in the environments file"),
        value_span(document, "/spec/environment"),
    )
    .label("unknown environment");
    Some(match did_you_mean(name, environments.names()) {
        Some(close) => diagnostic.help(format!("did you mean `{close}`?")),
        None => diagnostic.help(format!(
            "the environments are: {}",
            environments.names().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        )),
    })
}

fn unknown_runbook(name: &str, document: &Document, context: &Context<'_>) -> Option<Diagnostic> {
    if context.runbooks.get(name).is_some() {
        return None;
    }
    let diagnostic = Diagnostic::error(
        "request::unknown-runbook",
        format!("there is no runbook named `{name}`"),
        value_span(document, "/spec/runbook"),
    )
    .label("unknown runbook");
    Some(match did_you_mean(name, context.runbooks.names()) {
        Some(close) => diagnostic.help(format!("did you mean `{close}`?")),
        None => diagnostic.help(format!(
            "the runbooks are: {}",
            context.runbooks.names().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        )),
    })
}

fn duplicate_subjects(request: &Request, document: &Document, out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, subject) in request.spec.subjects.iter().enumerate() {
        let identity = match subject {
            Subject::Contact { contact_id } => format!("id:{contact_id}"),
            Subject::Match { criteria, .. } => {
                // Attribute names and values, normalised: e-mail addresses are case-insensitive.
                let normal: Vec<String> = criteria
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.to_string().to_lowercase()))
                    .collect();
                format!("match:{}", normal.join("&"))
            }
        };
        match seen.get(&identity) {
            Some(first) => out.push(
                Diagnostic::error(
                    "request::duplicate-subject",
                    format!("subject {} repeats subject {}", index + 1, first + 1),
                    value_span(document, &format!("/spec/subjects/{index}")),
                )
                .label("the same subject again")
                .related(value_span(document, &format!("/spec/subjects/{first}")), "first here")
                .help("list each contact once"),
            ),
            None => {
                seen.insert(identity, index);
            }
        }
    }
}

fn holds(request: &Request, document: &Document, out: &mut Vec<Diagnostic>) {
    let spec = &request.spec;
    // With a `match` subject, a held contact may be one of its results: only plan can tell.
    let any_match = spec.subjects.iter().any(|s| matches!(s, Subject::Match { .. }));
    for (index, hold) in spec.holds.iter().enumerate() {
        let named = spec.subjects.iter().any(
            |s| matches!(s, Subject::Contact { contact_id } if *contact_id == hold.contact_id),
        );
        if !named && !any_match {
            out.push(
                Diagnostic::warning(
                    "request::hold-not-subject",
                    "this hold names a contact that is not one of the subjects",
                    value_span(document, &format!("/spec/holds/{index}/contactId")),
                )
                .label("not a subject")
                .help("a hold only matters for a contact the request would otherwise touch"),
            );
        }
    }
}

fn dates(request: &Request, document: &Document, context: &Context<'_>, out: &mut Vec<Diagnostic>) {
    let metadata = &request.metadata;
    if metadata.received_at > context.now + CLOCK_SKEW {
        out.push(
            Diagnostic::error(
                "request::received-in-future",
                "`receivedAt` is in the future",
                value_span(document, "/metadata/receivedAt"),
            )
            .label("later than now")
            .help("use the time the request actually arrived, with its time zone"),
        );
    }
    let Some(deadline) = metadata.deadline else { return };
    let received = metadata.received_at.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    if deadline < received {
        out.push(
            Diagnostic::error(
                "request::deadline-before-received",
                "`deadline` is before `receivedAt`",
                value_span(document, "/metadata/deadline"),
            )
            .label("before the request arrived")
            .related(value_span(document, "/metadata/receivedAt"), "received here"),
        );
    } else if received
        .checked_add(jiff::Span::new().months(3))
        .is_ok_and(|latest| deadline > latest)
    {
        out.push(
            Diagnostic::error(
                "request::deadline-too-late",
                "`deadline` is more than three months after `receivedAt`",
                value_span(document, "/metadata/deadline"),
            )
            .label("too late")
            .help("Art. 12(3) GDPR allows one month, extended by at most two further months"),
        );
    }
}
