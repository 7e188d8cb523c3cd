//! The integration tests: one binary that runs the real `ucs-gdpr` executable and the library
//! against the real simulator, one module per area.

// Test code states its expectations with unwrap and panics on surprises; that is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod apply;
mod approval;
mod audit;
mod cli;
mod contract;
mod export;
mod html;
mod infomart;
mod plan;
mod progress;
mod provision;
mod readme;
mod register;
mod runbook;
mod scripts;
mod shards;
mod sim;
mod ucs;
mod validate;
mod workspace;

use std::path::{Path, PathBuf};

/// The repository root: examples and runbooks are found from here.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path inside the repository.
fn repo_path(relative: &str) -> PathBuf {
    repo().join(relative)
}

/// The real `ucs-gdpr` binary, run from the repository root with colours off, so output is what
/// a CI log shows.
fn ucs_gdpr() -> assert_cmd::Command {
    let mut command = assert_cmd::cargo::cargo_bin_cmd!("ucs-gdpr");
    // A shard's index and count come from the environment too (a Kubernetes Indexed Job's):
    // tests say theirs.
    command
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("UCS_GDPR_SHARDS");
    command
}

/// A plan file's bytes (JSON Lines: a header, then a line per subject and per contact) as one
/// JSON value, `{"planId": …, "body": {…}}` with every record in `body`, read (and checked
/// against its id) by the library.
fn plan_value(bytes: &[u8]) -> Result<serde_json::Value, String> {
    let plan = ucs_gdpr::plan::Plan::from_json(bytes)?;
    serde_json::to_value(plan).map_err(|e| e.to_string())
}

/// What a run printed, stdout then stderr, as a person would read it.
fn transcript(output: &std::process::Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        output.status.code().map_or_else(|| "signal".to_owned(), |c| c.to_string()),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every personal value of the demo dataset (names, e-mail addresses, phone numbers, subjects,
/// message texts), for the scans that prove none of them leaks.
fn demo_personal_values() -> Vec<String> {
    use serde_json::Value;
    const PERSONAL: [&str; 11] = [
        "FirstName",
        "LastName",
        "EmailAddress",
        "PhoneNumber",
        "text",
        "subject",
        "phoneNumber",
        "first_name",
        "last_name",
        "email",
        "contactKey",
    ];
    fn collect(value: &Value, key: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => map.iter().for_each(|(k, v)| collect(v, k, out)),
            Value::Array(items) => items.iter().for_each(|v| collect(v, key, out)),
            Value::String(s) if PERSONAL.contains(&key) => out.push(s.clone()),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(repo_path("examples/sim/demo.yaml")).unwrap();
    let dataset = ucs_gdpr::manifest::yaml::parse_value(&text).unwrap();
    let mut out = Vec::new();
    collect(&dataset, "", &mut out);
    out
}
