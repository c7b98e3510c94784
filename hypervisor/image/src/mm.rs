//! Hypervisor memory: the direct map, the frame allocator, the idle page table and the M2P.
//!
//! Address-space layout (inside Xen's reserved guest L4 slots 256-271, shared by every PV
//! guest): slot 256 holds the read-only, guest-readable machine-to-phys table at
//! MACH2PHYS_VIRT_START; slot 261 the hypervisor image at VIRT_OFFSET + physical; slot 262 the
//! direct map of all RAM (supervisor only). Slot 0 of the idle table keeps the boot identity
//! map, which no guest table carries.
use core::ops::Range;

use spin::Mutex;
use xenolith_core::bootinfo::PhysRead;
use xenolith_core::frames::FrameAllocator;
use xenolith_core::pagetype::{FrameMemory, FrameTable};

/// Virtual base of the direct map of physical memory.
pub const DIRECTMAP_BASE: u64 = 0xffff_8300_0000_0000;
/// Virtual address of physical 0 in the image mapping.
pub const VIRT_OFFSET: u64 = 0xffff_82d0_4000_0000;
/// Bytes of physical memory the boot page tables put in the direct map.
pub const BOOT_DIRECTMAP_LIMIT: u64 = 4 << 30;
/// Read-only M2P base (Xen's MACH2PHYS_VIRT_START).
pub const M2P_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// An M2P entry for a frame that no guest owns.
pub const INVALID_M2P_ENTRY: u64 = !0;

/// Page-table entry bits.
pub use xenolith_core::pagetype::pte;

unsafe extern "C" {
    static __image_start_phys: u8;
    static __image_end: u8;
    static boot_l4: u8;
}

/// Physical range the hypervisor image occupies (including bss).
pub fn image_range() -> Range<u64> {
    let (start, end) = (
        &raw const __image_start_phys as u64,
        &raw const __image_end as u64,
    );
    start..end - VIRT_OFFSET
}

/// Physical address of the idle (boot) L4 table.
pub fn idle_l4() -> u64 {
    // .boot is linked at its physical address.
    &raw const boot_l4 as u64
}

/// Converts a physical address to its direct-map virtual address.
pub const fn phys_to_virt(pa: u64) -> u64 {
    DIRECTMAP_BASE + pa
}

static DIRECTMAP_LIMIT: core::sync::atomic::AtomicU64 =
    core::sync::atomic::AtomicU64::new(BOOT_DIRECTMAP_LIMIT);

/// Reads physical memory through the direct map.
pub struct DirectMap;

impl PhysRead for DirectMap {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        let limit = DIRECTMAP_LIMIT.load(core::sync::atomic::Ordering::Relaxed);
        match paddr.checked_add(buf.len() as u64) {
            Some(end) if end <= limit => {
                // SAFETY: [paddr, end) lies below the direct-map limit, which is mapped
                // read/write for the hypervisor's whole life.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        phys_to_virt(paddr) as *const u8,
                        buf.as_mut_ptr(),
                        buf.len(),
                    )
                };
                true
            }
            _ => false,
        }
    }
}

/// A machine frame owned by the hypervisor, viewed through the direct map.
pub fn frame_bytes(mfn: u64) -> &'static mut [u8; 4096] {
    assert!(
        mfn << 12 < DIRECTMAP_LIMIT.load(core::sync::atomic::Ordering::Relaxed),
        "frame outside direct map"
    );
    // SAFETY: the frame is inside the direct map; callers only ask for frames they own
    // (allocated from the frame allocator, or guest frames they hold a reference on), and the
    // hypervisor is single-threaded per frame by construction (interrupts off, one CPU).
    unsafe { &mut *(phys_to_virt(mfn << 12) as *mut [u8; 4096]) }
}

/// A frame as a page table of 512 entries.
pub fn table_of(mfn: u64) -> &'static mut [u64; 512] {
    assert!(
        mfn << 12 < DIRECTMAP_LIMIT.load(core::sync::atomic::Ordering::Relaxed),
        "frame outside direct map"
    );
    // SAFETY: as for `frame_bytes`; a 4 KiB aligned frame is a valid [u64; 512].
    unsafe { &mut *(phys_to_virt(mfn << 12) as *mut [u64; 512]) }
}

static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);

/// Installs the frame allocator.
pub fn init_frames(a: FrameAllocator) {
    *FRAMES.lock() = Some(a);
}

/// Allocates a zeroed frame.
pub fn alloc_frame() -> Option<u64> {
    let mfn = FRAMES.lock().as_mut()?.alloc()?;
    frame_bytes(mfn).fill(0);
    Some(mfn)
}

/// Allocates `count` contiguous frames aligned to `align` frames (not zeroed).
pub fn alloc_frames_contiguous(count: u64, align: u64) -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc_contiguous(count, align)
}

/// Returns a frame to the allocator.
pub fn free_frame(mfn: u64) {
    if let Some(a) = FRAMES.lock().as_mut() {
        if a.free(mfn).is_err() {
            crate::warn!("freeing frame {mfn:#x} that is not allocated");
        }
    }
}

/// Free frames left.
pub fn free_frames() -> u64 {
    FRAMES
        .lock()
        .as_ref()
        .map_or(0, FrameAllocator::free_frames)
}

/// One past the highest RAM frame.
pub fn max_pfn() -> u64 {
    FRAMES.lock().as_ref().map_or(0, FrameAllocator::max_pfn)
}

/// Returns the table an entry points to, allocating it if absent.
fn next_table(table_mfn: u64, index: usize, flags: u64) -> Option<u64> {
    let t = table_of(table_mfn);
    if t[index] & pte::PRESENT == 0 {
        let new = alloc_frame()?;
        t[index] = (new << 12) | flags;
    }
    Some((t[index] & pte::ADDR_MASK) >> 12)
}

/// Maps one 4 KiB page in the idle table (hypervisor slots only).
pub fn map_hypervisor_page(va: u64, mfn: u64, leaf_flags: u64, table_flags: u64) -> Option<()> {
    let l4 = idle_l4() >> 12;
    let l3 = next_table(l4, ((va >> 39) & 511) as usize, table_flags)?;
    let l2 = next_table(l3, ((va >> 30) & 511) as usize, table_flags)?;
    let l1 = next_table(l2, ((va >> 21) & 511) as usize, table_flags)?;
    table_of(l1)[((va >> 12) & 511) as usize] = (mfn << 12) | leaf_flags;
    Some(())
}

/// Removes a 4 KiB mapping of the idle table (hypervisor slots only). `None` if the tables
/// above it do not exist.
pub fn unmap_hypervisor_page(va: u64) -> Option<()> {
    let mut table = idle_l4() >> 12;
    for level in (2..=4).rev() {
        let e = table_of(table)[((va >> (12 + 9 * (level - 1))) & 511) as usize];
        if e & pte::PRESENT == 0 {
            return None;
        }
        table = (e & pte::ADDR_MASK) >> 12;
    }
    table_of(table)[((va >> 12) & 511) as usize] = 0;
    Some(())
}

/// The M2P table: its frames, contiguous from `base_mfn`.
#[derive(Clone, Copy, Debug)]
pub struct M2p {
    base_mfn: u64,
    entries: u64,
}

static M2P: Mutex<Option<M2p>> = Mutex::new(None);

/// Allocates the M2P for `max_pfn` frames, fills it with INVALID entries and maps it
/// read-only and guest-readable at MACH2PHYS_VIRT_START.
pub fn init_m2p(max_pfn: u64) -> Option<()> {
    // Whole 2 MiB chunks, like Xen's superpage-backed M2P.
    let pages = (max_pfn * 8).div_ceil(4096).next_multiple_of(512);
    // 2 MiB aligned chunks, as Xen's (XENMEM_machphys_mfn_list reports them).
    let base = alloc_frames_contiguous(pages, 512)?;
    for i in 0..pages {
        let t = table_of(base + i);
        t.fill(INVALID_M2P_ENTRY);
        map_hypervisor_page(
            M2P_VIRT_START + i * 4096,
            base + i,
            pte::PRESENT | pte::USER | pte::ACCESSED | pte::NX,
            pte::PRESENT | pte::RW | pte::USER | pte::ACCESSED,
        )?;
    }
    *M2P.lock() = Some(M2p {
        base_mfn: base,
        entries: pages * 512,
    });
    // Privileged guests may map the M2P's frames read-only through DOMID_XEN.
    with_frames(|ft, _| {
        for i in 0..pages {
            ft.set_hypervisor_ro(base + i);
        }
    });
    Some(())
}

/// MFNs of the M2P's 2 MiB chunks (XENMEM_machphys_mfn_list).
pub fn m2p_chunk_mfns() -> alloc::vec::Vec<u64> {
    match *M2P.lock() {
        Some(m) => (0..m.entries.div_ceil(512 * 512))
            .map(|i| m.base_mfn + i * 512)
            .collect(),
        None => alloc::vec::Vec::new(),
    }
}

/// Sets the M2P entry of a frame.
pub fn set_m2p(mfn: u64, pfn: u64) {
    if let Some(m) = *M2P.lock() {
        if mfn < m.entries {
            table_of(m.base_mfn + mfn / 512)[(mfn % 512) as usize] = pfn;
        }
    }
}

/// Copies the hypervisor's L4 slots from the idle table into a guest L4 that has just been
/// validated. Slot 256 (the read-only M2P) stays empty until the table becomes a kernel root
/// (`fill_ro_mpt`), as on Xen.
pub fn install_hypervisor_slots(l4: &mut [u64; 512]) {
    let idle = table_of(idle_l4() >> 12);
    l4[257..272].copy_from_slice(&idle[257..272]);
    l4[256] = 0;
}

/// Makes the read-only M2P visible through a guest L4 used as a kernel root.
pub fn fill_ro_mpt(l4_mfn: u64) {
    let idle = table_of(idle_l4() >> 12)[256];
    table_of(l4_mfn)[256] = idle;
}

/// Page-table and descriptor frames as seen through the direct map.
pub struct DirectFrames;

impl FrameMemory for DirectFrames {
    fn read(&self, mfn: u64, idx: usize) -> u64 {
        table_of(mfn)[idx]
    }
    fn write(&mut self, mfn: u64, idx: usize, val: u64) {
        table_of(mfn)[idx] = val;
    }
    fn init_hypervisor_l4_slots(&mut self, mfn: u64) {
        install_hypervisor_slots(table_of(mfn));
    }
    fn flush_tlbs(&mut self) {
        crate::smp::flush_tlb_all();
    }
}

static FRAME_TABLE: Mutex<Option<FrameTable>> = Mutex::new(None);

/// Creates the frame table for `nr` frames: RAM frames start free, everything else (holes,
/// reserved and device memory) is I/O memory.
pub fn init_frame_table(nr: u64, memory: &[xenolith_core::bootinfo::MemRegion]) {
    let mut ft = FrameTable::new(nr);
    let ram = |pfn: u64| {
        memory.iter().any(|r| {
            r.kind == xenolith_core::bootinfo::E820_RAM
                && r.base <= pfn << 12
                && (pfn + 1) << 12 <= r.base + r.len
        })
    };
    for pfn in 0..nr {
        // The first MiB (BIOS, VGA, option ROMs) is I/O memory too, as on Xen.
        if pfn < 0x100 || !ram(pfn) {
            ft.set_io(pfn);
        }
    }
    let bits = xenolith_arch::instr::cpuid(0x8000_0008, 0).eax & 0xff;
    ft.set_phys_bits(if bits == 0 { 36 } else { bits });
    *FRAME_TABLE.lock() = Some(ft);
}

/// Frees the frames whose last reference went after their owner gave them up, under one
/// lock acquisition, and does any TLB flush frames freed since the last flush need first (a
/// freed frame goes back to the allocator only once no TLB can reach it; a frame that merely
/// lost a mapping is flushed for when it takes a new type, see `PageInfo::tlb_stamp`). Their
/// M2P entries become invalid and their owner's page count drops: `dom`'s, or that of the one
/// of `others` that owns them. Runs on every return to a guest, and after hypercall work that
/// frees frames the same hypercall may allocate again.
pub fn reap_freed(dom: &mut crate::domain::Domain, others: &mut crate::domain::Domains) {
    let work = with_frames(|ft, _| {
        if ft.freed.is_empty() && !ft.flush_needed {
            None
        } else {
            Some((
                core::mem::take(&mut ft.freed),
                core::mem::take(&mut ft.flush_needed),
            ))
        }
    });
    let Some((freed, flush)) = work else { return };
    if flush {
        crate::smp::flush_tlb_all();
    }
    for (mfn, domid) in freed {
        set_m2p(mfn, INVALID_M2P_ENTRY);
        free_frame(mfn);
        let owner = if domid == dom.id {
            Some(&mut *dom)
        } else {
            others.get_mut(domid)
        };
        if let Some(d) = owner {
            d.tot_pages = d.tot_pages.saturating_sub(1);
        }
    }
}

/// Runs `f` with the frame table. Lock order: a domain's lock, then this one; `f` must not
/// access guest memory through `GuestMem` (which takes this lock too).
pub fn with_frames<R>(f: impl FnOnce(&mut FrameTable, &mut DirectFrames) -> R) -> R {
    let mut guard = FRAME_TABLE.lock();
    match guard.as_mut() {
        Some(ft) => {
            let r = f(ft, &mut DirectFrames);
            FRAMES_GENERATION.store(ft.generation, core::sync::atomic::Ordering::Release);
            r
        }
        None => panic!("frame table used before it exists"),
    }
}

/// The frame table's `generation` as of the last time anyone used it (see `guestmem`'s
/// translation cache). Frame-table changes happen under the domain lock, so while a CPU holds
/// that lock the value it reads here is current.
pub static FRAMES_GENERATION: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Flushes every CPU's TLB if frames were freed since the last check.
pub fn flush_if_needed() {
    let need = with_frames(|ft, _| core::mem::take(&mut ft.flush_needed));
    if need {
        crate::smp::flush_tlb_all();
    }
}

/// A naturally aligned 64-bit word of guest-shared memory, for atomic access.
pub fn atomic_u64(maddr: u64) -> &'static core::sync::atomic::AtomicU64 {
    assert!(
        maddr.is_multiple_of(8)
            && maddr < DIRECTMAP_LIMIT.load(core::sync::atomic::Ordering::Relaxed)
    );
    // SAFETY: the address is 8-aligned and inside the direct map, which stays mapped; callers
    // only pass frames the hypervisor owns or holds a reference on, and AtomicU64 has the
    // layout of u64.
    unsafe { core::sync::atomic::AtomicU64::from_ptr(phys_to_virt(maddr) as *mut u64) }
}

/// A naturally aligned 32-bit word of guest-shared memory, for atomic access.
pub fn atomic_u32(maddr: u64) -> &'static core::sync::atomic::AtomicU32 {
    assert!(
        maddr.is_multiple_of(4)
            && maddr < DIRECTMAP_LIMIT.load(core::sync::atomic::Ordering::Relaxed)
    );
    // SAFETY: as for `atomic_u64`, with 4-byte alignment.
    unsafe { core::sync::atomic::AtomicU32::from_ptr(phys_to_virt(maddr) as *mut u32) }
}

/// A byte of guest-shared memory, for atomic access.
pub fn atomic_u8(maddr: u64) -> &'static core::sync::atomic::AtomicU8 {
    assert!(maddr < DIRECTMAP_LIMIT.load(core::sync::atomic::Ordering::Relaxed));
    // SAFETY: as for `atomic_u64`; bytes need no alignment.
    unsafe { core::sync::atomic::AtomicU8::from_ptr(phys_to_virt(maddr) as *mut u8) }
}
