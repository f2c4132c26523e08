//! The embedded store as a tamper target: acts done with `rusqlite` on its
//! files (the catalog, and the shared partition files whose row keys are
//! `partition id << SEQ_BITS | seq`).

use std::path::{Path, PathBuf};

use lethe_store::row::RawRow;
use lethe_store::sqlite::{raw_row, ROW_COLUMNS, SEQ_BITS};
use lethe_vault::Vault;
use rusqlite::{params, Connection, OptionalExtension};

use super::harness::{KeyEdit, Run, TamperTarget};
use super::{swept, SWEPT_RECORDS};
use crate::common::{self, cfg, TAMPER_POLICY};

/// A copy of a swept embedded store.
pub struct SqliteTarget {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

/// The swept store every case of one test process copies.
fn template() -> &'static Path {
    static T: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &T.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("store");
        drop(swept(common::open(&d, cfg(TAMPER_POLICY)), SWEPT_RECORDS));
        (t, d)
    })
    .1
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

impl SqliteTarget {
    pub fn new() -> SqliteTarget {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        copy_dir(template(), &dir);
        SqliteTarget { _tmp: tmp, dir }
    }

    /// The store's directory (for the SQLite-only cases).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn catalog(&self) -> Connection {
        Connection::open(self.dir.join("catalog.db")).unwrap()
    }

    /// The file holding partition `part`.
    fn part_file(&self, part: i64) -> Connection {
        let path: String = self
            .catalog()
            .query_row("SELECT path FROM partitions WHERE id=?1", [part], |r| r.get(0))
            .unwrap();
        Connection::open(self.dir.join(path)).unwrap()
    }

    /// The row key of `seq` in partition `part`.
    pub fn key(part: i64, seq: u64) -> i64 {
        (part << SEQ_BITS) + seq as i64
    }

    /// The segments of `stream`, newest partition first:
    /// (partition, tenant, stream, first, last).
    fn segments(&self, stream: &str, order: &str) -> Vec<Run> {
        self.catalog()
            .prepare(&format!(
                "SELECT s.partition_id, s.tenant, s.stream, s.first_seq, s.last_seq FROM segments s
                 JOIN partitions p ON p.id = s.partition_id WHERE s.stream = ?1 ORDER BY {order}"
            ))
            .unwrap()
            .query_map([stream], |r| {
                Ok(Run {
                    part: r.get(0)?,
                    tenant: r.get(1)?,
                    stream: r.get(2)?,
                    first: r.get::<_, i64>(3)? as u64,
                    last: r.get::<_, i64>(4)? as u64,
                })
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }
}

impl TamperTarget for SqliteTarget {
    fn open_with(&self, extra: &str) -> Vault {
        common::open(&self.dir, cfg(&format!("{TAMPER_POLICY}\n{extra}")))
    }

    fn live_run(&self, stream: &str) -> Run {
        for run in self.segments(stream, "p.start_us DESC") {
            let live: i64 = self
                .part_file(run.part)
                .query_row(
                    "SELECT count(*) FROM records WHERE seq BETWEEN ?1 AND ?2 AND state = 0",
                    [Self::key(run.part, run.first), Self::key(run.part, run.last)],
                    |r| r.get(0),
                )
                .unwrap();
            if live as u64 == run.last - run.first + 1 && run.last - run.first >= 15 {
                return run;
            }
        }
        panic!("no live run of 16 records in {stream}");
    }

    fn head_run(&self, stream: &str) -> Run {
        let (t, head): (String, i64) = self
            .catalog()
            .query_row(
                "SELECT tenant, head_seq FROM chains WHERE stream=?1 ORDER BY head_seq DESC LIMIT 1",
                [stream],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        self.segments(stream, "s.last_seq DESC")
            .into_iter()
            .find(|r| r.tenant == t && r.last == head as u64)
            .expect("the segment ending at the head")
    }

    fn read_record(&self, run: &Run, seq: u64) -> Option<RawRow> {
        self.part_file(run.part)
            .query_row(
                &format!("SELECT {ROW_COLUMNS} FROM records WHERE seq=?1"),
                [Self::key(run.part, seq)],
                raw_row,
            )
            .optional()
            .unwrap()
    }

    fn put_record(&self, run: &Run, r: &RawRow) {
        self.part_file(run.part)
            .execute(
                "INSERT OR REPLACE INTO records(seq,part,id,ts,received,scope,class,pseudonym,key_id,plain,body,state,prev,mac,redacted)
                 VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15)",
                params![
                    Self::key(run.part, r.seq),
                    run.part,
                    r.id,
                    r.ts_us,
                    r.received_us,
                    r.scope,
                    r.class,
                    r.pseudonym,
                    r.key_id,
                    r.plain,
                    r.body,
                    r.state,
                    r.prev,
                    r.mac,
                    r.redacted
                ],
            )
            .unwrap();
    }

    fn remove_records(&self, run: &Run, from: u64, to: u64) -> u64 {
        self.part_file(run.part)
            .execute(
                "DELETE FROM records WHERE seq BETWEEN ?1 AND ?2",
                [Self::key(run.part, from), Self::key(run.part, to)],
            )
            .unwrap() as u64
    }

    fn set_chain_head(&self, run: &Run, old: u64, seq: u64, hash: &[u8]) {
        let cat = self.catalog();
        cat.execute(
            "UPDATE chains SET head_seq=?3, head_hash=?4 WHERE tenant=?1 AND stream=?2",
            params![run.tenant, run.stream, seq as i64, hash],
        )
        .unwrap();
        cat.execute(
            "UPDATE segments SET last_seq=?3 WHERE tenant=?1 AND stream=?2 AND last_seq=?4",
            params![run.tenant, run.stream, seq as i64, old as i64],
        )
        .unwrap();
    }

    fn ledger_entry(&self, kind: &str) -> (u64, String) {
        self.catalog()
            .query_row(
                "SELECT seq, body FROM ledger WHERE kind=?1 ORDER BY seq LIMIT 1",
                [kind],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .unwrap()
    }

    fn edit_ledger(&self, seq: u64, body: Option<&str>) {
        let n = match body {
            Some(b) => self
                .catalog()
                .execute("UPDATE ledger SET body=?2 WHERE seq=?1", params![seq as i64, b]),
            None => self.catalog().execute("DELETE FROM ledger WHERE seq=?1", [seq as i64]),
        };
        assert_eq!(n.unwrap(), 1);
    }

    fn wrapped_key(&self, id: i64) -> Option<Vec<u8>> {
        self.catalog()
            .query_row("SELECT wrapped FROM data_keys WHERE id=?1", [id], |r| r.get(0))
            .unwrap()
    }

    fn edit_key(&self, id: i64, edit: KeyEdit) {
        let cat = self.catalog();
        let n = match edit {
            KeyEdit::Delete => cat.execute("DELETE FROM data_keys WHERE id=?1", [id]),
            KeyEdit::Destroy => cat.execute("UPDATE data_keys SET wrapped=NULL, destroyed_us=0 WHERE id=?1", [id]),
            KeyEdit::Wrapped(w) => cat.execute("UPDATE data_keys SET wrapped=?2 WHERE id=?1", params![id, w]),
        };
        assert_eq!(n.unwrap(), 1);
    }

    fn put_subject_filter(&self, part: i64, bits: &[u8], version: i64) -> bool {
        self.catalog()
            .execute(
                "UPDATE subject_filters SET bits=?2, version=?3 WHERE partition_id=?1",
                params![part, bits, version],
            )
            .unwrap()
            == 1
    }

    fn flip_merkle_nodes(&self) -> u64 {
        // SQLite has no byte operators: swap the first byte by hand.
        let cat = self.catalog();
        let nodes: Vec<(String, String, i64, i64, Vec<u8>)> = cat
            .prepare("SELECT tenant, stream, level, idx, hash FROM merkle_nodes")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (t, s, level, idx, mut hash) in nodes.iter().cloned() {
            hash[0] ^= 1;
            cat.execute(
                "UPDATE merkle_nodes SET hash=?5 WHERE tenant=?1 AND stream=?2 AND level=?3 AND idx=?4",
                params![t, s, level, idx, hash],
            )
            .unwrap();
        }
        nodes.len() as u64
    }
}
