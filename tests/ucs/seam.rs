//! The transport seam: the connector's retries, limits and delete-then-confirm hold for any
//! transport, not only REST.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ucs_gdpr::ucs::wire::Operation;
use ucs_gdpr::ucs::{
    AttachmentBody, AttachmentId, Callback, Connector, Contact, ContactId, DataSource,
    DeleteOutcome, ErrorKind, Identification, IdentifyRequest, InteractionContent, InteractionId,
    InteractionListing, InteractionSummary, Limits, Profile, RetryEvent, RetryPolicy, RetryThen,
    TenantId, Transport, Ucs, UcsError,
};

/// A transport that fails the first `failures` identifications and deletes transiently, and
/// knows no contact.
#[derive(Debug, Default)]
struct Flaky {
    failures: u32,
    identify_attempts: AtomicU32,
    delete_attempts: AtomicU32,
    reads: AtomicU32,
}

/// A genuine transient error (a refused connection, see [`real_errors`]) for `operation`.
fn transient(operation: Operation) -> UcsError {
    let mut error = TRANSIENT.lock().unwrap().clone().unwrap();
    error.operation = operation;
    error
}

static TRANSIENT: Mutex<Option<UcsError>> = Mutex::new(None);

async fn real_errors() {
    // Errors are built by the library only; take real ones from a client that cannot connect.
    let mut config = ucs_gdpr::ucs::ClientConfig::new("http://127.0.0.1:1");
    config.retry.max_attempts = 1;
    let client = ucs_gdpr::ucs::RestClient::new(config).unwrap();
    let error = client.get_contact(&contact()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient);
    *TRANSIENT.lock().unwrap() = Some(error);
}

fn contact() -> ContactId {
    ContactId::new("0001SaD2PVY4312K").unwrap()
}

impl Transport for Flaky {
    async fn identify_contacts(&self, _: &IdentifyRequest) -> Result<Identification, UcsError> {
        if self.identify_attempts.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err(transient(Operation::IdentifyContact));
        }
        Ok(Identification { contacts: vec![contact()], complete: true })
    }
    async fn get_contact(&self, _: &ContactId) -> Result<Contact, UcsError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let mut error = transient(Operation::GetAttributes);
        error.kind = ErrorKind::NotFound;
        Err(error)
    }
    async fn list_interactions(
        &self,
        _: &ContactId,
        _: DataSource,
    ) -> Result<InteractionListing, UcsError> {
        Ok(InteractionListing::Found(Vec::new()))
    }
    async fn get_interaction_content(
        &self,
        _: &InteractionId,
        _: DataSource,
    ) -> Result<InteractionContent, UcsError> {
        Err(transient(Operation::GetInteractionContent))
    }
    async fn open_attachment(
        &self,
        _: &AttachmentId,
        _: DataSource,
    ) -> Result<AttachmentBody, UcsError> {
        Err(transient(Operation::GetDocument))
    }
    async fn stop_interaction(
        &self,
        _: &InteractionSummary,
        _: TenantId,
        _: &str,
    ) -> Result<(), UcsError> {
        Ok(())
    }
    async fn delete_contact(&self, _: &ContactId) -> Result<DeleteOutcome, UcsError> {
        self.delete_attempts.fetch_add(1, Ordering::SeqCst);
        Err(transient(Operation::DeleteContact))
    }
    async fn get_profile(&self, _: &ContactId) -> Result<Option<Profile>, UcsError> {
        Ok(None)
    }
    async fn delete_profile(&self, _: &ContactId) -> Result<DeleteOutcome, UcsError> {
        Ok(DeleteOutcome::AlreadyAbsent)
    }
    async fn list_services(
        &self,
        _: &ContactId,
    ) -> Result<Vec<ucs_gdpr::ucs::CsService>, UcsError> {
        Ok(Vec::new())
    }
    async fn list_anonymous_services(
        &self,
        _: &Contact,
    ) -> Result<Vec<ucs_gdpr::ucs::CsService>, UcsError> {
        Ok(Vec::new())
    }
    async fn delete_service(
        &self,
        _: &ucs_gdpr::ucs::ServiceId,
    ) -> Result<DeleteOutcome, UcsError> {
        Ok(DeleteOutcome::AlreadyAbsent)
    }
    async fn list_callbacks(&self, _: &Contact) -> Result<Vec<Callback>, UcsError> {
        Ok(Vec::new())
    }
    async fn cancel_callback(&self, _: &Callback) -> Result<DeleteOutcome, UcsError> {
        Ok(DeleteOutcome::AlreadyAbsent)
    }
}

fn limits(events: std::sync::Arc<Mutex<Vec<RetryEvent>>>) -> Limits {
    Limits {
        retry: RetryPolicy {
            max_attempts: 4,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            jitter_seed: 1,
        },
        concurrency: 2,
        rate_limit: None,
        on_retry: Some(std::sync::Arc::new(move |event: &RetryEvent| {
            events.lock().unwrap().push(event.clone());
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_transport_gets_the_retries_and_the_delete_confirmation() {
    real_errors().await;
    let events = std::sync::Arc::new(Mutex::new(Vec::new()));
    let connector =
        Connector::over(Flaky { failures: 2, ..Flaky::default() }, limits(events.clone())).unwrap();
    let request = IdentifyRequest { tenant: TenantId(101), attributes: [].into() };
    let found = connector.identify_contacts(&request).await.unwrap();
    assert_eq!(found.contacts, vec![contact()]);
    assert_eq!(connector.transport().identify_attempts.load(Ordering::SeqCst), 3);

    // A delete with an unknown outcome is confirmed by a read, never repeated blindly.
    let outcome = connector.delete_contact(&contact()).await.unwrap();
    assert_eq!(outcome, DeleteOutcome::AbsentAfterLostAnswer);
    assert_eq!(connector.transport().delete_attempts.load(Ordering::SeqCst), 1);
    assert_eq!(connector.transport().reads.load(Ordering::SeqCst), 1);
    let thens: Vec<_> = events.lock().unwrap().iter().map(|e| (e.operation, e.then)).collect();
    assert_eq!(
        thens,
        [
            (Operation::IdentifyContact, RetryThen::Retry),
            (Operation::IdentifyContact, RetryThen::Retry),
            (Operation::DeleteContact, RetryThen::VerifyAbsence),
        ]
    );

    // Out of attempts, the last error comes back with its count.
    let connector = Connector::over(
        Flaky { failures: 10, ..Flaky::default() },
        limits(std::sync::Arc::new(Mutex::new(Vec::new()))),
    )
    .unwrap();
    let error = connector.identify_contacts(&request).await.unwrap_err();
    assert_eq!((error.kind, error.attempts), (ErrorKind::Transient, 4));
}

#[test]
fn a_connector_refuses_zero_limits() {
    let zero = Limits { concurrency: 0, ..limits(std::sync::Arc::new(Mutex::new(Vec::new()))) };
    assert!(Connector::over(Flaky::default(), zero).is_err());
}
