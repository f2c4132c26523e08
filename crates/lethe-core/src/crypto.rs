//! The crypto envelope: master key → tenant root → data keys → field
//! ciphertexts, and keyed pseudonyms for subject lookup.
//!
//! Every wrap and every field ciphertext is AES-256-GCM with a random 96-bit
//! nonce and associated data that binds it to its place (tenant, key reference,
//! record id, field name), so a ciphertext moved elsewhere fails to open.
//! Key bytes are zeroized on drop and never formatted: `Debug` prints
//! `[redacted]`.

use std::fmt;

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Why a crypto operation failed. Messages never contain key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// A master key string is not 32 bytes of hex or base64.
    #[error("master key must be 32 bytes, given as 64 hex characters or base64")]
    BadMasterKey,
    /// Authentication failed: wrong key, or the ciphertext was altered or moved.
    #[error("decryption failed for {0}: wrong key or altered ciphertext")]
    Open(&'static str),
    /// A wrapped blob is too short to be one.
    #[error("malformed ciphertext for {0}")]
    Malformed(&'static str),
}

const NONCE: usize = 12;

/// 32 secret bytes, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    /// A fresh random key from the OS generator.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        SecretKey(k)
    }

    /// Wraps raw bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        SecretKey(b)
    }

    /// Parses a master key given as 64 hex characters or base64 of 32 bytes.
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        let s = s.trim();
        let bytes = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(s).map_err(|_| CryptoError::BadMasterKey)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| CryptoError::BadMasterKey)?
        };
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(SecretKey(arr))
    }

    /// The raw key bytes, for keyed hashing (HMAC) inside this crate.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hex encoding, for writing a new master key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.0).expect("32-byte key")
    }
}

fn seal(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8], out: &mut Vec<u8>) {
    let mut nonce = [0u8; NONCE];
    rand::thread_rng().fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[start..])
        .expect("AES-GCM encryption cannot fail for in-range lengths");
    out.extend_from_slice(&tag);
}

fn open(cipher: &Aes256Gcm, blob: &[u8], aad: &[u8], what: &'static str) -> Result<Vec<u8>, CryptoError> {
    if blob.len() < NONCE + 16 {
        return Err(CryptoError::Malformed(what));
    }
    let (nonce, ct) = blob.split_at(NONCE);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| CryptoError::Open(what))
}

/// The master key: wraps tenant roots.
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// Uses `key` as the master key.
    pub fn new(key: &SecretKey) -> Self {
        MasterKey { cipher: key.cipher() }
    }

    /// Creates a tenant root and returns it with its wrapped form for storage.
    pub fn new_tenant(&self, tenant: &str) -> (TenantKeys, Vec<u8>) {
        let root = SecretKey::generate();
        let mut wrapped = Vec::with_capacity(60);
        seal(&self.cipher, &root.0, &tenant_aad(tenant), &mut wrapped);
        (TenantKeys::derive(&root), wrapped)
    }

    /// Unwraps a stored tenant root.
    pub fn open_tenant(&self, tenant: &str, wrapped: &[u8]) -> Result<TenantKeys, CryptoError> {
        let mut root = open(&self.cipher, wrapped, &tenant_aad(tenant), "tenant key")?;
        let arr: [u8; 32] = root
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed("tenant key"))?;
        root.zeroize();
        Ok(TenantKeys::derive(&SecretKey(arr)))
    }
}

fn tenant_aad(tenant: &str) -> Vec<u8> {
    [b"lethe/tenant-root/v1/".as_slice(), tenant.as_bytes()].concat()
}

/// Keys derived from a tenant root (HKDF-SHA256): the key-encryption key for
/// data keys, the pseudonym index key and the record MAC key.
pub struct TenantKeys {
    kek: Aes256Gcm,
    index: Hmac<Sha256>,
    mac_key: SecretKey,
}

impl fmt::Debug for TenantKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TenantKeys([redacted])")
    }
}

impl TenantKeys {
    fn derive(root: &SecretKey) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"lethe/v1"), &root.0);
        let mut out = [0u8; 32];
        let mut next = |label: &[u8]| {
            hk.expand(label, &mut out).expect("32 bytes is a valid HKDF length");
            let k = SecretKey(out);
            out.zeroize();
            k
        };
        let kek = next(b"data-key-wrap");
        let index = next(b"subject-index");
        let mac_key = next(b"record-mac");
        TenantKeys {
            kek: kek.cipher(),
            index: <Hmac<Sha256> as Mac>::new_from_slice(&index.0).expect("any length"),
            mac_key,
        }
    }

    /// The keyed pseudonym of a subject id: HMAC-SHA256 under the index key.
    pub fn pseudonym(&self, subject: &str) -> [u8; 32] {
        let mut m = self.index.clone();
        m.update(subject.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// The record MAC key (used by the integrity layer).
    pub fn mac_key(&self) -> &SecretKey {
        &self.mac_key
    }

    /// Creates a data key for `key_ref` and returns it with its wrapped form.
    pub fn new_data_key(&self, tenant: &str, key_ref: &[u8]) -> (DataKey, Vec<u8>) {
        let k = SecretKey::generate();
        let mut wrapped = Vec::with_capacity(60);
        seal(&self.kek, &k.0, &data_aad(tenant, key_ref), &mut wrapped);
        (DataKey { key: k }, wrapped)
    }

    /// Unwraps a stored data key.
    pub fn open_data_key(&self, tenant: &str, key_ref: &[u8], wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        let mut k = open(&self.kek, wrapped, &data_aad(tenant, key_ref), "data key")?;
        let arr: [u8; 32] = k
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed("data key"))?;
        k.zeroize();
        Ok(DataKey { key: SecretKey(arr) })
    }
}

fn data_aad(tenant: &str, key_ref: &[u8]) -> Vec<u8> {
    let mut v = b"lethe/data-key/v1/".to_vec();
    v.extend_from_slice(tenant.as_bytes());
    v.push(0);
    v.extend_from_slice(key_ref);
    v
}

/// A data key: encrypts the subject and personal fields of records.
///
/// Holds the 32 key bytes (zeroized on drop) rather than an expanded cipher:
/// a vault caches many of these, and expanding an AES key takes nanoseconds
/// while an expanded cipher costs hundreds of bytes.
#[derive(Clone)]
pub struct DataKey {
    key: SecretKey,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

/// Associated data of a field ciphertext: `record id ‖ 0x00 ‖ field name`,
/// built on the stack (names are at most 255 bytes).
fn field_aad<R>(record_id: &[u8; 16], field: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; 16 + 1 + 255];
    let n = field.len().min(255);
    buf[..16].copy_from_slice(record_id);
    buf[17..17 + n].copy_from_slice(&field.as_bytes()[..n]);
    f(&buf[..17 + n])
}

impl DataKey {
    /// An expanded cipher for sealing many fields in a row.
    pub fn sealer(&self) -> FieldSealer {
        FieldSealer {
            cipher: self.key.cipher(),
        }
    }

    /// Encrypts one field value, bound to its record id and field name,
    /// appending `nonce ‖ ciphertext ‖ tag` to `out`.
    pub fn seal_field(&self, record_id: &[u8; 16], field: &str, value: &[u8], out: &mut Vec<u8>) {
        field_aad(record_id, field, |aad| seal(&self.key.cipher(), value, aad, out))
    }

    /// Decrypts one field value.
    pub fn open_field(&self, record_id: &[u8; 16], field: &str, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        field_aad(record_id, field, |aad| open(&self.key.cipher(), blob, aad, "field"))
    }
}

/// A data key expanded for repeated use (see [`DataKey::sealer`]).
pub struct FieldSealer {
    cipher: Aes256Gcm,
}

impl FieldSealer {
    /// Same as [`DataKey::seal_field`].
    pub fn seal_field(&self, record_id: &[u8; 16], field: &str, value: &[u8], out: &mut Vec<u8>) {
        field_aad(record_id, field, |aad| seal(&self.cipher, value, aad, out))
    }
}

/// A check value of the master key (hex), stored with a vault so that a
/// wrong key is refused before it writes anything: HKDF-SHA256 of the key
/// (salt `lethe/v1`, info `master-key-check`) — reveals nothing of the key.
pub fn master_check(master: &SecretKey) -> String {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"lethe/v1"), master.expose());
    let mut out = [0u8; 32];
    hk.expand(b"master-key-check", &mut out)
        .expect("32 bytes is a valid HKDF length");
    hex::encode(out)
}

/// Hashes API key secrets for storage: HMAC-SHA256 under a key derived
/// from the master key (HKDF, info `api-key-hash`). A random 256-bit
/// secret needs no slow password hash; the key means a copy of the catalog
/// alone cannot even test a guess.
pub struct SecretHasher(SecretKey);

impl SecretHasher {
    /// Derives the hashing key from the master key.
    pub fn derive(master: &SecretKey) -> Self {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"lethe/v1"), master.expose());
        let mut out = [0u8; 32];
        hk.expand(b"api-key-hash", &mut out)
            .expect("32 bytes is a valid HKDF length");
        SecretHasher(SecretKey::from_bytes(out))
    }

    fn mac(&self, id: &str, secret: &[u8]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose()).expect("HMAC takes any key length");
        // The id is bound in: a stored hash cannot be moved to another key.
        m.update(&(id.len() as u32).to_be_bytes());
        m.update(id.as_bytes());
        m.update(secret);
        m
    }

    /// The stored form of key `id`'s secret.
    pub fn hash(&self, id: &str, secret: &[u8]) -> Vec<u8> {
        self.mac(id, secret).finalize().into_bytes().to_vec()
    }

    /// Whether `secret` is key `id`'s, compared in constant time.
    pub fn matches(&self, id: &str, secret: &[u8], stored: &[u8]) -> bool {
        self.mac(id, secret).verify_slice(stored).is_ok()
    }
}

/// Seals small catalog values that hold personal data while work is
/// pending (an erasure job's subjects, until the job ends): AES-256-GCM
/// under a key HKDF-derived from the master key (info `catalog-seal`),
/// bound to a label so a value cannot be moved to another row.
pub struct CatalogSealer(Aes256Gcm);

impl fmt::Debug for CatalogSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CatalogSealer([redacted])")
    }
}

impl CatalogSealer {
    /// Derives the sealing key from the master key.
    pub fn derive(master: &SecretKey) -> Self {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"lethe/v1"), master.expose());
        let mut out = [0u8; 32];
        hk.expand(b"catalog-seal", &mut out)
            .expect("32 bytes is a valid HKDF length");
        let cipher = Aes256Gcm::new_from_slice(&out).expect("32-byte key");
        out.zeroize();
        CatalogSealer(cipher)
    }

    /// `plaintext` sealed under `label`.
    pub fn seal(&self, label: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + NONCE + 16);
        seal(&self.0, plaintext, label.as_bytes(), &mut out);
        out
    }

    /// Opens what [`CatalogSealer::seal`] sealed under the same label.
    pub fn open(&self, label: &str, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open(&self.0, blob, label.as_bytes(), "sealed catalog value")
    }
}

/// A keyed tag (hex HMAC-SHA256 under `key`) of `label` and `parts`, each
/// length-prefixed: binds catalog rows to ledger entries (e.g. a hold's
/// subject) without putting what it binds in the ledger.
pub fn tag(key: &SecretKey, label: &str, parts: &[&[u8]]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).expect("HMAC takes any key length");
    for p in std::iter::once(label.as_bytes()).chain(parts.iter().copied()) {
        m.update(&(p.len() as u32).to_be_bytes());
        m.update(p);
    }
    hex::encode(m.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_open_only_with_their_key_record_and_name() {
        let master = MasterKey::new(&SecretKey::generate());
        let (tk, wrapped) = master.new_tenant("acme");
        let tk2 = master.open_tenant("acme", &wrapped).unwrap();
        assert!(
            master.open_tenant("other", &wrapped).is_err(),
            "tenant root is bound to its tenant"
        );
        let (dk, dk_wrapped) = tk.new_data_key("acme", b"subject-x");
        let dk2 = tk2.open_data_key("acme", b"subject-x", &dk_wrapped).unwrap();
        assert!(tk2.open_data_key("acme", b"subject-y", &dk_wrapped).is_err());
        let id = [7u8; 16];
        let mut ct = Vec::new();
        dk.seal_field(&id, "prompt", b"hello", &mut ct);
        assert_eq!(dk2.open_field(&id, "prompt", &ct).unwrap(), b"hello");
        assert_eq!(dk2.open_field(&id, "response", &ct), Err(CryptoError::Open("field")));
        assert_eq!(
            dk2.open_field(&[8u8; 16], "prompt", &ct),
            Err(CryptoError::Open("field"))
        );
        let (other, _) = tk.new_data_key("acme", b"subject-x");
        assert!(
            other.open_field(&id, "prompt", &ct).is_err(),
            "a new key cannot open old data"
        );
    }

    #[test]
    fn pseudonyms_are_stable_per_tenant_and_differ_across_tenants() {
        let master = MasterKey::new(&SecretKey::generate());
        let (a, wa) = master.new_tenant("a");
        let (b, _) = master.new_tenant("b");
        assert_eq!(
            a.pseudonym("alice"),
            master.open_tenant("a", &wa).unwrap().pseudonym("alice")
        );
        assert_ne!(a.pseudonym("alice"), b.pseudonym("alice"));
        assert_ne!(a.pseudonym("alice"), a.pseudonym("bob"));
    }

    #[test]
    fn master_keys_parse_from_hex_or_base64_and_never_print() {
        let k = SecretKey::generate();
        assert_eq!(SecretKey::parse(&k.to_hex()).unwrap(), k);
        let b64 = base64::engine::general_purpose::STANDARD.encode(k.0);
        assert_eq!(SecretKey::parse(&b64).unwrap(), k);
        assert!(SecretKey::parse("abc").is_err());
        assert!(!format!("{k:?}").contains(&k.to_hex()[..8]));
    }
}
