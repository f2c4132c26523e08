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
mod connections;
mod interface;
mod job_lock;
mod partition;
mod paths;
mod query;
mod readahead;
mod reader;
mod removal;
mod repair;
mod restored;
mod schema;
mod selection;

pub use partition::{raw_row, COLUMNS as ROW_COLUMNS, MAX_SEQ, SEQ_BITS};

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use lethe_core::hold::HoldScope;
use lethe_core::policy::GroupKey;
use lethe_core::{Classification, StreamId, TenantId};
use rusqlite::{params, Connection, OptionalExtension};

use lethe_core::merkle::Hash;

use crate::filter::{self, SubjectFilter};
use crate::{
    AppendReport, Applied, Batch, CaptureDrop, ChainHead, ChainRemoval, DroppedPartition, GroupStats, HoldRecord,
    KeyId, LedgerEntry, NewRecord, PartGroupRef, Progress, RecordQuery, Removal, Result, RetentionTarget, RowReader,
    RowRemoval, RunRecord, Segment, SegmentAt, Selected, SelectedGroup, Selection, Store, StoreError, StoredKey,
    StoredRecord,
};
use connections::{connection_room, idle_limit, lookup_limit};
use paths::{chrono_like, flock_file, partition_path};
use reader::Reader;

/// Subject filters kept in memory at once (~8 KB each); past this the
/// cache starts over (keeping the ones a lookup is about to use). Small in
/// unit tests, so that a test store of two tenants overflows it.
#[cfg(not(test))]
const CACHED_FILTERS: usize = 4096;
#[cfg(test)]
const CACHED_FILTERS: usize = 300;

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
    /// Connections the wide readers (`reader::Reader::wide`) keep open
    /// together.
    wide_open: std::sync::atomic::AtomicUsize,
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

/// What one pass of [`SqliteStore::release`] did to each file it met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFate {
    /// No live partition was left in it: the file is gone.
    Removed,
    /// Live partitions remain: only the released partitions' rows go.
    Shared,
}

/// Per file path, what the current release pass found (see `release`).
type FileFates = HashMap<String, FileFate>;

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
            wide_open: std::sync::atomic::AtomicUsize::new(0),
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
    ///
    /// `files` remembers, per file, what an earlier call of the same pass
    /// found: a drop of thousands of partitions sharing hundreds of files
    /// (many tenants) counts each file's sharers once, not once per
    /// partition, and does not look again at a file it removed. Valid only
    /// while no partition changes state: within one pass over partitions
    /// already marked `dropping`.
    fn release(&self, inner: &mut Inner, p: &Part, files: &mut FileFates) -> Result<Release> {
        match files.get(&p.path) {
            // Its rows went with the file, counted on the first partition.
            Some(FileFate::Removed) => return Ok(Release { bytes: 0, rows: false }),
            Some(FileFate::Shared) => {}
            None if Self::sharers(&inner.cat, &p.path)? == 0 => {
                files.insert(p.path.clone(), FileFate::Removed);
                // A connection to this file still waiting to close in the
                // background would change the sizes measured here and — closing
                // after the unlink — remove by name the log of a new file made
                // at the same path.
                self.upkeep.settle();
                let bytes = self.file_bytes(p);
                self.remove_files(inner, p)?;
                return Ok(Release { bytes, rows: false });
            }
            None => {
                files.insert(p.path.clone(), FileFate::Shared);
            }
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

    /// Live records per partition: of one chain's live partitions, or of
    /// every partition (one pass in table order, for many chains), in one
    /// statement.
    fn live_records(cat: &Connection, chain: Option<(&str, &str)>) -> Result<HashMap<i64, u64>> {
        let mut st = cat
            .prepare_cached(match chain {
                Some(_) => {
                    "SELECT g.partition_id, sum(g.records) FROM partition_groups g
                       JOIN partitions p ON p.id = g.partition_id
                      WHERE p.tenant=?1 AND p.stream=?2 AND p.state=0 GROUP BY g.partition_id"
                }
                // Summed here: SQLite's GROUP BY walks the primary key and
                // looks every row up (0.18 s against 0.03 s for 272,000).
                None => "SELECT partition_id, records FROM partition_groups",
            })
            .map_err(db)?;
        let args: Vec<&dyn rusqlite::ToSql> = match &chain {
            Some((t, s)) => vec![t, s],
            None => Vec::new(),
        };
        let rows = st
            .query_map(&args[..], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .map_err(db)?;
        let mut out: HashMap<i64, u64> = HashMap::new();
        for row in rows {
            let (id, n) = row.map_err(db)?;
            *out.entry(id).or_default() += n as u64;
        }
        Ok(out)
    }

    /// The groups of every live partition of one tenant, or of every
    /// partition, by partition, in one statement: asking partition by partition cost a
    /// statement per (tenant, stream, day) — 72,000 of them, a third of the
    /// dry run, on 100 tenants over a year.
    fn live_groups(cat: &Connection, tenant: Option<&str>) -> Result<HashMap<i64, Vec<PartGroup>>> {
        let mut st = cat
            .prepare_cached(match tenant {
                Some(_) => {
                    "SELECT g.partition_id, g.scope, g.class, g.records, g.deleted
                       FROM partitions p JOIN partition_groups g ON g.partition_id = p.id
                      WHERE p.tenant = ?1 AND p.state = 0"
                }
                // The whole table in its own order, no join: callers look
                // groups up by the live partitions they hold.
                None => "SELECT partition_id, scope, class, records, deleted FROM partition_groups",
            })
            .map_err(db)?;
        let args: Vec<&dyn rusqlite::ToSql> = match &tenant {
            Some(t) => vec![t],
            None => Vec::new(),
        };
        let rows = st
            .query_map(&args[..], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u8>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(db)?;
        let mut out: HashMap<i64, Vec<PartGroup>> = HashMap::new();
        for row in rows {
            let (part, scope, class, n, d) = row.map_err(db)?;
            let class =
                Classification::from_code(class).ok_or_else(|| StoreError::Corrupt(format!("class {class}")))?;
            out.entry(part).or_default().push(PartGroup {
                scope,
                class,
                records: n as u64,
                deleted: d as u64,
            });
        }
        // The order of the primary key, whichever way the rows were read:
        // a drop's bytes and count go to its largest group, ties to the last.
        for groups in out.values_mut() {
            groups.sort_by(|a, b| (&a.scope, a.class.code()).cmp(&(&b.scope, b.class.code())));
        }
        Ok(out)
    }
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

/// The segments of one chain's partitions, or of every partition, by
/// partition id, each partition's in sequence order. One pass in table
/// order serves a plan over many chains: asked chain by chain, each query
/// read pages holding every chain's segments (they are written as records
/// arrive, all chains interleaved).
fn segments_by_partition(cat: &Connection, chain: Option<(&str, &str)>) -> Result<HashMap<i64, Vec<Segment>>> {
    let mut st = cat
        .prepare_cached(match chain {
            Some(_) => {
                "SELECT partition_id, first_seq, last_seq, prev, chain FROM segments WHERE tenant=?1 AND stream=?2"
            }
            None => "SELECT partition_id, first_seq, last_seq, prev, chain FROM segments",
        })
        .map_err(db)?;
    let args: Vec<&dyn rusqlite::ToSql> = match &chain {
        Some((t, s)) => vec![t, s],
        None => Vec::new(),
    };
    let rows = st
        .query_map(&args[..], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })
        .map_err(db)?;
    let mut out: HashMap<i64, Vec<Segment>> = HashMap::new();
    for row in rows {
        let (partition, first, last, prev, chain) = row.map_err(db)?;
        let bad = || StoreError::Corrupt(format!("segment {first} of partition {partition}"));
        out.entry(partition).or_default().push(Segment {
            first: first as u64,
            last: last as u64,
            prev: prev.try_into().map_err(|_| bad())?,
            chain: chain.try_into().map_err(|_| bad())?,
        });
    }
    for segs in out.values_mut() {
        segs.sort_unstable_by_key(|s| s.first);
    }
    Ok(out)
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
