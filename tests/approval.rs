//! Approvals that expire, and the audit `approval` record: through the real binary against the
//! embedded simulator, in a folder of its own.

use std::fs;
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

use crate::workspace::EnvFile;
use crate::{transcript, ucs_gdpr};

const MAIN_ONLY: &str = "0002Ha7QB2MX000K";

/// An environment that requires one signed approval by `dpo.alice`, her key pair, and an
/// export-only request planned into `plan.json`.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("alice");
        ucs_gdpr().args(["audit", "keygen", "--out"]).arg(&keys).assert().success();
        EnvFile::demo()
            .policy(
                "      requireApproval: true\n      approvers: [dpo.alice]\n      \
                 approverKeys: { dpo.alice: alice/audit-signing.pub }\n",
            )
            .write(dir.path());
        fs::write(
            dir.path().join("request.yaml"),
            format!(
                "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-expiry\n  \
                 receivedAt: 2026-11-20T10:15:00Z\n  channel: letter\n  verifiedBy: agent.smith\n\
                 spec:\n  environment: demo\n  runbook: export-only\n  subjects:\n    \
                 - contactId: {MAIN_ONLY}\n  export: {{}}\n"
            ),
        )
        .unwrap();
        let ws = Workspace { dir };
        let planned =
            ws.run(&["plan", "request.yaml", "--out", "plan.json", "--env-file", "ucs-gdpr.yaml"]);
        assert!(planned.status.success(), "{}", transcript(&planned));
        ws
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        ucs_gdpr().current_dir(self.dir.path()).args(args).output().unwrap()
    }

    /// `approve plan.json --by dpo.alice --key … --out NAME` with `extra` flags.
    fn approve(&self, out: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "approve",
            "plan.json",
            "--by",
            "dpo.alice",
            "--key",
            "alice/audit-signing.key",
            "--out",
            out,
        ];
        args.extend(extra);
        self.run(&args)
    }

    fn apply(&self, approval: &str) -> Output {
        self.run(&["apply", "plan.json", "--approval", approval, "--env-file", "ucs-gdpr.yaml"])
    }

    fn log(&self) -> Vec<Value> {
        fs::read_to_string(self.path("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn approval(&self, name: &str) -> Value {
        serde_json::from_slice(&fs::read(self.path(name)).unwrap()).unwrap()
    }
}

fn refusals(log: &[Value]) -> Vec<&str> {
    log.iter()
        .filter(|r| r["event"] == "run.refused")
        .map(|r| r["detail"]["reason"].as_str().unwrap())
        .collect()
}

#[test]
fn an_expired_approval_is_refused_and_its_expiry_is_signed() {
    let ws = Workspace::new();

    // An expiry already past is refused when approving.
    let past = ws.approve("past.json", &["--expires", "2020-01-01T00:00:00Z"]);
    assert_eq!(past.status.code(), Some(64), "{}", transcript(&past));
    assert!(String::from_utf8_lossy(&past.stderr).contains("is not in the future"));
    let garbled = ws.approve("garbled.json", &["--expires", "next week"]);
    assert_eq!(garbled.status.code(), Some(64), "{}", transcript(&garbled));
    assert!(!ws.path("past.json").exists() && !ws.path("garbled.json").exists());

    // Signed with an expiry one second away, then applied after it passed.
    let approved = ws.approve("short.json", &["--expires", "1s"]);
    assert!(approved.status.success(), "{}", transcript(&approved));
    assert!(String::from_utf8_lossy(&approved.stdout).contains(", expires "));
    let short = ws.approval("short.json");
    let expires_at: jiff::Timestamp = short["expiresAt"].as_str().unwrap().parse().unwrap();
    while jiff::Timestamp::now() <= expires_at {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let output = ws.apply("short.json");
    let text = transcript(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("the approval by `dpo.alice` expired at"), "{text}");
    assert_eq!(refusals(&ws.log()), ["approval-expired"]);
    assert!(!ws.path("exports/DSR-expiry/data").exists(), "nothing exported: {text}");

    // Moving the expiry into the future breaks the signature: the expiry is signed.
    let mut tampered = short.clone();
    tampered["expiresAt"] = Value::from("2099-01-01T00:00:00Z");
    fs::write(ws.path("tampered.json"), serde_json::to_vec(&tampered).unwrap()).unwrap();
    let output = ws.apply("tampered.json");
    let text = transcript(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("does not verify"), "{text}");
    // Removing it does too.
    let mut removed = short;
    removed.as_object_mut().unwrap().remove("expiresAt");
    fs::write(ws.path("removed.json"), serde_json::to_vec(&removed).unwrap()).unwrap();
    let output = ws.apply("removed.json");
    assert!(transcript(&output).contains("does not verify"), "{}", transcript(&output));
    assert_eq!(refusals(&ws.log()), ["approval-expired", "approval-forged", "approval-forged"]);
    assert!(!ws.log().iter().any(|r| r["event"] == "step.intent"));

    // An expiry still ahead counts.
    let approved = ws.approve("week.json", &["--expires", "7d"]);
    assert!(approved.status.success(), "{}", transcript(&approved));
    let output = ws.apply("week.json");
    assert!(output.status.success(), "{}", transcript(&output));
    assert!(ws.path(&format!("exports/DSR-expiry/data/contact-{MAIN_ONLY}.json")).is_file());
}

/// The hex text's bytes.
fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// The audit `approval` records of the log.
fn approval_records(log: &[Value]) -> Vec<&Value> {
    log.iter().filter(|r| r["event"] == "approval").collect()
}

#[test]
fn the_audit_approval_record_holds_the_approver_key_id_and_signature_digest() {
    let ws = Workspace::new();
    let approved = ws.approve("alice.json", &[]);
    assert!(approved.status.success(), "{}", transcript(&approved));
    let output = ws.apply("alice.json");
    assert!(output.status.success(), "{}", transcript(&output));

    let key = ucs_gdpr::audit::load_verifying_key(&ws.path("alice/audit-signing.pub")).unwrap();
    let key_id = &ucs_gdpr::canonical::sha256_hex(key.as_bytes())[..16];
    let approval = ws.approval("alice.json");
    let signature = unhex(approval["signature"].as_str().unwrap());
    assert_eq!(signature.len(), 64, "an ed25519 signature");
    let log = ws.log();
    let records = approval_records(&log);
    assert_eq!(records.len(), 1, "{log:?}");
    let detail = &records[0]["detail"];
    assert_eq!(detail["approver"], "dpo.alice");
    assert_eq!(detail["keyId"], key_id);
    assert_eq!(detail["signatureSha256"], ucs_gdpr::canonical::sha256_hex(&signature).as_str());
    assert_eq!(detail.get("expiresAt"), None, "no expiry, none recorded");
    assert_eq!(records[0]["planId"], approval["planId"]);
    let verified =
        ucs_gdpr().arg("audit").arg("verify").arg(ws.path("audit.jsonl")).output().unwrap();
    assert!(verified.status.success(), "{}", transcript(&verified));

    // With an expiry, the record holds it too.
    let ws = Workspace::new();
    let approved = ws.approve("alice.json", &["--expires", "72h"]);
    assert!(approved.status.success(), "{}", transcript(&approved));
    let output = ws.apply("alice.json");
    assert!(output.status.success(), "{}", transcript(&output));
    let approval = ws.approval("alice.json");
    let log = ws.log();
    let records = approval_records(&log);
    assert_eq!(records.len(), 1, "{log:?}");
    assert_eq!(records[0]["detail"]["expiresAt"], approval["expiresAt"]);
    assert_eq!(records[0]["detail"]["keyId"], key_id_of(&ws));
}

fn key_id_of(ws: &Workspace) -> String {
    let key = ucs_gdpr::audit::load_verifying_key(&ws.path("alice/audit-signing.pub")).unwrap();
    ucs_gdpr::canonical::sha256_hex(key.as_bytes())[..16].to_owned()
}
