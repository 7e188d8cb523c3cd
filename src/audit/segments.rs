//! The audit log segments of one sharded run, checked together.
//!
//! Each shard of a plan writes its own segment (see [`crate::shard`]), each its own hash chain;
//! each run of a shard opens with a `shard.start` record that binds the plan, the shard
//! (`reason: shard-I-of-N`) and its contacts (`count`, and `sha256` over their sorted ids).
//! [`verify_segments`] checks:
//!
//! - each segment on its own ([`verify_file`]: hashes, links, sequence numbers);
//! - each starts with a `shard.start`, and all of them name the same plan and the same count N;
//! - shards `0..N-1` are each present exactly once;
//! - every contact a segment records is its shard's, and no contact is in two segments;
//! - each shard covers exactly the contacts its `shard.start` bound (a contact is covered when
//!   the segment has an outcome of one of its steps, for the plan): the digest of the covered
//!   ids equals the bound one. Given the plan's contact ids, the missing ones are named, and
//!   every contact of the plan must be covered.
//!
//! Faults name shards, files, counts and contact ids: never personal data.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{AuditError, AuditRecord, Event, VerifyOptions, VerifyReport, verify_file};
use crate::shard::{Shard, contacts_digest};

/// At most this many contact ids are listed in one fault; the rest are counted.
const MAX_IDS: usize = 20;

/// What was found about one segment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentReport {
    /// The file.
    pub path: PathBuf,
    /// The shard its `shard.start` names (`shard-I-of-N`).
    pub shard: Option<String>,
    /// The plan its `shard.start` names.
    pub plan_id: Option<String>,
    /// The chain on its own.
    pub verify: VerifyReport,
    /// Contacts the segment covers.
    pub contacts: u64,
    /// Contacts its latest `shard.start` bound.
    pub bound: Option<u64>,
}

/// One thing wrong with the segments taken together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentFault {
    /// A stable code: `segment-faulty`, `not-a-segment`, `plans-differ`, `counts-differ`,
    /// `shard-missing`, `shard-duplicated`, `contact-in-wrong-shard`, `contact-duplicated`,
    /// `contacts-missing`, `contacts-unbound`.
    pub kind: &'static str,
    /// The shard it concerns (`I/N`), when one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The contacts it concerns (at most 20 listed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    /// What is wrong, in a sentence.
    pub message: String,
}

/// The result of checking a run's segments together.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentsReport {
    /// Whether every check passed.
    pub ok: bool,
    /// The plan all segments name (when they agree).
    pub plan_id: Option<String>,
    /// The shard count (when they agree).
    pub shards: Option<u32>,
    /// Each segment, in the order given.
    pub segments: Vec<SegmentReport>,
    /// Contacts covered, over every segment.
    pub contacts: u64,
    /// Every fault.
    pub faults: Vec<SegmentFault>,
}

/// A `shard.start` as read: the plan, the shard's label, its contacts' count and digest.
type Start = (Option<String>, Option<String>, Option<u64>, Option<String>);

/// One segment for the checks across segments: its shard, the contacts it covers for the
/// run's plan, and what its last `shard.start` bound (count, digest).
type Part = (Option<Shard>, BTreeSet<String>, Option<(u64, String)>);

/// What one segment's records say, read in one streaming pass.
#[derive(Debug, Default)]
struct Scan {
    first: Option<Event>,
    /// Each `shard.start`.
    starts: Vec<Start>,
    /// Contacts with a step outcome, per plan.
    covered: BTreeMap<String, BTreeSet<String>>,
}

fn scan(path: &Path) -> Result<Scan, AuditError> {
    let io =
        |source| AuditError::Io { action: "read the audit log", path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut out = Scan::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            break;
        }
        // A line that is not a record is `verify_file`'s to report.
        let Ok(record) = serde_json::from_slice::<AuditRecord>(trim(&line)) else { continue };
        if out.first.is_none() {
            out.first = Some(record.event);
        }
        let plan = record.plan_id.as_ref().map(|p| p.as_str().to_owned());
        if record.event == Event::ShardStart {
            let detail = record.detail.as_ref();
            out.starts.push((
                plan,
                detail.and_then(|d| d.reason.as_ref()).map(|r| r.as_str().to_owned()),
                detail.and_then(|d| d.count),
                detail.and_then(|d| d.sha256.as_ref()).map(|s| s.as_str().to_owned()),
            ));
        } else if record.event.is_step_outcome()
            && let (Some(plan), Some(contact), Some(_)) = (plan, &record.contact, &record.step)
        {
            out.covered.entry(plan).or_default().insert(contact.as_str().to_owned());
        }
    }
    Ok(out)
}

fn trim(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn listed<'a>(ids: impl IntoIterator<Item = &'a String>) -> (Vec<String>, usize) {
    let all: Vec<&String> = ids.into_iter().collect();
    let shown = all.iter().take(MAX_IDS).map(|s| (*s).clone()).collect();
    (shown, all.len())
}

fn more(total: usize) -> String {
    if total > MAX_IDS {
        format!(" (the first {MAX_IDS} of {total} listed)")
    } else {
        String::new()
    }
}

/// Checks the segments `paths` of one sharded run together (see the module). `plan_contacts`,
/// when given, are the ids of every contact of the plan: the missing ones are then named.
///
/// # Errors
/// A segment that cannot be read.
pub fn verify_segments(
    paths: &[PathBuf],
    plan_contacts: Option<&BTreeSet<String>>,
) -> Result<SegmentsReport, AuditError> {
    let mut faults = Vec::new();
    let mut segments = Vec::new();
    // Per segment: its shard and the contacts it covers for the run's plan.
    let mut parts: Vec<Part> = Vec::new();
    for path in paths {
        let verify = verify_file(path, &VerifyOptions::default())?;
        let scan = scan(path)?;
        let shown = path.display();
        if !verify.ok {
            faults.push(SegmentFault {
                kind: "segment-faulty",
                shard: None,
                contacts: Vec::new(),
                message: format!(
                    "{shown} does not verify on its own ({} fault(s)); `ucs-gdpr audit verify \
                     {shown}` lists them",
                    verify.faults.len()
                ),
            });
        }
        if scan.first != Some(Event::ShardStart) {
            faults.push(SegmentFault {
                kind: "not-a-segment",
                shard: None,
                contacts: Vec::new(),
                message: format!(
                    "{shown} is not a shard's segment: its first record is {}, not shard.start",
                    scan.first.map_or("missing", Event::as_str)
                ),
            });
        }
        let plans: BTreeSet<&str> = scan.starts.iter().filter_map(|s| s.0.as_deref()).collect();
        let labels: BTreeSet<&str> = scan.starts.iter().filter_map(|s| s.1.as_deref()).collect();
        if plans.len() > 1 || labels.len() > 1 {
            faults.push(SegmentFault {
                kind: "not-a-segment",
                shard: None,
                contacts: Vec::new(),
                message: format!(
                    "{shown} holds runs of {} plan(s) and {} shard(s): a segment is one shard of \
                     one plan",
                    plans.len(),
                    labels.len()
                ),
            });
        }
        let last = scan.starts.last();
        let plan_id = last.and_then(|s| s.0.clone());
        let label = last.and_then(|s| s.1.clone());
        let shard = label.as_deref().and_then(Shard::from_label);
        if label.is_some() && shard.is_none() {
            faults.push(SegmentFault {
                kind: "not-a-segment",
                shard: None,
                contacts: Vec::new(),
                message: format!("{shown}: its shard.start names no shard of the form I/N"),
            });
        }
        let covered =
            plan_id.as_ref().and_then(|p| scan.covered.get(p)).cloned().unwrap_or_default();
        let bound = last.and_then(|s| Some((s.2?, s.3.clone()?)));
        segments.push(SegmentReport {
            path: path.clone(),
            shard: label,
            plan_id,
            verify,
            contacts: covered.len() as u64,
            bound: bound.as_ref().map(|b| b.0),
        });
        parts.push((shard, covered, bound));
    }

    let plans: BTreeSet<&str> = segments.iter().filter_map(|s| s.plan_id.as_deref()).collect();
    if plans.len() > 1 {
        faults.push(SegmentFault {
            kind: "plans-differ",
            shard: None,
            contacts: Vec::new(),
            message: format!(
                "the segments name {} different plans; a run is one plan",
                plans.len()
            ),
        });
    }
    let plan_id =
        (plans.len() == 1).then(|| plans.iter().next().map(|p| (*p).to_owned())).flatten();
    let counts: BTreeSet<u32> = parts.iter().filter_map(|p| p.0.map(Shard::count)).collect();
    if counts.len() > 1 {
        let counts: Vec<String> = counts.iter().map(u32::to_string).collect();
        faults.push(SegmentFault {
            kind: "counts-differ",
            shard: None,
            contacts: Vec::new(),
            message: format!(
                "the segments are shards of runs split {} ways; a run has one count",
                counts.join(", ")
            ),
        });
    }
    let shards = (counts.len() == 1).then(|| counts.iter().next().copied()).flatten();
    if let Some(count) = shards {
        for index in 0..count {
            let holders: Vec<&SegmentReport> = parts
                .iter()
                .zip(&segments)
                .filter(|(p, _)| p.0.is_some_and(|s| s.index() == index))
                .map(|(_, s)| s)
                .collect();
            let shard = format!("{index}/{count}");
            match holders.len() {
                1 => {}
                0 => faults.push(SegmentFault {
                    kind: "shard-missing",
                    shard: Some(shard.clone()),
                    contacts: Vec::new(),
                    message: format!("shard {shard} is missing: no segment given is that shard's"),
                }),
                n => {
                    let files: Vec<String> =
                        holders.iter().map(|s| s.path.display().to_string()).collect();
                    faults.push(SegmentFault {
                        kind: "shard-duplicated",
                        shard: Some(shard.clone()),
                        contacts: Vec::new(),
                        message: format!(
                            "shard {shard} is present {n} times: {}",
                            files.join(", ")
                        ),
                    });
                }
            }
        }
    }

    // Each segment's contacts: its shard's, bound by its start, and in no other segment.
    let mut owner: BTreeMap<&String, usize> = BTreeMap::new();
    let mut duplicated: BTreeSet<&String> = BTreeSet::new();
    for (position, (shard, covered, bound)) in parts.iter().enumerate() {
        let Some(shard) = shard else { continue };
        let name = shard.to_string();
        let wrong: Vec<&String> = covered.iter().filter(|c| !shard.contains_id(c)).collect();
        if !wrong.is_empty() {
            let (contacts, total) = listed(wrong);
            faults.push(SegmentFault {
                kind: "contact-in-wrong-shard",
                shard: Some(name.clone()),
                message: format!(
                    "{total} contact(s) in the segment of shard {name} are another shard's{}",
                    more(total)
                ),
                contacts,
            });
        }
        for contact in covered {
            if owner.insert(contact, position).is_some_and(|other| other != position) {
                duplicated.insert(contact);
            }
        }
        let expected: Option<BTreeSet<&String>> =
            plan_contacts.map(|all| all.iter().filter(|c| shard.contains_id(c)).collect());
        let digest = contacts_digest(covered.iter().map(String::as_str));
        let complete = match bound {
            Some((count, sha)) => *count == covered.len() as u64 && *sha == digest,
            None => false,
        };
        match (&expected, complete) {
            (Some(expected), _) => {
                let missing: Vec<&String> =
                    expected.iter().copied().filter(|c| !covered.contains(*c)).collect();
                if !missing.is_empty() {
                    let (contacts, total) = listed(missing);
                    faults.push(SegmentFault {
                        kind: "contacts-missing",
                        shard: Some(name.clone()),
                        message: format!(
                            "shard {name} has no record of {total} of its {} contact(s) in the \
                             plan{}",
                            expected.len(),
                            more(total)
                        ),
                        contacts,
                    });
                }
                let extra: Vec<&String> =
                    covered.iter().filter(|c| !expected.contains(c)).collect();
                if !extra.is_empty() {
                    let (contacts, total) = listed(extra);
                    faults.push(SegmentFault {
                        kind: "contacts-unbound",
                        shard: Some(name.clone()),
                        message: format!(
                            "shard {name} records {total} contact(s) the plan does not have{}",
                            more(total)
                        ),
                        contacts,
                    });
                }
                if missing_or_extra_free(expected, covered) && !complete {
                    faults.push(SegmentFault {
                        kind: "contacts-unbound",
                        shard: Some(name.clone()),
                        contacts: Vec::new(),
                        message: format!(
                            "shard {name}: its last shard.start does not bind the contacts it \
                             covers"
                        ),
                    });
                }
            }
            (None, false) => faults.push(SegmentFault {
                kind: "contacts-missing",
                shard: Some(name.clone()),
                contacts: Vec::new(),
                message: format!(
                    "shard {name} covers {} contact(s) but its shard.start bound {}{}; give \
                     --plan to name the missing ones",
                    covered.len(),
                    bound.as_ref().map_or_else(|| "none".to_owned(), |b| b.0.to_string()),
                    if bound.as_ref().is_some_and(|b| b.0 == covered.len() as u64) {
                        " (other ids)"
                    } else {
                        ""
                    }
                ),
            }),
            (None, true) => {}
        }
    }
    // Given the plan: every contact of it covered somewhere (a missing shard's are named here).
    if let Some(all) = plan_contacts {
        let uncovered: Vec<&String> = all
            .iter()
            .filter(|c| !owner.contains_key(c))
            .filter(|c| {
                // Those of a segment given are named by that segment's check above.
                !parts.iter().any(|p| p.0.is_some_and(|s| s.contains_id(c)))
            })
            .collect();
        if !uncovered.is_empty() {
            let (contacts, total) = listed(uncovered);
            faults.push(SegmentFault {
                kind: "contacts-missing",
                shard: None,
                message: format!(
                    "{total} contact(s) of the plan are in no segment given (their shard's \
                     segment is missing){}",
                    more(total)
                ),
                contacts,
            });
        }
    }
    if !duplicated.is_empty() {
        let (contacts, total) = listed(duplicated.iter().copied());
        faults.push(SegmentFault {
            kind: "contact-duplicated",
            shard: None,
            message: format!(
                "{total} contact(s) are recorded in more than one segment{}",
                more(total)
            ),
            contacts,
        });
    }
    Ok(SegmentsReport {
        ok: faults.is_empty(),
        plan_id,
        shards,
        contacts: owner.len() as u64,
        segments,
        faults,
    })
}

fn missing_or_extra_free(expected: &BTreeSet<&String>, covered: &BTreeSet<String>) -> bool {
    expected.len() == covered.len() && covered.iter().all(|c| expected.contains(c))
}

/// The segments beside the log `base` (`audit.jsonl` -> `audit.plan-*.shard-*-of-*.jsonl`),
/// grouped by the plan tag in their names (`plan-<id12>`), each group sorted by name.
///
/// # Errors
/// The folder cannot be read.
pub fn find_segments(base: &Path) -> Result<BTreeMap<String, Vec<PathBuf>>, AuditError> {
    let folder = crate::durable::parent_dir(base);
    let name = base.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let io = |source| AuditError::Io { action: "list", path: folder.clone(), source };
    let mut groups: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(&folder).map_err(io)? {
        let entry = entry.map_err(io)?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if crate::shard::segment_of(&name, &file).is_none() {
            continue;
        }
        // The part between the log's stem and the shard: `plan-<id12>`.
        let tag = file
            .split('.')
            .find(|part| part.starts_with("plan-"))
            .unwrap_or("plan-unknown")
            .to_owned();
        groups.entry(tag).or_default().push(entry.path());
    }
    for paths in groups.values_mut() {
        paths.sort();
    }
    Ok(groups)
}
