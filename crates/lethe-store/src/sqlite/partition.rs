//! One partition file: the records of every (tenant, stream, period)
//! partition the catalog places in it.
//!
//! A file holds many partitions — all of a stream's records of one period
//! whatever their tenant — so the number of files, syncs and half-empty
//! pages does not grow with the number of tenants. Each row carries its
//! partition (`part`, the catalog's id) and is keyed by
//! `part << SEQ_BITS | seq`, so one partition's rows are one contiguous
//! range of the table and every function below works on one partition:
//! a tenant's query, removal or scan never reads another partition's rows.

use std::path::Path;

use lethe_core::integrity::{Digests, RecordMac};
use lethe_core::Classification;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::row::{RawRow, ANONYMIZED, DELETED};
use crate::{NewRecord, Result, StoreError, StoredRecord};
use lethe_core::hold::HoldScope;
use lethe_core::policy::GroupKey;

use super::db;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records(
  seq INTEGER PRIMARY KEY,
  part INTEGER NOT NULL,
  id BLOB NOT NULL,
  ts INTEGER NOT NULL,
  received INTEGER NOT NULL,
  scope TEXT NOT NULL,
  class INTEGER NOT NULL,
  pseudonym BLOB,
  key_id INTEGER,
  plain TEXT NOT NULL,
  body BLOB,
  state INTEGER NOT NULL DEFAULT 0,
  prev BLOB NOT NULL,
  mac BLOB NOT NULL,
  redacted BLOB
);
CREATE UNIQUE INDEX IF NOT EXISTS records_id ON records(part, id);
CREATE INDEX IF NOT EXISTS records_ts ON records(part, ts);
CREATE INDEX IF NOT EXISTS records_subject_blocks ON records((seq >> 10), pseudonym) WHERE pseudonym IS NOT NULL;
";

/// The subject index is keyed by block of [`SUBJECT_BLOCK`] row keys, then
/// pseudonym: a batch's new entries land in the newest block of each
/// partition instead of all over the partition's index, so a commit
/// rewrites a few index pages per partition, not nearly all of them (a
/// random pseudonym per record touched one index page per record: 10 GB
/// written to ingest 1M records of 50 tenants, 6.6 GB with blocks). A
/// subject's rows are found with one seek per block (see
/// [`SUBJECT_BLOCKS_IN`]). Keep in step with the `>> 10` in the schema.
pub const SUBJECT_BLOCK: i64 = 1 << 10;

/// The index definitions of an earlier format this version replaces on
/// open (see `schema::convert`).
pub const SUPERSEDED_INDEXES: &str = "DROP INDEX IF EXISTS records_subject;";

/// `(seq >> 10) IN` every subject-index block from `?lo` to `?hi`: one
/// index seek per block for a pseudonym (`{lo}`/`{hi}` are replaced by the
/// statement's parameter numbers).
const SUBJECT_BLOCKS_IN: &str =
    "(seq >> 10) IN (WITH RECURSIVE b(x) AS (SELECT {lo} UNION ALL SELECT x + 1 FROM b WHERE x < {hi}) SELECT x FROM b)";

/// [`SUBJECT_BLOCKS_IN`] with parameters `lo` and `hi`.
fn subject_blocks_in(lo: &str, hi: &str) -> String {
    SUBJECT_BLOCKS_IN.replace("{lo}", lo).replace("{hi}", hi)
}

/// The first and last subject-index block of `part` up to row key `max`.
fn blocks(part: i64, max: i64) -> [i64; 2] {
    [base(part) / SUBJECT_BLOCK, max.max(base(part)) / SUBJECT_BLOCK]
}

/// Bits of a row key that hold the chain sequence number (68.7 billion
/// records per chain); the bits above hold the partition (134 million
/// partitions over a store's life).
pub const SEQ_BITS: u32 = 36;

/// The largest sequence number a row key can hold.
pub const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;
const _: () = assert!(
    MAX_SEQ == crate::chain::MAX_SEQ,
    "row keys hold every sequence number a chain reaches"
);

/// A partition's first row key: its rows are keyed `base + seq`.
pub fn base(part: i64) -> i64 {
    part << SEQ_BITS
}

/// The row key of `seq` in `part`, clamped into the partition's range.
fn key(part: i64, seq: u64) -> i64 {
    base(part) + seq.min(MAX_SEQ) as i64
}

/// The page cache of a partition connection in use (1 MB).
pub const FULL_CACHE: &str = "PRAGMA cache_size=-1024";

/// The page cache of an idle partition connection: released, and kept small.
pub const IDLE_CACHE: &str = "PRAGMA cache_size=-64; PRAGMA shrink_memory";

/// Opens (creating if needed) a partition file.
///
/// Commits do not sync (`synchronous=NORMAL`: in WAL mode only checkpoints
/// do): every writer makes the partitions it wrote durable with one
/// `sync_partitions` before the catalog commit that relies on them, so a
/// batch touching a hundred partitions costs one sync, not a hundred.
pub fn open(path: &Path, create: bool) -> Result<Connection> {
    if create {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        }
    }
    let flags = if create {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let c = Connection::open_with_flags(path, flags).map_err(db)?;
    no_lookaside(&c);
    c.execute_batch(
        "PRAGMA page_size=8192; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-1024;
         PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=4194304;",
    )
    .map_err(db)?;
    // Only a file without the table needs the schema (a new one, or one a
    // crash left right after creating it); reopening an existing partition on
    // an LRU miss skips that write transaction.
    if create {
        let has_table = c
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='records'",
                [],
                |_| Ok(()),
            )
            .optional()
            .map_err(db)?
            .is_some();
        if !has_table {
            // A crash here leaves a file without its table (tested).
            crate::crashpoint::hit("partition.before_schema");
            c.execute_batch(&format!("BEGIN; {SCHEMA} COMMIT;")).map_err(db)?;
        }
    }
    Ok(c)
}

/// Makes closing `c` skip the checkpoint SQLite runs when the last
/// connection to a WAL database closes (for files about to be removed).
pub fn no_checkpoint_on_close(c: &Connection) {
    // SAFETY: the handle is valid while `c` lives; the option only affects its close.
    unsafe {
        rusqlite::ffi::sqlite3_db_config(
            c.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            1 as std::ffi::c_int,
            std::ptr::null_mut::<std::ffi::c_int>(),
        );
    }
}

/// Opens a partition file read-only, for a one-off read of a partition
/// that is not among the open ones: closing it neither checkpoints nor
/// writes, and it evicts no open writer connection.
pub fn open_reader(path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(db)?;
    no_lookaside(&c);
    Ok(c)
}

/// Turns off a connection's lookaside allocator (~140 KB each): hundreds or
/// thousands of partition connections stay open, and the allocator is fast
/// without it.
fn no_lookaside(c: &Connection) {
    // SAFETY: the handle is valid while `c` lives; a refusal (lookaside
    // already in use) leaves the default, which is harmless.
    unsafe {
        rusqlite::ffi::sqlite3_db_config(
            c.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            0 as std::ffi::c_int,
            0 as std::ffi::c_int,
        );
    }
}

/// Per-group deltas accumulated while inserting.
#[derive(Debug, Default, Clone, Copy)]
pub struct GroupDelta {
    pub records: u64,
    pub min_ts: i64,
    pub max_ts: i64,
}

pub use crate::chain::ChainState;

/// Inserts records, assigning each new id the next sequence number of
/// `chain` and sealing it (previous chain hash, MAC of its leaf). Returns
/// the number inserted and calls `duplicate` with the position in `recs` of
/// each record whose id was already stored; runs inside the caller's
/// transaction. (The third member of each record is the caller's and
/// ignored.)
#[allow(clippy::too_many_arguments)]
pub fn insert(
    c: &Connection,
    part: i64,
    tenant: &str,
    stream: &str,
    recs: &[(&NewRecord, &Digests, usize)],
    chain: &mut ChainState,
    mac: &RecordMac,
    deltas: &mut Vec<((String, u8), GroupDelta)>,
    duplicate: &mut dyn FnMut(usize),
) -> Result<u64> {
    let mut st = c
        .prepare_cached(
            "INSERT INTO records(seq,id,ts,received,scope,class,pseudonym,key_id,plain,body,prev,mac,part)
             VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13) ON CONFLICT(part,id) DO NOTHING",
        )
        .map_err(db)?;
    let mut n = 0;
    let mut buf = Vec::with_capacity(256);
    for (at, (r, d, _)) in recs.iter().enumerate() {
        let sealed = chain.seal(tenant, stream, r, d, mac, &mut buf)?;
        let class = r.group.classification.code();
        let changed = st
            .execute(params![
                key(part, sealed.seq),
                &r.id[..],
                r.ts_us,
                r.received_us,
                r.group.scope,
                class,
                r.pseudonym.as_ref().map(|p| &p[..]),
                r.key_id,
                r.plain,
                r.body,
                &sealed.prev[..],
                &sealed.mac[..],
                part,
            ])
            .map_err(db)?;
        if changed == 1 {
            chain.advance(&sealed);
            n += 1;
            // Few groups per partition: a linear search beats hashing, and
            // the scope is only cloned for a new group.
            let d = match deltas.iter_mut().find(|((s, c), _)| *c == class && *s == r.group.scope) {
                Some((_, d)) => d,
                None => {
                    deltas.push((
                        (r.group.scope.clone(), class),
                        GroupDelta {
                            records: 0,
                            min_ts: i64::MAX,
                            max_ts: i64::MIN,
                        },
                    ));
                    &mut deltas.last_mut().expect("just pushed").1
                }
            };
            d.records += 1;
            d.min_ts = d.min_ts.min(r.ts_us);
            d.max_ts = d.max_ts.max(r.ts_us);
        } else {
            duplicate(at);
        }
    }
    Ok(n)
}

/// One group's statistics within a partition.
pub struct GroupRow {
    pub scope: String,
    pub class: u8,
    pub records: u64,
    pub anonymized: u64,
    pub deleted: u64,
    pub min_ts: Option<i64>,
    pub max_ts: Option<i64>,
}

/// Per-group statistics recomputed from the partition itself.
pub fn group_stats(c: &Connection, part: i64) -> Result<Vec<GroupRow>> {
    let mut st = c
        .prepare(
            "SELECT scope, class, sum(state<2), sum(state=1), sum(state=2), min(ts) FILTER (WHERE state<2),
                    max(ts) FILTER (WHERE state<2) FROM records WHERE part=?1 GROUP BY scope, class",
        )
        .map_err(db)?;
    let rows = st
        .query_map([part], |r| {
            Ok(GroupRow {
                scope: r.get(0)?,
                class: r.get(1)?,
                records: r.get::<_, i64>(2)? as u64,
                anonymized: r.get::<_, i64>(3)? as u64,
                deleted: r.get::<_, i64>(4)? as u64,
                min_ts: r.get(5)?,
                max_ts: r.get(6)?,
            })
        })
        .map_err(db)?;
    rows.collect::<std::result::Result<_, _>>().map_err(db)
}

/// Whether the file has its `records` table (a file a crash left right
/// after creating it has none).
pub fn has_table(c: &Connection) -> Result<bool> {
    Ok(c.query_row(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='records'",
        [],
        |_| Ok(()),
    )
    .optional()
    .map_err(db)?
    .is_some())
}

/// Removes rows left by a batch that never committed in the catalog.
pub fn truncate_after(c: &Connection, part: i64, head_seq: u64) -> Result<u64> {
    Ok(c.execute(
        "DELETE FROM records WHERE seq > ?1 AND seq <= ?2",
        [key(part, head_seq), key(part, MAX_SEQ)],
    )
    .map_err(db)? as u64)
}

/// Removes every row of a partition (one dropped while other partitions
/// still live in its file).
pub fn remove_part(c: &Connection, part: i64) -> Result<u64> {
    Ok(c.execute(
        "DELETE FROM records WHERE seq BETWEEN ?1 AND ?2",
        [key(part, 0), key(part, MAX_SEQ)],
    )
    .map_err(db)? as u64)
}

/// Appends `seq` to inclusive ranges kept in ascending order.
fn push_seq(out: &mut Vec<[u64; 2]>, seq: u64) {
    match out.last_mut() {
        Some(r) if r[1] + 1 == seq => r[1] = seq,
        _ => out.push([seq, seq]),
    }
}

/// Which of a group's records [`expired_seqs`] looks for.
pub struct Expired<'a> {
    /// Tenant (for holds).
    pub tenant: &'a str,
    /// The group's scope.
    pub scope: &'a str,
    /// The group's classification.
    pub class: Classification,
    /// Records with event time before this.
    pub cutoff: i64,
    /// Anonymize (only live records) rather than delete.
    pub anonymize: bool,
    /// The chain's committed head.
    pub max_seq: u64,
}

/// Sequence numbers of a group's records expired at the cutoff that the
/// action still has to touch, as inclusive ranges in order, leaving out
/// records one of `holds` covers; returns them and how many were held.
pub fn expired_seqs(c: &Connection, part: i64, e: &Expired<'_>, holds: &[&HoldScope]) -> Result<(Vec<[u64; 2]>, u64)> {
    let Expired {
        tenant,
        scope,
        class,
        cutoff,
        anonymize,
        max_seq,
    } = *e;
    // Committed rows only: rows past the chain head belong to a batch
    // still being written (or one a crash left behind).
    let sql = if anonymize {
        "SELECT seq - ?5, pseudonym, ts FROM records
         WHERE part=?6 AND scope=?1 AND class=?2 AND ts<?3 AND state=0 AND seq<=?4 ORDER BY seq"
    } else {
        "SELECT seq - ?5, pseudonym, ts FROM records
         WHERE part=?6 AND scope=?1 AND class=?2 AND ts<?3 AND state<2 AND seq<=?4 ORDER BY seq"
    };
    let mut st = c.prepare_cached(sql).map_err(db)?;
    let mut rows = st
        .query(params![
            scope,
            class.code(),
            cutoff,
            key(part, max_seq),
            base(part),
            part
        ])
        .map_err(db)?;
    let mut out: Vec<[u64; 2]> = Vec::new();
    let mut held = 0;
    while let Some(r) = rows.next().map_err(db)? {
        let seq = r.get::<_, i64>(0).map_err(db)? as u64;
        if !holds.is_empty() {
            let p: Option<[u8; 32]> = r
                .get::<_, Option<Vec<u8>>>(1)
                .map_err(db)?
                .and_then(|v| v.try_into().ok());
            let ts: i64 = r.get(2).map_err(db)?;
            if holds.iter().any(|h| h.covers(tenant, p.as_ref(), scope, ts)) {
                held += 1;
                continue;
            }
        }
        push_seq(&mut out, seq);
    }
    Ok((out, held))
}

/// One row a purge selects.
#[derive(Debug, Clone)]
pub struct SelectedRow {
    pub seq: u64,
    pub scope: String,
    pub ts: i64,
    pub pseudonym: Option<[u8; 32]>,
    pub bytes: u64,
}

/// A [`SelectedRow`] from `seq, scope, ts, pseudonym, bytes`.
fn selected_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SelectedRow> {
    Ok(SelectedRow {
        seq: r.get::<_, i64>(0)? as u64,
        scope: r.get(1)?,
        ts: r.get(2)?,
        pseudonym: r.get::<_, Option<Vec<u8>>>(3)?.and_then(|v| v.try_into().ok()),
        bytes: r.get::<_, i64>(4)? as u64,
    })
}

/// What [`select_rows`] matches besides the subject: committed rows only, not
/// yet in the state the action leaves.
pub struct RowFilter<'a> {
    pub scope: Option<&'a str>,
    pub since_us: i64,
    pub until_us: i64,
    pub max_seq: u64,
    pub anonymize: bool,
}

/// Rows a purge selects: those of `pseudonym` (through the subject index),
/// or every row when `None`, that the filter matches, in sequence order.
pub fn select_rows(
    c: &Connection,
    part: i64,
    pseudonym: Option<&[u8; 32]>,
    f: &RowFilter<'_>,
) -> Result<Vec<SelectedRow>> {
    let sql = match pseudonym {
        Some(_) => format!(
            "SELECT {SELECTED} FROM records INDEXED BY records_subject_blocks
             WHERE pseudonym = ?8 AND {} AND {MATCHES} ORDER BY seq",
            subject_blocks_in("?9", "?10")
        ),
        None => format!("SELECT {SELECTED} FROM records WHERE {MATCHES} ORDER BY seq"),
    };
    let mut st = c.prepare_cached(&sql).map_err(db)?;
    let [target, max] = f.bounds(part);
    let rows = match pseudonym {
        Some(p) => {
            let [lo, hi] = blocks(part, max);
            st.query_map(
                params![
                    target,
                    max,
                    f.scope,
                    f.since_us,
                    f.until_us,
                    base(part),
                    part,
                    &p[..],
                    lo,
                    hi
                ],
                selected_row,
            )
        }
        None => st.query_map(
            params![target, max, f.scope, f.since_us, f.until_us, base(part), part],
            selected_row,
        ),
    }
    .map_err(db)?;
    rows.collect::<std::result::Result<_, _>>().map_err(db)
}

/// The columns [`selected_row`] reads.
const SELECTED: &str = "seq - ?6, scope, ts, pseudonym, length(plain) + ifnull(length(body), 0)";

/// What a [`RowFilter`] matches, with `?1` the state the action leaves,
/// `?2` the committed head's row key, `?3` scope, `?4`/`?5` the time
/// range, `?6` the partition's base key and `?7` the partition.
const MATCHES: &str =
    "part = ?7 AND seq >= ?6 AND state < ?1 AND seq <= ?2 AND (?3 IS NULL OR scope = ?3) AND ts >= ?4 AND ts < ?5";

impl RowFilter<'_> {
    /// `[state the action leaves, committed head's row key]` as SQL integers.
    fn bounds(&self, part: i64) -> [i64; 2] {
        let target = if self.anonymize { ANONYMIZED } else { DELETED };
        [target, key(part, self.max_seq)]
    }
}

/// Rows of any of `subjects` that the filter matches, in sequence order:
/// for many subjects at once, one pass over the subject index (which holds
/// the sequence numbers) instead of one lookup per subject, then the
/// matching rows by sequence number.
pub fn select_rows_of(
    c: &Connection,
    part: i64,
    subjects: &std::collections::HashSet<[u8; 32]>,
    f: &RowFilter<'_>,
) -> Result<Vec<SelectedRow>> {
    let [target, max] = f.bounds(part);
    let mut seqs = Vec::new();
    {
        let mut st = c
            .prepare_cached(
                // The subject index holds every (pseudonym, seq): without the
                // hint the planner may read the whole table by rowid instead.
                "SELECT pseudonym, seq FROM records INDEXED BY records_subject_blocks
             WHERE (seq >> 10) BETWEEN ?3 AND ?4 AND part = ?2 AND pseudonym IS NOT NULL AND seq <= ?1",
            )
            .map_err(db)?;
        let [lo, hi] = blocks(part, max);
        let mut rows = st.query([max, part, lo, hi]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let p = r.get_ref(0).map_err(db)?.as_blob().map_err(|e| db(e.into()))?;
            if let Ok(p) = <&[u8; 32]>::try_from(p) {
                if subjects.contains(p) {
                    seqs.push(r.get::<_, i64>(1).map_err(db)?);
                }
            }
        }
    }
    seqs.sort_unstable();
    let mut st = c
        .prepare_cached(&format!("SELECT {SELECTED} FROM records WHERE seq = ?8 AND {MATCHES}"))
        .map_err(db)?;
    let mut out = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let row = st
            .query_row(
                params![target, max, f.scope, f.since_us, f.until_us, base(part), part, seq],
                selected_row,
            )
            .optional()
            .map_err(db)?;
        out.extend(row);
    }
    Ok(out)
}

/// Every distinct pseudonym stored in the partition (live rows).
pub fn pseudonyms(c: &Connection, part: i64) -> Result<Vec<[u8; 32]>> {
    let mut st = c
        .prepare_cached(
            "SELECT DISTINCT pseudonym FROM records INDEXED BY records_subject_blocks
             WHERE (seq >> 10) BETWEEN ?2 AND ?3 AND part=?1 AND pseudonym IS NOT NULL",
        )
        .map_err(db)?;
    let [lo, hi] = blocks(part, key(part, MAX_SEQ));
    let rows = st.query_map([part, lo, hi], |r| r.get::<_, Vec<u8>>(0)).map_err(db)?;
    let mut out = Vec::new();
    for v in rows {
        if let Ok(p) = v.map_err(db)?.try_into() {
            out.push(p);
        }
    }
    Ok(out)
}

/// Oldest and newest event time of a group's live (not deleted) records,
/// through the time index.
pub fn live_bounds(c: &Connection, part: i64, scope: &str, class: u8) -> Result<(Option<i64>, Option<i64>)> {
    let one = |order: &str| -> Result<Option<i64>> {
        c.prepare_cached(&format!(
            "SELECT ts FROM records WHERE part=?3 AND scope=?1 AND class=?2 AND state<2 ORDER BY part {order}, ts {order} LIMIT 1"
        ))
        .map_err(db)?
        .query_row(params![scope, class, part], |r| r.get(0))
        .optional()
        .map_err(db)
    };
    Ok((one("ASC")?, one("DESC")?))
}

/// A row [`redact`] changed: its group, state before and event time.
#[derive(Debug, Clone)]
pub struct Changed {
    pub scope: String,
    pub class: u8,
    pub was: i64,
    pub ts: i64,
    /// Tombstoned (else anonymized).
    pub deleted: bool,
}

/// Tombstones (delete) or anonymizes the listed records that are not yet
/// in that state, keeping the digests of what goes; returns how many
/// changed. Runs inside the caller's transaction.
pub fn redact(
    c: &Connection,
    part: i64,
    seqs: &[[u64; 2]],
    anonymize: bool,
    changed: &mut Vec<Changed>,
) -> Result<u64> {
    let mut read = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM records WHERE seq BETWEEN ?1 AND ?2 AND state < ?3 ORDER BY seq"
        ))
        .map_err(db)?;
    let mut anon = c
        .prepare_cached("UPDATE records SET pseudonym=NULL, key_id=NULL, body=NULL, state=1, redacted=?2 WHERE seq=?1")
        .map_err(db)?;
    let mut del = c
        .prepare_cached(
            "UPDATE records SET pseudonym=NULL, key_id=NULL, body=NULL, plain='', state=2, redacted=?2 WHERE seq=?1",
        )
        .map_err(db)?;
    let target = if anonymize { ANONYMIZED } else { DELETED };
    let mut n = 0;
    for r in seqs {
        let rows: Vec<RawRow> = read
            .query_map(params![key(part, r[0]), key(part, r[1]), target], raw_row)
            .map_err(db)?
            .collect::<std::result::Result<_, _>>()
            .map_err(db)?;
        for row in rows {
            let d = row
                .digests()
                .map_err(|e| StoreError::Corrupt(format!("record {}: {e}", row.seq)))?;
            changed.push(Changed {
                scope: row.scope.clone(),
                class: row.class,
                was: row.state,
                ts: row.ts_us,
                deleted: !anonymize,
            });
            if anonymize {
                anon.execute(params![key(part, row.seq), &d.personal[..]]).map_err(db)?;
            } else {
                let mut kept = Vec::with_capacity(64);
                kept.extend_from_slice(&d.plain);
                kept.extend_from_slice(&d.personal);
                del.execute(params![key(part, row.seq), kept]).map_err(db)?;
            }
            n += 1;
        }
    }
    Ok(n)
}

/// Every column of a partition row, in [`raw_row`] order.
/// The first column is the row's sequence number within its partition.
pub const COLUMNS: &str =
    "seq & 68719476735,id,ts,received,scope,class,pseudonym,key_id,plain,body,state,prev,mac,redacted";

/// Reads a partition row selected with [`COLUMNS`] (also for tools and
/// tests that read partition files directly). Tolerant of what an edit on
/// disk may leave (a column of another type, text that is not UTF-8): such a
/// row is read as it can be — its seal then fails and it is reported — so
/// that one damaged row never stops a read or `verify`.
pub fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    use rusqlite::types::ValueRef;
    let bytes = |i: usize| -> rusqlite::Result<Vec<u8>> { Ok(super::bytes_of(r.get_ref(i)?)) };
    let opt_bytes = |i: usize| -> rusqlite::Result<Option<Vec<u8>>> {
        Ok(match r.get_ref(i)? {
            ValueRef::Null => None,
            _ => Some(bytes(i)?),
        })
    };
    let text = |i: usize| -> rusqlite::Result<String> { Ok(String::from_utf8_lossy(&bytes(i)?).into_owned()) };
    let int = |i: usize| -> rusqlite::Result<i64> {
        Ok(match r.get_ref(i)? {
            ValueRef::Integer(n) => n,
            // Not an integer: a value no record has, so its header fails.
            _ => i64::MIN,
        })
    };
    Ok(RawRow {
        seq: int(0)? as u64,
        id: bytes(1)?,
        ts_us: int(2)?,
        received_us: int(3)?,
        scope: text(4)?,
        class: u8::try_from(int(5)?).unwrap_or(u8::MAX),
        pseudonym: opt_bytes(6)?,
        key_id: match r.get_ref(7)? {
            ValueRef::Null => None,
            _ => Some(int(7)?),
        },
        plain: text(8)?,
        body: opt_bytes(9)?,
        state: int(10)?,
        prev: bytes(11)?,
        mac: bytes(12)?,
        redacted: opt_bytes(13)?,
    })
}

/// Visits rows `first..=last` in sequence order.
pub fn scan(c: &Connection, part: i64, first: u64, last: u64, visit: &mut dyn FnMut(RawRow)) -> Result<()> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq"
        ))
        .map_err(db)?;
    let rows = st
        .query_map(params![key(part, first), key(part, last)], raw_row)
        .map_err(db)?;
    for r in rows {
        visit(r.map_err(db)?);
    }
    Ok(())
}

/// Rows `first..=last` in sequence order, at most `limit` of them.
pub fn scan_chunk(c: &Connection, part: i64, first: u64, last: u64, limit: usize) -> Result<Vec<RawRow>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq LIMIT ?3"
        ))
        .map_err(db)?;
    let rows = st
        .query_map(params![key(part, first), key(part, last), limit as i64], raw_row)
        .map_err(db)?;
    rows.map(|r| r.map_err(db)).collect()
}

/// Opens a partition file as immutable: no locks, no `-shm` or `-wal`
/// file created or removed. SQLite then assumes the file never changes, so
/// the caller must check that it did not (see the store's reader).
pub fn open_immutable(path: &Path) -> Result<Connection> {
    let mut uri = String::from("file:");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    let c = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db)?;
    // Readers keep hundreds of these open (see `no_lookaside`).
    no_lookaside(&c);
    Ok(c)
}

/// Rows in the file, tombstones included.
pub fn row_count(c: &Connection, part: i64) -> Result<u64> {
    Ok(c.query_row(
        "SELECT count(*) FROM records WHERE seq BETWEEN ?1 AND ?2",
        [key(part, 0), key(part, MAX_SEQ)],
        |r| r.get::<_, i64>(0),
    )
    .map_err(db)? as u64)
}

/// Sequence numbers of rows outside the given inclusive ranges.
pub fn strays(c: &Connection, part: i64, ranges: &[(u64, u64)]) -> Result<Vec<u64>> {
    let mut st = c
        .prepare("SELECT seq - ?1 FROM records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq")
        .map_err(db)?;
    let rows = st
        .query_map([key(part, 0), key(part, MAX_SEQ)], |r| r.get::<_, i64>(0))
        .map_err(db)?;
    let mut out = Vec::new();
    for seq in rows {
        let seq = seq.map_err(db)? as u64;
        if !ranges.iter().any(|&(a, b)| a <= seq && seq <= b) {
            out.push(seq);
        }
    }
    Ok(out)
}

/// Whether the partition holds no rows (tombstones count).
pub fn is_empty(c: &Connection, part: i64) -> Result<bool> {
    Ok(c.query_row(
        "SELECT 1 FROM records WHERE seq BETWEEN ?1 AND ?2 LIMIT 1",
        [key(part, 0), key(part, MAX_SEQ)],
        |_| Ok(()),
    )
    .optional()
    .map_err(db)?
    .is_none())
}

/// Filters for [`select`].
pub struct Filter<'a> {
    pub scope: Option<&'a str>,
    pub pseudonym: Option<&'a [u8; 32]>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub ascending: bool,
    pub limit: Option<usize>,
    /// Only rows up to the committed chain head: rows past it belong to a
    /// batch still being written (or one a crash left behind).
    pub max_seq: u64,
}

/// Appends the usual record filters (scope, subject, event-time range) to
/// a `WHERE` clause as ` AND …` conditions, with their arguments.
pub fn push_filters(
    sql: &mut String,
    args: &mut Vec<rusqlite::types::Value>,
    scope: Option<&str>,
    pseudonym: Option<&[u8; 32]>,
    since_us: Option<i64>,
    until_us: Option<i64>,
) {
    if let Some(s) = scope {
        sql.push_str(" AND scope=?");
        args.push(s.to_string().into());
    }
    if let Some(p) = pseudonym {
        sql.push_str(" AND pseudonym=?");
        args.push(p.to_vec().into());
    }
    if let Some(s) = since_us {
        sql.push_str(" AND ts>=?");
        args.push(s.into());
    }
    if let Some(u) = until_us {
        sql.push_str(" AND ts<?");
        args.push(u.into());
    }
}

/// Reads matching records of a partition in event-time order.
pub fn select(c: &Connection, part: i64, group: &GroupKey, f: &Filter<'_>) -> Result<Vec<StoredRecord>> {
    // A subject's rows through the subject index, block by block.
    let index = if f.pseudonym.is_some() {
        " INDEXED BY records_subject_blocks"
    } else {
        ""
    };
    let mut sql = format!("SELECT {COLUMNS} FROM records{index} WHERE part=? AND state<2");
    let mut args: Vec<rusqlite::types::Value> = vec![part.into()];
    if f.pseudonym.is_some() {
        sql.push_str(" AND ");
        sql.push_str(&subject_blocks_in("?", "?"));
        let [lo, hi] = blocks(part, key(part, f.max_seq));
        args.extend([lo.into(), hi.into()]);
    }
    push_filters(&mut sql, &mut args, f.scope, f.pseudonym, f.since_us, f.until_us);
    sql.push_str(" AND seq<=?");
    args.push(key(part, f.max_seq).into());
    sql.push_str(if f.ascending {
        " ORDER BY part ASC, ts ASC, seq ASC"
    } else {
        " ORDER BY part DESC, ts DESC, seq DESC"
    });
    if let Some(l) = f.limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    let mut st = c.prepare_cached(&sql).map_err(db)?;
    let rows = st.query_map(rusqlite::params_from_iter(args), raw_row).map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(db)?.into_stored(&group.tenant, &group.stream));
    }
    Ok(out)
}
