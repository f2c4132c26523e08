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
    use lethe_store::testsuite::{batch_of, rec, T0};
    use lethe_store::RecordQuery;
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), 86_400).unwrap();
    let g = GroupKey {
        tenant: TenantId::new("acme").unwrap(),
        stream: "audit:1".parse().unwrap(),
        scope: "web".into(),
        classification: Classification::Internal,
    };
    s.append(&batch_of(&[rec(1, &g, T0, None), rec(2, &g, T0 + 1, None)]))
        .unwrap();
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
