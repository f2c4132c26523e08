//! Scanning partition rows on PostgreSQL on a connection of the reader's own.

use super::chain::{raw_row, COLUMNS};
use super::{db, pool, PgStore};
use crate::row::RawRow;
use crate::{Result, RowReader};

/// A [`RowReader`] over one pooled connection.
pub(super) struct Reader<'a> {
    store: &'a PgStore,
    conn: Option<pool::Conn<'a>>,
    /// Each partition's bucket, as first looked up (a partition never moves).
    buckets: std::collections::HashMap<i64, i64>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(store: &'a PgStore) -> Self {
        Reader {
            store,
            conn: None,
            buckets: Default::default(),
        }
    }

    fn conn(&mut self) -> Result<&mut pool::Conn<'a>> {
        if self.conn.is_none() {
            self.conn = Some(self.store.conn()?);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// The connection and the bucket of `partition` (`None`: the partition
    /// is gone, so it has no rows).
    fn at(&mut self, partition: i64) -> Result<(&mut pool::Conn<'a>, Option<i64>)> {
        if !self.buckets.contains_key(&partition) {
            let b = self
                .conn()?
                .query_opt("SELECT bucket FROM partitions WHERE id=$1", &[&partition])
                .map_err(db)?
                .map(|r| r.get::<_, i64>(0));
            match b {
                Some(b) => {
                    self.buckets.insert(partition, b);
                }
                None => return Ok((self.conn()?, None)),
            }
        }
        let b = self.buckets.get(&partition).copied();
        Ok((self.conn()?, b))
    }
}

impl RowReader for Reader<'_> {
    fn scan(&mut self, partition: i64, first: u64, last: u64, visit: &mut dyn FnMut(RawRow)) -> Result<()> {
        // In chunks: a partition can hold millions of rows.
        const CHUNK: i64 = 20_000;
        let mut from = first as i64;
        let (c, Some(bucket)) = self.at(partition)? else {
            return Ok(());
        };
        loop {
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM records WHERE part=$1 AND bucket=$5 AND seq BETWEEN $2 AND $3
                         ORDER BY seq LIMIT $4"
                    ),
                    &[&partition, &from, &(last as i64), &CHUNK, &bucket],
                )
                .map_err(db)?;
            let n = rows.len() as i64;
            for r in &rows {
                let row = raw_row(r);
                from = row.seq as i64 + 1;
                visit(row);
            }
            if n < CHUNK {
                return Ok(());
            }
        }
    }

    fn row_count(&mut self, partition: i64) -> Result<u64> {
        let (c, Some(bucket)) = self.at(partition)? else {
            return Ok(0);
        };
        let r = c
            .query_one(
                "SELECT count(*) FROM records WHERE part=$1 AND bucket=$2",
                &[&partition, &bucket],
            )
            .map_err(db)?;
        Ok(r.get::<_, i64>(0) as u64)
    }

    fn strays(&mut self, partition: i64, segments: &[(u64, u64)]) -> Result<Vec<u64>> {
        let (c, Some(bucket)) = self.at(partition)? else {
            return Ok(Vec::new());
        };
        let rows = c
            .query(
                "SELECT seq FROM records WHERE part=$1 AND bucket=$2 ORDER BY seq",
                &[&partition, &bucket],
            )
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, i64>(0) as u64)
            .filter(|s| !segments.iter().any(|&(a, b)| a <= *s && *s <= b))
            .collect())
    }
}
