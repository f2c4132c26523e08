//! Erasures and sweeps while applications keep writing: records stored at a
//! chosen step (a crash-point hook, not a race) are removed with a purge
//! when they landed under the keys it destroys, and are reported as new
//! data — never as a failed check — when they are not the purge's or the
//! sweep's.

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

#[test]
fn expired_records_backfilled_while_a_sweep_runs_are_the_next_sweeps_not_a_failed_check() {
    let d = tempfile::tempdir().unwrap();
    let v = open(
        d.path(),
        cfg("[retention.default]\nwindow = \"30d\"\naction = \"delete\"\n"),
    );
    // April records: past the 30-day window at NOW (June 1st).
    let old: Vec<String> = (1..=10)
        .map(|n| line("alice", "audit:1", n, "april").replace("2026-05-", "2026-04-"))
        .collect();
    let refs: Vec<&str> = old.iter().map(|l| l.as_str()).collect();
    v.ingest_lines(&refs, now()).unwrap();
    // While the sweep applies its plan, an import of March records lands:
    // expired too, but stored after the sweep planned.
    let backfill = (1..=3)
        .map(|n| line("bob", "audit:1", n, "march").replace("2026-05-", "2026-03-"))
        .collect();
    write_at("sweep.after_apply", open(d.path(), cfg("")), backfill);
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    lethe_store::crashpoint::clear();
    assert_eq!(r.deleted, 10, "{r:?}");
    assert_eq!(r.verified, Some(true), "the sweep removed everything it planned: {r:?}");
    assert_eq!(r.stored_during, 3, "{r:?}");
    let rc = v
        .receipts()
        .unwrap()
        .into_iter()
        .rfind(|e| e.kind == "receipt.sweep")
        .unwrap();
    let body: Value = serde_json::from_str(&rc.body).unwrap();
    assert_eq!(body["stored_during"], 3, "{body:#}");
    assert!(gaps(&v).is_empty(), "{:?}", gaps(&v));
    // The next sweep takes them.
    let again = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert_eq!(again.deleted, 3, "{again:?}");
    assert_eq!(again.verified, Some(true));
    assert_eq!(again.stored_during, 0);
    assert!(logs(&v, "acme", None).is_empty());
    assert!(gaps(&v).is_empty(), "{:?}", gaps(&v));
}
