//! Signed Merkle checkpoints: a (tenant, stream) tree head at a size, signed
//! with Ed25519 so that anyone holding the public key — an auditor, a
//! customer — can check it and every proof against it without any of
//! Lethe's secrets.
//!
//! ```text
//! message   = "lethe/checkpoint/v1\0" ‖ len‖tenant ‖ len‖stream ‖ size:u64be ‖ root[32]
//!             ‖ ts_us:i64be ‖ ledger_seq:u64be ‖ ledger_prev[32]
//! signature = Ed25519(K_sign, message)        K_sign = HKDF-SHA256(master, "checkpoint-ed25519")
//! ```
//!
//! `ledger_seq` is the checkpoint's own position in the ledger and
//! `ledger_prev` the hash of the entry before it: each signed checkpoint
//! anchors the ledger up to that point, so removing later entries cannot
//! hide earlier ones, and a third party holding a checkpoint can check the
//! ledger prefix it names.

use ed25519_dalek::{Signer, Verifier};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::crypto::SecretKey;
use crate::merkle::Hash;

/// A tree head of one (tenant, stream) chain at a size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Tenant.
    pub tenant: String,
    /// Stream as `name:version`.
    pub stream: String,
    /// Leaves (records) covered: sequence numbers 1..=size.
    pub size: u64,
    /// RFC 6962 tree head over their leaves (hex).
    #[serde(with = "hex32")]
    pub root: Hash,
    /// When it was taken (µs).
    pub ts_us: i64,
    /// Its position in the ledger.
    pub ledger_seq: u64,
    /// Hash of the ledger entry before it (hex).
    #[serde(with = "hex32")]
    pub ledger_prev: Hash,
}

impl Checkpoint {
    /// The exact bytes that are signed.
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(160);
        m.extend_from_slice(b"lethe/checkpoint/v1\0");
        for s in [&self.tenant, &self.stream] {
            m.extend_from_slice(&(s.len() as u32).to_be_bytes());
            m.extend_from_slice(s.as_bytes());
        }
        m.extend_from_slice(&self.size.to_be_bytes());
        m.extend_from_slice(&self.root);
        m.extend_from_slice(&self.ts_us.to_be_bytes());
        m.extend_from_slice(&self.ledger_seq.to_be_bytes());
        m.extend_from_slice(&self.ledger_prev);
        m
    }

    /// Checks `signature` (64 bytes) with `public_key` (32 bytes).
    pub fn verify(&self, public_key: &[u8; 32], signature: &[u8]) -> bool {
        let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(public_key) else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        vk.verify(&self.message(), &sig).is_ok()
    }
}

/// The checkpoint signing key, derived from the master key.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {})", hex::encode(self.public_key()))
    }
}

impl SigningKey {
    /// `HKDF-SHA256(salt "lethe/v1", master, "checkpoint-ed25519")` as the Ed25519 seed.
    pub fn derive(master: &SecretKey) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"lethe/v1"), master.expose());
        let mut seed = [0u8; 32];
        hk.expand(b"checkpoint-ed25519", &mut seed)
            .expect("32 bytes is a valid HKDF length");
        let k = ed25519_dalek::SigningKey::from_bytes(&seed);
        zeroize::Zeroize::zeroize(&mut seed);
        SigningKey(k)
    }

    /// The public key third parties check signatures with.
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs a checkpoint.
    pub fn sign(&self, c: &Checkpoint) -> [u8; 64] {
        self.0.sign(&c.message()).to_bytes()
    }

    /// Signs a published ledger head: `"lethe/head/v1\0" ‖ body`.
    pub fn sign_head(&self, body: &[u8]) -> [u8; 64] {
        self.0.sign(&[b"lethe/head/v1\0".as_slice(), body].concat()).to_bytes()
    }

    /// Signs a ledger anchor: `"lethe/anchor/v1\0" ‖ body`.
    pub fn sign_anchor(&self, body: &[u8]) -> [u8; 64] {
        self.0.sign(&anchor_message(body)).to_bytes()
    }
}

fn anchor_message(body: &[u8]) -> Vec<u8> {
    [b"lethe/anchor/v1\0".as_slice(), body].concat()
}

/// Checks a published ledger head's signature with `public_key`.
pub fn verify_head(public_key: &[u8; 32], body: &[u8], signature: &[u8]) -> bool {
    verify_message(public_key, &[b"lethe/head/v1\0".as_slice(), body].concat(), signature)
}

/// Checks a ledger anchor's signature with `public_key`.
pub fn verify_anchor(public_key: &[u8; 32], body: &[u8], signature: &[u8]) -> bool {
    verify_message(public_key, &anchor_message(body), signature)
}

fn verify_message(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(vk), Ok(sig)) = (
        ed25519_dalek::VerifyingKey::from_bytes(public_key),
        ed25519_dalek::Signature::from_slice(signature),
    ) else {
        return false;
    };
    vk.verify(message, &sig).is_ok()
}

/// Serde for 32-byte hashes as lowercase hex.
pub mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as hex.
    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    /// Parses 64 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes (64 hex digits)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint {
            tenant: "acme".into(),
            stream: "audit:1".into(),
            size: 1000,
            root: [7; 32],
            ts_us: 5,
            ledger_seq: 12,
            ledger_prev: [3; 32],
        }
    }

    #[test]
    fn a_signed_checkpoint_verifies_with_the_public_key_only_and_any_change_breaks_it() {
        let master = SecretKey::generate();
        let k = SigningKey::derive(&master);
        assert_eq!(
            k.public_key(),
            SigningKey::derive(&master).public_key(),
            "deterministic"
        );
        let sig = k.sign(&cp());
        assert!(cp().verify(&k.public_key(), &sig));
        for changed in [
            Checkpoint { size: 1001, ..cp() },
            Checkpoint { root: [8; 32], ..cp() },
            Checkpoint {
                stream: "audit:2".into(),
                ..cp()
            },
            Checkpoint { ledger_seq: 13, ..cp() },
            Checkpoint {
                ledger_prev: [4; 32],
                ..cp()
            },
        ] {
            assert!(!changed.verify(&k.public_key(), &sig));
        }
        let other = SigningKey::derive(&SecretKey::generate());
        assert!(!cp().verify(&other.public_key(), &sig));
        assert!(!format!("{k:?}").contains(&master.to_hex()));
    }

    #[test]
    fn checkpoints_round_trip_through_json_with_hex_hashes() {
        let j = serde_json::to_string(&cp()).unwrap();
        assert!(j.contains(&"07".repeat(32)));
        assert_eq!(serde_json::from_str::<Checkpoint>(&j).unwrap(), cp());
    }
}
