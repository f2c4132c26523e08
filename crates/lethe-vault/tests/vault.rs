//! End-to-end behaviour of the vault over the embedded store: what ingest
//! stores, what stays encrypted, what queries return, what the sweep removes.

mod common;

use common::{cfg, files_contain, logs, now, open, Place};
use lethe_core::config::Config;
use lethe_core::TenantId;
use lethe_vault::synth::Synth;
use lethe_vault::{MasterKeySource, Vault};
use serde_json::Value;

const GOOD: &str = r#"{"tenant":"acme","stream":"requests:1","scope":"chat-api","ts":"2026-05-30T10:00:00Z","subject":"alice","fields":{"model":"gpt-4o","status":200,"user_email":"alice@example.com","prompt":"my secret diagnosis is hypochondria","response":"take two aspirin"}}"#;

fn ingest_stores_valid_lines_and_names_line_and_field_of_bad_ones(p: &Place) {
    let v = p.open_with(Config::builtin());
    let input = format!(
        "{GOOD}\n{}\n\n{}\nnot json\n{}\n",
        r#"{"tenant":"acme","stream":"requests:1","fields":{"colour":"red"}}"#,
        r#"{"tenant":"acme","stream":"audit:1","ts":"2026-05-30T11:00:00Z","fields":{"action":"login"}}"#,
        r#"{"tenant":"acme","stream":"audit:1","ts":"later","fields":{"action":"login"}}"#,
    );
    let r = v.ingest(input.as_bytes(), &now, &|_, _| {}).unwrap();
    assert_eq!((r.lines, r.stored, r.rejected), (5, 2, 3));
    let where_: Vec<_> = r.errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(where_, [(2, "fields.colour"), (5, "(line)"), (6, "ts")]);
    assert_eq!(logs(&v, "acme", None).len(), 2);
}

#[test]
fn personal_and_subject_fields_never_reach_the_disk_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path(), Config::builtin());
    v.ingest_lines(&[GOOD], now()).unwrap();
    drop(v);
    for secret in ["hypochondria", "take two aspirin", "alice@example.com", "\"alice\""] {
        assert!(
            files_contain(dir.path(), secret.as_bytes()).is_empty(),
            "{secret} found on disk"
        );
    }
    assert!(
        !files_contain(dir.path(), b"gpt-4o").is_empty(),
        "plain fields are stored in clear"
    );
    let v = open(dir.path(), Config::builtin());
    let got = logs(&v, "acme", None);
    assert_eq!(got[0]["fields"]["prompt"], "my secret diagnosis is hypochondria");
    assert_eq!(got[0]["subject"], "alice");
}

#[test]
fn the_master_key_file_is_created_private_and_is_the_only_key_in_clear() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path(), Config::builtin());
    assert!(v.created_master_key);
    v.ingest_lines(&[GOOD], now()).unwrap();
    drop(v);
    let key_file = dir.path().join("master.key");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let hex = std::fs::read_to_string(&key_file).unwrap();
    let raw = lethe_core::crypto::SecretKey::parse(&hex).unwrap();
    let hits = files_contain(dir.path(), hex.trim().as_bytes());
    assert_eq!(hits, [key_file.display().to_string()]);
    let _ = raw;
    // Another key is refused at open, before anything is read or written,
    // and the refusal never shows a key.
    let e = Vault::open(
        dir.path(),
        Config::builtin(),
        &MasterKeySource::Value(lethe_core::crypto::SecretKey::generate().to_hex()),
    )
    .err()
    .expect("a wrong master key is refused")
    .to_string();
    assert!(e.contains("does not open this store"), "{e}");
    assert!(!e.contains(hex.trim()));
}

fn capture_modes_decide_what_is_written_and_none_is_only_counted(p: &Place) {
    let c = cfg(
        "[[capture]]\nscope = \"meta\"\nmode = \"metadata\"\n[[capture]]\nscope = \"mp\"\nmode = \"metadata_prompt\"\n[[capture]]\nscope = \"off\"\nmode = \"none\"\n",
    );
    let v = p.open_with(c);
    let lines: Vec<String> = ["meta", "mp", "off", "chat-api"]
        .iter()
        .map(|s| GOOD.replace("chat-api", s))
        .collect();
    let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
    let r = v.ingest_lines(&refs, now()).unwrap();
    assert_eq!((r.stored, r.not_captured), (3, 1));
    let got = logs(&v, "acme", None);
    let by_scope = |s: &str| got.iter().find(|r| r["scope"] == s).unwrap()["fields"].clone();
    assert!(by_scope("meta").get("prompt").is_none() && by_scope("meta").get("response").is_none());
    assert_eq!(by_scope("meta")["user_email"], "alice@example.com");
    assert!(by_scope("mp").get("prompt").is_some() && by_scope("mp").get("response").is_none());
    assert!(by_scope("chat-api").get("response").is_some());
    drop(got);
    let st = v.stats(None).unwrap();
    assert_eq!(st.totals.not_captured, 1);
    assert!(st
        .rows
        .iter()
        .filter(|r| r.scope == "off")
        .all(|r| r.records == 0 && r.not_captured == 1));
    assert!(logs(&v, "acme", None).iter().all(|r| r["scope"] != "off"));
}

#[test]
fn logs_json_is_accepted_back_by_ingest_unchanged() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let va = open(a.path(), Config::builtin());
    let mut synth = Synth::new(3, 300, now(), 30);
    let mut lines = Vec::new();
    let mut s = String::new();
    while synth.next_line(&mut s) {
        lines.push(std::mem::take(&mut s));
    }
    let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
    va.ingest_lines(&refs, now()).unwrap();
    let exported: Vec<String> = ["acme", "globex", "initech", "umbrella"]
        .iter()
        .flat_map(|t| logs(&va, t, None))
        .map(|v| v.to_string())
        .collect();
    assert_eq!(exported.len(), 300);
    let vb = open(b.path(), Config::builtin());
    let refs: Vec<&str> = exported.iter().map(|s| s.as_str()).collect();
    let r = vb.ingest_lines(&refs, now() + 1).unwrap();
    assert_eq!((r.stored, r.rejected), (300, 0));
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("received");
        v
    };
    for t in ["acme", "globex", "initech", "umbrella"] {
        let x: Vec<_> = logs(&va, t, None).into_iter().map(strip).collect();
        let y: Vec<_> = logs(&vb, t, None).into_iter().map(strip).collect();
        assert_eq!(x, y);
    }
    // and a retry of the same export is a no-op
    assert_eq!(vb.ingest_lines(&refs, now() + 2).unwrap().duplicates, 300);
}

fn subject_queries_find_exactly_that_subjects_records(p: &Place) {
    let v = p.open_with(Config::builtin());
    let bob = GOOD.replace("\"alice\"", "\"bob\"");
    v.ingest_lines(&[GOOD, &bob, GOOD.replace("10:00", "11:00").as_str()], now())
        .unwrap();
    assert_eq!(logs(&v, "acme", Some("alice")).len(), 2);
    assert_eq!(logs(&v, "acme", Some("bob")).len(), 1);
    assert_eq!(logs(&v, "acme", Some("carol")).len(), 0);
    assert_eq!(logs(&v, "other", Some("alice")).len(), 0);
}

fn sweep_deletes_and_anonymizes_per_policy_and_keeps_plain_fields(p: &Place) {
    let c = cfg("[retention.default]\nwindow = \"10d\"\naction = \"anonymize\"\n[[retention.policy]]\nstream = \"requests\"\nwindow = \"1d\"\naction = \"delete\"\n");
    let v = p.open_with(c);
    let audit = r#"{"tenant":"acme","stream":"audit:1","ts":"2026-05-01T00:00:00Z","subject":"alice","fields":{"action":"login","outcome":"success","actor_email":"alice@example.com","details":"very personal"}}"#;
    let fresh = audit.replace("2026-05-01", "2026-05-31");
    v.ingest_lines(&[GOOD, audit, &fresh], now()).unwrap();
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert_eq!((r.deleted, r.anonymized), (1, 1));
    assert_eq!(r.per_stream["acme/requests:1"].deleted, 1);
    let got = logs(&v, "acme", None);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["anonymized"], true);
    assert!(got[0].get("subject").is_none());
    assert_eq!(
        got[0]["fields"],
        serde_json::json!({"action": "login", "outcome": "success"})
    );
    assert_eq!(got[1]["fields"]["details"], "very personal");
    assert_eq!(
        logs(&v, "acme", Some("alice")).len(),
        1,
        "the anonymized event is no longer linked to alice"
    );
}

#[test]
fn dry_run_equals_the_real_run_on_randomized_data_and_policies() {
    for seed in 1..=3u64 {
        let dir = tempfile::tempdir().unwrap();
        let windows = ["3d", "20d", "45d", "90d"];
        let actions = ["delete", "anonymize"];
        let mut text = String::new();
        for (i, stream) in ["audit", "requests"].iter().enumerate() {
            for (j, class) in ["internal", "confidential", "restricted", "public"].iter().enumerate() {
                let k = (seed as usize * 7 + i * 3 + j * 5) % 8;
                text += &format!(
                    "[[retention.policy]]\nstream = \"{stream}\"\nclassification = \"{class}\"\nwindow = \"{}\"\naction = \"{}\"\n",
                    windows[k % 4],
                    actions[k / 4]
                );
            }
        }
        let v = open(dir.path(), cfg(&text));
        let mut synth = Synth::new(seed, 4000, now(), 120);
        let mut lines = Vec::new();
        let mut s = String::new();
        while synth.next_line(&mut s) {
            lines.push(std::mem::take(&mut s));
        }
        let refs: Vec<&str> = lines.iter().map(|s| s.as_str()).collect();
        v.ingest_lines(&refs, now()).unwrap();
        let plan = v.sweep(now(), None, true, &now, &|_, _| {}).unwrap();
        let run = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
        assert!(plan.deleted > 0 && plan.anonymized > 0, "seed {seed}: {plan:?}");
        let counts = |r: &lethe_vault::sweep::SweepReport| {
            r.groups
                .iter()
                .map(|g| {
                    (
                        g.tenant.clone(),
                        g.stream.clone(),
                        g.scope.clone(),
                        g.classification.clone(),
                        g.action.clone(),
                        g.records,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(&plan), counts(&run), "seed {seed}");
        let again = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
        assert_eq!((again.deleted, again.anonymized), (0, 0));
    }
}

fn two_writers_creating_the_same_subject_key_agree_on_one_key(p: &Place) {
    let a = p.open_with(Config::builtin());
    let b = p.open_with(Config::builtin());
    // Both know the tenant; neither has a key for alice yet.
    a.ingest_lines(&[&GOOD.replace("\"alice\"", "\"zed\"")], now()).unwrap();
    b.ingest_lines(&[&GOOD.replace("\"alice\"", "\"yan\"")], now()).unwrap();
    let line_a = GOOD.replace("10:00", "12:00");
    let prepared = a
        .prepare(line_a.clone().into_bytes(), vec![(1, 0, line_a.len())], now())
        .unwrap();
    b.ingest_lines(&[GOOD], now()).unwrap(); // b creates alice's key first
    let (_, report) = a.commit(prepared).unwrap(); // a's key conflicts; a re-prepares with b's key
    assert_eq!(report.inserted, 1);
    let got = logs(&a, "acme", Some("alice"));
    assert_eq!(got.len(), 2);
    assert!(got
        .iter()
        .all(|r| r["fields"]["prompt"] == "my secret diagnosis is hypochondria"));
}

fn tenants_outside_the_allow_list_are_rejected_by_name(p: &Place) {
    let v = p.open_with(cfg("[tenants]\nallow = [\"acme\"]\n"));
    let other = GOOD.replace("\"acme\"", "\"evil\"");
    let r = v.ingest_lines(&[GOOD, &other], now()).unwrap();
    assert_eq!((r.stored, r.rejected), (1, 1));
    assert_eq!((r.errors[0].line, r.errors[0].field.as_str()), (2, "tenant"));
    assert!(r.errors[0].message.contains("evil"));
}

fn a_sweep_for_one_tenant_leaves_the_others_alone(p: &Place) {
    let v = p.open_with(cfg("[retention.default]\nwindow = \"1d\"\naction = \"delete\"\n"));
    let beta = GOOD.replace("\"acme\"", "\"beta\"");
    v.ingest_lines(&[GOOD, &beta], now()).unwrap();
    let r = v
        .sweep(now(), Some(&TenantId::new("beta").unwrap()), false, &now, &|_, _| {})
        .unwrap();
    assert_eq!(r.deleted, 1);
    assert_eq!(r.per_stream.keys().collect::<Vec<_>>(), ["beta/requests:1"]);
    assert_eq!(logs(&v, "acme", None).len(), 1);
    assert_eq!(logs(&v, "beta", None).len(), 0);
}

#[test]
fn stats_total_bytes_is_the_data_directory_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let v = open(dir.path(), Config::builtin());
    v.ingest_lines(&[GOOD, &GOOD.replace("10:00", "11:00")], now()).unwrap();
    let st = v.stats(None).unwrap();
    let du = std::process::Command::new("du")
        .arg("-sk")
        .arg(dir.path())
        .output()
        .unwrap();
    let du_kb: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // du also counts directories (4 KiB each); allow for them
    let diff = (du_kb * 1024).abs_diff(st.totals.bytes);
    assert!(diff <= 64 * 1024, "stats {} vs du {} KiB", st.totals.bytes, du_kb);
    assert_eq!(st.totals.records, 2);
    assert_eq!(st.rows[0].records, 2);
    assert_eq!(st.rows[0].oldest.as_deref(), Some("2026-05-30T10:00:00Z"));
}

fn swept_vault(p: &Place) -> (Vault, lethe_vault::sweep::SweepReport) {
    let v = p.open_with(cfg("[retention.default]\nwindow = \"1d\"\naction = \"delete\"\n"));
    v.ingest_lines(&[GOOD, &GOOD.replace("2026-05-30", "2026-05-31T23:")], now())
        .unwrap();
    let r = v.sweep_by("cli:ops", now(), None, false, &now, &|_, _| {}).unwrap();
    (v, r)
}

fn a_sweep_writes_a_verified_receipt_to_the_ledger(p: &Place) {
    let (v, r) = swept_vault(p);
    assert_eq!((r.deleted, r.verified), (1, Some(true)));
    let receipts = v.receipts().unwrap();
    assert_eq!(receipts.len(), 1);
    let rc = &receipts[0];
    assert_eq!(
        (Some(rc.seq), rc.actor.as_str(), rc.kind.as_str()),
        (r.receipt, "cli:ops", "receipt.sweep")
    );
    let body: Value = serde_json::from_str(&rc.body).unwrap();
    assert_eq!(
        (body["deleted"].as_u64(), body["verified"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(body["policy_version"].as_i64(), Some(r.policy_version));
    assert_eq!(body["groups"][0]["tenant"], "acme");
    let kinds: Vec<String> = v.ledger(1, 100).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "policy.version",
            "key.tenant_created",
            "key.data_created",
            "checkpoint",
            "sweep.intent",
            "receipt.sweep"
        ]
    );
    let check = v.verify_ledger().unwrap();
    assert_eq!((check.entries, check.problem), (6, None));
    // the receipt names the intent, which lists exactly what went
    assert_eq!(body["intent"].as_u64(), Some(rc.seq - 1));
    assert_eq!(body["ranges"][0]["dropped"], serde_json::json!([[1, 1]]));
    // a dry run adds no receipt, and an unchanged policy no new version
    v.sweep(now(), None, true, &now, &|_, _| {}).unwrap();
    assert_eq!(v.ledger(1, 100).unwrap().len(), 6);
}

#[test]
fn ledger_verification_locates_edited_deleted_and_forged_entries() {
    let p = Place::sqlite();
    let dir = p.dir();
    let (v, _) = swept_vault(&p);
    drop(v);
    let db = rusqlite::Connection::open(dir.join("catalog.db")).unwrap();
    let check = |db: &rusqlite::Connection, sql: &str| {
        db.execute_batch(&format!("BEGIN; {sql}; COMMIT;")).unwrap();
        let v = open(dir, Config::builtin());
        v.verify_ledger().unwrap().problem.expect("tampering must be found")
    };
    let b = check(
        &db,
        "UPDATE ledger SET body = replace(body, '\"deleted\":1', '\"deleted\":0') WHERE seq = 6",
    );
    assert_eq!(b.seq, 6);
    assert!(b.problem.contains("edited"), "{}", b.problem);
    db.execute_batch("DELETE FROM ledger WHERE seq = 6").unwrap();
    let v = open(dir, Config::builtin());
    assert_eq!(
        v.verify_ledger().unwrap().problem,
        None,
        "dropping the newest entry is a truncation the ledger alone cannot see; `lethe verify` does (records not under a checkpoint, removals without receipt)"
    );
    drop(v);
    let b = check(&db, "DELETE FROM ledger WHERE seq = 2");
    assert_eq!(b.seq, 2);
    assert!(b.problem.contains("missing"), "{}", b.problem);
    // a forger who recomputes the hash but has no key
    let (seq, ts, actor, kind, tenant, prev): (i64, i64, String, String, Option<String>, Vec<u8>) = db
        .query_row(
            "SELECT seq,ts_us,actor,kind,tenant,prev FROM ledger WHERE seq = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap();
    let body = "{\"forged\":true}";
    let prev: [u8; 32] = prev.try_into().unwrap();
    let h = lethe_core::ledger::entry_hash(seq as u64, ts, &actor, &kind, tenant.as_deref(), body, &prev);
    db.execute(
        "UPDATE ledger SET body = ?1, hash = ?2 WHERE seq = 1",
        rusqlite::params![body, &h[..]],
    )
    .unwrap();
    let v = open(dir, Config::builtin());
    let b = v.verify_ledger().unwrap().problem.unwrap();
    assert_eq!(b.seq, 1);
    assert!(b.problem.contains("MAC"), "{}", b.problem);
}

fn a_changed_capture_or_retention_policy_is_entered_in_the_ledger_once(p: &Place) {
    let versions = |v: &Vault| {
        v.ledger(1, 100)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "policy.version")
            .count()
    };
    let v = p.open_with(Config::builtin());
    v.ingest_lines(&[GOOD], now()).unwrap();
    v.ingest_lines(&[GOOD], now()).unwrap();
    assert_eq!(versions(&v), 1);
    drop(v);
    let v = p.open_with(cfg("[[capture]]\nscope = \"chat-api\"\nmode = \"metadata\"\n"));
    v.ingest_lines(&[GOOD], now()).unwrap();
    assert_eq!(versions(&v), 2);
    let last = v
        .ledger(1, 100)
        .unwrap()
        .into_iter()
        .rev()
        .find(|e| e.kind == "policy.version")
        .unwrap();
    assert!(last.body.contains("\"metadata\""), "{}", last.body);
    v.sweep(now(), None, true, &now, &|_, _| {}).unwrap();
    assert_eq!(versions(&v), 2);
}

fn batches_prepared_ahead_of_a_key_conflict_never_use_the_key_that_lost(p: &Place) {
    let a = p.open_with(Config::builtin());
    let b = p.open_with(Config::builtin());
    a.ingest_lines(&[GOOD], now()).unwrap();
    b.ingest_lines(&[GOOD], now()).unwrap();
    let zoe = |t: &str| GOOD.replace("\"alice\"", "\"zoe\"").replace("10:00", t);
    let (l1, l2) = (zoe("12:00"), zoe("13:00"));
    // a prepares two batches for a new subject: the second reuses the key the first created
    let p1 = a
        .prepare(l1.clone().into_bytes(), vec![(1, 0, l1.len())], now())
        .unwrap();
    let p2 = a
        .prepare(l2.clone().into_bytes(), vec![(1, 0, l2.len())], now())
        .unwrap();
    // meanwhile b stores zoe's key first
    b.ingest_lines(&[&zoe("14:00")], now()).unwrap();
    a.commit(p1).unwrap();
    a.commit(p2).unwrap();
    let got = logs(&b, "acme", Some("zoe"));
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|r| r.get("erased").is_none() && r["fields"]["prompt"].is_string()),
        "{got:?}"
    );
}

/// Many writers at once (the service's shape): every batch's records are
/// stored once and read back, each writer gets its own counts (a record two
/// writers send at once is stored once), subjects shared between writers
/// end up under one key each, and `verify` finds every chain whole — however
/// the group commit grouped the batches.
fn concurrent_writers_store_every_record_once_and_the_chains_verify(p: &Place) {
    let v = p.open_with(Config::builtin());
    v.note_policy("test", now()).unwrap();
    let line = |w: usize, i: usize, id: &str| {
        format!(
            r#"{{"id":"{id}","tenant":"t{}","stream":"requests:1","ts":"2026-05-30T10:{:02}:00Z","subject":"user-{}","fields":{{"model":"m","prompt":"writer {w} line {i}"}}}}"#,
            i % 3,
            i % 60,
            i % 7
        )
    };
    // Record 0 of every batch is the same shared record, sent by every writer.
    let shared = "01900000-0000-7000-8000-000000000001";
    let (writers, batches, per) = (6, 8, 25);
    let reports: Vec<lethe_vault::ingest::IngestReport> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (v, line) = (&v, &line);
                s.spawn(move || {
                    let mut total = lethe_vault::ingest::IngestReport::default();
                    for b in 0..batches {
                        let lines: Vec<String> = (0..per)
                            .map(|i| {
                                if i == 0 {
                                    line(0, 0, shared)
                                } else {
                                    let id = format!("01900000-0000-7000-8000-{:04}{:04}{:04}", w, b, i);
                                    line(w, i, &id)
                                }
                            })
                            .collect();
                        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
                        total.merge(v.ingest_batch(&refs, 1, now()).unwrap());
                    }
                    total
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stored: u64 = reports.iter().map(|r| r.stored).sum();
    let duplicates: u64 = reports.iter().map(|r| r.duplicates).sum();
    let unique = (writers * batches * (per - 1) + 1) as u64;
    assert_eq!(stored, unique, "each record stored once");
    assert_eq!(
        duplicates,
        (writers * batches) as u64 - 1,
        "the shared record, every time but once"
    );
    let read: usize = (0..3).map(|t| logs(&v, &format!("t{t}"), None).len()).sum();
    assert_eq!(read as u64, unique);
    let c = v.commit_counts();
    assert!(
        c.batches >= (writers * batches) as u64 && c.appends <= c.batches,
        "{c:?}"
    );
    v.seal("test", now(), true).unwrap();
    let r = v.verify(None, None, now(), &|_| {}).unwrap();
    assert!(r.ok(), "verify: {:?}", r.unexplained_gaps);
    assert_eq!(r.records_checked, unique);
}

/// Many writers whose batches bring the same new subjects at the same
/// moment share one key per subject: none makes a second key for a subject
/// another writer has just made, so no batch is prepared again, every
/// record is stored once, and each key is entered in the ledger once.
/// (With 32 writers of 500 lines, batches used to exhaust their retries on
/// key conflicts and fail.)
fn concurrent_writers_with_the_same_new_subjects_share_their_keys_without_conflicts(p: &Place) {
    let v = p.open_with(Config::builtin());
    v.note_policy("test", now()).unwrap();
    let (writers, rounds, per) = (8usize, 6usize, 40usize);
    let barrier = std::sync::Barrier::new(writers);
    let keys_created = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for w in 0..writers {
            let (v, barrier, keys_created) = (&v, &barrier, &keys_created);
            s.spawn(move || {
                for r in 0..rounds {
                    // Every writer's batch of this round names the same 10
                    // subjects, none seen before.
                    let lines: Vec<String> = (0..per)
                        .map(|i| {
                            format!(
                                r#"{{"id":"01900000-0000-7000-8000-{w:04}{r:04}{i:04}","tenant":"t{}","stream":"requests:1","ts":"2026-05-30T10:00:00Z","subject":"round-{r}-user-{}","fields":{{"model":"m","prompt":"p"}}}}"#,
                                i % 2,
                                i % 10
                            )
                        })
                        .collect();
                    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
                    barrier.wait();
                    let rep = v.ingest_batch(&refs, 1, now()).unwrap();
                    assert_eq!(rep.stored, per as u64);
                    keys_created.fetch_add(rep.keys_created, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(
        v.batches_prepared_again(),
        0,
        "no key conflict between writers of one process"
    );
    let stored: usize = (0..2).map(|t| logs(&v, &format!("t{t}"), None).len()).sum();
    assert_eq!(stored, writers * rounds * per);
    let mut ids: Vec<i64> = v
        .ledger(1, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "key.data_created")
        .flat_map(|e| {
            let body: Value = serde_json::from_str(&e.body).unwrap();
            body["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_i64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let listed = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(listed, ids.len(), "each key entered once");
    // One key per (tenant, subject): subjects 0..10 of a round split over two tenants.
    assert_eq!(ids.len(), rounds * 10);
    assert_eq!(
        keys_created.into_inner(),
        ids.len() as u64,
        "the reports count each key once, though several batches carried it"
    );
    v.seal("test", now(), true).unwrap();
    let r = v.verify(None, None, now(), &|_| {}).unwrap();
    assert!(r.ok(), "verify: {:?}", r.unexplained_gaps);
}

on_both_backends!(
    ingest_stores_valid_lines_and_names_line_and_field_of_bad_ones,
    capture_modes_decide_what_is_written_and_none_is_only_counted,
    subject_queries_find_exactly_that_subjects_records,
    sweep_deletes_and_anonymizes_per_policy_and_keeps_plain_fields,
    two_writers_creating_the_same_subject_key_agree_on_one_key,
    tenants_outside_the_allow_list_are_rejected_by_name,
    a_sweep_for_one_tenant_leaves_the_others_alone,
    a_sweep_writes_a_verified_receipt_to_the_ledger,
    a_changed_capture_or_retention_policy_is_entered_in_the_ledger_once,
    batches_prepared_ahead_of_a_key_conflict_never_use_the_key_that_lost,
    concurrent_writers_store_every_record_once_and_the_chains_verify,
    concurrent_writers_with_the_same_new_subjects_share_their_keys_without_conflicts,
);
