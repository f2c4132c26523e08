//! Several `lethe serve` nodes on one PostgreSQL store: exactly one leads,
//! and when the leader dies in the middle of a sweep another node takes
//! over within the check interval, finishes the recorded intent under one
//! receipt, and nothing acknowledged through either node is lost. Needs a
//! PostgreSQL server (`LETHE_TEST_PG_URL`, else the local service): fails,
//! never skips, without one.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A running node and the lines it wrote to standard error so far.
struct Node {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(dir: &Path, crash: Option<&str>, bootstrap: bool) -> (Node, Option<String>) {
        let port = free_port();
        let mut c = lethe(dir);
        c.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        if bootstrap {
            c.arg("--bootstrap-key");
        }
        if let Some(point) = crash {
            c.env("LETHE_TEST_CRASH", point);
        }
        let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let token = bootstrap.then(|| {
            let mut t = String::new();
            BufReader::new(child.stdout.as_mut().unwrap())
                .read_line(&mut t)
                .unwrap();
            t.trim().to_string()
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let (l, mut err) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s).map(|_| ());
            l.lock().unwrap().extend(s.lines().map(String::from));
        });
        let node = Node { child, port, log };
        let t0 = Instant::now();
        while http(port, "GET", "/readyz", None, "").map(|r| r.0).ok() != Some(200) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "node on {port} never became ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        (node, token)
    }

    /// Whether the node has said it leads (its log is read when it exits,
    /// so this asks the node itself while it runs).
    fn leads(&self, token: &str) -> bool {
        let (_, body) = http(self.port, "GET", "/metrics", Some(token), "").unwrap_or_default();
        body.lines().any(|l| l.trim() == "lethe_leader 1")
    }
}

fn pg_config(schema: &str) -> String {
    let url = lethe_store::testsuite::test_pg_url();
    format!("{POLICY}backend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\n[server]\nleader_check = \"1s\"\n")
}

fn drop_schema(schema: &str) {
    lethe_store::testsuite::drop_pg_schemas(schema);
}

#[test]
fn a_leader_killed_mid_sweep_is_replaced_within_the_check_interval_and_its_intent_finished_once() {
    let schema = format!("lethe_fo{}", std::process::id());
    drop_schema(&schema);
    let d = tempfile::tempdir().unwrap();
    let (wa, wb) = (d.path().join("a"), d.path().join("b"));
    for w in [&wa, &wb] {
        std::fs::create_dir_all(w).unwrap();
        config(w, &pg_config(&schema));
    }
    let inp = input(d.path(), 3000, 7);
    let o = run(lethe(&wa).arg("ingest").arg(&inp));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Every node of a cluster shares the master key.
    std::fs::create_dir_all(wb.join("data")).unwrap();
    std::fs::copy(wa.join("data/master.key"), wb.join("data/master.key")).unwrap();

    // Node A leads (it started first); it dies at a chosen step of a sweep,
    // as abruptly as kill -9 (a crash point aborts the process there).
    let (mut a, token) = Node::start(&wa, Some("sweep.after_mark_dropping"), true);
    let token = token.unwrap();
    let t0 = Instant::now();
    while !a.leads(&token) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the first node never led: {:?}",
            http(a.port, "GET", "/metrics", Some(&token), "")
                .map(|(s, b)| (s, b.lines().rev().take(3).collect::<Vec<_>>().join("|")))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut b, _) = Node::start(&wb, None, false);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!b.leads(&token), "two nodes never lead at once");

    // Records acknowledged by both nodes.
    let line = |i: u32| {
        format!(
            r#"{{"id":"0193a0c4-5e1f-7000-8000-{i:012}","tenant":"acme","stream":"audit:1","ts":"2026-05-31T10:00:00Z","fields":{{"action":"login"}}}}"#
        )
    };
    for (i, port) in [(1, a.port), (2, b.port)] {
        let (status, body) = http(
            port,
            "POST",
            "/v1/tenants/acme/records",
            Some(&token),
            &format!("{}\n", line(i)),
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }

    // The sweep through A: A dies part way, after recording its intent.
    let _ = http(a.port, "POST", "/v1/tenants/acme/sweep", Some(&token), "");
    assert!(!a.child.wait().unwrap().success(), "node A died mid-sweep");
    let died = Instant::now();
    while !b.leads(&token) {
        assert!(
            died.elapsed() < Duration::from_secs(30),
            "no node took over within 30 s; A said: {:?}",
            a.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = died.elapsed();
    eprintln!("takeover after {:.1} s", took.as_secs_f64());
    // Meanwhile and after, B takes records.
    let (status, body) = http(
        b.port,
        "POST",
        "/v1/tenants/acme/records",
        Some(&token),
        &format!("{}\n", line(3)),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");

    // The new leader finished A's intent: one receipt, verify clean.
    let t0 = Instant::now();
    loop {
        let (intents, completed) = intents_and_receipts(&wb, "sweep.intent", "receipt.sweep");
        if !intents.is_empty() && completed == intents {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "intents {intents:?}, receipts for {completed:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    verifies_with_one_receipt_per_intent(&wb, "after the takeover");
    let ids = run(lethe(&wb).args(["logs", "--tenant", "acme", "--json", "--limit", "1000000"]));
    let text = String::from_utf8_lossy(&ids.stdout);
    for i in 1..=3 {
        assert!(
            text.contains(&format!("0193a0c4-5e1f-7000-8000-{i:012}")),
            "acknowledged record {i} is stored"
        );
    }
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    drop_schema(&schema);
}
