//! The REST transport: one HTTP(S) attempt per call, UCS 9.1's REST API as
//! [`wire`](crate::ucs::wire) maps it, with timeouts, a body-size limit and typed errors.

use std::fmt;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;

use super::{Auth, ClientConfig, ConfigError, Transport};
use crate::ucs::error::sanitise_code;
use crate::ucs::wire::document::{DecodeError, DocumentDecoder};
use crate::ucs::wire::{self, FaultMeaning, Operation};
use crate::ucs::{
    AttachmentBody, AttachmentId, AttachmentMeta, Callback, CallbackState, Contact, ContactId,
    CsService, DataSource, DeleteOutcome, ErrorKind, Identification, IdentifyRequest,
    InteractionContent, InteractionId, InteractionListing, InteractionSummary, Profile,
    ProtocolFault, ServiceId, TenantId, UcsError,
};

/// The largest error (or fault) body read.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// UCS 9.1 REST, Context Services and GMS over HTTP(S). One attempt per call; put a
/// [`Connector`](super::Connector) over it for retries and limits (as
/// [`RestClient`](super::RestClient) does).
pub struct RestTransport {
    /// The HTTP client of each backend: each trusts its own CA file (one client, shared, where
    /// they trust the same).
    http: reqwest::Client,
    context_services_http: reqwest::Client,
    gms_http: reqwest::Client,
    pub(super) config: ClientConfig,
    ucs: String,
    pub(super) context_services: String,
    pub(super) gms: String,
    ucs_auth: Option<HeaderValue>,
    context_services_auth: Option<HeaderValue>,
    gms_auth: Option<HeaderValue>,
}

impl fmt::Debug for RestTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestTransport").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A successful answer, or the missing data-source role (not an error for listings).
enum Answer<T> {
    Ok(T),
    NoDataSource { server: Option<String> },
}

impl<T> Answer<T> {
    /// The value; a missing role is a permanent error where a listing is not being read.
    fn require(self, operation: Operation, subject: Option<&str>) -> Result<T, UcsError> {
        match self {
            Answer::Ok(value) => Ok(value),
            Answer::NoDataSource { server } => {
                Err(UcsError::new(operation, ErrorKind::Permanent, "no data source with this role")
                    .with_server(server.as_deref())
                    .with_subject(subject))
            }
        }
    }
}

fn checked_url(text: &str, which: &'static str) -> Result<String, ConfigError> {
    let url = Url::parse(text).map_err(|_| ConfigError::InvalidUrl { which })?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(ConfigError::InvalidUrl { which });
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// An HTTP client with the configured timeouts and pool, trusting the built-in roots and, when
/// given, the CA certificates in `ca_file`.
fn http_client(
    config: &ClientConfig,
    ca_file: Option<&std::path::Path>,
) -> Result<reqwest::Client, ConfigError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .read_timeout(config.read_timeout)
        .pool_max_idle_per_host(config.concurrency)
        .tcp_nodelay(true);
    if let Some(path) = ca_file {
        let unusable = |reason: String| ConfigError::CaFile { path: path.to_owned(), reason };
        let pem = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|_| unusable("not a PEM bundle".to_owned()))?;
        if certificates.is_empty() {
            return Err(unusable("no certificate in it".to_owned()));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| ConfigError::Http(e.to_string()))
}

impl RestTransport {
    /// Builds the transport. Installs the `ring` crypto provider for rustls if none is.
    pub fn new(config: ClientConfig) -> Result<Self, ConfigError> {
        // Another part of the process may have installed a provider already: that is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ucs = checked_url(&config.ucs_url, "the UCS URL")?;
        let context_services = match &config.context_services_url {
            Some(url) => checked_url(url, "the Context Services URL")?,
            None => ucs.clone(),
        };
        let gms = match &config.gms_url {
            Some(url) => checked_url(url, "the GMS URL")?,
            None => ucs.clone(),
        };
        if config.concurrency == 0 {
            return Err(ConfigError::Zero { which: "concurrency" });
        }
        let http = http_client(&config, config.ca_file.as_deref())?;
        // Context Services and GMS trust UCS's CA file unless they name one of their own.
        let own = |file: &Option<std::path::PathBuf>| match file {
            Some(path) => http_client(&config, Some(path)),
            None => Ok(http.clone()),
        };
        let context_services_http = own(&config.context_services_ca_file)?;
        let gms_http = own(&config.gms_ca_file)?;
        let ucs_auth = authorization_header(&config.auth)?;
        let context_services_auth = match &config.context_services_auth {
            Some(auth) => authorization_header(auth)?,
            None => ucs_auth.clone(),
        };
        let gms_auth = match &config.gms_auth {
            Some(auth) => authorization_header(auth)?,
            None => ucs_auth.clone(),
        };
        Ok(Self {
            http,
            context_services_http,
            gms_http,
            config,
            ucs,
            context_services,
            gms,
            ucs_auth,
            context_services_auth,
            gms_auth,
        })
    }

    /// The configuration the transport was built from.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub(super) fn request(
        &self,
        operation: Operation,
        method: Method,
        url: &str,
    ) -> RequestBuilder {
        let (http, authorization) = match operation.backend() {
            wire::Backend::ContextServices => {
                (&self.context_services_http, &self.context_services_auth)
            }
            wire::Backend::Gms => (&self.gms_http, &self.gms_auth),
            wire::Backend::Ucs => (&self.http, &self.ucs_auth),
        };
        let builder = http.request(method, url);
        match authorization {
            Some(value) => builder.header(AUTHORIZATION, value.clone()),
            None => builder,
        }
    }

    /// Sends the request; a 2xx answer is returned, anything else becomes the typed error
    /// (or the missing data-source role) from its status and fault.
    async fn send(
        &self,
        operation: Operation,
        subject: Option<&str>,
        request: RequestBuilder,
    ) -> Result<Answer<Response>, UcsError> {
        let started = std::time::Instant::now();
        let response =
            request.send().await.map_err(|error| send_error(operation, subject, &error))?;
        let status = response.status().as_u16();
        tracing::debug!(
            operation = %operation,
            subject = subject.unwrap_or(""),
            status,
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "UCS call answered"
        );
        if wire::status_meaning(status) == wire::StatusMeaning::Success {
            return Ok(Answer::Ok(response));
        }
        let body = read_limited(operation, response, MAX_ERROR_BODY).await.unwrap_or_default();
        match failure(operation, subject, status, &body) {
            Failure::NoDataSource { server } => Ok(Answer::NoDataSource { server }),
            Failure::Error(error) => Err(error),
        }
    }

    /// One call answering JSON: the status, the fault (in any answer) and the body.
    async fn json<T: DeserializeOwned>(
        &self,
        operation: Operation,
        subject: Option<&str>,
        request: RequestBuilder,
    ) -> Result<Answer<T>, UcsError> {
        let response = match self.send(operation, subject, request).await? {
            Answer::Ok(response) => response,
            Answer::NoDataSource { server } => return Ok(Answer::NoDataSource { server }),
        };
        let status = response.status().as_u16();
        if !has_content_type(&response, wire::JSON) {
            return Err(UcsError::protocol(operation, ProtocolFault::WrongContentType)
                .with_subject(subject));
        }
        let body = read_limited(operation, response, self.config.max_body_bytes)
            .await
            .map_err(|e| e.with_subject(subject))?;
        if let Some(answer) = fault_in(operation, subject, status, &body) {
            return answer;
        }
        serde_json::from_slice(&body)
            .map(Answer::Ok)
            .map_err(|_| malformed(operation).with_subject(subject))
    }

    /// One call whose success body does not matter (but may be a fault).
    async fn empty(
        &self,
        operation: Operation,
        subject: Option<&str>,
        request: RequestBuilder,
    ) -> Result<Answer<()>, UcsError> {
        let response = match self.send(operation, subject, request).await? {
            Answer::Ok(response) => response,
            Answer::NoDataSource { server } => return Ok(Answer::NoDataSource { server }),
        };
        let status = response.status().as_u16();
        let body = read_limited(operation, response, self.config.max_body_bytes)
            .await
            .map_err(|e| e.with_subject(subject))?;
        if let Some(answer) = fault_in(operation, subject, status, &body) {
            return answer;
        }
        Ok(Answer::Ok(()))
    }

    fn ucs_url(&self, path: &str) -> String {
        format!("{}{path}", self.ucs)
    }

    async fn delete(
        &self,
        operation: Operation,
        subject: &str,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<DeleteOutcome, UcsError> {
        let request = self.request(operation, Method::DELETE, url).query(query);
        match self.empty(operation, Some(subject), request).await {
            Ok(answer) => answer.require(operation, Some(subject)).map(|()| DeleteOutcome::Deleted),
            Err(error) if error.kind == ErrorKind::NotFound => Ok(DeleteOutcome::AlreadyAbsent),
            Err(error) => Err(error),
        }
    }
}

enum Failure {
    NoDataSource { server: Option<String> },
    Error(UcsError),
}

/// The typed error of a failed (or faulted) answer. The fault's text is looked at for fixed
/// phrases only, and never copied.
fn failure(operation: Operation, subject: Option<&str>, status: u16, body: &[u8]) -> Failure {
    let fault = wire::Fault::parse(body);
    let meaning = wire::classify_fault(status, fault.as_ref());
    let server = fault.as_ref().and_then(wire::Fault::server).map(str::to_owned);
    if meaning == FaultMeaning::NoDataSource {
        return Failure::NoDataSource { server };
    }
    let (kind, text) = match meaning {
        FaultMeaning::NotFound => (ErrorKind::NotFound, "not found"),
        FaultMeaning::Transient => (ErrorKind::Transient, "server temporarily unavailable"),
        FaultMeaning::Permanent | FaultMeaning::NoDataSource => {
            (ErrorKind::Permanent, "request refused")
        }
    };
    let code = match &fault {
        Some(fault) => Some(fault.code.clone()),
        None => other_error_code(body),
    };
    Failure::Error(
        UcsError::new(operation, kind, text)
            .with_status(status)
            .with_code(code.as_deref())
            .with_server(server.as_deref())
            .with_subject(subject),
    )
}

/// The error code of a non-UCS answer: Context Services / GMS `{"exception": ...}`, or the
/// simulator's `{"Error":{"Code": ...}}`.
fn other_error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .get("exception")
        .and_then(serde_json::Value::as_str)
        .or_else(|| value.pointer("/Error/Code").and_then(serde_json::Value::as_str))
        .map(|code| code.rsplit('.').next().unwrap_or(code).to_owned())
}

/// A fault in a 2xx answer, as the error it means.
fn fault_in<T>(
    operation: Operation,
    subject: Option<&str>,
    status: u16,
    body: &[u8],
) -> Option<Result<Answer<T>, UcsError>> {
    if !body.windows(9).any(|window| window == b"FaultCode") {
        return None;
    }
    wire::Fault::parse(body)?;
    Some(match failure(operation, subject, status, body) {
        Failure::NoDataSource { server } => Ok(Answer::NoDataSource { server }),
        Failure::Error(error) => Err(error),
    })
}

fn authorization_header(auth: &Auth) -> Result<Option<HeaderValue>, ConfigError> {
    match auth {
        Auth::None => Ok(None),
        Auth::Basic { user, password } => {
            use base64::Engine as _;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            sensitive_header(&format!("Basic {token}")).map(Some)
        }
        Auth::Bearer(token) => sensitive_header(&format!("Bearer {token}")).map(Some),
    }
}

fn sensitive_header(text: &str) -> Result<HeaderValue, ConfigError> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| ConfigError::Http("the credentials are not valid header text".to_owned()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Reads a whole body, refusing more than `max` bytes.
pub(super) async fn read_limited(
    operation: Operation,
    response: Response,
    max: u64,
) -> Result<Vec<u8>, UcsError> {
    if response.content_length().is_some_and(|length| length > max) {
        return Err(UcsError::protocol(operation, ProtocolFault::Oversized));
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|error| body_error(operation, &error))?;
        if u64::try_from(body.len() + chunk.len()).unwrap_or(u64::MAX) > max {
            return Err(UcsError::protocol(operation, ProtocolFault::Oversized));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A request that got no answer: transient (a timeout, a refused or dropped connection), with
/// what happened in words that hold no personal data; permanent when TLS refused the server
/// (its certificate is not signed by a trusted CA, or names another host): retrying cannot
/// change a certificate.
pub(super) fn send_error(
    operation: Operation,
    subject: Option<&str>,
    error: &reqwest::Error,
) -> UcsError {
    if let Some(refusal) = tls_refusal(error) {
        return UcsError::new(operation, ErrorKind::Permanent, refusal).with_subject(subject);
    }
    let detail = if error.is_timeout() {
        "timed out waiting for the server"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "connection dropped before a response"
    };
    UcsError::new(operation, ErrorKind::Transient, detail).with_subject(subject)
}

/// What TLS said, when a connect error is TLS refusing the server: the rustls error somewhere
/// in the error's chain (inside I/O errors, where `source` does not look).
fn tls_refusal(error: &reqwest::Error) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = next {
        // I/O errors nest (hyper's connect error holds one that holds tokio-rustls's).
        let mut error = error;
        while let Some(inner) = error.downcast_ref::<std::io::Error>().and_then(|e| e.get_ref()) {
            error = inner;
        }
        let tls = error.downcast_ref::<rustls::Error>();
        match tls {
            Some(rustls::Error::InvalidCertificate(why)) => {
                return Some(format!(
                    "the server's TLS certificate was refused ({why:?}): is the CA that signed it \
                     in the endpoint's `caFile`, and does it name the host of the URL?"
                ));
            }
            Some(other) => return Some(format!("TLS failed: {other}")),
            None => next = error.source(),
        }
    }
    None
}

fn body_error(operation: Operation, error: &reqwest::Error) -> UcsError {
    if error.is_timeout() {
        UcsError::new(operation, ErrorKind::Transient, "timed out reading the body")
    } else {
        UcsError::protocol(operation, ProtocolFault::Truncated)
    }
}

pub(super) fn has_content_type(response: &Response, expected: &str) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(expected))
}

pub(super) fn malformed(operation: Operation) -> UcsError {
    UcsError::protocol(operation, ProtocolFault::Malformed)
}

fn decode_error(operation: Operation, error: DecodeError, subject: &str) -> UcsError {
    let error = match error {
        DecodeError::Malformed => malformed(operation),
        DecodeError::Truncated => UcsError::protocol(operation, ProtocolFault::Truncated),
        DecodeError::Fault(code) => {
            UcsError::new(operation, ErrorKind::Permanent, "request refused").with_code(Some(&code))
        }
    };
    error.with_subject(Some(subject))
}

fn summary_from_wire(
    operation: Operation,
    wire: wire::WireInteraction,
) -> Result<InteractionSummary, UcsError> {
    Ok(InteractionSummary {
        id: InteractionId::new(&wire.id).map_err(|_| malformed(operation))?,
        media_type: wire.media_type_id,
        interaction_type: wire.type_id,
        status: wire.status,
        workbin: wire.workbin,
        start_date: wire.start_date,
        end_date: wire.end_date,
        modified: wire.modified_date,
        attachment_count: wire.attachment_count,
    })
}

pub(super) fn callback_state(state: &str) -> CallbackState {
    match state.to_ascii_uppercase().as_str() {
        "SCHEDULED" => CallbackState::Scheduled,
        "QUEUED" => CallbackState::Queued,
        "ROUTING" | "PROCESSING" => CallbackState::Processing,
        "COMPLETED" => CallbackState::Completed,
        "CANCELED" | "CANCELLED" => CallbackState::Canceled,
        _ => CallbackState::Other(
            state.chars().filter(char::is_ascii_alphanumeric).take(32).collect(),
        ),
    }
}

/// The contact ids of an identification answer, in order, without repeats.
fn identification(
    operation: Operation,
    result: &wire::IdentifyResult,
    select_limit: Option<u32>,
) -> Result<Identification, UcsError> {
    if result.contact_created == Some(true) {
        // The documented default would have created a contact; the request said "false", so
        // this is a server that did not listen. Name the contact so it can be removed.
        return Err(UcsError::new(
            operation,
            ErrorKind::Permanent,
            "the server reports that identification created a contact",
        )
        .with_subject(result.contact_id.as_deref().filter(|id| ContactId::new(id).is_ok())));
    }
    let mut contacts: Vec<ContactId> = Vec::new();
    let listed = result.contact_id_list.iter().chain(result.contact_id.iter());
    for id in listed {
        let id = ContactId::new(id).map_err(|_| malformed(operation))?;
        if !contacts.contains(&id) {
            contacts.push(id);
        }
    }
    let listed = u64::try_from(contacts.len()).unwrap_or(u64::MAX);
    let found = result.number_found.unwrap_or(listed);
    let capped = select_limit.is_some_and(|limit| found >= u64::from(limit));
    Ok(Identification { complete: found <= listed && !capped, contacts })
}

impl Transport for RestTransport {
    async fn identify_contacts(
        &self,
        request: &IdentifyRequest,
    ) -> Result<Identification, UcsError> {
        let operation = Operation::IdentifyContact;
        if request.attributes.is_empty() {
            return Err(UcsError::new(operation, ErrorKind::Permanent, "no attribute to match"));
        }
        let parameters = wire::identify_parameters(request.tenant.0, &request.attributes).map_err(
            |wire::ReservedName| {
                UcsError::new(
                    operation,
                    ErrorKind::Permanent,
                    "an attribute name is an IdentifyContact parameter",
                )
            },
        )?;
        let body = wire::Envelope { parameters, user_data: serde_json::Map::new() };
        let url = self.ucs_url(wire::IDENTIFY_CONTACT);
        let result: wire::IdentifyResult = self
            .json(operation, None, self.request(operation, Method::POST, &url).json(&body))
            .await?
            .require(operation, None)?;
        identification(operation, &result, self.config.select_limit)
    }

    async fn get_contact(&self, contact: &ContactId) -> Result<Contact, UcsError> {
        let operation = Operation::GetAttributes;
        let url = self.ucs_url(wire::GET_ATTRIBUTES);
        let subject = Some(contact.as_str());
        let request = self
            .request(operation, Method::GET, &url)
            .query(&[(wire::Q_CONTACT_ID, contact.as_str())]);
        let result: wire::AttributesResult =
            self.json(operation, subject, request).await?.require(operation, subject)?;
        let id = ContactId::new(&result.contact_id).map_err(|_| malformed(operation))?;
        if &id != contact {
            return Err(malformed(operation).with_subject(subject));
        }
        let tenant = result
            .tenant_id
            .map(TenantId)
            .or(self.config.tenant)
            .ok_or_else(|| malformed(operation).with_subject(subject))?;
        Ok(Contact { id, tenant, attributes: result.attributes })
    }

    async fn list_interactions(
        &self,
        contact: &ContactId,
        source: DataSource,
    ) -> Result<InteractionListing, UcsError> {
        let operation = Operation::GetInteractionsForContact;
        let url = self.ucs_url(wire::GET_INTERACTIONS);
        let subject = Some(contact.as_str());
        let attributes = wire::INTERACTION_ATTRIBUTES.join(",");
        let request = self.request(operation, Method::GET, &url).query(&[
            (wire::Q_CONTACT_ID, contact.as_str()),
            (wire::Q_DATA_SOURCE, wire::data_source_name(source)),
            (wire::Q_ATTRIBUTE_LIST, attributes.as_str()),
        ]);
        let result: wire::InteractionsResult = match self.json(operation, subject, request).await? {
            Answer::Ok(result) => result,
            Answer::NoDataSource { server } => {
                // The reason is rebuilt from fixed text and the (sanitised) server name, never
                // copied from the server's message.
                let server = server
                    .as_deref()
                    .map(sanitise_code)
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "unknown".to_owned());
                let reason = format!(
                    "Server: {server} Msg: {} '{}' found",
                    wire::NO_DATA_SOURCE_MESSAGE,
                    source.as_str()
                );
                return Ok(InteractionListing::SourceUnavailable { reason });
            }
        };
        let interactions = result
            .interactions
            .into_iter()
            .map(|wire| summary_from_wire(operation, wire).map_err(|e| e.with_subject(subject)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InteractionListing::Found(interactions))
    }

    async fn get_interaction_content(
        &self,
        interaction: &InteractionId,
        source: DataSource,
    ) -> Result<InteractionContent, UcsError> {
        let operation = Operation::GetInteractionContent;
        let url = self.ucs_url(wire::GET_CONTENT);
        let subject = Some(interaction.as_str());
        let request = self.request(operation, Method::GET, &url).query(&[
            (wire::Q_INTERACTION_ID, interaction.as_str()),
            (wire::Q_INCLUDE_ATTACHMENTS, wire::TRUE),
            (wire::Q_INCLUDE_BINARY_CONTENT, wire::FALSE),
            (wire::Q_DATA_SOURCE, wire::data_source_name(source)),
        ]);
        let result: wire::ContentResult =
            self.json(operation, subject, request).await?.require(operation, subject)?;
        let attachments = result
            .attachments
            .into_iter()
            .map(|a| {
                Ok(AttachmentMeta {
                    id: AttachmentId::new(&a.document_id).map_err(|_| malformed(operation))?,
                    name: a.the_name,
                    mime_type: a.mime_type,
                    size: a.the_size,
                })
            })
            .collect::<Result<Vec<_>, UcsError>>()?;
        let id = InteractionId::new(&result.id).map_err(|_| malformed(operation))?;
        if &id != interaction {
            return Err(malformed(operation).with_subject(subject));
        }
        Ok(InteractionContent {
            id,
            subject: result.subject,
            text: result.text,
            structured: result.structured_fields,
            attachments,
        })
    }

    async fn open_attachment(
        &self,
        attachment: &AttachmentId,
        source: DataSource,
    ) -> Result<AttachmentBody, UcsError> {
        let operation = Operation::GetDocument;
        let url = self.ucs_url(wire::GET_DOCUMENT);
        let subject = Some(attachment.as_str());
        let request = self.request(operation, Method::GET, &url).query(&[
            (wire::Q_DOCUMENT_ID, attachment.as_str()),
            (wire::Q_INCLUDE_BINARY_CONTENT, wire::TRUE),
            (wire::Q_DATA_SOURCE, wire::data_source_name(source)),
        ]);
        let response = self.send(operation, subject, request).await?.require(operation, subject)?;
        let owned = attachment.as_str().to_owned();
        if has_content_type(&response, wire::OCTET_STREAM) {
            // Raw bytes: not what UCS documents, accepted as they are.
            let size = response.content_length();
            let bytes = response.bytes_stream().map(move |chunk| {
                chunk.map_err(|error| body_error(operation, &error).with_subject(Some(&owned)))
            });
            return Ok(AttachmentBody { size, bytes: Box::pin(bytes) });
        }
        if !has_content_type(&response, wire::JSON) {
            return Err(UcsError::protocol(operation, ProtocolFault::WrongContentType)
                .with_subject(subject));
        }
        let decoder = DocumentDecoder::new(&wire::DOCUMENT_CONTENT_FIELDS);
        let state = Some((response.bytes_stream(), decoder, owned));
        let bytes = futures_util::stream::unfold(state, move |state| async move {
            let (mut chunks, mut decoder, subject) = state?;
            loop {
                match chunks.next().await {
                    Some(Ok(chunk)) => {
                        let mut out = Vec::with_capacity(chunk.len() / 4 * 3 + 3);
                        if let Err(error) = decoder.feed(&chunk, &mut out) {
                            return Some((Err(decode_error(operation, error, &subject)), None));
                        }
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), Some((chunks, decoder, subject))));
                        }
                    }
                    Some(Err(error)) => {
                        let error = body_error(operation, &error).with_subject(Some(&subject));
                        return Some((Err(error), None));
                    }
                    None => {
                        return match decoder.finish() {
                            Ok(()) => None,
                            Err(error) => {
                                Some((Err(decode_error(operation, error, &subject)), None))
                            }
                        };
                    }
                }
            }
        });
        // The JSON's length is not the document's: the size is the metadata's (`TheSize`).
        Ok(AttachmentBody { size: None, bytes: Box::pin(bytes) })
    }

    async fn stop_interaction(
        &self,
        interaction: &InteractionSummary,
        tenant: TenantId,
        reason: &str,
    ) -> Result<(), UcsError> {
        let operation = Operation::StopInteraction;
        let url = self.ucs_url(wire::STOP_INTERACTION);
        let subject = Some(interaction.id.as_str());
        let body = wire::Envelope {
            parameters: wire::StopParams {
                interaction_id: interaction.id.as_str().to_owned(),
                reason: reason.to_owned(),
                delete: wire::FALSE.to_owned(),
                interaction_type: interaction.interaction_type.clone(),
                media_type: Some(interaction.media_type.clone()).filter(|m| !m.is_empty()),
                tenant_id: tenant.0,
            },
            user_data: serde_json::Map::new(),
        };
        let request = self.request(operation, Method::PUT, &url).json(&body);
        self.empty(operation, subject, request).await?.require(operation, subject)
    }

    async fn delete_contact(&self, contact: &ContactId) -> Result<DeleteOutcome, UcsError> {
        let url = self.ucs_url(wire::DELETE_CONTACT);
        self.delete(
            Operation::DeleteContact,
            contact.as_str(),
            &url,
            &[(wire::Q_CONTACT_ID, contact.as_str())],
        )
        .await
    }

    async fn get_profile(&self, contact: &ContactId) -> Result<Option<Profile>, UcsError> {
        self.cs_get_profile(contact).await
    }

    async fn delete_profile(&self, contact: &ContactId) -> Result<DeleteOutcome, UcsError> {
        self.cs_delete_profile(contact).await
    }

    async fn list_services(&self, contact: &ContactId) -> Result<Vec<CsService>, UcsError> {
        self.cs_list_services(contact).await
    }

    async fn list_anonymous_services(&self, contact: &Contact) -> Result<Vec<CsService>, UcsError> {
        self.cs_list_anonymous_services(contact).await
    }

    async fn delete_service(&self, service: &ServiceId) -> Result<DeleteOutcome, UcsError> {
        self.cs_delete_service(service).await
    }

    async fn list_callbacks(&self, contact: &Contact) -> Result<Vec<Callback>, UcsError> {
        self.gms_list_callbacks(contact).await
    }

    async fn cancel_callback(&self, callback: &Callback) -> Result<DeleteOutcome, UcsError> {
        self.gms_cancel_callback(callback).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identify(json: &str, limit: Option<u32>) -> Result<Identification, UcsError> {
        identification(Operation::IdentifyContact, &serde_json::from_str(json).unwrap(), limit)
    }

    #[test]
    fn an_identification_is_complete_only_when_nothing_may_be_capped() {
        let one = identify(
            r#"{"NumberOfContactsFound":1,"ContactId":"0001SaD2PVY4312K","ContactCreated":"false"}"#,
            None,
        )
        .unwrap();
        assert_eq!(one.contacts.len(), 1);
        assert!(one.complete);
        let two = identify(
            r#"{"NumberOfContactsFound":"2","ContactIdList":["0001SaD2PVY4312K","0001TbE3QWZ5520L"]}"#,
            None,
        )
        .unwrap();
        assert_eq!(two.contacts.len(), 2);
        assert!(two.complete);
        let capped = identify(
            r#"{"NumberOfContactsFound":5,"ContactIdList":["0001SaD2PVY4312K","0001TbE3QWZ5520L"]}"#,
            None,
        )
        .unwrap();
        assert!(!capped.complete);
        let at_limit = identify(
            r#"{"NumberOfContactsFound":2,"ContactIdList":"0001SaD2PVY4312K,0001TbE3QWZ5520L"}"#,
            Some(2),
        )
        .unwrap();
        assert_eq!(at_limit.contacts.len(), 2);
        assert!(!at_limit.complete);
        let none = identify(r#"{"NumberOfContactsFound":0,"ContactCreated":false}"#, None).unwrap();
        assert!(none.contacts.is_empty() && none.complete);
    }

    #[test]
    fn a_created_contact_is_a_hard_error_naming_it() {
        let error = identify(
            r#"{"NumberOfContactsFound":1,"ContactId":"0009NEWCONTACT00","ContactCreated":"true"}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Permanent);
        assert_eq!(error.subject.as_deref(), Some("0009NEWCONTACT00"));
    }
}
