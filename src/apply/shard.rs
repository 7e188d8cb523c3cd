//! A shard's run: the record that opens it in its segment. The shard itself (which contacts,
//! which files) is [`crate::shard`].

use std::path::Path;

pub use crate::shard::*;

use super::PlanSource;
use crate::audit::{self, Detail, Entry, Event, Outcome};
use crate::plan::Plan;

/// The ids of the plan's contacts that are `shard`'s, read from `plan` as a stream (only the
/// shard's ids are held).
///
/// # Errors
/// The plan file cannot be read again, or its lines no longer match its header.
pub fn contacts_of(plan: &PlanSource, shard: Shard) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    for item in plan.contacts()? {
        let (contact, _) = item?;
        if shard.contains_id(contact.contact_id.as_str()) {
            ids.push(contact.contact_id.as_str().to_owned());
        }
    }
    Ok(ids)
}

/// The `shard.start` record that opens each run of a shard in its segment: the request, the
/// plan, `reason: shard-I-of-N`, `count`: the shard's contacts (`ids`), `sha256`: their
/// [`contacts_digest`].
///
/// # Errors
/// A value that cannot go into a record (an invalid actor or request id).
pub fn start_record(
    plan: &Plan,
    shard: Shard,
    ids: &[String],
    actor: &str,
) -> Result<Entry, audit::RecordError> {
    let detail = Detail {
        count: Some(ids.len() as u64),
        reason: Some(audit::Token::new(shard.label())?),
        sha256: Some(audit::Sha256Hex::new(contacts_digest(ids.iter().map(String::as_str)))?),
        ..Detail::default()
    };
    Ok(Entry::new(audit::Actor::new(actor.to_owned())?, Event::ShardStart)
        .request(audit::RequestId::new(plan.body.request.id.clone())?)
        .plan(audit::Sha256Hex::new(plan.plan_id.clone())?)
        .outcome(Outcome::Ok)
        .detail(detail))
}

/// Opens a run of `shard` in its segment: appends (durably) the [`start_record`], before the
/// gate and the run append theirs.
///
/// # Errors
/// A record that cannot be made, or a segment that cannot be written.
pub fn start(
    segment: &Path,
    plan: &PlanSource,
    shard: Shard,
    actor: &str,
    signing_key: Option<ed25519_dalek::SigningKey>,
) -> Result<(), super::ApplyError> {
    let ids = contacts_of(plan, shard).map_err(|e| super::ApplyError::Mismatch(vec![e]))?;
    let entry = start_record(plan.head(), shard, &ids, actor)
        .map_err(|e| super::ApplyError::Record(e.to_string()))?;
    let mut log = audit::AuditLog::open_with(
        segment,
        audit::LogOptions { signing_key, ..Default::default() },
    )?;
    log.append_durable(entry)?;
    log.finish()?;
    Ok(())
}
