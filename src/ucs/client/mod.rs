//! The connector's client side: the [`Transport`] seam, the [`Connector`] above it (retries,
//! the concurrency limit, the rate limit, delete-then-confirm: shared by every transport) and
//! the REST transport below it ([`RestTransport`], UCS 9.1's REST API as [`wire`](super::wire)
//! maps it). [`RestClient`] is the two put together, as the engine uses them.

mod connector;
mod rest;
mod services;
mod transport;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::wire::Operation;
use super::{ErrorKind, TenantId};

pub use connector::{Connector, Limits, RetryTally};
pub use rest::RestTransport;
pub use transport::Transport;

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

/// Where a call is made from: the contact and the step a caller is working on when it calls
/// the client, so that a retry is recorded under them and not under whatever finishes next.
/// Set with [`CallSite::scope`] around the caller's future; the [`Connector`] reads it when it
/// reports a retry ([`RetryEvent::site`]). Ids and step names only, never personal data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallSite {
    /// The contact the caller works on, when it works on one.
    pub contact: Option<String>,
    /// The step (a runbook step id, or a phase such as the executor's re-check).
    pub step: Option<String>,
}

tokio::task_local! {
    /// The call site of the future being polled (a scope per future, not per task: contacts
    /// run concurrently in one task under `buffer_unordered`, each in its own scope).
    static CALL_SITE: CallSite;
}

impl CallSite {
    /// The site of a step of a contact.
    pub fn step(contact: Option<&str>, step: &str) -> Self {
        Self { contact: contact.map(str::to_owned), step: Some(step.to_owned()) }
    }

    /// The site of the future being polled, if any scope set one.
    pub fn current() -> Option<CallSite> {
        CALL_SITE.try_with(CallSite::clone).ok()
    }

    /// Runs `future` with this site: every retry the client reports while polling it carries it.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CALL_SITE.scope(self, future).await
    }

    /// Runs `future` as work on `contact` within the current site (its step kept): how a
    /// phase that reads many contacts (planning) attributes each contact's calls.
    pub async fn contact_scope<F: Future>(contact: &str, future: F) -> F::Output {
        let step = Self::current().and_then(|site| site.step);
        Self { contact: Some(contact.to_owned()), step }.scope(future).await
    }
}

/// One failed attempt that the client is about to retry (or check): for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryEvent {
    /// Where the call was made from (see [`CallSite`]); `None` outside any scope.
    pub site: Option<CallSite>,
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
    /// A PEM file of CA certificates to trust in addition to the built-in roots (for UCS, and
    /// for Context Services and GMS unless they have their own).
    pub ca_file: Option<PathBuf>,
    /// The CA file Context Services is trusted by, when it differs from `ca_file`: its
    /// connections trust the built-in roots and this file's, not `ca_file`'s.
    pub context_services_ca_file: Option<PathBuf>,
    /// The CA file GMS is trusted by, when it differs from `ca_file` (as for Context
    /// Services).
    pub gms_ca_file: Option<PathBuf>,
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
    /// Kept for callers; unused: UCS's `GetInteractionsForContact` does not page.
    pub page_size: u32,
    /// The tenant, for answers that do not name it (`GetAttributes` may not).
    pub tenant: Option<TenantId>,
    /// UCS's `schema/select-limit`, if known: an identification that finds exactly this many
    /// contacts may have been capped, and is reported incomplete.
    pub select_limit: Option<u32>,
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
            .field("context_services_ca_file", &self.context_services_ca_file)
            .field("gms_ca_file", &self.gms_ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .field("rate_limit", &self.rate_limit)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("page_size", &self.page_size)
            .field("tenant", &self.tenant)
            .field("select_limit", &self.select_limit)
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
            context_services_ca_file: None,
            gms_ca_file: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            concurrency: 16,
            rate_limit: None,
            max_body_bytes: 16 * 1024 * 1024,
            page_size: 100,
            tenant: None,
            select_limit: None,
            on_retry: None,
        }
    }
}

/// A configuration the client cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The rate limit is outside 0.1 to 100000 calls per second (or not a number).
    #[error("the rate limit must be from 0.1 to 100000 calls per second")]
    RateLimit,
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

/// The UCS REST client as the engine uses it: the [`Connector`] over the [`RestTransport`].
/// Cheap to clone; clones share the connection pool and the limits.
pub type RestClient = Connector<RestTransport>;

impl Connector<RestTransport> {
    /// Builds a client. Installs the `ring` crypto provider for rustls if none is installed.
    pub fn new(config: ClientConfig) -> Result<Self, ConfigError> {
        let limits = Limits {
            retry: config.retry,
            concurrency: config.concurrency,
            rate_limit: config.rate_limit,
            on_retry: config.on_retry.clone(),
        };
        Connector::over(RestTransport::new(config)?, limits)
    }

    /// The configuration the client was built from.
    pub fn config(&self) -> &ClientConfig {
        self.transport().config()
    }
}
