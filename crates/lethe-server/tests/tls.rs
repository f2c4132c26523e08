//! HTTPS: with `[server] tls_cert` and `tls_key` the API answers over TLS
//! (and not in clear), and a key that does not fit its certificate is
//! refused naming the setting.

mod harness;

use harness::{Server, CONFIG};
use lethe_vault::access::Role;

struct Pems {
    dir: tempfile::TempDir,
    cert_pem: String,
}

fn self_signed() -> Pems {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_pem = certified.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), certified.key_pair.serialize_pem()).unwrap();
    Pems { dir, cert_pem }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_over_tls_with_the_configured_certificate_and_not_in_clear() {
    let pems = self_signed();
    let tls = lethe_server::tls_config(&pems.dir.path().join("cert.pem"), &pems.dir.path().join("key.pem")).unwrap();
    let s = Server::start_full(tempfile::tempdir().unwrap(), CONFIG, false, Some(tls)).await;
    let token = s.key("auditor", Role::Auditor, &["acme"]);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pems.cert_pem.as_bytes()).unwrap())
        .resolve("localhost", s.addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/v1/tenants/acme/stats", s.addr.port());
    let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    // A client that does not trust the certificate is refused by TLS.
    assert!(reqwest::Client::new().get(&url).send().await.is_err());
    // Plain HTTP on the TLS port gets no API answer.
    let plain = s.http.get(format!("http://{}/healthz", s.addr)).send().await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    s.stop().await;
}

#[test]
fn a_key_that_does_not_fit_the_certificate_is_refused_naming_the_setting() {
    let a = self_signed();
    let b = self_signed();
    let e = lethe_server::tls_config(&a.dir.path().join("cert.pem"), &b.dir.path().join("key.pem")).unwrap_err();
    assert!(e.starts_with("server.tls_key"), "{e}");
    let e = lethe_server::tls_config(&a.dir.path().join("missing.pem"), &a.dir.path().join("key.pem")).unwrap_err();
    assert!(e.starts_with("server.tls_cert"), "{e}");
    assert!(!e.contains("PRIVATE KEY"), "no key material in errors: {e}");
}
