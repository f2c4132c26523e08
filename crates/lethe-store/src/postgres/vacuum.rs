//! The key table's vacuum after key destructions, on a thread and a
//! connection of its own: a `VACUUM data_keys` costs 7–34 ms here, mostly
//! fixed work (see [`vacuum`]), and an erasure has its continuation and its
//! check still to do after destroying keys — they overlap the vacuum, and
//! the receipt waits for its outcome to state it.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use postgres::Client;

use super::connector::Connector;

/// How long a receipt waits for a vacuum still running before it says so.
const WAIT: Duration = Duration::from_secs(30);

/// What the vacuums asked of this process came to.
#[derive(Default)]
struct State {
    /// Vacuums asked for so far (each after a destruction committed).
    requested: u64,
    /// The last request a finished vacuum covered (it started after it).
    done: u64,
    /// How the last finished vacuum went (`None`: none finished yet).
    outcome: Option<Result<(), String>>,
}

/// Runs `VACUUM data_keys` when asked, one at a time (requests that arrive
/// while one runs are covered by the next).
pub(super) struct KeyVacuum {
    state: Arc<(Mutex<State>, Condvar)>,
    /// Wakes the worker; dropping it ends the worker.
    wake: Sender<()>,
}

impl KeyVacuum {
    /// Starts the worker; it ends when this is dropped.
    pub(super) fn start(connector: Connector) -> KeyVacuum {
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let (tx, rx) = channel();
        let shared = state.clone();
        std::thread::Builder::new()
            .name("lethe-key-vacuum".into())
            .spawn(move || work(connector, rx, shared))
            .expect("a thread starts");
        KeyVacuum { state, wake: tx }
    }

    /// Asks for a vacuum (call after the destruction committed).
    pub(super) fn request(&self) {
        let (lock, _) = &*self.state;
        lock.lock().unwrap_or_else(|e| e.into_inner()).requested += 1;
        if self.wake.send(()).is_err() {
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            s.done = s.requested;
            s.outcome = Some(Err("the vacuum worker is gone".into()));
        }
    }

    /// The outcome of the vacuum covering every request so far, waiting
    /// for it (up to [`WAIT`]): `None` when none was asked for; `Err` says
    /// why it failed or that it is still running.
    pub(super) fn outcome(&self) -> Option<Result<(), String>> {
        let (lock, done) = &*self.state;
        let s = lock.lock().unwrap_or_else(|e| e.into_inner());
        if s.requested == 0 {
            return None;
        }
        let (s, waited) = done
            .wait_timeout_while(s, WAIT, |s| s.done < s.requested)
            .unwrap_or_else(|e| e.into_inner());
        if waited.timed_out() {
            return Some(Err(format!(
                "still running after {} s when this was written",
                WAIT.as_secs()
            )));
        }
        s.outcome.clone()
    }
}

/// The worker: waits to be woken, vacuums once for every request made
/// before it started.
fn work(connector: Connector, rx: Receiver<()>, state: Arc<(Mutex<State>, Condvar)>) {
    let mut conn: Option<(Client, bool)> = None;
    let (lock, done) = &*state;
    while rx.recv().is_ok() {
        while rx.try_recv().is_ok() {}
        let n = lock.lock().unwrap_or_else(|e| e.into_inner()).requested;
        let outcome = vacuum(&connector, &mut conn);
        if outcome.is_err() {
            // A fresh connection next time (the server may have restarted).
            conn = None;
        }
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        s.done = s.done.max(n);
        s.outcome = Some(outcome);
        done.notify_all();
    }
}

/// Vacuums the key table on the worker's connection (made when missing).
///
/// After every `VACUUM`, PostgreSQL 15 also recomputes the database's
/// oldest transaction id by reading all of `pg_class` — a file that a store
/// creating and dropping bucket tables every day bloats: 25–34 ms of a
/// 7 ms vacuum on the test database here. PostgreSQL 16 and later can skip
/// that step (`SKIP_DATABASE_STATS`; autovacuum still does it).
fn vacuum(connector: &Connector, conn: &mut Option<(Client, bool)>) -> Result<(), String> {
    if conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
        let mut c = connector.connect().map_err(|e| e.to_string())?;
        let version: i32 = c
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .map_err(|e| e.to_string())?
            .get(0);
        *conn = Some((c, version >= 160_000));
    }
    let (c, skip_stats) = conn.as_mut().expect("just connected");
    let sql = if *skip_stats {
        "VACUUM (SKIP_DATABASE_STATS) data_keys"
    } else {
        "VACUUM data_keys"
    };
    c.batch_execute(sql).map_err(|e| e.to_string())
}
