//! Handing freed heap back to the operating system.
//!
//! glibc keeps memory freed by the program in its arenas and returns it only from the top of a
//! heap. The initial lists of a large cluster allocate hundreds of MB transiently (response bodies,
//! decoded pages) interleaved with the long-lived cache, so without this the operator's RSS stays
//! at that peak (docs/benchmarks-history.md: 351 MiB after a restart with 10,000 apps vs 191 MiB converged).

use std::time::Duration;

/// Returns free heap pages to the OS (glibc `malloc_trim`); a no-op on other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only inspects and releases free chunks of glibc's own allocator; it
    // takes the arena locks itself and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's malloc arenas at `arenas` (call before starting threads). glibc gives up to
/// 8 per core, and every thread that ever allocated under contention gets its own: the
/// long-lived cache ends up spread over many heaps with transient garbage between its
/// objects, pages no trim can return (docs/benchmarks-history.md: RSS with 10,000 apps). Threads keep their
/// own small-object caches (tcache), so few allocations take the arena lock.
pub fn limit_arenas(arenas: i32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator tuning parameters; M_ARENA_MAX takes effect for arenas
    // created afterwards.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
        // Setting the mmap threshold also turns off glibc's dynamic threshold, which rises to
        // the size of every mmapped block freed (up to 32 MiB): list pages and response bodies
        // would then come from the heap and leave holes between long-lived objects allocated
        // meanwhile. Kept at 128 KiB, they are mapped and unmapped whole.
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = arenas;
}

/// Allocations from this size up are mapped and unmapped on their own ([`limit_arenas`]).
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// The arena cap the operator runs with ([`limit_arenas`]).
pub const OPERATOR_ARENAS: i32 = 2;

/// Releases free memory now and then every `every`, forever.
pub async fn release_free_memory_every(every: Duration) {
    loop {
        release_free_memory();
        tokio::time::sleep(every).await;
    }
}
