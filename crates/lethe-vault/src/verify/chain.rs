//! The chain walk of `verify`: every stored row rebuilt and checked, every gap explained or reported.

use std::collections::HashMap;

use lethe_core::integrity::{chain, genesis, RecordMac};
use lethe_core::merkle::{node_hash, perfect_cover, Frontier, Hash};
use lethe_core::policy::Action;
use lethe_core::TenantId;
use lethe_store::row::{ANONYMIZED, DELETED, LIVE};
use lethe_store::StoreError;

use super::catalog::KeyBook;
use crate::{Result, Vault};

use super::*;

impl Vault {
    /// Why a stored record contradicts a receipted removal, if it does: it
    /// is live (or only anonymized) although a receipted intent listed it
    /// as deleted (or anonymized) — a removal undone, e.g. by putting back
    /// an older copy of its partition.
    pub(super) fn resurrected(ev: &Evidence, ce: &ChainEvidence, seq: u64, state: i64) -> Option<String> {
        if state == DELETED {
            return None;
        }
        let end = ce.rows.partition_point(|r| r.first <= seq);
        ce.rows[..end]
            .iter()
            .rev()
            .filter(|r| r.last >= seq && ev.auths[r.auth].receipt.is_some())
            .find(|r| r.action == Action::Delete || state == LIVE)
            .map(|r| {
                let a = &ev.auths[r.auth];
                let did = if r.action == Action::Delete {
                    "deleted"
                } else {
                    "anonymized"
                };
                let is = if state == LIVE { "live" } else { "only anonymized" };
                format!(
                    "record is {is}, but {} intent {} (receipt {}) {did} it: a removal was undone (an older copy put back?)",
                    a.kind(),
                    a.intent,
                    a.receipt.unwrap_or_default()
                )
            })
    }

    /// Why a tombstoned or anonymized record is not explained, if it is not.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn unexplained_redaction(
        ev: &Evidence,
        ce: &ChainEvidence,
        tenant: &str,
        stream: &str,
        seq: u64,
        scope: &str,
        class: u8,
        ts_us: i64,
        action: Action,
    ) -> Option<String> {
        let end = ce.rows.partition_point(|r| r.first <= seq);
        let mut why = None;
        for r in ce.rows[..end].iter().rev().filter(|r| r.last >= seq) {
            // An anonymized record may have been deleted later; a deleted one
            // needs a delete.
            let fits = r.action == action || (action == Action::Anonymize && r.action == Action::Delete);
            if !fits {
                continue;
            }
            let auth = &ev.auths[r.auth];
            if auth.receipt.is_none() {
                why = Some(auth.unreceipted());
                continue;
            }
            match ev.refuses(auth, tenant, stream, scope, class, ts_us, ts_us + 1, r.action) {
                None => return None,
                Some(w) => why = Some(w),
            }
        }
        Some(why.unwrap_or_else(|| {
            let what = if action == Action::Delete {
                "deleted"
            } else {
                "anonymized"
            };
            format!("{what} without a receipt")
        }))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn verify_chain(
        &self,
        tenant: &str,
        stream: &str,
        head: Option<&lethe_store::ChainHead>,
        ce: &ChainEvidence,
        ev: &Evidence,
        keys: &KeyBook,
        now_us: i64,
        report: &mut VerifyReport,
        reader: &mut dyn lethe_store::RowReader,
        tick: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        let head_size = head.map_or(0, |h| h.size);
        let mac = match TenantId::new(tenant)
            .ok()
            .map(|t| self.keys.tenant(&t, None, 0))
            .transpose()?
        {
            Some(Some(k)) => Some(RecordMac::new(k.mac_key())),
            _ => None,
        };
        // Up to the head read at the start; rows past it are newer (or in flight).
        let mut segments = self.store.segments(tenant, stream)?;
        segments.retain(|s| s.segment.first <= head_size);
        for s in &mut segments {
            s.segment.last = s.segment.last.min(head_size);
        }
        // Walk items in sequence order: stored segments and dropped ranges.
        enum Item<'a> {
            Rows(&'a lethe_store::SegmentAt),
            Hole(&'a Hole),
        }
        let mut items: Vec<(u64, Item)> = segments.iter().map(|s| (s.segment.first, Item::Rows(s))).collect();
        items.extend(ce.holes.iter().map(|h| (h.segment.first, Item::Hole(h))));
        items.sort_by_key(|(first, item)| (*first, matches!(item, Item::Hole(_))));
        let scans: Vec<(i64, u64, u64)> = items
            .iter()
            .filter_map(|(_, item)| match item {
                Item::Rows(sa) => Some((sa.partition, sa.segment.first, sa.segment.last)),
                Item::Hole(_) => None,
            })
            .collect();
        reader.expect(&scans);

        let mut w = Walk {
            tenant,
            stream,
            store: &*self.store,
            prev: genesis(tenant, stream),
            next: 1,
            tree: Frontier::new(),
            tree_ok: true,
            resync: false,
            hole_from: None,
            cps: &ce.checkpoints,
            cp: 0,
            last_received: i64::MIN,
            nodes: Bridging::read(&*self.store, tenant, stream, &ce.holes)?,
        };
        let mut visited: HashMap<i64, u64> = HashMap::new();
        // What receipted intents removed, merged: a live row is looked up
        // in these (log n); only a hit is explained by a slower scan.
        let removed = |wanted: &dyn Fn(Action) -> bool| {
            lethe_store::merge_ranges(
                ce.rows
                    .iter()
                    .filter(|r| wanted(r.action) && ev.auths[r.auth].receipt.is_some())
                    .map(|r| [r.first, r.last])
                    .collect(),
            )
        };
        let deleted = removed(&|a| a == Action::Delete);
        let any_removal = removed(&|_| true);
        let listed = |ranges: &[[u64; 2]], seq: u64| {
            let i = ranges.partition_point(|r| r[1] < seq);
            ranges.get(i).is_some_and(|r| r[0] <= seq)
        };
        let mut lost: std::collections::HashSet<i64> = std::collections::HashSet::new();
        // Per segment read: its partition and the subjects of its live
        // records (the first record of each), to check against the filter.
        let mut filter_asks: Vec<(i64, HashMap<[u8; 32], u64>)> = Vec::new();

        for (_, item) in &items {
            match item {
                Item::Hole(h) => {
                    let s = &h.segment;
                    if s.last < w.next {
                        continue; // its records are still stored (kept as tombstones)
                    }
                    if s.first != w.next {
                        w.flush_hole(w.next - 1, report)?;
                        missing(tenant, stream, w.next, s.first.saturating_sub(1), report);
                        w.tree_ok = false;
                        w.resync = true;
                    }
                    let auth = &ev.auths[h.auth];
                    if auth.receipt.is_none() {
                        report.gap(
                            tenant,
                            stream,
                            s.first,
                            format!("records {}–{}: {}", s.first, s.last, auth.unreceipted()),
                        );
                    } else if let Some(why) = h.groups.iter().find_map(|g| {
                        ev.refuses(
                            auth,
                            tenant,
                            stream,
                            &g.scope,
                            g.class,
                            h.start_us,
                            h.end_us,
                            Action::Delete,
                        )
                    }) {
                        report.gap(
                            tenant,
                            stream,
                            s.first,
                            format!("records {}–{}: {why}", s.first, s.last),
                        );
                    }
                    if !w.resync && s.prev != w.prev {
                        report.gap(
                            tenant,
                            stream,
                            s.first,
                            format!(
                                "receipt for records {}–{} does not link to the record before them",
                                s.first, s.last
                            ),
                        );
                    }
                    w.prev = s.chain;
                    w.resync = false;
                    report.removed_explained += s.last + 1 - s.first;
                    w.hole_from.get_or_insert(s.first);
                    w.next = s.last + 1;
                }
                Item::Rows(sa) => {
                    // The dropped range ends where the walk is; anything between
                    // it and this segment is missing, reported below.
                    w.flush_hole(w.next - 1, report)?;
                    let s = &sa.segment;
                    if s.first < w.next {
                        report.gap(
                            tenant,
                            stream,
                            s.first,
                            format!(
                                "stored records {}–{} overlap records already accounted for",
                                s.first, s.last
                            ),
                        );
                        continue;
                    }
                    if s.first > w.next {
                        missing(tenant, stream, w.next, s.first - 1, report);
                        w.tree_ok = false;
                        w.resync = true;
                        w.next = s.first;
                    }
                    let mut err = None;
                    let mut rows = 0u64;
                    let mut subjects: HashMap<[u8; 32], u64> = HashMap::new();
                    let scanned = reader.scan(sa.partition, s.first, s.last, &mut |r| {
                        if err.is_some() {
                            return;
                        }
                        rows += 1;
                        if r.seq != w.next {
                            missing(tenant, stream, w.next, r.seq - 1, report);
                            w.tree_ok = false;
                            w.resync = true;
                        }
                        w.next = r.seq + 1;
                        w.last_received = r.received_us;
                        report.records_checked += 1;
                        if report.records_checked.is_multiple_of(65_536) {
                            tick(65_536);
                        }
                        let leaf = match r.leaf(tenant, stream) {
                            Ok(l) => l,
                            Err(e) => {
                                report.gap(tenant, stream, r.seq, format!("damaged row: {e}"));
                                w.tree_ok = false;
                                w.resync = true;
                                return;
                            }
                        };
                        let stored_prev: Hash = r.prev.as_slice().try_into().expect("checked by leaf()");
                        let Some(mac) = &mac else {
                            if err.is_none() {
                                err = Some(());
                                report.gap(tenant, stream, r.seq, "the tenant has no key: no record can be checked");
                            }
                            return;
                        };
                        if mac.mac(&leaf).as_slice() != r.mac.as_slice() {
                            report.gap(
                                tenant,
                                stream,
                                r.seq,
                                "record does not match its MAC: edited, swapped or forged",
                            );
                            w.tree_ok = false;
                            w.resync = true;
                            return;
                        }
                        // The record is authentic; does it follow the one before?
                        if !w.resync && stored_prev != w.prev {
                            report.gap(tenant, stream, r.seq, "does not link to the record before it");
                        }
                        w.resync = false;
                        w.prev = chain(&stored_prev, &leaf);
                        if w.tree_ok {
                            w.tree.push_leaf(leaf, &mut |_, _, _| {});
                            w.check_cps(report);
                        }
                        let action = match r.state {
                            DELETED => Some(Action::Delete),
                            ANONYMIZED => Some(Action::Anonymize),
                            _ => None,
                        };
                        if let Some(action) = action {
                            if action == Action::Delete {
                                report.tombstones += 1;
                            } else {
                                report.anonymized += 1;
                            }
                            if let Some(why) = Self::unexplained_redaction(
                                ev, ce, tenant, stream, r.seq, &r.scope, r.class, r.ts_us, action,
                            ) {
                                report.gap(tenant, stream, r.seq, why);
                            }
                        }
                        // A record a receipted removal took must not be back
                        // (an older copy of its partition put in place).
                        let suspect = match r.state {
                            LIVE => listed(&any_removal, r.seq),
                            ANONYMIZED => listed(&deleted, r.seq),
                            _ => false,
                        };
                        if suspect {
                            if let Some(why) = Self::resurrected(ev, ce, r.seq, r.state) {
                                report.gap(tenant, stream, r.seq, why);
                            }
                        }
                        if r.state == LIVE {
                            if let Some(p) = r.pseudonym.as_deref().and_then(|p| <[u8; 32]>::try_from(p).ok()) {
                                subjects.entry(p).or_insert(r.seq);
                            }
                            if let Some(why) = r.key_id.and_then(|k| keys.problem(tenant, k)) {
                                report.gap(tenant, stream, r.seq, why);
                            }
                        }
                    });
                    match scanned {
                        Ok(()) => {}
                        // The partition's file is gone: its records are
                        // listed as missing below, and the walk goes on.
                        Err(StoreError::Lost(what)) => {
                            report.gap(
                                tenant,
                                stream,
                                s.first,
                                format!("records {}–{} are lost: {what}", s.first, s.last),
                            );
                            w.tree_ok = false;
                            w.resync = true;
                            w.next = w.next.max(s.last + 1);
                            lost.insert(sa.partition);
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                    *visited.entry(sa.partition).or_default() += rows;
                    if !subjects.is_empty() {
                        filter_asks.push((sa.partition, subjects));
                    }
                    if w.next <= s.last {
                        missing(tenant, stream, w.next, s.last, report);
                        w.tree_ok = false;
                        w.resync = true;
                        w.next = s.last + 1;
                    }
                }
            }
        }
        w.flush_hole(w.next - 1, report)?;
        // Erasures find a subject's rows through the partition filters (and
        // check through them): a filter that does not name a subject stored
        // in its partition would hide that subject's records from an
        // erasure. Read after the rows, so they cover them (filters only
        // grow); for the whole chain at once.
        let asks: Vec<(i64, Vec<[u8; 32]>)> = filter_asks
            .iter()
            .map(|(p, subjects)| (*p, subjects.keys().copied().collect()))
            .collect();
        let mut missed: Vec<u64> = self
            .store
            .filter_misses_of(&asks)?
            .iter()
            .zip(&filter_asks)
            .flat_map(|(misses, (_, subjects))| misses.iter().filter_map(|p| subjects.get(p).copied()))
            .collect();
        missed.sort_unstable();
        for seq in missed {
            report.gap(
                tenant,
                stream,
                seq,
                "the partition's subject filter does not name this record's subject: an erasure \
                 of the subject would not find its records there (filter damaged or forged); \
                 erase the subject with `exhaustive` (lethe purge --exhaustive)",
            );
        }
        let walked = w.next - 1;
        // The chain's end: the catalog head, the checkpoints, the seal.
        if head_size > walked {
            missing(tenant, stream, walked + 1, head_size, report);
        }
        if let Some(why) = head.and_then(|h| h.damaged.as_ref()) {
            report.gap(
                tenant,
                stream,
                head_size,
                format!("the catalog's state of this chain does not hold together: {why}"),
            );
        } else if let Some(h) = head {
            if h.size == walked && h.hash != w.prev && w.tree_ok {
                report.gap(
                    tenant,
                    stream,
                    walked,
                    "the catalog's chain head does not match the records",
                );
            }
        }
        let sealed = ce.checkpoints.last().map_or(0, |c| c.0);
        for &(size, _, at) in ce.checkpoints.iter().filter(|c| c.0 > walked) {
            report.gap(
                tenant,
                stream,
                walked + 1,
                if at == 0 {
                    format!("a checkpoint published to the witness covers {size} records but the chain ends at {walked}: the store was rolled back or truncated")
                } else {
                    format!("checkpoint (ledger {at}) covers {size} records but the chain ends at {walked}: records were truncated")
                },
            );
        }
        if walked > sealed {
            // Young unsealed records are an ingest in progress; old ones mean
            // a run died before sealing — or the ledger's tail was removed.
            let grace = self
                .config
                .integrity
                .checkpoint_interval
                .micros()
                .unwrap_or(3_600_000_000)
                .saturating_mul(2);
            if now_us.saturating_sub(w.last_received) <= grace {
                report.unsealed_recent += walked - sealed;
            } else {
                report.gap(
                    tenant,
                    stream,
                    sealed + 1,
                    format!(
                        "records {}–{walked} are not under any signed checkpoint (an ingest died before sealing — the next ingest or cleanup seals them — or the ledger's tail was removed)",
                        sealed + 1
                    ),
                );
            }
        }
        // Rows no append put there.
        let spans: HashMap<i64, Vec<(u64, u64)>> = segments.iter().fold(HashMap::new(), |mut m, s| {
            m.entry(s.partition)
                .or_default()
                .push((s.segment.first, s.segment.last));
            m
        });
        let mut newer: Vec<(i64, u64, bool)> = Vec::new();
        for (part, in_flight) in self.store.partitions(tenant, stream)? {
            if lost.contains(&part) {
                continue;
            }
            let count = match reader.row_count(part) {
                Ok(n) => n,
                Err(StoreError::Lost(what)) => {
                    // A partition no segment names is gone as well.
                    report.gap(tenant, stream, 0, format!("a partition of the chain is lost: {what}"));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if count > visited.get(&part).copied().unwrap_or(0) {
                let spans = spans.get(&part).cloned().unwrap_or_default();
                for seq in reader.strays(part, &spans)? {
                    if seq <= head_size {
                        report.gap(tenant, stream, seq, "row is not part of the chain (inserted)");
                    } else {
                        newer.push((part, seq, in_flight));
                    }
                }
            }
        }
        // Rows past the head read at the start: appended since (committed
        // now, so in the segments), or a batch in flight (its partition
        // marked as being written). Anything else was put there by hand.
        if !newer.is_empty() {
            let fresh = self.store.segments(tenant, stream)?;
            for (part, seq, in_flight) in newer {
                let committed = fresh
                    .iter()
                    .any(|s| s.partition == part && s.segment.first <= seq && seq <= s.segment.last);
                if !committed && !in_flight {
                    report.gap(tenant, stream, seq, "row is not part of the chain (inserted)");
                }
            }
        }
        tick(report.records_checked % 65_536);
        Ok(())
    }
}

pub(super) fn missing(tenant: &str, stream: &str, from: u64, to: u64, report: &mut VerifyReport) {
    if from > to {
        return;
    }
    let what = if from == to {
        format!("record {from} is missing: no row and no receipt")
    } else {
        format!("records {from}–{to} are missing: no rows and no receipt")
    };
    report.gap(tenant, stream, from, what);
}

/// The state of a walk along one chain.
pub(super) struct Walk<'a> {
    pub(super) tenant: &'a str,
    pub(super) stream: &'a str,
    pub(super) store: &'a dyn lethe_store::Store,
    /// Chain hash after the last record accounted for.
    pub(super) prev: Hash,
    /// Next sequence number expected.
    pub(super) next: u64,
    /// The Merkle tree rebuilt so far.
    pub(super) tree: Frontier,
    /// Whether the tree can still be rebuilt (no leaf lost to damage).
    pub(super) tree_ok: bool,
    /// After a problem: take the next record's link as given (one problem,
    /// one report — not a cascade).
    pub(super) resync: bool,
    /// First sequence number of the removed range being crossed.
    pub(super) hole_from: Option<u64>,
    /// Checkpoints (size, root, ledger seq), by size; `cp` is the next one.
    pub(super) cps: &'a [(u64, Hash, u64)],
    pub(super) cp: usize,
    /// Received time of the last stored record walked (µs).
    pub(super) last_received: i64,
    /// Merkle nodes over the removed ranges, asked of the store ahead.
    pub(super) nodes: Bridging,
}

/// Merkle nodes over a chain's removed ranges, asked of the store ahead:
/// those it keeps, and those it said it does not (composed from below).
/// A node asked neither way is looked up in the store.
#[derive(Default)]
pub(super) struct Bridging {
    kept: HashMap<(u32, u64), Hash>,
    absent: std::collections::HashSet<(u32, u64)>,
}

impl Bridging {
    /// At most this many nodes are asked ahead per chain (a store that
    /// lost its nodes would otherwise have every level-8 node below a
    /// high one asked).
    const MOST: usize = 65_536;

    /// Asks the store for the nodes covering each run of adjacent
    /// `holes` — as the walk will want them — and, for each one it does
    /// not keep above level 8, for its two children: a round trip per
    /// level, not per node.
    fn read(store: &dyn lethe_store::Store, tenant: &str, stream: &str, holes: &[Hole]) -> Result<Self> {
        let runs = lethe_store::merge_ranges(holes.iter().map(|h| [h.segment.first, h.segment.last]).collect());
        let mut wanted: Vec<(u32, u64)> = runs
            .iter()
            .flat_map(|&[first, last]| perfect_cover(first.saturating_sub(1), last))
            .collect();
        let mut b = Bridging::default();
        while !wanted.is_empty() && b.kept.len() + b.absent.len() + wanted.len() <= Self::MOST {
            let found = store.merkle_nodes(tenant, stream, &wanted)?;
            let mut below = Vec::new();
            for (n, h) in wanted.into_iter().zip(found) {
                match h {
                    Some(h) => {
                        b.kept.insert(n, h);
                    }
                    None => {
                        b.absent.insert(n);
                        // Composed from its children (at level 8 and below
                        // from leaves first: not asked ahead).
                        if n.0 > 8 {
                            below.extend([(n.0 - 1, 2 * n.1), (n.0 - 1, 2 * n.1 + 1)]);
                        }
                    }
                }
            }
            wanted = below;
        }
        Ok(b)
    }
}

impl Walk<'_> {
    /// Compares the tree head with every checkpoint at the current size.
    pub(super) fn check_cps(&mut self, report: &mut VerifyReport) {
        while let Some(&(size, root, at)) = self.cps.get(self.cp) {
            if size > self.tree.size() {
                break;
            }
            self.cp += 1;
            if size < self.tree.size() || !self.tree_ok {
                report.checkpoints_unverifiable += 1;
            } else if self.tree.root() == root {
                report.checkpoints_checked += 1;
            } else {
                report.gap(
                    self.tenant,
                    self.stream,
                    size,
                    if at == 0 {
                        format!("the tree head over records 1–{size} does not match the one published to the witness")
                    } else {
                        format!(
                            "checkpoint (ledger {at}): the tree head over records 1–{size} does not match the signed one"
                        )
                    },
                );
            }
        }
    }

    /// Crosses the removed range from `hole_from` to `to`: its Merkle heads
    /// come from the store.
    pub(super) fn flush_hole(&mut self, to: u64, report: &mut VerifyReport) -> Result<()> {
        let Some(from) = self.hole_from.take() else {
            return Ok(());
        };
        for (level, idx) in perfect_cover(from - 1, to) {
            if !self.tree_ok {
                break;
            }
            let nodes = &self.nodes;
            let kept = |level: u32, idx: u64| -> Result<Option<Hash>> {
                if let Some(h) = nodes.kept.get(&(level, idx)) {
                    return Ok(Some(*h));
                }
                if nodes.absent.contains(&(level, idx)) {
                    return Ok(None);
                }
                Ok(self.store.merkle_node(self.tenant, self.stream, level, idx)?)
            };
            match composed_node(self.store, self.tenant, self.stream, level, idx, &kept)? {
                Some(h) => {
                    self.tree.push(level, h, &mut |_, _, _| {});
                    self.check_cps(report);
                }
                None => {
                    self.tree_ok = false;
                    report.gap(
                        self.tenant,
                        self.stream,
                        (idx << level) + 1,
                        format!("Merkle heads over removed records {from}–{to} are missing from the store"),
                    );
                }
            }
        }
        Ok(())
    }
}

/// A Merkle subtree head from the store: kept as is, or composed from kept
/// heads and rebuilt leaves below it. `None` when it cannot be had.
pub(crate) fn stored_node(
    store: &dyn lethe_store::Store,
    tenant: &str,
    stream: &str,
    level: u32,
    idx: u64,
) -> Result<Option<Hash>> {
    composed_node(store, tenant, stream, level, idx, &|level, idx| {
        Ok(store.merkle_node(tenant, stream, level, idx)?)
    })
}

/// [`stored_node`], with the kept heads answered by `kept` (which may know
/// them without asking the store).
fn composed_node(
    store: &dyn lethe_store::Store,
    tenant: &str,
    stream: &str,
    level: u32,
    idx: u64,
    kept: &dyn Fn(u32, u64) -> Result<Option<Hash>>,
) -> Result<Option<Hash>> {
    if let Some(h) = kept(level, idx)? {
        return Ok(Some(h));
    }
    if level <= 8 {
        // Small enough to rebuild from leaves, where the rows still exist.
        let lo = idx << level;
        let leaves = store.leaves(tenant, stream, lo + 1, lo + (1u64 << level))?;
        if let Some(ls) = leaves.into_iter().collect::<Option<Vec<Hash>>>() {
            return Ok(Some(lethe_core::merkle::root(&ls)));
        }
    }
    if level == 0 {
        return Ok(None);
    }
    let (Some(l), Some(r)) = (
        composed_node(store, tenant, stream, level - 1, 2 * idx, kept)?,
        composed_node(store, tenant, stream, level - 1, 2 * idx + 1, kept)?,
    ) else {
        return Ok(None);
    };
    Ok(Some(node_hash(&l, &r)))
}
