//! Page types and reference counts: the rules that keep a PV guest from mapping memory it
//! does not own, writing its own page tables, or reaching the hypervisor.
//!
//! Per machine frame the table keeps an owner, a general reference count, and a type (none,
//! L1-L4 page table, segment-descriptor page, writable) with its own count, plus `pinned` and
//! `validated` flags (pv-guest-abi.md §4, Xen's mm.c). The invariants:
//!
//! * A frame has one type at a time. Its type changes only while the type count is zero.
//! * Acquiring a page-table type validates the whole table: every present entry is checked and
//!   takes the references it implies (a general reference on its target, a typed reference of
//!   the next level down, or a *writable* type reference for a writable L1 mapping). Dropping
//!   the last type reference releases them again.
//! * Hence a frame can never be mapped writable while it is a page table or descriptor page,
//!   and a validated table only points at frames its owner may use.
//! * Every reference taken is released exactly once: after a domain is torn down all counts
//!   of its frames are zero again.
//!
//! Entries of hypervisor L4 slots (256-271) are owned by the hypervisor: validation skips
//! them and `FrameMemory::init_hypervisor_l4_slots` stamps them after promotion. Superpages
//! are refused. An L2-L4 may map *itself* read-only (a recursive mapping), which takes no
//! reference; a read-only reference to *another* table of the same level (Xen's general
//! linear page tables) is refused. An L1 may map itself (or any table) read-only.
use alloc::vec;
use alloc::vec::Vec;

use xen_abi::errno::Errno;

/// A machine frame number.
pub type Mfn = u64;

/// The domain id `freed` gives frames that no longer belong to any domain (DOMID_INVALID).
pub const NO_DOMAIN: u16 = 0x7ff4;

/// Page-table entry bits.
pub mod pte {
    pub const PRESENT: u64 = 1 << 0;
    pub const RW: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    pub const PWT: u64 = 1 << 3;
    pub const PCD: u64 = 1 << 4;
    pub const ACCESSED: u64 = 1 << 5;
    pub const DIRTY: u64 = 1 << 6;
    /// PSE in L2/L3 entries, PAT in L1 entries.
    pub const PSE: u64 = 1 << 7;
    pub const PAT: u64 = 1 << 7;
    pub const GLOBAL: u64 = 1 << 8;
    pub const AVAIL: u64 = 7 << 9;
    /// Xen's marker for kernel-only mappings of a 64-bit PV guest (set by the hypervisor).
    pub const GUEST_KERNEL: u64 = 1 << 52;
    /// Bits 52-61, free for guest use.
    pub const AVAIL_HIGH: u64 = 0x3ff << 52;
    /// Bit 62, reserved for grant mappings.
    pub const GNTTAB: u64 = 1 << 62;
    pub const NX: u64 = 1 << 63;
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
    pub const CACHE: u64 = PWT | PCD | PAT;
}

/// The type of a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PageType {
    #[default]
    None,
    L1,
    L2,
    L3,
    L4,
    /// GDT/LDT frame.
    SegDesc,
    /// Mapped writable somewhere.
    Writable,
}

impl PageType {
    /// Page-table level (1-4) of a table type.
    pub fn level(self) -> Option<u8> {
        match self {
            PageType::L1 => Some(1),
            PageType::L2 => Some(2),
            PageType::L3 => Some(3),
            PageType::L4 => Some(4),
            _ => None,
        }
    }

    /// The table type of a level.
    pub fn table(level: u8) -> Option<PageType> {
        match level {
            1 => Some(PageType::L1),
            2 => Some(PageType::L2),
            3 => Some(PageType::L3),
            4 => Some(PageType::L4),
            _ => None,
        }
    }

    /// Whether acquiring this type needs validation of the frame's contents.
    fn needs_validation(self) -> bool {
        matches!(
            self,
            PageType::L1 | PageType::L2 | PageType::L3 | PageType::L4 | PageType::SegDesc
        )
    }
}

/// Who owns a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Owner {
    /// Free, or used by the hypervisor privately.
    #[default]
    None,
    /// A domain's RAM.
    Domain(u16),
    /// A hypervisor page shared with a domain (shared_info, grant frames): mappable, never
    /// freed by the domain.
    Shared(u16),
    /// Not RAM (a hole, reserved or device memory): a domain with I/O access may map it,
    /// uncached, without references.
    Io,
    /// A hypervisor page privileged domains may map read-only through DOMID_XEN (the M2P).
    HypervisorRo,
}

/// Per-frame state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageInfo {
    pub owner: Owner,
    /// General references (mappings, table references, the allocation itself).
    pub count: u32,
    pub ty: PageType,
    pub type_count: u32,
    pub pinned: bool,
    pub validated: bool,
    /// The domain still holds the frame as RAM (Xen's PGC_allocated).
    pub allocated: bool,
    /// `FrameTable::tlb_clock` when the frame last lost its type: until the next flush, TLBs
    /// may still hold writable translations of it, or paging-structure entries made from it.
    pub tlb_stamp: u32,
    /// The type it lost then was a table or descriptor page.
    pub was_table: bool,
}

/// Access to the contents of page-table and descriptor frames.
pub trait FrameMemory {
    /// Reads 64-bit entry `idx` (0..512) of frame `mfn`.
    fn read(&self, mfn: Mfn, idx: usize) -> u64;
    /// Writes 64-bit entry `idx` of frame `mfn`.
    fn write(&mut self, mfn: Mfn, idx: usize, val: u64);
    /// Fills the hypervisor's slots (256-271) of an L4 that has just been validated, so it
    /// can be loaded into CR3.
    fn init_hypervisor_l4_slots(&mut self, mfn: Mfn);
    /// Flushes the TLBs of every CPU that may run the domain, and returns once they are done.
    fn flush_tlbs(&mut self);
}

/// The domain on whose behalf an operation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dom {
    pub id: u16,
    /// Has I/O rights: may map I/O frames and use cache attributes (PWT/PCD/PAT) in L1
    /// entries (dom0).
    pub io: bool,
    /// Mappings are made on behalf of DOMID_XEN (mmu_update's foreigndom): the hypervisor's
    /// read-only shared pages may be mapped.
    pub xen_pages: bool,
    /// Mappings are made on behalf of another domain (mmu_update's foreigndom, privileged
    /// callers): L1 entries map that domain's frames instead of the caller's.
    pub foreign: Option<u16>,
}

impl Dom {
    /// The domain whose frames L1 entries may map.
    pub fn pg_owner(&self) -> u16 {
        self.foreign.unwrap_or(self.id)
    }
}

/// First and last hypervisor-owned L4 slots.
pub const HYPERVISOR_L4_SLOTS: core::ops::RangeInclusive<usize> = 256..=271;

/// Largest reference count before refusing new references (overflow protection).
const MAX_COUNT: u32 = u32::MAX / 2;

/// Error a guest gets for an entry or type it may not have.
const BAD: Errno = Errno::EINVAL;

/// Disallowed bits per level, Xen's L*_DISALLOW_MASK for 64-bit PV (cache attributes are
/// allowed in L1 entries only for domains with I/O rights).
fn disallowed(level: u8, dom: Dom) -> u64 {
    let base = pte::PWT | pte::PCD | pte::PSE | pte::GLOBAL | pte::GNTTAB;
    match level {
        1 => {
            let mut m = pte::GNTTAB;
            if !dom.io {
                m |= pte::CACHE;
            }
            m
        }
        _ => base,
    }
}

/// The entry the hardware sees for a guest-supplied entry: 64-bit PV kernels run in ring 3,
/// so every present entry is made user-accessible, and kernel-only L1 mappings are tagged.
pub fn adjust_guest_entry(level: u8, e: u64) -> u64 {
    if e & pte::PRESENT == 0 {
        return e;
    }
    if level == 1 && e & pte::USER == 0 {
        e | pte::USER | pte::GUEST_KERNEL
    } else {
        e | pte::USER
    }
}

/// Whether replacing `old` with `new` changes nothing that references depend on (same frame,
/// same presence, same permission and cache bits), so no reference needs to move.
fn same_references(old: u64, new: u64) -> bool {
    let important = pte::PRESENT | pte::RW | pte::USER | pte::CACHE | pte::NX | pte::ADDR_MASK;
    old & pte::PRESENT != 0 && (old ^ new) & important == 0
}

fn mfn_of(e: u64) -> Mfn {
    (e & pte::ADDR_MASK) >> 12
}

/// How an L1 entry refers to its target.
enum L1Target {
    /// The domain's RAM: a general reference, plus a writable type reference if RW.
    Ram,
    /// A hypervisor page shared with the domain: a general reference.
    Shared,
    /// Device memory: no reference, mapped uncached.
    Io,
}

/// The frame table: one `PageInfo` per machine frame.
#[derive(Debug)]
pub struct FrameTable {
    info: Vec<PageInfo>,
    /// Frames at or above this are beyond the machine's physical address width.
    phys_limit: Mfn,
    /// Domain frames whose last reference went after their owner gave them up: the caller
    /// frees them and adjusts the owner's page count.
    pub freed: Vec<(Mfn, u16)>,
    /// Set when frames were freed (pushed to `freed`): TLBs may still hold translations of
    /// them, so they must be flushed before the frames are reused.
    pub flush_needed: bool,
    /// Counts TLB flushes done through `FrameMemory::flush_tlbs` (starts at 1; see
    /// `PageInfo::tlb_stamp`).
    pub tlb_clock: u32,
    /// Changes whenever a validated table's entry, a frame's owner or allocation, or a frame's
    /// type changes: a guest translation worked out at one generation holds as long as the
    /// generation is the same (see the hypervisor's guest-memory cache).
    pub generation: u64,
}

impl FrameTable {
    /// A table for frames `0..nr_frames`, all free.
    pub fn new(nr_frames: u64) -> Self {
        FrameTable {
            info: vec![PageInfo::default(); nr_frames as usize],
            phys_limit: 1 << (52 - 12),
            flush_needed: false,
            tlb_clock: 1,
            freed: Vec::new(),
            generation: 0,
        }
    }

    /// Sets the machine's physical address width in bits.
    pub fn set_phys_bits(&mut self, bits: u32) {
        self.phys_limit = 1 << (bits.clamp(32, 52) - 12);
    }

    /// Marks a frame as not RAM (I/O or reserved memory).
    pub fn set_io(&mut self, mfn: Mfn) {
        if let Ok(p) = self.slot(mfn) {
            *p = PageInfo {
                owner: Owner::Io,
                ..PageInfo::default()
            };
        }
    }

    /// Marks a hypervisor frame privileged domains may map read-only through DOMID_XEN.
    pub fn set_hypervisor_ro(&mut self, mfn: Mfn) {
        if let Ok(p) = self.slot(mfn) {
            *p = PageInfo {
                owner: Owner::HypervisorRo,
                count: 1,
                ..PageInfo::default()
            };
        }
    }

    /// Number of frames described.
    pub fn len(&self) -> u64 {
        self.info.len() as u64
    }

    /// Whether the table describes no frame.
    pub fn is_empty(&self) -> bool {
        self.info.is_empty()
    }

    /// State of a frame.
    pub fn get(&self, mfn: Mfn) -> Option<&PageInfo> {
        self.info.get(usize::try_from(mfn).ok()?)
    }

    fn slot(&mut self, mfn: Mfn) -> Result<&mut PageInfo, Errno> {
        usize::try_from(mfn)
            .ok()
            .and_then(|i| self.info.get_mut(i))
            .ok_or(BAD)
    }

    /// Gives a free frame to a domain as RAM (one general reference held by the allocation).
    pub fn assign(&mut self, mfn: Mfn, domid: u16) -> Result<(), Errno> {
        let p = self.slot(mfn)?;
        if p.owner != Owner::None || p.count != 0 {
            return Err(Errno::EBUSY);
        }
        *p = PageInfo {
            owner: Owner::Domain(domid),
            count: 1,
            allocated: true,
            ..PageInfo::default()
        };
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// Shares a hypervisor frame with a domain (mappable read/write, never released by it).
    pub fn share(&mut self, mfn: Mfn, domid: u16) -> Result<(), Errno> {
        let p = self.slot(mfn)?;
        if p.owner != Owner::None || p.count != 0 {
            return Err(Errno::EBUSY);
        }
        *p = PageInfo {
            owner: Owner::Shared(domid),
            count: 1,
            ..PageInfo::default()
        };
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// Drops the hypervisor's reference on a page shared with a domain that is going away;
    /// the frame is listed in `freed` (as owned by `NO_DOMAIN`) once nothing maps it.
    pub fn unshare(&mut self, mfn: Mfn, domid: u16) -> Result<(), Errno> {
        let p = self.slot(mfn)?;
        if p.owner != Owner::Shared(domid) {
            return Err(BAD);
        }
        self.put_page(mfn);
        Ok(())
    }

    /// Whether `domid` owns `mfn` as RAM.
    pub fn owned_by(&self, mfn: Mfn, domid: u16) -> bool {
        self.get(mfn)
            .is_some_and(|p| p.owner == Owner::Domain(domid) && p.allocated)
    }

    /// Whether `domid` may reference `mfn` as memory (its RAM or a page shared with it).
    pub fn mappable_by(&self, mfn: Mfn, domid: u16) -> bool {
        self.get(mfn).is_some_and(|p| match p.owner {
            Owner::Domain(d) => d == domid && p.allocated,
            Owner::Shared(d) => d == domid,
            _ => false,
        })
    }

    /// The domain gives a RAM frame back (decrease_reservation): its allocation reference
    /// goes. The frame is freed when its last reference goes, which may be now or when the
    /// last mapping or pin goes later; either way it is then listed in `freed`.
    pub fn release(&mut self, mfn: Mfn, domid: u16) -> Result<(), Errno> {
        let p = self.slot(mfn)?;
        if p.owner != Owner::Domain(domid) || !p.allocated {
            return Err(BAD);
        }
        p.allocated = false;
        self.generation = self.generation.wrapping_add(1);
        self.put_page(mfn);
        Ok(())
    }

    /// Takes a general reference on a frame `dom` may reference.
    pub fn get_page(&mut self, mfn: Mfn, domid: u16) -> Result<(), Errno> {
        if !self.mappable_by(mfn, domid) {
            return Err(BAD);
        }
        let p = self.slot(mfn)?;
        if p.count >= MAX_COUNT {
            return Err(BAD);
        }
        p.count += 1;
        Ok(())
    }

    /// Drops a general reference. Returns true if the frame became free (its owner gave it
    /// up and nothing references it any more).
    pub fn put_page(&mut self, mfn: Mfn) -> bool {
        let Ok(p) = self.slot(mfn) else { return false };
        debug_assert!(p.count > 0, "put_page on unreferenced frame {mfn:#x}");
        p.count = p.count.saturating_sub(1);
        if p.count == 0 {
            let owner = p.owner;
            *p = PageInfo::default();
            self.generation = self.generation.wrapping_add(1);
            match owner {
                Owner::Domain(d) => {
                    self.freed.push((mfn, d));
                    self.flush_needed = true;
                    return true;
                }
                // A shared page whose domain went (`unshare`) and whose last mapping is gone.
                Owner::Shared(_) => {
                    self.freed.push((mfn, NO_DOMAIN));
                    self.flush_needed = true;
                    return true;
                }
                _ => {}
            }
        }
        false
    }

    /// Takes a type reference of `ty`, validating the frame if it becomes typed as a table or
    /// descriptor page. The caller already holds a general reference.
    pub fn get_page_type(
        &mut self,
        mem: &mut dyn FrameMemory,
        mfn: Mfn,
        ty: PageType,
        dom: Dom,
    ) -> Result<(), Errno> {
        let p = *self.get(mfn).ok_or(BAD)?;
        // Pages the hypervisor shares with a guest never become tables or descriptor pages.
        if ty.needs_validation() && !matches!(p.owner, Owner::Domain(d) if d == dom.id) {
            return Err(BAD);
        }
        if p.type_count > 0 {
            // A frame in use as something else. Xen answers -EBUSY when a writable mapping
            // is asked of a table or descriptor page, -EINVAL when a table type is asked of a
            // frame in other use.
            if p.ty != ty || !p.validated {
                return Err(if ty == PageType::Writable {
                    Errno::EBUSY
                } else {
                    BAD
                });
            }
            if p.type_count >= MAX_COUNT {
                return Err(BAD);
            }
            self.slot(mfn)?.type_count += 1;
            return Ok(());
        }
        // Type count zero: the frame may take a new type. If it lost its last type since the
        // last flush, another CPU may still write it through a stale writable translation (or
        // walk it as the table it was): a table or descriptor type, or any type after a table,
        // needs every TLB flushed first, or the contents validated below could change under
        // the hypervisor's feet.
        if p.tlb_stamp == self.tlb_clock && (ty.needs_validation() || p.was_table) {
            mem.flush_tlbs();
            self.tlb_clock = self.tlb_clock.wrapping_add(1).max(1);
        }
        {
            let s = self.slot(mfn)?;
            s.ty = ty;
            s.type_count = 1;
            s.validated = false;
        }
        self.generation = self.generation.wrapping_add(1);
        if ty.needs_validation() {
            if let Err(e) = self.validate(mem, mfn, ty, dom) {
                let s = self.slot(mfn)?;
                s.ty = PageType::None;
                s.type_count = 0;
                return Err(e);
            }
        }
        self.slot(mfn)?.validated = true;
        Ok(())
    }

    /// Drops a type reference; the last one devalidates a table, releasing what it holds.
    pub fn put_page_type(&mut self, mem: &mut dyn FrameMemory, mfn: Mfn) {
        let clock = self.tlb_clock;
        let Ok(p) = self.slot(mfn) else { return };
        debug_assert!(p.type_count > 0, "put_page_type on untyped frame {mfn:#x}");
        p.type_count = p.type_count.saturating_sub(1);
        if p.type_count == 0 {
            let ty = p.ty;
            p.validated = false;
            p.ty = PageType::None;
            p.tlb_stamp = clock;
            p.was_table = ty.needs_validation();
            self.generation = self.generation.wrapping_add(1);
            if ty.needs_validation() {
                self.devalidate(mem, mfn, ty);
            }
        }
    }

    /// General reference plus type reference.
    pub fn get_page_and_type(
        &mut self,
        mem: &mut dyn FrameMemory,
        mfn: Mfn,
        ty: PageType,
        dom: Dom,
    ) -> Result<(), Errno> {
        self.get_page(mfn, dom.id)?;
        if let Err(e) = self.get_page_type(mem, mfn, ty, dom) {
            self.put_page(mfn);
            return Err(e);
        }
        Ok(())
    }

    /// Drops a type reference and a general reference. Returns true if the frame became free.
    pub fn put_page_and_type(&mut self, mem: &mut dyn FrameMemory, mfn: Mfn) -> bool {
        self.put_page_type(mem, mfn);
        self.put_page(mfn)
    }

    /// Whether an entry of table `table` is a read-only reference to the table itself (a
    /// recursive, "linear" mapping at L2-L4), which holds no reference.
    pub fn is_self_linear(level: u8, table: Mfn, e: u64) -> bool {
        level > 1 && e & pte::PRESENT != 0 && e & pte::RW == 0 && mfn_of(e) == table
    }

    /// How an L1 entry refers to its target frame.
    fn classify_l1(&self, target: Mfn, e: u64, dom: Dom) -> Result<L1Target, Errno> {
        if target >= self.phys_limit {
            return Err(Errno::EPERM);
        }
        let Some(p) = self.get(target) else {
            // Beyond the frame table: device memory.
            return if dom.io {
                Ok(L1Target::Io)
            } else {
                Err(Errno::EPERM)
            };
        };
        match p.owner {
            Owner::Io if dom.io => Ok(L1Target::Io),
            Owner::Io => Err(Errno::EPERM),
            Owner::Domain(d) if d == dom.pg_owner() && p.allocated => Ok(L1Target::Ram),
            Owner::Shared(d) if d == dom.pg_owner() => Ok(L1Target::Shared),
            Owner::HypervisorRo if dom.io && dom.xen_pages && e & pte::RW == 0 => {
                Ok(L1Target::Shared)
            }
            _ => Err(Errno::EBUSY),
        }
    }

    /// Takes the references a present entry of a level-`level` table implies; returns bits
    /// the stored entry gets in addition (PCD|PWT for I/O memory).
    fn get_entry_refs(
        &mut self,
        mem: &mut dyn FrameMemory,
        level: u8,
        table: Mfn,
        e: u64,
        dom: Dom,
    ) -> Result<u64, Errno> {
        if e & pte::PRESENT == 0 {
            return Ok(0);
        }
        if e & disallowed(level, dom) != 0 {
            return Err(BAD);
        }
        if Self::is_self_linear(level, table, e) {
            return Ok(0);
        }
        let target = mfn_of(e);
        if level == 1 {
            match self.classify_l1(target, e, dom)? {
                L1Target::Io => Ok(pte::PCD | pte::PWT),
                L1Target::Shared => {
                    let p = self.slot(target)?;
                    if p.count >= MAX_COUNT {
                        return Err(BAD);
                    }
                    p.count += 1;
                    Ok(0)
                }
                L1Target::Ram => {
                    self.get_page(target, dom.pg_owner())?;
                    if e & pte::RW != 0 {
                        if let Err(err) = self.get_page_type(mem, target, PageType::Writable, dom) {
                            self.put_page(target);
                            return Err(err);
                        }
                    }
                    Ok(0)
                }
            }
        } else {
            let child = PageType::table(level - 1).ok_or(BAD)?;
            if !self.owned_by(target, dom.id) {
                return Err(BAD);
            }
            self.get_page_and_type(mem, target, child, dom).map(|()| 0)
        }
    }

    /// Releases the references of a present entry.
    fn put_entry_refs(&mut self, mem: &mut dyn FrameMemory, level: u8, table: Mfn, e: u64) {
        if e & pte::PRESENT == 0 || Self::is_self_linear(level, table, e) {
            return;
        }
        let target = mfn_of(e);
        if level == 1 {
            match self.get(target).map(|p| p.owner) {
                None | Some(Owner::Io) | Some(Owner::None) => {}
                Some(Owner::Domain(_)) => {
                    if e & pte::RW != 0 {
                        self.put_page_type(mem, target);
                    }
                    self.put_page(target);
                }
                Some(_) => {
                    self.put_page(target);
                }
            }
        } else {
            self.put_page_and_type(mem, target);
        }
    }

    fn entries(level: u8) -> impl Iterator<Item = usize> {
        (0..512).filter(move |i| level != 4 || !HYPERVISOR_L4_SLOTS.contains(i))
    }

    /// Validates a frame as `ty`, taking the references of every entry; all or nothing.
    fn validate(
        &mut self,
        mem: &mut dyn FrameMemory,
        mfn: Mfn,
        ty: PageType,
        dom: Dom,
    ) -> Result<(), Errno> {
        if ty == PageType::SegDesc {
            // Check every descriptor before changing any.
            if (0..512).any(|i| !crate::descriptor::check(mem.read(mfn, i))) {
                return Err(BAD);
            }
            for i in 0..512 {
                let d = mem.read(mfn, i);
                if let Some(fixed) = crate::descriptor::fixup(d).filter(|&f| f != d) {
                    mem.write(mfn, i, fixed);
                }
            }
            return Ok(());
        }
        let level = ty.level().ok_or(BAD)?;
        let idx: Vec<usize> = Self::entries(level).collect();
        for (n, &i) in idx.iter().enumerate() {
            let e = mem.read(mfn, i);
            // A self-reference of an L2-L4 (a linear page table) fails the child-type check;
            // an L1 may map itself read-only (a writable self-map fails the type check).
            let extra = match self.get_entry_refs(mem, level, mfn, e, dom) {
                Ok(x) => x,
                Err(err) => {
                    self.unwind(mem, mfn, level, &idx[..n]);
                    return Err(err);
                }
            };
            let adjusted = adjust_guest_entry(level, e) | extra;
            if adjusted != e {
                mem.write(mfn, i, adjusted);
            }
        }
        if level == 4 {
            mem.init_hypervisor_l4_slots(mfn);
        }
        Ok(())
    }

    fn unwind(&mut self, mem: &mut dyn FrameMemory, mfn: Mfn, level: u8, done: &[usize]) {
        for &i in done {
            let e = mem.read(mfn, i);
            self.put_entry_refs(mem, level, mfn, e);
        }
    }

    fn devalidate(&mut self, mem: &mut dyn FrameMemory, mfn: Mfn, ty: PageType) {
        let Some(level) = ty.level() else { return };
        let idx: Vec<usize> = Self::entries(level).collect();
        self.unwind(mem, mfn, level, &idx);
    }

    /// Replaces entry `idx` of the validated table `table` (owned by `dom`) with `new`,
    /// taking the new entry's references before dropping the old one's. `preserve_ad` keeps
    /// the accessed/dirty bits the hardware set in the old entry (MMU_PT_UPDATE_PRESERVE_AD).
    pub fn mod_entry(
        &mut self,
        mem: &mut dyn FrameMemory,
        table: Mfn,
        idx: usize,
        new: u64,
        dom: Dom,
        preserve_ad: bool,
    ) -> Result<(), Errno> {
        let p = *self.get(table).ok_or(BAD)?;
        if p.owner != Owner::Domain(dom.id) || idx >= 512 {
            return Err(BAD);
        }
        let Some(level) = p.ty.level().filter(|_| p.type_count > 0 && p.validated) else {
            return Err(BAD);
        };
        if level == 4 && HYPERVISOR_L4_SLOTS.contains(&idx) {
            return Err(BAD);
        }
        let old = mem.read(table, idx);
        let mut new = new;
        if preserve_ad {
            new |= old & (pte::ACCESSED | pte::DIRTY);
        }
        let adjusted = adjust_guest_entry(level, new);
        if same_references(old, new) {
            if new & disallowed(level, dom) != 0 {
                return Err(BAD);
            }
            // Keep the cache bits the hypervisor forced for I/O memory.
            mem.write(table, idx, adjusted | (old & (pte::PCD | pte::PWT)));
            self.generation = self.generation.wrapping_add(1);
            return Ok(());
        }
        let extra = self.get_entry_refs(mem, level, table, new, dom)?;
        mem.write(table, idx, adjusted | extra);
        self.generation = self.generation.wrapping_add(1);
        self.put_entry_refs(mem, level, table, old);
        Ok(())
    }

    /// Pins `mfn` as a table of `level` (MMUEXT_PIN_Ln_TABLE).
    pub fn pin(
        &mut self,
        mem: &mut dyn FrameMemory,
        mfn: Mfn,
        level: u8,
        dom: Dom,
    ) -> Result<(), Errno> {
        let ty = PageType::table(level).ok_or(BAD)?;
        if self.get(mfn).is_some_and(|p| p.pinned) {
            return Err(BAD);
        }
        self.get_page_and_type(mem, mfn, ty, dom)?;
        self.slot(mfn)?.pinned = true;
        Ok(())
    }

    /// Unpins a table (MMUEXT_UNPIN_TABLE).
    pub fn unpin(&mut self, mem: &mut dyn FrameMemory, mfn: Mfn, dom: Dom) -> Result<(), Errno> {
        let p = *self.get(mfn).ok_or(BAD)?;
        if !p.pinned || p.owner != Owner::Domain(dom.id) {
            return Err(BAD);
        }
        self.slot(mfn)?.pinned = false;
        self.put_page_and_type(mem, mfn);
        Ok(())
    }

    /// Drops every pin of a dying domain; with its roots released by the caller first, this
    /// leaves no type reference among its frames.
    pub fn unpin_all(&mut self, mem: &mut dyn FrameMemory, domid: u16) {
        let pinned: Vec<Mfn> = (0..self.len())
            .filter(|&m| {
                self.get(m)
                    .is_some_and(|p| p.pinned && p.owner == Owner::Domain(domid))
            })
            .collect();
        for m in pinned {
            if let Ok(p) = self.slot(m) {
                p.pinned = false;
            }
            self.put_page_and_type(mem, m);
        }
    }
}

#[cfg(test)]
mod tests;
