//! The BagIt bag (RFC 8493) of one request: its tag files, its manifest, and its validation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::manifest;
use super::payload::{self, TEMP_MARKER};
use super::{ContactExport, ExportError, PayloadKind, Tag};
use crate::durable;
use crate::ucs::ContactId;

/// The bag declaration: version 1.0, UTF-8 tag files.
const BAGIT_TXT: &str = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n";
const BAGIT: &str = "bagit.txt";
const BAG_INFO: &str = "bag-info.txt";
const MANIFEST: &str = "manifest-sha256.txt";
const TAG_MANIFEST: &str = "tagmanifest-sha256.txt";
const DATA: &str = "data";
/// Where the bag keeps the plans it ran (tag files: listed in the tag manifest).
pub const PLANS_DIR: &str = "plans";
/// Where the bag keeps the approvals of the plans it ran (tag files).
pub const APPROVALS_DIR: &str = "approvals";
/// The cumulative receipt over every run of the request (a tag file).
pub const RECEIPT: &str = "receipt.json";

/// A contact's files in one export: per kind, (path relative to the bag, sha256, size).
pub type ListedFiles = BTreeMap<PayloadKind, (String, String, u64)>;

/// A contact's exports in a bag, by tag (`None`: the first, under the seed's names).
pub type ListedExports = BTreeMap<Option<Tag>, ListedFiles>;

/// The export bag of one request, `<exports>/<request-id>/`.
///
/// Cheap to clone; clones share the bag's lock. While any clone lives the process holds an
/// exclusive advisory lock (`flock`) on the bag's `bagit.txt`: a second process (or a second
/// [`Bag::open_or_create`] in this one) is refused with [`ExportError::Busy`]. Inside the
/// process, updates of the manifest are serialised by a mutex, so contacts exported
/// concurrently never lose each other's manifest lines.
#[derive(Debug, Clone)]
pub struct Bag {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    request_id: String,
    /// Held open for the lock; never read.
    _lock: File,
    manifest: Mutex<Listing>,
    /// The manifest's group commit: how far its appended lines are durable.
    sync: Mutex<ManifestSync>,
    /// Signalled when an fsync of the manifest ends.
    synced: std::sync::Condvar,
}

/// How far the manifest's appended lines are durable (see [`Bag::record`]).
#[derive(Debug, Default)]
struct ManifestSync {
    /// Appends `1..=durable` (numbered by [`Listing::appended`]) are fsynced.
    durable: u64,
    /// A caller is fsyncing the manifest.
    syncing: bool,
    /// An fsync failed (what it said); every later record fails too.
    failed: Option<(std::io::ErrorKind, String)>,
}

/// What the bag knows of its manifest, without holding its lines (issue 13: a bag of 100,000
/// contacts costs about what one of 10,000 does): where each contact's lines are in the file
/// ([`manifest::Index`]), how many lines it has and the sum of their files' sizes, whether it
/// is sorted, and its digest. Recording a contact costs the same for the 100,000th contact as
/// for the first: the file's lines are appended (and fsynced), and the tag files
/// (`bag-info.txt`, `tagmanifest-sha256.txt`) are brought up to date once, when the bag is
/// finished, validated or dropped, and when it is opened again after a crash; the manifest is
/// then sorted by path (in bounded memory, [`manifest::Sorter`]) when appends left it out of
/// order.
#[derive(Debug, Default)]
struct Listing {
    /// Where each contact's lines are.
    index: manifest::Index,
    /// Lines in the manifest (the `Payload-Oxum` stream count).
    lines: u64,
    /// The sum of the listed files' sizes (the `Payload-Oxum` octets).
    octets: u64,
    /// The manifest's length in bytes: where the next line goes.
    len: u64,
    /// The path of its last line.
    last: String,
    /// Its lines are in path order.
    sorted: bool,
    /// Its sha256, when known (cleared by every append).
    digest: Option<String>,
    /// The kept tag files (receipts, plans, approvals): path relative to the bag -> digest,
    /// as the tag manifest lists them. A file changed on disk keeps its listed digest, so
    /// validation reports the change instead of the next write hiding it.
    kept: BTreeMap<String, String>,
    /// Lines were appended (or the manifest rewritten) since the tag files were last written.
    tags_stale: bool,
    /// The manifest, open for appending; closed whenever the manifest is rewritten (a rewrite
    /// replaces the file, so a handle kept across it would append to the old one).
    appender: Option<File>,
    /// How many appends were made (each numbered, for the group commit).
    appended: u64,
    /// A rewrite failed and the file could not be read again: the index is gone, and every
    /// lookup fails (rather than answer "not listed").
    lost: bool,
    /// How many lines a rewrite sorts in memory at a time ([`manifest::CHUNK_LINES`]; fewer
    /// in tests, to exercise the merge).
    chunk: usize,
}

impl Listing {
    /// An empty manifest's listing.
    fn empty() -> Self {
        Listing { sorted: true, chunk: manifest::CHUNK_LINES, ..Listing::default() }
    }

    /// Notes the line of `path` (`bytes` long, for a file of `size` bytes), appended at the
    /// manifest's end.
    fn note(&mut self, path: &str, bytes: u64, size: u64) {
        self.index.note(self.len, path);
        self.sorted = self.sorted && (self.lines == 0 || path > self.last.as_str());
        self.last.clear();
        self.last.push_str(path);
        self.lines += 1;
        self.octets = self.octets.saturating_add(size);
        self.len += bytes;
        self.digest = None;
    }

    /// The index, unless a failed rewrite lost it.
    fn index(&self, root: &Path) -> Result<&manifest::Index, ExportError> {
        if self.lost {
            let error = std::io::Error::other("the manifest's index was lost by a failed rewrite");
            return Err(ExportError::io("read", &root.join(MANIFEST), error));
        }
        Ok(&self.index)
    }

    /// The lines of `contact`'s files: path -> (digest, size on disk; 0 when it cannot be
    /// read, which validation reports).
    fn files_of(
        &self,
        root: &Path,
        contact: &ContactId,
    ) -> Result<BTreeMap<String, (String, u64)>, ExportError> {
        let path = root.join(MANIFEST);
        let lines = manifest::lines_of(&path, self.index(root)?, contact.as_str())
            .map_err(|e| ExportError::io("read", &path, e))?;
        Ok(lines
            .into_iter()
            .map(|(relative, digest)| {
                let size = fs::metadata(root.join(&relative)).map_or(0, |m| m.len());
                (relative, (digest, size))
            })
            .collect())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: `Bag::finish` is the call that reports a failure; a bag left stale by
        // a crash is brought up to date when it is next opened.
        let listing = self.manifest.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        if listing.tags_stale {
            let _ = write_tags(&self.root, &self.request_id, listing);
        }
    }
}

/// What [`Bag::validate`] found in a valid bag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BagReport {
    /// Payload files (all listed in the manifest, all matching it).
    pub files: u64,
    /// Their total size in bytes (the `Payload-Oxum` octet count).
    pub bytes: u64,
}

/// One thing wrong with a bag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BagProblem {
    /// A manifest line names a file that is not there.
    Missing {
        /// The path relative to the bag.
        path: String,
    },
    /// A file's digest is not the one in the manifest.
    Mismatch {
        /// The path relative to the bag.
        path: String,
        /// The manifest's digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// A payload file no manifest line lists.
    Unlisted {
        /// The path relative to the bag.
        path: String,
    },
    /// A tag file is missing or malformed.
    Tag {
        /// The tag file.
        file: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl std::fmt::Display for BagProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BagProblem::Missing { path } => write!(f, "{path} is listed but missing"),
            BagProblem::Mismatch { path, expected, actual } => {
                write!(f, "{path} has sha256 {actual}, the manifest says {expected}")
            }
            BagProblem::Unlisted { path } => write!(f, "{path} is not in the manifest"),
            BagProblem::Tag { file, reason } => write!(f, "{file}: {reason}"),
        }
    }
}

/// Checks a request id before it names a folder: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, which
/// rules out `.`, `..`, separators and hidden names.
fn check_request_id(request_id: &str) -> Result<(), ExportError> {
    let refuse = |reason| Err(ExportError::InvalidRequestId { reason });
    let mut bytes = request_id.bytes();
    match bytes.next() {
        None => return refuse("it is empty"),
        Some(first) if !first.is_ascii_alphanumeric() => {
            return refuse("it must start with a letter or digit");
        }
        Some(_) => {}
    }
    if request_id.len() > 64 {
        return refuse("it is longer than 64 characters");
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return refuse("only letters, digits, '.', '_' and '-' are allowed");
    }
    if request_id == "." || request_id == ".." {
        return refuse("it names a directory");
    }
    Ok(())
}

impl Bag {
    /// Opens the bag of `request_id` under `exports_dir`, creating it (and `exports_dir`) when
    /// absent, and takes its lock. A new bag is valid and empty. Temporary files a crash left
    /// in the bag are removed (safe: the lock says no other process is writing here).
    ///
    /// # Errors
    /// [`ExportError::InvalidRequestId`] before touching the disk; [`ExportError::Busy`] when
    /// another process holds the bag; [`ExportError::InvalidBag`] when the folder holds a
    /// `bagit.txt` that is not ours; I/O errors with their path.
    pub fn open_or_create(exports_dir: &Path, request_id: &str) -> Result<Bag, ExportError> {
        check_request_id(request_id)?;
        let root = exports_dir.join(request_id);
        let data = root.join(DATA);
        // The bag holds personal data: its folders are the owner's alone (0700, files 0600).
        for dir in [&root, &data] {
            durable::create_private_dir_all(dir).map_err(|e| ExportError::io("create", dir, e))?;
        }
        let bagit = root.join(BAGIT);
        match fs::read_to_string(&bagit) {
            Ok(text) if text == BAGIT_TXT => {}
            Ok(_) => {
                return Err(ExportError::InvalidBag {
                    bag: root,
                    problems: vec![BagProblem::Tag {
                        file: BAGIT,
                        reason: "not a BagIt 1.0 declaration this tool wrote".to_owned(),
                    }],
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                durable::write_atomically(&bagit, BAGIT_TXT.as_bytes())
                    .map_err(|e| ExportError::io("write", &bagit, e))?;
            }
            Err(e) => return Err(ExportError::io("read", &bagit, e)),
        }
        let lock = File::open(&bagit).map_err(|e| ExportError::io("open", &bagit, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(ExportError::Busy { bag: root }),
            Err(fs::TryLockError::Error(e)) => return Err(ExportError::io("lock", &bagit, e)),
        }
        for dir in [&root, &data] {
            remove_temporaries(dir)?;
        }
        for dir in [root.join(PLANS_DIR), root.join(APPROVALS_DIR)] {
            if dir.is_dir() {
                remove_temporaries(&dir)?;
            }
        }
        durable::sync_dir(&root).map_err(|e| ExportError::io("fsync", &root, e))?;
        durable::sync_dir(exports_dir).map_err(|e| ExportError::io("fsync", exports_dir, e))?;
        // Read once: the listing lives in memory from here on. The tag files are rewritten
        // from it, which also completes a bag whose last run was killed between appending a
        // manifest line and finishing.
        let mut listing = read_listing(&root)?;
        write_tags(&root, request_id, &mut listing)?;
        let bag = Bag {
            inner: Arc::new(Inner {
                root,
                request_id: request_id.to_owned(),
                _lock: lock,
                manifest: Mutex::new(listing),
                sync: Mutex::new(ManifestSync::default()),
                synced: std::sync::Condvar::new(),
            }),
        };
        Ok(bag)
    }

    /// The bag's folder.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The request id the bag is named after.
    pub fn request_id(&self) -> &str {
        &self.inner.request_id
    }

    /// The payload path of one of a contact's files, relative to the bag (`data/...`). Built
    /// only from a validated [`ContactId`].
    pub fn relative_path(kind: PayloadKind, contact: &ContactId) -> String {
        format!("{DATA}/{}", kind.file_name(contact))
    }

    /// [`Bag::relative_path`] of a re-export kept beside the first (`tag`), or the seed's name.
    pub fn relative_path_beside(
        kind: PayloadKind,
        contact: &ContactId,
        tag: Option<&Tag>,
    ) -> String {
        format!("{DATA}/{}", kind.file_name_beside(contact, tag))
    }

    /// Every export of `contact` the manifest lists: by tag (`None`: the seed's names, the
    /// first export; then each re-export kept beside it), each file's (path, digest, size on
    /// disk). Reads the contact's own lines of the manifest file (found by the bag's index of
    /// it), nothing when it lists none.
    ///
    /// # Errors
    /// The manifest cannot be read.
    pub fn listed_exports(&self, contact: &ContactId) -> Result<ListedExports, ExportError> {
        let listing = self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found = ListedExports::new();
        for (path, (digest, size)) in listing.files_of(self.root(), contact)? {
            let Some((kind, id, tag)) = manifest::listed_file(&path) else { continue };
            if id == contact.as_str() {
                found.entry(tag).or_default().insert(kind, (path, digest, size));
            }
        }
        Ok(found)
    }

    pub(super) fn data_dir(&self) -> PathBuf {
        self.root().join(DATA)
    }

    pub(super) fn payload_path(&self, kind: PayloadKind, contact: &ContactId) -> PathBuf {
        self.data_dir().join(kind.file_name(contact))
    }

    /// Records a contact's verified files in the manifest: their lines are appended and
    /// fsynced before it returns (a contact's line replaced by a different digest rewrites
    /// the manifest atomically instead). The fsync is group-committed: it runs outside the
    /// bag's lock, one at a time, and covers every line appended before it started, so
    /// contacts recorded concurrently share it; each caller returns once its own lines are
    /// durable. Costs the same whatever the bag's size: the tag files
    /// are brought up to date by [`Bag::finish`], [`Bag::validate`], dropping the last clone,
    /// or the next [`Bag::open_or_create`]. Idempotent. [`export_contact`] calls it; call it
    /// yourself after a successful [`verify_contact`] on resume, in case the run was killed
    /// between the files' rename and their manifest lines.
    ///
    /// [`export_contact`]: super::export_contact
    /// [`verify_contact`]: super::verify_contact
    ///
    /// # Errors
    /// The manifest cannot be written or synced.
    pub fn record(&self, export: &ContactExport) -> Result<(), ExportError> {
        // A poisoned mutex only means another thread panicked mid-update; the files on disk are
        // each whole (appended lines are fsynced, rewrites atomic), so carrying on is safe.
        let mut listing =
            self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let listed = listing.files_of(self.root(), &export.contact)?;
        let mut appended = String::new();
        let mut lines = Vec::new();
        let mut replaced = false;
        for file in &export.files {
            let path =
                Bag::relative_path_beside(file.kind, &export.contact, export.beside.as_ref());
            match listed.get(&path) {
                Some((digest, size)) if *digest == file.sha256 && *size == file.size => continue,
                Some(_) => replaced = true,
                None => {
                    let line = format!("{}  {path}\n", file.sha256);
                    appended.push_str(&line);
                    lines.push((path, line.len() as u64, file.size));
                }
            }
        }
        if replaced {
            let files: Vec<(String, String)> = export
                .files
                .iter()
                .map(|file| {
                    let path = Bag::relative_path_beside(
                        file.kind,
                        &export.contact,
                        export.beside.as_ref(),
                    );
                    (path, file.sha256.clone())
                })
                .collect();
            let own: BTreeSet<String> = files.iter().map(|(path, _)| path.clone()).collect();
            rewrite_manifest(self.root(), &mut listing, &|path| own.contains(path), &files)?;
            return write_tags(self.root(), self.request_id(), &mut listing);
        }
        let path = self.root().join(MANIFEST);
        if appended.is_empty() {
            // Listed already, perhaps by an append whose fsync is still running: wait for it.
            let ticket = listing.appended;
            drop(listing);
            return self.wait_durable(ticket, &path);
        }
        if listing.appender.is_none() {
            let file = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| ExportError::io("open", &path, e))?;
            // Bytes past the last whole line are a failed append's: cut them off.
            let on_disk = file.metadata().map_err(|e| ExportError::io("stat", &path, e))?.len();
            if on_disk > listing.len {
                file.set_len(listing.len).map_err(|e| ExportError::io("truncate", &path, e))?;
            } else if on_disk < listing.len {
                let error = std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the manifest is shorter than the lines appended to it",
                );
                return Err(ExportError::io("append to", &path, error));
            }
            listing.appender = Some(file);
        }
        if let Some(manifest) = listing.appender.as_mut()
            && let Err(e) = manifest.write_all(appended.as_bytes())
        {
            // The file's end is unknown: the next record reopens it and cuts off what this
            // append left; the contact's lines are not listed.
            listing.appender = None;
            return Err(ExportError::io("append to", &path, e));
        }
        for (relative, bytes, size) in lines {
            listing.note(&relative, bytes, size);
        }
        listing.appended += 1;
        listing.tags_stale = true;
        let ticket = listing.appended;
        drop(listing);
        self.wait_durable(ticket, &path)
    }

    /// Returns once appends `1..=ticket` to the manifest are durable: fsyncs the manifest
    /// itself when no other caller is, else waits for the fsync that runs (and then for one
    /// of its own, if that one started before its append).
    fn wait_durable(&self, ticket: u64, path: &Path) -> Result<(), ExportError> {
        fn lock(m: &Mutex<ManifestSync>) -> std::sync::MutexGuard<'_, ManifestSync> {
            m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }
        let mut state = lock(&self.inner.sync);
        loop {
            if let Some((kind, message)) = &state.failed {
                let error = std::io::Error::new(*kind, message.clone());
                return Err(ExportError::io("fsync", path, error));
            }
            if state.durable >= ticket {
                return Ok(());
            }
            if state.syncing {
                state = self
                    .inner
                    .synced
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            state.syncing = true;
            drop(state);
            // Every append up to `upto` went to this handle's file, or to one replaced since
            // by an atomic (durable) rewrite of the whole manifest; no handle: the last thing
            // done to the manifest was such a rewrite.
            let (file, upto) = {
                let listing =
                    self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                (listing.appender.as_ref().map(File::try_clone), listing.appended)
            };
            let result = match file {
                Some(Ok(file)) => file.sync_data(),
                Some(Err(error)) => Err(error),
                None => Ok(()),
            };
            state = lock(&self.inner.sync);
            state.syncing = false;
            match result {
                Ok(()) => state.durable = state.durable.max(upto),
                Err(error) => state.failed = Some((error.kind(), error.to_string())),
            }
            self.inner.synced.notify_all();
        }
    }

    /// The digest the manifest lists for `path` (relative to the bag), if it lists it (a
    /// contact's file is found by the index; any other path by reading the manifest).
    ///
    /// # Errors
    /// The manifest cannot be read.
    pub fn listed_digest(&self, path: &str) -> Result<Option<String>, ExportError> {
        let listing = self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let manifest = self.root().join(MANIFEST);
        if let Some(id) = manifest::contact_id_of(path) {
            let lines = manifest::lines_of(&manifest, listing.index(self.root())?, id)
                .map_err(|e| ExportError::io("read", &manifest, e))?;
            return Ok(lines.into_iter().find(|(p, _)| p == path).map(|(_, digest)| digest));
        }
        let mut found = None;
        manifest::for_each_line(&manifest, |_, _, digest, listed| {
            if listed == path {
                found = Some(digest.to_ascii_lowercase());
            }
            Ok::<(), ExportError>(())
        })
        .map_err(|e| line_error(self.root(), e))?;
        Ok(found)
    }

    /// The contacts whose `data/contact-<id>.json` the manifest lists, in id order, read from
    /// the manifest as it is iterated (sorted first, when appends left it out of order).
    ///
    /// # Errors
    /// The manifest cannot be sorted or opened.
    pub(super) fn listed_contacts(&self) -> Result<ListedContacts, ExportError> {
        let mut listing =
            self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !listing.sorted {
            rewrite_manifest(self.root(), &mut listing, &|_| false, &[])?;
        }
        let path = self.root().join(MANIFEST);
        let file = File::open(&path).map_err(|e| ExportError::io("open", &path, e))?;
        Ok(ListedContacts {
            reader: std::io::BufReader::with_capacity(1 << 16, file),
            path,
            line: String::new(),
            started: false,
        })
    }

    /// Records payload files derived from the contacts' files (the readable index and its
    /// attachments, see `html.rs`): every listed path `owned` claims is replaced by `files`, in
    /// one atomic rewrite of the manifest and tag files.
    ///
    /// # Errors
    /// The tag files cannot be written.
    pub(super) fn record_derived(
        &self,
        files: Vec<(String, String, u64)>,
        owned: fn(&str) -> bool,
    ) -> Result<(), ExportError> {
        let mut listing =
            self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let added: Vec<(String, String)> =
            files.into_iter().map(|(path, digest, _)| (path, digest)).collect();
        let replaced: std::collections::HashSet<String> =
            added.iter().map(|(path, _)| path.clone()).collect();
        let dropped = |path: &str| owned(path) || replaced.contains(path);
        rewrite_manifest(self.root(), &mut listing, &dropped, &added)?;
        write_tags(self.root(), self.request_id(), &mut listing)
    }

    /// Brings the tag files up to date (`bag-info.txt`'s `Payload-Oxum`, the tag manifest),
    /// so that any BagIt tool validates the bag. Call it when a run ends.
    ///
    /// # Errors
    /// A tag file cannot be written.
    pub fn finish(&self) -> Result<(), ExportError> {
        let mut listing =
            self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if listing.tags_stale {
            write_tags(self.root(), self.request_id(), &mut listing)?;
        }
        Ok(())
    }

    /// Keeps `bytes` as the tag file `name` (relative to the bag: `receipt-<run>.json`,
    /// `plans/<file>`, `approvals/<file>`), never replacing a different file: when `name`
    /// holds other bytes already, they are kept and the new ones go beside, as
    /// `<stem>.<n>.<ext>` with the first free `n` from 2. The same bytes again are kept once.
    /// The file is listed in the tag manifest (rewritten atomically) before this returns.
    /// Returns the name used.
    ///
    /// # Errors
    /// A name that is not a kept tag file, or a file that cannot be written.
    pub fn keep(&self, name: &str, bytes: &[u8]) -> Result<String, ExportError> {
        let mut listing =
            self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let digest = crate::canonical::sha256_hex(bytes);
        if !is_kept_tag(name) {
            return Err(not_kept(self.root(), name));
        }
        let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
        let mut chosen = name.to_owned();
        for n in 2u32.. {
            let listed = listing.kept.get(&chosen).cloned();
            match (fs::read(self.root().join(&chosen)).ok(), listed) {
                // Free: neither on disk nor listed (a listed file that is gone stays taken, so
                // its loss is reported, not papered over).
                (None, None) => break,
                (Some(existing), listed)
                    if existing == bytes && listed.as_ref().is_none_or(|d| *d == digest) =>
                {
                    if listed.is_none() {
                        listing.kept.insert(chosen.clone(), digest);
                        write_tags(self.root(), self.request_id(), &mut listing)?;
                    }
                    return Ok(chosen);
                }
                _ => chosen = format!("{stem}.{n}.{ext}"),
            }
        }
        self.write_tag(&mut listing, &chosen, bytes)?;
        Ok(chosen)
    }

    /// [`keep`](Self::keep) for a file too large to hold in memory (a plan of many contacts):
    /// `source` is hashed and copied as a stream, and compared with a file already there by
    /// digest.
    ///
    /// # Errors
    /// A name that is not a kept tag file, or a file that cannot be read or written.
    pub fn keep_file(&self, name: &str, source: &Path) -> Result<String, ExportError> {
        let mut listing =
            self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !is_kept_tag(name) {
            return Err(not_kept(self.root(), name));
        }
        let digest = file_sha256(source).map_err(|e| ExportError::io("read", source, e))?;
        let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
        let mut chosen = name.to_owned();
        for n in 2u32.. {
            let listed = listing.kept.get(&chosen).cloned();
            match (file_sha256(&self.root().join(&chosen)).ok(), listed) {
                (None, None) => break,
                (Some(existing), listed)
                    if existing == digest && listed.as_ref().is_none_or(|d| *d == digest) =>
                {
                    if listed.is_none() {
                        listing.kept.insert(chosen.clone(), digest);
                        write_tags(self.root(), self.request_id(), &mut listing)?;
                    }
                    return Ok(chosen);
                }
                _ => chosen = format!("{stem}.{n}.{ext}"),
            }
        }
        let path = self.root().join(&chosen);
        let dir = durable::parent_dir(&path);
        durable::create_private_dir_all(&dir).map_err(|e| ExportError::io("create", &dir, e))?;
        durable::write_atomically_with(&path, |out| {
            std::io::copy(&mut fs::File::open(source)?, out).map(|_| ())
        })
        .map_err(|e| ExportError::io("write", &path, e))?;
        listing.kept.insert(chosen.clone(), digest);
        write_tags(self.root(), self.request_id(), &mut listing)?;
        Ok(chosen)
    }

    /// [`Bag::replace`] with the bytes of the file `source` (copied, never read whole).
    ///
    /// # Errors
    /// A name that is not a kept tag file, or a file that cannot be read or written.
    pub fn replace_file(&self, name: &str, source: &Path) -> Result<(), ExportError> {
        let mut listing =
            self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !is_kept_tag(name) {
            return Err(not_kept(self.root(), name));
        }
        let digest = file_sha256(source).map_err(|e| ExportError::io("read", source, e))?;
        let path = self.root().join(name);
        let dir = durable::parent_dir(&path);
        durable::create_private_dir_all(&dir).map_err(|e| ExportError::io("create", &dir, e))?;
        durable::write_atomically_with(&path, |out| {
            std::io::copy(&mut fs::File::open(source)?, out).map(|_| ())
        })
        .map_err(|e| ExportError::io("write", &path, e))?;
        listing.kept.insert(name.to_owned(), digest);
        write_tags(self.root(), self.request_id(), &mut listing)
    }

    /// Writes the tag file `name` (a derived one, such as the cumulative `receipt.json`),
    /// replacing it atomically, and lists it in the tag manifest.
    ///
    /// # Errors
    /// A name that is not a kept tag file, or a file that cannot be written.
    pub fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), ExportError> {
        let mut listing =
            self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.write_tag(&mut listing, name, bytes)
    }

    fn write_tag(
        &self,
        listing: &mut Listing,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), ExportError> {
        if !is_kept_tag(name) {
            return Err(not_kept(self.root(), name));
        }
        let path = self.root().join(name);
        let dir = durable::parent_dir(&path);
        durable::create_private_dir_all(&dir).map_err(|e| ExportError::io("create", &dir, e))?;
        durable::write_atomically(&path, bytes).map_err(|e| ExportError::io("write", &path, e))?;
        listing.kept.insert(name.to_owned(), crate::canonical::sha256_hex(bytes));
        write_tags(self.root(), self.request_id(), listing)
    }

    /// The kept tag files the bag lists (receipts, plans, approvals), relative to the bag.
    pub fn kept(&self) -> Vec<String> {
        let listing = self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        listing.kept.keys().cloned().collect()
    }

    /// Validates the whole bag: the declaration, every manifest line against the file on disk
    /// (re-hashed), no payload file unlisted, `Payload-Oxum`, and the tag manifest.
    ///
    /// # Errors
    /// [`ExportError::InvalidBag`] listing every problem found (paths relative to the bag);
    /// I/O errors other than a missing file.
    pub fn validate(&self) -> Result<BagReport, ExportError> {
        let mut listing =
            self.inner.manifest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if listing.tags_stale {
            write_tags(self.root(), self.request_id(), &mut listing)?;
        }
        validate_dir(self.root())
    }
}

/// Validates the bag in `root` without opening (or locking) it: see [`Bag::validate`].
///
/// # Errors
/// As [`Bag::validate`].
pub fn validate_dir(root: &Path) -> Result<BagReport, ExportError> {
    let mut problems = Vec::new();
    let tag = |file, reason: &str| BagProblem::Tag { file, reason: reason.to_owned() };
    match fs::read_to_string(root.join(BAGIT)) {
        Ok(text) if text == BAGIT_TXT => {}
        Ok(_) => problems.push(tag(BAGIT, "not a BagIt 1.0 UTF-8 declaration")),
        Err(_) => problems.push(tag(BAGIT, "missing")),
    }
    let entries = match fs::read_to_string(root.join(MANIFEST)) {
        Ok(text) => parse_manifest(&text).unwrap_or_else(|reason| {
            problems.push(BagProblem::Tag { file: MANIFEST, reason });
            BTreeMap::new()
        }),
        Err(_) => {
            problems.push(tag(MANIFEST, "missing"));
            BTreeMap::new()
        }
    };
    let mut report = BagReport { files: 0, bytes: 0 };
    for (path, expected) in &entries {
        let file = root.join(path);
        match payload::measure(&file) {
            Ok(found) if &found.sha256 == expected => {
                report.files += 1;
                report.bytes += found.size;
            }
            Ok(found) => problems.push(BagProblem::Mismatch {
                path: path.clone(),
                expected: expected.clone(),
                actual: found.sha256,
            }),
            Err(ExportError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                problems.push(BagProblem::Missing { path: path.clone() });
            }
            Err(error) => return Err(error),
        }
    }
    let listed: BTreeSet<&String> = entries.keys().collect();
    for path in payload_files(root)? {
        if !listed.contains(&path) {
            problems.push(BagProblem::Unlisted { path });
        }
    }
    match fs::read_to_string(root.join(BAG_INFO)) {
        Ok(info) => {
            let oxum = info.lines().find_map(|line| line.strip_prefix("Payload-Oxum: "));
            let want = format!("{}.{}", report.bytes, entries.len());
            if problems.is_empty() && oxum != Some(want.as_str()) {
                problems.push(BagProblem::Tag {
                    file: BAG_INFO,
                    reason: format!("Payload-Oxum is {oxum:?}, the payload is {want}"),
                });
            }
        }
        Err(_) => problems.push(tag(BAG_INFO, "missing")),
    }
    if let Ok(text) = fs::read_to_string(root.join(TAG_MANIFEST)) {
        match parse_manifest(&text) {
            Ok(tags) => {
                for name in kept_files(root)? {
                    if !tags.contains_key(&name) {
                        problems.push(BagProblem::Tag {
                            file: TAG_MANIFEST,
                            reason: format!("{name} is not listed"),
                        });
                    }
                }
                for (name, expected) in tags {
                    // Hashed as a stream: a kept plan copy is as large as the plan.
                    let actual = file_sha256(&root.join(&name)).unwrap_or_default();
                    if actual != expected {
                        problems.push(BagProblem::Tag {
                            file: TAG_MANIFEST,
                            reason: format!("{name} does not match its line"),
                        });
                    }
                }
            }
            Err(reason) => problems.push(BagProblem::Tag { file: TAG_MANIFEST, reason }),
        }
    }
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(ExportError::InvalidBag { bag: root.to_owned(), problems })
    }
}

/// Reads the manifest of the bag at `root` as a stream: indexes it, and sums its files' sizes
/// (each `stat`ed). A last line without its newline is a record a crash cut short: the
/// contact's files were not recorded (nothing was deleted on their strength), and it is
/// dropped, to be recorded again on resume. A manifest that is absent, cut short, out of order
/// or not lowercase is rewritten (sorted, in bounded memory).
fn read_listing(root: &Path) -> Result<Listing, ExportError> {
    let path = root.join(MANIFEST);
    let mut listing = Listing::empty();
    let mut rewrite = false;
    // Offsets are counted from `\n` line ends: a file with `\r\n` ones is rewritten below.
    let read = manifest::for_each_line(&path, |number, _, digest, relative| {
        if listing.lines > 0 && relative == listing.last {
            return Err(malformed(root, number, "a path listed twice"));
        }
        rewrite |= digest.bytes().any(|b| b.is_ascii_uppercase());
        let file = root.join(relative);
        let size = fs::metadata(&file).map_err(|e| ExportError::io("stat", &file, e))?.len();
        let bytes = digest.len() as u64 + 2 + relative.len() as u64 + 1;
        listing.note(relative, bytes, size);
        Ok(())
    })
    .map_err(|e| line_error(root, e))?;
    if read.torn > 0 {
        tracing::warn!(
            bytes = read.torn,
            "dropping a manifest line an interrupted run left incomplete"
        );
    }
    // `listing.len` counts `\n` line ends: a file with `\r\n` ones is rewritten too.
    if read.absent || read.torn > 0 || !listing.sorted || rewrite || read.good != listing.len {
        rewrite_manifest(root, &mut listing, &|_| false, &[])?;
    }
    // The kept tag files the tag manifest lists, with the digests it lists; then any kept file
    // a crash left unlisted (written, but killed before the tag manifest was rewritten).
    if let Ok(text) = fs::read_to_string(root.join(TAG_MANIFEST))
        && let Ok(tags) = parse_manifest(&text)
    {
        listing.kept.extend(tags.into_iter().filter(|(name, _)| is_kept_tag(name)));
    }
    for name in kept_files(root)? {
        if let std::collections::btree_map::Entry::Vacant(entry) = listing.kept.entry(name) {
            let path = root.join(entry.key());
            entry.insert(file_sha256(&path).map_err(|e| ExportError::io("read", &path, e))?);
        }
    }
    Ok(listing)
}

/// The manifest's line `number` is not what it should be.
fn malformed(root: &Path, number: u64, why: &str) -> ExportError {
    ExportError::InvalidBag {
        bag: root.to_owned(),
        problems: vec![BagProblem::Tag { file: MANIFEST, reason: format!("line {number}: {why}") }],
    }
}

fn line_error(root: &Path, error: manifest::LineError<ExportError>) -> ExportError {
    match error {
        manifest::LineError::Io(e) => ExportError::io("read", &root.join(MANIFEST), e),
        manifest::LineError::Malformed(number, why) => malformed(root, number, why),
        manifest::LineError::Each(error) => error,
    }
}

/// Rewrites the manifest atomically, sorted by path: its lines but those `dropped` names, then
/// `added` (path, digest). Streams: the lines are sorted in bounded memory
/// ([`manifest::Sorter`]) and written as they come out, each file `stat`ed for the octet count;
/// the listing's index, counts and digest are rebuilt from what was written.
fn rewrite_manifest(
    root: &Path,
    listing: &mut Listing,
    dropped: &dyn Fn(&str) -> bool,
    added: &[(String, String)],
) -> Result<(), ExportError> {
    // The old index goes before the new one is built (it is the larger part of the bag's
    // memory); should the rewrite fail, the index is rebuilt from the file as it is then.
    listing.index = manifest::Index::default();
    match sorted_rewrite(root, listing, dropped, added) {
        Ok(rebuilt) => {
            // (`rebuilt` holds only what describes the file; the rest of `listing` stays.)
            listing.index = rebuilt.index;
            listing.lines = rebuilt.lines;
            listing.octets = rebuilt.octets;
            listing.len = rebuilt.len;
            listing.last = rebuilt.last;
            listing.sorted = true;
            listing.digest = rebuilt.digest;
            listing.tags_stale = true;
            Ok(())
        }
        Err(error) => {
            reindex(root, listing);
            Err(error)
        }
    }
}

/// Rebuilds the listing's view of the manifest from the file (after a failed rewrite); when
/// the file cannot be read either, the listing says so and every lookup fails.
fn reindex(root: &Path, listing: &mut Listing) {
    let path = root.join(MANIFEST);
    let mut view = Listing::empty();
    let read = manifest::for_each_line(&path, |_, offset, digest, relative| {
        view.len = offset;
        let size = fs::metadata(root.join(relative)).map_or(0, |m| m.len());
        view.note(relative, digest.len() as u64 + 2 + relative.len() as u64 + 1, size);
        Ok::<(), ExportError>(())
    });
    match read {
        Ok(read) => {
            listing.index = view.index;
            listing.lines = view.lines;
            listing.octets = view.octets;
            listing.len = read.good;
            listing.last = view.last;
            listing.sorted = view.sorted;
            listing.digest = None;
            listing.tags_stale = true;
            listing.lost = false;
        }
        Err(_) => listing.lost = true,
    }
}

/// [`rewrite_manifest`]'s work: what describes the file written.
fn sorted_rewrite(
    root: &Path,
    listing: &mut Listing,
    dropped: &dyn Fn(&str) -> bool,
    added: &[(String, String)],
) -> Result<Listing, ExportError> {
    use sha2::Digest as _;
    let path = root.join(MANIFEST);
    // Lines appended to the file about to be replaced are made durable first: a caller may
    // be waiting for them (the group commit counts them durable once the handle is gone).
    if let Some(appender) = listing.appender.take() {
        appender.sync_data().map_err(|e| ExportError::io("fsync", &path, e))?;
    }
    let scratch = |e| ExportError::io("sort", &path, e);
    let mut sorter = manifest::Sorter::new(&path, listing.chunk);
    // A last line a crash cut short is left out.
    manifest::for_each_line(&path, |number, _, digest, relative| {
        if dropped(relative) {
            Ok(())
        } else {
            sorter.push(number, digest, relative).map_err(scratch)
        }
    })
    .map_err(|e| line_error(root, e))?;
    let mut number = 0u64;
    for (relative, digest) in added {
        number += 1;
        sorter.push(u64::MAX - number, digest, relative).map_err(scratch)?;
    }
    let mut rebuilt = Listing::empty();
    // Sized once: a table that doubles holds both sizes while it grows.
    let runs = usize::try_from(listing.lines).unwrap_or(0).saturating_add(added.len());
    rebuilt.index = manifest::Index::with_capacity(runs);
    let mut failure = None;
    let mut hasher = sha2::Sha256::new();
    let written = durable::write_atomically_with(&path, |out| {
        let mut line = String::new();
        sorter.merge(|number, digest, relative| {
            if rebuilt.lines > 0 && relative == rebuilt.last {
                failure = Some(malformed(root, number, "a path listed twice"));
                return Err(std::io::Error::other("a path listed twice"));
            }
            let file = root.join(relative);
            let size = match fs::metadata(&file) {
                Ok(metadata) => metadata.len(),
                // Validation reports it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => {
                    failure = Some(ExportError::io("stat", &file, e));
                    return Err(std::io::Error::other("stat"));
                }
            };
            line.clear();
            let _ = writeln!(line, "{digest}  {relative}");
            out.write_all(line.as_bytes())?;
            hasher.update(line.as_bytes());
            rebuilt.note(relative, line.len() as u64, size);
            Ok(())
        })
    });
    if let Some(error) = failure {
        return Err(error);
    }
    written.map_err(|e| ExportError::io("write", &path, e))?;
    rebuilt.digest = Some(crate::canonical::hex(&hasher.finalize()));
    Ok(rebuilt)
}

/// The contacts a bag's sorted manifest lists (`data/contact-<id>.json`), in id order, read as
/// the iteration goes (see [`Bag::listed_contacts`]).
#[derive(Debug)]
pub(super) struct ListedContacts {
    reader: std::io::BufReader<File>,
    path: PathBuf,
    line: String,
    started: bool,
}

impl Iterator for ListedContacts {
    type Item = Result<ContactId, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::BufRead as _;
        const PREFIX: &str = "data/contact-";
        loop {
            self.line.clear();
            match self.reader.read_line(&mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(ExportError::io("read", &self.path, e))),
            }
            let text = self.line.strip_suffix('\n')?;
            let Some((_, path)) = text.split_once("  ") else { continue };
            // Sorted: the contacts' own files are one run of lines.
            let Some(rest) = path.strip_prefix(PREFIX) else {
                if self.started {
                    return None;
                }
                continue;
            };
            self.started = true;
            if let Some(id) = rest.strip_suffix(".json").and_then(|id| ContactId::new(id).ok()) {
                return Some(Ok(id));
            }
        }
    }
}

/// The sha256 of a file, read as a stream.
fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut hasher = sha2::Sha256::new();
    let mut file = fs::File::open(path)?;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(buffer.get(..read).unwrap_or_default());
    }
    Ok(crate::canonical::hex(&hasher.finalize()))
}

fn not_kept(root: &Path, name: &str) -> ExportError {
    ExportError::InvalidBag {
        bag: root.to_owned(),
        problems: vec![BagProblem::Tag {
            file: TAG_MANIFEST,
            reason: format!("{name} is not a tag file this tool keeps"),
        }],
    }
}

/// Whether `name` (relative to the bag) is a tag file this tool keeps besides the BagIt ones:
/// `receipt.json`, `receipt-<run>.json`, and files under `plans/` and `approvals/`.
fn is_kept_tag(name: &str) -> bool {
    let receipt = !name.contains('/') && name.starts_with("receipt") && name.ends_with(".json");
    let under = |dir: &str| {
        name.strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
    };
    (receipt || under(PLANS_DIR) || under(APPROVALS_DIR)) && !name.contains(TEMP_MARKER)
}

/// The kept tag files on disk (see [`is_kept_tag`]), relative to the bag, sorted.
fn kept_files(root: &Path) -> Result<Vec<String>, ExportError> {
    let mut found = Vec::new();
    for (dir, prefix) in [
        (root.to_owned(), String::new()),
        (root.join(PLANS_DIR), format!("{PLANS_DIR}/")),
        (root.join(APPROVALS_DIR), format!("{APPROVALS_DIR}/")),
    ] {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ExportError::io("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| ExportError::io("list", &dir, e))?;
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if is_file && is_kept_tag(&name) {
                found.push(name);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Brings the tag files up to date: the manifest is sorted first when appends left it out of
/// order, then `bag-info.txt` (its Payload-Oxum from the listing) and the tag manifest over the
/// three are written, each atomically; the listing is then current.
fn write_tags(root: &Path, request_id: &str, listing: &mut Listing) -> Result<(), ExportError> {
    if !listing.sorted {
        rewrite_manifest(root, listing, &|_| false, &[])?;
    }
    let manifest_digest = match &listing.digest {
        Some(digest) => digest.clone(),
        None => {
            let path = root.join(MANIFEST);
            let digest = file_sha256(&path).map_err(|e| ExportError::io("read", &path, e))?;
            listing.digest = Some(digest.clone());
            digest
        }
    };
    let date = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    let info = format!(
        "Bag-Software-Agent: ucs-gdpr {}\nBagging-Date: {date}\nPayload-Oxum: {}.{}\n\
         Request-Id: {request_id}\n",
        env!("CARGO_PKG_VERSION"),
        listing.octets,
        listing.lines,
    );
    let mut lines = BTreeMap::new();
    for (name, text) in [(BAGIT, BAGIT_TXT), (BAG_INFO, info.as_str())] {
        lines.insert(name.to_owned(), crate::canonical::sha256_hex(text.as_bytes()));
    }
    lines.insert(MANIFEST.to_owned(), manifest_digest);
    for (name, digest) in &listing.kept {
        lines.insert(name.clone(), digest.clone());
    }
    let mut tags = String::new();
    for (name, digest) in &lines {
        let _ = writeln!(tags, "{digest}  {name}");
    }
    for (name, text) in [(BAG_INFO, &info), (TAG_MANIFEST, &tags)] {
        let path = root.join(name);
        durable::write_atomically(&path, text.as_bytes())
            .map_err(|e| ExportError::io("write", &path, e))?;
    }
    listing.tags_stale = false;
    Ok(())
}

/// Parses a manifest: `<64 hex>  <path>` per line, paths unique, relative, without `..`.
fn parse_manifest(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut entries = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let bad = |what: &str| format!("line {}: {what}", number + 1);
        let (digest, path) = manifest::parse_line(line).map_err(bad)?;
        if entries.insert(path.to_owned(), digest.to_ascii_lowercase()).is_some() {
            return Err(bad("a path listed twice"));
        }
    }
    Ok(entries)
}

/// Every file under `data/`, as paths relative to the bag, `/`-separated.
fn payload_files(root: &Path) -> Result<Vec<String>, ExportError> {
    let mut files = Vec::new();
    let mut pending = vec![(root.join(DATA), DATA.to_owned())];
    while let Some((dir, relative)) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| ExportError::io("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ExportError::io("list", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = format!("{relative}/{name}");
            let kind = entry.file_type().map_err(|e| ExportError::io("stat", &entry.path(), e))?;
            if kind.is_dir() {
                pending.push((entry.path(), path));
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Removes the temporary files (`*.tmp.*`) a crash left in `dir`.
fn remove_temporaries(dir: &Path) -> Result<(), ExportError> {
    let entries = fs::read_dir(dir).map_err(|e| ExportError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ExportError::io("list", dir, e))?;
        if entry.file_name().to_string_lossy().contains(TEMP_MARKER) {
            let path = entry.path();
            tracing::warn!(path = %path.display(), "removing a temporary file left by an interrupted export");
            fs::remove_file(&path).map_err(|e| ExportError::io("remove", &path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_request_ids_are_refused_before_any_folder_exists() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["../x", "..", ".", "", "a/b", "a\\b", "/abs", ".hidden", "-x", &"a".repeat(65)] {
            let error = Bag::open_or_create(dir.path(), id).unwrap_err();
            assert!(matches!(error, ExportError::InvalidRequestId { .. }), "{id}: {error}");
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_new_bag_is_valid_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        let bag = Bag::open_or_create(dir.path(), "DSR-2026-0142").unwrap();
        assert_eq!(bag.validate().unwrap(), BagReport { files: 0, bytes: 0 });
        let info = fs::read_to_string(bag.root().join(BAG_INFO)).unwrap();
        assert!(info.contains("Payload-Oxum: 0.0\n"), "{info}");
        assert!(info.contains("Request-Id: DSR-2026-0142\n"), "{info}");
    }

    #[test]
    fn a_bag_is_held_by_one_opener_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let bag = Bag::open_or_create(dir.path(), "DSR-1").unwrap();
        let second = Bag::open_or_create(dir.path(), "DSR-1").unwrap_err();
        assert!(matches!(second, ExportError::Busy { .. }), "{second}");
        drop(bag);
        Bag::open_or_create(dir.path(), "DSR-1").unwrap();
    }

    #[test]
    fn leftover_temporaries_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(Bag::open_or_create(dir.path(), "DSR-1").unwrap());
        let stale = dir.path().join("DSR-1/data/contact-0001SaD2PVY4312K.json.tmp.1.0");
        fs::write(&stale, b"{\"half").unwrap();
        assert!(validate_dir(&dir.path().join("DSR-1")).is_err());
        let bag = Bag::open_or_create(dir.path(), "DSR-1").unwrap();
        assert!(!stale.exists());
        bag.validate().unwrap();
    }

    /// Writes a contact's two files into the bag's `data/` (under `tag`'s names) and returns
    /// the export that names them.
    fn exported(bag: &Bag, id: &str, text: &str, tag: Option<&str>) -> ContactExport {
        let contact = ContactId::new(id).unwrap();
        let beside = tag.map(|t| Tag::new(t).unwrap());
        let files = [PayloadKind::Contact, PayloadKind::Interactions]
            .into_iter()
            .map(|kind| {
                let path = Bag::relative_path_beside(kind, &contact, beside.as_ref());
                let bytes = format!("{{\"{text}\":\"{path}\"}}");
                fs::write(bag.root().join(&path), &bytes).unwrap();
                super::super::ExportedFile {
                    kind,
                    path,
                    sha256: crate::canonical::sha256_hex(bytes.as_bytes()),
                    size: bytes.len() as u64,
                }
            })
            .collect();
        ContactExport { contact, files, sources: BTreeMap::new(), beside }
    }

    fn ids(bag: &Bag) -> Vec<String> {
        bag.listed_contacts().unwrap().map(|id| id.unwrap().as_str().to_owned()).collect()
    }

    #[test]
    fn a_bag_opened_afresh_finds_each_contacts_exports_in_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let (jane, john) = ("0001SaD2PVY4312K", "0001SaD2PVY4315J");
        let bag = Bag::open_or_create(dir.path(), "DSR-1").unwrap();
        bag.record(&exported(&bag, john, "first", None)).unwrap();
        bag.record(&exported(&bag, jane, "first", None)).unwrap();
        bag.record(&exported(&bag, john, "later", Some("run-2"))).unwrap();
        drop(bag);

        // Nothing of the first run is in memory: the listing is read back from the file.
        let bag = Bag::open_or_create(dir.path(), "DSR-1").unwrap();
        let john_id = ContactId::new(john).unwrap();
        let exports = bag.listed_exports(&john_id).unwrap();
        let tags: Vec<Option<&str>> = exports.keys().map(|t| t.as_ref().map(Tag::as_str)).collect();
        assert_eq!(tags, [None, Some("run-2")]);
        for (tag, files) in &exports {
            assert_eq!(files.len(), 2, "{tag:?}");
            for (path, digest, size) in files.values() {
                let bytes = fs::read(bag.root().join(path)).unwrap();
                assert_eq!(*digest, crate::canonical::sha256_hex(&bytes), "{path}");
                assert_eq!(*size, bytes.len() as u64, "{path}");
                assert_eq!(bag.listed_digest(path).unwrap().as_ref(), Some(digest), "{path}");
            }
        }
        assert_eq!(bag.listed_exports(&ContactId::new(jane).unwrap()).unwrap().len(), 1);
        let nobody = ContactId::new("0001SaD2PVY4399Z").unwrap();
        assert!(bag.listed_exports(&nobody).unwrap().is_empty());
        // The same export again is listed already: nothing is appended.
        let before = fs::read(bag.root().join(MANIFEST)).unwrap();
        bag.record(&exported(&bag, jane, "first", None)).unwrap();
        assert_eq!(fs::read(bag.root().join(MANIFEST)).unwrap(), before);
        // Different bytes under a listed name replace its line (one rewrite, still sorted).
        bag.record(&exported(&bag, jane, "changed", None)).unwrap();
        let files = &bag.listed_exports(&ContactId::new(jane).unwrap()).unwrap()[&None];
        let contact_file = fs::read(bag.root().join(&files[&PayloadKind::Contact].0)).unwrap();
        assert_eq!(files[&PayloadKind::Contact].1, crate::canonical::sha256_hex(&contact_file));
        assert_eq!(bag.validate().unwrap().files, 6);
        assert_eq!(ids(&bag), [jane, john]);
    }

    #[test]
    fn a_manifest_larger_than_a_sort_chunk_is_finished_sorted_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let bag = Bag::open_or_create(dir.path(), "DSR-1").unwrap();
        bag.inner.manifest.lock().unwrap().chunk = 3;
        // Recorded out of id order (as concurrent exports finish): the manifest is appended
        // in that order, then sorted (through spilled chunks) when the bag is finished.
        let ids_recorded = [
            "0001SaD2PVY4319Q",
            "0001SaD2PVY4312K",
            "0001SaD2PVY4317A",
            "0001SaD2PVY4310B",
            "0001SaD2PVY4315J",
        ];
        let mut octets = 0;
        for id in ids_recorded {
            let export = exported(&bag, id, "x", None);
            octets += export.files.iter().map(|f| f.size).sum::<u64>();
            bag.record(&export).unwrap();
        }
        let appended = fs::read_to_string(bag.root().join(MANIFEST)).unwrap();
        assert!(appended.find(ids_recorded[0]) < appended.find(ids_recorded[1]), "{appended}");
        bag.finish().unwrap();
        let manifest = fs::read_to_string(bag.root().join(MANIFEST)).unwrap();
        let paths: Vec<&str> = manifest.lines().map(|l| l.split_once("  ").unwrap().1).collect();
        let mut sorted = paths.clone();
        sorted.sort_unstable();
        assert_eq!(paths, sorted);
        assert_eq!(paths.len(), 10);
        let mut want: Vec<&str> = ids_recorded.to_vec();
        want.sort_unstable();
        assert_eq!(ids(&bag), want);
        let info = fs::read_to_string(bag.root().join(BAG_INFO)).unwrap();
        assert!(info.contains(&format!("Payload-Oxum: {octets}.10\n")), "{info}");
        assert_eq!(bag.validate().unwrap(), BagReport { files: 10, bytes: octets });
        // Every contact is found again after the rewrite (the index was rebuilt).
        for id in ids_recorded {
            let exports = bag.listed_exports(&ContactId::new(id).unwrap()).unwrap();
            assert_eq!(exports[&None].len(), 2, "{id}");
        }
        let names: Vec<String> = fs::read_dir(bag.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(TEMP_MARKER)), "scratch files left: {names:?}");
    }

    #[test]
    fn a_line_a_failed_append_left_is_cut_off_before_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let bag = Bag::open_or_create(dir.path(), "DSR-1").unwrap();
        bag.record(&exported(&bag, "0001SaD2PVY4312K", "x", None)).unwrap();
        // As a failed write leaves it: half a line, and no handle.
        bag.inner.manifest.lock().unwrap().appender = None;
        let mut file = OpenOptions::new().append(true).open(bag.root().join(MANIFEST)).unwrap();
        file.write_all(b"0123abc").unwrap();
        bag.record(&exported(&bag, "0001SaD2PVY4315J", "x", None)).unwrap();
        let manifest = fs::read_to_string(bag.root().join(MANIFEST)).unwrap();
        assert!(parse_manifest(&manifest).is_ok(), "{manifest}");
        assert_eq!(manifest.lines().count(), 4, "{manifest}");
        assert_eq!(bag.validate().unwrap().files, 4);
    }

    #[test]
    fn after_a_failed_rewrite_the_index_is_rebuilt_from_the_file_or_every_lookup_fails() {
        let dir = tempfile::tempdir().unwrap();
        let bag = Bag::open_or_create(dir.path(), "DSR-1").unwrap();
        let jane = ContactId::new("0001SaD2PVY4312K").unwrap();
        bag.record(&exported(&bag, jane.as_str(), "x", None)).unwrap();
        {
            // As `rewrite_manifest` leaves it when the rewrite fails: the index dropped.
            let mut listing = bag.inner.manifest.lock().unwrap();
            listing.index = manifest::Index::default();
            reindex(bag.root(), &mut listing);
        }
        assert_eq!(bag.listed_exports(&jane).unwrap()[&None].len(), 2);
        bag.inner.manifest.lock().unwrap().lost = true;
        assert!(bag.listed_exports(&jane).is_err(), "never 'not listed' without an index");
        assert!(bag.record(&exported(&bag, jane.as_str(), "y", None)).is_err());
    }

    #[test]
    fn a_path_listed_twice_is_refused_sorted_or_not() {
        let digest = "0".repeat(64);
        for lines in [
            ["data/a.json", "data/a.json", "data/b.json"],
            ["data/a.json", "data/b.json", "data/a.json"],
        ] {
            let dir = tempfile::tempdir().unwrap();
            drop(Bag::open_or_create(dir.path(), "DSR-1").unwrap());
            let root = dir.path().join("DSR-1");
            let mut text = String::new();
            for line in lines {
                fs::write(root.join(line), b"{}").unwrap();
                text.push_str(&format!("{digest}  {line}\n"));
            }
            fs::write(root.join(MANIFEST), text).unwrap();
            let error = Bag::open_or_create(dir.path(), "DSR-1").unwrap_err();
            assert!(
                error.to_string().contains("listed twice")
                    || format!("{error:?}").contains("listed twice"),
                "{lines:?}: {error:?}"
            );
            let names: Vec<String> = fs::read_dir(&root)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(!names.iter().any(|n| n.contains(TEMP_MARKER)), "{names:?}");
        }
    }

    #[test]
    fn manifest_lines_outside_the_bag_are_refused() {
        let digest = "0".repeat(64);
        assert!(parse_manifest(&format!("{digest}  data/a.json\n")).is_ok());
        for path in ["../x", "/etc/passwd", "data/../../x", "data//x"] {
            assert!(parse_manifest(&format!("{digest}  {path}\n")).is_err(), "{path}");
        }
    }
}
