//! The job lock on PostgreSQL: one sweep, purge or restoration at a time
//! per store across every node — a session-level advisory lock held on a
//! connection of its own for as long as a guard lives — and reentrant on
//! one thread, as the embedded store's is — and the leader's lease, an
//! advisory lock of its own held the same way.

use std::sync::{Condvar, Mutex};
use std::thread::ThreadId;

use postgres::Client;

use super::connector::Connector;
use super::db;
use crate::Result;

/// The lock and who holds it in this process.
pub(super) struct JobLock {
    connector: Connector,
    key: i64,
    /// The holding thread, how many guards it has, and the connection the
    /// advisory lock is held on.
    holder: Mutex<Option<(ThreadId, usize, Option<Client>)>>,
    released: Condvar,
    /// The connection of the last hold, kept open once its lock was
    /// released: a new connection costs a few milliseconds (more with
    /// TLS), and every purge takes the lock.
    spare: Mutex<Option<Client>>,
}

/// Releases one hold on drop; the last one releases the lock.
pub(super) struct JobGuard<'a>(&'a JobLock);

impl JobLock {
    pub(super) fn new(connector: Connector, key: i64) -> Self {
        JobLock {
            connector,
            key,
            holder: Mutex::new(None),
            released: Condvar::new(),
            spare: Mutex::new(None),
        }
    }

    /// Waits for the lock: first for other threads of this process, then
    /// for other nodes. A node that dies releases it with its connection.
    pub(super) fn lock(&self) -> Result<JobGuard<'_>> {
        let me = std::thread::current().id();
        {
            let mut h = self.holder.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match &mut *h {
                    None => break,
                    Some((t, depth, _)) if *t == me => {
                        *depth += 1;
                        return Ok(JobGuard(self));
                    }
                    Some(_) => h = self.released.wait(h).unwrap_or_else(|p| p.into_inner()),
                }
            }
            *h = Some((me, 1, None));
        }
        let locked = (|| -> Result<Client> {
            let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(mut c) = spare.filter(|c| !c.is_closed()) {
                if c.execute("SELECT pg_advisory_lock($1)", &[&self.key]).is_ok() {
                    return Ok(c);
                }
            }
            let mut c = self.connector.connect()?;
            c.execute("SELECT pg_advisory_lock($1)", &[&self.key]).map_err(db)?;
            Ok(c)
        })();
        let mut h = self.holder.lock().unwrap_or_else(|p| p.into_inner());
        match locked {
            Ok(c) => {
                if let Some((_, _, slot)) = &mut *h {
                    *slot = Some(c);
                }
                Ok(JobGuard(self))
            }
            Err(e) => {
                *h = None;
                self.released.notify_all();
                Err(e)
            }
        }
    }
}

impl Drop for JobGuard<'_> {
    fn drop(&mut self) {
        let mut h = self.0.holder.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, depth, conn)) = &mut *h {
            *depth -= 1;
            if *depth == 0 {
                // Released, the connection is kept for the next hold; if
                // the release fails, closing the connection ends its
                // session and so the lock.
                if let Some(mut c) = conn.take() {
                    let released = c
                        .query_one("SELECT pg_advisory_unlock($1)", &[&self.0.key])
                        .is_ok_and(|r| r.get::<_, bool>(0));
                    if released {
                        *self.0.spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
                    }
                }
                *h = None;
                self.0.released.notify_all();
            }
        }
    }
}

/// The leader's lease: a session-level advisory lock on a connection of
/// its own. A node that dies, or whose connection drops, loses it at once
/// (the server ends the session), and another node's next try takes it.
pub(super) struct PgLease {
    client: Client,
}

impl PgLease {
    /// Takes the lease `key` if no other session holds it.
    pub(super) fn try_take(connector: &Connector, key: i64) -> Result<Option<PgLease>> {
        let mut c = connector.connect()?;
        // A peer that vanishes without closing its connection (a network
        // partition) is noticed by the server within ~25 s.
        c.batch_execute("SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3")
            .map_err(db)?;
        let got: bool = c
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .map_err(db)?
            .get(0);
        Ok(got.then_some(PgLease { client: c }))
    }
}

impl crate::Lease for PgLease {
    fn held(&mut self) -> bool {
        !self.client.is_closed() && self.client.simple_query("SELECT 1").is_ok()
    }
}
