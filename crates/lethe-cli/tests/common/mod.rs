//! Helpers shared by the CLI's end-to-end tests: running the real binary
//! on a data directory, reading its JSON, writing input, killing it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

pub const NOW: &str = "2026-06-01T00:00:00Z";

pub fn lethe(dir: &Path) -> Command {
    lethe_at(dir, &dir.join("data"))
}

pub fn lethe_at(dir: &Path, data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lethe"));
    c.arg("--data-dir").arg(data).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("LETHE_") {
            c.env_remove(k);
        }
    }
    c
}

pub fn run(c: &mut Command) -> Output {
    c.output().expect("run lethe")
}

pub fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// Writes `n` synthetic records (120 days before NOW) to `input.ndjson`.
pub fn input(dir: &Path, n: u64, seed: u64) -> PathBuf {
    let now = lethe_core::record::parse_ts(NOW).unwrap();
    let mut s = lethe_vault::synth::Synth::new(seed, n, now, 120);
    let mut out = String::new();
    let mut line = String::new();
    while {
        line.clear();
        s.next_line(&mut line)
    } {
        out.push_str(&line);
        out.push('\n');
    }
    let p = dir.join("input.ndjson");
    std::fs::write(&p, out).unwrap();
    p
}

pub fn config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("lethe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub const POLICY: &str = "[retention.default]\nwindow = \"60d\"\naction = \"anonymize\"\n[[retention.policy]]\nstream = \"requests\"\nwindow = \"30d\"\naction = \"delete\"\n[store]\ningest_batch = 500\n";

pub fn count(dir: &Path) -> u64 {
    let o = run(lethe(dir).args(["stats", "--json"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    json(&o)["result"]["totals"]["records"].as_u64().unwrap()
}

/// The ledger's intents of one kind and, sorted, the intents its receipts
/// of the matching kind complete (a purge's receipt names its first intent
/// and, when it removed records stored while it ran, its continuation).
pub fn intents_and_receipts(w: &Path, intent_kind: &str, receipt_kind: &str) -> (Vec<u64>, Vec<u64>) {
    let ledger = json(&run(lethe(w).args(["ledger", "--json", "--limit", "100000"])));
    let entries = ledger["result"].as_array().unwrap();
    let intents: Vec<u64> = entries
        .iter()
        .filter(|e| e["kind"] == intent_kind)
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let mut completed: Vec<u64> = entries
        .iter()
        .filter(|e| e["kind"] == receipt_kind)
        .flat_map(|e| {
            let body: Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
            [body["intent"].as_u64(), body["continuation"].as_u64()]
        })
        .flatten()
        .collect();
    completed.sort();
    (intents, completed)
}

/// Starts `c` and kills it with SIGKILL after `ms` milliseconds.
pub fn kill_after(c: &mut Command, ms: u64) {
    let mut child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// `lethe verify` passes with zero gaps, and every sweep intent in the
/// ledger has exactly one receipt.
pub fn verifies_with_one_receipt_per_intent(w: &Path, what: &str) {
    let o = run(lethe(w).args(["verify", "--json"]));
    let v = json(&o);
    assert_eq!(o.status.code(), Some(0), "{what}: {:#}", v["unexplained_gaps"]);
    let (intents, completed) = intents_and_receipts(w, "sweep.intent", "receipt.sweep");
    assert_eq!(
        completed, intents,
        "{what}: each intent is completed by exactly one receipt"
    );
}

/// A fresh data directory `name` under `dir` with the same configuration,
/// optionally loaded with `inp`.
pub fn workdir(dir: &Path, name: &str, inp: Option<&Path>) -> PathBuf {
    let w = dir.join(name);
    std::fs::create_dir_all(&w).unwrap();
    std::fs::copy(dir.join("lethe.toml"), w.join("lethe.toml")).unwrap();
    if let Some(inp) = inp {
        assert!(run(lethe(&w).arg("ingest").arg(inp)).status.success());
    }
    w
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// `lethe purge` of one subject of `tenant` under a ticket, without
/// confirmation flags (callers add `--yes`, `--json`…).
pub fn purge_args<'a>(tenant: &'a str, subject: &'a str, ticket: &'a str) -> Vec<&'a str> {
    vec![
        "purge",
        "--tenant",
        tenant,
        "--subject",
        subject,
        "--reason",
        "GDPR Art. 17",
        "--ticket",
        ticket,
    ]
}

/// One HTTP/1.1 request over loopback; (status, body).
pub fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> std::io::Result<(u16, String)> {
    http_as(port, method, path, token, "application/x-ndjson", body)
}

/// [`http`] with a content type; (status, body).
pub fn http_as(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: lethe\r\nConnection: close\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A JSON call to a node: (status, body); status 0 when the node did not answer.
pub fn call(port: u16, method: &str, path: &str, token: &str, body: &str) -> (u16, serde_json::Value) {
    match http_as(port, method, path, Some(token), "application/json", body) {
        Ok((status, text)) => (status, serde_json::from_str(&text).unwrap_or_default()),
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// Previews (expecting `expect` records selected) and orders the erasure
/// of `subject` of tenant `acme` through the node on `port` under
/// `ticket`; the job's location.
pub fn order_erasure(port: u16, token: &str, subject: &str, ticket: &str, expect: usize) -> String {
    let (status, p) = call(
        port,
        "POST",
        "/v1/tenants/acme/erasures/preview",
        token,
        &format!(r#"{{"subjects":["{subject}"]}}"#),
    );
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["preview"]["selected"], expect as u64, "{p}");
    let (status, job) = call(
        port,
        "POST",
        "/v1/tenants/acme/erasures",
        token,
        &format!(
            r#"{{"preview_id":"{}","reason":"GDPR art. 17","ticket":"{ticket}"}}"#,
            p["preview_id"].as_str().unwrap()
        ),
    );
    assert_eq!(status, 202, "{job}");
    format!("/v1/erasures/{}", job["id"].as_str().unwrap())
}

/// `n` synthetic records with client ids (so a rerun deduplicates), event
/// times in the `days` before `now` — a later `now` than the store's data
/// makes every batch open partitions of days the store has not seen.
pub fn input_at(dir: &Path, name: &str, n: u64, seed: u64, now: &str, days: u32) -> PathBuf {
    input_of(dir, name, n, seed, now, days, None)
}

/// As [`input_at`], over `tenants` tenants `t0001`… when given.
pub fn input_of(dir: &Path, name: &str, n: u64, seed: u64, now: &str, days: u32, tenants: Option<u32>) -> PathBuf {
    let t = lethe_core::record::parse_ts(now).unwrap();
    let mut s = lethe_vault::synth::Synth::new(seed, n, t, days);
    if let Some(k) = tenants {
        s = s.with_tenants(k);
    }
    let mut out = String::new();
    let mut line = String::new();
    let mut i = 0u64;
    while {
        line.clear();
        s.next_line(&mut line)
    } {
        out.push_str(&format!(
            "{{\"id\":\"00000000-{seed:04x}-7000-8000-{i:012}\",{}\n",
            &line[1..]
        ));
        i += 1;
    }
    let p = dir.join(name);
    std::fs::write(&p, out).unwrap();
    p
}

/// A tiny deterministic generator for kill times.
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self, m: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % m.max(1)
    }
}

/// Every command still opens the store and reads it.
pub fn still_opens(w: &Path, what: &str) {
    let o = run(lethe(w).args(["stats", "--json"]));
    assert!(
        o.status.success(),
        "{what}: stats: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for t in ["acme", "globex"] {
        let o = run(lethe(w).args(["logs", "--tenant", t, "--json", "--limit", "50"]));
        assert_eq!(
            o.status.code(),
            Some(0),
            "{what}: logs: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Every command still opens the store; `verify` finds nothing but records
/// an interrupted ingest did not seal yet.
pub fn still_opens_and_verifies(w: &Path, what: &str) {
    still_opens(w, what);
    let o = run(lethe(w).args(["verify", "--json"]));
    assert!(
        matches!(o.status.code(), Some(0 | 5)),
        "{what}: verify ran: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for g in json(&o)["unexplained_gaps"].as_array().unwrap() {
        assert!(
            g["problem"]
                .as_str()
                .unwrap()
                .contains("not under any signed checkpoint"),
            "{what}: {g:#}"
        );
    }
}

/// Starts `lethe` in `w` with `args`, output discarded.
pub fn spawn(w: &Path, args: &[&str]) -> Child {
    lethe(w)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The seed of a test's random kill moments: `LETHE_TEST_SEED`, else the
/// clock (odd, for the generators that need it); printed so a failure can
/// be replayed.
pub fn kill_seed() -> u64 {
    let seed = std::env::var("LETHE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill moments from LETHE_TEST_SEED={seed}");
    seed
}

/// After commands were killed in `w`: the store opens; rerunning the
/// ingest of `new`, the `purge` (of `subject` of acme) and the cleanup
/// finishes every intent with one receipt, `verify` is clean, and no live
/// record of the subject is left under its destroyed key.
pub fn finishes_after_kills(w: &Path, new: &Path, purge: &[&str], subject: &str, what: &str) {
    // A killed purge or cleanup leaves its intent for the next run to
    // finish (verify names it until then): here only opening is checked.
    still_opens(w, what);
    assert!(run(lethe(w).arg("ingest").arg(new)).status.success(), "{what}");
    let o = run(lethe(w).args(purge));
    assert!(o.status.success(), "{what}: {}", String::from_utf8_lossy(&o.stdout));
    assert!(run(lethe(w).args(["cleanup", "--now", NOW])).status.success(), "{what}");
    verifies_with_one_receipt_per_intent(w, what);
    let (intents, receipts) = intents_and_receipts(w, "purge.intent", "receipt.purge");
    assert_eq!(intents, receipts, "{what}: one receipt per purge intent");
    // What is left of the subject (records that arrived after its
    // erasure) is readable: never stored under the destroyed key.
    let o = run(lethe(w).args(["logs", "--tenant", "acme", "--subject", subject, "--json"]));
    assert!(o.status.success());
    for l in String::from_utf8(o.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(
            v.get("erased").is_none(),
            "{what}: a live record under a destroyed key: {v}"
        );
    }
}

/// A `lethe.toml` for a store in `schema` of the PostgreSQL server at
/// `url`, under [`POLICY`] (callers append sections of their own).
pub fn pg_store_config(url: &str, schema: &str) -> String {
    format!("{POLICY}backend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\n")
}

/// Ingests `new` into `w` (which holds `base` records) six times, each
/// killed (SIGKILL) at a moment drawn from `rng` within `full` ms (the
/// length of an uninterrupted run), each on the store the one before left:
/// the store opens and verifies after every kill, committed records never
/// go away, batches are whole; a last, uninterrupted run brings it to
/// `want` records and verifies with one receipt per intent.
pub fn ingest_killed_at_random_loses_nothing(w: &Path, new: &Path, base: u64, full: u64, want: u64, rng: &mut Lcg) {
    let mut last = count(w);
    for k in 0..6 {
        let at = 5 + rng.next(full);
        kill_after(lethe(w).arg("ingest").arg(new), at);
        let what = format!("kill {k} after {at} ms of a {full} ms run");
        still_opens_and_verifies(w, &what);
        let now = count(w);
        assert!(now >= last, "{what}: committed records never go away ({last} → {now})");
        assert_eq!((now - base) % 500, 0, "{what}: batches are whole ({now})");
        last = now;
    }
    let o = run(lethe(w).arg("ingest").arg(new).arg("--json"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        count(w),
        want,
        "the rerun completes the store, duplicates dropped by id"
    );
    verifies_with_one_receipt_per_intent(w, "after the kills");
}
