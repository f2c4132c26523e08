//! Ledger anchors: what trimmed ledger entries leave for verification, signed; and ledger retention.

use std::collections::BTreeMap;

use lethe_core::hold::HoldScope;
use lethe_core::ledger::check_entry;
use lethe_core::merkle::Hash;
use lethe_core::policy::{Action, RetentionSnapshot};
use lethe_store::{KeyId, Segment};
use serde::Serialize;

use crate::hold::LedgerHold;
use crate::seal::CheckpointBody;
use crate::{Result, Vault};

use super::*;

/// Policy version of the authorisation an anchor carries: its removals were
/// verified before the entries that recorded them were trimmed.
pub(super) const ANCHORED: i64 = i64::MIN;

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
    /// Data keys whose creation the trimmed entries recorded, by tenant:
    /// `verify` still holds the key table to them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, Vec<KeyId>>,
    /// Data keys the trimmed entries' receipted purges destroyed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destroyed_keys: Vec<KeyId>,
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
    /// Keyed check of a subject hold's pseudonym, from its `hold.set`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_check: Option<String>,
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

impl Vault {
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
    pub(super) fn anchor_evidence(
        &self,
        at: u64,
        a: &Anchor,
        public: &[u8; 32],
        ev: &mut Evidence,
        report: &mut VerifyReport,
    ) {
        ev.holds.extend(a.holds.iter().map(|h| LedgerHold {
            id: h.id,
            set: h.set,
            released: None,
            expires_us: h.expires_us,
            scope: h.scope.clone(),
            subject_check: h.subject_check.clone(),
        }));
        for (tenant, ids) in &a.keys {
            let owner: std::sync::Arc<str> = tenant.as_str().into();
            for id in ids {
                ev.keys.insert(*id, (owner.clone(), at));
            }
        }
        for id in &a.destroyed_keys {
            ev.destroyed.insert(*id, at);
        }
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
            written_us: i64::MAX,
            keys: Vec::new(),
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
                    subject_check: h.subject_check.clone(),
                })
                .collect(),
            keys: ev.keys.iter().fold(BTreeMap::new(), |mut m, (id, (tenant, _))| {
                let ids: &mut Vec<KeyId> = m.entry(tenant.to_string()).or_default();
                if let Err(at) = ids.binary_search(id) {
                    ids.insert(at, *id);
                }
                m
            }),
            destroyed_keys: {
                let mut d: Vec<KeyId> = ev.destroyed.keys().copied().collect();
                d.sort_unstable();
                d
            },
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
}
