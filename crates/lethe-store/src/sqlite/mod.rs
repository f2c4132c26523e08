//! The embedded backend: a SQLite catalog plus one SQLite file per (tenant,
//! stream, period) partition, so that an expired partition is removed by
//! unlinking its file and its disk space comes back at once.
//!
//! Crash safety rests on two catalog states. Before any partition file is
//! written, the partitions a write will touch are marked `dirty` in the
//! catalog (one durable commit); the catalog's chain heads and group counts are
//! updated and the marks cleared only after every partition commit. Before
//! every write (never on open: reads stop at the committed heads), dirty
//! partitions are repaired: rows past the committed chain head (from a batch
//! that never finished) are removed and the partition's counts are recomputed
//! from the file — unless the catalog contradicts itself, which refuses the
//! write instead of deleting committed records. Partitions being removed
//! whole are marked `dropping` first, and a dropping partition is always
//! finished off.

mod access;
mod append;
mod catalog;
mod chain;
mod checkpoint;
mod filter;
mod job_lock;
mod partition;
mod query;
mod reader;
mod removal;
mod repair;
mod restored;
mod schema;
mod selection;

pub use partition::{raw_row, COLUMNS as ROW_COLUMNS, MAX_SEQ, SEQ_BITS};

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use lethe_core::hold::HoldScope;
use lethe_core::policy::GroupKey;
use lethe_core::{Classification, StreamId, TenantId};
use rusqlite::{params, Connection, OptionalExtension};

use lethe_core::integrity::{self};
use lethe_core::merkle::{Frontier, Hash};

use crate::{
    AppendReport, Applied, Batch, CaptureDrop, ChainHead, ChainRemoval, DroppedPartition, GroupStats, HoldRecord,
    KeyId, LedgerEntry, NewRecord, PartGroupRef, Progress, RecordQuery, Removal, Result, RetentionEffect,
    RetentionTarget, RowReader, RowRemoval, RunRecord, Segment, SegmentAt, Selected, SelectedGroup, Selection, Store,
    StoreError, StoredKey, StoredRecord,
};
use filter::SubjectFilter;
use reader::Reader;
use repair::forget_partition;

/// Subject filters kept in memory at once (~8 KB each); past this the
/// cache starts over.
const CACHED_FILTERS: usize = 4096;

pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    let retryable = matches!(e.sqlite_error_code(), Some(DatabaseBusy | DatabaseLocked));
    StoreError::Backend {
        source: Box::new(e),
        retryable,
    }
}

const LIVE: i64 = 0;
const DIRTY: i64 = 1;
const DROPPING: i64 = 2;

/// Partitions synced file by file (two `fsync`s each: log and file) at most;
/// past this one `syncfs` is cheaper.
const SYNC_FILES_AT_MOST: usize = 2;

/// The files of one partition: the database and what SQLite keeps beside it.
const PARTITION_FILES: [&str; 4] = ["", "-wal", "-shm", "-journal"];

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
    /// The job lock (`jobs.lock`): one sweep, purge or restoration at a time.
    jobs: job_lock::JobLock,
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
    /// Open partition files by path (one connection per file, however many
    /// partitions it holds).
    parts: HashMap<String, (Connection, u64)>,
    /// Evicted from `parts` but kept open, cache released (see [`IDLE_PARTITIONS`]).
    idle: HashMap<String, (Connection, u64)>,
    /// How many idle connections the open-files limit allows.
    idle_limit: usize,
    /// How many lookup connections it allows besides.
    lookup_limit: usize,
    tick: u64,
    /// Subject filters by partition with their version, as last read or
    /// written. Versions are checksums of the bits: a cached filter is used
    /// only while the catalog still holds its version (other processes
    /// write too).
    filters: HashMap<i64, (i64, SubjectFilter)>,
    /// Read-only connections for exhaustive subject lookups (a purge's
    /// verification looks in every partition in range), kept between
    /// purges with their compiled statements, each with the file identity
    /// (device, inode) it was opened on: a file dropped and made again is
    /// opened anew.
    lookups: HashMap<String, (Connection, (u64, u64), u64)>,
    /// Data keys this process saw stored and live, valid while the
    /// catalog's key epoch stays what it was when they were seen.
    live_keys: LiveKeys,
}

/// Data keys known stored and live at one key epoch, so a batch's key check
/// reads the key table only for keys this process has not seen.
///
/// Every destruction (by any process) moves the epoch in the same commit, so
/// a key seen live at the current epoch is still live: the set is exact, not
/// a hint. Bounded: past [`LiveKeys::LIMIT`] it starts again.
#[derive(Default)]
pub(super) struct LiveKeys {
    epoch: u64,
    ids: std::collections::HashSet<i64>,
}

impl LiveKeys {
    /// Keys remembered at once (~16 MB at the limit).
    const LIMIT: usize = 1 << 20;

    /// Forgets everything unless `epoch` is the epoch the set was built at.
    pub(super) fn at(&mut self, epoch: u64) {
        if self.epoch != epoch || self.ids.len() >= Self::LIMIT {
            self.ids.clear();
            self.epoch = epoch;
        }
    }

    /// Whether `id` was seen live at the current epoch.
    pub(super) fn contains(&self, id: i64) -> bool {
        self.ids.contains(&id)
    }

    /// Remembers keys seen live (or stored by a batch that committed).
    pub(super) fn extend(&mut self, ids: impl IntoIterator<Item = i64>) {
        self.ids.extend(ids);
    }
}

/// Lookup connections kept at once (the least recently used goes first),
/// ~50 KB each: a year of two streams of two tenants' daily partitions.
/// More partitions in a purge's range than this are reopened per purge.
const LOOKUP_CONNECTIONS: usize = 2048;

#[derive(Debug, Clone)]
struct Part {
    id: i64,
    tenant: TenantId,
    stream: StreamId,
    start: i64,
    end: i64,
    path: String,
    /// [`LIVE`], [`DIRTY`] (a write is in flight, or a crash left one) or [`DROPPING`].
    state: i64,
}

impl Part {
    /// The error for this partition's file being gone.
    fn lost(&self) -> StoreError {
        StoreError::Lost(format!(
            "partition file {} ({}/{} from {}) is missing",
            self.path,
            self.tenant,
            self.stream,
            chrono_like(self.start).0
        ))
    }
}

/// What [`SqliteStore::release`] did to a partition's file.
struct Release {
    /// Disk bytes given back (the file went).
    bytes: u64,
    /// Rows were deleted from a file other partitions still use: sync it.
    rows: bool,
}

#[derive(Debug, Clone)]
struct PartGroup {
    scope: String,
    class: Classification,
    records: u64,
    deleted: u64,
}

/// Holds a cross-process lock (the writer lock, or the job lock) until dropped.
struct WriteGuard<'a>(&'a File);

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl SqliteStore {
    /// Opens (creating if needed) a store in `dir` with partitions of
    /// `span_secs` seconds. What a crash left in flight is repaired before
    /// the first write; reads never see it (they stop at committed heads).
    pub fn open(dir: &Path, span_secs: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let lock_file = flock_file(&dir.join("lock"))?;
        let jobs = flock_file(&dir.join("jobs.lock"))?;
        let cat = schema::open_catalog(dir, span_secs)?;
        let keys = Connection::open(dir.join("catalog.db")).map_err(db)?;
        keys.execute_batch(
            "PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000; PRAGMA wal_autocheckpoint=0;
             PRAGMA journal_size_limit=4194304; PRAGMA secure_delete=ON;",
        )
        .map_err(db)?;
        let room = connection_room();
        let store = SqliteStore {
            dir: dir.to_path_buf(),
            span_us: span_secs as i64 * 1_000_000,
            lock_file,
            jobs: job_lock::JobLock::new(jobs),
            inner: Mutex::new(Inner {
                cat,
                parts: HashMap::new(),
                idle: HashMap::new(),
                idle_limit: idle_limit(room),
                lookup_limit: lookup_limit(room),
                tick: 0,
                filters: HashMap::new(),
                lookups: HashMap::new(),
                live_keys: LiveKeys::default(),
            }),
            keys: Mutex::new(keys),
            loading: Mutex::new(HashMap::new()),
            upkeep: checkpoint::Checkpointer::start(&dir.join("catalog.db"))?,
        };
        {
            // Restorations a crash interrupted are finished or discarded
            // (copies outside every chain). Partitions are repaired before
            // the first write, not here: opening never deletes a record.
            let _g = store.write_lock()?;
            let inner = store.lock();
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
        if !inner.parts.contains_key(&p.path) {
            let c = match inner.idle.remove(&p.path) {
                Some((c, _)) => {
                    c.execute_batch(partition::FULL_CACHE).map_err(db)?;
                    c
                }
                None => {
                    let path = self.part_path(&p.path);
                    if !create && !path.exists() {
                        return Err(p.lost());
                    }
                    partition::open(&path, create)?
                }
            };
            if inner.parts.len() >= OPEN_PARTITIONS {
                if let Some(old) = least_recent(&inner.parts, |(_, t)| *t) {
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
                if let Some(old) = least_recent(&inner.idle, |(_, t)| *t) {
                    if let Some((c, _)) = inner.idle.remove(&old) {
                        self.upkeep.close(c);
                    }
                }
            }
            inner.parts.insert(p.path.clone(), (c, tick));
        }
        let e = inner.parts.get_mut(&p.path).expect("inserted above");
        e.1 = tick;
        Ok(&e.0)
    }

    /// A connection for reading a partition, or `None` for a partition a
    /// write has only begun (marked dirty): its file may not exist yet, or
    /// hold no table yet, and none of its rows is committed. A committed
    /// partition whose file is gone is [`StoreError::Lost`], never a new
    /// empty file.
    fn read_conn<'a>(&self, inner: &'a mut Inner, p: &Part) -> Result<Option<&'a Connection>> {
        let path = self.part_path(&p.path);
        if !inner.parts.contains_key(&p.path) && !inner.idle.contains_key(&p.path) && !path.exists() {
            if p.state == DIRTY {
                return Ok(None);
            }
            return Err(p.lost());
        }
        let c = self.conn(inner, p, false)?;
        if p.state == DIRTY && !partition::has_table(c)? {
            return Ok(None);
        }
        Ok(Some(self.conn(inner, p, false)?))
    }

    /// Hands a partition whose WAL has grown past the limit to the background
    /// checkpointer (partition connections never checkpoint on commit).
    fn maybe_checkpoint(&self, p: &Part) {
        let wal = PathBuf::from(format!("{}-wal", self.part_path(&p.path).display()));
        if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > PARTITION_WAL_LIMIT {
            self.upkeep.checkpoint(self.part_path(&p.path));
        }
    }

    /// A read-only connection to a partition for an exhaustive lookup, kept
    /// open between calls (see `Inner::lookups`); `None` for a partition a
    /// write has only begun.
    fn lookup_conn<'a>(&self, inner: &'a mut Inner, p: &Part) -> Result<Option<&'a Connection>> {
        use std::os::unix::fs::MetadataExt;
        let path = self.part_path(&p.path);
        let id = match std::fs::metadata(&path) {
            Ok(m) => (m.dev(), m.ino()),
            Err(_) if p.state == DIRTY => return Ok(None),
            Err(_) => return Err(p.lost()),
        };
        inner.tick += 1;
        let tick = inner.tick;
        if inner.lookups.get(&p.path).is_none_or(|(_, have, _)| *have != id) {
            if inner.lookups.len() >= inner.lookup_limit {
                if let Some(old) = least_recent(&inner.lookups, |(_, _, t)| *t) {
                    inner.lookups.remove(&old);
                }
            }
            let c = partition::open_reader(&path)?;
            // A lookup reads a few index pages: no page cache to speak of.
            c.execute_batch("PRAGMA cache_size=-32").map_err(db)?;
            if p.state == DIRTY && !partition::has_table(&c)? {
                return Ok(None);
            }
            inner.lookups.insert(p.path.clone(), (c, id, tick));
        }
        let e = inner.lookups.get_mut(&p.path).expect("inserted above");
        e.2 = tick;
        Ok(Some(&e.0))
    }

    /// Partitions still living in the file at `path` (not being dropped).
    fn sharers(cat: &Connection, path: &str) -> Result<usize> {
        cat.query_row(
            "SELECT count(*) FROM partitions WHERE path=?1 AND state!=?2",
            params![path, DROPPING],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n as usize)
        .map_err(db)
    }

    /// Takes a partition the catalog marked `dropping` out of its file: the
    /// whole file goes — disk returned at once — when no other partition
    /// lives in it any more, else only the partition's rows are deleted,
    /// their pages left for the file's later writes. Idempotent, so crash
    /// repair can run it again. Rows deleted are not yet durable: the
    /// caller syncs every partition that [`Release::rows`] names, once,
    /// before the catalog forgets them (a forgotten partition's rows must
    /// not come back).
    fn release(&self, inner: &mut Inner, p: &Part) -> Result<Release> {
        if Self::sharers(&inner.cat, &p.path)? == 0 {
            // A connection to this file still waiting to close in the
            // background would change the sizes measured here and — closing
            // after the unlink — remove by name the log of a new file made
            // at the same path.
            self.upkeep.settle();
            let bytes = self.file_bytes(p);
            self.remove_files(inner, p)?;
            return Ok(Release { bytes, rows: false });
        }
        if !self.part_path(&p.path).exists() {
            return Ok(Release { bytes: 0, rows: false });
        }
        let c = self.conn(inner, p, false)?;
        let rows = partition::has_table(c)? && partition::remove_part(c, p.id)? > 0;
        Ok(Release { bytes: 0, rows })
    }

    /// Unlinks a partition file and everything SQLite keeps beside it.
    fn remove_files(&self, inner: &mut Inner, p: &Part) -> Result<()> {
        inner.lookups.remove(&p.path);
        for (c, _) in [inner.parts.remove(&p.path), inner.idle.remove(&p.path)]
            .into_iter()
            .flatten()
        {
            // The file is about to go: closing must not first copy its WAL into it.
            partition::no_checkpoint_on_close(&c);
        }
        let base = self.part_path(&p.path);
        for suffix in PARTITION_FILES {
            let f = PathBuf::from(format!("{}{suffix}", base.display()));
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(format!("removing {}", f.display()), e)),
            }
        }
        Ok(())
    }

    /// What a partition occupies on disk now — its file and every file
    /// SQLite keeps beside it, all of which `remove_files` unlinks — so
    /// that a plan's bytes to free, a cleanup's bytes freed and `stats`
    /// agree with what the file system shows (the catalog's `bytes` column
    /// is only a hint: a log checkpointed or removed since it was written
    /// changes the figure).
    fn file_bytes(&self, p: &Part) -> u64 {
        self.path_bytes(&p.path)
    }

    fn path_bytes(&self, path: &str) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let base = self.part_path(path);
        PARTITION_FILES
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", base.display())).ok())
            .map(|m| m.blocks() * 512)
            .sum()
    }

    fn parts_where(&self, cat: &Connection, clause: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<Part>> {
        let sql = format!("SELECT id,tenant,stream,start_us,end_us,path,state FROM partitions WHERE {clause}");
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
            let (id, t, s, start, end, path, state) = row.map_err(db)?;
            out.push(Part {
                id,
                tenant: TenantId::new(&t).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                stream: s
                    .parse()
                    .map_err(|e: lethe_core::model::NameError| StoreError::Corrupt(e.to_string()))?,
                start,
                end,
                path,
                state,
            });
        }
        Ok(out)
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
}

/// Connections (three files each: database, WAL, shared memory) the
/// open-files limit leaves room for, after raising the soft limit towards
/// the hard one as servers commonly do and keeping 512 files for everything
/// else the process opens; `None` when the limit cannot be read.
fn connection_room() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
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
    Some((lim.rlim_cur as usize).saturating_sub(512) / 3)
}

/// Idle partition connections the room allows besides the open ones.
fn idle_limit(room: Option<usize>) -> usize {
    room.map_or(0, |r| r.saturating_sub(OPEN_PARTITIONS).min(IDLE_PARTITIONS))
}

/// Lookup connections (see `Inner::lookups`) the room allows besides the
/// writer's, at least [`OPEN_PARTITIONS`], at most [`LOOKUP_CONNECTIONS`].
fn lookup_limit(room: Option<usize>) -> usize {
    room.map_or(OPEN_PARTITIONS, |r| {
        r.saturating_sub(OPEN_PARTITIONS + IDLE_PARTITIONS)
            .clamp(OPEN_PARTITIONS, LOOKUP_CONNECTIONS)
    })
}

/// The key of the least recently used entry of a connection cache (each
/// entry carries the tick of its last use).
fn least_recent<V>(m: &HashMap<String, V>, tick: impl Fn(&V) -> u64) -> Option<String> {
    m.iter().min_by_key(|(_, v)| tick(v)).map(|(k, _)| k.clone())
}

/// A random number for file names (no RNG dependency in the store:
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

impl Store for SqliteStore {
    fn append_group(&self, group: &[&Batch]) -> Result<Vec<AppendReport>> {
        SqliteStore::append_group(self, group)
    }

    fn query(&self, q: &RecordQuery, visit: &mut dyn FnMut(StoredRecord) -> bool) -> Result<()> {
        SqliteStore::query(self, q, visit)
    }

    fn stats(&self, tenant: Option<&TenantId>) -> Result<Vec<GroupStats>> {
        SqliteStore::stats(self, tenant)
    }

    fn capture_drops(&self) -> Result<Vec<CaptureDrop>> {
        SqliteStore::capture_drops(self)
    }

    fn disk_bytes(&self) -> Result<u64> {
        dir_bytes(&self.dir)
    }

    fn plan_removal(&self, targets: &[RetentionTarget], holds: &[HoldScope]) -> Result<Removal> {
        SqliteStore::plan_removal(self, targets, holds)
    }

    fn apply_removal(&self, chains: &[ChainRemoval], progress: Progress<'_>) -> Result<Applied> {
        SqliteStore::apply_removal(self, chains, progress)
    }

    fn chains(&self) -> Result<Vec<ChainHead>> {
        SqliteStore::chains(self)
    }

    fn mark_sealed(&self, tenant: &str, stream: &str, size: u64, ts_us: i64) -> Result<()> {
        SqliteStore::mark_sealed(self, tenant, stream, size, ts_us)
    }

    fn segments(&self, tenant: &str, stream: &str) -> Result<Vec<SegmentAt>> {
        SqliteStore::segments(self, tenant, stream)
    }

    fn row_reader(&self) -> Result<Box<dyn RowReader + '_>> {
        Ok(Box::new(Reader::new(self)))
    }

    fn partitions(&self, tenant: &str, stream: &str) -> Result<Vec<(i64, bool)>> {
        SqliteStore::partitions(self, tenant, stream)
    }

    fn merkle_node(&self, tenant: &str, stream: &str, level: u32, index: u64) -> Result<Option<Hash>> {
        SqliteStore::merkle_node(self, tenant, stream, level, index)
    }

    fn leaves(&self, tenant: &str, stream: &str, first: u64, last: u64) -> Result<Vec<Option<Hash>>> {
        SqliteStore::leaves(self, tenant, stream, first, last)
    }

    fn locate(&self, id: &[u8; 16]) -> Result<Option<(String, String, u64)>> {
        SqliteStore::locate(self, id)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        SqliteStore::meta(self, key)
    }

    fn set_meta(&self, key: &str, value: Option<&str>) -> Result<()> {
        SqliteStore::set_meta(self, key, value)
    }

    fn put_meta_once(&self, key: &str, value: &str) -> Result<String> {
        SqliteStore::put_meta_once(self, key, value)
    }

    fn key_epoch(&self) -> Result<u64> {
        SqliteStore::key_epoch(self)
    }

    fn lock_jobs(&self) -> Result<crate::JobGuard<'_>> {
        Ok(Box::new(self.jobs.lock()?))
    }

    fn ledger_of_kinds(&self, kinds: &[&str]) -> Result<Vec<LedgerEntry>> {
        SqliteStore::ledger_of_kinds(self, kinds)
    }

    fn all_data_keys(&self, tenant: Option<&str>) -> Result<Vec<StoredKey>> {
        SqliteStore::all_data_keys(self, tenant)
    }

    fn tenant_key(&self, tenant: &TenantId) -> Result<Option<Vec<u8>>> {
        SqliteStore::tenant_key(self, tenant)
    }

    fn put_tenant_key(&self, tenant: &TenantId, wrapped: &[u8], now_us: i64) -> Result<Vec<u8>> {
        SqliteStore::put_tenant_key(self, tenant, wrapped, now_us)
    }

    fn data_keys_by_ref(&self, tenant: &TenantId, refs: &[Vec<u8>]) -> Result<Vec<Option<StoredKey>>> {
        SqliteStore::data_keys_by_ref(self, tenant, refs)
    }

    fn data_keys(&self, ids: &[KeyId]) -> Result<Vec<StoredKey>> {
        SqliteStore::data_keys(self, ids)
    }

    fn record_policy(&self, body: &str, now_us: i64) -> Result<(i64, bool)> {
        SqliteStore::record_policy(self, body, now_us)
    }

    fn mark_policy_entered(&self, version: i64) -> Result<()> {
        SqliteStore::mark_policy_entered(self, version)
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
        SqliteStore::trim_ledger(self, through)
    }

    fn ledger(&self, from: u64, limit: usize) -> Result<Vec<LedgerEntry>> {
        SqliteStore::ledger(self, from, limit)
    }

    fn policy(&self, version: i64) -> Result<Option<String>> {
        SqliteStore::policy(self, version)
    }

    fn select(&self, sel: &Selection, holds: &[HoldScope]) -> Result<Selected> {
        SqliteStore::select(self, sel, holds)
    }

    fn destroy_keys(&self, ids: &[KeyId], now_us: i64) -> Result<u64> {
        SqliteStore::destroy_keys(self, ids, now_us)
    }

    fn add_hold(&self, h: &HoldRecord) -> Result<i64> {
        SqliteStore::add_hold(self, h)
    }

    fn set_hold_entry(&self, id: i64, ledger_seq: u64) -> Result<()> {
        SqliteStore::set_hold_entry(self, id, ledger_seq)
    }

    fn release_hold(&self, id: i64, now_us: i64, reason: &str) -> Result<bool> {
        SqliteStore::release_hold(self, id, now_us, reason)
    }

    fn holds(&self, tenant: Option<&str>) -> Result<Vec<HoldRecord>> {
        SqliteStore::holds(self, tenant)
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
        SqliteStore::record_run(self, kind, started_us, finished_us, status, summary)
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        SqliteStore::runs(self, limit)
    }

    fn put_access_key(&self, key: &crate::AccessKey) -> Result<()> {
        self.access_put(key)
    }

    fn access_keys(&self) -> Result<Vec<crate::AccessKey>> {
        self.access_list()
    }

    fn revoke_access_key(&self, id: &str, now_us: i64) -> Result<bool> {
        self.access_revoke(id, now_us)
    }

    fn touch_access_key(&self, id: &str, now_us: i64) -> Result<()> {
        self.access_touch(id, now_us)
    }
}

fn partition_path(class: &str, stream: &StreamId, start_us: i64, span_us: i64) -> String {
    let d = chrono_like(start_us);
    let name = if span_us % 86_400_000_000 == 0 {
        d.0
    } else {
        format!("{}T{:02}", d.0, d.1)
    };
    format!(
        "partitions/{}-v{}/{}/{name}.db",
        stream.name,
        stream.version,
        class_dir(class)
    )
}

/// An expiry class as a directory name: itself when it is a short name of
/// `[A-Za-z0-9_-]`, else `h` and a hash of it.
fn class_dir(class: &str) -> String {
    let plain = !class.is_empty()
        && class.len() <= 48
        && class
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        return class.to_string();
    }
    // FNV-1a: stable across versions and platforms, no dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in class.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("h{h:016x}")
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

/// Opens (creating) a file that is only ever `flock`ed.
fn flock_file(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))
}

/// A stored byte column as bytes, whatever type it holds (an edited row may
/// hold text, even text that is not UTF-8): the reader then finds the value
/// wrong, instead of every read of the table failing.
pub(crate) fn bytes_of(v: rusqlite::types::ValueRef<'_>) -> Vec<u8> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
        ValueRef::Integer(i) => i.to_string().into_bytes(),
        ValueRef::Real(f) => f.to_string().into_bytes(),
        ValueRef::Null => Vec::new(),
    }
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
            partition_path("30d-delete", &s, t, 86_400_000_000),
            "partitions/audit-v1/30d-delete/2026-01-01.db"
        );
        assert_eq!(
            partition_path("default", &s, t + 6 * 3_600_000_000, 3_600_000_000),
            "partitions/audit-v1/default/2026-01-01T06.db"
        );
        assert_eq!(class_dir("../x"), class_dir("../x"));
        assert!(class_dir("../x").starts_with('h') && !class_dir("../x").contains('/'));
        assert_eq!(chrono_like(951_782_400_000_000).0, "2000-02-29");
    }
}
