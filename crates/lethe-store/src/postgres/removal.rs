//! Retention removal on PostgreSQL: planning per partition (whole drops or
//! row-level work), and carrying out exactly a plan — buckets whose every
//! partition goes are detached concurrently and dropped.

use std::collections::{BTreeMap, HashMap};

use lethe_core::hold::HoldScope;
use lethe_core::policy::{Action, GroupKey};
use lethe_core::TenantId;
use postgres::types::ToSql;
use postgres::GenericClient;

use super::chain::{leaves_in, segments_in, segments_of};
use super::redaction::{redact, RowJob};
use super::{bucket_table, db, unless_gone, Part, PgStore, UNION_CHUNK};
use crate::plan::{attribute_drop, chain_entry, edge_nodes, effects_from, Item, Work};
use crate::row::{ANONYMIZED, DELETED};
use crate::{
    Applied, ChainRemoval, DroppedPartition, PartGroupRef, Progress, Removal, Result, RetentionTarget, RowRemoval,
};

/// A bucket being dropped.
const DROPPING: i16 = 1;

/// Rows planned for row-level removal that share one transaction (more
/// partitions join it while the total is below this).
const ROWS_PER_TRANSACTION: u64 = 5_000;

/// Bucket tables dropped in one transaction: one WAL flush for them all,
/// while the locks they take (table, toast, indexes) stay well inside
/// PostgreSQL's default lock table.
const DROP_BATCH: usize = 100;

impl PgStore {
    pub(super) fn plan_removal(&self, targets: &[RetentionTarget], holds: &[HoldScope]) -> Result<Removal> {
        let mut c = self.conn()?;
        let work = super::while_buckets_drop("a retention plan", || self.work(&mut *c, targets, holds))?;
        let mut effects = effects_from(targets);
        for (e, h) in effects.iter_mut().zip(&work.held) {
            e.held = *h;
        }
        // A bucket's bytes come back only when every partition in it goes.
        let mut dropped_in: HashMap<i64, usize> = HashMap::new();
        for (p, _, _) in &work.drops {
            *dropped_in.entry(p.bucket).or_default() += 1;
        }
        let touched: Vec<i64> = dropped_in.keys().copied().collect();
        let sharers: HashMap<i64, i64> = c
            .query(
                "SELECT bucket, count(*) FROM partitions WHERE bucket = ANY($1) GROUP BY bucket",
                &[&touched],
            )
            .map_err(db)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let emptied: Vec<i64> = dropped_in
            .iter()
            .filter(|(b, n)| sharers.get(b).copied().unwrap_or(0) as usize == **n)
            .map(|(b, _)| *b)
            .collect();
        let mut freed = Self::bucket_bytes(&mut *c, &emptied)?;
        let mut chains: BTreeMap<(String, String), ChainRemoval> = BTreeMap::new();
        let dropped: Vec<i64> = work.drops.iter().map(|(p, _, _)| p.id).collect();
        let mut segs = segments_in(&mut *c, &dropped)?;
        for (p, items, groups) in &work.drops {
            let bytes = freed.remove(&p.bucket).unwrap_or(0);
            attribute_drop(&mut effects, items, bytes);
            let segments = segs.remove(&p.id).unwrap_or_default();
            chain_entry(&mut chains, p.tenant.as_str(), &p.stream.to_string())
                .dropped
                .push(DroppedPartition {
                    start_us: p.start,
                    end_us: p.end,
                    groups: groups.clone(),
                    segments,
                });
        }
        for (p, items) in &work.rows {
            let ch = chain_entry(&mut chains, p.tenant.as_str(), &p.stream.to_string());
            for i in items {
                effects[i.target].records += i.records;
                ch.rows.push(RowRemoval {
                    partition_start_us: p.start,
                    action: targets[i.target].action,
                    seqs: i.seqs.clone(),
                });
            }
        }
        Ok(Removal {
            effects,
            chains: chains.into_values().collect(),
        })
    }

    pub(super) fn apply_removal(&self, chains: &[ChainRemoval], progress: Progress<'_>) -> Result<Applied> {
        self.finish_dropping()?;
        crate::crashpoint::hit("removal.before_apply");
        let mut c = self.conn()?;
        let mut applied = Applied::default();
        let mut drops: Vec<Part> = Vec::new();
        let mut edges: BTreeMap<(String, String), Vec<(u64, u64)>> = BTreeMap::new();
        type RowJobs = Vec<(bool, Vec<[u64; 2]>)>;
        let mut rows: Vec<(Part, RowJobs)> = Vec::new();
        for ch in chains {
            let mut parts: HashMap<i64, Part> = Self::parts_where(
                &mut *c,
                "tenant=$1 AND stream=$2",
                &[&ch.tenant.as_str(), &ch.stream.as_str()],
            )?
            .into_iter()
            .map(|p| (p.start, p))
            .collect();
            let mut stored: HashMap<i64, Vec<(u64, u64)>> = HashMap::new();
            if !ch.dropped.is_empty() {
                for sa in segments_of(&mut *c, &ch.tenant, &ch.stream, None)? {
                    stored
                        .entry(sa.partition)
                        .or_default()
                        .push((sa.segment.first, sa.segment.last));
                }
            }
            for dp in &ch.dropped {
                let Some(p) = parts.remove(&dp.start_us) else {
                    continue;
                };
                let now = stored.remove(&p.id).unwrap_or_default();
                let planned: Vec<(u64, u64)> = dp.segments.iter().map(|s| (s.first, s.last)).collect();
                if now == planned {
                    edges
                        .entry((ch.tenant.clone(), ch.stream.clone()))
                        .or_default()
                        .extend(planned);
                    drops.push(p);
                } else {
                    // Written to since the plan: only the planned records go.
                    rows.push((p, vec![(false, planned.iter().map(|&(a, b)| [a, b]).collect())]));
                }
            }
            for rr in &ch.rows {
                let Some(p) = parts.get(&rr.partition_start_us).cloned() else {
                    continue;
                };
                let anonymize = rr.action == Action::Anonymize;
                match rows.iter_mut().find(|(q, _)| q.id == p.id) {
                    Some((_, jobs)) => jobs.push((anonymize, rr.seqs.clone())),
                    None => rows.push((p, vec![(anonymize, rr.seqs.clone())])),
                }
            }
        }
        let total = (drops.len() + rows.len()) as u64;
        let mut done = 0;
        progress(0, total);
        if !drops.is_empty() {
            let mut nodes = Vec::new();
            for ((tenant, stream), segs) in &edges {
                for n in edge_nodes(segs, &mut |lo, hi| leaves_in(&mut *c, tenant, stream, lo, hi))? {
                    nodes.push((tenant.clone(), stream.clone(), n));
                }
            }
            let mut tx = c.transaction().map_err(db)?;
            lock_chains(&mut tx, drops.iter())?;
            for (tenant, stream, (level, idx, hash)) in &nodes {
                tx.execute(
                    "INSERT INTO merkle_nodes(tenant,stream,level,idx,hash) VALUES($1,$2,$3,$4,$5)
                     ON CONFLICT (tenant,stream,level,idx) DO UPDATE SET hash=EXCLUDED.hash",
                    &[tenant, stream, &(*level as i32), &(*idx as i64), &&hash[..]],
                )
                .map_err(db)?;
            }
            // One statement per catalog table for all of them: a sweep drops
            // thousands of partitions and a round trip each adds up.
            let ids: Vec<i64> = drops.iter().map(|p| p.id).collect();
            let live: i64 = tx
                .query_one(
                    "SELECT coalesce(sum(records), 0)::bigint FROM partition_groups WHERE partition_id = ANY($1)",
                    &[&ids],
                )
                .map_err(db)?
                .get(0);
            applied.deleted += live as u64;
            applied.partitions_dropped += drops.len() as u64;
            for table in ["segments", "partition_groups", "subject_filters"] {
                tx.execute(&format!("DELETE FROM {table} WHERE partition_id = ANY($1)"), &[&ids])
                    .map_err(db)?;
            }
            tx.execute("DELETE FROM partitions WHERE id = ANY($1)", &[&ids])
                .map_err(db)?;
            let mut buckets: Vec<i64> = drops.iter().map(|p| p.bucket).collect();
            buckets.sort_unstable();
            buckets.dedup();
            // Held against appends making a partition in them meanwhile.
            tx.query(
                "SELECT 1 FROM buckets WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[&buckets],
            )
            .map_err(db)?;
            let shared: Vec<i64> = tx
                .query(
                    "SELECT DISTINCT bucket FROM partitions WHERE bucket = ANY($1) ORDER BY bucket",
                    &[&buckets],
                )
                .map_err(db)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let emptied: Vec<i64> = buckets
                .iter()
                .copied()
                .filter(|b| shared.binary_search(b).is_err())
                .collect();
            tx.execute("UPDATE buckets SET state=$2 WHERE id = ANY($1)", &[&emptied, &DROPPING])
                .map_err(db)?;
            // Buckets shared with partitions that stay: the dropped
            // partitions' rows go row by row (the space is reused by later
            // rows after vacuum).
            for p in drops.iter().filter(|p| shared.binary_search(&p.bucket).is_ok()) {
                tx.execute("DELETE FROM records WHERE bucket=$1 AND part=$2", &[&p.bucket, &p.id])
                    .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            crate::crashpoint::hit("sweep.after_mark_dropping");
            drop(c);
            applied.bytes_freed += self.finish_dropping()?;
            c = self.conn()?;
            done += drops.len() as u64;
            progress(done, total);
        }
        // Row-level work in few transactions: a subject's erasure touches a
        // few rows in each of many partitions, and a commit each (with its
        // WAL flush) was most of its removal time; a sweep's straddling
        // partitions hold many rows each and keep a transaction apiece.
        let mut i = 0;
        while i < rows.len() {
            let mut j = i;
            let mut planned = 0u64;
            while j < rows.len() && (j == i || planned < ROWS_PER_TRANSACTION) {
                planned += rows[j]
                    .1
                    .iter()
                    .flat_map(|(_, s)| s)
                    .map(|r| r[1] + 1 - r[0])
                    .sum::<u64>();
                j += 1;
            }
            let group = &rows[i..j];
            let mut tx = c.transaction().map_err(db)?;
            lock_chains(&mut tx, group.iter().map(|(p, _)| p))?;
            let jobs: Vec<RowJob<'_>> = group
                .iter()
                .flat_map(|(p, jobs)| {
                    jobs.iter().map(move |(anonymize, seqs)| RowJob {
                        part: p,
                        anonymize: *anonymize,
                        seqs,
                    })
                })
                .collect();
            let n = redact(&mut tx, &jobs)?;
            applied.deleted += n.deleted;
            applied.anonymized += n.anonymized;
            tx.commit().map_err(db)?;
            crate::crashpoint::hit("sweep.after_partition_rows");
            done += group.len() as u64;
            progress(done, total);
            i = j;
        }
        Ok(applied)
    }

    /// Detaches (concurrently) and drops every bucket marked as being
    /// dropped — this node's or one a crashed node left — and returns the
    /// bytes they occupied. Idempotent.
    ///
    /// Why it is shaped like this (measured on PostgreSQL 15 here, see
    /// docs/benchmarks.md): a transaction that drops a table always waits
    /// for its commit record to reach disk, so one `DROP` per transaction
    /// costs a WAL flush each (~11 ms); the detaches are therefore
    /// committed asynchronously one by one (`CONCURRENTLY` cannot share a
    /// transaction) and the drops go in a few transactions, whose flush also
    /// makes every earlier detach durable. A detach lost to a server crash
    /// is harmless: its bucket is still marked and the next call redoes it.
    pub(super) fn finish_dropping(&self) -> Result<u64> {
        let mut c = self.conn()?;
        let ids: Vec<i64> = c
            .query("SELECT id FROM buckets WHERE state=$1 ORDER BY id", &[&DROPPING])
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        c.batch_execute("SET synchronous_commit TO off").map_err(db)?;
        let detached = Self::detach_all(&mut *c, &ids);
        // The pooled connection goes back as it came, whatever happened.
        let reset = c.batch_execute("RESET synchronous_commit").map_err(db);
        let freed = detached?;
        reset?;
        crate::crashpoint::hit("sweep.mid_drop");
        for batch in ids.chunks(DROP_BATCH) {
            let mut tx = c.transaction().map_err(db)?;
            let tables: Vec<String> = batch.iter().map(|&id| bucket_table(id)).collect();
            tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", tables.join(", ")))
                .map_err(db)?;
            tx.execute("DELETE FROM buckets WHERE id = ANY($1)", &[&batch])
                .map_err(db)?;
            tx.commit().map_err(db)?;
        }
        Ok(freed)
    }

    /// Detaches the tables of `ids` still attached (finishing a detach a
    /// dead node left pending) and returns the bytes they occupy.
    fn detach_all(c: &mut impl GenericClient, ids: &[i64]) -> Result<u64> {
        let freed = Self::bucket_bytes(c, ids)?.values().sum();
        let tables: Vec<String> = ids.iter().map(|&id| bucket_table(id)).collect();
        let attached = c
            .query(
                "SELECT t, i.inhdetachpending FROM unnest($1::text[]) AS t
                 JOIN pg_inherits i ON i.inhrelid = to_regclass(t) ORDER BY t",
                &[&tables],
            )
            .map_err(db)?;
        for r in &attached {
            let table: String = r.get(0);
            if r.get::<_, bool>(1) {
                // Interrupted part way (a node died): finish it.
                c.batch_execute(&format!("ALTER TABLE records DETACH PARTITION {table} FINALIZE"))
                    .map_err(db)?;
            } else {
                // Concurrently: readers and writers of other buckets go on.
                c.batch_execute(&format!("ALTER TABLE records DETACH PARTITION {table} CONCURRENTLY"))
                    .map_err(db)?;
            }
        }
        Ok(freed)
    }

    /// Works out, per partition, what the targets do to it; `None` when a
    /// bucket it read from was dropped meanwhile (another node's expiry).
    fn work(
        &self,
        c: &mut impl GenericClient,
        targets: &[RetentionTarget],
        holds: &[HoldScope],
    ) -> Result<Option<Work<Part>>> {
        let by_key: HashMap<&GroupKey, usize> = targets.iter().enumerate().map(|(i, t)| (&t.key, i)).collect();
        let mut tenants: Vec<&TenantId> = targets.iter().map(|t| &t.key.tenant).collect();
        tenants.sort();
        tenants.dedup();
        let mut work = Work::new(targets.len());
        // Every tenant's partitions and groups in two statements (were two
        // per tenant: 200 round trips for 100 tenants), then per tenant.
        let names: Vec<&str> = tenants.iter().map(|t| t.as_str()).collect();
        let mut parts_of: HashMap<TenantId, Vec<Part>> = HashMap::new();
        for p in Self::parts_where(c, "tenant = ANY($1) ORDER BY stream, start_us", &[&names])? {
            parts_of.entry(p.tenant.clone()).or_default().push(p);
        }
        let mut groups_of = Self::groups_of_tenants(c, &names)?;
        // Partitions with row-level work, and the expired rows to read for
        // them: read afterwards, all in a few statements (a statement per
        // partition and group cost ~0.4 ms each, thousands on a sparse store).
        let mut partial: Vec<Partial<'_>> = Vec::new();
        let mut reads: Vec<(usize, usize)> = Vec::new();
        for tenant in tenants {
            let holds: Vec<&HoldScope> = holds.iter().filter(|h| h.tenant == tenant.as_str()).collect();
            let parts = parts_of.remove(tenant).unwrap_or_default();
            for p in parts {
                let groups = groups_of.remove(&p.id).unwrap_or_default();
                let held_by: Vec<&HoldScope> = holds
                    .iter()
                    .copied()
                    .filter(|h| {
                        h.may_cover(
                            tenant.as_str(),
                            &mut groups.iter().map(|g| g.scope.as_str()),
                            p.start,
                            p.end,
                        )
                    })
                    .collect();
                let mut whole = !groups.is_empty() && held_by.is_empty();
                let mut items = Vec::new();
                // Per item: whether the group has records before its cutoff.
                let mut expiring = Vec::new();
                for g in &groups {
                    let key = GroupKey {
                        tenant: p.tenant.clone(),
                        stream: p.stream.clone(),
                        scope: g.scope.clone(),
                        classification: g.class,
                    };
                    let Some(&ti) = by_key.get(&key) else {
                        whole = false;
                        continue;
                    };
                    let t = &targets[ti];
                    let gone = p.end <= t.cutoff_us && t.action != Action::Anonymize && held_by.is_empty();
                    whole &= gone;
                    items.push(Item {
                        target: ti,
                        scope: g.scope.clone(),
                        class: g.class,
                        records: if gone { g.records } else { 0 },
                        held: 0,
                        share: g.records + g.deleted,
                        seqs: Vec::new(),
                    });
                    expiring.push(p.start < t.cutoff_us && g.records > 0);
                }
                if whole {
                    let refs = groups
                        .iter()
                        .map(|g| PartGroupRef {
                            scope: g.scope.clone(),
                            class: g.class.code(),
                        })
                        .collect();
                    work.drops.push((p, items, refs));
                    continue;
                }
                // Row by row: every group with records before its cutoff.
                for (k, _) in expiring.into_iter().enumerate().filter(|(_, e)| *e) {
                    reads.push((partial.len(), k));
                }
                partial.push((p, items, held_by));
            }
        }
        let Some(found) = expired_seqs(c, targets, &partial, &reads)? else {
            return Ok(None);
        };
        for ((at, k), (seqs, held)) in reads.iter().zip(found) {
            let item = &mut partial[*at].1[*k];
            item.records = seqs.iter().map(|r| r[1] + 1 - r[0]).sum();
            item.seqs = seqs;
            item.held = held;
        }
        for (p, mut items, _) in partial {
            for i in &items {
                work.held[i.target] += i.held;
            }
            if items.iter().any(|i| i.records > 0) {
                items.retain(|i| i.records > 0);
                work.rows.push((p, items));
            }
        }
        Ok(Some(work))
    }
}

/// A partition with row-level work while it is planned: its items, and
/// the holds that may cover its records.
type Partial<'h> = (Part, Vec<Item>, Vec<&'h HoldScope>);

/// Expired sequence ranges of one item, and how many records holds kept.
type Expired = (Vec<[u64; 2]>, u64);

/// Locks the chains of `parts` (in one order on every node), so that
/// appends to them wait for this removal's commit.
fn lock_chains<'a>(tx: &mut postgres::Transaction<'_>, parts: impl Iterator<Item = &'a Part>) -> Result<()> {
    let mut keys: Vec<(String, String)> = parts.map(|p| (p.tenant.to_string(), p.stream.to_string())).collect();
    keys.sort();
    keys.dedup();
    let (ts, ss): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
    tx.query(
        "SELECT 1 FROM chains WHERE (tenant, stream) IN (SELECT * FROM unnest($1::text[], $2::text[]))
         ORDER BY tenant, stream FOR UPDATE",
        &[&ts, &ss],
    )
    .map_err(db)?;
    Ok(())
}

/// For each of `reads` — (index into `partial`, item there) — the
/// sequence numbers of the item's group's records expired at the cutoff
/// that its target's action still has to touch, as inclusive ranges,
/// leaving out held ones, and how many were held. One statement per
/// [`UNION_CHUNK`] reads, each on its bucket's own table; `None` when a
/// bucket was dropped meanwhile.
fn expired_seqs(
    c: &mut impl GenericClient,
    targets: &[RetentionTarget],
    partial: &[Partial<'_>],
    reads: &[(usize, usize)],
) -> Result<Option<Vec<Expired>>> {
    let mut out: Vec<Expired> = vec![(Vec::new(), 0); reads.len()];
    for (n, chunk) in reads.chunks(UNION_CHUNK).enumerate() {
        let base = n * UNION_CHUNK;
        let sql = chunk
            .iter()
            .enumerate()
            .map(|(k, &(at, i))| {
                let (p, items, _) = &partial[at];
                let item = &items[i];
                let target = &targets[item.target];
                let below = if target.action == Action::Anonymize {
                    ANONYMIZED
                } else {
                    DELETED
                };
                format!(
                    "SELECT {k}, seq, pseudonym, ts FROM {table} WHERE bucket={bucket} AND part={id} AND scope=${s}
                       AND class={class} AND ts<{cutoff} AND state<{below}",
                    table = bucket_table(p.bucket),
                    bucket = p.bucket,
                    id = p.id,
                    s = k + 1,
                    class = item.class.code(),
                    cutoff = target.cutoff_us,
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let params: Vec<&(dyn ToSql + Sync)> = chunk
            .iter()
            .map(|&(at, i)| &partial[at].1[i].scope as &(dyn ToSql + Sync))
            .collect();
        let Some(rows) = unless_gone(c.query(&format!("{sql} ORDER BY 1, 2"), &params))? else {
            return Ok(None);
        };
        for r in &rows {
            let k = r.get::<_, i32>(0) as usize;
            let (at, i) = chunk[k];
            let (p, items, holds) = &partial[at];
            let seq = r.get::<_, i64>(1) as u64;
            let (seqs, held) = &mut out[base + k];
            if !holds.is_empty() {
                let ps: Option<[u8; 32]> = r.get::<_, Option<Vec<u8>>>(2).and_then(|v| v.try_into().ok());
                if holds
                    .iter()
                    .any(|h| h.covers(p.tenant.as_str(), ps.as_ref(), &items[i].scope, r.get(3)))
                {
                    *held += 1;
                    continue;
                }
            }
            match seqs.last_mut() {
                Some(l) if l[1] + 1 == seq => l[1] = seq,
                _ => seqs.push([seq, seq]),
            }
        }
    }
    Ok(Some(out))
}
