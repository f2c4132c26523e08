//! Appending a batch: intent (dirty marks, new keys), partition commits, and the catalog commit point.

use std::collections::{BTreeMap, HashMap};

use lethe_core::{StreamId, TenantId};
use rusqlite::{params, TransactionBehavior};

use lethe_core::integrity::{Digests, RecordMac};

use super::*;
use crate::crashpoint;
use crate::row::{self};

impl SqliteStore {
    /// Appends several batches with one intent, one sync and one catalog
    /// commit (see [`Store::append_group`]): all or nothing.
    pub(super) fn append_group(&self, group: &[&Batch]) -> Result<Vec<AppendReport>> {
        // The group as one batch, with each record's owner kept so every
        // batch gets its own counts.
        let batch: Vec<&NewRecord> = group.iter().flat_map(|b| &b.records).collect();
        let owner: Vec<usize> = group
            .iter()
            .enumerate()
            .flat_map(|(i, b)| std::iter::repeat_n(i, b.records.len()))
            .collect();
        let mut digests: Vec<Digests> = Vec::with_capacity(batch.len());
        for b in group {
            if b.digests.len() == b.records.len() {
                debug_assert!(
                    b.records.iter().zip(&b.digests).all(|(r, d)| row::digests_of(r) == *d),
                    "caller-computed digests match the records"
                );
                digests.extend_from_slice(&b.digests);
            } else {
                digests.extend(b.records.iter().map(row::digests_of));
            }
        }
        // Each new key with the batch that carries it.
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
        if let Some(r) = batch.iter().find(|r| !macs.contains_key(&r.group.tenant)) {
            return Err(StoreError::Misuse(format!(
                "no record MAC key for tenant `{}` in the batch",
                r.group.tenant
            )));
        }
        let _g = self.write_lock()?;
        let mut inner = self.lock();
        let inner = &mut *inner;
        self.repair(inner)?;

        // Group records by partition, keeping input order within each.
        let mut order: Vec<(&TenantId, &StreamId, i64, usize)> = batch
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let start = r.ts_us.div_euclid(self.span_us) * self.span_us;
                (&r.group.tenant, &r.group.stream, start, i)
            })
            .collect();
        order.sort();

        // Intent: the batch's new data keys are stored and every partition it
        // touches is marked dirty, durably, before any partition is written.
        type Recs<'a> = Vec<(&'a NewRecord, &'a Digests, usize)>;
        let mut parts: Vec<(Part, Recs<'_>)> = Vec::new();
        let mut heads: BTreeMap<(String, String), partition::ChainState> = BTreeMap::new();
        // Keys known to exist and be live: stored by this append, or
        // carried and found stored and live.
        let mut known_live: std::collections::HashSet<i64> = std::collections::HashSet::new();
        let mut keys_stored = vec![0u64; group.len()];
        {
            let tx = inner
                .cat
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT INTO data_keys(id,tenant,ref,wrapped,created_us) VALUES(?1,?2,?3,?4,?5)
                         ON CONFLICT DO NOTHING",
                    )
                    .map_err(db)?;
                let mut existing = tx
                    .prepare_cached("SELECT tenant, ref, wrapped IS NOT NULL FROM data_keys WHERE id=?1")
                    .map_err(db)?;
                let now = batch.first().map(|r| r.received_us).unwrap_or(0);
                let mut created: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
                for &(k, owner) in &new_keys {
                    if ins
                        .execute(params![k.id, k.tenant.as_str(), k.key_ref, k.wrapped, now])
                        .map_err(db)?
                        == 1
                    {
                        known_live.insert(k.id);
                        keys_stored[owner] += 1;
                        created.entry(k.tenant.as_str()).or_default().push(k.id);
                        continue;
                    }
                    // Carried by two batches of this group or stored by an
                    // earlier batch: the same key, nothing to do. Anything
                    // else under that id or reference is another writer's
                    // key. Dropping the transaction rolls it back: nothing
                    // of this group is stored.
                    let found: Option<(String, Vec<u8>, bool)> = existing
                        .query_row([k.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()
                        .map_err(db)?;
                    match found {
                        // Destroyed since the batch was prepared (its
                        // reference is gone with it).
                        Some((t, _, false)) if t == k.tenant.as_str() => return Err(StoreError::KeyDestroyed),
                        Some((t, r, true)) if t == k.tenant.as_str() && r == k.key_ref => {
                            known_live.insert(k.id);
                        }
                        _ => return Err(StoreError::KeyConflict),
                    }
                }
                // The keys stored are recorded in the ledger in the same
                // commit: a key never exists without the entry that lets
                // `verify` notice it disappearing.
                if !created.is_empty() {
                    let kl = key_ledger
                        .ok_or_else(|| StoreError::Misuse("a batch with new keys carries no key ledger".into()))?;
                    for (tenant, ids) in &created {
                        let d = lethe_core::ledger::Draft::keys_created(kl.ts_us, &kl.actor, tenant, ids);
                        catalog::append_ledger_in(&tx, &mut |seq, prev| d.seal(&kl.key, seq, prev))?;
                    }
                }
            }
            // Every existing key the records are encrypted under must still
            // be live: an erasure may have destroyed one since the batch was
            // prepared (its writer cached the key), and a record stored
            // under a destroyed key would be erased the moment it is
            // acknowledged. And every key must exist: the ingest pipeline
            // hands a key made for a batch still in flight to the next
            // batch, and if that batch never commits, a record of the next
            // one would be acknowledged under a key that is nowhere (seen at
            // 100 tenants). Checked under the write lock, which erasure takes
            // too. Keys this process already saw live at the current key
            // epoch are not read again (every destruction moves the epoch):
            // one indexed lookup per distinct key cost a third of ingest
            // with 100 tenants' subjects.
            inner.live_keys.at(catalog::key_epoch_in(&tx)?);
            {
                let mut used: Vec<i64> = batch
                    .iter()
                    .filter_map(|r| r.key_id)
                    .filter(|k| !known_live.contains(k) && !inner.live_keys.contains(*k))
                    .collect();
                used.sort_unstable();
                used.dedup();
                let mut live = tx
                    .prepare_cached("SELECT wrapped IS NOT NULL FROM data_keys WHERE id=?1")
                    .map_err(db)?;
                for k in &used {
                    match live.query_row([k], |r| r.get(0)).optional().map_err(db)? {
                        Some(true) => {}
                        Some(false) => return Err(StoreError::KeyDestroyed),
                        // Made for a batch that never committed: prepare again.
                        None => return Err(StoreError::KeyConflict),
                    }
                }
                // Live at this epoch whether or not this batch commits.
                inner.live_keys.extend(used);
            }
            for &(tenant_id, stream_id, start, i) in &order {
                let r = batch[i];
                if parts
                    .last()
                    .is_none_or(|(p, _)| p.tenant != *tenant_id || p.stream != *stream_id || p.start != start)
                {
                    let (tenant, stream) = (tenant_id.as_str(), stream_id.to_string());
                    // A new partition goes into its expiry class's file
                    // for this stream and period; one the catalog already
                    // has stays in the file it was made in.
                    let class = placement
                        .iter()
                        .find(|(t, s, _)| t == tenant_id && s == stream_id)
                        .map_or("default", |(_, _, c)| c.as_str());
                    let path = partition_path(class, stream_id, start, self.span_us);
                    // A partition the catalog holds committed records of
                    // must still have its file: recreating it empty would
                    // hide the loss and count its records twice.
                    let known: Option<(i64, String)> = tx
                        .prepare_cached("SELECT id, path FROM partitions WHERE tenant=?1 AND stream=?2 AND start_us=?3")
                        .map_err(db)?
                        .query_row(params![tenant, stream, start], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                        .map_err(db)?;
                    if let Some((id, known_path)) = &known {
                        let committed: bool = tx
                            .prepare_cached("SELECT EXISTS(SELECT 1 FROM segments WHERE partition_id=?1)")
                            .map_err(db)?
                            .query_row([id], |r| r.get(0))
                            .map_err(db)?;
                        if committed && !self.part_path(known_path).exists() {
                            return Err(StoreError::Lost(format!(
                                "partition file {known_path} ({tenant}/{stream} from {}) is missing: its committed \
                                 records are gone; restore the file from a backup (`lethe verify` lists the records)",
                                chrono_like(start).0
                            )));
                        }
                    }
                    tx.prepare_cached(
                        "INSERT INTO partitions(tenant,stream,start_us,end_us,path,state) VALUES(?1,?2,?3,?4,?5,?6)
                         ON CONFLICT(tenant,stream,start_us) DO UPDATE SET state=?6",
                    )
                    .map_err(db)?
                    .execute(params![tenant, stream, start, start + self.span_us, path, DIRTY])
                    .map_err(db)?;
                    let (id, path): (i64, String) = tx
                        .prepare_cached("SELECT id,path FROM partitions WHERE tenant=?1 AND stream=?2 AND start_us=?3")
                        .map_err(db)?
                        .query_row(params![tenant, stream, start], |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(db)?;
                    let p = Part {
                        id,
                        tenant: r.group.tenant.clone(),
                        stream: r.group.stream.clone(),
                        start,
                        end: start + self.span_us,
                        path,
                        state: DIRTY,
                    };
                    parts.push((p, Vec::new()));
                    let ck = (tenant.to_string(), stream.clone());
                    if let std::collections::btree_map::Entry::Vacant(e) = heads.entry(ck) {
                        e.insert(Self::chain_state(&tx, tenant, &stream)?);
                    }
                }
                parts.last_mut().expect("pushed above").1.push((r, &digests[i], i));
            }
            tx.commit().map_err(db)?;
            inner.live_keys.extend(known_live);
        }
        crashpoint::hit("append.after_intent");

        let mut report: Vec<AppendReport> = keys_stored
            .into_iter()
            .map(|keys_stored| AppendReport {
                keys_stored,
                ..Default::default()
            })
            .collect();
        for &o in &owner {
            report[o].inserted += 1;
        }
        // Every partition written: its per-group deltas and
        // the segment of the chain it received (if any record was new).
        struct Settled {
            part: Part,
            deltas: Vec<((String, u8), partition::GroupDelta)>,
            segment: Option<Segment>,
        }
        let mut settled: Vec<Settled> = Vec::new();
        let mut subjects: Vec<Vec<[u8; 32]>> = Vec::new();
        // Whether the batch made a partition file (its directory entry must be synced too).
        let mut created = false;
        // One transaction per file, however many partitions of the batch it
        // holds: partitions of a file are written one after the other (by
        // path, then partition — a chain's partitions stay in day order).
        parts.sort_by(|(a, _), (b, _)| {
            (&a.path, &a.tenant, &a.stream, a.start).cmp(&(&b.path, &b.tenant, &b.stream, b.start))
        });
        let mut open_file: Option<String> = None;
        let commit = |inner: &mut Inner, path: &str| -> Result<()> {
            let c = &inner.parts.get(path).expect("the file being written is open").0;
            c.execute_batch("COMMIT").map_err(db)?;
            crashpoint::hit("append.after_partition");
            Ok(())
        };
        let written = (|| -> Result<()> {
            for (p, recs) in parts {
                let mut ps: Vec<[u8; 32]> = recs.iter().filter_map(|(r, _, _)| r.pseudonym).collect();
                ps.sort_unstable();
                ps.dedup();
                subjects.push(ps);
                let (tenant, stream) = (p.tenant.to_string(), p.stream.to_string());
                let chain = heads.get_mut(&(tenant.clone(), stream.clone())).expect("head loaded");
                let mac = &macs[&p.tenant];
                let (first, prev) = (chain.seq + 1, chain.hash);
                if open_file.as_deref() != Some(p.path.as_str()) {
                    if let Some(prev) = open_file.take() {
                        commit(inner, &prev)?;
                    }
                    created |= !inner.parts.contains_key(&p.path) && !self.part_path(&p.path).exists();
                    self.maybe_checkpoint(&p);
                    self.conn(inner, &p, true)?.execute_batch("BEGIN").map_err(db)?;
                    open_file = Some(p.path.clone());
                }
                let c = &inner.parts.get(&p.path).expect("opened above").0;
                let mut deltas = Vec::new();
                let n = partition::insert(c, p.id, &tenant, &stream, &recs, chain, mac, &mut deltas, &mut |at| {
                    let o = owner[recs[at].2];
                    report[o].inserted -= 1;
                    report[o].duplicates += 1;
                })?;
                let segment = (n > 0).then_some(Segment {
                    first,
                    last: chain.seq,
                    prev,
                    chain: chain.hash,
                });
                settled.push(Settled {
                    part: p,
                    deltas,
                    segment,
                });
            }
            if let Some(last) = open_file.take() {
                commit(inner, &last)?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            // The file left mid-transaction rolls back; its partitions stay
            // dirty, and repair settles them before the next write.
            if let Some(path) = &open_file {
                if let Some((c, _)) = inner.parts.get(path) {
                    let _ = c.execute_batch("ROLLBACK");
                }
            }
            return Err(e);
        }

        // One sync makes every partition the batch wrote durable (their
        // commits above did not sync), before the catalog commit relies on them.
        self.sync_partitions(settled.iter().map(|st| &st.part), created)?;
        crashpoint::hit("append.after_sync");

        // Subject filters of the partitions that received subjects, stored
        // with the commit (a filter may only ever claim too much).
        let mut filters: Vec<(i64, i64, SubjectFilter)> = Vec::new();
        for (st, recs) in settled.iter().zip(&subjects) {
            if !recs.is_empty() {
                if let Some(f) = self.extended_filter(inner, &st.part, recs)? {
                    filters.push((st.part.id, filter::version(f.as_bytes()), f));
                }
            }
        }

        // Commit point: chain heads, segments, Merkle nodes, counts, and the
        // dirty marks cleared.
        let tx = inner
            .cat
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        for ((tenant, stream), h) in &heads {
            let frontier: Vec<u8> = h.frontier.nodes().concat();
            tx.prepare_cached(
                "INSERT INTO chains(tenant,stream,head_seq,head_hash,frontier) VALUES(?1,?2,?3,?4,?5)
                 ON CONFLICT(tenant,stream) DO UPDATE SET head_seq=?3, head_hash=?4, frontier=?5",
            )
            .map_err(db)?
            .execute(params![tenant, stream, h.seq as i64, &h.hash[..], frontier])
            .map_err(db)?;
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO merkle_nodes(tenant,stream,level,idx,hash) VALUES(?1,?2,?3,?4,?5)
                     ON CONFLICT DO UPDATE SET hash=?5",
                )
                .map_err(db)?;
            for (level, idx, hash) in &h.nodes {
                ins.execute(params![tenant, stream, level, *idx as i64, &hash[..]])
                    .map_err(db)?;
            }
        }
        for st in &settled {
            let p = &st.part;
            if let Some(seg) = &st.segment {
                // A batch continuing the run the partition ended with extends it.
                let extended = tx
                    .execute(
                        "UPDATE segments SET last_seq=?4, chain=?5
                         WHERE tenant=?1 AND stream=?2 AND partition_id=?3 AND last_seq=?6",
                        params![
                            p.tenant.as_str(),
                            p.stream.to_string(),
                            p.id,
                            seg.last as i64,
                            &seg.chain[..],
                            seg.first as i64 - 1
                        ],
                    )
                    .map_err(db)?;
                if extended == 0 {
                    tx.prepare_cached(
                        "INSERT INTO segments(tenant,stream,first_seq,last_seq,partition_id,prev,chain)
                         VALUES(?1,?2,?3,?4,?5,?6,?7)",
                    )
                    .map_err(db)?
                    .execute(params![
                        p.tenant.as_str(),
                        p.stream.to_string(),
                        seg.first as i64,
                        seg.last as i64,
                        p.id,
                        &seg.prev[..],
                        &seg.chain[..]
                    ])
                    .map_err(db)?;
                }
            }
            for ((scope, class), d) in &st.deltas {
                tx.prepare_cached(
                    "INSERT INTO partition_groups(partition_id,scope,class,records,anonymized,min_ts,max_ts)
                     VALUES(?1,?2,?3,?4,0,?5,?6)
                     ON CONFLICT(partition_id,scope,class) DO UPDATE SET records=records+?4,
                       min_ts=min(coalesce(min_ts,?5),?5), max_ts=max(coalesce(max_ts,?6),?6)",
                )
                .map_err(db)?
                .execute(params![p.id, scope, class, d.records as i64, d.min_ts, d.max_ts])
                .map_err(db)?;
            }
            tx.prepare_cached("UPDATE partitions SET state=?2 WHERE id=?1")
                .map_err(db)?
                .execute(params![p.id, LIVE])
                .map_err(db)?;
        }
        for (part, version, f) in &filters {
            tx.prepare_cached(
                "INSERT INTO subject_filters(partition_id,version,bits) VALUES(?1,?2,?3)
                 ON CONFLICT(partition_id) DO UPDATE SET version=?2, bits=?3",
            )
            .map_err(db)?
            .execute(params![part, version, f.as_bytes()])
            .map_err(db)?;
        }
        for d in &drops {
            tx.prepare_cached(
                "INSERT INTO capture_drops(tenant,stream,scope,class,count) VALUES(?1,?2,?3,?4,?5)
                 ON CONFLICT(tenant,stream,scope,class) DO UPDATE SET count=count+?5",
            )
            .map_err(db)?
            .execute(params![
                d.key.tenant.as_str(),
                d.key.stream.to_string(),
                d.key.scope,
                d.key.classification.code(),
                d.count as i64
            ])
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        // Kept for the next batch (which checks the version before using
        // one: other processes write too), while the cache has room.
        for (part, version, f) in filters {
            if inner.filters.len() < CACHED_FILTERS || inner.filters.contains_key(&part) {
                inner.filters.insert(part, (version, f));
            } else {
                inner.filters.remove(&part);
            }
        }
        // A partition left empty (every record a duplicate of a new partition) is removed.
        for st in &settled {
            if st.deltas.is_empty() && partition::is_empty(self.conn(inner, &st.part, false)?, st.part.id)? {
                self.settle(inner, &st.part)?;
            }
        }
        Ok(report)
    }
}
