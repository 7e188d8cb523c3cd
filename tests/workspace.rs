//! The environments file of a test's workspace, written one way for every area.
//!
//! Each area keeps its own workspace type (what it writes beside the file differs); what they
//! share is the file: one environment, its audit log at `audit.jsonl` and its exports in
//! `exports/` (both relative to the file, so inside the workspace), and whatever the test adds
//! to the environment and its policy.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// An environments file with one environment, to be written into a workspace folder.
pub(crate) struct EnvFile {
    name: String,
    /// The environment's lines (indented four spaces), `type` first.
    environment: String,
    /// The policy's lines (indented six spaces) before `auditLog` and `exports`.
    policy: String,
    /// Where the audit log and the exports go (relative to the file unless absolute).
    audit_log: String,
    exports: String,
}

impl EnvFile {
    /// An embedded environment `demo` (tenant 101) that runs the simulator on `dataset` and
    /// keeps its state in `state/`.
    pub(crate) fn embedded(dataset: &Path) -> Self {
        Self::with_lines(format!(
            "    type: embedded\n    tenant: 101\n    dataset: {}\n    stateDir: state\n",
            dataset.display()
        ))
    }

    /// [`EnvFile::embedded`] on the repository's demo dataset.
    pub(crate) fn demo() -> Self {
        Self::embedded(&crate::repo_path("examples/sim/demo.yaml"))
    }

    /// A REST environment `demo` (tenant 101) whose UCS is at `url`, with its HMAC key in the
    /// variable `hmac_key_env`.
    pub(crate) fn rest(url: &str, hmac_key_env: &str) -> Self {
        Self::with_lines(format!(
            "    type: rest\n    tenant: 101\n    ucs: {{ url: '{url}' }}\n    \
             hmacKeyEnv: {hmac_key_env}\n"
        ))
    }

    fn with_lines(environment: String) -> Self {
        EnvFile {
            name: "demo".into(),
            environment,
            policy: String::new(),
            audit_log: "audit.jsonl".into(),
            exports: "exports".into(),
        }
    }

    /// Names the environment `name` rather than `demo`.
    pub(crate) fn named(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }

    /// Adds one setting of the environment, such as `concurrency: 1`.
    pub(crate) fn setting(mut self, line: &str) -> Self {
        writeln!(self.environment, "    {line}").unwrap();
        self
    }

    /// Adds lines to the environment as they are (each already indented four spaces; empty
    /// for none), such as a `faults:` block.
    pub(crate) fn settings(mut self, lines: &str) -> Self {
        self.environment.push_str(lines);
        self
    }

    /// Adds lines to the policy as they are (each already indented six spaces), such as
    /// `      requireApproval: false\n`.
    pub(crate) fn policy(mut self, lines: &str) -> Self {
        self.policy.push_str(lines);
        self
    }

    /// Puts the audit log and the exports at these paths instead.
    pub(crate) fn outputs(mut self, audit_log: &Path, exports: &Path) -> Self {
        self.audit_log = audit_log.display().to_string();
        self.exports = exports.display().to_string();
        self
    }

    /// The file's text.
    pub(crate) fn text(&self) -> String {
        format!(
            "apiVersion: ucs-gdpr/v1\nkind: Environments\nenvironments:\n  {}:\n{}    policy:\n\
             {}      auditLog: {}\n      exports: {}\n",
            self.name, self.environment, self.policy, self.audit_log, self.exports
        )
    }

    /// Writes `dir/ucs-gdpr.yaml` and returns its path.
    pub(crate) fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ucs-gdpr.yaml");
        fs::write(&path, self.text()).unwrap();
        path
    }
}
