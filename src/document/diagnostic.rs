//! Diagnostics: what is wrong, where, and how to fix it; rendered by miette for people and as
//! JSON for CI annotations.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};
use serde::Serialize;

/// How serious a diagnostic is: errors fail `validate`, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file cannot be used as it is.
    Error,
    /// The file can be used, but probably does not do what its author meant.
    Warning,
}

/// One finding in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// A stable code such as `schema::unknown-key` or `request::duplicate-subject`.
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// The message in plain words. Never quotes personal data from the file.
    pub message: String,
    /// The byte range the diagnostic is about.
    pub span: Range<usize>,
    /// What the label on the span says.
    pub label: String,
    /// A hint on how to fix it.
    pub help: Option<String>,
    /// Other places worth showing, with their labels.
    pub related: Vec<(Range<usize>, String)>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(code: &'static str, message: impl Into<String>, span: Range<usize>) -> Self {
        Self {
            code,
            severity: Severity::Error,
            message: message.into(),
            span,
            label: "here".into(),
            help: None,
            related: Vec::new(),
        }
    }

    /// A warning at `span`.
    pub fn warning(code: &'static str, message: impl Into<String>, span: Range<usize>) -> Self {
        Self { severity: Severity::Warning, ..Self::error(code, message, span) }
    }

    /// Sets the label on the span.
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Adds a hint.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a secondary span.
    #[must_use]
    pub fn related(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }
}

/// Every diagnostic of one file, with the file's text so each can show its line.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The file as the user named it.
    pub path: PathBuf,
    /// The file's text (empty when it could not be read as text).
    pub source: Arc<String>,
    /// What was found, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl FileReport {
    /// A report on `path` with no findings yet.
    pub fn new(path: &Path, source: Arc<String>) -> Self {
        Self { path: path.to_owned(), source, diagnostics: Vec::new() }
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    /// Sorts the findings by position, errors before warnings at the same place.
    pub fn sort(&mut self) {
        self.diagnostics.sort_by(|a, b| {
            (a.span.start, a.severity, a.code).cmp(&(b.span.start, b.severity, b.code))
        });
    }

    /// Each finding as a miette diagnostic that renders with its source line.
    pub fn rendered(&self) -> impl Iterator<Item = Rendered<'_>> {
        let source = Arc::new(Source::new(self.path.display().to_string(), &self.source));
        self.diagnostics.iter().map(move |diagnostic| Rendered {
            diagnostic,
            source: Arc::clone(&source),
            source_len: self.source.len(),
        })
    }

    /// Each finding as a record for CI annotations, with 1-based lines and columns.
    pub fn annotations(&self) -> Vec<Annotation> {
        let lines = LineIndex::new(&self.source);
        self.diagnostics
            .iter()
            .map(|d| {
                let (line, column) = lines.position(&self.source, d.span.start);
                let (end_line, end_column) = lines.position(&self.source, d.span.end);
                Annotation {
                    file: self.path.display().to_string(),
                    line,
                    column,
                    end_line,
                    end_column,
                    severity: d.severity,
                    code: d.code,
                    message: d.message.clone(),
                }
            })
            .collect()
    }
}

/// A diagnostic as CI tools take it (`--format json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotation {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line of the start.
    pub line: usize,
    /// 1-based column (in characters) of the start.
    pub column: usize,
    /// 1-based line of the end.
    pub end_line: usize,
    /// 1-based column (in characters) just past the end.
    pub end_column: usize,
    /// `error` or `warning`.
    pub severity: Severity,
    /// The stable code.
    pub code: &'static str,
    /// The message.
    pub message: String,
}

/// Line starts of a text, to turn byte offsets into lines and columns.
#[derive(Debug)]
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts =
            std::iter::once(0).chain(text.match_indices('\n').map(|(at, _)| at + 1)).collect();
        Self { starts }
    }

    fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|&start| start <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column =
            text.get(start..offset).map_or(0, |s| s.trim_start_matches('\u{feff}').chars().count());
        (line, column + 1)
    }
}

/// A file's text for miette, with its line starts, so that showing a diagnostic's lines costs
/// the lines shown, not the text before them.
///
/// miette's own `SourceCode for str` walks the text from its first byte to find a span's line,
/// which made rendering N diagnostics of a file O(N × file size): 40,000 unknown keys took 31 s.
/// Here each span's lines are cut out by binary search over the line starts, and miette's own
/// walk runs on that window only (so the output is the same, byte for byte); its line numbers
/// are shifted back by the lines before the window.
#[derive(Debug)]
struct Source {
    name: String,
    text: Arc<String>,
    /// Where each line starts, with miette's line breaks: `\n`, `\r\n` and a lone `\r`.
    starts: Vec<usize>,
}

impl Source {
    fn new(name: String, text: &Arc<String>) -> Self {
        let bytes = text.as_bytes();
        let mut starts = vec![0];
        let mut at = 0;
        while let Some(&byte) = bytes.get(at) {
            at += 1;
            match byte {
                b'\n' => starts.push(at),
                b'\r' if bytes.get(at) == Some(&b'\n') => {}
                b'\r' => starts.push(at),
                _ => {}
            }
        }
        Self { name, text: Arc::clone(text), starts }
    }

    /// The 0-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset).saturating_sub(1)
    }
}

impl SourceCode for Source {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        // A window of whole lines with a line to spare on each side of what miette shows.
        let first = self.line_of(span.offset()).saturating_sub(context_lines_before + 1);
        let last = self.line_of(span.offset() + span.len()) + context_lines_after + 2;
        let start = self.starts.get(first).copied().unwrap_or(0);
        let end = self.starts.get(last).copied().unwrap_or(self.text.len());
        let window = self.text.as_bytes().get(start..end).ok_or(MietteError::OutOfBounds)?;
        let inner = SourceSpan::new(span.offset().saturating_sub(start).into(), span.len());
        let contents = window.read_span(&inner, context_lines_before, context_lines_after)?;
        let shown =
            SourceSpan::new((contents.span().offset() + start).into(), contents.span().len());
        Ok(Box::new(
            MietteSpanContents::new_named(
                self.name.clone(),
                contents.data(),
                shown,
                contents.line() + first,
                contents.column(),
                contents.line_count() + first,
            )
            .with_language("yaml"),
        ))
    }
}

/// One diagnostic bound to its file, for miette.
#[derive(Debug)]
pub struct Rendered<'a> {
    diagnostic: &'a Diagnostic,
    source: Arc<Source>,
    source_len: usize,
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Rendered<'_> {}

impl miette::Diagnostic for Rendered<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diagnostic.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diagnostic.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        (self.source_len > 0).then_some(self.source.as_ref() as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.source_len == 0 {
            return None;
        }
        let clamp = |span: &Range<usize>| {
            let start = span.start.min(self.source_len);
            let end = span.end.clamp(start, self.source_len);
            (start, end - start)
        };
        let primary = std::iter::once(LabeledSpan::new_primary_with_span(
            Some(self.diagnostic.label.clone()),
            clamp(&self.diagnostic.span),
        ));
        let related =
            self.diagnostic.related.iter().map(move |(span, label)| {
                LabeledSpan::new_with_span(Some(label.clone()), clamp(span))
            });
        Some(Box::new(primary.chain(related)))
    }
}

/// The known name closest to `word`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_lowercase();
    known
        .into_iter()
        .map(|candidate| (edit_distance(&word_lower, &candidate.to_lowercase()), candidate))
        .filter(|(distance, candidate)| {
            *distance <= 2.max(candidate.chars().count() / 3)
                && *distance < candidate.chars().count()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(0);
            let left = row.get(j).copied().unwrap_or(0);
            let cost = usize::from(ca != *cb);
            let best = (diagonal + cost).min(above + 1).min(left + 1);
            diagonal = above;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = best;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_close_keys_only() {
        let known = ["subjects", "export", "delete", "holds", "runbook", "environment"];
        assert_eq!(did_you_mean("subject", known), Some("subjects"));
        assert_eq!(did_you_mean("Subjetcs", known), Some("subjects"));
        assert_eq!(did_you_mean("expotr", known), Some("export"));
        assert_eq!(did_you_mean("banana", known), None);
        assert_eq!(did_you_mean("x", ["y"]), None);
    }

    /// A diagnostic with one label, rendered from `source`, as the binary renders it.
    fn render(source: &dyn SourceCode, span: (usize, usize)) -> String {
        struct Probe<'a>(&'a dyn SourceCode, (usize, usize));
        impl fmt::Debug for Probe<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Probe")
            }
        }
        impl fmt::Display for Probe<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("probe")
            }
        }
        impl std::error::Error for Probe<'_> {}
        impl miette::Diagnostic for Probe<'_> {
            fn source_code(&self) -> Option<&dyn SourceCode> {
                Some(self.0)
            }
            fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
                Some(Box::new(std::iter::once(LabeledSpan::new_primary_with_span(
                    Some("here".into()),
                    self.1,
                ))))
            }
        }
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .render_report(&mut out, &Probe(source, span))
            .unwrap();
        out
    }

    #[test]
    fn the_windowed_source_renders_exactly_as_the_whole_text_does() {
        // Every span of every text, against miette's own walk over the whole text.
        let texts = [
            "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: 6\ng: 7\n",
            "a: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n",
            "a: 1\rb: 2\rc: 3\rd: 4\re: 5",
            "\u{feff}a: 1\n\n\nb: é\n  c: [x, y]\nd: 4",
            "single line, no newline",
            "\n\n\n\n",
        ];
        for text in texts {
            let shared = Arc::new(text.to_owned());
            let windowed = Source::new("f.yaml".into(), &shared);
            let whole =
                miette::NamedSource::new("f.yaml", Arc::clone(&shared)).with_language("yaml");
            for start in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                for end in (start..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                    let span = (start, end - start);
                    assert_eq!(
                        render(&windowed, span),
                        render(&whole, span),
                        "{text:?} at {span:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn positions_are_one_based_in_characters() {
        let text = "a: 1\nbé: xyz\n";
        let index = LineIndex::new(text);
        assert_eq!(index.position(text, 0), (1, 1));
        let at = text.find("xyz").unwrap();
        assert_eq!(index.position(text, at), (2, 5));
    }
}
