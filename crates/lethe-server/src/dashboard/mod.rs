//! The admin dashboard served at `/`: its pages (HTML, script and style
//! embedded in the binary — no CDN, no font, works offline) and sign-in
//! with an API key for a session cookie.
//!
//! The pages are a small script over the JSON API: every figure and every
//! change goes through the same routes and the same authorisation as any
//! other client; the session only presents the key.

pub mod session;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::problem::ApiError;
use crate::App;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// What the pages may load: only this server's own script and style, no
/// inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes (outside the OpenAPI document: they serve a
/// browser, not an API client).
pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(index))
        .route("/ui/app.js", get(script))
        .route("/ui/app.css", get(style))
        .route("/ui/session", get(whoami).post(sign_in).delete(sign_out))
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

/// The sign-in form's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// The API key's token (`lethe_<id>_<secret>`).
    key: String,
}

/// Who is signed in: what the pages show and offer follows from it.
fn describe(caller: &Caller, csrf: &str, expires_us: i64) -> serde_json::Value {
    let k = &caller.key;
    serde_json::json!({
        "actor": k.actor(),
        "key_id": k.id,
        "name": k.name,
        "role": k.role,
        "tenants": k.tenants,
        "csrf": csrf,
        "expires": lethe_core::record::format_ts(expires_us),
    })
}

/// Signs in with an API key: `200` with the session (and its cookie),
/// `401` for a key that does not authenticate, `403` for an ingest key
/// (it reads nothing, so there is nothing to show it).
async fn sign_in(State(app): State<Arc<App>>, JsonBody(body): JsonBody<SignIn>) -> Result<Response, ApiError> {
    let now = chrono::Utc::now().timestamp_micros();
    let (vault, token) = (app.vault.clone(), body.key.trim().to_string());
    let key = match crate::routes::blocking(move || Ok(vault.authenticate(&token, now))).await? {
        Ok(k) => k,
        Err(why) => {
            tracing::info!(reason = %why, "dashboard sign-in refused: 401");
            return Err(ApiError::unauthorized());
        }
    };
    if !key.role.can_read() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "an ingest key cannot sign in to the dashboard: it writes records and reads nothing",
        ));
    }
    let opened = app.sessions.open(body.key.trim(), now);
    let caller = Caller { key };
    tracing::info!(actor = %caller.actor(), "dashboard sign-in");
    let max_age = (opened.expires_us - now) / 1_000_000;
    let mut r = Json(describe(&caller, &opened.csrf, opened.expires_us)).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::set_cookie(
            Some((&opened.cookie, max_age)),
            app.config.tls_cert.is_some(),
        ))
        .expect("cookie is ASCII"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// The signed-in session (`401` without one): who, which role and
/// tenants, the CSRF token for changes, the expiry.
async fn whoami(State(app): State<Arc<App>>, headers: HeaderMap, caller: Caller) -> Result<Response, ApiError> {
    let now = chrono::Utc::now().timestamp_micros();
    let cookie = session::cookie_of(&headers).ok_or_else(ApiError::unauthorized)?;
    let (csrf, expires) = app.sessions.describe(&cookie, now).ok_or_else(ApiError::unauthorized)?;
    let mut r = Json(describe(&caller, &csrf, expires)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// Signs out (a change: it needs the CSRF token) and clears the cookie.
async fn sign_out(State(app): State<Arc<App>>, headers: HeaderMap, _caller: Caller) -> Response {
    if let Some(c) = session::cookie_of(&headers) {
        app.sessions.close(&c);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&session::set_cookie(None, app.config.tls_cert.is_some())).expect("cookie is ASCII"),
    );
    r
}
