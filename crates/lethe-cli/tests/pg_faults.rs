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
