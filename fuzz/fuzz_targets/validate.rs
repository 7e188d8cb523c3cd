//! The whole request pipeline (load, schema, typed model, rules) on arbitrary text: diagnostics,
//! never a panic, and every span inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucs_gdpr::manifest::Context;
use ucs_gdpr::runbook::RunbookLibrary;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("ucs-gdpr-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("request.yaml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let runbooks = RunbookLibrary::built_in();
    let context = Context { runbooks: &runbooks, environments: None, now: jiff::Timestamp::now() };
    let validated = ucs_gdpr::validate::file(&path, &context);
    for diagnostic in &validated.report.diagnostics {
        assert!(diagnostic.span.end <= data.len().max(validated.report.source.len()));
    }
});

