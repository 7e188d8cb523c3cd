//! THE wire mapping: every URL path, method, JSON field name, paging parameter and status-code
//! meaning the connector relies on, in one file. The [`RestClient`](super::RestClient) and the
//! simulator both use it, so adapting to a live server is a change here and nowhere else.
//!
//! Sources: the UCS 9.1 REST style (`<base>/ucs/v1/<Service>/<Method>`, POST/PUT bodies
//! `{"Parameters":{...},"UserData":{...}}`, GET/DELETE with query parameters), the Platform SDK
//! names of the same requests (`RequestIdentifyContact`, `RequestGetInteractionsForContact`,
//! attachment fields `DocumentId`/`TheName`/`MimeType`/`TheSize`). Context Services (profiles,
//! services, states, tasks) are in [`context_services`], GMS callbacks in [`gms`], each item
//! naming its page. Where public documentation is silent, the item says **Assumption** and
//! what was chosen.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{DataSource, InteractionStatus};

pub mod context_services;
pub mod gms;

/// Every call the connector makes; also the names `/sim/stats` counts them under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// `POST <ucs>/ucs/v1/OMContacts/IdentifyContact`
    IdentifyContact,
    /// `GET <ucs>/ucs/v1/OMContacts/GetAttributes?ContactId=`
    GetAttributes,
    /// `DELETE <ucs>/ucs/v1/OMContacts/Delete?ContactId=`
    DeleteContact,
    /// `GET <ucs>/ucs/v1/OMInteractions/GetInteractionsForContact?ContactId=&DataSource=&FromIndex=&PageSize=`
    GetInteractionsForContact,
    /// `GET <ucs>/ucs/v1/OMInteractions/GetInteractionContent?InteractionId=&DataSource=`
    GetInteractionContent,
    /// `GET <ucs>/ucs/v1/OMInteractions/GetDocument?DocumentId=&DataSource=`
    GetDocument,
    /// `POST <ucs>/ucs/v1/OMInteractions/StopInteraction`
    StopInteraction,
    /// `GET <context-services>/profiles/{id}` (see [`context_services`])
    GetProfile,
    /// `DELETE <context-services>/profiles/{id}`
    DeleteProfile,
    /// `GET <gms>/genesys/1/cs/customers/{id}/services`
    ListServices,
    /// `GET <gms>/genesys/1/cs/services/anonymous/{contact_key}`
    ListAnonymousServices,
    /// `GET <gms>/genesys/1/cs/services/{id}/states`
    GetServiceStates,
    /// `GET <gms>/genesys/1/cs/services/{id}/tasks`
    GetServiceTasks,
    /// `DELETE <gms>/genesys/1/cs/services/{id}`
    DeleteService,
    /// `GET <gms>/genesys/1/service/callback?_customer_number=` (see [`gms`])
    ListCallbacks,
    /// `DELETE <gms>/genesys/1/service/callback/{service}/{id}`
    CancelCallback,
}

/// Which server an operation is sent to (and authenticated against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// UCS's REST API.
    Ucs,
    /// Context Services' profile API.
    ContextServices,
    /// GMS: callbacks, and the Context Services services API it serves.
    Gms,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 16] = [
        Operation::IdentifyContact,
        Operation::GetAttributes,
        Operation::DeleteContact,
        Operation::GetInteractionsForContact,
        Operation::GetInteractionContent,
        Operation::GetDocument,
        Operation::StopInteraction,
        Operation::GetProfile,
        Operation::DeleteProfile,
        Operation::ListServices,
        Operation::ListAnonymousServices,
        Operation::GetServiceStates,
        Operation::GetServiceTasks,
        Operation::DeleteService,
        Operation::ListCallbacks,
        Operation::CancelCallback,
    ];

    /// The operation's name (as in `/sim/stats` and in errors).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::IdentifyContact => "IdentifyContact",
            Operation::GetAttributes => "GetAttributes",
            Operation::DeleteContact => "DeleteContact",
            Operation::GetInteractionsForContact => "GetInteractionsForContact",
            Operation::GetInteractionContent => "GetInteractionContent",
            Operation::GetDocument => "GetDocument",
            Operation::StopInteraction => "StopInteraction",
            Operation::GetProfile => "GetProfile",
            Operation::DeleteProfile => "DeleteProfile",
            Operation::ListServices => "ListServices",
            Operation::ListAnonymousServices => "ListAnonymousServices",
            Operation::GetServiceStates => "GetServiceStates",
            Operation::GetServiceTasks => "GetServiceTasks",
            Operation::DeleteService => "DeleteService",
            Operation::ListCallbacks => "ListCallbacks",
            Operation::CancelCallback => "CancelCallback",
        }
    }

    /// The server the operation goes to.
    pub fn backend(self) -> Backend {
        match self {
            Operation::GetProfile | Operation::DeleteProfile => Backend::ContextServices,
            Operation::ListServices
            | Operation::ListAnonymousServices
            | Operation::GetServiceStates
            | Operation::GetServiceTasks
            | Operation::DeleteService
            | Operation::ListCallbacks
            | Operation::CancelCallback => Backend::Gms,
            _ => Backend::Ucs,
        }
    }

    /// The operation named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// Whether repeating the call cannot change the outcome, so it may be retried blindly.
    /// A contact delete is the one exception: see `RestClient::delete_contact`.
    pub fn is_idempotent(self) -> bool {
        self != Operation::DeleteContact
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Paths of the UCS REST API are appended to the configured base URL (which holds any
// `<base>` prefix); they all start with `/ucs/v1`.

/// `POST`: identify contacts by attributes.
pub const IDENTIFY_CONTACT: &str = "/ucs/v1/OMContacts/IdentifyContact";
/// `GET`: a contact's attributes.
pub const GET_ATTRIBUTES: &str = "/ucs/v1/OMContacts/GetAttributes";
/// `DELETE`: a contact and all its interactions.
pub const DELETE_CONTACT: &str = "/ucs/v1/OMContacts/Delete";
/// `GET`: a page of a contact's interactions in one data source.
pub const GET_INTERACTIONS: &str = "/ucs/v1/OMInteractions/GetInteractionsForContact";
/// `GET`: an interaction's content.
pub const GET_CONTENT: &str = "/ucs/v1/OMInteractions/GetInteractionContent";
/// `GET`: a document's (attachment's) bytes.
pub const GET_DOCUMENT: &str = "/ucs/v1/OMInteractions/GetDocument";
/// `POST`: stop an interaction.
pub const STOP_INTERACTION: &str = "/ucs/v1/OMInteractions/StopInteraction";

/// Query parameter: contact id.
pub const Q_CONTACT_ID: &str = "ContactId";
/// Query parameter: interaction id.
pub const Q_INTERACTION_ID: &str = "InteractionId";
/// Query parameter: document id.
pub const Q_DOCUMENT_ID: &str = "DocumentId";
/// Query parameter: data source role, `main` or `archive`.
pub const Q_DATA_SOURCE: &str = "DataSource";
/// Query parameter: index of the first interaction of a page (0-based).
///
/// **Assumption**: UCS pages interaction lists with a start index and a page size; the names
/// `FromIndex`/`PageSize` are ours.
pub const Q_FROM_INDEX: &str = "FromIndex";
/// Query parameter: the page size.
pub const Q_PAGE_SIZE: &str = "PageSize";
/// The largest page the simulator serves (and the client asks for).
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The data source role's name on the wire.
pub fn data_source_name(source: DataSource) -> &'static str {
    source.as_str()
}

/// The data source named `name` on the wire.
pub fn data_source_from_name(name: &str) -> Option<DataSource> {
    match name {
        "main" => Some(DataSource::Main),
        "archive" => Some(DataSource::Archive),
        _ => None,
    }
}

/// The request body of POST calls: `{"Parameters":{...},"UserData":{...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<P> {
    /// The operation's parameters.
    #[serde(rename = "Parameters")]
    pub parameters: P,
    /// Free-form user data; the connector sends `{}`.
    #[serde(rename = "UserData", default)]
    pub user_data: serde_json::Map<String, serde_json::Value>,
}

/// `IdentifyContact` parameters. Mirrors PSDK `RequestIdentifyContact`: the attributes to match
/// go in `OtherFields`, and `CreateContact` is always `false` (identification must never
/// create a contact).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IdentifyParams {
    /// The tenant.
    pub tenant_id: u32,
    /// Attribute name -> value, all of which must match.
    pub other_fields: BTreeMap<String, String>,
    /// Always `false`.
    #[serde(default)]
    pub create_contact: bool,
}

impl fmt::Debug for IdentifyParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentifyParams").field("tenant_id", &self.tenant_id).finish_non_exhaustive()
    }
}

/// `IdentifyContact` result: every matching contact id (empty when none match).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IdentifyResult {
    /// The matching contact ids.
    pub contact_id_list: Vec<String>,
}

/// `GetAttributes` result.
///
/// **Assumption**: attributes come as name -> list of values (UCS attributes are multi-valued).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_debug_implementations)] // holds personal data: no Debug at all
pub struct AttributesResult {
    /// The contact id.
    pub contact_id: String,
    /// Its tenant.
    pub tenant_id: u32,
    /// Attribute name -> values.
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// `GetInteractionsForContact` result.
///
/// **Assumption**: a page carries `TotalCount`; there is a next page when
/// `FromIndex + len(Interactions) < TotalCount`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InteractionsResult {
    /// This page.
    pub interactions: Vec<WireInteraction>,
    /// How many interactions the contact has in this data source.
    pub total_count: u32,
}

/// One listed interaction. Status names are UCS's `Statuses` enum.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireInteraction {
    /// The interaction id.
    pub id: String,
    /// `email`, `chat`, `voice`, ...
    pub media_type_id: String,
    /// `New`, `Pending`, `InProcess`, `Stopped`.
    pub status: InteractionStatus,
    /// **Assumption**: the workbin an interaction is parked in is listed by name (null if none).
    #[serde(default)]
    pub workbin: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub start_date: Option<Timestamp>,
    /// RFC 3339.
    #[serde(default)]
    pub end_date: Option<Timestamp>,
    /// RFC 3339; changes whenever the interaction does.
    pub modified_date: Timestamp,
    /// **Assumption**: the list gives the attachment count, so planning needs no content call.
    #[serde(default)]
    pub attachment_count: u32,
}

/// `GetInteractionContent` result.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_debug_implementations)] // holds personal data: no Debug at all
pub struct ContentResult {
    /// The interaction id.
    pub id: String,
    /// Subject, if any.
    #[serde(default)]
    pub subject: Option<String>,
    /// Plain text body / transcript.
    #[serde(default)]
    pub text: Option<String>,
    /// **Assumption**: structured text / user data as one JSON object.
    #[serde(default)]
    pub structured_fields: serde_json::Map<String, serde_json::Value>,
    /// The attachments' metadata.
    #[serde(default)]
    pub attachments: Vec<WireAttachment>,
}

/// An attachment's metadata, with PSDK's field names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireAttachment {
    /// The document id for `GetDocument`.
    pub document_id: String,
    /// The file name.
    pub the_name: String,
    /// The MIME type.
    pub mime_type: String,
    /// The size in bytes.
    pub the_size: u64,
}

/// `StopInteraction` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StopParams {
    /// The interaction id.
    pub interaction_id: String,
    /// Why (free text, no personal data).
    pub reason: String,
}

/// The body of every non-2xx answer: `{"Error":{"Code":"...","Message":"...","Server":"..."}}`.
///
/// **Assumption**: UCS REST errors carry a code, a message and the server name (the seed's log
/// shows `Server: ucs85-49d888d5a732 Msg: No data source with role 'archive' found`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    #[serde(rename = "Error")]
    pub error: ErrorDetail,
}

/// See [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorDetail {
    /// A short token (see the `CODE_*` constants).
    pub code: String,
    /// Human text; the client never copies it into errors (it may hold personal data) except
    /// for the missing-archive reason, whose text is fixed.
    #[serde(default)]
    pub message: String,
    /// The server's name.
    #[serde(default)]
    pub server: Option<String>,
}

/// Error code: no such contact / interaction / document / profile / callback (HTTP 404).
pub const CODE_NOT_FOUND: &str = "NotFound";
/// Error code of the missing archive role.
///
/// **Assumption**: listing interactions in a data source role the deployment lacks answers
/// HTTP 404 with this code and the message [`NO_DATA_SOURCE_MESSAGE`]; the client turns it into
/// `InteractionPage::SourceUnavailable`, not an error.
pub const CODE_NO_DATA_SOURCE: &str = "DataSourceNotFound";
/// The message of [`CODE_NO_DATA_SOURCE`], as the seed's log shows it (role appended in quotes).
pub const NO_DATA_SOURCE_MESSAGE: &str = "No data source with role";
/// Error code: the request is invalid (HTTP 400).
pub const CODE_BAD_REQUEST: &str = "BadRequest";
/// Error code: the server is (temporarily) unavailable (HTTP 503).
pub const CODE_UNAVAILABLE: &str = "ServiceUnavailable";
/// Error code: an internal server error (HTTP 500).
pub const CODE_INTERNAL: &str = "InternalError";

/// What an HTTP status means to the connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMeaning {
    /// 2xx.
    Success,
    /// 404.
    NotFound,
    /// 408, 429, 502, 503, 504: try again later.
    Transient,
    /// Any other status: do not retry.
    Permanent,
}

/// Classifies an HTTP status. 500 is permanent: a server bug does not heal by itself, and the
/// issue lists only 502/503/504 (and timeouts, resets) as transient.
pub fn status_meaning(status: u16) -> StatusMeaning {
    match status {
        200..=299 => StatusMeaning::Success,
        404 => StatusMeaning::NotFound,
        408 | 429 | 502 | 503 | 504 => StatusMeaning::Transient,
        _ => StatusMeaning::Permanent,
    }
}

/// The content type of every JSON answer.
pub const JSON: &str = "application/json";
/// The content type of `GetDocument` answers.
///
/// **Assumption**: `GetDocument` answers the raw bytes (not base64 in JSON), so large
/// attachments stream; the document's own MIME type is in its metadata.
pub const OCTET_STREAM: &str = "application/octet-stream";
