//! Erasure jobs in the background: each accepted job runs on the blocking
//! pool (the purge itself waits for the store's job lock), and a starting
//! server runs the jobs a stop or a crash left open.

use std::sync::Arc;

use crate::App;

/// Runs job `id` in the background.
pub fn start(app: &Arc<App>, id: String) {
    let a = app.clone();
    tokio::task::spawn_blocking(move || run(&a, &id));
}

fn run(app: &App, id: &str) {
    let clock = || chrono::Utc::now().timestamp_micros();
    let outcome = app.vault.run_erasure_job(id, &clock);
    crate::allocator::release_free_memory();
    match outcome {
        Ok(job) => {
            tracing::info!(job = id, state = ?job.state, receipt = ?job.receipt, "erasure job ended");
            let removed = job.report.as_ref().and_then(|r| r["removed"].as_u64()).unwrap_or(0);
            app.metrics.erasure(&job.tenant, job.state.as_str(), removed);
        }
        // Storage trouble: the job stays open; the next start runs it.
        Err(e) => tracing::error!(job = id, "erasure job: {e}; it runs again at the next start"),
    }
}

/// Runs, one after the other, the jobs left open (after start-up recovery,
/// which finished any purge a crash interrupted).
pub async fn resume(app: Arc<App>) {
    resume_accepted_before(app, i64::MAX).await
}

/// Runs, one after the other, the open jobs accepted before `cutoff_us`:
/// a leader leaves younger ones to the node that accepted them (which
/// starts them itself when it leads), so a job is not picked up while the
/// request that made it is still being answered.
pub async fn resume_accepted_before(app: Arc<App>, cutoff_us: i64) {
    let a = app.clone();
    let open = match tokio::task::spawn_blocking(move || a.vault.open_erasure_jobs()).await {
        Ok(Ok(ids)) => ids,
        Ok(Err(e)) => {
            tracing::error!("reading open erasure jobs: {e}");
            return;
        }
        Err(_) => return,
    };
    for id in open {
        let (a, job_id) = (app.clone(), id.clone());
        let accepted = move || -> Option<i64> {
            let job = a.vault.erasure_job(&job_id).ok()??;
            lethe_core::record::parse_ts(&job.created_at)
        };
        match tokio::task::spawn_blocking(accepted).await {
            Ok(Some(at)) if at >= cutoff_us => continue,
            _ => {}
        }
        tracing::info!(job = %id, "finishing an erasure job left open");
        let a = app.clone();
        let _ = tokio::task::spawn_blocking(move || run(&a, &id)).await;
    }
}
