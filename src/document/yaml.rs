//! YAML loading with positions: YAML 1.2 text to a `serde_json::Value` plus the source span of
//! every node, within limits that make hostile files fail fast.
//!
//! The loader consumes `saphyr-parser` events one at a time instead of building saphyr's own tree,
//! because three things must be decided at the event: an alias is charged against the node budget
//! *before* it is expanded (so a billion-laughs file fails in bounded memory), a duplicate key is
//! reported at its second occurrence, and a second document is refused where it starts.

use std::collections::HashMap;
use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

/// Bounds on what a file may make the loader do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted file, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of mappings and sequences.
    pub max_depth: usize,
    /// Most nodes the document may expand to, aliases counted at their full expanded size.
    pub max_nodes: usize,
}

impl Limits {
    /// The limits for manifests, runbooks and environments files.
    pub const MANIFEST: Limits = Limits { max_bytes: 8 << 20, max_depth: 64, max_nodes: 1_000_000 };
}

impl Default for Limits {
    fn default() -> Self {
        Self::MANIFEST
    }
}

/// What went wrong while loading, each kind with its own diagnostic code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YamlErrorKind {
    /// The file is larger than [`Limits::max_bytes`].
    TooLarge,
    /// The file is not UTF-8.
    NotUtf8,
    /// The file holds no document (nothing, or only comments).
    Empty,
    /// The YAML itself is malformed.
    Syntax,
    /// A second document (`---`) follows the first.
    MultipleDocuments,
    /// A key appears twice in one mapping.
    DuplicateKey,
    /// Nesting deeper than [`Limits::max_depth`].
    TooDeep,
    /// Aliases expand to more than [`Limits::max_nodes`] nodes.
    AliasBomb,
    /// An alias names an anchor that is not defined before it.
    UnknownAnchor,
    /// A mapping key that is itself a mapping or a sequence.
    ComplexKey,
    /// A value JSON cannot hold (`.inf`, `.nan`, an integer out of range, an unknown tag).
    Unrepresentable,
}

impl YamlErrorKind {
    /// The stable diagnostic code of this kind.
    pub fn code(self) -> &'static str {
        match self {
            Self::TooLarge => "yaml::too-large",
            Self::NotUtf8 => "yaml::not-utf8",
            Self::Empty => "yaml::empty",
            Self::Syntax => "yaml::syntax",
            Self::MultipleDocuments => "yaml::multiple-documents",
            Self::DuplicateKey => "yaml::duplicate-key",
            Self::TooDeep => "yaml::too-deep",
            Self::AliasBomb => "yaml::alias-expansion",
            Self::UnknownAnchor => "yaml::unknown-anchor",
            Self::ComplexKey => "yaml::complex-key",
            Self::Unrepresentable => "yaml::unrepresentable",
        }
    }
}

/// A loading error with the byte range it points at in the original file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// What kind of mistake this is.
    pub kind: YamlErrorKind,
    /// The message, in plain words; never quotes the file's values.
    pub message: String,
    /// Byte range in the file the error points at.
    pub span: Range<usize>,
    /// What the label on the span says.
    pub label: String,
    /// Another place worth showing (the first occurrence of a duplicate key).
    pub related: Option<(Range<usize>, String)>,
}

/// Where a node sits in the file, by JSON Pointer (RFC 6901) of the loaded value.
#[derive(Debug, Clone, Default)]
pub struct SpanMap {
    nodes: HashMap<String, NodeSpan>,
}

/// The source positions of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpan {
    /// The node's value (for a mapping or sequence: from its first to its last child).
    pub value: Range<usize>,
    /// The key naming the node, when its parent is a mapping.
    pub key: Option<Range<usize>>,
}

impl SpanMap {
    /// The span of the node at `pointer`, or of its nearest ancestor that has one (nodes inside an
    /// expanded alias point at the alias).
    pub fn find(&self, pointer: &str) -> Option<&NodeSpan> {
        let mut pointer = pointer;
        loop {
            if let Some(span) = self.nodes.get(pointer) {
                return Some(span);
            }
            let cut = pointer.rfind('/')?;
            pointer = pointer.get(..cut)?;
        }
    }

    /// The span of exactly the node at `pointer`.
    pub fn get(&self, pointer: &str) -> Option<&NodeSpan> {
        self.nodes.get(pointer)
    }
}

/// A loaded YAML document.
#[derive(Debug, Clone)]
pub struct Document {
    /// The document as JSON.
    pub value: Value,
    /// Where each node came from.
    pub spans: SpanMap,
}

/// Loads YAML into JSON with default limits, for data files that need no positions.
///
/// # Errors
/// The first error the file has, with its position.
pub fn parse_value(text: &str) -> Result<Value, YamlError> {
    let limits = Limits { max_bytes: usize::MAX, ..Limits::MANIFEST };
    load_str(text, &limits).map(|document| document.value).map_err(|mut errors| errors.remove(0))
}

/// Loads a file's bytes: checks size and encoding first, then parses.
///
/// # Errors
/// Every error found, at least one. Loading goes on past a duplicate key so that all of them are
/// reported at once; any other error ends it.
pub fn load_bytes(bytes: &[u8], limits: &Limits) -> Result<Document, Vec<YamlError>> {
    if bytes.len() > limits.max_bytes {
        return Err(vec![YamlError {
            kind: YamlErrorKind::TooLarge,
            message: format!(
                "the file is {} bytes, more than the limit of {} bytes",
                bytes.len(),
                limits.max_bytes
            ),
            span: 0..0,
            label: "this file".into(),
            related: None,
        }]);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => load_str(text, limits),
        Err(error) => {
            let at = error.valid_up_to();
            Err(vec![YamlError {
                kind: YamlErrorKind::NotUtf8,
                message: format!("the file is not UTF-8: invalid byte at offset {at}"),
                span: at..at,
                label: "not UTF-8".into(),
                related: None,
            }])
        }
    }
}

/// Loads YAML text. A byte-order mark and CRLF line ends are accepted.
///
/// # Errors
/// As [`load_bytes`].
pub fn load_str(text: &str, limits: &Limits) -> Result<Document, Vec<YamlError>> {
    let (body, base) = match text.strip_prefix('\u{feff}') {
        Some(rest) => (rest, '\u{feff}'.len_utf8()),
        None => (text, 0),
    };
    let mut loader = Loader {
        text: body,
        base,
        cursor: CharCursor::default(),
        limits: *limits,
        stack: Vec::new(),
        anchors: HashMap::new(),
        spans: SpanMap::default(),
        nodes: 0,
        errors: Vec::new(),
        root: None,
        documents: 0,
    };
    loader.run();
    if !loader.errors.is_empty() {
        return Err(loader.errors);
    }
    match loader.root {
        Some(value) => Ok(Document { value, spans: loader.spans }),
        None => Err(vec![YamlError {
            kind: YamlErrorKind::Empty,
            message: "the file is empty: it holds no YAML document".into(),
            span: 0..text.len(),
            label: "nothing here".into(),
            related: None,
        }]),
    }
}

/// Converts the parser's character offsets to byte offsets by walking from the last position,
/// which is cheap because events arrive in file order.
#[derive(Debug, Default)]
struct CharCursor {
    chars: usize,
    bytes: usize,
}

impl CharCursor {
    fn byte_of(&mut self, text: &str, char_index: usize) -> usize {
        if char_index < self.chars {
            // Rare: restart from the beginning rather than walk UTF-8 backwards.
            *self = Self::default();
        }
        let rest = text.get(self.bytes..).unwrap_or_default();
        let step = char_index - self.chars;
        let advance = rest.char_indices().nth(step).map_or(rest.len(), |(at, _)| at);
        self.chars = char_index;
        self.bytes += advance;
        self.bytes
    }
}

/// A mapping or sequence being built.
#[derive(Debug)]
enum Frame {
    Mapping {
        map: Map<String, Value>,
        /// Each key's span, to point back at the first of a duplicate pair.
        key_spans: HashMap<String, Range<usize>>,
        /// The key waiting for its value, with its span.
        pending_key: Option<(String, Range<usize>)>,
        /// Set while skipping the value of a duplicate or complex key.
        skip_value: bool,
        pointer: String,
        start: usize,
        end: usize,
        anchor: usize,
        nodes: usize,
    },
    Sequence {
        items: Vec<Value>,
        pointer: String,
        start: usize,
        end: usize,
        anchor: usize,
        nodes: usize,
    },
}

impl Frame {
    fn pointer(&self) -> &str {
        match self {
            Frame::Mapping { pointer, .. } | Frame::Sequence { pointer, .. } => pointer,
        }
    }
}

#[derive(Debug)]
struct Loader<'a> {
    text: &'a str,
    /// Bytes before `text` in the file (a byte-order mark).
    base: usize,
    cursor: CharCursor,
    limits: Limits,
    stack: Vec<Frame>,
    /// Anchored nodes with their expanded node count.
    anchors: HashMap<usize, (Value, usize)>,
    spans: SpanMap,
    nodes: usize,
    errors: Vec<YamlError>,
    root: Option<Value>,
    documents: usize,
}

/// Why loading stopped early.
#[derive(Debug)]
struct Stop;

impl Loader<'_> {
    fn run(&mut self) {
        let mut parser = Parser::new_from_str(self.text);
        while let Some(event) = parser.next_event() {
            let step = match event {
                Ok((event, span)) => self.on_event(event, span),
                Err(error) => {
                    let at = self.byte(error.marker().index());
                    // The scanner has its own, deeper, nesting bound; report it as ours.
                    let kind = if error.info().contains("recursion limit") {
                        YamlErrorKind::TooDeep
                    } else {
                        YamlErrorKind::Syntax
                    };
                    self.fail(
                        kind,
                        format!(
                            "this is not valid YAML: {} (line {}, column {})",
                            error.info(),
                            error.marker().line(),
                            error.marker().col() + 1
                        ),
                        at..at,
                        "the YAML parser stopped here",
                    )
                }
            };
            if step.is_err() {
                return;
            }
        }
    }

    fn byte(&mut self, char_index: usize) -> usize {
        self.base + self.cursor.byte_of(self.text, char_index)
    }

    fn range(&mut self, span: Span) -> Range<usize> {
        let start = self.byte(span.start.index());
        let end = self.byte(span.end.index());
        start..end.max(start)
    }

    fn fail(
        &mut self,
        kind: YamlErrorKind,
        message: String,
        span: Range<usize>,
        label: &str,
    ) -> Result<(), Stop> {
        self.errors.push(YamlError { kind, message, span, label: label.into(), related: None });
        Err(Stop)
    }

    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<(), Stop> {
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    let at = self.range(span);
                    return self.fail(
                        YamlErrorKind::MultipleDocuments,
                        "the file holds more than one YAML document; put each in its own file"
                            .into(),
                        at,
                        "a second document starts here",
                    );
                }
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                let range = self.range(span);
                let tag = tag.map(|tag| format!("{}{}", tag.handle, tag.suffix));
                let value = match scalar_value(&text, style, tag.as_deref()) {
                    Ok(value) => value,
                    Err(why) => {
                        return self.fail(YamlErrorKind::Unrepresentable, why, range, "here");
                    }
                };
                self.node(value, 1, anchor, range)
            }
            Event::Alias(anchor) => {
                let range = self.range(span);
                let Some((value, count)) = self.anchors.get(&anchor) else {
                    return self.fail(
                        YamlErrorKind::UnknownAnchor,
                        "this alias names an anchor that is not defined before it".into(),
                        range,
                        "unknown anchor",
                    );
                };
                let count = *count;
                // Charged before the clone: the expansion never happens when it is too big.
                if self.nodes.saturating_add(count) > self.limits.max_nodes {
                    return self.fail(
                        YamlErrorKind::AliasBomb,
                        format!(
                            "aliases expand this document to more than {} nodes; \
                             is it a billion-laughs file?",
                            self.limits.max_nodes
                        ),
                        range,
                        "this alias would exceed the limit",
                    );
                }
                let value = value.clone();
                self.node(value, count, 0, range)
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let range = self.range(span);
                if self.stack.len() >= self.limits.max_depth {
                    return self.fail(
                        YamlErrorKind::TooDeep,
                        format!("nesting is deeper than the limit of {}", self.limits.max_depth),
                        range,
                        "too deep",
                    );
                }
                self.charge(1, range.clone())?;
                let pointer = match self.child_pointer(range.clone())? {
                    Some(pointer) => pointer,
                    // The value of a skipped key: parsed but thrown away.
                    None => String::from("\u{0}skip"),
                };
                let frame = if matches!(event, Event::MappingStart(..)) {
                    Frame::Mapping {
                        map: Map::new(),
                        key_spans: HashMap::new(),
                        pending_key: None,
                        skip_value: false,
                        pointer,
                        start: range.start,
                        end: range.end,
                        anchor,
                        nodes: 1,
                    }
                } else {
                    Frame::Sequence {
                        items: Vec::new(),
                        pointer,
                        start: range.start,
                        end: range.end,
                        anchor,
                        nodes: 1,
                    }
                };
                self.stack.push(frame);
                Ok(())
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(frame) = self.stack.pop() else { return Ok(()) };
                let end_here = self.range(span).end;
                let (value, start, end, anchor, nodes, pointer) = match frame {
                    Frame::Mapping { map, start, end, anchor, nodes, pointer, .. } => {
                        (Value::Object(map), start, end, anchor, nodes, pointer)
                    }
                    Frame::Sequence { items, start, end, anchor, nodes, pointer } => {
                        (Value::Array(items), start, end, anchor, nodes, pointer)
                    }
                };
                // Flow collections end at their closing bracket; block ones at their last child.
                let end =
                    if self.text_at(end..end_here).trim().is_empty() { end } else { end_here };
                if let Some(node) = self.spans.nodes.get_mut(&pointer) {
                    node.value = start..end.max(start);
                }
                self.attach(value, nodes, anchor, start..end)
            }
        }
    }

    fn text_at(&self, range: Range<usize>) -> &str {
        let start = range.start.saturating_sub(self.base);
        let end = range.end.saturating_sub(self.base);
        self.text.get(start..end).unwrap_or_default()
    }

    /// Registers the span of a node about to start and returns its pointer, or `None` when the
    /// node is the value of a skipped key.
    fn child_pointer(&mut self, range: Range<usize>) -> Result<Option<String>, Stop> {
        let pointer = match self.stack.last_mut() {
            None => Some((String::new(), None)),
            Some(Frame::Sequence { items, pointer, .. }) => {
                Some((format!("{pointer}/{}", items.len()), None))
            }
            Some(Frame::Mapping { pending_key, skip_value, pointer, .. }) => {
                if *skip_value {
                    None
                } else if let Some((key, key_span)) = pending_key {
                    Some((format!("{pointer}/{}", escape_pointer(key)), Some(key_span.clone())))
                } else {
                    // A mapping or sequence in key position.
                    *skip_value = true;
                    self.errors.push(YamlError {
                        kind: YamlErrorKind::ComplexKey,
                        message: "a mapping key must be a plain value, not a mapping or a list"
                            .into(),
                        span: range,
                        label: "complex key".into(),
                        related: None,
                    });
                    return Err(Stop);
                }
            }
        };
        if self.stack.iter().any(|frame| frame.pointer().starts_with('\u{0}')) {
            return Ok(None);
        }
        Ok(pointer.map(|(pointer, key)| {
            self.spans.nodes.insert(pointer.clone(), NodeSpan { value: range, key });
            pointer
        }))
    }

    /// Places a scalar or an alias.
    fn node(
        &mut self,
        value: Value,
        count: usize,
        anchor: usize,
        range: Range<usize>,
    ) -> Result<(), Stop> {
        // A scalar in key position becomes the pending key.
        if let Some(Frame::Mapping { pending_key, skip_value, key_spans, .. }) =
            self.stack.last_mut()
            && pending_key.is_none()
            && !*skip_value
        {
            let key = match value {
                Value::String(key) => key,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            if let Some(first) = key_spans.get(&key) {
                let first = first.clone();
                self.errors.push(YamlError {
                    kind: YamlErrorKind::DuplicateKey,
                    message: format!("the key `{key}` appears twice in this mapping"),
                    span: range.clone(),
                    label: "second occurrence".into(),
                    related: Some((first, "first occurrence".into())),
                });
                *skip_value = true;
            }
            key_spans.entry(key.clone()).or_insert_with(|| range.clone());
            *pending_key = Some((key, range));
            return Ok(());
        }
        self.charge(count, range.clone())?;
        self.child_pointer(range.clone())?;
        self.attach(value, count, anchor, range)
    }

    /// Hands a finished node to its parent (or makes it the document).
    fn attach(
        &mut self,
        value: Value,
        count: usize,
        anchor: usize,
        range: Range<usize>,
    ) -> Result<(), Stop> {
        if anchor != 0 {
            self.anchors.insert(anchor, (value.clone(), count));
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(value);
                Ok(())
            }
            Some(Frame::Sequence { items, end, nodes, .. }) => {
                items.push(value);
                *end = range.end;
                *nodes = nodes.saturating_add(count);
                Ok(())
            }
            Some(Frame::Mapping { map, pending_key, skip_value, end, nodes, .. }) => {
                let key = pending_key.take();
                *end = range.end;
                if std::mem::take(skip_value) {
                    return Ok(());
                }
                if let Some((key, _)) = key {
                    map.insert(key, value);
                }
                *nodes = nodes.saturating_add(count);
                Ok(())
            }
        }
    }

    /// Charges new nodes (a scalar, a collection, an alias's full expansion) against the budget.
    fn charge(&mut self, count: usize, range: Range<usize>) -> Result<(), Stop> {
        self.nodes = self.nodes.saturating_add(count);
        if self.nodes > self.limits.max_nodes {
            return self.fail(
                YamlErrorKind::AliasBomb,
                format!("the document expands to more than {} nodes", self.limits.max_nodes),
                range,
                "the limit is exceeded here",
            );
        }
        Ok(())
    }
}

/// Escapes a key for a JSON Pointer (RFC 6901).
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Resolves a scalar by the YAML 1.2 core schema; quoted and block scalars are strings.
fn scalar_value(text: &str, style: ScalarStyle, tag: Option<&str>) -> Result<Value, String> {
    match tag {
        None => {}
        Some("!!str" | "tag:yaml.org,2002:str") => return Ok(Value::String(text.to_owned())),
        Some("!!int" | "tag:yaml.org,2002:int" | "!!float" | "tag:yaml.org,2002:float") => {
            return plain_scalar(text)
                .filter(Value::is_number)
                .ok_or_else(|| "this value is tagged as a number but is not one".to_owned());
        }
        Some("!!bool" | "tag:yaml.org,2002:bool") => {
            return plain_scalar(text)
                .filter(Value::is_boolean)
                .ok_or_else(|| "this value is tagged as a boolean but is not one".to_owned());
        }
        Some("!!null" | "tag:yaml.org,2002:null") => return Ok(Value::Null),
        Some(other) => return Err(format!("the tag `{other}` is not supported here")),
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_owned()));
    }
    match plain_scalar(text) {
        Some(value) => Ok(value),
        None => Err(format!("`{text}` is a number JSON cannot represent")),
    }
}

/// A plain scalar by the YAML 1.2 core schema; `None` for numbers JSON cannot hold.
fn plain_scalar(text: &str) -> Option<Value> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => return None,
        _ => {}
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(n) => Some(Value::Number(n.into())),
            Err(_) => match text.parse::<u64>() {
                Ok(n) => Some(Value::Number(n.into())),
                Err(_) => None,
            },
        };
    }
    // `0x1F` and `0o17` are integers only when every digit fits the base; `0oYWD5Bq33vFqv89`
    // (a contact id) is a string.
    for (prefix, radix) in [("0x", 16), ("0o", 8)] {
        if let Some(digits) = text.strip_prefix(prefix)
            && !digits.is_empty()
            && digits.chars().all(|c| c.is_digit(radix))
        {
            return u64::from_str_radix(digits, radix).ok().map(|n| Value::Number(n.into()));
        }
    }
    if is_yaml_float(text) {
        return text.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number);
    }
    Some(Value::String(text.to_owned()))
}

/// The core schema's float form: `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`.
fn is_yaml_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (body.get(..at).unwrap_or_default(), body.get(at + 1..)),
        None => (body, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => {
            (!whole.is_empty() || !fraction.is_empty())
                && whole.bytes().all(|b| b.is_ascii_digit())
                && fraction.bytes().all(|b| b.is_ascii_digit())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(text: &str) -> Document {
        load_str(text, &Limits::MANIFEST).unwrap()
    }

    fn error(text: &str) -> YamlError {
        load_str(text, &Limits::MANIFEST).unwrap_err().remove(0)
    }

    #[test]
    fn scalars_follow_the_yaml_1_2_core_schema() {
        let doc = load(
            "a: 1\nb: -2\nc: 1.5\nd: true\ne: ~\nf: yes\ng: '1'\nh: 0x1F\ni: 2026-11-20\nj: 1e3\n",
        );
        assert_eq!(
            doc.value,
            json!({"a":1,"b":-2,"c":1.5,"d":true,"e":null,"f":"yes","g":"1","h":31,
                   "i":"2026-11-20","j":1000.0})
        );
    }

    #[test]
    fn ids_that_start_like_hex_or_octal_numbers_are_strings() {
        let doc = load("a: 0oYWD5Bq33vFqv89\nb: 0xZZ\nc: 0o17\nd: 0x\n");
        assert_eq!(doc.value, json!({"a":"0oYWD5Bq33vFqv89","b":"0xZZ","c":15,"d":"0x"}));
    }

    #[test]
    fn every_node_has_its_span_and_key_span() {
        let text = "spec:\n  subjects:\n    - contactId: X\n";
        let doc = load(text);
        let node = doc.spans.get("/spec/subjects/0/contactId").unwrap();
        assert_eq!(&text[node.value.clone()], "X");
        assert_eq!(&text[node.key.clone().unwrap()], "contactId");
        let subjects = doc.spans.get("/spec/subjects").unwrap();
        assert_eq!(&text[subjects.key.clone().unwrap()], "subjects");
        assert_eq!(doc.spans.find("/spec/subjects/0/contactId/deeper").unwrap(), node);
    }

    #[test]
    fn spans_are_byte_offsets_even_after_multibyte_text() {
        let text = "\u{feff}name: \"Zoë Ærø 😀\"\nnext: value\n";
        let doc = load(text);
        let node = doc.spans.get("/next").unwrap();
        assert_eq!(&text[node.value.clone()], "value");
    }

    #[test]
    fn crlf_line_ends_are_accepted() {
        let doc = load("a: 1\r\nb:\r\n  - x\r\n");
        assert_eq!(doc.value, json!({"a":1,"b":["x"]}));
    }

    #[test]
    fn a_duplicate_key_is_reported_at_its_second_occurrence() {
        let text = "a: 1\nb: 2\na: 3\n";
        let err = error(text);
        assert_eq!(err.kind, YamlErrorKind::DuplicateKey);
        assert_eq!(err.span, 10..11);
        assert_eq!(err.related.unwrap().0, 0..1);
    }

    #[test]
    fn all_duplicate_keys_are_reported_at_once() {
        let errors = load_str("a: 1\na: 2\nb: 1\nb: {x: 1}\n", &Limits::MANIFEST).unwrap_err();
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn a_billion_laughs_file_fails_fast() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..20 {
            let prev = level - 1;
            text.push_str(&format!(
                "a{level}: &a{level} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, \
                 *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let err = error(&text);
        assert_eq!(err.kind, YamlErrorKind::AliasBomb);
        // Generous: the point is that it fails instead of expanding 10^20 nodes.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn aliases_within_the_budget_expand() {
        let doc = load("base: &b {k: v}\nother: *b\n");
        assert_eq!(doc.value, json!({"base":{"k":"v"},"other":{"k":"v"}}));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(error(&text).kind, YamlErrorKind::TooDeep);
    }

    #[test]
    fn a_second_document_is_refused() {
        assert_eq!(error("a: 1\n---\nb: 2\n").kind, YamlErrorKind::MultipleDocuments);
    }

    #[test]
    fn an_empty_file_is_refused() {
        assert_eq!(error("").kind, YamlErrorKind::Empty);
        assert_eq!(error("# only a comment\n").kind, YamlErrorKind::Empty);
    }

    #[test]
    fn non_utf8_and_oversized_files_are_refused_before_parsing() {
        let errors = load_bytes(b"a: \xff\n", &Limits::MANIFEST).unwrap_err();
        assert_eq!(errors[0].kind, YamlErrorKind::NotUtf8);
        assert_eq!(errors[0].span, 3..3);
        let small = Limits { max_bytes: 4, ..Limits::MANIFEST };
        assert_eq!(load_bytes(b"a: 12345\n", &small).unwrap_err()[0].kind, YamlErrorKind::TooLarge);
    }

    #[test]
    fn syntax_errors_point_at_the_parser_stop() {
        let err = error("a: [1, 2\nb: 3\n");
        assert_eq!(err.kind, YamlErrorKind::Syntax);
    }

    #[test]
    fn infinity_is_not_representable() {
        assert_eq!(error("a: .inf\n").kind, YamlErrorKind::Unrepresentable);
    }

    #[test]
    fn complex_keys_are_refused() {
        assert_eq!(error("? [a, b]\n: c\n").kind, YamlErrorKind::ComplexKey);
    }

    #[test]
    fn parse_value_gives_json() {
        assert_eq!(parse_value("x: [1, two]").unwrap(), json!({"x":[1,"two"]}));
    }
}
