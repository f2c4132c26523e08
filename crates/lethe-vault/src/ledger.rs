//! The vault's side of the ledger: recording administrative acts, reading
//! them back, receipts, and verifying the whole chain.

use lethe_core::ledger::{Break, Draft, Entry, Verifier};
use serde::Serialize;

use crate::{Result, Vault, VaultError};

/// Entries read per store round trip when streaming the ledger.
const PAGE: usize = 10_000;

/// The outcome of `lethe ledger --verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerCheck {
    /// Entries that verified.
    pub entries: u64,
    /// Hash of the last verified entry (hex).
    pub head: String,
    /// Where the ledger stops verifying, if it does.
    pub problem: Option<Break>,
}

impl Vault {
    /// Appends an administrative act to the ledger.
    pub fn record(
        &self,
        now_us: i64,
        actor: &str,
        kind: &str,
        tenant: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<Entry> {
        let d = draft(
            now_us,
            actor,
            kind,
            tenant,
            serde_json::to_string(body).expect("JSON values serialize"),
        );
        Ok(self
            .store
            .append_ledger(&mut |seq, prev| d.seal(&self.ledger_key, seq, prev))?)
    }

    /// Appends an intent and sets the catalog mark `mark` to it in one
    /// transaction: a crash leaves both or neither, so every intent that
    /// may have been acted on is found and finished by recovery.
    pub(crate) fn record_intent(
        &self,
        now_us: i64,
        actor: &str,
        kind: &str,
        tenant: Option<&str>,
        body: String,
        mark: &str,
    ) -> Result<Entry> {
        let d = draft(now_us, actor, kind, tenant, body);
        Ok(self
            .store
            .append_ledger_marked(&mut |seq, prev| d.seal(&self.ledger_key, seq, prev), mark)?)
    }

    /// Ledger entries from `from` (sequence number), at most `limit`.
    pub fn ledger(&self, from: u64, limit: usize) -> Result<Vec<Entry>> {
        Ok(self.store.ledger(from.max(1), limit)?)
    }

    /// Visits ledger entries from sequence number `from` on, in order, a
    /// page at a time (memory independent of the ledger's length); `visit`
    /// returns `false` to stop.
    pub fn each_entry(&self, from: u64, visit: &mut dyn FnMut(Entry) -> Result<bool>) -> Result<()> {
        let mut from = from.max(1);
        loop {
            let page = self.store.ledger(from, PAGE)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            from = last.seq + 1;
            for e in page {
                if !visit(e)? {
                    return Ok(());
                }
            }
        }
    }

    /// The intent a crash left pending (its ledger sequence number is kept
    /// in the catalog under `mark`), with the receipt that already names it
    /// if the crash came after the receipt. `None` when nothing is pending.
    pub(crate) fn pending_intent(
        &self,
        mark: &str,
        kind: &str,
        receipt_kind: &str,
    ) -> Result<Option<(Entry, Option<u64>)>> {
        let Some(seq) = self.store.meta(mark)? else {
            return Ok(None);
        };
        let seq: u64 = seq
            .parse()
            .map_err(|_| VaultError::Invalid(format!("bad pending {kind} `{seq}`")))?;
        let Some(entry) = self.entry_at(seq)?.filter(|e| e.kind == kind) else {
            return Err(VaultError::Invalid(format!(
                "pending {kind} {seq} is not in the ledger"
            )));
        };
        let mut receipt = None;
        self.each_entry(seq + 1, &mut |e| {
            if e.kind == receipt_kind && crate::sweep::receipt_intents(&e).contains(&seq) {
                receipt = Some(e.seq);
            }
            Ok(receipt.is_none())
        })?;
        Ok(Some((entry, receipt)))
    }

    /// Receipts (ledger entries of kind `receipt.*`), oldest first, found
    /// through the store's index by kind (no scan of the whole ledger).
    pub fn receipts(&self) -> Result<Vec<Entry>> {
        Ok(self.store.ledger_of_kinds(RECEIPT_KINDS)?)
    }

    /// Ledger entries of the given kinds, oldest first, found through the
    /// store's index by kind (no scan of the whole ledger).
    pub fn entries_of_kinds(&self, kinds: &[&str]) -> Result<Vec<Entry>> {
        Ok(self.store.ledger_of_kinds(kinds)?)
    }

    /// One receipt by id (its ledger sequence number), read directly.
    pub fn receipt(&self, id: u64) -> Result<Option<Entry>> {
        Ok(self.entry_at(id)?.filter(|e| e.kind.starts_with("receipt.")))
    }

    /// The entry at sequence number `seq`, read directly (none if trimmed
    /// or not written yet).
    pub(crate) fn entry_at(&self, seq: u64) -> Result<Option<Entry>> {
        Ok(self.store.ledger(seq, 1)?.into_iter().find(|e| e.seq == seq))
    }

    /// Verifies every entry's hash, link and MAC, streaming — from the
    /// start, or, when ledger retention trimmed it, from the signed anchor.
    pub fn verify_ledger(&self) -> Result<LedgerCheck> {
        let mut v = Verifier::new(&self.ledger_key);
        let first = self.store.ledger(1, 1)?.first().map_or(1, |e| e.seq);
        if first > 1 {
            let mut scratch = crate::verify::VerifyReport::default();
            match self.anchor(&mut scratch)? {
                Some((_, a)) if a.through + 1 == first => {
                    v = Verifier::resume(&self.ledger_key, a.through, a.through_hash)
                }
                _ => {
                    return Ok(LedgerCheck {
                        entries: 0,
                        head: lethe_core::merkle::to_hex(&[0; 32]),
                        problem: Some(Break {
                            seq: 1,
                            problem: format!(
                                "entries 1–{} are missing and no valid anchor accounts for them",
                                first - 1
                            ),
                        }),
                    })
                }
            }
        }
        let mut problem = None;
        self.each_entry(first, &mut |e| match v.push(&e) {
            Ok(()) => Ok(true),
            Err(b) => {
                problem = Some(b);
                Ok(false)
            }
        })?;
        let (entries, head) = v.head();
        Ok(LedgerCheck {
            entries,
            head: lethe_core::merkle::to_hex(&head),
            problem,
        })
    }
}

/// Every kind of receipt the vault writes.
pub const RECEIPT_KINDS: &[&str] = &["receipt.sweep", "receipt.purge", "receipt.archive_expiry"];

/// An entry to seal. Bodies are JSON text: large ones (intents listing
/// millions of ranges) serialize straight to text, never through a `Value`.
fn draft(now_us: i64, actor: &str, kind: &str, tenant: Option<&str>, mut body: String) -> Draft {
    // A serializer's buffer grows by doubling: a 24 MB intent held 32 MB
    // (and the draft lives while the entry is sealed, copied and stored).
    if body.capacity() - body.len() > 1 << 16 {
        body.shrink_to_fit();
    }
    Draft {
        ts_us: now_us,
        actor: actor.into(),
        kind: kind.into(),
        tenant: tenant.map(String::from),
        body,
    }
}
