//! Retention settings through the API: preview, change, sweep, receipt —
//! each under the key that asked — and the ledger still explaining every
//! removal afterwards.

mod harness;

use harness::{record, Server};
use lethe_vault::access::Role;
use reqwest::StatusCode;
use serde_json::json;

/// globex's retention is off in the test configuration.
async fn globex_with_history(s: &Server) {
    let lines = [
        record("globex", 10, "alice", 0),
        record("globex", 40, "alice", 1),
        record("globex", 100, "bob", 2),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    s.vault.ingest_lines(&lines, harness::now()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_change_is_previewed_then_applied_by_the_next_sweep_under_the_key() {
    let s = Server::start().await;
    globex_with_history(&s).await;
    let admin = s.key("globex-admin", Role::Admin, &["globex"]);
    let key_id = admin.split('_').nth(1).unwrap().to_string();
    // Retention is off for globex: a sweep now is refused.
    let (status, p) = s.send_json("POST", "/v1/tenants/globex/sweep", &admin, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    let thirty = json!({"enabled": true, "retention_days": 30});
    let (status, preview) = s
        .send_json(
            "POST",
            "/v1/tenants/globex/retention/preview",
            &admin,
            Some(thirty.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["proposed"]["deleted"], 2, "{preview}");
    assert_eq!(preview["current"]["deleted"], 0);
    assert!(preview["proposed"]["bytes_freed"].as_u64().unwrap() > 0);
    assert_eq!(preview["proposed"]["groups"][0]["scope"], "default");
    assert_eq!(preview["proposed"]["per_stream"]["globex/audit:1"]["deleted"], 2);
    // Nothing changed yet.
    let before = s.get_json("/v1/tenants/globex/retention", &admin).await;
    assert_eq!(before["enabled"], false);
    assert!(before["setting"].is_null());

    let (status, changed) = s
        .send_json("PUT", "/v1/tenants/globex/retention", &admin, Some(thirty))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["version"], 1);
    let view = s.get_json("/v1/tenants/globex/retention", &admin).await;
    assert_eq!(view["enabled"], true);
    assert_eq!(view["retention_days"], 30.0);
    assert_eq!(view["policies"][0]["source"], "api");
    assert_eq!(
        view["policies"][1]["in_force"], false,
        "lethe.toml's default no longer governs globex"
    );
    assert!(view["setting"]["set_by"].as_str().unwrap().contains(&key_id));
    let ledger = s.get_json("/v1/tenants/globex/ledger", &admin).await;
    let entry = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "retention.settings")
        .unwrap_or_else(|| panic!("no settings entry: {ledger}"))
        .clone();
    assert!(entry["actor"].as_str().unwrap().starts_with(&format!("key:{key_id}")));

    let (status, run) = s.send_json("POST", "/v1/tenants/globex/sweep", &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["deleted"], 2, "the sweep removed what the preview showed");
    let receipt = s.vault.receipt(run["receipt"].as_u64().unwrap()).unwrap().unwrap();
    assert!(receipt.actor.starts_with(&format!("key:{key_id}")));
    let stats = s.get_json("/v1/tenants/globex/stats", &admin).await;
    assert_eq!(stats["records"], 1);
    // Every removal is still explained by the policies the ledger holds.
    let v = s.vault.verify(None, None, harness::now(), &|_| {}).unwrap();
    assert!(v.ok(), "{:?}", v.unexplained_gaps);
    assert_eq!(v.removed_explained, 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_setting_returns_the_tenant_to_lethe_toml() {
    let s = Server::start().await;
    let admin = s.key("acme-admin", Role::Admin, &["acme"]);
    s.vault
        .ingest_lines(&[record("acme", 40, "alice", 0).as_str()], harness::now())
        .unwrap();
    let (status, _) = s
        .send_json(
            "PUT",
            "/v1/tenants/acme/retention",
            &admin,
            Some(json!({"enabled": false, "window": "forever"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.send_json("POST", "/v1/tenants/acme/sweep", &admin, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "retention is off for acme now");
    let (status, changed) = s.send_json("DELETE", "/v1/tenants/acme/retention", &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(changed["version"], 2);
    assert_eq!(changed["retention"]["retention_days"], 30.0);
    let (status, run) = s.send_json("POST", "/v1/tenants/acme/sweep", &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["deleted"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_name_the_field_and_change_nothing() {
    let s = Server::start().await;
    let admin = s.key("acme-admin", Role::Admin, &["acme"]);
    for (body, field) in [
        (json!({"enabled": true, "retention_days": 0}), "retention_days"),
        (json!({"enabled": true}), "retention_days"),
        (
            json!({"enabled": true, "retention_days": 30, "window": "30d"}),
            "window",
        ),
        (json!({"enabled": true, "window": "a month"}), "window"),
        (
            json!({"enabled": true, "retention_days": 30, "action": "shred"}),
            "action",
        ),
        (
            json!({"enabled": true, "retention_days": 30, "action": "archive_then_delete"}),
            "archive_window",
        ),
        (
            json!({"enabled": true, "retention_days": 30, "action": "archive_then_delete", "archive_window": "365d", "archive_target": "nowhere"}),
            "archive_target",
        ),
        (
            json!({"enabled": true, "retention_days": "alice@example.com"}),
            "retention_days",
        ),
        (
            json!({"enabled": true, "retention_days": 30, "colour": "red"}),
            "colour",
        ),
    ] {
        let (status, p) = s
            .send_json("PUT", "/v1/tenants/acme/retention", &admin, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {p}");
        assert_eq!(p["field"], field, "{body}: {p}");
        assert!(!p.to_string().contains("alice"), "the value is not echoed: {p}");
    }
    let r = s
        .http
        .put(s.url("/v1/tenants/acme/retention"))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body("enabled=true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(s.vault.retention_settings().unwrap().tenants.is_empty());
    s.stop().await;
}

/// A `requests` record of `tenant`, `days_ago` days old.
fn request_record(tenant: &str, days_ago: i64, n: usize) -> String {
    let ts = lethe_core::record::format_ts(harness::now() - days_ago * 86_400_000_000 - n as i64);
    format!(r#"{{"tenant":"{tenant}","stream":"requests:1","ts":"{ts}","subject":"carol","fields":{{"model":"m-1"}}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_stream_override_keeps_one_stream_shorter_and_the_ledger_explains_it() {
    let s = Server::start().await;
    let lines = [
        record("globex", 10, "alice", 0),
        record("globex", 40, "alice", 1),
        request_record("globex", 3, 0),
        request_record("globex", 10, 1),
        request_record("globex", 40, 2),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let r = s.vault.ingest_lines(&lines, harness::now()).unwrap();
    assert_eq!(r.stored, 5, "{r:?}");
    let admin = s.key("globex-admin", Role::Admin, &["globex"]);
    // Bad overrides are refused naming the override and its field.
    for (body, field) in [
        (
            json!({"enabled": true, "retention_days": 365, "overrides": [{"retention_days": 7}]}),
            "overrides[0].stream",
        ),
        (
            json!({"enabled": true, "retention_days": 365, "overrides": [{"stream": "requests", "retention_days": 7, "classification": "secret"}]}),
            "overrides[0].classification",
        ),
        (
            json!({"enabled": true, "retention_days": 365, "overrides": [{"stream": "requests", "retention_days": 0}]}),
            "overrides[0].retention_days",
        ),
        (
            json!({"enabled": true, "retention_days": 365, "overrides": [{"stream": "nosuch", "retention_days": 7}]}),
            "overrides[0].stream",
        ),
    ] {
        let (status, p) = s
            .send_json("PUT", "/v1/tenants/globex/retention", &admin, Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
        assert_eq!(p["field"], field, "{p}");
    }
    // A year for the tenant, a week for its requests.
    let body = json!({"enabled": true, "retention_days": 365,
                      "overrides": [{"stream": "requests", "retention_days": 7}]});
    let (status, preview) = s
        .send_json(
            "POST",
            "/v1/tenants/globex/retention/preview",
            &admin,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(
        preview["proposed"]["deleted"], 2,
        "the requests of 10 and 40 days: {preview}"
    );
    let (status, changed) = s
        .send_json("PUT", "/v1/tenants/globex/retention", &admin, Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let view = s.get_json("/v1/tenants/globex/retention", &admin).await;
    let api: Vec<&serde_json::Value> = view["policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["source"] == "api")
        .collect();
    assert_eq!(api.len(), 2, "{view}");
    assert_eq!(api[0]["window"], "365d", "the tenant-wide rule first: {view}");
    assert_eq!(api[1]["selects"]["stream"], "requests", "{view}");
    assert_eq!(api[1]["window_days"], 7.0);
    assert_eq!(view["retention_days"], 365.0);
    let (status, sweep) = s.send_json("POST", "/v1/tenants/globex/sweep", &admin, None).await;
    assert_eq!(status, StatusCode::OK, "{sweep}");
    assert_eq!(sweep["deleted"], 2, "{sweep}");
    let stats = s.get_json("/v1/tenants/globex/stats", &admin).await;
    assert_eq!(
        stats["records"], 3,
        "both audit records and the 3-day request stay: {stats}"
    );
    let v = s.vault.verify(None, None, harness::now(), &|_| {}).unwrap();
    assert!(v.ok(), "{:?}", v.unexplained_gaps);
    s.stop().await;
}
