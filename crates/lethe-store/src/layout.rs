//! Where a chain's records are: its head, and its segments — runs of
//! sequence numbers stored together — with the partition each lives in.

use super::*;

/// A contiguous run of one chain's sequence numbers stored in one
/// partition, with the chain hashes at its ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// First sequence number.
    pub first: u64,
    /// Last sequence number.
    pub last: u64,
    /// Chain hash before `first`.
    #[serde(with = "hex32")]
    pub prev: Hash,
    /// Chain hash after `last`.
    #[serde(with = "hex32")]
    pub chain: Hash,
}

/// The state of one (tenant, stream) chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Tenant.
    pub tenant: String,
    /// Stream as `name:version`.
    pub stream: String,
    /// Records appended so far (the last sequence number).
    pub size: u64,
    /// Chain hash after the last record.
    pub hash: Hash,
    /// RFC 6962 tree head over all leaves so far.
    pub root: Hash,
    /// Size covered by the last signed checkpoint.
    pub sealed: u64,
    /// When the last checkpoint was taken (µs).
    pub sealed_us: i64,
    /// Why the catalog's state of this chain cannot be trusted (its Merkle
    /// frontier does not fit its size): nothing may be signed for it, and
    /// `verify` reports it. `root` is then all zeros.
    pub damaged: Option<String>,
}

/// Where a chain segment lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentAt {
    /// The run.
    pub segment: Segment,
    /// Partition id.
    pub partition: i64,
    /// Partition period start (µs).
    pub start_us: i64,
}
