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

use lethe_core::hold::HoldScope;
use lethe_core::policy::Action;
use lethe_core::record::format_ts;
use lethe_core::{StreamId, TenantId};
use lethe_store::{ChainRemoval, KeyId, Selected, Selection};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Result, Vault, VaultError};

mod continuation;
mod receipt;
mod recovery;

use continuation::PendingCheck;

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
    /// Find (and check) the subjects' records in every partition in range,
    /// not only those the subject filters name: the remedy when `verify`
    /// reports a filter that does not name a subject its partition holds.
    pub exhaustive: bool,
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
            exhaustive: false,
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
            stored_up_to: None,
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
    /// Searches every partition in range (asked for, or an earlier run's
    /// check failed), not only those the subject filters name — the plan,
    /// its continuation and its check alike.
    exhaustive: bool,
    /// The ledger's head before the plan read anything: an administrative
    /// act recorded since (a sweep, another purge, a hold, new keys) means
    /// the plan may no longer be what is there.
    ledger_head: u64,
    /// When it was planned (a plan older than [`REUSE_WITHIN`] is made again).
    made: std::time::Instant,
}

/// How long a plan stays usable without planning again under the job
/// lock (when nothing was recorded meanwhile; see `Vault::plan_still_holds`).
const REUSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

impl PurgePlan {
    /// The selection the plan searches — and its continuation and check
    /// after it — exhaustive or not as decided once when it was planned.
    fn selection(&self, req: &PurgeRequest) -> Selection {
        let mut sel = req.selection(self.pseudonyms.clone());
        sel.exhaustive = self.exhaustive;
        sel
    }
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
    /// Of those, records of the subjects a concurrent ingest stored while
    /// the purge ran, under the keys it destroyed (removed by its
    /// continuation intent).
    pub stored_while_running: u64,
    /// Records matching the selection stored after the purge's bound: new
    /// data, not part of this purge (run it again to remove them).
    pub stored_later: u64,
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
    /// For a continuation (records of the subjects stored while the purge
    /// ran, under the keys it destroyed): the purge's first intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<u64>,
}

impl Vault {
    /// Plans a purge at `now_us`: the exact rows, counts per stream and
    /// scope, the keys to destroy. Changes nothing.
    pub fn plan_purge(&self, req: &PurgeRequest, now_us: i64) -> Result<PurgePlan> {
        req.check()?;
        let made = std::time::Instant::now();
        let ledger_head = self.store.ledger_head()?;
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
        sel.exhaustive = req.exhaustive || self.store.meta(&format!("{FAILED}{fingerprint}"))?.is_some();
        let exhaustive = sel.exhaustive;
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
            exhaustive,
            ledger_head,
            made,
        })
    }

    /// Whether `plan`, made before the job lock was taken, still lists
    /// exactly what planning again now would, without planning again (a
    /// second plan was a third of a one-subject erasure's time). It does
    /// when it is recent, nothing was recorded in the ledger since it
    /// began (every removal, key destruction and hold is), the holds in
    /// force are the same and held none of it, and records of the subjects
    /// stored meanwhile cannot be missed: the purge destroys the subjects'
    /// keys (its continuation removes what was stored under them since the
    /// plan), or it found neither records nor a live key (a new record of
    /// the subjects would have made a key, and so a ledger entry).
    fn plan_still_holds(&self, req: &PurgeRequest, plan: &PurgePlan, now_us: i64) -> Result<bool> {
        let covered =
            !plan.keys.is_empty() || (!req.subjects.is_empty() && req.whole_history() && plan.preview.selected == 0);
        if !covered || plan.preview.held > 0 || plan.made.elapsed() > REUSE_WITHIN {
            return Ok(false);
        }
        if self.store.ledger_head()? != plan.ledger_head {
            return Ok(false);
        }
        let holds: Vec<HoldScope> = self.active_holds(now_us)?.into_iter().map(|(_, h)| h).collect();
        Ok(holds == plan.holds)
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
            stored_while_running: 0,
            stored_later: 0,
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
        // recovery): unless nothing can have changed, plan again, under
        // the lock, so the intent lists exactly what is there now.
        let now = clock();
        let plan = if report.recovered.is_empty() && self.plan_still_holds(req, &plan, now)? {
            plan
        } else {
            self.plan_purge(req, now)?
        };
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
                report.restored_removed = self.store.erase_restored(&plan.selection(req), &plan.holds)?;
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
            continues: None,
        };
        // Always written (cleared for a purge without subjects), so that a
        // recovery never checks another purge's selection.
        let check = (!plan.pseudonyms.is_empty()).then(|| PendingCheck::of(&plan.selection(req), &plan.selected.heads));
        self.set_pending_check(check.as_ref())?;
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
            report.restored_removed = self.store.erase_restored(&plan.selection(req), &plan.holds)?;
        }
        report.keys_destroyed = self.destroy_keys(&intent.keys, started)?;
        lethe_store::crashpoint::hit("purge.after_destroy");

        // Records of the subjects a concurrent ingest stored since the plan,
        // under the keys just destroyed, go too (a continuation intent);
        // the check is then held to the chain heads the continuation saw —
        // or, for a purge that keeps keys, to the plan's.
        let mut bound = plan.selected.heads.clone();
        let mut continuation = None;
        let mut chains = intent.chains.clone();
        let mut checked = None;
        let mut sel = plan.selection(req);
        if !intent.keys.is_empty() {
            let c = self.continue_purge(&intent, e.seq, sel.clone(), &plan.holds, &req.actor, clock())?;
            continuation = c.intent;
            report.removed += c.removed;
            report.stored_while_running = c.removed;
            bound = c.heads;
            chains.extend(c.chains);
            checked = c.check;
        }

        // Verification: planned again, the selection finds nothing it was
        // to remove left, and every key the purge was to destroy reads back
        // destroyed. A continuation that found nothing to remove made that
        // search already (after the removal and the destruction).
        sel.stored_up_to = Some(bound);
        let check = match checked {
            Some(c) => c,
            None => self.check_purge(sel, &plan.holds)?,
        };
        let keys_left = self.keys_left(&intent.keys)?;
        report.stored_later = check.later;
        report.verified = check.left == 0 && keys_left == 0;
        let searched = if check.exhaustive || plan.pseudonyms.is_empty() {
            "every partition in range searched"
        } else {
            "every partition the subject filters name searched (verify checks each filter against its partition's rows)"
        };
        report.verification = format!(
            "the selection planned again, {searched}, finds {} record(s) left to remove; {keys_left} of {} key(s) still readable",
            check.left,
            intent.keys.len()
        );
        if report.stored_while_running > 0 {
            report.verification.push_str(&format!(
                "; {} record(s) of the subjects stored while it ran, under the keys it destroyed, removed by its continuation",
                report.stored_while_running
            ));
        }
        if check.later > 0 {
            report.verification.push_str(&format!(
                "; {} matching record(s) stored since are new data, not part of this purge",
                check.later
            ));
        }
        if check.left > 0 {
            report.verification.push_str(
                "; records it was to remove are still there: run the same purge again — it searches every partition, without the subject filters",
            );
        }
        let salt = (!req.subjects.is_empty()).then(crate::hold::commitment_salt);
        let summary = PurgeIntent { chains, ..intent };
        let receipt = self.purge_receipt(
            req,
            &plan.preview,
            &summary,
            e.seq,
            continuation,
            &report,
            salt.as_deref(),
            clock(),
        );
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
}

/// Identifies a request: same ticket, selection and subjects → same fingerprint.
fn fingerprint(req: &PurgeRequest, action: Action, pseudonyms: &[[u8; 32]]) -> String {
    let mut fp = Sha256::new();
    let mut what = serde_json::json!({
        "ticket": req.ticket,
        "tenant": req.tenant.as_str(),
        "stream": req.stream.as_ref().map(|s| s.to_string()),
        "scope": req.scope,
        "since": req.since_us,
        "until": req.until_us,
        "action": action,
    });
    // Only when asked, so that the fingerprints of ordinary purges stay as
    // they were: an exhaustive rerun of a purge already done is a new run.
    if req.exhaustive {
        what["exhaustive"] = true.into();
    }
    fp.update(serde_json::to_string(&what).expect("JSON serializes"));
    for p in pseudonyms {
        fp.update(p);
    }
    hex::encode(fp.finalize())
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
