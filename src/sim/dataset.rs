//! The simulator's dataset file (JSON or YAML): contacts with their attributes, interactions per
//! data source, attachments (inline base64 or files beside the dataset), Context Services
//! profiles and GMS callbacks.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ucs::{AttachmentId, CallbackId, ContactId, InteractionId, InteractionStatus};

/// A whole dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dataset {
    /// The server name the simulator gives in errors (the seed's `Server: ucs85-...`).
    #[serde(default = "default_server")]
    pub server: String,
    /// Which UCS it simulates (default `9.1`). On `9.1` there is one store: every interaction is
    /// in `interactions.main`, and `DataSource` is ignored ("Ignored in 9.0",
    /// .../RESTAPI/OMInteractionsGetInteractionsForContact): asking for `archive` answers what
    /// `main` answers. On `8.5` `main` and `archive` are separate data sources. An embedded
    /// environment is the version of its dataset: `8.5` rehearses 8.5's data semantics over the
    /// simulator's REST endpoints (a real 8.5 is reached through Platform SDK, not REST).
    #[serde(default)]
    pub ucs_version: crate::ucs::UcsVersion,
    /// 8.5: whether the deployment has a data source with role `archive` (default: yes).
    /// Must not be set on 9.1, which has no archive role.
    #[serde(default)]
    pub archive: Option<bool>,
    /// UCS's `schema/select-limit`: the most contact ids one `IdentifyContact` answers
    /// (`NumberOfContactsFound` never exceeds it; page `.../RESTAPI/OMContactsIdentifyContact`).
    #[serde(default = "default_select_limit")]
    pub select_limit: u32,
    /// The contacts.
    #[serde(default)]
    pub contacts: Vec<DatasetContact>,
    /// Context Services services started before the customer was identified, each keyed by a
    /// contact key (such as the number the customer called from).
    #[serde(default)]
    pub anonymous_services: Vec<DatasetService>,
}

fn default_server() -> String {
    "ucs-sim".to_owned()
}

impl Dataset {
    /// Whether the deployment has a separate data source with role `archive` (8.5 only).
    pub fn has_archive(&self) -> bool {
        self.ucs_version.has_archive_role() && self.archive.unwrap_or(true)
    }
}

/// The default select limit of the simulator.
///
/// **Assumption**: UCS's own default for `schema/select-limit` is not in the pages read; 100 is
/// small enough for tests to reach.
pub const DEFAULT_SELECT_LIMIT: u32 = 100;

fn default_select_limit() -> u32 {
    DEFAULT_SELECT_LIMIT
}

/// One contact and everything about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetContact {
    /// The contact id.
    pub id: ContactId,
    /// Its tenant.
    pub tenant: u32,
    /// Attribute name -> a value or a list of values.
    #[serde(default)]
    pub attributes: BTreeMap<String, OneOrMany>,
    /// Its interactions per data source.
    #[serde(default)]
    pub interactions: DatasetInteractions,
    /// Its Context Services profile, if it has one.
    #[serde(default)]
    pub profile: Option<serde_json::Map<String, serde_json::Value>>,
    /// Its Context Services services (with their states and tasks).
    #[serde(default)]
    pub services: Vec<DatasetService>,
    /// Its GMS callbacks.
    #[serde(default)]
    pub callbacks: Vec<DatasetCallback>,
}

/// One Context Services service, with its states and tasks (free-form, as Context Services
/// returns them: `service_type`, `started`, `completed`, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetService {
    /// The service id (letters, digits, `-`, `_`; up to 64).
    pub id: String,
    /// For an anonymous service: its contact key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_key: Option<String>,
    /// The service resource's fields.
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Its states.
    #[serde(default)]
    pub states: Vec<serde_json::Value>,
    /// Its tasks.
    #[serde(default)]
    pub tasks: Vec<serde_json::Value>,
}

/// A single attribute value or several.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(value) => vec![value.clone()],
            OneOrMany::Many(values) => values.clone(),
        }
    }
}

/// Interactions per data-source role.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetInteractions {
    /// In `main`.
    #[serde(default)]
    pub main: Vec<DatasetInteraction>,
    /// In `archive` (8.5 only; must be empty when the dataset has no archive).
    #[serde(default)]
    pub archive: Vec<DatasetInteraction>,
}

/// One interaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetInteraction {
    /// The interaction id.
    pub id: InteractionId,
    /// `email`, `chat`, `voice`, ...
    pub media_type: String,
    /// Default `Stopped`.
    #[serde(default = "stopped")]
    pub status: InteractionStatus,
    /// The workbin it is parked in.
    #[serde(default)]
    pub workbin: Option<String>,
    /// Subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// Text (body, transcript, notes).
    #[serde(default)]
    pub text: Option<String>,
    /// Structured fields.
    #[serde(default)]
    pub structured: serde_json::Map<String, serde_json::Value>,
    /// Start.
    #[serde(default)]
    pub start_date: Option<Timestamp>,
    /// End.
    #[serde(default)]
    pub end_date: Option<Timestamp>,
    /// Last modification (default: the end, else the start, else the epoch).
    #[serde(default)]
    pub modified: Option<Timestamp>,
    /// Attachments.
    #[serde(default)]
    pub attachments: Vec<DatasetAttachment>,
}

fn stopped() -> InteractionStatus {
    InteractionStatus::Stopped
}

/// One attachment: exactly one of `base64` and `file`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetAttachment {
    /// The document id.
    pub id: AttachmentId,
    /// The file name.
    pub name: String,
    /// The MIME type.
    pub mime_type: String,
    /// The bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// A file, relative to the dataset file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// One GMS callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetCallback {
    /// The callback id.
    pub id: CallbackId,
    /// The callback service (execution name) that holds it, default `callback`.
    #[serde(default = "callback_service")]
    pub service: String,
    /// GMS state, default `SCHEDULED`.
    #[serde(default = "scheduled")]
    pub state: String,
    /// When the customer asked to be called.
    #[serde(default)]
    pub desired_time: Option<Timestamp>,
    /// The number to call.
    pub phone_number: String,
}

fn callback_service() -> String {
    "callback".to_owned()
}

fn scheduled() -> String {
    "SCHEDULED".to_owned()
}

/// A dataset that cannot be used. Names the file and the problem; quotes no values.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file cannot be read.
    #[error("cannot read dataset {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("dataset {path} is not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The file does not have the dataset's shape.
    #[error("dataset {path} is invalid: {message}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its location.
        message: String,
    },
    /// A semantic problem (duplicate id, bad attachment, ...).
    #[error("dataset {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Dataset {
    /// Loads and checks a dataset; `.yaml`/`.yml` files are YAML, anything else JSON.
    pub fn load(path: &Path) -> Result<Self, DatasetError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| DatasetError::Read { path: path.to_owned(), source })?;
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        let dataset: Dataset = if is_yaml {
            parse_yaml(path, &text)?
        } else {
            serde_json::from_str(&text).map_err(|e| DatasetError::Shape {
                path: path.to_owned(),
                message: e.to_string(),
            })?
        };
        dataset.check(path)?;
        Ok(dataset)
    }

    fn check(&self, path: &Path) -> Result<(), DatasetError> {
        let invalid = |message: String| DatasetError::Invalid { path: path.to_owned(), message };
        let mut contacts = std::collections::HashSet::new();
        let mut interactions = std::collections::HashSet::new();
        let mut documents = std::collections::HashSet::new();
        let mut callbacks = std::collections::HashSet::new();
        if !self.ucs_version.has_archive_role() && self.archive.is_some() {
            return Err(invalid(
                "`archive` is a UCS 8.5 setting: UCS 9.1 has one store (set `ucsVersion: \"8.5\"` \
                 for main and archive data sources)"
                    .to_owned(),
            ));
        }
        for contact in &self.contacts {
            if !contacts.insert(&contact.id) {
                return Err(invalid(format!("contact {} appears twice", contact.id)));
            }
            if !self.ucs_version.has_archive_role() && !contact.interactions.archive.is_empty() {
                return Err(invalid(format!(
                    "contact {} has archive interactions but UCS 9.1 has one store: list them \
                     under `main`, or set `ucsVersion: \"8.5\"`",
                    contact.id
                )));
            }
            if !self.has_archive() && !contact.interactions.archive.is_empty() {
                return Err(invalid(format!(
                    "contact {} has archive interactions but the dataset has `archive: false`",
                    contact.id
                )));
            }
            let all = contact.interactions.main.iter().chain(&contact.interactions.archive);
            for interaction in all {
                if !interactions.insert(&interaction.id) {
                    return Err(invalid(format!("interaction {} appears twice", interaction.id)));
                }
                for attachment in &interaction.attachments {
                    if !documents.insert(&attachment.id) {
                        return Err(invalid(format!("attachment {} appears twice", attachment.id)));
                    }
                    match (&attachment.base64, &attachment.file) {
                        (Some(_), None) => {}
                        (None, Some(file)) => {
                            relative_file(path, file).ok_or_else(|| {
                                invalid(format!(
                                    "attachment {}: `file` must be a relative path inside the \
                                     dataset's folder",
                                    attachment.id
                                ))
                            })?;
                        }
                        _ => {
                            return Err(invalid(format!(
                                "attachment {} needs exactly one of `base64` and `file`",
                                attachment.id
                            )));
                        }
                    }
                }
            }
            for callback in &contact.callbacks {
                if !callbacks.insert(&callback.id) {
                    return Err(invalid(format!("callback {} appears twice", callback.id)));
                }
                if !crate::ucs::wire::gms::is_service_name(&callback.service) {
                    return Err(invalid(format!("callback {}: invalid service name", callback.id)));
                }
            }
            for service in &contact.services {
                if service.contact_key.is_some() {
                    return Err(invalid(format!(
                        "service {}: a contact's service has no `contactKey` (put anonymous \
                         services under `anonymousServices`)",
                        contact.id
                    )));
                }
            }
        }
        let mut services = std::collections::HashSet::new();
        let all = self.contacts.iter().flat_map(|c| &c.services).chain(&self.anonymous_services);
        for service in all {
            if crate::ucs::ServiceId::new(&service.id).is_err() {
                return Err(invalid(
                    "a service id must be 1 to 64 letters, digits, `-` or `_`".into(),
                ));
            }
            if !services.insert(&service.id) {
                return Err(invalid(format!("service {} appears twice", service.id)));
            }
        }
        if self
            .anonymous_services
            .iter()
            .any(|s| s.contact_key.as_deref().is_none_or(str::is_empty))
        {
            return Err(invalid("every anonymous service needs a `contactKey`".into()));
        }
        Ok(())
    }
}

/// The file an attachment names, if it is a relative path without `..`.
pub(crate) fn relative_file(dataset: &Path, file: &str) -> Option<PathBuf> {
    let relative = Path::new(file);
    let plain = relative.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || file.is_empty() {
        return None;
    }
    Some(dataset.parent().unwrap_or(Path::new(".")).join(relative))
}

fn parse_yaml(path: &Path, text: &str) -> Result<Dataset, DatasetError> {
    let value = crate::document::yaml::parse_value(text).map_err(|error| {
        let before = text.get(..error.span.start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        DatasetError::Yaml {
            path: path.to_owned(),
            message: format!("line {line}, column {column}: {}", error.message),
        }
    })?;
    serde_json::from_value(value)
        .map_err(|e| DatasetError::Shape { path: path.to_owned(), message: e.to_string() })
}
