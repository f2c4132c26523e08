//! `[server]`: how `lethe serve` listens and how much it takes at once.

use serde::{Deserialize, Serialize};

use crate::Window;

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest request body accepted, in bytes (larger: `413`).
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
    /// A request not answered within this time is answered `503`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Window,
    /// Ingest requests being prepared or waiting for their commit at once;
    /// more are answered `503` with `Retry-After` (bounded memory: at most
    /// this many request bodies are held).
    #[serde(default = "default_ingest_queue")]
    pub ingest_queue: usize,
    /// PEM file of the TLS certificate chain (with `tls_key`: serve HTTPS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<String>,
    /// PEM file of the TLS private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<String>,
    /// How often a node checks its leadership, and a follower tries to take
    /// it over: a new leader is at work within about this long after the
    /// old one dies (several nodes on one PostgreSQL store).
    #[serde(default = "default_leader_check")]
    pub leader_check: Window,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            body_limit: default_body_limit(),
            request_timeout: default_request_timeout(),
            ingest_queue: default_ingest_queue(),
            tls_cert: None,
            tls_key: None,
            leader_check: default_leader_check(),
        }
    }
}

fn default_leader_check() -> Window {
    Window::Span(5)
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_body_limit() -> usize {
    16 << 20
}
fn default_request_timeout() -> Window {
    Window::Span(60)
}
fn default_ingest_queue() -> usize {
    64
}
