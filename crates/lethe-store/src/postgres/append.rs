//! Appending on PostgreSQL: buckets made on demand in their own
//! transaction, then one transaction that stores keys, ledger entries, rows
//! (by binary `COPY`), chain heads, segments, Merkle nodes and counts.

use std::collections::{BTreeMap, HashMap, HashSet};

use lethe_core::integrity::{Digests, RecordMac};
use lethe_core::{StreamId, TenantId};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};

use super::{bookkeeping, bucket_table, catalog, db, PgStore};
use crate::row;
use crate::{AppendReport, Batch, CaptureDrop, NewRecord, Result, StoreError, StoredKey};

/// Per (scope, class) of a partition: records added, oldest and newest event time.
type GroupDeltas = Vec<((String, i16), (i64, i64, i64))>;

/// Why one attempt stopped short of storing anything, besides an error.
enum Attempt {
    Done(Vec<AppendReport>),
    /// A bucket the attempt planned for began to be dropped meanwhile: plan again.
    BucketGone,
    /// A record of the batch is already stored in its partition (the
    /// unique index said so): try again, looking for stored ids first.
    Stored,
}

impl PgStore {
    pub(super) fn append_group(&self, group: &[&Batch]) -> Result<Vec<AppendReport>> {
        let tenants: HashSet<&TenantId> = group.iter().flat_map(|b| &b.mac_keys).map(|(t, _)| t).collect();
        if let Some(r) = group
            .iter()
            .flat_map(|b| &b.records)
            .find(|r| !tenants.contains(&r.group.tenant))
        {
            return Err(StoreError::Misuse(format!(
                "no record MAC key for tenant `{}` in the batch",
                r.group.tenant
            )));
        }
        // Optimistic: most appends carry no record stored before, and
        // looking every id up first cost about as much server time as the
        // `COPY` itself (an index probe per record, under the chain locks).
        // The unique index on (bucket, part, id) catches the rare batch
        // that does — a client's retry — and that batch is done again,
        // looking first, so its duplicates are counted and skipped.
        let mut probe = false;
        super::while_buckets_drop("this append", || {
            Ok(match self.try_append(group, probe)? {
                Attempt::Done(r) => Some(r),
                Attempt::BucketGone => None,
                Attempt::Stored => {
                    probe = true;
                    None
                }
            })
        })
    }

    /// One attempt at storing `group` in one transaction; `probe` looks up
    /// the batch's ids among stored records first (otherwise a stored one
    /// ends the attempt as [`Attempt::Stored`]).
    fn try_append(&self, group: &[&Batch], probe: bool) -> Result<Attempt> {
        let batch: Vec<&NewRecord> = group.iter().flat_map(|b| &b.records).collect();
        let owner: Vec<usize> = group
            .iter()
            .enumerate()
            .flat_map(|(i, b)| std::iter::repeat_n(i, b.records.len()))
            .collect();
        let mut digests: Vec<Digests> = Vec::with_capacity(batch.len());
        for b in group {
            if b.digests.len() == b.records.len() {
                digests.extend_from_slice(&b.digests);
            } else {
                digests.extend(b.records.iter().map(row::digests_of));
            }
        }
        let new_keys: Vec<(&StoredKey, usize)> = group
            .iter()
            .enumerate()
            .flat_map(|(i, b)| b.new_keys.iter().map(move |k| (k, i)))
            .collect();
        let key_ledger = group.iter().find_map(|b| b.key_ledger.as_ref());
        let placement: Vec<&(TenantId, StreamId, String)> = group.iter().flat_map(|b| &b.placement).collect();
        let drops: Vec<&CaptureDrop> = group.iter().flat_map(|b| &b.drops).collect();
        let macs: HashMap<&TenantId, RecordMac> = group
            .iter()
            .flat_map(|b| &b.mac_keys)
            .map(|(t, k)| (t, RecordMac::new(k)))
            .collect();

        // Records by partition (tenant, stream, period), input order kept within each.
        let mut order: Vec<(&TenantId, &StreamId, i64, usize)> = batch
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let start = r.ts_us.div_euclid(self.span_us) * self.span_us;
                (&r.group.tenant, &r.group.stream, start, i)
            })
            .collect();
        order.sort();
        let mut keys: Vec<(&TenantId, &StreamId, i64)> = order.iter().map(|&(t, s, p, _)| (t, s, p)).collect();
        keys.dedup();
        let key_names: Vec<String> = keys.iter().map(|(_, s, _)| s.to_string()).collect();

        let mut c = self.conn()?;
        // The bucket each partition goes to: the one it is in, or its
        // expiry class's bucket for the period, made now in its own
        // transaction when missing.
        // One round trip for the partitions that exist, not one per partition.
        let known: HashMap<(String, String, i64), i64> = {
            let ts: Vec<&str> = keys.iter().map(|(t, _, _)| t.as_str()).collect();
            let ss: Vec<String> = keys.iter().map(|(_, s, _)| s.to_string()).collect();
            let ps: Vec<i64> = keys.iter().map(|(_, _, p)| *p).collect();
            c.query(
                "SELECT p.tenant, p.stream, p.start_us, p.bucket FROM partitions p
                 JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS k(tenant, stream, start_us)
                   USING (tenant, stream, start_us)",
                &[&ts, &ss, &ps],
            )
            .map_err(db)?
            .iter()
            .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
            .collect()
        };
        let mut bucket_of: HashMap<(&TenantId, &StreamId, i64), i64> = HashMap::new();
        for &(t, s, start) in &keys {
            let stream = s.to_string();
            let b = match known.get(&(t.to_string(), stream.clone(), start)) {
                Some(b) => *b,
                None => {
                    let class = placement
                        .iter()
                        .find(|(pt, ps, _)| pt == t && ps == s)
                        .map_or("default", |(_, _, c)| c.as_str());
                    self.ensure_bucket(&mut c, &bucket_name(class, &stream, start))?
                }
            };
            bucket_of.insert((t, s, start), b);
        }

        let mut tx = c.transaction().map_err(db)?;
        let mut keys_stored = vec![0u64; group.len()];
        let mut known_live: HashSet<i64> = HashSet::new();
        // New keys first, recorded in the ledger in the same commit.
        {
            let now = batch.first().map(|r| r.received_us).unwrap_or(0);
            let mut created: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
            // One statement for the batch's new keys (ids in order: two
            // appends storing the same keys wait for each other, never
            // deadlock), one more for those already there.
            let mut sorted: Vec<&StoredKey> = new_keys.iter().map(|&(k, _)| k).collect();
            sorted.sort_by_key(|k| k.id);
            sorted.dedup_by_key(|k| k.id);
            let inserted: HashSet<i64> = if sorted.is_empty() {
                HashSet::new()
            } else {
                let ids: Vec<i64> = sorted.iter().map(|k| k.id).collect();
                let tenants: Vec<&str> = sorted.iter().map(|k| k.tenant.as_str()).collect();
                let refs: Vec<&[u8]> = sorted.iter().map(|k| &k.key_ref[..]).collect();
                let wrapped: Vec<Option<&[u8]>> = sorted.iter().map(|k| k.wrapped.as_deref()).collect();
                tx.query(
                    "INSERT INTO data_keys(id,tenant,ref,wrapped,created_us)
                     SELECT id, tenant, ref, wrapped, $5
                     FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bytea[]) WITH ORDINALITY
                       AS k(id, tenant, ref, wrapped, n) ORDER BY n
                     ON CONFLICT DO NOTHING RETURNING id",
                    &[&ids, &tenants, &refs, &wrapped, &now],
                )
                .map_err(db)?
                .iter()
                .map(|r| r.get(0))
                .collect()
            };
            let others: Vec<i64> = sorted
                .iter()
                .map(|k| k.id)
                .filter(|id| !inserted.contains(id))
                .collect();
            let found: HashMap<i64, (String, Vec<u8>, bool)> = if others.is_empty() {
                HashMap::new()
            } else {
                tx.query(
                    "SELECT id, tenant, ref, wrapped IS NOT NULL FROM data_keys WHERE id = ANY($1)",
                    &[&others],
                )
                .map_err(db)?
                .iter()
                .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
                .collect()
            };
            let mut counted: HashSet<i64> = HashSet::new();
            for &(k, o) in &new_keys {
                if inserted.contains(&k.id) {
                    let stored = sorted[sorted.partition_point(|x| x.id < k.id)];
                    if stored.tenant != k.tenant || stored.key_ref != k.key_ref {
                        return Err(StoreError::KeyConflict);
                    }
                    if counted.insert(k.id) {
                        known_live.insert(k.id);
                        keys_stored[o] += 1;
                        created.entry(k.tenant.as_str()).or_default().push(k.id);
                    }
                    continue;
                }
                match found.get(&k.id) {
                    Some((t, _, false)) if t == k.tenant.as_str() => return Err(StoreError::KeyDestroyed),
                    Some((t, r, true)) if t == k.tenant.as_str() && *r == k.key_ref => {
                        known_live.insert(k.id);
                    }
                    _ => return Err(StoreError::KeyConflict),
                }
            }
            if !created.is_empty() {
                let kl = key_ledger
                    .ok_or_else(|| StoreError::Misuse("a batch with new keys carries no key ledger".into()))?;
                for (tenant, ids) in &created {
                    let d = lethe_core::ledger::Draft::keys_created(kl.ts_us, &kl.actor, tenant, ids);
                    catalog::append_ledger_in(&mut tx, &self.schema, &mut |seq, prev| d.seal(&kl.key, seq, prev))?;
                }
            }
        }
        // Every key the records use must exist and be live; the rows are
        // share-locked so an erasure destroying one waits for this commit
        // (and its continuation then finds these records).
        {
            let mut used: Vec<i64> = batch
                .iter()
                .filter_map(|r| r.key_id)
                .filter(|k| !known_live.contains(k))
                .collect();
            used.sort_unstable();
            used.dedup();
            if !used.is_empty() {
                let rows = tx
                    .query(
                        "SELECT id, wrapped IS NOT NULL FROM data_keys WHERE id = ANY($1) ORDER BY id FOR SHARE",
                        &[&used],
                    )
                    .map_err(db)?;
                if rows.iter().any(|r| !r.get::<_, bool>(1)) {
                    return Err(StoreError::KeyDestroyed);
                }
                if rows.len() != used.len() {
                    return Err(StoreError::KeyConflict);
                }
            }
        }
        // Lock the chains written, in one order on every node.
        let mut chain_keys: Vec<(String, String)> =
            keys.iter().map(|(t, s, _)| (t.to_string(), s.to_string())).collect();
        chain_keys.dedup();
        let mut heads = bookkeeping::lock_chains(&mut tx, &chain_keys)?;
        // Every partition written, created where missing (in the batch's
        // order); every bucket held live; the ids already stored.
        let wanted: Vec<bookkeeping::Wanted<'_>> = keys
            .iter()
            .zip(&key_names)
            .map(|(&(t, s, start), stream)| bookkeeping::Wanted {
                tenant: t.as_str(),
                stream,
                start_us: start,
                bucket: bucket_of[&(t, s, start)],
            })
            .collect();
        let placed = bookkeeping::place(&mut tx, &wanted, self.span_us)?;
        let buckets: Vec<i64> = placed.iter().map(|p| p.bucket).collect();
        if !bookkeeping::hold_buckets(&mut tx, &buckets)? {
            return Ok(Attempt::BucketGone);
        }
        let mut seen = {
            // `order` is sorted by partition and `keys` (so `placed`) is its
            // distinct partitions: walk both together.
            let mut probes: Vec<(i64, i64, &[u8])> = Vec::with_capacity(order.len());
            let mut at = 0;
            for &(t, s, start, k) in &order {
                if keys[at] != (t, s, start) {
                    at += 1;
                }
                let p = placed[at];
                // A partition this append created holds nothing yet.
                if probe && !p.created {
                    probes.push((p.bucket, p.part, &batch[k].id[..]));
                }
            }
            bookkeeping::stored_ids(&mut tx, &probes)?
        };

        let mut report: Vec<AppendReport> = keys_stored
            .into_iter()
            .map(|keys_stored| AppendReport {
                keys_stored,
                ..Default::default()
            })
            .collect();
        // Per partition: its bucket, whether this append created it, and
        // the pseudonyms it received (for its subject filter).
        let mut added: BTreeMap<i64, (i64, bool, Vec<[u8; 32]>)> = BTreeMap::new();
        // Per partition: its id, the segment it received, its group deltas, whether it is new.
        struct Settled {
            part: i64,
            tenant: String,
            stream: String,
            created: bool,
            segment: Option<(u64, u64, [u8; 32], [u8; 32])>,
            deltas: GroupDeltas,
        }
        let mut settled: Vec<Settled> = Vec::new();
        let mut buf = Vec::with_capacity(256);
        // Rows go to the server as they are sealed, so that it inserts
        // while this process seals the rest (sealing first, then copying,
        // kept one side idle at a time under the chain locks).
        let mut copy = BinaryCopyInWriter::new(
            tx.copy_in(
                "COPY records(bucket,part,seq,id,ts,received,scope,class,pseudonym,key_id,plain,body,prev,mac)
                 FROM STDIN (FORMAT binary)",
            )
            .map_err(db)?,
            &COPY_TYPES,
        );
        let mut i = 0;
        let mut placements = placed.iter();
        while i < order.len() {
            let (t, s, start, _) = order[i];
            let j = order[i..]
                .iter()
                .position(|&(t2, s2, p2, _)| (t2, s2, p2) != (t, s, start))
                .map_or(order.len(), |k| i + k);
            let (tenant, stream) = (t.to_string(), s.to_string());
            let bookkeeping::Placed { part, bucket, created } =
                *placements.next().expect("one placement per partition");
            let chain = heads.get_mut(&(tenant.clone(), stream.clone())).expect("locked above");
            let mac = &macs[t];
            let (first, prev0) = (chain.seq + 1, chain.hash);
            let mut deltas: GroupDeltas = Vec::new();
            for &(_, _, _, k) in &order[i..j] {
                let r = batch[k];
                if !seen.insert((part, r.id)) {
                    let o = owner[k];
                    report[o].duplicates += 1;
                    continue;
                }
                report[owner[k]].inserted += 1;
                let sealed = chain.seal(&tenant, &stream, r, &digests[k], mac, &mut buf)?;
                chain.advance(&sealed);
                let row = Row {
                    bucket,
                    part,
                    seq: sealed.seq as i64,
                    r,
                    prev: sealed.prev,
                    mac: sealed.mac,
                };
                if let Err(e) = copy_row(&mut copy, &row) {
                    return stored_or(e, probe);
                }
                if let Some(ps) = r.pseudonym {
                    added
                        .entry(part)
                        .or_insert_with(|| (bucket, created, Vec::new()))
                        .2
                        .push(ps);
                }
                let class = r.group.classification.code() as i16;
                match deltas
                    .iter_mut()
                    .find(|((sc, c), _)| *c == class && *sc == r.group.scope)
                {
                    Some((_, d)) => {
                        d.0 += 1;
                        d.1 = d.1.min(r.ts_us);
                        d.2 = d.2.max(r.ts_us);
                    }
                    None => deltas.push(((r.group.scope.clone(), class), (1, r.ts_us, r.ts_us))),
                }
            }
            let segment = (chain.seq >= first).then_some((first, chain.seq, prev0, chain.hash));
            settled.push(Settled {
                part,
                tenant,
                stream,
                created,
                segment,
                deltas,
            });
            i = j;
        }
        if let Err(e) = copy.finish() {
            return stored_or(e, probe);
        }
        super::filters::extend(&mut tx, &added)?;
        bookkeeping::save_chains(&mut tx, &heads)?;
        let runs: Vec<bookkeeping::NewSegment<'_>> = settled
            .iter()
            .filter_map(|st| {
                let (first, last, prev, chain) = st.segment?;
                Some(bookkeeping::NewSegment {
                    tenant: &st.tenant,
                    stream: &st.stream,
                    part: st.part,
                    first,
                    last,
                    prev,
                    chain,
                })
            })
            .collect();
        bookkeeping::save_segments(&mut tx, &runs)?;
        // Every record a duplicate: a partition made for them is not kept.
        let empty: Vec<i64> = settled
            .iter()
            .filter(|st| st.created && st.segment.is_none())
            .map(|st| st.part)
            .collect();
        if !empty.is_empty() {
            tx.execute("DELETE FROM partitions WHERE id = ANY($1)", &[&empty])
                .map_err(db)?;
        }
        let mut counts: std::collections::BTreeMap<(i64, String, i16), (i64, i64, i64)> = Default::default();
        for st in &settled {
            for ((scope, class), (n, min, max)) in &st.deltas {
                let d = counts
                    .entry((st.part, scope.clone(), *class))
                    .or_insert((0, *min, *max));
                *d = (d.0 + n, d.1.min(*min), d.2.max(*max));
            }
        }
        // Every group's counts in one statement: one per group was most of
        // an append's round trips (a batch over a year of days touches
        // hundreds of partitions).
        if !counts.is_empty() {
            let parts: Vec<i64> = counts.keys().map(|k| k.0).collect();
            let scopes: Vec<&str> = counts.keys().map(|k| k.1.as_str()).collect();
            let classes: Vec<i16> = counts.keys().map(|k| k.2).collect();
            let ns: Vec<i64> = counts.values().map(|v| v.0).collect();
            let mins: Vec<i64> = counts.values().map(|v| v.1).collect();
            let maxs: Vec<i64> = counts.values().map(|v| v.2).collect();
            tx.execute(
                "INSERT INTO partition_groups(partition_id,scope,class,records,min_ts,max_ts)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::smallint[], $4::bigint[], $5::bigint[], $6::bigint[])
                 ON CONFLICT (partition_id,scope,class) DO UPDATE SET records=partition_groups.records+EXCLUDED.records,
                   min_ts=least(coalesce(partition_groups.min_ts,EXCLUDED.min_ts),EXCLUDED.min_ts),
                   max_ts=greatest(coalesce(partition_groups.max_ts,EXCLUDED.max_ts),EXCLUDED.max_ts)",
                &[&parts, &scopes, &classes, &ns, &mins, &maxs],
            )
            .map_err(db)?;
            // The chains' list of groups (what `groups` reads): a group
            // already listed writes nothing.
            let mut listed: Vec<(&str, &str, &str, i16)> = Vec::new();
            for st in &settled {
                for ((scope, class), _) in &st.deltas {
                    listed.push((&st.tenant, &st.stream, scope, *class));
                }
            }
            listed.sort_unstable();
            listed.dedup();
            let ts: Vec<&str> = listed.iter().map(|l| l.0).collect();
            let ss: Vec<&str> = listed.iter().map(|l| l.1).collect();
            let scs: Vec<&str> = listed.iter().map(|l| l.2).collect();
            let cs: Vec<i16> = listed.iter().map(|l| l.3).collect();
            tx.execute(
                "INSERT INTO chain_groups(tenant,stream,scope,class)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[]) ON CONFLICT DO NOTHING",
                &[&ts, &ss, &scs, &cs],
            )
            .map_err(db)?;
        }
        for d in &drops {
            tx.execute(
                "INSERT INTO capture_drops(tenant,stream,scope,class,count) VALUES($1,$2,$3,$4,$5)
                 ON CONFLICT (tenant,stream,scope,class) DO UPDATE SET count=capture_drops.count+$5",
                &[
                    &d.key.tenant.as_str(),
                    &d.key.stream.to_string(),
                    &d.key.scope,
                    &(d.key.classification.code() as i16),
                    &(d.count as i64),
                ],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(Attempt::Done(report))
    }

    /// The live bucket named `name`, made (table and all, attached to the
    /// record table) in a transaction of its own when there is none.
    pub(super) fn ensure_bucket(&self, c: &mut postgres::Client, name: &str) -> Result<i64> {
        loop {
            if let Some(r) = c
                .query_opt("SELECT id FROM buckets WHERE name=$1 AND state=0", &[&name])
                .map_err(db)?
            {
                return Ok(r.get(0));
            }
            let mut tx = c.transaction().map_err(db)?;
            let made = tx
                .query_opt(
                    "INSERT INTO buckets(name) VALUES($1) ON CONFLICT (name) WHERE state=0 DO NOTHING RETURNING id",
                    &[&name],
                )
                .map_err(db)?;
            let Some(r) = made else {
                // Another node made it first.
                continue;
            };
            let id: i64 = r.get(0);
            let table = bucket_table(id);
            // CREATE … LIKE then ATTACH: attaching needs only a SHARE UPDATE
            // EXCLUSIVE lock on the parent, so appends and reads go on.
            tx.batch_execute(&format!(
                "CREATE TABLE {table} (LIKE records INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
                 ALTER TABLE records ATTACH PARTITION {table} FOR VALUES IN ({id});"
            ))
            .map_err(db)?;
            tx.commit().map_err(db)?;
            return Ok(id);
        }
    }
}

/// The columns of a record row as `COPY` sends them.
const COPY_TYPES: [Type; 14] = [
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::BYTEA,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT2,
    Type::BYTEA,
    Type::INT8,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
];

/// A record row as sealed, on its way into the bucket's table.
struct Row<'a> {
    bucket: i64,
    part: i64,
    seq: i64,
    r: &'a NewRecord,
    prev: [u8; 32],
    mac: [u8; 32],
}

/// Sends one row to the `COPY` in [`COPY_TYPES`]' order.
fn copy_row(w: &mut BinaryCopyInWriter<'_>, x: &Row<'_>) -> std::result::Result<(), postgres::Error> {
    let r = x.r;
    let class = r.group.classification.code() as i16;
    let pseudonym = r.pseudonym.as_ref().map(|p| &p[..]);
    let vals: [&(dyn ToSql + Sync); 14] = [
        &x.bucket,
        &x.part,
        &x.seq,
        &&r.id[..],
        &r.ts_us,
        &r.received_us,
        &r.group.scope,
        &class,
        &pseudonym,
        &r.key_id,
        &r.plain,
        &r.body,
        &&x.prev[..],
        &&x.mac[..],
    ];
    w.write(&vals)
}

/// What a failed `COPY` means: a record already stored (an optimistic
/// attempt's unique violation) or an error.
fn stored_or(e: postgres::Error, probed: bool) -> Result<Attempt> {
    if !probed && e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
        return Ok(Attempt::Stored);
    }
    Err(db(e))
}

/// A bucket's name: expiry class, stream and period start.
fn bucket_name(class: &str, stream: &str, start_us: i64) -> String {
    format!("{class}/{stream}/{start_us}")
}
