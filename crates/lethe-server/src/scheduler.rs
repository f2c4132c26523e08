//! The scheduler task: runs the sweep and the verification when `[schedule]`
//! says, and at start-up any occurrence missed while no server ran.
//!
//! The decisions are the vault's ([`lethe_vault::Vault::run_scheduled`]),
//! taken under the store's job lock, so several servers on one store (or a
//! server and a `lethe cleanup`) never sweep at once and an occurrence runs
//! once. This task only wakes up at the right times.

use std::sync::Arc;
use std::time::Duration;

use lethe_core::cron::Cron;
use lethe_vault::schedule::{Job, LastRun};

use crate::App;

/// Longest sleep between looks at the schedule: another process may have
/// run an occurrence, and the wall clock may have jumped.
const MAX_SLEEP: Duration = Duration::from_secs(300);

/// The jobs `[schedule]` turns on, with their expressions.
pub fn jobs(app: &App) -> Vec<(Job, Cron)> {
    let s = &app.vault.config().schedule;
    Job::ALL
        .into_iter()
        .filter_map(|j| j.schedule_of(s).1.map(|c| (j, c)))
        .collect()
}

/// Runs the schedule until the task is dropped or aborted: first whatever
/// is due now (the start-up catch-up), then each occurrence as it comes.
pub async fn run(app: Arc<App>) {
    let jobs = jobs(&app);
    if jobs.is_empty() {
        tracing::info!("scheduler: every job is off");
        return;
    }
    loop {
        for (job, cron) in &jobs {
            let (a, j, c) = (app.clone(), *job, cron.clone());
            let clock = || chrono::Utc::now().timestamp_micros();
            let outcome = tokio::task::spawn_blocking(move || {
                let r = a.vault.run_scheduled(j, &c, &clock);
                // A sweep or a verification of a large store frees far
                // more than the server keeps: hand it back (see `allocator`).
                if !matches!(r, Ok(None)) {
                    crate::allocator::release_free_memory();
                }
                r
            })
            .await;
            match outcome {
                Ok(Ok(Some(run))) => {
                    if *job == Job::Sweep {
                        app.metrics
                            .sweep(run.records_removed, run.archived_bytes, run.archive_failures);
                    }
                    log_run(*job, &run)
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::error!(job = job.name(), "scheduler: {e}"),
                Err(e) => tracing::error!(job = job.name(), "scheduler task failed: {e}"),
            }
        }
        let now = chrono::Utc::now().timestamp_micros();
        let mut wake = now + MAX_SLEEP.as_micros() as i64;
        for (job, cron) in &jobs {
            let (a, j, c) = (app.clone(), *job, cron.clone());
            if let Ok(Ok(Some(next))) = tokio::task::spawn_blocking(move || a.vault.next_scheduled(j, &c, now)).await {
                wake = wake.min(next);
            }
        }
        let wait = Duration::from_micros((wake - chrono::Utc::now().timestamp_micros()).max(0) as u64);
        // A little past the occurrence, so the clock has reached it.
        tokio::time::sleep(wait + Duration::from_millis(50)).await;
    }
}

fn log_run(job: Job, run: &LastRun) {
    if run.result == "success" {
        tracing::info!(job = job.name(), receipt = ?run.receipt, "scheduled run for {}: {}", run.scheduled_for, run.detail);
    } else {
        tracing::warn!(job = job.name(), result = %run.result, "scheduled run for {}: {}", run.scheduled_for, run.detail);
    }
}
