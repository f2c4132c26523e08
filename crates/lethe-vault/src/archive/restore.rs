//! Bringing archived records back for an investigation: decrypted where
//! their subject's key still exists, shown as erased where it was destroyed
//! — never as ciphertext.

use std::io::Write;

use lethe_core::model::{Classification, StreamId, TenantId};
use lethe_core::policy::GroupKey;
use lethe_core::record::parse_ts;
use lethe_store::{NewRecord, StoredRecord};
use serde::Serialize;

use super::format::{Line, ObjectKey};
use super::inventory::ArchiveFilter;
use crate::{Result, Vault, VaultError};

/// What a restore read and wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// Objects read.
    pub objects: u64,
    /// Records written out.
    pub records: u64,
    /// Of which with personal fields erased (key destroyed by a purge).
    pub erased: u64,
}

/// Splits a byte stream into lines and hands each complete one on.
struct Lines<'a> {
    partial: Vec<u8>,
    each: &'a mut dyn FnMut(&[u8]) -> std::io::Result<()>,
}

impl Write for Lines<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let mut rest = b;
        while let Some(i) = rest.iter().position(|&c| c == b'\n') {
            if self.partial.is_empty() {
                (self.each)(&rest[..i])?;
            } else {
                self.partial.extend_from_slice(&rest[..i]);
                let line = std::mem::take(&mut self.partial);
                (self.each)(&line)?;
            }
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Vault {
    /// Writes the archived records of one tenant (and stream, and event-time
    /// range) to `out` as NDJSON in the record format `lethe logs` prints,
    /// oldest object first.
    pub fn archive_restore(&self, f: &ArchiveFilter, now_us: i64, out: &mut dyn Write) -> Result<RestoreReport> {
        let tenant = f
            .tenant
            .as_deref()
            .ok_or_else(|| VaultError::Invalid("restore needs a tenant".into()))?;
        let all = self.archive_targets()?;
        let mut listed = self.archive_ls(f)?;
        listed.sort_by(|a, b| {
            (a.manifest.oldest_us, &a.manifest.object).cmp(&(b.manifest.oldest_us, &b.manifest.object))
        });
        let mut r = RestoreReport::default();
        for l in listed {
            let t = all
                .target(&l.target)
                .ok_or_else(|| VaultError::Archive(format!("no archive target `{}`", l.target)))?;
            let key = ObjectKey::parse(&l.manifest.object)
                .ok_or_else(|| VaultError::Archive(format!("{}: not an archive object path", l.manifest.object)))?;
            if key.tenant != tenant {
                continue;
            }
            r.objects += 1;
            let mut failure: Option<VaultError> = None;
            let mut batch: Vec<Line> = Vec::with_capacity(256);
            let mut flush = |batch: &mut Vec<Line>, r: &mut RestoreReport| -> Result<()> {
                let ids: Vec<i64> = batch.iter().filter_map(|l| l.key_id).collect();
                let keys = self.keys.by_ids(&ids, now_us)?;
                for line in batch.drain(..) {
                    let rec = stored_record(&line)?;
                    let dk = line.key_id.and_then(|id| keys.get(&id).cloned().flatten());
                    let v = crate::logs::render(&rec, dk.as_ref())?;
                    if v.get("erased").is_some() {
                        r.erased += 1;
                    }
                    serde_json::to_writer(&mut *out, &v).map_err(std::io::Error::other)?;
                    out.write_all(b"\n")?;
                    r.records += 1;
                }
                Ok(())
            };
            let mut each = |raw: &[u8]| -> std::io::Result<()> {
                let line: Line = serde_json::from_slice(raw).map_err(std::io::Error::other)?;
                let ts = parse_ts(&line.ts).unwrap_or(i64::MIN);
                if f.since_us.is_some_and(|s| ts < s) || f.until_us.is_some_and(|u| ts >= u) {
                    return Ok(());
                }
                batch.push(line);
                if batch.len() == 256 {
                    if let Err(e) = flush(&mut batch, &mut r) {
                        failure = Some(e);
                        return Err(std::io::Error::other("restore failed"));
                    }
                }
                Ok(())
            };
            let res = all.read_raw(
                t,
                &l.manifest.object,
                &mut Lines {
                    partial: Vec::new(),
                    each: &mut each,
                },
            );
            if let Some(e) = failure {
                return Err(e);
            }
            res?;
            flush(&mut batch, &mut r)?;
        }
        out.flush()?;
        Ok(r)
    }
}

/// An archived line as the stored record it was.
fn stored_record(l: &Line) -> Result<StoredRecord> {
    let bad = |what: &str| VaultError::Archive(format!("archived record {}: bad {what}", l.id));
    Ok(StoredRecord {
        seq: l.seq,
        anonymized: l.anonymized,
        record: NewRecord {
            id: *uuid::Uuid::parse_str(&l.id).map_err(|_| bad("id"))?.as_bytes(),
            group: GroupKey {
                tenant: TenantId::new(&l.tenant).map_err(|_| bad("tenant"))?,
                stream: l.stream.parse::<StreamId>().map_err(|_| bad("stream"))?,
                scope: l.scope.clone(),
                classification: l
                    .classification
                    .parse::<Classification>()
                    .map_err(|_| bad("classification"))?,
            },
            ts_us: parse_ts(&l.ts).ok_or_else(|| bad("ts"))?,
            received_us: parse_ts(&l.received).ok_or_else(|| bad("received"))?,
            pseudonym: None,
            key_id: l.key_id,
            plain: l.fields.get().to_string(),
            body: l.body().map_err(VaultError::Archive)?,
        },
    })
}
