//! A real server on a loopback port over a real store in a temporary
//! directory, and the keys the tests call it with.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use lethe_core::config::{self, Config, Source};
use lethe_core::crypto::SecretKey;
use lethe_vault::access::Role;
use lethe_vault::Vault;

/// Retention is on for `acme` (30 days, delete) and off for everyone else.
pub const CONFIG: &str = r#"
[retention.default]
enabled = false
window = "30d"
action = "delete"

[[retention.policy]]
name = "acme-30d"
tenant = "acme"
window = "30d"
action = "delete"

[server]
body_limit = 65536
"#;

pub struct Server {
    pub dir: tempfile::TempDir,
    pub vault: Arc<Vault>,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub fn config(text: &str) -> Config {
    config::load(Source { name: "test", text }, None, &[]).expect("test configuration")
}

impl Server {
    /// Starts a server over a new store with [`CONFIG`].
    pub async fn start() -> Server {
        Self::start_with(CONFIG).await
    }

    pub async fn start_with(text: &str) -> Server {
        Self::start_in(tempfile::tempdir().unwrap(), text, false).await
    }

    /// Starts a server over the store in `dir` (new or not), with the
    /// scheduler when `schedule` is set.
    pub async fn start_in(dir: tempfile::TempDir, text: &str, schedule: bool) -> Server {
        Self::start_full(dir, text, schedule, None).await
    }

    /// [`Server::start_in`], over TLS when `tls` is given.
    pub async fn start_full(
        dir: tempfile::TempDir,
        text: &str,
        schedule: bool,
        tls: Option<axum_server::tls_rustls::RustlsConfig>,
    ) -> Server {
        let cfg = config(text);
        let store: Arc<dyn lethe_store::Store> =
            Arc::new(lethe_store::SqliteStore::open(dir.path(), 86_400).expect("store opens"));
        let vault = Arc::new(Vault::with_store(store, cfg.clone(), &master(), false, dir.path()).unwrap());
        let app = lethe_server::App::new(vault.clone(), cfg.server.clone());
        app.recover().unwrap();
        app.assume_leading();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(lethe_server::jobs::resume(app.clone()));
        if schedule {
            tokio::spawn(lethe_server::scheduler::run(app.clone()));
        }
        let stop = async move {
            let _ = rx.await;
        };
        let task = match tls {
            Some(tls) => tokio::spawn(lethe_server::serve_tls(app, listener, tls, stop)),
            None => tokio::spawn(lethe_server::serve(app, listener, stop)),
        };
        Server {
            dir,
            vault,
            addr,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Makes a key and returns its token.
    pub fn key(&self, name: &str, role: Role, tenants: &[&str]) -> String {
        let tenants: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
        self.vault
            .create_api_key(name, role, &tenants, None, "test", now())
            .unwrap()
            .token
    }

    /// `GET path` with `token`; the JSON answer.
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `method path` with `token` and a JSON `body` (none: no body); the
    /// status and the JSON answer (`Null` when it is not JSON).
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// `GET /metrics` with `token`: the exposition text.
    pub async fn metrics(&self, token: &str) -> String {
        self.http
            .get(self.url("/metrics"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Polls a job at `location` until it is neither pending nor running.
    pub async fn follow(&self, location: &str, token: &str) -> serde_json::Value {
        for _ in 0..400 {
            let (status, job) = self.send_json("GET", location, token, None).await;
            assert_eq!(status, reqwest::StatusCode::OK, "{job}");
            if job["state"] != "pending" && job["state"] != "running" {
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the job at {location} did not end");
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

/// The master key of every test store.
pub fn master() -> SecretKey {
    SecretKey::from_bytes([9; 32])
}

/// A vault over the store in `dir`, opened by the test (as another process would).
pub fn open_vault(dir: &std::path::Path, text: &str) -> Vault {
    let store: Arc<dyn lethe_store::Store> =
        Arc::new(lethe_store::SqliteStore::open(dir, 86_400).expect("store opens"));
    Vault::with_store(store, config(text), &master(), false, dir).unwrap()
}

/// Files under `dir` whose bytes contain `needle`.
pub fn files_with(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(p);
                }
            }
        }
    }
    out
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// An audit record of `tenant`, `days_ago` days old, for `subject`, with
/// an id of its own made from its arguments (so that sending it again is a
/// retry, not a new record).
pub fn record(tenant: &str, days_ago: i64, subject: &str, n: usize) -> String {
    let ts = lethe_core::record::format_ts(now() - days_ago * 86_400_000_000 - n as i64);
    let h = tenant
        .bytes()
        .chain(subject.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-8000-{:012x}",
        h >> 32,
        h & 0xffff,
        days_ago & 0xfff,
        n
    );
    format!(
        r#"{{"id":"{id}","tenant":"{tenant}","stream":"audit:1","ts":"{ts}","subject":"{subject}","fields":{{"action":"login"}}}}"#
    )
}

/// NDJSON of `n` records of `tenant`, `days_ago` days old.
pub fn ndjson(tenant: &str, days_ago: i64, n: usize) -> String {
    (0..n)
        .map(|i| record(tenant, days_ago, &format!("user-{}", i % 7), i) + "\n")
        .collect()
}
