//! What the benchmark binaries share: the simulator in its own process and the load average.
//! Each bench includes it with `mod common;` and uses part of it.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The release binary the benches run.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_ucs-gdpr");

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
pub(crate) fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The simulator in its own process (`ucs-gdpr sim serve`); stopped with SIGTERM when dropped
/// (so it removes its state folder).
pub(crate) struct Sim {
    pub(crate) child: Child,
    /// Its base URL, without a trailing `/`.
    pub(crate) url: String,
}

impl Sim {
    /// Serves `dataset` on a free loopback port.
    pub(crate) fn serve(dataset: &Path) -> Sim {
        Self::serve_with(dataset, &["--listen", "127.0.0.1:0"])
    }

    /// Serves `dataset` with these `sim serve` options (which name `--listen`).
    pub(crate) fn serve_with(dataset: &Path, options: &[&str]) -> Sim {
        let mut child = Command::new(BIN)
            .args(["sim", "serve"])
            .args(options)
            .arg("--dataset")
            .arg(dataset)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut url = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut url).unwrap();
        Sim { child, url: url.trim().trim_end_matches('/').to_owned() }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system, every thread) a process has used so far, in seconds, from
/// `/proc/<pid>/stat` (clock ticks of 10 ms); `None` where there is no such file.
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    #[allow(clippy::cast_precision_loss)]
    Some((user + system) as f64 / 100.0)
}

impl Sim {
    /// The CPU time the simulator process has used so far, in seconds.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.child.id().to_string()).unwrap_or(f64::NAN)
    }
}

/// What `/usr/bin/time` said of one run of the binary.
pub(crate) struct Timed {
    /// Wall clock.
    pub(crate) seconds: f64,
    /// Maximum resident set size.
    pub(crate) kib: u64,
    /// User + system CPU seconds.
    pub(crate) cpu: f64,
    /// Exit code (-1: killed).
    pub(crate) code: i32,
}

/// Runs `bin` with `args` in `dir` under `/usr/bin/time` (its report in `dir/time.txt`), output
/// discarded, with the benches' subject key.
pub(crate) fn timed(bin: &str, dir: &Path, args: &[&str]) -> Timed {
    let report = dir.join("time.txt");
    let started = std::time::Instant::now();
    let status = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M %U %S")
        .arg("-o")
        .arg(&report)
        .arg(bin)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("UCS_GDPR_BENCH_HMAC", "a-bench-key-that-is-at-least-32-bytes-long")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&report).unwrap();
    let fields: Vec<&str> = text.lines().last().unwrap_or("").split_whitespace().collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    Timed {
        seconds,
        kib: fields.first().and_then(|f| f.parse().ok()).unwrap_or(0),
        cpu: number(1) + number(2),
        code: status.code().unwrap_or(-1),
    }
}

/// Generates a dataset of `contacts` × `interactions` (`ucs-gdpr sim generate`, seed 42, no
/// attachment bytes) at `dir/dataset.json`, without pending callbacks (they would block the
/// plan and the delete), and writes its contact ids, one a line, to `dir/ids.csv` (a subjects
/// file). Returns the dataset's path.
pub(crate) fn dataset_with_subjects(
    dir: &Path,
    contacts: u32,
    interactions: u32,
) -> std::path::PathBuf {
    let dataset = dir.join("dataset.json");
    let generated = Command::new(BIN)
        .args(["sim", "generate", "--seed", "42", "--attachment-bytes", "0"])
        .args(["--contacts", &contacts.to_string()])
        .args(["--interactions", &interactions.to_string()])
        .arg("--out")
        .arg(&dataset)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(generated.success());
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dataset).unwrap()).unwrap();
    let mut ids = String::new();
    for contact in value["contacts"].as_array_mut().unwrap() {
        contact["callbacks"] = serde_json::json!([]);
        ids.push_str(contact["id"].as_str().unwrap());
        ids.push('\n');
    }
    std::fs::write(&dataset, serde_json::to_vec(&value).unwrap()).unwrap();
    drop(value);
    std::fs::write(dir.join("ids.csv"), ids).unwrap();
    dataset
}
