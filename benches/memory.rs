//! Peak memory of `ucs-gdpr plan` and `ucs-gdpr apply` of one batch-delete request, at several
//! batch sizes: the figure issue 13 bounds (≤ 256 MiB at 100,000 contacts).
//!
//! `cargo bench --bench memory` (`MEMORY_BENCH_SIZES=1000,100000` by default;
//! `MEMORY_BENCH_INTERACTIONS=1`; `MEMORY_BENCH_EXPORT=1` exports into a bag instead of
//! waiving the export). Each size: a generated dataset (`ucs-gdpr sim generate`, no
//! pending callbacks so nothing blocks), served by `ucs-gdpr sim serve` in its own process (no
//! injected latency), a `rest` environment on it, a request naming every contact through a
//! subjects file, with an export waiver (a retention purge: no bag, so the figure is the plan
//! and the executor, not the bag's manifest). The release binary plans into a plan file
//! (`plan --out plan.json --count`) and applies it (`apply plan.json`), each measured by
//! `/usr/bin/time` (its maximum resident set size): the client's own memory, the simulator's
//! is in the other process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::indexing_slicing
)]

use std::path::Path;

mod common;

use common::{BIN, Sim, load_average};

/// One run of the binary: wall clock, peak RSS, exit code, and the CPU seconds it and the
/// simulator used.
struct Run {
    seconds: f64,
    kib: u64,
    code: i32,
    cpu: f64,
    sim_cpu: f64,
}

/// Runs `bin` in `dir` under `/usr/bin/time` against `sim`.
fn measured(bin: &str, dir: &Path, sim: &Sim, args: &[&str]) -> Run {
    let sim_before = sim.cpu_seconds();
    let run = common::timed(bin, dir, args);
    Run {
        seconds: run.seconds,
        kib: run.kib,
        code: run.code,
        cpu: run.cpu,
        sim_cpu: sim.cpu_seconds() - sim_before,
    }
}

/// Whether the request exports (`MEMORY_BENCH_EXPORT=1`: main and archive into a bag, as
/// an access request before an erasure would) rather than waiving the export.
fn exporting() -> bool {
    std::env::var_os("MEMORY_BENCH_EXPORT").is_some_and(|v| v == "1")
}

/// One size with `bin` (named `label` in the output): plan, then apply; the apply's peak RSS.
fn one_size(bin: &str, label: &str, contacts: u32, interactions: u32) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let dataset = common::dataset_with_subjects(dir.path(), contacts, interactions);
    let sim = Sim::serve(&dataset);
    std::fs::write(
        dir.path().join("ucs-gdpr.yaml"),
        format!(
            "apiVersion: ucs-gdpr/v1\nkind: Environments\nenvironments:\n  bench:\n    \
             type: rest\n    tenant: 101\n    hmacKeyEnv: UCS_GDPR_BENCH_HMAC\n    ucs:\n      \
             url: {0}/\n    contextServices:\n      url: {0}/\n    gms:\n      url: {0}/\n    \
             concurrency: 16\n    policy:\n      requireApproval: false\n      \
             auditLog: audit.jsonl\n      exports: exports\n",
            sim.url
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("request.yaml"),
        format!(
            "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-BENCH-MEMORY\n  \
             receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: bench\nspec:\n  \
             environment: bench\n  runbook: batch-delete\n  subjectsFile: ids.csv\n{}  \
             delete: {{ confirm: true }}\n",
            if exporting() {
                "  export:\n    dataSources: [main, archive]\n    attachments: omit\n"
            } else {
                "  exportWaiver: { reason: \"retention purge: past its retention period\" }\n"
            }
        ),
    )
    .unwrap();

    let plan = measured(
        bin,
        dir.path(),
        &sim,
        &["plan", "request.yaml", "--env-file", "ucs-gdpr.yaml", "--out", "plan.json", "--count"],
    );
    let plan_bytes = std::fs::metadata(dir.path().join("plan.json")).map_or(0, |m| m.len());
    let load_between = load_average();
    let apply =
        measured(bin, dir.path(), &sim, &["apply", "plan.json", "--env-file", "ucs-gdpr.yaml"]);
    drop(sim);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{label:>8} {contacts:>7} contacts x {interactions}: plan {:7.2} s, peak {:6.1} MiB, file \
         {:.1} MB (exit {}) | apply {:7.2} s, peak {:6.1} MiB (exit {}) | load average before \
         apply {load_between}",
        plan.seconds,
        mib(plan.kib),
        plan_bytes as f64 / 1_000_000.0,
        plan.code,
        apply.seconds,
        mib(apply.kib),
        apply.code,
    );
    let per = |cpu: f64| cpu / f64::from(contacts) * 1e6;
    println!(
        "{:>16} CPU per contact: plan {:.0} µs (simulator {:.0} µs) | apply {:.0} µs (simulator \
         {:.0} µs)",
        "",
        per(plan.cpu),
        per(plan.sim_cpu),
        per(apply.cpu),
        per(apply.sim_cpu),
    );
    apply.kib
}

fn main() {
    let sizes: Vec<u32> = std::env::var("MEMORY_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,100000".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let interactions: u32 =
        std::env::var("MEMORY_BENCH_INTERACTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    println!(
        "peak RSS (max resident set, /usr/bin/time) of the release binary planning and applying \
         a batch-delete ({}) against `sim serve` in its own process",
        if exporting() { "exporting main and archive into a bag" } else { "export waived" }
    );
    println!(
        "{} cores, load average at start: {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    // `MEMORY_BENCH_BASELINE=path/to/ucs-gdpr`: each size also with that binary (another
    // build), first, in the same run, and the ratio of the apply peaks.
    let baseline = std::env::var("MEMORY_BENCH_BASELINE").ok().filter(|b| !b.is_empty());
    for contacts in sizes {
        let before = baseline.as_deref().map(|b| one_size(b, "baseline", contacts, interactions));
        let after = one_size(BIN, "this", contacts, interactions);
        if let Some(before) = before {
            println!(
                "{contacts:>7} contacts: apply peak this / baseline = {:.2}",
                after as f64 / before.max(1) as f64
            );
        }
    }
    println!("load average at end: {}", load_average());
}
