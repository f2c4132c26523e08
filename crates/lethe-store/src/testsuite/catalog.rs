//! The catalog behind the store: keys, policy versions, the ledger, capture counts, reopening.

use lethe_core::policy::GroupKey;
use lethe_core::{Classification, TenantId};

use super::*;
use crate::{StoreError, StoredKey};

/// Key storage: first writer wins; a batch whose new key conflicts stores nothing.
pub fn keys_are_first_writer_wins_and_stable(h: &dyn Harness) {
    let s = h.open(0);
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

/// A group is all or nothing: when one batch's new key conflicts with a
/// stored one, no record and no key of any batch in the group is stored,
/// and each batch appended alone afterwards finds the culprit.
pub fn a_group_with_one_conflicting_batch_stores_nothing(h: &dyn Harness) {
    let s = h.open(0);
    let t = TenantId::new("acme").unwrap();
    let g = super::key("acme", "audit:1", "web", Classification::Internal);
    let key = |id: i64, r: &[u8]| wrapped_key(&t, id, r);
    s.append(&Batch {
        new_keys: vec![key(1, b"s:1")],
        ..batch_of(&[rec(1, &g, T0, None)])
    })
    .unwrap();
    let good = Batch {
        new_keys: vec![key(2, b"s:2")],
        ..batch_of(&[rec(2, &g, T0, None), rec(3, &g, T0, None)])
    };
    let bad = Batch {
        new_keys: vec![key(3, b"s:1")],
        ..batch_of(&[rec(4, &g, T0, None)])
    };
    let r = s.append_group(&[&good, &bad]);
    assert!(matches!(r, Err(StoreError::KeyConflict)), "{r:?}");
    assert_eq!(all(&*s, "acme").len(), 1, "nothing of the group is stored");
    assert_eq!(s.data_keys(&[2, 3]).unwrap(), vec![], "nor any of its keys");
    assert_eq!(s.append(&good).unwrap().inserted, 2);
    assert!(matches!(s.append(&bad), Err(StoreError::KeyConflict)));
    assert_eq!(all(&*s, "acme").len(), 3);
}

/// A key carried by several batches (made by one writer, used by others
/// before its batch was stored) is stored by whichever commits first and
/// left alone by the rest, and listed once in the ledger; a key under the
/// same id with another reference is a conflict, and a carried key since
/// destroyed refuses its batch.
pub fn a_key_carried_by_several_batches_is_stored_once_and_entered_once(h: &dyn Harness) {
    let s = h.open(0);
    let t = TenantId::new("acme").unwrap();
    let g = super::key("acme", "audit:1", "web", Classification::Internal);
    let key = |id: i64, r: &[u8]| wrapped_key(&t, id, r);
    let with_key = |k: StoredKey, ids: &[u64]| {
        let recs: Vec<NewRecord> = ids
            .iter()
            .map(|&i| NewRecord {
                key_id: Some(k.id),
                ..rec(i, &g, T0, None)
            })
            .collect();
        Batch {
            new_keys: vec![k],
            ..batch_of(&recs)
        }
    };
    // The later batch commits first, then the maker; then two carriers in one group.
    let first = s.append(&with_key(key(5, b"s:1"), &[2])).unwrap();
    assert_eq!((first.inserted, first.keys_stored), (1, 1));
    let maker = s.append(&with_key(key(5, b"s:1"), &[1])).unwrap();
    assert_eq!((maker.inserted, maker.keys_stored), (1, 0), "already stored");
    let (a, b) = (with_key(key(6, b"s:2"), &[3]), with_key(key(6, b"s:2"), &[4]));
    let r = s.append_group(&[&a, &b]).unwrap();
    assert_eq!((r[0].inserted, r[1].inserted), (1, 1));
    assert_eq!(
        (r[0].keys_stored, r[1].keys_stored),
        (1, 0),
        "counted for the copy stored"
    );
    assert_eq!(s.data_keys(&[5, 6]).unwrap(), vec![key(5, b"s:1"), key(6, b"s:2")]);
    let listed: Vec<serde_json::Value> = s
        .ledger_of_kinds(&["key.data_created"])
        .unwrap()
        .iter()
        .flat_map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.body).unwrap()["ids"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect();
    assert_eq!(
        listed,
        vec![serde_json::json!(5), serde_json::json!(6)],
        "each key entered once"
    );
    // Id 5 under another reference: another writer's key.
    let r = s.append(&with_key(key(5, b"s:9"), &[7]));
    assert!(matches!(r, Err(StoreError::KeyConflict)), "{r:?}");
    s.destroy_keys(&[5], T0).unwrap();
    let r = s.append(&with_key(key(5, b"s:1"), &[8]));
    assert!(matches!(r, Err(StoreError::KeyDestroyed)), "{r:?}");
    assert_eq!(all(&*s, "acme").len(), 4, "nothing of the refused batches is stored");
}

/// A live data key of `tenant` as the suite stores it.
fn wrapped_key(tenant: &TenantId, id: i64, key_ref: &[u8]) -> StoredKey {
    StoredKey {
        id,
        tenant: tenant.clone(),
        key_ref: key_ref.to_vec(),
        wrapped: Some(b"w".to_vec()),
    }
}

/// The same policies get the same version; a change gets a new one.
pub fn policy_snapshots_are_versioned_by_content(h: &dyn Harness) {
    let s = h.open(0);
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
pub fn the_ledger_appends_in_order_and_reads_back_exactly(h: &dyn Harness) {
    use lethe_core::crypto::SecretKey;
    use lethe_core::ledger::{verify, Draft};
    let key = SecretKey::generate();
    let mut written = Vec::new();
    {
        let s = h.open(0);
        assert_eq!(s.ledger_head().unwrap(), 0, "an empty ledger");
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
    let s = h.open(0);
    let got = s.ledger(1, 100).unwrap();
    assert_eq!(got, written);
    assert_eq!(verify(&key, &got).unwrap().0, 5);
    assert_eq!(s.ledger(4, 1).unwrap(), written[3..4].to_vec());
    assert_eq!(s.ledger_head().unwrap(), 5);
}

/// Capture mode `none` is counted.
pub fn capture_drops_are_counted(h: &dyn Harness) {
    let s = h.open(0);
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
pub fn everything_survives_reopening(h: &dyn Harness) {
    let (recs, stats, key) = {
        let s = h.open(0);
        random_store(&*s, 9, 800);
        let t = TenantId::new("acme").unwrap();
        s.put_tenant_key(&t, b"w", 1).unwrap();
        s.record_run("cleanup", 1, 2, "success", "{}").unwrap();
        (all(&*s, "acme"), s.stats(None).unwrap(), s.tenant_key(&t).unwrap())
    };
    let s = h.open(0);
    assert_eq!(all(&*s, "acme"), recs);
    // Bytes are what the disk holds when asked (a backend may compact its
    // logs on close): everything else is the same.
    let counts = |v: Vec<crate::GroupStats>| {
        v.into_iter()
            .map(|g| crate::GroupStats { bytes: 0, ..g })
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(s.stats(None).unwrap()), counts(stats));
    assert_eq!(s.tenant_key(&TenantId::new("acme").unwrap()).unwrap(), key);
    assert_eq!(s.runs(10).unwrap().len(), 1);
    let g = key_of(&recs[0]);
    let r = append_to(&*s, &[rec(999_999, &g, T0, None)]).unwrap();
    assert_eq!(r.inserted, 1);
}

/// A record may only be stored under a key that is stored and live or that
/// its own batch makes: a batch naming a key that is nowhere (made for
/// another batch that never committed) is refused whole, and the refusal
/// says to prepare it again.
pub fn a_batch_under_a_key_that_was_never_stored_is_refused_whole(h: &dyn Harness) {
    let s = h.open(0);
    let g = key("acme", "audit:1", "web", Classification::Internal);
    append_to(&*s, &[rec(1, &g, T0, Some(1))]).unwrap();
    let mut orphan = rec(2, &g, T0 + 1, Some(2));
    orphan.key_id = Some(987_654_321);
    // No key was destroyed: the refusal does not depend on one.
    let e = s.append(&batch_of(&[rec(3, &g, T0 + 2, Some(1)), orphan])).unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(all(&*s, "acme").len(), 1, "nothing of the batch is stored");
}
