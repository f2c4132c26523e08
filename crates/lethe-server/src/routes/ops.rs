//! Operations routes: liveness, readiness, metrics, the OpenAPI document.
//! Liveness, readiness and the document need no key; metrics name every
//! tenant, so they need a reading key that spans all tenants (Prometheus
//! sends it with `authorization` in its scrape configuration).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::{blocking, now_us};
use crate::auth::{Caller, Need};
use crate::problem::ApiError;
use crate::App;

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(),
    responses((status = 200, description = "alive", body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Ready: the store is open and start-up recovery finished.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(),
    responses((status = 200, description = "ready", body = String),
              (status = 503, description = "recovering", body = crate::problem::Problem)))]
pub(crate) async fn readyz(State(app): State<Arc<App>>) -> Result<&'static str, ApiError> {
    if app.is_ready() {
        Ok("ready")
    } else {
        Err(ApiError::busy("recovering interrupted work", 1))
    }
}

/// Prometheus text exposition of the service's counters and what the store
/// holds (an `auditor` key or above that spans every tenant).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn metrics(State(app): State<Arc<App>>, caller: Caller) -> Result<impl IntoResponse, ApiError> {
    caller.allow_all(Need::Read)?;
    let a = app.clone();
    let now = now_us();
    let (stats, schedule) = blocking(move || Ok((a.vault.stats(None)?, a.vault.schedule_status(now)?))).await?;
    let mut body = app.metrics.render(&stats, &schedule, now);
    // Which node of a cluster on one store runs the schedule and the jobs.
    body.push_str(&format!(
        "# HELP lethe_leader Whether this node leads (runs the schedule and the erasure jobs).\n\
         # TYPE lethe_leader gauge\nlethe_leader {}\n",
        u8::from(app.is_leading())
    ));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    ))
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(),
    responses((status = 200, description = "the OpenAPI document", body = Object)))]
pub(crate) async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(super::openapi())
}

/// A scheduled job's last run and next run.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ScheduledJob {
    /// `sweep` or `verify`.
    job: String,
    /// Cron expression (UTC) or `off`.
    schedule: String,
    /// The last run: `scheduled_for`, `started_at`, `finished_at`,
    /// `duration_ms`, `result` (success, partial, gaps, failed), `receipt`
    /// (ledger sequence number of its receipt or result entry), `detail`.
    #[schema(value_type = Object)]
    last: Option<serde_json::Value>,
    /// When a run last succeeded.
    last_success_at: Option<String>,
    /// When it runs next (in the past: due now; the next server start runs it).
    next_at: Option<String>,
}

/// The scheduled sweep and verification: last run (time, result, receipt)
/// and next run. Needs a reading key that spans every tenant (a run covers them all).
#[utoipa::path(get, path = "/v1/schedule", tag = "operations",
    responses((status = 200, description = "every scheduled job", body = Vec<ScheduledJob>),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn schedule(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Vec<ScheduledJob>>, ApiError> {
    caller.allow_all(Need::Read)?;
    let a = app.clone();
    let jobs = blocking(move || Ok(a.vault.schedule_status(now_us())?)).await?;
    Ok(Json(
        jobs.into_iter()
            .map(|j| ScheduledJob {
                job: j.job.to_string(),
                schedule: j.schedule,
                last: j.last.map(|l| serde_json::to_value(l).expect("serializes")),
                last_success_at: j.last_success_at,
                next_at: j.next_at,
            })
            .collect(),
    ))
}
