//! The README's examples stay true: its command blocks are run as written, with the installed
//! binary's name resolving to the one cargo built.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::repo_path;

/// The lines of the first ```sh block after `heading`, comments and blank lines dropped.
fn sh_block(heading: &str) -> Vec<String> {
    let readme = fs::read_to_string(repo_path("README.md")).unwrap();
    let section = &readme[readme.find(heading).unwrap_or_else(|| panic!("no {heading:?}"))..];
    let block = &section[section.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    block
        .lines()
        .map(|line| line.split(" # ").next().unwrap().trim().to_owned())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "out" {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A clone's root: examples/ (without a previous run's out/) and runbooks/, and `ucs-gdpr` on
/// the PATH as `cargo install` puts it. Returns the folder and the PATH to run lines with.
fn clone_with_binary() -> (tempfile::TempDir, String) {
    let clone = tempfile::tempdir().unwrap();
    copy_dir(&repo_path("examples"), &clone.path().join("examples"));
    copy_dir(&repo_path("runbooks"), &clone.path().join("runbooks"));
    let bin = clone.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let shim = bin.join("ucs-gdpr");
    fs::write(&shim, format!("#!/bin/sh\nexec '{}' \"$@\"\n", env!("CARGO_BIN_EXE_ucs-gdpr")))
        .unwrap();
    fs::set_permissions(&shim, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    (clone, path)
}

/// Runs one README line in `dir` with `path`, as a shell would.
fn run_line(line: &str, dir: &Path, path: &str) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn the_scripts_examples_run_as_written_from_the_clone() {
    let lines = sh_block("## The Genesys scripts' interface");
    assert_eq!(lines.len(), 5, "{lines:?}");
    let (clone, path) = clone_with_binary();
    for line in &lines {
        let output = run_line(line, clone.path(), &path);
        assert!(output.status.success(), "`{line}`:\n{}", crate::transcript(&output));
    }
    // The examples did what their comments say: the two contacts' files are here, and the
    // last line's erasure was applied.
    for id in ["0001SaD2PVY4312K", "0001SaD2PVY4315J"] {
        assert!(clone.path().join(format!("contact-{id}.json")).is_file(), "{id}");
    }
    let audit = fs::read_to_string(clone.path().join("examples/out/audit.jsonl")).unwrap();
    assert!(audit.contains(r#""step":"delete""#), "no delete in the audit log");
}

/// The getting-started commands and the auditor's examples run as written from a clone: the
/// first command (with the installed binary in place of `cargo run --`), then the trail check
/// it names, then every line of the "Auditing" section against the log the first one wrote.
#[test]
fn the_getting_started_and_auditing_examples_run_as_written_from_the_clone() {
    let mut lines: Vec<String> = sh_block("## Getting started")
        .into_iter()
        .filter(|line| line != "cargo test")
        .map(|line| line.replace("cargo run -- ", "ucs-gdpr "))
        .collect();
    // The block after "To have `ucs-gdpr` on the PATH": its install line is the shim's job.
    let install = sh_block("To have `ucs-gdpr` on the PATH");
    assert_eq!(install.first().map(String::as_str), Some("cargo install --path . --locked"));
    lines.extend(install.into_iter().skip(1));
    let auditing = sh_block("## Auditing");
    assert!(auditing.len() >= 3, "{auditing:?}");
    lines.extend(auditing);
    let (clone, path) = clone_with_binary();
    for line in &lines {
        let output = run_line(line, clone.path(), &path);
        assert!(output.status.success(), "`{line}`:\n{}", crate::transcript(&output));
        assert!(!output.stdout.is_empty(), "`{line}` printed nothing");
    }
}
