//! `ucs-gdpr status`: the request register, from the manifests, the plans and approvals on
//! disk and the audit log, through the real binary.

use std::fs;

use serde_json::Value;
use ucs_gdpr::audit::{
    Actor, AuditLog, ContactId, Detail, Entry, Event, Outcome, RequestId, Sha256Hex, StepId, Token,
};

use crate::audit::{JANE, JOSE, Trail};

const JANE_AGAIN: &str = "0001TbE3QWZ5520L";
const MAIN_ONLY: &str = "0002Ha7QB2MX000K";

fn ok(output: &std::process::Output) {
    assert!(output.status.success(), "{}", crate::transcript(output));
}

/// One manifest in each state, counted from 2026-12-15.
#[test]
fn status_lists_one_request_in_each_state_with_its_deadline() {
    let trail = Trail::with_policy(
        "      requireApproval: true\n      approvers: [lead.jones]\n      \
         approverKeys: { lead.jones: keys/audit-signing.pub }\n",
    );
    ok(&trail.run(&["audit", "keygen", "--out", "keys"]));
    let received = |date: &str| format!("  receivedAt: {date}T09:00:00Z\n");
    let on_premise = "forget-me-on-premise";
    // Not planned: received 2026-11-20, due one month later (5 days left: nearly due).
    trail.request("fresh", on_premise, &[JANE], "", "");
    // Planned, not approved, with its own later deadline.
    let planned =
        trail.request("planned", on_premise, &[MAIN_ONLY], "  deadline: 2027-01-31\n", "");
    ok(&trail.run(&["plan", &planned, "--out", "requests/planned.plan.json"]));
    // An approval by someone the policy does not list does not count.
    ok(&trail.run(&["approve", "requests/planned.plan.json", "--by", "intern.x"]));
    // Approved.
    let approved = trail.request("approved", on_premise, &[JANE_AGAIN], "", "");
    ok(&trail.run(&["plan", &approved, "--out", "requests/approved.plan.json"]));
    let key = "keys/audit-signing.key";
    ok(&trail.run(&["approve", "requests/approved.plan.json", "--by", "lead.jones", "--key", key]));
    // Complete, though past its deadline: received 2026-11-01, due 2026-12-01.
    let done = trail.request("done", on_premise, &[JANE], &received("2026-11-01"), "");
    ok(&trail.run(&["plan", &done, "--out", "requests/done.plan.json"]));
    ok(&trail.run(&["approve", "requests/done.plan.json", "--by", "lead.jones", "--key", key]));
    let approval = "requests/done.plan.approval.lead.jones.json";
    ok(&trail.run(&["apply", "requests/done.plan.json", "--approval", approval]));
    // Blocked: José has a pending callback and interactions in progress.
    let blocked = trail.request("blocked", "forget-me-cloud", &[JOSE], "", "");
    let output = trail.run(&["plan", &blocked, "--out", "requests/blocked.plan.json"]);
    assert_eq!(output.status.code(), Some(1), "{}", crate::transcript(&output));
    // Partly applied and overdue: a run whose delete failed, as the executor records it.
    trail.request("partly", "batch-delete", &[MAIN_ONLY], &received("2026-11-01"), "");
    {
        let mut log = AuditLog::open(trail.path("audit.jsonl")).unwrap();
        let entry = |event| {
            Entry::new(Actor::new("agent.smith").unwrap(), event)
                .request(RequestId::new("DSR-partly").unwrap())
                .plan(Sha256Hex::digest(b"partly"))
        };
        let on = |event, step: &str| {
            entry(event)
                .step(StepId::new(step).unwrap())
                .contact(ContactId::new(MAIN_ONLY).unwrap())
        };
        let exported = Detail { sha256: Some(Sha256Hex::digest(b"x")), ..Detail::default() };
        let failed =
            Detail { code: Some(Token::new("ucs.delete.timeout").unwrap()), ..Detail::default() };
        log.append(entry(Event::RunStart)).unwrap();
        log.append_intent(on(Event::StepIntent, "export")).unwrap();
        log.append(on(Event::StepDone, "export").outcome(Outcome::Ok).detail(exported)).unwrap();
        log.append_intent(on(Event::StepIntent, "delete")).unwrap();
        log.append(on(Event::StepFailed, "delete").outcome(Outcome::Failed).detail(failed))
            .unwrap();
        log.append(entry(Event::RunEnd).outcome(Outcome::Failed)).unwrap();
        log.finish().unwrap();
    }

    // A manifest that does not validate (no channel) cannot go on: blocked, deadline unknown.
    fs::write(
        trail.path("requests/broken.yaml"),
        "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-broken\n  \
         receivedAt: 2026-11-20T10:15:00Z\n  verifiedBy: agent.smith\nspec:\n  environment: demo\n  \
         runbook: export-only\n  subjects:\n    - contactId: 0001SaD2PVY4312K\n  export: {}\n",
    )
    .unwrap();
    // Other kinds of files in the folder are not requests.
    fs::copy(crate::repo_path("runbooks/export-only.yaml"), trail.path("requests/runbook.yaml"))
        .unwrap();

    let status = |format: &str| {
        trail.run(&["status", "requests", "--today", "2026-12-15", "--format", format])
    };
    let text = status("text");
    // Exit 1: a request is overdue.
    assert_eq!(text.status.code(), Some(1), "{}", crate::transcript(&text));
    insta::assert_snapshot!("status-text", trail.stable(&crate::transcript(&text)));
    let markdown = status("markdown");
    assert_eq!(markdown.status.code(), Some(1));
    insta::assert_snapshot!("status-markdown", trail.stable(&crate::transcript(&markdown)));

    let json = status("json");
    let register: Value = serde_json::from_slice(&json.stdout).unwrap();
    let states: Vec<(String, String, String)> = register["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let text = |key: &str| entry[key].as_str().unwrap().to_owned();
            (text("requestId"), text("state"), text("due"))
        })
        .collect();
    let expected = [
        ("DSR-approved", "approved", "nearly-due"),
        ("DSR-blocked", "blocked", "nearly-due"),
        ("DSR-broken", "blocked", "unknown"),
        ("DSR-done", "complete", "done"),
        ("DSR-fresh", "not-planned", "nearly-due"),
        ("DSR-partly", "partly-applied", "overdue"),
        ("DSR-planned", "planned", "on-time"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(states, expected, "{register:#}");
    assert_eq!((register["overdue"].as_u64(), register["nearlyDue"].as_u64()), (Some(1), Some(3)));
    let entry = |id: &str| {
        register["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["requestId"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(entry("DSR-partly")["daysLeft"], -14);
    assert_eq!(entry("DSR-planned")["deadline"], "2027-01-31");
    assert_eq!(entry("DSR-planned")["daysLeft"], 47);
    assert_eq!(entry("DSR-approved")["approvals"], 1);
    assert_eq!(entry("DSR-planned")["approvals"], 0);
    assert_eq!(entry("DSR-fresh")["deadline"], "2026-12-20");
    for output in [&text, &markdown, &json] {
        let shown = String::from_utf8_lossy(&output.stdout);
        for value in crate::demo_personal_values() {
            assert!(!shown.contains(&value), "personal data in the register: {value}");
        }
    }

    // Changing a planned manifest makes its plan an earlier version's: not planned again.
    let mut text_of = fs::read_to_string(&planned).unwrap();
    text_of.push_str("# reviewed\n");
    fs::write(&planned, text_of).unwrap();
    let again: Value = serde_json::from_slice(&status("json").stdout).unwrap();
    let entry = again["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["requestId"] == "DSR-planned")
        .unwrap();
    assert_eq!(entry["state"], "not-planned", "{entry:#}");
    assert!(entry["notes"][0].as_str().unwrap().contains("earlier version"), "{entry:#}");

    // Nothing overdue: exit 0 (the same register, counted from an earlier day).
    let early = trail.run(&["status", "requests", "--today", "2026-11-25"]);
    assert_eq!(early.status.code(), Some(0), "{}", crate::transcript(&early));
}

/// The register names the plan the request's runs ran, in the file saved by `plan --out`: not
/// the copy `apply` keeps in the bag (written later), nor a newer plan not yet run.
#[test]
fn status_names_the_plan_that_ran_not_the_bag_copy_nor_a_newer_one() {
    let trail = Trail::new();
    let request = trail.request("ran", "forget-me-on-premise", &[JANE], "", "");
    ok(&trail.run(&["plan", &request, "--out", "requests/ran.plan.json"]));
    ok(&trail.run(&["apply", "requests/ran.plan.json"]));
    let status = || -> Value {
        let json = trail.run(&["status", "requests", "--today", "2026-11-25", "--format", "json"]);
        ok(&json);
        let register: Value = serde_json::from_slice(&json.stdout).unwrap();
        register["requests"][0].clone()
    };
    let entry = status();
    assert_eq!(entry["state"], "complete", "{entry:#}");
    assert_eq!(entry["planFile"], "requests/ran.plan.json", "{entry:#}");
    let ran = entry["planId"].as_str().unwrap().to_owned();
    assert!(
        fs::read_dir(trail.path("exports/DSR-ran/plans")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(&ran)),
        "the bag keeps a copy of the plan"
    );
    // A newer plan of the same manifest, in a file written after the run (planned again:
    // Jane is gone, so it is another plan).
    ok(&trail.run(&["plan", &request, "--out", "requests/ran.again.plan.json"]));
    let newer: Value = serde_json::from_str(
        fs::read_to_string(trail.path("requests/ran.again.plan.json"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let newer = newer["planId"].as_str().unwrap().to_owned();
    assert_ne!(newer, ran);
    let entry = status();
    assert_eq!(entry["planId"], ran.as_str(), "{entry:#}");
    assert_eq!(entry["planFile"], "requests/ran.plan.json", "{entry:#}");
    let notes = entry["notes"].to_string();
    assert!(
        notes.contains(&format!("a newer plan ({}) was found, not yet run", &newer[..12])),
        "{notes}"
    );
}
