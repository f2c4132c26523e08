//! The PostgreSQL store as a tamper target: acts done with SQL on its
//! tables, by a role with table rights — and, for the append-only ledger,
//! as a superuser who switches its trigger off for the transaction.

use lethe_store::row::RawRow;
use lethe_vault::Vault;
use postgres::types::ToSql;

use super::harness::{KeyEdit, Run, TamperTarget};
use super::{swept, SWEPT_RECORDS_PG};
use crate::common::pg::{pg_cfg, Schema};
use crate::common::{self, TAMPER_POLICY};

/// A swept store in a schema of its own.
pub struct PgTarget {
    schema: Schema,
    dir: tempfile::TempDir,
    /// The tamperer's one connection (autocommit: each act is committed
    /// when it returns).
    client: std::cell::RefCell<postgres::Client>,
}

impl PgTarget {
    pub fn new(name: &str) -> PgTarget {
        let schema = Schema::new(name);
        let dir = tempfile::tempdir().unwrap();
        drop(swept(
            common::open(dir.path(), pg_cfg(&schema, TAMPER_POLICY)),
            SWEPT_RECORDS_PG,
        ));
        let client = std::cell::RefCell::new(schema.client());
        PgTarget { schema, dir, client }
    }

    fn sql(&self) -> std::cell::RefMut<'_, postgres::Client> {
        self.client.borrow_mut()
    }

    fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> u64 {
        self.sql().execute(sql, params).unwrap()
    }

    /// Runs `sql` as a superuser can: with triggers switched off.
    fn as_superuser(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> u64 {
        let mut c = self.sql();
        let mut tx = c.transaction().unwrap();
        tx.batch_execute("SET LOCAL session_replication_role = replica")
            .unwrap();
        let n = tx.execute(sql, params).unwrap();
        tx.commit().unwrap();
        n
    }

    fn runs(&self, stream: &str, order: &str) -> Vec<Run> {
        self.sql()
            .query(
                &format!(
                    "SELECT s.partition_id, s.tenant, s.stream, s.first_seq, s.last_seq FROM segments s
                     JOIN partitions p ON p.id = s.partition_id WHERE s.stream = $1 ORDER BY {order}"
                ),
                &[&stream],
            )
            .unwrap()
            .iter()
            .map(|r| Run {
                part: r.get(0),
                tenant: r.get(1),
                stream: r.get(2),
                first: r.get::<_, i64>(3) as u64,
                last: r.get::<_, i64>(4) as u64,
            })
            .collect()
    }
}

impl TamperTarget for PgTarget {
    fn open_with(&self, extra: &str) -> Vault {
        common::open(
            self.dir.path(),
            pg_cfg(&self.schema, &format!("{TAMPER_POLICY}\n{extra}")),
        )
    }

    fn live_run(&self, stream: &str) -> Run {
        for run in self.runs(stream, "p.start_us DESC") {
            let live: i64 = self
                .sql()
                .query_one(
                    "SELECT count(*) FROM records WHERE part=$1 AND seq BETWEEN $2 AND $3 AND state = 0",
                    &[&run.part, &(run.first as i64), &(run.last as i64)],
                )
                .unwrap()
                .get(0);
            if live as u64 == run.last - run.first + 1 && run.last - run.first >= 15 {
                return run;
            }
        }
        panic!("no live run of 16 records in {stream}");
    }

    fn head_run(&self, stream: &str) -> Run {
        let r = self
            .sql()
            .query_one(
                "SELECT tenant, head_seq FROM chains WHERE stream=$1 ORDER BY head_seq DESC LIMIT 1",
                &[&stream],
            )
            .unwrap();
        let (t, head): (String, i64) = (r.get(0), r.get(1));
        self.runs(stream, "s.last_seq DESC")
            .into_iter()
            .find(|r| r.tenant == t && r.last == head as u64)
            .expect("the segment ending at the head")
    }

    fn read_record(&self, run: &Run, seq: u64) -> Option<RawRow> {
        self.sql()
            .query_opt(
                "SELECT seq, id, ts, received, scope, class, pseudonym, key_id, plain, body, state, prev, mac, redacted
                 FROM records WHERE part=$1 AND seq=$2",
                &[&run.part, &(seq as i64)],
            )
            .unwrap()
            .map(|r| RawRow {
                seq: r.get::<_, i64>(0) as u64,
                id: r.get(1),
                ts_us: r.get(2),
                received_us: r.get(3),
                scope: r.get(4),
                class: r.get::<_, i16>(5) as u8,
                pseudonym: r.get(6),
                key_id: r.get(7),
                plain: r.get(8),
                body: r.get(9),
                state: r.get::<_, i16>(10) as i64,
                prev: r.get(11),
                mac: r.get(12),
                redacted: r.get(13),
            })
    }

    fn put_record(&self, run: &Run, r: &RawRow) {
        let n = self.exec(
            "INSERT INTO records(bucket, part, seq, id, ts, received, scope, class, pseudonym, key_id, plain, body, state, prev, mac, redacted)
             SELECT bucket, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 FROM partitions WHERE id = $1
             ON CONFLICT (bucket, part, seq) DO UPDATE SET id=EXCLUDED.id, ts=EXCLUDED.ts, received=EXCLUDED.received,
               scope=EXCLUDED.scope, class=EXCLUDED.class, pseudonym=EXCLUDED.pseudonym, key_id=EXCLUDED.key_id,
               plain=EXCLUDED.plain, body=EXCLUDED.body, state=EXCLUDED.state, prev=EXCLUDED.prev, mac=EXCLUDED.mac,
               redacted=EXCLUDED.redacted",
            &[
                &run.part,
                &(r.seq as i64),
                &r.id,
                &r.ts_us,
                &r.received_us,
                &r.scope,
                &(r.class as i16),
                &r.pseudonym,
                &r.key_id,
                &r.plain,
                &r.body,
                &(r.state as i16),
                &r.prev,
                &r.mac,
                &r.redacted,
            ],
        );
        assert_eq!(n, 1);
    }

    fn remove_records(&self, run: &Run, from: u64, to: u64) -> u64 {
        self.exec(
            "DELETE FROM records WHERE part=$1 AND seq BETWEEN $2 AND $3",
            &[&run.part, &(from as i64), &(to as i64)],
        )
    }

    fn set_chain_head(&self, run: &Run, old: u64, seq: u64, hash: &[u8]) {
        self.exec(
            "UPDATE chains SET head_seq=$3, head_hash=$4 WHERE tenant=$1 AND stream=$2",
            &[&run.tenant, &run.stream, &(seq as i64), &hash],
        );
        self.exec(
            "UPDATE segments SET last_seq=$3 WHERE tenant=$1 AND stream=$2 AND last_seq=$4",
            &[&run.tenant, &run.stream, &(seq as i64), &(old as i64)],
        );
    }

    fn ledger_entry(&self, kind: &str) -> (u64, String) {
        let r = self
            .sql()
            .query_one(
                "SELECT seq, body FROM ledger WHERE kind=$1 ORDER BY seq LIMIT 1",
                &[&kind],
            )
            .unwrap();
        (r.get::<_, i64>(0) as u64, r.get(1))
    }

    fn edit_ledger(&self, seq: u64, body: Option<&str>) {
        let seq = seq as i64;
        let n = match body {
            Some(b) => self.as_superuser("UPDATE ledger SET body=$2 WHERE seq=$1", &[&seq, &b]),
            None => self.as_superuser("DELETE FROM ledger WHERE seq=$1", &[&seq]),
        };
        assert_eq!(n, 1);
    }

    fn wrapped_key(&self, id: i64) -> Option<Vec<u8>> {
        self.sql()
            .query_one("SELECT wrapped FROM data_keys WHERE id=$1", &[&id])
            .unwrap()
            .get(0)
    }

    fn edit_key(&self, id: i64, edit: KeyEdit) {
        let n = match edit {
            KeyEdit::Delete => self.exec("DELETE FROM data_keys WHERE id=$1", &[&id]),
            KeyEdit::Destroy => self.exec("UPDATE data_keys SET wrapped=NULL, destroyed_us=0 WHERE id=$1", &[&id]),
            KeyEdit::Wrapped(w) => self.exec("UPDATE data_keys SET wrapped=$2 WHERE id=$1", &[&id, &w]),
        };
        assert_eq!(n, 1);
    }

    fn put_subject_filter(&self, part: i64, bits: &[u8], version: i64) -> bool {
        self.exec(
            "UPDATE subject_filters SET bits=$2, version=$3 WHERE partition_id=$1",
            &[&part, &bits, &version],
        ) == 1
    }

    fn flip_merkle_nodes(&self) -> u64 {
        self.exec(
            "UPDATE merkle_nodes SET hash = set_byte(hash, 0, get_byte(hash, 0) # 1)",
            &[],
        )
    }
}
