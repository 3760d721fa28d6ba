//! Test-only: how many bytes of heap a value holds, counted by the allocator.
//!
//! The unit tests of the stores' representation assert on memory, which `size_of` cannot
//! see (a `serde_json::Value` tree is mostly behind pointers). The test binary's global
//! allocator is the system one plus a per-thread count of live bytes, so tests running in
//! parallel on other threads do not disturb a measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Bytes allocated minus bytes freed on this thread.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: during thread teardown the slot may be gone; such frees are not measured.
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

// SAFETY: every call goes to `System` with the caller's layout unchanged; the count is a
// thread-local `Cell` that never allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Makes a value with `make` and returns it with the bytes of heap it still holds (what
/// `make` allocated and did not free).
pub fn held_by<T>(make: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.with(Cell::get);
    let value = make();
    let after = LIVE.with(Cell::get);
    (value, usize::try_from(after - before).unwrap_or(0))
}
