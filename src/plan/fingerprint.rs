//! The fingerprint of a contact's observed state: what apply compares before it touches
//! anything, so that a plan reviewed yesterday cannot act on a world that changed since.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::ucs::{DataSource, InteractionListing};

/// What the fingerprint covers: the contact's attribute names and, per data source, its
/// interactions (or the source's absence).
#[derive(Debug, Clone)]
pub struct ContactState {
    /// Attribute names.
    pub attribute_names: BTreeSet<String>,
    /// The keyed (HMAC) digest of the attribute values: a changed value changes the
    /// fingerprint, and without the key nobody can test the digest against guesses.
    pub attribute_values: String,
    /// Each data source's listing.
    pub sources: BTreeMap<DataSource, InteractionListing>,
    /// The keyed (HMAC) digest of the contact's Context Services data (profile, services with
    /// their states and tasks), when it was read: a service added or changed since the plan
    /// changes the fingerprint.
    pub context: Option<String>,
}

/// sha256 (hex) over the sorted interaction ids of each data source with their status,
/// workbin and modification stamp, and the attribute names.
pub fn fingerprint(state: &ContactState) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"ucs-gdpr/fingerprint/v1\n");
    for name in &state.attribute_names {
        hasher.update(b"attribute\t");
        hasher.update(name.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(b"values\t");
    hasher.update(state.attribute_values.as_bytes());
    hasher.update(b"\n");
    for (source, listing) in &state.sources {
        hasher.update(format!("source\t{}\n", source.as_str()).as_bytes());
        match listing {
            InteractionListing::SourceUnavailable { .. } => hasher.update(b"unavailable\n"),
            InteractionListing::Found(list) => {
                let mut lines: Vec<String> = list
                    .iter()
                    .map(|i| {
                        format!(
                            "{}\t{}\t{}\t{}\n",
                            i.id.as_str(),
                            i.status.as_str(),
                            i.workbin.as_deref().unwrap_or("-"),
                            i.modified
                        )
                    })
                    .collect();
                lines.sort();
                for line in lines {
                    hasher.update(line.as_bytes());
                }
            }
        }
    }
    if let Some(context) = &state.context {
        hasher.update(b"context\t");
        hasher.update(context.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What differs between two states, in words a person acts on (ids, statuses; no values).
pub fn differences(before: &ContactState, after: &ContactState) -> Vec<String> {
    let mut out = Vec::new();
    if before.attribute_names != after.attribute_names {
        let added: Vec<_> = after.attribute_names.difference(&before.attribute_names).collect();
        let removed: Vec<_> = before.attribute_names.difference(&after.attribute_names).collect();
        out.push(format!("attributes changed (added {added:?}, removed {removed:?})"));
    } else if before.attribute_values != after.attribute_values {
        out.push("an attribute value changed".to_owned());
    }
    if before.context != after.context {
        out.push(
            "its Context Services data (profile, services, states or tasks) changed".to_owned(),
        );
    }
    for source in DataSource::ALL {
        let (Some(old), Some(new)) = (before.sources.get(&source), after.sources.get(&source))
        else {
            continue;
        };
        match (old, new) {
            (InteractionListing::Found(old), InteractionListing::Found(new)) => {
                let old_by_id: BTreeMap<&str, _> = old.iter().map(|i| (i.id.as_str(), i)).collect();
                let new_by_id: BTreeMap<&str, _> = new.iter().map(|i| (i.id.as_str(), i)).collect();
                for (id, interaction) in &new_by_id {
                    match old_by_id.get(id) {
                        None => out.push(format!("{source}: new interaction {id}")),
                        Some(previous) if previous.status != interaction.status => {
                            out.push(format!(
                                "{source}: interaction {id} changed status from {} to {}",
                                previous.status.as_str(),
                                interaction.status.as_str()
                            ));
                        }
                        Some(previous) if previous != interaction => {
                            out.push(format!("{source}: interaction {id} was modified"));
                        }
                        Some(_) => {}
                    }
                }
                for id in old_by_id.keys().filter(|id| !new_by_id.contains_key(*id)) {
                    out.push(format!("{source}: interaction {id} is gone"));
                }
            }
            (InteractionListing::Found(_), InteractionListing::SourceUnavailable { .. }) => {
                out.push(format!("{source}: the data source is no longer available"));
            }
            (InteractionListing::SourceUnavailable { .. }, InteractionListing::Found(_)) => {
                out.push(format!("{source}: the data source has appeared"));
            }
            _ => {}
        }
    }
    out
}
