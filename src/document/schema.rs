//! The JSON Schemas of the three file kinds, and their errors turned into diagnostics that point
//! at the exact key or value.

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::diagnostic::{Diagnostic, did_you_mean};
use super::yaml::SpanMap;
use super::{FileKind, pointer_to_path};

/// The schema text of a file kind, as shipped in `schemas/`.
pub fn text(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Request => include_str!("../../schemas/request.schema.json"),
        FileKind::Runbook => include_str!("../../schemas/runbook.schema.json"),
        FileKind::Environments => include_str!("../../schemas/environments.schema.json"),
    }
}

struct Compiled {
    schema: Value,
    validator: jsonschema::Validator,
}

/// The schema of a file kind as JSON, parsed once.
pub fn json(kind: FileKind) -> &'static Value {
    &compiled(kind).schema
}

fn compiled(kind: FileKind) -> &'static Compiled {
    static CELLS: [OnceLock<Compiled>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let cell = match kind {
        FileKind::Request => &CELLS[0],
        FileKind::Runbook => &CELLS[1],
        FileKind::Environments => &CELLS[2],
    };
    cell.get_or_init(|| {
        // The schemas are part of the binary and tested to compile (see the tests below), so a
        // failure here is a build defect, not a user error.
        #[allow(clippy::expect_used)]
        let schema: Value = serde_json::from_str(text(kind)).expect("shipped schema is JSON");
        #[allow(clippy::expect_used)]
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("shipped schema compiles");
        Compiled { schema, validator }
    })
}

/// Validates a document against its kind's schema; every violation becomes a diagnostic.
pub fn check(kind: FileKind, value: &Value, spans: &SpanMap) -> Vec<Diagnostic> {
    let compiled = compiled(kind);
    let mut found: Vec<(String, Diagnostic)> = Vec::new();
    for error in compiled.validator.iter_errors(value) {
        let pointer = error.instance_path().as_str().to_owned();
        let schema_path = error.schema_path().as_str().to_owned();
        let diagnostics = describe(
            error.kind(),
            error.instance(),
            &pointer,
            &compiled.schema,
            &schema_path,
            spans,
        );
        found.extend(diagnostics.into_iter().map(|d| (pointer.clone(), d)));
    }
    // `required` already says what an object lacks; its size complaint would say it again.
    let lacking: Vec<String> = found
        .iter()
        .filter(|(_, d)| d.code == "schema::missing-key")
        .map(|(pointer, _)| pointer.clone())
        .collect();
    found
        .into_iter()
        .filter(|(pointer, d)| d.code != "schema::size" || !lacking.contains(pointer))
        .map(|(_, d)| d)
        .collect()
}

/// Turns one schema violation into diagnostics (one per unexpected key).
fn describe(
    kind: &ValidationErrorKind,
    instance: &Value,
    pointer: &str,
    root: &Value,
    schema_path: &str,
    spans: &SpanMap,
) -> Vec<Diagnostic> {
    let where_ = pointer_to_path(pointer);
    let value_span = spans.find(pointer).map(|node| node.value.clone()).unwrap_or(0..0);
    let at = |message: String| Diagnostic::error("schema::invalid", message, value_span.clone());
    let one = |diagnostic: Diagnostic| vec![diagnostic];
    match kind {
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            // The sibling `properties` of the failing keyword lists what is allowed here.
            let parent = schema_path.rsplit_once('/').map_or("", |(parent, _)| parent);
            let known: Vec<String> = resolve(root, &format!("{parent}/properties"))
                .and_then(|p| p.as_object().map(|o| o.keys().cloned().collect()))
                .unwrap_or_default();
            unexpected
                .iter()
                .map(|key| {
                    let child = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                    let span = spans
                        .get(&child)
                        .and_then(|node| node.key.clone())
                        .unwrap_or_else(|| value_span.clone());
                    let container = if where_.is_empty() {
                        "the top level".to_owned()
                    } else {
                        format!("`{where_}`")
                    };
                    let mut diagnostic = Diagnostic::error(
                        "schema::unknown-key",
                        format!("unknown key `{key}` in {container}"),
                        span,
                    )
                    .label("not a known key");
                    diagnostic = match did_you_mean(key, known.iter().map(String::as_str)) {
                        Some(close) => diagnostic.help(format!("did you mean `{close}`?")),
                        None if !known.is_empty() => {
                            diagnostic.help(format!("the keys allowed here are: {}", list(&known)))
                        }
                        None => diagnostic,
                    };
                    diagnostic
                })
                .collect()
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let node = spans.find(pointer);
            let span = node
                .and_then(|node| node.key.clone())
                .or_else(|| node.map(|node| node.value.clone()))
                .unwrap_or(0..0);
            let container =
                if where_.is_empty() { "the file".to_owned() } else { format!("`{where_}`") };
            one(Diagnostic::error(
                "schema::missing-key",
                format!("{container} is missing the required key `{name}`"),
                span,
            )
            .label(format!("add `{name}` here")))
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(ty) => article(&ty.to_string()),
                TypeKind::Multiple(types) => {
                    let names: Vec<String> = types.into_iter().map(|t| t.to_string()).collect();
                    names.join(" or ")
                }
            };
            let found = found_kind(instance);
            one(at(format!("`{where_}` must be {expected}{found}"))
                .label(format!("expected {expected}")))
            .into_iter()
            .map(|d| Diagnostic { code: "schema::type", ..d })
            .collect()
        }
        ValidationErrorKind::Enum { options } => {
            let options: Vec<String> = options
                .as_array()
                .map(|o| o.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect())
                .unwrap_or_default();
            let mut diagnostic = Diagnostic::error(
                "schema::not-allowed",
                format!("`{where_}` must be one of: {}", list(&options)),
                value_span.clone(),
            )
            .label("not an allowed value");
            if let Some(close) =
                instance.as_str().and_then(|v| did_you_mean(v, options.iter().map(String::as_str)))
            {
                diagnostic = diagnostic.help(format!("did you mean `{close}`?"));
            }
            one(diagnostic)
        }
        ValidationErrorKind::Constant { expected_value } => one(Diagnostic::error(
            "schema::not-allowed",
            format!("`{where_}` must be `{}`", expected_value.as_str().unwrap_or_default()),
            value_span.clone(),
        )
        .label("not the expected value")),
        ValidationErrorKind::Pattern { pattern } => {
            let (what, help) = describe_pattern(pattern);
            one(Diagnostic::error(
                "schema::pattern",
                format!("`{where_}` {what}"),
                value_span.clone(),
            )
            .label("wrong form")
            .help(help))
        }
        ValidationErrorKind::Format { format } => {
            let what = match format.as_str() {
                "date-time" => {
                    "must be an RFC 3339 date and time with a time zone, such as `2026-11-20T10:15:00Z`"
                }
                "date" => "must be a date, such as `2026-12-20`",
                "email" => "must be an e-mail address",
                "uri" => "must be a URL, such as `https://ucs.example.com:8443/`",
                _ => "does not have the expected format",
            };
            one(Diagnostic::error(
                "schema::format",
                format!("`{where_}` {what}"),
                value_span.clone(),
            )
            .label(format!("not a valid {format}")))
        }
        ValidationErrorKind::MinItems { limit } => one(Diagnostic::error(
            "schema::size",
            format!("`{where_}` needs at least {limit} item{}", plural(*limit)),
            value_span.clone(),
        )
        .label("too few")),
        ValidationErrorKind::MaxItems { limit } => one(Diagnostic::error(
            "schema::size",
            format!("`{where_}` holds at most {limit} item{}", plural(*limit)),
            value_span.clone(),
        )),
        ValidationErrorKind::MinLength { limit } => one(Diagnostic::error(
            "schema::size",
            format!("`{where_}` needs at least {limit} character{}", plural(*limit)),
            value_span.clone(),
        )),
        ValidationErrorKind::MaxLength { limit } => one(Diagnostic::error(
            "schema::size",
            format!("`{where_}` holds at most {limit} character{}", plural(*limit)),
            value_span.clone(),
        )),
        ValidationErrorKind::MinProperties { limit } => {
            let message = if where_.ends_with(".match") {
                format!(
                    "`{where_}` needs `TenantId` and at least one contact attribute, such as `EmailAddress`"
                )
            } else {
                format!(
                    "`{where_}` needs at least {limit} entr{}",
                    if *limit == 1 { "y" } else { "ies" }
                )
            };
            one(Diagnostic::error("schema::size", message, value_span.clone()))
        }
        ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. }
            if where_.contains("subjects[") =>
        {
            let node = spans.find(pointer);
            let span = node.map(|n| n.value.clone()).unwrap_or(0..0);
            let both = matches!(kind, ValidationErrorKind::OneOfMultipleValid { .. });
            one(Diagnostic::error(
                "schema::subject",
                if both {
                    format!("`{where_}` has both `contactId` and `match`; a subject is one or the other")
                } else {
                    format!("`{where_}` needs either `contactId` or `match`")
                },
                span,
            )
            .label("this subject")
            .help("write `- contactId: 0001SaD2PVY4312K` or `- match: {TenantId: 101, EmailAddress: ...}`"))
        }
        ValidationErrorKind::UniqueItems => one(Diagnostic::error(
            "schema::unique",
            format!("`{where_}` lists the same item twice"),
            value_span.clone(),
        )),
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => one(Diagnostic::error(
            "schema::range",
            format!("`{where_}` must be at least {limit}"),
            value_span.clone(),
        )),
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => one(Diagnostic::error(
            "schema::range",
            format!("`{where_}` must be at most {limit}"),
            value_span.clone(),
        )),
        ValidationErrorKind::PropertyNames { .. } => one(Diagnostic::error(
            "schema::key-name",
            format!("`{where_}` has a key that is not a valid attribute or name"),
            value_span.clone(),
        )),
        ValidationErrorKind::Not { .. } if where_.ends_with("auth") => one(Diagnostic::error(
            "schema::auth",
            format!("`{where_}` gives both basic credentials and a bearer token; choose one"),
            value_span.clone(),
        )),
        _ => one(at(format!("`{where_}` is not valid here")).label("invalid")),
    }
}

/// What a pattern means, in words, with an example.
fn describe_pattern(pattern: &str) -> (String, String) {
    match pattern {
        "^[A-Za-z0-9]{16}$" => (
            "is not a UCS contact id".into(),
            "a contact id is exactly 16 letters and digits, such as `0001SaD2PVY4312K`".into(),
        ),
        "^[a-z0-9][a-z0-9-]{0,62}$" => (
            "is not a valid name".into(),
            "names use lowercase letters, digits and `-`, such as `forget-me-on-premise`".into(),
        ),
        "^[A-Z_][A-Z0-9_]{0,127}$" => (
            "is not an environment variable name".into(),
            "name the variable that holds the secret, such as `UCS_PASSWORD`; never the secret itself"
                .into(),
        ),
        _ => ("does not have the expected form".into(), format!("it must match `{pattern}`")),
    }
}

fn list(items: &[String]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn article(ty: &str) -> String {
    match ty {
        "object" => "a mapping".into(),
        "array" => "a list".into(),
        "integer" => "an integer".into(),
        "null" => "empty".into(),
        other => format!("a {other}"),
    }
}

/// ", found a list" and the like (the kind of the value, never the value).
fn found_kind(value: &Value) -> String {
    let found = match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    };
    format!(", not {found}")
}

/// Follows a schema location (JSON Pointer, possibly through `$ref`) into the schema.
fn resolve(root: &Value, location: &str) -> Option<Value> {
    let mut node = root;
    for raw in location.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        if segment == "$ref" {
            let target = node.get("$ref")?.as_str()?.strip_prefix('#')?;
            node = root.pointer(target)?;
            continue;
        }
        node = match node {
            Value::Object(map) => map.get(&segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node.clone())
}
