//! The `Store` trait over `SqliteStore`: each method hands over to the
//! module of its concept (append, query, removal, catalog, restored…).

use super::*;

impl Store for SqliteStore {
    fn append_group(&self, group: &[&Batch]) -> Result<Vec<AppendReport>> {
        SqliteStore::append_group(self, group)
    }

    fn query(&self, q: &RecordQuery, visit: &mut dyn FnMut(StoredRecord) -> bool) -> Result<()> {
        SqliteStore::query(self, q, visit)
    }

    fn stats(&self, tenant: Option<&TenantId>) -> Result<Vec<GroupStats>> {
        SqliteStore::stats(self, tenant)
    }

    fn groups(&self, tenant: Option<&TenantId>) -> Result<Vec<GroupKey>> {
        SqliteStore::groups(self, tenant)
    }

    fn capture_drops(&self) -> Result<Vec<CaptureDrop>> {
        SqliteStore::capture_drops(self)
    }

    fn disk_bytes(&self) -> Result<u64> {
        dir_bytes(&self.dir)
    }

    fn plan_removal(&self, targets: &[RetentionTarget], holds: &[HoldScope]) -> Result<Removal> {
        SqliteStore::plan_removal(self, targets, holds)
    }

    fn apply_removal(&self, chains: &[ChainRemoval], progress: Progress<'_>) -> Result<Applied> {
        SqliteStore::apply_removal(self, chains, progress)
    }

    fn chains(&self) -> Result<Vec<ChainHead>> {
        SqliteStore::chains(self)
    }

    fn mark_sealed(&self, tenant: &str, stream: &str, size: u64, ts_us: i64) -> Result<()> {
        SqliteStore::mark_sealed(self, tenant, stream, size, ts_us)
    }

    fn segments(&self, tenant: &str, stream: &str) -> Result<Vec<SegmentAt>> {
        SqliteStore::segments(self, tenant, stream)
    }

    fn row_reader(&self) -> Result<Box<dyn RowReader + '_>> {
        // Callers (verify's workers, the archive writer) go chain by chain,
        // and every chain's rows lie in most of the same files.
        let limit = self.lock().lookup_limit;
        Ok(Box::new(Reader::wide(self, limit)))
    }

    fn partitions(&self, tenant: &str, stream: &str) -> Result<Vec<(i64, bool)>> {
        SqliteStore::partitions(self, tenant, stream)
    }

    fn filter_misses(&self, partition: i64, pseudonyms: &[[u8; 32]]) -> Result<Vec<[u8; 32]>> {
        SqliteStore::filter_misses(self, partition, pseudonyms)
    }

    fn filter_misses_of(&self, asks: &[(i64, Vec<[u8; 32]>)]) -> Result<Vec<Vec<[u8; 32]>>> {
        SqliteStore::filter_misses_of(self, asks)
    }

    fn merkle_node(&self, tenant: &str, stream: &str, level: u32, index: u64) -> Result<Option<Hash>> {
        SqliteStore::merkle_node(self, tenant, stream, level, index)
    }

    fn leaves(&self, tenant: &str, stream: &str, first: u64, last: u64) -> Result<Vec<Option<Hash>>> {
        SqliteStore::leaves(self, tenant, stream, first, last)
    }

    fn locate(&self, id: &[u8; 16]) -> Result<Option<(String, String, u64)>> {
        SqliteStore::locate(self, id)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        SqliteStore::meta(self, key)
    }

    fn set_meta(&self, key: &str, value: Option<&str>) -> Result<()> {
        SqliteStore::set_meta(self, key, value)
    }

    fn put_meta_once(&self, key: &str, value: &str) -> Result<String> {
        SqliteStore::put_meta_once(self, key, value)
    }

    fn key_epoch(&self) -> Result<u64> {
        SqliteStore::key_epoch(self)
    }

    fn lock_jobs(&self) -> Result<crate::JobGuard<'_>> {
        Ok(Box::new(self.jobs.lock()?))
    }

    fn ledger_of_kinds(&self, kinds: &[&str]) -> Result<Vec<LedgerEntry>> {
        SqliteStore::ledger_of_kinds(self, kinds)
    }

    fn all_data_keys(&self, tenant: Option<&str>) -> Result<Vec<StoredKey>> {
        SqliteStore::all_data_keys(self, tenant)
    }

    fn tenant_key(&self, tenant: &TenantId) -> Result<Option<Vec<u8>>> {
        SqliteStore::tenant_key(self, tenant)
    }

    fn put_tenant_key(&self, tenant: &TenantId, wrapped: &[u8], now_us: i64) -> Result<Vec<u8>> {
        SqliteStore::put_tenant_key(self, tenant, wrapped, now_us)
    }

    fn data_keys_by_ref(&self, tenant: &TenantId, refs: &[Vec<u8>]) -> Result<Vec<Option<StoredKey>>> {
        SqliteStore::data_keys_by_ref(self, tenant, refs)
    }

    fn data_keys(&self, ids: &[KeyId]) -> Result<Vec<StoredKey>> {
        SqliteStore::data_keys(self, ids)
    }

    fn record_policy(&self, body: &str, now_us: i64) -> Result<(i64, bool)> {
        SqliteStore::record_policy(self, body, now_us)
    }

    fn mark_policy_entered(&self, version: i64) -> Result<()> {
        SqliteStore::mark_policy_entered(self, version)
    }

    fn append_ledger(&self, seal: &mut dyn FnMut(u64, [u8; 32]) -> LedgerEntry) -> Result<LedgerEntry> {
        self.append_entry(seal, None)
    }

    fn append_ledger_marked(
        &self,
        seal: &mut dyn FnMut(u64, [u8; 32]) -> LedgerEntry,
        mark: &str,
    ) -> Result<LedgerEntry> {
        self.append_entry(seal, Some(mark))
    }

    fn trim_ledger(&self, through: u64) -> Result<u64> {
        SqliteStore::trim_ledger(self, through)
    }

    fn ledger(&self, from: u64, limit: usize) -> Result<Vec<LedgerEntry>> {
        SqliteStore::ledger(self, from, limit)
    }

    fn ledger_head(&self) -> Result<u64> {
        SqliteStore::ledger_head(self)
    }

    fn policy(&self, version: i64) -> Result<Option<String>> {
        SqliteStore::policy(self, version)
    }

    fn select(&self, sel: &Selection, holds: &[HoldScope]) -> Result<Selected> {
        SqliteStore::select(self, sel, holds)
    }

    fn destroy_keys(&self, ids: &[KeyId], now_us: i64) -> Result<u64> {
        SqliteStore::destroy_keys(self, ids, now_us)
    }

    fn add_hold(&self, h: &HoldRecord) -> Result<i64> {
        SqliteStore::add_hold(self, h)
    }

    fn set_hold_entry(&self, id: i64, ledger_seq: u64) -> Result<()> {
        SqliteStore::set_hold_entry(self, id, ledger_seq)
    }

    fn release_hold(&self, id: i64, now_us: i64, reason: &str) -> Result<bool> {
        SqliteStore::release_hold(self, id, now_us, reason)
    }

    fn holds(&self, tenant: Option<&str>) -> Result<Vec<HoldRecord>> {
        SqliteStore::holds(self, tenant)
    }

    fn begin_restoration(&self, tenant: &TenantId, created_us: i64, expires_us: i64, note: &str) -> Result<i64> {
        self.restoration_begin(tenant, created_us, expires_us, note)
    }

    fn add_restored(&self, id: i64, records: &[StoredRecord]) -> Result<u64> {
        self.restoration_add(id, records)
    }

    fn finish_restoration(&self, id: i64, ledger_seq: u64) -> Result<crate::Restoration> {
        self.restoration_finish(id, ledger_seq)
    }

    fn restorations(&self, tenant: Option<&str>) -> Result<Vec<crate::Restoration>> {
        self.restoration_list(tenant)
    }

    fn query_restored(&self, q: &RecordQuery, visit: &mut dyn FnMut(i64, StoredRecord) -> bool) -> Result<()> {
        self.restoration_query(q, visit)
    }

    fn drop_restoration(&self, id: i64) -> Result<u64> {
        self.restoration_drop(id)
    }

    fn erase_restored(&self, sel: &Selection, holds: &[HoldScope]) -> Result<u64> {
        self.restoration_erase(sel, holds)
    }

    fn record_run(&self, kind: &str, started_us: i64, finished_us: i64, status: &str, summary: &str) -> Result<i64> {
        SqliteStore::record_run(self, kind, started_us, finished_us, status, summary)
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        SqliteStore::runs(self, limit)
    }

    fn put_access_key(&self, key: &crate::AccessKey) -> Result<()> {
        self.access_put(key)
    }

    fn access_keys(&self) -> Result<Vec<crate::AccessKey>> {
        self.access_list()
    }

    fn revoke_access_key(&self, id: &str, now_us: i64) -> Result<bool> {
        self.access_revoke(id, now_us)
    }

    fn touch_access_key(&self, id: &str, now_us: i64) -> Result<()> {
        self.access_touch(id, now_us)
    }
}
