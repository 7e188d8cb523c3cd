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
/// re-serialised. Kept for the benchmark's side-by-side figures; not part of the API.
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
    let mut current: Option<Line> = read_line_with(&mut reader, 1, parse_line).map_err(io)?;
    while let Some(line) = current {
        let next = read_line_with(&mut reader, line.number + 1, parse_line).map_err(io)?;
        verifier.process(&line, next.as_ref());
        current = next;
    }
    Ok(verifier.finish(options))
}

/// Reading in chunks, parsing in parallel, checking in order.
mod parallel {
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::sync::mpsc::{Receiver, channel, sync_channel};
    use std::sync::{Arc, Mutex};

    use super::{Line, LineError, ParsedLine, Verifier, parse};

    /// Bytes read at a time (extended until a line ends).
    const CHUNK: usize = 1 << 20;

    type Parsed = Result<ParsedLine, LineError>;

    /// Reads the next chunk of whole lines: `Some((lines, complete))`; `complete` is false
    /// for the bytes after the last newline at the end of the file (a torn line).
    fn next_chunk(
        file: &mut impl Read,
        carry: &mut Vec<u8>,
        eof: &mut bool,
    ) -> std::io::Result<Option<(Vec<u8>, bool)>> {
        loop {
            if let Some(last) = carry.iter().rposition(|&b| b == b'\n')
                && (carry.len() >= CHUNK || *eof)
            {
                let rest = carry.split_off(last.saturating_add(1));
                return Ok(Some((std::mem::replace(carry, rest), true)));
            }
            if *eof {
                return Ok((!carry.is_empty()).then(|| (std::mem::take(carry), false)));
            }
            let start = carry.len();
            carry.resize(start.saturating_add(CHUNK), 0);
            let mut filled = start;
            while filled < carry.len() {
                let read = match file.read(carry.get_mut(filled..).unwrap_or_default()) {
                    Ok(read) => read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(error),
                };
                if read == 0 {
                    *eof = true;
                    break;
                }
                filled = filled.saturating_add(read);
            }
            carry.truncate(filled);
        }
    }

    fn parse_chunk(chunk: &[u8], complete: bool) -> Vec<Parsed> {
        if !complete {
            // A line without its newline is torn even if what is there happens to parse.
            return vec![Err(LineError::NotJson)];
        }
        let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
        body.split(|&b| b == b'\n').map(parse).collect()
    }

    fn worker(
        jobs: &Mutex<Receiver<(usize, Vec<u8>, bool)>>,
        results: &std::sync::mpsc::Sender<(usize, Vec<Parsed>)>,
    ) {
        loop {
            let job = match jobs.lock() {
                Ok(receiver) => receiver.recv(),
                Err(_) => return,
            };
            let Ok((index, chunk, complete)) = job else { return };
            if results.send((index, parse_chunk(&chunk, complete))).is_err() {
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
        let (job_sender, job_receiver) = sync_channel::<(usize, Vec<u8>, bool)>(in_flight);
        let job_receiver = Arc::new(Mutex::new(job_receiver));
        let (result_sender, result_receiver) = channel::<(usize, Vec<Parsed>)>();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let jobs = Arc::clone(&job_receiver);
                let results = result_sender.clone();
                scope.spawn(move || worker(&jobs, &results));
            }
            drop(result_sender);
            let mut carry = Vec::new();
            let mut eof = false;
            let (mut issued, mut checked) = (0_usize, 0_usize);
            let mut done_reading = false;
            let mut pending: BTreeMap<usize, Vec<Parsed>> = BTreeMap::new();
            let mut current: Option<Line> = None;
            let mut number = 0_u64;
            let outcome = 'chunks: loop {
                while !done_reading && issued.saturating_sub(checked) < in_flight {
                    match next_chunk(file, &mut carry, &mut eof) {
                        Ok(Some((chunk, complete))) => {
                            if job_sender.send((issued, chunk, complete)).is_err() {
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
                let lines = loop {
                    if let Some(lines) = pending.remove(&checked) {
                        break Some(lines);
                    }
                    match result_receiver.recv() {
                        Ok((index, lines)) => {
                            pending.insert(index, lines);
                        }
                        Err(_) => break None,
                    }
                };
                let Some(lines) = lines else {
                    break Err(std::io::Error::other("a verification worker stopped"));
                };
                checked = checked.saturating_add(1);
                for parsed in lines {
                    number = number.saturating_add(1);
                    let line = Line { number, parsed, is_last: false };
                    if let Some(previous) = current.replace(line) {
                        verifier.process(&previous, current.as_ref());
                    }
                }
            };
            drop(job_sender);
            if let Some(mut last) = current.take() {
                last.is_last = true;
                verifier.process(&last, None);
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

struct Line {
    number: u64,
    parsed: Result<ParsedLine, LineError>,
    is_last: bool,
}

fn read_line(reader: &mut impl BufRead, number: u64) -> std::io::Result<Option<Line>> {
    read_line_with(reader, number, parse)
}

fn read_line_with(
    reader: &mut impl BufRead,
    number: u64,
    parse: fn(&[u8]) -> Result<ParsedLine, LineError>,
) -> std::io::Result<Option<Line>> {
    let mut bytes = Vec::with_capacity(512);
    if reader.read_until(b'\n', &mut bytes)? == 0 {
        return Ok(None);
    }
    let complete = bytes.last() == Some(&b'\n');
    if complete {
        bytes.pop();
    }
    let is_last = reader.fill_buf()?.is_empty();
    // A line without its newline is torn even if what is there happens to parse.
    let parsed = if complete { parse(&bytes) } else { Err(LineError::NotJson) };
    Ok(Some(Line { number, parsed, is_last }))
}

/// The last record accepted into the chain.
struct Anchor {
    line: u64,
    seq: u64,
    hash: Sha256Hex,
    prev: Sha256Hex,
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
    record: AuditRecord,
    seq: u64,
    hash: Sha256Hex,
    prev: Sha256Hex,
    expected_then: u64,
    fault: usize,
}

type IntentKey = (Option<RequestId>, Option<StepId>, Option<ContactId>);

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
    requests: HashSet<RequestId>,
    /// The request of the last record tracked (already in `requests`).
    last_request: Option<RequestId>,
    open_intents: HashMap<IntentKey, (u64, u64)>,
    recovered: Vec<Recovered>,
    writer_active: bool,
    unchecked_last_line: Option<u64>,
    /// The `seq` whose hash a checkpoint names, and that hash once seen.
    checkpoint_seq: Option<u64>,
    checkpoint_hash: Option<(u64, Sha256Hex)>,
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

    fn anchor_hash(&self) -> Sha256Hex {
        self.anchor.as_ref().map_or_else(Sha256Hex::genesis, |anchor| anchor.hash.clone())
    }

    fn fault(&mut self, line: u64, kind: FaultKind, seq: Option<u64>, message: String) -> usize {
        self.faults.push(Fault { line: Some(line), kind, seq, message });
        self.faults.len() - 1
    }

    fn accept(&mut self, line: u64, record: &AuditRecord, seq: u64, fault: Option<usize>) {
        self.track(line, record);
        self.unreadable = 0;
        if self.checkpoint_seq == Some(seq) {
            self.checkpoint_hash = Some((line, record.hash.clone()));
        }
        self.anchor =
            Some(Anchor { line, seq, hash: record.hash.clone(), prev: record.prev.clone(), fault });
    }

    fn process(&mut self, line: &Line, next: Option<&Line>) {
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
        self.classify(number, parsed, next.and_then(|next| next.parsed.as_ref().ok()));
    }

    /// Counts and intent tracking, for records that belong to the chain.
    fn track(&mut self, number: u64, record: &AuditRecord) {
        // Consecutive records mostly share their request: hash it only when it changes.
        if let Some(request) = &record.request_id
            && self.last_request.as_ref() != Some(request)
        {
            if !self.requests.contains(request) {
                self.requests.insert(request.clone());
            }
            self.last_request = Some(request.clone());
        }
        let key = || (record.request_id.clone(), record.step.clone(), record.contact.clone());
        match record.event {
            Event::RunStart => self.runs += 1,
            Event::StepIntent => {
                self.open_intents.insert(key(), (number, record.seq));
            }
            event if event.is_step_outcome() && !self.open_intents.is_empty() => {
                self.open_intents.remove(&key());
            }
            Event::LogRecovered => self.recovered.push(Recovered {
                line: number,
                torn_bytes: record.detail.as_ref().and_then(|detail| detail.torn_bytes),
            }),
            _ => {}
        }
    }

    fn classify(&mut self, number: u64, parsed: &ParsedLine, next: Option<&ParsedLine>) {
        let record = &parsed.record;
        let intact = parsed.hash_matches;
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
            self.accept(number, record, seq, None);
            return;
        }
        // Unreadable lines just before stood for the records in between (already reported);
        // the link through them cannot be checked.
        if intact && self.unreadable > 0 && seq == expected.saturating_add(self.unreadable) {
            self.accept(number, record, seq, None);
            return;
        }
        // The chain continues on the next line as if this one were not there.
        if next.is_some_and(|next| next.record.seq == expected && next.record.prev == anchor_hash) {
            if intact && seq > expected {
                self.displace(number, record, expected);
            } else if intact && seq < expected && self.take_from_gaps(seq).is_some() {
                self.track(number, record);
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
            if next.is_none_or(|next| next.record.prev == record.hash) {
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
                self.accept(number, record, seq, None);
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
            self.accept(number, record, expected, Some(fault));
            return;
        }
        if seq == expected {
            let message = format!(
                "prev does not match the hash of the record before it{}: one of the two was \
                 rewritten and its hash recomputed",
                self.anchor.as_ref().map(|a| format!(" (line {})", a.line)).unwrap_or_default()
            );
            let fault = self.fault(number, FaultKind::BrokenLink, Some(seq), message);
            self.accept(number, record, seq, Some(fault));
            return;
        }
        if seq > expected {
            // The chain does not continue from this record and the next one is earlier:
            // this one is out of place (records were moved), not the end of a deletion.
            if record.prev != anchor_hash && next.is_some_and(|next| next.record.seq < seq) {
                self.displace(number, record, expected);
            } else {
                self.jump_forward(number, record, expected, &anchor_hash);
            }
            return;
        }
        if self.take_from_gaps(seq).is_some() {
            self.track(number, record);
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
    fn displace(&mut self, number: u64, record: &AuditRecord, expected: u64) {
        let seq = record.seq;
        let message = format!(
            "record seq {seq} does not belong here (expected seq {expected}); the chain \
             continues without it"
        );
        let fault = self.fault(number, FaultKind::Inserted, Some(seq), message);
        self.displaced.push(Displaced {
            line: number,
            record: record.clone(),
            seq,
            hash: record.hash.clone(),
            prev: record.prev.clone(),
            expected_then: expected,
            fault,
        });
    }

    /// `seq` jumps past `expected`: records are missing here, unless they came earlier.
    fn jump_forward(
        &mut self,
        number: u64,
        record: &AuditRecord,
        expected: u64,
        anchor_hash: &Sha256Hex,
    ) {
        let seq = record.seq;
        let mut missing = vec![(expected, seq - 1)];
        let mut linked = record.prev == *anchor_hash;
        let mut index = 0;
        while let Some(displaced) = self.displaced.get(index) {
            if (expected..seq).contains(&displaced.seq) {
                let displaced = self.displaced.swap_remove(index);
                self.track(displaced.line, &displaced.record);
                remove_seq(&mut missing, displaced.seq);
                if displaced.seq.checked_add(1) == Some(seq) && record.prev == displaced.hash {
                    linked = true;
                }
                if let Some(fault) = self.faults.get_mut(displaced.fault) {
                    fault.kind = FaultKind::Reordered;
                    fault.message = format!(
                        "record seq {} is out of order: it comes before seq {}",
                        displaced.seq, displaced.expected_then
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
        self.accept(number, record, seq, fault);
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
            displaced.seq == self.expected() && displaced.prev == self.anchor_hash()
        }) {
            let displaced = self.displaced.swap_remove(index);
            self.track(displaced.line, &displaced.record);
            if let Some(fault) = self.faults.get_mut(displaced.fault) {
                fault.kind = FaultKind::Reordered;
                fault.message = format!(
                    "record seq {} is out of order: it comes before seq {}",
                    displaced.seq, displaced.expected_then
                );
                let line = fault.line.unwrap_or_default();
                if self.checkpoint_seq == Some(displaced.seq) {
                    self.checkpoint_hash = Some((line, displaced.hash.clone()));
                }
                self.anchor = Some(Anchor {
                    line,
                    seq: displaced.seq,
                    hash: displaced.hash,
                    prev: displaced.prev,
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
            .map(|((request_id, step, contact), (line, seq))| Interrupted {
                line,
                seq,
                request_id,
                step,
                contact,
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
                Some((_, hash)) if *hash == checkpoint.head => {}
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
    while let Some(line) = read_line(&mut reader, number + 1).map_err(io)? {
        number = line.number;
        lines.push(match line.parsed {
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
    let io =
        |source| AuditError::Io { action: "read the audit log", path: path.to_owned(), source };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut records = Vec::new();
    let mut unreadable = 0;
    let mut number = 0;
    while let Some(line) = read_line(&mut reader, number + 1).map_err(io)? {
        number = line.number;
        match line.parsed {
            Ok(parsed) => records.push((number, parsed.record)),
            Err(_) => unreadable += 1,
        }
    }
    Ok((records, unreadable))
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
mod fast {
    use sha2::{Digest, Sha256};

    use super::super::record::{
        Actor, AuditRecord, ContactId, Detail, Event, KeyId, Outcome, ParsedLine,
        RECORD_HASH_DOMAIN, RecordTime, RequestId, Sha256Hex, StepId, SubjectDigest, Token,
    };

    struct Cursor<'a> {
        bytes: &'a [u8],
        text: &'a str,
        pos: usize,
        /// Whether a member was read in the current object (the next one needs a comma).
        any: bool,
    }

    impl<'a> Cursor<'a> {
        fn eat(&mut self, literal: &[u8]) -> bool {
            let end = self.pos.saturating_add(literal.len());
            if self.bytes.get(self.pos..end) == Some(literal) {
                self.pos = end;
                true
            } else {
                false
            }
        }

        /// Reads the key `"name":` (`name` given with its quotes and colon) when it is next.
        fn key(&mut self, name: &[u8]) -> bool {
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

        /// A string with nothing to escape: no `"`, `\` or control character inside (the
        /// line is UTF-8, checked once in [`parse_canonical`]).
        fn string(&mut self) -> Option<&'a str> {
            if !self.eat(b"\"") {
                return None;
            }
            let rest = self.text.get(self.pos..)?;
            let len = rest.find('"')?;
            let text = rest.get(..len)?;
            // No early exit: the loop vectorises.
            let escaped = text.bytes().fold(false, |any, b| any | (b < 0x20) | (b == b'\\'));
            if escaped {
                return None;
            }
            self.pos = self.pos.saturating_add(len).saturating_add(1);
            Some(text)
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

        fn opt_string<T>(
            &mut self,
            name: &[u8],
            make: fn(String) -> Option<T>,
        ) -> Option<Option<T>> {
            if !self.key(name) {
                return Some(None);
            }
            let text = self.string()?;
            make(text.to_owned()).map(Some)
        }

        fn opt_number(&mut self, name: &[u8]) -> Option<Option<u64>> {
            if !self.key(name) {
                return Some(None);
            }
            self.number().map(Some)
        }
    }

    fn event(text: &str) -> Option<Event> {
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
        ]
        .into_iter()
        .find(|event| event.as_str() == text)
    }

    fn outcome(text: &str) -> Option<Outcome> {
        [
            Outcome::Ok,
            Outcome::Failed,
            Outcome::Skipped,
            Outcome::AlreadyAbsent,
            Outcome::Refused,
            Outcome::Blocked,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == text)
    }

    fn detail(cursor: &mut Cursor<'_>) -> Option<Detail> {
        if !cursor.eat(b"{") {
            return None;
        }
        let outer = std::mem::replace(&mut cursor.any, false);
        let detail = Detail {
            approver: cursor.opt_string(b"\"approver\":", |v| Actor::new(v).ok())?,
            attachments: cursor.opt_number(b"\"attachments\":")?,
            attempt: match cursor.opt_number(b"\"attempt\":")? {
                Some(n) => Some(u32::try_from(n).ok()?),
                None => None,
            },
            bytes: cursor.opt_number(b"\"bytes\":")?,
            code: cursor.opt_string(b"\"code\":", |v| Token::new(v).ok())?,
            count: cursor.opt_number(b"\"count\":")?,
            data_source: cursor.opt_string(b"\"dataSource\":", |v| Token::new(v).ok())?,
            duration_ms: cursor.opt_number(b"\"durationMs\":")?,
            expires_at: cursor.opt_string(b"\"expiresAt\":", |v| RecordTime::new(v).ok())?,
            fingerprint: cursor.opt_string(b"\"fingerprint\":", |v| Sha256Hex::new(v).ok())?,
            http_status: match cursor.opt_number(b"\"httpStatus\":")? {
                Some(n) => Some(u16::try_from(n).ok()?),
                None => None,
            },
            interactions: cursor.opt_number(b"\"interactions\":")?,
            key_id: cursor.opt_string(b"\"keyId\":", |v| KeyId::new(v).ok())?,
            reason: cursor.opt_string(b"\"reason\":", |v| Token::new(v).ok())?,
            sha256: cursor.opt_string(b"\"sha256\":", |v| Sha256Hex::new(v).ok())?,
            signature_sha256: cursor
                .opt_string(b"\"signatureSha256\":", |v| Sha256Hex::new(v).ok())?,
            subject: cursor.opt_string(b"\"subject\":", |v| SubjectDigest::new(v).ok())?,
            torn_bytes: cursor.opt_number(b"\"tornBytes\":")?,
            torn_offset: cursor.opt_number(b"\"tornOffset\":")?,
        };
        if !cursor.eat(b"}") {
            return None;
        }
        cursor.any = outer;
        Some(detail)
    }

    /// Parses a canonical line and checks its hash; `None` when the line is not canonical or
    /// not a valid record (the slow path then decides).
    pub(super) fn parse_canonical(line: &[u8]) -> Option<ParsedLine> {
        let text = std::str::from_utf8(line).ok()?;
        let mut cursor = Cursor { bytes: line, text, pos: 0, any: false };
        if !cursor.eat(b"{") {
            return None;
        }
        if !cursor.key(b"\"actor\":") {
            return None;
        }
        let actor = Actor::new(cursor.string()?.to_owned()).ok()?;
        let contact = cursor.opt_string(b"\"contact\":", |v| ContactId::new(v).ok())?;
        let detail = if cursor.key(b"\"detail\":") { Some(detail(&mut cursor)?) } else { None };
        if !cursor.key(b"\"event\":") {
            return None;
        }
        let event = event(cursor.string()?)?;
        // The hash member: `,"hash":"<64 hex>"`, left out of the bytes the hash covers.
        let hash_start = cursor.pos;
        if !cursor.key(b"\"hash\":") {
            return None;
        }
        let hash_text = cursor.string()?;
        let hash_end = cursor.pos;
        let hash = Sha256Hex::new(hash_text.to_owned()).ok()?;
        let outcome =
            if cursor.key(b"\"outcome\":") { Some(outcome(cursor.string()?)?) } else { None };
        let plan_id = cursor.opt_string(b"\"planId\":", |v| Sha256Hex::new(v).ok())?;
        if !cursor.key(b"\"prev\":") {
            return None;
        }
        let prev = Sha256Hex::new(cursor.string()?.to_owned()).ok()?;
        let request_id = cursor.opt_string(b"\"requestId\":", |v| RequestId::new(v).ok())?;
        if !cursor.key(b"\"seq\":") {
            return None;
        }
        let seq = cursor.number()?;
        let step = cursor.opt_string(b"\"step\":", |v| StepId::new(v).ok())?;
        if !cursor.key(b"\"time\":") {
            return None;
        }
        let time = RecordTime::new(cursor.string()?.to_owned()).ok()?;
        if !cursor.eat(b"}") || cursor.pos != line.len() {
            return None;
        }
        let mut hasher = Sha256::new();
        hasher.update(RECORD_HASH_DOMAIN);
        hasher.update(line.get(..hash_start)?);
        hasher.update(line.get(hash_end..)?);
        let digest = hasher.finalize();
        let hash_matches = hex_equals(&digest, hash_text.as_bytes());
        let record = AuditRecord {
            actor,
            contact,
            detail,
            event,
            hash,
            outcome,
            plan_id,
            prev,
            request_id,
            seq,
            step,
            time,
        };
        Some(ParsedLine { record, hash_matches })
    }

    /// Whether `hex` is the lowercase hex of `digest`.
    fn hex_equals(digest: &[u8], hex: &[u8]) -> bool {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        hex.len() == digest.len() * 2
            && digest.iter().zip(hex.chunks_exact(2)).all(|(byte, pair)| {
                let high = DIGITS.get(usize::from(byte >> 4));
                let low = DIGITS.get(usize::from(byte & 0x0f));
                pair.first() == high && pair.get(1) == low
            })
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{
        Actor, AuditRecord, ContactId, Detail, Entry, Event, Outcome, RecordTime, RequestId,
        Sha256Hex, StepId,
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

    fn same(text: &str) -> bool {
        let slow = parse_line(text.as_bytes()).map(|p| (p.record, p.hash_matches));
        let fast = parse(text.as_bytes()).map(|p| (p.record, p.hash_matches));
        slow == fast
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
}
