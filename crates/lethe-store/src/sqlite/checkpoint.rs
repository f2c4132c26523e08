//! Background upkeep, so that slow housekeeping never sits on the ingest
//! path: passive checkpoints of the catalog's write-ahead log (the writers run
//! with `wal_autocheckpoint=0`), and closing evicted partition connections
//! (a close checkpoints the partition's WAL and fsyncs).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::db;
use crate::Result;

/// Checkpoint once the WAL is past this size.
const WAL_LIMIT: u64 = 8 << 20;
/// How often the WAL size is looked at.
const TICK: Duration = Duration::from_millis(100);

/// Runs passive checkpoints on a database from its own thread and
/// connection; stops (after a last checkpoint) when dropped.
pub struct Checkpointer {
    stop: Option<Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path`.
    pub fn start(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(db)?;
        conn.execute_batch("PRAGMA busy_timeout=30000; PRAGMA synchronous=FULL;")
            .map_err(db)?;
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("lethe-checkpoint".into())
            .spawn(move || {
                let checkpoint = || {
                    // PASSIVE never blocks writers; a busy database is retried next tick.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                };
                loop {
                    match rx.recv_timeout(TICK) {
                        Ok(Job::Close(c)) => drop(c),
                        Ok(Job::Settle(done)) => {
                            let _ = done.send(());
                        }
                        Ok(Job::Checkpoint(path)) => {
                            // A short-lived connection: opening is cheap next to copying the WAL.
                            if let Ok(c) = Connection::open(&path) {
                                let _ = c.execute_batch("PRAGMA busy_timeout=30000; PRAGMA synchronous=FULL;");
                                let _ = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > WAL_LIMIT {
                                checkpoint();
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => {
                            checkpoint();
                            return;
                        }
                    }
                }
            })
            .map_err(|e| crate::StoreError::io("starting the checkpoint thread", e))?;
        Ok(Checkpointer {
            stop: Some(tx),
            handle: Some(handle),
        })
    }
}

/// Work for the background thread.
pub enum Job {
    /// Close this connection (checkpointing its WAL) off the caller's thread.
    Close(Connection),
    /// Checkpoint the WAL of the database at this path.
    Checkpoint(PathBuf),
    /// Answer once every job sent before this one is done.
    Settle(Sender<()>),
}

impl Checkpointer {
    /// Closes a connection in the background.
    pub fn close(&self, c: Connection) {
        if let Some(tx) = &self.stop {
            // If the thread is gone the connection is closed here instead.
            if let Err(mpsc::SendError(Job::Close(c))) = tx.send(Job::Close(c)) {
                drop(c);
            }
        }
    }
}

impl Checkpointer {
    /// Checkpoints a database's WAL in the background.
    pub fn checkpoint(&self, path: PathBuf) {
        if let Some(tx) = &self.stop {
            let _ = tx.send(Job::Checkpoint(path));
        }
    }
}

impl Checkpointer {
    /// Waits until every close and checkpoint asked for so far is done.
    ///
    /// A removal calls this first: a connection still waiting to be closed
    /// would, when it closes, change the sizes of files the removal is
    /// measuring — and, closing after its file was unlinked and made again
    /// at the same path, delete the new file's log by name.
    pub fn settle(&self) {
        if let Some(tx) = &self.stop {
            let (done, wait) = mpsc::channel();
            if tx.send(Job::Settle(done)).is_ok() {
                let _ = wait.recv();
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
