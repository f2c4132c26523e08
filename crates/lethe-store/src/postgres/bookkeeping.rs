//! The catalog rows an append keeps beside its records — partitions, chain
//! heads, Merkle nodes, segments — each written for the whole batch in one
//! statement (`unnest` of arrays), whatever the number of partitions it
//! touches.
//!
//! Why: a batch of a platform with many tenants spreads over thousands of
//! (tenant, stream, day) partitions (8,192 records of 100 tenants over a
//! year touch ~7,500), and one statement per partition and step — insert
//! the partition, check its bucket, look for duplicate ids, extend its
//! segment — made ~5 round trips per record: 6,091 records/s where the
//! bench's four tenants reached 40,000.

use std::collections::{BTreeMap, HashMap, HashSet};

use postgres::Transaction;

use super::db;
use crate::chain::ChainState;
use crate::Result;

/// A (tenant, stream, period) partition an append writes to, with the
/// bucket a new partition goes to.
pub(super) struct Wanted<'a> {
    pub tenant: &'a str,
    pub stream: &'a str,
    pub start_us: i64,
    pub bucket: i64,
}

/// Where a wanted partition is: its id, the bucket it is in (for a
/// partition that existed, the one it was put in then) and whether this
/// append created it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placed {
    pub part: i64,
    pub bucket: i64,
    pub created: bool,
}

/// Creates the partitions that do not exist and finds those that do, in
/// `wanted`'s order (which must be the same on every node — the batch's
/// sorted order — so that concurrent appends wait for each other's rows
/// rather than deadlock).
pub(super) fn place(tx: &mut Transaction<'_>, wanted: &[Wanted<'_>], span_us: i64) -> Result<Vec<Placed>> {
    let ts: Vec<&str> = wanted.iter().map(|w| w.tenant).collect();
    let ss: Vec<&str> = wanted.iter().map(|w| w.stream).collect();
    let starts: Vec<i64> = wanted.iter().map(|w| w.start_us).collect();
    let ends: Vec<i64> = starts.iter().map(|s| s + span_us).collect();
    let buckets: Vec<i64> = wanted.iter().map(|w| w.bucket).collect();
    let mut found: HashMap<(String, String, i64), Placed> = HashMap::with_capacity(wanted.len());
    for r in tx
        .query(
            "INSERT INTO partitions(tenant,stream,start_us,end_us,bucket)
             SELECT tenant, stream, start_us, end_us, bucket
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[]) WITH ORDINALITY
               AS k(tenant, stream, start_us, end_us, bucket, n) ORDER BY n
             ON CONFLICT (tenant,stream,start_us) DO NOTHING
             RETURNING tenant, stream, start_us, id, bucket",
            &[&ts, &ss, &starts, &ends, &buckets],
        )
        .map_err(db)?
    {
        found.insert(
            (r.get(0), r.get(1), r.get(2)),
            Placed {
                part: r.get(3),
                bucket: r.get(4),
                created: true,
            },
        );
    }
    if found.len() < wanted.len() {
        for r in tx
            .query(
                "SELECT p.tenant, p.stream, p.start_us, p.id, p.bucket FROM partitions p
                 JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS k(tenant, stream, start_us)
                   USING (tenant, stream, start_us)",
                &[&ts, &ss, &starts],
            )
            .map_err(db)?
        {
            found.entry((r.get(0), r.get(1), r.get(2))).or_insert(Placed {
                part: r.get(3),
                bucket: r.get(4),
                created: false,
            });
        }
    }
    wanted
        .iter()
        .map(|w| {
            found
                .get(&(w.tenant.to_string(), w.stream.to_string(), w.start_us))
                .copied()
                .ok_or_else(|| {
                    crate::StoreError::Corrupt(format!(
                        "partition {}/{}/{} neither inserted nor found",
                        w.tenant, w.stream, w.start_us
                    ))
                })
        })
        .collect()
}

/// Whether every one of `buckets` is live (not being dropped), holding
/// them so (share locks, taken in id order) until the transaction ends.
pub(super) fn hold_buckets(tx: &mut Transaction<'_>, buckets: &[i64]) -> Result<bool> {
    let mut ids = buckets.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let live = tx
        .query(
            "SELECT id FROM buckets WHERE id = ANY($1) AND state=0 ORDER BY id FOR SHARE",
            &[&ids],
        )
        .map_err(db)?;
    Ok(live.len() == ids.len())
}

/// Of the (bucket, partition, id) triples, those already stored: one
/// statement. `bucket = ANY(…)` lets the planner keep only the buckets
/// named (plan-time pruning — planning every child table of `records`
/// would cost ~0.2 ms each); the `LATERAL … LIMIT 1` keeps it a nested
/// loop of index probes (as a join, PostgreSQL 15 chose to sort-merge
/// against a sequential scan of every bucket named: 330 ms for 3,000
/// probes into 45 small buckets, and a bucket of the bench's shape holds
/// 100,000 rows).
pub(super) fn stored_ids(tx: &mut Transaction<'_>, wanted: &[(i64, i64, &[u8])]) -> Result<HashSet<(i64, [u8; 16])>> {
    if wanted.is_empty() {
        return Ok(HashSet::new());
    }
    let mut buckets: Vec<i64> = wanted.iter().map(|w| w.0).collect();
    buckets.sort_unstable();
    buckets.dedup();
    let bs: Vec<i64> = wanted.iter().map(|w| w.0).collect();
    let ps: Vec<i64> = wanted.iter().map(|w| w.1).collect();
    let ids: Vec<&[u8]> = wanted.iter().map(|w| w.2).collect();
    Ok(tx
        .query(
            "SELECT k.part, k.id FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS k(bucket, part, id)
             CROSS JOIN LATERAL (SELECT 1 FROM records r WHERE r.bucket = ANY($4)
               AND r.bucket = k.bucket AND r.part = k.part AND r.id = k.id LIMIT 1) AS found",
            &[&bs, &ps, &ids, &buckets],
        )
        .map_err(db)?
        .iter()
        .filter_map(|r| Some((r.get::<_, i64>(0), r.get::<_, &[u8]>(1).try_into().ok()?)))
        .collect())
}

/// Creates the chains not yet stored and locks every one of `chains`
/// (sorted: one order on every node), returning their heads.
pub(super) fn lock_chains(
    tx: &mut Transaction<'_>,
    chains: &[(String, String)],
) -> Result<BTreeMap<(String, String), ChainState>> {
    let (ts, ss): (Vec<&str>, Vec<&str>) = chains.iter().map(|(t, s)| (t.as_str(), s.as_str())).unzip();
    let genesis: Vec<Vec<u8>> = chains
        .iter()
        .map(|(t, s)| ChainState::genesis(t, s).hash.to_vec())
        .collect();
    tx.execute(
        "INSERT INTO chains(tenant,stream,head_seq,head_hash,frontier)
         SELECT tenant, stream, 0, hash, '' FROM unnest($1::text[], $2::text[], $3::bytea[]) WITH ORDINALITY
           AS k(tenant, stream, hash, n) ORDER BY n
         ON CONFLICT DO NOTHING",
        &[&ts, &ss, &genesis],
    )
    .map_err(db)?;
    let mut heads = BTreeMap::new();
    for r in tx
        .query(
            "SELECT tenant, stream, head_seq, head_hash, frontier FROM chains
             WHERE (tenant, stream) IN (SELECT * FROM unnest($1::text[], $2::text[]))
             ORDER BY tenant, stream FOR UPDATE",
            &[&ts, &ss],
        )
        .map_err(db)?
    {
        let (t, s): (String, String) = (r.get(0), r.get(1));
        let st = ChainState::from_stored(&t, &s, r.get(2), r.get(3), r.get(4))?;
        heads.insert((t, s), st);
    }
    Ok(heads)
}

/// Writes the chains' new heads and the Merkle nodes they completed.
pub(super) fn save_chains(tx: &mut Transaction<'_>, heads: &BTreeMap<(String, String), ChainState>) -> Result<()> {
    let mut ts = Vec::with_capacity(heads.len());
    let mut ss = Vec::with_capacity(heads.len());
    let (mut seqs, mut hashes, mut frontiers) = (Vec::new(), Vec::new(), Vec::new());
    // One row per node: a node is completed once, but a later one at the
    // same place wins as the per-node upsert did.
    let mut nodes: BTreeMap<(&str, &str, i32, i64), &[u8]> = BTreeMap::new();
    for ((t, s), h) in heads {
        ts.push(t.as_str());
        ss.push(s.as_str());
        seqs.push(h.seq as i64);
        hashes.push(h.hash.to_vec());
        frontiers.push(h.frontier_bytes());
        for (level, idx, hash) in &h.nodes {
            nodes.insert((t, s, *level as i32, *idx as i64), &hash[..]);
        }
    }
    tx.execute(
        "UPDATE chains c SET head_seq=k.seq, head_hash=k.hash, frontier=k.frontier
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bytea[], $5::bytea[]) AS k(tenant, stream, seq, hash, frontier)
         WHERE c.tenant=k.tenant AND c.stream=k.stream",
        &[&ts, &ss, &seqs, &hashes, &frontiers],
    )
    .map_err(db)?;
    if !nodes.is_empty() {
        let (mut nt, mut ns, mut nl, mut ni, mut nh) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((t, s, l, i), h) in nodes {
            nt.push(t);
            ns.push(s);
            nl.push(l);
            ni.push(i);
            nh.push(h);
        }
        tx.execute(
            "INSERT INTO merkle_nodes(tenant,stream,level,idx,hash)
             SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::bytea[])
             ON CONFLICT (tenant,stream,level,idx) DO UPDATE SET hash=EXCLUDED.hash",
            &[&nt, &ns, &nl, &ni, &nh],
        )
        .map_err(db)?;
    }
    Ok(())
}

/// The run of a chain one partition received in this append.
pub(super) struct NewSegment<'a> {
    pub tenant: &'a str,
    pub stream: &'a str,
    pub part: i64,
    pub first: u64,
    pub last: u64,
    pub prev: [u8; 32],
    pub chain: [u8; 32],
}

/// Extends each partition's segment that ends just before its new run, and
/// starts a segment for the runs that extend none.
pub(super) fn save_segments(tx: &mut Transaction<'_>, runs: &[NewSegment<'_>]) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let ts: Vec<&str> = runs.iter().map(|r| r.tenant).collect();
    let ss: Vec<&str> = runs.iter().map(|r| r.stream).collect();
    let parts: Vec<i64> = runs.iter().map(|r| r.part).collect();
    let lasts: Vec<i64> = runs.iter().map(|r| r.last as i64).collect();
    let chains: Vec<&[u8]> = runs.iter().map(|r| &r.chain[..]).collect();
    let befores: Vec<i64> = runs.iter().map(|r| r.first as i64 - 1).collect();
    let extended: HashSet<i64> = tx
        .query(
            "UPDATE segments s SET last_seq=k.last, chain=k.chain
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bytea[], $6::bigint[])
               AS k(tenant, stream, part, last, chain, before)
             WHERE s.tenant=k.tenant AND s.stream=k.stream AND s.partition_id=k.part AND s.last_seq=k.before
             RETURNING s.partition_id",
            &[&ts, &ss, &parts, &lasts, &chains, &befores],
        )
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let fresh: Vec<&NewSegment<'_>> = runs.iter().filter(|r| !extended.contains(&r.part)).collect();
    if fresh.is_empty() {
        return Ok(());
    }
    let ts: Vec<&str> = fresh.iter().map(|r| r.tenant).collect();
    let ss: Vec<&str> = fresh.iter().map(|r| r.stream).collect();
    let firsts: Vec<i64> = fresh.iter().map(|r| r.first as i64).collect();
    let lasts: Vec<i64> = fresh.iter().map(|r| r.last as i64).collect();
    let parts: Vec<i64> = fresh.iter().map(|r| r.part).collect();
    let prevs: Vec<&[u8]> = fresh.iter().map(|r| &r.prev[..]).collect();
    let chains: Vec<&[u8]> = fresh.iter().map(|r| &r.chain[..]).collect();
    tx.execute(
        "INSERT INTO segments(tenant,stream,first_seq,last_seq,partition_id,prev,chain)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bytea[], $7::bytea[])",
        &[&ts, &ss, &firsts, &lasts, &parts, &prevs, &chains],
    )
    .map_err(db)?;
    Ok(())
}
