//! The vault end to end on the PostgreSQL backend: the same ingest, sweep,
//! erasure and `verify` as on the embedded store, several vaults ("nodes")
//! writing one chain at once, and tampering done with SQL on the tables.
//! Needs a PostgreSQL server (`LETHE_TEST_PG_URL`, else the local service):
//! these tests fail, never skip, without one.

mod common;

use std::path::Path;

use common::pg::{pg_cfg, Schema};
use common::{gaps, logs, now};
use lethe_core::config::Config;
use lethe_core::TenantId;
use lethe_vault::purge::PurgeRequest;
use lethe_vault::Vault;

fn synth_lines(seed: u64, n: u64, days: u32) -> Vec<String> {
    let mut s = lethe_vault::synth::Synth::new(seed, n, now(), days);
    let mut lines = Vec::new();
    let mut l = String::new();
    while s.next_line(&mut l) {
        lines.push(std::mem::take(&mut l));
    }
    lines
}

fn open(dir: &Path, c: Config) -> Vault {
    common::open(dir, c)
}

#[test]
fn ingest_sweep_erasure_and_verify_work_on_postgres_as_on_the_embedded_store() {
    let schema = Schema::new("e2e");
    let dir = tempfile::tempdir().unwrap();
    let v = open(
        dir.path(),
        pg_cfg(&schema, "[retention.default]\nwindow = \"10d\"\naction = \"delete\"\n"),
    );
    let lines = synth_lines(3, 2000, 20);
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(v.ingest_lines(&refs, now()).unwrap().stored, 2000);
    let before = logs(&v, "acme", None).len();
    assert!(before > 100, "{before}");

    // The dry run is exact: the real sweep removes what it said.
    let plan = v.sweep(now(), None, true, &now, &|_, _| {}).unwrap();
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert_eq!((r.deleted, r.verified), (plan.deleted, Some(true)));
    assert!(r.deleted > 500, "about half of 20 days expire: {}", r.deleted);
    assert!(r.bytes_freed > 0, "whole buckets dropped return their disk");
    let cutoff = now() - 10 * 86_400_000_000;
    for t in ["acme", "globex", "initech", "umbrella"] {
        for rec in logs(&v, t, None) {
            let ts = lethe_core::record::parse_ts(rec["ts"].as_str().unwrap()).unwrap();
            assert!(ts >= cutoff, "an expired record survived the sweep: {}", rec["ts"]);
        }
    }
    // Expired buckets are gone as tables, not only as rows.
    let mut c = schema.client();
    let dropping: i64 = c
        .query_one("SELECT count(*) FROM buckets WHERE state<>0", &[])
        .unwrap()
        .get(0);
    assert_eq!(dropping, 0);

    // Erasure of one subject: preview, purge, nothing of them readable.
    let subject = logs(&v, "acme", None)
        .iter()
        .find_map(|r| r["subject"].as_str().map(String::from))
        .expect("a subject");
    let req = PurgeRequest {
        subjects: vec![subject.clone()],
        ..PurgeRequest::new(TenantId::new("acme").unwrap(), "GDPR Art. 17", "DSR-9", "test")
    };
    let plan = v.plan_purge(&req, now()).unwrap();
    let report = v.execute_purge(&req, plan, &now).unwrap();
    assert!(
        report.receipt_id.is_some() && report.verified,
        "{}",
        report.verification
    );
    assert!(report.removed > 0 && report.keys_destroyed > 0);
    assert!(logs(&v, "acme", Some(&subject)).is_empty());
    // The receipt says what PostgreSQL still holds and what was vacuumed.
    let receipt = v.receipt(report.receipt_id.unwrap()).unwrap().expect("receipt");
    let body: serde_json::Value = serde_json::from_str(&receipt.body).unwrap();
    let residue = &body["stores"]["backend"];
    assert!(
        residue["postgresql_key_table"]
            .as_str()
            .is_some_and(|s| s.starts_with("VACUUM data_keys ran")),
        "{residue}"
    );
    for place in ["postgresql_records", "postgresql_wal"] {
        assert!(
            residue[place].as_str().is_some_and(|s| s.contains("until")),
            "{residue}"
        );
    }
    assert!(gaps(&v).is_empty(), "verify: {:?}", gaps(&v));

    // Reopened as another process would: the same records, still verifying.
    let after = logs(&v, "acme", None).len();
    drop(v);
    let v = open(dir.path(), pg_cfg(&schema, ""));
    assert_eq!(logs(&v, "acme", None).len(), after);
    assert!(gaps(&v).is_empty());
}

#[test]
fn two_nodes_appending_to_the_same_chains_at_once_lose_nothing_and_keep_the_chain_whole() {
    let schema = Schema::new("nodes");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(d1.path(), pg_cfg(&schema, ""));
    // The second node shares the master key (as every node of a cluster must).
    std::fs::copy(d1.path().join("master.key"), d2.path().join("master.key")).unwrap();
    let b = open(d2.path(), pg_cfg(&schema, ""));
    let lines = synth_lines(11, 4000, 3);
    let (left, right) = lines.split_at(2000);
    std::thread::scope(|s| {
        for (v, part) in [(&a, left), (&b, right)] {
            s.spawn(move || {
                for chunk in part.chunks(50) {
                    let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    assert_eq!(v.ingest_lines(&refs, now()).unwrap().stored, chunk.len() as u64);
                }
            });
        }
    });
    let total: usize = ["acme", "globex", "initech", "umbrella"]
        .iter()
        .map(|t| logs(&a, t, None).len())
        .sum();
    assert_eq!(total, 4000, "every acknowledged record is stored once");
    // Sequence numbers are dense per chain and the chains verify from either node.
    let mut c = schema.client();
    for r in c.query("SELECT tenant, stream, head_seq FROM chains", &[]).unwrap() {
        let (t, s, head): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
        let n: i64 = c
            .query_one(
                "SELECT count(DISTINCT r.seq) FROM records r JOIN partitions p ON p.id = r.part
                 WHERE p.tenant=$1 AND p.stream=$2",
                &[&t, &s],
            )
            .unwrap()
            .get(0);
        assert_eq!(n, head, "{t}/{s}: one row per sequence number, no gap, no fork");
    }
    assert!(gaps(&a).is_empty(), "{:?}", gaps(&a));
    assert!(gaps(&b).is_empty());
}

#[test]
fn verify_names_a_row_edited_with_sql_and_the_ledger_refuses_edits() {
    let schema = Schema::new("tamper");
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path(), pg_cfg(&schema, ""));
    let lines = synth_lines(5, 300, 2);
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    v.ingest_lines(&refs, now()).unwrap();
    assert!(gaps(&v).is_empty());
    let mut c = schema.client();
    // An operator with SQL access rewrites one record's plain fields.
    let n = c
        .execute(
            "UPDATE records SET plain = replace(plain, 'success', 'failure')
             WHERE (bucket, part, seq) IN (SELECT bucket, part, seq FROM records WHERE plain LIKE '%success%' LIMIT 1)",
            &[],
        )
        .unwrap();
    assert_eq!(n, 1);
    let g = gaps(&v);
    assert_eq!(g.len(), 1, "exactly the edited row is named: {g:?}");
    // The ledger table refuses edits and deletions outright.
    for sql in ["UPDATE ledger SET actor='someone else'", "DELETE FROM ledger"] {
        let e = c.execute(sql, &[]).unwrap_err();
        let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
        assert!(msg.contains("append-only"), "{sql}: {e:?}");
    }
    // A row deleted outright (what a DBA's DELETE does) is a gap verify names.
    c.execute(
        "DELETE FROM records WHERE (bucket, part, seq) IN (SELECT bucket, part, seq FROM records WHERE plain NOT LIKE '%failure%' LIMIT 1)",
        &[],
    )
    .unwrap();
    assert_eq!(gaps(&v).len(), 2, "{:?}", gaps(&v));
}

#[test]
fn a_database_schema_newer_than_the_binary_is_refused_with_a_clear_message() {
    let schema = Schema::new("newer");
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), pg_cfg(&schema, "")));
    let mut c = schema.client();
    c.execute("INSERT INTO schema_version(version) VALUES(999)", &[])
        .unwrap();
    let e = Vault::open(
        dir.path(),
        pg_cfg(&schema, ""),
        &lethe_vault::MasterKeySource::File {
            path: dir.path().join("master.key"),
            create: false,
        },
    )
    .err()
    .expect("refused");
    let msg = e.to_string();
    assert!(msg.contains("version 999") && msg.contains("newer"), "{msg}");
}

#[test]
fn a_schema_from_before_the_chain_group_list_is_brought_forward_with_every_group() {
    let schema = Schema::new("upgrade3");
    let dir = tempfile::tempdir().unwrap();
    let cfg = || pg_cfg(&schema, "[retention.default]\nwindow = \"10d\"\naction = \"delete\"\n");
    let v = open(dir.path(), cfg());
    let lines = synth_lines(5, 800, 20);
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(v.ingest_lines(&refs, now()).unwrap().stored, 800);
    let before = v.sweep(now(), None, true, &now, &|_, _| {}).unwrap();
    assert!(before.deleted > 200, "{}", before.deleted);
    drop(v);
    // The store as version 2 left it: no list of each chain's groups.
    let mut c = schema.client();
    c.batch_execute("DROP TABLE chain_groups; DELETE FROM schema_version WHERE version = 3")
        .unwrap();
    let v = open(dir.path(), cfg());
    let listed: i64 = c.query_one("SELECT count(*) FROM chain_groups", &[]).unwrap().get(0);
    let held: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT DISTINCT p.tenant, p.stream, g.scope, g.class
               FROM partitions p JOIN partition_groups g ON g.partition_id = p.id) AS d",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(held > 4 && listed == held, "{listed} listed, {held} held");
    let after = v.sweep(now(), None, true, &now, &|_, _| {}).unwrap();
    assert_eq!(
        after.deleted, before.deleted,
        "the sweep still finds every expired group"
    );
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert_eq!((r.deleted, r.verified), (before.deleted, Some(true)));
}
