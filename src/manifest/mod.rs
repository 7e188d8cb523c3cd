//! Requests: the typed model of a data-subject request, its semantic rules, and how a request
//! file is read for planning.
//!
//! Files go through the document layer first ([`crate::document`]: YAML with spans, the
//! kind's JSON Schema, typed model), then through the rules here. Each stage adds
//! [`Diagnostic`]s to one [`FileReport`], so a file's mistakes are reported all at once. The
//! document layer's items are re-exported here, where most callers found them before it
//! existed.

pub mod model;
mod rules;
pub mod subjects_file;
pub mod target;

use std::path::Path;

pub use crate::document::{
    Annotation, Diagnostic, Document, FileKind, FileReport, Limits, Loaded, Severity,
    collect_files, detect_kind, diagnostic, load, pointer_to_path, schema, typed, yaml,
};
pub(crate) use crate::document::{key_span, value_span};
pub use model::Request;

use crate::environment::Environments;
use crate::runbook::RunbookLibrary;

/// What a request is checked against besides its own schema.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The runbooks requests may name.
    pub runbooks: &'a RunbookLibrary,
    /// The environments requests may name, when an environments file was given.
    pub environments: Option<&'a Environments>,
    /// The present, for `receivedAt` in the future.
    pub now: jiff::Timestamp,
}

/// Loads a request for planning: every error in the report, the request only when it is valid.
pub fn load_request(path: &Path, context: &Context<'_>) -> (FileReport, Option<Request>) {
    let Loaded { mut report, document } = load(path);
    let Some(document) = document else { return (report, None) };
    match detect_kind(&document) {
        Ok(FileKind::Request) => {}
        Ok(other) => {
            report.diagnostics.push(Diagnostic::error(
                "schema::wrong-kind",
                format!("this is a `{}` file, not a request", other.name()),
                document.spans.find("/kind").map(|n| n.value.clone()).unwrap_or(0..0),
            ));
            return (report, None);
        }
        Err(diagnostic) => {
            report.diagnostics.push(*diagnostic);
            return (report, None);
        }
    }
    let request = check_request(&document, &mut report, context);
    report.sort();
    let request = request.filter(|_| !report.has_errors());
    (report, request)
}

/// Checks a request document (its kind already told): schema, typed model and the rules.
/// Every diagnostic goes into `report`; the request is returned when it could be read, even
/// with rule errors (the caller decides whether errors stop it).
pub fn check_request(
    document: &Document,
    report: &mut FileReport,
    context: &Context<'_>,
) -> Option<Request> {
    let mut request = typed::<Request>(FileKind::Request, document, report);
    match &mut request {
        Some(request) => {
            let dir = report.path.parent().unwrap_or(Path::new("")).to_owned();
            report.diagnostics.extend(subjects_file::load(request, &dir, document));
            report.diagnostics.extend(rules::check_request(request, document, context));
        }
        None => report.diagnostics.extend(rules::check_names(document, context)),
    }
    request
}
