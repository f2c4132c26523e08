//! HTTP mode: `lethe serve` in its own process, many clients posting
//! NDJSON batches of one tenant each over loopback; throughput, request
//! latency, errors, records acknowledged against records stored, and the
//! server's peak RSS.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::{percentile, Args};

/// The server process, killed if the bench fails half-way.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The server's peak resident set (VmHWM), bytes.
fn server_peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

pub(crate) fn run(args: &Args, input: &Path, data: &Path, out: &mut Map<String, Value>) -> Result<()> {
    // The records, grouped into requests of one tenant each (the URL names it).
    let mut by_tenant: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in BufReader::new(std::fs::File::open(input)?).lines() {
        let line = line?;
        let v: Value = serde_json::from_str(&line)?;
        let t = v["tenant"].as_str().context("record without tenant")?.to_string();
        by_tenant.entry(t).or_default().push(line);
    }
    let batch = args.writer_batch.max(1);
    let mut requests: Vec<(String, String)> = Vec::new();
    for (t, lines) in &by_tenant {
        for chunk in lines.chunks(batch) {
            let mut body = chunk.join("\n");
            body.push('\n');
            requests.push((t.clone(), body));
        }
    }
    // Interleave tenants as many applications would: request i of every
    // tenant before request i+1 of any.
    requests.sort_by_key(|(t, _)| t.clone());
    let mut order: Vec<usize> = (0..requests.len()).collect();
    let mut pos: BTreeMap<&str, usize> = BTreeMap::new();
    let rank: Vec<usize> = requests
        .iter()
        .map(|(t, _)| {
            let p = pos.entry(t.as_str()).or_insert(0);
            *p += 1;
            *p
        })
        .collect();
    order.sort_by_key(|&i| rank[i]);

    let config = data.with_extension("toml");
    let mut text = "[retention.default]\nwindow = \"30d\"\naction = \"delete\"\n".to_string();
    if let Some(n) = args.group_commit_records {
        text += &format!("[store]\ngroup_commit_records = {n}\n");
    }
    std::fs::write(&config, text)?;
    let mut jobs_out = Map::new();
    if args.http_under_jobs > 0 {
        let now = chrono::Utc::now().timestamp_micros() / 86_400_000_000 * 86_400_000_000;
        let base = data.parent().unwrap_or(Path::new("."));
        let history = crate::http_jobs::history_file(base, args, args.http_under_jobs, now)?;
        crate::http_jobs::preload(args, data, &config, &history, &mut jobs_out)?;
    }
    let jobs_out = Mutex::new(jobs_out);
    let largest = by_tenant
        .iter()
        .max_by_key(|(_, l)| l.len())
        .map(|(t, _)| t.clone())
        .unwrap_or_default();
    let jobs_window: Mutex<Option<(f64, f64)>> = Mutex::new(None);
    let port = free_port()?;
    let mut child = crate::http_jobs::lethe(args, data, &config)
        .args(["serve", "--bootstrap-key", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", args.lethe.display()))?;
    let pid = child.id();
    let mut token = String::new();
    BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut token)?;
    let server = Server(child);
    let token = token.trim().to_string();
    anyhow::ensure!(token.starts_with("lethe_"), "no bootstrap token from the server");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(args.http_clients)
        .build()?;
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send() {
            if r.status().is_success() {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the server did not become ready");
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let next = AtomicUsize::new(0);
    let acknowledged = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let busy = AtomicU64::new(0);
    let latencies = Mutex::new(Vec::with_capacity(requests.len()));
    let t = Instant::now();
    let jobs_result: Mutex<Option<Result<()>>> = Mutex::new(None);
    std::thread::scope(|s| {
        if args.http_under_jobs > 0 {
            s.spawn(|| {
                let r = crate::http_jobs::run_beside_load(
                    args,
                    data,
                    &config,
                    &client,
                    &base,
                    &token,
                    &largest,
                    &next,
                    requests.len(),
                    &jobs_out,
                    &jobs_window,
                    t,
                );
                *jobs_result.lock().unwrap() = Some(r);
            });
        }
        for _ in 0..args.http_clients {
            s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&k) = order.get(i) else { break };
                    let (tenant, body) = &requests[k];
                    // A 503 (queue full) is retried after its Retry-After,
                    // as a client would; it is counted, not an error.
                    loop {
                        let t0 = Instant::now();
                        let r = client
                            .post(format!("{base}/v1/tenants/{tenant}/records"))
                            .bearer_auth(&token)
                            .header("content-type", "application/x-ndjson")
                            .body(body.clone())
                            .send();
                        let took = t0.elapsed().as_secs_f64();
                        match r {
                            Ok(r) if r.status().is_success() => {
                                mine.push(((t0 - t).as_secs_f64(), took));
                                let mut text = String::new();
                                let _ = r.take(1 << 20).read_to_string(&mut text);
                                let v: Value = serde_json::from_str(&text).unwrap_or_default();
                                let n = v["stored"].as_u64().unwrap_or(0) + v["duplicates"].as_u64().unwrap_or(0);
                                acknowledged.fetch_add(n, Ordering::Relaxed);
                                break;
                            }
                            Ok(r) if r.status().as_u16() == 503 => {
                                busy.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            Ok(r) => {
                                eprintln!("request failed: {}", r.status());
                                errors.fetch_add(1, Ordering::Relaxed);
                                mine.push(((t0 - t).as_secs_f64(), took));
                                break;
                            }
                            Err(e) => {
                                eprintln!("request failed: {e}");
                                errors.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
                latencies.lock().unwrap().extend(mine);
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    let peak = server_peak_rss(pid);
    // What the server holds, tenant by tenant.
    let mut stored = 0u64;
    for t in by_tenant.keys() {
        let text = client
            .get(format!("{base}/v1/tenants/{t}/stats"))
            .bearer_auth(&token)
            .send()?
            .text()?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("stats of {t}: {text}"))?;
        stored += v["records"].as_u64().unwrap_or(0);
    }
    drop(server);
    if let Some(r) = jobs_result.into_inner().unwrap() {
        r?;
    }
    let timed = latencies.into_inner().unwrap();
    if let Some((from, to)) = *jobs_window.lock().unwrap() {
        // Requests sent while the sweep or the erasure ran.
        let mut during: Vec<f64> = timed
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, l)| *l)
            .collect();
        during.sort_by(|a, b| a.total_cmp(b));
        out.insert("jobs_window_s".into(), json!(to - from));
        out.insert("http_requests_during_jobs".into(), json!(during.len()));
        if !during.is_empty() {
            out.insert(
                "http_p99_during_jobs_ms".into(),
                json!((percentile(&during, 0.99) * 1e4).round() / 10.0),
            );
            out.insert(
                "http_max_during_jobs_ms".into(),
                json!((during[during.len() - 1] * 1e4).round() / 10.0),
            );
        }
    }
    out.extend(jobs_out.into_inner().unwrap());
    let mut lat: Vec<f64> = timed.into_iter().map(|(_, l)| l).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let records = args.records;
    out.insert("http_clients".into(), json!(args.http_clients));
    out.insert("http_batch".into(), json!(batch));
    out.insert("http_requests".into(), json!(requests.len()));
    out.insert("tenants".into(), json!(by_tenant.len()));
    out.insert("spread".into(), json!(args.spread.to_string()));
    out.insert("http_ingest_s".into(), json!(secs));
    out.insert("http_records_per_s".into(), json!((records as f64 / secs).round()));
    if !lat.is_empty() {
        out.insert(
            "http_p50_ms".into(),
            json!((percentile(&lat, 0.50) * 1e4).round() / 10.0),
        );
        out.insert(
            "http_p99_ms".into(),
            json!((percentile(&lat, 0.99) * 1e4).round() / 10.0),
        );
        out.insert("http_max_ms".into(), json!((lat[lat.len() - 1] * 1e4).round() / 10.0));
    }
    out.insert("http_errors".into(), json!(errors.load(Ordering::Relaxed)));
    out.insert("http_503_retried".into(), json!(busy.load(Ordering::Relaxed)));
    out.insert("acknowledged".into(), json!(acknowledged.load(Ordering::Relaxed)));
    out.insert("stored".into(), json!(stored));
    out.insert(
        "lost".into(),
        json!(acknowledged.load(Ordering::Relaxed).saturating_sub(stored)),
    );
    out.insert("server_peak_rss_bytes".into(), json!(peak));
    Ok(())
}
