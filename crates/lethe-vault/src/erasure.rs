//! Erasure jobs: a purge accepted now and carried out in the background,
//! whose state (`pending → running → done | failed`) is kept in the
//! catalog so that a job survives a restart and ends with exactly one
//! receipt.
//!
//! Exactly one receipt, whatever moment the process dies at: the purge
//! itself writes its intent before the first destructive step (a restart's
//! recovery finishes it and writes its receipt), and a purge that has a
//! receipt is known by its fingerprint (ticket and selection), so running
//! the job again reports that receipt instead of writing another.
//!
//! The request names data subjects — personal data — so while the job is
//! open it is kept sealed under a key derived from the master key, and
//! removed when the job ends; the job record itself holds only counts.

use std::sync::Mutex;

use lethe_core::record::format_ts;
use lethe_core::{StreamId, TenantId};
use serde::{Deserialize, Serialize};

use crate::purge::{PurgePreview, PurgeRequest};
use crate::{Result, Vault, VaultError};

const JOB: &str = "erasure.job.";
const REQUEST: &str = "erasure.request.";
const OPEN: &str = "erasure.jobs.open";

/// Where an erasure job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted, not started.
    Pending,
    /// Being carried out (or interrupted: the next start finishes it).
    Running,
    /// Finished, with its receipt.
    Done,
    /// Ended without erasing (`error` says why), or erased but its check
    /// found records left (run it again).
    Failed,
}

impl JobState {
    /// The state's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

/// An erasure job as the API shows it: no subject id, only counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErasureJob {
    /// Job id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// State.
    pub state: JobState,
    /// What it is doing now (`queued`, `erasing`, `finished`).
    pub progress: String,
    /// The request's ticket.
    pub ticket: String,
    /// Who asked (`key:<id> (<name>)`).
    pub created_by: String,
    /// When it was accepted.
    pub created_at: String,
    /// When the last attempt started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Attempts made (more than one: a restart finished it).
    pub attempts: u32,
    /// The preview the request was confirmed against.
    pub previewed: serde_json::Value,
    /// The purge's report (done or failed after erasing): records removed,
    /// keys destroyed, verification, `receipt_id`, `subject_salt`.
    pub report: Option<serde_json::Value>,
    /// The receipt's ledger sequence number.
    pub receipt: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The request as sealed in the catalog while the job is open.
#[derive(Serialize, Deserialize)]
struct SealedRequest {
    tenant: String,
    subjects: Vec<String>,
    stream: Option<String>,
    scope: Option<String>,
    since_us: Option<i64>,
    until_us: Option<i64>,
    anonymize: bool,
    skip_held: bool,
    /// Absent in requests sealed before it existed.
    #[serde(default)]
    exhaustive: bool,
    reason: String,
    ticket: String,
    actor: String,
}

impl SealedRequest {
    fn of(r: &PurgeRequest) -> Self {
        SealedRequest {
            tenant: r.tenant.to_string(),
            subjects: r.subjects.clone(),
            stream: r.stream.as_ref().map(|s| s.to_string()),
            scope: r.scope.clone(),
            since_us: r.since_us,
            until_us: r.until_us,
            anonymize: r.anonymize,
            skip_held: r.skip_held,
            exhaustive: r.exhaustive,
            reason: r.reason.clone(),
            ticket: r.ticket.clone(),
            actor: r.actor.clone(),
        }
    }

    fn request(self) -> Result<PurgeRequest> {
        let bad = |m: String| VaultError::Invalid(format!("sealed erasure request: {m}"));
        let tenant = TenantId::new(&self.tenant).map_err(|e| bad(e.to_string()))?;
        let mut r = PurgeRequest::new(tenant, &self.reason, &self.ticket, &self.actor);
        r.subjects = self.subjects;
        r.stream = self
            .stream
            .map(|s| s.parse::<StreamId>())
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        r.scope = self.scope;
        r.since_us = self.since_us;
        r.until_us = self.until_us;
        r.anonymize = self.anonymize;
        r.skip_held = self.skip_held;
        r.exhaustive = self.exhaustive;
        Ok(r)
    }
}

/// One change to the open-jobs list at a time within this process.
#[derive(Default)]
pub(crate) struct JobsLock(Mutex<()>);

impl Vault {
    fn put_job(&self, job: &ErasureJob) -> Result<()> {
        let text = serde_json::to_string(job).expect("job serializes");
        Ok(self.store.set_meta(&format!("{JOB}{}", job.id), Some(&text))?)
    }

    fn set_open(&self, id: &str, open: bool) -> Result<()> {
        let _one = self.jobs_lock.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids = self.open_erasure_jobs()?;
        ids.retain(|i| i != id);
        if open {
            ids.push(id.to_string());
        }
        let text = serde_json::to_string(&ids).expect("ids serialize");
        Ok(self.store.set_meta(OPEN, Some(&text))?)
    }

    /// Ids of the jobs not yet done or failed, oldest first: a starting
    /// server runs them.
    pub fn open_erasure_jobs(&self) -> Result<Vec<String>> {
        Ok(match self.store.meta(OPEN)? {
            Some(t) => serde_json::from_str(&t).map_err(|e| VaultError::Invalid(format!("catalog {OPEN}: {e}")))?,
            None => Vec::new(),
        })
    }

    /// One job, if it exists.
    pub fn erasure_job(&self, id: &str) -> Result<Option<ErasureJob>> {
        // Ids are ours (hex); anything else names no job.
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        self.store
            .meta(&format!("{JOB}{id}"))?
            .map(|t| serde_json::from_str(&t).map_err(|e| VaultError::Invalid(format!("erasure job {id}: {e}"))))
            .transpose()
    }

    /// Accepts an erasure: stores the job (`pending`) and its request
    /// (sealed) and returns it; [`Vault::run_erasure_job`] carries it out.
    /// `previewed` is the preview the caller confirmed.
    pub fn create_erasure_job(&self, req: &PurgeRequest, previewed: &PurgePreview, now_us: i64) -> Result<ErasureJob> {
        let id = hex::encode(rand::random::<[u8; 16]>());
        let sealed = self.sealer.seal(
            &format!("{REQUEST}{id}"),
            &serde_json::to_vec(&SealedRequest::of(req)).expect("request serializes"),
        );
        self.store
            .set_meta(&format!("{REQUEST}{id}"), Some(&hex::encode(sealed)))?;
        let job = ErasureJob {
            id: id.clone(),
            tenant: req.tenant.to_string(),
            state: JobState::Pending,
            progress: "queued".into(),
            ticket: req.ticket.clone(),
            created_by: req.actor.clone(),
            created_at: format_ts(now_us),
            started_at: None,
            finished_at: None,
            attempts: 0,
            previewed: serde_json::to_value(previewed).expect("preview serializes"),
            report: None,
            receipt: None,
            error: None,
        };
        self.put_job(&job)?;
        self.set_open(&id, true)?;
        Ok(job)
    }

    /// Carries out job `id` (or finishes an attempt a crash interrupted):
    /// the purge as `lethe purge` does it, planned at the time it runs —
    /// records of the subjects stored since the preview go too. A job that
    /// ended is returned as it is.
    pub fn run_erasure_job(&self, id: &str, clock: &dyn Fn() -> i64) -> Result<ErasureJob> {
        // The state is read under the job lock: a second run of the same job
        // (another thread, or a new leader while the old one finishes it)
        // waits, then finds it done instead of erasing again under a second
        // receipt.
        let _jobs = self.store.lock_jobs()?;
        let mut job = self
            .erasure_job(id)?
            .ok_or_else(|| VaultError::Invalid(format!("id: no erasure job {id}")))?;
        if matches!(job.state, JobState::Done | JobState::Failed) {
            return Ok(job);
        }
        let label = format!("{REQUEST}{id}");
        let sealed = self
            .store
            .meta(&label)?
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| VaultError::Invalid(format!("erasure job {id}: its request is missing")))?;
        let req: SealedRequest = serde_json::from_slice(&self.sealer.open(&label, &sealed)?)
            .map_err(|e| VaultError::Invalid(format!("erasure job {id}: {e}")))?;
        let req = req.request()?;
        job.state = JobState::Running;
        job.progress = "erasing".into();
        job.attempts += 1;
        job.started_at = Some(format_ts(clock()));
        self.put_job(&job)?;
        lethe_store::crashpoint::hit("erasure.after_running");
        let outcome = self
            .plan_purge(&req, clock())
            .and_then(|plan| self.execute_purge(&req, plan, clock));
        match outcome {
            Ok(report) => {
                job.state = if report.verified {
                    JobState::Done
                } else {
                    JobState::Failed
                };
                if !report.verified {
                    job.error = Some(format!(
                        "the check after the erasure found something left ({}); run the erasure again",
                        report.verification
                    ));
                }
                job.receipt = report.receipt_id;
                job.report = Some(serde_json::to_value(&report).expect("report serializes"));
            }
            Err(e @ (VaultError::Refused(_) | VaultError::Invalid(_))) => {
                job.state = JobState::Failed;
                job.error = Some(e.to_string());
            }
            // Storage trouble: the job stays open and runs again at the next start.
            Err(e) => return Err(e),
        }
        lethe_store::crashpoint::hit("erasure.before_done");
        job.progress = "finished".into();
        job.finished_at = Some(format_ts(clock()));
        self.put_job(&job)?;
        // The subjects leave the catalog with the job's end.
        self.store.set_meta(&label, None)?;
        self.set_open(id, false)?;
        Ok(job)
    }
}
