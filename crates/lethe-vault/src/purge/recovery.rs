//! Finishing a purge a crash interrupted, and the catalog marks that say a purge is pending, done or failed.

use lethe_core::hold::HoldScope;
use lethe_core::record::format_ts;

use super::{PurgeIntent, DONE, FAILED, PENDING_INTENT};
use crate::{Result, Vault, VaultError};

impl Vault {
    /// Notes a purge's receipt under its fingerprint (so running it again
    /// reports that receipt) and clears the pending marks.
    pub(super) fn purge_done(&self, fingerprint: &str, receipt: u64) -> Result<()> {
        self.store
            .set_meta(&format!("{DONE}{fingerprint}"), Some(&receipt.to_string()))?;
        self.set_pending_check(None)?;
        Ok(self.store.set_meta(PENDING_INTENT, None)?)
    }

    /// Notes that a purge's verification found records left: running it
    /// again plans it again, exhaustively.
    pub(super) fn purge_failed(&self, fingerprint: &str, receipt: u64) -> Result<()> {
        self.store
            .set_meta(&format!("{FAILED}{fingerprint}"), Some(&receipt.to_string()))?;
        self.set_pending_check(None)?;
        Ok(self.store.set_meta(PENDING_INTENT, None)?)
    }

    /// A purge intent from the ledger.
    fn purge_intent(&self, seq: u64) -> Result<PurgeIntent> {
        let entry = self
            .entry_at(seq)?
            .filter(|e| e.kind == "purge.intent")
            .ok_or_else(|| VaultError::Invalid(format!("purge intent {seq} is not in the ledger")))?;
        serde_json::from_str(&entry.body).map_err(|e| VaultError::Invalid(format!("purge intent {seq}: {e}")))
    }

    /// Finishes a purge whose intent is in the ledger but whose receipt is
    /// not: removes exactly the intent's rows again (idempotent), destroys
    /// its keys, removes what was stored under them meanwhile (its
    /// continuation) and writes its receipt. Returns the receipt, if there
    /// was anything to finish.
    pub fn recover_purge(&self, clock: &dyn Fn() -> i64) -> Result<Option<u64>> {
        let _jobs = self.store.lock_jobs()?;
        let Some((entry, receipt)) = self.pending_intent(PENDING_INTENT, "purge.intent", "receipt.purge")? else {
            return Ok(None);
        };
        let seq = entry.seq;
        let pending: PurgeIntent =
            serde_json::from_str(&entry.body).map_err(|e| VaultError::Invalid(format!("purge intent {seq}: {e}")))?;
        if let Some(r) = receipt {
            self.purge_done(&pending.fingerprint, r)?;
            return Ok(None);
        }
        // The pending intent is the purge's first, or its continuation
        // (written once the first's keys were destroyed).
        let (first_seq, first) = match pending.continues {
            Some(f) => (f, self.purge_intent(f)?),
            None => (seq, pending.clone()),
        };
        let applied = self.store.apply_removal(&pending.chains, &|_, _| {})?;
        self.destroy_keys(&first.keys, first.now_us)?;
        let again = self.store.apply_removal(&pending.chains, &|_, _| {})?;
        let now = clock();
        let holds: Vec<HoldScope> = self.active_holds(now)?.into_iter().map(|(_, h)| h).collect();
        let mut removed = applied.deleted + applied.anonymized;
        let mut continuation = pending.continues.map(|_| seq);
        // A pending continuation lists exactly the records stored while the
        // purge ran (removed before the crash, or just now).
        let mut stored_while_running: u64 = if pending.continues.is_some() {
            pending.chains.iter().map(|c| c.rows_listed()).sum()
        } else {
            0
        };
        // What the receipt summarises: the first intent's rows and its
        // continuation's (pending now, or written below).
        let mut chains = first.chains.clone();
        if pending.continues.is_some() {
            chains.extend(pending.chains.iter().cloned());
        }
        let check = match self.pending_check()? {
            None => None,
            Some(pc) => {
                let mut sel = pc.selection(&first.tenant, first.action)?;
                // An exhaustive purge, or one whose earlier run's check
                // failed, searches every partition (as its plan did).
                sel.exhaustive |= self.store.meta(&format!("{FAILED}{}", first.fingerprint))?.is_some();
                // The run died before its continuation: write it now.
                if continuation.is_none() && !first.keys.is_empty() {
                    let c = self.continue_purge(&first, first_seq, sel.clone(), &holds, "system/recovery", now)?;
                    continuation = c.intent;
                    removed += c.removed;
                    stored_while_running = c.removed;
                    chains.extend(c.chains);
                    sel.stored_up_to = Some(c.heads);
                }
                Some(self.check_purge(sel, &holds)?)
            }
        };
        let (left, later) = check.as_ref().map_or((0, 0), |c| (c.left, c.later));
        let searched = match &check {
            Some(c) if !c.exhaustive => "every partition the subject filters name searched",
            _ => "every partition in range searched",
        };
        let keys_left = self.keys_left(&first.keys)?;
        let verified = again.deleted + again.anonymized == 0 && keys_left == 0 && left == 0;
        let body = serde_json::json!({
            "intent": first_seq,
            "continuation": continuation,
            "recovered": true,
            "ticket": first.ticket,
            "reason": first.reason,
            "at": format_ts(now),
            "selection": {"tenant": first.tenant, "action": first.action},
            "removed": removed,
            "stored_while_running": stored_while_running,
            "stored_later": later,
            "completed_after_interruption": applied,
            "chains": super::receipt::chains_summary(&chains),
            "keys_destroyed": first.keys.len(),
            "verified": verified,
            "verification": format!(
                "the intent's removal carried out again changes nothing; {keys_left} of {} key(s) still readable; \
                 {stored_while_running} record(s) of the subjects stored while the purge ran (under the keys it destroyed) removed by its continuation; \
                 the selection planned again, {searched}, finds {left} record(s) left to remove{}; \
                 {later} record(s) stored since are not part of this purge",
                first.keys.len(),
                if left > 0 { ": run the same purge again" } else { "" }
            ),
            "stores": self.stores_statement(first.action, !first.keys.is_empty(), if first.keys.is_empty() { "kept" } else { "destroyed" }),
        });
        let e = self.record(now, "system/recovery", "receipt.purge", Some(&first.tenant), &body)?;
        if verified {
            self.purge_done(&first.fingerprint, e.seq)?;
        } else {
            self.purge_failed(&first.fingerprint, e.seq)?;
        }
        Ok(Some(e.seq))
    }
}
