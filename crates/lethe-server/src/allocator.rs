//! How the process's allocator gives memory back to the operating system,
//! so that resident size follows what `lethe` holds rather than the largest
//! job it ever ran: large blocks mapped on their own, and the heaps' free
//! pages handed back after a large job.
//!
//! glibc keeps memory a program has freed inside its heaps unless it sits
//! at the very top of one: a sweep of 100 tenants over a year allocates
//! hundreds of thousands of small maps and strings, frees them, and left
//! the process ~130 MB larger than the data it still held (measured with
//! `lethe-bench`, docs/benchmarks.md "Session 25"). `malloc_trim(0)` returns
//! every whole free page of every heap (`MADV_DONTNEED`), whatever lies
//! above it. It costs a walk of the free lists — milliseconds — so it runs
//! after jobs (a sweep, a verification, an erasure), never per request.

/// Blocks from this size up are mapped on their own and unmapped when
/// freed (see [`configure`]).
const MMAP_AT_LEAST: usize = 1 << 20;

/// Sets the allocator up for `lethe`, once, at start: blocks of 1 MiB and
/// more (ingest batches, sweep intents, read-ahead windows) get their own
/// mappings, returned to the system when freed. glibc would otherwise raise
/// that threshold to the largest such block ever freed (up to 32 MiB) and
/// serve the next ones from its heaps, where freed memory stays resident:
/// a sparse store's `lethe ingest` peaked at 201 MB instead of 169 MB and
/// its first `lethe cleanup` at 243 MB instead of 222 MB, at the same CPU
/// time (docs/benchmarks.md, "Session 25"). Does nothing on other C
/// libraries.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; called before
    // any thread starts, as glibc advises.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_AT_LEAST as libc::c_int);
    }
}

/// Returns the free pages of the process's heaps to the operating system
/// (glibc's `malloc_trim(0)`); does nothing on other C libraries, whose
/// allocators decide this themselves.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only reorganises the
    // allocator's own free memory; it is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// The process's resident size, from `/proc/self/status`.
    fn rss_bytes() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/self/status");
        kb * 1024
    }

    #[test]
    fn large_blocks_freed_after_configure_leave_the_process_at_once() {
        configure();
        // Unconfigured, glibc would now serve blocks under 8 MiB from its
        // heaps, where the small survivors between them pin them.
        drop(vec![1u8; 8 << 20]);
        let mut kept = Vec::new();
        let big: Vec<Vec<u8>> = (0..64)
            .map(|i| {
                kept.push(vec![i as u8; 64]);
                vec![i as u8; 2 << 20]
            })
            .collect();
        let before = rss_bytes();
        drop(big);
        let after = rss_bytes();
        assert!(
            before > after + (100 << 20),
            "freeing 128 MB of 2 MiB blocks returned {} MB (resident {} MB before, {} MB after)",
            before.saturating_sub(after) >> 20,
            before >> 20,
            after >> 20
        );
        assert!(kept.iter().enumerate().all(|(i, b)| b[63] == i as u8));
    }

    #[test]
    fn freed_small_allocations_pinned_by_survivors_go_back_to_the_system() {
        // 160 MB of 1 KiB blocks, one in 64 kept alive: every page of the
        // heap below the last survivor stays mapped after the rest is freed,
        // as after a sweep that keeps a little of what it built.
        let mut blocks: Vec<Vec<u8>> = (0..160_000).map(|i| vec![(i % 251) as u8; 1024]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(64).map(std::mem::take).collect();
        drop(blocks);
        let before = rss_bytes();
        release_free_memory();
        let after = rss_bytes();
        assert!(
            before > after + (100 << 20),
            "releasing freed memory returned {} MB (resident {} MB before, {} MB after); expected over 100 MB",
            before.saturating_sub(after) >> 20,
            before >> 20,
            after >> 20
        );
        // The survivors are intact.
        assert!(kept
            .iter()
            .enumerate()
            .all(|(i, b)| b.len() == 1024 && b[0] == ((i * 64) % 251) as u8));
    }
}
