//! RFC 6962 / RFC 9162 Merkle trees: tree heads, inclusion and consistency
//! proofs, and their verification — the part a third party re-implements to
//! check Lethe's checkpoints, so it follows the RFCs to the letter (leaf
//! prefix `0x00`, node prefix `0x01`, split at the largest power of two below
//! n, SHA-256 of the empty string for the empty tree).

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Lowercase hex of a hash, as printed in proofs, receipts and the ledger.
pub fn to_hex(h: &Hash) -> String {
    hex::encode(h)
}

/// `SHA-256(0x00 ‖ data)`: the hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (`n ≥ 2`): where RFC 6962
/// splits a tree of `n` leaves.
pub fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// The tree head (MTH) over leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The audit path of leaf `index` in the tree over `leaves` (RFC 6962 §2.1.1).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    path(index, leaves, &mut out);
    Some(out)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split(d.len() as u64) as usize;
    if m < k {
        path(m, &d[..k], out);
        out.push(root(&d[k..]));
    } else {
        path(m - k, &d[k..], out);
        out.push(root(&d[..k]));
    }
}

/// The consistency proof between the tree of the first `old_size` leaves and
/// the tree over all `leaves` (RFC 6962 §2.1.2).
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Option<Vec<Hash>> {
    if old_size > leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    if old_size > 0 {
        subproof(old_size, leaves, true, &mut out);
    }
    Some(out)
}

fn subproof(m: usize, d: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !complete {
            out.push(root(d));
        }
        return;
    }
    let k = split(n as u64) as usize;
    if m <= k {
        subproof(m, &d[..k], complete, out);
        out.push(root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
}

/// The audit path of leaf `index` in a tree of `size` leaves, asking
/// `mth(lo, hi)` for the head of each subtree over leaves `lo..hi` it needs
/// (the same path as [`inclusion_proof`], for trees too large to hold).
pub fn inclusion_path<E>(
    index: u64,
    size: u64,
    mth: &mut dyn FnMut(u64, u64) -> Result<Hash, E>,
) -> Result<Option<Vec<Hash>>, E> {
    if index >= size {
        return Ok(None);
    }
    let mut out = Vec::new();
    path_in(index, 0, size, mth, &mut out)?;
    Ok(Some(out))
}

fn path_in<E>(
    m: u64,
    lo: u64,
    hi: u64,
    mth: &mut dyn FnMut(u64, u64) -> Result<Hash, E>,
    out: &mut Vec<Hash>,
) -> Result<(), E> {
    if hi - lo <= 1 {
        return Ok(());
    }
    let k = split(hi - lo);
    if m < lo + k {
        path_in(m, lo, lo + k, mth, out)?;
        out.push(mth(lo + k, hi)?);
    } else {
        path_in(m, lo + k, hi, mth, out)?;
        out.push(mth(lo, lo + k)?);
    }
    Ok(())
}

/// The consistency proof between trees of `old_size` and `new_size` leaves,
/// asking `mth(lo, hi)` for subtree heads (the same proof as
/// [`consistency_proof`]).
pub fn consistency_path<E>(
    old_size: u64,
    new_size: u64,
    mth: &mut dyn FnMut(u64, u64) -> Result<Hash, E>,
) -> Result<Option<Vec<Hash>>, E> {
    if old_size > new_size {
        return Ok(None);
    }
    let mut out = Vec::new();
    if old_size > 0 {
        subproof_in(old_size, 0, new_size, true, mth, &mut out)?;
    }
    Ok(Some(out))
}

fn subproof_in<E>(
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    mth: &mut dyn FnMut(u64, u64) -> Result<Hash, E>,
    out: &mut Vec<Hash>,
) -> Result<(), E> {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(mth(lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof_in(m, lo, lo + k, complete, mth, out)?;
        out.push(mth(lo + k, hi)?);
    } else {
        subproof_in(m - k, lo + k, hi, false, mth, out)?;
        out.push(mth(lo, lo + k)?);
    }
    Ok(())
}

/// The perfect subtrees `(level, index)` that make up leaves `lo..hi` of an
/// RFC 6962 tree, left to right, each as large as alignment allows (a
/// subtree at `level` covers leaves `index·2^level .. (index+1)·2^level`).
pub fn perfect_cover(mut lo: u64, hi: u64) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    while lo < hi {
        let mut level = if lo == 0 { 63 } else { lo.trailing_zeros() };
        while level > 0 && lo + (1u64 << level) > hi {
            level -= 1;
        }
        out.push((level, lo >> level));
        lo += 1u64 << level;
    }
    out
}

/// A compact range over leaves `0..size`: the heads of the perfect subtrees
/// the size decomposes into, largest first. Enough to extend the tree leaf by
/// leaf and to compute its head at any moment in O(log n) memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its size and subtree heads; `None` when the
    /// number of heads does not match the size.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (nodes.len() == size.count_ones() as usize).then_some(Frontier { size, nodes })
    }

    /// Leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree heads, largest first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends a perfect subtree of `2^level` leaves with head `hash`; fails
    /// (changing nothing) unless the current size is a multiple of `2^level`.
    /// `completed(level, index, head)` is told of every interior subtree the
    /// append completes, the appended one included when `level > 0`.
    pub fn push(&mut self, level: u32, hash: Hash, completed: &mut dyn FnMut(u32, u64, &Hash)) -> bool {
        if level >= 64 || self.size & ((1u64 << level) - 1) != 0 {
            return false;
        }
        let mut level = level;
        let mut h = hash;
        let mut index = self.size >> level;
        if level > 0 {
            completed(level, index, &h);
        }
        self.size += 1u64 << level;
        // Merge with equal-sized neighbours: a set bit of the old size at
        // `level` means a subtree of that size sits to the left.
        while index & 1 == 1 {
            let left = self.nodes.pop().expect("a left sibling exists for an odd index");
            h = node_hash(&left, &h);
            level += 1;
            index >>= 1;
            completed(level, index, &h);
        }
        self.nodes.push(h);
        true
    }

    /// Appends one leaf hash.
    pub fn push_leaf(&mut self, leaf: Hash, completed: &mut dyn FnMut(u32, u64, &Hash)) {
        self.push(0, leaf, completed);
    }

    /// The tree head over the leaves so far.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return Sha256::digest([]).into();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Checks a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old_size: u64, new_size: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The RFC 6962 reference leaves (certificate-transparency / transparency-dev test data).
    fn reference_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|x| leaf_hash(&hex::decode(x).unwrap()))
        .collect()
    }

    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    #[test]
    fn tree_heads_match_the_rfc_6962_reference_roots() {
        let leaves = reference_leaves();
        for (n, want) in ROOTS.iter().enumerate() {
            assert_eq!(root(&leaves[..n]), h(want), "size {n}");
        }
    }

    #[test]
    fn proofs_match_the_published_reference_proofs() {
        let l = reference_leaves();
        let cases: [(usize, &[&str]); 2] = [
            (
                0,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (i, want) in cases {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            assert_eq!(inclusion_proof(&l, i).unwrap(), want, "inclusion of {i} in 8");
            assert!(verify_inclusion(&l[i], i as u64, 8, &want, &h(ROOTS[8])));
        }
        let cons: [(usize, usize, &[&str]); 3] = [
            (
                2,
                8,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (m, n, want) in cons {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            assert_eq!(consistency_proof(&l[..n], m).unwrap(), want, "consistency {m} -> {n}");
            assert!(verify_consistency(
                m as u64,
                n as u64,
                &h(ROOTS[m]),
                &h(ROOTS[n]),
                &want
            ));
        }
    }

    #[test]
    fn the_frontier_agrees_with_the_tree_head_at_every_size_and_reports_completed_subtrees() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut f = Frontier::new();
        let mut nodes = std::collections::HashMap::new();
        assert_eq!(f.root(), root(&[]));
        for (i, l) in leaves.iter().enumerate() {
            f.push_leaf(*l, &mut |lvl, idx, h| {
                nodes.insert((lvl, idx), *h);
            });
            assert_eq!(f.root(), root(&leaves[..=i]), "size {}", i + 1);
            let again = Frontier::from_parts(f.size(), f.nodes().to_vec()).unwrap();
            assert_eq!(again.root(), f.root());
        }
        // every reported node is the head of the perfect subtree it names
        for ((lvl, idx), h) in &nodes {
            let lo = (*idx as usize) << lvl;
            assert_eq!(*h, root(&leaves[lo..lo + (1 << lvl)]));
        }
        // a tree rebuilt from perfect subtrees equals one built from leaves
        let mut g = Frontier::new();
        for (lvl, idx) in perfect_cover(0, 70) {
            let lo = (idx as usize) << lvl;
            assert!(g.push(lvl, root(&leaves[lo..lo + (1 << lvl)]), &mut |_, _, _| {}));
        }
        assert_eq!(g.root(), root(&leaves));
        // a subtree that does not align with the size is refused
        let mut h = Frontier::new();
        h.push_leaf(leaves[0], &mut |_, _, _| {});
        assert!(!h.push(2, leaves[1], &mut |_, _, _| {}));
        assert_eq!(h.size(), 1);
    }

    #[test]
    fn proofs_from_subtree_heads_equal_proofs_from_leaves() {
        let leaves: Vec<Hash> = (0u32..45).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut mth = |lo: u64, hi: u64| -> Result<Hash, ()> { Ok(root(&leaves[lo as usize..hi as usize])) };
        for n in 1..=leaves.len() {
            for i in 0..n {
                assert_eq!(
                    inclusion_path(i as u64, n as u64, &mut mth).unwrap(),
                    inclusion_proof(&leaves[..n], i)
                );
            }
            for m in 0..=n {
                assert_eq!(
                    consistency_path(m as u64, n as u64, &mut mth).unwrap(),
                    consistency_proof(&leaves[..n], m)
                );
            }
        }
    }

    #[test]
    fn every_proof_in_every_small_tree_verifies_and_tampering_fails() {
        let leaves: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        for n in 1..leaves.len() {
            let t = &leaves[..n];
            let r = root(t);
            for i in 0..n {
                let p = inclusion_proof(t, i).unwrap();
                assert!(p.len() <= 64 - (n as u64).leading_zeros() as usize, "O(log n) proof");
                assert!(verify_inclusion(&t[i], i as u64, n as u64, &p, &r), "{i} in {n}");
                // (A path can also fit another size with the same root; the
                // signed checkpoint binds size and root together.)
                assert!(!verify_inclusion(
                    &t[i],
                    i as u64,
                    n as u64,
                    &p,
                    &root(&leaves[..n + 1])
                ));
                if n > 1 {
                    assert!(!verify_inclusion(&t[(i + 1) % n], i as u64, n as u64, &p, &r));
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_inclusion(&t[i], i as u64, n as u64, &bad, &r));
                }
            }
            for m in 0..=n {
                let p = consistency_proof(t, m).unwrap();
                let old = root(&leaves[..m]);
                assert!(verify_consistency(m as u64, n as u64, &old, &r, &p), "{m} -> {n}");
                if m > 0 && m < n {
                    let mut wrong = old;
                    wrong[5] ^= 1;
                    assert!(!verify_consistency(m as u64, n as u64, &wrong, &r, &p));
                    assert!(!verify_consistency(m as u64, n as u64, &old, &root(&leaves[..n - 1]), &p) || n - 1 == m);
                }
            }
        }
    }
}
