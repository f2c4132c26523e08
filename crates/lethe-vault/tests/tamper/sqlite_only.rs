//! Tampering only the embedded store allows: its files are plain SQLite,
//! so a ledger row can be inserted with a made-up MAC and a column can
//! hold a value of another type (PostgreSQL's typed columns refuse that).

use lethe_store::sqlite::MAX_SEQ;
use rusqlite::params;

use super::common::now;
use super::harness::{TamperExt, TamperTarget};
use super::sqlite::SqliteTarget;

#[test]
fn forge_a_receipt_without_the_ledger_key_is_caught() {
    let c = SqliteTarget::new();
    let run = c.live_run("audit:1");
    let seq = run.first + 2;
    c.forge_tombstone(&run, seq);
    // A forged intent and receipt claiming it, with made-up MACs.
    let cat = c.catalog();
    let (head, hash, version): (i64, Vec<u8>, i64) = cat
        .query_row(
            "SELECT seq, hash, (SELECT max(id) FROM policy_versions) FROM ledger ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let intent = serde_json::json!({"policy_version": version, "now_us": now() + 400 * 86_400_000_000i64, "tenant": null,
        "chains": [{"tenant": run.tenant, "stream": run.stream, "dropped": [], "rows": [{"partition_start_us": 0, "action": "delete", "seqs": [[seq, seq]]}]}]});
    let receipt = serde_json::json!({"intent": head + 1, "verified": true});
    let mut prev = hash;
    for (i, (kind, body)) in [("sweep.intent", intent), ("receipt.sweep", receipt)]
        .iter()
        .enumerate()
    {
        let at = head + 1 + i as i64;
        let h = lethe_core::ledger::entry_hash(
            at as u64,
            now(),
            "cli:mallory",
            kind,
            None,
            &body.to_string(),
            &prev.clone().try_into().unwrap(),
        );
        cat.execute(
            "INSERT INTO ledger(seq,ts_us,actor,kind,tenant,body,prev,hash,mac) VALUES(?1,?2,'cli:mallory',?3,NULL,?4,?5,?6,zeroblob(32))",
            params![at, now(), kind, body.to_string(), prev, &h[..]],
        )
        .unwrap();
        prev = h.to_vec();
    }
    let got = c.gaps();
    for at in [head + 1, head + 2] {
        assert!(
            got.iter()
                .any(|g| g.1 == "(ledger)" && g.2 == at as u64 && g.3.contains("MAC")),
            "{got:#?}"
        );
    }
    assert!(
        got.iter()
            .any(|g| g.0 == run.tenant && g.1 == run.stream && g.2 == seq && g.3.contains("without a receipt")),
        "{got:#?}"
    );
}

#[test]
fn a_column_rewritten_with_another_type_is_reported_at_that_record_not_an_error() {
    let c = SqliteTarget::new();
    let run = c.live_run("audit:1");
    let seq = run.first + 4;
    let path: String = c
        .catalog()
        .query_row("SELECT path FROM partitions WHERE id=?1", [run.part], |r| r.get(0))
        .unwrap();
    let n = rusqlite::Connection::open(c.dir().join(path))
        .unwrap()
        .execute(
            "UPDATE records SET mac = CAST(X'FF00FF' AS TEXT), id = 'not an id' WHERE seq=?1",
            [SqliteTarget::key(run.part, seq)],
        )
        .unwrap();
    assert_eq!(n, 1);
    assert!(seq < MAX_SEQ);
    let got = c.gaps();
    assert!(
        got.iter().any(|g| g.0 == run.tenant && g.1 == run.stream && g.2 == seq),
        "{got:#?}"
    );
}
