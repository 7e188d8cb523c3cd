//! `ucs-gdpr approve` and `ucs-gdpr apply`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::apply::{self, ApplyError, Outputs, approval::Approval};
use crate::environment::{Connection, Environment, Environments};
use crate::plan::Plan;

use super::Exit;
use super::plan::{PlanFormat, Prepared, chain, make_plan, prepare, runtime};

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
    /// Contacts processed at once (default: the environment's `concurrency`).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Who runs this, for the audit trail (default: $USER).
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
}

/// `ucs-gdpr show PLAN`: a saved plan as `plan` prints it, so a reviewer reads what they sign.
pub(crate) fn show(args: &ShowArgs) -> Exit {
    let plan = match read_plan(&args.plan) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Failure;
        }
    };
    print!("{}", rendered(&plan, args.format));
    Exit::Success
}

fn rendered(plan: &Plan, format: PlanFormat) -> String {
    let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    match format {
        PlanFormat::Text => crate::plan::render::text(plan, today),
        PlanFormat::Markdown => crate::plan::render::markdown(plan, today),
        PlanFormat::Json => {
            let mut json = String::from_utf8_lossy(&plan.to_canonical_json()).into_owned();
            json.push('\n');
            json
        }
    }
}

pub(crate) fn approve(args: &ApproveArgs) -> Exit {
    let plan = match read_plan(&args.plan) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Failure;
        }
    };
    // What is approved, before the approval is written: an approver signs a plan they read,
    // not an id.
    print!("{}", rendered(&plan, PlanFormat::Text));
    let key = match &args.key {
        None => None,
        Some(path) => match crate::audit::load_signing_key(path) {
            Ok(key) => Some(key),
            Err(error) => {
                eprintln!(
                    "error: cannot read the signing key `{}`: {}",
                    path.display(),
                    chain(&error)
                );
                return Exit::Failure;
            }
        },
    };
    if crate::audit::Actor::new(args.by.clone()).is_err() {
        eprintln!("error: `--by` must be a login name (letters, digits, `.`, `_`, `-`)");
        return Exit::Usage;
    }
    let expires_at = match &args.expires {
        None => None,
        Some(text) => match apply::approval::parse_expiry(text, jiff::Timestamp::now()) {
            Ok(at) => Some(at),
            Err(message) => {
                eprintln!("error: --expires: {message}");
                return Exit::Usage;
            }
        },
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
    if let Err(error) = crate::durable::write_atomically(&out, &approval.to_json()) {
        eprintln!("error: cannot write `{}`: {error}", out.display());
        return Exit::Failure;
    }
    println!(
        "approved plan {} by {}{}{}: {}",
        plan.plan_id,
        args.by,
        if key.is_some() { " (signed)" } else { "" },
        approval.expires_at.as_ref().map(|t| format!(", expires {t}")).unwrap_or_default(),
        out.display()
    );
    Exit::Success
}

fn read_plan(path: &Path) -> Result<Plan, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    Plan::from_json(&bytes).map_err(|e| format!("`{}`: {e}", path.display()))
}

pub(crate) fn apply(args: &ApplyArgs) -> Exit {
    let is_plan = args.target.extension().is_some_and(|e| e == "json");
    let manifests: Vec<PathBuf> = if is_plan {
        Vec::new()
    } else {
        match crate::manifest::collect_files(std::slice::from_ref(&args.target)) {
            Ok(files) => files,
            Err((path, error)) => {
                eprintln!("error: cannot read `{}`: {error}", path.display());
                return Exit::Failure;
            }
        }
    };
    let Some(runtime) = runtime() else { return Exit::Internal };
    let stop = interrupt_flag(&runtime, "Run the same command again to resume.");
    if is_plan {
        let plan = match read_plan(&args.target) {
            Ok(plan) => plan,
            Err(message) => {
                eprintln!("error: {message}");
                return Exit::Failure;
            }
        };
        let manifest = PathBuf::from(&plan.body.request.manifest_path);
        let Some(prepared) = prepare(&manifest, args.env_file.as_deref(), args.runbooks.as_deref())
        else {
            eprintln!(
                "error: the plan's request manifest `{}` is not valid any more",
                manifest.display()
            );
            return Exit::Failure;
        };
        // That the manifest is the one the plan was made from is the library's gate to check
        // (`apply::authorize`), with the refusal in the audit log.
        let mut approvals = Vec::new();
        for path in &args.approvals {
            match Approval::read(path) {
                Ok(approval) => approvals.push(approval),
                Err(error) => {
                    eprintln!("error: {error}");
                    return Exit::Failure;
                }
            }
        }
        return runtime.block_on(apply_one(&prepared, Some(plan), &approvals, args, &stop));
    }
    let mut exit = Exit::Success;
    for manifest in manifests {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        eprintln!("== {}", manifest.display());
        let Some(prepared) = prepare(&manifest, args.env_file.as_deref(), args.runbooks.as_deref())
        else {
            exit = Exit::Failure;
            continue;
        };
        if runtime.block_on(apply_one(&prepared, None, &[], args, &stop)) != Exit::Success {
            exit = Exit::Failure;
        }
    }
    exit
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
                eprintln!(
                    "\ninterrupt: no new contact starts; steps in flight finish and are recorded. \
                     {then}"
                );
            }
        });
    }
    stop
}

/// Connects, plans (or takes the given plan), checks approvals and applies.
async fn apply_one(
    prepared: &Prepared,
    given: Option<Plan>,
    approvals: &[Approval],
    args: &ApplyArgs,
    stop: &Arc<AtomicBool>,
) -> Exit {
    let spec = &prepared.request.spec;
    let environments: &Environments = &prepared.environments;
    let Some(environment) = environments.get(&spec.environment) else { return Exit::Failure };
    if prepared.runbooks.get(&spec.runbook).is_none() {
        return Exit::Failure;
    }
    if given.is_none() && environment.requires_approval() {
        eprintln!(
            "error: environment `{}` requires an approved plan: run `ucs-gdpr plan --out plan.json`, \
             `ucs-gdpr approve plan.json --by NAME`, then `ucs-gdpr apply plan.json --approval ...`",
            spec.environment
        );
        return Exit::Failure;
    }
    let (retries, hook) = retry_hook();
    let connection = match environments.connect(&spec.environment, Some(hook)).await {
        Ok(connection) => connection,
        Err(error) => {
            eprintln!("error: cannot connect to `{}`: {}", spec.environment, chain(&error));
            return Exit::Failure;
        }
    };
    let plan = match given {
        Some(plan) => plan,
        None => {
            let Some(plan) = make_plan(prepared, &connection).await else { return Exit::Failure };
            let today = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
            eprint!("{}", crate::plan::render::text(&plan, today));
            plan
        }
    };
    let Some(outputs) = prepare_outputs(environments, environment) else {
        return Exit::Failure;
    };
    let concurrency = args
        .concurrency
        .unwrap_or_else(|| usize::try_from(environment.concurrency).unwrap_or(8))
        .max(1);
    let actor = actor(args.actor.as_deref());
    let bar = ProgressBar::new();
    let progress = |event: &apply::Progress<'_>| bar.show(event);
    let run = Run {
        prepared,
        plan: &plan,
        approvals,
        without_deletion: false,
        concurrency,
        actor,
        stop,
        progress: &progress,
    };
    let result = run.execute(&outputs, &connection, retries).await;
    if let Err(error) = connection.close().await {
        eprintln!("error: {error}");
        return Exit::Internal;
    }
    match result {
        Ok(receipt) => {
            print!("{}", receipt.text());
            if plan.body.export.is_some() {
                println!("export: {}", outputs.bag(&plan).display());
                let page = outputs.bag(&plan).join(crate::export::INDEX_PATH);
                println!("readable copy for the data subject: {}", page.display());
            }
            println!("audit log: {}", outputs.audit_log.display());
            if receipt.succeeded() { Exit::Success } else { Exit::Failure }
        }
        Err(error) => {
            report_apply_error(&error);
            Exit::Failure
        }
    }
}

/// Prints why apply did not run; a stale plan lists what changed.
pub(crate) fn report_apply_error(error: &ApplyError) {
    match error {
        ApplyError::Stale(changes) => {
            eprintln!(
                "error: the plan is stale; nothing was changed. What changed since it was made:"
            );
            for change in changes {
                eprintln!("  - {change}");
            }
            eprintln!("hint: run `ucs-gdpr plan` again and have the new plan approved");
        }
        ApplyError::Mismatch(edits) => {
            eprintln!(
                "error: the plan does not match what planning again from the manifest, the \
                 runbook, the policy and the live state gives; nothing was changed. What differs:"
            );
            for edit in edits {
                eprintln!("  - {edit}");
            }
            eprintln!(
                "hint: the plan file was edited after it was made, or made with other inputs; run \
                 `ucs-gdpr plan` again and have the new plan approved"
            );
        }
        ApplyError::Unreachable(_) => {
            eprintln!("error: {}", chain(error));
            eprintln!(
                "hint: nothing is known to have changed since the plan was made; run the same \
                 command again when UCS answers"
            );
        }
        error => eprintln!("error: {}", chain(error)),
    }
}

/// A client retry hook and the retries it collects, drained into the audit log by apply.
pub(crate) fn retry_hook() -> (Arc<Mutex<Vec<crate::ucs::RetryEvent>>>, crate::ucs::RetryHook) {
    let retries = Arc::new(Mutex::new(Vec::new()));
    let hook: crate::ucs::RetryHook = {
        let retries = Arc::clone(&retries);
        Arc::new(move |event: &crate::ucs::RetryEvent| {
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

/// Where an environment's runs write (the library applies the policy's defaults), printing
/// what goes wrong.
pub(crate) fn prepare_outputs(
    environments: &Environments,
    environment: &Environment,
) -> Option<Outputs> {
    match Outputs::prepare(environments, environment) {
        Ok(outputs) => Some(outputs),
        Err(error) => {
            eprintln!("error: {}", chain(&error));
            None
        }
    }
}

/// One run of a plan: what [`apply::run`] needs besides the connection and the outputs.
pub(crate) struct Run<'a> {
    pub(crate) prepared: &'a Prepared,
    pub(crate) plan: &'a Plan,
    pub(crate) approvals: &'a [Approval],
    /// A front end that only exports: a plan that deletes nothing runs without approvals (the
    /// library checks that it deletes nothing).
    pub(crate) without_deletion: bool,
    pub(crate) concurrency: usize,
    pub(crate) actor: String,
    pub(crate) stop: &'a Arc<AtomicBool>,
    pub(crate) progress: &'a (dyn Fn(&apply::Progress<'_>) + Sync),
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
            without_deletion: self.without_deletion,
            concurrency: Some(self.concurrency),
            actor: self.actor,
            stop: Arc::clone(self.stop),
            retries,
            progress: self.progress,
        };
        session.apply(self.plan, self.approvals, outputs, options).await
    }
}

/// Progress on stderr: a line per finished contact, and on a terminal a bar under them
/// (contacts done / total, rate, time left) redrawn in place.
struct ProgressBar {
    started: std::time::Instant,
    terminal: bool,
}

impl ProgressBar {
    fn new() -> Self {
        use std::io::IsTerminal;
        Self { started: std::time::Instant::now(), terminal: std::io::stderr().is_terminal() }
    }

    fn show(&self, event: &apply::Progress<'_>) {
        if !self.terminal {
            eprintln!("{event}");
            return;
        }
        const WIDTH: usize = 24;
        let filled = (event.done * WIDTH).checked_div(event.total).unwrap_or(WIDTH);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 { event.done as f64 / elapsed } else { 0.0 };
        let left = event.total.saturating_sub(event.done);
        let eta = if rate > 0.0 { format!("{:.0}s", left as f64 / rate) } else { "?".to_owned() };
        // Clear the bar, print the contact's line, draw the bar again below it.
        eprint!(
            "\r\x1b[2K{event}\n[{}{}] {}/{} contacts · {rate:.1}/s · ETA {eta}{}",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled.min(WIDTH)),
            event.done,
            event.total,
            if left == 0 { "\n" } else { "" }
        );
    }
}
