//! The scheduler in a running server: a sweep due while no server ran is
//! run at start-up, and its outcome is shown by `/v1/schedule` and `/metrics`.

mod harness;

use harness::{open_vault, record, Server, CONFIG};
use lethe_vault::access::Role;
use lethe_vault::schedule::Job;

const DAY_US: i64 = 86_400_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_due_while_the_server_was_down_runs_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A server ran three days ago (its scheduler noted the start) and
        // then stopped; records expired meanwhile.
        let v = open_vault(dir.path(), CONFIG);
        let then = harness::now() - 3 * DAY_US;
        let cron = v.config().schedule.sweep_cron().unwrap();
        assert!(v.run_scheduled(Job::Sweep, &cron, &|| then).unwrap().is_none());
        let lines = [record("acme", 40, "alice", 0), record("acme", 1, "alice", 1)];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        v.ingest_lines(&lines, harness::now()).unwrap();
    }
    let s = Server::start_in(dir, CONFIG, true).await;
    let auditor = s.key("compliance", Role::Auditor, &["*"]);
    let mut sweep = serde_json::Value::Null;
    for _ in 0..200 {
        let jobs = s.get_json("/v1/schedule", &auditor).await;
        sweep = jobs
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job"] == "sweep")
            .unwrap()
            .clone();
        if !sweep["last"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let last = &sweep["last"];
    assert_eq!(last["result"], "success", "{sweep}");
    assert_eq!(sweep["schedule"], "0 2 * * *");
    assert!(sweep["next_at"].as_str().unwrap().ends_with("T02:00:00Z"));
    let receipt = last["receipt"].as_u64().expect("the run's receipt");
    let entry = s.vault.receipt(receipt).unwrap().unwrap();
    assert_eq!(entry.actor, "system/schedule");
    let stats = s.get_json("/v1/tenants/acme/stats", &auditor).await;
    assert_eq!(stats["records"], 1, "the 40-day-old record went: {stats}");
    let metrics = s.metrics(&auditor).await;
    assert!(
        metrics.contains("lethe_job_last_result{job=\"sweep\",result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("lethe_job_last_success_timestamp_seconds{job=\"sweep\"}"));
    assert!(metrics.contains("lethe_sweeps_total 1"), "{metrics}");
    assert!(metrics.contains("lethe_sweep_records_removed_total 1"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_scoped_key_cannot_read_the_schedule_of_every_tenant() {
    let s = Server::start().await;
    let scoped = s.key("acme-auditor", Role::Auditor, &["acme"]);
    let r = s
        .http
        .get(s.url("/v1/schedule"))
        .bearer_auth(&scoped)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    s.stop().await;
}
