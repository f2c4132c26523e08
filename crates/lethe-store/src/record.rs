//! Records, batches and data keys as they cross the [`Store`](crate::Store) boundary: what an
//! append takes and reports, what a query asks for and gets, per-group statistics.

use super::*;

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
