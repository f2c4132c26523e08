//! The `lethe` binary on PostgreSQL under faults: real processes SIGKILLed
//! at random moments of ingest, sweeps and purges into stores that already
//! hold data, alone and several at once. Kill times come from a seed taken
//! from the clock and printed (`LETHE_TEST_SEED` replays a run). Needs a
//! PostgreSQL server (`LETHE_TEST_PG_URL`, else the local service): fails,
//! never skips, without one.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// A schema of its own for one test, dropped at the start and the end.
struct Schema(String);

impl Schema {
    fn new(name: &str) -> Schema {
        let s = Schema(format!("lethe_cf{}_{name}", std::process::id()));
        lethe_store::testsuite::drop_pg_schemas(&s.0);
        s
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        lethe_store::testsuite::drop_pg_schemas(&self.0);
    }
}

/// A data directory `name` under `dir` whose store is `schema` on
/// PostgreSQL, loaded with `inp` when given.
fn pg_workdir(dir: &Path, name: &str, schema: &Schema, inp: Option<&Path>) -> PathBuf {
    let w = dir.join(name);
    std::fs::create_dir_all(&w).unwrap();
    let url = lethe_store::testsuite::test_pg_url();
    config(
        &w,
        &format!(
            "{POLICY}backend = \"postgres\"\nurl = \"{url}\"\nschema = \"{}\"\n",
            schema.0
        ),
    );
    if let Some(inp) = inp {
        let o = run(lethe(&w).arg("ingest").arg(inp));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    w
}

#[test]
fn an_ingest_into_a_postgresql_store_with_data_killed_at_random_moments_loses_no_committed_record() {
    let d = tempfile::tempdir().unwrap();
    let old = input_at(d.path(), "old.ndjson", 3000, 3, NOW, 60);
    let new = input_at(d.path(), "new.ndjson", 8000, 4, "2026-09-01T00:00:00Z", 90);
    let (sr, sw) = (Schema::new("ref"), Schema::new("w"));
    let reference = pg_workdir(d.path(), "ref", &sr, Some(&old));
    let started = Instant::now();
    assert!(run(lethe(&reference).arg("ingest").arg(&new)).status.success());
    let full = started.elapsed().as_millis() as u64;
    let want = count(&reference);
    let w = pg_workdir(d.path(), "w", &sw, Some(&old));
    // Kills spread over the whole run, each on the store the one before left.
    ingest_killed_at_random_loses_nothing(&w, &new, 3000, full, want, &mut Lcg(kill_seed()));
}

#[test]
fn ingest_purge_cleanup_and_verify_at_once_on_postgresql_killed_at_random_converge_and_verify() {
    let d = tempfile::tempdir().unwrap();
    let old = input_at(d.path(), "old.ndjson", 3000, 5, NOW, 90);
    let new = input_at(d.path(), "new.ndjson", 6000, 6, "2026-07-01T00:00:00Z", 60);
    let subject = "user-000001";
    let mut purge = purge_args("acme", subject, "DSR-9");
    purge.push("--yes");
    let mut rng = Lcg(kill_seed());
    for round in 0..2 {
        let schema = Schema::new(&format!("r{round}"));
        let w = pg_workdir(d.path(), &format!("r{round}"), &schema, Some(&old));
        let mut jobs = vec![
            spawn(&w, &["ingest", new.to_str().unwrap()]),
            spawn(&w, &purge),
            spawn(&w, &["cleanup", "--now", NOW]),
            spawn(&w, &["verify"]),
        ];
        // Kill two of them at random moments (SIGKILL), let the others finish.
        let mut killed = Vec::new();
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(20 + rng.next(1500)));
            let i = rng.next(jobs.len() as u64) as usize;
            if jobs[i].kill().is_ok() {
                killed.push(i);
            }
        }
        for mut j in jobs {
            j.wait().unwrap();
        }
        let what = format!("round {round} (killed {killed:?} of ingest, purge, cleanup, verify)");
        finishes_after_kills(&w, &new, &purge, subject, &what);
    }
}

/// Buckets whose tables are no longer partitions of `records`, or marked
/// as being dropped: what an interrupted sweep leaves until it is finished.
fn leftover_buckets(schema: &Schema) -> (i64, i64) {
    let mut c = postgres::Client::connect(&lethe_store::testsuite::test_pg_url(), postgres::NoTls).unwrap();
    let detached: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname LIKE 'records\\_b%'
               AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid AND NOT i.inhdetachpending)",
            &[&schema.0],
        )
        .unwrap()
        .get(0);
    let marked: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {}.buckets WHERE state <> 0", schema.0),
            &[],
        )
        .unwrap()
        .get(0);
    (detached, marked)
}

#[test]
fn a_postgresql_cleanup_killed_at_random_moments_finishes_to_the_same_store_with_one_receipt_per_intent() {
    let d = tempfile::tempdir().unwrap();
    // 90 days of history: the cleanup drops whole buckets (detached
    // concurrently, dropped in batches) and removes rows of the buckets
    // that straddle the cutoffs.
    let old = input_at(d.path(), "old.ndjson", 4000, 8, NOW, 90);
    let (sr, sw) = (Schema::new("cref"), Schema::new("cw"));
    let reference = pg_workdir(d.path(), "ref", &sr, Some(&old));
    let started = Instant::now();
    let o = run(lethe(&reference).args(["cleanup", "--now", NOW]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let full = started.elapsed().as_millis() as u64;
    eprintln!("an uninterrupted cleanup takes {full} ms");
    let want = count(&reference);
    let w = pg_workdir(d.path(), "w", &sw, Some(&old));
    let before = count(&w);
    assert!(before > want, "the cleanup removes records ({before} -> {want})");
    let mut rng = Lcg(kill_seed());
    for round in 0..5 {
        // Kill times over the whole run (a cleanup that finished before its
        // kill leaves nothing to finish: the next rounds find less to do).
        let at = 30 + rng.next(full.max(60));
        kill_after(lethe(&w).args(["cleanup", "--now", NOW]), at);
        let (intents, receipts) = intents_and_receipts(&w, "sweep.intent", "receipt.sweep");
        eprintln!(
            "round {round}: killed after {at} ms; {} intent(s), {} receipt(s); {:?} bucket(s) detached / marked",
            intents.len(),
            receipts.len(),
            leftover_buckets(&sw)
        );
        still_opens(&w, &format!("cleanup killed after {at} ms (round {round})"));
    }
    let o = run(lethe(&w).args(["cleanup", "--now", NOW]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(count(&w), want, "the same records as an uninterrupted cleanup");
    assert_eq!(
        leftover_buckets(&sw),
        (0, 0),
        "every bucket it started dropping is gone"
    );
    verifies_with_one_receipt_per_intent(&w, "after the kills and a finishing cleanup");
}

#[test]
fn a_postgresql_cleanup_dying_at_each_step_of_a_drop_is_finished_by_the_next_command() {
    let d = tempfile::tempdir().unwrap();
    let old = input_at(d.path(), "old.ndjson", 3000, 9, NOW, 90);
    let sr = Schema::new("sref");
    let reference = pg_workdir(d.path(), "ref", &sr, Some(&old));
    assert!(run(lethe(&reference).args(["cleanup", "--now", NOW])).status.success());
    let want = count(&reference);
    // What each step leaves behind: buckets marked for dropping (and, after
    // the detaches, tables no longer attached) until a command finishes them.
    for (i, (point, leftover)) in [
        ("removal.before_apply", false),
        ("sweep.after_mark_dropping", true),
        ("sweep.mid_drop", true),
        ("sweep.after_partition_rows", false),
    ]
    .into_iter()
    .enumerate()
    {
        let schema = Schema::new(&format!("s{i}"));
        let w = pg_workdir(d.path(), &format!("s{i}"), &schema, Some(&old));
        let o = run(lethe(&w).args(["cleanup", "--now", NOW]).env("LETHE_TEST_CRASH", point));
        assert!(!o.status.success(), "{point}: the process must have died");
        let (detached, marked) = leftover_buckets(&schema);
        assert_eq!(marked > 0, leftover, "{point}: buckets marked for dropping: {marked}");
        if point == "sweep.mid_drop" {
            assert_eq!(
                detached, marked,
                "{point}: every marked bucket was detached, none dropped yet"
            );
        }
        let again = json(&run(lethe(&w).args(["cleanup", "--json", "--now", NOW])));
        assert_eq!(again["status"], "ok", "{point}");
        assert_eq!(count(&w), want, "{point}: the rerun completes the work");
        assert_eq!(leftover_buckets(&schema), (0, 0), "{point}: nothing left half dropped");
        verifies_with_one_receipt_per_intent(&w, point);
    }
}
