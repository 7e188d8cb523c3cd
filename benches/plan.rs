//! Planning a batch request of 10,000 contacts against the simulator at 1 ms injected latency:
//! wall time of `plan::build`, the calls it made (the simulator's own counts) and calls/s against
//! the latency-bound ideal (concurrency / latency).
//!
//! `cargo bench --bench plan` (`PLAN_BENCH_CONTACTS=2000` for a quicker run). The dataset comes
//! from `sim::generate` (2 interactions per contact, no attachments; every tenth contact has a
//! pending GMS callback, which the plan reports as a blocker). The environment is `embedded`,
//! wired as the CLI wires it (`Environments::connect`: the in-process simulator with the
//! environment's faults, the real `RestClient` with the environment's concurrency), so the
//! client's own concurrency limit is the environment's. Three rounds per concurrency; planning
//! is read-only, so the rounds see the same data.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use ucs_gdpr::environment::Environments;
use ucs_gdpr::manifest::{self, Context};
use ucs_gdpr::plan::{self, PlanInput};
use ucs_gdpr::runbook::RunbookLibrary;
use ucs_gdpr::sim::{GenerateOptions, generate};

const LATENCY_MS: u64 = 1;
const INTERACTIONS: u32 = 2;
const ROUNDS: usize = 3;

fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn total_calls(stats: &ucs_gdpr::sim::Stats) -> u64 {
    stats.calls.values().sum()
}

/// The environments file: one embedded environment on the generated dataset.
fn write_environments(dir: &Path) {
    let text = format!(
        "apiVersion: ucs-gdpr/v1\nkind: Environments\nenvironments:\n  bench:\n    \
         type: embedded\n    tenant: 101\n    dataset: dataset.json\n    \
         faults: {{ latencyMs: {LATENCY_MS} }}\n    concurrency: 8\n    policy:\n      \
         requireApproval: false\n      auditLog: audit.jsonl\n      exports: exports\n"
    );
    std::fs::write(dir.join("ucs-gdpr.yaml"), text).unwrap();
}

/// A batch-delete request naming every contact of the dataset by id.
fn write_request(dir: &Path, ids: &[String]) {
    let mut text = String::from(
        "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-BENCH-PLAN\n  \
         receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: bench\nspec:\n  \
         environment: bench\n  runbook: batch-delete\n  subjects:\n",
    );
    for id in ids {
        // Quoted: an unquoted id such as `0oYWD5Bq33vFqv89` is read as a (bad) YAML number.
        writeln!(text, "    - contactId: \"{id}\"").unwrap();
    }
    text.push_str("  export:\n    dataSources: [main, archive]\n  delete:\n    confirm: true\n");
    std::fs::write(dir.join("request.yaml"), text).unwrap();
}

fn main() {
    let contacts: u32 =
        std::env::var("PLAN_BENCH_CONTACTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset.json");
    generate(&GenerateOptions {
        contacts,
        interactions: INTERACTIONS,
        attachment_bytes: 0,
        seed: 42,
        out: dataset.clone(),
    })
    .unwrap();
    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dataset).unwrap()).unwrap();
    let ids: Vec<String> = value["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    write_environments(dir.path());
    write_request(dir.path(), &ids);

    let (mut environments, _) = Environments::load(&dir.path().join("ucs-gdpr.yaml")).unwrap();
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

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "plan::build of a batch-delete request, {contacts} contacts x {INTERACTIONS} interactions, \
         simulator in-process at {LATENCY_MS} ms injected latency, {ROUNDS} rounds per case"
    );
    println!(
        "{} cores, load average at start: {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    for concurrency in [8u32, 32] {
        environments.environments.get_mut("bench").unwrap().concurrency = concurrency;
        let environment = environments.get("bench").unwrap();
        let (times, calls, per_op, blockers) = runtime.block_on(async {
            let connection = environments.connect("bench", None).await.unwrap();
            let sim = connection.simulator.as_ref().unwrap();
            let input = PlanInput {
                request: &request,
                manifest_path: request_path.display().to_string(),
                manifest_sha256: manifest_sha256.clone(),
                runbook,
                environment_name: "bench",
                environment,
                digester: &connection.digester,
                ucs_version: connection.ucs_version,
                concurrency: usize::try_from(concurrency).unwrap(),
                page_size: 100,
                etl: ucs_gdpr::plan::Etl::NotConfigured,
            };
            let mut times = Vec::new();
            let mut calls = 0;
            let mut per_op = Default::default();
            let mut blockers = 0;
            for _ in 0..ROUNDS {
                let before = sim.stats();
                let started = Instant::now();
                let plan = plan::build(&input, &connection.client).await;
                times.push(started.elapsed());
                let after = sim.stats();
                calls = total_calls(&after) - total_calls(&before);
                per_op = after
                    .calls
                    .iter()
                    .map(|(op, n)| (op.clone(), n - before.calls.get(op).copied().unwrap_or(0)))
                    .filter(|(_, n)| *n > 0)
                    .collect::<std::collections::BTreeMap<String, u64>>();
                assert_eq!(plan.body.contacts.len(), ids.len(), "every contact was planned");
                blockers = plan.body.blockers.len();
            }
            if let Some(sim) = connection.simulator {
                sim.shutdown().await;
            }
            (times, calls, per_op, blockers)
        });
        let mut sorted = times.clone();
        sorted.sort();
        let median = sorted[sorted.len() / 2];
        let s = |d: Duration| d.as_secs_f64();
        let rate = calls as f64 / s(median);
        let ideal = f64::from(concurrency) / (LATENCY_MS as f64 / 1000.0);
        println!(
            "concurrency {concurrency:>2}: median {:.2} s (min {:.2}, max {:.2}); {calls} calls \
             ({:.1} per contact) -> {rate:.0} calls/s, {:.0} contacts/s; ideal {ideal:.0} calls/s \
             ({:.2} s): {:.1}% of ideal; load average now {}",
            s(median),
            s(sorted[0]),
            s(sorted[sorted.len() - 1]),
            calls as f64 / ids.len() as f64,
            ids.len() as f64 / s(median),
            calls as f64 / ideal,
            rate / ideal * 100.0,
            load_average()
        );
        println!(
            "  calls per operation (one round): {per_op:?}; {blockers} blocker(s) in the plan"
        );
        println!(
            "  rounds: {}",
            times.iter().map(|t| format!("{:.2} s", s(*t))).collect::<Vec<_>>().join(", ")
        );
    }
}
