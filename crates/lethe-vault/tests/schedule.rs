//! The scheduler's jobs over a real store: an occurrence missed while no
//! server ran is run once at the next start, two processes on one store
//! run an occurrence once, and every run's outcome is kept.

mod common;

use common::{cfg, logs, now, Place};
use lethe_core::cron::Cron;
use lethe_vault::schedule::Job;

const DAY_US: i64 = 86_400_000_000;

fn old_record(day: &str) -> String {
    format!(
        r#"{{"tenant":"acme","stream":"audit:1","ts":"{day}T00:00:00Z","subject":"alice","fields":{{"action":"login"}}}}"#
    )
}

fn daily() -> Cron {
    "0 2 * * *".parse().unwrap()
}

const ONE_DAY_DELETE: &str = "[retention.default]\nwindow = \"1d\"\naction = \"delete\"\n";

fn a_fresh_store_starts_its_schedule_without_sweeping(p: &Place) {
    let v = p.open_with(cfg(ONE_DAY_DELETE));
    v.ingest_lines(&[&old_record("2026-05-01")], now()).unwrap();
    assert!(v.run_scheduled(Job::Sweep, &daily(), &now).unwrap().is_none());
    assert_eq!(logs(&v, "acme", None).len(), 1, "nothing was swept at the first start");
    let status = v.schedule_status(now()).unwrap();
    assert_eq!(status[0].job, "sweep");
    assert_eq!(status[0].next_at.as_deref(), Some("2026-06-01T02:00:00Z"));
    assert!(status[0].last.is_none());
}

fn a_sweep_due_while_no_server_ran_runs_once_at_start_up(p: &Place) {
    let v = p.open_with(cfg(ONE_DAY_DELETE));
    v.ingest_lines(&[&old_record("2026-05-01")], now()).unwrap();
    v.run_scheduled(Job::Sweep, &daily(), &now).unwrap();
    drop(v);
    // Three days later, three occurrences missed: one run at start-up.
    let later = now() + 3 * DAY_US;
    let v = p.open_with(cfg(ONE_DAY_DELETE));
    let clock = || later;
    let run = v
        .run_scheduled(Job::Sweep, &daily(), &clock)
        .unwrap()
        .expect("a run was due");
    assert_eq!(run.result, "success");
    assert_eq!(run.scheduled_for, "2026-06-03T02:00:00Z");
    let receipt = run.receipt.expect("the sweep wrote a receipt");
    let entry = v.receipt(receipt).unwrap().unwrap();
    assert_eq!(entry.actor, "system/schedule");
    assert!(logs(&v, "acme", None).is_empty());
    // The occurrence is not run twice; the next is tomorrow's.
    assert!(v.run_scheduled(Job::Sweep, &daily(), &clock).unwrap().is_none());
    let status = v.schedule_status(later).unwrap();
    assert_eq!(status[0].next_at.as_deref(), Some("2026-06-04T02:00:00Z"));
    assert_eq!(status[0].last.as_ref().unwrap().receipt, Some(receipt));
    assert_eq!(status[0].last_success_at.as_deref(), Some("2026-06-04T00:00:00Z"));
}

fn two_processes_on_one_store_run_an_occurrence_once(p: &Place) {
    let a = p.open_with(cfg(ONE_DAY_DELETE));
    a.ingest_lines(&[&old_record("2026-05-01"), &old_record("2026-05-02")], now())
        .unwrap();
    a.run_scheduled(Job::Sweep, &daily(), &now).unwrap();
    // A second vault over the same directory holds its own file locks, as
    // a second process would.
    let b = p.open_with(cfg(ONE_DAY_DELETE));
    let later = now() + DAY_US;
    let clock = move || later;
    let runs: Vec<bool> = std::thread::scope(|s| {
        let ha = s.spawn(|| a.run_scheduled(Job::Sweep, &daily(), &clock).unwrap().is_some());
        let hb = s.spawn(|| b.run_scheduled(Job::Sweep, &daily(), &clock).unwrap().is_some());
        vec![ha.join().unwrap(), hb.join().unwrap()]
    });
    assert_eq!(runs.iter().filter(|r| **r).count(), 1, "exactly one ran: {runs:?}");
    let receipts = a.entries_of_kinds(&["receipt.sweep"]).unwrap();
    assert_eq!(receipts.len(), 1);
}

fn a_scheduled_verification_enters_its_result_in_the_ledger(p: &Place) {
    let v = p.open_with(cfg(ONE_DAY_DELETE));
    v.ingest_lines(&[&old_record("2026-05-31")], now()).unwrap();
    let nightly: Cron = "30 3 * * *".parse().unwrap();
    v.run_scheduled(Job::Verify, &nightly, &now).unwrap();
    let later = now() + DAY_US;
    let run = v.run_scheduled(Job::Verify, &nightly, &|| later).unwrap().expect("due");
    assert_eq!((run.result.as_str(), run.gaps), ("success", Some(0)));
    let entry = v.ledger(run.receipt.unwrap(), 1).unwrap().remove(0);
    assert_eq!(entry.kind, "verify.result");
    let body: serde_json::Value = serde_json::from_str(&entry.body).unwrap();
    assert_eq!(body["ok"], true);
    assert_eq!(body["records_checked"], 1);
}

on_both_backends!(
    a_fresh_store_starts_its_schedule_without_sweeping,
    a_sweep_due_while_no_server_ran_runs_once_at_start_up,
    two_processes_on_one_store_run_an_occurrence_once,
    a_scheduled_verification_enters_its_result_in_the_ledger,
);
