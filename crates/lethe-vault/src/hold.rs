//! Legal holds: setting, listing and releasing them, each a ledger entry.
//! The sweep and purges leave held records alone; `verify` treats a removal
//! made while a hold covered the record as an unexplained gap.

use lethe_core::hold::{subject_commitment, HoldScope};
use lethe_core::record::format_ts;
use lethe_core::TenantId;
use lethe_store::HoldRecord;
use serde::Serialize;

use crate::{Result, Vault, VaultError};

/// A hold to set.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    /// Tenant.
    pub tenant: TenantId,
    /// Only this subject's records.
    pub subject: Option<String>,
    /// Only this scope.
    pub scope: Option<String>,
    /// Event time ≥ (µs).
    pub since_us: Option<i64>,
    /// Event time < (µs).
    pub until_us: Option<i64>,
    /// Why (required: the authority for keeping data past its policy).
    pub reason: String,
    /// When it lapses by itself (µs).
    pub expires_us: Option<i64>,
    /// Who sets it.
    pub actor: String,
}

/// A hold as `hold ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldView {
    /// Hold id.
    pub id: i64,
    /// `active`, `released` or `expired`.
    pub status: String,
    /// Tenant.
    pub tenant: String,
    /// Whether it covers one subject (who is not shown: holds keep only a pseudonym).
    pub subject: bool,
    /// Scope, if narrowed.
    pub scope: Option<String>,
    /// Event time from.
    pub since: Option<String>,
    /// Event time until.
    pub until: Option<String>,
    /// Why it was set.
    pub reason: String,
    /// Who set it.
    pub actor: String,
    /// When.
    pub created: String,
    /// When it lapses by itself.
    pub expires: Option<String>,
    /// When it was released.
    pub released: Option<String>,
    /// Why it was released.
    pub release_reason: Option<String>,
    /// Ledger entry that recorded it.
    pub ledger_seq: Option<u64>,
}

/// What `hold add` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldSet {
    /// The hold.
    pub hold: HoldView,
    /// Salt of the subject commitment in the ledger entry (keep it with the
    /// matter: it shows later which subject the hold named).
    pub subject_salt: Option<String>,
}

impl Vault {
    /// Sets a legal hold: stored (and so enforced) first, then entered in
    /// the ledger as `hold.set`. The ledger names no subject: a subject
    /// hold carries a salted commitment instead.
    pub fn add_hold(&self, req: &HoldRequest, now_us: i64) -> Result<HoldSet> {
        if req.reason.trim().is_empty() {
            return Err(VaultError::Invalid("reason: a hold needs a reason".into()));
        }
        if let (Some(a), Some(b)) = (req.since_us, req.until_us) {
            if a >= b {
                return Err(VaultError::Invalid("since: must be before until".into()));
            }
        }
        if req.expires_us.is_some_and(|e| e <= now_us) {
            return Err(VaultError::Invalid("expires: must be in the future".into()));
        }
        let pseudonym = match &req.subject {
            Some(s) => Some(
                self.keys
                    .tenant(&req.tenant, true, now_us)?
                    .expect("created on demand")
                    .pseudonym(s),
            ),
            None => None,
        };
        let scope = HoldScope {
            tenant: req.tenant.to_string(),
            pseudonym,
            subject: req.subject.is_some(),
            scope: req.scope.clone(),
            since_us: req.since_us,
            until_us: req.until_us,
        };
        let mut rec = HoldRecord {
            id: 0,
            scope,
            reason: req.reason.clone(),
            actor: req.actor.clone(),
            created_us: now_us,
            expires_us: req.expires_us,
            released_us: None,
            release_reason: None,
            ledger_seq: None,
        };
        rec.id = self.store.add_hold(&rec)?;
        let salt = req.subject.as_ref().map(|_| commitment_salt());
        let commitment = match (&salt, &req.subject) {
            (Some(salt), Some(s)) => Some(subject_commitment(salt, req.tenant.as_str(), std::slice::from_ref(s))),
            _ => None,
        };
        let e = self.enter_hold(&rec, commitment)?;
        rec.ledger_seq = Some(e);
        Ok(HoldSet {
            hold: view(&rec, now_us),
            subject_salt: salt,
        })
    }

    fn enter_hold(&self, h: &HoldRecord, commitment: Option<String>) -> Result<u64> {
        let body = serde_json::json!({
            "id": h.id,
            "scope": h.scope,
            "subject_commitment": commitment,
            "reason": h.reason,
            "expires_us": h.expires_us,
        });
        let e = self.record(h.created_us, &h.actor, "hold.set", Some(&h.scope.tenant), &body)?;
        self.store.set_hold_entry(h.id, e.seq)?;
        Ok(e.seq)
    }

    /// Every hold, after entering in the ledger those whose entry a crash
    /// prevented (they were enforced all along: the catalog row comes first).
    fn entered_holds(&self) -> Result<Vec<HoldRecord>> {
        let mut all = self.store.holds(None)?;
        for h in all.iter_mut().filter(|h| h.ledger_seq.is_none()) {
            h.ledger_seq = Some(self.enter_hold(h, None)?);
        }
        Ok(all)
    }

    /// Releases a hold: the ledger entry `hold.released` first, then the
    /// catalog (a crash in between leaves the hold in force, the safe side;
    /// releasing again finishes it).
    pub fn release_hold(&self, id: i64, reason: &str, actor: &str, now_us: i64) -> Result<HoldView> {
        if reason.trim().is_empty() {
            return Err(VaultError::Invalid("reason: releasing a hold needs a reason".into()));
        }
        let Some(mut h) = self.entered_holds()?.into_iter().find(|h| h.id == id) else {
            return Err(VaultError::Invalid(format!("no hold {id} (see `lethe hold ls`)")));
        };
        if h.released_us.is_some() {
            return Err(VaultError::Invalid(format!("hold {id} was released already")));
        }
        self.record(
            now_us,
            actor,
            "hold.released",
            Some(&h.scope.tenant),
            &serde_json::json!({"id": id, "reason": reason}),
        )?;
        self.store.release_hold(id, now_us, reason)?;
        h.released_us = Some(now_us);
        h.release_reason = Some(reason.to_string());
        Ok(view(&h, now_us))
    }

    /// Every hold, optionally of one tenant, as of `now_us`.
    pub fn holds(&self, tenant: Option<&TenantId>, now_us: i64) -> Result<Vec<HoldView>> {
        Ok(self
            .entered_holds()?
            .iter()
            .filter(|h| tenant.is_none_or(|t| h.scope.tenant == t.as_str()))
            .map(|h| view(h, now_us))
            .collect())
    }

    /// The holds in force at `now_us` (what the sweep and purges leave alone).
    pub fn active_holds(&self, now_us: i64) -> Result<Vec<(i64, HoldScope)>> {
        Ok(self
            .store
            .holds(None)?
            .into_iter()
            .filter(|h| h.active_at(now_us))
            .map(|h| (h.id, h.scope))
            .collect())
    }
}

/// A fresh salt (hex) for a subject commitment ([`subject_commitment`]).
pub(crate) fn commitment_salt() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn view(h: &HoldRecord, now_us: i64) -> HoldView {
    let status = if h.released_us.is_some() {
        "released"
    } else if h.active_at(now_us) {
        "active"
    } else {
        "expired"
    };
    HoldView {
        id: h.id,
        status: status.into(),
        tenant: h.scope.tenant.clone(),
        subject: h.scope.subject,
        scope: h.scope.scope.clone(),
        since: h.scope.since_us.map(format_ts),
        until: h.scope.until_us.map(format_ts),
        reason: h.reason.clone(),
        actor: h.actor.clone(),
        created: format_ts(h.created_us),
        expires: h.expires_us.map(format_ts),
        released: h.released_us.map(format_ts),
        release_reason: h.release_reason.clone(),
        ledger_seq: h.ledger_seq,
    }
}
