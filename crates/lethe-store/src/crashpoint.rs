//! Named crash points for crash-safety tests. Built only with the
//! `crashpoints` cargo feature (the CLI's tests turn it on for the binary
//! they run): then, when the environment variable `LETHE_TEST_CRASH` is
//! `NAME` (or `NAME@N`, the N-th time it is reached), the process aborts
//! there — the same abrupt end as `kill -9`, at a chosen step. Without the
//! feature a crash point compiles to nothing and no environment variable is
//! read.

/// Aborts the process if `LETHE_TEST_CRASH` names this point (and hit count).
#[cfg(feature = "crashpoints")]
pub fn hit(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let t = TARGET.get_or_init(|| {
        let v = std::env::var("LETHE_TEST_CRASH").ok()?;
        Some(match v.split_once('@') {
            Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
            None => (v, 1),
        })
    });
    if let Some((target, nth)) = t {
        if target == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *nth {
            eprintln!("crash point {name}: aborting");
            std::process::abort();
        }
    }
}

/// A crash point: nothing without the `crashpoints` feature.
#[cfg(not(feature = "crashpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
