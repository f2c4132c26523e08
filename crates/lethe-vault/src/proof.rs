//! Merkle proofs for third parties: a record's inclusion under a signed
//! checkpoint, consistency between two signed checkpoints, and checking
//! either with nothing but the checkpoint public key.

use lethe_core::merkle::{self, Hash};
use serde::{Deserialize, Serialize};

use crate::seal::CheckpointBody;
use crate::verify::stored_node;
use crate::{Result, Vault, VaultError};

/// A proof, as printed by `lethe proof` and read by `lethe proof check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Proof {
    /// A record is leaf `seq - 1` of the tree a signed checkpoint commits to.
    Inclusion {
        /// Tenant.
        tenant: String,
        /// Stream.
        stream: String,
        /// The record's sequence number (leaf index + 1).
        seq: u64,
        /// The record id (UUID).
        record_id: String,
        /// The record's canonical header (hex); its leaf is `SHA-256(0x00 ‖ header)`.
        header: String,
        /// The leaf hash (hex).
        leaf_hash: String,
        /// The RFC 6962 audit path (hex), leaf to root.
        audit_path: Vec<String>,
        /// The signed checkpoint whose tree this is.
        checkpoint: CheckpointBody,
    },
    /// The tree of `from` is a prefix of the tree of `to`.
    Consistency {
        /// Tenant.
        tenant: String,
        /// Stream.
        stream: String,
        /// RFC 6962 consistency proof (hex).
        proof: Vec<String>,
        /// The older signed checkpoint.
        from: CheckpointBody,
        /// The newer signed checkpoint.
        to: CheckpointBody,
    },
}

/// What `lethe proof check` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProofCheck {
    /// Whether every check passed.
    pub valid: bool,
    /// What was checked, one line each, and whether it held.
    pub checks: Vec<(String, bool)>,
    /// The public key signatures were checked with (hex).
    pub public_key: String,
    /// Whether that key was given (pinned) rather than taken from the file.
    pub key_pinned: bool,
}

fn unhex(s: &str, what: &str) -> std::result::Result<Hash, String> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| format!("{what} is not 64 hex digits"))
}

/// Checks a proof using only public information: the hashes in it and the
/// checkpoint public key — `pinned`, or else the one the file names (which
/// proves only that the file is self-consistent; say so).
pub fn check(proof: &Proof, pinned: Option<&str>) -> std::result::Result<ProofCheck, String> {
    let key_hex = match (pinned, proof) {
        (Some(k), _) => k.to_string(),
        (None, Proof::Inclusion { checkpoint, .. }) => checkpoint.public_key.clone(),
        (None, Proof::Consistency { to, .. }) => to.public_key.clone(),
    };
    let key = unhex(&key_hex, "public key")?;
    let sig_ok = |c: &CheckpointBody| {
        hex::decode(&c.signature)
            .map(|s| c.checkpoint.verify(&key, &s))
            .unwrap_or(false)
    };
    let mut checks = Vec::new();
    match proof {
        Proof::Inclusion {
            tenant,
            stream,
            seq,
            header,
            leaf_hash,
            audit_path,
            checkpoint,
            ..
        } => {
            let cp = &checkpoint.checkpoint;
            let header = hex::decode(header).map_err(|_| "header is not hex".to_string())?;
            let leaf = unhex(leaf_hash, "leaf_hash")?;
            let path = audit_path
                .iter()
                .map(|h| unhex(h, "audit path entry"))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            checks.push((format!("checkpoint signature by {key_hex}"), sig_ok(checkpoint)));
            checks.push((
                "checkpoint is for the proof's tenant and stream".into(),
                cp.tenant == *tenant && cp.stream == *stream,
            ));
            checks.push((
                "leaf hash is SHA-256(0x00 ‖ header)".into(),
                merkle::leaf_hash(&header) == leaf,
            ));
            checks.push((
                format!(
                    "leaf {} is in the tree of size {} with the signed root",
                    seq.saturating_sub(1),
                    cp.size
                ),
                *seq >= 1 && merkle::verify_inclusion(&leaf, seq - 1, cp.size, &path, &cp.root),
            ));
        }
        Proof::Consistency {
            tenant,
            stream,
            proof,
            from,
            to,
        } => {
            let path = proof
                .iter()
                .map(|h| unhex(h, "proof entry"))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let (a, b) = (&from.checkpoint, &to.checkpoint);
            checks.push((format!("older checkpoint signature by {key_hex}"), sig_ok(from)));
            checks.push((format!("newer checkpoint signature by {key_hex}"), sig_ok(to)));
            checks.push((
                "both checkpoints are for the proof's tenant and stream".into(),
                a.tenant == *tenant && b.tenant == *tenant && a.stream == *stream && b.stream == *stream,
            ));
            checks.push((
                format!("the tree of size {} is a prefix of the tree of size {}", a.size, b.size),
                merkle::verify_consistency(a.size, b.size, &a.root, &b.root, &path),
            ));
        }
    }
    Ok(ProofCheck {
        valid: checks.iter().all(|(_, ok)| *ok),
        checks,
        public_key: key_hex,
        key_pinned: pinned.is_some(),
    })
}

impl Vault {
    /// The authentic signed checkpoints of a chain in the ledger, oldest first.
    pub fn checkpoints(&self, tenant: &str, stream: &str) -> Result<Vec<CheckpointBody>> {
        let mut out = Vec::new();
        self.each_entry(1, &mut |e| {
            let authentic = || lethe_core::ledger::check_entry(&self.ledger_key, &e).is_ok();
            if e.kind == "checkpoint" && e.tenant.as_deref() == Some(tenant) && authentic() {
                if let Ok(b) = serde_json::from_str::<CheckpointBody>(&e.body) {
                    if b.checkpoint.stream == stream {
                        out.push(b);
                    }
                }
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// The head of the subtree over leaves `lo..hi`, from kept heads and rebuilt leaves.
    fn subtree(&self, tenant: &str, stream: &str, lo: u64, hi: u64) -> Result<Hash> {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            let level = n.trailing_zeros();
            return stored_node(&*self.store, tenant, stream, level, lo >> level)?.ok_or_else(|| {
                VaultError::Invalid(format!(
                    "cannot prove: the Merkle head over records {}–{hi} of {tenant}/{stream} is gone \
                     (retention removed records next to them before edge heads were kept)",
                    lo + 1
                ))
            });
        }
        let k = merkle::split(n);
        Ok(merkle::node_hash(
            &self.subtree(tenant, stream, lo, lo + k)?,
            &self.subtree(tenant, stream, lo + k, hi)?,
        ))
    }

    /// Proves a record (by id) is in the tree of its chain's latest signed
    /// checkpoint that covers it (or the one of exactly `size`).
    pub fn inclusion_proof(&self, id: &[u8; 16], size: Option<u64>) -> Result<Proof> {
        let uuid = uuid::Uuid::from_bytes(*id);
        let (tenant, stream, seq) = self
            .store
            .locate(id)?
            .ok_or_else(|| VaultError::Invalid(format!("record {uuid} is not stored")))?;
        let cps = self.checkpoints(&tenant, &stream)?;
        let cp = cps
            .into_iter()
            .rev()
            .find(|c| c.checkpoint.size >= seq && size.is_none_or(|s| c.checkpoint.size == s))
            .ok_or_else(|| {
                VaultError::Invalid(format!(
                    "no signed checkpoint of {tenant}/{stream} covers record {seq}{} yet (run `lethe ingest` or `lethe cleanup`, which seal)",
                    size.map(|s| format!(" at size {s}")).unwrap_or_default()
                ))
            })?;
        let seg = self
            .store
            .segments(&tenant, &stream)?
            .into_iter()
            .find(|s| s.segment.first <= seq && seq <= s.segment.last)
            .ok_or_else(|| VaultError::Invalid(format!("record {seq} of {tenant}/{stream} has no segment")))?;
        let mut row = None;
        self.store
            .row_reader()?
            .scan(seg.partition, seq, seq, &mut |r| row = Some(r))?;
        let row = row.ok_or_else(|| VaultError::Invalid(format!("record {seq} of {tenant}/{stream} is gone")))?;
        let header = row
            .header(&tenant, &stream)
            .map_err(|e| VaultError::Invalid(format!("record {seq} of {tenant}/{stream} is damaged: {e}")))?
            .encode();
        let leaf = merkle::leaf_hash(&header);
        let path = merkle::inclusion_path(seq - 1, cp.checkpoint.size, &mut |lo, hi| {
            self.subtree(&tenant, &stream, lo, hi)
        })?
        .expect("seq is within the checkpoint");
        Ok(Proof::Inclusion {
            tenant,
            stream,
            seq,
            record_id: uuid.to_string(),
            header: hex::encode(header),
            leaf_hash: hex::encode(leaf),
            audit_path: path.iter().map(hex::encode).collect(),
            checkpoint: cp,
        })
    }

    /// Proves the signed checkpoint of size `from` is a prefix of the one of size `to`.
    pub fn consistency_proof(&self, tenant: &str, stream: &str, from: u64, to: u64) -> Result<Proof> {
        let cps = self.checkpoints(tenant, stream)?;
        let sizes = || {
            cps.iter()
                .map(|c| c.checkpoint.size.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let find = |n: u64| {
            cps.iter()
                .rev()
                .find(|c| c.checkpoint.size == n)
                .cloned()
                .ok_or_else(|| {
                    VaultError::Invalid(format!(
                        "no signed checkpoint of {tenant}/{stream} has size {n}; sizes: {}",
                        sizes()
                    ))
                })
        };
        let (a, b) = (find(from)?, find(to)?);
        if from > to {
            return Err(VaultError::Invalid(format!("--from {from} is larger than --to {to}")));
        }
        let path =
            merkle::consistency_path(from, to, &mut |lo, hi| self.subtree(tenant, stream, lo, hi))?.expect("from ≤ to");
        Ok(Proof::Consistency {
            tenant: tenant.into(),
            stream: stream.into(),
            proof: path.iter().map(hex::encode).collect(),
            from: a,
            to: b,
        })
    }
}
