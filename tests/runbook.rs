//! Local runbooks: a file that replaces a built-in is named on every plan and warns; a runbook
//! that deletes runs the built-in checks of its scope or waives them in the file, with reasons.
//! Through the real binary, against the embedded simulator in a folder of its own.

use std::fs;
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use ucs_gdpr::sim::{SimOptions, Simulator};
use ucs_gdpr::ucs::{ClientConfig, ContactId, ErrorKind, RestClient, Ucs};

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
        fs::write(
            dir.path().join("ucs-gdpr.yaml"),
            format!(
                "apiVersion: ucs-gdpr/v1\nkind: Environments\nenvironments:\n  demo:\n    \
                 type: embedded\n    tenant: 101\n    dataset: {}\n    stateDir: state\n    \
                 concurrency: 1\n    policy:\n      requireApproval: false\n      \
                 auditLog: audit.jsonl\n      exports: exports\n",
                repo_path("examples/sim/demo.yaml").display()
            ),
        )
        .unwrap();
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
            .map(|bytes| serde_json::from_slice(&bytes).unwrap())
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
