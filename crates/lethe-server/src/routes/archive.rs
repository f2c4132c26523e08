//! One tenant's archive: what archived objects it has, a check of them
//! against their manifests and the ledger, and bringing archived records
//! back into the store for a while (a restoration).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use lethe_vault::archive::format::ObjectKey;
use lethe_vault::archive::inventory::{ArchiveCheck, ArchiveFilter, Listed};
use lethe_vault::archive::restore::RestoredSet;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{blocking, now_us, time_param, window_param};
use crate::auth::{Caller, Need};
use crate::body::JsonBody;
use crate::problem::ApiError;
use crate::App;

/// Which archived objects.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveParams {
    /// Only this stream (`name:version`).
    pub stream: Option<String>,
    /// Only objects with records at or after this event time (RFC 3339).
    pub since: Option<String>,
    /// Only objects with records before this event time (RFC 3339).
    pub until: Option<String>,
}

impl ArchiveParams {
    fn filter(&self, tenant: &str) -> Result<ArchiveFilter, ApiError> {
        Ok(ArchiveFilter {
            tenant: Some(tenant.to_string()),
            stream: self.stream.clone(),
            since_us: time_param("since", &self.since)?,
            until_us: time_param("until", &self.until)?,
        })
    }
}

/// The tenant's archived objects (each with its manifest: records, event
/// times, size, SHA-256, the sweep that archived it), by target.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/archive", tag = "archive",
    params(("tenant" = String, Path, description = "tenant id"), ArchiveParams),
    responses((status = 200, description = "archived objects", body = Vec<Object>),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(p): Query<ArchiveParams>,
) -> Result<Json<Vec<Listed>>, ApiError> {
    let tenant = caller.allow(Need::Read, &tenant)?;
    let f = p.filter(tenant.as_str())?;
    let a = app.clone();
    Ok(Json(blocking(move || Ok(a.vault.archive_ls(&f)?)).await?))
}

/// Reads back every archived object of the tenant and checks it against its
/// manifest (size, SHA-256, records) and the manifest against the ledger;
/// the outcome is entered in the ledger (`archive.verify_result`) under the key.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/archive/verify", tag = "archive",
    params(("tenant" = String, Path, description = "tenant id"), ArchiveParams),
    responses((status = 200, description = "what was checked and every problem", body = Object),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn verify(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(p): Query<ArchiveParams>,
) -> Result<Json<ArchiveCheck>, ApiError> {
    let tenant = caller.allow(Need::Read, &tenant)?;
    let f = p.filter(tenant.as_str())?;
    let a = app.clone();
    let mut check = blocking(move || Ok(a.vault.archive_verify(&f, &|_, _| {})?)).await?;
    // Objects of other tenants (one without a manifest is not filtered by
    // its manifest) are theirs to see.
    let mine = ObjectKey::prefix(tenant.as_str(), None);
    check.problems.retain(|p| p.object.starts_with(&mine));
    // A check of the archive is evidence too: entered in the ledger under
    // the key (what the dashboard shows as the last archive verification).
    let body = serde_json::json!({
        "ok": check.problems.is_empty(),
        "objects_checked": check.objects_checked,
        "records_checked": check.records_checked,
        "bytes_read": check.bytes_read,
        "problems_total": check.problems.len(),
        "problems": check.problems.iter().take(100).collect::<Vec<_>>(),
    });
    let (a, actor, t) = (app.clone(), caller.actor(), tenant.to_string());
    blocking(move || {
        Ok(a.vault
            .record(now_us(), &actor, "archive.verify_result", Some(&t), &body)?)
    })
    .await?;
    Ok(Json(check))
}

/// A restoration to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Why (kept in the ledger's `archive.restore` entry).
    pub reason: String,
    /// Only this stream (`name:version`).
    pub stream: Option<String>,
    /// Records at or after this event time (RFC 3339).
    pub since: Option<String>,
    /// Records before this event time (RFC 3339).
    pub until: Option<String>,
    /// How long the restored copies stay (default `[archive] restore_window`).
    pub window: Option<String>,
}

/// Brings archived records of the tenant back into the store as a
/// restoration (read with `restored=true`, reached by erasures, removed
/// whole when its window ends). Recorded in the ledger under the key.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/archive/restore", tag = "archive",
    params(("tenant" = String, Path, description = "tenant id")),
    request_body = RestoreRequest,
    responses((status = 201, description = "the restoration", body = Object),
              (status = 400, description = "a bad field", body = crate::problem::Problem),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn restore(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    JsonBody(r): JsonBody<RestoreRequest>,
) -> Result<(StatusCode, Json<RestoredSet>), ApiError> {
    let tenant = caller.allow(Need::Administer, &tenant)?;
    if r.reason.trim().is_empty() {
        return Err(ApiError::field("reason", "reason is required"));
    }
    let window = window_param("window", &r.window)?;
    let f = ArchiveFilter {
        tenant: Some(tenant.to_string()),
        stream: r.stream,
        since_us: time_param("since", &r.since)?,
        until_us: time_param("until", &r.until)?,
    };
    let (a, actor) = (app.clone(), caller.actor());
    let set = blocking(move || Ok(a.vault.archive_restore_into(&f, window, &actor, &r.reason, now_us())?)).await?;
    Ok((StatusCode::CREATED, Json(set)))
}
