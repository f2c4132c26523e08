//! Changing a tenant's retention through the API: a proposed setting's
//! preview (what the next sweep would remove), the change itself (stored,
//! versioned, in the ledger under the key), and going back to `lethe.toml`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use lethe_core::config::PolicyAction;
use lethe_core::record::format_ts;
use lethe_core::{Classification, TenantId, Window};
use lethe_vault::settings::{Keep, SettingOverride, TenantSetting};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::retention::{retention_enabled, view_of, RetentionView};
use super::{blocking, now_us, time_param, window_param};
use crate::auth::{Caller, Need};
use crate::body::JsonBody;
use crate::problem::ApiError;
use crate::App;

/// Longest window accepted in `retention_days` (100 years; use
/// `window = "forever"` to keep records for ever).
const MAX_DAYS: u64 = 36_500;

/// A tenant's retention, as set through the API. Give the window as
/// `retention_days` (30, 60, 90, 180, 365 …) or as `window` (`36h`,
/// `90d`, `forever`), not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingBody {
    /// Whether the sweep removes anything of this tenant's.
    pub enabled: bool,
    /// Window in whole days.
    pub retention_days: Option<u64>,
    /// Window as a duration (`12h`, `90d`, `forever`).
    pub window: Option<String>,
    /// `delete` (default), `anonymize` or `archive_then_delete`.
    pub action: Option<String>,
    /// With `archive_then_delete`: the archive target (default `local`).
    pub archive_target: Option<String>,
    /// With `archive_then_delete`: how long the archived copy is kept (`365d`, `forever`).
    pub archive_window: Option<String>,
    /// Narrower rules for some of the tenant's records (a stream, scope or
    /// classification); the most specific that matches governs a record.
    #[serde(default)]
    pub overrides: Vec<OverrideBody>,
}

/// A rule within the tenant's setting for some of its records.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideBody {
    /// Only this stream (`requests`, or `requests:1`).
    pub stream: Option<String>,
    /// Only this scope.
    pub scope: Option<String>,
    /// Only this classification (`public`, `internal`, `confidential`, `restricted`).
    pub classification: Option<String>,
    /// Whether the sweep removes these records (default true).
    pub enabled: Option<bool>,
    /// Window in whole days.
    pub retention_days: Option<u64>,
    /// Window as a duration (`12h`, `90d`, `forever`).
    pub window: Option<String>,
    /// `delete` (default), `anonymize` or `archive_then_delete`.
    pub action: Option<String>,
    /// With `archive_then_delete`: the archive target (default `local`).
    pub archive_target: Option<String>,
    /// With `archive_then_delete`: how long the archived copy is kept.
    pub archive_window: Option<String>,
}

/// The window of a body: `retention_days` or `window`, exactly one;
/// errors name `prefix` + the field.
fn window_of(prefix: &str, days: Option<u64>, window: &Option<String>) -> Result<Window, ApiError> {
    let f = |name: &str| format!("{prefix}{name}");
    match (days, window) {
        (Some(_), Some(_)) => Err(ApiError::field(
            &f("window"),
            "give either retention_days or window, not both",
        )),
        (Some(d), None) => {
            if d == 0 || d > MAX_DAYS {
                return Err(ApiError::field(
                    &f("retention_days"),
                    format!(
                        "retention_days must be between 1 and {MAX_DAYS} (window = \"forever\" keeps records for ever)"
                    ),
                ));
            }
            Ok(Window::Span(d * 86_400))
        }
        (None, Some(_)) => Ok(window_param(&f("window"), window)?.expect("window is given")),
        (None, None) => Err(ApiError::field(
            &f("retention_days"),
            "retention_days (or window) is required",
        )),
    }
}

/// The action of a body (default delete); errors name `prefix` + `action`.
fn action_of(prefix: &str, action: Option<&str>) -> Result<PolicyAction, ApiError> {
    match action.unwrap_or("delete") {
        "delete" => Ok(PolicyAction::Delete),
        "anonymize" => Ok(PolicyAction::Anonymize),
        "archive_then_delete" => Ok(PolicyAction::ArchiveThenDelete),
        _ => Err(ApiError::field(
            &format!("{prefix}action"),
            "action must be delete, anonymize or archive_then_delete",
        )),
    }
}

impl OverrideBody {
    fn setting(self, i: usize) -> Result<SettingOverride, ApiError> {
        let prefix = format!("overrides[{i}].");
        let classification = match self.classification.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(c.parse::<Classification>().map_err(|_| {
                ApiError::field(
                    &format!("{prefix}classification"),
                    "classification must be public, internal, confidential or restricted",
                )
            })?),
        };
        let nonempty = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        Ok(SettingOverride {
            stream: nonempty(self.stream),
            scope: nonempty(self.scope),
            classification,
            keep: Keep {
                enabled: self.enabled.unwrap_or(true),
                window: window_of(&prefix, self.retention_days, &self.window)?,
                action: action_of(&prefix, self.action.as_deref())?,
                archive_target: self.archive_target,
                archive_window: window_param(&format!("{prefix}archive_window"), &self.archive_window)?,
            },
        })
    }
}

impl SettingBody {
    fn setting(self) -> Result<TenantSetting, ApiError> {
        let window = window_of("", self.retention_days, &self.window)?;
        let action = action_of("", self.action.as_deref())?;
        let archive_window = window_param("archive_window", &self.archive_window)?;
        let overrides = self
            .overrides
            .into_iter()
            .enumerate()
            .map(|(i, o)| o.setting(i))
            .collect::<Result<_, _>>()?;
        Ok(TenantSetting {
            keep: Keep {
                enabled: self.enabled,
                window,
                action,
                archive_target: self.archive_target,
                archive_window,
            },
            overrides,
        })
    }
}

/// The tenant's settings after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct Changed {
    /// The new settings version (one more per change, all tenants).
    pub version: u64,
    /// The ledger entry that records the change.
    pub ledger_seq: Option<u64>,
    /// When the change takes effect.
    pub in_force_from: &'static str,
    /// The tenant's retention as the next sweep applies it.
    pub retention: RetentionView,
}

/// Sets the tenant's retention: validated, stored in the vault under a new
/// version, entered in the ledger under the calling key, and applied from
/// the next sweep. It overrides every `lethe.toml` rule for this tenant.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/retention", tag = "retention",
    params(("tenant" = String, Path, description = "tenant id")),
    request_body = SettingBody,
    responses((status = 200, description = "the settings as the next sweep applies them", body = Changed),
              (status = 400, description = "a bad field", body = crate::problem::Problem),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn put_retention(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    JsonBody(body): JsonBody<SettingBody>,
) -> Result<Json<Changed>, ApiError> {
    let tenant = caller.allow(Need::Administer, &tenant)?;
    let setting = body.setting()?;
    let actor = caller.actor();
    let a = app.clone();
    Ok(Json(
        blocking(move || change(&a, &tenant, Some(setting), &actor)).await?,
    ))
}

/// Removes the tenant's API setting: `lethe.toml` governs it again from
/// the next sweep (a ledger entry under the calling key).
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/retention", tag = "retention",
    params(("tenant" = String, Path, description = "tenant id")),
    responses((status = 200, description = "the settings as the next sweep applies them", body = Changed),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn delete_retention(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Changed>, ApiError> {
    let tenant = caller.allow(Need::Administer, &tenant)?;
    let actor = caller.actor();
    let a = app.clone();
    Ok(Json(blocking(move || change(&a, &tenant, None, &actor)).await?))
}

fn change(app: &App, tenant: &TenantId, setting: Option<TenantSetting>, actor: &str) -> Result<Changed, ApiError> {
    let settings = app.vault.set_retention(tenant, setting, actor, now_us())?;
    let ledger_seq = settings.tenants.get(tenant.as_str()).map(|s| s.ledger_seq);
    Ok(Changed {
        version: settings.version,
        ledger_seq,
        in_force_from: "the next sweep (scheduled, or POST /v1/tenants/{tenant}/sweep)",
        retention: view_of(&app.vault, tenant)?,
    })
}

/// When to evaluate a preview.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct PreviewParams {
    /// The instant the policies are evaluated at (RFC 3339; default now):
    /// e.g. the next scheduled sweep's time.
    at: Option<String>,
}

/// What a proposed setting would remove.
#[derive(Debug, Serialize, ToSchema)]
pub struct Preview {
    /// Tenant.
    pub tenant: String,
    /// The instant the policies were evaluated at.
    pub evaluated_at: String,
    /// Whether the proposed setting removes anything at all.
    pub enabled: bool,
    /// Under the proposed setting: totals, per stream, and per
    /// stream/scope/classification group (records, held, bytes freed).
    #[schema(value_type = Object)]
    pub proposed: serde_json::Value,
    /// The same under the settings in force now, for comparison.
    #[schema(value_type = Object)]
    pub current: serde_json::Value,
}

/// Shows what a proposed setting would remove at the next sweep (counts and
/// bytes per stream and scope), beside what the current settings remove —
/// the dry run of a settings change. Nothing is stored.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/retention/preview", tag = "retention",
    params(("tenant" = String, Path, description = "tenant id"), PreviewParams),
    request_body = SettingBody,
    responses((status = 200, description = "the effect of the proposed setting", body = Preview),
              (status = 400, description = "a bad field", body = crate::problem::Problem),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn preview(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(p): Query<PreviewParams>,
    JsonBody(body): JsonBody<SettingBody>,
) -> Result<Json<Preview>, ApiError> {
    let tenant = caller.allow(Need::Administer, &tenant)?;
    let setting = body.setting()?;
    let at = time_param("at", &p.at)?.unwrap_or_else(now_us);
    let a = app.clone();
    Ok(Json(
        blocking(move || {
            let v = &a.vault;
            let settings = v.retention_settings()?;
            let proposed_book = v.book_with_setting(&settings, &tenant, Some(&setting))?;
            let current_book = v.book_for(&settings);
            let proposed = v.preview_under(&proposed_book, &tenant, at)?;
            let current = v.preview_under(&current_book, &tenant, at)?;
            Ok(Preview {
                tenant: tenant.to_string(),
                evaluated_at: format_ts(at),
                enabled: retention_enabled(&proposed_book, &tenant),
                proposed: shape(&proposed),
                current: shape(&current),
            })
        })
        .await?,
    ))
}

fn shape(r: &lethe_vault::sweep::SweepReport) -> serde_json::Value {
    serde_json::json!({
        "deleted": r.deleted,
        "anonymized": r.anonymized,
        "held": r.held,
        "bytes_freed": r.bytes_freed,
        "per_stream": r.per_stream,
        "groups": r.groups,
    })
}
