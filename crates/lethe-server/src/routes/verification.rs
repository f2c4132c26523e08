//! Verification as a job: `POST /v1/verify` starts one (the whole store, or
//! one tenant's chains) and answers `202`; its state and result are read
//! at `GET /v1/verifications/{id}`. Results are entered in the ledger
//! (`verify.result`) under the key that asked. Jobs are kept in memory (the
//! last 100): a restart forgets them — their ledger entries remain.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use lethe_core::record::format_ts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::now_us;
use crate::auth::{Caller, Need};
use crate::body::JsonBody;
use crate::problem::ApiError;
use crate::App;

/// Verification jobs kept.
const KEPT: usize = 100;

/// A verification job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Verification {
    /// Job id.
    pub id: String,
    /// The tenant whose chains are walked (`null`: every tenant).
    pub tenant: Option<String>,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// When it started.
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Whether everything verified.
    pub ok: Option<bool>,
    /// The report: records checked, removals explained, chains,
    /// checkpoints, ledger entries, unexplained gaps (of this tenant).
    #[schema(value_type = Object)]
    pub report: Option<serde_json::Value>,
    /// The `verify.result` ledger entry.
    pub ledger_seq: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Verification jobs, newest last.
#[derive(Default)]
pub(crate) struct Verifications(Mutex<VecDeque<Verification>>);

impl Verifications {
    fn put(&self, v: Verification) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = q.iter().position(|x| x.id == v.id) {
            q[i] = v;
            return;
        }
        if q.len() >= KEPT {
            q.pop_front();
        }
        q.push_back(v);
    }

    fn get(&self, id: &str) -> Option<Verification> {
        let q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().find(|v| v.id == id).cloned()
    }
}

/// What to verify.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Only this tenant's chains (the ledger is always checked whole).
    /// Without it the key must span every tenant.
    pub tenant: Option<String>,
}

/// Starts a verification (`auditor` and up): `202` with `Location`.
#[utoipa::path(post, path = "/v1/verify", tag = "evidence",
    request_body = VerifyRequest,
    responses((status = 202, description = "started; follow Location", body = Verification),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn start(
    State(app): State<Arc<App>>,
    caller: Caller,
    JsonBody(req): JsonBody<VerifyRequest>,
) -> Result<(StatusCode, HeaderMap, Json<Verification>), ApiError> {
    let tenant = match &req.tenant {
        Some(t) => Some(caller.allow(Need::Read, t)?),
        None => {
            caller.allow_all(Need::Read)?;
            None
        }
    };
    let job = Verification {
        id: hex::encode(rand::random::<[u8; 12]>()),
        tenant: tenant.as_ref().map(|t| t.to_string()),
        state: "running".into(),
        started_at: format_ts(now_us()),
        finished_at: None,
        ok: None,
        report: None,
        ledger_seq: None,
        error: None,
    };
    app.verifications.put(job.clone());
    let (a, actor, mut done) = (app.clone(), caller.actor(), job.clone());
    tokio::task::spawn_blocking(move || {
        match a.vault.verify_recorded(&actor, tenant.as_ref(), now_us(), &now_us) {
            Ok((r, seq)) => {
                done.ok = Some(r.ok());
                done.report = Some(serde_json::to_value(&r).expect("report serializes"));
                done.ledger_seq = seq.ok();
                done.state = "done".into();
            }
            Err(e) => {
                tracing::error!(job = %done.id, "verification failed: {e}");
                done.state = "failed".into();
                done.error = Some("the verification could not run; see the server's log".into());
            }
        }
        done.finished_at = Some(format_ts(now_us()));
        a.verifications.put(done);
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&format!("/v1/verifications/{}", job.id)).expect("hex is a valid header"),
    );
    Ok((StatusCode::ACCEPTED, headers, Json(job)))
}

/// A verification job and, when done, its result. `404` for a job the key
/// could not have started, as for one that does not exist.
#[utoipa::path(get, path = "/v1/verifications/{id}", tag = "evidence",
    params(("id" = String, Path, description = "job id")),
    responses((status = 200, description = "the job", body = Verification),
              (status = 404, description = "no such job (for this key)", body = crate::problem::Problem)))]
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Verification>, ApiError> {
    let allowed = |v: &Verification| match &v.tenant {
        Some(t) => caller.allow(Need::Read, t).is_ok(),
        None => caller.allow_all(Need::Read).is_ok(),
    };
    match app.verifications.get(&id) {
        Some(v) if allowed(&v) => Ok(Json(v)),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "no such verification")),
    }
}
