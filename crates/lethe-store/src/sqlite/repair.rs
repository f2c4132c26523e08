//! Crash repair: finishing partitions being dropped and rolling dirty partitions back to the catalog's commit point.

use rusqlite::{params, Connection};

use super::*;

impl SqliteStore {
    /// Finishes dropping partitions marked `dropping` and rolls `dirty`
    /// ones back to the catalog's commit point. Runs before every write,
    /// never on open: a read-only command never deletes anything.
    ///
    /// Rolling back removes only rows of a batch that never committed —
    /// past the chain's committed head — and only while the catalog agrees
    /// with itself: a head below the size a signed checkpoint covers, or
    /// committed segments past the head, mean the catalog was altered (or
    /// damaged), and rolling back would delete committed, sealed records.
    /// Then nothing is touched and the write is refused, naming the chain.
    pub(super) fn repair(&self, inner: &mut Inner) -> Result<()> {
        let dropping = self.parts_where(&inner.cat, "state = ?1", &[&DROPPING])?;
        let mut emptied = Vec::new();
        let mut files = FileFates::new();
        for p in &dropping {
            if self.release(inner, p, &mut files)?.rows {
                emptied.push(p);
            }
        }
        self.sync_partitions(emptied.into_iter(), false)?;
        if !dropping.is_empty() {
            forget_dropping(&inner.cat)?;
        }
        let dirty = self.parts_where(&inner.cat, "state = ?1", &[&DIRTY])?;
        for p in &dirty {
            let (tenant, stream) = (p.tenant.as_str(), p.stream.to_string());
            let committed: bool = inner
                .cat
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM segments WHERE partition_id=?1)",
                    [p.id],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if !self.part_path(&p.path).exists() {
                if committed {
                    return Err(StoreError::Lost(format!(
                        "partition file {} ({tenant}/{stream} from {}) is missing: its committed records are \
                         gone; restore the file from a backup (`lethe verify` lists the records)",
                        p.path,
                        chrono_like(p.start).0
                    )));
                }
                // A new partition whose file a crash kept from being created.
                forget_partition(&inner.cat, p.id)?;
                continue;
            }
            let (head, sealed): (i64, i64) = inner
                .cat
                .query_row(
                    "SELECT head_seq, sealed FROM chains WHERE tenant=?1 AND stream=?2",
                    params![tenant, stream],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db)?
                .unwrap_or((0, 0));
            let reach: i64 = inner
                .cat
                .query_row(
                    "SELECT coalesce(max(last_seq), 0) FROM segments WHERE tenant=?1 AND stream=?2",
                    params![tenant, stream],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if head < sealed || reach > head {
                return Err(StoreError::Corrupt(format!(
                    "the catalog contradicts itself for chain {tenant}/{stream}: its head is record {head}, but \
                     a signed checkpoint covers {sealed} records and committed segments reach {reach}; rolling \
                     partition {} back would delete committed records, so nothing was changed — run `lethe verify`",
                    p.path
                )));
            }
            // Opened with `create`: a file a crash left right after creating
            // it gets its table (and then holds nothing to roll back).
            let c = self.conn(inner, p, true)?;
            partition::truncate_after(c, p.id, head as u64)?;
            // The rollback is durable before the catalog forgets the mark.
            self.sync_partitions(std::iter::once(p), true)?;
            self.settle(inner, p)?;
        }
        Ok(())
    }

    /// Recomputes a partition's counts from its file and marks it live, or
    /// removes it when it is empty.
    pub(super) fn settle(&self, inner: &mut Inner, p: &Part) -> Result<()> {
        let c = self.conn(inner, p, false)?;
        let groups = partition::group_stats(c, p.id)?;
        if groups.is_empty() {
            inner
                .cat
                .execute("UPDATE partitions SET state=?2 WHERE id=?1", params![p.id, DROPPING])
                .map_err(db)?;
            if self.release(inner, p, &mut FileFates::new())?.rows {
                self.sync_partitions(std::iter::once(p), false)?;
            }
            return forget_partition(&inner.cat, p.id);
        }
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
        tx.execute("UPDATE partitions SET state=?2 WHERE id=?1", params![p.id, LIVE])
            .map_err(db)?;
        tx.commit().map_err(db)
    }
}
/// Catalog tables with rows per partition, forgotten with it.
const PARTITION_TABLES: [&str; 3] = ["subject_filters", "segments", "partition_groups"];

/// Removes every partition marked `dropping` from the catalog, in four
/// statements whatever their number: a sweep on the many-tenant shapes
/// forgets tens of thousands at once. The caller has released them all.
pub(super) fn forget_dropping(cat: &Connection) -> Result<()> {
    forget_where(cat, "SELECT id FROM partitions WHERE state=?1", DROPPING)
}

/// Removes one released partition from the catalog.
pub(super) fn forget_partition(cat: &Connection, id: i64) -> Result<()> {
    forget_where(cat, "SELECT ?1", id)
}

/// Deletes the partitions whose ids `ids` (a query of one parameter, `arg`)
/// selects, and their rows in every per-partition table.
fn forget_where(cat: &Connection, ids: &str, arg: i64) -> Result<()> {
    for table in PARTITION_TABLES {
        cat.prepare_cached(&format!("DELETE FROM {table} WHERE partition_id IN ({ids})"))
            .and_then(|mut st| st.execute([arg]))
            .map_err(db)?;
    }
    cat.prepare_cached(&format!("DELETE FROM partitions WHERE id IN ({ids})"))
        .and_then(|mut st| st.execute([arg]))
        .map_err(db)?;
    Ok(())
}
