//! Record integrity: the canonical record header, its leaf hash, the
//! per-(tenant, stream) hash chain and the record MAC (DESIGN.md,
//! "Integrity").
//!
//! ```text
//! header_i = 0x02 ‖ len‖tenant ‖ len‖stream ‖ seq ‖ id ‖ ts ‖ received ‖ len‖scope ‖ class
//!            ‖ plain_digest ‖ personal_digest ‖ prev
//! leaf_i   = SHA-256(0x00 ‖ header_i)
//! chain_i  = SHA-256(0x02 ‖ chain_{i-1} ‖ leaf_i)        chain_0 = genesis(tenant, stream)
//! mac_i    = HMAC-SHA256(K_mac(tenant), leaf_i)
//! ```
//!
//! The header carries digests of the body, never the body. The body has two
//! parts that retention removes separately, so each has its own digest:
//! the plain fields (removed by delete) and the personal part — pseudonym,
//! data key id and the per-field digests of the encrypted fields' ciphertexts
//! (removed by anonymize and by delete). A row whose part is removed keeps
//! that part's digest, so its header still recomputes, its MAC still checks
//! and the chain through it still links; and the digests reveal nothing
//! about the person (ciphertexts carry random nonces; the personal digest
//! also covers the record id, so two records of one subject never share it).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::crypto::SecretKey;
use crate::merkle::Hash;

/// Header encoding version.
pub const HEADER_VERSION: u8 = 2;

/// `SHA-256(data)`.
pub fn digest(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// Digest of the stored plain-fields JSON: `SHA-256(0x06 ‖ plain)`.
pub fn plain_digest(plain: &str) -> Hash {
    let mut h = Sha256::new();
    h.update([6u8]);
    h.update(plain.as_bytes());
    h.finalize().into()
}

/// Digest of a record's personal part: `SHA-256(0x05 ‖ id ‖ pseudonym? ‖
/// key_id? ‖ n ‖ (len‖field ‖ SHA-256(ciphertext))*)`, over the encrypted
/// fields in body order.
pub fn personal_digest<'a>(
    id: &[u8; 16],
    pseudonym: Option<&[u8; 32]>,
    key_id: Option<i64>,
    fields: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>,
) -> Hash {
    let mut h = Sha256::new();
    h.update([5u8]);
    h.update(id);
    match pseudonym {
        Some(p) => {
            h.update([1u8]);
            h.update(p);
        }
        None => h.update([0u8]),
    }
    match key_id {
        Some(k) => {
            h.update([1u8]);
            h.update(k.to_be_bytes());
        }
        None => h.update([0u8]),
    }
    h.update((fields.len() as u32).to_be_bytes());
    for (name, ct) in fields {
        h.update((name.len() as u32).to_be_bytes());
        h.update(name.as_bytes());
        h.update(Sha256::digest(ct));
    }
    h.finalize().into()
}

/// The two body digests a header commits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digests {
    /// [`plain_digest`] of the plain fields.
    pub plain: Hash,
    /// [`personal_digest`] of the personal part.
    pub personal: Hash,
}

/// Everything about a record that its chain commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// Tenant id.
    pub tenant: &'a str,
    /// Stream as `name:version`.
    pub stream: &'a str,
    /// Position in the (tenant, stream) sequence, from 1.
    pub seq: u64,
    /// Record id (UUID bytes).
    pub id: [u8; 16],
    /// Event time, µs.
    pub ts_us: i64,
    /// Received time, µs.
    pub received_us: i64,
    /// Scope.
    pub scope: &'a str,
    /// Classification code.
    pub classification: u8,
    /// Body digests.
    pub digests: Digests,
    /// The chain hash of the previous record (the genesis hash for seq 1).
    pub prev: Hash,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

impl Header<'_> {
    /// Appends the canonical encoding to `out`: version, then every field
    /// length-prefixed or fixed-width, big-endian, in declaration order.
    /// Unambiguous: two different headers never encode the same.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(HEADER_VERSION);
        put_bytes(out, self.tenant.as_bytes());
        put_bytes(out, self.stream.as_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.ts_us.to_be_bytes());
        out.extend_from_slice(&self.received_us.to_be_bytes());
        put_bytes(out, self.scope.as_bytes());
        out.push(self.classification);
        out.extend_from_slice(&self.digests.plain);
        out.extend_from_slice(&self.digests.personal);
        out.extend_from_slice(&self.prev);
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(200);
        self.encode_into(&mut out);
        out
    }

    /// `SHA-256(0x00 ‖ header)`: the record's leaf in the chain and in the
    /// Merkle checkpoints.
    pub fn leaf(&self) -> Hash {
        crate::merkle::leaf_hash(&self.encode())
    }
}

/// The chain hash before the first record of a (tenant, stream).
pub fn genesis(tenant: &str, stream: &str) -> Hash {
    let mut h = Sha256::new();
    h.update(b"lethe/chain/v1\0");
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(stream.as_bytes());
    h.finalize().into()
}

/// `SHA-256(0x02 ‖ prev ‖ leaf)`.
pub fn chain(prev: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([2u8]);
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

/// A tenant's record MAC key, keyed once (the HMAC inner and outer pads are
/// hashed at construction, not per record).
#[derive(Clone)]
pub struct RecordMac(Hmac<Sha256>);

impl std::fmt::Debug for RecordMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordMac([redacted])")
    }
}

impl RecordMac {
    /// Keys the MAC.
    pub fn new(key: &SecretKey) -> Self {
        RecordMac(<Hmac<Sha256> as Mac>::new_from_slice(key.expose()).expect("any key length"))
    }

    /// `HMAC-SHA256(key, leaf)`.
    pub fn mac(&self, leaf: &Hash) -> Hash {
        let mut m = self.0.clone();
        m.update(leaf);
        m.finalize().into_bytes().into()
    }
}

/// `HMAC-SHA256(key, leaf)`.
pub fn mac(key: &SecretKey, leaf: &Hash) -> Hash {
    RecordMac::new(key).mac(leaf)
}

/// Where a chain of headers stops verifying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// A sequence number is missing or out of order.
    #[error("seq {found} where {expected} was expected")]
    Gap {
        /// The next sequence number the chain needed.
        expected: u64,
        /// What came instead.
        found: u64,
    },
    /// A header does not name the chain hash of the record before it.
    #[error("seq {0}: previous-hash link does not match")]
    Link(u64),
    /// A MAC does not match its leaf.
    #[error("seq {0}: MAC does not match")]
    Mac(u64),
}

/// Walks `(header, mac)` pairs of one chain in sequence order from `start`
/// (1, or the record after a trusted anchor whose chain hash is `prev`), and
/// returns the chain hash after the last one, or where it breaks.
pub fn verify_chain<'a, 'h: 'a>(
    key: &SecretKey,
    mut prev: Hash,
    start: u64,
    records: impl IntoIterator<Item = (&'a Header<'h>, &'a Hash)>,
) -> Result<Hash, ChainBreak> {
    let m = RecordMac::new(key);
    for (expected, (h, tag)) in (start..).zip(records) {
        if h.seq != expected {
            return Err(ChainBreak::Gap { expected, found: h.seq });
        }
        if h.prev != prev {
            return Err(ChainBreak::Link(h.seq));
        }
        let leaf = h.leaf();
        if m.mac(&leaf) != *tag {
            return Err(ChainBreak::Mac(h.seq));
        }
        prev = chain(&prev, &leaf);
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64, prev: Hash) -> Header<'static> {
        let id = [seq as u8; 16];
        Header {
            tenant: "acme",
            stream: "audit:1",
            seq,
            id,
            ts_us: 1_000 + seq as i64,
            received_us: 2_000,
            scope: "web",
            classification: 1,
            digests: Digests {
                plain: plain_digest("{\"action\":\"login\"}"),
                personal: personal_digest(
                    &id,
                    Some(&[7; 32]),
                    Some(42),
                    [("subject", b"ct1".as_slice()), ("details", b"ct2".as_slice())].into_iter(),
                ),
            },
            prev,
        }
    }

    fn build(key: &SecretKey, n: u64) -> Vec<(Header<'static>, Hash)> {
        let mut prev = genesis("acme", "audit:1");
        (1..=n)
            .map(|s| {
                let h = header(s, prev);
                let leaf = h.leaf();
                prev = chain(&prev, &leaf);
                let m = mac(key, &leaf);
                (h, m)
            })
            .collect()
    }

    fn check(key: &SecretKey, recs: &[(Header<'static>, Hash)]) -> Result<Hash, ChainBreak> {
        verify_chain(key, genesis("acme", "audit:1"), 1, recs.iter().map(|(h, m)| (h, m)))
    }

    #[test]
    fn every_header_field_changes_the_leaf() {
        let base = header(1, [0; 32]);
        let variants: Vec<Header> = vec![
            Header {
                tenant: "acmf",
                ..base.clone()
            },
            Header {
                stream: "audit:2",
                ..base.clone()
            },
            Header { seq: 2, ..base.clone() },
            Header {
                id: [9; 16],
                ..base.clone()
            },
            Header {
                ts_us: 5,
                ..base.clone()
            },
            Header {
                received_us: 5,
                ..base.clone()
            },
            Header {
                scope: "api",
                ..base.clone()
            },
            Header {
                classification: 3,
                ..base.clone()
            },
            Header {
                digests: Digests {
                    plain: plain_digest("{}"),
                    ..base.digests
                },
                ..base.clone()
            },
            Header {
                digests: Digests {
                    personal: personal_digest(&base.id, None, Some(42), std::iter::empty()),
                    ..base.digests
                },
                ..base.clone()
            },
            Header {
                prev: [1; 32],
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.leaf(), base.leaf(), "{v:?}");
        }
        // length prefixes keep adjacent strings from running together
        let a = Header {
            tenant: "ab",
            stream: "c:1",
            ..base.clone()
        };
        let b = Header {
            tenant: "a",
            stream: "bc:1",
            ..base
        };
        assert_ne!(a.encode(), b.encode());
    }

    #[test]
    fn the_personal_digest_depends_on_every_part_and_never_repeats_across_records() {
        let f = [("subject", b"ct".as_slice())];
        let base = personal_digest(&[1; 16], Some(&[7; 32]), Some(1), f.into_iter());
        assert_ne!(base, personal_digest(&[2; 16], Some(&[7; 32]), Some(1), f.into_iter()));
        assert_ne!(base, personal_digest(&[1; 16], None, Some(1), f.into_iter()));
        assert_ne!(base, personal_digest(&[1; 16], Some(&[7; 32]), None, f.into_iter()));
        assert_ne!(
            base,
            personal_digest(&[1; 16], Some(&[7; 32]), Some(1), std::iter::empty())
        );
        let g = [("subject", b"cu".as_slice())];
        assert_ne!(base, personal_digest(&[1; 16], Some(&[7; 32]), Some(1), g.into_iter()));
    }

    #[test]
    fn an_intact_chain_verifies_and_ends_at_the_head() {
        let key = SecretKey::generate();
        let recs = build(&key, 50);
        let head = check(&key, &recs).unwrap();
        let last = &recs[49].0;
        assert_eq!(head, chain(&last.prev, &last.leaf()));
    }

    #[test]
    fn removal_reordering_insertion_and_forged_macs_are_located() {
        let key = SecretKey::generate();
        let recs = build(&key, 10);
        let mut removed = recs.clone();
        removed.remove(4);
        assert_eq!(check(&key, &removed), Err(ChainBreak::Gap { expected: 5, found: 6 }));
        let mut swapped = recs.clone();
        swapped.swap(2, 3);
        assert_eq!(check(&key, &swapped), Err(ChainBreak::Gap { expected: 3, found: 4 }));
        let mut edited = recs.clone();
        edited[6].0.ts_us += 1;
        assert_eq!(check(&key, &edited), Err(ChainBreak::Mac(7)));
        let mut relinked = recs.clone();
        relinked[6].0.prev = [0; 32];
        assert_eq!(check(&key, &relinked), Err(ChainBreak::Link(7)));
        // a forger without the MAC key cannot make a record that verifies
        let forger = SecretKey::generate();
        let mut forged = recs.clone();
        forged[3].1 = mac(&forger, &forged[3].0.leaf());
        assert_eq!(check(&key, &forged), Err(ChainBreak::Mac(4)));
    }
}
