//! Exporting one contact with 512 MiB of attachments: throughput and the exporter's peak memory.
//!
//! Run with `cargo bench --bench export` (`EXPORT_BENCH_MIB=64` for a quicker run). The
//! simulator runs in a separate process (`ucs-gdpr sim serve` on a generated dataset: one
//! contact, 8 interactions with one 64 MiB attachment each, two of them in the archive), so
//! the figure is the exporter's own memory: this process's peak resident set (`VmHWM` from
//! `/proc/self/status`), which holds the tokio runtime, the REST client and the export.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::indexing_slicing
)]

use std::process::{Command, Stdio};
use std::time::Instant;

use ucs_gdpr::export::{Bag, ExportOptions, export_contact};
use ucs_gdpr::ucs::{ClientConfig, ContactId, RestClient};

mod common;

use common::{BIN, Sim};
const INTERACTIONS: u64 = 8;

/// A kilobyte figure from `/proc/self/status` (`VmHWM`, `VmRSS`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    let mib: u64 =
        std::env::var("EXPORT_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    let total = mib * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("export-bench.json");
    let generated = Command::new(BIN)
        .args(["sim", "generate", "--contacts", "1", "--seed", "42"])
        .args(["--interactions", &INTERACTIONS.to_string()])
        .args(["--attachment-bytes", &(total / INTERACTIONS).to_string()])
        .arg("--out")
        .arg(&dataset)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(generated.success());
    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dataset).unwrap()).unwrap();
    let contact = ContactId::new(value["contacts"][0]["id"].as_str().unwrap()).unwrap();
    let sim = Sim::serve(&dataset);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let before_kib = status_kib("VmHWM:");
    let (seconds, export) = runtime.block_on(async {
        let client = RestClient::new(ClientConfig::new(sim.url.clone())).unwrap();
        let bag = Bag::open_or_create(&dir.path().join("exports"), "DSR-BENCH-0001").unwrap();
        let started = Instant::now();
        let export =
            export_contact(&client, &bag, &contact, &ExportOptions::default()).await.unwrap();
        (started.elapsed().as_secs_f64(), export)
    });
    let peak_kib = status_kib("VmHWM:");
    drop(sim);

    let inlined: u64 = export.sources.values().map(|s| s.bytes).sum();
    assert_eq!(inlined, total, "every attachment byte was exported");
    let written: u64 = export.files.iter().map(|f| f.size).sum();
    let mb = |bytes: u64| bytes as f64 / 1_000_000.0;
    println!("export of one contact, {INTERACTIONS} attachments, {mib} MiB in total");
    println!(
        "  time {seconds:.2} s (download, base64, sha256, write, fsync, rename, re-read, verify)"
    );
    println!("  attachment throughput {:.1} MB/s", mb(inlined) / seconds);
    println!("  file written {:.1} MB ({:.1} MB/s)", mb(written), mb(written) / seconds);
    println!(
        "  peak resident memory (VmHWM) {:.1} MiB; {:.1} MiB before the export",
        peak_kib as f64 / 1024.0,
        before_kib as f64 / 1024.0
    );
}
