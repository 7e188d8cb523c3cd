//! The REST client: [`Ucs`] over HTTP(S) with timeouts, retries, a concurrency limit, a rate
//! limit, a body-size limit and typed errors. Every URL, field and status meaning comes from
//! [`wire`].

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::rng::SplitMix64;
use super::wire::{self, Operation, StatusMeaning};
use super::{
    AttachmentBody, AttachmentId, AttachmentMeta, Callback, CallbackState, Contact, ContactId,
    CsService, DataSource, DeleteOutcome, ErrorKind, IdentifyRequest, InteractionContent,
    InteractionId, InteractionPage, InteractionSummary, PageRequest, Profile, ProtocolFault,
    ServiceId, TenantId, Ucs, UcsError,
};

/// How the client authenticates. The secret is resolved by the caller (see
/// [`Auth::resolve_with`]); `Debug` never shows it.
#[derive(Clone, Default)]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { user, .. } => {
                write!(f, "Basic {{ user: {user:?}, password: <redacted> }}")
            }
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// A secret that could not be resolved. Names the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The named environment variable is not set (or empty).
    #[error("environment variable {variable} is not set; it should hold the {what}")]
    Missing {
        /// The variable's name.
        variable: String,
        /// `password` or `bearer token`.
        what: &'static str,
    },
    /// Both a password variable and a token variable are configured.
    #[error("both passwordEnv and tokenEnv are set; choose one")]
    Ambiguous,
    /// A password variable without a user.
    #[error("passwordEnv is set but user is not")]
    PasswordWithoutUser,
}

impl Auth {
    /// Resolves the environments file's `user` / `passwordEnv` / `tokenEnv` from the process
    /// environment.
    pub fn resolve(
        user: Option<&str>,
        password_env: Option<&str>,
        token_env: Option<&str>,
    ) -> Result<Self, AuthError> {
        Self::resolve_with(user, password_env, token_env, |name| std::env::var(name).ok())
    }

    /// [`Auth::resolve`] with an explicit variable lookup (for tests and embedding).
    pub fn resolve_with(
        user: Option<&str>,
        password_env: Option<&str>,
        token_env: Option<&str>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, AuthError> {
        let fetch = |variable: &str, what| {
            lookup(variable)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| AuthError::Missing { variable: variable.to_owned(), what })
        };
        match (user, password_env, token_env) {
            (_, Some(_), Some(_)) => Err(AuthError::Ambiguous),
            (None, Some(_), None) => Err(AuthError::PasswordWithoutUser),
            (Some(user), Some(variable), None) => {
                Ok(Auth::Basic { user: user.to_owned(), password: fetch(variable, "password")? })
            }
            (_, None, Some(variable)) => Ok(Auth::Bearer(fetch(variable, "bearer token")?)),
            (_, None, None) => Ok(Auth::None),
        }
    }
}

/// When and how often to retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The backoff ceiling before the first retry; doubles with each retry.
    pub base_backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
    /// Seed of the jitter (full jitter: a uniform delay between zero and the ceiling).
    pub jitter_seed: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            jitter_seed: 0x5EED,
        }
    }
}

/// What the client does after a failed attempt, as told to the [`RetryHook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryThen {
    /// It sends the same request again after `delay`.
    Retry,
    /// A delete's outcome is unknown: it checks whether the contact still exists first.
    VerifyAbsence,
}

/// One failed attempt that the client is about to retry (or check): for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryEvent {
    /// The operation.
    pub operation: Operation,
    /// The id it was about.
    pub subject: Option<String>,
    /// The attempt that failed (1 = the first).
    pub attempt: u32,
    /// Why it failed.
    pub kind: ErrorKind,
    /// The HTTP status, if the server answered.
    pub status: Option<u16>,
    /// What the client does next.
    pub then: RetryThen,
    /// How long it waits first.
    pub delay: Duration,
}

/// Called for every retry, before the wait.
pub type RetryHook = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

/// Everything the [`RestClient`] needs, resolved and validated by the caller.
#[derive(Clone)]
pub struct ClientConfig {
    /// The UCS REST base URL (`http(s)://host:port/<base>`), without `/ucs/v1`.
    pub ucs_url: String,
    /// The Context Services base URL (defaults to `ucs_url`).
    pub context_services_url: Option<String>,
    /// The GMS base URL (defaults to `ucs_url`).
    pub gms_url: Option<String>,
    /// Authentication to UCS (and to Context Services and GMS unless they have their own).
    pub auth: Auth,
    /// Authentication to Context Services, when it differs from `auth`.
    pub context_services_auth: Option<Auth>,
    /// Authentication to GMS, when it differs from `auth`.
    pub gms_auth: Option<Auth>,
    /// Extra callback properties to look callbacks up by: (GMS property, contact attribute),
    /// e.g. a service's `_customer_lookup_keys` (see `wire::gms::lookups`).
    pub gms_lookup_keys: Vec<(String, String)>,
    /// A PEM file of CA certificates to trust in addition to the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of each read (a server that stops answering fails after this long).
    pub read_timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// At most this many calls in flight.
    pub concurrency: usize,
    /// At most this many calls started per second (`None`: unlimited).
    pub rate_limit: Option<f64>,
    /// The largest JSON body accepted (attachments stream and are not limited).
    pub max_body_bytes: u64,
    /// Page size for interaction lists.
    pub page_size: u32,
    /// Told about every retry.
    pub on_retry: Option<RetryHook>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("ucs_url", &self.ucs_url)
            .field("context_services_url", &self.context_services_url)
            .field("gms_url", &self.gms_url)
            .field("auth", &self.auth)
            .field("context_services_auth", &self.context_services_auth)
            .field("gms_auth", &self.gms_auth)
            .field("gms_lookup_keys", &self.gms_lookup_keys)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .field("rate_limit", &self.rate_limit)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("page_size", &self.page_size)
            .field("on_retry", &self.on_retry.is_some())
            .finish()
    }
}

impl ClientConfig {
    /// Defaults for a UCS at `ucs_url`, with Context Services and GMS at the same address
    /// (as the simulator serves them).
    pub fn new(ucs_url: impl Into<String>) -> Self {
        Self {
            ucs_url: ucs_url.into(),
            context_services_url: None,
            gms_url: None,
            auth: Auth::None,
            context_services_auth: None,
            gms_auth: None,
            gms_lookup_keys: Vec::new(),
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            concurrency: 16,
            rate_limit: None,
            max_body_bytes: 16 * 1024 * 1024,
            page_size: 100,
            on_retry: None,
        }
    }
}

/// A configuration the client cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A URL does not parse or is not http(s).
    #[error("{which} is not a valid http(s) URL")]
    InvalidUrl {
        /// Which setting.
        which: &'static str,
    },
    /// The CA file cannot be read or holds no certificate.
    #[error("cannot use CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A limit is zero.
    #[error("{which} must be greater than zero")]
    Zero {
        /// Which setting.
        which: &'static str,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// The UCS REST client. Cheap to clone; clones share the connection pool and the limits.
#[derive(Clone)]
pub struct RestClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for RestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestClient").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    ucs: String,
    context_services: String,
    gms: String,
    ucs_auth: Option<HeaderValue>,
    context_services_auth: Option<HeaderValue>,
    gms_auth: Option<HeaderValue>,
    permits: Arc<Semaphore>,
    bucket: Option<Mutex<Bucket>>,
    jitter: SplitMix64,
}

struct Bucket {
    rate: f64,
    tokens: f64,
    capacity: f64,
    last: Instant,
}

impl Bucket {
    /// Takes a token, returning how long to wait for it (tokens may go negative: reservations).
    fn reserve(&mut self) -> Duration {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity) - 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
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

impl RestClient {
    /// Builds a client. Installs the `ring` crypto provider for rustls if none is installed.
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
        if config.retry.max_attempts == 0 {
            return Err(ConfigError::Zero { which: "retry max attempts" });
        }
        let bucket = match config.rate_limit {
            Some(rate) if rate.is_finite() && rate > 0.0 => Some(Mutex::new(Bucket {
                rate,
                tokens: rate.max(1.0),
                capacity: rate.max(1.0),
                last: Instant::now(),
            })),
            Some(_) => return Err(ConfigError::Zero { which: "rate limit" }),
            None => None,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .pool_max_idle_per_host(config.concurrency)
            .tcp_nodelay(true);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| ConfigError::CaFile { path: path.clone(), reason: e.to_string() })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
                ConfigError::CaFile { path: path.clone(), reason: "not a PEM bundle".to_owned() }
            })?;
            if certificates.is_empty() {
                return Err(ConfigError::CaFile {
                    path: path.clone(),
                    reason: "no certificate in it".to_owned(),
                });
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| ConfigError::Http(e.to_string()))?;
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
            inner: Arc::new(Inner {
                http,
                ucs,
                context_services,
                gms,
                ucs_auth,
                context_services_auth,
                gms_auth,
                permits: Arc::new(Semaphore::new(config.concurrency)),
                bucket,
                jitter: SplitMix64::new(config.retry.jitter_seed),
                config,
            }),
        })
    }

    /// The configuration the client was built from.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(super) fn request(
        &self,
        operation: Operation,
        method: Method,
        url: &str,
    ) -> RequestBuilder {
        let builder = self.inner.http.request(method, url);
        let authorization = match operation.backend() {
            wire::Backend::ContextServices => &self.inner.context_services_auth,
            wire::Backend::Gms => &self.inner.gms_auth,
            wire::Backend::Ucs => &self.inner.ucs_auth,
        };
        match authorization {
            Some(value) => builder.header(AUTHORIZATION, value.clone()),
            None => builder,
        }
    }

    /// Waits for the rate limit and a concurrency permit.
    pub(super) async fn admit(
        &self,
        operation: Operation,
    ) -> Result<OwnedSemaphorePermit, UcsError> {
        if let Some(bucket) = &self.inner.bucket {
            let wait = match bucket.lock() {
                Ok(mut bucket) => bucket.reserve(),
                Err(poisoned) => poisoned.into_inner().reserve(),
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        // The semaphore is never closed, so this cannot fail; map it anyway.
        self.inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| UcsError::new(operation, ErrorKind::Permanent, "client shut down"))
    }

    /// One attempt: sends the request and returns the response if its status is 2xx.
    async fn send_once(
        &self,
        operation: Operation,
        subject: Option<&str>,
        request: RequestBuilder,
    ) -> Result<(Response, OwnedSemaphorePermit), UcsError> {
        let permit = self.admit(operation).await?;
        let started = Instant::now();
        let response = request.send().await.map_err(|error| {
            let detail = if error.is_timeout() {
                "timed out waiting for the server"
            } else if error.is_connect() {
                "could not connect"
            } else {
                "connection dropped before a response"
            };
            UcsError::new(operation, ErrorKind::Transient, detail).with_subject(subject)
        })?;
        let status = response.status().as_u16();
        tracing::debug!(
            operation = %operation,
            subject = subject.unwrap_or(""),
            status,
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "UCS call answered"
        );
        let meaning = wire::status_meaning(status);
        if meaning == StatusMeaning::Success {
            return Ok((response, permit));
        }
        let body = read_limited(operation, response, 64 * 1024).await.ok();
        let detail = body.and_then(|body| serde_json::from_slice::<wire::ErrorBody>(&body).ok());
        let code = detail.as_ref().map(|d| d.error.code.as_str());
        let server = detail.as_ref().and_then(|d| d.error.server.as_deref());
        let (kind, text) = match meaning {
            StatusMeaning::NotFound => (ErrorKind::NotFound, "not found"),
            StatusMeaning::Transient => (ErrorKind::Transient, "server temporarily unavailable"),
            _ => (ErrorKind::Permanent, "request refused"),
        };
        Err(UcsError::new(operation, kind, text)
            .with_status(status)
            .with_code(code)
            .with_server(server)
            .with_subject(subject))
    }

    /// Runs `attempt` until it succeeds, fails for good or the attempts run out; retries only
    /// transient failures of idempotent operations.
    pub(super) async fn retrying<T, F, Fut>(
        &self,
        operation: Operation,
        subject: Option<&str>,
        mut attempt: F,
    ) -> Result<T, UcsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, UcsError>>,
    {
        let max = self.inner.config.retry.max_attempts;
        let mut number = 1;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if error.is_transient() && operation.is_idempotent() && number < max => {
                    let delay = self.backoff(number);
                    self.report_retry(&error, subject, number, RetryThen::Retry, delay);
                    tokio::time::sleep(delay).await;
                    number += 1;
                }
                Err(mut error) => {
                    error.attempts = number;
                    return Err(error);
                }
            }
        }
    }

    pub(super) fn backoff(&self, failed_attempt: u32) -> Duration {
        let policy = &self.inner.config.retry;
        let exponent = failed_attempt.saturating_sub(1).min(20);
        let ceiling = policy.base_backoff.saturating_mul(1 << exponent).min(policy.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.inner.jitter.up_to(nanos))
    }

    fn report_retry(
        &self,
        error: &UcsError,
        subject: Option<&str>,
        attempt: u32,
        then: RetryThen,
        delay: Duration,
    ) {
        tracing::warn!(
            operation = %error.operation,
            subject = subject.unwrap_or(""),
            attempt,
            kind = %error.kind,
            status = error.status,
            then = ?then,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "UCS call failed; retrying"
        );
        if let Some(hook) = &self.inner.config.on_retry {
            hook(&RetryEvent {
                operation: error.operation,
                subject: subject.map(str::to_owned),
                attempt,
                kind: error.kind,
                status: error.status,
                then,
                delay,
            });
        }
    }

    /// One attempt of a call answering JSON.
    async fn json_once<T: DeserializeOwned>(
        &self,
        operation: Operation,
        subject: Option<&str>,
        request: RequestBuilder,
    ) -> Result<T, UcsError> {
        let (response, _permit) = self.send_once(operation, subject, request).await?;
        decode_json(operation, response, self.inner.config.max_body_bytes)
            .await
            .map_err(|e| e.with_subject(subject))
    }

    /// One attempt of a call whose success body does not matter.
    async fn empty_once(
        &self,
        operation: Operation,
        subject: Option<&str>,
        request: RequestBuilder,
    ) -> Result<(), UcsError> {
        let (response, _permit) = self.send_once(operation, subject, request).await?;
        read_limited(operation, response, self.inner.config.max_body_bytes)
            .await
            .map(drop)
            .map_err(|e| e.with_subject(subject))
    }

    fn ucs_url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.ucs)
    }

    /// The Context Services base URL (no trailing `/`).
    pub(super) fn context_services_base(&self) -> &str {
        &self.inner.context_services
    }

    /// The GMS base URL (no trailing `/`).
    pub(super) fn gms_base(&self) -> &str {
        &self.inner.gms
    }

    /// The extra callback lookups configured: (GMS property, contact attribute).
    pub(super) fn gms_lookup_keys(&self) -> &[(String, String)] {
        &self.inner.config.gms_lookup_keys
    }

    /// The largest JSON body accepted.
    pub(super) fn max_body_bytes(&self) -> u64 {
        self.inner.config.max_body_bytes
    }

    async fn delete_once(
        &self,
        operation: Operation,
        subject: &str,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<DeleteOutcome, UcsError> {
        match self
            .empty_once(
                operation,
                Some(subject),
                self.request(operation, Method::DELETE, url).query(query),
            )
            .await
        {
            Ok(()) => Ok(DeleteOutcome::Deleted),
            Err(error) if error.kind == ErrorKind::NotFound => Ok(DeleteOutcome::AlreadyAbsent),
            Err(error) => Err(error),
        }
    }
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

async fn decode_json<T: DeserializeOwned>(
    operation: Operation,
    response: Response,
    max: u64,
) -> Result<T, UcsError> {
    if !has_content_type(&response, wire::JSON) {
        return Err(UcsError::protocol(operation, ProtocolFault::WrongContentType));
    }
    let body = read_limited(operation, response, max).await?;
    serde_json::from_slice(&body)
        .map_err(|_| UcsError::protocol(operation, ProtocolFault::Malformed))
}

pub(super) fn malformed(operation: Operation) -> UcsError {
    UcsError::protocol(operation, ProtocolFault::Malformed)
}

fn summary_from_wire(
    operation: Operation,
    wire: wire::WireInteraction,
) -> Result<InteractionSummary, UcsError> {
    Ok(InteractionSummary {
        id: InteractionId::new(&wire.id).map_err(|_| malformed(operation))?,
        media_type: wire.media_type_id,
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

impl Ucs for RestClient {
    async fn identify_contacts(
        &self,
        request: &IdentifyRequest,
    ) -> Result<Vec<ContactId>, UcsError> {
        let operation = Operation::IdentifyContact;
        let body = wire::Envelope {
            parameters: wire::IdentifyParams {
                tenant_id: request.tenant.0,
                other_fields: request.attributes.clone(),
                create_contact: false,
            },
            user_data: serde_json::Map::new(),
        };
        let url = self.ucs_url(wire::IDENTIFY_CONTACT);
        let result: wire::IdentifyResult = self
            .retrying(operation, None, || {
                self.json_once(
                    operation,
                    None,
                    self.request(operation, Method::POST, &url).json(&body),
                )
            })
            .await?;
        result
            .contact_id_list
            .iter()
            .map(|id| ContactId::new(id).map_err(|_| malformed(operation)))
            .collect()
    }

    async fn get_contact(&self, contact: &ContactId) -> Result<Contact, UcsError> {
        let operation = Operation::GetAttributes;
        let url = self.ucs_url(wire::GET_ATTRIBUTES);
        let subject = Some(contact.as_str());
        let result: wire::AttributesResult = self
            .retrying(operation, subject, || {
                let request = self
                    .request(operation, Method::GET, &url)
                    .query(&[(wire::Q_CONTACT_ID, contact.as_str())]);
                self.json_once(operation, subject, request)
            })
            .await?;
        let id = ContactId::new(&result.contact_id).map_err(|_| malformed(operation))?;
        if &id != contact {
            return Err(malformed(operation).with_subject(subject));
        }
        Ok(Contact { id, tenant: TenantId(result.tenant_id), attributes: result.attributes })
    }

    async fn list_interactions(
        &self,
        contact: &ContactId,
        source: DataSource,
        page: PageRequest,
    ) -> Result<InteractionPage, UcsError> {
        let operation = Operation::GetInteractionsForContact;
        let url = self.ucs_url(wire::GET_INTERACTIONS);
        let subject = Some(contact.as_str());
        let size = page.size.clamp(1, wire::MAX_PAGE_SIZE);
        let (offset, size_text) = (page.offset.to_string(), size.to_string());
        let outcome: Result<wire::InteractionsResult, UcsError> = self
            .retrying(operation, subject, || {
                let request = self.request(operation, Method::GET, &url).query(&[
                    (wire::Q_CONTACT_ID, contact.as_str()),
                    (wire::Q_DATA_SOURCE, wire::data_source_name(source)),
                    (wire::Q_FROM_INDEX, offset.as_str()),
                    (wire::Q_PAGE_SIZE, size_text.as_str()),
                ]);
                self.json_once(operation, subject, request)
            })
            .await;
        let result = match outcome {
            Ok(result) => result,
            Err(error)
                if error.kind == ErrorKind::NotFound
                    && error.code.as_deref() == Some(wire::CODE_NO_DATA_SOURCE) =>
            {
                // The reason is rebuilt from fixed text and the (sanitised) server name, never
                // copied from the server's message.
                let server = error.server.as_deref().unwrap_or("unknown");
                let reason = format!(
                    "Server: {server} Msg: {} '{}' found",
                    wire::NO_DATA_SOURCE_MESSAGE,
                    source.as_str()
                );
                return Ok(InteractionPage::SourceUnavailable { reason });
            }
            Err(error) => return Err(error),
        };
        let count = u32::try_from(result.interactions.len()).map_err(|_| malformed(operation))?;
        let interactions = result
            .interactions
            .into_iter()
            .map(|wire| summary_from_wire(operation, wire))
            .collect::<Result<Vec<_>, _>>()?;
        let end = page.offset.saturating_add(count);
        let next = (count > 0 && end < result.total_count)
            .then_some(PageRequest { offset: end, size: page.size });
        Ok(InteractionPage::Page { interactions, next })
    }

    async fn get_interaction_content(
        &self,
        interaction: &InteractionId,
        source: DataSource,
    ) -> Result<InteractionContent, UcsError> {
        let operation = Operation::GetInteractionContent;
        let url = self.ucs_url(wire::GET_CONTENT);
        let subject = Some(interaction.as_str());
        let result: wire::ContentResult = self
            .retrying(operation, subject, || {
                let request = self.request(operation, Method::GET, &url).query(&[
                    (wire::Q_INTERACTION_ID, interaction.as_str()),
                    (wire::Q_DATA_SOURCE, wire::data_source_name(source)),
                ]);
                self.json_once(operation, subject, request)
            })
            .await?;
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
        Ok(InteractionContent {
            id: InteractionId::new(&result.id).map_err(|_| malformed(operation))?,
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
        let (response, permit) = self
            .retrying(operation, subject, || {
                let request = self.request(operation, Method::GET, &url).query(&[
                    (wire::Q_DOCUMENT_ID, attachment.as_str()),
                    (wire::Q_DATA_SOURCE, wire::data_source_name(source)),
                ]);
                self.send_once(operation, subject, request)
            })
            .await?;
        if !has_content_type(&response, wire::OCTET_STREAM) {
            return Err(UcsError::protocol(operation, ProtocolFault::WrongContentType)
                .with_subject(subject));
        }
        let size = response.content_length();
        let owned_subject = attachment.as_str().to_owned();
        // The permit travels with the stream: a download holds its slot until it is dropped.
        let bytes = response.bytes_stream().map(move |chunk| {
            let _slot = &permit;
            chunk.map_err(|error| {
                body_error(operation, &error).with_subject(Some(owned_subject.as_str()))
            })
        });
        Ok(AttachmentBody { size, bytes: Box::pin(bytes) })
    }

    async fn stop_interaction(
        &self,
        interaction: &InteractionId,
        reason: &str,
    ) -> Result<(), UcsError> {
        let operation = Operation::StopInteraction;
        let url = self.ucs_url(wire::STOP_INTERACTION);
        let subject = Some(interaction.as_str());
        let body = wire::Envelope {
            parameters: wire::StopParams {
                interaction_id: interaction.as_str().to_owned(),
                reason: reason.to_owned(),
            },
            user_data: serde_json::Map::new(),
        };
        self.retrying(operation, subject, || {
            self.empty_once(
                operation,
                subject,
                self.request(operation, Method::POST, &url).json(&body),
            )
        })
        .await
    }

    /// Deletes a contact. Not retried blindly: when an attempt's outcome is unknown (timeout,
    /// reset, 5xx), the client first checks whether the contact still exists; if it is gone the
    /// answer is [`DeleteOutcome::AlreadyAbsent`] (the lost attempt may have been the one that
    /// deleted it), otherwise it tries again, within the retry policy.
    async fn delete_contact(&self, contact: &ContactId) -> Result<DeleteOutcome, UcsError> {
        let operation = Operation::DeleteContact;
        let url = self.ucs_url(wire::DELETE_CONTACT);
        let max = self.inner.config.retry.max_attempts;
        let mut number = 1;
        loop {
            let outcome = self
                .delete_once(
                    operation,
                    contact.as_str(),
                    &url,
                    &[(wire::Q_CONTACT_ID, contact.as_str())],
                )
                .await;
            let error = match outcome {
                Ok(outcome) => {
                    tracing::info!(operation = %operation, contact = %contact, outcome = ?outcome, attempt = number, "contact delete answered");
                    return Ok(outcome);
                }
                Err(error) if error.is_transient() => error,
                Err(mut error) => {
                    error.attempts = number;
                    return Err(error);
                }
            };
            self.report_retry(
                &error,
                Some(contact.as_str()),
                number,
                RetryThen::VerifyAbsence,
                Duration::ZERO,
            );
            match self.get_contact(contact).await {
                Err(check) if check.kind == ErrorKind::NotFound => {
                    return Ok(DeleteOutcome::AlreadyAbsent);
                }
                Ok(_) if number < max => {
                    let delay = self.backoff(number);
                    self.report_retry(
                        &error,
                        Some(contact.as_str()),
                        number,
                        RetryThen::Retry,
                        delay,
                    );
                    tokio::time::sleep(delay).await;
                    number += 1;
                }
                Ok(_) | Err(_) => {
                    let mut error = error;
                    error.attempts = number;
                    return Err(error);
                }
            }
        }
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
