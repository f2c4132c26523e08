//! The `lethe` binary under faults: real processes killed (SIGKILL and
//! named crash points) while they create partitions in stores that already
//! hold data, several commands at once on one data directory, a wrong
//! master key, a missing catalog, rolled-back copies, closed pipes and
//! values that would not read back.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Entries in the ledger of the store in `dir`.
fn ledger_len(dir: &Path) -> usize {
    json(&run(lethe(dir).args(["ledger", "--json", "--limit", "100000"])))["result"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn an_ingest_killed_while_creating_a_partition_file_never_leaves_a_store_that_will_not_open() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let old = input_at(d.path(), "old.ndjson", 2000, 1, NOW, 30);
    let new = input_at(d.path(), "new.ndjson", 3000, 2, "2026-08-01T00:00:00Z", 40);
    let reference = workdir(d.path(), "ref", Some(&old));
    assert!(run(lethe(&reference).arg("ingest").arg(&new)).status.success());
    let want = count(&reference);
    for nth in [1, 4, 30] {
        let point = format!("partition.before_schema@{nth}");
        let w = workdir(d.path(), &format!("k{nth}"), Some(&old));
        let o = run(lethe(&w).arg("ingest").arg(&new).env("LETHE_TEST_CRASH", &point));
        assert!(!o.status.success(), "{point}: the process must have died");
        still_opens_and_verifies(&w, &point);
        let o = run(lethe(&w).arg("ingest").arg(&new));
        assert!(o.status.success(), "{point}: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(count(&w), want, "{point}: the rerun stores every record once");
        verifies_with_one_receipt_per_intent(&w, &point);
    }
}

#[test]
fn an_ingest_into_a_store_with_data_killed_at_random_moments_loses_no_committed_record() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let old = input_at(d.path(), "old.ndjson", 3000, 3, NOW, 60);
    let new = input_at(d.path(), "new.ndjson", 8000, 4, "2026-09-01T00:00:00Z", 90);
    let reference = workdir(d.path(), "ref", Some(&old));
    let started = Instant::now();
    assert!(run(lethe(&reference).arg("ingest").arg(&new)).status.success());
    let full = started.elapsed().as_millis() as u64;
    let want = count(&reference);
    let w = workdir(d.path(), "w", Some(&old));
    // Kills spread over the whole run, each on the store the one before left.
    ingest_killed_at_random_loses_nothing(&w, &new, 3000, full, want, &mut Lcg(12));
}

#[test]
fn ingest_purge_cleanup_and_verify_at_once_killed_at_random_converge_and_verify() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let old = input_at(d.path(), "old.ndjson", 3000, 5, NOW, 90);
    let new = input_at(d.path(), "new.ndjson", 6000, 6, "2026-07-01T00:00:00Z", 60);
    let subject = "user-000001";
    let mut purge = purge_args("acme", subject, "DSR-9");
    purge.push("--yes");
    let mut rng = Lcg(99);
    for round in 0..3 {
        let w = workdir(d.path(), &format!("r{round}"), Some(&old));
        let mut jobs = vec![
            spawn(&w, &["ingest", new.to_str().unwrap()]),
            spawn(&w, &purge),
            spawn(&w, &["cleanup", "--now", NOW]),
            spawn(&w, &["verify"]),
        ];
        // Kill two of them at random moments, let the others finish.
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(20 + rng.next(400)));
            let i = rng.next(jobs.len() as u64) as usize;
            let _ = jobs[i].kill();
        }
        for mut j in jobs {
            j.wait().unwrap();
        }
        let what = format!("round {round}");
        finishes_after_kills(&w, &new, &purge, subject, &what);
    }
}

/// What a store holds, per group: (tenant, stream, scope, records,
/// anonymized, tombstones) — bytes aside.
fn holdings(w: &Path) -> Vec<(String, String, String, u64, u64, u64)> {
    let o = run(lethe(w).args(["stats", "--json"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut out: Vec<_> = json(&o)["result"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            let n = |k: &str| r[k].as_u64().unwrap_or_default();
            (
                s("tenant"),
                s("stream"),
                s("scope"),
                n("records"),
                n("anonymized"),
                n("tombstones"),
            )
        })
        .collect();
    out.sort();
    out
}

/// A platform's shape: a hundred tenants sharing partition files, some with
/// policies of their own (files of different expiry classes) and one under
/// a legal hold (so its partitions stay while the others' in the same
/// files are dropped out of them). Ingest, cleanup and a purge are
/// each killed (SIGKILL) at random moments, each kill on the store the one
/// before left; finished afterwards, the store holds exactly what an
/// uninterrupted run of the same commands leaves, and verifies.
#[test]
fn a_hundred_tenants_killed_at_random_in_ingest_cleanup_and_purge_converge_to_the_uninterrupted_result() {
    let d = tempfile::tempdir().unwrap();
    let policy = format!(
        "{POLICY}[[retention.policy]]\ntenant = \"t0001\"\nwindow = \"10d\"\naction = \"delete\"\n\
         [[retention.policy]]\ntenant = \"t0002\"\nstream = \"audit\"\nwindow = \"20d\"\naction = \"delete\"\n\
         [[retention.policy]]\ntenant = \"t0003\"\nwindow = \"forever\"\naction = \"delete\"\n"
    );
    config(d.path(), &policy);
    let old = input_of(d.path(), "old.ndjson", 2000, 7, NOW, 60, Some(100));
    let new = input_of(d.path(), "new.ndjson", 6000, 8, "2026-07-01T00:00:00Z", 60, Some(100));
    let mut purge = purge_args("t0001", "user-000001", "DSR-100");
    purge.push("--yes");
    let steps: [Vec<&str>; 3] = [
        vec!["ingest", new.to_str().unwrap()],
        vec!["cleanup", "--now", NOW],
        purge,
    ];
    let hold = |w: &Path| {
        let o = run(lethe(w).args(["hold", "add", "--tenant", "t0005", "--reason", "matter 5"]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    // The uninterrupted run, and how long each step takes.
    let reference = workdir(d.path(), "ref", Some(&old));
    hold(&reference);
    let mut took = Vec::new();
    let mut ingested = Vec::new();
    for step in &steps {
        let started = Instant::now();
        let o = run(lethe(&reference).args(step));
        assert!(o.status.success(), "{step:?}: {}", String::from_utf8_lossy(&o.stderr));
        took.push(started.elapsed().as_millis() as u64);
        if ingested.is_empty() {
            ingested = holdings(&reference);
        }
    }
    let want = holdings(&reference);
    assert!(want.iter().any(|g| g.0 == "t0100"), "a hundred tenants: {}", want.len());
    // The held tenant kept every record while the others of its files lost some.
    let live = |h: &[(String, String, String, u64, u64, u64)], t: &str| {
        h.iter().filter(|g| g.0 == t).map(|g| g.3).sum::<u64>()
    };
    assert_eq!(live(&want, "t0005"), live(&ingested, "t0005"));
    assert!(live(&want, "t0006") < live(&ingested, "t0006"));
    verifies_with_one_receipt_per_intent(&reference, "reference");

    let w = workdir(d.path(), "w", Some(&old));
    hold(&w);
    let mut rng = Lcg(4242);
    for (step, full) in steps.iter().zip(&took) {
        for k in 0..3 {
            let at = 5 + rng.next(*full);
            kill_after(lethe(&w).args(step), at);
            still_opens(&w, &format!("{step:?}: kill {k} after {at} ms of {full} ms"));
        }
        let o = run(lethe(&w).args(step));
        assert!(o.status.success(), "{step:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(holdings(&w), want, "the killed runs converge to the uninterrupted one");
    verifies_with_one_receipt_per_intent(&w, "after the kills");
}

#[test]
fn a_wrong_master_key_or_a_missing_catalog_exits_4_and_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 300, 7);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    let entries = || ledger_len(d.path());
    let before = entries();
    let wrong = lethe_core::crypto::SecretKey::generate().to_hex();
    for args in [
        vec!["ingest", inp.to_str().unwrap()],
        vec!["stats"],
        vec!["logs", "--tenant", "acme"],
    ] {
        let o = run(lethe(d.path()).args(&args).env("LETHE_MASTER_KEY", &wrong));
        assert_eq!(o.status.code(), Some(4), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("nothing was done") && !err.contains(&wrong), "{err}");
    }
    assert_eq!(entries(), before, "the wrong key wrote nothing");
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(d.path().join("data").join(f));
    }
    let o = run(lethe(d.path()).args(["stats"]));
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no usable catalog"));
}

#[test]
fn output_to_a_reader_that_went_away_is_not_a_crash() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 500, 8);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    assert!(run(lethe(d.path()).args(["cleanup", "--now", NOW])).status.success());
    for args in [
        vec!["stats"],
        vec!["receipts"],
        vec!["receipts", "show", "1"],
        vec!["ledger"],
    ] {
        let mut child = lethe(d.path())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // `| head -0`: the reader is gone
        let o = child.wait_with_output().unwrap();
        assert_ne!(
            o.status.code(),
            Some(101),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"), "{args:?}");
    }
}

#[test]
fn a_real_cleanup_refuses_a_future_now_and_a_dry_run_writes_nothing_to_the_ledger() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 500, 9);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    let records = count(d.path());
    let o = run(lethe(d.path()).args(["cleanup", "--now", "2030-06-01T00:00:00Z"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--dry-run"));
    assert_eq!(count(d.path()), records, "nothing was deleted");
    // Another policy in force: a dry run previews it without entering it.
    config(d.path(), "[retention.default]\nwindow = \"1d\"\naction = \"delete\"\n");
    let entries = || ledger_len(d.path());
    let before = entries();
    let o = run(lethe(d.path()).args(["cleanup", "--dry-run", "--now", "2030-06-01T00:00:00Z"]));
    assert!(o.status.success());
    assert_eq!(entries(), before, "a dry run changes nothing");
}

#[test]
fn purges_say_plainly_when_the_tenant_is_unknown_or_nothing_matched() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 300, 10);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    let args = |tenant: &'static str, subject: &'static str| {
        vec![
            "purge",
            "--tenant",
            tenant,
            "--subject",
            subject,
            "--reason",
            "GDPR",
            "--ticket",
            "T-1",
            "--yes",
        ]
    };
    let o = run(lethe(d.path()).args(args("nosuch", "user-000001")));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no tenant `nosuch`"));
    let o = run(lethe(d.path()).args(args("acme", "nobody-at-all")));
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("no records matched") && !out.contains("verification: passed"),
        "{out}"
    );
    let (intents, receipts) = intents_and_receipts(d.path(), "purge.intent", "receipt.purge");
    assert!(
        intents.is_empty() && receipts.is_empty(),
        "no receipt claims an erasure"
    );
}

#[test]
fn two_first_ingests_into_a_new_directory_both_succeed_on_one_store() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let a = input_at(d.path(), "a.ndjson", 400, 11, NOW, 10);
    let b = input_at(d.path(), "b.ndjson", 400, 12, NOW, 10);
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(d.path().join("data"));
        let mut one = lethe(d.path())
            .arg("ingest")
            .arg(&a)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut two = lethe(d.path())
            .arg("ingest")
            .arg(&b)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (s1, s2) = (one.wait().unwrap(), two.wait().unwrap());
        assert!(s1.success() && s2.success());
        assert_eq!(count(d.path()), 800);
        verifies_with_one_receipt_per_intent(d.path(), "two first ingests");
    }
}

#[test]
fn verify_beside_an_ingest_that_creates_partitions_always_runs_and_finds_nothing() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let old = input_at(d.path(), "old.ndjson", 1000, 13, NOW, 10);
    let new = input_at(d.path(), "new.ndjson", 6000, 14, "2026-10-01T00:00:00Z", 120);
    assert!(run(lethe(d.path()).arg("ingest").arg(&old)).status.success());
    let mut ingest = lethe(d.path())
        .arg("ingest")
        .arg(&new)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut runs = 0;
    while ingest.try_wait().unwrap().is_none() {
        let o = run(lethe(d.path()).args(["verify", "--json"]));
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        runs += 1;
    }
    assert!(ingest.wait().unwrap().success());
    assert!(runs > 0);
}

#[test]
fn a_store_put_back_to_an_older_copy_is_caught_by_verify_and_its_witness() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), &format!("{POLICY}[witness]\nfile = \"witness.jsonl\"\n"));
    let inp = input(d.path(), 1500, 15);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    let data = d.path().join("data");
    let copy = d.path().join("before-purge");
    copy_dir(&data, &copy);
    let subject = "user-000002";
    let o = run(lethe(d.path()).args([
        "purge",
        "--tenant",
        "acme",
        "--subject",
        subject,
        "--reason",
        "GDPR",
        "--ticket",
        "T-2",
        "--yes",
    ]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(run(lethe(d.path()).args(["verify", "--witness"])).status.success());
    // The partition files of before the purge put back: the erased
    // records are live again, and verify names each.
    let parts_only = d.path().join("parts-only");
    copy_dir(&data, &parts_only);
    let _ = std::fs::remove_dir_all(parts_only.join("partitions"));
    copy_dir(&copy.join("partitions"), &parts_only.join("partitions"));
    let o = run(lethe_at(d.path(), &parts_only).args(["verify", "--json"]));
    assert_eq!(o.status.code(), Some(5));
    let gaps = json(&o)["unexplained_gaps"].clone();
    assert!(
        gaps.as_array()
            .unwrap()
            .iter()
            .any(|g| g["problem"].as_str().unwrap().contains("removal was undone")),
        "{gaps:#}"
    );
    // The whole data directory of before the purge put back: only the
    // witness can tell, and it does.
    let _ = std::fs::remove_dir_all(&data);
    copy_dir(&copy, &data);
    let o = run(lethe(d.path()).args(["verify", "--json"]));
    assert_eq!(o.status.code(), Some(0), "on its own an older copy is consistent");
    let o = run(lethe(d.path()).args(["verify", "--witness", "--json"]));
    assert_eq!(o.status.code(), Some(5));
    let gaps = json(&o)["unexplained_gaps"].clone();
    assert!(
        gaps.as_array()
            .unwrap()
            .iter()
            .any(|g| g["problem"].as_str().unwrap().contains("rolled back")),
        "{gaps:#}"
    );
}

#[test]
fn ingest_refuses_values_it_could_not_read_back_and_everything_accepted_round_trips() {
    let d = tempfile::tempdir().unwrap();
    let good = |i: u32, details: &str| {
        format!(
            r#"{{"tenant":"acme","stream":"audit:1","subject":"u{i}","ts":"2026-05-30T10:00:0{i}Z","fields":{{"action":"a","latency_ms":{},"details":{details}}}}}"#,
            12.5 + f64::from(i)
        )
    };
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let lines = [
        good(1, r#""plain text""#),
        good(2, "1e400"),
        good(3, r#""\ud800""#),
        good(4, &deep),
        good(5, "123456789012345678901234567890"),
        good(
            6,
            r#"{"nested":[1,2.25,"\ud83d\ude00",null,true],"big":18446744073709551615}"#,
        ),
        format!("\u{feff}{}", good(7, r#""after a byte-order mark""#)),
    ];
    std::fs::write(d.path().join("in.ndjson"), lines.join("\n") + "\n").unwrap();
    let o = run(lethe(d.path()).args(["ingest", "in.ndjson", "--json"]));
    assert_eq!(o.status.code(), Some(3));
    let r = &json(&o)["result"];
    let rejected: Vec<(u64, String)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["field"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        rejected,
        [2, 3, 4, 5].map(|l| (l, "fields.details".to_string())).to_vec(),
        "{r:#}"
    );
    let o = run(lethe(d.path()).args(["logs", "--tenant", "acme", "--json", "--asc"]));
    assert_eq!(o.status.code(), Some(0));
    let read: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sent: Vec<Value> = [&lines[0], &lines[5], &lines[6]]
        .iter()
        .map(|l| serde_json::from_str(l.trim_start_matches('\u{feff}')).unwrap())
        .collect();
    assert_eq!(read.len(), 3);
    for (got, want) in read.iter().zip(&sent) {
        assert_eq!(got["fields"], want["fields"], "every accepted value reads back exactly");
        assert_eq!(got["subject"], want["subject"]);
    }
}

#[test]
fn a_record_that_cannot_be_read_is_named_and_the_read_goes_on() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 400, 16);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    let all = |d: &Path| {
        let o = run(lethe(d).args(["logs", "--tenant", "acme", "--json"]));
        (
            o.status.code(),
            String::from_utf8(o.stdout).unwrap().lines().count(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    let (_, n, _) = all(d.path());
    // One row's plain fields edited on disk.
    let (part, path): (i64, String) = rusqlite::Connection::open(d.path().join("data/catalog.db"))
        .unwrap()
        .query_row(
            "SELECT id, path FROM partitions WHERE tenant='acme' ORDER BY start_us DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let c = rusqlite::Connection::open(d.path().join("data").join(path)).unwrap();
    c.execute(
        "UPDATE records SET plain='{\"action\":\"forged\"}'
         WHERE seq=(SELECT min(seq) FROM records WHERE part=?1 AND state=0)",
        [part],
    )
    .unwrap();
    drop(c);
    let (code, m, err) = all(d.path());
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(m, n - 1, "every other record is shown");
    assert!(err.contains("could not be read") && err.contains("seal"), "{err}");
    assert!(!err.contains("forged"), "the unreadable record's content is not echoed");
}

#[test]
fn a_failed_restore_leaves_no_file_of_decrypted_records() {
    let d = tempfile::tempdir().unwrap();
    config(
        d.path(),
        "[[retention.policy]]\nstream = \"audit\"\nwindow = \"30d\"\naction = \"archive_then_delete\"\narchive_window = \"forever\"\n",
    );
    let inp = input(d.path(), 1500, 17);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    assert!(run(lethe(d.path()).args(["cleanup", "--now", NOW])).status.success());
    let out = d.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let target = out.join("acme.ndjson");
    // A complete restore first: the file appears whole.
    let o = run(lethe(d.path())
        .args(["archive", "restore", "--tenant", "acme", "--out"])
        .arg(&target));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::metadata(&target).unwrap().len() > 0);
    std::fs::remove_file(&target).unwrap();
    // Then one whose second object cannot be read back.
    let mut objects: Vec<PathBuf> = Vec::new();
    let mut stack = vec![d.path().join("data/archive")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".ndjson.zst") && p.to_string_lossy().contains("acme") {
                objects.push(p);
            }
        }
    }
    objects.sort();
    assert!(objects.len() >= 2);
    std::fs::write(&objects[1], b"not zstd at all").unwrap();
    let o = run(lethe(d.path())
        .args(["archive", "restore", "--tenant", "acme", "--out"])
        .arg(&target));
    assert!(!o.status.success());
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "no file, partial or not, is left"
    );
}

#[test]
fn receipts_fit_one_line_each_and_show_json_is_one_object() {
    let d = tempfile::tempdir().unwrap();
    config(
        d.path(),
        "[[retention.policy]]\nstream = \"audit\"\nwindow = \"30d\"\naction = \"archive_then_delete\"\narchive_window = \"40d\"\n",
    );
    let inp = input(d.path(), 1500, 18);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    assert!(run(lethe(d.path()).args(["cleanup", "--now", NOW])).status.success());
    // The archive clock: objects past their 40-day archive window go.
    assert!(run(lethe(d.path()).args(["cleanup"])).status.success());
    let o = run(lethe(d.path()).args(["receipts"]));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("receipt.archive_expiry"), "{text}");
    assert!(text.lines().all(|l| l.len() < 200), "{text}");
    let list = json(&run(lethe(d.path()).args(["receipts", "--json"])));
    let id = list["result"][0]["seq"].as_u64().unwrap();
    let shown = json(&run(lethe(d.path()).args([
        "receipts",
        "show",
        &id.to_string(),
        "--json",
    ])));
    assert!(shown["result"]["body"].is_object(), "{shown:#}");
}

#[test]
fn debug_prints_what_each_step_does_on_standard_error() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 300, 19);
    let o = run(lethe(d.path()).args(["--debug", "ingest"]).arg(&inp));
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("batch committed"), "{err}");
    let o = run(lethe(d.path()).args(["-v", "cleanup", "--dry-run", "--now", NOW]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("sweep planned"));
    let o = run(lethe(d.path()).args(["cleanup", "--dry-run", "--now", NOW]));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("sweep planned"),
        "quiet without -v"
    );
}

#[test]
fn a_hold_expiry_beyond_any_date_is_refused_naming_the_flag_and_a_year_is_a_duration() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 100, 20);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    let hold = |expires: &str| {
        run(lethe(d.path()).args([
            "hold",
            "add",
            "--tenant",
            "acme",
            "--reason",
            "matter 9",
            "--expires",
            expires,
            "--json",
        ]))
    };
    let o = hold("999999999d");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr) + String::from_utf8_lossy(&o.stdout);
    assert!(err.contains("--expires") && err.contains("too large"), "{err}");
    let o = hold("1y");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(json(&o)["result"]["hold"]["expires"]
        .as_str()
        .unwrap()
        .starts_with("2027-"));
}
