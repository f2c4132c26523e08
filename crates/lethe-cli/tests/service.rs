//! `lethe keys` and `lethe serve` as processes: keys made and revoked on
//! the command line, the server started with a bootstrap key, called over
//! loopback, and stopped by SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn keys_made_on_the_command_line_are_listed_without_secrets_and_revoked_in_the_ledger() {
    let d = tempfile::tempdir().unwrap();
    let o = run(lethe(d.path()).args([
        "keys", "create", "--name", "app", "--role", "ingest", "--tenant", "acme", "--json",
    ]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let made = json(&o);
    let token = made["result"]["token"].as_str().unwrap().to_string();
    let id = made["result"]["key"]["id"].as_str().unwrap().to_string();
    assert!(token.starts_with(&format!("lethe_{id}_")) && token.len() == "lethe_".len() + 16 + 1 + 64);
    let secret = token.rsplit('_').next().unwrap();
    let ls = run(lethe(d.path()).args(["keys", "ls", "--json"]));
    let listed = String::from_utf8_lossy(&ls.stdout).to_string();
    assert!(listed.contains(&id) && !listed.contains(secret));
    // A bad role names the flag; nothing is made.
    let o = run(lethe(d.path()).args(["keys", "create", "--name", "x", "--role", "root", "--tenant", "acme"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--role"));
    // The CLI may not sign as a key.
    let o = run(lethe(d.path()).args(["keys", "revoke", &id, "--actor", "key:0123456789abcdef (root)"]));
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(lethe(d.path()).args(["keys", "revoke", &id, "--json"]));
    assert!(o.status.success());
    assert!(json(&o)["result"]["revoked_us"].is_i64());
    let ledger = run(lethe(d.path()).args(["ledger", "--json"]));
    let text = String::from_utf8_lossy(&ledger.stdout).to_string();
    assert!(text.contains("access.key_created") && text.contains("access.key_revoked"));
    assert!(!text.contains(secret), "the ledger never holds a secret");
}

#[test]
fn serve_takes_records_with_its_bootstrap_key_and_stops_cleanly_on_sigterm() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let start = || {
        lethe(d.path())
            .args(["serve", "--bootstrap-key", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = start();
    let mut token = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut token)
        .unwrap();
    let token = token.trim().to_string();
    assert!(token.starts_with("lethe_"), "bootstrap token printed: {token:?}");
    let t0 = Instant::now();
    while http(port, "GET", "/readyz", None, "").map(|r| r.0).ok() != Some(200) {
        assert!(t0.elapsed() < Duration::from_secs(30), "the server never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = r#"{"id":"0193a0c4-5e1f-7000-8000-000000000001","tenant":"acme","stream":"audit:1","ts":"2026-12-01T10:00:00Z","fields":{"action":"login"}}"#;
    let (status, body) = http(
        port,
        "POST",
        "/v1/tenants/acme/records",
        Some(&token),
        &format!("{line}\n"),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"stored\":1"), "{body}");
    let (status, _) = http(port, "POST", "/v1/tenants/acme/records", None, line).unwrap();
    assert_eq!(status, 401);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    // The record is there for the CLI, and a second start makes no new key.
    let o = run(lethe(d.path()).args(["logs", "--tenant", "acme", "--json"]));
    assert!(String::from_utf8_lossy(&o.stdout).contains("0193a0c4-5e1f-7000-8000-000000000001"));
    let mut again = start();
    let mut out = String::new();
    let mut err = BufReader::new(again.stderr.take().unwrap());
    let mut seen = String::new();
    while err.read_line(&mut seen).unwrap() > 0 && !seen.contains("listening") {}
    assert!(seen.contains("a super_admin key exists"), "{seen}");
    unsafe { libc::kill(again.id() as i32, libc::SIGTERM) };
    again.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(out.trim().is_empty(), "no second token: {out}");
    assert!(again.wait().unwrap().success());
}
