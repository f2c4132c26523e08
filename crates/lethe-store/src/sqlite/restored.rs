//! One restoration file: archived records brought back for an
//! investigation, outside every chain (see [`crate::Restoration`]).
//!
//! A restoration is loaded into its own file with neither journal nor
//! fsync per batch — until it is finished it is invisible and a crash
//! discards it whole — then indexed, synced and made visible in one step.

use std::path::Path;

use lethe_core::hold::HoldScope;
use lethe_core::policy::{Action, GroupKey};
use lethe_core::{Classification, StreamId, TenantId};
use rusqlite::{params, Connection, OpenFlags};

use super::db;
use super::partition::push_filters;
use crate::{NewRecord, RecordQuery, Result, Selection, StoreError, StoredRecord};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records(
  stream TEXT NOT NULL,
  seq INTEGER NOT NULL,
  id BLOB NOT NULL,
  ts INTEGER NOT NULL,
  received INTEGER NOT NULL,
  scope TEXT NOT NULL,
  class INTEGER NOT NULL,
  pseudonym BLOB,
  key_id INTEGER,
  plain TEXT NOT NULL,
  body BLOB,
  anonymized INTEGER NOT NULL,
  PRIMARY KEY(stream, seq)
);
";

/// Built once loading is done: cheaper than maintaining them per insert.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS records_ts ON records(ts);
CREATE INDEX IF NOT EXISTS records_subject ON records(pseudonym) WHERE pseudonym IS NOT NULL;
";

/// Creates a restoration file for loading.
pub fn create(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
    }
    let c = Connection::open(path).map_err(db)?;
    c.execute_batch(&format!(
        "PRAGMA page_size=8192; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; {SCHEMA}"
    ))
    .map_err(db)?;
    Ok(c)
}

/// Opens a finished restoration file (rollback journal, full sync: erasure
/// writes to it).
pub fn open(path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db)?;
    c.execute_batch("PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;")
        .map_err(db)?;
    Ok(c)
}

/// Inserts records (one transaction); returns how many were new (a record
/// already restored in this set, by stream and sequence number, is skipped).
pub fn insert(c: &Connection, tenant: &TenantId, records: &[StoredRecord]) -> Result<u64> {
    let tx = c.unchecked_transaction().map_err(db)?;
    let mut n = 0;
    {
        let mut st = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO records(stream,seq,id,ts,received,scope,class,pseudonym,key_id,plain,body,anonymized)
                 VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
            )
            .map_err(db)?;
        for r in records {
            let g = &r.record.group;
            if g.tenant != *tenant {
                return Err(StoreError::Misuse(format!(
                    "record {} of tenant {} cannot join a restoration of tenant {tenant}",
                    r.seq, g.tenant
                )));
            }
            n += st
                .execute(params![
                    g.stream.to_string(),
                    r.seq as i64,
                    r.record.id.as_slice(),
                    r.record.ts_us,
                    r.record.received_us,
                    g.scope,
                    g.classification.code(),
                    r.record.pseudonym.as_ref().map(|p| p.as_slice()),
                    r.record.key_id,
                    r.record.plain,
                    r.record.body,
                    r.anonymized as i64,
                ])
                .map_err(db)? as u64;
        }
    }
    tx.commit().map_err(db)?;
    Ok(n)
}

/// Indexes a loaded file and makes it durable; returns its record count.
pub fn finish(c: &Connection) -> Result<u64> {
    c.execute_batch(INDEXES).map_err(db)?;
    let n: i64 = c
        .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
        .map_err(db)?;
    Ok(n as u64)
}

/// Visits matching records in event-time order, streaming (a restoration
/// can hold millions); returns how many were visited and whether `visit`
/// asked to stop.
pub fn select(
    c: &Connection,
    tenant: &TenantId,
    q: &RecordQuery,
    limit: Option<usize>,
    visit: &mut dyn FnMut(StoredRecord) -> bool,
) -> Result<(usize, bool)> {
    let mut sql = String::from(
        "SELECT stream,seq,id,ts,received,scope,class,pseudonym,key_id,plain,body,anonymized FROM records WHERE 1",
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(s) = &q.stream {
        sql.push_str(" AND stream=?");
        args.push(s.to_string().into());
    }
    push_filters(
        &mut sql,
        &mut args,
        q.scope.as_deref(),
        q.pseudonym.as_ref(),
        q.since_us,
        q.until_us,
    );
    sql.push_str(if q.ascending {
        " ORDER BY ts ASC, stream ASC, seq ASC"
    } else {
        " ORDER BY ts DESC, stream DESC, seq DESC"
    });
    if let Some(l) = limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    let mut st = c.prepare(&sql).map_err(db)?;
    let mut rows = st.query(rusqlite::params_from_iter(args)).map_err(db)?;
    let mut n = 0;
    while let Some(r) = rows.next().map_err(db)? {
        n += 1;
        if !visit(row(tenant, r)?) {
            return Ok((n, true));
        }
    }
    Ok((n, false))
}

fn row(tenant: &TenantId, r: &rusqlite::Row<'_>) -> Result<StoredRecord> {
    let stream: String = r.get(0).map_err(db)?;
    let seq: i64 = r.get(1).map_err(db)?;
    let bad = || StoreError::Corrupt(format!("restored record {seq} of {tenant}/{stream}"));
    let id: Vec<u8> = r.get(2).map_err(db)?;
    let class: u8 = r.get(6).map_err(db)?;
    let pseudo: Option<Vec<u8>> = r.get(7).map_err(db)?;
    Ok(StoredRecord {
        seq: seq as u64,
        record: NewRecord {
            id: id.as_slice().try_into().map_err(|_| bad())?,
            group: GroupKey {
                tenant: tenant.clone(),
                stream: stream.parse::<StreamId>().map_err(|_| bad())?,
                scope: r.get(5).map_err(db)?,
                classification: Classification::from_code(class).ok_or_else(bad)?,
            },
            ts_us: r.get(3).map_err(db)?,
            received_us: r.get(4).map_err(db)?,
            pseudonym: match pseudo {
                Some(p) => Some(p.as_slice().try_into().map_err(|_| bad())?),
                None => None,
            },
            key_id: r.get(8).map_err(db)?,
            plain: r.get(9).map_err(db)?,
            body: r.get(10).map_err(db)?,
        },
        anonymized: r.get::<_, i64>(11).map_err(db)? != 0,
        seal: None,
    })
}

/// Removes (or anonymizes) the records a purge selects, except those a
/// hold covers; returns how many changed.
pub fn erase(c: &Connection, sel: &Selection, holds: &[HoldScope]) -> Result<u64> {
    let mut sql = String::from("SELECT rowid,pseudonym,scope,ts FROM records WHERE anonymized=0");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if !sel.pseudonyms.is_empty() {
        sql.push_str(" AND pseudonym IN (");
        for (i, p) in sel.pseudonyms.iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ",?" });
            args.push(p.to_vec().into());
        }
        sql.push(')');
    }
    if let Some(s) = &sel.stream {
        sql.push_str(" AND stream=?");
        args.push(s.to_string().into());
    }
    push_filters(
        &mut sql,
        &mut args,
        sel.scope.as_deref(),
        None,
        sel.since_us,
        sel.until_us,
    );
    let tenant = sel.tenant.as_str();
    let mut go: Vec<i64> = Vec::new();
    {
        let mut st = c.prepare(&sql).map_err(db)?;
        let mut rows = st.query(rusqlite::params_from_iter(args)).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let pseudo: Option<Vec<u8>> = r.get(1).map_err(db)?;
            let pseudo: Option<[u8; 32]> = pseudo.and_then(|p| p.as_slice().try_into().ok());
            let scope: String = r.get(2).map_err(db)?;
            let ts: i64 = r.get(3).map_err(db)?;
            if !holds.iter().any(|h| h.covers(tenant, pseudo.as_ref(), &scope, ts)) {
                go.push(r.get(0).map_err(db)?);
            }
        }
    }
    let tx = c.unchecked_transaction().map_err(db)?;
    {
        let sql = match sel.action {
            Action::Delete => "DELETE FROM records WHERE rowid=?1",
            Action::Anonymize => {
                "UPDATE records SET pseudonym=NULL, key_id=NULL, body=NULL, anonymized=1 WHERE rowid=?1"
            }
        };
        let mut st = tx.prepare(sql).map_err(db)?;
        for id in &go {
            st.execute([id]).map_err(db)?;
        }
    }
    tx.commit().map_err(db)?;
    Ok(go.len() as u64)
}

/// The catalog's side of restorations: which exist, where, and whether
/// they are finished (`ledger_seq` set).
pub const CATALOG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS restorations(id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, created_us INTEGER NOT NULL,
  expires_us INTEGER NOT NULL, records INTEGER NOT NULL DEFAULT 0, note TEXT NOT NULL, ledger_seq INTEGER,
  path TEXT NOT NULL);
";

/// Bookkeeping mark set with a restoration's ledger entry.
fn mark(id: i64) -> String {
    format!("restoration.{id}")
}

use super::SqliteStore;
use crate::Restoration;
use rusqlite::OptionalExtension;

impl SqliteStore {
    fn restoration_path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.join(rel)
    }

    fn restoration_rows(
        &self,
        cat: &Connection,
        clause: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<(Restoration, String)>> {
        let sql = format!(
            "SELECT id,tenant,created_us,expires_us,records,note,ledger_seq,path FROM restorations WHERE {clause} ORDER BY id"
        );
        let mut st = cat.prepare(&sql).map_err(db)?;
        let rows = st
            .query_map(args, |r| {
                Ok((
                    Restoration {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        created_us: r.get(2)?,
                        expires_us: r.get(3)?,
                        records: r.get::<_, i64>(4)? as u64,
                        note: r.get(5)?,
                        ledger_seq: r.get::<_, Option<i64>>(6)?.unwrap_or(0) as u64,
                        bytes: 0,
                    },
                    r.get::<_, String>(7)?,
                ))
            })
            .map_err(db)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db)
    }

    fn remove_restoration_files(&self, rel: &str) -> Result<u64> {
        let base = self.restoration_path(rel);
        let bytes = file_bytes(&base);
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let f = std::path::PathBuf::from(format!("{}{suffix}", base.display()));
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(format!("removing {}", f.display()), e)),
            }
        }
        Ok(bytes)
    }

    /// Finishes restorations whose ledger entry was written and discards
    /// those a crash left half loaded (unless another process is still
    /// loading them: it holds a lock on the file).
    pub(super) fn repair_restorations(&self, cat: &Connection) -> Result<()> {
        for (r, path) in self.restoration_rows(cat, "ledger_seq IS NULL", &[])? {
            let full = self.restoration_path(&path);
            if let Ok(f) = std::fs::File::open(&full) {
                if f.try_lock().is_err() {
                    continue;
                }
            }
            let seq: Option<String> = cat
                .query_row("SELECT value FROM meta WHERE key=?1", [mark(r.id)], |x| x.get(0))
                .optional()
                .map_err(db)?;
            match seq.and_then(|s| s.parse::<i64>().ok()) {
                Some(seq) if full.exists() => {
                    let c = open(&full)?;
                    let n = finish(&c)?;
                    drop(c);
                    sync_file(&full)?;
                    cat.execute(
                        "UPDATE restorations SET ledger_seq=?2, records=?3 WHERE id=?1",
                        params![r.id, seq, n as i64],
                    )
                    .map_err(db)?;
                }
                _ => {
                    self.remove_restoration_files(&path)?;
                    cat.execute("DELETE FROM restorations WHERE id=?1", [r.id])
                        .map_err(db)?;
                }
            }
            cat.execute("DELETE FROM meta WHERE key=?1", [mark(r.id)]).map_err(db)?;
        }
        Ok(())
    }

    pub(super) fn restoration_begin(
        &self,
        tenant: &TenantId,
        created_us: i64,
        expires_us: i64,
        note: &str,
    ) -> Result<i64> {
        // The file exists, locked, before any catalog row names it: another
        // process's repair skips what it cannot lock.
        let rel = format!("restored/{:016x}.db", super::rand_u64());
        let full = self.restoration_path(&rel);
        let c = create(&full)?;
        let lock = std::fs::File::open(&full).map_err(|e| StoreError::io(format!("opening {}", full.display()), e))?;
        lock.lock()
            .map_err(|e| StoreError::io(format!("locking {}", full.display()), e))?;
        let inner = self.lock();
        inner
            .cat
            .execute(
                "INSERT INTO restorations(tenant,created_us,expires_us,note,path) VALUES(?1,?2,?3,?4,?5)",
                params![tenant.as_str(), created_us, expires_us, note, rel],
            )
            .map_err(db)?;
        let id = inner.cat.last_insert_rowid();
        drop(inner);
        self.loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (c, lock, tenant.clone()));
        Ok(id)
    }

    pub(super) fn restoration_add(&self, id: i64, records: &[StoredRecord]) -> Result<u64> {
        let loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        let (c, _, tenant) = loading
            .get(&id)
            .ok_or_else(|| StoreError::Misuse(format!("restoration {id} is not being loaded by this process")))?;
        insert(c, tenant, records)
    }

    pub(super) fn restoration_finish(&self, id: i64, ledger_seq: u64) -> Result<Restoration> {
        let (c, lock, _) = self
            .loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
            .ok_or_else(|| StoreError::Misuse(format!("restoration {id} is not being loaded by this process")))?;
        let n = finish(&c)?;
        drop(c);
        let inner = self.lock();
        let (mut r, path) = self
            .restoration_rows(&inner.cat, "id=?1", &[&id])?
            .pop()
            .ok_or_else(|| StoreError::Corrupt(format!("no restoration {id}")))?;
        let full = self.restoration_path(&path);
        sync_file(&full)?;
        let tx = inner.cat.unchecked_transaction().map_err(db)?;
        tx.execute(
            "UPDATE restorations SET ledger_seq=?2, records=?3 WHERE id=?1",
            params![id, ledger_seq as i64, n as i64],
        )
        .map_err(db)?;
        tx.execute("DELETE FROM meta WHERE key=?1", [mark(id)]).map_err(db)?;
        tx.commit().map_err(db)?;
        drop(lock);
        r.records = n;
        r.ledger_seq = ledger_seq;
        r.bytes = file_bytes(&full);
        Ok(r)
    }

    pub(super) fn restoration_list(&self, tenant: Option<&str>) -> Result<Vec<Restoration>> {
        let inner = self.lock();
        Ok(self
            .restoration_rows(
                &inner.cat,
                "ledger_seq IS NOT NULL AND (?1 IS NULL OR tenant=?1)",
                &[&tenant],
            )?
            .into_iter()
            .map(|(mut r, path)| {
                r.bytes = file_bytes(&self.restoration_path(&path));
                r
            })
            .collect())
    }

    pub(super) fn restoration_query(
        &self,
        q: &RecordQuery,
        visit: &mut dyn FnMut(i64, StoredRecord) -> bool,
    ) -> Result<()> {
        let sets = {
            let inner = self.lock();
            self.restoration_rows(
                &inner.cat,
                "ledger_seq IS NOT NULL AND tenant=?1",
                &[&q.tenant.as_str()],
            )?
        };
        let mut remaining = q.limit.unwrap_or(usize::MAX);
        for (r, path) in sets {
            if remaining == 0 {
                break;
            }
            let c = open(&self.restoration_path(&path))?;
            let (n, stopped) = select(&c, &q.tenant, q, q.limit.map(|_| remaining), &mut |rec| {
                visit(r.id, rec)
            })?;
            if stopped {
                return Ok(());
            }
            remaining -= n;
        }
        Ok(())
    }

    pub(super) fn restoration_drop(&self, id: i64) -> Result<u64> {
        let inner = self.lock();
        let Some((_, path)) = self
            .restoration_rows(&inner.cat, "id=?1 AND ledger_seq IS NOT NULL", &[&id])?
            .pop()
        else {
            return Ok(0);
        };
        // The catalog row goes first: a crash before the files go leaves
        // files no row names, which the next open removes.
        inner
            .cat
            .execute("DELETE FROM restorations WHERE id=?1", [id])
            .map_err(db)?;
        self.remove_restoration_files(&path)
    }

    pub(super) fn restoration_erase(&self, sel: &Selection, holds: &[HoldScope]) -> Result<u64> {
        let _g = self.write_lock()?;
        let inner = self.lock();
        let mut n = 0;
        for (r, path) in self.restoration_rows(
            &inner.cat,
            "ledger_seq IS NOT NULL AND tenant=?1",
            &[&sel.tenant.as_str()],
        )? {
            let c = open(&self.restoration_path(&path))?;
            let changed = erase(&c, sel, holds)?;
            n += changed;
            // Anonymized copies stay; deleted ones leave the count.
            if changed > 0 && sel.action == Action::Delete {
                inner
                    .cat
                    .execute(
                        "UPDATE restorations SET records=records-?2 WHERE id=?1",
                        params![r.id, changed as i64],
                    )
                    .map_err(db)?;
            }
        }
        Ok(n)
    }

    /// Removes restoration files no catalog row names (a drop a crash cut short).
    pub(super) fn remove_stray_restorations(&self, cat: &Connection) -> Result<()> {
        let dir = self.dir.join("restored");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        let known: std::collections::HashSet<String> = self
            .restoration_rows(cat, "1", &[])?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let base = name.trim_end_matches("-journal");
            let rel = format!("restored/{base}");
            if known.contains(&rel) {
                continue;
            }
            if let Ok(f) = std::fs::File::open(self.restoration_path(&rel)) {
                if f.try_lock().is_err() {
                    continue; // another process is loading it
                }
            }
            self.remove_restoration_files(&rel)?;
        }
        Ok(())
    }
}

fn file_bytes(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map(|m| m.blocks() * 512).unwrap_or(0)
}

fn sync_file(p: &Path) -> Result<()> {
    std::fs::File::open(p)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(format!("syncing {}", p.display()), e))?;
    if let Some(d) = p.parent() {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::io(format!("syncing {}", d.display()), e))?;
    }
    Ok(())
}
