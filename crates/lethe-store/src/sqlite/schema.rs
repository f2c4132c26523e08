//! The catalog's schema and its creation: a new data directory gets a new
//! catalog; a directory that already holds data never does.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::{db, restored};
use crate::{Result, StoreError};

pub(super) const CATALOG_SCHEMA: &str = "
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
CREATE TABLE IF NOT EXISTS partitions(id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL,
  stream TEXT NOT NULL, start_us INTEGER NOT NULL, end_us INTEGER NOT NULL, path TEXT NOT NULL,
  state INTEGER NOT NULL, UNIQUE(tenant, stream, start_us));
CREATE INDEX IF NOT EXISTS partitions_state ON partitions(state) WHERE state != 0;
CREATE INDEX IF NOT EXISTS partitions_path ON partitions(path);
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
CREATE INDEX IF NOT EXISTS ledger_kind ON ledger(kind);
CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started_us INTEGER NOT NULL,
  finished_us INTEGER NOT NULL, status TEXT NOT NULL, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subject_filters(partition_id INTEGER PRIMARY KEY, version INTEGER NOT NULL,
  bits BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS holds(id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, subject INTEGER NOT NULL,
  pseudonym BLOB, scope TEXT, since_us INTEGER, until_us INTEGER, reason TEXT NOT NULL, actor TEXT NOT NULL,
  created_us INTEGER NOT NULL, expires_us INTEGER, released_us INTEGER, release_reason TEXT, ledger_seq INTEGER);
CREATE TABLE IF NOT EXISTS access_keys(id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
  tenants TEXT NOT NULL, secret_hash BLOB NOT NULL, creator TEXT NOT NULL, created_us INTEGER NOT NULL,
  expires_us INTEGER, last_used_us INTEGER, revoked_us INTEGER);
";

/// The on-disk format this version reads and writes (2: sealed records;
/// 3: partition files shared by every tenant of a stream, period and
/// expiry class, rows keyed by partition and sequence number; 4: the
/// subject index keyed by block of rows, see
/// [`super::partition::SUBJECT_BLOCK`]). Format 3 is converted in place
/// when a store is opened ([`convert`]).
pub(super) const FORMAT: &str = "4";

/// Opens the catalog of the store in `dir`, creating it when the directory
/// holds no store yet.
///
/// A catalog that is missing, empty or not initialised beside existing
/// partition or restoration files is refused: starting a new store there
/// would make every existing record invisible and create new keys while the
/// old ones are gone. Creation runs in one immediate transaction, so two
/// processes opening a new directory at once agree on one catalog.
pub(super) fn open_catalog(dir: &Path, span_secs: u64) -> Result<Connection> {
    let path = dir.join("catalog.db");
    let cat = Connection::open(&path).map_err(|e| unreadable(&path, e))?;
    // The busy timeout first: another process may be creating the catalog.
    cat.execute_batch("PRAGMA busy_timeout=30000;").map_err(db)?;
    // `auto_vacuum` only takes on a catalog without tables (a new one);
    // an existing catalog is converted by its first `reclaim`.
    cat.execute_batch(
        "PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0;
         PRAGMA journal_size_limit=4194304; PRAGMA secure_delete=ON;",
    )
    .map_err(|e| unreadable(&path, e))?;
    let mut cat = cat;
    {
        let tx = cat
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| unreadable(&path, e))?;
        let initialised: Option<String> = if has_table(&tx, "meta")? {
            tx.query_row("SELECT value FROM meta WHERE key='partition_secs'", [], |r| r.get(0))
                .optional()
                .map_err(db)?
        } else {
            None
        };
        match initialised {
            None => {
                let existing = existing_data(dir);
                if existing > 0 {
                    return Err(StoreError::Corrupt(format!(
                        "{} holds {existing} partition or restoration file(s) but no usable catalog \
                         (catalog.db is missing, empty or not a Lethe catalog): refusing to start a new \
                         store over existing data — restore catalog.db from a backup, or move the data away",
                        dir.display()
                    )));
                }
                tx.execute_batch(CATALOG_SCHEMA).map_err(db)?;
                tx.execute_batch(restored::CATALOG_SCHEMA).map_err(db)?;
                tx.execute(
                    "INSERT INTO meta(key,value) VALUES('partition_secs',?1)",
                    [span_secs.to_string()],
                )
                .map_err(db)?;
                tx.execute("INSERT INTO meta(key,value) VALUES('format',?1)", [FORMAT])
                    .map_err(db)?;
            }
            Some(s) if s == span_secs.to_string() => {
                // Tables added by later versions of this format.
                tx.execute_batch(CATALOG_SCHEMA).map_err(db)?;
                tx.execute_batch(restored::CATALOG_SCHEMA).map_err(db)?;
                let format: Option<String> = tx
                    .query_row("SELECT value FROM meta WHERE key='format'", [], |r| r.get(0))
                    .optional()
                    .map_err(db)?;
                match format.as_deref() {
                    Some(FORMAT) => {}
                    Some("3") => {
                        convert(dir, &tx)?;
                        tx.execute("UPDATE meta SET value=?1 WHERE key='format'", [FORMAT])
                            .map_err(db)?;
                    }
                    None => {
                        return Err(StoreError::Corrupt(
                            "this store was written by an earlier Lethe (format 1, records without integrity \
                             seals); export it with that version's `lethe logs` and ingest into a new data directory"
                                .into(),
                        ))
                    }
                    Some("2") => {
                        return Err(StoreError::Corrupt(
                            "this store was written by an earlier Lethe (format 2: one partition file per tenant, \
                             stream and day); this version keeps the partitions of every tenant in shared files \
                             (format 3) and does not convert stores in place: export with the earlier version's \
                             `lethe logs --json` and ingest into a new data directory (see docs/architecture.md)"
                                .into(),
                        ))
                    }
                    Some(f) => {
                        return Err(StoreError::Corrupt(format!(
                            "store format {f}; this version reads {FORMAT}"
                        )))
                    }
                }
            }
            Some(s) => {
                return Err(StoreError::Corrupt(format!(
                    "this store was created with partitions of {s} s; store.partition asks for {span_secs} s"
                )))
            }
        }
        tx.commit().map_err(db)?;
    }
    Ok(cat)
}

/// Converts a format-3 store to format 4: every partition file the
/// catalog lists gets the block-keyed subject index and loses the one it
/// replaces, each file in one transaction. Runs inside the catalog's
/// opening transaction (no other process can open the store meanwhile); a
/// crash part way leaves the format at 3 and the next open converts the
/// files left (each step is idempotent).
fn convert(dir: &Path, tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let paths: Vec<String> = {
        let mut st = tx.prepare("SELECT DISTINCT path FROM partitions").map_err(db)?;
        let rows = st.query_map([], |r| r.get(0)).map_err(db)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db)?
    };
    for rel in &paths {
        let path = dir.join(rel);
        if !path.exists() {
            // Dropped whole, or lost: repair deals with it as before.
            continue;
        }
        let c = super::partition::open(&path, false)?;
        c.execute_batch(&format!(
            "BEGIN IMMEDIATE; {} {} COMMIT;",
            super::partition::SCHEMA,
            super::partition::SUPERSEDED_INDEXES
        ))
        .map_err(db)?;
    }
    Ok(())
}

/// Free catalog pages are given back to the file system past this many
/// (and past a quarter of the file): a cleanup that drops most partitions
/// frees their filters, segments and counts.
const RECLAIM_FREE_PAGES: i64 = 64;

/// Gives the catalog's free pages back to the file system after a removal
/// freed many: incrementally on a catalog made with `auto_vacuum`, else by
/// one `VACUUM` that converts it (once per catalog). The file shrinks when
/// the log is checkpointed, which this does too.
pub(super) fn reclaim(cat: &Connection) -> Result<()> {
    let pragma = |name: &str| -> Result<i64> { cat.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0)).map_err(db) };
    let (pages, free) = (pragma("page_count")?, pragma("freelist_count")?);
    if free < RECLAIM_FREE_PAGES || free * 4 < pages {
        return Ok(());
    }
    if pragma("auto_vacuum")? == 2 {
        // One page per step (a row each): stepped to the end.
        let mut st = cat.prepare("PRAGMA incremental_vacuum").map_err(db)?;
        let mut rows = st.query([]).map_err(db)?;
        while rows.next().map_err(db)?.is_some() {}
    } else {
        cat.execute_batch("PRAGMA auto_vacuum=INCREMENTAL; VACUUM")
            .map_err(db)?;
    }
    // A reader holding an old snapshot can keep the log from being reset;
    // the file then shrinks at a later checkpoint.
    let _ = cat.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    Ok(())
}

/// A catalog SQLite cannot read names the file, not just the engine's words.
fn unreadable(path: &Path, e: rusqlite::Error) -> StoreError {
    StoreError::Corrupt(format!("{} cannot be read as a catalog: {e}", path.display()))
}

fn has_table(c: &Connection, name: &str) -> Result<bool> {
    Ok(c.query_row(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .map_err(db)?
    .is_some())
}

/// Partition and restoration files under `dir` (what a store leaves).
fn existing_data(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.join("partitions"), dir.join("restored")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "db") {
                n += 1;
            }
        }
    }
    n
}
