//! Checkpoints: the size and head hash of the log at the end of a run, optionally signed, so
//! that a copy kept elsewhere reveals a truncated or rewritten log.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AuditError;
use super::keys::key_id;
use super::record::{RecordTime, Sha256Hex};
use crate::canonical;

/// The domain-separation prefix of the signed checkpoint body.
const CHECKPOINT_DOMAIN: &[u8] = b"ucs-gdpr/audit-checkpoint/v1\n";

/// The state of the log at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    /// The number of records in the log.
    pub size: u64,
    /// The hash of the last record (64 zeros for an empty log).
    pub head: Sha256Hex,
    /// When the checkpoint was made.
    pub time: RecordTime,
    /// The id of the signing key's public key (see [`key_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The ed25519 signature of the checkpoint body, 128 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The log's length in bytes when the checkpoint was made: where the writer finds the
    /// checkpoint's last record when it reopens the log, without reading what came before.
    /// A locator, not evidence (not signed): the record found there must still carry `size`
    /// and `head`, so a wrong offset can only make the writer refuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// What checking a checkpoint's signature found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// Signed by the given key.
    Valid,
    /// The checkpoint carries no signature.
    Unsigned,
    /// Signed, but by another key (the key ids differ).
    WrongKey,
    /// The signature does not verify: the checkpoint was altered or forged.
    Bad,
}

impl Checkpoint {
    /// A checkpoint of a log of `size` records ending at `head`, signed when a key is given.
    pub fn new(
        size: u64,
        head: Sha256Hex,
        time: RecordTime,
        signing_key: Option<&SigningKey>,
    ) -> Self {
        let mut checkpoint = Self { size, head, time, key_id: None, signature: None, bytes: None };
        if let Some(key) = signing_key {
            checkpoint.key_id = Some(key_id(&key.verifying_key()));
            let signature = key.sign(&checkpoint.signed_body());
            checkpoint.signature = Some(canonical::hex(&signature.to_bytes()));
        }
        checkpoint
    }

    /// The bytes the signature covers: a domain prefix and the canonical JSON of `size`,
    /// `head`, `time` and `keyId`.
    fn signed_body(&self) -> Vec<u8> {
        let body = json!({
            "size": self.size,
            "head": self.head,
            "time": self.time,
            "keyId": self.key_id,
        });
        let mut bytes = CHECKPOINT_DOMAIN.to_vec();
        canonical::write(&body, &mut bytes);
        bytes
    }

    /// Checks the signature against `key`.
    pub fn check_signature(&self, key: &VerifyingKey) -> SignatureCheck {
        let Some(signature) = &self.signature else {
            return SignatureCheck::Unsigned;
        };
        if self.key_id.as_deref() != Some(key_id(key).as_str()) {
            return SignatureCheck::WrongKey;
        }
        let Some(signature) = canonical::unhex(signature)
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
            .map(|bytes| Signature::from_bytes(&bytes))
        else {
            return SignatureCheck::Bad;
        };
        match key.verify(&self.signed_body(), &signature) {
            Ok(()) => SignatureCheck::Valid,
            Err(_) => SignatureCheck::Bad,
        }
    }

    /// Reads a checkpoint file.
    pub fn read(path: &Path) -> Result<Self, AuditError> {
        let bytes = fs::read(path).map_err(|source| AuditError::Io {
            action: "read the checkpoint",
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|_| AuditError::MalformedCheckpoint { path: path.to_owned() })
    }

    /// Writes the checkpoint to `path` atomically: a temporary file in the same directory,
    /// written and fsynced, renamed over `path`, then the directory fsynced so the rename
    /// itself survives a crash.
    pub fn write_atomically(&self, path: &Path) -> Result<(), AuditError> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| AuditError::Io { action, path, source }
        };
        let serialised = serde_json::to_value(self).unwrap_or_default();
        let mut bytes = canonical::to_vec(&serialised);
        bytes.push(b'\n');
        let temp = temp_path(path);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(io("create the temporary checkpoint", &temp))?;
        file.write_all(&bytes).map_err(io("write the temporary checkpoint", &temp))?;
        file.sync_all().map_err(io("sync the temporary checkpoint", &temp))?;
        drop(file);
        fs::rename(&temp, path).map_err(io("rename the checkpoint into place", path))?;
        let dir = parent_dir(path);
        File::open(&dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io("sync the checkpoint's directory", &dir))
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp.{}", std::process::id()));
    PathBuf::from(name)
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time() -> RecordTime {
        RecordTime::new("2026-11-29T10:15:00.000Z").unwrap()
    }

    #[test]
    fn a_signed_checkpoint_verifies_only_with_its_key_and_content() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let checkpoint = Checkpoint::new(3, Sha256Hex::genesis(), time(), Some(&key));
        assert_eq!(checkpoint.check_signature(&key.verifying_key()), SignatureCheck::Valid);
        assert_eq!(checkpoint.check_signature(&other.verifying_key()), SignatureCheck::WrongKey);
        let altered = Checkpoint { size: 2, ..checkpoint };
        assert_eq!(altered.check_signature(&key.verifying_key()), SignatureCheck::Bad);
        let unsigned = Checkpoint::new(3, Sha256Hex::genesis(), time(), None);
        assert_eq!(unsigned.check_signature(&key.verifying_key()), SignatureCheck::Unsigned);
    }

    #[test]
    fn a_checkpoint_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl.checkpoint.json");
        let key = SigningKey::from_bytes(&[1; 32]);
        let checkpoint = Checkpoint::new(7, Sha256Hex::digest(b"x"), time(), Some(&key));
        checkpoint.write_atomically(&path).unwrap();
        assert_eq!(Checkpoint::read(&path).unwrap(), checkpoint);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
