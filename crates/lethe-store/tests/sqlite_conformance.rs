//! The Store conformance suite against the embedded SQLite backend.

use lethe_store::{SqliteStore, Store};

fn open(dir: &std::path::Path) -> Box<dyn Store> {
    Box::new(SqliteStore::open(dir, 86_400).expect("open sqlite store"))
}

lethe_store::conformance!(open);
