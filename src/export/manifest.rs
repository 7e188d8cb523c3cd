//! The bag's payload manifest on disk, read and rewritten as a stream so that a bag of any size
//! costs about the same memory as a small one.
//!
//! - [`for_each_line`] reads it line by line (a last line without its newline, which a crash
//!   cut short, is left out).
//! - [`Index`] finds a contact's lines again without holding them: per contact, the offset in
//!   the file of each run of consecutive lines of its files (16 bytes a run, under a 64-bit
//!   hash of the id; a hash shared by two contacts costs one extra line read, never a wrong
//!   answer, since every line read is checked against the contact asked for).
//! - [`Sorter`] sorts lines by path in bounded memory: chunks of [`CHUNK_LINES`] lines sorted in
//!   memory, spilled to private (0600) scratch files beside the manifest, merged. The scratch
//!   files are removed when it is dropped; a crash's are `*.tmp.*`, removed with the bag's
//!   other temporaries when it is opened again.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::{File, OpenOptions};
use std::hash::{Hash as _, Hasher as _};
use std::io::{self, BufRead as _, BufReader, BufWriter, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use super::payload;
use super::{PayloadKind, Tag};

/// How many lines [`Sorter`] sorts in memory at a time (about 1.4 MB of lines).
pub(super) const CHUNK_LINES: usize = 1 << 13;

/// Checks one manifest line (without its newline): `<64 hex>  <path>`, the path relative and
/// without `..`. Returns (digest, path).
pub(super) fn parse_line(line: &str) -> Result<(&str, &str), &'static str> {
    let (digest, path) = line.split_once("  ").ok_or("not '<sha256>  <path>'")?;
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("not a sha256 digest");
    }
    if path.starts_with('/') || path.split('/').any(|part| part.is_empty() || part == "..") {
        return Err("not a path inside the bag");
    }
    Ok((digest, path))
}

/// One line read from a file, without its newline (and a `\r` before it); `None` for a line
/// without its newline (the file's end).
fn complete(line: &str) -> Option<&str> {
    let line = line.strip_suffix('\n')?;
    Some(line.strip_suffix('\r').unwrap_or(line))
}

/// What [`for_each_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Read {
    /// The file does not exist.
    pub(super) absent: bool,
    /// Bytes through the last complete line.
    pub(super) good: u64,
    /// Bytes after it (a line a crash cut short), left out.
    pub(super) torn: u64,
}

/// A line the manifest could not be read past.
#[derive(Debug)]
pub(super) enum LineError<E> {
    /// The file cannot be read.
    Io(io::Error),
    /// Line `number` (from 1) is not a manifest line: why.
    Malformed(u64, &'static str),
    /// What `each` returned.
    Each(E),
}

/// Calls `each(number, offset, digest, path)` for every complete line of the manifest at
/// `path`, in file order (`number` from 1, `offset` the line's first byte).
pub(super) fn for_each_line<E>(
    path: &Path,
    mut each: impl FnMut(u64, u64, &str, &str) -> Result<(), E>,
) -> Result<Read, LineError<E>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Read { absent: true, good: 0, torn: 0 });
        }
        Err(e) => return Err(LineError::Io(e)),
    };
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut line = String::new();
    let (mut number, mut offset) = (0u64, 0u64);
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(LineError::Io)? as u64;
        if read == 0 {
            return Ok(Read { absent: false, good: offset, torn: 0 });
        }
        let Some(text) = complete(&line) else {
            return Ok(Read { absent: false, good: offset, torn: read });
        };
        number += 1;
        let (digest, relative) =
            parse_line(text).map_err(|why| LineError::Malformed(number, why))?;
        each(number, offset, digest, relative).map_err(LineError::Each)?;
        offset += read;
    }
}

/// The file stems of a contact's files, by kind (see [`PayloadKind::file_name`]), relative to
/// the bag.
const STEMS: [(PayloadKind, &str); 3] = [
    (PayloadKind::Contact, "data/contact-"),
    (PayloadKind::Interactions, "data/interactions-for-contact-"),
    (PayloadKind::ContextServices, "data/context-services-"),
];

/// The contact id a payload path names (`data/<stem><id>.json` or `data/<stem><id>.<rest>`),
/// unchecked; `None` for any other path (the page, attachments).
pub(super) fn contact_id_of(path: &str) -> Option<&str> {
    STEMS.iter().find_map(|(_, stem)| {
        let rest = path.strip_prefix(stem)?;
        rest.split_once('.').map(|(id, _)| id).filter(|id| !id.is_empty())
    })
}

/// What a contact's payload path is: its kind, the contact id (unchecked), and its tag
/// (`None`: the seed's name). `None` for a path that is not a contact's file under a name this
/// tool writes.
pub(super) fn listed_file(path: &str) -> Option<(PayloadKind, &str, Option<Tag>)> {
    STEMS.iter().find_map(|(kind, stem)| {
        let rest = path.strip_prefix(stem)?;
        let (id, suffix) = rest.split_once('.')?;
        let tag = if suffix == "json" {
            None
        } else {
            Some(Tag::new(suffix.strip_suffix(".json")?).ok()?)
        };
        Some((*kind, id, tag))
    })
}

/// Where each contact's lines are in the manifest file (see the module's doc).
#[derive(Debug, Default)]
pub(super) struct Index {
    /// `key(id, n)` -> the offset of the `n`th run of `id`'s lines (`n` from 0, no gaps).
    runs: HashMap<u64, u64>,
    /// The contact of the file's last line (empty: not a contact's file, or no line).
    last: String,
}

fn key(id: &str, n: u32) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    id.hash(&mut hasher);
    n.hash(&mut hasher);
    hasher.finish()
}

impl Index {
    /// An index with room for `runs` runs.
    pub(super) fn with_capacity(runs: usize) -> Self {
        Index { runs: HashMap::with_capacity(runs), last: String::new() }
    }

    /// Notes the line at `offset`, of `path`, appended after every line noted so far.
    pub(super) fn note(&mut self, offset: u64, path: &str) {
        let id = contact_id_of(path).unwrap_or_default();
        if id == self.last {
            return;
        }
        self.last.clear();
        self.last.push_str(id);
        if id.is_empty() {
            return;
        }
        let mut n = 0u32;
        while self.runs.contains_key(&key(id, n)) {
            n = n.saturating_add(1);
        }
        self.runs.insert(key(id, n), offset);
    }

    /// The offsets of the runs of lines that may be `id`'s.
    fn offsets(&self, id: &str) -> Vec<u64> {
        (0u32..).map_while(|n| self.runs.get(&key(id, n)).copied()).collect()
    }
}

/// The lines of `id`'s files in the manifest at `path` (as indexed by `index`): (path, digest,
/// lowercase), in file order. Reads only those lines.
pub(super) fn lines_of(path: &Path, index: &Index, id: &str) -> io::Result<Vec<(String, String)>> {
    let offsets = index.offsets(id);
    let mut found = Vec::new();
    if offsets.is_empty() {
        return Ok(found);
    }
    let mut reader = BufReader::with_capacity(1 << 12, File::open(path)?);
    let mut line = String::new();
    for offset in offsets {
        reader.seek(SeekFrom::Start(offset))?;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            let Some((digest, relative)) = complete(&line).and_then(|l| parse_line(l).ok()) else {
                break;
            };
            if contact_id_of(relative) != Some(id) {
                break;
            }
            found.push((relative.to_owned(), digest.to_ascii_lowercase()));
        }
    }
    Ok(found)
}

/// One line to sort: by path, then by where it came from.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    path: String,
    number: u64,
    digest: String,
}

/// Sorts manifest lines by path in bounded memory (see the module's doc).
#[derive(Debug)]
pub(super) struct Sorter {
    /// The manifest: the scratch files are named after it.
    beside: PathBuf,
    limit: usize,
    chunk: Vec<Item>,
    runs: Vec<PathBuf>,
}

impl Sorter {
    /// A sorter whose scratch files go beside `manifest`, sorting `limit` lines at a time.
    pub(super) fn new(manifest: &Path, limit: usize) -> Self {
        Sorter {
            beside: manifest.to_owned(),
            limit: limit.max(1),
            chunk: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Adds a line (`number`: where it came from, to tell duplicates apart).
    pub(super) fn push(&mut self, number: u64, digest: &str, path: &str) -> io::Result<()> {
        self.chunk.push(Item {
            path: path.to_owned(),
            number,
            digest: digest.to_ascii_lowercase(),
        });
        if self.chunk.len() >= self.limit {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        self.chunk.sort_unstable();
        let run = payload::temp_path(&self.beside);
        // Listed before it exists, so that it is removed whatever happens next.
        self.runs.push(run.clone());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::durable::PRIVATE_FILE)
            .open(&run)?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        for item in self.chunk.drain(..) {
            writeln!(out, "{} {}  {}", item.number, item.digest, item.path)?;
        }
        out.flush()
    }

    /// Calls `each(number, digest, path)` for every line pushed, in path order (equal paths by
    /// `number`).
    pub(super) fn merge(
        mut self,
        mut each: impl FnMut(u64, &str, &str) -> io::Result<()>,
    ) -> io::Result<()> {
        if self.runs.is_empty() {
            self.chunk.sort_unstable();
            for item in &self.chunk {
                each(item.number, &item.digest, &item.path)?;
            }
            return Ok(());
        }
        if !self.chunk.is_empty() {
            self.spill()?;
        }
        self.chunk = Vec::new();
        let mut readers = Vec::with_capacity(self.runs.len());
        for run in &self.runs {
            readers.push(BufReader::with_capacity(1 << 14, File::open(run)?));
        }
        let mut heap = BinaryHeap::new();
        for (at, reader) in readers.iter_mut().enumerate() {
            if let Some(item) = next_item(reader)? {
                heap.push(Reverse((item, at)));
            }
        }
        while let Some(Reverse((item, at))) = heap.pop() {
            each(item.number, &item.digest, &item.path)?;
            if let Some(reader) = readers.get_mut(at)
                && let Some(next) = next_item(reader)?
            {
                heap.push(Reverse((next, at)));
            }
        }
        Ok(())
    }
}

/// The next line of a scratch file: `<number> <digest>  <path>`.
fn next_item(reader: &mut BufReader<File>) -> io::Result<Option<Item>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "a sort scratch file is damaged");
    let text = complete(&line).ok_or_else(bad)?;
    let (number, rest) = text.split_once(' ').ok_or_else(bad)?;
    let (digest, path) = rest.split_once("  ").ok_or_else(bad)?;
    let number = number.parse().map_err(|_| bad())?;
    Ok(Some(Item { path: path.to_owned(), number, digest: digest.to_owned() }))
}

impl Drop for Sorter {
    fn drop(&mut self) {
        for run in &self.runs {
            let _ = std::fs::remove_file(run);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ucs::ContactId;

    #[test]
    fn a_contacts_paths_name_it_and_no_other_path_does() {
        let id = ContactId::new("0001SaD2PVY4312K").unwrap();
        let tag = Tag::new("run-3-2").unwrap();
        for kind in PayloadKind::ALL {
            for tag in [None, Some(&tag)] {
                let path = format!("data/{}", kind.file_name_beside(&id, tag));
                assert_eq!(contact_id_of(&path), Some(id.as_str()), "{path}");
                assert_eq!(listed_file(&path), Some((kind, id.as_str(), tag.cloned())), "{path}");
            }
        }
        for path in ["data/index.html", "data/attachments/0001SaD2PVY4312K/a.txt", "receipt.json"] {
            assert_eq!(contact_id_of(path), None, "{path}");
            assert_eq!(listed_file(path), None, "{path}");
        }
        // Not a name this tool writes: indexed with the contact, but not one of its files.
        assert_eq!(listed_file("data/contact-0001SaD2PVY4312K.Bad.json"), None);
    }

    #[test]
    fn the_sorter_merges_its_spilled_chunks_in_path_order_and_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("manifest-sha256.txt");
        let digest = |n: u64| format!("{n:064x}");
        let mut sorter = Sorter::new(&manifest, 3);
        let paths: Vec<String> =
            (0..10u64).map(|n| format!("data/f-{}.json", (n * 7) % 10)).collect();
        for (n, path) in paths.iter().enumerate() {
            sorter.push(n as u64, &digest(n as u64), path).unwrap();
        }
        sorter.push(99, &digest(99), "data/f-0.json").unwrap();
        assert!(std::fs::read_dir(dir.path()).unwrap().count() >= 3, "chunks were spilled");
        let mut out = Vec::new();
        sorter
            .merge(|n, _, path| {
                out.push((path.to_owned(), n));
                Ok(())
            })
            .unwrap();
        let mut want: Vec<(String, u64)> =
            paths.iter().enumerate().map(|(n, p)| (p.clone(), n as u64)).collect();
        want.push(("data/f-0.json".to_owned(), 99));
        want.sort();
        assert_eq!(out, want);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "scratch files removed");
    }

    #[test]
    fn the_index_finds_every_run_of_a_contacts_lines_and_only_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("manifest-sha256.txt");
        let d = "a".repeat(64);
        let lines = [
            "data/contact-AAAAAAAAAAAAAAAA.json",
            "data/interactions-for-contact-AAAAAAAAAAAAAAAA.json",
            "data/contact-BBBBBBBBBBBBBBBB.json",
            "data/index.html",
            "data/contact-AAAAAAAAAAAAAAAA.run-2.json",
        ];
        let mut text = String::new();
        let mut index = Index::default();
        for path in lines {
            index.note(text.len() as u64, path);
            text.push_str(&format!("{d}  {path}\n"));
        }
        std::fs::write(&manifest, text).unwrap();
        let found = |id| {
            lines_of(&manifest, &index, id).unwrap().into_iter().map(|(p, _)| p).collect::<Vec<_>>()
        };
        assert_eq!(found("AAAAAAAAAAAAAAAA"), [lines[0], lines[1], lines[4]]);
        assert_eq!(found("BBBBBBBBBBBBBBBB"), [lines[2]]);
        assert!(found("CCCCCCCCCCCCCCCC").is_empty());
    }
}
