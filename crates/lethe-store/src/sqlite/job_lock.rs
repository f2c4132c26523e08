//! The job lock: one sweep, purge or restoration at a time per store —
//! across processes (an `flock` on `jobs.lock`) and across the threads of
//! one process (a flock is shared by every thread holding the file), and
//! reentrant on one thread, so a job that finishes an interrupted one first
//! does not wait for itself.

use std::fs::File;
use std::sync::{Condvar, Mutex};
use std::thread::ThreadId;

use crate::{Result, StoreError};

/// The lock and who holds it in this process.
pub(super) struct JobLock {
    file: File,
    /// The holding thread and how many guards it has.
    holder: Mutex<Option<(ThreadId, usize)>>,
    released: Condvar,
}

/// Releases one hold on drop; the last one releases the lock.
pub(super) struct JobGuard<'a>(&'a JobLock);

impl JobLock {
    pub(super) fn new(file: File) -> Self {
        JobLock {
            file,
            holder: Mutex::new(None),
            released: Condvar::new(),
        }
    }

    /// Waits for the lock: first for other threads of this process, then
    /// for other processes.
    pub(super) fn lock(&self) -> Result<JobGuard<'_>> {
        let me = std::thread::current().id();
        {
            let mut h = self.holder.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match &mut *h {
                    None => break,
                    Some((t, depth)) if *t == me => {
                        *depth += 1;
                        return Ok(JobGuard(self));
                    }
                    Some(_) => h = self.released.wait(h).unwrap_or_else(|p| p.into_inner()),
                }
            }
            *h = Some((me, 1));
        }
        if let Err(e) = self.file.lock() {
            self.release();
            return Err(StoreError::io("locking the store for a job", e));
        }
        Ok(JobGuard(self))
    }

    fn release(&self) {
        let mut h = self.holder.lock().unwrap_or_else(|p| p.into_inner());
        *h = None;
        self.released.notify_all();
    }
}

impl Drop for JobGuard<'_> {
    fn drop(&mut self) {
        let mut h = self.0.holder.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, depth)) = &mut *h {
            *depth -= 1;
            if *depth == 0 {
                let _ = self.0.file.unlock();
                *h = None;
                self.0.released.notify_all();
            }
        }
    }
}
