//! JSON request bodies: a wrong body is a `400` problem that names the
//! field at fault (`holds.0.reason`), never the value sent — a body may
//! carry personal data — and a body that is not JSON is a `415`.

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// A JSON body deserialized into `T` (use in place of `axum::Json`).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            });
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as `content-type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body is larger than server.body_limit",
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "the body could not be read")
            }
        })?;
        parse(&bytes).map(JsonBody)
    }
}

/// Deserializes `bytes`, naming the field of the first error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::field(
                "(body)",
                format!(
                    "the body is not valid JSON (line {}, column {})",
                    inner.line(),
                    inner.column()
                ),
            );
        }
        let message = describe(&inner.to_string());
        if path == "." || path.is_empty() {
            ApiError::field("(body)", message)
        } else {
            ApiError::field(&path, format!("{path}: {message}"))
        }
    })
}

/// serde's message without the value it quotes (`invalid type: string
/// "alice", expected u64` → `has the wrong type: expected u64`).
fn describe(m: &str) -> String {
    let m = m.split(" at line ").next().unwrap_or(m);
    let expected = m.split_once(", expected ").map(|(_, e)| e);
    if m.starts_with("invalid type") {
        format!("has the wrong type: expected {}", expected.unwrap_or("another type"))
    } else if m.starts_with("invalid value") || m.starts_with("invalid length") || m.starts_with("unknown variant") {
        format!(
            "has a value that is not allowed: expected {}",
            expected.unwrap_or("another value")
        )
    } else {
        // `missing field `x``, `unknown field `x`, expected one of …`, and
        // messages of our own types: they name fields, not values.
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        reason: String,
        days: Option<u64>,
    }

    fn detail(text: &str) -> (Option<String>, String) {
        let e = parse::<Body>(text.as_bytes()).unwrap_err();
        (e.0.field.clone(), e.0.detail.clone())
    }

    #[test]
    fn a_wrong_type_names_the_field_and_not_the_value() {
        let (field, d) = detail(r#"{"reason":"x","days":"alice@example.com"}"#);
        assert_eq!(field.as_deref(), Some("days"));
        assert!(d.contains("expected u64"), "{d}");
        assert!(!d.contains("alice"), "{d}");
    }

    #[test]
    fn missing_unknown_and_broken_bodies_are_named() {
        assert_eq!(detail(r#"{}"#).1, "missing field `reason`");
        assert!(detail(r#"{"reason":"x","colour":1}"#)
            .1
            .contains("unknown field `colour`"));
        assert_eq!(detail(r#"{"reason":"#).0.as_deref(), Some("(body)"));
    }
}
