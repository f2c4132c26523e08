//! Integrity end to end on the embedded store: legitimate retention
//! (sweeps, ledger retention, ingest while verifying) leaves a store that
//! verifies with zero gaps and proofs that check. Tampering is the tamper
//! suite's (`tests/tamper/`, both backends).

mod common;

use std::path::Path;

use common::{cfg, located, now, TAMPER_POLICY as POLICY};
use lethe_vault::synth::{Synth, SynthReader};
use lethe_vault::verify::VerifyReport;
use lethe_vault::Vault;
use rusqlite::Connection;

fn open(dir: &Path) -> Vault {
    common::open(dir, cfg(POLICY))
}

/// 6,000 synthetic records over 45 days, swept at `NOW`.
fn swept(dir: &Path) -> Vault {
    let v = open(dir);
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(3, 6000, now(), 45)));
    v.ingest(input, &now, &|_, _| {}).unwrap();
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert!(r.deleted > 0 && r.anonymized > 0, "{r:?}");
    v
}

fn verify(v: &Vault) -> VerifyReport {
    v.verify(None, None, now(), &|_| {}).unwrap()
}

#[test]
fn after_legitimate_delete_and_anonymize_verify_passes_with_zero_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let v = swept(dir.path());
    let r = verify(&v);
    assert!(r.ok(), "{:#?}", r.unexplained_gaps);
    assert!(
        r.records_checked > 0 && r.removed_explained > 0 && r.anonymized > 0,
        "{r:?}"
    );
    assert!(r.checkpoints_checked > 0, "{r:?}");
    // stats show the tombstones verify walked
    let st = v.stats(None).unwrap();
    assert_eq!(st.rows.iter().map(|x| x.tombstones).sum::<u64>(), r.tombstones);
    // a second sweep later, more ingest, another sweep: still clean
    let later = now() + 10 * 86_400_000_000;
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(4, 500, later, 5)));
    v.ingest(input, &|| later, &|_, _| {}).unwrap();
    v.sweep(later, None, false, &|| later, &|_, _| {}).unwrap();
    let r2 = verify(&v);
    assert!(r2.ok(), "{:#?}", r2.unexplained_gaps);
    assert_eq!(r2.records_checked + r2.removed_explained, 6500);
}

#[test]
fn records_next_to_a_dropped_range_still_have_inclusion_proofs_that_check() {
    let dir = tempfile::tempdir().unwrap();
    let v = swept(dir.path());
    let key = v.public_key();
    // the oldest surviving audit record of each tenant sits right after a
    // dropped range (the hole's edge heads are what make its proof possible)
    let tenants = ["acme", "globex", "initech", "umbrella"];
    let mut proven = 0;
    for t in tenants {
        let q = lethe_vault::logs::LogQuery {
            tenant: lethe_core::TenantId::new(t).unwrap(),
            stream: Some("audit:1".parse().unwrap()),
            scope: None,
            subject: None,
            since_us: None,
            until_us: None,
            limit: Some(1),
            ascending: true,
            restored: false,
        };
        let mut id = None;
        v.logs(&q, now(), &mut |r| {
            id = r["id"].as_str().map(String::from);
            false
        })
        .unwrap();
        let Some(id) = id else { continue };
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        let p = v.inclusion_proof(uuid.as_bytes(), None).unwrap();
        let r = lethe_vault::proof::check(&p, Some(&key)).unwrap();
        assert!(r.valid, "{r:?}");
        let lethe_vault::proof::Proof::Inclusion { seq, .. } = p else {
            unreachable!()
        };
        assert!(seq > 1, "records before it were dropped");
        proven += 1;
    }
    assert!(proven >= 2);
}

#[test]
fn ledger_retention_trims_behind_a_signed_anchor_and_everything_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let v = common::open(d, cfg(&format!("{POLICY}\n[ledger]\nretention = \"1d\"\n")));
    let day = 86_400_000_000i64;
    let t0 = now();
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(5, 3000, t0, 45)));
    v.ingest(input, &|| t0, &|_, _| {}).unwrap();
    // a first sweep the same day trims nothing (nothing is a day old yet)
    let first = v.sweep(t0, None, false, &|| t0, &|_, _| {}).unwrap();
    assert_eq!((first.ledger_trimmed, first.warnings.len()), (0, 0));
    // two days later: ingest more, sweep again; the first day's entries go
    let t2 = t0 + 2 * day;
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(6, 1000, t2, 45)));
    v.ingest(input, &|| t2, &|_, _| {}).unwrap();
    let second = v.sweep(t2, None, false, &|| t2, &|_, _| {}).unwrap();
    assert!(second.ledger_trimmed > 5, "{second:?}");
    assert!(second.warnings.is_empty(), "{:?}", second.warnings);
    let kept = v.ledger(1, 10_000).unwrap();
    assert!(
        kept[0].seq > 1 && kept.iter().all(|e| e.ts_us >= t2 - day),
        "only young entries stay"
    );
    assert_eq!(kept.last().unwrap().kind, "ledger.anchor");
    // the rest verifies from the anchor; every removal is still explained
    assert_eq!(v.verify_ledger().unwrap().problem, None);
    let r = verify(&v);
    assert!(r.ok(), "{:#?}", r.unexplained_gaps);
    assert_eq!(r.records_checked + r.removed_explained, 4000);
    assert!(r.removed_explained > 0 && r.checkpoints_checked > 0, "{r:?}");
    // and again: the new anchor carries the old one's evidence
    let t4 = t2 + 2 * day;
    let third = v.sweep(t4, None, false, &|| t4, &|_, _| {}).unwrap();
    assert!(third.ledger_trimmed > 0 && third.warnings.is_empty(), "{third:?}");
    let r = verify(&v);
    assert!(r.ok(), "{:#?}", r.unexplained_gaps);
    assert_eq!(r.records_checked + r.removed_explained, 4000);

    // tampering with the anchor is caught
    drop(v);
    let cat = Connection::open(d.join("catalog.db")).unwrap();
    let (seq, body): (i64, String) = cat
        .query_row(
            "SELECT seq, body FROM ledger WHERE kind='ledger.anchor' ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    set_ledger_body(d, seq as u64, &body.replacen("\"through\":", "\"through\":1", 1));
    let got = located(verify(&open(d)));
    assert!(got.iter().any(|g| g.1 == "(ledger)" && g.2 == seq as u64), "{got:#?}");
}

#[test]
fn verify_while_ingest_runs_reports_no_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let v = common::open(dir.path(), cfg(&format!("{POLICY}\n[store]\ningest_batch = 300\n")));
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(7, 1000, now(), 30)));
    v.ingest(input, &now, &|_, _| {}).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let input = std::io::BufReader::new(SynthReader::new(Synth::new(8, 6000, now(), 30)));
            v.ingest(input, &now, &|_, _| {}).unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut rounds = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || rounds == 0 {
            let r = verify(&v);
            assert!(r.ok(), "round {rounds}: {:#?}", r.unexplained_gaps);
            rounds += 1;
        }
        assert!(rounds >= 1);
    });
    let r = verify(&v);
    assert!(r.ok() && r.unsealed_recent == 0, "{r:?}");
    assert_eq!(r.records_checked, 7000);
}

/// Rewrites a ledger entry's body directly in the catalog.
fn set_ledger_body(dir: &Path, seq: u64, body: &str) {
    Connection::open(dir.join("catalog.db"))
        .unwrap()
        .execute("UPDATE ledger SET body=?2 WHERE seq=?1", rusqlite::params![seq, body])
        .unwrap();
}

/// Server requests seal after each commit, many at once: a chain that is
/// due must be sealed once, not once per request that saw it due (the HTTP
/// bench wrote 2,485 checkpoints for 100 chains, 32 of one chain state).
#[test]
fn concurrent_seals_of_one_due_chain_write_one_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let v = common::open(dir.path(), cfg("[integrity]\ncheckpoint_every = 1\n"));
    let line = |i: u32| {
        format!(
            r#"{{"tenant":"acme","stream":"audit:1","subject":"u{i}","ts":"2026-05-01T10:00:{i:02}Z","fields":{{"action":"login"}}}}"#
        )
    };
    v.ingest_lines(&[line(0).as_str()], now()).unwrap();
    // Stored without sealing: the chain is now due.
    let text: String = (1..=5).map(|i| line(i) + "\n").collect();
    let mut spans = Vec::new();
    let mut at = 0;
    for (n, l) in text.lines().enumerate() {
        spans.push((n as u64 + 1, at, at + l.len()));
        at += l.len() + 1;
    }
    let p = v.prepare(text.into_bytes(), spans, now()).unwrap();
    v.commit(p).unwrap();
    let before = v.entries_of_kinds(&["checkpoint"]).unwrap().len();

    let start = std::sync::Barrier::new(8);
    let sealed: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    v.seal("system/ingest", now(), false).unwrap().len()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let after = v.entries_of_kinds(&["checkpoint"]).unwrap().len();
    assert_eq!(sealed, 1, "checkpoints returned by eight concurrent seals");
    assert_eq!(after - before, 1, "checkpoints written to the ledger");
    assert!(verify(&v).ok());
}
