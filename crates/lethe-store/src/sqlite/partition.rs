//! One partition file: the records of one (tenant, stream, period).

use std::path::Path;

use lethe_core::Classification;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::{NewRecord, Result, StoreError, StoredRecord};
use lethe_core::policy::GroupKey;

use super::db;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records(
  seq INTEGER PRIMARY KEY,
  id BLOB NOT NULL,
  ts INTEGER NOT NULL,
  received INTEGER NOT NULL,
  scope TEXT NOT NULL,
  class INTEGER NOT NULL,
  pseudonym BLOB,
  key_id INTEGER,
  plain TEXT NOT NULL,
  body BLOB,
  anonymized INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS records_id ON records(id);
CREATE INDEX IF NOT EXISTS records_ts ON records(ts);
CREATE INDEX IF NOT EXISTS records_subject ON records(pseudonym) WHERE pseudonym IS NOT NULL;
";

/// Opens (creating if needed) a partition file.
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
    c.execute_batch(
        "PRAGMA page_size=8192; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-1024; PRAGMA wal_autocheckpoint=0;",
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
            c.execute_batch(&format!("BEGIN; {SCHEMA} COMMIT;")).map_err(db)?;
        }
    }
    Ok(c)
}

/// Per-group deltas accumulated while inserting.
#[derive(Debug, Default, Clone, Copy)]
pub struct GroupDelta {
    pub records: u64,
    pub min_ts: i64,
    pub max_ts: i64,
}

/// Inserts records, assigning sequence numbers from `next_seq` to those whose
/// id is new. Returns the number inserted; runs inside the caller's transaction.
pub fn insert(
    c: &Connection,
    recs: &[&NewRecord],
    next_seq: &mut u64,
    deltas: &mut Vec<((String, u8), GroupDelta)>,
) -> Result<u64> {
    let mut st = c
        .prepare_cached(
            "INSERT INTO records(seq,id,ts,received,scope,class,pseudonym,key_id,plain,body)
             VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10) ON CONFLICT(id) DO NOTHING",
        )
        .map_err(db)?;
    let mut n = 0;
    for r in recs {
        let seq = *next_seq + 1;
        let changed = st
            .execute(params![
                seq as i64,
                &r.id[..],
                r.ts_us,
                r.received_us,
                r.group.scope,
                r.group.classification.code(),
                r.pseudonym.as_ref().map(|p| &p[..]),
                r.key_id,
                r.plain,
                r.body,
            ])
            .map_err(db)?;
        if changed == 1 {
            *next_seq = seq;
            n += 1;
            let class = r.group.classification.code();
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
    pub min_ts: i64,
    pub max_ts: i64,
}

/// Per-group statistics recomputed from the partition itself.
pub fn group_stats(c: &Connection) -> Result<Vec<GroupRow>> {
    let mut st = c
        .prepare("SELECT scope, class, count(*), sum(anonymized), min(ts), max(ts) FROM records GROUP BY scope, class")
        .map_err(db)?;
    let rows = st
        .query_map([], |r| {
            Ok(GroupRow {
                scope: r.get(0)?,
                class: r.get(1)?,
                records: r.get::<_, i64>(2)? as u64,
                anonymized: r.get::<_, i64>(3)? as u64,
                min_ts: r.get(4)?,
                max_ts: r.get(5)?,
            })
        })
        .map_err(db)?;
    rows.collect::<std::result::Result<_, _>>().map_err(db)
}

/// Removes rows left by a batch that never committed in the catalog.
pub fn truncate_after(c: &Connection, head_seq: u64) -> Result<u64> {
    Ok(c.execute("DELETE FROM records WHERE seq > ?1", [head_seq as i64])
        .map_err(db)? as u64)
}

/// Counts records of a group expired at `cutoff` (not yet anonymized, for anonymize).
pub fn count_expired(c: &Connection, scope: &str, class: Classification, cutoff: i64, anonymize: bool) -> Result<u64> {
    let sql = if anonymize {
        "SELECT count(*) FROM records WHERE scope=?1 AND class=?2 AND ts<?3 AND anonymized=0"
    } else {
        "SELECT count(*) FROM records WHERE scope=?1 AND class=?2 AND ts<?3"
    };
    let n: i64 = c
        .query_row(sql, params![scope, class.code(), cutoff], |r| r.get(0))
        .map_err(db)?;
    Ok(n as u64)
}

/// Deletes or anonymizes expired records of a group; returns how many.
pub fn apply_expired(c: &Connection, scope: &str, class: Classification, cutoff: i64, anonymize: bool) -> Result<u64> {
    let sql = if anonymize {
        "UPDATE records SET pseudonym=NULL, key_id=NULL, body=NULL, anonymized=1
         WHERE scope=?1 AND class=?2 AND ts<?3 AND anonymized=0"
    } else {
        "DELETE FROM records WHERE scope=?1 AND class=?2 AND ts<?3"
    };
    Ok(c.execute(sql, params![scope, class.code(), cutoff]).map_err(db)? as u64)
}

/// Whether the partition holds no records.
pub fn is_empty(c: &Connection) -> Result<bool> {
    Ok(c.query_row("SELECT 1 FROM records LIMIT 1", [], |_| Ok(()))
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

/// Reads matching records of a partition in event-time order.
pub fn select(c: &Connection, group: &GroupKey, f: &Filter<'_>) -> Result<Vec<StoredRecord>> {
    let mut sql = String::from(
        "SELECT seq,id,ts,received,scope,class,pseudonym,key_id,plain,body,anonymized FROM records WHERE 1=1",
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(s) = f.scope {
        sql.push_str(" AND scope=?");
        args.push(s.to_string().into());
    }
    if let Some(p) = f.pseudonym {
        sql.push_str(" AND pseudonym=?");
        args.push(p.to_vec().into());
    }
    if let Some(s) = f.since_us {
        sql.push_str(" AND ts>=?");
        args.push(s.into());
    }
    if let Some(u) = f.until_us {
        sql.push_str(" AND ts<?");
        args.push(u.into());
    }
    sql.push_str(" AND seq<=?");
    args.push((f.max_seq.min(i64::MAX as u64) as i64).into());
    sql.push_str(if f.ascending {
        " ORDER BY ts ASC, seq ASC"
    } else {
        " ORDER BY ts DESC, seq DESC"
    });
    if let Some(l) = f.limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    let mut st = c.prepare_cached(&sql).map_err(db)?;
    let rows = st
        .query_map(rusqlite::params_from_iter(args), |r| {
            let id: Vec<u8> = r.get(1)?;
            let pseudo: Option<Vec<u8>> = r.get(6)?;
            let class: u8 = r.get(5)?;
            Ok((
                r.get::<_, i64>(0)?,
                id,
                r.get(2)?,
                r.get(3)?,
                r.get::<_, String>(4)?,
                class,
                pseudo,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get::<_, i64>(10)?,
            ))
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, id, ts, received, scope, class, pseudo, key_id, plain, body, anon) = row.map_err(db)?;
        let bad = || StoreError::Corrupt(format!("record {seq} of {}/{}", group.tenant, group.stream));
        out.push(StoredRecord {
            seq: seq as u64,
            record: NewRecord {
                id: id.as_slice().try_into().map_err(|_| bad())?,
                group: GroupKey {
                    tenant: group.tenant.clone(),
                    stream: group.stream.clone(),
                    scope,
                    classification: Classification::from_code(class).ok_or_else(bad)?,
                },
                ts_us: ts,
                received_us: received,
                pseudonym: match pseudo {
                    Some(p) => Some(p.as_slice().try_into().map_err(|_| bad())?),
                    None => None,
                },
                key_id,
                plain,
                body,
            },
            anonymized: anon != 0,
        });
    }
    Ok(out)
}
