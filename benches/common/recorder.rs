//! A recording `Ucs`: it passes every call to the real client and notes the call with its
//! arguments, under the contact (and phase) the caller was working on (`CallSite`). A bench
//! then replays exactly those calls through the bare client, so "the connector's ceiling" is
//! measured with the very mix a stage made, not a hand-written imitation of it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures_util::{StreamExt as _, stream};
use ucs_gdpr::ucs::{
    AttachmentBody, AttachmentId, CallSite, Callback, Contact, ContactId, CsService, DataSource,
    DeleteOutcome, Identification, IdentifyRequest, InteractionContent, InteractionId,
    InteractionListing, InteractionSummary, Profile, ServiceId, TenantId, Ucs, UcsError,
};

/// One call as it was made.
#[derive(Clone)]
pub(crate) enum Call {
    Identify(IdentifyRequest),
    GetContact(ContactId),
    List(ContactId, DataSource),
    Content(InteractionId, DataSource),
    Attachment(AttachmentId, DataSource),
    Stop(InteractionSummary, TenantId, String),
    Delete(ContactId),
    GetProfile(ContactId),
    DeleteProfile(ContactId),
    ListServices(ContactId),
    ListAnonymous(Contact),
    DeleteService(ServiceId),
    ListCallbacks(Contact),
    Cancel(Callback),
}

/// Where a call was made: its phase (in the order phases first appeared) and its contact, or
/// for a call made for no contact, its own number (nothing says it waited for another).
type Group = (usize, Result<String, usize>);

/// A call site's phase: a phase of its own (`plan.recheck`, whose name has a `.`), a
/// runbook step of a contact (a contact's steps run one after the other, so they are one
/// phase), or none.
fn phase_of(step: Option<&str>) -> &'static str {
    match step {
        None => "none",
        Some(step) if step.contains('.') => "phase",
        Some(_) => "contact steps",
    }
}

/// The calls, grouped by call site, in the order each group first called.
#[derive(Default)]
struct Journal {
    phases: Vec<(&'static str, Option<String>)>,
    calls_made: usize,
    order: Vec<Group>,
    calls: BTreeMap<Group, Vec<Call>>,
}

pub(crate) struct Recorder<'a, U> {
    inner: &'a U,
    journal: Mutex<Journal>,
}

impl<'a, U: Ucs> Recorder<'a, U> {
    pub(crate) fn new(inner: &'a U) -> Self {
        Self { inner, journal: Mutex::new(Journal::default()) }
    }

    fn note(&self, call: Call) {
        let site = CallSite::current().unwrap_or_default();
        let mut journal = self.journal.lock().unwrap();
        let kind = phase_of(site.step.as_deref());
        let key = (kind, if kind == "phase" { site.step } else { None });
        let phase = match journal.phases.iter().position(|p| *p == key) {
            Some(phase) => phase,
            None => {
                journal.phases.push(key);
                journal.phases.len() - 1
            }
        };
        journal.calls_made += 1;
        let group = (phase, site.contact.ok_or(journal.calls_made));
        if !journal.calls.contains_key(&group) {
            journal.order.push(group.clone());
        }
        journal.calls.entry(group).or_default().push(call);
    }

    /// The calls made, phase by phase, each phase's groups in the order they first called:
    /// a replay runs the groups of one phase concurrently, the calls of a group in order.
    pub(crate) fn phases(self) -> Vec<Vec<Vec<Call>>> {
        let mut journal = self.journal.into_inner().unwrap();
        let mut phases: Vec<Vec<Vec<Call>>> = vec![Vec::new(); journal.phases.len()];
        for group in std::mem::take(&mut journal.order) {
            let calls = journal.calls.remove(&group).unwrap();
            phases[group.0].push(calls);
        }
        phases
    }
}

/// Replays recorded calls through `client`: phase after phase, `concurrency` groups at once,
/// each group's calls one after the other. Returns how many calls answered with an error
/// (a replay makes the same calls, so it meets the same "not found"s).
pub(crate) async fn replay<U: Ucs>(
    client: &U,
    phases: &[Vec<Vec<Call>>],
    concurrency: usize,
) -> u64 {
    let errors = std::sync::atomic::AtomicU64::new(0);
    for phase in phases {
        stream::iter(phase)
            .for_each_concurrent(concurrency, |group| {
                let errors = &errors;
                async move {
                    for call in group {
                        if !call_once(client, call).await {
                            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            })
            .await;
    }
    errors.into_inner()
}

/// Makes one call; whether it succeeded. An attachment is read to its end.
async fn call_once<U: Ucs>(client: &U, call: &Call) -> bool {
    match call {
        Call::Identify(request) => client.identify_contacts(request).await.is_ok(),
        Call::GetContact(id) => client.get_contact(id).await.is_ok(),
        Call::List(id, source) => client.list_interactions(id, *source).await.is_ok(),
        Call::Content(id, source) => client.get_interaction_content(id, *source).await.is_ok(),
        Call::Attachment(id, source) => match client.open_attachment(id, *source).await {
            Ok(mut body) => {
                while let Some(chunk) = body.bytes.next().await {
                    if chunk.is_err() {
                        return false;
                    }
                }
                true
            }
            Err(_) => false,
        },
        Call::Stop(interaction, tenant, reason) => {
            client.stop_interaction(interaction, *tenant, reason).await.is_ok()
        }
        Call::Delete(id) => client.delete_contact(id).await.is_ok(),
        Call::GetProfile(id) => client.get_profile(id).await.is_ok(),
        Call::DeleteProfile(id) => client.delete_profile(id).await.is_ok(),
        Call::ListServices(id) => client.list_services(id).await.is_ok(),
        Call::ListAnonymous(contact) => client.list_anonymous_services(contact).await.is_ok(),
        Call::DeleteService(id) => client.delete_service(id).await.is_ok(),
        Call::ListCallbacks(contact) => client.list_callbacks(contact).await.is_ok(),
        Call::Cancel(callback) => client.cancel_callback(callback).await.is_ok(),
    }
}

impl<U: Ucs> Ucs for Recorder<'_, U> {
    async fn identify_contacts(
        &self,
        request: &IdentifyRequest,
    ) -> Result<Identification, UcsError> {
        self.note(Call::Identify(request.clone()));
        self.inner.identify_contacts(request).await
    }
    async fn get_contact(&self, contact: &ContactId) -> Result<Contact, UcsError> {
        self.note(Call::GetContact(contact.clone()));
        self.inner.get_contact(contact).await
    }
    async fn list_interactions(
        &self,
        contact: &ContactId,
        source: DataSource,
    ) -> Result<InteractionListing, UcsError> {
        self.note(Call::List(contact.clone(), source));
        self.inner.list_interactions(contact, source).await
    }
    async fn get_interaction_content(
        &self,
        interaction: &InteractionId,
        source: DataSource,
    ) -> Result<InteractionContent, UcsError> {
        self.note(Call::Content(interaction.clone(), source));
        self.inner.get_interaction_content(interaction, source).await
    }
    async fn open_attachment(
        &self,
        attachment: &AttachmentId,
        source: DataSource,
    ) -> Result<AttachmentBody, UcsError> {
        self.note(Call::Attachment(attachment.clone(), source));
        self.inner.open_attachment(attachment, source).await
    }
    async fn stop_interaction(
        &self,
        interaction: &InteractionSummary,
        tenant: TenantId,
        reason: &str,
    ) -> Result<(), UcsError> {
        self.note(Call::Stop(interaction.clone(), tenant, reason.to_owned()));
        self.inner.stop_interaction(interaction, tenant, reason).await
    }
    async fn delete_contact(&self, contact: &ContactId) -> Result<DeleteOutcome, UcsError> {
        self.note(Call::Delete(contact.clone()));
        self.inner.delete_contact(contact).await
    }
    async fn get_profile(&self, contact: &ContactId) -> Result<Option<Profile>, UcsError> {
        self.note(Call::GetProfile(contact.clone()));
        self.inner.get_profile(contact).await
    }
    async fn delete_profile(&self, contact: &ContactId) -> Result<DeleteOutcome, UcsError> {
        self.note(Call::DeleteProfile(contact.clone()));
        self.inner.delete_profile(contact).await
    }
    async fn list_services(&self, contact: &ContactId) -> Result<Vec<CsService>, UcsError> {
        self.note(Call::ListServices(contact.clone()));
        self.inner.list_services(contact).await
    }
    async fn list_anonymous_services(&self, contact: &Contact) -> Result<Vec<CsService>, UcsError> {
        self.note(Call::ListAnonymous(contact.clone()));
        self.inner.list_anonymous_services(contact).await
    }
    async fn delete_service(&self, service: &ServiceId) -> Result<DeleteOutcome, UcsError> {
        self.note(Call::DeleteService(service.clone()));
        self.inner.delete_service(service).await
    }
    async fn list_callbacks(&self, contact: &Contact) -> Result<Vec<Callback>, UcsError> {
        self.note(Call::ListCallbacks(contact.clone()));
        self.inner.list_callbacks(contact).await
    }
    async fn cancel_callback(&self, callback: &Callback) -> Result<DeleteOutcome, UcsError> {
        self.note(Call::Cancel(callback.clone()));
        self.inner.cancel_callback(callback).await
    }
}
