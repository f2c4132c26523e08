//! The HTTP load with jobs running beside it (`--http-under-jobs N`): a
//! store that already holds N records of history (event times over the last
//! 90 days, a third of them older than the 30-day window), then, once a
//! quarter of the load is sent, a whole-store sweep (`lethe cleanup`, its
//! dry run first — beside the server, as an operator's cron would) and a
//! 1,000-subject erasure job through the API. Reports the sweep's and the
//! erasure's figures and whether the sweep's dry run equalled its run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::Args;

/// Subjects the erasure names.
const SUBJECTS: usize = 1000;

/// Writes `n` records of history over the last 90 days.
pub(crate) fn history_file(base: &Path, args: &Args, n: u64, now: i64) -> Result<PathBuf> {
    let tenants = args.tenants.unwrap_or(4);
    let path = base.join(format!("history-{n}-{}-t{tenants}.ndjson", args.seed));
    if path.exists() {
        return Ok(path);
    }
    let mut s = lethe_vault::synth::Synth::over(args.seed ^ 0x5eed, n, now, 90 * 86_400_000_000);
    if let Some(t) = args.tenants {
        s = s.with_tenants(t);
    }
    crate::write_synth(&path, s)?;
    Ok(path)
}

/// Loads the history into the store with `lethe ingest` (before the server starts).
pub(crate) fn preload(
    args: &Args,
    data: &Path,
    config: &Path,
    history: &Path,
    out: &mut Map<String, Value>,
) -> Result<()> {
    let t = Instant::now();
    let o = lethe(args, data, config)
        .arg("ingest")
        .arg(history)
        .arg("--json")
        .output()
        .context("running lethe ingest")?;
    if !o.status.success() {
        bail!("preloading history failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    out.insert("history_ingest_s".into(), json!(t.elapsed().as_secs_f64()));
    Ok(())
}

/// The `lethe` binary on the bench's store, configuration and master key.
pub(crate) fn lethe(args: &Args, data: &Path, config: &Path) -> Command {
    let mut c = Command::new(&args.lethe);
    c.arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("LETHE_MASTER_KEY", format!("{:064x}", 7));
    c
}

/// Per-stream (deleted, anonymized) of a `lethe cleanup --json` report.
fn effect(report: &Value) -> Vec<(String, u64, u64)> {
    report["result"]["per_stream"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v["deleted"].as_u64().unwrap_or(0),
                        v["anonymized"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the sweep and the erasure once `sent` passes a quarter of `total`
/// requests; fills `out` with what they did.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_beside_load(
    args: &Args,
    data: &Path,
    config: &Path,
    client: &reqwest::blocking::Client,
    base: &str,
    token: &str,
    erase_tenant: &str,
    sent: &AtomicUsize,
    total: usize,
    out: &std::sync::Mutex<Map<String, Value>>,
    window: &std::sync::Mutex<Option<(f64, f64)>>,
    load_start: Instant,
) -> Result<()> {
    while sent.load(Ordering::Relaxed) < total / 4 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let from = load_start.elapsed().as_secs_f64();
    let r = std::thread::scope(|s| -> Result<()> {
        let sweep = s.spawn(|| -> Result<()> {
            let t = Instant::now();
            let dry = lethe(args, data, config)
                .args(["cleanup", "--dry-run", "--json"])
                .output()?;
            let dry_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let run = lethe(args, data, config).args(["cleanup", "--json"]).output()?;
            let run_s = t.elapsed().as_secs_f64();
            if !dry.status.success() || !run.status.success() {
                bail!(
                    "cleanup failed: {} {}",
                    String::from_utf8_lossy(&dry.stderr),
                    String::from_utf8_lossy(&run.stderr)
                );
            }
            let dry: Value = serde_json::from_slice(&dry.stdout)?;
            let run: Value = serde_json::from_slice(&run.stdout)?;
            let mut o = out.lock().unwrap();
            o.insert("sweep_dry_run_s".into(), json!(dry_s));
            o.insert("sweep_s".into(), json!(run_s));
            o.insert("sweep_deleted".into(), run["result"]["deleted"].clone());
            o.insert("sweep_dry_run_equals_run".into(), json!(effect(&dry) == effect(&run)));
            Ok(())
        });
        let erasure = s.spawn(|| -> Result<()> {
            // After the sweep has begun (its dry run takes a moment), so that
            // the erasure's removals come after the sweep's plan.
            std::thread::sleep(Duration::from_millis(500));
            let subjects: Vec<String> = (0..SUBJECTS).map(|i| format!("user-{:06}", 5001 + i)).collect();
            let t = Instant::now();
            let preview: Value = client
                .post(format!("{base}/v1/tenants/{erase_tenant}/erasures/preview"))
                .bearer_auth(token)
                .json(&json!({"subjects": subjects}))
                .send()?
                .json()?;
            let id = preview["preview_id"].as_str().context("no preview_id")?.to_string();
            let r = client
                .post(format!("{base}/v1/tenants/{erase_tenant}/erasures"))
                .bearer_auth(token)
                .json(&json!({"preview_id": id, "reason": "bench", "ticket": "bench-1000"}))
                .send()?;
            if r.status().as_u16() != 202 {
                bail!("erasure not accepted: {} {}", r.status(), r.text()?);
            }
            let location = r.headers()["location"].to_str()?.to_string();
            let job = loop {
                let job: Value = client
                    .get(format!("{base}{location}"))
                    .bearer_auth(token)
                    .send()?
                    .json()?;
                if job["state"] == "done" || job["state"] == "failed" {
                    break job;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            let mut o = out.lock().unwrap();
            o.insert("erasure_subjects".into(), json!(SUBJECTS));
            o.insert("erasure_previewed".into(), preview["preview"]["selected"].clone());
            o.insert("erasure_s".into(), json!(t.elapsed().as_secs_f64()));
            o.insert("erasure_state".into(), job["state"].clone());
            o.insert("erasure_removed".into(), job["report"]["removed"].clone());
            o.insert("erasure_keys_destroyed".into(), job["report"]["keys_destroyed"].clone());
            o.insert("erasure_verified".into(), job["report"]["verified"].clone());
            Ok(())
        });
        sweep.join().expect("sweep thread")?;
        erasure.join().expect("erasure thread")?;
        Ok(())
    });
    *window.lock().unwrap() = Some((from, load_start.elapsed().as_secs_f64()));
    r
}
