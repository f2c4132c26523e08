//! The archive object format: one NDJSON line per record, zstd-compressed,
//! keyed by tenant, stream and day, with a JSON manifest beside each object.
//! Documented for readers without Lethe in `docs/archive.md`.

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;
use lethe_core::model::Classification;
use lethe_core::record::{body, format_ts};
use lethe_core::Window;
use lethe_store::row::{RawRow, ANONYMIZED};
use serde::{Deserialize, Serialize};

/// Version of the line and manifest format.
pub const FORMAT: u32 = 1;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Where an object lives: `tenant=<t>/stream=<name:version>/date=<YYYY-MM-DD>/<first>-<last>.ndjson.zst`
/// (sequence numbers zero-padded to 12 digits so names sort in chain order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Tenant.
    pub tenant: String,
    /// Stream as `name:version`.
    pub stream: String,
    /// Day of the partition the records came from (UTC).
    pub date: String,
    /// First sequence number in the object.
    pub first: u64,
    /// Last sequence number in the object.
    pub last: u64,
}

impl ObjectKey {
    /// The directory-like prefix of a tenant (and stream).
    pub fn prefix(tenant: &str, stream: Option<&str>) -> String {
        match stream {
            Some(s) => format!("tenant={tenant}/stream={s}/"),
            None => format!("tenant={tenant}/"),
        }
    }

    /// The object's path.
    pub fn object(&self) -> String {
        format!("{}.ndjson.zst", self.stem())
    }

    /// The manifest's path, next to the object.
    pub fn manifest(&self) -> String {
        format!("{}.manifest.json", self.stem())
    }

    fn stem(&self) -> String {
        format!(
            "tenant={}/stream={}/date={}/{:012}-{:012}",
            self.tenant, self.stream, self.date, self.first, self.last
        )
    }

    /// Parses an object or manifest path; `None` for anything else.
    pub fn parse(path: &str) -> Option<ObjectKey> {
        let stem = path
            .strip_suffix(".ndjson.zst")
            .or_else(|| path.strip_suffix(".manifest.json"))?;
        let mut it = stem.rsplitn(4, '/');
        let name = it.next()?;
        let date = it.next()?.strip_prefix("date=")?;
        let stream = it.next()?.strip_prefix("stream=")?;
        let tenant = it.next()?.rsplit('/').next()?.strip_prefix("tenant=")?;
        let (first, last) = name.split_once('-')?;
        Some(ObjectKey {
            tenant: tenant.into(),
            stream: stream.into(),
            date: date.into(),
            first: first.parse().ok()?,
            last: last.parse().ok()?,
        })
    }
}

/// The UTC day (`YYYY-MM-DD`) of an instant.
pub fn day_of(us: i64) -> String {
    format_ts(us).chars().take(10).collect()
}

/// Appends one stored record as an NDJSON line: plain fields in clear,
/// subject and personal fields as their stored ciphertexts (base64), so
/// destroying a subject's key makes the archived copy unreadable too.
pub fn encode_line(out: &mut Vec<u8>, tenant: &str, stream: &str, row: &RawRow) -> Result<(), String> {
    let id: [u8; 16] = row.id()?;
    let class = Classification::from_code(row.class).ok_or_else(|| format!("unknown classification {}", row.class))?;
    out.extend_from_slice(b"{\"id\":\"");
    let mut ubuf = uuid::Uuid::encode_buffer();
    out.extend_from_slice(
        uuid::Uuid::from_bytes(id)
            .hyphenated()
            .encode_lower(&mut ubuf)
            .as_bytes(),
    );
    out.extend_from_slice(b"\",\"tenant\":");
    json_str(out, tenant);
    out.extend_from_slice(b",\"stream\":");
    json_str(out, stream);
    write!(out, ",\"seq\":{},\"scope\":", row.seq).expect("vec write");
    json_str(out, &row.scope);
    write!(
        out,
        ",\"classification\":\"{}\",\"ts\":\"{}\",\"received\":\"{}\",\"fields\":",
        class.as_str(),
        format_ts(row.ts_us),
        format_ts(row.received_us)
    )
    .expect("vec write");
    out.extend_from_slice(if row.plain.is_empty() { "{}" } else { &row.plain }.as_bytes());
    if let Some(k) = row.key_id {
        write!(out, ",\"key_id\":{k}").expect("vec write");
    }
    if let Some(b) = &row.body {
        let parts = body::decode(b).ok_or_else(|| format!("record seq {} has a malformed body", row.seq))?;
        out.extend_from_slice(b",\"personal\":{");
        for (i, (name, blob)) in parts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(out, name);
            out.extend_from_slice(b":\"");
            let start = out.len();
            out.resize(start + blob.len().div_ceil(3) * 4, 0);
            let n = B64.encode_slice(blob, &mut out[start..]).expect("sized for base64");
            out.truncate(start + n);
            out.push(b'"');
        }
        out.push(b'}');
    }
    if row.state == ANONYMIZED {
        out.extend_from_slice(b",\"anonymized\":true");
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("vec write");
}

/// One archived record, read back.
#[derive(Debug, Clone, Deserialize)]
pub struct Line {
    /// Record id (a UUID).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Stream as `name:version`.
    pub stream: String,
    /// Sequence number in its chain.
    pub seq: u64,
    /// Scope.
    pub scope: String,
    /// Classification.
    pub classification: String,
    /// Event time.
    pub ts: String,
    /// Time the vault received it.
    pub received: String,
    /// Plain fields.
    pub fields: Box<serde_json::value::RawValue>,
    /// Data key the personal fields are encrypted under.
    #[serde(default)]
    pub key_id: Option<i64>,
    /// Encrypted subject and personal fields (base64 ciphertexts).
    #[serde(default)]
    pub personal: Option<BTreeMap<String, String>>,
    /// Whether retention anonymized it before it was archived.
    #[serde(default)]
    pub anonymized: bool,
}

impl Line {
    /// The stored body (for decryption), rebuilt from the base64 ciphertexts.
    pub fn body(&self) -> Result<Option<Vec<u8>>, String> {
        let Some(p) = &self.personal else { return Ok(None) };
        let blobs: Vec<(&str, Vec<u8>)> = p
            .iter()
            .map(|(k, v)| {
                B64.decode(v)
                    .map(|b| (k.as_str(), b))
                    .map_err(|e| format!("field {k} of record {}: {e}", self.id))
            })
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        body::encode(blobs.iter().map(|(k, b)| (*k, b.as_slice())), &mut out);
        Ok(Some(out))
    }
}

/// Records of one (scope, classification) in an object, and the rule that archived them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestGroup {
    /// Scope.
    pub scope: String,
    /// Classification.
    pub classification: String,
    /// Retention rule that archived them.
    pub rule: String,
    /// The rule's archive window when they were archived.
    pub archive_window: Window,
    /// Records.
    pub records: u64,
}

/// What one archive object holds and how to check it: written next to the
/// object (`….manifest.json`) and, without the receipt fields, into the
/// ledger (`archive.written`) before anything is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// Object path within the target.
    pub object: String,
    /// Target name.
    pub target: String,
    /// Tenant.
    pub tenant: String,
    /// Stream as `name:version`.
    pub stream: String,
    /// Partition day.
    pub date: String,
    /// Records (lines) in the object.
    pub records: u64,
    /// First sequence number.
    pub first_seq: u64,
    /// Last sequence number.
    pub last_seq: u64,
    /// Oldest event time (RFC 3339).
    pub oldest: String,
    /// Newest event time (RFC 3339).
    pub newest: String,
    /// Oldest event time (µs).
    pub oldest_us: i64,
    /// Newest event time (µs).
    pub newest_us: i64,
    /// Per (scope, classification).
    pub groups: Vec<ManifestGroup>,
    /// Size of the object (compressed bytes).
    pub bytes: u64,
    /// Size of the NDJSON inside (uncompressed bytes).
    pub raw_bytes: u64,
    /// SHA-256 of the object (hex).
    pub sha256: String,
    /// Policy snapshot version the sweep applied.
    pub policy_version: i64,
    /// The sweep run (shared by its `archive.written`, intent and receipt entries).
    pub run: String,
    /// When it was written (RFC 3339).
    pub written_at: String,
    /// Ledger entry recording the write (`archive.written`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_entry: Option<u64>,
    /// The sweep intent that deleted the records from the active store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<u64>,
    /// The sweep receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<u64>,
}

impl Manifest {
    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            tenant: self.tenant.clone(),
            stream: self.stream.clone(),
            date: self.date.clone(),
            first: self.first_seq,
            last: self.last_seq,
        }
    }

    /// When every record in it has outlived its archive window (µs), or
    /// `None` if it is kept forever; `window_of` gives the window in force
    /// for a group (the recorded one when the policies no longer say).
    pub fn expires_us(&self, window_of: &dyn Fn(&ManifestGroup) -> Window) -> Option<i64> {
        let mut longest = 0i64;
        for g in &self.groups {
            longest = longest.max(window_of(g).micros()?);
        }
        Some(self.newest_us.saturating_add(longest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_round_trip_through_their_paths() {
        let k = ObjectKey {
            tenant: "acme".into(),
            stream: "requests:1".into(),
            date: "2026-01-02".into(),
            first: 7,
            last: 1234,
        };
        assert_eq!(
            k.object(),
            "tenant=acme/stream=requests:1/date=2026-01-02/000000000007-000000001234.ndjson.zst"
        );
        assert_eq!(ObjectKey::parse(&k.object()), Some(k.clone()));
        assert_eq!(ObjectKey::parse(&format!("prefix/{}", k.manifest())), Some(k));
        assert_eq!(ObjectKey::parse("tenant=acme/other.txt"), None);
    }
}
