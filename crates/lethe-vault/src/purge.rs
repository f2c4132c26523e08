//! Erasure on request: select a subject's (or a time range's, or a
//! scope's) records, preview exactly what goes, then remove them from the
//! active store, destroy the subject's data keys so every other copy becomes
//! unreadable, check that nothing readable is left, and write a receipt.
//!
//! The protocol is the sweep's: a `purge.intent` in the ledger (with a
//! pending mark) before the first destructive step, then the removal, key
//! destruction, verification and a `receipt.purge` naming the intent. A crash
//! anywhere is finished by the next purge or cleanup — exactly one receipt.

use std::collections::BTreeSet;

use lethe_core::hold::{subject_commitment, HoldScope};
use lethe_core::policy::Action;
use lethe_core::record::format_ts;
use lethe_core::{StreamId, TenantId};
use lethe_store::{ChainRemoval, KeyId, Selected, Selection};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Result, Vault, VaultError};

/// Catalog key holding the ledger sequence number of a purge intent whose
/// receipt is not written yet.
const PENDING_INTENT: &str = "purge.pending_intent";

/// Catalog key prefix: `purge.done.<fingerprint>` → receipt of a completed
/// purge, so running the same purge (same ticket, same selection) again
/// reports that receipt instead of writing a second one.
const DONE: &str = "purge.done.";

/// Catalog key prefix: `purge.failed.<fingerprint>` → receipt of a run of
/// this purge whose verification found records left; the next run plans
/// without the subject filters.
const FAILED: &str = "purge.failed.";

/// Catalog key holding, while a subject purge's intent awaits its receipt,
/// the selection to check once its keys are destroyed ([`PendingCheck`]):
/// records of the subjects stored by a concurrent ingest after the
/// intent's selection, under keys it is about to destroy, are found by
/// the recovery too, never certified away.
const PENDING_CHECK: &str = "purge.pending_check";

/// What a recovery needs to verify a subject purge as the run would have:
/// its selection (pseudonyms in hex). Kept in the catalog only while the
/// purge is pending; never in the ledger.
#[derive(Debug, Serialize, Deserialize)]
struct PendingCheck {
    stream: Option<String>,
    scope: Option<String>,
    since_us: Option<i64>,
    until_us: Option<i64>,
    pseudonyms: Vec<String>,
}

impl PendingCheck {
    /// The check of a purge's selection.
    fn of(sel: &Selection) -> Self {
        PendingCheck {
            stream: sel.stream.as_ref().map(|s| s.to_string()),
            scope: sel.scope.clone(),
            since_us: sel.since_us,
            until_us: sel.until_us,
            pseudonyms: sel.pseudonyms.iter().map(hex::encode).collect(),
        }
    }

    /// The selection again, for the intent's tenant and action.
    fn selection(self, tenant: &str, action: Action) -> Result<Selection> {
        let bad = |what: String| VaultError::Invalid(format!("{PENDING_CHECK}: {what}"));
        let pseudonyms = self
            .pseudonyms
            .iter()
            .map(|p| {
                hex::decode(p)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| bad("not a pseudonym".into()))
            })
            .collect::<Result<_>>()?;
        Ok(Selection {
            tenant: TenantId::new(tenant).map_err(|e| bad(format!("tenant: {e}")))?,
            pseudonyms,
            stream: self
                .stream
                .map(|s| s.parse())
                .transpose()
                .map_err(|e| bad(format!("stream: {e}")))?,
            scope: self.scope,
            since_us: self.since_us,
            until_us: self.until_us,
            action,
            exhaustive: false,
        })
    }
}

/// An erasure request.
#[derive(Debug, Clone)]
pub struct PurgeRequest {
    /// Tenant (always exactly one).
    pub tenant: TenantId,
    /// Subject ids; empty means records of any subject (narrowed by the other fields).
    pub subjects: Vec<String>,
    /// Only this stream.
    pub stream: Option<StreamId>,
    /// Only this scope.
    pub scope: Option<String>,
    /// Event time ≥ (µs).
    pub since_us: Option<i64>,
    /// Event time < (µs).
    pub until_us: Option<i64>,
    /// Remove the subject linkage and personal fields but keep the events.
    pub anonymize: bool,
    /// Purge what is not held and report what was skipped, instead of refusing.
    pub skip_held: bool,
    /// Why (the authority).
    pub reason: String,
    /// Reference of the request (ticket, case number).
    pub ticket: String,
    /// Who runs it.
    pub actor: String,
}

impl PurgeRequest {
    /// A request on `tenant` with its authority and nothing selected yet:
    /// set `subjects`, `stream`, `scope`, `since_us`/`until_us` next.
    pub fn new(tenant: TenantId, reason: &str, ticket: &str, actor: &str) -> Self {
        PurgeRequest {
            tenant,
            subjects: Vec::new(),
            stream: None,
            scope: None,
            since_us: None,
            until_us: None,
            anonymize: false,
            skip_held: false,
            reason: reason.into(),
            ticket: ticket.into(),
            actor: actor.into(),
        }
    }

    /// Delete or anonymize.
    fn action(&self) -> Action {
        if self.anonymize {
            Action::Anonymize
        } else {
            Action::Delete
        }
    }

    /// What the store selects for this request, given its subjects' pseudonyms.
    fn selection(&self, pseudonyms: Vec<[u8; 32]>) -> Selection {
        Selection {
            tenant: self.tenant.clone(),
            pseudonyms,
            stream: self.stream.clone(),
            scope: self.scope.clone(),
            since_us: self.since_us,
            until_us: self.until_us,
            action: self.action(),
            exhaustive: false,
        }
    }

    /// Whether the request covers the subjects' whole history: then their
    /// data keys can be destroyed.
    fn whole_history(&self) -> bool {
        !self.subjects.is_empty()
            && self.stream.is_none()
            && self.scope.is_none()
            && self.since_us.is_none()
            && self.until_us.is_none()
    }

    fn check(&self) -> Result<()> {
        let bad = |f: &str, m: &str| Err(VaultError::Invalid(format!("{f}: {m}")));
        if self.reason.trim().is_empty() {
            return bad("reason", "a purge needs a reason (the authority for it)");
        }
        if self.ticket.trim().is_empty() {
            return bad("ticket", "a purge needs a ticket or case reference");
        }
        if let Some(s) = self.subjects.iter().find(|s| s.is_empty()) {
            return bad("subject", &format!("empty subject id `{s}`"));
        }
        if self.subjects.is_empty() && self.since_us.is_none() && self.until_us.is_none() && self.scope.is_none() {
            return bad(
                "subject",
                "name subjects, a time range (--since/--until) or a scope: a purge never selects a whole tenant by default",
            );
        }
        if let (Some(a), Some(b)) = (self.since_us, self.until_us) {
            if a >= b {
                return bad("since", "must be before until");
            }
        }
        Ok(())
    }
}

/// What a purge selects, per stream and scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewLine {
    /// Stream.
    pub stream: String,
    /// Scope.
    pub scope: String,
    /// Records to remove.
    pub records: u64,
    /// Records kept by a hold.
    pub held: u64,
    /// Bytes of their stored fields.
    pub bytes: u64,
    /// Oldest event time.
    pub oldest: Option<String>,
    /// Newest event time.
    pub newest: Option<String>,
}

/// The preview: exactly what the purge will remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgePreview {
    /// Tenant.
    pub tenant: String,
    /// `delete` or `anonymize`.
    pub action: String,
    /// Subjects named.
    pub subjects: usize,
    /// Of which with records in the store (selected or held).
    pub subjects_found: usize,
    /// Records the purge removes.
    pub selected: u64,
    /// Records selected but kept by a legal hold.
    pub held: u64,
    /// Holds that keep them.
    pub held_by: Vec<i64>,
    /// Bytes of the removed records' stored fields.
    pub bytes: u64,
    /// Oldest event time selected.
    pub oldest: Option<String>,
    /// Newest event time selected.
    pub newest: Option<String>,
    /// Per stream and scope.
    pub groups: Vec<PreviewLine>,
    /// Data keys the purge destroys (one per subject that has one).
    pub keys_to_destroy: usize,
    /// What happens to the subjects' keys, and why.
    pub keys: String,
}

/// A planned purge: the preview and exactly what carries it out.
#[derive(Debug, Clone)]
pub struct PurgePlan {
    /// What the operator confirms.
    pub preview: PurgePreview,
    selected: Selected,
    keys: Vec<KeyId>,
    fingerprint: String,
    pseudonyms: Vec<[u8; 32]>,
    holds: Vec<HoldScope>,
}

/// What a purge did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// `success`, or `already_done` (the same purge has a receipt).
    pub status: String,
    /// The preview it carried out.
    #[serde(flatten)]
    pub preview: PurgePreview,
    /// Records removed (tombstoned or anonymized) now.
    pub removed: u64,
    /// Data keys destroyed now.
    pub keys_destroyed: u64,
    /// Whether the check afterwards found nothing readable left.
    pub verified: bool,
    /// What the check looked at.
    pub verification: String,
    /// The receipt (ledger sequence number).
    pub receipt_id: Option<u64>,
    /// Salt of the subject commitment in the receipt: keep it with the
    /// ticket to show later which subjects the receipt covers.
    pub subject_salt: Option<String>,
    /// Receipts written for interrupted purges finished first.
    pub recovered: Vec<u64>,
    /// Restored copies (archived records restored into the store) the
    /// selection reached, removed or anonymized with the rest.
    pub restored_removed: u64,
    /// The `purge.no_match` ledger entry, when nothing matched.
    pub no_match_entry: Option<u64>,
    /// Things that went wrong without failing the purge (a witness that
    /// could not be reached).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The body of a `purge.intent` ledger entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PurgeIntent {
    /// The request's reference.
    pub ticket: String,
    /// Its reason.
    pub reason: String,
    /// Identifies the request (same ticket and selection → same fingerprint).
    pub fingerprint: String,
    /// Tenant.
    pub tenant: String,
    /// `delete` or `anonymize`.
    pub action: Action,
    /// Evaluation instant (µs).
    pub now_us: i64,
    /// Data keys to destroy.
    pub keys: Vec<KeyId>,
    /// Exactly the rows that go.
    pub chains: Vec<ChainRemoval>,
}

impl Vault {
    /// Plans a purge at `now_us`: the exact rows, counts per stream and
    /// scope, the keys to destroy. Changes nothing.
    pub fn plan_purge(&self, req: &PurgeRequest, now_us: i64) -> Result<PurgePlan> {
        req.check()?;
        let Some(tk) = self.keys.tenant(&req.tenant, None, now_us)? else {
            return Err(VaultError::Invalid(format!(
                "tenant: no tenant `{}` in this vault (it never stored a record)",
                req.tenant
            )));
        };
        let mut subjects: Vec<&String> = req.subjects.iter().collect();
        subjects.sort();
        subjects.dedup();
        let pseudonyms: Vec<[u8; 32]> = subjects.iter().map(|s| tk.pseudonym(s)).collect();
        let active = self.active_holds(now_us)?;
        let holds: Vec<HoldScope> = active.iter().map(|(_, h)| h.clone()).collect();
        let action = req.action();
        let fingerprint = fingerprint(req, action, &pseudonyms);
        // A run of this purge whose verification found records left (the
        // subject filters that found the rows missed some) is planned again
        // without the filters.
        let mut sel = req.selection(pseudonyms.clone());
        sel.exhaustive = self.store.meta(&format!("{FAILED}{fingerprint}"))?.is_some();
        let selected = self.store.select(&sel, &holds)?;
        // Keys: one per subject, destroyed only when the purge covers the
        // subject's whole history and no record of the subject is held.
        let mut keys = Vec::new();
        let key_note;
        if req.subjects.is_empty() {
            key_note = "kept: records of many subjects share period keys; the removed records' \
                        fields are gone from the active store only"
                .to_string();
        } else if !req.whole_history() {
            key_note = "kept: the selection is narrowed (stream, scope or time), so the subjects' \
                        other records still need their keys"
                .to_string();
        } else {
            let held: BTreeSet<&[u8; 32]> = selected.held_subjects.iter().collect();
            let refs: Vec<Vec<u8>> = pseudonyms
                .iter()
                .filter(|p| !held.contains(p))
                .map(|p| [b"s:".as_slice(), p].concat())
                .collect();
            for k in self.store.data_keys_by_ref(&req.tenant, &refs)?.into_iter().flatten() {
                if k.wrapped.is_some() {
                    keys.push(k.id);
                }
            }
            key_note = if held.is_empty() {
                "destroyed: every copy of the subjects' personal fields becomes unreadable".to_string()
            } else {
                format!(
                    "destroyed except for {} subject(s) with held records, whose keys the hold keeps",
                    held.len()
                )
            };
        }
        let held_by = active
            .iter()
            .filter(|(_, h)| {
                h.tenant == req.tenant.as_str()
                    && selected
                        .groups
                        .iter()
                        .any(|g| g.held > 0 && h.scope.as_deref().is_none_or(|s| s == g.scope))
            })
            .map(|(id, _)| *id)
            .collect();
        let preview = preview(req, action, subjects.len(), &selected, held_by, keys.len(), key_note);
        Ok(PurgePlan {
            preview,
            selected,
            keys,
            fingerprint,
            pseudonyms,
            holds,
        })
    }

    /// Carries out a planned purge: refuses if records are held (unless
    /// `skip_held`), finishes any interrupted purge first, and does nothing
    /// but report the receipt if the same purge already completed. Runs
    /// under the store's job lock (one sweep or purge at a time, across
    /// processes) and plans again under it, so two identical purges started
    /// at once make one intent and one receipt.
    pub fn execute_purge(&self, req: &PurgeRequest, plan: PurgePlan, clock: &dyn Fn() -> i64) -> Result<PurgeReport> {
        let _jobs = self.store.lock_jobs()?;
        if plan.preview.held > 0 && !req.skip_held {
            return Err(VaultError::Refused(format!(
                "{} selected record(s) are under legal hold (hold {}); release the hold or pass --skip-held to purge the rest",
                plan.preview.held,
                plan.preview
                    .held_by
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let recovered: Vec<u64> = self.recover_purge(clock)?.into_iter().collect();
        let mut report = PurgeReport {
            status: "success".into(),
            preview: plan.preview.clone(),
            removed: 0,
            keys_destroyed: 0,
            verified: false,
            verification: String::new(),
            receipt_id: None,
            subject_salt: None,
            recovered,
            restored_removed: 0,
            no_match_entry: None,
            warnings: Vec::new(),
        };
        if let Some(done) = self.store.meta(&format!("{DONE}{}", plan.fingerprint))? {
            report.status = "already_done".into();
            report.receipt_id = done.parse().ok();
            report.verified = true;
            report.verification = "this purge (same ticket and selection) completed before; see its receipt".into();
            return Ok(report);
        }
        // The plan was made before the job lock was taken (and before any
        // recovery): plan again, under the lock, so the intent lists
        // exactly what is there now.
        let plan = self.plan_purge(req, clock())?;
        report.preview = plan.preview.clone();
        if plan.preview.held > 0 && !req.skip_held {
            return Err(VaultError::Refused(format!(
                "{} selected record(s) are under legal hold; release the hold or pass --skip-held to purge the rest",
                plan.preview.held
            )));
        }
        let started = clock();
        if plan.preview.selected == 0 && plan.keys.is_empty() {
            // Nothing to remove and no key to destroy: no intent, no receipt
            // claiming an erasure — but the request is on record.
            if req.subjects.is_empty() || !plan.pseudonyms.is_empty() {
                report.restored_removed = self
                    .store
                    .erase_restored(&req.selection(plan.pseudonyms.clone()), &plan.holds)?;
            }
            let e = self.record(
                started,
                &req.actor,
                "purge.no_match",
                Some(req.tenant.as_str()),
                &serde_json::json!({
                    "ticket": req.ticket,
                    "reason": req.reason,
                    "fingerprint": plan.fingerprint,
                    "subjects": plan.preview.subjects,
                    "held": plan.preview.held,
                    "restored_removed": report.restored_removed,
                    "note": "no stored record matched the selection and no subject key existed to destroy: nothing was removed",
                }),
            )?;
            report.status = "no_match".into();
            report.verified = true;
            report.verification = "no records matched: nothing was removed and no receipt was written".into();
            report.receipt_id = None;
            report.no_match_entry = Some(e.seq);
            self.publish_or_warn(clock(), &mut report.warnings);
            return Ok(report);
        }
        let intent = PurgeIntent {
            ticket: req.ticket.clone(),
            reason: req.reason.clone(),
            fingerprint: plan.fingerprint.clone(),
            tenant: req.tenant.to_string(),
            action: req.action(),
            now_us: started,
            keys: plan.keys.clone(),
            chains: plan.selected.chains.clone(),
        };
        // Always written (cleared for a purge without subjects), so that a
        // recovery never checks another purge's selection.
        let check = (!plan.pseudonyms.is_empty()).then(|| {
            let check = PendingCheck::of(&req.selection(plan.pseudonyms.clone()));
            serde_json::to_string(&check).expect("check serializes")
        });
        self.store.set_meta(PENDING_CHECK, check.as_deref())?;
        let e = self.record_intent(
            started,
            &req.actor,
            "purge.intent",
            Some(req.tenant.as_str()),
            serde_json::to_string(&intent).expect("intent serializes"),
            PENDING_INTENT,
        )?;
        lethe_store::crashpoint::hit("purge.after_intent");
        let applied = self.store.apply_removal(&intent.chains, &|_, _| {})?;
        lethe_store::crashpoint::hit("purge.after_apply");
        report.removed = applied.deleted + applied.anonymized;
        // Restored copies go with the originals. A subject purge whose
        // subjects have no pseudonym (a tenant without keys) selects none:
        // an empty list would mean "every subject".
        if req.subjects.is_empty() || !plan.pseudonyms.is_empty() {
            report.restored_removed = self
                .store
                .erase_restored(&req.selection(plan.pseudonyms.clone()), &plan.holds)?;
        }
        report.keys_destroyed = self.destroy_keys(&intent.keys, started)?;

        // Verification: planned again — without the subject filters that
        // found the rows, so it does not rely on the index it checks — the
        // selection finds nothing left to remove, and every key the purge
        // was to destroy reads back destroyed.
        let left = self.records_left(req.selection(plan.pseudonyms.clone()), &plan.holds)?;
        let keys_left = self.keys_left(&intent.keys)?;
        report.verified = left == 0 && keys_left == 0;
        report.verification = format!(
            "the selection planned again, every partition in range searched, finds {left} record(s) left to remove; {keys_left} of {} key(s) still readable",
            intent.keys.len()
        );
        if left > 0 {
            report.verification.push_str(
                "; the subject filters missed records (damaged?): run the same purge again — it searches every partition",
            );
        }
        let salt = (!req.subjects.is_empty()).then(crate::hold::commitment_salt);
        let receipt = self.purge_receipt(req, &plan.preview, &intent, e.seq, &report, salt.as_deref(), clock());
        let r = self.record(
            clock(),
            &req.actor,
            "receipt.purge",
            Some(req.tenant.as_str()),
            &receipt,
        )?;
        lethe_store::crashpoint::hit("purge.after_receipt");
        if report.verified {
            self.purge_done(&plan.fingerprint, r.seq)?;
            self.store.set_meta(&format!("{FAILED}{}", plan.fingerprint), None)?;
        } else {
            self.purge_failed(&plan.fingerprint, r.seq)?;
        }
        report.receipt_id = Some(r.seq);
        report.subject_salt = salt;
        self.publish_or_warn(clock(), &mut report.warnings);
        Ok(report)
    }

    /// Notes a purge's receipt under its fingerprint (so running it again
    /// reports that receipt) and clears the pending mark.
    fn purge_done(&self, fingerprint: &str, receipt: u64) -> Result<()> {
        self.store
            .set_meta(&format!("{DONE}{fingerprint}"), Some(&receipt.to_string()))?;
        self.store.set_meta(PENDING_CHECK, None)?;
        Ok(self.store.set_meta(PENDING_INTENT, None)?)
    }

    /// Notes that a purge's verification found records left: running it
    /// again plans it again, exhaustively.
    fn purge_failed(&self, fingerprint: &str, receipt: u64) -> Result<()> {
        self.store
            .set_meta(&format!("{FAILED}{fingerprint}"), Some(&receipt.to_string()))?;
        self.store.set_meta(PENDING_CHECK, None)?;
        Ok(self.store.set_meta(PENDING_INTENT, None)?)
    }

    /// Records `sel` still finds, every partition in range searched
    /// (without the subject filters that found the rows, so a check does
    /// not rely on the index it checks).
    fn records_left(&self, mut sel: Selection, holds: &[HoldScope]) -> Result<u64> {
        sel.exhaustive = true;
        let t = std::time::Instant::now();
        let again = self.store.select(&sel, holds)?;
        tracing::debug!(ms = t.elapsed().as_millis() as u64, "purge: exhaustive verification");
        Ok(again.groups.iter().map(|g| g.records).sum())
    }

    /// Records of a pending subject purge's subjects still to remove (see
    /// [`PENDING_CHECK`]); 0 for a purge without subjects.
    fn left_after_recovery(&self, tenant: &str, action: Action, now_us: i64) -> Result<u64> {
        let Some(text) = self.store.meta(PENDING_CHECK)? else {
            return Ok(0);
        };
        let check: PendingCheck =
            serde_json::from_str(&text).map_err(|e| VaultError::Invalid(format!("{PENDING_CHECK}: {e}")))?;
        let holds: Vec<HoldScope> = self.active_holds(now_us)?.into_iter().map(|(_, h)| h).collect();
        self.records_left(check.selection(tenant, action)?, &holds)
    }

    /// How many of these keys are not destroyed.
    fn keys_left(&self, ids: &[KeyId]) -> Result<usize> {
        Ok(self
            .store
            .data_keys(ids)?
            .iter()
            .filter(|k| k.wrapped.is_some())
            .count())
    }

    /// Destroys data keys and forgets them from the key cache.
    fn destroy_keys(&self, ids: &[KeyId], now_us: i64) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let n = self.store.destroy_keys(ids, now_us)?;
        self.keys.forget_data_keys();
        Ok(n)
    }

    #[allow(clippy::too_many_arguments)]
    fn purge_receipt(
        &self,
        req: &PurgeRequest,
        preview: &PurgePreview,
        intent: &PurgeIntent,
        intent_seq: u64,
        report: &PurgeReport,
        salt: Option<&str>,
        now_us: i64,
    ) -> serde_json::Value {
        let commitment = salt.map(|s| subject_commitment(s, req.tenant.as_str(), &req.subjects));
        serde_json::json!({
            "intent": intent_seq,
            "ticket": req.ticket,
            "reason": req.reason,
            "actor": req.actor,
            "at": format_ts(now_us),
            "selection": {
                "tenant": req.tenant.as_str(),
                "subjects": preview.subjects,
                "subject_commitment": commitment,
                "stream": req.stream.as_ref().map(|s| s.to_string()),
                "scope": req.scope,
                "since": req.since_us.map(format_ts),
                "until": req.until_us.map(format_ts),
                "action": intent.action,
            },
            "selected": preview.selected,
            "removed": report.removed,
            "held": preview.held,
            "held_by": preview.held_by,
            "bytes": preview.bytes,
            "oldest": preview.oldest,
            "newest": preview.newest,
            "groups": preview.groups,
            "chains": chains_summary(&intent.chains),
            "keys_destroyed": intent.keys.len(),
            "restored_removed": report.restored_removed,
            "verified": report.verified,
            "verification": report.verification,
            "stores": self.stores_statement(intent.action, !intent.keys.is_empty(), &preview.keys),
        })
    }

    /// What the purge did per store, for the receipt.
    fn stores_statement(&self, action: Action, keys_destroyed: bool, key_note: &str) -> serde_json::Value {
        let active = match action {
            Action::Delete => "deleted: bodies, personal fields and subject pseudonyms removed; headers kept as tombstones so the chain verifies",
            Action::Anonymize => "anonymized: subject linkage and personal fields removed; plain fields and the events kept",
        };
        let archive = if keys_destroyed {
            "unreadable by key destruction: any archived copy holds the personal fields only as ciphertext under the destroyed keys"
        } else {
            "not reached: no subject key was destroyed, so archived copies (if any) stay readable until their archive window ends"
        };
        let exports: Vec<serde_json::Value> = self
            .config
            .exports
            .iter()
            .map(|x| {
                serde_json::json!({
                    "name": x.name,
                    "destination": x.destination,
                    "retention": x.retention,
                    "status": if x.personal_in_clear || !keys_destroyed {
                        "outside Lethe's reach: erase there under its own process and retention"
                    } else {
                        "outside Lethe's reach; its copies of personal fields are ciphertext under the destroyed keys (unreadable)"
                    },
                })
            })
            .collect();
        serde_json::json!({
            "active": active,
            "restored": "restored copies (archive restore --into-store) of the selected records: removed or anonymized with them, except held ones; copies of destroyed keys' subjects are unreadable in any case",
            "keys": key_note,
            "archive": archive,
            "exports": exports,
            "backups": "backups of the data directory taken before this purge still hold the destroyed keys in wrapped form; they are unreadable without the master key, and are erased by rotating them out",
        })
    }

    /// Finishes a purge whose intent is in the ledger but whose receipt is
    /// not: removes exactly the intent's rows again (idempotent), destroys
    /// its keys and writes its receipt. Returns the receipt, if there was
    /// anything to finish.
    pub fn recover_purge(&self, clock: &dyn Fn() -> i64) -> Result<Option<u64>> {
        let _jobs = self.store.lock_jobs()?;
        let Some((entry, receipt)) = self.pending_intent(PENDING_INTENT, "purge.intent", "receipt.purge")? else {
            return Ok(None);
        };
        let seq = entry.seq;
        let intent: PurgeIntent =
            serde_json::from_str(&entry.body).map_err(|e| VaultError::Invalid(format!("purge intent {seq}: {e}")))?;
        if let Some(r) = receipt {
            self.purge_done(&intent.fingerprint, r)?;
            return Ok(None);
        }
        let applied = self.store.apply_removal(&intent.chains, &|_, _| {})?;
        self.destroy_keys(&intent.keys, intent.now_us)?;
        let again = self.store.apply_removal(&intent.chains, &|_, _| {})?;
        let keys_left = self.keys_left(&intent.keys)?;
        let now = clock();
        // Records of the subjects a concurrent ingest stored after the
        // intent was written, under keys only this recovery destroyed: the
        // intent does not list them; the purge run again removes them.
        let left = self.left_after_recovery(&intent.tenant, intent.action, now)?;
        let verified = again.deleted + again.anonymized == 0 && keys_left == 0 && left == 0;
        let body = serde_json::json!({
            "intent": seq,
            "recovered": true,
            "ticket": intent.ticket,
            "reason": intent.reason,
            "at": format_ts(now),
            "selection": {"tenant": intent.tenant, "action": intent.action},
            "removed": applied.deleted + applied.anonymized,
            "completed_after_interruption": applied,
            "chains": chains_summary(&intent.chains),
            "keys_destroyed": intent.keys.len(),
            "verified": verified,
            "verification": format!(
                "the intent's removal carried out again changes nothing; {keys_left} of {} key(s) still readable; the selection planned again, every partition in range searched, finds {left} record(s) left to remove{}",
                intent.keys.len(),
                if left > 0 { " (stored while the purge was interrupted): run the same purge again" } else { "" }
            ),
            "stores": self.stores_statement(intent.action, !intent.keys.is_empty(), if intent.keys.is_empty() { "kept" } else { "destroyed" }),
        });
        let e = self.record(now, "system/recovery", "receipt.purge", Some(&intent.tenant), &body)?;
        if verified {
            self.purge_done(&intent.fingerprint, e.seq)?;
        } else {
            self.purge_failed(&intent.fingerprint, e.seq)?;
        }
        Ok(Some(e.seq))
    }
}

/// Identifies a request: same ticket, selection and subjects → same fingerprint.
fn fingerprint(req: &PurgeRequest, action: Action, pseudonyms: &[[u8; 32]]) -> String {
    let mut fp = Sha256::new();
    fp.update(
        serde_json::to_string(&serde_json::json!({
            "ticket": req.ticket,
            "tenant": req.tenant.as_str(),
            "stream": req.stream.as_ref().map(|s| s.to_string()),
            "scope": req.scope,
            "since": req.since_us,
            "until": req.until_us,
            "action": action,
        }))
        .expect("JSON serializes"),
    );
    for p in pseudonyms {
        fp.update(p);
    }
    hex::encode(fp.finalize())
}

/// Per chain, what a purge removed, for its receipt: the number of records
/// and the sequence span (the exact ranges are in the intent the receipt
/// names — a batch purge lists up to millions).
fn chains_summary(chains: &[ChainRemoval]) -> serde_json::Value {
    serde_json::Value::Array(
        chains
            .iter()
            .map(|c| {
                let ranges = c.rows.iter().flat_map(|r| r.seqs.iter());
                let records: u64 = ranges.clone().map(|r| r[1] + 1 - r[0]).sum();
                serde_json::json!({
                    "tenant": c.tenant,
                    "stream": c.stream,
                    "records": records,
                    "ranges": ranges.clone().count(),
                    "first_seq": ranges.clone().map(|r| r[0]).min(),
                    "last_seq": ranges.map(|r| r[1]).max(),
                })
            })
            .collect(),
    )
}

fn preview(
    req: &PurgeRequest,
    action: Action,
    subjects: usize,
    s: &Selected,
    held_by: Vec<i64>,
    keys: usize,
    key_note: String,
) -> PurgePreview {
    let oldest = s.groups.iter().filter_map(|g| g.oldest_us).min();
    let newest = s.groups.iter().filter_map(|g| g.newest_us).max();
    PurgePreview {
        tenant: req.tenant.to_string(),
        action: action.to_string(),
        subjects,
        subjects_found: s.found.len(),
        selected: s.groups.iter().map(|g| g.records).sum(),
        held: s.groups.iter().map(|g| g.held).sum(),
        held_by,
        bytes: s.groups.iter().map(|g| g.bytes).sum(),
        oldest: oldest.map(format_ts),
        newest: newest.map(format_ts),
        groups: s
            .groups
            .iter()
            .map(|g| PreviewLine {
                stream: g.stream.clone(),
                scope: g.scope.clone(),
                records: g.records,
                held: g.held,
                bytes: g.bytes,
                oldest: g.oldest_us.map(format_ts),
                newest: g.newest_us.map(format_ts),
            })
            .collect(),
        keys_to_destroy: keys,
        keys: key_note,
    }
}
