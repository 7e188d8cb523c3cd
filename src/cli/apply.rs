//! `ucs-gdpr approve` and `ucs-gdpr apply`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::apply::{self, ApplyError, Outputs, approval::Approval};
use crate::environment::{Connection, Environment, Environments};
use crate::plan::PlanFile;

use super::Exit;
use super::failure::Failure;
use super::plan::{PlanFormat, Prepared, chain, make_plan, prepare, print_plan, runtime};
use super::progress::{self, RunProgress};

#[derive(Debug, clap::Args)]
pub(crate) struct ApproveArgs {
    /// The plan file (from `plan --out`).
    plan: PathBuf,
    /// Who approves (a login name listed in the environment's `approvers`).
    #[arg(long, value_name = "NAME")]
    by: String,
    /// Sign the approval with this ed25519 key (from `ucs-gdpr audit keygen`).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// A comment kept in the approval file (never in the audit trail).
    #[arg(long)]
    comment: Option<String>,
    /// When the approval stops counting: an RFC 3339 time (2026-12-24T18:00:00Z) or a duration
    /// from now (72h, 3d, 1h30m). The signature covers it; `apply` refuses an expired approval.
    /// Without it the approval does not expire.
    #[arg(long, value_name = "TIME|DURATION")]
    expires: Option<String>,
    /// Where to write the approval (default: beside the plan, `<plan>.approval.<by>.json`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// The plan file (from `plan --out`).
    plan: PathBuf,
    /// How to print the plan.
    #[arg(long, value_enum, default_value_t)]
    format: PlanFormat,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ApplyArgs {
    /// An approved plan (`plan.json`), a request manifest, or a folder of manifests (for
    /// environments that need no approval: each is planned, shown and applied).
    target: PathBuf,
    /// An approval file (repeat for several approvers).
    #[arg(long = "approval", value_name = "FILE")]
    approvals: Vec<PathBuf>,
    /// The environments file (default: ./ucs-gdpr.yaml).
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// A folder of runbooks that add to or override the built-in ones (default: ./runbooks).
    #[arg(long, value_name = "DIR")]
    runbooks: Option<PathBuf>,
    /// Contacts processed at once (default: twice the environment's `concurrency`; the
    /// requests in flight stay at most the environment's `concurrency` either way).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Who runs this, for the audit trail (default: $USER).
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    /// Run one shard of an approved plan: INDEX/COUNT, 0-based (`0/4` is the first of four),
    /// into its own audit log segment and export bag, with the environment's `rateLimit` and
    /// `concurrency` divided by COUNT. Without it, `JOB_COMPLETION_INDEX` (a Kubernetes
    /// Indexed Job) gives the index and `--shards` or `UCS_GDPR_SHARDS` the count.
    #[arg(long, value_name = "INDEX/COUNT")]
    shard: Option<String>,
    /// The shard count when the index comes from `JOB_COMPLETION_INDEX` (Kubernetes sets the
    /// index only); default: `UCS_GDPR_SHARDS`.
    #[arg(long, value_name = "COUNT")]
    shards: Option<String>,
}

/// The shard to run: `--shard I/N`, else `JOB_COMPLETION_INDEX` with the count of `--shards`
/// or `UCS_GDPR_SHARDS`; `None` when none of them is given.
fn shard_of(args: &ApplyArgs) -> Result<Option<apply::Shard>, Failure> {
    use apply::shard::{COUNT_VAR, INDEX_VAR};
    let bad = |what: &str, error: apply::ShardError| Failure::usage(format!("{what}: {error}"));
    if let Some(text) = &args.shard {
        if args.shards.is_some() {
            return Err(Failure::usage(
                "give either `--shard INDEX/COUNT` or `--shards COUNT` (with JOB_COMPLETION_INDEX), \
                 not both",
            ));
        }
        return apply::Shard::parse(text).map(Some).map_err(|e| bad("--shard", e));
    }
    let count = match &args.shards {
        Some(text) => Some(apply::Shard::parse_count(text).map_err(|e| bad("--shards", e))?),
        None => match std::env::var(COUNT_VAR) {
            Ok(text) => Some(apply::Shard::parse_count(&text).map_err(|e| bad(COUNT_VAR, e))?),
            Err(_) => None,
        },
    };
    let index = std::env::var(INDEX_VAR).ok();
    match (index, count) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(Failure::usage(format!(
            "a shard count was given but no index: pass `--shard INDEX/COUNT`, or run where \
             {INDEX_VAR} is set (a Kubernetes Indexed Job)"
        ))),
        (Some(_), None) => Err(Failure::usage(format!(
            "{INDEX_VAR} is set but the shard count is not (Kubernetes does not set it): pass \
             `--shards COUNT` or set {COUNT_VAR}"
        ))),
        (Some(index), Some(count)) => {
            let index = index.trim();
            if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Failure::usage(format!(
                    "{INDEX_VAR} must be a whole number (the 0-based index of the shard)"
                )));
            }
            let index = index.parse::<u64>().unwrap_or(u64::MAX);
            apply::Shard::new(index, u64::from(count)).map(Some).map_err(|e| bad(INDEX_VAR, e))
        }
    }
}

/// `ucs-gdpr show PLAN`: a saved plan as `plan` prints it, so a reviewer reads what they sign.
/// The file is read as a stream (checked whole, then printed), never held whole.
pub(crate) fn show(args: &ShowArgs) -> Result<Exit, Failure> {
    let plan = read_plan(&args.plan)?;
    print_plan(&plan, Some(args.format), today())?;
    Ok(Exit::Success)
}

fn today() -> jiff::civil::Date {
    jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date()
}

pub(crate) fn approve(args: &ApproveArgs) -> Result<Exit, Failure> {
    let plan = read_plan(&args.plan)?;
    // What is approved, before the approval is written: an approver signs a plan they read,
    // not an id.
    print_plan(&plan, Some(PlanFormat::Text), today())?;
    let plan = plan.head();
    let key = match &args.key {
        None => None,
        Some(path) => Some(crate::audit::load_signing_key(path).map_err(|error| {
            Failure::caused(format!("cannot read the signing key `{}`", path.display()), &error)
        })?),
    };
    if crate::audit::Actor::new(args.by.clone()).is_err() {
        return Err(Failure::usage("`--by` must be a login name (letters, digits, `.`, `_`, `-`)"));
    }
    let expires_at = match &args.expires {
        None => None,
        Some(text) => Some(
            apply::approval::parse_expiry(text, jiff::Timestamp::now())
                .map_err(|message| Failure::usage(format!("--expires: {message}")))?,
        ),
    };
    let approval = Approval::with_expiry(
        &plan.plan_id,
        &args.by,
        args.comment.clone(),
        expires_at,
        key.as_ref(),
    );
    let out = args.out.clone().unwrap_or_else(|| {
        let stem =
            args.plan.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        crate::durable::parent_dir(&args.plan).join(format!("{stem}.approval.{}.json", args.by))
    });
    crate::durable::write_atomically(&out, &approval.to_json())
        .map_err(|error| Failure::new(format!("cannot write `{}`: {error}", out.display())))?;
    println!(
        "approved plan {} by {}{}{}: {}",
        plan.plan_id,
        args.by,
        if key.is_some() { " (signed)" } else { "" },
        approval.expires_at.as_ref().map(|t| format!(", expires {t}")).unwrap_or_default(),
        out.display()
    );
    Ok(Exit::Success)
}

/// Opens a plan file and checks every line against its id, as a stream.
fn read_plan(path: &Path) -> Result<PlanFile, Failure> {
    let plan = PlanFile::open(path).and_then(|plan| plan.verify().map(|()| plan));
    plan.map_err(|e| plan_failure(path, &e))
}

/// What a plan file that cannot be read or checked says, naming the file.
pub(crate) fn plan_failure(path: &Path, e: &str) -> Failure {
    match e.strip_prefix("cannot be read: ") {
        Some(why) => Failure::new(format!("cannot read `{}`: {why}", path.display())),
        None => Failure::new(format!("`{}`: {e}", path.display())),
    }
}

pub(crate) fn apply(args: &ApplyArgs) -> Result<Exit, Failure> {
    let is_plan = args.target.extension().is_some_and(|e| e == "json");
    let shard = shard_of(args)?;
    if shard.is_some() && !is_plan {
        return Err(Failure::usage(
            "shards run one approved plan: make it with `ucs-gdpr plan MANIFEST --out plan.json`, \
             then run `ucs-gdpr apply plan.json --shard INDEX/COUNT` in each worker",
        ));
    }
    let manifests: Vec<PathBuf> = if is_plan {
        Vec::new()
    } else {
        crate::manifest::collect_files(std::slice::from_ref(&args.target)).map_err(
            |(path, error)| Failure::new(format!("cannot read `{}`: {error}", path.display())),
        )?
    };
    let runtime = runtime()?;
    let stop = interrupt_flag(&runtime, "Run the same command again to resume.");
    if is_plan {
        let file = read_plan(&args.target)?;
        // Streamed, a shard's run too: its start record and its count read only its ids.
        let plan = apply::PlanSource::File(file);
        let manifest = PathBuf::from(&plan.head().body.request.manifest_path);
        let mut prepared = prepare(&manifest, args.env_file.as_deref(), args.runbooks.as_deref())
            .map_err(|failure| {
            if failure.is_reported() {
                Failure::new(format!(
                    "the plan's request manifest `{}` is not valid any more",
                    manifest.display()
                ))
            } else {
                failure
            }
        })?;
        if let Some(shard) = shard {
            // The environment's rate is the whole run's: each of the N shards gets its part
            // (neither is part of the digests a plan is bound to).
            if let Some(environment) =
                prepared.environments.environments.get_mut(&prepared.request.spec.environment)
            {
                environment.rate_limit = environment.rate_limit.map(|r| shard.rate_part(r));
                environment.concurrency = shard.count_part(environment.concurrency);
                let mine = apply::shard::contacts_of(&plan, shard)
                    .map_err(|e| Failure::new(format!("`{}`: {e}", args.target.display())))?
                    .len();
                eprintln!(
                    "shard {shard}: {mine} of the plan's {} contact(s); {}{} request(s) in flight \
                     (the environment's, divided by {})",
                    plan.contact_count(),
                    environment
                        .rate_limit
                        .map(|r| format!("at most {r} request(s)/s, "))
                        .unwrap_or_default(),
                    environment.concurrency,
                    shard.count()
                );
            }
        }
        // That the manifest is the one the plan was made from is the library's gate to check
        // (`apply::authorize`), with the refusal in the audit log.
        let mut approvals = Vec::new();
        for path in &args.approvals {
            approvals.push(Approval::read(path).map_err(|error| Failure::new(error.to_string()))?);
        }
        return runtime.block_on(apply_one(&prepared, Some(plan), &approvals, args, shard, &stop));
    }
    let mut exit = Exit::Success;
    for manifest in manifests {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        eprintln!("== {}", manifest.display());
        // One manifest's failure is said and the others still run.
        let done = prepare(&manifest, args.env_file.as_deref(), args.runbooks.as_deref()).and_then(
            |prepared| runtime.block_on(apply_one(&prepared, None, &[], args, None, &stop)),
        );
        match done {
            Ok(Exit::Success) => {}
            Ok(_) => exit = Exit::Failure,
            Err(failure) => {
                failure.report();
                exit = Exit::Failure;
            }
        }
    }
    Ok(exit)
}

/// A flag Ctrl-C sets: no new contact starts, steps in flight finish and are recorded.
pub(crate) fn interrupt_flag(
    runtime: &tokio::runtime::Runtime,
    then: &'static str,
) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
                progress::eprintln(&format!(
                    "\ninterrupt: no new contact starts; steps in flight finish and are recorded. \
                     {then}"
                ));
            }
        });
    }
    stop
}

/// Connects, plans (or takes the given plan), checks approvals and applies.
async fn apply_one(
    prepared: &Prepared,
    given: Option<apply::PlanSource>,
    approvals: &[Approval],
    args: &ApplyArgs,
    shard: Option<apply::Shard>,
    stop: &Arc<AtomicBool>,
) -> Result<Exit, Failure> {
    let spec = &prepared.request.spec;
    let environments: &Environments = &prepared.environments;
    let gone = || Failure::new("the request's environment or runbook is gone");
    let environment = environments.get(&spec.environment).ok_or_else(gone)?;
    prepared.runbooks.get(&spec.runbook).ok_or_else(gone)?;
    if given.is_none() && environment.requires_approval() {
        return Err(Failure::new(format!(
            "environment `{}` requires an approved plan: run `ucs-gdpr plan --out plan.json`, \
             `ucs-gdpr approve plan.json --by NAME`, then `ucs-gdpr apply plan.json --approval ...`",
            spec.environment
        )));
    }
    let (retries, hook) = retry_hook();
    let connection =
        environments.connect(&spec.environment, Some(hook)).await.map_err(|error| {
            Failure::caused(format!("cannot connect to `{}`", spec.environment), &error)
        })?;
    let plan = match given {
        Some(plan) => plan,
        None => {
            let plan = make_plan(prepared, &connection).await?;
            eprint!("{}", crate::plan::render::text(&plan, today()));
            apply::PlanSource::Memory(plan)
        }
    };
    let outputs = prepare_outputs(environments, environment)?;
    let actor = actor(args.actor.as_deref());
    let shown = RunProgress::new(progress::eprintln);
    let progress = |event: &apply::Progress<'_>| shown.show(event);
    // What the end of the run prints, taken before the plan moves into the run (a clone would
    // copy its subjects).
    let head = plan.head();
    let (bag, log) = match shard {
        None => (outputs.bag(head), outputs.audit_log.clone()),
        Some(shard) => (outputs.shard_bag(head, shard), outputs.segment(head, shard)),
    };
    let exports = head.body.export.is_some();
    let run = Run {
        prepared,
        plan,
        approvals,
        without_deletion: false,
        concurrency: args.concurrency,
        actor,
        stop,
        progress: &progress,
        shard,
    };
    let result = run.execute(&outputs, &connection, retries).await;
    shown.end();
    progress::summarise_retries(connection.client.retried());
    connection.close().await.map_err(|error| Failure::internal(error.to_string()))?;
    match result {
        Ok(receipt) => {
            {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                let written =
                    receipt.write_text(&mut out).and_then(|()| std::io::Write::flush(&mut out));
                if let Err(error) = written {
                    return Err(Failure::internal(format!("cannot print the receipt: {error}")));
                }
            }
            if let Some(shard) = shard {
                println!("shard {shard}: {} of the plan's contacts", receipt.contacts.len());
            }
            if exports {
                println!("export: {}", bag.display());
                let page = bag.join(crate::export::INDEX_PATH);
                let whose = if shard.is_some() { " (this shard's part)" } else { "" };
                println!("readable copy for the data subject{whose}: {}", page.display());
            }
            println!("audit log: {}", log.display());
            Ok(if receipt.succeeded() { Exit::Success } else { Exit::Failure })
        }
        Err(error) => Err(Failure::from(&error)),
    }
}

/// A client retry hook and the retries it collects, drained into the audit log by apply; it
/// also counts them for the progress bars.
pub(crate) fn retry_hook() -> (Arc<Mutex<Vec<crate::ucs::RetryEvent>>>, crate::ucs::RetryHook) {
    let retries = Arc::new(Mutex::new(Vec::new()));
    let hook: crate::ucs::RetryHook = {
        let retries = Arc::clone(&retries);
        Arc::new(move |event: &crate::ucs::RetryEvent| {
            progress::count_retry(event);
            retries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(event.clone());
        })
    };
    (retries, hook)
}

/// Who runs this, for the audit trail: the flag, else $USER, else `operator`.
pub(crate) fn actor(flag: Option<&str>) -> String {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".to_owned())
}

/// Where an environment's runs write (the library applies the policy's defaults).
pub(crate) fn prepare_outputs(
    environments: &Environments,
    environment: &Environment,
) -> Result<Outputs, Failure> {
    Outputs::prepare(environments, environment).map_err(|error| Failure::new(chain(&error)))
}

/// One run of a plan: what [`apply::run`] needs besides the connection and the outputs.
pub(crate) struct Run<'a> {
    pub(crate) prepared: &'a Prepared,
    pub(crate) plan: apply::PlanSource,
    pub(crate) approvals: &'a [Approval],
    /// A front end that only exports: a plan that deletes nothing runs without approvals (the
    /// library checks that it deletes nothing).
    pub(crate) without_deletion: bool,
    /// Contacts at once (default: the environment's, applied by the library's session).
    pub(crate) concurrency: Option<usize>,
    pub(crate) actor: String,
    pub(crate) stop: &'a Arc<AtomicBool>,
    pub(crate) progress: &'a (dyn Fn(&apply::Progress<'_>) + Sync),
    /// Only this shard of the plan.
    pub(crate) shard: Option<apply::Shard>,
}

impl Run<'_> {
    /// Takes the plan through the library's gate and runs it, with the audit trail and bags of
    /// `outputs`.
    pub(crate) async fn execute(
        self,
        outputs: &Outputs,
        connection: &Connection,
        retries: Arc<Mutex<Vec<crate::ucs::RetryEvent>>>,
    ) -> Result<apply::Receipt, ApplyError> {
        let session = crate::session::Session::new(self.prepared, connection)
            .map_err(|error| ApplyError::Record(error.to_string()))?;
        let options = crate::session::RunOptions {
            shard: self.shard,
            without_deletion: self.without_deletion,
            concurrency: self.concurrency,
            actor: self.actor,
            stop: Arc::clone(self.stop),
            retries,
            progress: self.progress,
        };
        session.apply_source(self.plan, self.approvals, outputs, options).await
    }
}
