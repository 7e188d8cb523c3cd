//! How long `validate` takes on a large manifest: a generated batch request of 10,000 subjects.
//!
//! Run with `cargo bench --bench validate`. Prints the median and spread of the library call
//! (load, schema, typed model, rules) and the size of the file.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::indexing_slicing)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ucs_gdpr::manifest::Context;
use ucs_gdpr::runbook::RunbookLibrary;

const SUBJECTS: usize = 10_000;
const ROUNDS: usize = 15;

/// A distinct 16-character id for every `n` below 10^8, shaped like a UCS id (digits and
/// letters).
fn contact_id(n: usize) -> String {
    format!("0001BnCh{n:08}")
}

fn manifest_text() -> String {
    let mut text = String::from(
        "apiVersion: ucs-gdpr/v1\nkind: Request\nmetadata:\n  id: DSR-BENCH-0001\n  \
         receivedAt: 2026-11-20T10:15:00Z\n  channel: email\n  verifiedBy: bench\nspec:\n  \
         environment: demo\n  runbook: batch-delete\n  subjects:\n",
    );
    for n in 0..SUBJECTS {
        if n % 4 == 0 {
            writeln!(
                text,
                "    - match: {{ TenantId: 101, EmailAddress: customer{n}@example.com }}"
            )
            .unwrap();
        } else {
            writeln!(text, "    - contactId: {}", contact_id(n)).unwrap();
        }
    }
    text.push_str("  export:\n    dataSources: [main, archive]\n  delete:\n    confirm: true\n");
    text
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.yaml");
    let text = manifest_text();
    std::fs::write(&path, &text).unwrap();
    let runbooks = RunbookLibrary::built_in();
    let context = Context { runbooks: &runbooks, environments: None, now: jiff::Timestamp::now() };

    // One warm-up round: the schemas compile once per process.
    let validated = ucs_gdpr::validate::file(&path, &context);
    assert!(
        !validated.report.has_errors(),
        "{} diagnostic(s), the first: {:?}",
        validated.report.diagnostics.len(),
        validated.report.diagnostics.first()
    );

    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let validated = ucs_gdpr::validate::file(&path, &context);
            let elapsed = started.elapsed();
            assert!(!validated.report.has_errors());
            elapsed
        })
        .collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "validate: {SUBJECTS} subjects, {} KiB: median {:.1} ms (min {:.1}, max {:.1}) over {ROUNDS} rounds",
        text.len() / 1024,
        ms(times[ROUNDS / 2]),
        ms(times[0]),
        ms(times[ROUNDS - 1]),
    );
}
