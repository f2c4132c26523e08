//! API keys through the API (super_admin only): list, create, revoke.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use lethe_vault::access::{ApiKey, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{blocking, now_us};
use crate::auth::{Caller, Need};
use crate::body::JsonBody;
use crate::problem::ApiError;
use crate::App;

/// Every API key (never a secret), oldest first.
#[utoipa::path(get, path = "/v1/keys", tag = "keys",
    responses((status = 200, description = "keys", body = Vec<Object>),
              (status = 403, description = "not a super_admin key", body = crate::problem::Problem)))]
pub(crate) async fn list(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Vec<ApiKey>>, ApiError> {
    caller.allow_all(Need::Everything)?;
    let a = app.clone();
    Ok(Json(blocking(move || Ok(a.vault.api_keys()?)).await?))
}

/// A key to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// What the key is for.
    pub name: String,
    /// `ingest`, `auditor`, `admin` or `super_admin`.
    pub role: String,
    /// Tenants it may act on; `["*"]` for all.
    pub tenants: Vec<String>,
    /// Lifetime (`90d`, `12h`); absent: until revoked.
    pub expires_in: Option<String>,
}

/// A key just made: its token is shown this once and stored nowhere.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// The key.
    #[schema(value_type = Object)]
    pub key: ApiKey,
    /// The bearer token `lethe_<id>_<secret>`.
    pub token: String,
}

/// Makes an API key (entered in the ledger under the calling key).
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = NewKey,
    responses((status = 201, description = "the key and its token (shown once)", body = Created),
              (status = 400, description = "a bad field", body = crate::problem::Problem),
              (status = 403, description = "not a super_admin key", body = crate::problem::Problem)))]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    JsonBody(k): JsonBody<NewKey>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    caller.allow_all(Need::Everything)?;
    let role = Role::parse(&k.role).map_err(|e| ApiError::field("role", e))?;
    let now = now_us();
    let expires_us = match k.expires_in.as_deref() {
        None => None,
        Some(s) => match s.parse::<lethe_core::Window>() {
            Ok(w @ lethe_core::Window::Span(_)) => w.micros().map(|m| now + m),
            _ => {
                return Err(ApiError::field(
                    "expires_in",
                    "expires_in must be a duration such as `90d`",
                ))
            }
        },
    };
    let actor = caller.actor();
    let a = app.clone();
    let made = blocking(move || {
        Ok(a.vault
            .create_api_key(&k.name, role, &k.tenants, expires_us, &actor, now)?)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            key: made.key,
            token: made.token,
        }),
    ))
}

/// Revokes a key at once (entered in the ledger under the calling key).
#[utoipa::path(post, path = "/v1/keys/{id}/revoke", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    responses((status = 200, description = "the revoked key", body = Object),
              (status = 400, description = "no such key", body = crate::problem::Problem),
              (status = 403, description = "not a super_admin key", body = crate::problem::Problem)))]
pub(crate) async fn revoke(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, ApiError> {
    caller.allow_all(Need::Everything)?;
    let actor = caller.actor();
    let a = app.clone();
    Ok(Json(
        blocking(move || Ok(a.vault.revoke_api_key(&id, &actor, now_us())?)).await?,
    ))
}
