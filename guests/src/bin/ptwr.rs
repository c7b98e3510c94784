//! Test kernel `ptwr`: direct guest-kernel writes to read-only mapped L1 tables (writable page tables).
//!
//! Command line: none. A pinned, hooked L1 is mapped read-only in a window
//! and written with plain 8-byte stores, 4-byte stores into either half and
//! `LOCK CMPXCHG`: Xen emulates each as a checked update (adding
//! _PAGE_USER|_PAGE_GUEST_KERNEL like mmu_update), and the new mapping takes
//! effect (after an INVLPG when it replaces a present one). Updates that
//! would be refused by mmu_update (a writable mapping of a page table, a
//! frame not owned), misaligned stores, stores to an unused frame and to
//! L2-L4 tables are not emulated: the guest gets the #PF (present, write) at
//! the written address. For dom0 Xen 4.17 emulates L1 writes whether or not
//! VMASST_TYPE_writable_pagetables is enabled.
#![no_std]
#![no_main]

use xen_abi::vm_assist::{VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES};
use xenolith_guests::mm::{
    self, fill_page, map_window, read_entry, unmap_window, Frame, Mm, KERNEL_RO, KERNEL_RW,
    PTE_GUEST_KERNEL, PTE_NX,
};
use xenolith_guests::probe::{probe_cmpxchg_u64, probe_write_u32};
use xenolith_guests::traps::{probe_read_u64, probe_write_u64, Fault};
use xenolith_guests::x86::{PFEC_PRESENT, PFEC_WRITE, PTE_USER, VEC_PF};
use xenolith_guests::{
    check_eq, hypercall, println, shared_info, test_main, Boot, Failures, Verdict,
};

test_main!(run);

/// Region mapped through the test L1 (L4 slot 5).
const VA_P: u64 = 5 << 39;
const PAT_D0: u64 = 0xd0d0_0000_0000_d0d0;
const PAT_D1: u64 = 0xd1d1_0000_0000_d1d1;

const fn adjusted(pte: u64) -> u64 {
    pte | PTE_USER | PTE_GUEST_KERNEL
}

fn va(i: u64) -> u64 {
    VA_P + i * 0x1000
}

const WRITE_FAULT: Fault = Fault {
    vector: VEC_PF,
    error_code: PFEC_PRESENT | PFEC_WRITE,
};

struct Ctx {
    /// The test L1's mfn.
    l1: u64,
    /// VA of its read-only window mapping.
    w: u64,
    d0: Frame,
    d1: Frame,
}

impl Ctx {
    fn slot(&self, i: u64) -> u64 {
        self.w + i * 8
    }

    fn write(&self, i: u64, pte: u64) -> Result<(), Fault> {
        // SAFETY: the target is an entry of the test L1; Xen checks the
        // update (or refuses it with a #PF).
        unsafe { probe_write_u64(self.slot(i), pte) }
    }
}

fn data_frame(mm: &mut Mm, pattern: u64) -> Frame {
    let f = mm.alloc();
    let _ = fill_page(f.mfn, |p| {
        p.fill(0);
        p[0] = pattern;
    });
    f
}

fn cr2() -> Option<u64> {
    shared_info::get().map(|s| s.cr2(0))
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    let si = boot.start_info;
    if let Err(e) = shared_info::map(si) {
        println!("warning: cannot map shared_info ({e:?})");
    }
    let mut mm = Mm::new(si);
    let d0 = data_frame(&mut mm, PAT_D0);
    let d1 = data_frame(&mut mm, PAT_D1);
    let l1 = match mm::map_va(&mut mm, VA_P, 0) {
        Ok(l1) => l1,
        Err(e) => {
            t.fail(format_args!("building tables for {VA_P:#x}: {e:?}"));
            return t.verdict();
        }
    };
    let w = match map_window(0, l1, false) {
        Ok(w) => w,
        Err(e) => {
            t.fail(format_args!("read-only window on the test L1: {e:?}"));
            return t.verdict();
        }
    };
    let c = Ctx { l1, w, d0, d1 };

    // No assist requested: dom0 (the hardware domain) still gets emulation.
    check_eq!(
        t,
        c.write(1, (d0.mfn << 12) | KERNEL_RO),
        Ok(()),
        "L1 write without the assist"
    );
    check_eq!(
        t,
        read_entry(l1, 1),
        adjusted((d0.mfn << 12) | KERNEL_RO),
        "entry written without the assist"
    );
    check_eq!(t, probe_read_u64(va(1)), Ok(PAT_D0), "read through it");

    check_eq!(
        t,
        hypercall::vm_assist(VMASST_CMD_ENABLE, VMASST_TYPE_WRITABLE_PAGETABLES),
        Ok(0),
        "enabling VMASST writable_pagetables"
    );
    plain_writes(&mut t, &c);
    refused_writes(&mut t, &c, &mut mm);
    cmpxchg(&mut t, &c);
    dword_writes(&mut t, &c);
    other_tables(&mut t, &c, &mut mm);
    check_eq!(
        t,
        hypercall::vm_assist(VMASST_CMD_DISABLE, VMASST_TYPE_WRITABLE_PAGETABLES),
        Ok(0),
        "disabling VMASST writable_pagetables"
    );
    check_eq!(
        t,
        c.write(1, 0),
        Ok(()),
        "L1 write with the assist disabled again"
    );
    check_eq!(
        t,
        read_entry(l1, 1),
        0,
        "entry written with the assist disabled"
    );
    let _ = unmap_window(0);
    t.verdict()
}

fn plain_writes(t: &mut Failures, c: &Ctx) {
    let (d0, d1) = (c.d0.mfn << 12, c.d1.mfn << 12);
    check_eq!(
        t,
        c.write(2, d0 | KERNEL_RO),
        Ok(()),
        "8-byte write of a new entry"
    );
    check_eq!(t, read_entry(c.l1, 2), adjusted(d0 | KERNEL_RO), "entry 2");
    check_eq!(t, probe_read_u64(va(2)), Ok(PAT_D0), "read through entry 2");
    check_eq!(
        t,
        c.write(2, d1 | KERNEL_RO),
        Ok(()),
        "8-byte write replacing it"
    );
    let _ = mm::invlpg(va(2));
    check_eq!(
        t,
        probe_read_u64(va(2)),
        Ok(PAT_D1),
        "read through the replaced entry"
    );
    check_eq!(
        t,
        c.write(2, d0 | KERNEL_RW),
        Ok(()),
        "8-byte write of a writable entry"
    );
    let _ = mm::invlpg(va(2));
    // SAFETY: va(2) maps d0, a test data page; word 4 is unused.
    let r = unsafe { probe_write_u64(va(2) + 32, 0x4444) };
    check_eq!(t, r, Ok(()), "write through the writable entry");
    // Not-present entries are stored as written.
    check_eq!(
        t,
        c.write(8, 0xdead_0000),
        Ok(()),
        "8-byte write of a not-present entry"
    );
    check_eq!(
        t,
        read_entry(c.l1, 8),
        0xdead_0000,
        "entry 8 (not present, unadjusted)"
    );
    check_eq!(t, c.write(8, 0), Ok(()), "clearing entry 8");
}

fn refused_writes(t: &mut Failures, c: &Ctx, mm: &mut Mm) {
    let m2p = {
        let mut list = [0u64; 1];
        let mut ml = xen_abi::memory::XenMachphysMfnList {
            max_extents: 1,
            extent_start: list.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: Xen writes one MFN to `list` and fills in `ml`.
        let _ = unsafe {
            hypercall::memory_op(
                xen_abi::memory::XENMEM_MACHPHYS_MFN_LIST.into(),
                (&raw mut ml) as u64,
            )
        };
        list[0]
    };
    let pinned_l2 = mm.alloc_zeroed();
    let _ = mm::pin(2, pinned_l2.mfn);
    for (what, pte) in [
        ("the L1 itself RW", (c.l1 << 12) | KERNEL_RW),
        ("the boot L4 RW", (mm::boot_l4() << 12) | KERNEL_RW),
        ("a pinned L2 RW", (pinned_l2.mfn << 12) | KERNEL_RW),
        ("Xen's M2P frame RO", (m2p << 12) | KERNEL_RO),
    ] {
        check_eq!(
            t,
            c.write(3, pte),
            Err(WRITE_FAULT),
            "8-byte write mapping {what}"
        );
        check_eq!(t, cr2(), Some(c.slot(3)), "cr2 for it");
        check_eq!(t, read_entry(c.l1, 3), 0, "entry 3 unchanged");
    }
    // The L1 itself read-only is a valid mapping.
    check_eq!(
        t,
        c.write(3, (c.l1 << 12) | KERNEL_RO),
        Ok(()),
        "8-byte write mapping the L1 itself RO"
    );
    let _ = mm::invlpg(va(3));
    check_eq!(
        t,
        probe_read_u64(va(3) + 3 * 8),
        Ok(adjusted((c.l1 << 12) | KERNEL_RO)),
        "the L1 read through its own entry"
    );
    check_eq!(t, c.write(3, 0), Ok(()), "clearing entry 3");
    // Misaligned: an 8-byte store across entries 6 and 7.
    // SAFETY: Xen refuses the store (checked below).
    let r = unsafe { probe_write_u64(c.slot(6) + 4, (c.d0.mfn << 12) | KERNEL_RO) };
    check_eq!(
        t,
        r,
        Err(WRITE_FAULT),
        "misaligned 8-byte write across entries 6 and 7"
    );
    check_eq!(t, cr2(), Some(c.slot(6) + 4), "cr2 for it");
    check_eq!(
        t,
        (read_entry(c.l1, 6), read_entry(c.l1, 7)),
        (0, 0),
        "entries 6 and 7 unchanged"
    );
}

fn cmpxchg(t: &mut Failures, c: &Ctx) {
    let (d0, d1) = (c.d0.mfn << 12, c.d1.mfn << 12);
    let slot = c.slot(4);
    let x = |old: u64, new: u64| {
        // SAFETY: the target is entry 4 of the test L1; Xen checks the update.
        unsafe { probe_cmpxchg_u64(slot, old, new) }
    };
    check_eq!(t, x(0, d0 | KERNEL_RO), Ok((true, 0)), "CMPXCHG 0 -> d0");
    check_eq!(
        t,
        read_entry(c.l1, 4),
        adjusted(d0 | KERNEL_RO),
        "entry 4 after it"
    );
    check_eq!(t, probe_read_u64(va(4)), Ok(PAT_D0), "read through entry 4");
    // The comparison is with the stored (adjusted) value.
    check_eq!(
        t,
        x(d0 | KERNEL_RO, d1 | KERNEL_RO),
        Ok((false, adjusted(d0 | KERNEL_RO))),
        "CMPXCHG with the unadjusted old value"
    );
    check_eq!(
        t,
        read_entry(c.l1, 4),
        adjusted(d0 | KERNEL_RO),
        "entry 4 unchanged"
    );
    check_eq!(
        t,
        x(adjusted(d0 | KERNEL_RO), d1 | KERNEL_RO),
        Ok((true, adjusted(d0 | KERNEL_RO))),
        "CMPXCHG with the stored old value"
    );
    check_eq!(
        t,
        read_entry(c.l1, 4),
        adjusted(d1 | KERNEL_RO),
        "entry 4 after it"
    );
    let _ = mm::invlpg(va(4));
    check_eq!(t, probe_read_u64(va(4)), Ok(PAT_D1), "read through entry 4");
    check_eq!(
        t,
        x(adjusted(d1 | KERNEL_RO), (c.l1 << 12) | KERNEL_RW),
        Err(WRITE_FAULT),
        "CMPXCHG to a writable mapping of the L1"
    );
    check_eq!(
        t,
        read_entry(c.l1, 4),
        adjusted(d1 | KERNEL_RO),
        "entry 4 unchanged"
    );
}

fn dword_writes(t: &mut Failures, c: &Ctx) {
    let (d0, d1) = (c.d0.mfn << 12, c.d1.mfn << 12);
    check_eq!(
        t,
        c.write(5, d0 | KERNEL_RO),
        Ok(()),
        "8-byte write of entry 5"
    );
    let low = (d1 | KERNEL_RO) as u32;
    // SAFETY: the low half of entry 5; Xen merges it with the high half.
    let r = unsafe { probe_write_u32(c.slot(5), low) };
    check_eq!(t, r, Ok(()), "4-byte write of entry 5's low half");
    check_eq!(
        t,
        read_entry(c.l1, 5),
        adjusted(d1 | KERNEL_RO),
        "entry 5 after it"
    );
    let _ = mm::invlpg(va(5));
    check_eq!(t, probe_read_u64(va(5)), Ok(PAT_D1), "read through entry 5");
    let high = ((adjusted(d1 | KERNEL_RO) | PTE_NX) >> 32) as u32;
    // SAFETY: the high half of entry 5.
    let r = unsafe { probe_write_u32(c.slot(5) + 4, high) };
    check_eq!(t, r, Ok(()), "4-byte write of entry 5's high half (NX)");
    check_eq!(
        t,
        read_entry(c.l1, 5),
        adjusted(d1 | KERNEL_RO) | PTE_NX,
        "entry 5 after it"
    );
    // A low half that would make the entry map the L1 writable.
    let bad = ((c.l1 << 12) | KERNEL_RW) as u32;
    // SAFETY: Xen refuses the store (checked below).
    let r = unsafe { probe_write_u32(c.slot(5), bad) };
    check_eq!(
        t,
        r,
        Err(WRITE_FAULT),
        "4-byte write making entry 5 map the L1 RW"
    );
    check_eq!(
        t,
        read_entry(c.l1, 5),
        adjusted(d1 | KERNEL_RO) | PTE_NX,
        "entry 5 unchanged"
    );
}

fn other_tables(t: &mut Failures, c: &Ctx, mm: &mut Mm) {
    // An unused frame (no table type) mapped read-only: not emulated.
    let free = mm.alloc_zeroed();
    if let Ok(w) = map_window(1, free.mfn, false) {
        // SAFETY: Xen refuses the store.
        let r = unsafe { probe_write_u64(w, (c.d0.mfn << 12) | KERNEL_RO) };
        check_eq!(t, r, Err(WRITE_FAULT), "write to an unused frame mapped RO");
        let _ = unmap_window(1);
    }
    // A pinned but unhooked L1: emulated.
    let pinned = mm.alloc_zeroed();
    let _ = mm::pin(1, pinned.mfn);
    if let Ok(w) = map_window(1, pinned.mfn, false) {
        // SAFETY: entry 0 of a pinned test L1; Xen checks the update.
        let r = unsafe { probe_write_u64(w, (c.d0.mfn << 12) | KERNEL_RO) };
        check_eq!(t, r, Ok(()), "write to a pinned, unhooked L1");
        check_eq!(
            t,
            read_entry(pinned.mfn, 0),
            adjusted((c.d0.mfn << 12) | KERNEL_RO),
            "its entry 0"
        );
        let _ = unmap_window(1);
    }
    // L2, L3 and L4 of the test region: never emulated.
    let w = mm::walk(VA_P);
    for (n, name) in [(0, "L4"), (1, "L3"), (2, "L2")] {
        let table = w.tables[n];
        let index = mm::index_of(VA_P, 4 - n as u32);
        if let Ok(win) = map_window(1, table, false) {
            let addr = win + index * 8;
            // SAFETY: writes back the entry's own value, should it succeed.
            let r = unsafe { probe_write_u64(addr, w.entries[n]) };
            check_eq!(t, r, Err(WRITE_FAULT), "write to the {name}");
            check_eq!(t, cr2(), Some(addr), "cr2 for it");
            let _ = unmap_window(1);
        }
    }
}
