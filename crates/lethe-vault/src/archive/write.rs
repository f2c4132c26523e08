//! The sweep's archive step: before anything is deleted, every record an
//! `archive_then_delete` rule removes is written to its target, read back
//! and checked (SHA-256, size, record count), the target made durable, and
//! the objects recorded in the ledger (`archive.written`). A target that
//! keeps failing takes its rules out of this run: their records stay, the
//! sweep reports them failing, and other rules go ahead.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use lethe_core::hold::HoldScope;
use lethe_core::record::format_ts;
use lethe_core::Window;
use lethe_store::row::DELETED;
use lethe_store::{crashpoint, ChainRemoval, Removal, RetentionTarget, RowReader};
use serde::Serialize;

use super::format::{day_of, encode_line, Manifest, ManifestGroup, ObjectKey, FORMAT};
use super::target::{Target, Targets, Upload};
use crate::{Result, Vault, VaultError};

/// Attempts per piece before its target counts as failing for the run.
const ATTEMPTS: u32 = 3;
/// Objects listed per `archive.written` ledger entry.
const OBJECTS_PER_ENTRY: usize = 256;
/// Catalog key holding the ledger sequence number of a sweep receipt whose
/// archive manifests are not all published yet.
pub(crate) const PENDING_MANIFESTS: &str = "archive.pending_manifests";

/// A rule whose archive target failed: its records were left in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailingPolicy {
    /// Rule name.
    pub rule: String,
    /// Target name.
    pub target: String,
    /// The last error.
    pub error: String,
}

/// What the archive step of one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveSummary {
    /// Run id, shared by the ledger entries and the manifests.
    pub run: String,
    /// Objects written and verified.
    pub objects: u64,
    /// Records in them.
    pub records: u64,
    /// NDJSON bytes before compression.
    pub raw_bytes: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Wall time of writing, reading back and recording (ms).
    pub millis: u64,
    /// `archive.written` ledger entries.
    pub entries: Vec<u64>,
}

/// The archive step's outcome: the plan that may now be applied (rules
/// whose target failed taken out), what was archived, and what failed.
pub(crate) struct Archived {
    pub targets: Vec<RetentionTarget>,
    pub plan: Removal,
    pub summary: Option<ArchiveSummary>,
    pub manifests: Vec<Manifest>,
    pub failing: Vec<FailingPolicy>,
}

/// Rows of one partition that rules archiving to one target remove.
#[derive(Debug, Clone)]
struct Piece {
    target: String,
    tenant: String,
    stream: String,
    partition: i64,
    start_us: i64,
    ranges: Vec<[u64; 2]>,
    /// (scope, classification code) → (rule, archive window).
    groups: BTreeMap<(String, u8), (String, Window)>,
}

impl Piece {
    fn id(&self) -> (String, String, String, i64) {
        (self.target.clone(), self.tenant.clone(), self.stream.clone(), self.start_us)
    }
}

impl Vault {
    /// Archives what `plan` removes under `archive_then_delete` rules (see
    /// the module doc). Nothing is deleted here.
    pub(crate) fn archive_for_sweep(
        &self,
        actor: &str,
        mut targets: Vec<RetentionTarget>,
        holds: &[HoldScope],
        mut plan: Removal,
        policy_version: i64,
        now_us: i64,
        clock: &dyn Fn() -> i64,
    ) -> Result<Archived> {
        let mut failing: Vec<FailingPolicy> = Vec::new();
        let mut pieces = self.pieces(&plan.chains, &targets)?;
        if pieces.is_empty() {
            return Ok(Archived {
                targets,
                plan,
                summary: None,
                manifests: Vec::new(),
                failing,
            });
        }
        let started = Instant::now();
        let run = uuid::Uuid::new_v4().to_string();
        let all = self.archive_targets()?;
        let mut done: HashMap<(String, String, String, i64), Vec<[u64; 2]>> = HashMap::new();
        let mut manifests: Vec<Manifest> = Vec::new();
        let mut reader = self.store.row_reader()?;
        loop {
            let mut failed: BTreeMap<String, String> = BTreeMap::new();
            for p in &pieces {
                if failed.contains_key(&p.target) || done.get(&p.id()).is_some_and(|r| *r == p.ranges) {
                    continue;
                }
                let Some(t) = all.target(&p.target) else {
                    failed.insert(p.target.clone(), format!("no archive target `{}`", p.target));
                    continue;
                };
                let mut last = String::new();
                let mut ok = false;
                for attempt in 0..ATTEMPTS {
                    if attempt > 0 {
                        std::thread::sleep(Duration::from_millis(200 << attempt));
                    }
                    match self.write_piece(all, t, p, reader.as_mut(), policy_version, now_us, &run, clock) {
                        Ok(ms) => {
                            manifests.extend(ms);
                            done.insert(p.id(), p.ranges.clone());
                            ok = true;
                            break;
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                if !ok {
                    failed.insert(p.target.clone(), last);
                }
            }
            if failed.is_empty() {
                break;
            }
            // Rules archiving to a failing target sit this run out; the
            // others are planned again (the plan only shrinks, except for
            // records that arrived meanwhile, which get archived on the
            // next pass of this loop).
            for t in &targets {
                let rule = self.book.retention_for(&t.key);
                if let Some(a) = rule.archive.as_ref().filter(|a| failed.contains_key(&a.target)) {
                    if !failing.iter().any(|f| f.rule == rule.name) {
                        failing.push(FailingPolicy {
                            rule: rule.name.clone(),
                            target: a.target.clone(),
                            error: failed[&a.target].clone(),
                        });
                    }
                }
            }
            targets.retain(|t| {
                self.book
                    .retention_for(&t.key)
                    .archive
                    .as_ref()
                    .is_none_or(|a| !failed.contains_key(&a.target))
            });
            manifests.retain(|m| !failed.contains_key(&m.target));
            plan = self.store.plan_removal(&targets, holds)?;
            pieces = self.pieces(&plan.chains, &targets)?;
        }
        drop(reader);
        // Durable on the target, then in the ledger: only then may the
        // sweep write its intent and delete.
        let used: BTreeSet<&str> = manifests.iter().map(|m| m.target.as_str()).collect();
        for name in used {
            all.sync(all.target(name).expect("target exists"))?;
        }
        let mut entries = Vec::new();
        let mut by_target: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, m) in manifests.iter().enumerate() {
            by_target.entry(m.target.as_str()).or_default().push(i);
        }
        let mut entry_of = vec![0u64; manifests.len()];
        for (name, idx) in by_target {
            for chunk in idx.chunks(OBJECTS_PER_ENTRY) {
                let objects: Vec<&Manifest> = chunk.iter().map(|&i| &manifests[i]).collect();
                let e = self.record(
                    clock(),
                    actor,
                    "archive.written",
                    None,
                    &serde_json::json!({
                        "run": run, "target": name, "policy_version": policy_version, "objects": objects,
                    }),
                )?;
                for &i in chunk {
                    entry_of[i] = e.seq;
                }
                entries.push(e.seq);
            }
        }
        for (m, e) in manifests.iter_mut().zip(entry_of) {
            m.archive_entry = Some(e);
        }
        crashpoint::hit("archive.after_written");
        let summary = ArchiveSummary {
            run,
            objects: manifests.len() as u64,
            records: manifests.iter().map(|m| m.records).sum(),
            raw_bytes: manifests.iter().map(|m| m.raw_bytes).sum(),
            bytes: manifests.iter().map(|m| m.bytes).sum(),
            millis: started.elapsed().as_millis() as u64,
            entries,
        };
        Ok(Archived {
            targets,
            plan,
            summary: Some(summary),
            manifests,
            failing,
        })
    }

    /// Publishes the manifests of an archive run next to their objects, now
    /// that the sweep's receipt exists, then clears the pending mark.
    pub(crate) fn publish_manifests(&self, manifests: &mut [Manifest], intent: Option<u64>, receipt: u64) -> Result<()> {
        let all = self.archive_targets()?;
        for m in manifests.iter_mut() {
            m.intent = intent;
            m.receipt = Some(receipt);
            let t = all
                .target(&m.target)
                .ok_or_else(|| VaultError::Archive(format!("no archive target `{}`", m.target)))?;
            let body = serde_json::to_vec_pretty(&*m).expect("manifest serializes");
            all.put(t, &m.key().manifest(), body)?;
            crashpoint::hit("archive.mid_manifests");
        }
        self.store.set_meta(PENDING_MANIFESTS, None)?;
        Ok(())
    }

    /// Publishes the manifests of a sweep whose receipt is written but whose
    /// manifests a crash (or an unreachable target) left unwritten: rebuilt
    /// from the run's `archive.written` ledger entries.
    pub(crate) fn recover_manifests(&self) -> Result<()> {
        let Some(seq) = self.store.meta(PENDING_MANIFESTS)? else {
            return Ok(());
        };
        let seq: u64 = seq
            .parse()
            .map_err(|_| VaultError::Invalid(format!("bad pending manifests `{seq}`")))?;
        let Some(receipt) = self.store.ledger(seq, 1)?.into_iter().find(|e| e.seq == seq) else {
            self.store.set_meta(PENDING_MANIFESTS, None)?;
            return Ok(());
        };
        let body: serde_json::Value = serde_json::from_str(&receipt.body).unwrap_or_default();
        let intent = body["intent"].as_u64();
        let entries: Vec<u64> = body["archive"]["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_u64())
            .collect();
        let mut manifests = Vec::new();
        for e in entries {
            let Some(entry) = self.store.ledger(e, 1)?.into_iter().find(|x| x.seq == e) else {
                continue;
            };
            #[derive(serde::Deserialize)]
            struct Written {
                objects: Vec<Manifest>,
            }
            let w: Written = serde_json::from_str(&entry.body)
                .map_err(|err| VaultError::Invalid(format!("archive.written entry {e}: {err}")))?;
            for mut m in w.objects {
                m.archive_entry = Some(e);
                manifests.push(m);
            }
        }
        self.publish_manifests(&mut manifests, intent, seq)
    }

    /// The archive-bound pieces of a removal.
    fn pieces(&self, chains: &[ChainRemoval], targets: &[RetentionTarget]) -> Result<Vec<Piece>> {
        // Per chain: archive-bound groups → (target, rule, window).
        type Groups = BTreeMap<(String, u8), (String, String, Window)>;
        let mut bound: HashMap<(String, String), Groups> = HashMap::new();
        for t in targets {
            let rule = self.book.retention_for(&t.key);
            if let Some(a) = &rule.archive {
                bound
                    .entry((t.key.tenant.to_string(), t.key.stream.to_string()))
                    .or_default()
                    .insert(
                        (t.key.scope.clone(), t.key.classification.code()),
                        (a.target.clone(), rule.name.clone(), a.window),
                    );
            }
        }
        let mut out = Vec::new();
        for c in chains {
            let Some(groups) = bound.get(&(c.tenant.clone(), c.stream.clone())) else {
                continue;
            };
            let parts: HashMap<i64, i64> = self
                .store
                .segments(&c.tenant, &c.stream)?
                .into_iter()
                .map(|s| (s.start_us, s.partition))
                .collect();
            let mut push = |start_us: i64, ranges: Vec<[u64; 2]>, only: Option<&[(String, u8)]>| -> Result<()> {
                let Some(&partition) = parts.get(&start_us) else {
                    return Err(VaultError::Invalid(format!(
                        "{}/{}: no partition starting {} to archive from",
                        c.tenant,
                        c.stream,
                        format_ts(start_us)
                    )));
                };
                let mut per_target: BTreeMap<&str, BTreeMap<(String, u8), (String, Window)>> = BTreeMap::new();
                for (g, (target, rule, window)) in groups {
                    if only.is_some_and(|o| !o.contains(g)) {
                        continue;
                    }
                    per_target
                        .entry(target.as_str())
                        .or_default()
                        .insert(g.clone(), (rule.clone(), *window));
                }
                for (target, g) in per_target {
                    out.push(Piece {
                        target: target.to_string(),
                        tenant: c.tenant.clone(),
                        stream: c.stream.clone(),
                        partition,
                        start_us,
                        ranges: ranges.clone(),
                        groups: g,
                    });
                }
                Ok(())
            };
            for d in &c.dropped {
                let held: Vec<(String, u8)> = d.groups.iter().map(|g| (g.scope.clone(), g.class)).collect();
                let ranges = d.segments.iter().map(|s| [s.first, s.last]).collect();
                push(d.start_us, ranges, Some(&held))?;
            }
            for r in c.rows.iter().filter(|r| r.action == lethe_core::policy::Action::Delete) {
                push(r.partition_start_us, r.seqs.clone(), None)?;
            }
        }
        Ok(out)
    }

    /// Writes one piece as one or more objects, each read back and checked.
    #[allow(clippy::too_many_arguments)]
    fn write_piece(
        &self,
        all: &Targets,
        target: &Target,
        p: &Piece,
        reader: &mut dyn RowReader,
        policy_version: i64,
        now_us: i64,
        run: &str,
        clock: &dyn Fn() -> i64,
    ) -> Result<Vec<Manifest>> {
        let max_raw = self.config.archive.object_max_mb.saturating_mul(1 << 20);
        let level = self.config.archive.zstd_level;
        let mut out = Vec::new();
        let mut cur: Option<Open<'_>> = None;
        let mut line = Vec::with_capacity(4096);
        let mut err: Option<VaultError> = None;
        let date = day_of(p.start_us);
        for &[first, last] in &p.ranges {
            reader.scan(p.partition, first, last, &mut |row| {
                if err.is_some() || row.state == DELETED {
                    return;
                }
                let Some((rule, window)) = p.groups.get(&(row.scope.clone(), row.class)) else {
                    return;
                };
                // A record already past its archive window would be deleted
                // from the archive by this same run: it is not copied.
                if window.micros().is_some_and(|w| row.ts_us.saturating_add(w) <= now_us) {
                    return;
                }
                line.clear();
                if let Err(e) = encode_line(&mut line, &p.tenant, &p.stream, &row) {
                    err = Some(VaultError::Invalid(format!("{}/{} seq {}: {e}", p.tenant, p.stream, row.seq)));
                    return;
                }
                if cur.is_none() {
                    match Open::start(all, target, level) {
                        Ok(o) => cur = Some(o),
                        Err(e) => {
                            err = Some(e);
                            return;
                        }
                    }
                }
                let o = cur.as_mut().expect("opened");
                if let Err(e) = o.push(&line, &row, rule, *window) {
                    err = Some(e);
                    return;
                }
                if o.raw_bytes >= max_raw {
                    let o = cur.take().expect("opened");
                    match o.finish(all, target, p, &date, policy_version, run, clock) {
                        Ok(m) => out.push(m),
                        Err(e) => err = Some(e),
                    }
                }
            })?;
            if let Some(e) = err.take() {
                if let Some(o) = cur.take() {
                    o.upload_abort();
                }
                return Err(e);
            }
        }
        if let Some(o) = cur.take() {
            out.push(o.finish(all, target, p, &date, policy_version, run, clock)?);
        }
        Ok(out)
    }
}

/// An object being written.
struct Open<'a> {
    enc: zstd::stream::write::Encoder<'static, Upload<'a>>,
    records: u64,
    raw_bytes: u64,
    first: u64,
    last: u64,
    oldest: i64,
    newest: i64,
    groups: BTreeMap<(String, u8), (String, Window, u64)>,
}

impl<'a> Open<'a> {
    fn start(all: &'a Targets, target: &'a Target, level: i32) -> Result<Open<'a>> {
        let mut enc = zstd::stream::write::Encoder::new(all.upload(target), level)?;
        // Compression runs on a worker of its own while this thread reads
        // and encodes rows: the two cores each do half the work.
        enc.multithread(1)?;
        Ok(Open {
            enc,
            records: 0,
            raw_bytes: 0,
            first: 0,
            last: 0,
            oldest: i64::MAX,
            newest: i64::MIN,
            groups: BTreeMap::new(),
        })
    }

    fn push(&mut self, line: &[u8], row: &lethe_store::row::RawRow, rule: &str, window: Window) -> Result<()> {
        self.enc.write_all(line)?;
        if self.records == 0 {
            self.first = row.seq;
        }
        self.records += 1;
        self.last = row.seq;
        self.raw_bytes += line.len() as u64;
        self.oldest = self.oldest.min(row.ts_us);
        self.newest = self.newest.max(row.ts_us);
        self.groups
            .entry((row.scope.clone(), row.class))
            .or_insert_with(|| (rule.to_string(), window, 0))
            .2 += 1;
        Ok(())
    }

    fn upload_abort(self) {
        if let Ok(u) = self.enc.finish() {
            u.abort();
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        self,
        all: &Targets,
        target: &Target,
        p: &Piece,
        date: &str,
        policy_version: i64,
        run: &str,
        clock: &dyn Fn() -> i64,
    ) -> Result<Manifest> {
        let key = ObjectKey {
            tenant: p.tenant.clone(),
            stream: p.stream.clone(),
            date: date.to_string(),
            first: self.first,
            last: self.last,
        };
        let path = key.object();
        let stored = self.enc.finish()?.finish(&path)?;
        fault(all, target, &path)?;
        let back = all.read_back(target, &path)?;
        let mismatch = |what: String| {
            VaultError::Archive(format!(
                "archive target `{}`: {path}: read back {what}; nothing is deleted",
                target.name
            ))
        };
        if back.sha256 != stored.sha256 || back.bytes != stored.bytes {
            return Err(mismatch(format!(
                "{} bytes with SHA-256 {}, wrote {} bytes with SHA-256 {}",
                back.bytes, back.sha256, stored.bytes, stored.sha256
            )));
        }
        if back.lines != self.records || back.raw_bytes != self.raw_bytes {
            return Err(mismatch(format!(
                "{} records ({} bytes), wrote {} ({} bytes)",
                back.lines, back.raw_bytes, self.records, self.raw_bytes
            )));
        }
        crashpoint::hit("archive.after_object");
        Ok(Manifest {
            format: FORMAT,
            object: path,
            target: target.name.clone(),
            tenant: p.tenant.clone(),
            stream: p.stream.clone(),
            date: date.to_string(),
            records: self.records,
            first_seq: self.first,
            last_seq: self.last,
            oldest: format_ts(self.oldest),
            newest: format_ts(self.newest),
            oldest_us: self.oldest,
            newest_us: self.newest,
            groups: self
                .groups
                .into_iter()
                .map(|((scope, class), (rule, window, records))| ManifestGroup {
                    scope,
                    classification: lethe_core::model::Classification::from_code(class)
                        .map(|c| c.as_str().to_string())
                        .unwrap_or_else(|| class.to_string()),
                    rule,
                    archive_window: window,
                    records,
                })
                .collect(),
            bytes: stored.bytes,
            raw_bytes: self.raw_bytes,
            sha256: stored.sha256,
            policy_version,
            run: run.to_string(),
            written_at: format_ts(clock()),
            archive_entry: None,
            intent: None,
            receipt: None,
        })
    }
}

/// Fault injection for tests: with `LETHE_TEST_ARCHIVE_FAULT=corrupt`, every
/// object has one byte flipped on the target after it is written and before
/// it is read back — what a bad disk or a broken proxy would do.
fn fault(all: &Targets, target: &Target, path: &str) -> Result<()> {
    if std::env::var("LETHE_TEST_ARCHIVE_FAULT").as_deref() != Ok("corrupt") {
        return Ok(());
    }
    if let Some(mut b) = all.fetch(target, path)? {
        let i = b.len() / 2;
        b[i] ^= 0x01;
        all.put(target, path, b)?;
    }
    Ok(())
}
