//! The archive tier end to end, on the local target and on a real S3
//! protocol server (moto, started by `scripts/test.sh`): what the sweep
//! archives before deleting, what a failing or lying target costs (nothing),
//! the archive clock, `archive verify` and restore.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::{cfg, logs, now, open};
use lethe_core::TenantId;
use lethe_vault::archive::inventory::ArchiveFilter;
use lethe_vault::hold::HoldRequest;
use lethe_vault::purge::PurgeRequest;
use lethe_vault::sweep::SweepReport;
use lethe_vault::Vault;
use serde_json::Value;

const DAY: i64 = 86_400_000_000;
const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];

/// Audit events: 10 days active, then archived (kept 30 days from event
/// time); requests: 10 days, then deleted.
fn policy(target: &str, extra: &str) -> String {
    format!(
        "[[retention.policy]]\nname = \"audit-archive\"\nstream = \"audit\"\nwindow = \"10d\"\naction = \"archive_then_delete\"\narchive = \"{target}\"\narchive_window = \"30d\"\n\
         [[retention.policy]]\nname = \"requests-delete\"\nstream = \"requests\"\nwindow = \"10d\"\naction = \"delete\"\n{extra}"
    )
}

/// 3,000 synthetic records over 20 days.
fn vault_with_data(dir: &Path, config: &str) -> Vault {
    common::vault_with_synth(dir, config, 11, 3000, 20)
}

fn sweep(v: &Vault, at: i64) -> SweepReport {
    v.sweep(at, None, false, &|| at, &|_, _| {}).unwrap()
}

/// Every record of every tenant, decrypted, by id.
fn all_records(v: &Vault) -> BTreeMap<String, Value> {
    TENANTS
        .iter()
        .flat_map(|t| logs(v, t, None))
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect()
}

/// The audit records that expire at `now` (10-day window).
fn expiring_audit(records: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let cutoff = now() - 10 * DAY;
    records
        .iter()
        .filter(|(_, r)| {
            r["stream"] == "audit:1" && lethe_core::record::parse_ts(r["ts"].as_str().unwrap()).unwrap() < cutoff
        })
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect()
}

/// Every archived record of every tenant, restored, by id.
fn restored(v: &Vault) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for t in TENANTS {
        let mut buf = Vec::new();
        let f = ArchiveFilter {
            tenant: Some(t.into()),
            ..Default::default()
        };
        v.archive_restore(&f, now(), &mut buf).unwrap();
        for line in buf.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            let r: Value = serde_json::from_slice(line).unwrap();
            let id = r["id"].as_str().unwrap().to_string();
            assert!(out.insert(id.clone(), r).is_none(), "record {id} restored twice");
        }
    }
    out
}

fn verify_ok(v: &Vault) {
    let r = v.verify(None, None, now(), &|_| {}).unwrap();
    assert!(r.ok(), "verify: {:?}", r.unexplained_gaps);
}

fn archive_ok(v: &Vault) -> lethe_vault::archive::inventory::ArchiveCheck {
    let c = v.archive_verify(&ArchiveFilter::default(), &|_, _| {}).unwrap();
    assert!(c.problems.is_empty(), "archive verify: {:#?}", c.problems);
    c
}

/// Paths of the objects (`*.ndjson.zst`) under a local target directory.
fn objects(root: &Path) -> Vec<PathBuf> {
    common::files_under(root)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".ndjson.zst"))
        .collect()
}

#[test]
fn archive_then_delete_copies_every_expired_record_before_deleting_it() {
    let d = tempfile::tempdir().unwrap();
    let v = vault_with_data(d.path(), &policy("local", ""));
    let before = all_records(&v);
    let want = expiring_audit(&before);
    assert!(want.len() > 500, "the data has audit records to archive");

    let r = sweep(&v, now());
    assert_eq!(r.status, "success");
    assert!(r.failing.is_empty());
    let a = r.archived.clone().expect("an archive run");
    assert_eq!(a.records, want.len() as u64, "every expiring audit record is archived");
    assert!(a.raw_bytes > a.bytes, "objects are compressed");
    assert_eq!(r.verified, Some(true));

    // Gone from the active store, back from the archive exactly as they were.
    let after = all_records(&v);
    assert!(want.keys().all(|id| !after.contains_key(id)));
    let back = restored(&v);
    assert_eq!(back.len(), want.len());
    for (id, rec) in &want {
        assert_eq!(back.get(id), Some(rec), "record {id} restores as it was stored");
    }

    // Objects: one per (tenant, stream, day); plain fields in clear, subjects and
    // personal fields only as ciphertext.
    let objs = objects(&d.path().join("archive"));
    assert_eq!(objs.len() as u64, a.objects);
    let mut text = Vec::new();
    for o in &objs {
        zstd::stream::read::Decoder::new(std::fs::File::open(o).unwrap())
            .unwrap()
            .read_to_end(&mut text)
            .unwrap();
    }
    assert_eq!(text.iter().filter(|&&c| c == b'\n').count(), want.len());
    let text = String::from_utf8(text).unwrap();
    let subjects: BTreeSet<&str> = want.values().filter_map(|r| r["subject"].as_str()).collect();
    assert!(!subjects.is_empty());
    for s in &subjects {
        assert!(!text.contains(s), "subject {s} is in an archive object in clear");
    }
    let first = want.values().next().unwrap();
    let action = first["fields"]["action"].as_str().unwrap();
    assert!(
        text.contains(&format!("\"action\":\"{action}\"")),
        "plain fields are in clear"
    );

    // The ledger has the writes before the intent; the manifests name the receipt.
    let ledger = v.ledger(1, 100_000).unwrap();
    let written: Vec<u64> = ledger
        .iter()
        .filter(|e| e.kind == "archive.written")
        .map(|e| e.seq)
        .collect();
    let intent = ledger.iter().find(|e| e.kind == "sweep.intent").unwrap().seq;
    assert!(!written.is_empty() && written.iter().all(|&s| s < intent));
    let listed = v.archive_ls(&ArchiveFilter::default()).unwrap();
    assert_eq!(listed.len() as u64, a.objects);
    assert!(listed
        .iter()
        .all(|l| l.manifest.receipt == r.receipt && l.manifest.intent == Some(intent)));

    let c = archive_ok(&v);
    assert_eq!(c.objects_checked, a.objects);
    assert_eq!(c.records_checked, want.len() as u64);
    verify_ok(&v);

    // Nothing left to archive: the next run archives and deletes nothing.
    let again = sweep(&v, now());
    assert!(again.archived.is_none() && again.deleted == 0);
}

#[test]
fn a_purged_subject_comes_back_from_the_archive_as_erased_never_as_ciphertext() {
    let d = tempfile::tempdir().unwrap();
    let v = vault_with_data(d.path(), &policy("local", ""));
    let want = expiring_audit(&all_records(&v));
    sweep(&v, now());
    // The acme subject with the most archived records.
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for s in want
        .values()
        .filter(|r| r["tenant"] == "acme")
        .filter_map(|r| r["subject"].as_str())
    {
        *per.entry(s).or_default() += 1;
    }
    let (subject, n) = per
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(s, n)| (s.to_string(), *n))
        .unwrap();
    assert!(n >= 2);
    let req = PurgeRequest {
        subjects: vec![subject.clone()],
        ..PurgeRequest::new(TenantId::new("acme").unwrap(), "GDPR Art. 17", "DSR-9", "test")
    };
    let plan = v.plan_purge(&req, now()).unwrap();
    let done = v.execute_purge(&req, plan, &now).unwrap();
    assert!(done.keys_destroyed > 0);

    let back = restored(&v);
    assert_eq!(back.len(), want.len(), "erasure does not remove archive lines");
    let erased: Vec<&Value> = back.values().filter(|r| r["erased"] == true).collect();
    let theirs: BTreeSet<&String> = want
        .iter()
        .filter(|(_, r)| r["tenant"] == "acme" && r["subject"] == subject.as_str())
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        erased.len(),
        n,
        "exactly the subject's archived records come back erased"
    );
    for r in &erased {
        assert!(theirs.contains(&r["id"].as_str().unwrap().to_string()));
        assert!(r.get("subject").is_none(), "no subject on an erased record");
        let fields = r["fields"].as_object().unwrap();
        for personal in ["actor_email", "ip", "user_agent", "details"] {
            assert!(!fields.contains_key(personal), "{personal} shown for an erased record");
        }
        assert!(fields.contains_key("action"), "plain fields survive erasure");
    }
    assert!(back
        .values()
        .all(|r| r["tenant"] != "acme" || r["subject"] != subject.as_str()));
    archive_ok(&v);
    verify_ok(&v);
}

/// Restored copies of a tenant, by id (`lethe logs --restored`).
fn restored_in_store(v: &Vault, tenant: &str, subject: Option<&str>) -> BTreeMap<String, Value> {
    common::read_logs(v, tenant, subject, true)
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect()
}

#[test]
fn records_restored_into_the_store_are_queryable_never_archived_again_reached_by_purges_and_expire() {
    let d = tempfile::tempdir().unwrap();
    let v = vault_with_data(d.path(), &policy("local", ""));
    let want: BTreeMap<String, Value> = expiring_audit(&all_records(&v))
        .into_iter()
        .filter(|(_, r)| r["tenant"] == "acme")
        .collect();
    let first = sweep(&v, now());
    let objects_after_archiving = objects(&d.path().join("archive")).len();
    let live_before = logs(&v, "acme", None).len();

    let f = ArchiveFilter {
        tenant: Some("acme".into()),
        ..Default::default()
    };
    let set = v
        .archive_restore_into(&f, None, "test", "INC-7 investigation", now())
        .unwrap();
    assert_eq!(set.report.records, want.len() as u64);
    assert_eq!(set.restoration.records, want.len() as u64);
    assert_eq!(
        set.restoration.expires_us,
        now() + 30 * DAY,
        "default restore_window is 30 days"
    );
    let e = &v.ledger(set.restoration.ledger_seq, 1).unwrap()[0];
    assert_eq!(e.kind, "archive.restore");
    let body: Value = serde_json::from_str(&e.body).unwrap();
    assert_eq!(body["records"], want.len() as u64);
    assert_eq!(body["reason"], "INC-7 investigation");

    // Back as they were stored, marked restored, decrypted; live queries unchanged.
    let back = restored_in_store(&v, "acme", None);
    assert_eq!(back.len(), want.len());
    for (id, rec) in &want {
        let mut got = back[id].clone();
        assert_eq!(got["restored"], set.restoration.id);
        got.as_object_mut().unwrap().remove("restored");
        assert_eq!(&got, rec, "record {id} restored as stored");
    }
    assert_eq!(logs(&v, "acme", None).len(), live_before);
    assert!(
        restored_in_store(&v, "globex", None).is_empty(),
        "tenants never see each other's restorations"
    );
    // Subjects are indexed again: a subject query finds their restored records.
    let subject = want.values().find_map(|r| r["subject"].as_str()).unwrap().to_string();
    let theirs = want.values().filter(|r| r["subject"] == subject.as_str()).count();
    assert_eq!(restored_in_store(&v, "acme", Some(&subject)).len(), theirs);

    // Long expired by event time, yet neither archived nor deleted again by
    // the next sweep while the restoration's window lasts.
    assert!(first.archived.is_some());
    let again = sweep(&v, now());
    assert!(again.restorations_expired.is_empty());
    assert!(again.archived.is_none() && again.deleted == 0, "{again:?}");
    assert_eq!(restored_in_store(&v, "acme", None).len(), want.len());
    assert_eq!(objects(&d.path().join("archive")).len(), objects_after_archiving);
    verify_ok(&v);

    // A purge of the subject reaches the restored copies.
    let req = PurgeRequest {
        subjects: vec![subject.clone()],
        ..PurgeRequest::new(TenantId::new("acme").unwrap(), "GDPR Art. 17", "DSR-11", "test")
    };
    let plan = v.plan_purge(&req, now()).unwrap();
    let done = v.execute_purge(&req, plan, &now).unwrap();
    assert_eq!(done.restored_removed, theirs as u64);
    assert!(restored_in_store(&v, "acme", Some(&subject)).is_empty());
    let left = restored_in_store(&v, "acme", None);
    assert_eq!(left.len(), want.len() - theirs);
    assert!(left.values().all(|r| r["subject"] != subject.as_str()));
    let receipt: Value = serde_json::from_str(&v.receipt(done.receipt_id.unwrap()).unwrap().unwrap().body).unwrap();
    assert_eq!(receipt["restored_removed"], theirs as u64);

    // A dry run lists the expired restoration; the real run removes it whole, with a ledger entry.
    let later = now() + 31 * DAY;
    let dry = v.sweep(later, None, true, &|| later, &|_, _| {}).unwrap();
    assert_eq!(dry.restorations_expired.len(), 1);
    assert_eq!(dry.restorations_expired[0].records, (want.len() - theirs) as u64);
    assert_eq!(v.restorations(None).unwrap().len(), 1, "a dry run removes nothing");
    let files = || common::files_under(&d.path().join("restored")).len();
    assert!(files() > 0);
    let r = sweep(&v, later);
    assert_eq!(r.restorations_expired.len(), 1);
    assert!(r.restorations_expired[0].bytes > 0);
    assert!(v.restorations(None).unwrap().is_empty());
    assert!(restored_in_store(&v, "acme", None).is_empty());
    assert_eq!(files(), 0, "the restoration's file is gone");
    let kinds: Vec<String> = v.ledger(1, 100_000).unwrap().into_iter().map(|e| e.kind).collect();
    assert!(kinds.iter().any(|k| k == "archive.restore_expired"));
}

#[test]
fn restore_into_the_store_needs_a_reason_a_finite_window_and_matching_records() {
    let d = tempfile::tempdir().unwrap();
    let v = vault_with_data(d.path(), &policy("local", ""));
    sweep(&v, now());
    let f = ArchiveFilter {
        tenant: Some("acme".into()),
        ..Default::default()
    };
    let e = v
        .archive_restore_into(&f, None, "test", " ", now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("reason"), "{e}");
    let e = v
        .archive_restore_into(&f, Some(lethe_core::duration::Window::Forever), "test", "x", now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("finite"), "{e}");
    let none = ArchiveFilter {
        tenant: Some("acme".into()),
        since_us: Some(now() + DAY),
        ..Default::default()
    };
    let e = v
        .archive_restore_into(&none, None, "test", "x", now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no archived records of tenant acme"), "{e}");
    assert!(v.restorations(None).unwrap().is_empty());
    assert!(common::files_under(&d.path().join("restored")).is_empty());
}

#[test]
fn an_unreachable_target_deletes_nothing_of_its_policy_and_other_policies_still_run() {
    let d = tempfile::tempdir().unwrap();
    // Port 1 on loopback: connection refused.
    let dead = "[archive.targets.remote]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:1\"\npath_style = true\nallow_http = true\nretries = 0\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n";
    let v = vault_with_data(d.path(), &policy("remote", dead));
    let before = all_records(&v);
    let want = expiring_audit(&before);

    let r = sweep(&v, now());
    assert_eq!(r.status, "partial");
    assert_eq!(r.failing.len(), 1);
    assert_eq!(r.failing[0].rule, "audit-archive");
    assert_eq!(r.failing[0].target, "remote");
    assert!(!r.failing[0].error.contains("secret"), "{}", r.failing[0].error);
    assert!(r.deleted > 0, "the delete policy still ran");
    let after = all_records(&v);
    assert!(
        want.keys().all(|id| after.contains_key(id)),
        "no audit record was deleted"
    );
    assert!(after.values().all(|r| r["stream"] == "audit:1"
        || lethe_core::record::parse_ts(r["ts"].as_str().unwrap()).unwrap() >= now() - 10 * DAY));
    verify_ok(&v);

    // The target comes back (here: the same name, now a reachable directory): the next run archives.
    drop(v);
    let back = "[archive.targets.remote]\nkind = \"local\"\npath = \"remote\"\n";
    let v = open(d.path(), cfg(&policy("remote", back)));
    let r = sweep(&v, now());
    assert_eq!(r.status, "success");
    assert_eq!(r.archived.unwrap().records, want.len() as u64);
    assert_eq!(restored(&v).len(), want.len());
    archive_ok(&v);
    verify_ok(&v);
}

#[test]
fn an_object_corrupted_before_read_back_deletes_nothing_and_the_next_run_archives() {
    let d = tempfile::tempdir().unwrap();
    let v = vault_with_data(d.path(), &policy("local", ""));
    let want = expiring_audit(&all_records(&v));
    // SAFETY: nextest runs each test in its own process; nothing else reads the environment here.
    unsafe { std::env::set_var("LETHE_TEST_ARCHIVE_FAULT", "corrupt") };
    let r = sweep(&v, now());
    unsafe { std::env::remove_var("LETHE_TEST_ARCHIVE_FAULT") };
    assert_eq!(r.status, "partial");
    assert!(r.failing[0].error.contains("read back"), "{}", r.failing[0].error);
    let after = all_records(&v);
    assert!(
        want.keys().all(|id| after.contains_key(id)),
        "nothing archived was deleted"
    );
    assert!(v
        .ledger(1, 100_000)
        .unwrap()
        .iter()
        .all(|e| e.kind != "archive.written"));
    verify_ok(&v);

    let r = sweep(&v, now());
    assert_eq!(r.status, "success");
    assert_eq!(restored(&v).len(), want.len());
    archive_ok(&v);
}

#[test]
fn the_archive_clock_deletes_expired_objects_with_a_receipt_and_holds_keep_theirs() {
    let d = tempfile::tempdir().unwrap();
    let v = vault_with_data(d.path(), &policy("local", ""));
    let first = sweep(&v, now()).archived.unwrap();
    let hold = v
        .add_hold(
            &HoldRequest {
                tenant: TenantId::new("acme").unwrap(),
                subject: None,
                scope: None,
                since_us: None,
                until_us: None,
                reason: "litigation".into(),
                expires_us: None,
                actor: "legal".into(),
            },
            now(),
        )
        .unwrap();
    let later = now() + 45 * DAY; // past every archived record's 30-day archive window
    let acme = |v: &Vault| {
        v.archive_ls(&ArchiveFilter {
            tenant: Some("acme".into()),
            ..Default::default()
        })
        .unwrap()
        .len() as u64
    };
    let acme_objects = acme(&v);
    assert!(acme_objects > 0);

    let plan = v.sweep(later, None, true, &|| later, &|_, _| {}).unwrap();
    let x = plan.archive_expiry.unwrap();
    assert_eq!(
        x.objects + x.held,
        first.objects,
        "the dry run lists every archived object"
    );
    assert_eq!(x.held, acme_objects, "acme's objects are held");
    assert_eq!(
        v.archive_ls(&ArchiveFilter::default()).unwrap().len() as u64,
        first.objects,
        "dry run deletes nothing"
    );

    let r = sweep(&v, later);
    let x = r.archive_expiry.unwrap();
    assert_eq!(x.objects, first.objects - acme_objects);
    let receipt = v.receipt(x.receipt.unwrap()).unwrap().unwrap();
    assert_eq!(receipt.kind, "receipt.archive_expiry");
    let body: Value = serde_json::from_str(&receipt.body).unwrap();
    assert_eq!(body["objects"], x.objects);
    assert_eq!(body["verified"], true);
    assert_eq!(
        v.archive_ls(&ArchiveFilter::default()).unwrap().len() as u64,
        acme_objects
    );
    assert_eq!(objects(&d.path().join("archive")).len() as u64, acme_objects);

    v.release_hold(hold.hold.id, "case closed", "legal", later).unwrap();
    let r = sweep(&v, later);
    assert_eq!(r.archive_expiry.unwrap().objects, acme_objects);
    assert!(v.archive_ls(&ArchiveFilter::default()).unwrap().is_empty());
    assert!(objects(&d.path().join("archive")).is_empty());
    let c = archive_ok(&v);
    assert_eq!(c.objects_checked, 0);
}

#[test]
fn archive_verify_names_altered_missing_and_unrecorded_objects() {
    let d = tempfile::tempdir().unwrap();
    let v = vault_with_data(d.path(), &policy("local", ""));
    sweep(&v, now());
    archive_ok(&v);
    let objs = objects(&d.path().join("archive"));
    assert!(objs.len() >= 3);
    // Altered: one byte flipped.
    let mut b = std::fs::read(&objs[0]).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x40;
    std::fs::write(&objs[0], b).unwrap();
    // Missing: deleted outside Lethe.
    std::fs::remove_file(&objs[1]).unwrap();
    // Unrecorded: an object no manifest or ledger entry knows.
    let stray = objs[2].with_file_name("000000999990-000000999999.ndjson.zst");
    std::fs::copy(&objs[2], &stray).unwrap();

    let c = v.archive_verify(&ArchiveFilter::default(), &|_, _| {}).unwrap();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().to_string();
    let find = |p: &Path| {
        c.problems
            .iter()
            .find(|x| x.object.ends_with(&name(p)))
            .unwrap_or_else(|| panic!("no problem reported for {}: {:#?}", name(p), c.problems))
            .problem
            .clone()
    };
    assert!(find(&objs[0]).starts_with("altered"), "{}", find(&objs[0]));
    assert!(find(&objs[1]).starts_with("object missing"), "{}", find(&objs[1]));
    assert!(
        find(&stray).starts_with("object without a manifest"),
        "{}",
        find(&stray)
    );
    assert_eq!(c.problems.len(), 3, "{:#?}", c.problems);
}

/// The S3 test server's endpoint; the test command starts it.
fn s3_endpoint() -> String {
    std::env::var("LETHE_TEST_S3_ENDPOINT").expect(
        "LETHE_TEST_S3_ENDPOINT is not set: run the tests with ./scripts/test.sh, which starts an S3 server (moto)",
    )
}

/// Creates a bucket on the S3 test server (moto accepts unsigned requests).
fn create_bucket(endpoint: &str, bucket: &str) {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("S3 test server at {endpoint}: {e}"));
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "creating bucket {bucket}: {resp}");
}

fn s3_target(bucket: &str, extra: &str) -> String {
    let endpoint = s3_endpoint();
    create_bucket(&endpoint, bucket);
    format!(
        "[archive]\n{extra}\n[archive.targets.s3]\nkind = \"s3\"\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nprefix = \"lethe/archive\"\npath_style = true\nallow_http = true\naccess_key_id = \"test\"\nsecret_access_key = \"test-secret\"\n"
    )
}

#[test]
fn archive_then_delete_to_an_s3_server_round_trips_in_single_and_multipart_uploads() {
    for (bucket, extra) in [("lethe-single", ""), ("lethe-multipart", "multipart_above_kb = 4")] {
        let d = tempfile::tempdir().unwrap();
        let v = vault_with_data(d.path(), &policy("s3", &s3_target(bucket, extra)));
        let want = expiring_audit(&all_records(&v));
        let r = sweep(&v, now());
        assert_eq!(r.status, "success", "{bucket}: {:?}", r.failing);
        let a = r.archived.unwrap();
        assert_eq!(a.records, want.len() as u64, "{bucket}");
        assert!(!d.path().join("archive").exists() || objects(&d.path().join("archive")).is_empty());
        let listed = v.archive_ls(&ArchiveFilter::default()).unwrap();
        assert_eq!(listed.len() as u64, a.objects, "{bucket}");
        assert!(listed.iter().all(|l| l.target == "s3"));
        let back = restored(&v);
        assert_eq!(back.len(), want.len(), "{bucket}");
        for (id, rec) in &want {
            assert_eq!(back.get(id), Some(rec), "{bucket}: record {id}");
        }
        let c = archive_ok(&v);
        assert_eq!(c.records_checked, want.len() as u64);
        verify_ok(&v);
        // Restore into the store reads from S3 too.
        let f = ArchiveFilter {
            tenant: Some("acme".into()),
            ..Default::default()
        };
        let set = v.archive_restore_into(&f, None, "test", "INC-8", now()).unwrap();
        let acme: BTreeMap<&String, &Value> = want.iter().filter(|(_, r)| r["tenant"] == "acme").collect();
        assert_eq!(set.report.records, acme.len() as u64, "{bucket}");
        let inside = restored_in_store(&v, "acme", None);
        assert_eq!(inside.len(), acme.len(), "{bucket}");
        assert!(acme.keys().all(|id| inside.contains_key(*id)));
        // The archive clock works on S3 too.
        let later = now() + 45 * DAY;
        let x = sweep(&v, later).archive_expiry.unwrap();
        assert_eq!(x.objects, a.objects, "{bucket}");
        assert!(v.archive_ls(&ArchiveFilter::default()).unwrap().is_empty());
    }
}
