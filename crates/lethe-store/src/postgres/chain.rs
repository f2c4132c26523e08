//! The chains on PostgreSQL: heads, Merkle frontiers and kept subtree
//! heads, segments, and leaves rebuilt from rows.

use std::collections::HashMap;

use lethe_core::merkle::Hash;
use postgres::GenericClient;

use super::{db, hash32, PgStore};
use crate::chain::ChainState;
use crate::row::RawRow;
use crate::{ChainHead, Result, Segment, SegmentAt, StoreError};

/// Every column of a record row, in [`raw_row`] order.
pub(super) const COLUMNS: &str = "seq,id,ts,received,scope,class,pseudonym,key_id,plain,body,state,prev,mac,redacted";

/// [`COLUMNS`] of the table aliased `alias`.
pub(super) fn columns_of(alias: &str) -> String {
    COLUMNS
        .split(',')
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A record row selected with [`COLUMNS`].
pub(super) fn raw_row(r: &postgres::Row) -> RawRow {
    raw_row_at(r, 0)
}

/// A record row whose [`COLUMNS`] start at column `at` (after columns of
/// a join).
pub(super) fn raw_row_at(r: &postgres::Row, at: usize) -> RawRow {
    RawRow {
        seq: r.get::<_, i64>(at) as u64,
        id: r.get(at + 1),
        ts_us: r.get(at + 2),
        received_us: r.get(at + 3),
        scope: r.get(at + 4),
        class: u8::try_from(r.get::<_, i16>(at + 5)).unwrap_or(u8::MAX),
        pseudonym: r.get(at + 6),
        key_id: r.get(at + 7),
        plain: r.get(at + 8),
        body: r.get(at + 9),
        state: r.get::<_, i16>(at + 10) as i64,
        prev: r.get(at + 11),
        mac: r.get(at + 12),
        redacted: r.get(at + 13),
    }
}

impl PgStore {
    pub(super) fn chains(&self) -> Result<Vec<ChainHead>> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                "SELECT tenant, stream, head_seq, head_hash, frontier, sealed, sealed_us FROM chains ORDER BY tenant, stream",
                &[],
            )
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| {
                let (tenant, stream): (String, String) = (r.get(0), r.get(1));
                let size = r.get::<_, i64>(2) as u64;
                let (sealed, sealed_us) = (r.get::<_, i64>(5) as u64, r.get(6));
                match ChainState::from_stored(&tenant, &stream, r.get(2), r.get(3), r.get(4)) {
                    Ok(cs) => ChainHead {
                        size: cs.seq,
                        hash: cs.hash,
                        root: cs.frontier.root(),
                        sealed,
                        sealed_us,
                        damaged: None,
                        tenant,
                        stream,
                    },
                    // One chain's damaged state must not hide the others.
                    Err(e) => ChainHead {
                        size,
                        hash: [0; 32],
                        root: [0; 32],
                        sealed,
                        sealed_us,
                        damaged: Some(e.to_string()),
                        tenant,
                        stream,
                    },
                }
            })
            .collect())
    }

    pub(super) fn mark_sealed(&self, tenant: &str, stream: &str, size: u64, ts_us: i64) -> Result<()> {
        let mut c = self.conn()?;
        c.execute(
            "UPDATE chains SET sealed=greatest(sealed, $3), sealed_us=$4 WHERE tenant=$1 AND stream=$2",
            &[&tenant, &stream, &(size as i64), &ts_us],
        )
        .map_err(db)?;
        Ok(())
    }

    pub(super) fn segments(&self, tenant: &str, stream: &str) -> Result<Vec<SegmentAt>> {
        segments_of(&mut *self.conn()?, tenant, stream, None)
    }

    pub(super) fn partitions(&self, tenant: &str, stream: &str) -> Result<Vec<(i64, bool)>> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                "SELECT id FROM partitions WHERE tenant=$1 AND stream=$2 ORDER BY start_us",
                &[&tenant, &stream],
            )
            .map_err(db)?;
        // Nothing is ever in flight outside a transaction here.
        Ok(rows.iter().map(|r| (r.get(0), false)).collect())
    }

    pub(super) fn merkle_node(&self, tenant: &str, stream: &str, level: u32, index: u64) -> Result<Option<Hash>> {
        let mut c = self.conn()?;
        let r = c
            .query_opt(
                "SELECT hash FROM merkle_nodes WHERE tenant=$1 AND stream=$2 AND level=$3 AND idx=$4",
                &[&tenant, &stream, &(level as i32), &(index as i64)],
            )
            .map_err(db)?;
        r.map(|r| hash32(r.get(0), &format!("Merkle node {level}/{index} of {tenant}/{stream}")))
            .transpose()
    }

    /// See [`crate::Store::merkle_nodes`]: one statement for them all.
    pub(super) fn merkle_nodes(&self, tenant: &str, stream: &str, nodes: &[(u32, u64)]) -> Result<Vec<Option<Hash>>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let levels: Vec<i32> = nodes.iter().map(|&(l, _)| l as i32).collect();
        let idxs: Vec<i64> = nodes.iter().map(|&(_, i)| i as i64).collect();
        let rows = self
            .conn()?
            .query(
                "SELECT n.level, n.idx, n.hash FROM merkle_nodes n
                   JOIN unnest($3::int4[], $4::int8[]) AS w(level, idx) ON n.level = w.level AND n.idx = w.idx
                  WHERE n.tenant = $1 AND n.stream = $2",
                &[&tenant, &stream, &levels, &idxs],
            )
            .map_err(db)?;
        let mut found = std::collections::HashMap::new();
        for r in &rows {
            let (level, idx): (i32, i64) = (r.get(0), r.get(1));
            let h = hash32(r.get(2), &format!("Merkle node {level}/{idx} of {tenant}/{stream}"))?;
            found.insert((level as u32, idx as u64), h);
        }
        Ok(nodes.iter().map(|n| found.get(n).copied()).collect())
    }

    pub(super) fn leaves(&self, tenant: &str, stream: &str, first: u64, last: u64) -> Result<Vec<Option<Hash>>> {
        leaves_in(&mut *self.conn()?, tenant, stream, first, last)
    }
}

/// Leaf hashes of `first..=last` of a chain from the rows that hold them
/// (`None` where no row does), via the segments.
///
/// The rows are read from the child tables of the partitions whose
/// segments overlap the range, in one statement: a query on the
/// partitioned parent would plan (and scan) every bucket of the store —
/// ~0.1 s each time with a year of daily buckets, and a sweep asks for the
/// edges of every chain it cuts.
pub(super) fn leaves_in(
    c: &mut impl GenericClient,
    tenant: &str,
    stream: &str,
    first: u64,
    last: u64,
) -> Result<Vec<Option<Hash>>> {
    // A partition listed may be dropped by another node's expiry before
    // its table is read: its rows are gone then, and a fresh list says so.
    super::while_buckets_drop("a read of leaves", || leaves_once(c, tenant, stream, first, last))
}

/// One attempt of [`leaves_in`]; `None` when a table it listed was gone.
fn leaves_once(
    c: &mut impl GenericClient,
    tenant: &str,
    stream: &str,
    first: u64,
    last: u64,
) -> Result<Option<Vec<Option<Hash>>>> {
    let (lo, hi) = (first as i64, last as i64);
    let parts: Vec<(i64, i64)> = c
        .query(
            "SELECT DISTINCT p.bucket, p.id FROM segments s JOIN partitions p ON p.id = s.partition_id
             WHERE s.tenant=$1 AND s.stream=$2 AND s.last_seq >= $3 AND s.first_seq <= $4",
            &[&tenant, &stream, &lo, &hi],
        )
        .map_err(db)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut out = vec![None; (last + 1 - first) as usize];
    for sql in super::union_over(&parts, |table, bucket, id| {
        format!("SELECT {COLUMNS} FROM {table} WHERE bucket = {bucket} AND part = {id} AND seq BETWEEN $1 AND $2")
    }) {
        let Some(rows) = super::unless_gone(c.query(&sql, &[&lo, &hi]))? else {
            return Ok(None);
        };
        for r in &rows {
            let row = raw_row(r);
            let leaf = row
                .leaf(tenant, stream)
                .map_err(|e| StoreError::Corrupt(format!("record {} of {tenant}/{stream}: {e}", row.seq)))?;
            out[(row.seq - first) as usize] = Some(leaf);
        }
    }
    Ok(Some(out))
}

/// A chain's segments in sequence order (those overlapping `within`, when given).
pub(super) fn segments_of(
    c: &mut impl GenericClient,
    tenant: &str,
    stream: &str,
    within: Option<(u64, u64)>,
) -> Result<Vec<SegmentAt>> {
    let (lo, hi) = within.map_or((0, i64::MAX), |(a, b)| (a as i64, b as i64));
    let rows = c
        .query(
            "SELECT s.first_seq, s.last_seq, s.prev, s.chain, s.partition_id, p.start_us
             FROM segments s JOIN partitions p ON p.id = s.partition_id
             WHERE s.tenant=$1 AND s.stream=$2 AND s.last_seq >= $3 AND s.first_seq <= $4 ORDER BY s.first_seq",
            &[&tenant, &stream, &lo, &hi],
        )
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok(SegmentAt {
                segment: Segment {
                    first: r.get::<_, i64>(0) as u64,
                    last: r.get::<_, i64>(1) as u64,
                    prev: hash32(r.get(2), "segment hash")?,
                    chain: hash32(r.get(3), "segment hash")?,
                },
                partition: r.get(4),
                start_us: r.get(5),
            })
        })
        .collect()
}

/// The segments of each of `parts`, in chain order, in one statement (a
/// sweep drops thousands of partitions over hundreds of chains; reading
/// every segment of each chain took a round trip per chain).
pub(super) fn segments_in(c: &mut impl GenericClient, parts: &[i64]) -> Result<HashMap<i64, Vec<Segment>>> {
    let mut out: HashMap<i64, Vec<Segment>> = HashMap::new();
    if parts.is_empty() {
        return Ok(out);
    }
    let rows = c
        .query(
            "SELECT partition_id, first_seq, last_seq, prev, chain FROM segments
             WHERE partition_id = ANY($1) ORDER BY partition_id, first_seq",
            &[&parts],
        )
        .map_err(db)?;
    for r in &rows {
        out.entry(r.get(0)).or_default().push(Segment {
            first: r.get::<_, i64>(1) as u64,
            last: r.get::<_, i64>(2) as u64,
            prev: hash32(r.get(3), "segment hash")?,
            chain: hash32(r.get(4), "segment hash")?,
        });
    }
    Ok(out)
}
