//! The bottom layer for every file the tool reads: YAML with the position of every node,
//! diagnostics located in the source, the JSON Schemas of the three kinds, and the steps every
//! file goes through before its own module reads it (load within limits, tell the kind, check
//! the schema, deserialize).
//!
//! Everything above imports this and nothing here imports anything above: `runbook` and
//! `environment` read their files through it, `manifest` adds the request model and rules, and
//! `validate` (one module up) dispatches a file of any kind to its module.

pub mod diagnostic;
pub mod schema;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

pub use diagnostic::{Annotation, Diagnostic, FileReport, Severity};
pub use yaml::{Document, Limits};

/// The kinds of file the tool reads, told apart by their `kind:` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A data-subject request.
    Request,
    /// A runbook.
    Runbook,
    /// An environments file.
    Environments,
}

impl FileKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [FileKind; 3] = [FileKind::Request, FileKind::Runbook, FileKind::Environments];

    /// The value of `kind:` in such a file.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Request => "Request",
            FileKind::Runbook => "Runbook",
            FileKind::Environments => "Environments",
        }
    }
}

/// A file read and parsed, not yet checked against a schema.
#[derive(Debug)]
pub struct Loaded {
    /// The report collecting this file's diagnostics.
    pub report: FileReport,
    /// The parsed document, when the YAML was well formed.
    pub document: Option<Document>,
}

/// Reads and parses a file within the manifest limits.
pub fn load(path: &Path) -> Loaded {
    let bytes = match read_bounded(path, Limits::MANIFEST.max_bytes) {
        Ok(bytes) => bytes,
        Err((code, message)) => {
            let mut report = FileReport::new(path, Arc::new(String::new()));
            report.diagnostics.push(Diagnostic::error(code, message, 0..0));
            return Loaded { report, document: None };
        }
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut report = FileReport::new(path, Arc::new(text));
    match yaml::load_bytes(&bytes, &Limits::MANIFEST) {
        Ok(document) => Loaded { report, document: Some(document) },
        Err(errors) => {
            report.diagnostics.extend(errors.into_iter().map(|error| {
                let mut diagnostic =
                    Diagnostic::error(error.kind.code(), error.message, error.span)
                        .label(error.label);
                if let Some((span, label)) = error.related {
                    diagnostic = diagnostic.related(span, label);
                }
                diagnostic
            }));
            Loaded { report, document: None }
        }
    }
}

/// Reads at most `limit` bytes plus one, so a huge file is refused without reading it all.
fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, (&'static str, String)> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| ("io::read", format!("cannot read the file: {e}"));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut bytes).map_err(unreadable)?;
    if bytes.len() > limit {
        return Err((
            yaml::YamlErrorKind::TooLarge.code(),
            format!(
                "the file is larger than the limit of {limit} bytes; a manifest is a few kilobytes"
            ),
        ));
    }
    Ok(bytes)
}

/// The kind a document declares, or a diagnostic saying why it has none.
pub fn detect_kind(document: &Document) -> Result<FileKind, Box<Diagnostic>> {
    let span =
        |pointer: &str| document.spans.find(pointer).map(|n| n.value.clone()).unwrap_or(0..0);
    let Some(map) = document.value.as_object() else {
        return Err(Box::new(Diagnostic::error(
            "schema::not-a-mapping",
            "the file must be a YAML mapping with `apiVersion`, `kind`, `metadata` ...",
            span(""),
        )));
    };
    let Some(kind) = map.get("kind") else {
        return Err(Box::new(Diagnostic::error(
            "schema::missing-kind",
            "the file has no `kind:`, so it is not known what it is",
            span(""),
        )
        .help("start the file with `apiVersion: ucs-gdpr/v1` and `kind: Request`, `Runbook` or `Environments`")));
    };
    let name = kind.as_str().unwrap_or_default();
    FileKind::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
        let names = FileKind::ALL.map(FileKind::name);
        let mut diagnostic = Diagnostic::error(
            "schema::unknown-kind",
            "`kind` must be `Request`, `Runbook` or `Environments`",
            span("/kind"),
        )
        .label("unknown kind");
        if let Some(close) = diagnostic::did_you_mean(name, names) {
            diagnostic = diagnostic.help(format!("did you mean `{close}`?"));
        }
        Box::new(diagnostic)
    })
}

/// Checks a document against the schema of `kind` and deserializes it into `T`.
pub fn typed<T: DeserializeOwned>(
    kind: FileKind,
    document: &Document,
    report: &mut FileReport,
) -> Option<T> {
    let errors = schema::check(kind, &document.value, &document.spans);
    if !errors.is_empty() {
        report.diagnostics.extend(errors);
        return None;
    }
    match serde_json::from_value::<T>(document.value.clone()) {
        Ok(value) => Some(value),
        Err(error) => {
            // The schema admits only what the model reads; this is the model's own check
            // (a date that passes the format but is out of range, say).
            report.diagnostics.push(Diagnostic::error(
                "schema::invalid",
                format!("the file passes the schema but cannot be read: {error}"),
                0..0,
            ));
            None
        }
    }
}

/// Walks `paths` (files, and directories for `*.yaml`/`*.yml`), sorted, each file once.
///
/// # Errors
/// A path that does not exist or a directory that cannot be read.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| (path.clone(), e))?;
        if meta.is_dir() {
            walk(path, &mut files).map_err(|e| (path.clone(), e))?;
        } else {
            files.push(path.clone());
        }
    }
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            walk(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml") {
            files.push(path);
        }
    }
    Ok(())
}

/// `/spec/subjects/0/match` as `spec.subjects[0].match`, for messages.
pub fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&segment);
        }
    }
    out
}

/// The span of the value at `pointer`, or of its nearest ancestor.
pub(crate) fn value_span(document: &Document, pointer: &str) -> std::ops::Range<usize> {
    document.spans.find(pointer).map(|n| n.value.clone()).unwrap_or(0..0)
}

/// The span of the key naming the node at `pointer`, or else of its value.
pub(crate) fn key_span(document: &Document, pointer: &str) -> std::ops::Range<usize> {
    document
        .spans
        .get(pointer)
        .and_then(|n| n.key.clone())
        .unwrap_or_else(|| value_span(document, pointer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_read_as_paths() {
        assert_eq!(pointer_to_path("/spec/subjects/0/match"), "spec.subjects[0].match");
        assert_eq!(pointer_to_path(""), "");
    }

    #[test]
    fn every_schema_is_valid_2020_12() {
        for kind in FileKind::ALL {
            let schema = schema::json(kind);
            assert!(jsonschema::draft202012::meta::is_valid(schema), "{}", kind.name());
        }
    }
}
