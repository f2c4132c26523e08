//! TLS to PostgreSQL, end to end through the `lethe` binary: against a
//! server that refuses plaintext from the network (`LETHE_TEST_PG_TLS_URL`,
//! its CA in `LETHE_TEST_PG_TLS_CA`; `scripts/test.sh` starts one with a
//! certificate it makes). Fails, never skips, without one.

mod common;

use std::process::Command;

use common::*;

/// The TLS-only server's URL (with `sslmode=require`) and its CA file.
fn tls_server() -> (String, String) {
    let url = std::env::var("LETHE_TEST_PG_TLS_URL").expect(
        "LETHE_TEST_PG_TLS_URL is not set: run scripts/test.sh, which starts a TLS-only PostgreSQL, \
         or name one (and its CA in LETHE_TEST_PG_TLS_CA)",
    );
    let ca = std::env::var("LETHE_TEST_PG_TLS_CA")
        .expect("LETHE_TEST_PG_TLS_CA is not set (the CA of LETHE_TEST_PG_TLS_URL)");
    assert!(
        url.contains("sslmode=require"),
        "LETHE_TEST_PG_TLS_URL must ask for sslmode=require: {url}"
    );
    (url, ca)
}

/// A store configuration on the TLS server, in its own schema.
fn tls_config(url: &str, ca_file: Option<&str>, schema: &str) -> String {
    let ca = ca_file.map(|f| format!("ca_file = \"{f}\"\n")).unwrap_or_default();
    format!("{}{ca}", pg_store_config(url, schema))
}

/// Drops a test schema on the TLS server (psql, which `scripts/test.sh`
/// guarantees; `sslmode=require` in psql encrypts without verifying,
/// which is enough for cleaning up).
fn drop_schema(url: &str, schema: &str) {
    let _ = Command::new("psql")
        .arg(url)
        .args(["-qAtc", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")])
        .output();
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn lethe_stores_and_verifies_records_over_tls_to_a_server_that_refuses_plaintext() {
    let (url, ca) = tls_server();
    let schema = format!("lethe_tls{}", std::process::id());
    drop_schema(&url, &schema);
    let d = tempfile::tempdir().unwrap();
    config(d.path(), &tls_config(&url, Some(&ca), &schema));
    let inp = input(d.path(), 300, 11);

    let o = run(lethe(d.path()).arg("ingest").arg(&inp));
    assert!(o.status.success(), "ingest over TLS: {}", stderr(&o));
    assert_eq!(count(d.path()), 300, "every record ingested over TLS reads back");
    let o = run(lethe(d.path()).args(["cleanup", "--now", NOW]));
    assert!(o.status.success(), "sweep over TLS: {}", stderr(&o));
    let o = run(lethe(d.path()).args(["verify", "--json"]));
    assert!(o.status.success(), "verify over TLS: {}", stderr(&o));
    assert_eq!(o.status.code(), Some(0));
    let r = json(&o);
    assert_eq!(r["gaps_total"], 0, "{r}");
    assert_eq!(
        r["records_checked"].as_u64().unwrap() + r["removed_explained"].as_u64().unwrap(),
        300,
        "every record is stored or its removal explained: {r}"
    );

    // The same server refuses the same store without TLS: so the run
    // above was encrypted all along (every connection: pool, job lock).
    let plain = url.replace("sslmode=require", "sslmode=disable");
    let w = d.path().join("plain");
    std::fs::create_dir_all(&w).unwrap();
    config(&w, &tls_config(&plain, None, &schema));
    let o = run(lethe(&w).arg("stats"));
    assert!(
        !o.status.success(),
        "a plaintext connection was accepted by the TLS-only server"
    );
    assert!(stderr(&o).contains("no encryption"), "{}", stderr(&o));
    drop_schema(&url, &schema);
}

#[test]
fn a_server_certificate_from_an_untrusted_ca_is_refused_before_anything_is_sent() {
    let (url, _) = tls_server();
    let schema = format!("lethe_tlsu{}", std::process::id());
    let d = tempfile::tempdir().unwrap();
    // No ca_file: the test CA is not among the system's roots.
    config(d.path(), &tls_config(&url, None, &schema));
    let o = run(lethe(d.path()).arg("stats"));
    assert!(!o.status.success(), "a certificate no trusted CA signed was accepted");
    let err = stderr(&o);
    assert!(err.contains("certificate") && err.contains("UnknownIssuer"), "{err}");
    // Nothing was created: the handshake failed before any statement.
    let o = Command::new("psql")
        .arg(&url)
        .args([
            "-qAtc",
            &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0");
}

#[test]
fn a_certificate_for_another_host_name_is_refused() {
    let (url, ca) = tls_server();
    // The server's certificate names 127.0.0.1 and localhost; reach the
    // same server under a name it does not carry.
    let host = "127.0.0.1";
    assert!(url.contains(host), "the TLS test server is expected on {host}: {url}");
    let other = url.replace(host, "ip6-or-alias.invalid");
    let d = tempfile::tempdir().unwrap();
    // `hostaddr` keeps the address while the name checked is `host`'s.
    let sep = if other.contains('?') { '&' } else { '?' };
    let other = format!("{other}{sep}hostaddr={host}");
    config(d.path(), &tls_config(&other, Some(&ca), "lethe_tlsh"));
    let o = run(lethe(d.path()).arg("stats"));
    assert!(!o.status.success(), "a certificate for another name was accepted");
    let err = stderr(&o);
    assert!(err.contains("certificate not valid for name"), "{err}");
}

#[test]
fn a_ca_file_that_is_missing_or_holds_no_certificate_is_named_in_the_error() {
    let (url, _) = tls_server();
    let d = tempfile::tempdir().unwrap();
    for (file, says) in [("missing.pem", "missing.pem"), ("empty.pem", "no PEM certificate")] {
        if file == "empty.pem" {
            std::fs::write(d.path().join(file), "not a certificate\n").unwrap();
        }
        let path = d.path().join(file);
        config(d.path(), &tls_config(&url, Some(path.to_str().unwrap()), "lethe_tlsc"));
        let o = run(lethe(d.path()).arg("stats"));
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains("store.ca_file") && err.contains(says), "{file}: {err}");
    }
}

#[test]
fn a_ca_file_without_sslmode_require_is_refused_rather_than_ignored() {
    let plain = lethe_store::testsuite::test_pg_url();
    let d = tempfile::tempdir().unwrap();
    let ca = d.path().join("ca.pem");
    std::fs::write(&ca, "").unwrap();
    config(d.path(), &tls_config(&plain, Some(ca.to_str().unwrap()), "lethe_tlsp"));
    let o = run(lethe(d.path()).arg("stats"));
    assert!(!o.status.success(), "a ca_file on a plaintext URL was silently ignored");
    let err = stderr(&o);
    assert!(
        err.contains("store.ca_file") && err.contains("sslmode=require"),
        "{err}"
    );
}
