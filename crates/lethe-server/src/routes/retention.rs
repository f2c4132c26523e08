//! Retention of one tenant: the settings in force and where each comes
//! from, what the sweeps removed, and a sweep run now.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use lethe_core::policy::{PolicyBook, RetentionRule};
use lethe_core::record::format_ts;
use lethe_core::TenantId;
use lethe_vault::Vault;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{blocking, now_us};
use crate::auth::{Caller, Need};
use crate::problem::ApiError;
use crate::App;

/// A retention rule that applies to (some of) the tenant's records.
#[derive(Debug, Serialize, ToSchema)]
pub struct EffectivePolicy {
    /// Rule name (`default` for the default, `api:<tenant>` for the API setting).
    pub name: String,
    /// What it selects besides the tenant (`stream`, `scope`, `classification`); empty: everything.
    #[schema(value_type = Object)]
    pub selects: serde_json::Value,
    /// Whether it removes anything.
    pub enabled: bool,
    /// How long records are kept (`30d`, `forever`).
    pub window: String,
    /// Whole days of the window, when it is finite.
    pub window_days: Option<f64>,
    /// `delete`, `anonymize` or `archive_then_delete`.
    pub action: String,
    /// Where the rule comes from: `api` (a setting made through this API)
    /// or `lethe.toml` (the configuration file).
    pub source: String,
    /// Whether it governs any of the tenant's records: a `lethe.toml` rule
    /// does not while the tenant has an API setting.
    pub in_force: bool,
}

/// A tenant's retention settings and history.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionView {
    /// Tenant.
    pub tenant: String,
    /// Whether any rule that applies to the tenant removes records.
    pub enabled: bool,
    /// The window of the rule for the tenant as a whole, in days (`null`: forever).
    pub retention_days: Option<f64>,
    /// The action of that rule.
    pub action: String,
    /// When the last sweep that covered this tenant finished (RFC 3339).
    pub last_purge_at: Option<String>,
    /// Records of this tenant removed (deleted or anonymized) by sweeps, in all.
    pub purged_total: u64,
    /// The tenant's API setting, if it has one: `enabled`, `window`,
    /// `action`, archive fields, `version`, `set_by`, `set_at`, `ledger_seq`.
    #[schema(value_type = Object)]
    pub setting: Option<serde_json::Value>,
    /// Every rule that applies to some of the tenant's records, most general first.
    pub policies: Vec<EffectivePolicy>,
}

pub(super) fn applies_to(rule: &RetentionRule, tenant: &TenantId) -> bool {
    rule.selector.tenant.as_ref().is_none_or(|t| t == tenant)
}

fn days(w: lethe_core::Window) -> Option<f64> {
    match w {
        lethe_core::Window::Span(s) => Some(s as f64 / 86_400.0),
        lethe_core::Window::Forever => None,
    }
}

fn effective(rule: &RetentionRule, name: &str, source: &str, in_force: bool) -> EffectivePolicy {
    let s = &rule.selector;
    let mut selects = serde_json::Map::new();
    if let Some(v) = &s.stream {
        selects.insert("stream".into(), v.clone().into());
    }
    if let Some(v) = &s.scope {
        selects.insert("scope".into(), v.clone().into());
    }
    if let Some(v) = &s.classification {
        selects.insert("classification".into(), v.as_str().into());
    }
    EffectivePolicy {
        name: name.to_string(),
        selects: selects.into(),
        enabled: rule.enabled,
        window: rule.window.to_string(),
        window_days: days(rule.window),
        action: rule.action_name().to_string(),
        source: source.into(),
        in_force,
    }
}

/// The tenant's settings as the next sweep applies them (the
/// configuration, and the API setting over it), and its sweep history
/// from the ledger's receipts.
fn view(vault: &Vault, tenant: &TenantId) -> lethe_vault::Result<RetentionView> {
    let sweeps = vault.entries_of_kinds(&["receipt.sweep"])?;
    Ok(view_with(vault, tenant, vault.retention_settings()?, &sweeps))
}

/// [`view`] over settings and sweep receipts the caller read already.
pub(super) fn view_with(
    vault: &Vault,
    tenant: &TenantId,
    mut settings: lethe_vault::settings::Settings,
    sweeps: &[lethe_core::ledger::Entry],
) -> RetentionView {
    let book = vault.book_for(&settings);
    let setting = settings.tenants.remove(tenant.as_str());
    // The tenant's API rules: its overrides (most specific first) and, last,
    // its tenant-wide rule.
    let api: Vec<&RetentionRule> = book.overrides.iter().filter(|r| applies_to(r, tenant)).collect();
    let over = api.last().copied();
    let mut policies = Vec::new();
    if let Some(o) = over {
        policies.push(effective(o, &o.name, "api", true));
    }
    policies.extend(api.iter().rev().skip(1).map(|r| effective(r, &r.name, "api", true)));
    policies.push(effective(&book.default, "default", "lethe.toml", over.is_none()));
    let mut rules: Vec<&RetentionRule> = book.retention.iter().filter(|r| applies_to(r, tenant)).collect();
    rules.sort_by_key(|r| r.selector.specificity());
    policies.extend(
        rules
            .iter()
            .map(|r| effective(r, &r.name, "lethe.toml", over.is_none())),
    );
    // The rule for the tenant as a whole: its API setting, or one that
    // selects nothing but (possibly) the tenant; the most specific wins,
    // as in the sweep.
    let whole = over.unwrap_or_else(|| {
        book.retention
            .iter()
            .filter(|r| {
                applies_to(r, tenant)
                    && r.selector.stream.is_none()
                    && r.selector.scope.is_none()
                    && r.selector.classification.is_none()
            })
            .max_by_key(|r| r.selector.specificity())
            .unwrap_or(&book.default)
    });
    let enabled = retention_enabled(&book, tenant);
    let mut last = None;
    let mut purged = 0u64;
    for e in sweeps {
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap_or_default();
        let covers = match body.get("tenant") {
            Some(serde_json::Value::String(t)) => t == tenant.as_str(),
            _ => true,
        };
        if !covers {
            continue;
        }
        last = Some(e.ts_us);
        if let Some(groups) = body.get("groups").and_then(|g| g.as_array()) {
            purged += groups
                .iter()
                .filter(|g| g.get("tenant").and_then(|t| t.as_str()) == Some(tenant.as_str()))
                .filter_map(|g| g.get("records").and_then(|r| r.as_u64()))
                .sum::<u64>();
        }
    }
    RetentionView {
        tenant: tenant.to_string(),
        enabled,
        retention_days: if whole.enabled { days(whole.window) } else { None },
        action: whole.action_name().to_string(),
        last_purge_at: last.map(format_ts),
        purged_total: purged,
        setting: setting.map(|s| serde_json::to_value(s).expect("settings serialize")),
        policies,
    }
}

/// Whether any rule of `book` that governs some of the tenant's records
/// removes them.
pub(super) fn retention_enabled(book: &PolicyBook, tenant: &TenantId) -> bool {
    let removes = |r: &RetentionRule| r.enabled && r.window != lethe_core::Window::Forever;
    let mut api = book.overrides.iter().filter(|r| applies_to(r, tenant)).peekable();
    if api.peek().is_some() {
        return api.any(removes);
    }
    std::iter::once(&book.default)
        .chain(book.retention.iter().filter(|r| applies_to(r, tenant)))
        .any(removes)
}

/// The tenant's retention settings, where each comes from, and what sweeps removed.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/retention", tag = "retention",
    params(("tenant" = String, Path, description = "tenant id")),
    responses((status = 200, description = "settings in force", body = RetentionView),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn get_retention(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<RetentionView>, ApiError> {
    let tenant = caller.allow(Need::Read, &tenant)?;
    let a = app.clone();
    Ok(Json(blocking(move || Ok(view(&a.vault, &tenant)?)).await?))
}

/// [`view`] for the settings routes.
pub(super) fn view_of(vault: &Vault, tenant: &TenantId) -> lethe_vault::Result<RetentionView> {
    view(vault, tenant)
}

/// Options of a sweep run now.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct SweepParams {
    /// Only show what the sweep would remove (`true`), changing nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Runs the tenant's retention now (or, `dry_run=true`, shows exactly what
/// it would remove) and returns the receipt. `400` when no rule that
/// applies to the tenant removes anything.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/sweep", tag = "retention",
    params(("tenant" = String, Path, description = "tenant id"), SweepParams),
    responses((status = 200, description = "the sweep's report, with its receipt's ledger entry", body = Object),
              (status = 400, description = "retention is not enabled for the tenant", body = crate::problem::Problem),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn sweep(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(p): Query<SweepParams>,
) -> Result<Json<lethe_vault::sweep::SweepReport>, ApiError> {
    let tenant = caller.allow(Need::Administer, &tenant)?;
    let actor = caller.actor();
    let a = app.clone();
    let report = blocking(move || {
        if !retention_enabled(&a.vault.current_book()?, &tenant) {
            return Err(ApiError::field(
                "tenant",
                "retention is not enabled for this tenant: no rule that applies to it removes records",
            ));
        }
        let now = now_us();
        let r = a
            .vault
            .sweep_by(&actor, now, Some(&tenant), p.dry_run, &now_us, &|_, _| {});
        // What the sweep built and freed goes back, succeeded or not.
        crate::allocator::release_free_memory();
        let r = r?;
        if !p.dry_run {
            a.metrics.sweep(
                r.deleted + r.anonymized,
                r.archived.as_ref().map_or(0, |x| x.bytes),
                r.failing.len() as u64,
            );
        }
        Ok(r)
    })
    .await?;
    Ok(Json(report))
}
