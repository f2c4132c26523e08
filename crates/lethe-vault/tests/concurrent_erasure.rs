//! Erasure while applications keep writing: records of the subjects stored
//! at a chosen step of a purge (a crash-point hook, not a race) are removed
//! with it when they landed under the keys it destroys, and are reported as
//! new data — never as a failed check — when they are not the purge's.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{cfg, gaps, logs, now, open};
use lethe_core::TenantId;
use lethe_vault::purge::{PurgeReport, PurgeRequest};
use lethe_vault::Vault;
use serde_json::Value;

fn line(who: &str, stream: &str, day: u32, details: &str) -> String {
    format!(
        r#"{{"tenant":"acme","stream":"{stream}","subject":"{who}","ts":"2026-05-{day:02}T10:00:00Z","fields":{{"action":"login","details":"{details}"}}}}"#
    )
}

fn purge(v: &Vault, req: &PurgeRequest) -> PurgeReport {
    let plan = v.plan_purge(req, now()).unwrap();
    v.execute_purge(req, plan, &now).unwrap()
}

/// A second writer (another vault over the same directory, as another
/// process would be) stores `lines` the first time `point` is reached.
fn write_at(point: &str, writer: Vault, lines: Vec<String>) {
    let writer = Arc::new(writer);
    let once = AtomicBool::new(false);
    lethe_store::crashpoint::on(point, move || {
        if once.swap(true, Ordering::SeqCst) {
            return;
        }
        let refs: Vec<&str> = lines.iter().map(|l| l.as_str()).collect();
        let r = writer.ingest_lines(&refs, now()).unwrap();
        assert_eq!(r.stored as usize, lines.len(), "{r:?}");
    });
}

fn seeded(dir: &std::path::Path) -> Vault {
    let v = open(dir, cfg(""));
    let lines: Vec<String> = (1..=20)
        .map(|d| line(if d % 2 == 0 { "alice" } else { "bob" }, "audit:1", d, "seed"))
        .collect();
    let refs: Vec<&str> = lines.iter().map(|l| l.as_str()).collect();
    v.ingest_lines(&refs, now()).unwrap();
    v
}

fn purge_receipts(v: &Vault) -> Vec<Value> {
    v.receipts()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "receipt.purge")
        .map(|e| serde_json::from_str(&e.body).unwrap())
        .collect()
}

#[test]
fn records_of_a_subject_stored_while_its_erasure_runs_are_removed_by_the_continuation() {
    let d = tempfile::tempdir().unwrap();
    let v = seeded(d.path());
    assert_eq!(logs(&v, "acme", Some("alice")).len(), 10);
    // After the intent's rows are removed and before alice's key is
    // destroyed, another writer stores three more of her records under it.
    let late = (21..=23).map(|d| line("alice", "audit:1", d, "during")).collect();
    write_at("purge.after_apply", open(d.path(), cfg("")), late);
    let req = PurgeRequest {
        subjects: vec!["alice".into()],
        ..PurgeRequest::new(TenantId::new("acme").unwrap(), "GDPR Art. 17", "DSR-7", "test")
    };
    let r = purge(&v, &req);
    lethe_store::crashpoint::clear();
    assert!(r.verified, "{}", r.verification);
    assert_eq!(r.stored_while_running, 3, "{r:?}");
    assert_eq!(r.removed, 13, "the ten planned and the three stored meanwhile");
    assert_eq!(r.keys_destroyed, 1);
    assert!(logs(&v, "acme", Some("alice")).is_empty(), "nothing of alice is left");
    assert_eq!(logs(&v, "acme", Some("bob")).len(), 10, "bob keeps every record");
    let receipts = purge_receipts(&v);
    assert_eq!(receipts.len(), 1, "one receipt for the erasure: {receipts:#?}");
    assert!(receipts[0]["continuation"].as_u64().is_some(), "{:#}", receipts[0]);
    assert_eq!(receipts[0]["stored_while_running"], 3);
    assert!(gaps(&v).is_empty(), "{:?}", gaps(&v));
    // A record of alice stored after the erasure is new data, under a new key.
    v.ingest_lines(&[&line("alice", "audit:1", 24, "after")], now())
        .unwrap();
    let after = logs(&v, "acme", Some("alice"));
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["fields"]["details"], "after");
    assert!(gaps(&v).is_empty(), "{:?}", gaps(&v));
}

#[test]
fn records_stored_after_a_purge_that_keeps_keys_began_are_new_data_not_a_failed_check() {
    let d = tempfile::tempdir().unwrap();
    let v = seeded(d.path());
    // A purge narrowed to one stream keeps alice's key: records of hers
    // stored while it runs are not the purge's, and stay.
    let late = (21..=22).map(|d| line("alice", "audit:1", d, "during")).collect();
    write_at("purge.after_apply", open(d.path(), cfg("")), late);
    let req = PurgeRequest {
        subjects: vec!["alice".into()],
        stream: Some("audit:1".parse().unwrap()),
        ..PurgeRequest::new(TenantId::new("acme").unwrap(), "GDPR Art. 17", "DSR-8", "test")
    };
    let r = purge(&v, &req);
    lethe_store::crashpoint::clear();
    assert!(r.verified, "{}", r.verification);
    assert_eq!(r.keys_destroyed, 0);
    assert_eq!(r.removed, 10);
    assert_eq!(r.stored_while_running, 0);
    assert_eq!(r.stored_later, 2, "{r:?}");
    assert!(
        r.verification.contains("2 matching record(s) stored since"),
        "{}",
        r.verification
    );
    let left: Vec<String> = logs(&v, "acme", Some("alice"))
        .iter()
        .map(|l| l["fields"]["details"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["during", "during"]);
    assert!(gaps(&v).is_empty(), "{:?}", gaps(&v));
}
