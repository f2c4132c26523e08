//! Erasure as a job through the API: preview, confirm, follow the job to
//! its receipt; legal holds answered `409`; jobs of other tenants unseen.

mod harness;

use harness::{record, Server};
use lethe_vault::access::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn seed(s: &Server) {
    let lines = [
        record("acme", 1, "alice", 0),
        record("acme", 2, "alice", 1),
        record("acme", 3, "alice", 2),
        record("acme", 1, "bob", 3),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    s.vault.ingest_lines(&lines, harness::now()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_job_runs_from_its_preview_to_one_receipt_under_the_key() {
    let s = Server::start().await;
    seed(&s).await;
    let admin = s.key("dpo", Role::Admin, &["acme"]);
    let key_id = admin.split('_').nth(1).unwrap().to_string();
    let (status, p) = s
        .send_json(
            "POST",
            "/v1/tenants/acme/erasures/preview",
            &admin,
            Some(json!({"subjects": ["alice"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["preview"]["selected"], 3);
    assert_eq!(p["preview"]["keys_to_destroy"], 1);
    assert!(!p.to_string().contains("alice"), "the preview names no subject: {p}");
    let order = json!({"preview_id": p["preview_id"], "reason": "GDPR art. 17", "ticket": "DSR-1"});
    let r = s
        .http
        .post(s.url("/v1/tenants/acme/erasures"))
        .bearer_auth(&admin)
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/v1/erasures/"), "{location}");
    let accepted: Value = r.json().await.unwrap();
    assert!(["pending", "running", "done"].contains(&accepted["state"].as_str().unwrap()));
    let job = s.follow(&location, &admin).await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["report"]["removed"], 3);
    assert_eq!(job["report"]["verified"], true);
    let receipt = s.vault.receipt(job["receipt"].as_u64().unwrap()).unwrap().unwrap();
    assert_eq!(receipt.kind, "receipt.purge");
    assert!(receipt.actor.starts_with(&format!("key:{key_id}")));
    let stats = s.get_json("/v1/tenants/acme/stats", &admin).await;
    assert_eq!(stats["records"], 1, "bob's record stays: {stats}");
    // A preview is confirmed once.
    let (status, again) = s
        .send_json("POST", "/v1/tenants/acme/erasures", &admin, Some(order))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(again["field"], "preview_id");
    // Another tenant's key sees no such job; an auditor of acme does.
    let other = s.key("globex-admin", Role::Admin, &["globex"]);
    let r = s.http.get(s.url(&location)).bearer_auth(&other).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let auditor = s.key("acme-auditor", Role::Auditor, &["acme"]);
    assert_eq!(s.get_json(&location, &auditor).await["state"], "done");
    let prometheus = s.key("prometheus", Role::Auditor, &["*"]);
    let metrics = s.metrics(&prometheus).await;
    assert!(
        metrics.contains("lethe_erasures_total{tenant=\"acme\",state=\"done\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("lethe_erasure_records_total{tenant=\"acme\"} 3"));
    // The subjects left the catalog with the job's end.
    assert!(s.vault.open_erasure_jobs().unwrap().is_empty());
    assert!(harness::files_with(s.dir.path(), b"alice").is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_records_answer_409_with_the_holds_unless_the_order_skips_them() {
    let s = Server::start().await;
    seed(&s).await;
    let admin = s.key("dpo", Role::Admin, &["acme"]);
    let (status, hold) = s
        .send_json(
            "POST",
            "/v1/tenants/acme/holds",
            &admin,
            Some(json!({"reason": "litigation", "subject": "alice"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let preview = |s: &'static str| json!({"subjects": [s]});
    let (_, p) = s
        .send_json(
            "POST",
            "/v1/tenants/acme/erasures/preview",
            &admin,
            Some(preview("alice")),
        )
        .await;
    assert_eq!(
        (p["preview"]["selected"].as_u64(), p["preview"]["held"].as_u64()),
        (Some(0), Some(3))
    );
    let (status, refused) = s
        .send_json(
            "POST",
            "/v1/tenants/acme/erasures",
            &admin,
            Some(json!({"preview_id": p["preview_id"], "reason": "r", "ticket": "DSR-2"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["extra"]["held"], 3);
    assert_eq!(refused["extra"]["holds"].as_array().unwrap().len(), 1);
    let (_, p) = s
        .send_json(
            "POST",
            "/v1/tenants/acme/erasures/preview",
            &admin,
            Some(preview("alice")),
        )
        .await;
    let r = s
        .http
        .post(s.url("/v1/tenants/acme/erasures"))
        .bearer_auth(&admin)
        .json(&json!({"preview_id": p["preview_id"], "reason": "r", "ticket": "DSR-3", "skip_held": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let job = s.follow(&location, &admin).await;
    assert_eq!(job["report"]["held"], 3, "{job}");
    assert_eq!(job["report"]["removed"], 0);
    let stats = s.get_json("/v1/tenants/acme/stats", &admin).await;
    assert_eq!(stats["records"], 4, "held records stay");
    s.stop().await;
}
