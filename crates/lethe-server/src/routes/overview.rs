//! The tenants a key sees, and one tenant's overview: what is stored per
//! stream and scope, how old it is, how much is already past its window,
//! what is held, the sweeps' history and the next sweep — what the
//! dashboard's first page draws, in one request.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use lethe_core::config::PolicyAction;
use lethe_core::record::format_ts;
use lethe_core::{TenantId, Window};
use lethe_vault::access::TenantScope;
use lethe_vault::settings::{Keep, TenantSetting};
use lethe_vault::Vault;
use serde::Serialize;
use utoipa::ToSchema;

use super::{blocking, now_us};
use crate::auth::{Caller, Need};
use crate::problem::ApiError;
use crate::App;

/// A tenant the key may read, with what it stores.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantLine {
    /// Tenant.
    pub tenant: String,
    /// Records stored (live).
    pub records: u64,
    /// Bytes of their stored fields.
    pub bytes: u64,
}

/// Lists the tenants the calling key may read (every tenant with records
/// for a key whose scope is `*`; its own tenants otherwise, stored or not).
#[utoipa::path(get, path = "/v1/tenants", tag = "records",
    responses((status = 200, description = "tenants in the key's scope", body = [TenantLine]),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn tenants(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Vec<TenantLine>>, ApiError> {
    if !caller.key.role.can_read() {
        return Err(ApiError::forbidden());
    }
    let scope = caller.key.tenants.clone();
    let a = app.clone();
    Ok(Json(
        blocking(move || {
            let mut lines: BTreeMap<String, TenantLine> = BTreeMap::new();
            if let TenantScope::Only(ts) = &scope {
                for t in ts {
                    lines.insert(t.clone(), line(t));
                }
            }
            for row in a.vault.stats(None)?.rows {
                if !scope.covers(&row.tenant) {
                    continue;
                }
                let l = lines.entry(row.tenant.clone()).or_insert_with(|| line(&row.tenant));
                l.records += row.records;
                l.bytes += row.bytes;
            }
            Ok(lines.into_values().collect())
        })
        .await?,
    ))
}

fn line(t: &str) -> TenantLine {
    TenantLine {
        tenant: t.to_string(),
        records: 0,
        bytes: 0,
    }
}

/// One stream and scope of a tenant.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct StreamLine {
    /// Stream as `name:version`.
    pub stream: String,
    /// Scope.
    pub scope: String,
    /// Records stored.
    pub records: u64,
    /// Bytes of their stored fields.
    pub bytes: u64,
    /// Oldest event time.
    pub oldest: Option<String>,
    /// Newest event time.
    pub newest: Option<String>,
    /// The window in force (`30d`, `forever`).
    pub window: Option<String>,
    /// The action in force.
    pub action: Option<String>,
    /// The rule in force.
    pub rule: Option<String>,
    /// Records already past their window: what the next sweep removes.
    pub past_window: u64,
    /// Records past their window that a legal hold keeps.
    pub held: u64,
}

/// How much of the tenant's store is older than a window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgeBucket {
    /// The bucket (`0–7 d`, …, `> 365 d`).
    pub bucket: String,
    /// Lower bound in days.
    pub from_days: u64,
    /// Records in it (by number: a plan does not weigh records that stay
    /// in partitions it does not drop whole).
    pub records: u64,
}

/// The tenant's size after a sweep that covered it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SizePoint {
    /// When the sweep finished.
    pub at: String,
    /// Records stored after it.
    pub records: u64,
    /// Bytes stored after it.
    pub bytes: u64,
    /// The sweep's receipt.
    pub receipt: u64,
}

/// One tenant at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// Tenant.
    pub tenant: String,
    /// When this was computed.
    pub evaluated_at: String,
    /// Records stored.
    pub records: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Records past their window (the next sweep removes them).
    pub past_window: u64,
    /// Records past their window kept by a hold.
    pub held: u64,
    /// Per stream and scope.
    pub streams: Vec<StreamLine>,
    /// The store by age of the records.
    pub ages: Vec<AgeBucket>,
    /// When the age buckets were computed (they are reused for 5 minutes).
    pub ages_at: String,
    /// The tenant's size after each sweep (oldest first, the last 60).
    pub history: Vec<SizePoint>,
    /// The retention settings in force.
    #[schema(value_type = Object)]
    pub retention: serde_json::Value,
    /// The scheduled sweep: last run (time, result, receipt) and next run.
    #[schema(value_type = Object)]
    pub sweep: serde_json::Value,
}

/// What one tenant stores, how old it is, how much is past its window,
/// what is held, the sweeps' history and the next sweep.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/overview", tag = "records",
    params(("tenant" = String, Path, description = "tenant id")),
    responses((status = 200, description = "the tenant at a glance", body = Overview),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn overview(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Overview>, ApiError> {
    let tenant = caller.allow(Need::Read, &tenant)?;
    let a = app.clone();
    Ok(Json(
        blocking(move || Ok(overview_of(&a.vault, &a.ages, &tenant, now_us())?)).await?,
    ))
}

/// How long a tenant's age buckets are reused (µs): they cost a plan per
/// window on a large tenant and move by a day's worth of records a day.
const AGES_FOR_US: i64 = 5 * 60 * 1_000_000;

/// Age buckets per tenant, with when they were computed.
#[derive(Default)]
pub(crate) struct AgeCache(std::sync::Mutex<BTreeMap<String, (i64, Vec<AgeBucket>)>>);

impl AgeCache {
    fn get(&self, tenant: &str, now: i64) -> Option<(i64, Vec<AgeBucket>)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(tenant)
            .filter(|(at, _)| now - at < AGES_FOR_US && *at <= now)
            .cloned()
    }

    fn put(&self, tenant: &str, at: i64, ages: &[AgeBucket]) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 10_000 {
            m.clear();
        }
        m.insert(tenant.to_string(), (at, ages.to_vec()));
    }
}

/// Windows (days) that bound the age buckets.
const AGES: [u64; 5] = [7, 30, 90, 180, 365];

fn overview_of(v: &Vault, cache: &AgeCache, tenant: &TenantId, now: i64) -> lethe_vault::Result<Overview> {
    let mut streams: BTreeMap<(String, String), StreamLine> = BTreeMap::new();
    for row in v.stats(Some(tenant))?.rows {
        let l = streams.entry((row.stream.clone(), row.scope.clone())).or_default();
        l.stream = row.stream;
        l.scope = row.scope;
        l.records += row.records;
        l.bytes += row.bytes;
        l.oldest = l.oldest.take().into_iter().chain(row.oldest).min();
        l.newest = l.newest.take().into_iter().chain(row.newest).max();
    }
    let settings = v.retention_settings()?;
    let current = v.preview_under(&v.book_for(&settings), tenant, now)?;
    for g in &current.groups {
        let l = streams.entry((g.stream.clone(), g.scope.clone())).or_default();
        l.stream.clone_from(&g.stream);
        l.scope.clone_from(&g.scope);
        l.past_window += g.records;
        l.held += g.held;
        l.window = Some(g.window.clone());
        l.action = Some(g.action.clone());
        l.rule = Some(g.rule.clone());
    }
    let records: u64 = streams.values().map(|l| l.records).sum();
    let bytes: u64 = streams.values().map(|l| l.bytes).sum();
    let (ages_at, ages) = match cache.get(tenant.as_str(), now) {
        Some(hit) => hit,
        None => {
            let ages = age_buckets(v, &settings, tenant, records, now)?;
            cache.put(tenant.as_str(), now, &ages);
            (now, ages)
        }
    };
    // Sweep receipts, read once: the size history and the retention view.
    let sweeps = v.entries_of_kinds(&["receipt.sweep"])?;
    let mut history = Vec::new();
    for e in &sweeps {
        let Ok(body) = serde_json::from_str::<serde_json::Value>(&e.body) else {
            continue;
        };
        if let Some(s) = body["stored_after"].get(tenant.as_str()) {
            history.push(SizePoint {
                at: format_ts(e.ts_us),
                records: s["records"].as_u64().unwrap_or(0),
                bytes: s["bytes"].as_u64().unwrap_or(0),
                receipt: e.seq,
            });
        }
    }
    let skip = history.len().saturating_sub(60);
    history.drain(..skip);
    let sweep = v
        .schedule_status(now)?
        .into_iter()
        .find(|j| j.job == "sweep")
        .map(|j| serde_json::to_value(j).expect("status serializes"))
        .unwrap_or(serde_json::Value::Null);
    let view = super::retention::view_with(v, tenant, settings, &sweeps);
    // Streams with nothing past their window show the tenant's rule as a
    // whole (a stream-specific rule shows once it has expired records).
    let window = match (view.enabled, view.retention_days) {
        (false, _) => "off".to_string(),
        (true, Some(d)) => format!("{d}d"),
        (true, None) => "forever".to_string(),
    };
    let action = view.action.clone();
    for l in streams.values_mut().filter(|l| l.rule.is_none()) {
        l.window = Some(window.clone());
        l.action = Some(action.clone());
    }
    let retention = serde_json::to_value(view).expect("view serializes");
    Ok(Overview {
        tenant: tenant.to_string(),
        evaluated_at: format_ts(now),
        records,
        bytes,
        past_window: current.deleted + current.anonymized,
        held: current.held,
        streams: streams.into_values().collect(),
        ages,
        ages_at: format_ts(ages_at),
        history,
        retention,
        sweep,
    })
}

/// The tenant's records by age: what a window of each length would remove
/// (one plan per window), differenced.
fn age_buckets(
    v: &Vault,
    settings: &lethe_vault::settings::Settings,
    tenant: &TenantId,
    records: u64,
    now: i64,
) -> lethe_vault::Result<Vec<AgeBucket>> {
    let mut older: Vec<u64> = Vec::with_capacity(AGES.len());
    for days in AGES {
        let setting = TenantSetting {
            keep: Keep {
                enabled: true,
                window: Window::Span(days * 86_400),
                action: PolicyAction::Delete,
                archive_target: None,
                archive_window: None,
            },
            overrides: Vec::new(),
        };
        let book = v.book_with_setting(settings, tenant, Some(&setting))?;
        let r = v.preview_under(&book, tenant, now)?;
        older.push(r.deleted + r.anonymized + r.held);
    }
    let mut ages = Vec::new();
    let mut upper = records;
    let mut from = 0;
    for (days, older) in AGES.iter().zip(older) {
        ages.push(AgeBucket {
            bucket: format!("{from}–{days} d"),
            from_days: from,
            records: upper.saturating_sub(older),
        });
        upper = older;
        from = *days;
    }
    ages.push(AgeBucket {
        bucket: format!("> {from} d"),
        from_days: from,
        records: upper,
    });
    Ok(ages)
}
