//! Named crash points for crash-safety tests. Built only with the
//! `crashpoints` cargo feature (the CLI's tests turn it on for the binary
//! they run): then, when the environment variable `LETHE_TEST_CRASH` is
//! `NAME` (or `NAME@N`, the N-th time it is reached), the process aborts
//! there — the same abrupt end as `kill -9`, at a chosen step. Without the
//! feature a crash point compiles to nothing and no environment variable is
//! read.
//!
//! In-process tests can instead run code at a point ([`on`]): an ingest
//! landing between two steps of a purge, at exactly that moment, rather
//! than by a race a test can only hope to hit.

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
    let hooks: Vec<Hook> = HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, h)| h.clone())
        .collect();
    for h in hooks {
        h();
    }
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

#[cfg(feature = "crashpoints")]
type Hook = std::sync::Arc<dyn Fn() + Send + Sync>;

#[cfg(feature = "crashpoints")]
static HOOKS: std::sync::Mutex<Vec<(String, Hook)>> = std::sync::Mutex::new(Vec::new());

/// Runs `f` every time the point `name` is reached, in the thread that
/// reaches it (until [`clear`]). The hook runs with no lock of the crash
/// point's held, so it may call back into the store or the vault.
#[cfg(feature = "crashpoints")]
pub fn on(name: &str, f: impl Fn() + Send + Sync + 'static) {
    HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((name.to_string(), std::sync::Arc::new(f)));
}

/// Removes every hook set by [`on`].
#[cfg(feature = "crashpoints")]
pub fn clear() {
    HOOKS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}
