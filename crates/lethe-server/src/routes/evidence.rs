//! Evidence: receipts and the ledger (a tenant's own entries, or all of
//! them for keys that span every tenant), and the public key proofs are
//! checked with.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use lethe_core::ledger::Entry;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::blocking;
use crate::auth::{Caller, Need};
use crate::problem::ApiError;
use crate::App;

/// A ledger entry as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntry {
    /// Position in the ledger, from 1 (a receipt's id).
    pub seq: u64,
    /// When (RFC 3339).
    pub ts: String,
    /// Who: `key:<id> (<name>)` for acts through the API.
    pub actor: String,
    /// What: `receipt.sweep`, `hold.set`, `access.key_created`, …
    pub kind: String,
    /// The tenant it concerns, if one.
    pub tenant: Option<String>,
    /// Details.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// This entry's hash (hex); each entry's hash covers the previous one's.
    pub hash: String,
}

impl From<Entry> for LedgerEntry {
    fn from(e: Entry) -> Self {
        LedgerEntry {
            seq: e.seq,
            ts: lethe_core::record::format_ts(e.ts_us),
            body: serde_json::from_str(&e.body).unwrap_or(serde_json::Value::String(e.body)),
            actor: e.actor,
            kind: e.kind,
            tenant: e.tenant,
            hash: lethe_core::merkle::to_hex(&e.hash),
        }
    }
}

/// The tenant's receipts (sweeps and erasures of that tenant), oldest first.
/// Receipts of sweeps over every tenant are shown to keys that span every
/// tenant (`GET /v1/ledger`), since they name other tenants.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/receipts", tag = "evidence",
    params(("tenant" = String, Path, description = "tenant id")),
    responses((status = 200, description = "receipts", body = Vec<LedgerEntry>),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn tenant_receipts(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<LedgerEntry>>, ApiError> {
    let tenant = caller.allow(Need::Read, &tenant)?;
    let a = app.clone();
    let all = blocking(move || Ok(a.vault.receipts()?)).await?;
    Ok(Json(
        all.into_iter()
            .filter(|e| e.tenant.as_deref() == Some(tenant.as_str()))
            .map(LedgerEntry::from)
            .collect(),
    ))
}

/// One receipt of the tenant, by id.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/receipts/{id}", tag = "evidence",
    params(("tenant" = String, Path, description = "tenant id"), ("id" = u64, Path, description = "receipt id (ledger seq)")),
    responses((status = 200, description = "the receipt", body = LedgerEntry),
              (status = 404, description = "no such receipt for this tenant", body = crate::problem::Problem),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn receipt(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((tenant, id)): Path<(String, u64)>,
) -> Result<Json<LedgerEntry>, ApiError> {
    let tenant = caller.allow(Need::Read, &tenant)?;
    let a = app.clone();
    let e = blocking(move || Ok(a.vault.receipt(id)?)).await?;
    match e {
        Some(e) if e.tenant.as_deref() == Some(tenant.as_str()) => Ok(Json(e.into())),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no receipt with this id for this tenant",
        )),
    }
}

/// Paging of the ledger.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct LedgerParams {
    /// First sequence number (default 1).
    from: Option<u64>,
    /// Entries per page (default 100, at most 1,000).
    limit: Option<usize>,
    /// Only entries of this kind (`receipt.purge`), or of kinds starting
    /// with it when it ends in `.` (`receipt.`). Tenant ledger only.
    kind: Option<String>,
}

/// A page of the ledger.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerPage {
    /// Entries in sequence order.
    pub entries: Vec<LedgerEntry>,
    /// `from` of the next page; absent at the end.
    pub next_from: Option<u64>,
}

fn page_params(p: &LedgerParams) -> Result<(u64, usize), ApiError> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "limit must be between 1 and 1000"));
    }
    Ok((p.from.unwrap_or(1).max(1), limit))
}

/// The whole ledger, paged (keys that span every tenant).
#[utoipa::path(get, path = "/v1/ledger", tag = "evidence", params(LedgerParams),
    responses((status = 200, description = "a page of the ledger", body = LedgerPage),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn ledger(
    State(app): State<Arc<App>>,
    caller: Caller,
    Query(p): Query<LedgerParams>,
) -> Result<Json<LedgerPage>, ApiError> {
    caller.allow_all(Need::Read)?;
    let (from, limit) = page_params(&p)?;
    let a = app.clone();
    let entries = blocking(move || Ok(a.vault.ledger(from, limit + 1)?)).await?;
    Ok(Json(page(entries, limit)))
}

/// The entries of the ledger that concern this tenant, paged by sequence number.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/ledger", tag = "evidence",
    params(("tenant" = String, Path, description = "tenant id"), LedgerParams),
    responses((status = 200, description = "the tenant's entries", body = LedgerPage),
              (status = 403, description = "key not allowed", body = crate::problem::Problem)))]
pub(crate) async fn tenant_ledger(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(tenant): Path<String>,
    Query(p): Query<LedgerParams>,
) -> Result<Json<LedgerPage>, ApiError> {
    let tenant = caller.allow(Need::Read, &tenant)?;
    let (from, limit) = page_params(&p)?;
    let a = app.clone();
    let t = tenant.to_string();
    let kind = p.kind.clone().filter(|k| !k.is_empty());
    let entries = blocking(move || {
        let mut out = Vec::new();
        let mut next = None;
        let wanted = |e: &Entry| {
            e.tenant.as_deref() == Some(t.as_str())
                && kind.as_deref().is_none_or(|k| match k.strip_suffix('.') {
                    Some(prefix) => e.kind.starts_with(prefix) && e.kind[prefix.len()..].starts_with('.'),
                    None => e.kind == k,
                })
        };
        a.vault.each_entry(from, &mut |e| {
            if out.len() == limit {
                if wanted(&e) {
                    next = Some(e.seq);
                    return Ok(false);
                }
                return Ok(true);
            }
            if wanted(&e) {
                out.push(e);
            }
            Ok(true)
        })?;
        Ok((out, next))
    })
    .await?;
    Ok(Json(LedgerPage {
        entries: entries.0.into_iter().map(LedgerEntry::from).collect(),
        next_from: entries.1,
    }))
}

fn page(mut entries: Vec<Entry>, limit: usize) -> LedgerPage {
    let next_from = (entries.len() > limit).then(|| entries[limit].seq);
    entries.truncate(limit);
    LedgerPage {
        entries: entries.into_iter().map(LedgerEntry::from).collect(),
        next_from,
    }
}

/// The key checkpoints are signed with.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKey {
    /// Ed25519 public key (hex): what a third party needs to check proofs.
    pub ed25519: String,
}

/// The public key that checks this vault's signed checkpoints and proofs.
#[utoipa::path(get, path = "/v1/public-key", tag = "evidence",
    responses((status = 200, description = "the public key", body = PublicKey)))]
pub(crate) async fn public_key(State(app): State<Arc<App>>, caller: Caller) -> Json<PublicKey> {
    let _ = caller;
    Json(PublicKey {
        ed25519: app.vault.public_key(),
    })
}
