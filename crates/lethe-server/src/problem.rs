//! Errors as `application/problem+json` (RFC 9457): a status, a title, a
//! detail that names the field (and line) at fault — never a personal
//! value, a key, or anything of another tenant.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use lethe_vault::VaultError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error response body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status and title say what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What was wrong, for people.
    pub detail: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds to wait before trying again (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Anything else the caller needs (e.g. per-line rejections, holds).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub extra: Option<serde_json::Value>,
}

/// An error a handler returns: turned into a problem response.
#[derive(Debug)]
pub struct ApiError(pub Box<Problem>);

impl ApiError {
    /// A problem with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError(Box::new(Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            retry_after: None,
            extra: None,
        }))
    }

    /// `400`, naming the field at fault.
    pub fn field(field: &str, detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, detail);
        e.0.field = Some(field.to_string());
        e
    }

    /// `401`: no key, or a key that does not work (which, is not said).
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "a valid API key is required: send `Authorization: Bearer lethe_<id>_<secret>`",
        )
    }

    /// `403`: the key's role or tenant scope does not allow this. The
    /// same words whatever the tenant, so nothing is learnt of others.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "this API key is not allowed to do this for this tenant",
        )
    }

    /// `503` with `Retry-After`: try again later.
    pub fn busy(detail: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, detail);
        e.0.retry_after = Some(retry_after);
        e
    }

    /// Adds details for the caller.
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        self.0.extra = Some(extra);
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<VaultError> for ApiError {
    fn from(e: VaultError) -> Self {
        match e {
            // Vault messages of bad requests start with the field: `since: …`.
            VaultError::Invalid(m) => {
                let field = m
                    .split_once(": ")
                    .map(|(f, _)| f)
                    .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || "_.-[]".contains(c)));
                let mut err = ApiError::new(StatusCode::BAD_REQUEST, m.clone());
                err.0.field = field.map(str::to_string);
                err
            }
            VaultError::Refused(m) => ApiError::new(StatusCode::CONFLICT, m),
            VaultError::Store(s) if s.is_retryable() => {
                tracing::warn!(error = %s, "store busy");
                ApiError::busy("the store is busy; try again", 1)
            }
            other => {
                // The full error goes to the server's log; the caller gets
                // no internals (paths, engine messages).
                tracing::error!(error = %other, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the server could not complete the request; see its log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = self.0.retry_after;
        let mut resp = (status, axum::Json(self.0)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = retry {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
