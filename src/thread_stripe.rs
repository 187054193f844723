//! Data split per thread, so that request threads do not write each other's cache lines.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The calling thread's stripe of `stripes`: threads are numbered in the order they first ask,
/// so while there are no more threads than stripes, each has one of its own.
#[inline]
pub fn own(stripes: usize) -> usize {
    static THREADS: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static NUMBER: usize = THREADS.fetch_add(1, Ordering::Relaxed));
    NUMBER.with(|number| number % stripes)
}
