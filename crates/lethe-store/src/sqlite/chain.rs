//! The chains as the catalog keeps them: heads, Merkle frontiers and kept subtree heads, segments, and leaves rebuilt from rows.

use rusqlite::{params, Connection, OptionalExtension};

use super::*;

impl SqliteStore {
    pub(super) fn chains(&self) -> Result<Vec<ChainHead>> {
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
            let head = match Self::chain_state(&inner.cat, &tenant, &stream) {
                Ok(cs) => ChainHead {
                    size: cs.seq,
                    hash: cs.hash,
                    root: cs.frontier.root(),
                    sealed: sealed as u64,
                    sealed_us,
                    damaged: None,
                    tenant,
                    stream,
                },
                // One chain's damaged state must not hide the others.
                Err(e) => ChainHead {
                    size: Self::head(&inner.cat, &tenant, &stream)?,
                    hash: [0; 32],
                    root: [0; 32],
                    sealed: sealed as u64,
                    sealed_us,
                    damaged: Some(e.to_string()),
                    tenant,
                    stream,
                },
            };
            out.push(head);
        }
        Ok(out)
    }

    pub(super) fn mark_sealed(&self, tenant: &str, stream: &str, size: u64, ts_us: i64) -> Result<()> {
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

    pub(super) fn segments(&self, tenant: &str, stream: &str) -> Result<Vec<SegmentAt>> {
        let inner = self.lock();
        segments_of(&inner.cat, tenant, stream, None)
    }

    pub(super) fn partitions(&self, tenant: &str, stream: &str) -> Result<Vec<(i64, bool)>> {
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

    pub(super) fn merkle_node(&self, tenant: &str, stream: &str, level: u32, index: u64) -> Result<Option<Hash>> {
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

    pub(super) fn leaves(&self, tenant: &str, stream: &str, first: u64, last: u64) -> Result<Vec<Option<Hash>>> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        self.leaves_in(inner, &mut Reader::new(self), tenant, stream, first, last)
    }

    pub(super) fn head(cat: &Connection, tenant: &str, stream: &str) -> Result<u64> {
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
    pub(super) fn chain_state(cat: &Connection, tenant: &str, stream: &str) -> Result<partition::ChainState> {
        let row: Option<(i64, Vec<u8>, Vec<u8>)> = cat
            .prepare_cached("SELECT head_seq, head_hash, frontier FROM chains WHERE tenant=?1 AND stream=?2")
            .map_err(db)?
            .query_row([tenant, stream], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(db)?;
        Ok(match row {
            None => partition::ChainState::genesis(tenant, stream),
            Some((seq, hash, frontier)) => partition::ChainState::from_stored(tenant, stream, seq, &hash, &frontier)?,
        })
    }

    /// Leaf hashes of `first..=last` of a chain from the rows that hold
    /// them (`None` where no row does), via the segments.
    pub(super) fn leaves_in(
        &self,
        inner: &mut Inner,
        reader: &mut Reader<'_>,
        tenant: &str,
        stream: &str,
        first: u64,
        last: u64,
    ) -> Result<Vec<Option<Hash>>> {
        let mut out = vec![None; (last + 1 - first) as usize];
        let segs = segments_of(&inner.cat, tenant, stream, Some((first, last)))?;
        for sa in segs {
            let p = self
                .parts_where(&inner.cat, "id = ?1", &[&sa.partition])?
                .pop()
                .ok_or_else(|| StoreError::Corrupt(format!("segment in missing partition {}", sa.partition)))?;
            // Through a reader of its own: a sweep reading the edges of what
            // it is about to drop never evicts (and so checkpoints) a writer's
            // connection.
            reader.know(p.id, self.part_path(&p.path), p.state == DIRTY);
            let lo = sa.segment.first.max(first);
            let hi = sa.segment.last.min(last);
            let mut err = None;
            let scanned = reader.scan(p.id, lo, hi, &mut |row| match row.leaf(tenant, stream) {
                Ok(l) => out[(row.seq - first) as usize] = Some(l),
                Err(e) => {
                    err = Some(StoreError::Corrupt(format!(
                        "record {} of {tenant}/{stream}: {e}",
                        row.seq
                    )))
                }
            });
            match scanned {
                // A lost partition's leaves are gone: `None`, like removed ones.
                Ok(()) | Err(StoreError::Lost(_)) => {}
                Err(e) => return Err(e),
            }
            if let Some(e) = err {
                return Err(e);
            }
        }
        Ok(out)
    }
}
