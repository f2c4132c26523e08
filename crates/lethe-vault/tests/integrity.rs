//! Integrity end to end: legitimate retention leaves a store that verifies
//! with zero gaps, and every kind of tampering done directly on the SQLite
//! files is caught by `verify` at the right place.

use std::path::{Path, PathBuf};

use lethe_core::config::{self, Config, Source};
use lethe_core::record::parse_ts;
use lethe_vault::synth::{Synth, SynthReader};
use lethe_vault::verify::VerifyReport;
use lethe_vault::{MasterKeySource, Vault};
use rusqlite::Connection;

const NOW: &str = "2026-06-01T00:00:00Z";

fn now() -> i64 {
    parse_ts(NOW).unwrap()
}

/// Delete most streams after 30 days, anonymize LLM requests after 7 (then
/// delete after 90): both kinds of removal, whole partitions and rows.
const POLICY: &str = r#"
[retention.default]
window = "30d"
action = "delete"

[[retention.policy]]
name = "requests-anonymize"
stream = "requests"
window = "7d"
action = "anonymize"
"#;

fn cfg(extra: &str) -> Config {
    config::load(
        Source {
            name: "test",
            text: extra,
        },
        None,
        &[],
    )
    .unwrap()
}

fn open(dir: &Path) -> Vault {
    Vault::open(
        dir,
        cfg(POLICY),
        &MasterKeySource::File {
            path: dir.join("master.key"),
            create: true,
        },
    )
    .unwrap()
}

/// 3,000 synthetic records over 60 days, swept at `NOW`.
fn swept(dir: &Path) -> Vault {
    let v = open(dir);
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(3, 3000, now(), 60)));
    v.ingest(input, &now, &|_, _| {}).unwrap();
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert!(r.deleted > 0 && r.anonymized > 0, "{r:?}");
    v
}

fn verify(v: &Vault) -> VerifyReport {
    v.verify(None, None, &|_| {}).unwrap()
}

#[test]
fn after_legitimate_delete_and_anonymize_verify_passes_with_zero_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let v = swept(dir.path());
    let r = verify(&v);
    assert!(r.ok(), "{:#?}", r.unexplained_gaps);
    assert!(r.records_checked > 0 && r.removed_explained > 0 && r.anonymized > 0, "{r:?}");
    assert!(r.checkpoints_checked > 0, "{r:?}");
    // a second sweep later, more ingest, another sweep: still clean
    let later = now() + 10 * 86_400_000_000;
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(4, 500, later, 5)));
    v.ingest(input, &|| later, &|_, _| {}).unwrap();
    v.sweep(later, None, false, &|| later, &|_, _| {}).unwrap();
    let r2 = verify(&v);
    assert!(r2.ok(), "{:#?}", r2.unexplained_gaps);
    assert_eq!(r2.records_checked + r2.removed_explained, 3500);
}
