//! Audit trail throughput: appends (intents fsynced one by one, records group-committed) and
//! verification. Run with `cargo bench --bench audit`; the figures go in the README.
//!
//! Plain `std::time::Instant`, one run per figure: these are orders of magnitude for a
//! capacity decision, not statistics. Beside the wall-clock rate each line gives the rate per
//! second actually spent on a CPU (Linux `schedstat`), which stays meaningful on a machine
//! shared with other work; fsync waits are off-CPU, so for fsynced intents only the wall
//! clock counts.

// A benchmark binary reports by printing and stops at the first failure.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use ucs_gdpr::audit::{
    Actor, AuditLog, ContactId, Detail, Entry, Event, Outcome, RequestId, Sha256Hex, StepId,
    VerifyOptions, verify_file, verify_file_baseline,
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

/// Time this thread has spent on a CPU, when the kernel says (Linux).
fn on_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// CPU time of the whole process, every thread included (Linux `/proc/self/stat`, in
/// clock ticks of 10 ms): for the parallel verify.
fn process_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

/// A measurement: wall clock and on-CPU time since `start`.
struct Clock {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Clock {
    fn start() -> Self {
        Self { wall: Instant::now(), cpu: on_cpu() }
    }

    fn rate(&self, count: u64) -> String {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = match (self.cpu, on_cpu()) {
            (Some(before), Some(after)) => {
                let cpu = (after - before).as_secs_f64();
                format!("; on CPU {cpu:>7.3} s = {:>8.0}/s", count as f64 / cpu)
            }
            _ => String::new(),
        };
        format!("{count:>9} records in {wall:>7.3} s = {:>8.0}/s{cpu}", count as f64 / wall)
    }
}

fn intents_fsynced(path: &Path, count: u64) {
    let mut log = AuditLog::open(path).unwrap();
    let clock = Clock::start();
    for index in 0..count {
        log.append_intent(entry(index, Event::StepIntent)).unwrap();
    }
    let measured = clock.rate(count);
    log.finish().unwrap();
    println!("append, each an fsynced intent:     {measured}");
}

fn group_committed(path: &Path, count: u64) {
    let mut log = AuditLog::open(path).unwrap();
    let clock = Clock::start();
    for index in 0..count {
        log.append(entry(index, Event::StepDone)).unwrap();
    }
    log.finish().unwrap();
    println!("append, group-committed, checkpoint: {}", clock.rate(count));
}

/// The floors under verification, one thread: reading the log in 1 MiB chunks, and one
/// SHA-256 over all of its bytes (the hash verify computes per line covers nearly the same
/// bytes, plus an 18-byte prefix and the padding of each line's last block).
fn floors(path: &Path, count: u64) {
    use std::io::Read;
    let mut buffer = vec![0_u8; 1 << 20];
    let (wall, mut bytes) = (Instant::now(), 0_u64);
    let mut file = std::fs::File::open(path).unwrap();
    loop {
        let read = file.read(&mut buffer).unwrap();
        if read == 0 {
            break;
        }
        bytes += read as u64;
    }
    let read = wall.elapsed().as_secs_f64();
    let log = std::fs::read(path).unwrap();
    let wall = Instant::now();
    let digest = Sha256::digest(&log);
    let hashed = wall.elapsed().as_secs_f64();
    assert_eq!(bytes, log.len() as u64);
    assert_ne!(digest.as_slice(), [0; 32]);
    let mb = bytes as f64 / 1e6;
    println!(
        "floor, read ({:>4.0} MB, one thread):      {count:>9} records in {read:>7.3} s = {:>8.0}/s ({:.0} MB/s)",
        mb,
        count as f64 / read,
        mb / read
    );
    println!(
        "floor, sha256 of the bytes (one thread): {count:>9} records in {hashed:>7.3} s = {:>8.0}/s ({:.0} MB/s)",
        count as f64 / hashed,
        mb / hashed
    );
}

fn verify(path: &Path, count: u64) {
    println!("load average {}", load());
    floors(path, count);
    let size = std::fs::metadata(path).unwrap().len() / 1_000_000;
    let (wall, cpu) = (Instant::now(), process_cpu());
    let old = verify_file_baseline(path, &VerifyOptions::default()).unwrap();
    let (old_wall, old_cpu) = (wall.elapsed().as_secs_f64(), cpu_since(cpu));
    assert!(old.ok && old.records == count);
    println!("verify, before ({size:>4} MB):          {}", rates(count, old_wall, old_cpu));
    // Three runs: on a shared machine one run can lose its cores for a while.
    for _ in 0..3 {
        let (wall, cpu) = (Instant::now(), process_cpu());
        let report = verify_file(path, &VerifyOptions::default()).unwrap();
        let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_since(cpu));
        assert!(report.ok && report.records == count);
        assert_eq!(report, old);
        let ratio = match (old_cpu, cpu) {
            (Some(old_cpu), Some(cpu)) => format!(", CPU {:.1}x", old_cpu / cpu),
            _ => String::new(),
        };
        println!(
            "verify ({size:>4} MB):                   {}; {:.1}x before (wall{ratio})",
            rates(count, wall, cpu),
            old_wall / wall
        );
    }
}

/// The CPU time of the whole process since `before`, every thread included.
fn cpu_since(before: Option<Duration>) -> Option<f64> {
    Some((process_cpu()? - before?).as_secs_f64())
}

/// Records per second of wall clock and per CPU-second over all threads.
fn rates(count: u64, wall: f64, cpu: Option<f64>) -> String {
    let cpu = cpu.map_or_else(String::new, |cpu| {
        format!("; CPU, all threads {cpu:>6.2} s = {:>8.0}/s", count as f64 / cpu)
    });
    format!("{count:>9} records in {wall:>7.3} s = {:>8.0}/s{cpu}", count as f64 / wall)
}

fn main() {
    // AUDIT_BENCH_DIR picks the file system to measure (fsync cost depends on it).
    let base = std::env::var_os("AUDIT_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    println!("audit trail benchmarks in {}; load average {}", dir.path().display(), load());
    intents_fsynced(&dir.path().join("intents.jsonl"), 2_000);
    for count in [100_000, 1_000_000] {
        let path = dir.path().join(format!("log-{count}.jsonl"));
        group_committed(&path, count);
        verify(&path, count);
    }
    println!("load average at the end {}", load());
}

/// The load average over 1, 5 and 15 minutes (Linux).
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}
