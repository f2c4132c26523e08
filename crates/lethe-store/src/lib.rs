//! Storage for Lethe: the domain-level [`Store`] trait, the embedded SQLite
//! backend, and the conformance suite every backend must pass.
//!
//! Nothing above this crate sees a table, a file or a SQL statement: callers
//! speak in records, groups, retention targets and wrapped keys.

pub mod crashpoint;
pub mod sqlite;
#[cfg(feature = "testsuite")]
pub mod testsuite;

use lethe_core::policy::{Action, GroupKey};
use lethe_core::{StreamId, TenantId};
use serde::Serialize;

pub use lethe_core::ledger::Entry as LedgerEntry;
pub use sqlite::SqliteStore;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database engine reported an error.
    #[error("storage backend: {0}")]
    Backend(String),
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
    /// Stored data is not what this version expects.
    #[error("store is corrupt or from another version: {0}")]
    Corrupt(String),
}

impl StoreError {
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
}

/// What one [`Store::append`] writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Data keys created for this batch (stored before the records).
    pub new_keys: Vec<StoredKey>,
    /// The records.
    pub records: Vec<NewRecord>,
    /// Records counted but not stored (capture mode `none`).
    pub drops: Vec<CaptureDrop>,
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
    /// Disk bytes returned (apply) or that will be (plan): whole partitions removed.
    pub bytes_freed: u64,
    /// Partitions removed whole.
    pub partitions_dropped: u64,
}

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
/// - [`Store::plan_retention`] returns exactly the effects that
///   [`Store::apply_retention`] with the same targets then produces, provided
///   no write happens in between.
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
    fn append(&self, batch: &Batch) -> Result<AppendReport>;

    /// Visits matching records in event-time order (newest first unless
    /// `ascending`); `visit` returns `false` to stop.
    fn query(&self, q: &RecordQuery, visit: &mut dyn FnMut(StoredRecord) -> bool) -> Result<()>;

    /// Size and age per group, optionally for one tenant.
    fn stats(&self, tenant: Option<&TenantId>) -> Result<Vec<GroupStats>>;

    /// Records dropped at ingest by capture mode `none`, per group.
    fn capture_drops(&self) -> Result<Vec<CaptureDrop>>;

    /// Bytes the store occupies on disk (allocated blocks).
    fn disk_bytes(&self) -> Result<u64>;

    /// The exact effect of applying `targets` now, without changing anything.
    fn plan_retention(&self, targets: &[RetentionTarget]) -> Result<Vec<RetentionEffect>>;

    /// Applies `targets`: deletes or anonymizes expired records.
    fn apply_retention(&self, targets: &[RetentionTarget], progress: Progress<'_>) -> Result<Vec<RetentionEffect>>;

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
    /// snapshots share one) and whether it is new.
    fn record_policy(&self, body: &str, now_us: i64) -> Result<(i64, bool)>;

    /// Appends one ledger entry: `seal` is called with the current head
    /// (sequence number and hash; `(0, zeros)` for an empty ledger) inside
    /// the same write transaction that stores what it returns, so concurrent
    /// writers never fork the chain. There is no way to edit or delete an
    /// entry through this trait.
    fn append_ledger(&self, seal: &mut dyn FnMut(u64, [u8; 32]) -> LedgerEntry) -> Result<LedgerEntry>;

    /// Ledger entries with sequence number ≥ `from`, in order, at most `limit`.
    fn ledger(&self, from: u64, limit: usize) -> Result<Vec<LedgerEntry>>;

    /// A stored policy snapshot by version.
    fn policy(&self, version: i64) -> Result<Option<String>>;

    /// Appends a run to the run history and returns its id.
    fn record_run(&self, kind: &str, started_us: i64, finished_us: i64, status: &str, summary: &str) -> Result<i64>;

    /// The most recent runs, newest first.
    fn runs(&self, limit: usize) -> Result<Vec<RunRecord>>;
}
