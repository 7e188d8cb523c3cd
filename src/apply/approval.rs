//! Approvals: a reviewer's consent bound to one plan id, optionally signed with ed25519, and the
//! policy check that decides whether a plan's approvals are enough.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::environment::Environment;

/// An approval file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approval {
    /// Always `ucs-gdpr/v1`.
    pub api_version: String,
    /// Always `Approval`.
    pub kind: String,
    /// The plan approved.
    pub plan_id: String,
    /// Who approved (a login name).
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
    /// A comment for the record (kept in this file only, never in the audit trail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When the approval stops counting (RFC 3339, UTC), if it does; the signature covers it.
    /// An approval without one stays valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The signing key's id, when signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// ed25519 signature (hex) over the canonical approval without `signature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Why an approval or a set of approvals is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// The file cannot be read or is not an approval.
    #[error("`{path}` is not a readable approval: {why}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// An approval of another plan.
    #[error("the approval by `{by}` is for plan {approved}, not for this plan {plan}")]
    WrongPlan {
        /// Who.
        by: String,
        /// The plan it approves.
        approved: String,
        /// The plan being applied.
        plan: String,
    },
    /// A signature that does not verify.
    #[error(
        "the approval by `{by}` has a signature that does not verify: it was altered or forged"
    )]
    Forged {
        /// Who it claims to be from.
        by: String,
    },
    /// An approver the policy does not list.
    #[error("`{by}` is not an approver of this environment (approvers: {approvers})")]
    NotAnApprover {
        /// Who.
        by: String,
        /// Who may approve.
        approvers: String,
    },
    /// An approver whose key is registered but whose approval is unsigned.
    #[error("the approval by `{by}` must be signed with their registered key (`approve --key`)")]
    Unsigned {
        /// Who.
        by: String,
    },
    /// An approval by an approver with no registered key: nothing proves who gave it, so it
    /// never counts.
    #[error(
        "the approval by `{by}` cannot count: `{by}` has no registered key (`policy.approverKeys`), \
         so nothing proves who gave it"
    )]
    NoKey {
        /// Who it claims to be from.
        by: String,
    },
    /// An approval whose expiry has passed.
    #[error(
        "the approval by `{by}` expired at {expired_at}: it no longer counts; have the plan \
         approved again"
    )]
    Expired {
        /// Who.
        by: String,
        /// When it expired.
        expired_at: String,
    },
    /// A signed approval whose expiry is not a time.
    #[error("the approval by `{by}` has an expiry that is not an RFC 3339 time")]
    BadExpiry {
        /// Who.
        by: String,
    },
    /// Not enough distinct approvals.
    #[error(
        "this environment needs {needed} approval(s) from distinct approvers; {have} valid: {missing}"
    )]
    NotEnough {
        /// How many are needed.
        needed: usize,
        /// How many are valid.
        have: usize,
        /// What to do.
        missing: String,
    },
}

/// An approval the policy check accepted, as the audit `approval` record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Who approved.
    pub by: String,
    /// The id of the registered key that verified it ([`crate::audit::key_id`]: the first 16
    /// hex digits of the sha256 of the verifying key).
    pub key_id: String,
    /// sha256 (hex) of the signature's bytes.
    pub signature_sha256: String,
    /// When it stops counting, if it does (RFC 3339, UTC).
    pub expires_at: Option<String>,
}

/// The end of an approval given as `approve --expires` takes it: an RFC 3339 time (with its
/// offset), or a duration from `now` such as `72h`, `3d` or `1h30m` (a day is 24 hours).
///
/// # Errors
/// Neither form, or a time that is not after `now`.
pub fn parse_expiry(text: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    let at = match text.parse::<jiff::Timestamp>() {
        Ok(at) => at,
        Err(_) => {
            let span: jiff::Span = text.parse().map_err(|_| {
                format!(
                    "`{text}` is neither an RFC 3339 time (2026-12-24T18:00:00Z) nor a duration \
                     (72h, 3d, 1h30m)"
                )
            })?;
            let duration = span
                .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                .map_err(|e| format!("`{text}` is not a usable duration: {e}"))?;
            now.checked_add(duration).map_err(|e| format!("`{text}` is too far: {e}"))?
        }
    };
    if at <= now {
        return Err(format!("the expiry {at:.0} is not in the future"));
    }
    Ok(at)
}

impl Approval {
    /// A new approval of `plan_id` by `by`, signed when a key is given.
    pub fn new(plan_id: &str, by: &str, comment: Option<String>, key: Option<&SigningKey>) -> Self {
        Self::with_expiry(plan_id, by, comment, None, key)
    }

    /// A new approval of `plan_id` by `by` that stops counting at `expires_at` (when given),
    /// signed when a key is given: the signature covers the expiry.
    pub fn with_expiry(
        plan_id: &str,
        by: &str,
        comment: Option<String>,
        expires_at: Option<jiff::Timestamp>,
        key: Option<&SigningKey>,
    ) -> Self {
        let mut approval = Approval {
            api_version: "ucs-gdpr/v1".into(),
            kind: "Approval".into(),
            plan_id: plan_id.to_owned(),
            by: by.to_owned(),
            at: format!("{:.0}", jiff::Timestamp::now()),
            comment,
            expires_at: expires_at.map(|t| format!("{t:.0}")),
            key_id: key.map(|k| crate::audit::key_id(&k.verifying_key())),
            signature: None,
        };
        if let Some(key) = key {
            let signature = key.sign(&approval.signed_bytes());
            approval.signature = Some(crate::canonical::hex(&signature.to_bytes()));
        }
        approval
    }

    /// The bytes the signature covers: the canonical approval without its signature.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        let value = serde_json::to_value(&unsigned).unwrap_or_default();
        crate::canonical::to_vec(&value)
    }

    /// Whether the signature verifies with `key`.
    pub fn verifies_with(&self, key: &VerifyingKey) -> bool {
        let Some(bytes) = self.signature.as_deref().and_then(crate::canonical::unhex) else {
            return false;
        };
        let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else { return false };
        key.verify(&self.signed_bytes(), &Signature::from_bytes(&bytes)).is_ok()
    }

    /// Reads an approval file.
    ///
    /// # Errors
    /// Unreadable or not an approval.
    pub fn read(path: &Path) -> Result<Approval, ApprovalError> {
        let unreadable = |why: String| ApprovalError::Unreadable { path: path.to_owned(), why };
        let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
        let approval: Approval =
            serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
        if approval.kind != "Approval" {
            return Err(unreadable("its kind is not `Approval`".into()));
        }
        Ok(approval)
    }

    /// The approval as canonical JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = crate::canonical::to_vec(&serde_json::to_value(self).unwrap_or_default());
        bytes.push(b'\n');
        bytes
    }
}

/// Checks approvals against an environment's policy for one plan; returns the accepted
/// approvers.
///
/// # Errors
/// The first approval that is wrong, or too few valid ones.
pub fn check(
    plan_id: &str,
    approvals: &[Approval],
    environment: &Environment,
    base_dir: &Path,
) -> Result<BTreeSet<String>, ApprovalError> {
    verify(plan_id, approvals, environment, base_dir, jiff::Timestamp::now())
        .map(|accepted| accepted.into_iter().map(|a| a.by).collect())
}

/// Checks approvals against an environment's policy for one plan at `now`: each is for this
/// plan, by a listed approver, signed with their registered key (the signature covers the
/// expiry) and not expired; and there are enough of them. Returns the accepted ones, one per
/// approver (the first), sorted by approver.
///
/// # Errors
/// The first approval that is wrong, or too few valid ones.
pub fn verify(
    plan_id: &str,
    approvals: &[Approval],
    environment: &Environment,
    base_dir: &Path,
    now: jiff::Timestamp,
) -> Result<Vec<Accepted>, ApprovalError> {
    let policy = &environment.policy;
    let keys: BTreeMap<&str, Option<VerifyingKey>> = policy
        .approver_keys
        .iter()
        .map(|(name, file)| {
            (name.as_str(), crate::audit::load_verifying_key(&base_dir.join(file)).ok())
        })
        .collect();
    let mut accepted: BTreeMap<String, Accepted> = BTreeMap::new();
    for approval in approvals {
        if approval.plan_id != plan_id {
            return Err(ApprovalError::WrongPlan {
                by: approval.by.clone(),
                approved: approval.plan_id.clone(),
                plan: plan_id.to_owned(),
            });
        }
        // Only a listed approver approves: an empty list means nobody, not anybody.
        if !policy.approvers.contains(&approval.by) {
            return Err(ApprovalError::NotAnApprover {
                by: approval.by.clone(),
                approvers: policy.approvers.join(", "),
            });
        }
        let key = match keys.get(approval.by.as_str()) {
            Some(Some(_)) if approval.signature.is_none() => {
                return Err(ApprovalError::Unsigned { by: approval.by.clone() });
            }
            Some(Some(key)) if !approval.verifies_with(key) => {
                return Err(ApprovalError::Forged { by: approval.by.clone() });
            }
            Some(Some(key)) => key,
            // A registered key that cannot be read verifies nothing.
            Some(None) => return Err(ApprovalError::Forged { by: approval.by.clone() }),
            // No registered key: an unsigned approval (or one signed by an unknown key) never
            // counts.
            None => return Err(ApprovalError::NoKey { by: approval.by.clone() }),
        };
        // The signature verified, so the expiry is the approver's own.
        if let Some(expires_at) = &approval.expires_at {
            let Ok(at) = expires_at.parse::<jiff::Timestamp>() else {
                return Err(ApprovalError::BadExpiry { by: approval.by.clone() });
            };
            if at <= now {
                return Err(ApprovalError::Expired {
                    by: approval.by.clone(),
                    expired_at: format!("{at:.0}"),
                });
            }
        }
        let signature = approval.signature.as_deref().and_then(crate::canonical::unhex);
        accepted.entry(approval.by.clone()).or_insert_with(|| Accepted {
            by: approval.by.clone(),
            key_id: crate::audit::key_id(key),
            signature_sha256: crate::canonical::sha256_hex(&signature.unwrap_or_default()),
            expires_at: approval
                .expires_at
                .as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| format!("{t:.0}")),
        });
    }
    let needed = usize::try_from(policy.min_approvals.unwrap_or(1)).unwrap_or(1);
    if environment.requires_approval() && accepted.len() < needed {
        let missing = if accepted.is_empty() {
            format!(
                "run `ucs-gdpr approve PLAN --by NAME` ({needed} approver(s)) and pass each file with --approval"
            )
        } else {
            format!(
                "approved by {}; {} more distinct approver(s) needed",
                accepted.keys().cloned().collect::<Vec<_>>().join(", "),
                needed - accepted.len()
            )
        };
        return Err(ApprovalError::NotEnough { needed, have: accepted.len(), missing });
    }
    Ok(accepted.into_values().collect())
}
