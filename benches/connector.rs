//! N concurrent reads through the real `RestClient` against the simulator at an injected
//! latency L, reported against the latency-bound ideal (N / L). Plain `Instant` timing.
//!
//! `cargo bench --bench connector` (optionally `-- <seconds per case>`).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ucs_gdpr::sim::{FaultOptions, SimOptions, Simulator};
use ucs_gdpr::ucs::{ClientConfig, ContactId, RestClient, Ucs};

async fn case(concurrency: usize, latency: Duration, seconds: f64) -> (f64, f64, f64) {
    let mut options =
        SimOptions::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/sim/demo.yaml"));
    options.faults = FaultOptions { latency, ..FaultOptions::default() };
    let sim = Simulator::start(options).await.expect("simulator");
    let mut config = ClientConfig::new(sim.base_url());
    config.concurrency = concurrency;
    let client = RestClient::new(config).expect("client");
    let contact = ContactId::new("0001SaD2PVY4312K").expect("id");

    // Warm up: open the connections.
    let warm: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, contact) = (client.clone(), contact.clone());
            tokio::spawn(async move { client.get_contact(&contact).await.map(drop) })
        })
        .collect();
    for task in warm {
        task.await.expect("join").expect("warm-up read");
    }

    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, contact, done) = (client.clone(), contact.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    client.get_contact(&contact).await.expect("read");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("join");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let calls = done.load(Ordering::Relaxed) as f64;
    let rate = calls / elapsed;
    let ideal =
        if latency.is_zero() { f64::NAN } else { concurrency as f64 / latency.as_secs_f64() };
    sim.shutdown().await;
    (rate, ideal, rate / ideal)
}

fn main() {
    let seconds: f64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3.0);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "GetAttributes reads through RestClient -> simulator (loopback), {seconds} s per case"
    );
    println!(
        "{} cores, load average at start: {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "{:>11} {:>10} {:>12} {:>12} {:>9}",
        "concurrency", "latency", "calls/s", "ideal", "of ideal"
    );
    for (concurrency, latency_ms) in
        [(32, 0.0), (1, 2.0), (8, 2.0), (32, 2.0), (32, 10.0), (64, 2.0)]
    {
        let latency = Duration::from_secs_f64(latency_ms / 1000.0);
        let (rate, ideal, share) = runtime.block_on(case(concurrency, latency, seconds));
        println!(
            "{concurrency:>11} {:>8.1}ms {rate:>12.0} {ideal:>12.0} {:>8.1}%",
            latency_ms,
            share * 100.0
        );
    }
}
