//! The backend-neutral pieces of a removal plan: what each group of a
//! partition contributes, how a dropped partition's bytes are attributed,
//! per-chain entries, and the Merkle heads kept at the edges of what goes.

use std::collections::BTreeMap;

use lethe_core::merkle::{self, Hash};
use lethe_core::Classification;

use crate::{ChainRemoval, PartGroupRef, Result, RetentionEffect, RetentionTarget};

/// What one target does to one group of a partition.
pub(crate) struct Item {
    /// Index of the target.
    pub target: usize,
    pub scope: String,
    pub class: Classification,
    /// Records it removes.
    pub records: u64,
    /// Records a hold keeps.
    pub held: u64,
    /// The group's share of the partition (live rows and tombstones).
    pub share: u64,
    /// Row-level work: the sequence numbers it touches.
    pub seqs: Vec<[u64; 2]>,
}

/// What targets do, per partition `P` of a backend.
pub(crate) struct Work<P> {
    /// Partitions removed whole, with their groups.
    pub drops: Vec<(P, Vec<Item>, Vec<PartGroupRef>)>,
    /// Partitions with row-level work.
    pub rows: Vec<(P, Vec<Item>)>,
    /// Per target, records a hold keeps.
    pub held: Vec<u64>,
}

impl<P> Work<P> {
    /// No work yet for `targets` targets.
    pub fn new(targets: usize) -> Self {
        Work {
            drops: Vec::new(),
            rows: Vec::new(),
            held: vec![0; targets],
        }
    }
}

/// One empty effect per target, in target order.
pub(crate) fn effects_from(targets: &[RetentionTarget]) -> Vec<RetentionEffect> {
    targets
        .iter()
        .map(|t| RetentionEffect {
            target: t.clone(),
            records: 0,
            held: 0,
            bytes_freed: 0,
            partitions_dropped: 0,
        })
        .collect()
}

/// Splits a dropped partition's bytes over its groups by record share, the
/// remainder going to the largest group so the parts add up exactly.
pub(crate) fn attribute_drop(effects: &mut [RetentionEffect], items: &[Item], bytes: u64) {
    // Shares count tombstones too: they occupy the disk as well.
    let total: u64 = items.iter().map(|i| i.share).sum();
    let mut given = 0;
    let largest = items.iter().enumerate().max_by_key(|(_, i)| i.share).map(|(n, _)| n);
    for (n, i) in items.iter().enumerate() {
        let b = (bytes * i.share).checked_div(total).unwrap_or(0);
        given += b;
        let e = &mut effects[i.target];
        e.bytes_freed += b;
        e.records += i.records;
        if Some(n) == largest {
            e.partitions_dropped += 1;
        }
    }
    if let Some(n) = largest {
        effects[items[n].target].bytes_freed += bytes - given;
    }
}

/// The removal entry of a chain, created on first use.
pub(crate) fn chain_entry<'a>(
    chains: &'a mut BTreeMap<(String, String), ChainRemoval>,
    tenant: &str,
    stream: &str,
) -> &'a mut ChainRemoval {
    chains
        .entry((tenant.to_string(), stream.to_string()))
        .or_insert_with(|| ChainRemoval {
            tenant: tenant.to_string(),
            stream: stream.to_string(),
            dropped: Vec::new(),
            rows: Vec::new(),
        })
}

/// The Merkle subtree heads below the 256-leaf level at the edges of the
/// ranges `segs` about to be dropped, computed from their rows (still
/// present, read by `leaves(first, last)`), so the tree over what remains
/// can still be recomputed and proven. Adjacent ranges are merged first:
/// only the outer edges of each merged range need heads.
pub(crate) fn edge_nodes(
    segs: &[(u64, u64)],
    leaves: &mut dyn FnMut(u64, u64) -> Result<Vec<Option<Hash>>>,
) -> Result<Vec<(u32, u64, Hash)>> {
    let mut out = Vec::new();
    for [a, b] in crate::merge_ranges(segs.iter().map(|&(a, b)| [a, b]).collect()) {
        // The small subtrees of a cover sit at its two ends, side by side:
        // their leaves are read in one call per run of adjacent subtrees
        // (two per range, not one per subtree — a sweep of many chains
        // reads hundreds of ranges).
        let mut runs: Vec<Vec<(u32, u64)>> = Vec::new();
        for node in merkle::perfect_cover(a - 1, b)
            .into_iter()
            .filter(|&(level, _)| level < 8)
        {
            match runs.last_mut() {
                Some(run) if leaf_span(run[run.len() - 1]).1 + 1 == leaf_span(node).0 => run.push(node),
                _ => runs.push(vec![node]),
            }
        }
        for run in runs {
            let first = leaf_span(run[0]).0;
            let ls = leaves(first, leaf_span(run[run.len() - 1]).1)?;
            for node in run {
                let (lo, hi) = leaf_span(node);
                // A leaf that cannot be rebuilt (a damaged row) leaves the head
                // out: `lethe verify` reports the damage itself.
                let under = &ls[(lo - first) as usize..=(hi - first) as usize];
                if let Some(hashes) = under.iter().copied().collect::<Option<Vec<Hash>>>() {
                    out.push((node.0, node.1, merkle::root(&hashes)));
                }
            }
        }
    }
    Ok(out)
}

/// The leaves (numbered from 1, as sequence numbers are) under the
/// perfect subtree `(level, index)`, first and last.
fn leaf_span((level, idx): (u32, u64)) -> (u64, u64) {
    let lo = idx << level;
    (lo + 1, lo + (1u64 << level))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(seq: u64) -> Hash {
        merkle::leaf_hash(&seq.to_le_bytes())
    }

    /// Each subtree head computed on its own, as the store did before runs.
    fn one_by_one(a: u64, b: u64) -> Vec<(u32, u64, Hash)> {
        merkle::perfect_cover(a - 1, b)
            .into_iter()
            .filter(|&(level, _)| level < 8)
            .map(|(level, idx)| {
                let lo = idx << level;
                let ls: Vec<Hash> = (lo + 1..=lo + (1u64 << level)).map(leaf).collect();
                (level, idx, merkle::root(&ls))
            })
            .collect()
    }

    #[test]
    fn edge_heads_are_those_of_each_subtree_read_in_two_calls_per_range() {
        for (a, b) in [
            (1, 1),
            (1, 1000),
            (3, 300),
            (257, 9000),
            (1000, 70_000),
            (77, 77),
            (5, 12),
        ] {
            let mut calls = 0;
            let segs = vec![(a, b)];
            let got = edge_nodes(&segs, &mut |lo, hi| {
                calls += 1;
                Ok((lo..=hi).map(|s| Some(leaf(s))).collect())
            })
            .unwrap();
            assert_eq!(got, one_by_one(a, b), "range {a}..={b}");
            assert!(calls <= 2, "range {a}..={b}: {calls} reads");
        }
    }

    #[test]
    fn a_damaged_leaf_leaves_only_its_own_subtree_out() {
        let segs = vec![(3, 40)];
        let got = edge_nodes(&segs, &mut |lo, hi| {
            Ok((lo..=hi).map(|s| (s != 5).then(|| leaf(s))).collect())
        })
        .unwrap();
        let want: Vec<_> = one_by_one(3, 40)
            .into_iter()
            .filter(|&(level, idx, _)| !((idx << level) + 1..=(idx << level) + (1u64 << level)).contains(&5))
            .collect();
        assert_eq!(got, want);
        assert!(got.len() + 1 == one_by_one(3, 40).len());
    }
}
