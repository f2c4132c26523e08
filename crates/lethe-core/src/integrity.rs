//! Record integrity: the canonical record header, its leaf hash, the
//! per-(tenant, stream) hash chain and the record MAC (DESIGN.md,
//! "Integrity").
//!
//! ```text
//! leaf_i  = SHA-256(0x00 ‖ header_i)
//! chain_i = SHA-256(0x02 ‖ chain_{i-1} ‖ leaf_i)        chain_0 = genesis(tenant, stream)
//! mac_i   = HMAC-SHA256(K_mac(tenant), leaf_i)
//! ```
//!
//! The header carries digests of the body, never the body: a digest of an
//! encrypted field is over its ciphertext (random nonce inside), and plain
//! fields are not personal. So removing or anonymizing a body leaves a header
//! that still verifies, and the header reveals nothing about the person.
//!
//! Groundwork for issue #3: the store does not write these yet.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::crypto::SecretKey;
use crate::merkle::Hash;

/// Header encoding version.
pub const HEADER_VERSION: u8 = 1;

/// `SHA-256(data)`.
pub fn digest(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// Everything about a record that its chain commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Tenant id.
    pub tenant: String,
    /// Stream as `name:version`.
    pub stream: String,
    /// Position in the (tenant, stream) sequence, from 1.
    pub seq: u64,
    /// Record id (UUID bytes).
    pub id: [u8; 16],
    /// Event time, µs.
    pub ts_us: i64,
    /// Received time, µs.
    pub received_us: i64,
    /// Scope.
    pub scope: String,
    /// Classification code.
    pub classification: u8,
    /// Subject pseudonym, if any.
    pub pseudonym: Option<[u8; 32]>,
    /// Data key id, if the record has a body.
    pub key_id: Option<i64>,
    /// `SHA-256` of the stored plain-fields JSON.
    pub plain_digest: Hash,
    /// `(field name, SHA-256 of its ciphertext)` for each encrypted field, in body order.
    pub field_digests: Vec<(String, Hash)>,
    /// The chain hash of the previous record (the genesis hash for seq 1).
    pub prev: Hash,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

impl Header {
    /// The canonical encoding: version, then every field length-prefixed or
    /// fixed-width, big-endian, in declaration order. Unambiguous: two
    /// different headers never encode the same.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + 40 * self.field_digests.len());
        out.push(HEADER_VERSION);
        put_bytes(&mut out, self.tenant.as_bytes());
        put_bytes(&mut out, self.stream.as_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.ts_us.to_be_bytes());
        out.extend_from_slice(&self.received_us.to_be_bytes());
        put_bytes(&mut out, self.scope.as_bytes());
        out.push(self.classification);
        match &self.pseudonym {
            Some(p) => {
                out.push(1);
                out.extend_from_slice(p);
            }
            None => out.push(0),
        }
        match self.key_id {
            Some(k) => {
                out.push(1);
                out.extend_from_slice(&k.to_be_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.plain_digest);
        out.extend_from_slice(&(self.field_digests.len() as u32).to_be_bytes());
        for (name, d) in &self.field_digests {
            put_bytes(&mut out, name.as_bytes());
            out.extend_from_slice(d);
        }
        out.extend_from_slice(&self.prev);
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

/// `HMAC-SHA256(key, leaf)`.
pub fn mac(key: &SecretKey, leaf: &Hash) -> Hash {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).expect("any key length");
    m.update(leaf);
    m.finalize().into_bytes().into()
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
pub fn verify_chain<'a>(
    key: &SecretKey,
    mut prev: Hash,
    start: u64,
    records: impl IntoIterator<Item = (&'a Header, &'a Hash)>,
) -> Result<Hash, ChainBreak> {
    for (expected, (h, m)) in (start..).zip(records) {
        if h.seq != expected {
            return Err(ChainBreak::Gap { expected, found: h.seq });
        }
        if h.prev != prev {
            return Err(ChainBreak::Link(h.seq));
        }
        let leaf = h.leaf();
        if mac(key, &leaf) != *m {
            return Err(ChainBreak::Mac(h.seq));
        }
        prev = chain(&prev, &leaf);
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64, prev: Hash) -> Header {
        Header {
            tenant: "acme".into(),
            stream: "audit:1".into(),
            seq,
            id: [seq as u8; 16],
            ts_us: 1_000 + seq as i64,
            received_us: 2_000,
            scope: "web".into(),
            classification: 1,
            pseudonym: Some([7; 32]),
            key_id: Some(42),
            plain_digest: digest(b"{\"action\":\"login\"}"),
            field_digests: vec![("subject".into(), digest(b"ct1")), ("details".into(), digest(b"ct2"))],
            prev,
        }
    }

    fn build(key: &SecretKey, n: u64) -> Vec<(Header, Hash)> {
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

    fn check(key: &SecretKey, recs: &[(Header, Hash)]) -> Result<Hash, ChainBreak> {
        verify_chain(key, genesis("acme", "audit:1"), 1, recs.iter().map(|(h, m)| (h, m)))
    }

    #[test]
    fn every_header_field_changes_the_leaf() {
        let base = header(1, [0; 32]);
        let variants: Vec<Header> = vec![
            Header {
                tenant: "acmf".into(),
                ..base.clone()
            },
            Header {
                stream: "audit:2".into(),
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
                scope: "api".into(),
                ..base.clone()
            },
            Header {
                classification: 3,
                ..base.clone()
            },
            Header {
                pseudonym: None,
                ..base.clone()
            },
            Header {
                key_id: Some(43),
                ..base.clone()
            },
            Header {
                plain_digest: digest(b"x"),
                ..base.clone()
            },
            Header {
                field_digests: vec![],
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
            tenant: "ab".into(),
            stream: "c:1".into(),
            ..base.clone()
        };
        let b = Header {
            tenant: "a".into(),
            stream: "bc:1".into(),
            ..base
        };
        assert_ne!(a.encode(), b.encode());
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
