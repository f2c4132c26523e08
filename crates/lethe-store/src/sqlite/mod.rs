//! The embedded backend: a SQLite catalog plus one SQLite file per (tenant,
//! stream, period) partition, so that an expired partition is removed by
//! unlinking its file and its disk space comes back at once.
//!
//! Crash safety rests on two catalog states. Before any partition file is
//! written, the partitions a write will touch are marked `dirty` in the
//! catalog (one durable commit); the catalog's chain heads and group counts are
//! updated and the marks cleared only after every partition commit. On open,
//! and before every write, dirty partitions are repaired: rows past the
//! committed chain head (from a batch that never finished) are removed and the
//! partition's counts are recomputed from the file. Partitions being removed
//! whole are marked `dropping` first, and a dropping partition is always
//! finished off.

mod checkpoint;
mod filter;
mod partition;
mod restored;

pub use partition::{raw_row, COLUMNS as ROW_COLUMNS};

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use lethe_core::hold::HoldScope;
use lethe_core::policy::{Action, GroupKey};
use lethe_core::{Classification, StreamId, TenantId};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use lethe_core::integrity::{self, RecordMac};
use lethe_core::merkle::{self, Frontier, Hash};

use crate::crashpoint;
use crate::row::{self, RawRow};
use crate::{
    AppendReport, Applied, Batch, CaptureDrop, ChainHead, ChainRemoval, DroppedPartition, GroupStats, HoldRecord,
    KeyId, LedgerEntry, NewRecord, PartGroupRef, Progress, RecordQuery, Removal, Result, RetentionEffect,
    RetentionTarget, RowReader, RowRemoval, RunRecord, Segment, SegmentAt, Selected, SelectedGroup, Selection, Store,
    StoreError, StoredKey, StoredRecord,
};
use filter::SubjectFilter;

/// Subject filters kept in memory at once (~8 KB each); past this the
/// cache starts over.
const CACHED_FILTERS: usize = 4096;

pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

const CATALOG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chains(tenant TEXT NOT NULL, stream TEXT NOT NULL, head_seq INTEGER NOT NULL,
  head_hash BLOB NOT NULL, frontier BLOB NOT NULL, sealed INTEGER NOT NULL DEFAULT 0,
  sealed_us INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(tenant, stream));
CREATE TABLE IF NOT EXISTS segments(tenant TEXT NOT NULL, stream TEXT NOT NULL, first_seq INTEGER NOT NULL,
  last_seq INTEGER NOT NULL, partition_id INTEGER NOT NULL, prev BLOB NOT NULL, chain BLOB NOT NULL,
  PRIMARY KEY(tenant, stream, first_seq));
CREATE INDEX IF NOT EXISTS segments_partition ON segments(partition_id);
CREATE TABLE IF NOT EXISTS merkle_nodes(tenant TEXT NOT NULL, stream TEXT NOT NULL, level INTEGER NOT NULL,
  idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY(tenant, stream, level, idx));
CREATE TABLE IF NOT EXISTS partitions(id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, stream TEXT NOT NULL,
  start_us INTEGER NOT NULL, end_us INTEGER NOT NULL, path TEXT NOT NULL, state INTEGER NOT NULL,
  bytes INTEGER NOT NULL DEFAULT 0, UNIQUE(tenant, stream, start_us));
CREATE INDEX IF NOT EXISTS partitions_state ON partitions(state) WHERE state != 0;
CREATE TABLE IF NOT EXISTS partition_groups(partition_id INTEGER NOT NULL, scope TEXT NOT NULL,
  class INTEGER NOT NULL, records INTEGER NOT NULL, anonymized INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0, min_ts INTEGER, max_ts INTEGER, PRIMARY KEY(partition_id, scope, class));
CREATE TABLE IF NOT EXISTS capture_drops(tenant TEXT NOT NULL, stream TEXT NOT NULL, scope TEXT NOT NULL,
  class INTEGER NOT NULL, count INTEGER NOT NULL, PRIMARY KEY(tenant, stream, scope, class));
CREATE TABLE IF NOT EXISTS tenant_keys(tenant TEXT PRIMARY KEY, wrapped BLOB NOT NULL, created_us INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS data_keys(id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, ref BLOB NOT NULL,
  wrapped BLOB, created_us INTEGER NOT NULL, destroyed_us INTEGER, UNIQUE(tenant, ref));
CREATE TABLE IF NOT EXISTS policy_versions(id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE,
  created_us INTEGER NOT NULL, entered INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS ledger(seq INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL, actor TEXT NOT NULL,
  kind TEXT NOT NULL, tenant TEXT, body TEXT NOT NULL, prev BLOB NOT NULL, hash BLOB NOT NULL, mac BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started_us INTEGER NOT NULL,
  finished_us INTEGER NOT NULL, status TEXT NOT NULL, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subject_filters(partition_id INTEGER PRIMARY KEY, version INTEGER NOT NULL,
  bits BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS holds(id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, subject INTEGER NOT NULL,
  pseudonym BLOB, scope TEXT, since_us INTEGER, until_us INTEGER, reason TEXT NOT NULL, actor TEXT NOT NULL,
  created_us INTEGER NOT NULL, expires_us INTEGER, released_us INTEGER, release_reason TEXT, ledger_seq INTEGER);
";

/// The on-disk format this version reads and writes (2: sealed records).
const FORMAT: &str = "2";

const LIVE: i64 = 0;
const DIRTY: i64 = 1;
const DROPPING: i64 = 2;

/// A partition's WAL is checkpointed (in the background) past this size.
const PARTITION_WAL_LIMIT: u64 = 16 << 20;

/// Partition connections kept open at once with a full page cache.
const OPEN_PARTITIONS: usize = 32;

/// Partition connections kept open past those, idle with their page cache
/// released (~60 KB each), so that a subject lookup touching hundreds of
/// partitions does not reopen (and, on eviction, checkpoint and close) a
/// file per partition per step; fewer when the open-files limit is low.
const IDLE_PARTITIONS: usize = 512;

/// Past this many candidate subjects in one partition, a selection reads
/// the partition's subject index once instead of looking each one up.
const MANY_SUBJECTS: usize = 16;

/// The embedded SQLite store.
pub struct SqliteStore {
    dir: PathBuf,
    span_us: i64,
    lock_file: File,
    inner: Mutex<Inner>,
    /// A second catalog connection for key tables and run history, so key
    /// resolution by the ingest pipeline never waits for a partition write.
    keys: Mutex<Connection>,
    /// Restorations this process is loading: connection, file lock, tenant.
    loading: Mutex<HashMap<i64, (Connection, File, TenantId)>>,
    /// Background checkpoints and closes; dropped after the connections above
    /// (fields drop in declaration order).
    upkeep: checkpoint::Checkpointer,
}

struct Inner {
    cat: Connection,
    parts: HashMap<i64, (Connection, u64)>,
    /// Evicted from `parts` but kept open, cache released (see [`IDLE_PARTITIONS`]).
    idle: HashMap<i64, (Connection, u64)>,
    /// How many idle connections the open-files limit allows.
    idle_limit: usize,
    tick: u64,
    /// Subject filters by partition with their version, as last read or
    /// written. Versions are random per write: a cached filter is used only
    /// while the catalog still holds its version (partition ids can be
    /// reused after a drop, and other processes write too).
    filters: HashMap<i64, (i64, SubjectFilter)>,
}

#[derive(Debug, Clone)]
struct Part {
    id: i64,
    tenant: TenantId,
    stream: StreamId,
    start: i64,
    end: i64,
    path: String,
    bytes: u64,
}

#[derive(Debug, Clone)]
struct PartGroup {
    scope: String,
    class: Classification,
    records: u64,
    deleted: u64,
}

/// Holds the cross-process writer lock for the duration of a write.
struct WriteGuard<'a>(&'a File);

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl SqliteStore {
    /// Opens (creating if needed) a store in `dir` with partitions of
    /// `span_secs` seconds, repairing whatever a crash left in flight.
    pub fn open(dir: &Path, span_secs: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let lock_path = dir.join("lock");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(format!("opening {}", lock_path.display()), e))?;
        let cat = Connection::open(dir.join("catalog.db")).map_err(db)?;
        cat.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000; PRAGMA wal_autocheckpoint=0;
             PRAGMA secure_delete=ON;",
        )
        .map_err(db)?;
        cat.execute_batch(CATALOG_SCHEMA).map_err(db)?;
        cat.execute_batch(restored::CATALOG_SCHEMA).map_err(db)?;
        let stored: Option<String> = cat
            .query_row("SELECT value FROM meta WHERE key='partition_secs'", [], |r| r.get(0))
            .optional()
            .map_err(db)?;
        match stored {
            None => {
                cat.execute(
                    "INSERT INTO meta(key,value) VALUES('partition_secs',?1)",
                    [span_secs.to_string()],
                )
                .map_err(db)?;
            }
            Some(s) if s == span_secs.to_string() => {}
            Some(s) => {
                return Err(StoreError::Corrupt(format!(
                    "this store was created with partitions of {s} s; store.partition asks for {span_secs} s"
                )))
            }
        }
        let format: Option<String> = cat
            .query_row("SELECT value FROM meta WHERE key='format'", [], |r| r.get(0))
            .optional()
            .map_err(db)?;
        match format.as_deref() {
            Some(FORMAT) => {}
            None => {
                let used: bool = cat
                    .query_row("SELECT EXISTS(SELECT 1 FROM partitions)", [], |r| r.get(0))
                    .map_err(db)?;
                if used {
                    return Err(StoreError::Corrupt(
                        "this store was written by an earlier Lethe (format 1, records without integrity seals); \
                         export it with that version's `lethe logs` and ingest into a new data directory"
                            .into(),
                    ));
                }
                cat.execute("INSERT INTO meta(key,value) VALUES('format',?1)", [FORMAT])
                    .map_err(db)?;
            }
            Some(f) => {
                return Err(StoreError::Corrupt(format!(
                    "store format {f}; this version reads {FORMAT}"
                )))
            }
        }
        let keys = Connection::open(dir.join("catalog.db")).map_err(db)?;
        keys.execute_batch(
            "PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000; PRAGMA wal_autocheckpoint=0; PRAGMA secure_delete=ON;",
        )
        .map_err(db)?;
        let store = SqliteStore {
            dir: dir.to_path_buf(),
            span_us: span_secs as i64 * 1_000_000,
            lock_file,
            inner: Mutex::new(Inner {
                cat,
                parts: HashMap::new(),
                idle: HashMap::new(),
                idle_limit: idle_limit(),
                tick: 0,
                filters: HashMap::new(),
            }),
            keys: Mutex::new(keys),
            loading: Mutex::new(HashMap::new()),
            upkeep: checkpoint::Checkpointer::start(&dir.join("catalog.db"))?,
        };
        {
            let _g = store.write_lock()?;
            let mut inner = store.lock();
            store.repair(&mut inner)?;
            store.repair_restorations(&inner.cat)?;
            store.remove_stray_restorations(&inner.cat)?;
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key_conn(&self) -> MutexGuard<'_, Connection> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_lock(&self) -> Result<WriteGuard<'_>> {
        self.lock_file
            .lock()
            .map_err(|e| StoreError::io("locking the store for writing", e))?;
        Ok(WriteGuard(&self.lock_file))
    }

    fn part_path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn conn<'a>(&self, inner: &'a mut Inner, p: &Part, create: bool) -> Result<&'a Connection> {
        inner.tick += 1;
        let tick = inner.tick;
        if !inner.parts.contains_key(&p.id) {
            let c = match inner.idle.remove(&p.id) {
                Some((c, _)) => {
                    c.execute_batch(partition::FULL_CACHE).map_err(db)?;
                    c
                }
                None => partition::open(&self.part_path(&p.path), create)?,
            };
            if inner.parts.len() >= OPEN_PARTITIONS {
                if let Some(old) = inner.parts.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k) {
                    if let Some((c, t)) = inner.parts.remove(&old) {
                        // Kept open but light; closed (in the background:
                        // a close checkpoints) once the idle set is full.
                        // Ingest (`create`) moves through every partition
                        // once and would only fill the idle set with large
                        // write-ahead-log indexes: its evictions close.
                        if !create && inner.idle_limit > 0 && c.execute_batch(partition::IDLE_CACHE).is_ok() {
                            inner.idle.insert(old, (c, t));
                        } else {
                            self.upkeep.close(c);
                        }
                    }
                }
            }
            if inner.idle.len() > inner.idle_limit {
                if let Some(old) = inner.idle.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k) {
                    if let Some((c, _)) = inner.idle.remove(&old) {
                        self.upkeep.close(c);
                    }
                }
            }
            inner.parts.insert(p.id, (c, tick));
        }
        let e = inner.parts.get_mut(&p.id).expect("inserted above");
        e.1 = tick;
        Ok(&e.0)
    }

    /// Hands a partition whose WAL has grown past the limit to the background
    /// checkpointer (partition connections never checkpoint on commit).
    fn maybe_checkpoint(&self, p: &Part) {
        let wal = PathBuf::from(format!("{}-wal", self.part_path(&p.path).display()));
        if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > PARTITION_WAL_LIMIT {
            self.upkeep.checkpoint(self.part_path(&p.path));
        }
    }

    fn remove_files(&self, inner: &mut Inner, p: &Part) -> Result<()> {
        for (c, _) in [inner.parts.remove(&p.id), inner.idle.remove(&p.id)]
            .into_iter()
            .flatten()
        {
            // The file is about to go: closing must not first copy its WAL into it.
            partition::no_checkpoint_on_close(&c);
        }
        let base = self.part_path(&p.path);
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let f = PathBuf::from(format!("{}{suffix}", base.display()));
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(format!("removing {}", f.display()), e)),
            }
        }
        Ok(())
    }

    fn file_bytes(&self, p: &Part) -> u64 {
        use std::os::unix::fs::MetadataExt;
        ["", "-wal"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", self.part_path(&p.path).display())).ok())
            .map(|m| m.blocks() * 512)
            .sum()
    }

    fn parts_where(&self, cat: &Connection, clause: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<Part>> {
        let sql = format!("SELECT id,tenant,stream,start_us,end_us,path,bytes FROM partitions WHERE {clause}");
        let mut st = cat.prepare_cached(&sql).map_err(db)?;
        let rows = st
            .query_map(args, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, t, s, start, end, path, bytes) = row.map_err(db)?;
            out.push(Part {
                id,
                tenant: TenantId::new(&t).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                stream: s
                    .parse()
                    .map_err(|e: lethe_core::model::NameError| StoreError::Corrupt(e.to_string()))?,
                start,
                end,
                path,
                bytes: bytes as u64,
            });
        }
        Ok(out)
    }

    fn head(cat: &Connection, tenant: &str, stream: &str) -> Result<u64> {
        let h: Option<i64> = cat
            .query_row(
                "SELECT head_seq FROM chains WHERE tenant=?1 AND stream=?2",
                [tenant, stream],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        Ok(h.unwrap_or(0) as u64)
    }

    /// A chain's committed state: head, chain hash and Merkle frontier.
    fn chain_state(cat: &Connection, tenant: &str, stream: &str) -> Result<partition::ChainState> {
        let row: Option<(i64, Vec<u8>, Vec<u8>)> = cat
            .query_row(
                "SELECT head_seq, head_hash, frontier FROM chains WHERE tenant=?1 AND stream=?2",
                [tenant, stream],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db)?;
        let bad = || StoreError::Corrupt(format!("chain state of {tenant}/{stream}"));
        Ok(match row {
            None => partition::ChainState {
                seq: 0,
                hash: integrity::genesis(tenant, stream),
                frontier: Frontier::new(),
                nodes: Vec::new(),
            },
            Some((seq, hash, frontier)) => partition::ChainState {
                seq: seq as u64,
                hash: hash.try_into().map_err(|_| bad())?,
                frontier: Frontier::from_parts(
                    seq as u64,
                    frontier
                        .chunks(32)
                        .map(|c| c.try_into().map_err(|_| bad()))
                        .collect::<Result<_>>()?,
                )
                .ok_or_else(bad)?,
                nodes: Vec::new(),
            },
        })
    }

    /// Leaf hashes of `first..=last` of a chain from the rows that hold
    /// them (`None` where no row does), via the segments.
    fn leaves_in(
        &self,
        inner: &mut Inner,
        tenant: &str,
        stream: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<Option<Hash>>> {
        let mut out = vec![None; (last + 1 - first) as usize];
        let segs = segments_of(&inner.cat, tenant, stream, Some((first, last)))?;
        let mut reader = Reader::new(self);
        for sa in segs {
            let p = self
                .parts_where(&inner.cat, "id = ?1", &[&sa.partition])?
                .pop()
                .ok_or_else(|| StoreError::Corrupt(format!("segment in missing partition {}", sa.partition)))?;
            // Through a reader of its own: a sweep reading the edges of what
            // it is about to drop never evicts (and so checkpoints) a writer's
            // connection.
            reader.know(p.id, self.part_path(&p.path));
            let lo = sa.segment.first.max(first);
            let hi = sa.segment.last.min(last);
            let mut err = None;
            reader.scan(p.id, lo, hi, &mut |row| match row.leaf(tenant, stream) {
                Ok(l) => out[(row.seq - first) as usize] = Some(l),
                Err(e) => {
                    err = Some(StoreError::Corrupt(format!(
                        "record {} of {tenant}/{stream}: {e}",
                        row.seq
                    )))
                }
            })?;
            if let Some(e) = err {
                return Err(e);
            }
        }
        Ok(out)
    }

    /// Finishes dropping partitions marked `dropping` and repairs `dirty` ones.
    fn repair(&self, inner: &mut Inner) -> Result<()> {
        let dropping = self.parts_where(&inner.cat, "state = ?1", &[&DROPPING])?;
        for p in &dropping {
            self.remove_files(inner, p)?;
            forget_partition(&inner.cat, p.id)?;
        }
        let dirty = self.parts_where(&inner.cat, "state = ?1", &[&DIRTY])?;
        for p in &dirty {
            if !self.part_path(&p.path).exists() {
                forget_partition(&inner.cat, p.id)?;
                continue;
            }
            let head = Self::head(&inner.cat, p.tenant.as_str(), &p.stream.to_string())?;
            let c = self.conn(inner, p, false)?;
            partition::truncate_after(c, head)?;
            self.settle(inner, p)?;
        }
        Ok(())
    }

    /// Recomputes a partition's counts from its file and marks it live, or
    /// removes it when it is empty.
    fn settle(&self, inner: &mut Inner, p: &Part) -> Result<()> {
        let c = self.conn(inner, p, false)?;
        let groups = partition::group_stats(c)?;
        if groups.is_empty() {
            inner
                .cat
                .execute("UPDATE partitions SET state=?2 WHERE id=?1", params![p.id, DROPPING])
                .map_err(db)?;
            self.remove_files(inner, p)?;
            return forget_partition(&inner.cat, p.id);
        }
        let bytes = self.file_bytes(p);
        let tx = inner.cat.unchecked_transaction().map_err(db)?;
        tx.execute("DELETE FROM partition_groups WHERE partition_id=?1", [p.id])
            .map_err(db)?;
        for g in groups {
            tx.execute(
                "INSERT INTO partition_groups(partition_id,scope,class,records,anonymized,deleted,min_ts,max_ts)
                 VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
                params![
                    p.id,
                    g.scope,
                    g.class,
                    g.records as i64,
                    g.anonymized as i64,
                    g.deleted as i64,
                    g.min_ts,
                    g.max_ts
                ],
            )
            .map_err(db)?;
        }
        tx.execute(
            "UPDATE partitions SET state=?2, bytes=?3 WHERE id=?1",
            params![p.id, LIVE, bytes as i64],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn groups_of(cat: &Connection, part: i64) -> Result<Vec<PartGroup>> {
        let mut st = cat
            .prepare_cached("SELECT scope,class,records,deleted FROM partition_groups WHERE partition_id=?1")
            .map_err(db)?;
        let rows = st
            .query_map([part], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u8>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (scope, class, n, d) = row.map_err(db)?;
            let class =
                Classification::from_code(class).ok_or_else(|| StoreError::Corrupt(format!("class {class}")))?;
            out.push(PartGroup {
                scope,
                class,
                records: n as u64,
                deleted: d as u64,
            });
        }
        Ok(out)
    }

    /// Works out, per partition, what the targets do to it.
    fn work(&self, inner: &mut Inner, targets: &[RetentionTarget], holds: &[HoldScope]) -> Result<Work> {
        let by_key: HashMap<&GroupKey, usize> = targets.iter().enumerate().map(|(i, t)| (&t.key, i)).collect();
        let mut tenants: Vec<&TenantId> = targets.iter().map(|t| &t.key.tenant).collect();
        tenants.sort();
        tenants.dedup();
        let mut work = Work {
            held: vec![0; targets.len()],
            ..Work::default()
        };
        for tenant in tenants {
            let holds: Vec<&HoldScope> = holds.iter().filter(|h| h.tenant == tenant.as_str()).collect();
            let parts = self.parts_where(
                &inner.cat,
                "tenant = ?1 AND state = 0 ORDER BY stream, start_us",
                &[&tenant.as_str()],
            )?;
            for p in parts {
                let groups = Self::groups_of(&inner.cat, p.id)?;
                // Holds that may cover a record here: the partition then
                // goes row by row, held records left out.
                let held_by: Vec<&HoldScope> = holds
                    .iter()
                    .copied()
                    .filter(|h| {
                        h.may_cover(
                            tenant.as_str(),
                            &mut groups.iter().map(|g| g.scope.as_str()),
                            p.start,
                            p.end,
                        )
                    })
                    .collect();
                let mut whole = !groups.is_empty() && held_by.is_empty();
                let mut items = Vec::new();
                for g in &groups {
                    let key = GroupKey {
                        tenant: p.tenant.clone(),
                        stream: p.stream.clone(),
                        scope: g.scope.clone(),
                        classification: g.class,
                    };
                    let Some(&ti) = by_key.get(&key) else {
                        whole = false;
                        continue;
                    };
                    let t = &targets[ti];
                    let anonymize = t.action == Action::Anonymize;
                    let mut seqs = Vec::new();
                    let mut held = 0;
                    let n = if p.end <= t.cutoff_us && !anonymize && held_by.is_empty() {
                        g.records
                    } else {
                        whole = false;
                        if p.start < t.cutoff_us && (g.records > 0) {
                            let c = self.conn(inner, &p, false)?;
                            (seqs, held) = partition::expired_seqs(
                                c,
                                tenant.as_str(),
                                &g.scope,
                                g.class,
                                t.cutoff_us,
                                anonymize,
                                &held_by,
                            )?;
                            seqs.iter().map(|r| r[1] + 1 - r[0]).sum()
                        } else {
                            0
                        }
                    };
                    items.push(Item {
                        target: ti,
                        scope: g.scope.clone(),
                        class: g.class,
                        records: n,
                        held,
                        share: g.records + g.deleted,
                        seqs,
                    });
                }
                if !whole {
                    // Groups wholly expired in a partition that stays: their
                    // records go row by row, so name them.
                    for i in items.iter_mut().filter(|i| i.records > 0 && i.seqs.is_empty()) {
                        let c = self.conn(inner, &p, false)?;
                        let anonymize = targets[i.target].action == Action::Anonymize;
                        (i.seqs, i.held) = partition::expired_seqs(
                            c,
                            tenant.as_str(),
                            &i.scope,
                            i.class,
                            targets[i.target].cutoff_us,
                            anonymize,
                            &held_by,
                        )?;
                        i.records = i.seqs.iter().map(|r| r[1] + 1 - r[0]).sum();
                    }
                }
                if whole {
                    let refs = groups
                        .iter()
                        .map(|g| PartGroupRef {
                            scope: g.scope.clone(),
                            class: g.class.code(),
                        })
                        .collect();
                    work.drops.push((p, items, refs));
                } else {
                    for i in &items {
                        work.held[i.target] += i.held;
                    }
                    if items.iter().any(|i| i.records > 0) {
                        items.retain(|i| i.records > 0);
                        work.rows.push((p, items));
                    }
                }
            }
        }
        Ok(work)
    }

    /// A partition's current subject filter (`None` if it has none, e.g.
    /// written by an older version: any subject may be in it).
    fn subject_filter<'a>(&self, inner: &'a mut Inner, part: i64) -> Result<Option<&'a SubjectFilter>> {
        let version: Option<i64> = inner
            .cat
            .prepare_cached("SELECT version FROM subject_filters WHERE partition_id=?1")
            .map_err(db)?
            .query_row([part], |r| r.get(0))
            .optional()
            .map_err(db)?;
        self.load_filter(inner, part, version)?;
        Ok(inner.filters.get(&part).map(|(_, f)| f))
    }

    /// Makes the cache hold version `version` of a partition's filter (or nothing).
    fn load_filter(&self, inner: &mut Inner, part: i64, version: Option<i64>) -> Result<()> {
        let Some(v) = version else {
            inner.filters.remove(&part);
            return Ok(());
        };
        if inner.filters.get(&part).is_some_and(|(have, _)| *have == v) {
            return Ok(());
        }
        if inner.filters.len() >= CACHED_FILTERS {
            inner.filters.clear();
        }
        let bits: Option<Vec<u8>> = inner
            .cat
            .prepare_cached("SELECT bits FROM subject_filters WHERE partition_id=?1")
            .map_err(db)?
            .query_row([part], |r| r.get(0))
            .optional()
            .map_err(db)?;
        match bits.and_then(SubjectFilter::from_bytes) {
            Some(f) => inner.filters.insert(part, (v, f)),
            None => inner.filters.remove(&part),
        };
        Ok(())
    }

    /// Brings the cached filters of a tenant's partitions up to date with
    /// one catalog query (plus a read of each filter that changed).
    fn refresh_filters(&self, inner: &mut Inner, tenant: &str) -> Result<()> {
        let versions: Vec<(i64, Option<i64>)> = {
            let mut st = inner
                .cat
                .prepare_cached(
                    "SELECT p.id, f.version FROM partitions p LEFT JOIN subject_filters f ON f.partition_id = p.id
                     WHERE p.tenant = ?1",
                )
                .map_err(db)?;
            let rows = st.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?;
            rows.collect::<std::result::Result<_, _>>().map_err(db)?
        };
        for (part, v) in versions {
            self.load_filter(inner, part, v)?;
        }
        Ok(())
    }

    /// Of `pseudonyms`, those that may have records in the partition.
    /// Filters must be fresh ([`Self::refresh_filters`]).
    fn candidates(inner: &Inner, part: i64, pseudonyms: &[[u8; 32]]) -> Vec<[u8; 32]> {
        match inner.filters.get(&part) {
            Some((_, f)) => pseudonyms.iter().filter(|p| f.may_contain(p)).copied().collect(),
            None => pseudonyms.to_vec(),
        }
    }

    /// A partition's subject filter with `added` in it, ready to store: the
    /// stored one extended, or (when there is none, or it is crowded) one
    /// built from every pseudonym in the partition file.
    fn extended_filter(&self, inner: &mut Inner, p: &Part, added: &[[u8; 32]]) -> Result<SubjectFilter> {
        if let Some(f) = self.subject_filter(inner, p.id)? {
            let mut f = f.clone();
            for a in added {
                f.insert(a);
            }
            if !f.crowded() {
                return Ok(f);
            }
        }
        let all = partition::pseudonyms(self.conn(inner, p, false)?)?;
        let mut bytes = filter::INITIAL_BYTES;
        loop {
            let mut f = SubjectFilter::new(bytes);
            for a in all.iter().chain(added) {
                f.insert(a);
            }
            if !f.crowded() {
                return Ok(f);
            }
            bytes *= 4;
        }
    }

    /// Appends a ledger entry, setting `mark` to its sequence number in the
    /// same transaction when given.
    fn append_entry(
        &self,
        seal: &mut dyn FnMut(u64, [u8; 32]) -> LedgerEntry,
        mark: Option<&str>,
    ) -> Result<LedgerEntry> {
        let mut cat = self.key_conn();
        let tx = cat
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let head: Option<(i64, Vec<u8>)> = tx
            .query_row("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(db)?;
        let (seq, hash) = match head {
            Some((s, h)) => (
                s as u64,
                h.try_into().map_err(|_| StoreError::Corrupt("ledger hash".into()))?,
            ),
            None => (0, [0u8; 32]),
        };
        let e = seal(seq, hash);
        tx.execute(
            "INSERT INTO ledger(seq,ts_us,actor,kind,tenant,body,prev,hash,mac) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)",
            params![
                e.seq as i64,
                e.ts_us,
                e.actor,
                e.kind,
                e.tenant,
                e.body,
                &e.prev[..],
                &e.hash[..],
                &e.mac[..]
            ],
        )
        .map_err(db)?;
        if let Some(key) = mark {
            tx.execute(
                "INSERT INTO meta(key,value) VALUES(?1,?2) ON CONFLICT(key) DO UPDATE SET value=?2",
                params![key, e.seq.to_string()],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(e)
    }

    /// The stored time bounds of a partition's groups.
    fn group_bounds(cat: &Connection, part: i64) -> Result<GroupBounds> {
        let mut st = cat
            .prepare_cached("SELECT scope, class, min_ts, max_ts FROM partition_groups WHERE partition_id=?1")
            .map_err(db)?;
        let rows = st
            .query_map([part], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))))
            .map_err(db)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db)
    }

    /// Makes the partitions' committed writes durable: their files synced
    /// one by one when few, else one `syncfs` of the store's file system.
    fn sync_partitions<'a>(&self, parts: impl Iterator<Item = &'a Part>) -> Result<()> {
        let parts: Vec<&Part> = parts.collect();
        if parts.len() > 16 {
            let dir = File::open(&self.dir).map_err(|e| StoreError::io("opening the data directory", e))?;
            // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
            let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
            if rc != 0 {
                return Err(StoreError::io(
                    "syncing the data directory",
                    std::io::Error::last_os_error(),
                ));
            }
            return Ok(());
        }
        for p in parts {
            for suffix in ["-wal", ""] {
                let f = PathBuf::from(format!("{}{suffix}", self.part_path(&p.path).display()));
                match File::open(&f) {
                    Ok(file) => file
                        .sync_all()
                        .map_err(|e| StoreError::io(format!("syncing {}", f.display()), e))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io(format!("opening {}", f.display()), e)),
                }
            }
        }
        Ok(())
    }

    /// Stores the Merkle subtree heads below the 256-leaf level at the
    /// edges of the ranges about to be dropped, computed from their rows
    /// (still present), so the tree over what remains can still be
    /// recomputed and proven. Adjacent dropped segments are merged first:
    /// only the outer edges of each merged range need heads.
    fn edge_nodes(
        &self,
        inner: &mut Inner,
        tenant: &str,
        stream: &str,
        segs: &mut [(u64, u64)],
    ) -> Result<Vec<(u32, u64, Hash)>> {
        segs.sort();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for &(a, b) in segs.iter() {
            match merged.last_mut() {
                Some(m) if m.1 + 1 == a => m.1 = b,
                _ => merged.push((a, b)),
            }
        }
        let mut out = Vec::new();
        for (a, b) in merged {
            for (level, idx) in merkle::perfect_cover(a - 1, b) {
                if level >= 8 {
                    continue;
                }
                let lo = idx << level;
                let hi = lo + (1u64 << level);
                let leaves = self.leaves_in(inner, tenant, stream, lo + 1, hi)?;
                // A leaf that cannot be rebuilt (a damaged row) leaves the head
                // out: `lethe verify` reports the damage itself.
                if let Some(ls) = leaves.into_iter().collect::<Option<Vec<Hash>>>() {
                    out.push((level, idx, merkle::root(&ls)));
                }
            }
        }
        Ok(out)
    }
}

#[derive(Default)]
struct Work {
    /// Partitions removed whole, with their groups.
    drops: Vec<(Part, Vec<Item>, Vec<PartGroupRef>)>,
    /// Partitions with row-level work.
    rows: Vec<(Part, Vec<Item>)>,
    /// Per target, records a hold keeps.
    held: Vec<u64>,
}

struct Item {
    target: usize,
    scope: String,
    class: Classification,
    records: u64,
    /// Records a hold keeps.
    held: u64,
    share: u64,
    /// Row-level work: the sequence numbers it touches.
    seqs: Vec<[u64; 2]>,
}

/// Per (scope, class) of a partition: oldest and newest live event time.
type GroupBounds = HashMap<(String, u8), (Option<i64>, Option<i64>)>;

/// How row-level removal changed one group of a partition.
struct GroupChange {
    scope: String,
    class: u8,
    /// Records no longer live (deleted).
    records_gone: i64,
    /// Change of the anonymized count.
    anonymized: i64,
    /// Change of the tombstone count.
    deleted: i64,
    min_ts: Option<i64>,
    max_ts: Option<i64>,
}

/// Sums the rows [`partition::redact`] changed per group; the time bounds
/// are looked up again only where a removed record sat on one.
fn group_changes(c: &Connection, changed: &[partition::Changed], bounds: &GroupBounds) -> Result<Vec<GroupChange>> {
    let mut by: BTreeMap<(String, u8), GroupChange> = BTreeMap::new();
    // Groups where a removed record sat on a time bound.
    let mut edge: std::collections::BTreeSet<(String, u8)> = std::collections::BTreeSet::new();
    for ch in changed {
        let k = (ch.scope.clone(), ch.class);
        let (lo, hi) = bounds.get(&k).copied().unwrap_or((None, None));
        let g = by.entry(k.clone()).or_insert_with(|| GroupChange {
            scope: ch.scope.clone(),
            class: ch.class,
            records_gone: 0,
            anonymized: 0,
            deleted: 0,
            min_ts: lo,
            max_ts: hi,
        });
        if ch.deleted {
            g.records_gone += 1;
            g.deleted += 1;
            if ch.was == row::ANONYMIZED {
                g.anonymized -= 1;
            }
            if lo.is_none_or(|l| ch.ts <= l) || hi.is_none_or(|h| ch.ts >= h) {
                edge.insert(k);
            }
        } else {
            g.anonymized += 1;
        }
    }
    for (k, g) in by.iter_mut() {
        if edge.contains(k) {
            (g.min_ts, g.max_ts) = partition::live_bounds(c, &g.scope, g.class)?;
        }
    }
    Ok(by.into_values().collect())
}

/// Idle partition connections the open-files limit allows (three files
/// each: database, WAL, shared memory), after raising the soft limit
/// towards the hard one as servers commonly do.
fn idle_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let want = lim.rlim_max.min(65_536);
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = want;
            }
        }
    }
    // Leave room for everything else the process opens.
    let files = (lim.rlim_cur as usize).saturating_sub(512) / 3;
    files.saturating_sub(OPEN_PARTITIONS).min(IDLE_PARTITIONS)
}

/// A random number for filter versions (no RNG dependency in the store:
/// the standard library's randomly seeded hasher is enough here).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A group key from its stored columns.
fn group_key(tenant: &str, stream: &str, scope: String, class: u8) -> Result<GroupKey> {
    Ok(GroupKey {
        tenant: TenantId::new(tenant).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        stream: stream
            .parse()
            .map_err(|e: lethe_core::model::NameError| StoreError::Corrupt(e.to_string()))?,
        scope,
        classification: Classification::from_code(class)
            .ok_or_else(|| StoreError::Corrupt(format!("class {class}")))?,
    })
}

/// A chain's segments in sequence order, optionally only those overlapping
/// `first..=last`.
fn segments_of(cat: &Connection, tenant: &str, stream: &str, within: Option<(u64, u64)>) -> Result<Vec<SegmentAt>> {
    let (lo, hi) = within.unwrap_or((0, i64::MAX as u64));
    let mut st = cat
        .prepare_cached(
            "SELECT s.first_seq, s.last_seq, s.prev, s.chain, s.partition_id, coalesce(p.start_us, 0)
             FROM segments s LEFT JOIN partitions p ON p.id = s.partition_id
             WHERE s.tenant=?1 AND s.stream=?2 AND s.last_seq>=?3 AND s.first_seq<=?4 ORDER BY s.first_seq",
        )
        .map_err(db)?;
    let rows = st
        .query_map(params![tenant, stream, lo as i64, hi as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (first, last, prev, chain, partition, start_us) = row.map_err(db)?;
        let bad = || StoreError::Corrupt(format!("segment {first} of {tenant}/{stream}"));
        out.push(SegmentAt {
            segment: Segment {
                first: first as u64,
                last: last as u64,
                prev: prev.try_into().map_err(|_| bad())?,
                chain: chain.try_into().map_err(|_| bad())?,
            },
            partition,
            start_us,
        });
    }
    Ok(out)
}

/// The removal entry of a partition's chain, created on first use.
fn chain_entry<'a>(chains: &'a mut BTreeMap<(String, String), ChainRemoval>, p: &Part) -> &'a mut ChainRemoval {
    let k = (p.tenant.to_string(), p.stream.to_string());
    chains.entry(k.clone()).or_insert_with(|| ChainRemoval {
        tenant: k.0,
        stream: k.1,
        dropped: Vec::new(),
        rows: Vec::new(),
    })
}

fn forget_partition(cat: &Connection, id: i64) -> Result<()> {
    cat.execute("DELETE FROM subject_filters WHERE partition_id=?1", [id])
        .map_err(db)?;
    cat.execute("DELETE FROM segments WHERE partition_id=?1", [id])
        .map_err(db)?;
    cat.execute("DELETE FROM partition_groups WHERE partition_id=?1", [id])
        .map_err(db)?;
    cat.execute("DELETE FROM partitions WHERE id=?1", [id]).map_err(db)?;
    Ok(())
}

fn effects_from(targets: &[RetentionTarget]) -> Vec<RetentionEffect> {
    targets
        .iter()
        .map(|t| RetentionEffect {
            target: t.clone(),
            records: 0,
            held: 0,
            bytes_freed: 0,
            partitions_dropped: 0,
        })
        .collect()
}

/// Splits a dropped partition's bytes over its groups by record share, the
/// remainder going to the largest group so the parts add up exactly.
fn attribute_drop(effects: &mut [RetentionEffect], items: &[Item], bytes: u64) {
    // Shares count tombstones too: they occupy the file as well.
    let total: u64 = items.iter().map(|i| i.share).sum();
    let mut given = 0;
    let largest = items.iter().enumerate().max_by_key(|(_, i)| i.share).map(|(n, _)| n);
    for (n, i) in items.iter().enumerate() {
        let b = (bytes * i.share).checked_div(total).unwrap_or(0);
        given += b;
        let e = &mut effects[i.target];
        e.bytes_freed += b;
        e.records += i.records;
        if Some(n) == largest {
            e.partitions_dropped += 1;
        }
    }
    if let Some(n) = largest {
        effects[items[n].target].bytes_freed += bytes - given;
    }
}

impl Store for SqliteStore {
    fn append(&self, b: &Batch) -> Result<AppendReport> {
        let (batch, drops) = (&b.records, &b.drops);
        let computed;
        let digests = if b.digests.len() == batch.len() {
            debug_assert!(
                batch.iter().zip(&b.digests).all(|(r, d)| row::digests_of(r) == *d),
                "caller-computed digests match the records"
            );
            &b.digests
        } else {
            computed = batch.iter().map(row::digests_of).collect::<Vec<_>>();
            &computed
        };
        let macs: HashMap<&TenantId, RecordMac> = b.mac_keys.iter().map(|(t, k)| (t, RecordMac::new(k))).collect();
        if let Some(r) = batch.iter().find(|r| !macs.contains_key(&r.group.tenant)) {
            return Err(StoreError::Backend(format!(
                "no record MAC key for tenant `{}` in the batch",
                r.group.tenant
            )));
        }
        let _g = self.write_lock()?;
        let mut inner = self.lock();
        let inner = &mut *inner;
        self.repair(inner)?;

        // Group records by partition, keeping input order within each.
        let mut order: Vec<(&TenantId, &StreamId, i64, usize)> = batch
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let start = r.ts_us.div_euclid(self.span_us) * self.span_us;
                (&r.group.tenant, &r.group.stream, start, i)
            })
            .collect();
        order.sort();

        // Intent: the batch's new data keys are stored and every partition it
        // touches is marked dirty, durably, before any partition is written.
        type Recs<'a> = Vec<(&'a NewRecord, &'a lethe_core::integrity::Digests)>;
        let mut parts: Vec<(Part, Recs<'_>)> = Vec::new();
        let mut heads: BTreeMap<(String, String), partition::ChainState> = BTreeMap::new();
        {
            let tx = inner
                .cat
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT INTO data_keys(id,tenant,ref,wrapped,created_us) VALUES(?1,?2,?3,?4,?5)
                         ON CONFLICT DO NOTHING",
                    )
                    .map_err(db)?;
                let now = batch.first().map(|r| r.received_us).unwrap_or(0);
                for k in &b.new_keys {
                    if ins
                        .execute(params![k.id, k.tenant.as_str(), k.key_ref, k.wrapped, now])
                        .map_err(db)?
                        != 1
                    {
                        // Dropping the transaction rolls it back: nothing of this batch is stored.
                        return Err(StoreError::KeyConflict);
                    }
                }
            }
            for &(tenant_id, stream_id, start, i) in &order {
                let r = &batch[i];
                if parts
                    .last()
                    .is_none_or(|(p, _)| p.tenant != *tenant_id || p.stream != *stream_id || p.start != start)
                {
                    let (tenant, stream) = (tenant_id.as_str(), stream_id.to_string());
                    let path = partition_path(tenant, stream_id, start, self.span_us);
                    tx.execute(
                        "INSERT INTO partitions(tenant,stream,start_us,end_us,path,state) VALUES(?1,?2,?3,?4,?5,?6)
                         ON CONFLICT(tenant,stream,start_us) DO UPDATE SET state=?6",
                        params![tenant, stream, start, start + self.span_us, path, DIRTY],
                    )
                    .map_err(db)?;
                    let (id, path, bytes): (i64, String, i64) = tx
                        .query_row(
                            "SELECT id,path,bytes FROM partitions WHERE tenant=?1 AND stream=?2 AND start_us=?3",
                            params![tenant, stream, start],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .map_err(db)?;
                    let p = Part {
                        id,
                        tenant: r.group.tenant.clone(),
                        stream: r.group.stream.clone(),
                        start,
                        end: start + self.span_us,
                        path,
                        bytes: bytes as u64,
                    };
                    parts.push((p, Vec::new()));
                    let ck = (tenant.to_string(), stream.clone());
                    if let std::collections::btree_map::Entry::Vacant(e) = heads.entry(ck) {
                        e.insert(Self::chain_state(&tx, tenant, &stream)?);
                    }
                }
                parts.last_mut().expect("pushed above").1.push((r, &digests[i]));
            }
            tx.commit().map_err(db)?;
        }
        crashpoint::hit("append.after_intent");

        let mut report = AppendReport::default();
        // Every partition written: its per-group deltas, bytes on disk and
        // the segment of the chain it received (if any record was new).
        struct Settled {
            part: Part,
            deltas: Vec<((String, u8), partition::GroupDelta)>,
            bytes: u64,
            segment: Option<Segment>,
        }
        let mut settled: Vec<Settled> = Vec::new();
        let mut subjects: Vec<Vec<[u8; 32]>> = Vec::new();
        for (p, recs) in parts {
            let mut ps: Vec<[u8; 32]> = recs.iter().filter_map(|(r, _)| r.pseudonym).collect();
            ps.sort_unstable();
            ps.dedup();
            subjects.push(ps);
            let (tenant, stream) = (p.tenant.to_string(), p.stream.to_string());
            let chain = heads.get_mut(&(tenant.clone(), stream.clone())).expect("head loaded");
            let mac = &macs[&p.tenant];
            let (first, prev) = (chain.seq + 1, chain.hash);
            let c = self.conn(inner, &p, true)?;
            let tx = c.unchecked_transaction().map_err(db)?;
            let mut deltas = Vec::new();
            let n = partition::insert(&tx, &tenant, &stream, &recs, chain, mac, &mut deltas)?;
            tx.commit().map_err(db)?;
            crashpoint::hit("append.after_partition");
            report.inserted += n;
            report.duplicates += recs.len() as u64 - n;
            let bytes = self.file_bytes(&p);
            self.maybe_checkpoint(&p);
            let segment = (n > 0).then_some(Segment {
                first,
                last: chain.seq,
                prev,
                chain: chain.hash,
            });
            settled.push(Settled {
                part: p,
                deltas,
                bytes,
                segment,
            });
        }

        // Subject filters of the partitions that received subjects, stored
        // with the commit (a filter may only ever claim too much).
        let mut filters: Vec<(i64, i64, SubjectFilter)> = Vec::new();
        for (st, recs) in settled.iter().zip(&subjects) {
            if !recs.is_empty() {
                let version = (rand_u64() >> 1) as i64;
                filters.push((st.part.id, version, self.extended_filter(inner, &st.part, recs)?));
            }
        }

        // Commit point: chain heads, segments, Merkle nodes, counts, and the
        // dirty marks cleared.
        let tx = inner
            .cat
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        for ((tenant, stream), h) in &heads {
            let frontier: Vec<u8> = h.frontier.nodes().concat();
            tx.execute(
                "INSERT INTO chains(tenant,stream,head_seq,head_hash,frontier) VALUES(?1,?2,?3,?4,?5)
                 ON CONFLICT(tenant,stream) DO UPDATE SET head_seq=?3, head_hash=?4, frontier=?5",
                params![tenant, stream, h.seq as i64, &h.hash[..], frontier],
            )
            .map_err(db)?;
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO merkle_nodes(tenant,stream,level,idx,hash) VALUES(?1,?2,?3,?4,?5)
                     ON CONFLICT DO UPDATE SET hash=?5",
                )
                .map_err(db)?;
            for (level, idx, hash) in &h.nodes {
                ins.execute(params![tenant, stream, level, *idx as i64, &hash[..]])
                    .map_err(db)?;
            }
        }
        for st in &settled {
            let p = &st.part;
            if let Some(seg) = &st.segment {
                // A batch continuing the run the partition ended with extends it.
                let extended = tx
                    .execute(
                        "UPDATE segments SET last_seq=?4, chain=?5
                         WHERE tenant=?1 AND stream=?2 AND partition_id=?3 AND last_seq=?6",
                        params![
                            p.tenant.as_str(),
                            p.stream.to_string(),
                            p.id,
                            seg.last as i64,
                            &seg.chain[..],
                            seg.first as i64 - 1
                        ],
                    )
                    .map_err(db)?;
                if extended == 0 {
                    tx.execute(
                        "INSERT INTO segments(tenant,stream,first_seq,last_seq,partition_id,prev,chain)
                         VALUES(?1,?2,?3,?4,?5,?6,?7)",
                        params![
                            p.tenant.as_str(),
                            p.stream.to_string(),
                            seg.first as i64,
                            seg.last as i64,
                            p.id,
                            &seg.prev[..],
                            &seg.chain[..]
                        ],
                    )
                    .map_err(db)?;
                }
            }
            for ((scope, class), d) in &st.deltas {
                tx.execute(
                    "INSERT INTO partition_groups(partition_id,scope,class,records,anonymized,min_ts,max_ts)
                     VALUES(?1,?2,?3,?4,0,?5,?6)
                     ON CONFLICT(partition_id,scope,class) DO UPDATE SET records=records+?4,
                       min_ts=min(coalesce(min_ts,?5),?5), max_ts=max(coalesce(max_ts,?6),?6)",
                    params![p.id, scope, class, d.records as i64, d.min_ts, d.max_ts],
                )
                .map_err(db)?;
            }
            tx.execute(
                "UPDATE partitions SET state=?2, bytes=?3 WHERE id=?1",
                params![p.id, LIVE, st.bytes as i64],
            )
            .map_err(db)?;
        }
        for (part, version, f) in &filters {
            tx.execute(
                "INSERT INTO subject_filters(partition_id,version,bits) VALUES(?1,?2,?3)
                 ON CONFLICT(partition_id) DO UPDATE SET version=?2, bits=?3",
                params![part, version, f.as_bytes()],
            )
            .map_err(db)?;
        }
        for d in drops {
            tx.execute(
                "INSERT INTO capture_drops(tenant,stream,scope,class,count) VALUES(?1,?2,?3,?4,?5)
                 ON CONFLICT(tenant,stream,scope,class) DO UPDATE SET count=count+?5",
                params![
                    d.key.tenant.as_str(),
                    d.key.stream.to_string(),
                    d.key.scope,
                    d.key.classification.code(),
                    d.count as i64
                ],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        // Not cached: ingest touches every partition once in a while, and
        // the next batch reads the few it needs; purges cache what they read.
        for (part, _, _) in filters {
            inner.filters.remove(&part);
        }
        // A partition left empty (every record a duplicate of a new partition) is removed.
        for st in &settled {
            if st.deltas.is_empty() && partition::is_empty(self.conn(inner, &st.part, false)?)? {
                self.settle(inner, &st.part)?;
            }
        }
        Ok(report)
    }

    fn query(&self, q: &RecordQuery, visit: &mut dyn FnMut(StoredRecord) -> bool) -> Result<()> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let stream = q.stream.as_ref().map(|s| s.to_string());
        let since = q.since_us.unwrap_or(i64::MIN);
        let until = q.until_us.unwrap_or(i64::MAX);
        let order = if q.ascending { "ASC" } else { "DESC" };
        let parts = self.parts_where(
            &inner.cat,
            &format!(
                "tenant=?1 AND (?2 IS NULL OR stream=?2) AND end_us>?3 AND start_us<?4 AND state != 2 ORDER BY start_us {order}, stream"
            ),
            &[&q.tenant.as_str(), &stream, &since, &until],
        )?;
        // Committed chain heads: readers never see a batch before its commit point.
        let mut heads: HashMap<String, u64> = HashMap::new();
        for p in &parts {
            let s = p.stream.to_string();
            if let std::collections::hash_map::Entry::Vacant(e) = heads.entry(s) {
                let h = Self::head(&inner.cat, q.tenant.as_str(), e.key())?;
                e.insert(h);
            }
        }
        let mut remaining = q.limit.unwrap_or(usize::MAX);
        let mut i = 0;
        while i < parts.len() && remaining > 0 {
            // Partitions with the same start overlap in time: merge them.
            let j = parts[i..]
                .iter()
                .position(|p| p.start != parts[i].start)
                .map_or(parts.len(), |k| i + k);
            let mut rows = Vec::new();
            for p in &parts[i..j] {
                let c = self.conn(inner, p, false)?;
                let key = GroupKey {
                    tenant: p.tenant.clone(),
                    stream: p.stream.clone(),
                    scope: String::new(),
                    classification: Classification::Public,
                };
                let f = partition::Filter {
                    scope: q.scope.as_deref(),
                    pseudonym: q.pseudonym.as_ref(),
                    since_us: q.since_us,
                    until_us: q.until_us,
                    ascending: q.ascending,
                    limit: q.limit.map(|_| remaining),
                    max_seq: heads[&p.stream.to_string()],
                };
                rows.extend(partition::select(c, &key, &f)?);
            }
            rows.sort_by(|a, b| {
                let k = |r: &StoredRecord| (r.record.ts_us, r.record.group.stream.clone(), r.seq);
                if q.ascending {
                    k(a).cmp(&k(b))
                } else {
                    k(b).cmp(&k(a))
                }
            });
            for r in rows.into_iter().take(remaining) {
                remaining -= 1;
                if !visit(r) {
                    return Ok(());
                }
            }
            i = j;
        }
        Ok(())
    }

    fn stats(&self, tenant: Option<&TenantId>) -> Result<Vec<GroupStats>> {
        let inner = self.lock();
        let mut st = inner
            .cat
            .prepare(
                "SELECT p.id, p.tenant, p.stream, p.bytes, g.scope, g.class, g.records, g.anonymized, g.min_ts, g.max_ts,
                        g.deleted
                 FROM partitions p JOIN partition_groups g ON g.partition_id = p.id
                 WHERE (?1 IS NULL OR p.tenant = ?1) AND p.state != 2",
            )
            .map_err(db)?;
        type Row = (
            i64,
            String,
            String,
            i64,
            String,
            u8,
            i64,
            i64,
            Option<i64>,
            Option<i64>,
            i64,
        );
        let rows: Vec<Row> = st
            .query_map([tenant.map(|t| t.as_str())], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            })
            .map_err(db)?
            .collect::<std::result::Result<_, _>>()
            .map_err(db)?;
        let mut part_total: HashMap<i64, i64> = HashMap::new();
        for r in &rows {
            *part_total.entry(r.0).or_default() += r.6 + r.10;
        }
        let mut out: BTreeMap<GroupKey, GroupStats> = BTreeMap::new();
        for (pid, t, s, bytes, scope, class, n, anon, min, max, deleted) in rows {
            let key = group_key(&t, &s, scope, class)?;
            let total = part_total[&pid].max(1);
            let e = out.entry(key.clone()).or_insert(GroupStats {
                key,
                records: 0,
                anonymized: 0,
                oldest_us: None,
                newest_us: None,
                tombstones: 0,
                partitions: 0,
                bytes: 0,
            });
            e.records += n as u64;
            e.tombstones += deleted as u64;
            e.anonymized += anon as u64;
            e.partitions += 1;
            e.bytes += (bytes as u128 * (n + deleted) as u128 / total as u128) as u64;
            e.oldest_us = match (e.oldest_us, min) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            e.newest_us = match (e.newest_us, max) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(out.into_values().collect())
    }

    fn capture_drops(&self) -> Result<Vec<CaptureDrop>> {
        let inner = self.lock();
        let mut st = inner
            .cat
            .prepare("SELECT tenant,stream,scope,class,count FROM capture_drops ORDER BY 1,2,3,4")
            .map_err(db)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u8>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (t, s, scope, class, count) = row.map_err(db)?;
            out.push(CaptureDrop {
                key: group_key(&t, &s, scope, class)?,
                count: count as u64,
            });
        }
        Ok(out)
    }

    fn disk_bytes(&self) -> Result<u64> {
        dir_bytes(&self.dir)
    }

    fn plan_removal(&self, targets: &[RetentionTarget], holds: &[HoldScope]) -> Result<Removal> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let work = self.work(inner, targets, holds)?;
        let mut effects = effects_from(targets);
        for (e, h) in effects.iter_mut().zip(&work.held) {
            e.held = *h;
        }
        let mut chains: BTreeMap<(String, String), ChainRemoval> = BTreeMap::new();
        // One segments query per chain, not one per partition.
        let mut segs: HashMap<(String, String), HashMap<i64, Vec<Segment>>> = HashMap::new();
        for (p, items, groups) in &work.drops {
            attribute_drop(&mut effects, items, p.bytes);
            let key = (p.tenant.to_string(), p.stream.to_string());
            if !segs.contains_key(&key) {
                let mut by_part: HashMap<i64, Vec<Segment>> = HashMap::new();
                for sa in segments_of(&inner.cat, &key.0, &key.1, None)? {
                    by_part.entry(sa.partition).or_default().push(sa.segment);
                }
                segs.insert(key.clone(), by_part);
            }
            let segments = segs.get_mut(&key).and_then(|m| m.remove(&p.id)).unwrap_or_default();
            chain_entry(&mut chains, p).dropped.push(DroppedPartition {
                start_us: p.start,
                end_us: p.end,
                groups: groups.clone(),
                segments,
            });
        }
        for (p, items) in &work.rows {
            let c = chain_entry(&mut chains, p);
            for i in items {
                effects[i.target].records += i.records;
                c.rows.push(RowRemoval {
                    partition_start_us: p.start,
                    action: targets[i.target].action,
                    seqs: i.seqs.clone(),
                });
            }
        }
        Ok(Removal {
            effects,
            chains: chains.into_values().collect(),
        })
    }

    fn apply_removal(&self, chains: &[ChainRemoval], progress: Progress<'_>) -> Result<Applied> {
        let _g = self.write_lock()?;
        let mut inner = self.lock();
        let inner = &mut *inner;
        self.repair(inner)?;
        let mut applied = Applied::default();

        // Resolve the plan against the store as it is now: what is already
        // gone is skipped; a partition written to since the plan loses only
        // the records the plan listed, row by row.
        let mut drops: Vec<(Part, u64)> = Vec::new();
        let mut edges: BTreeMap<(String, String), Vec<(u64, u64)>> = BTreeMap::new();
        // Per partition: (anonymize?, sequence ranges) jobs.
        type RowJobs = Vec<(bool, Vec<[u64; 2]>)>;
        let mut rows: Vec<(Part, RowJobs)> = Vec::new();
        for ch in chains {
            // The chain's live partitions, segments and record counts, once.
            let mut parts: HashMap<i64, Part> = self
                .parts_where(
                    &inner.cat,
                    "tenant = ?1 AND stream = ?2 AND state = 0",
                    &[&ch.tenant.as_str(), &ch.stream.as_str()],
                )?
                .into_iter()
                .map(|p| (p.start, p))
                .collect();
            let mut stored: HashMap<i64, Vec<(u64, u64)>> = HashMap::new();
            if !ch.dropped.is_empty() {
                for sa in segments_of(&inner.cat, &ch.tenant, &ch.stream, None)? {
                    stored
                        .entry(sa.partition)
                        .or_default()
                        .push((sa.segment.first, sa.segment.last));
                }
            }
            for dp in &ch.dropped {
                let Some(p) = parts.remove(&dp.start_us) else {
                    continue;
                };
                let now = stored.remove(&p.id).unwrap_or_default();
                let planned: Vec<(u64, u64)> = dp.segments.iter().map(|s| (s.first, s.last)).collect();
                if now == planned {
                    let live: u64 = Self::groups_of(&inner.cat, p.id)?.iter().map(|g| g.records).sum();
                    edges
                        .entry((ch.tenant.clone(), ch.stream.clone()))
                        .or_default()
                        .extend(planned);
                    drops.push((p, live));
                } else {
                    let seqs = planned.iter().map(|&(a, b)| [a, b]).collect();
                    rows.push((p, vec![(false, seqs)]));
                }
            }
            for rr in &ch.rows {
                let Some(p) = parts.get(&rr.partition_start_us).cloned() else {
                    continue;
                };
                let anonymize = rr.action == Action::Anonymize;
                match rows.iter_mut().find(|(q, _)| q.id == p.id) {
                    Some((_, jobs)) => jobs.push((anonymize, rr.seqs.clone())),
                    None => rows.push((p, vec![(anonymize, rr.seqs.clone())])),
                }
            }
        }
        let total_units = (drops.len() + rows.len()) as u64;
        let mut done = 0;
        progress(0, total_units);

        if !drops.is_empty() {
            let mut nodes = Vec::new();
            for ((tenant, stream), segs) in edges.iter_mut() {
                for n in self.edge_nodes(inner, tenant, stream, segs)? {
                    nodes.push((tenant.clone(), stream.clone(), n));
                }
            }
            let tx = inner
                .cat
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            for (tenant, stream, (level, idx, hash)) in &nodes {
                tx.execute(
                    "INSERT INTO merkle_nodes(tenant,stream,level,idx,hash) VALUES(?1,?2,?3,?4,?5)
                     ON CONFLICT DO UPDATE SET hash=?5",
                    params![tenant, stream, level, *idx as i64, &hash[..]],
                )
                .map_err(db)?;
            }
            for (p, _) in &drops {
                tx.execute("UPDATE partitions SET state=?2 WHERE id=?1", params![p.id, DROPPING])
                    .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            crashpoint::hit("sweep.after_mark_dropping");
            for (n, (p, live)) in drops.iter().enumerate() {
                applied.bytes_freed += self.file_bytes(p);
                applied.deleted += live;
                applied.partitions_dropped += 1;
                self.remove_files(inner, p)?;
                done += 1;
                progress(done, total_units);
                if n == drops.len() / 2 {
                    crashpoint::hit("sweep.mid_drop");
                }
            }
            let tx = inner
                .cat
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            for (p, _) in &drops {
                forget_partition(&tx, p.id)?;
            }
            tx.commit().map_err(db)?;
        }
        if !rows.is_empty() {
            let tx = inner
                .cat
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            for (p, _) in &rows {
                tx.execute("UPDATE partitions SET state=?2 WHERE id=?1", params![p.id, DIRTY])
                    .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            crashpoint::hit("sweep.after_mark_dirty");
            // Per partition, per group: the new counts and time bounds.
            let mut settled: Vec<(Part, Vec<GroupChange>)> = Vec::new();
            for (p, jobs) in &rows {
                let bounds = Self::group_bounds(&inner.cat, p.id)?;
                let c = self.conn(inner, p, false)?;
                // Durability comes from one sync of every touched file
                // below, not a sync per partition commit: a process crash
                // loses nothing either way (the partition stays dirty until
                // the catalog commit after the sync).
                c.execute_batch("PRAGMA synchronous=OFF").map_err(db)?;
                let tx = c.unchecked_transaction().map_err(db)?;
                let mut changed = Vec::new();
                for (anonymize, seqs) in jobs {
                    let n = partition::redact(&tx, seqs, *anonymize, &mut changed)?;
                    if *anonymize {
                        applied.anonymized += n;
                    } else {
                        applied.deleted += n;
                    }
                }
                tx.commit().map_err(db)?;
                c.execute_batch("PRAGMA synchronous=FULL").map_err(db)?;
                crashpoint::hit("sweep.after_partition_rows");
                let changes = group_changes(c, &changed, &bounds)?;
                settled.push((p.clone(), changes));
                done += 1;
                progress(done, total_units);
            }
            self.sync_partitions(settled.iter().map(|(p, _)| p))?;
            let tx = inner
                .cat
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            for (p, changes) in &settled {
                for g in changes {
                    tx.execute(
                        "UPDATE partition_groups SET records=records-?4, anonymized=anonymized+?5, deleted=deleted+?6,
                           min_ts=?7, max_ts=?8 WHERE partition_id=?1 AND scope=?2 AND class=?3",
                        params![
                            p.id,
                            g.scope,
                            g.class,
                            g.records_gone,
                            g.anonymized,
                            g.deleted,
                            g.min_ts,
                            g.max_ts
                        ],
                    )
                    .map_err(db)?;
                }
                // Bytes on disk as `settle` (and ingest) record them.
                tx.execute(
                    "UPDATE partitions SET state=?2, bytes=?3 WHERE id=?1",
                    params![p.id, LIVE, self.file_bytes(p) as i64],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)?;
        }
        Ok(applied)
    }

    fn chains(&self) -> Result<Vec<ChainHead>> {
        let inner = self.lock();
        let mut st = inner
            .cat
            .prepare("SELECT tenant, stream, sealed, sealed_us FROM chains ORDER BY tenant, stream")
            .map_err(db)?;
        let rows: Vec<(String, String, i64, i64)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(db)?
            .collect::<std::result::Result<_, _>>()
            .map_err(db)?;
        let mut out = Vec::new();
        for (tenant, stream, sealed, sealed_us) in rows {
            let cs = Self::chain_state(&inner.cat, &tenant, &stream)?;
            out.push(ChainHead {
                size: cs.seq,
                hash: cs.hash,
                root: cs.frontier.root(),
                sealed: sealed as u64,
                sealed_us,
                tenant,
                stream,
            });
        }
        Ok(out)
    }

    fn mark_sealed(&self, tenant: &str, stream: &str, size: u64, ts_us: i64) -> Result<()> {
        let inner = self.lock();
        inner
            .cat
            .execute(
                "UPDATE chains SET sealed=max(sealed, ?3), sealed_us=?4 WHERE tenant=?1 AND stream=?2",
                params![tenant, stream, size as i64, ts_us],
            )
            .map_err(db)?;
        Ok(())
    }

    fn segments(&self, tenant: &str, stream: &str) -> Result<Vec<SegmentAt>> {
        let inner = self.lock();
        segments_of(&inner.cat, tenant, stream, None)
    }

    fn row_reader(&self) -> Result<Box<dyn RowReader + '_>> {
        Ok(Box::new(Reader::new(self)))
    }

    fn partitions(&self, tenant: &str, stream: &str) -> Result<Vec<(i64, bool)>> {
        let inner = self.lock();
        let mut st = inner
            .cat
            .prepare_cached(
                "SELECT id, state FROM partitions WHERE tenant=?1 AND stream=?2 AND state != ?3 ORDER BY start_us",
            )
            .map_err(db)?;
        let rows = st
            .query_map(params![tenant, stream, DROPPING], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? == DIRTY))
            })
            .map_err(db)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db)
    }

    fn merkle_node(&self, tenant: &str, stream: &str, level: u32, index: u64) -> Result<Option<Hash>> {
        let inner = self.lock();
        let h: Option<Vec<u8>> = inner
            .cat
            .query_row(
                "SELECT hash FROM merkle_nodes WHERE tenant=?1 AND stream=?2 AND level=?3 AND idx=?4",
                params![tenant, stream, level, index as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        h.map(|h| {
            h.try_into()
                .map_err(|_| StoreError::Corrupt(format!("Merkle node {level}/{index} of {tenant}/{stream}")))
        })
        .transpose()
    }

    fn leaves(&self, tenant: &str, stream: &str, first: u64, last: u64) -> Result<Vec<Option<Hash>>> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        self.leaves_in(inner, tenant, stream, first, last)
    }

    fn locate(&self, id: &[u8; 16]) -> Result<Option<(String, String, u64)>> {
        let parts = {
            let inner = self.lock();
            self.parts_where(&inner.cat, "state != 2 ORDER BY start_us DESC", &[])?
        };
        // One-off read-only connections: a lookup must not evict the writer's.
        let mut reader = Reader::new(self);
        for p in parts {
            reader.know(p.id, self.part_path(&p.path));
            let seq: Option<i64> = reader.checked(p.id, &|c| {
                c.query_row("SELECT seq FROM records WHERE id=?1", [&id[..]], |r| r.get(0))
                    .optional()
                    .map_err(db)
            })?;
            if let Some(seq) = seq {
                return Ok(Some((p.tenant.to_string(), p.stream.to_string(), seq as u64)));
            }
        }
        Ok(None)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        let cat = self.key_conn();
        cat.query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
            .optional()
            .map_err(db)
    }

    fn set_meta(&self, key: &str, value: Option<&str>) -> Result<()> {
        let cat = self.key_conn();
        match value {
            Some(v) => cat.execute(
                "INSERT INTO meta(key,value) VALUES(?1,?2) ON CONFLICT(key) DO UPDATE SET value=?2",
                [key, v],
            ),
            None => cat.execute("DELETE FROM meta WHERE key=?1", [key]),
        }
        .map_err(db)?;
        Ok(())
    }

    fn tenant_key(&self, tenant: &TenantId) -> Result<Option<Vec<u8>>> {
        let cat = self.key_conn();
        cat.query_row(
            "SELECT wrapped FROM tenant_keys WHERE tenant=?1",
            [tenant.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)
    }

    fn put_tenant_key(&self, tenant: &TenantId, wrapped: &[u8], now_us: i64) -> Result<Vec<u8>> {
        let cat = self.key_conn();
        cat.execute(
            "INSERT INTO tenant_keys(tenant,wrapped,created_us) VALUES(?1,?2,?3) ON CONFLICT(tenant) DO NOTHING",
            params![tenant.as_str(), wrapped, now_us],
        )
        .map_err(db)?;
        cat.query_row(
            "SELECT wrapped FROM tenant_keys WHERE tenant=?1",
            [tenant.as_str()],
            |r| r.get(0),
        )
        .map_err(db)
    }

    fn data_keys_by_ref(&self, tenant: &TenantId, refs: &[Vec<u8>]) -> Result<Vec<Option<StoredKey>>> {
        let cat = self.key_conn();
        let mut st = cat
            .prepare_cached("SELECT id, wrapped FROM data_keys WHERE tenant=?1 AND ref=?2")
            .map_err(db)?;
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let row: Option<(KeyId, Option<Vec<u8>>)> = st
                .query_row(params![tenant.as_str(), r], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db)?;
            out.push(row.map(|(id, wrapped)| StoredKey {
                id,
                tenant: tenant.clone(),
                key_ref: r.clone(),
                wrapped,
            }));
        }
        Ok(out)
    }

    fn data_keys(&self, ids: &[KeyId]) -> Result<Vec<StoredKey>> {
        let cat = self.key_conn();
        let mut st = cat
            .prepare_cached("SELECT tenant, ref, wrapped FROM data_keys WHERE id=?1")
            .map_err(db)?;
        let mut out = Vec::new();
        for id in ids {
            let row: Option<(String, Vec<u8>, Option<Vec<u8>>)> = st
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(db)?;
            if let Some((t, r, w)) = row {
                out.push(StoredKey {
                    id: *id,
                    tenant: TenantId::new(&t).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    key_ref: r,
                    wrapped: w,
                });
            }
        }
        Ok(out)
    }

    fn record_policy(&self, body: &str, now_us: i64) -> Result<(i64, bool)> {
        let cat = self.key_conn();
        cat.execute(
            "INSERT INTO policy_versions(body, created_us) VALUES(?1, ?2) ON CONFLICT(body) DO NOTHING",
            params![body, now_us],
        )
        .map_err(db)?;
        let (id, entered): (i64, bool) = cat
            .query_row("SELECT id, entered FROM policy_versions WHERE body=?1", [body], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(db)?;
        Ok((id, !entered))
    }

    fn mark_policy_entered(&self, version: i64) -> Result<()> {
        let cat = self.key_conn();
        cat.execute("UPDATE policy_versions SET entered=1 WHERE id=?1", [version])
            .map_err(db)?;
        Ok(())
    }

    fn append_ledger(&self, seal: &mut dyn FnMut(u64, [u8; 32]) -> LedgerEntry) -> Result<LedgerEntry> {
        self.append_entry(seal, None)
    }

    fn append_ledger_marked(
        &self,
        seal: &mut dyn FnMut(u64, [u8; 32]) -> LedgerEntry,
        mark: &str,
    ) -> Result<LedgerEntry> {
        self.append_entry(seal, Some(mark))
    }

    fn trim_ledger(&self, through: u64) -> Result<u64> {
        let cat = self.key_conn();
        Ok(cat
            .execute(
                "DELETE FROM ledger WHERE seq <= ?1",
                [through.min(i64::MAX as u64) as i64],
            )
            .map_err(db)? as u64)
    }

    fn ledger(&self, from: u64, limit: usize) -> Result<Vec<LedgerEntry>> {
        let cat = self.key_conn();
        let mut st = cat
            .prepare_cached(
                "SELECT seq,ts_us,actor,kind,tenant,body,prev,hash,mac FROM ledger WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(db)?;
        let rows = st
            .query_map(params![from as i64, limit.min(i64::MAX as usize) as i64], |r| {
                // A damaged hash column is reported by verification, not here.
                let h = |v: Vec<u8>| -> [u8; 32] { v.try_into().unwrap_or([0u8; 32]) };
                Ok(LedgerEntry {
                    seq: r.get::<_, i64>(0)? as u64,
                    ts_us: r.get(1)?,
                    actor: r.get(2)?,
                    kind: r.get(3)?,
                    tenant: r.get(4)?,
                    body: r.get(5)?,
                    prev: h(r.get(6)?),
                    hash: h(r.get(7)?),
                    mac: h(r.get(8)?),
                })
            })
            .map_err(db)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db)
    }

    fn policy(&self, version: i64) -> Result<Option<String>> {
        let cat = self.key_conn();
        cat.query_row("SELECT body FROM policy_versions WHERE id=?1", [version], |r| r.get(0))
            .optional()
            .map_err(db)
    }

    fn select(&self, sel: &Selection, holds: &[HoldScope]) -> Result<Selected> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let tenant = sel.tenant.as_str();
        let stream = sel.stream.as_ref().map(|s| s.to_string());
        let since = sel.since_us.unwrap_or(i64::MIN);
        let until = sel.until_us.unwrap_or(i64::MAX);
        let parts = self.parts_where(
            &inner.cat,
            "tenant=?1 AND (?2 IS NULL OR stream=?2) AND end_us>?3 AND start_us<?4 AND state != 2
             ORDER BY stream, start_us",
            &[&tenant, &stream, &since, &until],
        )?;
        if !sel.pseudonyms.is_empty() {
            self.refresh_filters(inner, tenant)?;
        }
        let holds: Vec<&HoldScope> = holds.iter().filter(|h| h.tenant == tenant).collect();
        let mut heads: HashMap<String, u64> = HashMap::new();
        let mut groups: BTreeMap<(String, String), SelectedGroup> = BTreeMap::new();
        let mut chains: BTreeMap<(String, String), ChainRemoval> = BTreeMap::new();
        let mut found = std::collections::BTreeSet::new();
        let mut held_subjects = std::collections::BTreeSet::new();
        for p in &parts {
            let subjects: Vec<Option<[u8; 32]>> = if sel.pseudonyms.is_empty() {
                vec![None]
            } else {
                Self::candidates(inner, p.id, &sel.pseudonyms)
                    .into_iter()
                    .map(Some)
                    .collect()
            };
            if subjects.is_empty() {
                continue;
            }
            let stream = p.stream.to_string();
            let max_seq = match heads.get(&stream) {
                Some(h) => *h,
                None => {
                    let h = Self::head(&inner.cat, tenant, &stream)?;
                    heads.insert(stream.clone(), h);
                    h
                }
            };
            let f = partition::RowFilter {
                scope: sel.scope.as_deref(),
                since_us: since,
                until_us: until,
                max_seq,
                anonymize: sel.action == Action::Anonymize,
            };
            let c = self.conn(inner, p, false)?;
            let mut seqs = Vec::new();
            // Many candidate subjects here: one pass over the subject index.
            let rows: Vec<(Option<[u8; 32]>, partition::SelectedRow)> = if subjects.len() > MANY_SUBJECTS {
                let set: std::collections::HashSet<[u8; 32]> = subjects.iter().flatten().copied().collect();
                partition::select_rows_of(c, &set, &f)?
                    .into_iter()
                    .map(|r| (r.pseudonym, r))
                    .collect()
            } else {
                let mut all = Vec::new();
                for subject in &subjects {
                    all.extend(
                        partition::select_rows(c, subject.as_ref(), &f)?
                            .into_iter()
                            .map(|r| (*subject, r)),
                    );
                }
                all
            };
            {
                for (subject, r) in rows {
                    let g = groups
                        .entry((stream.clone(), r.scope.clone()))
                        .or_insert_with(|| SelectedGroup {
                            stream: stream.clone(),
                            scope: r.scope.clone(),
                            ..SelectedGroup::default()
                        });
                    if let (Some(ps), Some(_)) = (r.pseudonym, subject) {
                        found.insert(ps);
                    }
                    if holds
                        .iter()
                        .any(|h| h.covers(tenant, r.pseudonym.as_ref(), &r.scope, r.ts))
                    {
                        g.held += 1;
                        if let (Some(ps), Some(_)) = (r.pseudonym, subject) {
                            held_subjects.insert(ps);
                        }
                        continue;
                    }
                    g.records += 1;
                    g.bytes += r.bytes;
                    g.oldest_us = Some(g.oldest_us.map_or(r.ts, |o| o.min(r.ts)));
                    g.newest_us = Some(g.newest_us.map_or(r.ts, |o| o.max(r.ts)));
                    seqs.push([r.seq, r.seq]);
                }
            }
            if !seqs.is_empty() {
                chain_entry(&mut chains, p).rows.push(RowRemoval {
                    partition_start_us: p.start,
                    action: sel.action,
                    seqs: crate::merge_ranges(seqs),
                });
            }
        }
        Ok(Selected {
            groups: groups.into_values().collect(),
            chains: chains.into_values().collect(),
            found: found.into_iter().collect(),
            held_subjects: held_subjects.into_iter().collect(),
        })
    }

    fn destroy_keys(&self, ids: &[KeyId], now_us: i64) -> Result<u64> {
        let _g = self.write_lock()?;
        let c = self.key_conn();
        let tx = c.unchecked_transaction().map_err(db)?;
        let mut n = 0;
        {
            // The reference named the subject (by pseudonym): it goes too,
            // so nothing in the key table links back to the person.
            let mut st = tx
                .prepare_cached(
                    "UPDATE data_keys SET wrapped=NULL, destroyed_us=?2, ref=CAST('destroyed:' || id AS BLOB)
                     WHERE id=?1 AND wrapped IS NOT NULL",
                )
                .map_err(db)?;
            for id in ids {
                n += st.execute(params![id, now_us]).map_err(db)? as u64;
            }
        }
        tx.commit().map_err(db)?;
        crashpoint::hit("keys.after_destroy");
        // secure_delete zeroed the old key bytes in the pages just written; a
        // truncating checkpoint copies those pages over the main file (where
        // the old versions were) and empties the WAL (which may still hold
        // frames from when the key was stored). A reader holding an old
        // snapshot can make it wait; it is retried by the next destruction.
        let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(n)
    }

    fn add_hold(&self, h: &HoldRecord) -> Result<i64> {
        let inner = self.lock();
        let s = &h.scope;
        inner
            .cat
            .execute(
                "INSERT INTO holds(tenant,subject,pseudonym,scope,since_us,until_us,reason,actor,created_us,expires_us)
                 VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
                params![
                    s.tenant,
                    s.subject || s.pseudonym.is_some(),
                    s.pseudonym.as_ref().map(|p| &p[..]),
                    s.scope,
                    s.since_us,
                    s.until_us,
                    h.reason,
                    h.actor,
                    h.created_us,
                    h.expires_us
                ],
            )
            .map_err(db)?;
        Ok(inner.cat.last_insert_rowid())
    }

    fn set_hold_entry(&self, id: i64, ledger_seq: u64) -> Result<()> {
        let inner = self.lock();
        inner
            .cat
            .execute(
                "UPDATE holds SET ledger_seq=?2 WHERE id=?1",
                params![id, ledger_seq as i64],
            )
            .map_err(db)?;
        Ok(())
    }

    fn release_hold(&self, id: i64, now_us: i64, reason: &str) -> Result<bool> {
        let inner = self.lock();
        // A released hold no longer needs to find its subject.
        let n = inner
            .cat
            .execute(
                "UPDATE holds SET released_us=?2, release_reason=?3, pseudonym=NULL WHERE id=?1 AND released_us IS NULL",
                params![id, now_us, reason],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn holds(&self, tenant: Option<&str>) -> Result<Vec<HoldRecord>> {
        let inner = self.lock();
        let mut st = inner
            .cat
            .prepare_cached(
                "SELECT id,tenant,subject,pseudonym,scope,since_us,until_us,reason,actor,created_us,expires_us,
                        released_us,release_reason,ledger_seq
                 FROM holds WHERE ?1 IS NULL OR tenant=?1 ORDER BY id",
            )
            .map_err(db)?;
        let rows = st
            .query_map([tenant], |r| {
                Ok(HoldRecord {
                    id: r.get(0)?,
                    scope: HoldScope {
                        tenant: r.get(1)?,
                        subject: r.get(2)?,
                        pseudonym: r.get::<_, Option<Vec<u8>>>(3)?.and_then(|v| v.try_into().ok()),
                        scope: r.get(4)?,
                        since_us: r.get(5)?,
                        until_us: r.get(6)?,
                    },
                    reason: r.get(7)?,
                    actor: r.get(8)?,
                    created_us: r.get(9)?,
                    expires_us: r.get(10)?,
                    released_us: r.get(11)?,
                    release_reason: r.get(12)?,
                    ledger_seq: r.get::<_, Option<i64>>(13)?.map(|v| v as u64),
                })
            })
            .map_err(db)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db)
    }

    fn begin_restoration(&self, tenant: &TenantId, created_us: i64, expires_us: i64, note: &str) -> Result<i64> {
        self.restoration_begin(tenant, created_us, expires_us, note)
    }

    fn add_restored(&self, id: i64, records: &[StoredRecord]) -> Result<u64> {
        self.restoration_add(id, records)
    }

    fn finish_restoration(&self, id: i64, ledger_seq: u64) -> Result<crate::Restoration> {
        self.restoration_finish(id, ledger_seq)
    }

    fn restorations(&self, tenant: Option<&str>) -> Result<Vec<crate::Restoration>> {
        self.restoration_list(tenant)
    }

    fn query_restored(&self, q: &RecordQuery, visit: &mut dyn FnMut(i64, StoredRecord) -> bool) -> Result<()> {
        self.restoration_query(q, visit)
    }

    fn drop_restoration(&self, id: i64) -> Result<u64> {
        self.restoration_drop(id)
    }

    fn erase_restored(&self, sel: &Selection, holds: &[HoldScope]) -> Result<u64> {
        self.restoration_erase(sel, holds)
    }

    fn record_run(&self, kind: &str, started_us: i64, finished_us: i64, status: &str, summary: &str) -> Result<i64> {
        let cat = self.key_conn();
        cat.execute(
            "INSERT INTO runs(kind,started_us,finished_us,status,summary) VALUES(?1,?2,?3,?4,?5)",
            params![kind, started_us, finished_us, status, summary],
        )
        .map_err(db)?;
        Ok(cat.last_insert_rowid())
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let cat = self.key_conn();
        let mut st = cat
            .prepare("SELECT id,kind,started_us,finished_us,status,summary FROM runs ORDER BY id DESC LIMIT ?1")
            .map_err(db)?;
        let rows = st
            .query_map([limit as i64], |r| {
                Ok(RunRecord {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    started_us: r.get(2)?,
                    finished_us: r.get(3)?,
                    status: r.get(4)?,
                    summary: r.get(5)?,
                })
            })
            .map_err(db)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db)
    }
}

/// Read-only connections kept open by one [`Reader`].
const READER_CONNECTIONS: usize = 8;

/// Rows a [`Reader`] reads from an immutable connection before checking
/// that the file did not change (and only then hands them on).
const CHECKED_ROWS: usize = 4096;

/// What identifies a partition file's content on disk: if none of it
/// changed and there is no write-ahead log, no write happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    /// The file's stamp, if it has no write-ahead log content (absent or
    /// empty `-wal`): then every committed row is in the file itself.
    fn of_quiet(path: &Path) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(format!("{}-wal", path.display())) {
            Ok(m) if m.len() > 0 => return None,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return None,
        }
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        })
    }
}

/// One connection of a [`Reader`]: immutable (with the stamp the file had
/// when it was opened) or an ordinary read-only one.
struct ReaderConn {
    conn: Connection,
    path: PathBuf,
    stamp: Option<Stamp>,
}

impl ReaderConn {
    /// Whether what was read through an immutable connection is what the
    /// file held: it did not change since the connection was opened.
    fn unchanged(&self) -> bool {
        self.stamp.is_none() || Stamp::of_quiet(&self.path) == self.stamp
    }
}

/// A [`RowReader`] over the embedded store: its own read-only connections,
/// a few kept open, none shared with the store's writer.
///
/// A partition file with no write-ahead log content is opened *immutable*:
/// SQLite then takes no locks and creates no `-shm`/`-wal` files, which for a
/// scan of thousands of cold partitions is most of the cost. Immutable means
/// SQLite trusts the file not to change, so the reader checks that it did
/// not — same inode, size, mtime and ctime, still no log — after reading each
/// chunk of rows and before handing them on; if it changed (a late write, a
/// purge, a checkpoint), the chunk is read again through an ordinary
/// connection, which sees a consistent snapshot.
struct Reader<'a> {
    store: &'a SqliteStore,
    conns: HashMap<i64, ReaderConn>,
    /// Partitions seen changing: read through ordinary connections only.
    busy: std::collections::HashSet<i64>,
    /// Partition paths callers already know (and hold the store's lock:
    /// looking them up would wait for it).
    paths: HashMap<i64, PathBuf>,
}

impl<'a> Reader<'a> {
    fn new(store: &'a SqliteStore) -> Self {
        Reader {
            store,
            conns: HashMap::new(),
            busy: std::collections::HashSet::new(),
            paths: HashMap::new(),
        }
    }

    /// Tells the reader where a partition's file is.
    fn know(&mut self, partition: i64, path: PathBuf) {
        self.paths.insert(partition, path);
    }

    /// This reader's connection to a partition.
    fn conn(&mut self, partition: i64) -> Result<&ReaderConn> {
        if !self.conns.contains_key(&partition) {
            let path = match self.paths.get(&partition) {
                Some(p) => p.clone(),
                None => {
                    let inner = self.store.lock();
                    self.store
                        .parts_where(&inner.cat, "id = ?1", &[&partition])?
                        .pop()
                        .map(|p| self.store.part_path(&p.path))
                        .ok_or_else(|| StoreError::Corrupt(format!("no partition {partition}")))?
                }
            };
            if self.conns.len() >= READER_CONNECTIONS {
                let k = *self.conns.keys().next().expect("non-empty");
                self.conns.remove(&k);
            }
            let stamp = if self.busy.contains(&partition) {
                None
            } else {
                Stamp::of_quiet(&path)
            };
            let conn = match stamp {
                Some(_) => partition::open_immutable(&path)?,
                None => partition::open_reader(&path).or_else(|_| partition::open(&path, false))?,
            };
            self.conns.insert(partition, ReaderConn { conn, path, stamp });
        }
        Ok(&self.conns[&partition])
    }

    /// Runs `read` on the partition's connection; if that was immutable and
    /// the file changed meanwhile, runs it again on an ordinary connection.
    fn checked<T>(&mut self, partition: i64, read: &dyn Fn(&Connection) -> Result<T>) -> Result<T> {
        let c = self.conn(partition)?;
        let out = read(&c.conn);
        if c.unchanged() {
            return out;
        }
        self.conns.remove(&partition);
        self.busy.insert(partition);
        read(&self.conn(partition)?.conn)
    }
}

impl RowReader for Reader<'_> {
    fn scan(&mut self, partition: i64, first: u64, last: u64, visit: &mut dyn FnMut(RawRow)) -> Result<()> {
        let mut next = first;
        while next <= last {
            if self.conn(partition)?.stamp.is_none() {
                return partition::scan(&self.conns[&partition].conn, next, last, visit);
            }
            let rows = self.checked(partition, &|c| partition::scan_chunk(c, next, last, CHECKED_ROWS))?;
            let n = rows.len();
            let Some(end) = rows.last().map(|r| r.seq) else {
                break;
            };
            rows.into_iter().for_each(&mut *visit);
            if n < CHECKED_ROWS || end == u64::MAX {
                break;
            }
            next = end + 1;
        }
        Ok(())
    }

    fn row_count(&mut self, partition: i64) -> Result<u64> {
        self.checked(partition, &partition::row_count)
    }

    fn strays(&mut self, partition: i64, segments: &[(u64, u64)]) -> Result<Vec<u64>> {
        self.checked(partition, &|c| partition::strays(c, segments))
    }
}

fn partition_path(tenant: &str, stream: &StreamId, start_us: i64, span_us: i64) -> String {
    let d = chrono_like(start_us);
    let name = if span_us % 86_400_000_000 == 0 {
        d.0
    } else {
        format!("{}T{:02}", d.0, d.1)
    };
    format!("partitions/{tenant}/{}-v{}/{name}.db", stream.name, stream.version)
}

/// (YYYY-MM-DD, hour) of a µs timestamp, without pulling a date library into the store.
fn chrono_like(us: i64) -> (String, i64) {
    let secs = us.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let hour = secs.rem_euclid(86_400) / 3600;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (format!("{y:04}-{m:02}-{d:02}"), hour)
}

/// Allocated bytes under a directory.
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(format!("reading {}", d.display()), e)),
        };
        for e in rd {
            let e = e.map_err(|e| StoreError::io(format!("reading {}", d.display()), e))?;
            let m = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_paths_name_the_day_or_hour() {
        let s: StreamId = "audit:1".parse().unwrap();
        let t = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
        assert_eq!(
            partition_path("acme", &s, t, 86_400_000_000),
            "partitions/acme/audit-v1/2026-01-01.db"
        );
        assert_eq!(
            partition_path("acme", &s, t + 6 * 3_600_000_000, 3_600_000_000),
            "partitions/acme/audit-v1/2026-01-01T06.db"
        );
        assert_eq!(chrono_like(951_782_400_000_000).0, "2000-02-29");
    }
}
