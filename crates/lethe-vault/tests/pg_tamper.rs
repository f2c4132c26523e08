//! The tamper suite on PostgreSQL: a swept store on the PostgreSQL backend,
//! then tampering done with SQL on its tables — by an operator with table
//! rights and, for the append-only ledger, by a superuser who switches its
//! trigger off — and `verify` names each at the right place, as it does
//! for the same acts on the embedded store's files (`integrity.rs`).
//! Needs a PostgreSQL server (`LETHE_TEST_PG_URL`, else the local service):
//! fails, never skips, without one.

mod common;

use common::pg::{pg_cfg, Schema};
use common::{assert_deleted_key_entry_caught, key_gaps, located, now, Located, TAMPER_POLICY};
use lethe_vault::synth::{Synth, SynthReader};
use lethe_vault::Vault;

/// A swept store on PostgreSQL, clean before the tampering.
struct Case {
    schema: Schema,
    v: Vault,
    _dir: tempfile::TempDir,
}

fn case(name: &str) -> Case {
    let schema = Schema::new(name);
    let dir = tempfile::tempdir().unwrap();
    let v = common::open(dir.path(), pg_cfg(&schema, TAMPER_POLICY));
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(3, 1500, now(), 45)));
    v.ingest(input, &now, &|_, _| {}).unwrap();
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert!(r.deleted > 0 && r.anonymized > 0, "{r:?}");
    let c = Case { schema, v, _dir: dir };
    assert!(c.gaps().is_empty(), "{:#?}", c.gaps());
    c
}

/// A live record of a stream whose two successors are live too:
/// (tenant, stream, partition, seq).
struct Row {
    tenant: String,
    stream: String,
    part: i64,
    seq: i64,
}

impl Case {
    fn sql(&self) -> postgres::Client {
        self.schema.client()
    }

    fn gaps(&self) -> Vec<Located> {
        located(self.v.verify(None, None, now(), &|_| {}).unwrap())
    }

    fn live_row(&self, stream: &str) -> Row {
        let r = self
            .sql()
            .query_one(
                "SELECT p.tenant, p.stream, r.part, r.seq FROM records r JOIN partitions p ON p.id = r.part
                 WHERE p.stream = $1 AND r.state = 0 AND r.body IS NOT NULL
                   AND (SELECT count(*) FROM records n WHERE n.part = r.part AND n.seq IN (r.seq + 1, r.seq + 2)
                        AND n.state = 0 AND n.body IS NOT NULL) = 2
                 ORDER BY r.part, r.seq LIMIT 1",
                &[&stream],
            )
            .unwrap();
        Row {
            tenant: r.get(0),
            stream: r.get(1),
            part: r.get(2),
            seq: r.get(3),
        }
    }

    /// Asserts verify names exactly `seqs` of the row's chain, and nothing else.
    fn assert_caught_at(&self, row: &Row, seqs: &[i64], what: &str) {
        let got = self.gaps();
        let mut at: Vec<(String, String, u64)> = got.iter().map(|g| (g.0.clone(), g.1.clone(), g.2)).collect();
        at.sort();
        at.dedup();
        let want: Vec<(String, String, u64)> = seqs
            .iter()
            .map(|s| (row.tenant.clone(), row.stream.clone(), *s as u64))
            .collect();
        assert_eq!(at, want, "{what}: {got:#?}");
    }

    /// The first ledger entry of `kind`: (seq, body).
    fn ledger_entry(&self, kind: &str) -> (i64, String) {
        let r = self
            .sql()
            .query_one(
                "SELECT seq, body FROM ledger WHERE kind=$1 ORDER BY seq LIMIT 1",
                &[&kind],
            )
            .unwrap();
        (r.get(0), r.get(1))
    }

    /// Runs `sql` as a superuser can: with the ledger's trigger switched off.
    fn as_superuser(&self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> u64 {
        let mut c = self.sql();
        let mut tx = c.transaction().unwrap();
        tx.batch_execute("SET LOCAL session_replication_role = replica")
            .unwrap();
        let n = tx.execute(sql, params).unwrap();
        tx.commit().unwrap();
        n
    }

    fn assert_ledger_gap(&self, seq: i64, what: &str) {
        let got = self.gaps();
        assert!(
            got.iter()
                .any(|g| g.1 == "(ledger)" && g.2 == seq as u64 && g.3.contains(what)),
            "{got:#?}"
        );
    }

    /// A data key the records of `row`'s partition were sealed under.
    fn used_key(&self, row: &Row) -> i64 {
        self.sql()
            .query_one(
                "SELECT key_id FROM records WHERE part=$1 AND key_id IS NOT NULL GROUP BY key_id ORDER BY count(*) DESC LIMIT 1",
                &[&row.part],
            )
            .unwrap()
            .get(0)
    }
}

#[test]
fn pg_tamper_flipping_one_byte_of_a_sealed_body_is_caught_at_that_record() {
    let c = case("t_body");
    let row = c.live_row("audit:1");
    let n = c
        .sql()
        .execute(
            "UPDATE records SET body = set_byte(body, 20, get_byte(body, 20) # 1) WHERE part=$1 AND seq=$2",
            &[&row.part, &row.seq],
        )
        .unwrap();
    assert_eq!(n, 1);
    c.assert_caught_at(&row, &[row.seq], "a flipped byte");
}

#[test]
fn pg_tamper_deleting_a_range_of_rows_without_a_receipt_is_caught_at_each() {
    let c = case("t_range");
    let row = c.live_row("audit:1");
    let n = c
        .sql()
        .execute(
            "DELETE FROM records WHERE part=$1 AND seq BETWEEN $2 AND $2 + 2",
            &[&row.part, &row.seq],
        )
        .unwrap();
    assert_eq!(n, 3);
    let got = c.gaps();
    assert!(!got.is_empty(), "a deleted range is caught");
    for g in &got {
        assert!(
            g.0 == row.tenant && g.1 == row.stream && (row.seq..=row.seq + 2).contains(&(g.2 as i64)),
            "only the deleted range is named: {got:#?}"
        );
    }
}

#[test]
fn pg_tamper_swapping_two_records_bodies_is_caught_at_both() {
    let c = case("t_swap");
    let row = c.live_row("audit:1");
    let n = c
        .sql()
        .execute(
            "UPDATE records r SET body = o.body FROM records o
             WHERE r.part=$1 AND o.part=$1 AND ((r.seq=$2 AND o.seq=$2+1) OR (r.seq=$2+1 AND o.seq=$2))",
            &[&row.part, &row.seq],
        )
        .unwrap();
    assert_eq!(n, 2);
    c.assert_caught_at(&row, &[row.seq, row.seq + 1], "swapped bodies");
}

#[test]
fn pg_tamper_truncating_a_chains_newest_records_is_caught() {
    let c = case("t_trunc");
    let row = c.live_row("audit:1");
    let n = c
        .sql()
        .execute(
            "DELETE FROM records WHERE (part, seq) IN (
               SELECT r.part, r.seq FROM records r JOIN partitions p ON p.id=r.part
               WHERE p.tenant=$1 AND p.stream=$2 ORDER BY r.seq DESC LIMIT 3)",
            &[&row.tenant, &row.stream],
        )
        .unwrap();
    assert_eq!(n, 3);
    let got = c.gaps();
    assert!(
        got.iter().any(|g| g.0 == row.tenant && g.1 == row.stream),
        "the truncated chain is named: {got:#?}"
    );
}

#[test]
fn pg_tamper_a_tombstone_written_without_a_receipt_is_caught() {
    let c = case("t_tomb");
    let row = c.live_row("audit:1");
    c.sql()
        .execute(
            "UPDATE records SET plain='', body=NULL, pseudonym=NULL, key_id=NULL, state=2 WHERE part=$1 AND seq=$2",
            &[&row.part, &row.seq],
        )
        .unwrap();
    c.assert_caught_at(&row, &[row.seq], "a forged tombstone");
}

#[test]
fn pg_tamper_a_superuser_editing_a_ledger_entry_past_its_trigger_is_caught_at_that_entry() {
    let c = case("t_ledger_edit");
    let (seq, body) = c.ledger_entry("receipt.sweep");
    let n = c.as_superuser(
        "UPDATE ledger SET body=$2 WHERE seq=$1",
        &[&seq, &body.replace("\"verified\":true", "\"verified\":false")],
    );
    assert_eq!(n, 1);
    c.assert_ledger_gap(seq, "edited");
}

#[test]
fn pg_tamper_a_superuser_replacing_a_checkpoint_is_caught() {
    let c = case("t_checkpoint");
    let (seq, body) = c.ledger_entry("checkpoint");
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["checkpoint"]["root"] = serde_json::Value::String("ab".repeat(32));
    c.as_superuser("UPDATE ledger SET body=$2 WHERE seq=$1", &[&seq, &v.to_string()]);
    c.assert_ledger_gap(seq, "edited");
}

#[test]
fn pg_tamper_a_superuser_deleting_a_ledger_entry_is_caught_and_the_keys_it_recorded_named() {
    let c = case("t_ledger_delete");
    let (seq, body) = c.ledger_entry("key.data_created");
    assert_eq!(c.as_superuser("DELETE FROM ledger WHERE seq=$1", &[&seq]), 1);
    assert_deleted_key_entry_caught(&c.gaps(), seq as u64, &body);
}

#[test]
fn pg_tamper_destroying_a_data_key_without_a_purge_is_caught_as_an_unrecorded_erasure() {
    let c = case("t_key_destroy");
    let row = c.live_row("audit:1");
    let id = c.used_key(&row);
    c.sql()
        .execute("UPDATE data_keys SET wrapped=NULL, destroyed_us=0 WHERE id=$1", &[&id])
        .unwrap();
    let all = c.gaps();
    let got = key_gaps(&all, id);
    assert!(
        got.iter().any(|g| g.3.contains("no receipted erasure destroyed it")),
        "{got:#?}"
    );
}

#[test]
fn pg_tamper_flipping_a_byte_of_a_wrapped_key_is_caught_as_a_key_that_does_not_open() {
    let c = case("t_key_flip");
    let row = c.live_row("audit:1");
    let id = c.used_key(&row);
    c.sql()
        .execute(
            "UPDATE data_keys SET wrapped = set_byte(wrapped, 20, get_byte(wrapped, 20) # 255) WHERE id=$1",
            &[&id],
        )
        .unwrap();
    let all = c.gaps();
    let got = key_gaps(&all, id);
    assert!(
        got.iter().any(|g| g.1 == "(keys)" && g.3.contains("does not open")),
        "{got:#?}"
    );
}
