//! The Store conformance suite against the embedded SQLite backend.

use lethe_store::testsuite::SqliteHarness;
use lethe_store::{SqliteStore, Store};

lethe_store::conformance!(SqliteHarness::new());

/// acme's `audit:1` records in scope `web`.
fn acme_audit() -> lethe_core::policy::GroupKey {
    lethe_store::testsuite::key("acme", "audit:1", "web", lethe_core::Classification::Internal)
}

/// The partition files of `audit:1` in the default expiry class.
fn audit_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("partitions/audit-v1/default"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "db"))
        .collect()
}

/// SQLite-specific: rows past the committed chain head (a batch in flight in
/// another process, or left by a crash) are invisible to queries.
#[test]
fn rows_of_an_uncommitted_batch_are_never_visible() {
    use lethe_core::TenantId;
    use lethe_store::testsuite::{append_to, rec, T0};
    use lethe_store::RecordQuery;
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), 86_400).unwrap();
    let g = acme_audit();
    append_to(&s, &[rec(1, &g, T0, None), rec(2, &g, T0 + 1, None)]).unwrap();
    // Another writer's batch, written to the partition but not yet committed in the catalog.
    let part = audit_files(dir.path()).remove(0);
    let c = rusqlite::Connection::open(&part).unwrap();
    // Partition 1, sequence number 3.
    c.execute(
        "INSERT INTO records(seq,part,id,ts,received,scope,class,plain,prev,mac)
         VALUES(?2, 1, x'00112233445566778899aabbccddeeff', ?1, ?1, 'web', 1, '{}', zeroblob(32), zeroblob(32))",
        [T0 + 2, (1 << 36) + 3],
    )
    .unwrap();
    let mut seen = Vec::new();
    s.query(&RecordQuery::tenant(TenantId::new("acme").unwrap()), &mut |r| {
        seen.push(r.seq);
        true
    })
    .unwrap();
    assert_eq!(seen, [2, 1]);
}

/// SQLite-specific: the row reader opens quiet partition files immutable
/// (no locks, no `-shm`/`-wal` files). A write to the file while it scans
/// must not hand on stale rows: every row is visited once, and rows changed
/// before their chunk was checked come back as changed.
#[test]
fn a_partition_written_while_the_reader_scans_it_is_read_again_consistently() {
    use lethe_core::policy::Action;
    use lethe_store::row::DELETED;
    use lethe_store::testsuite::{append_to, rec, T0};
    use lethe_store::{ChainRemoval, RowRemoval};
    let dir = tempfile::tempdir().unwrap();
    let g = acme_audit();
    {
        let s = SqliteStore::open(dir.path(), 86_400).unwrap();
        let recs: Vec<_> = (0..10_000).map(|i| rec(i, &g, T0 + i as i64, None)).collect();
        for chunk in recs.chunks(2_000) {
            append_to(&s, chunk).unwrap();
        }
    }
    // Reopened: the partition's log was checkpointed into the file on close.
    let s = SqliteStore::open(dir.path(), 86_400).unwrap();
    let seg = s.segments("acme", "audit:1").unwrap()[0].clone();
    let part = seg.partition;
    let dir_files = |d: &std::path::Path| {
        std::fs::read_dir(d.join("partitions/audit-v1/default"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(dir_files(dir.path()).len(), 1, "{:?}", dir_files(dir.path()));
    let mut reader = s.row_reader().unwrap();
    assert_eq!(reader.row_count(part).unwrap(), 10_000);
    assert_eq!(dir_files(dir.path()).len(), 1, "an immutable read creates no -shm/-wal");
    let mut seen = Vec::new();
    let mut wrote = false;
    reader
        .scan(part, 1, u64::MAX, &mut |row| {
            if !wrote {
                // Another writer tombstones rows ahead of the scan.
                let removal = ChainRemoval {
                    tenant: "acme".into(),
                    stream: "audit:1".into(),
                    dropped: vec![],
                    rows: vec![RowRemoval {
                        partition_start_us: T0 - T0.rem_euclid(86_400_000_000),
                        action: Action::Delete,
                        seqs: vec![[6_000, 6_009]],
                    }],
                };
                s.apply_removal(&[removal], &|_, _| {}).unwrap();
                wrote = true;
            }
            seen.push((row.seq, row.state));
        })
        .unwrap();
    assert_eq!(seen.len(), 10_000, "every row once");
    assert!(seen.windows(2).all(|w| w[0].0 + 1 == w[1].0));
    let deleted: Vec<u64> = seen.iter().filter(|(_, st)| *st == DELETED).map(|(q, _)| *q).collect();
    assert_eq!(
        deleted,
        (6_000..=6_009).collect::<Vec<_>>(),
        "rows changed ahead of the scan are read as changed"
    );
}

/// Allocated bytes of each file (not directory) under `dir`.
fn file_blocks(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, u64> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), m.blocks() * 512);
            }
        }
    }
    out
}

/// SQLite-specific: the bytes a plan says it frees, the bytes the cleanup
/// says it freed, what the partition files give back, and `stats`' bytes
/// per group are one figure, to the byte — and the catalog gives back the
/// pages the dropped partitions' bookkeeping held.
#[test]
fn byte_figures_agree_with_the_disk_and_the_catalog_shrinks_after_a_cleanup() {
    use lethe_core::policy::{Action, GroupKey};
    use lethe_core::{Classification, TenantId};
    use lethe_store::testsuite::{append_to, rec, T0};
    use lethe_store::RetentionTarget;
    const DAY: i64 = 86_400_000_000;
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), 86_400).unwrap();
    // Twenty tenants sharing every day's file: 4,000 partitions.
    let groups: Vec<GroupKey> = (0..20)
        .map(|t| GroupKey {
            tenant: TenantId::new(&format!("t{t:02}")).unwrap(),
            stream: "audit:1".parse().unwrap(),
            scope: "web".into(),
            classification: Classification::Internal,
        })
        .collect();
    let mut n = 0;
    for day in 0..200 {
        let recs: Vec<_> = (0..60)
            .map(|i| {
                n += 1;
                rec(
                    n,
                    &groups[i % 20],
                    T0 - day * DAY - i as i64 * 1000,
                    Some((i % 250) as u8),
                )
            })
            .collect();
        append_to(&s, &recs).unwrap();
    }
    let parts = dir.path().join("partitions");
    let catalog = dir.path().join("catalog.db");
    let stats_bytes = |s: &SqliteStore| s.stats(None).unwrap().iter().map(|g| g.bytes).sum::<u64>();
    let total = |m: &std::collections::BTreeMap<std::path::PathBuf, u64>| m.values().sum::<u64>();
    assert_eq!(stats_bytes(&s), total(&file_blocks(&parts)), "stats before the cleanup");
    // The catalog and its write-ahead log, as the disk has them.
    let catalog_bytes = || {
        ["", "-wal"]
            .iter()
            .filter_map(|x| std::fs::metadata(format!("{}{x}", catalog.display())).ok())
            .map(|m| m.len())
            .sum::<u64>()
    };
    let catalog_before = catalog_bytes();

    let targets: Vec<RetentionTarget> = groups
        .iter()
        .map(|g| RetentionTarget {
            key: g.clone(),
            rule: "r".into(),
            action: Action::Delete,
            // Mid-day: one partition straddles the cutoff (row-level work, no bytes).
            cutoff_us: T0 - 10 * DAY + DAY / 2,
        })
        .collect();
    let plan = s.plan_removal(&targets, &[]).unwrap();
    let planned: u64 = plan.effects.iter().map(|e| e.bytes_freed).sum();
    let before = file_blocks(&parts);
    let done = s.apply_removal(&plan.chains, &|_, _| {}).unwrap();
    let after = file_blocks(&parts);
    assert!(done.partitions_dropped >= 189, "{}", done.partitions_dropped);
    assert_eq!(planned, done.bytes_freed, "the dry run's bytes are the cleanup's");
    // What the removed files held (kept files change size too: row-level
    // work, checkpoints — that is not space freed).
    let gone: u64 = before
        .iter()
        .filter(|(p, _)| !after.contains_key(*p))
        .map(|(_, b)| b)
        .sum();
    assert_eq!(
        gone, done.bytes_freed,
        "the cleanup's bytes are what the removed files held"
    );
    assert_eq!(stats_bytes(&s), total(&after), "stats after the cleanup");

    let catalog_after = catalog_bytes();
    assert!(
        catalog_after * 2 < catalog_before,
        "the catalog kept its pages: {catalog_before} -> {catalog_after} bytes"
    );
    // And it still works.
    append_to(&s, &[rec(n + 1, &groups[0], T0, Some(1))]).unwrap();
    drop(s);
    let s = SqliteStore::open(dir.path(), 86_400).unwrap();
    assert_eq!(
        s.stats(None).unwrap().iter().map(|g| g.records).sum::<u64>(),
        10 * 60 + 1
    );
}

/// SQLite-specific: tenants of one stream, day and expiry class share a
/// file. A partition whose tenant's window ended is dropped from it by
/// deleting only its rows (the other tenant keeps every record, sealed and
/// readable); when the last partition of the file goes, the file goes —
/// disk returned at once, and the plan said so.
#[test]
fn a_partition_dropped_from_a_shared_file_takes_only_its_rows_and_the_file_goes_with_the_last() {
    use lethe_core::policy::{Action, GroupKey};
    use lethe_core::{Classification, TenantId};
    use lethe_store::testsuite::{append_to, rec, T0};
    use lethe_store::{RecordQuery, RetentionTarget};
    const DAY: i64 = 86_400_000_000;
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), 86_400).unwrap();
    let g = |t: &str| GroupKey {
        tenant: TenantId::new(t).unwrap(),
        stream: "audit:1".parse().unwrap(),
        scope: "web".into(),
        classification: Classification::Internal,
    };
    let (a, b) = (g("acme"), g("globex"));
    let mut recs = Vec::new();
    for i in 0..50u64 {
        recs.push(rec(i, &a, T0 + i as i64, Some(1)));
        recs.push(rec(100 + i, &b, T0 + i as i64, Some(2)));
    }
    append_to(&s, &recs).unwrap();
    let files = || -> Vec<std::path::PathBuf> {
        file_blocks(&dir.path().join("partitions"))
            .into_keys()
            .filter(|p| p.extension().is_some_and(|x| x == "db"))
            .collect()
    };
    assert_eq!(files().len(), 1, "both tenants' day in one file");
    let file = files().remove(0);
    let rows = || -> i64 {
        rusqlite::Connection::open(&file)
            .unwrap()
            .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
            .unwrap()
    };
    let expire = |k: &GroupKey| RetentionTarget {
        key: k.clone(),
        rule: "r".into(),
        action: Action::Delete,
        cutoff_us: T0 + 2 * DAY,
    };
    let count = |t: &str| {
        let mut n = 0;
        s.query(&RecordQuery::tenant(TenantId::new(t).unwrap()), &mut |_| {
            n += 1;
            true
        })
        .unwrap();
        n
    };

    // acme's window ended; globex keeps its records.
    let plan = s.plan_removal(&[expire(&a)], &[]).unwrap();
    assert_eq!(plan.effects[0].records, 50);
    assert_eq!(plan.effects[0].bytes_freed, 0, "the file stays: no disk comes back yet");
    let done = s.apply_removal(&plan.chains, &|_, _| {}).unwrap();
    assert_eq!((done.deleted, done.partitions_dropped, done.bytes_freed), (50, 1, 0));
    assert_eq!(rows(), 50, "only acme's rows left the file");
    assert_eq!((count("acme"), count("globex")), (0, 50));
    let mut reader = s.row_reader().unwrap();
    let seg = s.segments("globex", "audit:1").unwrap()[0].clone();
    let mut sealed = 0;
    reader
        .scan(seg.partition, 1, 50, &mut |r| {
            assert!(r.seq >= 1 && r.seq <= 50 && r.state == 0);
            sealed += 1;
        })
        .unwrap();
    assert_eq!(sealed, 50);
    drop(reader);

    // Then globex's: the file goes, and the plan said how much comes back.
    let plan = s.plan_removal(&[expire(&b)], &[]).unwrap();
    let on_disk: u64 = file_blocks(&dir.path().join("partitions")).values().sum();
    assert!(plan.effects[0].bytes_freed > 0);
    let done = s.apply_removal(&plan.chains, &|_, _| {}).unwrap();
    assert_eq!(done.bytes_freed, plan.effects[0].bytes_freed);
    assert_eq!(done.bytes_freed, on_disk);
    assert!(files().is_empty(), "{:?}", files());
    assert_eq!((count("acme"), count("globex")), (0, 0));
    // A late record for that day makes the file again, for its tenant only.
    append_to(&s, &[rec(999, &a, T0 + 5, Some(1))]).unwrap();
    assert_eq!((count("acme"), count("globex")), (1, 0));
}

/// SQLite-specific: a store of format 3 (subject index by partition and
/// pseudonym) is converted in place when opened: every partition file
/// gets the block-keyed subject index and loses the old one, the catalog
/// says format 4, and a subject's rows are still found exactly.
#[test]
fn a_format_3_store_is_converted_on_open_and_finds_its_subjects() {
    use lethe_core::TenantId;
    use lethe_store::testsuite::{append_to, rec, T0};
    use lethe_store::RecordQuery;
    let dir = tempfile::tempdir().unwrap();
    let g = acme_audit();
    {
        let s = SqliteStore::open(dir.path(), 86_400).unwrap();
        let recs: Vec<_> = (0..3_000)
            .map(|i| rec(i, &g, T0 + i as i64, Some((i % 5) as u8)))
            .collect();
        append_to(&s, &recs).unwrap();
    }
    let files = audit_files(dir.path());
    let indexes = |p: &std::path::Path| -> Vec<String> {
        let c = rusqlite::Connection::open(p).unwrap();
        let mut st = c
            .prepare("SELECT name FROM sqlite_master WHERE type='index' AND name LIKE 'records_subject%'")
            .unwrap();
        let v = st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
        v
    };
    // Back to format 3, as an earlier version wrote it.
    for f in &files {
        let c = rusqlite::Connection::open(f).unwrap();
        c.execute_batch(
            "DROP INDEX records_subject_blocks;
             CREATE INDEX records_subject ON records(part, pseudonym) WHERE pseudonym IS NOT NULL;",
        )
        .unwrap();
        assert_eq!(indexes(f), ["records_subject"]);
    }
    let cat = rusqlite::Connection::open(dir.path().join("catalog.db")).unwrap();
    cat.execute("UPDATE meta SET value='3' WHERE key='format'", []).unwrap();
    drop(cat);

    let s = SqliteStore::open(dir.path(), 86_400).unwrap();
    for f in &files {
        assert_eq!(indexes(f), ["records_subject_blocks"], "{}", f.display());
    }
    let cat = rusqlite::Connection::open(dir.path().join("catalog.db")).unwrap();
    let format: String = cat
        .query_row("SELECT value FROM meta WHERE key='format'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(format, "4");
    let mut q = RecordQuery::tenant(TenantId::new("acme").unwrap());
    q.pseudonym = Some([2; 32]);
    let mut n = 0;
    s.query(&q, &mut |r| {
        assert_eq!(r.record.pseudonym, Some([2; 32]));
        n += 1;
        true
    })
    .unwrap();
    assert_eq!(n, 600);
}
