//! Storage for Lethe: the domain-level [`Store`] trait, the embedded SQLite
//! backend, and the conformance suite every backend must pass.
//!
//! Nothing above this crate sees a table, a file or a SQL statement: callers
//! speak in records, groups, retention targets and wrapped keys.

pub mod chain;
pub mod crashpoint;
mod filter;
mod plan;
pub mod postgres;
pub mod sqlite;
#[cfg(feature = "testsuite")]
pub mod testsuite;

pub mod row;

use lethe_core::checkpoint::hex32;
use lethe_core::crypto::SecretKey;
use lethe_core::hold::HoldScope;
use lethe_core::integrity::Digests;
use lethe_core::merkle::Hash;
use lethe_core::policy::{Action, GroupKey};
use lethe_core::{StreamId, TenantId};
use serde::{Deserialize, Serialize};

pub use lethe_core::ledger::Entry as LedgerEntry;
pub use sqlite::SqliteStore;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database engine reported an error; `retryable` says whether the
    /// same call may succeed later (the engine was busy or locked by
    /// another writer past the wait), as opposed to a fault that a retry
    /// only repeats.
    #[error("storage backend: {source}")]
    Backend {
        /// The engine's error, kept for `source()` chains.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
        /// Whether trying again can help.
        retryable: bool,
    },
    /// The caller broke the trait's contract (a batch without a key it
    /// needs, a restoration this store is not loading): a bug above the
    /// store, never retryable.
    #[error("store misused: {0}")]
    Misuse(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A new data key collided with one another writer stored first; the
    /// batch was not stored and must be prepared again.
    #[error("data key for this reference was created concurrently; retry the batch")]
    KeyConflict,
    /// Stored data is not what this version expects, or the catalog
    /// contradicts itself (nothing was changed).
    #[error("store is corrupt or from another version: {0}")]
    Corrupt(String),
    /// Committed data is gone from disk (a partition file was removed):
    /// reported, never silently replaced.
    #[error("committed data is missing: {0}")]
    Lost(String),
    /// A data key the batch was encrypted under was destroyed (by an
    /// erasure) after the batch was prepared; nothing was stored and the
    /// batch must be prepared again with live keys.
    #[error("a data key of this batch was destroyed by an erasure; retry the batch")]
    KeyDestroyed,
}

impl StoreError {
    /// Whether trying again (after preparing the batch again) can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::KeyConflict | StoreError::KeyDestroyed => true,
            StoreError::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for storage operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Identifies a stored data key.
pub type KeyId = i64;

/// A record ready to be stored: validated, capture mode applied, personal
/// fields already encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// Record id (UUID bytes); ingesting the same id again is a no-op.
    pub id: [u8; 16],
    /// Tenant, stream, scope and classification.
    pub group: GroupKey,
    /// Event time, µs since the epoch.
    pub ts_us: i64,
    /// Time the vault received it, µs since the epoch.
    pub received_us: i64,
    /// Keyed pseudonym of the subject, for lookup.
    pub pseudonym: Option<[u8; 32]>,
    /// Data key the body is encrypted under.
    pub key_id: Option<KeyId>,
    /// Plain fields as a JSON object.
    pub plain: String,
    /// Encrypted subject and personal fields (see `lethe_core::record::body`).
    pub body: Option<Vec<u8>>,
}

/// A record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Position in its (tenant, stream) sequence, from 1.
    pub seq: u64,
    /// Everything that was appended (pseudonym, key and body cleared once anonymized).
    pub record: NewRecord,
    /// Whether retention or erasure anonymized it.
    pub anonymized: bool,
    /// The row's seal as stored, for checking it on read (`None` for
    /// restored copies, which are outside every chain).
    pub seal: Option<RowSeal>,
}

/// How a stored row is sealed, as stored (see `lethe_core::integrity`):
/// what a reader needs, besides the record, to rebuild its header and check
/// its MAC — so a row edited, swapped or copied in from another tenant is
/// never shown as genuine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSeal {
    /// Chain hash before the record (32 bytes when intact).
    pub prev: Vec<u8>,
    /// HMAC of its leaf (32 bytes when intact).
    pub mac: Vec<u8>,
    /// Digests of the parts removed (anonymized rows).
    pub redacted: Option<Vec<u8>>,
}

/// What one [`Store::append`] writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Data keys the records use that may not be stored yet (stored before
    /// the records). A key already stored with the same id, tenant and
    /// reference is left as it is: two batches in flight may both carry
    /// the key one writer made, and whichever commits first stores it. A
    /// different key for a reference that has one is a
    /// [`StoreError::KeyConflict`]; a carried key since destroyed is
    /// [`StoreError::KeyDestroyed`].
    pub new_keys: Vec<StoredKey>,
    /// The records.
    pub records: Vec<NewRecord>,
    /// The body digests of each record, in the same order (computed by the
    /// caller, off the store's thread); empty means the store computes them.
    pub digests: Vec<Digests>,
    /// The record MAC key of every tenant in the batch: the store seals
    /// each record as it assigns its sequence number.
    pub mac_keys: Vec<(TenantId, SecretKey)>,
    /// Records counted but not stored (capture mode `none`).
    pub drops: Vec<CaptureDrop>,
    /// How to record the keys of `new_keys` this append actually stores:
    /// one `key.data_created` entry per tenant (see
    /// `lethe_core::ledger::Draft::keys_created`), in the same catalog
    /// commit, so a key never exists without its entry and none is listed
    /// twice. Required when `new_keys` is not empty.
    pub key_ledger: Option<KeyLedger>,
    /// Which records expire together: the expiry class of each (tenant,
    /// stream) in the batch — a short name such as the window and action of
    /// the policy that will remove them (`[A-Za-z0-9_-]`, at most 48
    /// characters; anything else is hashed into one). A backend keeps the
    /// records of one stream, period and class together whatever their
    /// tenant, so that they can be dropped whole when they expire; a
    /// (tenant, stream) not listed is in the class `default`. Only a
    /// placement hint: retention decides per record, wherever it is kept,
    /// so a policy changed later is still applied exactly.
    pub placement: Vec<(TenantId, StreamId, String)>,
}

/// Who records a batch's new data keys in the ledger, when, and the key
/// that seals the entries (see [`Batch::key_ledger`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLedger {
    /// The ledger's sealing key.
    pub key: SecretKey,
    /// The actor named in the entries.
    pub actor: String,
    /// Their time (µs).
    pub ts_us: i64,
}

/// A data key as stored: wrapped, or gone once destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id.
    pub id: KeyId,
    /// Owning tenant.
    pub tenant: TenantId,
    /// What the key is for (opaque to the store).
    pub key_ref: Vec<u8>,
    /// The wrapped key; `None` once destroyed.
    pub wrapped: Option<Vec<u8>>,
}

/// What [`Store::append`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AppendReport {
    /// Records written.
    pub inserted: u64,
    /// Records whose id was already stored (no-ops).
    pub duplicates: u64,
    /// Keys of `new_keys` this append stored (a key carried by several
    /// batches counts for the one whose copy was stored).
    pub keys_stored: u64,
}

/// Which records [`Store::query`] visits.
#[derive(Debug, Clone)]
pub struct RecordQuery {
    /// Tenant (always exactly one).
    pub tenant: TenantId,
    /// Stream, or all.
    pub stream: Option<StreamId>,
    /// Scope, or all.
    pub scope: Option<String>,
    /// Only the subject with this pseudonym.
    pub pseudonym: Option<[u8; 32]>,
    /// Event time ≥ this (µs).
    pub since_us: Option<i64>,
    /// Event time < this (µs).
    pub until_us: Option<i64>,
    /// At most this many records.
    pub limit: Option<usize>,
    /// Oldest first instead of newest first.
    pub ascending: bool,
}

impl RecordQuery {
    /// Everything of one tenant, newest first.
    pub fn tenant(tenant: TenantId) -> Self {
        RecordQuery {
            tenant,
            stream: None,
            scope: None,
            pseudonym: None,
            since_us: None,
            until_us: None,
            limit: None,
            ascending: false,
        }
    }
}

/// Size and age of one group (tenant, stream, scope, classification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupStats {
    /// The group.
    pub key: GroupKey,
    /// Records stored.
    pub records: u64,
    /// Of which anonymized.
    pub anonymized: u64,
    /// Oldest event time (µs).
    pub oldest_us: Option<i64>,
    /// Newest event time (µs).
    pub newest_us: Option<i64>,
    /// Headers kept of deleted records (tombstones), so the chain still verifies.
    pub tombstones: u64,
    /// Partitions holding records of this group.
    pub partitions: u64,
    /// Bytes on disk attributed to this group (partition sizes shared by record count).
    pub bytes: u64,
}

/// Records not stored because their capture mode is `none`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureDrop {
    /// The group they belonged to.
    pub key: GroupKey,
    /// How many.
    pub count: u64,
}

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

/// A legal hold as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldRecord {
    /// Hold id.
    pub id: i64,
    /// What it covers.
    pub scope: lethe_core::hold::HoldScope,
    /// Why it was set.
    pub reason: String,
    /// Who set it.
    pub actor: String,
    /// When it was set (µs).
    pub created_us: i64,
    /// When it lapses by itself (µs), if ever.
    pub expires_us: Option<i64>,
    /// When it was released (µs).
    pub released_us: Option<i64>,
    /// Why it was released.
    pub release_reason: Option<String>,
    /// Ledger entry recording it (`hold.set`); `None` until written.
    pub ledger_seq: Option<u64>,
}

impl HoldRecord {
    /// Whether the hold is in force at `now_us`.
    pub fn active_at(&self, now_us: i64) -> bool {
        self.released_us.is_none() && self.expires_us.is_none_or(|e| e > now_us)
    }
}

/// Archived records brought back into the store for an investigation: a
/// set of copies kept apart from every chain, so that retention never
/// sweeps or archives them again and `verify` never counts them, removed
/// whole when the restoration expires (or by a purge that selects them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restoration {
    /// Restoration id.
    pub id: i64,
    /// The one tenant whose records it holds.
    pub tenant: String,
    /// When it was made (µs).
    pub created_us: i64,
    /// When the sweep removes it (µs).
    pub expires_us: i64,
    /// Records it holds.
    pub records: u64,
    /// What was restored and why (JSON, opaque to the store).
    pub note: String,
    /// The ledger entry that records it.
    pub ledger_seq: u64,
    /// Disk bytes it occupies.
    pub bytes: u64,
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

/// Scans partition rows on connections of its own (see [`Store::row_reader`]).
///
/// # Contract
///
/// Sees what was committed when each partition was first opened by this
/// reader; never writes.
pub trait RowReader: Send {
    /// Visits a partition's rows `first..=last` in sequence order, whatever their state.
    fn scan(&mut self, partition: i64, first: u64, last: u64, visit: &mut dyn FnMut(row::RawRow)) -> Result<()>;

    /// Announces the scans `(partition, first, last)` about to be made, in
    /// the order they will be made; forgets any announced before. A hint
    /// only: a backend may read several of them in one round trip when the
    /// first is asked for (a chain of a store with many tenants is
    /// thousands of small partitions). Scans not announced, made out of
    /// order, or skipped still see the same rows. The default ignores it.
    fn expect(&mut self, scans: &[(i64, u64, u64)]) {
        let _ = scans;
    }

    /// Rows stored in a partition, tombstones included.
    fn row_count(&mut self, partition: i64) -> Result<u64>;

    /// Sequence numbers present in a partition outside the given inclusive
    /// ranges (rows no append put there).
    fn strays(&mut self, partition: i64, segments: &[(u64, u64)]) -> Result<Vec<u64>>;
}

/// Leadership among the nodes working on one store (see
/// [`Store::try_lead`]): held until dropped.
///
/// # Contract
///
/// While `held` answers `true` no other holder of a lease on the same store
/// exists; once it answers `false` it never answers `true` again, and the
/// node must stop its leader work.
pub trait Lease: Send {
    /// Whether the lease is still held (checked by a round trip for a
    /// shared database: a lost connection has lost it).
    fn held(&mut self) -> bool;
}

/// The lease of a store only one node can use (the embedded one): always held.
pub struct SoleLease;

impl Lease for SoleLease {
    fn held(&mut self) -> bool {
        true
    }
}

/// Holds the store's job lock (see [`Store::lock_jobs`]) until dropped.
pub type JobGuard<'a> = Box<dyn Send + 'a>;

/// Progress of a long operation: units done of total.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// A run of the sweep (or later, other jobs) as kept in the run history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// Run id.
    pub id: i64,
    /// `cleanup`, `cleanup-dry-run`…
    pub kind: String,
    /// Start (µs).
    pub started_us: i64,
    /// End (µs).
    pub finished_us: i64,
    /// `success` or an error message.
    pub status: String,
    /// JSON summary.
    pub summary: String,
}

/// The storage of a vault.
///
/// # Contract
///
/// - Every operation is atomic and durable on return: a crash (including
///   `kill -9`) at any point leaves each record either fully present or
///   absent, and each retention step either done or not done; reopening the
///   store finishes or rolls back whatever was in flight.
/// - [`Store::append`] is idempotent by record id within a (tenant, stream)
///   and a partition period, assigns each new record the next sequence number
///   of its (tenant, stream), and persists the whole batch before returning.
/// - [`Store::plan_removal`] returns exactly what [`Store::apply_removal`]
///   then removes; apply removes nothing the plan does not list.
/// - Every appended record is sealed: it carries its chain link and MAC
///   (see `lethe_core::integrity`), and deleting it keeps its header (a
///   tombstone) until its whole partition goes, whose segments the caller
///   keeps (in a receipt) with their boundary chain hashes.
/// - Removing records returns their disk space: when every record of a
///   partition is removed, its space is released without compaction.
/// - Tenants never see each other's records: every query names one tenant.
/// - Wrapped keys are opaque bytes to the store; a destroyed key is gone for
///   good.
pub trait Store: Send + Sync {
    /// Stores a batch: its new data keys first, then its records, and counts
    /// records dropped by capture mode `none`. Fails with
    /// [`StoreError::KeyConflict`] (storing nothing) when a new key's
    /// reference already has a key — another writer created it first.
    fn append(&self, batch: &Batch) -> Result<AppendReport> {
        let mut r = self.append_group(&[batch])?;
        r.pop()
            .ok_or_else(|| StoreError::Misuse("append_group returned no report for one batch".into()))
    }

    /// Stores several batches as [`Store::append`] stores one, with one
    /// durable write for all of them (group commit: many writers' small
    /// batches cost one sync), and reports each batch's counts in order.
    /// All or nothing: on any error no record of any batch is stored (a
    /// conflicting or destroyed key is found before anything is written, so
    /// then no key is stored either), and the caller can append each batch
    /// again on its own to find which one failed. Records of different batches are independent: an
    /// id in two batches of the group is stored once, counted a duplicate
    /// in the later batch.
    fn append_group(&self, batches: &[&Batch]) -> Result<Vec<AppendReport>>;

    /// Visits matching records in event-time order (newest first unless
    /// `ascending`); `visit` returns `false` to stop.
    fn query(&self, q: &RecordQuery, visit: &mut dyn FnMut(StoredRecord) -> bool) -> Result<()>;

    /// Size and age per group, optionally for one tenant.
    fn stats(&self, tenant: Option<&TenantId>) -> Result<Vec<GroupStats>>;

    /// The groups [`Store::stats`] lists (every group with a record or a
    /// tombstone stored), in the same order, without counting or sizing
    /// them: what the sweep plans from. A backend overrides it when it can
    /// answer more cheaply than by computing the statistics.
    fn groups(&self, tenant: Option<&TenantId>) -> Result<Vec<GroupKey>> {
        Ok(self.stats(tenant)?.into_iter().map(|g| g.key).collect())
    }

    /// Records dropped at ingest by capture mode `none`, per group.
    fn capture_drops(&self) -> Result<Vec<CaptureDrop>>;

    /// Bytes the store occupies on disk (allocated blocks).
    fn disk_bytes(&self) -> Result<u64>;

    /// The exact removal `targets` select now — per target counts and, per
    /// chain, the partitions and sequence numbers — without changing
    /// anything. Records covered by one of `holds` are left out (and
    /// counted as held); a partition with a held record is never dropped whole.
    fn plan_removal(&self, targets: &[RetentionTarget], holds: &[HoldScope]) -> Result<Removal>;

    /// The exact rows a purge selects now, per chain, with counts per
    /// (stream, scope); records covered by one of `holds` are left out and
    /// counted as held. With pseudonyms, only partitions that may hold one
    /// of those subjects are read: the lookup never scans.
    fn select(&self, sel: &Selection, holds: &[HoldScope]) -> Result<Selected>;

    /// Destroys data keys for good: the wrapped key is erased (and its
    /// bytes overwritten on disk), its reference unlinked from the subject.
    /// Returns how many were destroyed now (already destroyed ones are skipped).
    fn destroy_keys(&self, ids: &[KeyId], now_us: i64) -> Result<u64>;

    /// What an erasure leaves in this backend's own files beyond the rows
    /// and keys it changed (old row versions under MVCC, write-ahead log,
    /// backups), as (place, statement) pairs for the receipt, saying what
    /// this process did about each. Empty for a backend that overwrites in
    /// place (SQLite's `secure_delete`).
    fn erasure_residue(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Stores a new hold (its `id` and `ledger_seq` are ignored) and returns its id.
    fn add_hold(&self, hold: &HoldRecord) -> Result<i64>;

    /// Notes the ledger entry that records a hold.
    fn set_hold_entry(&self, id: i64, ledger_seq: u64) -> Result<()>;

    /// Releases a hold; false if it does not exist or was released already.
    fn release_hold(&self, id: i64, now_us: i64, reason: &str) -> Result<bool>;

    /// Every hold (active or not), optionally of one tenant, oldest first.
    fn holds(&self, tenant: Option<&str>) -> Result<Vec<HoldRecord>>;

    /// Carries out exactly the removal in `chains` (from [`Store::plan_removal`],
    /// or read back from a ledger intent after a crash): drops the listed
    /// partitions whole (keeping the Merkle nodes the tree needs at the
    /// edges), tombstones or anonymizes the listed rows. Idempotent: what is
    /// already done is skipped. A partition written to since the plan is not
    /// dropped whole; its listed records are tombstoned instead.
    fn apply_removal(&self, chains: &[ChainRemoval], progress: Progress<'_>) -> Result<Applied>;

    /// The exact effect of applying `targets` now, without changing anything.
    fn plan_retention(&self, targets: &[RetentionTarget]) -> Result<Vec<RetentionEffect>> {
        Ok(self.plan_removal(targets, &[])?.effects)
    }

    /// Plans and applies `targets` in one call (no intent is recorded; the
    /// vault's sweep records one between the two steps).
    fn apply_retention(&self, targets: &[RetentionTarget], progress: Progress<'_>) -> Result<Vec<RetentionEffect>> {
        let plan = self.plan_removal(targets, &[])?;
        self.apply_removal(&plan.chains, progress)?;
        Ok(plan.effects)
    }

    /// Every chain with its head, tree head and last checkpoint.
    fn chains(&self) -> Result<Vec<ChainHead>>;

    /// Notes that a signed checkpoint now covers `size` records of a chain.
    fn mark_sealed(&self, tenant: &str, stream: &str, size: u64, ts_us: i64) -> Result<()>;

    /// A chain's segments in sequence order, with their partitions.
    fn segments(&self, tenant: &str, stream: &str) -> Result<Vec<SegmentAt>>;

    /// A reader with its own read-only connections, for scanning rows while
    /// other readers (other threads) do the same: a reader holds no lock of
    /// the store while it scans.
    fn row_reader(&self) -> Result<Box<dyn RowReader + '_>>;

    /// A chain's partitions: `(partition, in_flight)`, where `in_flight`
    /// means a write to it has begun and not committed (rows past the chain
    /// head are expected there).
    fn partitions(&self, tenant: &str, stream: &str) -> Result<Vec<(i64, bool)>>;

    /// Of `pseudonyms` (subjects of records stored in `partition`), those
    /// the partition's subject filter says it cannot hold — empty when the
    /// filter names them all, or when the partition has no usable filter
    /// (then every subject lookup searches it anyway). What `verify` uses to
    /// check the index erasures find their rows through: a filter that
    /// misses a subject would hide that subject's records from an erasure.
    fn filter_misses(&self, partition: i64, pseudonyms: &[[u8; 32]]) -> Result<Vec<[u8; 32]>>;

    /// [`Store::filter_misses`] of several partitions, answered in the
    /// order asked. The default asks one partition at a time; a backend
    /// behind a network reads the filters in one round trip (verify asks
    /// about every partition of a chain, thousands on a store of many
    /// tenants).
    fn filter_misses_of(&self, asks: &[(i64, Vec<[u8; 32]>)]) -> Result<Vec<Vec<[u8; 32]>>> {
        asks.iter()
            .map(|(p, subjects)| self.filter_misses(*p, subjects))
            .collect()
    }

    /// A stored Merkle subtree head: `level` 8 and every 4th level above are
    /// kept for all complete subtrees; lower levels only at the edges of
    /// ranges retention removed.
    fn merkle_node(&self, tenant: &str, stream: &str, level: u32, index: u64) -> Result<Option<Hash>>;

    /// [`Store::merkle_node`] of several `(level, index)` nodes of one
    /// chain, answered in the order asked. The default asks one at a time;
    /// a backend behind a network reads them in one round trip (verify
    /// bridges every removed range of a chain with stored nodes).
    fn merkle_nodes(&self, tenant: &str, stream: &str, nodes: &[(u32, u64)]) -> Result<Vec<Option<Hash>>> {
        nodes
            .iter()
            .map(|&(level, index)| self.merkle_node(tenant, stream, level, index))
            .collect()
    }

    /// Leaf hashes of sequence numbers `first..=last` of a chain where the
    /// rows still exist (tombstones included), `None` where they are gone.
    fn leaves(&self, tenant: &str, stream: &str, first: u64, last: u64) -> Result<Vec<Option<Hash>>>;

    /// Where a record id is stored: `(tenant, stream, seq)`, tombstones included.
    fn locate(&self, id: &[u8; 16]) -> Result<Option<(String, String, u64)>>;

    /// A small piece of bookkeeping state (e.g. a sweep's pending intent).
    fn meta(&self, key: &str) -> Result<Option<String>>;

    /// Sets (or, with `None`, clears) a piece of bookkeeping state, durably.
    fn set_meta(&self, key: &str, value: Option<&str>) -> Result<()>;

    /// Sets a piece of bookkeeping state unless it is set already, and
    /// returns whichever value is stored (so concurrent setters agree).
    fn put_meta_once(&self, key: &str, value: &str) -> Result<String>;

    /// A counter that changes whenever [`Store::destroy_keys`] destroys a
    /// key (in any process): key caches compare it to drop destroyed keys.
    fn key_epoch(&self) -> Result<u64>;

    /// Tries to become the leader of the nodes working on this store — the
    /// one that runs scheduled sweeps and erasure and verification jobs —
    /// without waiting: `None` while another node leads. The embedded store
    /// has one node, so it always leads (its job lock still keeps a second
    /// process from sweeping at the same time).
    fn try_lead(&self) -> Result<Option<Box<dyn Lease>>> {
        Ok(Some(Box::new(SoleLease)))
    }

    /// Takes the store's job lock, waiting for it: one sweep, purge or
    /// restoration at a time per store, across processes (and, for a
    /// shared database, across nodes). Released when the guard drops.
    fn lock_jobs(&self) -> Result<JobGuard<'_>>;

    /// Ledger entries of the given kinds, in order (found through an
    /// index, without reading the rest of the ledger).
    fn ledger_of_kinds(&self, kinds: &[&str]) -> Result<Vec<LedgerEntry>>;

    /// Every data key (live or destroyed), optionally of one tenant, by id:
    /// what `verify` compares with the ledger.
    fn all_data_keys(&self, tenant: Option<&str>) -> Result<Vec<StoredKey>>;

    /// [`Store::all_data_keys`], one key at a time, in id order: a store of
    /// many subjects has millions of keys, and `verify` keeps only a few
    /// bytes of each. The default reads them all first; a backend behind a
    /// network streams them.
    fn each_data_key(&self, tenant: Option<&str>, visit: &mut dyn FnMut(StoredKey)) -> Result<()> {
        self.all_data_keys(tenant)?.into_iter().for_each(visit);
        Ok(())
    }

    /// The wrapped root key of a tenant, if it has one.
    fn tenant_key(&self, tenant: &TenantId) -> Result<Option<Vec<u8>>>;

    /// Stores `wrapped` as the tenant's root key unless it has one already;
    /// returns whichever is stored (so concurrent creators agree).
    fn put_tenant_key(&self, tenant: &TenantId, wrapped: &[u8], now_us: i64) -> Result<Vec<u8>>;

    /// Looks up data keys of one tenant by reference (read-only); `None`
    /// where no key exists for a reference.
    fn data_keys_by_ref(&self, tenant: &TenantId, refs: &[Vec<u8>]) -> Result<Vec<Option<StoredKey>>>;

    /// Looks up data keys by id; unknown ids are absent from the result.
    fn data_keys(&self, ids: &[KeyId]) -> Result<Vec<StoredKey>>;

    /// Stores a snapshot of the retention policies in force unless an
    /// identical one is stored already; returns its version (identical
    /// snapshots share one) and whether it still has to be entered in the
    /// ledger (see [`Store::mark_policy_entered`]) — true for a new snapshot,
    /// and for one whose ledger entry a crash prevented.
    fn record_policy(&self, body: &str, now_us: i64) -> Result<(i64, bool)>;

    /// Notes that a policy version's ledger entry is written.
    fn mark_policy_entered(&self, version: i64) -> Result<()>;

    /// Appends one ledger entry: `seal` is called with the current head
    /// (sequence number and hash; `(0, zeros)` for an empty ledger) inside
    /// the same write transaction that stores what it returns, so concurrent
    /// writers never fork the chain. There is no way to edit or delete an
    /// entry through this trait.
    fn append_ledger(&self, seal: &mut dyn FnMut(u64, [u8; 32]) -> LedgerEntry) -> Result<LedgerEntry>;

    /// Appends one ledger entry as [`Store::append_ledger`] does and, in
    /// the same transaction, sets the bookkeeping value `mark` (see
    /// [`Store::meta`]) to its sequence number — so an intent and its
    /// pending mark are durable together or not at all.
    fn append_ledger_marked(
        &self,
        seal: &mut dyn FnMut(u64, [u8; 32]) -> LedgerEntry,
        mark: &str,
    ) -> Result<LedgerEntry>;

    /// Removes ledger entries with sequence number ≤ `through` — ledger
    /// retention, and nothing else: the caller has appended a signed anchor
    /// that carries what verification needs from them. Returns how many went.
    fn trim_ledger(&self, through: u64) -> Result<u64>;

    /// Ledger entries with sequence number ≥ `from`, in order, at most `limit`.
    fn ledger(&self, from: u64, limit: usize) -> Result<Vec<LedgerEntry>>;

    /// The sequence number of the newest ledger entry (0 when there is
    /// none, also after trimming: an anchor entry stays): whether any
    /// administrative act was recorded since an earlier look, in one index
    /// lookup.
    fn ledger_head(&self) -> Result<u64>;

    /// A stored policy snapshot by version.
    fn policy(&self, version: i64) -> Result<Option<String>>;

    /// Starts loading a restoration of `tenant`'s archived records; it stays
    /// invisible (and a crash discards it) until [`Store::finish_restoration`].
    fn begin_restoration(&self, tenant: &TenantId, created_us: i64, expires_us: i64, note: &str) -> Result<i64>;

    /// Adds records to a restoration being loaded by this process; returns
    /// how many were new (by stream and sequence number). Every record must
    /// be of the restoration's tenant.
    fn add_restored(&self, id: i64, records: &[StoredRecord]) -> Result<u64>;

    /// Makes a loaded restoration durable and visible. Its ledger entry
    /// `ledger_seq` must be written first, with the bookkeeping mark
    /// `restoration.<id>` set in the same transaction (see
    /// [`Store::append_ledger_marked`]): reopening the store after a crash
    /// finishes a restoration whose mark is set and discards one whose mark
    /// is not.
    fn finish_restoration(&self, id: i64, ledger_seq: u64) -> Result<Restoration>;

    /// Finished restorations, optionally of one tenant, oldest first.
    fn restorations(&self, tenant: Option<&str>) -> Result<Vec<Restoration>>;

    /// Visits matching restored records as [`Store::query`] does (one
    /// tenant, same filters), each with its restoration id, restoration
    /// by restoration (oldest first) and in event-time order within one.
    fn query_restored(&self, q: &RecordQuery, visit: &mut dyn FnMut(i64, StoredRecord) -> bool) -> Result<()>;

    /// Removes a restoration whole; returns the disk bytes returned (0 when
    /// there is no such restoration).
    fn drop_restoration(&self, id: i64) -> Result<u64>;

    /// Deletes (or, for [`Action::Anonymize`], anonymizes) the restored
    /// records a purge selects, except those one of `holds` covers; returns
    /// how many changed. Idempotent.
    fn erase_restored(&self, sel: &Selection, holds: &[HoldScope]) -> Result<u64>;

    /// Appends a run to the run history and returns its id.
    fn record_run(&self, kind: &str, started_us: i64, finished_us: i64, status: &str, summary: &str) -> Result<i64>;

    /// The most recent runs, newest first.
    fn runs(&self, limit: usize) -> Result<Vec<RunRecord>>;

    /// Stores a new API key. Fails with [`StoreError::Misuse`] if its id
    /// is taken (ids are random: a collision is a caller's bug).
    fn put_access_key(&self, key: &AccessKey) -> Result<()>;

    /// Every API key ever made, revoked ones included, oldest first.
    fn access_keys(&self) -> Result<Vec<AccessKey>>;

    /// Marks a key revoked at `now_us`; `false` if it does not exist or
    /// was already revoked (the first revocation time is kept).
    fn revoke_access_key(&self, id: &str, now_us: i64) -> Result<bool>;

    /// Records that a key was used at `now_us` (callers throttle this: it
    /// is a write).
    fn touch_access_key(&self, id: &str, now_us: i64) -> Result<()>;
}

/// An API key as the catalog keeps it: its secret is never stored, only a
/// keyed hash of it, so a copy of the catalog lets nobody call the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessKey {
    /// Public part of the token (`lethe_<id>_<secret>`), unique.
    pub id: String,
    /// A name for people (what the key is for).
    pub name: String,
    /// Role name (`ingest`, `auditor`, `admin`, `super_admin`).
    pub role: String,
    /// Tenants the key may act on; `["*"]` for all.
    pub tenants: Vec<String>,
    /// Keyed hash of the secret (32 bytes).
    #[serde(skip)]
    pub secret_hash: Vec<u8>,
    /// Who made it.
    pub creator: String,
    /// When it was made (µs).
    pub created_us: i64,
    /// When it stops working by itself (µs), if ever.
    pub expires_us: Option<i64>,
    /// When it was last used (µs), to within the caller's throttle.
    pub last_used_us: Option<i64>,
    /// When it was revoked (µs).
    pub revoked_us: Option<i64>,
}
