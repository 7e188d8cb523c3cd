//! `ucs-gdpr sim`: serve and generate.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Exit;
use super::failure::Failure;
use crate::sim::{FaultOptions, GenerateOptions, SimOptions, Simulator};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Serve a dataset as UCS, Context Services and GMS on a loopback port.
    ///
    /// Prints the base URL on stdout, then serves until Ctrl-C.
    Serve(ServeArgs),
    /// Write a synthetic dataset (JSON) for benchmarks.
    Generate(GenerateArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The dataset file (YAML or JSON).
    #[arg(long)]
    dataset: PathBuf,
    /// The address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8889")]
    listen: SocketAddr,
    /// Keep the databases in this folder across restarts (default: fresh each start).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Seed of every injected fault and jitter.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Latency added to every call, in milliseconds.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    latency_ms: f64,
    /// Extra random latency, up to this many milliseconds.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    jitter_ms: f64,
    /// Share of calls answered 503 (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    error_rate: f64,
    /// Share of calls never answered (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    timeout_rate: f64,
    /// Share of calls whose connection is dropped (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    reset_rate: f64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// How many contacts.
    #[arg(long)]
    contacts: u32,
    /// Interactions per contact (every fourth in the archive).
    #[arg(long)]
    interactions: u32,
    /// Size of each interaction's attachment in bytes (0: none; above 4 KiB, files beside).
    #[arg(long, default_value_t = 0)]
    attachment_bytes: u64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The dataset file to write.
    #[arg(long)]
    out: PathBuf,
}

fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err("expected a number of milliseconds, 0 or more".to_owned()),
    }
}

fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err("expected a share between 0 and 1".to_owned()),
    }
}

pub(crate) fn run(command: &Command) -> Result<Exit, Failure> {
    match command {
        Command::Serve(args) => serve(args),
        Command::Generate(args) => generate(args),
    }
}

fn serve(args: &ServeArgs) -> Result<Exit, Failure> {
    if args.error_rate + args.timeout_rate + args.reset_rate > 1.0 {
        return Err(Failure::usage(
            "--error-rate, --timeout-rate and --reset-rate add up to more than 1",
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::internal(format!("cannot start the async runtime: {error}")))?;
    let options = SimOptions {
        dataset: args.dataset.clone(),
        state_dir: args.state_dir.clone(),
        listen: args.listen,
        faults: FaultOptions {
            seed: args.seed,
            latency: Duration::from_secs_f64(args.latency_ms / 1000.0),
            jitter: Duration::from_secs_f64(args.jitter_ms / 1000.0),
            error_rate: args.error_rate,
            timeout_rate: args.timeout_rate,
            reset_rate: args.reset_rate,
            script: Vec::new(),
            contact_script: Vec::new(),
        },
    };
    runtime.block_on(async {
        let sim = Simulator::start(options)
            .await
            .map_err(|error| Failure::new(format!("cannot start the simulator: {error}")))?;
        println!("{}", sim.base_url());
        let _ = std::io::stdout().flush();
        eprintln!(
            "serving {} (state in {}); Ctrl-C to stop",
            args.dataset.display(),
            sim.state_dir().display()
        );
        let stop = sim.stop_handle();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminated() => {}
            () = stop.cancelled() => {}
        }
        let conformance = sim.conformance();
        sim.shutdown().await;
        // What a rehearsal against the simulator must show before a live run: which requests
        // Genesys's UCS would have refused or answered dangerously (never a value).
        if conformance.is_clean() {
            eprintln!("conformance: every UCS request followed the documentation");
        } else {
            eprintln!(
                "conformance: {} kind(s) of non-conforming request, {} dangerous, {} contact(s) \
                 created by identification",
                conformance.non_conforming.len(),
                conformance.dangerous.len(),
                conformance.contacts_created
            );
            for entry in conformance.non_conforming.iter().chain(&conformance.dangerous) {
                eprintln!("  {}: {} (x{})", entry.operation, entry.problem, entry.count);
            }
        }
        Ok(Exit::Success)
    })
}

/// Resolves on SIGTERM (so `kill` and service managers stop the simulator cleanly, removing a
/// temporary state folder); never elsewhere.
async fn terminated() {
    #[cfg(unix)]
    if let Ok(mut signal) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        signal.recv().await;
        return;
    }
    std::future::pending::<()>().await;
}

fn generate(args: &GenerateArgs) -> Result<Exit, Failure> {
    let options = GenerateOptions {
        contacts: args.contacts,
        interactions: args.interactions,
        attachment_bytes: args.attachment_bytes,
        seed: args.seed,
        out: args.out.clone(),
    };
    let files = crate::sim::generate(&options)
        .map_err(|error| Failure::new(format!("cannot generate the dataset: {error}")))?;
    println!(
        "wrote {} ({} contacts, {} interactions each, {files} attachment files beside it)",
        args.out.display(),
        args.contacts,
        args.interactions
    );
    Ok(Exit::Success)
}
