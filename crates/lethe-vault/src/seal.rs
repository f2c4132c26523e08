//! Sealing: every chain's Merkle tree head, signed with the vault's Ed25519
//! key, written to the ledger as a `checkpoint` entry — on the configured
//! cadence, at the end of every ingest run and before every sweep.

use lethe_core::checkpoint::Checkpoint;
use lethe_core::ledger::Draft;
use lethe_store::ChainHead;

use crate::{Result, Vault};

/// The body of a `checkpoint` ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointBody {
    /// What is signed.
    pub checkpoint: Checkpoint,
    /// Ed25519 signature of `checkpoint.message()` (hex).
    pub signature: String,
    /// The public key it verifies with (hex); pin it, do not trust it from here.
    pub public_key: String,
}

impl Vault {
    /// The Ed25519 public key checkpoints are signed with (hex): what a third
    /// party needs to check proofs.
    pub fn public_key(&self) -> String {
        hex::encode(self.signer.public_key())
    }

    /// Seals chains into signed checkpoints: every chain with records past
    /// its last checkpoint when `all`, otherwise only those due by the
    /// configured cadence. Returns the checkpoints written.
    pub fn seal(&self, actor: &str, now_us: i64, all: bool) -> Result<Vec<Checkpoint>> {
        let cfg = &self.config.integrity;
        let interval = cfg.checkpoint_interval.micros();
        let due = |c: &ChainHead| {
            c.size > c.sealed
                && (all
                    || c.size - c.sealed >= cfg.checkpoint_every
                    || interval.is_some_and(|i| now_us.saturating_sub(c.sealed_us) >= i))
        };
        // Chains are read under the lock: a caller that waited for another
        // seal sees what it sealed and signs nothing twice. (Other
        // processes or nodes may still seal a chain at the same size as
        // this one; that is a duplicate checkpoint, never a wrong one.)
        let _one = self.sealing.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for c in self.store.chains()?.into_iter().filter(due) {
            if let Some(why) = &c.damaged {
                // Never sign a state the catalog cannot vouch for.
                tracing::warn!("chain {}/{} is not sealed: {why}", c.tenant, c.stream);
                continue;
            }
            let mut signed = None;
            self.store.append_ledger(&mut |seq, prev| {
                let cp = Checkpoint {
                    tenant: c.tenant.clone(),
                    stream: c.stream.clone(),
                    size: c.size,
                    root: c.root,
                    ts_us: now_us,
                    ledger_seq: seq + 1,
                    ledger_prev: prev,
                };
                let body = CheckpointBody {
                    signature: hex::encode(self.signer.sign(&cp)),
                    public_key: self.public_key(),
                    checkpoint: cp.clone(),
                };
                signed = Some(cp);
                Draft {
                    ts_us: now_us,
                    actor: actor.into(),
                    kind: "checkpoint".into(),
                    tenant: Some(c.tenant.clone()),
                    body: serde_json::to_string(&body).expect("checkpoints serialize"),
                }
                .seal(&self.ledger_key, seq, prev)
            })?;
            self.store.mark_sealed(&c.tenant, &c.stream, c.size, now_us)?;
            out.extend(signed);
        }
        Ok(out)
    }
}
