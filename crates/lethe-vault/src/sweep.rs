//! The retention sweep: decide per group from the policy book, plan exactly,
//! apply, and record the run.

use std::collections::{BTreeMap, HashMap};

use lethe_core::hold::HoldScope;
use std::sync::Arc;

use lethe_core::policy::{Action, PolicyBook};
use lethe_core::record::format_ts;
use lethe_core::TenantId;
use lethe_store::{merge_ranges, ChainRemoval, Progress, RetentionEffect, RetentionTarget};
use serde::Serialize;

use crate::{Result, Vault, VaultError};

/// Catalog key holding the ledger sequence number of a sweep intent whose
/// receipt is not written yet.
const PENDING_INTENT: &str = "sweep.pending_intent";
use crate::archive::write::PENDING_MANIFESTS;
use crate::intent::{ChainsText, IntentText};

/// The body of a `sweep.intent` ledger entry.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct IntentBody {
    /// Policy snapshot version the sweep applied.
    pub policy_version: i64,
    /// The instant policies were evaluated at (µs).
    pub now_us: i64,
    /// The tenant the sweep was limited to.
    pub tenant: Option<String>,
    /// Exactly what goes.
    pub chains: Vec<ChainRemoval>,
    /// The archive run that copied records of `archive_then_delete` rules first.
    #[serde(default)]
    pub archive: Option<serde_json::Value>,
    /// SHA-256 of the policy snapshot applied (absent in older intents).
    #[serde(default)]
    pub policy_sha256: Option<String>,
}

/// SHA-256 (hex) of a policy snapshot as entered in the ledger: an intent
/// carries it, so `verify` can tell that the version it names is the
/// snapshot that was applied (the catalog's version table is not trusted).
pub fn policy_digest(snapshot: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(snapshot.as_bytes()))
}

/// The intents a receipt completes: its `intent`, and for a purge that
/// removed records stored while it ran, its `continuation` intent too.
pub fn receipt_intents(e: &lethe_core::ledger::Entry) -> Vec<u64> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&e.body) else {
        return Vec::new();
    };
    ["intent", "continuation"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(|i| i.as_u64()))
        .collect()
}

/// Per chain, the sequence ranges a removal takes, for receipts: dropped
/// (whole partitions), deleted (tombstoned) and anonymized.
pub(crate) fn ranges_summary(chains: &[ChainRemoval]) -> serde_json::Value {
    serde_json::Value::Array(
        chains
            .iter()
            .map(|c| {
                let dropped = merge_ranges(
                    c.dropped
                        .iter()
                        .flat_map(|d| &d.segments)
                        .map(|s| [s.first, s.last])
                        .collect(),
                );
                let rows = |a: Action| {
                    merge_ranges(
                        c.rows
                            .iter()
                            .filter(|r| r.action == a)
                            .flat_map(|r| r.seqs.iter().copied())
                            .collect(),
                    )
                };
                serde_json::json!({
                    "tenant": c.tenant,
                    "stream": c.stream,
                    "dropped": dropped,
                    "deleted": rows(Action::Delete),
                    "anonymized": rows(Action::Anonymize),
                })
            })
            .collect(),
    )
}

/// Counts for one `<tenant>/<stream>:<version>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamCounts {
    /// Records deleted.
    pub deleted: u64,
    /// Records anonymized.
    pub anonymized: u64,
    /// Disk bytes returned.
    pub bytes_freed: u64,
}

/// One line of the plan: a group, the rule that governs it and its effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupLine {
    /// Tenant.
    pub tenant: String,
    /// Stream and version.
    pub stream: String,
    /// Scope.
    pub scope: String,
    /// Classification.
    pub classification: String,
    /// Rule name.
    pub rule: String,
    /// `delete` or `anonymize`.
    pub action: String,
    /// Window of the rule.
    pub window: String,
    /// Records with event time before this expire.
    pub cutoff: String,
    /// Records affected.
    pub records: u64,
    /// Records expired but kept by a legal hold.
    pub held: u64,
    /// Partitions removed whole.
    pub partitions_dropped: u64,
    /// Disk bytes returned.
    pub bytes_freed: u64,
}

/// What a sweep did (or, dry-run, will do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// `success` or `dry_run`.
    pub status: String,
    /// Records deleted.
    pub deleted: u64,
    /// Records anonymized.
    pub anonymized: u64,
    /// Records that had expired but are kept by a legal hold.
    pub held: u64,
    /// Disk bytes returned.
    pub bytes_freed: u64,
    /// Per `<tenant>/<stream>:<version>`, streams with an effect only.
    pub per_stream: BTreeMap<String, StreamCounts>,
    /// Per group with an effect.
    pub groups: Vec<GroupLine>,
    /// Version of the policy snapshot the sweep applied (see `Store::record_policy`).
    pub policy_version: i64,
    /// Ledger sequence number of the run's receipt (real runs).
    pub receipt: Option<u64>,
    /// Whether a re-plan after the run selected nothing (real runs).
    pub verified: Option<bool>,
    /// Ledger entries trimmed by ledger retention after the run (`[ledger] retention`).
    pub ledger_trimmed: u64,
    /// Things that went wrong without failing the run (e.g. the ledger could not be trimmed).
    pub warnings: Vec<String>,
    /// What `archive_then_delete` rules archived before deleting (real runs).
    pub archived: Option<crate::archive::write::ArchiveSummary>,
    /// Rules whose archive target failed: their records stay until a run succeeds.
    pub failing: Vec<crate::archive::write::FailingPolicy>,
    /// The archive clock: archived objects past their archive window.
    pub archive_expiry: Option<crate::archive::expiry::ExpiryReport>,
    /// Restorations (archived records restored into the store) whose window ended.
    pub restorations_expired: Vec<crate::archive::restore::ExpiredRestoration>,
    /// The instant the policies were evaluated at.
    pub now: String,
    /// Wall-clock start.
    pub started_at: String,
    /// Wall-clock end.
    pub finished_at: String,
    /// Expired records a concurrent ingest stored while the sweep ran
    /// (after its plan): not this sweep's, removed by the next.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stored_during: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SweepReport {
    /// Whether `other` removes exactly what this one does: the same deleted
    /// and anonymized counts per stream (bytes freed and times may differ).
    pub fn same_effect(&self, other: &SweepReport) -> bool {
        let counts = |r: &SweepReport| {
            r.per_stream
                .iter()
                .map(|(k, v)| (k.clone(), v.deleted, v.anonymized))
                .collect::<Vec<_>>()
        };
        counts(self) == counts(other)
    }
}

impl Vault {
    /// The retention targets at `now_us`: every stored group whose policy is
    /// enabled and finite.
    pub fn retention_targets(&self, now_us: i64, tenant: Option<&TenantId>) -> Result<Vec<RetentionTarget>> {
        self.retention_targets_in(&self.policy_book(), now_us, tenant)
    }

    /// [`Vault::retention_targets`] under `book` (e.g. a proposed setting's).
    pub fn retention_targets_in(
        &self,
        book: &PolicyBook,
        now_us: i64,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<RetentionTarget>> {
        let mut out = Vec::new();
        for key in self.store.groups(tenant)? {
            let d = book.decide(&key, now_us);
            if let Some(cutoff_us) = d.cutoff_us {
                out.push(RetentionTarget {
                    key,
                    rule: d.rule.name.clone(),
                    action: d.rule.action,
                    cutoff_us,
                });
            }
        }
        Ok(out)
    }

    /// Runs the sweep at `now_us` as the system (see [`Vault::sweep_by`]).
    pub fn sweep(
        &self,
        now_us: i64,
        tenant: Option<&TenantId>,
        dry_run: bool,
        clock: &dyn Fn() -> i64,
        progress: Progress<'_>,
    ) -> Result<SweepReport> {
        self.sweep_by("system/sweep", now_us, tenant, dry_run, clock, progress)
    }

    /// Runs the sweep at `now_us` (policies are evaluated at that instant) on
    /// `actor`'s authority. `clock` stamps start and finish. A dry run returns
    /// the exact plan and changes nothing. A real run then checks that nothing
    /// it was to remove is still selected, and writes a receipt to the ledger.
    pub fn sweep_by(
        &self,
        actor: &str,
        now_us: i64,
        tenant: Option<&TenantId>,
        dry_run: bool,
        clock: &dyn Fn() -> i64,
        progress: Progress<'_>,
    ) -> Result<SweepReport> {
        let started = clock();
        // A real run acts now: evaluating policies at a later instant would
        // remove records that have not expired. `--now` in the future is
        // for dry runs (previews) only.
        if !dry_run && now_us > started {
            return Err(VaultError::Invalid(format!(
                "now: a real cleanup cannot evaluate policies at {}, later than the current time {}; preview the future with --dry-run",
                format_ts(now_us),
                format_ts(started)
            )));
        }
        // One sweep or purge at a time per store, across processes: a second
        // cleanup waits, then finds nothing left to do.
        let _jobs = if dry_run { None } else { Some(self.store.lock_jobs()?) };
        // The policies: a real run puts the tenant settings made since the
        // last sweep (by any process) in force, under the job lock; a dry
        // run shows what the next real run would apply.
        let book = if dry_run {
            Arc::new(self.current_book()?)
        } else {
            self.refresh_book()?
        };
        // A dry run changes nothing: the policy snapshot is noted in the
        // catalog (so the version it reports is the one a real run uses)
        // but entered in the ledger only by a real run.
        let policy_version = if dry_run {
            self.store.record_policy(&policy_snapshot(&book), started)?.0
        } else {
            self.note_policy(actor, started)?
        };
        let mut early = Vec::new();
        if !dry_run {
            // Finish a sweep a crash interrupted before anything else, and
            // seal what is not yet under a checkpoint so removals only ever
            // happen to sealed records.
            self.recover_sweep(clock)?;
            self.recover_purge(clock)?;
            if let Err(e) = self.recover_manifests() {
                early.push(format!("archive manifests not yet published: {e}"));
            }
            if let Err(e) = self.recover_archive_expiry(clock) {
                early.push(format!("archive expiry recovery: {e}"));
            }
            self.seal(actor, started, true)?;
        }
        // The chains as they stand when the sweep plans: its check
        // afterwards is held to them, since ingest does not wait for sweeps
        // (a backfill of old records may land meanwhile).
        let heads: HashMap<(String, String), u64> = if dry_run {
            HashMap::new()
        } else {
            self.store
                .chains()?
                .into_iter()
                .map(|c| ((c.tenant, c.stream), c.size))
                .collect()
        };
        let targets = self.retention_targets_in(&book, now_us, tenant)?;
        // Legal holds in force at the evaluation instant: held records stay.
        let holds: Vec<HoldScope> = self.active_holds(now_us)?.into_iter().map(|(_, h)| h).collect();
        let mut plan = self.store.plan_removal(&targets, &holds)?;
        tracing::info!(
            targets = targets.len(),
            holds = holds.len(),
            chains = plan.chains.len(),
            dry_run,
            "sweep planned at {}",
            format_ts(now_us)
        );
        let mut applied = None;
        let mut intent = None;
        let mut archived = None;
        let mut manifests = Vec::new();
        let mut failing = Vec::new();
        let mut targets = targets;
        if !dry_run && !plan.chains.is_empty() {
            // Archive first: what `archive_then_delete` rules remove is on
            // its target, checked and in the ledger before the intent.
            let a = self.archive_for_sweep(actor, targets, &holds, plan, policy_version, now_us, clock)?;
            (targets, plan, archived, manifests, failing) = (a.targets, a.plan, a.summary, a.manifests, a.failing);
        }
        if !dry_run && !plan.chains.is_empty() {
            // The intent — exactly what is about to go, under which policy —
            // is in the ledger before the first destructive step.
            let body = IntentText {
                archive: archived.as_ref().map(|a| {
                    serde_json::json!({
                        "run": a.run, "entries": a.entries, "objects": a.objects, "records": a.records,
                    })
                }),
                chains: ChainsText(&plan.chains),
                now_us,
                policy_sha256: policy_digest(&policy_snapshot(&book)),
                policy_version,
                tenant: tenant.map(|t| t.as_str()),
            };
            // Only the sequence number is kept: the entry's text (24 MB for
            // 100 tenants' first sweep of a year) is not held while the
            // removal runs.
            let seq = self
                .record_intent(
                    clock(),
                    actor,
                    "sweep.intent",
                    tenant.map(|t| t.as_str()),
                    serde_json::to_string(&body).expect("intent serializes"),
                    PENDING_INTENT,
                )?
                .seq;
            intent = Some(seq);
            applied = Some(self.store.apply_removal(&plan.chains, progress)?);
            lethe_store::crashpoint::hit("sweep.after_apply");
        }
        let finished = clock();
        let mut report = summarize(&book, &plan.effects, dry_run, policy_version, now_us, started, finished);
        if let Some(a) = applied {
            // The receipt counts what this run removed, not what it planned.
            report.bytes_freed = a.bytes_freed;
            report.deleted = a.deleted;
            report.anonymized = a.anonymized;
        }
        report.archived = archived;
        report.warnings.extend(early);
        if !failing.is_empty() {
            report.status = "partial".into();
        }
        report.failing = failing;
        if !dry_run {
            // Verification: the same targets, planned again, must select
            // nothing of what was stored when the sweep began; expired
            // records stored since are the next sweep's.
            let (left, later) = left_of(&self.store.plan_removal(&targets, &holds)?, &heads);
            report.verified = Some(left == 0);
            report.stored_during = later;
            // What each tenant the sweep covered holds after it: the points
            // of the dashboard's "store size over time" (sweep history).
            let mut stored_after: BTreeMap<String, serde_json::Value> = BTreeMap::new();
            for row in self.stats(tenant)?.rows {
                let e = stored_after
                    .entry(row.tenant)
                    .or_insert_with(|| serde_json::json!({"records": 0u64, "bytes": 0u64}));
                e["records"] = (e["records"].as_u64().unwrap_or(0) + row.records).into();
                e["bytes"] = (e["bytes"].as_u64().unwrap_or(0) + row.bytes).into();
            }
            let body = serde_json::json!({
                "intent": intent,
                "stored_after": stored_after,
                "policy_version": policy_version,
                "now": report.now,
                "tenant": tenant.map(|t| t.to_string()),
                "deleted": report.deleted,
                "anonymized": report.anonymized,
                "held": report.held,
                "bytes_freed": report.bytes_freed,
                "groups": report.groups,
                "ranges": ranges_summary(&plan.chains),
                "verified": left == 0,
                "verification": format!(
                    "the targets planned again after the run select {left} records stored before it began{}",
                    if later > 0 { format!("; {later} expired records stored while it ran are the next sweep's") } else { String::new() }
                ),
                "stored_during": later,
                "stores": {
                    "active": "expired records deleted (whole partitions unlinked; headers of single records kept as tombstones) or anonymized in place",
                    "archive": report.archived.as_ref().map(|a| format!(
                        "{} records of archive_then_delete rules written to {} objects, read back and checked before deletion (archive.written entries {:?})",
                        a.records, a.objects, a.entries)),
                },
                "archive": report.archived,
                "failing": report.failing,
            });
            let e = if manifests.is_empty() {
                self.record(finished, actor, "receipt.sweep", tenant.map(|t| t.as_str()), &body)?
            } else {
                // The receipt and the mark that its manifests are still to
                // be published commit together.
                self.record_intent(
                    finished,
                    actor,
                    "receipt.sweep",
                    tenant.map(|t| t.as_str()),
                    serde_json::to_string(&body).expect("JSON values serialize"),
                    PENDING_MANIFESTS,
                )?
            };
            if intent.is_some() {
                self.store.set_meta(PENDING_INTENT, None)?;
            }
            report.receipt = Some(e.seq);
            if !manifests.is_empty() {
                // The records are safe on the target and in the ledger; an
                // unwritten manifest is published by the next run.
                if let Err(err) = self.publish_manifests(&mut manifests, intent, e.seq) {
                    report
                        .warnings
                        .push(format!("archive manifests not yet published: {err}"));
                }
            }
            match self.trim_ledger(actor, finished) {
                Ok(n) => report.ledger_trimmed = n,
                Err(e) => report.warnings.push(e.to_string()),
            }
        }
        // The archive clock: objects past their archive window go (dry
        // run: are listed). A target that cannot be reached fails only this.
        match self.expire_archives(actor, now_us, tenant.map(|t| t.as_str()), &holds, dry_run, clock) {
            Ok(x) => {
                report
                    .warnings
                    .extend(x.errors.iter().map(|e| format!("archive expiry: {e}")));
                report.archive_expiry = Some(x);
            }
            Err(e) => report.warnings.push(format!("archive expiry: {e}")),
        }
        match self.expire_restorations(actor, now_us, tenant.map(|t| t.as_str()), dry_run) {
            Ok(x) => report.restorations_expired = x,
            Err(e) => report.warnings.push(format!("restorations: {e}")),
        }
        if !dry_run {
            self.publish_or_warn(clock(), &mut report.warnings);
        }
        let summary = serde_json::to_string(&report).expect("report serializes");
        let kind = if dry_run { "cleanup-dry-run" } else { "cleanup" };
        self.store.record_run(kind, started, finished, "success", &summary)?;
        Ok(report)
    }

    /// Completes a sweep whose intent is in the ledger but whose receipt is
    /// not (the process died in between): carries out exactly the intent's
    /// removal again (idempotent) and writes its receipt. Returns the
    /// receipt's ledger sequence number, if there was anything to recover.
    pub fn recover_sweep(&self, clock: &dyn Fn() -> i64) -> Result<Option<u64>> {
        let _jobs = self.store.lock_jobs()?;
        let Some((entry, receipt)) = self.pending_intent(PENDING_INTENT, "sweep.intent", "receipt.sweep")? else {
            return Ok(None);
        };
        let seq = entry.seq;
        if receipt.is_some() {
            self.store.set_meta(PENDING_INTENT, None)?;
            return Ok(None);
        }
        let body: IntentBody =
            serde_json::from_str(&entry.body).map_err(|e| VaultError::Invalid(format!("sweep intent {seq}: {e}")))?;
        let applied = self.store.apply_removal(&body.chains, &|_, _| {})?;
        let now = clock();
        let receipt = serde_json::json!({
            "intent": seq,
            "recovered": true,
            "policy_version": body.policy_version,
            "now": format_ts(body.now_us),
            "tenant": body.tenant,
            "archive": body.archive,
            "ranges": ranges_summary(&body.chains),
            "completed_after_interruption": applied,
            "verified": true,
            "verification": "the intent's removal was carried out again; every listed record is gone",
        });
        let e = self.record_intent(
            now,
            "system/recovery",
            "receipt.sweep",
            body.tenant.as_deref(),
            serde_json::to_string(&receipt).expect("JSON values serialize"),
            PENDING_MANIFESTS,
        )?;
        self.store.set_meta(PENDING_INTENT, None)?;
        // The manifests are published by the sweep's next step, `recover_manifests`.
        Ok(Some(e.seq))
    }

    /// The capture and retention policies in force, as canonical JSON.
    pub fn policy_snapshot(&self) -> String {
        policy_snapshot(&self.policy_book())
    }

    /// Stores the policy snapshot in force and returns its version; the
    /// first time a snapshot is seen it goes into the ledger as
    /// `policy.version` on `actor`'s authority.
    pub fn note_policy(&self, actor: &str, now_us: i64) -> Result<i64> {
        let snapshot = self.policy_snapshot();
        let (version, to_enter) = self.store.record_policy(&snapshot, now_us)?;
        if to_enter {
            // Entered, then marked: a crash in between enters it again on the
            // next run (a duplicate entry is harmless; a missing one would
            // leave every sweep under this version unexplained).
            let body: serde_json::Value = serde_json::from_str(&snapshot).expect("snapshot is JSON");
            self.record(
                now_us,
                actor,
                "policy.version",
                None,
                &serde_json::json!({"version": version, "policies": body}),
            )?;
            self.store.mark_policy_entered(version)?;
        }
        Ok(version)
    }
}

/// A book's capture and retention policies as canonical JSON (what
/// `policy.version` entries hold). Tenant settings appear only when there
/// are some, so a store without any keeps its snapshots' digests.
pub fn policy_snapshot(book: &PolicyBook) -> String {
    let mut retention = serde_json::json!({"default": book.default, "policies": book.retention});
    if !book.overrides.is_empty() {
        retention["overrides"] = serde_json::to_value(&book.overrides).expect("rules serialize");
    }
    serde_json::to_string(&serde_json::json!({
        "retention": retention,
        "capture": book.capture,
    }))
    .expect("policies serialize")
}

/// A plan's effects as a report: totals, per stream, per group.
pub fn summarize(
    book: &PolicyBook,
    effects: &[RetentionEffect],
    dry_run: bool,
    policy_version: i64,
    now: i64,
    started: i64,
    finished: i64,
) -> SweepReport {
    let mut r = SweepReport {
        status: if dry_run { "dry_run" } else { "success" }.into(),
        deleted: 0,
        anonymized: 0,
        held: 0,
        bytes_freed: 0,
        per_stream: BTreeMap::new(),
        groups: Vec::new(),
        policy_version,
        receipt: None,
        verified: None,
        ledger_trimmed: 0,
        warnings: Vec::new(),
        archived: None,
        failing: Vec::new(),
        archive_expiry: None,
        restorations_expired: Vec::new(),
        now: format_ts(now),
        started_at: format_ts(started),
        finished_at: format_ts(finished),
        stored_during: 0,
    };
    for e in effects
        .iter()
        .filter(|e| e.records > 0 || e.bytes_freed > 0 || e.held > 0)
    {
        r.held += e.held;
        let k = &e.target.key;
        let s = r.per_stream.entry(format!("{}/{}", k.tenant, k.stream)).or_default();
        match e.target.action {
            Action::Delete => {
                s.deleted += e.records;
                r.deleted += e.records;
            }
            Action::Anonymize => {
                s.anonymized += e.records;
                r.anonymized += e.records;
            }
        }
        s.bytes_freed += e.bytes_freed;
        r.bytes_freed += e.bytes_freed;
        let rule = book.retention_for(k);
        r.groups.push(GroupLine {
            tenant: k.tenant.to_string(),
            stream: k.stream.to_string(),
            scope: k.scope.clone(),
            classification: k.classification.to_string(),
            rule: e.target.rule.clone(),
            action: rule.action_name().to_string(),
            window: rule.window.to_string(),
            cutoff: format_ts(e.target.cutoff_us),
            records: e.records,
            held: e.held,
            partitions_dropped: e.partitions_dropped,
            bytes_freed: e.bytes_freed,
        });
    }
    r
}

/// Of what a plan made after a sweep still removes: the records stored up
/// to `heads` (each chain's last sequence number when the sweep began),
/// and those stored later. A partition the plan drops whole that also
/// holds older sequence numbers counts whole as left (its tombstones
/// cannot be told from live rows here): conservative, never certifying
/// away what the sweep should have removed.
fn left_of(plan: &lethe_store::Removal, heads: &HashMap<(String, String), u64>) -> (u64, u64) {
    let (mut left, mut later) = (0u64, 0u64);
    for c in &plan.chains {
        let head = heads.get(&(c.tenant.clone(), c.stream.clone())).copied().unwrap_or(0);
        for r in &c.rows {
            for &[a, b] in &r.seqs {
                let n = b + 1 - a;
                let old = if a > head { 0 } else { b.min(head) + 1 - a };
                left += old;
                later += n - old;
            }
        }
        for d in &c.dropped {
            let n: u64 = d.segments.iter().map(|s| s.last + 1 - s.first).sum();
            if d.segments.iter().all(|s| s.first > head) {
                later += n;
            } else {
                left += n;
            }
        }
    }
    (left, later)
}
