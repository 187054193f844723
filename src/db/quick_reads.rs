//! Where a quick read (a token-cache miss: a few indexed lookups) runs on SQLite: on the
//! request's own thread while such reads stay quick, on the blocking pool while they do not.
//!
//! Handing a read to the pool wakes a pool thread, parks it again and wakes the request's
//! thread back: at 10,000,000 tokens with a skewed spread (a quarter of the calls miss) that
//! cost about as much CPU as the lookup itself, a fifth of the pool threads' time in futex
//! waits. Run in place, the same site served 43,500 rather than 36,300–38,200 validated calls
//! a second (bench/scale.sh). But a read whose pages are not in memory waits for the disk,
//! and on the request's thread every other request of that thread waits with it: so each read
//! in place is watched for blocks read from storage (the kernel's count for the thread, which
//! the page cache does not add to), and while many of them go to the disk, quick reads go to
//! the pool again for a while. Not their time: on two busy cores a read from memory is often
//! put off by the scheduler for milliseconds, and timing sent a quarter of them to the pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Share of the recent quick reads that read from storage (in 1/`ONE`) past which they go to
/// the pool: a site whose pages are in memory reads none.
const DISK_SHARE_LIMIT: u64 = ONE / 4;

/// A whole in the moving average's fixed point.
const ONE: u64 = 1 << 16;

/// The weight of the newest read in the average: 1 / 2^`SHIFT`.
const SHIFT: u32 = 4;

/// How long quick reads go to the pool once they read from the disk, before one is tried in place.
const POOLED_FOR: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(super) struct QuickReads {
    /// PostgreSQL's reads are round trips over the network, and elsewhere than Linux a thread's
    /// reads from storage are not counted: pooled always.
    in_place: bool,
    started: Instant,
    /// Share of recent reads that read from storage, scaled by 2^`SHIFT` (a moving average).
    disk_share_scaled: AtomicU64,
    /// Until when (milliseconds since `started`) reads go to the pool.
    pooled_until_ms: AtomicU64,
}

impl QuickReads {
    pub(super) fn new(sqlite: bool) -> Self {
        QuickReads {
            in_place: sqlite && blocks_read().is_some(),
            started: Instant::now(),
            disk_share_scaled: AtomicU64::new(0),
            pooled_until_ms: AtomicU64::new(0),
        }
    }

    /// Whether the next quick read should run on the caller's thread.
    pub(super) fn in_place_now(&self) -> bool {
        self.in_place && self.in_place_at(self.started.elapsed())
    }

    /// Runs a quick read in place, counting whether it read from storage.
    pub(super) fn watch<T>(&self, read: impl FnOnce() -> T) -> T {
        let before = blocks_read();
        let result = read();
        let went_to_disk = match (before, blocks_read()) {
            (Some(before), Some(after)) => after > before,
            _ => true,
        };
        self.count_at(went_to_disk, self.started.elapsed());
        result
    }

    fn in_place_at(&self, at: Duration) -> bool {
        at.as_millis() as u64 >= self.pooled_until_ms.load(Ordering::Relaxed)
    }

    fn count_at(&self, went_to_disk: bool, at: Duration) {
        // Racing updates may lose a read: an average needs no more.
        let scaled = self.disk_share_scaled.load(Ordering::Relaxed);
        let scaled = scaled - (scaled >> SHIFT) + if went_to_disk { ONE } else { 0 };
        if scaled >> SHIFT > DISK_SHARE_LIMIT {
            self.pooled_until_ms.store((at + POOLED_FOR).as_millis() as u64, Ordering::Relaxed);
            // Tried afresh after the pause: the next reads tell whether the disk is still read.
            self.disk_share_scaled.store(0, Ordering::Relaxed);
            tracing::debug!("quick reads go to the disk: pooled for {POOLED_FOR:?}");
        } else {
            self.disk_share_scaled.store(scaled, Ordering::Relaxed);
        }
    }
}

/// Blocks this thread has read from storage so far (not from the page cache), where the system
/// counts them per thread.
#[cfg(target_os = "linux")]
fn blocks_read() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given, and the value is
    // read only when it says it did.
    let done = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) } == 0;
    done.then(|| unsafe { usage.assume_init() }.ru_inblock as u64)
}

#[cfg(not(target_os = "linux"))]
fn blocks_read() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn reads_from_memory_stay_in_place_whatever_the_odd_one_from_disk() {
        let reads = QuickReads::new(true);
        for i in 0..10_000u32 {
            reads.count_at(i % 50 == 0, MS * i);
            assert!(reads.in_place_at(MS * i), "read {i} went to the pool");
        }
    }

    #[test]
    fn reads_from_disk_go_to_the_pool_and_are_tried_again_after_a_pause() {
        let reads = QuickReads::new(true);
        let mut at = Duration::ZERO;
        let mut in_place = 0;
        while reads.in_place_at(at) {
            reads.count_at(true, at);
            in_place += 1;
            at += Duration::from_micros(10);
        }
        assert!(in_place <= 5, "{in_place} reads from disk ran in place before the pool took over");
        assert!(!reads.in_place_at(at + POOLED_FOR / 2));
        assert!(reads.in_place_at(at + POOLED_FOR));
    }

    #[test]
    fn reads_run_in_place_on_sqlite_under_linux_only() {
        assert_eq!(QuickReads::new(true).in_place_now(), cfg!(target_os = "linux"));
        assert!(!QuickReads::new(false).in_place_now());
    }

    /// The kernel's count is of reads from storage: reading a file the page cache holds (one
    /// just written and read back) adds nothing, so a site in memory stays in place.
    #[cfg(target_os = "linux")]
    #[test]
    fn reading_from_the_page_cache_counts_no_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cached");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        std::fs::read(&path).unwrap();
        let reads = QuickReads::new(true);
        for _ in 0..20 {
            assert_eq!(reads.watch(|| std::fs::read(&path).unwrap().len()), 1 << 20);
        }
        assert!(reads.in_place_now());
    }

    /// Reads of a file the page cache let go of (written, flushed, then dropped from the cache,
    /// as pages of a database larger than memory are) are counted, and send the next reads to
    /// the pool. In the crate's folder: a temporary folder may be in memory.
    #[cfg(target_os = "linux")]
    #[test]
    fn reading_from_storage_sends_quick_reads_to_the_pool() {
        use std::os::unix::fs::FileExt;
        use std::os::unix::io::AsRawFd;
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("on-disk");
        std::fs::write(&path, vec![7u8; 8 << 20]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        file.sync_all().unwrap();
        // SAFETY: a plain call on a file descriptor this test holds open.
        let dropped = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) } == 0;
        let read_page = |at: u64| {
            let mut page = [0u8; 4096];
            file.read_exact_at(&mut page, at).unwrap();
            page[0]
        };
        let probe = blocks_read().unwrap();
        read_page(0);
        if !dropped || blocks_read().unwrap() == probe {
            eprintln!("reading_from_storage_sends_quick_reads_to_the_pool: skipped, this file system keeps no count of reads from storage");
            return;
        }
        let reads = QuickReads::new(true);
        let mut in_place = 0;
        // Pages 1 MB apart, so that the kernel's read-ahead does not bring the next one in.
        while reads.in_place_now() && in_place < 7 {
            assert_eq!(reads.watch(|| read_page((in_place + 1) << 20)), 7);
            in_place += 1;
        }
        assert!(!reads.in_place_now(), "{in_place} reads from storage and quick reads still run in place");
    }
}
