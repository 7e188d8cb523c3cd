//! `ucs-gdpr validate` and `ucs-gdpr schema`, through the real binary.

use std::fs;

use serde_json::Value;

use crate::{repo_path, transcript, ucs_gdpr};

const ENV_FILE: &str = "examples/ucs-gdpr.yaml";

fn validate_json(args: &[&str]) -> (i32, Vec<Value>) {
    let output = ucs_gdpr()
        .args(["validate", "--format", "json", "--env-file", ENV_FILE])
        .args(args)
        .output()
        .unwrap();
    let annotations: Vec<Value> = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", transcript(&output)));
    (output.status.code().unwrap(), annotations)
}

fn codes(annotations: &[Value]) -> Vec<&str> {
    annotations.iter().map(|a| a["code"].as_str().unwrap()).collect()
}

#[test]
fn every_valid_example_validates_without_a_finding() {
    let output = ucs_gdpr()
        .args(["validate", "--env-file", ENV_FILE, "examples/requests", "runbooks", ENV_FILE])
        .output()
        .unwrap();
    let text = transcript(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(output.stderr.is_empty(), "{text}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 errors, 0 warnings"), "{text}");
}

#[test]
fn each_invalid_example_reports_the_mistake_it_was_written_for() {
    let dir = repo_path("examples/invalid");
    // The folder also holds the data files some examples name (a subjects file): only the
    // manifests are examples.
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 25, "one file per kind of mistake");
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        let text = fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name} has no `# expect:` line"));
        let relative = format!("examples/invalid/{name}");
        let (code, annotations) = validate_json(&[&relative]);
        assert!(codes(&annotations).contains(&expected), "{name}: {annotations:?}");
        let only_warnings = annotations.iter().all(|a| a["severity"] == "warning");
        assert_eq!(code, if only_warnings { 0 } else { 1 }, "{name}");
        for annotation in &annotations {
            assert_eq!(annotation["file"], relative.as_str());
            assert!(annotation["line"].as_u64().unwrap() >= 1, "{name}: {annotation}");
        }
    }
}

#[test]
fn the_diagnostics_of_every_invalid_example_read_well() {
    let dir = repo_path("examples/invalid");
    // The folder also holds the data files some examples name (a subjects file): only the
    // manifests are examples.
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_stem().unwrap().to_str().unwrap().to_owned();
        let relative = format!("examples/invalid/{}", file.file_name().unwrap().to_str().unwrap());
        let output =
            ucs_gdpr().args(["validate", "--env-file", ENV_FILE, &relative]).output().unwrap();
        insta::assert_snapshot!(format!("invalid-{name}"), transcript(&output));
    }
}

#[test]
fn json_output_points_at_the_exact_line_and_column() {
    let (code, annotations) = validate_json(&["examples/invalid/unknown-key.yaml"]);
    assert_eq!(code, 1);
    assert_eq!(annotations.len(), 2, "{annotations:?}");
    let unknown = annotations.iter().find(|a| a["code"] == "schema::unknown-key").unwrap();
    // `  subject:` on line 14: the key itself, columns 3 to 10.
    assert_eq!(
        (&unknown["line"], &unknown["column"], &unknown["endLine"], &unknown["endColumn"]),
        (&Value::from(14), &Value::from(3), &Value::from(14), &Value::from(10))
    );
    assert_eq!(unknown["severity"], "error");
    assert_eq!(unknown["message"], "unknown key `subject` in `spec`");
    // With `subject:` misspelt the request names nobody; that points at the parent's key.
    let missing = annotations.iter().find(|a| a["code"] == "request::no-subjects").unwrap();
    assert_eq!(missing["line"], 11, "a missing key points at the parent object's key");
}

#[test]
fn every_error_in_a_file_is_reported_at_once() {
    let (code, annotations) = validate_json(&["examples/invalid/bad-formats.yaml"]);
    assert_eq!(code, 1);
    assert_eq!(codes(&annotations), ["schema::format", "schema::format", "schema::format"]);
    let lines: Vec<u64> = annotations.iter().map(|a| a["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [8, 11, 16]);
}

#[test]
fn messages_never_quote_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pii.yaml");
    fs::write(
        &file,
        "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-1\n  receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: a\nspec:\n  environment: demo\n  runbook: export-only\n  subjects:\n    - match: { TenantId: 101, EmailAddress: not-an-address, LastName: 7 }\n  export: {}\n",
    )
    .unwrap();
    let (code, annotations) = validate_json(&[file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(codes(&annotations), ["schema::format", "schema::type"]);
    let text = serde_json::to_string(&annotations).unwrap();
    assert!(!text.contains("not-an-address"), "{text}");
}

#[test]
fn a_directory_is_walked_for_yaml_files_only() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(repo_path("examples/requests/1-access-request.yaml"), dir.path().join("a.yaml"))
        .unwrap();
    fs::create_dir(dir.path().join("nested")).unwrap();
    fs::copy(repo_path("runbooks/export-only.yaml"), dir.path().join("nested/b.yml")).unwrap();
    fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
    let output =
        ucs_gdpr().args(["validate", "--env-file", ENV_FILE]).arg(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", transcript(&output));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("2 files checked: 2 clean"));
}

#[test]
fn a_usage_error_does_not_collide_with_validation_exit_codes() {
    let output = ucs_gdpr().args(["validate", "--no-such-flag", "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let output = ucs_gdpr().args(["validate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let output = ucs_gdpr().args(["validate", "does/not/exist.yaml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does/not/exist.yaml"));
}

#[test]
fn schema_prints_each_schema_as_2020_12_json() {
    for kind in ["request", "runbook", "environments"] {
        let output = ucs_gdpr().args(["schema", kind]).output().unwrap();
        assert!(output.status.success());
        let schema: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert!(schema["$id"].as_str().unwrap().ends_with(&format!("{kind}.schema.json")));
        assert!(jsonschema::draft202012::meta::is_valid(&schema), "{kind}");
        let on_disk: Value = serde_json::from_str(
            &fs::read_to_string(repo_path(&format!("schemas/{kind}.schema.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(schema, on_disk);
    }
}

/// Every property of every schema has a `description`, for the editor's hover.
#[test]
fn every_schema_property_is_described() {
    fn walk(node: &Value, at: &str, missing: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (key, prop) in props {
                if prop.get("description").is_none() {
                    missing.push(format!("{at}/{key}"));
                }
                walk(prop, &format!("{at}/{key}"), missing);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = node.get(key).filter(|c| c.is_object()) {
                walk(child, &format!("{at}/{key}"), missing);
            }
        }
        if let Some(defs) = node.get("$defs").and_then(Value::as_object) {
            for (key, def) in defs {
                walk(def, &format!("{at}/$defs/{key}"), missing);
            }
        }
    }
    for kind in ["request", "runbook", "environments"] {
        let text = fs::read_to_string(repo_path(&format!("schemas/{kind}.schema.json"))).unwrap();
        let schema: Value = serde_json::from_str(&text).unwrap();
        let mut missing = Vec::new();
        walk(&schema, "", &mut missing);
        assert_eq!(missing, Vec::<String>::new(), "{kind}");
    }
}

/// The limits of the loader, each with the code a user sees.
mod limits {
    use super::*;

    fn validate_bytes(bytes: &[u8]) -> (i32, Vec<Value>) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("request.yaml");
        fs::write(&file, bytes).unwrap();
        validate_json(&[file.to_str().unwrap()])
    }

    fn request_text() -> String {
        fs::read_to_string(repo_path("examples/requests/2-forget-me-by-contact-id.yaml")).unwrap()
    }

    #[test]
    fn a_file_over_8_mib_is_refused_without_parsing() {
        let mut text = request_text();
        text.push_str(&format!("# {}\n", "x".repeat(9 << 20)));
        let (code, annotations) = validate_bytes(text.as_bytes());
        assert_eq!(code, 1);
        assert_eq!(codes(&annotations), ["yaml::too-large"]);
    }

    #[test]
    fn a_non_utf8_file_is_refused_with_its_offset() {
        let mut bytes = request_text().into_bytes();
        bytes.extend_from_slice(b"# caf\xe9\n");
        let (code, annotations) = validate_bytes(&bytes);
        assert_eq!(code, 1);
        assert_eq!(codes(&annotations), ["yaml::not-utf8"]);
        assert!(annotations[0]["message"].as_str().unwrap().contains("offset"));
    }

    #[test]
    fn a_bom_and_crlf_line_ends_are_accepted() {
        let text = format!("\u{feff}{}", request_text().replace('\n', "\r\n"));
        let (code, annotations) = validate_bytes(text.as_bytes());
        assert_eq!((code, annotations.len()), (0, 0), "{annotations:?}");
    }

    #[test]
    fn positions_stay_right_after_a_bom_and_crlf() {
        let text = format!("\u{feff}{}", request_text().replace('\n', "\r\n"))
            .replace("channel: email", "channel: emial");
        let (_, annotations) = validate_bytes(text.as_bytes());
        assert_eq!(codes(&annotations), ["schema::not-allowed"]);
        assert_eq!(
            (&annotations[0]["line"], &annotations[0]["column"]),
            (&Value::from(8), &Value::from(12))
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        for depth in [100, 5000] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let (code, annotations) = validate_bytes(text.as_bytes());
            assert_eq!(code, 1);
            assert_eq!(codes(&annotations), ["yaml::too-deep"], "{depth}");
        }
    }

    #[test]
    fn a_billion_laughs_file_fails_fast_in_bounded_memory() {
        let started = std::time::Instant::now();
        let (code, annotations) = validate_json(&["examples/invalid/alias-bomb.yaml"]);
        assert_eq!(code, 1);
        assert_eq!(codes(&annotations), ["yaml::alias-expansion"]);
        // Not a benchmark: a bound that would catch an expansion of a billion nodes.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn every_duplicate_key_is_reported_at_its_second_occurrence() {
        let text = request_text()
            .replace("  channel: email\n", "  channel: email\n  channel: chat\n  id: X\n");
        let (code, annotations) = validate_bytes(text.as_bytes());
        assert_eq!(code, 1);
        assert_eq!(codes(&annotations), ["yaml::duplicate-key", "yaml::duplicate-key"]);
        assert_eq!(annotations[0]["line"], 9);
        assert_eq!(annotations[1]["line"], 10);
    }

    #[test]
    fn several_documents_and_empty_files_are_refused() {
        let (_, annotations) =
            validate_bytes(format!("{}---\n{}", request_text(), request_text()).as_bytes());
        assert_eq!(codes(&annotations), ["yaml::multiple-documents"]);
        let (_, annotations) = validate_bytes(b"");
        assert_eq!(codes(&annotations), ["yaml::empty"]);
        let (_, annotations) = validate_bytes(b"\n\n# nothing\n");
        assert_eq!(codes(&annotations), ["yaml::empty"]);
    }
}

#[test]
fn a_misspelt_runbook_is_reported_alongside_schema_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("request.yaml");
    let text = fs::read_to_string(repo_path("examples/requests/1-access-request.yaml"))
        .unwrap()
        .replace("runbook: export-only", "runbook: export-onyl")
        .replace("channel: letter", "channel: fax");
    fs::write(&file, text).unwrap();
    let (code, annotations) = validate_json(&[file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(codes(&annotations), ["schema::not-allowed", "request::unknown-runbook"]);
}

/// `validate --format FORMAT` on an error, a warning and a clean file, as CI sees it.
fn ci_format(format: &str) -> (i32, String) {
    let output = ucs_gdpr()
        .args(["validate", "--format", format, "--env-file", ENV_FILE])
        .args([
            "examples/invalid/unknown-key.yaml",
            "examples/invalid/hold-not-subject.yaml",
            "examples/requests/1-access-request.yaml",
        ])
        .output()
        .unwrap();
    assert!(output.stderr.is_empty(), "{}", transcript(&output));
    (output.status.code().unwrap(), String::from_utf8(output.stdout).unwrap())
}

#[test]
fn github_format_prints_one_workflow_command_per_finding() {
    let (code, out) = ci_format("github");
    assert_eq!(code, 1);
    let (_, annotations) = validate_json(&[
        "examples/invalid/unknown-key.yaml",
        "examples/invalid/hold-not-subject.yaml",
        "examples/requests/1-access-request.yaml",
    ]);
    assert_eq!(out.lines().count(), annotations.len(), "{out}");
    for (line, annotation) in out.lines().zip(&annotations) {
        let expected = format!(
            "::{} file={},line={},col={},endLine={},endColumn={},title={}::",
            annotation["severity"].as_str().unwrap(),
            annotation["file"].as_str().unwrap(),
            annotation["line"],
            annotation["column"],
            annotation["endLine"],
            annotation["endColumn"],
            annotation["code"].as_str().unwrap().replace(':', "%3A"),
        );
        assert!(line.starts_with(&expected), "{line}\nexpected {expected}");
    }
    insta::assert_snapshot!("validate-format-github", out);
}

#[test]
fn sarif_format_is_a_sarif_log_with_a_located_result_per_finding() {
    let (code, out) = ci_format("sarif");
    assert_eq!(code, 1);
    let sarif: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "ucs-gdpr");
    let results = run["results"].as_array().unwrap();
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(!results.is_empty());
    for result in results {
        let index = usize::try_from(result["ruleIndex"].as_u64().unwrap()).unwrap();
        assert_eq!(rules[index]["id"], result["ruleId"]);
        assert!(["error", "warning"].contains(&result["level"].as_str().unwrap()));
        let region = &result["locations"][0]["physicalLocation"]["region"];
        assert!(region["startLine"].as_u64().unwrap() >= 1, "{result}");
    }
    insta::assert_snapshot!("validate-format-sarif", out);
}

#[test]
fn junit_format_has_a_test_case_per_file_failing_with_its_errors() {
    let (code, out) = ci_format("junit");
    assert_eq!(code, 1);
    assert!(out.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"), "{out}");
    assert_eq!(out.matches("<testcase ").count(), 3, "{out}");
    assert_eq!(out.matches("<failure ").count(), 1, "{out}");
    assert!(out.contains("tests=\"3\" failures=\"1\""), "{out}");
    insta::assert_snapshot!("validate-format-junit", out);
}
