//! Apply throughput: a batch-delete request of 1,000 contacts x 20 interactions against the
//! simulator at 2 ms injected latency and concurrency 32, planned then applied (export of main
//! and archive into a temporary folder, delete, verify, audit log in a temporary folder).
//! Reports contacts/s and calls/s (the simulator's own counts) against the latency-bound ideal
//! (concurrency / latency).
//!
//! `cargo bench --bench apply`; `APPLY_BENCH_CONTACTS` (default 1000), `APPLY_BENCH_ROUNDS`
//! (default 3), `APPLY_BENCH_CONCURRENCY` (default 32), `APPLY_BENCH_ATTACHMENT_BYTES` (default 0:
//! no attachments; with N > 0 each interaction has one attachment of N bytes, exported inline).
//!
//! The dataset comes from `sim::generate` with its pending GMS callbacks removed (they would
//! block the plan, and a blocked plan is not applied). The environment is `embedded`, wired as
//! the CLI wires it (`Environments::connect`), with a fresh simulator each round (apply deletes
//! what it applies to). `apply::run` includes its own stale-plan check, a second `plan::build`;
//! the bench times the first plan separately, so the executor's own share is about the
//! difference. The audit log and the export bag are on the same disk as the temporary folder
//! (fsyncs are real).

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
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ucs_gdpr::apply::{self, ApplyContext};
use ucs_gdpr::environment::Environments;
use ucs_gdpr::manifest::{self, Context};
use ucs_gdpr::plan::{self, PlanInput};
use ucs_gdpr::runbook::RunbookLibrary;
use ucs_gdpr::sim::{GenerateOptions, Stats, generate};

const LATENCY_MS: u64 = 2;
const INTERACTIONS: u32 = 20;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn total_calls(stats: &Stats) -> u64 {
    stats.calls.values().sum()
}

fn delta(after: &Stats, before: &Stats) -> BTreeMap<String, u64> {
    after
        .calls
        .iter()
        .map(|(op, n)| (op.clone(), n - before.calls.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn write_environments(dir: &Path, concurrency: u32) {
    let text = format!(
        "apiVersion: ucs-gdpr/v1\nkind: Environments\nenvironments:\n  bench:\n    \
         type: embedded\n    tenant: 101\n    dataset: dataset.json\n    \
         faults: {{ latencyMs: {LATENCY_MS} }}\n    concurrency: {concurrency}\n    policy:\n      \
         requireApproval: false\n"
    );
    std::fs::write(dir.join("ucs-gdpr.yaml"), text).unwrap();
}

fn write_request(dir: &Path, ids: &[String], inline: bool) {
    let mut text = String::from(
        "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-BENCH-APPLY\n  \
         receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: bench\nspec:\n  \
         environment: bench\n  runbook: batch-delete\n  subjects:\n",
    );
    for id in ids {
        // Quoted: an unquoted id such as `0oYWD5Bq33vFqv89` is read as a (bad) YAML number.
        writeln!(text, "    - contactId: \"{id}\"").unwrap();
    }
    let attachments = if inline { "inline" } else { "omit" };
    writeln!(
        text,
        "  export:\n    dataSources: [main, archive]\n    attachments: {attachments}\n  \
         delete:\n    confirm: true"
    )
    .unwrap();
    std::fs::write(dir.join("request.yaml"), text).unwrap();
}

struct Round {
    plan_seconds: f64,
    plan_calls: u64,
    apply_seconds: f64,
    apply_calls: u64,
    apply_ops: BTreeMap<String, u64>,
    audit_records: u64,
    /// (step, code) of each contact that failed.
    failures: Vec<(String, String)>,
}

fn main() {
    // Errors only (the simulator logs why it answered 500), on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("error"))
        .with_writer(std::io::stderr)
        .init();
    let contacts: u32 = env_or("APPLY_BENCH_CONTACTS", 1000);
    let rounds: usize = env_or("APPLY_BENCH_ROUNDS", 3);
    let concurrency: u32 = env_or("APPLY_BENCH_CONCURRENCY", 32);
    let attachment_bytes: u64 = env_or("APPLY_BENCH_ATTACHMENT_BYTES", 0);
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset.json");
    generate(&GenerateOptions {
        contacts,
        interactions: INTERACTIONS,
        attachment_bytes,
        seed: 42,
        out: dataset.clone(),
    })
    .unwrap();
    // No pending callbacks: they would block the plan.
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dataset).unwrap()).unwrap();
    let mut ids = Vec::new();
    for contact in value["contacts"].as_array_mut().unwrap() {
        contact["callbacks"] = serde_json::json!([]);
        ids.push(contact["id"].as_str().unwrap().to_owned());
    }
    std::fs::write(&dataset, serde_json::to_vec(&value).unwrap()).unwrap();
    drop(value);
    write_environments(dir.path(), concurrency);
    write_request(dir.path(), &ids, attachment_bytes > 0);

    let (environments, _) = Environments::load(&dir.path().join("ucs-gdpr.yaml")).unwrap();
    let environment = environments.get("bench").unwrap();
    let runbooks = RunbookLibrary::built_in();
    let request_path = dir.path().join("request.yaml");
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
    let runbook = runbooks.get("batch-delete").unwrap();
    let concurrency_usize = usize::try_from(concurrency).unwrap();

    println!(
        "plan + apply of a batch-delete request, {contacts} contacts x {INTERACTIONS} \
         interactions (attachment bytes per interaction: {attachment_bytes}), simulator \
         in-process at {LATENCY_MS} ms injected latency, concurrency {concurrency}, {rounds} rounds"
    );
    println!(
        "{} cores, load average at start: {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut results = Vec::new();
    for round in 0..rounds {
        let work = dir.path().join(format!("round-{round}"));
        std::fs::create_dir_all(&work).unwrap();
        let result = runtime.block_on(async {
            let connection = environments.connect("bench", None).await.unwrap();
            let sim = connection.simulator.as_ref().unwrap();
            let input = || PlanInput {
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
            let before = sim.stats();
            let started = Instant::now();
            let plan = plan::build(&input(), &connection.client).await;
            let plan_seconds = started.elapsed().as_secs_f64();
            assert!(!plan.is_blocked(), "{:?}", plan.body.blockers.first());
            let planned = sim.stats();

            let progress = |_: &ucs_gdpr::apply::Progress<'_>| {};
            let context = ApplyContext {
                shard: None,
                input: input(),
                runbook,
                base_dir: environments.base_dir.clone(),
                actor: "bench".to_owned(),
                audit_log: work.join("audit.jsonl"),
                signing_key: None,
                exports_dir: work.join("exports"),
                concurrency: concurrency_usize,
                stop: Arc::new(AtomicBool::new(false)),
                retries: Arc::new(Mutex::new(Vec::new())),
                progress: &progress,
            };
            let started = Instant::now();
            let approved = apply::authorize(&plan, &[], &context).unwrap();
            let receipt = apply::run(&approved, &context, &connection.client).await.unwrap();
            let apply_seconds = started.elapsed().as_secs_f64();
            let applied = sim.stats();
            assert!(!receipt.interrupted);
            let failures: Vec<(String, String)> =
                receipt.contacts.iter().filter_map(|c| c.failure.clone()).collect();
            assert_eq!(receipt.contacts.len(), ids.len());
            if let Some(sim) = connection.simulator {
                sim.shutdown().await;
            }
            Round {
                plan_seconds,
                plan_calls: total_calls(&planned) - total_calls(&before),
                apply_seconds,
                apply_calls: total_calls(&applied) - total_calls(&planned),
                apply_ops: delta(&applied, &planned),
                audit_records: receipt.audit_records,
                failures,
            }
        });
        let ideal = f64::from(concurrency) / (LATENCY_MS as f64 / 1000.0);
        let n = ids.len() as f64;
        println!(
            "round {}: plan {:.2} s ({} calls, {:.0} calls/s, {:.1}% of ideal); apply {:.2} s \
             ({} calls, {:.1} per contact, {:.0} calls/s, {:.1}% of ideal; {:.0} contacts/s; \
             executor alone ~{:.2} s, ~{:.0} contacts/s); {} audit records; load average now {}",
            round + 1,
            result.plan_seconds,
            result.plan_calls,
            result.plan_calls as f64 / result.plan_seconds,
            result.plan_calls as f64 / result.plan_seconds / ideal * 100.0,
            result.apply_seconds,
            result.apply_calls,
            result.apply_calls as f64 / n,
            result.apply_calls as f64 / result.apply_seconds,
            result.apply_calls as f64 / result.apply_seconds / ideal * 100.0,
            n / result.apply_seconds,
            result.apply_seconds - result.plan_seconds,
            n / (result.apply_seconds - result.plan_seconds),
            result.audit_records,
            load_average()
        );
        if !result.failures.is_empty() {
            println!(
                "  {} contact(s) failed, (step, code): {:?}",
                result.failures.len(),
                result.failures
            );
        }
        if round == 0 {
            println!("  apply calls per operation: {:?}", result.apply_ops);
            println!(
                "  ideal at concurrency {concurrency} and {LATENCY_MS} ms: {ideal:.0} calls/s, \
                 i.e. {:.2} s for the apply's {} calls",
                result.apply_calls as f64 / ideal,
                result.apply_calls
            );
        }
        results.push(result);
    }
    let mut applies: Vec<f64> = results.iter().map(|r| r.apply_seconds).collect();
    applies.sort_by(f64::total_cmp);
    let median = applies[applies.len() / 2];
    let calls = results[0].apply_calls as f64;
    println!(
        "apply: median {median:.2} s (min {:.2}, max {:.2}): {:.0} contacts/s, {:.0} calls/s \
         (ideal {:.0} calls/s: {:.1}%)",
        applies[0],
        applies[applies.len() - 1],
        ids.len() as f64 / median,
        calls / median,
        f64::from(concurrency) / (LATENCY_MS as f64 / 1000.0),
        calls / median / (f64::from(concurrency) / (LATENCY_MS as f64 / 1000.0)) * 100.0
    );
}
