//! The writer: one process at a time appends to the log, continuing its chain.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use super::checkpoint::{Checkpoint, SignatureCheck, parent_dir};
use super::record::{
    Actor, AuditRecord, Detail, Entry, Event, LineError, RecordError, RecordTime, Sha256Hex,
    parse_line,
};
use super::{AuditError, sidecar};

/// How many times (10 ms apart) a held lock is tried again before the log is reported locked.
const LOCK_GRACE_POLLS: u32 = 30;

/// Buffered records are written to the file once this many bytes are waiting.
const GROUP_COMMIT_BYTES: usize = 64 * 1024;

/// The most of the log's end that opening it reads to find the last record. A record is a
/// few hundred bytes; a torn line is part of one. Anything longer at the end of the log is not
/// a crash mid-write, and is refused rather than read into memory.
const MAX_TAIL_BYTES: u64 = 8 * 1024 * 1024;

/// How the log is opened.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Signs the checkpoint written by [`AuditLog::finish`].
    pub signing_key: Option<SigningKey>,
    /// The source of record times (tests pin it).
    pub clock: fn() -> jiff::Timestamp,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self { signing_key: None, clock: jiff::Timestamp::now }
    }
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: Sha256Hex,
}

/// A torn last line that [`AuditLog::open`] moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The byte offset in the log where the torn line started.
    pub offset: u64,
    /// How many bytes were moved aside.
    pub bytes: u64,
    /// The forensic file they were appended to (`<log>.torn`).
    pub torn_path: PathBuf,
}

/// The audit log, open for appending. Holds an exclusive lock on the file until dropped.
///
/// Records of [`Event::StepIntent`] are written and fsynced before the call returns; other
/// records are buffered and group-committed: written when the buffer fills, at the next
/// intent, at [`AuditLog::sync`] or [`AuditLog::finish`], or (best effort) on drop.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    lock_path: PathBuf,
    buffer: Vec<u8>,
    next_seq: u64,
    head: Sha256Hex,
    options: LogOptions,
    recovery: Option<Recovery>,
    /// Bytes have been written since the last fsync.
    unsynced: bool,
    /// A write failed: the file's tail is unknown, so nothing more is appended. Reopening
    /// the log repairs it.
    failed: bool,
}

impl AuditLog {
    /// Opens (or creates) the log at `path` for appending, with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, AuditError> {
        Self::open_with(path, LogOptions::default())
    }

    /// Opens (or creates) the log at `path` for appending: takes the writer's lock, checks
    /// the last record and continues its chain. A torn last line (a crash mid-write) is
    /// moved aside to `<log>.torn` and a [`Event::LogRecovered`] record says so.
    pub fn open_with(path: impl AsRef<Path>, options: LogOptions) -> Result<Self, AuditError> {
        let path = path.as_ref().to_owned();
        let io = |action: &'static str| {
            let path = path.clone();
            move |source| AuditError::Io { action, path, source }
        };
        let existed = path.exists();
        let checkpoint_file = checkpoint_path(&path);
        if !existed && checkpoint_file.exists() {
            // Creating an empty log here would restart the chain at seq 0 and, at the end of
            // the run, overwrite the checkpoint that says records existed.
            return Err(AuditError::NotItsCheckpoint {
                path,
                checkpoint_path: checkpoint_file,
                reason: "the log is missing".to_owned(),
            });
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open the audit log"))?;
        let lock_path = sidecar(&path, ".lock");
        // A lock that is held is given a moment to be released: a process that forks (to run
        // another program) while it holds the log shares the lock until the child's exec
        // closes it, which is not a second writer.
        let mut attempt = file.try_lock();
        for _ in 0..LOCK_GRACE_POLLS {
            if !matches!(attempt, Err(fs::TryLockError::WouldBlock)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            attempt = file.try_lock();
        }
        match attempt {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&lock_path)
                    .ok()
                    .map(|text| text.trim().to_owned())
                    .filter(|text| !text.is_empty())
                    .unwrap_or_else(|| "another process (it recorded no details)".to_owned());
                return Err(AuditError::Locked { path, holder, lock_path });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(AuditError::Io { action: "lock the audit log", path, source });
            }
        }
        let since = RecordTime::from_timestamp((options.clock)());
        let holder = format!("pid {} on host {} since {since}\n", std::process::id(), host_name());
        fs::write(&lock_path, holder).map_err(|source| AuditError::Io {
            action: "write the lock file",
            path: lock_path.clone(),
            source,
        })?;
        if !existed {
            sync_dir(&path)?;
        }
        let tail = match read_tail(&mut file, &path).and_then(|tail| {
            continues_checkpoint(&mut file, &path, &tail, &options)?;
            Ok(tail)
        }) {
            Ok(tail) => tail,
            Err(error) => {
                // Nobody holds the log any more; leave no stale holder behind.
                let _ = fs::remove_file(&lock_path);
                return Err(error);
            }
        };
        let mut log = Self {
            path,
            file,
            lock_path,
            buffer: Vec::with_capacity(GROUP_COMMIT_BYTES),
            next_seq: tail.next_seq,
            head: tail.head,
            options,
            recovery: None,
            unsynced: false,
            failed: false,
        };
        if let Some((offset, bytes)) = tail.torn {
            log.move_torn_aside(tail.keep_len, offset, &bytes)?;
        }
        Ok(log)
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What [`AuditLog::open`] repaired, if anything.
    pub fn recovery(&self) -> Option<&Recovery> {
        self.recovery.as_ref()
    }

    /// The number of records in the log (the next record's `seq`).
    pub fn len(&self) -> u64 {
        self.next_seq
    }

    /// Whether the log has no record.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }

    /// The hash of the last record (64 zeros for an empty log).
    pub fn head(&self) -> &Sha256Hex {
        &self.head
    }

    /// Appends a record. Intents are made durable before this returns (as with
    /// [`AuditLog::append_intent`]); other records are group-committed.
    pub fn append(&mut self, entry: Entry) -> Result<Appended, AuditError> {
        let durable = entry.event == Event::StepIntent;
        let appended = self.push(entry)?;
        if durable {
            self.sync()?;
        }
        Ok(appended)
    }

    /// Appends a [`Event::StepIntent`] record and returns only once it (and every record
    /// before it) is written and fsynced: call it before the side effect it announces.
    pub fn append_intent(&mut self, entry: Entry) -> Result<Appended, AuditError> {
        if entry.event != Event::StepIntent {
            return Err(AuditError::NotAnIntent { event: entry.event });
        }
        self.append_durable(entry)
    }

    /// Appends any record and returns only once it is written and fsynced.
    pub fn append_durable(&mut self, entry: Entry) -> Result<Appended, AuditError> {
        let appended = self.push(entry)?;
        self.sync()?;
        Ok(appended)
    }

    /// Writes buffered records to the operating system (not yet fsynced).
    pub fn flush(&mut self) -> Result<(), AuditError> {
        self.check_usable()?;
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Err(source) = self.file.write_all(&self.buffer) {
            self.failed = true;
            return Err(self.io_error("append to the audit log", source));
        }
        self.buffer.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Writes buffered records and fsyncs the log.
    pub fn sync(&mut self) -> Result<(), AuditError> {
        self.flush()?;
        if self.unsynced {
            if let Err(source) = self.file.sync_data() {
                self.failed = true;
                return Err(self.io_error("fsync the audit log", source));
            }
            self.unsynced = false;
        }
        Ok(())
    }

    /// Ends a run: makes every record durable and writes the checkpoint beside the log
    /// (`<log>.checkpoint.json`), signed when a signing key is configured.
    pub fn finish(mut self) -> Result<Checkpoint, AuditError> {
        self.sync()?;
        let time = RecordTime::from_timestamp((self.options.clock)());
        let bytes = self.file.metadata().map_err(|e| self.io_error("read the audit log", e))?.len();
        let mut checkpoint = Checkpoint::new(
            self.next_seq,
            self.head.clone(),
            time,
            self.options.signing_key.as_ref(),
        );
        checkpoint.bytes = Some(bytes);
        checkpoint.write_atomically(&checkpoint_path(&self.path))?;
        Ok(checkpoint)
    }

    fn push(&mut self, entry: Entry) -> Result<Appended, AuditError> {
        self.check_usable()?;
        let next_seq = self
            .next_seq
            .checked_add(1)
            .ok_or(RecordError { field: "seq", rule: "below the largest 64-bit number" })?;
        let time = RecordTime::from_timestamp((self.options.clock)());
        let (record, line) = AuditRecord::seal(entry, self.next_seq, time, self.head.clone())?;
        self.buffer.extend_from_slice(&line);
        self.next_seq = next_seq;
        self.head = record.hash.clone();
        if self.buffer.len() >= GROUP_COMMIT_BYTES {
            self.flush()?;
        }
        Ok(Appended { seq: record.seq, hash: record.hash })
    }

    fn check_usable(&self) -> Result<(), AuditError> {
        if self.failed {
            return Err(AuditError::WriterFailed { path: self.path.clone() });
        }
        Ok(())
    }

    fn io_error(&self, action: &'static str, source: std::io::Error) -> AuditError {
        AuditError::Io { action, path: self.path.clone(), source }
    }

    /// Keeps the torn bytes in `<log>.torn` (durably, first), cuts them off the log, and
    /// records the repair.
    fn move_torn_aside(
        &mut self,
        keep_len: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), AuditError> {
        let torn_path = sidecar(&self.path, ".torn");
        let io = |action: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| AuditError::Io { action, path, source }
        };
        let mut torn = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&torn_path)
            .map_err(io("open the torn-line file", &torn_path))?;
        let header = format!(
            "# torn line moved aside from offset {offset} ({} bytes) at {}\n",
            bytes.len(),
            RecordTime::from_timestamp((self.options.clock)())
        );
        torn.write_all(header.as_bytes())
            .and_then(|()| torn.write_all(bytes))
            .and_then(|()| torn.write_all(b"\n"))
            .and_then(|()| torn.sync_all())
            .map_err(io("write the torn-line file", &torn_path))?;
        sync_dir(&torn_path)?;
        self.file.set_len(keep_len).map_err(io("truncate the torn line", &self.path))?;
        self.file.sync_all().map_err(io("fsync the audit log", &self.path))?;
        let length = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        self.recovery = Some(Recovery { offset, bytes: length, torn_path });
        let detail =
            Detail { torn_offset: Some(offset), torn_bytes: Some(length), ..Detail::default() };
        self.append_durable(Entry::new(Actor::system(), Event::LogRecovered).detail(detail))?;
        Ok(())
    }
}

/// An [`AuditLog`] shared by tasks running in parallel (the executor's contacts), whose
/// intents are group-committed: each [`SharedLog::append_intent`] writes its record and waits,
/// without holding the log or a runtime thread, for an fsync that covers it. One fsync runs
/// at a time, on a blocking thread, and covers every record written before it started, so
/// the intents of many contacts become durable together. Each caller still returns only once
/// its own record (and every record before it) is durable, so the order "intent durable, then
/// side effect" holds for every caller, and the file is a prefix of the chain at any kill point.
#[derive(Debug)]
pub struct SharedLog {
    log: std::sync::Mutex<AuditLog>,
    commit: std::sync::Arc<Commit>,
}

/// The group commit's state, shared with the fsync thread.
#[derive(Debug)]
struct Commit {
    /// A second handle on the log's file (its own open file description, so it holds no lock).
    file: File,
    path: PathBuf,
    state: std::sync::Mutex<CommitState>,
    durable: tokio::sync::watch::Sender<Durable>,
}

#[derive(Debug, Default)]
struct CommitState {
    /// Records `0..written` have been written to the file (not necessarily fsynced).
    written: u64,
    /// An fsync is running or about to.
    syncing: bool,
    /// How many fsyncs the group commit has made.
    syncs: u64,
    /// An fsync failed: what it said. Nothing more is appended.
    failed: Option<(std::io::ErrorKind, String)>,
}

/// How far the log is durable: records `0..n`, or an fsync failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durable {
    Upto(u64),
    Failed,
}

impl SharedLog {
    /// Shares `log`. Opens a second handle on its file for the fsyncs.
    ///
    /// # Errors
    /// The file cannot be opened again.
    pub fn new(log: AuditLog) -> Result<Self, AuditError> {
        let file = File::open(&log.path).map_err(|e| log.io_error("open the audit log", e))?;
        let written = log.next_seq;
        let (durable, _) = tokio::sync::watch::channel(Durable::Upto(0));
        let commit = Commit {
            file,
            path: log.path.clone(),
            state: std::sync::Mutex::new(CommitState { written, ..CommitState::default() }),
            durable,
        };
        Ok(Self { log: std::sync::Mutex::new(log), commit: std::sync::Arc::new(commit) })
    }

    /// The log, for records that need no group commit ([`AuditLog::append`] of outcomes,
    /// [`AuditLog::append_durable`], [`AuditLog::head`]). After a failed group fsync the log
    /// refuses every append.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, AuditLog> {
        // A panic while holding the lock would poison it; the log itself stays consistent
        // (records are appended whole), so carry on with it.
        let mut log = self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.commit.lock().failed.is_some() {
            log.failed = true;
        }
        log
    }

    /// Appends a [`Event::StepIntent`] record and returns once it (and every record before
    /// it) is written and fsynced, by an fsync it may share with other callers: call it
    /// before the side effect it announces.
    ///
    /// # Errors
    /// Not an intent, the log cannot be written, or the fsync failed.
    pub async fn append_intent(&self, entry: Entry) -> Result<Appended, AuditError> {
        if entry.event != Event::StepIntent {
            return Err(AuditError::NotAnIntent { event: entry.event });
        }
        let mut durable = self.commit.durable.subscribe();
        let (appended, target, start) = {
            let mut log = self.lock();
            let appended = log.push(entry)?;
            log.flush()?;
            let target = log.next_seq;
            let mut state = self.commit.lock();
            state.written = target;
            let start = !std::mem::replace(&mut state.syncing, true);
            (appended, target, start)
        };
        if start {
            let commit = self.commit.clone();
            // Not awaited here: the callers wait on `durable`, which the thread updates.
            drop(tokio::task::spawn_blocking(move || commit.sync_while_wanted()));
        }
        let reached = durable
            .wait_for(|d| match d {
                Durable::Upto(n) => *n >= target,
                Durable::Failed => true,
            })
            .await
            .map(|d| *d);
        match reached {
            Ok(Durable::Upto(_)) => Ok(appended),
            Ok(Durable::Failed) | Err(_) => Err(self.commit.failure()),
        }
    }

    /// How many fsyncs the group commit has made (for benchmarks and tests).
    pub fn group_syncs(&self) -> u64 {
        self.commit.lock().syncs
    }

    /// The log, no longer shared.
    pub fn into_inner(self) -> AuditLog {
        let mut log = self.log.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.commit.lock().failed.is_some() {
            log.failed = true;
        }
        log
    }
}

impl Commit {
    fn lock(&self) -> std::sync::MutexGuard<'_, CommitState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fsyncs until every written record is durable (callers that wrote during an fsync are
    /// covered by the next one), then stops.
    fn sync_while_wanted(&self) {
        let mut upto = self.lock().written;
        loop {
            let result = self.file.sync_data();
            let mut state = self.lock();
            state.syncs += 1;
            if let Err(error) = result {
                state.failed = Some((error.kind(), error.to_string()));
                state.syncing = false;
                self.durable.send_replace(Durable::Failed);
                return;
            }
            self.durable.send_replace(Durable::Upto(upto));
            if state.written <= upto {
                state.syncing = false;
                return;
            }
            upto = state.written;
        }
    }

    fn failure(&self) -> AuditError {
        let (kind, message) = self
            .lock()
            .failed
            .clone()
            .unwrap_or((std::io::ErrorKind::Other, "the fsync thread stopped".to_owned()));
        AuditError::Io {
            action: "fsync the audit log",
            path: self.path.clone(),
            source: std::io::Error::new(kind, message),
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Best effort: a caller that needs to know calls `sync` or `finish`.
        if !self.failed {
            let _ = self.sync();
        }
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// The checkpoint file of the log at `log`: `<log>.checkpoint.json`.
pub fn checkpoint_path(log: &Path) -> PathBuf {
    sidecar(log, ".checkpoint.json")
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn sync_dir(path: &Path) -> Result<(), AuditError> {
    let dir = parent_dir(path);
    File::open(&dir).and_then(|dir| dir.sync_all()).map_err(|source| AuditError::Io {
        action: "fsync the directory",
        path: dir,
        source,
    })
}

/// The end of the log as found on open.
struct Tail {
    next_seq: u64,
    head: Sha256Hex,
    /// The length of the log once a torn line is cut off.
    keep_len: u64,
    /// A torn last line: its offset and bytes.
    torn: Option<(u64, Vec<u8>)>,
}

/// Reads the end of the log: the last complete record (whose hash must verify) and a torn
/// line after it, if any. Only the tail is read, so opening a large log stays cheap.
fn read_tail(file: &mut File, path: &Path) -> Result<Tail, AuditError> {
    let io =
        |source| AuditError::Io { action: "read the audit log", path: path.to_owned(), source };
    let len = file.metadata().map_err(io)?.len();
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        let mut buffer = Vec::new();
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        Read::by_ref(file).take(len - start).read_to_end(&mut buffer).map_err(io)?;
        if let Some(tail) = tail_in(&buffer, start, path)? {
            return Ok(tail);
        }
        if start == 0 {
            // `tail_in` always decides when it sees the whole file.
            return Err(AuditError::CorruptTail {
                path: path.to_owned(),
                reason: "the end of the log cannot be read",
            });
        }
        if window >= MAX_TAIL_BYTES {
            return Err(AuditError::CorruptTail {
                path: path.to_owned(),
                reason: "the log ends with more than 8 MiB that are not a complete record, \
                         which no interrupted write leaves",
            });
        }
        window = window.saturating_mul(4).min(MAX_TAIL_BYTES);
    }
}

/// Finds the tail in `buffer`, the log's bytes from offset `start` to the end; `None` when
/// the buffer does not reach back far enough to see the last complete line whole.
fn tail_in(buffer: &[u8], start: u64, path: &Path) -> Result<Option<Tail>, AuditError> {
    let at_file_start = start == 0;
    let offset = |index: usize| start + u64::try_from(index).unwrap_or(u64::MAX);
    let mut end = buffer.len();
    let mut torn: Option<usize> = None;
    if buffer.last().is_some_and(|&byte| byte != b'\n') {
        match buffer.iter().rposition(|&byte| byte == b'\n') {
            Some(newline) => torn = Some(newline + 1),
            None if at_file_start => torn = Some(0),
            None => return Ok(None),
        }
        end = torn.unwrap_or(end);
    }
    loop {
        if end == 0 {
            if !at_file_start {
                return Ok(None);
            }
            let torn =
                torn.map(|from| (offset(from), buffer.get(from..).unwrap_or_default().to_vec()));
            return Ok(Some(Tail { next_seq: 0, head: Sha256Hex::genesis(), keep_len: 0, torn }));
        }
        let body = buffer.get(..end - 1).unwrap_or_default();
        let line_start = match body.iter().rposition(|&byte| byte == b'\n') {
            Some(newline) => newline + 1,
            None if at_file_start => 0,
            None => return Ok(None),
        };
        let line = body.get(line_start..).unwrap_or_default();
        match parse_line(line) {
            Ok(parsed) if parsed.hash_matches => {
                let torn = torn
                    .map(|from| (offset(from), buffer.get(from..).unwrap_or_default().to_vec()));
                return Ok(Some(Tail {
                    next_seq: parsed.record.seq.saturating_add(1),
                    head: parsed.record.hash,
                    keep_len: offset(end),
                    torn,
                }));
            }
            Ok(_) => {
                return Err(AuditError::CorruptTail {
                    path: path.to_owned(),
                    reason: "the last record's hash does not match its content",
                });
            }
            Err(LineError::NotARecord) => {
                return Err(AuditError::CorruptTail {
                    path: path.to_owned(),
                    reason: "the last line is JSON but not a valid audit record",
                });
            }
            // A complete last line that is not JSON is torn too; only one line is ever moved
            // aside, so a second bad line means something other than a crash.
            Err(LineError::NotJson) if torn.is_none() => {
                torn = Some(line_start);
                end = line_start;
            }
            Err(LineError::NotJson) => {
                return Err(AuditError::CorruptTail {
                    path: path.to_owned(),
                    reason: "the line before the torn last line is not a valid record",
                });
            }
        }
    }
}

/// Checks that the log continues the checkpoint beside it, if there is one: at least as many
/// records, and the checkpoint's last record still where it was with the hash it had. A log
/// cut short or rewritten is refused before anything is appended, so a new run cannot write a
/// fresh checkpoint over the evidence that it was changed.
fn continues_checkpoint(
    file: &mut File,
    path: &Path,
    tail: &Tail,
    options: &LogOptions,
) -> Result<(), AuditError> {
    let checkpoint_file = checkpoint_path(path);
    if !checkpoint_file.exists() {
        return Ok(());
    }
    let refuse = |reason: String| AuditError::NotItsCheckpoint {
        path: path.to_owned(),
        checkpoint_path: checkpoint_file.clone(),
        reason,
    };
    let checkpoint = Checkpoint::read(&checkpoint_file)?;
    if let Some(key) = &options.signing_key
        && checkpoint.check_signature(&key.verifying_key()) == SignatureCheck::Bad
    {
        return Err(refuse("the checkpoint's signature does not verify".to_owned()));
    }
    let records = tail.next_seq;
    if records < checkpoint.size {
        return Err(refuse(format!(
            "the log has {records} records, the checkpoint counts {}",
            checkpoint.size
        )));
    }
    let Some(last_seq) = checkpoint.size.checked_sub(1) else {
        return if checkpoint.head == Sha256Hex::genesis() {
            Ok(())
        } else {
            Err(refuse("the checkpoint of an empty log names a head record".to_owned()))
        };
    };
    let found = if records == checkpoint.size {
        Some(tail.head.clone())
    } else {
        match checkpoint.bytes {
            Some(bytes) => record_ending_at(file, path, bytes, tail.keep_len)?
                .filter(|(seq, _)| *seq == last_seq)
                .map(|(_, hash)| hash),
            None => record_with_seq(file, path, last_seq)?,
        }
    };
    match found {
        Some(hash) if hash == checkpoint.head => Ok(()),
        Some(_) => Err(refuse(format!(
            "record {last_seq} is not the one the checkpoint ends with (another hash)"
        ))),
        None => Err(refuse(format!("record {last_seq} is not where the checkpoint says"))),
    }
}

/// The seq and hash of the verified record whose line ends at byte `end` of the log (its
/// newline is the byte before `end`), if there is one.
fn record_ending_at(
    file: &mut File,
    path: &Path,
    end: u64,
    complete_len: u64,
) -> Result<Option<(u64, Sha256Hex)>, AuditError> {
    let io =
        |source| AuditError::Io { action: "read the audit log", path: path.to_owned(), source };
    if end == 0 || end > complete_len {
        return Ok(None);
    }
    // A record is far shorter than 64 KiB.
    let start = end.saturating_sub(64 * 1024);
    let mut buffer = Vec::new();
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    Read::by_ref(file).take(end - start).read_to_end(&mut buffer).map_err(io)?;
    let Some((&b'\n', body)) = buffer.split_last() else {
        return Ok(None);
    };
    let line = match body.iter().rposition(|&byte| byte == b'\n') {
        Some(newline) => body.get(newline + 1..).unwrap_or_default(),
        None if start == 0 => body,
        None => return Ok(None),
    };
    Ok(match parse_line(line) {
        Ok(parsed) if parsed.hash_matches => Some((parsed.record.seq, parsed.record.hash)),
        _ => None,
    })
}

/// The hash of the verified record with sequence number `seq`, read line by line from the
/// start of the log (checkpoints written before they recorded their byte offset).
fn record_with_seq(
    file: &mut File,
    path: &Path,
    seq: u64,
) -> Result<Option<Sha256Hex>, AuditError> {
    let io =
        |source| AuditError::Io { action: "read the audit log", path: path.to_owned(), source };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut reader = std::io::BufReader::new(Read::by_ref(file));
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = std::io::BufRead::read_until(
            &mut Read::by_ref(&mut reader).take(MAX_TAIL_BYTES),
            b'\n',
            &mut line,
        )
        .map_err(io)?;
        if read == 0 || line.last() != Some(&b'\n') {
            return Ok(None);
        }
        let body = line.get(..line.len() - 1).unwrap_or_default();
        if let Ok(parsed) = parse_line(body)
            && parsed.hash_matches
            && parsed.record.seq == seq
        {
            return Ok(Some(parsed.record.hash));
        }
    }
}
