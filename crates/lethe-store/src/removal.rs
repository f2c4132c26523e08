//! What retention and erasure hand to the store and get back: targets, exact
//! removal plans per chain, purge selections and what was applied.

use super::*;

/// One retention decision handed to the store: in `key`, records with event
/// time before `cutoff_us` get `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionTarget {
    /// The group.
    pub key: GroupKey,
    /// Name of the rule that decided it.
    pub rule: String,
    /// Delete or anonymize.
    pub action: Action,
    /// Expiry cutoff (µs).
    pub cutoff_us: i64,
}

/// What retention does (plan) or did (apply) to one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionEffect {
    /// The decision.
    pub target: RetentionTarget,
    /// Records deleted or anonymized.
    pub records: u64,
    /// Records the rule would remove but a legal hold keeps.
    pub held: u64,
    /// Disk bytes returned (apply) or that will be (plan): whole partitions removed.
    pub bytes_freed: u64,
    /// Partitions removed whole.
    pub partitions_dropped: u64,
}

/// The (scope, classification) groups a partition held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartGroupRef {
    /// Scope.
    pub scope: String,
    /// Classification code.
    pub class: u8,
}

/// A partition retention removes whole: its file goes, its segments stay
/// explained by the receipt that carries this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedPartition {
    /// Period start (µs).
    pub start_us: i64,
    /// Period end (µs, exclusive).
    pub end_us: i64,
    /// Groups it held (every one expired as a whole).
    pub groups: Vec<PartGroupRef>,
    /// Its runs of the chain.
    pub segments: Vec<Segment>,
}

/// Records of one partition that retention deletes (keeping their headers)
/// or anonymizes, by sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowRemoval {
    /// Period start of the partition (µs).
    pub partition_start_us: i64,
    /// Delete or anonymize.
    pub action: Action,
    /// Inclusive ranges of sequence numbers.
    pub seqs: Vec<[u64; 2]>,
}

/// Sorts inclusive sequence ranges and merges those that overlap or touch.
pub fn merge_ranges(mut ranges: Vec<[u64; 2]>) -> Vec<[u64; 2]> {
    ranges.sort();
    let mut out: Vec<[u64; 2]> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(l) if r[0] <= l[1].saturating_add(1) => l[1] = l[1].max(r[1]),
            _ => out.push(r),
        }
    }
    out
}

/// Everything retention removes from one (tenant, stream) chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainRemoval {
    /// Tenant.
    pub tenant: String,
    /// Stream as `name:version`.
    pub stream: String,
    /// Partitions removed whole.
    pub dropped: Vec<DroppedPartition>,
    /// Row-level work.
    pub rows: Vec<RowRemoval>,
}

impl ChainRemoval {
    /// Records its row-level work lists (tombstoned or anonymized), by
    /// sequence number; partitions dropped whole not included.
    pub fn rows_listed(&self) -> u64 {
        self.rows
            .iter()
            .flat_map(|r| r.seqs.iter())
            .map(|r| r[1] + 1 - r[0])
            .sum()
    }
}

/// An exact removal plan: the effect per target and, per chain, exactly
/// which partitions and sequence numbers go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    /// Effect per target, in target order.
    pub effects: Vec<RetentionEffect>,
    /// What goes, per chain.
    pub chains: Vec<ChainRemoval>,
}

/// Which records a purge (an erasure request) selects: always one tenant,
/// narrowed by subjects, stream, scope and event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Tenant.
    pub tenant: TenantId,
    /// Only these subjects (keyed pseudonyms); empty means every record.
    pub pseudonyms: Vec<[u8; 32]>,
    /// Only this stream.
    pub stream: Option<StreamId>,
    /// Only this scope.
    pub scope: Option<String>,
    /// Event time ≥ this (µs).
    pub since_us: Option<i64>,
    /// Event time < this (µs).
    pub until_us: Option<i64>,
    /// Delete (keep a tombstone) or anonymize (keep the event).
    pub action: Action,
    /// Find the subjects' records without the per-partition subject
    /// filters (every partition in range is looked up): what a purge's
    /// verification uses, so that it does not rely on the index that found
    /// the rows.
    pub exhaustive: bool,
    /// Only records stored up to these chain heads (stream `name:version`
    /// → last sequence number; a stream not named had none): what a
    /// purge's check uses, so that records a concurrent ingest stores
    /// after the purge began are reported as later, not as left behind.
    /// `None`: everything stored now.
    pub stored_up_to: Option<std::collections::BTreeMap<String, u64>>,
}

/// What a purge selects in one (stream, scope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SelectedGroup {
    /// Stream as `name:version`.
    pub stream: String,
    /// Scope.
    pub scope: String,
    /// Records the purge removes.
    pub records: u64,
    /// Records selected but kept by a legal hold.
    pub held: u64,
    /// Bytes of those records' stored fields (plain and encrypted).
    pub bytes: u64,
    /// Oldest event time among them (µs).
    pub oldest_us: Option<i64>,
    /// Newest event time among them (µs).
    pub newest_us: Option<i64>,
}

/// The exact effect of a [`Selection`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selected {
    /// Counts per (stream, scope), in that order.
    pub groups: Vec<SelectedGroup>,
    /// Exactly the rows that go, per chain (row-level work only).
    pub chains: Vec<ChainRemoval>,
    /// Subjects (of the selection's pseudonyms) with at least one record selected or held.
    pub found: Vec<[u8; 32]>,
    /// Subjects with at least one held record.
    pub held_subjects: Vec<[u8; 32]>,
    /// The chain head of every stream with a partition in range when the
    /// selection was made: the bound ([`Selection::stored_up_to`]) that
    /// checks this selection later.
    pub heads: std::collections::BTreeMap<String, u64>,
    /// Records the selection matched that were stored after
    /// [`Selection::stored_up_to`] (not counted in `groups`, not listed).
    pub later: u64,
}

/// What [`Store::apply_removal`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// Records deleted (whole partitions and tombstoned rows).
    pub deleted: u64,
    /// Records anonymized.
    pub anonymized: u64,
    /// Partitions removed whole.
    pub partitions_dropped: u64,
    /// Disk bytes returned.
    pub bytes_freed: u64,
}
