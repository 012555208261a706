//! A counting global allocator: measures the peak of bytes allocated by the
//! current thread while a closure runs, so a target can check that a decoder
//! never reserves much more than its input justifies.
//!
//! Counters are per thread (the replay test runs targets on several threads
//! at once); memory freed on another thread than the one that allocated it
//! only makes the measurement lower on the allocating thread, never higher.
//!
//! Work handed to other threads (tokio's blocking pool) is measured with a
//! [`Group`]: every thread that [`join`]s one adds its allocations to the
//! group's counters as well as to its own, so a target whose runtime makes
//! its threads join the caller's group measures everything done for one
//! input, and nothing another test thread does meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

/// The allocator: [`System`] with per-thread counting.
pub struct Counting;

#[global_allocator]
static GLOBAL: Counting = Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static GROUP: Cell<Option<&'static Group>> = const { Cell::new(None) };
}

/// Threads whose allocations are counted together (see the module doc).
#[derive(Debug, Default)]
pub struct Group {
    live: AtomicIsize,
    peak: AtomicIsize,
}

impl Group {
    /// A new group that lives as long as the process (groups are made once
    /// per target thread, and the allocator reads them without locking).
    pub fn leak() -> &'static Group {
        Box::leak(Box::default())
    }

    /// Runs `f` and returns its result with the peak number of bytes the
    /// group's threads held allocated together during the call, above what
    /// they held before. `f` may await work on other threads of the group;
    /// see [`Group::start`] for code that cannot be put in a closure.
    pub fn peak_during<R>(&self, f: impl FnOnce() -> R) -> (R, usize) {
        let mark = self.start();
        let result = f();
        (result, self.peak_since(mark))
    }

    /// Starts a measurement: resets the group's peak to what it holds now
    /// and returns that, for [`Group::peak_since`].
    pub fn start(&self) -> isize {
        let live = self.live.load(Ordering::SeqCst);
        self.peak.store(live, Ordering::SeqCst);
        live
    }

    /// The peak number of bytes the group held since [`Group::start`]
    /// returned `mark`, above `mark`.
    pub fn peak_since(&self, mark: isize) -> usize {
        usize::try_from(self.peak.load(Ordering::SeqCst) - mark).unwrap_or(0)
    }

    fn add(&self, delta: isize) {
        let now = self.live.fetch_add(delta, Ordering::SeqCst) + delta;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }
}

/// Makes the current thread count its allocations in `group` too, from now
/// on (a thread is in at most one group; joining another leaves the first).
pub fn join(group: &'static Group) {
    GROUP.with(|g| g.set(Some(group)));
}

/// The group the current thread joined, if any.
pub fn current_group() -> Option<&'static Group> {
    GROUP.with(Cell::get)
}

fn add(delta: isize) {
    if let Ok(Some(group)) = GROUP.try_with(Cell::get) {
        group.add(delta);
    }
    // `try_with`: thread-local storage may be gone while a thread exits.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counting touches only const-initialised thread-locals,
// which never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see above).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see above).
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is (see above).
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is (see above).
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        new
    }
}

/// Runs `f` and returns its result with the peak number of bytes the current
/// thread held allocated during the call, above what it held before.
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, usize::try_from(peak - start).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_reservation_is_measured_even_if_never_touched() {
        let ((), peak) = peak_during(|| {
            let v: Vec<u8> = Vec::with_capacity(8 << 20);
            std::hint::black_box(&v);
        });
        assert!(peak >= 8 << 20, "peak {peak}");
        let ((), small) = peak_during(|| {
            std::hint::black_box(vec![0u8; 100]);
        });
        assert!(small < 4096, "peak {small}");
    }

    #[test]
    fn a_group_measures_what_its_other_threads_reserve() {
        let group = Group::leak();
        join(group);
        let (v, peak) = group.peak_during(|| {
            std::thread::spawn(move || {
                join(group);
                let v: Vec<u8> = Vec::with_capacity(8 << 20);
                v
            })
            .join()
            .expect("the thread")
        });
        drop(v);
        assert!(peak >= 8 << 20, "peak {peak}");
        // A thread outside the group is not counted.
        let ((), outside) = group.peak_during(|| {
            std::thread::spawn(|| {
                std::hint::black_box(Vec::<u8>::with_capacity(8 << 20));
            })
            .join()
            .expect("the thread");
        });
        assert!(outside < 1 << 20, "peak {outside}");
    }
}
