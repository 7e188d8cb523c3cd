//! `ucs-gdpr plan` against the embedded demo environment (the real simulator behind the real
//! REST client), through the real binary.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::{repo_path, transcript, ucs_gdpr};

/// The demo environment for one test: the examples' environments file without its state
/// folder, so every run starts from the dataset and tests do not share a world.
fn env_file(dir: &Path) -> String {
    let text = fs::read_to_string(repo_path("examples/ucs-gdpr.yaml")).unwrap();
    let text: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("stateDir:"))
        .map(|line| {
            if let Some(rest) = line.trim_start().strip_prefix("dataset: sim/") {
                let file = rest.split_whitespace().next().unwrap();
                format!("    dataset: {}\n", repo_path(&format!("examples/sim/{file}")).display())
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let path = dir.join("ucs-gdpr.yaml");
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Writes a request for the demo environment into `dir` and returns its path.
fn request(dir: &Path, name: &str, runbook: &str, subjects: &str, extra: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    fs::write(
        &path,
        format!(
            "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-TEST-{name}\n  \
             receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: agent.smith\n  \
             deadline: 2026-12-20\nspec:\n  environment: demo\n  runbook: {runbook}\n  \
             subjects:\n{subjects}{extra}"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

const EXPORT_AND_DELETE: &str = "  export: {}\n  delete: { confirm: true }\n";

fn plan_json(manifest: &str) -> (i32, Value) {
    let env_file = env_file(Path::new(manifest).parent().unwrap());
    let output = ucs_gdpr()
        .args(["plan", "--env-file", &env_file, "--format", "json", manifest])
        .output()
        .unwrap();
    let plan = crate::plan_value(&output.stdout)
        .unwrap_or_else(|e| panic!("not a plan ({e}): {}", transcript(&output)));
    (output.status.code().unwrap(), plan)
}

fn step<'a>(plan: &'a Value, contact: &str, id: &str) -> &'a Value {
    let contact = plan["body"]["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["contactId"] == contact)
        .unwrap_or_else(|| panic!("no contact {contact}"));
    contact["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()
}

/// Days left change every day: the snapshots pin everything else.
fn without_days_left(text: &str) -> String {
    text.lines()
        .map(|line| match line.find(" day(s) left") {
            Some(end) => {
                let start = line[..end].rfind(' ').map_or(0, |s| s + 1);
                format!("{}N{}", &line[..start], &line[end..])
            }
            None => match line.find("OVERDUE by ") {
                Some(at) => {
                    let rest = &line[at + 11..];
                    let digits = rest.chars().take_while(char::is_ascii_digit).count();
                    format!("{}OVERDUE by N{}", &line[..at], &rest[digits..])
                }
                None => line.to_owned(),
            },
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_text_and_markdown_plans_of_each_built_in_runbook_read_well() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "forget-me-on-premise",
            "    - contactId: 0001SaD2PVY4312K\n    - contactId: 0001SaD2PVY4315J\n",
            EXPORT_AND_DELETE,
        ),
        (
            "forget-me-cloud",
            "    - contactId: 0001SaD2PVY4312K\n    - contactId: 0001SaD2PVY4315J\n",
            EXPORT_AND_DELETE,
        ),
        (
            "export-only",
            "    - match: { TenantId: 101, EmailAddress: jane.doe@company.com }\n      expect: all\n",
            "  export: { dataSources: [main] }\n",
        ),
        (
            "batch-delete",
            "    - contactId: 0001SaD2PVY4312K\n    - contactId: 0002Ha7QB2MX000K\n    - contactId: 0001SaD2PVY4315J\n    - contactId: 0009ZZZZZZZZZZZZ\n",
            "  export: {}\n  delete: { confirm: true }\n  holds:\n    - { contactId: 0001SaD2PVY4315J, reason: legal claim 2026-77 }\n",
        ),
    ];
    for (runbook, subjects, extra) in cases {
        request(dir.path(), runbook, runbook, subjects, extra);
        // Run from the manifest's folder with a relative path: the plan records the path, and
        // the snapshot must not depend on where the temporary folder is.
        let manifest = format!("{runbook}.yaml");
        let env_file = env_file(dir.path());
        for format in ["text", "markdown"] {
            let output = ucs_gdpr()
                .current_dir(dir.path())
                .args(["plan", "--env-file", &env_file, "--format", format, &manifest])
                .output()
                .unwrap();
            insta::assert_snapshot!(
                format!("plan-{runbook}-{format}"),
                without_days_left(&transcript(&output))
            );
        }
    }
}

#[test]
fn several_matches_block_when_one_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = request(
        dir.path(),
        "ambiguous",
        "forget-me-on-premise",
        "    - match: { TenantId: 101, EmailAddress: jane.doe@company.com }\n",
        EXPORT_AND_DELETE,
    );
    let (code, plan) = plan_json(&manifest);
    assert_eq!(code, 1);
    let outcome = &plan["body"]["subjects"][0]["outcome"];
    assert_eq!(outcome["kind"], "ambiguous");
    let candidates: Vec<&str> = outcome["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contactId"].as_str().unwrap())
        .collect();
    assert_eq!(candidates, ["0001SaD2PVY4312K", "0001TbE3QWZ5520L"]);
    // UCS 9.1: one store, so one count per candidate.
    assert_eq!(outcome["candidates"][0]["interactions"], serde_json::json!({"main": 5}));
    assert_eq!(plan["body"]["blockers"][0]["code"], "subject::ambiguous");
    assert_eq!(
        plan["body"]["contacts"].as_array().unwrap().len(),
        0,
        "nothing is planned for an ambiguous match"
    );
}

#[test]
fn in_progress_interactions_block_on_premise_and_in_the_cloud_with_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let subjects = "    - contactId: 0001SaD2PVY4315J\n";
    let on_premise =
        request(dir.path(), "onprem", "forget-me-on-premise", subjects, EXPORT_AND_DELETE);
    let (code, plan) = plan_json(&on_premise);
    // Nothing documented removes an interaction from Interaction Server's queues and workbins
    // through UCS: the on-premise step blocks with what the operator must stop there.
    assert_eq!(code, 1);
    let stop = step(&plan, "0001SaD2PVY4315J", "in-flight");
    assert_eq!(stop["status"], "blocked");
    let notes = stop["notes"].to_string();
    assert!(notes.contains("stop them in Interaction Server"), "{notes}");
    assert!(notes.contains("then plan again"), "{notes}");
    assert!(
        notes.contains("00001c7T0CL100AA (email)") && notes.contains("Inbox-Review"),
        "{notes}"
    );
    assert!(notes.contains("00001c7T0CL100AB (chat)") && notes.contains("InProcess"), "{notes}");
    let blocker = plan["body"]["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["code"] == "step::ucs/stop-in-progress")
        .unwrap_or_else(|| panic!("{}", plan["body"]["blockers"]))
        .clone();
    assert_eq!(blocker["contactId"], "0001SaD2PVY4315J");
    assert_eq!(step(&plan, "0001SaD2PVY4315J", "delete")["status"], "skipped");

    let cloud = request(dir.path(), "cloud", "forget-me-cloud", subjects, EXPORT_AND_DELETE);
    let (code, plan) = plan_json(&cloud);
    assert_eq!(code, 1);
    assert_eq!(step(&plan, "0001SaD2PVY4315J", "in-flight")["status"], "blocked");
    assert!(
        plan["body"]["blockers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["code"] == "step::ucs/require-no-in-progress")
    );
}

#[test]
fn a_pending_callback_blocks_the_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = request(
        dir.path(),
        "callback",
        "forget-me-on-premise",
        "    - contactId: 0001SaD2PVY4315J\n",
        EXPORT_AND_DELETE,
    );
    let (code, plan) = plan_json(&manifest);
    assert_eq!(code, 1);
    let callbacks = step(&plan, "0001SaD2PVY4315J", "callbacks");
    assert_eq!(callbacks["status"], "blocked");
    assert!(callbacks["notes"].to_string().contains("9a7c5e1b-2f1d-4c33-9d0e-5c1f0a6b7e21"));
    assert_eq!(step(&plan, "0001SaD2PVY4315J", "delete")["status"], "skipped");
    assert_eq!(plan["body"]["summary"]["toDelete"], 0);
}

#[test]
fn a_hold_keeps_its_contact_out_of_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = request(
        dir.path(),
        "hold",
        "batch-delete",
        "    - contactId: 0002Ha7QB2MX000K\n    - contactId: 0001TbE3QWZ5520L\n",
        "  export: {}\n  delete: { confirm: true }\n  holds:\n    - { contactId: 0001TbE3QWZ5520L, reason: legal claim 2026-77 }\n",
    );
    let (code, plan) = plan_json(&manifest);
    assert_eq!(code, 0);
    for id in ["callbacks", "in-flight", "export", "delete", "verify"] {
        assert_eq!(step(&plan, "0001TbE3QWZ5520L", id)["status"], "skipped", "{id}");
    }
    assert_eq!(plan["body"]["summary"]["held"], 1);
    assert_eq!(plan["body"]["summary"]["toDelete"], 1);
}

#[test]
fn without_confirm_nothing_is_planned_for_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = request(
        dir.path(),
        "noconfirm",
        "forget-me-on-premise",
        "    - contactId: 0002Ha7QB2MX000K\n",
        "  export: {}\n  delete: { confirm: false }\n",
    );
    let (code, plan) = plan_json(&manifest);
    assert_eq!(code, 0);
    assert_eq!(plan["body"]["delete"], "report-only");
    assert_eq!(step(&plan, "0002Ha7QB2MX000K", "delete")["status"], "report-only");
    assert_eq!(plan["body"]["summary"]["toDelete"], 0);
    assert_eq!(plan["body"]["summary"]["toExport"], 1);
}

#[test]
fn an_unknown_contact_is_already_absent_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = request(
        dir.path(),
        "absent",
        "forget-me-on-premise",
        "    - contactId: 0009ZZZZZZZZZZZZ\n",
        EXPORT_AND_DELETE,
    );
    let output = ucs_gdpr()
        .args(["plan", "--env-file", &env_file(dir.path()), "--detailed-exitcode", &manifest])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "nothing to do: {}", transcript(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("already absent"));
}

#[test]
fn the_plan_id_is_stable_and_follows_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = request(
        dir.path(),
        "stable",
        "export-only",
        "    - contactId: 0002Ha7QB2MX000K\n",
        "  export: {}\n",
    );
    let first = dir.path().join("first.json");
    let second = dir.path().join("second.json");
    for out in [&first, &second] {
        ucs_gdpr()
            .args(["plan", "--env-file", &env_file(dir.path()), "--out"])
            .arg(out)
            .arg(&manifest)
            .assert()
            .success();
    }
    let (a, b) = (fs::read(&first).unwrap(), fs::read(&second).unwrap());
    assert_eq!(a, b, "the same state gives a byte-identical plan");

    // The same request against changed data: a dataset with one more interaction.
    let dataset = fs::read_to_string(repo_path("examples/sim/demo.yaml")).unwrap();
    let changed = dataset.replacen(
        "        - id: 00002d8U1DM200AA\n",
        "        - id: 00002d8U1DM200AZ\n          mediaType: email\n          status: Stopped\n          startDate: 2026-11-27T10:00:00Z\n        - id: 00002d8U1DM200AA\n",
        1,
    );
    assert_ne!(changed, dataset, "the edit applies");
    let data_dir = dir.path().join("sim");
    fs::create_dir(&data_dir).unwrap();
    fs::write(data_dir.join("demo.yaml"), changed).unwrap();
    fs::create_dir(data_dir.join("files")).unwrap();
    for file in fs::read_dir(repo_path("examples/sim/files")).unwrap() {
        let file = file.unwrap().path();
        fs::copy(&file, data_dir.join("files").join(file.file_name().unwrap())).unwrap();
    }
    let changed_dir = dir.path().join("changed");
    fs::create_dir(&changed_dir).unwrap();
    let env_file = changed_dir.join("ucs-gdpr.yaml");
    let text = fs::read_to_string(self::env_file(dir.path())).unwrap().replace(
        &repo_path("examples/sim/demo.yaml").display().to_string(),
        &data_dir.join("demo.yaml").display().to_string(),
    );
    fs::write(&env_file, text).unwrap();
    let third = dir.path().join("third.json");
    ucs_gdpr()
        .args(["plan", "--env-file"])
        .arg(&env_file)
        .arg("--out")
        .arg(&third)
        .arg(&manifest)
        .assert()
        .success();
    let (a, c): (Value, Value) =
        (crate::plan_value(&a).unwrap(), crate::plan_value(&fs::read(&third).unwrap()).unwrap());
    assert_ne!(a["planId"], c["planId"]);
    assert_ne!(a["body"]["contacts"][0]["fingerprint"], c["body"]["contacts"][0]["fingerprint"]);
}

#[test]
fn count_prints_what_the_dataset_holds() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = request(
        dir.path(),
        "count",
        "forget-me-on-premise",
        "    - match: { TenantId: 101, EmailAddress: jane.doe@company.com }\n      expect: all\n",
        EXPORT_AND_DELETE,
    );
    let output = ucs_gdpr()
        .args(["plan", "--env-file", &env_file(dir.path()), "--count", &manifest])
        .output()
        .unwrap();
    // Jane's two records on UCS 9.1: 5 + 1 interactions in the one store, no archive pass.
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "contacts to export: 2\ninteractions to export from main: 6\n\
         contacts to delete: 2\ninteractions to delete from main: 6\n",
        "{}",
        transcript(&output)
    );

    // The same story on UCS 8.5: 3 + 1 in main, 2 + 0 in the archive; `main` first, as the
    // scripts log their data sources.
    on_ucs_8_5(&manifest);
    let output = ucs_gdpr()
        .args(["plan", "--env-file", &env_file(dir.path()), "--count", &manifest])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "contacts to export: 2\ninteractions to export from main: 4\ninteractions to export from archive: 2\n\
         contacts to delete: 2\ninteractions to delete from main: 4\ninteractions to delete from archive: 2\n",
        "{}",
        transcript(&output)
    );
}

/// Points a request at the `demo-85` environment (the demo story on UCS 8.5).
fn on_ucs_8_5(manifest: &str) {
    let text = fs::read_to_string(manifest).unwrap();
    assert!(text.contains("  environment: demo\n"));
    fs::write(manifest, text.replace("  environment: demo\n", "  environment: demo-85\n")).unwrap();
}

#[test]
fn on_ucs_9_1_the_plan_has_one_source_and_notes_an_archive_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let subjects = "    - contactId: 0001SaD2PVY4312K\n";
    let extra = "  export: { dataSources: [main, archive] }\n  delete: { confirm: true }\n";
    let manifest = request(dir.path(), "v91", "forget-me-on-premise", subjects, extra);
    let (code, plan) = plan_json(&manifest);
    assert_eq!(code, 0, "a note, not an error: {plan}");
    let body = &plan["body"];
    assert_eq!(body["environment"]["ucsVersion"], "9.1");
    assert_eq!(body["export"]["dataSources"], serde_json::json!(["main"]));
    let contact = &body["contacts"][0];
    let sources: Vec<&String> = contact["sources"].as_object().unwrap().keys().collect();
    assert_eq!(sources, ["main"], "one store, read once");
    assert_eq!(contact["sources"]["main"]["interactions"], 5);
    assert_eq!(body["summary"]["interactions"], serde_json::json!({"main": 5}));
    let notes = step(&plan, "0001SaD2PVY4312K", "export")["notes"].to_string();
    assert!(notes.contains("archive: on UCS 9.1 this is the one store again"), "{notes}");
    assert!(notes.contains("not read a second time"), "{notes}");

    on_ucs_8_5(&manifest);
    let (code, plan) = plan_json(&manifest);
    assert_eq!(code, 0);
    let body = &plan["body"];
    assert_eq!(body["environment"]["ucsVersion"], "8.5");
    assert_eq!(body["export"]["dataSources"], serde_json::json!(["main", "archive"]));
    assert_eq!(body["summary"]["interactions"], serde_json::json!({"main": 3, "archive": 2}));
    let notes = step(&plan, "0001SaD2PVY4312K", "export")["notes"].to_string();
    assert!(!notes.contains("one store"), "{notes}");
}

const JANE: &str = "0001SaD2PVY4312K";
const JANE_AGAIN: &str = "0001TbE3QWZ5520L";

/// Jane's second record shares her e-mail address: a forget-me plan for Jane alone lists it,
/// warns in every rendering, and holds neither the address nor any other personal value.
#[test]
fn another_record_of_the_same_person_is_listed_and_a_partial_erasure_warns() {
    let dir = tempfile::tempdir().unwrap();
    let subjects = format!("    - contactId: {JANE}\n");
    let manifest =
        request(dir.path(), "other", "forget-me-on-premise", &subjects, EXPORT_AND_DELETE);
    let (code, plan) = plan_json(&manifest);
    assert_eq!(code, 0, "a warning does not block: {plan}");
    let others = plan["body"]["otherRecords"].as_array().unwrap();
    assert_eq!(others.len(), 1, "{others:?}");
    let other = &others[0];
    assert_eq!(other["contactId"], JANE_AGAIN);
    assert_eq!(other["sharesWith"], serde_json::json!([JANE]));
    assert_eq!(other["shared"].as_array().unwrap().len(), 1);
    assert_eq!(other["shared"][0]["attribute"], "EmailAddress");
    let digest = other["shared"][0]["digest"].as_str().unwrap();
    assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()), "{digest}");
    assert_eq!(other["interactions"], serde_json::json!({"main": 1}));
    assert_eq!(other["firstInteraction"], "2025-01-15T17:45:00Z");
    assert_eq!(other["lastInteraction"], "2025-01-15T17:45:00Z");
    let warnings = plan["body"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["code"], "subject::other-records-left-out");
    assert_eq!(warnings[0]["contactId"], JANE);
    let message = warnings[0]["message"].as_str().unwrap();
    assert!(message.contains(JANE_AGAIN) && message.contains("`EmailAddress`"), "{message}");
    let json = plan.to_string();
    let personal = crate::demo_personal_values();
    assert!(personal.iter().any(|v| v == "jane.doe@company.com"), "the scan knows the address");
    for value in &personal {
        assert!(!json.contains(value.as_str()), "the plan holds a personal value");
    }

    let env_file = env_file(dir.path());
    for format in ["text", "markdown"] {
        let output = ucs_gdpr()
            .args(["plan", "--env-file", &env_file, "--format", format, &manifest])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&output.stdout);
        assert!(shown.contains("WARNINGS") || shown.contains("#### Warnings"), "{shown}");
        assert!(shown.contains("Possible other records of the same person"), "{shown}");
        assert!(shown.contains(&format!("{JANE_AGAIN} shares EmailAddress")), "{shown}");
        for value in &personal {
            assert!(!shown.contains(value.as_str()), "the {format} plan holds a personal value");
        }
    }

    // An access request should know too: listed, but nothing is erased, so no warning.
    let export_only = request(dir.path(), "access", "export-only", &subjects, "  export: {}\n");
    let (code, plan) = plan_json(&export_only);
    assert_eq!(code, 0);
    assert_eq!(plan["body"]["otherRecords"][0]["contactId"], JANE_AGAIN);
    assert_eq!(plan["body"]["warnings"], serde_json::json!([]));
}

#[test]
fn naming_every_record_or_expect_all_clears_the_warning() {
    let dir = tempfile::tempdir().unwrap();
    let both = format!("    - contactId: {JANE}\n    - contactId: {JANE_AGAIN}\n");
    let all =
        "    - match: { TenantId: 101, EmailAddress: jane.doe@company.com }\n      expect: all\n";
    for (name, subjects) in [("both", both.as_str()), ("all", all)] {
        let manifest =
            request(dir.path(), name, "forget-me-on-premise", subjects, EXPORT_AND_DELETE);
        let (_, plan) = plan_json(&manifest);
        assert_eq!(plan["body"]["contacts"].as_array().unwrap().len(), 2, "{name}");
        assert_eq!(plan["body"]["otherRecords"], serde_json::json!([]), "{name}");
        assert_eq!(plan["body"]["warnings"], serde_json::json!([]), "{name}");
    }

    // A held contact is kept: its other record is listed, but nothing is partially erased.
    let subjects = format!("    - contactId: {JANE}\n");
    let held = format!(
        "{EXPORT_AND_DELETE}  holds:\n    - {{ contactId: {JANE}, reason: legal claim 2026-77 }}\n"
    );
    let manifest = request(dir.path(), "held", "forget-me-on-premise", &subjects, &held);
    let (_, plan) = plan_json(&manifest);
    assert_eq!(plan["body"]["otherRecords"][0]["contactId"], JANE_AGAIN);
    assert_eq!(plan["body"]["warnings"], serde_json::json!([]));
}

#[test]
fn detailed_exit_codes_tell_nothing_changes_and_blockers_apart() {
    let dir = tempfile::tempdir().unwrap();
    let changes = request(
        dir.path(),
        "changes",
        "export-only",
        "    - contactId: 0002Ha7QB2MX000K\n",
        "  export: {}\n",
    );
    let blocked = request(
        dir.path(),
        "blocked",
        "forget-me-cloud",
        "    - contactId: 0001SaD2PVY4315J\n",
        EXPORT_AND_DELETE,
    );
    let code = |manifest: &str| {
        ucs_gdpr()
            .args(["plan", "--env-file", &env_file(dir.path()), "--detailed-exitcode", manifest])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(code(&changes), Some(2));
    assert_eq!(code(&blocked), Some(1));
    let output = ucs_gdpr()
        .args(["plan", "--env-file", &env_file(dir.path()), "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
}

#[test]
fn no_rendering_of_a_plan_holds_personal_data() {
    let secrets = crate::demo_personal_values();
    assert!(secrets.len() >= 15, "{secrets:?}");
    let dir = tempfile::tempdir().unwrap();
    let manifest = request(
        dir.path(),
        "pii",
        "forget-me-on-premise",
        "    - match: { TenantId: 101, EmailAddress: jane.doe@company.com }\n      expect: all\n    - contactId: 0001SaD2PVY4315J\n    - match: { TenantId: 101, LastName: Doe }\n",
        EXPORT_AND_DELETE,
    );
    let mut seen = String::new();
    for args in
        [&["--format", "text"][..], &["--format", "markdown"], &["--format", "json"], &["--count"]]
    {
        let output = ucs_gdpr()
            .args(["plan", "--env-file", &env_file(dir.path())])
            .args(args)
            .arg(&manifest)
            .output()
            .unwrap();
        seen.push_str(&transcript(&output));
    }
    assert!(seen.contains("0001SaD2PVY4312K"), "the plans were made: {seen}");
    for secret in &secrets {
        assert!(!seen.contains(secret.as_str()), "`{secret}` appears in a plan rendering");
    }
}

#[test]
fn a_rest_environment_names_the_missing_secret_variable_never_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("ucs-gdpr.yaml");
    fs::write(
        &env,
        "apiVersion: ucs-gdpr/v1\nkind: Environments\nenvironments:\n  demo:\n    type: rest\n    \
         tenant: 101\n    hmacKeyEnv: UCS_GDPR_TEST_HMAC\n    ucs:\n      url: http://127.0.0.1:9/\n      \
         auth: { user: gdpr-bot, passwordEnv: UCS_GDPR_TEST_PASSWORD_UNSET }\n",
    )
    .unwrap();
    let manifest = request(
        dir.path(),
        "rest",
        "export-only",
        "    - contactId: 0002Ha7QB2MX000K\n",
        "  export: {}\n",
    );
    let output = ucs_gdpr()
        .args(["plan", "--env-file"])
        .arg(&env)
        .arg(&manifest)
        .env("UCS_GDPR_TEST_HMAC", "a-test-key-that-is-at-least-32-bytes-long")
        .env_remove("UCS_GDPR_TEST_PASSWORD_UNSET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("UCS_GDPR_TEST_PASSWORD_UNSET"), "{stderr}");
    assert!(stderr.contains("cannot connect to `demo`"), "{stderr}");
}

/// The Info Mart check in a plan, against a real PostgreSQL (the Info Mart tests' cluster).
mod info_mart {
    use super::*;
    use crate::infomart::{PASSWORD_VARIABLE, READER_PASSWORD, healthy_info_mart, info_mart};

    fn plan_with_info_mart(dsn: &str) -> (i32, Value, String) {
        let dir = tempfile::tempdir().unwrap();
        let env = env_file(dir.path());
        // The first `policy:` is the demo environment's.
        let text = fs::read_to_string(&env).unwrap().replacen(
            "    policy:\n",
            &format!("    infomart:\n      dsn: \"{dsn}\"\n      passwordEnv: {PASSWORD_VARIABLE}\n    policy:\n"),
            1,
        );
        fs::write(&env, text).unwrap();
        let manifest = request(
            dir.path(),
            "etl",
            "forget-me-on-premise",
            "    - contactId: 0001SaD2PVY4312K\n",
            EXPORT_AND_DELETE,
        );
        let output = ucs_gdpr()
            .args(["plan", "--env-file", &env, "--format", "json", &manifest])
            .env(PASSWORD_VARIABLE, READER_PASSWORD)
            .output()
            .unwrap();
        let plan: Value = crate::plan_value(&output.stdout)
            .unwrap_or_else(|e| panic!("not a plan ({e}): {}", transcript(&output)));
        let etl = &plan["body"]["requestSteps"][0];
        let note = etl["notes"][0].as_str().unwrap().to_owned();
        assert_eq!(etl["uses"], "infomart/etl-complete");
        (output.status.code().unwrap(), etl["status"].clone(), note)
    }

    #[test]
    fn a_caught_up_info_mart_lets_the_deletion_through_and_shows_its_mark() {
        let (code, status, note) =
            plan_with_info_mart(&info_mart("plan_caught_up", &healthy_info_mart()));
        assert_eq!((code, status), (0, Value::from("ready")), "{note}");
        assert!(note.contains("extracted up to 2026-11-28T09:00:00Z"), "{note}");
    }

    #[test]
    fn an_info_mart_behind_the_contacts_interactions_blocks_and_says_by_how_much() {
        let mut rows = healthy_info_mart();
        rows.retain(|row| !row.contains("CTL_EXTRACT_HISTORY (TABLE_NAME"));
        rows.push(crate::infomart::extraction("G_IR", 2, "2026-01-01 00:00:00+00"));
        let (code, status, note) = plan_with_info_mart(&info_mart("plan_behind", &rows));
        assert_eq!((code, status), (1, Value::from("blocked")), "{note}");
        assert!(note.starts_with("Info Mart is behind by"), "{note}");
    }

    #[test]
    fn an_unreachable_info_mart_blocks_the_deletion() {
        let (code, status, note) =
            plan_with_info_mart("host=127.0.0.1 port=1 dbname=gim user=gdpr_ro sslmode=disable");
        assert_eq!((code, status), (1, Value::from("blocked")), "{note}");
        assert!(note.starts_with("cannot confirm the ETL cycle is complete"), "{note}");
    }
}

/// The planner through the library, counting what it asks the simulator: a `contactId`
/// subject's record is read once (when resolving), not again when observing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_a_contact_id_reads_its_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = env_file(dir.path());
    let subjects = "    - contactId: 0002Ha7QB2MX000K\n";
    let (plan, stats) = plan_export_only(dir.path(), Path::new(&env_file), subjects, 4).await;
    assert_eq!(plan.body.contacts.len(), 1);
    assert_eq!(stats.calls.get("GetAttributes"), Some(&1), "{stats:?}");
}

/// Plans an `export-only` request of `subjects` in the environment `demo` of `env_file` (an
/// embedded simulator) through the library at `concurrency`: the plan, and what the simulator
/// counted.
async fn plan_export_only(
    dir: &Path,
    env_file: &Path,
    subjects: &str,
    concurrency: usize,
) -> (ucs_gdpr::plan::Plan, ucs_gdpr::sim::Stats) {
    use ucs_gdpr::environment::Environments;
    use ucs_gdpr::manifest::{Context, load_request};
    use ucs_gdpr::plan::{Etl, PlanInput, build};
    use ucs_gdpr::runbook::RunbookLibrary;

    let (environments, _) = Environments::load(env_file).unwrap();
    let runbooks = RunbookLibrary::built_in();
    let manifest = request(dir, "library", "export-only", subjects, "  export: {}\n");
    let context = Context {
        runbooks: &runbooks,
        environments: Some(&environments),
        now: jiff::Timestamp::now(),
    };
    let (report, request) = load_request(Path::new(&manifest), &context);
    let request = request.unwrap_or_else(|| panic!("{:?}", report.diagnostics));
    let connection = environments.connect("demo", None).await.unwrap();
    let input = PlanInput {
        request: &request,
        manifest_path: manifest.clone(),
        manifest_sha256: String::new(),
        runbook: runbooks.get("export-only").unwrap(),
        environment_name: "demo",
        environment: environments.get("demo").unwrap(),
        digester: &connection.digester,
        ucs_version: connection.ucs_version,
        concurrency,
        page_size: 100,
        etl: Etl::NotConfigured,
    };
    let plan = build(&input, &connection.client).await;
    let stats = connection.simulator.as_ref().unwrap().stats();
    (plan, stats)
}

/// Context Services without GMS: the profile is seen, its services cannot be (their API is
/// GMS's); the plan says so, and blocks when the policy requires every check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_gms_the_plan_says_context_services_services_cannot_be_looked_up() {
    let sim = ucs_gdpr::sim::Simulator::start(ucs_gdpr::sim::SimOptions::new(repo_path(
        "examples/sim/demo.yaml",
    )))
    .await
    .unwrap();
    for (require, status) in [(false, "ready"), (true, "blocked")] {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("ucs-gdpr.yaml");
        crate::workspace::EnvFile::rest(&sim.base_url(), "UCS_GDPR_TEST_HMAC")
            .setting(&format!("contextServices: {{ url: '{}' }}", sim.base_url()))
            .policy(&format!("      requireApproval: false\n      requireChecks: {require}\n"))
            .write(dir.path());
        let manifest = request(
            dir.path(),
            "no-gms",
            "forget-me-on-premise",
            "    - contactId: 0001SaD2PVY4312K\n",
            EXPORT_AND_DELETE,
        );
        let output = ucs_gdpr()
            .args(["plan", "--format", "json", "--env-file"])
            .arg(&env)
            .arg(&manifest)
            .env("UCS_GDPR_TEST_HMAC", "a-test-key-that-is-at-least-32-bytes-long")
            .output()
            .unwrap();
        let plan: Value = crate::plan_value(&output.stdout)
            .unwrap_or_else(|e| panic!("not a plan ({e}): {}", transcript(&output)));
        let context = step(&plan, "0001SaD2PVY4312K", "context");
        assert_eq!(context["status"], status, "{context}");
        let notes = context["notes"].to_string();
        assert!(notes.contains("GMS is not configured"), "{notes}");
        if !require {
            assert!(notes.contains("the profile"), "{notes}");
            assert!(!notes.contains("service(s)"), "no services are claimed: {notes}");
        }
    }
    assert!(sim.conformance().non_conforming.is_empty());
}

/// An identification that may be capped by UCS's select limit blocks the plan: nobody can be
/// sure every record of the person was found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identification_that_may_be_capped_blocks() {
    use ucs_gdpr::environment::Environments;
    use ucs_gdpr::manifest::{Context, load_request};
    use ucs_gdpr::plan::{Etl, PlanInput, build};
    use ucs_gdpr::runbook::RunbookLibrary;
    use ucs_gdpr::ucs::{ClientConfig, RestClient};

    let dir = tempfile::tempdir().unwrap();
    let (environments, _) = Environments::load(Path::new(&env_file(dir.path()))).unwrap();
    let runbooks = RunbookLibrary::built_in();
    let manifest = request(
        dir.path(),
        "capped",
        "export-only",
        "    - match: { TenantId: 101, EmailAddress: jane.doe@company.com }\n      expect: all\n",
        "  export: {}\n",
    );
    let context = Context {
        runbooks: &runbooks,
        environments: Some(&environments),
        now: jiff::Timestamp::now(),
    };
    let (report, request) = load_request(Path::new(&manifest), &context);
    let request = request.unwrap_or_else(|| panic!("{:?}", report.diagnostics));
    let connection = environments.connect("demo", None).await.unwrap();
    let environment = environments.get("demo").unwrap();
    let input = PlanInput {
        request: &request,
        manifest_path: manifest.clone(),
        manifest_sha256: String::new(),
        runbook: runbooks.get("export-only").unwrap(),
        environment_name: "demo",
        environment,
        digester: &connection.digester,
        concurrency: 4,
        page_size: 100,
        etl: Etl::NotConfigured,
        ucs_version: connection.ucs_version,
    };
    // Jane's address matches two contacts: complete without a select limit...
    let plan = build(&input, &connection.client).await;
    assert!(plan.body.blockers.is_empty(), "{:?}", plan.body.blockers);
    // ...and possibly capped when the select limit is 2.
    let mut config = ClientConfig::new(connection.simulator.as_ref().unwrap().base_url());
    config.select_limit = Some(2);
    let capped = RestClient::new(config).unwrap();
    let plan = build(&input, &capped).await;
    let blocker = plan.body.blockers.iter().find(|b| b.code == "subject::unreadable").unwrap();
    assert!(
        blocker.message.contains("cannot be sure every record was found"),
        "{}",
        blocker.message
    );
    assert!(!blocker.message.contains("jane"), "{}", blocker.message);
}

/// Issue 13: `spec.subjectsFile` lists contact ids beside the manifest (here a CSV whose header
/// names the column); each id is planned as a `contactId` subject after the manifest's own, and
/// the plan binds the file by its digest, so a file changed after review is refused by apply.
#[test]
fn a_batch_from_a_subjects_file_plans_each_id_and_binds_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let csv =
        "name,contactId,note\n\"Doe, J.\",0001SaD2PVY4312K,\n\n\"x\",0002Ha7QB2MX000K,\"a, b\"\n";
    fs::write(dir.path().join("ids.csv"), csv).unwrap();
    let manifest = request(
        dir.path(),
        "from-file",
        "export-only",
        "    - contactId: 0001SaD2PVY4315J\n",
        "  subjectsFile: ids.csv\n  export: {}\n",
    );
    let (code, plan) = plan_json(&manifest);
    assert_eq!(code, 0, "{plan}");
    let contacts: Vec<&str> = plan["body"]["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contactId"].as_str().unwrap())
        .collect();
    assert_eq!(contacts, ["0001SaD2PVY4312K", "0001SaD2PVY4315J", "0002Ha7QB2MX000K"]);
    let subjects = plan["body"]["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 3);
    assert_eq!(subjects[1]["index"], 2, "file subjects follow the manifest's own");
    assert_eq!(subjects[1]["contactId"], "0001SaD2PVY4312K");
    let file = &plan["body"]["request"]["subjectsFile"];
    assert_eq!(file["path"], "ids.csv");
    assert_eq!(file["subjects"], 2);
    assert_eq!(file["sha256"], ucs_gdpr::canonical::sha256_hex(csv.as_bytes()));
    for text in ["Doe", "a, b"] {
        assert!(!plan.to_string().contains(text), "the file's other columns stay out: {text}");
    }

    // Reviewed, then the file changes: apply refuses the plan and deletes or exports nothing.
    let env_file = env_file(dir.path());
    let saved = dir.path().join("plan.json");
    let output = ucs_gdpr()
        .args(["plan", "--env-file", &env_file, "--out"])
        .arg(&saved)
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", transcript(&output));
    fs::write(dir.path().join("ids.csv"), "contactId\n0001SaD2PVY4312K\n").unwrap();
    let output = ucs_gdpr().args(["apply", "--env-file", &env_file]).arg(&saved).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the subjects file `ids.csv`, which changed"), "{stderr}");
    let log = fs::read_to_string(dir.path().join("out/audit.jsonl")).unwrap();
    assert!(log.contains("subjects-file-changed"), "the refusal is audited: {log}");
    assert!(!log.contains("\"step.intent\""), "{log}");
}

/// Issue 13: a subjects file's mistakes are located by file and line, and never repeat a cell's
/// text (a mistyped id may be an e-mail address).
#[test]
fn a_subjects_file_s_mistakes_are_located_by_line_without_their_text() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("ids.txt"),
        "0001SaD2PVY4312K\njane.doe@company.com\n0001SaD2PVY4312K\n0001SaD2PVY4315J\n",
    )
    .unwrap();
    let manifest = request(
        dir.path(),
        "bad-file",
        "export-only",
        "    - contactId: 0001SaD2PVY4315J\n",
        "  subjectsFile: ids.txt\n  export: {}\n",
    );
    let env_file = env_file(dir.path());
    let output =
        ucs_gdpr().args(["validate", "--env-file", &env_file, &manifest]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let text = transcript(&output);
    assert!(text.contains("`ids.txt` line 2: not a valid contact id"), "{text}");
    assert!(text.contains("`ids.txt` line 3: repeats line 1"), "{text}");
    assert!(text.contains("`ids.txt` line 4: repeats subject 1 of the manifest"), "{text}");
    assert!(!text.contains("jane") && !text.contains("company.com"), "{text}");
    let output = ucs_gdpr().args(["plan", "--env-file", &env_file, &manifest]).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "nothing is planned: {}", transcript(&output));
}

/// Issue 13: a large plan's markdown fits one GitHub comment (65,536 characters): the summary
/// and every blocker in full, the details until the budget, then a note naming what was left
/// out and where it is. A small plan is shown whole, with no note.
#[test]
fn a_large_plan_s_markdown_fits_a_comment_with_the_blockers_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = request(
        dir.path(),
        "large",
        "forget-me-on-premise",
        "    - contactId: 0001SaD2PVY4312K\n    - contactId: 0001SaD2PVY4315J\n",
        EXPORT_AND_DELETE,
    );
    let (_, json) = plan_json(&manifest);
    let small: ucs_gdpr::plan::Plan = serde_json::from_value(json).unwrap();
    let today = jiff::civil::date(2026, 11, 25);
    let whole = ucs_gdpr::plan::render::markdown(&small, today);
    assert!(!whole.contains("not shown"), "{whole}");

    // 1,000 contacts like these two, each with its blocker (José's pending callback).
    let mut body = small.body;
    let template = body.contacts.clone();
    let blocker = body.blockers.iter().find(|b| b.contact_id.is_some()).unwrap().clone();
    body.contacts.clear();
    body.blockers.clear();
    for n in 0..1_000u32 {
        for contact in &template {
            let mut contact = contact.clone();
            let id = format!("{}{n:06}", &contact.contact_id.as_str()[..10]);
            contact.contact_id = ucs_gdpr::ucs::ContactId::new(&id).unwrap();
            body.contacts.push(contact);
        }
        if n < 300 {
            let mut blocker = blocker.clone();
            blocker.contact_id =
                Some(ucs_gdpr::ucs::ContactId::new(&format!("0001BLOCKED{n:05}")).unwrap());
            body.blockers.push(blocker);
        }
    }
    let large = ucs_gdpr::plan::seal(body);
    let text = ucs_gdpr::plan::render::markdown(&large, today);
    assert!(text.chars().count() <= 65_536, "{} characters", text.chars().count());
    for n in 0..300u32 {
        assert!(text.contains(&format!("contact `0001BLOCKED{n:05}`")), "blocker {n} is shown");
    }
    assert!(text.contains("#### Blockers") && text.contains("| contacts | export |"));
    let note =
        text.lines().rev().find(|l| l.contains("not shown")).expect("a note says what is left out");
    assert!(note.contains("more contact(s)") && note.contains(&large.plan_id), "{note}");
    assert!(note.contains("ucs-gdpr show"), "{note}");
}

/// Issue 13: the plan file is JSON Lines, so a plan of any size is written and read one contact
/// at a time: line 1 is the header (summary, blockers, the records' counts and digests, and
/// `planId` over it), then a line per subject, then a line per contact in id order. The file the
/// planner streams is byte for byte the file the in-memory plan writes; an edited line, a line
/// left out, lines swapped, or an edited header are each refused by `show` (and so by
/// `approve` and `apply`, which read the same way), and a plan of an earlier version is named.
#[test]
fn the_plan_file_is_a_header_then_a_line_per_record_and_every_line_is_bound_to_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = request(
        dir.path(),
        "lines",
        "batch-delete",
        "    - contactId: 0001TbE3QWZ5520L\n    - contactId: 0002Ha7QB2MX000K\n    - contactId: 0009ZZZZZZZZZZZZ\n",
        EXPORT_AND_DELETE,
    );
    let env = env_file(dir.path());
    let out = dir.path().join("plan.json");
    let output = ucs_gdpr()
        .args(["plan", "--env-file", &env, "--out"])
        .arg(&out)
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(output.status.code().is_some(), "{}", transcript(&output));
    let bytes = fs::read(&out).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 3 + 2, "header, 3 subjects, 2 contacts: {text}");
    let header: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(header["records"]["subjects"]["count"], 3);
    assert_eq!(header["records"]["contacts"]["count"], 2);
    assert_eq!(header["summary"]["contacts"], 2);
    assert_eq!(header["summary"]["alreadyAbsent"], 1);
    assert!(header.get("contacts").is_none() && header.get("subjects").is_none());
    assert!(lines[1..4].iter().all(|l| l.starts_with("{\"subject\":")), "{text}");
    assert!(lines[4].starts_with("{\"contact\":") && lines[4].contains("0001TbE3QWZ5520L"));
    assert!(lines[5].starts_with("{\"contact\":") && lines[5].contains("0002Ha7QB2MX000K"));
    // The contactId subject of no contact resolves as before: already absent.
    let subject: Value = serde_json::from_str(lines[3]).unwrap();
    assert_eq!(subject["subject"]["outcome"]["kind"], "already-absent", "{subject}");
    // The streamed file and the in-memory plan agree, byte for byte.
    let plan = ucs_gdpr::plan::Plan::from_json(&bytes).unwrap();
    assert_eq!(plan.to_canonical_json(), bytes);
    assert_eq!(ucs_gdpr::plan::seal(plan.body.clone()).plan_id, plan.plan_id);
    assert_eq!(header["planId"], plan.plan_id.as_str());

    let show = |content: &str| {
        let path = dir.path().join("edited.json");
        fs::write(&path, content).unwrap();
        let output = ucs_gdpr().args(["show"]).arg(&path).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, stderr) = show(&text);
    assert_eq!(code, Some(0), "the file as written shows: {stderr}");
    let edited_contact = text.replacen("\"fingerprint\":\"", "\"fingerprint\":\"0", 1);
    assert_ne!(edited_contact, text);
    let without_last = format!("{}\n", lines[..5].join("\n"));
    let swapped = format!("{}\n{}\n{}\n", lines[..4].join("\n"), lines[5], lines[4]);
    let edited_header = text.replacen("\"kind\":\"Plan\"", "\"kind\":\"Plan \"", 1);
    assert_ne!(edited_header, text);
    for (what, content, says) in [
        ("an edited contact line", edited_contact.as_str(), "do not match its header"),
        ("a contact line left out", without_last.as_str(), "do not match its header"),
        ("two contact lines swapped", swapped.as_str(), "do not match its header"),
        ("an edited header", edited_header.as_str(), "does not match its id"),
    ] {
        let (code, stderr) = show(content);
        assert_eq!(code, Some(1), "{what} was not refused: {stderr}");
        assert!(stderr.contains(says), "{what}: {stderr}");
    }
    let old = serde_json::json!({"planId": plan.plan_id, "body": {"kind": "Plan"}}).to_string();
    let (code, stderr) = show(&old);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("earlier ucs-gdpr") && stderr.contains("plan again"), "{stderr}");
}

/// Issue 13: the text of a large plan stays readable. The header, the blockers and the summary
/// are printed in full; the details stop at a budget, with a note saying how many contacts were
/// left out and where they are (the plan file). Markdown stays within one GitHub comment.
#[test]
fn the_text_of_a_large_plan_folds_its_details_and_keeps_the_blockers_and_the_summary() {
    use ucs_gdpr::plan::render;
    let dir = tempfile::tempdir().unwrap();
    let subjects = "    - contactId: 0001SaD2PVY4315J\n    - contactId: 0002Ha7QB2MX000K\n";
    let manifest = request(dir.path(), "large", "batch-delete", subjects, EXPORT_AND_DELETE);
    let (_, value) = plan_json(&manifest);
    let mut plan: ucs_gdpr::plan::Plan = serde_json::from_value(value).unwrap();
    assert!(plan.is_blocked(), "the demo's pending callback blocks: {:?}", plan.body.blockers);
    let template = plan.body.contacts[0].clone();
    for n in 0..5_000 {
        let mut contact = template.clone();
        contact.contact_id = ucs_gdpr::ucs::ContactId::new(&format!("0009X{n:011}")).unwrap();
        plan.body.contacts.push(contact);
    }
    let today = jiff::civil::date(2026, 12, 1);
    let text = render::text(&plan, today);
    assert!(text.len() < render::TEXT_BUDGET + 4096, "{} bytes", text.len());
    assert!(text.contains("BLOCKERS (2)") && text.contains("pending GMS callback"), "{text}");
    let note = text.lines().find(|l| l.contains("not shown")).expect("a note on what was left out");
    assert!(note.contains("more contact(s)") && note.contains("plan file"), "{note}");
    assert!(text.trim_end().ends_with("2 blocker(s)"), "the summary comes last");
    let markdown = render::markdown(&plan, today);
    assert!(markdown.len() <= 65_536, "{} bytes", markdown.len());
    assert!(markdown.contains("more contact(s)"));
}

/// The planner reads ahead of a slow contact (it keeps id order) but never has more reads
/// under way than the environment's concurrency: the simulator counts the calls it is
/// answering at once. (Without the limit, the read-ahead window would put 4 times as many
/// calls on the server.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_never_has_more_calls_under_way_than_the_concurrency() {
    use ucs_gdpr::sim::{GenerateOptions, generate};

    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset.json");
    generate(&GenerateOptions {
        contacts: 60,
        interactions: 1,
        attachment_bytes: 0,
        seed: 7,
        out: dataset.clone(),
    })
    .unwrap();
    let generated: Value = serde_json::from_slice(&fs::read(&dataset).unwrap()).unwrap();
    let subjects: String = generated["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("    - contactId: \"{}\"\n", c["id"].as_str().unwrap()))
        .collect();
    let env_file = crate::workspace::EnvFile::embedded(&dataset)
        .settings("    faults: { seed: 5, latencyMs: 6, jitterMs: 6 }\n")
        .write(dir.path());
    let concurrency = 3;
    let (plan, stats) = plan_export_only(dir.path(), &env_file, &subjects, concurrency).await;
    assert_eq!(plan.body.contacts.len(), 60);
    assert!(stats.calls.get("GetAttributes").copied().unwrap_or(0) >= 60, "{stats:?}");
    assert!(
        (2..=concurrency as u64).contains(&stats.peak_in_flight),
        "at most {concurrency} calls at once (and more than one): {}",
        stats.peak_in_flight
    );
}
