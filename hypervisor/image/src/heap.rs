//! The hypervisor heap: a static bootstrap arena plus one large region carved from RAM.
//!
//! Invariant: every block is returned to the arena it came from, told apart by address.
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::NonNull;

use linked_list_allocator::Heap;
use spin::Mutex;

const BOOTSTRAP_SIZE: usize = 2 << 20;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; BOOTSTRAP_SIZE]>);
// SAFETY: the arena is only touched through the heap's mutex.
unsafe impl Sync for Arena {}

static BOOTSTRAP: Arena = Arena(UnsafeCell::new([0; BOOTSTRAP_SIZE]));

struct Heaps {
    bootstrap: Heap,
    main: Heap,
    main_range: (usize, usize),
    ready: bool,
}

/// The global allocator.
pub struct HypervisorHeap(Mutex<Heaps>);

#[global_allocator]
static HEAP: HypervisorHeap = HypervisorHeap(Mutex::new(Heaps {
    bootstrap: Heap::empty(),
    main: Heap::empty(),
    main_range: (0, 0),
    ready: false,
}));

/// Makes the bootstrap arena usable. Called once, first thing on the boot CPU.
pub fn init_bootstrap() {
    let mut h = HEAP.0.lock();
    if !h.ready {
        // SAFETY: the arena is a static, exclusively owned by this heap from now on.
        unsafe {
            h.bootstrap
                .init(BOOTSTRAP.0.get().cast::<u8>(), BOOTSTRAP_SIZE)
        };
        h.ready = true;
    }
}

/// Adds the main heap region.
///
/// # Safety
/// `[start, start + size)` must be mapped, writable, unused memory owned by the heap forever.
pub unsafe fn add_region(start: usize, size: usize) {
    let mut h = HEAP.0.lock();
    // SAFETY: per the caller's contract.
    unsafe { h.main.init(start as *mut u8, size) };
    h.main_range = (start, start + size);
}

/// (used, free) bytes of the main heap.
pub fn stats() -> (usize, usize) {
    let h = HEAP.0.lock();
    (
        h.main.used() + h.bootstrap.used(),
        h.main.free() + h.bootstrap.free(),
    )
}

// SAFETY: allocation is serialised by the mutex; blocks are freed into the arena that owns
// their address.
unsafe impl GlobalAlloc for HypervisorHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut h = self.0.lock();
        if h.main_range.1 != 0 {
            if let Ok(p) = h.main.allocate_first_fit(layout) {
                return p.as_ptr();
            }
        }
        h.bootstrap
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let mut h = self.0.lock();
        let Some(p) = NonNull::new(ptr) else { return };
        let a = ptr as usize;
        if a >= h.main_range.0 && a < h.main_range.1 {
            // SAFETY: the block came from the main heap with this layout.
            unsafe { h.main.deallocate(p, layout) }
        } else {
            // SAFETY: the block came from the bootstrap heap with this layout.
            unsafe { h.bootstrap.deallocate(p, layout) }
        }
    }
}
