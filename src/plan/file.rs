//! The plan file: JSON Lines, so that a plan of any size is written and read one contact at a
//! time.
//!
//! Line 1 is the header: everything but the subjects and the contacts (the request, the
//! environment, the runbook, the request steps, the blockers, the warnings, the other records,
//! the summary), `records` (the count and the sha256 of the subject lines and of the contact
//! lines), and `planId`, the sha256 of the canonical JSON of the header without `planId`. Then
//! one line per subject resolution (`{"subject":…}`, by index) and one line per contact
//! (`{"contact":…}`, sorted by id), each canonical JSON. `planId` binds the header, and through
//! `records` every line, so a reader has the summary from line 1 and can check the rest as it
//! streams.
//!
//! A [`Plan`] in memory is the same thing with its records in `body`; its id is computed the
//! same way, so a plan written by [`PlanWriter`] and one sealed in memory from the same body
//! have the same id and the same bytes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::model::*;

/// The plan file's first line, without `planId`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlanHeader {
    /// Always `ucs-gdpr/v1`.
    pub api_version: String,
    /// Always `Plan`.
    pub kind: String,
    /// The request the plan is for.
    pub request: RequestInfo,
    /// Where it runs.
    pub environment: EnvironmentInfo,
    /// The runbook it follows.
    pub runbook: RunbookInfo,
    /// What the export covers, when there is one.
    pub export: Option<ExportInfo>,
    /// Whether the request waived the export explicitly.
    pub export_waived: bool,
    /// What happens to contacts that may be deleted.
    pub delete: DeleteMode,
    /// Request-scope steps.
    pub request_steps: Vec<StepPlan>,
    /// Everything that stops the plan from being applied.
    pub blockers: Vec<Blocker>,
    /// Possible other records of the plan's people.
    pub other_records: Vec<OtherRecord>,
    /// What a reviewer must know that does not stop the plan.
    pub warnings: Vec<Warning>,
    /// The totals.
    pub summary: Summary,
    /// The lines after the header.
    pub records: Records,
}

/// The lines after the header, by section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Records {
    /// The subject lines (`{"subject":…}`), first.
    pub subjects: Section,
    /// The contact lines (`{"contact":…}`), after them.
    pub contacts: Section,
}

/// A section of lines: how many, and the sha256 over their bytes (each with its newline).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Section {
    /// Lines.
    pub count: u64,
    /// sha256 over the lines' bytes, newlines included.
    pub sha256: String,
}

/// One record line, as written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum LineRef<'a> {
    Subject(&'a SubjectResolution),
    Contact(&'a ContactPlan),
}

/// One record line, as read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
enum LineOwned {
    Subject(SubjectResolution),
    Contact(Box<ContactPlan>),
}

/// The canonical bytes of a record line, with its newline.
fn line_bytes(line: LineRef<'_>) -> Vec<u8> {
    let value = serde_json::to_value(line).unwrap_or(Value::Null);
    let mut bytes = crate::canonical::to_vec(&value);
    bytes.push(b'\n');
    bytes
}

/// The canonical bytes of a contact's line, with its newline.
pub fn contact_line(contact: &ContactPlan) -> Vec<u8> {
    line_bytes(LineRef::Contact(contact))
}

/// A section's digest, fed line by line.
#[derive(Debug, Default)]
struct SectionHasher {
    hasher: Sha256,
    count: u64,
}

impl SectionHasher {
    fn add(&mut self, line: &[u8]) {
        self.hasher.update(line);
        self.count += 1;
    }

    fn finish(self) -> Section {
        Section { count: self.count, sha256: crate::canonical::hex(&self.hasher.finalize()) }
    }
}

/// The sha256 of one line's bytes (what apply keeps per contact between its two passes).
pub fn line_digest(line: &[u8]) -> [u8; 32] {
    Sha256::digest(line).into()
}

impl PlanHeader {
    /// The header of `body` (its `subjects` and `contacts` are not read) with `records`.
    fn of(body: &PlanBody, records: Records) -> Self {
        Self {
            api_version: body.api_version.clone(),
            kind: body.kind.clone(),
            request: body.request.clone(),
            environment: body.environment.clone(),
            runbook: body.runbook.clone(),
            export: body.export.clone(),
            export_waived: body.export_waived,
            delete: body.delete,
            request_steps: body.request_steps.clone(),
            blockers: body.blockers.clone(),
            other_records: body.other_records.clone(),
            warnings: body.warnings.clone(),
            summary: body.summary.clone(),
            records,
        }
    }

    /// The body it describes, with `subjects` and no contacts.
    fn into_body(self, subjects: Vec<SubjectResolution>) -> (PlanBody, Records) {
        let body = PlanBody {
            api_version: self.api_version,
            kind: self.kind,
            request: self.request,
            environment: self.environment,
            runbook: self.runbook,
            export: self.export,
            export_waived: self.export_waived,
            delete: self.delete,
            subjects,
            request_steps: self.request_steps,
            contacts: Vec::new(),
            blockers: self.blockers,
            other_records: self.other_records,
            warnings: self.warnings,
            summary: self.summary,
        };
        (body, self.records)
    }

    /// The plan id: sha256 of the canonical JSON of the header.
    pub fn plan_id(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        crate::canonical::sha256_hex(&crate::canonical::to_vec(&value))
    }

    /// The header line: the header with its `planId`, canonical, with its newline.
    fn line(&self, plan_id: &str) -> Vec<u8> {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(object) = value.as_object_mut() {
            object.insert("planId".into(), Value::String(plan_id.to_owned()));
        }
        let mut bytes = crate::canonical::to_vec(&value);
        bytes.push(b'\n');
        bytes
    }
}

fn subjects_section(subjects: &[SubjectResolution]) -> Section {
    let mut hasher = SectionHasher::default();
    for subject in subjects {
        hasher.add(&line_bytes(LineRef::Subject(subject)));
    }
    hasher.finish()
}

impl Plan {
    /// The header this plan's file starts with.
    pub fn header(&self) -> PlanHeader {
        header_of(&self.body)
    }

    /// Writes the plan file's bytes (what `plan --out` writes) to `out`.
    ///
    /// # Errors
    /// What `out` returns.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&self.header().line(&self.plan_id))?;
        for subject in &self.body.subjects {
            out.write_all(&line_bytes(LineRef::Subject(subject)))?;
        }
        for contact in &self.body.contacts {
            out.write_all(&contact_line(contact))?;
        }
        Ok(())
    }
}

/// A plan file being written, one contact at a time: the contact lines go to a scratch file
/// beside the target while they are hashed, and [`PlanWriter::finish`] writes the header, the
/// subject lines and a streamed copy of the contact lines to the target, atomically.
#[derive(Debug)]
pub struct PlanWriter {
    target: PathBuf,
    scratch: PathBuf,
    out: Option<io::BufWriter<File>>,
    contacts: SectionHasher,
}

impl PlanWriter {
    /// Starts a plan file at `target` (nothing is at `target` until [`finish`](Self::finish)).
    ///
    /// # Errors
    /// The scratch file cannot be created.
    pub fn create(target: &Path) -> io::Result<Self> {
        let scratch = crate::durable::scratch_path(target);
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&scratch)?;
        Ok(Self {
            target: target.to_owned(),
            scratch,
            out: Some(io::BufWriter::with_capacity(1 << 16, file)),
            contacts: SectionHasher::default(),
        })
    }

    /// Adds the next contact (contacts come sorted by id).
    ///
    /// # Errors
    /// The scratch file cannot be written.
    pub fn push(&mut self, contact: &ContactPlan) -> io::Result<()> {
        let line = contact_line(contact);
        self.contacts.add(&line);
        match &mut self.out {
            Some(out) => out.write_all(&line),
            None => Err(io::Error::other("the plan file is already finished")),
        }
    }

    /// Writes the plan file: the header of `body` (whose `contacts` are those pushed; the body's
    /// own are not read) with its id, the subject lines, then the contact lines. Returns the
    /// plan with its subjects and without contacts, and its records.
    ///
    /// # Errors
    /// The target cannot be written; it is left as it was.
    pub fn finish(mut self, mut body: PlanBody) -> io::Result<(Plan, Records)> {
        let result = (|| {
            let out = self.out.take().ok_or_else(|| io::Error::other("already finished"))?;
            out.into_inner().map_err(io::IntoInnerError::into_error)?.flush()?;
            let contacts = std::mem::take(&mut self.contacts).finish();
            let records = Records { subjects: subjects_section(&body.subjects), contacts };
            body.contacts = Vec::new();
            let header = PlanHeader::of(&body, records.clone());
            let plan_id = header.plan_id();
            crate::durable::write_atomically_with(&self.target, |out| {
                out.write_all(&header.line(&plan_id))?;
                for subject in &body.subjects {
                    out.write_all(&line_bytes(LineRef::Subject(subject)))?;
                }
                let mut scratch = File::open(&self.scratch)?;
                io::copy(&mut scratch, out)?;
                Ok(())
            })?;
            Ok((Plan { plan_id, body }, records))
        })();
        let _ = std::fs::remove_file(&self.scratch);
        result
    }
}

impl Drop for PlanWriter {
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.scratch);
        }
    }
}

/// A plan file opened for reading: its header and subjects checked and in memory, its contacts
/// read on demand, one at a time ([`PlanFile::contacts`]).
#[derive(Debug, Clone)]
pub struct PlanFile {
    path: PathBuf,
    /// The plan, with its subjects and without its contacts.
    head: Plan,
    records: Records,
    /// Where the contact lines start.
    contacts_at: u64,
}

/// Reads one line (with its newline) into `line`; `false` at the end of the file.
fn next_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> Result<bool, String> {
    line.clear();
    let read = reader.read_until(b'\n', line).map_err(|e| format!("cannot be read: {e}"))?;
    Ok(read > 0)
}

/// The most one line of a plan may hold; a longer one is refused rather than read into memory.
const MAX_LINE: u64 = 64 << 20;

/// The most records reserved up front from a header's counts (the rest grow as they are read):
/// the counts are checked only once the lines are.
pub(crate) const MAX_RESERVED: usize = 1 << 20;

impl PlanFile {
    /// Opens the plan file at `path`: reads its header and checks the id, reads its subject
    /// lines and checks their digest.
    ///
    /// # Errors
    /// Not readable, not a plan, or not matching its id (edited, or corrupted), in words.
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
        Self::from_reader(path, BufReader::with_capacity(1 << 16, file))
    }

    fn from_reader(path: &Path, mut reader: impl BufRead) -> Result<Self, String> {
        let mut line = Vec::new();
        let mut limited = (&mut reader).take(MAX_LINE);
        if !next_line(&mut limited, &mut line)? {
            return Err("not a ucs-gdpr plan: the file is empty".into());
        }
        let mut at = line.len() as u64;
        let (header, plan_id) = parse_header(&line)?;
        // As many as the header lists (a count no file could hold is not reserved up front).
        let listed = usize::try_from(header.records.subjects.count).unwrap_or(usize::MAX);
        let mut subjects = Vec::with_capacity(listed.min(MAX_RESERVED));
        let mut hasher = SectionHasher::default();
        for number in 0..header.records.subjects.count {
            let mut limited = (&mut reader).take(MAX_LINE);
            if !next_line(&mut limited, &mut line)? {
                return Err(truncated(&header.records, number));
            }
            at += line.len() as u64;
            hasher.add(&line);
            match serde_json::from_slice::<LineOwned>(&line) {
                Ok(LineOwned::Subject(subject)) => subjects.push(subject),
                Ok(LineOwned::Contact(_)) => return Err(truncated(&header.records, number)),
                Err(e) => return Err(format!("line {}: not a plan record: {e}", number + 2)),
            }
        }
        let section = hasher.finish();
        if section != header.records.subjects {
            return Err(changed(&plan_id, "subject"));
        }
        let (body, records) = header.into_body(subjects);
        Ok(Self { path: path.to_owned(), head: Plan { plan_id, body }, records, contacts_at: at })
    }

    /// The plan without its contacts (its subjects, and everything the header holds).
    pub fn head(&self) -> &Plan {
        &self.head
    }

    /// The plan id.
    pub fn plan_id(&self) -> &str {
        &self.head.plan_id
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sections after the header.
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// The contacts, one at a time, in the file's order, each with the sha256 of its line. The
    /// last item is an error when the lines do not match the header's count and digest.
    ///
    /// # Errors
    /// The file cannot be opened again.
    pub fn contacts(&self) -> Result<ContactLines, String> {
        let mut file = File::open(&self.path).map_err(|e| format!("cannot be read: {e}"))?;
        file.seek(SeekFrom::Start(self.contacts_at)).map_err(|e| format!("cannot be read: {e}"))?;
        Ok(ContactLines {
            reader: BufReader::with_capacity(1 << 16, file),
            expected: self.records.contacts.clone(),
            plan_id: self.head.plan_id.clone(),
            hasher: Some(SectionHasher::default()),
            line: Vec::new(),
            first_line: 2 + self.records.subjects.count,
        })
    }

    /// Reads every contact line once and checks them against the header.
    ///
    /// # Errors
    /// A line that cannot be read, or lines that do not match the header.
    pub fn verify(&self) -> Result<(), String> {
        for item in self.contacts()? {
            item?;
        }
        Ok(())
    }

    /// The whole plan in memory (for small plans).
    ///
    /// # Errors
    /// As [`verify`](Self::verify).
    pub fn read_all(&self) -> Result<Plan, String> {
        let mut plan = self.head.clone();
        for item in self.contacts()? {
            plan.body.contacts.push(item?.0);
        }
        Ok(plan)
    }
}

fn parse_header(line: &[u8]) -> Result<(PlanHeader, String), String> {
    let mut value: Value = serde_json::from_slice(line)
        .map_err(|e| format!("not a ucs-gdpr plan (line 1 is not a JSON object: {e})"))?;
    let Some(object) = value.as_object_mut() else {
        return Err("not a ucs-gdpr plan (line 1 is not a JSON object)".into());
    };
    if object.contains_key("body") {
        return Err(
            "a plan file of an earlier ucs-gdpr (one JSON document, not JSON Lines): plan \
                    again with this version"
                .into(),
        );
    }
    let plan_id = match object.remove("planId") {
        Some(Value::String(id)) => id,
        _ => return Err("not a ucs-gdpr plan: line 1 has no `planId`".into()),
    };
    let header: PlanHeader =
        serde_json::from_value(value).map_err(|e| format!("not a ucs-gdpr plan: {e}"))?;
    let actual = header.plan_id();
    if actual != plan_id {
        return Err(format!(
            "the plan's header does not match its id (planId {plan_id}, header hashes to \
             {actual}): it was changed after it was made"
        ));
    }
    Ok((header, plan_id))
}

fn truncated(records: &Records, subjects_read: u64) -> String {
    format!(
        "the plan file is cut short or out of order: its header lists {} subject line(s), {} \
         read",
        records.subjects.count, subjects_read
    )
}

fn changed(plan_id: &str, what: &str) -> String {
    format!(
        "the plan's {what} lines do not match its header (plan {plan_id}): it was changed after \
         it was made"
    )
}

/// The contacts of a [`PlanFile`], read one at a time and hashed on the way.
#[derive(Debug)]
pub struct ContactLines {
    reader: BufReader<File>,
    expected: Section,
    plan_id: String,
    /// `None` once the end was reached and checked.
    hasher: Option<SectionHasher>,
    line: Vec<u8>,
    first_line: u64,
}

impl Iterator for ContactLines {
    type Item = Result<(ContactPlan, [u8; 32]), String>;

    fn next(&mut self) -> Option<Self::Item> {
        let read = self.hasher.as_ref()?.count;
        if read >= self.expected.count {
            // The header's count is reached: nothing may follow, and the digest must match.
            let mut rest = [0u8; 1];
            let trailing = matches!(self.reader.read(&mut rest), Ok(n) if n > 0);
            let section = self.hasher.take()?.finish();
            return (trailing || section != self.expected)
                .then(|| Err(changed(&self.plan_id, "contact")));
        }
        let number = self.first_line + read;
        let mut limited = (&mut self.reader).take(MAX_LINE);
        match next_line(&mut limited, &mut self.line) {
            Ok(true) => {}
            Ok(false) => {
                self.hasher = None;
                return Some(Err(changed(&self.plan_id, "contact")));
            }
            Err(e) => {
                self.hasher = None;
                return Some(Err(e));
            }
        }
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.add(&self.line);
        }
        let digest = line_digest(&self.line);
        let item = match serde_json::from_slice::<LineOwned>(&self.line) {
            Ok(LineOwned::Contact(contact)) => Ok((*contact, digest)),
            Ok(LineOwned::Subject(_)) => {
                Err(format!("line {number}: a subject line among the contacts"))
            }
            Err(e) => Err(format!("line {number}: not a plan record: {e}")),
        };
        if item.is_err() {
            self.hasher = None;
        }
        Some(item)
    }
}

/// Reads a whole plan from its file's bytes and checks it against its id.
///
/// # Errors
/// Not a plan, or lines that do not hash to its id.
pub(super) fn from_bytes(bytes: &[u8]) -> Result<Plan, String> {
    let mut reader = io::Cursor::new(bytes);
    let opened = PlanFile::from_reader(Path::new(""), &mut reader)?;
    let mut plan = opened.head;
    let mut hasher = SectionHasher::default();
    let mut line = Vec::new();
    while next_line(&mut reader, &mut line)? {
        hasher.add(&line);
        match serde_json::from_slice::<LineOwned>(&line) {
            Ok(LineOwned::Contact(contact)) => plan.body.contacts.push(*contact),
            Ok(LineOwned::Subject(_)) => return Err("a subject line among the contacts".into()),
            Err(e) => return Err(format!("not a plan record: {e}")),
        }
    }
    if hasher.finish() != opened.records.contacts {
        return Err(changed(&plan.plan_id, "contact"));
    }
    Ok(plan)
}

/// The plan id of a body (its records included).
pub(super) fn id_of(body: &PlanBody) -> String {
    header_of(body).plan_id()
}

/// The header of a body with all its records.
fn header_of(body: &PlanBody) -> PlanHeader {
    let mut contacts = SectionHasher::default();
    for contact in &body.contacts {
        contacts.add(&contact_line(contact));
    }
    let records =
        Records { subjects: subjects_section(&body.subjects), contacts: contacts.finish() };
    PlanHeader::of(body, records)
}
