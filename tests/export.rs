//! Export packages: the real REST client against the real simulator, bags checked by our own
//! validator and by the Library of Congress's `bagit` (Python), attachments byte for byte.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::Value;
use ucs_gdpr::canonical::sha256_hex;
use ucs_gdpr::environment::UcsVersion;
use ucs_gdpr::export::{
    Attachments, Bag, BagProblem, ContactExport, ExportError, ExportOptions, PayloadKind,
    export_contact, validate_dir, verify_contact,
};
use ucs_gdpr::sim::{
    FaultKind, GenerateOptions, RunningSim, ScriptedFault, SimOptions, Simulator, generate,
};
use ucs_gdpr::ucs::wire::Operation;
use ucs_gdpr::ucs::{
    AttachmentBody, AttachmentId, Callback, ClientConfig, Contact, ContactId, CsService,
    DataSource, DeleteOutcome, ErrorKind, Identification, IdentifyRequest, InteractionContent,
    InteractionId, InteractionListing, InteractionSummary, Profile, RestClient, RetryPolicy,
    ServiceId, TenantId, Ucs, UcsError,
};

use crate::repo_path;

const JANE: &str = "0001SaD2PVY4312K";
const JANE_AGAIN: &str = "0001TbE3QWZ5520L";
const JOSE: &str = "0001SaD2PVY4315J";
const ALEX: &str = "0002Ha7QB2MX000K";
const REQUEST: &str = "DSR-2026-0142";

fn contact(id: &str) -> ContactId {
    ContactId::new(id).unwrap()
}

async fn start(dataset: &Path) -> (RunningSim, RestClient) {
    let sim = Simulator::start(SimOptions::new(dataset)).await.unwrap();
    let mut config = ClientConfig::new(sim.base_url());
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(10),
        jitter_seed: 1,
    };
    let client = RestClient::new(config).unwrap();
    (sim, client)
}

async fn demo() -> (RunningSim, RestClient) {
    start(&repo_path("examples/sim/demo.yaml")).await
}

fn options(attachments: Attachments) -> ExportOptions {
    ExportOptions { attachments, ..ExportOptions::default() }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every attachment object of an interactions file, with its data source.
fn attachments_of(file: &Value) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for source in file["dataSources"].as_array().unwrap() {
        for interaction in source["interactions"].as_array().unwrap() {
            for attachment in interaction["attachments"].as_array().unwrap() {
                found.push((source["dataSource"].as_str().unwrap().to_owned(), attachment.clone()));
            }
        }
    }
    found
}

fn decode(attachment: &Value) -> Vec<u8> {
    let text = attachment["content"].as_str().expect("an inlined attachment has content");
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// Validates `bag` with the `bagit` Python library (the Library of Congress's reference
/// implementation), independent of ours. A machine without it gets it provisioned on first use
/// (`provision::python_with_bagit`), rather than skipping the check.
pub(crate) fn bagit_python_validates(bag: &Path) -> Result<(), String> {
    let output = crate::provision::python_with_bagit()
        .command()
        .args(["-c", "import sys, bagit; bagit.Bag(sys.argv[1]).validate(); print('valid')"])
        .arg(bag)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("No module named 'bagit'"), "the provisioned Python lost bagit");
    if output.status.success() { Ok(()) } else { Err(stderr) }
}

fn no_temporaries(dir: &Path) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp."))
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janes_export_has_the_seed_files_and_every_attachment_is_byte_for_byte_the_original() {
    // UCS 8.5: main and archive are separate data sources, each exported (the seed's script).
    let (_sim, client) = start(&repo_path("examples/sim/demo-8.5.yaml")).await;
    let exports = tempfile::tempdir().unwrap();
    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();
    let options = ExportOptions::for_version(UcsVersion::V8_5);
    let export = export_contact(&client, &bag, &contact(JANE), &options).await.unwrap();

    let data = exports.path().join(REQUEST).join("data");
    let contact_file = data.join(format!("contact-{JANE}.json"));
    let interactions_file = data.join(format!("interactions-for-contact-{JANE}.json"));
    let paths: Vec<&str> = export.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [format!("data/contact-{JANE}.json"), format!("data/interactions-for-contact-{JANE}.json")]
    );
    for file in &export.files {
        let bytes = std::fs::read(exports.path().join(REQUEST).join(&file.path)).unwrap();
        assert_eq!((sha256_hex(&bytes), bytes.len() as u64), (file.sha256.clone(), file.size));
    }

    let person = read_json(&contact_file);
    assert_eq!(person["contactId"], JANE);
    assert_eq!(person["tenantId"], 101);
    assert_eq!(person["attributes"]["EmailAddress"][0], "jane.doe@company.com");
    assert_eq!(person["attributes"]["PhoneNumber"][0], "+44 20 7946 0958");

    let file = read_json(&interactions_file);
    assert_eq!(file["contactId"], JANE);
    assert_eq!(file["attachments"], "inline");
    let sources: Vec<&str> = file["dataSources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["dataSource"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["main", "archive"]);
    let main = &file["dataSources"][0];
    assert_eq!(main["available"], true);
    let email = &main["interactions"][0];
    assert_eq!(email["id"], "00001a5R8AJ800AB");
    assert_eq!(email["mediaType"], "email");
    assert_eq!(email["status"], "Stopped");
    assert_eq!(email["subject"], "Invoice 2026-0042");
    assert!(email["text"].as_str().unwrap().contains("please find my invoice attached"));
    assert_eq!(email["structured"]["Direction"], "inbound");
    assert_eq!(email["startDate"], "2026-10-02T09:14:00Z");
    assert_eq!(file["dataSources"][1]["interactions"].as_array().unwrap().len(), 2);

    let attachments = attachments_of(&file);
    let by_id =
        |id: &str| attachments.iter().find(|(_, a)| a["id"] == id).map(|(_, a)| a.clone()).unwrap();
    let invoice = by_id("0000DOC1INVOICE1");
    assert_eq!(
        decode(&invoice),
        std::fs::read(repo_path("examples/sim/files/invoice.pdf")).unwrap()
    );
    assert_eq!(invoice["name"], "invoice-2026-0042.pdf");
    assert_eq!(invoice["mimeType"], "application/pdf");
    let screenshot = by_id("0000DOC3SCREEN01");
    assert_eq!(
        decode(&screenshot),
        std::fs::read(repo_path("examples/sim/files/screenshot.png")).unwrap()
    );
    assert_eq!(decode(&by_id("0000DOC2NOTE0001")), "Merci beaucoup ! — Jane\n".as_bytes());
    for (_, attachment) in &attachments {
        assert_eq!(decode(attachment).len() as u64, attachment["size"].as_u64().unwrap());
    }

    let main_counts = &export.sources[&DataSource::Main];
    let inlined: u64 = attachments.iter().map(|(_, a)| a["size"].as_u64().unwrap()).sum();
    assert_eq!((main_counts.interactions, main_counts.attachments), (3, 3));
    assert_eq!(main_counts.bytes, inlined);
    let archive_counts = &export.sources[&DataSource::Archive];
    assert_eq!((archive_counts.available, archive_counts.interactions), (true, 2));

    verify_contact(&bag, &export).unwrap();
    let report = bag.validate().unwrap();
    assert_eq!(report.files, 2);
    assert_eq!(report.bytes, export.files.iter().map(|f| f.size).sum::<u64>());
    no_temporaries(&data);
    bagit_python_validates(bag.root()).unwrap();
}

/// UCS 9.1 ignores `DataSource`: the export reads the one store once, and holds each of Jane's
/// interactions exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_ucs_9_1_the_export_has_one_source_and_every_interaction_once() {
    let (_sim, client) = demo().await;
    let exports = tempfile::tempdir().unwrap();
    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();
    let options = ExportOptions::for_version(UcsVersion::V9_1);
    assert_eq!(options, ExportOptions::default(), "9.1 is the default");
    let export = export_contact(&client, &bag, &contact(JANE), &options).await.unwrap();
    let file = read_json(&bag.root().join(format!("data/interactions-for-contact-{JANE}.json")));
    let sources = file["dataSources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "one store, one source: {sources:?}");
    assert_eq!(sources[0]["dataSource"], "main");
    let mut ids: Vec<&str> = sources[0]["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "Jane's five interactions, the 2023 ones included");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5, "no interaction twice");
    assert_eq!(export.sources.keys().copied().collect::<Vec<_>>(), [DataSource::Main]);
    assert_eq!(export.interactions(), 5);
    bag.validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omitted_attachments_keep_their_metadata_and_no_bytes() {
    let (_sim, client) = demo().await;
    let exports = tempfile::tempdir().unwrap();
    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();
    let export =
        export_contact(&client, &bag, &contact(JANE), &options(Attachments::Omit)).await.unwrap();
    let file = read_json(&bag.root().join(&export.files[1].path));
    assert_eq!(file["attachments"], "omit");
    let attachments = attachments_of(&file);
    assert_eq!(attachments.len(), 3);
    for (_, attachment) in &attachments {
        assert!(attachment.get("content").is_none(), "{attachment}");
        assert!(attachment["size"].as_u64().unwrap() > 0);
    }
    let text = std::fs::read_to_string(bag.root().join(&export.files[1].path)).unwrap();
    let invoice = std::fs::read(repo_path("examples/sim/files/invoice.pdf")).unwrap();
    let invoice_base64 = base64::engine::general_purpose::STANDARD.encode(&invoice[..30]);
    assert!(!text.contains(&invoice_base64[..40]), "no base64 of the invoice");
    assert_eq!(export.sources[&DataSource::Main].attachments, 3);
    assert_eq!(export.sources[&DataSource::Main].bytes, 0, "bytes count what is inlined");
    bag.validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_without_archive_is_recorded_as_unavailable_with_the_reason() {
    let (_sim, client) = start(&repo_path("examples/sim/no-archive.yaml")).await;
    let exports = tempfile::tempdir().unwrap();
    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();
    let options = ExportOptions::for_version(UcsVersion::V8_5);
    let export = export_contact(&client, &bag, &contact(ALEX), &options).await.unwrap();
    let archive = &export.sources[&DataSource::Archive];
    assert!(!archive.available);
    let reason = archive.reason.clone().unwrap();
    assert!(reason.contains("archive"), "{reason}");
    assert_eq!(export.sources[&DataSource::Main].interactions, 2);

    let file = read_json(&bag.root().join(format!("data/interactions-for-contact-{ALEX}.json")));
    let recorded = &file["dataSources"][1];
    assert_eq!(recorded["dataSource"], "archive");
    assert_eq!(recorded["available"], false);
    assert_eq!(recorded["reason"], reason.as_str());
    assert_eq!(recorded["interactions"], Value::Array(Vec::new()));
    bag.validate().unwrap();
    bagit_python_validates(bag.root()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_payload_file_fails_verification_and_validation_naming_the_file() {
    let (_sim, client) = demo().await;
    let exports = tempfile::tempdir().unwrap();
    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();
    let export =
        export_contact(&client, &bag, &contact(JANE), &ExportOptions::default()).await.unwrap();
    let target = bag.root().join(&export.files[1].path);
    let mut bytes = std::fs::read(&target).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&target, &bytes).unwrap();

    let error = verify_contact(&bag, &export).unwrap_err();
    assert!(matches!(error, ExportError::Mismatch { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(&format!("interactions-for-contact-{JANE}.json")), "{message}");
    assert!(!message.contains("Jane") && !message.contains("jane.doe"), "{message}");

    let error = bag.validate().unwrap_err();
    let ExportError::InvalidBag { problems, .. } = &error else { panic!("{error}") };
    assert_eq!(problems.len(), 1, "{error}");
    assert!(
        matches!(&problems[0], BagProblem::Mismatch { path, .. }
            if path == &format!("data/interactions-for-contact-{JANE}.json")),
        "{error}"
    );
    assert!(error.to_string().contains(&format!("interactions-for-contact-{JANE}.json")));
    assert!(bagit_python_validates(bag.root()).is_err(), "the reference validator agrees");

    // Resume: the tampered export does not verify, so it is exported again, and then it does.
    let again =
        export_contact(&client, &bag, &contact(JANE), &ExportOptions::default()).await.unwrap();
    assert_eq!(again, export, "the same data gives the same files");
    verify_contact(&bag, &export).unwrap();
    bag.validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_export_cannot_point_verification_outside_its_contact() {
    let (_sim, client) = demo().await;
    let exports = tempfile::tempdir().unwrap();
    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();
    let export =
        export_contact(&client, &bag, &contact(JANE), &ExportOptions::default()).await.unwrap();
    let mut forged: ContactExport = serde_json::from_value(serde_json::json!({
        "contact": JANE,
        "files": serde_json::to_value(&export.files).unwrap(),
        "sources": {},
    }))
    .unwrap();
    forged.files[1].path = "../../etc/passwd".to_owned();
    let error = verify_contact(&bag, &forged).unwrap_err();
    assert!(matches!(error, ExportError::NotThisExport { kind: PayloadKind::Interactions, .. }));
    let hostile: Result<ContactExport, _> =
        serde_json::from_value(serde_json::json!({"contact": "../x", "files": [], "sources": {}}));
    assert!(hostile.is_err(), "a contact id is validated when a record is read back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_request_id_is_refused_before_anything_is_written() {
    let exports = tempfile::tempdir().unwrap();
    let error = Bag::open_or_create(&exports.path().join("exports"), "../x").unwrap_err();
    assert!(matches!(error, ExportError::InvalidRequestId { .. }), "{error}");
    assert!(!exports.path().join("exports").exists());
    assert!(!exports.path().join("x").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_exported_concurrently_all_keep_their_manifest_lines() {
    let (_sim, client) = demo().await;
    let exports = tempfile::tempdir().unwrap();
    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();
    let ids = [JANE, JANE_AGAIN, JOSE, ALEX];
    let exports_done = futures_util::future::join_all(ids.into_iter().map(|id| {
        let (client, bag) = (client.clone(), bag.clone());
        tokio::spawn(async move {
            export_contact(&client, &bag, &contact(id), &ExportOptions::default()).await
        })
    }))
    .await;
    for done in exports_done {
        done.unwrap().unwrap();
    }
    // Each contact's lines are on disk when its export returns (appended, in finishing order)...
    let manifest = std::fs::read_to_string(bag.root().join("manifest-sha256.txt")).unwrap();
    assert_eq!(manifest.lines().count(), 8, "{manifest}");
    for id in ids {
        assert!(manifest.contains(&format!("data/contact-{id}.json\n")), "{id}");
        assert!(manifest.contains(&format!("data/interactions-for-contact-{id}.json\n")), "{id}");
    }
    // ...and the finished bag lists them sorted, with its tag files up to date.
    bag.finish().unwrap();
    let manifest = std::fs::read_to_string(bag.root().join("manifest-sha256.txt")).unwrap();
    let paths: Vec<&str> = manifest.lines().map(|l| l.split_once("  ").unwrap().1).collect();
    let mut sorted = paths.clone();
    sorted.sort_unstable();
    assert_eq!(paths, sorted, "manifest lines are sorted");
    assert_eq!(bag.validate().unwrap().files, 8);
    let info = std::fs::read_to_string(bag.root().join("bag-info.txt")).unwrap();
    assert!(info.contains("Payload-Oxum: ") && info.contains(".8\n"), "{info}");
    assert!(info.contains(&format!("Request-Id: {REQUEST}\n")), "{info}");
    assert!(!info.contains("Jane") && !info.contains('@'), "no personal data: {info}");
    bagit_python_validates(bag.root()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_fails_leaves_the_previous_export_intact_and_no_partial_file() {
    let (sim, client) = demo().await;
    let exports = tempfile::tempdir().unwrap();
    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();

    // First export of Jane: the second document download fails. Nothing may appear.
    sim.script_faults(&[ScriptedFault {
        operation: Operation::GetDocument,
        nth: 2,
        kind: FaultKind::Permanent,
    }]);
    let error =
        export_contact(&client, &bag, &contact(JANE), &ExportOptions::default()).await.unwrap_err();
    assert!(matches!(&error, ExportError::Ucs(e) if e.kind == ErrorKind::Permanent), "{error}");
    let data = bag.root().join("data");
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "no file, final or temporary");
    assert_eq!(bag.validate().unwrap().files, 0);

    // A good export, then a failing re-export: the good files stay, verified and listed.
    let good =
        export_contact(&client, &bag, &contact(JANE), &ExportOptions::default()).await.unwrap();
    sim.script_faults(&[ScriptedFault {
        operation: Operation::GetDocument,
        nth: 3,
        kind: FaultKind::Truncated,
    }]);
    let error =
        export_contact(&client, &bag, &contact(JANE), &ExportOptions::default()).await.unwrap_err();
    assert!(matches!(&error, ExportError::Ucs(e) if e.kind == ErrorKind::Protocol), "{error}");
    verify_contact(&bag, &good).unwrap();
    bag.validate().unwrap();
    no_temporaries(&data);
}

/// The real client, whose attachment streams fail after `cut_after` bytes: the connection
/// dropping mid-download, which the simulator's scripted faults cannot do to a body already
/// being streamed.
#[derive(Debug)]
struct CutDownloads {
    inner: RestClient,
    cut_after: u64,
    /// A genuine error of the client, handed out at the cut.
    failure: UcsError,
    cuts: Arc<AtomicU64>,
}

impl Ucs for CutDownloads {
    async fn identify_contacts(&self, r: &IdentifyRequest) -> Result<Identification, UcsError> {
        self.inner.identify_contacts(r).await
    }
    async fn get_contact(&self, c: &ContactId) -> Result<Contact, UcsError> {
        self.inner.get_contact(c).await
    }
    async fn list_interactions(
        &self,
        c: &ContactId,
        s: DataSource,
    ) -> Result<InteractionListing, UcsError> {
        self.inner.list_interactions(c, s).await
    }
    async fn get_interaction_content(
        &self,
        i: &InteractionId,
        s: DataSource,
    ) -> Result<InteractionContent, UcsError> {
        self.inner.get_interaction_content(i, s).await
    }
    async fn open_attachment(
        &self,
        a: &AttachmentId,
        s: DataSource,
    ) -> Result<AttachmentBody, UcsError> {
        let body = self.inner.open_attachment(a, s).await?;
        let (limit, cuts) = (self.cut_after, self.cuts.clone());
        let mut seen = 0u64;
        let failure = self.failure.clone();
        let bytes = body.bytes.flat_map(move |chunk| {
            let items: Vec<Result<bytes::Bytes, UcsError>> = match chunk {
                Ok(chunk) if seen + chunk.len() as u64 > limit => {
                    let keep = usize::try_from(limit.saturating_sub(seen)).unwrap();
                    seen = limit;
                    cuts.fetch_add(1, Ordering::Relaxed);
                    vec![Ok(chunk.slice(..keep)), Err(failure.clone())]
                }
                Ok(chunk) => {
                    seen += chunk.len() as u64;
                    vec![Ok(chunk)]
                }
                Err(error) => vec![Err(error)],
            };
            futures_util::stream::iter(items)
        });
        Ok(AttachmentBody { size: body.size, bytes: Box::pin(bytes) })
    }
    async fn stop_interaction(
        &self,
        i: &InteractionSummary,
        t: TenantId,
        r: &str,
    ) -> Result<(), UcsError> {
        self.inner.stop_interaction(i, t, r).await
    }
    async fn delete_contact(&self, c: &ContactId) -> Result<DeleteOutcome, UcsError> {
        self.inner.delete_contact(c).await
    }
    async fn get_profile(&self, c: &ContactId) -> Result<Option<Profile>, UcsError> {
        self.inner.get_profile(c).await
    }
    async fn delete_profile(&self, c: &ContactId) -> Result<DeleteOutcome, UcsError> {
        self.inner.delete_profile(c).await
    }
    async fn list_services(&self, c: &ContactId) -> Result<Vec<CsService>, UcsError> {
        self.inner.list_services(c).await
    }
    async fn list_anonymous_services(&self, c: &Contact) -> Result<Vec<CsService>, UcsError> {
        self.inner.list_anonymous_services(c).await
    }
    async fn delete_service(&self, s: &ServiceId) -> Result<DeleteOutcome, UcsError> {
        self.inner.delete_service(s).await
    }
    async fn list_callbacks(&self, c: &Contact) -> Result<Vec<Callback>, UcsError> {
        self.inner.list_callbacks(c).await
    }
    async fn cancel_callback(&self, c: &Callback) -> Result<DeleteOutcome, UcsError> {
        self.inner.cancel_callback(c).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_mid_attachment_leaves_no_partial_file_under_its_final_name() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("big.json");
    generate(&GenerateOptions {
        contacts: 1,
        interactions: 1,
        attachment_bytes: 1024 * 1024,
        seed: 11,
        out: dataset.clone(),
    })
    .unwrap();
    let (sim, client) = start(&dataset).await;
    let id = first_contact(&dataset);
    let exports = dir.path().join("exports");
    let bag = Bag::open_or_create(&exports, REQUEST).unwrap();
    let failure = truncated_error(&sim, &client).await;

    let cuts = Arc::new(AtomicU64::new(0));
    let cutting =
        CutDownloads { inner: client.clone(), cut_after: 300_001, failure, cuts: cuts.clone() };
    let error = export_contact(&cutting, &bag, &id, &ExportOptions::default()).await.unwrap_err();
    assert!(matches!(&error, ExportError::Ucs(e) if e.kind == ErrorKind::Protocol), "{error}");
    assert_eq!(cuts.load(Ordering::Relaxed), 1, "the download was cut mid-stream");
    assert_eq!(std::fs::read_dir(bag.root().join("data")).unwrap().count(), 0);
    assert_eq!(bag.validate().unwrap().files, 0);

    // Then the same export through the plain client completes and verifies.
    let export = export_contact(&client, &bag, &id, &ExportOptions::default()).await.unwrap();
    verify_contact(&bag, &export).unwrap();
}

/// Gets a genuine truncated-body error from the client (the simulator's scripted fault), for
/// [`CutDownloads`] to hand out.
async fn truncated_error(sim: &RunningSim, client: &RestClient) -> UcsError {
    sim.script_faults(&[ScriptedFault {
        operation: Operation::GetAttributes,
        nth: 1,
        kind: FaultKind::Truncated,
    }]);
    let id = contact("0000000000000000");
    let error = client.get_contact(&id).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Protocol);
    error
}

/// The first contact id of a generated dataset.
fn first_contact(dataset: &Path) -> ContactId {
    let value: Value = serde_json::from_slice(&std::fs::read(dataset).unwrap()).unwrap();
    contact(value["contacts"][0]["id"].as_str().unwrap())
}

/// The one attachment file a generated dataset wrote beside itself.
fn generated_attachment(dataset: &Path) -> PathBuf {
    let mut name = dataset.file_name().unwrap().to_owned();
    name.push(".files");
    let dir = dataset.with_file_name(name);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_attachment_streams_and_decodes_to_the_original_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("large.json");
    let size = 6 * 1024 * 1024 + 1; // not a multiple of 3: the padding path
    generate(&GenerateOptions {
        contacts: 1,
        interactions: 1,
        attachment_bytes: size,
        seed: 5,
        out: dataset.clone(),
    })
    .unwrap();
    let (_sim, client) = start(&dataset).await;
    let id = first_contact(&dataset);
    let bag = Bag::open_or_create(&dir.path().join("exports"), REQUEST).unwrap();
    let export = export_contact(&client, &bag, &id, &ExportOptions::default()).await.unwrap();
    let bytes: u64 = export.sources.values().map(|s| s.bytes).sum();
    assert_eq!(bytes, size);

    let file = read_json(&bag.root().join(&export.files[1].path));
    let attachments = attachments_of(&file);
    assert_eq!(attachments.len(), 1);
    let original = std::fs::read(generated_attachment(&dataset)).unwrap();
    assert_eq!(original.len() as u64, size);
    assert!(decode(&attachments[0].1) == original, "the decoded attachment differs");
    verify_contact(&bag, &export).unwrap();
    bag.finish().unwrap();
    assert_eq!(validate_dir(bag.root()).unwrap().files, 2);
    bagit_python_validates(bag.root()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_between_rename_and_manifest_resumes_by_verifying_and_recording() {
    let (_sim, client) = demo().await;
    let exports = tempfile::tempdir().unwrap();
    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();
    let export =
        export_contact(&client, &bag, &contact(JANE), &ExportOptions::default()).await.unwrap();
    // As if the process died after the rename, before the manifest listed the files.
    drop(bag);
    std::fs::write(exports.path().join(REQUEST).join("manifest-sha256.txt"), "").unwrap();
    let error = validate_dir(&exports.path().join(REQUEST)).unwrap_err();
    let ExportError::InvalidBag { problems, .. } = &error else { panic!("{error}") };
    assert!(problems.iter().any(|p| matches!(p, BagProblem::Unlisted { .. })), "{error}");

    // The resume: reopen, re-verify from the audit record, record, and the bag is whole again.
    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();
    let recorded: ContactExport =
        serde_json::from_str(&serde_json::to_string(&export).unwrap()).unwrap();
    verify_contact(&bag, &recorded).unwrap();
    bag.record(&recorded).unwrap();
    assert_eq!(bag.validate().unwrap().files, 2);
    bagit_python_validates(bag.root()).unwrap();
}

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_logs_hold_ids_and_counts_and_no_personal_data() {
    let (_sim, client) = demo().await;
    let exports = tempfile::tempdir().unwrap();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test's future is polled on this thread, where the default subscriber applies.
    let _default = tracing::subscriber::set_default(subscriber);
    // Other tests in this process hit the same callsites with no subscriber; a callsite first
    // registered then may have cached "never". Recompute every callsite's interest now that
    // this thread's subscriber exists (a rare flake under load before this).
    tracing::callsite::rebuild_interest_cache();
    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();
    for id in [JANE, JOSE] {
        export_contact(&client, &bag, &contact(id), &ExportOptions::default()).await.unwrap();
    }
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("contact exported and verified") && logs.contains(JANE), "{logs}");
    for personal in [
        "Jane",
        "Doe",
        "jane.doe",
        // Whole numbers only: a bare "7946" also matches a loopback port or a duration.
        "+44 20 7946 0958",
        "7946 0958",
        "Invoice",
        "invoice-2026",
        "screenshot",
        "José",
        "Müller",
        "jose.muller",
        "Where is my order",
        "Kraków",
    ] {
        assert!(!logs.contains(personal), "{personal:?} in the logs:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_line_cut_short_by_a_crash_is_dropped_on_reopen_and_recorded_again() {
    let (_sim, client) = demo().await;
    let exports = tempfile::tempdir().unwrap();
    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();
    let jane =
        export_contact(&client, &bag, &contact(JANE), &ExportOptions::default()).await.unwrap();
    let alex =
        export_contact(&client, &bag, &contact(ALEX), &ExportOptions::default()).await.unwrap();
    drop(bag);
    // The process died in the middle of appending Alex's second line.
    let manifest_path = exports.path().join(REQUEST).join("manifest-sha256.txt");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let alex_line = manifest
        .lines()
        .find(|l| l.ends_with("interactions-for-contact-0002Ha7QB2MX000K.json"))
        .unwrap();
    let cut = manifest.replace(&format!("{alex_line}\n"), "");
    std::fs::write(&manifest_path, format!("{cut}{}", &alex_line[..40])).unwrap();

    let bag = Bag::open_or_create(exports.path(), REQUEST).unwrap();
    let error = bag.validate().unwrap_err();
    let ExportError::InvalidBag { problems, .. } = &error else { panic!("{error}") };
    assert_eq!(problems.len(), 1, "only the unrecorded file: {error}");
    assert!(
        matches!(&problems[0], BagProblem::Unlisted { path } if path.ends_with("0002Ha7QB2MX000K.json"))
    );
    verify_contact(&bag, &alex).unwrap();
    bag.record(&alex).unwrap();
    bag.record(&jane).unwrap();
    assert_eq!(bag.validate().unwrap().files, 4);
    drop(bag);
    bagit_python_validates(&exports.path().join(REQUEST)).unwrap();
}

/// Every file and folder under `dir` whose mode lets anyone but the owner in.
fn open_to_others(dir: &Path, found: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt as _;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        let is_dir = entry.file_type().unwrap().is_dir();
        let expected = if is_dir { 0o700 } else { 0o600 };
        if mode != expected {
            found.push(format!("{} {mode:o}", entry.path().display()));
        }
        if is_dir {
            open_to_others(&entry.path(), found);
        }
    }
}

#[test]
fn bags_receipts_and_simulator_state_are_0600_files_in_0700_folders() {
    let dir = tempfile::tempdir().unwrap();
    let examples = dir.path().join("examples");
    crate::readme::copy_dir(&crate::repo_path("examples"), &examples);
    let output = crate::ucs_gdpr()
        .current_dir(&examples)
        .args(["apply", "--env-file", "ucs-gdpr.yaml", "requests"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", crate::transcript(&output));
    let out = examples.join("out");
    assert!(out.join("exports/DSR-2026-0142/receipt.json").exists());
    assert!(out.join("sim-state/main.db").exists());
    let mut found = Vec::new();
    for private in ["exports", "sim-state"] {
        open_to_others(&out.join(private), &mut found);
    }
    assert!(found.is_empty(), "readable by others: {found:#?}");
}
