//! The archive clock: objects whose every record has outlived its archive
//! window are deleted by the sweep — never one a legal hold may cover —
//! under an intent and a receipt in the ledger, like any other removal.

use lethe_core::hold::HoldScope;
use lethe_core::model::{Classification, StreamId, TenantId};
use lethe_core::policy::GroupKey;
use lethe_core::record::format_ts;
use lethe_core::Window;
use serde::{Deserialize, Serialize};

use super::format::{Manifest, ManifestGroup};
use crate::{Result, Vault, VaultError};

/// Catalog key holding the ledger sequence number of an archive expiry
/// intent whose receipt is not written yet.
const PENDING_EXPIRY: &str = "archive.pending_expiry";

/// One archived object the clock deletes (or, dry run, would).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiring {
    /// Target name.
    pub target: String,
    /// Object path.
    pub object: String,
    /// Manifest path.
    pub manifest: String,
    /// Records in it.
    pub records: u64,
    /// Stored bytes.
    pub bytes: u64,
    /// SHA-256 of the object.
    pub sha256: String,
    /// When its archive window ended.
    pub expired_at: String,
}

/// What the archive clock did in one sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExpiryReport {
    /// Objects deleted (or to delete, dry run).
    pub objects: u64,
    /// Records in them.
    pub records: u64,
    /// Bytes returned on the targets.
    pub bytes: u64,
    /// Objects past their window but kept by a legal hold.
    pub held: u64,
    /// Ledger receipt (real runs that deleted something).
    pub receipt: Option<u64>,
    /// The objects.
    pub expiring: Vec<Expiring>,
    /// Targets that could not be read or written: `target: error`.
    pub errors: Vec<String>,
}

impl Vault {
    /// The archive window in force for records of a group an object holds:
    /// the current rule's, when it still archives; else the one recorded.
    pub(crate) fn archive_window_of(&self, m: &Manifest, g: &ManifestGroup) -> Window {
        let key = (|| {
            Some(GroupKey {
                tenant: TenantId::new(&m.tenant).ok()?,
                stream: m.stream.parse::<StreamId>().ok()?,
                scope: g.scope.clone(),
                classification: g.classification.parse::<Classification>().ok()?,
            })
        })();
        let book = self.policy_book();
        key.and_then(|k| book.retention_for(&k).archive.as_ref().map(|a| a.window))
            .unwrap_or(g.archive_window)
    }

    /// Which archived objects have expired at `now_us`, and how many
    /// expired ones `holds` keep.
    pub fn archive_expiry_plan(&self, now_us: i64, tenant: Option<&str>, holds: &[HoldScope]) -> Result<ExpiryReport> {
        let mut r = ExpiryReport::default();
        for (target, listed) in self.archive_manifests(tenant, None)? {
            let ms = match listed {
                Ok(ms) => ms,
                Err(e) => {
                    r.errors.push(format!("{target}: {e}"));
                    continue;
                }
            };
            for m in ms {
                let Some(expires) = m.expires_us(&|g| self.archive_window_of(&m, g)) else {
                    continue;
                };
                if expires > now_us {
                    continue;
                }
                let end = m.newest_us.saturating_add(1);
                if holds.iter().any(|h| {
                    h.may_cover(
                        &m.tenant,
                        &mut m.groups.iter().map(|g| g.scope.as_str()),
                        m.oldest_us,
                        end,
                    )
                }) {
                    r.held += 1;
                    continue;
                }
                r.objects += 1;
                r.records += m.records;
                r.bytes += m.bytes;
                r.expiring.push(Expiring {
                    target: target.clone(),
                    manifest: m.key().manifest(),
                    object: m.object.clone(),
                    records: m.records,
                    bytes: m.bytes,
                    sha256: m.sha256.clone(),
                    expired_at: format_ts(expires),
                });
            }
        }
        Ok(r)
    }

    /// Runs the archive clock at `now_us` (see the module doc); a dry run
    /// only plans.
    pub(crate) fn expire_archives(
        &self,
        actor: &str,
        now_us: i64,
        tenant: Option<&str>,
        holds: &[HoldScope],
        dry_run: bool,
        clock: &dyn Fn() -> i64,
    ) -> Result<ExpiryReport> {
        let mut r = self.archive_expiry_plan(now_us, tenant, holds)?;
        if dry_run || r.expiring.is_empty() {
            return Ok(r);
        }
        let body = serde_json::json!({
            "now": format_ts(now_us),
            "objects": r.expiring,
        });
        let intent = self.record_intent(
            clock(),
            actor,
            "archive.expiry_intent",
            None,
            serde_json::to_string(&body).expect("JSON values serialize"),
            PENDING_EXPIRY,
        )?;
        r.receipt = Some(self.finish_expiry(actor, intent.seq, &r.expiring, clock, false)?);
        Ok(r)
    }

    /// Deletes the listed objects (object, then manifest: a crash in
    /// between leaves a manifest whose object is gone, which the pending
    /// intent explains) and writes the receipt.
    fn finish_expiry(
        &self,
        actor: &str,
        intent: u64,
        expiring: &[Expiring],
        clock: &dyn Fn() -> i64,
        recovered: bool,
    ) -> Result<u64> {
        let all = self.archive_targets()?;
        for x in expiring {
            let t = all
                .target(&x.target)
                .ok_or_else(|| VaultError::Archive(format!("no archive target `{}`", x.target)))?;
            all.delete(t, &x.object)?;
            lethe_store::crashpoint::hit("archive.mid_expiry");
            all.delete(t, &x.manifest)?;
        }
        let mut left = 0;
        for x in expiring {
            let t = all.target(&x.target).expect("checked above");
            if all.exists(t, &x.object)? {
                left += 1;
            }
        }
        let body = serde_json::json!({
            "intent": intent,
            "recovered": recovered,
            "objects": expiring.len(),
            "records": expiring.iter().map(|x| x.records).sum::<u64>(),
            "bytes": expiring.iter().map(|x| x.bytes).sum::<u64>(),
            "deleted": expiring.iter().map(|x| serde_json::json!({
                "target": x.target, "object": x.object, "sha256": x.sha256, "records": x.records,
            })).collect::<Vec<_>>(),
            "verified": left == 0,
            "verification": format!("{left} of the listed objects are still on their targets"),
        });
        let e = self.record(clock(), actor, "receipt.archive_expiry", None, &body)?;
        self.store.set_meta(PENDING_EXPIRY, None)?;
        if left > 0 {
            return Err(VaultError::Archive(format!(
                "archive expiry: {left} objects still present after deletion (receipt {})",
                e.seq
            )));
        }
        Ok(e.seq)
    }

    /// Finishes an archive expiry a crash interrupted: deletes what its
    /// intent lists (already deleted objects count as deleted) and writes
    /// its receipt.
    pub fn recover_archive_expiry(&self, clock: &dyn Fn() -> i64) -> Result<Option<u64>> {
        let Some((entry, receipt)) =
            self.pending_intent(PENDING_EXPIRY, "archive.expiry_intent", "receipt.archive_expiry")?
        else {
            return Ok(None);
        };
        if receipt.is_some() {
            self.store.set_meta(PENDING_EXPIRY, None)?;
            return Ok(None);
        }
        #[derive(Deserialize)]
        struct Body {
            objects: Vec<Expiring>,
        }
        let b: Body = serde_json::from_str(&entry.body)
            .map_err(|e| VaultError::Invalid(format!("archive expiry intent {}: {e}", entry.seq)))?;
        self.finish_expiry("system/recovery", entry.seq, &b.objects, clock, true)
            .map(Some)
    }
}
