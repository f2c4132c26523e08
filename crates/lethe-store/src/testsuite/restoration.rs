//! Restorations: archived records brought back as copies outside every chain.

use lethe_core::policy::Action;
use lethe_core::{Classification, TenantId};

use super::*;
use crate::{NewRecord, RecordQuery, Store};

pub(super) fn restored_of(s: &dyn Store, q: &RecordQuery) -> Vec<(i64, String, u64)> {
    let mut out = Vec::new();
    s.query_restored(q, &mut |id, r| {
        out.push((id, r.record.group.stream.to_string(), r.seq));
        true
    })
    .unwrap();
    out
}

pub(super) fn as_stored(records: &[NewRecord], first_seq: u64) -> Vec<crate::StoredRecord> {
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
pub fn restorations_are_invisible_until_finished_then_queryable_erasable_and_dropped_whole(h: &dyn Harness) {
    let s = h.open(0);
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
    let s = h.open(0);
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
    h: &dyn Harness,
) {
    let g = key("acme", "audit:1", "web", Classification::Internal);
    let acme = TenantId::new("acme").unwrap();
    let stored = as_stored(&(0..50).map(|i| rec(i, &g, T0 + i as i64, None)).collect::<Vec<_>>(), 1);
    let s = h.open(0);
    let a = s.begin_restoration(&acme, T0, T0 + DAY, "{}").unwrap();
    s.add_restored(a, &stored).unwrap();
    let b = s.begin_restoration(&acme, T0, T0 + DAY, "{}").unwrap();
    s.add_restored(b, &stored[..20]).unwrap();
    s.set_meta(&format!("restoration.{b}"), Some("7")).unwrap();
    let used = s.disk_bytes().unwrap();
    drop(s);
    let s = h.open(0);
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
