//! The command line's manners in a pipeline and a terminal: closed pipes, located errors.

use std::io::Read as _;
use std::process::{Command, Stdio};

use crate::repo;

/// Runs the real binary with its stdout a pipe whose reader has already gone away, as
/// `ucs-gdpr ARGS | head -0` does, and returns the exit code and what it said on stderr.
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ucs-gdpr"))
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (child.wait().unwrap().code(), stderr)
}

#[test]
fn a_closed_pipe_ends_quietly_with_the_pipeline_status() {
    for args in [
        &["schema", "request"][..],
        &["validate", "--format", "json", "examples/invalid"][..],
        &[
            "plan",
            "--env-file",
            "examples/ucs-gdpr.yaml",
            "examples/requests/1-access-request.yaml",
        ][..],
        &["--help"][..],
    ] {
        let (code, stderr) = with_closed_stdout(args);
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        if args != ["--help"] {
            assert_eq!(code, Some(ucs_gdpr::cli::BROKEN_PIPE_STATUS), "{args:?}: {stderr}");
        }
    }
}
