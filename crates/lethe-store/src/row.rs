//! A stored record row as integrity checking sees it — every column, in
//! whatever state retention left it — and how its header is rebuilt.

use lethe_core::integrity::{personal_digest, plain_digest, Digests, Header};
use lethe_core::merkle::Hash;
use lethe_core::record::body;

use lethe_core::policy::GroupKey;
use lethe_core::{Classification, StreamId, TenantId};

use crate::{NewRecord, StoredRecord};

/// A record as appended.
pub const LIVE: i64 = 0;
/// Personal part removed; its digest kept in `redacted`.
pub const ANONYMIZED: i64 = 1;
/// Deleted, header kept (a tombstone): both digests kept in `redacted`.
pub const DELETED: i64 = 2;

/// One stored row, raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    /// Sequence number.
    pub seq: u64,
    /// Record id (16 bytes when intact).
    pub id: Vec<u8>,
    /// Event time (µs).
    pub ts_us: i64,
    /// Received time (µs).
    pub received_us: i64,
    /// Scope.
    pub scope: String,
    /// Classification code.
    pub class: u8,
    /// Subject pseudonym.
    pub pseudonym: Option<Vec<u8>>,
    /// Data key id.
    pub key_id: Option<i64>,
    /// Plain fields JSON (empty for a tombstone).
    pub plain: String,
    /// Encrypted body.
    pub body: Option<Vec<u8>>,
    /// [`LIVE`], [`ANONYMIZED`] or [`DELETED`].
    pub state: i64,
    /// Chain hash before this record.
    pub prev: Vec<u8>,
    /// HMAC of the leaf.
    pub mac: Vec<u8>,
    /// Digests of removed parts.
    pub redacted: Option<Vec<u8>>,
}

/// The fields of a body for its digest: decoded, or — a body in no format
/// the vault writes, which the store keeps as opaque bytes — the whole body
/// as one unnamed field.
fn body_fields(b: Option<&[u8]>) -> Vec<(&str, &[u8])> {
    match b {
        None => Vec::new(),
        Some(b) => body::decode(b).unwrap_or_else(|| vec![("", b)]),
    }
}

/// The body digests of a record about to be stored.
pub fn digests_of(r: &NewRecord) -> Digests {
    let fields = body_fields(r.body.as_deref());
    Digests {
        plain: plain_digest(&r.plain),
        personal: personal_digest(&r.id, r.pseudonym.as_ref(), r.key_id, fields.into_iter()),
    }
}

fn hash32(b: &[u8], what: &str) -> Result<Hash, String> {
    b.try_into().map_err(|_| format!("{what} is not 32 bytes"))
}

impl RawRow {
    /// The record id, if it is 16 bytes.
    pub fn id(&self) -> Result<[u8; 16], String> {
        self.id
            .as_slice()
            .try_into()
            .map_err(|_| "record id is not 16 bytes".to_string())
    }

    /// The body digests: recomputed from what is stored, taken from
    /// `redacted` for the parts retention removed.
    pub fn digests(&self) -> Result<Digests, String> {
        let id = self.id()?;
        let personal_now = || -> Result<Hash, String> {
            let pseudo: Option<[u8; 32]> = match &self.pseudonym {
                Some(p) => Some(hash32(p, "pseudonym")?),
                None => None,
            };
            let fields = body_fields(self.body.as_deref());
            Ok(personal_digest(&id, pseudo.as_ref(), self.key_id, fields.into_iter()))
        };
        let redacted = self.redacted.as_deref().unwrap_or_default();
        match self.state {
            LIVE => Ok(Digests {
                plain: plain_digest(&self.plain),
                personal: personal_now()?,
            }),
            ANONYMIZED if redacted.len() == 32 => Ok(Digests {
                plain: plain_digest(&self.plain),
                personal: hash32(redacted, "redacted digest")?,
            }),
            DELETED if redacted.len() == 64 => Ok(Digests {
                plain: hash32(&redacted[..32], "redacted digest")?,
                personal: hash32(&redacted[32..], "redacted digest")?,
            }),
            ANONYMIZED | DELETED => Err("redacted digests are missing or malformed".into()),
            s => Err(format!("unknown row state {s}")),
        }
    }

    /// The header this row commits to, with its stored `prev`.
    pub fn header<'a>(&'a self, tenant: &'a str, stream: &'a str) -> Result<Header<'a>, String> {
        Ok(Header {
            tenant,
            stream,
            seq: self.seq,
            id: self.id()?,
            ts_us: self.ts_us,
            received_us: self.received_us,
            scope: &self.scope,
            classification: self.class,
            digests: self.digests()?,
            prev: hash32(&self.prev, "previous chain hash")?,
        })
    }

    /// The row's leaf hash.
    pub fn leaf(&self, tenant: &str, stream: &str) -> Result<Hash, String> {
        Ok(self.header(tenant, stream)?.leaf())
    }
}

impl RawRow {
    /// The row as a [`StoredRecord`] of `tenant`'s `stream`, with its seal.
    /// A damaged row (an id that is not 16 bytes, an unknown classification
    /// or pseudonym length) is handed on as it can be read: its seal no
    /// longer checks, and the reader names it instead of aborting the read.
    pub fn into_stored(self, tenant: &TenantId, stream: &StreamId) -> StoredRecord {
        let mut id = [0u8; 16];
        let n = self.id.len().min(16);
        id[..n].copy_from_slice(&self.id[..n]);
        StoredRecord {
            seq: self.seq,
            record: NewRecord {
                id,
                group: GroupKey {
                    tenant: tenant.clone(),
                    stream: stream.clone(),
                    scope: self.scope,
                    classification: Classification::from_code(self.class).unwrap_or(Classification::Restricted),
                },
                ts_us: self.ts_us,
                received_us: self.received_us,
                pseudonym: self.pseudonym.and_then(|p| p.try_into().ok()),
                key_id: self.key_id,
                plain: self.plain,
                body: self.body,
            },
            anonymized: self.state == ANONYMIZED,
            seal: Some(crate::RowSeal {
                prev: self.prev,
                mac: self.mac,
                redacted: self.redacted,
            }),
        }
    }
}

impl StoredRecord {
    /// The leaf hash of the row as stored, with the stored MAC to compare
    /// it with; an error for a copy outside every chain (no seal) or a
    /// damaged row.
    pub fn sealed_leaf(&self, tenant: &str, stream: &str) -> Result<(Hash, &[u8]), String> {
        let seal = self.seal.as_ref().ok_or("a restored copy carries no seal")?;
        let r = &self.record;
        let raw = RawRow {
            seq: self.seq,
            id: r.id.to_vec(),
            ts_us: r.ts_us,
            received_us: r.received_us,
            scope: r.group.scope.clone(),
            class: r.group.classification.code(),
            pseudonym: r.pseudonym.map(|p| p.to_vec()),
            key_id: r.key_id,
            plain: r.plain.clone(),
            body: r.body.clone(),
            state: if self.anonymized { ANONYMIZED } else { LIVE },
            prev: seal.prev.clone(),
            mac: seal.mac.clone(),
            redacted: seal.redacted.clone(),
        };
        Ok((raw.leaf(tenant, stream)?, &seal.mac))
    }
}
