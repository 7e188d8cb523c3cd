//! Export packages: a contact's data as the Genesys export script writes it, in a BagIt bag.
//!
//! A request's export is the bag `<exports>/<request-id>/` (RFC 8493, see [`Bag`]):
//!
//! ```text
//! <exports>/<request-id>/
//!   bagit.txt                 BagIt-Version: 1.0, Tag-File-Character-Encoding: UTF-8
//!   bag-info.txt              Bag-Software-Agent, Bagging-Date, Payload-Oxum, Request-Id
//!   manifest-sha256.txt       "<sha256>  data/<file>" per payload file, sorted by path
//!   tagmanifest-sha256.txt    the digests of the three tag files above
//!   data/contact-<id>.json                    per contact (the seed's names)
//!   data/interactions-for-contact-<id>.json
//!   data/context-services-<id>.json          when the environment has Context Services
//!   data/<file>.<tag>.json                    a later, different export of the same contact,
//!                                             beside the first (tag `run-<run>`)
//!   receipt.json, receipt-<run>.json          the cumulative receipt and each run's own
//!   plans/plan-<plan-id>.json                 each plan run against the bag
//!   approvals/plan-<plan-id>.approval.<by>.json   the approvals it ran with
//!   data/index.html                           the same for the data subject to read, and
//!   data/attachments/<id>/<attachment-id>.<ext>   each attachment decoded (see [`write_index`])
//! ```
//!
//! The receipts, plans and approvals are tag files ([`Bag::keep`], [`Bag::replace`]): the tag
//! manifest lists each, so validation covers them. A verified export is never replaced by a
//! different one ([`export_contact`], [`ContactExport::beside`]).
//!
//! No personal data is in the tag files; file names hold contact and attachment ids only, and
//! only after the id matched the id pattern (they are built from [`ContactId`] and
//! [`AttachmentId`](crate::ucs::AttachmentId), never from text).
//!
//! # `contact-<id>.json`
//!
//! ```json
//! {"contactId":"0001SaD2PVY4312K","tenantId":101,
//!  "attributes":{"EmailAddress":["jane.doe@company.com"],"FirstName":["Jane"]}}
//! ```
//!
//! Attributes are multi-valued in UCS, so every value is a list.
//!
//! # `interactions-for-contact-<id>.json`
//!
//! ```json
//! {"contactId":"0001SaD2PVY4312K",
//!  "attachments":"inline",
//!  "dataSources":[
//!   {"dataSource":"main","available":true,"interactions":[
//!     {"endDate":"2026-10-02T09:31:00Z","id":"00001a5R8AJ800AB","mediaType":"email",
//!      "modified":"2026-10-02T09:31:00Z","startDate":"2026-10-02T09:14:00Z",
//!      "status":"Stopped","structured":{"Direction":"inbound"},
//!      "subject":"Invoice 2026-0042","text":"Hello, ...","workbin":null,
//!      "attachments":[
//!        {"id":"0000DOC1INVOICE1","mimeType":"application/pdf",
//!         "name":"invoice-2026-0042.pdf","size":608,"content":"JVBERi0xLjQK..."}]}]},
//!   {"dataSource":"archive","available":false,
//!    "reason":"Server: ucs85 Msg: No data source with role 'archive' found","interactions":[]}]}
//! ```
//!
//! - `dataSources` lists the exported sources in the order asked (`main`, `archive`). A source
//!   the deployment does not have is `"available":false` with the server's `reason` (the seed
//!   logs "No interactions found for contact Id X in source archive"); that is not a failure.
//! - `content` is the attachment's bytes in standard base64 with padding, present when the
//!   export inlines attachments (`"attachments":"inline"`); with `"omit"` each attachment has
//!   its metadata only.
//! - `workbin`, `startDate`, `endDate`, `subject` and `text` are `null` when UCS has none;
//!   `structured` is `{}`. An interaction's fields are in key order with `attachments` last (it
//!   is written after them, as it streams); an attachment's metadata is in key order with
//!   `content` last. Timestamps are RFC 3339 in UTC.
//! - Both files are compact JSON (UTF-8) ending with a newline.
//!
//! # `context-services-<id>.json`
//!
//! ```json
//! {"contactId":"0001SaD2PVY4312K",
//!  "profile":{"customer_id":"0001SaD2PVY4312K","first_name":"Jane"},
//!  "services":[{"anonymous":false,"service":{"service_id":"4041","service_type":"order-support"},
//!               "states":[{"state_id":1,"state_type":"collect-order"}],"tasks":[]}]}
//! ```
//!
//! - `profile` is the Context Services profile as `QueryCustomerProfile` answers it (with its
//!   `customer_id`), or `null` when there is none.
//! - `services` (`null` when the environment has no GMS, which serves their API, so they could
//!   not be looked up) are the customer's services and the anonymous services keyed by one of the
//!   contact's phone numbers (`"anonymous":true`), each with every state and task, as Context
//!   Services returns them. Since Context Services 8.5.0 deleting the profile does not delete
//!   them, so the export holds them and the `context-services/delete-profile` step deletes them.
//!
//! # Streaming, durability, verification
//!
//! The interactions file is written as it is read: each interaction's content, then each
//! attachment's bytes encoded to base64 chunk by chunk, straight into a temporary file in
//! `data/` and hashed as written, so memory does not grow with attachment sizes (one chunk and
//! its encoding at a time). Both of a contact's files are written to temporary names and
//! fsynced first, then renamed over their final names and the directory fsynced, then each is
//! re-read from disk and its sha256 and size compared with what was written
//! ([`verify_contact`]); only then are they recorded in the manifest ([`Bag::record`]), which
//! rewrites `manifest-sha256.txt`, `bag-info.txt` and `tagmanifest-sha256.txt` atomically.
//! A failure or a cancelled task at any point before the rename leaves no file under a final
//! name; a temporary left by a crash is removed when the bag is next opened.
//!
//! # Concurrency
//!
//! Contacts may be exported concurrently into one [`Bag`] (clone it): manifest updates are
//! serialised by a mutex inside the bag, each update re-reading the manifest from disk and
//! replacing only the contact's own lines. One process at a time holds a bag (an advisory
//! lock on `bagit.txt`); a second gets [`ExportError::Busy`].

mod bag;
mod html;
mod manifest;
mod payload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

pub use crate::manifest::model::Attachments;
pub use bag::{
    APPROVALS_DIR, Bag, BagProblem, BagReport, ListedExports, ListedFiles, PLANS_DIR, RECEIPT,
    validate_dir,
};
pub use html::{ATTACHMENTS_DIR, INDEX_PATH, IndexReport, Language, write_index};

use crate::ucs::{
    AttachmentMeta, ContactId, DataSource, InteractionListing, InteractionSummary, Ucs, UcsError,
    list_all_interactions,
};
use payload::{Finished, PayloadWriter};

/// What to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// The data sources, in the order they appear in the file (a repeated one counts once).
    pub sources: Vec<DataSource>,
    /// Whether attachments' bytes are inlined (base64) or left out (metadata only).
    pub attachments: Attachments,
    /// Page size for listing interactions.
    pub page_size: u32,
    /// Whether the contact's Context Services data goes into `context-services-<id>.json`.
    pub context_services: bool,
    /// Whether its services can be read (their API is GMS's): when not, the file says
    /// `"services": null` (not looked up), never an empty list it did not check.
    pub context_services_services: bool,
    /// The run exporting (the `seq` of its `run.start` in the audit log): names the files of a
    /// re-export that goes beside an earlier one (`.run-<run>`).
    pub run: Option<u64>,
}

impl Default for ExportOptions {
    /// The data sources of the default UCS (9.1: `main`, its one store), attachments inlined,
    /// pages of 100. For UCS 8.5's two data sources (the seed's export), use
    /// [`ExportOptions::for_version`].
    fn default() -> Self {
        Self::for_version(crate::environment::UcsVersion::default())
    }
}

impl ExportOptions {
    /// Every data source `version` really has (9.x: `main` only, never a second pass over the
    /// same store; 8.5: `main` then `archive`), attachments inlined, pages of 100.
    pub fn for_version(version: crate::environment::UcsVersion) -> Self {
        Self {
            sources: version.data_sources().to_vec(),
            attachments: Attachments::Inline,
            page_size: 100,
            context_services: false,
            context_services_services: false,
            run: None,
        }
    }
}

impl ExportOptions {
    /// The options a plan's export step records (`dataSources`, `attachments`), with the
    /// default page size. A plan with any other value is refused when it is read.
    pub fn from_plan(info: &crate::plan::ExportInfo) -> Self {
        Self {
            sources: info.data_sources.clone(),
            attachments: info.attachments,
            context_services: info.context_services,
            context_services_services: info.context_services,
            ..Self::default()
        }
    }
}

/// Which of a contact's two payload files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// `contact-<id>.json`.
    Contact,
    /// `interactions-for-contact-<id>.json`.
    Interactions,
    /// `context-services-<id>.json`.
    ContextServices,
}

impl PayloadKind {
    /// Every kind, in the order of a contact's files.
    pub const ALL: [PayloadKind; 3] =
        [PayloadKind::Contact, PayloadKind::Interactions, PayloadKind::ContextServices];

    /// The file's name for `contact` (the seed's names).
    pub fn file_name(self, contact: &ContactId) -> String {
        format!("{}.json", self.stem(contact))
    }

    /// The file's name for `contact` in a re-export kept beside the first one:
    /// `<name>.<tag>.json` (`contact-<id>.run-12.json`); the seed's name without a tag.
    pub fn file_name_beside(self, contact: &ContactId, tag: Option<&Tag>) -> String {
        match tag {
            None => self.file_name(contact),
            Some(tag) => format!("{}.{tag}.json", self.stem(contact)),
        }
    }

    fn stem(self, contact: &ContactId) -> String {
        match self {
            PayloadKind::Contact => format!("contact-{contact}"),
            PayloadKind::Interactions => format!("interactions-for-contact-{contact}"),
            PayloadKind::ContextServices => format!("context-services-{contact}"),
        }
    }
}

/// The tag of a re-export's files (`run-12`): `[a-z0-9-]`, 1 to 32 characters, starting with
/// a letter, so it can name a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    /// Validates `value`.
    ///
    /// # Errors
    /// [`ExportError::InvalidTag`] for a value that cannot name a file.
    pub fn new(value: impl Into<String>) -> Result<Self, ExportError> {
        let value = value.into();
        let ok = (1..=32).contains(&value.len())
            && value.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok { Ok(Self(value)) } else { Err(ExportError::InvalidTag) }
    }

    /// The tag of run `run`'s re-export (`run-<run>`), or its `n`-th variant (`run-<run>-<n>`).
    pub fn for_run(run: Option<u64>, n: u32) -> Self {
        let base = match run {
            Some(run) => format!("run-{run}"),
            None => "re-export".to_owned(),
        };
        Self(if n <= 1 { base } else { format!("{base}-{n}") })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Tag {
    type Error = ExportError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Tag> for String {
    fn from(tag: Tag) -> Self {
        tag.0
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One verified payload file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedFile {
    /// Which file.
    pub kind: PayloadKind,
    /// Its path relative to the bag (`data/...`), for people; code rebuilds it from the kind
    /// and the contact id.
    pub path: String,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What one data source gave for a contact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceExport {
    /// `false` when the deployment has no data source with this role.
    pub available: bool,
    /// Why it is unavailable (the server's reason; no personal data).
    pub reason: Option<String>,
    /// Interactions exported.
    pub interactions: u64,
    /// Attachments exported (metadata, and bytes when inlined).
    pub attachments: u64,
    /// Attachment bytes inlined (0 when attachments are omitted), as the plan counts them.
    pub bytes: u64,
}

/// A contact's export: its verified files and what each data source gave. Serialisable, so
/// the executor can record it in the audit trail and hand it back to [`verify_contact`] on
/// resume. Holds ids, digests and counts only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactExport {
    /// The contact.
    pub contact: ContactId,
    /// Its files: the contact file, the interactions file, then the Context Services file
    /// when it was exported.
    pub files: Vec<ExportedFile>,
    /// Per exported data source.
    pub sources: BTreeMap<DataSource, SourceExport>,
    /// When the bag held an earlier, different export of the contact: the tag its files were
    /// written beside it under (`contact-<id>.<tag>.json`); `None` for the seed's names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beside: Option<Tag>,
}

/// An export that failed. Messages hold paths (request and contact ids), operations, digests
/// and counts, never personal data.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The request id cannot name a folder.
    #[error("the request id cannot name an export folder: {reason}")]
    InvalidRequestId {
        /// Why.
        reason: &'static str,
    },
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`create`, `write`, `fsync`, `rename`, `read`, ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The connector failed.
    #[error("export: {0}")]
    Ucs(#[from] UcsError),
    /// A file on disk is not what was written (or recorded).
    #[error(
        "{} does not verify: expected sha256 {expected} ({expected_size} bytes), found {actual} \
         ({actual_size} bytes)", path.display()
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The recorded digest.
        expected: String,
        /// The digest on disk.
        actual: String,
        /// The recorded size.
        expected_size: u64,
        /// The size on disk.
        actual_size: u64,
    },
    /// A recorded export does not describe this contact's files.
    #[error("the recorded export of {contact} does not list its {kind:?} file as {path}")]
    NotThisExport {
        /// The contact.
        contact: ContactId,
        /// The file expected.
        kind: PayloadKind,
        /// Where it must be.
        path: String,
    },
    /// An attachment's bytes did not match its announced size.
    #[error("attachment {attachment} announced {expected} bytes and delivered {actual}")]
    AttachmentSize {
        /// The attachment id.
        attachment: String,
        /// The size in its metadata.
        expected: u64,
        /// The bytes received.
        actual: u64,
    },
    /// The bag is held by another process (or another opener in this one).
    #[error("the export bag {} is in use by another process", bag.display())]
    Busy {
        /// The bag.
        bag: PathBuf,
    },
    /// The bag does not validate.
    #[error("the export bag {} is not valid: {}", bag.display(), list(problems))]
    InvalidBag {
        /// The bag.
        bag: PathBuf,
        /// Everything wrong with it.
        problems: Vec<BagProblem>,
    },
    /// A payload file of the bag is not what an export writes (the readable index is built
    /// from it).
    #[error("{} cannot be read as an export file: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What is wrong (no content).
        reason: &'static str,
    },
    /// A value could not be encoded as JSON (a bug).
    #[error("a value could not be encoded as JSON")]
    Encoding,
    /// A re-export's tag that cannot name a file.
    #[error("a re-export tag is 1 to 32 characters of [a-z0-9-], starting with a letter")]
    InvalidTag,
    /// A file in the bag that is not an interactions file this tool wrote.
    #[error("{} is not an export file this tool wrote", path.display())]
    NotAnExport {
        /// The file.
        path: PathBuf,
    },
    /// A blocking file task panicked or was cancelled.
    #[error("a file task of the export failed")]
    Task,
}

fn list(problems: &[BagProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl ExportError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        ExportError::Io { action, path: path.to_owned(), source }
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ExportError> + Send + 'static,
) -> Result<T, ExportError> {
    tokio::task::spawn_blocking(work).await.map_err(|_| ExportError::Task)?
}

/// Exports `contact` into `bag`: writes both files durably, verifies them against their
/// checksums, records them in the manifest, and returns what was written. Exporting a contact
/// the bag already holds never replaces that export with a different one: the same bytes are
/// written over it (atomically), different ones beside it as `<file>.<tag>.json`
/// ([`ContactExport::beside`], the tag `run-<options.run>`), and both stay listed.
///
/// # Errors
/// A connector error (nothing is left under the final names, the manifest is unchanged), an
/// I/O error, an attachment whose bytes do not match its size, or a verification mismatch.
pub async fn export_contact<U: Ucs + ?Sized>(
    ucs: &U,
    bag: &Bag,
    contact: &ContactId,
    options: &ExportOptions,
) -> Result<ContactExport, ExportError> {
    let found = ucs.get_contact(contact).await?;
    let contact_json = serde_json::json!({
        "contactId": found.id,
        "tenantId": found.tenant,
        "attributes": found.attributes,
    });
    let mut contact_bytes = serde_json::to_vec(&contact_json).map_err(|_| ExportError::Encoding)?;
    contact_bytes.push(b'\n');
    let contact_file = Finished::in_memory(contact_bytes);
    let context_file = if options.context_services {
        Some(Finished::in_memory(
            context_services_json(ucs, &found, options.context_services_services).await?,
        ))
    } else {
        None
    };
    let interactions_path = bag.payload_path(PayloadKind::Interactions, contact);
    let (interactions_file, sources) =
        write_interactions(ucs, &interactions_path, contact, options).await?;

    // Every file is complete: in memory, or (a large interactions file) fsynced under its
    // temporary name.
    let mut files = vec![(PayloadKind::Contact, contact_file)];
    files.push((PayloadKind::Interactions, interactions_file));
    if let Some(context_file) = context_file {
        files.push((PayloadKind::ContextServices, context_file));
    }
    // One blocking task (the manifest lookup reads the file when the contact is listed
    // already) chooses the files' names, writes and fsyncs them, renames them into place,
    // makes the renames durable, re-reads and verifies them, and records them in the manifest.
    let (bag_for_task, contact_for_task, run) = (bag.clone(), contact.clone(), options.run);
    let export = blocking(move || {
        let (bag, contact) = (bag_for_task, contact_for_task);
        let tag = choose_tag(&bag, &contact, &files, run)?;
        let data_dir = bag.data_dir();
        let mut staged = Vec::with_capacity(files.len());
        for (kind, file) in files {
            let path = data_dir.join(kind.file_name_beside(&contact, tag.as_ref()));
            staged.push((kind, file.stage(&path)?, path));
        }
        let mut written = Vec::with_capacity(staged.len());
        for (kind, file, path) in staged {
            // Identical bytes go over the export they equal (which heals a file damaged on
            // disk); different ones never do: they have their own names.
            let done = file.commit(&path)?;
            written.push(ExportedFile {
                kind,
                path: Bag::relative_path_beside(kind, &contact, tag.as_ref()),
                sha256: done.sha256,
                size: done.size,
            });
        }
        crate::durable::sync_dir(&data_dir).map_err(|e| ExportError::io("fsync", &data_dir, e))?;
        let export = ContactExport { contact, files: written, sources, beside: tag };
        verify_contact(&bag, &export)?;
        bag.record(&export)?;
        Ok(export)
    })
    .await?;
    let totals = export
        .sources
        .values()
        .fold((0, 0, 0), |(i, a, b), s| (i + s.interactions, a + s.attachments, b + s.bytes));
    tracing::info!(
        request = bag.request_id(),
        contact = %contact,
        interactions = totals.0,
        attachments = totals.1,
        bytes = totals.2,
        "contact exported and verified"
    );
    Ok(export)
}

/// The tag of a new export of `contact` whose files are `files`: none for the first export;
/// a verified export already in the bag is never replaced by a different one: the same bytes
/// again go over the export they equal (its tag), different ones beside it, under the run's
/// next free tag.
fn choose_tag(
    bag: &Bag,
    contact: &ContactId,
    files: &[(PayloadKind, Finished)],
    run: Option<u64>,
) -> Result<Option<Tag>, ExportError> {
    let earlier = bag.listed_exports(contact)?;
    let same = earlier.iter().find(|(_, listed)| {
        listed.len() == files.len()
            && files.iter().all(|(kind, file)| {
                listed.get(kind).is_some_and(|(_, sha, size)| {
                    *sha == file.written().sha256 && *size == file.written().size
                })
            })
    });
    let tag = match same {
        Some((tag, _)) => tag.clone(),
        None if earlier.is_empty() => return Ok(None),
        None => {
            let mut n = 1;
            while earlier.contains_key(&Some(Tag::for_run(run, n))) {
                n += 1;
            }
            Some(Tag::for_run(run, n))
        }
    };
    if let Some(tag) = &tag {
        tracing::info!(
            request = bag.request_id(),
            contact = %contact,
            tag = %tag,
            identical = same.is_some(),
            "the bag holds an earlier export of the contact: kept, and this one beside it"
        );
    }
    Ok(tag)
}

/// Re-reads a contact's files from disk and checks each against its recorded sha256 and size.
/// The paths are rebuilt from the contact id; the export must list the contact and
/// interactions files, and its Context Services file is checked when listed.
///
/// # Errors
/// [`ExportError::Mismatch`] naming the file; [`ExportError::Io`] when a file is missing or
/// unreadable; [`ExportError::NotThisExport`] when the record does not list both files.
pub fn verify_contact(bag: &Bag, expected: &ContactExport) -> Result<(), ExportError> {
    let mut kinds = vec![PayloadKind::Contact, PayloadKind::Interactions];
    if expected.files.iter().any(|f| f.kind == PayloadKind::ContextServices) {
        kinds.push(PayloadKind::ContextServices);
    }
    let tag = expected.beside.as_ref();
    for kind in kinds {
        let relative = Bag::relative_path_beside(kind, &expected.contact, tag);
        let Some(file) = expected.files.iter().find(|f| f.kind == kind && f.path == relative)
        else {
            return Err(ExportError::NotThisExport {
                contact: expected.contact.clone(),
                kind,
                path: relative,
            });
        };
        let path = bag.data_dir().join(kind.file_name_beside(&expected.contact, tag));
        let found = payload::measure(&path)?;
        if found.sha256 != file.sha256 || found.size != file.size {
            return Err(ExportError::Mismatch {
                path,
                expected: file.sha256.clone(),
                actual: found.sha256,
                expected_size: file.size,
                actual_size: found.size,
            });
        }
    }
    tracing::debug!(request = bag.request_id(), contact = %expected.contact, "export verified");
    Ok(())
}

/// What an exported interactions file holds per data source, read without its contents: the
/// interaction ids and the number of attachments. No personal data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportedIds {
    /// Whether the source was available when exported.
    pub available: bool,
    /// The interactions exported.
    pub interactions: std::collections::BTreeSet<String>,
    /// The attachments exported.
    pub attachments: u64,
}

/// Reads the ids in the interactions file of the export of `contact` tagged `tag` (`None`: the
/// seed's name). Streamed: attachments' base64 is skipped as it is read, never held, so memory
/// does not grow with the file.
///
/// # Errors
/// The file cannot be read, or is not an interactions file.
pub fn exported_ids(
    bag: &Bag,
    contact: &ContactId,
    tag: Option<&Tag>,
) -> Result<BTreeMap<DataSource, ExportedIds>, ExportError> {
    use serde::de::IgnoredAny;
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct File {
        data_sources: Vec<Source>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Source {
        data_source: String,
        available: bool,
        interactions: Vec<Interaction>,
    }
    #[derive(Deserialize)]
    struct Interaction {
        id: String,
        #[serde(default)]
        attachments: Vec<IgnoredAny>,
    }
    let path = bag.data_dir().join(PayloadKind::Interactions.file_name_beside(contact, tag));
    let file = std::fs::File::open(&path).map_err(|e| ExportError::io("open", &path, e))?;
    let parsed: File = serde_json::from_reader(std::io::BufReader::with_capacity(256 * 1024, file))
        .map_err(|_| ExportError::NotAnExport { path: path.clone() })?;
    let mut out = BTreeMap::new();
    for source in parsed.data_sources {
        let Some(kind) = crate::ucs::wire::data_source_from_name(&source.data_source) else {
            return Err(ExportError::NotAnExport { path });
        };
        let ids = ExportedIds {
            available: source.available,
            attachments: source.interactions.iter().map(|i| i.attachments.len() as u64).sum(),
            interactions: source.interactions.into_iter().map(|i| i.id).collect(),
        };
        out.insert(kind, ids);
    }
    Ok(out)
}

/// The contact's Context Services data as one JSON document (see the module docs): its
/// profile, its services and the anonymous services keyed by its phone numbers, each with
/// every state and task. Small (no attachments), so built in memory.
async fn context_services_json<U: Ucs + ?Sized>(
    ucs: &U,
    contact: &crate::ucs::Contact,
    with_services: bool,
) -> Result<Vec<u8>, ExportError> {
    let profile = ucs.get_profile(&contact.id).await?.map(|profile| {
        let mut fields = profile.fields;
        fields.insert(
            crate::ucs::wire::context_services::PROFILE_ID_FIELD.to_owned(),
            profile.id.as_str().into(),
        );
        fields
    });
    let services = if with_services {
        let mut services = ucs.list_services(&contact.id).await?;
        for service in ucs.list_anonymous_services(contact).await? {
            if !services.iter().any(|s| s.id == service.id) {
                services.push(service);
            }
        }
        let services: Vec<serde_json::Value> = services
            .into_iter()
            .map(|s| {
                serde_json::json!({
                    "anonymous": s.anonymous,
                    "service": s.service,
                    "states": s.states,
                    "tasks": s.tasks,
                })
            })
            .collect();
        Some(services)
    } else {
        None
    };
    let document = serde_json::json!({
        "contactId": contact.id,
        "profile": profile,
        "services": services,
    });
    let mut bytes = serde_json::to_vec(&document).map_err(|_| ExportError::Encoding)?;
    bytes.push(b'\n');
    tracing::debug!(contact = %contact.id, services = services_count(&document), "context services exported");
    Ok(bytes)
}

fn services_count(document: &serde_json::Value) -> usize {
    document.get("services").and_then(serde_json::Value::as_array).map_or(0, Vec::len)
}

/// Streams the interactions file to a temporary name; returns it staged, with the counts.
async fn write_interactions<U: Ucs + ?Sized>(
    ucs: &U,
    final_path: &Path,
    contact: &ContactId,
    options: &ExportOptions,
) -> Result<(Finished, BTreeMap<DataSource, SourceExport>), ExportError> {
    let inline = options.attachments == Attachments::Inline;
    let mut out = PayloadWriter::create(final_path).await?;
    let mut sources = BTreeMap::new();
    out.write(b"{\"contactId\":").await?;
    out.write_json(contact).await?;
    out.write(if inline { b",\"attachments\":\"inline\"" } else { b",\"attachments\":\"omit\"" })
        .await?;
    out.write(b",\"dataSources\":[").await?;
    // A source asked for twice is exported once, where it first appears.
    let mut wanted: Vec<DataSource> = Vec::with_capacity(options.sources.len());
    for source in &options.sources {
        if !wanted.contains(source) {
            wanted.push(*source);
        }
    }
    for (index, &source) in wanted.iter().enumerate() {
        if index > 0 {
            out.write(b",").await?;
        }
        out.write(b"{\"dataSource\":").await?;
        out.write_json(source.as_str()).await?;
        let mut counts = SourceExport::default();
        match list_all_interactions(ucs, contact, source, options.page_size).await? {
            InteractionListing::SourceUnavailable { reason } => {
                tracing::info!(contact = %contact, source = %source, "data source unavailable");
                out.write(b",\"available\":false,\"reason\":").await?;
                out.write_json(&reason).await?;
                out.write(b",\"interactions\":[]}").await?;
                counts.reason = Some(reason);
            }
            InteractionListing::Found(interactions) => {
                counts.available = true;
                out.write(b",\"available\":true,\"interactions\":[").await?;
                for (index, summary) in interactions.iter().enumerate() {
                    if index > 0 {
                        out.write(b",").await?;
                    }
                    write_interaction(ucs, &mut out, summary, source, inline, &mut counts).await?;
                }
                out.write(b"]}").await?;
            }
        }
        tracing::debug!(
            contact = %contact,
            source = %source,
            interactions = counts.interactions,
            attachments = counts.attachments,
            bytes = counts.bytes,
            "data source exported"
        );
        sources.insert(source, counts);
    }
    out.write(b"]}\n").await?;
    Ok((out.finish_deferred().await?, sources))
}

/// Writes one interaction object: summary fields, content, attachments.
async fn write_interaction<U: Ucs + ?Sized>(
    ucs: &U,
    out: &mut PayloadWriter,
    summary: &InteractionSummary,
    source: DataSource,
    inline: bool,
    counts: &mut SourceExport,
) -> Result<(), ExportError> {
    let content = ucs.get_interaction_content(&summary.id, source).await?;
    let head = serde_json::json!({
        "id": summary.id,
        "mediaType": summary.media_type,
        "status": summary.status,
        "workbin": summary.workbin,
        "startDate": summary.start_date,
        "endDate": summary.end_date,
        "modified": summary.modified,
        "subject": content.subject,
        "text": content.text,
        "structured": content.structured,
    });
    // The head is a closed object: write it without its closing brace and append attachments.
    let mut bytes = serde_json::to_vec(&head).map_err(|_| ExportError::Encoding)?;
    if bytes.pop() != Some(b'}') {
        return Err(ExportError::Encoding);
    }
    out.write(&bytes).await?;
    out.write(b",\"attachments\":[").await?;
    for (index, attachment) in content.attachments.iter().enumerate() {
        if index > 0 {
            out.write(b",").await?;
        }
        write_attachment(ucs, out, attachment, source, inline, counts).await?;
    }
    out.write(b"]}").await?;
    counts.interactions += 1;
    Ok(())
}

/// Writes one attachment object; with `inline`, its bytes streamed as base64.
async fn write_attachment<U: Ucs + ?Sized>(
    ucs: &U,
    out: &mut PayloadWriter,
    attachment: &AttachmentMeta,
    source: DataSource,
    inline: bool,
    counts: &mut SourceExport,
) -> Result<(), ExportError> {
    let meta = serde_json::json!({
        "id": attachment.id,
        "name": attachment.name,
        "mimeType": attachment.mime_type,
        "size": attachment.size,
    });
    let mut bytes = serde_json::to_vec(&meta).map_err(|_| ExportError::Encoding)?;
    if bytes.pop() != Some(b'}') {
        return Err(ExportError::Encoding);
    }
    out.write(&bytes).await?;
    if inline {
        out.write(b",\"content\":\"").await?;
        let mut body = ucs.open_attachment(&attachment.id, source).await?;
        let mut received = 0u64;
        while let Some(chunk) = body.bytes.next().await {
            let chunk = chunk?;
            received += chunk.len() as u64;
            out.write_base64_chunk(&chunk).await?;
        }
        out.finish_base64().await?;
        out.write(b"\"").await?;
        if received != attachment.size {
            return Err(ExportError::AttachmentSize {
                attachment: attachment.id.to_string(),
                expected: attachment.size,
                actual: received,
            });
        }
        counts.bytes += received;
    }
    out.write(b"}").await?;
    counts.attachments += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ExportInfo;

    #[test]
    fn options_come_from_the_plans_export_step() {
        let info = ExportInfo {
            data_sources: vec![DataSource::Archive, DataSource::Main],
            attachments: Attachments::Omit,
            context_services: true,
        };
        let options = ExportOptions::from_plan(&info);
        assert_eq!(options.sources, [DataSource::Archive, DataSource::Main]);
        assert_eq!(options.attachments, Attachments::Omit);
        assert!(options.context_services);
        // A value the plan format does not have is refused when the plan is read.
        let read = |json: &str| serde_json::from_str::<ExportInfo>(json);
        assert!(read(r#"{"dataSources":["main"],"attachments":"inline"}"#).is_ok());
        assert!(read(r#"{"dataSources":["main"],"attachments":"zip"}"#).is_err());
        assert!(read(r#"{"dataSources":["backup"],"attachments":"omit"}"#).is_err());
    }
}
