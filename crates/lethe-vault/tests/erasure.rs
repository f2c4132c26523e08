//! Erasure and legal holds end to end: what a purge previews, removes,
//! destroys and proves; what holds keep; what verify says afterwards.

mod common;

use std::path::{Path, PathBuf};

use common::{files_contain, logs, now, Place};
use lethe_core::crypto::{MasterKey, SecretKey};
use lethe_core::record::body;
use lethe_core::TenantId;
use lethe_vault::hold::HoldRequest;
use lethe_vault::purge::{PurgePlan, PurgeReport, PurgeRequest};
use lethe_vault::{Vault, VaultError};
use rusqlite::Connection;
use serde_json::Value;

const DAY: i64 = 86_400_000_000;

/// 3,000 synthetic records over 20 days (subjects `user-000000`…, four tenants).
fn vault_with_data(p: &Place, extra: &str) -> Vault {
    p.synth(extra, 7, 3000, 20)
}

fn request(subjects: &[&str]) -> PurgeRequest {
    PurgeRequest {
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        ..PurgeRequest::new(TenantId::new("acme").unwrap(), "GDPR Art. 17 request", "DSR-1", "test")
    }
}

/// A hold on tenant acme, set by `legal` for `reason`, covering all of it
/// until narrowed with struct update syntax.
fn acme_hold(reason: &str) -> HoldRequest {
    HoldRequest {
        tenant: TenantId::new("acme").unwrap(),
        subject: None,
        scope: None,
        since_us: None,
        until_us: None,
        reason: reason.into(),
        expires_us: None,
        actor: "legal".into(),
    }
}

fn purge(v: &Vault, req: &PurgeRequest) -> PurgeReport {
    let plan: PurgePlan = v.plan_purge(req, now()).unwrap();
    v.execute_purge(req, plan, &now).unwrap()
}

fn verify_ok(v: &Vault) {
    let r = v.verify(None, None, now(), &|_| {}).unwrap();
    assert!(r.ok(), "verify: {:?}", r.unexplained_gaps);
}

/// Subjects of acme with the most records (so they span many partitions).
fn busy_subjects(v: &Vault, n: usize) -> Vec<String> {
    let mut count: std::collections::BTreeMap<String, usize> = Default::default();
    for r in logs(v, "acme", None) {
        if let Some(s) = r["subject"].as_str() {
            *count.entry(s.to_string()).or_default() += 1;
        }
    }
    let mut by: Vec<(usize, String)> = count.into_iter().map(|(s, c)| (c, s)).collect();
    by.sort_by(|a, b| b.cmp(a));
    by.into_iter().take(n).map(|(_, s)| s).collect()
}

fn purge_preview_is_exactly_what_the_purge_removes_and_nothing_of_the_subject_is_left_readable(p: &Place) {
    let v = vault_with_data(p, "");
    let subjects = busy_subjects(&v, 2);
    let before_all = logs(&v, "acme", None).len();
    let theirs: usize = subjects.iter().map(|s| logs(&v, "acme", Some(s)).len()).sum();
    assert!(theirs > 20, "test subjects have many records ({theirs})");
    let req = request(&subjects.iter().map(String::as_str).collect::<Vec<_>>());

    let plan = v.plan_purge(&req, now()).unwrap();
    let p = plan.preview.clone();
    assert_eq!(p.selected, theirs as u64);
    assert_eq!(p.subjects_found, 2);
    assert_eq!(p.held, 0);
    assert_eq!(p.keys_to_destroy, 2);
    assert_eq!(p.groups.iter().map(|g| g.records).sum::<u64>(), p.selected);
    assert!(p.bytes > 0 && p.oldest.is_some() && p.newest.is_some());

    let r = v.execute_purge(&req, plan, &now).unwrap();
    assert_eq!(r.removed, p.selected, "the purge removes exactly what the preview said");
    assert!(r.verified, "{}", r.verification);
    assert_eq!(r.keys_destroyed, 2);
    let receipt = r.receipt_id.expect("a receipt");
    for s in &subjects {
        assert!(logs(&v, "acme", Some(s)).is_empty(), "{s} is gone from queries");
    }
    assert_eq!(
        logs(&v, "acme", None).len(),
        before_all - theirs,
        "nobody else lost a record"
    );
    // Another tenant's subject of the same id is untouched.
    assert!(!logs(&v, "globex", Some(&subjects[0])).is_empty());

    let e = v.receipt(receipt).unwrap().unwrap();
    assert_eq!(e.kind, "receipt.purge");
    let b: Value = serde_json::from_str(&e.body).unwrap();
    assert_eq!(b["ticket"], "DSR-1");
    assert_eq!(b["reason"], "GDPR Art. 17 request");
    assert_eq!(b["selected"], p.selected);
    assert_eq!(b["removed"], p.selected);
    assert_eq!(b["verified"], true);
    assert_eq!(b["keys_destroyed"], 2);
    assert!(b["stores"]["archive"].as_str().unwrap().contains("key destruction"));
    // The receipt names no subject; the salted commitment shows which ones.
    for s in &subjects {
        assert!(!e.body.contains(s.as_str()));
    }
    let salt = r.subject_salt.unwrap();
    assert_eq!(
        b["selection"]["subject_commitment"],
        lethe_core::hold::subject_commitment(&salt, "acme", &subjects)
    );
    verify_ok(&v);
}

/// Every wrapped data key in the catalog: (id, ref, wrapped).
fn data_keys(dir: &Path) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>)> {
    let c = Connection::open(dir.join("catalog.db")).unwrap();
    let mut st = c.prepare("SELECT id, ref, wrapped FROM data_keys").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn partition_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("partitions")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "db") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_purged_subjects_archived_or_exported_ciphertext_cannot_be_decrypted_and_the_key_is_gone_from_disk() {
    let p = Place::sqlite();
    let v = vault_with_data(&p, "");
    let subject = busy_subjects(&v, 1).remove(0);
    let master = SecretKey::parse(&std::fs::read_to_string(p.dir().join("master.key")).unwrap()).unwrap();
    let cat = Connection::open(p.dir().join("catalog.db")).unwrap();
    let wrapped_tenant: Vec<u8> = cat
        .query_row("SELECT wrapped FROM tenant_keys WHERE tenant='acme'", [], |r| r.get(0))
        .unwrap();
    let tk = MasterKey::new(&master).open_tenant("acme", &wrapped_tenant).unwrap();
    let key_ref = [b"s:".as_slice(), &tk.pseudonym(&subject)].concat();
    let (key_id, _, wrapped) = data_keys(p.dir())
        .into_iter()
        .find(|(_, r, _)| *r == key_ref)
        .expect("the subject has a key");
    let wrapped = wrapped.unwrap();

    // The copy an archive or export holds: record id and encrypted body, as stored.
    let mut copies: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for f in partition_files(p.dir()) {
        let c = Connection::open(&f).unwrap();
        let mut st = c.prepare("SELECT id, body FROM records WHERE key_id = ?1").unwrap();
        let rows = st.query_map([key_id], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        copies.extend(rows.map(Result::unwrap));
    }
    assert!(copies.len() > 5);
    // Readable before the purge with the subject's key.
    let dk = tk.open_data_key("acme", &key_ref, &wrapped).unwrap();
    let (id, b) = &copies[0];
    let (name, blob) = body::decode(b).unwrap().into_iter().next().unwrap();
    assert!(dk.open_field(id.as_slice().try_into().unwrap(), name, blob).is_ok());
    drop(cat);

    let r = purge(&v, &request(&[&subject]));
    assert!(r.verified && r.keys_destroyed == 1);

    let after = data_keys(p.dir());
    let row = after.iter().find(|(i, _, _)| *i == key_id).unwrap();
    assert!(row.2.is_none(), "the wrapped key is erased");
    assert_ne!(row.1, key_ref, "the key row no longer names the subject's pseudonym");
    assert!(
        files_contain(p.dir(), &wrapped).is_empty(),
        "the destroyed key's bytes are overwritten everywhere in the data directory"
    );
    // No key left in the vault opens any field of any copy.
    let mut tried = 0;
    for (kid, kref, w) in after.iter().filter(|k| k.2.is_some()) {
        let Ok(other) = tk.open_data_key("acme", kref, w.as_ref().unwrap()) else {
            continue; // another tenant's key
        };
        for (id, b) in &copies {
            for (name, blob) in body::decode(b).unwrap() {
                tried += 1;
                assert!(
                    other.open_field(id.as_slice().try_into().unwrap(), name, blob).is_err(),
                    "key {kid} opened a purged field"
                );
            }
        }
    }
    assert!(tried > 0);
}

fn new_records_for_an_erased_subject_start_a_new_key_and_old_ones_stay_erased(p: &Place) {
    let v = vault_with_data(p, "");
    let subject = busy_subjects(&v, 1).remove(0);
    purge(&v, &request(&[&subject]));
    let line = format!(
        r#"{{"tenant":"acme","stream":"requests:1","scope":"chat-api","ts":"2026-05-31T10:00:00Z","subject":"{subject}","fields":{{"model":"m","status":200,"prompt":"back again"}}}}"#
    );
    let r = v.ingest_lines(&[&line], now()).unwrap();
    assert_eq!(r.stored, 1, "{:?}", r.errors);
    let got = logs(&v, "acme", Some(&subject));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["fields"]["prompt"], "back again");
    verify_ok(&v);
}

fn rerunning_the_same_purge_reports_its_receipt_and_writes_no_second_one(p: &Place) {
    let v = vault_with_data(p, "");
    let subject = busy_subjects(&v, 1).remove(0);
    let req = request(&[&subject]);
    let first = purge(&v, &req);
    let again = purge(&v, &req);
    assert_eq!(again.status, "already_done");
    assert_eq!(again.receipt_id, first.receipt_id);
    let receipts = v
        .receipts()
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "receipt.purge")
        .count();
    assert_eq!(receipts, 1);
    // A different ticket is a different request: it finds nothing left.
    let other = PurgeRequest {
        ticket: "DSR-2".into(),
        ..req
    };
    let r = purge(&v, &other);
    assert_eq!((r.status.as_str(), r.removed, r.preview.selected), ("no_match", 0, 0));
    assert!(r.receipt_id.is_none(), "nothing matched: no receipt claims an erasure");
    assert!(r.no_match_entry.is_some(), "but the request is on record");
}

fn held_records_survive_sweep_and_purge_until_the_hold_is_released(p: &Place) {
    // Everything older than 5 days expires.
    let v = vault_with_data(p, "[retention.default]\nwindow = \"5d\"\naction = \"delete\"\n");
    let hold = v
        .add_hold(
            &HoldRequest {
                scope: Some("chat-api".into()),
                until_us: Some(now() - 10 * DAY),
                ..acme_hold("litigation matter 42")
            },
            now(),
        )
        .unwrap();
    assert!(hold.hold.ledger_seq.is_some());
    let held_before = logs(&v, "acme", None)
        .iter()
        .filter(|r| {
            r["scope"] == "chat-api"
                && lethe_core::record::parse_ts(r["ts"].as_str().unwrap()).unwrap() < now() - 10 * DAY
        })
        .count();
    assert!(held_before > 50);

    let dry = v.sweep(now(), None, true, &now, &|_, _| {}).unwrap();
    assert_eq!(dry.held, held_before as u64, "the plan reports held records");
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert_eq!(r.held, held_before as u64);
    assert_eq!(r.verified, Some(true));
    let left = logs(&v, "acme", None);
    assert_eq!(
        left.iter()
            .filter(|r| r["scope"] == "chat-api"
                && lethe_core::record::parse_ts(r["ts"].as_str().unwrap()).unwrap() < now() - 5 * DAY)
            .count(),
        held_before
    );
    let receipt: Value = serde_json::from_str(&v.receipt(r.receipt.unwrap()).unwrap().unwrap().body).unwrap();
    assert_eq!(receipt["held"], held_before as u64);
    verify_ok(&v);

    // A purge touching held records refuses; with skip_held it purges the rest.
    let subject = left
        .iter()
        .find(|r| r["scope"] == "chat-api" && r["subject"].is_string())
        .unwrap()["subject"]
        .as_str()
        .unwrap()
        .to_string();
    let mine = logs(&v, "acme", Some(&subject));
    let req = request(&[&subject]);
    let plan = v.plan_purge(&req, now()).unwrap();
    assert!(plan.preview.held > 0);
    assert_eq!(plan.preview.held_by, vec![hold.hold.id]);
    assert_eq!(plan.preview.keys_to_destroy, 0, "a held subject keeps its key");
    match v.execute_purge(&req, plan, &now) {
        Err(VaultError::Refused(m)) => assert!(m.contains("legal hold"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        logs(&v, "acme", Some(&subject)).len(),
        mine.len(),
        "a refused purge removes nothing"
    );
    let skip = PurgeRequest { skip_held: true, ..req };
    let r = purge(&v, &skip);
    assert!(r.verified, "{}", r.verification);
    assert_eq!(r.removed + r.preview.held, mine.len() as u64);
    let kept = logs(&v, "acme", Some(&subject));
    assert_eq!(kept.len() as u64, r.preview.held);
    assert!(
        kept.iter().all(|k| k["fields"]["prompt"].is_string()),
        "held records stay readable"
    );
    verify_ok(&v);

    // Released: the next sweep removes what had expired.
    let rel = v.release_hold(hold.hold.id, "matter settled", "legal", now()).unwrap();
    assert_eq!(rel.status, "released");
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert_eq!(r.held, 0);
    assert!(r.deleted as usize >= held_before - kept.len());
    verify_ok(&v);
    let kinds: Vec<String> = v.ledger(1, 10_000).unwrap().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&"hold.set".to_string()) && kinds.contains(&"hold.released".to_string()));
}

fn a_subject_hold_keeps_that_subjects_records_only(p: &Place) {
    let v = vault_with_data(p, "[retention.default]\nwindow = \"5d\"\naction = \"delete\"\n");
    let subject = busy_subjects(&v, 1).remove(0);
    let theirs = logs(&v, "acme", Some(&subject)).len();
    let set = v
        .add_hold(
            &HoldRequest {
                subject: Some(subject.clone()),
                expires_us: Some(now() + 30 * DAY),
                ..acme_hold("subject under investigation")
            },
            now(),
        )
        .unwrap();
    assert!(set.subject_salt.is_some());
    let hold_entry = v.ledger(set.hold.ledger_seq.unwrap(), 1).unwrap().remove(0);
    assert!(
        !hold_entry.body.contains(&subject),
        "the ledger does not name the subject"
    );
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert!(r.held > 0 && r.deleted > 0);
    assert_eq!(
        logs(&v, "acme", Some(&subject)).len(),
        theirs,
        "every record of the held subject stays"
    );
    let others: usize = logs(&v, "acme", None).len() - theirs;
    assert!(logs(&v, "acme", None)
        .iter()
        .filter(|r| r["subject"] != subject.as_str())
        .all(|r| lethe_core::record::parse_ts(r["ts"].as_str().unwrap()).unwrap() >= now() - 5 * DAY));
    assert!(others > 0);
    verify_ok(&v);
    // An expired hold no longer keeps anything.
    let later = now() + 31 * DAY;
    let r = v.sweep(later, None, true, &now, &|_, _| {}).unwrap();
    assert_eq!(r.held, 0);
}

fn anonymize_on_request_keeps_the_events_without_subject_or_personal_fields(p: &Place) {
    let v = vault_with_data(p, "");
    let subject = busy_subjects(&v, 1).remove(0);
    let theirs = logs(&v, "acme", Some(&subject));
    let total = logs(&v, "acme", None).len();
    let req = PurgeRequest {
        anonymize: true,
        ..request(&[&subject])
    };
    let r = purge(&v, &req);
    assert_eq!(r.removed, theirs.len() as u64);
    assert!(r.verified);
    assert_eq!(r.preview.action, "anonymize");
    assert!(logs(&v, "acme", Some(&subject)).is_empty());
    let all = logs(&v, "acme", None);
    assert_eq!(all.len(), total, "every event is still there");
    let ids: std::collections::BTreeSet<String> = theirs.iter().map(|r| r["id"].to_string()).collect();
    let kept: Vec<&Value> = all.iter().filter(|r| ids.contains(&r["id"].to_string())).collect();
    assert_eq!(kept.len(), theirs.len());
    for k in kept {
        assert_eq!(k["anonymized"], true);
        assert!(k.get("subject").is_none());
        assert!(k["fields"].get("prompt").is_none() && k["fields"].get("user_email").is_none());
        if k["stream"] == "requests:1" {
            assert!(k["fields"]["model"].is_string(), "plain fields stay: {k}");
        }
    }
    verify_ok(&v);
}

fn a_time_range_purge_removes_that_range_only_and_keeps_keys(p: &Place) {
    let v = vault_with_data(p, "");
    let (since, until) = (now() - 15 * DAY, now() - 9 * DAY);
    let in_range = |r: &Value| {
        let t = lethe_core::record::parse_ts(r["ts"].as_str().unwrap()).unwrap();
        t >= since && t < until && r["scope"] == "chat-api"
    };
    let before = logs(&v, "acme", None);
    let n = before.iter().filter(|r| in_range(r)).count();
    assert!(n > 5);
    let req = PurgeRequest {
        subjects: vec![],
        scope: Some("chat-api".into()),
        since_us: Some(since),
        until_us: Some(until),
        ..request(&[])
    };
    let r = purge(&v, &req);
    assert_eq!(r.removed, n as u64);
    assert_eq!(r.keys_destroyed, 0);
    assert!(r.preview.keys.starts_with("kept"));
    let after = logs(&v, "acme", None);
    assert_eq!(after.len(), before.len() - n);
    assert!(!after.iter().any(in_range));
    verify_ok(&v);
}

fn a_purge_needs_a_reason_a_ticket_and_a_selection(p: &Place) {
    let v = vault_with_data(p, "");
    let bad = |req: PurgeRequest, field: &str| match v.plan_purge(&req, now()) {
        Err(VaultError::Invalid(m)) => assert!(m.starts_with(field), "{m}"),
        other => panic!("expected an error naming {field}, got {other:?}"),
    };
    bad(
        PurgeRequest {
            reason: " ".into(),
            ..request(&["user-000001"])
        },
        "reason",
    );
    bad(
        PurgeRequest {
            ticket: "".into(),
            ..request(&["user-000001"])
        },
        "ticket",
    );
    bad(request(&[]), "subject");
    // An unknown subject selects nothing and destroys nothing.
    let r = purge(&v, &request(&["nobody-at-all"]));
    assert_eq!((r.removed, r.keys_destroyed, r.preview.subjects_found), (0, 0, 0));
    assert!(r.verified);
}

#[test]
fn verify_fails_when_a_purged_subjects_rows_vanish_without_a_purge_or_under_a_hold() {
    let p = Place::sqlite();
    let v = vault_with_data(&p, "[retention.default]\nwindow = \"5d\"\naction = \"delete\"\n");
    let subject = busy_subjects(&v, 1).remove(0);
    purge(&v, &request(&[&subject]));
    verify_ok(&v);
    // A row deleted behind Lethe's back is caught.
    let f = partition_files(p.dir()).into_iter().next().unwrap();
    let c = Connection::open(&f).unwrap();
    // The row key holds its sequence number in the low bits.
    let (key, seq): (i64, i64) = c
        .query_row(
            "SELECT seq, seq & ?1 FROM records WHERE state = 0 ORDER BY seq LIMIT 1",
            [lethe_store::sqlite::MAX_SEQ as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    c.execute("DELETE FROM records WHERE seq = ?1", [key]).unwrap();
    drop(c);
    let r = v.verify(None, None, now(), &|_| {}).unwrap();
    assert!(!r.ok());
    assert!(
        r.unexplained_gaps.iter().any(|g| g.seq == seq as u64),
        "{:?}",
        r.unexplained_gaps
    );
}

/// A hold on acme's `embeddings` scope; its id.
fn embeddings_hold(v: &Vault) -> i64 {
    v.add_hold(
        &HoldRequest {
            scope: Some("embeddings".into()),
            ..acme_hold("audit")
        },
        now(),
    )
    .unwrap()
    .hold
    .id
}

/// Removes a hold from the catalog behind the ledger's back (tampering).
fn forget_hold_in_catalog(dir: &Path, id: i64) {
    let c = Connection::open(dir.join("catalog.db")).unwrap();
    c.execute("DELETE FROM holds WHERE id = ?1", [id]).unwrap();
}

/// `verify` at `now_us` reports a gap naming hold `id`.
fn assert_gap_names_hold(v: &Vault, now_us: i64, id: i64) {
    let report = v.verify(None, None, now_us, &|_| {}).unwrap();
    assert!(!report.ok());
    assert!(
        report
            .unexplained_gaps
            .iter()
            .any(|g| g.tenant == "acme" && g.problem.contains(&format!("hold {id}"))),
        "{:?}",
        report.unexplained_gaps
    );
}

#[test]
fn a_hold_removed_from_the_catalog_behind_the_ledgers_back_still_keeps_its_records() {
    let p = Place::sqlite();
    let v = vault_with_data(&p, "[retention.default]\nwindow = \"5d\"\naction = \"delete\"\n");
    let h = embeddings_hold(&v);
    // Someone removes the hold from the catalog behind the ledger's back:
    // the ledger still says it is in force, so the sweep still keeps what
    // it covers, and verify names the hold.
    forget_hold_in_catalog(p.dir(), h);
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert!(r.deleted > 0 && r.held > 0, "{r:?}");
    assert!(r
        .groups
        .iter()
        .filter(|g| g.scope == "embeddings" && g.tenant == "acme")
        .all(|g| g.records == 0));
    assert_gap_names_hold(&v, now(), h);
}

#[test]
fn verify_reports_records_removed_while_a_hold_was_in_force() {
    let p = Place::sqlite();
    let v = vault_with_data(&p, "[retention.default]\nwindow = \"5d\"\naction = \"delete\"\n");
    let h = embeddings_hold(&v);
    // A rogue copy of Lethe that ignores holds (simulated: the hold's
    // ledger entries are out of its sight — the catalog row and the
    // ledger's index are edited, then put back) deletes what the hold kept.
    let c = Connection::open(p.dir().join("catalog.db")).unwrap();
    c.execute("UPDATE ledger SET kind='hold.hidden' WHERE kind='hold.set'", [])
        .unwrap();
    forget_hold_in_catalog(p.dir(), h);
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert!(r.deleted > 0 && r.held == 0);
    c.execute("UPDATE ledger SET kind='hold.set' WHERE kind='hold.hidden'", [])
        .unwrap();
    assert_gap_names_hold(&v, now(), h);
}

fn purge_receipts_list_configured_exports_as_outside_lethes_reach(p: &Place) {
    let v = vault_with_data(
        p,
        "[[exports]]\nname = \"siem\"\ndestination = \"splunk://siem.internal\"\nretention = \"90d\"\n\
         [[exports]]\nname = \"warehouse\"\ndestination = \"s3://dwh/raw\"\npersonal_in_clear = true\n",
    );
    let subject = busy_subjects(&v, 1).remove(0);
    let r = purge(&v, &request(&[&subject]));
    let b: Value = serde_json::from_str(&v.receipt(r.receipt_id.unwrap()).unwrap().unwrap().body).unwrap();
    let exports = b["stores"]["exports"].as_array().unwrap();
    assert_eq!(exports.len(), 2);
    assert_eq!(exports[0]["name"], "siem");
    assert_eq!(exports[0]["retention"], "90d");
    assert!(exports[0]["status"].as_str().unwrap().contains("unreadable"));
    assert!(exports[1]["status"].as_str().unwrap().contains("erase there"));
}

#[test]
fn holds_are_still_checked_after_the_ledger_is_trimmed_past_them() {
    let p = Place::sqlite();
    let v = vault_with_data(
        &p,
        "[retention.default]\nwindow = \"5d\"\naction = \"delete\"\n[ledger]\nretention = \"1d\"\n",
    );
    let h = embeddings_hold(&v);
    // Two days later a sweep trims the ledger past the hold's entry.
    let later = now() + 2 * DAY;
    let r = v.sweep(later, None, false, &|| later, &|_, _| {}).unwrap();
    assert!(r.ledger_trimmed > 0, "{:?}", r.warnings);
    assert!(v.ledger(1, 100_000).unwrap().iter().all(|e| e.kind != "hold.set"));
    verify_ok(&v);
    // The hold vanishes from the catalog behind the ledger's back; the next
    // sweep deletes what it kept. The anchor still knows the hold.
    forget_hold_in_catalog(p.dir(), h);
    let later = later + DAY;
    let r = v.sweep(later, None, false, &|| later, &|_, _| {}).unwrap();
    assert!(r.deleted > 0);
    assert_gap_names_hold(&v, later, h);
}

/// A plan is carried out as made only while nothing was recorded since:
/// a hold placed between the preview and the confirmation is honoured.
fn a_purge_planned_before_a_hold_was_placed_is_planned_again_and_refused(p: &Place) {
    let v = vault_with_data(p, "");
    let subject = busy_subjects(&v, 1).remove(0);
    let theirs = logs(&v, "acme", Some(&subject)).len();
    let req = request(&[&subject]);
    let plan = v.plan_purge(&req, now()).unwrap();
    assert_eq!((plan.preview.selected as usize, plan.preview.held), (theirs, 0));
    v.add_hold(
        &HoldRequest {
            subject: Some(subject.clone()),
            ..acme_hold("litigation")
        },
        now(),
    )
    .unwrap();
    let e = v.execute_purge(&req, plan, &now).expect_err("refused");
    assert!(matches!(e, VaultError::Refused(_)), "{e}");
    assert!(e.to_string().contains("legal hold"), "{e}");
    assert_eq!(logs(&v, "acme", Some(&subject)).len(), theirs, "nothing removed");
    verify_ok(&v);
}

/// A sweep that ran between a purge's preview and its confirmation
/// removed some of the subject's records: the purge removes exactly what
/// is left, and says so.
fn a_purge_planned_before_a_sweep_removes_exactly_what_the_sweep_left(p: &Place) {
    let v = vault_with_data(p, "[retention.default]\nwindow = \"10d\"\naction = \"delete\"\n");
    let subject = busy_subjects(&v, 1).remove(0);
    let req = request(&[&subject]);
    let plan = v.plan_purge(&req, now()).unwrap();
    let before = logs(&v, "acme", Some(&subject)).len();
    let swept = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert!(swept.deleted > 0);
    let left = logs(&v, "acme", Some(&subject)).len();
    assert!(left < before && left > 0, "{left} of {before} left");
    let r = v.execute_purge(&req, plan, &now).unwrap();
    assert_eq!((r.removed as usize, r.verified), (left, true), "{}", r.verification);
    assert_eq!(
        r.preview.selected as usize, left,
        "the receipt's preview is the plan carried out"
    );
    assert!(logs(&v, "acme", Some(&subject)).is_empty());
    verify_ok(&v);
}

on_both_backends!(
    a_purge_planned_before_a_hold_was_placed_is_planned_again_and_refused,
    a_purge_planned_before_a_sweep_removes_exactly_what_the_sweep_left,
    purge_preview_is_exactly_what_the_purge_removes_and_nothing_of_the_subject_is_left_readable,
    new_records_for_an_erased_subject_start_a_new_key_and_old_ones_stay_erased,
    rerunning_the_same_purge_reports_its_receipt_and_writes_no_second_one,
    held_records_survive_sweep_and_purge_until_the_hold_is_released,
    a_subject_hold_keeps_that_subjects_records_only,
    anonymize_on_request_keeps_the_events_without_subject_or_personal_fields,
    a_time_range_purge_removes_that_range_only_and_keeps_keys,
    a_purge_needs_a_reason_a_ticket_and_a_selection,
    purge_receipts_list_configured_exports_as_outside_lethes_reach,
);
