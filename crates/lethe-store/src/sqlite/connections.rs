//! Partition connections: the writer's cache of open and idle files, the
//! read-only lookup connections, and how many of each the open-files limit allows.

use super::*;

impl SqliteStore {
    pub(super) fn conn<'a>(&self, inner: &'a mut Inner, p: &Part, create: bool) -> Result<&'a Connection> {
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
    pub(super) fn read_conn<'a>(&self, inner: &'a mut Inner, p: &Part) -> Result<Option<&'a Connection>> {
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
    pub(super) fn maybe_checkpoint(&self, p: &Part) {
        let wal = PathBuf::from(format!("{}-wal", self.part_path(&p.path).display()));
        if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > PARTITION_WAL_LIMIT {
            self.upkeep.checkpoint(self.part_path(&p.path));
        }
    }

    /// A read-only connection to a partition for an exhaustive lookup, kept
    /// open between calls (see `Inner::lookups`); `None` for a partition a
    /// write has only begun.
    pub(super) fn lookup_conn<'a>(&self, inner: &'a mut Inner, p: &Part) -> Result<Option<&'a Connection>> {
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
}

/// Connections (three files each: database, WAL, shared memory) the
/// open-files limit leaves room for, after raising the soft limit towards
/// the hard one as servers commonly do and keeping 512 files for everything
/// else the process opens; `None` when the limit cannot be read.
pub(super) fn connection_room() -> Option<usize> {
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
pub(super) fn idle_limit(room: Option<usize>) -> usize {
    room.map_or(0, |r| r.saturating_sub(OPEN_PARTITIONS).min(IDLE_PARTITIONS))
}

/// Lookup connections (see `Inner::lookups`) the room allows besides the
/// writer's, at least [`OPEN_PARTITIONS`], at most [`LOOKUP_CONNECTIONS`].
pub(super) fn lookup_limit(room: Option<usize>) -> usize {
    room.map_or(OPEN_PARTITIONS, |r| {
        r.saturating_sub(OPEN_PARTITIONS + IDLE_PARTITIONS)
            .clamp(OPEN_PARTITIONS, LOOKUP_CONNECTIONS)
    })
}

/// The key of the least recently used entry of a connection cache (each
/// entry carries the tick of its last use).
pub(super) fn least_recent<K: Clone, V>(m: &HashMap<K, V>, tick: impl Fn(&V) -> u64) -> Option<K> {
    m.iter().min_by_key(|(_, v)| tick(v)).map(|(k, _)| k.clone())
}
