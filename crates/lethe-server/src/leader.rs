//! Leadership among the `lethe serve` nodes of one store: exactly one node
//! runs the scheduled sweep and verification and the erasure jobs at a
//! time, whichever node accepted them.
//!
//! Every node tries to take the store's lease (a session-level advisory
//! lock on a dedicated connection, for PostgreSQL; always granted on the
//! embedded store) every `server.leader_check`. The leader checks its lease
//! as often; when the lease is lost (its connection dropped) it stops the
//! scheduler at once. A node that takes over first finishes whatever the
//! old leader's recorded intents left (one receipt each), then runs the
//! jobs still open and the schedule. Any node accepts requests throughout.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lethe_store::Lease;

use crate::App;

/// Tries to lead until the task is dropped or aborted; leads while it can.
pub async fn run(app: Arc<App>) {
    let every = Duration::from_secs(match app.config.leader_check {
        lethe_core::Window::Span(s) => s.max(1),
        lethe_core::Window::Forever => 5,
    });
    loop {
        let a = app.clone();
        match tokio::task::spawn_blocking(move || a.vault.try_lead()).await {
            Ok(Ok(Some(lease))) => lead(&app, lease, every).await,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!("leader election: {e}"),
            Err(e) => tracing::error!("leader election task failed: {e}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Does the leader's work while `lease` holds.
async fn lead(app: &Arc<App>, lease: Box<dyn Lease>, every: Duration) {
    let lease = Arc::new(Mutex::new(OffThread(Some(lease))));
    tracing::info!("leader: this node now leads (runs the schedule and the erasure jobs)");
    eprintln!("lethe serve: this node now leads");
    app.leading.store(true, Ordering::SeqCst);
    // What a leader that died left: its recorded intents are finished, one
    // receipt each (under the job lock, so never twice).
    let a = app.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || a.finish_interrupted()).await {
        tracing::error!("leader: finishing the previous leader's work: {e}");
    }
    let scheduler = tokio::spawn(crate::scheduler::run(app.clone()));
    // Jobs left open before this process started (a crash, or a leader
    // that died); those accepted since are started by the node that took
    // them when it leads, or found by the checks below.
    let mut jobs = tokio::spawn(crate::jobs::resume_accepted_before(app.clone(), app.started_us));
    loop {
        tokio::time::sleep(every).await;
        let l = lease.clone();
        let held = tokio::task::spawn_blocking(move || l.lock().unwrap_or_else(|e| e.into_inner()).held())
            .await
            .unwrap_or(false);
        if !held {
            scheduler.abort();
            jobs.abort();
            app.leading.store(false, Ordering::SeqCst);
            tracing::warn!("leader: lost the lease; this node stopped its scheduled work");
            eprintln!("lethe serve: this node no longer leads");
            return;
        }
        // Jobs other nodes accepted since: run them.
        if jobs.is_finished() {
            let cutoff = chrono::Utc::now().timestamp_micros() - every.as_micros() as i64;
            jobs = tokio::spawn(crate::jobs::resume_accepted_before(app.clone(), cutoff));
        }
    }
}

/// A lease dropped on a thread of its own: closing a database connection
/// blocks, which an async worker (where an aborted leader task is dropped)
/// must not do.
struct OffThread(Option<Box<dyn Lease>>);

impl OffThread {
    fn held(&mut self) -> bool {
        self.0.as_mut().is_some_and(|l| l.held())
    }
}

impl Drop for OffThread {
    fn drop(&mut self) {
        if let Some(l) = self.0.take() {
            std::thread::spawn(move || drop(l));
        }
    }
}
