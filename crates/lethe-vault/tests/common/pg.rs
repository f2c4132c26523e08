//! A PostgreSQL schema of its own per test, and a vault configuration on it.

use lethe_core::config::Config;
use lethe_store::testsuite::test_pg_url;

use super::cfg;

/// A short name of its own for test `case`, to build its schema name from
/// (PostgreSQL names are limited, Lethe allows 48 characters).
pub fn case_name(case: &str) -> String {
    let h = lethe_core::merkle::leaf_hash(case.as_bytes());
    format!("t{}", hex::encode(&h[..6]))
}

/// A schema of its own for one test, dropped when the guard goes.
pub struct Schema(pub String);

impl Schema {
    /// A fresh schema `lethe_v<pid>_<name>` (an older one of that name is dropped).
    pub fn new(name: &str) -> Schema {
        let s = Schema(format!("lethe_v{}_{name}", std::process::id()));
        s.drop_it();
        s
    }

    fn drop_it(&self) {
        lethe_store::testsuite::drop_pg_schemas(&self.0);
    }

    /// A client whose search path is the schema (for tampering and checks).
    pub fn client(&self) -> postgres::Client {
        let mut c = postgres::Client::connect(&test_pg_url(), postgres::NoTls).unwrap();
        c.batch_execute(&format!("SET search_path TO {}", self.0)).unwrap();
        c
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        self.drop_it();
    }
}

/// A configuration on PostgreSQL in `schema`, over `extra`.
pub fn pg_cfg(schema: &Schema, extra: &str) -> Config {
    let mut c = cfg(extra);
    c.store.backend = "postgres".into();
    c.store.url = Some(test_pg_url());
    c.store.schema = schema.0.clone();
    c.store.pool_size = 4;
    c
}
