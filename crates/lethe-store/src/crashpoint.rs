//! Named crash points for crash-safety tests: when the environment variable
//! `LETHE_TEST_CRASH` equals a point's name, the process aborts there — the
//! same abrupt end as `kill -9`, at a chosen step.

use std::sync::OnceLock;

/// Aborts the process if `LETHE_TEST_CRASH` names this point.
pub fn hit(name: &str) {
    static TARGET: OnceLock<Option<String>> = OnceLock::new();
    let t = TARGET.get_or_init(|| std::env::var("LETHE_TEST_CRASH").ok());
    if t.as_deref() == Some(name) {
        eprintln!("crash point {name}: aborting");
        std::process::abort();
    }
}
