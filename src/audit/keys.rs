//! The checkpoint signing key pair: an ed25519 seed and its public key, as small text files.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::canonical;

/// The file name of the secret key written by [`generate_key_pair`].
pub const SECRET_KEY_FILE: &str = "audit-signing.key";
/// The file name of the public key written by [`generate_key_pair`].
pub const PUBLIC_KEY_FILE: &str = "audit-signing.pub";

const SECRET_LABEL: &str = "UCS-GDPR AUDIT SIGNING KEY";
const PUBLIC_LABEL: &str = "UCS-GDPR AUDIT PUBLIC KEY";

/// A key file cannot be made or read. Messages never include key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`read the key file`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The key file already exists; keys are never overwritten.
    #[error("{path} already exists; move it away first (a key is never overwritten)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file does not hold a key of the expected kind.
    #[error("{path} is not {expected} (expected the text written by `ucs-gdpr audit keygen`)")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// `an audit signing key` or `an audit public key`.
        expected: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes for a key: {0}")]
    Random(String),
}

/// The paths of a key pair written by [`generate_key_pair`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairFiles {
    /// The secret key (mode 0600).
    pub secret: PathBuf,
    /// The public key.
    pub public: PathBuf,
    /// The public key's id, as checkpoints name it.
    pub key_id: String,
}

/// The short id of a public key: the first 16 hex digits of the SHA-256 of its bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    let mut id = canonical::sha256_hex(key.as_bytes());
    id.truncate(16);
    id
}

/// Makes a new key pair in `dir` (created if missing): [`SECRET_KEY_FILE`] readable only by
/// its owner and [`PUBLIC_KEY_FILE`]. Refuses to overwrite either.
pub fn generate_key_pair(dir: &Path) -> Result<KeyPairFiles, KeyError> {
    let mut seed = [0_u8; 32];
    getrandom::fill(&mut seed).map_err(|error| KeyError::Random(error.to_string()))?;
    let signing = SigningKey::from_bytes(&seed);
    seed.fill(0);
    let secret = dir.join(SECRET_KEY_FILE);
    let public = dir.join(PUBLIC_KEY_FILE);
    for path in [&secret, &public] {
        if path.exists() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    fs::create_dir_all(dir).map_err(|source| KeyError::Io {
        action: "create the directory",
        path: dir.to_owned(),
        source,
    })?;
    write_new(&secret, &armor(SECRET_LABEL, &signing.to_bytes()), 0o600)?;
    let verifying = signing.verifying_key();
    write_new(&public, &armor(PUBLIC_LABEL, verifying.as_bytes()), 0o644)?;
    Ok(KeyPairFiles { secret, public, key_id: key_id(&verifying) })
}

/// Reads a secret key written by [`generate_key_pair`].
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let bytes = read_armored(path, SECRET_LABEL, "an audit signing key")?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Reads a public key written by [`generate_key_pair`].
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let bytes = read_armored(path, PUBLIC_LABEL, "an audit public key")?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| KeyError::Malformed { path: path.to_owned(), expected: "an audit public key" })
}

fn armor(label: &str, bytes: &[u8; 32]) -> String {
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", canonical::hex(bytes))
}

fn read_armored(path: &Path, label: &str, expected: &'static str) -> Result<[u8; 32], KeyError> {
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        action: "read the key file",
        path: path.to_owned(),
        source,
    })?;
    let malformed = || KeyError::Malformed { path: path.to_owned(), expected };
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    let [first, body, last] = lines.as_slice() else {
        return Err(malformed());
    };
    if *first != begin || *last != end {
        return Err(malformed());
    }
    canonical::unhex(body).and_then(|bytes| <[u8; 32]>::try_from(bytes).ok()).ok_or_else(malformed)
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    let io = |source| KeyError::Io { action: "write the key file", path: path.to_owned(), source };
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn keygen_writes_a_private_secret_and_a_matching_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate_key_pair(dir.path()).unwrap();
        let mode = fs::metadata(&files.secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let signing = load_signing_key(&files.secret).unwrap();
        let public = load_verifying_key(&files.public).unwrap();
        assert_eq!(signing.verifying_key(), public);
        assert_eq!(key_id(&public), files.key_id);
        assert!(matches!(generate_key_pair(dir.path()), Err(KeyError::Exists { .. })));
        assert!(matches!(load_verifying_key(&files.secret), Err(KeyError::Malformed { .. })));
    }
}
