//! Shards: one approved plan run as N processes, each on a deterministic part of its contacts.
//!
//! A shard is `I/N`, **0-based** (`0/4` … `3/4`), like the `JOB_COMPLETION_INDEX` of a
//! Kubernetes Indexed Job. A contact belongs to shard `I` when the first eight bytes of the
//! sha256 of its id, read as a big-endian number, are `I` modulo `N` ([`Shard::contains`]): a
//! function of the id and `N` alone, so it needs neither the plan's order nor the other
//! contacts (a streamed plan can call it one contact at a time), and a contact stays in its
//! shard when the plan is made again. The balance is statistical, not exact.
//!
//! Each shard writes its own audit log segment (`Outputs::segment`: `audit.jsonl` ->
//! `audit.plan-<id12>.shard-I-of-N.jsonl`), each its own hash chain whose runs each start with
//! a `shard.start` record (`apply::shard::start_record`) that binds the plan id, the shard (`reason:
//! shard-I-of-N`) and its contacts (their count, and the sha256 of their sorted ids); and its
//! own export bag ([`Shard::exports_dir`]), so no two processes share a file or a lock.
//! Request-scope checks run in every shard: each shard's deletes are preceded by its own
//! passing checks.
//!
//! This module is below `apply` and `audit` (both use it; it uses neither): `apply::shard`
//! adds the records a shard's run writes, `audit::segments` checks a run's segments together.

use std::path::{Path, PathBuf};

use crate::ucs::ContactId;

/// The variable that gives the shard count when the index comes from `JOB_COMPLETION_INDEX`
/// (Kubernetes sets the index of an Indexed Job's pod, never the count).
pub const COUNT_VAR: &str = "UCS_GDPR_SHARDS";
/// The index of a Kubernetes Indexed Job's pod (0-based).
pub const INDEX_VAR: &str = "JOB_COMPLETION_INDEX";
/// At most this many shards.
pub const MAX_SHARDS: u32 = 4096;

/// One shard of a run: `index` of `count`, 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// A shard that cannot be: says what is wrong with the text given, which holds no personal
/// data (it is an option's value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not `I/N` with two whole numbers.
    #[error("`{0}` is not a shard: write INDEX/COUNT, 0-based, such as 0/4 (the first of four)")]
    Syntax(String),
    /// A count of zero, or more than [`MAX_SHARDS`].
    #[error("the shard count must be 1 to {MAX_SHARDS}, not {0}")]
    Count(u64),
    /// An index not below the count.
    #[error(
        "shard index {index} is out of range for {count} shard(s): indexes are 0-based, 0 to {}",
        count.saturating_sub(1)
    )]
    Index {
        /// The index.
        index: u64,
        /// The count.
        count: u32,
    },
}

impl Shard {
    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// A count of 0 or above [`MAX_SHARDS`], or an index not below the count.
    pub fn new(index: u64, count: u64) -> Result<Self, ShardError> {
        let count = u32::try_from(count)
            .ok()
            .filter(|c| (1..=MAX_SHARDS).contains(c))
            .ok_or(ShardError::Count(count))?;
        let index = u32::try_from(index)
            .ok()
            .filter(|i| *i < count)
            .ok_or(ShardError::Index { index, count })?;
        Ok(Self { index, count })
    }

    /// The whole plan as one shard (`0/1`).
    pub fn whole() -> Self {
        Self { index: 0, count: 1 }
    }

    /// Parses `I/N` (0-based).
    ///
    /// # Errors
    /// Not two whole numbers around a `/`, or [`Shard::new`]'s errors.
    pub fn parse(text: &str) -> Result<Self, ShardError> {
        let syntax = || ShardError::Syntax(text.chars().take(32).collect());
        let (index, count) = text.trim().split_once('/').ok_or_else(syntax)?;
        let number = |part: &str| -> Result<u64, ShardError> {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            part.parse::<u64>().map_err(|_| syntax())
        };
        Self::new(number(index)?, number(count)?)
    }

    /// A count given as text (`--shards`, [`COUNT_VAR`]).
    ///
    /// # Errors
    /// Not a whole number from 1 to [`MAX_SHARDS`].
    pub fn parse_count(text: &str) -> Result<u32, ShardError> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ShardError::Syntax(text.chars().take(32).collect()));
        }
        let count = text.parse::<u64>().map_err(|_| ShardError::Count(u64::MAX))?;
        Self::new(0, count).map(|s| s.count)
    }

    /// The index, 0-based.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many shards the run has.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether `contact` is this shard's: sha256 of the id, its first eight bytes big-endian,
    /// modulo the count.
    pub fn contains(&self, contact: &ContactId) -> bool {
        self.contains_id(contact.as_str())
    }

    /// [`Shard::contains`] for an id as text.
    pub fn contains_id(&self, contact: &str) -> bool {
        of(contact, self.count) == self.index
    }

    /// `shard-I-of-N`: the name of the shard's files and its token in the audit trail.
    pub fn label(self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    /// Reads a [`Shard::label`] back.
    pub fn from_label(label: &str) -> Option<Self> {
        let rest = label.strip_prefix("shard-")?;
        let (index, count) = rest.split_once("-of-")?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(index) || !digits(count) {
            return None;
        }
        Self::new(index.parse().ok()?, count.parse().ok()?).ok()
    }

    /// The shard's audit log segment beside `log`: `audit.jsonl` -> `audit.shard-I-of-N.jsonl`.
    pub fn segment(self, log: &Path) -> PathBuf {
        let name = log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let name = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{}.{ext}", self.label()),
            _ => format!("{name}.{}", self.label()),
        };
        log.with_file_name(name)
    }

    /// Where the shard keeps its export bag (its part of the request's bag): the folder
    /// `<request>.shard-I-of-N` under `exports_dir`, which holds the bag `<request>` as an
    /// unsharded run would.
    pub fn exports_dir(self, exports_dir: &Path, request_id: &str) -> PathBuf {
        exports_dir.join(format!("{request_id}.{}", self.label()))
    }

    /// This shard's part of a whole-run setting (the rate limit): `total / N`.
    pub fn rate_part(self, total: f64) -> f64 {
        total / f64::from(self.count)
    }

    /// This shard's part of a whole-run count (requests in flight): `total / N` rounded up, at
    /// least 1.
    pub fn count_part(self, total: u32) -> u32 {
        total.div_ceil(self.count).max(1)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The log a plan's segments are named after: `audit.jsonl` -> `audit.plan-<id12>.jsonl`
/// (never written itself; [`Shard::segment`] of it is).
pub fn plan_log(log: &Path, plan_id: &str) -> PathBuf {
    let tag = format!("plan-{}", plan_id.get(..12).unwrap_or(plan_id));
    let name = log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{tag}.{ext}"),
        _ => format!("{name}.{tag}"),
    };
    log.with_file_name(name)
}

/// Whether the file name `name` is a segment of the log named `base` (`audit.jsonl`): `audit.`
/// + anything + `.shard-I-of-N.jsonl`. Returns the shard its name gives.
pub fn segment_of(base: &str, name: &str) -> Option<Shard> {
    let (stem, ext) = match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, Some(ext)),
        _ => (base, None),
    };
    let rest = name.strip_prefix(stem)?.strip_prefix('.')?;
    let rest = match ext {
        Some(ext) => rest.strip_suffix(ext)?.strip_suffix('.')?,
        None => rest,
    };
    let label = rest.rsplit('.').next()?;
    Shard::from_label(label)
}

/// The shard of `contact` among `count` (see [`Shard::contains`]).
pub fn of(contact: &str, count: u32) -> u32 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(contact.as_bytes());
    let mut first = [0u8; 8];
    for (slot, byte) in first.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    let count = u64::from(count.max(1));
    u32::try_from(u64::from_be_bytes(first) % count).unwrap_or(0)
}

/// The sha256 of a set of contact ids: sorted, each followed by a newline. Binds a shard's
/// contacts in its `shard.start` record; `audit verify` recomputes it from the segment.
pub fn contacts_digest<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut ids: Vec<&str> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut text = String::with_capacity(ids.len() * 17);
    for id in ids {
        text.push_str(id);
        text.push('\n');
    }
    crate::canonical::sha256_hex(text.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn parses_zero_based_index_over_count() {
        assert_eq!(Shard::parse("0/4").unwrap(), Shard::new(0, 4).unwrap());
        assert_eq!(Shard::parse(" 3/4 ").unwrap().to_string(), "3/4");
        assert_eq!(Shard::parse("4/4"), Err(ShardError::Index { index: 4, count: 4 }));
        assert_eq!(Shard::parse("5/4"), Err(ShardError::Index { index: 5, count: 4 }));
        assert_eq!(Shard::parse("0/0"), Err(ShardError::Count(0)));
        assert_eq!(Shard::parse("0/5000"), Err(ShardError::Count(5000)));
        for bad in ["x", "1", "1/", "/4", "-1/4", "1/4/2", "a/b", "1.0/4", "+1/4"] {
            assert!(matches!(Shard::parse(bad), Err(ShardError::Syntax(_))), "{bad}");
        }
        assert_eq!(Shard::parse_count("4").unwrap(), 4);
        assert!(Shard::parse_count("0").is_err());
        assert!(Shard::parse_count("four").is_err());
    }

    #[test]
    fn every_contact_is_in_exactly_one_shard_and_the_split_is_stable() {
        let ids: Vec<String> = (0..1000).map(|i| format!("0001Contact{i:05}")).collect();
        for count in [1u32, 2, 4, 7] {
            let shards: Vec<Shard> =
                (0..count).map(|i| Shard::new(u64::from(i), u64::from(count)).unwrap()).collect();
            let mut sizes = vec![0usize; count as usize];
            for id in &ids {
                let owners: Vec<&Shard> = shards.iter().filter(|s| s.contains_id(id)).collect();
                assert_eq!(owners.len(), 1, "{id} in {count}");
                sizes[owners[0].index() as usize] += 1;
                assert_eq!(of(id, count), owners[0].index());
            }
            // Statistical balance: no shard is far from 1000/count.
            let fair = 1000 / count as usize;
            assert!(sizes.iter().all(|s| s.abs_diff(fair) < fair / 3 + 10), "{sizes:?}");
        }
        // Fixed values (computed independently with Python's hashlib): a change of the
        // function would move contacts between the shards of a run already going.
        let split: Vec<u32> = (0..4).map(|i| of(&format!("0001Contact{i:05}"), 4)).collect();
        assert_eq!(split, [2, 3, 3, 2]);
        assert_eq!(of("0001SaD2PVY4312K", 4), 3);
        assert_eq!(of("0002Ha7QB2MX000K", 4), 1);
    }

    #[test]
    fn names_its_segment_and_label() {
        let shard = Shard::new(2, 4).unwrap();
        assert_eq!(shard.label(), "shard-2-of-4");
        assert_eq!(Shard::from_label("shard-2-of-4"), Some(shard));
        assert_eq!(Shard::from_label("shard-4-of-4"), None);
        assert_eq!(
            shard.segment(Path::new("/var/audit.jsonl")),
            Path::new("/var/audit.shard-2-of-4.jsonl")
        );
        assert_eq!(shard.segment(Path::new("log")), Path::new("log.shard-2-of-4"));
        let plan = plan_log(Path::new("/var/audit.jsonl"), &"ab".repeat(32));
        assert_eq!(plan, Path::new("/var/audit.plan-abababababab.jsonl"));
        assert_eq!(
            segment_of("audit.jsonl", "audit.plan-abababababab.shard-2-of-4.jsonl"),
            Some(shard)
        );
        assert_eq!(segment_of("audit.jsonl", "audit.plan-abababababab.jsonl"), None);
        assert_eq!(segment_of("audit.jsonl", "other.plan-ab.shard-2-of-4.jsonl"), None);
        assert_eq!(segment_of("audit.jsonl", "audit.shard-2-of-4.jsonl.torn"), None);
        assert_eq!(shard.count_part(8), 2);
        assert_eq!(shard.count_part(1), 1);
        assert!((shard.rate_part(100.0) - 25.0).abs() < 1e-9);
    }
}
