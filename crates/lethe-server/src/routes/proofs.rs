//! Merkle proofs of one tenant's records: inclusion of a record in a signed
//! checkpoint, consistency between two checkpoints, and the checkpoints
//! themselves. Check them offline with `lethe proof check` and the public key.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use lethe_vault::proof::Proof;
use serde::Deserialize;
use utoipa::IntoParams;

use super::blocking;
use crate::auth::{Caller, Need};
use crate::problem::ApiError;
use crate::App;

/// Which record.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct InclusionParams {
    /// The record id (UUID).
    record: String,
    /// Prove against the checkpoint of exactly this tree size (default: the
    /// latest that covers the record).
    size: Option<u64>,
}

/// Proves a record of the tenant is in the tree a signed checkpoint commits
/// to. A record of another tenant is "not stored", as an unknown one.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/proofs/inclusion", tag = "evidence",
    params(("tenant" = String, Path, description = "tenant id"), InclusionParams),
    responses((status = 200, description = "the proof (as `lethe proof inclusion`)", body = Object),
              (status = 400, description = "not a record id, or no such record", body = crate::problem::Problem),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn inclusion(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(p): Query<InclusionParams>,
) -> Result<Json<Proof>, ApiError> {
    let tenant = caller.allow(Need::Read, &tenant)?;
    let id =
        uuid::Uuid::parse_str(&p.record).map_err(|_| ApiError::field("record", "record must be a record id (UUID)"))?;
    let a = app.clone();
    let proof = blocking(move || {
        let not_stored = || ApiError::field("record", format!("record {id} is not stored"));
        let proof = a.vault.inclusion_proof(id.as_bytes(), p.size).map_err(|e| match e {
            lethe_vault::VaultError::Invalid(_) => not_stored(),
            e => e.into(),
        })?;
        match &proof {
            Proof::Inclusion { tenant: t, .. } if t == tenant.as_str() => Ok(proof),
            _ => Err(not_stored()),
        }
    })
    .await?;
    Ok(Json(proof))
}

/// Which checkpoints.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct ConsistencyParams {
    /// Stream (`name:version`).
    stream: String,
    /// Tree size of the older checkpoint.
    from: u64,
    /// Tree size of the newer checkpoint.
    to: u64,
}

/// Proves the older checkpoint's tree is a prefix of the newer one's: no
/// record under it was changed or removed unrecorded.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/proofs/consistency", tag = "evidence",
    params(("tenant" = String, Path, description = "tenant id"), ConsistencyParams),
    responses((status = 200, description = "the proof (as `lethe proof consistency`)", body = Object),
              (status = 400, description = "no such checkpoints", body = crate::problem::Problem),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn consistency(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(p): Query<ConsistencyParams>,
) -> Result<Json<Proof>, ApiError> {
    let tenant = caller.allow(Need::Read, &tenant)?;
    let a = app.clone();
    let proof = blocking(move || Ok(a.vault.consistency_proof(tenant.as_str(), &p.stream, p.from, p.to)?)).await?;
    Ok(Json(proof))
}

/// Which chain.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct CheckpointParams {
    /// Stream (`name:version`).
    stream: String,
}

/// The signed checkpoints of one of the tenant's chains, oldest first (the
/// sizes a consistency proof is asked between).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/checkpoints", tag = "evidence",
    params(("tenant" = String, Path, description = "tenant id"), CheckpointParams),
    responses((status = 200, description = "checkpoints", body = Vec<Object>),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn checkpoints(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(p): Query<CheckpointParams>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let tenant = caller.allow(Need::Read, &tenant)?;
    let a = app.clone();
    let cps = blocking(move || Ok(a.vault.checkpoints(tenant.as_str(), &p.stream)?)).await?;
    Ok(Json(
        cps.into_iter()
            .map(|c| serde_json::to_value(c).expect("checkpoint serializes"))
            .collect(),
    ))
}
