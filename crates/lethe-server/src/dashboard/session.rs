//! Dashboard sessions: an API key exchanged once for an HttpOnly,
//! SameSite=Strict cookie with an expiry, and the CSRF token every change
//! made under the cookie must carry.
//!
//! A session is only a way to present a key: each request under it is
//! authenticated with that key again (a revoked or expired key ends the
//! session at once) and authorised exactly as a request with the key as
//! its bearer token — there is no second permission model. Sessions live
//! in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{header, HeaderMap, Method};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "lethe_session";

/// The header that carries the CSRF token on every change.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long a session lasts after sign-in (µs): a working day.
pub const TTL_US: i64 = 8 * 3600 * 1_000_000;

/// Sessions at most (the oldest is dropped beyond it), so sign-ins cannot
/// grow memory without bound.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
struct Session {
    /// The API key's token, kept only in this process's memory, never
    /// written or logged; cleared on drop.
    token: String,
    /// The CSRF token the page sends back with every change.
    csrf: String,
    /// When the session ends (µs).
    expires_us: i64,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Overwrite the token's bytes before the allocation is released.
        let mut bytes = std::mem::take(&mut self.token).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

/// The key behind a request's session cookie, once its CSRF token (for a
/// change) checked out.
pub struct Presented {
    /// The API key's token, to authenticate as a bearer token would be.
    pub token: String,
}

/// Why a session cookie was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No such session, or it expired: sign in again (401).
    Unknown,
    /// A change without the session's CSRF token (403).
    Csrf,
}

/// Every live session, by the SHA-256 of its cookie value (a dump of the
/// map would not give anyone a usable cookie).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

/// What a sign-in hands the browser.
pub struct Opened {
    /// The cookie value (only in the `Set-Cookie` header).
    pub cookie: String,
    /// The CSRF token (in the response body, for the page's script).
    pub csrf: String,
    /// When the session ends (µs).
    pub expires_us: i64,
}

impl Sessions {
    /// Opens a session for an authenticated key's token at `now_us`.
    pub fn open(&self, token: &str, now_us: i64) -> Opened {
        let cookie = random_token();
        let csrf = random_token();
        let expires_us = now_us + TTL_US;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires_us > now_us);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires_us).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            digest(&cookie),
            Session {
                token: token.to_string(),
                csrf: csrf.clone(),
                expires_us,
            },
        );
        Opened {
            cookie,
            csrf,
            expires_us,
        }
    }

    /// The session of a cookie value, checked for a request with `method`
    /// and `headers` at `now_us`: a change (anything but GET and HEAD)
    /// must carry the session's CSRF token.
    pub fn present(
        &self,
        cookie: &str,
        method: &Method,
        headers: &HeaderMap,
        now_us: i64,
    ) -> Result<Presented, Refusal> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let s = map.get(&digest(cookie)).ok_or(Refusal::Unknown)?;
        if s.expires_us <= now_us {
            return Err(Refusal::Unknown);
        }
        if method != Method::GET && method != Method::HEAD {
            let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !constant_time_eq(sent.as_bytes(), s.csrf.as_bytes()) {
                return Err(Refusal::Csrf);
            }
        }
        Ok(Presented { token: s.token.clone() })
    }

    /// The CSRF token and expiry of a live session.
    pub fn describe(&self, cookie: &str, now_us: i64) -> Option<(String, i64)> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&digest(cookie))
            .filter(|s| s.expires_us > now_us)
            .map(|s| (s.csrf.clone(), s.expires_us))
    }

    /// Ends a session (sign-out).
    pub fn close(&self, cookie: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&digest(cookie));
    }
}

/// The session cookie's value in a request, if any.
pub fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// The `Set-Cookie` value that opens (`Some(value)`) or clears a session.
/// `secure` adds `Secure` (the server speaks TLS).
pub fn set_cookie(value: Option<(&str, i64)>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some((v, max_age_s)) => format!("{COOKIE}={v}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{secure}"),
        None => format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
    }
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn digest(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_without_the_sessions_csrf_token_is_refused_and_a_read_is_not() {
        let s = Sessions::default();
        let o = s.open("lethe_a_b", 0);
        let mut h = HeaderMap::new();
        assert!(s.present(&o.cookie, &Method::GET, &h, 1).is_ok());
        assert_eq!(s.present(&o.cookie, &Method::POST, &h, 1).err(), Some(Refusal::Csrf));
        h.insert(CSRF_HEADER, "wrong".parse().unwrap());
        assert_eq!(s.present(&o.cookie, &Method::PUT, &h, 1).err(), Some(Refusal::Csrf));
        h.insert(CSRF_HEADER, o.csrf.parse().unwrap());
        assert_eq!(s.present(&o.cookie, &Method::DELETE, &h, 1).unwrap().token, "lethe_a_b");
    }

    #[test]
    fn a_session_ends_at_its_expiry_and_at_sign_out() {
        let s = Sessions::default();
        let o = s.open("t", 0);
        let h = HeaderMap::new();
        assert_eq!(
            s.present(&o.cookie, &Method::GET, &h, TTL_US).err(),
            Some(Refusal::Unknown)
        );
        let o = s.open("t", 0);
        s.close(&o.cookie);
        assert_eq!(s.present(&o.cookie, &Method::GET, &h, 1).err(), Some(Refusal::Unknown));
        assert_eq!(s.present("nonsense", &Method::GET, &h, 1).err(), Some(Refusal::Unknown));
    }
}
