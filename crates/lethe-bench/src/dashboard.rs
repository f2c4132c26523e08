//! Dashboard page timings (`--dashboard-timings`): the bench's records
//! loaded with `lethe ingest`, `lethe serve` started on them, and each
//! page's requests — the ones its script makes when it opens — timed over
//! loopback, repeatedly, for the tenant with the most records. A page's
//! time is the sum of its requests made one after another (the page makes
//! some at once, so this is an upper bound of the server's share).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::Args;

/// A request a page makes: method, path, JSON body.
type Request = (&'static str, String, Option<Value>);

/// Times each page's requests `rounds` times.
pub(crate) fn run(args: &Args, input: &Path, data: &Path, out: &mut Map<String, Value>) -> Result<()> {
    let config = data.with_extension("toml");
    std::fs::write(&config, "[retention.default]\nwindow = \"30d\"\naction = \"delete\"\n")?;
    let t = Instant::now();
    let o = crate::http_jobs::lethe(args, data, &config)
        .arg("ingest")
        .arg(input)
        .stdout(Stdio::null())
        .status()
        .context("lethe ingest")?;
    anyhow::ensure!(o.success(), "lethe ingest failed");
    out.insert("ingest_s".into(), json!(t.elapsed().as_secs_f64()));
    // One subject of the input, for the erasure preview.
    let mut first = String::new();
    BufReader::new(std::fs::File::open(input)?).read_line(&mut first)?;
    let first: Value = serde_json::from_str(&first)?;
    let subject = first["subject"].as_str().unwrap_or("user-000001").to_string();

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = crate::http_jobs::lethe(args, data, &config)
        .args(["serve", "--bootstrap-key", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("lethe serve")?;
    let mut token = String::new();
    BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut token)?;
    let server = crate::http::Server(child);
    let token = token.trim().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let started = Instant::now();
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .is_ok_and(|r| r.status().is_success())
    {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the server did not become ready");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let call = |method: &str, path: &str, body: Option<Value>| -> Result<(f64, Value)> {
        let t = Instant::now();
        let mut req = match method {
            "POST" => client.post(format!("{base}{path}")),
            _ => client.get(format!("{base}{path}")),
        }
        .bearer_auth(&token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send()?;
        let status = r.status();
        let v: Value = r.json().unwrap_or(Value::Null);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(status.is_success(), "{method} {path}: {status}: {v}");
        Ok((ms, v))
    };
    let (_, tenants) = call("GET", "/v1/tenants", None)?;
    let tenant = tenants
        .as_array()
        .context("tenants")?
        .iter()
        .max_by_key(|t| t["records"].as_u64().unwrap_or(0))
        .and_then(|t| t["tenant"].as_str())
        .context("no tenant")?
        .to_string();
    let (first_overview_ms, ov) = call("GET", &format!("/v1/tenants/{tenant}/overview"), None)?;
    out.insert(
        "dashboard_overview_first_ms".into(),
        json!((first_overview_ms * 10.0).round() / 10.0),
    );
    // Rows come sorted by (stream, scope): one chain per stream.
    let mut streams: Vec<String> = ov["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["stream"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    streams.dedup();
    let t = &tenant;
    let mut pages: Vec<(&str, Vec<Request>)> = vec![
        (
            "overview",
            vec![
                ("GET", "/v1/tenants".into(), None),
                ("GET", format!("/v1/tenants/{t}/overview"), None),
            ],
        ),
        ("retention", vec![("GET", format!("/v1/tenants/{t}/retention"), None)]),
        (
            "retention_preview",
            vec![(
                "POST",
                format!("/v1/tenants/{t}/retention/preview"),
                Some(json!({"enabled": true, "retention_days": 7})),
            )],
        ),
        (
            "erasure_preview",
            vec![(
                "POST",
                format!("/v1/tenants/{t}/erasures/preview"),
                Some(json!({"subjects": [subject]})),
            )],
        ),
        (
            "records",
            vec![("GET", format!("/v1/tenants/{t}/records?limit=50"), None)],
        ),
        ("holds", vec![("GET", format!("/v1/tenants/{t}/holds"), None)]),
        ("archive", vec![("GET", format!("/v1/tenants/{t}/archive"), None)]),
        ("keys", vec![("GET", "/v1/keys".into(), None)]),
    ];
    let mut evidence = vec![
        ("GET", format!("/v1/tenants/{t}/stats"), None),
        ("GET", format!("/v1/tenants/{t}/receipts"), None),
        ("GET", "/v1/public-key".to_string(), None),
        (
            "GET",
            format!("/v1/tenants/{t}/ledger?kind=verify.result&limit=1000"),
            None,
        ),
        ("GET", format!("/v1/tenants/{t}/ledger?from=1&limit=50"), None),
    ];
    for s in &streams {
        evidence.push(("GET", format!("/v1/tenants/{t}/checkpoints?stream={s}"), None));
    }
    pages.push(("evidence", evidence));
    let rounds = 9;
    let mut timings = Map::new();
    for (page, requests) in &pages {
        let mut totals = Vec::with_capacity(rounds);
        let mut slowest: (f64, String) = (0.0, String::new());
        for _ in 0..rounds {
            let mut total = 0.0;
            for (method, path, body) in requests {
                let (ms, _) = call(method, path, body.clone())?;
                if ms > slowest.0 {
                    slowest = (ms, path.clone());
                }
                total += ms;
            }
            totals.push(total);
        }
        totals.sort_by(f64::total_cmp);
        timings.insert(
            page.to_string(),
            json!({
                "median_ms": (totals[rounds / 2] * 10.0).round() / 10.0,
                "max_ms": (totals[rounds - 1] * 10.0).round() / 10.0,
                "slowest_request": slowest.1,
            }),
        );
    }
    out.insert("dashboard_tenant".into(), json!(tenant));
    out.insert("dashboard_tenant_records".into(), ov["records"].clone());
    out.insert("dashboard_rounds".into(), json!(rounds));
    out.insert("dashboard_pages".into(), Value::Object(timings));
    drop(server);
    Ok(())
}
