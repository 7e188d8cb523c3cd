//! Plan and apply against the connector's own ceiling, side by side in one run, with the
//! simulator in its own process (`ucs-gdpr sim serve --latency-ms 2`, loopback).
//!
//! `cargo bench --bench apply`; `APPLY_BENCH_CONTACTS` (default 1000), `APPLY_BENCH_INTERACTIONS`
//! (default 20), `APPLY_BENCH_CONCURRENCY` (default 32), `APPLY_BENCH_LATENCY_MS` (default 2),
//! `APPLY_BENCH_WORK_DIR` (where apply's audit log and bag go; default the temporary folder),
//! `APPLY_BENCH_CONTACTS_AT_ONCE` (apply's contacts at once; default as the CLI's,
//! `session::CONTACTS_PER_REQUEST` × the concurrency). The concurrency is the environment's:
//! the requests in flight, which the client keeps to in every part; the replays run that many
//! contacts at once (each makes one call at a time), apply more (a contact waiting for an
//! fsync makes no request). Each part prints the simulator's most calls at once.
//!
//! One run, four timed parts, each against a simulator process of its own dataset copy:
//! 1. **connector, plan's mix**: the very calls a plan of the request made (recorded by a
//!    `Ucs` wrapper under their call sites while it planned once), replayed straight through
//!    the `RestClient`: each contact's calls in order, contacts at the environment's
//!    concurrency;
//! 2. **plan**: `plan::build` of the batch-delete request (same simulator: planning reads
//!    only), planned again after the replay;
//! 3. **apply**: `apply::authorize` + `apply::run` of that plan (its stale-plan re-check,
//!    export of main and archive into a bag, delete, verify; audit log and bag on this disk,
//!    fsyncs real) against a second simulator process, its calls recorded;
//! 4. **connector, apply's mix**: apply's recorded calls replayed the same way through the bare
//!    client, against a third simulator process (re-check phase first, then each contact's
//!    steps).
//!
//! Each part also gives the CPU time of this process (engine and client) and of the
//! simulator, so the time a stage adds to the connector's shows.
//!
//! Each line gives the calls the simulator counted (`/sim/stats`), so the mixes can be compared,
//! and the ratio stage / connector of calls/s. Peak RSS (`VmHWM`) of this process is reset
//! (`/proc/self/clear_refs`) before plan and before apply, so each figure is that stage's own
//! (the plan stays in memory during apply). The dataset and request are made by a child
//! process (this binary, re-run), so their memory is not counted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ucs_gdpr::apply::{self, ApplyContext};
use ucs_gdpr::environment::Environments;
use ucs_gdpr::manifest::{self, Context};
use ucs_gdpr::plan::{self, PlanInput};
use ucs_gdpr::runbook::RunbookLibrary;
use ucs_gdpr::sim::{GenerateOptions, Stats, generate};
use ucs_gdpr::ucs::ContactId;

mod common;
#[path = "common/recorder.rs"]
mod recorder;

use common::{Sim, cpu_seconds, load_average};
use recorder::{Recorder, replay};

const HMAC_ENV: &str = "UCS_GDPR_BENCH_HMAC";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `VmHWM` of this process in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

/// Resets `VmHWM` to the current RSS.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// The child's job: the dataset (no pending callbacks: they would block the plan), the ids,
/// the request naming them all.
fn prepare(dir: &Path, contacts: u32, interactions: u32) {
    let dataset = dir.join("dataset.json");
    generate(&GenerateOptions {
        contacts,
        interactions,
        attachment_bytes: 0,
        seed: 42,
        out: dataset.clone(),
    })
    .unwrap();
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dataset).unwrap()).unwrap();
    let mut ids = String::new();
    for contact in value["contacts"].as_array_mut().unwrap() {
        contact["callbacks"] = serde_json::json!([]);
        writeln!(ids, "{}", contact["id"].as_str().unwrap()).unwrap();
    }
    std::fs::write(&dataset, serde_json::to_vec(&value).unwrap()).unwrap();
    std::fs::write(dir.join("ids.txt"), &ids).unwrap();
    let mut text = String::from(
        "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-BENCH-APPLY\n  \
         receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: bench\nspec:\n  \
         environment: bench\n  runbook: batch-delete\n  subjects:\n",
    );
    for id in ids.lines() {
        // Quoted: an unquoted id such as `0oYWD5Bq33vFqv89` is read as a (bad) YAML number.
        writeln!(text, "    - contactId: \"{id}\"").unwrap();
    }
    text.push_str(
        "  export:\n    dataSources: [main, archive]\n    attachments: omit\n  \
         delete:\n    confirm: true\n",
    );
    std::fs::write(dir.join("request.yaml"), text).unwrap();
}

/// How many calls of each operation the simulator has served.
async fn calls(sim: &Sim) -> BTreeMap<String, u64> {
    stats(sim).await.calls
}

/// The most calls the simulator has had under way at once, since it started.
async fn peak_in_flight(sim: &Sim) -> u64 {
    stats(sim).await.peak_in_flight
}

async fn stats(sim: &Sim) -> Stats {
    reqwest::get(format!("{}/sim/stats", sim.url)).await.unwrap().json().await.unwrap()
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn write_environments(dir: &Path, url: &str, concurrency: u32) {
    let text = format!(
        "apiVersion: ucs-gdpr/v1\nkind: Environments\nenvironments:\n  bench:\n    \
         type: rest\n    tenant: 101\n    hmacKeyEnv: {HMAC_ENV}\n    ucs:\n      url: {url}/\n    \
         contextServices:\n      url: {url}/\n    gms:\n      url: {url}/\n    \
         concurrency: {concurrency}\n    policy:\n      requireApproval: false\n"
    );
    std::fs::write(dir.join("ucs-gdpr.yaml"), text).unwrap();
}

struct Part {
    seconds: f64,
    /// CPU seconds of this process (the engine and the client) and of the simulator.
    cpu: (f64, f64),
    calls: BTreeMap<String, u64>,
    peak_mib: Option<f64>,
    /// The simulator's most calls at once (since it started: the plan's simulator served the
    /// connector's replay first).
    in_flight: u64,
}

impl Part {
    fn total(&self) -> u64 {
        self.calls.values().sum()
    }
    fn rate(&self) -> f64 {
        self.total() as f64 / self.seconds
    }
}

/// CPU seconds so far of this process and of the simulator.
fn cpus(sim: &Sim) -> (f64, f64) {
    (cpu_seconds("self").unwrap_or(f64::NAN), sim.cpu_seconds())
}

fn since(before: (f64, f64), sim: &Sim) -> (f64, f64) {
    let now = cpus(sim);
    (now.0 - before.0, now.1 - before.1)
}

/// Files [`new_file_micros`] creates.
const PROBE_FILES: u32 = 64;

/// What a new small file costs in `dir` (created): create, write 4 KiB, fsync, rename, in
/// µs, the mean of [`PROBE_FILES`]. The files stay until the bench's folder goes, so the probe
/// frees no inode before apply runs.
fn new_file_micros(dir: &Path) -> f64 {
    use std::io::Write as _;
    std::fs::create_dir_all(dir).unwrap();
    let started = Instant::now();
    for n in 0..PROBE_FILES {
        let temp = dir.join(format!("{n}.tmp"));
        let mut file = std::fs::File::create(&temp).unwrap();
        file.write_all(&[b'x'; 4096]).unwrap();
        file.sync_all().unwrap();
        std::fs::rename(&temp, dir.join(format!("{n}.json"))).unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(PROBE_FILES)
}

/// Empty files [`new_inode_micros`] creates.
const INODE_PROBE_FILES: u32 = 512;

/// What creating an empty file costs in `dir` (created), in µs, the mean of
/// [`INODE_PROBE_FILES`] (CPU-bound: nothing is written to the disk): the inode allocation alone, without the fsync that dominates
/// [`new_file_micros`]. On ext4 without a journal a new inode skips every free one whose
/// deletion is recent (1 minute, or 6 while its inode table block is dirty), one buffer-cache
/// lookup each, so the same files cost ten times as much in a folder whose block group holds
/// thousands of recently freed inodes (a build's, or an earlier run's clean-up).
fn new_inode_micros(dir: &Path) -> f64 {
    std::fs::create_dir_all(dir).unwrap();
    let started = Instant::now();
    for n in 0..INODE_PROBE_FILES {
        drop(std::fs::File::create(dir.join(format!("{n}"))).unwrap());
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(INODE_PROBE_FILES)
}

fn main() {
    let contacts: u32 = env_or("APPLY_BENCH_CONTACTS", 1000);
    let interactions: u32 = env_or("APPLY_BENCH_INTERACTIONS", 20);
    let concurrency: u32 = env_or("APPLY_BENCH_CONCURRENCY", 32);
    let latency_ms: u64 = env_or("APPLY_BENCH_LATENCY_MS", 2);
    if let Ok(dir) = std::env::var("APPLY_BENCH_PREPARE") {
        prepare(Path::new(&dir), contacts, interactions);
        return;
    }
    // Errors only, on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("error"))
        .with_writer(std::io::stderr)
        .init();
    if std::env::var_os(HMAC_ENV).is_none() {
        // The REST environment reads its subject key from the environment: run again with it.
        let status = Command::new(std::env::current_exe().unwrap())
            .args(std::env::args_os().skip(1))
            .env(HMAC_ENV, "bench-subject-key-of-at-least-32-bytes!!")
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    let dir = tempfile::tempdir().unwrap();
    let prepared = Command::new(std::env::current_exe().unwrap())
        .env("APPLY_BENCH_PREPARE", dir.path())
        .status()
        .unwrap();
    assert!(prepared.success());
    let dataset: PathBuf = dir.path().join("dataset.json");
    let ids: Vec<ContactId> = std::fs::read_to_string(dir.path().join("ids.txt"))
        .unwrap()
        .lines()
        .map(|id| ContactId::new(id).unwrap())
        .collect();
    let n = ids.len() as f64;

    // Contacts apply runs at once: as the CLI's default (the client keeps the requests in flight
    // to `concurrency`), or `APPLY_BENCH_CONTACTS_AT_ONCE`.
    let contacts_at_once: usize = env_or(
        "APPLY_BENCH_CONTACTS_AT_ONCE",
        usize::try_from(concurrency).unwrap() * ucs_gdpr::session::CONTACTS_PER_REQUEST,
    );
    println!(
        "plan and apply of a batch-delete request against the bare connector, {contacts} \
         contacts x {interactions} interactions, simulator in its own process at {latency_ms} ms \
         injected latency, concurrency {concurrency} (requests in flight; apply runs \
         {contacts_at_once} contacts at once, the replays {concurrency})"
    );
    println!(
        "{} cores, load average at start: {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let runbooks = RunbookLibrary::built_in();
    let runbook = runbooks.get("batch-delete").unwrap();
    let request_path = dir.path().join("request.yaml");
    let concurrency_usize = usize::try_from(concurrency).unwrap();

    let (
        conn_plan,
        conn_plan_errors,
        plan_part,
        apply_part,
        apply_calls,
        receipt_failures,
        listen,
        (phases, probe_before, probe_after, inode_before, inode_after),
    ) = runtime.block_on(async {
        // Simulator 1: the connector with the plan's mix, then the plan.
        let sim = Sim::serve_with(
            &dataset,
            &["--listen", "127.0.0.1:0", "--latency-ms", &latency_ms.to_string()],
        );
        write_environments(dir.path(), &sim.url, concurrency);
        let (environments, _) = Environments::load(&dir.path().join("ucs-gdpr.yaml")).unwrap();
        let environment = environments.get("bench").unwrap();
        let (report, request) = {
            let context = Context {
                runbooks: &runbooks,
                environments: Some(&environments),
                now: jiff::Timestamp::now(),
            };
            manifest::load_request(&request_path, &context)
        };
        let Some(request) = request else {
            let first: Vec<_> = report.diagnostics.iter().take(3).collect();
            panic!("the generated request is not valid: {first:?}");
        };
        let manifest_sha256 = ucs_gdpr::canonical::sha256_hex(report.source.as_bytes());
        let connection = environments.connect("bench", None).await.unwrap();
        let client = &connection.client;

        let input = |environment| PlanInput {
            request: &request,
            manifest_path: request_path.display().to_string(),
            manifest_sha256: manifest_sha256.clone(),
            runbook,
            environment_name: "bench",
            environment,
            digester: &connection.digester,
            ucs_version: connection.ucs_version,
            concurrency: concurrency_usize,
            page_size: 100,
            etl: ucs_gdpr::plan::Etl::NotConfigured,
        };
        // The plan once through the recorder (its calls, and a warm simulator), the bare
        // connector replaying those calls, then the plan measured.
        let recorder = Recorder::new(client);
        let plan = plan::build(&input(environment), &recorder).await;
        let plan_calls = recorder.phases();
        let before = calls(&sim).await;
        let started = Instant::now();
        let cpu = cpus(&sim);
        let conn_plan_errors = replay(client, &plan_calls, concurrency_usize).await;
        let conn_plan = Part {
            seconds: started.elapsed().as_secs_f64(),
            cpu: since(cpu, &sim),
            calls: delta(&calls(&sim).await, &before),
            peak_mib: None,
            in_flight: peak_in_flight(&sim).await,
        };
        drop(plan_calls);
        drop(plan);
        let before = calls(&sim).await;
        reset_peak();
        let started = Instant::now();
        let cpu = cpus(&sim);
        let plan = plan::build(&input(environment), client).await;
        let plan_part = Part {
            seconds: started.elapsed().as_secs_f64(),
            cpu: since(cpu, &sim),
            calls: delta(&calls(&sim).await, &before),
            peak_mib: Some(peak_mib()),
            in_flight: peak_in_flight(&sim).await,
        };
        assert!(!plan.is_blocked(), "{:?}", plan.body.blockers.first());
        assert_eq!(plan.body.contacts.len(), ids.len());
        let listen = sim.url.trim_start_matches("http://").to_owned();
        let listen = listen.as_str();
        drop(sim);

        // Simulator 2: apply.
        // The same address: the plan is bound to the environment as it was planned.
        let sim = Sim::serve_with(
            &dataset,
            &["--listen", listen, "--latency-ms", &latency_ms.to_string()],
        );
        let connection2 = environments.connect("bench", None).await.unwrap();
        // When the first and the last contact finished: the run's phases (the re-check
        // before, the bag's consolidation and the readable page after).
        let finishing: Mutex<(Option<Instant>, Option<Instant>)> = Mutex::new((None, None));
        let progress = |p: &ucs_gdpr::apply::Progress<'_>| {
            if p.stage == ucs_gdpr::apply::Stage::Contacts {
                let mut at = finishing.lock().unwrap();
                let now = Instant::now();
                at.0.get_or_insert(now);
                at.1 = Some(now);
            }
        };
        // The audit log and the bag: in the bench's temporary folder, or under
        // `APPLY_BENCH_WORK_DIR` (another file system, to see what the disk costs).
        let work_base = std::env::var_os("APPLY_BENCH_WORK_DIR")
            .map(|base| tempfile::tempdir_in(base).unwrap());
        let work = work_base.as_ref().map_or(dir.path(), |base| base.path()).join("work");
        let context = ApplyContext {
            shard: None,
            input: PlanInput { digester: &connection2.digester, ..input(environment) },
            runbook,
            base_dir: environments.base_dir.clone(),
            actor: "bench".to_owned(),
            audit_log: work.join("audit.jsonl"),
            signing_key: None,
            exports_dir: work.join("exports"),
            concurrency: contacts_at_once,
            stop: Arc::new(AtomicBool::new(false)),
            retries: Arc::new(Mutex::new(Vec::new())),
            progress: &progress,
        };
        std::fs::create_dir_all(&work).unwrap();
        let probe_before = new_file_micros(&work.join("probe-before"));
        let inode_before = new_inode_micros(&work.join("inode-probe-before"));
        let before = calls(&sim).await;
        reset_peak();
        let started = Instant::now();
        let cpu = cpus(&sim);
        let approved = apply::authorize(&plan, &[], &context).unwrap();
        let recorder = Recorder::new(&connection2.client);
        let receipt = apply::run(&approved, &context, &recorder).await.unwrap();
        let apply_part = Part {
            seconds: started.elapsed().as_secs_f64(),
            cpu: since(cpu, &sim),
            calls: delta(&calls(&sim).await, &before),
            peak_mib: Some(peak_mib()),
            in_flight: peak_in_flight(&sim).await,
        };
        let (first, last) = *finishing.lock().unwrap();
        let phases = (
            first.map_or(0.0, |t| (t - started).as_secs_f64()),
            match (first, last) {
                (Some(first), Some(last)) => (last - first).as_secs_f64(),
                _ => 0.0,
            },
            last.map_or(0.0, |t| t.elapsed().as_secs_f64()),
        );
        let probe_after = new_file_micros(&work.join("probe-after"));
        let inode_after = new_inode_micros(&work.join("inode-probe-after"));
        assert!(!receipt.interrupted);
        assert_eq!(receipt.contacts.len(), ids.len());
        let failures: Vec<(String, String)> =
            receipt.contacts.iter().filter_map(|c| c.unwrap().failure).collect();
        drop(sim);
        let apply_calls = recorder.phases();
        (
            conn_plan,
            conn_plan_errors,
            plan_part,
            apply_part,
            apply_calls,
            failures,
            listen.to_owned(),
            (phases, probe_before, probe_after, inode_before, inode_after),
        )
    });

    let (conn_apply, conn_apply_errors) = runtime.block_on(async {
        // Simulator 3: the connector with apply's mix.
        let sim = Sim::serve_with(
            &dataset,
            &["--listen", &listen, "--latency-ms", &latency_ms.to_string()],
        );
        let (environments, _) = Environments::load(&dir.path().join("ucs-gdpr.yaml")).unwrap();
        let connection = environments.connect("bench", None).await.unwrap();
        let client = &connection.client;
        let before = calls(&sim).await;
        let started = Instant::now();
        let cpu = cpus(&sim);
        let errors = replay(client, &apply_calls, concurrency_usize).await;
        let part = Part {
            seconds: started.elapsed().as_secs_f64(),
            cpu: since(cpu, &sim),
            calls: delta(&calls(&sim).await, &before),
            peak_mib: None,
            in_flight: peak_in_flight(&sim).await,
        };
        (part, errors)
    });

    let ideal = f64::from(concurrency) / (latency_ms as f64 / 1000.0);
    let line = |name: &str, part: &Part| {
        println!(
            "{name:<24} {:>8.2} s {:>9.0} contacts/s {:>7} calls ({:>5.1}/contact) {:>7.0} calls/s \
             ({:>5.1}% of {ideal:.0}), at most {} at once{}",
            part.seconds,
            n / part.seconds,
            part.total(),
            part.total() as f64 / n,
            part.rate(),
            part.rate() / ideal * 100.0,
            part.in_flight,
            part.peak_mib.map(|m| format!("; peak RSS {m:.0} MiB")).unwrap_or_default()
        );
        println!(
            "{:<24} CPU: engine and client {:.2} s ({:.0} µs/call), simulator {:.2} s ({:.0} µs/call)",
            "",
            part.cpu.0,
            part.cpu.0 / part.total() as f64 * 1e6,
            part.cpu.1,
            part.cpu.1 / part.total() as f64 * 1e6,
        );
    };
    line("connector, plan's mix", &conn_plan);
    line("plan::build", &plan_part);
    line("apply::run", &apply_part);
    line("connector, apply's mix", &conn_apply);
    println!(
        "apply's phases: {:.2} s to the first contact's end (gate, re-check), {:.2} s of \
         contacts, {:.2} s after the last (bag, receipt, page)",
        phases.0, phases.1, phases.2
    );
    println!(
        "a new file in apply's folder (create, 4 KiB, fsync, rename; mean of {PROBE_FILES}): \
         {probe_before:.0} µs before apply, {probe_after:.0} µs after (on ext4 without a journal \
         a new inode skips past those freed in the last 1 to 6 minutes)"
    );
    println!(
        "an empty new file there (the inode alone, mean of {INODE_PROBE_FILES}): \
         {inode_before:.1} µs before apply, {inode_after:.1} µs after (7 to 10 µs measured on \
         this machine's quiet folders, 122 in one whose block group held thousands of inodes \
         freed minutes before)"
    );
    println!(
        "plan / connector: {:.2} (calls/s), {:.2} (time); apply / connector: {:.2} (calls/s), \
         {:.2} (time)",
        plan_part.rate() / conn_plan.rate(),
        conn_plan.seconds / plan_part.seconds,
        apply_part.rate() / conn_apply.rate(),
        conn_apply.seconds / apply_part.seconds,
    );
    println!("  plan's calls:   {:?}", plan_part.calls);
    println!("  connector's:    {:?}", conn_plan.calls);
    println!("  apply's calls:  {:?}", apply_part.calls);
    println!("  connector's:    {:?}", conn_apply.calls);
    if !receipt_failures.is_empty() {
        println!(
            "  {} contact(s) failed in apply, (step, code): {:?}",
            receipt_failures.len(),
            receipt_failures.iter().take(5).collect::<Vec<_>>()
        );
    }
    println!(
        "  answered with an error in the replays (the calls the stages made, \"not found\" after \
         a delete included): plan's {conn_plan_errors}, apply's {conn_apply_errors}"
    );
    println!("load average at end: {}", load_average());
}
