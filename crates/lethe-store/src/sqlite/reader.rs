//! Read-only scans of partition files on connections of their own (immutable where the file is quiet).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::readahead::ReadAhead;
use super::*;
use crate::row::RawRow;

/// Read-only connections kept open by one [`Reader`].
const READER_CONNECTIONS: usize = 8;

/// Connections a wide reader ([`Reader::wide`]) keeps open at most: each
/// costs ~45 KB while it stays open (parsed schema, prepared statements,
/// its page cache; measured: 1,460 of them 64 MB), and every verify worker
/// holds a reader.
const WIDE_CONNECTIONS: usize = 1024;

/// Connections all wide readers of a store keep open together at most
/// (~70 MB): verify runs a worker, each with a wide reader, per core, and
/// on a machine of many cores their connections would otherwise add up
/// past the memory target. With two workers each keeps its own limit.
const WIDE_TOTAL: usize = 1536;

/// Page cache of each [`Reader`] connection, in KiB. A reader scans rows in
/// key order, so beyond the B-tree's few interior pages a cache only holds
/// pages it will not read again; SQLite's default (2 MB) would let a wide
/// reader's hundreds of connections grow to hundreds of megabytes.
const READER_CACHE_KIB: i64 = 16;

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
    /// When it was last asked for (the reader's tick): the least recently
    /// used one is closed first.
    used: u64,
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
pub(super) struct Reader<'a> {
    store: &'a SqliteStore,
    /// By file: partitions share files (every tenant's of a stream and
    /// day), so a scan over many chains reuses a few connections.
    conns: HashMap<PathBuf, ReaderConn>,
    /// Files seen changing: read through ordinary connections only.
    busy: std::collections::HashSet<PathBuf>,
    /// Partition paths callers already know (and hold the store's lock:
    /// looking them up would wait for it), with whether a write to the
    /// partition is in flight.
    paths: HashMap<i64, (PathBuf, bool)>,
    /// Counts requests for connections (see [`ReaderConn::used`]).
    tick: u64,
    /// Connections kept open at most.
    capacity: usize,
    /// What was read ahead of an announced walk.
    ahead: ReadAhead,
    /// Whether this reader's connections count against the store's
    /// [`WIDE_TOTAL`] (see `SqliteStore::wide_open`).
    shared: bool,
}

impl<'a> Reader<'a> {
    pub(super) fn new(store: &'a SqliteStore) -> Self {
        Self::with_capacity(store, READER_CONNECTIONS)
    }

    /// A reader keeping up to `capacity` connections open (at least
    /// [`READER_CONNECTIONS`]).
    fn with_capacity(store: &'a SqliteStore, capacity: usize) -> Self {
        Reader {
            capacity: capacity.max(READER_CONNECTIONS),
            store,
            conns: HashMap::new(),
            busy: std::collections::HashSet::new(),
            paths: HashMap::new(),
            tick: 0,
            ahead: ReadAhead::default(),
            shared: false,
        }
    }

    /// A reader keeping open as many files as a third of the store's lookup
    /// budget (an immutable connection holds one descriptor, a lookup
    /// three): for passes over many chains, each with rows in most of the
    /// same files — on a store ingested out of time order every chain has
    /// rows in nearly every day's file, so a reader with a few connections
    /// reopens each file once per chain (a sweep reading the Merkle edges
    /// of every chain, verify, the archive writer).
    ///
    /// Together, wide readers keep at most [`WIDE_TOTAL`] connections open:
    /// one at the total closes one of its own before opening another.
    pub(super) fn wide(store: &'a SqliteStore, lookup_limit: usize) -> Self {
        let mut r = Self::with_capacity(store, (lookup_limit / 3).min(WIDE_CONNECTIONS));
        r.shared = true;
        r
    }

    /// Closes a connection this reader keeps.
    fn close(&mut self, path: &Path) {
        if self.conns.remove(path).is_some() && self.shared {
            self.store.wide_open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether opening one more connection needs one of this reader's
    /// closed first: its own limit, or the store's for wide readers.
    fn full(&self) -> bool {
        self.conns.len() >= self.capacity
            || (self.shared
                && !self.conns.is_empty()
                && self.store.wide_open.load(std::sync::atomic::Ordering::Relaxed) >= WIDE_TOTAL)
    }

    /// Tells the reader where a partition's file is, and whether a write to
    /// it is in flight (its file may not exist yet).
    pub(super) fn know(&mut self, partition: i64, path: PathBuf, in_flight: bool) {
        self.paths.insert(partition, (path, in_flight));
    }

    /// This reader's connection to a partition; `None` for one a write has
    /// only begun. A committed partition whose file is gone is
    /// [`StoreError::Lost`].
    fn conn(&mut self, partition: i64) -> Result<Option<&ReaderConn>> {
        let (path, in_flight) = match self.paths.get(&partition) {
            Some(p) => p.clone(),
            None => {
                let known = {
                    let inner = self.store.lock();
                    self.store
                        .parts_where(&inner.cat, "id = ?1", &[&partition])?
                        .pop()
                        .map(|p| (self.store.part_path(&p.path), p.state == DIRTY))
                        .ok_or_else(|| StoreError::Corrupt(format!("no partition {partition}")))?
                };
                self.paths.insert(partition, known.clone());
                known
            }
        };
        if !self.conns.contains_key(&path) {
            if self.full() {
                // The least recently used: a sweep reading the edges of 200
                // chains goes back to the same few day files chain after chain.
                if let Some(k) = connections::least_recent(&self.conns, |c| c.used) {
                    self.close(&k);
                }
            }
            if !path.exists() {
                if in_flight {
                    // Not cached: another partition of the file may be
                    // committed, and then its absence is a loss.
                    return Ok(None);
                }
                return Err(StoreError::Lost(format!(
                    "partition file {} is missing",
                    path.display()
                )));
            }
            let stamp = if self.busy.contains(&path) {
                None
            } else {
                Stamp::of_quiet(&path)
            };
            let conn = match stamp {
                Some(_) => partition::open_immutable(&path)?,
                None => partition::open_reader(&path).or_else(|_| partition::open(&path, false))?,
            };
            conn.pragma_update(None, "cache_size", -READER_CACHE_KIB).map_err(db)?;
            if in_flight && !partition::has_table(&conn)? {
                // Not cached either: a partition committed into the file
                // later must be read.
                return Ok(None);
            }
            self.conns.insert(
                path.clone(),
                ReaderConn {
                    conn,
                    path: path.clone(),
                    stamp,
                    used: 0,
                },
            );
            if self.shared {
                self.store.wide_open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.tick += 1;
        let c = self.conns.get_mut(&path).expect("just opened or kept");
        c.used = self.tick;
        Ok(Some(c))
    }

    /// Runs `read` on the partition's connection (`empty` for a partition
    /// a write has only begun); if that was immutable and the file changed
    /// meanwhile, runs it again on an ordinary connection.
    pub(super) fn checked<T>(
        &mut self,
        partition: i64,
        empty: T,
        read: &dyn Fn(&Connection) -> Result<T>,
    ) -> Result<T> {
        let Some(c) = self.conn(partition)? else {
            return Ok(empty);
        };
        let out = read(&c.conn);
        if c.unchanged() {
            return out;
        }
        let path = c.path.clone();
        self.close(&path);
        self.busy.insert(path);
        match self.conn(partition)? {
            Some(c) => read(&c.conn),
            None => Ok(empty),
        }
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if self.shared {
            self.store
                .wide_open
                .fetch_sub(self.conns.len(), std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Reader<'_> {
    /// Visits a partition's rows `first..=last`, read now.
    fn read(&mut self, partition: i64, first: u64, last: u64, visit: &mut dyn FnMut(RawRow)) -> Result<()> {
        let mut next = first;
        while next <= last {
            match self.conn(partition)? {
                None => return Ok(()),
                Some(c) if c.stamp.is_none() => return partition::scan(&c.conn, partition, next, last, visit),
                Some(_) => {}
            }
            let rows = self.checked(partition, Vec::new(), &|c| {
                partition::scan_chunk(c, partition, next, last, CHECKED_ROWS)
            })?;
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

    /// Reads the window of announced scans starting at `k` (see
    /// [`ReadAhead`]): each of its partitions' key range once.
    fn read_ahead(&mut self, k: usize) -> Result<()> {
        let w = self.ahead.window(k);
        let mut read = Vec::with_capacity(w.parts.len());
        for (i, (part, _)) in w.parts.iter().enumerate() {
            let (mut kept, mut found) = (Vec::new(), 0u64);
            self.read(*part, w.lo, w.hi, &mut |r| {
                found += 1;
                w.keep(i, r, &mut kept);
            })?;
            read.push((*part, kept, found));
        }
        self.ahead.fill(&w, read);
        Ok(())
    }
}

impl RowReader for Reader<'_> {
    fn scan(&mut self, partition: i64, first: u64, last: u64, visit: &mut dyn FnMut(RawRow)) -> Result<()> {
        if let Some(k) = self.ahead.find((partition, first, last)) {
            // A scan longer than a window is read as it always was, a
            // chunk at a time, not held whole (a time-ordered load puts a
            // whole batch in one segment).
            if self.ahead.unread(k) && !self.ahead.oversized(k) {
                self.read_ahead(k)?;
            }
            if let Some(rows) = self.ahead.take(k) {
                rows.into_iter().for_each(visit);
                return Ok(());
            }
        }
        self.read(partition, first, last, visit)
    }

    fn expect(&mut self, scans: &[(i64, u64, u64)]) {
        self.ahead.expect(scans);
    }

    fn row_count(&mut self, partition: i64) -> Result<u64> {
        if let Some(n) = self.ahead.row_count(partition) {
            return Ok(n);
        }
        self.checked(partition, 0, &|c| partition::row_count(c, partition))
    }

    fn strays(&mut self, partition: i64, segments: &[(u64, u64)]) -> Result<Vec<u64>> {
        self.checked(partition, Vec::new(), &|c| partition::strays(c, partition, segments))
    }
}

#[cfg(all(test, feature = "testsuite"))]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    /// Every segment of every chain, as scans.
    fn scans(s: &SqliteStore) -> Vec<(i64, u64, u64)> {
        let mut out = Vec::new();
        for c in s.chains().unwrap() {
            for sa in s.segments(&c.tenant, &c.stream).unwrap() {
                out.push((sa.partition, sa.segment.first, sa.segment.last));
            }
        }
        out
    }

    #[test]
    fn wide_readers_count_their_connections_and_keep_to_the_stores_total() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), 86_400).unwrap();
        crate::testsuite::random_store(&s, 5, 2000);
        let scans = scans(&s);
        let rows = |r: &mut Reader| {
            let mut n = 0u64;
            for &(p, a, b) in &scans {
                crate::RowReader::scan(r, p, a, b, &mut |_| n += 1).unwrap();
            }
            n
        };
        let limit = s.lock().lookup_limit;
        let (mut a, mut b) = (Reader::wide(&s, limit), Reader::wide(&s, limit));
        assert_eq!(rows(&mut a), 2000);
        assert_eq!(rows(&mut b), 2000);
        let files = a.conns.len();
        assert!(files > 20, "the store spreads over many files ({files})");
        assert_eq!(s.wide_open.load(Ordering::Relaxed), 2 * files);
        drop(a);
        assert_eq!(s.wide_open.load(Ordering::Relaxed), files);
        drop(b);
        assert_eq!(s.wide_open.load(Ordering::Relaxed), 0);

        // Other wide readers hold the store's total: a reader closes one of
        // its own before opening another, and still reads every row.
        s.wide_open.store(WIDE_TOTAL, Ordering::Relaxed);
        let mut c = Reader::wide(&s, limit);
        assert_eq!(rows(&mut c), 2000);
        assert_eq!(c.conns.len(), 1);
        drop(c);
        assert_eq!(s.wide_open.load(Ordering::Relaxed), WIDE_TOTAL);
    }
}
