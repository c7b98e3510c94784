//! Test kernel `descriptors`: set_gdt, update_descriptor and MMUEXT_SET_LDT, and loading their selectors.
//!
//! Command line: none. A GDT frame is refused while mapped writable and
//! accepted once not; validation rewrites DPL 0-2 code/data descriptors to
//! DPL 3; its selectors then load (DS, a based FS read through the
//! descriptor's base, #NP for a not-present entry, #GP for a zero entry and
//! for one in a GDT page not given; set_gdt's entry count is no limit within
//! the frames given, since Xen's GDT limit always spans the 14 guest pages).
//! update_descriptor accepts code/data (DPL raised), not-present and type-0
//! descriptors and call gates to guest code (DPL forced to 0), and refuses
//! TSS/LDT/interrupt/trap gates, gates to hypervisor code, misaligned
//! addresses and frames of the wrong type. An LDT page is only mapped by Xen
//! once no writable mapping of it exists (else the load gets a #PF at the
//! descriptor), and is then held as a descriptor page until SET_LDT drops it.
#![no_std]
#![no_main]

use xen_abi::hypercall::{SET_GDT, UPDATE_DESCRIPTOR};
use xen_abi::layout::FLAT_KERNEL_DS32;
use xen_abi::mmu::{MMUEXT_SET_LDT, UVMF_INVLPG};
use xen_abi::Errno;
use xenolith_guests::mm::{
    self, fill_page, map_window, read_entry, unmap_window, window_va, Frame, Mm, KERNEL_RO,
};
use xenolith_guests::probe::{
    probe_load_ds, probe_load_es, probe_load_fs, probe_read_fs_u64, read_ds, read_es, read_fs,
};
use xenolith_guests::traps::Fault;
use xenolith_guests::x86::{VEC_GP, VEC_PF};
use xenolith_guests::{
    check_eq, hypercall, println, shared_info, test_main, Boot, Failures, Verdict,
};

test_main!(run);

/// Low VA (below 4 GiB, for a segment base) mapping a data frame.
const VA_DATA: u64 = 0x1000_0000;
/// VA of the LDT page.
const VA_LDT: u64 = 0x2000_0000;
const PATTERN: u64 = 0x5e65_0000_0000_5e65;

const VEC_NP: u8 = 11;
/// Descriptor "accessed" bit, set by the CPU on a load.
const ACCESSED: u64 = 1 << 40;

/// Flat 4 GiB data, read/write, DPL 0.
const DATA_DPL0: u64 = 0x00cf_9200_0000_ffff;
/// The same at DPL 3 (what validation makes of it).
const DATA_DPL3: u64 = 0x00cf_f200_0000_ffff;
/// 64-bit code, DPL 0.
const CODE64_DPL0: u64 = 0x00af_9a00_0000_ffff;
/// 32-bit code, DPL 1.
const CODE32_DPL1: u64 = 0x00cf_ba00_0000_ffff;
/// Flat data, DPL 3, base VA_DATA.
const DATA_BASED: u64 = 0x10cf_f200_0000_ffff;
/// Not present (P clear), otherwise flat data.
const NOT_PRESENT: u64 = 0x00cf_7200_0000_ffff;

const fn dpl3(desc: u64) -> u64 {
    desc | (3 << 45)
}

/// A 64-bit call gate's low half: `sel:offset`, present, DPL `dpl`.
const fn call_gate(sel: u16, offset: u32, dpl: u64) -> u64 {
    ((offset as u64 >> 16) << 48)
        | (1 << 47)
        | (dpl << 45)
        | (0xc << 40)
        | ((sel as u64) << 16)
        | (offset as u64 & 0xffff)
}

/// A present system descriptor of `ty` (DPL 3).
const fn system(ty: u64) -> u64 {
    (1 << 47) | (3 << 45) | (ty << 40) | 0xffff
}

fn fault(vector: u8, error_code: u32) -> Result<(), Fault> {
    Err(Fault { vector, error_code })
}

fn set_gdt(frames: &[u64], entries: u64) -> Result<u64, Errno> {
    // SAFETY: Xen reads the frame list; the kernel uses no GDT selector that
    // a new GDT could take away (its CS/SS are in Xen's reserved area).
    hypercall::result(unsafe {
        hypercall::call(SET_GDT, [frames.as_ptr() as u64, entries, 0, 0, 0])
    })
}

fn update_descriptor(maddr: u64, desc: u64) -> Result<u64, Errno> {
    // SAFETY: descriptor updates only target test frames.
    hypercall::result(unsafe { hypercall::call(UPDATE_DESCRIPTOR, [maddr, desc, 0, 0, 0]) })
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    let si = boot.start_info;
    if let Err(e) = shared_info::map(si) {
        println!("warning: cannot map shared_info ({e:?})");
    }
    let mut mm = Mm::new(si);
    let data = mm.alloc();
    let _ = fill_page(data.mfn, |p| {
        p.fill(0);
        p[0] = PATTERN;
    });
    if let Err(e) = mm::map_va(&mut mm, VA_DATA, (data.mfn << 12) | KERNEL_RO) {
        t.fail(format_args!("mapping {VA_DATA:#x}: {e:?}"));
        return t.verdict();
    }
    let gdt = mm.alloc();
    gdt_checks(&mut t, &mut mm, gdt);
    update_descriptor_checks(&mut t, &mut mm, gdt);
    ldt_checks(&mut t, &mut mm);
    // Back to the null selectors, then an empty GDT frees the frame.
    // SAFETY: null selectors are always loadable in 64-bit mode.
    let _ = unsafe { (probe_load_ds(0), probe_load_es(0), probe_load_fs(0)) };
    check_eq!(t, set_gdt(&[], 0), Ok(0), "set_gdt with 0 entries");
    let r = map_window(0, gdt.mfn, true);
    check_eq!(
        t,
        r.map(|_| ()),
        Ok(()),
        "RW mapping of the former GDT frame"
    );
    let _ = unmap_window(0);
    t.verdict()
}

fn gdt_checks(t: &mut Failures, mm: &mut Mm, gdt: Frame) {
    let layout = [
        0,
        DATA_DPL0,
        CODE64_DPL0,
        DATA_BASED,
        NOT_PRESENT,
        CODE32_DPL1,
    ];
    let _ = map_window(0, gdt.mfn, true);
    // SAFETY: window 0 maps the GDT frame writable until unmapped below.
    let page = unsafe { &mut *(window_va(0) as *mut [u64; 512]) };
    page.fill(0);
    page[..layout.len()].copy_from_slice(&layout);
    let n = layout.len() as u64;
    check_eq!(
        t,
        set_gdt(&[gdt.mfn], n),
        Err(Errno::EINVAL),
        "set_gdt of a frame still mapped writable"
    );
    let _ = unmap_window(0);
    check_eq!(
        t,
        set_gdt(&[gdt.mfn], 7169),
        Err(Errno::EINVAL),
        "set_gdt with 7169 entries"
    );
    let l1 = mm.alloc_zeroed();
    let _ = mm::pin(1, l1.mfn);
    check_eq!(
        t,
        set_gdt(&[l1.mfn], 8),
        Err(Errno::EINVAL),
        "set_gdt of a pinned L1"
    );
    check_eq!(
        t,
        set_gdt(&[mm::p2m(0) + (1 << 40)], 8),
        Err(Errno::EINVAL),
        "set_gdt of a frame beyond RAM"
    );
    check_eq!(
        t,
        set_gdt(&[gdt.mfn], n),
        Ok(0),
        "set_gdt of a read-only frame"
    );

    // Validation rewrote DPL 0-2 to 3 in place.
    let expect = [
        0,
        DATA_DPL3,
        dpl3(CODE64_DPL0),
        DATA_BASED,
        NOT_PRESENT,
        dpl3(CODE32_DPL1),
    ];
    for (i, x) in (0u64..).zip(expect) {
        check_eq!(t, read_entry(gdt.mfn, i), x, "GDT entry {i} after set_gdt");
    }
    check_eq!(
        t,
        map_window(0, gdt.mfn, true).map(|_| ()),
        Err(Errno::EBUSY),
        "RW mapping of the installed GDT frame"
    );

    // SAFETY: the kernel does not use DS/ES/FS for addressing.
    unsafe {
        check_eq!(
            t,
            probe_load_ds(0x0b),
            Ok(()),
            "load DS with GDT entry 1 (data)"
        );
        check_eq!(t, read_ds(), 0x0b, "DS afterwards");
        check_eq!(
            t,
            probe_load_es(0x23),
            fault(VEC_NP, 0x20),
            "load ES with entry 4 (not present)"
        );
        check_eq!(
            t,
            probe_load_es(0x33),
            fault(VEC_GP, 0x30),
            "load ES with entry 6 (zero)"
        );
        check_eq!(
            t,
            probe_load_es(0x1003),
            fault(VEC_GP, 0x1000),
            "load ES with entry 512 (second GDT page, none given)"
        );
        check_eq!(
            t,
            probe_load_es(FLAT_KERNEL_DS32),
            Ok(()),
            "load ES with Xen's FLAT_KERNEL_DS32"
        );
        check_eq!(t, read_es(), FLAT_KERNEL_DS32, "ES afterwards");
        check_eq!(
            t,
            probe_load_fs(0x1b),
            Ok(()),
            "load FS with entry 3 (base {VA_DATA:#x})"
        );
        check_eq!(t, read_fs(), 0x1b, "FS afterwards");
    }
    check_eq!(
        t,
        probe_read_fs_u64(0),
        Ok(PATTERN),
        "read of fs:[0] through the descriptor base"
    );
}

/// (what, machine address, descriptor, result, word stored afterwards).
type DescCase = (&'static str, u64, u64, Result<u64, Errno>, u64);

fn update_descriptor_checks(t: &mut Failures, mm: &mut Mm, gdt: Frame) {
    let ma = |i: u64| gdt.maddr(i * 8);
    let cases: [DescCase; 14] = [
        ("data DPL 0", ma(6), DATA_DPL0, Ok(0), DATA_DPL3),
        (
            "64-bit code DPL 0",
            ma(7),
            CODE64_DPL0,
            Ok(0),
            dpl3(CODE64_DPL0),
        ),
        (
            "32-bit code DPL 1",
            ma(8),
            CODE32_DPL1,
            Ok(0),
            dpl3(CODE32_DPL1),
        ),
        (
            "not present (garbage)",
            ma(9),
            0x1234_7234_5678_5678,
            Ok(0),
            0x1234_7234_5678_5678,
        ),
        ("present type 0", ma(10), 1 << 47, Ok(0), 1 << 47),
        (
            "call gate DPL 3 to FLAT_KERNEL_CS",
            ma(11),
            call_gate(0xe033, 0x8000_1000, 3),
            Ok(0),
            call_gate(0xe033, 0x8000_1000, 0),
        ),
        (
            "call gate DPL 2 to GDT entry 2 (RPL 0)",
            ma(13),
            call_gate(0x10, 0x1000, 2),
            Ok(0),
            call_gate(0x13, 0x1000, 0),
        ),
        (
            "call gate to hypervisor CS 0xe008",
            ma(15),
            call_gate(0xe008, 0x1000, 3),
            Err(Errno::EINVAL),
            0,
        ),
        (
            "call gate with IST bits",
            ma(15),
            call_gate(0xe033, 0x1000, 3) | (1 << 32),
            Err(Errno::EINVAL),
            0,
        ),
        (
            "available 64-bit TSS",
            ma(15),
            system(0x9),
            Err(Errno::EINVAL),
            0,
        ),
        ("LDT descriptor", ma(15), system(0x2), Err(Errno::EINVAL), 0),
        (
            "interrupt gate",
            ma(15),
            call_gate(0xe033, 0x1000, 3) | (2 << 40),
            Err(Errno::EINVAL),
            0,
        ),
        (
            "trap gate",
            ma(15),
            call_gate(0xe033, 0x1000, 3) | (3 << 40),
            Err(Errno::EINVAL),
            0,
        ),
        (
            "data DPL 0 at a misaligned address",
            ma(15) + 4,
            DATA_DPL3,
            Err(Errno::EINVAL),
            0,
        ),
    ];
    for (what, addr, desc, expect, stored) in cases {
        check_eq!(
            t,
            update_descriptor(addr, desc),
            expect,
            "update_descriptor {what}"
        );
        check_eq!(
            t,
            read_entry(gdt.mfn, (addr & 0xfff) / 8),
            stored,
            "GDT word after update_descriptor {what}"
        );
    }
    // SAFETY: the kernel does not use DS for addressing.
    let r = unsafe { probe_load_ds(0x33) };
    check_eq!(
        t,
        r,
        Ok(()),
        "load DS with entry 6, beyond set_gdt's count but in the frame"
    );

    // Other frame types.
    let ram = mm.alloc_zeroed();
    check_eq!(
        t,
        update_descriptor(ram.maddr(8), DATA_DPL0),
        Ok(0),
        "update_descriptor in a RAM frame"
    );
    check_eq!(
        t,
        read_entry(ram.mfn, 1),
        DATA_DPL3,
        "the RAM frame's word 1"
    );
    let l1 = mm.alloc_zeroed();
    let _ = mm::pin(1, l1.mfn);
    check_eq!(
        t,
        update_descriptor(l1.maddr(8), DATA_DPL0),
        Err(Errno::EINVAL),
        "update_descriptor in a pinned L1"
    );
    check_eq!(
        t,
        update_descriptor((mm::p2m(0) + (1 << 40)) << 12, DATA_DPL0),
        Err(Errno::EINVAL),
        "update_descriptor in a frame beyond RAM"
    );
}

fn ldt_checks(t: &mut Failures, mm: &mut Mm) {
    let ldt = mm.alloc();
    let _ = fill_page(ldt.mfn, |p| {
        p.fill(0);
        p[1] = DATA_DPL0;
    });
    if let Err(e) = mm::map_va(mm, VA_LDT, (ldt.mfn << 12) | KERNEL_RO) {
        t.fail(format_args!("mapping the LDT at {VA_LDT:#x}: {e:?}"));
        return;
    }
    // A second, writable mapping of the LDT frame.
    let _ = map_window(1, ldt.mfn, true);
    check_eq!(
        t,
        mm::mmuext(MMUEXT_SET_LDT, VA_LDT, 2),
        Ok(()),
        "SET_LDT ({VA_LDT:#x}, 2)"
    );
    // SAFETY: the kernel does not use ES for addressing.
    let r = unsafe { probe_load_es(0x0f) };
    check_eq!(
        t,
        r,
        fault(VEC_PF, 0),
        "load ES with LDT entry 1 while the page is mapped RW"
    );
    if let Some(s) = shared_info::get() {
        check_eq!(
            t,
            s.cr2(0),
            VA_LDT + 8,
            "cr2 of that #PF (the descriptor's address)"
        );
    }
    let _ = unmap_window(1);
    // SAFETY: as above.
    unsafe {
        check_eq!(
            t,
            probe_load_es(0x0f),
            Ok(()),
            "load ES with LDT entry 1 once mapped RO only"
        );
        check_eq!(t, read_es(), 0x0f, "ES afterwards");
        check_eq!(
            t,
            probe_load_es(0x17),
            fault(VEC_GP, 0x14),
            "load ES beyond the LDT limit"
        );
    }
    check_eq!(
        t,
        read_entry(ldt.mfn, 1),
        DATA_DPL3 | ACCESSED,
        "LDT entry 1 once loaded (DPL raised by Xen, accessed set by the CPU)"
    );
    check_eq!(
        t,
        map_window(1, ldt.mfn, true).map(|_| ()),
        Err(Errno::EBUSY),
        "RW mapping of the LDT page in use"
    );
    // SAFETY: as above.
    let _ = unsafe { probe_load_es(0) };
    check_eq!(
        t,
        mm::mmuext(MMUEXT_SET_LDT, 0, 0),
        Ok(()),
        "SET_LDT (0, 0)"
    );
    check_eq!(
        t,
        map_window(1, ldt.mfn, true).map(|_| ()),
        Ok(()),
        "RW mapping of the LDT page after SET_LDT (0, 0)"
    );
    let _ = unmap_window(1);
    // SAFETY: the page is only mapped read-only at VA_LDT.
    let _ = unsafe { hypercall::update_va_mapping(VA_LDT, 0, UVMF_INVLPG) };
}
