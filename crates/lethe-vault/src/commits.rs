//! Group commit: batches submitted at once by concurrent writers of one
//! process share one store append — one durable write — instead of one each.
//!
//! No timer and no waiting for company: the first writer to find no append
//! in progress becomes the leader and appends what is queued (its own batch
//! at least); writers arriving while it works queue up and the next leader
//! takes them all. One writer alone pays nothing; many writers of small
//! batches (the server's shape) pay one sync per round instead of one per
//! batch, as PostgreSQL's and Loki's write-ahead logs do.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use lethe_store::{AppendReport, Batch, StoreError};

/// What appends a group of batches with one durable write, all or nothing
/// (`Store::append_group`).
pub type Appender<'a> = &'a (dyn Fn(&[&Batch]) -> Result<Vec<AppendReport>, StoreError> + Sync);

/// The queue of batches waiting for the store, and the results of those
/// appended, per ticket.
pub struct CommitQueue {
    state: Mutex<State>,
    done: Condvar,
    /// A leader takes queued batches until the group holds this many records.
    group_records: usize,
}

#[derive(Default)]
struct State {
    /// Whether a leader is appending now.
    leading: bool,
    next_ticket: u64,
    queued: Vec<(u64, Arc<Batch>)>,
    results: HashMap<u64, Result<AppendReport, StoreError>>,
    /// Appends made and batches they carried, for tests and figures.
    appends: u64,
    batches: u64,
}

/// How many store appends a queue made for how many batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitCounts {
    /// Store appends (each one durable write).
    pub appends: u64,
    /// Batches they carried.
    pub batches: u64,
}

impl CommitQueue {
    /// A queue whose groups hold up to `group_records` records (a batch
    /// larger than that is appended on its own).
    pub fn new(group_records: usize) -> Self {
        CommitQueue {
            state: Mutex::new(State::default()),
            done: Condvar::new(),
            group_records: group_records.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking leader leaves consistent state (see `Leading`).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Batches waiting for a leader.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.lock().queued.len()
    }

    /// How many appends carried how many batches so far.
    pub fn counts(&self) -> CommitCounts {
        let st = self.lock();
        CommitCounts {
            appends: st.appends,
            batches: st.batches,
        }
    }

    /// Appends `batch` with `appender`, alone or with the batches other
    /// threads submit meanwhile, and returns its own counts. The batch is handed
    /// back in place whatever happens (it is prepared again after a key
    /// conflict).
    pub fn append(&self, appender: Appender<'_>, batch: &mut Batch) -> Result<AppendReport, StoreError> {
        let shared = Arc::new(std::mem::take(batch));
        let result = self.submit(appender, shared.clone());
        // Every leader drops its references before publishing results.
        *batch = Arc::try_unwrap(shared).unwrap_or_else(|b| (*b).clone());
        result
    }

    fn submit(&self, appender: Appender<'_>, batch: Arc<Batch>) -> Result<AppendReport, StoreError> {
        let mut st = self.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queued.push((ticket, batch));
        loop {
            if let Some(r) = st.results.remove(&ticket) {
                return r;
            }
            if st.leading {
                st = self.done.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.leading = true;
            let group = self.take_group(&mut st.queued);
            drop(st);
            // A panic inside the store fails this group's batches (their
            // writers are told so) instead of leaving them waiting forever.
            let results =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Self::append_group(appender, &group)))
                    .unwrap_or_else(|_| {
                        let failed = group
                            .iter()
                            .map(|_| {
                                Err(StoreError::Backend {
                                    source: "the store panicked while appending this batch".into(),
                                    retryable: false,
                                })
                            })
                            .collect();
                        (failed, 1)
                    });
            let tickets: Vec<u64> = group.iter().map(|(t, _)| *t).collect();
            drop(group);
            st = self.lock();
            st.leading = false;
            st.appends += results.1;
            st.batches += tickets.len() as u64;
            st.results.extend(tickets.into_iter().zip(results.0));
            self.done.notify_all();
        }
    }

    /// The oldest queued batches, up to the group's record limit (at least one).
    fn take_group(&self, queued: &mut Vec<(u64, Arc<Batch>)>) -> Vec<(u64, Arc<Batch>)> {
        let mut records = 0;
        let mut n = 0;
        for (_, b) in queued.iter() {
            if n > 0 && records + b.records.len() > self.group_records {
                break;
            }
            records += b.records.len();
            n += 1;
        }
        queued.drain(..n).collect()
    }

    /// Appends a group as one; when that fails and the group has more than
    /// one batch, appends each on its own, so one batch's key conflict or
    /// bad input fails that batch alone. Returns the results in order and
    /// the number of store appends made.
    fn append_group(
        appender: Appender<'_>,
        group: &[(u64, Arc<Batch>)],
    ) -> (Vec<Result<AppendReport, StoreError>>, u64) {
        let batches: Vec<&Batch> = group.iter().map(|(_, b)| &**b).collect();
        match appender(&batches) {
            Ok(reports) if reports.len() == batches.len() => (reports.into_iter().map(Ok).collect(), 1),
            Ok(reports) => {
                let e = StoreError::Misuse(format!(
                    "append_group returned {} reports for {} batches",
                    reports.len(),
                    batches.len()
                ));
                (
                    batches.iter().map(|_| Err(StoreError::Misuse(e.to_string()))).collect(),
                    1,
                )
            }
            Err(e) if batches.len() == 1 => (vec![Err(e)], 1),
            Err(e) => {
                tracing::debug!(
                    batches = batches.len(),
                    "group append failed ({e}); appending each alone"
                );
                let n = batches.len() as u64;
                let each = batches.iter().map(|b| {
                    let mut r = appender(&[*b])?;
                    r.pop()
                        .ok_or_else(|| StoreError::Misuse("append_group returned no report for one batch".into()))
                });
                (each.collect(), 1 + n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lethe_core::policy::GroupKey;
    use lethe_core::{Classification, TenantId};
    use lethe_store::testsuite::{batch_of, rec};

    fn group(tenant: &str, stream: &str, scope: &str) -> GroupKey {
        GroupKey {
            tenant: TenantId::new(tenant).unwrap(),
            stream: stream.parse().unwrap(),
            scope: scope.into(),
            classification: Classification::Internal,
        }
    }

    /// `n` batches of `per` records each, distinct ids.
    fn batches(n: usize, per: usize) -> Vec<Batch> {
        let g = group("acme", "audit:1", "web");
        (0..n)
            .map(|i| {
                let recs: Vec<_> = (0..per)
                    .map(|j| rec((i * per + j) as u64, &g, 1_000_000, None))
                    .collect();
                batch_of(&recs)
            })
            .collect()
    }

    /// Reports each batch's record count as inserted; the first call waits
    /// until `others` batches are queued behind it.
    fn gated<'a>(
        q: &'a CommitQueue,
        others: usize,
        calls: &'a Mutex<Vec<usize>>,
        fail: &'a (dyn Fn(&[&Batch]) -> Option<StoreError> + Sync),
    ) -> impl Fn(&[&Batch]) -> Result<Vec<AppendReport>, StoreError> + Sync + 'a {
        move |g: &[&Batch]| {
            let first = {
                let mut c = calls.lock().unwrap();
                c.push(g.len());
                c.len() == 1
            };
            if first {
                while q.queued() < others {
                    std::thread::yield_now();
                }
            }
            if let Some(e) = fail(g) {
                return Err(e);
            }
            Ok(g.iter()
                .map(|b| AppendReport {
                    inserted: b.records.len() as u64,
                    ..Default::default()
                })
                .collect())
        }
    }

    /// Submits the first batch, waits until its append has begun, then
    /// submits the rest from threads of their own; returns, in order, each
    /// batch's result with the length of the batch handed back.
    fn submit_behind_a_leader(
        q: &CommitQueue,
        appender: Appender<'_>,
        calls: &Mutex<Vec<usize>>,
        mut all: Vec<Batch>,
    ) -> Vec<(Result<AppendReport, StoreError>, usize)> {
        let first = all.remove(0);
        std::thread::scope(|s| {
            let submit = move |mut b: Batch| {
                let r = q.append(appender, &mut b);
                (r, b.records.len())
            };
            let lead = s.spawn(move || submit(first));
            // The leader is inside its append before the others submit.
            while calls.lock().unwrap().is_empty() {
                std::thread::yield_now();
            }
            let rest: Vec<_> = all.into_iter().map(|b| s.spawn(move || submit(b))).collect();
            std::iter::once(lead).chain(rest).map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn batches_submitted_while_one_is_appended_share_the_next_append() {
        let q = CommitQueue::new(1_000);
        let calls = Mutex::new(Vec::new());
        let appender = gated(&q, 5, &calls, &|_| None);
        for (r, len) in submit_behind_a_leader(&q, &appender, &calls, batches(6, 3)) {
            // Each writer gets its own counts, and its batch back whole.
            assert_eq!((r.unwrap().inserted, len), (3, 3));
        }
        assert_eq!(
            *calls.lock().unwrap(),
            vec![1, 5],
            "one append alone, then the five that queued"
        );
        assert_eq!(q.counts(), CommitCounts { appends: 2, batches: 6 });
    }

    #[test]
    fn a_group_takes_batches_only_up_to_its_record_limit() {
        let q = CommitQueue::new(7);
        let calls = Mutex::new(Vec::new());
        let appender = gated(&q, 4, &calls, &|_| None);
        for (r, _) in submit_behind_a_leader(&q, &appender, &calls, batches(5, 3)) {
            assert_eq!(r.unwrap().inserted, 3);
        }
        // 3 + 3 ≤ 7 < 3 + 3 + 3: the four queued batches go two by two.
        assert_eq!(*calls.lock().unwrap(), vec![1, 2, 2]);
    }

    #[test]
    fn a_failed_group_is_appended_batch_by_batch_so_only_the_bad_batch_fails() {
        let q = CommitQueue::new(1_000);
        let calls = Mutex::new(Vec::new());
        // The batch of 2 records conflicts, alone or in a group.
        let bad = |g: &[&Batch]| {
            g.iter()
                .any(|b| b.records.len() == 2)
                .then_some(StoreError::KeyConflict)
        };
        let appender = gated(&q, 3, &calls, &bad);
        let g = group("acme", "audit:1", "web");
        let sizes = [1usize, 3, 2, 3];
        let all: Vec<Batch> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                batch_of(
                    &(0..n)
                        .map(|j| rec((i * 10 + j) as u64, &g, 1, None))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        for (r, n) in submit_behind_a_leader(&q, &appender, &calls, all) {
            match n {
                2 => assert!(matches!(r, Err(StoreError::KeyConflict)), "{r:?}"),
                n => assert_eq!(r.unwrap().inserted, n as u64),
            }
        }
        // Alone; the group of three (fails); then each of the three alone.
        assert_eq!(*calls.lock().unwrap(), vec![1, 3, 1, 1, 1]);
        assert_eq!(q.counts(), CommitCounts { appends: 5, batches: 4 });
    }

    #[test]
    fn a_panicking_append_fails_its_batch_and_the_next_one_is_appended() {
        let q = CommitQueue::new(1_000);
        let mut b = batches(1, 2).remove(0);
        let boom = |_: &[&Batch]| -> Result<Vec<AppendReport>, StoreError> { panic!("store bug") };
        let r = q.append(&boom, &mut b);
        assert!(matches!(r, Err(StoreError::Backend { retryable: false, .. })), "{r:?}");
        assert_eq!(b.records.len(), 2, "the batch is handed back");
        let ok = |g: &[&Batch]| Ok(g.iter().map(|_| AppendReport::default()).collect());
        assert!(q.append(&ok, &mut b).is_ok());
    }
}
