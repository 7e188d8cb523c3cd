//! `ucs-gdpr approve` and `ucs-gdpr apply` end to end: the real binary against the embedded
//! simulator, with its state kept in a folder so the test can look at the world afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use ucs_gdpr::sim::{SimOptions, Simulator};
use ucs_gdpr::ucs::{ClientConfig, ContactId, ErrorKind, RestClient, Ucs};

use crate::workspace::EnvFile;
use crate::{repo_path, transcript, ucs_gdpr};

const JANE: &str = "0001SaD2PVY4312K";
const JANE_AGAIN: &str = "0001TbE3QWZ5520L";
const JOSE: &str = "0001SaD2PVY4315J";
const MAIN_ONLY: &str = "0002Ha7QB2MX000K";

/// A workspace: an environments file whose `demo` keeps its simulator state, audit log and
/// exports in a temporary folder.
struct Workspace {
    dir: tempfile::TempDir,
    dataset: PathBuf,
}

impl Workspace {
    fn new(policy: &str, faults: &str) -> Self {
        Self::with_dataset("examples/sim/demo.yaml", policy, faults)
    }

    fn with_dataset(dataset: &str, policy: &str, faults: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dataset = repo_path(dataset);
        EnvFile::embedded(&dataset).settings(faults).policy(policy).write(dir.path());
        Workspace { dir, dataset }
    }

    fn demo() -> Self {
        Self::new("      requireApproval: false\n", "")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn env_file(&self) -> String {
        self.path("ucs-gdpr.yaml").display().to_string()
    }

    fn request(&self, name: &str, runbook: &str, subjects: &[&str], extra: &str) -> String {
        let subjects: String = subjects.iter().map(|s| format!("    - contactId: {s}\n")).collect();
        let path = self.path(&format!("{name}.yaml"));
        fs::write(
            &path,
            format!(
                "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-{name}\n  \
                 receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: agent.smith\n\
                 spec:\n  environment: demo\n  runbook: {runbook}\n  subjects:\n{subjects}{extra}"
            ),
        )
        .unwrap();
        path.display().to_string()
    }

    fn run(&self, args: &[&str]) -> Output {
        ucs_gdpr().args(args).args(["--env-file", &self.env_file()]).output().unwrap()
    }

    fn audit_verifies(&self) -> Output {
        ucs_gdpr().args(["audit", "verify"]).arg(self.path("audit.jsonl")).output().unwrap()
    }

    /// Starts the simulator on the kept state, to look at the world.
    async fn world(&self) -> (ucs_gdpr::sim::RunningSim, RestClient) {
        let mut options = SimOptions::new(&self.dataset);
        options.state_dir = Some(self.path("state"));
        let sim = Simulator::start(options).await.unwrap();
        let client = RestClient::new(ClientConfig::new(sim.base_url())).unwrap();
        (sim, client)
    }
}

async fn exists(client: &RestClient, id: &str) -> bool {
    match client.get_contact(&ContactId::new(id).unwrap()).await {
        Ok(_) => true,
        Err(error) if error.kind == ErrorKind::NotFound => false,
        Err(error) => panic!("{error}"),
    }
}

const EXPORT_AND_DELETE: &str = "  export: {}\n  delete: { confirm: true }\n";

fn receipt(workspace: &Workspace, request: &str) -> Value {
    let path = workspace.path("exports").join(format!("DSR-{request}")).join("receipt.json");
    serde_json::from_slice(&fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_erases_jane_leaving_a_verified_export_a_receipt_and_a_log_that_verifies() {
    let workspace = Workspace::demo();
    let manifest = workspace.request("jane", "forget-me-on-premise", &[JANE], EXPORT_AND_DELETE);
    let output = workspace.run(&["apply", &manifest]);
    assert!(output.status.success(), "{}", transcript(&output));

    let bag = workspace.path("exports/DSR-jane");
    for name in [
        format!("data/contact-{JANE}.json"),
        format!("data/interactions-for-contact-{JANE}.json"),
        format!("data/context-services-{JANE}.json"),
    ] {
        assert!(bag.join(&name).is_file(), "{name}");
    }
    let report = ucs_gdpr::export::validate_dir(&bag).unwrap();
    // Her three JSON files, the readable page, and her three attachments decoded beside it.
    assert_eq!(report.files, 3 + 1 + 3, "{report:?}");
    // Her Context Services data is in the bag: the profile, her service with its states and
    // tasks, and the anonymous service keyed by her phone number.
    let context: Value = serde_json::from_slice(
        &fs::read(bag.join(format!("data/context-services-{JANE}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(context["contactId"], JANE);
    assert_eq!(context["profile"]["customer_id"], JANE);
    assert_eq!(context["profile"]["email"], "jane.doe@company.com");
    let services = context["services"].as_array().unwrap();
    let ids: Vec<(&str, bool)> = services
        .iter()
        .map(|s| (s["service"]["service_id"].as_str().unwrap(), s["anonymous"].as_bool().unwrap()))
        .collect();
    assert_eq!(ids, [("4041", false), ("361-a3793cef-d559-4f9f-a95d-64555a4ba371", true)]);
    assert_eq!(services[0]["states"].as_array().unwrap().len(), 2);
    assert_eq!(services[0]["tasks"][0]["task_type"], "verify-identity");
    assert_inline_attachments_are_the_originals(
        &bag.join(format!("data/interactions-for-contact-{JANE}.json")),
    );

    let (sim, client) = workspace.world().await;
    assert!(!exists(&client, JANE).await, "Jane is gone");
    assert!(exists(&client, JOSE).await, "nobody else is");
    let jane = ContactId::new(JANE).unwrap();
    assert!(client.get_profile(&jane).await.unwrap().is_none(), "her profile is gone");
    assert!(client.list_services(&jane).await.unwrap().is_empty(), "her services are gone");
    let anonymous = reqwest::get(format!(
        "{}/genesys/1/cs/services/anonymous/%2B44%2020%207946%200958",
        sim.base_url()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert_eq!(anonymous, "[]", "the service keyed by her number is gone");

    let verified = workspace.audit_verifies();
    assert!(verified.status.success(), "{}", transcript(&verified));

    let receipt = receipt(&workspace, "jane");
    assert_eq!(receipt["contacts"][0]["contactId"], JANE);
    let steps: Vec<(&str, &str)> = receipt["contacts"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("callbacks", "ok"),
            ("in-flight", "ok"),
            ("export", "ok"),
            ("context", "ok"),
            ("delete", "ok"),
            ("verify", "ok")
        ]
    );
    // UCS 9.1 (the demo): one store, read once; each of Jane's five interactions exported once.
    let planned = receipt["contacts"][0]["plannedInteractions"].as_object().unwrap();
    assert_eq!(planned.keys().collect::<Vec<_>>(), ["main"], "{planned:?}");
    assert_eq!(planned["main"], 5);
    let export = &receipt["contacts"][0]["steps"][2];
    assert_eq!(export["count"], 5, "Jane's five interactions, each exported once");
    let file: Value = serde_json::from_slice(
        &fs::read(bag.join(format!("data/interactions-for-contact-{JANE}.json"))).unwrap(),
    )
    .unwrap();
    let sources = file["dataSources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "no archive pass on 9.1");
    let mut ids: Vec<&str> = sources[0]["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every interaction exactly once");
}

/// UCS 8.5 (an embedded rehearsal): main and archive are separate data sources, both exported
/// and both checked empty after the delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_ucs_8_5_apply_exports_main_and_archive_and_erases_both() {
    let workspace =
        Workspace::with_dataset("examples/sim/demo-8.5.yaml", "      requireApproval: false\n", "");
    let manifest = workspace.request("jane", "forget-me-on-premise", &[JANE], EXPORT_AND_DELETE);
    let output = workspace.run(&["apply", &manifest]);
    assert!(output.status.success(), "{}", transcript(&output));
    let receipt = receipt(&workspace, "jane");
    assert_eq!(receipt["contacts"][0]["plannedInteractions"]["main"], 3);
    assert_eq!(receipt["contacts"][0]["plannedInteractions"]["archive"], 2);
    let export = &receipt["contacts"][0]["steps"][2];
    assert_eq!(export["count"], 5, "3 interactions in main and 2 in the archive were exported");
    let bag = workspace.path("exports/DSR-jane");
    let file: Value = serde_json::from_slice(
        &fs::read(bag.join(format!("data/interactions-for-contact-{JANE}.json"))).unwrap(),
    )
    .unwrap();
    let sources: Vec<&str> = file["dataSources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["dataSource"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["main", "archive"]);
    let (_sim, client) = workspace.world().await;
    assert!(!exists(&client, JANE).await, "Jane is gone");
    let archived = ucs_gdpr::ucs::list_all_interactions(
        &client,
        &ContactId::new(JANE).unwrap(),
        ucs_gdpr::ucs::DataSource::Archive,
        10,
    )
    .await;
    match archived {
        Err(error) => assert_eq!(error.kind, ErrorKind::NotFound, "{error}"),
        Ok(listing) => {
            assert_eq!(listing, ucs_gdpr::ucs::InteractionListing::Found(Vec::new()), "emptied");
        }
    }
}

/// Finds every inlined attachment in an export file and compares it with the dataset's file.
fn assert_inline_attachments_are_the_originals(path: &Path) {
    use base64::Engine as _;
    let export: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let mut found = Vec::new();
    fn walk(value: &Value, found: &mut Vec<(String, Vec<u8>)>) {
        match value {
            Value::Object(map) => {
                if let (Some(Value::String(name)), Some(Value::String(content))) = (
                    map.get("name").or_else(|| map.get("Name")),
                    map.get("content").or_else(|| map.get("Content")),
                ) {
                    let bytes = base64::engine::general_purpose::STANDARD.decode(content).unwrap();
                    found.push((name.clone(), bytes));
                }
                map.values().for_each(|v| walk(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    walk(&export, &mut found);
    assert!(!found.is_empty(), "Jane's e-mail and chat have attachments");
    let originals: Vec<Vec<u8>> = fs::read_dir(repo_path("examples/sim/files"))
        .unwrap()
        .map(|f| fs::read(f.unwrap().path()).unwrap())
        .collect();
    for (name, bytes) in &found {
        assert!(!bytes.is_empty(), "{name}");
        let original = originals.iter().any(|o| o == bytes);
        let inline_text = std::str::from_utf8(bytes).is_ok();
        assert!(original || inline_text, "{name} decodes to neither an original file nor text");
    }
    assert!(found.iter().any(|(_, b)| b.starts_with(b"%PDF")), "the invoice PDF round-trips");
    assert!(found.iter().any(|(_, b)| b.starts_with(b"\x89PNG")), "the screenshot PNG round-trips");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_confirm_nothing_is_deleted_and_the_receipt_says_so() {
    let workspace = Workspace::demo();
    let manifest = workspace.request(
        "report",
        "forget-me-on-premise",
        &[MAIN_ONLY],
        "  export: {}\n  delete: { confirm: false }\n",
    );
    let output = workspace.run(&["apply", &manifest]);
    assert!(output.status.success(), "{}", transcript(&output));
    let (_sim, client) = workspace.world().await;
    assert!(exists(&client, MAIN_ONLY).await, "not deleted without confirm");
    let receipt = receipt(&workspace, "report");
    let delete = receipt["contacts"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "delete")
        .unwrap()
        .clone();
    assert_eq!(
        (delete["outcome"].as_str(), delete["reason"].as_str()),
        (Some("skipped"), Some("not-confirmed"))
    );
    assert!(workspace.path(&format!("exports/DSR-report/data/contact-{MAIN_ONLY}.json")).is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_keeps_its_contact_and_everyone_else_is_erased() {
    let workspace = Workspace::demo();
    let manifest = workspace.request(
        "hold",
        "batch-delete",
        &[JANE, MAIN_ONLY],
        "  export: {}\n  delete: { confirm: true }\n  holds:\n    - { contactId: 0002Ha7QB2MX000K, reason: legal claim 2026-77 }\n",
    );
    let output = workspace.run(&["apply", &manifest]);
    assert!(output.status.success(), "{}", transcript(&output));
    let (_sim, client) = workspace.world().await;
    assert!(exists(&client, MAIN_ONLY).await, "held");
    assert!(!exists(&client, JANE).await);
    assert!(!workspace.path(&format!("exports/DSR-hold/data/contact-{MAIN_ONLY}.json")).exists());
}

#[test]
fn blocked_plans_are_refused_before_any_side_effect() {
    let workspace = Workspace::demo();
    // José has a pending callback and interactions in progress; the cloud runbook blocks.
    let blocked = workspace.request("blocked", "forget-me-cloud", &[JOSE], EXPORT_AND_DELETE);
    let output = workspace.run(&["apply", &blocked]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("blocker"), "{}", transcript(&output));
    assert!(!workspace.path("exports/DSR-blocked/data").exists(), "nothing exported");
    let verified = workspace.audit_verifies();
    assert!(verified.status.success(), "{}", transcript(&verified));
    let log = fs::read_to_string(workspace.path("audit.jsonl")).unwrap();
    assert!(log.contains("\"run.refused\"") && !log.contains("\"step.intent\""), "{log}");
}

/// On premise, the tool never stops an interaction itself: Interaction Server owns queues and
/// workbins. José's plan blocks with the list, apply refuses, and his e-mail is still in its
/// workbin and his chat still in process afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_premise_in_progress_interactions_block_and_are_left_to_interaction_server() {
    let workspace = Workspace::demo();
    let blocked = workspace.request("onprem", "forget-me-on-premise", &[JOSE], EXPORT_AND_DELETE);
    let output = workspace.run(&["apply", &blocked]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let shown = transcript(&output);
    assert!(shown.contains("stop them in Interaction Server"), "{shown}");
    let (_sim, client) = workspace.world().await;
    let listing = ucs_gdpr::ucs::list_all_interactions(
        &client,
        &ContactId::new(JOSE).unwrap(),
        ucs_gdpr::ucs::DataSource::Main,
        10,
    )
    .await
    .unwrap();
    let ucs_gdpr::ucs::InteractionListing::Found(list) = listing else { panic!("main exists") };
    let states: Vec<(String, String, Option<String>)> = list
        .iter()
        .map(|i| (i.id.to_string(), format!("{:?}", i.status), i.workbin.clone()))
        .collect();
    assert_eq!(
        states,
        [
            ("00001c7T0CL100AA".to_owned(), "Pending".to_owned(), Some("Inbox-Review".to_owned())),
            ("00001c7T0CL100AB".to_owned(), "InProcess".to_owned(), None),
        ]
    );
}

#[test]
fn an_environment_that_requires_approval_refuses_missing_forged_and_wrong_approvals() {
    let keys = tempfile::tempdir().unwrap();
    let workspace = Workspace::new(
        &format!(
            "      requireApproval: true\n      approvers: [dpo.alice, privacy.bob]\n      \
             minApprovals: 2\n      approverKeys: {{ dpo.alice: {}, privacy.bob: {} }}\n",
            keys.path().join("alice/audit-signing.pub").display(),
            keys.path().join("bob/audit-signing.pub").display()
        ),
        "",
    );
    for who in ["alice", "bob", "mallory"] {
        ucs_gdpr().args(["audit", "keygen", "--out"]).arg(keys.path().join(who)).assert().success();
    }
    let manifest = workspace.request("approved", "export-only", &[MAIN_ONLY], "  export: {}\n");
    let plan = workspace.path("plan.json").display().to_string();
    let output = workspace.run(&["plan", &manifest, "--out", &plan]);
    assert!(output.status.success(), "{}", transcript(&output));

    // A manifest alone is not enough here.
    let output = workspace.run(&["apply", &manifest]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("requires an approved plan"));

    let approve = |by: &str, key: Option<&str>, out: &str| {
        let mut command = ucs_gdpr();
        command.args([
            "approve",
            &plan,
            "--by",
            by,
            "--out",
            &workspace.path(out).display().to_string(),
        ]);
        if let Some(key) = key {
            command.arg("--key").arg(keys.path().join(key).join("audit-signing.key"));
        }
        command.assert().success();
        workspace.path(out).display().to_string()
    };
    let alice = approve("dpo.alice", Some("alice"), "alice.json");
    let bob = approve("privacy.bob", Some("bob"), "bob.json");
    let forged = approve("dpo.alice", Some("mallory"), "forged.json");
    let unsigned = approve("dpo.alice", None, "unsigned.json");

    let apply = |approvals: &[&str]| {
        let mut args = vec!["apply", plan.as_str()];
        for approval in approvals {
            args.extend(["--approval", approval]);
        }
        workspace.run(&args)
    };
    let refused = |output: Output, why: &str| {
        assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(why),
            "{why}: {}",
            transcript(&output)
        );
    };
    refused(apply(&[]), "needs 2 approval(s)");
    refused(apply(&[&bob]), "1 more distinct approver(s) needed");
    refused(apply(&[&forged, &bob]), "does not verify");
    refused(apply(&[&unsigned, &bob]), "must be signed");
    // Every refusal is in the audit log, with its reason (the gate is the library's).
    let log = fs::read_to_string(workspace.path("audit.jsonl")).unwrap();
    for reason in ["approval-not-enough", "approval-forged", "approval-unsigned"] {
        assert!(log.contains(&format!("\"{reason}\"")), "{reason}: {log}");
    }
    assert!(!log.contains("\"step.intent\""), "{log}");

    // An approval of another plan.
    let other_manifest = workspace.request("other", "export-only", &[JANE], "  export: {}\n");
    let other_plan = workspace.path("other.json").display().to_string();
    assert!(workspace.run(&["plan", &other_manifest, "--out", &other_plan]).status.success());
    let wrong = workspace.path("wrong.json").display().to_string();
    ucs_gdpr()
        .args(["approve", &other_plan, "--by", "privacy.bob", "--out", &wrong])
        .assert()
        .success();
    refused(apply(&[&alice, &wrong]), "not for this plan");

    // Two valid approvals: it runs.
    let output = apply(&[&alice, &bob]);
    assert!(output.status.success(), "{}", transcript(&output));
    assert!(
        workspace.path(&format!("exports/DSR-approved/data/contact-{MAIN_ONLY}.json")).is_file()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_a_stale_plan_and_says_what_changed() {
    let workspace = Workspace::demo();
    let manifest =
        workspace.request("stale", "forget-me-on-premise", &[JANE, JANE_AGAIN], EXPORT_AND_DELETE);
    let plan = workspace.path("plan.json").display().to_string();
    let output = workspace.run(&["plan", &manifest, "--out", &plan]);
    assert!(output.status.success(), "{}", transcript(&output));

    // Someone deletes Jane's second record after the review.
    {
        let (sim, client) = workspace.world().await;
        client.delete_contact(&ContactId::new(JANE_AGAIN).unwrap()).await.unwrap();
        sim.shutdown().await;
    }
    let output = workspace.run(&["apply", &plan]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the plan is stale"), "{stderr}");
    assert!(stderr.contains(JANE_AGAIN), "{stderr}");
    assert!(stderr.contains("plan` again"), "{stderr}");
    let (_sim, client) = workspace.world().await;
    assert!(exists(&client, JANE).await, "nothing was done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_services_change_after_review_makes_the_plan_stale() {
    let workspace = Workspace::demo();
    let manifest =
        workspace.request("cs-stale", "forget-me-on-premise", &[JANE], EXPORT_AND_DELETE);
    let plan = workspace.path("plan.json").display().to_string();
    let output = workspace.run(&["plan", &manifest, "--out", &plan]);
    assert!(output.status.success(), "{}", transcript(&output));
    // Her service ends up deleted by someone else after the review: what apply would export
    // and erase is no longer what was approved.
    {
        let (sim, client) = workspace.world().await;
        let service = ucs_gdpr::ucs::ServiceId::new("4041").unwrap();
        client.delete_service(&service).await.unwrap();
        sim.shutdown().await;
    }
    let output = workspace.run(&["apply", &plan]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the plan is stale"), "{stderr}");
    assert!(stderr.contains("Context Services"), "{stderr}");
    let (_sim, client) = workspace.world().await;
    assert!(exists(&client, JANE).await, "nothing was done");
}

#[test]
fn a_plan_edited_by_hand_is_refused() {
    let workspace = Workspace::demo();
    let manifest = workspace.request("edited", "export-only", &[MAIN_ONLY], "  export: {}\n");
    let plan = workspace.path("plan.json");
    assert!(
        workspace.run(&["plan", &manifest, "--out", &plan.display().to_string()]).status.success()
    );
    let text = fs::read_to_string(&plan).unwrap().replace("\"toExport\":1", "\"toExport\":2");
    fs::write(&plan, text).unwrap();
    let output = workspace.run(&["apply", &plan.display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("changed after it was made"),
        "{}",
        transcript(&output)
    );
}

#[test]
fn the_audit_log_plan_receipt_and_output_hold_no_personal_data() {
    let workspace = Workspace::demo();
    let manifest =
        workspace.request("pii", "forget-me-on-premise", &[JANE, JANE_AGAIN], EXPORT_AND_DELETE);
    let plan = workspace.path("plan.json").display().to_string();
    let planned = workspace.run(&["plan", &manifest, "--out", &plan]);
    // Every log line too, at the most talkative level, as JSON.
    let applied = ucs_gdpr()
        .args(["--log-format", "json", "apply", &plan, "--env-file", &workspace.env_file()])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", transcript(&applied));
    let log_lines: Vec<&str> = std::str::from_utf8(&applied.stderr)
        .unwrap()
        .lines()
        .filter(|line| line.starts_with('{'))
        .collect();
    assert!(log_lines.len() > 10, "debug logging is on");
    for line in &log_lines {
        serde_json::from_str::<Value>(line).unwrap();
    }
    let shown =
        ucs_gdpr().args(["audit", "show"]).arg(workspace.path("audit.jsonl")).output().unwrap();
    let mut seen = transcript(&planned) + &transcript(&applied) + &transcript(&shown);
    for file in
        ["plan.json", "audit.jsonl", "exports/DSR-pii/receipt.json", "exports/DSR-pii/bag-info.txt"]
    {
        seen.push_str(&fs::read_to_string(workspace.path(file)).unwrap());
    }
    let secrets = crate::demo_personal_values();
    assert!(secrets.len() >= 15);
    for secret in secrets {
        assert!(!seen.contains(&secret), "`{secret}` leaked");
    }
    // The export itself is the one place personal data belongs.
    let export =
        fs::read_to_string(workspace.path(&format!("exports/DSR-pii/data/contact-{JANE}.json")))
            .unwrap();
    assert!(export.contains("jane.doe@company.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_completes_through_injected_faults_and_the_log_shows_each_retry() {
    let workspace = Workspace::new(
        "      requireApproval: false\n",
        "    faults: { seed: 7, errorRate: 0.15, resetRate: 0.05, timeoutRate: 0.02 }\n    \
         timeouts: { connectMs: 2000, readMs: 2000 }\n",
    );
    let manifest = workspace.request(
        "faults",
        "forget-me-on-premise",
        &[JANE, JANE_AGAIN, MAIN_ONLY],
        EXPORT_AND_DELETE,
    );
    let output = workspace.run(&["apply", &manifest]);
    assert!(output.status.success(), "{}", transcript(&output));
    let log = fs::read_to_string(workspace.path("audit.jsonl")).unwrap();
    assert!(log.contains("\"step.retry\""), "the retries are in the audit trail");
    assert!(workspace.audit_verifies().status.success());
    let (_sim, client) = workspace.world().await;
    for id in [JANE, JANE_AGAIN, MAIN_ONLY] {
        assert!(!exists(&client, id).await, "{id}");
    }
}

/// Invariants 1, 4 and 5 under SIGKILL: kill `apply` at many moments of a batch, check that
/// nothing absent lacks its export, re-run to completion, and check the log verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_at_any_moment_resumes_to_completion_without_deleting_an_unexported_contact() {
    let contacts = [JANE, JANE_AGAIN, MAIN_ONLY];
    let prepare = || {
        let workspace = Workspace::new(
            "      requireApproval: false\n",
            "    faults: { seed: 1, latencyMs: 8 }\n",
        );
        let manifest =
            workspace.request("crash", "forget-me-on-premise", &contacts, EXPORT_AND_DELETE);
        let plan = workspace.path("plan.json").display().to_string();
        assert!(workspace.run(&["plan", &manifest, "--out", &plan]).status.success());
        (workspace, plan)
    };
    let start = |workspace: &Workspace, plan: &str| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin!("ucs-gdpr"))
            .args(["apply", plan, "--concurrency", "1", "--env-file", &workspace.env_file()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long an undisturbed run takes here, so that the kill points spread over all of it:
    // the faster of two runs, since a machine busy with other work during one calibration run
    // would otherwise push every kill point past the end of the runs that follow.
    let duration = (0..2)
        .map(|_| {
            let (workspace, plan) = prepare();
            let started = std::time::Instant::now();
            assert!(start(&workspace, &plan).wait().unwrap().success());
            started.elapsed()
        })
        .min()
        .unwrap();
    const POINTS: u32 = 24;
    let mut kills_that_landed = 0;
    for point in 0..POINTS {
        let (workspace, plan) = prepare();
        let mut child = start(&workspace, &plan);
        std::thread::sleep(duration * (point + 1) / (POINTS + 2));
        if child.try_wait().unwrap().is_none() {
            kills_that_landed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();

        // Invariant 1 at the moment of the kill: whoever is gone has a verified export on disk.
        {
            let (sim, client) = workspace.world().await;
            let manifest =
                fs::read_to_string(workspace.path("exports/DSR-crash/manifest-sha256.txt"))
                    .unwrap_or_default();
            for id in contacts {
                if !exists(&client, id).await {
                    for name in [
                        format!("data/contact-{id}.json"),
                        format!("data/interactions-for-contact-{id}.json"),
                    ] {
                        let bytes = fs::read(workspace.path("exports/DSR-crash").join(&name))
                            .unwrap_or_else(|_| {
                                panic!("kill point {point}: {id} deleted without {name}")
                            });
                        let digest = ucs_gdpr::canonical::sha256_hex(&bytes);
                        assert!(
                            manifest.contains(&format!("{digest}  {name}")),
                            "kill point {point}: {name} not verified"
                        );
                    }
                }
            }
            sim.shutdown().await;
        }

        // Invariant 4: the same plan re-run completes.
        let output = workspace.run(&["apply", &plan, "--concurrency", "1"]);
        assert!(output.status.success(), "kill point {point}: {}", transcript(&output));
        let (_sim, client) = workspace.world().await;
        for id in contacts {
            assert!(!exists(&client, id).await, "kill point {point}: {id}");
        }
        assert!(
            ucs_gdpr::export::validate_dir(&workspace.path("exports/DSR-crash")).is_ok(),
            "kill point {point}"
        );
        // Invariant 5: the log verifies (an interrupted run is reported, not tampering).
        let verified = workspace.audit_verifies();
        assert!(verified.status.success(), "kill point {point}: {}", transcript(&verified));
    }
    assert!(kills_that_landed >= 20, "the kills must land during runs: {kills_that_landed}");
}

/// The receipt temporary files a run killed with SIGKILL leaves (its spool beside the audit
/// log) are removed by the next run, which says so; a file some live process holds is not,
/// nor a file of another name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_run_removes_what_a_killed_run_left_and_nothing_in_use() {
    let workspace = Workspace::new(
        "      requireApproval: false\n",
        "    faults: { seed: 3, latencyMs: 40 }\n",
    );
    let contacts = [JANE, JANE_AGAIN, MAIN_ONLY];
    let manifest =
        workspace.request("leftovers", "forget-me-on-premise", &contacts, EXPORT_AND_DELETE);
    let plan = workspace.path("plan.json").display().to_string();
    assert!(workspace.run(&["plan", &manifest, "--out", &plan]).status.success());
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin!("ucs-gdpr"))
        .args(["apply", &plan, "--concurrency", "1", "--env-file", &workspace.env_file()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let spool = workspace.path(&format!(".receipt-spool-{}-0", child.id()));
    let log = workspace.path("audit.jsonl");
    let started = std::time::Instant::now();
    while !(spool.exists()
        && fs::read_to_string(&log).unwrap_or_default().contains("\"step.intent\""))
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "apply never started");
        assert!(child.try_wait().unwrap().is_none(), "apply ended before the kill");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(spool.exists(), "the killed run left its spool");
    // Beside the bag: one a killed run left while writing a receipt, one in use by a live
    // process (this one, holding its lock), and one that is not a receipt's.
    let exports = workspace.path("exports");
    let stale = exports.join(".receipt-3999999-4");
    fs::write(&stale, b"{\"contacts\": [").unwrap();
    let live = exports.join(format!(".receipt-spool-{}-77", std::process::id()));
    let held = fs::File::create(&live).unwrap();
    held.lock().unwrap();
    let other = exports.join(".receipt-notes");
    fs::write(&other, b"kept").unwrap();

    let output = workspace.run(&["apply", &plan, "--concurrency", "1"]);
    assert!(output.status.success(), "{}", transcript(&output));
    assert!(!spool.exists(), "the killed run's spool is gone");
    assert!(!stale.exists(), "the killed run's receipt file is gone");
    assert!(live.exists(), "a file a live process holds stays");
    assert!(other.exists(), "a file of another name stays");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("removed receipt temporary file(s) left by a run that was killed").count(),
        2,
        "{stderr}"
    );
    assert!(!stderr.contains("Jane") && !stderr.contains('@'), "{stderr}");
    // No receipt file of either run is left beside the log or the bag.
    for dir in [workspace.path(""), exports.clone()] {
        let left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".receipt-") && n != ".receipt-notes" && !n.ends_with("-77"))
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", dir.display());
    }
    // And the receipt is right: every contact deleted, none left not started.
    let receipt = receipt(&workspace, "leftovers");
    let listed = receipt["contacts"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{receipt}");
    for contact in listed {
        assert_eq!(contact["notStarted"], false, "{receipt}");
        assert!(contact["failure"].is_null(), "{receipt}");
    }
    assert_eq!(receipt["interrupted"], false, "{receipt}");
    let (_sim, client) = workspace.world().await;
    for id in contacts {
        assert!(!exists(&client, id).await, "{id}");
    }
    assert!(workspace.audit_verifies().status.success());
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_on_one_contact_gives_a_partial_receipt_and_exit_1() {
    // The first delete (the first contact in id order is Jane) fails with a 500: permanent.
    let workspace = Workspace::new(
        "      requireApproval: false\n",
        "    faults:\n      script: [{ operation: DeleteContact, nth: 1, kind: permanent }]\n",
    );
    let manifest =
        workspace.request("partial", "forget-me-on-premise", &[JANE, MAIN_ONLY], EXPORT_AND_DELETE);
    let output = workspace.run(&["apply", &manifest, "--concurrency", "1"]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let receipt = receipt(&workspace, "partial");
    let failures: Vec<&Value> =
        receipt["contacts"].as_array().unwrap().iter().map(|c| &c["failure"]).collect();
    assert_eq!(failures[0][0], "delete", "{receipt}");
    assert!(
        failures[0][1].as_str().unwrap().starts_with("ucs.deletecontact.permanent"),
        "{receipt}"
    );
    assert!(failures[1].is_null(), "the other contact finished: {receipt}");
    let (_sim, client) = workspace.world().await;
    assert!(exists(&client, JANE).await, "the failed delete left Jane");
    assert!(!exists(&client, MAIN_ONLY).await, "the other contact was erased");
    assert!(workspace.audit_verifies().status.success());
    let log = fs::read_to_string(workspace.path("audit.jsonl")).unwrap();
    assert!(log.contains("\"step.failed\""), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_scheduling_records_what_ran_and_the_same_command_resumes() {
    let workspace = Workspace::new(
        "      requireApproval: false\n",
        "    faults: { seed: 3, latencyMs: 25 }\n",
    );
    let manifest = workspace.request(
        "interrupted",
        "forget-me-on-premise",
        &[JANE, JANE_AGAIN, MAIN_ONLY],
        EXPORT_AND_DELETE,
    );
    let plan = workspace.path("plan.json").display().to_string();
    assert!(workspace.run(&["plan", &manifest, "--out", &plan]).status.success());
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin!("ucs-gdpr"))
        .args(["apply", &plan, "--concurrency", "1", "--env-file", &workspace.env_file()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first contact is under way, then interrupt as a terminal would.
    let log = workspace.path("audit.jsonl");
    let started = std::time::Instant::now();
    while !fs::read_to_string(&log).unwrap_or_default().contains("\"step.intent\"") {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "apply never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Run the same command again to resume")
    );
    let receipt = receipt(&workspace, "interrupted");
    assert_eq!(receipt["interrupted"], true, "{receipt}");
    assert!(workspace.audit_verifies().status.success());

    let output = workspace.run(&["apply", &plan]);
    assert!(output.status.success(), "{}", transcript(&output));
    let (_sim, client) = workspace.world().await;
    for id in [JANE, JANE_AGAIN, MAIN_ONLY] {
        assert!(!exists(&client, id).await, "{id}");
    }
}

#[test]
fn on_a_terminal_apply_draws_a_progress_bar_under_the_contact_lines() {
    let workspace = Workspace::demo();
    let manifest = workspace.request("bar", "export-only", &[JANE, MAIN_ONLY], "  export: {}\n");
    // `script` gives the command a pseudo-terminal, as a person's shell would.
    let command = format!(
        "{} apply {manifest} --env-file {}",
        assert_cmd::cargo::cargo_bin!("ucs-gdpr").display(),
        workspace.env_file()
    );
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", transcript(&output));
    let seen = String::from_utf8_lossy(&output.stdout);
    assert!(seen.contains("[1/2] contact "), "{seen}");
    assert!(seen.contains("] 2/2 contacts · "), "{seen}");
    assert!(seen.contains("ETA"), "{seen}");
}

#[test]
fn a_changed_attribute_value_makes_the_plan_stale() {
    let workspace = Workspace::demo();
    let manifest = workspace.request("attribute", "export-only", &[JANE], "  export: {}\n");
    let plan = workspace.path("plan.json").display().to_string();
    assert!(workspace.run(&["plan", &manifest, "--out", &plan]).status.success());

    // Jane's e-mail address changes in UCS after the review (straight in the simulator's
    // database: the connector has no call for it, as the engine never edits contacts).
    let db = rusqlite::Connection::open(workspace.path("state/main.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE contacts SET attributes = replace(attributes, 'jane.doe@company.com', \
             'jane.new@company.com') WHERE id = ?1",
            [JANE],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let output = workspace.run(&["apply", &plan]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("contact {JANE} changed")), "{stderr}");
    assert!(!stderr.contains("jane.new"), "the new value is not shown: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_leaves_the_subject_whole_context_services_included() {
    // Jane's first attachment download fails for good: the export step fails, and nothing of
    // hers (UCS contact, Context Services profile) may have been deleted before it.
    let workspace = Workspace::new(
        "      requireApproval: false\n",
        "    faults:\n      script: [{ operation: GetDocument, nth: 1, kind: permanent }]\n",
    );
    let manifest = workspace.request("halfway", "forget-me-on-premise", &[JANE], EXPORT_AND_DELETE);
    let output = workspace.run(&["apply", &manifest]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let receipt = receipt(&workspace, "halfway");
    assert_eq!(receipt["contacts"][0]["failure"][0], "export", "{receipt}");
    let (_sim, client) = workspace.world().await;
    let jane = ContactId::new(JANE).unwrap();
    assert!(exists(&client, JANE).await, "Jane's contact is kept");
    assert!(client.get_profile(&jane).await.unwrap().is_some(), "and her profile");
    assert_eq!(client.list_services(&jane).await.unwrap().len(), 1, "and her service");
    let record = client.get_contact(&jane).await.unwrap();
    assert_eq!(client.list_anonymous_services(&record).await.unwrap().len(), 1, "and the other");
    assert!(workspace.audit_verifies().status.success());
}

/// Issue 12: a plan edited after planning (the held contact un-held and deleted, every check
/// set to `ready`, the export removed) with its `planId` recomputed, as anyone can, is refused:
/// apply plans again and the two differ. Nothing is deleted, and the refusal says what differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_and_rehashed_plan_refused() {
    let workspace = Workspace::demo();
    let manifest = workspace.request(
        "rehashed",
        "forget-me-on-premise",
        &[JANE, JOSE],
        &format!("{EXPORT_AND_DELETE}  holds:\n    - {{ contactId: {JOSE}, reason: legal claim 2026-77 }}\n"),
    );
    let plan_path = workspace.path("plan.json");
    let output = workspace.run(&["plan", &manifest, "--out", &plan_path.display().to_string()]);
    assert!(output.status.success(), "{}", transcript(&output));
    let mut plan = ucs_gdpr::plan::Plan::from_json(&fs::read(&plan_path).unwrap()).unwrap();
    let original = plan.plan_id.clone();
    plan.body.export = None;
    for contact in &mut plan.body.contacts {
        contact.hold = None;
        contact.export = false;
        contact.delete = true;
        for step in &mut contact.steps {
            step.status = ucs_gdpr::plan::StepStatus::Ready;
        }
    }
    for step in &mut plan.body.request_steps {
        step.status = ucs_gdpr::plan::StepStatus::Ready;
    }
    // And a subject (compared one at a time, apart from the rest of the head).
    let subject = plan.body.subjects.iter_mut().find(|s| s.index == 2).unwrap();
    subject.match_digest = Some("0".repeat(64));
    let plan = ucs_gdpr::plan::seal(plan.body);
    assert_ne!(plan.plan_id, original);
    fs::write(&plan_path, plan.to_canonical_json()).unwrap();
    // The edited file is a well-formed plan: its id matches its body.
    assert!(ucs_gdpr::plan::Plan::from_json(&fs::read(&plan_path).unwrap()).is_ok());

    let output = workspace.run(&["apply", &plan_path.display().to_string()]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not match what planning again"), "{stderr}");
    assert!(stderr.contains(&format!("/contacts/{JOSE}/hold")), "{stderr}");
    assert!(stderr.contains(&format!("/contacts/{JOSE}/delete")), "{stderr}");
    assert!(stderr.contains("/export:"), "{stderr}");
    let subject = format!("/subjects/2/matchDigest: the plan says \"{}\"", "0".repeat(64));
    let subject = stderr.find(&subject[..60]).unwrap_or_else(|| panic!("{stderr}"));
    // In the order of the plan's fields: contacts, export, ..., subjects.
    let export = stderr.find("- /export:").unwrap();
    let contacts = stderr.find(&format!("/contacts/{JOSE}/hold")).unwrap();
    assert!(contacts < export && export < subject, "{stderr}");
    let log = fs::read_to_string(workspace.path("audit.jsonl")).unwrap();
    assert!(log.contains("\"run.refused\"") && log.contains("plan-mismatch"), "{log}");
    assert!(!log.contains("\"step.intent\""), "{log}");
    let (_sim, client) = workspace.world().await;
    assert!(exists(&client, JOSE).await, "the held contact is kept");
    assert!(exists(&client, JANE).await, "nothing was deleted");
}

/// Issue 12: a copy of the environments file that says `requireApproval: false` cannot run a
/// plan made under the policy that requires approval: the plan records the digest of the policy
/// it was made under, and apply refuses a plan whose policy differs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lax_env_file_refused() {
    let keys = tempfile::tempdir().unwrap();
    let alice = keys.path().join("alice");
    ucs_gdpr().args(["audit", "keygen", "--out"]).arg(&alice).assert().success();
    let workspace = Workspace::new(
        &format!(
            "      requireApproval: true\n      approvers: [dpo.alice]\n      \
             approverKeys: {{ dpo.alice: {} }}\n",
            alice.join("audit-signing.pub").display()
        ),
        "",
    );
    let manifest = workspace.request("lax", "forget-me-on-premise", &[JANE], EXPORT_AND_DELETE);
    let plan = workspace.path("plan.json").display().to_string();
    let output = workspace.run(&["plan", &manifest, "--out", &plan]);
    assert!(output.status.success(), "{}", transcript(&output));
    let strict = fs::read_to_string(workspace.path("ucs-gdpr.yaml")).unwrap();
    let lax = workspace.path("lax-environments.yaml");
    fs::write(&lax, strict.replace("requireApproval: true", "requireApproval: false")).unwrap();

    let output = ucs_gdpr().args(["apply", &plan, "--env-file"]).arg(&lax).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("made under another policy"), "{stderr}");
    let log = fs::read_to_string(workspace.path("audit.jsonl")).unwrap();
    assert!(log.contains("\"run.refused\"") && log.contains("policy-differs"), "{log}");
    assert!(!log.contains("\"step.intent\""), "{log}");
    assert!(!workspace.path("exports/DSR-lax/data").exists(), "nothing exported");
    let (_sim, client) = workspace.world().await;
    assert!(exists(&client, JANE).await, "nothing was deleted");
}

/// Issue 12: where approval is required, an approver without a registered key makes the
/// environments file invalid (their unsigned approval would prove nothing), as does a
/// `minApprovals` no list of approvers can meet; and an unsigned approval by a keyless approver
/// never counts, whatever the policy.
#[test]
fn unsigned_keyless_approver_refused_where_approval_is_required() {
    let keys = tempfile::tempdir().unwrap();
    let alice = keys.path().join("alice");
    ucs_gdpr().args(["audit", "keygen", "--out"]).arg(&alice).assert().success();
    let keyless = Workspace::new(
        &format!(
            "      requireApproval: true\n      approvers: [dpo.alice, privacy.bob]\n      \
             minApprovals: 2\n      approverKeys: {{ dpo.alice: {} }}\n",
            alice.join("audit-signing.pub").display()
        ),
        "",
    );
    let manifest = keyless.request("keyless", "export-only", &[MAIN_ONLY], "  export: {}\n");
    let output = keyless.run(&["plan", &manifest]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("environments::approver-without-key"), "{stderr}");
    assert!(stderr.contains("`privacy.bob` has no registered key"), "{stderr}");

    let nobody = Workspace::new(
        "      requireApproval: true\n      approvers: []\n      minApprovals: 2\n",
        "",
    );
    let manifest = nobody.request("nobody", "export-only", &[MAIN_ONLY], "  export: {}\n");
    let output = nobody.run(&["plan", &manifest]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("environments::approvals"),
        "{}",
        transcript(&output)
    );

    // The library never counts it either: here approval is optional, bob is listed and keyless.
    let optional = Workspace::new(
        "      requireApproval: false\n      approvers: [dpo.alice, privacy.bob]\n      minApprovals: 1\n",
        "",
    );
    let (environments, _) =
        ucs_gdpr::environment::Environments::load(&optional.path("ucs-gdpr.yaml")).unwrap();
    let environment = environments.get("demo").unwrap();
    let plan_id = "0".repeat(64);
    let approval = ucs_gdpr::apply::approval::Approval::new(&plan_id, "privacy.bob", None, None);
    let refused = ucs_gdpr::apply::approval::check(
        &plan_id,
        &[approval],
        environment,
        &environments.base_dir,
    )
    .unwrap_err();
    assert!(
        matches!(refused, ucs_gdpr::apply::approval::ApprovalError::NoKey { ref by } if by == "privacy.bob"),
        "{refused}"
    );
}

/// Issue 12: UCS that cannot be read during the re-check is not UCS that changed. Every call
/// answered 503: apply retries the re-check, then refuses as *unreachable* (on screen and in the
/// log), not as a stale plan; a UCS that fails only for a moment is retried through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_ucs_refused_as_unreachable() {
    let workspace = Workspace::demo();
    let manifest =
        workspace.request("unreachable", "forget-me-on-premise", &[JANE], EXPORT_AND_DELETE);
    let plan = workspace.path("plan.json").display().to_string();
    let output = workspace.run(&["plan", &manifest, "--out", &plan]);
    assert!(output.status.success(), "{}", transcript(&output));
    let healthy = fs::read_to_string(workspace.path("ucs-gdpr.yaml")).unwrap();
    let with_faults = |faults: &str| {
        let text = healthy.replace("    policy:\n", &format!("{faults}    policy:\n"));
        assert_ne!(text, healthy);
        fs::write(workspace.path("ucs-gdpr.yaml"), text).unwrap();
    };

    with_faults("    faults: { seed: 7, errorRate: 1.0 }\n");
    let output = workspace.run(&["apply", &plan]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("UCS is unreachable"), "{stderr}");
    assert!(!stderr.contains("stale"), "{stderr}");
    let log = fs::read_to_string(workspace.path("audit.jsonl")).unwrap();
    assert!(log.contains("\"run.refused\"") && log.contains("\"unreachable\""), "{log}");
    assert!(!log.contains("stale-plan") && !log.contains("\"step.intent\""), "{log}");

    // Unreadable for a moment (the first read of the contact fails for good, which the client
    // does not retry): the re-check is retried and the same plan runs.
    with_faults(
        "    faults:\n      script: [{ operation: GetAttributes, nth: 1, kind: permanent }]\n",
    );
    let output = workspace.run(&["apply", &plan]);
    assert!(output.status.success(), "{}", transcript(&output));
    let (_sim, client) = workspace.world().await;
    assert!(!exists(&client, JANE).await);
}

/// Issue 12: approvers could not read what they signed. `show` renders a saved plan as `plan`
/// prints it (text, markdown, its canonical JSON), and `approve` prints the plan's summary
/// before it writes the approval.
#[test]
fn show_renders_a_saved_plan_and_approve_prints_it_first() {
    let workspace = Workspace::demo();
    let manifest = workspace.request("show", "export-only", &[MAIN_ONLY], "  export: {}\n");
    let plan = workspace.path("plan.json").display().to_string();
    let planned = workspace.run(&["plan", &manifest, "--out", &plan]);
    assert!(planned.status.success(), "{}", transcript(&planned));

    let shown = ucs_gdpr().args(["show", &plan]).output().unwrap();
    assert!(shown.status.success(), "{}", transcript(&shown));
    assert_eq!(String::from_utf8_lossy(&shown.stdout), String::from_utf8_lossy(&planned.stdout));
    let markdown = ucs_gdpr().args(["show", &plan, "--format", "markdown"]).output().unwrap();
    assert!(String::from_utf8_lossy(&markdown.stdout).starts_with("### ucs-gdpr plan for"));
    let json = ucs_gdpr().args(["show", &plan, "--format", "json"]).output().unwrap();
    assert_eq!(json.stdout, fs::read(&plan).unwrap(), "the plan file itself");

    let out = workspace.path("approval.json");
    let approved = ucs_gdpr()
        .args(["approve", &plan, "--by", "dpo.alice", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(approved.status.success(), "{}", transcript(&approved));
    let stdout = String::from_utf8_lossy(&approved.stdout);
    let summary = stdout.find("Plan ").expect("the plan's summary");
    let written = stdout.find("approved plan").expect("the approval");
    assert!(summary < written, "{stdout}");
    assert!(out.is_file());

    // An edited plan is not shown as if it were one.
    fs::write(
        &plan,
        fs::read_to_string(&plan).unwrap().replace("\"toExport\":1", "\"toExport\":2"),
    )
    .unwrap();
    let shown = ucs_gdpr().args(["show", &plan]).output().unwrap();
    assert_eq!(shown.status.code(), Some(1), "{}", transcript(&shown));
}

// Issue 12, "Evidence is kept": a second run never destroys the first run's evidence.

/// The bag's `receipt-<run>.json` files, by name.
fn run_receipts(bag: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(bag)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("receipt-") && n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

/// The seq of every `run.start` record in the log, in order.
fn run_starts(workspace: &Workspace) -> Vec<u64> {
    fs::read_to_string(workspace.path("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["event"] == "run.start")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn receipts_of_every_run_kept() {
    let workspace = Workspace::demo();
    let manifest = workspace.request("rerun", "forget-me-on-premise", &[JANE], EXPORT_AND_DELETE);
    let plan = workspace.path("plan.json").display().to_string();
    assert!(workspace.run(&["plan", &manifest, "--out", &plan]).status.success());
    let first = workspace.run(&["apply", &plan]);
    assert!(first.status.success(), "{}", transcript(&first));
    let again = workspace.run(&["apply", &plan]);
    assert!(again.status.success(), "{}", transcript(&again));

    let runs = run_starts(&workspace);
    assert_eq!(runs.len(), 2, "two runs in the log");
    let bag = workspace.path("exports/DSR-rerun");
    let expected: Vec<String> = runs.iter().map(|r| format!("receipt-{r}.json")).collect();
    assert_eq!(run_receipts(&bag), expected, "one receipt per run, named by its run id");

    // The first run's receipt: what it did, with its counts, by run 1.
    let first = read_json(&bag.join(&expected[0]));
    assert_eq!(first["run"], runs[0]);
    let export = |r: &Value| {
        r["contacts"][0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "export")
            .unwrap()
            .clone()
    };
    assert_eq!(export(&first)["count"], 5, "{first}");
    assert_eq!(export(&first)["resumed"], false);
    assert_eq!(export(&first)["doneBy"]["run"], runs[0]);
    // The second run resumed: its receipt still says what was done, by which run.
    let second = read_json(&bag.join(&expected[1]));
    assert_eq!(second["run"], runs[1]);
    assert_eq!(export(&second)["resumed"], true, "{second}");
    assert_eq!(export(&second)["count"], 5, "a resumed step keeps the counts: {second}");
    assert_eq!(export(&second)["doneBy"]["run"], runs[0], "done by the first run: {second}");

    // The cumulative receipt: both runs, and the first run's counts and outcomes.
    let cumulative = receipt(&workspace, "rerun");
    assert_eq!(cumulative["kind"], "CumulativeReceipt");
    let listed: Vec<&str> = cumulative["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["receipt"].as_str().unwrap())
        .collect();
    assert_eq!(listed, expected);
    let export = export(&cumulative);
    assert_eq!((export["outcome"].as_str(), export["count"].as_u64()), (Some("ok"), Some(5)));
    assert_eq!(export["doneBy"]["run"], runs[0], "{cumulative}");
    assert_eq!(export["doneBy"]["planId"], first["planId"]);
    let delete = cumulative["contacts"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "delete")
        .unwrap()
        .clone();
    assert_eq!(delete["outcome"], "ok", "deleted by the first run, not 'resumed' with nothing");
    assert_eq!(delete["doneBy"]["run"], runs[0]);
    assert_eq!(cumulative["contacts"][0]["plannedInteractions"]["main"], 5);

    // Every receipt is in the tag manifest, so validation covers it.
    let tags = fs::read_to_string(bag.join("tagmanifest-sha256.txt")).unwrap();
    for name in expected.iter().map(String::as_str).chain(["receipt.json"]) {
        let digest = ucs_gdpr::canonical::sha256_hex(&fs::read(bag.join(name)).unwrap());
        assert!(tags.contains(&format!("{digest}  {name}\n")), "{name} listed: {tags}");
    }
    ucs_gdpr::export::validate_dir(&bag).unwrap();
    crate::export::bagit_python_validates(&bag).unwrap();
    // A receipt edited afterwards is caught.
    let mut edited = fs::read_to_string(bag.join(&expected[0])).unwrap();
    edited = edited.replace("\"count\": 5", "\"count\": 4");
    fs::write(bag.join(&expected[0]), edited).unwrap();
    assert!(ucs_gdpr::export::validate_dir(&bag).is_err(), "an edited receipt fails validation");
}

#[test]
fn the_bag_keeps_the_plan_it_ran_and_its_approvals() {
    let keys = tempfile::tempdir().unwrap();
    let workspace = Workspace::new(
        &format!(
            "      requireApproval: true\n      approvers: [dpo.alice]\n      \
             approverKeys: {{ dpo.alice: {} }}\n",
            keys.path().join("alice/audit-signing.pub").display(),
        ),
        "",
    );
    ucs_gdpr().args(["audit", "keygen", "--out"]).arg(keys.path().join("alice")).assert().success();
    let manifest = workspace.request("kept", "export-only", &[MAIN_ONLY], "  export: {}\n");
    let plan_path = workspace.path("plan.json");
    let plan = plan_path.display().to_string();
    assert!(workspace.run(&["plan", &manifest, "--out", &plan]).status.success());
    let approval = workspace.path("plan.approval.dpo.alice.json");
    ucs_gdpr()
        .args(["approve", &plan, "--by", "dpo.alice", "--key"])
        .arg(keys.path().join("alice/audit-signing.key"))
        .assert()
        .success();
    let apply = || {
        let output =
            workspace.run(&["apply", &plan, "--approval", &approval.display().to_string()]);
        assert!(output.status.success(), "{}", transcript(&output));
    };
    apply();

    let plan_id = crate::plan_value(&fs::read(&plan_path).unwrap()).unwrap()["planId"]
        .as_str()
        .unwrap()
        .to_owned();
    let bag = workspace.path("exports/DSR-kept");
    let kept_plan = bag.join(format!("plans/plan-{plan_id}.json"));
    assert_eq!(fs::read(&kept_plan).unwrap(), fs::read(&plan_path).unwrap(), "the plan, as made");
    let kept_approval = bag.join(format!("approvals/plan-{plan_id}.approval.dpo.alice.json"));
    let kept: Value = read_json(&kept_approval);
    let given: Value = read_json(&approval);
    assert_eq!(kept, given, "the approval, signature included");
    assert!(kept["signature"].is_string());

    // A second approval by the same approver (another time, another signature): the first one
    // stays, the second goes beside it; re-running with the first changes nothing.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ucs_gdpr()
        .args(["approve", &plan, "--by", "dpo.alice", "--key"])
        .arg(keys.path().join("alice/audit-signing.key"))
        .assert()
        .success();
    apply();
    let beside = bag.join(format!("approvals/plan-{plan_id}.approval.dpo.alice.2.json"));
    assert_eq!(read_json(&kept_approval), given, "never overwritten");
    assert_eq!(read_json(&beside), read_json(&approval), "the new one beside it");
    let approvals: Vec<_> = fs::read_dir(bag.join("approvals")).unwrap().collect();
    assert_eq!(approvals.len(), 2);
    let plans: Vec<_> = fs::read_dir(bag.join("plans")).unwrap().collect();
    assert_eq!(plans.len(), 1, "the same plan is kept once");

    // Listed in the tag manifest: validation covers them, ours and the reference one.
    let tags = fs::read_to_string(bag.join("tagmanifest-sha256.txt")).unwrap();
    for path in [&kept_plan, &kept_approval, &beside] {
        let name = path.strip_prefix(&bag).unwrap().display().to_string();
        let digest = ucs_gdpr::canonical::sha256_hex(&fs::read(path).unwrap());
        assert!(tags.contains(&format!("{digest}  {name}\n")), "{name}: {tags}");
    }
    ucs_gdpr::export::validate_dir(&bag).unwrap();
    crate::export::bagit_python_validates(&bag).unwrap();
    let kept = fs::read_to_string(&kept_plan).unwrap();
    assert!(kept.contains("\"export\":true"), "{kept}");
    fs::write(&kept_plan, kept.replacen("\"export\":true", "\"export\":false", 1)).unwrap();
    assert!(ucs_gdpr::export::validate_dir(&bag).is_err(), "an edited plan fails validation");
    fs::remove_file(&kept_plan).unwrap();
    assert!(ucs_gdpr::export::validate_dir(&bag).is_err(), "a removed plan fails validation");
}

/// How many exported files (`data/*.json`) the bag's manifest lists; the readable page and its
/// attachment files are listed beside them.
fn listed_exports(bag: &Path) -> usize {
    let manifest = fs::read_to_string(bag.join("manifest-sha256.txt")).unwrap();
    manifest.lines().filter(|l| l.ends_with(".json")).count()
}

/// The exported files of a bag (`data/*.json`), name -> sha256 (digests, so that a failure
/// does not print the personal data in them). The readable page and the attachment files
/// decoded for it are derived from these and rewritten by every run.
fn payload(bag: &Path) -> std::collections::BTreeMap<String, String> {
    fs::read_dir(bag.join("data"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let digest = ucs_gdpr::canonical::sha256_hex(&fs::read(e.path()).unwrap());
            (e.file_name().to_string_lossy().into_owned(), digest)
        })
        .collect()
}

fn interactions_of(client: &RestClient, id: &str) -> impl std::future::Future<Output = usize> {
    let client = client.clone();
    let id = ContactId::new(id).unwrap();
    async move {
        match ucs_gdpr::ucs::list_all_interactions(
            &client,
            &id,
            ucs_gdpr::ucs::DataSource::Main,
            50,
        )
        .await
        .unwrap()
        {
            ucs_gdpr::ucs::InteractionListing::Found(list) => list.len(),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_deleted_contact_is_not_re_exported() {
    // Jane's delete stops half way: three of her five interactions are gone, she is not.
    let workspace = Workspace::new(
        "      requireApproval: false\n",
        "    faults:\n      script: [{ operation: DeleteContact, nth: 1, kind: halfway }]\n",
    );
    let manifest = workspace.request("half", "forget-me-on-premise", &[JANE], EXPORT_AND_DELETE);
    let output = workspace.run(&["apply", &manifest]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    assert_eq!(receipt(&workspace, "half")["contacts"][0]["failure"][0], "delete");
    let bag = workspace.path("exports/DSR-half");
    let complete = payload(&bag);
    assert_eq!(complete.len(), 3, "{:?}", complete.keys());
    {
        let (sim, client) = workspace.world().await;
        assert!(exists(&client, JANE).await, "the delete stopped half way");
        assert_eq!(interactions_of(&client, JANE).await, 2, "two of five interactions are left");
        sim.shutdown().await;
    }

    // The same request again, UCS answering normally now: planned afresh (a new plan, since
    // Jane changed), it must not export the remaining half over the complete export.
    let env = fs::read_to_string(workspace.path("ucs-gdpr.yaml")).unwrap();
    let healthy = env.replace(
        "    faults:\n      script: [{ operation: DeleteContact, nth: 1, kind: halfway }]\n",
        "",
    );
    assert_ne!(env, healthy);
    fs::write(workspace.path("ucs-gdpr.yaml"), healthy).unwrap();
    let output = workspace.run(&["apply", &manifest]);
    assert!(output.status.success(), "{}", transcript(&output));

    assert_eq!(payload(&bag), complete, "the bag's export is the complete first one, unchanged");
    ucs_gdpr::export::validate_dir(&bag).unwrap();
    assert_eq!(listed_exports(&bag), 3);
    let (_sim, client) = workspace.world().await;
    assert!(!exists(&client, JANE).await, "the delete was resumed: Jane is gone");

    // The audit trail and the receipt say what happened.
    let log = fs::read_to_string(workspace.path("audit.jsonl")).unwrap();
    assert_eq!(
        log.matches("half-deleted-earlier-export-kept").count(),
        1,
        "one export step kept the earlier export: {log}"
    );
    let cumulative = receipt(&workspace, "half");
    let steps = cumulative["contacts"][0]["steps"].as_array().unwrap();
    let step = |id: &str| steps.iter().find(|s| s["step"] == id).unwrap().clone();
    assert_eq!(step("export")["reason"], "half-deleted-earlier-export-kept", "{cumulative}");
    assert_eq!(step("export")["count"], 5, "the complete export's five interactions");
    assert_eq!(step("delete")["outcome"], "ok", "{cumulative}");
    assert_eq!(step("verify")["outcome"], "ok", "{cumulative}");
    assert!(cumulative["contacts"][0]["failure"].is_null(), "{cumulative}");
    assert_eq!(cumulative["runs"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_export_of_a_contact_already_in_the_bag_is_written_beside_it() {
    let workspace = Workspace::demo();
    let manifest = workspace.request("twice", "export-only", &[JANE], "  export: {}\n");
    let output = workspace.run(&["apply", &manifest]);
    assert!(output.status.success(), "{}", transcript(&output));
    let bag = workspace.path("exports/DSR-twice");
    let first = payload(&bag);

    // The same data again: the same files, nothing new.
    let output = workspace.run(&["apply", &manifest]);
    assert!(output.status.success(), "{}", transcript(&output));
    assert_eq!(payload(&bag), first, "the same bytes are the same export");

    // Jane's e-mail address changes; exported again, the new export goes beside the first.
    let db = rusqlite::Connection::open(workspace.path("state/main.db")).unwrap();
    db.execute(
        "UPDATE contacts SET attributes = replace(attributes, 'jane.doe@company.com', \
         'jane.new@company.com') WHERE id = ?1",
        [JANE],
    )
    .unwrap();
    drop(db);
    let output = workspace.run(&["apply", &manifest]);
    assert!(output.status.success(), "{}", transcript(&output));
    let runs = run_starts(&workspace);
    let tag = format!("run-{}", runs.last().unwrap());
    let now = payload(&bag);
    for (name, bytes) in &first {
        assert_eq!(now.get(name), Some(bytes), "{name} is kept as it was");
    }
    let beside: Vec<&String> = now.keys().filter(|n| !first.contains_key(*n)).collect();
    assert_eq!(
        beside,
        [
            &format!("contact-{JANE}.{tag}.json"),
            &format!("context-services-{JANE}.{tag}.json"),
            &format!("interactions-for-contact-{JANE}.{tag}.json"),
        ],
        "the re-export beside it, named by its run"
    );
    let contact = fs::read_to_string(bag.join(format!("data/contact-{JANE}.{tag}.json"))).unwrap();
    assert!(contact.contains("jane.new"), "the new export holds the new address");
    let page = fs::read_to_string(bag.join("data/index.html")).unwrap();
    assert!(page.contains("jane.new"), "the readable page shows the latest export");
    assert!(page.contains(&format!("contact-{JANE}.{tag}.json")), "and names its file");
    ucs_gdpr::export::validate_dir(&bag).unwrap();
    assert_eq!(listed_exports(&bag), 6, "both exports are listed");
    crate::export::bagit_python_validates(&bag).unwrap();
}

/// The audit records of `step` for `contact`, as JSON.
fn step_records(workspace: &Workspace, step: &str, contact: &str) -> Vec<Value> {
    fs::read_to_string(workspace.path("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["step"] == step && r["contact"] == contact)
        .collect()
}

#[test]
fn lost_answer_delete_is_attributed_to_this_run() {
    // UCS deletes Jane, then the connection drops before the answer: the client cannot know.
    let workspace = Workspace::new(
        "      requireApproval: false\n",
        "    faults:\n      script: [{ operation: DeleteContact, nth: 1, kind: reset }]\n",
    );
    let manifest = workspace.request("lost", "forget-me-on-premise", &[JANE], EXPORT_AND_DELETE);
    let output = workspace.run(&["apply", &manifest]);
    assert!(output.status.success(), "{}", transcript(&output));
    let run = run_starts(&workspace)[0];

    let done: Vec<Value> = step_records(&workspace, "delete", JANE)
        .into_iter()
        .filter(|r| r["event"] == "step.done")
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0]["outcome"], "ok", "deleted by this run, not already-absent: {done:?}");
    assert_eq!(done[0]["detail"]["reason"], "absent-after-lost-answer", "{done:?}");

    let receipt = read_json(&workspace.path(&format!("exports/DSR-lost/receipt-{run}.json")));
    let delete = receipt["contacts"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "delete")
        .unwrap()
        .clone();
    assert_eq!(delete["outcome"], "ok", "{receipt}");
    assert_eq!(delete["confirmedBy"], "absent-after-lost-answer", "{receipt}");
    assert_eq!(delete["doneBy"]["run"], run, "{receipt}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("1 deleted or already absent"));
    assert!(workspace.audit_verifies().status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_sent_by_a_killed_run_is_attributed_to_that_run() {
    // UCS deletes Jane and never answers; the run is killed while it waits. The next run of the
    // same plan finds her gone: the delete is the killed run's (it announced it), not
    // "already absent".
    let faults = "    faults:\n      script: [{ operation: DeleteContact, nth: 1, kind: timeout }]\n    \
                  timeouts: { connectMs: 2000, readMs: 60000 }\n";
    let workspace = Workspace::new("      requireApproval: false\n", faults);
    let manifest = workspace.request("killed", "forget-me-on-premise", &[JANE], EXPORT_AND_DELETE);
    let plan = workspace.path("plan.json").display().to_string();
    assert!(workspace.run(&["plan", &manifest, "--out", &plan]).status.success());
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin!("ucs-gdpr"))
        .args(["apply", &plan, "--env-file", &workspace.env_file()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed() < std::time::Duration::from_secs(50), "the delete never ran");
        assert!(child.try_wait().unwrap().is_none(), "apply ended before the kill");
        let gone = rusqlite::Connection::open_with_flags(
            workspace.path("state/main.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|db| {
            db.query_row("SELECT count(*) FROM contacts WHERE id = ?1", [JANE], |row| {
                row.get::<_, i64>(0)
            })
        })
        .is_ok_and(|n| n == 0);
        if gone {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let intents: Vec<Value> = step_records(&workspace, "delete", JANE);
    assert_eq!(intents.len(), 1, "the killed run announced the delete, no outcome: {intents:?}");
    assert_eq!(intents[0]["event"], "step.intent");

    // UCS answers again; the same plan is run again.
    let env = fs::read_to_string(workspace.path("ucs-gdpr.yaml")).unwrap();
    fs::write(workspace.path("ucs-gdpr.yaml"), env.replace(faults, "")).unwrap();
    let output = workspace.run(&["apply", &plan]);
    assert!(output.status.success(), "{}", transcript(&output));
    let runs = run_starts(&workspace);
    assert_eq!(runs.len(), 2);

    let done: Vec<Value> = step_records(&workspace, "delete", JANE)
        .into_iter()
        .filter(|r| r["event"] == "step.done")
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0]["outcome"], "ok", "not already-absent: {done:?}");
    assert_eq!(done[0]["detail"]["reason"], "absent-after-lost-answer");
    let cumulative = receipt(&workspace, "killed");
    let delete = cumulative["contacts"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "delete")
        .unwrap()
        .clone();
    assert_eq!(delete["outcome"], "ok", "{cumulative}");
    assert_eq!(delete["confirmedBy"], "absent-after-lost-answer", "{cumulative}");
    assert_eq!(delete["doneBy"]["run"], runs[0], "the killed run sent it: {cumulative}");
    assert!(workspace.audit_verifies().status.success());
}

/// Issue 12: the gate lives in the library. A second front end that goes through the library's
/// one entry for a run (`session::Session`) with no approval, where the policy requires one, is
/// refused by the library itself: nothing is exported or deleted and the refusal is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_end_through_the_library_session_cannot_skip_the_approval_gate() {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    use ucs_gdpr::session::{Prepared, RunOptions, Session};

    let keys = tempfile::tempdir().unwrap();
    let alice = keys.path().join("alice");
    ucs_gdpr().args(["audit", "keygen", "--out"]).arg(&alice).assert().success();
    let workspace = Workspace::new(
        &format!(
            "      requireApproval: true\n      approvers: [dpo.alice]\n      \
             approverKeys: {{ dpo.alice: {} }}\n",
            alice.join("audit-signing.pub").display()
        ),
        "",
    );
    let manifest = workspace.request("library", "forget-me-on-premise", &[JANE], EXPORT_AND_DELETE);
    let (environments, _) =
        ucs_gdpr::environment::Environments::load(&workspace.path("ucs-gdpr.yaml")).unwrap();
    let runbooks = ucs_gdpr::runbook::RunbookLibrary::built_in();
    let context = ucs_gdpr::manifest::Context {
        runbooks: &runbooks,
        environments: Some(&environments),
        now: jiff::Timestamp::now(),
    };
    let (report, request) = ucs_gdpr::manifest::load_request(Path::new(&manifest), &context);
    let prepared = Prepared {
        request: request.expect("the request is valid"),
        manifest_path: manifest.clone(),
        manifest_sha256: ucs_gdpr::canonical::sha256_hex(report.source.as_bytes()),
        environments,
        runbooks,
    };
    let connection = prepared.environments.connect("demo", None).await.unwrap();
    let session = Session::new(&prepared, &connection).unwrap();
    let plan = session.plan().await;
    assert!(!plan.is_blocked(), "{:?}", plan.body.blockers);
    let outputs = session.outputs().unwrap();
    let options = RunOptions {
        shard: None,
        without_deletion: false,
        concurrency: None,
        actor: "second.front.end".into(),
        stop: Arc::new(AtomicBool::new(false)),
        retries: Arc::new(Mutex::new(Vec::new())),
        progress: &|_| {},
    };
    let refused = session.apply(&plan, &[], &outputs, options).await;
    assert!(
        matches!(refused, Err(ucs_gdpr::apply::ApplyError::Approval(_))),
        "a run without the approval the policy requires was not refused: {refused:?}"
    );
    connection.close().await.unwrap();

    let log = fs::read_to_string(workspace.path("audit.jsonl")).unwrap();
    assert!(log.contains("\"run.refused\""), "{log}");
    assert!(!log.contains("\"step.intent\""), "{log}");
    assert!(!workspace.path("exports/DSR-library/data").exists(), "nothing exported");
    let (_sim, client) = workspace.world().await;
    assert!(exists(&client, JANE).await, "nothing was deleted");
}

/// Issue 13: apply reads a plan file as a stream, and nothing acts before its first pass has
/// checked every line. A plan file opened (header and subjects checked) and then changed on
/// disk (a contact line edited, its id kept) is refused by the re-check pass as a mismatch:
/// nothing is exported or deleted, and the refusal is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_file_changed_after_it_was_opened_is_refused_before_anything_acts() {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};
    use ucs_gdpr::session::{Prepared, RunOptions, Session};

    let workspace = Workspace::demo();
    let manifest = workspace.request("swapped", "forget-me-on-premise", &[JANE], EXPORT_AND_DELETE);
    let (environments, _) =
        ucs_gdpr::environment::Environments::load(&workspace.path("ucs-gdpr.yaml")).unwrap();
    let runbooks = ucs_gdpr::runbook::RunbookLibrary::built_in();
    let context = ucs_gdpr::manifest::Context {
        runbooks: &runbooks,
        environments: Some(&environments),
        now: jiff::Timestamp::now(),
    };
    let (report, request) = ucs_gdpr::manifest::load_request(Path::new(&manifest), &context);
    let prepared = Prepared {
        request: request.expect("the request is valid"),
        manifest_path: manifest.clone(),
        manifest_sha256: ucs_gdpr::canonical::sha256_hex(report.source.as_bytes()),
        environments,
        runbooks,
    };
    let connection = prepared.environments.connect("demo", None).await.unwrap();
    let session = Session::new(&prepared, &connection).unwrap();
    let path = workspace.path("plan.json");
    let plan = session.plan_to_file(&path).await.unwrap();
    assert!(!plan.head().is_blocked(), "{:?}", plan.head().body.blockers);
    assert!(plan.head().body.contacts.is_empty(), "a plan file's contacts stay in the file");
    assert_eq!(plan.records().contacts.count, 1);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"export\":true"), "{text}");
    fs::write(&path, text.replacen("\"export\":true", "\"export\":false", 1)).unwrap();

    let options = RunOptions {
        without_deletion: false,
        concurrency: None,
        actor: "stream.test".into(),
        stop: Arc::new(AtomicBool::new(false)),
        retries: Arc::new(Mutex::new(Vec::new())),
        progress: &|_| {},
        shard: None,
    };
    let outputs = session.outputs().unwrap();
    let refused = session.apply_source(plan.into(), &[], &outputs, options).await;
    let Err(ucs_gdpr::apply::ApplyError::Mismatch(why)) = &refused else {
        panic!("a plan file changed after it was opened was not refused: {refused:?}");
    };
    assert!(why.iter().any(|w| w.contains("do not match its header")), "{why:?}");
    connection.close().await.unwrap();

    let log = fs::read_to_string(workspace.path("audit.jsonl")).unwrap();
    assert!(log.contains("\"run.refused\"") && log.contains("plan-mismatch"), "{log}");
    assert!(!log.contains("\"step.intent\""), "{log}");
    assert!(!workspace.path("exports/DSR-swapped/data").exists(), "nothing exported");
    let (_sim, client) = workspace.world().await;
    assert!(exists(&client, JANE).await, "nothing was deleted");
}
