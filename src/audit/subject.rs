//! Subject digests: a data subject's identifier (a contact id, a `match` map) as a keyed
//! HMAC-SHA256, so the trail can show that two records concern the same subject without
//! holding the identifier itself.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::record::SubjectDigest;
use crate::canonical;

/// The shortest key accepted, in bytes: 256 bits, the HMAC-SHA256 output size.
pub const MIN_KEY_LEN: usize = 32;

/// The domain-separation prefix of a subject digest.
const SUBJECT_DOMAIN: &[u8] = b"ucs-gdpr/subject/v1\n";

/// The key is missing or too weak. Messages name the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectKeyError {
    /// The environment variable is not set (or not UTF-8).
    #[error(
        "the subject digest key variable {var} is not set: set it to a secret of at least \
         {MIN_KEY_LEN} characters (the environments file names it in `hmacKeyEnv`)"
    )]
    Unset {
        /// The variable's name.
        var: String,
    },
    /// The key is shorter than [`MIN_KEY_LEN`].
    #[error(
        "the subject digest key in {var} is {len} bytes long; at least {MIN_KEY_LEN} are needed"
    )]
    TooShort {
        /// The variable's name (or `key` when given directly).
        var: String,
        /// The key's length in bytes.
        len: usize,
    },
}

/// Computes keyed digests of subject identifiers.
#[derive(Clone)]
pub struct SubjectDigester {
    /// The HMAC keyed once; each digest clones it.
    mac: Hmac<Sha256>,
}

impl fmt::Debug for SubjectDigester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectDigester").field("key", &"<redacted>").finish()
    }
}

impl SubjectDigester {
    /// A digester keyed with `key` (at least [`MIN_KEY_LEN`] bytes).
    pub fn new(key: &[u8]) -> Result<Self, SubjectKeyError> {
        if key.len() < MIN_KEY_LEN {
            return Err(SubjectKeyError::TooShort { var: "key".to_owned(), len: key.len() });
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .map_err(|_| SubjectKeyError::TooShort { var: "key".to_owned(), len: key.len() })?;
        Ok(Self { mac })
    }

    /// A digester keyed with the bytes of the environment variable `var_name` (the value of
    /// the environments file's `hmacKeyEnv`).
    pub fn from_env(var_name: &str) -> Result<Self, SubjectKeyError> {
        let key = std::env::var(var_name)
            .map_err(|_| SubjectKeyError::Unset { var: var_name.to_owned() })?;
        Self::new(key.as_bytes()).map_err(|error| match error {
            SubjectKeyError::TooShort { len, .. } => {
                SubjectKeyError::TooShort { var: var_name.to_owned(), len }
            }
            other @ SubjectKeyError::Unset { .. } => other,
        })
    }

    /// The digest of an identifier given as JSON (a contact id string, a `match` map): the
    /// HMAC of its canonical JSON, so key order and whitespace do not matter.
    pub fn digest(&self, identifier: &Value) -> SubjectDigest {
        let mut bytes = SUBJECT_DOMAIN.to_vec();
        canonical::write(identifier, &mut bytes);
        self.digest_bytes(&bytes)
    }

    fn digest_bytes(&self, bytes: &[u8]) -> SubjectDigest {
        let mut mac = self.mac.clone();
        mac.update(bytes);
        SubjectDigest::from_trusted_hex(canonical::hex(&mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_digest_ignores_key_order_and_depends_on_the_key() {
        let digester = SubjectDigester::new(&[7; 32]).unwrap();
        let a = digester.digest(&json!({"TenantId": 101, "EmailAddress": "jane.doe@company.com"}));
        let b = digester.digest(&json!({"EmailAddress": "jane.doe@company.com", "TenantId": 101}));
        assert_eq!(a, b);
        assert!(!a.as_str().contains("jane"));
        let other = SubjectDigester::new(&[8; 32]).unwrap().digest(&json!({"TenantId": 101}));
        assert_ne!(digester.digest(&json!({"TenantId": 101})), other);
    }

    #[test]
    fn a_short_key_is_refused_without_showing_it() {
        let error = SubjectDigester::new(b"short").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the subject digest key in key is 5 bytes long; at least 32 are needed"
        );
    }

    #[test]
    fn an_unset_variable_is_named() {
        let error = SubjectDigester::from_env("UCS_GDPR_TEST_SURELY_UNSET_KEY").unwrap_err();
        assert!(error.to_string().contains("UCS_GDPR_TEST_SURELY_UNSET_KEY is not set"));
    }
}
