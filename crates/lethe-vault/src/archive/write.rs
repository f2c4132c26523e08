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
use super::target::{InFlight, ReadBack, Stored, Target, Targets, Upload};
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

/// Archive-bound groups: (scope, classification code) → (rule, archive window).
type GroupRules = BTreeMap<(String, u8), (String, Window)>;

/// Rows of one partition that rules archiving to one target remove.
#[derive(Debug, Clone)]
struct Piece {
    target: String,
    tenant: String,
    stream: String,
    partition: i64,
    start_us: i64,
    ranges: Vec<[u64; 2]>,
    groups: GroupRules,
}

impl Piece {
    fn id(&self) -> (String, String, String, i64) {
        (
            self.target.clone(),
            self.tenant.clone(),
            self.stream.clone(),
            self.start_us,
        )
    }
}

impl Vault {
    /// Archives what `plan` removes under `archive_then_delete` rules (see
    /// the module doc). Nothing is deleted here.
    #[allow(clippy::too_many_arguments)]
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
        let book = self.policy_book();
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
            let mut todo: Vec<&Piece> = Vec::new();
            for p in &pieces {
                if done.get(&p.id()).is_some_and(|r| *r == p.ranges) {
                    continue;
                }
                if all.target(&p.target).is_none() {
                    failed.insert(p.target.clone(), format!("no archive target `{}`", p.target));
                    continue;
                }
                todo.push(p);
            }
            for attempt in 0..ATTEMPTS {
                if todo.is_empty() {
                    break;
                }
                if attempt > 0 {
                    std::thread::sleep(Duration::from_millis(200 << attempt));
                }
                let results = self.write_pieces(all, &todo, reader.as_mut(), policy_version, now_us, &run, clock);
                let mut again = Vec::new();
                for (p, r) in todo.into_iter().zip(results) {
                    match r {
                        Ok(ms) => {
                            manifests.extend(ms);
                            done.insert(p.id(), p.ranges.clone());
                            failed.remove(&p.target);
                        }
                        Err(e) => {
                            failed.insert(p.target.clone(), e);
                            again.push(p);
                        }
                    }
                }
                todo = again;
            }
            // Only targets with pieces still unwritten are failing.
            let left: BTreeSet<&str> = todo.iter().map(|p| p.target.as_str()).collect();
            failed.retain(|t, _| left.contains(t.as_str()) || all.target(t).is_none());
            if failed.is_empty() {
                break;
            }
            // Rules archiving to a failing target sit this run out; the
            // others are planned again (the plan only shrinks, except for
            // records that arrived meanwhile, which get archived on the
            // next pass of this loop).
            for t in &targets {
                let rule = book.retention_for(&t.key);
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
                book.retention_for(&t.key)
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
    pub(crate) fn publish_manifests(
        &self,
        manifests: &mut [Manifest],
        intent: Option<u64>,
        receipt: u64,
    ) -> Result<()> {
        let all = self.archive_targets()?;
        let mut per_target: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        for m in manifests.iter_mut() {
            m.intent = intent;
            m.receipt = Some(receipt);
            let body = serde_json::to_vec_pretty(&*m).expect("manifest serializes");
            per_target
                .entry(m.target.clone())
                .or_default()
                .push((m.key().manifest(), body));
        }
        for (name, objects) in per_target {
            let t = all
                .target(&name)
                .ok_or_else(|| VaultError::Archive(format!("no archive target `{name}`")))?;
            // In batches, so a crash point can fall between them.
            for batch in objects.chunks(64) {
                all.put_many(t, batch.to_vec())?;
                crashpoint::hit("archive.mid_manifests");
            }
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
        let book = self.policy_book();
        for t in targets {
            let rule = book.retention_for(&t.key);
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
                let mut per_target: BTreeMap<&str, GroupRules> = BTreeMap::new();
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

    /// Writes pieces as objects, each read back and checked: this thread
    /// reads and encodes rows while a worker compresses, uploads and reads
    /// back the previous object (the two cores each take a half). Returns
    /// per piece its manifests or the error that stopped it; after a
    /// piece's target fails, its later pieces are not attempted this round.
    #[allow(clippy::too_many_arguments)]
    fn write_pieces(
        &self,
        all: &Targets,
        pieces: &[&Piece],
        reader: &mut dyn RowReader,
        policy_version: i64,
        now_us: i64,
        run: &str,
        clock: &dyn Fn() -> i64,
    ) -> Vec<std::result::Result<Vec<Manifest>, String>> {
        let max_raw = self.config.archive.object_max_mb.saturating_mul(1 << 20);
        let level = self.config.archive.zstd_level;
        // One compressor for the run (see `Frames`); without it no piece can be written.
        let frames = match Frames::new(level) {
            Ok(f) => f,
            Err(e) => return vec![Err(format!("zstd level {level}: {e}")); pieces.len()],
        };
        let mut results: Vec<std::result::Result<Vec<Manifest>, String>> = vec![Ok(Vec::new()); pieces.len()];
        let (jobs, inbox) = std::sync::mpsc::sync_channel::<Job<'_>>(IN_FLIGHT);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Result<Manifest>)>();
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("lethe-compress".into())
                .spawn_scoped(scope, move || worker(all, frames, inbox, done_tx))
                .expect("spawning the archive worker");
            let mut dead: BTreeMap<String, String> = BTreeMap::new();
            let take = |results: &mut Vec<std::result::Result<Vec<Manifest>, String>>,
                        dead: &mut BTreeMap<String, String>,
                        (i, r): (usize, Result<Manifest>)| {
                match r {
                    Ok(mut m) => {
                        m.policy_version = policy_version;
                        m.run = run.to_string();
                        m.written_at = format_ts(clock());
                        if let Ok(v) = &mut results[i] {
                            v.push(m);
                        }
                    }
                    Err(e) => {
                        let e = e.to_string();
                        dead.insert(pieces[i].target.clone(), e.clone());
                        results[i] = Err(e);
                    }
                }
            };
            for (i, p) in pieces.iter().enumerate() {
                while let Ok(r) = done_rx.try_recv() {
                    take(&mut results, &mut dead, r);
                }
                if let Some(e) = dead.get(p.target.as_str()) {
                    results[i] = Err(e.clone());
                    continue;
                }
                let target = all.target(&p.target).expect("checked by the caller");
                if let Err(e) = encode_piece(i, p, target, reader, &jobs, max_raw, now_us) {
                    results[i] = Err(e.to_string());
                }
            }
            drop(jobs);
            for r in done_rx.iter() {
                take(&mut results, &mut dead, r);
            }
        });
        results
    }
}

/// Raw NDJSON handed to the worker at a time.
const CHUNK: usize = 1 << 20;
/// Chunks queued for the worker (bounds memory).
const IN_FLIGHT: usize = 8;

/// What the reading thread sends the worker.
enum Job<'a> {
    /// Start an object on this target.
    Begin(&'a Target),
    /// NDJSON lines of the current object.
    Chunk(Vec<u8>),
    /// The current object is complete: finish, read back, check.
    End(Box<(usize, Manifest)>),
    /// The current object is abandoned.
    Abort,
}

/// Reads a piece's rows in sequence order and sends them, as NDJSON, to the worker.
fn encode_piece<'a>(
    i: usize,
    p: &Piece,
    target: &'a Target,
    reader: &mut dyn RowReader,
    jobs: &std::sync::mpsc::SyncSender<Job<'a>>,
    max_raw: u64,
    now_us: i64,
) -> Result<()> {
    let gone = || VaultError::Archive("archive worker stopped".into());
    let date = day_of(p.start_us);
    let mut cur: Option<Open> = None;
    let mut err: Option<VaultError> = None;
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
            if cur.is_none() {
                if jobs.send(Job::Begin(target)).is_err() {
                    err = Some(gone());
                    return;
                }
                cur = Some(Open {
                    buf: Vec::with_capacity(CHUNK + CHUNK / 8),
                    ..Open::default()
                });
            }
            let o = cur.as_mut().expect("opened");
            if let Err(e) = encode_line(&mut o.buf, &p.tenant, &p.stream, &row) {
                err = Some(VaultError::Invalid(format!(
                    "{}/{} seq {}: {e}",
                    p.tenant, p.stream, row.seq
                )));
                return;
            }
            o.note(&row, rule, *window);
            if o.buf.len() >= CHUNK && o.flush(jobs).is_err() {
                err = Some(gone());
                return;
            }
            if o.raw_bytes >= max_raw {
                let o = cur.take().expect("opened");
                if o.end(i, p, target, &date, jobs).is_err() {
                    err = Some(gone());
                }
            }
        })?;
        if let Some(e) = err.take() {
            if cur.is_some() {
                let _ = jobs.send(Job::Abort);
            }
            return Err(e);
        }
    }
    if let Some(o) = cur.take() {
        o.end(i, p, target, &date, jobs).map_err(|_| gone())?;
    }
    Ok(())
}

/// An object being encoded: its pending lines and what its manifest will say.
#[derive(Default)]
struct Open {
    buf: Vec<u8>,
    sent: u64,
    records: u64,
    raw_bytes: u64,
    first: u64,
    last: u64,
    oldest: i64,
    newest: i64,
    groups: BTreeMap<(String, u8), (String, Window, u64)>,
}

impl Open {
    /// Notes a row whose line was just appended to `buf`.
    fn note(&mut self, row: &lethe_store::row::RawRow, rule: &str, window: Window) {
        if self.records == 0 {
            self.first = row.seq;
            self.oldest = row.ts_us;
            self.newest = row.ts_us;
        }
        self.records += 1;
        self.last = row.seq;
        self.raw_bytes = self.sent + self.buf.len() as u64;
        self.oldest = self.oldest.min(row.ts_us);
        self.newest = self.newest.max(row.ts_us);
        self.groups
            .entry((row.scope.clone(), row.class))
            .or_insert_with(|| (rule.to_string(), window, 0))
            .2 += 1;
    }

    /// Hands the pending lines to the worker.
    fn flush<'a>(&mut self, jobs: &std::sync::mpsc::SyncSender<Job<'a>>) -> Result<(), ()> {
        self.sent += self.buf.len() as u64;
        // Sized for a whole chunk (and a line past it): growing it by
        // doubling copied every chunk about once more.
        let next = Vec::with_capacity(CHUNK + CHUNK / 8);
        jobs.send(Job::Chunk(std::mem::replace(&mut self.buf, next)))
            .map_err(|_| ())
    }

    /// Completes the object: the rest of its lines, then its manifest (the
    /// worker fills in size and SHA-256 once it has read the object back).
    fn end<'a>(
        mut self,
        i: usize,
        p: &Piece,
        target: &Target,
        date: &str,
        jobs: &std::sync::mpsc::SyncSender<Job<'a>>,
    ) -> Result<(), ()> {
        if !self.buf.is_empty() {
            self.flush(jobs)?;
        }
        let key = ObjectKey {
            tenant: p.tenant.clone(),
            stream: p.stream.clone(),
            date: date.to_string(),
            first: self.first,
            last: self.last,
        };
        let m = Manifest {
            format: FORMAT,
            object: key.object(),
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
            bytes: 0,
            raw_bytes: self.raw_bytes,
            sha256: String::new(),
            policy_version: 0,
            run: String::new(),
            written_at: String::new(),
            archive_entry: None,
            intent: None,
            receipt: None,
        };
        jobs.send(Job::End(Box::new((i, m)))).map_err(|_| ())
    }
}

/// Objects whose upload and read-back may run in the background at once.
const CHECKS_IN_FLIGHT: usize = 4;

/// The worker: compresses each object as its lines arrive and hands it to
/// the target, whose upload and read-back run in the background while the
/// next object is compressed; checks each read-back (size, SHA-256, record
/// count, raw size) against what was meant to be written and reports each
/// object's outcome.
fn worker(
    all: &Targets,
    mut frames: Frames,
    inbox: std::sync::mpsc::Receiver<Job<'_>>,
    done: std::sync::mpsc::Sender<(usize, Result<Manifest>)>,
) {
    type Checking<'t> = (usize, &'t Target, Manifest, Stored, InFlight);
    let mut cur: Option<(&Target, Upload<'_>)> = None;
    let mut failure: Option<VaultError> = None;
    let mut checking: std::collections::VecDeque<Checking<'_>> = std::collections::VecDeque::new();
    let settle = |c: Checking<'_>| {
        let (i, t, m, stored, f) = c;
        let r = all
            .wait(f)
            .map_err(VaultError::from)
            .and_then(|back| check(t, m, &stored, &back));
        done.send((i, r)).is_ok()
    };
    for job in inbox {
        match job {
            Job::Begin(t) => {
                failure = None;
                cur = Some((t, all.upload(t)));
            }
            Job::Chunk(b) => {
                if let (None, Some((t, up))) = (&failure, cur.as_mut()) {
                    if let Err(e) = frames.write(&b, up) {
                        failure = Some(VaultError::Archive(format!("archive target `{}`: {e}", t.name)));
                    }
                }
            }
            Job::Abort => {
                if let Some((_, up)) = cur.take() {
                    up.abort();
                }
            }
            Job::End(b) => {
                let (i, m) = *b;
                let started = match (failure.take(), cur.take()) {
                    (Some(e), cur) => {
                        if let Some((_, up)) = cur {
                            up.abort();
                        }
                        Err(e)
                    }
                    (None, Some((t, up))) => up
                        .finish_checked(&m.object)
                        .map_err(VaultError::from)
                        .map(|(stored, f)| (t, stored, f)),
                    (None, None) => Err(VaultError::Archive("archive object ended before it began".into())),
                };
                match started {
                    Ok((t, stored, f)) => checking.push_back((i, t, m, stored, f)),
                    Err(e) => {
                        if done.send((i, Err(e))).is_err() {
                            return;
                        }
                    }
                }
                while checking.len() > CHECKS_IN_FLIGHT {
                    if !settle(checking.pop_front().expect("non-empty")) {
                        return;
                    }
                }
            }
        }
    }
    for c in checking {
        if !settle(c) {
            return;
        }
    }
}

/// Compresses an object's NDJSON chunk by chunk, each chunk (~1 MiB of
/// whole lines) as a zstd frame of its own: an object is a sequence of
/// frames, which `zstd -dc` and every streaming decoder read as one stream.
/// Compressing each chunk in one call keeps zstd on its fast path — a
/// streaming encoder's window buffer wraps inside larger objects and every
/// later block takes the slower external-dictionary path — and reuses one
/// context for the whole run.
struct Frames {
    cctx: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
}

impl Frames {
    /// Fast (negative) levels keep Huffman coding of literals on: zstd
    /// turns it off for them by default, which on lines that are mostly
    /// base64 ciphertext costs a quarter of the size (the coding is what
    /// undoes base64's 4/3), while most of the time level 1 spends is
    /// match finding that finds little in ciphertext.
    fn new(level: i32) -> std::io::Result<Frames> {
        let mut cctx = zstd::bulk::Compressor::new(level)?;
        if level < 0 {
            cctx.set_parameter(zstd::zstd_safe::CParameter::LiteralCompressionMode(
                zstd::zstd_safe::ParamSwitch::Enable,
            ))?;
        }
        // The frame says how many bytes it holds: decoders size their
        // buffers to it.
        cctx.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))?;
        Ok(Frames { cctx, out: Vec::new() })
    }

    /// Compresses one chunk into one frame and writes it on.
    fn write(&mut self, chunk: &[u8], to: &mut impl Write) -> std::io::Result<()> {
        self.out.clear();
        self.out.reserve(zstd::zstd_safe::compress_bound(chunk.len()));
        self.cctx.compress_to_buffer(chunk, &mut self.out)?;
        to.write_all(&self.out)
    }
}

/// Checks an object's read-back against what was written.
fn check(target: &Target, mut m: Manifest, stored: &Stored, back: &ReadBack) -> Result<Manifest> {
    let path = &m.object;
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
    if back.lines != m.records || back.raw_bytes != m.raw_bytes {
        return Err(mismatch(format!(
            "{} records ({} bytes), wrote {} ({} bytes)",
            back.lines, back.raw_bytes, m.records, m.raw_bytes
        )));
    }
    crashpoint::hit("archive.after_object");
    m.bytes = stored.bytes;
    m.sha256 = stored.sha256.clone();
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks of lines, each ~1 MiB, as a fast level would see them.
    fn chunks() -> Vec<Vec<u8>> {
        (0..3)
            .map(|c| {
                let mut b = Vec::new();
                let mut i = 0u64;
                while b.len() < CHUNK {
                    // Half repetitive, half incompressible-looking, like archive lines.
                    let noise = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ c).to_string();
                    b.extend_from_slice(
                        format!("{{\"seq\":{i},\"fields\":{{\"a\":1}},\"p\":\"{noise}\"}}\n").as_bytes(),
                    );
                    i += 1;
                }
                b
            })
            .collect()
    }

    #[test]
    fn an_object_of_several_frames_reads_back_as_one_stream_by_reader_and_writer_decoders() {
        for level in [-3, 1] {
            let input = chunks();
            let mut frames = Frames::new(level).unwrap();
            let mut object = Vec::new();
            for c in &input {
                frames.write(c, &mut object).unwrap();
            }
            let whole: Vec<u8> = input.concat();
            assert!(object.len() < whole.len(), "compressed");
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut zstd::stream::read::Decoder::new(&object[..]).unwrap(), &mut back).unwrap();
            assert_eq!(back, whole, "level {level}: read decoder");
            let mut w = zstd::stream::write::Decoder::new(Vec::new()).unwrap();
            w.write_all(&object).unwrap();
            w.flush().unwrap();
            assert_eq!(w.into_inner(), whole, "level {level}: write decoder (the read-back's)");
        }
    }
}
