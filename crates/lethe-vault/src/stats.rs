//! Size and age of what the vault holds, per tenant, stream and scope.

use std::collections::BTreeMap;

use lethe_core::record::format_ts;
use lethe_core::TenantId;
use serde::Serialize;

use crate::{Result, Vault};

/// One row: a (tenant, stream, scope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsRow {
    /// Tenant.
    pub tenant: String,
    /// Stream and version.
    pub stream: String,
    /// Scope.
    pub scope: String,
    /// Records stored.
    pub records: u64,
    /// Of which anonymized.
    pub anonymized: u64,
    /// Headers kept of deleted records (tombstones; not counted in `records`).
    pub tombstones: u64,
    /// Bytes on disk attributed to these records.
    pub bytes: u64,
    /// Oldest event time.
    pub oldest: Option<String>,
    /// Newest event time.
    pub newest: Option<String>,
    /// Partitions holding them (the largest count over their classifications).
    pub partitions: u64,
    /// Records counted but not stored (capture `none`).
    pub not_captured: u64,
}

/// Totals over everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Records stored.
    pub records: u64,
    /// The data directory's size on disk.
    pub bytes: u64,
    /// Records counted but not stored.
    pub not_captured: u64,
}

/// `lethe stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsReport {
    /// Per (tenant, stream, scope).
    pub rows: Vec<StatsRow>,
    /// Totals.
    pub totals: Totals,
}

impl Vault {
    /// Stats, optionally for one tenant.
    pub fn stats(&self, tenant: Option<&TenantId>) -> Result<StatsReport> {
        let mut rows: BTreeMap<(String, String, String), StatsRow> = BTreeMap::new();
        // (oldest, newest) event time per row.
        type Ages = (Option<i64>, Option<i64>);
        let mut ages: BTreeMap<(String, String, String), Ages> = BTreeMap::new();
        for g in self.store.stats(tenant)? {
            let (t, s) = (g.key.tenant.to_string(), g.key.stream.to_string());
            let r = row_mut(&mut rows, &t, &s, &g.key.scope);
            r.records += g.records;
            r.anonymized += g.anonymized;
            r.tombstones += g.tombstones;
            r.bytes += g.bytes;
            r.partitions = r.partitions.max(g.partitions);
            let a = ages.entry((t, s, g.key.scope.clone())).or_default();
            a.0 = min_opt(a.0, g.oldest_us);
            a.1 = max_opt(a.1, g.newest_us);
        }
        let mut not_captured = 0;
        for d in self.store.capture_drops()? {
            if tenant.is_some_and(|t| *t != d.key.tenant) {
                continue;
            }
            let (t, s) = (d.key.tenant.to_string(), d.key.stream.to_string());
            row_mut(&mut rows, &t, &s, &d.key.scope).not_captured += d.count;
            not_captured += d.count;
        }
        for (k, (o, n)) in ages {
            if let Some(r) = rows.get_mut(&k) {
                r.oldest = o.map(format_ts);
                r.newest = n.map(format_ts);
            }
        }
        let rows: Vec<StatsRow> = rows.into_values().collect();
        let totals = Totals {
            records: rows.iter().map(|r| r.records).sum(),
            bytes: self.store.disk_bytes()?,
            not_captured,
        };
        Ok(StatsReport { rows, totals })
    }
}

fn row_mut<'m>(
    rows: &'m mut BTreeMap<(String, String, String), StatsRow>,
    t: &str,
    s: &str,
    sc: &str,
) -> &'m mut StatsRow {
    rows.entry((t.into(), s.into(), sc.into())).or_insert_with(|| StatsRow {
        tenant: t.into(),
        stream: s.into(),
        scope: sc.into(),
        records: 0,
        anonymized: 0,
        tombstones: 0,
        bytes: 0,
        oldest: None,
        newest: None,
        partitions: 0,
        not_captured: 0,
    })
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}
