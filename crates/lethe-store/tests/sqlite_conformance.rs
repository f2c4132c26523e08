//! The Store conformance suite against the embedded SQLite backend.

use lethe_store::{SqliteStore, Store};

fn open(dir: &std::path::Path) -> Box<dyn Store> {
    Box::new(SqliteStore::open(dir, 86_400).expect("open sqlite store"))
}

lethe_store::conformance!(open);

/// SQLite-specific: rows past the committed chain head (a batch in flight in
/// another process, or left by a crash) are invisible to queries.
#[test]
fn rows_of_an_uncommitted_batch_are_never_visible() {
    use lethe_core::policy::GroupKey;
    use lethe_core::{Classification, TenantId};
    use lethe_store::testsuite::{append_to, rec, T0};
    use lethe_store::RecordQuery;
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), 86_400).unwrap();
    let g = GroupKey {
        tenant: TenantId::new("acme").unwrap(),
        stream: "audit:1".parse().unwrap(),
        scope: "web".into(),
        classification: Classification::Internal,
    };
    append_to(&s, &[rec(1, &g, T0, None), rec(2, &g, T0 + 1, None)]).unwrap();
    // Another writer's batch, written to the partition but not yet committed in the catalog.
    let part = std::fs::read_dir(dir.path().join("partitions/acme/audit-v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "db"))
        .unwrap();
    let c = rusqlite::Connection::open(&part).unwrap();
    c.execute(
        "INSERT INTO records(seq,id,ts,received,scope,class,plain,prev,mac)
         VALUES(3, x'00112233445566778899aabbccddeeff', ?1, ?1, 'web', 1, '{}', zeroblob(32), zeroblob(32))",
        [T0 + 2],
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
    use lethe_core::policy::{Action, GroupKey};
    use lethe_core::{Classification, TenantId};
    use lethe_store::row::DELETED;
    use lethe_store::testsuite::{append_to, rec, T0};
    use lethe_store::{ChainRemoval, RowRemoval};
    let dir = tempfile::tempdir().unwrap();
    let g = GroupKey {
        tenant: TenantId::new("acme").unwrap(),
        stream: "audit:1".parse().unwrap(),
        scope: "web".into(),
        classification: Classification::Internal,
    };
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
        std::fs::read_dir(d.join("partitions/acme/audit-v1"))
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
