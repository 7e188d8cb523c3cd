//! The UCS connector: one interface for what the engine needs, and the REST client behind it.
//!
//! [`Ucs`] is the interface the planner and the executor are generic over. [`Connector`]
//! implements it over any [`Transport`] (retries, limits, delete-then-confirm); the one
//! transport today is [`RestTransport`] (UCS 9.1 REST, as mapped in [`wire`]), and
//! [`RestClient`] is the two together. Everything here is
//! written so that nothing personal leaks: ids are fine in errors and traces, attribute values,
//! message text and phone numbers are not, and the `Debug` of types that hold them redacts.

mod client;
mod error;
pub(crate) mod rng;
pub mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use client::{
    Auth, AuthError, CallSite, ClientConfig, ConfigError, Connector, Limits, RestClient,
    RestTransport, RetryEvent, RetryHook, RetryPolicy, RetryTally, RetryThen, Transport,
};
pub use error::{ErrorKind, ProtocolFault, UcsError};

/// Declares a 16-character `[A-Za-z0-9]` UCS id type, validated on construction, so a hostile
/// id (`../../x`, `a?b=c`) can never become a path or a URL segment. The id is held inline (16
/// bytes, no allocation: a batch holds several ids per contact), and orders, hashes, prints and
/// serialises exactly as its text.
macro_rules! ucs_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name([u8; 16]);

        impl $name {
            /// Validates `text` as an id: exactly 16 ASCII letters or digits.
            pub fn new(text: &str) -> Result<Self, InvalidId> {
                match <[u8; 16]>::try_from(text.as_bytes()) {
                    Ok(bytes) if bytes.iter().all(u8::is_ascii_alphanumeric) => Ok(Self(bytes)),
                    _ => Err(InvalidId { what: $what, len: text.len() }),
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                // Always ASCII (checked by `new`), so never the empty fallback.
                std::str::from_utf8(&self.0).unwrap_or_default()
            }
        }

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                // As its text hashes (the hash of a `String` id before).
                self.as_str().hash(state);
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(text: &str) -> Result<Self, InvalidId> {
                Self::new(text)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(IdVisitor::<Self>(std::marker::PhantomData))
            }
        }

        impl IdText for $name {
            fn from_text(text: &str) -> Result<Self, InvalidId> {
                Self::new(text)
            }
        }
    };
}

/// An id type [`IdVisitor`] makes from text.
trait IdText: Sized {
    fn from_text(text: &str) -> Result<Self, InvalidId>;
}

/// Deserialises an id from a string without copying it first (a borrowed or transient string
/// is checked in place).
struct IdVisitor<T>(std::marker::PhantomData<T>);

impl<T: IdText> serde::de::Visitor<'_> for IdVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As a `String` id said before: the same message for a value of the wrong type.
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        T::from_text(text).map_err(E::custom)
    }
}

ucs_id!(
    /// A UCS contact id. Also the Context Services profile id (see [`wire`]).
    ContactId,
    "contact id"
);
ucs_id!(
    /// A UCS interaction id.
    InteractionId,
    "interaction id"
);
ucs_id!(
    /// A UCS document (attachment) id.
    AttachmentId,
    "attachment id"
);

/// A value that is not a valid id. Says what was expected and the length it got, never the
/// text itself: a mistyped id may well be an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {what}: expected 16 letters or digits, got {len} characters")]
pub struct InvalidId {
    what: &'static str,
    len: usize,
}

/// A GMS callback (service) id: 1 to 64 `[A-Za-z0-9-]`, so it is safe as a URL segment.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CallbackId(String);

impl CallbackId {
    /// Validates `text` as a callback id.
    pub fn new(text: &str) -> Result<Self, InvalidId> {
        if (1..=64).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidId { what: "callback id", len: text.len() })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallbackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CallbackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallbackId({})", self.0)
    }
}

impl<'de> Deserialize<'de> for CallbackId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// A Context Services service id: 1 to 64 `[A-Za-z0-9_-]`, so it is safe as a URL segment
/// (the pages type it "integer" and show `361-a3793cef-…` in their examples).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ServiceId(String);

impl ServiceId {
    /// Validates `text` as a service id.
    pub fn new(text: &str) -> Result<Self, InvalidId> {
        let value = serde_json::Value::String(text.to_owned());
        match wire::context_services::service_id_text(&value) {
            Some(text) => Ok(Self(text)),
            None => Err(InvalidId { what: "service id", len: text.len() }),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceId({})", self.0)
    }
}

impl<'de> Deserialize<'de> for ServiceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// A UCS tenant (DBID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub u32);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which UCS an environment is. The data semantics follow it: 9.x keeps every interaction in one
/// store (`DataSource` is "Ignored in 9.0", docs.genesys.com/Documentation/UCS/9.1.x/RESTAPI/
/// OMInteractionsGetInteractionsForContact), 8.5 has separate `main` and `archive` data sources
/// (an RDBMS each; a deployment may have no archive, the seed's log).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Deserialize,
    serde::Serialize,
)]
pub enum UcsVersion {
    /// UCS 9.1 (REST API, Cassandra + Elasticsearch): one store, no archive pass.
    #[default]
    #[serde(rename = "9.1")]
    V9_1,
    /// UCS 8.5 (Platform SDK over ESP; RDBMS with `main` and `archive` data sources).
    #[serde(rename = "8.5")]
    V8_5,
}

impl UcsVersion {
    /// As written in files and plans: `9.1` or `8.5`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V9_1 => "9.1",
            Self::V8_5 => "8.5",
        }
    }

    /// The data sources this UCS really has, in the order they are read: `main` only on 9.x
    /// (asking for `archive` would read the one store again), `main` then `archive` on 8.5.
    pub fn data_sources(self) -> &'static [DataSource] {
        match self {
            Self::V9_1 => &[DataSource::Main],
            Self::V8_5 => &DataSource::ALL,
        }
    }

    /// Whether `archive` is a data source of its own.
    pub fn has_archive_role(self) -> bool {
        self == Self::V8_5
    }
}

impl std::fmt::Display for UcsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two UCS data-source roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSource {
    /// The live database.
    Main,
    /// The archive database; a deployment may have none.
    Archive,
}

impl DataSource {
    /// Both roles, main first.
    pub const ALL: [DataSource; 2] = [DataSource::Main, DataSource::Archive];

    /// The role's name, as UCS and the seed's logs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            DataSource::Main => "main",
            DataSource::Archive => "archive",
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An interaction's status. Anything but [`Stopped`](InteractionStatus::Stopped) is in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum InteractionStatus {
    /// Created, not yet routed.
    New,
    /// Waiting (queued, or parked in a workbin).
    Pending,
    /// Being handled.
    InProcess,
    /// Done; the only status that is not in progress.
    Stopped,
}

impl InteractionStatus {
    /// The status's name as plans, notes and fingerprints write it (`New`, `Pending`,
    /// `InProcess`, `Stopped`). Fingerprints hash it: changing a name changes every plan id.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "New",
            Self::Pending => "Pending",
            Self::InProcess => "InProcess",
            Self::Stopped => "Stopped",
        }
    }

    /// Whether the interaction is still in progress (the seed's Step #2).
    pub fn is_in_progress(self) -> bool {
        self != InteractionStatus::Stopped
    }
}

/// An identification request: a tenant and attributes that must all match, as the seed's
/// `{"TenantId":101,"EmailAddress":"jane.doe@company.com"}`.
#[derive(Clone, PartialEq, Eq)]
pub struct IdentifyRequest {
    /// The tenant to search.
    pub tenant: TenantId,
    /// Attribute name -> value; every pair must match. Personal data.
    pub attributes: BTreeMap<String, String>,
}

impl fmt::Debug for IdentifyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentifyRequest")
            .field("tenant", &self.tenant)
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What an identification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identification {
    /// The matching contacts, in the server's order.
    pub contacts: Vec<ContactId>,
    /// `false` when the answer may be capped by UCS's select limit (`NumberOfContactsFound`
    /// larger than the ids listed, or equal to the configured select limit): there may be
    /// more matches than listed, so nobody can be sure every record was found.
    pub complete: bool,
}

/// A contact and its attributes. Attributes are multi-valued in UCS (a contact may have
/// several e-mail addresses), hence a list per name.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The contact's id.
    pub id: ContactId,
    /// Its tenant.
    pub tenant: TenantId,
    /// Attribute name -> values. Personal data.
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contact")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One interaction as listed for a contact: enough to plan, fingerprint and check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionSummary {
    /// The interaction's id.
    pub id: InteractionId,
    /// `email`, `chat`, `voice`, ... as UCS names it.
    pub media_type: String,
    /// `Inbound`, `Outbound`, ... (UCS's `TypeId`), when the listing gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction_type: Option<String>,
    /// Its status.
    pub status: InteractionStatus,
    /// The workbin it sits in, if any.
    pub workbin: Option<String>,
    /// When it started.
    pub start_date: Option<Timestamp>,
    /// When it ended, if it has.
    pub end_date: Option<Timestamp>,
    /// The last modification stamp: changes whenever the interaction does.
    pub modified: Timestamp,
    /// How many attachments it has.
    pub attachment_count: u32,
}

impl InteractionSummary {
    /// Whether the interaction is in progress or parked in a workbin (the seed's Step #2).
    pub fn is_in_flight(&self) -> bool {
        self.status.is_in_progress() || self.workbin.is_some()
    }
}

/// All of a contact's interactions in one data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InteractionListing {
    /// The data source exists; here is everything in it for the contact.
    Found(Vec<InteractionSummary>),
    /// The deployment has no data source with this role. Not a failure: the seed reports it as
    /// "No interactions found for contact Id X in source archive" with this reason.
    SourceUnavailable {
        /// The reason, e.g. `Server: ucs-sim Msg: No data source with role 'archive' found`,
        /// rebuilt from fixed text and the (sanitised) server name: no personal data.
        reason: String,
    },
}

/// An attachment's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    /// The document id, to fetch its bytes.
    pub id: AttachmentId,
    /// Its file name (may be personal; do not log).
    pub name: String,
    /// Its MIME type.
    pub mime_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// An interaction's content: its text, structured fields and attachments' metadata.
#[derive(Clone, PartialEq)]
pub struct InteractionContent {
    /// The interaction's id.
    pub id: InteractionId,
    /// Its subject, if any. Personal data.
    pub subject: Option<String>,
    /// Its text (e-mail body, chat transcript, call notes). Personal data.
    pub text: Option<String>,
    /// Structured fields (as UCS's structured text / user data). Personal data.
    pub structured: serde_json::Map<String, serde_json::Value>,
    /// Its attachments.
    pub attachments: Vec<AttachmentMeta>,
}

impl fmt::Debug for InteractionContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InteractionContent")
            .field("id", &self.id)
            .field("text_len", &self.text.as_ref().map(String::len))
            .field("structured", &self.structured.keys().collect::<Vec<_>>())
            .field("attachments", &self.attachments.len())
            .finish()
    }
}

/// An attachment's bytes as they arrive: bounded memory whatever the size.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, UcsError>> + Send + 'static>>;

/// An attachment being downloaded.
pub struct AttachmentBody {
    /// The size the server announced, if it did.
    pub size: Option<u64>,
    /// The bytes, chunk by chunk. A stream that ends early yields a protocol error.
    pub bytes: ByteStream,
}

impl fmt::Debug for AttachmentBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachmentBody").field("size", &self.size).finish_non_exhaustive()
    }
}

/// A Context Services customer profile: free-form fields. Personal data.
///
/// See [`wire::context_services`].
#[derive(Clone, PartialEq)]
pub struct Profile {
    /// The profile id (the contact id, see [`wire`]).
    pub id: ContactId,
    /// The profile's fields.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("id", &self.id)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A GMS callback's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallbackState {
    /// Scheduled for later.
    Scheduled,
    /// Waiting for an agent.
    Queued,
    /// Being routed or processed.
    Processing,
    /// Done.
    Completed,
    /// Cancelled.
    Canceled,
    /// A state this connector does not know: treated as pending, to be safe.
    Other(String),
}

impl CallbackState {
    /// Whether the callback is still pending (blocks a deletion).
    pub fn is_pending(&self) -> bool {
        !matches!(self, CallbackState::Completed | CallbackState::Canceled)
    }
}

/// A GMS callback for a customer.
#[derive(Clone, PartialEq, Eq)]
pub struct Callback {
    /// The callback id.
    pub id: CallbackId,
    /// The callback service (execution name) that holds it, where it is cancelled. Safe as a
    /// URL segment (see [`wire::gms::is_service_name`]).
    pub service: String,
    /// Its state.
    pub state: CallbackState,
    /// When the customer asked to be called.
    pub desired_time: Option<Timestamp>,
    /// The number to call. Personal data: never logged, redacted from `Debug`.
    pub phone_number: String,
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback")
            .field("id", &self.id)
            .field("service", &self.service)
            .field("state", &self.state)
            .field("desired_time", &self.desired_time)
            .field("phone_number", &"<redacted>")
            .finish()
    }
}

/// One Context Services service of a customer, with its states and tasks, as Context Services
/// returned them (free-form JSON: personal data, redacted from `Debug`).
#[derive(Clone, PartialEq)]
pub struct CsService {
    /// The service id.
    pub id: ServiceId,
    /// Whether it was found as an anonymous service (by one of the contact's phone numbers)
    /// rather than among the customer's services.
    pub anonymous: bool,
    /// The service resource.
    pub service: serde_json::Map<String, serde_json::Value>,
    /// Its states (active and completed).
    pub states: Vec<serde_json::Value>,
    /// Its tasks (active and completed).
    pub tasks: Vec<serde_json::Value>,
}

impl fmt::Debug for CsService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsService")
            .field("id", &self.id)
            .field("anonymous", &self.anonymous)
            .field("states", &self.states.len())
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

/// What a delete (or cancel) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteOutcome {
    /// It existed and this call removed it.
    Deleted,
    /// It was already gone when this call's first attempt reached the server.
    AlreadyAbsent,
    /// An attempt's answer was lost (a timeout, a dropped connection, a 5xx) and the thing was
    /// then found absent: that attempt most likely removed it. Only [`Ucs::delete_contact`]
    /// tells this apart (it confirms by a read instead of repeating the delete).
    AbsentAfterLostAnswer,
}

/// Everything the engine needs from UCS, Context Services and GMS.
///
/// Reads are idempotent; [`stop_interaction`](Ucs::stop_interaction) and
/// [`cancel_callback`](Ucs::cancel_callback) are idempotent by nature;
/// [`delete_contact`](Ucs::delete_contact) is not retried blindly (see [`Connector`]).
pub trait Ucs: Send + Sync {
    /// Contacts of the tenant whose attributes match every pair of the request. Never creates
    /// a contact (a transport that cannot guarantee that refuses the call).
    fn identify_contacts(
        &self,
        request: &IdentifyRequest,
    ) -> impl Future<Output = Result<Identification, UcsError>> + Send;

    /// A contact's tenant and attributes; [`ErrorKind::NotFound`] when there is none.
    fn get_contact(
        &self,
        contact: &ContactId,
    ) -> impl Future<Output = Result<Contact, UcsError>> + Send;

    /// All of a contact's interactions in a data source (UCS's `GetInteractionsForContact`
    /// has no paging: see [`wire::InteractionsResult`]).
    fn list_interactions(
        &self,
        contact: &ContactId,
        source: DataSource,
    ) -> impl Future<Output = Result<InteractionListing, UcsError>> + Send;

    /// An interaction's content and attachment metadata.
    fn get_interaction_content(
        &self,
        interaction: &InteractionId,
        source: DataSource,
    ) -> impl Future<Output = Result<InteractionContent, UcsError>> + Send;

    /// Streams an attachment's bytes.
    fn open_attachment(
        &self,
        attachment: &AttachmentId,
        source: DataSource,
    ) -> impl Future<Output = Result<AttachmentBody, UcsError>> + Send;

    /// Stops an interaction, as listed (its id, type and media type go into the request),
    /// in `tenant`. Stopping a stopped interaction succeeds. `reason` is free text kept by the
    /// server; put no personal data in it.
    fn stop_interaction(
        &self,
        interaction: &InteractionSummary,
        tenant: TenantId,
        reason: &str,
    ) -> impl Future<Output = Result<(), UcsError>> + Send;

    /// Deletes a contact with all its interactions, in every data source.
    fn delete_contact(
        &self,
        contact: &ContactId,
    ) -> impl Future<Output = Result<DeleteOutcome, UcsError>> + Send;

    /// The contact's Context Services profile, if it has one.
    fn get_profile(
        &self,
        contact: &ContactId,
    ) -> impl Future<Output = Result<Option<Profile>, UcsError>> + Send;

    /// Deletes the contact's Context Services profile.
    fn delete_profile(
        &self,
        contact: &ContactId,
    ) -> impl Future<Output = Result<DeleteOutcome, UcsError>> + Send;

    /// The customer's Context Services services, each with its states and tasks.
    fn list_services(
        &self,
        contact: &ContactId,
    ) -> impl Future<Output = Result<Vec<CsService>, UcsError>> + Send;

    /// The anonymous services keyed by one of the contact's phone numbers (a "contact key"),
    /// each with its states and tasks.
    fn list_anonymous_services(
        &self,
        contact: &Contact,
    ) -> impl Future<Output = Result<Vec<CsService>, UcsError>> + Send;

    /// Deletes a Context Services service with its states and tasks.
    fn delete_service(
        &self,
        service: &ServiceId,
    ) -> impl Future<Output = Result<DeleteOutcome, UcsError>> + Send;

    /// The GMS callbacks on the contact's phone numbers, across every callback service (every
    /// state; filter with [`CallbackState::is_pending`]).
    fn list_callbacks(
        &self,
        contact: &Contact,
    ) -> impl Future<Output = Result<Vec<Callback>, UcsError>> + Send;

    /// Cancels a GMS callback in the service that holds it.
    fn cancel_callback(
        &self,
        callback: &Callback,
    ) -> impl Future<Output = Result<DeleteOutcome, UcsError>> + Send;
}

/// All of a contact's interactions in a data source: the stable entry point the engine uses.
/// `page_size` is kept for callers and ignored: UCS's `GetInteractionsForContact` does not page.
pub async fn list_all_interactions<U: Ucs + ?Sized>(
    ucs: &U,
    contact: &ContactId,
    source: DataSource,
    page_size: u32,
) -> Result<InteractionListing, UcsError> {
    let _ = page_size;
    ucs.list_interactions(contact, source).await
}
