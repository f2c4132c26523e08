//! The routes: one module per concern, gathered into one router whose
//! OpenAPI document is generated from the handlers' own annotations and types.

mod archive;
pub(crate) mod erasures;
mod evidence;
mod holds;
mod keys;
mod ops;
pub(crate) mod overview;
mod proofs;
mod records;
mod retention;
mod settings;
pub(crate) mod verification;

use std::sync::{Arc, OnceLock};

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::App;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lethe",
        description = "A vault for audit and LLM request logs that forgets on schedule, provably. \
                       Every route but /healthz, /readyz, /metrics and /openapi.json needs \
                       `Authorization: Bearer lethe_<id>_<secret>`."
    ),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn parts() -> (Router<Arc<App>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
        .routes(routes!(ops::schedule))
        .routes(routes!(records::ingest, records::read))
        .routes(routes!(records::stats))
        .routes(routes!(overview::tenants))
        .routes(routes!(overview::overview))
        .routes(routes!(
            retention::get_retention,
            settings::put_retention,
            settings::delete_retention
        ))
        .routes(routes!(settings::preview))
        .routes(routes!(retention::sweep))
        .routes(routes!(erasures::preview))
        .routes(routes!(erasures::create))
        .routes(routes!(erasures::get))
        .routes(routes!(holds::list, holds::create))
        .routes(routes!(holds::release))
        .routes(routes!(evidence::tenant_receipts))
        .routes(routes!(evidence::receipt))
        .routes(routes!(evidence::tenant_ledger))
        .routes(routes!(evidence::ledger))
        .routes(routes!(evidence::public_key))
        .routes(routes!(verification::start))
        .routes(routes!(verification::get))
        .routes(routes!(proofs::inclusion))
        .routes(routes!(proofs::consistency))
        .routes(routes!(proofs::checkpoints))
        .routes(routes!(archive::list))
        .routes(routes!(archive::verify))
        .routes(routes!(archive::restore))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::revoke))
        .split_for_parts()
}

/// The router of every route (state still to be given).
pub(crate) fn router() -> Router<Arc<App>> {
    parts().0
}

/// The OpenAPI document of every route, as `/openapi.json` serves it.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| parts().1)
}

/// Runs blocking vault work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::problem::ApiError> + Send + 'static,
) -> Result<T, crate::problem::ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "request task failed");
        crate::problem::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "the server could not complete the request; see its log",
        )
    })?
}

/// The current time (µs): handlers take it once and pass it down.
pub(crate) fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// An optional duration parameter or body field (`36h`, `90d`,
/// `forever`); `400` naming `field` when it is not one.
pub(crate) fn window_param(
    field: &str,
    v: &Option<String>,
) -> Result<Option<lethe_core::Window>, crate::problem::ApiError> {
    v.as_deref()
        .map(|w| {
            w.parse::<lethe_core::Window>()
                .map_err(|e| crate::problem::ApiError::field(field, format!("{field}: {e}")))
        })
        .transpose()
}

/// An optional RFC 3339 time parameter or body field, in µs; `400` naming
/// `field` when it is not one.
pub(crate) fn time_param(field: &str, v: &Option<String>) -> Result<Option<i64>, crate::problem::ApiError> {
    v.as_deref()
        .map(|s| {
            lethe_core::record::parse_ts(s)
                .ok_or_else(|| crate::problem::ApiError::field(field, format!("{field} must be an RFC 3339 timestamp")))
        })
        .transpose()
}
