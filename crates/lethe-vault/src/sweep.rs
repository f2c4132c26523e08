//! The retention sweep: decide per group from the policy book, plan exactly,
//! apply, and record the run.

use std::collections::BTreeMap;

use lethe_core::policy::Action;
use lethe_core::record::format_ts;
use lethe_core::TenantId;
use lethe_store::{Progress, RetentionEffect, RetentionTarget};
use serde::Serialize;

use crate::{Result, Vault};

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
    /// The instant the policies were evaluated at.
    pub now: String,
    /// Wall-clock start.
    pub started_at: String,
    /// Wall-clock end.
    pub finished_at: String,
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
        let mut out = Vec::new();
        for g in self.store.stats(tenant)? {
            let d = self.book.decide(&g.key, now_us);
            if let Some(cutoff_us) = d.cutoff_us {
                out.push(RetentionTarget {
                    key: g.key,
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
        let policy_version = self.note_policy(actor, started)?;
        let targets = self.retention_targets(now_us, tenant)?;
        let effects = if dry_run {
            self.store.plan_retention(&targets)?
        } else {
            self.store.apply_retention(&targets, progress)?
        };
        let finished = clock();
        let mut report = self.summarize(&effects, dry_run, policy_version, now_us, started, finished);
        if !dry_run {
            // Verification: the same targets, planned again, must select nothing.
            let left: u64 = self.store.plan_retention(&targets)?.iter().map(|e| e.records).sum();
            report.verified = Some(left == 0);
            let body = serde_json::json!({
                "policy_version": policy_version,
                "now": report.now,
                "tenant": tenant.map(|t| t.to_string()),
                "deleted": report.deleted,
                "anonymized": report.anonymized,
                "bytes_freed": report.bytes_freed,
                "groups": report.groups,
                "verified": left == 0,
                "verification": format!("the targets planned again after the run select {left} records"),
                "stores": {"active": "expired records deleted (whole partitions unlinked) or anonymized in place"},
            });
            let e = self.record(finished, actor, "receipt.sweep", tenant.map(|t| t.as_str()), &body)?;
            report.receipt = Some(e.seq);
        }
        let summary = serde_json::to_string(&report).expect("report serializes");
        let kind = if dry_run { "cleanup-dry-run" } else { "cleanup" };
        self.store.record_run(kind, started, finished, "success", &summary)?;
        Ok(report)
    }

    /// The capture and retention policies in force, as canonical JSON.
    pub fn policy_snapshot(&self) -> String {
        serde_json::to_string(&serde_json::json!({
            "retention": {"default": self.book.default, "policies": self.book.retention},
            "capture": self.book.capture,
        }))
        .expect("policies serialize")
    }

    /// Stores the policy snapshot in force and returns its version; the
    /// first time a snapshot is seen it goes into the ledger as
    /// `policy.version` on `actor`'s authority.
    pub fn note_policy(&self, actor: &str, now_us: i64) -> Result<i64> {
        let snapshot = self.policy_snapshot();
        let (version, new) = self.store.record_policy(&snapshot, now_us)?;
        if new {
            let body: serde_json::Value = serde_json::from_str(&snapshot).expect("snapshot is JSON");
            self.record(
                now_us,
                actor,
                "policy.version",
                None,
                &serde_json::json!({"version": version, "policies": body}),
            )?;
        }
        Ok(version)
    }

    fn summarize(
        &self,
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
            bytes_freed: 0,
            per_stream: BTreeMap::new(),
            groups: Vec::new(),
            policy_version,
            receipt: None,
            verified: None,
            now: format_ts(now),
            started_at: format_ts(started),
            finished_at: format_ts(finished),
        };
        for e in effects.iter().filter(|e| e.records > 0 || e.bytes_freed > 0) {
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
            let rule = self.book.retention_for(k);
            r.groups.push(GroupLine {
                tenant: k.tenant.to_string(),
                stream: k.stream.to_string(),
                scope: k.scope.clone(),
                classification: k.classification.to_string(),
                rule: e.target.rule.clone(),
                action: e.target.action.to_string(),
                window: rule.window.to_string(),
                cutoff: format_ts(e.target.cutoff_us),
                records: e.records,
                partitions_dropped: e.partitions_dropped,
                bytes_freed: e.bytes_freed,
            });
        }
        r
    }
}
