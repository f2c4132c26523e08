//! Retention removal: planning per partition (whole drops or row-level work) and carrying out exactly a plan.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;

use lethe_core::hold::HoldScope;
use lethe_core::policy::Action;
use lethe_core::TenantId;
use rusqlite::{params, Connection, TransactionBehavior};

use lethe_core::merkle::Hash;

use super::repair::forget_dropping;
use super::*;
use crate::crashpoint;
use crate::plan::{self, attribute_drop, chain_entry, effects_from, Item, Work};
use crate::row::{self};

/// Up to this many tenants (or chains) a plan reads each one's partitions
/// (or segments) by index; beyond, it reads every one once, in table order.
const FEW_TENANTS: usize = 4;

/// What `read` finds per partition of `chains`: chain by chain by index
/// when they are few, else once for the whole table in its order (each
/// chain's rows sit on nearly every page).
fn of_chains<T>(
    chains: &[(&str, &str)],
    read: impl Fn(Option<(&str, &str)>) -> Result<HashMap<i64, T>>,
) -> Result<HashMap<i64, T>> {
    if chains.len() > FEW_TENANTS {
        return read(None);
    }
    let mut out = HashMap::new();
    for &chain in chains {
        out.extend(read(Some(chain))?);
    }
    Ok(out)
}

impl SqliteStore {
    pub(super) fn plan_removal(&self, targets: &[RetentionTarget], holds: &[HoldScope]) -> Result<Removal> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        self.upkeep.settle();
        let work = self.work(inner, targets, holds)?;
        let mut effects = effects_from(targets);
        for (e, h) in effects.iter_mut().zip(&work.held) {
            e.held = *h;
        }
        let mut chains: BTreeMap<(String, String), ChainRemoval> = BTreeMap::new();
        // The segments of the partitions dropped.
        let dropping: std::collections::BTreeSet<(&TenantId, &lethe_core::StreamId)> =
            work.drops.iter().map(|(p, _, _)| (&p.tenant, &p.stream)).collect();
        let dropping: Vec<(String, String)> = dropping
            .into_iter()
            .map(|(t, s)| (t.to_string(), s.to_string()))
            .collect();
        let dropping: Vec<(&str, &str)> = dropping.iter().map(|(t, s)| (t.as_str(), s.as_str())).collect();
        let mut segs = of_chains(&dropping, |c| segments_by_partition(&inner.cat, c))?;
        // A file's bytes come back only when every partition in it goes:
        // then they are counted once, on the first of them.
        let mut dropped_in: HashMap<&str, usize> = HashMap::new();
        for (p, _, _) in &work.drops {
            *dropped_in.entry(p.path.as_str()).or_default() += 1;
        }
        let mut freed: HashMap<&str, u64> = HashMap::new();
        for (path, n) in dropped_in {
            if Self::sharers(&inner.cat, path)? == n {
                freed.insert(path, self.path_bytes(path));
            }
        }
        for (p, items, groups) in &work.drops {
            let bytes = freed.remove(p.path.as_str()).unwrap_or(0);
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
            let c = chain_entry(&mut chains, p.tenant.as_str(), &p.stream.to_string());
            for i in items {
                effects[i.target].records += i.records;
                c.rows.push(RowRemoval {
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
        let _g = self.write_lock()?;
        let mut inner = self.lock();
        let inner = &mut *inner;
        self.repair(inner)?;
        // The intent is in the ledger; nothing is removed yet.
        crashpoint::hit("removal.before_apply");
        let mut applied = Applied::default();

        // Resolve the plan against the store as it is now: what is already
        // gone is skipped; a partition written to since the plan loses only
        // the records the plan listed, row by row.
        let mut drops: Vec<(Part, u64)> = Vec::new();
        let mut edges: BTreeMap<(String, String), Vec<(u64, u64)>> = BTreeMap::new();
        // Per partition: (anonymize?, sequence ranges) jobs.
        type RowJobs = Vec<(bool, Vec<[u64; 2]>)>;
        let mut rows: Vec<(Part, RowJobs)> = Vec::new();
        // Where each partition's jobs are in `rows`: a search per row
        // removal was quadratic when many partitions need row-level work.
        let mut row_at: HashMap<i64, usize> = HashMap::new();
        // The segments and live counts of the chains that drop partitions.
        let dropping: Vec<(&str, &str)> = chains
            .iter()
            .filter(|ch| !ch.dropped.is_empty())
            .map(|ch| (ch.tenant.as_str(), ch.stream.as_str()))
            .collect();
        let mut stored = of_chains(&dropping, |c| segments_by_partition(&inner.cat, c))?;
        let live_of = of_chains(&dropping, |c| Self::live_records(&inner.cat, c))?;
        // Many chains: every live partition is read in one pass, in table
        // order (see `work`); few: chain by chain.
        let many = chains.len() > FEW_TENANTS;
        let mut parts_of: HashMap<(String, String), HashMap<i64, Part>> = HashMap::new();
        if many {
            for p in self.parts_where(&inner.cat, "state = 0", &[])? {
                parts_of
                    .entry((p.tenant.to_string(), p.stream.to_string()))
                    .or_default()
                    .insert(p.start, p);
            }
        }
        for ch in chains {
            // The chain's live partitions, segments and record counts, once.
            let mut parts: HashMap<i64, Part> = if many {
                parts_of
                    .remove(&(ch.tenant.clone(), ch.stream.clone()))
                    .unwrap_or_default()
            } else {
                self.parts_where(
                    &inner.cat,
                    "tenant = ?1 AND stream = ?2 AND state = 0",
                    &[&ch.tenant.as_str(), &ch.stream.as_str()],
                )?
                .into_iter()
                .map(|p| (p.start, p))
                .collect()
            };
            for dp in &ch.dropped {
                let Some(p) = parts.remove(&dp.start_us) else {
                    continue;
                };
                let now: Vec<(u64, u64)> = stored
                    .remove(&p.id)
                    .unwrap_or_default()
                    .iter()
                    .map(|s| (s.first, s.last))
                    .collect();
                let planned: Vec<(u64, u64)> = dp.segments.iter().map(|s| (s.first, s.last)).collect();
                if now == planned {
                    let live = live_of.get(&p.id).copied().unwrap_or(0);
                    edges
                        .entry((ch.tenant.clone(), ch.stream.clone()))
                        .or_default()
                        .extend(planned);
                    drops.push((p, live));
                } else {
                    let seqs = planned.iter().map(|&(a, b)| [a, b]).collect();
                    row_at.insert(p.id, rows.len());
                    rows.push((p, vec![(false, seqs)]));
                }
            }
            for rr in &ch.rows {
                let Some(p) = parts.get(&rr.partition_start_us).cloned() else {
                    continue;
                };
                let anonymize = rr.action == Action::Anonymize;
                match row_at.get(&p.id) {
                    Some(&i) => rows[i].1.push((anonymize, rr.seqs.clone())),
                    None => {
                        row_at.insert(p.id, rows.len());
                        rows.push((p, vec![(anonymize, rr.seqs.clone())]));
                    }
                }
            }
        }
        let total_units = (drops.len() + rows.len()) as u64;
        let mut done = 0;
        progress(0, total_units);

        if !drops.is_empty() {
            let mut nodes = Vec::new();
            // One reader for every chain: they share the files at the edges
            // (with eight connections it reopened the same files 4,400
            // times on 100 tenants over a year).
            let mut reader = Reader::wide(self, inner.lookup_limit);
            for ((tenant, stream), segs) in &edges {
                for n in self.edge_nodes(inner, &mut reader, tenant, stream, segs)? {
                    nodes.push((tenant.clone(), stream.clone(), n));
                }
            }
            // Closed before any file is unlinked: an open descriptor would
            // keep its disk space.
            drop(reader);
            let tx = inner
                .cat
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            for (tenant, stream, (level, idx, hash)) in &nodes {
                tx.execute(
                    "INSERT INTO merkle_nodes(tenant,stream,level,idx,hash) VALUES(?1,?2,?3,?4,?5)
                     ON CONFLICT DO UPDATE SET hash=?5",
                    params![tenant, stream, level, *idx as i64, &hash[..]],
                )
                .map_err(db)?;
            }
            {
                // One statement for tens of thousands of partitions (many tenants).
                let mut mark = tx
                    .prepare_cached("UPDATE partitions SET state=?2 WHERE id=?1")
                    .map_err(db)?;
                for (p, _) in &drops {
                    mark.execute(params![p.id, DROPPING]).map_err(db)?;
                }
            }
            tx.commit().map_err(db)?;
            crashpoint::hit("sweep.after_mark_dropping");
            let mut emptied: Vec<&Part> = Vec::new();
            let mut files = FileFates::new();
            for (n, (p, live)) in drops.iter().enumerate() {
                let r = self.release(inner, p, &mut files)?;
                applied.bytes_freed += r.bytes;
                if r.rows {
                    emptied.push(p);
                }
                applied.deleted += live;
                applied.partitions_dropped += 1;
                done += 1;
                progress(done, total_units);
                if n == drops.len() / 2 {
                    crashpoint::hit("sweep.mid_drop");
                }
            }
            // One sync for every shared file partitions were taken out of.
            self.sync_partitions(emptied.into_iter(), false)?;
            let tx = inner
                .cat
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            forget_dropping(&tx)?;
            tx.commit().map_err(db)?;
        }
        if !rows.is_empty() {
            let tx = inner
                .cat
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            for (p, _) in &rows {
                tx.execute("UPDATE partitions SET state=?2 WHERE id=?1", params![p.id, DIRTY])
                    .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            crashpoint::hit("sweep.after_mark_dirty");
            // Per partition, per group: the new counts and time bounds.
            let mut settled: Vec<(Part, Vec<GroupChange>)> = Vec::new();
            for (p, jobs) in &rows {
                let bounds = Self::group_bounds(&inner.cat, p.id)?;
                let c = self.conn(inner, p, false)?;
                // Durability comes from one sync of every touched file
                // below (partition commits do not sync): a process crash
                // loses nothing either way (the partition stays dirty until
                // the catalog commit after the sync).
                let tx = c.unchecked_transaction().map_err(db)?;
                let mut changed = Vec::new();
                for (anonymize, seqs) in jobs {
                    let n = partition::redact(&tx, p.id, seqs, *anonymize, &mut changed)?;
                    if *anonymize {
                        applied.anonymized += n;
                    } else {
                        applied.deleted += n;
                    }
                }
                tx.commit().map_err(db)?;
                crashpoint::hit("sweep.after_partition_rows");
                let changes = group_changes(c, p.id, &changed, &bounds)?;
                settled.push((p.clone(), changes));
                done += 1;
                progress(done, total_units);
            }
            self.sync_partitions(settled.iter().map(|(p, _)| p), false)?;
            let tx = inner
                .cat
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            for (p, changes) in &settled {
                for g in changes {
                    tx.execute(
                        "UPDATE partition_groups SET records=records-?4, anonymized=anonymized+?5, deleted=deleted+?6,
                           min_ts=?7, max_ts=?8 WHERE partition_id=?1 AND scope=?2 AND class=?3",
                        params![
                            p.id,
                            g.scope,
                            g.class,
                            g.records_gone,
                            g.anonymized,
                            g.deleted,
                            g.min_ts,
                            g.max_ts
                        ],
                    )
                    .map_err(db)?;
                }
                tx.execute("UPDATE partitions SET state=?2 WHERE id=?1", params![p.id, LIVE])
                    .map_err(db)?;
            }
            tx.commit().map_err(db)?;
        }
        schema::reclaim(&inner.cat)?;
        Ok(applied)
    }

    /// Works out, per partition, what the targets do to it.
    fn work(&self, inner: &mut Inner, targets: &[RetentionTarget], holds: &[HoldScope]) -> Result<Work<Part>> {
        // Looked up by borrowed parts: a key built per partition group was
        // three string copies, 272,000 times on 100 tenants over a year.
        let mut by_key: HashMap<&TenantId, HashMap<(&StreamId, &str, Classification), usize>> = HashMap::new();
        for (i, t) in targets.iter().enumerate() {
            by_key
                .entry(&t.key.tenant)
                .or_default()
                .insert((&t.key.stream, t.key.scope.as_str(), t.key.classification), i);
        }
        let mut tenants: Vec<&TenantId> = targets.iter().map(|t| &t.key.tenant).collect();
        tenants.sort();
        tenants.dedup();
        let mut work = Work::new(targets.len());
        // Many tenants: every live partition and its groups are read in one
        // pass each, in table order. Asked tenant by tenant, each pass read
        // nearly every page of the catalog again (a tenant's rows are spread
        // over all of them: partitions are created as records arrive).
        let many = tenants.len() > FEW_TENANTS;
        let mut parts_of: HashMap<String, Vec<Part>> = HashMap::new();
        let mut groups_of = HashMap::new();
        if many {
            for p in self.parts_where(&inner.cat, "state = 0", &[])? {
                parts_of.entry(p.tenant.to_string()).or_default().push(p);
            }
            for parts in parts_of.values_mut() {
                parts.sort_by(|a, b| (&a.stream, a.start).cmp(&(&b.stream, b.start)));
            }
            groups_of = Self::live_groups(&inner.cat, None)?;
        }
        for tenant in tenants {
            let keys = by_key.get(tenant);
            let holds: Vec<&HoldScope> = holds.iter().filter(|h| h.tenant == tenant.as_str()).collect();
            let parts = if many {
                parts_of.remove(tenant.as_str()).unwrap_or_default()
            } else {
                groups_of = Self::live_groups(&inner.cat, Some(tenant.as_str()))?;
                self.parts_where(
                    &inner.cat,
                    "tenant = ?1 AND state = 0 ORDER BY stream, start_us",
                    &[&tenant.as_str()],
                )?
            };
            let mut heads: HashMap<String, u64> = HashMap::new();
            for p in parts {
                let stream = p.stream.to_string();
                let head = match heads.get(&stream) {
                    Some(h) => *h,
                    None => {
                        let h = Self::head(&inner.cat, p.tenant.as_str(), &stream)?;
                        heads.insert(stream, h);
                        h
                    }
                };
                let groups = groups_of.remove(&p.id).unwrap_or_default();
                // Holds that may cover a record here: the partition then
                // goes row by row, held records left out.
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
                for g in &groups {
                    let Some(&ti) = keys.and_then(|k| k.get(&(&p.stream, g.scope.as_str(), g.class))) else {
                        whole = false;
                        continue;
                    };
                    let t = &targets[ti];
                    let anonymize = t.action == Action::Anonymize;
                    let mut seqs = Vec::new();
                    let mut held = 0;
                    let n = if p.end <= t.cutoff_us && !anonymize && held_by.is_empty() {
                        g.records
                    } else {
                        whole = false;
                        if p.start < t.cutoff_us && (g.records > 0) {
                            let c = self.conn(inner, &p, false)?;
                            let e = partition::Expired {
                                tenant: tenant.as_str(),
                                scope: &g.scope,
                                class: g.class,
                                cutoff: t.cutoff_us,
                                anonymize,
                                max_seq: head,
                            };
                            (seqs, held) = partition::expired_seqs(c, p.id, &e, &held_by)?;
                            seqs.iter().map(|r| r[1] + 1 - r[0]).sum()
                        } else {
                            0
                        }
                    };
                    items.push(Item {
                        target: ti,
                        scope: g.scope.clone(),
                        class: g.class,
                        records: n,
                        held,
                        share: g.records + g.deleted,
                        seqs,
                    });
                }
                if !whole {
                    // Groups wholly expired in a partition that stays: their
                    // records go row by row, so name them.
                    for i in items.iter_mut().filter(|i| i.records > 0 && i.seqs.is_empty()) {
                        let c = self.conn(inner, &p, false)?;
                        let anonymize = targets[i.target].action == Action::Anonymize;
                        let e = partition::Expired {
                            tenant: tenant.as_str(),
                            scope: &i.scope,
                            class: i.class,
                            cutoff: targets[i.target].cutoff_us,
                            anonymize,
                            max_seq: head,
                        };
                        (i.seqs, i.held) = partition::expired_seqs(c, p.id, &e, &held_by)?;
                        i.records = i.seqs.iter().map(|r| r[1] + 1 - r[0]).sum();
                    }
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
                } else {
                    for i in &items {
                        work.held[i.target] += i.held;
                    }
                    if items.iter().any(|i| i.records > 0) {
                        items.retain(|i| i.records > 0);
                        work.rows.push((p, items));
                    }
                }
            }
        }
        Ok(work)
    }

    /// The Merkle heads to keep at the edges of the ranges of a chain
    /// about to be dropped (see [`crate::plan::edge_nodes`]), read through
    /// a reader of their own.
    pub(super) fn edge_nodes(
        &self,
        inner: &mut Inner,
        reader: &mut Reader<'_>,
        tenant: &str,
        stream: &str,
        segs: &[(u64, u64)],
    ) -> Result<Vec<(u32, u64, Hash)>> {
        plan::edge_nodes(segs, &mut |lo, hi| {
            self.leaves_in(inner, reader, tenant, stream, lo, hi)
        })
    }

    /// Makes the partitions' committed writes durable: their files synced
    /// one by one when few, else — or when `created` says some of them may
    /// be new files, whose directory entries must be durable too — one
    /// `syncfs` of the store's file system.
    pub(super) fn sync_partitions<'a>(&self, parts: impl Iterator<Item = &'a Part>, created: bool) -> Result<()> {
        // Partitions share files: each file once.
        let mut files: Vec<&str> = parts.map(|p| p.path.as_str()).collect();
        files.sort_unstable();
        files.dedup();
        if files.is_empty() {
            return Ok(());
        }
        if created || files.len() > SYNC_FILES_AT_MOST {
            let dir = File::open(&self.dir).map_err(|e| StoreError::io("opening the data directory", e))?;
            // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
            let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
            if rc != 0 {
                return Err(StoreError::io(
                    "syncing the data directory",
                    std::io::Error::last_os_error(),
                ));
            }
            return Ok(());
        }
        for path in files {
            for suffix in ["-wal", ""] {
                let f = PathBuf::from(format!("{}{suffix}", self.part_path(path).display()));
                match File::open(&f) {
                    Ok(file) => file
                        .sync_all()
                        .map_err(|e| StoreError::io(format!("syncing {}", f.display()), e))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io(format!("opening {}", f.display()), e)),
                }
            }
        }
        Ok(())
    }

    /// The stored time bounds of a partition's groups.
    pub(super) fn group_bounds(cat: &Connection, part: i64) -> Result<GroupBounds> {
        let mut st = cat
            .prepare_cached("SELECT scope, class, min_ts, max_ts FROM partition_groups WHERE partition_id=?1")
            .map_err(db)?;
        let rows = st
            .query_map([part], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?))))
            .map_err(db)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db)
    }
}
/// Per (scope, class) of a partition: oldest and newest live event time.
type GroupBounds = HashMap<(String, u8), (Option<i64>, Option<i64>)>;

/// How row-level removal changed one group of a partition.
struct GroupChange {
    scope: String,
    class: u8,
    /// Records no longer live (deleted).
    records_gone: i64,
    /// Change of the anonymized count.
    anonymized: i64,
    /// Change of the tombstone count.
    deleted: i64,
    min_ts: Option<i64>,
    max_ts: Option<i64>,
}

/// Sums the rows [`partition::redact`] changed per group; the time bounds
/// are looked up again only where a removed record sat on one.
fn group_changes(
    c: &Connection,
    part: i64,
    changed: &[partition::Changed],
    bounds: &GroupBounds,
) -> Result<Vec<GroupChange>> {
    let mut by: BTreeMap<(String, u8), GroupChange> = BTreeMap::new();
    // Groups where a removed record sat on a time bound.
    let mut edge: std::collections::BTreeSet<(String, u8)> = std::collections::BTreeSet::new();
    for ch in changed {
        let k = (ch.scope.clone(), ch.class);
        let (lo, hi) = bounds.get(&k).copied().unwrap_or((None, None));
        let g = by.entry(k.clone()).or_insert_with(|| GroupChange {
            scope: ch.scope.clone(),
            class: ch.class,
            records_gone: 0,
            anonymized: 0,
            deleted: 0,
            min_ts: lo,
            max_ts: hi,
        });
        if ch.deleted {
            g.records_gone += 1;
            g.deleted += 1;
            if ch.was == row::ANONYMIZED {
                g.anonymized -= 1;
            }
            if lo.is_none_or(|l| ch.ts <= l) || hi.is_none_or(|h| ch.ts >= h) {
                edge.insert(k);
            }
        } else {
            g.anonymized += 1;
        }
    }
    for (k, g) in by.iter_mut() {
        if edge.contains(k) {
            (g.min_ts, g.max_ts) = partition::live_bounds(c, part, &g.scope, g.class)?;
        }
    }
    Ok(by.into_values().collect())
}
