//! The ingest pipeline: NDJSON lines → validated, capture-filtered, encrypted
//! records → the store, one transactional batch at a time. Parsing and
//! encryption of batch *n+1* overlap with the store writing batch *n*.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::mpsc;
use std::sync::Arc;

use lethe_core::crypto::TenantKeys;
use lethe_core::integrity::{self, Digests};
use lethe_core::model::CaptureMode;
use lethe_core::policy::GroupKey;
use lethe_core::record::{self, body, RecordError, SUBJECT_FIELD};
use lethe_core::{FieldClass, TenantId};
use lethe_store::{AppendReport, Batch, CaptureDrop, NewRecord, Progress};
use serde::Serialize;

use crate::{Result, Vault};

/// At most this many rejections are kept with their details (all are counted).
const KEPT_REJECTIONS: usize = 1000;

/// A line that was not stored, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// 1-based line number in the input.
    pub line: u64,
    /// The offending field (`fields.prompt`, `ts`, `(line)`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// What an ingest run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Non-empty lines read.
    pub lines: u64,
    /// Records written.
    pub stored: u64,
    /// Records whose id was already stored (client retries).
    pub duplicates: u64,
    /// Records counted but not stored (capture mode `none`).
    pub not_captured: u64,
    /// Lines refused.
    pub rejected: u64,
    /// The first rejections, with line and field.
    pub errors: Vec<Rejection>,
    /// Data keys created (first records of new subjects or months): those
    /// the store stored with these batches, each counted once however many
    /// batches carried it.
    pub keys_created: u64,
    /// Things that went wrong without failing the run (a witness that could
    /// not be reached).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl IngestReport {
    /// Adds another report's counts (the first rejections of both kept).
    pub fn merge(&mut self, o: IngestReport) {
        self.lines += o.lines;
        self.stored += o.stored;
        self.duplicates += o.duplicates;
        self.not_captured += o.not_captured;
        self.rejected += o.rejected;
        self.keys_created += o.keys_created;
        let room = KEPT_REJECTIONS.saturating_sub(self.errors.len());
        self.errors.extend(o.errors.into_iter().take(room));
        self.warnings.extend(o.warnings);
    }

    fn absorb(&mut self, p: &Prepared, a: AppendReport) {
        self.merge(IngestReport {
            lines: p.lines,
            stored: a.inserted,
            duplicates: a.duplicates,
            not_captured: p.batch.drops.iter().map(|d| d.count).sum::<u64>(),
            rejected: p.rejections.len() as u64,
            errors: p.rejections.iter().take(KEPT_REJECTIONS).cloned().collect(),
            keys_created: a.keys_stored,
            warnings: Vec::new(),
        });
    }
}

/// A batch ready for the store, with the input it came from (kept so the
/// batch can be prepared again if its new keys conflict with another writer's).
pub struct Prepared {
    lines: u64,
    batch: Batch,
    rejections: Vec<Rejection>,
    input: Vec<u8>,
    spans: Vec<(u64, usize, usize)>,
    now_us: i64,
    /// Who sent the batch, for the service (`None`: the CLI or bench).
    only: Option<Sender>,
    /// Key-cache generation the batch was encrypted under.
    key_generation: u64,
}

/// Who sent a batch through the service: the URL's tenant (the only one
/// it may write to) and the API key's actor (entered as the creator of the
/// data keys the batch makes).
#[derive(Debug, Clone)]
pub struct Sender {
    /// The only tenant the batch may write to.
    pub tenant: TenantId,
    /// The actor of the ledger entries the batch causes.
    pub actor: String,
}

/// Times a batch is prepared again after a key conflict before giving up.
/// Each conflict means another writer stored keys (system-wide progress),
/// and each new preparation adopts them; but with several nodes bringing
/// the same new subjects at once a batch can lose a few races in a row
/// (three were exceeded about once in six runs of two nodes on one
/// PostgreSQL store), so the bound is generous.
const KEY_CONFLICT_RETRIES: usize = 16;

struct Pending<'a> {
    rec: NewRecord,
    key_ref: Vec<u8>,
    subject: Option<std::borrow::Cow<'a, str>>,
    encrypted: Vec<(std::borrow::Cow<'a, str>, &'a [u8])>,
    line: u64,
}

impl Vault {
    /// Ingests NDJSON from `input`. `clock` gives the received time (µs) of
    /// each batch. Bad lines are reported and skipped; every valid line is
    /// stored; a storage failure stops the run with everything before it
    /// committed.
    pub fn ingest(
        &self,
        input: impl BufRead + Send,
        clock: &(dyn Fn() -> i64 + Sync),
        progress: Progress<'_>,
    ) -> Result<IngestReport> {
        // Capture modes decide what is written: the policies in force are noted first.
        self.note_policy("system/ingest", clock())?;
        let batch = self.config.store.ingest_batch;
        let (tx, rx) = mpsc::sync_channel::<Result<Prepared>>(1);
        let mut report = IngestReport::default();
        std::thread::scope(|s| -> Result<()> {
            s.spawn(move || {
                let mut input = input;
                let mut line_no = 0u64;
                loop {
                    let mut buf: Vec<u8> = Vec::with_capacity(batch * 1200);
                    let mut spans: Vec<(u64, usize, usize)> = Vec::with_capacity(batch);
                    let mut eof = false;
                    while spans.len() < batch {
                        let start = buf.len();
                        match input.read_until(b'\n', &mut buf) {
                            Ok(0) => {
                                eof = true;
                                break;
                            }
                            Ok(_) => {
                                line_no += 1;
                                let mut end = buf.len();
                                while end > start && matches!(buf[end - 1], b'\n' | b'\r') {
                                    end -= 1;
                                }
                                if buf[start..end].iter().any(|b| !b.is_ascii_whitespace()) {
                                    spans.push((line_no, start, end));
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e.into()));
                                return;
                            }
                        }
                    }
                    if !spans.is_empty() {
                        let p = self.prepare(buf, spans, clock());
                        let failed = p.is_err();
                        if tx.send(p).is_err() || failed {
                            return;
                        }
                    }
                    if eof {
                        return;
                    }
                }
            });
            for p in rx {
                let (p, a) = self.commit(p?)?;
                report.absorb(&p, a);
                self.seal("system/ingest", clock(), false)?;
                progress(report.lines, 0);
            }
            Ok(())
        })?;
        self.seal("system/ingest", clock(), true)?;
        self.publish_or_warn(clock(), &mut report.warnings);
        Ok(report)
    }

    /// Ingests lines given in memory, as one or more batches, then seals
    /// every chain they touched and publishes the witness (a command's
    /// run: everything it stored is under a signed checkpoint when it ends).
    pub fn ingest_lines(&self, lines: &[&str], now_us: i64) -> Result<IngestReport> {
        self.note_policy("system/ingest", now_us)?;
        let mut report = IngestReport::default();
        for (i, chunk) in lines.chunks(self.config.store.ingest_batch).enumerate() {
            let first = (i * self.config.store.ingest_batch) as u64 + 1;
            let r = self.ingest_batch(chunk, first, now_us)?;
            report.merge(r);
        }
        self.seal("system/ingest", now_us, true)?;
        self.publish_or_warn(now_us, &mut report.warnings);
        Ok(report)
    }

    /// Ingests one batch of lines (numbered from `first_line` in rejections)
    /// as one store commit — shared with the batches other threads submit
    /// at the same time (group commit) — and seals chains only where a
    /// checkpoint is due. The path of a service taking many small batches
    /// at once; the caller notes the policies in force once
    /// ([`Vault::note_policy`]) before its first batch.
    pub fn ingest_batch(&self, lines: &[&str], first_line: u64, now_us: i64) -> Result<IngestReport> {
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len()).sum());
        let mut spans = Vec::with_capacity(lines.len());
        for (j, l) in lines.iter().enumerate() {
            spans.push((first_line + j as u64, buf.len(), buf.len() + l.len()));
            buf.extend_from_slice(l.as_bytes());
        }
        self.ingest_spans(None, buf, spans, now_us)
    }

    /// Ingests one batch for `sender.tenant` only, as the service does for
    /// `POST /v1/tenants/{t}/records`: the lines of `input` at `spans`
    /// (line number, start, end); a record of any other tenant is rejected
    /// (field `tenant`), and the data keys it makes are entered under
    /// `sender.actor`. Otherwise as [`Vault::ingest_batch`].
    pub fn ingest_for(
        &self,
        sender: &Sender,
        input: Vec<u8>,
        spans: Vec<(u64, usize, usize)>,
        now_us: i64,
    ) -> Result<IngestReport> {
        self.ingest_spans(Some(sender), input, spans, now_us)
    }

    fn ingest_spans(
        &self,
        only: Option<&Sender>,
        input: Vec<u8>,
        spans: Vec<(u64, usize, usize)>,
        now_us: i64,
    ) -> Result<IngestReport> {
        let mut report = IngestReport::default();
        let (p, a) = self.commit(self.prepare_for(only, input, spans, now_us)?)?;
        report.absorb(&p, a);
        self.seal("system/ingest", now_us, false)?;
        Ok(report)
    }

    /// Writes a prepared batch (with any other threads' batches submitted
    /// meanwhile, in one durable write: see [`crate::commits`]); when its new
    /// keys conflict with keys another writer stored first, prepares it
    /// again with those keys and retries.
    pub fn commit(&self, mut p: Prepared) -> Result<(Prepared, AppendReport)> {
        let mut attempts = 0;
        loop {
            // Prepared ahead of a key conflict in an earlier batch: it may
            // use a key that batch created and never stored. Prepare it again.
            if p.key_generation != self.keys.generation() {
                p = self.prepare_for(p.only.as_ref(), p.input, p.spans, p.now_us)?;
            }
            // Shared with the batches other threads submit meanwhile.
            match self.commits.append(&|g| self.store.append_group(g), &mut p.batch) {
                Ok(a) => {
                    self.keys.stored(&p.batch.new_keys);
                    tracing::debug!(
                        records = p.batch.records.len(),
                        inserted = a.inserted,
                        new_keys = p.batch.new_keys.len(),
                        "batch committed"
                    );
                    return Ok((p, a));
                }
                // A new key collided with another writer's, or an erasure
                // destroyed a key this batch was encrypted under: nothing
                // was stored; prepare it again with the stored, live keys.
                Err(e) if e.is_retryable() && attempts < KEY_CONFLICT_RETRIES => {
                    tracing::info!("batch prepared again: {e}");
                    attempts += 1;
                    self.prepared_again.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.keys.forget_data_keys();
                    p = self.prepare_for(p.only.as_ref(), p.input, p.spans, p.now_us)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Parses, validates, applies capture modes and encrypts one batch: the
    /// lines of `input` at `spans` (line number, start, end).
    pub fn prepare(&self, input: Vec<u8>, spans: Vec<(u64, usize, usize)>, now_us: i64) -> Result<Prepared> {
        self.prepare_for(None, input, spans, now_us)
    }

    /// [`Vault::prepare`], rejecting records of any tenant but `only`.
    fn prepare_for(
        &self,
        only: Option<&Sender>,
        input: Vec<u8>,
        spans: Vec<(u64, usize, usize)>,
        now_us: i64,
    ) -> Result<Prepared> {
        // A key destroyed since the cache was filled must not encrypt this batch.
        self.keys.refresh()?;
        let key_generation = self.keys.generation();
        let lines: Vec<(u64, &[u8])> = spans.iter().map(|&(n, a, b)| (n, &input[a..b])).collect();
        let mut rejections = Vec::new();
        let mut drops: HashMap<GroupKey, u64> = HashMap::new();
        let mut modes: HashMap<GroupKey, CaptureMode> = HashMap::new();
        // The expiry class of each (tenant, stream) in the batch (see
        // `Batch::placement`), from the first of its records.
        let mut placement: Vec<(TenantId, lethe_core::StreamId, String)> = Vec::new();
        let mut tenants: HashMap<TenantId, Arc<TenantKeys>> = HashMap::new();
        let mut pending: Vec<Pending<'_>> = Vec::with_capacity(lines.len());
        let allow = &self.config.tenants.allow;
        let book = self.policy_book();

        for &(line, bytes) in &lines {
            let reject = |e: RecordError| Rejection {
                line,
                field: e.field,
                message: e.message,
            };
            let text = match std::str::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    rejections.push(Rejection {
                        line,
                        field: "(line)".into(),
                        message: "not valid UTF-8".into(),
                    });
                    continue;
                }
            };
            let inc = match record::parse(text, &self.schemas) {
                Ok(i) => i,
                Err(e) => {
                    rejections.push(reject(e));
                    continue;
                }
            };
            if only.is_some_and(|s| s.tenant != inc.tenant) {
                rejections.push(Rejection {
                    line,
                    field: "tenant".into(),
                    message: "not the tenant this request writes to".into(),
                });
                continue;
            }
            if !allow.is_empty() && !allow.contains(&inc.tenant) {
                rejections.push(Rejection {
                    line,
                    field: "tenant".into(),
                    message: format!("tenant `{}` is not in tenants.allow", inc.tenant),
                });
                continue;
            }
            let ts_us = inc.ts_us.unwrap_or(now_us);
            if ts_us < 0 {
                rejections.push(Rejection {
                    line,
                    field: "ts".into(),
                    message: "must not be before 1970".into(),
                });
                continue;
            }
            let group = GroupKey {
                tenant: inc.tenant,
                stream: inc.stream,
                scope: inc.scope,
                classification: inc.classification,
            };
            let mode = match modes.get(&group) {
                Some(m) => *m,
                None => {
                    let m = book.capture_for(&group);
                    modes.insert(group.clone(), m);
                    m
                }
            };
            if mode == CaptureMode::None {
                *drops.entry(group).or_default() += 1;
                continue;
            }
            if placement
                .last()
                .is_none_or(|(t, s, _)| *t != group.tenant || *s != group.stream)
                && !placement
                    .iter()
                    .any(|(t, s, _)| *t == group.tenant && *s == group.stream)
            {
                let class = book.expiry_class(&group);
                placement.push((group.tenant.clone(), group.stream.clone(), class));
            }
            let tk = match tenants.get(&group.tenant) {
                Some(k) => k.clone(),
                None => {
                    let k = self
                        .keys
                        .tenant(
                            &group.tenant,
                            Some(only.map_or("system/ingest", |s| s.actor.as_str())),
                            now_us,
                        )?
                        .expect("created on demand");
                    tenants.insert(group.tenant.clone(), k.clone());
                    k
                }
            };
            let id = match inc.id {
                Some(id) => id,
                None => {
                    // UUIDv7 from the event time; random bits from the thread RNG
                    // (a syscall per id would cost more than the record).
                    let mut rnd = [0u8; 10];
                    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut rnd);
                    *uuid::Builder::from_unix_timestamp_millis((ts_us / 1000) as u64, &rnd)
                        .into_uuid()
                        .as_bytes()
                }
            };
            let pseudonym = inc.subject.as_deref().map(|s| tk.pseudonym(s));
            let key_ref = match &pseudonym {
                Some(p) => [b"s:".as_slice(), p].concat(),
                None => format!("p:{}", &record::format_ts(ts_us)[..7]).into_bytes(),
            };
            let mut plain = String::with_capacity(256);
            plain.push('{');
            let mut encrypted: Vec<(std::borrow::Cow<'_, str>, &[u8])> = Vec::new();
            let mut subject_value: Option<std::borrow::Cow<'_, str>> = None;
            if let Some(s) = inc.subject {
                // The subject is kept as its bare UTF-8 string; other fields as raw JSON.
                subject_value = Some(s);
            }
            for (name, class, is_prompt, raw) in inc.fields {
                if !mode.keeps(class, is_prompt) {
                    continue;
                }
                match class {
                    FieldClass::Plain => {
                        if plain.len() > 1 {
                            plain.push(',');
                        }
                        push_json_string(&mut plain, &name);
                        plain.push(':');
                        plain.push_str(raw.get());
                    }
                    _ => encrypted.push((name, raw.get().as_bytes())),
                }
            }
            plain.push('}');
            pending.push(Pending {
                rec: NewRecord {
                    id,
                    group,
                    ts_us,
                    received_us: now_us,
                    pseudonym,
                    key_id: None,
                    plain,
                    body: None,
                },
                key_ref,
                subject: subject_value,
                encrypted,
                line,
            });
        }

        // Resolve data keys per tenant in one store round trip each.
        let mut by_tenant: HashMap<TenantId, Vec<usize>> = HashMap::new();
        for (i, p) in pending.iter().enumerate() {
            by_tenant.entry(p.rec.group.tenant.clone()).or_default().push(i);
        }
        let mut keys = vec![None; pending.len()];
        let mut new_keys = Vec::new();
        for (tenant, idx) in by_tenant {
            let tk = &tenants[&tenant];
            // Distinct references of this tenant, each resolved once.
            let mut slot: HashMap<&[u8], usize> = HashMap::with_capacity(idx.len());
            let mut refs: Vec<Vec<u8>> = Vec::new();
            let which: Vec<usize> = idx
                .iter()
                .map(|&i| {
                    *slot.entry(pending[i].key_ref.as_slice()).or_insert_with(|| {
                        refs.push(pending[i].key_ref.clone());
                        refs.len() - 1
                    })
                })
                .collect();
            let resolved = self.keys.data_keys(&tenant, tk, &refs, &mut new_keys, key_generation)?;
            for (i, w) in idx.into_iter().zip(which) {
                keys[i] = Some(resolved[w].clone());
            }
        }

        let mut records = Vec::with_capacity(pending.len());
        let mut digests = Vec::with_capacity(pending.len());
        let mut packer = record::value::Packer::new(self.config.store.compress_personal);
        let mut packed = Vec::with_capacity(2048);
        for (p, k) in pending.into_iter().zip(keys) {
            let (key_id, dk) = k.expect("resolved above");
            let mut rec = p.rec;
            let personal = if !p.encrypted.is_empty() || p.subject.is_some() {
                let Some(dk) = dk else {
                    rejections.push(Rejection {
                        line: p.line,
                        field: "subject".into(),
                        message: "this subject was erased and its key destroyed; records for it are refused".into(),
                    });
                    continue;
                };
                let dk = dk.sealer();
                let mut blobs: Vec<(&str, Vec<u8>)> = Vec::with_capacity(p.encrypted.len() + 1);
                if let Some(s) = &p.subject {
                    packed.clear();
                    packer.pack(s.as_bytes(), &mut packed);
                    let mut ct = Vec::with_capacity(packed.len() + 28);
                    dk.seal_field(&rec.id, SUBJECT_FIELD, &packed, &mut ct);
                    blobs.push((SUBJECT_FIELD, ct));
                }
                for (name, value) in &p.encrypted {
                    packed.clear();
                    packer.pack(value, &mut packed);
                    let mut ct = Vec::with_capacity(packed.len() + 28);
                    dk.seal_field(&rec.id, name, &packed, &mut ct);
                    blobs.push((name.as_ref(), ct));
                }
                let mut out = Vec::with_capacity(blobs.iter().map(|(n, b)| n.len() + b.len() + 5).sum::<usize>() + 3);
                body::encode(blobs.iter().map(|(n, b)| (*n, b.as_slice())), &mut out);
                rec.body = Some(out);
                rec.key_id = Some(key_id);
                integrity::personal_digest(
                    &rec.id,
                    rec.pseudonym.as_ref(),
                    rec.key_id,
                    blobs.iter().map(|(n, b)| (*n, b.as_slice())),
                )
            } else {
                integrity::personal_digest(&rec.id, rec.pseudonym.as_ref(), None, std::iter::empty())
            };
            // The header's digests are computed here, off the store's thread.
            digests.push(Digests {
                plain: integrity::plain_digest(&rec.plain),
                personal,
            });
            records.push(rec);
        }
        rejections.sort_by_key(|r| r.line);
        let drops = drops
            .into_iter()
            .map(|(key, count)| CaptureDrop { key, count })
            .collect();
        let n = lines.len() as u64;
        drop(lines);
        Ok(Prepared {
            lines: n,
            batch: Batch {
                records,
                digests,
                mac_keys: tenants.iter().map(|(t, k)| (t.clone(), k.mac_key().clone())).collect(),
                drops,
                // The store records the keys it actually stores, one
                // ledger entry per tenant, in the commit that stores them.
                key_ledger: (!new_keys.is_empty()).then(|| lethe_store::KeyLedger {
                    key: self.ledger_key.clone(),
                    actor: only.map_or_else(|| "system/ingest".to_string(), |s| s.actor.clone()),
                    ts_us: now_us,
                }),
                new_keys,
                placement,
            },
            rejections,
            input,
            spans,
            now_us,
            only: only.cloned(),
            key_generation,
        })
    }
}

/// Appends `s` as a JSON string. Field names are almost always plain
/// identifiers, which need no escaping; anything else goes through serde.
fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).expect("strings serialize"));
    }
}
