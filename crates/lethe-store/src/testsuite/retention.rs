//! Retention: exact plans, whole-partition drops and their disk space, anonymization, changed windows, stats.

use lethe_core::policy::Action;
use lethe_core::{Classification, TenantId};

use super::*;
use crate::RecordQuery;

/// The plan is exactly what apply does, per group, on randomized data and policies.
pub fn dry_run_plan_equals_what_apply_then_does_on_random_data(h: &dyn Harness) {
    for seed in 1..=4u64 {
        let s = h.open(seed as u32);
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
pub fn a_second_sweep_right_after_does_nothing(h: &dyn Harness) {
    let s = h.open(0);
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
pub fn whole_expired_partitions_return_their_disk_space(h: &dyn Harness) {
    let s = h.open(0);
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
pub fn anonymize_keeps_plain_fields_and_drops_body_and_pseudonym(h: &dyn Harness) {
    let s = h.open(0);
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
pub fn shortening_a_window_applies_to_stored_records_and_lengthening_never_resurrects(h: &dyn Harness) {
    let s = h.open(0);
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
pub fn stats_report_records_ages_and_partitions(h: &dyn Harness) {
    let s = h.open(0);
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

/// The groups listed without statistics are exactly those the statistics
/// list, in the same order, for the whole store and for one tenant — also
/// after every record of a group was removed.
pub fn groups_are_the_groups_the_statistics_list(h: &dyn Harness) {
    let s = h.open(0);
    let groups = random_store(&*s, 5, 600);
    let keys = |st: Vec<crate::GroupStats>| st.into_iter().map(|g| g.key).collect::<Vec<_>>();
    let all = keys(s.stats(None).unwrap());
    assert!(all.len() > 2, "{all:?}");
    assert_eq!(s.groups(None).unwrap(), all);
    let t = TenantId::new("acme").unwrap();
    let acme = keys(s.stats(Some(&t)).unwrap());
    assert!(!acme.is_empty() && acme.len() < all.len(), "{acme:?}");
    assert_eq!(s.groups(Some(&t)).unwrap(), acme);
    // A group whose every record is removed is no longer listed, by
    // either (whatever a backend remembers of the groups a chain held).
    let gone = groups[4].clone();
    let target = targets(std::slice::from_ref(&gone), &[(-1, Action::Delete)], T0);
    s.apply_retention(&target, &no_progress).unwrap();
    let left = keys(s.stats(None).unwrap());
    assert!(!left.contains(&gone) && left.len() == all.len() - 1, "{left:?}");
    assert_eq!(s.groups(None).unwrap(), left);
    let beta = TenantId::new("beta").unwrap();
    assert_eq!(s.groups(Some(&beta)).unwrap(), keys(s.stats(Some(&beta)).unwrap()));
}

/// A plan over many tenants (which a backend may read in bulk) is, tenant
/// for tenant, the plan of each alone, and applying it removes exactly it.
pub fn a_plan_over_many_tenants_is_each_tenants_own_plan_and_apply_does_exactly_it(h: &dyn Harness) {
    let s = h.open(0);
    let tenants: Vec<String> = (1..=7).map(|i| format!("t{i}")).collect();
    let mut rng = Lcg(11);
    let mut batch = Vec::new();
    for i in 0..2400u64 {
        let tenant = &tenants[rng.next(tenants.len() as u64) as usize];
        let (stream, scope, class) = match rng.next(3) {
            0 => ("audit:1", "web", Classification::Internal),
            1 => ("audit:1", "admin", Classification::Restricted),
            _ => ("requests:1", "chat", Classification::Confidential),
        };
        let g = key(tenant, stream, scope, class);
        let ts = T0 - rng.next(40) as i64 * DAY - rng.next(DAY as u64) as i64;
        batch.push(rec(i, &g, ts, Some(rng.next(9) as u8)));
        if batch.len() == 300 {
            append_to(&*s, &batch).unwrap();
            batch.clear();
        }
    }
    append_to(&*s, &batch).unwrap();
    let groups = s.groups(None).unwrap();
    let t = targets(
        &groups,
        &[(10, Action::Delete), (25, Action::Delete), (15, Action::Anonymize)],
        T0,
    );
    let whole = s.plan_removal(&t, &[]).unwrap();
    assert!(whole.chains.len() > 8, "{} chains", whole.chains.len());
    for tenant in &tenants {
        let mine: Vec<RetentionTarget> = t.iter().filter(|x| x.key.tenant.as_str() == tenant).cloned().collect();
        let alone = s.plan_removal(&mine, &[]).unwrap();
        let whole_chains: Vec<_> = whole.chains.iter().filter(|c| &c.tenant == tenant).collect();
        assert_eq!(alone.chains.iter().collect::<Vec<_>>(), whole_chains, "{tenant}");
        for e in &alone.effects {
            let w = whole.effects.iter().find(|w| w.target == e.target).unwrap();
            // Bytes differ by design: a shared file comes back only when
            // every partition in it goes, which one tenant's plan never sees.
            assert_eq!(
                (e.records, e.partitions_dropped, e.held),
                (w.records, w.partitions_dropped, w.held),
                "{tenant} {:?}",
                e.target.key
            );
        }
    }
    let before: usize = tenants.iter().map(|t| all(&*s, t).len()).sum();
    let applied = s.apply_removal(&whole.chains, &no_progress).unwrap();
    let planned = |a: Action| -> u64 {
        whole
            .effects
            .iter()
            .filter(|e| e.target.action == a)
            .map(|e| e.records)
            .sum()
    };
    assert!(planned(Action::Delete) > 0 && planned(Action::Anonymize) > 0);
    assert_eq!(
        (applied.deleted, applied.anonymized),
        (planned(Action::Delete), planned(Action::Anonymize))
    );
    let after: Vec<_> = tenants.iter().flat_map(|t| all(&*s, t)).collect();
    assert_eq!(before - after.len(), applied.deleted as usize);
    for e in &t {
        let expired = |r: &&crate::StoredRecord| r.record.group == e.key && r.record.ts_us < e.cutoff_us;
        match e.action {
            Action::Delete => assert_eq!(after.iter().filter(expired).count(), 0),
            Action::Anonymize => assert!(after.iter().filter(expired).all(|r| r.anonymized)),
        }
    }
    assert!(s.plan_removal(&t, &[]).unwrap().effects.iter().all(|e| e.records == 0));
}
