//! Test kernel `mmu-positive`: building, pinning, switching to and updating validated page tables.
//!
//! Command line: none. Uses frames from the top of dom0's pfn range (owned,
//! never mapped). Checks: a new L4/L3/L2/L1 built through writable windows,
//! then unmapped, pins at every level, gets the kernel slots copied, is
//! installed with MMUEXT_NEW_BASEPTR and left again, and unpins back to
//! ordinary RAM; a 512-entry `mmu_update` batch and its `done` count;
//! MMU_PT_UPDATE_PRESERVE_AD; MMU_MACHPHYS_UPDATE read back through the M2P;
//! `mmu_update` on a non-table frame; update_va_mapping with every flush
//! flavour; the MMUEXT TLB/INVLPG/cache ops; MMUEXT_CLEAR_PAGE/COPY_PAGE; a
//! multicall with succeeding and failing entries; a hypercall writing its
//! output through a VA follows every remap of that VA at once (frame d0,
//! then d1, then -EFAULT once it is read-only or unmapped).
#![no_std]
#![no_main]

use xen_abi::hypercall::{MMUEXT_OP, MMU_UPDATE, UPDATE_VA_MAPPING, XEN_VERSION};
use xen_abi::layout::PAGE_SIZE;
use xen_abi::mmu::{
    MmuUpdate, MmuextOp, MMUEXT_COPY_PAGE, MMUEXT_FLUSH_CACHE, MMUEXT_FLUSH_CACHE_GLOBAL,
    MMUEXT_INVLPG_ALL, MMUEXT_INVLPG_LOCAL, MMUEXT_INVLPG_MULTI, MMUEXT_NEW_USER_BASEPTR,
    MMUEXT_TLB_FLUSH_ALL, MMUEXT_TLB_FLUSH_LOCAL, MMUEXT_TLB_FLUSH_MULTI, MMU_MACHPHYS_UPDATE,
    MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_PRESERVE_AD, UVMF_ALL, UVMF_INVLPG, UVMF_NONE,
    UVMF_TLB_FLUSH,
};
use xen_abi::types::DOMID_SELF;
use xen_abi::version::{XENVER_EXTRAVERSION, XENVER_VERSION};
use xen_abi::Errno;
use xenolith_guests::mm::{
    self, entry_maddr, fill_page, map_window, mc_entry, mmu_update_done, mmuext, read_entry,
    unmap_window, va_of_pfn, Frame, Mm, KERNEL_RO, KERNEL_RW, PTE_GUEST_KERNEL, TABLE,
};
use xenolith_guests::traps::{probe_read_u64, probe_write_u64, Fault};
use xenolith_guests::x86::{
    PFEC_PRESENT, PFEC_WRITE, PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT, PTE_RW, PTE_USER, VEC_PF,
};
use xenolith_guests::{
    check, check_eq, print, println, shared_info, test_main, Boot, Failures, Verdict,
};

test_main!(run);

/// L4 slot used only by the new address space.
const SLOT_NEW: u64 = 1;
const VA_NEW: u64 = SLOT_NEW << 39;
/// Region mapped in the boot address space by `mm::map_va` (L4 slot 2).
const VA_B: u64 = 2 << 39;
/// A page of that region used for the update_va_mapping checks.
const VA_U: u64 = VA_B + 0x1000;

const PAT_D0: u64 = 0xd0d0_0000_0000_d0d0;
const PAT_D1: u64 = 0xd1d1_0000_0000_d1d1;

/// What Xen makes of a guest-kernel L1 entry without _PAGE_USER.
const fn adjusted(pte: u64) -> u64 {
    pte | PTE_USER | PTE_GUEST_KERNEL
}

fn pf(error_code: u32) -> Result<u64, Fault> {
    Err(Fault {
        vector: VEC_PF,
        error_code,
    })
}

fn data_frame(mm: &mut Mm, pattern: u64) -> Frame {
    let f = mm.alloc();
    fill_page(f.mfn, |p| {
        p.fill(0);
        p[0] = pattern;
        p[1] = f.mfn;
    })
    .expect("filling a fresh frame through a window");
    f
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    let si = boot.start_info;
    if let Err(e) = shared_info::map(si) {
        println!("warning: cannot map shared_info ({e:?})");
    }
    let mut mm = Mm::new(si);
    println!(
        "nr_pages {:#x}, initial region {:#x} pfns, boot L4 mfn {:#x}",
        si.nr_pages,
        mm::initial_pfns(),
        mm::boot_l4()
    );
    let d0 = data_frame(&mut mm, PAT_D0);
    let d1 = data_frame(&mut mm, PAT_D1);

    new_address_space(&mut t, &mut mm, d0, d1);
    let l1b = match mm::map_va(&mut mm, VA_B, 0) {
        Ok(l1) => l1,
        Err(e) => {
            t.fail(format_args!("building tables for {VA_B:#x}: {e:?}"));
            return t.verdict();
        }
    };
    batch(&mut t, l1b);
    preserve_ad(&mut t, l1b, d0);
    machphys(&mut t, d0);
    raw_ram_update(&mut t, d0);
    update_va_mapping_flushes(&mut t, d0, d1);
    mmuext_flushes(&mut t, l1b, d0, d1);
    clear_and_copy(&mut t, &mut mm);
    multicall(&mut t, l1b, d0, d1);
    hypercall_buffer_remaps(&mut t, d0, d1);
    t.verdict()
}

/// L4'/L3'/L2'/L1' built by hand, pinned bottom-up, installed and left.
fn new_address_space(t: &mut Failures, mm: &mut Mm, d0: Frame, d1: Frame) {
    let [l1, l2, l3, l4] = [mm.alloc(), mm.alloc(), mm.alloc(), mm.alloc()];
    let boot_l4 = mm::boot_l4();
    let filled = fill_page(l1.mfn, |p| {
        p.fill(0);
        p[0] = (d0.mfn << 12) | KERNEL_RW;
        p[1] = (d1.mfn << 12) | KERNEL_RO;
    })
    .and_then(|()| {
        fill_page(l2.mfn, |p| {
            p.fill(0);
            p[0] = (l1.mfn << 12) | TABLE;
        })
    })
    .and_then(|()| {
        fill_page(l3.mfn, |p| {
            p.fill(0);
            p[0] = (l2.mfn << 12) | TABLE;
        })
    });
    // The new L4: the guest slots of the boot L4 (the kernel at slot 511),
    // slot SLOT_NEW for the test tables, hypervisor slots left zero.
    let mut boot_slots = [0u64; 512];
    for (i, e) in boot_slots.iter_mut().enumerate() {
        *e = read_entry(boot_l4, i as u64);
    }
    let filled = filled.and_then(|()| {
        fill_page(l4.mfn, |p| {
            for (i, e) in p.iter_mut().enumerate() {
                *e = if (256..272).contains(&i) {
                    0
                } else {
                    boot_slots[i]
                };
            }
            p[SLOT_NEW as usize] = (l3.mfn << 12) | TABLE;
        })
    });
    if let Err(e) = filled {
        t.fail(format_args!("filling the new tables: {e:?}"));
        return;
    }
    for (level, f) in [(1, l1), (2, l2), (3, l3), (4, l4)] {
        check_eq!(
            t,
            mm::pin(level, f.mfn),
            Ok(()),
            "PIN_L{level}_TABLE of a fresh table"
        );
    }
    // Validation adds _PAGE_USER and _PAGE_GUEST_KERNEL to kernel L1 entries
    // and leaves the upper-level entries as written.
    check_eq!(
        t,
        read_entry(l1.mfn, 0),
        adjusted((d0.mfn << 12) | KERNEL_RW),
        "L1'[0] after validation"
    );
    check_eq!(
        t,
        read_entry(l1.mfn, 1),
        adjusted((d1.mfn << 12) | KERNEL_RO),
        "L1'[1] after validation"
    );
    check_eq!(
        t,
        read_entry(l2.mfn, 0),
        (l1.mfn << 12) | TABLE,
        "L2'[0] after validation"
    );
    check_eq!(
        t,
        read_entry(l4.mfn, 511),
        boot_slots[511],
        "L4'[511] after validation"
    );
    // Validation fills the hypervisor slots, but leaves slot 256 (the
    // read-only M2P) empty: without VMASST m2p_strict, NEW_BASEPTR fills it.
    check_eq!(t, read_entry(l4.mfn, 256), 0, "L4' slot 256 after pinning");
    print!("L4' hypervisor slots 256..=271 after pinning:");
    for i in 256..272 {
        print!(" {:#x}", read_entry(l4.mfn, i));
    }
    println!();

    check_eq!(t, mm::new_baseptr(l4.mfn), Ok(()), "NEW_BASEPTR L4'");
    check_eq!(
        t,
        read_entry(l4.mfn, 256),
        boot_slots[256],
        "L4' slot 256 once installed (the RO M2P, as in the boot L4)"
    );
    check_eq!(
        t,
        probe_read_u64(VA_NEW),
        Ok(PAT_D0),
        "read {VA_NEW:#x} in L4'"
    );
    check_eq!(
        t,
        probe_read_u64(VA_NEW + 0x1000),
        Ok(PAT_D1),
        "read {:#x} in L4'",
        VA_NEW + 0x1000
    );
    // SAFETY: the page is mapped read-only; should the write succeed it
    // stores the value just read.
    let w = unsafe { probe_write_u64(VA_NEW + 0x1000, PAT_D1) };
    check_eq!(
        t,
        w,
        Err(Fault {
            vector: VEC_PF,
            error_code: PFEC_PRESENT | PFEC_WRITE
        }),
        "write to the read-only mapping in L4'"
    );
    check_eq!(
        t,
        mm::new_baseptr(boot_l4),
        Ok(()),
        "NEW_BASEPTR back to the boot L4"
    );
    check_eq!(
        t,
        probe_read_u64(VA_NEW),
        pf(0),
        "read {VA_NEW:#x} in the boot L4"
    );

    // The user root holds its own reference: unpinned, L4' stays an L4
    // until NEW_USER_BASEPTR 0 drops it.
    check_eq!(
        t,
        mmuext(MMUEXT_NEW_USER_BASEPTR, l4.mfn, 0),
        Ok(()),
        "NEW_USER_BASEPTR L4'"
    );
    for f in [l4, l3, l2, l1] {
        check_eq!(t, mm::unpin(f.mfn), Ok(()), "UNPIN_TABLE {:#x}", f.mfn);
    }
    check_eq!(
        t,
        map_window(0, l4.mfn, true).map(|_| ()),
        Err(Errno::EBUSY),
        "writable mapping of L4' while it is the user root"
    );
    check_eq!(
        t,
        mmuext(MMUEXT_NEW_USER_BASEPTR, 0, 0),
        Ok(()),
        "NEW_USER_BASEPTR 0"
    );
    // Unpinned and unreferenced, the tables are ordinary RAM again.
    for (name, f) in [("L1'", l1), ("L2'", l2), ("L3'", l3), ("L4'", l4)] {
        let r = map_window(0, f.mfn, true);
        check!(
            t,
            r.is_ok(),
            "writable mapping of the unpinned {name}: {r:?}"
        );
        let _ = unmap_window(0);
    }
}

/// 512 L1 entries in one mmu_update call, read back through the mappings.
fn batch(t: &mut Failures, l1b: u64) {
    static mut REQS: [MmuUpdate; 512] = [MmuUpdate { ptr: 0, val: 0 }; 512];
    // SAFETY: single-threaded test; REQS is used only here.
    let reqs = unsafe { core::slice::from_raw_parts_mut((&raw mut REQS).cast::<MmuUpdate>(), 512) };
    for (i, r) in (0u64..).zip(reqs.iter_mut()) {
        *r = MmuUpdate {
            ptr: entry_maddr(l1b, i) | MMU_NORMAL_PT_UPDATE,
            val: (mm::p2m(i) << 12) | KERNEL_RO,
        };
    }
    let (r, done) = mmu_update_done(reqs, DOMID_SELF);
    check_eq!(t, r, Ok(0), "mmu_update of 512 L1 entries");
    check_eq!(t, done, 512, "mmu_update done count");
    // The shared_info window's pfn now maps shared_info, not its own frame.
    let si_pfn = (shared_info::window_va() - va_of_pfn(0)) / PAGE_SIZE;
    let mut bad = 0;
    for i in (0..512).filter(|&i| i != si_pfn) {
        let a = probe_read_u64(VA_B + i * PAGE_SIZE);
        let b = probe_read_u64(va_of_pfn(i));
        if a.is_err() || a != b {
            if bad == 0 {
                println!("  pfn {i:#x}: through the batch mapping {a:x?}, directly {b:x?}");
            }
            bad += 1;
        }
    }
    check_eq!(
        t,
        bad,
        0,
        "pages of the batch mapping that differ from the originals"
    );
    check_eq!(
        t,
        read_entry(l1b, 5),
        adjusted((mm::p2m(5) << 12) | KERNEL_RO),
        "L1 entry 5 after the batch"
    );
    for r in reqs.iter_mut() {
        r.val = 0;
    }
    let (r, done) = mmu_update_done(reqs, DOMID_SELF);
    check_eq!(t, r, Ok(0), "mmu_update clearing 512 L1 entries");
    check_eq!(t, done, 512, "done count of the clearing batch");
    let _ = mm::flush_tlb();
    check_eq!(t, probe_read_u64(VA_B), pf(0), "read of a cleared entry");
}

/// MMU_PT_UPDATE_PRESERVE_AD keeps the A/D bits the CPU set; a normal update
/// stores exactly the new value.
fn preserve_ad(t: &mut Failures, l1b: u64, d0: Frame) {
    let plain = (d0.mfn << 12) | PTE_PRESENT | PTE_RW;
    check_eq!(
        t,
        mm::set_entry(l1b, 0, plain),
        Ok(()),
        "mapping without A/D"
    );
    let _ = mm::invlpg(VA_B);
    // SAFETY: VA_B maps d0, a test data page; word 2 is unused.
    let w = unsafe { probe_write_u64(VA_B + 16, 0x2222) };
    check_eq!(t, w, Ok(()), "write through the new mapping");
    check_eq!(
        t,
        read_entry(l1b, 0),
        adjusted(plain | PTE_ACCESSED | PTE_DIRTY),
        "L1 entry after the CPU set A and D"
    );
    let req = [MmuUpdate {
        ptr: entry_maddr(l1b, 0) | MMU_PT_UPDATE_PRESERVE_AD,
        val: plain,
    }];
    check_eq!(
        t,
        mmu_update_done(&req, DOMID_SELF),
        (Ok(0), 1),
        "MMU_PT_UPDATE_PRESERVE_AD"
    );
    check_eq!(
        t,
        read_entry(l1b, 0),
        adjusted(plain | PTE_ACCESSED | PTE_DIRTY),
        "L1 entry after PRESERVE_AD (A/D kept)"
    );
    let req = [MmuUpdate {
        ptr: entry_maddr(l1b, 0) | MMU_NORMAL_PT_UPDATE,
        val: plain,
    }];
    check_eq!(
        t,
        mmu_update_done(&req, DOMID_SELF),
        (Ok(0), 1),
        "MMU_NORMAL_PT_UPDATE"
    );
    check_eq!(
        t,
        read_entry(l1b, 0),
        adjusted(plain),
        "L1 entry after a normal update (A/D gone)"
    );
    let _ = mm::set_entry(l1b, 0, 0);
    let _ = mm::invlpg(VA_B);
}

/// MMU_MACHPHYS_UPDATE sets the M2P entry of an own frame.
fn machphys(t: &mut Failures, d0: Frame) {
    check_eq!(
        t,
        mm::m2p(d0.mfn),
        Some(d0.pfn),
        "M2P of a frame before the update"
    );
    for val in [0x1234_5678, d0.pfn] {
        let req = [MmuUpdate {
            // Offset bits within the frame are ignored.
            ptr: d0.maddr(0x18) | MMU_MACHPHYS_UPDATE,
            val,
        }];
        check_eq!(
            t,
            mmu_update_done(&req, DOMID_SELF),
            (Ok(0), 1),
            "MMU_MACHPHYS_UPDATE to {val:#x}"
        );
        check_eq!(t, mm::m2p(d0.mfn), Some(val), "M2P after setting {val:#x}");
    }
}

/// An "update" aimed at a frame that is no page table is a plain store.
fn raw_ram_update(t: &mut Failures, d0: Frame) {
    let req = [MmuUpdate {
        ptr: d0.maddr(3 * 8) | MMU_NORMAL_PT_UPDATE,
        val: 0xfeed_f00d,
    }];
    check_eq!(
        t,
        mmu_update_done(&req, DOMID_SELF),
        (Ok(0), 1),
        "MMU_NORMAL_PT_UPDATE into an ordinary RAM frame"
    );
    check_eq!(
        t,
        read_entry(d0.mfn, 3),
        0xfeed_f00d,
        "the frame's word 3 afterwards"
    );
}

fn uvm(va: u64, pte: u64, flags: u64) -> Result<u64, Errno> {
    // SAFETY: `va` is a test page of VA_B's region.
    unsafe { xenolith_guests::hypercall::update_va_mapping(va, pte, flags) }
}

/// update_va_mapping with INVLPG / TLB_FLUSH, local, all and a vCPU bitmap:
/// the new mapping is visible at once, a removed one is gone.
fn update_va_mapping_flushes(t: &mut Failures, d0: Frame, d1: Frame) {
    let ro0 = (d0.mfn << 12) | KERNEL_RO;
    let ro1 = (d1.mfn << 12) | KERNEL_RO;
    let bitmap: u64 = 1;
    let multi = (&raw const bitmap) as u64;
    let steps: [(&str, u64, u64, Result<u64, Fault>); 8] = [
        ("INVLPG (local)", ro0, UVMF_INVLPG, Ok(PAT_D0)),
        ("INVLPG (local), new frame", ro1, UVMF_INVLPG, Ok(PAT_D1)),
        ("TLB_FLUSH|ALL", ro0, UVMF_TLB_FLUSH | UVMF_ALL, Ok(PAT_D0)),
        ("INVLPG|ALL, not present", 0, UVMF_INVLPG | UVMF_ALL, pf(0)),
        ("TLB_FLUSH (local)", ro1, UVMF_TLB_FLUSH, Ok(PAT_D1)),
        (
            "TLB_FLUSH|ALL, not present",
            0,
            UVMF_TLB_FLUSH | UVMF_ALL,
            pf(0),
        ),
        (
            "INVLPG, vCPU bitmap {1}",
            ro0,
            UVMF_INVLPG | multi,
            Ok(PAT_D0),
        ),
        (
            "TLB_FLUSH, vCPU bitmap {1}",
            ro1,
            UVMF_TLB_FLUSH | multi,
            Ok(PAT_D1),
        ),
    ];
    for (what, pte, flags, expect) in steps {
        // Prime the TLB with the old translation (if any).
        let _ = probe_read_u64(VA_U);
        check_eq!(t, uvm(VA_U, pte, flags), Ok(0), "update_va_mapping {what}");
        check_eq!(
            t,
            probe_read_u64(VA_U),
            expect,
            "read after update_va_mapping {what}"
        );
    }
    // No flush requested: the call still succeeds (what the TLB holds is
    // not architecturally defined, so it is not checked).
    check_eq!(
        t,
        uvm(VA_U, ro0, UVMF_NONE),
        Ok(0),
        "update_va_mapping UVMF_NONE"
    );
}

/// The MMUEXT flush operations make a changed L1 entry visible.
fn mmuext_flushes(t: &mut Failures, l1b: u64, d0: Frame, d1: Frame) {
    let bitmap: u64 = 1;
    let mask = (&raw const bitmap) as u64;
    let ops: [(&str, u32, u64, u64); 6] = [
        ("TLB_FLUSH_LOCAL", MMUEXT_TLB_FLUSH_LOCAL, 0, 0),
        ("TLB_FLUSH_ALL", MMUEXT_TLB_FLUSH_ALL, 0, 0),
        ("INVLPG_LOCAL", MMUEXT_INVLPG_LOCAL, VA_U, 0),
        ("INVLPG_ALL", MMUEXT_INVLPG_ALL, VA_U, 0),
        ("TLB_FLUSH_MULTI {vCPU 0}", MMUEXT_TLB_FLUSH_MULTI, 0, mask),
        ("INVLPG_MULTI {vCPU 0}", MMUEXT_INVLPG_MULTI, VA_U, mask),
    ];
    let mut frames = [(d0, PAT_D0), (d1, PAT_D1)].into_iter().cycle();
    for (what, cmd, arg1, arg2) in ops {
        let (f, pat) = frames.next().expect("cycle");
        let _ = probe_read_u64(VA_U);
        check_eq!(
            t,
            mm::set_entry(l1b, 1, (f.mfn << 12) | KERNEL_RO),
            Ok(()),
            "mmu_update before {what}"
        );
        check_eq!(t, mmuext(cmd, arg1, arg2), Ok(()), "MMUEXT {what}");
        check_eq!(t, probe_read_u64(VA_U), Ok(pat), "read after MMUEXT {what}");
    }
    // dom0 holds I/O memory rights, so it may flush caches.
    check_eq!(
        t,
        mmuext(MMUEXT_FLUSH_CACHE, 0, 0),
        Ok(()),
        "MMUEXT_FLUSH_CACHE"
    );
    check_eq!(
        t,
        mmuext(MMUEXT_FLUSH_CACHE_GLOBAL, 0, 0),
        Ok(()),
        "MMUEXT_FLUSH_CACHE_GLOBAL"
    );
}

/// MMUEXT_CLEAR_PAGE zeroes a frame, MMUEXT_COPY_PAGE copies one.
fn clear_and_copy(t: &mut Failures, mm: &mut Mm) {
    let [src, dst] = [mm.alloc(), mm.alloc()];
    let pattern = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let fill = |f: Frame| {
        fill_page(f.mfn, |p| {
            for (i, w) in (0u64..).zip(p.iter_mut()) {
                *w = pattern(i);
            }
        })
    };
    check_eq!(t, fill(src), Ok(()), "filling the source frame");
    check_eq!(
        t,
        fill_page(dst.mfn, |p| p.fill(0x7777)),
        Ok(()),
        "filling the target"
    );
    check_eq!(
        t,
        mmuext(MMUEXT_COPY_PAGE, dst.mfn, src.mfn),
        Ok(()),
        "MMUEXT_COPY_PAGE"
    );
    let copied = (0..512)
        .filter(|&i| read_entry(dst.mfn, i) == pattern(i))
        .count();
    check_eq!(t, copied, 512, "words copied by MMUEXT_COPY_PAGE");
    check_eq!(t, mm::clear_page(src.mfn), Ok(()), "MMUEXT_CLEAR_PAGE");
    let zero = (0..512).filter(|&i| read_entry(src.mfn, i) == 0).count();
    check_eq!(t, zero, 512, "zero words after MMUEXT_CLEAR_PAGE");
}

/// A multicall runs every entry and stores each result, failing ones included.
fn multicall(t: &mut Failures, l1b: u64, d0: Frame, d1: Frame) {
    let flush = [MmuextOp {
        cmd: MMUEXT_TLB_FLUSH_LOCAL,
        pad: 0,
        arg1: 0,
        arg2: 0,
    }];
    let mut ext_done: u32 = 0xdead;
    let upd = [MmuUpdate {
        ptr: entry_maddr(l1b, 2) | MMU_NORMAL_PT_UPDATE,
        val: (d1.mfn << 12) | KERNEL_RO,
    }];
    let mut upd_done: u32 = 0xdead;
    let self_ = u64::from(DOMID_SELF);
    let mut entries = [
        mc_entry(
            UPDATE_VA_MAPPING,
            &[VA_U, (d0.mfn << 12) | KERNEL_RO, UVMF_INVLPG],
        ),
        mc_entry(
            MMUEXT_OP,
            &[flush.as_ptr() as u64, 1, (&raw mut ext_done) as u64, self_],
        ),
        // A VA in the hypervisor's range: refused.
        mc_entry(UPDATE_VA_MAPPING, &[0xffff_8000_0000_0000, 0, UVMF_INVLPG]),
        mc_entry(XEN_VERSION, &[XENVER_VERSION.into(), 0]),
        mc_entry(99, &[]),
        mc_entry(
            MMU_UPDATE,
            &[upd.as_ptr() as u64, 1, (&raw mut upd_done) as u64, self_],
        ),
    ];
    // SAFETY: the calls only map test frames at test VAs, flush, or fail.
    let r = unsafe { mm::multicall(&mut entries) };
    check_eq!(t, r, Ok(0), "multicall of 6 entries");
    let expect: [u64; 6] = [
        0,
        0,
        Errno::EINVAL.as_rax(),
        (4 << 16) | 17,
        Errno::ENOSYS.as_rax(),
        0,
    ];
    for (i, (e, x)) in entries.iter().zip(expect).enumerate() {
        check_eq!(t, e.result, x, "multicall entry {i} (op {}) result", e.op);
    }
    check_eq!(t, ext_done, 1, "done count of the mmuext_op entry");
    check_eq!(t, upd_done, 1, "done count of the mmu_update entry");
    let _ = mm::flush_tlb();
    check_eq!(
        t,
        probe_read_u64(VA_U),
        Ok(PAT_D0),
        "VA mapped by multicall entry 0"
    );
    check_eq!(
        t,
        probe_read_u64(VA_B + 0x2000),
        Ok(PAT_D1),
        "VA mapped by multicall entry 5"
    );
    // SAFETY: an empty list is never read.
    let r = unsafe { mm::multicall(&mut []) };
    check_eq!(t, r, Ok(0), "multicall of 0 entries");
}

/// Offset in a data frame of the extraversion string the hypervisor writes.
const OUT_OFF: u64 = 0x100;

/// `XENVER_extraversion` written by the hypervisor to `VA_U + OUT_OFF`.
fn extraversion_at_va_u() -> Result<u64, Errno> {
    // SAFETY: 16 bytes at VA_U + OUT_OFF, a test page; whatever VA_U maps
    // (or not) is what the test looks at.
    xenolith_guests::hypercall::result(unsafe {
        xenolith_guests::hypercall::xen_version(XENVER_EXTRAVERSION, VA_U + OUT_OFF)
    })
}

/// The hypervisor's own accesses to guest memory see each remap at once: a
/// hypercall output buffer at VA_U lands in d0, then (after update_va_mapping
/// to d1) in d1 and not d0, and fails with -EFAULT once VA_U is read-only or
/// unmapped.
fn hypercall_buffer_remaps(t: &mut Failures, d0: Frame, d1: Frame) {
    let word = (OUT_OFF / 8) as usize;
    for f in [d0, d1] {
        let _ = fill_page(f.mfn, |p| p[word] = 0);
    }
    let rw = |f: Frame| (f.mfn << 12) | KERNEL_RW;
    check_eq!(t, uvm(VA_U, rw(d0), UVMF_INVLPG), Ok(0), "map d0 at VA_U");
    check_eq!(t, extraversion_at_va_u(), Ok(0), "extraversion into d0");
    let in_d0 = read_entry(d0.mfn, word as u64);
    check!(t, in_d0 != 0, "the string landed in d0");
    let _ = fill_page(d0.mfn, |p| p[word] = 0);
    check_eq!(t, uvm(VA_U, rw(d1), UVMF_INVLPG), Ok(0), "map d1 at VA_U");
    check_eq!(t, extraversion_at_va_u(), Ok(0), "extraversion into d1");
    check_eq!(
        t,
        (
            read_entry(d0.mfn, word as u64),
            read_entry(d1.mfn, word as u64)
        ),
        (0, in_d0),
        "after the remap the string lands in d1, not d0"
    );
    let ro = (d1.mfn << 12) | KERNEL_RO;
    check_eq!(t, uvm(VA_U, ro, UVMF_INVLPG), Ok(0), "map d1 read-only");
    check_eq!(
        t,
        extraversion_at_va_u(),
        Err(Errno::EFAULT),
        "extraversion into a read-only page"
    );
    check_eq!(t, uvm(VA_U, 0, UVMF_INVLPG), Ok(0), "unmap VA_U");
    check_eq!(
        t,
        extraversion_at_va_u(),
        Err(Errno::EFAULT),
        "extraversion into an unmapped page"
    );
}
