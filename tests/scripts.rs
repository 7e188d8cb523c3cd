//! `ucs-gdpr export` and `ucs-gdpr delete`, the Genesys scripts' interface: every command-line
//! example of the seed document, typed verbatim into `sh` through two one-line shims named
//! after the scripts, against the embedded simulator with its state kept so the test can look
//! at the world afterwards.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use ucs_gdpr::sim::{SimOptions, Simulator};
use ucs_gdpr::ucs::{ClientConfig, ContactId, ErrorKind, RestClient, Ucs};

use crate::workspace::EnvFile;
use crate::{repo_path, transcript, ucs_gdpr};

const JANE: &str = "0001SaD2PVY4312K";
const JANE_AGAIN: &str = "0001TbE3QWZ5520L";
const JOSE: &str = "0001SaD2PVY4315J";

/// The export examples of the seed document, verbatim (the fifth glues `-count` to the JSON,
/// as the document prints it).
const EXPORT_EXAMPLES: [&str; 6] = [
    r"exportUcsInteractions.sh 0001SaD2PVY4312K -count",
    r"exportUcsInteractions.sh 0001SaD2PVY4312K",
    r#"exportUcsInteractions.sh "0001SaD2PVY4312K,0001SaD2PVY4315J" -count"#,
    r#"exportUcsInteractions.sh "0001SaD2PVY4312K,0001SaD2PVY4315J""#,
    r#"exportUcsInteractions.sh "{\"TenantId\":101,\"EmailAddress\":\"jane.doe@company.com\"}"-count"#,
    r#"exportUcsInteractions.sh "{\"TenantId\":101,\"EmailAddress\":\"jane.doe@company.com\"}""#,
];

/// The delete examples of the seed document, verbatim, including its typo: they name
/// `exportUcsInteractions.sh`, which [`delete_line`] reads as `deleteContact.sh`. (The fifth is
/// garbled in the PDF; it is the sixth without `-confirm`.)
const DELETE_EXAMPLES: [&str; 6] = [
    r"exportUcsInteractions.sh 0001SaD2PVY4312K",
    r"exportUcsInteractions.sh 0001SaD2PVY4312K -confirm",
    r#"exportUcsInteractions.sh "0001SaD2PVY4312K,0001SaD2PVY4315J""#,
    r#"exportUcsInteractions.sh "0001SaD2PVY4312K,0001SaD2PVY4315J" -confirm"#,
    r#"exportUcsInteractions.sh "{\"TenantId\":101,\"EmailAddress\":\"jane.doe@company.com\"}""#,
    r#"exportUcsInteractions.sh "{\"TenantId\":101,\"EmailAddress\":\"jane.doe@company.com\"}" -confirm"#,
];

fn delete_line(example: &str) -> String {
    example.replacen("exportUcsInteractions.sh", "deleteContact.sh", 1)
}

/// The demo dataset's personal data: none of it may appear in output, plans, receipts or the
/// audit log (only in the exported files).
const PERSONAL_DATA: [&str; 13] = [
    "Jane",
    "Doe",
    "jane.doe@company.com",
    "j.doe@home.example",
    "+44 20 7946 0958",
    "7946",
    "José",
    "Müller",
    "Łukasiewicz",
    "jose.muller@example.org",
    "+48 12 345 67 89",
    "Alex",
    "alex@example.net",
];

/// A folder with an environments file (one embedded environment that keeps its state, audit
/// log and exports here), the two script shims, and a `cwd/` the commands run in.
///
/// Contacts run one at a time: two deletes at once can make the simulator answer 500 (under
/// load, a deferred SQLite transaction in `Store::delete_contact` that reads, then writes
/// after another connection committed, fails with SQLITE_BUSY_SNAPSHOT, which no busy timeout
/// retries). That is the simulator's to fix (`BEGIN IMMEDIATE`), not these commands'.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(require_approval: bool) -> Self {
        Self::with_dataset("examples/sim/demo.yaml", require_approval)
    }

    fn with_dataset(dataset: &str, require_approval: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        EnvFile::embedded(&repo_path(dataset))
            .setting("concurrency: 1")
            .policy(&format!(
                "      requireApproval: {require_approval}\n      approvers: [dpo.alice]\n      \
                 approverKeys: {{ dpo.alice: dpo.alice.pub }}\n"
            ))
            .write(dir.path());
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        for (script, command) in
            [("exportUcsInteractions.sh", "export"), ("deleteContact.sh", "delete")]
        {
            let path = bin.join(script);
            fs::write(
                &path,
                format!(
                    "#!/bin/sh\nexec '{}' {command} \"$@\" --env-file '{}'\n",
                    env!("CARGO_BIN_EXE_ucs-gdpr"),
                    dir.path().join("ucs-gdpr.yaml").display()
                ),
            )
            .unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Workspace { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a seed command line verbatim in `sh`, in a fresh folder `cwd-<name>`.
    fn script(&self, name: &str, line: &str) -> (Output, PathBuf) {
        let cwd = self.path(&format!("cwd-{name}"));
        fs::create_dir_all(&cwd).unwrap();
        let path =
            format!("{}:{}", self.path("bin").display(), std::env::var("PATH").unwrap_or_default());
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(&cwd)
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        (output, cwd)
    }

    fn run(&self, args: &[&str]) -> Output {
        ucs_gdpr()
            .args(args)
            .args(["--env-file", &self.path("ucs-gdpr.yaml").display().to_string()])
            .output()
            .unwrap()
    }

    fn audit_verifies(&self) {
        let output =
            ucs_gdpr().args(["audit", "verify"]).arg(self.path("audit.jsonl")).output().unwrap();
        assert!(output.status.success(), "{}", transcript(&output));
    }

    fn audit_records(&self) -> usize {
        fs::read_to_string(self.path("audit.jsonl")).map_or(0, |text| text.lines().count())
    }

    fn bags(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(self.path("exports")) else { return Vec::new() };
        let mut bags: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        bags.sort();
        bags
    }

    /// Starts the simulator on the kept state, to look at the world.
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

/// The files in a folder, by name.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn seed_files(ids: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = ids
        .iter()
        .flat_map(|id| {
            [format!("contact-{id}.json"), format!("interactions-for-contact-{id}.json")]
        })
        .collect();
    names.sort();
    names
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every line of the log is `<time>: <event>`, as the scripts print it.
fn assert_timestamped(output: &Output) {
    for line in stdout(output).lines() {
        let (stamp, event) = line.split_once(": ").unwrap_or_else(|| panic!("{line}"));
        assert!(stamp.len() >= 24 && !event.is_empty(), "not a log line: {line}");
    }
}

fn assert_no_personal_data(what: &str, text: &str) {
    for value in PERSONAL_DATA {
        // A number counts where it stands alone: `7946` inside a hash (`…20794600db…`) or a
        // port is not the phone number (hashes vary with the time, so a substring match
        // fails about one run in a hundred).
        let shown = if value.bytes().all(|b| b.is_ascii_digit()) {
            text.match_indices(value).any(|(at, _)| {
                let before = text[..at].chars().next_back();
                let after = text[at + value.len()..].chars().next();
                !before.is_some_and(|c| c.is_ascii_alphanumeric())
                    && !after.is_some_and(|c| c.is_ascii_alphanumeric())
            })
        } else {
            text.contains(value)
        };
        assert!(!shown, "{what} shows `{value}`:\n{text}");
    }
}

#[test]
fn the_seeds_export_examples_write_the_seeds_files_and_count_writes_nothing() {
    let workspace = Workspace::new(false);
    let expected: [(&[&str], &str); 6] = [
        (&[], "Contacts to export: 1"),
        (
            &[JANE],
            "Successfully exported all interactions for contactId 0001SaD2PVY4312K from DataSource main",
        ),
        (&[], "Contacts to export: 2"),
        (&[JANE, JOSE], "Saving interactions to"),
        // Jane's address matches her two records; the scripts export every match.
        (&[], "Contacts to export: 2"),
        (&[JANE, JANE_AGAIN], "Found contact Id '0001TbE3QWZ5520L'"),
    ];
    for (index, (example, (ids, says))) in EXPORT_EXAMPLES.iter().zip(expected).enumerate() {
        let records = workspace.audit_records();
        let bags = workspace.bags();
        let (output, cwd) = workspace.script(&index.to_string(), example);
        assert!(output.status.success(), "{example}\n{}", transcript(&output));
        assert!(stdout(&output).contains(says), "{example}\n{}", transcript(&output));
        assert_timestamped(&output);
        assert_no_personal_data(example, &transcript(&output));
        assert_eq!(files(&cwd), seed_files(ids), "{example}");
        if ids.is_empty() {
            // -count is the simulation mode: no file, no bag, no audit record.
            assert!(stdout(&output).contains("Interactions to export from main"), "{example}");
            assert_eq!(workspace.audit_records(), records, "{example}");
            assert_eq!(workspace.bags(), bags, "{example}");
            continue;
        }
        // The files are the verified bag's, with a receipt and the plan beside them.
        let bag = workspace.bags().into_iter().find(|b| !bags.contains(b)).unwrap();
        assert!(bag.file_name().unwrap().to_str().unwrap().starts_with("EXPORT-"), "{bag:?}");
        assert!(bag.join("receipt.json").is_file() && kept_plans(&bag).len() == 1, "{bag:?}");
        // Per contact: the seed's two files, and its Context Services data; beside them the
        // readable page and the attachments it links.
        let listed = ucs_gdpr::export::validate_dir(&bag).unwrap().files;
        let manifest = fs::read_to_string(bag.join("manifest-sha256.txt")).unwrap();
        let json = manifest.lines().filter(|l| l.ends_with(".json")).count() as u64;
        let attachments =
            manifest.lines().filter(|l| l.contains("  data/attachments/")).count() as u64;
        assert_eq!(json, ids.len() as u64 * 3, "{manifest}");
        assert!(manifest.contains("  data/index.html\n"), "{manifest}");
        assert_eq!(listed, json + 1 + attachments, "{manifest}");
        for name in seed_files(ids) {
            assert_eq!(
                fs::read(cwd.join(&name)).unwrap(),
                fs::read(bag.join("data").join(&name)).unwrap()
            );
        }
        let contact: serde_json::Value =
            serde_json::from_slice(&fs::read(cwd.join(format!("contact-{JANE}.json"))).unwrap())
                .unwrap();
        assert!(contact.to_string().contains("jane.doe@company.com"), "{contact}");
    }
    workspace.audit_verifies();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_delete_examples_report_masked_without_confirm_and_delete_with_it() {
    // Each example on a fresh world: they delete.
    let expected: [(bool, &[&str], &[&str], &str); 6] = [
        // (succeeds, files written, contacts gone, what the log says)
        (true, &[], &[], "EmailAddress: j***@company.com"),
        (true, &[JANE], &[JANE], "Deleted contact Id '0001SaD2PVY4312K' with all its interactions"),
        (true, &[], &[], "PhoneNumber: +44 *** *958"),
        // José has a pending GMS callback: the check blocks the whole request, nobody is deleted.
        (false, &[], &[], "Blocked: contact Id '0001SaD2PVY4315J', step callbacks"),
        (true, &[], &[], "2 contacts match the identification request"),
        // Two matches, none named by id: nothing is deleted.
        (false, &[], &[], "2 contacts match the identification request"),
    ];
    for (index, (example, (succeeds, written, gone, says))) in
        DELETE_EXAMPLES.iter().zip(expected).enumerate()
    {
        let workspace = Workspace::new(false);
        let line = delete_line(example);
        let (output, cwd) = workspace.script(&index.to_string(), &line);
        assert_eq!(output.status.success(), succeeds, "{line}\n{}", transcript(&output));
        assert!(stdout(&output).contains(says), "{line}\n{}", transcript(&output));
        assert_timestamped(&output);
        assert_no_personal_data(&line, &transcript(&output));
        assert_eq!(files(&cwd), seed_files(written), "{line}");
        for id in [JANE, JANE_AGAIN, JOSE] {
            assert_eq!(workspace.exists(id).await, !gone.contains(&id), "{line}: {id}");
        }
        if line.contains("-confirm") {
            workspace.audit_verifies();
            let audit = fs::read_to_string(workspace.path("audit.jsonl")).unwrap();
            assert_no_personal_data("the audit log", &audit);
            for bag in workspace.bags() {
                let mut files = kept_plans(&bag);
                files.extend(["receipt.json", "bag-info.txt"].map(|name| bag.join(name)));
                assert!(files.len() >= 3, "{bag:?}");
                for file in files {
                    let text = fs::read_to_string(&file).unwrap();
                    assert_no_personal_data(&file.display().to_string(), &text);
                }
            }
        } else {
            // Without -confirm nothing is written: no bag, no audit record.
            assert_eq!(workspace.audit_records(), 0, "{line}");
            assert!(workspace.bags().is_empty(), "{line}");
            assert!(stdout(&output).contains("nothing was deleted"), "{line}");
            // The preview says what -confirm would do (the next example in the list).
            let preview = match index {
                0 => "With -confirm: 1 contact(s) would be exported, then 1 deleted",
                _ => "With -confirm: nothing would be exported or deleted, because the blockers",
            };
            assert!(stdout(&output).contains(preview), "{line}\n{}", transcript(&output));
        }
    }
}

/// The seed's own log: a deployment without an archive.
#[test]
fn an_export_without_an_archive_logs_what_the_seed_logs() {
    let workspace = Workspace::with_dataset("examples/sim/no-archive.yaml", false);
    let (output, cwd) = workspace.script("main-only", "exportUcsInteractions.sh 0002Ha7QB2MX000K");
    assert!(output.status.success(), "{}", transcript(&output));
    assert_eq!(files(&cwd), seed_files(&["0002Ha7QB2MX000K"]));
    let events: Vec<String> = stdout(&output)
        .lines()
        .map(|line| line.split_once(": ").unwrap().1.to_owned())
        .filter(|event| !event.contains("127.0.0.1") && !event.starts_with("Request "))
        .map(|event| event.replace(&cwd.display().to_string(), "<cwd>"))
        .map(|event| event.replace(&workspace.path("").display().to_string(), "<workspace>/"))
        .map(|event| match event.find("EXPORT-") {
            // EXPORT-<yyyymmdd>-<8 hex>: the date and the time it hashes change.
            Some(at) => format!("{}EXPORT-<id>{}", &event[..at], &event[at + 24..]),
            None => event,
        })
        .collect();
    insta::assert_snapshot!("export-without-archive", events.join("\n"));
    workspace.audit_verifies();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naming_every_match_by_id_deletes_them() {
    let workspace = Workspace::new(false);
    let (output, cwd) =
        workspace.script("ids", &format!("deleteContact.sh \"{JANE},{JANE_AGAIN}\" -confirm"));
    assert!(output.status.success(), "{}", transcript(&output));
    assert_eq!(files(&cwd), seed_files(&[JANE, JANE_AGAIN]));
    assert!(!workspace.exists(JANE).await && !workspace.exists(JANE_AGAIN).await);
    // Again: both are already gone, nothing to do, and the log still verifies.
    let again = workspace.run(&["delete", JANE, "-confirm"]);
    assert!(again.status.success(), "{}", transcript(&again));
    assert!(stdout(&again).contains("not found: nothing to do"), "{}", transcript(&again));
    workspace.audit_verifies();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_confirm_refuses_where_approval_is_required_and_export_runs() {
    let workspace = Workspace::new(true);
    let output = workspace.run(&["delete", JANE, "--confirm"]);
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    let text = transcript(&output);
    assert!(
        text.contains("requires an approved plan") && text.contains("ucs-gdpr approve"),
        "{text}"
    );
    assert!(workspace.exists(JANE).await);
    assert_eq!(workspace.audit_records(), 0);
    // An export deletes nothing: it runs without approval, audited.
    let (output, cwd) = workspace.script("export", &format!("exportUcsInteractions.sh {JANE}"));
    assert!(output.status.success(), "{}", transcript(&output));
    assert_eq!(files(&cwd), seed_files(&[JANE]));
    workspace.audit_verifies();
}

#[test]
fn show_values_prints_to_a_terminal_only() {
    let workspace = Workspace::new(false);
    let output = workspace.run(&["delete", JANE, "--show-values"]);
    assert_eq!(output.status.code(), Some(64), "{}", transcript(&output));
    assert!(transcript(&output).contains("to a terminal only"), "{}", transcript(&output));
    assert_no_personal_data("--show-values into a pipe", &transcript(&output));
}

#[test]
fn several_environments_need_env() {
    let output = ucs_gdpr()
        .args(["export", JANE, "-count", "--env-file", "examples/ucs-gdpr.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", transcript(&output));
    assert!(transcript(&output).contains("pass --env NAME (one of: demo, demo-85, production)"));
}

#[test]
fn bad_targets_show_the_accepted_forms() {
    let workspace = Workspace::new(false);
    let mut seen = String::new();
    for target in [
        "jane.doe@company.com",
        "0001SaD2PVY4312K,0001SaD2PVY43",
        r#"{"EmailAddress":"jane.doe@company.com"}"#,
        r#"{"TenantId":101,"EmailAddress":"jane.doe@company.com""#,
        r#"{"TenantId":"one-oh-one","EmailAddress":"jane.doe@company.com"}"#,
        r#"{"TenantId":101}"#,
    ] {
        let output = workspace.run(&["export", target]);
        assert_eq!(output.status.code(), Some(64), "{}", transcript(&output));
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_no_personal_data("a target error", &stderr);
        let first = stderr.lines().next().unwrap_or_default();
        seen.push_str(&format!("{first}\n"));
        if target.starts_with("jane") {
            insta::assert_snapshot!("bad-target", stderr);
        }
    }
    insta::assert_snapshot!("bad-target-reasons", seen);
    assert!(workspace.bags().is_empty());
    assert_eq!(workspace.audit_records(), 0);
}

#[test]
fn show_values_prints_values_unmasked_on_a_terminal_and_writes_nothing() {
    let workspace = Workspace::new(false);
    let cwd = workspace.path("cwd-tty");
    fs::create_dir_all(&cwd).unwrap();
    // `script` gives the command a terminal and copies what it shows to our pipe.
    let command = format!(
        "'{}' delete {JANE} --show-values --env-file '{}'",
        env!("CARGO_BIN_EXE_ucs-gdpr"),
        workspace.path("ucs-gdpr.yaml").display()
    );
    let output = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(&cwd)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = transcript(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("EmailAddress: jane.doe@company.com"), "{text}");
    assert!(text.contains("PhoneNumber: +44 20 7946 0958"), "{text}");
    assert!(files(&cwd).is_empty());
    assert_eq!(workspace.audit_records(), 0);
    assert!(workspace.bags().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_from_a_rest_target_names_its_host_and_port_and_runs_without_approval() {
    let sim = Simulator::start(SimOptions::new(repo_path("examples/sim/demo.yaml"))).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("ucs-gdpr.yaml");
    // A REST target requires approval by default: an export deletes nothing, so it runs.
    EnvFile::rest(&sim.base_url(), "TEST_HMAC_KEY").named("rehearsal").write(dir.path());
    let output = ucs_gdpr()
        .args(["export", JANE, "--out"])
        .arg(dir.path().join("out/here"))
        .arg("--env-file")
        .arg(&env_file)
        .env("TEST_HMAC_KEY", "a test key that is long enough for subject digests")
        .output()
        .unwrap();
    let text = transcript(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains(&format!("Connecting to UCS at {}\n", sim.address())), "{text}");
    assert!(text.contains("Directory created: "), "{text}");
    assert_eq!(files(&dir.path().join("out/here")), seed_files(&[JANE]));

    // The bag holds the plan that ran: a plan like any other, for the in-memory request.
    let exports = dir.path().join("exports");
    let bag = fs::read_dir(&exports).unwrap().next().unwrap().unwrap().path();
    let plans = kept_plans(&bag);
    assert_eq!(plans.len(), 1, "{bag:?}");
    let plan = ucs_gdpr::plan::Plan::from_json(&fs::read(&plans[0]).unwrap()).unwrap();
    assert!(plans[0].ends_with(format!("plans/plan-{}.json", plan.plan_id)), "{plans:?}");
    assert!(plan.body.request.id.starts_with("EXPORT-"), "{}", plan.body.request.id);
    assert_eq!(plan.body.runbook.name, "export-only");
    assert!(plan.body.request.manifest_path.starts_with("(ucs-gdpr export EXPORT-"));
    let audit = fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains(&plan.plan_id) && audit.contains(&plan.body.request.id));
    assert_no_personal_data("the audit log", &audit);
    let verify =
        ucs_gdpr().args(["audit", "verify"]).arg(dir.path().join("audit.jsonl")).output().unwrap();
    assert!(verify.status.success(), "{}", transcript(&verify));
    sim.shutdown().await;
}

/// The plans a bag keeps (`plans/plan-<planId>.json`).
fn kept_plans(bag: &Path) -> Vec<PathBuf> {
    fs::read_dir(bag.join("plans"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}
