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
mod audit;
mod export;
mod infomart;
mod plan;
mod scripts;
mod sim;
mod ucs;
mod validate;

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
    command.current_dir(repo()).env("NO_COLOR", "1").env_remove("RUST_LOG");
    command
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
