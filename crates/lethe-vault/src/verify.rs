//! `lethe verify`: proves, chain by chain, that every record still there is
//! intact and every record that is not was removed by an authorised,
//! recorded act — or says exactly where that is not so.
//!
//! One pass over the ledger (constant memory per entry) collects what can
//! explain a missing or redacted record: sweep intents that a receipt
//! completed, the policy versions they applied, and the signed checkpoints.
//! Then each chain is walked in sequence order — stored segments, and the
//! ranges receipts say were dropped — rebuilding every header, checking
//! every MAC and link, re-deciding every removal from the recorded policy,
//! and recomputing the Merkle tree head at every checkpoint size. Memory
//! grows with the number of receipts and checkpoints, not with records.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use lethe_core::checkpoint::Checkpoint;
use lethe_core::hold::HoldScope;
use lethe_core::integrity::{chain, genesis, RecordMac};
use lethe_core::ledger::{check_entry, Verifier};
use lethe_core::merkle::{node_hash, perfect_cover, Frontier, Hash};
use lethe_core::policy::{Action, GroupKey, PolicyBook, RetentionSnapshot};
use lethe_core::{Classification, TenantId};
use lethe_store::row::{ANONYMIZED, DELETED};
use lethe_store::{PartGroupRef, Segment};
use serde::Serialize;

use crate::purge::PurgeIntent;
use crate::seal::CheckpointBody;
use crate::sweep::{receipt_intent, IntentBody};
use crate::{Result, Vault};

/// Gaps listed in full; beyond this they are only counted.
const LISTED_GAPS: usize = 10_000;

/// Something verification cannot explain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Tenant (empty for a ledger entry that names none).
    pub tenant: String,
    /// Stream, or `(ledger)` for a problem with a ledger entry.
    pub stream: String,
    /// Sequence number of the record (or of the ledger entry).
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

/// The outcome of `lethe verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Stored records whose header was rebuilt and whose MAC and link were
    /// checked (live, anonymized and tombstones).
    pub records_checked: u64,
    /// Of which tombstones (deleted, header kept).
    pub tombstones: u64,
    /// Of which anonymized.
    pub anonymized: u64,
    /// Records no longer stored whose removal a receipt explains.
    pub removed_explained: u64,
    /// Chains walked.
    pub chains: u64,
    /// Checkpoints whose tree head was recomputed and matched.
    pub checkpoints_checked: u64,
    /// Checkpoints whose size falls inside a removed range (their heads
    /// cannot be recomputed from what remains; later checkpoints cover them).
    pub checkpoints_unverifiable: u64,
    /// Ledger entries checked.
    pub ledger_entries: u64,
    /// Records past their chain's last checkpoint that are younger than
    /// twice `integrity.checkpoint_interval` — the next seal covers them
    /// (an ingest is running); older unsealed records are gaps.
    pub unsealed_recent: u64,
    /// The public key checkpoint signatures were checked with (hex).
    pub public_key: String,
    /// Every unexplained gap (the first 10,000).
    pub unexplained_gaps: Vec<Gap>,
    /// How many there are in all.
    pub gaps_total: u64,
}

impl VerifyReport {
    fn gap(&mut self, tenant: &str, stream: &str, seq: u64, problem: impl Into<String>) {
        self.gaps_total += 1;
        if self.unexplained_gaps.len() < LISTED_GAPS {
            self.unexplained_gaps.push(Gap {
                tenant: tenant.into(),
                stream: stream.into(),
                seq,
                problem: problem.into(),
            });
        }
    }

    /// Whether everything verified.
    pub fn ok(&self) -> bool {
        self.gaps_total == 0
    }
}

/// Policy version of the authorisation an anchor carries: its removals were
/// verified before the entries that recorded them were trimmed.
const ANCHORED: i64 = i64::MIN;

/// Catalog key holding the ledger sequence number of the newest anchor.
pub(crate) const ANCHOR_META: &str = "ledger.anchor";

/// What a `ledger.anchor` entry says: entries `1..=through` were trimmed
/// (ledger retention) and this is everything verification needs from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Anchor {
    /// Last trimmed entry.
    pub through: u64,
    /// Its hash: the first kept entry links to it.
    #[serde(with = "lethe_core::checkpoint::hex32")]
    pub through_hash: Hash,
    /// Per chain, the removals the trimmed receipts explained and the latest trimmed checkpoint.
    pub chains: Vec<AnchorChain>,
    /// The retention rules of every policy version entered in the trimmed
    /// entries (kept sweeps may still name them), by version.
    pub policies: BTreeMap<i64, serde_json::Value>,
    /// Legal holds set in the trimmed entries and not released there: later
    /// removals are still checked against them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<AnchorHold>,
}

/// A legal hold carried by an [`Anchor`] (its `hold.set` entry was trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AnchorHold {
    /// Hold id.
    pub id: i64,
    /// Ledger sequence number of its `hold.set`.
    pub set: u64,
    /// When it lapses by itself (µs).
    pub expires_us: Option<i64>,
    /// What it covers (never a subject's pseudonym).
    pub scope: HoldScope,
}

/// One chain's part of an [`Anchor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AnchorChain {
    /// Tenant.
    pub tenant: String,
    /// Stream.
    pub stream: String,
    /// Ranges dropped with their partitions, adjacent ones merged, with boundary chain hashes.
    pub dropped: Vec<Segment>,
    /// Ranges whose records were deleted (tombstones may remain).
    pub deleted: Vec<[u64; 2]>,
    /// Ranges whose records were anonymized.
    pub anonymized: Vec<[u64; 2]>,
    /// The newest trimmed checkpoint.
    pub checkpoint: Option<CheckpointBody>,
}

/// The body of a `ledger.anchor` entry: the anchor, Ed25519-signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AnchorBody {
    /// What is signed (its JSON serialization).
    pub anchor: Anchor,
    /// Signature (hex).
    pub signature: String,
    /// The key it verifies with (hex).
    pub public_key: String,
}

/// A completed (or pending) sweep: what authorises its removals.
struct Auth {
    intent: u64,
    receipt: Option<u64>,
    policy_version: i64,
    now_us: i64,
    /// A purge (authorised by its ticket, not by policy) rather than a sweep.
    purge: bool,
    /// The intent names an archive run (its records of `archive_then_delete`
    /// rules were archived, read back and recorded before it).
    archived: bool,
}

impl Auth {
    fn kind(&self) -> &'static str {
        if self.purge {
            "purge"
        } else {
            "sweep"
        }
    }

    fn unreceipted(&self) -> String {
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

/// A legal hold as the ledger records it.
struct LedgerHold {
    id: i64,
    set: u64,
    released: Option<u64>,
    expires_us: Option<i64>,
    scope: HoldScope,
}

/// A range a sweep dropped with its partition.
struct Hole {
    segment: Segment,
    start_us: i64,
    end_us: i64,
    groups: Vec<PartGroupRef>,
    auth: usize,
}

/// A range a sweep tombstoned or anonymized.
struct RowAuth {
    first: u64,
    last: u64,
    action: Action,
    auth: usize,
}

/// What the ledger says about one chain.
#[derive(Default)]
struct ChainEvidence {
    holes: Vec<Hole>,
    rows: Vec<RowAuth>,
    /// (size, root, ledger seq), by size.
    checkpoints: Vec<(u64, Hash, u64)>,
    /// The newest checkpoint as signed.
    latest: Option<CheckpointBody>,
}

/// What the ledger pass collects.
#[derive(Default)]
struct Evidence {
    books: HashMap<i64, PolicyBook>,
    /// The retention snapshots behind `books`, as recorded.
    snapshots: BTreeMap<i64, serde_json::Value>,
    auths: Vec<Auth>,
    chains: BTreeMap<(String, String), ChainEvidence>,
    /// Sequence number of the first sweep intent without a receipt.
    first_pending: Option<u64>,
    /// Every hold the ledger records.
    holds: Vec<LedgerHold>,
}

impl Evidence {
    /// The hold, if any, that covered records of this tenant and scope with
    /// event times in `[start_us, end_us)` when `auth`'s intent was written.
    /// Holds naming a subject are not checked here: a removed record's
    /// header no longer links to its subject (by design).
    fn held(&self, auth: &Auth, tenant: &str, scope: &str, start_us: i64, end_us: i64) -> Option<String> {
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
    fn refuses(
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
    /// Verifies the store and the ledger; `tenant` and `stream` narrow the
    /// chains walked (the ledger is always checked whole). `progress` is
    /// told records checked so far.
    pub fn verify(
        &self,
        tenant: Option<&TenantId>,
        stream: Option<&str>,
        now_us: i64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            public_key: self.public_key(),
            ..Default::default()
        };
        // The chain heads first: records appended while verify runs (past
        // these heads) are left for the next verify, and everything up to
        // them was committed — and sealed, if it was — before the ledger is read.
        let heads: HashMap<(String, String), lethe_store::ChainHead> = self
            .store
            .chains()?
            .into_iter()
            .map(|h| ((h.tenant.clone(), h.stream.clone()), h))
            .collect();
        let mut ev = self.ledger_evidence(&mut report, u64::MAX)?;
        let mut names: Vec<(String, String)> = self
            .store
            .chains()?
            .into_iter()
            .map(|c| (c.tenant, c.stream))
            .chain(ev.chains.keys().cloned())
            .filter(|(t, s)| tenant.is_none_or(|x| x.as_str() == t) && stream.is_none_or(|x| x == s))
            .collect();
        names.sort();
        names.dedup();
        let work: Vec<((String, String), ChainEvidence)> = names
            .into_iter()
            .map(|n| {
                let ce = ev.chains.remove(&n).unwrap_or_default();
                (n, ce)
            })
            .collect();
        // Chains are independent: one worker per core, each with its own
        // read-only connections, takes the next chain.
        let next = AtomicUsize::new(0);
        let checked = AtomicU64::new(0);
        let tick = |n: u64| progress(checked.fetch_add(n, Ordering::Relaxed) + n);
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(work.len())
            .max(1);
        let (ev, work, heads) = (&ev, &work, &heads);
        let results: Vec<Result<Vec<(usize, VerifyReport)>>> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    sc.spawn(|| -> Result<Vec<(usize, VerifyReport)>> {
                        let mut reader = self.store.row_reader()?;
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(((t, s), ce)) = work.get(i) else { break };
                            let mut r = VerifyReport::default();
                            let head = heads.get(&(t.clone(), s.clone()));
                            self.verify_chain(t, s, head, ce, ev, now_us, &mut r, &mut *reader, &tick)?;
                            out.push((i, r));
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a verify worker panicked"))
                .collect()
        });
        let mut parts = Vec::new();
        for r in results {
            parts.extend(r?);
        }
        parts.sort_by_key(|(i, _)| *i);
        for (_, r) in parts {
            report.records_checked += r.records_checked;
            report.tombstones += r.tombstones;
            report.anonymized += r.anonymized;
            report.removed_explained += r.removed_explained;
            report.checkpoints_checked += r.checkpoints_checked;
            report.checkpoints_unverifiable += r.checkpoints_unverifiable;
            report.unsealed_recent += r.unsealed_recent;
            report.chains += 1;
            // Gaps past a chain's own listing limit are counted, not listed.
            report.gaps_total += r.gaps_total - r.unexplained_gaps.len() as u64;
            for g in r.unexplained_gaps {
                report.gap(&g.tenant, &g.stream, g.seq, g.problem);
            }
        }
        progress(checked.load(Ordering::Relaxed));
        Ok(report)
    }

    /// One pass over the ledger: every entry's hash, link and MAC, and the
    /// evidence later checks need (only from entries that are authentic).
    fn ledger_evidence(&self, report: &mut VerifyReport, upto: u64) -> Result<Evidence> {
        let mut ev = Evidence::default();
        let public: [u8; 32] = self.signer.public_key();
        let mut intents: HashMap<u64, usize> = HashMap::new();
        let mut pending: Vec<(u64, IntentBody, bool)> = Vec::new();
        let mut receipts: Vec<(u64, u64, bool)> = Vec::new();
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
                        }
                        None => report.gap(&t, "(ledger)", e.seq, "policy version entry does not parse"),
                    }
                }
                "sweep.intent" => match serde_json::from_str::<IntentBody>(&e.body) {
                    Ok(b) => pending.push((e.seq, b, false)),
                    Err(err) => report.gap(&t, "(ledger)", e.seq, format!("sweep intent does not parse: {err}")),
                },
                "purge.intent" => match serde_json::from_str::<PurgeIntent>(&e.body) {
                    Ok(b) => pending.push((
                        e.seq,
                        IntentBody {
                            policy_version: 0,
                            now_us: e.ts_us,
                            tenant: Some(b.tenant),
                            chains: b.chains,
                            archive: None,
                        },
                        true,
                    )),
                    Err(err) => report.gap(&t, "(ledger)", e.seq, format!("purge intent does not parse: {err}")),
                },
                "receipt.sweep" | "receipt.purge" => {
                    if let Some(i) = receipt_intent(&e) {
                        receipts.push((i, e.seq, e.kind == "receipt.purge"));
                    }
                }
                "hold.set" => {
                    let parsed = serde_json::from_str::<serde_json::Value>(&e.body).ok().and_then(|v| {
                        Some(LedgerHold {
                            id: v.get("id")?.as_i64()?,
                            set: e.seq,
                            released: None,
                            expires_us: v.get("expires_us").and_then(|x| x.as_i64()),
                            scope: serde_json::from_value(v.get("scope")?.clone()).ok()?,
                        })
                    });
                    match parsed {
                        Some(h) => ev.holds.push(h),
                        None => report.gap(&t, "(ledger)", e.seq, "hold entry does not parse"),
                    }
                }
                "hold.released" => {
                    let id = serde_json::from_str::<serde_json::Value>(&e.body)
                        .ok()
                        .and_then(|v| v.get("id")?.as_i64());
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
        for (seq, body, purge) in pending {
            intents.insert(seq, ev.auths.len());
            ev.auths.push(Auth {
                intent: seq,
                receipt: None,
                policy_version: body.policy_version,
                now_us: body.now_us,
                purge,
                archived: body.archive.as_ref().is_some_and(|a| !a.is_null()),
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
        for (intent, receipt, purge) in receipts {
            if let Some(&i) = intents.get(&intent) {
                // A receipt completes an intent of its own kind only.
                if ev.auths[i].purge == purge {
                    ev.auths[i].receipt = Some(receipt);
                }
            }
        }
        ev.first_pending = ev.auths.iter().filter(|a| a.receipt.is_none()).map(|a| a.intent).min();
        for ce in ev.chains.values_mut() {
            ce.rows.sort_by_key(|r| r.first);
            ce.holes.sort_by_key(|h| h.segment.first);
            ce.checkpoints.sort_by_key(|c| c.0);
        }
        Ok(ev)
    }

    /// The newest ledger anchor, if the ledger was ever trimmed, authenticated
    /// (entry MAC and Ed25519 signature); problems are gaps.
    pub(crate) fn anchor(&self, report: &mut VerifyReport) -> Result<Option<(u64, Anchor)>> {
        let Some(at) = self.store.meta(ANCHOR_META)? else {
            return Ok(None);
        };
        let Ok(at) = at.parse::<u64>() else {
            report.gap(
                "",
                "(ledger)",
                0,
                format!("anchor pointer `{at}` is not a sequence number"),
            );
            return Ok(None);
        };
        let Some(e) = self.store.ledger(at, 1)?.into_iter().find(|e| e.seq == at) else {
            report.gap("", "(ledger)", at, "the ledger anchor entry is missing");
            return Ok(None);
        };
        if let Err(p) = check_entry(&self.ledger_key, &e) {
            report.gap("", "(ledger)", at, format!("ledger anchor: {p}"));
            return Ok(None);
        }
        let body: AnchorBody = match serde_json::from_str(&e.body) {
            Ok(b) => b,
            Err(err) => {
                report.gap("", "(ledger)", at, format!("ledger anchor does not parse: {err}"));
                return Ok(None);
            }
        };
        let signed = serde_json::to_vec(&body.anchor).expect("anchors serialize");
        let sig = hex::decode(&body.signature).unwrap_or_default();
        if e.kind != "ledger.anchor" || !lethe_core::checkpoint::verify_anchor(&self.signer.public_key(), &signed, &sig)
        {
            report.gap("", "(ledger)", at, "ledger anchor signature does not verify");
            return Ok(None);
        }
        Ok(Some((at, body.anchor)))
    }

    /// What an anchor contributes: pre-verified removals and checkpoints.
    fn anchor_evidence(&self, at: u64, a: &Anchor, public: &[u8; 32], ev: &mut Evidence, report: &mut VerifyReport) {
        ev.holds.extend(a.holds.iter().map(|h| LedgerHold {
            id: h.id,
            set: h.set,
            released: None,
            expires_us: h.expires_us,
            scope: h.scope.clone(),
        }));
        for (version, raw) in &a.policies {
            match serde_json::from_value::<RetentionSnapshot>(raw.clone()) {
                Ok(snap) => {
                    ev.books.insert(*version, snap.into_book());
                    ev.snapshots.insert(*version, raw.clone());
                }
                Err(e) => report.gap("", "(ledger)", at, format!("anchored policy version {version}: {e}")),
            }
        }
        ev.auths.push(Auth {
            intent: at,
            receipt: Some(at),
            policy_version: ANCHORED,
            now_us: 0,
            purge: false,
            archived: false,
        });
        let auth = ev.auths.len() - 1;
        for c in &a.chains {
            let ce = ev.chains.entry((c.tenant.clone(), c.stream.clone())).or_default();
            for s in &c.dropped {
                ce.holes.push(Hole {
                    segment: s.clone(),
                    start_us: i64::MIN,
                    end_us: i64::MIN,
                    groups: Vec::new(),
                    auth,
                });
                ce.rows.push(RowAuth {
                    first: s.first,
                    last: s.last,
                    action: Action::Delete,
                    auth,
                });
            }
            for (ranges, action) in [(&c.deleted, Action::Delete), (&c.anonymized, Action::Anonymize)] {
                for r in ranges {
                    ce.rows.push(RowAuth {
                        first: r[0],
                        last: r[1],
                        action,
                        auth,
                    });
                }
            }
            if let Some(b) = &c.checkpoint {
                let cp = &b.checkpoint;
                let sig = hex::decode(&b.signature).unwrap_or_default();
                if cp.verify(public, &sig) && cp.tenant == c.tenant && cp.stream == c.stream {
                    ce.checkpoints.push((cp.size, cp.root, cp.ledger_seq));
                    ce.latest = Some(b.clone());
                } else {
                    report.gap(
                        &c.tenant,
                        &c.stream,
                        cp.size,
                        format!("anchored checkpoint (ledger {at}) signature does not verify"),
                    );
                }
            }
        }
    }

    /// Trims the ledger to its retention window (`[ledger] retention`):
    /// entries older than `now_us - window` go, after a full verify passes,
    /// behind a signed `ledger.anchor` entry that carries the removed
    /// ranges and latest checkpoints verification still needs. Returns the
    /// number of entries trimmed.
    pub fn trim_ledger(&self, actor: &str, now_us: i64) -> Result<u64> {
        let Some(cutoff) = self.config.ledger.retention.cutoff(now_us) else {
            return Ok(0);
        };
        // The newest entry older than the cutoff (entries are in time order).
        let mut through = 0;
        self.each_entry(1, &mut |e| {
            if e.ts_us >= cutoff {
                return Ok(false);
            }
            through = e.seq;
            Ok(true)
        })?;
        let first = self.store.ledger(1, 1)?.first().map_or(0, |e| e.seq);
        if through == 0 || through < first {
            return Ok(0);
        }
        let check = self.verify(None, None, now_us, &|_| {})?;
        if !check.ok() {
            return Err(crate::VaultError::Invalid(format!(
                "the ledger was not trimmed: `lethe verify` finds {} unexplained gaps; an anchor must only vouch for a store that verifies",
                check.gaps_total
            )));
        }
        let mut scratch = VerifyReport::default();
        let ev = self.ledger_evidence(&mut scratch, through)?;
        // Never trim past a sweep that has not written its receipt yet.
        if let Some(p) = ev.first_pending {
            through = through.min(p - 1);
        }
        let ev = if through < first {
            return Ok(0);
        } else if ev.first_pending.is_some() {
            self.ledger_evidence(&mut scratch, through)?
        } else {
            ev
        };
        let through_hash = self
            .store
            .ledger(through, 1)?
            .into_iter()
            .find(|e| e.seq == through)
            .map(|e| e.hash)
            .ok_or_else(|| crate::VaultError::Invalid(format!("ledger entry {through} is missing")))?;
        let chains = ev
            .chains
            .iter()
            .map(|((t, s), ce)| {
                let ok = |a: usize| ev.auths[a].receipt.is_some();
                let mut dropped: Vec<Segment> = Vec::new();
                let mut holes: Vec<&Hole> = ce.holes.iter().filter(|h| ok(h.auth)).collect();
                holes.sort_by_key(|h| h.segment.first);
                for h in holes {
                    match dropped.last_mut() {
                        Some(d) if d.last + 1 == h.segment.first => {
                            d.last = h.segment.last;
                            d.chain = h.segment.chain;
                        }
                        Some(d) if h.segment.last <= d.last => {}
                        _ => dropped.push(h.segment.clone()),
                    }
                }
                let rows = |action: Action| {
                    lethe_store::merge_ranges(
                        ce.rows
                            .iter()
                            .filter(|r| r.action == action && ok(r.auth))
                            .map(|r| [r.first, r.last])
                            .collect(),
                    )
                };
                AnchorChain {
                    tenant: t.clone(),
                    stream: s.clone(),
                    dropped,
                    deleted: rows(Action::Delete),
                    anonymized: rows(Action::Anonymize),
                    checkpoint: ce.latest.clone(),
                }
            })
            .collect();
        let anchor = Anchor {
            through,
            through_hash,
            chains,
            policies: ev.snapshots.clone(),
            holds: ev
                .holds
                .iter()
                .filter(|h| h.released.is_none())
                .map(|h| AnchorHold {
                    id: h.id,
                    set: h.set,
                    expires_us: h.expires_us,
                    scope: h.scope.clone(),
                })
                .collect(),
        };
        let body = AnchorBody {
            signature: hex::encode(
                self.signer
                    .sign_anchor(&serde_json::to_vec(&anchor).expect("anchors serialize")),
            ),
            public_key: self.public_key(),
            anchor,
        };
        let e = self.record(
            now_us,
            actor,
            "ledger.anchor",
            None,
            &serde_json::to_value(&body).expect("serializes"),
        )?;
        self.store.set_meta(ANCHOR_META, Some(&e.seq.to_string()))?;
        Ok(self.store.trim_ledger(through)?)
    }

    /// Why a tombstoned or anonymized record is not explained, if it is not.
    #[allow(clippy::too_many_arguments)]
    fn unexplained_redaction(
        ev: &Evidence,
        ce: &ChainEvidence,
        tenant: &str,
        stream: &str,
        seq: u64,
        scope: &str,
        class: u8,
        ts_us: i64,
        action: Action,
    ) -> Option<String> {
        let end = ce.rows.partition_point(|r| r.first <= seq);
        let mut why = None;
        for r in ce.rows[..end].iter().rev().filter(|r| r.last >= seq) {
            // An anonymized record may have been deleted later; a deleted one
            // needs a delete.
            let fits = r.action == action || (action == Action::Anonymize && r.action == Action::Delete);
            if !fits {
                continue;
            }
            let auth = &ev.auths[r.auth];
            if auth.receipt.is_none() {
                why = Some(auth.unreceipted());
                continue;
            }
            match ev.refuses(auth, tenant, stream, scope, class, ts_us, ts_us + 1, r.action) {
                None => return None,
                Some(w) => why = Some(w),
            }
        }
        Some(why.unwrap_or_else(|| {
            let what = if action == Action::Delete {
                "deleted"
            } else {
                "anonymized"
            };
            format!("{what} without a receipt")
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn verify_chain(
        &self,
        tenant: &str,
        stream: &str,
        head: Option<&lethe_store::ChainHead>,
        ce: &ChainEvidence,
        ev: &Evidence,
        now_us: i64,
        report: &mut VerifyReport,
        reader: &mut dyn lethe_store::RowReader,
        tick: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        let head_size = head.map_or(0, |h| h.size);
        let mac = match TenantId::new(tenant)
            .ok()
            .map(|t| self.keys.tenant(&t, false, 0))
            .transpose()?
        {
            Some(Some(k)) => Some(RecordMac::new(k.mac_key())),
            _ => None,
        };
        // Up to the head read at the start; rows past it are newer (or in flight).
        let mut segments = self.store.segments(tenant, stream)?;
        segments.retain(|s| s.segment.first <= head_size);
        for s in &mut segments {
            s.segment.last = s.segment.last.min(head_size);
        }
        // Walk items in sequence order: stored segments and dropped ranges.
        enum Item<'a> {
            Rows(&'a lethe_store::SegmentAt),
            Hole(&'a Hole),
        }
        let mut items: Vec<(u64, Item)> = segments.iter().map(|s| (s.segment.first, Item::Rows(s))).collect();
        items.extend(ce.holes.iter().map(|h| (h.segment.first, Item::Hole(h))));
        items.sort_by_key(|(first, item)| (*first, matches!(item, Item::Hole(_))));

        let mut w = Walk {
            tenant,
            stream,
            store: &*self.store,
            prev: genesis(tenant, stream),
            next: 1,
            tree: Frontier::new(),
            tree_ok: true,
            resync: false,
            hole_from: None,
            cps: &ce.checkpoints,
            cp: 0,
            last_received: i64::MIN,
        };
        let mut visited: HashMap<i64, u64> = HashMap::new();

        for (_, item) in &items {
            match item {
                Item::Hole(h) => {
                    let s = &h.segment;
                    if s.last < w.next {
                        continue; // its records are still stored (kept as tombstones)
                    }
                    if s.first != w.next {
                        w.flush_hole(w.next - 1, report)?;
                        missing(tenant, stream, w.next, s.first.saturating_sub(1), report);
                        w.tree_ok = false;
                        w.resync = true;
                    }
                    let auth = &ev.auths[h.auth];
                    if auth.receipt.is_none() {
                        report.gap(
                            tenant,
                            stream,
                            s.first,
                            format!("records {}–{}: {}", s.first, s.last, auth.unreceipted()),
                        );
                    } else if let Some(why) = h.groups.iter().find_map(|g| {
                        ev.refuses(
                            auth,
                            tenant,
                            stream,
                            &g.scope,
                            g.class,
                            h.start_us,
                            h.end_us,
                            Action::Delete,
                        )
                    }) {
                        report.gap(
                            tenant,
                            stream,
                            s.first,
                            format!("records {}–{}: {why}", s.first, s.last),
                        );
                    }
                    if !w.resync && s.prev != w.prev {
                        report.gap(
                            tenant,
                            stream,
                            s.first,
                            format!(
                                "receipt for records {}–{} does not link to the record before them",
                                s.first, s.last
                            ),
                        );
                    }
                    w.prev = s.chain;
                    w.resync = false;
                    report.removed_explained += s.last + 1 - s.first;
                    w.hole_from.get_or_insert(s.first);
                    w.next = s.last + 1;
                }
                Item::Rows(sa) => {
                    // The dropped range ends where the walk is; anything between
                    // it and this segment is missing, reported below.
                    w.flush_hole(w.next - 1, report)?;
                    let s = &sa.segment;
                    if s.first < w.next {
                        report.gap(
                            tenant,
                            stream,
                            s.first,
                            format!(
                                "stored records {}–{} overlap records already accounted for",
                                s.first, s.last
                            ),
                        );
                        continue;
                    }
                    if s.first > w.next {
                        missing(tenant, stream, w.next, s.first - 1, report);
                        w.tree_ok = false;
                        w.resync = true;
                        w.next = s.first;
                    }
                    let mut err = None;
                    let mut rows = 0u64;
                    reader.scan(sa.partition, s.first, s.last, &mut |r| {
                        if err.is_some() {
                            return;
                        }
                        rows += 1;
                        if r.seq != w.next {
                            missing(tenant, stream, w.next, r.seq - 1, report);
                            w.tree_ok = false;
                            w.resync = true;
                        }
                        w.next = r.seq + 1;
                        w.last_received = r.received_us;
                        report.records_checked += 1;
                        if report.records_checked.is_multiple_of(65_536) {
                            tick(65_536);
                        }
                        let leaf = match r.leaf(tenant, stream) {
                            Ok(l) => l,
                            Err(e) => {
                                report.gap(tenant, stream, r.seq, format!("damaged row: {e}"));
                                w.tree_ok = false;
                                w.resync = true;
                                return;
                            }
                        };
                        let stored_prev: Hash = r.prev.as_slice().try_into().expect("checked by leaf()");
                        let Some(mac) = &mac else {
                            if err.is_none() {
                                err = Some(());
                                report.gap(tenant, stream, r.seq, "the tenant has no key: no record can be checked");
                            }
                            return;
                        };
                        if mac.mac(&leaf).as_slice() != r.mac.as_slice() {
                            report.gap(
                                tenant,
                                stream,
                                r.seq,
                                "record does not match its MAC: edited, swapped or forged",
                            );
                            w.tree_ok = false;
                            w.resync = true;
                            return;
                        }
                        // The record is authentic; does it follow the one before?
                        if !w.resync && stored_prev != w.prev {
                            report.gap(tenant, stream, r.seq, "does not link to the record before it");
                        }
                        w.resync = false;
                        w.prev = chain(&stored_prev, &leaf);
                        if w.tree_ok {
                            w.tree.push_leaf(leaf, &mut |_, _, _| {});
                            w.check_cps(report);
                        }
                        let action = match r.state {
                            DELETED => Some(Action::Delete),
                            ANONYMIZED => Some(Action::Anonymize),
                            _ => None,
                        };
                        if let Some(action) = action {
                            if action == Action::Delete {
                                report.tombstones += 1;
                            } else {
                                report.anonymized += 1;
                            }
                            if let Some(why) = Self::unexplained_redaction(
                                ev, ce, tenant, stream, r.seq, &r.scope, r.class, r.ts_us, action,
                            ) {
                                report.gap(tenant, stream, r.seq, why);
                            }
                        }
                    })?;
                    *visited.entry(sa.partition).or_default() += rows;
                    if w.next <= s.last {
                        missing(tenant, stream, w.next, s.last, report);
                        w.tree_ok = false;
                        w.resync = true;
                        w.next = s.last + 1;
                    }
                }
            }
        }
        w.flush_hole(w.next - 1, report)?;
        let walked = w.next - 1;
        // The chain's end: the catalog head, the checkpoints, the seal.
        if head_size > walked {
            missing(tenant, stream, walked + 1, head_size, report);
        }
        if let Some(h) = head {
            if h.size == walked && h.hash != w.prev && w.tree_ok {
                report.gap(
                    tenant,
                    stream,
                    walked,
                    "the catalog's chain head does not match the records",
                );
            }
        }
        let sealed = ce.checkpoints.last().map_or(0, |c| c.0);
        for &(size, _, at) in ce.checkpoints.iter().filter(|c| c.0 > walked) {
            report.gap(
                tenant,
                stream,
                walked + 1,
                format!("checkpoint (ledger {at}) covers {size} records but the chain ends at {walked}: records were truncated"),
            );
        }
        if walked > sealed {
            // Young unsealed records are an ingest in progress; old ones mean
            // a run died before sealing — or the ledger's tail was removed.
            let grace = self
                .config
                .integrity
                .checkpoint_interval
                .micros()
                .unwrap_or(3_600_000_000)
                .saturating_mul(2);
            if now_us.saturating_sub(w.last_received) <= grace {
                report.unsealed_recent += walked - sealed;
            } else {
                report.gap(
                    tenant,
                    stream,
                    sealed + 1,
                    format!(
                        "records {}–{walked} are not under any signed checkpoint (an ingest died before sealing — the next ingest or cleanup seals them — or the ledger's tail was removed)",
                        sealed + 1
                    ),
                );
            }
        }
        // Rows no append put there.
        let spans: HashMap<i64, Vec<(u64, u64)>> = segments.iter().fold(HashMap::new(), |mut m, s| {
            m.entry(s.partition)
                .or_default()
                .push((s.segment.first, s.segment.last));
            m
        });
        let mut newer: Vec<(i64, u64, bool)> = Vec::new();
        for (part, in_flight) in self.store.partitions(tenant, stream)? {
            if reader.row_count(part)? > visited.get(&part).copied().unwrap_or(0) {
                let spans = spans.get(&part).cloned().unwrap_or_default();
                for seq in reader.strays(part, &spans)? {
                    if seq <= head_size {
                        report.gap(tenant, stream, seq, "row is not part of the chain (inserted)");
                    } else {
                        newer.push((part, seq, in_flight));
                    }
                }
            }
        }
        // Rows past the head read at the start: appended since (committed
        // now, so in the segments), or a batch in flight (its partition
        // marked as being written). Anything else was put there by hand.
        if !newer.is_empty() {
            let fresh = self.store.segments(tenant, stream)?;
            for (part, seq, in_flight) in newer {
                let committed = fresh
                    .iter()
                    .any(|s| s.partition == part && s.segment.first <= seq && seq <= s.segment.last);
                if !committed && !in_flight {
                    report.gap(tenant, stream, seq, "row is not part of the chain (inserted)");
                }
            }
        }
        tick(report.records_checked % 65_536);
        Ok(())
    }
}

fn missing(tenant: &str, stream: &str, from: u64, to: u64, report: &mut VerifyReport) {
    if from > to {
        return;
    }
    let what = if from == to {
        format!("record {from} is missing: no row and no receipt")
    } else {
        format!("records {from}–{to} are missing: no rows and no receipt")
    };
    report.gap(tenant, stream, from, what);
}

/// The state of a walk along one chain.
struct Walk<'a> {
    tenant: &'a str,
    stream: &'a str,
    store: &'a dyn lethe_store::Store,
    /// Chain hash after the last record accounted for.
    prev: Hash,
    /// Next sequence number expected.
    next: u64,
    /// The Merkle tree rebuilt so far.
    tree: Frontier,
    /// Whether the tree can still be rebuilt (no leaf lost to damage).
    tree_ok: bool,
    /// After a problem: take the next record's link as given (one problem,
    /// one report — not a cascade).
    resync: bool,
    /// First sequence number of the removed range being crossed.
    hole_from: Option<u64>,
    /// Checkpoints (size, root, ledger seq), by size; `cp` is the next one.
    cps: &'a [(u64, Hash, u64)],
    cp: usize,
    /// Received time of the last stored record walked (µs).
    last_received: i64,
}

impl Walk<'_> {
    /// Compares the tree head with every checkpoint at the current size.
    fn check_cps(&mut self, report: &mut VerifyReport) {
        while let Some(&(size, root, at)) = self.cps.get(self.cp) {
            if size > self.tree.size() {
                break;
            }
            self.cp += 1;
            if size < self.tree.size() || !self.tree_ok {
                report.checkpoints_unverifiable += 1;
            } else if self.tree.root() == root {
                report.checkpoints_checked += 1;
            } else {
                report.gap(
                    self.tenant,
                    self.stream,
                    size,
                    format!(
                        "checkpoint (ledger {at}): the tree head over records 1–{size} does not match the signed one"
                    ),
                );
            }
        }
    }

    /// Crosses the removed range from `hole_from` to `to`: its Merkle heads
    /// come from the store.
    fn flush_hole(&mut self, to: u64, report: &mut VerifyReport) -> Result<()> {
        let Some(from) = self.hole_from.take() else {
            return Ok(());
        };
        for (level, idx) in perfect_cover(from - 1, to) {
            if !self.tree_ok {
                break;
            }
            match stored_node(self.store, self.tenant, self.stream, level, idx)? {
                Some(h) => {
                    self.tree.push(level, h, &mut |_, _, _| {});
                    self.check_cps(report);
                }
                None => {
                    self.tree_ok = false;
                    report.gap(
                        self.tenant,
                        self.stream,
                        (idx << level) + 1,
                        format!("Merkle heads over removed records {from}–{to} are missing from the store"),
                    );
                }
            }
        }
        Ok(())
    }
}

/// A Merkle subtree head from the store: kept as is, or composed from kept
/// heads and rebuilt leaves below it. `None` when it cannot be had.
pub(crate) fn stored_node(
    store: &dyn lethe_store::Store,
    tenant: &str,
    stream: &str,
    level: u32,
    idx: u64,
) -> Result<Option<Hash>> {
    if let Some(h) = store.merkle_node(tenant, stream, level, idx)? {
        return Ok(Some(h));
    }
    if level <= 8 {
        // Small enough to rebuild from leaves, where the rows still exist.
        let lo = idx << level;
        let leaves = store.leaves(tenant, stream, lo + 1, lo + (1u64 << level))?;
        if let Some(ls) = leaves.into_iter().collect::<Option<Vec<Hash>>>() {
            return Ok(Some(lethe_core::merkle::root(&ls)));
        }
    }
    if level == 0 {
        return Ok(None);
    }
    let (Some(l), Some(r)) = (
        stored_node(store, tenant, stream, level - 1, 2 * idx)?,
        stored_node(store, tenant, stream, level - 1, 2 * idx + 1)?,
    ) else {
        return Ok(None);
    };
    Ok(Some(node_hash(&l, &r)))
}
