//! Who is calling: the bearer token checked against the vault's API keys,
//! and what the key may do for which tenant.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use lethe_core::TenantId;
use lethe_vault::access::{ApiKey, Role};

use crate::problem::ApiError;
use crate::App;

/// What an operation needs of the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Write records (`ingest`, `admin`, `super_admin`).
    Ingest,
    /// Read settings, stats and evidence (`auditor` and up).
    Read,
    /// Change settings, run sweeps and erasures, read record bodies (`admin` and up).
    Administer,
    /// Manage API keys and act across tenants (`super_admin`).
    Everything,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key that made the request.
    pub key: ApiKey,
}

impl Caller {
    /// The actor of every ledger entry, receipt and intent this request makes.
    pub fn actor(&self) -> String {
        self.key.actor()
    }

    /// Whether the role grants `need` at all.
    fn grants(&self, need: Need) -> bool {
        let r = self.key.role;
        match need {
            Need::Ingest => r.can_ingest(),
            Need::Read => r.can_read(),
            Need::Administer => r.can_administer(),
            Need::Everything => r == Role::SuperAdmin,
        }
    }

    /// Allows `need` on `tenant`, or `403`. A tenant name that is not even
    /// valid is also `403` for a key that is not allowed everywhere, so
    /// the answer never depends on what the other tenant is.
    pub fn allow(&self, need: Need, tenant: &str) -> Result<TenantId, ApiError> {
        if !self.grants(need) || !self.key.tenants.covers(tenant) {
            return Err(ApiError::forbidden());
        }
        TenantId::new(tenant).map_err(|e| ApiError::field("tenant", e.to_string()))
    }

    /// Allows `need` across every tenant (for routes without one), or `403`.
    pub fn allow_all(&self, need: Need) -> Result<(), ApiError> {
        if self.grants(need) && self.key.tenants == lethe_vault::access::TenantScope::All {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        let now = chrono::Utc::now().timestamp_micros();
        match app.vault.authenticate(token, now) {
            Ok(key) => Ok(Caller { key }),
            Err(why) => {
                // Which of the reasons is for the log only (never the token).
                tracing::info!(reason = %why, "request refused: 401");
                Err(ApiError::unauthorized())
            }
        }
    }
}
