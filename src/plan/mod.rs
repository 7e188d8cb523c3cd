//! The planner: resolves the subjects against the live systems, read-only, runs each step's
//! plan behaviour (observe, count, decide), and writes a plan bound to what it saw.

pub mod file;
pub mod fingerprint;
mod model;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};

use futures_util::{StreamExt, stream};
use serde_json::Value;

pub use file::{PlanFile, PlanHeader, PlanWriter, Records, Section};
pub use fingerprint::{ContactState, fingerprint};
pub use model::*;

use crate::audit::SubjectDigester;
use crate::environment::{Environment, EnvironmentType, UcsVersion};
use crate::manifest::model::{Attachments, DataSourceRole, Expect, Request, Subject};
use crate::runbook::{Runbook, Scope, StepKind};
use crate::ucs::{
    CallSite, Contact, ContactId, DataSource, ErrorKind, IdentifyRequest, InteractionListing,
    TenantId, Ucs, UcsError, list_all_interactions,
};

/// What the planner needs besides the connector.
#[derive(Debug)]
pub struct PlanInput<'a> {
    /// The validated request.
    pub request: &'a Request,
    /// The manifest's path, as named by the user.
    pub manifest_path: String,
    /// sha256 of the manifest's bytes.
    pub manifest_sha256: String,
    /// The runbook it names.
    pub runbook: &'a Runbook,
    /// The environment's name.
    pub environment_name: &'a str,
    /// The environment.
    pub environment: &'a Environment,
    /// Turns identification requests into digests.
    pub digester: &'a SubjectDigester,
    /// Which UCS the environment is ([`Connection::ucs_version`](crate::environment::Connection)):
    /// the data sources read and exported follow it (9.x: `main` only).
    pub ucs_version: UcsVersion,
    /// How many contacts are read at once.
    pub concurrency: usize,
    /// Page size for interaction listings.
    pub page_size: u32,
    /// How the Info Mart ETL check can be made here.
    pub etl: Etl,
}

/// How the `infomart/etl-complete` check can be made in an environment.
#[derive(Debug)]
pub enum Etl {
    /// The environment configures no Info Mart.
    NotConfigured,
    /// Info Mart is configured and reachable in principle.
    Target(Box<crate::infomart::InfoMartTarget>),
    /// Info Mart is configured but its settings cannot be used (a missing password variable):
    /// the check blocks with this reason.
    Unusable(String),
}

impl Etl {
    /// The environment's Info Mart check, resolved from its settings.
    pub fn of(environment: &Environment, base_dir: &std::path::Path) -> Etl {
        match crate::infomart::InfoMartTarget::from_environment(environment, base_dir) {
            Ok(None) => Etl::NotConfigured,
            Ok(Some(target)) => Etl::Target(Box::new(target)),
            Err(error) => Etl::Unusable(error.to_string()),
        }
    }
}

/// What the Info Mart check found once for the whole plan.
#[derive(Debug)]
enum EtlFinding {
    NotConfigured,
    Status(crate::infomart::EtlStatus),
    Failed(String),
}

/// What was found about one contact, before any decision.
#[derive(Debug, Clone)]
struct Observed {
    state: ContactState,
    sources: BTreeMap<DataSource, SourceCounts>,
    /// Interactions in progress or in a workbin: id, media type, status, workbin.
    in_flight: Vec<(String, String, String, Option<String>)>,
    /// Pending callbacks: (service, id).
    pending_callbacks: Vec<(String, String)>,
    /// What Context Services holds, when the runbook cleans it or the export carries it.
    context: Option<ContextFinding>,
    /// When the contact's latest interaction ended (or started, when it has not ended).
    latest_end: Option<jiff::Timestamp>,
    /// Other contacts sharing one of its identifying values, with what they share.
    sharing: BTreeMap<ContactId, BTreeSet<SharedValue>>,
    /// Whether every identification of its values was complete (not capped by UCS).
    identification_complete: bool,
}

/// Whether an attribute identifies a person the way the seed warns records get duplicated:
/// an e-mail address or a phone number (UCS's `EmailAddress`, `PhoneNumber`, and any other
/// attribute named for one, such as `MobilePhone` or `HomeEmail`).
fn is_identifying(attribute: &str) -> bool {
    let name = attribute.to_ascii_lowercase();
    name.contains("email") || name.contains("phone")
}

/// Contacts of `tenant` with `attribute` = `value`, through the documented identification
/// (OMContacts/IdentifyContact, the client's `identify_contacts`), and whether UCS's answer was
/// complete. The one place the plan identifies for other records.
async fn identify_sharing<U: Ucs>(
    ucs: &U,
    tenant: TenantId,
    attribute: &str,
    value: &str,
) -> Result<(Vec<ContactId>, bool), UcsError> {
    let request = IdentifyRequest {
        tenant,
        attributes: BTreeMap::from([(attribute.to_owned(), value.to_owned())]),
    };
    let found = ucs.identify_contacts(&request).await?;
    Ok((found.contacts, found.complete))
}

/// The other contacts sharing one of `record`'s identifying values (one identification per
/// value, in the contact's tenant), and whether every identification was complete.
async fn other_records_of<U: Ucs>(
    record: &Contact,
    input: &PlanInput<'_>,
    ucs: &U,
) -> Result<(BTreeMap<ContactId, BTreeSet<SharedValue>>, bool), UcsError> {
    let mut sharing: BTreeMap<ContactId, BTreeSet<SharedValue>> = BTreeMap::new();
    let mut complete = true;
    for (attribute, values) in record.attributes.iter().filter(|(name, _)| is_identifying(name)) {
        for value in values.iter().filter(|v| !v.trim().is_empty()) {
            let (found, whole) = identify_sharing(ucs, record.tenant, attribute, value).await?;
            complete &= whole;
            let digest = input.digester.digest(&Value::Object(
                [(attribute.clone(), Value::String(value.clone()))].into_iter().collect(),
            ));
            for other in found.iter().filter(|c| **c != record.id) {
                sharing.entry(other.clone()).or_default().insert(SharedValue {
                    attribute: attribute.clone(),
                    digest: digest.as_str().to_owned(),
                });
            }
        }
    }
    Ok((sharing, complete))
}

/// What Context Services holds for a contact: counts only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ContextFinding {
    profile: bool,
    /// `None` when the services API (served by GMS) is not configured.
    services: Option<ServiceCounts>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ServiceCounts {
    services: u64,
    anonymous: u64,
    states: u64,
    tasks: u64,
}

impl ServiceCounts {
    fn of(services: &[crate::ucs::CsService]) -> Self {
        Self {
            services: services.len() as u64,
            anonymous: services.iter().filter(|s| s.anonymous).count() as u64,
            states: services.iter().map(|s| s.states.len() as u64).sum(),
            tasks: services.iter().map(|s| s.tasks.len() as u64).sum(),
        }
    }

    /// "2 service(s) with 3 state(s) and 4 task(s), 1 of them anonymous (found by the
    /// contact's phone numbers)"
    fn describe(&self) -> String {
        let mut text = format!(
            "{} service(s) with {} state(s) and {} task(s)",
            self.services, self.states, self.tasks
        );
        if self.anonymous > 0 {
            text.push_str(&format!(
                ", {} of them anonymous (found by the contact's phone numbers)",
                self.anonymous
            ));
        }
        text
    }
}

/// "the profile and 2 service(s) with ...", or `None` when Context Services holds nothing.
fn context_held(found: &ContextFinding) -> Option<String> {
    let services = found.services.unwrap_or_default();
    let mut what = Vec::new();
    if found.profile {
        what.push("the profile".to_owned());
    }
    if services.services > 0 {
        what.push(services.describe());
    }
    (!what.is_empty()).then(|| what.join(" and "))
}

/// How far planning is, as [`build_with_progress`] tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// What is being counted.
    pub phase: Phase,
    /// How many are done, in this phase.
    pub done: usize,
    /// How many there are, in this phase.
    pub total: usize,
}

/// A phase of planning that reads UCS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Subjects resolved to contacts (a read or an identification each).
    Resolving,
    /// Contacts read (interactions, callbacks, Context Services), most of planning's time.
    Reading,
}

/// Builds the plan in memory. Read-only: nothing is changed anywhere. For plans of many
/// contacts, [`build_to_file`] writes them one at a time instead.
///
/// A contact that cannot be read becomes a blocker in the plan.
pub async fn build<U: Ucs>(input: &PlanInput<'_>, ucs: &U) -> Plan {
    build_with_progress(input, ucs, &|_| {}).await
}

/// [`build`], telling `progress` each time a subject is resolved and each time a contact is
/// read.
pub async fn build_with_progress<U: Ucs>(
    input: &PlanInput<'_>,
    ucs: &U,
    progress: &(dyn Fn(Progress) + Sync),
) -> Plan {
    let mut contacts = Vec::new();
    let mut sink = |contact: ContactPlan| -> Result<(), std::convert::Infallible> {
        contacts.push(contact);
        Ok(())
    };
    let body = match build_into(input, ucs, progress, &|_| true, &mut sink).await {
        Ok(body) => body,
        Err(never) => match never {},
    };
    seal(PlanBody { contacts, ..body })
}

/// [`build_with_progress`] for the contacts `part` says yes to (a shard's re-check): a
/// `contactId` subject naming another contact is not resolved (it is left out of `subjects`),
/// and only `part`'s contacts are read and planned. Its plan is for comparing with an approved
/// plan's part, never for running.
pub async fn build_part<U: Ucs>(
    input: &PlanInput<'_>,
    ucs: &U,
    progress: &(dyn Fn(Progress) + Sync),
    part: &(dyn Fn(&ContactId) -> bool + Sync),
) -> Plan {
    let mut contacts = Vec::new();
    let mut sink = |contact: ContactPlan| -> Result<(), std::convert::Infallible> {
        contacts.push(contact);
        Ok(())
    };
    let body = match build_into(input, ucs, progress, part, &mut sink).await {
        Ok(body) => body,
        Err(never) => match never {},
    };
    seal(PlanBody { contacts, ..body })
}

/// Builds the plan into the plan file at `path` ([`file`]), one contact at a time: the planner
/// holds a few contacts' details at once (as many as it reads at once), never all. Returns the
/// plan without its contacts (they are in the file). Read-only against the live systems.
///
/// # Errors
/// The file cannot be written (nothing is left at `path` then).
pub async fn build_to_file<U: Ucs>(
    input: &PlanInput<'_>,
    ucs: &U,
    progress: &(dyn Fn(Progress) + Sync),
    path: &std::path::Path,
) -> std::io::Result<PlanFile> {
    let mut writer = PlanWriter::create(path)?;
    let mut sink = |contact: ContactPlan| writer.push(&contact);
    let body = build_into(input, ucs, progress, &|_| true, &mut sink).await?;
    writer.finish(body)?;
    PlanFile::open(path).map_err(std::io::Error::other)
}

/// What the planner adds up while contacts pass through it.
#[derive(Debug, Default)]
struct Tally {
    summary: Summary,
    blockers: Vec<Blocker>,
    warnings: Vec<Warning>,
    /// Contacts outside the plan sharing a value with contacts in it.
    shares: BTreeMap<ContactId, (BTreeSet<ContactId>, BTreeSet<SharedValue>)>,
    /// When the latest interaction of a contact that is not held ended.
    latest_end: Option<jiff::Timestamp>,
}

/// How a subject names a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    /// A `match` subject found it.
    Match,
    /// A `contactId` subject names it (resolved when the contact is read).
    Id,
}

/// The subjects naming each contact of the plan: one entry per contact and subject, sorted by
/// contact, then subject index, once [`Named::sort`] ran (about 32 bytes an entry; a map of
/// two small vectors per contact cost about 140 bytes a contact).
#[derive(Debug, Default)]
struct Named(Vec<(ContactId, usize, Via)>);

impl Named {
    fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    fn push(&mut self, id: &ContactId, index: usize, via: Via) {
        self.0.push((id.clone(), index, via));
    }

    /// Sorts the entries and keeps only the contacts `part` says yes to.
    fn sort(&mut self, part: &(dyn Fn(&ContactId) -> bool + Sync)) {
        self.0.retain(|(id, _, _)| part(id));
        self.0.sort_unstable();
        self.0.shrink_to_fit();
    }

    /// Whether a subject names `id`.
    fn contains(&self, id: &ContactId) -> bool {
        self.0.binary_search_by(|(named, _, _)| named.cmp(id)).is_ok()
    }

    /// Each contact, in id order, with the subjects that name it.
    fn contacts(&self) -> impl Iterator<Item = (&ContactId, Naming<'_>)> {
        self.0
            .chunk_by(|a, b| a.0 == b.0)
            .filter_map(|entries| entries.first().map(|(id, _, _)| (id, Naming(entries))))
    }
}

/// The subjects naming one contact (its entries of [`Named`], by subject index): `match`
/// subjects that found it, and `contactId` subjects (resolved when the contact is read).
#[derive(Debug, Clone, Copy)]
struct Naming<'a>(&'a [(ContactId, usize, Via)]);

impl Naming<'_> {
    /// The indices of the subjects naming it this way, in order.
    fn by(self, via: Via) -> impl Iterator<Item = usize> {
        self.0.iter().filter(move |(_, _, v)| *v == via).map(|(_, index, _)| *index)
    }

    /// The indices of every subject naming it, in order.
    fn all(self) -> Vec<usize> {
        self.0.iter().map(|(_, index, _)| *index).collect()
    }
}

/// The planner: resolves the subjects, reads Info Mart, then reads, decides and hands to `sink`
/// one contact at a time in id order (`input.concurrency` read at once); returns the body
/// without contacts. Only ids, indices and small totals are kept for all contacts. Only the
/// contacts `part` says yes to are planned (see [`build_part`]).
///
/// # Errors
/// What `sink` returns (planning stops there).
pub async fn build_into<U: Ucs, E>(
    input: &PlanInput<'_>,
    ucs: &U,
    progress: &(dyn Fn(Progress) + Sync),
    part: &(dyn Fn(&ContactId) -> bool + Sync),
    sink: &mut (dyn FnMut(ContactPlan) -> Result<(), E> + Send),
) -> Result<PlanBody, E> {
    let request = input.request;
    let spec = &request.spec;
    let runbook = input.runbook;
    let tenant = TenantId(u32::try_from(input.environment.tenant).unwrap_or(u32::MAX));
    let mut tally = Tally::default();

    // 1. Resolve every `match` subject, concurrently. A `contactId` subject is resolved when its
    // contact is read (3.), so that no contact's record is held from one phase to the next.
    // A shard's re-check leaves out the `contactId` subjects of other shards' contacts.
    let theirs = |subject: &Subject| match subject {
        Subject::Contact { contact_id } => ContactId::new(contact_id).is_ok_and(|id| !part(&id)),
        Subject::Match { .. } => false,
    };
    let mine = spec.subjects.iter().filter(|s| !theirs(s)).count();
    let resolving = Counter::new(Phase::Resolving, mine, progress);
    let reads = Reads::new(input.concurrency);
    // Exactly as many as there are (collecting the stream would double the vector as it grows).
    let mut resolutions: Vec<SubjectResolution> = Vec::with_capacity(mine);
    let mut resolved = stream::iter(spec.subjects.iter().enumerate().filter(|(_, s)| !theirs(s)))
        .map(|(index, subject)| {
            reads.limit(resolving.after(resolve(index + 1, subject, tenant, input, ucs)))
        })
        .buffered(reads.window());
    while let Some(resolution) = resolved.next().await {
        resolutions.push(resolution);
    }
    drop(resolved);

    let mut named = Named::with_capacity(resolutions.len());
    for resolution in &resolutions {
        match &resolution.outcome {
            // Provisional until the contact is read.
            Resolution::Found { .. } if resolution.match_digest.is_none() => {
                if let Some(id) = &resolution.contact_id {
                    named.push(id, resolution.index, Via::Id);
                }
            }
            Resolution::Found { contacts } => {
                for contact in contacts {
                    named.push(contact, resolution.index, Via::Match);
                }
            }
            Resolution::Ambiguous { candidates } => tally.blockers.push(Blocker {
                contact_id: None,
                subject: Some(resolution.index),
                step: None,
                code: "subject::ambiguous".into(),
                message: format!(
                    "subject {} matches {} contacts but expects one; name the right ones by \
                     contactId, or set `expect: all`",
                    resolution.index,
                    candidates.len()
                ),
            }),
            Resolution::Unreadable { reason } => {
                tally.blockers.push(unresolved(
                    resolution.index,
                    resolution.contact_id.as_ref(),
                    reason,
                ));
            }
            Resolution::AlreadyAbsent | Resolution::NoMatch => {}
        }
    }

    named.sort(part);

    let held: BTreeMap<&str, &str> =
        spec.holds.iter().map(|h| (h.contact_id.as_str(), h.reason.as_str())).collect();
    let delete_mode = if !runbook.deletes() || spec.delete.is_none() {
        DeleteMode::None
    } else if spec.delete_confirmed() {
        DeleteMode::Confirmed
    } else {
        DeleteMode::ReportOnly
    };

    // 2. Info Mart, read once for the whole plan when a step needs it, before the contacts.
    let etl = if runbook.steps.iter().any(|s| s.uses == StepKind::EtlComplete) {
        match &input.etl {
            Etl::NotConfigured => EtlFinding::NotConfigured,
            Etl::Unusable(reason) => EtlFinding::Failed(reason.clone()),
            Etl::Target(target) => match target.read_status().await {
                Ok(status) => EtlFinding::Status(status),
                Err(error) => EtlFinding::Failed(error.to_string()),
            },
        }
    } else {
        EtlFinding::NotConfigured
    };

    // 3. Read every contact in id order, concurrently; decide each as it comes, in order, and
    // hand it on.
    let wants = Wants::of(runbook, request, input.ucs_version);
    let reading = Counter::new(Phase::Reading, named.contacts().count(), progress);
    let wants_ref = &wants;
    let reads_ref = &reads;
    let mut observed = stream::iter(named.contacts())
        .map(|(id, naming)| {
            reads_ref.limit(reading.after(async move {
                let read = CallSite::contact_scope(id.as_str(), async {
                    let record = ucs.get_contact(id).await?;
                    Ok(observe(id, record, wants_ref, input, ucs).await.map_err(|e| e.to_string()))
                })
                .await;
                (id, naming, read)
            }))
        })
        .buffered(reads.window());
    while let Some((id, naming, read)) = observed.next().await {
        let read: Result<Result<Observed, String>, UcsError> = read;
        let (subjects, result) = match read {
            Err(error) => {
                // The record itself: its `contactId` subjects resolve to nothing, or could not be
                // resolved.
                let outcome = if error.kind == ErrorKind::NotFound {
                    Resolution::AlreadyAbsent
                } else {
                    Resolution::Unreadable { reason: error.to_string() }
                };
                for index in naming.by(Via::Id) {
                    if let Resolution::Unreadable { reason } = &outcome {
                        tally.blockers.push(unresolved(index, Some(id), reason));
                    }
                    // Resolutions are in index order (a shard's leave some indices out).
                    let at = resolutions.binary_search_by_key(&index, |r| r.index).ok();
                    if let Some(resolution) = at.and_then(|i| resolutions.get_mut(i)) {
                        resolution.outcome = outcome.clone();
                    }
                }
                let by_match: Vec<usize> = naming.by(Via::Match).collect();
                if by_match.is_empty() {
                    continue;
                }
                (by_match, Err(error.to_string()))
            }
            Ok(result) => (naming.all(), result),
        };
        let hold = held.get(id.as_str()).map(|r| (*r).to_owned());
        let contact = match result {
            Ok(observed) => {
                if hold.is_none() {
                    tally.latest_end = tally.latest_end.max(observed.latest_end);
                }
                other_records_of_one(id, &observed, &named, &held, runbook, &mut tally);
                decide(id, subjects, hold, &observed, &wants, delete_mode, input, &etl)
            }
            Err(reason) => unreadable_contact(id, subjects, hold, &reason),
        };
        for step in contact.steps.iter().filter(|s| s.status == StepStatus::Blocked) {
            tally.blockers.push(Blocker {
                contact_id: Some(id.clone()),
                subject: None,
                step: Some(step.id.clone()),
                code: format!("step::{}", step.uses.name()),
                message: step.notes.first().cloned().unwrap_or_else(|| "blocked".into()),
            });
        }
        count(&mut tally.summary, &contact, &wants);
        sink(contact)?;
    }
    drop(observed);

    let request_steps: Vec<StepPlan> = ordered_steps(runbook)
        .filter(|step| step.scope == Scope::Request)
        .map(|step| request_step(step.uses, &step.id, input, &etl, tally.latest_end))
        .collect();
    for step in request_steps.iter().filter(|s| s.status == StepStatus::Blocked) {
        tally.blockers.push(Blocker {
            contact_id: None,
            subject: None,
            step: Some(step.id.clone()),
            code: format!("step::{}", step.uses.name()),
            message: step.notes.first().cloned().unwrap_or_else(|| "blocked".into()),
        });
    }

    let mut other_records = Vec::new();
    for (other, (with, shared)) in std::mem::take(&mut tally.shares) {
        let facts = candidate(&other, input, ucs).await;
        other_records.push(OtherRecord {
            contact_id: other,
            shares_with: with.into_iter().collect(),
            shared: shared.into_iter().collect(),
            interactions: facts.interactions,
            first_interaction: facts.first_interaction,
            last_interaction: facts.last_interaction,
        });
    }
    let mut warnings = std::mem::take(&mut tally.warnings);
    warnings.extend(runbook_warnings(runbook));
    warnings.sort();
    let mut blockers = std::mem::take(&mut tally.blockers);
    blockers.sort();

    let mut summary = tally.summary;
    summary.already_absent =
        resolutions.iter().filter(|r| r.outcome == Resolution::AlreadyAbsent).count() as u64;
    summary.blockers = blockers.len() as u64;
    summary.changes = summary.to_export > 0 || summary.to_delete > 0;
    Ok(PlanBody {
        api_version: PLAN_API_VERSION.into(),
        kind: "Plan".into(),
        request: RequestInfo {
            id: request.metadata.id.clone(),
            manifest_path: input.manifest_path.clone(),
            manifest_sha256: input.manifest_sha256.clone(),
            received_at: request.metadata.received_at.to_string(),
            deadline: request.metadata.effective_deadline().to_string(),
            channel: request.metadata.channel,
            verified_by: request.metadata.verified_by.clone(),
            ticket: request.metadata.ticket.clone(),
            language: request.metadata.language.clone(),
            subjects_file: request.subjects_file.clone(),
        },
        environment: EnvironmentInfo {
            name: input.environment_name.to_owned(),
            kind: match input.environment.kind {
                EnvironmentType::Embedded => "embedded".into(),
                EnvironmentType::Rest => "rest".into(),
            },
            tenant: input.environment.tenant,
            ucs_version: input.ucs_version,
            policy_sha256: input.environment.digests.policy.clone(),
            target_sha256: input.environment.digests.target.clone(),
        },
        runbook: RunbookInfo {
            name: runbook.name.clone(),
            sha256: runbook.sha256.clone(),
            origin: match &runbook.origin {
                crate::runbook::Origin::BuiltIn => None,
                crate::runbook::Origin::File(path) => Some(path.display().to_string()),
            },
            replaces_built_in: runbook.replaces_built_in.clone(),
            waives: runbook
                .effective_waivers()
                .into_iter()
                .map(|w| WaiverInfo { check: w.check, reason: capped(&w.reason) })
                .collect(),
            steps: ordered_steps(runbook)
                .map(|s| StepInfo {
                    id: s.id.clone(),
                    uses: s.uses,
                    scope: s.scope,
                    after: s.after.clone(),
                })
                .collect(),
        },
        export: wants.export.then(|| ExportInfo {
            data_sources: wants.export_sources.clone(),
            attachments: if wants.inline { Attachments::Inline } else { Attachments::Omit },
            context_services: configured_context_services(input.environment),
        }),
        export_waived: spec.export_waiver.is_some(),
        delete: delete_mode,
        subjects: resolutions,
        request_steps,
        contacts: Vec::new(),
        blockers,
        other_records,
        warnings,
        summary,
    })
}

/// The blocker of a subject that could not be resolved.
fn unresolved(index: usize, contact: Option<&ContactId>, reason: &str) -> Blocker {
    Blocker {
        contact_id: contact.cloned(),
        subject: Some(index),
        step: None,
        code: "subject::unreadable".into(),
        message: format!("subject {index} could not be resolved: {reason}"),
    }
}

/// What the runbook itself asks a reviewer to look at: a local file that replaces a built-in,
/// and each check it waives (blocker-level).
fn runbook_warnings(runbook: &Runbook) -> Vec<Warning> {
    let mut warnings = Vec::new();
    if let (Some(_), crate::runbook::Origin::File(path)) =
        (&runbook.replaces_built_in, &runbook.origin)
    {
        warnings.push(Warning {
            contact_id: None,
            code: "runbook::overrides-built-in".into(),
            message: format!(
                "the runbook `{}` is the local file `{}` (sha256 {}), which replaces the built-in \
                 runbook of that name: review its steps, the built-in's are not what runs",
                runbook.name,
                path.display(),
                runbook.sha256.get(..12).unwrap_or(&runbook.sha256)
            ),
            level: WarningLevel::Notice,
        });
    }
    let reference = runbook.reference_built_in().map_or("forget-me-on-premise", |r| &r.name);
    for waiver in runbook.effective_waivers() {
        warnings.push(Warning {
            contact_id: None,
            code: "runbook::check-waived".into(),
            message: format!(
                "CHECK WAIVED: the runbook `{}` deletes without `{}`, which the built-in runbook \
                 `{reference}` runs before anything is deleted; the runbook's reason: \"{}\"",
                runbook.name,
                waiver.check.name(),
                capped(&waiver.reason)
            ),
            level: WarningLevel::Blocker,
        });
    }
    warnings
}

/// A runbook's waiver reason on one line, cut to [`WAIVER_REASON_MAX`] characters.
///
/// [`WAIVER_REASON_MAX`]: crate::runbook::WAIVER_REASON_MAX
fn capped(reason: &str) -> String {
    let one_line: String =
        reason.split_whitespace().collect::<Vec<_>>().join(" ").replace('"', "'");
    let max = crate::runbook::WAIVER_REASON_MAX;
    if one_line.chars().count() > max {
        format!("{}…", one_line.chars().take(max).collect::<String>())
    } else {
        one_line
    }
}

/// One contact's share of the possible other records of the plan's people: contacts outside the
/// plan that share an identifying value with it (their facts are read at the end); a warning
/// when the runbook deletes and leaves them out; a blocker when an identification was
/// incomplete.
fn other_records_of_one(
    id: &ContactId,
    found: &Observed,
    in_plan: &Named,
    held: &BTreeMap<&str, &str>,
    runbook: &Runbook,
    tally: &mut Tally,
) {
    if !found.identification_complete {
        tally.blockers.push(Blocker {
            contact_id: Some(id.clone()),
            subject: None,
            step: None,
            code: "subject::identification-incomplete".into(),
            message: format!(
                "UCS capped the identification of contact {id}'s e-mail addresses or phone \
                 numbers (its select limit): other records of the same person may be \
                 missing; raise the limit or find them by contact id, then plan again"
            ),
        });
    }
    let left_out: Vec<&ContactId> =
        found.sharing.keys().filter(|other| !in_plan.contains(other)).collect();
    for other in &left_out {
        let entry = tally.shares.entry((*other).clone()).or_default();
        entry.0.insert(id.clone());
        entry.1.extend(found.sharing.get(*other).into_iter().flatten().cloned());
    }
    // A held contact is kept: leaving its other records out erases nothing partially.
    if runbook.deletes() && !held.contains_key(id.as_str()) && !left_out.is_empty() {
        let attributes: BTreeSet<&str> = left_out
            .iter()
            .filter_map(|o| found.sharing.get(*o))
            .flatten()
            .map(|v| v.attribute.as_str())
            .collect();
        let others: Vec<&str> = left_out.iter().map(|o| o.as_str()).collect();
        tally.warnings.push(Warning {
            contact_id: Some(id.clone()),
            code: "subject::other-records-left-out".into(),
            message: format!(
                "contact {id} shares {} with {} that this plan leaves out: possibly the same \
                 person, whose erasure would then be partial; name {} (or match with \
                 `expect: all`), or record why they are not the same person",
                attributes.into_iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "),
                others.join(", "),
                if others.len() == 1 { "it as a subject" } else { "them as subjects" }
            ),
            level: WarningLevel::Notice,
        });
    }
}

/// Computes the plan id of a body (over its header and every record line, as the plan file
/// holds them: [`file`]).
pub fn seal(body: PlanBody) -> Plan {
    Plan { plan_id: file::id_of(&body), body }
}

/// The plan id of a body: sha256 of the canonical JSON of its file's header, which holds the
/// digests of its record lines.
pub fn body_hash(body: &PlanBody) -> String {
    file::id_of(body)
}

impl Plan {
    /// The plan file's bytes (what `--out` writes): JSON Lines, the header first ([`file`]).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.write_to(&mut bytes);
        bytes
    }

    /// Reads a plan from its file's bytes and checks its id against its lines.
    ///
    /// # Errors
    /// Not a plan, or lines that do not hash to its id (edited by hand, or corrupted).
    pub fn from_json(bytes: &[u8]) -> Result<Plan, String> {
        file::from_bytes(bytes)
    }

    /// Whether anything blocks the plan.
    pub fn is_blocked(&self) -> bool {
        !self.body.blockers.is_empty()
    }
}

/// What the runbook and the request ask for.
#[derive(Debug, Clone)]
struct Wants {
    export: bool,
    export_sources: Vec<DataSource>,
    /// Sources the request asks for that this UCS does not have as a store of their own
    /// (`archive` on 9.x): noted in the plan, never read a second time.
    ignored_sources: Vec<DataSource>,
    inline: bool,
    kinds: BTreeSet<StepKind>,
}

impl Wants {
    fn of(runbook: &Runbook, request: &Request, version: UcsVersion) -> Self {
        let kinds: BTreeSet<StepKind> = runbook.steps.iter().map(|s| s.uses).collect();
        let export = request.spec.export.as_ref().filter(|_| kinds.contains(&StepKind::Export));
        let asked: Vec<DataSource> = export
            .map(|e| {
                let mut sources: Vec<DataSource> = e
                    .data_sources
                    .iter()
                    .map(|s| match s {
                        DataSourceRole::Main => DataSource::Main,
                        DataSourceRole::Archive => DataSource::Archive,
                    })
                    .collect();
                sources.sort();
                sources.dedup();
                sources
            })
            .unwrap_or_default();
        // On 9.x every role names the one store: it is read once, as `main`.
        let (mut export_sources, ignored_sources): (Vec<_>, Vec<_>) =
            asked.into_iter().partition(|s| version.data_sources().contains(s));
        if export_sources.is_empty() && !ignored_sources.is_empty() {
            export_sources.push(DataSource::Main);
        }
        Wants {
            export: export.is_some(),
            export_sources,
            ignored_sources,
            inline: export.is_some_and(|e| e.attachments == Attachments::Inline),
            kinds,
        }
    }
}

fn ordered_steps(runbook: &Runbook) -> impl Iterator<Item = &crate::runbook::Step> {
    runbook.order().unwrap_or_default().into_iter()
}

/// Counts the futures of a phase as they finish, for [`Progress`].
struct Counter<'a> {
    phase: Phase,
    total: usize,
    done: std::sync::atomic::AtomicUsize,
    progress: &'a (dyn Fn(Progress) + Sync),
}

impl<'a> Counter<'a> {
    fn new(phase: Phase, total: usize, progress: &'a (dyn Fn(Progress) + Sync)) -> Self {
        progress(Progress { phase, done: 0, total });
        Self { phase, total, done: std::sync::atomic::AtomicUsize::new(0), progress }
    }

    /// `work`, counted when it is done.
    async fn after<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let value = work.await;
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        (self.progress)(Progress { phase: self.phase, done, total: self.total });
        value
    }
}

/// How contacts (and subjects) are read in order: `concurrency` of them read at once, and up
/// to [`Reads::AHEAD`] times as many, already read, may wait for a slower one before them.
/// An ordered stream of exactly `concurrency` futures would stop starting reads whenever its
/// head is slow (each finished read holds a slot until the head is taken), so the server would
/// see fewer calls at once than the environment allows; an ordered window with a separate
/// limit on reads keeps both the id order and the concurrency. The window's reads are held in
/// memory: `AHEAD × concurrency` contacts at most.
struct Reads {
    concurrency: usize,
    limit: tokio::sync::Semaphore,
}

impl Reads {
    const AHEAD: usize = 4;

    fn new(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        Self { concurrency, limit: tokio::sync::Semaphore::new(concurrency) }
    }

    /// How many reads an ordered stream may hold.
    fn window(&self) -> usize {
        self.concurrency.saturating_mul(Self::AHEAD)
    }

    /// `read`, once fewer than `concurrency` reads are under way.
    async fn limit<T>(&self, read: impl std::future::Future<Output = T>) -> T {
        // The semaphore is never closed, so `acquire` does not fail; were it to, the read
        // would go ahead unlimited rather than not at all.
        let _permit = self.limit.acquire().await.ok();
        read.await
    }
}

async fn resolve<U: Ucs>(
    index: usize,
    subject: &Subject,
    tenant: TenantId,
    input: &PlanInput<'_>,
    ucs: &U,
) -> SubjectResolution {
    match subject {
        // Provisionally found: the contact is read (and the outcome settled) with the others.
        Subject::Contact { contact_id } => {
            let outcome = match ContactId::new(contact_id) {
                Err(_) => Resolution::Unreadable { reason: "not a contact id".into() },
                Ok(id) => Resolution::Found { contacts: FoundContacts::one(id) },
            };
            SubjectResolution {
                index,
                contact_id: ContactId::new(contact_id).ok(),
                match_digest: None,
                expect: None,
                outcome,
            }
        }
        Subject::Match { criteria, expect } => {
            let digest = input.digester.digest(&Value::Object(
                criteria.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            ));
            let tenant = criteria
                .get("TenantId")
                .and_then(Value::as_u64)
                .and_then(|t| u32::try_from(t).ok())
                .map_or(tenant, TenantId);
            let attributes = criteria
                .iter()
                .filter(|(k, _)| k.as_str() != "TenantId")
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            let identify = IdentifyRequest { tenant, attributes };
            let outcome = match ucs.identify_contacts(&identify).await {
                Err(error) => Resolution::Unreadable { reason: error.to_string() },
                // UCS caps an identification at its select limit: a capped answer may leave
                // records of the person out, so nobody can be sure every record was found.
                Ok(found) if !found.complete => Resolution::Unreadable {
                    reason: format!(
                        "the identification lists {} contacts and may be capped by UCS's \
                         select limit: cannot be sure every record was found",
                        found.contacts.len()
                    ),
                },
                Ok(found) if found.contacts.is_empty() => Resolution::NoMatch,
                Ok(found) if found.contacts.len() > 1 && *expect == Expect::One => {
                    let mut candidates = Vec::new();
                    for id in &found.contacts {
                        candidates.push(
                            CallSite::contact_scope(id.as_str(), candidate(id, input, ucs)).await,
                        );
                    }
                    candidates.sort_by(|a, b| a.contact_id.cmp(&b.contact_id));
                    Resolution::Ambiguous { candidates }
                }
                Ok(found) => {
                    let mut contacts = found.contacts;
                    contacts.sort();
                    Resolution::Found { contacts: contacts.into() }
                }
            };
            SubjectResolution {
                index,
                contact_id: None,
                match_digest: Some(digest.as_str().to_owned()),
                expect: Some(*expect),
                outcome,
            }
        }
    }
}

async fn candidate<U: Ucs>(id: &ContactId, input: &PlanInput<'_>, ucs: &U) -> Candidate {
    let mut interactions = BTreeMap::new();
    let mut starts = Vec::new();
    for &source in input.ucs_version.data_sources() {
        if let Ok(InteractionListing::Found(list)) =
            list_all_interactions(ucs, id, source, input.page_size).await
        {
            interactions.insert(source, list.len() as u64);
            starts.extend(list.iter().filter_map(|i| i.start_date));
        }
    }
    starts.sort();
    Candidate {
        contact_id: id.clone(),
        interactions,
        first_interaction: starts.first().map(ToString::to_string),
        last_interaction: starts.last().map(ToString::to_string),
    }
}

async fn observe<U: Ucs>(
    contact: &ContactId,
    record: Contact,
    wants: &Wants,
    input: &PlanInput<'_>,
    ucs: &U,
) -> Result<Observed, UcsError> {
    let (sharing, identification_complete) = other_records_of(&record, input, ucs).await?;
    let mut state = ContactState {
        attribute_names: record.attributes.keys().cloned().collect(),
        attribute_values: input
            .digester
            .digest(&serde_json::to_value(&record.attributes).unwrap_or(Value::Null))
            .as_str()
            .to_owned(),
        sources: BTreeMap::new(),
        context: None,
    };
    let mut sources = BTreeMap::new();
    let mut in_flight = Vec::new();
    for &source in input.ucs_version.data_sources() {
        let listing = list_all_interactions(ucs, contact, source, input.page_size).await?;
        let mut counts = SourceCounts::default();
        match &listing {
            InteractionListing::SourceUnavailable { reason } => {
                counts.reason = Some(reason.clone());
            }
            InteractionListing::Found(list) => {
                counts.available = true;
                counts.interactions = list.len() as u64;
                let mut starts: Vec<_> = list.iter().filter_map(|i| i.start_date).collect();
                starts.sort();
                counts.first_interaction = starts.first().map(ToString::to_string);
                counts.last_interaction = starts.last().map(ToString::to_string);
                for interaction in list {
                    counts.attachments += u64::from(interaction.attachment_count);
                    if interaction.is_in_flight() {
                        counts.in_flight += 1;
                        in_flight.push((
                            interaction.id.as_str().to_owned(),
                            interaction.media_type.clone(),
                            interaction.status.as_str().to_owned(),
                            interaction.workbin.clone(),
                        ));
                    }
                    if wants.export
                        && wants.inline
                        && wants.export_sources.contains(&source)
                        && interaction.attachment_count > 0
                    {
                        let content = ucs.get_interaction_content(&interaction.id, source).await?;
                        counts.bytes += content.attachments.iter().map(|a| a.size).sum::<u64>();
                    }
                }
            }
        }
        state.sources.insert(source, listing);
        sources.insert(source, counts);
    }
    in_flight.sort();
    let gms = configured_gms(input.environment);
    let pending_callbacks = if wants.kinds.contains(&StepKind::NoPendingCallbacks) && gms {
        let mut ids: Vec<(String, String)> = ucs
            .list_callbacks(&record)
            .await?
            .into_iter()
            .filter(|c| c.state.is_pending())
            .map(|c| (c.service, c.id.as_str().to_owned()))
            .collect();
        ids.sort();
        ids
    } else {
        Vec::new()
    };
    // Context Services is read when the runbook cleans it or the export carries it.
    let context = if (wants.kinds.contains(&StepKind::DeleteProfile) || wants.export)
        && configured_context_services(input.environment)
    {
        let profile = ucs.get_profile(contact).await?;
        let services = if gms {
            let mut services = ucs.list_services(contact).await?;
            services.extend(ucs.list_anonymous_services(&record).await?);
            Some(services)
        } else {
            None
        };
        let content = serde_json::json!({
            "profile": profile.as_ref().map(|p| &p.fields),
            "services": services.as_ref().map(|list| list
                .iter()
                .map(|s| serde_json::json!([s.id, s.anonymous, s.service, s.states, s.tasks]))
                .collect::<Vec<_>>()),
        });
        state.context = Some(input.digester.digest(&content).as_str().to_owned());
        Some(ContextFinding {
            profile: profile.is_some(),
            services: services.as_deref().map(ServiceCounts::of),
        })
    } else {
        None
    };
    let latest_end = state
        .sources
        .values()
        .filter_map(|listing| match listing {
            InteractionListing::Found(list) => {
                list.iter().filter_map(|i| i.end_date.or(i.start_date)).max()
            }
            InteractionListing::SourceUnavailable { .. } => None,
        })
        .max();
    Ok(Observed {
        state,
        sources,
        in_flight,
        pending_callbacks,
        context,
        latest_end,
        sharing,
        identification_complete,
    })
}

/// Whether the environment reaches GMS (callbacks, and the Context Services services API).
pub(crate) fn configured_gms(environment: &Environment) -> bool {
    environment.kind == EnvironmentType::Embedded || environment.gms.is_some()
}

fn configured_context_services(environment: &Environment) -> bool {
    environment.kind == EnvironmentType::Embedded || environment.context_services.is_some()
}

fn request_step(
    kind: StepKind,
    id: &str,
    input: &PlanInput<'_>,
    etl: &EtlFinding,
    latest_end: Option<jiff::Timestamp>,
) -> StepPlan {
    let (status, notes) = match kind {
        StepKind::EtlComplete => etl_check(input, etl, latest_end),
        other => (StepStatus::Ready, vec![format!("{} runs once", other.name())]),
    };
    StepPlan { id: id.to_owned(), uses: kind.into(), status, notes }
}

/// The Info Mart check for interactions that ended by `latest_end`: a check that cannot confirm
/// the ETL cycle is complete blocks, never passes.
fn etl_check(
    input: &PlanInput<'_>,
    etl: &EtlFinding,
    latest_end: Option<jiff::Timestamp>,
) -> (StepStatus, Vec<String>) {
    match etl {
        EtlFinding::NotConfigured if input.environment.policy.require_checks => (
            StepStatus::Blocked,
            vec![
                "Info Mart is not configured for this environment, and its policy requires \
                  every check"
                    .to_owned(),
            ],
        ),
        EtlFinding::NotConfigured => (
            StepStatus::NotConfigured,
            vec![
                "Info Mart is not configured for this environment: the ETL cycle is not checked"
                    .to_owned(),
            ],
        ),
        EtlFinding::Failed(reason) => (StepStatus::Blocked, vec![reason.clone()]),
        EtlFinding::Status(status) => {
            let verdict = crate::infomart::verdict(status, latest_end);
            let decision =
                if verdict.allows_deletes() { StepStatus::Ready } else { StepStatus::Blocked };
            (decision, vec![verdict.to_string()])
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn decide(
    id: &ContactId,
    subjects: Vec<usize>,
    hold: Option<String>,
    observed: &Observed,
    wants: &Wants,
    delete_mode: DeleteMode,
    input: &PlanInput<'_>,
    etl: &EtlFinding,
) -> ContactPlan {
    let runbook = input.runbook;
    let held = hold.is_some();
    let mut steps = Vec::new();
    let mut blocked = false;
    let order = runbook.order().unwrap_or_default();
    for step in order.iter().filter(|s| s.scope == Scope::Contact) {
        let (status, notes) = if held {
            (StepStatus::Skipped, vec!["held: this contact is kept (Art. 17(3))".to_owned()])
        } else {
            plan_contact_step(step.uses, observed, wants, delete_mode, input, etl, blocked)
        };
        if status == StepStatus::Blocked {
            blocked = true;
        }
        steps.push(StepPlan { id: step.id.clone(), uses: step.uses.into(), status, notes });
    }
    let export = !held && wants.export;
    let delete = !held && !blocked && delete_mode == DeleteMode::Confirmed;
    ContactPlan {
        contact_id: id.clone(),
        subjects,
        hold,
        sources: observed.sources.clone(),
        fingerprint: fingerprint(&observed.state),
        steps,
        export,
        delete,
    }
}

fn plan_contact_step(
    kind: StepKind,
    observed: &Observed,
    wants: &Wants,
    delete_mode: DeleteMode,
    input: &PlanInput<'_>,
    etl: &EtlFinding,
    blocked_before: bool,
) -> (StepStatus, Vec<String>) {
    let in_flight_notes = || {
        observed
            .in_flight
            .iter()
            .map(|(id, media, status, workbin)| match workbin {
                Some(workbin) => {
                    format!("interaction {id} ({media}): {status}, in workbin `{workbin}`")
                }
                None => format!("interaction {id} ({media}): {status}"),
            })
            .collect::<Vec<_>>()
    };
    match kind {
        StepKind::EtlComplete => etl_check(input, etl, observed.latest_end),
        StepKind::NoPendingCallbacks => {
            if !configured_gms(input.environment) {
                let status = if input.environment.policy.require_checks {
                    StepStatus::Blocked
                } else {
                    StepStatus::NotConfigured
                };
                (status, vec!["GMS is not configured for this environment".to_owned()])
            } else if observed.pending_callbacks.is_empty() {
                (StepStatus::Ready, vec!["no pending callback".to_owned()])
            } else {
                let mut notes = vec![format!(
                    "{} pending GMS callback(s): cancel or complete them first",
                    observed.pending_callbacks.len()
                )];
                notes.extend(
                    observed
                        .pending_callbacks
                        .iter()
                        .map(|(service, id)| format!("callback {id} in service `{service}`")),
                );
                (StepStatus::Blocked, notes)
            }
        }
        // Interaction Server owns queues and workbins; nothing documented removes an interaction
        // from them through UCS (see `StepKind::StopInProgress`), so the step lists what an
        // operator must stop there, and blocks until it is done.
        StepKind::StopInProgress => {
            if observed.in_flight.is_empty() {
                (StepStatus::NothingToDo, vec!["no interaction in progress".to_owned()])
            } else {
                let mut notes = vec![format!(
                    "{} interaction(s) in progress or in a workbin: stop them in Interaction \
                     Server (the agent desktop, Composer's Stop Interaction block, or Interaction \
                     Server's administration), then plan again",
                    observed.in_flight.len()
                )];
                notes.extend(in_flight_notes());
                (StepStatus::Blocked, notes)
            }
        }
        StepKind::RequireNoInProgress => {
            if observed.in_flight.is_empty() {
                (StepStatus::Ready, vec!["no interaction in progress".to_owned()])
            } else {
                let mut notes = vec![format!(
                    "{} interaction(s) still in progress: wait until they are done",
                    observed.in_flight.len()
                )];
                notes.extend(in_flight_notes());
                (StepStatus::Blocked, notes)
            }
        }
        StepKind::DeleteProfile => context_step(observed, delete_mode, input, blocked_before),
        StepKind::Export => {
            if !wants.export {
                let note = if input.request.spec.export_waiver.is_some() {
                    "export waived by the request"
                } else {
                    "the request asks for no export"
                };
                return (StepStatus::NothingToDo, vec![note.to_owned()]);
            }
            let mut notes = Vec::new();
            for source in &wants.ignored_sources {
                notes.push(format!(
                    "{source}: on UCS {} this is the one store again (`DataSource` is ignored \
                     in 9.x): not read a second time",
                    input.ucs_version
                ));
            }
            for source in &wants.export_sources {
                match observed.sources.get(source) {
                    Some(counts) if counts.available => notes.push(format!(
                        "{source}: {} interaction(s), {} attachment(s), {} bytes",
                        counts.interactions, counts.attachments, counts.bytes
                    )),
                    Some(counts) => notes.push(format!(
                        "{source}: no interactions found in source {source} ({})",
                        counts.reason.as_deref().unwrap_or("data source unavailable")
                    )),
                    None => {}
                }
            }
            if let Some(found) = &observed.context {
                notes.push(match context_held(found) {
                    Some(held) => format!("Context Services: {held}"),
                    None => "Context Services: no profile, no service".to_owned(),
                });
            }
            (StepStatus::Ready, notes)
        }
        StepKind::DeleteContact => match delete_mode {
            DeleteMode::None => {
                (StepStatus::NothingToDo, vec!["the request deletes nothing".to_owned()])
            }
            DeleteMode::ReportOnly => (
                StepStatus::ReportOnly,
                vec!["`confirm: true` is missing: apply will only report this contact".to_owned()],
            ),
            DeleteMode::Confirmed if blocked_before => {
                (StepStatus::Skipped, vec!["an earlier step blocks".to_owned()])
            }
            DeleteMode::Confirmed => {
                let total: u64 = observed.sources.values().map(|c| c.interactions).sum();
                (
                    StepStatus::Ready,
                    vec![if input.ucs_version.has_archive_role() {
                        format!(
                            "will delete the contact and its {total} interaction(s) in every \
                             data source"
                        )
                    } else {
                        format!("will delete the contact and its {total} interaction(s)")
                    }],
                )
            }
        },
        StepKind::VerifyAbsent => match delete_mode {
            DeleteMode::Confirmed if !blocked_before => (
                StepStatus::Ready,
                vec![if input.ucs_version.has_archive_role() {
                    "will confirm it is gone from main and archive".to_owned()
                } else {
                    "will confirm it is gone from the store".to_owned()
                }],
            ),
            _ => (StepStatus::NothingToDo, vec!["nothing is deleted".to_owned()]),
        },
    }
}

/// The Context Services step: the profile and the services (with states and tasks), deleted
/// after the export; services cannot be found without GMS, which serves their API.
fn context_step(
    observed: &Observed,
    delete_mode: DeleteMode,
    input: &PlanInput<'_>,
    blocked_before: bool,
) -> (StepStatus, Vec<String>) {
    let Some(found) = &observed.context else {
        return (
            StepStatus::NotConfigured,
            vec!["Context Services is not configured for this environment".to_owned()],
        );
    };
    let held = context_held(found);
    let mut notes = Vec::new();
    let unchecked = found.services.is_none();
    if unchecked {
        notes.push(
            "GMS is not configured: the contact's Context Services services (and states, tasks) \
             cannot be looked up, and are not deleted with the profile"
                .to_owned(),
        );
    }
    if unchecked && input.environment.policy.require_checks {
        notes.insert(0, "Context Services services cannot be checked".to_owned());
        return (StepStatus::Blocked, notes);
    }
    let status = match held {
        None => {
            notes.insert(0, "no Context Services profile or service".to_owned());
            StepStatus::NothingToDo
        }
        Some(held) if delete_mode == DeleteMode::Confirmed && !blocked_before => {
            notes
                .insert(0, format!("will delete, after the export, from Context Services: {held}"));
            StepStatus::Ready
        }
        Some(held) => {
            notes
                .insert(0, format!("Context Services holds {held}; kept while nothing is deleted"));
            StepStatus::ReportOnly
        }
    };
    (status, notes)
}

fn unreadable_contact(
    id: &ContactId,
    subjects: Vec<usize>,
    hold: Option<String>,
    reason: &str,
) -> ContactPlan {
    ContactPlan {
        contact_id: id.clone(),
        subjects,
        hold,
        sources: BTreeMap::new(),
        fingerprint: String::new(),
        steps: vec![StepPlan {
            id: "read".into(),
            uses: StepUse::ReadContact,
            status: StepStatus::Blocked,
            notes: vec![format!("cannot read the contact's state: {reason}")],
        }],
        export: false,
        delete: false,
    }
}

/// Adds one contact to the totals (what the summary says of contacts).
fn count(summary: &mut Summary, contact: &ContactPlan, wants: &Wants) {
    summary.contacts += 1;
    if contact.hold.is_some() {
        summary.held += 1;
    }
    summary.to_export += u64::from(contact.export);
    summary.to_delete += u64::from(contact.delete);
    if contact.export || contact.delete {
        for (source, counts) in &contact.sources {
            let counted = contact.delete || wants.export_sources.contains(source);
            if counted {
                *summary.interactions.entry(*source).or_default() += counts.interactions;
                summary.attachments += counts.attachments;
                summary.bytes += counts.bytes;
            }
        }
    }
}
