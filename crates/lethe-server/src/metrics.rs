//! Prometheus metrics: what the service counted since it started (HTTP
//! requests, ingest outcomes) plus what the store holds, read at scrape time.
//!
//! Label cardinality is bounded: HTTP metrics are labelled by route
//! template (never the raw path), and per-tenant series stop at
//! [`MAX_TENANT_SERIES`] distinct tenants, after which further tenants are
//! counted under `tenant="_other"`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use lethe_vault::ingest::IngestReport;
use lethe_vault::schedule::JobStatus;
use lethe_vault::stats::StatsReport;

/// Distinct tenants that get their own series; the rest share `_other`.
pub const MAX_TENANT_SERIES: usize = 1000;

/// Upper bounds (seconds) of the request-latency histogram buckets.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters of ingest outcomes for one tenant.
#[derive(Default, Clone, Copy)]
struct IngestCounts {
    stored: u64,
    duplicates: u64,
    not_captured: u64,
    rejected: u64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    ingest: BTreeMap<String, IngestCounts>,
    /// Erasure jobs ended, by (tenant, state).
    erasures: BTreeMap<(String, String), u64>,
    /// Records erasure jobs removed, by tenant.
    erased: BTreeMap<String, u64>,
    /// Sweeps run by this process (scheduled or through the API).
    sweeps: u64,
    swept_records: u64,
    archived_bytes: u64,
    archive_failures: u64,
}

/// Keeps per-tenant maps within [`MAX_TENANT_SERIES`] tenants.
fn tenant_key<V>(m: &BTreeMap<String, V>, tenant: &str) -> String {
    if m.contains_key(tenant) || m.len() < MAX_TENANT_SERIES {
        tenant.to_string()
    } else {
        "_other".to_string()
    }
}

/// The service's counters.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one HTTP request by route template, method and status.
    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        let mut m = self.lock();
        *m.requests
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        let h = m.latency.entry(route.to_string()).or_default();
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += s;
    }

    /// Counts what one ingest request did for `tenant`.
    pub fn ingested(&self, tenant: &str, r: &IngestReport) {
        let mut m = self.lock();
        let key = tenant_key(&m.ingest, tenant);
        let c = m.ingest.entry(key).or_default();
        c.stored += r.stored;
        c.duplicates += r.duplicates;
        c.not_captured += r.not_captured;
        c.rejected += r.rejected;
    }

    /// Counts an erasure job that ended.
    pub fn erasure(&self, tenant: &str, state: &str, removed: u64) {
        let mut m = self.lock();
        let t = tenant_key(&m.erased, tenant);
        *m.erasures.entry((t.clone(), state.to_string())).or_default() += 1;
        *m.erased.entry(t).or_default() += removed;
    }

    /// Counts a sweep this process ran: records removed, bytes archived,
    /// rules whose archive target failed.
    pub fn sweep(&self, removed: u64, archived_bytes: u64, archive_failures: u64) {
        let mut m = self.lock();
        m.sweeps += 1;
        m.swept_records += removed;
        m.archived_bytes += archived_bytes;
        m.archive_failures += archive_failures;
    }

    /// The Prometheus text exposition: the counters, and `stats` (what
    /// the store holds) at `now_us`.
    pub fn render(&self, stats: &StatsReport, schedule: &[JobStatus], now_us: i64) -> String {
        let mut out = String::with_capacity(8192);
        let m = self.lock();
        header(
            &mut out,
            "lethe_http_requests_total",
            "counter",
            "HTTP requests by route template, method and status.",
        );
        for ((route, method, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "lethe_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                esc(route)
            );
        }
        header(
            &mut out,
            "lethe_http_request_duration_seconds",
            "histogram",
            "HTTP request latency by route template.",
        );
        for (route, h) in &m.latency {
            let route = esc(route);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "lethe_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "lethe_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "lethe_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "lethe_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        for (name, help, get) in [
            (
                "lethe_records_ingested_total",
                "Records stored through the API, by tenant.",
                (|c: &IngestCounts| c.stored) as fn(&IngestCounts) -> u64,
            ),
            (
                "lethe_records_duplicate_total",
                "Records sent again (id already stored), by tenant.",
                |c| c.duplicates,
            ),
            (
                "lethe_records_not_captured_total",
                "Records counted but not stored (capture none), by tenant.",
                |c| c.not_captured,
            ),
            (
                "lethe_records_rejected_total",
                "Lines rejected as invalid, by tenant.",
                |c| c.rejected,
            ),
        ] {
            header(&mut out, name, "counter", help);
            for (t, c) in &m.ingest {
                let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", esc(t), get(c));
            }
        }
        header(
            &mut out,
            "lethe_erasures_total",
            "counter",
            "Erasure jobs ended, by tenant and state (done, failed).",
        );
        for ((t, state), n) in &m.erasures {
            let _ = writeln!(
                out,
                "lethe_erasures_total{{tenant=\"{}\",state=\"{state}\"}} {n}",
                esc(t)
            );
        }
        header(
            &mut out,
            "lethe_erasure_records_total",
            "counter",
            "Records removed by erasure jobs, by tenant.",
        );
        for (t, n) in &m.erased {
            let _ = writeln!(out, "lethe_erasure_records_total{{tenant=\"{}\"}} {n}", esc(t));
        }
        for (name, help, v) in [
            (
                "lethe_sweeps_total",
                "Sweeps run by this process (scheduled or through the API).",
                m.sweeps,
            ),
            (
                "lethe_sweep_records_removed_total",
                "Records deleted or anonymized by those sweeps.",
                m.swept_records,
            ),
            (
                "lethe_archive_bytes_total",
                "Bytes those sweeps wrote to archive targets.",
                m.archived_bytes,
            ),
            (
                "lethe_archive_failures_total",
                "Retention rules whose archive target failed in those sweeps (their records stay).",
                m.archive_failures,
            ),
        ] {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {v}");
        }
        drop(m);
        // What the store holds, per (tenant, stream): scopes summed.
        let mut groups: BTreeMap<(String, String), (u64, u64, Option<i64>)> = BTreeMap::new();
        let mut tenants = std::collections::BTreeSet::new();
        for r in &stats.rows {
            let tenant = if tenants.contains(&r.tenant) || tenants.len() < MAX_TENANT_SERIES {
                tenants.insert(r.tenant.clone());
                r.tenant.clone()
            } else {
                "_other".to_string()
            };
            let g = groups.entry((tenant, r.stream.clone())).or_default();
            g.0 += r.records;
            g.1 += r.bytes;
            let oldest = r.oldest.as_deref().and_then(lethe_core::record::parse_ts);
            g.2 = match (g.2, oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        header(
            &mut out,
            "lethe_store_records",
            "gauge",
            "Records stored, by tenant and stream.",
        );
        for ((t, s), g) in &groups {
            let _ = writeln!(
                out,
                "lethe_store_records{{tenant=\"{}\",stream=\"{}\"}} {}",
                esc(t),
                esc(s),
                g.0
            );
        }
        header(
            &mut out,
            "lethe_store_bytes",
            "gauge",
            "Bytes on disk attributed to stored records, by tenant and stream.",
        );
        for ((t, s), g) in &groups {
            let _ = writeln!(
                out,
                "lethe_store_bytes{{tenant=\"{}\",stream=\"{}\"}} {}",
                esc(t),
                esc(s),
                g.1
            );
        }
        header(
            &mut out,
            "lethe_oldest_record_age_seconds",
            "gauge",
            "Age of the oldest stored record by event time, by tenant and stream: what a retention alert watches.",
        );
        for ((t, s), g) in &groups {
            if let Some(ts) = g.2 {
                let age = (now_us - ts).max(0) as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "lethe_oldest_record_age_seconds{{tenant=\"{}\",stream=\"{}\"}} {age}",
                    esc(t),
                    esc(s)
                );
            }
        }
        header(
            &mut out,
            "lethe_store_disk_bytes",
            "gauge",
            "The data directory's size on disk.",
        );
        let _ = writeln!(out, "lethe_store_disk_bytes {}", stats.totals.bytes);
        render_schedule(&mut out, schedule);
        out
    }
}

/// The scheduled jobs' last outcomes: what an alert on a sweep or
/// verification that stopped succeeding watches.
fn render_schedule(out: &mut String, schedule: &[JobStatus]) {
    let secs = |t: &Option<String>| {
        t.as_deref()
            .and_then(lethe_core::record::parse_ts)
            .map(|us| us as f64 / 1e6)
    };
    header(
        out,
        "lethe_job_last_success_timestamp_seconds",
        "gauge",
        "When a scheduled job (sweep, verify) last succeeded, Unix seconds.",
    );
    for j in schedule {
        if let Some(t) = secs(&j.last_success_at) {
            let _ = writeln!(out, "lethe_job_last_success_timestamp_seconds{{job=\"{}\"}} {t}", j.job);
        }
    }
    header(
        out,
        "lethe_job_last_duration_seconds",
        "gauge",
        "How long a scheduled job's last run took.",
    );
    for j in schedule {
        if let Some(l) = &j.last {
            let _ = writeln!(
                out,
                "lethe_job_last_duration_seconds{{job=\"{}\"}} {}",
                j.job,
                l.duration_ms as f64 / 1000.0
            );
        }
    }
    header(
        out,
        "lethe_job_last_result",
        "gauge",
        "1 for the result of a scheduled job's last run (success, partial, gaps, failed).",
    );
    for j in schedule {
        if let Some(l) = &j.last {
            let _ = writeln!(
                out,
                "lethe_job_last_result{{job=\"{}\",result=\"{}\"}} 1",
                j.job,
                esc(&l.result)
            );
        }
    }
    header(
        out,
        "lethe_job_next_run_timestamp_seconds",
        "gauge",
        "When a scheduled job runs next, Unix seconds (in the past: due now).",
    );
    for j in schedule {
        if let Some(t) = secs(&j.next_at) {
            let _ = writeln!(out, "lethe_job_next_run_timestamp_seconds{{job=\"{}\"}} {t}", j.job);
        }
    }
    header(
        out,
        "lethe_verify_unexplained_gaps",
        "gauge",
        "Unexplained gaps the last scheduled verification found (0: everything verified).",
    );
    if let Some(g) = schedule
        .iter()
        .filter(|j| j.job == "verify")
        .find_map(|j| j.last.as_ref().and_then(|l| l.gaps))
    {
        let _ = writeln!(out, "lethe_verify_unexplained_gaps {g}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, quote, newline).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
