//! The catalog tables `verify` holds to the ledger: data keys (each one
//! recorded when created, gone only by a receipted erasure, and opening if
//! live) and legal holds (the rows the sweep and purges read must say what
//! the ledger says).

use std::collections::HashMap;
use std::sync::Arc;

use lethe_core::TenantId;
use lethe_store::KeyId;

use crate::{Result, Vault};

use super::*;

/// What `verify` found of one data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum KeyState {
    /// Stored wrapped, and it opens.
    Live,
    /// Destroyed, by the receipted purge intent named (`None`: by nothing recorded).
    Destroyed(Option<u64>),
    /// Stored wrapped, but it does not open (altered or swapped).
    Unopenable,
}

/// Every data key of the chains being verified, with its tenant: sorted
/// by id (a vector, not a map — a store of many subjects has millions).
#[derive(Default)]
pub(super) struct KeyBook {
    states: Vec<(KeyId, Arc<str>, KeyState)>,
}

impl KeyBook {
    fn get(&self, key: KeyId) -> Option<(&Arc<str>, &KeyState)> {
        let i = self.states.binary_search_by_key(&key, |s| s.0).ok()?;
        let (_, t, state) = &self.states[i];
        Some((t, state))
    }

    /// Why a live record of `tenant` encrypted under `key` cannot be read,
    /// if it cannot.
    pub(super) fn problem(&self, tenant: &str, key: KeyId) -> Option<String> {
        match self.get(key) {
            None => Some(format!(
                "encrypted under data key {key}, which is missing from the key table: its personal fields are unreadable"
            )),
            Some((t, _)) if &**t != tenant => Some(format!("encrypted under data key {key} of another tenant ({t})")),
            Some((_, KeyState::Live)) => None,
            Some((_, KeyState::Unopenable)) => Some(format!(
                "encrypted under data key {key}, which does not open: its personal fields are unreadable"
            )),
            Some((_, KeyState::Destroyed(Some(i)))) => Some(format!(
                "encrypted under data key {key}, which purge intent {i} destroyed, yet the record was not removed"
            )),
            Some((_, KeyState::Destroyed(None))) => Some(format!(
                "encrypted under data key {key}, destroyed without a receipted erasure: its personal fields were erased unrecorded"
            )),
        }
    }
}

/// The data-key table as read before the ledger: per key, its tenant and
/// what its row says — `Live`, `Unopenable` or `Destroyed(None)`, the
/// destroying intent to be found in the ledger — a few bytes each, not the
/// wrapped keys (a store of many subjects has millions). It becomes the
/// [`KeyBook`] in place.
pub(super) struct KeyTable {
    rows: Vec<(KeyId, Arc<str>, KeyState)>,
}

impl Vault {
    /// Reads the data-key table (of one tenant, or all), trying each live
    /// key under its tenant's key as it arrives.
    pub(super) fn read_key_table(&self, tenant: Option<&TenantId>) -> Result<KeyTable> {
        let mut rows = Vec::new();
        // Per tenant: its name, once, and its key (`None`: it has none).
        let mut tenants: HashMap<String, (Arc<str>, Option<_>)> = HashMap::new();
        let mut failed = None;
        self.store.each_data_key(tenant.map(|t| t.as_str()), &mut |k| {
            if failed.is_some() {
                return;
            }
            let name = k.tenant.as_str();
            if !tenants.contains_key(name) {
                match self.keys.tenant(&k.tenant, None, 0) {
                    Ok(tk) => {
                        tenants.insert(name.to_string(), (name.into(), tk));
                    }
                    Err(e) => {
                        failed = Some(e);
                        return;
                    }
                }
            }
            let (owner, tk) = &tenants[name];
            let row = match &k.wrapped {
                Some(w)
                    if tk
                        .as_ref()
                        .is_some_and(|tk| tk.open_data_key(name, &k.key_ref, w).is_ok()) =>
                {
                    KeyState::Live
                }
                Some(_) => KeyState::Unopenable,
                None => KeyState::Destroyed(None),
            };
            rows.push((k.id, owner.clone(), row));
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(KeyTable { rows })
    }

    /// Holds the data-key table (of one tenant, or all) to the ledger:
    /// every key the ledger recorded is in the table; every key in the
    /// table was recorded; every destroyed key was destroyed by a receipted
    /// erasure; every live key opens under its tenant's key (an altered or
    /// swapped wrapped key does not). Problems are gaps on the stream
    /// `(keys)` with the key id as sequence number.
    ///
    /// `table` was read before the ledger: a key an ingest creates while
    /// `verify` runs is then either in both or in neither, except in the
    /// ledger only — and such a key is looked up again before it is
    /// called missing.
    pub(super) fn check_keys(
        &self,
        tenant: Option<&TenantId>,
        table: KeyTable,
        ev: &Evidence,
        report: &mut VerifyReport,
    ) -> Result<KeyBook> {
        let mut book = KeyBook { states: table.rows };
        // Read in id order; sorted again in case a backend does not.
        book.states.sort_unstable_by_key(|s| s.0);
        for (id, t, state) in &mut book.states {
            let (id, t) = (*id, &**t);
            match ev.keys.get(&id) {
                None => report.gap(
                    t,
                    "(keys)",
                    id as u64,
                    format!("data key {id} is in the key table, but no ledger entry recorded its creation"),
                ),
                Some((owner, at)) if &**owner != t => report.gap(
                    t,
                    "(keys)",
                    id as u64,
                    format!(
                        "data key {id} belongs to tenant {owner} by its ledger entry {at}, but the key table says {t}"
                    ),
                ),
                Some(_) => {}
            }
            match state {
                KeyState::Live => {}
                KeyState::Unopenable => report.gap(
                    t,
                    "(keys)",
                    id as u64,
                    format!("data key {id} does not open: its stored form was altered or swapped with another's"),
                ),
                KeyState::Destroyed(by) => {
                    *by = ev.destroyed.get(&id).copied();
                    if by.is_none() {
                        report.gap(
                            t,
                            "(keys)",
                            id as u64,
                            format!("data key {id} was destroyed, but no receipted erasure destroyed it"),
                        );
                    }
                }
            }
        }
        let unseen: Vec<KeyId> = ev
            .keys
            .iter()
            .filter(|(id, (t, _))| tenant.is_none_or(|x| x.as_str() == &**t) && book.get(**id).is_none())
            .map(|(id, _)| *id)
            .collect();
        let created_since: std::collections::HashSet<KeyId> =
            self.store.data_keys(&unseen)?.into_iter().map(|k| k.id).collect();
        for id in unseen.iter().filter(|id| !created_since.contains(id)) {
            let (t, at) = &ev.keys[id];
            report.gap(
                t,
                "(keys)",
                *id as u64,
                format!(
                    "data key {id} (created, ledger entry {at}) is missing from the key table: records encrypted under it are unreadable"
                ),
            );
        }
        Ok(book)
    }

    /// Holds the catalog's legal-hold rows to the ledger: a hold the ledger
    /// has in force must have a row that says the same (the sweep and
    /// purges read the pseudonym of a subject hold there); a row marked
    /// released needs a release in the ledger. Problems are gaps on the
    /// stream `(holds)` at the hold's ledger entry.
    pub(super) fn check_holds(
        &self,
        tenant: Option<&TenantId>,
        ev: &Evidence,
        now_us: i64,
        report: &mut VerifyReport,
    ) -> Result<()> {
        let rows = self.store.holds(tenant.map(|t| t.as_str()))?;
        for lh in &ev.holds {
            if tenant.is_some_and(|t| t.as_str() != lh.scope.tenant) {
                continue;
            }
            let row = rows.iter().find(|r| r.id == lh.id);
            let problem = match row {
                None if lh.in_force(now_us) => {
                    Some("is in force by the ledger, but missing from the catalog".to_string())
                }
                Some(r) if !self.row_matches(r, lh) => {
                    Some("has a catalog row that does not say what its ledger entry says".to_string())
                }
                Some(r) if r.released_us.is_some() && lh.released.is_none() => {
                    Some("is marked released in the catalog, but the ledger records no release".to_string())
                }
                _ => None,
            };
            if let Some(p) = problem {
                report.gap(
                    &lh.scope.tenant,
                    "(holds)",
                    lh.set,
                    format!(
                        "hold {} {p}; the sweep and purges treat it as covering its whole scope",
                        lh.id
                    ),
                );
            }
        }
        Ok(())
    }
}
