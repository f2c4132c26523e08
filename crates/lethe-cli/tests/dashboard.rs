//! The dashboard in a real headless Chromium against a real `lethe serve`
//! on a loopback port, over a year of three tenants' records: sign in,
//! change a window with its preview, purge now, erase through the wizard,
//! holds refusing an erasure, an auditor with nothing to change, a tenant
//! key kept out of another tenant. Screenshots of every page go to
//! `target/ui-screenshots/`.

mod browser;
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use browser::Browser;
use common::*;
use serde_json::Value;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// A served store with demo-shaped data and a key per role.
struct Dash {
    dir: tempfile::TempDir,
    server: Child,
    port: u16,
}

impl Dash {
    fn start() -> Dash {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../lethe.toml"),
            d.join("lethe.toml"),
        )
        .unwrap();
        seed(d);
        let port = free_port();
        let mut c = lethe(d);
        c.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut server = c.spawn().unwrap();
        let err = server.stderr.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(err).lines() {});
        let t0 = Instant::now();
        while http(port, "GET", "/readyz", None, "").map(|r| r.0).ok() != Some(200) {
            assert!(server.try_wait().unwrap().is_none(), "the server exited");
            assert!(t0.elapsed() < Duration::from_secs(30), "the server never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        Dash { dir, server, port }
    }

    /// A new key's token (made with the CLI, as an operator would).
    fn key(&self, name: &str, role: &str, tenant: &str) -> String {
        let o = run(lethe(self.dir.path()).args([
            "keys", "create", "--name", name, "--role", role, "--tenant", tenant, "--json",
        ]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        json(&o)["result"]["token"].as_str().unwrap().to_string()
    }

    fn url(&self, fragment: &str) -> String {
        format!("http://127.0.0.1:{}/{fragment}", self.port)
    }

    fn api(&self, method: &str, path: &str, token: &str) -> (u16, Value) {
        let (status, body) = http_as(self.port, method, path, Some(token), "application/json", "").unwrap();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Opens a browser signed in with `token`.
    fn browser(&self, token: &str) -> Browser {
        let b = Browser::start(free_port());
        b.open(&self.url(""));
        let key = b.find("#f-key");
        b.fill(&key, token);
        b.click(&b.find("#signin"));
        b.find("#nav a");
        b
    }
}

impl Drop for Dash {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// 1,200 records per tenant over the last 400 days, 40 subjects each,
/// both streams of the sample configuration.
fn seed(d: &Path) {
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let now = now.with_timezone(&chrono::Utc).min(chrono::Utc::now());
    let mut out = String::new();
    for t in TENANTS {
        for i in 0..1200u64 {
            let ts = now - chrono::Duration::minutes(((i * 7919) % (400 * 24 * 60)) as i64);
            let ts = ts.format("%Y-%m-%dT%H:%M:%SZ");
            let who = format!("user-{:03}", i % 40);
            let scope = if i % 3 == 0 { "chat" } else { "api" };
            if i % 2 == 0 {
                out += &format!(
                    r#"{{"tenant":"{t}","stream":"audit:1","scope":"{scope}","ts":"{ts}","subject":"{who}","fields":{{"action":"login","actor_email":"{who}@example.com"}}}}"#
                );
            } else {
                out += &format!(
                    r#"{{"tenant":"{t}","stream":"requests:1","scope":"{scope}","ts":"{ts}","subject":"{who}","fields":{{"model":"m-1","status":"ok","user_email":"{who}@example.com"}}}}"#
                );
            }
            out.push('\n');
        }
    }
    std::fs::write(d.join("seed.ndjson"), out).unwrap();
    let o = run(lethe(d).args(["ingest", "seed.ndjson"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn an_admin_changes_a_window_sees_the_preview_saves_purges_now_and_sees_the_receipt() {
    let dash = Dash::start();
    let root = dash.key("root", "super_admin", "*");
    let b = dash.browser(&root);
    b.wait_for("h1", "Overview — acme");
    b.wait_for("figcaption", "Records by age");
    b.screenshot("overview");

    b.open(&dash.url("#/retention/acme"));
    b.find("#retention-form");
    b.select("#f-window", "custom");
    b.fill(&b.find("#f-retention_days"), "45");
    b.select("#f-action", "delete");
    // …and a week for the requests stream.
    b.click(&b.find("#add-override"));
    b.fill(&b.find("tr.override .o-stream"), "requests");
    b.fill(&b.find("tr.override .o-window"), "7d");
    b.click(&b.find("#preview-btn"));
    let preview = b.wait_for("#preview", "What the next sweep removes");
    assert!(b.text(&preview).contains("Proposed:"), "{}", b.text(&preview));
    b.screenshot("retention-preview");
    b.click(&b.find("#save"));
    b.wait_for("#retention-form .note", "Saved as version");
    let (status, r) = dash.api("GET", "/v1/tenants/acme/retention", &root);
    assert_eq!(status, 200);
    assert_eq!(r["setting"]["window"], "45d", "{r}");
    assert_eq!(r["setting"]["action"], "delete");
    assert_eq!(r["setting"]["overrides"][0]["stream"], "requests", "{r}");

    let before = dash.api("GET", "/v1/tenants/acme/stats", &root).1["records"]
        .as_u64()
        .unwrap();
    b.click(&b.find("#purge-now"));
    b.click(&b.wait_for("#purge-confirm", "Confirm"));
    let receipt = b.wait_for(".receipt h3", "Receipt #");
    b.screenshot("retention-purged");
    let seq: u64 = b.text(&receipt)["Receipt #".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let after = dash.api("GET", "/v1/tenants/acme/stats", &root).1["records"]
        .as_u64()
        .unwrap();
    assert!(after < before, "the purge removed records: {before} → {after}");
    let (status, rc) = dash.api("GET", &format!("/v1/tenants/acme/receipts/{seq}"), &root);
    assert_eq!(status, 200, "{rc}");
    assert_eq!(rc["kind"], "receipt.sweep");
    assert!(rc["actor"].as_str().unwrap().contains("(root)"), "{rc}");

    // globex keeps lethe.toml's rules: its audit records past 90 days are
    // archived, then deleted, by a sweep; the archive page lists the objects
    // and verifies them, and says so afterwards.
    let (status, sweep) = dash.api("POST", "/v1/tenants/globex/sweep", &root);
    assert_eq!(status, 200, "{sweep}");
    assert!(sweep["archived"]["objects"].as_u64().unwrap_or(0) > 0, "{sweep}");
    b.open(&dash.url("#/archive/globex"));
    b.wait_for("#archive-objects td", "audit:1");
    b.wait_for("#archive-last-check", "not been verified");
    b.click(&b.find("#archive-verify-btn"));
    b.wait_for("#archive-verify .note", "every object matches its manifest");
    b.open(&dash.url("#/overview/globex"));
    b.wait_for("h1", "Overview — globex");
    b.open(&dash.url("#/archive/globex"));
    b.wait_for("#archive-last-check", "passed");
    b.screenshot("archive");

    // Every other page, for the reviewer.
    for (page, ready) in [
        ("erasure", "#erasure-form"),
        ("records", "#records-count"),
        ("holds", "#hold-form"),
        ("evidence", "#ledger"),
        ("keys", "#key-form"),
    ] {
        b.open(&dash.url(&format!("#/{page}/acme")));
        b.find(ready);
        b.screenshot(page);
    }
}

#[test]
fn an_erasure_through_the_wizard_is_receipted_in_the_ledger_and_the_subjects_records_are_gone() {
    let dash = Dash::start();
    let admin = dash.key("dpo", "admin", "acme");
    let b = dash.browser(&admin);
    b.open(&dash.url("#/records/acme"));
    b.fill(&b.find("#f-subject"), "user-007");
    b.click(&b.find("#records-search"));
    let n = b.wait_for("#records-count", "record(s) on this page");
    assert!(
        !b.text(&n).starts_with("0 "),
        "user-007 has records before: {}",
        b.text(&n)
    );

    b.open(&dash.url("#/erasure/acme"));
    b.fill(&b.find("#f-subjects"), "user-007");
    b.click(&b.find("#erasure-preview"));
    b.wait_for(".card .k", "Records to remove");
    b.screenshot("erasure-preview");
    b.fill(&b.find("#f-reason"), "GDPR art. 17");
    b.fill(&b.find("#f-ticket"), "DSR-77");
    // The wrong tenant name is refused next to the field.
    b.fill(&b.find("#f-confirm"), "globex");
    b.click(&b.find("#erasure-confirm"));
    b.wait_for("#err-confirm", "Type acme exactly");
    b.fill(&b.find("#f-confirm"), "acme");
    b.click(&b.find("#erasure-confirm"));
    b.wait_for(".note", "Done:");
    let receipt = b.wait_for(".receipt h3", "Receipt #");
    b.screenshot("erasure-receipt");
    let seq = b.text(&receipt)["Receipt #".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    // The receipt is in the ledger page (filtered to purge receipts).
    b.open(&dash.url("#/evidence/acme?kind=receipt.purge"));
    b.wait_for("#ledger td", &seq);
    // And the subject's records are gone from the records view.
    b.open(&dash.url("#/records/acme"));
    b.fill(&b.find("#f-subject"), "user-007");
    b.click(&b.find("#records-search"));
    b.wait_for("#records-count", "0 record(s) on this page");
}

#[test]
fn an_erasure_of_a_held_subject_is_refused_with_the_hold_named() {
    let dash = Dash::start();
    let admin = dash.key("dpo", "admin", "acme");
    let b = dash.browser(&admin);
    b.open(&dash.url("#/holds/acme"));
    b.fill(&b.find("#f-reason"), "litigation 12");
    b.fill(&b.find("#f-subject"), "user-009");
    b.click(&b.find("#hold-create"));
    let row = b.wait_for("#holds td", "litigation 12");
    let _ = row;
    let (_, holds) = dash.api("GET", "/v1/tenants/acme/holds", &admin);
    let id = holds[0]["id"].as_i64().unwrap();
    b.screenshot("holds");

    b.open(&dash.url("#/erasure/acme"));
    b.fill(&b.find("#f-subjects"), "user-009");
    b.click(&b.find("#erasure-preview"));
    b.wait_for(".note.bad", &format!("legal hold #{id}"));
    b.fill(&b.find("#f-reason"), "GDPR art. 17");
    b.fill(&b.find("#f-ticket"), "DSR-78");
    b.fill(&b.find("#f-confirm"), "acme");
    b.click(&b.find("#erasure-confirm"));
    b.wait_for("#erasure-confirm-form .note.bad", &format!("hold #{id}"));
    b.screenshot("erasure-refused-by-hold");
    let (_, stats) = dash.api("GET", "/v1/tenants/acme/stats", &admin);
    assert_eq!(stats["records"], 1200, "nothing was erased");
}

#[test]
fn an_auditor_is_offered_no_change_and_a_forged_post_is_refused() {
    let dash = Dash::start();
    let auditor = dash.key("audit", "auditor", "acme");
    let b = dash.browser(&auditor);
    let nav = b.text(&b.find("#nav"));
    assert!(
        !nav.contains("Erasure") && !nav.contains("API keys") && !nav.contains("Records"),
        "{nav}"
    );
    for (page, ready) in [
        ("overview", "figcaption"),
        ("retention", "table"),
        ("holds", "#holds"),
        ("evidence", "#ledger"),
        ("archive", "#archive-verify-btn"),
    ] {
        b.open(&dash.url(&format!("#/{page}/acme")));
        b.find(ready);
        for form in [
            "#retention-form",
            "#purge-now",
            "#hold-form",
            "#erasure-form",
            "#restore-form",
            "#key-form",
            "form.release",
        ] {
            assert!(b.all(form).is_empty(), "{page} offers {form} to an auditor");
        }
        // Buttons an auditor may press: reading and checking only.
        for button in b.all("main button") {
            let t = b.text(&button);
            assert!(
                ["Run verify now", "Verify the archive now", "Copy", "Previous", "Next"].contains(&t.as_str()),
                "{page} offers `{t}` to an auditor"
            );
        }
        b.screenshot(&format!("auditor-{page}"));
    }
    // A change forged in the page itself — with the session's CSRF token —
    // is still refused: the key's role decides.
    let r = b.run_async(
        "const done = arguments[0];
         fetch('/ui/session').then(r => r.json()).then(me =>
           fetch('/v1/tenants/acme/holds', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf},
                 body: JSON.stringify({reason: 'forged'})}))
         .then(r => done(r.status)).catch(e => done(String(e)));",
    );
    assert_eq!(r, 403, "{r}");
    let r = b.run_async(
        "const done = arguments[0];
         fetch('/v1/tenants/acme/retention', {method: 'PUT', headers: {'Content-Type': 'application/json'},
               body: JSON.stringify({enabled: true, retention_days: 1})}).then(r => done(r.status)).catch(e => done(String(e)));",
    );
    assert_eq!(r, 403, "without the CSRF token: {r}");
    let (_, holds) = dash.api("GET", "/v1/tenants/acme/holds", &auditor);
    assert_eq!(holds.as_array().unwrap().len(), 0, "{holds}");
}

#[test]
fn a_tenant_scoped_key_is_refused_another_tenants_pages() {
    let dash = Dash::start();
    let admin = dash.key("acme-admin", "admin", "acme");
    // Signed in with the keyboard alone: the key field has the focus, Enter
    // submits; Tab then reaches the pages' links.
    let b = Browser::start(free_port());
    b.open(&dash.url(""));
    b.find("#f-key");
    assert_eq!(
        b.attr(&b.active(), "id").as_deref(),
        Some("f-key"),
        "the key field has the focus"
    );
    b.keys(&format!("{admin}\u{E007}"));
    b.wait_for("h1", "Overview — acme");
    b.open(&dash.url("#/holds/acme"));
    b.find("#hold-form");
    // Tab from the top of the page reaches the navigation, the tenant
    // picker, sign-out and every field and button of the hold form.
    let mut reached = Vec::new();
    for _ in 0..40 {
        b.press('\u{E004}');
        let e = b.active();
        reached.push(b.attr(&e, "id").unwrap_or_else(|| b.text(&e)));
    }
    for want in [
        "Legal holds",
        "tenant",
        "signout",
        "f-reason",
        "f-subject",
        "f-expires",
        "hold-create",
    ] {
        assert!(
            reached.iter().any(|r| r == want),
            "Tab never reached `{want}`: {reached:?}"
        );
    }
    let tenants: Vec<String> = b.all("#tenant option").iter().map(|o| b.text(o)).collect();
    assert_eq!(tenants, ["acme"], "only its own tenant is offered");
    for page in ["overview", "retention", "holds", "evidence"] {
        b.open(&dash.url(&format!("#/{page}/globex")));
        b.wait_for(".note.bad", "403");
    }
    b.screenshot("other-tenant-refused");
}
