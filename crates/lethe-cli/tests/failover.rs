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
use std::sync::atomic::Ordering;
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
        Node::start_on(dir, free_port(), crash, bootstrap)
    }

    /// [`Node::start`] on a chosen port (a node restarted where it was).
    fn start_on(dir: &Path, port: u16, crash: Option<&str>, bootstrap: bool) -> (Node, Option<String>) {
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
    format!("{}[server]\nleader_check = \"1s\"\n", pg_store_config(&url, schema))
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

/// A record of tenant `acme` with client id `n`, stamped now (no sweep of
/// this run removes it).
fn fresh_line(n: u64) -> (String, String) {
    let id = format!("0193a0c5-5e1f-7000-8000-{n:012}");
    let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    let line =
        format!(r#"{{"id":"{id}","tenant":"acme","stream":"audit:1","ts":"{ts}","fields":{{"action":"login"}}}}"#);
    (id, line)
}

/// Writes `per` records of `subject` (five days old) and ingests them
/// through the CLI in `w`.
fn ingest_subject(w: &Path, subject: &str, per: usize) {
    let day = chrono::Utc::now() - chrono::Duration::days(5);
    let mut out = String::new();
    for n in 0..per {
        out += &format!(
            r#"{{"tenant":"acme","stream":"audit:1","ts":"{}","subject":"{subject}","fields":{{"action":"login","actor_email":"x{n}@example.com"}}}}"#,
            (day + chrono::Duration::seconds(n as i64)).format("%Y-%m-%dT%H:%M:%SZ")
        );
        out.push('\n');
    }
    let p = w.join(format!("{subject}.ndjson"));
    std::fs::write(&p, out).unwrap();
    let o = run(lethe(w).arg("ingest").arg(&p));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Two nodes on one PostgreSQL store while an application pushes records
/// through both all along. Round after round the leading node is killed
/// (SIGKILL) at a random moment of a sweep or of an erasure job, on a store
/// holding data; the other node takes over within the check interval and
/// the dead one comes back as a follower. At the end every job is done with
/// exactly one receipt, every intent has exactly one receipt, `verify` is
/// clean, the erased subjects are gone and every record either node
/// acknowledged is stored.
#[test]
fn leaders_killed_at_random_moments_of_sweeps_and_erasure_jobs_lose_nothing_acknowledged_and_leave_one_receipt_each() {
    use std::sync::atomic::AtomicBool;

    let schema = format!("lethe_fr{}", std::process::id());
    drop_schema(&schema);
    let d = tempfile::tempdir().unwrap();
    let dirs = [d.path().join("a"), d.path().join("b")];
    for w in &dirs {
        std::fs::create_dir_all(w).unwrap();
        config(w, &pg_config(&schema));
    }
    let old = input(&dirs[0], 2000, 11);
    let o = run(lethe(&dirs[0]).arg("ingest").arg(&old));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    const ROUNDS: usize = 6;
    const PER: usize = 150;
    for r in (1..ROUNDS).step_by(2) {
        ingest_subject(&dirs[0], &format!("subject-{r}"), PER);
    }
    std::fs::create_dir_all(dirs[1].join("data")).unwrap();
    std::fs::copy(dirs[0].join("data/master.key"), dirs[1].join("data/master.key")).unwrap();

    let (first, token) = Node::start(&dirs[0], None, true);
    let token = token.unwrap();
    let (second, _) = Node::start(&dirs[1], None, false);
    let mut nodes = [first, second];
    let ports = [nodes[0].port, nodes[1].port];

    // The application: one record at a time, to either node in turn; what
    // a node answered 200 to is acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let (stop, token) = (stop.clone(), token.clone());
        // Returns how many records it sent and the ids acknowledged.
        std::thread::spawn(move || {
            let (mut n, mut acked) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let (id, line) = fresh_line(n);
                let port = ports[(n % 2) as usize];
                if let Ok((200, _)) = http(
                    port,
                    "POST",
                    "/v1/tenants/acme/records",
                    Some(&token),
                    &format!("{line}\n"),
                ) {
                    acked.push(id);
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            (n, acked)
        })
    };

    let leader = |nodes: &[Node; 2]| -> Option<usize> { (0..2).find(|&i| nodes[i].leads(&token)) };
    let wait_leader = |nodes: &[Node; 2], not: Option<usize>| -> usize {
        let t0 = Instant::now();
        loop {
            if let Some(i) = leader(nodes).filter(|&i| Some(i) != not) {
                return i;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no node led within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let seed = kill_seed();
    let mut rng = seed;
    let mut next = |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    let mut jobs = Vec::new();
    let mut takeovers = Vec::new();
    for r in 0..ROUNDS {
        let l = wait_leader(&nodes, None);
        let port = nodes[l].port;
        let delay = if r % 2 == 0 {
            // A sweep with work to do: more expired records first.
            let more = input(&dirs[1 - l], 1000, 100 + r as u64);
            assert!(run(lethe(&dirs[1 - l]).arg("ingest").arg(&more)).status.success());
            let t = token.clone();
            std::thread::spawn(move || http(port, "POST", "/v1/tenants/acme/sweep", Some(&t), ""));
            50 + next(1450)
        } else {
            // An erasure job, ordered through either node.
            let via = ports[next(2) as usize];
            jobs.push(order_erasure(
                via,
                &token,
                &format!("subject-{r}"),
                &format!("DSR-subject-{r}"),
                PER,
            ));
            next(400)
        };
        std::thread::sleep(Duration::from_millis(delay));
        nodes[l].child.kill().unwrap(); // SIGKILL
        nodes[l].child.wait().unwrap();
        let died = Instant::now();
        let now_leads = wait_leader(&nodes, Some(l));
        takeovers.push(died.elapsed());
        eprintln!(
            "round {r}: killed node {l} {delay} ms into its {}; node {now_leads} led after {:.1} s",
            if r % 2 == 0 { "sweep" } else { "erasure job" },
            died.elapsed().as_secs_f64()
        );
        nodes[l] = Node::start_on(&dirs[l], ports[l], None, false).0;
    }

    // Every job ends done, verified, with a receipt.
    let mut receipts = Vec::new();
    for location in &jobs {
        let t0 = Instant::now();
        let job = loop {
            let (_, job) = call(ports[0], "GET", location, &token, "");
            if job["state"] == "done" || job["state"] == "failed" {
                break job;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "the job never ended: {job}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(job["state"], "done", "{job}");
        assert_eq!(job["report"]["verified"], true, "{job}");
        receipts.push(job["receipt"].as_u64().unwrap());
    }
    // Every sweep intent the killed leaders recorded is finished.
    let t0 = Instant::now();
    loop {
        let (intents, completed) = intents_and_receipts(&dirs[0], "sweep.intent", "receipt.sweep");
        if completed == intents {
            // A sweep killed before it recorded its intent leaves none;
            // most rounds' sweeps are killed after.
            assert!(!intents.is_empty(), "no sweep got as far as its intent");
            eprintln!("sweep intents {intents:?}, each with one receipt");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "sweep intents {intents:?}, receipts for {completed:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    let (sent, acked) = pusher.join().unwrap();

    let (intents, completed) = intents_and_receipts(&dirs[1], "purge.intent", "receipt.purge");
    assert_eq!(completed, intents, "each purge intent has exactly one receipt");
    let ledger = json(&run(lethe(&dirs[1]).args(["ledger", "--json", "--limit", "1000000"])));
    let purge_receipts: Vec<u64> = ledger["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "receipt.purge")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    receipts.sort();
    assert_eq!(
        purge_receipts, receipts,
        "one receipt per erasure job, the one it names"
    );
    verifies_with_one_receipt_per_intent(&dirs[1], "after the kills");
    for r in (1..ROUNDS).step_by(2) {
        let o = run(lethe(&dirs[0]).args([
            "logs",
            "--tenant",
            "acme",
            "--subject",
            &format!("subject-{r}"),
            "--json",
        ]));
        assert!(o.status.success());
        assert!(o.stdout.is_empty(), "subject-{r} is erased");
    }
    let o = run(lethe(&dirs[1]).args(["logs", "--tenant", "acme", "--json", "--limit", "10000000"]));
    let stored: std::collections::HashSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(String::from))
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    eprintln!(
        "{} records sent, {} acknowledged, takeovers {:?}",
        sent,
        acked.len(),
        takeovers
    );
    assert!(acked.len() > 100, "the application got records in");
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    for n in &mut nodes {
        n.child.kill().unwrap();
        n.child.wait().unwrap();
    }
    drop_schema(&schema);
}
