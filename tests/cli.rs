//! The command line's manners in a pipeline and a terminal: closed pipes, located errors.

use std::io::Read as _;
use std::process::{Command, Stdio};

use crate::{repo, transcript, ucs_gdpr};

/// Runs the real binary with its stdout a pipe whose reader has already gone away, as
/// `ucs-gdpr ARGS | head -0` does, and returns the exit code and what it said on stderr.
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    // The reader is closed before the child starts: closing it after the spawn raced the
    // child, which could write a short output into the pipe's buffer first and exit 0.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ucs-gdpr"))
        .args(args)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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

#[test]
fn every_command_s_long_help_has_examples_that_run_and_one_global_options_block() {
    let commands = ["", "validate", "schema", "plan", "show", "approve", "apply", "export"];
    let commands = commands.into_iter().chain(["delete", "status", "audit", "sim", "completions"]);
    let commands = commands.chain(["man", "audit verify", "audit show", "audit report"]);
    let commands = commands.chain(["audit keygen", "receipt", "receipt merge"]);
    let mut runnable = Vec::new();
    for command in commands {
        let output =
            crate::ucs_gdpr().args(command.split_whitespace()).arg("--help").output().unwrap();
        let help = String::from_utf8(output.stdout).unwrap();
        assert!(help.contains("\nExamples"), "`{command} --help` has no examples:\n{help}");
        assert!(help.contains("Global options:\n      --log-format"), "{command}:\n{help}");
        assert_eq!(help.matches("--log-format").count(), 1, "{command}:\n{help}");
        runnable.extend(
            help.lines()
                .filter_map(|line| line.strip_prefix("  "))
                .filter(|line| line.starts_with("ucs-gdpr ") && line.contains("examples/"))
                .filter(|line| !line.contains("sim serve"))
                .map(str::to_owned),
        );
    }
    assert!(runnable.len() >= 12, "{runnable:?}");
    // In a clone of its own, in order: the main examples apply before the audit is verified.
    let clone = tempfile::tempdir().unwrap();
    crate::readme::copy_dir(&crate::repo_path("examples"), &clone.path().join("examples"));
    crate::readme::copy_dir(&crate::repo_path("runbooks"), &clone.path().join("runbooks"));
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ucs-gdpr")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for line in &runnable {
        let output = Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(clone.path())
            .env("PATH", &path)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(output.status.success(), "`{line}`:\n{}", crate::transcript(&output));
    }
}

#[test]
fn completions_and_man_pages_come_from_the_command_definitions() {
    let run = |args: &[&str]| {
        let output = crate::ucs_gdpr().args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", crate::transcript(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    for word in ["validate", "plan", "approve", "apply", "--detailed-exitcode", "--log-format"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ucs-gdpr.bash");
    std::fs::write(&script, &bash).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    assert!(run(&["completions", "zsh"]).starts_with("#compdef ucs-gdpr"));
    assert!(run(&["completions", "fish"]).contains("complete -c ucs-gdpr"));

    let page = run(&["man"]);
    assert!(page.contains(".TH ucs-gdpr 1"), "{page}");
    for word in ["validate", "plan", "apply", "completions"] {
        assert!(page.contains(word), "the man page lacks {word}");
    }
    let pages = dir.path().join("man1");
    run(&["man", "--out", pages.to_str().unwrap()]);
    for name in ["ucs-gdpr.1", "ucs-gdpr-plan.1", "ucs-gdpr-audit-verify.1"] {
        let text =
            std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name}");
    }
}

#[test]
fn the_simulator_s_commands_fail_in_the_one_error_form() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let served = ucs_gdpr().args(["sim", "serve", "--dataset"]).arg(&missing).output().unwrap();
    assert_eq!(served.status.code(), Some(1), "{}", transcript(&served));
    assert_eq!(
        String::from_utf8_lossy(&served.stderr),
        format!(
            "error: cannot start the simulator: cannot read dataset {}: No such file or directory \
             (os error 2)\n",
            missing.display()
        )
    );
    let nowhere = dir.path().join("no/such/folder/dataset.json");
    let generated = ucs_gdpr()
        .args(["sim", "generate", "--contacts", "1", "--interactions", "1", "--out"])
        .arg(&nowhere)
        .output()
        .unwrap();
    assert_eq!(generated.status.code(), Some(1), "{}", transcript(&generated));
    assert!(
        String::from_utf8_lossy(&generated.stderr)
            .starts_with("error: cannot generate the dataset: cannot write "),
        "{}",
        transcript(&generated)
    );
}
