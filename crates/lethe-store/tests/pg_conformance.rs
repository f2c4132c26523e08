//! The Store conformance suite against the PostgreSQL backend (a server
//! must be reachable: see `lethe_store::testsuite::test_pg_url`).

use lethe_store::testsuite::PgHarness;

lethe_store::conformance!(PgHarness::new());
