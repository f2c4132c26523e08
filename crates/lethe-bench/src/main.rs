//! The bench harness: generates the demo data shape at N records (~1 KB each,
//! 365 days, real-word prompt/response text), then times whole operations on a
//! release build and prints one JSON object of figures.
//!
//! `cargo run --release -p lethe-bench -- --records N [--tenants T] [--spread SPAN | --spread-days D] [--data-dir DIR]`
//!
//! `--tenants T` spreads the records over T tenants of Zipf-like sizes (a
//! platform with many customers) instead of the four demo tenants;
//! `--spread SPAN` puts their event times in that span before now
//! (`365d` by default; `30d`, `1h`…).
//!
//! `--backend postgres` puts the store in a schema of a PostgreSQL database
//! (`--pg-url`, default `LETHE_BENCH_PG_URL` or the local service;
//! `--pg-schema`, dropped first): the same phases, with the schema's
//! relation sizes for bytes and the dropped partitions for the floor.
//!
//! `LETHE_BENCH_ARCHIVE=local` (or `s3`, with `LETHE_BENCH_S3_ENDPOINT` of an
//! S3-compatible server) makes the cleanup `archive_then_delete`: every
//! expired record is archived (written, read back, checked) before it goes.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

mod backend;
mod dashboard;
mod http;
mod http_jobs;

use anyhow::{Context, Result};
use clap::Parser;
use lethe_core::config::{self, Config, Source};
use lethe_vault::synth::Synth;
use lethe_vault::{MasterKeySource, Vault};
use serde_json::{json, Map, Value};

#[derive(Debug, Parser)]
struct Args {
    /// Records to generate.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Data directory (emptied first) [default: ./target/lethe-bench/data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Generator seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Spread the records over this many tenants (`t0001`…, a few large,
    /// most small) instead of the four demo tenants.
    #[arg(long)]
    tenants: Option<u32>,
    /// Spread event times over this span before now (`365d`, `30d`, `1h`).
    #[arg(long, default_value = "365d")]
    spread: lethe_core::Window,
    /// The same in days (`--spread-days 30` is `--spread 30d`), as issue
    /// #13 names it.
    #[arg(long, conflicts_with = "spread")]
    spread_days: Option<u32>,
    /// Ingest with this many concurrent writers, each submitting batches
    /// of `--writer-batch` lines (a service's shape: many clients, small
    /// batches) instead of one `lethe ingest` pipeline.
    #[arg(long, default_value_t = 0)]
    writers: usize,
    /// Lines per batch of each concurrent writer.
    #[arg(long, default_value_t = 100)]
    writer_batch: usize,
    /// `[store] group_commit_records` (0: every batch its own append).
    #[arg(long)]
    group_commit_records: Option<usize>,
    /// HTTP mode: start `lethe serve` and post the records from this many
    /// concurrent clients, `--writer-batch` lines of one tenant per request.
    #[arg(long, default_value_t = 0)]
    http_clients: usize,
    /// Load the records with `lethe ingest`, start `lethe serve` on them
    /// and time each dashboard page's requests (median of 9 rounds).
    #[arg(long)]
    dashboard_timings: bool,
    /// HTTP mode: first load this many records of history (the last 90
    /// days), then run a whole-store sweep and a 1,000-subject erasure job
    /// while the load runs.
    #[arg(long, default_value_t = 0)]
    http_under_jobs: u64,
    /// Hand freed heap memory back to the system between phases (after
    /// ingest, the erasures and the dry run), as `lethe serve` does after
    /// each job; off, the peaks include what earlier phases freed but glibc
    /// kept (the figures of sessions before 25).
    #[arg(long)]
    release_memory: bool,
    /// Single-subject erasures timed (each preview, execute, check and
    /// receipt); the 10,000-subject batch follows.
    #[arg(long, default_value_t = 1000)]
    erasure_subjects: usize,
    /// Subjects of the one batch erasure after them (0: none).
    #[arg(long, default_value_t = 10_000)]
    erasure_batch: usize,
    /// Where the store lives.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: backend::Kind,
    /// PostgreSQL connection URL for `--backend postgres`
    /// [default: LETHE_BENCH_PG_URL, else postgres://postgres@127.0.0.1:5432/test].
    #[arg(long)]
    pg_url: Option<String>,
    /// PostgreSQL schema of the bench store (dropped first).
    #[arg(long, default_value = "lethe_bench")]
    pg_schema: String,
    /// The `lethe` binary the HTTP mode starts.
    #[arg(long, default_value = "target/release/lethe")]
    lethe: PathBuf,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A size line of `/proc/self/status` (`VmHWM`: peak, `VmRSS`: now), in bytes.
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn peak_rss_bytes() -> u64 {
    status_bytes("VmHWM:")
}

fn current_rss_bytes() -> u64 {
    status_bytes("VmRSS:")
}

/// Files under `dir` with their sizes (apparent bytes).
fn files(dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let m = e.metadata()?;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len()));
            }
        }
    }
    Ok(out)
}

/// Writes every line of `s` to `path` (through a `.partial` file renamed
/// when complete, so an interrupted run leaves no half input to reuse).
fn write_synth(path: &Path, mut s: Synth) -> Result<()> {
    let tmp = path.with_extension("partial");
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    let mut line = String::with_capacity(2048);
    while {
        line.clear();
        s.next_line(&mut line)
    } {
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    w.get_ref().sync_all()?;
    drop(w);
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Writes the input once per (records, seed) and reuses it.
fn input_file(base: &Path, args: &Args, now: i64) -> Result<(PathBuf, u64)> {
    let (n, seed) = (args.records, args.seed);
    let span_us = args.spread.micros().context("--spread must be finite")?;
    let shape = match (args.tenants, args.spread.to_string().as_str()) {
        (None, "365d") => String::new(),
        (None, s) => format!("-{s}"),
        (Some(t), s) => format!("-t{t}-{s}"),
    };
    let path = base.join(format!("input-{n}-{seed}{shape}.ndjson"));
    if let Ok(m) = std::fs::metadata(&path) {
        return Ok((path, m.len()));
    }
    eprintln!("generating {n} records into {} …", path.display());
    let mut s = Synth::over(seed, n, now, span_us);
    if let Some(t) = args.tenants {
        s = s.with_tenants(t);
    }
    write_synth(&path, s)?;
    let len = std::fs::metadata(&path)?.len();
    Ok((path, len))
}

/// Files under a directory (partitions, catalog, logs: everything).
fn files_under(dir: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

fn bench_config(store: &backend::Backend, group_commit_records: Option<usize>) -> Result<Config> {
    // The demo streams, every record kept 30 days then deleted (or archived
    // first, kept there forever).
    let text = match std::env::var("LETHE_BENCH_ARCHIVE").as_deref() {
        Err(_) => "[retention.default]\nwindow = \"30d\"\naction = \"delete\"\n".to_string(),
        Ok("local") => "[retention.default]\nwindow = \"30d\"\naction = \"archive_then_delete\"\narchive = \"local\"\narchive_window = \"forever\"\n".to_string(),
        Ok("s3") => {
            let endpoint = std::env::var("LETHE_BENCH_S3_ENDPOINT").context("LETHE_BENCH_ARCHIVE=s3 needs LETHE_BENCH_S3_ENDPOINT")?;
            format!(
                "[retention.default]\nwindow = \"30d\"\naction = \"archive_then_delete\"\narchive = \"s3\"\narchive_window = \"forever\"\n\
                 [archive.targets.s3]\nkind = \"s3\"\nbucket = \"lethe-bench\"\nendpoint = \"{endpoint}\"\npath_style = true\nallow_http = true\naccess_key_id = \"bench\"\nsecret_access_key = \"bench\"\n"
            )
        }
        Ok(other) => anyhow::bail!("LETHE_BENCH_ARCHIVE: unknown target kind `{other}` (local or s3)"),
    };
    let text = match std::env::var("LETHE_BENCH_ARCHIVE_PATH") {
        Ok(p) => format!("{text}[archive.targets.local]\npath = \"{p}\"\n"),
        Err(_) => text,
    };
    let text = match std::env::var("LETHE_BENCH_ZSTD_LEVEL") {
        Ok(l) => format!("{text}[archive]\nzstd_level = {l}\n"),
        Err(_) => text,
    };
    let text = format!("{text}{}", store.store_section(group_commit_records));
    Ok(config::load(
        Source {
            name: "bench",
            text: &text,
        },
        None,
        &[],
    )?)
}

/// Creates the bench bucket on an S3-compatible test server (moto accepts
/// unsigned requests; an existing bucket is fine).
fn create_bucket(endpoint: &str) -> Result<()> {
    use std::io::Read;
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("S3 server at {endpoint}"))?;
    write!(
        s,
        "PUT /lethe-bench HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    anyhow::ensure!(
        resp.starts_with("HTTP/1.1 200") || resp.contains("BucketAlreadyOwnedByYou"),
        "creating the bench bucket: {resp}"
    );
    Ok(())
}

/// Compression of the plain part alone: objects of the local archive
/// target (up to `budget` raw bytes) decompressed, each line stripped of
/// its encrypted fields and key id, recompressed at the same level.
fn plain_ratio(root: &Path, level: i32, budget: u64) -> Result<(f64, f64, u64)> {
    use std::io::Read;
    let mut objects = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".ndjson.zst") {
                objects.push(p);
            }
        }
    }
    objects.sort();
    let (mut raw, mut plain) = (Vec::new(), Vec::new());
    for o in objects {
        if raw.len() as u64 >= budget {
            break;
        }
        zstd::stream::read::Decoder::new(std::fs::File::open(&o)?)?.read_to_end(&mut raw)?;
    }
    for line in raw.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        let mut v: Value = serde_json::from_slice(line)?;
        let o = v.as_object_mut().context("archive line is an object")?;
        o.remove("personal");
        o.remove("key_id");
        serde_json::to_writer(&mut plain, &v)?;
        plain.push(b'\n');
    }
    let whole = zstd::bulk::compress(&raw, level)?.len() as f64;
    let part = zstd::bulk::compress(&plain, level)?.len() as f64;
    Ok((raw.len() as f64 / whole, plain.len() as f64 / part, raw.len() as u64))
}

/// Resets the peak-RSS mark so the next phase's peak can be read alone.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Random subject ids of the synthetic data: a tenant by its share of the
/// records, a subject id uniformly among the generator's subjects.
fn random_subjects(n: usize, records: u64, seed: u64, tenants: &[(String, u32)]) -> Vec<(String, String)> {
    let subjects = (records / 100).clamp(1000, 100_000);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let total: u32 = tenants.iter().map(|t| t.1).sum();
    assert!(
        n as u64 <= subjects * tenants.len() as u64 / 2,
        "{n} distinct subjects asked of {} tenants × {subjects}",
        tenants.len()
    );
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut r = (next() % total as u64) as u32;
        let tenant = &tenants
            .iter()
            .find(|(_, w)| {
                let hit = r < *w;
                r = r.saturating_sub(*w);
                hit
            })
            .expect("weights cover the range")
            .0;
        let subject = format!("user-{:06}", next() % subjects);
        if seen.insert((tenant.clone(), subject.clone())) {
            out.push((tenant.clone(), subject));
        }
    }
    out
}

/// `writers` threads share one reader of the input; each takes the next
/// `batch` lines and ingests them as one batch (`Vault::ingest_batch`, as a
/// service's request handler would), so batches meet in the group commit.
fn concurrent_ingest(
    vault: &Vault,
    input: &Path,
    writers: usize,
    batch: usize,
) -> Result<lethe_vault::ingest::IngestReport> {
    use std::io::BufRead;
    vault.note_policy("system/ingest", now_us())?;
    let reader = std::sync::Mutex::new((BufReader::with_capacity(1 << 20, std::fs::File::open(input)?), 1u64));
    let reports = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                s.spawn(|| -> Result<lethe_vault::ingest::IngestReport> {
                    let mut report = lethe_vault::ingest::IngestReport::default();
                    let mut lines: Vec<String> = Vec::with_capacity(batch);
                    loop {
                        lines.clear();
                        let first = {
                            let mut g = reader.lock().expect("reader lock");
                            let first = g.1;
                            for _ in 0..batch {
                                let mut l = String::new();
                                if g.0.read_line(&mut l)? == 0 {
                                    break;
                                }
                                lines.push(l.trim_end().to_string());
                            }
                            g.1 += lines.len() as u64;
                            first
                        };
                        if lines.is_empty() {
                            return Ok(report);
                        }
                        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
                        report.merge(vault.ingest_batch(&refs, first, now_us())?);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect::<Result<Vec<_>>>()
    })?;
    let mut total = lethe_vault::ingest::IngestReport::default();
    for r in reports {
        total.merge(r);
    }
    vault.seal("system/ingest", now_us(), true)?;
    Ok(total)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// With `--release-memory`, hands the heap's free pages back as `lethe
/// serve` does after a job, and reports the resident size it came down to
/// (`rss_released_<phase>_bytes`).
fn release_memory(args: &Args, out: &mut Map<String, Value>, phase: &str) {
    if args.release_memory {
        lethe_server::allocator::release_free_memory();
        out.insert(format!("rss_released_{phase}_bytes"), json!(current_rss_bytes()));
    }
}

/// Erasure on the full store: 1,000 single-subject purges (each preview,
/// execute, verify and receipt, timed whole), then one 10,000-subject batch.
fn erasure(
    vault: &Vault,
    singles: usize,
    batch_subjects: usize,
    out: &mut Map<String, Value>,
    records: u64,
    seed: u64,
    tenants: &[(String, u32)],
) -> Result<()> {
    // The batch request goes to the largest tenant (listed first).
    let largest = tenants[0].0.as_str();
    use lethe_vault::purge::PurgeRequest;
    eprintln!("erasure: {singles} subjects, then a batch …");
    out.insert("rss_before_erasure_bytes".into(), json!(current_rss_bytes()));
    reset_peak_rss();
    // `singles` distinct (tenant, subject) pairs; the batch below takes its
    // subjects apart from them (drawing 11,000 here never ended on stores of
    // under ~300k records, which hold fewer distinct pairs).
    let picks = random_subjects(singles, records, seed ^ 0xE5A5E, tenants);
    let request = |tenant: &str, subjects: Vec<String>, ticket: String| PurgeRequest {
        subjects,
        ..PurgeRequest::new(
            lethe_core::TenantId::new(tenant).expect("synthetic tenant"),
            "bench erasure",
            &ticket,
            "bench",
        )
    };
    let mut ms = Vec::with_capacity(singles);
    let mut plan_ms = Vec::with_capacity(singles);
    let (mut removed, mut keys, mut unverified) = (0u64, 0u64, 0u64);
    for (i, (tenant, subject)) in picks.iter().enumerate() {
        let req = request(tenant, vec![subject.clone()], format!("bench-{i}"));
        let t = Instant::now();
        let plan = vault.plan_purge(&req, now_us())?;
        plan_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let r = vault.execute_purge(&req, plan, &now_us)?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if std::env::var_os("LETHE_BENCH_TRACE").is_some() {
            eprintln!(
                "{tenant} {subject} {:.1} ms plan {:.1} ms removed {}",
                ms[ms.len() - 1],
                plan_ms[plan_ms.len() - 1],
                r.removed
            );
        }
        removed += r.removed;
        keys += r.keys_destroyed;
        unverified += u64::from(!r.verified);
    }
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    out.insert("erase_subjects_timed".into(), json!(ms.len()));
    out.insert("erase_subject_ms_p50".into(), json!(percentile(&sorted, 0.5)));
    out.insert("erase_subject_ms_p99".into(), json!(percentile(&sorted, 0.99)));
    out.insert("erase_subject_ms_max".into(), json!(sorted[sorted.len() - 1]));
    plan_ms.sort_by(f64::total_cmp);
    out.insert("erase_preview_ms_p50".into(), json!(percentile(&plan_ms, 0.5)));
    out.insert("erase_preview_ms_p99".into(), json!(percentile(&plan_ms, 0.99)));
    out.insert("erase_subjects_records_removed".into(), json!(removed));
    out.insert("erase_subjects_keys_destroyed".into(), json!(keys));
    out.insert("erase_subjects_unverified".into(), json!(unverified));

    out.insert("erase_subjects_peak_rss_bytes".into(), json!(peak_rss_bytes()));
    reset_peak_rss();

    // One batch request: 10,000 more subjects of the largest tenant.
    // (Small runs have fewer subjects per tenant: then 90% of them.)
    if batch_subjects == 0 {
        return Ok(());
    }
    let want = batch_subjects.min((records / 100).clamp(1000, 100_000) as usize * 9 / 10);
    let taken: std::collections::HashSet<&String> =
        picks.iter().filter(|(t, _)| t == largest).map(|(_, s)| s).collect();
    let mut batch: Vec<String> = (0..(records / 100).clamp(1000, 100_000))
        .map(|i| format!("user-{i:06}"))
        .filter(|s| !taken.contains(s))
        .collect();
    // A random choice of them, deterministic per seed.
    let mut x = seed | 1;
    for i in (1..batch.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        batch.swap(i, (x % (i as u64 + 1)) as usize);
    }
    batch.truncate(want);
    out.insert("erase_batch_subjects".into(), json!(batch.len()));
    let req = request(largest, batch, "bench-batch".into());
    let t = Instant::now();
    let plan = vault.plan_purge(&req, now_us())?;
    let r = vault.execute_purge(&req, plan, &now_us)?;
    out.insert("erase_batch_10k_s".into(), json!(t.elapsed().as_secs_f64()));
    out.insert("erase_batch_records_removed".into(), json!(r.removed));
    out.insert("erase_batch_keys_destroyed".into(), json!(r.keys_destroyed));
    out.insert("erase_batch_verified".into(), json!(r.verified));
    out.insert("erase_batch_peak_rss_bytes".into(), json!(peak_rss_bytes()));
    Ok(())
}

fn main() -> Result<()> {
    // As `lethe` itself does at start.
    lethe_server::allocator::configure();
    let mut args = Args::parse();
    if let Some(d) = args.spread_days {
        args.spread = lethe_core::Window::Span(u64::from(d) * 86_400);
    }
    let base = PathBuf::from("target/lethe-bench");
    let data = args.data_dir.clone().unwrap_or_else(|| base.join("data"));
    std::fs::create_dir_all(&base)?;
    let store = backend::Backend {
        kind: args.backend,
        url: args.pg_url.clone().unwrap_or_else(|| {
            std::env::var("LETHE_BENCH_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
        }),
        schema: args.pg_schema.clone(),
    };
    anyhow::ensure!(
        store.kind == backend::Kind::Sqlite || (args.http_clients == 0 && !args.dashboard_timings),
        "--backend postgres runs the library phases only (not --http-clients or --dashboard-timings)"
    );
    store.reset(&data)?;
    // Anchor time at the start of the day so input files are reusable today.
    let now = now_us() / 86_400_000_000 * 86_400_000_000;
    let (input, input_bytes) = input_file(&base, &args, now)?;
    let mut out = Map::new();
    out.insert("records".into(), json!(args.records));
    out.insert("input_bytes".into(), json!(input_bytes));
    out.insert("avg_record_bytes".into(), json!(input_bytes / args.records.max(1)));
    if args.dashboard_timings {
        dashboard::run(&args, &input, &data, &mut out)?;
        println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
        return Ok(());
    }
    if args.http_clients > 0 {
        http::run(&args, &input, &data, &mut out)?;
        println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
        return Ok(());
    }

    let vault = Vault::open(
        &data,
        bench_config(&store, args.group_commit_records)?,
        &MasterKeySource::File {
            path: data.join("master.key"),
            create: true,
        },
    )?;

    // Ingest: the same pipeline as `lethe ingest FILE`, or many writers.
    out.insert("backend".into(), json!(format!("{:?}", store.kind).to_lowercase()));
    let wal0 = match store.kind {
        backend::Kind::Postgres => Some(store.wal_lsn()?),
        backend::Kind::Sqlite => None,
    };
    let t = Instant::now();
    let r = if args.writers > 0 {
        let r = concurrent_ingest(&vault, &input, args.writers, args.writer_batch)?;
        let c = vault.commit_counts();
        out.insert("ingest_writers".into(), json!(args.writers));
        out.insert("ingest_writer_batch".into(), json!(args.writer_batch));
        out.insert("ingest_batches".into(), json!(c.batches));
        out.insert("ingest_appends".into(), json!(c.appends));
        r
    } else {
        vault.ingest(
            BufReader::with_capacity(1 << 20, std::fs::File::open(&input)?),
            &now_us,
            &|_, _| {},
        )?
    };
    let ingest_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        r.stored == args.records,
        "stored {} of {} ({} rejected)",
        r.stored,
        args.records,
        r.rejected
    );
    out.insert("ingest_s".into(), json!(ingest_s));
    out.insert(
        "ingest_records_per_s".into(),
        json!((args.records as f64 / ingest_s).round()),
    );
    out.insert(
        "ingest_mb_per_s".into(),
        json!((input_bytes as f64 / 1e6 / ingest_s * 10.0).round() / 10.0),
    );
    out.insert("rss_after_ingest_bytes".into(), json!(peak_rss_bytes()));
    out.insert("tenants".into(), json!(args.tenants.unwrap_or(4)));
    out.insert("spread".into(), json!(args.spread.to_string()));
    // While the ingesting process still runs (write-ahead logs included) …
    out.insert(
        "bytes_per_record_open".into(),
        json!((store.bytes(&data)? as f64 / args.records.max(1) as f64).round()),
    );

    // Everything after ingest runs on a vault opened afresh, as a separate
    // `lethe purge` / `lethe cleanup` process would (no caches from ingest).
    drop(vault);
    // A separate process starts with an empty heap; `lethe serve` hands
    // freed memory back after each job (`--release-memory`).
    release_memory(&args, &mut out, "after_ingest");
    // … and as `lethe ingest` leaves the data directory when it exits.
    if let Some(lsn) = &wal0 {
        out.insert("ingest_wal_bytes".into(), json!(store.wal_since(lsn)?));
        out.insert("partitions_before".into(), json!(store.partitions()?));
    }
    let bytes_before = store.bytes(&data)?;
    out.insert("bytes_before".into(), json!(bytes_before));
    out.insert(
        "bytes_per_record".into(),
        json!((bytes_before as f64 / args.records.max(1) as f64).round()),
    );
    out.insert("files".into(), json!(files_under(&data)));
    let vault = Vault::open(
        &data,
        bench_config(&store, args.group_commit_records)?,
        &MasterKeySource::File {
            path: data.join("master.key"),
            create: false,
        },
    )?;
    if std::env::var_os("LETHE_BENCH_NO_ERASURE").is_none() {
        let tenants = lethe_vault::synth::tenant_weights(args.tenants);
        erasure(
            &vault,
            args.erasure_subjects,
            args.erasure_batch,
            &mut out,
            args.records,
            args.seed,
            &tenants,
        )?;
    }

    release_memory(&args, &mut out, "after_erasure");

    // Dry run.
    let t = Instant::now();
    let plan = vault.sweep(now, None, true, &now_us, &|_, _| {})?;
    out.insert("dry_run_s".into(), json!(t.elapsed().as_secs_f64()));
    out.insert("planned_deleted".into(), json!(plan.deleted));
    release_memory(&args, &mut out, "after_dry_run");

    // The physical floor, measured first: plain files of exactly the sizes of
    // the partition files this cleanup is going to remove (every day
    // partition before the cutoff day: the bench policy deletes everything
    // older than 30 days and `now` is a midnight), written and synced in the
    // same directory just before, then unlinked. The cleanup's actual removals
    // are checked against this list afterwards.
    let before = files(&data)?;
    let cutoff_day = lethe_core::record::format_ts(now - 30 * 86_400_000_000)[..10].to_string();
    let expected: Vec<&(PathBuf, u64)> = before
        .iter()
        .filter(|(p, _)| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            p.components().any(|c| c.as_os_str() == "partitions") && name.len() >= 10 && name[..10] < *cutoff_day
        })
        .collect();
    let dir = data.join("unlink-baseline");
    std::fs::create_dir_all(&dir)?;
    let chunk = vec![0x5au8; 1 << 20];
    let mut paths = Vec::with_capacity(expected.len());
    for (i, (_, size)) in expected.iter().enumerate() {
        let p = dir.join(format!("f{i}"));
        let mut f = std::fs::File::create(&p)?;
        let mut left = *size as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            f.write_all(&chunk[..n])?;
            left -= n;
        }
        f.sync_all()?;
        paths.push(p);
    }
    let t = Instant::now();
    for p in &paths {
        std::fs::remove_file(p)?;
    }
    let unlink_s = t.elapsed().as_secs_f64();
    std::fs::remove_dir(&dir)?;
    // On PostgreSQL the store's partitions are the server's files, not
    // ours: its floor is pg_partman beside it (../shared/peers).
    let sqlite = store.kind == backend::Kind::Sqlite;
    if sqlite {
        out.insert("unlink_baseline_s".into(), json!(unlink_s));
        out.insert("unlink_baseline_files".into(), json!(expected.len()));
        out.insert(
            "unlink_baseline_bytes".into(),
            json!(expected.iter().map(|(_, s)| s).sum::<u64>()),
        );
    }

    // Cleanup.
    if let Ok(e) = std::env::var("LETHE_BENCH_S3_ENDPOINT") {
        if std::env::var("LETHE_BENCH_ARCHIVE").as_deref() == Ok("s3") {
            create_bucket(&e)?;
        }
    }
    reset_peak_rss();
    // What the process held before the sweep began (the peak below
    // includes it: memory freed after ingest is not always returned).
    out.insert("rss_before_cleanup_bytes".into(), json!(status_bytes("VmRSS:")));
    let t = Instant::now();
    let done = vault.sweep(now, None, false, &now_us, &|_, _| {})?;
    let cleanup_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(done.failing.is_empty(), "archive failed: {:?}", done.failing);
    if let Some(a) = &done.archived {
        let secs = a.millis as f64 / 1000.0;
        out.insert("cleanup_peak_rss_bytes".into(), json!(peak_rss_bytes()));
        out.insert(
            "archive_target".into(),
            json!(std::env::var("LETHE_BENCH_ARCHIVE").ok()),
        );
        out.insert("archive_s".into(), json!(secs));
        out.insert("archive_records".into(), json!(a.records));
        out.insert("archive_objects".into(), json!(a.objects));
        out.insert("archive_raw_bytes".into(), json!(a.raw_bytes));
        out.insert("archive_bytes".into(), json!(a.bytes));
        out.insert(
            "archive_ratio".into(),
            json!(a.raw_bytes as f64 / a.bytes.max(1) as f64),
        );
        let key = if std::env::var("LETHE_BENCH_ARCHIVE").as_deref() == Ok("s3") {
            "archive_s3_raw_mb_per_s"
        } else {
            "archive_raw_mb_per_s"
        };
        out.insert(key.into(), json!(a.raw_bytes as f64 / 1e6 / secs));
        out.insert("delete_after_archive_s".into(), json!(cleanup_s - secs));
    }
    out.insert("cleanup_s".into(), json!(cleanup_s));
    if sqlite {
        out.insert("cleanup_over_baseline_s".into(), json!(cleanup_s - unlink_s));
    } else {
        out.insert("partitions_after".into(), json!(store.partitions()?));
    }
    out.insert("deleted".into(), json!(done.deleted));
    out.insert(
        "deleted_fraction".into(),
        json!(done.deleted as f64 / args.records as f64),
    );
    out.insert("dry_run_matches".into(), json!(plan.same_effect(&done)));
    let bytes_after = store.bytes(&data)?;
    out.insert("bytes_after".into(), json!(bytes_after));
    out.insert(
        "bytes_after_fraction".into(),
        json!(bytes_after as f64 / bytes_before as f64),
    );
    let after: std::collections::HashSet<PathBuf> = files(&data)?.into_iter().map(|(p, _)| p).collect();
    // A partition that stays may lose its -wal/-shm files when its
    // connection closes (SQLite removes them on the last close): not a removal.
    let stays = |p: &Path| {
        let s = p.to_string_lossy();
        ["-wal", "-shm"]
            .iter()
            .any(|x| s.ends_with(x) && after.contains(&PathBuf::from(&s[..s.len() - x.len()])))
    };
    let mut removed: Vec<&PathBuf> = before
        .iter()
        .map(|(p, _)| p)
        .filter(|p| !after.contains(*p) && !stays(p))
        .collect();
    let mut wanted: Vec<&PathBuf> = expected.iter().map(|(p, _)| p).collect();
    removed.sort();
    wanted.sort();
    if sqlite {
        out.insert("baseline_files_match_cleanup".into(), json!(removed == wanted));
    }
    if sqlite && removed != wanted {
        let extra: Vec<_> = removed.iter().filter(|p| !wanted.contains(p)).take(5).collect();
        let kept: Vec<_> = wanted.iter().filter(|p| !removed.contains(p)).take(5).collect();
        eprintln!("cleanup removed files the baseline did not: {extra:?}; kept files it did: {kept:?}");
    }

    // A second run right after does nothing.
    let again = vault.sweep(now, None, false, &now_us, &|_, _| {})?;
    out.insert("second_cleanup_deleted".into(), json!(again.deleted));
    out.insert("peak_rss_bytes".into(), json!(peak_rss_bytes()));
    // Measured after the peak is read: the sample is held in memory.
    let local = data.join("archive");
    if local.exists() && std::env::var("LETHE_BENCH_ARCHIVE").as_deref() == Ok("local") {
        let (whole, plain, sampled) = plain_ratio(&local, 3, 256 << 20)?;
        out.insert("archive_sample_ratio".into(), json!(whole));
        out.insert("archive_plain_ratio".into(), json!(plain));
        out.insert("archive_sample_raw_bytes".into(), json!(sampled));
    }

    // Verify everything: every stored record's header, MAC and link, every
    // removal against its receipt, every checkpoint's tree head.
    out.insert("rss_before_verify_bytes".into(), json!(current_rss_bytes()));
    reset_peak_rss();
    let t = Instant::now();
    let v = vault.verify(None, None, now_us(), &|_| {})?;
    out.insert("verify_peak_rss_bytes".into(), json!(peak_rss_bytes()));
    let verify_s = t.elapsed().as_secs_f64();
    out.insert("verify_s".into(), json!(verify_s));
    out.insert("verify_records_checked".into(), json!(v.records_checked));
    out.insert(
        "verify_records_per_s".into(),
        json!((v.records_checked as f64 / verify_s).round()),
    );
    out.insert(
        "verify_covered_per_s".into(),
        json!(((v.records_checked + v.removed_explained) as f64 / verify_s).round()),
    );
    out.insert("verify_removed_explained".into(), json!(v.removed_explained));
    out.insert("verify_tombstones".into(), json!(v.tombstones));
    out.insert("verify_checkpoints_checked".into(), json!(v.checkpoints_checked));
    out.insert("verify_unexplained_gaps".into(), json!(v.gaps_total));
    // A few of them, so that a run that finds any says what they are.
    out.insert(
        "verify_gap_examples".into(),
        json!(v
            .unexplained_gaps
            .iter()
            .take(3)
            .map(|g| format!("{}/{} {}: {}", g.tenant, g.stream, g.seq, g.problem))
            .collect::<Vec<_>>()),
    );
    println!("{}", Value::Object(out));
    // Figures of a store that does not verify are not figures.
    anyhow::ensure!(
        v.gaps_total == 0,
        "verify found {} unexplained gaps (examples above)",
        v.gaps_total
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::random_subjects;

    /// The erasure phase on a small store: asking for 11,000 distinct
    /// subjects of four tenants × 1,000 subjects never returned.
    #[test]
    fn the_erasure_picks_of_a_small_store_are_distinct_and_come_back() {
        let tenants = lethe_vault::synth::tenant_weights(None);
        let picks = random_subjects(1000, 100_000, 7, &tenants);
        let distinct: std::collections::HashSet<_> = picks.iter().collect();
        assert_eq!(distinct.len(), 1000);
    }
}
