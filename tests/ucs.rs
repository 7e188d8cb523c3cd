//! The REST client against the simulator: every connector operation, paging, faults.

// Test helpers may panic: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use ucs_gdpr::sim::{FaultKind, FaultOptions, RunningSim, ScriptedFault, SimOptions, Simulator};
use ucs_gdpr::ucs::wire::Operation;
use ucs_gdpr::ucs::{
    AttachmentId, Auth, AuthError, CallbackState, ClientConfig, Contact, ContactId, DataSource,
    DeleteOutcome, ErrorKind, IdentifyRequest, InteractionId, InteractionListing,
    InteractionStatus, InteractionSummary, ProtocolFault, RestClient, RetryEvent, RetryPolicy,
    RetryThen, TenantId, Ucs, list_all_interactions,
};

mod contract;
mod seam;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/sim").join(name)
}

fn contact(id: &str) -> ContactId {
    ContactId::new(id).unwrap()
}

fn interaction(id: &str) -> InteractionId {
    InteractionId::new(id).unwrap()
}

const JANE: &str = "0001SaD2PVY4312K";
const JANE_AGAIN: &str = "0001TbE3QWZ5520L";
const JOSE: &str = "0001SaD2PVY4315J";
const MAIN_ONLY: &str = "0002Ha7QB2MX000K";

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        base_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(20),
        jitter_seed: 7,
    }
}

fn config_for(sim: &RunningSim) -> ClientConfig {
    let mut config = ClientConfig::new(sim.base_url());
    config.retry = fast_retries();
    config.read_timeout = Duration::from_millis(500);
    config
}

async fn start(dataset: &str, faults: FaultOptions) -> RunningSim {
    let mut options = SimOptions::new(example(dataset));
    options.faults = faults;
    Simulator::start(options).await.unwrap()
}

/// The demo story on UCS 8.5 (separate main and archive data sources): these tests read each
/// data source on its own. (`demo.yaml` is the same story on 9.1, one store.)
async fn demo() -> (RunningSim, RestClient) {
    let sim = start("demo-8.5.yaml", FaultOptions::default()).await;
    let client = RestClient::new(config_for(&sim)).unwrap();
    (sim, client)
}

/// The contacts an identification found, which must be complete.
async fn identified(client: &RestClient, request: &IdentifyRequest) -> Vec<ContactId> {
    let found = client.identify_contacts(request).await.unwrap();
    assert!(found.complete);
    found.contacts
}

fn by_email(email: &str) -> IdentifyRequest {
    IdentifyRequest {
        tenant: TenantId(101),
        attributes: BTreeMap::from([("EmailAddress".to_owned(), email.to_owned())]),
    }
}

async fn read_all(client: &RestClient, id: &str, source: DataSource) -> Vec<u8> {
    let mut body = client.open_attachment(&AttachmentId::new(id).unwrap(), source).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.bytes.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    // The answer is JSON: its length is not the document's, so no size is announced.
    assert_eq!(body.size, None);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_finds_one_two_or_no_contacts() {
    let (_sim, client) = demo().await;
    let one = identified(&client, &by_email("jose.muller@example.org")).await;
    assert_eq!(one, vec![contact(JOSE)]);

    let two = identified(&client, &by_email("jane.doe@company.com")).await;
    assert_eq!(two, vec![contact(JANE), contact(JANE_AGAIN)]);

    let none = identified(&client, &by_email("nobody@company.com")).await;
    assert!(none.is_empty());

    let other_tenant =
        IdentifyRequest { tenant: TenantId(102), ..by_email("jane.doe@company.com") };
    assert!(identified(&client, &other_tenant).await.is_empty());

    let unicode = IdentifyRequest {
        tenant: TenantId(101),
        attributes: BTreeMap::from([
            ("FirstName".to_owned(), "José".to_owned()),
            ("LastName".to_owned(), "Müller-Łukasiewicz".to_owned()),
        ]),
    };
    assert_eq!(identified(&client, &unicode).await, vec![contact(JOSE)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_contact_returns_attributes_including_several_values_and_unicode() {
    let (_sim, client) = demo().await;
    let jane = client.get_contact(&contact(JANE)).await.unwrap();
    assert_eq!(jane.tenant, TenantId(101));
    assert_eq!(jane.attributes["EmailAddress"], vec!["jane.doe@company.com"]);
    assert_eq!(jane.attributes["FirstName"], vec!["Jane"]);

    let again = client.get_contact(&contact(JANE_AGAIN)).await.unwrap();
    assert_eq!(
        again.attributes["EmailAddress"],
        vec!["jane.doe@company.com", "j.doe@home.example"]
    );

    let jose = client.get_contact(&contact(JOSE)).await.unwrap();
    assert_eq!(jose.attributes["LastName"], vec!["Müller-Łukasiewicz"]);
    // Debug shows attribute names, never values.
    let debug = format!("{jose:?}");
    assert!(debug.contains("LastName") && !debug.contains("Müller"), "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_contact_is_a_typed_not_found_without_personal_data() {
    let (_sim, client) = demo().await;
    let error = client.get_contact(&contact("0009ZZZZZZZZZZZZ")).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::NotFound);
    assert_eq!(error.status, Some(404));
    assert_eq!(error.operation, Operation::GetAttributes);
    assert_eq!(
        error.to_string(),
        "GetAttributes failed (not found, HTTP 404, code 510) for 0009ZZZZZZZZZZZZ: not found"
    );
    let listing =
        client.list_interactions(&contact("0009ZZZZZZZZZZZZ"), DataSource::Main).await.unwrap_err();
    assert_eq!(listing.kind, ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactions_come_in_one_unpaged_call_in_a_stable_order() {
    let (sim, client) = demo().await;
    let jane = contact(JANE);
    let InteractionListing::Found(first) =
        client.list_interactions(&jane, DataSource::Main).await.unwrap()
    else {
        panic!("main exists")
    };
    assert_eq!(sim.stats().calls(Operation::GetInteractionsForContact), 1);

    let ids: Vec<_> = first.iter().map(|i| i.id.as_str().to_owned()).collect();
    assert_eq!(ids, ["00001a5R8AJ800AB", "00001a5R8AJ800AC", "00001a5R8AJ800AD"]);
    assert_eq!(first[0].media_type, "email");
    assert_eq!(first[0].attachment_count, 2);
    assert_eq!(first[0].status, InteractionStatus::Stopped);
    assert_eq!(first[0].modified.to_string(), "2026-10-02T09:31:00Z");

    let InteractionListing::Found(all) =
        list_all_interactions(&client, &jane, DataSource::Main, 1).await.unwrap()
    else {
        panic!("main exists")
    };
    assert_eq!(all.len(), 3);
    let InteractionListing::Found(archived) =
        list_all_interactions(&client, &jane, DataSource::Archive, 50).await.unwrap()
    else {
        panic!("archive exists")
    };
    assert_eq!(archived.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_in_main_only_has_an_empty_archive() {
    let (_sim, client) = demo().await;
    let listing =
        list_all_interactions(&client, &contact(MAIN_ONLY), DataSource::Archive, 10).await.unwrap();
    assert_eq!(listing, InteractionListing::Found(vec![]));
    let InteractionListing::Found(main) =
        list_all_interactions(&client, &contact(MAIN_ONLY), DataSource::Main, 10).await.unwrap()
    else {
        panic!("main exists")
    };
    assert_eq!(main.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_archive_role_is_reported_as_the_seed_does_not_as_an_error() {
    let sim = start("no-archive.yaml", FaultOptions::default()).await;
    let client = RestClient::new(config_for(&sim)).unwrap();
    let listing =
        list_all_interactions(&client, &contact(MAIN_ONLY), DataSource::Archive, 10).await.unwrap();
    assert_eq!(
        listing,
        InteractionListing::SourceUnavailable {
            reason: "Server: ucs85-49d888d5a732 Msg: No data source with role 'archive' found"
                .to_owned()
        }
    );
    let InteractionListing::Found(main) =
        list_all_interactions(&client, &contact(MAIN_ONLY), DataSource::Main, 1).await.unwrap()
    else {
        panic!("main exists")
    };
    assert_eq!(main.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_carries_text_fields_and_attachment_metadata() {
    let (_sim, client) = demo().await;
    let content = client
        .get_interaction_content(&interaction("00001a5R8AJ800AB"), DataSource::Main)
        .await
        .unwrap();
    assert_eq!(content.subject.as_deref(), Some("Invoice 2026-0042"));
    assert!(content.text.as_deref().unwrap().starts_with("Hello,\nplease find my invoice"));
    assert_eq!(content.structured["Direction"], "inbound");
    let names: Vec<_> = content.attachments.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["invoice-2026-0042.pdf", "note.txt"]);
    assert_eq!(content.attachments[0].mime_type, "application/pdf");
    let pdf_size = std::fs::metadata(example("files/invoice.pdf")).unwrap().len();
    assert_eq!(content.attachments[0].size, pdf_size);
    assert_eq!(content.attachments[1].size, "Merci beaucoup ! — Jane\n".len() as u64);
    // Debug never shows the text.
    assert!(!format!("{content:?}").contains("invoice attached"));

    let archived = client
        .get_interaction_content(&interaction("00000z9R8AJ700AA"), DataSource::Archive)
        .await
        .unwrap();
    assert_eq!(archived.text.as_deref(), Some("Welcome to our service, Jane!"));
    let wrong_source = client
        .get_interaction_content(&interaction("00000z9R8AJ700AA"), DataSource::Main)
        .await
        .unwrap_err();
    assert_eq!(wrong_source.kind, ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_bytes_arrive_byte_for_byte() {
    let (_sim, client) = demo().await;
    let pdf = read_all(&client, "0000DOC1INVOICE1", DataSource::Main).await;
    assert_eq!(pdf, std::fs::read(example("files/invoice.pdf")).unwrap());
    assert!(pdf.starts_with(b"%PDF-1.4"));
    let png = read_all(&client, "0000DOC3SCREEN01", DataSource::Main).await;
    assert_eq!(png, std::fs::read(example("files/screenshot.png")).unwrap());
    let note = read_all(&client, "0000DOC2NOTE0001", DataSource::Main).await;
    assert_eq!(String::from_utf8(note).unwrap(), "Merci beaucoup ! — Jane\n");
    let missing = client
        .open_attachment(&AttachmentId::new("0000DOCXMISSING0").unwrap(), DataSource::Main)
        .await
        .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_survives_the_round_trip() {
    let (_sim, client) = demo().await;
    let content = client
        .get_interaction_content(&interaction("00001c7T0CL100AA"), DataSource::Main)
        .await
        .unwrap();
    assert_eq!(content.subject.as_deref(), Some("Réclamation n° 17 — 配送の遅れ"));
    assert_eq!(
        content.text.as_deref(),
        Some("Grüße aus Kraków! Mein Paket ist nicht angekommen. 🙁 Ζητώ επιστροφή χρημάτων.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_takes_interactions_out_of_progress_and_workbins() {
    let (_sim, client) = demo().await;
    let jose = contact(JOSE);
    let InteractionListing::Found(before) =
        list_all_interactions(&client, &jose, DataSource::Main, 10).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(before[0].status, InteractionStatus::Pending);
    assert_eq!(before[0].workbin.as_deref(), Some("Inbox-Review"));
    assert_eq!(before[1].status, InteractionStatus::InProcess);
    assert!(before.iter().all(|i| i.is_in_flight()));

    let tenant = TenantId(101);
    for listed in &before {
        client.stop_interaction(listed, tenant, "GDPR erasure DSR-2026-0142").await.unwrap();
    }
    // Stopping again succeeds and changes nothing.
    client.stop_interaction(&before[0], tenant, "again").await.unwrap();
    let InteractionListing::Found(after) =
        list_all_interactions(&client, &jose, DataSource::Main, 10).await.unwrap()
    else {
        panic!()
    };
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(new.status, InteractionStatus::Stopped);
        assert_eq!(new.workbin, None);
        assert!(new.modified > old.modified, "the modification stamp moves");
        assert!(!new.is_in_flight());
    }
    let unknown = InteractionSummary { id: interaction("0000000000000000"), ..before[0].clone() };
    let unknown = client.stop_interaction(&unknown, tenant, "x").await.unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_contact_everywhere_and_a_second_delete_is_already_absent() {
    let (sim, client) = demo().await;
    let jane = contact(JANE);
    assert_eq!(client.delete_contact(&jane).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(client.get_contact(&jane).await.unwrap_err().kind, ErrorKind::NotFound);
    let remaining = identified(&client, &by_email("jane.doe@company.com")).await;
    assert_eq!(remaining, vec![contact(JANE_AGAIN)]);
    for source in DataSource::ALL {
        let gone = client
            .get_interaction_content(&interaction("00001a5R8AJ800AB"), source)
            .await
            .unwrap_err();
        assert_eq!(gone.kind, ErrorKind::NotFound);
    }
    let archived = client
        .get_interaction_content(&interaction("00000z9R8AJ700AA"), DataSource::Archive)
        .await
        .unwrap_err();
    assert_eq!(archived.kind, ErrorKind::NotFound);
    let document = client
        .open_attachment(&AttachmentId::new("0000DOC2NOTE0001").unwrap(), DataSource::Main)
        .await
        .unwrap_err();
    assert_eq!(document.kind, ErrorKind::NotFound);
    assert_eq!(client.delete_contact(&jane).await.unwrap(), DeleteOutcome::AlreadyAbsent);
    // The dataset's own files are left alone.
    assert!(example("files/invoice.pdf").exists());
    assert_eq!(sim.stats().calls(Operation::DeleteContact), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_services_profiles_can_be_read_and_deleted() {
    let (_sim, client) = demo().await;
    let jane = contact(JANE);
    let profile = client.get_profile(&jane).await.unwrap().unwrap();
    assert_eq!(profile.id, jane);
    assert_eq!(profile.fields["email"], "jane.doe@company.com");
    assert!(!format!("{profile:?}").contains("jane.doe"));
    assert_eq!(client.get_profile(&contact(JOSE)).await.unwrap(), None);
    assert_eq!(client.delete_profile(&jane).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(client.get_profile(&jane).await.unwrap(), None);
    assert_eq!(client.delete_profile(&jane).await.unwrap(), DeleteOutcome::AlreadyAbsent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_services_services_with_states_and_tasks_outlive_the_profile_until_deleted() {
    let (sim, client) = demo().await;
    let jane = contact(JANE);
    let services = client.list_services(&jane).await.unwrap();
    assert_eq!(services.len(), 1);
    let service = &services[0];
    assert_eq!(service.id.as_str(), "4041");
    assert!(!service.anonymous);
    assert_eq!(service.service["service_type"], "order-support");
    assert_eq!((service.states.len(), service.tasks.len()), (2, 1));

    // The anonymous service the IVR keyed by Jane's phone number is found by her numbers.
    let record = client.get_contact(&jane).await.unwrap();
    let anonymous = client.list_anonymous_services(&record).await.unwrap();
    assert_eq!(anonymous.len(), 1, "found once, though two forms of the number were asked");
    assert!(anonymous[0].anonymous);
    assert_eq!(anonymous[0].id.as_str(), "361-a3793cef-d559-4f9f-a95d-64555a4ba371");
    assert!(!format!("{:?}", anonymous[0]).contains("7946"), "Debug shows no number");
    let jose = client.get_contact(&contact(JOSE)).await.unwrap();
    assert!(client.list_anonymous_services(&jose).await.unwrap().is_empty());
    assert!(client.list_services(&contact(JOSE)).await.unwrap().is_empty());

    // Deleting the profile leaves the services (Context Services 8.5.0 and later).
    assert_eq!(client.delete_profile(&jane).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(client.list_services(&jane).await.unwrap().len(), 1);
    // DeleteServiceByID: deleted, then the documented 400 NotFoundException is "already absent".
    assert_eq!(client.delete_service(&service.id).await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(client.delete_service(&service.id).await.unwrap(), DeleteOutcome::AlreadyAbsent);
    assert!(client.list_services(&jane).await.unwrap().is_empty());
    assert_eq!(client.delete_service(&anonymous[0].id).await.unwrap(), DeleteOutcome::Deleted);
    assert!(client.list_anonymous_services(&record).await.unwrap().is_empty());
    let stats: serde_json::Value =
        reqwest::get(format!("{}/sim/stats", sim.base_url())).await.unwrap().json().await.unwrap();
    assert_eq!(stats["nonConforming"], serde_json::json!([]), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gms_callbacks_are_found_by_phone_number_across_services_and_cancelled_in_their_own() {
    let (sim, client) = demo().await;
    let jane = client.get_contact(&contact(JANE)).await.unwrap();
    let done = client.list_callbacks(&jane).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].state, CallbackState::Completed);
    assert_eq!(done[0].service, "callback-for-web");
    assert!(!done[0].state.is_pending(), "a completed callback does not block");

    let jose = client.get_contact(&contact(JOSE)).await.unwrap();
    let callbacks = client.list_callbacks(&jose).await.unwrap();
    assert_eq!(callbacks.len(), 1);
    let callback = &callbacks[0];
    assert_eq!(callback.id.as_str(), "9a7c5e1b-2f1d-4c33-9d0e-5c1f0a6b7e21");
    assert_eq!(callback.service, "callback");
    assert_eq!(callback.state, CallbackState::Scheduled);
    assert!(callback.state.is_pending());
    assert_eq!(callback.phone_number, "+48 12 345 67 89");
    assert_eq!(callback.desired_time.unwrap().to_string(), "2026-12-01T14:00:00Z");
    assert!(!format!("{callback:?}").contains("345 67"), "the number is redacted from Debug");
    let nobody = client.get_contact(&contact(MAIN_ONLY)).await.unwrap();
    assert!(client.list_callbacks(&nobody).await.unwrap().is_empty(), "no phone: no query");
    assert_eq!(sim.stats().calls(Operation::ListCallbacks), 4, "two forms of each number");

    // Cancelled where it lives: the record's own service.
    let mut elsewhere = callback.clone();
    elsewhere.service = "callback-for-web".to_owned();
    assert_eq!(client.cancel_callback(&elsewhere).await.unwrap(), DeleteOutcome::AlreadyAbsent);
    assert_eq!(client.cancel_callback(callback).await.unwrap(), DeleteOutcome::Deleted);
    assert!(client.list_callbacks(&jose).await.unwrap().is_empty());
    assert_eq!(client.cancel_callback(callback).await.unwrap(), DeleteOutcome::AlreadyAbsent);
    let stats: serde_json::Value =
        reqwest::get(format!("{}/sim/stats", sim.base_url())).await.unwrap().json().await.unwrap();
    assert_eq!(stats["nonConforming"], serde_json::json!([]), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_refuses_and_journals_an_undocumented_callback_query() {
    let (sim, _client) = demo().await;
    // The invented query of earlier versions: `_customer_id` is no callback property.
    let url = format!("{}/genesys/1/service/callback/callback?_customer_id={JOSE}", sim.base_url());
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["exception"].as_str().unwrap().ends_with("BadRequestException"), "{body}");
    assert!(body["message"].is_string(), "{body}");
    let stats: serde_json::Value =
        reqwest::get(format!("{}/sim/stats", sim.base_url())).await.unwrap().json().await.unwrap();
    assert_eq!(stats["nonConforming"][0]["operation"], "ListCallbacks", "{stats}");

    // A verb the page does not document (the old client stopped interactions with POST; here,
    // a POST where DeleteServiceByID takes DELETE) is refused and journaled too.
    let response = reqwest::Client::new()
        .post(format!("{}/genesys/1/cs/services/4041", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let journal = sim.conformance().non_conforming;
    assert_eq!(journal.len(), 2, "{journal:?}");
    assert_eq!(journal[1].operation, "DeleteService");
    assert!(journal[1].problem.contains("POST"), "{journal:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gms_answer_that_is_one_object_is_one_callback() {
    let one = r#"{"_id":"a-1","_service_name":"cb","_callback_state":"QUEUED","_desired_time":"2016-06-14T13:05:00.000Z","_expiration_time":"2016-06-14T14:05:00.000Z","_customer_number":"5551234"}"#;
    let (url, request) = recording_server(one).await;
    let mut config = ClientConfig::new("http://127.0.0.1:1");
    config.gms_url = Some(url);
    let client = RestClient::new(config).unwrap();
    let contact = Contact {
        id: contact(JANE),
        tenant: ucs_gdpr::ucs::TenantId(101),
        attributes: [("PhoneNumber".to_owned(), vec!["5551234".to_owned()])].into(),
    };
    let found = client.list_callbacks(&contact).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].id.as_str(), found[0].service.as_str()), ("a-1", "cb"));
    assert_eq!(found[0].state, CallbackState::Queued);
    let request = request.await.unwrap();
    assert!(
        request
            .starts_with("GET /genesys/1/service/callback?_customer_number=5551234 HTTP/1.1\r\n"),
        "{request}"
    );
}

#[test]
fn hostile_ids_are_rejected_before_they_reach_a_url() {
    for hostile in ["../../x", "0001SaD2PVY4312/", "0001SaD2PVY4312K?a=b", "", "0001SaD2PVY4312Ké"]
    {
        let error = ContactId::new(hostile).unwrap_err();
        assert!(!error.to_string().contains(hostile) || hostile.is_empty());
    }
    assert!(InteractionId::new("00001a5R8AJ800A%").is_err());
    assert!(ContactId::new(JANE).is_ok());
    assert!(serde_json::from_str::<ContactId>("\"../../etc/passwd\"").is_err());
}

#[test]
fn secrets_resolve_from_named_variables_and_never_show() {
    let vars = BTreeMap::from([("UCS_PASSWORD", "s3cret"), ("UCS_TOKEN", "t0ken")]);
    let lookup = |name: &str| vars.get(name).map(|v| (*v).to_owned());
    let basic = Auth::resolve_with(Some("svc"), Some("UCS_PASSWORD"), None, lookup).unwrap();
    assert!(
        matches!(&basic, Auth::Basic { user, password } if user == "svc" && password == "s3cret")
    );
    assert!(!format!("{basic:?}").contains("s3cret"));
    let bearer = Auth::resolve_with(None, None, Some("UCS_TOKEN"), lookup).unwrap();
    assert!(!format!("{bearer:?}").contains("t0ken"));
    let missing =
        Auth::resolve_with(Some("svc"), Some("UCS_PASSWORD_PROD"), None, lookup).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "environment variable UCS_PASSWORD_PROD is not set; it should hold the password"
    );
    assert_eq!(
        Auth::resolve_with(None, Some("UCS_PASSWORD"), Some("UCS_TOKEN"), lookup).unwrap_err(),
        AuthError::Ambiguous
    );
}

/// A one-shot server that records the request it gets and answers `body` as JSON.
async fn recording_server(body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&request);
            let complete = text.contains("\r\n\r\n")
                && (!text.to_ascii_lowercase().contains("content-length") || text.ends_with("}}"));
            if complete {
                break;
            }
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "request ended early");
            request.extend_from_slice(&buffer[..n]);
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        String::from_utf8(request).unwrap()
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_in_the_authorization_header_and_identification_in_the_body() {
    let (url, request) =
        recording_server(r#"{"NumberOfContactsFound":0,"ContactCreated":"false"}"#).await;
    let mut config = ClientConfig::new(format!("{url}/base"));
    config.auth = Auth::Basic { user: "svc".to_owned(), password: "s3cret".to_owned() };
    let client = RestClient::new(config).unwrap();
    assert!(identified(&client, &by_email("jane.doe@company.com")).await.is_empty());
    let request = request.await.unwrap();
    assert!(
        request.starts_with("POST /base/ucs/v1/OMContacts/IdentifyContact HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(request.contains("\r\nauthorization: Basic c3ZjOnMzY3JldA==\r\n"), "{request}");
    // The documented body: attributes flat in Parameters, CreateContact the STRING "false".
    let body = request.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap(),
        serde_json::json!({
            "Parameters": {
                "TenantId": 101,
                "EmailAddress": "jane.doe@company.com",
                "CreateContact": "false",
                "ReturnUnique": "false"
            },
            "UserData": {}
        }),
        "{request}"
    );

    let (url, request) = recording_server(r#"{"NumberOfContactsFound":0}"#).await;
    let mut config = ClientConfig::new(url);
    config.auth = Auth::Bearer("t0ken".to_owned());
    let client = RestClient::new(config).unwrap();
    client.identify_contacts(&by_email("a@b.c")).await.unwrap();
    assert!(request.await.unwrap().contains("authorization: Bearer t0ken\r\n"));

    // Context Services with credentials of its own.
    let (url, request) = recording_server(r#"{"customer_id":"0001SaD2PVY4312K"}"#).await;
    let mut config = ClientConfig::new("http://127.0.0.1:1");
    config.auth = Auth::Bearer("ucs-token".to_owned());
    config.context_services_url = Some(url);
    config.context_services_auth = Some(Auth::Bearer("cs-token".to_owned()));
    let client = RestClient::new(config).unwrap();
    assert!(client.get_profile(&contact(JANE)).await.unwrap().unwrap().fields.is_empty());
    let request = request.await.unwrap();
    assert!(request.starts_with("GET /profiles/0001SaD2PVY4312K HTTP/1.1\r\n"), "{request}");
    assert!(request.contains("authorization: Bearer cs-token\r\n"), "{request}");
}

#[test]
fn a_bad_configuration_is_refused_up_front() {
    assert!(RestClient::new(ClientConfig::new("not a url")).is_err());
    assert!(RestClient::new(ClientConfig::new("ftp://ucs:8889")).is_err());
    let mut config = ClientConfig::new("http://127.0.0.1:1");
    config.ca_file = Some(example("demo.yaml"));
    let error = RestClient::new(config).unwrap_err().to_string();
    assert!(error.starts_with("cannot use CA file"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_and_the_rate_limit_hold() {
    let sim = start(
        "demo.yaml",
        FaultOptions { latency: Duration::from_millis(50), ..FaultOptions::default() },
    )
    .await;
    let mut config = config_for(&sim);
    config.concurrency = 2;
    let client = RestClient::new(config).unwrap();
    let started = std::time::Instant::now();
    let jane = contact(JANE);
    let reads = (0..6).map(|_| client.get_contact(&jane));
    for read in futures_util::future::join_all(reads).await {
        read.unwrap();
    }
    // Six 50 ms calls, two at a time: three rounds.
    assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());

    let (sim, _) = demo().await;
    let mut config = config_for(&sim);
    config.rate_limit = Some(20.0);
    let client = RestClient::new(config).unwrap();
    let started = std::time::Instant::now();
    for _ in 0..30 {
        client.get_contact(&contact(JANE)).await.unwrap();
    }
    // A burst of 20, then 10 more at 20 per second.
    assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
}

#[test]
fn a_rate_limit_out_of_bounds_is_a_configuration_error_not_a_panic_or_a_hang() {
    // 1e-20 used to panic (a wait beyond Duration's range), 1e-7 to wait 116 days per call.
    for rate in [1e-20, 1e-7, 0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
        let mut config = ClientConfig::new("http://127.0.0.1:9/");
        config.rate_limit = Some(rate);
        let error = RestClient::new(config).map(|_| ()).unwrap_err().to_string();
        assert_eq!(error, "the rate limit must be from 0.1 to 100000 calls per second", "{rate}");
    }
    for rate in [0.1, 100_000.0] {
        let mut config = ClientConfig::new("http://127.0.0.1:9/");
        config.rate_limit = Some(rate);
        RestClient::new(config).unwrap();
    }
}

mod faults {
    use super::*;

    fn recorder(config: &mut ClientConfig) -> Arc<Mutex<Vec<RetryEvent>>> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        config.on_retry = Some(Arc::new(move |event: &RetryEvent| {
            sink.lock().unwrap().push(event.clone());
        }));
        events
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_survives_a_503_a_reset_and_a_timeout_in_a_row() {
        let script = [FaultKind::Unavailable, FaultKind::Reset, FaultKind::Timeout]
            .into_iter()
            .enumerate()
            .map(|(n, kind)| ScriptedFault {
                operation: Operation::GetAttributes,
                nth: n as u64 + 1,
                kind,
            })
            .collect();
        let sim = start("demo.yaml", FaultOptions { script, ..FaultOptions::default() }).await;
        let mut config = config_for(&sim);
        config.read_timeout = Duration::from_millis(400);
        let events = recorder(&mut config);
        let client = RestClient::new(config).unwrap();

        let jane = client.get_contact(&contact(JANE)).await.unwrap();
        assert_eq!(jane.id, contact(JANE));
        let stats = sim.stats();
        assert_eq!(stats.calls(Operation::GetAttributes), 4);
        assert_eq!(stats.faults["unavailable"], 1);
        assert_eq!(stats.faults["reset"], 1);
        assert_eq!(stats.faults["timeout"], 1);
        let events = events.lock().unwrap();
        let attempts: Vec<_> = events.iter().map(|e| (e.attempt, e.kind, e.status)).collect();
        assert_eq!(
            attempts,
            [
                (1, ErrorKind::Transient, Some(503)),
                (2, ErrorKind::Transient, None),
                (3, ErrorKind::Transient, None)
            ]
        );
        assert!(events.iter().all(|e| e.then == RetryThen::Retry));
        assert_eq!(events[0].subject.as_deref(), Some(JANE));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_succeed_through_random_faults() {
        let faults = FaultOptions {
            seed: 42,
            error_rate: 0.2,
            reset_rate: 0.1,
            timeout_rate: 0.05,
            ..FaultOptions::default()
        };
        let sim = start("demo-8.5.yaml", faults).await;
        let mut config = config_for(&sim);
        config.read_timeout = Duration::from_millis(400);
        config.retry.max_attempts = 10;
        let client = RestClient::new(config).unwrap();
        for _ in 0..10 {
            client.get_contact(&contact(JANE)).await.unwrap();
            let listing =
                list_all_interactions(&client, &contact(JANE), DataSource::Main, 2).await.unwrap();
            assert!(matches!(listing, InteractionListing::Found(ref all) if all.len() == 3));
            let pdf = read_all(&client, "0000DOC1INVOICE1", DataSource::Main).await;
            assert_eq!(
                pdf.len() as u64,
                std::fs::metadata(example("files/invoice.pdf")).unwrap().len()
            );
        }
        let stats = sim.stats();
        let injected: u64 = stats.faults.values().sum();
        let calls: u64 = stats.calls.values().sum();
        assert!(injected > 0, "{stats:?}");
        // 10 × (1 attributes + 1 unpaged listing + 1 document) answered, plus one call per
        // fault.
        assert_eq!(calls, 30 + injected, "{stats:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_permanent_error_surfaces_typed_after_one_attempt() {
        let sim = start("demo.yaml", FaultOptions::default()).await;
        sim.script_faults(&[ScriptedFault {
            operation: Operation::GetInteractionContent,
            nth: 1,
            kind: FaultKind::Permanent,
        }]);
        let client = RestClient::new(config_for(&sim)).unwrap();
        let error = client
            .get_interaction_content(&interaction("00001a5R8AJ800AB"), DataSource::Main)
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Permanent);
        assert_eq!(error.status, Some(500));
        assert_eq!(error.attempts, 1);
        assert_eq!(sim.stats().calls(Operation::GetInteractionContent), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transient_failures_give_up_after_the_last_attempt() {
        let sim =
            start("demo.yaml", FaultOptions { error_rate: 1.0, ..FaultOptions::default() }).await;
        let client = RestClient::new(config_for(&sim)).unwrap();
        let error = client.get_contact(&contact(JANE)).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Transient);
        assert_eq!(error.attempts, 6);
        assert_eq!(sim.stats().calls(Operation::GetAttributes), 6);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delete_whose_answer_is_lost_is_checked_not_repeated() {
        let sim = start("demo.yaml", FaultOptions::default()).await;
        // The simulator deletes, then drops the connection: the client cannot know.
        sim.script_faults(&[ScriptedFault {
            operation: Operation::DeleteContact,
            nth: 1,
            kind: FaultKind::Reset,
        }]);
        let mut config = config_for(&sim);
        let events = recorder(&mut config);
        let client = RestClient::new(config).unwrap();
        // Gone when checked after the lost answer: that attempt deleted it (not "already
        // absent", which is a first answer of "not found").
        assert_eq!(
            client.delete_contact(&contact(JANE)).await.unwrap(),
            DeleteOutcome::AbsentAfterLostAnswer
        );
        let stats = sim.stats();
        assert_eq!(stats.calls(Operation::DeleteContact), 1, "never sent twice");
        assert_eq!(stats.calls(Operation::GetAttributes), 1, "checked once");
        let thens: Vec<_> = events.lock().unwrap().iter().map(|e| e.then).collect();
        assert_eq!(thens, [RetryThen::VerifyAbsence]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delete_refused_with_503_is_retried_after_checking_the_contact_is_still_there() {
        let sim = start("demo.yaml", FaultOptions::default()).await;
        sim.script_faults(&[ScriptedFault {
            operation: Operation::DeleteContact,
            nth: 1,
            kind: FaultKind::Unavailable,
        }]);
        let mut config = config_for(&sim);
        let events = recorder(&mut config);
        let client = RestClient::new(config).unwrap();
        assert_eq!(client.delete_contact(&contact(JANE)).await.unwrap(), DeleteOutcome::Deleted);
        let stats = sim.stats();
        assert_eq!(stats.calls(Operation::DeleteContact), 2);
        assert_eq!(stats.calls(Operation::GetAttributes), 1);
        let thens: Vec<_> = events.lock().unwrap().iter().map(|e| e.then).collect();
        assert_eq!(thens, [RetryThen::VerifyAbsence, RetryThen::Retry]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn garbage_truncated_and_oversized_bodies_are_protocol_errors() {
        let sim = start("demo.yaml", FaultOptions::default()).await;
        sim.script_faults(&[
            ScriptedFault { operation: Operation::GetAttributes, nth: 1, kind: FaultKind::Garbage },
            ScriptedFault {
                operation: Operation::GetAttributes,
                nth: 2,
                kind: FaultKind::Truncated,
            },
        ]);
        let client = RestClient::new(config_for(&sim)).unwrap();
        let garbage = client.get_contact(&contact(JANE)).await.unwrap_err();
        assert_eq!(
            (garbage.kind, garbage.protocol),
            (ErrorKind::Protocol, Some(ProtocolFault::Malformed))
        );
        let truncated = client.get_contact(&contact(JANE)).await.unwrap_err();
        assert_eq!(
            (truncated.kind, truncated.protocol),
            (ErrorKind::Protocol, Some(ProtocolFault::Truncated))
        );
        assert_eq!(
            sim.stats().calls(Operation::GetAttributes),
            2,
            "protocol errors are not retried"
        );

        let mut config = config_for(&sim);
        config.max_body_bytes = 64;
        let small = RestClient::new(config).unwrap();
        let oversized = small
            .get_interaction_content(&interaction("00001a5R8AJ800AB"), DataSource::Main)
            .await
            .unwrap_err();
        assert_eq!(oversized.protocol, Some(ProtocolFault::Oversized));
        assert!(!oversized.to_string().contains("invoice"), "{oversized}");
    }

    /// A broken server: answers every connection with `response` and closes it.
    async fn broken_server(response: &'static [u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    let _ = stream.write_all(response).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        format!("http://{address}")
    }

    fn client_for(url: String) -> RestClient {
        let mut config = ClientConfig::new(url);
        config.retry = RetryPolicy { max_attempts: 2, ..fast_retries() };
        config.read_timeout = Duration::from_millis(500);
        RestClient::new(config).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broken_server_gives_typed_errors_never_a_panic() {
        let html = client_for(
            broken_server(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\n<html>",
            )
            .await,
        );
        let error = html.get_contact(&contact(JANE)).await.unwrap_err();
        assert_eq!(error.protocol, Some(ProtocolFault::WrongContentType));

        let short = client_for(
            broken_server(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Contact")
                .await,
        );
        let error = short.get_contact(&contact(JANE)).await.unwrap_err();
        assert_eq!(error.protocol, Some(ProtocolFault::Truncated));

        let json_garbage = client_for(
            broken_server(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n\xff\xfe\x00garbag")
                .await,
        );
        let error = json_garbage.get_profile(&contact(JANE)).await.unwrap_err();
        assert_eq!(error.protocol, Some(ProtocolFault::Malformed));

        let huge = client_for(
            broken_server(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{")
                .await,
        );
        let error = huge.get_contact(&contact(JANE)).await.unwrap_err();
        assert_eq!(error.protocol, Some(ProtocolFault::Oversized));

        let not_http =
            client_for(broken_server(b"\x00\x01\x02 this is not HTTP at all\r\n\r\n").await);
        let error = not_http.get_contact(&contact(JANE)).await.unwrap_err();
        assert!(matches!(error.kind, ErrorKind::Transient | ErrorKind::Protocol), "{error}");

        let wrong_ids = client_for(
            broken_server(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 33\r\n\r\n{\"ContactIdList\":[\"../../etc/x\"]}")
                .await,
        );
        let error = wrong_ids.identify_contacts(&by_email("a@b.c")).await.unwrap_err();
        assert_eq!(error.protocol, Some(ProtocolFault::Malformed));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_faults_endpoint_scripts_the_nth_call_from_now() {
        let (sim, client) = demo().await;
        client.get_contact(&contact(JANE)).await.unwrap();
        let http = reqwest::Client::new();
        let installed: serde_json::Value = http
            .post(format!("{}/sim/faults", sim.base_url()))
            .json(
                &serde_json::json!([{"operation": "GetAttributes", "nth": 2, "kind": "permanent"}]),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(installed["installed"], 1);
        client.get_contact(&contact(JANE)).await.unwrap();
        let error = client.get_contact(&contact(JANE)).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Permanent);
        let stats: serde_json::Value = http
            .get(format!("{}/sim/stats", sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats["calls"]["GetAttributes"], 3);
        assert_eq!(stats["faults"]["permanent"], 1);
    }
}

/// Regression: two deletes at once used to race in the simulator's store (a deferred
/// transaction that read, then wrote, failed when another connection committed between).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deletes_of_different_contacts_all_succeed() {
    let (_sim, client) = demo().await;
    let ids = [JANE, JANE_AGAIN, JOSE, MAIN_ONLY].map(contact);
    let outcomes =
        futures_util::future::join_all(ids.iter().map(|id| client.delete_contact(id))).await;
    for outcome in outcomes {
        assert_eq!(outcome.unwrap(), DeleteOutcome::Deleted);
    }
    for id in &ids {
        assert_eq!(client.get_contact(id).await.unwrap_err().kind, ErrorKind::NotFound);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_is_found_whatever_service_holds_it_and_however_the_number_is_spaced() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("d.yaml");
    std::fs::write(
        &dataset,
        "contacts:\n  - id: 0001SaD2PVY4399X\n    tenant: 101\n    attributes:\n      \
         MobilePhone: \"+1 555 0100\"\n    callbacks:\n      - { id: cb-1, service: \
         callback-for-mobile, state: QUEUED, phoneNumber: \"+15550100\" }\n",
    )
    .unwrap();
    let sim = Simulator::start(SimOptions::new(dataset)).await.unwrap();
    let client = RestClient::new(config_for(&sim)).unwrap();
    let record = client.get_contact(&contact("0001SaD2PVY4399X")).await.unwrap();
    let found = client.list_callbacks(&record).await.unwrap();
    assert_eq!(found.len(), 1, "found by the number's digits, in a service nobody configured");
    assert_eq!(found[0].service, "callback-for-mobile");
    assert!(found[0].state.is_pending());
    assert_eq!(client.cancel_callback(&found[0]).await.unwrap(), DeleteOutcome::Deleted);
    assert!(client.list_callbacks(&record).await.unwrap().is_empty());
    assert!(sim.conformance().non_conforming.is_empty(), "{:?}", sim.conformance().non_conforming);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_lookup_key_is_queried_with_the_contacts_attribute_values() {
    let (url, request) = recording_server("[]").await;
    let mut config = ClientConfig::new("http://127.0.0.1:1");
    config.gms_url = Some(url);
    config.gms_lookup_keys = vec![("_customer_email".to_owned(), "EmailAddress".to_owned())];
    let client = RestClient::new(config).unwrap();
    let contact = Contact {
        id: contact(JANE),
        tenant: TenantId(101),
        attributes: [("EmailAddress".to_owned(), vec!["someone@lookup.example".to_owned()])].into(),
    };
    assert!(client.list_callbacks(&contact).await.unwrap().is_empty());
    let request = request.await.unwrap();
    assert!(
        request.starts_with(
            "GET /genesys/1/service/callback?_customer_email=someone%40lookup.example HTTP/1.1\r\n"
        ),
        "{request}"
    );
}

/// The test PKI in `tests/fixtures/tls/`: a server certificate for `localhost` and
/// `127.0.0.1` signed by `cs-ca.pem`, and `other-ca.pem`, which signed nothing here.
fn tls_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

/// An HTTPS server with the fixture's `localhost` certificate that answers every request with
/// `body` as JSON, for as long as the test runs; its base URL.
async fn tls_server(body: &'static str) -> String {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(tls_fixture("server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(tls_fixture("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}/", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake.
                let Ok(mut stream) = acceptor.accept(stream).await else { return };
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    url
}

/// A configuration whose UCS is never called, with one attempt per call (a refused
/// certificate is not worth retrying here).
fn tls_config(ucs_ca: &str) -> ClientConfig {
    let mut config = ClientConfig::new("http://127.0.0.1:1");
    config.ca_file = Some(tls_fixture(ucs_ca));
    config.retry = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
    config
}

/// Each backend trusts its own CA file: Context Services with a `caFile` of its own trusts
/// that one and not UCS's; without one it trusts UCS's, and only that (issue: the Context
/// Services and GMS `caFile` were accepted and ignored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_services_trusts_its_own_ca_file_or_else_the_ucs_one() {
    let url = tls_server(r#"{"customer_id":"0001SaD2PVY4312K"}"#).await;
    let jane = contact(JANE);

    // Its own CA file signed the server's certificate; UCS's did not.
    let mut config = tls_config("other-ca.pem");
    config.context_services_url = Some(url.clone());
    config.context_services_ca_file = Some(tls_fixture("cs-ca.pem"));
    let client = RestClient::new(config).unwrap();
    assert!(client.get_profile(&jane).await.unwrap().is_some());

    // None of its own: UCS's, which did not sign it, is what it trusts.
    let mut config = tls_config("other-ca.pem");
    config.context_services_url = Some(url.clone());
    let client = RestClient::new(config).unwrap();
    let refused = |error: ucs_gdpr::ucs::UcsError| {
        // Not worth retrying, and said as what it is.
        assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
        assert!(error.detail.contains("TLS certificate was refused (UnknownIssuer)"), "{error}");
        assert!(error.detail.contains("`caFile`"), "{error}");
    };
    refused(client.get_profile(&jane).await.unwrap_err());

    // None of its own, and UCS's signed it.
    let mut config = tls_config("cs-ca.pem");
    config.context_services_url = Some(url.clone());
    let client = RestClient::new(config).unwrap();
    assert!(client.get_profile(&jane).await.unwrap().is_some());

    // Its own is not UCS's: with UCS's signing the server and its own not, it refuses.
    let mut config = tls_config("cs-ca.pem");
    config.context_services_url = Some(url);
    config.context_services_ca_file = Some(tls_fixture("other-ca.pem"));
    let client = RestClient::new(config).unwrap();
    refused(client.get_profile(&jane).await.unwrap_err());

    // A CA file that is not one is refused when the client is built, naming it.
    let mut config = tls_config("cs-ca.pem");
    config.gms_ca_file = Some(example("demo.yaml"));
    let error = RestClient::new(config).unwrap_err().to_string();
    assert!(error.starts_with("cannot use CA file") && error.contains("demo.yaml"), "{error}");
}

/// The environments file's `contextServices.caFile` and `gms.caFile` reach the client,
/// resolved against the file's folder, and a missing one is an error at load, located.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environments_file_gives_each_service_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(tls_fixture("cs-ca.pem"), dir.path().join("cs-ca.pem")).unwrap();
    std::fs::copy(tls_fixture("other-ca.pem"), dir.path().join("ucs-ca.pem")).unwrap();
    let url = tls_server(r#"{"customer_id":"0001SaD2PVY4312K"}"#).await;
    let write = |cs_ca: &str, gms_ca: &str| {
        let path = dir.path().join("ucs-gdpr.yaml");
        std::fs::write(
            &path,
            format!(
                "apiVersion: ucs-gdpr/v1\nkind: Environments\nenvironments:\n  production:\n    \
                 type: rest\n    tenant: 101\n    hmacKeyEnv: UCS_GDPR_TEST_HMAC\n    \
                 ucs: {{ url: \"http://127.0.0.1:1/\", caFile: ucs-ca.pem }}\n    \
                 contextServices: {{ url: \"{url}\", caFile: {cs_ca} }}\n    \
                 gms: {{ url: \"{url}\", caFile: {gms_ca} }}\n"
            ),
        )
        .unwrap();
        ucs_gdpr::environment::Environments::load(&path)
    };
    let (environments, _) = write("cs-ca.pem", "ucs-ca.pem").unwrap();
    let (mut config, _) = environments.rest_config("production").unwrap();
    assert_eq!(config.context_services_ca_file, Some(dir.path().join("cs-ca.pem")));
    assert_eq!(config.gms_ca_file, Some(dir.path().join("ucs-ca.pem")));
    config.retry = RetryPolicy { max_attempts: 1, ..RetryPolicy::default() };
    let client = RestClient::new(config).unwrap();
    assert!(client.get_profile(&contact(JANE)).await.unwrap().is_some());

    let report = write("missing-cs-ca.pem", "missing-gms-ca.pem").unwrap_err();
    let found: Vec<String> =
        report.diagnostics.iter().map(|d| format!("{}: {}", d.code, d.message)).collect();
    assert_eq!(
        found,
        [
            "environments::missing-file: environment `production`: the Context Services CA file \
             does not exist",
            "environments::missing-file: environment `production`: the GMS CA file does not exist",
        ]
    );
}
