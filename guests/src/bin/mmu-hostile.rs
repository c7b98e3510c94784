//! Test kernel `mmu-hostile`: page-table updates, pins and pointers Xen must refuse, with its exact errno.
//!
//! Command line: none. Every refused request must leave the domain (and the
//! hypervisor) running; each case checks Xen 4.17's return value and, where
//! it matters, that nothing changed. Cases: writable mappings of pinned
//! L1-L4 tables and of the live root; tables mapping themselves writable;
//! frames the domain does not own (Xen's M2P, MMIO, beyond the physical
//! address width); hypervisor L4 slots; direct writes to L2-L4 tables;
//! unpinning and pinning errors; roots that are not valid L4s; superpage and
//! cache-attribute bits in upper-level entries; bad guest pointers in every
//! argument; nested multicalls; bad `foreigndom`; unknown commands.
#![no_std]
#![no_main]

use xen_abi::hypercall::{MEMORY_OP, MULTICALL, SET_GDT, XEN_VERSION};
use xen_abi::memory::{
    XenMemoryReservation, XENMEM_CURRENT_RESERVATION, XENMEM_EXCHANGE, XENMEM_INCREASE_RESERVATION,
    XENMEM_MACHPHYS_MAPPING, XENMEM_MACHPHYS_MFN_LIST, XENMEM_MEMORY_MAP,
};
use xen_abi::mmu::{
    MmuUpdate, MmuextOp, MMUEXT_CLEAR_PAGE, MMUEXT_COPY_PAGE, MMUEXT_INVLPG_LOCAL,
    MMUEXT_MARK_SUPER, MMUEXT_NEW_USER_BASEPTR, MMUEXT_SET_LDT, MMUEXT_TLB_FLUSH_LOCAL,
    MMUEXT_TLB_FLUSH_MULTI, MMUEXT_UNMARK_SUPER, MMU_MACHPHYS_UPDATE, MMU_NORMAL_PT_UPDATE,
    UVMF_INVLPG,
};
use xen_abi::types::{DOMID_SELF, DOMID_XEN};
use xen_abi::vm_assist::{VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES};
use xen_abi::Errno;
use xenolith_guests::mm::{
    self, entry_maddr, fill_page, map_window, mc_entry, mmu_update_done, mmu_update_raw, mmuext,
    mmuext_done, mmuext_op_raw, read_entry, unmap_window, update_va_mapping_raw, window_va, Frame,
    Mm, KERNEL_RO, KERNEL_RW, PTE_GLOBAL, PTE_GUEST_KERNEL, PTE_PCD, PTE_PSE, PTE_PWT, TABLE,
};
use xenolith_guests::traps::{probe_read_u64, probe_write_u64, Fault};
use xenolith_guests::x86::{PFEC_PRESENT, PFEC_WRITE, PTE_ADDR_MASK, PTE_USER, VEC_PF};
use xenolith_guests::{
    check_eq, hypercall, println, shared_info, test_main, Boot, Failures, Verdict,
};

test_main!(run);

/// Region for test mappings in the boot address space (L4 slot 3).
const VA_T: u64 = 3 << 39;
/// An address no Xen guest pointer may have (hypervisor range).
const XEN_VA: u64 = 0xffff_8300_0000_0000;
/// A canonical, unmapped guest address.
const UNMAPPED_VA: u64 = 0x0000_0000_0010_0000;

const EINVAL: Result<(), Errno> = Err(Errno::EINVAL);

/// A fresh table frame of `level` with `entries` set, pinned.
fn pinned_table(mm: &mut Mm, level: u32, entries: &[(usize, u64)]) -> Frame {
    let f = mm.alloc();
    fill_page(f.mfn, |p| {
        p.fill(0);
        for &(i, e) in entries {
            p[i] = e;
        }
    })
    .expect("filling a fresh table");
    mm::pin(level, f.mfn).expect("pinning a fresh table");
    f
}

fn uvm(va: u64, pte: u64) -> Result<u64, Errno> {
    // SAFETY: `va` is a scratch window or a test VA.
    hypercall::result(unsafe { update_va_mapping_raw(va, pte, UVMF_INVLPG) })
}

fn one_update(ptr: u64, val: u64) -> (Result<u64, Errno>, u32) {
    mmu_update_done(&[MmuUpdate { ptr, val }], DOMID_SELF)
}

fn one_ext(cmd: u32, arg1: u64, arg2: u64) -> (Result<u64, Errno>, u32) {
    mmuext_done(
        &[MmuextOp {
            cmd,
            pad: 0,
            arg1,
            arg2,
        }],
        DOMID_SELF,
    )
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
    let window = window_va(0);

    writable_table_mappings(&mut t, &mut mm, window, l1t);
    self_maps(&mut t, &mut mm);
    foreign_frames(&mut t, l1t);
    hypervisor_slots(&mut t);
    direct_writes(&mut t);
    pin_errors(&mut t, &mut mm);
    root_errors(&mut t, &mut mm);
    bad_flags(&mut t, &mut mm);
    bad_pointers(&mut t, l1t);
    multicall_errors(&mut t);
    foreigndom(&mut t, l1t);
    unknown_commands(&mut t, &mut mm);
    // Still alive: Xen answers an ordinary hypercall.
    // SAFETY: XENVER_version takes no argument.
    let v = unsafe { hypercall::xen_version(0, 0) };
    check_eq!(
        t,
        v,
        (4 << 16) | 17,
        "xen_version after all the refused requests"
    );
    t.verdict()
}

/// No writable mapping of a frame typed as a page table.
fn writable_table_mappings(t: &mut Failures, mm: &mut Mm, window: u64, l1t: u64) {
    let data = mm.alloc_zeroed();
    let l1 = pinned_table(mm, 1, &[(0, (data.mfn << 12) | KERNEL_RO)]);
    let l2 = pinned_table(mm, 2, &[(0, (l1.mfn << 12) | TABLE)]);
    let l3 = pinned_table(mm, 3, &[(0, (l2.mfn << 12) | TABLE)]);
    let l4 = pinned_table(mm, 4, &[(0, (l3.mfn << 12) | TABLE)]);
    let tables = [
        ("pinned L1", l1.mfn),
        ("pinned L2", l2.mfn),
        ("pinned L3", l3.mfn),
        ("pinned L4", l4.mfn),
        ("the running boot L4", mm::boot_l4()),
        ("the hooked, unpinned test L1", l1t),
    ];
    let slot = mm::l1e_maddr(window).expect("window L1 entry");
    for (what, mfn) in tables {
        check_eq!(
            t,
            uvm(window, (mfn << 12) | KERNEL_RW),
            Err(Errno::EBUSY),
            "update_va_mapping RW of {what}"
        );
        check_eq!(
            t,
            one_update(slot | MMU_NORMAL_PT_UPDATE, (mfn << 12) | KERNEL_RW),
            (Err(Errno::EBUSY), 0),
            "mmu_update RW of {what}"
        );
        // Read-only is fine.
        check_eq!(
            t,
            uvm(window, (mfn << 12) | KERNEL_RO),
            Ok(0),
            "RO mapping of {what}"
        );
    }
    let _ = unmap_window(0);
    // A pinned L1 cannot be cleared or copied to (writable type needed).
    check_eq!(
        t,
        one_ext(MMUEXT_CLEAR_PAGE, l1.mfn, 0),
        (Err(Errno::EINVAL), 0),
        "MMUEXT_CLEAR_PAGE of a pinned L1"
    );
    check_eq!(
        t,
        one_ext(MMUEXT_COPY_PAGE, l1.mfn, data.mfn),
        (Err(Errno::EINVAL), 0),
        "MMUEXT_COPY_PAGE onto a pinned L1"
    );
    // Reading from one is fine.
    check_eq!(
        t,
        one_ext(MMUEXT_COPY_PAGE, data.mfn, l1.mfn),
        (Ok(0), 1),
        "MMUEXT_COPY_PAGE from a pinned L1"
    );
    // A writable mapping blocks pinning.
    let w = mm.alloc_zeroed();
    check_eq!(
        t,
        map_window(0, w.mfn, true).map(|_| ()),
        Ok(()),
        "RW window on a frame"
    );
    check_eq!(
        t,
        mm::pin(1, w.mfn),
        EINVAL,
        "PIN_L1 of a frame mapped writable"
    );
    check_eq!(
        t,
        mm::pin(4, w.mfn),
        EINVAL,
        "PIN_L4 of a frame mapped writable"
    );
    let _ = unmap_window(0);
    check_eq!(t, mm::pin(1, w.mfn), Ok(()), "PIN_L1 of it once unmapped");
    let _ = mm::unpin(w.mfn);
    for f in [l4, l3, l2, l1] {
        let _ = mm::unpin(f.mfn);
    }
}

/// Tables that map themselves: read-only is a "linear" mapping, writable
/// is refused.
fn self_maps(t: &mut Failures, mm: &mut Mm) {
    for (level, rw) in [
        (1, false),
        (1, true),
        (2, false),
        (2, true),
        (4, false),
        (4, true),
    ] {
        let f = mm.alloc();
        let flags = if level == 1 {
            if rw {
                KERNEL_RW
            } else {
                KERNEL_RO
            }
        } else if rw {
            TABLE
        } else {
            TABLE & !xenolith_guests::x86::PTE_RW
        };
        fill_page(f.mfn, |p| {
            p.fill(0);
            p[5] = (f.mfn << 12) | flags;
        })
        .expect("filling a self-mapping table");
        let r = mm::pin(level, f.mfn);
        let expect = match (level, rw) {
            (1, true) => Err(Errno::EBUSY),
            (1, false) => Ok(()),
            (_, true) => Err(Errno::EINVAL),
            (_, false) => Ok(()),
        };
        check_eq!(
            t,
            r,
            expect,
            "PIN_L{level} of a table mapping itself {}",
            if rw { "RW" } else { "RO" }
        );
        if r.is_ok() {
            check_eq!(
                t,
                mm::unpin(f.mfn),
                Ok(()),
                "unpin the self-mapping L{level}"
            );
        }
    }
}

/// The first frame of Xen's M2P table (XENMEM_machphys_mfn_list): RAM
/// owned by Xen, shared read-only with privileged domains.
fn m2p_frame() -> u64 {
    let mut list = [0u64; 1];
    let mut ml = xen_abi::memory::XenMachphysMfnList {
        max_extents: 1,
        pad0: 0,
        extent_start: list.as_mut_ptr() as u64,
        nr_extents: 0,
        pad1: 0,
    };
    // SAFETY: Xen writes up to 1 MFN to `list` and fills in `ml`.
    let r = unsafe { hypercall::memory_op(XENMEM_MACHPHYS_MFN_LIST.into(), (&raw mut ml) as u64) };
    assert!(
        r == 0 && ml.nr_extents == 1,
        "XENMEM_machphys_mfn_list failed: {r}"
    );
    list[0]
}

/// Frames that are not the domain's own RAM.
fn foreign_frames(t: &mut Failures, l1t: u64) {
    let slot = entry_maddr(l1t, 1);
    let va = VA_T + 0x1000;
    let m2p_mfn = m2p_frame();
    println!("first M2P frame {m2p_mfn:#x}");
    // Xen's M2P frame: refused as the domain's own ...
    for flags in [KERNEL_RO, KERNEL_RW] {
        check_eq!(
            t,
            one_update(slot | MMU_NORMAL_PT_UPDATE, (m2p_mfn << 12) | flags),
            (Err(Errno::EBUSY), 0),
            "mapping the M2P frame {m2p_mfn:#x} (flags {flags:#x}) as own memory"
        );
    }
    // ... mappable read-only as DOMID_XEN's by the privileged dom0.
    let req = [MmuUpdate {
        ptr: slot | MMU_NORMAL_PT_UPDATE,
        val: (m2p_mfn << 12) | KERNEL_RO,
    }];
    check_eq!(
        t,
        mmu_update_done(&req, DOMID_XEN),
        (Ok(0), 1),
        "mapping the M2P frame RO with foreigndom DOMID_XEN"
    );
    let _ = mm::invlpg(va);
    check_eq!(
        t,
        probe_read_u64(va),
        probe_read_u64(xen_abi::layout::MACH2PHYS_VIRT_START),
        "first M2P word through that mapping"
    );
    let req = [MmuUpdate {
        ptr: slot | MMU_NORMAL_PT_UPDATE,
        val: (m2p_mfn << 12) | KERNEL_RW,
    }];
    check_eq!(
        t,
        mmu_update_done(&req, DOMID_XEN),
        (Err(Errno::EBUSY), 0),
        "mapping the M2P frame RW with foreigndom DOMID_XEN"
    );
    // M2P frames are not the domain's for the other operations either.
    check_eq!(
        t,
        one_update(entry_maddr(m2p_mfn, 0) | MMU_NORMAL_PT_UPDATE, 0),
        (Err(Errno::EINVAL), 0),
        "mmu_update with ptr in an M2P frame"
    );
    check_eq!(
        t,
        one_update(entry_maddr(m2p_mfn, 0) | MMU_MACHPHYS_UPDATE, 0),
        (Err(Errno::EINVAL), 0),
        "MMU_MACHPHYS_UPDATE of an M2P frame"
    );
    check_eq!(t, mm::pin(1, m2p_mfn), EINVAL, "PIN_L1 of an M2P frame");
    check_eq!(t, mm::unpin(m2p_mfn), EINVAL, "UNPIN of an M2P frame");
    check_eq!(
        t,
        mm::clear_page(m2p_mfn),
        EINVAL,
        "CLEAR_PAGE of an M2P frame"
    );

    // Beyond RAM: dom0 may map MMIO; a WB request becomes UC (PCD|PWT).
    // SAFETY: no argument.
    let max_page = unsafe { hypercall::memory_op(2, 0) } as u64;
    for mfn in [max_page + 0x100, 0] {
        check_eq!(
            t,
            one_update(slot | MMU_NORMAL_PT_UPDATE, (mfn << 12) | KERNEL_RO),
            (Ok(0), 1),
            "dom0 mapping MMIO/non-RAM frame {mfn:#x}"
        );
        check_eq!(
            t,
            read_entry(l1t, 1),
            (mfn << 12) | KERNEL_RO | PTE_PCD | PTE_PWT | PTE_USER | PTE_GUEST_KERNEL,
            "L1 entry for frame {mfn:#x}"
        );
    }
    // Beyond the physical address width (40 bits here): refused.
    let huge = 1u64 << 28;
    check_eq!(
        t,
        one_update(slot | MMU_NORMAL_PT_UPDATE, (huge << 12) | KERNEL_RO),
        (Err(Errno::EPERM), 0),
        "mapping frame {huge:#x} beyond the address width"
    );
    let _ = mm::set_entry(l1t, 1, 0);
    let _ = mm::invlpg(va);
}

/// Hypervisor L4 slots 256-271 are not the guest's to change.
fn hypervisor_slots(t: &mut Failures) {
    let l4 = mm::boot_l4();
    for slot in [256, 258, 262, 271] {
        let old = read_entry(l4, slot);
        check_eq!(
            t,
            one_update(entry_maddr(l4, slot) | MMU_NORMAL_PT_UPDATE, 0),
            (Err(Errno::EINVAL), 0),
            "clearing L4 slot {slot}"
        );
        check_eq!(
            t,
            one_update(entry_maddr(l4, slot) | MMU_NORMAL_PT_UPDATE, old),
            (Err(Errno::EINVAL), 0),
            "rewriting L4 slot {slot} with its own value"
        );
        check_eq!(t, read_entry(l4, slot), old, "L4 slot {slot} afterwards");
    }
    // Slots 255 and 272 are the guest's.
    for slot in [255, 272] {
        check_eq!(
            t,
            one_update(entry_maddr(l4, slot) | MMU_NORMAL_PT_UPDATE, 0),
            (Ok(0), 1),
            "clearing (empty) guest L4 slot {slot}"
        );
    }
}

/// Stores to L2-L4 tables through their read-only mappings fault, with or
/// without VMASST writable_pagetables.
fn direct_writes(t: &mut Failures) {
    let kernel = xenolith_guests::boot::virt_base();
    let w = mm::walk(kernel);
    let pf = Err(Fault {
        vector: VEC_PF,
        error_code: PFEC_PRESENT | PFEC_WRITE,
    });
    for assist in [false, true] {
        if assist {
            check_eq!(
                t,
                hypercall::vm_assist(VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES),
                Ok(0),
                "enabling VMASST writable_pagetables"
            );
        }
        for (n, name) in [(0, "L4"), (1, "L3"), (2, "L2")] {
            let mfn = w.tables[n];
            let index = mm::index_of(kernel, 4 - n as u32);
            let va = mm::va_of_pfn(mm::m2p(mfn).expect("M2P of a boot table")) + index * 8;
            let old = w.entries[n];
            // SAFETY: writes back the entry's own value, should it succeed.
            let r = unsafe { probe_write_u64(va, old) };
            check_eq!(
                t,
                r,
                pf,
                "direct write to the boot {name} (assist {assist})"
            );
        }
    }
}

/// Pinning and unpinning mistakes.
fn pin_errors(t: &mut Failures, mm: &mut Mm) {
    let f = mm.alloc_zeroed();
    check_eq!(
        t,
        mm::unpin(f.mfn),
        EINVAL,
        "UNPIN of a frame that is not pinned"
    );
    check_eq!(t, mm::pin(1, f.mfn), Ok(()), "PIN_L1");
    check_eq!(t, mm::pin(1, f.mfn), EINVAL, "PIN_L1 twice");
    check_eq!(t, mm::pin(2, f.mfn), EINVAL, "PIN_L2 of a pinned L1");
    check_eq!(t, mm::unpin(f.mfn), Ok(()), "UNPIN");
    check_eq!(t, mm::unpin(f.mfn), EINVAL, "UNPIN twice");
    check_eq!(
        t,
        mm::pin(3, f.mfn),
        Ok(()),
        "PIN_L3 of the same (empty) frame"
    );
    check_eq!(t, mm::unpin(f.mfn), Ok(()), "UNPIN the L3");
    check_eq!(
        t,
        mm::unpin(mm::boot_l4()),
        Ok(()),
        "UNPIN the builder's (pinned) L4 while it is the running root"
    );
    check_eq!(
        t,
        mm::pin(4, mm::boot_l4()),
        Ok(()),
        "re-PIN the running root"
    );
    let beyond = mm::p2m(0) + (1 << 40);
    check_eq!(
        t,
        mm::pin(1, beyond),
        EINVAL,
        "PIN_L1 of a frame beyond RAM"
    );
    // A table whose entries map a frame the domain does not own.
    let data = mm.alloc();
    let xen_frame = m2p_frame();
    let _ = fill_page(data.mfn, |p| p.fill((xen_frame << 12) | KERNEL_RO));
    let l2 = mm.alloc();
    let _ = fill_page(l2.mfn, |p| {
        p.fill(0);
        p[0] = (data.mfn << 12) | TABLE;
    });
    check_eq!(
        t,
        mm::pin(1, data.mfn),
        Err(Errno::EBUSY),
        "PIN_L1 of a frame full of entries mapping frames not owned"
    );
    check_eq!(
        t,
        mm::pin(2, l2.mfn),
        Err(Errno::EBUSY),
        "PIN_L2 whose entry points at such a frame"
    );
}

/// NEW_BASEPTR with frames that cannot be L4s; unpinning the live root.
fn root_errors(t: &mut Failures, mm: &mut Mm) {
    let boot = mm::boot_l4();
    let l3 = pinned_table(mm, 3, &[]);
    check_eq!(
        t,
        mm::new_baseptr(l3.mfn),
        EINVAL,
        "NEW_BASEPTR of a pinned L3"
    );
    check_eq!(
        t,
        mm::new_baseptr(mm::p2m(0) + (1 << 40)),
        EINVAL,
        "NEW_BASEPTR beyond RAM"
    );
    let w = mm.alloc_zeroed();
    let _ = map_window(0, w.mfn, true);
    check_eq!(
        t,
        mm::new_baseptr(w.mfn),
        EINVAL,
        "NEW_BASEPTR of a frame mapped RW"
    );
    let _ = unmap_window(0);
    // A root with the kernel slots, pinned, installed, then unpinned while
    // in use: allowed, the running root keeps its own type reference.
    let root = mm.alloc();
    let slots: [u64; 512] = core::array::from_fn(|i| {
        if (256..272).contains(&i) {
            0
        } else {
            read_entry(boot, i as u64)
        }
    });
    let _ = fill_page(root.mfn, |p| p.copy_from_slice(&slots));
    check_eq!(
        t,
        mm::pin(4, root.mfn),
        Ok(()),
        "PIN_L4 of a copy of the boot L4"
    );
    check_eq!(t, mm::new_baseptr(root.mfn), Ok(()), "NEW_BASEPTR of it");
    check_eq!(t, mm::unpin(root.mfn), Ok(()), "UNPIN of the running root");
    check_eq!(
        t,
        uvm(window_va(0), (root.mfn << 12) | KERNEL_RW),
        Err(Errno::EBUSY),
        "RW mapping of the unpinned but running root"
    );
    check_eq!(
        t,
        mm::new_baseptr(boot),
        Ok(()),
        "NEW_BASEPTR back to the boot L4"
    );
    check_eq!(
        t,
        uvm(window_va(0), (root.mfn << 12) | KERNEL_RW),
        Ok(0),
        "RW mapping of the old root once replaced"
    );
    let _ = unmap_window(0);
    // NEW_BASEPTR of an unpinned, unused frame validates it on the spot; a
    // frame of garbage fails that validation.
    let junk = mm.alloc();
    let _ = fill_page(junk.mfn, |p| p.fill(0x0bad_0000_0000_0067));
    check_eq!(
        t,
        mm::new_baseptr(junk.mfn),
        EINVAL,
        "NEW_BASEPTR of a frame of garbage"
    );
    check_eq!(
        t,
        one_ext(MMUEXT_NEW_USER_BASEPTR, l3.mfn, 0),
        (Err(Errno::EINVAL), 0),
        "NEW_USER_BASEPTR of a pinned L3"
    );
    let _ = mm::unpin(l3.mfn);
}

/// Superpage and cache bits in entries Xen validates.
fn bad_flags(t: &mut Failures, mm: &mut Mm) {
    let l1 = pinned_table(mm, 1, &[]);
    let l2 = pinned_table(mm, 2, &[]);
    let l3 = pinned_table(mm, 3, &[]);
    let l4 = pinned_table(mm, 4, &[]);
    let data = mm.alloc_zeroed();
    let busy = mm.alloc_zeroed();
    let fresh = mm.alloc_zeroed();
    let _ = map_window(0, busy.mfn, true);
    let cases: [(&str, u64, u64, Result<u64, Errno>); 10] = [
        (
            "L2 PSE superpage",
            l2.mfn,
            (data.mfn << 12) | TABLE | PTE_PSE,
            Err(Errno::EINVAL),
        ),
        (
            "L3 PSE superpage",
            l3.mfn,
            (data.mfn << 12) | TABLE | PTE_PSE,
            Err(Errno::EINVAL),
        ),
        (
            "L2 with PCD",
            l2.mfn,
            (l1.mfn << 12) | TABLE | PTE_PCD,
            Err(Errno::EINVAL),
        ),
        (
            "L2 with Global",
            l2.mfn,
            (l1.mfn << 12) | TABLE | PTE_GLOBAL,
            Err(Errno::EINVAL),
        ),
        (
            "L4 with PWT",
            l4.mfn,
            (l3.mfn << 12) | TABLE | PTE_PWT,
            Err(Errno::EINVAL),
        ),
        (
            "L2 -> frame mapped RW",
            l2.mfn,
            (busy.mfn << 12) | TABLE,
            Err(Errno::EINVAL),
        ),
        (
            "L3 -> L1",
            l3.mfn,
            (l1.mfn << 12) | TABLE,
            Err(Errno::EINVAL),
        ),
        (
            "L4 -> L2",
            l4.mfn,
            (l2.mfn << 12) | TABLE,
            Err(Errno::EINVAL),
        ),
        ("L2 -> L1", l2.mfn, (l1.mfn << 12) | TABLE, Ok(0)),
        // An unused frame of zeroes validates as an L1 on the spot.
        (
            "L2 -> unused zeroed frame",
            l2.mfn,
            (fresh.mfn << 12) | TABLE,
            Ok(0),
        ),
    ];
    for (i, (what, table, val, expect)) in (0u64..).zip(cases) {
        let (r, done) = one_update(entry_maddr(table, 7 + i) | MMU_NORMAL_PT_UPDATE, val);
        check_eq!(
            t,
            (r, done),
            (expect, u32::from(expect.is_ok())),
            "mmu_update {what}"
        );
    }
    let _ = unmap_window(0);
    // The fresh frame is an L1 now: no RW mapping, PIN_L1 works, PIN_L2 not.
    check_eq!(
        t,
        uvm(window_va(0), (fresh.mfn << 12) | KERNEL_RW),
        Err(Errno::EBUSY),
        "RW mapping of the frame validated as L1 by the L2 entry"
    );
    check_eq!(t, mm::pin(2, fresh.mfn), EINVAL, "PIN_L2 of it");
    check_eq!(t, mm::pin(1, fresh.mfn), Ok(()), "PIN_L1 of it");
    // Global is allowed in L1 entries.
    check_eq!(
        t,
        one_update(
            entry_maddr(l1.mfn, 0) | MMU_NORMAL_PT_UPDATE,
            (data.mfn << 12) | KERNEL_RO | PTE_GLOBAL
        ),
        (Ok(0), 1),
        "L1 entry with Global"
    );
    // A pinned table with a PSE entry cannot be built either.
    let f = mm.alloc();
    let _ = fill_page(f.mfn, |p| {
        p.fill(0);
        p[0] = (data.mfn << 12) | TABLE | PTE_PSE;
    });
    check_eq!(t, mm::pin(2, f.mfn), EINVAL, "PIN_L2 with a PSE entry");
    // The batch stops at the first refused entry; `done` counts the rest.
    let reqs = [
        MmuUpdate {
            ptr: entry_maddr(l1.mfn, 1) | MMU_NORMAL_PT_UPDATE,
            val: (data.mfn << 12) | KERNEL_RO,
        },
        MmuUpdate {
            ptr: entry_maddr(l2.mfn, 1) | MMU_NORMAL_PT_UPDATE,
            val: (data.mfn << 12) | TABLE | PTE_PSE,
        },
        MmuUpdate {
            ptr: entry_maddr(l1.mfn, 2) | MMU_NORMAL_PT_UPDATE,
            val: (data.mfn << 12) | KERNEL_RO,
        },
    ];
    check_eq!(
        t,
        mmu_update_done(&reqs, DOMID_SELF),
        (Err(Errno::EINVAL), 1),
        "batch of 3 with the 2nd refused"
    );
    check_eq!(
        t,
        read_entry(l1.mfn, 2),
        0,
        "3rd entry of the batch not applied"
    );
    check_eq!(
        t,
        read_entry(l1.mfn, 1) & PTE_ADDR_MASK,
        data.mfn << 12,
        "1st entry of the batch applied"
    );
}

/// Guest pointers Xen cannot use.
fn bad_pointers(t: &mut Failures, l1t: u64) {
    let req = [MmuUpdate {
        ptr: entry_maddr(l1t, 9) | MMU_NORMAL_PT_UPDATE,
        val: 0,
    }];
    let op = [MmuextOp {
        cmd: MMUEXT_TLB_FLUSH_LOCAL,
        pad: 0,
        arg1: 0,
        arg2: 0,
    }];
    let mut done: u32 = 0;
    let done_p = (&raw mut done) as u64;
    let self_ = u64::from(DOMID_SELF);
    for (what, ptr) in [("unmapped", UNMAPPED_VA), ("hypervisor", XEN_VA)] {
        // SAFETY: Xen only reads (and fails to read) the request list.
        let r = unsafe { mmu_update_raw(ptr, 1, done_p, self_) };
        check_eq!(
            t,
            r,
            Errno::EFAULT.as_ret(),
            "mmu_update with a {what} request list"
        );
        // SAFETY: as above, for mmuext_op.
        let r = unsafe { mmuext_op_raw(ptr, 1, done_p, self_) };
        check_eq!(
            t,
            r,
            Errno::EFAULT.as_ret(),
            "mmuext_op with a {what} op list"
        );
        // SAFETY: the request is harmless; Xen fails to write `done`.
        let r = unsafe { mmu_update_raw(req.as_ptr() as u64, 1, ptr, self_) };
        check_eq!(t, r, 0, "mmu_update with a {what} done pointer");
        // SAFETY: as above, for mmuext_op.
        let r = unsafe { mmuext_op_raw(op.as_ptr() as u64, 1, ptr, self_) };
        check_eq!(t, r, 0, "mmuext_op with a {what} done pointer");
        // SAFETY: Xen fails to read the list.
        let r = unsafe { mm::multicall_raw(ptr, 1) };
        check_eq!(t, r, Errno::EFAULT.as_ret(), "multicall with a {what} list");
        // SAFETY: Xen fails to read the frame list.
        let r = unsafe { hypercall::call(SET_GDT, [ptr, 16, 0, 0, 0]) };
        check_eq!(
            t,
            r,
            Errno::EFAULT.as_ret(),
            "set_gdt with a {what} frame list"
        );
        for (name, cmd) in [
            ("current_reservation", XENMEM_CURRENT_RESERVATION),
            ("memory_map", XENMEM_MEMORY_MAP),
            ("machphys_mapping", XENMEM_MACHPHYS_MAPPING),
            ("machphys_mfn_list", XENMEM_MACHPHYS_MFN_LIST),
            ("exchange", XENMEM_EXCHANGE),
        ] {
            // SAFETY: Xen fails to access the argument.
            let r = unsafe { hypercall::call(MEMORY_OP, [cmd.into(), ptr, 0, 0, 0]) };
            check_eq!(
                t,
                r,
                Errno::EFAULT.as_ret(),
                "memory_op {name} with a {what} argument"
            );
        }
        // The reservation ops report extents done, not errors.
        // SAFETY: Xen fails to read the argument.
        let r = unsafe {
            hypercall::call(
                MEMORY_OP,
                [XENMEM_INCREASE_RESERVATION.into(), ptr, 0, 0, 0],
            )
        };
        check_eq!(t, r, 0, "increase_reservation with a {what} argument");
        let mut res = XenMemoryReservation {
            extent_start: ptr,
            nr_extents: 1,
            extent_order: 0,
            mem_flags: 0,
            domid: DOMID_SELF,
            pad: [0; 6],
        };
        for cmd in [0u32, 1, 6] {
            // SAFETY: Xen fails to access the extent list.
            let r =
                unsafe { hypercall::call(MEMORY_OP, [cmd.into(), (&raw mut res) as u64, 0, 0, 0]) };
            check_eq!(t, r, 0, "memory_op {cmd} with a {what} extent list");
        }
        // update_va_mapping of a VA Xen will not resolve.
        check_eq!(
            t,
            uvm(ptr, 0),
            Err(Errno::EINVAL),
            "update_va_mapping of a {what} VA"
        );
    }
    check_eq!(
        t,
        uvm(0x0000_8000_0000_0000, 0),
        Err(Errno::EINVAL),
        "update_va_mapping of a non-canonical VA"
    );
    // A VA whose L2 entry is empty has no L1 entry to update.
    check_eq!(
        t,
        uvm(6 << 39, 0),
        Err(Errno::EINVAL),
        "update_va_mapping of a VA without an L1 table"
    );
    // A bad vCPU bitmap in the flags: the entry is written, then the flush
    // fails to read the bitmap.
    let pte = (l1t << 12) | KERNEL_RO;
    // SAFETY: maps the test L1 read-only at an unused test VA.
    let r = unsafe { update_va_mapping_raw(VA_T + 0x3000, pte, UVMF_INVLPG | XEN_VA) };
    check_eq!(
        t,
        hypercall::result(r),
        Err(Errno::EFAULT),
        "update_va_mapping with a bad vCPU bitmap pointer"
    );
    check_eq!(
        t,
        read_entry(l1t, 3),
        pte | PTE_USER | PTE_GUEST_KERNEL,
        "the L1 entry it wrote nonetheless"
    );
    let _ = mm::set_entry(l1t, 3, 0);
    let _ = mm::invlpg(VA_T + 0x3000);
    // A bad vCPU bitmap for a MULTI flush.
    check_eq!(
        t,
        one_ext(MMUEXT_TLB_FLUSH_MULTI, 0, XEN_VA),
        (Err(Errno::EINVAL), 0),
        "TLB_FLUSH_MULTI with a bad vCPU bitmap pointer"
    );
}

/// Multicall entries that are multicalls, and invalid sub-calls.
fn multicall_errors(t: &mut Failures) {
    let mut inner = [mc_entry(XEN_VERSION, &[0, 0])];
    let mut entries = [
        mc_entry(MULTICALL, &[inner.as_mut_ptr() as u64, 1]),
        mc_entry(XEN_VERSION, &[0, 0]),
    ];
    // SAFETY: the only real call is xen_version.
    let r = unsafe { mm::multicall(&mut entries) };
    check_eq!(t, r, Ok(0), "multicall containing a multicall");
    check_eq!(
        t,
        entries[0].result,
        Errno::EINVAL.as_rax(),
        "result of the nested multicall entry"
    );
    check_eq!(
        t,
        inner[0].result,
        0x5a5a_5a5a,
        "the nested entry is not run"
    );
    check_eq!(
        t,
        entries[1].result,
        (4 << 16) | 17,
        "the entry after it still runs"
    );
    let mut entries = [mc_entry(1000, &[]), mc_entry(u64::MAX, &[])];
    // SAFETY: both ops are unknown.
    let r = unsafe { mm::multicall(&mut entries) };
    check_eq!(t, r, Ok(0), "multicall of unknown ops");
    for e in &entries {
        check_eq!(
            t,
            e.result,
            Errno::ENOSYS.as_rax(),
            "result of op {:#x}",
            e.op
        );
    }
}

/// Bad `foreigndom` arguments.
fn foreigndom(t: &mut Failures, l1t: u64) {
    let req = [MmuUpdate {
        ptr: entry_maddr(l1t, 9) | MMU_NORMAL_PT_UPDATE,
        val: 0,
    }];
    let op = [MmuextOp {
        cmd: MMUEXT_TLB_FLUSH_LOCAL,
        pad: 0,
        arg1: 0,
        arg2: 0,
    }];
    for (what, fd, expect) in [
        ("unknown domain 0x1234", 0x1234u64, Err(Errno::ESRCH)),
        ("own domain id 0", 0, Err(Errno::ESRCH)),
        (
            "page-table owner d4 (absent)",
            (5 << 16) | 0x7ff0,
            Err(Errno::ESRCH),
        ),
        ("page-table owner d0 (self)", (1 << 16) | 0x7ff0, Ok(0)),
        ("DOMID_IO", 0x7ff1, Ok(0)),
    ] {
        let mut done = 0u32;
        // SAFETY: the request clears an already empty test entry.
        let r = unsafe { mmu_update_raw(req.as_ptr() as u64, 1, (&raw mut done) as u64, fd) };
        check_eq!(
            t,
            hypercall::result(r),
            expect,
            "mmu_update foreigndom {what}"
        );
    }
    for (what, fd, expect) in [
        ("unknown domain 0x1234", 0x1234u64, Err(Errno::ESRCH)),
        ("own domain id 0", 0, Err(Errno::ESRCH)),
        ("DOMID_XEN", 0x7ff2, Err(Errno::EPERM)),
    ] {
        let mut done = 0u32;
        // SAFETY: a TLB flush.
        let r = unsafe { mmuext_op_raw(op.as_ptr() as u64, 1, (&raw mut done) as u64, fd) };
        check_eq!(
            t,
            hypercall::result(r),
            expect,
            "mmuext_op foreigndom {what}"
        );
    }
}

/// Unknown commands and bad arguments to known ones.
fn unknown_commands(t: &mut Failures, mm: &mut Mm) {
    let f = mm.alloc_zeroed();
    for cmd in [4u64, 5, 7] {
        check_eq!(
            t,
            one_update(f.maddr(0) | cmd, 0),
            (Err(Errno::ENOSYS), 0),
            "mmu_update request type {cmd}"
        );
    }
    check_eq!(
        t,
        one_ext(99, 0, 0),
        (Err(Errno::ENOSYS), 0),
        "mmuext_op cmd 99"
    );
    for cmd in [MMUEXT_MARK_SUPER, MMUEXT_UNMARK_SUPER] {
        check_eq!(
            t,
            one_ext(cmd, f.mfn, 0),
            (Err(Errno::EOPNOTSUPP), 0),
            "mmuext_op cmd {cmd}"
        );
    }
    let ops = [
        MmuextOp {
            cmd: MMUEXT_TLB_FLUSH_LOCAL,
            ..Default::default()
        },
        MmuextOp {
            cmd: 14,
            ..Default::default()
        },
        MmuextOp {
            cmd: MMUEXT_TLB_FLUSH_LOCAL,
            ..Default::default()
        },
    ];
    check_eq!(
        t,
        mmuext_done(&ops, DOMID_SELF),
        (Err(Errno::ENOSYS), 1),
        "mmuext_op batch with unknown cmd 14 second"
    );
    for (what, base, ents) in [
        ("unaligned base", 0x1234u64, 1u64),
        ("too many entries", 0x10_0000, 8193),
        ("hypervisor base", XEN_VA, 1),
    ] {
        check_eq!(
            t,
            one_ext(MMUEXT_SET_LDT, base, ents),
            (Err(Errno::EINVAL), 0),
            "SET_LDT with {what}"
        );
    }
    // INVLPG of a non-canonical address is silently ignored.
    check_eq!(
        t,
        mmuext(MMUEXT_INVLPG_LOCAL, 0x8000_0000_0000_0000, 0),
        Ok(()),
        "INVLPG_LOCAL of a non-canonical address"
    );
}
