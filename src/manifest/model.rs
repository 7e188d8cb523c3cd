//! The typed request model, read from a document that passed the request schema.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A data-subject request (`kind: Request`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    /// Always `ucs-gdpr/v1`.
    pub api_version: String,
    /// Always `Request`.
    pub kind: String,
    /// Who asked, when, how.
    pub metadata: Metadata,
    /// What to do.
    pub spec: Spec,
    /// The subjects file named by `spec.subjectsFile`, once read and checked (its ids are then
    /// `contactId` subjects at the end of `spec.subjects`).
    #[serde(skip)]
    pub subjects_file: Option<SubjectsFileInfo>,
}

/// A subjects file as read: where, its digest, and how many ids it gave. No personal data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectsFileInfo {
    /// The path as the manifest names it (relative to the manifest's folder).
    pub path: String,
    /// sha256 of the file's bytes.
    pub sha256: String,
    /// The contact ids it lists.
    pub subjects: u64,
}

/// Facts about the request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The request id; safe as a folder name (the schema's pattern).
    pub id: String,
    /// When the request arrived.
    #[serde(deserialize_with = "from_str")]
    pub received_at: jiff::Timestamp,
    /// How it arrived.
    pub channel: Channel,
    /// Who verified the requester's identity.
    pub verified_by: String,
    /// A ticket reference.
    #[serde(default)]
    pub ticket: Option<String>,
    /// When the answer is due, if set explicitly.
    #[serde(default, deserialize_with = "option_from_str")]
    pub deadline: Option<jiff::civil::Date>,
    /// The language of the readable export page (a BCP 47 tag the schema checks).
    #[serde(default)]
    pub language: Option<String>,
}

impl Metadata {
    /// The deadline: the explicit one, or one month after `receivedAt` (Art. 12(3)).
    pub fn effective_deadline(&self) -> jiff::civil::Date {
        self.deadline.unwrap_or_else(|| {
            let received = self.received_at.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
            received.checked_add(jiff::Span::new().months(1)).unwrap_or(received)
        })
    }
}

/// How a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// By e-mail.
    Email,
    /// By chat.
    Chat,
    /// By phone.
    Voice,
    /// Through a web form.
    Web,
    /// By post.
    Letter,
}

/// What to do, where, to whom.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// The environment's name.
    pub environment: String,
    /// The runbook's name.
    pub runbook: String,
    /// The data subjects.
    #[serde(default)]
    pub subjects: Vec<Subject>,
    /// A file of contact ids (one per line, or a CSV whose header names the column), relative
    /// to the manifest's folder, for batches too large for the manifest itself.
    #[serde(default)]
    pub subjects_file: Option<String>,
    /// Export settings; `None`: no export.
    #[serde(default)]
    pub export: Option<Export>,
    /// An explicit decision to erase without an export.
    #[serde(default)]
    pub export_waiver: Option<ExportWaiver>,
    /// Delete settings; `None`: nothing is deleted.
    #[serde(default)]
    pub delete: Option<Delete>,
    /// Contacts kept despite the request.
    #[serde(default)]
    pub holds: Vec<Hold>,
}

impl Spec {
    /// Whether deletion is asked for and confirmed.
    pub fn delete_confirmed(&self) -> bool {
        self.delete.as_ref().is_some_and(|d| d.confirm)
    }
}

/// One data subject.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Subject {
    /// A contact named by its UCS id.
    Contact {
        /// The contact id (16 letters and digits).
        #[serde(rename = "contactId")]
        contact_id: String,
    },
    /// Contacts found by an identification request.
    Match {
        /// `TenantId` and attributes, as in the Genesys scripts.
        #[serde(rename = "match")]
        criteria: BTreeMap<String, Value>,
        /// How many matches are acceptable.
        #[serde(default)]
        expect: Expect,
    },
}

/// How many contacts a `match` may find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Exactly one; several block the plan.
    #[default]
    One,
    /// Every match is a subject.
    All,
}

impl Expect {
    /// As manifests and plans write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::One => "one",
            Self::All => "all",
        }
    }
}

/// Export settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Export {
    /// The data sources to export from.
    #[serde(default = "both_sources")]
    pub data_sources: Vec<DataSourceRole>,
    /// Whether attachments are inlined.
    #[serde(default)]
    pub attachments: Attachments,
}

fn both_sources() -> Vec<DataSourceRole> {
    vec![DataSourceRole::Main, DataSourceRole::Archive]
}

/// A UCS data-source role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSourceRole {
    /// The main database.
    Main,
    /// The archive database.
    Archive,
}

/// What the export does with attachments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Attachments {
    /// Inlined as base64, as the Genesys export script does.
    #[default]
    Inline,
    /// Left out.
    Omit,
}

impl Attachments {
    /// As manifests and plans write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inline => "inline",
            Self::Omit => "omit",
        }
    }
}

/// An explicit decision to erase without exporting.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportWaiver {
    /// Why.
    pub reason: String,
}

/// Delete settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delete {
    /// The Genesys script's `-confirm`.
    #[serde(default)]
    pub confirm: bool,
}

/// A contact kept despite the request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hold {
    /// The contact kept.
    pub contact_id: String,
    /// The legal ground.
    pub reason: String,
}

fn from_str<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

fn option_from_str<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    Option::<String>::deserialize(deserializer)?
        .map(|text| text.parse().map_err(serde::de::Error::custom))
        .transpose()
}
