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

mod anchor;
mod catalog;
mod chain;
mod evidence;

use anchor::ANCHORED;
pub use anchor::{Anchor, AnchorBody, AnchorChain, AnchorHold};
pub(crate) use chain::stored_node;
use evidence::*;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use lethe_core::TenantId;
use serde::Serialize;

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
    pub(crate) fn gap(&mut self, tenant: &str, stream: &str, seq: u64, problem: impl Into<String>) {
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
        self.verify_against(tenant, stream, now_us, &[], progress)
    }

    /// [`Vault::verify`], and the vault held to the newest of the heads a
    /// witness published (`witness`, see [`crate::witness`]): a ledger that
    /// lacks or differs at that entry, or a chain shorter than a witnessed
    /// checkpoint, was rolled back.
    pub fn verify_against(
        &self,
        tenant: Option<&TenantId>,
        stream: Option<&str>,
        now_us: i64,
        witness: &[crate::witness::HeadStatement],
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            public_key: self.public_key(),
            ..Default::default()
        };
        // No sweep, purge or restoration runs meanwhile: their intents and
        // receipts would be seen half-written. (Ingest may: it only adds.)
        let _jobs = self.store.lock_jobs()?;
        // The chain heads first: records appended while verify runs (past
        // these heads) are left for the next verify, and everything up to
        // them was committed — and sealed, if it was — before the ledger is read.
        let heads: HashMap<(String, String), lethe_store::ChainHead> = self
            .store
            .chains()?
            .into_iter()
            .map(|h| ((h.tenant.clone(), h.stream.clone()), h))
            .collect();
        // The key table before the ledger, for the same reason.
        let t0 = std::time::Instant::now();
        let table = self.read_key_table(tenant)?;
        let mut ev = self.ledger_evidence(&mut report, u64::MAX)?;
        let t1 = std::time::Instant::now();
        if !witness.is_empty() {
            // Witnessed checkpoints are recomputed like the ledger's (ledger
            // position 0 marks them); one beyond a chain's end is a rollback.
            for (c, _) in self.check_witness(witness, &mut report)? {
                let ce = ev.chains.entry((c.tenant, c.stream)).or_default();
                ce.checkpoints.push((c.size, c.root, 0));
                ce.checkpoints.sort_by_key(|c| c.0);
            }
        }
        let keys = self.check_keys(tenant, table, &ev, &mut report)?;
        self.check_holds(tenant, &ev, now_us, &mut report)?;
        tracing::debug!(
            ledger_ms = (t1 - t0).as_millis() as u64,
            keys_ms = t1.elapsed().as_millis() as u64,
            "verify: ledger and catalog checked"
        );
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
        // read-only connections, takes the next chain. They are taken
        // stream by stream: a stream's chains have rows in the same files
        // (one per day), which a worker's reader then keeps open from one
        // chain to the next — taken in name order, every other chain is of
        // another stream, and a year of both streams' files is more than a
        // reader keeps.
        let mut order: Vec<usize> = (0..work.len()).collect();
        order.sort_by_key(|&i| {
            let ((tenant, stream), _) = &work[i];
            (stream, tenant)
        });
        let order = &order;
        let next = AtomicUsize::new(0);
        let checked = AtomicU64::new(0);
        let tick = |n: u64| progress(checked.fetch_add(n, Ordering::Relaxed) + n);
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(work.len())
            .max(1);
        let (ev, work, heads, keys) = (&ev, &work, &heads, &keys);
        let results: Vec<Result<Vec<(usize, VerifyReport)>>> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    sc.spawn(|| -> Result<Vec<(usize, VerifyReport)>> {
                        let mut reader = self.store.row_reader()?;
                        let mut out = Vec::new();
                        while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                            let ((t, s), ce) = &work[i];
                            let mut r = VerifyReport::default();
                            let head = heads.get(&(t.clone(), s.clone()));
                            self.verify_chain(t, s, head, ce, ev, keys, now_us, &mut r, &mut *reader, &tick)?;
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
}

impl Vault {
    /// Verifies the store (one tenant's chains, or all) at `now_us` and
    /// enters the outcome in the ledger as `verify.result` on `actor`'s
    /// authority: a verification is evidence too. Returns the report and
    /// the entry's sequence number (or why it could not be written).
    pub fn verify_recorded(
        &self,
        actor: &str,
        tenant: Option<&lethe_core::TenantId>,
        now_us: i64,
        clock: &dyn Fn() -> i64,
    ) -> Result<(VerifyReport, Result<u64>)> {
        let mut r = self.verify(tenant, None, now_us, &|_| {})?;
        if let Some(t) = tenant {
            // Ledger problems of other tenants are theirs to see; the total
            // still counts them, so a problem elsewhere is not hidden.
            r.unexplained_gaps
                .retain(|g| g.tenant.is_empty() || g.tenant == t.as_str());
        }
        let body = serde_json::json!({
            "ok": r.ok(),
            "tenant": tenant.map(|t| t.to_string()),
            "records_checked": r.records_checked,
            "removed_explained": r.removed_explained,
            "chains": r.chains,
            "checkpoints_checked": r.checkpoints_checked,
            "ledger_entries": r.ledger_entries,
            "gaps_total": r.gaps_total,
            "gaps": r.unexplained_gaps.iter().take(100).collect::<Vec<_>>(),
        });
        let seq = self
            .record(clock(), actor, "verify.result", tenant.map(|t| t.as_str()), &body)
            .map(|e| e.seq);
        Ok((r, seq))
    }
}
