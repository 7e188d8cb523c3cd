//! Verification: every line, every link, every sequence number, and the checkpoint.
//!
//! Each line is checked on its own (JSON, record schema, recomputed hash) and against the
//! chain so far. When a line does not fit, the classifier looks one line ahead and remembers
//! gaps and out-of-place records, so that a single act of tampering is reported once, as what
//! it is, at the line where it shows:
//!
//! - *modified*: the line's hash does not match its content;
//! - *deleted*: `seq` jumps forward and `prev` does not link to the line before; reported at
//!   the first line after the gap;
//! - *inserted*: the line does not fit and the next line links to the line before it (the
//!   chain continues as if it were not there), or it forks the chain (same `seq` and `prev`
//!   as its neighbour, while the chain continues from the other);
//! - *reordered*: a valid record out of its place: ahead of its turn (the chain does not
//!   continue from it and its slot turns up empty later) or behind it (its `seq` fills a gap
//!   seen earlier); reported at the line where it sits;
//! - *duplicated*: the same record (`seq` and hash) as the line before;
//! - *broken link*: the right `seq`, a valid hash, but `prev` is not the previous record's
//!   hash (one of the two was rewritten with a recomputed hash);
//! - *malformed*: a line in the middle that is not a record (it stands for one record: the
//!   chain resumes after it without another fault);
//! - *torn last line*: the last line is not a record (a crash mid-write; reopening the log
//!   for writing moves it aside).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::AuditError;
use super::checkpoint::{Checkpoint, SignatureCheck};
use super::record::{
    AuditRecord, ContactId, Event, LineError, ParsedLine, RequestId, Sha256Hex, StepId, parse_line,
};

/// What to verify the log against.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// A checkpoint kept elsewhere: reveals a truncated or rewritten tail.
    pub checkpoint: Option<Checkpoint>,
    /// The public key the checkpoint must be signed with.
    pub public_key: Option<VerifyingKey>,
}

/// The kind of a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A line in the middle of the log is not a record at all.
    Malformed,
    /// A record's content no longer matches its hash.
    Modified,
    /// Records are missing.
    Deleted,
    /// A line that does not belong to the chain.
    Inserted,
    /// A valid record out of its place.
    Reordered,
    /// A record repeated.
    Duplicated,
    /// A record does not link to the one before it.
    BrokenLink,
    /// The last line is incomplete.
    TornLastLine,
    /// Records were removed from the end (seen only against a checkpoint).
    TruncatedTail,
    /// The log does not contain the record the checkpoint names as its head.
    CheckpointMismatch,
    /// The checkpoint's signature does not verify.
    BadSignature,
    /// The checkpoint was signed by another key.
    WrongKey,
    /// A public key was given but the checkpoint is not signed.
    UnsignedCheckpoint,
}

impl FaultKind {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Modified => "modified",
            Self::Deleted => "deleted",
            Self::Inserted => "inserted",
            Self::Reordered => "reordered",
            Self::Duplicated => "duplicated",
            Self::BrokenLink => "broken link",
            Self::TornLastLine => "torn last line",
            Self::TruncatedTail => "truncated tail",
            Self::CheckpointMismatch => "checkpoint mismatch",
            Self::BadSignature => "bad signature",
            Self::WrongKey => "wrong key",
            Self::UnsignedCheckpoint => "unsigned checkpoint",
        }
    }
}

/// One fault found in the log or its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// The 1-based line where it shows; `None` for faults of the checkpoint.
    pub line: Option<u64>,
    /// What it is.
    pub kind: FaultKind,
    /// The `seq` concerned, when known.
    pub seq: Option<u64>,
    /// An explanation for a reviewer.
    pub message: String,
}

/// A `step.intent` with no outcome after it: a run that stopped mid-step, not tampering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interrupted {
    /// The intent's line.
    pub line: u64,
    /// The intent's `seq`.
    pub seq: u64,
    /// Its request.
    pub request_id: Option<RequestId>,
    /// Its step.
    pub step: Option<StepId>,
    /// Its contact.
    pub contact: Option<ContactId>,
}

/// A `log.recovered` record: a torn line was moved aside when the log was reopened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovered {
    /// The record's line.
    pub line: u64,
    /// How many torn bytes were moved aside.
    pub torn_bytes: Option<u64>,
}

/// What was found about the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStatus {
    /// Records the checkpoint covers.
    pub size: u64,
    /// Its head hash.
    pub head: Sha256Hex,
    /// Its signing key id.
    pub key_id: Option<String>,
    /// `valid`, `unsigned`, `not-checked`, `wrong-key` or `bad`.
    pub signature: &'static str,
    /// Records in the log after the checkpoint (appended by later runs).
    pub records_after: u64,
}

/// The result of verifying a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Whether the log verifies (no fault; interrupted runs allowed).
    pub ok: bool,
    /// Lines read.
    pub lines: u64,
    /// Lines that are well-formed records.
    pub records: u64,
    /// `run.start` records.
    pub runs: u64,
    /// Distinct request ids.
    pub requests: u64,
    /// Every fault, by line.
    pub faults: Vec<Fault>,
    /// Intents without an outcome.
    pub interrupted: Vec<Interrupted>,
    /// Torn lines recovered by the writer.
    pub recovered: Vec<Recovered>,
    /// The checkpoint, when one was given.
    pub checkpoint: Option<CheckpointStatus>,
    /// A writer held the log while it was read: an incomplete last line is a record being
    /// written, not a fault.
    pub writer_active: bool,
    /// The line being written when `writer_active`, left unchecked.
    pub unchecked_last_line: Option<u64>,
}

/// Verifies the log at `path`. I/O errors are errors; everything wrong with the content is a
/// [`Fault`] in the report.
///
/// The log is read in chunks of whole lines; worker threads parse and hash the chunks (each
/// line on its own) while this thread checks the chain in line order. At most a few chunks
/// are in flight, so memory stays bounded whatever the length of the log.
pub fn verify_file(path: &Path, options: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    let io =
        |source| AuditError::Io { action: "read the audit log", path: path.to_owned(), source };
    let mut file = File::open(path).map_err(io)?;
    let writer_active = writer_holds(&file);
    let mut verifier = Verifier::new(options.checkpoint.as_ref().map(|c| c.size));
    verifier.writer_active = writer_active;
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    parallel::run(&mut file, workers.clamp(1, 8), &mut verifier).map_err(io)?;
    Ok(verifier.finish(options))
}

/// [`verify_file`] as it was before the fast path: one thread, every line deserialised and
/// re-serialised. Kept for the benchmark's side-by-side figures; not part of the API. (It
/// feeds the same chain check, so each record is also copied into the check's compact form:
/// a few tens of nanoseconds beside the microseconds of the round trip through serde.)
#[doc(hidden)]
pub fn verify_file_baseline(
    path: &Path,
    options: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let io =
        |source| AuditError::Io { action: "read the audit log", path: path.to_owned(), source };
    let file = File::open(path).map_err(io)?;
    let writer_active = writer_holds(&file);
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut verifier = Verifier::new(options.checkpoint.as_ref().map(|c| c.size));
    verifier.writer_active = writer_active;
    let mut current = read_checked(&mut reader, 1).map_err(io)?;
    while let Some((buffer, line)) = current {
        let next = read_checked(&mut reader, line.number + 1).map_err(io)?;
        verifier.process(&buffer, &line, next.as_ref().map(|(_, next)| next));
        current = next;
    }
    Ok(verifier.finish(options))
}

/// The next line checked the old way ([`parse_line`]), with the buffer its spans point into.
fn read_checked(
    reader: &mut impl BufRead,
    number: u64,
) -> std::io::Result<Option<(Vec<u8>, Line)>> {
    let Some((mut bytes, complete, is_last)) = read_raw(reader)? else { return Ok(None) };
    let parsed = if complete {
        parse_line(&bytes).map(|parsed| {
            let mut extra = Vec::new();
            let checked = Checked::from_parsed(&parsed, bytes.len(), &mut extra);
            bytes.extend_from_slice(&extra);
            checked
        })
    } else {
        // A line without its newline is torn even if what is there happens to parse.
        Err(LineError::NotJson)
    };
    Ok(Some((bytes, Line { number, parsed, is_last })))
}

/// Reading in chunks, parsing in parallel, checking in order.
mod parallel {
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
    use std::sync::{Arc, Mutex};

    use super::{Checked, Line, LineError, Verifier, check};

    /// Bytes read at a time (extended until a line ends).
    const CHUNK: usize = 1 << 20;

    /// Room for the part of a line carried over to the next chunk: buffers reused from chunk
    /// to chunk do not grow.
    const SLACK: usize = 64 << 10;

    type Parsed = Result<Checked, LineError>;

    /// A chunk to check: its index, its bytes, whether it ends with a newline, and an empty
    /// vector (reused) for the results.
    type Job = (usize, Vec<u8>, bool, Vec<Parsed>);

    /// A checked chunk: its index, its bytes (the lines, then the ids of lines that took the
    /// slow path, which the spans point into) and one result per line.
    type Done = (usize, Vec<u8>, Vec<Parsed>);

    /// Reads the next chunk of whole lines: `Some((lines, complete))`; `complete` is false
    /// for the bytes after the last newline at the end of the file (a torn line). `spare`
    /// holds buffers already used, taken before allocating a new one.
    fn next_chunk(
        file: &mut impl Read,
        carry: &mut Vec<u8>,
        eof: &mut bool,
        spare: &mut Vec<Vec<u8>>,
    ) -> std::io::Result<Option<(Vec<u8>, bool)>> {
        loop {
            if let Some(last) = carry.iter().rposition(|&b| b == b'\n')
                && (carry.len() >= CHUNK || *eof)
            {
                let mut rest = spare.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK + SLACK));
                rest.clear();
                rest.extend_from_slice(carry.get(last.saturating_add(1)..).unwrap_or_default());
                carry.truncate(last.saturating_add(1));
                return Ok(Some((std::mem::replace(carry, rest), true)));
            }
            if *eof {
                return Ok((!carry.is_empty()).then(|| (std::mem::take(carry), false)));
            }
            // `read_to_end` fills the spare capacity without zeroing it first.
            carry.reserve(CHUNK);
            let limit = u64::try_from(CHUNK).unwrap_or(u64::MAX);
            if file.by_ref().take(limit).read_to_end(carry)? == 0 {
                *eof = true;
            }
        }
    }

    /// Checks each line of a chunk on its own.
    fn check_chunk(
        mut chunk: Vec<u8>,
        complete: bool,
        mut results: Vec<Parsed>,
    ) -> (Vec<u8>, Vec<Parsed>) {
        results.clear();
        if !complete {
            // A line without its newline is torn even if what is there happens to parse.
            results.push(Err(LineError::NotJson));
            return (chunk, results);
        }
        let mut extra = Vec::new();
        let base = chunk.len();
        // Line by line: each ends with a newline (a complete chunk ends with one).
        let mut offset = 0_usize;
        while let Some(rest) = chunk.get(offset..).filter(|rest| !rest.is_empty()) {
            let (len, result) = check(rest, offset, base, &mut extra);
            results.push(result);
            offset = offset.saturating_add(len).saturating_add(1);
        }
        chunk.extend_from_slice(&extra);
        (chunk, results)
    }

    fn worker(jobs: &Mutex<Receiver<Job>>, results: &Sender<Done>) {
        loop {
            let job = match jobs.lock() {
                Ok(receiver) => receiver.recv(),
                Err(_) => return,
            };
            let Ok((index, chunk, complete, parsed)) = job else { return };
            let (chunk, parsed) = check_chunk(chunk, complete, parsed);
            if results.send((index, chunk, parsed)).is_err() {
                return;
            }
        }
    }

    /// Feeds every line of `file` to `verifier`, in order, with its successor.
    pub(super) fn run(
        file: &mut impl Read,
        workers: usize,
        verifier: &mut Verifier,
    ) -> std::io::Result<()> {
        let in_flight = workers.saturating_mul(2).saturating_add(1);
        let (job_sender, job_receiver) = sync_channel::<Job>(in_flight);
        let job_receiver = Arc::new(Mutex::new(job_receiver));
        let (result_sender, result_receiver) = channel::<Done>();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let jobs = Arc::clone(&job_receiver);
                let results = result_sender.clone();
                scope.spawn(move || worker(&jobs, &results));
            }
            drop(result_sender);
            let mut carry = Vec::with_capacity(CHUNK + SLACK);
            let mut eof = false;
            // Buffers and result vectors of checked chunks, reused: no page faults on fresh
            // memory for every chunk, and no freeing on this thread.
            let mut spare_buffers: Vec<Vec<u8>> = Vec::new();
            let mut spare_results: Vec<Vec<Parsed>> = Vec::new();
            let (mut issued, mut checked) = (0_usize, 0_usize);
            let mut done_reading = false;
            let mut pending: BTreeMap<usize, (Vec<u8>, Vec<Parsed>)> = BTreeMap::new();
            // The last line seen, not yet checked (it waits for its successor), with the
            // buffer of its chunk.
            let mut held: Option<(Vec<u8>, Line)> = None;
            let mut number = 0_u64;
            let outcome = 'chunks: loop {
                while !done_reading && issued.saturating_sub(checked) < in_flight {
                    match next_chunk(file, &mut carry, &mut eof, &mut spare_buffers) {
                        Ok(Some((chunk, complete))) => {
                            let results = spare_results.pop().unwrap_or_default();
                            if job_sender.send((issued, chunk, complete, results)).is_err() {
                                done_reading = true;
                            }
                            issued = issued.saturating_add(1);
                        }
                        Ok(None) => done_reading = true,
                        Err(error) => break 'chunks Err(error),
                    }
                }
                if checked == issued {
                    break Ok(());
                }
                let chunk = loop {
                    if let Some(chunk) = pending.remove(&checked) {
                        break Some(chunk);
                    }
                    match result_receiver.recv() {
                        Ok((index, buffer, lines)) => {
                            pending.insert(index, (buffer, lines));
                        }
                        Err(_) => break None,
                    }
                };
                let Some((buffer, mut lines)) = chunk else {
                    break Err(std::io::Error::other("a verification worker stopped"));
                };
                checked = checked.saturating_add(1);
                let mut parsed = lines.drain(..);
                let Some(first) = parsed.next() else { continue };
                number = number.saturating_add(1);
                let mut current = Line { number, parsed: first, is_last: false };
                if let Some((previous_buffer, previous)) = held.take() {
                    verifier.process(&previous_buffer, &previous, Some(&current));
                    spare_buffers.push(previous_buffer);
                }
                for next in parsed {
                    number = number.saturating_add(1);
                    let next = Line { number, parsed: next, is_last: false };
                    verifier.process(&buffer, &current, Some(&next));
                    current = next;
                }
                spare_results.push(lines);
                held = Some((buffer, current));
            };
            drop(job_sender);
            if let Some((buffer, mut last)) = held.take() {
                last.is_last = true;
                verifier.process(&buffer, &last, None);
            }
            outcome
        })
    }
}

/// Whether a writer holds the log's lock. Probed, not held: holding even a shared lock would
/// refuse a writer that starts meanwhile.
fn writer_holds(file: &File) -> bool {
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

/// A SHA-256 digest as bytes: what the chain check compares.
type Digest = [u8; 32];

/// The bytes of [`Sha256Hex::genesis`] (64 zero digits).
const GENESIS: Digest = [0; 32];

/// The bytes of a digest given in hex (always valid: [`Sha256Hex`] holds 64 lowercase hex
/// digits).
fn digest_of(hex: &Sha256Hex) -> Digest {
    decode_hex(hex.as_str().as_bytes()).unwrap_or(GENESIS)
}

/// 64 lowercase hex digits to the 32 bytes they spell; `None` for anything else. Without a
/// branch or a table lookup per digit, so that the compiler can do the 64 digits in vector
/// registers: the verifier decodes two digests per record.
fn decode_hex(hex: &[u8]) -> Option<Digest> {
    let hex: &[u8; 64] = hex.try_into().ok()?;
    let mut values = [0_u8; 64];
    let mut bad = 0_u8;
    for (value, &digit) in values.iter_mut().zip(hex) {
        let number = digit.wrapping_sub(b'0');
        let letter = digit.wrapping_sub(b'a');
        let (is_number, is_letter) = (number < 10, letter < 6);
        *value = if is_number { number } else { letter.wrapping_add(10) };
        bad |= u8::from(!(is_number | is_letter));
    }
    let mut digest = GENESIS;
    for (byte, pair) in digest.iter_mut().zip(values.as_chunks::<2>().0) {
        let [high, low] = *pair;
        *byte = (high << 4) | (low & 15);
    }
    (bad == 0).then_some(digest)
}

/// Where a field's text is in the buffer that holds the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn of(self, buffer: &[u8]) -> &[u8] {
        buffer.get(self.start..self.end).unwrap_or_default()
    }
}

/// A line checked on its own (schema, every field's rule, its hash), reduced to what the
/// chain check needs: fixed-size digests, and the ids as spans of the buffer that holds the
/// line. Nothing is allocated per line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Checked {
    seq: u64,
    hash: Digest,
    prev: Digest,
    /// Whether the stored hash matches the recomputed one.
    hash_matches: bool,
    event: Event,
    request: Option<Span>,
    step: Option<Span>,
    contact: Option<Span>,
    /// The detail's `tornBytes` (`log.recovered` records).
    torn_bytes: Option<u64>,
}

impl Checked {
    /// From a record the slow path parsed; its ids are appended to `extra`, which will sit
    /// in the buffer at `base`.
    fn from_parsed(parsed: &ParsedLine, base: usize, extra: &mut Vec<u8>) -> Self {
        let record = &parsed.record;
        let mut keep = |text: Option<&str>| {
            text.map(|text| {
                let start = base.saturating_add(extra.len());
                extra.extend_from_slice(text.as_bytes());
                Span { start, end: start.saturating_add(text.len()) }
            })
        };
        Self {
            seq: record.seq,
            hash: digest_of(&record.hash),
            prev: digest_of(&record.prev),
            hash_matches: parsed.hash_matches,
            event: record.event,
            request: keep(record.request_id.as_ref().map(RequestId::as_str)),
            step: keep(record.step.as_ref().map(StepId::as_str)),
            contact: keep(record.contact.as_ref().map(ContactId::as_str)),
            torn_bytes: record.detail.as_ref().and_then(|detail| detail.torn_bytes),
        }
    }

    /// A copy that owns its ids (for a record kept past its chunk).
    fn detach(&self, buffer: &[u8]) -> (Self, Vec<u8>) {
        let mut own = Vec::new();
        let mut keep = |span: Option<Span>| {
            span.map(|span| {
                let start = own.len();
                own.extend_from_slice(span.of(buffer));
                Span { start, end: own.len() }
            })
        };
        let detached = Self {
            request: keep(self.request),
            step: keep(self.step),
            contact: keep(self.contact),
            ..self.clone()
        };
        (detached, own)
    }
}

/// Checks the line at the start of `bytes` (which end there or go on after its newline):
/// the fast path when the line is canonical, else [`parse_line`]. Returns the line's length
/// (the fast path finds it as it reads; only a line that takes the slow path is searched
/// for its newline). `offset` is where the line starts in its chunk; the slow path's ids go
/// to `extra`, which will be appended to the chunk of length `base`.
fn check(
    bytes: &[u8],
    offset: usize,
    base: usize,
    extra: &mut Vec<u8>,
) -> (usize, Result<Checked, LineError>) {
    if let Some((len, checked)) = fast::check_canonical(bytes, offset) {
        return (len, Ok(checked));
    }
    let len = bytes.iter().position(|&byte| byte == b'\n').unwrap_or(bytes.len());
    let line = bytes.get(..len).unwrap_or_default();
    (len, parse_line(line).map(|parsed| Checked::from_parsed(&parsed, base, extra)))
}

struct Line {
    number: u64,
    parsed: Result<Checked, LineError>,
    is_last: bool,
}

/// The next line's bytes without its newline, whether it had one, and whether it is the
/// last line.
fn read_raw(reader: &mut impl BufRead) -> std::io::Result<Option<(Vec<u8>, bool, bool)>> {
    let mut bytes = Vec::with_capacity(512);
    if reader.read_until(b'\n', &mut bytes)? == 0 {
        return Ok(None);
    }
    let complete = bytes.last() == Some(&b'\n');
    if complete {
        bytes.pop();
    }
    let is_last = reader.fill_buf()?.is_empty();
    Ok(Some((bytes, complete, is_last)))
}

/// The next line parsed for display: its record when it is one.
fn read_line(reader: &mut impl BufRead) -> std::io::Result<Option<Result<ParsedLine, LineError>>> {
    let Some((bytes, complete, _)) = read_raw(reader)? else { return Ok(None) };
    // A line without its newline is torn even if what is there happens to parse.
    Ok(Some(if complete { parse(&bytes) } else { Err(LineError::NotJson) }))
}

/// The last record accepted into the chain.
struct Anchor {
    line: u64,
    seq: u64,
    hash: Digest,
    prev: Digest,
    /// The fault reported for the anchor's own line, if any.
    fault: Option<usize>,
}

/// A forward jump in `seq`: missing sequence numbers, reported as deleted unless they turn
/// up elsewhere (then the records were reordered).
struct Gap {
    line: u64,
    missing: Vec<(u64, u64)>,
}

/// A valid record that came before its turn, provisionally reported as inserted.
struct Displaced {
    line: u64,
    /// The record, its ids in `ids`.
    record: Checked,
    ids: Vec<u8>,
    expected_then: u64,
    fault: usize,
}

/// The key of an open intent: request, step and contact, each as a presence byte, a length
/// and the text ([`intent_key`]).
type IntentKey = Box<[u8]>;

/// Writes the intent key of `record` into `key`.
fn intent_key(key: &mut Vec<u8>, record: &Checked, buffer: &[u8]) {
    key.clear();
    for span in [record.request, record.step, record.contact] {
        match span {
            None => key.push(0),
            Some(span) => {
                let text = span.of(buffer);
                key.push(1);
                key.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_le_bytes());
                key.extend_from_slice(text);
            }
        }
    }
}

/// The ids an intent key holds, back as typed values (they were validated when parsed).
fn intent_ids(key: &[u8]) -> (Option<RequestId>, Option<StepId>, Option<ContactId>) {
    fn next<'a>(key: &mut &'a [u8]) -> Option<&'a str> {
        let (&present, rest) = key.split_first()?;
        *key = rest;
        if present == 0 {
            return None;
        }
        let (length, rest) = key.split_first_chunk::<4>()?;
        let length = usize::try_from(u32::from_le_bytes(*length)).ok()?;
        let (text, rest) = rest.split_at_checked(length)?;
        *key = rest;
        std::str::from_utf8(text).ok()
    }
    let mut key = key;
    let request = next(&mut key).and_then(|text| RequestId::new(text).ok());
    let step = next(&mut key).and_then(|text| StepId::new(text).ok());
    let contact = next(&mut key).and_then(|text| ContactId::new(text).ok());
    (request, step, contact)
}

struct Verifier {
    anchor: Option<Anchor>,
    faults: Vec<Fault>,
    gaps: Vec<Gap>,
    displaced: Vec<Displaced>,
    lines: u64,
    records: u64,
    /// Lines since the anchor that are not records: each may stand for a record.
    unreadable: u64,
    runs: u64,
    requests: HashSet<Box<[u8]>>,
    /// The request of the last record tracked (already in `requests`).
    last_request: Option<Vec<u8>>,
    open_intents: HashMap<IntentKey, (u64, u64)>,
    /// Scratch space for intent keys.
    key: Vec<u8>,
    recovered: Vec<Recovered>,
    writer_active: bool,
    unchecked_last_line: Option<u64>,
    /// The `seq` whose hash a checkpoint names, and that hash once seen.
    checkpoint_seq: Option<u64>,
    checkpoint_hash: Option<(u64, Digest)>,
}

impl Verifier {
    fn new(checkpoint_size: Option<u64>) -> Self {
        Self {
            anchor: None,
            faults: Vec::new(),
            gaps: Vec::new(),
            displaced: Vec::new(),
            lines: 0,
            records: 0,
            unreadable: 0,
            runs: 0,
            requests: HashSet::new(),
            last_request: None,
            open_intents: HashMap::new(),
            key: Vec::new(),
            recovered: Vec::new(),
            writer_active: false,
            unchecked_last_line: None,
            checkpoint_seq: checkpoint_size.and_then(|size| size.checked_sub(1)),
            checkpoint_hash: None,
        }
    }

    fn expected(&self) -> u64 {
        self.anchor.as_ref().map_or(0, |anchor| anchor.seq.saturating_add(1))
    }

    fn anchor_hash(&self) -> Digest {
        self.anchor.as_ref().map_or(GENESIS, |anchor| anchor.hash)
    }

    fn fault(&mut self, line: u64, kind: FaultKind, seq: Option<u64>, message: String) -> usize {
        self.faults.push(Fault { line: Some(line), kind, seq, message });
        self.faults.len() - 1
    }

    fn accept(
        &mut self,
        line: u64,
        record: &Checked,
        buffer: &[u8],
        seq: u64,
        fault: Option<usize>,
    ) {
        self.track(line, record, buffer);
        self.unreadable = 0;
        if self.checkpoint_seq == Some(seq) {
            self.checkpoint_hash = Some((line, record.hash));
        }
        self.anchor = Some(Anchor { line, seq, hash: record.hash, prev: record.prev, fault });
    }

    /// Checks `line`, whose spans point into `buffer`, against the chain; `next` is the line
    /// after it (only its `seq`, `hash` and `prev` are looked at).
    fn process(&mut self, buffer: &[u8], line: &Line, next: Option<&Line>) {
        self.lines += 1;
        let number = line.number;
        let parsed = match &line.parsed {
            Ok(parsed) => parsed,
            Err(LineError::NotJson) if line.is_last && self.writer_active => {
                self.unchecked_last_line = Some(number);
                return;
            }
            Err(error) => {
                let (kind, message) = if line.is_last && *error == LineError::NotJson {
                    (
                        FaultKind::TornLastLine,
                        format!(
                            "the last line is incomplete ({}): a write was interrupted; \
                             opening the log for writing moves it aside to the .torn file",
                            error.as_str()
                        ),
                    )
                } else {
                    (FaultKind::Malformed, format!("the line is {}", error.as_str()))
                };
                self.fault(number, kind, None, message);
                self.unreadable += 1;
                return;
            }
        };
        self.records += 1;
        self.classify(number, parsed, buffer, next.and_then(|next| next.parsed.as_ref().ok()));
    }

    /// Counts and intent tracking, for records that belong to the chain.
    fn track(&mut self, number: u64, record: &Checked, buffer: &[u8]) {
        // Consecutive records mostly share their request: hash it only when it changes.
        if let Some(request) = record.request.map(|span| span.of(buffer))
            && self.last_request.as_deref() != Some(request)
        {
            if !self.requests.contains(request) {
                self.requests.insert(request.into());
            }
            let last = self.last_request.get_or_insert_default();
            last.clear();
            last.extend_from_slice(request);
        }
        match record.event {
            Event::RunStart => self.runs += 1,
            Event::StepIntent => {
                intent_key(&mut self.key, record, buffer);
                match self.open_intents.get_mut(self.key.as_slice()) {
                    Some(open) => *open = (number, record.seq),
                    None => {
                        self.open_intents.insert(self.key.as_slice().into(), (number, record.seq));
                    }
                }
            }
            event if event.is_step_outcome() && !self.open_intents.is_empty() => {
                intent_key(&mut self.key, record, buffer);
                self.open_intents.remove(self.key.as_slice());
            }
            Event::LogRecovered => {
                self.recovered.push(Recovered { line: number, torn_bytes: record.torn_bytes });
            }
            _ => {}
        }
    }

    fn classify(&mut self, number: u64, record: &Checked, buffer: &[u8], next: Option<&Checked>) {
        let intact = record.hash_matches;
        let seq = record.seq;
        let expected = self.expected();
        let anchor_hash = self.anchor_hash();

        if let Some(anchor) = &self.anchor
            && seq == anchor.seq
            && record.hash == anchor.hash
        {
            let message = format!("the same record as line {} (seq {seq})", anchor.line);
            self.fault(number, FaultKind::Duplicated, Some(seq), message);
            return;
        }
        if intact && seq == expected && record.prev == anchor_hash {
            self.accept(number, record, buffer, seq, None);
            return;
        }
        // Unreadable lines just before stood for the records in between (already reported);
        // the link through them cannot be checked.
        if intact && self.unreadable > 0 && seq == expected.saturating_add(self.unreadable) {
            self.accept(number, record, buffer, seq, None);
            return;
        }
        // The chain continues on the next line as if this one were not there.
        if next.is_some_and(|next| next.seq == expected && next.prev == anchor_hash) {
            if intact && seq > expected {
                self.displace(number, record, buffer, expected);
            } else if intact && seq < expected && self.take_from_gaps(seq).is_some() {
                self.track(number, record, buffer);
                self.report_moved_later(number, seq, expected);
            } else {
                let message = format!(
                    "this line does not belong to the chain (seq {seq}); the next line links \
                     to the record before it"
                );
                self.fault(number, FaultKind::Inserted, Some(seq), message);
            }
            return;
        }
        // A fork: same seq and prev as the anchor. The one the chain continues from stays.
        if let Some(anchor) = &self.anchor
            && intact
            && seq == anchor.seq
            && record.prev == anchor.prev
        {
            if next.is_none_or(|next| next.prev == record.hash) {
                let message = format!(
                    "this line does not belong to the chain: line {number} has the same \
                     seq {seq} and links to the same record, and the chain continues \
                     from line {number}",
                );
                let anchor_line = anchor.line;
                match anchor.fault.and_then(|index| self.faults.get_mut(index)) {
                    Some(fault) => {
                        fault.kind = FaultKind::Inserted;
                        fault.message = message;
                    }
                    None => {
                        self.fault(anchor_line, FaultKind::Inserted, Some(seq), message);
                    }
                }
                self.accept(number, record, buffer, seq, None);
            } else {
                let message = format!(
                    "this line does not belong to the chain: it repeats seq {seq} of line \
                     {} and the chain continues from that line",
                    anchor.line
                );
                self.fault(number, FaultKind::Inserted, Some(seq), message);
            }
            return;
        }
        if !intact {
            let message = format!(
                "the record's content does not match its hash (record seq {expected}): it was \
                 edited after it was written"
            );
            let fault = self.fault(number, FaultKind::Modified, Some(expected), message);
            self.accept(number, record, buffer, expected, Some(fault));
            return;
        }
        if seq == expected {
            let message = format!(
                "prev does not match the hash of the record before it{}: one of the two was \
                 rewritten and its hash recomputed",
                self.anchor.as_ref().map(|a| format!(" (line {})", a.line)).unwrap_or_default()
            );
            let fault = self.fault(number, FaultKind::BrokenLink, Some(seq), message);
            self.accept(number, record, buffer, seq, Some(fault));
            return;
        }
        if seq > expected {
            // The chain does not continue from this record and the next one is earlier:
            // this one is out of place (records were moved), not the end of a deletion.
            if record.prev != anchor_hash && next.is_some_and(|next| next.seq < seq) {
                self.displace(number, record, buffer, expected);
            } else {
                self.jump_forward(number, record, buffer, expected, &anchor_hash);
            }
            return;
        }
        if self.take_from_gaps(seq).is_some() {
            self.track(number, record, buffer);
            self.report_moved_later(number, seq, expected);
            return;
        }
        let message = format!(
            "seq goes backwards (seq {seq} after seq {}): a copy of an earlier record or a \
             record from elsewhere was inserted",
            expected.saturating_sub(1)
        );
        self.fault(number, FaultKind::Inserted, Some(seq), message);
    }

    /// A valid record ahead of its turn: inserted, unless its slot turns up empty later
    /// (then it was reordered).
    fn displace(&mut self, number: u64, record: &Checked, buffer: &[u8], expected: u64) {
        let seq = record.seq;
        let message = format!(
            "record seq {seq} does not belong here (expected seq {expected}); the chain \
             continues without it"
        );
        let fault = self.fault(number, FaultKind::Inserted, Some(seq), message);
        let (record, ids) = record.detach(buffer);
        self.displaced.push(Displaced {
            line: number,
            record,
            ids,
            expected_then: expected,
            fault,
        });
    }

    /// `seq` jumps past `expected`: records are missing here, unless they came earlier.
    fn jump_forward(
        &mut self,
        number: u64,
        record: &Checked,
        buffer: &[u8],
        expected: u64,
        anchor_hash: &Digest,
    ) {
        let seq = record.seq;
        let mut missing = vec![(expected, seq - 1)];
        let mut linked = record.prev == *anchor_hash;
        let mut index = 0;
        while let Some(displaced) = self.displaced.get(index) {
            if (expected..seq).contains(&displaced.record.seq) {
                let displaced = self.displaced.swap_remove(index);
                self.track(displaced.line, &displaced.record, &displaced.ids);
                remove_seq(&mut missing, displaced.record.seq);
                if displaced.record.seq.checked_add(1) == Some(seq)
                    && record.prev == displaced.record.hash
                {
                    linked = true;
                }
                if let Some(fault) = self.faults.get_mut(displaced.fault) {
                    fault.kind = FaultKind::Reordered;
                    fault.message = format!(
                        "record seq {} is out of order: it comes before seq {}",
                        displaced.record.seq, displaced.expected_then
                    );
                }
            } else {
                index += 1;
            }
        }
        let fault = if missing.is_empty() {
            (!linked).then(|| {
                let message =
                    "prev does not match the hash of the record before it in sequence".to_owned();
                self.fault(number, FaultKind::BrokenLink, Some(seq), message)
            })
        } else if linked {
            let message = format!(
                "seq jumps from {} to {seq} yet the record links to the line before: its seq \
                 was rewritten and its hash recomputed",
                expected.saturating_sub(1)
            );
            Some(self.fault(number, FaultKind::Modified, Some(seq), message))
        } else {
            self.gaps.push(Gap { line: number, missing });
            None
        };
        self.accept(number, record, buffer, seq, fault);
    }

    fn report_moved_later(&mut self, number: u64, seq: u64, expected: u64) {
        let message = format!(
            "record seq {seq} is out of order: it comes after seq {}",
            expected.saturating_sub(1)
        );
        self.fault(number, FaultKind::Reordered, Some(seq), message);
    }

    /// Removes `seq` from the gaps; returns the line of the gap it was in.
    fn take_from_gaps(&mut self, seq: u64) -> Option<u64> {
        self.gaps.iter_mut().find_map(|gap| remove_seq(&mut gap.missing, seq).then_some(gap.line))
    }

    fn finish(mut self, options: &VerifyOptions) -> VerifyReport {
        // Records displaced past the end (the last two lines swapped) fit after the chain.
        while let Some(index) = self.displaced.iter().position(|displaced| {
            displaced.record.seq == self.expected() && displaced.record.prev == self.anchor_hash()
        }) {
            let displaced = self.displaced.swap_remove(index);
            self.track(displaced.line, &displaced.record, &displaced.ids);
            let record = &displaced.record;
            if let Some(fault) = self.faults.get_mut(displaced.fault) {
                fault.kind = FaultKind::Reordered;
                fault.message = format!(
                    "record seq {} is out of order: it comes before seq {}",
                    record.seq, displaced.expected_then
                );
                let line = fault.line.unwrap_or_default();
                if self.checkpoint_seq == Some(record.seq) {
                    self.checkpoint_hash = Some((line, record.hash));
                }
                self.anchor = Some(Anchor {
                    line,
                    seq: record.seq,
                    hash: record.hash,
                    prev: record.prev,
                    fault: Some(displaced.fault),
                });
            }
        }
        for gap in std::mem::take(&mut self.gaps) {
            let count = gap
                .missing
                .iter()
                .fold(0_u64, |count, (from, to)| count.saturating_add(to - from).saturating_add(1));
            if count == 0 {
                continue;
            }
            let seqs = gap
                .missing
                .iter()
                .map(
                    |&(from, to)| {
                        if from == to { from.to_string() } else { format!("{from}..{to}") }
                    },
                )
                .collect::<Vec<_>>()
                .join(", ");
            let records = if count == 1 { "record" } else { "records" };
            let message = format!("{count} {records} missing before this line (seq {seqs})");
            let first = gap.missing.first().map(|&(from, _)| from);
            self.fault(gap.line, FaultKind::Deleted, first, message);
        }
        let checkpoint =
            options.checkpoint.as_ref().map(|checkpoint| self.check(checkpoint, options));
        self.faults.sort_by_key(|fault| fault.line.unwrap_or(u64::MAX));
        let mut interrupted: Vec<Interrupted> = self
            .open_intents
            .into_iter()
            .map(|(key, (line, seq))| {
                let (request_id, step, contact) = intent_ids(&key);
                Interrupted { line, seq, request_id, step, contact }
            })
            .collect();
        interrupted.sort_by_key(|intent| intent.line);
        VerifyReport {
            ok: self.faults.is_empty(),
            lines: self.lines,
            records: self.records,
            runs: self.runs,
            requests: u64::try_from(self.requests.len()).unwrap_or(u64::MAX),
            faults: self.faults,
            interrupted,
            recovered: self.recovered,
            checkpoint,
            writer_active: self.writer_active,
            unchecked_last_line: self.unchecked_last_line,
        }
    }

    /// Checks the log against a checkpoint kept elsewhere.
    fn check(&mut self, checkpoint: &Checkpoint, options: &VerifyOptions) -> CheckpointStatus {
        let length = self.expected();
        let mut checkpoint_fault = |kind, message| {
            self.faults.push(Fault { line: None, kind, seq: None, message });
        };
        if length < checkpoint.size {
            let removed = checkpoint.size - length;
            let records = if removed == 1 { "record was" } else { "records were" };
            checkpoint_fault(
                FaultKind::TruncatedTail,
                format!(
                    "the checkpoint of {} covers {} records but the log has only {length}: \
                     {removed} {records} removed from the end",
                    checkpoint.time, checkpoint.size
                ),
            );
        } else if checkpoint.size == 0 {
            if checkpoint.head != Sha256Hex::genesis() {
                checkpoint_fault(
                    FaultKind::CheckpointMismatch,
                    "the checkpoint covers no record but names a head hash".to_owned(),
                );
            }
        } else {
            match &self.checkpoint_hash {
                Some((_, hash)) if *hash == digest_of(&checkpoint.head) => {}
                found => {
                    let line = found
                        .as_ref()
                        .map(|(line, _)| format!(" (line {line})"))
                        .unwrap_or_default();
                    checkpoint_fault(
                        FaultKind::CheckpointMismatch,
                        format!(
                            "record seq {}{line} is not the record the checkpoint of {} names \
                             as its head: the log was rewritten",
                            checkpoint.size - 1,
                            checkpoint.time
                        ),
                    );
                }
            }
        }
        let signature = match (&options.public_key, checkpoint.signature.is_some()) {
            (None, true) => "not-checked",
            (None, false) => "unsigned",
            (Some(key), _) => match checkpoint.check_signature(key) {
                SignatureCheck::Valid => "valid",
                SignatureCheck::Unsigned => {
                    checkpoint_fault(
                        FaultKind::UnsignedCheckpoint,
                        "a public key was given but the checkpoint is not signed".to_owned(),
                    );
                    "unsigned"
                }
                SignatureCheck::WrongKey => {
                    checkpoint_fault(
                        FaultKind::WrongKey,
                        format!(
                            "the checkpoint was signed by key {}, not by the given public key",
                            checkpoint.key_id.as_deref().unwrap_or("(none)")
                        ),
                    );
                    "wrong-key"
                }
                SignatureCheck::Bad => {
                    checkpoint_fault(
                        FaultKind::BadSignature,
                        "the checkpoint's signature does not verify: the checkpoint was altered"
                            .to_owned(),
                    );
                    "bad"
                }
            },
        };
        CheckpointStatus {
            size: checkpoint.size,
            head: checkpoint.head.clone(),
            key_id: checkpoint.key_id.clone(),
            signature,
            records_after: length.saturating_sub(checkpoint.size),
        }
    }
}

/// Removes `seq` from a list of inclusive ranges; whether it was there.
fn remove_seq(ranges: &mut Vec<(u64, u64)>, seq: u64) -> bool {
    let Some(index) = ranges.iter().position(|&(from, to)| (from..=to).contains(&seq)) else {
        return false;
    };
    let (from, to) = ranges.swap_remove(index);
    if from < seq {
        ranges.push((from, seq - 1));
    }
    if seq < to {
        ranges.push((seq + 1, to));
    }
    ranges.sort_unstable();
    true
}

/// One line of the log as read for display: the record when the line is one, and whether its
/// stored hash matches its content (on its own; the chain is [`verify_file`]'s).
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The 1-based line number.
    pub line: u64,
    /// The record, or `None` when the line is not a record (unreadable, torn).
    pub record: Option<AuditRecord>,
    /// Whether the record's stored hash matches its content.
    pub hash_matches: bool,
}

/// Reads every line of the log in order, records and lines that are not records alike, for
/// display next to [`verify_file`]'s faults.
pub fn read_lines(path: &Path) -> Result<Vec<LogLine>, AuditError> {
    let io =
        |source| AuditError::Io { action: "read the audit log", path: path.to_owned(), source };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut lines = Vec::new();
    let mut number = 0;
    while let Some(parsed) = read_line(&mut reader).map_err(io)? {
        number += 1;
        lines.push(match parsed {
            Ok(parsed) => LogLine {
                line: number,
                record: Some(parsed.record),
                hash_matches: parsed.hash_matches,
            },
            Err(_) => LogLine { line: number, record: None, hash_matches: false },
        });
    }
    Ok(lines)
}

/// Reads the records of the log in order, for display; lines that are not records are
/// counted, not returned.
pub fn read_records(path: &Path) -> Result<(Vec<(u64, AuditRecord)>, u64), AuditError> {
    let mut records = Vec::new();
    let unreadable = for_each_record(path, |number, record| records.push((number, record)))?;
    Ok((records, unreadable))
}

/// Hands each record of the log in order, with its line number, to `each`, one at a time (the
/// log is never held whole); returns how many lines were not records.
pub fn for_each_record(
    path: &Path,
    mut each: impl FnMut(u64, AuditRecord),
) -> Result<u64, AuditError> {
    let io =
        |source| AuditError::Io { action: "read the audit log", path: path.to_owned(), source };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut unreadable = 0;
    let mut number = 0;
    while let Some(parsed) = read_line(&mut reader).map_err(io)? {
        number += 1;
        match parsed {
            Ok(parsed) => each(number, parsed.record),
            Err(_) => unreadable += 1,
        }
    }
    Ok(unreadable)
}

/// Parses one line: the fast path when the line is canonical JSON, else [`parse_line`].
fn parse(line: &[u8]) -> Result<ParsedLine, LineError> {
    match fast::parse_canonical(line) {
        Some(parsed) => Ok(parsed),
        None => parse_line(line),
    }
}

/// The fast path: a line exactly as the writer produces it (canonical JSON: keys in their
/// order, no whitespace, no escapes, no `null`, plain integers). Such a line is byte for byte
/// the serialisation of the record it holds, so the bytes the hash covers are the line
/// without its `"hash"` member: hashed in place, not re-serialised. Every field is still
/// validated with the same rules as [`parse_line`]. Anything else (a line that is not
/// canonical, or not valid) returns `None` and goes the slow way, which decides what is wrong
/// with it; this path only ever accepts what [`parse_line`] would accept, with the same result.
///
/// No string is checked for escapes, control characters or UTF-8 on its own: every string
/// field's rule admits only printable ASCII without `"` or `\`, so a string that passes its
/// rule is one that JSON reads as exactly its bytes, and a line whose strings all pass is
/// ASCII.
mod fast {
    use sha2::{Digest as _, Sha256};

    use super::super::record::{
        Actor, AuditRecord, ContactId, Detail, Event, KeyId, Outcome, ParsedLine,
        RECORD_HASH_DOMAIN, RecordTime, RequestId, Sha256Hex, StepId, SubjectDigest, Token,
    };
    use super::{Checked, Digest, Span, decode_hex};

    struct Cursor<'a> {
        bytes: &'a [u8],
        pos: usize,
        /// Whether a member was read in the current object (the next one needs a comma).
        any: bool,
    }

    /// A string field: where its text is in the line, and the text.
    type Text<'a> = (Span, &'a [u8]);

    /// Byte classes, one bit each: `[A-Za-z0-9]`, `.` `_` `-`, `[0-9a-f]`, and any printable
    /// ASCII character but `"` and `\`. No class holds a `"`, a `\`, a control character
    /// (the line's newline among them) or a byte that is not ASCII.
    const ALNUM: u8 = 1;
    const PUNCT: u8 = 2;
    const HEX: u8 = 4;
    const TEXT: u8 = 8;

    // Indexing in a constant is checked when it is compiled: it cannot panic at run time.
    #[allow(clippy::indexing_slicing)]
    const CLASSES: [u8; 256] = {
        let mut table = [0_u8; 256];
        let mut byte = 0_u8;
        loop {
            let mut class = 0;
            if byte.is_ascii_alphanumeric() {
                class |= ALNUM;
            }
            if matches!(byte, b'.' | b'_' | b'-') {
                class |= PUNCT;
            }
            if matches!(byte, b'0'..=b'9' | b'a'..=b'f') {
                class |= HEX;
            }
            if matches!(byte, b' '..=b'~') && byte != b'"' && byte != b'\\' {
                class |= TEXT;
            }
            table[byte as usize] = class;
            if byte == u8::MAX {
                break;
            }
            byte += 1;
        }
        table
    };

    fn class(byte: u8) -> u8 {
        CLASSES.get(usize::from(byte)).copied().unwrap_or(0)
    }

    /// A string field's rule as this path checks it, in one pass over the value: the class
    /// its bytes must all be of (the pass stops at the first byte that is not, which must be
    /// the closing quote), then what the rule asks of the value as a whole. Each is the rule
    /// of the field's type in `record` (a test holds them to it); the rarer fields check
    /// that rule itself on a value of printable characters.
    #[derive(Clone, Copy)]
    pub(super) struct Rule {
        class: u8,
        whole: fn(&[u8]) -> bool,
    }

    /// [`Actor`], [`RequestId`], [`StepId`]: 1 to 64 of `[A-Za-z0-9._-]`, the first
    /// alphanumeric.
    pub(super) const IDENTIFIER: Rule = Rule {
        class: ALNUM | PUNCT,
        whole: |value| {
            (1..=64).contains(&value.len())
                && value.first().is_some_and(|&byte| class(byte) & ALNUM != 0)
        },
    };
    /// [`ContactId`]: 16 of `[A-Za-z0-9]`.
    pub(super) const CONTACT: Rule = Rule { class: ALNUM, whole: |value| value.len() == 16 };
    /// [`Sha256Hex`], [`SubjectDigest`]: 64 lowercase hex digits.
    pub(super) const SHA256: Rule = Rule { class: HEX, whole: |value| value.len() == 64 };
    /// [`KeyId`]: 16 lowercase hex digits.
    pub(super) const KEY_ID: Rule = Rule { class: HEX, whole: |value| value.len() == 16 };
    /// [`Token`], checked by its own rule.
    pub(super) const TOKEN: Rule =
        Rule { class: TEXT, whole: |value| std::str::from_utf8(value).is_ok_and(Token::is_valid) };
    /// [`RecordTime`]: see [`time`].
    pub(super) const TIME: Rule = Rule { class: TEXT, whole: time };
    /// Any string: the value is matched against a fixed list afterwards.
    const ANY: Rule = Rule { class: TEXT, whole: |_| true };

    /// Whether `value` (a string's content, without quotes) passes `rule`.
    #[cfg(test)]
    pub(super) fn passes(rule: Rule, value: &[u8]) -> bool {
        value.iter().all(|&byte| class(byte) & rule.class != 0) && (rule.whole)(value)
    }

    impl<'a> Cursor<'a> {
        /// Reads `literal` when it is next. (Of a fixed length, so that the comparison is
        /// a few word compares in line, not a call to `memcmp`: a record has some 30 keys
        /// to try.)
        fn eat<const N: usize>(&mut self, literal: &[u8; N]) -> bool {
            let next = self.bytes.get(self.pos..).and_then(<[u8]>::first_chunk::<N>);
            if next == Some(literal) {
                self.pos = self.pos.saturating_add(N);
                true
            } else {
                false
            }
        }

        /// Reads the key `"name":` (`name` given with its quotes and colon) when it is next.
        fn key<const N: usize>(&mut self, name: &[u8; N]) -> bool {
            let start = self.pos;
            if self.any && !self.eat(b",") {
                return false;
            }
            if self.eat(name) {
                self.any = true;
                true
            } else {
                self.pos = start;
                false
            }
        }

        /// A string in quotes, when it passes `rule`: its bytes are read while they are of
        /// the rule's class, and the first that is not must be the closing quote. The same
        /// as finding the closing quote first and checking the value after, since the class
        /// holds no `"`; and the value is ASCII, so JSON reads it as exactly its bytes.
        fn string(&mut self, rule: Rule) -> Option<Text<'a>> {
            if !self.eat(b"\"") {
                return None;
            }
            let rest = self.bytes.get(self.pos..)?;
            let len = rest.iter().position(|&byte| class(byte) & rule.class == 0)?;
            let value = rest.get(..len)?;
            if rest.get(len) != Some(&b'"') || !(rule.whole)(value) {
                return None;
            }
            let span = Span { start: self.pos, end: self.pos.saturating_add(len) };
            self.pos = span.end.saturating_add(1);
            Some((span, value))
        }

        /// 64 lowercase hex digits in quotes, as bytes, with the text.
        fn digest(&mut self) -> Option<(Digest, &'a [u8])> {
            if !self.eat(b"\"") {
                return None;
            }
            let end = self.pos.saturating_add(64);
            let hex = self.bytes.get(self.pos..end)?;
            let digest = decode_hex(hex)?;
            self.pos = end;
            self.eat(b"\"").then_some((digest, hex))
        }

        /// An unsigned integer as `serde_json` writes one (no sign, no leading zero).
        fn number(&mut self) -> Option<u64> {
            let rest = self.bytes.get(self.pos..)?;
            let len = rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
            let digits = rest.get(..len)?;
            if len == 0 || (len > 1 && digits.first() == Some(&b'0')) {
                return None;
            }
            let value = digits.iter().try_fold(0_u64, |value, &digit| {
                value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
            })?;
            self.pos = self.pos.saturating_add(len);
            Some(value)
        }

        fn opt_string<const N: usize>(
            &mut self,
            name: &[u8; N],
            rule: Rule,
        ) -> Option<Option<Text<'a>>> {
            if !self.key(name) {
                return Some(None);
            }
            self.string(rule).map(Some)
        }

        fn opt_number<const N: usize>(&mut self, name: &[u8; N]) -> Option<Option<u64>> {
            if !self.key(name) {
                return Some(None);
            }
            self.number().map(Some)
        }
    }

    fn event(text: &[u8]) -> Option<Event> {
        [
            Event::RunStart,
            Event::RunEnd,
            Event::RunRefused,
            Event::Approval,
            Event::StepIntent,
            Event::StepDone,
            Event::StepFailed,
            Event::StepSkipped,
            Event::StepRetry,
            Event::LogRecovered,
            Event::ShardStart,
        ]
        .into_iter()
        .find(|event| event.as_str().as_bytes() == text)
    }

    fn outcome(text: &[u8]) -> Option<Outcome> {
        [
            Outcome::Ok,
            Outcome::Failed,
            Outcome::Skipped,
            Outcome::AlreadyAbsent,
            Outcome::Refused,
            Outcome::Blocked,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str().as_bytes() == text)
    }

    /// A UTC time as the writer produces it (`2026-11-29T10:15:00.123Z`, or without the
    /// fraction, years 1000 to 9998) is checked here; anything else goes to the full parse
    /// of [`RecordTime`]'s rule. This only ever accepts what that parse accepts (a test
    /// holds it).
    fn time(text: &[u8]) -> bool {
        plain_time(text) || std::str::from_utf8(text).is_ok_and(RecordTime::is_valid)
    }

    pub(super) fn plain_time(text: &[u8]) -> bool {
        let number = |from: usize, to: usize| -> Option<u32> {
            text.get(from..to)?.iter().try_fold(0_u32, |value, &digit| {
                digit.is_ascii_digit().then(|| value * 10 + u32::from(digit - b'0'))
            })
        };
        let at = |index: usize, byte: u8| text.get(index) == Some(&byte);
        let end = match text.len() {
            20 => at(19, b'Z'),
            24 => at(19, b'.') && number(20, 23).is_some() && at(23, b'Z'),
            _ => false,
        };
        if !(end && at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
            return false;
        }
        let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
            number(0, 4),
            number(5, 7),
            number(8, 10),
            number(11, 13),
            number(14, 16),
            number(17, 19),
        ) else {
            return false;
        };
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => 0,
        };
        (1000..=9998).contains(&year)
            && (1..=days).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60
    }

    /// What a detail holds of interest to the chain check, and the detail itself when asked.
    struct Facts {
        torn_bytes: Option<u64>,
        /// Boxed: the chain check moves the scan's result about and never builds one.
        detail: Option<Box<Detail>>,
    }

    fn detail(cursor: &mut Cursor<'_>, build: bool) -> Option<Facts> {
        if !cursor.eat(b"{") {
            return None;
        }
        let outer = std::mem::replace(&mut cursor.any, false);
        let approver = cursor.opt_string(b"\"approver\":", IDENTIFIER)?;
        let attachments = cursor.opt_number(b"\"attachments\":")?;
        let attempt = match cursor.opt_number(b"\"attempt\":")? {
            Some(n) => Some(u32::try_from(n).ok()?),
            None => None,
        };
        let bytes = cursor.opt_number(b"\"bytes\":")?;
        let code = cursor.opt_string(b"\"code\":", TOKEN)?;
        let count = cursor.opt_number(b"\"count\":")?;
        let data_source = cursor.opt_string(b"\"dataSource\":", TOKEN)?;
        let duration_ms = cursor.opt_number(b"\"durationMs\":")?;
        let expires_at = cursor.opt_string(b"\"expiresAt\":", TIME)?;
        let fingerprint = cursor.opt_string(b"\"fingerprint\":", SHA256)?;
        let http_status = match cursor.opt_number(b"\"httpStatus\":")? {
            Some(n) => Some(u16::try_from(n).ok()?),
            None => None,
        };
        let interactions = cursor.opt_number(b"\"interactions\":")?;
        let key_id = cursor.opt_string(b"\"keyId\":", KEY_ID)?;
        let reason = cursor.opt_string(b"\"reason\":", TOKEN)?;
        let sha256 = cursor.opt_string(b"\"sha256\":", SHA256)?;
        let signature_sha256 = cursor.opt_string(b"\"signatureSha256\":", SHA256)?;
        let subject = cursor.opt_string(b"\"subject\":", SHA256)?;
        let torn_bytes = cursor.opt_number(b"\"tornBytes\":")?;
        let torn_offset = cursor.opt_number(b"\"tornOffset\":")?;
        if !cursor.eat(b"}") {
            return None;
        }
        cursor.any = outer;
        if !build {
            return Some(Facts { torn_bytes, detail: None });
        }
        fn make<T, E>(
            text: Option<Text<'_>>,
            new: fn(String) -> Result<T, E>,
        ) -> Option<Option<T>> {
            text.map(|(_, text)| new(string(text)).ok()).map_or(Some(None), |made| made.map(Some))
        }
        let detail = Detail {
            approver: make(approver, Actor::new)?,
            attachments,
            attempt,
            bytes,
            code: make(code, Token::new)?,
            count,
            data_source: make(data_source, Token::new)?,
            duration_ms,
            expires_at: make(expires_at, RecordTime::new)?,
            fingerprint: make(fingerprint, Sha256Hex::new)?,
            http_status,
            interactions,
            key_id: make(key_id, KeyId::new)?,
            reason: make(reason, Token::new)?,
            sha256: make(sha256, Sha256Hex::new)?,
            signature_sha256: make(signature_sha256, Sha256Hex::new)?,
            subject: make(subject, SubjectDigest::new)?,
            torn_bytes,
            torn_offset,
        };
        Some(Facts { torn_bytes, detail: Some(Box::new(detail)) })
    }

    /// A canonical line, every field validated and the hash recomputed.
    struct Scanned<'a> {
        /// The length of the line (the bytes scanned go on after it).
        len: usize,
        actor: &'a [u8],
        contact: Option<Text<'a>>,
        facts: Option<Facts>,
        event: Event,
        hash: (Digest, &'a [u8]),
        outcome: Option<Outcome>,
        plan_id: Option<Text<'a>>,
        prev: (Digest, &'a [u8]),
        request: Option<Text<'a>>,
        seq: u64,
        step: Option<Text<'a>>,
        time: &'a [u8],
        hash_matches: bool,
    }

    /// Reads a canonical line at the start of `bytes`, which ends there or goes on after a
    /// newline; `None` when the line is not canonical or not a valid record. (Nothing the
    /// scan reads holds a newline, so it never reads past the line's end.) The detail is
    /// built only when `build` (for display; the chain check needs none).
    fn scan(bytes: &[u8], build: bool) -> Option<Scanned<'_>> {
        let mut cursor = Cursor { bytes, pos: 0, any: false };
        if !cursor.eat(b"{") || !cursor.key(b"\"actor\":") {
            return None;
        }
        let (_, actor) = cursor.string(IDENTIFIER)?;
        let contact = cursor.opt_string(b"\"contact\":", CONTACT)?;
        let facts =
            if cursor.key(b"\"detail\":") { Some(detail(&mut cursor, build)?) } else { None };
        if !cursor.key(b"\"event\":") {
            return None;
        }
        let event = event(cursor.string(ANY)?.1)?;
        // The hash member: `,"hash":"<64 hex>"`, left out of the bytes the hash covers.
        let hash_start = cursor.pos;
        if !cursor.key(b"\"hash\":") {
            return None;
        }
        let hash = cursor.digest()?;
        let hash_end = cursor.pos;
        let outcome =
            if cursor.key(b"\"outcome\":") { Some(outcome(cursor.string(ANY)?.1)?) } else { None };
        let plan_id = cursor.opt_string(b"\"planId\":", SHA256)?;
        if !cursor.key(b"\"prev\":") {
            return None;
        }
        let prev = cursor.digest()?;
        let request = cursor.opt_string(b"\"requestId\":", IDENTIFIER)?;
        if !cursor.key(b"\"seq\":") {
            return None;
        }
        let seq = cursor.number()?;
        let step = cursor.opt_string(b"\"step\":", IDENTIFIER)?;
        if !cursor.key(b"\"time\":") {
            return None;
        }
        let (_, time) = cursor.string(TIME)?;
        if !cursor.eat(b"}") || !matches!(bytes.get(cursor.pos), None | Some(b'\n')) {
            return None;
        }
        let len = cursor.pos;
        let mut hasher = Sha256::new();
        hasher.update(RECORD_HASH_DOMAIN);
        hasher.update(bytes.get(..hash_start)?);
        hasher.update(bytes.get(hash_end..len)?);
        let hash_matches = hasher.finalize().as_slice() == hash.0.as_slice();
        Some(Scanned {
            len,
            actor,
            contact,
            facts,
            event,
            hash,
            outcome,
            plan_id,
            prev,
            request,
            seq,
            step,
            time,
            hash_matches,
        })
    }

    /// Checks the canonical line at the start of `bytes` (which end there or go on after
    /// its newline) for the chain check: the line's length and what the check needs, its
    /// spans shifted by `offset`, where the line starts in its chunk.
    pub(super) fn check_canonical(bytes: &[u8], offset: usize) -> Option<(usize, Checked)> {
        let scanned = scan(bytes, false)?;
        let shift = |text: Option<Text<'_>>| {
            text.map(|(span, _)| Span {
                start: span.start.saturating_add(offset),
                end: span.end.saturating_add(offset),
            })
        };
        let checked = Checked {
            seq: scanned.seq,
            hash: scanned.hash.0,
            prev: scanned.prev.0,
            hash_matches: scanned.hash_matches,
            event: scanned.event,
            request: shift(scanned.request),
            step: shift(scanned.step),
            contact: shift(scanned.contact),
            torn_bytes: scanned.facts.and_then(|facts| facts.torn_bytes),
        };
        Some((scanned.len, checked))
    }

    /// A value the scan accepted, as text (it is ASCII: the rules' classes hold nothing
    /// else; were it not, the replacement character would fail the value's own rule).
    fn string(text: &[u8]) -> String {
        String::from_utf8_lossy(text).into_owned()
    }

    /// Parses a canonical line into its record (for display).
    pub(super) fn parse_canonical(line: &[u8]) -> Option<ParsedLine> {
        let scanned = scan(line, true)?;
        if scanned.len != line.len() {
            return None;
        }
        let text = |text: Option<Text<'_>>| text.map(|(_, text)| string(text));
        let record = AuditRecord {
            actor: Actor::new(string(scanned.actor)).ok()?,
            contact: text(scanned.contact).map(ContactId::new).transpose().ok()?,
            detail: match scanned.facts {
                Some(facts) => Some(*facts.detail?),
                None => None,
            },
            event: scanned.event,
            hash: Sha256Hex::new(string(scanned.hash.1)).ok()?,
            outcome: scanned.outcome,
            plan_id: text(scanned.plan_id).map(Sha256Hex::new).transpose().ok()?,
            prev: Sha256Hex::new(string(scanned.prev.1)).ok()?,
            request_id: text(scanned.request).map(RequestId::new).transpose().ok()?,
            seq: scanned.seq,
            step: text(scanned.step).map(StepId::new).transpose().ok()?,
            time: RecordTime::new(string(scanned.time)).ok()?,
        };
        Some(ParsedLine { record, hash_matches: scanned.hash_matches })
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{
        Actor, AuditRecord, ContactId, Detail, Entry, Event, KeyId, Outcome, RecordTime, RequestId,
        Sha256Hex, StepId, SubjectDigest, Token,
    };
    use super::*;

    fn line(detail: Detail) -> String {
        let entry = Entry::new(Actor::new("agent.smith").unwrap(), Event::StepDone)
            .request(RequestId::new("DSR-2026-0142").unwrap())
            .plan(Sha256Hex::digest(b"plan"))
            .step(StepId::new("export").unwrap())
            .contact(ContactId::new("0001SaD2PVY4312K").unwrap())
            .outcome(Outcome::AlreadyAbsent)
            .detail(detail);
        let time = RecordTime::new("2026-11-29T10:15:00.123Z").unwrap();
        let (_, line) = AuditRecord::seal(entry, 7, time, Sha256Hex::digest(b"p")).unwrap();
        String::from_utf8(line).unwrap().trim_end().to_owned()
    }

    /// What the chain check sees of a line, its ids resolved.
    type View = (u64, Digest, Digest, bool, Event, [Option<Vec<u8>>; 3], Option<u64>);

    fn view(checked: &Checked, buffer: &[u8]) -> View {
        let text = |span: Option<Span>| span.map(|span| span.of(buffer).to_vec());
        (
            checked.seq,
            checked.hash,
            checked.prev,
            checked.hash_matches,
            checked.event,
            [text(checked.request), text(checked.step), text(checked.contact)],
            checked.torn_bytes,
        )
    }

    /// Whether the fast path and the slow one agree on a line: the record for display, and
    /// what the chain check sees (the line placed after other bytes in its chunk).
    fn same(text: &str) -> bool {
        let slow = parse_line(text.as_bytes()).map(|p| (p.record, p.hash_matches));
        let fast = parse(text.as_bytes()).map(|p| (p.record, p.hash_matches));
        let mut chunk = b"{}\n".to_vec();
        chunk.extend_from_slice(text.as_bytes());
        let mut extra = Vec::new();
        let (len, checked) = check(text.as_bytes(), 3, chunk.len(), &mut extra);
        assert_eq!(len, text.len());
        chunk.extend_from_slice(&extra);
        let checked = checked.map(|checked| view(&checked, &chunk));
        let slow_checked = parse_line(text.as_bytes()).map(|parsed| {
            let mut ids = Vec::new();
            view(&Checked::from_parsed(&parsed, 0, &mut ids), &ids)
        });
        slow == fast && checked == slow_checked
    }

    /// A record with every field and every detail key set.
    fn full_line() -> String {
        let token = || Some(Token::new("x.y").unwrap());
        let digest = || Some(Sha256Hex::digest(b"x"));
        let detail = Detail {
            approver: Some(Actor::new("lead").unwrap()),
            attachments: Some(1),
            attempt: Some(2),
            bytes: Some(3),
            code: token(),
            count: Some(4),
            data_source: token(),
            duration_ms: Some(5),
            expires_at: Some(RecordTime::new("2026-12-05T00:00:00Z").unwrap()),
            fingerprint: digest(),
            http_status: Some(503),
            interactions: Some(6),
            key_id: Some(KeyId::new("0123456789abcdef").unwrap()),
            reason: token(),
            sha256: digest(),
            signature_sha256: digest(),
            subject: Some(SubjectDigest::new("a".repeat(64)).unwrap()),
            torn_bytes: Some(7),
            torn_offset: Some(8),
        };
        line(detail)
    }

    #[test]
    fn the_fast_path_takes_canonical_lines_and_agrees_with_the_slow_one() {
        let detail =
            Detail { attempt: Some(3), bytes: Some(0), count: Some(12), ..Detail::default() };
        let canonical = line(detail);
        let parsed = fast::parse_canonical(canonical.as_bytes()).unwrap();
        assert!(parsed.hash_matches);
        assert!(same(&canonical));
        assert!(fast::parse_canonical(line(Detail::default()).as_bytes()).unwrap().hash_matches);
        // Lines that are not canonical go the slow way, and the result is the same.
        let variants = [
            canonical.replace(r#""seq":7"#, r#""seq":8"#),
            canonical.replace(r#""seq":7"#, r#""seq": 7"#),
            canonical.replace(r#""seq":7"#, r#""seq":07"#),
            canonical.replace(r#""actor":"agent.smith""#, r#""actor":"agent\u002esmith""#),
            canonical.replace(r#""count":12"#, r#""count":12,"note":"x""#),
            canonical.replace(r#""outcome":"already-absent","#, ""),
            canonical.replace(r#""outcome":"already-absent""#, r#""outcome":null"#),
            canonical.replace(r#""attempt":3"#, r#""attempt":4294967296"#),
            canonical.replace("agent.smith", "Jane Doe"),
            format!(" {canonical}"),
            format!("{canonical} "),
            format!("{canonical}x"),
            canonical.replacen(r#""actor":"agent.smith","#, "", 1),
        ];
        for variant in &variants {
            assert!(fast::parse_canonical(variant.as_bytes()).is_none_or(|p| !p.hash_matches));
            assert!(same(variant), "{variant}");
        }
        // A modified value in canonical form: the fast path finds the hash does not match.
        let modified = canonical.replace(r#""count":12"#, r#""count":13"#);
        assert!(!fast::parse_canonical(modified.as_bytes()).unwrap().hash_matches);
        assert!(same(&modified));
    }

    #[test]
    fn parallel_and_baseline_verification_report_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = super::super::AuditLog::open(&path).unwrap();
        for index in 0..9_000_u64 {
            let detail = Detail { bytes: Some(index), ..Detail::default() };
            let event = if index % 1_000 == 0 { Event::StepIntent } else { Event::StepDone };
            let entry = Entry::new(Actor::new("ops").unwrap(), event)
                .request(RequestId::new(format!("DSR-{}", index % 7)).unwrap())
                .step(StepId::new("delete").unwrap())
                .detail(detail);
            log.append(entry).unwrap();
        }
        log.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        // Tampering across chunk boundaries: a swap, a deletion, an edit, junk, a torn end.
        lines.swap(2_500, 2_501);
        lines.remove(6_000);
        let edited = lines[7_000].replace(r#""bytes":"#, r#""bytes":1"#);
        lines[7_000] = &edited;
        lines.insert(4_000, "not json");
        let tampered = format!("{}\n{{\"actor\":", lines.join("\n"));
        std::fs::write(&path, tampered).unwrap();
        let options = VerifyOptions::default();
        let fast = verify_file(&path, &options).unwrap();
        assert_eq!(fast, verify_file_baseline(&path, &options).unwrap());
        assert!(!fast.ok && fast.faults.len() >= 5, "{:?}", fast.faults);
    }

    #[test]
    fn the_fast_path_agrees_with_the_slow_one_on_every_tampered_byte() {
        let full = full_line();
        assert!(fast::check_canonical(full.as_bytes(), 0).unwrap().1.hash_matches);
        assert!(same(&full));
        let bytes = full.as_bytes();
        let mut canonical_but_wrong = 0;
        for index in 0..bytes.len() {
            let original = bytes[index];
            for replacement in [original.wrapping_add(1), b'"', b'\\', b' ', 0xc3, b'0'] {
                let mut tampered = bytes.to_vec();
                tampered[index] = replacement;
                let text = String::from_utf8_lossy(&tampered).into_owned();
                assert!(same(&text), "byte {index} changed to {replacement:#x}: {text}");
                if fast::check_canonical(text.as_bytes(), 0).is_some_and(|(_, c)| !c.hash_matches) {
                    canonical_but_wrong += 1;
                }
            }
            let mut deleted = bytes.to_vec();
            deleted.remove(index);
            let text = String::from_utf8_lossy(&deleted).into_owned();
            assert!(same(&text), "byte {index} deleted: {text}");
        }
        // Most edits still parse on the fast path and are caught by the hash.
        assert!(canonical_but_wrong > bytes.len(), "{canonical_but_wrong}");
    }

    #[test]
    fn digests_decode_from_lowercase_hex_only() {
        fn nibble(digit: u8) -> Option<u8> {
            match digit {
                b'0'..=b'9' => Some(digit - b'0'),
                b'a'..=b'f' => Some(digit - b'a' + 10),
                _ => None,
            }
        }
        let slow = |hex: &[u8]| -> Option<Digest> {
            let mut digest = GENESIS;
            for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
                *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
            }
            (hex.len() == 64).then_some(digest)
        };
        let valid = Sha256Hex::digest(b"x");
        let valid = valid.as_str().as_bytes();
        assert_eq!(decode_hex(valid), slow(valid));
        assert!(decode_hex(valid).is_some());
        assert_eq!(decode_hex(&[b'0'; 64]), Some(GENESIS));
        assert_eq!(decode_hex(&[b'f'; 64]), Some([0xff; 32]));
        assert_eq!(decode_hex(&valid[..63]), None);
        assert_eq!(decode_hex(&[b'0'; 65]), None);
        let mut decoded = 0;
        for index in 0..64 {
            for byte in 0..=u8::MAX {
                let mut hex = valid.to_vec();
                hex[index] = byte;
                assert_eq!(decode_hex(&hex), slow(&hex), "{index} {byte:#x}");
                decoded += usize::from(decode_hex(&hex).is_some());
            }
        }
        assert_eq!(decoded, 64 * 16);
    }

    #[test]
    fn the_fast_field_rules_are_the_rules_of_the_record_types() {
        let hex64 = Sha256Hex::digest(b"x").as_str().to_owned();
        let bases = [
            String::new(),
            "a".to_owned(),
            "agent.smith".to_owned(),
            "DSR-2026-0142".to_owned(),
            "0001SaD2PVY4312K".to_owned(),
            "0123456789abcdef".to_owned(),
            hex64.clone(),
            hex64[..63].to_owned(),
            "a".repeat(48),
            "A".repeat(64),
            "x.y_z-1".to_owned(),
            "12345".to_owned(),
            "-a".to_owned(),
            "2026-11-29T10:15:00.123Z".to_owned(),
        ];
        let str_rule = |valid: fn(&str) -> bool| {
            move |value: &[u8]| std::str::from_utf8(value).is_ok_and(valid)
        };
        type Valid = Box<dyn Fn(&[u8]) -> bool>;
        let rules: [(fast::Rule, Valid); 9] = [
            (fast::IDENTIFIER, Box::new(str_rule(Actor::is_valid))),
            (fast::IDENTIFIER, Box::new(str_rule(RequestId::is_valid))),
            (fast::IDENTIFIER, Box::new(str_rule(StepId::is_valid))),
            (fast::CONTACT, Box::new(str_rule(ContactId::is_valid))),
            (fast::SHA256, Box::new(str_rule(Sha256Hex::is_valid))),
            (fast::SHA256, Box::new(str_rule(SubjectDigest::is_valid))),
            (fast::KEY_ID, Box::new(str_rule(KeyId::is_valid))),
            (fast::TOKEN, Box::new(str_rule(Token::is_valid))),
            (fast::TIME, Box::new(str_rule(RecordTime::is_valid))),
        ];
        let (mut accepted, mut checked) = (0, 0);
        for base in &bases {
            let base = base.as_bytes();
            let mut values = vec![base.to_vec(), base.repeat(2)];
            for index in 0..=base.len() {
                for byte in 0..=u8::MAX {
                    if index < base.len() {
                        let mut value = base.to_vec();
                        value[index] = byte;
                        values.push(value);
                    }
                    let mut value = base.to_vec();
                    value.insert(index, byte);
                    values.push(value);
                }
            }
            for value in values.iter().filter(|value| !value.contains(&b'"')) {
                for (index, (rule, valid)) in rules.iter().enumerate() {
                    let fast = fast::passes(*rule, value);
                    let valid = valid(value);
                    // The time's rule is the full parse, which may accept more (then the
                    // line takes the slow path); every other rule is exactly its type's.
                    if index == 8 {
                        assert!(!fast || valid, "{value:?}");
                    } else {
                        assert_eq!(fast, valid, "rule {index}: {value:?}");
                    }
                    accepted += usize::from(fast);
                    checked += 1;
                }
            }
        }
        assert!(accepted > 10_000 && checked > 500_000, "{accepted} of {checked}");
    }

    #[test]
    fn the_fast_time_check_accepts_only_what_the_full_parse_accepts() {
        let mut accepted = 0;
        for year in ["0999", "1000", "1900", "2000", "2024", "2026", "2100", "9998", "9999"] {
            for month in 0..=13 {
                for day in [0, 1, 28, 29, 30, 31, 32] {
                    for clock in ["00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60"] {
                        for fraction in ["", ".000", ".123", ".12", ".1234", ".12a"] {
                            let text = format!("{year}-{month:02}-{day:02}T{clock}{fraction}Z");
                            let fast = fast::plain_time(text.as_bytes());
                            assert!(!fast || RecordTime::is_valid(&text), "{text}");
                            accepted += usize::from(fast);
                        }
                    }
                }
            }
        }
        assert!(accepted > 1_000, "{accepted}");
        for text in ["2026-11-29T10:15:00.123Z", "2026-02-28T00:00:00Z", "2024-02-29T23:59:59.999Z"]
        {
            assert!(fast::plain_time(text.as_bytes()), "{text}");
        }
        for text in ["2026-02-29T00:00:00Z", "2026-11-29 10:15:00Z", "2026-11-29T10:15:00+00:00"] {
            assert!(!fast::plain_time(text.as_bytes()), "{text}");
        }
    }

    /// A small log with every kind of record the chain check tracks: runs, intents with and
    /// without their outcomes, a recovered torn write, several requests.
    fn small_log(path: &Path) -> Vec<String> {
        let mut log = super::super::AuditLog::open(path).unwrap();
        let actor = || Actor::new("ops").unwrap();
        for index in 0..24_u64 {
            let request = RequestId::new(format!("DSR-{}", index / 8)).unwrap();
            let event = match index % 8 {
                0 => Event::RunStart,
                1 | 3 | 5 => Event::StepIntent,
                2 | 4 => Event::StepDone,
                6 => Event::StepFailed,
                _ => Event::RunEnd,
            };
            let mut entry = Entry::new(actor(), event).request(request);
            if matches!(event, Event::StepIntent | Event::StepDone | Event::StepFailed) {
                // Steps a and b are closed by their outcome, c is left open, d has none.
                let step = match index % 8 {
                    1 | 2 => "a",
                    3 | 4 => "b",
                    5 => "c",
                    _ => "d",
                };
                let contact = format!("0001SaD2PVY4312{}", step.len() + usize::from(step == "b"));
                entry = entry
                    .step(StepId::new(step).unwrap())
                    .contact(ContactId::new(contact).unwrap())
                    .detail(Detail { bytes: Some(index), ..Detail::default() });
            }
            log.append(entry).unwrap();
        }
        log.finish().unwrap();
        let mut lines: Vec<String> =
            std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect();
        // A recovered torn write, sealed as the writer seals it, and a record with every
        // detail key, chained on.
        let last: AuditRecord = serde_json::from_str(lines.last().unwrap()).unwrap();
        let detail = Detail { torn_bytes: Some(12), torn_offset: Some(40), ..Detail::default() };
        let time = RecordTime::new("2026-11-29T10:15:00.123Z").unwrap();
        let entry = Entry::new(Actor::system(), Event::LogRecovered).detail(detail);
        let (recovered, line) = AuditRecord::seal(entry, 24, time.clone(), last.hash).unwrap();
        lines.push(String::from_utf8(line).unwrap().trim_end().to_owned());
        let full: AuditRecord = serde_json::from_str(&full_line()).unwrap();
        let mut entry = Entry::new(full.actor, Event::StepDone).detail(full.detail.unwrap());
        entry = entry.request(full.request_id.unwrap()).step(full.step.unwrap());
        let (sealed, line) = AuditRecord::seal(entry, 25, time, recovered.hash).unwrap();
        lines.push(String::from_utf8(line).unwrap().trim_end().to_owned());
        let record: AuditRecord = serde_json::from_str(lines.last().unwrap()).unwrap();
        assert_eq!(record, sealed);
        lines
    }

    fn both(path: &Path, lines: &[String], end: &str) -> VerifyReport {
        std::fs::write(path, format!("{}{end}", lines.join("\n"))).unwrap();
        let options = VerifyOptions::default();
        let fast = verify_file(path, &options).unwrap();
        assert_eq!(fast, verify_file_baseline(path, &options).unwrap(), "{lines:#?}");
        fast
    }

    #[test]
    fn fast_and_baseline_reports_agree_on_tampered_reordered_truncated_and_odd_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let lines = small_log(&path);
        let clean = both(&path, &lines, "\n");
        assert!(
            clean.ok && clean.records == 26 && clean.runs == 3 && clean.requests == 4,
            "{clean:?}"
        );
        assert_eq!(clean.interrupted.len(), 3, "{:?}", clean.interrupted);
        assert_eq!(clean.recovered, vec![Recovered { line: 25, torn_bytes: Some(12) }]);
        // Every third byte of an intent, of the recovered record and of the full one changed
        // (every byte of a line, several ways, in the line-level test above).
        let mut faults = 0;
        for target in [3, 24, 25] {
            let line = lines[target].as_bytes();
            for index in (0..line.len()).step_by(3) {
                let mut tampered = line.to_vec();
                tampered[index] = line[index].wrapping_add(1);
                let mut copy = lines.clone();
                copy[target] = String::from_utf8_lossy(&tampered).into_owned();
                faults += usize::from(!both(&path, &copy, "\n").ok);
            }
        }
        assert!(faults > 400, "{faults}");
        // A newline put into a line or in place of one of its bytes, at every fifth byte: the
        // line becomes two (the fast path finds where a line ends as it reads it, and must
        // stop at a newline wherever it is).
        for target in [3, 25] {
            let line = &lines[target];
            for index in (1..line.len()).step_by(5) {
                for replace in [false, true] {
                    let mut tampered = line.as_bytes().to_vec();
                    if replace {
                        tampered[index] = b'\n';
                    } else {
                        tampered.insert(index, b'\n');
                    }
                    let mut copy = lines.clone();
                    copy[target] = String::from_utf8(tampered).unwrap();
                    let report = both(&path, &copy, "\n");
                    assert!(!report.ok && report.lines == 27, "{index}: {:?}", report.faults);
                }
            }
        }
        // Each pair of neighbours swapped; each line removed.
        for index in 0..lines.len() - 1 {
            let mut copy = lines.clone();
            copy.swap(index, index + 1);
            assert!(!both(&path, &copy, "\n").ok);
            let mut copy = lines.clone();
            copy.remove(index);
            both(&path, &copy, "\n");
        }
        // The last line cut at every byte, with and without a newline after it.
        let last = lines.last().unwrap();
        for cut in (0..last.len()).step_by(7) {
            let mut copy = lines.clone();
            copy.pop();
            copy.push(last[..cut].to_owned());
            // Cut before its first byte, the log is a clean shorter one.
            assert_eq!(both(&path, &copy, "").ok, cut == 0);
            assert!(!both(&path, &copy, "\n").ok);
        }
        // Lines that are valid records but not canonical: the slow path accepts them.
        let mut copy = lines.clone();
        copy[3] = copy[3].replace(r#""seq":3"#, r#""seq": 3"#);
        copy[24] = format!(" {}", copy[24]);
        copy[10] = copy[10].replacen(r#""actor":"ops""#, r#""actor":"\u006fps""#, 1);
        let odd = both(&path, &copy, "\n");
        assert!(odd.ok && odd.records == 26, "{:?}", odd.faults);
        // A stray non-record line and a blank one in the middle.
        let mut copy = lines.clone();
        copy.insert(5, "{}".to_owned());
        copy.insert(9, String::new());
        assert_eq!(both(&path, &copy, "\n").faults.len(), 2);
    }
}
