//! Bringing archived records back for an investigation — to NDJSON, or into
//! the store as a restoration — decrypted where their subject's key still
//! exists, shown as erased where it was destroyed, never as ciphertext.

use std::io::Write;

use lethe_core::crypto::DataKey;
use lethe_core::duration::Window;
use lethe_core::model::{Classification, StreamId, TenantId};
use lethe_core::policy::GroupKey;
use lethe_core::record::{format_ts, parse_ts, SUBJECT_FIELD};
use lethe_store::{NewRecord, Restoration, StoredRecord};
use serde::Serialize;

use super::format::Line;
use super::inventory::{ArchiveFilter, Listed};
use crate::keyring::KeyFound;
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
    /// Records skipped because they could not be read (the first 1,000),
    /// named without their content; the restore goes on past them.
    pub unreadable: Vec<crate::logs::Unreadable>,
    /// How many were skipped in all.
    pub unreadable_total: u64,
}

impl RestoreReport {
    fn skip(&mut self, id: &str, stream: &str, seq: u64, problem: String) {
        self.unreadable_total += 1;
        if self.unreadable.len() < 1000 {
            self.unreadable.push(crate::logs::Unreadable {
                id: id.into(),
                stream: stream.into(),
                seq,
                problem,
            });
        }
    }
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

/// Archived records of one batch with what their data key lookup found
/// (`None` for a record without personal fields).
type Decoded = Vec<(StoredRecord, Option<KeyFound>)>;

/// What `restore --into-store` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoredSet {
    /// The restoration (its id, expiry, records, bytes).
    pub restoration: Restoration,
    /// Objects read, records restored, of which erased.
    pub report: RestoreReport,
}

impl Vault {
    /// The archived objects of the filter's tenant (required) that may hold
    /// records it selects — `archive_ls` lists only that tenant's prefix.
    fn restorable(&self, f: &ArchiveFilter) -> Result<Vec<Listed>> {
        if f.tenant.is_none() {
            return Err(VaultError::Invalid("restore needs a tenant".into()));
        }
        self.archive_ls(f)
    }

    /// Reads the records of `listed` objects that the filter's time range
    /// selects, oldest object first, and hands them on in batches with
    /// their data keys.
    fn each_archived(
        &self,
        f: &ArchiveFilter,
        mut listed: Vec<Listed>,
        now_us: i64,
        r: &mut RestoreReport,
        sink: &mut dyn FnMut(Decoded, &mut RestoreReport) -> Result<()>,
    ) -> Result<()> {
        let tenant = TenantId::new(f.tenant.as_deref().unwrap_or_default())
            .map_err(|e| VaultError::Invalid(format!("tenant: {e}")))?;
        self.keys.refresh()?;
        let all = self.archive_targets()?;
        listed.sort_by(|a, b| {
            (a.manifest.oldest_us, &a.manifest.object).cmp(&(b.manifest.oldest_us, &b.manifest.object))
        });
        for l in listed {
            let t = all
                .target(&l.target)
                .ok_or_else(|| VaultError::Archive(format!("no archive target `{}`", l.target)))?;
            r.objects += 1;
            let mut failure: Option<VaultError> = None;
            let mut batch: Vec<Line> = Vec::with_capacity(BATCH);
            let mut flush = |batch: &mut Vec<Line>, r: &mut RestoreReport| -> Result<()> {
                if batch.is_empty() {
                    return Ok(());
                }
                let ids: Vec<i64> = batch.iter().filter_map(|l| l.key_id).collect();
                let keys = self.keys.by_ids(&tenant, &ids, now_us)?;
                let mut out = Vec::with_capacity(batch.len());
                for line in batch.drain(..) {
                    match stored_record(&line) {
                        Ok(rec) => {
                            let found = line.key_id.and_then(|id| keys.get(&id).cloned());
                            out.push((rec, found));
                        }
                        Err(e) => r.skip(&line.id, &line.stream, line.seq, e.to_string()),
                    }
                }
                sink(out, r)
            };
            let mut line_no = 0u64;
            let object = l.manifest.object.clone();
            let mut each = |raw: &[u8]| -> std::io::Result<()> {
                line_no += 1;
                let line: Line = match serde_json::from_slice(raw) {
                    Ok(l) => l,
                    Err(e) => {
                        r.skip(
                            "?",
                            "?",
                            0,
                            format!(
                                "line {line_no} of {object} does not parse as an archived record ({:?} error at column {})",
                                e.classify(),
                                e.column()
                            ),
                        );
                        return Ok(());
                    }
                };
                let ts = parse_ts(&line.ts).unwrap_or(i64::MIN);
                if f.since_us.is_some_and(|s| ts < s) || f.until_us.is_some_and(|u| ts >= u) {
                    return Ok(());
                }
                batch.push(line);
                if batch.len() == BATCH {
                    if let Err(e) = flush(&mut batch, r) {
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
            flush(&mut batch, r)?;
        }
        Ok(())
    }

    /// Writes the archived records of one tenant (and stream, and event-time
    /// range) to `out` as NDJSON in the record format `lethe logs` prints,
    /// oldest object first.
    pub fn archive_restore(&self, f: &ArchiveFilter, now_us: i64, out: &mut dyn Write) -> Result<RestoreReport> {
        let mut r = RestoreReport::default();
        let listed = self.restorable(f)?;
        self.each_archived(f, listed, now_us, &mut r, &mut |batch, r| {
            for (rec, found) in batch {
                let id = uuid::Uuid::from_bytes(rec.record.id).to_string();
                let stream = rec.record.group.stream.to_string();
                if let Some(KeyFound::Unusable(why)) = &found {
                    r.skip(&id, &stream, rec.seq, why.clone());
                    continue;
                }
                let v = match crate::logs::render(&rec, found.as_ref().and_then(|k| k.key())) {
                    Ok(v) => v,
                    Err(e) => {
                        r.skip(&id, &stream, rec.seq, e.to_string());
                        continue;
                    }
                };
                if v.get("erased").is_some() {
                    r.erased += 1;
                }
                serde_json::to_writer(&mut *out, &v).map_err(std::io::Error::other)?;
                out.write_all(b"\n")?;
                r.records += 1;
            }
            Ok(())
        })?;
        out.flush()?;
        Ok(r)
    }

    /// Brings the archived records of one tenant (and stream, and event-time
    /// range) back into the store as a restoration: copies kept apart from
    /// the live records (never swept, archived again or counted by
    /// `verify`), queried with `lethe logs --restored`, reached by purges,
    /// and removed whole by the sweep `window` after now (default
    /// `[archive] restore_window`). Recorded in the ledger
    /// (`archive.restore`). Records stay encrypted as archived; subjects are
    /// indexed again (pseudonyms recomputed) where their key still exists.
    pub fn archive_restore_into(
        &self,
        f: &ArchiveFilter,
        window: Option<Window>,
        actor: &str,
        reason: &str,
        now_us: i64,
    ) -> Result<RestoredSet> {
        // One job at a time per store: a sweep or purge meanwhile would
        // plan without the copies this is loading.
        let _jobs = self.store.lock_jobs()?;
        let tenant_s = f
            .tenant
            .as_deref()
            .ok_or_else(|| VaultError::Invalid("restore needs a tenant".into()))?;
        let tenant = TenantId::new(tenant_s).map_err(|e| VaultError::Invalid(format!("tenant: {e}")))?;
        let window = window.unwrap_or(self.config.archive.restore_window);
        let span = window.micros().filter(|w| *w > 0).ok_or_else(|| {
            VaultError::Invalid(
                "a restoration needs a finite, positive window (--window): restored copies always expire".into(),
            )
        })?;
        if reason.trim().is_empty() {
            return Err(VaultError::Invalid("a restore into the store needs a reason".into()));
        }
        let expires_us = now_us.saturating_add(span);
        let selection = serde_json::json!({
            "tenant": tenant_s,
            "stream": f.stream,
            "since": f.since_us.map(format_ts),
            "until": f.until_us.map(format_ts),
        });
        let note = serde_json::json!({"selection": selection, "reason": reason, "actor": actor}).to_string();
        // Nothing archived matches: say so rather than record an empty restoration.
        let listed = self.restorable(f)?;
        if listed.is_empty() {
            return Err(VaultError::Invalid(format!(
                "no archived records of tenant {tenant_s} match the selection; nothing was restored"
            )));
        }
        let tk = self.keys.tenant(&tenant, None, now_us)?;
        let id = self.store.begin_restoration(&tenant, now_us, expires_us, &note)?;
        let mut r = RestoreReport::default();
        self.each_archived(f, listed, now_us, &mut r, &mut |batch, r| {
            let mut recs = Vec::with_capacity(batch.len());
            for (mut rec, found) in batch {
                match (&found, &tk) {
                    (Some(KeyFound::Unusable(why)), _) => {
                        let id = uuid::Uuid::from_bytes(rec.record.id).to_string();
                        r.skip(&id, &rec.record.group.stream.to_string(), rec.seq, why.clone());
                        continue;
                    }
                    (Some(KeyFound::Open(dk)), Some(tk)) => match subject_of(&rec, dk) {
                        Ok(s) => rec.record.pseudonym = s.map(|s| tk.pseudonym(&s)),
                        Err(e) => {
                            let id = uuid::Uuid::from_bytes(rec.record.id).to_string();
                            r.skip(&id, &rec.record.group.stream.to_string(), rec.seq, e.to_string());
                            continue;
                        }
                    },
                    _ if rec.record.body.is_some() => r.erased += 1,
                    _ => {}
                }
                recs.push(rec);
            }
            r.records += self.store.add_restored(id, &recs)?;
            Ok(())
        })?;
        lethe_store::crashpoint::hit("restore.before_entry");
        let body = serde_json::json!({
            "restoration": id,
            "selection": selection,
            "reason": reason,
            "objects": r.objects,
            "records": r.records,
            "erased": r.erased,
            "expires": format_ts(expires_us),
        });
        let e = self.record_intent(
            now_us,
            actor,
            "archive.restore",
            Some(tenant_s),
            body.to_string(),
            &format!("restoration.{id}"),
        )?;
        lethe_store::crashpoint::hit("restore.after_entry");
        let restoration = self.store.finish_restoration(id, e.seq)?;
        self.publish_or_warn(now_us, &mut Vec::new());
        Ok(RestoredSet { restoration, report: r })
    }

    /// The sweep's step for restorations: those whose window has ended are
    /// removed whole (dry run: listed), under one `archive.restore_expired`
    /// ledger entry written first. Legal holds do not keep them: they are
    /// copies, and the archived originals stay under the holds.
    pub fn expire_restorations(
        &self,
        actor: &str,
        now_us: i64,
        tenant: Option<&str>,
        dry_run: bool,
    ) -> Result<Vec<ExpiredRestoration>> {
        let due: Vec<Restoration> = self
            .store
            .restorations(tenant)?
            .into_iter()
            .filter(|r| r.expires_us <= now_us)
            .collect();
        let mut out: Vec<ExpiredRestoration> = due
            .iter()
            .map(|r| ExpiredRestoration {
                id: r.id,
                tenant: r.tenant.clone(),
                records: r.records,
                bytes: r.bytes,
                expired: format_ts(r.expires_us),
            })
            .collect();
        if dry_run || out.is_empty() {
            return Ok(out);
        }
        self.record(
            now_us,
            actor,
            "archive.restore_expired",
            None,
            &serde_json::json!({
                "at": format_ts(now_us),
                "restorations": out.iter().map(|x| serde_json::json!({
                    "restoration": x.id, "tenant": x.tenant, "records": x.records, "expired": x.expired,
                })).collect::<Vec<_>>(),
            }),
        )?;
        for x in &mut out {
            x.bytes = self.store.drop_restoration(x.id)?;
        }
        Ok(out)
    }

    /// Restorations in the store, optionally of one tenant.
    pub fn restorations(&self, tenant: Option<&str>) -> Result<Vec<Restoration>> {
        Ok(self.store.restorations(tenant)?)
    }
}

/// A restoration the sweep removed (or, dry run, will remove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiredRestoration {
    /// Restoration id.
    pub id: i64,
    /// Its tenant.
    pub tenant: String,
    /// Records it held.
    pub records: u64,
    /// Disk bytes returned (dry run: that will be).
    pub bytes: u64,
    /// When its window ended.
    pub expired: String,
}

/// Records handed on at once (keys are looked up per batch).
const BATCH: usize = 1024;

/// The subject id of a record, decrypted.
fn subject_of(rec: &StoredRecord, dk: &DataKey) -> Result<Option<String>> {
    let mut subject = None;
    crate::logs::open_fields(&rec.record, dk, &mut |name, plain| {
        if name == SUBJECT_FIELD {
            subject = Some(String::from_utf8_lossy(plain).into_owned());
            return Ok(false);
        }
        Ok(true)
    })?;
    Ok(subject)
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
        seal: None,
    })
}
