//! The `lethe` binary end to end: real processes, real files, real kills.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use serde_json::Value;

#[test]
fn cleanup_json_has_the_documented_shape_and_a_second_run_does_nothing() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 3000, 1);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    let plan = json(&run(lethe(d.path()).args([
        "cleanup",
        "--dry-run",
        "--json",
        "--now",
        NOW,
    ])));
    assert_eq!(plan["status"], "ok");
    assert_eq!(plan["result"]["status"], "dry_run");
    let o = run(lethe(d.path()).args(["cleanup", "--json", "--now", NOW]));
    assert!(o.status.success());
    let done = json(&o);
    let r = &done["result"];
    assert_eq!(r["status"], "success");
    for k in ["deleted", "anonymized"] {
        assert!(r[k].as_u64().unwrap() > 0, "{k}");
        assert_eq!(r[k], plan["result"][k], "{k}: the plan is what the run did");
    }
    assert!(r["started_at"].is_string() && r["finished_at"].is_string());
    let ps = r["per_stream"].as_object().unwrap();
    assert!(ps.contains_key("acme/requests:1"));
    for v in ps.values() {
        for k in ["deleted", "anonymized", "bytes_freed"] {
            assert!(v[k].is_u64(), "{k}");
        }
    }
    assert_eq!(
        plan["result"]["per_stream"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ps.keys().collect::<Vec<_>>()
    );
    let again = json(&run(lethe(d.path()).args(["cleanup", "--json", "--now", NOW])));
    assert_eq!(
        (
            again["result"]["deleted"].as_u64(),
            again["result"]["anonymized"].as_u64()
        ),
        (Some(0), Some(0))
    );
}

#[test]
fn ingest_exits_3_naming_line_and_field_and_keeps_the_valid_lines() {
    let d = tempfile::tempdir().unwrap();
    let good = r#"{"tenant":"acme","stream":"audit:1","ts":"2026-05-30T10:00:00Z","fields":{"action":"login"}}"#;
    let bad = r#"{"tenant":"acme","stream":"audit:1","ts":"2026-05-30T10:00:00Z","fields":{"action":"login","shoe_size":44}}"#;
    std::fs::write(d.path().join("in.ndjson"), format!("{good}\n{bad}\n{good}\n")).unwrap();
    let o = run(lethe(d.path()).args(["ingest", "in.ndjson"]));
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 2") && err.contains("fields.shoe_size"), "{err}");
    assert_eq!(count(d.path()), 2);
    let o = run(lethe(d.path()).args(["ingest", "in.ndjson", "--json"]));
    let r = json(&o);
    assert_eq!(r["result"]["errors"][0]["line"], 2);
    assert_eq!(r["result"]["errors"][0]["field"], "fields.shoe_size");
}

#[test]
fn configuration_errors_exit_4_naming_the_key_and_config_show_prints_the_effect() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), "[retention.default]\nwindow = \"30d\"\nwindo = 3\n");
    let o = run(lethe(d.path()).args(["stats"]));
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("windo"));
    config(
        d.path(),
        "[retention.default]\nwindow = \"30d\"\n[profiles.long.retention.default]\nwindow = \"400d\"\n",
    );
    let o = run(lethe(d.path())
        .args(["config", "show", "--profile", "long"])
        .env("LETHE_STORE__INGEST_BATCH", "77"));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("window = \"400d\"") && text.contains("ingest_batch = 77"),
        "{text}"
    );
    let o = run(lethe(d.path()).args(["cleanup", "--json", "--now", "yesterday"]));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json(&o)["status"], "error");
}

#[test]
fn logs_json_output_is_accepted_back_by_ingest() {
    let d = tempfile::tempdir().unwrap();
    let inp = input(d.path(), 200, 4);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    let o = run(lethe(d.path()).args(["logs", "--tenant", "acme", "--json", "--asc"]));
    assert!(o.status.success());
    let n = o.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    assert!(n > 20);
    std::fs::write(d.path().join("export.ndjson"), &o.stdout).unwrap();
    let mut c = lethe_at(d.path(), &d.path().join("copy"));
    c.args(["ingest", "export.ndjson", "--json"]);
    let r = json(&run(&mut c));
    assert_eq!(r["result"]["stored"].as_u64(), Some(n as u64));
    let mut c = lethe_at(d.path(), &d.path().join("copy"));
    c.args(["logs", "--tenant", "acme", "--json", "--asc"]);
    let again = run(&mut c).stdout;
    let strip = |b: &[u8]| -> Vec<Value> {
        b.split(|c| *c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut v: Value = serde_json::from_slice(l).unwrap();
                v.as_object_mut().unwrap().remove("received");
                v
            })
            .collect()
    };
    assert_eq!(strip(&o.stdout), strip(&again));
}

/// Counts after a completed sweep, from a copy of the store that was never interrupted.
fn reference(dir: &Path, inp: &Path) -> (u64, Value) {
    let r = workdir(dir, "ref", Some(inp));
    let plan = json(&run(lethe(&r).args(["cleanup", "--dry-run", "--json", "--now", NOW])));
    assert!(run(lethe(&r).args(["cleanup", "--now", NOW])).status.success());
    (count(&r), plan["result"].clone())
}

#[test]
fn a_cleanup_killed_at_any_step_loses_nothing_and_a_rerun_finishes_the_job() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 4000, 2);
    let (want, plan) = reference(d.path(), &inp);
    assert!(plan["deleted"].as_u64().unwrap() > 0 && plan["anonymized"].as_u64().unwrap() > 0);
    for point in [
        "sweep.after_mark_dropping",
        "sweep.mid_drop",
        "sweep.after_mark_dirty",
        "sweep.after_partition_rows",
    ] {
        let w = workdir(d.path(), point, Some(&inp));
        let o = run(lethe(&w).args(["cleanup", "--now", NOW]).env("LETHE_TEST_CRASH", point));
        assert!(!o.status.success(), "{point}: the process must have died");
        let again = json(&run(lethe(&w).args(["cleanup", "--json", "--now", NOW])));
        assert_eq!(again["status"], "ok", "{point}");
        assert_eq!(count(&w), want, "{point}: the rerun completes the work");
        let last = json(&run(lethe(&w).args(["cleanup", "--json", "--now", NOW])));
        assert_eq!(last["result"]["deleted"], 0, "{point}");
        // every remaining record still decrypts, and every removal is receipted once
        assert!(run(lethe(&w).args(["logs", "--tenant", "acme", "--json"]))
            .status
            .success());
        verifies_with_one_receipt_per_intent(&w, point);
    }
}

/// A cleanup dies after writing its intent, before removing anything; a
/// purge then removes some of the records that intent was going to remove;
/// the cleanup's rerun finishes the intent. `verify` holds each receipt to
/// what its removal did in the order the removals happened — the purge
/// took those records, not the older intent finished after it.
#[test]
fn a_purge_between_a_killed_cleanup_and_its_rerun_is_credited_with_what_it_removed() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 4000, 4);
    let w = workdir(d.path(), "w", Some(&inp));
    let o = run(lethe(&w)
        .args(["cleanup", "--now", NOW])
        .env("LETHE_TEST_CRASH", "removal.before_apply"));
    assert!(!o.status.success(), "the cleanup must have died");
    let mut purge = purge_args("acme", "user-000001", "DSR-77");
    purge.extend(["--yes", "--json"]);
    let o = run(lethe(&w).args(&purge));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = json(&run(lethe(&w).args(["cleanup", "--json", "--now", NOW])));
    assert_eq!(again["status"], "ok");
    verifies_with_one_receipt_per_intent(&w, "purge between a killed cleanup and its rerun");
}

#[test]
fn a_cleanup_killed_with_sigkill_at_random_moments_converges_to_the_same_state() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 4000, 3);
    let (want, _) = reference(d.path(), &inp);
    for (i, delay_ms) in [1u64, 5, 15, 40].iter().enumerate() {
        let w = workdir(d.path(), &format!("k{i}"), Some(&inp));
        kill_after(lethe(&w).args(["cleanup", "--now", NOW]), *delay_ms);
        assert!(run(lethe(&w).args(["cleanup", "--now", NOW])).status.success());
        assert_eq!(count(&w), want, "killed after {delay_ms} ms");
        assert!(run(lethe(&w).args(["logs", "--tenant", "globex", "--json"]))
            .status
            .success());
        verifies_with_one_receipt_per_intent(&w, &format!("killed after {delay_ms} ms"));
    }
}

#[test]
fn an_ingest_killed_mid_batch_keeps_whole_records_only_and_a_retry_does_not_duplicate() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 3000, 5);
    // Give every record a client id so the retry can be deduplicated.
    let with_ids: String = std::fs::read_to_string(&inp)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| format!("{{\"id\":\"00000000-0000-7000-8000-{i:012}\",{}\n", &l[1..]))
        .collect();
    std::fs::write(&inp, with_ids).unwrap();
    for point in ["append.after_intent@3", "append.after_partition@150"] {
        let w = workdir(d.path(), point, None);
        let o = run(lethe(&w).arg("ingest").arg(&inp).env("LETHE_TEST_CRASH", point));
        assert!(!o.status.success(), "{point}");
        let after_crash = count(&w);
        assert!((500..3000).contains(&after_crash), "{point}: {after_crash}");
        assert_eq!(after_crash % 500, 0, "{point}: only whole batches survive");
        // what the interrupted run stored is intact; what it did not seal
        // yet (batches after its first checkpoint), verify names
        let o = run(lethe(&w).args(["verify", "--json"]));
        assert!(matches!(o.status.code(), Some(0 | 5)), "{point}");
        let gaps = json(&o)["unexplained_gaps"].clone();
        assert!(
            gaps.as_array().unwrap().iter().all(|g| g["problem"]
                .as_str()
                .unwrap()
                .contains("not under any signed checkpoint")),
            "{point}: {gaps:#}"
        );
        let o = run(lethe(&w).arg("ingest").arg(&inp).arg("--json"));
        assert!(o.status.success(), "{point}");
        let r = json(&o);
        assert_eq!(r["result"]["duplicates"].as_u64(), Some(after_crash), "{point}");
        assert_eq!(count(&w), 3000, "{point}");
        verifies_with_one_receipt_per_intent(&w, point);
    }
}

#[test]
fn demo_writes_data_runs_the_cleanup_and_reports_before_and_after() {
    let d = tempfile::tempdir().unwrap();
    let o = run(lethe(d.path()).args(["demo", "--records", "3000", "--json"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = &json(&o)["result"];
    let before = r["stats_before"]["totals"]["records"].as_u64().unwrap();
    let after = r["stats_after"]["totals"]["records"].as_u64().unwrap();
    assert!(before > 2000);
    assert_eq!(before - after, r["cleanup"]["deleted"].as_u64().unwrap());
    assert_eq!(r["verify"]["gaps_total"], 0, "{:#}", r["verify"]);
    assert_eq!(
        r["verify"]["records_checked"].as_u64().unwrap() + r["verify"]["removed_explained"].as_u64().unwrap(),
        before
    );
    assert_eq!(r["dry_run"]["deleted"], r["cleanup"]["deleted"]);
    assert!(d.path().join("data/master.key").exists());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Back it up"));
}

#[test]
fn cleanup_leaves_a_receipt_that_receipts_and_the_ledger_show_and_verify() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 1000, 6);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    let done = json(&run(lethe(d.path()).args([
        "cleanup",
        "--json",
        "--now",
        NOW,
        "--actor",
        "ops:alice",
    ])));
    let id = done["result"]["receipt"].as_u64().expect("a receipt id");
    assert_eq!(done["result"]["verified"], true);
    let list = json(&run(lethe(d.path()).args(["receipts", "--json"])));
    assert_eq!(list["result"].as_array().unwrap().len(), 1);
    assert_eq!(list["result"][0]["seq"].as_u64(), Some(id));
    let shown = json(&run(lethe(d.path()).args([
        "receipts",
        "show",
        &id.to_string(),
        "--json",
    ])));
    assert_eq!(shown["result"]["actor"], "ops:alice");
    assert_eq!(shown["result"]["body"]["deleted"], done["result"]["deleted"]);
    let o = run(lethe(d.path()).args(["receipts", "show", "999"]));
    assert_eq!(o.status.code(), Some(2));
    let o = run(lethe(d.path()).args(["ledger", "--verify", "--json"]));
    assert_eq!(o.status.code(), Some(0));
    let check = json(&o);
    assert!(check["result"]["entries"].as_u64().unwrap() >= 3);
    assert!(check["result"]["problem"].is_null());
    let entries = json(&run(lethe(d.path()).args(["ledger", "--json", "--since", "2"])));
    assert_eq!(entries["result"][0]["seq"], 2);
}

#[test]
fn verify_passes_after_cleanup_and_proofs_check_with_the_public_key_alone() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 1000, 8);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    let inp = input(d.path(), 400, 9);
    assert!(run(lethe(d.path()).arg("ingest").arg(&inp)).status.success());
    assert!(run(lethe(d.path()).args(["cleanup", "--now", NOW])).status.success());

    let o = run(lethe(d.path()).args(["verify", "--json"]));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    let v = json(&o);
    assert!(v["records_checked"].as_u64().unwrap() > 0);
    assert_eq!(v["unexplained_gaps"], Value::Array(vec![]));
    let o = run(lethe(d.path()).arg("verify"));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no unexplained gaps"));

    // a record still stored (audit records are anonymized, never dropped,
    // under POLICY: their whole tree can still be proven), and the key a
    // third party is given
    let stats = json(&run(lethe(d.path()).args(["stats", "--json"])));
    let tenant = stats["result"]["rows"][0]["tenant"].as_str().unwrap().to_string();
    let o = run(lethe(d.path()).args([
        "logs", "--tenant", &tenant, "--stream", "audit:1", "--json", "--limit", "1",
    ]));
    let rec: Value = serde_json::from_slice(o.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    let id = rec["id"].as_str().unwrap();
    let key = String::from_utf8(run(lethe(d.path()).args(["proof", "public-key"])).stdout).unwrap();
    let key = key.trim();
    assert_eq!(key.len(), 64);

    let o = run(lethe(d.path()).args(["proof", "inclusion", "--record", id]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let proof_file = d.path().join("inclusion.json");
    std::fs::write(&proof_file, &o.stdout).unwrap();
    // checked with no data directory and no master key at all
    let elsewhere = tempfile::tempdir().unwrap();
    let check = |file: &Path, key: &str| {
        let o = run(lethe_at(elsewhere.path(), &elsewhere.path().join("none")).args([
            "proof",
            "check",
            file.to_str().unwrap(),
            "--public-key",
            key,
            "--json",
        ]));
        (o.status.code(), json(&o))
    };
    let (code, r) = check(&proof_file, key);
    assert_eq!((code, r["valid"].as_bool()), (Some(0), Some(true)), "{r}");
    assert!(!elsewhere.path().join("none").exists(), "checking opens no store");
    // a doctored path, or another vault's key, fails
    let mut p: Value = serde_json::from_slice(&o.stdout).unwrap();
    p["audit_path"][0] = Value::String("00".repeat(32));
    let bad = d.path().join("bad.json");
    std::fs::write(&bad, p.to_string()).unwrap();
    assert_eq!(check(&bad, key).0, Some(5));
    assert_eq!(check(&proof_file, &"11".repeat(32)).0, Some(5));

    // two ingest runs: two checkpoints of the same chain, one a prefix of the other
    let (t, s) = (p["tenant"].as_str().unwrap(), p["stream"].as_str().unwrap());
    let ledger = json(&run(lethe(d.path()).args(["ledger", "--json"])));
    let sizes: Vec<u64> = ledger["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "checkpoint" && e["tenant"] == t)
        .map(|e| serde_json::from_str::<Value>(e["body"].as_str().unwrap()).unwrap())
        .filter(|b| b["checkpoint"]["stream"] == s)
        .map(|b| b["checkpoint"]["size"].as_u64().unwrap())
        .collect();
    assert!(sizes.len() >= 2, "{sizes:?}");
    let o = run(lethe(d.path()).args([
        "proof",
        "consistency",
        "--tenant",
        t,
        "--stream",
        s,
        "--from",
        &sizes[0].to_string(),
        "--to",
        &sizes[sizes.len() - 1].to_string(),
    ]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let cons = d.path().join("consistency.json");
    std::fs::write(&cons, &o.stdout).unwrap();
    let (code, r) = check(&cons, key);
    assert_eq!((code, r["valid"].as_bool()), (Some(0), Some(true)), "{r}");
}

fn subject_logs(w: &Path, subject: &str) -> usize {
    let o = run(lethe(w).args(["logs", "--tenant", "acme", "--subject", subject, "--json"]));
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout).lines().count()
}

#[test]
fn purge_previews_asks_for_confirmation_refuses_held_records_and_leaves_a_receipt() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 4000, 5);
    let w = workdir(d.path(), "w", Some(&inp));
    let subject = "user-000001";
    let theirs = subject_logs(&w, subject) as u64;
    assert!(theirs > 10);

    let mut dry = purge_args("acme", subject, "DSR-7");
    dry.extend(["--dry-run", "--json"]);
    let p = json(&run(lethe(&w).args(&dry)));
    assert_eq!(
        (p["status"].as_str(), p["selected"].as_u64()),
        (Some("dry_run"), Some(theirs))
    );
    assert_eq!((p["removed"].as_u64(), p["held"].as_u64()), (Some(0), Some(0)));
    assert_eq!(subject_logs(&w, subject) as u64, theirs, "a dry run changes nothing");

    let o = run(lethe(&w).args(["purge", "--tenant", "acme", "--subject", subject, "--ticket", "X"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--reason"));
    let o = run(lethe(&w)
        .args(purge_args("acme", subject, "DSR-7"))
        .stdin(Stdio::null()));
    assert_eq!(o.status.code(), Some(2), "no terminal and no --yes: refused");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--yes"));
    assert_eq!(subject_logs(&w, subject) as u64, theirs);

    let mut real = purge_args("acme", subject, "DSR-7");
    real.extend(["--yes", "--json"]);
    let o = run(lethe(&w).args(&real));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&o);
    assert_eq!(r["selected"].as_u64(), Some(theirs));
    assert_eq!(r["removed"].as_u64(), Some(theirs));
    assert_eq!(r["verified"], true);
    assert_eq!(r["held"], 0);
    assert_eq!(r["keys_destroyed"], 1);
    let receipt = r["receipt_id"].as_u64().unwrap();
    assert_eq!(subject_logs(&w, subject), 0);
    let shown = json(&run(lethe(&w).args([
        "receipts",
        "show",
        &receipt.to_string(),
        "--json",
    ])));
    assert_eq!(shown["result"]["kind"], "receipt.purge");
    assert_eq!(shown["result"]["body"]["ticket"], "DSR-7");
    assert_eq!(run(lethe(&w).arg("verify")).status.code(), Some(0));

    // A hold on a scope: a purge selecting held records exits 6 and removes nothing.
    let o = run(lethe(&w).args([
        "hold",
        "add",
        "--tenant",
        "acme",
        "--scope",
        "chat-api",
        "--reason",
        "matter 42",
        "--json",
    ]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hold_id = json(&o)["result"]["hold"]["id"].as_i64().unwrap();
    let other = "user-000002";
    let before = subject_logs(&w, other);
    let mut held = purge_args("acme", other, "DSR-8");
    held.extend(["--yes", "--json"]);
    let o = run(lethe(&w).args(&held));
    assert_eq!(o.status.code(), Some(6), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(subject_logs(&w, other), before);
    held.push("--skip-held");
    let r = json(&run(lethe(&w).args(&held)));
    let kept = r["held"].as_u64().unwrap();
    assert!(kept > 0 && r["removed"].as_u64().unwrap() > 0 && r["verified"] == true);
    assert_eq!(r["keys_destroyed"], 0, "a subject with held records keeps its key");
    assert_eq!(subject_logs(&w, other) as u64, kept);
    let ls = json(&run(lethe(&w).args(["hold", "ls", "--json"])));
    assert_eq!(ls["result"][0]["status"], "active");
    let o = run(lethe(&w).args(["hold", "release", &hold_id.to_string(), "--reason", "settled"]));
    assert!(o.status.success());
    let ls = json(&run(lethe(&w).args(["hold", "ls", "--json"])));
    assert_eq!(ls["result"][0]["status"], "released");
    assert_eq!(run(lethe(&w).arg("verify")).status.code(), Some(0));
}

/// The body of the one receipt a recovery wrote (asserted to be one).
fn the_recovery_receipt(w: &Path) -> Value {
    let receipts = json(&run(lethe(w).args(["receipts", "--json"])));
    let recovered: Vec<&Value> = receipts["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "system/recovery")
        .collect();
    assert_eq!(recovered.len(), 1, "{receipts:#}");
    serde_json::from_str(recovered[0]["body"].as_str().unwrap()).unwrap()
}

/// Every purge intent in the ledger has exactly one receipt.
fn one_receipt_per_purge_intent(w: &Path, what: &str) {
    let (intents, completed) = intents_and_receipts(w, "purge.intent", "receipt.purge");
    assert!(!intents.is_empty(), "{what}");
    assert_eq!(completed, intents, "{what}: each purge intent has exactly one receipt");
}

#[test]
fn a_purge_killed_at_any_step_is_finished_by_rerunning_it_with_exactly_one_receipt() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 3000, 6);
    let subject = "user-000003";
    for point in [
        "purge.after_intent",
        "sweep.after_mark_dirty",
        "sweep.after_partition_rows",
        "purge.after_apply",
        "keys.after_destroy",
        "purge.after_receipt",
    ] {
        let w = workdir(d.path(), point, Some(&inp));
        let total = count(&w);
        let theirs = subject_logs(&w, subject) as u64;
        assert!(theirs > 5);
        let mut args = purge_args("acme", subject, "DSR-9");
        args.extend(["--yes", "--json"]);
        let o = run(lethe(&w).args(&args).env("LETHE_TEST_CRASH", point));
        assert!(!o.status.success(), "{point}: the process must have died");
        let o = run(lethe(&w).args(&args));
        assert_eq!(
            o.status.code(),
            Some(0),
            "{point}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r = json(&o);
        assert_eq!(r["verified"], true, "{point}");
        assert!(r["receipt_id"].as_u64().is_some(), "{point}");
        assert_eq!(subject_logs(&w, subject), 0, "{point}: the subject is gone");
        assert_eq!(count(&w), total - theirs, "{point}: nobody else lost a record");
        // Once more: nothing to do, still one receipt.
        let again = json(&run(lethe(&w).args(&args)));
        assert_eq!(again["status"], "already_done", "{point}");
        one_receipt_per_purge_intent(&w, point);
        let v = run(lethe(&w).args(["verify", "--json"]));
        assert_eq!(v.status.code(), Some(0), "{point}: {:#}", json(&v)["unexplained_gaps"]);
    }
}

/// An exhaustive purge searches every partition in range, not only those
/// the subject filters name; a recovery of one killed after its intent
/// checks it the same way (it used to fall back to the filtered check).
#[test]
fn an_exhaustive_purge_killed_after_its_intent_is_checked_exhaustively_by_its_recovery() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 3000, 6);
    let subject = "user-000003";
    let w = workdir(d.path(), "w", Some(&inp));
    let mut args = purge_args("acme", subject, "DSR-10");
    args.extend(["--exhaustive", "--yes", "--json"]);
    let o = run(lethe(&w).args(&args).env("LETHE_TEST_CRASH", "purge.after_intent"));
    assert!(!o.status.success(), "the process must have died");
    let o = run(lethe(&w).args(&args));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(subject_logs(&w, subject), 0);
    let body = the_recovery_receipt(&w);
    assert_eq!(body["verified"], true, "{body:#}");
    let how = body["verification"].as_str().unwrap();
    assert!(how.contains("every partition in range searched"), "{how}");
    one_receipt_per_purge_intent(&w, "exhaustive, interrupted after its intent");
}

/// A purge killed after its intent leaves its subject's key live until the
/// purge is finished; records of that subject ingested meanwhile are under
/// that key but not in the intent. Finishing the purge must not certify
/// them away nor leave them under a destroyed key: the recovery removes
/// them under a continuation intent — and a crash right after that intent
/// is finished too — with one receipt completing both intents.
#[test]
fn records_ingested_while_a_purge_was_interrupted_are_removed_when_it_is_finished() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 3000, 6);
    let subject = "user-000003";
    let w = workdir(d.path(), "w", Some(&inp));
    let mut args = purge_args("acme", subject, "DSR-9");
    args.extend(["--yes", "--json"]);
    let o = run(lethe(&w).args(&args).env("LETHE_TEST_CRASH", "purge.after_intent"));
    assert!(!o.status.success(), "the process must have died");
    let late = d.path().join("late.ndjson");
    let lines: Vec<String> = (0..5)
        .map(|i| {
            format!(
                r#"{{"tenant":"acme","stream":"audit:1","scope":"api","ts":"2026-06-01T10:0{i}:00Z","subject":"{subject}","fields":{{"action":"login"}}}}"#
            )
        })
        .collect();
    std::fs::write(&late, lines.join("\n") + "\n").unwrap();
    assert!(run(lethe(&w).arg("ingest").arg(&late)).status.success());
    // The recovery that removes them dies right after its continuation intent.
    let o = run(lethe(&w)
        .args(&args)
        .env("LETHE_TEST_CRASH", "purge.after_continuation_intent"));
    assert!(!o.status.success(), "the recovery must have died");
    let o = run(lethe(&w).args(&args));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&o);
    assert_eq!(r["verified"], true, "{r:#}");
    assert_eq!(subject_logs(&w, subject), 0, "the late records went too");
    let body = the_recovery_receipt(&w);
    assert_eq!(
        body["verified"], true,
        "the recovery removed the late records: {body:#}"
    );
    assert_eq!(body["stored_while_running"], 5, "{body:#}");
    assert!(body["continuation"].as_u64().is_some(), "{body:#}");
    one_receipt_per_purge_intent(&w, "interrupted, then interrupted again after the continuation");
    let v = run(lethe(&w).args(["verify", "--json"]));
    assert_eq!(v.status.code(), Some(0), "{:#}", json(&v)["unexplained_gaps"]);
}

#[test]
fn a_purge_killed_with_sigkill_at_random_moments_is_finished_by_rerunning_it() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), POLICY);
    let inp = input(d.path(), 3000, 8);
    // Several subjects at once, so the purge touches many partitions.
    let subjects = ["user-000001", "user-000002", "user-000004", "user-000005"];
    for (i, delay_ms) in [2u64, 10, 25, 60].iter().enumerate() {
        let w = workdir(d.path(), &format!("p{i}"), Some(&inp));
        let total = count(&w);
        let theirs: u64 = subjects.iter().map(|s| subject_logs(&w, s) as u64).sum();
        let mut args = vec![
            "purge", "--tenant", "acme", "--reason", "r", "--ticket", "DSR-K", "--yes", "--json",
        ];
        for s in &subjects {
            args.extend(["--subject", s]);
        }
        kill_after(lethe(&w).args(&args), *delay_ms);
        let o = run(lethe(&w).args(&args));
        assert_eq!(
            o.status.code(),
            Some(0),
            "killed after {delay_ms} ms: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(json(&o)["verified"], true);
        for s in &subjects {
            assert_eq!(subject_logs(&w, s), 0, "killed after {delay_ms} ms: {s} is gone");
        }
        assert_eq!(
            count(&w),
            total - theirs,
            "killed after {delay_ms} ms: nobody else lost a record"
        );
        one_receipt_per_purge_intent(&w, &format!("killed after {delay_ms} ms"));
        let v = run(lethe(&w).args(["verify", "--json"]));
        assert_eq!(
            v.status.code(),
            Some(0),
            "killed after {delay_ms} ms: {:#}",
            json(&v)["unexplained_gaps"]
        );
    }
}

const ARCHIVE_POLICY: &str = "[[retention.policy]]\nname = \"audit-archive\"\nstream = \"audit\"\nwindow = \"30d\"\naction = \"archive_then_delete\"\narchive = \"local\"\narchive_window = \"forever\"\n[[retention.policy]]\nstream = \"requests\"\nwindow = \"30d\"\naction = \"delete\"\n[store]\ningest_batch = 500\n";

/// Ids of the audit records of every tenant in the active store.
fn active_audit_ids(w: &Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for t in ["acme", "globex", "initech", "umbrella"] {
        let o = run(lethe(w).args(["logs", "--tenant", t, "--stream", "audit", "--json"]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for line in String::from_utf8(o.stdout).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            out.insert(v["id"].as_str().unwrap().to_string());
        }
    }
    out
}

/// Ids in every archive object on disk (whatever their manifests say).
fn archived_ids(w: &Path) -> Vec<String> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut stack = vec![w.join("data/archive")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".ndjson.zst") {
                let mut s = String::new();
                zstd::stream::read::Decoder::new(std::fs::File::open(&p).unwrap())
                    .unwrap()
                    .read_to_string(&mut s)
                    .unwrap();
                for line in s.lines() {
                    let v: Value = serde_json::from_str(line).unwrap();
                    out.push(v["id"].as_str().unwrap().to_string());
                }
            }
        }
    }
    out
}

/// After any interruption: every audit record is still in the active store
/// or in an archive object; after the rerun, every expired one is in the
/// archive exactly once, restorable, and both verifies pass.
fn archive_invariants(w: &Path, all: &std::collections::BTreeSet<String>, expired: usize, what: &str) {
    let active = active_audit_ids(w);
    let archived: std::collections::BTreeSet<String> = archived_ids(w).into_iter().collect();
    let lost: Vec<&String> = all
        .iter()
        .filter(|id| !active.contains(*id) && !archived.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{what}: {} records deleted without an archive copy",
        lost.len()
    );

    let o = run(lethe(w).args(["cleanup", "--json", "--now", NOW]));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{what}: rerun: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let ids = archived_ids(w);
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{what}: a record is in two objects");
    assert_eq!(ids.len(), expired, "{what}: every expired audit record is archived");
    assert_eq!(active_audit_ids(w).len() + expired, all.len(), "{what}");
    let o = run(lethe(w).args(["archive", "verify", "--json"]));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{what}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let mut restored = 0;
    for t in ["acme", "globex", "initech", "umbrella"] {
        let o = run(lethe(w).args(["archive", "restore", "--tenant", t, "--out", "-"]));
        assert!(o.status.success(), "{what}: {}", String::from_utf8_lossy(&o.stderr));
        restored += String::from_utf8(o.stdout).unwrap().lines().count();
    }
    assert_eq!(restored, expired, "{what}: restore returns every archived record");
    verifies_with_one_receipt_per_intent(w, what);
}

#[test]
fn an_archive_run_killed_at_any_step_deletes_nothing_without_an_archive_copy() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), ARCHIVE_POLICY);
    let inp = input(d.path(), 3000, 9);
    let r = workdir(d.path(), "ref", Some(&inp));
    let plan = json(&run(lethe(&r).args(["cleanup", "--dry-run", "--json", "--now", NOW])));
    let expired: u64 = plan["result"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["action"] == "archive_then_delete")
        .map(|g| g["records"].as_u64().unwrap())
        .sum();
    assert!(expired > 300);
    // Crash points: mid-upload (an object written and checked, others not),
    // after the ledger has the writes, mid-deletion, mid-manifests.
    for point in [
        "archive.after_object",
        "archive.after_object@7",
        "archive.after_written",
        "sweep.after_mark_dropping",
        "sweep.mid_drop",
        "archive.mid_manifests",
    ] {
        let w = workdir(d.path(), &point.replace('@', "-"), Some(&inp));
        // Ingest gives records without an id a fresh one: ids are per copy.
        let all = active_audit_ids(&w);
        let o = run(lethe(&w).args(["cleanup", "--now", NOW]).env("LETHE_TEST_CRASH", point));
        assert!(!o.status.success(), "{point}: the process must have died");
        archive_invariants(&w, &all, expired as usize, point);
    }
    // kill -9 at random moments of the run.
    for (i, ms) in [20u64, 80, 200].iter().enumerate() {
        let w = workdir(d.path(), &format!("kill{i}"), Some(&inp));
        let all = active_audit_ids(&w);
        kill_after(lethe(&w).args(["cleanup", "--now", NOW]), *ms);
        archive_invariants(&w, &all, expired as usize, &format!("killed after {ms} ms"));
    }
}

/// Restorations as `lethe archive restorations --json` lists them.
fn restorations(w: &Path) -> Vec<Value> {
    let o = run(lethe(w).args(["archive", "restorations", "--json"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    json(&o)["result"].as_array().unwrap().clone()
}

#[test]
fn archive_restore_into_the_store_survives_a_crash_at_any_step_and_logs_reads_it_back() {
    let d = tempfile::tempdir().unwrap();
    config(d.path(), ARCHIVE_POLICY);
    let inp = input(d.path(), 1500, 5);
    let w = workdir(d.path(), "w", Some(&inp));
    assert!(run(lethe(&w).args(["cleanup", "--now", NOW])).status.success());
    let listed = json(&run(lethe(&w).args(["archive", "ls", "--tenant", "acme", "--json"])));
    let archived: u64 = listed["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["records"].as_u64().unwrap())
        .sum();
    assert!(archived > 50);
    let restore = |w: &Path| {
        let mut c = lethe(w);
        c.args([
            "archive",
            "restore",
            "--tenant",
            "acme",
            "--into-store",
            "--reason",
            "INC-7",
            // Short-lived, so that a real cleanup (which acts only at the
            // current time) sees them expire.
            "--window",
            "3s",
            "--json",
        ]);
        c
    };

    let o = run(lethe(&w).args(["archive", "restore", "--tenant", "acme", "--into-store"]));
    assert_eq!(o.status.code(), Some(2), "a reason is required");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--reason"));

    // Killed while loading: nothing is left, not even the file.
    let o = run(restore(&w).env("LETHE_TEST_CRASH", "restore.before_entry"));
    assert!(!o.status.success());
    assert!(restorations(&w).is_empty());
    let files = |w: &Path| std::fs::read_dir(w.join("data/restored")).map_or(0, |rd| rd.count());
    assert_eq!(files(&w), 0, "a half-loaded restoration's file is removed on reopen");
    // Killed after its ledger entry: finished on reopen, all of it.
    let o = run(restore(&w).env("LETHE_TEST_CRASH", "restore.after_entry"));
    assert!(!o.status.success());
    let rs = restorations(&w);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0]["records"].as_u64(), Some(archived));

    // A normal run, read back with `logs --restored`.
    let o = run(&mut restore(&w));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let set = json(&o)["result"].clone();
    assert_eq!(set["report"]["records"].as_u64(), Some(archived));
    let id = set["restoration"]["id"].as_i64().unwrap();
    let o = run(lethe(&w).args(["logs", "--tenant", "acme", "--restored", "--json"]));
    assert!(o.status.success());
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, 2 * archived, "two restorations");
    assert_eq!(lines.iter().filter(|l| l["restored"] == id).count() as u64, archived);
    assert!(lines.iter().all(|l| l["stream"] == "audit:1"));
    let o = run(lethe(&w).args(["logs", "--tenant", "acme", "--json"]));
    assert!(String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .all(|l| !l.contains("\"restored\"")));

    // The sweep keeps them until their window ends, then removes them.
    let o = run(lethe(&w).args(["cleanup", "--now", NOW]));
    assert!(o.status.success());
    assert_eq!(restorations(&w).len(), 2);
    let late = "2030-01-01T00:00:00Z";
    let o = run(lethe(&w).args(["cleanup", "--dry-run", "--now", late]));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("would remove restoration {id} of acme")));
    assert_eq!(restorations(&w).len(), 2);
    // A real run may not act in the future: the windows end for real.
    let o = run(lethe(&w).args(["cleanup", "--json", "--now", late]));
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(restorations(&w).len(), 2);
    std::thread::sleep(std::time::Duration::from_secs(4));
    let o = run(lethe(&w).args(["cleanup", "--json"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(json(&o)["result"]["restorations_expired"].as_array().unwrap().len(), 2);
    assert!(restorations(&w).is_empty());
    assert_eq!(files(&w), 0);
    let o = run(lethe(&w).args(["verify", "--json"]));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn cleanup_exits_3_and_names_the_policy_when_its_archive_target_fails() {
    let d = tempfile::tempdir().unwrap();
    let dead = "[archive.targets.remote]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:1\"\npath_style = true\nallow_http = true\nretries = 0\naccess_key_id = \"k\"\nsecret_access_key = \"very-secret\"\n";
    config(
        d.path(),
        &format!(
            "{}{dead}",
            ARCHIVE_POLICY.replace("archive = \"local\"", "archive = \"remote\"")
        ),
    );
    let inp = input(d.path(), 1500, 4);
    let w = workdir(d.path(), "w", Some(&inp));
    let before = active_audit_ids(&w);
    let o = run(lethe(&w).args(["cleanup", "--json", "--now", NOW]));
    assert_eq!(o.status.code(), Some(3));
    let v = json(&o);
    assert_eq!(v["result"]["status"], "partial");
    assert_eq!(v["result"]["failing"][0]["rule"], "audit-archive");
    assert!(v["result"]["deleted"].as_u64().unwrap() > 0, "the other policy ran");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("very-secret"));
    assert_eq!(active_audit_ids(&w), before, "no audit record was deleted");
    let o = run(lethe(&w).args(["cleanup", "--now", NOW]));
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stdout).contains("FAILING: policy `audit-archive`"));
}
