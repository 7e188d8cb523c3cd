//! Recording contacts in an export bag: the cost per contact at 1,000, 10,000 and 100,000
//! contacts in one bag, so that the growth (not only one size) is measured.
//!
//! Run with `cargo bench --bench bag` (`BAG_BENCH_MAX=10000` for a quicker run). Each contact
//! gets its two small payload files written beforehand (outside the timing); the timed part is
//! `Bag::record` for every contact, then one `Bag::finish`. Each record appends two manifest
//! lines and fsyncs them, so on a real disk the per-contact cost is dominated by that fsync.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::cast_precision_loss)]

use std::collections::BTreeMap;
use std::time::Instant;

use ucs_gdpr::export::{Bag, ContactExport, ExportedFile, PayloadKind};
use ucs_gdpr::ucs::ContactId;

fn contact(n: usize) -> ContactId {
    ContactId::new(&format!("BENCH{n:011}")).unwrap()
}

fn run(contacts: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let bag = Bag::open_or_create(dir.path(), "BENCH-BAG").unwrap();
    let data = bag.root().join("data");
    let exports: Vec<ContactExport> = (0..contacts)
        .map(|n| {
            let id = contact(n);
            let files = [PayloadKind::Contact, PayloadKind::Interactions]
                .into_iter()
                .map(|kind| {
                    let body = format!("{{\"contact\":\"{id}\",\"kind\":\"{kind:?}\"}}\n");
                    std::fs::write(data.join(kind.file_name(&id)), &body).unwrap();
                    ExportedFile {
                        kind,
                        path: Bag::relative_path(kind, &id),
                        sha256: ucs_gdpr::canonical::sha256_hex(body.as_bytes()),
                        size: body.len() as u64,
                    }
                })
                .collect();
            ContactExport { contact: id, files, sources: BTreeMap::new(), beside: None }
        })
        .collect();
    let started = Instant::now();
    let mut first_tenth = 0.0;
    for (n, export) in exports.iter().enumerate() {
        bag.record(export).unwrap();
        if n + 1 == contacts / 10 {
            first_tenth = started.elapsed().as_secs_f64();
        }
    }
    bag.finish().unwrap();
    let total = started.elapsed().as_secs_f64();
    assert_eq!(bag.validate().unwrap().files, 2 * contacts as u64);
    let last_tenth = (total - first_tenth) / 9.0;
    // Contacts/s over the whole run, and the last tenth's cost against the first tenth's.
    (contacts as f64 / total, last_tenth / first_tenth)
}

fn main() {
    let max: usize =
        std::env::var("BAG_BENCH_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at start: {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("{:>9} {:>12} {:>22}", "contacts", "contacts/s", "per-tenth cost (last/first)");
    let mut base = None;
    for contacts in [1_000, 10_000, 100_000].into_iter().filter(|&c| c <= max) {
        let (rate, growth) = run(contacts);
        let ratio = *base.get_or_insert(rate);
        println!("{contacts:>9} {rate:>12.0} {growth:>22.2}   rate vs 1,000: {:.2}", rate / ratio);
    }
}
