//! Sealing: every record linked and MACed under the tree head; tombstones and dropped ranges keep what verification needs.

use lethe_core::policy::{Action, GroupKey};
use lethe_core::{Classification, TenantId};

use super::*;
use crate::Store;

pub(super) fn key_of(r: &crate::StoredRecord) -> GroupKey {
    r.record.group.clone()
}

/// Walks one chain the way a verifier does: rows in sequence order via the
/// segments, every MAC and link checked, holes bridged by `holes` (first,
/// last, prev, chain) with stored Merkle nodes. Returns (rows, tombstones,
/// anonymized) and asserts the chain head and tree head match.
pub(super) fn walk_chain(s: &dyn Store, tenant: &str, stream: &str, holes: &[crate::Segment]) -> (u64, u64, u64) {
    use lethe_core::integrity::{chain, genesis, RecordMac};
    use lethe_core::merkle::{node_hash, perfect_cover, Frontier, Hash};
    let mac = RecordMac::new(&mac_key(&TenantId::new(tenant).unwrap()));
    let head = s
        .chains()
        .unwrap()
        .into_iter()
        .find(|c| c.tenant == tenant && c.stream == stream)
        .unwrap();
    let mut segs: Vec<(u64, u64, Option<i64>, Option<Hash>)> = s
        .segments(tenant, stream)
        .unwrap()
        .into_iter()
        .map(|sa| (sa.segment.first, sa.segment.last, Some(sa.partition), None))
        .collect();
    // Adjacent holes are one hole: the store keeps Merkle heads only at the
    // outer edges of what a sweep removed.
    let mut hs: Vec<&crate::Segment> = holes.iter().collect();
    hs.sort_by_key(|h| h.first);
    let mut merged: Vec<(u64, u64, Option<i64>, Option<Hash>)> = Vec::new();
    for h in hs {
        match merged.last_mut() {
            Some(m) if m.1 + 1 == h.first => {
                m.1 = h.last;
                m.3 = Some(h.chain);
            }
            _ => merged.push((h.first, h.last, None, Some(h.chain))),
        }
    }
    segs.extend(merged);
    segs.sort_by_key(|x| x.0);
    let mut reader = s.row_reader().unwrap();
    // Announced, as verify does: a backend may read them ahead.
    let scans: Vec<(i64, u64, u64)> = segs.iter().filter_map(|&(a, b, p, _)| Some((p?, a, b))).collect();
    reader.expect(&scans);
    let mut prev = genesis(tenant, stream);
    let mut tree = Frontier::new();
    let (mut rows, mut tomb, mut anon) = (0, 0, 0);
    fn node(s: &dyn Store, t: &str, st: &str, level: u32, idx: u64) -> Hash {
        if let Some(h) = s.merkle_node(t, st, level, idx).unwrap() {
            return h;
        }
        assert!(level > 0, "no stored node {level}/{idx}");
        node_hash(
            &node(s, t, st, level - 1, 2 * idx),
            &node(s, t, st, level - 1, 2 * idx + 1),
        )
    }
    for (first, last, part, chain_after) in segs {
        assert_eq!(first, tree.size() + 1, "segments cover the chain without gaps");
        match part {
            Some(p) => {
                let mut next = first;
                reader
                    .scan(p, first, last, &mut |r| {
                        assert_eq!(r.seq, next);
                        next += 1;
                        assert_eq!(r.prev, prev.to_vec(), "seq {} links to the record before", r.seq);
                        let leaf = r.leaf(tenant, stream).unwrap();
                        assert_eq!(r.mac, mac.mac(&leaf).to_vec(), "seq {} MAC", r.seq);
                        prev = chain(&prev, &leaf);
                        tree.push_leaf(leaf, &mut |_, _, _| {});
                        rows += 1;
                        tomb += (r.state == crate::row::DELETED) as u64;
                        anon += (r.state == crate::row::ANONYMIZED) as u64;
                    })
                    .unwrap();
                assert_eq!(next, last + 1, "every row of the segment is there");
            }
            None => {
                for (level, idx) in perfect_cover(first - 1, last) {
                    assert!(tree.push(level, node(s, tenant, stream, level, idx), &mut |_, _, _| {}));
                }
                prev = chain_after.unwrap();
            }
        }
    }
    assert_eq!((tree.size(), prev), (head.size, head.hash), "chain head");
    assert_eq!(tree.root(), head.root, "tree head");
    (rows, tomb, anon)
}

/// Every record carries its link and MAC; segments cover the chain; the
/// tree head the store keeps is the RFC 6962 head over the leaves.
pub fn appended_records_are_sealed_linked_and_under_the_tree_head(h: &dyn Harness) {
    let s = h.open(0);
    random_store(&*s, 9, 1500);
    let mut total = 0;
    for c in s.chains().unwrap() {
        let (rows, ..) = walk_chain(&*s, &c.tenant, &c.stream, &[]);
        assert_eq!(rows, c.size);
        total += rows;
    }
    assert_eq!(total, 1500);
    // duplicates consume no sequence number and change no head
    let before = s.chains().unwrap();
    let g = key("acme", "audit:1", "web", Classification::Internal);
    append_to(&*s, &[rec(0, &g, T0, None)]).unwrap();
    let dup = all(&*s, "acme").into_iter().next().unwrap().record;
    assert_eq!(append_to(&*s, &[dup]).unwrap().inserted, 0);
    let after = s.chains().unwrap();
    assert_eq!(before.len(), after.len());
    for c in s.chains().unwrap() {
        walk_chain(&*s, &c.tenant, &c.stream, &[]);
    }
}

/// Row-level deletion leaves a tombstone: gone from queries and stats, its
/// header kept so the MAC and the links through it still check.
pub fn deleting_rows_keeps_tombstones_whose_headers_still_verify(h: &dyn Harness) {
    let s = h.open(0);
    let g = key("acme", "audit:1", "web", Classification::Internal);
    let a = key("acme", "audit:1", "admin", Classification::Internal);
    let recs: Vec<_> = (0..30)
        .map(|i| rec(i, if i % 3 == 0 { &a } else { &g }, T0 - (i as i64) * DAY / 10, Some(3)))
        .collect();
    append_to(&*s, &recs).unwrap();
    let t = vec![
        RetentionTarget {
            key: g.clone(),
            rule: "d".into(),
            action: Action::Delete,
            cutoff_us: T0 - DAY,
        },
        RetentionTarget {
            key: a.clone(),
            rule: "a".into(),
            action: Action::Anonymize,
            cutoff_us: T0 - DAY,
        },
    ];
    let plan = s.plan_removal(&t, &[]).unwrap();
    let listed: u64 = plan
        .chains
        .iter()
        .flat_map(|c| &c.rows)
        .flat_map(|r| &r.seqs)
        .map(|r| r[1] + 1 - r[0])
        .sum();
    assert_eq!(listed, plan.effects.iter().map(|e| e.records).sum::<u64>());
    let done = s.apply_removal(&plan.chains, &no_progress).unwrap();
    assert_eq!(done.deleted, plan.effects[0].records);
    assert_eq!(done.anonymized, plan.effects[1].records);
    assert!(done.deleted > 0 && done.anonymized > 0);
    let (rows, tomb, anon) = walk_chain(&*s, "acme", "audit:1", &[]);
    assert_eq!((rows, tomb, anon), (30, done.deleted, done.anonymized));
    assert_eq!(all(&*s, "acme").len() as u64, 30 - done.deleted);
    let st = s.stats(None).unwrap();
    assert_eq!(st.iter().map(|g| g.tombstones).sum::<u64>(), done.deleted);
    assert_eq!(st.iter().map(|g| g.records).sum::<u64>(), 30 - done.deleted);
    // applying the same removal again changes nothing
    assert_eq!(
        s.apply_removal(&plan.chains, &no_progress).unwrap(),
        crate::Applied::default()
    );
}

/// Dropping whole partitions: the plan lists their segments with boundary
/// chain hashes, and the store keeps the Merkle heads at the edges, so the
/// chain and the tree over what remains still verify, hole and all.
pub fn dropping_partitions_keeps_what_the_chain_and_tree_need(h: &dyn Harness) {
    let s = h.open(0);
    let g = key("acme", "requests:1", "chat", Classification::Internal);
    let mut n = 0;
    // 20 days of 77 records (not a multiple of 256: ranges end mid-chunk)
    for day in (0..20).rev() {
        let recs: Vec<_> = (0..77)
            .map(|i| {
                n += 1;
                rec(n, &g, T0 - day * DAY + i * 1000, Some((i % 5) as u8))
            })
            .collect();
        append_to(&*s, &recs).unwrap();
    }
    let head = s.chains().unwrap()[0].clone();
    let t = vec![RetentionTarget {
        key: g.clone(),
        rule: "r".into(),
        action: Action::Delete,
        cutoff_us: T0 - 7 * DAY + DAY / 2,
    }];
    let plan = s.plan_removal(&t, &[]).unwrap();
    let dropped: Vec<crate::Segment> = plan
        .chains
        .iter()
        .flat_map(|c| &c.dropped)
        .flat_map(|d| d.segments.clone())
        .collect();
    // days 8..=19 end before the cutoff; day 7 straddles it (all its records are older)
    assert_eq!(dropped.len(), 12, "one segment per dropped day");
    let applied = s.apply_removal(&plan.chains, &no_progress).unwrap();
    assert_eq!(applied.partitions_dropped, 12);
    assert_eq!(applied.deleted, 13 * 77);
    assert_eq!(s.chains().unwrap()[0], head, "heads do not move when records go");
    let (rows, ..) = walk_chain(&*s, "acme", "requests:1", &dropped);
    assert_eq!(
        rows,
        20 * 77 - 12 * 77,
        "tombstones of day 7 stay until its partition goes"
    );
}

/// Scans announced ahead (as verify announces a chain's segments) return
/// exactly what unannounced ones return — also when some are skipped, one
/// is made out of order, one was never announced, and the announcement is
/// replaced part way.
pub fn announced_scans_return_the_rows_unannounced_ones_do(h: &dyn Harness) {
    let s = h.open(0);
    random_store(&*s, 17, 3000);
    let rows_of = |reader: &mut dyn crate::RowReader, (p, a, b): (i64, u64, u64)| {
        let mut got = Vec::new();
        reader
            .scan(p, a, b, &mut |r| got.push((r.seq, r.mac.clone(), r.state)))
            .unwrap();
        got
    };
    let mut plain = s.row_reader().unwrap();
    let mut ahead = s.row_reader().unwrap();
    let mut checked = 0;
    for c in s.chains().unwrap() {
        let scans: Vec<(i64, u64, u64)> = s
            .segments(&c.tenant, &c.stream)
            .unwrap()
            .into_iter()
            .map(|sa| (sa.partition, sa.segment.first, sa.segment.last))
            .collect();
        assert!(scans.len() > 3, "the chain has several segments");
        let want: Vec<_> = scans.iter().map(|&sc| rows_of(&mut *plain, sc)).collect();
        assert_eq!(want.iter().map(Vec::len).sum::<usize>() as u64, c.size);
        ahead.expect(&scans);
        // The last first (out of order), then every other one (skipping).
        let last = scans.len() - 1;
        assert_eq!(rows_of(&mut *ahead, scans[last]), want[last]);
        for i in (0..last).step_by(2) {
            assert_eq!(rows_of(&mut *ahead, scans[i]), want[i], "scan {i} of {}", c.stream);
            checked += 1;
        }
        // Part of a segment, never announced.
        let (p, a, b) = scans[1];
        let mid = (a + b) / 2;
        let part: Vec<_> = want[1].iter().filter(|r| r.0 <= mid).cloned().collect();
        assert_eq!(rows_of(&mut *ahead, (p, a, mid)), part);
        // A new announcement replaces the old one.
        ahead.expect(&scans[1..]);
        assert_eq!(rows_of(&mut *ahead, scans[1]), want[1]);
        assert_eq!(rows_of(&mut *ahead, scans[0]), want[0]);
    }
    assert!(checked > 0);
}
