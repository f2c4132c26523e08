//! The ledger: an append-only, hash-chained, HMAC-signed log of every
//! administrative act (policy changes applied, sweeps and their receipts, key
//! creation). Each entry commits to the one before it:
//!
//! ```text
//! hash_i = SHA-256(0x03 ‖ seq ‖ ts ‖ actor ‖ kind ‖ tenant ‖ body ‖ hash_{i-1})   hash_0 = 32 zero bytes
//! mac_i  = HMAC-SHA256(K_ledger, hash_i)
//! ```
//!
//! where every variable-length field is length-prefixed. `K_ledger` is
//! derived from the master key, so an attacker with database access but not
//! the key can neither edit an entry nor forge one without `verify` saying
//! which.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::crypto::SecretKey;
use crate::merkle::Hash;

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Position, from 1.
    pub seq: u64,
    /// When (µs since the epoch).
    pub ts_us: i64,
    /// Who: `cli:<user>`, `system/scheduler`, …
    pub actor: String,
    /// What: `policy.applied`, `receipt.sweep`, `key.tenant_created`, …
    pub kind: String,
    /// The tenant it concerns, if one.
    pub tenant: Option<String>,
    /// Details, canonical JSON.
    pub body: String,
    /// Hash of the previous entry.
    #[serde(serialize_with = "hex_hash")]
    pub prev: Hash,
    /// This entry's hash.
    #[serde(serialize_with = "hex_hash")]
    pub hash: Hash,
    /// HMAC of the hash under the ledger key.
    #[serde(serialize_with = "hex_hash")]
    pub mac: Hash,
}

fn hex_hash<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::merkle::to_hex(h))
}

fn put(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u32).to_be_bytes());
    h.update(b);
}

/// The hash an entry with these contents must have.
pub fn entry_hash(
    seq: u64,
    ts_us: i64,
    actor: &str,
    kind: &str,
    tenant: Option<&str>,
    body: &str,
    prev: &Hash,
) -> Hash {
    let mut h = Sha256::new();
    h.update([3u8]);
    h.update(seq.to_be_bytes());
    h.update(ts_us.to_be_bytes());
    put(&mut h, actor.as_bytes());
    put(&mut h, kind.as_bytes());
    match tenant {
        Some(t) => {
            h.update([1]);
            put(&mut h, t.as_bytes());
        }
        None => h.update([0]),
    }
    put(&mut h, body.as_bytes());
    h.update(prev);
    h.finalize().into()
}

fn mac(key: &SecretKey, hash: &Hash) -> Hash {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).expect("any key length");
    m.update(hash);
    m.finalize().into_bytes().into()
}

/// What an entry says, before it is placed in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// When (µs).
    pub ts_us: i64,
    /// Who.
    pub actor: String,
    /// What kind of act.
    pub kind: String,
    /// The tenant it concerns.
    pub tenant: Option<String>,
    /// Details, canonical JSON.
    pub body: String,
}

impl Draft {
    /// The entry recording data keys stored for one tenant
    /// (`key.data_created`, listing their ids): written in the commit that
    /// stores the keys, so a key never exists without the entry that lets
    /// `verify` notice it disappearing.
    pub fn keys_created(ts_us: i64, actor: &str, tenant: &str, ids: &[i64]) -> Draft {
        Draft {
            ts_us,
            actor: actor.into(),
            kind: "key.data_created".into(),
            tenant: Some(tenant.into()),
            body: serde_json::json!({"count": ids.len(), "ids": ids}).to_string(),
        }
    }

    /// Places the draft after `(prev_seq, prev)` and signs it.
    pub fn seal(&self, key: &SecretKey, prev_seq: u64, prev: Hash) -> Entry {
        let seq = prev_seq + 1;
        let hash = entry_hash(
            seq,
            self.ts_us,
            &self.actor,
            &self.kind,
            self.tenant.as_deref(),
            &self.body,
            &prev,
        );
        Entry {
            seq,
            ts_us: self.ts_us,
            actor: self.actor.clone(),
            kind: self.kind.clone(),
            tenant: self.tenant.clone(),
            body: self.body.clone(),
            prev,
            hash,
            mac: mac(key, &hash),
        }
    }
}

/// Where the ledger stops verifying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("ledger entry {seq}: {problem}")]
pub struct Break {
    /// The entry (or the one that was expected there).
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

/// Checks a ledger entry by entry from its start, so that a ledger of any
/// length verifies in constant memory.
pub struct Verifier<'k> {
    key: &'k SecretKey,
    prev: Hash,
    n: u64,
}

impl<'k> Verifier<'k> {
    /// A verifier at the start of the ledger.
    pub fn new(key: &'k SecretKey) -> Self {
        Verifier {
            key,
            prev: [0u8; 32],
            n: 0,
        }
    }

    /// A verifier that starts after entry `seq` with hash `hash` — the
    /// first kept entry of a ledger trimmed behind an anchor.
    pub fn resume(key: &'k SecretKey, seq: u64, hash: Hash) -> Self {
        Verifier {
            key,
            prev: hash,
            n: seq,
        }
    }

    /// Everything wrong with `e` as the next entry: a gap before it, a
    /// broken link (when there is no gap), a hash or MAC that does not match.
    /// The second value is whether the entry itself is authentic (its
    /// hash and MAC check), so its contents can be trusted.
    fn examine(&self, e: &Entry) -> (Vec<Break>, bool) {
        let mut problems = Vec::new();
        let expected = self.n + 1;
        if e.seq != expected {
            problems.push(Break {
                seq: expected,
                problem: format!("missing (next entry found is {})", e.seq),
            });
        } else if e.prev != self.prev {
            problems.push(Break {
                seq: e.seq,
                problem: "does not link to the entry before it".into(),
            });
        }
        let authentic = match check_entry(self.key, e) {
            Ok(()) => true,
            Err(p) => {
                problems.push(Break {
                    seq: e.seq,
                    problem: p.into(),
                });
                false
            }
        };
        (problems, authentic)
    }

    /// Checks the next entry; stops (does not advance) at the first problem.
    pub fn push(&mut self, e: &Entry) -> Result<(), Break> {
        let (problems, _) = self.examine(e);
        if let Some(b) = problems.into_iter().next() {
            return Err(b);
        }
        self.prev = e.hash;
        self.n = e.seq;
        Ok(())
    }

    /// Checks the next entry and moves past it whatever it finds, so that a
    /// caller can report every problem in one pass: returns them, and
    /// whether the entry is authentic.
    pub fn step(&mut self, e: &Entry) -> (Vec<Break>, bool) {
        let found = self.examine(e);
        self.prev = e.hash;
        self.n = e.seq;
        found
    }

    /// Entries checked so far and the hash of the last one.
    pub fn head(&self) -> (u64, Hash) {
        (self.n, self.prev)
    }
}

/// Whether an entry is one the ledger key signed: its hash recomputes from
/// its contents and its MAC matches. Says what is wrong otherwise.
pub fn check_entry(key: &SecretKey, e: &Entry) -> Result<(), &'static str> {
    let h = entry_hash(e.seq, e.ts_us, &e.actor, &e.kind, e.tenant.as_deref(), &e.body, &e.prev);
    if h != e.hash {
        return Err("contents do not match its hash (edited)");
    }
    if mac(key, &h) != e.mac {
        return Err("signature (MAC) does not match (forged)");
    }
    Ok(())
}

/// Verifies entries in order from the start of the ledger; returns the
/// number checked and the head hash.
pub fn verify<'a>(key: &SecretKey, entries: impl IntoIterator<Item = &'a Entry>) -> Result<(u64, Hash), Break> {
    let mut v = Verifier::new(key);
    for e in entries {
        v.push(e)?;
    }
    Ok(v.head())
}

/// The ledger MAC key, derived from the master key.
pub fn ledger_key(master: &SecretKey) -> SecretKey {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(b"lethe/v1"), master.expose());
    let mut out = [0u8; 32];
    hk.expand(b"ledger-mac", &mut out)
        .expect("32 bytes is a valid HKDF length");
    SecretKey::from_bytes(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(key: &SecretKey, n: u64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let (ps, ph) = out.last().map(|e| (e.seq, e.hash)).unwrap_or((0, [0; 32]));
            let d = Draft {
                ts_us: 1000 + i as i64,
                actor: "cli:ops".into(),
                kind: "receipt.sweep".into(),
                tenant: Some("acme".into()),
                body: format!("{{\"n\":{i}}}"),
            };
            out.push(d.seal(key, ps, ph));
        }
        out
    }

    #[test]
    fn an_intact_ledger_verifies() {
        let k = SecretKey::generate();
        let l = build(&k, 20);
        assert_eq!(verify(&k, &l).unwrap(), (20, l[19].hash));
        assert_eq!(verify(&k, &[]).unwrap().0, 0);
    }

    #[test]
    fn edits_deletions_reorders_and_forgeries_are_located() {
        let k = SecretKey::generate();
        let l = build(&k, 10);
        let mut edited = l.clone();
        edited[4].body = "{\"n\":99}".into();
        assert_eq!(verify(&k, &edited).unwrap_err().seq, 5);
        let mut deleted = l.clone();
        deleted.remove(6);
        assert_eq!(verify(&k, &deleted).unwrap_err().seq, 7);
        let mut truncated_middle = l.clone();
        truncated_middle.swap(2, 3);
        assert_eq!(verify(&k, &truncated_middle).unwrap_err().seq, 3);
        // a forger without the key re-hashes an edited entry consistently but cannot sign it
        let mut forged = l.clone();
        let e = &forged[8];
        let d = Draft {
            ts_us: e.ts_us,
            actor: "cli:mallory".into(),
            kind: e.kind.clone(),
            tenant: None,
            body: "{}".into(),
        };
        let f = d.seal(&SecretKey::generate(), e.seq - 1, e.prev);
        forged[8] = f;
        let err = verify(&k, &forged).unwrap_err();
        assert_eq!((err.seq, err.problem.contains("MAC")), (9, true));
    }
}
