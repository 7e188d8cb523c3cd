//! `validate`'s findings in the formats CI systems read: GitHub Actions workflow commands,
//! SARIF 2.1.0 (code scanning) and JUnit XML (test reports).
//!
//! Messages never quote values from the files (see `manifest`), so none of these carries
//! personal data.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::manifest::{Annotation, FileReport, Severity};

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// GitHub Actions workflow commands, one line per finding: `::error file=F,line=L,...::MESSAGE`.
/// Format: docs.github.com/actions/reference/workflow-commands-for-github-actions (property
/// values escape `%`, CR, LF, `:` and `,`; the message escapes `%`, CR and LF).
pub(crate) fn github(reports: &[FileReport]) -> String {
    fn data(text: &str) -> String {
        text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
    }
    fn property(text: &str) -> String {
        data(text).replace(':', "%3A").replace(',', "%2C")
    }
    let mut out = String::new();
    for annotation in reports.iter().flat_map(FileReport::annotations) {
        let _ = writeln!(
            out,
            "::{} file={},line={},col={},endLine={},endColumn={},title={}::{}",
            severity_word(annotation.severity),
            property(&annotation.file),
            annotation.line,
            annotation.column,
            annotation.end_line,
            annotation.end_column,
            property(annotation.code),
            data(&annotation.message)
        );
    }
    out
}

/// One SARIF 2.1.0 log (docs.oasis-open.org/sarif/sarif/v2.1.0): one run, a rule per code,
/// a result per finding with its region (1-based lines and columns, end column exclusive).
pub(crate) fn sarif(reports: &[FileReport]) -> Value {
    let annotations: Vec<Annotation> = reports.iter().flat_map(FileReport::annotations).collect();
    let mut codes: Vec<&str> = annotations.iter().map(|a| a.code).collect();
    codes.sort_unstable();
    codes.dedup();
    let rules: Vec<Value> = codes.iter().map(|code| json!({ "id": code, "name": code })).collect();
    let results: Vec<Value> = annotations
        .iter()
        .map(|a| {
            json!({
                "ruleId": a.code,
                "ruleIndex": codes.iter().position(|c| *c == a.code),
                "level": severity_word(a.severity),
                "message": { "text": a.message },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": a.file.replace('\\', "/") },
                        "region": {
                            "startLine": a.line,
                            "startColumn": a.column,
                            "endLine": a.end_line,
                            "endColumn": a.end_column,
                        }
                    }
                }]
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "ucs-gdpr",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// JUnit XML: a test case per file checked, failing with its errors (one `<failure>` listing
/// them all, each as `file:line:column: code: message`); warnings go to its `<system-out>`.
pub(crate) fn junit(reports: &[FileReport]) -> String {
    let failed = reports.iter().filter(|r| r.has_errors()).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"ucs-gdpr validate\" tests=\"{}\" failures=\"{failed}\">",
        reports.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"ucs-gdpr validate\" tests=\"{}\" failures=\"{failed}\" errors=\"0\">",
        reports.len()
    );
    for report in reports {
        let file = report.path.display().to_string();
        let annotations = report.annotations();
        let line = |a: &Annotation| {
            format!("{}:{}:{}: {}: {}", a.file, a.line, a.column, a.code, a.message)
        };
        let (errors, warnings): (Vec<&Annotation>, Vec<&Annotation>) =
            annotations.iter().partition(|a| a.severity == Severity::Error);
        let _ =
            write!(out, "    <testcase classname=\"ucs-gdpr.validate\" name=\"{}\"", xml(&file));
        if errors.is_empty() && warnings.is_empty() {
            out.push_str("/>\n");
            continue;
        }
        out.push_str(">\n");
        if let Some(first) = errors.first() {
            let body: Vec<String> = errors.iter().map(|a| xml(&line(a))).collect();
            let _ = writeln!(
                out,
                "      <failure type=\"{}\" message=\"{} error(s); first: {}\">{}</failure>",
                xml(first.code),
                errors.len(),
                xml(&first.message),
                body.join("\n")
            );
        }
        if !warnings.is_empty() {
            let body: Vec<String> =
                warnings.iter().map(|a| xml(&format!("warning: {}", line(a)))).collect();
            let _ = writeln!(out, "      <system-out>{}</system-out>", body.join("\n"));
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
