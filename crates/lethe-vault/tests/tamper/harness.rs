//! The tamper suite's harness: what a backend must let the suite do to its
//! stored bytes behind the vault's back, and the acts built from that.

use lethe_store::row::RawRow;
use lethe_vault::Vault;

use crate::common::{located, now, Located};

/// A run of at least 16 consecutive live records of one chain, stored in
/// one partition.
#[derive(Debug, Clone)]
pub struct Run {
    pub tenant: String,
    pub stream: String,
    /// The partition's id in the store's catalog.
    pub part: i64,
    pub first: u64,
    pub last: u64,
}

/// What to do to a data key's row.
pub enum KeyEdit {
    /// Remove the row.
    Delete,
    /// Mark it destroyed (no wrapped key), as a purge would but without one.
    Destroy,
    /// Replace the wrapped key's bytes.
    Wrapped(Vec<u8>),
}

/// One swept store on one backend, and write access to its storage.
///
/// # Contract
///
/// A target is made holding a store swept at [`now`] that verifies clean,
/// with records deleted and anonymized. Every method below changes or reads
/// the stored bytes as someone with write access to the backend's storage
/// would — the SQLite files, or SQL on the PostgreSQL tables (as a
/// superuser where the ledger's append-only trigger is in the way) — never
/// through the vault, and commits before returning. `gaps` opens the vault
/// afresh, so nothing it cached can hide an act.
pub trait TamperTarget {
    /// The vault, opened afresh on the tampered store, with the suite's
    /// policy and `extra` configuration after it.
    fn open_with(&self, extra: &str) -> Vault;
    /// A run of live records of `stream`, in the newest partition that has one.
    fn live_run(&self, stream: &str) -> Run;
    /// The run (segment) that ends at the head of the longest chain of `stream`.
    fn head_run(&self, stream: &str) -> Run;
    /// The stored row at `seq` of `run`'s chain in its partition.
    fn read_record(&self, run: &Run, seq: u64) -> Option<RawRow>;
    /// Stores `row` at `row.seq` in `run`'s partition, replacing what is there.
    fn put_record(&self, run: &Run, row: &RawRow);
    /// Removes the rows `from..=to` of `run`'s chain in its partition.
    fn remove_records(&self, run: &Run, from: u64, to: u64) -> u64;
    /// Rewrites a chain's head (and the segment that ended at `old`) to
    /// end at `seq` with chain hash `hash` — what a careful forger does to
    /// hide a truncation.
    fn set_chain_head(&self, run: &Run, old: u64, seq: u64, hash: &[u8]);
    /// The first ledger entry of `kind`: (seq, body).
    fn ledger_entry(&self, kind: &str) -> (u64, String);
    /// Replaces a ledger entry's body (`Some`) or deletes the entry (`None`).
    fn edit_ledger(&self, seq: u64, body: Option<&str>);
    /// A data key's wrapped bytes (`None`: destroyed).
    fn wrapped_key(&self, id: i64) -> Option<Vec<u8>>;
    /// Changes a data key's row.
    fn edit_key(&self, id: i64, edit: KeyEdit);
    /// Replaces partition `part`'s subject filter with `bits` stored at
    /// `version`; returns whether the partition had one.
    fn put_subject_filter(&self, part: i64, bits: &[u8], version: i64) -> bool;
    /// Flips the first byte of every stored Merkle node (the heads that
    /// bridge removed ranges); returns how many there were.
    fn flip_merkle_nodes(&self) -> u64;
}

/// Acts and checks built on a [`TamperTarget`]'s primitives.
pub trait TamperExt: TamperTarget {
    /// The vault under the suite's policy.
    fn open(&self) -> Vault {
        self.open_with("")
    }

    /// Verify's unexplained gaps on the store as it now is.
    fn gaps(&self) -> Vec<Located> {
        located(self.open().verify(None, None, now(), &|_| {}).unwrap())
    }

    /// The live row at `seq`, which the act needs.
    fn record(&self, run: &Run, seq: u64) -> RawRow {
        self.read_record(run, seq)
            .unwrap_or_else(|| panic!("no row at {seq} of {run:?}"))
    }

    /// Changes one row in place.
    fn edit_record(&self, run: &Run, seq: u64, edit: impl FnOnce(&mut RawRow)) {
        let mut row = self.record(run, seq);
        edit(&mut row);
        self.put_record(run, &row);
    }

    /// Swaps two whole rows' places in the chain.
    fn swap_records(&self, run: &Run, a: u64, b: u64) {
        let (mut ra, mut rb) = (self.record(run, a), self.record(run, b));
        assert_eq!(self.remove_records(run, a, a) + self.remove_records(run, b, b), 2);
        (ra.seq, rb.seq) = (b, a);
        self.put_record(run, &ra);
        self.put_record(run, &rb);
    }

    /// Turns a live record into a tombstone the way a sweep would (the
    /// digests are public computations): its MAC still checks, so only the
    /// missing authorisation can give it away.
    fn forge_tombstone(&self, run: &Run, seq: u64) {
        self.edit_record(run, seq, |r| {
            let d = r.digests().unwrap();
            r.plain.clear();
            r.body = None;
            r.pseudonym = None;
            r.key_id = None;
            r.state = lethe_store::row::DELETED;
            r.redacted = Some([d.plain, d.personal].concat());
        });
    }

    /// The data keys the records of a live run use, with the records
    /// under each: (key id, seqs), most used first; at least two.
    fn keys_of(&self, run: &Run) -> Vec<(i64, Vec<u64>)> {
        let mut by: std::collections::BTreeMap<i64, Vec<u64>> = Default::default();
        for seq in run.first..=run.last {
            if let Some(k) = self.record(run, seq).key_id {
                by.entry(k).or_default().push(seq);
            }
        }
        let mut out: Vec<(i64, Vec<u64>)> = by.into_iter().collect();
        out.sort_by_key(|(_, seqs)| std::cmp::Reverse(seqs.len()));
        assert!(out.len() >= 2, "two keys in one run: {run:?}");
        out
    }

    /// Asserts verify names exactly `seqs` of `run`'s chain, each with a
    /// problem that mentions `what`.
    fn assert_caught(&self, run: &Run, seqs: &[u64], what: &str) {
        let got = self.gaps();
        let mut at: Vec<(String, String, u64)> = got.iter().map(|g| (g.0.clone(), g.1.clone(), g.2)).collect();
        at.sort();
        at.dedup();
        let mut want: Vec<(String, String, u64)> = seqs
            .iter()
            .map(|s| (run.tenant.clone(), run.stream.clone(), *s))
            .collect();
        want.sort();
        assert_eq!(at, want, "{got:#?}");
        for g in &got {
            assert!(g.3.contains(what), "`{}` should mention `{what}`", g.3);
        }
    }

    /// Asserts verify names ledger entry `seq` with a problem naming `what`.
    fn assert_ledger_gap(&self, seq: u64, what: &str) {
        let got = self.gaps();
        assert!(
            got.iter()
                .any(|g| g.1 == "(ledger)" && g.2 == seq && g.3.contains(what)),
            "{got:#?}"
        );
    }
}

impl<T: TamperTarget + ?Sized> TamperExt for T {}
