//! An erasure job survives the server being killed: `lethe serve` is
//! aborted at each step of a job (crash points) and SIGKILLed at random
//! moments while jobs run, then started again; every job ends `done` with
//! exactly one receipt, its subject's records are gone, and the store verifies.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SUBJECTS: usize = 6;
const PER_SUBJECT: usize = 400;

fn seed(dir: &Path) {
    let mut out = String::new();
    for s in 0..SUBJECTS {
        for n in 0..PER_SUBJECT {
            out += &format!(
                r#"{{"tenant":"acme","stream":"audit:1","ts":"2026-11-{:02}T{:02}:{:02}:00Z","subject":"subject-{s}","fields":{{"action":"login","actor_email":"s{s}@example.com"}}}}"#,
                1 + n % 28,
                n % 24,
                n % 60
            );
            out.push('\n');
        }
        // Someone else's record, which stays.
    }
    out += r#"{"tenant":"acme","stream":"audit:1","ts":"2026-11-02T00:00:00Z","subject":"bystander","fields":{"action":"login"}}"#;
    out.push('\n');
    std::fs::write(dir.join("seed.ndjson"), out).unwrap();
    let o = run(lethe(dir).args(["ingest", "seed.ndjson"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn serve(dir: &Path, port: u16, crash: Option<&str>) -> Child {
    let mut c = lethe(dir);
    c.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(point) = crash {
        c.env("LETHE_TEST_CRASH", point);
    }
    let mut child = c.spawn().unwrap();
    // Drain the log so the server never blocks on a full pipe.
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(err).lines() {});
    let t0 = Instant::now();
    while http(port, "GET", "/readyz", None, "").map(|r| r.0).ok() != Some(200) {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("the server exited before it was ready: {s}");
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the server never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn wait_exit(child: &mut Child, within: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn follow(port: u16, token: &str, location: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let (status, job) = call(port, "GET", location, token, "");
        assert_eq!(status, 200, "{job}");
        if job["state"] == "done" || job["state"] == "failed" {
            return job;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the job never ended: {job}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn an_erasure_job_killed_at_any_moment_finishes_after_restart_with_exactly_one_receipt() {
    let d = tempfile::tempdir().unwrap();
    seed(d.path());
    let o = run(lethe(d.path()).args([
        "keys", "create", "--name", "dpo", "--role", "admin", "--tenant", "acme", "--json",
    ]));
    let token = json(&o)["result"]["token"].as_str().unwrap().to_string();
    let port = free_port();
    // Each step of a job, then random moments.
    let crashes: [Option<&str>; SUBJECTS] = [
        Some("erasure.after_running"),
        Some("purge.after_intent"),
        Some("purge.after_apply"),
        Some("purge.after_receipt"),
        Some("erasure.before_done"),
        None,
    ];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut jobs = Vec::new();
    for (i, crash) in crashes.iter().enumerate() {
        let subject = format!("subject-{i}");
        let ticket = format!("DSR-{i}");
        let mut server = serve(d.path(), port, *crash);
        let location = order_erasure(port, &token, &subject, &ticket, PER_SUBJECT);
        match crash {
            Some(point) => assert!(
                wait_exit(&mut server, Duration::from_secs(30)),
                "the server did not stop at {point}"
            ),
            None => {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                std::thread::sleep(Duration::from_millis(rng % 40));
                server.kill().unwrap(); // SIGKILL
            }
        }
        server.wait().unwrap();
        // Started again: the job is finished by the new process.
        let mut server = serve(d.path(), port, None);
        let job = follow(port, &token, &location);
        assert_eq!(job["state"], "done", "{crash:?}: {job}");
        assert_eq!(job["report"]["verified"], true, "{crash:?}: {job}");
        jobs.push((ticket, job["receipt"].as_u64().unwrap(), *crash));
        unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
        assert!(wait_exit(&mut server, Duration::from_secs(20)), "no exit after SIGTERM");
    }
    // Exactly one receipt per job, the one the job names.
    let ledger = json(&run(lethe(d.path()).args(["ledger", "--json", "--limit", "100000"])));
    let entries = ledger["result"].as_array().unwrap();
    for (ticket, receipt, crash) in &jobs {
        let receipts: Vec<u64> = entries
            .iter()
            .filter(|e| e["kind"] == "receipt.purge")
            .filter(|e| {
                serde_json::from_str::<Value>(e["body"].as_str().unwrap()).unwrap()["ticket"] == ticket.as_str()
            })
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(receipts, vec![*receipt], "{crash:?}: one receipt for {ticket}");
    }
    let (intents, completed) = intents_and_receipts(d.path(), "purge.intent", "receipt.purge");
    assert_eq!(completed, intents, "each purge intent has exactly one receipt");
    assert_eq!(count(d.path()), 1, "only the bystander's record is left");
    let o = run(lethe(d.path()).args(["verify", "--json"]));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
}
