//! The ledger pass of `verify`: what authorises each removal (receipted intents, policy versions, holds) and the signed checkpoints.

use std::collections::{BTreeMap, HashMap};

use lethe_core::checkpoint::Checkpoint;
use lethe_core::ledger::Verifier;
use lethe_core::merkle::Hash;
use lethe_core::policy::{Action, GroupKey, PolicyBook, RetentionSnapshot};
use lethe_core::{Classification, TenantId};
use lethe_store::{KeyId, PartGroupRef, Segment};

use crate::hold::{released_id, LedgerHold};
use crate::purge::PurgeIntent;
use crate::seal::CheckpointBody;
use crate::sweep::{receipt_intents, IntentBody};
use crate::{Result, Vault};

use super::*;

/// A completed (or pending) sweep: what authorises its removals.
pub(super) struct Auth {
    pub(super) intent: u64,
    pub(super) receipt: Option<u64>,
    pub(super) policy_version: i64,
    pub(super) now_us: i64,
    /// A purge (authorised by its ticket, not by policy) rather than a sweep.
    pub(super) purge: bool,
    /// The intent names an archive run (its records of `archive_then_delete`
    /// rules were archived, read back and recorded before it).
    pub(super) archived: bool,
    /// When the intent was written (µs): a sweep's `now_us` may not be later.
    pub(super) written_us: i64,
    /// Data keys a purge intent destroys.
    pub(super) keys: Vec<KeyId>,
}

impl Auth {
    pub(super) fn kind(&self) -> &'static str {
        if self.purge {
            "purge"
        } else {
            "sweep"
        }
    }

    pub(super) fn unreceipted(&self) -> String {
        if self.purge {
            format!(
                "purge intent {} has no valid receipt (an interrupted purge — the next `lethe purge` or `lethe cleanup` completes it — or a removed or altered receipt)",
                self.intent
            )
        } else {
            format!(
                "sweep intent {} has no valid receipt (an interrupted sweep — `lethe cleanup` completes it — or a removed or altered receipt)",
                self.intent
            )
        }
    }
}

/// A range a sweep dropped with its partition.
pub(super) struct Hole {
    pub(super) segment: Segment,
    pub(super) start_us: i64,
    pub(super) end_us: i64,
    pub(super) groups: Vec<PartGroupRef>,
    pub(super) auth: usize,
}

/// A range a sweep tombstoned or anonymized.
pub(super) struct RowAuth {
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) action: Action,
    pub(super) auth: usize,
}

/// What the ledger says about one chain.
#[derive(Default)]
pub(super) struct ChainEvidence {
    pub(super) holes: Vec<Hole>,
    pub(super) rows: Vec<RowAuth>,
    /// (size, root, ledger seq), by size.
    pub(super) checkpoints: Vec<(u64, Hash, u64)>,
    /// The newest checkpoint as signed.
    pub(super) latest: Option<CheckpointBody>,
}

/// What the ledger pass collects.
#[derive(Default)]
pub(super) struct Evidence {
    pub(super) books: HashMap<i64, PolicyBook>,
    /// The retention snapshots behind `books`, as recorded.
    pub(super) snapshots: BTreeMap<i64, serde_json::Value>,
    pub(super) auths: Vec<Auth>,
    pub(super) chains: BTreeMap<(String, String), ChainEvidence>,
    /// Sequence number of the first sweep intent without a receipt.
    pub(super) first_pending: Option<u64>,
    /// Every hold the ledger records.
    pub(super) holds: Vec<LedgerHold>,
    /// Every data key the ledger records as created (`key.data_created`,
    /// `key.inventory`, anchors), with its tenant and entry.
    pub(super) keys: HashMap<KeyId, (std::sync::Arc<str>, u64)>,
    /// Data keys a receipted purge intent destroyed, with the intent.
    pub(super) destroyed: HashMap<KeyId, u64>,
    /// SHA-256 of each policy version's snapshot as entered.
    pub(super) digests: HashMap<i64, String>,
}

impl Evidence {
    /// The hold, if any, that covered records of this tenant and scope with
    /// event times in `[start_us, end_us)` when `auth`'s intent was written.
    /// Holds naming a subject are not checked here: a removed record's
    /// header no longer links to its subject (by design).
    pub(super) fn held(&self, auth: &Auth, tenant: &str, scope: &str, start_us: i64, end_us: i64) -> Option<String> {
        if auth.policy_version == ANCHORED {
            return None;
        }
        self.holds
            .iter()
            .find(|h| {
                h.set < auth.intent
                    && h.released.is_none_or(|r| r > auth.intent)
                    && h.expires_us.is_none_or(|e| e > auth.now_us)
                    && !h.scope.subject
                    && h.scope.may_cover(tenant, &mut std::iter::once(scope), start_us, end_us)
            })
            .map(|h| {
                format!(
                    "{} intent {} removed it while hold {} (ledger {}) was in force",
                    auth.kind(),
                    auth.intent,
                    h.id,
                    h.set
                )
            })
    }

    /// Why `auth` does not allow `action` on records of this group with
    /// event times in `[start_us, end_us)`, if it does not: a legal hold
    /// covered them when the intent was written, or (for a sweep) its
    /// recorded policy does not select them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refuses(
        &self,
        auth: &Auth,
        tenant: &str,
        stream: &str,
        scope: &str,
        class: u8,
        start_us: i64,
        end_us: i64,
        action: Action,
    ) -> Option<String> {
        if let Some(why) = self.held(auth, tenant, scope, start_us, end_us) {
            return Some(why);
        }
        // `ts < cutoff` is required of every record: compare as `end ≤ cutoff`.
        let before_us = end_us;
        if !auth.purge && auth.policy_version != ANCHORED && auth.now_us > auth.written_us {
            return Some(format!(
                "sweep intent {} evaluated its policies at {}, later than it was written ({}): a removal is never authorised by a future instant",
                auth.intent,
                lethe_core::record::format_ts(auth.now_us),
                lethe_core::record::format_ts(auth.written_us)
            ));
        }
        if auth.policy_version == ANCHORED || auth.purge {
            // Anchored removals were verified when the ledger was trimmed; a
            // purge is authorised by its receipted ticket, not by policy.
            return None;
        }
        let Some(book) = self.books.get(&auth.policy_version) else {
            return Some(format!(
                "receipt for intent {} names policy version {}, which is not in the ledger",
                auth.intent, auth.policy_version
            ));
        };
        let (Ok(t), Ok(s), Some(c)) = (TenantId::new(tenant), stream.parse(), Classification::from_code(class)) else {
            return Some("record names an invalid tenant, stream or classification".into());
        };
        let g = GroupKey {
            tenant: t,
            stream: s,
            scope: scope.into(),
            classification: c,
        };
        let d = book.decide(&g, auth.now_us);
        let Some(cutoff) = d.cutoff_us else {
            return Some(format!(
                "sweep intent {} removed it, but rule `{}` of policy version {} keeps {scope}/{c} records forever",
                auth.intent, d.rule.name, auth.policy_version
            ));
        };
        if d.rule.action != action {
            return Some(format!(
                "sweep intent {} did {action}, but rule `{}` of policy version {} says {}",
                auth.intent, d.rule.name, auth.policy_version, d.rule.action
            ));
        }
        if d.rule.archive.is_some() && action == Action::Delete && !auth.archived {
            return Some(format!(
                "sweep intent {} deleted it under rule `{}` (archive_then_delete) of policy version {}, but names no archive run: no archive copy was recorded first",
                auth.intent, d.rule.name, auth.policy_version
            ));
        }
        if before_us > cutoff {
            return Some(format!(
                "sweep intent {} removed it, but rule `{}` (window {}) of policy version {} keeps records from {} on; this one is from {}",
                auth.intent,
                d.rule.name,
                d.rule.window,
                auth.policy_version,
                lethe_core::record::format_ts(cutoff),
                lethe_core::record::format_ts(before_us)
            ));
        }
        None
    }
}

impl Vault {
    /// One pass over the ledger: every entry's hash, link and MAC, and the
    /// evidence later checks need (only from entries that are authentic).
    pub(super) fn ledger_evidence(&self, report: &mut VerifyReport, upto: u64) -> Result<Evidence> {
        let mut ev = Evidence::default();
        let public: [u8; 32] = self.signer.public_key();
        let mut intents: HashMap<u64, usize> = HashMap::new();
        // (intent seq, written µs, body, purge?, keys it destroys)
        let mut pending: Vec<(u64, i64, IntentBody, bool, Vec<KeyId>)> = Vec::new();
        // (intents it completes, receipt seq, purge?, records it claims removed)
        let mut receipts: Vec<(Vec<u64>, u64, bool, Option<u64>)> = Vec::new();
        let anchor = self.anchor(report)?;
        if let Some((at, a)) = &anchor {
            self.anchor_evidence(*at, a, &public, &mut ev, report);
        }
        let mut v = Verifier::new(&self.ledger_key);
        let mut first = true;
        self.each_entry(1, &mut |e| {
            if e.seq > upto {
                return Ok(false);
            }
            if std::mem::take(&mut first) && e.seq > 1 {
                // Trimmed by ledger retention: the anchor says where the rest starts.
                if let Some((_, a)) = &anchor {
                    v = Verifier::resume(&self.ledger_key, a.through, a.through_hash);
                }
            }
            report.ledger_entries += 1;
            let t = e.tenant.clone().unwrap_or_default();
            let (problems, authentic) = v.step(&e);
            for b in problems {
                if b.seq == e.seq {
                    report.gap(&t, "(ledger)", b.seq, format!("{} entry: {}", e.kind, b.problem));
                } else {
                    // A missing entry: nothing is known of it but its place.
                    report.gap("", "(ledger)", b.seq, format!("ledger entry {}", b.problem));
                }
            }
            if !authentic {
                return Ok(true);
            }
            match e.kind.as_str() {
                "policy.version" => {
                    let parsed = serde_json::from_str::<serde_json::Value>(&e.body).ok().and_then(|v| {
                        let version = v.get("version")?.as_i64()?;
                        let r = v.get("policies")?.get("retention")?.clone();
                        Some((version, serde_json::from_value::<RetentionSnapshot>(r.clone()).ok()?, r))
                    });
                    match parsed {
                        Some((version, snap, raw)) => {
                            ev.books.insert(version, snap.into_book());
                            ev.snapshots.insert(version, raw);
                            if let Some(p) = serde_json::from_str::<serde_json::Value>(&e.body)
                                .ok()
                                .and_then(|v| v.get("policies").cloned())
                            {
                                let text = serde_json::to_string(&p).expect("JSON values serialize");
                                ev.digests.insert(version, crate::sweep::policy_digest(&text));
                            }
                        }
                        None => report.gap(&t, "(ledger)", e.seq, "policy version entry does not parse"),
                    }
                }
                "sweep.intent" => match serde_json::from_str::<IntentBody>(&e.body) {
                    Ok(b) => {
                        if let Some(d) = &b.policy_sha256 {
                            if ev.digests.get(&b.policy_version).is_some_and(|x| x != d) {
                                report.gap(
                                    &t,
                                    "(ledger)",
                                    e.seq,
                                    format!(
                                        "sweep intent applied a policy snapshot that is not version {} as the ledger entered it",
                                        b.policy_version
                                    ),
                                );
                            }
                        }
                        pending.push((e.seq, e.ts_us, b, false, Vec::new()))
                    }
                    Err(err) => report.gap(&t, "(ledger)", e.seq, format!("sweep intent does not parse: {err}")),
                },
                "purge.intent" => match serde_json::from_str::<PurgeIntent>(&e.body) {
                    Ok(b) => pending.push((
                        e.seq,
                        e.ts_us,
                        IntentBody {
                            policy_version: 0,
                            now_us: e.ts_us,
                            tenant: Some(b.tenant),
                            chains: b.chains,
                            archive: None,
                            policy_sha256: None,
                        },
                        true,
                        b.keys,
                    )),
                    Err(err) => report.gap(&t, "(ledger)", e.seq, format!("purge intent does not parse: {err}")),
                },
                "receipt.sweep" | "receipt.purge" => {
                    let completes = receipt_intents(&e);
                    if !completes.is_empty() {
                        receipts.push((completes, e.seq, e.kind == "receipt.purge", claimed(&e.body)));
                    }
                }
                "key.data_created" | "key.inventory" => {
                    let ids = serde_json::from_str::<serde_json::Value>(&e.body)
                        .ok()
                        .and_then(|v| v.get("ids").cloned());
                    match ids {
                        Some(serde_json::Value::Array(ids)) => {
                            // One tenant name for all of the entry's keys
                            // (millions of keys on a store of many subjects).
                            let owner: std::sync::Arc<str> = t.as_str().into();
                            for id in ids.iter().filter_map(|i| i.as_i64()) {
                                ev.keys.insert(id, (owner.clone(), e.seq));
                            }
                        }
                        // Entries from before keys were listed carry a count only.
                        _ if e.kind == "key.data_created" => {}
                        _ => report.gap(&t, "(ledger)", e.seq, "key inventory entry does not parse"),
                    }
                }
                "hold.set" => match LedgerHold::parse(&e) {
                    Some(h) => ev.holds.push(h),
                    None => report.gap(&t, "(ledger)", e.seq, "hold entry does not parse"),
                },
                "hold.released" => {
                    let id = released_id(&e);
                    match ev.holds.iter_mut().find(|h| Some(h.id) == id && h.released.is_none()) {
                        Some(h) => h.released = Some(e.seq),
                        // Its `hold.set` may have been trimmed behind an anchor.
                        None if anchor.is_none() => {
                            report.gap(&t, "(ledger)", e.seq, "release of a hold the ledger never set")
                        }
                        None => {}
                    }
                }
                "checkpoint" => match serde_json::from_str::<CheckpointBody>(&e.body) {
                    Ok(b) => {
                        let cp: &Checkpoint = &b.checkpoint;
                        let sig = hex::decode(&b.signature).unwrap_or_default();
                        if !cp.verify(&public, &sig) {
                            report.gap(
                                &cp.tenant,
                                &cp.stream,
                                cp.size,
                                format!("checkpoint (ledger {}) signature does not verify", e.seq),
                            );
                        } else if cp.ledger_seq != e.seq || cp.ledger_prev != e.prev {
                            report.gap(
                                &cp.tenant,
                                &cp.stream,
                                cp.size,
                                format!("checkpoint (ledger {}) was signed for another ledger position", e.seq),
                            );
                        } else {
                            let ce = ev.chains.entry((cp.tenant.clone(), cp.stream.clone())).or_default();
                            ce.checkpoints.push((cp.size, cp.root, e.seq));
                            if ce.latest.as_ref().is_none_or(|l| l.checkpoint.size <= cp.size) {
                                ce.latest = Some(b.clone());
                            }
                        }
                    }
                    Err(err) => report.gap(&t, "(ledger)", e.seq, format!("checkpoint does not parse: {err}")),
                },
                _ => {}
            }
            Ok(true)
        })?;
        for (seq, written_us, body, purge, keys) in pending {
            intents.insert(seq, ev.auths.len());
            ev.auths.push(Auth {
                intent: seq,
                receipt: None,
                policy_version: body.policy_version,
                now_us: body.now_us,
                purge,
                archived: body.archive.as_ref().is_some_and(|a| !a.is_null()),
                written_us,
                keys,
            });
            let auth = ev.auths.len() - 1;
            for c in body.chains {
                let ce = ev.chains.entry((c.tenant.clone(), c.stream.clone())).or_default();
                for d in c.dropped {
                    for s in d.segments {
                        // Listed as dropped but kept as tombstones (the partition
                        // was written to after the plan): a delete authorisation too.
                        ce.rows.push(RowAuth {
                            first: s.first,
                            last: s.last,
                            action: Action::Delete,
                            auth,
                        });
                        ce.holes.push(Hole {
                            segment: s,
                            start_us: d.start_us,
                            end_us: d.end_us,
                            groups: d.groups.clone(),
                            auth,
                        });
                    }
                }
                for r in c.rows {
                    for s in r.seqs {
                        ce.rows.push(RowAuth {
                            first: s[0],
                            last: s[1],
                            action: r.action,
                            auth,
                        });
                    }
                }
            }
        }
        let mut claims = Vec::new();
        for (completes, receipt, purge, claim) in receipts {
            // A purge that removed records stored while it ran completes
            // its first intent and the continuation with one receipt; its
            // claim covers both.
            let mut auths = Vec::new();
            for intent in completes {
                let Some(&i) = intents.get(&intent) else {
                    continue;
                };
                // A receipt completes an intent of its own kind only, and an
                // intent has one receipt.
                if ev.auths[i].purge != purge {
                    continue;
                }
                if let Some(first) = ev.auths[i].receipt {
                    report.gap(
                        "",
                        "(ledger)",
                        receipt,
                        format!("a second receipt for intent {intent} (the first is {first})"),
                    );
                    continue;
                }
                ev.auths[i].receipt = Some(receipt);
                auths.push(i);
            }
            if let (Some(c), false) = (claim, auths.is_empty()) {
                claims.push((auths, receipt, c));
            }
        }
        for a in ev.auths.iter().filter(|a| a.receipt.is_some()) {
            for k in &a.keys {
                ev.destroyed.entry(*k).or_insert(a.intent);
            }
        }
        ev.first_pending = ev.auths.iter().filter(|a| a.receipt.is_none()).map(|a| a.intent).min();
        for ce in ev.chains.values_mut() {
            ce.rows.sort_by_key(|r| r.first);
            ce.holes.sort_by_key(|h| h.segment.first);
            ce.checkpoints.sort_by_key(|c| c.0);
        }
        // A receipt may claim no more removals than its intent made: the
        // records it lists that no earlier receipted removal took already.
        let removed = ev.attributed();
        for (auths, receipt, claim) in claims {
            let did: u64 = auths.iter().map(|a| removed.get(a).copied().unwrap_or(0)).sum();
            if claim > did {
                let named: Vec<String> = auths.iter().map(|&a| ev.auths[a].intent.to_string()).collect();
                report.gap(
                    "",
                    "(ledger)",
                    receipt,
                    format!(
                        "receipt claims {claim} records removed, but its intent {} removed {did} that no earlier receipted removal had",
                        named.join(" with its continuation ")
                    ),
                );
            }
        }
        Ok(ev)
    }
}

impl Evidence {
    /// Per receipted authorisation, how many removals it made first: its
    /// listed records not deleted (or, for an anonymization, not deleted or
    /// anonymized) by a removal finished earlier (receipt order).
    fn attributed(&self) -> HashMap<usize, u64> {
        let mut out: HashMap<usize, u64> = HashMap::new();
        for ce in self.chains.values() {
            let mut rows: Vec<&RowAuth> = ce
                .rows
                .iter()
                .filter(|r| self.auths[r.auth].receipt.is_some())
                .collect();
            // In the order the removals were finished (their receipts), not
            // the order they were intended: an intent killed before it
            // removed anything is finished after whatever ran in between,
            // and a purge that ran in between took those records first.
            rows.sort_by_key(|r| (self.auths[r.auth].receipt, r.first));
            let mut deleted = Ranges::default();
            let mut anonymized = Ranges::default();
            for r in rows {
                let n = match r.action {
                    Action::Delete => deleted.insert(r.first, r.last),
                    Action::Anonymize => {
                        let fresh = anonymized.insert(r.first, r.last);
                        fresh.saturating_sub(deleted.overlap(r.first, r.last))
                    }
                };
                *out.entry(r.auth).or_default() += n;
            }
        }
        out
    }
}

/// What a receipt says it removed (`deleted` + `anonymized` of a sweep,
/// `removed` of a purge); `None` for a receipt written by recovery, which
/// counts only what recovery itself did.
fn claimed(body: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    if v.get("recovered").and_then(|r| r.as_bool()) == Some(true) {
        return None;
    }
    match v.get("removed").and_then(|r| r.as_u64()) {
        Some(n) => Some(n),
        None => Some(v.get("deleted")?.as_u64()? + v.get("anonymized")?.as_u64()?),
    }
}

/// A set of sequence numbers as disjoint inclusive ranges.
#[derive(Default)]
struct Ranges(BTreeMap<u64, u64>);

impl Ranges {
    /// How many of `first..=last` are in the set.
    fn overlap(&self, first: u64, last: u64) -> u64 {
        let mut n = 0;
        let start = self.0.range(..=first).next_back().map_or(first, |(a, _)| *a);
        for (&a, &b) in self.0.range(start..=last) {
            let (lo, hi) = (a.max(first), b.min(last));
            if lo <= hi {
                n += hi - lo + 1;
            }
        }
        n
    }

    /// Adds `first..=last`; returns how many were not in the set before.
    fn insert(&mut self, first: u64, last: u64) -> u64 {
        let new = (last - first + 1) - self.overlap(first, last);
        let (mut lo, mut hi) = (first, last);
        let start = self.0.range(..=first).next_back().map_or(first, |(a, _)| *a);
        let touching: Vec<(u64, u64)> = self
            .0
            .range(start..=last.saturating_add(1))
            .filter(|(&a, &b)| b.saturating_add(1) >= first && a <= last.saturating_add(1))
            .map(|(&a, &b)| (a, b))
            .collect();
        for (a, b) in touching {
            self.0.remove(&a);
            lo = lo.min(a);
            hi = hi.max(b);
        }
        self.0.insert(lo, hi);
        new
    }
}
