//! Records a concurrent ingest stores while a purge runs: the bound its check is held to, and the continuation that removes what landed under the keys it destroyed.
//!
//! Ingest does not wait for purges. Between a purge's plan and the moment
//! its subjects' keys are destroyed, a writer may store more records of
//! those subjects under those keys — rows the intent does not list, which
//! the key destruction makes unreadable but leaves in place (`verify`:
//! "encrypted under data key …, which purge intent … destroyed, yet the
//! record was not removed"). Once the keys are gone no more can arrive
//! (a later record of the subject gets a new key), so a purge that
//! destroys keys selects again and removes them under a second
//! `purge.intent` naming the first (its *continuation*); one receipt
//! completes both. Records stored after that — or, for a purge that keeps
//! keys, after its plan — are not the purge's: its check counts only
//! records stored up to the chain heads it saw, and reports the rest as
//! stored later.

use std::collections::BTreeMap;

use lethe_core::hold::HoldScope;
use lethe_core::policy::Action;
use lethe_core::TenantId;
use lethe_store::{ChainRemoval, Selection};
use serde::{Deserialize, Serialize};

use super::{PurgeIntent, PENDING_INTENT};
use crate::{Result, Vault, VaultError};

/// Catalog key holding, while a subject purge's intent awaits its receipt,
/// the selection to check and its bound ([`PendingCheck`]): a recovery
/// checks the purge as the run would have, and finds records stored under
/// keys it is about to destroy, never certifying them away.
pub(super) const PENDING_CHECK: &str = "purge.pending_check";

/// What a recovery needs to verify a subject purge as the run would have:
/// its selection (pseudonyms in hex) and the chain heads its check is held
/// to. Kept in the catalog only while the purge is pending; never in the
/// ledger.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct PendingCheck {
    stream: Option<String>,
    scope: Option<String>,
    since_us: Option<i64>,
    until_us: Option<i64>,
    pseudonyms: Vec<String>,
    /// Records stored after these heads are not the purge's. Absent in a
    /// check written by an earlier version: everything stored counts.
    #[serde(default)]
    heads: Option<BTreeMap<String, u64>>,
    /// The purge searches every partition in range, not only those the
    /// subject filters name: a recovery checks it the same way. Absent in
    /// a check written by an earlier version: not exhaustive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    exhaustive: bool,
}

impl PendingCheck {
    /// The check of a purge's selection, held to `heads`.
    pub(super) fn of(sel: &Selection, heads: &BTreeMap<String, u64>) -> Self {
        PendingCheck {
            stream: sel.stream.as_ref().map(|s| s.to_string()),
            scope: sel.scope.clone(),
            since_us: sel.since_us,
            until_us: sel.until_us,
            pseudonyms: sel.pseudonyms.iter().map(hex::encode).collect(),
            heads: Some(heads.clone()),
            exhaustive: sel.exhaustive,
        }
    }

    /// The selection again, for the intent's tenant and action, bounded.
    pub(super) fn selection(self, tenant: &str, action: Action) -> Result<Selection> {
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
            exhaustive: self.exhaustive,
            stored_up_to: self.heads,
        })
    }
}

/// What a purge's check found.
pub(super) struct Check {
    /// Records of the selection, stored up to the bound, still to remove.
    pub(super) left: u64,
    /// Records of the selection stored after the bound: not the purge's.
    pub(super) later: u64,
    /// Searched every partition in range (not only those the subject
    /// filters name).
    pub(super) exhaustive: bool,
}

/// What a continuation did.
pub(super) struct Continuation {
    /// Its `purge.intent` (none when nothing was stored meanwhile).
    pub(super) intent: Option<u64>,
    /// Records it removed.
    pub(super) removed: u64,
    /// The chain heads it saw: the purge's check is held to them.
    pub(super) heads: BTreeMap<String, u64>,
    /// The rows it removed, per chain (for the receipt's summary).
    pub(super) chains: Vec<ChainRemoval>,
    /// When it found nothing left to remove: its own search, made after the
    /// removal and the key destruction, is the purge's check (the same
    /// selection searched the same way, held to the heads it saw).
    pub(super) check: Option<Check>,
}

impl Vault {
    /// Writes the check a recovery of the pending purge makes (`None`
    /// clears it: a purge without subjects has none).
    pub(super) fn set_pending_check(&self, check: Option<&PendingCheck>) -> Result<()> {
        let text = check.map(|c| serde_json::to_string(c).expect("check serializes"));
        Ok(self.store.set_meta(PENDING_CHECK, text.as_deref())?)
    }

    /// The pending purge's check, if it has one.
    pub(super) fn pending_check(&self) -> Result<Option<PendingCheck>> {
        let Some(text) = self.store.meta(PENDING_CHECK)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| VaultError::Invalid(format!("{PENDING_CHECK}: {e}")))
    }

    /// After purge intent `first_seq` destroyed its subjects' keys: selects
    /// the subjects' records again and removes those a concurrent ingest
    /// stored meanwhile under a continuation intent. Runs under the job
    /// lock; leaves the pending check held to the heads it saw. `sel` is
    /// searched as the check would search it (`exhaustive` or not).
    pub(super) fn continue_purge(
        &self,
        first: &PurgeIntent,
        first_seq: u64,
        mut sel: Selection,
        holds: &[HoldScope],
        actor: &str,
        now_us: i64,
    ) -> Result<Continuation> {
        sel.stored_up_to = None;
        let found = self.store.select(&sel, holds)?;
        self.set_pending_check(Some(&PendingCheck::of(&sel, &found.heads)))?;
        if found.chains.is_empty() {
            return Ok(Continuation {
                intent: None,
                removed: 0,
                heads: found.heads,
                chains: Vec::new(),
                check: Some(Check {
                    left: 0,
                    later: 0,
                    exhaustive: sel.exhaustive,
                }),
            });
        }
        let intent = PurgeIntent {
            ticket: first.ticket.clone(),
            reason: first.reason.clone(),
            fingerprint: first.fingerprint.clone(),
            tenant: first.tenant.clone(),
            action: first.action,
            now_us,
            keys: Vec::new(),
            chains: found.chains,
            continues: Some(first_seq),
        };
        let e = self.record_intent(
            now_us,
            actor,
            "purge.intent",
            Some(&first.tenant),
            serde_json::to_string(&intent).expect("intent serializes"),
            PENDING_INTENT,
        )?;
        lethe_store::crashpoint::hit("purge.after_continuation_intent");
        let applied = self.store.apply_removal(&intent.chains, &|_, _| {})?;
        Ok(Continuation {
            intent: Some(e.seq),
            removed: applied.deleted + applied.anonymized,
            heads: found.heads,
            chains: intent.chains,
            check: None,
        })
    }

    /// Checks a purge: `sel` (held to its bound) searched again, after the
    /// removal, for anything it was to remove, as `sel.exhaustive` says:
    /// through the subject filters (as the plan found the rows) — `verify`
    /// checks every filter against the rows of its partition, so a filter
    /// that hides a subject is a finding there — or in every partition in
    /// range without them.
    pub(super) fn check_purge(&self, sel: Selection, holds: &[HoldScope]) -> Result<Check> {
        let t = std::time::Instant::now();
        let again = self.store.select(&sel, holds)?;
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            exhaustive = sel.exhaustive,
            "purge: verification"
        );
        Ok(Check {
            exhaustive: sel.exhaustive,
            left: again.groups.iter().map(|g| g.records).sum(),
            later: again.later,
        })
    }
}
