//! The conformance suite every [`Store`] backend must pass.
//!
//! A backend's test file calls [`conformance!`](crate::conformance) with an
//! expression that opens its store in a directory; each check below becomes
//! one named test.

use std::path::Path;

use lethe_core::crypto::SecretKey;
use lethe_core::policy::{Action, GroupKey};
use lethe_core::{Classification, TenantId};

use crate::{Batch, CaptureDrop, NewRecord, RecordQuery, RetentionTarget, Store, StoreError, StoredKey};

/// The record MAC key the suite seals a tenant's records with.
pub fn mac_key(tenant: &TenantId) -> SecretKey {
    let mut k = [0u8; 32];
    for (i, b) in tenant.as_str().bytes().enumerate() {
        k[i % 32] ^= b;
    }
    SecretKey::from_bytes(k)
}

/// A batch of `records` with the MAC keys of their tenants.
pub fn batch_of(records: &[NewRecord]) -> Batch {
    let mut tenants: Vec<TenantId> = records.iter().map(|r| r.group.tenant.clone()).collect();
    tenants.sort();
    tenants.dedup();
    Batch {
        records: records.to_vec(),
        mac_keys: tenants.into_iter().map(|t| (t.clone(), mac_key(&t))).collect(),
        ..Default::default()
    }
}

/// Appends `records`, storing first the data key of every subject that
/// has none yet (records must be encrypted under live keys).
pub fn append_to(s: &dyn Store, records: &[NewRecord]) -> crate::Result<crate::AppendReport> {
    let mut ids: Vec<(i64, TenantId)> = records
        .iter()
        .filter_map(|r| r.key_id.map(|k| (k, r.group.tenant.clone())))
        .collect();
    ids.sort();
    ids.dedup();
    let have: Vec<i64> = s
        .data_keys(&ids.iter().map(|(k, _)| *k).collect::<Vec<_>>())?
        .into_iter()
        .map(|k| k.id)
        .collect();
    let new_keys = ids
        .into_iter()
        .filter(|(k, _)| !have.contains(k))
        .map(|(k, t)| StoredKey {
            id: k,
            tenant: t,
            key_ref: format!("s:{k}").into_bytes(),
            wrapped: Some(b"wrapped".to_vec()),
        })
        .collect();
    s.append(&Batch {
        new_keys,
        ..batch_of(records)
    })
}

/// Opens a store of the backend under test in a directory.
pub type Open = fn(&Path) -> Box<dyn Store>;

/// Expands to one `#[test]` per conformance check for a backend.
#[macro_export]
macro_rules! conformance {
    ($open:expr) => {
        $crate::conformance!(@tests $open;
            append_then_query_returns_records_newest_first,
            appending_the_same_id_twice_stores_it_once,
            sequence_numbers_are_dense_per_tenant_and_stream,
            query_filters_by_stream_scope_subject_time_and_limit,
            tenants_never_see_each_others_records,
            dry_run_plan_equals_what_apply_then_does_on_random_data,
            a_second_sweep_right_after_does_nothing,
            whole_expired_partitions_return_their_disk_space,
            anonymize_keeps_plain_fields_and_drops_body_and_pseudonym,
            shortening_a_window_applies_to_stored_records_and_lengthening_never_resurrects,
            stats_report_records_ages_and_partitions,
            keys_are_first_writer_wins_and_stable,
            a_batch_under_a_destroyed_key_is_refused_whole,
            capture_drops_are_counted,
            policy_snapshots_are_versioned_by_content,
            the_ledger_appends_in_order_and_reads_back_exactly,
            everything_survives_reopening,
            appended_records_are_sealed_linked_and_under_the_tree_head,
            deleting_rows_keeps_tombstones_whose_headers_still_verify,
            dropping_partitions_keeps_what_the_chain_and_tree_need,
            a_subject_selection_finds_exactly_the_subjects_rows_and_leaves_held_ones,
            removing_a_selection_takes_exactly_those_rows_from_queries_and_counts,
            destroyed_keys_are_gone_for_good_and_no_longer_name_their_subject,
            holds_are_stored_listed_and_released,
            retention_plans_leave_held_records_and_never_drop_their_partition,
            restorations_are_invisible_until_finished_then_queryable_erasable_and_dropped_whole,
            a_restoration_cut_short_is_discarded_and_one_whose_ledger_entry_was_written_is_finished_on_reopen
        );
    };
    (@tests $open:expr; $($name:ident),*) => {$(
        #[test]
        fn $name() {
            let dir = tempfile::tempdir().unwrap();
            $crate::testsuite::$name($open, dir.path());
        }
    )*};
}

const DAY: i64 = 86_400_000_000;
/// 2026-01-01T00:00:00Z.
pub const T0: i64 = 1_767_225_600_000_000;

fn key(tenant: &str, stream: &str, scope: &str, c: Classification) -> GroupKey {
    GroupKey {
        tenant: TenantId::new(tenant).unwrap(),
        stream: stream.parse().unwrap(),
        scope: scope.into(),
        classification: c,
    }
}

/// A deterministic test record.
pub fn rec(n: u64, g: &GroupKey, ts_us: i64, subject: Option<u8>) -> NewRecord {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id[8..].copy_from_slice(&(ts_us as u64).to_be_bytes());
    NewRecord {
        id,
        group: g.clone(),
        ts_us,
        received_us: ts_us + 1,
        pseudonym: subject.map(|s| [s; 32]),
        // One key per (tenant, subject), as the vault keeps them.
        key_id: subject.map(|s| g.tenant.as_str().bytes().map(i64::from).sum::<i64>() * 1000 + s as i64),
        plain: format!("{{\"n\":{n}}}"),
        body: Some(vec![n as u8; 300]),
    }
}

trait RecordKey {
    fn record_key(&self) -> i64;
}

impl RecordKey for NewRecord {
    fn record_key(&self) -> i64 {
        self.key_id.expect("a record with a subject has a key")
    }
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, m: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % m
    }
}

fn all(s: &dyn Store, tenant: &str) -> Vec<crate::StoredRecord> {
    let mut v = Vec::new();
    s.query(&RecordQuery::tenant(TenantId::new(tenant).unwrap()), &mut |r| {
        v.push(r);
        true
    })
    .unwrap();
    v
}

fn random_store(s: &dyn Store, seed: u64, n: u64) -> Vec<GroupKey> {
    let mut rng = Lcg(seed);
    let groups = vec![
        key("acme", "audit:1", "web", Classification::Internal),
        key("acme", "audit:1", "admin", Classification::Restricted),
        key("acme", "requests:1", "chat", Classification::Confidential),
        key("beta", "requests:1", "chat", Classification::Confidential),
        key("beta", "audit:1", "web", Classification::Public),
    ];
    let mut batch = Vec::new();
    for i in 0..n {
        let g = &groups[rng.next(groups.len() as u64) as usize];
        let ts = T0 - rng.next(120) as i64 * DAY - rng.next(DAY as u64) as i64;
        let subj = if rng.next(4) == 0 {
            None
        } else {
            Some(rng.next(20) as u8)
        };
        batch.push(rec(i, g, ts, subj));
        if batch.len() == 500 {
            append_to(s, &batch).unwrap();
            batch.clear();
        }
    }
    append_to(s, &batch).unwrap();
    groups
}

fn targets(groups: &[GroupKey], days: &[(i64, Action)], now: i64) -> Vec<RetentionTarget> {
    groups
        .iter()
        .zip(days.iter().cycle())
        .map(|(g, (d, a))| RetentionTarget {
            key: g.clone(),
            rule: format!("{d}d-{a}"),
            action: *a,
            cutoff_us: now - d * DAY,
        })
        .collect()
}

fn no_progress(_: u64, _: u64) {}

/// Newest first by default, oldest first when asked.
pub fn append_then_query_returns_records_newest_first(open: Open, dir: &Path) {
    let s = open(dir);
    let g = key("acme", "audit:1", "web", Classification::Internal);
    let recs: Vec<_> = (0..10)
        .map(|i| rec(i, &g, T0 - (i as i64) * DAY / 3, Some(1)))
        .collect();
    let r = append_to(&*s, &recs).unwrap();
    assert_eq!((r.inserted, r.duplicates), (10, 0));
    let got = all(&*s, "acme");
    assert_eq!(got.len(), 10);
    assert!(got.windows(2).all(|w| w[0].record.ts_us >= w[1].record.ts_us));
    assert_eq!(got[0].record, recs[0]);
    let mut q = RecordQuery::tenant(TenantId::new("acme").unwrap());
    q.ascending = true;
    let mut first = None;
    s.query(&q, &mut |r| {
        first = Some(r);
        false
    })
    .unwrap();
    assert_eq!(first.unwrap().record, recs[9]);
}

/// Client retries never duplicate.
pub fn appending_the_same_id_twice_stores_it_once(open: Open, dir: &Path) {
    let s = open(dir);
    let g = key("acme", "audit:1", "web", Classification::Internal);
    let recs: Vec<_> = (0..5).map(|i| rec(i, &g, T0 + i as i64, None)).collect();
    append_to(&*s, &recs).unwrap();
    let r = append_to(&*s, &recs[2..]).unwrap();
    assert_eq!((r.inserted, r.duplicates), (0, 3));
    assert_eq!(all(&*s, "acme").len(), 5);
}

/// Sequence numbers have no gaps, even around duplicates.
pub fn sequence_numbers_are_dense_per_tenant_and_stream(open: Open, dir: &Path) {
    let s = open(dir);
    let a = key("acme", "audit:1", "web", Classification::Internal);
    let b = key("acme", "requests:1", "chat", Classification::Internal);
    append_to(
        &*s,
        &[
            rec(1, &a, T0, None),
            rec(2, &b, T0, None),
            rec(3, &a, T0 - 3 * DAY, None),
        ],
    )
    .unwrap();
    append_to(&*s, &[rec(1, &a, T0, None), rec(4, &a, T0 + 1, None)]).unwrap();
    let mut seqs: Vec<_> = all(&*s, "acme")
        .iter()
        .filter(|r| r.record.group == a)
        .map(|r| r.seq)
        .collect();
    seqs.sort();
    assert_eq!(seqs, [1, 2, 3]);
    let seqs_b: Vec<_> = all(&*s, "acme")
        .iter()
        .filter(|r| r.record.group == b)
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs_b, [1]);
}

/// Every filter narrows the result.
pub fn query_filters_by_stream_scope_subject_time_and_limit(open: Open, dir: &Path) {
    let s = open(dir);
    random_store(&*s, 7, 2000);
    let everything = all(&*s, "acme");
    let t = TenantId::new("acme").unwrap();
    let check = |q: RecordQuery, pred: &dyn Fn(&NewRecord) -> bool| {
        let mut got = Vec::new();
        s.query(&q, &mut |r| {
            got.push(r);
            true
        })
        .unwrap();
        let want: Vec<_> = everything.iter().filter(|r| pred(&r.record)).cloned().collect();
        let want = match q.limit {
            Some(l) => want.into_iter().take(l).collect(),
            None => want,
        };
        assert_eq!(got.len(), want.len());
        assert_eq!(
            got.iter().map(|r| r.record.id).collect::<Vec<_>>(),
            want.iter().map(|r| r.record.id).collect::<Vec<_>>()
        );
    };
    let mut q = RecordQuery::tenant(t.clone());
    q.stream = Some("requests:1".parse().unwrap());
    check(q, &|r| r.group.stream.name == "requests");
    let mut q = RecordQuery::tenant(t.clone());
    q.scope = Some("admin".into());
    check(q, &|r| r.group.scope == "admin");
    let mut q = RecordQuery::tenant(t.clone());
    q.pseudonym = Some([3; 32]);
    check(q, &|r| r.pseudonym == Some([3; 32]));
    let mut q = RecordQuery::tenant(t.clone());
    q.since_us = Some(T0 - 30 * DAY);
    q.until_us = Some(T0 - 10 * DAY);
    check(q, &|r| r.ts_us >= T0 - 30 * DAY && r.ts_us < T0 - 10 * DAY);
    let mut q = RecordQuery::tenant(t);
    q.limit = Some(17);
    check(q, &|_| true);
}

/// A query names one tenant and sees only that tenant.
pub fn tenants_never_see_each_others_records(open: Open, dir: &Path) {
    let s = open(dir);
    random_store(&*s, 11, 1000);
    for (t, r) in [("acme", all(&*s, "acme")), ("beta", all(&*s, "beta"))] {
        assert!(!r.is_empty());
        assert!(r.iter().all(|r| r.record.group.tenant.as_str() == t));
    }
    assert!(all(&*s, "gamma").is_empty());
    assert!(s
        .stats(Some(&TenantId::new("beta").unwrap()))
        .unwrap()
        .iter()
        .all(|g| g.key.tenant.as_str() == "beta"));
}

/// The plan is exactly what apply does, per group, on randomized data and policies.
pub fn dry_run_plan_equals_what_apply_then_does_on_random_data(open: Open, dir: &Path) {
    for seed in 1..=4u64 {
        let d = dir.join(format!("s{seed}"));
        let s = open(&d);
        let groups = random_store(&*s, seed, 3000);
        let mut rng = Lcg(seed * 31);
        let policies: Vec<(i64, Action)> = (0..groups.len())
            .map(|_| {
                (
                    1 + rng.next(100) as i64,
                    if rng.next(2) == 0 {
                        Action::Delete
                    } else {
                        Action::Anonymize
                    },
                )
            })
            .collect();
        let now = T0 + rng.next(DAY as u64) as i64;
        let t = targets(&groups, &policies, now);
        let before = all(&*s, "acme").len() + all(&*s, "beta").len();
        let plan = s.plan_retention(&t).unwrap();
        let done = s.apply_retention(&t, &no_progress).unwrap();
        for (p, d) in plan.iter().zip(&done) {
            assert_eq!(
                (&p.target, p.records, p.partitions_dropped),
                (&d.target, d.records, d.partitions_dropped),
                "seed {seed}"
            );
        }
        // and the counts are right against the records themselves
        let after: Vec<_> = all(&*s, "acme").into_iter().chain(all(&*s, "beta")).collect();
        let deleted: u64 = plan
            .iter()
            .filter(|p| p.target.action == Action::Delete)
            .map(|p| p.records)
            .sum();
        assert_eq!(before - after.len(), deleted as usize, "seed {seed}");
        for e in &plan {
            let expired =
                |r: &&crate::StoredRecord| r.record.group == e.target.key && r.record.ts_us < e.target.cutoff_us;
            match e.target.action {
                Action::Delete => assert_eq!(after.iter().filter(expired).count(), 0),
                Action::Anonymize => assert!(after
                    .iter()
                    .filter(expired)
                    .all(|r| r.anonymized && r.record.body.is_none())),
            }
        }
    }
}

/// Nothing is left to do after a sweep.
pub fn a_second_sweep_right_after_does_nothing(open: Open, dir: &Path) {
    let s = open(dir);
    let groups = random_store(&*s, 5, 2000);
    let t = targets(&groups, &[(30, Action::Delete), (10, Action::Anonymize)], T0);
    let first = s.apply_retention(&t, &no_progress).unwrap();
    assert!(first.iter().map(|e| e.records).sum::<u64>() > 0);
    assert!(s.plan_retention(&t).unwrap().iter().all(|e| e.records == 0));
    assert!(s
        .apply_retention(&t, &no_progress)
        .unwrap()
        .iter()
        .all(|e| e.records == 0 && e.bytes_freed == 0));
}

/// Dropping whole partitions shrinks the store on disk without compaction.
pub fn whole_expired_partitions_return_their_disk_space(open: Open, dir: &Path) {
    let s = open(dir);
    let g = key("acme", "requests:1", "chat", Classification::Internal);
    let mut n = 0;
    for day in 0..40 {
        let recs: Vec<_> = (0..200)
            .map(|i| {
                n += 1;
                rec(n, &g, T0 - day * DAY - i * 1000, Some((i % 7) as u8))
            })
            .collect();
        append_to(&*s, &recs).unwrap();
    }
    let before = s.disk_bytes().unwrap();
    let t = vec![RetentionTarget {
        key: g.clone(),
        rule: "r".into(),
        action: Action::Delete,
        cutoff_us: T0 - 10 * DAY + DAY / 2,
    }];
    let plan = s.plan_retention(&t).unwrap();
    let done = s.apply_retention(&t, &no_progress).unwrap();
    assert_eq!(plan[0].records, done[0].records);
    assert!(done[0].partitions_dropped >= 29, "{}", done[0].partitions_dropped);
    let after = s.disk_bytes().unwrap();
    assert!(after * 2 < before, "store did not shrink: {before} -> {after}");
    // what the sweep says it freed is what the disk got back (catalog growth aside)
    let got_back = before - after;
    assert!(
        done[0].bytes_freed * 9 / 10 <= got_back && got_back <= done[0].bytes_freed + 1_000_000,
        "{got_back} vs {}",
        done[0].bytes_freed
    );
    let left = all(&*s, "acme");
    assert!(left.iter().all(|r| r.record.ts_us >= T0 - 10 * DAY + DAY / 2));
    assert_eq!(left.len() as u64 + done[0].records, 8000);
}

/// Anonymize keeps the event and its plain fields only.
pub fn anonymize_keeps_plain_fields_and_drops_body_and_pseudonym(open: Open, dir: &Path) {
    let s = open(dir);
    let g = key("acme", "audit:1", "web", Classification::Internal);
    let recs: Vec<_> = (0..20).map(|i| rec(i, &g, T0 - i as i64 * DAY, Some(9))).collect();
    append_to(&*s, &recs).unwrap();
    let t = vec![RetentionTarget {
        key: g,
        rule: "a".into(),
        action: Action::Anonymize,
        cutoff_us: T0 - 9 * DAY - 1,
    }];
    assert_eq!(s.apply_retention(&t, &no_progress).unwrap()[0].records, 10);
    let got = all(&*s, "acme");
    assert_eq!(got.len(), 20);
    for r in got {
        let i = r
            .record
            .plain
            .trim_start_matches("{\"n\":")
            .trim_end_matches('}')
            .parse::<i64>()
            .unwrap();
        assert_eq!(r.anonymized, i >= 10, "record {i}");
        if r.anonymized {
            assert_eq!((r.record.body, r.record.pseudonym, r.record.key_id), (None, None, None));
        } else {
            assert!(r.record.body.is_some());
        }
    }
    let st = s.stats(None).unwrap();
    assert_eq!((st[0].records, st[0].anonymized), (20, 10));
    let mut q = RecordQuery::tenant(TenantId::new("acme").unwrap());
    q.pseudonym = Some([9; 32]);
    let mut n = 0;
    s.query(&q, &mut |_| {
        n += 1;
        true
    })
    .unwrap();
    assert_eq!(n, 10, "anonymized records are no longer found by subject");
}

/// Window changes apply to stored records; nothing comes back.
pub fn shortening_a_window_applies_to_stored_records_and_lengthening_never_resurrects(open: Open, dir: &Path) {
    let s = open(dir);
    let groups = random_store(&*s, 3, 1500);
    let count = || all(&*s, "acme").len() + all(&*s, "beta").len();
    s.apply_retention(&targets(&groups, &[(60, Action::Delete)], T0), &no_progress)
        .unwrap();
    let at60 = count();
    s.apply_retention(&targets(&groups, &[(20, Action::Delete)], T0), &no_progress)
        .unwrap();
    let at20 = count();
    assert!(at20 < at60);
    s.apply_retention(&targets(&groups, &[(90, Action::Delete)], T0), &no_progress)
        .unwrap();
    assert_eq!(count(), at20);
}

/// Stats count what is there.
pub fn stats_report_records_ages_and_partitions(open: Open, dir: &Path) {
    let s = open(dir);
    let g = key("acme", "audit:1", "web", Classification::Internal);
    let recs: Vec<_> = (0..30).map(|i| rec(i, &g, T0 - i as i64 * DAY / 2, None)).collect();
    append_to(&*s, &recs).unwrap();
    let st = s.stats(None).unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].records, 30);
    assert_eq!(st[0].oldest_us, Some(T0 - 29 * DAY / 2));
    assert_eq!(st[0].newest_us, Some(T0));
    assert_eq!(st[0].partitions, 16);
    assert!(st[0].bytes > 30 * 300);
    assert!(s.disk_bytes().unwrap() >= st[0].bytes);
}

/// Key storage: first writer wins; a batch whose new key conflicts stores nothing.
pub fn keys_are_first_writer_wins_and_stable(open: Open, dir: &Path) {
    let s = open(dir);
    let t = TenantId::new("acme").unwrap();
    assert_eq!(s.tenant_key(&t).unwrap(), None);
    assert_eq!(s.put_tenant_key(&t, b"first", 1).unwrap(), b"first");
    assert_eq!(s.put_tenant_key(&t, b"second", 2).unwrap(), b"first");
    let key = |id: i64, r: &[u8], w: &[u8]| StoredKey {
        id,
        tenant: t.clone(),
        key_ref: r.to_vec(),
        wrapped: Some(w.to_vec()),
    };
    let g = GroupKey {
        tenant: t.clone(),
        stream: "audit:1".parse().unwrap(),
        scope: "web".into(),
        classification: Classification::Internal,
    };
    s.append(&Batch {
        new_keys: vec![key(11, b"s:1", b"k1"), key(12, b"s:2", b"k2")],
        ..batch_of(&[rec(1, &g, T0, None)])
    })
    .unwrap();
    let found = s.data_keys_by_ref(&t, &[b"s:2".to_vec(), b"s:9".to_vec()]).unwrap();
    assert_eq!(found, vec![Some(key(12, b"s:2", b"k2")), None]);
    assert_eq!(s.data_keys(&[11, 9999]).unwrap(), vec![key(11, b"s:1", b"k1")]);
    // another writer's key for the same reference: the whole batch is refused
    let r = s.append(&Batch {
        new_keys: vec![key(13, b"s:3", b"k3"), key(14, b"s:1", b"other")],
        ..batch_of(&[rec(2, &g, T0, None)])
    });
    assert!(matches!(r, Err(StoreError::KeyConflict)), "{r:?}");
    assert_eq!(all(&*s, "acme").len(), 1, "nothing of the refused batch is stored");
    assert_eq!(s.data_keys_by_ref(&t, &[b"s:3".to_vec()]).unwrap(), vec![None]);
    let other = TenantId::new("beta").unwrap();
    assert_eq!(
        s.data_keys_by_ref(&other, &[b"s:1".to_vec()]).unwrap(),
        vec![None],
        "keys never cross tenants"
    );
}

/// The same policies get the same version; a change gets a new one.
pub fn policy_snapshots_are_versioned_by_content(open: Open, dir: &Path) {
    let s = open(dir);
    let (a, new_a) = s.record_policy("{\"window\":\"30d\"}", 1).unwrap();
    let (b, new_b) = s.record_policy("{\"window\":\"7d\"}", 2).unwrap();
    assert!(new_a && new_b);
    assert_ne!(a, b);
    // until its ledger entry is noted as written, a version is still to be entered
    assert_eq!(s.record_policy("{\"window\":\"30d\"}", 3).unwrap(), (a, true));
    s.mark_policy_entered(a).unwrap();
    assert_eq!(s.record_policy("{\"window\":\"30d\"}", 4).unwrap(), (a, false));
    assert_eq!(s.policy(b).unwrap().as_deref(), Some("{\"window\":\"7d\"}"));
    assert_eq!(s.policy(999).unwrap(), None);
}

/// Ledger entries chain onto the stored head and read back unchanged.
pub fn the_ledger_appends_in_order_and_reads_back_exactly(open: Open, dir: &Path) {
    use lethe_core::crypto::SecretKey;
    use lethe_core::ledger::{verify, Draft};
    let key = SecretKey::generate();
    let mut written = Vec::new();
    {
        let s = open(dir);
        for i in 0..5 {
            let d = Draft {
                ts_us: i,
                actor: "test".into(),
                kind: "k".into(),
                tenant: None,
                body: format!("{{\"i\":{i}}}"),
            };
            written.push(s.append_ledger(&mut |seq, prev| d.seal(&key, seq, prev)).unwrap());
        }
    }
    let s = open(dir);
    let got = s.ledger(1, 100).unwrap();
    assert_eq!(got, written);
    assert_eq!(verify(&key, &got).unwrap().0, 5);
    assert_eq!(s.ledger(4, 1).unwrap(), written[3..4].to_vec());
}

/// Capture mode `none` is counted.
pub fn capture_drops_are_counted(open: Open, dir: &Path) {
    let s = open(dir);
    let g = key("acme", "requests:1", "embeddings", Classification::Internal);
    s.append(&Batch {
        drops: vec![CaptureDrop {
            key: g.clone(),
            count: 3,
        }],
        ..Default::default()
    })
    .unwrap();
    s.append(&Batch {
        drops: vec![CaptureDrop {
            key: g.clone(),
            count: 4,
        }],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(s.capture_drops().unwrap(), vec![CaptureDrop { key: g, count: 7 }]);
    assert!(all(&*s, "acme").is_empty());
}

/// Closing and reopening changes nothing.
pub fn everything_survives_reopening(open: Open, dir: &Path) {
    let (recs, stats, key) = {
        let s = open(dir);
        random_store(&*s, 9, 800);
        let t = TenantId::new("acme").unwrap();
        s.put_tenant_key(&t, b"w", 1).unwrap();
        s.record_run("cleanup", 1, 2, "success", "{}").unwrap();
        (all(&*s, "acme"), s.stats(None).unwrap(), s.tenant_key(&t).unwrap())
    };
    let s = open(dir);
    assert_eq!(all(&*s, "acme"), recs);
    assert_eq!(s.stats(None).unwrap(), stats);
    assert_eq!(s.tenant_key(&TenantId::new("acme").unwrap()).unwrap(), key);
    assert_eq!(s.runs(10).unwrap().len(), 1);
    let g = key_of(&recs[0]);
    let r = append_to(&*s, &[rec(999_999, &g, T0, None)]).unwrap();
    assert_eq!(r.inserted, 1);
}

fn key_of(r: &crate::StoredRecord) -> GroupKey {
    r.record.group.clone()
}

/// Walks one chain the way a verifier does: rows in sequence order via the
/// segments, every MAC and link checked, holes bridged by `holes` (first,
/// last, prev, chain) with stored Merkle nodes. Returns (rows, tombstones,
/// anonymized) and asserts the chain head and tree head match.
fn walk_chain(s: &dyn Store, tenant: &str, stream: &str, holes: &[crate::Segment]) -> (u64, u64, u64) {
    use lethe_core::integrity::{chain, genesis, RecordMac};
    use lethe_core::merkle::{node_hash, perfect_cover, Frontier, Hash};
    let mac = RecordMac::new(&mac_key(&TenantId::new(tenant).unwrap()));
    let head = s
        .chains()
        .unwrap()
        .into_iter()
        .find(|c| c.tenant == tenant && c.stream == stream)
        .unwrap();
    let mut segs: Vec<(u64, u64, Option<i64>, Option<Hash>)> = s
        .segments(tenant, stream)
        .unwrap()
        .into_iter()
        .map(|sa| (sa.segment.first, sa.segment.last, Some(sa.partition), None))
        .collect();
    // Adjacent holes are one hole: the store keeps Merkle heads only at the
    // outer edges of what a sweep removed.
    let mut hs: Vec<&crate::Segment> = holes.iter().collect();
    hs.sort_by_key(|h| h.first);
    let mut merged: Vec<(u64, u64, Option<i64>, Option<Hash>)> = Vec::new();
    for h in hs {
        match merged.last_mut() {
            Some(m) if m.1 + 1 == h.first => {
                m.1 = h.last;
                m.3 = Some(h.chain);
            }
            _ => merged.push((h.first, h.last, None, Some(h.chain))),
        }
    }
    segs.extend(merged);
    segs.sort_by_key(|x| x.0);
    let mut reader = s.row_reader().unwrap();
    let mut prev = genesis(tenant, stream);
    let mut tree = Frontier::new();
    let (mut rows, mut tomb, mut anon) = (0, 0, 0);
    fn node(s: &dyn Store, t: &str, st: &str, level: u32, idx: u64) -> Hash {
        if let Some(h) = s.merkle_node(t, st, level, idx).unwrap() {
            return h;
        }
        assert!(level > 0, "no stored node {level}/{idx}");
        node_hash(
            &node(s, t, st, level - 1, 2 * idx),
            &node(s, t, st, level - 1, 2 * idx + 1),
        )
    }
    for (first, last, part, chain_after) in segs {
        assert_eq!(first, tree.size() + 1, "segments cover the chain without gaps");
        match part {
            Some(p) => {
                let mut next = first;
                reader
                    .scan(p, first, last, &mut |r| {
                        assert_eq!(r.seq, next);
                        next += 1;
                        assert_eq!(r.prev, prev.to_vec(), "seq {} links to the record before", r.seq);
                        let leaf = r.leaf(tenant, stream).unwrap();
                        assert_eq!(r.mac, mac.mac(&leaf).to_vec(), "seq {} MAC", r.seq);
                        prev = chain(&prev, &leaf);
                        tree.push_leaf(leaf, &mut |_, _, _| {});
                        rows += 1;
                        tomb += (r.state == crate::row::DELETED) as u64;
                        anon += (r.state == crate::row::ANONYMIZED) as u64;
                    })
                    .unwrap();
                assert_eq!(next, last + 1, "every row of the segment is there");
            }
            None => {
                for (level, idx) in perfect_cover(first - 1, last) {
                    assert!(tree.push(level, node(s, tenant, stream, level, idx), &mut |_, _, _| {}));
                }
                prev = chain_after.unwrap();
            }
        }
    }
    assert_eq!((tree.size(), prev), (head.size, head.hash), "chain head");
    assert_eq!(tree.root(), head.root, "tree head");
    (rows, tomb, anon)
}

/// Every record carries its link and MAC; segments cover the chain; the
/// tree head the store keeps is the RFC 6962 head over the leaves.
pub fn appended_records_are_sealed_linked_and_under_the_tree_head(open: Open, dir: &Path) {
    let s = open(dir);
    random_store(&*s, 9, 1500);
    let mut total = 0;
    for c in s.chains().unwrap() {
        let (rows, ..) = walk_chain(&*s, &c.tenant, &c.stream, &[]);
        assert_eq!(rows, c.size);
        total += rows;
    }
    assert_eq!(total, 1500);
    // duplicates consume no sequence number and change no head
    let before = s.chains().unwrap();
    let g = key("acme", "audit:1", "web", Classification::Internal);
    append_to(&*s, &[rec(0, &g, T0, None)]).unwrap();
    let dup = all(&*s, "acme").into_iter().next().unwrap().record;
    assert_eq!(append_to(&*s, &[dup]).unwrap().inserted, 0);
    let after = s.chains().unwrap();
    assert_eq!(before.len(), after.len());
    for c in s.chains().unwrap() {
        walk_chain(&*s, &c.tenant, &c.stream, &[]);
    }
}

/// Row-level deletion leaves a tombstone: gone from queries and stats, its
/// header kept so the MAC and the links through it still check.
pub fn deleting_rows_keeps_tombstones_whose_headers_still_verify(open: Open, dir: &Path) {
    let s = open(dir);
    let g = key("acme", "audit:1", "web", Classification::Internal);
    let a = key("acme", "audit:1", "admin", Classification::Internal);
    let recs: Vec<_> = (0..30)
        .map(|i| rec(i, if i % 3 == 0 { &a } else { &g }, T0 - (i as i64) * DAY / 10, Some(3)))
        .collect();
    append_to(&*s, &recs).unwrap();
    let t = vec![
        RetentionTarget {
            key: g.clone(),
            rule: "d".into(),
            action: Action::Delete,
            cutoff_us: T0 - DAY,
        },
        RetentionTarget {
            key: a.clone(),
            rule: "a".into(),
            action: Action::Anonymize,
            cutoff_us: T0 - DAY,
        },
    ];
    let plan = s.plan_removal(&t, &[]).unwrap();
    let listed: u64 = plan
        .chains
        .iter()
        .flat_map(|c| &c.rows)
        .flat_map(|r| &r.seqs)
        .map(|r| r[1] + 1 - r[0])
        .sum();
    assert_eq!(listed, plan.effects.iter().map(|e| e.records).sum::<u64>());
    let done = s.apply_removal(&plan.chains, &no_progress).unwrap();
    assert_eq!(done.deleted, plan.effects[0].records);
    assert_eq!(done.anonymized, plan.effects[1].records);
    assert!(done.deleted > 0 && done.anonymized > 0);
    let (rows, tomb, anon) = walk_chain(&*s, "acme", "audit:1", &[]);
    assert_eq!((rows, tomb, anon), (30, done.deleted, done.anonymized));
    assert_eq!(all(&*s, "acme").len() as u64, 30 - done.deleted);
    let st = s.stats(None).unwrap();
    assert_eq!(st.iter().map(|g| g.tombstones).sum::<u64>(), done.deleted);
    assert_eq!(st.iter().map(|g| g.records).sum::<u64>(), 30 - done.deleted);
    // applying the same removal again changes nothing
    assert_eq!(
        s.apply_removal(&plan.chains, &no_progress).unwrap(),
        crate::Applied::default()
    );
}

/// Dropping whole partitions: the plan lists their segments with boundary
/// chain hashes, and the store keeps the Merkle heads at the edges, so the
/// chain and the tree over what remains still verify, hole and all.
pub fn dropping_partitions_keeps_what_the_chain_and_tree_need(open: Open, dir: &Path) {
    let s = open(dir);
    let g = key("acme", "requests:1", "chat", Classification::Internal);
    let mut n = 0;
    // 20 days of 77 records (not a multiple of 256: ranges end mid-chunk)
    for day in (0..20).rev() {
        let recs: Vec<_> = (0..77)
            .map(|i| {
                n += 1;
                rec(n, &g, T0 - day * DAY + i * 1000, Some((i % 5) as u8))
            })
            .collect();
        append_to(&*s, &recs).unwrap();
    }
    let head = s.chains().unwrap()[0].clone();
    let t = vec![RetentionTarget {
        key: g.clone(),
        rule: "r".into(),
        action: Action::Delete,
        cutoff_us: T0 - 7 * DAY + DAY / 2,
    }];
    let plan = s.plan_removal(&t, &[]).unwrap();
    let dropped: Vec<crate::Segment> = plan
        .chains
        .iter()
        .flat_map(|c| &c.dropped)
        .flat_map(|d| d.segments.clone())
        .collect();
    // days 8..=19 end before the cutoff; day 7 straddles it (all its records are older)
    assert_eq!(dropped.len(), 12, "one segment per dropped day");
    let applied = s.apply_removal(&plan.chains, &no_progress).unwrap();
    assert_eq!(applied.partitions_dropped, 12);
    assert_eq!(applied.deleted, 13 * 77);
    assert_eq!(s.chains().unwrap()[0], head, "heads do not move when records go");
    let (rows, ..) = walk_chain(&*s, "acme", "requests:1", &dropped);
    assert_eq!(
        rows,
        20 * 77 - 12 * 77,
        "tombstones of day 7 stay until its partition goes"
    );
}

fn pseudo(s: u8) -> [u8; 32] {
    [s; 32]
}

fn selection(tenant: &str, subjects: &[u8]) -> crate::Selection {
    crate::Selection {
        tenant: TenantId::new(tenant).unwrap(),
        pseudonyms: subjects.iter().map(|s| pseudo(*s)).collect(),
        stream: None,
        scope: None,
        since_us: None,
        until_us: None,
        action: Action::Delete,
        exhaustive: false,
    }
}

/// (stream, seq) of every row a selection lists.
fn listed(sel: &crate::Selected) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for c in &sel.chains {
        assert!(c.dropped.is_empty(), "a selection is row-level only");
        for r in &c.rows {
            for range in &r.seqs {
                out.extend((range[0]..=range[1]).map(|q| (c.stream.clone(), q)));
            }
        }
    }
    out.sort();
    out
}

fn subject_rows(s: &dyn Store, tenant: &str, subject: u8) -> Vec<(String, u64)> {
    let mut q = RecordQuery::tenant(TenantId::new(tenant).unwrap());
    q.pseudonym = Some(pseudo(subject));
    let mut out = Vec::new();
    s.query(&q, &mut |r| {
        out.push((r.record.group.stream.to_string(), r.seq));
        true
    })
    .unwrap();
    out.sort();
    out
}

fn hold(tenant: &str, subject: Option<u8>, scope: Option<&str>) -> lethe_core::hold::HoldScope {
    lethe_core::hold::HoldScope {
        tenant: tenant.into(),
        pseudonym: subject.map(pseudo),
        subject: subject.is_some(),
        scope: scope.map(String::from),
        since_us: None,
        until_us: None,
    }
}

/// A subject selection lists exactly that subject's rows (what a full
/// query filtered by pseudonym finds), across every partition, also after
/// reopening; held rows are counted, not listed.
pub fn a_subject_selection_finds_exactly_the_subjects_rows_and_leaves_held_ones(open: Open, dir: &Path) {
    let s = open(dir);
    random_store(&*s, 11, 3000);
    for subject in [0u8, 3, 7, 19] {
        let sel = s.select(&selection("acme", &[subject]), &[]).unwrap();
        let want = subject_rows(&*s, "acme", subject);
        assert!(!want.is_empty());
        assert_eq!(listed(&sel), want, "subject {subject}");
        assert_eq!(sel.groups.iter().map(|g| g.records).sum::<u64>(), want.len() as u64);
        assert_eq!(sel.found, vec![pseudo(subject)]);
    }
    let two = s.select(&selection("acme", &[1, 2]), &[]).unwrap();
    let mut want = subject_rows(&*s, "acme", 1);
    want.extend(subject_rows(&*s, "acme", 2));
    want.sort();
    assert_eq!(listed(&two), want);
    // Many subjects at once (the batch path): the union, exactly.
    let every: Vec<u8> = (0..20).chain(100..130).collect();
    let many = s.select(&selection("acme", &every), &[]).unwrap();
    let mut want: Vec<(String, u64)> = (0..20).flat_map(|x| subject_rows(&*s, "acme", x)).collect();
    want.sort();
    assert_eq!(listed(&many), want);
    assert_eq!(many.found.len(), 20);
    assert!(s.select(&selection("acme", &[200]), &[]).unwrap().chains.is_empty());
    assert!(
        s.select(&selection("gamma", &[1]), &[]).unwrap().chains.is_empty(),
        "never another tenant's rows"
    );
    let held = s
        .select(&selection("acme", &[5]), &[hold("acme", None, Some("chat"))])
        .unwrap();
    let all5 = subject_rows(&*s, "acme", 5);
    let chat: u64 = held.groups.iter().filter(|g| g.scope == "chat").map(|g| g.held).sum();
    assert!(chat > 0);
    assert_eq!(listed(&held).len() as u64 + chat, all5.len() as u64);
    assert!(held.groups.iter().filter(|g| g.scope == "chat").all(|g| g.records == 0));
    assert_eq!(held.held_subjects, vec![pseudo(5)]);
    drop(s);
    let s = open(dir);
    assert_eq!(
        listed(&s.select(&selection("acme", &[7]), &[]).unwrap()),
        subject_rows(&*s, "acme", 7)
    );
}

/// Applying a selection tombstones exactly its rows: the subject is gone
/// from queries, every other record stays, counts drop by exactly that.
pub fn removing_a_selection_takes_exactly_those_rows_from_queries_and_counts(open: Open, dir: &Path) {
    let s = open(dir);
    random_store(&*s, 12, 2000);
    let t = TenantId::new("acme").unwrap();
    let before = all(&*s, "acme").len();
    let live = |s: &dyn Store| -> u64 { s.stats(Some(&t)).unwrap().iter().map(|g| g.records).sum() };
    let stats_before = live(&*s);
    let sel = s.select(&selection("acme", &[4]), &[]).unwrap();
    let n = listed(&sel).len();
    let applied = s.apply_removal(&sel.chains, &no_progress).unwrap();
    assert_eq!(applied.deleted, n as u64);
    assert!(subject_rows(&*s, "acme", 4).is_empty());
    assert_eq!(all(&*s, "acme").len(), before - n);
    assert_eq!(live(&*s), stats_before - n as u64);
    let tombstones: u64 = s.stats(Some(&t)).unwrap().iter().map(|g| g.tombstones).sum();
    assert_eq!(tombstones, n as u64);
    assert_eq!(
        s.apply_removal(&sel.chains, &no_progress).unwrap().deleted,
        0,
        "idempotent"
    );
    assert!(s.select(&selection("acme", &[4]), &[]).unwrap().chains.is_empty());
}

/// A destroyed key reads back without its wrapped bytes, its reference no
/// longer finds it, and destroying it again does nothing.
pub fn destroyed_keys_are_gone_for_good_and_no_longer_name_their_subject(open: Open, dir: &Path) {
    let s = open(dir);
    let t = TenantId::new("acme").unwrap();
    let g = key("acme", "audit:1", "web", Classification::Internal);
    let k = |id: i64, r: &[u8]| StoredKey {
        id,
        tenant: t.clone(),
        key_ref: r.to_vec(),
        wrapped: Some(b"wrapped-key-bytes".to_vec()),
    };
    s.append(&Batch {
        new_keys: vec![k(21, b"s:a"), k(22, b"s:b")],
        ..batch_of(&[rec(1, &g, T0, None)])
    })
    .unwrap();
    assert_eq!(s.destroy_keys(&[21], T0).unwrap(), 1);
    assert_eq!(s.destroy_keys(&[21], T0).unwrap(), 0);
    let got = s.data_keys(&[21, 22]).unwrap();
    assert_eq!(got.iter().find(|k| k.id == 21).unwrap().wrapped, None);
    assert!(got.iter().find(|k| k.id == 22).unwrap().wrapped.is_some());
    assert_eq!(s.data_keys_by_ref(&t, &[b"s:a".to_vec()]).unwrap(), vec![None]);
    drop(s);
    let s = open(dir);
    assert_eq!(s.data_keys(&[21]).unwrap()[0].wrapped, None, "destroyed for good");
}

/// A batch whose records are encrypted under a key destroyed since the
/// batch was prepared is refused whole ([`StoreError::KeyDestroyed`]) and
/// stores nothing: no record is ever acknowledged under a destroyed key.
pub fn a_batch_under_a_destroyed_key_is_refused_whole(open: Open, dir: &Path) {
    let s = open(dir);
    let g = key("acme", "audit:1", "web", Classification::Internal);
    append_to(&*s, &[rec(1, &g, T0, Some(7))]).unwrap();
    let k = rec(1, &g, T0, Some(7)).record_key();
    assert_eq!(s.destroy_keys(&[k], T0).unwrap(), 1);
    let r = s.append(&batch_of(&[rec(2, &g, T0, None), rec(3, &g, T0, Some(7))]));
    assert!(matches!(r, Err(StoreError::KeyDestroyed)), "{r:?}");
    assert!(r.unwrap_err().is_retryable());
    assert_eq!(all(&*s, "acme").len(), 1, "nothing of the refused batch is stored");
    // Prepared again under a live key, it is stored.
    let mut again = rec(3, &g, T0, Some(7));
    again.key_id = Some(k + 1);
    append_to(&*s, &[rec(2, &g, T0, None), again]).unwrap();
    assert_eq!(all(&*s, "acme").len(), 3);
}

/// Holds are stored with what they cover, listed per tenant, released once.
pub fn holds_are_stored_listed_and_released(open: Open, dir: &Path) {
    let s = open(dir);
    let h = |tenant: &str, sub: Option<u8>| crate::HoldRecord {
        id: 0,
        scope: hold(tenant, sub, Some("chat")),
        reason: "matter".into(),
        actor: "legal".into(),
        created_us: T0,
        expires_us: Some(T0 + DAY),
        released_us: None,
        release_reason: None,
        ledger_seq: None,
    };
    let a = s.add_hold(&h("acme", Some(3))).unwrap();
    let b = s.add_hold(&h("beta", None)).unwrap();
    s.set_hold_entry(a, 17).unwrap();
    let acme = s.holds(Some("acme")).unwrap();
    assert_eq!(acme.len(), 1);
    assert_eq!(acme[0].id, a);
    assert_eq!(acme[0].scope, hold("acme", Some(3), Some("chat")));
    assert_eq!(acme[0].ledger_seq, Some(17));
    assert!(acme[0].active_at(T0) && !acme[0].active_at(T0 + DAY));
    assert_eq!(s.holds(None).unwrap().len(), 2);
    assert!(s.release_hold(b, T0 + 5, "settled").unwrap());
    assert!(!s.release_hold(b, T0 + 6, "again").unwrap());
    let beta = s.holds(Some("beta")).unwrap().remove(0);
    assert_eq!(
        (beta.released_us, beta.release_reason.as_deref()),
        (Some(T0 + 5), Some("settled"))
    );
    assert!(!beta.active_at(T0));
}

/// With a hold, retention plans count held records, list none of them,
/// and drop no partition that holds one; applying keeps them.
pub fn retention_plans_leave_held_records_and_never_drop_their_partition(open: Open, dir: &Path) {
    let s = open(dir);
    let groups = random_store(&*s, 13, 2000);
    let t = targets(&groups, &[(30, Action::Delete)], T0);
    let holds = [hold("acme", None, Some("web")), hold("acme", Some(6), None)];
    let plain = s.plan_removal(&t, &[]).unwrap();
    let plan = s.plan_removal(&t, &holds).unwrap();
    let held: u64 = plan.effects.iter().map(|e| e.held).sum();
    let removed: u64 = plan.effects.iter().map(|e| e.records).sum();
    let removed_plain: u64 = plain.effects.iter().map(|e| e.records).sum();
    assert!(held > 0);
    assert_eq!(
        removed + held,
        removed_plain,
        "every expired record is either removed or held"
    );
    let old_web_or_6 = |r: &crate::StoredRecord| {
        r.record.group.tenant.as_str() == "acme"
            && r.record.ts_us < T0 - 30 * DAY
            && (r.record.group.scope == "web" || r.record.pseudonym == Some(pseudo(6)))
    };
    let kept_before = all(&*s, "acme").iter().filter(|r| old_web_or_6(r)).count();
    assert_eq!(kept_before as u64, held);
    s.apply_removal(&plan.chains, &no_progress).unwrap();
    let kept_after = all(&*s, "acme").iter().filter(|r| old_web_or_6(r)).count();
    assert_eq!(kept_after, kept_before, "held records survive the sweep");
    let again = s.plan_removal(&t, &holds).unwrap();
    assert_eq!(again.effects.iter().map(|e| e.records).sum::<u64>(), 0);
    assert_eq!(again.effects.iter().map(|e| e.held).sum::<u64>(), held);
}

fn restored_of(s: &dyn Store, q: &RecordQuery) -> Vec<(i64, String, u64)> {
    let mut out = Vec::new();
    s.query_restored(q, &mut |id, r| {
        out.push((id, r.record.group.stream.to_string(), r.seq));
        true
    })
    .unwrap();
    out
}

fn as_stored(records: &[NewRecord], first_seq: u64) -> Vec<crate::StoredRecord> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| crate::StoredRecord {
            seq: first_seq + i as u64,
            record: r.clone(),
            anonymized: false,
            seal: None,
        })
        .collect()
}

/// Restored records are copies outside every chain: invisible while
/// loading, then found by the restored query (filters as for live
/// records) and by no live query, never planned by retention, erased by a
/// purge selection except where held, and removed whole with their disk space.
pub fn restorations_are_invisible_until_finished_then_queryable_erasable_and_dropped_whole(open: Open, dir: &Path) {
    let s = open(dir);
    let g = key("acme", "audit:1", "web", Classification::Internal);
    let g2 = key("acme", "audit:1", "admin", Classification::Internal);
    let acme = TenantId::new("acme").unwrap();
    let mut recs: Vec<NewRecord> = (0..300)
        .map(|i| rec(i, &g, T0 - 400 * DAY + i as i64 * 1000, Some((i % 3) as u8)))
        .collect();
    recs.extend((300..310).map(|i| rec(i, &g2, T0 - 400 * DAY + i as i64 * 1000, Some(7))));
    let stored = as_stored(&recs, 1);
    let id = s
        .begin_restoration(&acme, T0, T0 + 30 * DAY, r#"{"why":"test"}"#)
        .unwrap();
    assert_eq!(s.add_restored(id, &stored[..200]).unwrap(), 200);
    assert_eq!(
        s.add_restored(id, &stored[150..]).unwrap(),
        110,
        "records already restored are skipped"
    );
    let beta = key("beta", "audit:1", "web", Classification::Internal);
    let foreign = as_stored(&[rec(999, &beta, T0, None)], 1);
    assert!(
        s.add_restored(id, &foreign).is_err(),
        "another tenant's record is refused"
    );
    let q = RecordQuery::tenant(acme.clone());
    assert!(restored_of(&*s, &q).is_empty(), "invisible while loading");
    assert!(s.restorations(None).unwrap().is_empty());
    let r = s.finish_restoration(id, 42).unwrap();
    assert_eq!((r.records, r.ledger_seq, r.tenant.as_str()), (310, 42, "acme"));
    assert!(r.bytes > 0);
    assert_eq!(restored_of(&*s, &q).len(), 310);
    assert!(all(&*s, "acme").is_empty(), "restored copies are not live records");
    assert!(restored_of(&*s, &RecordQuery::tenant(TenantId::new("beta").unwrap())).is_empty());
    let mut narrow = q.clone();
    narrow.pseudonym = Some(pseudo(7));
    assert_eq!(restored_of(&*s, &narrow).len(), 10);
    narrow.pseudonym = None;
    narrow.scope = Some("web".into());
    narrow.since_us = Some(T0 - 400 * DAY + 100_000);
    narrow.limit = Some(50);
    narrow.ascending = true;
    let got = restored_of(&*s, &narrow);
    assert_eq!(got.len(), 50);
    assert_eq!(got[0].2, 101, "oldest first from the time bound");
    // Retention never sees them.
    let t = targets(&[g.clone(), g2.clone()], &[(1, Action::Delete)], T0);
    let plan = s.plan_removal(&t, &[]).unwrap();
    assert!(plan.effects.iter().all(|e| e.records == 0));
    // A purge of subject 1 reaches the copies; a hold on subject 2 keeps its own.
    let mut sel = selection("acme", &[1, 2]);
    let held = hold("acme", Some(2), None);
    assert_eq!(s.erase_restored(&sel, std::slice::from_ref(&held)).unwrap(), 100);
    assert_eq!(
        s.erase_restored(&sel, std::slice::from_ref(&held)).unwrap(),
        0,
        "idempotent"
    );
    narrow = q.clone();
    narrow.pseudonym = Some(pseudo(1));
    assert!(restored_of(&*s, &narrow).is_empty());
    narrow.pseudonym = Some(pseudo(2));
    assert_eq!(restored_of(&*s, &narrow).len(), 100);
    sel.pseudonyms = vec![pseudo(7)];
    sel.action = Action::Anonymize;
    assert_eq!(s.erase_restored(&sel, &[]).unwrap(), 10);
    let mut anon = 0;
    s.query_restored(&q, &mut |_, r| {
        if r.anonymized {
            assert!(r.record.body.is_none() && r.record.pseudonym.is_none());
            anon += 1;
        }
        true
    })
    .unwrap();
    assert_eq!(anon, 10);
    assert_eq!(s.restorations(Some("acme")).unwrap()[0].records, 210);
    drop(s);
    let s = open(dir);
    assert_eq!(restored_of(&*s, &q).len(), 210, "survives reopening");
    let before = s.disk_bytes().unwrap();
    let freed = s.drop_restoration(id).unwrap();
    assert!(freed > 0);
    assert!(s.disk_bytes().unwrap() < before);
    assert!(restored_of(&*s, &q).is_empty());
    assert!(s.restorations(None).unwrap().is_empty());
    assert_eq!(s.drop_restoration(id).unwrap(), 0);
}

/// A crash while loading leaves nothing; a crash after the ledger entry
/// (its mark set) but before finishing finishes the restoration on reopen.
pub fn a_restoration_cut_short_is_discarded_and_one_whose_ledger_entry_was_written_is_finished_on_reopen(
    open: Open,
    dir: &Path,
) {
    let g = key("acme", "audit:1", "web", Classification::Internal);
    let acme = TenantId::new("acme").unwrap();
    let stored = as_stored(&(0..50).map(|i| rec(i, &g, T0 + i as i64, None)).collect::<Vec<_>>(), 1);
    let s = open(dir);
    let a = s.begin_restoration(&acme, T0, T0 + DAY, "{}").unwrap();
    s.add_restored(a, &stored).unwrap();
    let b = s.begin_restoration(&acme, T0, T0 + DAY, "{}").unwrap();
    s.add_restored(b, &stored[..20]).unwrap();
    s.set_meta(&format!("restoration.{b}"), Some("7")).unwrap();
    let used = s.disk_bytes().unwrap();
    drop(s);
    let s = open(dir);
    let rs = s.restorations(None).unwrap();
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!((rs[0].id, rs[0].records, rs[0].ledger_seq), (b, 20, 7));
    assert_eq!(s.meta(&format!("restoration.{b}")).unwrap(), None);
    assert_eq!(restored_of(&*s, &RecordQuery::tenant(acme)).len(), 20);
    assert!(
        s.disk_bytes().unwrap() < used,
        "the discarded restoration's file is gone"
    );
}
