//! Handing the heap's free memory back to the operating system after a
//! large job, so that a long-running server's resident size follows what it
//! holds rather than the largest job it ever ran.
//!
//! glibc keeps memory a program has freed inside its heaps unless it sits
//! at the very top of one: a sweep of 100 tenants over a year allocates
//! hundreds of thousands of small maps and strings, frees them, and left
//! the process ~130 MB larger than the data it still held (measured with
//! `lethe-bench`, docs/benchmarks.md "Session 25"). `malloc_trim(0)` returns
//! every whole free page of every heap (`MADV_DONTNEED`), whatever lies
//! above it. It costs a walk of the free lists — milliseconds — so it runs
//! after jobs (a sweep, a verification, an erasure), never per request.

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
