//! Scheduled jobs — the nightly sweep and verification: what is due (the
//! pure rule in [`lethe_core::cron::due`]), running it once per occurrence
//! across every process sharing the store, and the last run's outcome.
//!
//! The state of each job (when scheduling started, the last occurrence run
//! and its outcome) is kept in the store's catalog, and the decision "is
//! this occurrence still to run" is taken under the store's job lock, which
//! holds across processes: two servers on one store, or a server and a
//! `lethe cleanup`, never sweep at once, and an occurrence is run once.

use lethe_core::cron::{due, Cron, Due};
use lethe_core::record::format_ts;
use serde::{Deserialize, Serialize};

use crate::{Result, Vault, VaultError};

/// A job the scheduler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    /// The retention sweep of every tenant (with the archive clock and
    /// the expiry of restorations), as `lethe cleanup`.
    Sweep,
    /// Verification of the whole store and ledger, as `lethe verify`.
    Verify,
}

impl Job {
    /// The job's name in the API, metrics and the catalog.
    pub fn name(self) -> &'static str {
        match self {
            Job::Sweep => "sweep",
            Job::Verify => "verify",
        }
    }

    fn meta_key(self) -> String {
        format!("schedule.{}", self.name())
    }

    /// Every job, in the order the scheduler considers them.
    pub const ALL: [Job; 2] = [Job::Sweep, Job::Verify];

    /// The job's entry in `[schedule]` as written, and its expression
    /// (`None`: off).
    pub fn schedule_of(self, s: &lethe_core::config::ScheduleConfig) -> (&str, Option<Cron>) {
        match self {
            Job::Sweep => (&s.sweep, s.sweep_cron()),
            Job::Verify => (&s.verify, s.verify_cron()),
        }
    }
}

/// The last occurrence run, or when scheduling started.
fn last_of(state: Option<&State>) -> Option<i64> {
    state.map(|s| s.last_slot_us.unwrap_or(s.since_us))
}

/// When the job runs next: the due occurrence if one is, the next one
/// otherwise (also when scheduling has not started).
fn next_of(cron: &Cron, state: Option<&State>, now_us: i64) -> Option<i64> {
    match due(cron, last_of(state), now_us) {
        Due::Start => cron.next_after(now_us),
        Due::Run(slot) => Some(slot),
        Due::Wait(next) => next,
    }
}

/// How one run of a scheduled job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// The occurrence it ran for.
    pub scheduled_for: String,
    /// Wall-clock start.
    pub started_at: String,
    /// Wall-clock end.
    pub finished_at: String,
    /// Run time in milliseconds.
    pub duration_ms: u64,
    /// `success`; `partial` (a sweep whose archive target failed: those
    /// records stay); `gaps` (verification found unexplained gaps);
    /// `failed` (an error; `detail` says which).
    pub result: String,
    /// The sweep's receipt (ledger sequence number), when it wrote one.
    pub receipt: Option<u64>,
    /// One line: what was done or what went wrong.
    pub detail: String,
    /// Verification: unexplained gaps found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaps: Option<u64>,
    /// Sweep: records deleted or anonymized.
    #[serde(default)]
    pub records_removed: u64,
    /// Sweep: bytes written to archive targets.
    #[serde(default)]
    pub archived_bytes: u64,
    /// Sweep: rules whose archive target failed (their records stay).
    #[serde(default)]
    pub archive_failures: u64,
}

/// A job's scheduling state as kept in the catalog.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// When scheduling started (µs): occurrences before it are not run.
    since_us: i64,
    /// The last occurrence run (µs).
    last_slot_us: Option<i64>,
    /// Its outcome.
    last: Option<LastRun>,
    /// When a run last ended in `success`.
    last_success_at: Option<String>,
}

/// What the API and `lethe stats` show about a scheduled job.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// `sweep` or `verify`.
    pub job: &'static str,
    /// The cron expression (UTC), or `off`.
    pub schedule: String,
    /// The last run, if any.
    pub last: Option<LastRun>,
    /// When a run last succeeded.
    pub last_success_at: Option<String>,
    /// When it runs next: an occurrence in the past means it is due now
    /// (missed while no server ran; the next server start runs it).
    pub next_at: Option<String>,
}

impl Vault {
    fn schedule_state(&self, job: Job) -> Result<Option<State>> {
        self.store
            .meta(&job.meta_key())?
            .map(|s| {
                serde_json::from_str(&s).map_err(|e| VaultError::Invalid(format!("catalog {}: {e}", job.meta_key())))
            })
            .transpose()
    }

    fn put_schedule_state(&self, job: Job, state: &State) -> Result<()> {
        let text = serde_json::to_string(state).expect("state serializes");
        Ok(self.store.set_meta(&job.meta_key(), Some(&text))?)
    }

    /// Runs `job` if an occurrence of `cron` is due at `clock()` and was not
    /// run yet by any process on this store; returns how that run ended
    /// (`None` when nothing was due). The first call on a store only notes
    /// when scheduling started. A run that fails is recorded as `failed`
    /// and not retried before the next occurrence; a process killed
    /// mid-run leaves the occurrence unrecorded, so it runs again at the
    /// next start (the sweep's own recovery finishes what it started).
    pub fn run_scheduled(&self, job: Job, cron: &Cron, clock: &dyn Fn() -> i64) -> Result<Option<LastRun>> {
        // Decided and run under the job lock: a second process waiting here
        // then sees the occurrence recorded and does nothing.
        let _jobs = self.store.lock_jobs()?;
        let now = clock();
        let state = self.schedule_state(job)?;
        let slot = match due(cron, last_of(state.as_ref()), now) {
            Due::Start => {
                let fresh = State {
                    since_us: now,
                    ..Default::default()
                };
                self.put_schedule_state(job, &fresh)?;
                return Ok(None);
            }
            Due::Wait(_) => return Ok(None),
            Due::Run(slot) => slot,
        };
        tracing::info!(job = job.name(), "scheduled run for {}", format_ts(slot));
        let started = clock();
        let mut run = LastRun {
            scheduled_for: format_ts(slot),
            started_at: format_ts(started),
            finished_at: String::new(),
            duration_ms: 0,
            result: "success".into(),
            receipt: None,
            detail: String::new(),
            gaps: None,
            records_removed: 0,
            archived_bytes: 0,
            archive_failures: 0,
        };
        match job {
            Job::Sweep => match self.sweep_by("system/schedule", started, None, false, clock, &|_, _| {}) {
                Ok(r) => {
                    run.receipt = r.receipt;
                    run.records_removed = r.deleted + r.anonymized;
                    run.archived_bytes = r.archived.as_ref().map_or(0, |a| a.bytes);
                    run.archive_failures = r.failing.len() as u64;
                    run.result = if r.status == "partial" { "partial" } else { "success" }.into();
                    run.detail = format!(
                        "{} deleted, {} anonymized, {} held, {} bytes freed{}",
                        r.deleted,
                        r.anonymized,
                        r.held,
                        r.bytes_freed,
                        if r.warnings.is_empty() {
                            String::new()
                        } else {
                            format!("; warnings: {}", r.warnings.join("; "))
                        }
                    );
                }
                Err(e) => {
                    run.result = "failed".into();
                    run.detail = e.to_string();
                }
            },
            Job::Verify => match self.verify_recorded("system/schedule", None, started, clock) {
                Ok((r, seq)) => {
                    run.result = if r.ok() { "success" } else { "gaps" }.into();
                    run.detail = format!(
                        "{} records checked, {} removed records explained, {} unexplained gaps",
                        r.records_checked, r.removed_explained, r.gaps_total
                    );
                    match seq {
                        Ok(seq) => run.receipt = Some(seq),
                        Err(e) => run
                            .detail
                            .push_str(&format!("; the result could not be entered in the ledger: {e}")),
                    }
                    run.gaps = Some(r.gaps_total);
                }
                Err(e) => {
                    run.result = "failed".into();
                    run.detail = e.to_string();
                }
            },
        }
        let finished = clock();
        run.finished_at = format_ts(finished);
        run.duration_ms = ((finished - started).max(0) / 1000) as u64;
        let mut state = state.unwrap_or_default();
        state.last_slot_us = Some(slot);
        if run.result == "success" {
            state.last_success_at = Some(run.finished_at.clone());
        }
        state.last = Some(run.clone());
        self.put_schedule_state(job, &state)?;
        Ok(Some(run))
    }

    /// When `job` runs next at `now_us` if nothing is due, or the due
    /// occurrence; and when scheduling has not started, the next occurrence.
    pub fn next_scheduled(&self, job: Job, cron: &Cron, now_us: i64) -> Result<Option<i64>> {
        Ok(next_of(cron, self.schedule_state(job)?.as_ref(), now_us))
    }

    /// Every scheduled job's status at `now_us` under this configuration.
    pub fn schedule_status(&self, now_us: i64) -> Result<Vec<JobStatus>> {
        let mut out = Vec::new();
        for job in Job::ALL {
            let (text, cron) = job.schedule_of(&self.config.schedule);
            let state = self.schedule_state(job)?;
            let next_at = cron
                .as_ref()
                .and_then(|c| next_of(c, state.as_ref(), now_us))
                .map(format_ts);
            out.push(JobStatus {
                job: job.name(),
                schedule: if cron.is_some() {
                    text.trim().to_string()
                } else {
                    "off".into()
                },
                last: state.as_ref().and_then(|s| s.last.clone()),
                last_success_at: state.and_then(|s| s.last_success_at),
                next_at,
            });
        }
        Ok(out)
    }
}
