//! The [`Store`] trait every backend implements, and the handles it gives
//! out: row readers, leader leases, the job lock and progress callbacks.

use super::*;

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
