//! Row-level removal on PostgreSQL: tombstoning or anonymizing the listed
//! records of many partitions at once, and keeping their groups' counts
//! and time bounds, in a few statements per chunk of partitions rather
//! than a few per partition.
//!
//! Why (measured, docs/benchmarks.md): a subject of the bench's four-tenant
//! shape has records in hundreds of daily partitions, one bucket table
//! each. Three statements per partition (read, update, recount — the
//! recount reading every row of the partition) cost ~3 ms per partition,
//! most of a single-subject erasure.

use std::collections::{BTreeMap, HashMap};

use postgres::types::ToSql;
use postgres::Transaction;

use super::chain::{columns_of, raw_row_at, COLUMNS};
use super::{bucket_table, db, Part};
use crate::row::{ANONYMIZED, DELETED, LIVE};
use crate::{Result, StoreError};

/// Partitions named in one statement: each is a subquery (or a
/// data-modifying `WITH` item) of its own with two or three array
/// parameters.
const CHUNK: usize = 200;

/// What [`redact`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Redacted {
    /// Records tombstoned.
    pub deleted: u64,
    /// Records anonymized.
    pub anonymized: u64,
}

/// One partition's records to change, as inclusive sequence ranges, and
/// whether they are anonymized (else tombstoned).
pub(super) struct RowJob<'a> {
    /// The partition.
    pub part: &'a Part,
    /// Anonymize (keep the event) rather than tombstone.
    pub anonymize: bool,
    /// Inclusive sequence ranges; records already in the state are skipped.
    pub seqs: &'a [[u64; 2]],
}

/// The rows of one partition a statement changes.
#[derive(Default)]
struct Changes {
    /// Where each row is (`ctid` as text).
    at: Vec<String>,
    /// Their sequence numbers (checked again by the update).
    seqs: Vec<i64>,
    /// What each keeps of what goes (digests).
    kept: Vec<Vec<u8>>,
}

/// A group of a partition: partition id, scope, class code.
type GroupAt = (i64, String, i16);

/// How a group of a partition changes: counts to add, and the time bounds
/// of the records that stop being live.
#[derive(Default)]
struct Delta {
    records: i64,
    anonymized: i64,
    deleted: i64,
    /// Earliest and latest `ts` of records that left the live count.
    gone: Option<(i64, i64)>,
}

/// Tombstones or anonymizes the records `jobs` list that are not yet in
/// that state, keeping the digests of what goes, and updates the counts
/// and time bounds of their partitions' groups to match — exactly as a
/// recount from the rows would, without reading the rows that stay
/// (except, through the `ts` index, to find a new earliest or latest live
/// record when the old one went).
///
/// The caller holds the row locks of the partitions' chains, so nothing
/// else changes these rows meanwhile. Anonymizations run before deletions,
/// so a record listed for both ends deleted, as it would one job after
/// the other.
pub(super) fn redact(tx: &mut Transaction<'_>, jobs: &[RowJob<'_>]) -> Result<Redacted> {
    let mut out = Redacted::default();
    let mut deltas: BTreeMap<GroupAt, Delta> = BTreeMap::new();
    for anonymize in [true, false] {
        // A partition at most once per statement (one row must not be
        // updated twice in one statement), its ranges merged.
        let mut by_part: BTreeMap<i64, (&Part, Vec<[u64; 2]>)> = BTreeMap::new();
        for j in jobs.iter().filter(|j| j.anonymize == anonymize && !j.seqs.is_empty()) {
            by_part
                .entry(j.part.id)
                .or_insert((j.part, Vec::new()))
                .1
                .extend_from_slice(j.seqs);
        }
        let parts: Vec<(&Part, Vec<[u64; 2]>)> = by_part
            .into_values()
            .map(|(p, s)| (p, crate::merge_ranges(s)))
            .collect();
        for chunk in parts.chunks(CHUNK) {
            let n = redact_chunk(tx, chunk, anonymize, &mut deltas)?;
            if anonymize {
                out.anonymized += n;
            } else {
                out.deleted += n;
            }
        }
    }
    let buckets: HashMap<i64, i64> = jobs.iter().map(|j| (j.part.id, j.part.bucket)).collect();
    apply_deltas(tx, &deltas, &buckets)?;
    Ok(out)
}

/// One read and one update for the listed records of up to [`CHUNK`]
/// partitions; adds what changed to `deltas` and returns how many rows
/// changed.
fn redact_chunk(
    tx: &mut Transaction<'_>,
    parts: &[(&Part, Vec<[u64; 2]>)],
    anonymize: bool,
    deltas: &mut BTreeMap<GroupAt, Delta>,
) -> Result<u64> {
    let target: i16 = if anonymize { ANONYMIZED as i16 } else { DELETED as i16 };
    let ranges: Vec<(Vec<i64>, Vec<i64>)> = parts
        .iter()
        .map(|(_, seqs)| seqs.iter().map(|r| (r[0] as i64, r[1] as i64)).unzip())
        .collect();
    // Each partition its own subquery on its bucket's own table, one index
    // probe per range: `OFFSET 0` keeps the lateral subquery from being
    // flattened, so the ranges drive the primary key. Flattened, and on a
    // bucket not yet analyzed (every bucket just after a bulk load), the
    // planner took (bucket, part) for one row and read the whole partition
    // per statement (measured: 584 rows read to find 2; 10× that at 10M).
    let cols = columns_of("r");
    let sql = parts
        .iter()
        .enumerate()
        .map(|(k, (p, _))| {
            format!(
                "SELECT {id}::bigint, r.at::text, {cols} FROM unnest(${a}::bigint[], ${b}::bigint[]) AS u(lo, hi)
                 CROSS JOIN LATERAL (SELECT ctid AS at, {COLUMNS} FROM {table}
                   WHERE bucket={bucket} AND part={id} AND seq BETWEEN u.lo AND u.hi AND state < $1
                   ORDER BY seq OFFSET 0) r",
                id = p.id,
                table = bucket_table(p.bucket),
                bucket = p.bucket,
                a = 2 * k + 2,
                b = 2 * k + 3,
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&target];
    for (lo, hi) in &ranges {
        params.push(lo);
        params.push(hi);
    }
    let rows = tx.query(&sql, &params).map_err(db)?;
    if rows.is_empty() {
        return Ok(0);
    }
    // Per partition: the rows to change (where they are, their sequence
    // numbers) and what each keeps.
    let mut changes: BTreeMap<i64, Changes> = BTreeMap::new();
    for r in &rows {
        let part: i64 = r.get(0);
        let row = raw_row_at(r, 2);
        let d = row
            .digests()
            .map_err(|e| StoreError::Corrupt(format!("record {}: {e}", row.seq)))?;
        let c = changes.entry(part).or_default();
        c.at.push(r.get(1));
        c.seqs.push(row.seq as i64);
        c.kept.push(if anonymize {
            d.personal.to_vec()
        } else {
            [d.plain, d.personal].concat()
        });
        let delta = deltas.entry((part, row.scope.clone(), row.class as i16)).or_default();
        let was_live = row.state < DELETED;
        match (row.state, anonymize) {
            (LIVE, true) => delta.anonymized += 1,
            (LIVE, false) => delta.deleted += 1,
            (_, false) => {
                // Anonymized before, tombstoned now.
                delta.anonymized -= 1;
                delta.deleted += 1;
            }
            (_, true) => {}
        }
        if was_live && !anonymize {
            delta.records -= 1;
            delta.gone = Some(match delta.gone {
                Some((lo, hi)) => (lo.min(row.ts_us), hi.max(row.ts_us)),
                None => (row.ts_us, row.ts_us),
            });
        }
    }
    let set = if anonymize {
        "pseudonym=NULL, key_id=NULL, body=NULL, state=1, redacted=u.kept"
    } else {
        "pseudonym=NULL, key_id=NULL, body=NULL, plain='', state=2, redacted=u.kept"
    };
    let bucket_of: HashMap<i64, i64> = parts.iter().map(|(p, _)| (p.id, p.bucket)).collect();
    // Each row found again by where the read found it (`ctid`: the chains
    // are locked, nothing moves them meanwhile) and checked to be the
    // same record; a join on `seq` was planned as a read of the whole
    // partition, as above.
    let items: Vec<String> = changes
        .keys()
        .enumerate()
        .map(|(k, part)| {
            format!(
                "u{k} AS (UPDATE {table} r SET {set}
                   FROM unnest(${a}::text[]::tid[], ${b}::bigint[], ${c}::bytea[]) AS u(at, seq, kept)
                   WHERE r.ctid=u.at AND r.bucket={bucket} AND r.part={part} AND r.seq=u.seq RETURNING 1)",
                table = bucket_table(bucket_of[part]),
                bucket = bucket_of[part],
                a = 3 * k + 1,
                b = 3 * k + 2,
                c = 3 * k + 3,
            )
        })
        .collect();
    let count = (0..items.len())
        .map(|k| format!("SELECT 1 FROM u{k}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let sql = format!("WITH {} SELECT count(*) FROM ({count}) AS changed", items.join(", "));
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(3 * changes.len());
    for c in changes.values() {
        params.push(&c.at);
        params.push(&c.seqs);
        params.push(&c.kept);
    }
    let n: i64 = tx.query_one(&sql, &params).map_err(db)?.get(0);
    let read: usize = changes.values().map(|c| c.seqs.len()).sum();
    if n as usize != read {
        // The chains are locked: only a fault can get here.
        return Err(StoreError::Corrupt(format!(
            "row-level removal changed {n} records of the {read} it read"
        )));
    }
    Ok(n as u64)
}

/// Adds `deltas` to the groups' counts, and sets each group's time bounds:
/// kept when the records that went were all inside them, looked up again
/// (the `ts` index, first live row from either end) when one at a bound
/// went, cleared when no live record is left.
fn apply_deltas(
    tx: &mut Transaction<'_>,
    deltas: &BTreeMap<GroupAt, Delta>,
    buckets: &HashMap<i64, i64>,
) -> Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<i64> = deltas.keys().map(|(p, _, _)| *p).collect();
    ids.dedup();
    let rows = tx
        .query(
            "SELECT partition_id, scope, class, records, min_ts, max_ts FROM partition_groups
             WHERE partition_id = ANY($1)",
            &[&ids],
        )
        .map_err(db)?;
    // Each changed group's time bounds after the change (min_ts, max_ts).
    let mut bounds: BTreeMap<GroupAt, (Option<i64>, Option<i64>)> = BTreeMap::new();
    let mut stale: Vec<GroupAt> = Vec::new();
    for r in &rows {
        let key: GroupAt = (r.get(0), r.get(1), r.get(2));
        let Some(d) = deltas.get(&key) else { continue };
        let live = r.get::<_, i64>(3) + d.records;
        let (lo, hi): (Option<i64>, Option<i64>) = (r.get(4), r.get(5));
        let moved = match (d.gone, lo, hi) {
            (None, _, _) => false,
            (Some((glo, ghi)), Some(lo), Some(hi)) => glo <= lo || ghi >= hi,
            _ => true,
        };
        if live > 0 && moved {
            stale.push(key.clone());
        }
        let (lo, hi) = if live > 0 { (lo, hi) } else { (None, None) };
        bounds.insert(key, (lo, hi));
    }
    for chunk in stale.chunks(CHUNK) {
        let sql = chunk
            .iter()
            .enumerate()
            .map(|(k, (part, _, class))| {
                let table = bucket_table(buckets[part]);
                let live = format!(
                    "SELECT ts FROM {table} WHERE bucket={b} AND part={part} AND scope=${s} AND class={class}
                       AND state < {DELETED} ORDER BY ts",
                    b = buckets[part],
                    s = k + 1,
                );
                // `ORDER BY … LIMIT 1`, not min()/max(): always the `ts`
                // index from either end, whatever the bucket's statistics.
                format!("SELECT {k}, ({live} LIMIT 1), ({live} DESC LIMIT 1)")
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let params: Vec<&(dyn ToSql + Sync)> = chunk.iter().map(|(_, s, _)| s as &(dyn ToSql + Sync)).collect();
        for r in tx.query(&sql, &params).map_err(db)? {
            let k = r.get::<_, i32>(0) as usize;
            if let Some(b) = bounds.get_mut(&chunk[k]) {
                *b = (r.get(1), r.get(2));
            }
        }
    }
    let (mut pid, mut scope, mut class) = (Vec::new(), Vec::new(), Vec::new());
    let (mut dr, mut da, mut dd) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lo, mut hi) = (Vec::new(), Vec::new());
    for (key, (min, max)) in &bounds {
        let d = &deltas[key];
        pid.push(key.0);
        scope.push(key.1.as_str());
        class.push(key.2);
        dr.push(d.records);
        da.push(d.anonymized);
        dd.push(d.deleted);
        lo.push(*min);
        hi.push(*max);
    }
    tx.execute(
        "UPDATE partition_groups g
            SET records = g.records + u.dr, anonymized = g.anonymized + u.da, deleted = g.deleted + u.dd,
                min_ts = u.lo, max_ts = u.hi
           FROM unnest($1::bigint[], $2::text[], $3::smallint[], $4::bigint[], $5::bigint[], $6::bigint[],
                       $7::bigint[], $8::bigint[]) AS u(pid, scope, class, dr, da, dd, lo, hi)
          WHERE g.partition_id = u.pid AND g.scope = u.scope AND g.class = u.class",
        &[&pid, &scope, &class, &dr, &da, &dd, &lo, &hi],
    )
    .map_err(db)?;
    Ok(())
}
