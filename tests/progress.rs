//! Retries and progress: each retry is recorded under the contact and the step it happened in,
//! whatever else runs at the same time; retries are summarised, not one warning each; progress
//! is shown wherever a command takes time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use serde_json::Value;
use ucs_gdpr::sim::{GenerateOptions, generate};

use crate::{transcript, ucs_gdpr};

/// A generated dataset of `contacts` contacts without pending callbacks (they would block a
/// batch delete), and the ids of its contacts.
fn dataset(dir: &Path, contacts: u32) -> Vec<String> {
    let path = dir.join("dataset.json");
    generate(&GenerateOptions {
        contacts,
        interactions: 2,
        attachment_bytes: 0,
        seed: 11,
        out: path.clone(),
    })
    .unwrap();
    let mut value: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let mut ids = Vec::new();
    for contact in value["contacts"].as_array_mut().unwrap() {
        contact["callbacks"] = serde_json::json!([]);
        ids.push(contact["id"].as_str().unwrap().to_owned());
    }
    fs::write(&path, serde_json::to_vec(&value).unwrap()).unwrap();
    ids
}

/// An environments file for the generated dataset, with `faults` (YAML flow) and no approval.
fn environments(dir: &Path, faults: &str) {
    crate::workspace::EnvFile::embedded(Path::new("dataset.json"))
        .named("gen")
        .setting(&format!("faults: {faults}"))
        .setting("timeouts: { connectMs: 2000, readMs: 2000 }")
        .policy("      requireApproval: false\n")
        .write(dir);
}

/// A batch-delete request of `ids`.
fn request(dir: &Path, ids: &[String]) -> String {
    let mut text = String::from(
        "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-RETRIES\n  \
         receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: agent.smith\nspec:\n  \
         environment: gen\n  runbook: batch-delete\n  subjects:\n",
    );
    for id in ids {
        // Quoted: an id such as `0oYWD5Bq33vFqv89` would be read as a YAML number.
        writeln!(text, "    - contactId: \"{id}\"").unwrap();
    }
    text.push_str("  export:\n    dataSources: [main, archive]\n  delete:\n    confirm: true\n");
    let path = dir.join("request.yaml");
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Every `step.retry` record of the log: (contact, step).
fn retry_records(log: &Path) -> Vec<(Option<String>, String)> {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["event"] == "step.retry")
        .map(|record| {
            (record["contact"].as_str().map(str::to_owned), record["step"].as_str().unwrap().into())
        })
        .collect()
}

#[test]
fn retries_are_attributed_under_concurrency_8() {
    let dir = tempfile::tempdir().unwrap();
    let ids = dataset(dir.path(), 24);
    // Transient failures of calls about five contacts, each in a known step: the calls about a
    // contact of a batch delete are, in order, GetAttributes: the plan's read (1), the re-check's
    // (2), the export's (3), verify-absent's (4); GetInteractionsForContact (main, archive): the
    // plan (1, 2), the re-check (3, 4), the export (5, 6), verify-absent (7, 8); DeleteContact:
    // the delete (1). A failure during the plan `apply` makes first is not part of the run.
    let faulted: BTreeMap<&str, (&str, u64, Option<&str>)> = BTreeMap::from([
        (ids[1].as_str(), ("GetAttributes", 2, Some("plan.recheck"))),
        (ids[5].as_str(), ("GetInteractionsForContact", 5, Some("export"))),
        (ids[9].as_str(), ("DeleteContact", 1, Some("delete"))),
        (ids[14].as_str(), ("GetInteractionsForContact", 8, Some("verify"))),
        (ids[20].as_str(), ("GetAttributes", 1, None)),
    ]);
    let script: Vec<String> = faulted
        .iter()
        .map(|(contact, (operation, nth, _))| {
            format!("{{ contact: \"{contact}\", operation: {operation}, nth: {nth}, kind: unavailable }}")
        })
        .collect();
    // Latency, so that contacts overlap and each step takes a while.
    environments(
        dir.path(),
        &format!("{{ latencyMs: 3, jitterMs: 3, contactScript: [{}] }}", script.join(", ")),
    );
    let manifest = request(dir.path(), &ids);
    let env_file = dir.path().join("ucs-gdpr.yaml");
    let output = ucs_gdpr()
        .args(["apply", &manifest, "--concurrency", "8", "--env-file"])
        .arg(&env_file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", transcript(&output));

    let records = retry_records(&dir.path().join("audit.jsonl"));
    let expected: BTreeSet<(Option<String>, String)> = faulted
        .iter()
        .filter_map(|(contact, (_, _, step))| step.map(|s| (Some((*contact).to_owned()), s.into())))
        .collect();
    for record in &records {
        assert!(expected.contains(record), "a retry recorded under {record:?}; log: {records:?}");
    }
    let mut counts: BTreeMap<(Option<String>, String), usize> = BTreeMap::new();
    for record in records {
        *counts.entry(record).or_default() += 1;
    }
    // One record per failed attempt and what the client did next: a delete whose answer was
    // lost is checked (the contact is still there), then sent again.
    let wanted: BTreeMap<(Option<String>, String), usize> = expected
        .into_iter()
        .map(|key| {
            let n = if key.1 == "delete" { 2 } else { 1 };
            (key, n)
        })
        .collect();
    assert_eq!(counts, wanted, "every injected failure is recorded where it happened");
}

/// stderr's lines that are log lines (`<timestamp>  LEVEL target: message`).
fn log_lines(stderr: &[u8], level: &str) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|line| line.split_whitespace().nth(1) == Some(level))
        .map(str::to_owned)
        .collect()
}

#[test]
fn transient_retries_are_summarised_in_one_warning_with_their_details_at_info() {
    let dir = tempfile::tempdir().unwrap();
    let ids = dataset(dir.path(), 12);
    environments(dir.path(), "{ seed: 5, errorRate: 0.08 }");
    let manifest = request(dir.path(), &ids);
    let env_file = dir.path().join("ucs-gdpr.yaml");
    let output =
        ucs_gdpr().args(["apply", &manifest, "--env-file"]).arg(&env_file).output().unwrap();
    assert!(output.status.success(), "{}", transcript(&output));
    let records = retry_records(&dir.path().join("audit.jsonl"));
    assert!(records.len() > 3, "the faults made the client retry: {records:?}");
    // At the default level: no line per retry, one summary.
    let warnings = log_lines(&output.stderr, "WARN");
    let summary = warnings
        .iter()
        .find(|line| line.contains("UCS calls were retried; all succeeded"))
        .unwrap_or_else(|| panic!("no summary: {}", transcript(&output)));
    assert_eq!(warnings.len(), 1, "only the summary warns: {warnings:?}");
    let calls: u64 = summary
        .split(": ")
        .nth(1)
        .and_then(|text| text.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(calls >= 3, "{summary}");
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("retrying"),
        "{}",
        transcript(&output)
    );

    // At `info`, each retry with its contact and step (ids only).
    let dir = tempfile::tempdir().unwrap();
    let ids = dataset(dir.path(), 12);
    environments(dir.path(), "{ seed: 5, errorRate: 0.08 }");
    let manifest = request(dir.path(), &ids);
    let output = ucs_gdpr()
        .args(["apply", &manifest, "--env-file"])
        .arg(dir.path().join("ucs-gdpr.yaml"))
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", transcript(&output));
    let details: Vec<String> = log_lines(&output.stderr, "INFO")
        .into_iter()
        .filter(|line| line.contains("UCS call failed; retrying"))
        .collect();
    assert!(details.len() >= records.len(), "{details:?}");
    assert!(
        details.iter().any(|line| line.contains("step=\"export\"") || line.contains("step=export")),
        "{details:?}"
    );
}

#[test]
fn a_call_that_gave_up_after_its_retries_is_counted_in_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let ids = dataset(dir.path(), 3);
    // Every attempt (5 by default) of the export's read of one contact fails: the connector
    // gives up and that contact fails; the others are done.
    let script: Vec<String> = (3..=7)
        .map(|nth| {
            format!(
                "{{ contact: \"{}\", operation: GetAttributes, nth: {nth}, kind: unavailable }}",
                ids[0]
            )
        })
        .collect();
    environments(dir.path(), &format!("{{ contactScript: [{}] }}", script.join(", ")));
    let manifest = request(dir.path(), &ids);
    let output = ucs_gdpr()
        .args(["apply", &manifest, "--env-file"])
        .arg(dir.path().join("ucs-gdpr.yaml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let warnings = log_lines(&output.stderr, "WARN");
    assert!(
        warnings.iter().any(|line| line.contains("1 UCS call was retried; it gave up")),
        "{}",
        transcript(&output)
    );
    let records = retry_records(&dir.path().join("audit.jsonl"));
    assert_eq!(records.len(), 4, "four retries, then the fifth attempt failed too: {records:?}");
    assert!(
        records
            .iter()
            .all(|(contact, step)| contact.as_deref() == Some(ids[0].as_str()) && step == "export")
    );
}

/// Runs the binary with `args` under a pseudo-terminal (`script`), as a person's shell would;
/// returns what the terminal received.
fn on_a_terminal(dir: &Path, args: &str, log: &str) -> String {
    let command = format!("{} {args}", assert_cmd::cargo::cargo_bin!("ucs-gdpr").display());
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir)
        .env("RUST_LOG", log)
        .env("TERM", "xterm")
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", transcript(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every log line starts a line of the screen: what precedes its timestamp is a line break, or
/// the bars' erase (`\r`, `\x1b[2K` erasing a line, cursor moves), never a bar's text.
fn log_lines_start_their_lines(screen: &str) -> usize {
    let mut found = 0;
    for (at, _) in screen.match_indices("Z  ") {
        // `2026-12-02T00:45:25.544743Z  WARN ...`: the timestamp is 27 characters.
        let Some(start) = at.checked_sub(26) else { continue };
        let Some(stamp) = screen.get(start..at) else { continue };
        if !(stamp.starts_with("20") && stamp.as_bytes().get(10) == Some(&b'T')) {
            continue;
        }
        found += 1;
        let (rest, erased) = without_trailing_controls(&screen[..start]);
        assert!(
            rest.is_empty() || rest.ends_with('\n') || erased,
            "a log line drawn through the bar: {:?}",
            &rest[rest.len().saturating_sub(120)..]
        );
    }
    found
}

/// `text` without its trailing carriage returns and CSI sequences (`\x1b[<digits><letter>`),
/// and whether one of them erased the line (`\x1b[2K`).
fn without_trailing_controls(mut text: &str) -> (&str, bool) {
    let mut erased = false;
    loop {
        if let Some(rest) = text.strip_suffix('\r') {
            text = rest;
            continue;
        }
        let Some(escape) = text.rfind('\x1b') else { break };
        let sequence = &text[escape..];
        let body = sequence.strip_prefix("\x1b[").unwrap_or_default();
        let is_csi = !body.is_empty()
            && body[..body.len() - 1].bytes().all(|b| b.is_ascii_digit())
            && body.as_bytes()[body.len() - 1].is_ascii_alphabetic();
        if !is_csi {
            break;
        }
        erased |= body == "2K";
        text = &text[..escape];
    }
    (text, erased)
}

#[test]
fn on_a_terminal_plan_and_apply_show_progress_and_log_lines_land_above_the_bar() {
    let dir = tempfile::tempdir().unwrap();
    let ids = dataset(dir.path(), 40);
    environments(dir.path(), "{ seed: 9, latencyMs: 4, errorRate: 0.04 }");
    request(dir.path(), &ids);

    let planned = on_a_terminal(
        dir.path(),
        "plan request.yaml --env-file ucs-gdpr.yaml --out plan.json",
        "info",
    );
    assert!(planned.contains("plan [") && planned.contains(" subjects resolved · "), "{planned}");
    assert!(planned.contains("/40 contacts read · "), "{planned}");
    assert!(planned.contains("ETA "), "{planned}");
    assert!(planned.contains(" · retries: "), "{planned}");
    assert!(log_lines_start_their_lines(&planned) > 0, "{planned}");

    let applied = on_a_terminal(dir.path(), "apply plan.json --env-file ucs-gdpr.yaml", "info");
    assert!(
        applied.contains("re-check [") && applied.contains("/40 contacts read · "),
        "{applied}"
    );
    assert!(applied.contains("] 40/40 contacts · "), "{applied}");
    assert!(applied.contains("[1/40] contact "), "{applied}");
    assert!(applied.contains("UCS calls were retried; all succeeded"), "{applied}");
    assert!(log_lines_start_their_lines(&applied) > 0, "{applied}");
}
