//! Peak memory of `ucs-gdpr receipt merge`: one batch-delete request applied as N shards (each
//! exporting into its own bag part), then the shards' receipts merged into one, by this build
//! and (`MERGE_BENCH_BASELINE=path/to/ucs-gdpr`) another, side by side on the same parts.
//!
//! `cargo bench --bench merge` (`MERGE_BENCH_CONTACTS=100000`, `MERGE_BENCH_SHARDS=4`,
//! `MERGE_BENCH_ROUNDS=2` by default; `MERGE_BENCH_DIR=folder` keeps the applied shards there
//! for a later run to merge again). A generated dataset (one interaction per contact, no
//! pending callbacks) served by `ucs-gdpr sim serve` in its own process, a `rest` environment on
//! it, a request naming every contact through a subjects file and exporting `main`; the plan
//! is made once and each shard applied once, one after the other, by this build. Then each
//! round merges with the baseline, then with this build, each under `/usr/bin/time` (maximum
//! resident set size), and checks both wrote the same receipt (but for `mergedAt`).

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

/// Runs `bin` with `args` in `dir` under `/usr/bin/time`: wall clock seconds, peak RSS in KiB,
/// exit code.
fn measured(bin: &str, dir: &Path, args: &[&str]) -> (f64, u64, i32) {
    let run = common::timed(bin, dir, args);
    (run.seconds, run.kib, run.code)
}

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The merged receipt at `path` without its `mergedAt`.
fn without_time(path: &Path) -> serde_json::Value {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    value.as_object_mut().unwrap().remove("mergedAt");
    value
}

fn main() {
    let contacts = env_number("MERGE_BENCH_CONTACTS", 100_000);
    let shards = env_number("MERGE_BENCH_SHARDS", 4);
    let rounds = env_number("MERGE_BENCH_ROUNDS", 2);
    let baseline = std::env::var("MERGE_BENCH_BASELINE").ok().filter(|b| !b.is_empty());
    println!(
        "peak RSS (max resident set, /usr/bin/time) of `receipt merge` of {shards} shards of a \
         {contacts}-contact batch-delete exporting main into each shard's bag part; {} cores, \
         load average at start: {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    // `MERGE_BENCH_DIR=folder`: the shards are applied there and kept; a later run that finds
    // them there (its `plan.json` and every shard's part) only merges again.
    let temp = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("MERGE_BENCH_DIR").map(std::path::PathBuf::from);
    let root = kept.unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&root).unwrap();
    let done = root.join("shards-applied");
    if !done.exists() {
        prepare(&root, contacts, shards);
        std::fs::write(&done, b"").unwrap();
    } else {
        println!("the shards applied before in {} are merged again", root.display());
    }
    merge_rounds(&root, rounds, baseline.as_deref());
}

/// Generates the dataset, plans and applies each shard in `dir`.
fn prepare(dir: &Path, contacts: u32, shards: u32) {
    let dataset = common::dataset_with_subjects(dir, contacts, 1);
    let sim = Sim::serve(&dataset);
    std::fs::write(
        dir.join("ucs-gdpr.yaml"),
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
        dir.join("request.yaml"),
        "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-BENCH-MERGE\n  \
         receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: bench\nspec:\n  \
         environment: bench\n  runbook: batch-delete\n  subjectsFile: ids.csv\n  export:\n    \
         dataSources: [main]\n    attachments: omit\n  delete: { confirm: true }\n",
    )
    .unwrap();
    let env = ["--env-file", "ucs-gdpr.yaml"];
    let (seconds, kib, code) =
        measured(BIN, dir, &[&["plan", "request.yaml", "--out", "plan.json"][..], &env].concat());
    assert_eq!(code, 0, "plan");
    println!("plan: {seconds:.1} s, peak {:.1} MiB", kib as f64 / 1024.0);
    for index in 0..shards {
        let shard = format!("{index}/{shards}");
        let (seconds, kib, code) =
            measured(BIN, dir, &[&["apply", "plan.json", "--shard", &shard][..], &env].concat());
        assert_eq!(code, 0, "apply --shard {shard}");
        println!("apply --shard {shard}: {seconds:.1} s, peak {:.1} MiB", kib as f64 / 1024.0);
    }
    drop(sim);
}

/// Merges the shards' parts in `dir` `rounds` times, with `baseline` then this build.
fn merge_rounds(dir: &Path, rounds: u32, baseline: Option<&str>) {
    let env = ["--env-file", "ucs-gdpr.yaml"];
    let merge = |bin: &str, label: &str, round: u32| -> u64 {
        let out = format!("merged-{label}.json");
        let load = load_average();
        let (seconds, kib, code) = measured(
            bin,
            dir,
            &[&["receipt", "merge", "plan.json", "--out", &out][..], &env].concat(),
        );
        assert_eq!(code, 0, "receipt merge ({label})");
        let bytes = std::fs::metadata(dir.join(&out)).map_or(0, |m| m.len());
        println!(
            "round {round} {label:>8}: receipt merge {seconds:6.2} s, peak {:6.1} MiB, receipt \
             {:.1} MB | load average before {load}",
            kib as f64 / 1024.0,
            bytes as f64 / 1_000_000.0
        );
        kib
    };
    for round in 1..=rounds {
        let before = baseline.map(|b| merge(b, "baseline", round));
        let after = merge(BIN, "this", round);
        if let Some(before) = before {
            assert_eq!(
                without_time(&dir.join("merged-this.json")),
                without_time(&dir.join("merged-baseline.json")),
                "the two builds merged different receipts"
            );
            println!(
                "round {round}: peak this / baseline = {:.2} (same receipt but for mergedAt)",
                after as f64 / before.max(1) as f64
            );
        }
    }
    println!("load average at end: {}", load_average());
}
