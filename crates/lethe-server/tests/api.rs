//! The HTTP API over loopback on a real store: who may call what, ingest,
//! reads, sweeps, keys, metrics and the OpenAPI document.

mod harness;

use harness::{ndjson, record, Server};
use lethe_vault::access::Role;
use reqwest::StatusCode;
use serde_json::Value;

/// Every route, with a body that is valid for it (so that an allowed
/// caller gets past validation), and the least role it needs.
/// `{t}` is the tenant under test.
/// (method, path, body, least role (None: no key needed), tenant route)
type Route = (&'static str, &'static str, Option<&'static str>, Option<Role>, bool);

fn routes() -> Vec<Route> {
    vec![
        ("GET", "/healthz", None, None, false),
        ("GET", "/readyz", None, None, false),
        ("GET", "/metrics", None, Some(Role::Auditor), false),
        ("GET", "/openapi.json", None, None, false),
        ("GET", "/v1/schedule", None, Some(Role::Auditor), false),
        (
            "POST",
            "/v1/tenants/{t}/records",
            Some("ingest"),
            Some(Role::Ingest),
            true,
        ),
        ("GET", "/v1/tenants/{t}/records", None, Some(Role::Admin), true),
        ("GET", "/v1/tenants/{t}/stats", None, Some(Role::Auditor), true),
        ("GET", "/v1/tenants/{t}/overview", None, Some(Role::Auditor), true),
        // Any reading key, of any scope: it lists the tenants in the scope.
        ("GET", "/v1/tenants", None, Some(Role::Auditor), false),
        ("GET", "/v1/tenants/{t}/retention", None, Some(Role::Auditor), true),
        (
            "PUT",
            "/v1/tenants/{t}/retention",
            Some(r#"{"enabled":true,"retention_days":90}"#),
            Some(Role::Admin),
            true,
        ),
        ("DELETE", "/v1/tenants/{t}/retention", None, Some(Role::Admin), true),
        (
            "POST",
            "/v1/tenants/{t}/retention/preview",
            Some(r#"{"enabled":true,"retention_days":7}"#),
            Some(Role::Admin),
            true,
        ),
        (
            "POST",
            "/v1/tenants/{t}/sweep?dry_run=true",
            Some("{}"),
            Some(Role::Admin),
            true,
        ),
        (
            "POST",
            "/v1/tenants/{t}/erasures/preview",
            Some(r#"{"subjects":["nobody"]}"#),
            Some(Role::Admin),
            true,
        ),
        (
            "POST",
            "/v1/tenants/{t}/erasures",
            Some(r#"{"preview_id":"0","reason":"r","ticket":"t"}"#),
            Some(Role::Admin),
            true,
        ),
        ("POST", "/v1/verify", Some("{}"), Some(Role::Auditor), false),
        (
            "GET",
            "/v1/tenants/{t}/proofs/inclusion?record=00000000-0000-4000-8000-000000000000",
            None,
            Some(Role::Auditor),
            true,
        ),
        (
            "GET",
            "/v1/tenants/{t}/proofs/consistency?stream=audit:1&from=1&to=2",
            None,
            Some(Role::Auditor),
            true,
        ),
        (
            "GET",
            "/v1/tenants/{t}/checkpoints?stream=audit:1",
            None,
            Some(Role::Auditor),
            true,
        ),
        ("GET", "/v1/tenants/{t}/archive", None, Some(Role::Auditor), true),
        (
            "POST",
            "/v1/tenants/{t}/archive/verify",
            Some("{}"),
            Some(Role::Auditor),
            true,
        ),
        (
            "POST",
            "/v1/tenants/{t}/archive/restore",
            Some(r#"{"reason":"audit request"}"#),
            Some(Role::Admin),
            true,
        ),
        ("GET", "/v1/tenants/{t}/holds", None, Some(Role::Auditor), true),
        (
            "POST",
            "/v1/tenants/{t}/holds",
            Some(r#"{"reason":"matter 1"}"#),
            Some(Role::Admin),
            true,
        ),
        (
            "POST",
            "/v1/tenants/{t}/holds/999/release",
            Some(r#"{"reason":"done"}"#),
            Some(Role::Admin),
            true,
        ),
        ("GET", "/v1/tenants/{t}/receipts", None, Some(Role::Auditor), true),
        ("GET", "/v1/tenants/{t}/receipts/1", None, Some(Role::Auditor), true),
        ("GET", "/v1/tenants/{t}/ledger", None, Some(Role::Auditor), true),
        ("GET", "/v1/ledger", None, Some(Role::Auditor), false),
        ("GET", "/v1/public-key", None, Some(Role::Ingest), false),
        ("GET", "/v1/keys", None, Some(Role::SuperAdmin), false),
        (
            "POST",
            "/v1/keys",
            Some(r#"{"name":"made","role":"auditor","tenants":["acme"]}"#),
            Some(Role::SuperAdmin),
            false,
        ),
        (
            "POST",
            "/v1/keys/0000000000000000/revoke",
            Some("{}"),
            Some(Role::SuperAdmin),
            false,
        ),
    ]
}

fn grants(role: Role, least: Role) -> bool {
    match least {
        // Ingest is not a reading role and auditors do not write.
        Role::Ingest => role.can_ingest(),
        Role::Auditor => role.can_read(),
        Role::Admin => role.can_administer(),
        Role::SuperAdmin => role == Role::SuperAdmin,
    }
}

async fn call(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    tenant: &str,
) -> (StatusCode, String) {
    let url = s.url(&path.replace("{t}", tenant));
    let mut req = match method {
        "GET" => s.http.get(url),
        "PUT" => s.http.put(url),
        "DELETE" => s.http.delete(url),
        _ => s.http.post(url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        if b == "ingest" {
            req = req
                .header("content-type", "application/x-ndjson")
                .body(record(tenant, 1, "someone", 0));
        } else {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_and_tenant_exactly_as_documented() {
    let s = Server::start().await;
    // Something of globex's to leak, if anything leaked.
    s.vault
        .ingest_lines(
            &[record("globex", 1, "globex-secret-subject", 0).as_str()],
            harness::now(),
        )
        .unwrap();
    let keys = [
        ("super", Role::SuperAdmin, vec!["*"]),
        ("admin-acme", Role::Admin, vec!["acme"]),
        ("auditor-acme", Role::Auditor, vec!["acme"]),
        ("ingest-acme", Role::Ingest, vec!["acme"]),
        ("admin-all", Role::Admin, vec!["*"]),
    ];
    let tokens: Vec<(Role, Vec<&str>, String)> =
        keys.iter().map(|(n, r, t)| (*r, t.clone(), s.key(n, *r, t))).collect();
    let all_tokens: Vec<&str> = tokens.iter().map(|t| t.2.as_str()).collect();
    let mut checked = 0;
    for (method, path, body, least, tenant_route) in routes() {
        // No key, and a key that is not one.
        for token in [None, Some("lethe_0000000000000000_".to_string() + &"0".repeat(64))] {
            let (status, text) = call(&s, method, path, body, token.as_deref(), "acme").await;
            match least {
                None => assert!(status.is_success(), "{method} {path} without a key: {status}"),
                Some(_) => {
                    assert_eq!(
                        status,
                        StatusCode::UNAUTHORIZED,
                        "{method} {path} without a valid key: {text}"
                    );
                    assert!(text.contains("\"status\":401"), "a problem document: {text}");
                }
            }
            checked += 1;
        }
        let Some(least) = least else { continue };
        for (role, scope, token) in &tokens {
            for tenant in ["acme", "globex", "initech"] {
                let in_scope = !tenant_route || scope.contains(&"*") || scope.contains(&tenant);
                let spans_all = scope.contains(&"*");
                // The public key is public: any working key reads it.
                let allowed = if path == "/v1/public-key" {
                    true
                } else if path == "/v1/tenants" {
                    grants(*role, least)
                } else {
                    grants(*role, least) && in_scope && (tenant_route || spans_all)
                };
                let (status, text) = call(&s, method, path, body, Some(token), tenant).await;
                checked += 1;
                if allowed {
                    assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "{role:?} {scope:?} {method} {path} for {tenant}: {status} {text}"
                    );
                } else {
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{role:?} {scope:?} {method} {path} for {tenant}: {text}"
                    );
                }
                // Nothing of another tenant, and no key, in any answer to a
                // key that does not cover globex.
                if !scope.contains(&"*") && tenant != "globex" {
                    assert!(!text.contains("globex"), "{method} {path} leaked globex: {text}");
                }
                if status == StatusCode::FORBIDDEN {
                    // The same answer whether the tenant exists or not.
                    let (_, other) = call(&s, method, path, body, Some(token), "initech").await;
                    if tenant_route && !in_scope {
                        assert_eq!(text, other, "403 tells existing and unknown tenants apart");
                    }
                }
                for t in &all_tokens {
                    let secret = t.rsplit('_').next().unwrap();
                    assert!(!text.contains(secret), "{method} {path} returned a key's secret");
                }
            }
        }
    }
    assert!(checked >= 250, "checked {checked} calls");
    s.stop().await;
}

async fn post_ndjson(s: &Server, token: &str, tenant: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
    let r = s
        .http
        .post(s.url(&format!("/v1/tenants/{tenant}/records")))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_stores_the_valid_lines_names_the_others_and_counts_retries_as_duplicates() {
    let s = Server::start().await;
    let t = s.key("writer", Role::Ingest, &["acme"]);
    let admin = s.key("reader", Role::Admin, &["acme"]);
    let good = ndjson("acme", 1, 5);
    let mut body = good.clone().into_bytes();
    body.extend_from_slice(b"{\"tenant\":\"acme\",\"stream\":\"audit:1\",\"fields\":{\"shoe_size\":44}}\n");
    body.extend_from_slice(b"\xff\xfe not utf-8\n");
    body.extend_from_slice(record("globex", 1, "x", 0).as_bytes());
    body.extend_from_slice(b"\n\n");
    let (status, r) = post_ndjson(&s, &t, "acme", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["lines"].as_u64(), r["stored"].as_u64(), r["rejected"].as_u64()),
        (Some(8), Some(5), Some(3))
    );
    let errors: Vec<(u64, String)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["field"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        errors,
        vec![
            (6, "fields.shoe_size".into()),
            (7, "(line)".into()),
            (8, "tenant".into())
        ]
    );
    assert!(!r.to_string().contains("44"), "a rejected value is not echoed: {r}");
    // The data keys this request made are entered under the key that sent it.
    let writer_id = s
        .vault
        .api_keys()
        .unwrap()
        .into_iter()
        .find(|k| k.name == "writer")
        .unwrap()
        .id;
    let created: Vec<String> = s
        .vault
        .ledger(1, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "key.data_created" || e.kind == "key.tenant_created")
        .map(|e| e.actor)
        .collect();
    assert!(created.len() >= 2, "the tenant's root key and a data key: {created:?}");
    assert!(
        created.iter().all(|a| *a == format!("key:{writer_id} (writer)")),
        "{created:?}"
    );
    // The client retries the whole request: nothing is stored twice.
    let (status, r) = post_ndjson(&s, &t, "acme", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (r["stored"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(5)),
        "{r}"
    );
    // A JSON array is the same records.
    let array = format!("[{}]", ndjson("acme", 2, 3).trim_end().replace('\n', ","));
    let r = s
        .http
        .post(s.url("/v1/tenants/acme/records"))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body(array)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["stored"], 3);
    // What was acknowledged reads back.
    let page: Value = s.get_json("/v1/tenants/acme/records?limit=1000", &admin).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 8);

    // A body where no line is valid: 400 naming the field and line.
    let (status, r) = post_ndjson(&s, &t, "acme", "{\"tenant\":\"acme\"}\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(r["field"], "stream");
    assert_eq!(r["extra"]["errors"][0]["line"], 1);
    // An empty body, a wrong content type, a body over the limit.
    let (status, r) = post_ndjson(&s, &t, "acme", "\n\n").await;
    assert_eq!((status, r["field"].as_str()), (StatusCode::BAD_REQUEST, Some("(body)")));
    let r = s
        .http
        .post(s.url("/v1/tenants/acme/records"))
        .bearer_auth(&t)
        .header("content-type", "text/csv")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let (status, r) = post_ndjson(&s, &t, "acme", ndjson("acme", 3, 1000)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{r}");
    // Nothing of the refused requests was stored.
    let stats: Value = s.get_json("/v1/tenants/acme/stats", &admin).await;
    assert_eq!(stats["records"], 8, "{stats}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_records_with_equal_times_show_each_record_exactly_once() {
    let s = Server::start().await;
    // 9 records, three at each of three instants.
    let ts = ["2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z", "2026-11-01T12:00:00Z"];
    let lines: Vec<String> = (0..9)
        .map(|i| {
            format!(
                r#"{{"tenant":"acme","stream":"audit:1","ts":"{}","fields":{{"action":"a{i}"}}}}"#,
                ts[i % 3]
            )
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    s.vault.ingest_lines(&refs, harness::now()).unwrap();
    let admin = s.key("reader", Role::Admin, &["acme"]);
    for order in ["desc", "asc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let mut url = format!("/v1/tenants/acme/records?limit=2&order={order}");
            if let Some(c) = &cursor {
                url += &format!("&cursor={c}");
            }
            let page: Value = s.get_json(&url, &admin).await;
            for r in page["records"].as_array().unwrap() {
                seen.push(r["fields"]["action"].as_str().unwrap().to_string());
            }
            cursor = page["next_cursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!((seen.len(), sorted.len()), (9, 9), "{order}: {seen:?}");
    }
    let r = s
        .http
        .get(s.url("/v1/tenants/acme/records?cursor=nonsense"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "cursor");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_through_the_api_removes_what_its_preview_showed_under_the_key_that_asked() {
    let s = Server::start().await;
    let old = ndjson("acme", 45, 12);
    let new = ndjson("acme", 2, 4);
    let refs: Vec<&str> = old.lines().chain(new.lines()).collect();
    s.vault.ingest_lines(&refs, harness::now()).unwrap();
    let admin = s.key("ops", Role::Admin, &["acme", "globex"]);
    let auditor = s.key("audit", Role::Auditor, &["acme"]);
    let retention: Value = s.get_json("/v1/tenants/acme/retention", &auditor).await;
    assert_eq!(retention["enabled"], true);
    assert_eq!(retention["retention_days"], 30.0);
    assert_eq!(retention["purged_total"], 0);
    let sweep = |dry: bool| {
        let s = &s;
        let admin = admin.clone();
        async move {
            let r = s
                .http
                .post(s.url(&format!("/v1/tenants/acme/sweep?dry_run={dry}")))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    let preview = sweep(true).await;
    assert_eq!(preview["deleted"], 12, "{preview}");
    let run = sweep(false).await;
    assert_eq!(run["deleted"], preview["deleted"]);
    assert_eq!(run["verified"], true);
    let receipt_id = run["receipt"].as_u64().unwrap();
    let receipt: Value = s
        .get_json(&format!("/v1/tenants/acme/receipts/{receipt_id}"), &auditor)
        .await;
    let key_id = s
        .vault
        .api_keys()
        .unwrap()
        .into_iter()
        .find(|k| k.name == "ops")
        .unwrap()
        .id;
    assert_eq!(receipt["actor"], format!("key:{key_id} (ops)"));
    assert_eq!(receipt["kind"], "receipt.sweep");
    let retention: Value = s.get_json("/v1/tenants/acme/retention", &auditor).await;
    assert_eq!(retention["purged_total"], 12);
    assert!(retention["last_purge_at"].is_string());
    // What is left: the 4 recent records.
    let stats: Value = s.get_json("/v1/tenants/acme/stats", &auditor).await;
    assert_eq!(stats["records"], 4);
    // Retention is off for globex: 400, nothing done.
    let r = s
        .http
        .post(s.url("/v1/tenants/globex/sweep"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("not enabled"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_made_through_the_api_work_at_once_and_stop_when_revoked() {
    let s = Server::start().await;
    let root = s.key("root", Role::SuperAdmin, &["*"]);
    let r = s
        .http
        .post(s.url("/v1/keys"))
        .bearer_auth(&root)
        .json(&serde_json::json!({"name": "app", "role": "ingest", "tenants": ["acme"], "expires_in": "90d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let made: Value = r.json().await.unwrap();
    let token = made["token"].as_str().unwrap().to_string();
    let id = made["key"]["id"].as_str().unwrap().to_string();
    let (status, _) = post_ndjson(&s, &token, "acme", ndjson("acme", 1, 2)).await;
    assert_eq!(status, StatusCode::OK);
    // The listing never shows a secret.
    let list = s
        .http
        .get(s.url("/v1/keys"))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(list.contains(&id) && !list.contains(token.rsplit('_').next().unwrap()));
    let r = s
        .http
        .post(s.url(&format!("/v1/keys/{id}/revoke")))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .post(s.url("/v1/tenants/acme/records"))
        .bearer_auth(&token)
        .header("content-type", "application/x-ndjson")
        .body(ndjson("acme", 1, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Both acts are in the ledger under the key that made them.
    let root_id = s
        .vault
        .api_keys()
        .unwrap()
        .into_iter()
        .find(|k| k.name == "root")
        .unwrap()
        .id;
    let ledger: Value = s.get_json("/v1/ledger?limit=1000", &root).await;
    let acts: Vec<(String, String)> = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"].as_str().unwrap().starts_with("access."))
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let by_root = format!("key:{root_id} (root)");
    assert!(
        acts.contains(&("access.key_created".into(), by_root.clone())),
        "{acts:?}"
    );
    assert!(acts.contains(&("access.key_revoked".into(), by_root)), "{acts:?}");
    assert!(!ledger.to_string().contains(token.rsplit('_').next().unwrap()));
    s.stop().await;
}

/// Parses Prometheus text: every sample line is `name{labels} value`.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {l}"));
            let name_end = series.find('{').unwrap_or(series.len());
            let name = &series[..name_end];
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "metric name {name}"
            );
            if name_end < series.len() {
                assert!(series.ends_with('}'), "labels closed: {l}");
            }
            (
                series.to_string(),
                value.parse::<f64>().unwrap_or_else(|_| panic!("value of {l}")),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_when_records_are_ingested() {
    let s = Server::start().await;
    let t = s.key("writer", Role::Ingest, &["acme"]);
    let prometheus = s.key("prometheus", Role::Auditor, &["*"]);
    let value = |text: &str, series: &str| samples(text).into_iter().find(|(k, _)| k == series).map(|(_, v)| v);
    let before = s.metrics(&prometheus).await;
    assert_eq!(value(&before, "lethe_records_ingested_total{tenant=\"acme\"}"), None);
    post_ndjson(&s, &t, "acme", ndjson("acme", 1, 7)).await;
    let r = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth(&prometheus)
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let after = r.text().await.unwrap();
    assert_eq!(
        value(&after, "lethe_records_ingested_total{tenant=\"acme\"}"),
        Some(7.0)
    );
    assert_eq!(
        value(&after, "lethe_store_records{tenant=\"acme\",stream=\"audit:1\"}"),
        Some(7.0)
    );
    let age = value(
        &after,
        "lethe_oldest_record_age_seconds{tenant=\"acme\",stream=\"audit:1\"}",
    )
    .unwrap();
    assert!((86_000.0..87_000.0).contains(&age), "a day old: {age}");
    assert_eq!(
        value(
            &after,
            "lethe_http_requests_total{route=\"/v1/tenants/{tenant}/records\",method=\"POST\",status=\"200\"}"
        ),
        Some(1.0)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_and_only_routes_that_exist() {
    let s = Server::start().await;
    let doc: Value = s
        .http
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let root = s.key("root", Role::SuperAdmin, &["*"]);
    let mut documented = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented += 1;
            // Every documented operation exists (not 404/405).
            let concrete = path.replace("{tenant}", "acme").replace("{id}", "1");
            let (status, _) = call(&s, &method.to_uppercase(), &concrete, Some("{}"), Some(&root), "acme").await;
            assert!(
                status != StatusCode::NOT_FOUND || concrete.contains("/1"),
                "{method} {path} is documented but not served"
            );
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    // Every route the tests know is documented.
    for (method, path, ..) in routes() {
        let template = path
            .split('?')
            .next()
            .unwrap()
            .replace("{t}", "{tenant}")
            .replace("/999/", "/{id}/")
            .replace("/receipts/1", "/receipts/{id}")
            .replace("/0000000000000000/", "/{id}/");
        assert!(
            paths
                .get(&template)
                .and_then(|p| p.get(method.to_lowercase()))
                .is_some(),
            "{method} {template} is not in the OpenAPI document"
        );
    }
    // Routes whose access is tested elsewhere: a job is found by its id,
    // and one outside the key's tenants is `404` like an unknown one
    // (tests/erasure.rs).
    let elsewhere = [("get", "/v1/erasures/{id}"), ("get", "/v1/verifications/{id}")];
    for (method, path) in elsewhere {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path}");
    }
    assert_eq!(
        documented,
        routes().len() + elsewhere.len(),
        "routes the tests do not know"
    );
    s.stop().await;
}
