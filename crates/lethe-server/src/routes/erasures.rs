//! Erasure as a job: an exact preview bound to a `preview_id`, the job
//! accepted against it (`202` and `Location`), and the job's state until
//! its receipt. Jobs survive a restart (see `lethe_vault::erasure`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use lethe_core::record::format_ts;
use lethe_vault::erasure::ErasureJob;
use lethe_vault::purge::{PurgePreview, PurgeRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{blocking, now_us, time_param};
use crate::auth::{Caller, Need};
use crate::body::JsonBody;
use crate::problem::ApiError;
use crate::App;

/// How long a preview can be confirmed.
const PREVIEW_TTL: Duration = Duration::from_secs(30 * 60);

/// Previews kept at once (the oldest go first).
const MAX_PREVIEWS: usize = 1000;

/// A preview waiting to be confirmed. Kept in memory only — it names
/// subjects — so a restart forgets it (preview again).
struct Pending {
    request: PurgeRequest,
    preview: PurgePreview,
    made: Instant,
}

/// Previews by id.
#[derive(Default)]
pub(crate) struct Previews(Mutex<HashMap<String, Pending>>);

impl Previews {
    fn put(&self, p: Pending) -> String {
        let id = hex::encode(rand::random::<[u8; 16]>());
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, p| p.made.elapsed() < PREVIEW_TTL);
        if m.len() >= MAX_PREVIEWS {
            if let Some(oldest) = m.iter().min_by_key(|(_, p)| p.made).map(|(k, _)| k.clone()) {
                m.remove(&oldest);
            }
        }
        m.insert(id.clone(), p);
        id
    }

    /// Takes the preview `id` of `tenant` (a preview is confirmed once).
    fn take(&self, id: &str, tenant: &str) -> Option<Pending> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(id) {
            Some(p) if p.request.tenant.as_str() == tenant && p.made.elapsed() < PREVIEW_TTL => m.remove(id),
            _ => None,
        }
    }
}

/// What to erase: subjects, or a time range or scope (a whole tenant is
/// never selected by default).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureSelection {
    /// Data subject ids (their whole history: their keys are destroyed too).
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Only this stream (`name:version`).
    pub stream: Option<String>,
    /// Only this scope.
    pub scope: Option<String>,
    /// Event time ≥ this (RFC 3339).
    pub since: Option<String>,
    /// Event time < this (RFC 3339).
    pub until: Option<String>,
    /// Anonymize instead of delete.
    #[serde(default)]
    pub anonymize: bool,
}

/// An exact preview and the id that confirms it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewAnswer {
    /// Confirms this selection in `POST …/erasures` (valid 30 minutes, once).
    pub preview_id: String,
    /// Until when.
    pub expires_at: String,
    /// Exactly what the erasure removes now (as `lethe purge --dry-run`):
    /// `selected`, `held`, `held_by`, `bytes`, per stream and scope, keys to destroy.
    #[schema(value_type = Object)]
    pub preview: PurgePreview,
}

/// Previews an erasure: exactly what it would remove, and a `preview_id`
/// bound to this selection.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/erasures/preview", tag = "erasure",
    params(("tenant" = String, Path, description = "tenant id")),
    request_body = ErasureSelection,
    responses((status = 200, description = "the preview", body = PreviewAnswer),
              (status = 400, description = "a bad field", body = crate::problem::Problem),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn preview(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    JsonBody(sel): JsonBody<ErasureSelection>,
) -> Result<Json<PreviewAnswer>, ApiError> {
    let tenant = caller.allow(Need::Administer, &tenant)?;
    let mut req = PurgeRequest::new(tenant, "preview", "preview", &caller.actor());
    req.subjects = sel.subjects;
    req.stream = sel
        .stream
        .as_deref()
        .map(|s| s.parse())
        .transpose()
        .map_err(|e| ApiError::field("stream", format!("stream: {e}")))?;
    req.scope = sel.scope;
    req.since_us = time_param("since", &sel.since)?;
    req.until_us = time_param("until", &sel.until)?;
    req.anonymize = sel.anonymize;
    let a = app.clone();
    let (req, preview) = blocking(move || {
        let plan = a.vault.plan_purge(&req, now_us())?;
        Ok((req, plan.preview))
    })
    .await?;
    let id = app.previews.put(Pending {
        request: req,
        preview: preview.clone(),
        made: Instant::now(),
    });
    Ok(Json(PreviewAnswer {
        preview_id: id,
        expires_at: format_ts(now_us() + PREVIEW_TTL.as_micros() as i64),
        preview,
    }))
}

/// The confirmation of a preview.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureOrder {
    /// From `POST …/erasures/preview`.
    pub preview_id: String,
    /// The authority for the erasure (kept in the receipt).
    pub reason: String,
    /// The request's ticket or case reference (kept in the receipt; an
    /// erasure with the same ticket and selection is done once).
    pub ticket: String,
    /// Erase what is not under legal hold and report what was kept,
    /// instead of refusing with `409`.
    #[serde(default)]
    pub skip_held: bool,
    /// Search every partition in range for the subjects, not only those the
    /// subject filters name: the remedy when `verify` reports a filter that
    /// does not name a subject its partition holds.
    #[serde(default)]
    pub exhaustive: bool,
}

/// Accepts an erasure confirmed against its preview: `202` with
/// `Location: /v1/erasures/{id}`. `409` with the holds when records it
/// selects are under legal hold, unless `skip_held`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/erasures", tag = "erasure",
    params(("tenant" = String, Path, description = "tenant id")),
    request_body = ErasureOrder,
    responses((status = 202, description = "accepted; follow Location", body = Object),
              (status = 400, description = "a bad field, or an unknown or expired preview_id", body = crate::problem::Problem),
              (status = 403, description = "key not allowed", body = crate::problem::Problem),
              (status = 409, description = "records under legal hold", body = crate::problem::Problem)))]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    JsonBody(order): JsonBody<ErasureOrder>,
) -> Result<(StatusCode, HeaderMap, Json<ErasureJob>), ApiError> {
    let tenant = caller.allow(Need::Administer, &tenant)?;
    for (field, v) in [("reason", &order.reason), ("ticket", &order.ticket)] {
        if v.trim().is_empty() {
            return Err(ApiError::field(field, format!("{field} is required")));
        }
    }
    let Some(pending) = app.previews.take(&order.preview_id, tenant.as_str()) else {
        return Err(ApiError::field(
            "preview_id",
            "no such preview for this tenant, or it expired or was used: preview again",
        ));
    };
    if pending.preview.held > 0 && !order.skip_held {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{} selected record(s) are under legal hold; release the hold or send skip_held to erase the rest",
                pending.preview.held
            ),
        )
        .with_extra(serde_json::json!({"held": pending.preview.held, "holds": pending.preview.held_by})));
    }
    let mut req = pending.request;
    req.reason = order.reason;
    req.ticket = order.ticket;
    req.skip_held = order.skip_held;
    req.exhaustive = order.exhaustive;
    req.actor = caller.actor();
    let a = app.clone();
    let previewed = pending.preview;
    let job = blocking(move || Ok(a.vault.create_erasure_job(&req, &previewed, now_us())?)).await?;
    // The leading node runs it (at once when this node leads; otherwise
    // the leader finds it open within `server.leader_check`).
    if app.is_leading() {
        crate::jobs::start(&app, job.id.clone());
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/v1/erasures/{}", job.id)).expect("hex is a valid header"),
    );
    Ok((StatusCode::ACCEPTED, headers, Json(job)))
}

/// An erasure job: `pending → running → done | failed`, and when done its
/// receipt. `404` for a job of a tenant outside the key's scope, as for
/// one that does not exist.
#[utoipa::path(get, path = "/v1/erasures/{id}", tag = "erasure",
    params(("id" = String, Path, description = "job id")),
    responses((status = 200, description = "the job", body = Object),
              (status = 404, description = "no such job (for this key)", body = crate::problem::Problem)))]
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ErasureJob>, ApiError> {
    let a = app.clone();
    let job = blocking(move || Ok(a.vault.erasure_job(&id)?)).await?;
    match job {
        Some(j) if caller.allow(Need::Read, &j.tenant).is_ok() => Ok(Json(j)),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "no such erasure job")),
    }
}
