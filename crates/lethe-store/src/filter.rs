//! Per-partition subject filters: a Bloom filter of the pseudonyms a
//! partition holds, kept in the catalog, so that a subject lookup opens only
//! the partitions that may hold the subject instead of every partition of
//! the tenant.

/// Bit positions per pseudonym.
const HASHES: usize = 4;

/// Size of a new filter (bytes): ~50 distinct subjects at a 2.6% false
/// positive rate before it grows (4× each time, rebuilt from the
/// partition's subject index). Small to start: with partitions shared by
/// many tenants' files, most partitions hold few records, and a filter per
/// partition is kept (and rewritten with each batch) in the catalog.
pub const INITIAL_BYTES: usize = 64;

/// A filter is rebuilt four times larger once this share of its bits is set.
const CROWDED: f64 = 0.4;

/// A Bloom filter over 32-byte pseudonyms (keyed hashes, so their bytes are
/// already uniformly distributed and serve as the bit positions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectFilter {
    bits: Vec<u8>,
    set: u64,
}

impl SubjectFilter {
    /// An empty filter of `bytes` bytes (a power of two).
    pub fn new(bytes: usize) -> Self {
        debug_assert!(bytes.is_power_of_two());
        SubjectFilter {
            bits: vec![0; bytes],
            set: 0,
        }
    }

    /// A filter as stored.
    pub fn from_bytes(bits: Vec<u8>) -> Option<Self> {
        if bits.is_empty() || !bits.len().is_power_of_two() {
            return None;
        }
        let set = bits.iter().map(|b| b.count_ones() as u64).sum();
        Some(SubjectFilter { bits, set })
    }

    /// A filter as stored with its `version`, if the bits match it: a
    /// damaged filter is never trusted (its partition is searched instead).
    pub fn checked(bits: Vec<u8>, version: i64) -> Option<Self> {
        (self::version(&bits) == version)
            .then(|| Self::from_bytes(bits))
            .flatten()
    }

    /// Of `pseudonyms`, those this filter says were never added.
    pub fn misses(&self, pseudonyms: &[[u8; 32]]) -> Vec<[u8; 32]> {
        pseudonyms.iter().filter(|p| !self.may_contain(p)).copied().collect()
    }

    /// The stored form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    fn positions(&self, p: &[u8; 32]) -> [usize; HASHES] {
        let mask = self.bits.len() * 8 - 1;
        let mut out = [0; HASHES];
        for (i, o) in out.iter_mut().enumerate() {
            let w = u64::from_le_bytes(p[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            *o = (w as usize) & mask;
        }
        out
    }

    /// Adds a pseudonym.
    pub fn insert(&mut self, p: &[u8; 32]) {
        for bit in self.positions(p) {
            let (byte, m) = (bit / 8, 1u8 << (bit % 8));
            if self.bits[byte] & m == 0 {
                self.bits[byte] |= m;
                self.set += 1;
            }
        }
    }

    /// False only if the pseudonym was never added.
    pub fn may_contain(&self, p: &[u8; 32]) -> bool {
        self.positions(p)
            .iter()
            .all(|&bit| self.bits[bit / 8] & (1 << (bit % 8)) != 0)
    }

    /// Whether so many bits are set that false positives become common.
    pub fn crowded(&self) -> bool {
        self.set as f64 > CROWDED * (self.bits.len() * 8) as f64
    }
}

/// A subject filter's version: a checksum of its bits, so a damaged filter
/// is noticed (and not trusted) when it is read.
pub fn version(bits: &[u8]) -> i64 {
    let h = lethe_core::merkle::leaf_hash(bits);
    (u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) >> 1) as i64
}

/// The smallest filter that is not crowded holding `subjects` (grown 4×
/// from [`INITIAL_BYTES`] until it fits).
pub fn sized_for<'a>(subjects: impl Iterator<Item = &'a [u8; 32]> + Clone) -> SubjectFilter {
    let mut bytes = INITIAL_BYTES;
    loop {
        let mut f = SubjectFilter::new(bytes);
        for a in subjects.clone() {
            f.insert(a);
        }
        if !f.crowded() {
            return f;
        }
        bytes *= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo(i: u32) -> [u8; 32] {
        // Spread like a keyed hash would.
        let mut out = [0u8; 32];
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for chunk in out.chunks_mut(8) {
            x ^= x >> 31;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        out
    }

    #[test]
    fn a_filter_never_misses_what_was_added_and_rarely_claims_what_was_not() {
        let mut f = SubjectFilter::new(8 << 10);
        for i in 0..5000 {
            f.insert(&pseudo(i));
        }
        assert!((0..5000).all(|i| f.may_contain(&pseudo(i))));
        let false_positives = (5000..105_000).filter(|&i| f.may_contain(&pseudo(i))).count();
        assert!(false_positives < 2000, "{false_positives} false positives in 100,000");
        assert!(!f.crowded());
        let again = SubjectFilter::from_bytes(f.as_bytes().to_vec()).unwrap();
        assert_eq!(again, f);
    }

    #[test]
    fn a_filter_says_when_it_is_crowded() {
        let mut f = SubjectFilter::new(1024);
        let mut n = 0;
        while !f.crowded() {
            f.insert(&pseudo(n));
            n += 1;
        }
        assert!((1000..1400).contains(&n), "crowded after {n}");
    }
}
