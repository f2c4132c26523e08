//! `lethe serve`: the vault as a multi-tenant HTTP service — API keys with
//! roles and tenant scope, ingest merged into shared store commits with
//! backpressure, reads, retention, holds, evidence, Prometheus metrics and
//! an OpenAPI document generated from the handlers.
//!
//! The binary builds an [`App`] over an open vault and calls [`serve`];
//! tests do the same on an ephemeral port.

pub mod allocator;
pub mod auth;
pub mod body;
pub mod dashboard;
pub mod jobs;
pub mod leader;
pub mod metrics;
pub mod problem;
mod routes;
pub mod scheduler;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use lethe_core::config::ServerConfig;
use lethe_vault::Vault;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use routes::openapi;

/// The service's state, shared by every request.
pub struct App {
    /// The vault every request acts on.
    pub vault: Arc<Vault>,
    /// Counters for `/metrics`.
    pub metrics: metrics::Metrics,
    /// `[server]` settings.
    pub config: ServerConfig,
    /// Ingest requests admitted at once (see `ServerConfig::ingest_queue`).
    ingest_slots: Semaphore,
    /// Whether start-up recovery finished (`/readyz`).
    ready: AtomicBool,
    /// Erasure previews waiting to be confirmed.
    previews: routes::erasures::Previews,
    /// Verification jobs started through the API.
    verifications: routes::verification::Verifications,
    /// Age buckets of the tenants' overviews, reused for a few minutes.
    ages: routes::overview::AgeCache,
    /// Dashboard sessions (in memory).
    pub sessions: dashboard::session::Sessions,
    /// Whether this node leads (runs the schedule and the jobs; see [`leader`]).
    leading: AtomicBool,
    /// When this process's state was made (µs): jobs accepted before it
    /// were left open by an earlier process.
    pub started_us: i64,
}

impl App {
    /// State over an open vault. Not ready until [`App::recover`] ran.
    pub fn new(vault: Arc<Vault>, config: ServerConfig) -> Arc<App> {
        Arc::new(App {
            ingest_slots: Semaphore::new(config.ingest_queue.max(1)),
            vault,
            metrics: Default::default(),
            config,
            ready: AtomicBool::new(false),
            previews: Default::default(),
            verifications: Default::default(),
            ages: Default::default(),
            sessions: Default::default(),
            leading: AtomicBool::new(false),
            started_us: chrono::Utc::now().timestamp_micros(),
        })
    }

    /// Start-up work before the service is ready: finishes a sweep or
    /// purge a crash interrupted (one receipt each) and notes the policies
    /// in force in the ledger, as every CLI command that writes does.
    pub fn recover(&self) -> lethe_vault::Result<()> {
        self.finish_interrupted()?;
        self.vault
            .note_policy("system/serve", chrono::Utc::now().timestamp_micros())?;
        self.ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Finishes a sweep or purge whose intent is recorded and whose receipt
    /// is not (this process's crash, or a leader that died): one receipt
    /// each, under the job lock, so never twice.
    pub fn finish_interrupted(&self) -> lethe_vault::Result<()> {
        let clock = || chrono::Utc::now().timestamp_micros();
        self.vault.recover_sweep(&clock)?;
        self.vault.recover_purge(&clock)?;
        Ok(())
    }

    /// Whether start-up recovery finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Marks this node leading without the election: for a single node on
    /// a store no other node uses (tests, tools) that runs its jobs itself.
    pub fn assume_leading(&self) {
        self.leading.store(true, Ordering::SeqCst);
    }

    /// Whether this node leads: runs the schedule and the erasure jobs.
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }
}

/// Every route, with metrics and the request timeout around them.
pub fn router(app: Arc<App>) -> Router {
    let timeout = Duration::from_secs(match app.config.request_timeout {
        lethe_core::Window::Span(s) => s,
        lethe_core::Window::Forever => u64::MAX / 4,
    });
    routes::router()
        .merge(dashboard::router())
        .layer(axum::middleware::from_fn_with_state(app.clone(), observe))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .with_state(app)
}

/// Counts each request by route template and status, with its latency.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "(unmatched)".into());
    let method = req.method().as_str().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    app.metrics
        .request(&route, &method, resp.status().as_u16(), start.elapsed());
    resp
}

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting and finishes the requests in flight.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The TLS settings of `[server] tls_cert` and `tls_key`: the certificate
/// chain and private key (PEM), HTTP/1.1, the ring provider. The error
/// names the setting at fault.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<axum_server::tls_rustls::RustlsConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("server.tls_cert: {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("server.tls_cert: {}: no certificate in it", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("server.tls_key: {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("server.tls_cert: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("server.tls_key: does not fit the certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)))
}

/// [`serve`] over TLS.
pub async fn serve_tls(
    app: Arc<App>,
    listener: TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Stop accepting; wait for the requests in flight, as `serve` does.
        stopper.graceful_shutdown(None);
    });
    axum_server::from_tcp_rustls(listener.into_std()?, tls)
        .handle(handle)
        .serve(router(app).into_make_service())
        .await
}

/// A future that completes on SIGTERM or SIGINT. The handlers are
/// installed when this is called (inside the runtime), not when the future
/// is first polled: a signal that arrives while the server starts is
/// then a graceful stop, not the default action's abrupt exit.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down: finishing requests in flight");
    })
}
