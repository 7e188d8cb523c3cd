//! `sim generate`: a synthetic dataset of any size, deterministic for a seed, for benchmarks.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};

use super::dataset::{
    Dataset, DatasetAttachment, DatasetCallback, DatasetContact, DatasetInteraction,
    DatasetInteractions, OneOrMany,
};
use crate::ucs::rng::SplitMix64;
use crate::ucs::{AttachmentId, CallbackId, ContactId, InteractionId, InteractionStatus};

/// Attachments larger than this are written as files beside the dataset, not inline.
pub(crate) const INLINE_LIMIT: u64 = 4096;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// How many contacts.
    pub contacts: u32,
    /// Interactions per contact (every fourth one in the archive).
    pub interactions: u32,
    /// Bytes of the one attachment each interaction gets (0: none).
    pub attachment_bytes: u64,
    /// The seed.
    pub seed: u64,
    /// The dataset file to write (JSON). Large attachments go in `<out>.files/`.
    pub out: PathBuf,
}

/// A dataset that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A generated id was invalid (a bug).
    #[error("generated an invalid id")]
    Id,
}

const ALPHANUMERIC: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_id(rng: &SplitMix64) -> String {
    (0..16)
        .map(|_| {
            let index = usize::try_from(rng.up_to(61)).unwrap_or(0);
            char::from(ALPHANUMERIC.get(index).copied().unwrap_or(b'0'))
        })
        .collect()
}

fn write_random_file(path: &Path, rng: &SplitMix64, size: u64) -> Result<(), GenerateError> {
    let error = |source| GenerateError::Write { path: path.to_owned(), source };
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(error)?);
    let mut left = size;
    let mut chunk = Vec::with_capacity(64 * 1024);
    while left > 0 {
        chunk.clear();
        let take = left.min(64 * 1024);
        while u64::try_from(chunk.len()).unwrap_or(u64::MAX) < take {
            chunk.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        chunk.truncate(usize::try_from(take).unwrap_or(0));
        file.write_all(&chunk).map_err(error)?;
        left -= take;
    }
    file.flush().map_err(error)
}

/// Writes a synthetic dataset and returns how many attachment files it wrote beside it.
pub fn generate(options: &GenerateOptions) -> Result<u64, GenerateError> {
    let rng = SplitMix64::new(options.seed);
    let files_dir_name = format!(
        "{}.files",
        options.out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    );
    let files_dir = options.out.with_file_name(&files_dir_name);
    let mut files = 0;
    let epoch: Timestamp = Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut contacts = Vec::new();
    for c in 0..options.contacts {
        let id = ContactId::new(&random_id(&rng)).map_err(|_| GenerateError::Id)?;
        let mut attributes = BTreeMap::new();
        attributes.insert("FirstName".to_owned(), OneOrMany::One(format!("Given{c}")));
        attributes.insert("LastName".to_owned(), OneOrMany::One(format!("Family{c}")));
        attributes
            .insert("EmailAddress".to_owned(), OneOrMany::One(format!("person{c}@example.com")));
        let mut interactions = DatasetInteractions::default();
        for i in 0..options.interactions {
            let interaction_id =
                InteractionId::new(&random_id(&rng)).map_err(|_| GenerateError::Id)?;
            let start = epoch
                .checked_add(SignedDuration::from_secs(i64::from(c) * 86_400 + i64::from(i) * 600))
                .unwrap_or(epoch);
            let mut attachments = Vec::new();
            if options.attachment_bytes > 0 {
                let attachment_id =
                    AttachmentId::new(&random_id(&rng)).map_err(|_| GenerateError::Id)?;
                let (base64, file) = if options.attachment_bytes <= INLINE_LIMIT {
                    let mut bytes = Vec::new();
                    while u64::try_from(bytes.len()).unwrap_or(u64::MAX) < options.attachment_bytes
                    {
                        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
                    }
                    bytes.truncate(usize::try_from(options.attachment_bytes).unwrap_or(0));
                    (Some(base64::engine::general_purpose::STANDARD.encode(bytes)), None)
                } else {
                    std::fs::create_dir_all(&files_dir).map_err(|source| GenerateError::Write {
                        path: files_dir.clone(),
                        source,
                    })?;
                    let name = format!("{attachment_id}.bin");
                    write_random_file(&files_dir.join(&name), &rng, options.attachment_bytes)?;
                    files += 1;
                    (None, Some(format!("{files_dir_name}/{name}")))
                };
                attachments.push(DatasetAttachment {
                    id: attachment_id,
                    name: format!("attachment-{i}.bin"),
                    mime_type: "application/octet-stream".to_owned(),
                    base64,
                    file,
                });
            }
            let interaction = DatasetInteraction {
                id: interaction_id,
                media_type: ["email", "chat", "voice"]
                    .get(usize::try_from(i % 3).unwrap_or(0))
                    .copied()
                    .unwrap_or("email")
                    .to_owned(),
                status: InteractionStatus::Stopped,
                workbin: None,
                subject: Some(format!("Subject {i}")),
                text: Some(format!("Synthetic interaction {i} of contact {c}.")),
                structured: serde_json::Map::new(),
                start_date: Some(start),
                end_date: start.checked_add(SignedDuration::from_secs(300)).ok(),
                modified: None,
                attachments,
            };
            if i % 4 == 3 {
                interactions.archive.push(interaction);
            } else {
                interactions.main.push(interaction);
            }
        }
        if c % 10 == 0 {
            // GMS finds a callback by the number it calls: the contact has that number.
            attributes.insert("PhoneNumber".to_owned(), OneOrMany::One(format!("+1555{c:07}")));
        }
        let callbacks = if c % 10 == 0 {
            vec![DatasetCallback {
                id: CallbackId::new(&random_id(&rng)).map_err(|_| GenerateError::Id)?,
                service: "callback".to_owned(),
                state: "SCHEDULED".to_owned(),
                desired_time: Some(epoch),
                phone_number: format!("+1555{c:07}"),
            }]
        } else {
            Vec::new()
        };
        contacts.push(DatasetContact {
            id,
            tenant: 101,
            attributes,
            interactions,
            profile: None,
            services: Vec::new(),
            callbacks,
        });
    }
    // A generated dataset models UCS 8.5's two data sources (every fourth interaction archived).
    let dataset = Dataset {
        server: "ucs-sim-generated".to_owned(),
        ucs_version: crate::ucs::UcsVersion::V8_5,
        archive: Some(true),
        select_limit: super::dataset::DEFAULT_SELECT_LIMIT,
        contacts,
        anonymous_services: Vec::new(),
    };
    let error = |source| GenerateError::Write { path: options.out.clone(), source };
    let mut out = std::io::BufWriter::new(std::fs::File::create(&options.out).map_err(error)?);
    serde_json::to_writer(&mut out, &dataset)
        .map_err(|e| GenerateError::Write { path: options.out.clone(), source: e.into() })?;
    out.flush().map_err(error)?;
    Ok(files)
}
