//! Crash repair: finishing partitions being dropped and rolling dirty partitions back to the catalog's commit point.

use rusqlite::{params, Connection};

use super::*;

impl SqliteStore {
    /// Finishes dropping partitions marked `dropping` and repairs `dirty` ones.
    pub(super) fn repair(&self, inner: &mut Inner) -> Result<()> {
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
    pub(super) fn settle(&self, inner: &mut Inner, p: &Part) -> Result<()> {
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
}
pub(super) fn forget_partition(cat: &Connection, id: i64) -> Result<()> {
    cat.execute("DELETE FROM subject_filters WHERE partition_id=?1", [id])
        .map_err(db)?;
    cat.execute("DELETE FROM segments WHERE partition_id=?1", [id])
        .map_err(db)?;
    cat.execute("DELETE FROM partition_groups WHERE partition_id=?1", [id])
        .map_err(db)?;
    cat.execute("DELETE FROM partitions WHERE id=?1", [id]).map_err(db)?;
    Ok(())
}
