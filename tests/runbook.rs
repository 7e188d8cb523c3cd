//! Local runbooks: a file that replaces a built-in is named on every plan and warns; a runbook
//! that deletes runs the built-in checks of its scope or waives them in the file, with reasons.
//! Through the real binary, against the embedded simulator in a folder of its own.

use std::fs;
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use ucs_gdpr::sim::{SimOptions, Simulator};
use ucs_gdpr::ucs::{ClientConfig, ContactId, ErrorKind, RestClient, Ucs};

use crate::workspace::EnvFile;
use crate::{repo_path, transcript, ucs_gdpr};

const JANE: &str = "0001SaD2PVY4312K";
const JOSE: &str = "0001SaD2PVY4315J";

/// A folder with an environments file (one embedded environment that keeps its state, audit
/// log and exports here, no approval required), a request manifest per contact, and a
/// `runbooks/` folder the commands find by default (they run in this folder).
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        EnvFile::demo()
            .setting("concurrency: 1")
            .policy("      requireApproval: false\n")
            .write(dir.path());
        for (name, contact) in [("jane", JANE), ("jose", JOSE)] {
            fs::write(
                dir.path().join(format!("{name}.yaml")),
                format!(
                    "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-2026-{name}\n  \
                     receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: agent.smith\n\
                     spec:\n  environment: demo\n  runbook: forget-me-on-premise\n  subjects:\n    \
                     - contactId: {contact}\n  export:\n    dataSources: [main]\n    \
                     attachments: inline\n  delete:\n    confirm: true\n"
                ),
            )
            .unwrap();
        }
        fs::create_dir(dir.path().join("runbooks")).unwrap();
        Workspace { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `runbooks/<name>`.
    fn runbook(&self, name: &str, text: &str) {
        fs::write(self.path("runbooks").join(name), text).unwrap();
    }

    /// Runs `ucs-gdpr ARGS --env-file ucs-gdpr.yaml` in the folder.
    fn run(&self, args: &[&str]) -> Output {
        ucs_gdpr()
            .current_dir(self.dir.path())
            .args(args)
            .args(["--env-file", "ucs-gdpr.yaml"])
            .output()
            .unwrap()
    }

    fn plan_json(&self, request: &str) -> (Output, Value) {
        let out = format!("{request}.plan.json");
        let output = self.run(&["plan", &format!("{request}.yaml"), "--out", &out]);
        let plan = fs::read(self.path(&out))
            .map(|bytes| crate::plan_value(&bytes).unwrap())
            .unwrap_or(Value::Null);
        (output, plan)
    }

    /// Whether the simulator's kept state still holds `id`.
    async fn exists(&self, id: &str) -> bool {
        let mut options = SimOptions::new(repo_path("examples/sim/demo.yaml"));
        options.state_dir = Some(self.path("state"));
        let sim = Simulator::start(options).await.unwrap();
        let client = RestClient::new(ClientConfig::new(sim.base_url())).unwrap();
        let exists = match client.get_contact(&ContactId::new(id).unwrap()).await {
            Ok(_) => true,
            Err(error) if error.kind == ErrorKind::NotFound => false,
            Err(error) => panic!("{error}"),
        };
        sim.shutdown().await;
        exists
    }
}

fn built_in(name: &str) -> String {
    fs::read_to_string(repo_path(&format!("runbooks/{name}.yaml"))).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn local_runbook_override_is_warned() {
    let ws = Workspace::new();
    // The built-in's steps, other bytes: a local edit that replaces the built-in.
    let text = format!("# Our own copy.\n{}", built_in("forget-me-on-premise"));
    ws.runbook("forget-me-on-premise.yaml", &text);

    let validate = ws.run(&["validate", "runbooks"]);
    assert_eq!(validate.status.code(), Some(0), "{}", transcript(&validate));
    insta::assert_snapshot!("override-diagnostic", transcript(&validate));

    let (planned, plan) = ws.plan_json("jane");
    assert_eq!(planned.status.code(), Some(0), "{}", transcript(&planned));
    assert!(stderr(&planned).contains("runbook::overrides-built-in"), "{}", transcript(&planned));
    let runbook = &plan["body"]["runbook"];
    assert_eq!(runbook["origin"], "runbooks/forget-me-on-premise.yaml");
    let built_in_sha = ucs_gdpr::canonical::sha256_hex(built_in("forget-me-on-premise").as_bytes());
    assert_eq!(runbook["replacesBuiltIn"], built_in_sha.as_str());
    assert_eq!(runbook["sha256"], ucs_gdpr::canonical::sha256_hex(text.as_bytes()).as_str());
    let codes: Vec<&str> = plan["body"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"runbook::overrides-built-in"), "{codes:?}");
    let text_plan = stdout(&planned);
    assert!(
        text_plan.contains(
            "runbook forget-me-on-premise (LOCAL FILE replacing the built-in: \
             `runbooks/forget-me-on-premise.yaml`"
        ),
        "{text_plan}"
    );
    assert!(text_plan.contains("WARNINGS"), "{text_plan}");

    // Every rendering of the saved plan names the file.
    for format in ["text", "markdown"] {
        let shown = ucs_gdpr()
            .current_dir(ws.path(""))
            .args(["show", "jane.plan.json", "--format", format])
            .output()
            .unwrap();
        let shown_text = stdout(&shown);
        assert!(shown_text.contains("`runbooks/forget-me-on-premise.yaml`"), "{shown_text}");
        assert!(shown_text.contains("replaces the built-in runbook"), "{shown_text}");
    }

    // apply names it too, and the scripts' `delete` logs it.
    let applied = ws.run(&["apply", "jane.plan.json"]);
    assert!(stderr(&applied).contains("runbook::overrides-built-in"), "{}", transcript(&applied));
    let script = ws.run(&["delete", JOSE, "--env", "demo"]);
    let script_text = transcript(&script);
    assert!(script_text.contains("runbook::overrides-built-in"), "{script_text}");
    assert!(
        script_text.contains("WARNING: the runbook `forget-me-on-premise` is the local file"),
        "{script_text}"
    );
}

#[test]
fn a_byte_for_byte_copy_of_a_built_in_replaces_nothing() {
    let ws = Workspace::new();
    ws.runbook("forget-me-on-premise.yaml", &built_in("forget-me-on-premise"));
    let validate = ws.run(&["validate", "runbooks"]);
    assert_eq!(validate.status.code(), Some(0), "{}", transcript(&validate));
    assert!(validate.stderr.is_empty(), "{}", transcript(&validate));
    let (planned, plan) = ws.plan_json("jane");
    assert_eq!(planned.status.code(), Some(0), "{}", transcript(&planned));
    assert_eq!(plan["body"]["runbook"].get("origin"), None);
    assert!(!stderr(&planned).contains("overrides-built-in"));
}

#[test]
fn an_invalid_local_runbook_stops_planning_instead_of_falling_back_to_the_built_in() {
    let ws = Workspace::new();
    ws.runbook(
        "forget-me-on-premise.yaml",
        &built_in("forget-me-on-premise").replace("after: [delete]", "after: [delet]"),
    );
    let (planned, plan) = ws.plan_json("jane");
    assert_eq!(planned.status.code(), Some(1), "{}", transcript(&planned));
    assert!(stderr(&planned).contains("runbook::unknown-after"), "{}", transcript(&planned));
    assert!(stderr(&planned).contains("nothing is planned while a runbook file is not valid"));
    assert_eq!(plan, Value::Null, "no plan written");
}

/// The runbook: a local forget-me with only an export and a delete.
const EXPORT_AND_DELETE: &str = "apiVersion: ucs-gdpr/v1\nkind: Runbook\n\
    metadata: { name: forget-me-on-premise }\n\
    steps:\n  \
    - { id: export, uses: ucs/export,         scope: contact }\n  \
    - { id: delete, uses: ucs/delete-contact, scope: contact, after: [export] }\n  \
    - { id: verify, uses: ucs/verify-absent,  scope: contact, after: [delete] }\n";

/// The lines of the plan's WARNINGS section.
fn warnings_section(text: &str) -> String {
    text.lines()
        .skip_while(|l| !l.starts_with("WARNINGS"))
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleting_runbook_without_the_built_in_checks_is_refused_unless_it_waives_them() {
    let ws = Workspace::new();
    ws.runbook("forget-me-on-premise.yaml", EXPORT_AND_DELETE);

    let validate = ws.run(&["validate", "--format", "json", "runbooks"]);
    assert_eq!(validate.status.code(), Some(1), "{}", transcript(&validate));
    let annotations: Vec<Value> = serde_json::from_slice(&validate.stdout).unwrap();
    let codes: Vec<&str> = annotations.iter().map(|a| a["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"runbook::missing-check"), "{codes:?}");

    // José has a pending GMS callback (and a chat in progress): `delete -confirm` refuses,
    // before anything is planned, and he is still there.
    let refused = ws.run(&["delete", JOSE, "--confirm", "--env", "demo"]);
    let text = transcript(&refused);
    assert_eq!(refused.status.code(), Some(1), "{text}");
    assert!(text.contains("runbook::missing-check"), "{text}");
    assert!(text.contains("nothing is planned while a runbook file is not valid"), "{text}");
    assert!(!ws.path("exports").exists(), "nothing exported: {text}");
    assert!(ws.exists(JOSE).await, "José was deleted: {text}");
    let (planned, plan) = ws.plan_json("jose");
    assert_eq!(planned.status.code(), Some(1), "{}", transcript(&planned));
    assert_eq!(plan, Value::Null, "no plan");

    // The same runbook with the three checks waived, each with its reason: it plans, and the
    // plan shows each waiver as a blocker-level warning.
    let waived = EXPORT_AND_DELETE.replace(
        "steps:\n",
        "waives:\n  \
         - { check: infomart/etl-complete, reason: \"no Info Mart in this deployment\" }\n  \
         - { check: gms/no-pending-callbacks, reason: \"GMS is not deployed here (ticket OPS-12)\" }\n  \
         - { check: ucs/stop-in-progress, reason: \"Interaction Server is drained before each run\" }\n\
         steps:\n",
    );
    ws.runbook("forget-me-on-premise.yaml", &waived);
    let validate = ws.run(&["validate", "runbooks"]);
    assert_eq!(validate.status.code(), Some(0), "{}", transcript(&validate));
    let (planned, plan) = ws.plan_json("jose");
    let text = transcript(&planned);
    assert_eq!(planned.status.code(), Some(0), "{text}");
    let waivers: Vec<(&str, &str)> = plan["body"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["code"] == "runbook::check-waived")
        .map(|w| (w["level"].as_str().unwrap(), w["message"].as_str().unwrap()))
        .collect();
    assert_eq!(waivers.len(), 3, "{text}");
    assert!(waivers.iter().all(|(level, _)| *level == "blocker"), "{waivers:?}");
    assert!(
        waivers.iter().any(|(_, m)| m.contains("`gms/no-pending-callbacks`")
            && m.contains("GMS is not deployed here (ticket OPS-12)")),
        "{waivers:?}"
    );
    assert_eq!(plan["body"]["runbook"]["waives"].as_array().unwrap().len(), 3);
    insta::assert_snapshot!("waived-checks-in-the-plan", warnings_section(&stdout(&planned)));
    let markdown = ucs_gdpr()
        .current_dir(ws.path(""))
        .args(["show", "jose.plan.json", "--format", "markdown"])
        .output()
        .unwrap();
    assert!(stdout(&markdown).contains(":bangbang: CHECK WAIVED"), "{}", transcript(&markdown));
    // The scripts log each waiver before anything runs.
    let report = ws.run(&["delete", JOSE, "--env", "demo"]);
    let text = transcript(&report);
    assert_eq!(text.matches("WARNING: CHECK WAIVED").count(), 3, "{text}");
}
