//! The YAML loader on arbitrary bytes: it must return a value or errors, never panic, and stay
//! within its limits whatever the aliases, nesting or encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucs_gdpr::manifest::yaml::{Limits, load_bytes};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_bytes: 1 << 16, max_depth: 64, max_nodes: 100_000 };
    if let Err(errors) = load_bytes(data, &limits) {
        assert!(!errors.is_empty());
        for error in errors {
            // Every span must lie inside the input, so miette can always render it.
            assert!(error.span.start <= error.span.end && error.span.end <= data.len());
        }
    }
});
