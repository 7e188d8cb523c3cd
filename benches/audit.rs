//! Audit trail throughput: appends (intents fsynced one by one, records group-committed) and
//! verification. Run with `cargo bench --bench audit`; the figures go in the README.
//!
//! Plain `std::time::Instant`, one run per figure: these are orders of magnitude for a
//! capacity decision, not statistics.

// A benchmark binary reports by printing and stops at the first failure.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use ucs_gdpr::audit::{
    Actor, AuditLog, ContactId, Detail, Entry, Event, Outcome, RequestId, Sha256Hex, StepId,
    VerifyOptions, verify_file,
};

fn entry(index: u64, event: Event) -> Entry {
    let detail = Detail { attempt: Some(1), bytes: Some(index * 17), ..Detail::default() };
    Entry::new(Actor::new("agent.smith").unwrap(), event)
        .request(RequestId::new("DSR-2026-0142").unwrap())
        .plan(Sha256Hex::digest(b"plan"))
        .step(StepId::new("export").unwrap())
        .contact(ContactId::new("0001SaD2PVY4312K").unwrap())
        .outcome(Outcome::Ok)
        .detail(detail)
}

fn rate(count: u64, elapsed: Duration) -> String {
    let per_second = count as f64 / elapsed.as_secs_f64();
    format!("{count:>9} records in {:>8.3} s = {per_second:>10.0} records/s", elapsed.as_secs_f64())
}

fn intents_fsynced(path: &Path, count: u64) {
    let mut log = AuditLog::open(path).unwrap();
    let start = Instant::now();
    for index in 0..count {
        log.append_intent(entry(index, Event::StepIntent)).unwrap();
    }
    let elapsed = start.elapsed();
    log.finish().unwrap();
    println!("append, every record an fsynced intent:  {}", rate(count, elapsed));
}

fn group_committed(path: &Path, count: u64) {
    let mut log = AuditLog::open(path).unwrap();
    let start = Instant::now();
    for index in 0..count {
        log.append(entry(index, Event::StepDone)).unwrap();
    }
    log.finish().unwrap();
    let elapsed = start.elapsed();
    println!("append, group-committed (+ checkpoint):  {}", rate(count, elapsed));
}

fn verify(path: &Path, count: u64) {
    let size = std::fs::metadata(path).unwrap().len();
    let start = Instant::now();
    let report = verify_file(path, &VerifyOptions::default()).unwrap();
    let elapsed = start.elapsed();
    assert!(report.ok && report.records == count);
    println!(
        "verify ({:>4} MB):                         {}",
        size / 1_000_000,
        rate(count, elapsed)
    );
}

fn main() {
    // AUDIT_BENCH_DIR picks the file system to measure (fsync cost depends on it).
    let base = std::env::var_os("AUDIT_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    println!("audit trail benchmarks in {}", dir.path().display());
    intents_fsynced(&dir.path().join("intents.jsonl"), 2_000);
    for count in [100_000, 1_000_000] {
        let path = dir.path().join(format!("log-{count}.jsonl"));
        group_committed(&path, count);
        verify(&path, count);
    }
}
