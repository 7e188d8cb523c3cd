//! The audit trail: an append-only, hash-chained JSON Lines log with signed checkpoints.
//!
//! Each line is one [`AuditRecord`] in canonical JSON; `seq` counts from 0, `prev` is the
//! previous record's hash and `hash` is SHA-256 over a domain prefix and the canonical record
//! without `hash`. One [`AuditLog`] writer at a time appends (a file lock); intents are
//! fsynced before the call that writes them returns. [`AuditLog::finish`] writes a
//! [`Checkpoint`] beside the log; [`verify_file`] checks every line against the chain and a
//! checkpoint kept elsewhere.
//!
//! How the executor writes a run:
//!
//! ```no_run
//! use ucs_gdpr::audit::{Actor, AuditLog, ContactId, Entry, Event, Outcome, RequestId, StepId};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut log = AuditLog::open("audit.jsonl")?; // the lock, the tail, the chain
//! let actor = Actor::new("agent.smith")?;
//! let request = RequestId::new("DSR-2026-0142")?;
//! log.append(Entry::new(actor.clone(), Event::RunStart).request(request.clone()))?;
//! let intent = Entry::new(actor, Event::StepIntent)
//!     .request(request)
//!     .step(StepId::new("delete")?)
//!     .contact(ContactId::new("0001SaD2PVY4312K")?);
//! log.append_intent(intent.clone())?; // on disk before the side effect
//! // ... delete the contact ...
//! log.append(Entry { event: Event::StepDone, outcome: Some(Outcome::Ok), ..intent })?;
//! let checkpoint = log.finish()?; // fsync, then <log>.checkpoint.json
//! # let _ = checkpoint;
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod keys;
mod log;
mod record;
pub mod report;
pub mod segments;
mod subject;
mod verify;

use std::path::PathBuf;

pub use checkpoint::{Checkpoint, SignatureCheck};
pub use keys::{
    KeyError, KeyPairFiles, PUBLIC_KEY_FILE, SECRET_KEY_FILE, generate_key_pair, key_id,
    load_signing_key, load_verifying_key,
};
pub use log::{Appended, AuditLog, LogOptions, Recovery, SharedLog, checkpoint_path};
pub use record::{
    Actor, AuditRecord, ContactId, Detail, Entry, Event, KeyId, Outcome, RECORD_HASH_DOMAIN,
    RecordError, RecordTime, RequestId, Sha256Hex, StepId, SubjectDigest, Token, record_hash,
};
pub use report::{RequestReport, request_report, request_reports};
pub use subject::{MIN_KEY_LEN, SubjectDigester, SubjectKeyError};
pub use verify::{
    CheckpointStatus, Fault, FaultKind, Interrupted, LogLine, Recovered, VerifyOptions,
    VerifyReport, for_each_record, read_lines, read_records, verify_file, verify_file_baseline,
};

/// What can go wrong writing or reading the audit trail (faults found by verification are
/// not errors: they are in the [`VerifyReport`]).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another writer holds the log.
    #[error(
        "the audit log {path} is already open for writing by {holder}; only one writer at a \
         time (lock details in {lock_path})"
    )]
    Locked {
        /// The log.
        path: PathBuf,
        /// Who holds it, as the holder recorded (`pid 4242 on host ops-1 since ...`).
        holder: String,
        /// The file that records the holder.
        lock_path: PathBuf,
    },
    /// The last record does not verify, so the chain cannot be continued safely.
    #[error(
        "refusing to append to {path}: {reason}; run `ucs-gdpr audit verify` on it before \
         writing to it again"
    )]
    CorruptTail {
        /// The log.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The log does not continue the checkpoint beside it: records were removed from it or
    /// rewritten since the checkpoint was made.
    #[error(
        "refusing to append to {path}: it does not continue its checkpoint {checkpoint_path}: \
         {reason}. The log may have been cut short or rewritten; check it with `ucs-gdpr audit \
         verify` against a copy of the checkpoint kept elsewhere, and restore it, before \
         writing to it again"
    )]
    NotItsCheckpoint {
        /// The log.
        path: PathBuf,
        /// Its checkpoint.
        checkpoint_path: PathBuf,
        /// What does not match (counts and sequence numbers only).
        reason: String,
    },
    /// `append_intent` was given another event.
    #[error("append_intent records step.intent events, not {event}")]
    NotAnIntent {
        /// The event given.
        event: Event,
    },
    /// An earlier write failed; the writer stopped appending.
    #[error("an earlier write to {path} failed; reopen the log to repair its end and continue")]
    WriterFailed {
        /// The log.
        path: PathBuf,
    },
    /// The checkpoint file is not a checkpoint.
    #[error("{path} is not an audit checkpoint")]
    MalformedCheckpoint {
        /// The file.
        path: PathBuf,
    },
    /// A record could not be built.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A key file could not be used.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// `<path><suffix>`: the files kept beside the log (`.lock`, `.torn`, `.checkpoint.json`).
fn sidecar(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
