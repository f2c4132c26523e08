//! Appending and reading records: order, idempotence, sequence numbers, filters, tenant isolation.

use lethe_core::{Classification, TenantId};

use super::*;
use crate::{NewRecord, RecordQuery};

/// Newest first by default, oldest first when asked.
pub fn append_then_query_returns_records_newest_first(h: &dyn Harness) {
    let s = h.open(0);
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
pub fn appending_the_same_id_twice_stores_it_once(h: &dyn Harness) {
    let s = h.open(0);
    let g = key("acme", "audit:1", "web", Classification::Internal);
    let recs: Vec<_> = (0..5).map(|i| rec(i, &g, T0 + i as i64, None)).collect();
    append_to(&*s, &recs).unwrap();
    let r = append_to(&*s, &recs[2..]).unwrap();
    assert_eq!((r.inserted, r.duplicates), (0, 3));
    assert_eq!(all(&*s, "acme").len(), 5);
}

/// Two tenants may send records with the same id (ids are theirs to
/// choose): each tenant gets its own, wherever the backend keeps them, and
/// a tenant's retry is still a duplicate.
pub fn the_same_id_in_two_tenants_is_two_records(h: &dyn Harness) {
    let s = h.open(0);
    let a = key("acme", "audit:1", "web", Classification::Internal);
    let b = key("globex", "audit:1", "web", Classification::Internal);
    let ra = rec(7, &a, T0, Some(1));
    let mut rb = rec(7, &b, T0, Some(2));
    rb.id = ra.id;
    rb.plain = "{\"globex\":true}".into();
    let r = append_to(&*s, &[ra.clone(), rb.clone()]).unwrap();
    assert_eq!((r.inserted, r.duplicates), (2, 0));
    let r = append_to(&*s, &[rb.clone()]).unwrap();
    assert_eq!((r.inserted, r.duplicates), (0, 1));
    let got_a = all(&*s, "acme");
    let got_b = all(&*s, "globex");
    assert_eq!(got_a.iter().map(|r| &r.record).collect::<Vec<_>>(), [&ra]);
    assert_eq!(got_b.iter().map(|r| &r.record).collect::<Vec<_>>(), [&rb]);
    // Looking the id up finds one of them, each under its own tenant.
    let (t, _, seq) = s.locate(&ra.id).unwrap().expect("found");
    let mine = if t == "acme" { &got_a } else { &got_b };
    assert_eq!(mine[0].seq, seq);
}

/// Several writers' batches appended as one group: each batch is stored as
/// if alone, gets its own counts (an id in two batches of the group is
/// stored once and counted a duplicate in the later one), chains stay dense
/// and in group order, and what reads back is every record.
pub fn a_group_of_batches_is_stored_as_each_alone_with_its_own_counts(h: &dyn Harness) {
    let s = h.open(0);
    let a = key("acme", "audit:1", "web", Classification::Internal);
    let b = key("globex", "requests:1", "chat", Classification::Internal);
    let one: Vec<_> = (0..4).map(|i| rec(i, &a, T0 + i as i64, None)).collect();
    let two: Vec<_> = (10..13).map(|i| rec(i, &b, T0 - DAY + i as i64, None)).collect();
    // The third repeats the first's record 3 and adds two of its own.
    let three: Vec<_> = vec![one[3].clone(), rec(20, &a, T0 + 20, None), rec(21, &b, T0 + 21, None)];
    let already = rec(30, &a, T0 + 30, None);
    append_to(&*s, std::slice::from_ref(&already)).unwrap();
    let four = vec![already.clone()];
    let (b1, b2, b3, b4) = (batch_of(&one), batch_of(&two), batch_of(&three), batch_of(&four));
    let reports = s.append_group(&[&b1, &b2, &b3, &b4]).unwrap();
    let counts: Vec<(u64, u64)> = reports.iter().map(|r| (r.inserted, r.duplicates)).collect();
    assert_eq!(counts, vec![(4, 0), (3, 0), (2, 1), (0, 1)]);
    let got_a = all(&*s, "acme");
    let got_b = all(&*s, "globex");
    assert_eq!((got_a.len(), got_b.len()), (1 + 4 + 1, 3 + 1));
    let mut seqs: Vec<u64> = got_a.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=6).collect::<Vec<_>>(),
        "dense, with no gap for the duplicate"
    );
    let seq_of = |id: [u8; 16]| got_a.iter().find(|r| r.record.id == id).map(|r| r.seq);
    assert!(
        seq_of(one[0].id) < seq_of(three[1].id),
        "a later batch's records follow an earlier batch's in the chain"
    );
    assert_eq!(s.append_group(&[]).unwrap(), vec![]);
}

/// Sequence numbers have no gaps, even around duplicates.
pub fn sequence_numbers_are_dense_per_tenant_and_stream(h: &dyn Harness) {
    let s = h.open(0);
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
pub fn query_filters_by_stream_scope_subject_time_and_limit(h: &dyn Harness) {
    let s = h.open(0);
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
pub fn tenants_never_see_each_others_records(h: &dyn Harness) {
    let s = h.open(0);
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
