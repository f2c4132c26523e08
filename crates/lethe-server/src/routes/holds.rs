//! Legal holds of one tenant: list, set, release (each a ledger entry
//! under the calling key).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use lethe_vault::hold::{HoldRequest, HoldSet, HoldView};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{blocking, now_us};
use crate::auth::{Caller, Need};
use crate::body::JsonBody;
use crate::problem::ApiError;
use crate::App;

/// The tenant's holds, active and past.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/holds", tag = "holds",
    params(("tenant" = String, Path, description = "tenant id")),
    responses((status = 200, description = "holds, oldest first", body = Vec<Object>),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<HoldView>>, ApiError> {
    let tenant = caller.allow(Need::Read, &tenant)?;
    let a = app.clone();
    Ok(Json(
        blocking(move || Ok(a.vault.holds(Some(&tenant), now_us())?)).await?,
    ))
}

/// A hold to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    /// Why (required: the authority for keeping data past its policy).
    pub reason: String,
    /// Only this data subject's records (kept only as a pseudonym).
    pub subject: Option<String>,
    /// Only this scope.
    pub scope: Option<String>,
    /// Event time ≥ this (RFC 3339).
    pub since: Option<String>,
    /// Event time < this (RFC 3339).
    pub until: Option<String>,
    /// When the hold lapses by itself (RFC 3339).
    pub expires: Option<String>,
}

/// Sets a legal hold: sweeps and erasures leave what it covers alone.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/holds", tag = "holds",
    params(("tenant" = String, Path, description = "tenant id")),
    request_body = NewHold,
    responses((status = 201, description = "the hold, with the salt of its subject commitment", body = Object),
              (status = 400, description = "a bad field", body = crate::problem::Problem),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    JsonBody(h): JsonBody<NewHold>,
) -> Result<(StatusCode, Json<HoldSet>), ApiError> {
    let tenant = caller.allow(Need::Administer, &tenant)?;
    if h.reason.trim().is_empty() {
        return Err(ApiError::field(
            "reason",
            "reason is required: the authority for keeping the data",
        ));
    }
    let req = HoldRequest {
        tenant,
        subject: h.subject,
        scope: h.scope,
        since_us: super::time_param("since", &h.since)?,
        until_us: super::time_param("until", &h.until)?,
        reason: h.reason,
        expires_us: super::time_param("expires", &h.expires)?,
        actor: caller.actor(),
    };
    let a = app.clone();
    let set = blocking(move || Ok(a.vault.add_hold(&req, now_us())?)).await?;
    Ok((StatusCode::CREATED, Json(set)))
}

/// Why a hold ends.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// Why the hold ends (kept in the ledger).
    pub reason: String,
}

/// Releases one of the tenant's holds.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/holds/{id}/release", tag = "holds",
    params(("tenant" = String, Path, description = "tenant id"), ("id" = i64, Path, description = "hold id")),
    request_body = Release,
    responses((status = 200, description = "the released hold", body = Object),
              (status = 404, description = "no such hold for this tenant", body = crate::problem::Problem),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn release(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((tenant, id)): Path<(String, i64)>,
    JsonBody(r): JsonBody<Release>,
) -> Result<Json<HoldView>, ApiError> {
    let tenant = caller.allow(Need::Administer, &tenant)?;
    if r.reason.trim().is_empty() {
        return Err(ApiError::field("reason", "reason is required: why the hold ends"));
    }
    let actor = caller.actor();
    let a = app.clone();
    let v = blocking(move || {
        let now = now_us();
        // A hold of another tenant is "not found" for this one.
        if !a.vault.holds(Some(&tenant), now)?.iter().any(|h| h.id == id) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no hold with this id for this tenant",
            ));
        }
        Ok(a.vault.release_hold(id, &r.reason, &actor, now)?)
    })
    .await?;
    Ok(Json(v))
}
