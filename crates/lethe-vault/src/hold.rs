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
        // Not while a sweep or purge runs: it planned without this hold.
        let _jobs = self.store.lock_jobs()?;
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
                    .tenant(&req.tenant, Some(&req.actor), now_us)?
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
        self.publish_or_warn(now_us, &mut Vec::new());
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
            "subject_check": h.scope.pseudonym.map(|p| self.subject_check(h.id, &p)),
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
        let _jobs = self.store.lock_jobs()?;
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
        self.publish_or_warn(now_us, &mut Vec::new());
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

    /// The holds in force at `now_us` (what the sweep and purges leave
    /// alone). The ledger says which holds exist and whether they are in
    /// force — the catalog table is only where a subject hold's pseudonym
    /// is kept. A hold in force whose catalog row is missing, or does not
    /// match its ledger entry, holds everything its ledger entry covers
    /// regardless of subject (the safe side); `verify` reports the
    /// mismatch. A catalog hold a crash kept out of the ledger holds too.
    pub fn active_holds(&self, now_us: i64) -> Result<Vec<(i64, HoldScope)>> {
        let table = self.store.holds(None)?;
        let ledger = self.ledger_holds()?;
        let mut out = Vec::new();
        for lh in ledger.iter().filter(|h| h.in_force(now_us)) {
            let row = table.iter().find(|r| r.id == lh.id);
            let scope = match row {
                Some(r) if self.row_matches(r, lh) => r.scope.clone(),
                _ => HoldScope {
                    subject: false,
                    pseudonym: None,
                    ..lh.scope.clone()
                },
            };
            out.push((lh.id, scope));
        }
        for r in &table {
            if r.active_at(now_us) && !ledger.iter().any(|l| l.id == r.id) {
                out.push((r.id, r.scope.clone()));
            }
        }
        Ok(out)
    }

    /// Whether a catalog hold row says what its ledger entry says: the same
    /// tenant, scope and time range, and — for a subject hold whose entry
    /// carries a subject check — the pseudonym the entry was made for.
    pub(crate) fn row_matches(&self, r: &HoldRecord, lh: &LedgerHold) -> bool {
        let (a, b) = (&r.scope, &lh.scope);
        a.tenant == b.tenant
            && a.scope == b.scope
            && a.since_us == b.since_us
            && a.until_us == b.until_us
            && a.subject == b.subject
            && (!b.subject
                || match (&lh.subject_check, &a.pseudonym) {
                    (Some(check), Some(p)) => *check == self.subject_check(r.id, p),
                    (Some(_), None) => false,
                    (None, p) => p.is_some(),
                })
    }

    /// Binds a subject hold's catalog row to its ledger entry without
    /// putting the pseudonym in the ledger.
    fn subject_check(&self, id: i64, pseudonym: &[u8; 32]) -> String {
        lethe_core::crypto::tag(
            &self.ledger_key,
            "lethe/hold-subject/v1",
            &[&id.to_be_bytes(), pseudonym],
        )
    }

    /// Every hold the ledger records (authentic entries, and those an
    /// anchor carries from trimmed entries), with its release.
    pub(crate) fn ledger_holds(&self) -> Result<Vec<LedgerHold>> {
        let mut out: Vec<LedgerHold> = Vec::new();
        let mut scratch = crate::verify::VerifyReport::default();
        if let Some((_, a)) = self.anchor(&mut scratch)? {
            out.extend(a.holds.iter().map(|h| LedgerHold {
                id: h.id,
                set: h.set,
                released: None,
                expires_us: h.expires_us,
                scope: h.scope.clone(),
                subject_check: None,
            }));
        }
        for e in self.store.ledger_of_kinds(&["hold.set", "hold.released"])? {
            if lethe_core::ledger::check_entry(&self.ledger_key, &e).is_err() {
                continue;
            }
            if e.kind == "hold.set" {
                if let Some(h) = LedgerHold::parse(&e) {
                    out.push(h);
                }
            } else if let Some(id) = released_id(&e) {
                if let Some(h) = out.iter_mut().find(|h| h.id == id && h.released.is_none()) {
                    h.released = Some(e.seq);
                }
            }
        }
        Ok(out)
    }
}

/// A legal hold as the ledger records it.
#[derive(Debug, Clone)]
pub(crate) struct LedgerHold {
    /// Hold id.
    pub id: i64,
    /// Its `hold.set` entry.
    pub set: u64,
    /// Its `hold.released` entry, if released.
    pub released: Option<u64>,
    /// When it lapses by itself (µs).
    pub expires_us: Option<i64>,
    /// What it covers (no pseudonym: the ledger never holds one).
    pub scope: HoldScope,
    /// Keyed check of the subject's pseudonym (holds set since it exists).
    pub subject_check: Option<String>,
}

impl LedgerHold {
    /// A `hold.set` entry's hold; `None` if it does not parse.
    pub(crate) fn parse(e: &lethe_core::ledger::Entry) -> Option<LedgerHold> {
        let v: serde_json::Value = serde_json::from_str(&e.body).ok()?;
        Some(LedgerHold {
            id: v.get("id")?.as_i64()?,
            set: e.seq,
            released: None,
            expires_us: v.get("expires_us").and_then(|x| x.as_i64()),
            scope: serde_json::from_value(v.get("scope")?.clone()).ok()?,
            subject_check: v.get("subject_check").and_then(|x| x.as_str()).map(String::from),
        })
    }

    /// Whether it is in force at `now_us` by the ledger.
    pub(crate) fn in_force(&self, now_us: i64) -> bool {
        self.released.is_none() && self.expires_us.is_none_or(|e| e > now_us)
    }
}

/// The hold a `hold.released` entry releases.
pub(crate) fn released_id(e: &lethe_core::ledger::Entry) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(&e.body)
        .ok()
        .and_then(|v| v.get("id")?.as_i64())
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
