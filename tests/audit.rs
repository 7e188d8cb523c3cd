//! `ucs-gdpr audit`: verify, show, keygen.
//!
//! The log API is exercised directly; what a person sees comes from the real binary.

// Helpers of a test binary, where failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use assert_cmd::Command;
use ed25519_dalek::SigningKey;
use serde_json::Value;
use tempfile::TempDir;
use ucs_gdpr::audit::{
    Actor, AuditError, AuditLog, Checkpoint, ContactId, Detail, Entry, Event, FaultKind,
    LogOptions, Outcome, RequestId, Sha256Hex, SharedLog, StepId, Token, VerifyOptions,
    checkpoint_path, record_hash, verify_file,
};
use ucs_gdpr::canonical;

const LOG: &str = "audit.jsonl";

fn fixed_clock() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_795_000_000).unwrap()
}

fn options() -> LogOptions {
    LogOptions { clock: fixed_clock, ..LogOptions::default() }
}

fn signed_options(seed: u8) -> LogOptions {
    LogOptions { signing_key: Some(SigningKey::from_bytes(&[seed; 32])), ..options() }
}

fn actor() -> Actor {
    Actor::new("agent.smith").unwrap()
}

fn request() -> RequestId {
    RequestId::new("DSR-2026-0142").unwrap()
}

fn step(id: &str) -> StepId {
    StepId::new(id).unwrap()
}

fn contact(id: &str) -> ContactId {
    ContactId::new(id).unwrap()
}

fn event(event: Event) -> Entry {
    Entry::new(actor(), event).request(request()).plan(Sha256Hex::digest(b"plan"))
}

/// A realistic run: start, approval, a request-scoped check, export and delete of two
/// contacts, end. 13 records, lines 1 to 13.
fn write_run(log: &mut AuditLog) {
    let contacts = ["0001SaD2PVY4312K", "0001SaD2PVY4313L"];
    log.append(event(Event::RunStart)).unwrap();
    let approver =
        Detail { approver: Some(Actor::new("lead.jones").unwrap()), ..Detail::default() };
    log.append(event(Event::Approval).detail(approver)).unwrap();
    log.append_intent(event(Event::StepIntent).step(step("etl"))).unwrap();
    log.append(event(Event::StepDone).step(step("etl")).outcome(Outcome::Ok)).unwrap();
    for id in contacts {
        let export = Detail {
            bytes: Some(48_213),
            sha256: Some(Sha256Hex::digest(id.as_bytes())),
            interactions: Some(7),
            ..Detail::default()
        };
        log.append_intent(event(Event::StepIntent).step(step("export")).contact(contact(id)))
            .unwrap();
        log.append(
            event(Event::StepDone)
                .step(step("export"))
                .contact(contact(id))
                .outcome(Outcome::Ok)
                .detail(export),
        )
        .unwrap();
        log.append_intent(event(Event::StepIntent).step(step("delete")).contact(contact(id)))
            .unwrap();
        let outcome = if id.ends_with('K') { Outcome::AlreadyAbsent } else { Outcome::Ok };
        log.append(
            event(Event::StepDone).step(step("delete")).contact(contact(id)).outcome(outcome),
        )
        .unwrap();
    }
    log.append(event(Event::RunEnd).outcome(Outcome::Ok)).unwrap();
}

/// A directory holding a 13-record log and its unsigned checkpoint.
fn sample() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let mut log = AuditLog::open_with(&path, options()).unwrap();
    write_run(&mut log);
    log.finish().unwrap();
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(path, lines.iter().map(|line| format!("{line}\n")).collect::<String>()).unwrap();
}

/// Rewrites a record line with `change` applied and its hash recomputed, as a forger would.
fn reforge(line: &str, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut value: Value = serde_json::from_str(line).unwrap();
    let map = value.as_object_mut().unwrap();
    change(map);
    map.remove("hash");
    let hash = record_hash(&value);
    value.as_object_mut().unwrap().insert("hash".to_owned(), Value::String(hash.to_string()));
    String::from_utf8(canonical::to_vec(&value)).unwrap()
}

/// Runs `ucs-gdpr audit <args>` in `dir`; returns stdout and the exit code.
fn audit(dir: &Path, args: &[&str]) -> (String, i32) {
    let output = Command::new(env!("CARGO_BIN_EXE_ucs-gdpr"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .arg("audit")
        .args(args)
        .output()
        .unwrap();
    (String::from_utf8(output.stdout).unwrap(), output.status.code().unwrap())
}

fn faults(path: &Path) -> Vec<(Option<u64>, FaultKind)> {
    let report = verify_file(path, &VerifyOptions::default()).unwrap();
    report.faults.iter().map(|fault| (fault.line, fault.kind)).collect()
}

#[test]
fn verify_accepts_a_clean_log_with_counts() {
    let (dir, _) = sample();
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    insta::assert_snapshot!(stdout, @r"
    audit.jsonl: OK: 13 records, 1 run, 1 request; every hash, link and sequence number checks out
    note: no --checkpoint given: records removed from the end of the log cannot be detected without a checkpoint kept elsewhere
    ");
    assert_eq!(code, 0);
}

#[test]
fn verify_reports_a_modified_record_at_its_line() {
    let (dir, path) = sample();
    let mut lines = lines(&path);
    lines[5] = lines[5].replace(r#""outcome":"ok""#, r#""outcome":"failed""#);
    write_lines(&path, &lines);
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    insta::assert_snapshot!(stdout, @r"
    audit.jsonl: FAILED: 1 fault in 13 lines
    line 6: modified: the record's content does not match its hash (record seq 5): it was edited after it was written
    note: no --checkpoint given: records removed from the end of the log cannot be detected without a checkpoint kept elsewhere
    ");
    assert_eq!(code, 1);
}

#[test]
fn verify_reports_a_deleted_record_at_the_line_after_the_gap() {
    let (dir, path) = sample();
    let mut lines = lines(&path);
    lines.remove(5);
    write_lines(&path, &lines);
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    insta::assert_snapshot!(stdout, @r"
    audit.jsonl: FAILED: 1 fault in 12 lines
    line 6: deleted: 1 record missing before this line (seq 5)
    interrupted: line 5 (seq 4): step.intent for request DSR-2026-0142, step export, contact 0001SaD2PVY4312K has no outcome; a run stopped there, or its outcome is among the faults above
    note: no --checkpoint given: records removed from the end of the log cannot be detected without a checkpoint kept elsewhere
    ");
    assert_eq!(code, 1);
}

#[test]
fn verify_reports_the_first_record_deleted() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    lines.remove(0);
    write_lines(&path, &lines);
    assert_eq!(faults(&path), [(Some(1), FaultKind::Deleted)]);
}

#[test]
fn verify_reports_an_inserted_line_at_its_line() {
    let (dir, path) = sample();
    let mut lines = lines(&path);
    // A copy of an earlier record, edited to look like it belongs.
    let forged = lines[4].replace(r#""seq":4"#, r#""seq":7"#);
    lines.insert(7, forged);
    write_lines(&path, &lines);
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    insta::assert_snapshot!(stdout, @r"
    audit.jsonl: FAILED: 1 fault in 14 lines
    line 8: inserted: this line does not belong to the chain (seq 7); the next line links to the record before it
    note: no --checkpoint given: records removed from the end of the log cannot be detected without a checkpoint kept elsewhere
    ");
    assert_eq!(code, 1);
}

#[test]
fn verify_reports_a_forged_record_inserted_with_a_valid_hash() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    // seq 7 and prev of the record it precedes, hash recomputed: a fork of the chain.
    let forged = reforge(&lines[7], |map| {
        map.insert("outcome".to_owned(), Value::String("skipped".to_owned()));
    });
    lines.insert(7, forged);
    write_lines(&path, &lines);
    assert_eq!(faults(&path), [(Some(8), FaultKind::Inserted)]);
}

#[test]
fn verify_reports_a_replayed_old_record_as_inserted() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    let old = lines[2].clone();
    lines.insert(9, old);
    write_lines(&path, &lines);
    assert_eq!(faults(&path), [(Some(10), FaultKind::Inserted)]);
}

#[test]
fn verify_reports_two_swapped_records_as_reordered() {
    let (dir, path) = sample();
    let mut lines = lines(&path);
    lines.swap(5, 6);
    write_lines(&path, &lines);
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    insta::assert_snapshot!(stdout, @r"
    audit.jsonl: FAILED: 1 fault in 13 lines
    line 6: reordered: record seq 6 is out of order: it comes before seq 5
    note: no --checkpoint given: records removed from the end of the log cannot be detected without a checkpoint kept elsewhere
    ");
    assert_eq!(code, 1);
}

#[test]
fn verify_reports_a_record_moved_later_as_reordered_where_it_sits() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    let moved = lines.remove(2);
    lines.insert(9, moved);
    write_lines(&path, &lines);
    assert_eq!(faults(&path), [(Some(10), FaultKind::Reordered)]);
}

#[test]
fn verify_reports_a_record_moved_earlier_as_reordered_where_it_sits() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    let moved = lines.remove(9);
    lines.insert(2, moved);
    write_lines(&path, &lines);
    assert_eq!(faults(&path), [(Some(3), FaultKind::Reordered)]);
}

#[test]
fn verify_reports_the_last_two_records_swapped_as_reordered() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    lines.swap(11, 12);
    write_lines(&path, &lines);
    assert_eq!(faults(&path), [(Some(12), FaultKind::Reordered)]);
}

#[test]
fn verify_reports_a_duplicated_record_at_the_copy() {
    let (dir, path) = sample();
    let mut lines = lines(&path);
    let copy = lines[4].clone();
    lines.insert(5, copy);
    write_lines(&path, &lines);
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    insta::assert_snapshot!(stdout, @r"
    audit.jsonl: FAILED: 1 fault in 14 lines
    line 6: duplicated: the same record as line 5 (seq 4)
    note: no --checkpoint given: records removed from the end of the log cannot be detected without a checkpoint kept elsewhere
    ");
    assert_eq!(code, 1);
}

#[test]
fn verify_reports_a_broken_link_after_a_record_rewritten_with_a_recomputed_hash() {
    let (dir, path) = sample();
    let mut lines = lines(&path);
    lines[7] = reforge(&lines[7], |map| {
        map.insert("outcome".to_owned(), Value::String("skipped".to_owned()));
    });
    write_lines(&path, &lines);
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    insta::assert_snapshot!(stdout, @r"
    audit.jsonl: FAILED: 1 fault in 13 lines
    line 9: broken link: prev does not match the hash of the record before it (line 8): one of the two was rewritten and its hash recomputed
    note: no --checkpoint given: records removed from the end of the log cannot be detected without a checkpoint kept elsewhere
    ");
    assert_eq!(code, 1);
}

#[test]
fn verify_reports_a_torn_last_line() {
    let (dir, path) = sample();
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 40]).unwrap();
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    insta::assert_snapshot!(stdout, @r"
    audit.jsonl: FAILED: 1 fault in 13 lines
    line 13: torn last line: the last line is incomplete (not a JSON object): a write was interrupted; opening the log for writing moves it aside to the .torn file
    note: no --checkpoint given: records removed from the end of the log cannot be detected without a checkpoint kept elsewhere
    ");
    assert_eq!(code, 1);
}

#[test]
fn verify_reports_a_malformed_line_in_the_middle() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    lines[3] = "call Jane Doe back on 0612345678".to_owned();
    write_lines(&path, &lines);
    assert_eq!(faults(&path), [(Some(4), FaultKind::Malformed)]);
}

#[test]
fn verify_refuses_free_text_in_a_record_even_with_a_valid_hash() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    lines[12] = reforge(&lines[12], |map| {
        map.insert("note".to_owned(), Value::String("Jane Doe".to_owned()));
    });
    write_lines(&path, &lines);
    assert_eq!(faults(&path), [(Some(13), FaultKind::Malformed)]);
}

#[test]
fn verify_reveals_a_truncated_tail_against_a_checkpoint_from_the_longer_log() {
    let (dir, path) = sample();
    fs::copy(checkpoint_path(&path), dir.path().join("kept.json")).unwrap();
    let mut lines = lines(&path);
    lines.truncate(10);
    write_lines(&path, &lines);
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    assert_eq!(code, 0, "without a checkpoint a cleanly truncated log looks whole:\n{stdout}");
    let (stdout, code) = audit(dir.path(), &["verify", LOG, "--checkpoint", "kept.json"]);
    insta::assert_snapshot!(stdout, @r"
    audit.jsonl: FAILED: 1 fault in 10 lines
    checkpoint: truncated tail: the checkpoint of 2026-11-18T11:06:40.000Z covers 13 records but the log has only 10: 3 records were removed from the end
    checkpoint: 13 records, 0 records after it; not signed
    ");
    assert_eq!(code, 1);
}

#[test]
fn verify_reveals_a_log_rewritten_before_its_checkpoint() {
    let (dir, path) = sample();
    let kept = dir.path().join("kept.json");
    fs::copy(checkpoint_path(&path), &kept).unwrap();
    // Every record from line 11 on rewritten consistently: only the checkpoint can tell.
    let mut lines = lines(&path);
    let mut prev = serde_json::from_str::<Value>(&lines[9]).unwrap()["hash"].clone();
    for line in &mut lines[10..] {
        *line = reforge(line, |map| {
            map.insert("prev".to_owned(), prev.clone());
            map.insert("actor".to_owned(), Value::String("mallory".to_owned()));
        });
        prev = serde_json::from_str::<Value>(line).unwrap()["hash"].clone();
    }
    write_lines(&path, &lines);
    let checkpoint = Checkpoint::read(&kept).unwrap();
    let report =
        verify_file(&path, &VerifyOptions { checkpoint: Some(checkpoint), public_key: None })
            .unwrap();
    let kinds: Vec<_> = report.faults.iter().map(|fault| (fault.line, fault.kind)).collect();
    assert_eq!(kinds, [(None, FaultKind::CheckpointMismatch)]);
}

#[test]
fn verify_accepts_a_signed_checkpoint_with_its_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, code) = audit(dir.path(), &["keygen", "--out", "keys"]);
    assert_eq!(code, 0, "{stdout}");
    let key =
        ucs_gdpr::audit::load_signing_key(&dir.path().join("keys/audit-signing.key")).unwrap();
    let path = dir.path().join(LOG);
    let mut log =
        AuditLog::open_with(&path, LogOptions { signing_key: Some(key), ..options() }).unwrap();
    write_run(&mut log);
    let checkpoint = log.finish().unwrap();
    let key_id = checkpoint.key_id.unwrap();
    assert!(stdout.contains(&key_id), "keygen names the key id:\n{stdout}");
    let (stdout, code) = audit(
        dir.path(),
        &[
            "verify",
            LOG,
            "--checkpoint",
            "audit.jsonl.checkpoint.json",
            "--public-key",
            "keys/audit-signing.pub",
        ],
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains(&format!("signature valid (key {key_id})")), "{stdout}");
}

#[test]
fn verify_fails_with_the_wrong_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let mut log = AuditLog::open_with(&path, signed_options(1)).unwrap();
    write_run(&mut log);
    log.finish().unwrap();
    audit(dir.path(), &["keygen", "--out", "other"]);
    let (stdout, code) = audit(
        dir.path(),
        &[
            "verify",
            LOG,
            "--checkpoint",
            "audit.jsonl.checkpoint.json",
            "--public-key",
            "other/audit-signing.pub",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        stdout.contains("checkpoint: wrong key: the checkpoint was signed by key "),
        "{stdout}"
    );
}

#[test]
fn verify_fails_when_the_signed_checkpoint_was_altered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let mut log = AuditLog::open_with(&path, signed_options(1)).unwrap();
    write_run(&mut log);
    log.finish().unwrap();
    let public = SigningKey::from_bytes(&[1; 32]).verifying_key();
    let checkpoint = Checkpoint::read(&checkpoint_path(&path)).unwrap();
    // Rolled back to claim a shorter log, keeping the old signature.
    let altered = Checkpoint { size: 10, head: Sha256Hex::genesis(), ..checkpoint };
    let report =
        verify_file(&path, &VerifyOptions { checkpoint: Some(altered), public_key: Some(public) })
            .unwrap();
    let kinds: Vec<_> = report.faults.iter().map(|fault| fault.kind).collect();
    assert_eq!(kinds, [FaultKind::CheckpointMismatch, FaultKind::BadSignature]);
}

#[test]
fn verify_lists_an_interrupted_run_without_calling_it_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let mut log = AuditLog::open_with(&path, options()).unwrap();
    log.append(event(Event::RunStart)).unwrap();
    log.append_intent(
        event(Event::StepIntent).step(step("export")).contact(contact("0001SaD2PVY4312K")),
    )
    .unwrap();
    log.append(
        event(Event::StepDone)
            .step(step("export"))
            .contact(contact("0001SaD2PVY4312K"))
            .outcome(Outcome::Ok),
    )
    .unwrap();
    log.append_intent(
        event(Event::StepIntent).step(step("delete")).contact(contact("0001SaD2PVY4312K")),
    )
    .unwrap();
    drop(log); // killed before the delete's outcome
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    insta::assert_snapshot!(stdout, @r"
    audit.jsonl: OK: 4 records, 1 run, 1 request; every hash, link and sequence number checks out
    interrupted: line 4 (seq 3): step.intent for request DSR-2026-0142, step delete, contact 0001SaD2PVY4312K has no outcome; the run stopped there (not tampering: re-run apply to complete it)
    note: no --checkpoint given: records removed from the end of the log cannot be detected without a checkpoint kept elsewhere
    ");
    assert_eq!(code, 0);
}

#[test]
fn verify_prints_one_json_document_for_pipelines() {
    let (dir, path) = sample();
    let mut lines = lines(&path);
    lines.remove(5);
    write_lines(&path, &lines);
    let (stdout, code) = audit(dir.path(), &["verify", LOG, "--format", "json"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["faults"][0]["kind"], "deleted");
    assert_eq!(report["faults"][0]["line"], 6);
    assert_eq!(report["faults"][0]["seq"], 5);
    assert_eq!(report["records"], 12);
}

#[test]
fn a_clean_log_of_100000_records_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let mut log = AuditLog::open_with(&path, options()).unwrap();
    let detail = Detail { code: Some(Token::new("http.503").unwrap()), ..Detail::default() };
    for index in 0..100_000_u64 {
        let entry = event(if index % 2 == 0 { Event::StepRetry } else { Event::StepDone })
            .step(step("export"))
            .contact(contact("0001SaD2PVY4312K"))
            .detail(Detail { attempt: Some(u32::try_from(index % 5).unwrap()), ..detail.clone() });
        log.append(entry).unwrap();
    }
    let checkpoint = log.finish().unwrap();
    let report =
        verify_file(&path, &VerifyOptions { checkpoint: Some(checkpoint), public_key: None })
            .unwrap();
    assert!(report.ok, "{:?}", report.faults.first());
    assert_eq!(report.records, 100_000);
}

#[test]
fn reopening_continues_the_chain() {
    let (_dir, path) = sample();
    let mut log = AuditLog::open_with(&path, options()).unwrap();
    assert_eq!(log.len(), 13);
    write_run(&mut log);
    let checkpoint = log.finish().unwrap();
    assert_eq!(checkpoint.size, 26);
    let report =
        verify_file(&path, &VerifyOptions { checkpoint: Some(checkpoint), public_key: None })
            .unwrap();
    assert!(report.ok, "{:?}", report.faults);
    assert_eq!(report.runs, 2);
}

#[test]
fn an_intent_is_on_disk_before_append_intent_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let mut log = AuditLog::open_with(&path, options()).unwrap();
    log.append(event(Event::RunStart)).unwrap();
    assert_eq!(fs::read(&path).unwrap().len(), 0, "other records are group-committed");
    log.append_intent(event(Event::StepIntent).step(step("delete"))).unwrap();
    assert_eq!(lines(&path).len(), 2, "the intent and everything before it are written");
    assert!(matches!(
        log.append_intent(event(Event::StepDone)),
        Err(AuditError::NotAnIntent { event: Event::StepDone })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_intents_share_fsyncs_and_each_is_on_disk_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let log = SharedLog::new(AuditLog::open_with(&path, options()).unwrap()).unwrap();
    log.lock().append(event(Event::RunStart)).unwrap();
    const CONTACTS: usize = 64;
    let ids: Vec<String> = (0..CONTACTS).map(|n| format!("C{n:015}")).collect();
    // Each contact: an outcome (buffered), then its intent; when the intent returns, the file
    // already holds it and every record before it.
    let each = ids.iter().map(|id| {
        let (log, path) = (&log, &path);
        async move {
            log.lock()
                .append(event(Event::StepDone).step(step("export")).contact(contact(id)))
                .unwrap();
            let appended = log
                .append_intent(event(Event::StepIntent).step(step("delete")).contact(contact(id)))
                .await
                .unwrap();
            let on_disk = lines(path);
            assert!(
                on_disk.len() > usize::try_from(appended.seq).unwrap(),
                "intent {} returned before it was written",
                appended.seq
            );
        }
    });
    futures_util::future::join_all(each).await;
    let syncs = log.group_syncs();
    assert!(syncs >= 1);
    assert!(syncs < CONTACTS as u64, "{CONTACTS} intents took {syncs} fsyncs: not grouped");
    assert!(matches!(
        log.append_intent(event(Event::StepDone)).await,
        Err(AuditError::NotAnIntent { event: Event::StepDone })
    ));
    log.into_inner().finish().unwrap();
    let report = verify_file(&path, &VerifyOptions::default()).unwrap();
    assert!(report.ok, "{:?}", report.faults);
    assert_eq!(lines(&path).len(), 1 + 2 * CONTACTS);
}

#[test]
fn a_crash_at_every_byte_of_the_last_record_is_recovered_on_reopen() {
    let (dir, path) = sample();
    let whole = fs::read(&path).unwrap();
    let last_start = whole[..whole.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let earlier = &whole[..last_start];
    let scratch = dir.path().join("crash");
    fs::create_dir(&scratch).unwrap();
    let crashed = scratch.join(LOG);
    let torn_path = scratch.join("audit.jsonl.torn");
    for cut in last_start..whole.len() {
        let _ = fs::remove_file(&torn_path);
        fs::write(&crashed, &whole[..cut]).unwrap();
        let log = AuditLog::open_with(&crashed, options()).unwrap();
        let torn = &whole[last_start..cut];
        match log.recovery() {
            None => assert!(torn.is_empty(), "cut at {cut}: torn bytes were not noticed"),
            Some(recovery) => {
                assert_eq!(recovery.offset, u64::try_from(last_start).unwrap());
                assert_eq!(recovery.bytes, u64::try_from(torn.len()).unwrap());
                let kept = fs::read(&torn_path).unwrap();
                assert!(kept.windows(torn.len()).any(|w| w == torn), "cut at {cut}");
            }
        }
        drop(log);
        let after = fs::read(&crashed).unwrap();
        assert!(after.starts_with(earlier), "cut at {cut}: an earlier record was lost");
        let report = verify_file(&crashed, &VerifyOptions::default()).unwrap();
        assert!(report.ok, "cut at {cut}: {:?}", report.faults);
        assert_eq!(report.recovered.len(), usize::from(cut > last_start), "cut at {cut}");
        // The torn record was a run.end: nothing it announced is missing from the chain.
        assert_eq!(report.records, if cut > last_start { 13 } else { 12 });
    }
}

#[test]
fn a_garbled_complete_last_line_is_moved_aside_too() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    lines.push("{\"seq\":13,\"ti".to_owned());
    write_lines(&path, &lines);
    let log = AuditLog::open_with(&path, options()).unwrap();
    assert_eq!(log.recovery().unwrap().bytes, 14);
    drop(log);
    assert!(verify_file(&path, &VerifyOptions::default()).unwrap().ok);
}

#[test]
fn opening_refuses_a_log_whose_last_record_was_tampered_with() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    lines[12] = lines[12].replace(r#""outcome":"ok""#, r#""outcome":"failed""#);
    write_lines(&path, &lines);
    let error = AuditLog::open_with(&path, options()).unwrap_err();
    assert!(matches!(error, AuditError::CorruptTail { .. }), "{error}");
}

#[test]
fn a_second_writer_in_the_same_process_is_refused_with_the_holder_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let first = AuditLog::open_with(&path, options()).unwrap();
    let error = AuditLog::open_with(&path, options()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, AuditError::Locked { .. }));
    assert!(message.contains(&format!("by pid {} on host ", std::process::id())), "{message}");
    drop(first);
    AuditLog::open_with(&path, options()).unwrap();
}

/// The other side of `a_second_writer_process_is_refused`: holds the log named by
/// `UCS_GDPR_TEST_HOLD_LOG` until its stdin closes.
#[test]
#[ignore = "a helper run as a child process"]
fn helper_holds_the_log_open() {
    let Some(path) = std::env::var_os("UCS_GDPR_TEST_HOLD_LOG") else { return };
    let _log = AuditLog::open_with(PathBuf::from(path), options()).unwrap();
    println!("holding");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn a_second_writer_process_is_refused_with_the_holder_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    // The helper's name as the running test binary knows it (`audit::...` inside `lib`).
    let helper = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::helper_holds_the_log_open"),
        None => "helper_holds_the_log_open".to_owned(),
    };
    let mut child: Child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &helper, "--ignored", "--nocapture", "--quiet"])
        .env("UCS_GDPR_TEST_HOLD_LOG", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("holding") {
        line.clear();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "the helper {helper} exited");
    }
    let error = AuditLog::open_with(&path, options()).unwrap_err();
    assert!(error.to_string().contains(&format!("by pid {} on host ", child.id())), "{error}");
    drop(child.stdin.take());
    child.wait().unwrap();
    AuditLog::open_with(&path, options()).unwrap();
}

#[test]
fn show_prints_the_timeline_of_one_request() {
    let (dir, path) = sample();
    let mut log = AuditLog::open_with(&path, options()).unwrap();
    let other = Entry::new(actor(), Event::RunRefused)
        .request(RequestId::new("DSR-2026-0150").unwrap())
        .outcome(Outcome::Refused)
        .detail(Detail { reason: Some(Token::new("stale-plan").unwrap()), ..Detail::default() });
    log.append(other).unwrap();
    drop(log);
    let (stdout, code) = audit(dir.path(), &["show", LOG, "--request", "DSR-2026-0142"]);
    insta::assert_snapshot!(stdout, @r"
    request DSR-2026-0142: 13 records
    line  seq  time                      request        actor        plan          event        step    contact           outcome         detail
    1     0    2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  run.start    -       -                 -
    2     1    2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  approval     -       -                 -               approver=lead.jones
    3     2    2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  step.intent  etl     -                 -
    4     3    2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  step.done    etl     -                 ok
    5     4    2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  step.intent  export  0001SaD2PVY4312K  -
    6     5    2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  step.done    export  0001SaD2PVY4312K  ok              bytes=48213 interactions=7 sha256=7c136a9aff5895c3dd95008f1bc2255e56f29b988d41baf5ab0d70093ad34aed
    7     6    2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  step.intent  delete  0001SaD2PVY4312K  -
    8     7    2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  step.done    delete  0001SaD2PVY4312K  already-absent
    9     8    2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  step.intent  export  0001SaD2PVY4313L  -
    10    9    2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  step.done    export  0001SaD2PVY4313L  ok              bytes=48213 interactions=7 sha256=c5773872e853605ddeaa3ff36ec899015b75ba784bcbd65d5296748f620d85fd
    11    10   2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  step.intent  delete  0001SaD2PVY4313L  -
    12    11   2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  step.done    delete  0001SaD2PVY4313L  ok
    13    12   2026-11-18T11:06:40.000Z  DSR-2026-0142  agent.smith  64879f7d6b96  run.end      -       -                 ok
    ");
    assert_eq!(code, 0);
    let (stdout, _) =
        audit(dir.path(), &["show", LOG, "--request", "DSR-2026-0150", "--format", "json"]);
    let shown: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(shown.len(), 1, "{stdout}");
    assert_eq!(shown[0]["detail"]["reason"], "stale-plan");
    assert_eq!(shown[0]["line"], 14);
    assert_eq!(shown[0]["verified"], true);
}

#[test]
fn keygen_refuses_to_overwrite_a_key() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(audit(dir.path(), &["keygen", "--out", "keys"]).1, 0);
    let output = Command::new(env!("CARGO_BIN_EXE_ucs-gdpr"))
        .current_dir(dir.path())
        .args(["audit", "keygen", "--out", "keys"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("already exists"), "{stderr}");
}

#[test]
fn verify_reports_several_deleted_records_as_one_gap() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    lines.drain(3..6);
    write_lines(&path, &lines);
    let report = verify_file(&path, &VerifyOptions::default()).unwrap();
    let faults: Vec<_> = report
        .faults
        .iter()
        .map(|fault| (fault.line, fault.kind, fault.message.as_str()))
        .collect();
    assert_eq!(
        faults,
        [(Some(4), FaultKind::Deleted, "3 records missing before this line (seq 3..5)")]
    );
}

#[test]
fn verify_says_when_a_torn_write_was_recovered() {
    let (dir, path) = sample();
    // A crash in the middle of writing the last record: the run never reached its checkpoint.
    fs::remove_file(checkpoint_path(&path)).unwrap();
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 25]).unwrap();
    drop(AuditLog::open_with(&path, options()).unwrap());
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    insta::assert_snapshot!(stdout, @r"
    audit.jsonl: OK: 13 records, 1 run, 1 request; every hash, link and sequence number checks out
    recovered: line 13: a torn write of 327 bytes was moved aside to the .torn file when the log was reopened
    note: no --checkpoint given: records removed from the end of the log cannot be detected without a checkpoint kept elsewhere
    ");
    assert_eq!(code, 0);
}

#[test]
fn verify_does_not_call_a_record_being_written_torn() {
    let (dir, path) = sample();
    let log = AuditLog::open_with(&path, options()).unwrap();
    // What a concurrent reader may see of a record the writer is in the middle of writing.
    fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"actor\":\"ag").unwrap();
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("note: a writer holds the log; verified up to the last complete record (line 14 was being written)"), "{stdout}");
    drop(log);
    let (stdout, code) = audit(dir.path(), &["verify", LOG]);
    assert_eq!(code, 1, "without a writer the same line is torn:\n{stdout}");
    assert!(stdout.contains("line 14: torn last line"), "{stdout}");
}

/// Tampering beyond the single acts above: each act still reported once, where it shows.
#[test]
fn verify_classifies_distant_and_combined_tampering() {
    use FaultKind::{Deleted, Duplicated, Inserted, Modified, Reordered};
    type Tamper = fn(&mut Vec<String>);
    type Case = (&'static str, Tamper, &'static [(u64, FaultKind)]);
    let cases: [Case; 11] = [
        ("first two deleted", |l| drop(l.drain(0..2)), &[(1, Deleted)]),
        (
            "records 6 and 8 deleted",
            |l| drop((l.remove(7), l.remove(5))),
            &[(6, Deleted), (7, Deleted)],
        ),
        ("lines 3 and 9 swapped", |l| l.swap(2, 8), &[(3, Reordered), (9, Reordered)]),
        (
            "line 4 moved after line 6",
            |l| {
                let x = l.remove(3);
                l.insert(5, x);
            },
            &[(6, Reordered)],
        ),
        (
            "line 2 moved to the end",
            |l| {
                let x = l.remove(1);
                l.push(x);
            },
            &[(13, Reordered)],
        ),
        (
            "last line moved to the start",
            |l| {
                let x = l.pop().unwrap();
                l.insert(0, x);
            },
            &[(1, Reordered)],
        ),
        ("last line duplicated", |l| l.push(l[12].clone()), &[(14, Duplicated)]),
        ("an old record replayed at the end", |l| l.push(l[4].clone()), &[(14, Inserted)]),
        (
            "garbage before the first record",
            |l| l.insert(0, "{}".to_owned()),
            &[(1, FaultKind::Malformed)],
        ),
        (
            "record 5 edited and record 6 deleted",
            |l| {
                l[4] = l[4].replace("agent.smith", "agent.smyth");
                l.remove(5);
            },
            &[(5, Modified), (6, Deleted)],
        ),
        (
            "record 6 deleted, 9 and 10 swapped",
            |l| {
                l.swap(8, 9);
                l.remove(5);
            },
            &[(6, Deleted), (8, Reordered)],
        ),
    ];
    for (name, tamper, expected) in cases {
        let (_dir, path) = sample();
        let mut lines = lines(&path);
        tamper(&mut lines);
        write_lines(&path, &lines);
        let found: Vec<(u64, FaultKind)> = verify_file(&path, &VerifyOptions::default())
            .unwrap()
            .faults
            .iter()
            .map(|fault| (fault.line.unwrap(), fault.kind))
            .collect();
        assert_eq!(found, expected, "{name}");
    }
}

#[test]
fn verify_survives_absurd_sequence_numbers() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    lines[4] = reforge(&lines[4], |map| {
        map.insert("seq".to_owned(), Value::from(u64::MAX));
    });
    lines[9] = reforge(&lines[9], |map| {
        map.insert("seq".to_owned(), Value::from(u64::MAX - 1));
    });
    write_lines(&path, &lines);
    let report = verify_file(&path, &VerifyOptions::default()).unwrap();
    assert!(!report.ok);
}

#[test]
fn verify_detects_every_single_byte_change_without_panicking() {
    use std::os::unix::fs::FileExt;

    let (_dir, path) = sample();
    let original = fs::read(&path).unwrap();
    // One byte rewritten in place and restored: no truncation, which is slow on some mounts.
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    for (offset, &byte) in original.iter().enumerate() {
        let position = u64::try_from(offset).unwrap();
        for flip in [0x01, 0x20] {
            file.write_all_at(&[byte ^ flip], position).unwrap();
            let report = verify_file(&path, &VerifyOptions::default()).unwrap();
            assert!(!report.ok, "byte {offset} ^ {flip:#x} went unnoticed");
        }
        file.write_all_at(&[byte], position).unwrap();
    }
    assert!(verify_file(&path, &VerifyOptions::default()).unwrap().ok);
}

/// Rechains `lines` from index `from` on, as a forger who removed or changed records would:
/// contiguous seq numbers, each `prev` the hash before it, every hash recomputed.
fn rechain(lines: &mut [String], from: usize) {
    for index in from..lines.len() {
        let prev = if index == 0 {
            Sha256Hex::genesis().to_string()
        } else {
            let before: Value = serde_json::from_str(&lines[index - 1]).unwrap();
            before["hash"].as_str().unwrap().to_owned()
        };
        lines[index] = reforge(&lines[index], |map| {
            map.insert("seq".to_owned(), Value::from(u64::try_from(index).unwrap()));
            map.insert("prev".to_owned(), Value::String(prev));
        });
    }
}

fn assert_refused_by_its_checkpoint(path: &Path, reason: &str) {
    let checkpoint = fs::read(checkpoint_path(path)).unwrap();
    let log = fs::read(path).ok();
    let error = AuditLog::open_with(path, options()).unwrap_err();
    match &error {
        AuditError::NotItsCheckpoint { reason: got, .. } => {
            assert!(got.contains(reason), "{got}");
        }
        other => panic!("expected a checkpoint refusal, got {other}"),
    }
    assert!(error.to_string().contains("audit verify"), "{error}");
    assert_eq!(fs::read(checkpoint_path(path)).unwrap(), checkpoint, "checkpoint overwritten");
    assert_eq!(fs::read(path).ok(), log, "the log was changed");
    assert!(!path.with_extension("jsonl.lock").exists(), "a stale lock file was left");
}

#[test]
fn the_writer_refuses_a_log_rechained_with_two_records_removed() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    lines.drain(4..6);
    rechain(&mut lines, 4);
    write_lines(&path, &lines);
    assert!(
        verify_file(&path, &VerifyOptions::default()).unwrap().ok,
        "without its checkpoint the forgery is consistent"
    );
    assert_refused_by_its_checkpoint(&path, "the log has 11 records, the checkpoint counts 13");
}

#[test]
fn the_writer_refuses_an_emptied_or_removed_log() {
    let (_dir, path) = sample();
    fs::write(&path, b"").unwrap();
    assert_refused_by_its_checkpoint(&path, "the log has 0 records, the checkpoint counts 13");
    fs::remove_file(&path).unwrap();
    assert_refused_by_its_checkpoint(&path, "the log is missing");
    assert!(!path.exists(), "an empty log was created");
}

#[test]
fn the_writer_refuses_a_log_rewritten_to_its_checkpoints_length() {
    let (_dir, path) = sample();
    let mut lines = lines(&path);
    lines[3] = reforge(&lines[3], |map| {
        map.insert("outcome".to_owned(), Value::String("failed".to_owned()));
    });
    rechain(&mut lines, 3);
    write_lines(&path, &lines);
    assert_refused_by_its_checkpoint(&path, "record 12 is not the one the checkpoint ends with");
}

#[test]
fn the_writer_finds_the_checkpoint_inside_a_longer_log_and_refuses_a_rewrite_before_it() {
    let (_dir, path) = sample();
    // A run that appended and then stopped without a checkpoint: the log is longer.
    let mut log = AuditLog::open_with(&path, options()).unwrap();
    log.append(event(Event::RunStart)).unwrap();
    log.append_intent(event(Event::StepIntent).step(step("etl"))).unwrap();
    drop(log);
    let mut log = AuditLog::open_with(&path, options()).unwrap();
    assert_eq!(log.len(), 15);
    log.append(event(Event::RunEnd).outcome(Outcome::Failed)).unwrap();
    drop(log);

    // The same, with a checkpoint from before checkpoints recorded their byte offset.
    let checkpoint_file = checkpoint_path(&path);
    let mut old: Value = serde_json::from_slice(&fs::read(&checkpoint_file).unwrap()).unwrap();
    assert!(old.as_object_mut().unwrap().remove("bytes").is_some());
    let untouched = fs::read(&checkpoint_file).unwrap();
    fs::write(&checkpoint_file, serde_json::to_vec(&old).unwrap()).unwrap();
    drop(AuditLog::open_with(&path, options()).unwrap());
    fs::write(&checkpoint_file, untouched).unwrap();

    let mut lines = lines(&path);
    lines[12] = reforge(&lines[12], |map| {
        map.insert("outcome".to_owned(), Value::String("failed".to_owned()));
    });
    rechain(&mut lines, 12);
    write_lines(&path, &lines);
    assert_refused_by_its_checkpoint(&path, "record 12 is not");
    fs::write(&checkpoint_file, serde_json::to_vec(&old).unwrap()).unwrap();
    assert_refused_by_its_checkpoint(&path, "record 12 is not");
}

/// The peak resident memory of this test process so far (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_torn_tail_of_a_gibibyte_is_refused_in_bounded_memory() {
    let (_dir, path) = sample();
    let len = fs::metadata(&path).unwrap().len();
    // A sparse gibibyte of zero bytes after the last record: no newline anywhere in it.
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len + (1 << 30)).unwrap();
    let before = peak_rss_kib();
    let error = AuditLog::open_with(&path, options()).unwrap_err();
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    assert!(matches!(error, AuditError::CorruptTail { .. }), "{error}");
    assert!(error.to_string().contains("more than 8 MiB"), "{error}");
    assert!(grown_mib < 128, "opening the log grew the peak RSS by {grown_mib} MiB");
    assert_eq!(fs::metadata(&path).unwrap().len(), len + (1 << 30), "the log was changed");
}

/// A real audit trail: an environments file whose embedded demo UCS, audit log and exports
/// live in a temporary folder, and request manifests written into it.
pub(crate) struct Trail {
    pub(crate) dir: TempDir,
}

pub(crate) const JANE: &str = "0001SaD2PVY4312K";
pub(crate) const JOSE: &str = "0001SaD2PVY4315J";

impl Trail {
    pub(crate) fn new() -> Self {
        Self::with_policy("      requireApproval: false\n")
    }

    /// With `policy` (indented lines of the demo environment's `policy`).
    pub(crate) fn with_policy(policy: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        crate::workspace::EnvFile::demo().policy(policy).write(dir.path());
        fs::create_dir(dir.path().join("requests")).unwrap();
        Trail { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `requests/<name>.yaml` for request `DSR-<name>`; returns its path.
    /// `metadata` gets `metadata_extra` (indented lines), `spec` gets `spec_extra`.
    pub(crate) fn request(
        &self,
        name: &str,
        runbook: &str,
        subjects: &[&str],
        metadata_extra: &str,
        spec_extra: &str,
    ) -> String {
        let subjects: String = subjects.iter().map(|s| format!("    - contactId: {s}\n")).collect();
        let path = self.path(&format!("requests/{name}.yaml"));
        let received = if metadata_extra.contains("receivedAt") {
            ""
        } else {
            "  receivedAt: 2026-11-20T10:15:00Z\n"
        };
        fs::write(
            &path,
            format!(
                "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-{name}\n{received}  \
                 channel: email\n  verifiedBy: agent.smith\n{metadata_extra}spec:\n  environment: demo\n  runbook: {runbook}\n  \
                 subjects:\n{subjects}  export: {{}}\n  delete: {{ confirm: true }}\n{spec_extra}"
            ),
        )
        .unwrap();
        path.display().to_string()
    }

    /// Runs the real binary in the folder, with the environments file and a fixed actor.
    pub(crate) fn run(&self, args: &[&str]) -> std::process::Output {
        crate::ucs_gdpr()
            .current_dir(self.dir.path())
            .env("USER", "agent.smith")
            .args(args)
            .output()
            .unwrap()
    }

    /// What a person sees, with what changes from run to run (times, plan ids, hashes, the
    /// folder) replaced by placeholders of the same width, so columns stay aligned.
    pub(crate) fn stable(&self, text: &str) -> String {
        let mut out = text.replace(&self.dir.path().display().to_string(), "<dir>");
        let log = fs::read_to_string(self.path(LOG)).unwrap_or_default();
        let mut values: Vec<(String, String)> = Vec::new();
        let mut signatures: Vec<(String, String)> = Vec::new();
        for line in log.lines() {
            let Ok(record) = serde_json::from_str::<Value>(line) else { continue };
            if let Some(time) = record["time"].as_str() {
                values.push((time.to_owned(), "YYYY-MM-DDThh:mm:ss.sssZ".to_owned()));
            }
            for key in ["planId", "hash", "prev"] {
                if let Some(id) = record[key].as_str() {
                    values.push((
                        id.to_owned(),
                        format!("<{key}>").repeat(64).get(..64).unwrap().to_owned(),
                    ));
                }
            }
            if let Some(sha) = record["detail"]["sha256"].as_str() {
                values.push((sha.to_owned(), "<sha256>".repeat(8)));
            }
            // A fresh key per test: its id and the signature's digest differ every run.
            if let Some(key) = record["detail"]["keyId"].as_str() {
                signatures.push((
                    key.to_owned(),
                    "<key-id>".repeat(4).get(..key.len()).unwrap().to_owned(),
                ));
            }
            if let Some(digest) = record["detail"]["signatureSha256"].as_str() {
                signatures.push((digest.get(..12).unwrap().to_owned(), "<sig-sha-12>".to_owned()));
            }
        }
        values.sort();
        values.dedup();
        for (value, placeholder) in &values {
            out = out.replace(value.as_str(), placeholder);
        }
        for (value, placeholder) in &signatures {
            out = out.replace(value.as_str(), placeholder);
        }
        // Plan ids shortened to 12 digits on screen.
        for (value, _) in &values {
            if let Some(short) = value.get(..12).filter(|_| value.len() == 64) {
                out = out.replace(short, "<plan-id-12>");
            }
        }
        out
    }
}

/// Rewrites one field of the record on `line` (1-based) without recomputing its hash, as an
/// editor of the file would.
fn edit_record(path: &Path, line: usize, change: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let mut all = lines(path);
    let mut value: Value = serde_json::from_str(&all[line - 1]).unwrap();
    change(value.as_object_mut().unwrap());
    all[line - 1] = String::from_utf8(canonical::to_vec(&value)).unwrap();
    write_lines(path, &all);
}

#[test]
fn show_marks_an_edited_record_of_a_real_run_names_its_seq_and_exits_1() {
    let trail = Trail::new();
    let manifest = trail.request("jane", "forget-me-on-premise", &[JANE], "", "");
    let applied = trail.run(&["apply", &manifest]);
    assert!(applied.status.success(), "{}", crate::transcript(&applied));
    let clean = trail.run(&["audit", "show", LOG, "--request", "DSR-jane"]);
    assert_eq!(clean.status.code(), Some(0), "{}", crate::transcript(&clean));
    insta::assert_snapshot!("show-real-run", trail.stable(&crate::transcript(&clean)));

    // Someone changes the interaction count of Jane's export in the file.
    let log = trail.path(LOG);
    let export_line = lines(&log)
        .iter()
        .position(|line| line.contains("\"step.done\"") && line.contains("\"sha256\""))
        .unwrap()
        + 1;
    let mut seq = 0;
    edit_record(&log, export_line, |record| {
        seq = record["seq"].as_u64().unwrap();
        let count = record["detail"]["interactions"].as_u64().unwrap();
        record["detail"]["interactions"] = Value::from(count + 1);
    });
    let edited = trail.run(&["audit", "show", LOG]);
    let seen = crate::transcript(&edited);
    assert_eq!(edited.status.code(), Some(1), "{seen}");
    let stderr = String::from_utf8_lossy(&edited.stderr);
    assert!(
        stderr.contains(&format!("warning: line {export_line} (seq {seq}): modified")),
        "{seen}"
    );
    // Still shown, marked.
    let stdout = String::from_utf8_lossy(&edited.stdout);
    let row = stdout.lines().find(|row| row.starts_with('!')).unwrap_or_else(|| panic!("{seen}"));
    assert!(row.contains(&format!(" {export_line} ")) && row.contains("step.done"), "{row}");
    insta::assert_snapshot!("show-edited-record", trail.stable(&seen));

    // JSON Lines: one object per line, every key present, the bad one not verified.
    let json = trail.run(&["audit", "show", LOG, "--format", "json", "--contact", JANE]);
    assert_eq!(json.status.code(), Some(1));
    let objects: Vec<Value> = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(objects.len() > 3);
    let keys: Vec<&String> = objects[0].as_object().unwrap().keys().collect();
    for object in &objects {
        assert_eq!(object.as_object().unwrap().keys().collect::<Vec<_>>(), keys);
        assert_eq!(object["contact"], JANE, "--contact filters");
        let bad = object["seq"] == seq;
        assert_eq!(object["verified"], !bad, "{object}");
        if bad {
            assert_eq!(object["fault"]["kind"], "modified");
        }
    }
}

#[test]
fn show_filters_by_request_contact_and_since() {
    let (dir, path) = sample();
    let mut log = AuditLog::open_with(&path, options()).unwrap();
    let other = Entry::new(actor(), Event::RunRefused)
        .request(RequestId::new("DSR-2026-0150").unwrap())
        .outcome(Outcome::Refused)
        .detail(Detail { reason: Some(Token::new("stale-plan").unwrap()), ..Detail::default() });
    log.append(other).unwrap();
    drop(log);
    let (stdout, code) = audit(dir.path(), &["show", LOG, "--contact", "0001SaD2PVY4313L"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("show-filter-contact", stdout);
    // The sample's clock is 2026-11-18T11:06:40Z.
    let (stdout, code) = audit(dir.path(), &["show", LOG, "--since", "2026-11-19"]);
    assert_eq!((stdout.lines().next(), code), (Some("since 2026-11-19T00:00:00Z: 0 records"), 0));
    let (stdout, _) = audit(dir.path(), &["show", LOG, "--since", "2026-11-18T11:06:40Z"]);
    assert!(stdout.starts_with("since 2026-11-18T11:06:40Z: 14 records"), "{stdout}");
    let (_, code) = audit(dir.path(), &["show", LOG, "--request", "DSR-none"]);
    assert_eq!(code, 1, "a request with no record");
    let (_, code) = audit(dir.path(), &["show", LOG, "--since", "last tuesday"]);
    assert_eq!(code, 64, "a usage error");
}

#[test]
fn report_tells_a_refused_run_and_the_applied_one_of_the_same_request() {
    let trail = Trail::with_policy(
        "      requireApproval: true\n      approvers: [lead.jones]\n      \
         approverKeys: { lead.jones: keys/audit-signing.pub }\n",
    );
    let keygen = trail.run(&["audit", "keygen", "--out", "keys"]);
    assert!(keygen.status.success(), "{}", crate::transcript(&keygen));
    let hold = format!("  holds:\n    - {{ contactId: {JOSE}, reason: legal claim }}\n");
    let manifest = trail.request("batch", "batch-delete", &[JANE, JOSE], "", &hold);
    let planned = trail.run(&["plan", &manifest, "--out", "plan.json"]);
    assert!(planned.status.success(), "{}", crate::transcript(&planned));
    // First run: no approval, refused by the gate.
    let refused = trail.run(&["apply", "plan.json"]);
    assert_eq!(refused.status.code(), Some(1), "{}", crate::transcript(&refused));
    let approved = trail.run(&[
        "approve",
        "plan.json",
        "--by",
        "lead.jones",
        "--key",
        "keys/audit-signing.key",
    ]);
    assert!(approved.status.success(), "{}", crate::transcript(&approved));
    // Second run: approved, applied.
    let applied = trail.run(&["apply", "plan.json", "--approval", "plan.approval.lead.jones.json"]);
    assert!(applied.status.success(), "{}", crate::transcript(&applied));

    let text = trail.run(&["audit", "report", LOG, "DSR-batch"]);
    assert_eq!(text.status.code(), Some(0), "{}", crate::transcript(&text));
    insta::assert_snapshot!("report-two-runs-text", trail.stable(&crate::transcript(&text)));
    let markdown = trail.run(&["audit", "report", LOG, "DSR-batch", "--format", "markdown"]);
    assert_eq!(markdown.status.code(), Some(0));
    insta::assert_snapshot!(
        "report-two-runs-markdown",
        trail.stable(&crate::transcript(&markdown))
    );

    let json = trail.run(&["audit", "report", LOG, "DSR-batch", "--format", "json"]);
    assert_eq!(json.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    let plan_id =
        crate::plan_value(&fs::read(trail.path("plan.json")).unwrap()).unwrap()["planId"].clone();
    assert_eq!(report["logVerifies"], true);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{report:#}");
    assert_eq!(
        (&runs[0]["outcome"], &runs[0]["reason"], &runs[0]["planId"]),
        (&Value::from("refused"), &Value::from("approval-not-enough"), &plan_id),
        "{report:#}"
    );
    assert_eq!(runs[1]["outcome"], "completed");
    assert_eq!(runs[1]["approvers"], serde_json::json!(["lead.jones"]));
    assert_eq!(runs[1]["actor"], "agent.smith");
    assert_eq!(report["refusals"].as_array().unwrap().len(), 1);
    assert_eq!(report["approvals"][0]["run"], runs[1]["id"]);
    assert!(report["approvals"][0]["keyId"].is_string(), "{report:#}");
    assert!(report["approvals"][0]["signatureSha256"].is_string(), "{report:#}");
    let contacts = report["contacts"].as_array().unwrap();
    let state = |id: &str| contacts.iter().find(|c| c["contact"] == id).unwrap().clone();
    let jane = state(JANE);
    assert_eq!(jane["state"], "deleted", "{jane:#}");
    assert_eq!(jane["deleted"]["step"], "delete");
    assert_eq!(jane["verifiedAbsent"], true);
    assert!(jane["export"]["interactions"].as_u64().unwrap() > 0, "{jane:#}");
    let jose = state(JOSE);
    assert_eq!(
        (&jose["state"], &jose["held"], &jose["export"]),
        (&Value::from("held"), &Value::from(true), &Value::Null)
    );

    // Ids and counts only.
    let everything = [&text, &markdown, &json]
        .iter()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .collect::<String>();
    for value in crate::demo_personal_values() {
        assert!(!everything.contains(&value), "personal data in the report: {value}");
    }
    assert!(
        !everything.contains("legal claim"),
        "the hold's reason is the manifest's, not the log's"
    );

    // A request the log does not know, and a log that no longer verifies.
    let unknown = trail.run(&["audit", "report", LOG, "DSR-none"]);
    assert_eq!(unknown.status.code(), Some(1));
    let log = trail.path(LOG);
    edit_record(&log, 1, |record| record["actor"] = Value::from("someone.else"));
    let edited = trail.run(&["audit", "report", LOG, "DSR-batch"]);
    assert_eq!(edited.status.code(), Some(1), "{}", crate::transcript(&edited));
    let stdout = String::from_utf8_lossy(&edited.stdout);
    assert!(stdout.contains("THE LOG DOES NOT VERIFY (line 1 (seq 0) modified)"), "{stdout}");
}

#[test]
fn report_makes_good_a_failure_a_later_run_completed_and_keeps_the_one_it_did_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG);
    let mut log = AuditLog::open_with(&path, options()).unwrap();
    let (fixed, failing, stopped) = ("0001SaD2PVY4312K", "0001SaD2PVY4313L", "0001SaD2PVY4314M");
    let exported = Detail {
        sha256: Some(Sha256Hex::digest(b"e")),
        interactions: Some(4),
        ..Detail::default()
    };
    let failed =
        Detail { code: Some(Token::new("ucs.delete.timeout").unwrap()), ..Detail::default() };
    log.append(event(Event::RunStart)).unwrap();
    for id in [fixed, failing, stopped] {
        let on = |e: Event| event(e).step(step("export")).contact(contact(id));
        log.append_intent(on(Event::StepIntent)).unwrap();
        log.append(on(Event::StepDone).outcome(Outcome::Ok).detail(exported.clone())).unwrap();
    }
    for id in [fixed, failing] {
        let on = |e: Event| event(e).step(step("delete")).contact(contact(id));
        log.append_intent(on(Event::StepIntent)).unwrap();
        log.append(on(Event::StepRetry).outcome(Outcome::Failed)).unwrap();
        log.append(on(Event::StepFailed).outcome(Outcome::Failed).detail(failed.clone())).unwrap();
    }
    log.append_intent(event(Event::StepIntent).step(step("delete")).contact(contact(stopped)))
        .unwrap();
    log.append(event(Event::RunEnd).outcome(Outcome::Failed)).unwrap();
    // The second run deletes the first contact; the second fails again.
    log.append(event(Event::RunStart)).unwrap();
    let on = |e: Event, id: &str| event(e).step(step("delete")).contact(contact(id));
    log.append_intent(on(Event::StepIntent, fixed)).unwrap();
    log.append(on(Event::StepDone, fixed).outcome(Outcome::AlreadyAbsent)).unwrap();
    log.append_intent(on(Event::StepIntent, failing)).unwrap();
    log.append(on(Event::StepFailed, failing).outcome(Outcome::Failed).detail(failed)).unwrap();
    log.finish().unwrap();

    let report = ucs_gdpr::audit::request_report(&path, "DSR-2026-0142").unwrap();
    assert!(report.log_verifies);
    let runs: Vec<(u64, &str)> = report.runs.iter().map(|r| (r.id, r.outcome.as_str())).collect();
    assert_eq!(runs, [(0, "failed"), (15, "unfinished")]);
    let states: Vec<(&str, &str)> =
        report.contacts.iter().map(|c| (c.contact.as_str(), c.state.as_str())).collect();
    assert_eq!(states, [(fixed, "deleted"), (failing, "failed"), (stopped, "interrupted")]);
    let failure = report.contacts[1].failed.as_ref().unwrap();
    assert_eq!(
        (failure.step.as_str(), failure.run, failure.code.as_deref()),
        ("delete", 15, Some("ucs.delete.timeout"))
    );
    assert_eq!(
        report.contacts[0].deleted.as_ref().unwrap().outcome.as_deref(),
        Some("already-absent")
    );
    assert_eq!(report.contacts[0].retries, 1);
    assert_eq!(report.contacts[2].interrupted_at.as_ref().unwrap().run, 0);
    assert_eq!(report.contacts[2].export.as_ref().unwrap().interactions, Some(4));
}

#[test]
fn show_marks_an_unreadable_line_and_a_broken_chain_and_exits_1() {
    let (dir, path) = sample();
    let mut all = lines(&path);
    // Line 4 is not a record any more; line 9 is rewritten with a recomputed hash (a broken
    // link at the line after it).
    all[3] = "{\"note\":\"not a record\"}".to_owned();
    all[8] = reforge(&all[8], |record| {
        record.insert("outcome".to_owned(), Value::from("ok"));
    });
    write_lines(&path, &all);
    let output = Command::new(env!("CARGO_BIN_EXE_ucs-gdpr"))
        .current_dir(dir.path())
        .args(["audit", "show", LOG, "--request", "DSR-2026-0142"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let marked: Vec<&str> = stdout
        .lines()
        .filter(|row| row.starts_with('!'))
        .map(|row| row.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(marked, ["4", "10"], "{stdout}");
    assert!(stdout.contains("(not a record)"), "{stdout}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("warning: line 4: malformed"), "{stderr}");
    assert!(stderr.contains("warning: line 10 (seq 9): broken link"), "{stderr}");
}
