//! The connector against the simulator, and `ucs-gdpr sim`.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use ucs_gdpr::sim::{GenerateOptions, SimOptions, Simulator, generate};
use ucs_gdpr::ucs::wire::Operation;
use ucs_gdpr::ucs::{
    ClientConfig, ContactId, DataSource, DeleteOutcome, ErrorKind, IdentifyRequest,
    InteractionListing, RestClient, TenantId, Ucs, list_all_interactions,
};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/sim").join(name)
}

const JANE: &str = "0001SaD2PVY4312K";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_serve_prints_its_address_and_answers() {
    let mut child = Command::cargo_bin("ucs-gdpr")
        .unwrap()
        .args(["sim", "serve", "--dataset"])
        .arg(example("demo.yaml"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--latency-ms",
            "1",
            "--seed",
            "3",
            "--error-rate",
            "0.5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let mut config = ClientConfig::new(url.clone());
    config.retry.max_attempts = 20;
    config.retry.base_backoff = std::time::Duration::from_millis(1);
    let client = RestClient::new(config).unwrap();
    for _ in 0..4 {
        let jane = client.get_contact(&ContactId::new(JANE).unwrap()).await.unwrap();
        assert_eq!(jane.tenant, TenantId(101));
    }
    let stats: serde_json::Value =
        reqwest::get(format!("{url}/sim/stats")).await.unwrap().json().await.unwrap();
    let faults = stats["faults"]["unavailable"].as_u64().unwrap();
    assert!(faults > 0, "{stats}");
    assert_eq!(stats["calls"]["GetAttributes"].as_u64().unwrap(), 4 + faults, "{stats}");

    // SIGTERM stops it cleanly.
    let status = Command::new("kill").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn sim_serve_refuses_a_missing_dataset_and_bad_rates() {
    let output = Command::cargo_bin("ucs-gdpr")
        .unwrap()
        .args(["sim", "serve", "--dataset", "no/such/file.yaml", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read dataset no/such/file.yaml"), "{stderr}");

    let output = Command::cargo_bin("ucs-gdpr")
        .unwrap()
        .args(["sim", "serve", "--dataset", "x.yaml", "--error-rate", "1.5"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_dir_keeps_the_databases_across_restarts() {
    let state = tempfile::tempdir().unwrap();
    let jane = ContactId::new(JANE).unwrap();
    let options = SimOptions {
        state_dir: Some(state.path().to_owned()),
        ..SimOptions::new(example("demo.yaml"))
    };

    let sim = Simulator::start(options.clone()).await.unwrap();
    let client = RestClient::new(ClientConfig::new(sim.base_url())).unwrap();
    assert_eq!(client.delete_contact(&jane).await.unwrap(), DeleteOutcome::Deleted);
    sim.shutdown().await;

    let sim = Simulator::start(options).await.unwrap();
    let client = RestClient::new(ClientConfig::new(sim.base_url())).unwrap();
    assert_eq!(client.get_contact(&jane).await.unwrap_err().kind, ErrorKind::NotFound);
    sim.shutdown().await;

    // Without a state dir every start is fresh.
    let sim = Simulator::start(SimOptions::new(example("demo.yaml"))).await.unwrap();
    let client = RestClient::new(ClientConfig::new(sim.base_url())).unwrap();
    assert!(client.get_contact(&jane).await.is_ok());
    let state_dir = sim.state_dir().to_owned();
    assert!(state_dir.join("main.db").exists());
    sim.shutdown().await;
    assert!(!state_dir.exists(), "the temporary state is removed");
}

async fn start_error(dataset: &str, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, dataset).unwrap();
    Simulator::start(SimOptions::new(&path))
        .await
        .unwrap_err()
        .to_string()
        .replace(&*dir.path().to_string_lossy(), "<dir>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_dataset_gets_a_clear_error() {
    let error = start_error("contacts:\n  - id: ../../etc/passwd\n    tenant: 1\n", "d.yaml").await;
    assert!(error.starts_with("dataset <dir>/d.yaml is invalid: "), "{error}");
    assert!(error.contains("not a valid contact id"), "{error}");

    let error = start_error("contacts: [\n", "d.yaml").await;
    assert!(error.starts_with("dataset <dir>/d.yaml is not valid YAML: line "), "{error}");

    let escaping = r#"{"contacts":[{"id":"0001SaD2PVY4312K","tenant":1,"interactions":{"main":[
        {"id":"00001a5R8AJ800AB","mediaType":"email","attachments":[
          {"id":"0000DOC1INVOICE1","name":"x","mimeType":"text/plain","file":"../secret"}]}]}}]}"#;
    let error = start_error(escaping, "d.json").await;
    assert!(
        error.contains("`file` must be a relative path inside the dataset's folder"),
        "{error}"
    );

    let twice = r#"{"contacts":[{"id":"0001SaD2PVY4312K","tenant":1},{"id":"0001SaD2PVY4312K","tenant":1}]}"#;
    assert_eq!(
        start_error(twice, "d.json").await,
        "dataset <dir>/d.json: contact 0001SaD2PVY4312K appears twice"
    );

    let archive = r#"{"ucsVersion":"8.5","archive":false,"contacts":[{"id":"0001SaD2PVY4312K","tenant":1,"interactions":{"archive":[{"id":"00001a5R8AJ800AB","mediaType":"email"}]}}]}"#;
    assert!(start_error(archive, "d.json").await.contains("`archive: false`"));

    // UCS 9.1 (the default) has one store: no archive role, no archive interactions.
    let archived = r#"{"contacts":[{"id":"0001SaD2PVY4312K","tenant":1,"interactions":{"archive":[{"id":"00001a5R8AJ800AB","mediaType":"email"}]}}]}"#;
    let error = start_error(archived, "d.json").await;
    assert!(error.contains("UCS 9.1 has one store") && error.contains("ucsVersion"), "{error}");
    let role = r#"{"ucsVersion":"9.1","archive":true,"contacts":[]}"#;
    let error = start_error(role, "d.json").await;
    assert!(error.contains("`archive` is a UCS 8.5 setting"), "{error}");
    let version = r#"{"ucsVersion":"9.0","contacts":[]}"#;
    assert!(start_error(version, "d.json").await.contains("unknown variant `9.0`"));

    let unknown = r#"{"contacts":[],"contactz":[]}"#;
    assert!(start_error(unknown, "d.json").await.contains("unknown field `contactz`"));
}

/// UCS 9.x ignores `DataSource` ("Ignored in 9.0", GetInteractionsForContact): on the 9.1 demo,
/// asking for `archive` answers what `main` answers, which is why the tool never makes an
/// archive pass there. On 8.5 the two are separate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_ucs_9_1_the_data_source_is_ignored_and_on_8_5_it_is_not() {
    let jane = ucs_gdpr::ucs::ContactId::new("0001SaD2PVY4312K").unwrap();
    let mut seen = Vec::new();
    for (dataset, version) in [("demo.yaml", "9.1"), ("demo-8.5.yaml", "8.5")] {
        let sim = Simulator::start(SimOptions::new(example(dataset))).await.unwrap();
        assert_eq!(sim.ucs_version().as_str(), version);
        let client = RestClient::new(ClientConfig::new(sim.base_url())).unwrap();
        let ids = |listing: InteractionListing| match listing {
            InteractionListing::Found(list) => {
                list.into_iter().map(|i| i.id.as_str().to_owned()).collect::<Vec<_>>()
            }
            InteractionListing::SourceUnavailable { reason } => panic!("{reason}"),
        };
        let main = ids(list_all_interactions(&client, &jane, DataSource::Main, 2).await.unwrap());
        let archive =
            ids(list_all_interactions(&client, &jane, DataSource::Archive, 2).await.unwrap());
        seen.push((main, archive));
    }
    let (main_91, archive_91) = &seen[0];
    assert_eq!(main_91.len(), 5, "every interaction in the one store");
    assert_eq!(archive_91, main_91, "9.1: archive is the same store");
    let (main_85, archive_85) = &seen[1];
    assert_eq!((main_85.len(), archive_85.len()), (3, 2));
    assert!(archive_85.iter().all(|id| !main_85.contains(id)), "8.5: separate data sources");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_datasets_are_deterministic_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let options = |out: &str| GenerateOptions {
        contacts: 5,
        interactions: 8,
        attachment_bytes: 10_000,
        seed: 9,
        out: dir.path().join(out),
    };
    assert_eq!(generate(&options("a.json")).unwrap(), 40);
    generate(&options("b.json")).unwrap();
    let a = std::fs::read_to_string(dir.path().join("a.json")).unwrap();
    let b = std::fs::read_to_string(dir.path().join("b.json")).unwrap();
    assert!(a == b.replace("b.json.files/", "a.json.files/"), "same seed, same dataset");
    let first =
        std::fs::read_dir(dir.path().join("a.json.files")).unwrap().next().unwrap().unwrap();
    let same = dir.path().join("b.json.files").join(first.file_name());
    assert!(std::fs::read(first.path()).unwrap() == std::fs::read(same).unwrap());
    assert_eq!(first.metadata().unwrap().len(), 10_000);

    let sim = Simulator::start(SimOptions::new(dir.path().join("a.json"))).await.unwrap();
    let client = RestClient::new(ClientConfig::new(sim.base_url())).unwrap();
    let request = IdentifyRequest {
        tenant: TenantId(101),
        attributes: [("EmailAddress".to_owned(), "person3@example.com".to_owned())].into(),
    };
    let found = client.identify_contacts(&request).await.unwrap();
    assert!(found.complete);
    let found = found.contacts;
    assert_eq!(found.len(), 1);
    let InteractionListing::Found(main) =
        list_all_interactions(&client, &found[0], DataSource::Main, 3).await.unwrap()
    else {
        panic!()
    };
    let InteractionListing::Found(archive) =
        list_all_interactions(&client, &found[0], DataSource::Archive, 3).await.unwrap()
    else {
        panic!()
    };
    assert_eq!((main.len(), archive.len()), (6, 2));
    // GetInteractionsForContact does not page: one call per data source.
    assert_eq!(sim.stats().calls(Operation::GetInteractionsForContact), 1 + 1);
}

#[test]
fn sim_generate_writes_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.json");
    let output = Command::cargo_bin("ucs-gdpr")
        .unwrap()
        .args([
            "sim",
            "generate",
            "--contacts",
            "3",
            "--interactions",
            "2",
            "--attachment-bytes",
            "100",
            "--seed",
            "1",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let dataset: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(dataset["contacts"].as_array().unwrap().len(), 3);
    assert!(
        dataset["contacts"][0]["interactions"]["main"][0]["attachments"][0]["base64"].is_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_attachment_streams_in_chunks_byte_for_byte() {
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("large.json");
    let options = GenerateOptions {
        contacts: 1,
        interactions: 1,
        attachment_bytes: 3 * 1024 * 1024 + 7,
        seed: 5,
        out: out.clone(),
    };
    generate(&options).unwrap();
    let sim = Simulator::start(SimOptions::new(&out)).await.unwrap();
    let client = RestClient::new(ClientConfig::new(sim.base_url())).unwrap();
    let dataset: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let interaction = &dataset["contacts"][0]["interactions"]["main"][0];
    let id = interaction["attachments"][0]["id"].as_str().unwrap();
    let file = dir.path().join(interaction["attachments"][0]["file"].as_str().unwrap());

    let mut body = client
        .open_attachment(&ucs_gdpr::ucs::AttachmentId::new(id).unwrap(), DataSource::Main)
        .await
        .unwrap();
    // GetDocument answers JSON (the content base64 in it): no byte size is announced.
    assert_eq!(body.size, None);
    let (mut bytes, mut chunks, mut largest) = (Vec::new(), 0, 0);
    while let Some(chunk) = body.bytes.next().await {
        let chunk = chunk.unwrap();
        largest = largest.max(chunk.len());
        bytes.extend_from_slice(&chunk);
        chunks += 1;
    }
    assert!(chunks > 1, "streamed, not buffered whole");
    assert!(largest < 1024 * 1024, "decoded chunk by chunk, not whole: {largest}");
    assert!(bytes == std::fs::read(file).unwrap(), "byte for byte");
}
