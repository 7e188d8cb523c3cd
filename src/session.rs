//! One library entry for a run over an environment. A [`Prepared`] request is a validated
//! manifest with the runbooks and the environments file it names; a [`Session`] adds the live
//! [`Connection`] (client, subject digester, UCS version) and turns them into plan inputs,
//! plans, outputs and runs with the environment's defaults (concurrency, page size, Info Mart,
//! paths). Every front end goes through it, and the gate is inside [`Session::apply`]: there is
//! no way to run a plan from here that skips [`apply::authorize`].

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::apply::approval::Approval;
use crate::apply::{self, ApplyContext, ApplyError, Outputs, OutputsError, Progress, Receipt};
use crate::environment::{Connection, Environment, Environments};
use crate::manifest::Request;
use crate::plan::{self, Plan, PlanInput};
use crate::runbook::{Runbook, RunbookLibrary};
use crate::ucs::RetryEvent;

/// Interactions are listed this many at a time.
pub const PAGE_SIZE: u32 = 100;

/// Contacts at once when neither the caller nor the environment says.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Contacts `apply` runs at once for each request the environment allows in flight (see
/// [`Session::apply_concurrency`]).
pub const CONTACTS_PER_REQUEST: usize = 2;

/// A request ready to plan: validated, with the runbooks and the environments file it names.
#[derive(Debug)]
pub struct Prepared {
    /// The validated request.
    pub request: Request,
    /// The manifest's path, as named by the user.
    pub manifest_path: String,
    /// sha256 of the manifest's bytes.
    pub manifest_sha256: String,
    /// The environments file.
    pub environments: Environments,
    /// The runbooks (built-in and local).
    pub runbooks: RunbookLibrary,
}

/// Why a session cannot be opened for a request: the names it gives do not resolve (they were
/// validated, so only a file changed since, or a bug, gets here).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The request's environment is not in the environments file.
    #[error("environment `{0}` is not in the environments file")]
    UnknownEnvironment(String),
    /// The request's runbook is not known.
    #[error("runbook `{0}` is not known")]
    UnknownRunbook(String),
}

/// How one run goes: who runs it, how fast, and what it tells on the way.
pub struct RunOptions<'a> {
    /// A front end that only exports: a plan that deletes nothing runs without approvals (the
    /// gate checks that it deletes nothing).
    pub without_deletion: bool,
    /// Contacts at once (default: the environment's).
    pub concurrency: Option<usize>,
    /// Who runs it (an operator login, validated by the audit trail).
    pub actor: String,
    /// Set to stop scheduling new contacts (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// Retries the client reported, drained into the audit log (each under its call site).
    pub retries: Arc<Mutex<Vec<RetryEvent>>>,
    /// Told how far the re-check is, and each time a contact is finished.
    pub progress: &'a (dyn Fn(&Progress<'_>) + Sync),
    /// Run only this shard of the plan, into its own audit log segment and export bag (see
    /// [`apply::shard`]); `None` runs the whole plan.
    pub shard: Option<apply::Shard>,
}

impl std::fmt::Debug for RunOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("without_deletion", &self.without_deletion)
            .field("concurrency", &self.concurrency)
            .field("actor", &self.actor)
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

/// A prepared request over a live connection to its environment.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    prepared: &'a Prepared,
    environment: &'a Environment,
    runbook: &'a Runbook,
    connection: &'a Connection,
}

impl<'a> Session<'a> {
    /// A session for `prepared` over `connection` (a connection to the request's environment).
    ///
    /// # Errors
    /// The request's environment or runbook does not resolve.
    pub fn new(prepared: &'a Prepared, connection: &'a Connection) -> Result<Self, SessionError> {
        let spec = &prepared.request.spec;
        let environment = prepared
            .environments
            .get(&spec.environment)
            .ok_or_else(|| SessionError::UnknownEnvironment(spec.environment.clone()))?;
        let runbook = prepared
            .runbooks
            .get(&spec.runbook)
            .ok_or_else(|| SessionError::UnknownRunbook(spec.runbook.clone()))?;
        Ok(Self { prepared, environment, runbook, connection })
    }

    /// The request's environment.
    pub fn environment(&self) -> &'a Environment {
        self.environment
    }

    /// The request's runbook.
    pub fn runbook(&self) -> &'a Runbook {
        self.runbook
    }

    /// Contacts at once: `flag` when given, else the environment's setting; at least one.
    pub fn concurrency(&self, flag: Option<usize>) -> usize {
        flag.unwrap_or_else(|| {
            usize::try_from(self.environment.concurrency).unwrap_or(DEFAULT_CONCURRENCY)
        })
        .max(1)
    }

    /// Contacts `apply` runs at once: `flag` when given, else [`CONTACTS_PER_REQUEST`] times the
    /// environment's `concurrency`. That setting is the requests in flight, which the client
    /// holds whatever the number of contacts; a contact waiting for the fsync of its files or
    /// of an intent makes no request, so with only `concurrency` contacts the server would
    /// wait for the disk.
    pub fn apply_concurrency(&self, flag: Option<usize>) -> usize {
        flag.unwrap_or_else(|| self.concurrency(None).saturating_mul(CONTACTS_PER_REQUEST)).max(1)
    }

    /// What the planner needs for this request, with `concurrency` contacts read at once
    /// (default: the environment's).
    pub fn plan_input(&self, concurrency: Option<usize>) -> PlanInput<'a> {
        let prepared = self.prepared;
        PlanInput {
            request: &prepared.request,
            manifest_path: prepared.manifest_path.clone(),
            manifest_sha256: prepared.manifest_sha256.clone(),
            runbook: self.runbook,
            environment_name: &prepared.request.spec.environment,
            environment: self.environment,
            digester: &self.connection.digester,
            ucs_version: self.connection.ucs_version,
            concurrency: self.concurrency(concurrency),
            page_size: PAGE_SIZE,
            etl: plan::Etl::of(self.environment, &prepared.environments.base_dir),
        }
    }

    /// Plans the request against the live state, in memory. Read-only.
    pub async fn plan(&self) -> Plan {
        plan::build(&self.plan_input(None), &self.connection.client).await
    }

    /// Plans the request into the plan file at `path`, one contact at a time. Read-only.
    ///
    /// # Errors
    /// The file cannot be written.
    pub async fn plan_to_file(&self, path: &std::path::Path) -> std::io::Result<plan::PlanFile> {
        plan::build_to_file(&self.plan_input(None), &self.connection.client, &|_| {}, path).await
    }

    /// Where this environment's runs write, with the policy's defaults applied.
    ///
    /// # Errors
    /// A folder that cannot be created, or a signing key that cannot be read.
    pub fn outputs(&self) -> Result<Outputs, OutputsError> {
        Outputs::prepare(&self.prepared.environments, self.environment)
    }

    /// Takes `plan` through the gate ([`apply::authorize`], with `approvals`; or
    /// [`apply::authorize_without_deletion`]) and runs it into `outputs`.
    ///
    /// # Errors
    /// A refusal of the gate (audited), or what [`apply::run`] refuses or fails on.
    pub async fn apply(
        &self,
        plan: &Plan,
        approvals: &[Approval],
        outputs: &Outputs,
        options: RunOptions<'_>,
    ) -> Result<Receipt, ApplyError> {
        self.apply_source(apply::PlanSource::Memory(plan.clone()), approvals, outputs, options)
            .await
    }

    /// [`apply`](Self::apply) of a plan in memory or of a plan file (read as a stream: its
    /// contacts are never all in memory).
    ///
    /// # Errors
    /// As [`apply`](Self::apply).
    pub async fn apply_source(
        &self,
        plan: apply::PlanSource,
        approvals: &[Approval],
        outputs: &Outputs,
        options: RunOptions<'_>,
    ) -> Result<Receipt, ApplyError> {
        let concurrency = self.apply_concurrency(options.concurrency);
        let (audit_log, exports_dir) = match options.shard {
            None => (outputs.audit_log.clone(), outputs.exports_dir.clone()),
            Some(shard) => {
                let segment = outputs.segment(plan.head(), shard);
                apply::shard::start(
                    &segment,
                    &plan,
                    shard,
                    &options.actor,
                    outputs.signing_key.clone(),
                )?;
                (segment, outputs.shard_exports_dir(plan.head(), shard))
            }
        };
        let context = ApplyContext {
            // The re-check reads as the planner does.
            input: self.plan_input(options.concurrency),
            runbook: self.runbook,
            base_dir: self.prepared.environments.base_dir.clone(),
            actor: options.actor,
            audit_log,
            signing_key: outputs.signing_key.clone(),
            exports_dir,
            shard: options.shard,
            concurrency,
            stop: options.stop,
            retries: options.retries,
            progress: options.progress,
        };
        let approved = match (options.without_deletion, plan) {
            (true, apply::PlanSource::Memory(plan)) => {
                apply::authorize_without_deletion(&plan, &context)?
            }
            (true, apply::PlanSource::File(_)) => {
                return Err(ApplyError::Record(
                    "a plan file runs through the approvals gate, not without it".to_owned(),
                ));
            }
            (false, plan) => apply::authorize_source(plan, approvals, &context)?,
        };
        apply::run(&approved, &context, &self.connection.client).await
    }
}
