//! Evidence through the API: Merkle proofs that check offline with the
//! public key, verification as a job entered in the ledger under the key,
//! and nothing of another tenant's reachable by id.

mod harness;

use harness::{record, Server};
use lethe_vault::access::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_inclusion_proof_checks_offline_and_stays_within_its_tenant() {
    let s = Server::start().await;
    let lines: Vec<String> = (0..5).map(|n| record("acme", 1, "alice", n)).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    s.vault.ingest_lines(&lines, harness::now()).unwrap();
    s.vault.seal("test", harness::now(), true).unwrap();
    let auditor = s.key("acme-auditor", Role::Auditor, &["acme"]);
    let id: Value = serde_json::from_str(lines[2]).unwrap();
    let id = id["id"].as_str().unwrap();
    let (status, proof) = s
        .send_json(
            "GET",
            &format!("/v1/tenants/acme/proofs/inclusion?record={id}"),
            &auditor,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    let (_, key) = s.send_json("GET", "/v1/public-key", &auditor, None).await;
    let proof: lethe_vault::proof::Proof = serde_json::from_value(proof).unwrap();
    let check = lethe_vault::proof::check(&proof, key["ed25519"].as_str()).unwrap();
    assert!(check.valid && check.key_pinned, "{check:?}");
    let (status, cps) = s
        .send_json("GET", "/v1/tenants/acme/checkpoints?stream=audit:1", &auditor, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cps[0]["checkpoint"]["size"], 5, "{cps}");
    // Asked through another tenant, acme's record is not stored.
    let globex = s.key("globex-auditor", Role::Auditor, &["globex"]);
    let (status, p) = s
        .send_json(
            "GET",
            &format!("/v1/tenants/globex/proofs/inclusion?record={id}"),
            &globex,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!p.to_string().contains("acme"), "{p}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_job_reports_its_result_and_enters_it_in_the_ledger_under_the_key() {
    let s = Server::start().await;
    s.vault
        .ingest_lines(&[record("acme", 1, "alice", 0).as_str()], harness::now())
        .unwrap();
    let all = s.key("compliance", Role::Auditor, &["*"]);
    let scoped = s.key("acme-auditor", Role::Auditor, &["acme"]);
    let r = s
        .http
        .post(s.url("/v1/verify"))
        .bearer_auth(&all)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let job = s.follow(&location, &all).await;
    assert_eq!(
        (job["state"].as_str(), job["ok"].as_bool()),
        (Some("done"), Some(true)),
        "{job}"
    );
    assert_eq!(job["report"]["records_checked"], 1);
    let entry = s
        .vault
        .ledger(job["ledger_seq"].as_u64().unwrap(), 1)
        .unwrap()
        .remove(0);
    assert_eq!(entry.kind, "verify.result");
    assert!(entry.actor.starts_with("key:"), "{}", entry.actor);
    // A tenant's auditor verifies its tenant, not the whole store, and
    // cannot read the whole store's verification.
    let (status, _) = s.send_json("POST", "/v1/verify", &scoped, Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, mine) = s
        .send_json("POST", "/v1/verify", &scoped, Some(json!({"tenant": "acme"})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let job = s
        .follow(&format!("/v1/verifications/{}", mine["id"].as_str().unwrap()), &scoped)
        .await;
    assert_eq!(job["ok"], true, "{job}");
    let (status, _) = s.send_json("GET", &location, &scoped, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}
