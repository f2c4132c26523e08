//! The guarantees under faults, concurrency and tampering with the catalog:
//! no record acknowledged under a destroyed key, no store re-initialised
//! over existing data, no write under a wrong master key, no record deleted
//! by a command that only reads, no hold forgotten, no purge verified on
//! the index that found its rows, no record of another tenant shown.

mod common;

use std::path::Path;

use common::{cfg, gaps, logs, now, open, Place};
use lethe_core::TenantId;
use lethe_vault::hold::HoldRequest;
use lethe_vault::purge::{PurgeReport, PurgeRequest};
use lethe_vault::{MasterKeySource, Vault, VaultError};
use rusqlite::Connection;

/// A record of subject `who` in tenant `tenant`, `details` a personal field.
fn line(tenant: &str, who: &str, day: u32, details: &str) -> String {
    format!(
        r#"{{"tenant":"{tenant}","stream":"audit:1","subject":"{who}","ts":"2026-05-{day:02}T10:00:00Z","fields":{{"action":"login","details":"{details}"}}}}"#
    )
}

fn request(tenant: &str, subjects: &[&str], ticket: &str) -> PurgeRequest {
    PurgeRequest {
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..PurgeRequest::new(TenantId::new(tenant).unwrap(), "GDPR Art. 17", ticket, "test")
    }
}

fn purge(v: &Vault, req: &PurgeRequest) -> Result<PurgeReport, VaultError> {
    let plan = v.plan_purge(req, now())?;
    v.execute_purge(req, plan, &now)
}

fn catalog(dir: &Path) -> Connection {
    Connection::open(dir.join("catalog.db")).unwrap()
}

fn a_batch_prepared_before_an_erasure_is_stored_under_a_live_key_never_the_destroyed_one(p: &Place) {
    let writer = p.open_with(cfg(""));
    writer
        .ingest_lines(&[&line("acme", "alice", 20, "first")], now())
        .unwrap();
    // The writer prepares the next batch with alice's key in its cache…
    let later = line("acme", "alice", 21, "after the purge");
    let prepared = writer
        .prepare(later.clone().into_bytes(), vec![(1, 0, later.len())], now())
        .unwrap();
    // …another process erases alice (destroying that key)…
    let eraser = p.open_with(cfg(""));
    let r = purge(&eraser, &request("acme", &["alice"], "DSR-1")).unwrap();
    assert!(r.verified && r.keys_destroyed == 1, "{r:?}");
    // …then the writer commits: the record is stored under a new, live key.
    let (_, stored) = writer.commit(prepared).unwrap();
    assert_eq!(stored.inserted, 1);
    let now_there = logs(&eraser, "acme", Some("alice"));
    assert_eq!(now_there.len(), 1, "{now_there:?}");
    assert!(now_there[0].get("erased").is_none(), "{:?}", now_there[0]);
    assert_eq!(now_there[0]["fields"]["details"], "after the purge");
    assert!(gaps(&eraser).is_empty(), "{:?}", gaps(&eraser));
}

#[test]
fn a_data_directory_that_holds_data_but_no_usable_catalog_is_refused_never_reinitialised() {
    let d = tempfile::tempdir().unwrap();
    drop(common::vault_with_synth(d.path(), "", 3, 400, 10));
    let files_before = common::files_under(&d.path().join("partitions"));
    for damage in ["deleted", "emptied"] {
        for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
            let _ = std::fs::remove_file(d.path().join(f));
        }
        if damage == "emptied" {
            std::fs::write(d.path().join("catalog.db"), b"").unwrap();
        }
        let e = Vault::open(
            d.path(),
            cfg(""),
            &MasterKeySource::File {
                path: d.path().join("master.key"),
                create: false,
            },
        )
        .err()
        .unwrap_or_else(|| panic!("{damage}: opened a store without its catalog"));
        assert!(e.to_string().contains("no usable catalog"), "{damage}: {e}");
        assert_eq!(
            common::files_under(&d.path().join("partitions")),
            files_before,
            "{damage}"
        );
    }
}

#[test]
fn a_wrong_master_key_is_refused_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    drop(common::vault_with_synth(d.path(), "", 4, 200, 5));
    let entries = |v: &Vault| v.ledger(1, 1_000_000).unwrap().len();
    let right = open(d.path(), cfg(""));
    let before = entries(&right);
    drop(right);
    let wrong = lethe_core::crypto::SecretKey::generate().to_hex();
    let e = Vault::open(d.path(), cfg(""), &MasterKeySource::Value(wrong))
        .err()
        .unwrap();
    assert!(matches!(e, VaultError::MasterKey(_)), "{e}");
    assert!(e.to_string().contains("nothing was done"), "{e}");
    let right = open(d.path(), cfg(""));
    assert_eq!(entries(&right), before, "the wrong key wrote nothing");
    assert!(right.verify_ledger().unwrap().problem.is_none());
}

#[test]
fn a_hold_deleted_from_the_catalog_still_holds_by_the_ledger_and_verify_names_it() {
    let d = tempfile::tempdir().unwrap();
    let v = open(d.path(), cfg(""));
    v.ingest_lines(&[&line("acme", "alice", 20, "a"), &line("acme", "bob", 20, "b")], now())
        .unwrap();
    let set = v
        .add_hold(
            &HoldRequest {
                tenant: TenantId::new("acme").unwrap(),
                subject: Some("alice".into()),
                scope: None,
                since_us: None,
                until_us: None,
                reason: "matter 7".into(),
                expires_us: None,
                actor: "legal".into(),
            },
            now(),
        )
        .unwrap();
    catalog(d.path())
        .execute("DELETE FROM holds WHERE id=?1", [set.hold.id])
        .unwrap();
    let e = purge(&v, &request("acme", &["alice"], "DSR-2")).err().unwrap();
    assert!(
        matches!(e, VaultError::Refused(_)),
        "the ledger's hold still holds: {e}"
    );
    assert_eq!(logs(&v, "acme", Some("alice")).len(), 1);
    let g = gaps(&v);
    assert!(
        g.iter()
            .any(|g| g.contains("(holds)") && g.contains("missing from the catalog")),
        "{g:?}"
    );
}

/// Every partition's subject filter zeroed, with the checksum that makes
/// it look intact (what a deliberate edit could do).
fn blank_filters(dir: &Path) {
    let cat = catalog(dir);
    let rows: Vec<(i64, usize)> = cat
        .prepare("SELECT partition_id, length(bits) FROM subject_filters")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(!rows.is_empty());
    for (id, len) in rows {
        let bits = vec![0u8; len];
        let h = lethe_core::merkle::leaf_hash(&bits);
        let version = (u64::from_be_bytes(h[..8].try_into().unwrap()) >> 1) as i64;
        cat.execute(
            "UPDATE subject_filters SET bits=?2, version=?3 WHERE partition_id=?1",
            rusqlite::params![id, bits, version],
        )
        .unwrap();
    }
}

#[test]
fn forged_subject_filters_are_named_by_verify_and_an_exhaustive_purge_finds_every_record() {
    let d = tempfile::tempdir().unwrap();
    let v = open(d.path(), cfg(""));
    let lines: Vec<String> = (1..=9).map(|day| line("acme", "alice", day, "x")).collect();
    v.ingest_lines(&lines.iter().map(String::as_str).collect::<Vec<_>>(), now())
        .unwrap();
    blank_filters(d.path());
    let v = open(d.path(), cfg(""));
    // The filters hide alice's records from the erasure and from its check
    // (which goes through them too): only her key goes.
    let r = purge(&v, &request("acme", &["alice"], "DSR-3")).unwrap();
    assert_eq!((r.removed, r.keys_destroyed), (0, 1), "{r:?}");
    // verify names every hidden record, one per partition (one a day).
    let hidden: Vec<String> = gaps(&v)
        .into_iter()
        .filter(|g| g.contains("subject filter does not name"))
        .collect();
    assert_eq!(hidden.len(), 9, "{hidden:#?}");
    // The remedy verify's finding points to: the same erasure, exhaustive.
    let r = purge(
        &v,
        &PurgeRequest {
            exhaustive: true,
            ..request("acme", &["alice"], "DSR-3")
        },
    )
    .unwrap();
    assert!(r.verified, "{}", r.verification);
    assert!(
        r.verification.contains("every partition in range searched"),
        "{}",
        r.verification
    );
    assert_eq!(r.removed, 9);
    assert!(logs(&v, "acme", Some("alice")).is_empty());
    assert!(
        !gaps(&v).iter().any(|g| g.contains("subject filter")),
        "nothing of alice is left for a filter to hide"
    );
}

#[test]
fn a_zeroed_subject_filter_is_noticed_by_its_checksum_and_the_purge_still_finds_the_records() {
    let d = tempfile::tempdir().unwrap();
    let v = open(d.path(), cfg(""));
    let lines: Vec<String> = (1..=5).map(|day| line("acme", "alice", day, "x")).collect();
    v.ingest_lines(&lines.iter().map(String::as_str).collect::<Vec<_>>(), now())
        .unwrap();
    catalog(d.path())
        .execute("UPDATE subject_filters SET bits=zeroblob(length(bits))", [])
        .unwrap();
    let r = purge(&v, &request("acme", &["alice"], "DSR-4")).unwrap();
    assert!(r.verified && r.removed == 5, "{r:?}");
}

#[test]
fn a_tampered_chain_head_makes_no_command_delete_a_record_and_writes_are_refused() {
    let d = tempfile::tempdir().unwrap();
    drop(common::vault_with_synth(d.path(), "", 5, 600, 3));
    let cat = catalog(d.path());
    let (tenant, stream, head): (String, String, i64) = cat
        .query_row(
            "SELECT tenant, stream, head_seq FROM chains ORDER BY head_seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    cat.execute(
        "UPDATE chains SET head_seq=head_seq-20 WHERE tenant=?1 AND stream=?2",
        [&tenant, &stream],
    )
    .unwrap();
    cat.execute(
        "UPDATE partitions SET state=1 WHERE id=(SELECT partition_id FROM segments WHERE tenant=?1 AND stream=?2 ORDER BY last_seq DESC LIMIT 1)",
        [&tenant, &stream],
    )
    .unwrap();
    let rows = |dir: &Path| -> i64 {
        common::files_under(&dir.join("partitions"))
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "db"))
            .map(|p| {
                Connection::open(p)
                    .unwrap()
                    .query_row("SELECT count(*) FROM records", [], |r| r.get::<_, i64>(0))
                    .unwrap()
            })
            .sum()
    };
    let before = rows(d.path());
    let v = open(d.path(), cfg(""));
    v.stats(None).unwrap();
    assert_eq!(rows(d.path()), before, "opening and reading deleted nothing");
    let e = v
        .ingest_lines(&[&line(&tenant, "zed", 20, "x")], now())
        .expect_err("a write must be refused");
    assert!(e.to_string().contains("contradicts itself"), "{e}");
    assert_eq!(rows(d.path()), before, "the refused write deleted nothing");
    let g = gaps(&v);
    assert!(g.iter().any(|g| g.contains(&format!("{tenant}/{stream}"))), "{g:?}");
    let _ = head;
}

#[test]
fn rows_moved_in_from_another_tenants_partition_are_never_shown_as_this_tenants() {
    let d = tempfile::tempdir().unwrap();
    let v = open(d.path(), cfg(""));
    v.ingest_lines(
        &[
            &line("acme", "alice", 20, "acme's own"),
            &line("globex", "gus", 20, "globex secret"),
        ],
        now(),
    )
    .unwrap();
    drop(v);
    // Both tenants' partitions of that day share one file: the other
    // tenant's rows are moved into this tenant's partition in place of its own.
    let cat = rusqlite::Connection::open(d.path().join("catalog.db")).unwrap();
    let part_of = |t: &str| -> (i64, String) {
        cat.query_row(
            "SELECT id, path FROM partitions WHERE tenant=?1 AND stream='audit:1'",
            [t],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let ((acme, path), (globex, other)) = (part_of("acme"), part_of("globex"));
    assert_eq!(path, other, "tenants of one stream, day and policy share a file");
    let bits = lethe_store::sqlite::SEQ_BITS;
    rusqlite::Connection::open(d.path().join(&path))
        .unwrap()
        .execute_batch(&format!(
            "DELETE FROM records WHERE part={acme};
             UPDATE records SET part={acme}, seq=seq - ({globex} << {bits}) + ({acme} << {bits}) WHERE part={globex};"
        ))
        .unwrap();
    let v = open(d.path(), cfg(""));
    let q = lethe_vault::logs::LogQuery {
        tenant: TenantId::new("acme").unwrap(),
        stream: None,
        scope: None,
        subject: None,
        since_us: None,
        until_us: None,
        limit: None,
        ascending: true,
        restored: false,
    };
    let mut shown = Vec::new();
    let r = v
        .logs(&q, now(), &mut |x| {
            shown.push(x);
            true
        })
        .unwrap();
    assert!(shown.is_empty(), "{shown:?}");
    assert_eq!(r.unreadable_total, 1);
    assert!(r.unreadable[0].problem.contains("seal"), "{:?}", r.unreadable);
}

#[test]
fn a_lost_partition_file_is_listed_by_verify_and_never_recreated_by_ingest() {
    let d = tempfile::tempdir().unwrap();
    let v = open(d.path(), cfg(""));
    let lines: Vec<String> = (1..=4).map(|day| line("acme", "alice", day, "x")).collect();
    v.ingest_lines(&lines.iter().map(String::as_str).collect::<Vec<_>>(), now())
        .unwrap();
    drop(v);
    let lost = d.path().join(
        rusqlite::Connection::open(d.path().join("catalog.db"))
            .unwrap()
            .query_row(
                "SELECT path FROM partitions WHERE tenant='acme' AND path LIKE '%2026-05-02.db'",
                [],
                |r| r.get::<_, String>(0),
            )
            .unwrap(),
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", lost.display()));
    }
    let v = open(d.path(), cfg(""));
    let g = gaps(&v);
    assert!(g.iter().any(|g| g.contains("lost")), "{g:?}");
    let total = |v: &Vault| v.stats(None).unwrap().totals.records;
    let before = total(&v);
    let e = v.ingest_lines(&[&line("acme", "bob", 2, "late")], now()).err();
    assert!(
        e.is_some_and(|e| e.to_string().contains("missing")),
        "ingest into the lost day is refused"
    );
    assert!(!lost.exists(), "the lost file was not recreated empty");
    assert_eq!(total(&v), before, "nothing counted twice");
    // Other days still take records.
    v.ingest_lines(&[&line("acme", "bob", 3, "fine")], now()).unwrap();
}

fn two_identical_purges_at_once_make_one_intent_and_one_receipt(p: &Place) {
    let v = p.open_with(cfg(""));
    let lines: Vec<String> = (1..=6).map(|day| line("acme", "alice", day, "x")).collect();
    v.ingest_lines(&lines.iter().map(String::as_str).collect::<Vec<_>>(), now())
        .unwrap();
    drop(v);
    let req = request("acme", &["alice"], "DSR-5");
    // Two vaults (as two processes would) plan, then run at once.
    let a = p.open_with(cfg(""));
    let b = p.open_with(cfg(""));
    let (pa, pb) = (a.plan_purge(&req, now()).unwrap(), b.plan_purge(&req, now()).unwrap());
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| a.execute_purge(&req, pa, &now).unwrap());
        let hb = s.spawn(|| b.execute_purge(&req, pb, &now).unwrap());
        (ha.join().unwrap(), hb.join().unwrap())
    });
    let mut statuses = [ra.status.clone(), rb.status.clone()];
    statuses.sort();
    assert_eq!(statuses, ["already_done".to_string(), "success".to_string()]);
    let kinds: Vec<String> = a.ledger(1, 10_000).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "purge.intent").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "receipt.purge").count(), 1, "{kinds:?}");
    assert!(gaps(&a).is_empty());
}

fn two_cleanups_at_once_remove_and_receipt_each_record_once(p: &Place) {
    drop(p.synth(
        "[retention.default]\nwindow = \"10d\"\naction = \"delete\"\n",
        6,
        3000,
        40,
    ));
    let c = cfg("[retention.default]\nwindow = \"10d\"\naction = \"delete\"\n");
    let (a, b) = (p.open_with(c.clone()), p.open_with(c));
    let before = a.stats(None).unwrap().totals.records;
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| a.sweep(now(), None, false, &now, &|_, _| {}).unwrap());
        let hb = s.spawn(|| b.sweep(now(), None, false, &now, &|_, _| {}).unwrap());
        (ha.join().unwrap(), hb.join().unwrap())
    });
    let after = a.stats(None).unwrap().totals.records;
    assert!(before > after);
    assert_eq!(
        ra.deleted + rb.deleted,
        before - after,
        "receipts count each removal once"
    );
    assert!(
        ra.deleted == 0 || rb.deleted == 0,
        "one run did the work: {} / {}",
        ra.deleted,
        rb.deleted
    );
    assert!(gaps(&a).is_empty(), "{:?}", gaps(&a));
}

fn a_future_now_is_refused_for_a_real_sweep_and_previewed_by_a_dry_run(p: &Place) {
    let v = p.synth("", 7, 300, 5);
    let future = now() + 4 * 365 * 86_400_000_000;
    let e = v.sweep(future, None, false, &now, &|_, _| {}).err().unwrap();
    assert!(
        matches!(e, VaultError::Invalid(_)) && e.to_string().contains("--dry-run"),
        "{e}"
    );
    // Under a changed policy, too, a dry run enters nothing in the ledger.
    drop(v);
    let v = p.open_with(cfg("[retention.default]\nwindow = \"2d\"\naction = \"delete\"\n"));
    let entries = v.ledger(1, 100_000).unwrap().len();
    let plan = v.sweep(future, None, true, &now, &|_, _| {}).unwrap();
    assert!(plan.deleted > 0);
    assert_eq!(
        v.ledger(1, 100_000).unwrap().len(),
        entries,
        "a dry run writes nothing to the ledger"
    );
    let run = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert!(run.receipt.is_some());
    assert!(v
        .ledger(1, 100_000)
        .unwrap()
        .iter()
        .any(|e| e.kind == "policy.version" && e.seq > entries as u64));
}

on_both_backends!(
    a_batch_prepared_before_an_erasure_is_stored_under_a_live_key_never_the_destroyed_one,
    two_identical_purges_at_once_make_one_intent_and_one_receipt,
    two_cleanups_at_once_remove_and_receipt_each_record_once,
    a_future_now_is_refused_for_a_real_sweep_and_previewed_by_a_dry_run,
);
