//! Decrypting queries: stored records back into the JSON record format
//! (the same format `ingest` accepts).

use lethe_core::record::{body, format_ts, SUBJECT_FIELD};
use lethe_core::{StreamId, TenantId};
use lethe_store::{NewRecord, RecordQuery, StoredRecord};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::keyring::KeyFound;
use crate::{Result, Vault};

/// What to read.
#[derive(Debug, Clone)]
pub struct LogQuery {
    /// Tenant (required: a query never spans tenants).
    pub tenant: TenantId,
    /// Stream, or all.
    pub stream: Option<StreamId>,
    /// Scope, or all.
    pub scope: Option<String>,
    /// Only this data subject.
    pub subject: Option<String>,
    /// Event time ≥ (µs).
    pub since_us: Option<i64>,
    /// Event time < (µs).
    pub until_us: Option<i64>,
    /// At most this many.
    pub limit: Option<usize>,
    /// Oldest first.
    pub ascending: bool,
    /// Read restored copies (`archive restore --into-store`) instead of
    /// live records; each comes back with `"restored": <restoration id>`.
    pub restored: bool,
}

/// A record a read met and could not show, named without its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// Record id (as stored; may itself be damaged).
    pub id: String,
    /// Stream.
    pub stream: String,
    /// Sequence number in its chain (restored copies: as archived).
    pub seq: u64,
    /// Why it is not shown.
    pub problem: String,
}

/// What a read met besides the records it showed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReadReport {
    /// Records shown.
    pub shown: u64,
    /// Records skipped because they could not be read (the first 1,000).
    pub unreadable: Vec<Unreadable>,
    /// How many were skipped in all.
    pub unreadable_total: u64,
}

impl ReadReport {
    /// Notes a record that is not shown.
    pub(crate) fn skip(&mut self, r: &StoredRecord, problem: impl Into<String>) {
        self.unreadable_total += 1;
        if self.unreadable.len() < 1000 {
            self.unreadable.push(Unreadable {
                id: uuid::Uuid::from_bytes(r.record.id).to_string(),
                stream: r.record.group.stream.to_string(),
                seq: r.seq,
                problem: problem.into(),
            });
        }
    }
}

impl Vault {
    /// Visits matching records as JSON objects in the record format, personal
    /// fields decrypted. Records whose key was destroyed come back with
    /// `"erased": true` and no subject or personal fields.
    ///
    /// Every stored record's seal is checked first (its header rebuilt, its
    /// MAC under the tenant's key compared): a record edited, swapped or
    /// copied in from another tenant is never shown. Such a record — or
    /// one whose key is missing or does not open, or whose stored fields do
    /// not parse — is named in the report and the read goes on.
    pub fn logs(&self, q: &LogQuery, now_us: i64, visit: &mut dyn FnMut(Value) -> bool) -> Result<ReadReport> {
        let mut report = ReadReport::default();
        self.keys.refresh()?;
        let Some(tk) = self.keys.tenant(&q.tenant, None, now_us)? else {
            // A tenant that never stored anything has nothing to show.
            return Ok(report);
        };
        let mac = lethe_core::integrity::RecordMac::new(tk.mac_key());
        let pseudonym = q.subject.as_deref().map(|s| tk.pseudonym(s));
        let sq = RecordQuery {
            tenant: q.tenant.clone(),
            stream: q.stream.clone(),
            scope: q.scope.clone(),
            pseudonym,
            since_us: q.since_us,
            until_us: q.until_us,
            limit: q.limit,
            ascending: q.ascending,
        };
        let tenant = q.tenant.as_str();
        // Decrypt in chunks so key lookups are batched.
        let mut stopped = false;
        let mut err = None;
        let mut chunk: Vec<(Option<i64>, StoredRecord)> = Vec::with_capacity(256);
        let mut flush =
            |chunk: &mut Vec<(Option<i64>, StoredRecord)>, stopped: &mut bool, report: &mut ReadReport| -> Result<()> {
                let ids: Vec<_> = chunk.iter().filter_map(|(_, r)| r.record.key_id).collect();
                let keys = self.keys.by_ids(&q.tenant, &ids, now_us)?;
                for (restored, r) in chunk.drain(..) {
                    if *stopped {
                        break;
                    }
                    if r.seal.is_some() {
                        let stream = r.record.group.stream.to_string();
                        match r.sealed_leaf(tenant, &stream) {
                            Ok((leaf, stored)) if mac.mac(&leaf).as_slice() == stored => {}
                            Ok(_) => {
                                report.skip(
                                    &r,
                                    "its seal does not check for this tenant: edited, swapped or copied in",
                                );
                                continue;
                            }
                            Err(e) => {
                                report.skip(&r, format!("damaged row: {e}"));
                                continue;
                            }
                        }
                    }
                    let found = r.record.key_id.and_then(|id| keys.get(&id));
                    if let Some(KeyFound::Unusable(why)) = found {
                        report.skip(&r, why.clone());
                        continue;
                    }
                    let mut v = match render(&r, found.and_then(|k| k.key())) {
                        Ok(v) => v,
                        Err(e) => {
                            report.skip(&r, e.to_string());
                            continue;
                        }
                    };
                    if let (Some(id), Value::Object(o)) = (restored, &mut v) {
                        o.insert("restored".into(), id.into());
                    }
                    report.shown += 1;
                    if !visit(v) {
                        *stopped = true;
                    }
                }
                Ok(())
            };
        let mut each = |restored: Option<i64>, r: StoredRecord| {
            chunk.push((restored, r));
            if chunk.len() == 256 {
                if let Err(e) = flush(&mut chunk, &mut stopped, &mut report) {
                    err = Some(e);
                    return false;
                }
            }
            !stopped
        };
        if q.restored {
            self.store.query_restored(&sq, &mut |id, r| each(Some(id), r))?;
        } else {
            self.store.query(&sq, &mut |r| each(None, r))?;
        }
        if let Some(e) = err {
            return Err(e);
        }
        if !stopped {
            flush(&mut chunk, &mut stopped, &mut report)?;
        }
        Ok(report)
    }
}

/// One stored record as a JSON object in the record format.
pub fn render(r: &StoredRecord, dk: Option<&lethe_core::crypto::DataKey>) -> Result<Value> {
    let rec = &r.record;
    let mut o = Map::new();
    o.insert("id".into(), uuid::Uuid::from_bytes(rec.id).to_string().into());
    o.insert("tenant".into(), rec.group.tenant.as_str().into());
    o.insert("stream".into(), rec.group.stream.to_string().into());
    o.insert("scope".into(), rec.group.scope.clone().into());
    o.insert("classification".into(), rec.group.classification.as_str().into());
    o.insert("ts".into(), format_ts(rec.ts_us).into());
    o.insert("received".into(), format_ts(rec.received_us).into());
    let mut fields: Map<String, Value> = serde_json::from_str(&rec.plain).map_err(|e| {
        crate::VaultError::Invalid(format!("stored plain fields of record {} are not JSON: {e}", o["id"]))
    })?;
    match (&rec.body, dk) {
        (Some(_), Some(dk)) => {
            open_fields(rec, dk, &mut |name, plain| {
                if name == SUBJECT_FIELD {
                    o.insert("subject".into(), String::from_utf8_lossy(plain).into_owned().into());
                } else {
                    let v: Value = serde_json::from_slice(plain)
                        .map_err(|e| crate::VaultError::Invalid(format!("field {name} of record {}: {e}", o["id"])))?;
                    fields.insert(name.to_string(), v);
                }
                Ok(true)
            })?;
        }
        (Some(_), None) => {
            o.insert("erased".into(), true.into());
        }
        (None, _) => {}
    }
    o.insert("fields".into(), Value::Object(fields));
    if r.anonymized {
        o.insert("anonymized".into(), true.into());
    }
    Ok(Value::Object(o))
}

/// Decrypts a record's subject and personal fields one by one and hands
/// each on (name, plaintext) until `visit` returns `false`.
pub(crate) fn open_fields(
    rec: &NewRecord,
    dk: &lethe_core::crypto::DataKey,
    visit: &mut dyn FnMut(&str, &[u8]) -> Result<bool>,
) -> Result<()> {
    let Some(b) = &rec.body else { return Ok(()) };
    let id = uuid::Uuid::from_bytes(rec.id);
    let parts =
        body::decode(b).ok_or_else(|| crate::VaultError::Invalid(format!("record \"{id}\" has a malformed body")))?;
    for (name, blob) in parts {
        let packed = dk.open_field(&rec.id, name, blob)?;
        let plain = lethe_core::record::value::unpack(&packed)
            .map_err(|e| crate::VaultError::Invalid(format!("field {name} of record \"{id}\": {e}")))?;
        if !visit(name, &plain)? {
            break;
        }
    }
    Ok(())
}
