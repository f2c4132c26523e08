//! Integrity end to end: legitimate retention leaves a store that verifies
//! with zero gaps, and every kind of tampering done directly on the SQLite
//! files is caught by `verify` at the right place.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_deleted_key_entry_caught, cfg, key_gaps, located, now, Located, TAMPER_POLICY as POLICY};
use lethe_vault::synth::{Synth, SynthReader};
use lethe_vault::verify::VerifyReport;
use lethe_vault::Vault;
use rusqlite::Connection;

fn open(dir: &Path) -> Vault {
    common::open(dir, cfg(POLICY))
}

/// 6,000 synthetic records over 45 days, swept at `NOW`.
fn swept(dir: &Path) -> Vault {
    let v = open(dir);
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(3, 6000, now(), 45)));
    v.ingest(input, &now, &|_, _| {}).unwrap();
    let r = v.sweep(now(), None, false, &now, &|_, _| {}).unwrap();
    assert!(r.deleted > 0 && r.anonymized > 0, "{r:?}");
    v
}

fn verify(v: &Vault) -> VerifyReport {
    v.verify(None, None, now(), &|_| {}).unwrap()
}

#[test]
fn after_legitimate_delete_and_anonymize_verify_passes_with_zero_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let v = swept(dir.path());
    let r = verify(&v);
    assert!(r.ok(), "{:#?}", r.unexplained_gaps);
    assert!(
        r.records_checked > 0 && r.removed_explained > 0 && r.anonymized > 0,
        "{r:?}"
    );
    assert!(r.checkpoints_checked > 0, "{r:?}");
    // stats show the tombstones verify walked
    let st = v.stats(None).unwrap();
    assert_eq!(st.rows.iter().map(|x| x.tombstones).sum::<u64>(), r.tombstones);
    // a second sweep later, more ingest, another sweep: still clean
    let later = now() + 10 * 86_400_000_000;
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(4, 500, later, 5)));
    v.ingest(input, &|| later, &|_, _| {}).unwrap();
    v.sweep(later, None, false, &|| later, &|_, _| {}).unwrap();
    let r2 = verify(&v);
    assert!(r2.ok(), "{:#?}", r2.unexplained_gaps);
    assert_eq!(r2.records_checked + r2.removed_explained, 6500);
}

/// A copy of a swept store to tamper with.
struct Case {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn template() -> &'static Path {
    static T: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    &T.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("store");
        drop(swept(&d));
        (t, d)
    })
    .1
}

fn case() -> Case {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    copy_dir(template(), &dir);
    Case { _tmp: tmp, dir }
}

/// A partition within its (shared) file: rows are keyed `base + seq`.
struct Part {
    file: PathBuf,
    id: i64,
}

impl Part {
    /// The row key of sequence number `seq` of this partition.
    fn key(&self, seq: u64) -> i64 {
        (self.id << lethe_store::sqlite::SEQ_BITS) + seq as i64
    }
}

/// A stored run of at least 16 live records: (partition, tenant, stream, first seq, last seq).
fn live_segment(dir: &Path, stream: &str) -> (Part, String, String, u64, u64) {
    let c = Connection::open(dir.join("catalog.db")).unwrap();
    let rows: Vec<(String, i64, String, String, i64, i64)> = c
        .prepare(
            "SELECT p.path, p.id, s.tenant, s.stream, s.first_seq, s.last_seq FROM segments s
             JOIN partitions p ON p.id = s.partition_id WHERE s.stream = ?1 ORDER BY p.start_us DESC",
        )
        .unwrap()
        .query_map([stream], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for (path, id, t, s, a, b) in rows {
        let part = Part {
            file: dir.join(&path),
            id,
        };
        let live: i64 = Connection::open(&part.file)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM records WHERE seq BETWEEN ?1 AND ?2 AND state = 0",
                [part.key(a as u64), part.key(b as u64)],
                |r| r.get(0),
            )
            .unwrap();
        if live == b - a + 1 && b - a >= 15 {
            return (part, t, s, a as u64, b as u64);
        }
    }
    panic!("no live segment of 16 records in {stream}");
}

fn gaps(dir: &Path) -> Vec<Located> {
    located(verify(&open(dir)))
}

/// Asserts verify reports exactly the expected locations, each with a
/// problem naming `what`.
fn assert_caught(dir: &Path, expected: &[(&str, &str, u64)], what: &str) {
    let got = gaps(dir);
    let mut locations: Vec<(&str, &str, u64)> = got.iter().map(|(t, s, q, _)| (t.as_str(), s.as_str(), *q)).collect();
    locations.sort();
    locations.dedup();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(locations, want, "{got:#?}");
    for (.., p) in &got {
        assert!(p.contains(what), "`{p}` should mention `{what}`");
    }
}

fn part_conn(p: &Part) -> Connection {
    Connection::open(&p.file).unwrap()
}

#[test]
fn tamper_edit_one_byte_of_a_body_is_caught_at_that_record() {
    let c = case();
    let (p, t, s, a, _) = live_segment(&c.dir, "requests:1");
    let db = part_conn(&p);
    let mut body: Vec<u8> = db
        .query_row("SELECT body FROM records WHERE seq=?1", [p.key(a + 5)], |r| r.get(0))
        .unwrap();
    let n = body.len();
    body[n - 20] ^= 1;
    db.execute(
        "UPDATE records SET body=?2 WHERE seq=?1",
        rusqlite::params![p.key(a + 5), body],
    )
    .unwrap();
    assert_caught(&c.dir, &[(&t, &s, a + 5)], "MAC");
}

#[test]
fn tamper_edit_a_plain_field_is_caught_at_that_record() {
    let c = case();
    let (p, t, s, a, _) = live_segment(&c.dir, "audit:1");
    part_conn(&p)
        .execute(
            "UPDATE records SET plain=replace(plain, '\"action\":\"', '\"action\":\"x') WHERE seq=?1",
            [p.key(a + 3)],
        )
        .unwrap();
    assert_caught(&c.dir, &[(&t, &s, a + 3)], "MAC");
}

#[test]
fn tamper_delete_one_record_row_is_caught_as_missing() {
    let c = case();
    let (p, t, s, a, _) = live_segment(&c.dir, "audit:1");
    part_conn(&p)
        .execute("DELETE FROM records WHERE seq=?1", [p.key(a + 7)])
        .unwrap();
    assert_caught(&c.dir, &[(&t, &s, a + 7)], "missing");
}

#[test]
fn tamper_delete_a_range_without_a_receipt_is_caught_at_its_start() {
    let c = case();
    let (p, t, s, a, _) = live_segment(&c.dir, "requests:1");
    part_conn(&p)
        .execute(
            "DELETE FROM records WHERE seq BETWEEN ?1 AND ?2",
            [p.key(a + 2), p.key(a + 11)],
        )
        .unwrap();
    let got = gaps(&c.dir);
    assert_caught(&c.dir, &[(&t, &s, a + 2)], "missing");
    assert!(got[0].3.contains(&format!("{}–{}", a + 2, a + 11)), "{got:?}");
}

#[test]
fn tamper_insert_a_forged_record_is_caught() {
    let c = case();
    let (p, t, s, a, _) = live_segment(&c.dir, "audit:1");
    let db = part_conn(&p);
    // a copy of a real row, new id, a sequence number no append gave out
    db.execute(
        "INSERT INTO records(seq,part,id,ts,received,scope,class,pseudonym,key_id,plain,body,state,prev,mac,redacted)
         SELECT ?2, part, randomblob(16), ts, received, scope, class, pseudonym, key_id, plain, body, state, prev, mac, redacted
         FROM records WHERE seq=?1",
        [p.key(a), p.key(9_999_999)],
    )
    .unwrap();
    assert_caught(&c.dir, &[(&t, &s, 9_999_999)], "not part of the chain");
}

#[test]
fn tamper_swap_two_records_is_caught_at_both() {
    let c = case();
    let (p, t, s, a, _) = live_segment(&c.dir, "requests:1");
    let db = part_conn(&p);
    db.execute_batch(&format!(
        "UPDATE records SET seq = -1 WHERE seq = {x};
         UPDATE records SET seq = {x} WHERE seq = {y};
         UPDATE records SET seq = {y} WHERE seq = -1;",
        x = p.key(a + 4),
        y = p.key(a + 9)
    ))
    .unwrap();
    assert_caught(&c.dir, &[(&t, &s, a + 4), (&t, &s, a + 9)], "MAC");
}

#[test]
fn tamper_truncate_the_newest_records_is_caught() {
    let c = case();
    let cat = Connection::open(c.dir.join("catalog.db")).unwrap();
    let (t, s, head): (String, String, i64) = cat
        .query_row(
            "SELECT tenant, stream, head_seq FROM chains WHERE stream='requests:1' ORDER BY head_seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let (path, id): (String, i64) = cat
        .query_row(
            "SELECT p.path, p.id FROM segments s JOIN partitions p ON p.id = s.partition_id
             WHERE s.tenant=?1 AND s.stream=?2 AND s.last_seq=?3",
            rusqlite::params![t, s, head],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let p = Part {
        file: c.dir.join(path),
        id,
    };
    let db = part_conn(&p);
    let new_head: Vec<u8> = db
        .query_row("SELECT prev FROM records WHERE seq=?1", [p.key(head as u64 - 2)], |r| {
            r.get(0)
        })
        .unwrap();
    db.execute(
        "DELETE FROM records WHERE seq > ?1 AND seq <= ?2",
        [p.key(head as u64 - 3), p.key(lethe_store::sqlite::MAX_SEQ)],
    )
    .unwrap();
    // and hide it in the catalog too (chain hashes are public computations):
    // only the signed checkpoint still tells
    cat.execute(
        "UPDATE chains SET head_seq=?3, head_hash=?4 WHERE tenant=?1 AND stream=?2",
        rusqlite::params![t, s, head - 3, new_head],
    )
    .unwrap();
    cat.execute(
        "UPDATE segments SET last_seq=?3 WHERE tenant=?1 AND stream=?2 AND last_seq=?4",
        rusqlite::params![t, s, head - 3, head],
    )
    .unwrap();
    assert_caught(&c.dir, &[(&t, &s, head as u64 - 2)], "truncated");
}

/// The ledger row of the first entry of `kind`, as (seq, body).
fn ledger_entry(dir: &Path, kind: &str) -> (u64, String) {
    Connection::open(dir.join("catalog.db"))
        .unwrap()
        .query_row(
            "SELECT seq, body FROM ledger WHERE kind=?1 ORDER BY seq LIMIT 1",
            [kind],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
        )
        .unwrap()
}

/// Rewrites a ledger entry's body directly in the catalog.
fn set_ledger_body(dir: &Path, seq: u64, body: &str) {
    Connection::open(dir.join("catalog.db"))
        .unwrap()
        .execute("UPDATE ledger SET body=?2 WHERE seq=?1", rusqlite::params![seq, body])
        .unwrap();
}

/// Asserts verify reports ledger entry `seq` with a problem naming `what`.
fn assert_ledger_gap(dir: &Path, seq: u64, what: &str) {
    let got = gaps(dir);
    assert!(
        got.iter()
            .any(|g| g.1 == "(ledger)" && g.2 == seq && g.3.contains(what)),
        "{got:#?}"
    );
}

#[test]
fn tamper_replace_a_checkpoint_is_caught() {
    let c = case();
    let (seq, body) = ledger_entry(&c.dir, "checkpoint");
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["checkpoint"]["root"] = serde_json::Value::String("ab".repeat(32));
    set_ledger_body(&c.dir, seq, &v.to_string());
    assert_ledger_gap(&c.dir, seq, "edited");
}

#[test]
fn tamper_edit_a_ledger_entry_is_caught_at_that_entry() {
    let c = case();
    let (seq, body) = ledger_entry(&c.dir, "receipt.sweep");
    set_ledger_body(&c.dir, seq, &body.replace("\"verified\":true", "\"verified\":false"));
    assert_ledger_gap(&c.dir, seq, "edited");
}

#[test]
fn tamper_delete_a_ledger_entry_is_caught_at_that_entry() {
    let c = case();
    let (seq, body) = ledger_entry(&c.dir, "key.data_created");
    Connection::open(c.dir.join("catalog.db"))
        .unwrap()
        .execute("DELETE FROM ledger WHERE seq=?1", [seq])
        .unwrap();
    assert_deleted_key_entry_caught(&gaps(&c.dir), seq, &body);
}

/// Turns a live record into a tombstone the way a sweep would (the digests
/// are public computations): its MAC still checks, so only the missing
/// authorisation can give it away.
fn tombstone(part: &Part, seq: u64) {
    let db = part_conn(part);
    let row = db
        .query_row(
            &format!("SELECT {} FROM records WHERE seq=?1", lethe_store::sqlite::ROW_COLUMNS),
            [part.key(seq)],
            lethe_store::sqlite::raw_row,
        )
        .unwrap();
    let d = row.digests().unwrap();
    db.execute(
        "UPDATE records SET plain='', body=NULL, pseudonym=NULL, key_id=NULL, state=2, redacted=?2 WHERE seq=?1",
        rusqlite::params![part.key(seq), [d.plain, d.personal].concat()],
    )
    .unwrap();
}

#[test]
fn tamper_a_tombstone_without_a_receipt_is_caught() {
    let c = case();
    let (p, t, s, a, _) = live_segment(&c.dir, "audit:1");
    tombstone(&p, a + 1);
    assert_caught(&c.dir, &[(&t, &s, a + 1)], "without a receipt");
}

#[test]
fn tamper_forge_a_receipt_without_the_key_is_caught() {
    let c = case();
    let (p, t, s, a, _) = live_segment(&c.dir, "audit:1");
    tombstone(&p, a + 2);
    // a forged intent and receipt claiming it, with made-up MACs
    let cat = Connection::open(c.dir.join("catalog.db")).unwrap();
    let (head, hash, version): (i64, Vec<u8>, i64) = cat
        .query_row(
            "SELECT seq, hash, (SELECT max(id) FROM policy_versions) FROM ledger ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let intent = serde_json::json!({"policy_version": version, "now_us": now() + 400 * 86_400_000_000i64, "tenant": null,
        "chains": [{"tenant": t, "stream": s, "dropped": [], "rows": [{"partition_start_us": 0, "action": "delete", "seqs": [[a + 2, a + 2]]}]}]});
    let receipt = serde_json::json!({"intent": head + 1, "verified": true});
    let mut prev = hash;
    for (i, (kind, body)) in [("sweep.intent", intent), ("receipt.sweep", receipt)]
        .iter()
        .enumerate()
    {
        let seq = head + 1 + i as i64;
        let h = lethe_core::ledger::entry_hash(
            seq as u64,
            now(),
            "cli:mallory",
            kind,
            None,
            &body.to_string(),
            &prev.clone().try_into().unwrap(),
        );
        cat.execute(
            "INSERT INTO ledger(seq,ts_us,actor,kind,tenant,body,prev,hash,mac) VALUES(?1,?2,'cli:mallory',?3,NULL,?4,?5,?6,zeroblob(32))",
            rusqlite::params![seq, now(), kind, body.to_string(), prev, &h[..]],
        )
        .unwrap();
        prev = h.to_vec();
    }
    let got = gaps(&c.dir);
    assert!(
        got.iter()
            .any(|g| g.1 == "(ledger)" && g.2 == head as u64 + 1 && g.3.contains("MAC")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|g| g.1 == "(ledger)" && g.2 == head as u64 + 2 && g.3.contains("MAC")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|g| g.0 == t && g.1 == s && g.2 == a + 2 && g.3.contains("without a receipt")),
        "{got:#?}"
    );
}

/// Someone with the ledger key (a buggy sweep, a rogue operator) records a
/// proper-looking intent (under the policies of `config`, evaluated at
/// `at`) and receipt deleting one record, and tombstones it.
fn forge_delete(dir: &Path, config: &str, at: i64, part: &Part, tenant: &str, stream: &str, seq: u64) {
    forge_delete_written(dir, config, at, at.max(now()), part, tenant, stream, seq)
}

/// [`forge_delete`] with the intent written at `written` (µs).
#[allow(clippy::too_many_arguments)]
fn forge_delete_written(
    dir: &Path,
    config: &str,
    at: i64,
    written: i64,
    part: &Part,
    tenant: &str,
    stream: &str,
    seq: u64,
) {
    {
        let v = common::open(dir, cfg(config));
        let version = v.note_policy("cli:mallory", now()).unwrap();
        let intent = v
            .record(
                written,
                "cli:mallory",
                "sweep.intent",
                None,
                &serde_json::json!({"policy_version": version, "now_us": at, "tenant": null,
                    "chains": [{"tenant": tenant, "stream": stream, "dropped": [],
                                "rows": [{"partition_start_us": 0, "action": "delete", "seqs": [[seq, seq]]}]}]}),
            )
            .unwrap();
        v.record(
            written,
            "cli:mallory",
            "receipt.sweep",
            None,
            &serde_json::json!({"intent": intent.seq}),
        )
        .unwrap();
    }
    tombstone(part, seq);
}

#[test]
fn tamper_a_removal_evaluated_at_a_later_time_than_it_was_written_is_caught() {
    let c = case();
    let (p, t, s, a, _) = live_segment(&c.dir, "audit:1");
    // `cleanup --now <years ahead>`: every record looks expired then.
    forge_delete_written(
        &c.dir,
        POLICY,
        now() + 4 * 365 * 86_400_000_000,
        now(),
        &p,
        &t,
        &s,
        a + 1,
    );
    assert_caught(&c.dir, &[(&t, &s, a + 1)], "later than it was written");
}

#[test]
fn tamper_a_receipt_claiming_more_removals_than_its_intent_made_is_caught() {
    let c = case();
    let v = open(&c.dir);
    // Two cleanups that both claim the same removals (what two runs at
    // once used to do): a second intent listing what the first removed,
    // and its receipt counting it again.
    let (_, intent) = ledger_entry(&c.dir, "sweep.intent");
    let again = v
        .record(
            now(),
            "cli:mallory",
            "sweep.intent",
            None,
            &serde_json::from_str(&intent).unwrap(),
        )
        .unwrap();
    let receipt = v
        .record(
            now(),
            "cli:mallory",
            "receipt.sweep",
            None,
            &serde_json::json!({"intent": again.seq, "deleted": 10_098, "anonymized": 0, "verified": true}),
        )
        .unwrap();
    drop(v);
    let got = gaps(&c.dir);
    assert!(
        got.iter()
            .any(|g| g.1 == "(ledger)" && g.2 == receipt.seq && g.3.contains("claims 10098 records removed")),
        "{got:#?}"
    );
    // A second receipt for one intent is caught too.
    let v = open(&c.dir);
    let forged = v
        .record(
            now(),
            "cli:mallory",
            "receipt.sweep",
            None,
            &serde_json::json!({"intent": again.seq, "deleted": 0, "anonymized": 0}),
        )
        .unwrap();
    drop(v);
    let got = gaps(&c.dir);
    assert!(
        got.iter().any(|g| g.2 == forged.seq && g.3.contains("second receipt")),
        "{got:#?}"
    );
}

#[test]
fn tamper_a_receipt_claiming_records_its_policy_keeps_is_caught() {
    let c = case();
    let (p, t, s, a, _) = live_segment(&c.dir, "audit:1");
    forge_delete(&c.dir, POLICY, now(), &p, &t, &s, a + 3);
    assert_caught(&c.dir, &[(&t, &s, a + 3)], "keeps records from");
}

#[test]
fn records_next_to_a_dropped_range_still_have_inclusion_proofs_that_check() {
    let c = case();
    let v = open(&c.dir);
    let key = v.public_key();
    // the oldest surviving audit record of each tenant sits right after a
    // dropped range (the hole's edge heads are what make its proof possible)
    let tenants = ["acme", "globex", "initech", "umbrella"];
    let mut proven = 0;
    for t in tenants {
        let q = lethe_vault::logs::LogQuery {
            tenant: lethe_core::TenantId::new(t).unwrap(),
            stream: Some("audit:1".parse().unwrap()),
            scope: None,
            subject: None,
            since_us: None,
            until_us: None,
            limit: Some(1),
            ascending: true,
            restored: false,
        };
        let mut id = None;
        v.logs(&q, now(), &mut |r| {
            id = r["id"].as_str().map(String::from);
            false
        })
        .unwrap();
        let Some(id) = id else { continue };
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        let p = v.inclusion_proof(uuid.as_bytes(), None).unwrap();
        let r = lethe_vault::proof::check(&p, Some(&key)).unwrap();
        assert!(r.valid, "{r:?}");
        let lethe_vault::proof::Proof::Inclusion { seq, .. } = p else {
            unreachable!()
        };
        assert!(seq > 1, "records before it were dropped");
        proven += 1;
    }
    assert!(proven >= 2);
}

#[test]
fn ledger_retention_trims_behind_a_signed_anchor_and_everything_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let v = common::open(d, cfg(&format!("{POLICY}\n[ledger]\nretention = \"1d\"\n")));
    let day = 86_400_000_000i64;
    let t0 = now();
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(5, 3000, t0, 45)));
    v.ingest(input, &|| t0, &|_, _| {}).unwrap();
    // a first sweep the same day trims nothing (nothing is a day old yet)
    let first = v.sweep(t0, None, false, &|| t0, &|_, _| {}).unwrap();
    assert_eq!((first.ledger_trimmed, first.warnings.len()), (0, 0));
    // two days later: ingest more, sweep again; the first day's entries go
    let t2 = t0 + 2 * day;
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(6, 1000, t2, 45)));
    v.ingest(input, &|| t2, &|_, _| {}).unwrap();
    let second = v.sweep(t2, None, false, &|| t2, &|_, _| {}).unwrap();
    assert!(second.ledger_trimmed > 5, "{second:?}");
    assert!(second.warnings.is_empty(), "{:?}", second.warnings);
    let kept = v.ledger(1, 10_000).unwrap();
    assert!(
        kept[0].seq > 1 && kept.iter().all(|e| e.ts_us >= t2 - day),
        "only young entries stay"
    );
    assert_eq!(kept.last().unwrap().kind, "ledger.anchor");
    // the rest verifies from the anchor; every removal is still explained
    assert_eq!(v.verify_ledger().unwrap().problem, None);
    let r = verify(&v);
    assert!(r.ok(), "{:#?}", r.unexplained_gaps);
    assert_eq!(r.records_checked + r.removed_explained, 4000);
    assert!(r.removed_explained > 0 && r.checkpoints_checked > 0, "{r:?}");
    // and again: the new anchor carries the old one's evidence
    let t4 = t2 + 2 * day;
    let third = v.sweep(t4, None, false, &|| t4, &|_, _| {}).unwrap();
    assert!(third.ledger_trimmed > 0 && third.warnings.is_empty(), "{third:?}");
    let r = verify(&v);
    assert!(r.ok(), "{:#?}", r.unexplained_gaps);
    assert_eq!(r.records_checked + r.removed_explained, 4000);

    // tampering with the anchor is caught
    drop(v);
    let cat = Connection::open(d.join("catalog.db")).unwrap();
    let (seq, body): (i64, String) = cat
        .query_row(
            "SELECT seq, body FROM ledger WHERE kind='ledger.anchor' ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    set_ledger_body(d, seq as u64, &body.replacen("\"through\":", "\"through\":1", 1));
    let got = gaps(d);
    assert!(got.iter().any(|g| g.1 == "(ledger)" && g.2 == seq as u64), "{got:#?}");
}

#[test]
fn verify_while_ingest_runs_reports_no_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let v = common::open(dir.path(), cfg(&format!("{POLICY}\n[store]\ningest_batch = 300\n")));
    let input = std::io::BufReader::new(SynthReader::new(Synth::new(7, 1000, now(), 30)));
    v.ingest(input, &now, &|_, _| {}).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let input = std::io::BufReader::new(SynthReader::new(Synth::new(8, 6000, now(), 30)));
            v.ingest(input, &now, &|_, _| {}).unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut rounds = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || rounds == 0 {
            let r = verify(&v);
            assert!(r.ok(), "round {rounds}: {:#?}", r.unexplained_gaps);
            rounds += 1;
        }
        assert!(rounds >= 1);
    });
    let r = verify(&v);
    assert!(r.ok() && r.unsealed_recent == 0, "{r:?}");
    assert_eq!(r.records_checked, 7000);
}

#[test]
fn tamper_a_delete_under_an_archive_policy_without_an_archive_run_is_caught() {
    let c = case();
    let (p, t, s, a, _) = live_segment(&c.dir, "audit:1");
    // The policy in force archives audit events first; the forged intent
    // deletes one without an archive run.
    let archive = "[[retention.policy]]\nstream = \"audit\"\nwindow = \"1h\"\naction = \"archive_then_delete\"\narchive_window = \"forever\"\n";
    forge_delete(&c.dir, archive, now() + 60 * 86_400_000_000, &p, &t, &s, a + 3);
    assert_caught(&c.dir, &[(&t, &s, a + 3)], "names no archive run");
}

/// Two data keys that live records of `stream` use, with those records:
/// `(key id, tenant, stream, seqs under it)`, most used first.
fn used_keys(dir: &Path, stream: &str) -> Vec<(i64, String, String, Vec<u64>)> {
    let (part, t, s, a, b) = live_segment(dir, stream);
    let mut by: std::collections::BTreeMap<i64, Vec<u64>> = Default::default();
    let c = part_conn(&part);
    let mut st = c
        .prepare("SELECT key_id, seq - ?3 FROM records WHERE seq BETWEEN ?1 AND ?2 AND key_id IS NOT NULL")
        .unwrap();
    for row in st
        .query_map([part.key(a), part.key(b), part.key(0)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .unwrap()
    {
        let (k, seq) = row.unwrap();
        by.entry(k).or_default().push(seq);
    }
    let mut out: Vec<(i64, String, String, Vec<u64>)> = by
        .into_iter()
        .map(|(k, seqs)| (k, t.clone(), s.clone(), seqs))
        .collect();
    out.sort_by_key(|(_, _, _, seqs)| std::cmp::Reverse(seqs.len()));
    assert!(out.len() >= 2, "two keys in one segment");
    out
}

#[test]
fn tamper_delete_a_data_key_row_is_caught_at_the_key_and_every_record_under_it() {
    let c = case();
    let keys = used_keys(&c.dir, "audit:1");
    let (id, t, s, seqs) = &keys[0];
    Connection::open(c.dir.join("catalog.db"))
        .unwrap()
        .execute("DELETE FROM data_keys WHERE id=?1", [id])
        .unwrap();
    let got = gaps(&c.dir);
    assert!(
        got.iter()
            .any(|g| g.0 == *t && g.1 == "(keys)" && g.2 == *id as u64 && g.3.contains("missing from the key table")),
        "{got:#?}"
    );
    for seq in seqs {
        assert!(
            got.iter()
                .any(|g| g.0 == *t && g.1 == *s && g.2 == *seq && g.3.contains("missing")),
            "record {seq}: {got:#?}"
        );
    }
}

#[test]
fn tamper_destroy_a_data_key_without_a_purge_is_caught_as_an_unrecorded_erasure() {
    let c = case();
    let keys = used_keys(&c.dir, "audit:1");
    let (id, ..) = &keys[0];
    Connection::open(c.dir.join("catalog.db"))
        .unwrap()
        .execute("UPDATE data_keys SET wrapped=NULL, destroyed_us=0 WHERE id=?1", [id])
        .unwrap();
    let got = gaps(&c.dir);
    assert!(
        key_gaps(&got, *id)
            .iter()
            .any(|g| g.3.contains("no receipted erasure destroyed it")),
        "{got:#?}"
    );
}

#[test]
fn tamper_flip_a_byte_of_a_wrapped_key_is_caught_as_a_key_that_does_not_open() {
    let c = case();
    let keys = used_keys(&c.dir, "audit:1");
    let (id, ..) = &keys[0];
    Connection::open(c.dir.join("catalog.db"))
        .unwrap()
        .execute(
            "UPDATE data_keys SET wrapped = substr(wrapped, 1, 20) || X'FF' || substr(wrapped, 22) WHERE id=?1",
            [id],
        )
        .unwrap();
    let got = gaps(&c.dir);
    assert!(
        key_gaps(&got, *id)
            .iter()
            .any(|g| g.1 == "(keys)" && g.3.contains("does not open")),
        "{got:#?}"
    );
}

#[test]
fn tamper_swap_two_wrapped_keys_is_caught_at_both() {
    let c = case();
    let keys = used_keys(&c.dir, "audit:1");
    let (a, b) = (keys[0].0, keys[1].0);
    let cat = Connection::open(c.dir.join("catalog.db")).unwrap();
    let wa: Vec<u8> = cat
        .query_row("SELECT wrapped FROM data_keys WHERE id=?1", [a], |r| r.get(0))
        .unwrap();
    let wb: Vec<u8> = cat
        .query_row("SELECT wrapped FROM data_keys WHERE id=?1", [b], |r| r.get(0))
        .unwrap();
    cat.execute("UPDATE data_keys SET wrapped=?2 WHERE id=?1", rusqlite::params![a, wb])
        .unwrap();
    cat.execute("UPDATE data_keys SET wrapped=?2 WHERE id=?1", rusqlite::params![b, wa])
        .unwrap();
    let got = gaps(&c.dir);
    for id in [a, b] {
        assert!(
            key_gaps(&got, id)
                .iter()
                .any(|g| g.1 == "(keys)" && g.3.contains("does not open")),
            "key {id}: {got:#?}"
        );
    }
}

#[test]
fn tamper_a_column_rewritten_with_another_type_is_reported_at_that_record_not_an_error() {
    let c = case();
    let (p, t, s, a, _) = live_segment(&c.dir, "audit:1");
    part_conn(&p)
        .execute(
            "UPDATE records SET mac = CAST(X'FF00FF' AS TEXT), id = 'not an id' WHERE seq=?1",
            [p.key(a + 4)],
        )
        .unwrap();
    let got = gaps(&c.dir);
    assert!(got.iter().any(|g| g.0 == t && g.1 == s && g.2 == a + 4), "{got:#?}");
}
