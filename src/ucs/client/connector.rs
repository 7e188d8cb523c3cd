//! Above the transport: the concurrency limit, the rate limit, retries with backoff, and the
//! delete-then-confirm logic, the same for every [`Transport`].

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{ConfigError, RetryEvent, RetryHook, RetryPolicy, RetryThen, Transport};
use crate::ucs::rng::SplitMix64;
use crate::ucs::wire::Operation;
use crate::ucs::{
    AttachmentBody, AttachmentId, Callback, Contact, ContactId, CsService, DataSource,
    DeleteOutcome, ErrorKind, Identification, IdentifyRequest, InteractionContent, InteractionId,
    InteractionListing, InteractionSummary, Profile, ServiceId, TenantId, Ucs, UcsError,
};

/// The slowest rate limit, in calls per second (one call every ten seconds): slower than this a
/// run would look hung. The environments schema has the same bounds.
pub(crate) const MIN_RATE_LIMIT: f64 = 0.1;
/// The fastest rate limit, in calls per second.
pub(crate) const MAX_RATE_LIMIT: f64 = 100_000.0;

/// How the connector paces and retries calls.
#[derive(Clone)]
pub struct Limits {
    /// Retry policy.
    pub retry: RetryPolicy,
    /// At most this many calls in flight (a download holds its slot until it is dropped).
    pub concurrency: usize,
    /// At most this many calls started per second (`None`: unlimited).
    pub rate_limit: Option<f64>,
    /// Told about every retry.
    pub on_retry: Option<RetryHook>,
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .field("rate_limit", &self.rate_limit)
            .field("on_retry", &self.on_retry.is_some())
            .finish()
    }
}

/// [`Ucs`] over any [`Transport`]: every call waits for the rate limit and a concurrency
/// permit, transient failures of idempotent calls are retried with jittered exponential
/// backoff, and a contact delete whose outcome is unknown is confirmed by reading the
/// contact before it is tried again. Cheap to clone; clones share the limits.
pub struct Connector<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Connector<T> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<T: fmt::Debug> fmt::Debug for Connector<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("transport", &self.inner.transport)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

struct Inner<T> {
    transport: T,
    limits: Limits,
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
            // The rate is bounded (`over`), so this is at most ten seconds per queued call;
            // saturating all the same rather than panicking.
            Duration::try_from_secs_f64(-self.tokens / self.rate).unwrap_or(Duration::MAX)
        }
    }
}

impl<T: Transport> Connector<T> {
    /// The connector over `transport`.
    pub fn over(transport: T, limits: Limits) -> Result<Self, ConfigError> {
        if limits.concurrency == 0 {
            return Err(ConfigError::Zero { which: "concurrency" });
        }
        if limits.retry.max_attempts == 0 {
            return Err(ConfigError::Zero { which: "retry max attempts" });
        }
        let bucket = match limits.rate_limit {
            Some(rate) if (MIN_RATE_LIMIT..=MAX_RATE_LIMIT).contains(&rate) => {
                Some(Mutex::new(Bucket {
                    rate,
                    tokens: rate.max(1.0),
                    capacity: rate.max(1.0),
                    last: Instant::now(),
                }))
            }
            Some(_) => return Err(ConfigError::RateLimit),
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(limits.concurrency)),
                bucket,
                jitter: SplitMix64::new(limits.retry.jitter_seed),
                transport,
                limits,
            }),
        })
    }

    /// The transport underneath.
    pub fn transport(&self) -> &T {
        &self.inner.transport
    }

    /// Waits for the rate limit and a concurrency permit.
    async fn admit(&self, operation: Operation) -> Result<OwnedSemaphorePermit, UcsError> {
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

    /// One admitted attempt.
    async fn once<R, F, Fut>(&self, operation: Operation, attempt: F) -> Result<R, UcsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<R, UcsError>>,
    {
        let _permit = self.admit(operation).await?;
        attempt().await
    }

    /// Runs `attempt` until it succeeds, fails for good or the attempts run out; retries only
    /// transient failures of idempotent operations.
    async fn retrying<R, F, Fut>(
        &self,
        operation: Operation,
        subject: Option<&str>,
        mut attempt: F,
    ) -> Result<R, UcsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<R, UcsError>>,
    {
        let max = self.inner.limits.retry.max_attempts;
        let mut number = 1;
        loop {
            match self.once(operation, &mut attempt).await {
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

    fn backoff(&self, failed_attempt: u32) -> Duration {
        let policy = &self.inner.limits.retry;
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
        if let Some(hook) = &self.inner.limits.on_retry {
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
}

impl<T: Transport> Ucs for Connector<T> {
    async fn identify_contacts(
        &self,
        request: &IdentifyRequest,
    ) -> Result<Identification, UcsError> {
        self.retrying(Operation::IdentifyContact, None, || {
            self.inner.transport.identify_contacts(request)
        })
        .await
    }

    async fn get_contact(&self, contact: &ContactId) -> Result<Contact, UcsError> {
        self.retrying(Operation::GetAttributes, Some(contact.as_str()), || {
            self.inner.transport.get_contact(contact)
        })
        .await
    }

    async fn list_interactions(
        &self,
        contact: &ContactId,
        source: DataSource,
    ) -> Result<InteractionListing, UcsError> {
        self.retrying(Operation::GetInteractionsForContact, Some(contact.as_str()), || {
            self.inner.transport.list_interactions(contact, source)
        })
        .await
    }

    async fn get_interaction_content(
        &self,
        interaction: &InteractionId,
        source: DataSource,
    ) -> Result<InteractionContent, UcsError> {
        self.retrying(Operation::GetInteractionContent, Some(interaction.as_str()), || {
            self.inner.transport.get_interaction_content(interaction, source)
        })
        .await
    }

    async fn open_attachment(
        &self,
        attachment: &AttachmentId,
        source: DataSource,
    ) -> Result<AttachmentBody, UcsError> {
        let operation = Operation::GetDocument;
        let max = self.inner.limits.retry.max_attempts;
        let mut number = 1;
        loop {
            let permit = self.admit(operation).await?;
            match self.inner.transport.open_attachment(attachment, source).await {
                Ok(body) => {
                    // The permit travels with the stream: a download holds its slot until it
                    // is dropped.
                    let AttachmentBody { size, bytes } = body;
                    let bytes = bytes.map(move |chunk| {
                        let _slot = &permit;
                        chunk
                    });
                    return Ok(AttachmentBody { size, bytes: Box::pin(bytes) });
                }
                Err(error) if error.is_transient() && number < max => {
                    drop(permit);
                    let delay = self.backoff(number);
                    self.report_retry(
                        &error,
                        Some(attachment.as_str()),
                        number,
                        RetryThen::Retry,
                        delay,
                    );
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

    async fn stop_interaction(
        &self,
        interaction: &InteractionSummary,
        tenant: TenantId,
        reason: &str,
    ) -> Result<(), UcsError> {
        self.retrying(Operation::StopInteraction, Some(interaction.id.as_str()), || {
            self.inner.transport.stop_interaction(interaction, tenant, reason)
        })
        .await
    }

    /// Deletes a contact. Not retried blindly: when an attempt's outcome is unknown (timeout,
    /// reset, 5xx), the connector first checks whether the contact still exists; if it is gone
    /// the answer is [`DeleteOutcome::AbsentAfterLostAnswer`] (the lost attempt most likely
    /// deleted it; [`DeleteOutcome::AlreadyAbsent`] is only a first answer of "not found"),
    /// otherwise it tries again, within the retry policy.
    async fn delete_contact(&self, contact: &ContactId) -> Result<DeleteOutcome, UcsError> {
        let operation = Operation::DeleteContact;
        let max = self.inner.limits.retry.max_attempts;
        let mut number = 1;
        loop {
            let outcome =
                self.once(operation, || self.inner.transport.delete_contact(contact)).await;
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
                    return Ok(DeleteOutcome::AbsentAfterLostAnswer);
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
        self.retrying(Operation::GetProfile, Some(contact.as_str()), || {
            self.inner.transport.get_profile(contact)
        })
        .await
    }

    async fn delete_profile(&self, contact: &ContactId) -> Result<DeleteOutcome, UcsError> {
        self.retrying(Operation::DeleteProfile, Some(contact.as_str()), || {
            self.inner.transport.delete_profile(contact)
        })
        .await
    }

    async fn list_services(&self, contact: &ContactId) -> Result<Vec<CsService>, UcsError> {
        self.retrying(Operation::ListServices, Some(contact.as_str()), || {
            self.inner.transport.list_services(contact)
        })
        .await
    }

    async fn list_anonymous_services(&self, contact: &Contact) -> Result<Vec<CsService>, UcsError> {
        self.retrying(Operation::ListAnonymousServices, Some(contact.id.as_str()), || {
            self.inner.transport.list_anonymous_services(contact)
        })
        .await
    }

    async fn delete_service(&self, service: &ServiceId) -> Result<DeleteOutcome, UcsError> {
        self.retrying(Operation::DeleteService, Some(service.as_str()), || {
            self.inner.transport.delete_service(service)
        })
        .await
    }

    async fn list_callbacks(&self, contact: &Contact) -> Result<Vec<Callback>, UcsError> {
        self.retrying(Operation::ListCallbacks, Some(contact.id.as_str()), || {
            self.inner.transport.list_callbacks(contact)
        })
        .await
    }

    async fn cancel_callback(&self, callback: &Callback) -> Result<DeleteOutcome, UcsError> {
        self.retrying(Operation::CancelCallback, Some(callback.id.as_str()), || {
            self.inner.transport.cancel_callback(callback)
        })
        .await
    }
}
