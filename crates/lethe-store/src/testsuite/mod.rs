//! The conformance suite every [`Store`] backend must pass.
//!
//! A backend's test file implements [`Harness`] — how to make an empty store
//! of that backend for one check, and how to open it again as a new process
//! would — and calls [`conformance!`](crate::conformance) with an expression
//! that builds a harness; each check below becomes one named test. The
//! checks use only the [`Store`] trait: nothing in them knows where or how
//! a backend keeps its data.

use lethe_core::crypto::SecretKey;
use lethe_core::policy::{Action, GroupKey};
use lethe_core::{Classification, TenantId};

use crate::{Batch, CaptureDrop, NewRecord, RecordQuery, RetentionTarget, Store, StoredKey};

mod catalog;
mod erasure;
mod integrity;
mod records;
mod restoration;
mod retention;

pub use catalog::*;
pub use erasure::*;
pub use integrity::*;
pub use records::*;
pub use restoration::*;
pub use retention::*;

/// The record MAC key the suite seals a tenant's records with.
pub fn mac_key(tenant: &TenantId) -> SecretKey {
    let mut k = [0u8; 32];
    for (i, b) in tenant.as_str().bytes().enumerate() {
        k[i % 32] ^= b;
    }
    SecretKey::from_bytes(k)
}

/// A batch of `records` with the MAC keys of their tenants.
pub fn batch_of(records: &[NewRecord]) -> Batch {
    let mut tenants: Vec<TenantId> = records.iter().map(|r| r.group.tenant.clone()).collect();
    tenants.sort();
    tenants.dedup();
    Batch {
        records: records.to_vec(),
        mac_keys: tenants.into_iter().map(|t| (t.clone(), mac_key(&t))).collect(),
        key_ledger: Some(crate::KeyLedger {
            key: SecretKey::from_bytes([7; 32]),
            actor: "test/suite".into(),
            ts_us: T0,
        }),
        ..Default::default()
    }
}

/// Appends `records`, storing first the data key of every subject that
/// has none yet (records must be encrypted under live keys).
pub fn append_to(s: &dyn Store, records: &[NewRecord]) -> crate::Result<crate::AppendReport> {
    let mut ids: Vec<(i64, TenantId)> = records
        .iter()
        .filter_map(|r| r.key_id.map(|k| (k, r.group.tenant.clone())))
        .collect();
    ids.sort();
    ids.dedup();
    let have: Vec<i64> = s
        .data_keys(&ids.iter().map(|(k, _)| *k).collect::<Vec<_>>())?
        .into_iter()
        .map(|k| k.id)
        .collect();
    let new_keys = ids
        .into_iter()
        .filter(|(k, _)| !have.contains(k))
        .map(|(k, t)| StoredKey {
            id: k,
            tenant: t,
            key_ref: format!("s:{k}").into_bytes(),
            wrapped: Some(b"wrapped".to_vec()),
        })
        .collect();
    s.append(&Batch {
        new_keys,
        ..batch_of(records)
    })
}

/// A backend under test, as the conformance suite sees it.
///
/// # Contract
///
/// - `open(n)` returns store number `n` of this check: empty the first time
///   it is asked for, and isolated from every other `n` and every other
///   check (a new directory, a new database or schema per harness).
/// - Asking for the same `n` again opens *the same* store afresh, as a new
///   process would (nothing cached in the returned value is shared): the
///   suite uses it to check what survives reopening. Earlier instances may
///   still be alive.
/// - A harness lives for one check; what it made may be removed when it is
///   dropped.
pub trait Harness {
    /// Opens store `n` of this check (see the contract).
    fn open(&self, n: u32) -> Box<dyn Store>;
}

/// The embedded backend's harness: store `n` lives in its own
/// subdirectory of a temporary directory removed with the harness.
pub struct SqliteHarness {
    dir: tempfile::TempDir,
}

impl SqliteHarness {
    /// A harness over a new temporary directory.
    pub fn new() -> Self {
        SqliteHarness {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }
}

impl Default for SqliteHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness for SqliteHarness {
    fn open(&self, n: u32) -> Box<dyn Store> {
        Box::new(crate::SqliteStore::open(&self.dir.path().join(format!("s{n}")), 86_400).expect("open sqlite store"))
    }
}

/// The PostgreSQL server the PostgreSQL suites run against: the
/// connection string in `LETHE_TEST_PG_URL`, else the local service
/// (`postgres@127.0.0.1:5432`, database `test`). A server that cannot be
/// reached fails the test that needs it, loudly: it never skips.
pub fn test_pg_url() -> String {
    std::env::var("LETHE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The PostgreSQL backend's harness: store `n` is a schema of its own in
/// the test database, named after the harness and dropped with it.
pub struct PgHarness {
    url: String,
    base: String,
}

impl PgHarness {
    /// A harness with a fresh schema prefix.
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        PgHarness {
            url: test_pg_url(),
            base: format!(
                "lethe_t{}_{}_{nanos:x}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// The options that open store `n`.
    pub fn options(&self, n: u32) -> crate::postgres::PgOptions {
        crate::postgres::PgOptions {
            url: self.url.clone(),
            schema: format!("{}_{n}", self.base),
            pool_size: 4,
            ca_file: None,
        }
    }
}

impl Default for PgHarness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness for PgHarness {
    fn open(&self, n: u32) -> Box<dyn Store> {
        let opts = self.options(n);
        Box::new(crate::postgres::PgStore::open(&opts, 86_400).unwrap_or_else(|e| {
            panic!(
                "cannot open a PostgreSQL store at {} (set LETHE_TEST_PG_URL, or run ./scripts/test.sh, which \
                 starts a server): {e}",
                opts.url
            )
        }))
    }
}

impl Drop for PgHarness {
    fn drop(&mut self) {
        drop_pg_schemas(&format!("{}_", self.base));
    }
}

/// Drops every schema of the test database whose name starts with
/// `prefix` (a test's stores); panics when the server does not answer.
pub fn drop_pg_schemas(prefix: &str) {
    let url = test_pg_url();
    let mut c = postgres::Client::connect(&url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} does not answer (set LETHE_TEST_PG_URL): {e}"));
    let schemas: Vec<String> = c
        .query(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
            &[&prefix],
        )
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default();
    for s in schemas {
        let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE"));
    }
}

/// Expands to one `#[test]` per conformance check for a backend, given an
/// expression that makes a fresh [`Harness`] (evaluated once per check).
#[macro_export]
macro_rules! conformance {
    ($harness:expr) => {
        $crate::conformance!(@tests $harness;
            append_then_query_returns_records_newest_first,
            appending_the_same_id_twice_stores_it_once,
            a_group_of_batches_is_stored_as_each_alone_with_its_own_counts,
            a_group_with_one_conflicting_batch_stores_nothing,
            the_same_id_in_two_tenants_is_two_records,
            sequence_numbers_are_dense_per_tenant_and_stream,
            query_filters_by_stream_scope_subject_time_and_limit,
            tenants_never_see_each_others_records,
            dry_run_plan_equals_what_apply_then_does_on_random_data,
            a_second_sweep_right_after_does_nothing,
            a_plan_over_many_tenants_is_each_tenants_own_plan_and_apply_does_exactly_it,
            whole_expired_partitions_return_their_disk_space,
            anonymize_keeps_plain_fields_and_drops_body_and_pseudonym,
            shortening_a_window_applies_to_stored_records_and_lengthening_never_resurrects,
            stats_report_records_ages_and_partitions,
            groups_are_the_groups_the_statistics_list,
            keys_are_first_writer_wins_and_stable,
            a_key_carried_by_several_batches_is_stored_once_and_entered_once,
            a_batch_under_a_destroyed_key_is_refused_whole,
            a_batch_under_a_key_that_was_never_stored_is_refused_whole,
            capture_drops_are_counted,
            policy_snapshots_are_versioned_by_content,
            the_ledger_appends_in_order_and_reads_back_exactly,
            everything_survives_reopening,
            appended_records_are_sealed_linked_and_under_the_tree_head,
            announced_scans_return_the_rows_unannounced_ones_do,
            deleting_rows_keeps_tombstones_whose_headers_still_verify,
            dropping_partitions_keeps_what_the_chain_and_tree_need,
            a_subject_selection_finds_exactly_the_subjects_rows_and_leaves_held_ones,
            a_subjects_rows_are_found_exactly_among_thousands_in_one_period,
            removing_a_selection_takes_exactly_those_rows_from_queries_and_counts,
            removals_move_a_groups_time_bounds_and_counts_to_what_is_left,
            destroyed_keys_are_gone_for_good_and_no_longer_name_their_subject,
            holds_are_stored_listed_and_released,
            retention_plans_leave_held_records_and_never_drop_their_partition,
            restorations_are_invisible_until_finished_then_queryable_erasable_and_dropped_whole,
            a_restoration_cut_short_is_discarded_and_one_whose_ledger_entry_was_written_is_finished_on_reopen
        );
    };
    (@tests $harness:expr; $($name:ident),*) => {$(
        #[test]
        fn $name() {
            let harness = $harness;
            $crate::testsuite::$name(&harness);
        }
    )*};
}

pub(super) const DAY: i64 = 86_400_000_000;
/// 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600_000_000;

/// The group of `tenant`'s records of `stream` in `scope` with classification `c`.
pub fn key(tenant: &str, stream: &str, scope: &str, c: Classification) -> GroupKey {
    GroupKey {
        tenant: TenantId::new(tenant).unwrap(),
        stream: stream.parse().unwrap(),
        scope: scope.into(),
        classification: c,
    }
}

/// A deterministic test record.
pub fn rec(n: u64, g: &GroupKey, ts_us: i64, subject: Option<u8>) -> NewRecord {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id[8..].copy_from_slice(&(ts_us as u64).to_be_bytes());
    NewRecord {
        id,
        group: g.clone(),
        ts_us,
        received_us: ts_us + 1,
        pseudonym: subject.map(|s| [s; 32]),
        // One key per (tenant, subject), as the vault keeps them.
        key_id: subject.map(|s| g.tenant.as_str().bytes().map(i64::from).sum::<i64>() * 1000 + s as i64),
        plain: format!("{{\"n\":{n}}}"),
        body: Some(vec![n as u8; 300]),
    }
}

pub(super) trait RecordKey {
    fn record_key(&self) -> i64;
}

impl RecordKey for NewRecord {
    fn record_key(&self) -> i64 {
        self.key_id.expect("a record with a subject has a key")
    }
}

pub(super) struct Lcg(u64);
impl Lcg {
    fn next(&mut self, m: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % m
    }
}

pub(super) fn all(s: &dyn Store, tenant: &str) -> Vec<crate::StoredRecord> {
    let mut v = Vec::new();
    s.query(&RecordQuery::tenant(TenantId::new(tenant).unwrap()), &mut |r| {
        v.push(r);
        true
    })
    .unwrap();
    v
}

pub(super) fn random_store(s: &dyn Store, seed: u64, n: u64) -> Vec<GroupKey> {
    let mut rng = Lcg(seed);
    let groups = vec![
        key("acme", "audit:1", "web", Classification::Internal),
        key("acme", "audit:1", "admin", Classification::Restricted),
        key("acme", "requests:1", "chat", Classification::Confidential),
        key("beta", "requests:1", "chat", Classification::Confidential),
        key("beta", "audit:1", "web", Classification::Public),
    ];
    let mut batch = Vec::new();
    for i in 0..n {
        let g = &groups[rng.next(groups.len() as u64) as usize];
        let ts = T0 - rng.next(120) as i64 * DAY - rng.next(DAY as u64) as i64;
        let subj = if rng.next(4) == 0 {
            None
        } else {
            Some(rng.next(20) as u8)
        };
        batch.push(rec(i, g, ts, subj));
        if batch.len() == 500 {
            append_to(s, &batch).unwrap();
            batch.clear();
        }
    }
    append_to(s, &batch).unwrap();
    groups
}

pub(super) fn targets(groups: &[GroupKey], days: &[(i64, Action)], now: i64) -> Vec<RetentionTarget> {
    groups
        .iter()
        .zip(days.iter().cycle())
        .map(|(g, (d, a))| RetentionTarget {
            key: g.clone(),
            rule: format!("{d}d-{a}"),
            action: *a,
            cutoff_us: now - d * DAY,
        })
        .collect()
}

pub(super) fn no_progress(_: u64, _: u64) {}
