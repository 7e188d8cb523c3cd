//! Contract tests from Genesys's documentation: every request and answer example (or, where
//! a page shows none, the shape built from its tables) in `tests/fixtures/genesys/`, each with
//! a sibling `.md` naming its page. The client sends the documented requests and reads the
//! documented answers, against a bare HTTP server that records what it got.

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ucs_gdpr::ucs::{
    AttachmentId, ClientConfig, ContactId, DataSource, ErrorKind, IdentifyRequest, InteractionId,
    InteractionListing, InteractionStatus, InteractionSummary, ProtocolFault, RestClient, TenantId,
    Ucs,
};

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/genesys").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// What the server received.
struct Received {
    /// `VERB /path?query HTTP/1.1`
    line: String,
    body: String,
}

impl Received {
    fn verb_and_path(&self) -> (&str, &str) {
        let mut parts = self.line.split(' ');
        let verb = parts.next().unwrap();
        let target = parts.next().unwrap();
        (verb, target.split('?').next().unwrap())
    }

    /// The query, decoded.
    fn query(&self) -> BTreeMap<String, String> {
        let target = self.line.split(' ').nth(1).unwrap();
        let url = reqwest::Url::parse(&format!("http://x{target}")).unwrap();
        url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A server that answers one request with `status` and `body` (JSON) and returns the request.
async fn answering(status: u16, answer: String) -> (String, tokio::task::JoinHandle<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        let (head, body) = loop {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "request ended early");
            request.extend_from_slice(&buffer[..n]);
            let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let head = String::from_utf8(request[..end].to_vec()).unwrap();
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0usize);
            if request.len() >= end + 4 + length {
                let body = String::from_utf8(request[end + 4..end + 4 + length].to_vec()).unwrap();
                break (head, body);
            }
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{answer}",
            answer.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        Received { line: head.lines().next().unwrap().to_owned(), body }
    });
    (url, task)
}

fn client(url: &str) -> RestClient {
    let mut config = ClientConfig::new(url);
    config.retry.max_attempts = 1;
    RestClient::new(config).unwrap()
}

fn contact(id: &str) -> ContactId {
    ContactId::new(id).unwrap()
}

fn jane_by_email() -> IdentifyRequest {
    IdentifyRequest {
        tenant: TenantId(101),
        attributes: BTreeMap::from([(
            "EmailAddress".to_owned(),
            "jane.doe@company.com".to_owned(),
        )]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_identify_request_goes_out_with_create_contact_false() {
    let documented = fixture_json("IdentifyContact.request.json");
    let parameters = documented["Parameters"].as_object().unwrap();
    let request = IdentifyRequest {
        tenant: TenantId(u32::try_from(parameters["TenantId"].as_u64().unwrap()).unwrap()),
        attributes: parameters
            .iter()
            .filter(|(name, _)| name.as_str() != "TenantId")
            .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_owned()))
            .collect(),
    };
    let (url, received) = answering(200, fixture("IdentifyContact.response.json")).await;
    client(&url).identify_contacts(&request).await.unwrap();
    let received = received.await.unwrap();
    assert_eq!(received.verb_and_path(), ("POST", "/ucs/v1/OMContacts/IdentifyContact"));
    let mut expected = documented.clone();
    let sent = expected["Parameters"].as_object_mut().unwrap();
    sent.insert("CreateContact".into(), json!("false"));
    sent.insert("ReturnUnique".into(), json!("false"));
    expected["UserData"] = json!({});
    assert_eq!(received.json(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identification_never_sends_anything_but_create_contact_false() {
    // An attribute that tries to set a parameter is refused before anything is sent (the
    // address is closed: a request would be a transient connection error).
    for name in ["CreateContact", "createcontact", "ReturnUnique", "TenantId", "DatePattern"] {
        let request = IdentifyRequest {
            tenant: TenantId(101),
            attributes: BTreeMap::from([(name.to_owned(), "true".to_owned())]),
        };
        let error = client("http://127.0.0.1:1").identify_contacts(&request).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Permanent, "{name}: {error}");
        assert_eq!(error.attempts, 1);
    }
    let nothing = IdentifyRequest { tenant: TenantId(101), attributes: BTreeMap::new() };
    let error = client("http://127.0.0.1:1").identify_contacts(&nothing).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent);
    // Whatever the attributes, the body says "false", as a string.
    for attributes in [
        vec![("EmailAddress", "a@b.c")],
        vec![("PhoneNumber", "+33 1 23 45 67 89"), ("LastName", "Doe")],
    ] {
        let (url, received) = answering(200, fixture("IdentifyContact.response.json")).await;
        let request = IdentifyRequest {
            tenant: TenantId(7),
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        client(&url).identify_contacts(&request).await.unwrap();
        let body = received.await.unwrap().json();
        assert_eq!(body["Parameters"]["CreateContact"], json!("false"));
        assert_eq!(body["Parameters"]["TenantId"], json!(7));
        assert!(body["Parameters"].get("OtherFields").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_identify_answers_are_read() {
    let cases = [
        ("IdentifyContact.response.json", vec!["0001SaD2PVY4312K", "0001TbE3QWZ5520L"], true),
        ("IdentifyContact.unique.response.json", vec!["0001SaD2PVY4315J"], true),
        (
            "IdentifyContact.capped.response.json",
            vec!["0001SaD2PVY4312K", "0001TbE3QWZ5520L"],
            false,
        ),
    ];
    for (name, contacts, complete) in cases {
        let (url, _) = answering(200, fixture(name)).await;
        let found = client(&url).identify_contacts(&jane_by_email()).await.unwrap();
        let expected: Vec<_> = contacts.into_iter().map(contact).collect();
        assert_eq!(found.contacts, expected, "{name}");
        assert_eq!(found.complete, complete, "{name}");
    }
    // At the configured select limit, an answer may be capped.
    let (url, _) = answering(200, fixture("IdentifyContact.response.json")).await;
    let mut config = ClientConfig::new(url);
    config.select_limit = Some(2);
    let found = RestClient::new(config).unwrap().identify_contacts(&jane_by_email()).await.unwrap();
    assert!(!found.complete);

    let (url, _) = answering(200, fixture("IdentifyContact.created.response.json")).await;
    let error = client(&url).identify_contacts(&jane_by_email()).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert_eq!(error.subject.as_deref(), Some("0009NEWCONTACT00"));
    assert!(error.to_string().contains("created a contact"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_faults_are_typed_by_code_and_their_text_is_never_copied() {
    for status in [200, 400, 500] {
        let (url, _) = answering(status, fixture("IdentifyContact.fault-201.response.json")).await;
        let error = client(&url).identify_contacts(&jane_by_email()).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Permanent, "{status}");
        assert_eq!(error.code.as_deref(), Some("201"));
        assert!(!error.to_string().contains("SubscriberId"), "{error}");
    }
    for status in [200, 404, 500] {
        let (url, _) = answering(status, fixture("NewBehaviors.fault-510.response.json")).await;
        let error = client(&url)
            .get_interaction_content(
                &InteractionId::new("00001a5R8AJ800ZZ").unwrap(),
                DataSource::Main,
            )
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::NotFound, "{status}");
        assert_eq!(error.code.as_deref(), Some("510"));
        assert!(!error.to_string().contains("Msg"), "{error}");
    }
    let (url, _) = answering(400, fixture("NewBehaviors.fault-204.response.json")).await;
    let error = client(&url).get_contact(&contact("0001SaD2PVY4312K")).await.unwrap_err();
    assert_eq!((error.kind, error.code.as_deref()), (ErrorKind::Permanent, Some("204")));
    assert!(!error.to_string().contains("ParentId"), "{error}");
    // A 503 with a fault is still worth retrying.
    let (url, _) = answering(503, fixture("NewBehaviors.fault-204.response.json")).await;
    let error = client(&url).get_contact(&contact("0001SaD2PVY4312K")).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Transient);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_missing_archive_fault_is_a_source_unavailable_listing() {
    for status in [200, 404, 500] {
        let (url, _) = answering(status, fixture("Seed.no-data-source.response.json")).await;
        let listing = client(&url)
            .list_interactions(&contact("0001SaD2PVY4312K"), DataSource::Archive)
            .await
            .unwrap();
        assert_eq!(
            listing,
            InteractionListing::SourceUnavailable {
                reason: "Server: ucs85-49d888d5a732 Msg: No data source with role 'archive' found"
                    .into()
            },
            "{status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactions_are_listed_with_documented_parameters_only_and_no_paging() {
    let documented = [
        "ContactId",
        "DataSource",
        "SearchCriteria",
        "SortCriteria",
        "AttributeList",
        "TenantId",
        "SubscriberId",
    ];
    let (url, received) = answering(200, fixture("GetInteractionsForContact.response.json")).await;
    let listing = client(&url)
        .list_interactions(&contact("0001SaD2PVY4312K"), DataSource::Main)
        .await
        .unwrap();
    let received = received.await.unwrap();
    assert_eq!(
        received.verb_and_path(),
        ("GET", "/ucs/v1/OMInteractions/GetInteractionsForContact")
    );
    let query = received.query();
    assert!(query.keys().all(|k| documented.contains(&k.as_str())), "{query:?}");
    let expected: BTreeMap<String, String> =
        serde_json::from_value(fixture_json("GetInteractionsForContact.request.json")).unwrap();
    assert_eq!(query, expected);

    let InteractionListing::Found(list) = listing else { panic!("{listing:?}") };
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id.as_str(), "00001a5R8AJ800AB");
    assert_eq!(list[0].interaction_type.as_deref(), Some("Inbound"));
    assert_eq!(list[0].status, InteractionStatus::Stopped);
    assert_eq!(list[1].status, InteractionStatus::InProcess);
    assert_eq!(list[1].start_date.unwrap().to_string(), "2026-10-03T08:00:00Z");
    assert_eq!(list[1].modified.to_string(), "2026-10-03T08:05:00Z");

    let (url, _) = answering(200, fixture("GetInteractionsForContact.list.response.json")).await;
    let InteractionListing::Found(list) = client(&url)
        .list_interactions(&contact("0001SaD2PVY4312K"), DataSource::Main)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].status, InteractionStatus::Stopped);
    assert_eq!(list[0].modified.as_millisecond(), 1_790_000_060_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_interaction_is_a_put_with_the_documented_parameters() {
    let (url, received) = answering(200, "{}".to_owned()).await;
    let summary = InteractionSummary {
        id: InteractionId::new("00001c7T0CL100AB").unwrap(),
        media_type: "email".into(),
        interaction_type: Some("Inbound".into()),
        status: InteractionStatus::InProcess,
        workbin: None,
        start_date: None,
        end_date: None,
        modified: jiff::Timestamp::UNIX_EPOCH,
        attachment_count: 0,
    };
    client(&url).stop_interaction(&summary, TenantId(101), "GDPR erasure").await.unwrap();
    let received = received.await.unwrap();
    assert_eq!(received.verb_and_path(), ("PUT", "/ucs/v1/OMInteractions/StopInteraction"));
    assert_eq!(received.json(), fixture_json("StopInteraction.request.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_are_read_in_either_accepted_shape() {
    for name in ["GetAttributes.response.json", "GetAttributes.attrlist.response.json"] {
        let (url, received) = answering(200, fixture(name)).await;
        let mut config = ClientConfig::new(url);
        config.tenant = Some(TenantId(101));
        let found = RestClient::new(config)
            .unwrap()
            .get_contact(&contact("0001TbE3QWZ5520L"))
            .await
            .unwrap();
        assert_eq!(found.tenant, TenantId(101));
        assert_eq!(found.attributes["FirstName"], ["Jane"], "{name}");
        assert_eq!(
            found.attributes["EmailAddress"],
            ["jane.doe@company.com", "j.doe@home.example"]
        );
        let received = received.await.unwrap();
        assert_eq!(received.verb_and_path(), ("GET", "/ucs/v1/OMContacts/GetAttributes"));
        assert_eq!(received.query().get("ContactId").map(String::as_str), Some("0001TbE3QWZ5520L"));
    }
    // Without a tenant in the answer or the configuration, the contact cannot be placed.
    let (url, _) = answering(200, fixture("GetAttributes.attrlist.response.json")).await;
    let error = client(&url).get_contact(&contact("0001TbE3QWZ5520L")).await.unwrap_err();
    assert_eq!(error.protocol, Some(ProtocolFault::Malformed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_and_document_are_read_as_the_client_asks_for_them() {
    let (url, received) = answering(200, fixture("GetInteractionContent.response.json")).await;
    let content = client(&url)
        .get_interaction_content(&InteractionId::new("00001a5R8AJ800AB").unwrap(), DataSource::Main)
        .await
        .unwrap();
    assert_eq!(content.subject.as_deref(), Some("Invoice 2026-0042"));
    assert_eq!(content.attachments.len(), 1);
    assert_eq!(content.attachments[0].size, 1234);
    let query = received.await.unwrap().query();
    assert_eq!(query["IncludeAttachments"], "true");
    assert_eq!(query["IncludeBinaryContent"], "false");

    let (url, received) = answering(200, fixture("GetDocument.response.json")).await;
    let mut body = client(&url)
        .open_attachment(&AttachmentId::new("0000DOC2NOTE0001").unwrap(), DataSource::Main)
        .await
        .unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.bytes.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(bytes).unwrap(), "Merci beaucoup ! — Jane\n");
    let received = received.await.unwrap();
    assert_eq!(received.verb_and_path(), ("GET", "/ucs/v1/OMInteractions/GetDocument"));
    assert_eq!(received.query()["IncludeBinaryContent"], "true");
    assert_eq!(received.query()["DocumentId"], "0000DOC2NOTE0001");
}

#[test]
fn every_fixture_names_its_page() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/genesys");
    let notes: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let method = name.split('.').next().unwrap();
            assert!(
                notes.iter().any(|n| n.contains("docs.genesys.com") && n.contains(method)),
                "{name} has no note naming its page"
            );
            serde_json::from_str::<Value>(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_delete_service_not_found_answer_is_already_absent() {
    let (url, received) =
        answering(400, fixture("DeleteServiceByID.not-found.response.json")).await;
    let service =
        ucs_gdpr::ucs::ServiceId::new("361-a3793cef-d559-4f9f-a95d-64555a4ba371").unwrap();
    let outcome = client(&url).delete_service(&service).await.unwrap();
    assert_eq!(outcome, ucs_gdpr::ucs::DeleteOutcome::AlreadyAbsent);
    let received = received.await.unwrap();
    assert_eq!(
        received.verb_and_path(),
        ("DELETE", "/genesys/1/cs/services/361-a3793cef-d559-4f9f-a95d-64555a4ba371")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_callback_record_is_read_and_cancelled_in_its_service() {
    let (url, received) = answering(200, fixture("CallbackServicesAPI.query.response.json")).await;
    let contact = ucs_gdpr::ucs::Contact {
        id: contact("0001SaD2PVY4312K"),
        tenant: TenantId(101),
        attributes: BTreeMap::from([("PhoneNumber".to_owned(), vec!["5551234567".to_owned()])]),
    };
    let found = client(&url).list_callbacks(&contact).await.unwrap();
    let received = received.await.unwrap();
    assert_eq!(received.verb_and_path(), ("GET", "/genesys/1/service/callback"));
    assert_eq!(
        received.query(),
        BTreeMap::from([("_customer_number".into(), "5551234567".into())])
    );
    assert_eq!(found.len(), 1);
    let callback = &found[0];
    assert_eq!(callback.id.as_str(), "c3e8f0d2-5d0e-4e6a-9f4b-3b8f8a1d2e77");
    assert_eq!(callback.service, "callback-for-mobile");
    assert!(callback.state.is_pending());
    assert_eq!(callback.desired_time.unwrap().to_string(), "2016-06-14T13:05:00Z");

    let (url, received) = answering(200, "{}".to_owned()).await;
    client(&url).cancel_callback(callback).await.unwrap();
    assert_eq!(
        received.await.unwrap().verb_and_path(),
        (
            "DELETE",
            "/genesys/1/service/callback/callback-for-mobile/c3e8f0d2-5d0e-4e6a-9f4b-3b8f8a1d2e77"
        )
    );
}
