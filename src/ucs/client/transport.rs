//! The seam between the connector and a wire protocol.

use std::future::Future;

use crate::ucs::{
    AttachmentBody, AttachmentId, Callback, Contact, ContactId, CsService, DataSource,
    DeleteOutcome, Identification, IdentifyRequest, InteractionContent, InteractionId,
    InteractionListing, InteractionSummary, Profile, ServiceId, TenantId, UcsError,
};

/// One wire protocol to UCS (and Context Services, GMS): each method is ONE attempt, with a
/// typed result or a typed [`UcsError`] whose [`kind`](UcsError::kind) says whether it is
/// worth retrying. Retries and their backoff, the concurrency limit, the rate limit and the
/// delete-then-confirm logic are not here: they live in [`Connector`](super::Connector),
/// above every transport, so every transport gets the same guarantees.
///
/// Contract for every implementation:
/// - never create anything: identification asks the server not to create a contact and
///   fails with a permanent error if the server says it created one anyway;
/// - a missing object is [`ErrorKind::NotFound`](crate::ucs::ErrorKind::NotFound), a
///   deployment without the asked data-source role is
///   [`InteractionListing::SourceUnavailable`] (not an error);
/// - a delete of something already absent is [`DeleteOutcome::AlreadyAbsent`];
/// - no personal data in errors: keep a server's fault code, never its fault text.
///
/// # Transports
///
/// [`RestTransport`](super::RestTransport) speaks UCS 9.1's REST API. UCS 8.5 has no REST
/// API for these methods: it is reached through Platform SDK, the ESP protocol over TCP.
/// A Platform SDK transport (not written: it needs Genesys's PSDK libraries, Java or .NET,
/// or a reimplementation of ESP's framing) would need:
/// - a connection: an `UniversalContactServerProtocol` channel to UCS's ESP port (host/port
///   of the UCS application in Configuration Server, or through a connection to Config
///   Server to look them up), with ADDP keep-alive (`addp-timeout`, `addp-remote-timeout`,
///   `addp-trace`) so a dead peer is noticed, optional TLS, a client name/type for the
///   handshake, and reconnection (a lost connection is [`Transient`](crate::ucs::ErrorKind));
/// - the request per method: `RequestIdentifyContact` (`TenantId`, `CreateContact = false`,
///   `OtherFields` holding the attributes, `ReturnUnique`), `RequestGetAttributes`
///   (`ContactId`, `AttributeList`), `RequestDeleteContact`,
///   `RequestGetInteractionsForContact` (`ContactId`, `DataSource`, `AttributeList`; or the
///   `RequestInteractionListGet` / `...GetNextPage` (`ScrollId`) / `...Release` cursor,
///   always released), `RequestGetInteractionContent` (`IncludeAttachments`,
///   `IncludeBinaryContent`), `RequestGetDocument` (`DocumentId`, `IncludeBinaryContent`,
///   `DataSource`) and `RequestStopInteraction` (`InteractionId`, `Reason`, `TenantId`);
///   ESP answers are `Event...` messages matched to the request by reference id;
/// - faults: ESP answers a failed request with `EventError` carrying a `FaultCode` and a
///   `FaultString`, the same pair the REST answers carry, so the same classification applies
///   ([`wire::classify_fault`](crate::ucs::wire::classify_fault)): fault 510 "not found in
///   database" is not-found, "No data source with role" (UCS 8.5's main/archive split) is
///   [`InteractionListing::SourceUnavailable`], a closed or timed-out channel is transient,
///   everything else permanent;
/// - binary content: `EventGetDocument` carries the bytes in the message; ESP messages are
///   whole, so memory is bounded by the largest attachment (not by a stream, as over REST).
pub trait Transport: Send + Sync + 'static {
    /// One identification attempt.
    fn identify_contacts(
        &self,
        request: &IdentifyRequest,
    ) -> impl Future<Output = Result<Identification, UcsError>> + Send;

    /// One attempt at a contact's attributes.
    fn get_contact(
        &self,
        contact: &ContactId,
    ) -> impl Future<Output = Result<Contact, UcsError>> + Send;

    /// One attempt at a contact's interactions in a data source.
    fn list_interactions(
        &self,
        contact: &ContactId,
        source: DataSource,
    ) -> impl Future<Output = Result<InteractionListing, UcsError>> + Send;

    /// One attempt at an interaction's content.
    fn get_interaction_content(
        &self,
        interaction: &InteractionId,
        source: DataSource,
    ) -> impl Future<Output = Result<InteractionContent, UcsError>> + Send;

    /// One attempt at opening an attachment's bytes.
    fn open_attachment(
        &self,
        attachment: &AttachmentId,
        source: DataSource,
    ) -> impl Future<Output = Result<AttachmentBody, UcsError>> + Send;

    /// One attempt at stopping an interaction.
    fn stop_interaction(
        &self,
        interaction: &InteractionSummary,
        tenant: TenantId,
        reason: &str,
    ) -> impl Future<Output = Result<(), UcsError>> + Send;

    /// One attempt at deleting a contact (not-found is [`DeleteOutcome::AlreadyAbsent`]).
    fn delete_contact(
        &self,
        contact: &ContactId,
    ) -> impl Future<Output = Result<DeleteOutcome, UcsError>> + Send;

    /// One attempt at the contact's Context Services profile.
    fn get_profile(
        &self,
        contact: &ContactId,
    ) -> impl Future<Output = Result<Option<Profile>, UcsError>> + Send;

    /// One attempt at deleting the contact's Context Services profile.
    fn delete_profile(
        &self,
        contact: &ContactId,
    ) -> impl Future<Output = Result<DeleteOutcome, UcsError>> + Send;

    /// One attempt at the customer's Context Services services, each with its states and
    /// tasks (several HTTP calls over REST; retried as a whole).
    fn list_services(
        &self,
        contact: &ContactId,
    ) -> impl Future<Output = Result<Vec<CsService>, UcsError>> + Send;

    /// One attempt at the anonymous services keyed by the contact's phone numbers.
    fn list_anonymous_services(
        &self,
        contact: &Contact,
    ) -> impl Future<Output = Result<Vec<CsService>, UcsError>> + Send;

    /// One attempt at deleting a Context Services service (not-found is already absent).
    fn delete_service(
        &self,
        service: &ServiceId,
    ) -> impl Future<Output = Result<DeleteOutcome, UcsError>> + Send;

    /// One attempt at the GMS callbacks on the contact's phone numbers (and configured lookup
    /// keys), across every callback service.
    fn list_callbacks(
        &self,
        contact: &Contact,
    ) -> impl Future<Output = Result<Vec<Callback>, UcsError>> + Send;

    /// One attempt at cancelling a GMS callback in its own service.
    fn cancel_callback(
        &self,
        callback: &Callback,
    ) -> impl Future<Output = Result<DeleteOutcome, UcsError>> + Send;
}
