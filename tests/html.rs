//! The export a data subject can read (`data/index.html`), opened in a real headless browser
//! (Debian's `chromium`, provisioned by the test when missing): what it shows, that its links
//! resolve to the decoded attachments, and that hostile content renders as text.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::workspace::EnvFile;
use crate::{repo_path, transcript, ucs_gdpr};

const JANE: &str = "0001SaD2PVY4312K";
const ALEX: &str = "0002Ha7QB2MX000K";
const EXPORT: &str = "  export: { attachments: inline }\n";

/// Tells the person running the tests what is being provisioned, while it happens.
fn say(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn chromium_runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Debian's `chromium`: on the PATH, else installed with apt-get when running as root (CI, a
/// fresh container), saying so on stderr.
fn chromium() -> &'static str {
    static FOUND: OnceLock<&'static str> = OnceLock::new();
    FOUND.get_or_init(|| {
        for program in ["chromium", "chromium-browser"] {
            if chromium_runs(program) {
                return program;
            }
        }
        let root =
            Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let apt = Command::new("apt-get").arg("--version").stdout(Stdio::null()).status().is_ok();
        assert!(
            root && apt,
            "the readable-export tests open the page in a headless browser and this machine has \
             none: install Debian's `chromium` (`apt-get install chromium`)"
        );
        say("note: the readable-export tests open the page in a real headless browser: \
             installing Debian's `chromium` package with apt-get (once)");
        let mut log = String::new();
        for args in [
            &["update", "-qq"][..],
            &["install", "-y", "-qq", "--no-install-recommends", "chromium"][..],
        ] {
            let out = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .unwrap();
            log.push_str(&String::from_utf8_lossy(&out.stdout));
            log.push_str(&String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "apt-get {args:?} failed:\n{log}");
        }
        assert!(
            chromium_runs("chromium"),
            "apt-get installed chromium but it does not run:\n{log}"
        );
        "chromium"
    })
}

/// The DOM chromium builds from `page` (`--dump-dom`), and what it logged (console messages,
/// Content Security Policy reports).
fn dump_dom(page: &Path) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8(out.stdout).unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Undoes the escaping of a serialised DOM's text.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The inner HTML of every element that starts with `open` (e.g. `<h4 class="subject`), in order.
fn elements(dom: &str, open: &str, close: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find(open) {
        rest = &rest[at..];
        let start = if open.ends_with('>') { open.len() } else { rest.find('>').unwrap() + 1 };
        let end = rest.find(close).unwrap();
        found.push(rest[start..end].to_owned());
        rest = &rest[end..];
    }
    found
}

/// Every link to an attachment file: (href, link text).
fn attachment_links(dom: &str) -> Vec<(String, String)> {
    let mut links = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find("<a href=\"attachments/") {
        rest = &rest[at + "<a href=\"".len()..];
        let href = &rest[..rest.find('"').unwrap()];
        let text_start = rest.find('>').unwrap() + 1;
        let text_end = rest.find("</a>").unwrap();
        links.push((unescape(href), unescape(&rest[text_start..text_end])));
        rest = &rest[text_end..];
    }
    links
}

fn bagit_python_validates(bag: &Path) {
    let output = crate::provision::python_with_bagit()
        .command()
        .args(["-c", "import sys, bagit; bagit.Bag(sys.argv[1]).validate(); print('valid')"])
        .arg(bag)
        .output()
        .unwrap();
    assert!(output.status.success(), "bagit: {}", String::from_utf8_lossy(&output.stderr));
}

/// A folder with an environments file whose `demo` runs the simulator on `dataset`, keeping its
/// state, audit log and exports in the folder.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new(dataset: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        EnvFile::embedded(dataset).policy("      requireApproval: false\n").write(dir.path());
        Workspace { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Applies a request `DSR-<name>` of `runbook` for `subjects`.
    fn apply(&self, name: &str, runbook: &str, subjects: &[&str], extra: &str) -> String {
        self.apply_with(name, "", runbook, subjects, extra)
    }

    /// As [`Workspace::apply`], with more `metadata` lines.
    fn apply_with(
        &self,
        name: &str,
        metadata: &str,
        runbook: &str,
        subjects: &[&str],
        extra: &str,
    ) -> String {
        let subjects: String = subjects.iter().map(|s| format!("    - contactId: {s}\n")).collect();
        let manifest = self.path(&format!("{name}.yaml"));
        fs::write(
            &manifest,
            format!(
                "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-{name}\n  \
                 receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: agent.smith\n{metadata}\
                 spec:\n  environment: demo\n  runbook: {runbook}\n  subjects:\n{subjects}{extra}"
            ),
        )
        .unwrap();
        let env = self.path("ucs-gdpr.yaml");
        let output =
            ucs_gdpr().arg("apply").arg(&manifest).arg("--env-file").arg(&env).output().unwrap();
        assert!(output.status.success(), "{}", transcript(&output));
        transcript(&output)
    }
}

/// An attachment as the JSON has it: its name and its decoded bytes.
type Attachment = (String, Vec<u8>);

/// An interactions file's interactions in date order (RFC 3339 in UTC sorts as text), each
/// with its attachments (name, decoded bytes).
fn interactions_in_order(file: &Value) -> Vec<(Option<String>, Vec<Attachment>)> {
    let mut all = Vec::new();
    for source in file["dataSources"].as_array().unwrap() {
        for interaction in source["interactions"].as_array().unwrap() {
            let date = interaction["startDate"].as_str().unwrap_or("~").to_owned();
            let attachments = interaction["attachments"]
                .as_array()
                .unwrap()
                .iter()
                // Only inlined attachments have bytes to link (with `omit`, metadata only).
                .filter_map(|a| {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(a.get("content")?.as_str().unwrap())
                        .unwrap();
                    Some((a["name"].as_str().unwrap().to_owned(), bytes))
                })
                .collect();
            all.push((date, interaction["subject"].as_str().map(str::to_owned), attachments));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.into_iter().map(|(_, subject, attachments)| (subject, attachments)).collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Checks the page of `bag` for `contacts` in a browser: their attributes, their interactions'
/// subjects in date order, every attachment linked to a file holding exactly its decoded bytes;
/// no script, nothing the CSP refused; the bag valid for both validators. Returns the DOM.
fn check_page(bag: &Path, contacts: &[&str]) -> String {
    check_page_in(bag, contacts, "(no subject)")
}

/// [`check_page`] of a page whose interactions without a subject say `no_subject`.
fn check_page_in(bag: &Path, contacts: &[&str], no_subject: &str) -> String {
    let page = bag.join("data/index.html");
    let html = fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';"),
        "{html}"
    );
    let report = ucs_gdpr::export::validate_dir(bag).unwrap();
    bagit_python_validates(bag);
    let manifest = fs::read_to_string(bag.join("manifest-sha256.txt")).unwrap();
    let digest = ucs_gdpr::canonical::sha256_hex(html.as_bytes());
    assert!(manifest.contains(&format!("{digest}  data/index.html")), "{manifest}");

    let (dom, log) = dump_dom(&page);
    assert!(!log.contains("Refused to"), "the page broke its own CSP:\n{log}");
    assert!(!log.contains("Content Security Policy"), "{log}");
    for tag in ["<script", "<img", "<iframe", "<object", "<embed", "<link", "<form"] {
        assert!(!dom.contains(tag), "{tag} in the page");
    }
    let sections = elements(&dom, "<section class=\"contact\"", "</section>");
    assert_eq!(sections.len(), contacts.len(), "one section per contact");
    let mut linked = 0;
    for (section, id) in sections.iter().zip(contacts) {
        assert!(section.contains(id), "{id}");
        // The attributes, as the contact file has them.
        let contact = read_json(&bag.join(format!("data/contact-{id}.json")));
        let rows: BTreeMap<String, String> = elements(section, "<tr><th>", "</tr>")
            .into_iter()
            .filter_map(|row| {
                let (name, value) = row.split_once("</th><td>")?;
                Some((unescape(name), unescape(&value.replace("<br>", "\n").replace("</td>", ""))))
            })
            .collect();
        for (name, values) in contact["attributes"].as_object().unwrap() {
            let values: Vec<&str> =
                values.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert_eq!(
                rows.get(name).map(String::as_str),
                Some(values.join("\n").as_str()),
                "{name}"
            );
        }
        // The interactions' subjects, in date order.
        let file = read_json(&bag.join(format!("data/interactions-for-contact-{id}.json")));
        let expected = interactions_in_order(&file);
        let subjects: Vec<String> =
            elements(section, "<h4 class=\"subject", "</h4>").iter().map(|s| unescape(s)).collect();
        let want: Vec<String> = expected
            .iter()
            .map(|(subject, _)| subject.clone().unwrap_or_else(|| no_subject.to_owned()))
            .collect();
        assert_eq!(subjects, want, "{id}");
        // Every attachment is linked, and the link opens exactly its bytes.
        let links = attachment_links(section);
        let attachments: Vec<&(String, Vec<u8>)> = expected.iter().flat_map(|(_, a)| a).collect();
        assert_eq!(links.len(), attachments.len(), "{id}: {links:?}");
        for ((href, text), (name, bytes)) in links.iter().zip(attachments) {
            assert_eq!(text, name);
            assert!(href.starts_with(&format!("attachments/{id}/")), "{href}");
            let target = bag.join("data").join(href).canonicalize().unwrap();
            assert!(target.starts_with(bag.join("data/attachments").canonicalize().unwrap()));
            assert!(&fs::read(&target).unwrap() == bytes, "{href} is not the decoded {name}");
            assert!(manifest.contains(&format!("  data/{href}\n")), "{href} is not listed");
            linked += 1;
        }
    }
    // Listed: the JSON files, the page, and one file per attachment; nothing else under data/.
    let json_files = manifest.lines().filter(|l| l.ends_with(".json")).count() as u64;
    assert_eq!(report.files, json_files + 1 + linked);
    dom
}

#[test]
fn the_demo_export_opens_in_a_browser_and_shows_what_was_exported() {
    let workspace = Workspace::new(&repo_path("examples/sim/demo.yaml"));
    // An access request for one contact, then the same request for two (a re-run that adds a
    // contact): the page is rewritten and shows both.
    workspace.apply("access", "export-only", &[ALEX], EXPORT);
    let bag = workspace.path("exports/DSR-access");
    check_page(&bag, &[ALEX]);
    let said = workspace.apply("access", "export-only", &[ALEX, JANE], EXPORT);
    assert!(said.contains("readable copy for the data subject: "), "{said}");
    assert!(said.contains("DSR-access/data/index.html\n"), "{said}");
    let dom = check_page(&bag, &[JANE, ALEX]);
    // Jane's invoice, note and screenshot are there, by their names, with what the page says of
    // the request.
    for text in ["invoice-2026-0042.pdf", "note.txt", "screenshot.png", "DSR-access", "Article 15"]
    {
        assert!(dom.contains(text), "{text}");
    }
    assert!(dom.contains("<td>Jane</td>") && dom.contains("jane.doe@company.com"));
    assert!(bag.join(format!("data/attachments/{JANE}/0000DOC1INVOICE1.pdf")).is_file());
}

#[test]
fn hostile_content_renders_as_text_and_hostile_names_never_become_paths() {
    let dir = tempfile::tempdir().unwrap();
    let hostile_subject = "\"><img src=x onerror=alert(1)><script>alert(2)</script>";
    let hostile_text = "</pre><script>alert(3)</script><a href=\"javascript:alert(4)\">x</a>";
    let page_bytes = "<html><script>alert(5)</script></html>";
    let dataset = dir.path().join("hostile.yaml");
    fs::write(
        &dataset,
        format!(
            "server: ucs-sim-hostile\nucsVersion: \"9.1\"\ncontacts:\n  - id: {JANE}\n    \
             tenant: 101\n    attributes:\n      FirstName: '<script>alert(6)</script>'\n      \
             LastName: \"O'Brien & <b>Sons</b>\"\n    interactions:\n      main:\n        \
             - id: 00001a5R8AJ800AB\n          mediaType: email\n          status: Stopped\n          \
             subject: '{hostile_subject}'\n          text: '{hostile_text}'\n          \
             startDate: 2026-10-02T09:14:00Z\n          attachments:\n            \
             - id: 0000DOC1INVOICE1\n              name: 'javascript:alert(7)'\n              \
             mimeType: application/octet-stream\n              base64: {}\n            \
             - id: 0000DOC2NOTE0001\n              name: '../../../etc/passwd'\n              \
             mimeType: text/plain\n              base64: {}\n            \
             - id: 0000DOC3SCREEN01\n              name: 'evil.html'\n              \
             mimeType: text/html\n              base64: {}\n",
            base64::engine::general_purpose::STANDARD.encode(b"not a script"),
            base64::engine::general_purpose::STANDARD.encode(b"root:x:0:0"),
            base64::engine::general_purpose::STANDARD.encode(page_bytes),
        ),
    )
    .unwrap();
    let workspace = Workspace::new(&dataset);
    workspace.apply("hostile", "export-only", &[JANE], EXPORT);
    let bag = workspace.path("exports/DSR-hostile");
    let dom = check_page(&bag, &[JANE]);
    // The hostile texts are shown as the text they are.
    let subjects = elements(&dom, "<h4 class=\"subject", "</h4>");
    assert_eq!(unescape(&subjects[0]), hostile_subject);
    let texts = elements(&dom, "<pre class=\"text\"", "</pre>");
    assert_eq!(unescape(&texts[0]), hostile_text);
    assert!(!dom.contains("<a href=\"javascript:"), "a javascript: link");
    assert!(!dom.contains("onerror=\""), "an event handler attribute");
    assert!(dom.contains("O'Brien &amp; &lt;b&gt;Sons&lt;/b&gt;"));
    // The files are named after the attachment ids, inside the contact's folder; the HTML one
    // cannot run as a page.
    let mut names: Vec<String> = fs::read_dir(bag.join(format!("data/attachments/{JANE}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["0000DOC1INVOICE1", "0000DOC2NOTE0001", "0000DOC3SCREEN01.html.txt"]);
    assert_eq!(
        fs::read(bag.join(format!("data/attachments/{JANE}/0000DOC3SCREEN01.html.txt"))).unwrap(),
        page_bytes.as_bytes()
    );
}

#[test]
fn a_request_that_says_its_language_gets_its_page_in_that_language() {
    let workspace = Workspace::new(&repo_path("examples/sim/demo.yaml"));
    let omit = "  export: { attachments: omit }\n";
    workspace.apply_with("de", "  language: de-AT\n", "export-only", &[JANE], omit);
    let bag = workspace.path("exports/DSR-de");
    let dom = check_page_in(&bag, &[JANE], "(kein Betreff)");
    // Attachments left out of the export are named, not linked, and nothing is written for
    // them: not even the contact's attachments folder.
    assert!(dom.contains("<li>invoice-2026-0042.pdf (application/pdf, 608 Byte; in diesem Export"));
    assert!(!bag.join("data/attachments").join(JANE).exists());
    assert!(dom.contains("<html lang=\"de\">"), "{dom}");
    assert!(dom.contains("Artikel 15 der Datenschutz-Grundverordnung"));
    assert!(!dom.contains("Article 15"));
    // A language the page has no texts in is refused when the manifest is validated.
    let manifest = workspace.path("de.yaml");
    let french = fs::read_to_string(&manifest).unwrap().replace("de-AT", "fr");
    fs::write(&manifest, french).unwrap();
    let output = ucs_gdpr().arg("validate").arg(&manifest).output().unwrap();
    assert!(!output.status.success(), "{}", transcript(&output));
    assert!(transcript(&output).contains("language"), "{}", transcript(&output));
}

async fn start(dataset: &Path) -> (ucs_gdpr::sim::RunningSim, ucs_gdpr::ucs::RestClient) {
    use ucs_gdpr::sim::{SimOptions, Simulator};
    use ucs_gdpr::ucs::{ClientConfig, RestClient};
    let sim = Simulator::start(SimOptions::new(dataset)).await.unwrap();
    let client = RestClient::new(ClientConfig::new(sim.base_url())).unwrap();
    (sim, client)
}

/// Every file under `dir` whose name marks a temporary.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(temporaries(&path));
        } else if path.to_string_lossy().contains(".tmp.") {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_attachment_streams_to_its_file_and_stale_files_are_pruned() {
    use ucs_gdpr::export::{
        Bag, ExportOptions, Language, export_contact, validate_dir, write_index,
    };
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("large.json");
    let size = 6 * 1024 * 1024 + 2; // not a multiple of 3: the padding path
    ucs_gdpr::sim::generate(&ucs_gdpr::sim::GenerateOptions {
        contacts: 1,
        interactions: 1,
        attachment_bytes: size,
        seed: 7,
        out: dataset.clone(),
    })
    .unwrap();
    let value = read_json(&dataset);
    let id = ucs_gdpr::ucs::ContactId::new(value["contacts"][0]["id"].as_str().unwrap()).unwrap();
    let (_sim, client) = start(&dataset).await;
    let bag = Bag::open_or_create(&dir.path().join("exports"), "DSR-LARGE").unwrap();
    export_contact(&client, &bag, &id, &ExportOptions::default()).await.unwrap();
    let report = write_index(&bag, Language::English).await.unwrap();
    assert_eq!((report.contacts, report.attachments, report.attachment_files), (1, 1, 1));
    // A file a crashed earlier run left beside the attachments is not part of this export.
    let folder = bag.root().join(format!("data/attachments/{id}"));
    let stale = folder.join("0000STALE0000001.pdf");
    fs::write(&stale, b"left over").unwrap();
    write_index(&bag, Language::English).await.unwrap();
    assert!(!stale.exists(), "a file of no attachment is removed");
    bag.finish().unwrap();
    drop(bag);
    let dom = check_page(&dir.path().join("exports/DSR-LARGE"), &[id.as_str()]);
    let links = attachment_links(&dom);
    let target = dir.path().join("exports/DSR-LARGE/data").join(&links[0].0);
    assert_eq!(fs::metadata(target).unwrap().len(), size);
    assert!(temporaries(&dir.path().join("exports")).is_empty());
    validate_dir(&dir.path().join("exports/DSR-LARGE")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_written_only_from_files_that_match_the_manifest() {
    use ucs_gdpr::export::{
        Bag, ExportError, ExportOptions, Language, export_contact, validate_dir, write_index,
    };
    let dir = tempfile::tempdir().unwrap();
    let (_sim, client) = start(&repo_path("examples/sim/demo.yaml")).await;
    let bag = Bag::open_or_create(dir.path(), "DSR-TAMPERED").unwrap();
    let jane = ucs_gdpr::ucs::ContactId::new(JANE).unwrap();
    export_contact(&client, &bag, &jane, &ExportOptions::default()).await.unwrap();
    // One letter of a subject changed on disk, the size the same.
    let path = bag.root().join(format!("data/interactions-for-contact-{JANE}.json"));
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replacen("Invoice 2026-0042", "Invoice 2026-0043", 1)).unwrap();
    let error = write_index(&bag, Language::English).await.unwrap_err();
    assert!(matches!(&error, ExportError::Mismatch { path: p, .. } if *p == path), "{error}");
    assert!(!error.to_string().contains("Invoice"), "{error}");
    assert!(
        !bag.root().join("data/index.html").exists(),
        "no page from a file that does not verify"
    );
    assert!(temporaries(bag.root()).is_empty(), "{:?}", temporaries(bag.root()));
    // Put back, the page is written and the bag is valid.
    fs::write(&path, text).unwrap();
    write_index(&bag, Language::English).await.unwrap();
    assert!(validate_dir(bag.root()).is_ok());
}
