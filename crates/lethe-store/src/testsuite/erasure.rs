//! Erasure: subject selections, their removal, key destruction and legal holds.

use lethe_core::policy::Action;
use lethe_core::{Classification, TenantId};

use super::*;
use crate::{RecordQuery, Store, StoreError, StoredKey};

pub(super) fn pseudo(s: u8) -> [u8; 32] {
    [s; 32]
}

pub(super) fn selection(tenant: &str, subjects: &[u8]) -> crate::Selection {
    crate::Selection {
        tenant: TenantId::new(tenant).unwrap(),
        pseudonyms: subjects.iter().map(|s| pseudo(*s)).collect(),
        stream: None,
        scope: None,
        since_us: None,
        until_us: None,
        action: Action::Delete,
        exhaustive: false,
        stored_up_to: None,
    }
}

/// (stream, seq) of every row a selection lists.
pub(super) fn listed(sel: &crate::Selected) -> Vec<(String, u64)> {
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

pub(super) fn subject_rows(s: &dyn Store, tenant: &str, subject: u8) -> Vec<(String, u64)> {
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

pub(super) fn hold(tenant: &str, subject: Option<u8>, scope: Option<&str>) -> lethe_core::hold::HoldScope {
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
pub fn a_subject_selection_finds_exactly_the_subjects_rows_and_leaves_held_ones(h: &dyn Harness) {
    let s = h.open(0);
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
    let s = h.open(0);
    assert_eq!(
        listed(&s.select(&selection("acme", &[7]), &[]).unwrap()),
        subject_rows(&*s, "acme", 7)
    );
}

/// In a period holding thousands of one tenant's records (a busy day), a
/// subject's rows are found exactly — by a selection, by a query naming
/// the subject, with a limit — and erased exactly, whatever order they
/// arrived in; other tenants' rows in the same period are never listed.
pub fn a_subjects_rows_are_found_exactly_among_thousands_in_one_period(h: &dyn Harness) {
    let s = h.open(0);
    let g = |tenant: &str| GroupKey {
        tenant: TenantId::new(tenant).unwrap(),
        stream: "audit:1".parse().unwrap(),
        scope: "web".into(),
        classification: Classification::Internal,
    };
    let (acme, beta) = (g("acme"), g("beta"));
    // 5,000 records of acme and 1,000 of beta on one day, in batches of 500.
    let mut recs: Vec<NewRecord> = (0..5_000u64)
        .map(|i| {
            rec(
                i,
                &acme,
                T0 + (i as i64 * 7_919 % 5_000) * 1_000_000,
                Some((i % 13) as u8),
            )
        })
        .collect();
    recs.extend((0..1_000u64).map(|i| rec(10_000 + i, &beta, T0 + i as i64, Some(3))));
    for chunk in recs.chunks(500) {
        append_to(&*s, chunk).unwrap();
    }
    let truth = |s: &dyn Store, tenant: &str, subject: u8| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = all(s, tenant)
            .into_iter()
            .filter(|r| r.record.pseudonym == Some(pseudo(subject)))
            .map(|r| (r.record.group.stream.to_string(), r.seq))
            .collect();
        v.sort();
        v
    };
    let want = truth(&*s, "acme", 3);
    assert_eq!(want.len(), 385, "5,000 records over 13 subjects");
    assert_eq!(listed(&s.select(&selection("acme", &[3]), &[]).unwrap()), want);
    assert_eq!(subject_rows(&*s, "acme", 3), want);
    let mut q = RecordQuery::tenant(TenantId::new("acme").unwrap());
    q.pseudonym = Some(pseudo(3));
    q.limit = Some(10);
    let mut newest = Vec::new();
    s.query(&q, &mut |r| {
        newest.push(r.record.ts_us);
        true
    })
    .unwrap();
    let mut ts: Vec<i64> = all(&*s, "acme")
        .iter()
        .filter(|r| r.record.pseudonym == Some(pseudo(3)))
        .map(|r| r.record.ts_us)
        .collect();
    ts.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(newest, ts[..10], "the ten newest of the subject's records");
    let many = s.select(&selection("acme", &[1, 3, 12]), &[]).unwrap();
    let mut union: Vec<(String, u64)> = [1, 3, 12].iter().flat_map(|&x| truth(&*s, "acme", x)).collect();
    union.sort();
    assert_eq!(listed(&many), union);
    let sel = s.select(&selection("acme", &[3]), &[]).unwrap();
    s.apply_removal(&sel.chains, &no_progress).unwrap();
    assert!(subject_rows(&*s, "acme", 3).is_empty());
    assert_eq!(all(&*s, "acme").len(), 5_000 - 385);
    assert_eq!(
        truth(&*s, "beta", 3).len(),
        1_000,
        "the other tenant's rows of the same day stay"
    );
}

/// Applying a selection tombstones exactly its rows: the subject is gone
/// from queries, every other record stays, counts drop by exactly that.
pub fn removing_a_selection_takes_exactly_those_rows_from_queries_and_counts(h: &dyn Harness) {
    let s = h.open(0);
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

/// When a removal takes a group's oldest and newest records, the group's
/// counts and time bounds are those of the records left: anonymized ones
/// still count as stored, tombstones do not, and a group left with none
/// has no time bounds.
pub fn removals_move_a_groups_time_bounds_and_counts_to_what_is_left(h: &dyn Harness) {
    let s = h.open(0);
    let t = TenantId::new("acme").unwrap();
    let g = key("acme", "audit:1", "web", Classification::Internal);
    let sec = 1_000_000;
    append_to(
        &*s,
        &[
            rec(1, &g, T0, Some(4)),
            rec(2, &g, T0 + 10 * sec, None),
            rec(3, &g, T0 + 20 * sec, Some(5)),
            rec(4, &g, T0 + 30 * sec, Some(4)),
        ],
    )
    .unwrap();
    let stats = |s: &dyn Store| {
        let v = s.stats(Some(&t)).unwrap();
        assert_eq!(v.len(), 1, "{v:?}");
        let g = &v[0];
        (g.records, g.anonymized, g.tombstones, g.oldest_us, g.newest_us)
    };
    let remove = |subjects: &[u8], action: Action| {
        let sel = s
            .select(
                &crate::Selection {
                    action,
                    ..selection("acme", subjects)
                },
                &[],
            )
            .unwrap();
        s.apply_removal(&sel.chains, &no_progress).unwrap()
    };
    assert_eq!(remove(&[4], Action::Delete).deleted, 2);
    assert_eq!(stats(&*s), (2, 0, 2, Some(T0 + 10 * sec), Some(T0 + 20 * sec)));
    assert_eq!(remove(&[5], Action::Anonymize).anonymized, 1);
    assert_eq!(stats(&*s), (2, 1, 2, Some(T0 + 10 * sec), Some(T0 + 20 * sec)));
    // Everything left, the anonymized record among it.
    assert_eq!(remove(&[], Action::Delete).deleted, 2);
    assert_eq!(stats(&*s), (0, 0, 4, None, None));
}

/// A destroyed key reads back without its wrapped bytes, its reference no
/// longer finds it, and destroying it again does nothing.
pub fn destroyed_keys_are_gone_for_good_and_no_longer_name_their_subject(h: &dyn Harness) {
    let s = h.open(0);
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
    let s = h.open(0);
    assert_eq!(s.data_keys(&[21]).unwrap()[0].wrapped, None, "destroyed for good");
}

/// A batch whose records are encrypted under a key destroyed since the
/// batch was prepared is refused whole ([`StoreError::KeyDestroyed`]) and
/// stores nothing: no record is ever acknowledged under a destroyed key.
pub fn a_batch_under_a_destroyed_key_is_refused_whole(h: &dyn Harness) {
    let s = h.open(0);
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
pub fn holds_are_stored_listed_and_released(h: &dyn Harness) {
    let s = h.open(0);
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
pub fn retention_plans_leave_held_records_and_never_drop_their_partition(h: &dyn Harness) {
    let s = h.open(0);
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
