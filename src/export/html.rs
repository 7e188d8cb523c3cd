//! The export a data subject can read: `data/index.html` beside the seed-format JSON of a bag,
//! with each attachment as a file of its own under `data/attachments/<contact-id>/`.
//!
//! Art. 12(1) GDPR asks for the information of Art. 15 "in a concise, transparent, intelligible
//! and easily accessible form"; the seed's JSON (attachments in base64) is what the Genesys
//! script writes, not something to hand a person. So [`write_index`] renders one plain HTML page
//! per request:
//!
//! - a header saying what the page is (a copy under Art. 15), the request id, the counts, and
//!   where the machine-readable JSON is;
//! - per contact, its attributes, then every interaction of every data source in date order
//!   (date, channel, status, data source, subject, text, structured fields), then its Context
//!   Services data when the bag has it;
//! - each attachment linked to its decoded file (`attachments/<contact-id>/<file>`).
//!
//! # Built from the bag, never from the wire or the logs
//!
//! The page is rendered from the bag's own files, each re-hashed while it is read and compared
//! with the digest the manifest lists: what the page shows is exactly what was exported, and a
//! file that does not verify stops it ([`ExportError::Mismatch`]). It is rewritten whole at the
//! end of every run (a re-run that adds contacts adds them to the page).
//!
//! # Safety of what is shown
//!
//! - Every text from UCS is HTML-escaped (`&`, `<`, `>`, `"`, `'`), in text and in attributes.
//! - No script, no external resource: a `Content-Security-Policy` meta tag allows nothing but
//!   the page's one inline style sheet, by its hash (`default-src 'none'; style-src 'sha256-…'`),
//!   and no form or base URL.
//! - Attachment file names never come from UCS: a file is named after its attachment id (16
//!   letters or digits, validated), else `attachment-<n>`, with an extension taken from the
//!   UCS name only when it is 1 to 8 ASCII letters or digits; an extension a browser would run
//!   or render as active content (`html`, `svg`, `xml`, `js`, …) gets `.txt` appended, so
//!   opening it shows its text. The same id twice in a contact (e.g. in `main` and `archive`)
//!   gets `-2`, `-3`. So a path holds no `..`, no `/`, no control character and nothing personal
//!   (the manifest and the validator's messages name these paths); the UCS name is shown as the
//!   link's text.
//!
//! # Memory
//!
//! The interactions file is read in chunks; each attachment's base64 `content` is decoded as it
//! streams past (by the same streaming decoder that reads UCS `GetDocument` answers,
//! [`DocumentDecoder`]), hashed and written to its file, so memory does not grow with attachment
//! sizes. The rest of the file (ids, subjects, texts) is held while the page is rendered.
//!
//! # Durability
//!
//! Every file is written under a temporary name and fsynced; once all are complete they are
//! renamed into place, re-read and checked against what was written, then recorded in the
//! manifest in one atomic rewrite ([`Bag::record_derived`]), which also drops the lines of
//! attachment files this run no longer produces (those files are removed after).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures_util::stream::{self, StreamExt as _};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use super::payload::{self, PayloadWriter, StagedFile};
use super::{Bag, ExportError, PayloadKind};
use crate::ucs::wire::document::DocumentDecoder;
use crate::ucs::{AttachmentId, ContactId};

/// The page's path in the bag.
pub const INDEX_PATH: &str = "data/index.html";
/// The folder of decoded attachments in the bag (one folder per contact below it).
pub const ATTACHMENTS_DIR: &str = "data/attachments";

/// Size of the chunks the interactions file is read in.
const CHUNK: usize = 64 * 1024;

/// Contacts read at once while the page is written (each holds its view until its turn).
const READ_AT_ONCE: usize = 8;

/// An interactions file up to this size is read whole, with the contact's other files, in one
/// blocking task; a larger one streams in [`CHUNK`]s.
const READ_WHOLE: u64 = 1024 * 1024;

/// The language of the page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Language {
    /// English (the default).
    #[default]
    English,
    /// German.
    German,
}

impl Language {
    /// The language of a BCP 47 tag (`en`, `en-GB`, `de`, `de-AT`, …), by its primary subtag;
    /// `None` for a language the page has no texts in.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next().unwrap_or_default().to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Language::English),
            "de" => Some(Language::German),
            _ => None,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::German => "de",
        }
    }

    fn texts(self) -> &'static Texts {
        match self {
            Language::English => &ENGLISH,
            Language::German => &GERMAN,
        }
    }
}

/// What [`write_index`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexReport {
    /// Contacts shown.
    pub contacts: u64,
    /// Interactions shown.
    pub interactions: u64,
    /// Attachments shown (linked when their bytes were exported).
    pub attachments: u64,
    /// Attachment files written under `data/attachments/`.
    pub attachment_files: u64,
}

/// Writes (or rewrites) `data/index.html` and the decoded attachments of every contact the
/// bag's manifest lists, from the bag's own verified files, and records them in the manifest.
///
/// # Errors
/// [`ExportError::Mismatch`] when a listed file does not match its digest;
/// [`ExportError::Unreadable`] when it is not the JSON an export writes (or an attachment's
/// base64 does not decode); [`ExportError::AttachmentSize`] when an attachment decodes to
/// another size than its metadata says; I/O errors. The bag is left as it was (temporaries are
/// removed), except after the renames, where the manifest is rewritten by the next run.
pub async fn write_index(bag: &Bag, language: Language) -> Result<IndexReport, ExportError> {
    // The contacts, in id order, read from the bag's manifest as the page is written.
    let contacts = bag.listed_contacts()?;

    // Each contact's section is rendered as its files are read, into a scratch file beside
    // the page, and the head's links to its files into a second one (both 0600, removed
    // whatever happens; a crash's are removed with the bag's other `*.tmp.*`): only the counts
    // stay in memory, whatever the batch size. The page is then its head, which gives the
    // counts and links the files, and the sections.
    let index_path = bag.root().join(INDEX_PATH);
    let scratch = Scratch {
        sections: payload::temp_path(&index_path),
        links: payload::temp_path(&index_path),
    };
    let written = write_page(bag, contacts, language, &index_path, &scratch).await;
    let _ = tokio::fs::remove_file(&scratch.sections).await;
    let _ = tokio::fs::remove_file(&scratch.links).await;
    let (totals, staged) = written?;

    let root = bag.root().to_owned();
    let report = IndexReport {
        contacts: totals.contacts,
        interactions: totals.interactions,
        attachments: totals.attachments,
        attachment_files: staged.len().saturating_sub(1) as u64,
    };
    let owned = bag.clone();
    super::blocking(move || commit(&owned, &root, staged)).await?;
    tracing::info!(
        request = bag.request_id(),
        contacts = report.contacts,
        interactions = report.interactions,
        attachments = report.attachments,
        "readable index written"
    );
    Ok(report)
}

/// What the page counts.
#[derive(Debug, Default)]
struct Totals {
    contacts: u64,
    interactions: u64,
    attachments: u64,
}

/// The page's two scratch files: the contacts' sections, and the head's links to their files.
struct Scratch {
    sections: PathBuf,
    links: PathBuf,
}

/// A private scratch file, open for writing and reading back.
async fn scratch_file(path: &Path) -> Result<tokio::fs::File, ExportError> {
    tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(crate::durable::PRIVATE_FILE)
        .open(path)
        .await
        .map_err(|e| ExportError::io("create", path, e))
}

/// Copies what was written to `file` (at `path`) to the end of `writer`.
async fn copy_back(
    file: &mut tokio::fs::File,
    path: &Path,
    writer: &mut PayloadWriter,
    buffer: &mut [u8],
) -> Result<(), ExportError> {
    use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
    file.flush().await.map_err(|e| ExportError::io("write", path, e))?;
    file.rewind().await.map_err(|e| ExportError::io("read", path, e))?;
    loop {
        let read = file.read(buffer).await.map_err(|e| ExportError::io("read", path, e))?;
        let Some(chunk) = buffer.get(..read).filter(|chunk| !chunk.is_empty()) else { break };
        writer.write(chunk).await?;
    }
    Ok(())
}

/// Reads each contact and renders its section into the sections' scratch file and its links
/// into the links' one, then writes the page (head, links, sections, end) to `index_path`'s
/// staged file: the staged files, the page's last.
async fn write_page(
    bag: &Bag,
    contacts: impl Iterator<Item = Result<ContactId, ExportError>>,
    language: Language,
    index_path: &Path,
    scratch: &Scratch,
) -> Result<(Totals, Vec<(PathBuf, StagedFile)>), ExportError> {
    use tokio::io::AsyncWriteExt as _;
    let texts = language.texts();
    let io = |action, source| ExportError::io(action, &scratch.sections, source);
    let mut sections = scratch_file(&scratch.sections).await?;
    let mut links = tokio::io::BufWriter::new(scratch_file(&scratch.links).await?);
    let mut totals = Totals::default();
    let mut staged: Vec<(PathBuf, StagedFile)> = Vec::new();
    let mut section = String::new();
    let mut link = String::new();
    // Whether a link was written: the next is preceded by a comma.
    let mut linked = false;
    // Several contacts are read at once (their files' reads and the staging of their
    // attachments wait on the blocking pool), and rendered in id order as they come.
    let mut views = stream::iter(contacts)
        .map(|contact| async move {
            let contact = contact?;
            let mut staged = Vec::new();
            let view = read_contact(bag, &contact, &mut staged).await?;
            Ok::<_, ExportError>((view, staged))
        })
        .buffered(READ_AT_ONCE);
    while let Some(read) = views.next().await {
        let (view, mut contact_staged) = read?;
        staged.append(&mut contact_staged);
        totals.contacts += 1;
        totals.interactions += view.interactions.len() as u64;
        totals.attachments +=
            view.interactions.iter().map(|i| i.attachments.len() as u64).sum::<u64>();
        section.clear();
        render_contact(&mut section, &view, texts);
        sections.write_all(section.as_bytes()).await.map_err(|e| io("write", e))?;
        link.clear();
        for name in &view.files {
            if linked {
                link.push_str(", ");
            }
            linked = true;
            let _ = write!(link, "<a href=\"{0}\"><code>{0}</code></a>", escape(name));
        }
        links
            .write_all(link.as_bytes())
            .await
            .map_err(|e| ExportError::io("write", &scratch.links, e))?;
    }
    // Its buffer is lost by `into_inner`: written out first.
    links.flush().await.map_err(|e| ExportError::io("write", &scratch.links, e))?;
    let mut links = links.into_inner();

    let mut writer = PayloadWriter::create(index_path).await?;
    let (head, tail) = render_head(bag.request_id(), &totals, language);
    writer.write(head.as_bytes()).await?;
    let mut buffer = vec![0; CHUNK];
    copy_back(&mut links, &scratch.links, &mut writer, &mut buffer).await?;
    writer.write(tail.as_bytes()).await?;
    copy_back(&mut sections, &scratch.sections, &mut writer, &mut buffer).await?;
    writer.write(PAGE_END.as_bytes()).await?;
    staged.push((index_path.to_owned(), writer.finish().await?));
    Ok((totals, staged))
}

/// Renames every staged file into place, re-reads each, records them all, and removes the
/// attachment files a previous run wrote that this one did not.
fn commit(bag: &Bag, root: &Path, staged: Vec<(PathBuf, StagedFile)>) -> Result<(), ExportError> {
    let mut dirs = BTreeSet::new();
    let mut files = Vec::with_capacity(staged.len());
    for (path, file) in staged {
        let written = file.commit(&path)?;
        let found = payload::measure(&path)?;
        if found != written {
            return Err(ExportError::Mismatch {
                path,
                expected: written.sha256,
                actual: found.sha256,
                expected_size: written.size,
                actual_size: found.size,
            });
        }
        if let Some(dir) = path.parent() {
            dirs.insert(dir.to_owned());
        }
        let relative = path
            .strip_prefix(root)
            .ok()
            .and_then(Path::to_str)
            .map(str::to_owned)
            .ok_or(ExportError::Encoding)?;
        files.push((relative, written.sha256, written.size));
    }
    for dir in &dirs {
        crate::durable::sync_dir(dir).map_err(|e| ExportError::io("fsync", dir, e))?;
    }
    let produced: BTreeSet<String> = files.iter().map(|(path, _, _)| path.clone()).collect();
    bag.record_derived(files, is_derived)?;
    // Files of an earlier run this one did not produce (a contact exported again with fewer
    // attachments, a temporary a crash left): unlisted now, so removed.
    let attachments = root.join(ATTACHMENTS_DIR);
    for (relative, path) in files_under(&attachments, ATTACHMENTS_DIR)? {
        if !produced.contains(&relative) {
            std::fs::remove_file(&path).map_err(|e| ExportError::io("remove", &path, e))?;
        }
    }
    Ok(())
}

/// Whether a payload path is one [`write_index`] owns (the page and the decoded attachments).
fn is_derived(path: &str) -> bool {
    path == INDEX_PATH
        || path.strip_prefix(ATTACHMENTS_DIR).is_some_and(|rest| rest.starts_with('/'))
}

/// Every file under `dir` (recursively), as (bag-relative path, path).
fn files_under(dir: &Path, relative: &str) -> Result<Vec<(String, PathBuf)>, ExportError> {
    let mut found = Vec::new();
    let mut pending = vec![(dir.to_owned(), relative.to_owned())];
    while let Some((dir, relative)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ExportError::io("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| ExportError::io("list", &dir, e))?;
            let name = format!("{relative}/{}", entry.file_name().to_string_lossy());
            let kind = entry.file_type().map_err(|e| ExportError::io("stat", &entry.path(), e))?;
            if kind.is_dir() {
                pending.push((entry.path(), name));
            } else {
                found.push((name, entry.path()));
            }
        }
    }
    Ok(found)
}

/// One contact, as the page shows it.
#[derive(Debug)]
struct ContactView {
    id: ContactId,
    attributes: Vec<(String, Vec<String>)>,
    interactions: Vec<InteractionView>,
    /// Data sources that were not available, with the server's reason.
    unavailable: Vec<(String, String)>,
    /// Whether attachments' bytes were exported (`"attachments":"inline"`).
    inline: bool,
    context_services: Option<Value>,
    files: Vec<String>,
}

#[derive(Debug)]
struct InteractionView {
    source: String,
    date: Option<String>,
    media_type: Option<String>,
    status: Option<String>,
    subject: Option<String>,
    text: Option<String>,
    structured: Vec<(String, String)>,
    attachments: Vec<AttachmentView>,
}

#[derive(Debug)]
struct AttachmentView {
    name: String,
    mime_type: Option<String>,
    size: Option<u64>,
    /// The file, relative to the page (`attachments/<contact>/<file>`), when exported.
    href: Option<String>,
}

/// Reads one contact's verified files; stages its decoded attachments.
/// How late a re-export's tag is: `run-<run>` and `run-<run>-<n>` by run, then variant;
/// `re-export[-<n>]` (a run without an id) before any run's.
fn recency(tag: &crate::export::Tag) -> (u64, u64) {
    let text = tag.as_str();
    let (run, rest) = match text.strip_prefix("run-") {
        Some(rest) => {
            let mut parts = rest.splitn(2, '-');
            (parts.next().and_then(|r| r.parse().ok()).unwrap_or(0), parts.next())
        }
        None => (0, text.strip_prefix("re-export").and_then(|r| r.strip_prefix('-'))),
    };
    (run, rest.and_then(|n| n.parse().ok()).unwrap_or(1))
}

async fn read_contact(
    bag: &Bag,
    contact: &ContactId,
    staged: &mut Vec<(PathBuf, StagedFile)>,
) -> Result<ContactView, ExportError> {
    let mut files = Vec::new();
    // The page shows the contact's latest export: a re-export kept beside the first holds the
    // data as it was later (the first stays in the bag, and is listed, as evidence).
    let exports = bag.listed_exports(contact)?;
    // The manifest lines of this contact's files (every export of it), to check them against:
    // the contact's own, not a copy of the whole manifest per page.
    let listed: BTreeMap<String, (String, u64)> = exports
        .values()
        .flat_map(|files| files.values())
        .map(|(path, digest, size)| (path.clone(), (digest.clone(), *size)))
        .collect();
    let listed = &listed;
    let latest = exports
        .iter()
        .max_by_key(|(tag, _)| tag.as_ref().map(recency))
        .map(|(_, files)| files.clone())
        .unwrap_or_default();
    let file = |kind: PayloadKind| {
        latest
            .get(&kind)
            .map(|(relative, _, _)| relative.clone())
            .unwrap_or_else(|| Bag::relative_path(kind, contact))
    };
    let name_of = |relative: &str| relative.rsplit('/').next().unwrap_or(relative).to_owned();
    let contact_relative = file(PayloadKind::Contact);
    let contact_path = bag.root().join(&contact_relative);
    let context_relative = file(PayloadKind::ContextServices);
    let context_path = bag.root().join(&context_relative);
    let relative = file(PayloadKind::Interactions);
    let path = bag.root().join(&relative);
    // The contact's files are read in one blocking task (a hand-off each cost more than the
    // reading of a small file): the contact's, its Context Services one when listed, and its
    // interactions when listed and at most `READ_WHOLE` bytes (a larger one streams below).
    // Each read's error is reported where that file is used, in the order they are used.
    let (contact_bytes, context_bytes, interactions_bytes) = {
        let contact_path = contact_path.clone();
        let context_path = listed.contains_key(&context_relative).then(|| context_path.clone());
        let interactions_path =
            listed.get(&relative).filter(|(_, size)| *size <= READ_WHOLE).map(|_| path.clone());
        super::blocking(move || {
            let read =
                |path: &Path| std::fs::read(path).map_err(|e| ExportError::io("read", path, e));
            // Opened, then read: its errors say which, as the streamed read's do.
            let interactions = interactions_path.map(|path| -> Result<Vec<u8>, ExportError> {
                let mut file =
                    std::fs::File::open(&path).map_err(|e| ExportError::io("open", &path, e))?;
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut file, &mut bytes)
                    .map_err(|e| ExportError::io("read", &path, e))?;
                Ok(bytes)
            });
            Ok((read(&contact_path), context_path.map(|path| read(&path)), interactions))
        })
        .await?
    };
    let contact_json = verified_json(&contact_path, &contact_bytes?, listed, &contact_relative)?;
    files.push(name_of(&contact_relative));
    let attributes = contact_json
        .get("attributes")
        .and_then(Value::as_object)
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, values)| {
                    let values = match values {
                        Value::Array(items) => items.iter().map(scalar_text).collect(),
                        other => vec![scalar_text(other)],
                    };
                    (name.clone(), values)
                })
                .collect()
        })
        .unwrap_or_default();

    let context_services = match context_bytes {
        Some(bytes) => {
            files.push(name_of(&context_relative));
            Some(verified_json(&context_path, &bytes?, listed, &context_relative)?)
        }
        None => None,
    };

    let Some((digest, size)) = listed.get(&relative) else {
        return Ok(ContactView {
            id: contact.clone(),
            attributes,
            interactions: Vec::new(),
            unavailable: Vec::new(),
            inline: false,
            context_services,
            files,
        });
    };
    files.push(name_of(&relative));
    // Made by the split when the first attachment comes: a contact without one has no folder
    // (a folder per contact cost a new inode each, for nothing, on every run).
    let dir = bag.root().join(ATTACHMENTS_DIR).join(contact.as_str());
    let input = match interactions_bytes {
        Some(bytes) => Input::Bytes { bytes: bytes?, at: 0 },
        None => Input::File(
            tokio::fs::File::open(&path).await.map_err(|e| ExportError::io("open", &path, e))?,
        ),
    };
    let (skeleton, decoded) = split_interactions(&path, input, &dir, digest, *size).await?;
    let document: Value = serde_json::from_slice(&skeleton)
        .map_err(|_| ExportError::Unreadable { path: path.clone(), reason: "not JSON" })?;
    let mut decoded: Vec<Option<Decoded>> = decoded.into_iter().map(Some).collect();
    let inline = document.get("attachments").and_then(Value::as_str) == Some("inline");
    let mut names = FileNames::default();
    let mut interactions = Vec::new();
    let mut unavailable = Vec::new();
    for source in document.get("dataSources").and_then(Value::as_array).into_iter().flatten() {
        let source_name = source.get("dataSource").map(scalar_text).unwrap_or_default();
        if source.get("available").and_then(Value::as_bool) == Some(false) {
            let reason = source.get("reason").map(scalar_text).unwrap_or_default();
            unavailable.push((source_name.clone(), reason));
        }
        for interaction in
            source.get("interactions").and_then(Value::as_array).into_iter().flatten()
        {
            let mut attachments = Vec::new();
            for attachment in
                interaction.get("attachments").and_then(Value::as_array).into_iter().flatten()
            {
                let name = attachment.get("name").map(scalar_text).unwrap_or_default();
                let size = attachment.get("size").and_then(Value::as_u64);
                let ordinal = attachment.get("content").and_then(Value::as_u64);
                let found = ordinal
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(|n| decoded.get_mut(n))
                    .and_then(Option::take);
                let href = match found {
                    Some(file) => {
                        if size.is_some_and(|size| size != file.staged.written.size) {
                            return Err(ExportError::AttachmentSize {
                                attachment: attachment
                                    .get("id")
                                    .map(scalar_text)
                                    .unwrap_or_default(),
                                expected: size.unwrap_or_default(),
                                actual: file.staged.written.size,
                            });
                        }
                        let id = attachment.get("id").and_then(Value::as_str);
                        let file_name = names.name(id, &name);
                        staged.push((dir.join(&file_name), file.staged));
                        Some(format!("attachments/{contact}/{file_name}"))
                    }
                    None => None,
                };
                attachments.push(AttachmentView {
                    name,
                    mime_type: attachment
                        .get("mimeType")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    size,
                    href,
                });
            }
            let text_of =
                |key: &str| interaction.get(key).and_then(Value::as_str).map(str::to_owned);
            let date =
                text_of("startDate").or_else(|| text_of("endDate")).or_else(|| text_of("modified"));
            let structured = interaction
                .get("structured")
                .and_then(Value::as_object)
                .map(|fields| fields.iter().map(|(k, v)| (k.clone(), scalar_text(v))).collect())
                .unwrap_or_default();
            interactions.push(InteractionView {
                source: source_name.clone(),
                date,
                media_type: text_of("mediaType"),
                status: text_of("status"),
                subject: text_of("subject"),
                text: text_of("text"),
                structured,
                attachments,
            });
        }
    }
    // In date order (RFC 3339 in UTC sorts as text); undated ones last, each in file order.
    interactions.sort_by(|a, b| match (&a.date, &b.date) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    Ok(ContactView {
        id: contact.clone(),
        attributes,
        interactions,
        unavailable,
        inline,
        context_services,
        files,
    })
}

/// A small file of the bag, read whole, checked against its manifest line, parsed.
fn verified_json(
    path: &Path,
    bytes: &[u8],
    listed: &BTreeMap<String, (String, u64)>,
    relative: &str,
) -> Result<Value, ExportError> {
    let digest = crate::canonical::sha256_hex(bytes);
    let (expected, expected_size) = listed.get(relative).cloned().unwrap_or_default();
    if digest != expected {
        return Err(ExportError::Mismatch {
            path: path.to_owned(),
            expected,
            actual: digest,
            expected_size,
            actual_size: bytes.len() as u64,
        });
    }
    serde_json::from_slice(bytes)
        .map_err(|_| ExportError::Unreadable { path: path.to_owned(), reason: "not JSON" })
}

/// An interactions file as the page reads it: read whole already (a small one), or open.
enum Input {
    Bytes { bytes: Vec<u8>, at: usize },
    File(tokio::fs::File),
}

impl Input {
    /// The next chunk of at most `buffer`'s length; empty at the end.
    async fn read<'a>(&'a mut self, buffer: &'a mut [u8]) -> std::io::Result<&'a [u8]> {
        match self {
            Input::Bytes { bytes, at } => {
                let start = (*at).min(bytes.len());
                let end = start.saturating_add(buffer.len()).min(bytes.len());
                *at = end;
                Ok(bytes.get(start..end).unwrap_or_default())
            }
            Input::File(file) => {
                let read = file.read(buffer).await?;
                Ok(buffer.get(..read).unwrap_or_default())
            }
        }
    }
}

/// One attachment's decoded bytes, staged under a temporary name.
#[derive(Debug)]
struct Decoded {
    staged: StagedFile,
}

/// Reads the interactions file in chunks, hashing it: returns the file with every attachment's
/// `content` string replaced by its ordinal (a number), and the decoded attachments in that
/// order, staged in `dir`. Fails when the file's digest or size is not the listed one.
async fn split_interactions(
    path: &Path,
    mut input: Input,
    dir: &Path,
    digest: &str,
    size: u64,
) -> Result<(Vec<u8>, Vec<Decoded>), ExportError> {
    let unreadable = |reason| ExportError::Unreadable { path: path.to_owned(), reason };
    let mut hasher = Sha256::new();
    let mut read_size = 0u64;
    let mut splitter = Splitter::default();
    let mut buffer = vec![0; CHUNK];
    let mut events = Vec::new();
    let mut decoded = Vec::new();
    let mut current: Option<(DocumentDecoder, PayloadWriter)> = None;
    let mut out = Vec::with_capacity(CHUNK);
    loop {
        let chunk = input.read(&mut buffer).await.map_err(|e| ExportError::io("read", path, e))?;
        if chunk.is_empty() {
            break;
        }
        let read = chunk.len();
        hasher.update(chunk);
        read_size += read as u64;
        events.clear();
        splitter.feed(chunk, &mut events);
        for event in &events {
            match event {
                Event::Begin => {
                    // The decoder reads a JSON object; the content string is fed to it as the
                    // value of its one field, escapes and all, exactly as it is in the file.
                    let mut decoder = DocumentDecoder::new(&["c"]);
                    out.clear();
                    decoder.feed(b"{\"c\":\"", &mut out).map_err(|_| unreadable("bad base64"))?;
                    if decoded.is_empty() {
                        crate::durable::create_private_dir_all(dir)
                            .map_err(|e| ExportError::io("create", dir, e))?;
                    }
                    let name = format!("attachment-{}", decoded.len());
                    current = Some((decoder, PayloadWriter::create(&dir.join(name)).await?));
                }
                Event::Bytes(range) => {
                    let Some((decoder, writer)) = current.as_mut() else {
                        return Err(unreadable("content outside an attachment"));
                    };
                    out.clear();
                    let bytes = chunk.get(range.clone()).unwrap_or_default();
                    decoder.feed(bytes, &mut out).map_err(|_| unreadable("bad base64"))?;
                    writer.write(&out).await?;
                }
                Event::End => {
                    let Some((mut decoder, mut writer)) = current.take() else {
                        return Err(unreadable("content outside an attachment"));
                    };
                    out.clear();
                    decoder.feed(b"\"}", &mut out).map_err(|_| unreadable("bad base64"))?;
                    decoder.finish().map_err(|_| unreadable("bad base64"))?;
                    writer.write(&out).await?;
                    decoded.push(Decoded { staged: writer.finish().await? });
                }
            }
        }
    }
    let actual = crate::canonical::hex(&hasher.finalize());
    if actual != digest || read_size != size {
        return Err(ExportError::Mismatch {
            path: path.to_owned(),
            expected: digest.to_owned(),
            actual,
            expected_size: size,
            actual_size: read_size,
        });
    }
    if current.is_some() || splitter.in_string {
        return Err(unreadable("it ends in the middle"));
    }
    Ok((splitter.skeleton, decoded))
}

/// What the splitter saw in a chunk: an attachment's content string begins, continues with
/// the chunk's bytes in this range, or ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Begin,
    Bytes(std::ops::Range<usize>),
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// A JSON tokenizer just good enough to find the strings at
/// `dataSources[*].interactions[*].attachments[*].content`: it copies everything else into the
/// skeleton (validated afterwards by parsing it) and reports those strings' bytes as events.
#[derive(Debug, Default)]
struct Splitter {
    /// Open containers, each object with the key it is at (as raw bytes, at most 64).
    stack: Vec<(Container, Vec<u8>)>,
    expect_key: bool,
    in_string: bool,
    in_key: bool,
    capturing: bool,
    escape: bool,
    key: Vec<u8>,
    ordinal: u64,
    skeleton: Vec<u8>,
}

/// The keys on the way to an attachment's content, one per object level.
const CONTENT_PATH: [&[u8]; 4] = [b"dataSources", b"interactions", b"attachments", b"content"];

impl Splitter {
    fn feed(&mut self, chunk: &[u8], events: &mut Vec<Event>) {
        let mut run_start: Option<usize> = None;
        for (at, &byte) in chunk.iter().enumerate() {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if byte == b'\\' {
                    self.escape = true;
                } else if byte == b'"' {
                    self.in_string = false;
                    if self.capturing {
                        if let Some(start) = run_start.take() {
                            events.push(Event::Bytes(start..at));
                        }
                        events.push(Event::End);
                        self.capturing = false;
                        continue;
                    }
                    if self.in_key {
                        self.in_key = false;
                        self.expect_key = false;
                        if let Some((_, key)) = self.stack.last_mut() {
                            key.clone_from(&self.key);
                        }
                    }
                    self.skeleton.push(byte);
                    continue;
                }
                if self.capturing {
                    run_start.get_or_insert(at);
                    continue;
                }
                if self.in_key && self.key.len() < 64 {
                    self.key.push(byte);
                }
                self.skeleton.push(byte);
                continue;
            }
            match byte {
                b'{' => {
                    self.stack.push((Container::Object, Vec::new()));
                    self.expect_key = true;
                }
                b'[' => self.stack.push((Container::Array, Vec::new())),
                b'}' | b']' => {
                    self.stack.pop();
                    self.expect_key = false;
                }
                b',' => {
                    self.expect_key =
                        self.stack.last().is_some_and(|(c, _)| *c == Container::Object);
                }
                b'"' => {
                    self.in_string = true;
                    if self.expect_key {
                        self.in_key = true;
                        self.key.clear();
                    } else if self.at_content() {
                        self.capturing = true;
                        let _ = write!(VecWriter(&mut self.skeleton), "{}", self.ordinal);
                        self.ordinal += 1;
                        events.push(Event::Begin);
                        continue;
                    }
                }
                _ => {}
            }
            self.skeleton.push(byte);
        }
        if let Some(start) = run_start {
            events.push(Event::Bytes(start..chunk.len()));
        }
    }

    /// Whether a value string starting now is an attachment's content.
    fn at_content(&self) -> bool {
        let objects: Vec<&[u8]> = self
            .stack
            .iter()
            .filter(|(c, _)| *c == Container::Object)
            .map(|(_, key)| key.as_slice())
            .collect();
        let arrays = self.stack.iter().filter(|(c, _)| *c == Container::Array).count();
        self.stack.len() == 7 && arrays == 3 && objects == CONTENT_PATH
    }
}

/// `fmt::Write` into a byte vector.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The attachment files of one contact, unique.
#[derive(Debug, Default)]
struct FileNames {
    used: BTreeSet<String>,
    count: u64,
}

/// Extensions a browser would run or render as active content when the file is opened.
const ACTIVE: [&str; 14] = [
    "htm", "html", "xhtml", "xht", "shtml", "svg", "svgz", "xml", "xsl", "xslt", "js", "mjs",
    "mht", "mhtml",
];

impl FileNames {
    /// A safe, unique file name for an attachment with this id and UCS name (see the module's
    /// doc): never a path, never personal.
    fn name(&mut self, id: Option<&str>, ucs_name: &str) -> String {
        self.count += 1;
        let stem = id
            .and_then(|id| AttachmentId::new(id).ok())
            .map_or_else(|| format!("attachment-{}", self.count), |id| id.as_str().to_owned());
        let extension = ucs_name
            .rsplit_once('.')
            .map(|(_, ext)| ext)
            .filter(|ext| {
                (1..=8).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_alphanumeric())
            })
            .map(str::to_ascii_lowercase);
        let suffix = match extension {
            Some(ext) if ACTIVE.contains(&ext.as_str()) => format!(".{ext}.txt"),
            Some(ext) => format!(".{ext}"),
            None => String::new(),
        };
        let mut name = format!("{stem}{suffix}");
        let mut n = 1;
        while self.used.contains(&name) {
            n += 1;
            name = format!("{stem}-{n}{suffix}");
        }
        self.used.insert(name.clone());
        name
    }
}

/// A JSON value as text: a string as it is, anything else as compact JSON.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Escapes text for HTML text and (double- or single-quoted) attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and line ends (e-mails end lines with CR LF,
            // which the browser reads as one) have no business on the page.
            c if c.is_control() && !matches!(c, '\n' | '\r' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The page's one style sheet (its hash is in the CSP).
const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;line-height:1.45;\
max-width:52rem;margin:2rem auto;padding:0 1rem;color:#111;background:#fff}\
h1{font-size:1.6rem;margin-bottom:.3rem}h2{font-size:1.3rem;margin-top:2.5rem;\
border-bottom:2px solid #333;padding-bottom:.2rem}h3{font-size:1.1rem;margin-top:1.5rem}\
h4{font-size:1rem;margin:0 0 .3rem}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}\
th,td{text-align:left;vertical-align:top;padding:.25rem .5rem;border-bottom:1px solid #ddd}\
th{width:30%;font-weight:600}\
.interaction{border:1px solid #ccc;border-radius:4px;padding:.75rem 1rem;margin:.75rem 0;\
break-inside:avoid}\
.meta{color:#444;font-size:.9rem;margin:.2rem 0 .5rem}\
.text{white-space:pre-wrap;overflow-wrap:anywhere;font-family:inherit;background:#f6f6f6;\
padding:.5rem;margin:.5rem 0}\
.none{color:#666;font-style:italic}\
.note{background:#f3f3f3;border-left:4px solid #888;padding:.5rem 1rem}\
code{overflow-wrap:anywhere}\
@media print{body{margin:0;max-width:none}.contact{break-before:page}\
a[href]::after{content:' (' attr(href) ')';font-size:.8rem}}";

/// The page's texts in one language.
#[derive(Debug)]
struct Texts {
    title: &'static str,
    intro: &'static str,
    request: &'static str,
    generated: &'static str,
    contacts: &'static str,
    interactions: &'static str,
    attachments: &'static str,
    machine: &'static str,
    bagit: &'static str,
    contact: &'static str,
    attributes: &'static str,
    no_attributes: &'static str,
    no_interactions: &'static str,
    no_subject: &'static str,
    no_text: &'static str,
    date: &'static str,
    channel: &'static str,
    status: &'static str,
    source: &'static str,
    unavailable: &'static str,
    omitted: &'static str,
    bytes: &'static str,
    context_services: &'static str,
}

const ENGLISH: Texts = Texts {
    title: "Your personal data",
    intro: "This is a copy of the personal data held about you in our contact centre system \
            (Genesys Universal Contact Server), given to you under Article 15 of the General \
            Data Protection Regulation (your right of access). It lists every contact record, \
            every interaction (e-mails, chats, calls and others) with its text, and every \
            attachment, as they were exported.",
    request: "Request",
    generated: "Page written on",
    contacts: "Contact records",
    interactions: "Interactions",
    attachments: "Attachments",
    machine: "The same data in machine-readable form (JSON, exactly as exported) is in the files \
              beside this page",
    bagit: "The folder is a BagIt package (RFC 8493): manifest-sha256.txt, one level up, lists \
            every file with its SHA-256 checksum, so you can check that nothing was changed.",
    contact: "Contact record",
    attributes: "Details",
    no_attributes: "No details are recorded.",
    no_interactions: "No interactions are recorded.",
    no_subject: "(no subject)",
    no_text: "(no text)",
    date: "Date",
    channel: "Channel",
    status: "Status",
    source: "Data source",
    unavailable: "This data source does not exist in this system, so nothing was exported from \
                  it",
    omitted: "only the name is in this export, not the file",
    bytes: "bytes",
    context_services: "Customer journey data (Context Services)",
};

const GERMAN: Texts = Texts {
    title: "Ihre personenbezogenen Daten",
    intro: "Dies ist eine Kopie der personenbezogenen Daten, die in unserem Kontaktcenter-System \
            (Genesys Universal Contact Server) über Sie gespeichert sind, nach Artikel 15 der \
            Datenschutz-Grundverordnung (Ihr Auskunftsrecht). Sie enthält jeden Kontaktdatensatz, \
            jede Interaktion (E-Mails, Chats, Anrufe und andere) mit ihrem Text und jeden Anhang, \
            so wie sie exportiert wurden.",
    request: "Antrag",
    generated: "Seite erstellt am",
    contacts: "Kontaktdatensätze",
    interactions: "Interaktionen",
    attachments: "Anhänge",
    machine: "Dieselben Daten in maschinenlesbarer Form (JSON, genau wie exportiert) stehen in \
              den Dateien neben dieser Seite",
    bagit: "Der Ordner ist ein BagIt-Paket (RFC 8493): manifest-sha256.txt, eine Ebene höher, \
            führt jede Datei mit ihrer SHA-256-Prüfsumme auf, so dass Sie prüfen können, dass \
            nichts verändert wurde.",
    contact: "Kontaktdatensatz",
    attributes: "Angaben",
    no_attributes: "Es sind keine Angaben gespeichert.",
    no_interactions: "Es sind keine Interaktionen gespeichert.",
    no_subject: "(kein Betreff)",
    no_text: "(kein Text)",
    date: "Datum",
    channel: "Kanal",
    status: "Status",
    source: "Datenquelle",
    unavailable: "Diese Datenquelle gibt es in diesem System nicht, daher wurde aus ihr nichts \
                  exportiert",
    omitted: "in diesem Export steht nur der Name, nicht die Datei",
    bytes: "Byte",
    context_services: "Daten zum Kundenverlauf (Context Services)",
};

/// A date as people read it (`2026-10-02 09:14 UTC`), or the text as it is.
fn display_date(text: &str) -> String {
    match text.parse::<jiff::Timestamp>() {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => text.to_owned(),
    }
}

/// The whole page.
/// The page's end, after the last contact's section.
const PAGE_END: &str = "</main>\n</body>\n</html>\n";

/// The page up to the first contact's section: its counts and the links to the
/// machine-readable files (every contact's, in the order of the sections).
/// The page's head, in two parts: before the links to the contacts' files, and after them.
fn render_head(request_id: &str, totals: &Totals, language: Language) -> (String, String) {
    let t = language.texts();
    let style_hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
    let interactions = totals.interactions;
    let attachments = totals.attachments;
    let today = jiff::Timestamp::now().strftime("%Y-%m-%d").to_string();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'sha256-{style_hash}'; base-uri 'none'; form-action 'none'\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} ({request})</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n\
         <h1>{title}</h1>\n<p>{intro}</p>\n<p>{request_label} <strong id=\"request\">{request}\
         </strong> · {generated} {today}</p>\n<table id=\"counts\">\n\
         <tr><th>{contacts_label}</th><td>{n_contacts}</td></tr>\n\
         <tr><th>{interactions_label}</th><td>{interactions}</td></tr>\n\
         <tr><th>{attachments_label}</th><td>{attachments}</td></tr>\n</table>\n",
        lang = language.tag(),
        title = escape(t.title),
        request = escape(request_id),
        intro = escape(t.intro),
        request_label = escape(t.request),
        generated = escape(t.generated),
        contacts_label = escape(t.contacts),
        n_contacts = totals.contacts,
        interactions_label = escape(t.interactions),
        attachments_label = escape(t.attachments),
    );
    let _ = write!(h, "<p class=\"note\">{}: ", escape(t.machine));
    let tail = format!(". {}</p>\n</header>\n<main>\n", escape(t.bagit));
    (h, tail)
}

fn render_contact(h: &mut String, contact: &ContactView, t: &Texts) {
    let id = escape(contact.id.as_str());
    let _ = write!(
        h,
        "<section class=\"contact\" id=\"contact-{id}\">\n<h2>{} <code>{id}</code></h2>\n\
         <h3>{}</h3>\n",
        escape(t.contact),
        escape(t.attributes)
    );
    if contact.attributes.is_empty() {
        let _ = writeln!(h, "<p class=\"none\">{}</p>", escape(t.no_attributes));
    } else {
        h.push_str("<table class=\"attributes\">\n");
        for (name, values) in &contact.attributes {
            let values: Vec<String> = values.iter().map(|v| escape(v)).collect();
            let _ =
                writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(name), values.join("<br>"));
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(h, "<h3>{} ({})</h3>", escape(t.interactions), contact.interactions.len());
    for (source, reason) in &contact.unavailable {
        let _ = writeln!(
            h,
            "<p class=\"note\">{} <code>{}</code>: {}.<br><small>{}</small></p>",
            escape(t.source),
            escape(source),
            escape(t.unavailable),
            escape(reason)
        );
    }
    if contact.interactions.is_empty() {
        let _ = writeln!(h, "<p class=\"none\">{}</p>", escape(t.no_interactions));
    }
    for interaction in &contact.interactions {
        render_interaction(h, interaction, contact.inline, t);
    }
    if let Some(context) = &contact.context_services {
        let _ = writeln!(h, "<h3>{}</h3>", escape(t.context_services));
        render_value(h, context);
    }
    h.push_str("</section>\n");
}

fn render_interaction(h: &mut String, i: &InteractionView, inline: bool, t: &Texts) {
    h.push_str("<article class=\"interaction\">\n");
    match &i.subject {
        Some(subject) if !subject.is_empty() => {
            let _ = writeln!(h, "<h4 class=\"subject\">{}</h4>", escape(subject));
        }
        _ => {
            let _ = writeln!(h, "<h4 class=\"subject none\">{}</h4>", escape(t.no_subject));
        }
    }
    h.push_str("<p class=\"meta\">");
    let mut parts = Vec::new();
    if let Some(date) = &i.date {
        parts.push(format!(
            "{}: <time datetime=\"{}\">{}</time>",
            escape(t.date),
            escape(date),
            escape(&display_date(date))
        ));
    }
    if let Some(media) = &i.media_type {
        parts.push(format!("{}: {}", escape(t.channel), escape(media)));
    }
    if let Some(status) = &i.status {
        parts.push(format!("{}: {}", escape(t.status), escape(status)));
    }
    parts.push(format!("{}: {}", escape(t.source), escape(&i.source)));
    h.push_str(&parts.join(" · "));
    h.push_str("</p>\n");
    match &i.text {
        Some(text) if !text.is_empty() => {
            let _ = writeln!(h, "<pre class=\"text\">{}</pre>", escape(text));
        }
        _ => {
            let _ = writeln!(h, "<p class=\"none\">{}</p>", escape(t.no_text));
        }
    }
    if !i.structured.is_empty() {
        h.push_str("<table class=\"structured\">\n");
        for (key, value) in &i.structured {
            let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(key), escape(value));
        }
        h.push_str("</table>\n");
    }
    if !i.attachments.is_empty() {
        let _ = writeln!(h, "<p>{}:</p>\n<ul class=\"attachments\">", escape(t.attachments));
        for a in &i.attachments {
            let mut details = Vec::new();
            if let Some(mime) = &a.mime_type {
                details.push(escape(mime));
            }
            if let Some(size) = a.size {
                details.push(format!("{size} {}", escape(t.bytes)));
            }
            let details = details.join(", ");
            match &a.href {
                Some(href) => {
                    let _ = writeln!(
                        h,
                        "<li><a href=\"{}\">{}</a> ({details})</li>",
                        escape(href),
                        escape(&a.name)
                    );
                }
                None => {
                    let omitted =
                        if inline { String::new() } else { format!("; {}", escape(t.omitted)) };
                    let _ = writeln!(h, "<li>{} ({details}{omitted})</li>", escape(&a.name));
                }
            }
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</article>\n");
}

/// Any JSON value as nested tables (objects) and lists (arrays), every text escaped.
fn render_value(h: &mut String, value: &Value) {
    match value {
        Value::Object(fields) => {
            h.push_str("<table>\n");
            for (key, value) in fields {
                let _ = write!(h, "<tr><th>{}</th><td>", escape(key));
                render_value(h, value);
                h.push_str("</td></tr>\n");
            }
            h.push_str("</table>\n");
        }
        Value::Array(items) => {
            h.push_str("<ol>\n");
            for item in items {
                h.push_str("<li>");
                render_value(h, item);
                h.push_str("</li>\n");
            }
            h.push_str("</ol>\n");
        }
        other => h.push_str(&escape(&scalar_text(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(json: &str, cut: usize) -> (String, Vec<Vec<u8>>) {
        let mut splitter = Splitter::default();
        let mut captured: Vec<Vec<u8>> = Vec::new();
        let bytes = json.as_bytes();
        for chunk in [&bytes[..cut], &bytes[cut..]] {
            let mut events = Vec::new();
            splitter.feed(chunk, &mut events);
            for event in events {
                match event {
                    Event::Begin => captured.push(Vec::new()),
                    Event::Bytes(range) => {
                        captured.last_mut().unwrap().extend_from_slice(&chunk[range]);
                    }
                    Event::End => {}
                }
            }
        }
        (String::from_utf8(splitter.skeleton).unwrap(), captured)
    }

    /// A file read whole (a small one) and the same file streamed split alike: the same
    /// skeleton and the same attachments, across chunk boundaries, and the same mismatch when
    /// the digest is not the file's.
    #[tokio::test]
    async fn an_interactions_file_read_whole_or_streamed_splits_the_same() {
        use base64::Engine as _;
        use sha2::Digest as _;
        let dir = tempfile::tempdir().unwrap();
        let attachment: Vec<u8> = (0..=255u8).cycle().take(3 * CHUNK + 17).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&attachment);
        let json = format!(
            r#"{{"contactId":"X","dataSources":[{{"dataSource":"main","interactions":[{{"id":"a","attachments":[{{"id":"d1","content":"{encoded}"}},{{"id":"d2","content":"QUJD"}}]}}]}}]}}"#
        );
        let path = dir.path().join("interactions.json");
        std::fs::write(&path, &json).unwrap();
        let digest = crate::canonical::hex(&Sha256::digest(json.as_bytes()));
        let size = json.len() as u64;
        let mut results = Vec::new();
        for (n, whole) in [true, false].into_iter().enumerate() {
            let input = if whole {
                Input::Bytes { bytes: json.clone().into_bytes(), at: 0 }
            } else {
                Input::File(tokio::fs::File::open(&path).await.unwrap())
            };
            let out = dir.path().join(format!("attachments-{n}"));
            let (skeleton, decoded) =
                split_interactions(&path, input, &out, &digest, size).await.unwrap();
            let mut bytes = Vec::new();
            for (i, file) in decoded.into_iter().enumerate() {
                let target = out.join(format!("final-{i}"));
                file.staged.commit(&target).unwrap();
                bytes.push(std::fs::read(&target).unwrap());
            }
            results.push((skeleton, bytes));
        }
        assert_eq!(results[0], results[1]);
        assert_eq!(results[0].1, [attachment, b"ABC".to_vec()]);
        let input = Input::Bytes { bytes: json.clone().into_bytes(), at: 0 };
        let wrong = "0".repeat(64);
        let error = split_interactions(&path, input, &dir.path().join("x"), &wrong, size)
            .await
            .unwrap_err();
        assert!(matches!(error, ExportError::Mismatch { .. }), "{error:?}");
    }

    #[test]
    fn only_attachment_contents_are_split_out_whatever_the_chunking() {
        let json = r#"{"contactId":"X","content":"not me","dataSources":[{"dataSource":"main","interactions":[{"id":"a","text":"a \"content\":\"x\" \\","structured":{"content":"no"},"attachments":[{"id":"d1","content":"QUJD"},{"content":"RA==","name":"n"}]}]}]}"#;
        for cut in 0..=json.len() {
            let (skeleton, captured) = split(json, cut);
            assert_eq!(captured, [b"QUJD".to_vec(), b"RA==".to_vec()], "cut {cut}");
            let value: Value = serde_json::from_str(&skeleton).unwrap();
            let attachments = &value["dataSources"][0]["interactions"][0]["attachments"];
            assert_eq!(attachments[0]["content"], 0);
            assert_eq!(attachments[1]["content"], 1);
            assert_eq!(value["content"], "not me");
            assert_eq!(value["dataSources"][0]["interactions"][0]["structured"]["content"], "no");
        }
    }

    #[test]
    fn attachment_file_names_are_safe_unique_and_never_the_ucs_name() {
        let mut names = FileNames::default();
        assert_eq!(
            names.name(Some("0000DOC1INVOICE1"), "invoice-2026-0042.pdf"),
            "0000DOC1INVOICE1.pdf"
        );
        assert_eq!(names.name(Some("0000DOC1INVOICE1"), "invoice.PDF"), "0000DOC1INVOICE1-2.pdf");
        assert_eq!(names.name(Some("../../etc/passwd"), "../../etc/passwd"), "attachment-3");
        assert_eq!(names.name(None, "javascript:alert(1)"), "attachment-4");
        assert_eq!(names.name(None, "x.\u{7}\n"), "attachment-5");
        assert_eq!(names.name(None, "page.HTML"), "attachment-6.html.txt");
        assert_eq!(names.name(None, "drawing.svg"), "attachment-7.svg.txt");
        assert_eq!(names.name(None, "a.b/c"), "attachment-8");
        assert_eq!(names.name(None, "a.tar.gz"), "attachment-9.gz");
        for name in &names.used {
            assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
                "{name}"
            );
            assert!(!name.starts_with('.'), "{name}");
        }
    }

    #[test]
    fn every_text_is_escaped() {
        assert_eq!(
            escape("<script>\"'&</script>\u{1b}[31m\r\n\t\u{0}"),
            "&lt;script&gt;&quot;&#39;&amp;&lt;/script&gt;\u{FFFD}[31m\r\n\t\u{FFFD}"
        );
    }

    #[test]
    fn languages_come_from_tags() {
        assert_eq!(Language::from_tag("de-AT"), Some(Language::German));
        assert_eq!(Language::from_tag("EN_gb"), Some(Language::English));
        assert_eq!(Language::from_tag("fr"), None);
    }
}
