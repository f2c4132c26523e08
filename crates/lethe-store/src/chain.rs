//! A (tenant, stream) chain's running state as any backend appends to it:
//! sealing the next record (sequence number, previous chain hash, MAC of
//! its leaf) and advancing the chain hash and Merkle frontier — the same
//! arithmetic whatever keeps the rows.

use lethe_core::integrity::{self, Digests, Header, RecordMac};
use lethe_core::merkle::{self, Frontier, Hash};

use crate::{NewRecord, Result, StoreError};

/// The largest sequence number a chain may reach (68.7 billion records):
/// the embedded store keys rows by partition and sequence number in 64 bits.
pub const MAX_SEQ: u64 = (1 << 36) - 1;

/// A chain's running state while a batch is appended to it.
#[derive(Debug, Clone)]
pub struct ChainState {
    /// Last sequence number assigned.
    pub seq: u64,
    /// Chain hash after it.
    pub hash: Hash,
    /// Merkle compact range over all leaves so far.
    pub frontier: Frontier,
    /// Subtree heads completed by this batch that are kept: `(level, index, head)`.
    pub nodes: Vec<(u32, u64, Hash)>,
}

/// A record sealed as the next of its chain, not yet counted in it.
#[derive(Debug, Clone, Copy)]
pub struct Sealed {
    /// Its sequence number.
    pub seq: u64,
    /// The chain hash before it.
    pub prev: Hash,
    /// Its leaf hash.
    pub leaf: Hash,
    /// HMAC of the leaf under the tenant's record MAC key.
    pub mac: Hash,
}

/// Whether a completed Merkle subtree at `level` is kept in the catalog:
/// 256-leaf chunks and every 16× larger subtree, so that any subtree head a
/// proof needs is at most 16 stored heads (or 256 leaves) away.
pub fn kept_level(level: u32) -> bool {
    level >= 8 && level.is_multiple_of(4)
}

impl ChainState {
    /// The state of a chain with no record yet.
    pub fn genesis(tenant: &str, stream: &str) -> Self {
        ChainState {
            seq: 0,
            hash: integrity::genesis(tenant, stream),
            frontier: Frontier::new(),
            nodes: Vec::new(),
        }
    }

    /// A chain's state from what a catalog stores: head sequence number,
    /// head hash and the frontier's nodes concatenated; an error naming the
    /// chain when they do not fit together.
    pub fn from_stored(tenant: &str, stream: &str, seq: i64, hash: &[u8], frontier: &[u8]) -> Result<Self> {
        let bad = || StoreError::Corrupt(format!("chain state of {tenant}/{stream}"));
        Ok(ChainState {
            seq: seq as u64,
            hash: hash.try_into().map_err(|_| bad())?,
            frontier: Frontier::from_parts(
                seq as u64,
                frontier
                    .chunks(32)
                    .map(|c| c.try_into().map_err(|_| bad()))
                    .collect::<Result<_>>()?,
            )
            .ok_or_else(bad)?,
            nodes: Vec::new(),
        })
    }

    /// The frontier's nodes concatenated, as catalogs store them.
    pub fn frontier_bytes(&self) -> Vec<u8> {
        self.frontier.nodes().concat()
    }

    /// Seals `r` as the next record of this chain (`buf` is scratch space
    /// for the header); [`ChainState::advance`] then counts it in.
    pub fn seal(
        &self,
        tenant: &str,
        stream: &str,
        r: &NewRecord,
        d: &Digests,
        mac: &RecordMac,
        buf: &mut Vec<u8>,
    ) -> Result<Sealed> {
        let seq = self.seq + 1;
        if seq > MAX_SEQ {
            return Err(StoreError::Corrupt(format!(
                "chain {tenant}/{stream} is full ({MAX_SEQ} records)"
            )));
        }
        let header = Header {
            tenant,
            stream,
            seq,
            id: r.id,
            ts_us: r.ts_us,
            received_us: r.received_us,
            scope: &r.group.scope,
            classification: r.group.classification.code(),
            digests: *d,
            prev: self.hash,
        };
        buf.clear();
        header.encode_into(buf);
        let leaf = merkle::leaf_hash(buf);
        Ok(Sealed {
            seq,
            prev: self.hash,
            leaf,
            mac: mac.mac(&leaf),
        })
    }

    /// Counts a sealed record in: the chain hash and frontier move on, and
    /// kept subtree heads it completes are noted in `nodes`.
    pub fn advance(&mut self, s: &Sealed) {
        self.seq = s.seq;
        self.hash = integrity::chain(&self.hash, &s.leaf);
        let nodes = &mut self.nodes;
        self.frontier.push_leaf(s.leaf, &mut |lvl, idx, h| {
            if kept_level(lvl) {
                nodes.push((lvl, idx, *h));
            }
        });
    }
}
