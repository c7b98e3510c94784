//! PV memory helpers: a frame allocator, scratch mapping windows, page-table
//! walks and the `mmu_update` / `mmuext_op` / `multicall` / `memory_op` calls
//! the memory tests need.
//!
//! Frames: dom0 owns pfns `0..nr_pages`, but the builder maps only the initial
//! region (pfns `0..initial_pfns()` at `VIRT_BASE + pfn * 4K`). [`Mm`] hands
//! out the pfns above it, from the top down: RAM the domain owns that nothing
//! maps or uses as a table (type count 0), so a test may retype it freely.
//!
//! Windows: [`WINDOWS`] page-aligned pages of the kernel's own `.bss` whose L1
//! entries (in the builder's tables) are repointed with `update_va_mapping`
//! to any frame, then restored to their own frame. Window [`READ_WINDOW`] is
//! used by [`read_entry`], window [`FILL_WINDOW`] by [`fill_page`]; tests use
//! the others.
//!
//! Page tables: the current kernel root is tracked in a static (the builder's
//! L4 at `pt_base` until [`new_baseptr`] installs another). [`map_va`] builds
//! missing L3/L2/L1 tables from fresh frames (cleared, pinned, hooked in with
//! `mmu_update`) and then writes the L1 entry.
//!
//! Single vCPU, no re-entry (see the crate invariants): the statics are only
//! touched from the test's thread of execution.

use core::sync::atomic::{AtomicU64, Ordering};

use xen_abi::hypercall as nr;
use xen_abi::layout::{MACH2PHYS_VIRT_START, PAGE_GUEST_KERNEL, PAGE_SIZE};
use xen_abi::mmu::{
    MmuUpdate, MmuextOp, MMUEXT_CLEAR_PAGE, MMUEXT_INVLPG_LOCAL, MMUEXT_NEW_BASEPTR,
    MMUEXT_PIN_L1_TABLE, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_UNPIN_TABLE, MMU_NORMAL_PT_UPDATE,
    UVMF_INVLPG,
};
use xen_abi::multicall::MulticallEntry;
use xen_abi::start_info::StartInfo;
use xen_abi::types::DOMID_SELF;
use xen_abi::Errno;

use crate::hypercall::{self, result};
use crate::traps::probe_read_u64;
use crate::x86::{PTE_ACCESSED, PTE_ADDR_MASK, PTE_DIRTY, PTE_PRESENT, PTE_RW, PTE_USER};

/// Page-table entry: write-through.
pub const PTE_PWT: u64 = 1 << 3;
/// Page-table entry: cache disable.
pub const PTE_PCD: u64 = 1 << 4;
/// L2/L3 entry: superpage.
pub const PTE_PSE: u64 = 1 << 7;
/// Page-table entry: global.
pub const PTE_GLOBAL: u64 = 1 << 8;
/// Page-table entry: no-execute.
pub const PTE_NX: u64 = 1 << 63;
/// Xen's software bit for guest-kernel-only L1 mappings (bit 52).
pub const PTE_GUEST_KERNEL: u64 = PAGE_GUEST_KERNEL;
/// Leaf flags of a kernel read-write mapping.
pub const KERNEL_RW: u64 = PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_DIRTY;
/// Leaf flags of a kernel read-only mapping.
pub const KERNEL_RO: u64 = PTE_PRESENT | PTE_ACCESSED;
/// Flags of a non-leaf entry (as the builder writes them).
pub const TABLE: u64 = PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED | PTE_DIRTY;
/// The M2P's "no pfn" value.
pub const INVALID_M2P: u64 = !0;
/// The p2m's "no mfn" value (what a guest writes for a ballooned-out pfn).
pub const INVALID_P2M: u64 = !0;

/// Number of scratch windows.
pub const WINDOWS: usize = 8;
/// The window [`read_entry`] uses.
pub const READ_WINDOW: usize = WINDOWS - 1;
/// The window [`fill_page`] uses.
pub const FILL_WINDOW: usize = WINDOWS - 2;

#[repr(C, align(4096))]
struct WindowPages([[u8; 4096]; WINDOWS]);

/// Never accessed as a Rust object: its pages are remapped to other frames.
static mut WINDOW_PAGES: WindowPages = WindowPages([[0; 4096]; WINDOWS]);

static MFN_LIST: AtomicU64 = AtomicU64::new(0);
static NR_PAGES: AtomicU64 = AtomicU64::new(0);
static VIRT_BASE: AtomicU64 = AtomicU64::new(0);
static INITIAL_PFNS: AtomicU64 = AtomicU64::new(0);
static BOOT_L4: AtomicU64 = AtomicU64::new(0);
static CURRENT_L4: AtomicU64 = AtomicU64::new(0);

/// A frame of the domain: its pfn and the mfn the p2m gives for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub pfn: u64,
    pub mfn: u64,
}

impl Frame {
    /// Machine address of byte `offset` of the frame.
    pub const fn maddr(self, offset: u64) -> u64 {
        (self.mfn << 12) + offset
    }
}

/// Top-down allocator over the pfns above the initial region.
#[derive(Debug)]
pub struct Mm {
    next: u64,
    floor: u64,
}

impl Mm {
    /// Records where the p2m and the boot tables are; call once at start.
    pub fn new(si: &'static StartInfo) -> Mm {
        let virt_base = crate::boot::virt_base();
        MFN_LIST.store(si.mfn_list, Ordering::SeqCst);
        NR_PAGES.store(si.nr_pages, Ordering::SeqCst);
        VIRT_BASE.store(virt_base, Ordering::SeqCst);
        // Xen's dom0 builder: one stack page after the tables, then v_end is
        // rounded up to 4 MiB leaving at least 512 KiB.
        let stack_top = si.pt_base + (si.nr_pt_frames + 1) * PAGE_SIZE;
        let mut v_end = stack_top.next_multiple_of(4 << 20);
        if v_end - stack_top < 512 << 10 {
            v_end += 4 << 20;
        }
        let initial = (v_end - virt_base) / PAGE_SIZE;
        INITIAL_PFNS.store(initial, Ordering::SeqCst);
        let l4 = p2m((si.pt_base - virt_base) / PAGE_SIZE);
        BOOT_L4.store(l4, Ordering::SeqCst);
        if CURRENT_L4.load(Ordering::SeqCst) == 0 {
            CURRENT_L4.store(l4, Ordering::SeqCst);
        }
        Mm {
            next: si.nr_pages,
            floor: initial,
        }
    }

    /// The next unused frame (not cleared).
    ///
    /// # Panics
    /// When the free pfns run out.
    pub fn alloc(&mut self) -> Frame {
        loop {
            assert!(self.next > self.floor, "out of free frames");
            self.next -= 1;
            let mfn = p2m(self.next);
            if mfn != INVALID_P2M {
                return Frame {
                    pfn: self.next,
                    mfn,
                };
            }
        }
    }

    /// A frame cleared with `MMUEXT_CLEAR_PAGE`.
    ///
    /// # Panics
    /// When the free pfns run out or Xen refuses to clear the frame.
    pub fn alloc_zeroed(&mut self) -> Frame {
        let f = self.alloc();
        clear_page(f.mfn).expect("MMUEXT_CLEAR_PAGE of a fresh frame");
        f
    }

    /// Lowest pfn handed out so far (frames below it are still free).
    pub fn low_water(&self) -> u64 {
        self.next
    }
}

/// Number of pfns the builder mapped at `VIRT_BASE`.
pub fn initial_pfns() -> u64 {
    INITIAL_PFNS.load(Ordering::SeqCst)
}

/// The domain's page count (start_info.nr_pages).
pub fn nr_pages() -> u64 {
    NR_PAGES.load(Ordering::SeqCst)
}

/// VA of pfn `pfn` in the initial region.
pub fn va_of_pfn(pfn: u64) -> u64 {
    VIRT_BASE.load(Ordering::SeqCst) + pfn * PAGE_SIZE
}

/// The p2m entry of `pfn` (from the builder's `mfn_list`).
///
/// # Panics
/// If `pfn` is out of range.
pub fn p2m(pfn: u64) -> u64 {
    assert!(pfn < nr_pages(), "pfn {pfn:#x} beyond nr_pages");
    let list = MFN_LIST.load(Ordering::SeqCst) as *const u64;
    // SAFETY: mfn_list is the builder's p2m array of nr_pages entries in the
    // initial region, mapped for the domain's life; pfn is in bounds.
    unsafe { list.add(pfn as usize).read_volatile() }
}

/// Sets the guest's own p2m entry of `pfn` (after ballooning).
///
/// # Panics
/// If `pfn` is out of range.
pub fn set_p2m(pfn: u64, mfn: u64) {
    assert!(pfn < nr_pages(), "pfn {pfn:#x} beyond nr_pages");
    let list = MFN_LIST.load(Ordering::SeqCst) as *mut u64;
    // SAFETY: as for `p2m`; the array is the guest's own writable memory.
    unsafe { list.add(pfn as usize).write_volatile(mfn) }
}

/// The M2P entry of `mfn`, or None if the read faults.
pub fn m2p(mfn: u64) -> Option<u64> {
    probe_read_u64(MACH2PHYS_VIRT_START + mfn * 8).ok()
}

/// MFN of the builder's L4 (pt_base).
pub fn boot_l4() -> u64 {
    BOOT_L4.load(Ordering::SeqCst)
}

/// MFN of the kernel root currently installed (as far as this module knows).
pub fn current_l4() -> u64 {
    CURRENT_L4.load(Ordering::SeqCst)
}

/// VA of window `i`.
pub fn window_va(i: usize) -> u64 {
    assert!(i < WINDOWS);
    (&raw const WINDOW_PAGES) as u64 + i as u64 * PAGE_SIZE
}

/// Maps window `i` to `mfn` (read-only unless `writable`); returns its VA.
pub fn map_window(i: usize, mfn: u64, writable: bool) -> Result<u64, Errno> {
    let va = window_va(i);
    let flags = if writable { KERNEL_RW } else { KERNEL_RO };
    // SAFETY: window pages are used by nothing but this module's callers,
    // which only access them between map and unmap.
    unsafe { hypercall::update_va_mapping(va, (mfn << 12) | flags, UVMF_INVLPG)? };
    Ok(va)
}

/// Points window `i` back at its own frame.
pub fn unmap_window(i: usize) -> Result<(), Errno> {
    let va = window_va(i);
    let pfn = (va - VIRT_BASE.load(Ordering::SeqCst)) / PAGE_SIZE;
    // SAFETY: as for `map_window`; the window's own frame is ordinary RAM.
    unsafe { hypercall::update_va_mapping(va, (p2m(pfn) << 12) | KERNEL_RW, UVMF_INVLPG)? };
    Ok(())
}

/// Entry `index` of the page (table) at `mfn`, read through a read-only
/// mapping (the initial region's if the frame is there, else a window).
///
/// # Panics
/// If the frame cannot be mapped read-only (not the domain's).
pub fn read_entry(mfn: u64, index: u64) -> u64 {
    assert!(index < 512);
    if let Some(pfn) = m2p(mfn) {
        if pfn < initial_pfns() && p2m(pfn) == mfn {
            let r = probe_read_u64(va_of_pfn(pfn) + index * 8);
            return r.expect("read of the initial region");
        }
    }
    let va = map_window(READ_WINDOW, mfn, false).expect("read-only window mapping");
    let v = probe_read_u64(va + index * 8).expect("read through a window");
    unmap_window(READ_WINDOW).expect("restoring the read window");
    v
}

/// Maps `mfn` writable in [`FILL_WINDOW`], lets `f` write the page, unmaps it.
pub fn fill_page(mfn: u64, f: impl FnOnce(&mut [u64; 512])) -> Result<(), Errno> {
    let va = map_window(FILL_WINDOW, mfn, true)?;
    // SAFETY: the window maps `mfn` writable until `unmap_window` below and
    // nothing else accesses it meanwhile; the page is 4 KiB, 8-byte aligned.
    f(unsafe { &mut *(va as *mut [u64; 512]) });
    unmap_window(FILL_WINDOW)
}

/// Machine address of entry `index` of the table at `mfn`.
pub const fn entry_maddr(mfn: u64, index: u64) -> u64 {
    (mfn << 12) + index * 8
}

/// `mmu_update` of one entry (`MMU_NORMAL_PT_UPDATE`, own domain).
pub fn set_entry(mfn: u64, index: u64, val: u64) -> Result<(), Errno> {
    let req = [MmuUpdate {
        ptr: entry_maddr(mfn, index) | MMU_NORMAL_PT_UPDATE,
        val,
    }];
    // SAFETY: Xen validates the update; callers only change entries of test
    // tables, never the ones mapping the running kernel.
    unsafe { hypercall::mmu_update(&req, DOMID_SELF)? };
    Ok(())
}

/// Index of `va` in the table of `level` (4 = L4 .. 1 = L1).
pub const fn index_of(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * (level - 1))) & 511
}

/// The tables a walk of `va` visits: `tables[0]` is the L4 mfn, then L3, L2,
/// L1 as far as present; `entries[n]` is the entry read from `tables[n]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Walk {
    pub tables: [u64; 4],
    pub entries: [u64; 4],
    /// How many levels were read (4 if the L1 entry was reached).
    pub depth: usize,
}

/// Walks the current kernel tables for `va`.
pub fn walk(va: u64) -> Walk {
    let mut w = Walk::default();
    let mut table = current_l4();
    for n in 0..4 {
        let e = read_entry(table, index_of(va, 4 - n as u32));
        w.tables[n] = table;
        w.entries[n] = e;
        w.depth = n + 1;
        if e & PTE_PRESENT == 0 || (n > 0 && n < 3 && e & PTE_PSE != 0) {
            break;
        }
        table = (e & PTE_ADDR_MASK) >> 12;
    }
    w
}

/// Machine address of the L1 entry mapping `va` in the current tables.
pub fn l1e_maddr(va: u64) -> Option<u64> {
    let w = walk(va);
    (w.depth == 4 && w.entries[2] & PTE_PRESENT != 0)
        .then(|| entry_maddr(w.tables[3], index_of(va, 1)))
}

/// Maps `va` to `pte` in the current kernel tables, creating any missing
/// L3/L2/L1 from fresh frames (cleared, pinned, hooked with `mmu_update`).
/// Returns the L1 mfn.
pub fn map_va(mm: &mut Mm, va: u64, pte: u64) -> Result<u64, Errno> {
    let mut table = current_l4();
    for level in (2..=4u32).rev() {
        let index = index_of(va, level);
        let e = read_entry(table, index);
        table = if e & PTE_PRESENT != 0 {
            (e & PTE_ADDR_MASK) >> 12
        } else {
            let child = mm.alloc_zeroed();
            pin(level - 1, child.mfn)?;
            set_entry(table, index, (child.mfn << 12) | TABLE)?;
            child.mfn
        };
    }
    set_entry(table, index_of(va, 1), pte)?;
    Ok(table)
}

/// Clears the L1 entry of `va` (which must be mapped) and flushes it.
pub fn unmap_va(va: u64) -> Result<(), Errno> {
    let maddr = l1e_maddr(va).ok_or(Errno::EINVAL)?;
    set_entry(maddr >> 12, (maddr & 0xfff) / 8, 0)?;
    invlpg(va)
}

/// One `mmuext_op`.
pub fn mmuext(cmd: u32, arg1: u64, arg2: u64) -> Result<(), Errno> {
    let op = [MmuextOp {
        cmd,
        pad: 0,
        arg1,
        arg2,
    }];
    // SAFETY: Xen validates the operation; callers do not retype or unmap
    // anything the running kernel uses.
    unsafe { hypercall::mmuext_op(&op, DOMID_SELF)? };
    Ok(())
}

/// `MMUEXT_PIN_L<level>_TABLE` (level 1..=4).
pub fn pin(level: u32, mfn: u64) -> Result<(), Errno> {
    assert!((1..=4).contains(&level));
    mmuext(MMUEXT_PIN_L1_TABLE + level - 1, mfn, 0)
}

/// `MMUEXT_UNPIN_TABLE`.
pub fn unpin(mfn: u64) -> Result<(), Errno> {
    mmuext(MMUEXT_UNPIN_TABLE, mfn, 0)
}

/// `MMUEXT_NEW_BASEPTR`; on success [`current_l4`] follows.
pub fn new_baseptr(mfn: u64) -> Result<(), Errno> {
    mmuext(MMUEXT_NEW_BASEPTR, mfn, 0)?;
    CURRENT_L4.store(mfn, Ordering::SeqCst);
    Ok(())
}

/// `MMUEXT_CLEAR_PAGE`.
pub fn clear_page(mfn: u64) -> Result<(), Errno> {
    mmuext(MMUEXT_CLEAR_PAGE, mfn, 0)
}

/// `MMUEXT_INVLPG_LOCAL`.
pub fn invlpg(va: u64) -> Result<(), Errno> {
    mmuext(MMUEXT_INVLPG_LOCAL, va, 0)
}

/// `MMUEXT_TLB_FLUSH_LOCAL`.
pub fn flush_tlb() -> Result<(), Errno> {
    mmuext(MMUEXT_TLB_FLUSH_LOCAL, 0, 0)
}

/// `mmu_update(reqs, count, done, foreigndom)` with raw arguments.
///
/// # Safety
/// Xen reads `count` requests at `reqs` and writes `done`; pointers may be
/// bad on purpose, but valid ones must be valid for that, and the updates
/// must not unmap anything in use.
pub unsafe fn mmu_update_raw(reqs: u64, count: u64, done: u64, foreigndom: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall::call(nr::MMU_UPDATE, [reqs, count, done, foreigndom, 0]) }
}

/// `mmuext_op(ops, count, done, foreigndom)` with raw arguments.
///
/// # Safety
/// As for [`mmu_update_raw`], for `mmuext_op` operations.
pub unsafe fn mmuext_op_raw(ops: u64, count: u64, done: u64, foreigndom: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall::call(nr::MMUEXT_OP, [ops, count, done, foreigndom, 0]) }
}

/// `mmu_update` returning both the result and the `done` count.
pub fn mmu_update_done(reqs: &[MmuUpdate], foreigndom: u16) -> (Result<u64, Errno>, u32) {
    let mut done: u32 = 0xdead;
    // SAFETY: `reqs` and `done` are valid; Xen validates each update and the
    // callers only target test tables and frames.
    let r = unsafe {
        mmu_update_raw(
            reqs.as_ptr() as u64,
            reqs.len() as u64,
            (&raw mut done) as u64,
            u64::from(foreigndom),
        )
    };
    (result(r), done)
}

/// `mmuext_op` returning both the result and the `done` count.
pub fn mmuext_done(ops: &[MmuextOp], foreigndom: u16) -> (Result<u64, Errno>, u32) {
    let mut done: u32 = 0xdead;
    // SAFETY: as for `mmu_update_done`.
    let r = unsafe {
        mmuext_op_raw(
            ops.as_ptr() as u64,
            ops.len() as u64,
            (&raw mut done) as u64,
            u64::from(foreigndom),
        )
    };
    (result(r), done)
}

/// `update_va_mapping(va, pte, flags)`, raw result.
///
/// # Safety
/// As for [`hypercall::update_va_mapping`].
pub unsafe fn update_va_mapping_raw(va: u64, pte: u64, flags: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall::call(nr::UPDATE_VA_MAPPING, [va, pte, flags, 0, 0]) }
}

/// `multicall(entries, count)`; each entry's `result` is filled in.
///
/// # Safety
/// Every entry must be a call that is safe to make (see the other wrappers).
pub unsafe fn multicall(entries: &mut [MulticallEntry]) -> Result<u64, Errno> {
    let args = [entries.as_mut_ptr() as u64, entries.len() as u64, 0, 0, 0];
    // SAFETY: Xen reads the entries and writes their results; the caller
    // vouches for the calls.
    result(unsafe { hypercall::call(nr::MULTICALL, args) })
}

/// `multicall(list, count)` with raw arguments.
///
/// # Safety
/// As for [`multicall`]; `list` may be bad on purpose.
pub unsafe fn multicall_raw(list: u64, count: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall::call(nr::MULTICALL, [list, count, 0, 0, 0]) }
}

/// A multicall entry for hypercall `op` with `args`.
pub fn mc_entry(op: u64, args: &[u64]) -> MulticallEntry {
    let mut e = MulticallEntry {
        op,
        result: 0x5a5a_5a5a,
        args: [0; 6],
    };
    e.args[..args.len()].copy_from_slice(args);
    e
}
