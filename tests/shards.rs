//! Shards: one approved plan run as N real `ucs-gdpr apply --shard I/N` processes at once
//! against ONE simulator in its own process (`ucs-gdpr sim serve`), then `audit verify` of the
//! segments and `receipt merge`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use ucs_gdpr::sim::{GenerateOptions, generate};
use ucs_gdpr::ucs::{ClientConfig, ContactId, ErrorKind, RestClient, Ucs};

use crate::{transcript, ucs_gdpr};

const HMAC: &str = "a-test-key-that-is-at-least-32-bytes-long";
const REQUEST: &str = "DSR-SHARDS";

/// A simulator in its own process, a request over its contacts, and the plan of it.
struct World {
    dir: tempfile::TempDir,
    sim: Child,
    url: String,
    ids: Vec<String>,
}

impl Drop for World {
    /// SIGTERM, so that the simulator removes its state folder; SIGKILL if it is still there
    /// after 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.sim.id().to_string()).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.sim.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.sim.kill();
        let _ = self.sim.wait();
    }
}

impl World {
    fn new(contacts: u32) -> World {
        World::with_policy(contacts, "      requireApproval: false\n")
    }

    /// A world whose environment has `policy` (lines under `policy:`); `alice/` holds a key
    /// pair for approvals.
    fn with_policy(contacts: u32, policy: &str) -> World {
        World::serving(contacts, policy, 8, &[])
    }

    /// A world whose environment allows `concurrency` requests in flight, its simulator
    /// started with `sim_args` too (`--latency-ms 5`, say).
    fn serving(contacts: u32, policy: &str, concurrency: u32, sim_args: &[&str]) -> World {
        let dir = tempfile::tempdir().unwrap();
        ucs_gdpr()
            .args(["audit", "keygen", "--out"])
            .arg(dir.path().join("alice"))
            .assert()
            .success();
        let dataset = dir.path().join("dataset.json");
        generate(&GenerateOptions {
            contacts,
            interactions: 1,
            attachment_bytes: 0,
            seed: 13,
            out: dataset.clone(),
        })
        .unwrap();
        // No pending callbacks: they would block the plan.
        let mut value: Value = serde_json::from_slice(&std::fs::read(&dataset).unwrap()).unwrap();
        let mut ids = Vec::new();
        for contact in value["contacts"].as_array_mut().unwrap() {
            contact["callbacks"] = serde_json::json!([]);
            ids.push(contact["id"].as_str().unwrap().to_owned());
        }
        std::fs::write(&dataset, serde_json::to_vec(&value).unwrap()).unwrap();
        ids.sort();

        let mut sim = Command::new(assert_cmd::cargo::cargo_bin!("ucs-gdpr"))
            .args(["sim", "serve", "--listen", "127.0.0.1:0", "--dataset"])
            .arg(&dataset)
            .args(sim_args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(sim.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");

        std::fs::write(
            dir.path().join("ucs-gdpr.yaml"),
            format!(
                "apiVersion: ucs-gdpr/v1\nkind: Environments\nenvironments:\n  shared:\n    \
                 type: rest\n    tenant: 101\n    hmacKeyEnv: UCS_GDPR_TEST_HMAC\n    \
                 concurrency: {concurrency}\n    rateLimit: 400\n    ucs:\n      url: {url}/\n    \
                 policy:\n{policy}      auditLog: audit.jsonl\n      exports: exports\n"
            ),
        )
        .unwrap();
        let mut request = format!(
            "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: {REQUEST}\n  \
             receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: dpo.alice\n\
             spec:\n  environment: shared\n  runbook: batch-delete\n  subjects:\n"
        );
        for id in &ids {
            request.push_str(&format!("    - contactId: \"{id}\"\n"));
        }
        request.push_str(
            "  export:\n    dataSources: [main]\n    attachments: omit\n  delete:\n    \
             confirm: true\n",
        );
        std::fs::write(dir.path().join("request.yaml"), request).unwrap();
        let world = World { dir, sim, url, ids };
        let planned = world.run(&["plan", "request.yaml", "--out", "plan.json"]);
        assert!(planned.status.success(), "{}", transcript(&planned));
        world
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The real binary in the world's folder, with its environments file (but for `audit` and
    /// `approve`, which take none).
    fn command(&self, args: &[&str]) -> assert_cmd::Command {
        let mut command = ucs_gdpr();
        command.current_dir(self.dir.path()).args(args).env("UCS_GDPR_TEST_HMAC", HMAC);
        if !matches!(args.first(), Some(&"audit" | &"approve")) {
            command.arg("--env-file").arg(self.path("ucs-gdpr.yaml"));
        }
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// A shard as its own process (not waited for): `--shard I/N`, or `JOB_COMPLETION_INDEX`
    /// with the count in `UCS_GDPR_SHARDS` (`by_env`), as a Kubernetes Indexed Job runs it.
    fn spawn_shard(&self, index: u32, count: u32, by_env: bool, extra: &[&str]) -> Child {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin!("ucs-gdpr"));
        command
            .current_dir(self.dir.path())
            .args(["apply", "plan.json", "--env-file"])
            .arg(self.path("ucs-gdpr.yaml"))
            .args(extra)
            .env("UCS_GDPR_TEST_HMAC", HMAC)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("UCS_GDPR_SHARDS")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if by_env {
            command
                .env("JOB_COMPLETION_INDEX", index.to_string())
                .env("UCS_GDPR_SHARDS", count.to_string());
        } else {
            command.arg("--shard").arg(format!("{index}/{count}"));
        }
        command.spawn().unwrap()
    }

    /// Runs `shards` of a 4-way split at once, each its own process, and waits for all.
    fn run_shards(&self, shards: &[u32]) -> Vec<Output> {
        self.run_shards_with(shards, &[])
    }

    /// [`World::run_shards`] with `extra` arguments to each `apply`.
    fn run_shards_with(&self, shards: &[u32], extra: &[&str]) -> Vec<Output> {
        let children: Vec<Child> =
            shards.iter().map(|&i| self.spawn_shard(i, 4, i % 2 == 1, extra)).collect();
        children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
    }

    fn segment(&self, index: u32) -> PathBuf {
        let plan = crate::plan_value(&std::fs::read(self.path("plan.json")).unwrap()).unwrap();
        let id = plan["planId"].as_str().unwrap();
        self.path(&format!("audit.plan-{}.shard-{index}-of-4.jsonl", &id[..12]))
    }

    async fn exists(&self, id: &str) -> bool {
        let client = RestClient::new(ClientConfig::new(self.url.clone())).unwrap();
        match client.get_contact(&ContactId::new(id).unwrap()).await {
            Ok(_) => true,
            Err(error) if error.kind == ErrorKind::NotFound => false,
            Err(error) => panic!("{error}"),
        }
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The contacts each segment has step records of, read straight from the files.
fn contacts_in(segment: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(segment)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter_map(|record| record["contact"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_as_four_processes_cover_every_contact_exactly_once() {
    let world = World::new(24);
    let outputs = tokio::task::block_in_place(|| world.run_shards(&[0, 1, 2, 3]));
    for (index, output) in outputs.iter().enumerate() {
        assert!(output.status.success(), "shard {index}: {}", transcript(output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The environment's rate limit (400/s) and requests in flight (8) divided by 4.
        assert!(
            stderr.contains(&format!("shard {index}/4: "))
                && stderr.contains("at most 100 request(s)/s, 2 request(s) in flight"),
            "shard {index}: {stderr}"
        );
    }

    // Every contact is gone from the one simulator they all talked to.
    for id in &world.ids {
        assert!(!world.exists(id).await, "{id} is still there");
    }

    // Read from the files themselves: the segments split the contacts, each shard its own.
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for index in 0..4 {
        let segment = world.segment(index);
        let first: Value = serde_json::from_str(
            std::fs::read_to_string(&segment).unwrap().lines().next().unwrap(),
        )
        .unwrap();
        assert_eq!(first["event"], "shard.start", "{}", segment.display());
        assert_eq!(first["detail"]["reason"], format!("shard-{index}-of-4"));
        for contact in contacts_in(&segment) {
            assert_eq!(ucs_gdpr::shard::of(&contact, 4), index, "{contact}");
            assert!(seen.insert(contact, index).is_none(), "a contact in two segments");
        }
    }
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), world.ids);
    assert!(seen.values().collect::<BTreeSet<_>>().len() >= 3, "the split is not one-sided");

    // `audit verify` of the base log finds the four segments and checks them together; so does
    // naming them.
    let verified = world.run(&["audit", "verify", "audit.jsonl", "--plan", "plan.json"]);
    assert!(verified.status.success(), "{}", transcript(&verified));
    assert!(
        stdout(&verified).contains("OK: 4 shard(s), each once; 24 contact(s), each in exactly one"),
        "{}",
        transcript(&verified)
    );
    let mut named = world.command(&["audit", "verify"]);
    for index in 0..4 {
        named.arg(world.segment(index));
    }
    let named = named.args(["--format", "json"]).output().unwrap();
    assert!(named.status.success(), "{}", transcript(&named));
    let report: Value = serde_json::from_slice(&named.stdout).unwrap();
    assert_eq!(report["shardedRuns"][0]["contacts"], 24);
    assert_eq!(report["shardedRuns"][0]["shards"], 4);

    // One receipt for the run, covering every contact once.
    let merged = world.run(&["receipt", "merge", "plan.json"]);
    assert!(merged.status.success(), "{}", transcript(&merged));
    let receipt = read_json(&world.path(&format!("exports/{REQUEST}.receipt.json")));
    assert_eq!(receipt["kind"], "ShardedReceipt");
    assert_eq!(receipt["shards"], 4);
    let ids: Vec<&str> = receipt["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contactId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, world.ids.iter().map(String::as_str).collect::<Vec<_>>());
    for contact in receipt["contacts"].as_array().unwrap() {
        let delete = contact["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["uses"] == "ucs/delete-contact")
            .unwrap_or_else(|| panic!("{contact}"));
        assert_eq!(delete["outcome"], "ok", "{contact}");
    }
    let parts: Vec<u64> = receipt["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["contacts"].as_u64().unwrap())
        .collect();
    assert_eq!(parts.iter().sum::<u64>(), 24);
    // Each shard's bag is a valid bag of its own.
    for index in 0..4 {
        let bag = world.path(&format!("exports/{REQUEST}.shard-{index}-of-4/{REQUEST}"));
        ucs_gdpr::export::validate_dir(&bag).unwrap();
    }

    // No personal data of the dataset in the segments, the merged receipt or what was printed.
    let dataset = read_json(&world.path("dataset.json"));
    let mut personal = Vec::new();
    for contact in dataset["contacts"].as_array().unwrap() {
        for value in contact["attributes"].as_object().unwrap().values() {
            personal.push(value.as_str().unwrap().to_owned());
        }
        for interaction in contact["interactions"]["main"].as_array().unwrap() {
            personal.push(interaction["text"].as_str().unwrap().to_owned());
        }
    }
    assert!(personal.len() >= 24 * 4);
    let mut seen = std::fs::read_to_string(world.path(&format!("exports/{REQUEST}.receipt.json")))
        .unwrap()
        + &transcript(&verified)
        + &transcript(&merged);
    for index in 0..4 {
        seen.push_str(&std::fs::read_to_string(world.segment(index)).unwrap());
        seen.push_str(&transcript(&outputs[index as usize]));
    }
    for value in &personal {
        assert!(!seen.contains(value.as_str()), "`{value}` leaked");
    }

    // A shard run again resumes: nothing to do, and the run still verifies and merges.
    let again = world.run(&["apply", "plan.json", "--shard", "2/4"]);
    assert!(again.status.success(), "{}", transcript(&again));
    let verified = world.run(&["audit", "verify", "audit.jsonl", "--plan", "plan.json"]);
    assert!(verified.status.success(), "{}", transcript(&verified));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_shard_is_named_by_verify_and_refused_by_merge() {
    let world = World::new(12);
    let outputs = tokio::task::block_in_place(|| world.run_shards(&[0, 1, 3]));
    for output in &outputs {
        assert!(output.status.success(), "{}", transcript(output));
    }
    let missing: Vec<&String> =
        world.ids.iter().filter(|id| ucs_gdpr::shard::of(id, 4) == 2).collect();
    assert!(!missing.is_empty(), "the dataset has contacts in shard 2");
    // They were not touched: shard 2 never ran.
    for id in &missing {
        assert!(world.exists(id).await, "{id}");
    }

    let verified = world.run(&["audit", "verify", "audit.jsonl", "--plan", "plan.json"]);
    assert_eq!(verified.status.code(), Some(1), "{}", transcript(&verified));
    let text = stdout(&verified);
    assert!(text.contains("shard-missing: shard 2/4 is missing"), "{text}");
    for id in &missing {
        assert!(text.contains(id.as_str()), "{id} not named: {text}");
    }
    // Without the plan the missing shard is still found.
    let verified = world.run(&["audit", "verify", "audit.jsonl"]);
    assert_eq!(verified.status.code(), Some(1), "{}", transcript(&verified));
    assert!(stdout(&verified).contains("shard 2/4 is missing"), "{}", transcript(&verified));

    let merged = world.run(&["receipt", "merge", "plan.json"]);
    assert_eq!(merged.status.code(), Some(1), "{}", transcript(&merged));
    let stderr = String::from_utf8_lossy(&merged.stderr);
    assert!(stderr.contains("shard(s) 2/4 missing"), "{stderr}");
    assert!(!world.path(&format!("exports/{REQUEST}.receipt.json")).exists());
    // The register reads the segments: three shards' runs, the request not complete, and
    // the shard that has not run named.
    let register = status_of(&world);
    assert_eq!(register["state"], "partly-applied", "{register}");
    assert_eq!(register["runs"], 3, "{register}");
    // The plan the runs ran, not the copy each shard's bag part keeps in its `plans/`.
    assert_eq!(register["planFile"], "./plan.json", "{register}");
    let notes = register["notes"].to_string();
    assert!(notes.contains("1 of the plan's shards did not finish (shard-2-of-4)"), "{notes}");

    // The missing shard runs (by its index from the environment) and everything is whole.
    let last = tokio::task::block_in_place(|| world.run_shards(&[2]));
    assert!(last[0].status.success(), "{}", transcript(&last[0]));
    let verified = world.run(&["audit", "verify", "audit.jsonl", "--plan", "plan.json"]);
    assert!(verified.status.success(), "{}", transcript(&verified));
    let merged = world.run(&["receipt", "merge", "plan.json"]);
    assert!(merged.status.success(), "{}", transcript(&merged));
    let register = status_of(&world);
    assert_eq!(register["state"], "complete", "{register}");
    assert_eq!(register["runs"], 4, "{register}");
    assert_eq!(register["planFile"], "./plan.json", "{register}");
}

/// The request's entry in `ucs-gdpr status` of the world's folder.
fn status_of(world: &World) -> Value {
    let output = world.run(&["status", ".", "--format", "json"]);
    let register: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", transcript(&output)));
    let requests = register["requests"].as_array().unwrap();
    let entry = requests.iter().find(|r| r["requestId"] == REQUEST);
    entry.unwrap_or_else(|| panic!("{register}")).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicated_shard_is_named_by_verify_and_refused_by_merge() {
    let world = World::new(12);
    let outputs = tokio::task::block_in_place(|| world.run_shards(&[0, 1, 2, 3]));
    for output in &outputs {
        assert!(output.status.success(), "{}", transcript(output));
    }
    // Shard 1's segment and bag, copied as if a CI artifact were downloaded twice.
    let copies = world.path("copies");
    std::fs::create_dir(&copies).unwrap();
    let segment = world.segment(1);
    let copy = copies.join(segment.file_name().unwrap());
    std::fs::copy(&segment, &copy).unwrap();
    let mut verify = world.command(&["audit", "verify"]);
    for index in 0..4 {
        verify.arg(world.segment(index));
    }
    let verified = verify.arg(&copy).args(["--plan", "plan.json"]).output().unwrap();
    assert_eq!(verified.status.code(), Some(1), "{}", transcript(&verified));
    let text = stdout(&verified);
    assert!(text.contains("shard-duplicated: shard 1/4 is present 2 times"), "{text}");
    assert!(text.contains("contact-duplicated"), "{text}");
    for id in contacts_in(&segment) {
        assert!(text.contains(&id), "{id} not named: {text}");
    }

    // A segment edited after the fact fails on its own, and so the run does.
    let edited = copies.join("edited");
    std::fs::create_dir(&edited).unwrap();
    let mut named = Vec::new();
    for index in 0..4 {
        let to = edited.join(world.segment(index).file_name().unwrap());
        let text = std::fs::read_to_string(world.segment(index)).unwrap();
        let text =
            if index == 2 { text.replacen("\"step.done\"", "\"step.skipped\"", 1) } else { text };
        std::fs::write(&to, text).unwrap();
        named.push(to);
    }
    let mut verify = world.command(&["audit", "verify"]);
    let verified = verify.args(&named).output().unwrap();
    assert_eq!(verified.status.code(), Some(1), "{}", transcript(&verified));
    assert!(
        stdout(&verified).contains("segment-faulty: ")
            && stdout(&verified).contains("shard-2-of-4"),
        "{}",
        transcript(&verified)
    );

    let bag = |index: u32| world.path(&format!("exports/{REQUEST}.shard-{index}-of-4"));
    let copied_bag = copies.join(format!("{REQUEST}.shard-1-of-4"));
    let status = Command::new("cp").arg("-a").arg(bag(1)).arg(&copied_bag).status().unwrap();
    assert!(status.success());
    let mut merge = world.command(&["receipt", "merge", "plan.json"]);
    for index in 0..4 {
        merge.arg(bag(index));
    }
    let merged = merge.arg(&copied_bag).output().unwrap();
    assert_eq!(merged.status.code(), Some(1), "{}", transcript(&merged));
    let stderr = String::from_utf8_lossy(&merged.stderr);
    assert!(stderr.contains("shard 1/4 is given more than once"), "{stderr}");
}

#[test]
fn a_bad_shard_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = ucs_gdpr();
        command
            .current_dir(dir.path())
            .args(["apply", "plan.json", "--env-file", "none.yaml"])
            .args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(64), "{}", transcript(&output));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let mut seen = String::new();
    for shard in ["5/4", "4/4", "0/0", "x", "1/", "-1/4"] {
        let arg = format!("--shard={shard}");
        seen.push_str(&format!("{arg}\n{}", run(&[&arg], &[])));
    }
    seen.push_str(&format!(
        "JOB_COMPLETION_INDEX=1 without a count\n{}",
        run(&[], &[("JOB_COMPLETION_INDEX", "1")])
    ));
    seen.push_str(&format!(
        "JOB_COMPLETION_INDEX=4 UCS_GDPR_SHARDS=4\n{}",
        run(&[], &[("JOB_COMPLETION_INDEX", "4"), ("UCS_GDPR_SHARDS", "4")])
    ));
    seen.push_str(&format!(
        "JOB_COMPLETION_INDEX=x --shards 4\n{}",
        run(&["--shards", "4"], &[("JOB_COMPLETION_INDEX", "x")])
    ));
    seen.push_str(&format!("--shards 4 alone\n{}", run(&["--shards", "4"], &[])));
    seen.push_str(&format!(
        "--shard 1/4 --shards 4\n{}",
        run(&["--shard", "1/4", "--shards", "4"], &[])
    ));
    let manifest = {
        let output = ucs_gdpr()
            .current_dir(dir.path())
            .args(["apply", "request.yaml", "--shard", "0/2"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{}", transcript(&output));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    seen.push_str(&format!("a manifest, not a plan\n{manifest}"));
    // Nothing was written: the shard is checked before the plan is even read.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    insta::assert_snapshot!("bad-shard", seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_from_the_environment_runs_the_same_shard_as_the_flag() {
    let world = World::new(8);
    // `--shards` gives the count where Kubernetes gives only the index.
    let mut command = world.command(&["apply", "plan.json", "--shards", "4"]);
    let output = command.env("JOB_COMPLETION_INDEX", "3").output().unwrap();
    assert!(output.status.success(), "{}", transcript(&output));
    assert!(stdout(&output).contains("shard 3/4: "), "{}", transcript(&output));
    let segment = world.segment(3);
    assert!(segment.exists());
    let mine: BTreeSet<String> =
        world.ids.iter().filter(|id| ucs_gdpr::shard::of(id, 4) == 3).cloned().collect();
    assert_eq!(contacts_in(&segment), mine);
    // The flag names the same shard: it resumes the same segment, with nothing left to do.
    let again = world.run(&["apply", "plan.json", "--shard", "3/4"]);
    assert!(again.status.success(), "{}", transcript(&again));
    for id in &world.ids {
        assert_eq!(world.exists(id).await, !mine.contains(id), "{id}");
    }
    let runs = std::fs::read_to_string(&segment)
        .unwrap()
        .lines()
        .filter(|line| line.contains("\"shard.start\""))
        .count();
    assert_eq!(runs, 2, "two runs of shard 3/4 in one segment");
}

/// `examples/deploy/`: the Kubernetes Indexed Job and the GitHub Actions matrix split the run
/// the way the CLI does (0-based indexes, one count everywhere), and end with the verify and
/// the merge. (The commands themselves are the ones the tests above run.)
#[test]
fn the_deploy_examples_run_every_shard_once_then_verify_and_merge() {
    let parse = |path: &str| -> Vec<Value> {
        let text = std::fs::read_to_string(crate::repo_path(path)).unwrap();
        text.split("\n---\n")
            .map(|document| ucs_gdpr::manifest::yaml::parse_value(document).unwrap())
            .collect()
    };
    let strings = |value: &Value| -> Vec<String> {
        value.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };

    let documents = parse("examples/deploy/kubernetes-indexed-job.yaml");
    let job = documents.iter().find(|d| d["kind"] == "Job").unwrap();
    let claim = documents.iter().find(|d| d["kind"] == "PersistentVolumeClaim").unwrap();
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    let count = job["spec"]["completions"].as_u64().unwrap();
    assert_eq!(job["spec"]["parallelism"].as_u64(), Some(count));
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let command = strings(&container["command"]);
    assert_eq!(command[..3], ["ucs-gdpr", "apply", "plan.json"]);
    // The index is the pod's JOB_COMPLETION_INDEX; the count is said, as Kubernetes does not.
    let at = command.iter().position(|a| a == "--shards").unwrap();
    assert_eq!(command[at + 1], count.to_string());
    assert!(!command.iter().any(|a| a == "--shard"));
    let volumes = &job["spec"]["template"]["spec"]["volumes"];
    let claim_name = claim["metadata"]["name"].as_str().unwrap();
    assert!(volumes.as_array().unwrap().iter().any(|v| v["configMap"].is_object()));
    assert!(
        volumes
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["persistentVolumeClaim"]["claimName"] == claim_name)
    );
    let merge = &parse("examples/deploy/kubernetes-merge-job.yaml")[0];
    let script = strings(&merge["spec"]["template"]["spec"]["containers"][0]["command"]).join(" ");
    assert!(script.contains("ucs-gdpr audit verify /outputs/audit.jsonl --plan plan.json"));
    assert!(script.contains("ucs-gdpr receipt merge plan.json"));

    let workflow = &parse("examples/deploy/github-actions-shards.yml")[0];
    let shards = &workflow["jobs"]["apply"]["strategy"]["matrix"]["shard"];
    let shards: Vec<u64> = shards.as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
    assert_eq!(shards, (0..count).collect::<Vec<_>>(), "0-based, every shard once");
    let runs = |job: &str| -> String {
        workflow["jobs"][job]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|step| step["run"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(runs("apply").contains(&format!("--shard ${{{{ matrix.shard }}}}/{count}")));
    let last = &workflow["jobs"]["verify-and-merge"];
    assert_eq!(last["needs"], "apply");
    assert!(runs("verify-and-merge").contains("ucs-gdpr audit verify out/audit.jsonl --plan"));
    assert!(runs("verify-and-merge").contains("ucs-gdpr receipt merge"));
}

/// The gate is every shard's: a shard without the approval the policy requires is refused
/// (recorded in its own segment, after its `shard.start`) and touches nothing; with it, all
/// four run, and the refused attempt does not spoil the run's verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shard_goes_through_the_gate() {
    let world = World::with_policy(
        8,
        "      requireApproval: true\n      approvers: [dpo.alice]\n      \
         approverKeys: { dpo.alice: alice/audit-signing.pub }\n",
    );
    let refused = world.run(&["apply", "plan.json", "--shard", "1/4"]);
    assert_ne!(refused.status.code(), Some(0), "{}", transcript(&refused));
    let records: Vec<Value> = std::fs::read_to_string(world.segment(1))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let events: Vec<&str> = records.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["shard.start", "run.refused"], "{records:?}");
    for id in &world.ids {
        assert!(world.exists(id).await, "{id}");
    }

    let approved = world.run(&[
        "approve",
        "plan.json",
        "--by",
        "dpo.alice",
        "--key",
        "alice/audit-signing.key",
        "--out",
        "approval.json",
    ]);
    assert!(approved.status.success(), "{}", transcript(&approved));
    let outputs = tokio::task::block_in_place(|| {
        world.run_shards_with(&[0, 1, 2, 3], &["--approval", "approval.json"])
    });
    for output in &outputs {
        assert!(output.status.success(), "{}", transcript(output));
    }
    for id in &world.ids {
        assert!(!world.exists(id).await, "{id}");
    }
    // Each shard recorded the approval it checked, in its own segment.
    for index in 0..4 {
        let text = std::fs::read_to_string(world.segment(index)).unwrap();
        assert!(text.contains("\"event\":\"approval\""), "shard {index}");
    }
    let verified = world.run(&["audit", "verify", "audit.jsonl", "--plan", "plan.json"]);
    assert!(verified.status.success(), "{}", transcript(&verified));
    let merged = world.run(&["receipt", "merge", "plan.json"]);
    assert!(merged.status.success(), "{}", transcript(&merged));
}

/// A shard's re-check reads its own contacts only: a shard with none of the plan's contacts
/// reads no contact at all (planning the whole request read each of them), and does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_re_checks_only_its_own_contacts() {
    let world = World::new(8);
    // The connector installs the TLS provider reqwest needs (for plain HTTP too).
    RestClient::new(ClientConfig::new(world.url.clone())).unwrap();
    let reads = || async {
        let stats: Value =
            reqwest::get(format!("{}/sim/stats", world.url)).await.unwrap().json().await.unwrap();
        stats["calls"]["GetAttributes"].as_u64().unwrap_or(0)
    };
    let planned = reads().await;
    assert!(planned >= 8, "planning read every contact: {planned}");
    let empty = (0..64u32)
        .find(|index| world.ids.iter().all(|id| ucs_gdpr::shard::of(id, 64) != *index))
        .unwrap();
    let shard = format!("{empty}/64");
    let output = world.run(&["apply", "plan.json", "--shard", &shard]);
    assert!(output.status.success(), "{}", transcript(&output));
    assert!(stdout(&output).contains(&format!("shard {shard}: 0 of the plan's contacts")));
    assert_eq!(reads().await, planned, "the empty shard read a contact");
    for id in &world.ids {
        assert!(world.exists(id).await, "{id}");
    }
}

/// `apply` runs twice the environment's `concurrency` in contacts by default (a contact waiting
/// for the disk makes no request), and the client still keeps the requests in flight to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_never_has_more_requests_in_flight_than_the_environment_allows() {
    let concurrency = 3;
    let world = World::serving(
        30,
        "      requireApproval: false\n",
        concurrency,
        &["--latency-ms", "5", "--jitter-ms", "5"],
    );
    let output = world.run(&["apply", "plan.json"]);
    assert!(output.status.success(), "{}", transcript(&output));
    RestClient::new(ClientConfig::new(world.url.clone())).unwrap();
    let stats: Value =
        reqwest::get(format!("{}/sim/stats", world.url)).await.unwrap().json().await.unwrap();
    let peak = stats["peakInFlight"].as_u64().unwrap();
    assert!(
        (2..=u64::from(concurrency)).contains(&peak),
        "at most {concurrency} requests at once (and more than one): {peak}"
    );
    for id in &world.ids {
        assert!(!world.exists(id).await, "{id} was not deleted");
    }
}
