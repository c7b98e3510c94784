//! Test kernel `memory-op`: XENMEM queries, ballooning out and in, increase_reservation and exchange as dom0.
//!
//! Command line: none. Checks maximum_ram_page against machphys_mapping and
//! the host E820; current/maximum reservation and maximum_gpfn; the M2P
//! chunk list (each chunk read back through a DOMID_XEN mapping);
//! memory_map (none for a PV dom0) and machine_memory_map; decrease_reservation
//! (M2P entry invalidated, reservation down, the frame unmappable; a pinned
//! table is unpinned on the way; a still-mapped frame leaves only when its
//! last mapping goes); populate_physmap and increase_reservation (up to the
//! maximum); XENMEM_exchange of one and of two frames; and the error answers
//! (bad domid, orders, counts, continuation bits) of each.
#![no_std]
#![no_main]

use xen_abi::hypercall::MEMORY_OP;
use xen_abi::layout::{MACH2PHYS_VIRT_START, PAGE_SIZE};
use xen_abi::memory::{
    E820Entry, XenMachphysMfnList, XenMemoryExchange, XenMemoryMap, XenMemoryReservation, E820_RAM,
    MEMOP_EXTENT_SHIFT, XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION, XENMEM_EXCHANGE,
    XENMEM_INCREASE_RESERVATION, XENMEM_MACHINE_MEMORY_MAP, XENMEM_MACHPHYS_MFN_LIST,
    XENMEM_MAXIMUM_GPFN, XENMEM_MAXIMUM_RAM_PAGE, XENMEM_MAXIMUM_RESERVATION, XENMEM_MEMORY_MAP,
    XENMEM_POPULATE_PHYSMAP,
};
use xen_abi::mmu::{MmuUpdate, MMU_NORMAL_PT_UPDATE};
use xen_abi::types::{DOMID_SELF, DOMID_XEN};
use xen_abi::Errno;
use xenolith_guests::mm::{
    self, entry_maddr, fill_page, map_window, mmu_update_done, unmap_window, Frame, Mm,
    INVALID_M2P, INVALID_P2M, KERNEL_RO,
};
use xenolith_guests::traps::probe_read_u64;
use xenolith_guests::{
    check, check_eq, hypercall, println, shared_info, test_main, Boot, Failures, Verdict,
};

test_main!(run);

/// Test mappings (L4 slot 4).
const VA_T: u64 = 4 << 39;

fn memop(cmd: u32, arg: u64) -> i64 {
    // SAFETY: every argument passed here is a valid structure for `cmd`
    // (or deliberately bad for the error cases), and the reservation
    // operations only give away frames nothing uses.
    unsafe { hypercall::call(MEMORY_OP, [cmd.into(), arg, 0, 0, 0]) }
}

fn memop_domid(cmd: u32, domid: u16) -> i64 {
    let d = domid;
    memop(cmd, (&raw const d) as u64)
}

fn reservation(extents: &mut [u64], order: u32, domid: u16) -> XenMemoryReservation {
    XenMemoryReservation {
        extent_start: if extents.is_empty() {
            0
        } else {
            extents.as_mut_ptr() as u64
        },
        nr_extents: extents.len() as u64,
        extent_order: order,
        mem_flags: 0,
        domid,
        pad: [0; 6],
    }
}

/// A reservation operation; returns the number of extents done.
fn resv(cmd: u32, r: &XenMemoryReservation) -> i64 {
    memop(cmd, (r as *const XenMemoryReservation) as u64)
}

fn current() -> i64 {
    memop_domid(XENMEM_CURRENT_RESERVATION, DOMID_SELF)
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    let si = boot.start_info;
    if let Err(e) = shared_info::map(si) {
        println!("warning: cannot map shared_info ({e:?})");
    }
    let mut mm = Mm::new(si);
    let l1t = match mm::map_va(&mut mm, VA_T, 0) {
        Ok(l1) => l1,
        Err(e) => {
            t.fail(format_args!("building tables for {VA_T:#x}: {e:?}"));
            return t.verdict();
        }
    };
    let max_page = queries(&mut t, si.nr_pages);
    m2p_chunks(&mut t, l1t, max_page);
    memory_maps(&mut t, max_page);
    balloon(&mut t, &mut mm, l1t);
    increase(&mut t, &mut mm);
    exchange(&mut t, &mut mm);
    t.verdict()
}

/// The simple queries; returns max_page.
fn queries(t: &mut Failures, nr_pages: u64) -> u64 {
    let max_page = memop(XENMEM_MAXIMUM_RAM_PAGE, 0);
    let mapping = hypercall::machphys_mapping();
    println!("maximum_ram_page {max_page:#x}, machphys_mapping {mapping:x?}");
    check_eq!(
        t,
        Ok(max_page as u64),
        mapping.map(|m| m.max_mfn + 1),
        "maximum_ram_page = machphys_mapping.max_mfn + 1 (dom0)"
    );
    check_eq!(
        t,
        current(),
        nr_pages as i64,
        "current_reservation(DOMID_SELF)"
    );
    check_eq!(
        t,
        memop_domid(XENMEM_CURRENT_RESERVATION, 0),
        nr_pages as i64,
        "current_reservation(0)"
    );
    // dom0's maximum is unlimited (~0U pages) unless the toolstack sets one.
    check_eq!(
        t,
        memop_domid(XENMEM_MAXIMUM_RESERVATION, DOMID_SELF),
        0xffff_ffff,
        "maximum_reservation(DOMID_SELF)"
    );
    // maximum_gpfn of a PV guest is shared_info.arch.max_pfn - 1, as the
    // guest wrote it (0 counts as 1).
    check_eq!(
        t,
        memop_domid(XENMEM_MAXIMUM_GPFN, DOMID_SELF),
        0,
        "maximum_gpfn with shared_info max_pfn 0"
    );
    if let Some(s) = shared_info::get() {
        let p = s.as_ptr().cast_mut();
        // SAFETY: shared_info is mapped writable; max_pfn is the guest's to set.
        unsafe { (&raw mut (*p).arch.max_pfn).write_volatile(nr_pages) };
        check_eq!(
            t,
            memop_domid(XENMEM_MAXIMUM_GPFN, DOMID_SELF),
            nr_pages as i64 - 1,
            "maximum_gpfn with shared_info max_pfn = nr_pages"
        );
    }
    for cmd in [
        XENMEM_CURRENT_RESERVATION,
        XENMEM_MAXIMUM_RESERVATION,
        XENMEM_MAXIMUM_GPFN,
    ] {
        for domid in [5, DOMID_XEN, 0x7fff] {
            check_eq!(
                t,
                memop_domid(cmd, domid),
                Errno::ESRCH.as_ret(),
                "memory_op {cmd} for domid {domid:#x}"
            );
        }
        // A continuation start in the upper bits is refused for non-batch ops.
        let d = DOMID_SELF;
        check_eq!(
            t,
            memop(cmd | (1 << MEMOP_EXTENT_SHIFT), (&raw const d) as u64),
            Errno::EINVAL.as_ret(),
            "memory_op {cmd} with a continuation start"
        );
    }
    check_eq!(
        t,
        memop(XENMEM_MAXIMUM_RAM_PAGE | (1 << MEMOP_EXTENT_SHIFT), 0),
        Errno::EINVAL.as_ret(),
        "maximum_ram_page with a continuation start"
    );
    check_eq!(t, memop(63, 0), Errno::ENOSYS.as_ret(), "memory_op 63");
    max_page as u64
}

/// machphys_mfn_list: one 2 MiB chunk per 256 Ki frames of RAM, each the
/// frames behind the read-only M2P at MACH2PHYS_VIRT_START.
fn m2p_chunks(t: &mut Failures, l1t: u64, max_page: u64) {
    let mut list = [0u64; 8];
    let mut ml = XenMachphysMfnList {
        max_extents: 8,
        pad0: 0,
        extent_start: list.as_mut_ptr() as u64,
        nr_extents: 0xdead,
        pad1: 0,
    };
    check_eq!(
        t,
        memop(XENMEM_MACHPHYS_MFN_LIST, (&raw mut ml) as u64),
        0,
        "machphys_mfn_list"
    );
    let chunks = (max_page * 8).div_ceil(2 << 20);
    println!(
        "M2P chunks: {:x?}",
        &list[..(ml.nr_extents as usize).min(8)]
    );
    check_eq!(
        t,
        u64::from(ml.nr_extents),
        chunks,
        "machphys_mfn_list nr_extents"
    );
    for (i, &mfn) in list.iter().enumerate().take(ml.nr_extents as usize) {
        check_eq!(t, mfn % 512, 0, "M2P chunk {i} mfn {mfn:#x} 2 MiB aligned");
        // The chunk's first and last frames, mapped RO as DOMID_XEN's, hold
        // what the M2P shows at the corresponding VAs.
        for page in [0, 511] {
            let req = [MmuUpdate {
                ptr: entry_maddr(l1t, 0) | MMU_NORMAL_PT_UPDATE,
                val: ((mfn + page) << 12) | KERNEL_RO,
            }];
            check_eq!(
                t,
                mmu_update_done(&req, DOMID_XEN),
                (Ok(0), 1),
                "mapping M2P chunk {i} page {page}"
            );
            let _ = mm::invlpg(VA_T);
            let m2p_va = MACH2PHYS_VIRT_START + (i as u64 * 512 + page) * PAGE_SIZE;
            for word in [0, 100, 511] {
                check_eq!(
                    t,
                    probe_read_u64(VA_T + word * 8),
                    probe_read_u64(m2p_va + word * 8),
                    "M2P chunk {i} page {page} word {word}"
                );
            }
        }
    }
    let _ = mm::set_entry(l1t, 0, 0);
    let _ = mm::invlpg(VA_T);
    let mut one = XenMachphysMfnList {
        max_extents: 0,
        extent_start: list.as_mut_ptr() as u64,
        nr_extents: 0xdead,
        ..Default::default()
    };
    check_eq!(
        t,
        memop(XENMEM_MACHPHYS_MFN_LIST, (&raw mut one) as u64),
        0,
        "machphys_mfn_list with max_extents 0"
    );
    check_eq!(t, one.nr_extents, 0, "nr_extents for max_extents 0");
}

/// memory_map (pseudo-physical: none for a PV dom0) and machine_memory_map.
fn memory_maps(t: &mut Failures, max_page: u64) {
    let mut map = [E820Entry::default(); 64];
    let mut m = XenMemoryMap {
        nr_entries: 64,
        pad: 0,
        buffer: map.as_mut_ptr() as u64,
    };
    check_eq!(
        t,
        memop(XENMEM_MEMORY_MAP, (&raw mut m) as u64),
        Errno::ENOSYS.as_ret(),
        "memory_map of a PV dom0 (no pseudo-physical map set)"
    );
    let r = memop(XENMEM_MACHINE_MEMORY_MAP, (&raw mut m) as u64);
    check_eq!(t, r, 0, "machine_memory_map");
    let n = m.nr_entries as usize;
    let mut ram_end = 0;
    let mut sorted = true;
    let mut prev_end = 0;
    for e in map.iter().take(n.min(64)) {
        println!(
            "  e820 {:#014x}-{:#014x} type {}",
            e.addr(),
            e.addr() + e.size(),
            e.ty()
        );
        if e.ty() == E820_RAM {
            ram_end = ram_end.max(e.addr() + e.size());
        }
        sorted &= e.addr() >= prev_end;
        prev_end = e.addr() + e.size();
    }
    check!(
        t,
        n > 0 && n < 64,
        "machine_memory_map returned {n} entries"
    );
    check!(t, sorted, "machine_memory_map entries sorted and disjoint");
    check_eq!(
        t,
        ram_end / PAGE_SIZE,
        max_page,
        "end of the highest RAM range (pages)"
    );
    // A NULL buffer asks for the count only.
    let mut count = XenMemoryMap {
        nr_entries: 0,
        pad: 0,
        buffer: 0,
    };
    check_eq!(
        t,
        memop(XENMEM_MACHINE_MEMORY_MAP, (&raw mut count) as u64),
        0,
        "machine_memory_map with a NULL buffer"
    );
    check_eq!(
        t,
        count.nr_entries as usize,
        n,
        "entry count with a NULL buffer"
    );
    let mut small = XenMemoryMap {
        nr_entries: 1,
        pad: 0,
        buffer: map.as_mut_ptr() as u64,
    };
    check_eq!(
        t,
        memop(XENMEM_MACHINE_MEMORY_MAP, (&raw mut small) as u64),
        Errno::EINVAL.as_ret(),
        "machine_memory_map into 1 entry"
    );
}

/// A fresh frame holding `pattern` in word 0.
fn data_frame(mm: &mut Mm, pattern: u64) -> Frame {
    let f = mm.alloc();
    let _ = fill_page(f.mfn, |p| {
        p.fill(0);
        p[0] = pattern;
    });
    f
}

/// decrease_reservation and populate_physmap of single frames.
fn balloon(t: &mut Failures, mm: &mut Mm, l1t: u64) {
    let base = current();
    let f = data_frame(mm, 0xba11);
    let mut list = [f.mfn];
    check_eq!(
        t,
        resv(
            XENMEM_DECREASE_RESERVATION,
            &reservation(&mut list, 0, DOMID_SELF)
        ),
        1,
        "decrease_reservation of one frame"
    );
    mm::set_p2m(f.pfn, INVALID_P2M);
    check_eq!(
        t,
        current(),
        base - 1,
        "current_reservation after ballooning out"
    );
    check_eq!(
        t,
        mm::m2p(f.mfn),
        Some(INVALID_M2P),
        "M2P entry of the released frame"
    );
    let req = [MmuUpdate {
        ptr: entry_maddr(l1t, 1) | MMU_NORMAL_PT_UPDATE,
        val: (f.mfn << 12) | KERNEL_RO,
    }];
    check_eq!(
        t,
        mmu_update_done(&req, DOMID_SELF),
        (Err(Errno::EBUSY), 0),
        "mapping the released frame"
    );
    check_eq!(
        t,
        resv(
            XENMEM_DECREASE_RESERVATION,
            &reservation(&mut list, 0, DOMID_SELF)
        ),
        0,
        "decrease_reservation of the released frame again"
    );
    // Refusals are extent counts (0), not errnos, and release nothing.
    let g = data_frame(mm, 0);
    let mut glist = [g.mfn];
    for (what, order, domid) in [
        ("order 19 (> dom0's 18)", 19, DOMID_SELF),
        ("order 63", 63, DOMID_SELF),
        ("domid 5", 0, 5),
    ] {
        check_eq!(
            t,
            resv(
                XENMEM_DECREASE_RESERVATION,
                &reservation(&mut glist, order, domid)
            ),
            0,
            "decrease_reservation with {what}"
        );
    }
    let mut huge = reservation(&mut glist, 0, DOMID_SELF);
    huge.nr_extents = 1 << 58;
    check_eq!(
        t,
        resv(XENMEM_DECREASE_RESERVATION, &huge),
        0,
        "decrease_reservation of 2^58 extents"
    );
    check_eq!(
        t,
        current(),
        base - 1,
        "current_reservation after the refused decreases"
    );
    check_eq!(
        t,
        mm::m2p(g.mfn),
        Some(g.pfn),
        "M2P of the frame offered in them"
    );
    // Order 18 is allowed for dom0 (a control domain: CONFIG_PAGEALLOC_MAX_ORDER):
    // the extent's first frame goes, the second (not the domain's) stops
    // the call, which reports 0 extents.
    check_eq!(
        t,
        resv(
            XENMEM_DECREASE_RESERVATION,
            &reservation(&mut glist, 18, DOMID_SELF)
        ),
        0,
        "decrease_reservation of an order-18 extent at an own frame"
    );
    mm::set_p2m(g.pfn, INVALID_P2M);
    check_eq!(
        t,
        current(),
        base - 2,
        "current_reservation after it (first frame gone)"
    );
    check_eq!(
        t,
        mm::m2p(g.mfn),
        Some(INVALID_M2P),
        "M2P of that first frame"
    );

    // Populate the first hole again.
    let mut pfns = [f.pfn];
    check_eq!(
        t,
        resv(
            XENMEM_POPULATE_PHYSMAP,
            &reservation(&mut pfns, 0, DOMID_SELF)
        ),
        1,
        "populate_physmap of the hole"
    );
    let new = pfns[0];
    println!(
        "pfn {:#x}: mfn {:#x} released, {new:#x} populated",
        f.pfn, f.mfn
    );
    check_eq!(
        t,
        mm::m2p(new),
        Some(f.pfn),
        "M2P entry of the populated frame"
    );
    check_eq!(
        t,
        current(),
        base - 1,
        "current_reservation after populating"
    );
    mm::set_p2m(f.pfn, new);
    check!(
        t,
        map_window(0, new, true).is_ok(),
        "RW mapping of the populated frame"
    );
    let _ = unmap_window(0);
    for (what, order, domid) in [("order 19", 19, DOMID_SELF), ("domid 5", 0, 5)] {
        let mut p = [g.pfn];
        check_eq!(
            t,
            resv(XENMEM_POPULATE_PHYSMAP, &reservation(&mut p, order, domid)),
            0,
            "populate_physmap with {what}"
        );
    }
    check_eq!(
        t,
        current(),
        base - 1,
        "current_reservation after the refused populates"
    );

    // A pinned table leaves the physmap but stays allocated (and counted)
    // until unpinned.
    let l1 = mm.alloc_zeroed();
    let _ = mm::pin(1, l1.mfn);
    let mut l = [l1.mfn];
    check_eq!(
        t,
        resv(
            XENMEM_DECREASE_RESERVATION,
            &reservation(&mut l, 0, DOMID_SELF)
        ),
        1,
        "decrease_reservation of a pinned, unused L1"
    );
    mm::set_p2m(l1.pfn, INVALID_P2M);
    check_eq!(
        t,
        current(),
        base - 1,
        "current_reservation while the L1 is pinned"
    );
    check_eq!(
        t,
        mm::m2p(l1.mfn),
        Some(l1.pfn),
        "M2P of the released but pinned L1"
    );
    check_eq!(t, mm::unpin(l1.mfn), Ok(()), "unpinning the released L1");
    check_eq!(t, current(), base - 2, "current_reservation once unpinned");
    check_eq!(
        t,
        mm::m2p(l1.mfn),
        Some(INVALID_M2P),
        "M2P of the L1 once freed"
    );

    // Likewise a frame still mapped is freed with its last mapping.
    let m = data_frame(mm, 0x3a99ed);
    let va = map_window(0, m.mfn, false).unwrap_or(0);
    let mut ml = [m.mfn];
    check_eq!(
        t,
        resv(
            XENMEM_DECREASE_RESERVATION,
            &reservation(&mut ml, 0, DOMID_SELF)
        ),
        1,
        "decrease_reservation of a frame mapped in a window"
    );
    mm::set_p2m(m.pfn, INVALID_P2M);
    check_eq!(
        t,
        current(),
        base - 2,
        "current_reservation while the frame is mapped"
    );
    check_eq!(
        t,
        mm::m2p(m.mfn),
        Some(m.pfn),
        "M2P of the released but mapped frame"
    );
    check_eq!(
        t,
        probe_read_u64(va),
        Ok(0x3a99ed),
        "the frame still reads through the window"
    );
    let _ = unmap_window(0);
    check_eq!(t, current(), base - 3, "current_reservation once unmapped");
    check_eq!(
        t,
        mm::m2p(m.mfn),
        Some(INVALID_M2P),
        "M2P of the frame once freed"
    );

    // Refill the holes.
    let mut holes = [g.pfn, l1.pfn, m.pfn];
    check_eq!(
        t,
        resv(
            XENMEM_POPULATE_PHYSMAP,
            &reservation(&mut holes, 0, DOMID_SELF)
        ),
        3,
        "populate_physmap of three holes"
    );
    for (pfn, mfn) in [g.pfn, l1.pfn, m.pfn].into_iter().zip(holes) {
        mm::set_p2m(pfn, mfn);
        check_eq!(
            t,
            mm::m2p(mfn),
            Some(pfn),
            "M2P of the frame populated at {pfn:#x}"
        );
    }
    check_eq!(t, current(), base, "current_reservation after refilling");
}

/// `struct xen_domctl` (public/domctl.h, interface version 0x15 in Xen
/// 4.17) with the `max_mem` member of its 128-byte union.
#[repr(C)]
struct DomctlMaxMem {
    cmd: u32,
    interface_version: u32,
    domain: u16,
    pad: [u16; 3],
    max_memkb: u64,
    rest: [u64; 15],
}

/// XEN_DOMCTL_max_mem for dom0 itself (the toolstack's way to cap it).
fn set_max_mem(kb: u64) -> i64 {
    let mut d = DomctlMaxMem {
        cmd: 11,
        interface_version: 0x15,
        domain: 0,
        pad: [0; 3],
        max_memkb: kb,
        rest: [0; 15],
    };
    // SAFETY: Xen reads (and may write back) the 144-byte structure.
    unsafe {
        hypercall::call(
            xen_abi::hypercall::DOMCTL,
            [(&raw mut d) as u64, 0, 0, 0, 0],
        )
    }
}

/// increase_reservation up to the domain's maximum.
fn increase(t: &mut Failures, mm: &mut Mm) {
    let base = current();
    check_eq!(
        t,
        set_max_mem(base as u64 * 4),
        0,
        "domctl max_mem = current size"
    );
    check_eq!(
        t,
        memop_domid(XENMEM_MAXIMUM_RESERVATION, DOMID_SELF),
        base,
        "maximum_reservation after it"
    );
    let mut out = [0u64; 2];
    check_eq!(
        t,
        resv(
            XENMEM_INCREASE_RESERVATION,
            &reservation(&mut out, 0, DOMID_SELF)
        ),
        0,
        "increase_reservation by 2 at the maximum"
    );
    // Make room for one frame, then ask for two.
    let f = mm.alloc();
    let mut l = [f.mfn];
    let _ = resv(
        XENMEM_DECREASE_RESERVATION,
        &reservation(&mut l, 0, DOMID_SELF),
    );
    mm::set_p2m(f.pfn, INVALID_P2M);
    let mut out = [0u64; 2];
    check_eq!(
        t,
        resv(
            XENMEM_INCREASE_RESERVATION,
            &reservation(&mut out, 0, DOMID_SELF)
        ),
        1,
        "increase_reservation by 2 with room for 1"
    );
    check_eq!(t, current(), base, "current_reservation after it");
    let new = out[0];
    check!(
        t,
        new != 0 && out[1] == 0,
        "increase_reservation output {out:x?}"
    );
    // The frame is the domain's but in no pfn slot until the guest says so.
    check_eq!(
        t,
        mmu_update_done(
            &[MmuUpdate {
                ptr: (new << 12) | xen_abi::mmu::MMU_MACHPHYS_UPDATE,
                val: f.pfn
            }],
            DOMID_SELF
        ),
        (Ok(0), 1),
        "MMU_MACHPHYS_UPDATE of the new frame"
    );
    mm::set_p2m(f.pfn, new);
    check_eq!(t, mm::m2p(new), Some(f.pfn), "M2P entry of the new frame");
    check!(
        t,
        map_window(0, new, true).is_ok(),
        "RW mapping of the new frame"
    );
    let _ = unmap_window(0);
    // A NULL extent list is allowed (the MFNs are not reported).
    let g = mm.alloc();
    let mut l = [g.mfn];
    let _ = resv(
        XENMEM_DECREASE_RESERVATION,
        &reservation(&mut l, 0, DOMID_SELF),
    );
    mm::set_p2m(g.pfn, INVALID_P2M);
    let mut null = reservation(&mut [], 0, DOMID_SELF);
    null.nr_extents = 1;
    check_eq!(
        t,
        resv(XENMEM_INCREASE_RESERVATION, &null),
        1,
        "increase_reservation with a NULL list"
    );
    check_eq!(t, current(), base, "current_reservation after it");
    check_eq!(
        t,
        resv(XENMEM_INCREASE_RESERVATION, &null),
        0,
        "and once more, at the maximum"
    );
    // Uncapped again: ~0 KiB becomes ~0U pages.
    check_eq!(t, set_max_mem(u64::MAX), 0, "domctl max_mem = ~0");
    check_eq!(
        t,
        memop_domid(XENMEM_MAXIMUM_RESERVATION, DOMID_SELF),
        0xffff_ffff,
        "maximum_reservation after it"
    );
    let mut o = [0u64; 1];
    check_eq!(
        t,
        resv(
            XENMEM_INCREASE_RESERVATION,
            &reservation(&mut o, 19, DOMID_SELF)
        ),
        0,
        "increase_reservation with order 19"
    );
    check_eq!(t, current(), base, "current_reservation at the end");
}

fn exchange_args(
    inp: &mut [u64],
    in_order: u32,
    out: &mut [u64],
    out_order: u32,
) -> XenMemoryExchange {
    XenMemoryExchange {
        r#in: reservation(inp, in_order, DOMID_SELF),
        out: reservation(out, out_order, DOMID_SELF),
        nr_exchanged: 0,
    }
}

/// XENMEM_exchange.
fn exchange(t: &mut Failures, mm: &mut Mm) {
    let base = current();
    let a = data_frame(mm, 0xa);
    let mut inp = [a.mfn];
    let mut out = [a.pfn];
    let mut x = exchange_args(&mut inp, 0, &mut out, 0);
    check_eq!(
        t,
        memop(XENMEM_EXCHANGE, (&raw mut x) as u64),
        0,
        "exchange 1 frame for 1"
    );
    check_eq!(t, x.nr_exchanged, 1, "nr_exchanged");
    let new = out[0];
    check!(
        t,
        new != a.mfn,
        "exchange returned a different frame ({new:#x})"
    );
    check_eq!(t, mm::m2p(new), Some(a.pfn), "M2P of the new frame");
    check_eq!(t, mm::m2p(a.mfn), Some(INVALID_M2P), "M2P of the old frame");
    check_eq!(t, current(), base, "current_reservation after the exchange");
    mm::set_p2m(a.pfn, new);

    // Two frames for one 2-frame extent.
    let [b0, b1] = [mm.alloc(), mm.alloc()];
    let mut inp = [b0.mfn, b1.mfn];
    let mut out = [b1.pfn];
    let mut x = exchange_args(&mut inp, 0, &mut out, 1);
    check_eq!(
        t,
        memop(XENMEM_EXCHANGE, (&raw mut x) as u64),
        0,
        "exchange 2 frames for an order-1 extent"
    );
    let e = out[0];
    check_eq!(
        t,
        e % 2,
        0,
        "the order-1 extent is 2-frame aligned ({e:#x})"
    );
    check_eq!(
        t,
        (mm::m2p(e), mm::m2p(e + 1)),
        (Some(b1.pfn), Some(b1.pfn + 1)),
        "M2P of the extent"
    );
    mm::set_p2m(b1.pfn, e);
    mm::set_p2m(b0.pfn, e + 1);
    // Oops-free bookkeeping: b0's pfn is b1.pfn + 1 (top-down allocation).
    check_eq!(t, b0.pfn, b1.pfn + 1, "allocator order");
    check_eq!(t, current(), base, "current_reservation after it");

    // Refusals: nr_exchanged stays 0, nothing moves.
    let c = data_frame(mm, 0xc);
    let cases: [(&str, XenMemoryExchange, i64); 5] = {
        let mut i1 = [c.mfn];
        let mut o2 = [c.pfn, c.pfn];
        let mut i1b = [c.mfn];
        let mut o1 = [c.pfn];
        let sizes = exchange_args(&mut i1, 0, &mut o2, 0);
        let mut dom = exchange_args(&mut i1b, 0, &mut o1, 0);
        dom.out.domid = 0;
        let mut order = exchange_args(&mut i1b, 0, &mut o1, 0);
        order.r#in.extent_order = 19;
        order.out.extent_order = 19;
        let mut done = exchange_args(&mut i1b, 0, &mut o1, 0);
        done.nr_exchanged = 2;
        let mut bad_in = exchange_args(&mut i1b, 0, &mut o1, 0);
        bad_in.r#in.extent_start = 0xffff_8300_0000_0000;
        [
            ("sizes 1 != 2", sizes, Errno::EINVAL.as_ret()),
            ("in/out domids differ", dom, Errno::EINVAL.as_ret()),
            ("order 19", order, Errno::EPERM.as_ret()),
            ("nr_exchanged 2 > 1", done, Errno::EINVAL.as_ret()),
            ("hypervisor in list", bad_in, Errno::EFAULT.as_ret()),
        ]
    };
    for (what, mut x, expect) in cases {
        let before = x.nr_exchanged;
        check_eq!(
            t,
            memop(XENMEM_EXCHANGE, (&raw mut x) as u64),
            expect,
            "exchange with {what}"
        );
        check_eq!(
            t,
            x.nr_exchanged,
            before,
            "nr_exchanged after the refused exchange ({what})"
        );
    }
    check_eq!(
        t,
        mm::m2p(c.mfn),
        Some(c.pfn),
        "M2P of the frame offered in the refused exchanges"
    );
    // A frame mapped elsewhere cannot be stolen.
    let _ = map_window(0, c.mfn, false);
    let mut i = [c.mfn];
    let mut o = [c.pfn];
    let mut x = exchange_args(&mut i, 0, &mut o, 0);
    check_eq!(
        t,
        memop(XENMEM_EXCHANGE, (&raw mut x) as u64),
        Errno::EINVAL.as_ret(),
        "exchange of a frame that is mapped"
    );
    check_eq!(t, x.nr_exchanged, 0, "nr_exchanged for it");
    check_eq!(t, mm::m2p(c.mfn), Some(c.pfn), "M2P of the mapped frame");
    let _ = unmap_window(0);
    check_eq!(t, current(), base, "current_reservation at the end");
}
