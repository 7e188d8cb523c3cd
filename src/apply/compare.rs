//! The approved plan against the plan made again from the manifest, the runbook, the policy and
//! the live state: every action-relevant field must be equal, not only the fingerprints.
//!
//! A plan id is a plain sha256 of the plan's canonical JSON, which anyone can recompute after
//! editing the file; so the id proves nothing about where a plan came from. What does is that
//! planning again gives the same plan. Contacts this plan already acted on are exempt (their
//! change is ours), and with them what is derived from them (the summary, other records,
//! warnings, the notes of request-scope steps).

use serde_json::{Map, Value};

use crate::plan::{ContactPlan, Plan, PlanBody, Resolution, SubjectResolution};

/// At most this many differences are listed; the rest are counted.
pub(crate) const MAX_LISTED: usize = 20;

/// The differences of the contacts, gathered one contact at a time as the re-check streams
/// them (at most [`MAX_LISTED`] kept, the rest counted).
#[derive(Debug, Default)]
pub(crate) struct ContactDiffs {
    listed: Vec<String>,
    more: usize,
}

impl ContactDiffs {
    /// Adds where `approved` and `fresh` (either absent) differ, under `/contacts/<id>`.
    pub(crate) fn add(&mut self, approved: Option<&ContactPlan>, fresh: Option<&ContactPlan>) {
        let value = |contact: Option<&ContactPlan>| -> Value {
            let Some(contact) = contact else { return Value::Null };
            let mut value = serde_json::to_value(contact).unwrap_or(Value::Null);
            if let Some(object) = value.as_object_mut() {
                keyed(object, "steps", "id", &|_| false);
            }
            value
        };
        let Some(id) = approved.or(fresh).map(|c| c.contact_id.as_str().to_owned()) else {
            return;
        };
        let mut out = Vec::new();
        let at = format!("/contacts/{}", id.replace('~', "~0").replace('/', "~1"));
        diff(&at, &value(approved), &value(fresh), &mut out);
        for line in out {
            if self.listed.len() < MAX_LISTED {
                self.listed.push(line);
            } else {
                self.more += 1;
            }
        }
    }
}

/// Every field where `approved` and `fresh` differ, as `pointer: approved vs re-planned` lines,
/// ignoring what concerns contacts for which `touched` says yes: everything but the contacts (whose differences, `contacts`, were gathered
/// as they streamed), merged in the order of the plan's fields; `any_touched`: whether this
/// plan already acted on any contact.
pub(crate) fn head_mismatches(
    approved: &Plan,
    fresh: &Plan,
    touched: &dyn Fn(&str) -> bool,
    any_touched: bool,
    contacts: ContactDiffs,
) -> Vec<String> {
    let exempt: std::collections::BTreeSet<usize> = approved
        .body
        .subjects
        .iter()
        .filter(|s| {
            s.contact_id.as_ref().is_some_and(|c| touched(c.as_str()))
                || match &s.outcome {
                    Resolution::Found { contacts } => contacts.iter().any(|c| touched(c.as_str())),
                    _ => false,
                }
        })
        .map(|s| s.index)
        .collect();
    // The body without its subjects and contacts as one JSON value (small); the subjects, one
    // per contact in a batch, are compared one at a time below.
    let normalize = |plan: &Plan| -> Value {
        let mut body = serde_json::to_value(without_subjects(&plan.body)).unwrap_or(Value::Null);
        if let Some(object) = body.as_object_mut() {
            object.remove("contacts");
            object.remove("subjects");
            keyed(object, "requestSteps", "id", &|_| false);
            if any_touched {
                for derived in ["summary", "otherRecords", "warnings"] {
                    object.remove(derived);
                }
                if let Some(Value::Object(steps)) = object.get_mut("requestSteps") {
                    for step in steps.values_mut() {
                        if let Some(step) = step.as_object_mut() {
                            step.remove("notes");
                        }
                    }
                }
            }
        }
        body
    };
    let mut head = Vec::new();
    diff("", &normalize(approved), &normalize(fresh), &mut head);
    // The subjects, keyed by index (as the other arrays: differences name the subject), in the
    // order the keys sort as text, the approved plan's first, then those only the fresh one
    // has; where they sort among the other fields.
    let (approved_subjects, fresh_subjects) =
        (subjects_by_index(approved, &exempt), subjects_by_index(fresh, &exempt));
    let value = |subject: Option<&SubjectResolution>| -> Value {
        subject.map_or(Value::Null, |s| serde_json::to_value(s).unwrap_or(Value::Null))
    };
    let mut subjects = Vec::new();
    let at = |index: usize| format!("/subjects/{index}");
    for subject in &approved_subjects {
        let fresh = find(&fresh_subjects, subject.index);
        diff(&at(subject.index), &value(Some(subject)), &value(fresh), &mut subjects);
    }
    for subject in fresh_subjects.iter().filter(|s| find(&approved_subjects, s.index).is_none()) {
        diff(&at(subject.index), &Value::Null, &value(Some(subject)), &mut subjects);
    }
    let split = head.iter().position(|line| line.as_str() > "/subjects").unwrap_or(head.len());
    let after = head.split_off(split);
    head.extend(subjects);
    head.extend(after);
    // The fields sort by name, and `contacts` sits among them.
    let split = head.iter().position(|line| line.as_str() > "/contacts").unwrap_or(head.len());
    let after = head.split_off(split);
    let mut out = head;
    out.extend(contacts.listed);
    out.extend(after);
    let total = out.len() + contacts.more;
    if total > MAX_LISTED {
        out.truncate(MAX_LISTED);
        out.push(format!("and {} more difference(s)", total - MAX_LISTED));
    }
    out
}

/// The plan's subjects by index, in the order the indices sort as text (as the keys of a map
/// by `index.to_string()` did, one per index, the last of a repeated one; 8 bytes a subject
/// instead of a string key and a map entry), leaving out `exempt` ones.
fn subjects_by_index<'a>(
    plan: &'a Plan,
    exempt: &std::collections::BTreeSet<usize>,
) -> Vec<&'a SubjectResolution> {
    let mut subjects: Vec<&SubjectResolution> =
        plan.body.subjects.iter().filter(|s| !exempt.contains(&s.index)).collect();
    // Stable: of a repeated index, the last stays last; reversed, `dedup` keeps it.
    subjects.sort_by_key(|s| as_text(s.index));
    subjects.reverse();
    subjects.dedup_by_key(|s| s.index);
    subjects.reverse();
    subjects
}

/// The subject of `index` among `subjects` (as [`subjects_by_index`] orders them).
fn find<'a>(subjects: &[&'a SubjectResolution], index: usize) -> Option<&'a SubjectResolution> {
    let key = as_text(index);
    subjects
        .binary_search_by(|s| as_text(s.index).cmp(&key))
        .ok()
        .and_then(|at| subjects.get(at))
        .copied()
}

/// An index's decimal digits, without allocating: they compare as `index.to_string()` does.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Digits {
    /// The digits from the first, then zero bytes (`usize::MAX` has 20 digits).
    bytes: [u8; 20],
}

fn as_text(index: usize) -> Digits {
    let mut reversed = [0u8; 20];
    let mut n = index;
    let mut len = 0;
    for slot in &mut reversed {
        *slot = b'0' + u8::try_from(n % 10).unwrap_or(0);
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut bytes = [0u8; 20];
    for (to, from) in bytes.iter_mut().zip(reversed.iter().take(len).rev()) {
        *to = *from;
    }
    Digits { bytes }
}

/// The body with no subjects and no contacts (every other field, compared whole; the
/// destructuring names every field, so a new one is compared too).
fn without_subjects(body: &PlanBody) -> PlanBody {
    let PlanBody {
        api_version,
        kind,
        request,
        environment,
        runbook,
        export,
        export_waived,
        delete,
        subjects: _,
        request_steps,
        contacts: _,
        blockers,
        other_records,
        warnings,
        summary,
    } = body;
    PlanBody {
        api_version: api_version.clone(),
        kind: kind.clone(),
        request: request.clone(),
        environment: environment.clone(),
        runbook: runbook.clone(),
        export: export.clone(),
        export_waived: *export_waived,
        delete: *delete,
        subjects: Vec::new(),
        request_steps: request_steps.clone(),
        contacts: Vec::new(),
        blockers: blockers.clone(),
        other_records: other_records.clone(),
        warnings: warnings.clone(),
        summary: summary.clone(),
    }
}

/// Turns the array `field` of `object` into an object keyed by each element's `key`, leaving out
/// the elements whose key `skip` says yes to: differences then name the contact or step, not a
/// position.
fn keyed(object: &mut Map<String, Value>, field: &str, key: &str, skip: &dyn Fn(&str) -> bool) {
    let Some(Value::Array(items)) = object.remove(field) else { return };
    let mut by_key = Map::new();
    for (position, item) in items.into_iter().enumerate() {
        let name = match item.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("#{position}"),
        };
        if !skip(&name) {
            by_key.insert(name, item);
        }
    }
    object.insert(field.to_owned(), Value::Object(by_key));
}

fn diff(pointer: &str, approved: &Value, fresh: &Value, out: &mut Vec<String>) {
    match (approved, fresh) {
        (Value::Object(a), Value::Object(f)) => {
            for (key, value) in a {
                let at = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                diff(&at, value, f.get(key).unwrap_or(&Value::Null), out);
            }
            for (key, value) in f.iter().filter(|(k, _)| !a.contains_key(*k)) {
                let at = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                diff(&at, &Value::Null, value, out);
            }
        }
        (a, f) if a == f => {}
        (a, f) => out.push(format!(
            "{pointer}: the plan says {}, planning again gives {}",
            shown(a),
            shown(f)
        )),
    }
}

/// A value as a difference shows it: short, one line (plans hold no personal data).
fn shown(value: &Value) -> String {
    let text = match value {
        Value::Null => "nothing".to_owned(),
        other => other.to_string(),
    };
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_compare_as_their_text() {
        let mut indices: Vec<usize> = (0..2_100).collect();
        indices.extend([9_999, 10_000, 99_999, 100_000, 123_456_789, usize::MAX - 1, usize::MAX]);
        for &a in &indices {
            for &b in indices.iter().step_by(7) {
                assert_eq!(
                    as_text(a).cmp(&as_text(b)),
                    a.to_string().cmp(&b.to_string()),
                    "{a} {b}"
                );
            }
        }
    }
}
