//! The dashboard's sign-in over real HTTP: an API key for an HttpOnly,
//! SameSite=Strict cookie; changes under the cookie need the session's
//! CSRF token; the key's role and scope still decide everything; sign-out
//! and revocation end the session.

mod harness;

use harness::{record, Server};
use lethe_vault::access::Role;
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// `POST /ui/session` with a key.
async fn post_key(s: &Server, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(s.url("/ui/session"))
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap()
}

/// Signs in; the cookie (`name=value`) and the session's JSON.
async fn sign_in(s: &Server, token: &str) -> (String, Value) {
    let r = post_key(s, token).await;
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set.contains(attr), "{attr} missing from {set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    (cookie, r.json().await.unwrap())
}

async fn call(
    s: &Server,
    method: &str,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> StatusCode {
    let c = reqwest::Client::new();
    let mut req = c.request(method.parse().unwrap(), s.url(path)).header(COOKIE, cookie);
    if let Some(t) = csrf {
        req = req.header("X-CSRF-Token", t);
    }
    if let Some(b) = body {
        req = req.header(CONTENT_TYPE, "application/json").body(b.to_string());
    }
    req.send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reads_like_its_key_and_changes_only_with_its_csrf_token() {
    let s = Server::start().await;
    s.vault
        .ingest_lines(&[&record("acme", 3, "alice", 0)], harness::now())
        .unwrap();
    let admin = s.key("dpo", Role::Admin, &["acme"]);
    let (cookie, me) = sign_in(&s, &admin).await;
    assert_eq!(me["role"], "admin");
    assert_eq!(me["tenants"], json!(["acme"]));
    let csrf = me["csrf"].as_str().unwrap().to_string();
    assert!(
        !serde_json::to_string(&me).unwrap().contains(&admin),
        "the token is never sent back"
    );
    // Reads need no CSRF token; another tenant is refused as for the key.
    assert_eq!(
        call(&s, "GET", "/v1/tenants/acme/overview", &cookie, None, None).await,
        StatusCode::OK
    );
    assert_eq!(
        call(&s, "GET", "/v1/tenants/globex/overview", &cookie, None, None).await,
        StatusCode::FORBIDDEN
    );
    // A change without the token (a forged cross-site request) is refused
    // and changes nothing; with it, it is made under the key.
    let hold = json!({"reason": "matter 9"});
    assert_eq!(
        call(&s, "POST", "/v1/tenants/acme/holds", &cookie, None, Some(hold.clone())).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &s,
            "POST",
            "/v1/tenants/acme/holds",
            &cookie,
            Some("not-the-token"),
            Some(hold.clone())
        )
        .await,
        StatusCode::FORBIDDEN
    );
    let holds = s.get_json("/v1/tenants/acme/holds", &admin).await;
    assert_eq!(holds.as_array().unwrap().len(), 0, "{holds}");
    assert_eq!(
        call(&s, "POST", "/v1/tenants/acme/holds", &cookie, Some(&csrf), Some(hold)).await,
        StatusCode::CREATED
    );
    let holds = s.get_json("/v1/tenants/acme/holds", &admin).await;
    let key_id = admin.split('_').nth(1).unwrap();
    assert!(holds[0]["actor"].as_str().unwrap().contains(key_id), "{holds}");
    // Sign-out is a change too; afterwards the cookie is worth nothing.
    assert_eq!(
        call(&s, "DELETE", "/ui/session", &cookie, None, None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&s, "DELETE", "/ui/session", &cookie, Some(&csrf), None).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&s, "GET", "/v1/tenants/acme/overview", &cookie, None, None).await,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_key_cannot_sign_in_and_a_revoked_key_ends_its_session() {
    let s = Server::start().await;
    let ingest = s.key("app", Role::Ingest, &["acme"]);
    let r = post_key(&s, &ingest).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(SET_COOKIE).is_none());
    let r = post_key(&s, "lethe_0000000000000000_nonsense").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body = r.text().await.unwrap();
    assert!(!body.contains("nonsense"), "the key is not echoed: {body}");

    let root = s.key("root", Role::SuperAdmin, &["*"]);
    let auditor = s.key("aud", Role::Auditor, &["acme"]);
    let (cookie, me) = sign_in(&s, &auditor).await;
    let csrf = me["csrf"].as_str().unwrap();
    // An auditor's session is read-only whatever the CSRF token says.
    assert_eq!(
        call(
            &s,
            "POST",
            "/v1/tenants/acme/holds",
            &cookie,
            Some(csrf),
            Some(json!({"reason": "x"}))
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&s, "GET", "/ui/session", &cookie, None, None).await,
        StatusCode::OK
    );
    let id = auditor.split('_').nth(1).unwrap();
    let (status, _) = s.send_json("POST", &format!("/v1/keys/{id}/revoke"), &root, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        call(&s, "GET", "/ui/session", &cookie, None, None).await,
        StatusCode::UNAUTHORIZED
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_served_from_the_binary_under_a_strict_content_security_policy() {
    let s = Server::start().await;
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = reqwest::get(s.url(path)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with(kind), "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        // The SVG namespace is a name, not a location.
        let body = r.text().await.unwrap().replace("http://www.w3.org/2000/svg", "");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
    s.stop().await;
}
