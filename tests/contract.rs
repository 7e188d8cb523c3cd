//! Contract tests from Genesys's documentation: raw HTTP (reqwest, never our client) against the
//! simulator. Each documented request of `tests/fixtures/genesys/` is answered in the documented
//! shape; the old client's non-conforming calls are refused (or, where UCS would answer anyway,
//! journaled); the conformance journal sees all of it.

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{Value, json};
use ucs_gdpr::sim::{FaultKind, RunningSim, ScriptedFault, SimOptions, Simulator};
use ucs_gdpr::ucs::wire::Operation;

fn fixture(name: &str) -> PathBuf {
    crate::repo_path("tests/fixtures/genesys/simulator").join(name)
}

fn load(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// A plain HTTP client (the crate's reqwest is built without a default TLS provider).
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn start() -> RunningSim {
    Simulator::start(SimOptions::new(fixture("dataset.yaml"))).await.unwrap()
}

/// A raw answer: status and JSON body.
struct Answer {
    status: u16,
    body: Value,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    Answer { status, body }
}

async fn get(sim: &RunningSim, path: &str, query: &[(&str, &str)]) -> Answer {
    let url = format!("{}{path}", sim.base_url());
    answer(http().get(url).query(query).send().await.unwrap()).await
}

async fn delete(sim: &RunningSim, path: &str, query: &[(&str, &str)]) -> Answer {
    let url = format!("{}{path}", sim.base_url());
    answer(http().delete(url).query(query).send().await.unwrap()).await
}

async fn send_json(sim: &RunningSim, method: reqwest::Method, path: &str, body: &Value) -> Answer {
    let url = format!("{}{path}", sim.base_url());
    answer(http().request(method, url).json(body).send().await.unwrap()).await
}

/// Sends a request fixture as it is written.
async fn send_fixture(sim: &RunningSim, name: &str) -> Answer {
    let request = load(name);
    let method: reqwest::Method = request["method"].as_str().unwrap().parse().unwrap();
    let path = request["path"].as_str().unwrap();
    match &request["query"] {
        Value::Array(pairs) => {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_str().unwrap().to_owned()))
                .collect();
            let url = format!("{}{path}", sim.base_url());
            answer(http().request(method, url).query(&pairs).send().await.unwrap()).await
        }
        _ => send_json(sim, method, path, &request["body"]).await,
    }
}

fn identify(parameters: Value) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("Parameters".to_owned(), parameters);
    Value::Object(body)
}

const IDENTIFY: &str = "/ucs/v1/OMContacts/IdentifyContact";
const INTERACTIONS: &str = "/ucs/v1/OMInteractions/GetInteractionsForContact";
const STOP: &str = "/ucs/v1/OMInteractions/StopInteraction";
const DOCUMENT: &str = "/ucs/v1/OMInteractions/GetDocument";
const CONTENT: &str = "/ucs/v1/OMInteractions/GetInteractionContent";
const ATTRIBUTES: &str = "/ucs/v1/OMContacts/GetAttributes";
const DELETE: &str = "/ucs/v1/OMContacts/Delete";

#[tokio::test]
async fn the_documented_identify_contact_example_is_answered_in_the_documented_shape() {
    let sim = start().await;
    let got = send_fixture(&sim, "IdentifyContact.request.json").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body, load("IdentifyContact.response.json"));
    // The example omits CreateContact: documented, so not non-conforming, but dangerous for a
    // GDPR tool (had nothing matched, UCS would have created a contact).
    let conformance = sim.conformance();
    assert!(conformance.non_conforming.is_empty(), "{conformance:?}");
    assert_eq!(conformance.problems_dangerous(), ["CreateContact missing (UCS defaults to true)"]);
    assert_eq!(conformance.contacts_created, 0);
}

#[tokio::test]
async fn identify_contact_with_create_contact_false_never_creates() {
    let sim = start().await;
    let got = send_json(
        &sim,
        reqwest::Method::POST,
        IDENTIFY,
        &identify(json!({"TenantId": 101, "EmailAddress": "nobody@example.com", "CreateContact": "false"})),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, json!({"NumberOfContactsFound": 0, "ContactCreated": "false"}));
    assert!(sim.conformance().is_clean(), "{:?}", sim.conformance());
}

#[tokio::test]
async fn identify_contact_without_create_contact_creates_a_contact_as_ucs_would() {
    let sim = start().await;
    let got = send_json(
        &sim,
        reqwest::Method::POST,
        IDENTIFY,
        &identify(json!({"TenantId": 101, "EmailAddress": "nobody@example.com"})),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["ContactCreated"], "true");
    assert_eq!(got.body["NumberOfContactsFound"], 1);
    let created = got.body["ContactId"].as_str().unwrap().to_owned();
    assert_eq!(got.body["ContactIdList"], json!([created]));
    // The contact exists now, with the identifying attribute.
    let attributes = get(&sim, ATTRIBUTES, &[("ContactId", &created)]).await;
    assert_eq!(attributes.status, 200, "{}", attributes.body);
    assert_eq!(attributes.body["Attributes"]["EmailAddress"], json!(["nobody@example.com"]));

    let conformance = sim.conformance();
    assert_eq!(conformance.contacts_created, 1);
    assert!(
        conformance.problems_dangerous().contains(&"CreateContact missing: contact created"),
        "{conformance:?}"
    );
    // And on /sim/stats, for a client in another process.
    let stats: Value = http()
        .get(format!("{}/sim/stats", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["contactsCreated"], 1, "{stats}");
    assert_eq!(stats["nonConforming"], json!([]), "{stats}");
    assert_eq!(stats["dangerous"][1]["problem"], "CreateContact missing: contact created");
    assert_eq!(sim.stats().contacts_created, 1);
}

#[tokio::test]
async fn identify_contact_uses_contact_attributes_of_user_data_too() {
    let sim = start().await;
    let body = json!({
        "Parameters": {"TenantId": 101, "CreateContact": "false", "FirstName": "Constance"},
        "UserData": {"MemberId": "83", "NotAnAttribute": "x"},
    });
    let got = send_json(&sim, reqwest::Method::POST, IDENTIFY, &body).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["ContactIdList"], json!(["0000CONSTANCE083"]), "{}", got.body);
    assert!(sim.conformance().is_clean(), "{:?}", sim.conformance());
}

#[tokio::test]
async fn identify_contact_answers_at_most_the_select_limit() {
    let sim = start().await; // selectLimit: 1, two contacts share the address
    let got = send_json(
        &sim,
        reqwest::Method::POST,
        IDENTIFY,
        &identify(
            json!({"TenantId": 101, "EmailAddress": "constance@5461.fr", "CreateContact": "false"}),
        ),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["NumberOfContactsFound"], 1, "{}", got.body);
    assert_eq!(got.body["ContactIdList"].as_array().unwrap().len(), 1);
    assert!(sim.conformance().is_clean());
}

#[tokio::test]
async fn identify_contact_refuses_the_old_clients_body() {
    let sim = start().await;
    // The old client: attributes nested in OtherFields, CreateContact a JSON boolean.
    let old = identify(json!({
        "TenantId": 101,
        "OtherFields": {"EmailAddress": "constance@5461.fr"},
        "CreateContact": false,
    }));
    let got = send_json(&sim, reqwest::Method::POST, IDENTIFY, &old).await;
    assert_eq!(got.status, 400);
    assert_eq!(got.body["FaultCode"], 204, "{}", got.body);
    assert_eq!(
        got.body["FaultString"],
        "Incorrect value for parameter 'CreateContact', expected 'the string true or false' but \
         was 'a JSON boolean'"
    );
    // With CreateContact right, OtherFields alone is still refused.
    let nested = identify(json!({
        "TenantId": 101,
        "OtherFields": {"EmailAddress": "constance@5461.fr"},
        "CreateContact": "false",
    }));
    let got = send_json(&sim, reqwest::Method::POST, IDENTIFY, &nested).await;
    assert_eq!(got.status, 400);
    assert_eq!(
        got.body,
        json!({"FaultCode": 202, "FaultString": "Unknown parameter 'OtherFields'"})
    );
    assert_eq!(
        sim.conformance().problems("IdentifyContact"),
        [
            "CreateContact is a JSON boolean, not the string \"true\"/\"false\"",
            "unknown parameter OtherFields (a KVList)",
        ]
    );
    assert_eq!(sim.conformance().contacts_created, 0);
}

#[tokio::test]
async fn identify_contact_faults_for_missing_or_mistyped_tenant_and_wrong_casing() {
    let sim = start().await;
    let got = send_json(
        &sim,
        reqwest::Method::POST,
        IDENTIFY,
        &identify(json!({"EmailAddress": "constance@5461.fr", "CreateContact": "false"})),
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(got.body, json!({"FaultCode": 201, "FaultString": "Missing parameter 'TenantId'"}));
    // The fault fixture of the page has the same shape.
    let documented = load("IdentifyContact.fault.json");
    assert_eq!(documented["FaultCode"], 201);
    assert!(documented["FaultString"].as_str().unwrap().starts_with("Missing parameter '"));

    let got = send_json(
        &sim,
        reqwest::Method::POST,
        IDENTIFY,
        &identify(json!({"TenantId": "101", "CreateContact": "false"})),
    )
    .await;
    assert_eq!(got.body["FaultCode"], 204, "{}", got.body);

    let got = send_json(
        &sim,
        reqwest::Method::POST,
        IDENTIFY,
        &identify(json!({"tenantId": 101, "CreateContact": "false"})),
    )
    .await;
    assert_eq!(got.body, json!({"FaultCode": 202, "FaultString": "Unknown parameter 'tenantId'"}));
    assert_eq!(
        sim.conformance().problems("IdentifyContact"),
        [
            "missing parameter TenantId",
            "TenantId is a string, not an Integer",
            "parameter tenantId has the wrong casing (documented: TenantId)",
        ]
    );
}

#[tokio::test]
async fn identify_contact_takes_only_post() {
    let sim = start().await;
    let got = get(&sim, IDENTIFY, &[("TenantId", "101")]).await;
    assert_eq!(got.status, 405);
    assert_eq!(got.body["FaultCode"], 203);
    assert_eq!(sim.conformance().problems("IdentifyContact"), ["GET instead of POST"]);
}

#[tokio::test]
async fn the_documented_interaction_listing_is_answered_whole_without_paging() {
    let sim = start().await;
    let got = send_fixture(&sim, "GetInteractionsForContact.request.json").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body, load("GetInteractionsForContact.response.json"));
    assert!(sim.conformance().is_clean(), "{:?}", sim.conformance());
}

#[tokio::test]
async fn interaction_listing_refuses_the_old_paging_parameters() {
    let sim = start().await;
    let got = get(
        &sim,
        INTERACTIONS,
        &[
            ("ContactId", "0000CONSTANCE083"),
            ("DataSource", "main"),
            ("FromIndex", "0"),
            ("PageSize", "100"),
        ],
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(got.body, json!({"FaultCode": 202, "FaultString": "Unknown parameter 'FromIndex'"}));
    let got =
        get(&sim, INTERACTIONS, &[("ContactId", "0000CONSTANCE083"), ("PageSize", "100")]).await;
    assert_eq!(got.body["FaultString"], "Unknown parameter 'PageSize'");
    assert_eq!(
        sim.conformance().problems("GetInteractionsForContact"),
        ["unknown parameter FromIndex", "unknown parameter PageSize"]
    );
}

#[tokio::test]
async fn interaction_listing_is_within_the_tenant_and_refuses_a_repeated_parameter() {
    let sim = start().await;
    let got =
        get(&sim, INTERACTIONS, &[("ContactId", "0000CONSTANCE083"), ("TenantId", "102")]).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.body["FaultCode"], 510);
    let got = get(
        &sim,
        INTERACTIONS,
        &[("ContactId", "0000CONSTANCE083"), ("ContactId", "0000CONSTANCE084")],
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(got.body["FaultCode"], 204);
    assert_eq!(
        sim.conformance().problems("GetInteractionsForContact"),
        ["parameter ContactId given more than once"]
    );
}

#[tokio::test]
async fn identify_contact_with_return_unique_gives_no_sublist() {
    let dir = std::env::temp_dir().join(format!("ucs-gdpr-unique-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let contact = |id: &str| json!({"id": id, "tenant": 7, "attributes": {"EmailAddress": "shared@example.com"}});
    let dataset = json!({"contacts": [contact("0000SHAREDMAIL01"), contact("0000SHAREDMAIL02")]});
    std::fs::write(dir.join("dataset.json"), dataset.to_string()).unwrap();
    let sim = Simulator::start(SimOptions::new(dir.join("dataset.json"))).await.unwrap();
    let lookup = |unique: &str| {
        identify(json!({"TenantId": 7, "EmailAddress": "shared@example.com",
            "CreateContact": "false", "ReturnUnique": unique}))
    };
    let got = send_json(&sim, reqwest::Method::POST, IDENTIFY, &lookup("false")).await;
    assert_eq!(got.body["NumberOfContactsFound"], 2, "{}", got.body);
    assert_eq!(got.body["ContactIdList"], json!(["0000SHAREDMAIL01", "0000SHAREDMAIL02"]));
    let got = send_json(&sim, reqwest::Method::POST, IDENTIFY, &lookup("true")).await;
    assert_eq!(
        got.body,
        json!({"NumberOfContactsFound": 2, "ContactCreated": "false"}),
        "{}",
        got.body
    );
    assert!(sim.conformance().is_clean());
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn interaction_listing_checks_mandatory_parameters_and_casing() {
    let sim = start().await;
    let got = get(&sim, INTERACTIONS, &[]).await;
    assert_eq!(got.status, 400);
    assert_eq!(got.body, json!({"FaultCode": 201, "FaultString": "Missing parameter 'ContactId'"}));
    let got = get(&sim, INTERACTIONS, &[("contactId", "0000CONSTANCE083")]).await;
    assert_eq!(got.body["FaultCode"], 202);
    let got = get(&sim, INTERACTIONS, &[("ContactId", "0000NOSUCHCONTAC")]).await;
    assert_eq!(got.status, 404);
    assert_eq!(
        got.body,
        json!({"FaultCode": 510, "FaultString": "Msg: Contact '0000NOSUCHCONTAC' not found in database"})
    );
    assert_eq!(
        sim.conformance().problems("GetInteractionsForContact"),
        [
            "missing parameter ContactId",
            "parameter contactId has the wrong casing (documented: ContactId)",
        ]
    );
}

#[tokio::test]
async fn the_documented_stop_interaction_is_a_put_with_tenant_id() {
    let sim = start().await;
    let got = send_fixture(&sim, "StopInteraction.request.json").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body, load("StopInteraction.response.json"));
    let listed =
        get(&sim, INTERACTIONS, &[("ContactId", "0000CONSTANCE083"), ("AttributeList", "Status")])
            .await;
    assert_eq!(
        listed.body["Interactions"][1],
        json!({"Id": "0000IXNCONTRACT2", "Status": "Stopped"})
    );
    assert!(sim.conformance().is_clean(), "{:?}", sim.conformance());

    // An unknown interaction: the documented 510 fault, exactly.
    let missing = json!({"Parameters": {"InteractionId": "0000IXNNOTTHERE1", "TenantId": 101}});
    let got = send_json(&sim, reqwest::Method::PUT, STOP, &missing).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.body, load("NewBehaviors.fault-510.json"));
}

#[tokio::test]
async fn stop_interaction_refuses_the_old_clients_post_without_tenant() {
    let sim = start().await;
    let old = json!({"Parameters": {"InteractionId": "0000IXNCONTRACT2", "Reason": "gdpr"}, "UserData": {}});
    let got = send_json(&sim, reqwest::Method::POST, STOP, &old).await;
    assert_eq!(got.status, 405);
    assert_eq!(got.body["FaultCode"], 203, "{}", got.body);
    let got = send_json(&sim, reqwest::Method::PUT, STOP, &old).await;
    assert_eq!(got.status, 400);
    assert_eq!(got.body, json!({"FaultCode": 201, "FaultString": "Missing parameter 'TenantId'"}));
    assert_eq!(
        sim.conformance().problems("StopInteraction"),
        ["POST instead of PUT", "missing parameter TenantId"]
    );
    // Nothing was stopped.
    let listed = get(&sim, INTERACTIONS, &[("ContactId", "0000CONSTANCE083")]).await;
    assert_eq!(listed.body["Interactions"][1]["Status"], "Pending");
}

#[tokio::test]
async fn stop_interaction_with_delete_removes_it() {
    let sim = start().await;
    let request = json!({"Parameters": {
        "InteractionId": "0000IXNCONTRACT2", "TenantId": 101, "Delete": "true", "Reason": "gdpr"
    }});
    let got = send_json(&sim, reqwest::Method::PUT, STOP, &request).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let listed = get(&sim, INTERACTIONS, &[("ContactId", "0000CONSTANCE083")]).await;
    assert_eq!(listed.body["Interactions"].as_array().unwrap().len(), 1);
    // A JSON boolean for Delete is refused like CreateContact's.
    let boolean = json!({"Parameters": {"InteractionId": "0000IXNCONTRACT1", "TenantId": 101, "Delete": true}});
    let got = send_json(&sim, reqwest::Method::PUT, STOP, &boolean).await;
    assert_eq!(got.body["FaultCode"], 204);
}

#[tokio::test]
async fn get_document_answers_json_with_the_content_base64() {
    let sim = start().await;
    let got = get(
        &sim,
        DOCUMENT,
        &[("DocumentId", "0000DOCCONTRACT1"), ("IncludeBinaryContent", "true")],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    let content = base64::engine::general_purpose::STANDARD
        .decode(got.body["Content"].as_str().unwrap())
        .unwrap();
    assert_eq!(content, b"Contract test attachment\n");
    assert_eq!(got.body["TheName"], "note.txt");
    assert_eq!(got.body["MimeType"], "text/plain");
    assert_eq!(got.body["TheSize"], 25);
    // Without IncludeBinaryContent: the metadata only.
    let got = get(&sim, DOCUMENT, &[("DocumentId", "0000DOCCONTRACT1")]).await;
    assert_eq!(got.body.get("Content"), None, "{}", got.body);
    assert!(sim.conformance().is_clean(), "{:?}", sim.conformance());
}

#[tokio::test]
async fn get_document_journals_a_caller_expecting_raw_bytes() {
    let sim = start().await;
    let url = format!("{}{DOCUMENT}", sim.base_url());
    let response = http()
        .get(url)
        .query(&[("DocumentId", "0000DOCCONTRACT1"), ("DataSource", "main")])
        .header("Accept", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["DocumentId"], "0000DOCCONTRACT1");
    assert_eq!(
        sim.conformance().problems("GetDocument"),
        ["expects raw bytes (Accept without JSON): UCS answers JSON, content base64"]
    );
}

#[tokio::test]
async fn large_documents_stream_as_base64_in_json_at_every_chunk_boundary() {
    let dir = std::env::temp_dir().join(format!("ucs-gdpr-contract-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Empty, one byte, exactly one and two read chunks (48 KiB), and several chunks with a
    // size that is not a multiple of 3.
    let sizes = [0usize, 1, 49_152, 98_304, 300_001];
    let mut attachments = Vec::new();
    for (n, size) in sizes.iter().enumerate() {
        let bytes: Vec<u8> = (0..*size)
            .map(|i| u8::try_from((i.wrapping_mul(2_654_435_761) >> 11) & 0xff).unwrap())
            .collect();
        std::fs::write(dir.join(format!("doc{n}.bin")), &bytes).unwrap();
        attachments
            .push(json!({"id": format!("0000DOCBIGDOCUM{n}"), "name": format!("doc{n}.bin"),
            "mimeType": "application/octet-stream", "file": format!("doc{n}.bin")}));
    }
    let dataset = json!({
        "contacts": [{
            "id": "0000BIGDOCUMENTS", "tenant": 1,
            "interactions": {"main": [{
                "id": "0000IXNBIGDOCUM1", "mediaType": "email", "attachments": attachments
            }]}
        }]
    });
    std::fs::write(dir.join("dataset.json"), dataset.to_string()).unwrap();
    let sim = Simulator::start(SimOptions::new(dir.join("dataset.json"))).await.unwrap();
    for (n, size) in sizes.iter().enumerate() {
        let url = format!("{}{DOCUMENT}", sim.base_url());
        let id = format!("0000DOCBIGDOCUM{n}");
        let response = http()
            .get(url)
            .query(&[("DocumentId", id.as_str()), ("IncludeBinaryContent", "true")])
            .send()
            .await
            .unwrap();
        let length: usize = response.headers()["content-length"].to_str().unwrap().parse().unwrap();
        let text = response.text().await.unwrap();
        assert_eq!(text.len(), length, "size {size}");
        let body: Value = serde_json::from_str(&text).unwrap();
        let content = base64::engine::general_purpose::STANDARD
            .decode(body["Content"].as_str().unwrap())
            .unwrap();
        assert_eq!(content, std::fs::read(dir.join(format!("doc{n}.bin"))).unwrap(), "size {size}");
        assert_eq!(body["TheSize"], *size);
    }
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn get_interaction_content_lists_attachments_when_asked() {
    let sim = start().await;
    let got = get(
        &sim,
        CONTENT,
        &[("InteractionId", "0000IXNCONTRACT1"), ("IncludeAttachments", "true")],
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["Attachments"][0]["DocumentId"], "0000DOCCONTRACT1");
    assert_eq!(got.body["Attachments"][0]["TheName"], "note.txt");
    let got = get(&sim, CONTENT, &[("InteractionId", "0000IXNCONTRACT1")]).await;
    assert_eq!(got.body.get("Attachments"), None);
    let got =
        get(&sim, CONTENT, &[("InteractionId", "0000IXNCONTRACT1"), ("IncludeAttachments", "yes")])
            .await;
    assert_eq!(got.body["FaultCode"], 204);
    let got = get(&sim, CONTENT, &[("InteractionId", "0000IXNNOTTHERE1")]).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.body, load("NewBehaviors.fault-510.json"));
}

#[tokio::test]
async fn get_attributes_and_delete_are_strict_too() {
    let sim = start().await;
    let got =
        get(&sim, ATTRIBUTES, &[("ContactId", "0000CONSTANCE083"), ("AttributeList", "FirstName")])
            .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["Attributes"], json!({"FirstName": ["Constance"]}));
    let got = get(&sim, ATTRIBUTES, &[("ContactId", "0000CONSTANCE083"), ("Fields", "all")]).await;
    assert_eq!(got.body["FaultString"], "Unknown parameter 'Fields'");
    let wrong = send_json(&sim, reqwest::Method::POST, DELETE, &json!({"Parameters": {}})).await;
    assert_eq!(wrong.status, 405);
    let got = delete(&sim, DELETE, &[("ContactId", "0000CONSTANCE084")]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let got = delete(&sim, DELETE, &[("ContactId", "0000CONSTANCE084")]).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.body["FaultCode"], 510);
    assert_eq!(sim.conformance().problems("GetAttributes"), ["unknown parameter Fields"]);
    assert_eq!(sim.conformance().problems("DeleteContact"), ["POST instead of DELETE"]);
}

#[tokio::test]
async fn injected_faults_use_the_ucs_fault_shape() {
    let sim = start().await;
    sim.script_faults(&[
        ScriptedFault { operation: Operation::GetAttributes, nth: 1, kind: FaultKind::Unavailable },
        ScriptedFault { operation: Operation::GetAttributes, nth: 2, kind: FaultKind::Permanent },
    ]);
    let got = get(&sim, ATTRIBUTES, &[("ContactId", "0000CONSTANCE083")]).await;
    assert_eq!(got.status, 503);
    assert_eq!(
        got.body,
        json!({"FaultCode": 500, "FaultString": "Server: ucs-sim-contract Msg: injected fault"})
    );
    let got = get(&sim, ATTRIBUTES, &[("ContactId", "0000CONSTANCE083")]).await;
    assert_eq!(got.status, 500);
    assert_eq!(got.body["FaultCode"], 500);
    // Injected faults are the server's, not the caller's: the journal stays clean.
    assert!(sim.conformance().is_clean());
}

#[tokio::test]
async fn an_unknown_ucs_method_is_journaled() {
    let sim = start().await;
    let got = get(&sim, "/ucs/v1/OMInteractions/GetInteractionsForContacts", &[]).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.body["FaultCode"], 203);
    assert_eq!(
        sim.conformance().problems("(unknown)"),
        ["unknown UCS method OMInteractions/GetInteractionsForContacts"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_serve_reports_the_journal_when_it_stops() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    use assert_cmd::cargo::CommandCargoExt;

    let mut child = Command::cargo_bin("ucs-gdpr")
        .unwrap()
        .args(["sim", "serve", "--listen", "127.0.0.1:0", "--dataset"])
        .arg(fixture("dataset.yaml"))
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().to_owned();
    let got = http()
        .get(format!("{url}{INTERACTIONS}"))
        .query(&[("ContactId", "0000CONSTANCE083"), ("FromIndex", "0")])
        .send()
        .await
        .unwrap();
    assert_eq!(got.status().as_u16(), 400);
    let status = Command::new("kill").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(
        stderr.contains(
            "conformance: 1 kind(s) of non-conforming request, 0 dangerous, 0 contact(s) created \
             by identification\n  GetInteractionsForContact: unknown parameter FromIndex (x1)\n"
        ),
        "{stderr}"
    );
}

/// The README's first command, with the demo UCS outside the tool: the real binary plans and
/// applies the four example requests against the simulator over loopback, and the simulator's
/// journal shows that every request followed the documentation and none could create a contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_demo_speaks_only_documented_genesys_and_creates_no_contact() {
    let sim = Simulator::start(SimOptions::new(crate::repo_path("examples/sim/demo.yaml")))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let requests = dir.path().join("requests");
    std::fs::create_dir(&requests).unwrap();
    for entry in std::fs::read_dir(crate::repo_path("examples/requests")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, requests.join(path.file_name().unwrap())).unwrap();
    }
    let env = dir.path().join("ucs-gdpr.yaml");
    crate::workspace::EnvFile::rest(&format!("{}/", sim.base_url()), "UCS_GDPR_TEST_HMAC")
        .setting(&format!("contextServices: {{ url: '{}/' }}", sim.base_url()))
        .setting(&format!("gms: {{ url: '{}/' }}", sim.base_url()))
        .policy("      requireApproval: false\n")
        .outputs(&dir.path().join("audit.jsonl"), &dir.path().join("exports"))
        .write(dir.path());
    let mut command = crate::ucs_gdpr();
    command
        .args(["apply", "--env-file"])
        .arg(&env)
        .arg(&requests)
        .env("UCS_GDPR_TEST_HMAC", "a-test-key-that-is-at-least-32-bytes-long");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", crate::transcript(&output));

    let journal = sim.conformance();
    assert!(journal.non_conforming.is_empty(), "{:?}", journal.non_conforming);
    assert!(journal.dangerous.is_empty(), "{:?}", journal.dangerous);
    assert_eq!(journal.contacts_created, 0);
    // The run did reach every operation an erasure needs, so the clean journal means something.
    let stats = sim.stats();
    for operation in [
        Operation::IdentifyContact,
        Operation::GetAttributes,
        Operation::GetInteractionsForContact,
        Operation::GetInteractionContent,
        Operation::GetDocument,
        Operation::DeleteContact,
        Operation::GetProfile,
        Operation::ListServices,
        Operation::ListAnonymousServices,
        Operation::GetServiceStates,
        Operation::GetServiceTasks,
        Operation::DeleteService,
        Operation::DeleteProfile,
        Operation::ListCallbacks,
    ] {
        assert!(stats.calls(operation) > 0, "{operation} was never called");
    }
    let bag = dir.path().join("exports/DSR-2026-0142/data");
    assert!(bag.join("contact-0001SaD2PVY4312K.json").exists());
    let context: Value = serde_json::from_slice(
        &std::fs::read(bag.join("context-services-0001SaD2PVY4312K.json")).unwrap(),
    )
    .unwrap();
    assert!(context["profile"].is_object(), "{context}");
    assert!(!context["services"].as_array().unwrap().is_empty(), "{context}");
    sim.shutdown().await;
}
