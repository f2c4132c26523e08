//! Who is calling: the bearer token (or the dashboard session presenting
//! one) checked against the vault's API keys, and what the key may do for
//! which tenant.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use lethe_core::TenantId;
use lethe_vault::access::{ApiKey, Role};

use crate::dashboard::session;
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
        let now = chrono::Utc::now().timestamp_micros();
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        // A bearer token wins; without one, the dashboard's session cookie
        // presents its key — for a change, only with the session's CSRF
        // token (a forged cross-site form carries the cookie, never that).
        let presented;
        let token = match bearer {
            Some(t) => t,
            None => {
                let cookie = session::cookie_of(&parts.headers).ok_or_else(ApiError::unauthorized)?;
                match app.sessions.present(&cookie, &parts.method, &parts.headers, now) {
                    Ok(p) => {
                        presented = p;
                        presented.token.as_str()
                    }
                    Err(session::Refusal::Unknown) => return Err(ApiError::unauthorized()),
                    Err(session::Refusal::Csrf) => {
                        tracing::info!("request refused: 403 (session without its CSRF token)");
                        return Err(ApiError::new(
                            axum::http::StatusCode::FORBIDDEN,
                            "a change made with the dashboard's session needs its CSRF token (header X-CSRF-Token)",
                        ));
                    }
                }
            }
        };
        // Off the async threads: a database-backed store blocks (and a
        // synchronous PostgreSQL client may not run on a runtime's worker).
        let (vault, token) = (app.vault.clone(), token.to_string());
        match crate::routes::blocking(move || Ok(vault.authenticate(&token, now))).await? {
            Ok(key) => Ok(Caller { key }),
            Err(why) => {
                // Which of the reasons is for the log only (never the token).
                tracing::info!(reason = %why, "request refused: 401");
                Err(ApiError::unauthorized())
            }
        }
    }
}
