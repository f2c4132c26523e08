//! Read-ahead of a chain walk's announced scans: each file read once per window of sequence numbers instead of a seek per segment.
//!
//! A chain of a store ingested out of time order is thousands of one- or
//! two-row segments spread over every day's file, and a walk in sequence
//! order asks for them one after another, each in another file: a seek
//! (and, with the small page caches readers keep, a few page reads) per
//! row. When the walk announces its scans ([`crate::RowReader::expect`]),
//! the reader instead reads, for the next [`WINDOW_ROWS`] rows of the
//! walk, every partition's part of that window as one key range, and
//! hands the rows out as the scans are asked for. Windows follow each
//! other without gaps, so a partition read in every window of a walk has
//! been read whole: its row count (strays included) is then known without
//! counting again.

use std::collections::HashMap;

use crate::row::RawRow;

/// Rows of announced scans read ahead at most (~1.2 KB each as raw rows):
/// a window's memory, and how far a walk's reads are batched.
pub(super) const WINDOW_ROWS: u64 = 8192;

/// How far past the expected scan a request is looked for among the
/// announced ones (a walk skips a scan now and then, e.g. an overlapping
/// segment).
const LOOK_AHEAD: usize = 64;

/// An announced scan a window serves: its index, first and last sequence
/// numbers.
pub(super) type Served = (usize, u64, u64);

/// One window to read: for each partition, the key range `lo..=hi` of
/// sequence numbers, and which announced scans (by index) it serves.
pub(super) struct Window {
    /// Lowest sequence number read.
    pub lo: u64,
    /// Highest sequence number read.
    pub hi: u64,
    /// Per partition, the announced scans it serves: (index, first, last).
    pub parts: Vec<(i64, Vec<Served>)>,
    /// First announced scan after the window.
    end: usize,
}

/// A partition's rows a window read, each with the announced scan (by
/// index) it goes to, and how many rows its range held in all.
pub(super) type Kept = (i64, Vec<(usize, RawRow)>, u64);

impl Window {
    /// Keeps row `r` of the window's `i`th partition for each of its scans
    /// that asks for it (none: a stray, or a row appended since the walk
    /// began, which is only counted).
    pub fn keep(&self, i: usize, r: RawRow, into: &mut Vec<(usize, RawRow)>) {
        let seq = r.seq;
        let mut asking = self.parts[i]
            .1
            .iter()
            .filter(|(_, first, last)| *first <= seq && seq <= *last)
            .map(|(k, _, _)| *k)
            .peekable();
        while let Some(k) = asking.next() {
            if asking.peek().is_none() {
                into.push((k, r));
                return;
            }
            into.push((k, r.clone()));
        }
    }
}

/// What a reader has read ahead of a walk (see the module's comment).
#[derive(Default)]
pub(super) struct ReadAhead {
    /// The scans announced, in walk order.
    plan: Vec<(i64, u64, u64)>,
    /// Every partition they name: each window reads all of them, so that
    /// a partition with no scan in some window is still read whole.
    parts: Vec<i64>,
    /// The next announced scan expected.
    pos: usize,
    /// Scans before this index have been read ahead (or passed).
    end: usize,
    /// The highest sequence number the last window read, when windows have
    /// followed each other from the walk's start.
    read_to: Option<u64>,
    /// Rows of the buffered scans, by announced index.
    rows: HashMap<usize, Vec<RawRow>>,
    /// Per partition: the next sequence number its reads reached without a
    /// gap from 0, and the rows they found (strays included); `None` once
    /// a window skipped part of it.
    coverage: HashMap<i64, Option<(u64, u64)>>,
}

impl ReadAhead {
    /// Takes a walk's announced scans, forgetting everything before.
    pub fn expect(&mut self, scans: &[(i64, u64, u64)]) {
        let mut parts: Vec<i64> = scans.iter().map(|s| s.0).collect();
        parts.sort_unstable();
        parts.dedup();
        *self = ReadAhead {
            plan: scans.to_vec(),
            parts,
            ..ReadAhead::default()
        };
    }

    /// The announced index of a scan being asked for, if it is the
    /// expected one or a little past it.
    pub fn find(&self, scan: (i64, u64, u64)) -> Option<usize> {
        (self.pos..self.plan.len().min(self.pos + LOOK_AHEAD)).find(|&k| self.plan[k] == scan)
    }

    /// Whether scan `k` still has to be read (it is past the windows read).
    pub fn unread(&self, k: usize) -> bool {
        k >= self.end
    }

    /// The window starting at announced scan `k`: scans up to
    /// [`WINDOW_ROWS`] rows long (at least one), and the sequence numbers
    /// from where the last window ended (or `k`'s first, after a jump) to
    /// just before the next window's first scan. A scan reaching outside
    /// the window's range (overlapping segments) is not served from it.
    pub fn window(&self, k: usize) -> Window {
        let mut j = k;
        let mut rows = 0u64;
        while j < self.plan.len() {
            let (_, first, last) = self.plan[j];
            let n = last.saturating_sub(first).saturating_add(1);
            if j > k && rows.saturating_add(n) > WINDOW_ROWS {
                break;
            }
            rows = rows.saturating_add(n);
            j += 1;
        }
        let lo = match self.read_to {
            Some(to) if k == self.end => to.saturating_add(1),
            None if k == 0 => 0,
            _ => self.plan[k].1,
        };
        let hi = match self.plan.get(j) {
            Some(&(_, next_first, _)) => next_first.saturating_sub(1).max(lo),
            None => super::partition::MAX_SEQ,
        };
        // Every partition of the walk, in file order of partition ids (for
        // a reader's connections): one without a scan here is read too —
        // an empty range costs a descent, while a gap would cost counting
        // the whole partition again at the end (a chain of the 4-tenant
        // shape has fewer segments per window than partitions).
        let mut parts: Vec<(i64, Vec<Served>)> = self.parts.iter().map(|p| (*p, Vec::new())).collect();
        for (i, &(part, first, last)) in self.plan[k..j].iter().enumerate() {
            if lo <= first && last <= hi {
                let at = self.parts.binary_search(&part).expect("every partition of the plan");
                parts[at].1.push((k + i, first, last));
            }
        }
        Window { lo, hi, parts, end: j }
    }

    /// Whether announced scan `k` is longer than a window: it is then read
    /// on its own, and the windows after it start afresh.
    pub fn oversized(&self, k: usize) -> bool {
        let (_, first, last) = self.plan[k];
        last.saturating_sub(first) >= WINDOW_ROWS
    }

    /// Takes the rows a window read: per partition, its rows of `lo..=hi`
    /// that scans ask for ([`Window::keep`]), in sequence order.
    pub fn fill(&mut self, w: &Window, read: Vec<Kept>) {
        let continues = self.read_to.is_some() && w.lo == self.read_to.map_or(0, |t| t.saturating_add(1));
        let from_start = w.lo == 0 || continues;
        self.rows.clear();
        for (_, scans) in &w.parts {
            for &(k, _, _) in scans {
                self.rows.insert(k, Vec::new());
            }
        }
        for (part, kept, n) in read {
            for (k, row) in kept {
                self.rows.get_mut(&k).expect("a scan of the window").push(row);
            }
            // Coverage goes on only where this partition's reads have
            // followed each other from sequence number 0.
            let reached = if w.lo == 0 { Some((0, 0)) } else { None };
            let c = self.coverage.entry(part).or_insert(reached);
            *c = match *c {
                Some((to, found)) if from_start && to == w.lo => Some((w.hi.saturating_add(1), found + n)),
                _ => None,
            };
        }
        self.read_to = from_start.then_some(w.hi);
        self.end = w.end;
    }

    /// The rows of announced scan `k`, if a window read them; the walk is
    /// then past it.
    pub fn take(&mut self, k: usize) -> Option<Vec<RawRow>> {
        self.pos = k + 1;
        self.rows.remove(&k)
    }

    /// A partition's rows, if every window of the walk read it (its reads
    /// reached the last sequence number without a gap).
    pub fn row_count(&self, part: i64) -> Option<u64> {
        match self.coverage.get(&part) {
            Some(Some((to, found))) if *to > super::partition::MAX_SEQ => Some(*found),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64) -> RawRow {
        RawRow {
            seq,
            id: vec![0; 16],
            ts_us: 0,
            received_us: 0,
            scope: "s".into(),
            class: 0,
            pseudonym: None,
            key_id: None,
            plain: String::new(),
            body: None,
            state: 0,
            prev: vec![0; 32],
            mac: vec![0; 32],
            redacted: None,
        }
    }

    /// What a store holds: per partition, its rows' sequence numbers.
    fn read(w: &Window, stored: &[(i64, &[u64])]) -> Vec<Kept> {
        w.parts
            .iter()
            .enumerate()
            .map(|(i, (p, _))| {
                let seqs = stored.iter().find(|(q, _)| q == p).map_or(&[][..], |(_, s)| *s);
                let (mut kept, mut n) = (Vec::new(), 0);
                for s in seqs.iter().filter(|s| w.lo <= **s && **s <= w.hi) {
                    n += 1;
                    w.keep(i, row(*s), &mut kept);
                }
                (*p, kept, n)
            })
            .collect()
    }

    fn seqs(rows: Option<Vec<RawRow>>) -> Option<Vec<u64>> {
        rows.map(|r| r.iter().map(|r| r.seq).collect())
    }

    #[test]
    fn a_walk_in_order_is_served_from_one_read_per_partition_and_counts_strays() {
        // Partition 1 holds 1, 3 and a stray 9; partition 2 holds 2 and 4.
        let stored: &[(i64, &[u64])] = &[(1, &[1, 3, 9]), (2, &[2, 4])];
        let mut a = ReadAhead::default();
        a.expect(&[(1, 1, 1), (2, 2, 2), (1, 3, 3), (2, 4, 4)]);
        let k = a.find((1, 1, 1)).unwrap();
        assert!(a.unread(k));
        let w = a.window(k);
        assert_eq!((w.lo, w.hi, w.parts.len()), (0, crate::chain::MAX_SEQ, 2));
        let rows = read(&w, stored);
        a.fill(&w, rows);
        for (scan, want) in [((1, 1, 1), 1), ((2, 2, 2), 2), ((1, 3, 3), 3), ((2, 4, 4), 4)] {
            let k = a.find(scan).unwrap();
            assert!(!a.unread(k));
            assert_eq!(seqs(a.take(k)), Some(vec![want]));
        }
        assert_eq!(a.row_count(1), Some(3), "the stray is counted");
        assert_eq!(a.row_count(2), Some(2));
        assert_eq!(a.row_count(3), None, "never read");
    }

    #[test]
    fn windows_follow_each_other_and_read_every_partition_of_the_walk() {
        let n = WINDOW_ROWS;
        // Two windows: partition 1 in both, partition 2 only in the second
        // (but read in both: a stray of it in the first window counts).
        let mut a = ReadAhead::default();
        a.expect(&[(1, 1, n), (1, n + 1, n + 1), (2, n + 2, n + 2)]);
        let w = a.window(0);
        assert_eq!((w.lo, w.hi), (0, n));
        assert_eq!(w.parts.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [1, 2]);
        let first: Vec<u64> = (1..=n).collect();
        let stored: &[(i64, &[u64])] = &[(1, &first), (2, &[7])];
        let rows = read(&w, stored);
        a.fill(&w, rows);
        assert_eq!(a.take(0).map(|r| r.len() as u64), Some(n));
        assert!(a.unread(1));
        let w = a.window(1);
        assert_eq!((w.lo, w.hi), (n + 1, crate::chain::MAX_SEQ));
        let all: Vec<u64> = (1..=n + 1).collect();
        let stored: &[(i64, &[u64])] = &[(1, &all), (2, &[7, n + 2])];
        let rows = read(&w, stored);
        a.fill(&w, rows);
        assert_eq!(seqs(a.take(1)), Some(vec![n + 1]));
        assert_eq!(seqs(a.take(2)), Some(vec![n + 2]));
        assert_eq!(a.row_count(1), Some(n + 1));
        assert_eq!(a.row_count(2), Some(2), "the stray at 7 was read in the first window");
        assert_eq!(a.row_count(3), None, "not a partition of the walk");
    }

    #[test]
    fn a_scan_longer_than_a_window_is_not_read_ahead() {
        let n = WINDOW_ROWS;
        let mut a = ReadAhead::default();
        a.expect(&[(1, 1, n), (1, n + 1, 2 * n + 1), (2, 2 * n + 2, 2 * n + 2)]);
        assert!(!a.oversized(0));
        assert!(a.oversized(1));
        assert!(!a.oversized(2));
    }

    #[test]
    fn a_scan_reaching_outside_its_window_is_read_on_its_own() {
        // Overlapping segments (a tampered catalog): the second reaches
        // back into the first's range, so its window cannot hold it.
        let mut a = ReadAhead::default();
        a.expect(&[(1, 5, 9), (1, 7, 8), (1, 10, 10)]);
        let w = a.window(0);
        let stored: &[(i64, &[u64])] = &[(1, &[5, 6, 7, 8, 9, 10])];
        let rows = read(&w, stored);
        a.fill(&w, rows);
        assert_eq!(seqs(a.take(0)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(
            seqs(a.take(1)),
            Some(vec![7, 8]),
            "inside the window's range: served too"
        );
        assert_eq!(seqs(a.take(2)), Some(vec![10]));
        // A walk that jumps ahead reads from the scan it asks for, and
        // counts nothing it did not read from the start.
        let mut a = ReadAhead::default();
        a.expect(&[(1, 1, 1), (2, 2, 2)]);
        let k = a.find((2, 2, 2)).unwrap();
        let w = a.window(k);
        assert_eq!(w.lo, 2);
        let rows = read(&w, &[(2, &[2])]);
        a.fill(&w, rows);
        assert_eq!(seqs(a.take(k)), Some(vec![2]));
        assert_eq!(a.row_count(1), None);
        assert_eq!(a.row_count(2), None);
        assert_eq!(a.find((1, 1, 1)), None, "behind the walk: read directly");
    }
}
