//! Validation of a file of any kind: the one place that knows every kind, above the modules
//! that own each kind (`manifest` for requests, `runbook`, `environment`), so none of them
//! needs to import another to tell what a file is.

use std::path::Path;

use crate::document::{self, FileKind, FileReport, Loaded};
use crate::environment::Environments;
use crate::manifest::{self, Context};
use crate::runbook::Runbook;

/// The result of validating one file.
#[derive(Debug)]
pub struct Validated {
    /// Every diagnostic of the file.
    pub report: FileReport,
    /// The kind, when it could be told.
    pub kind: Option<FileKind>,
}

/// Validates one file of any kind: schema, typed model and semantic rules.
pub fn file(path: &Path, context: &Context<'_>) -> Validated {
    let Loaded { mut report, document } = document::load(path);
    let Some(document) = document else { return Validated { report, kind: None } };
    let kind = match document::detect_kind(&document) {
        Ok(kind) => kind,
        Err(diagnostic) => {
            report.diagnostics.push(*diagnostic);
            return Validated { report, kind: None };
        }
    };
    match kind {
        FileKind::Request => {
            manifest::check_request(&document, &mut report, context);
        }
        FileKind::Runbook => {
            if let Some(runbook) = Runbook::from_document(&document, &mut report, None) {
                report.diagnostics.extend(runbook.check(&document.spans));
            }
        }
        FileKind::Environments => {
            if let Some(environments) =
                document::typed::<Environments>(kind, &document, &mut report)
            {
                report.diagnostics.extend(environments.check(path, &document.spans));
            }
        }
    }
    report.sort();
    Validated { report, kind: Some(kind) }
}
