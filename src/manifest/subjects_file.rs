//! `spec.subjectsFile`: contact ids from a file beside the manifest, for batches that do not fit
//! a manifest (a retention purge of 100,000 contacts is 1.9 MB of ids, more as YAML).
//!
//! Two forms, told apart by the first line:
//! - one contact id per line;
//! - a CSV (RFC 4180: comma-separated, fields may be quoted, `""` inside quotes) whose header row
//!   names the column of ids: `contactId` (any case; `contact_id`, `Contact Id` too).
//!
//! Blank lines are skipped; a UTF-8 byte-order mark and CR LF line ends are accepted. Each id is
//! checked as a `contactId` subject is (16 letters or digits), and an id listed twice, in the
//! file or also in `spec.subjects`, is an error, each with its line (`ids.csv:12`). No cell's
//! text is ever repeated in a message: a mistyped id may be an e-mail address, and the other
//! columns of an export from a CRM are personal data.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;

use super::model::{Request, Subject, SubjectsFileInfo};
use super::{Diagnostic, Document, value_span};
use crate::ucs::ContactId;

/// The largest subjects file read: a million ids with a few other columns.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The most ids a subjects file may list.
pub const MAX_SUBJECTS: usize = 1_000_000;

/// Errors reported one by one before the rest are only counted.
const MAX_REPORTED: usize = 20;

/// Reads and checks the subjects file of `request`, if it names one, relative to
/// `manifest_dir`. When the file is sound its ids are appended to `spec.subjects` as `contactId`
/// subjects and `request.subjects_file` records it; otherwise the request is left as it was and
/// the diagnostics say why, each naming the file and line.
pub(super) fn load(
    request: &mut Request,
    manifest_dir: &Path,
    document: &Document,
) -> Vec<Diagnostic> {
    let Some(name) = request.spec.subjects_file.clone() else { return Vec::new() };
    let span = value_span(document, "/spec/subjectsFile");
    let error = |code: &'static str, message: String| {
        Diagnostic::error(code, message, span.clone()).label("this file")
    };
    let path = manifest_dir.join(&name);
    let bytes = match read_bounded(&path) {
        Ok(bytes) => bytes,
        Err(ReadError::Io(e)) => {
            return vec![
                error("request::subjects-file-unreadable", format!("cannot read `{name}`: {e}"))
                    .help("the path is relative to the manifest's folder"),
            ];
        }
        Err(ReadError::TooLarge) => {
            return vec![
                error(
                    "request::subjects-file-too-large",
                    format!("`{name}` is larger than the limit of {MAX_BYTES} bytes"),
                )
                .help("split the batch into several requests"),
            ];
        }
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return vec![error(
            "request::subjects-file-not-text",
            format!("`{name}` is not UTF-8 text"),
        )];
    };
    let parsed = parse(text);
    let mut more = parsed.more_problems;
    let mut problems: Vec<(usize, String)> = parsed.problems;
    if let Some(line) = parsed.missing_column {
        problems.push((
            line,
            "the header row names no `contactId` column, and the line is not a contact id"
                .to_owned(),
        ));
    }
    let mut inline: HashMap<&str, usize> = HashMap::new();
    for (index, subject) in request.spec.subjects.iter().enumerate() {
        if let Subject::Contact { contact_id } = subject {
            inline.entry(contact_id.as_str()).or_insert(index + 1);
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(parsed.ids.len());
    for (line, id) in &parsed.ids {
        let why = if let Some(subject) = inline.get(id.as_str()) {
            format!("repeats subject {subject} of the manifest")
        } else if let Some(first) = seen.insert(id.as_str(), *line) {
            seen.insert(id.as_str(), first);
            format!("repeats line {first}")
        } else {
            continue;
        };
        if problems.len() < MAX_KEPT {
            problems.push((*line, why));
        } else {
            more += 1;
        }
    }
    if parsed.ids.len() > MAX_SUBJECTS {
        problems.push((
            parsed.ids.get(MAX_SUBJECTS).map_or(0, |(line, _)| *line),
            format!("more than {MAX_SUBJECTS} contact ids: split the batch into several requests"),
        ));
    }
    if parsed.ids.is_empty() && problems.is_empty() {
        return vec![error(
            "request::subjects-file-empty",
            format!("`{name}` lists no contact id"),
        )];
    }
    if !problems.is_empty() || more > 0 {
        problems.sort();
        let mut out: Vec<Diagnostic> = problems
            .iter()
            .take(MAX_REPORTED)
            .map(|(line, why)| {
                error("request::subjects-file-invalid", format!("`{name}` line {line}: {why}"))
            })
            .collect();
        let unreported = problems.len().saturating_sub(MAX_REPORTED) + more;
        if unreported > 0 {
            out.push(error(
                "request::subjects-file-invalid",
                format!("`{name}`: {unreported} more line(s) with problems"),
            ));
        }
        return out;
    }
    let count = parsed.ids.len() as u64;
    request
        .spec
        .subjects
        .extend(parsed.ids.into_iter().map(|(_, id)| Subject::Contact { contact_id: id }));
    request.subjects_file = Some(SubjectsFileInfo {
        path: name,
        sha256: crate::canonical::sha256_hex(&bytes),
        subjects: count,
    });
    Vec::new()
}

enum ReadError {
    Io(std::io::Error),
    TooLarge,
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

/// Problems kept with their text; beyond, only counted (a 64 MiB file of garbage stays small).
const MAX_KEPT: usize = 1_000;

/// What a subjects file holds: ids with their (1-based) lines, and problems by line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    ids: Vec<(usize, String)>,
    problems: Vec<(usize, String)>,
    /// Problems beyond the first [`MAX_KEPT`], counted only.
    more_problems: usize,
    /// The line of a header row that names no id column.
    missing_column: Option<usize>,
}

impl Parsed {
    fn problem(&mut self, line: usize, why: String) {
        if self.problems.len() < MAX_KEPT {
            self.problems.push((line, why));
        } else {
            self.more_problems += 1;
        }
    }
}

/// Whether a header cell names the id column.
fn names_id_column(cell: &str) -> bool {
    let normal: String = cell.chars().filter(|c| !matches!(c, '_' | '-' | ' ')).collect::<String>();
    normal.eq_ignore_ascii_case("contactid")
}

fn parse(text: &str) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parsed = Parsed::default();
    let mut lines =
        text.lines().enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim().is_empty());
    let Some((first_line, first)) = lines.next() else { return parsed };
    // The first line decides the form: an id alone means a plain list, anything else a header.
    let column = if ContactId::new(first.trim()).is_ok() {
        parsed.ids.push((first_line, first.trim().to_owned()));
        None
    } else {
        match split(first) {
            Ok(cells) => match cells.iter().position(|c| names_id_column(c.trim())) {
                Some(column) => Some(column),
                None => {
                    parsed.missing_column = Some(first_line);
                    return parsed;
                }
            },
            Err(why) => {
                parsed.problem(first_line, why.to_owned());
                return parsed;
            }
        }
    };
    for (line, text) in lines {
        let cell = match column {
            None => Ok(text.trim().to_owned()),
            Some(column) => split(text).and_then(|cells| {
                cells.into_iter().nth(column).ok_or("the line has no cell in the id column")
            }),
        };
        match cell {
            Ok(cell) => match ContactId::new(cell.trim()) {
                Ok(_) => parsed.ids.push((line, cell.trim().to_owned())),
                Err(why) => parsed.problem(line, why.to_string()),
            },
            Err(why) => parsed.problem(line, why.to_owned()),
        }
    }
    parsed
}

/// The cells of one CSV line (RFC 4180 quoting; a quoted field may not span lines here).
fn split(line: &str) -> Result<Vec<String>, &'static str> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => {
                quoted = true;
                at_start = false;
            }
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => {
                quoted = false;
                if chars.peek().is_some_and(|next| *next != ',') {
                    return Err("text after a closing quote");
                }
            }
            (false, ',') => {
                cells.push(std::mem::take(&mut cell));
                at_start = true;
            }
            (_, c) => {
                cell.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("a quoted cell is not closed on its line");
    }
    cells.push(cell);
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0001SaD2PVY4312K";
    const B: &str = "0001SaD2PVY4315J";

    fn ids(parsed: &Parsed) -> Vec<(usize, &str)> {
        parsed.ids.iter().map(|(l, id)| (*l, id.as_str())).collect()
    }

    #[test]
    fn a_plain_list_gives_its_ids_with_their_lines() {
        let parsed = parse(&format!("\u{feff}{A}\r\n\r\n  {B}  \r\n"));
        assert_eq!(ids(&parsed), [(1, A), (3, B)]);
        assert!(parsed.problems.is_empty());
    }

    #[test]
    fn a_csv_header_names_the_id_column_and_quoting_is_understood() {
        let text =
            format!("name,Contact_Id,note\n\"Doe, Jane\",{A},x\n\"said \"\"hi\"\"\",\"{B}\",\n");
        let parsed = parse(&text);
        assert_eq!(ids(&parsed), [(2, A), (3, B)]);
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
    }

    #[test]
    fn problems_name_their_lines_and_never_the_cell_text() {
        let text = format!("contactId,email\n{A},a@b.c\njane.doe@company.com,x\n\"open,\n");
        let parsed = parse(&text);
        assert_eq!(ids(&parsed), [(2, A)]);
        assert_eq!(parsed.problems.len(), 2);
        assert_eq!(parsed.problems[0].0, 3);
        assert_eq!(parsed.problems[1].0, 4);
        for (_, why) in &parsed.problems {
            assert!(!why.contains("jane") && !why.contains('@'), "{why}");
        }
    }

    #[test]
    fn a_header_without_an_id_column_is_named() {
        let parsed = parse(&format!("name,email\nx,{A}\n"));
        assert_eq!(parsed.missing_column, Some(1));
        assert!(parsed.ids.is_empty());
    }
}
