//! Handing freed heap back to the operating system.
//!
//! glibc keeps memory freed by the program in its arenas and returns it only from the top of a
//! heap. The initial lists of a large cluster allocate hundreds of MB transiently (response bodies,
//! decoded pages) interleaved with the long-lived cache, so without this the operator's RSS stays
//! at that peak (BENCHMARKS.md: 351 MiB after a restart with 10,000 apps vs 191 MiB converged).

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

/// Releases free memory now and then every `every`, forever.
pub async fn release_free_memory_every(every: Duration) {
    loop {
        release_free_memory();
        tokio::time::sleep(every).await;
    }
}
