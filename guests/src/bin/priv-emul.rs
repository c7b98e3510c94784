//! Test kernel `priv-emul`: privileged instructions from the PV kernel: what Xen 4.17 emulates, with which values.
//!
//! Command line: none needed (ignored). The kernel runs at CPL 3, so these
//! instructions raise #GP(0) in hardware; Xen (pv/emul-priv-op.c) emulates
//! some and passes #GP(0) on for the rest. Each is run with a fix-up, so a
//! refusal shows as `Err(#GP(0))` (or #UD where the CPU lacks the feature).
//!
//! * MSRs: FS_BASE, GS_BASE and SHADOW_GS_BASE read and write the live bases
//!   (round trips; set_segment_base FS / GS_KERNEL / GS_USER shows up in
//!   them; `fs:`/`gs:` loads use them; non-canonical writes #GP, and
//!   set_segment_base refuses them with -EINVAL); EFER reads 0xd01 (SCE,
//!   LME, LMA, NXE), a write of the same value is accepted, any change #GP;
//!   APIC_BASE reads 0xfee00900 (enabled, BSP), PAT 0x0000050100070406,
//!   both refuse writes; MISC_ENABLE reads the host value with Xen's
//!   adjustments (BTS/PEBS unavailable and xTPR disable set, perf-monitoring
//!   and MONITOR clear), writes are ignored; TSC reads between two RDTSCs,
//!   writes #GP; DEBUGCTL, STAR, LSTAR, TSC_AUX and an unknown MSR #GP.
//! * Control registers: CR0 reads 0x80050033 (PE MP ET NE WP AM PG) plus TS
//!   as fpu_taskswitch/CLTS/MOV CR0 set it; a write changing anything but TS
//!   #GP. CR2 is the virtual CR2 (last #PF address, also written by MOV to
//!   CR2, which updates vcpu_info.arch.cr2). CR3 = MFN of pt_base << 12, and
//!   writing it back is accepted. CR4 reads 0x660 (PAE MCE OSFXSR
//!   OSXMMEXCPT); TSD and DE can be toggled, other bits are silently ignored.
//!   CR8 #GP.
//! * RDTSC works; RDTSCP and XGETBV/XSETBV follow CPUID (#UD on this qemu64
//!   CPU, which lacks both); HLT, SWAPGS, LGDT, LIDT, LTR, LLDT, INVD #GP;
//!   WBINVD is accepted.
//! * Port I/O: #GP without rights; PHYSDEVOP_set_iopl(1) allows it (3 is the
//!   highest level, 4 is -EINVAL); the RTC index port 0x70 is virtual
//!   (reads back what was written) and 0x71 then reads the RTC register
//!   (status D = 0x80); COM1 (0x3f8, Xen's console) and the PIC (0x21,
//!   0xa1) read all ones; 0xcf8 dword is a virtual register. CLI/STI with
//!   I/O rights are accepted but change nothing (not even the event mask),
//!   without them #GP. PHYSDEVOP_set_iobitmap: a port is allowed iff its
//!   bits are clear and port + size <= nr_ports; CLI stays refused;
//!   nr_ports > 65536 is -EINVAL.
#![no_std]
#![no_main]

use core::arch::asm;

use xen_abi::layout::{SEGBASE_FS, SEGBASE_GS_KERNEL, SEGBASE_GS_USER, XEN_PAT_VALUE};
use xen_abi::Errno;
use xenolith_guests::insn::{self, DescPtr};
use xenolith_guests::traps::{probe_read_u64, Fault};
use xenolith_guests::{
    boot, check, check_eq, cpu, println, shared_info, test_main, Boot, Failures, Verdict,
};

test_main!(priv_emul);

const GP0: Fault = Fault {
    vector: 13,
    error_code: 0,
};
const UD: Fault = Fault {
    vector: 6,
    error_code: 0,
};

const MSR_TSC: u32 = 0x10;
const MSR_APIC_BASE: u32 = 0x1b;
const MSR_MISC_ENABLE: u32 = 0x1a0;
const MSR_DEBUGCTL: u32 = 0x1d9;
const MSR_PAT: u32 = 0x277;
const MSR_EFER: u32 = 0xc000_0080;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_SHADOW_GS_BASE: u32 = 0xc000_0102;
const MSR_TSC_AUX: u32 = 0xc000_0103;
const MSR_UNKNOWN: u32 = 0x1234_5678;

const CR0_TS: u64 = 1 << 3;
const CR0_WP: u64 = 1 << 16;
const CR0_CD: u64 = 1 << 30;
const CR4_TSD: u64 = 1 << 2;
const CR4_DE: u64 = 1 << 3;
const CR4_PGE: u64 = 1 << 7;
const CR4_PAE: u64 = 1 << 5;
const CR4_VMXE: u64 = 1 << 13;

fn priv_emul(b: &Boot) -> Verdict {
    let mut t = Failures::new();
    if shared_info::map(b.start_info).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    segment_msrs(&mut t);
    other_msrs(&mut t);
    control_registers(&mut t, b);
    instructions(&mut t);
    port_io(&mut t);
    t.verdict()
}

static FS_WORD: u64 = 0xf5f5_0000_0000_0001;
static GS_WORD: u64 = 0x6565_0000_0000_0002;

fn fs_load() -> u64 {
    let v: u64;
    // SAFETY: FS points at FS_WORD while this runs.
    unsafe { asm!("mov {}, fs:[0]", out(reg) v, options(nostack, readonly)) };
    v
}

fn gs_load() -> u64 {
    let v: u64;
    // SAFETY: GS points at GS_WORD while this runs.
    unsafe { asm!("mov {}, gs:[0]", out(reg) v, options(nostack, readonly)) };
    v
}

fn segment_msrs(t: &mut Failures) {
    println!("-- FS/GS base MSRs");
    for msr in [MSR_FS_BASE, MSR_GS_BASE, MSR_SHADOW_GS_BASE] {
        check_eq!(t, insn::rdmsr(msr), Ok(0), "RDMSR {msr:#x} at boot");
    }
    let fs = (&raw const FS_WORD) as u64;
    let gs = (&raw const GS_WORD) as u64;
    let shadow = 0x0000_7fff_dead_b000;
    // SAFETY: (these writes) nothing in the kernel uses FS or GS.
    unsafe {
        check_eq!(t, insn::wrmsr(MSR_FS_BASE, fs), Ok(()), "WRMSR FS_BASE");
        check_eq!(t, insn::wrmsr(MSR_GS_BASE, gs), Ok(()), "WRMSR GS_BASE");
        check_eq!(
            t,
            insn::wrmsr(MSR_SHADOW_GS_BASE, shadow),
            Ok(()),
            "WRMSR SHADOW_GS_BASE"
        );
    }
    check_eq!(
        t,
        insn::rdmsr(MSR_FS_BASE),
        Ok(fs),
        "RDMSR FS_BASE after WRMSR"
    );
    check_eq!(
        t,
        insn::rdmsr(MSR_GS_BASE),
        Ok(gs),
        "RDMSR GS_BASE after WRMSR"
    );
    check_eq!(
        t,
        insn::rdmsr(MSR_SHADOW_GS_BASE),
        Ok(shadow),
        "RDMSR SHADOW_GS_BASE after WRMSR"
    );
    check_eq!(t, fs_load(), FS_WORD, "fs:[0] with FS_BASE set by WRMSR");
    check_eq!(t, gs_load(), GS_WORD, "gs:[0] with GS_BASE set by WRMSR");
    for msr in [MSR_FS_BASE, MSR_GS_BASE, MSR_SHADOW_GS_BASE] {
        // SAFETY: refused; if not, the base is reset below.
        let r = unsafe { insn::wrmsr(msr, 0x8000_0000_0000_0000) };
        check_eq!(t, r, Err(GP0), "WRMSR {msr:#x} non-canonical");
    }
    check_eq!(
        t,
        insn::rdmsr(MSR_FS_BASE),
        Ok(fs),
        "FS_BASE after the refused write"
    );

    // set_segment_base shows in the MSRs (GS_USER = the shadow base).
    let cases = [
        (SEGBASE_FS, MSR_FS_BASE, 0x1111_0000),
        (SEGBASE_GS_USER, MSR_SHADOW_GS_BASE, 0x2222_0000),
        (SEGBASE_GS_KERNEL, MSR_GS_BASE, 0x3333_0000),
    ];
    for (which, msr, base) in cases {
        // SAFETY: nothing in the kernel uses FS or GS.
        let r = unsafe { cpu::set_segment_base(which, base) };
        check_eq!(t, r, Ok(0), "set_segment_base({which}, {base:#x})");
        check_eq!(
            t,
            insn::rdmsr(msr),
            Ok(base),
            "RDMSR {msr:#x} after set_segment_base({which})"
        );
    }
    check_eq!(
        t,
        insn::rdmsr(MSR_GS_BASE),
        Ok(0x3333_0000),
        "GS_BASE unchanged by set_segment_base(GS_USER)"
    );
    // SAFETY: refused.
    let r = unsafe { cpu::set_segment_base(SEGBASE_FS, 0x8000_0000_0000_0000) };
    check_eq!(
        t,
        r,
        Err(Errno::EINVAL),
        "set_segment_base(FS, non-canonical)"
    );
    // SAFETY: refused.
    let r = unsafe { cpu::set_segment_base(9, 0) };
    check_eq!(t, r, Err(Errno::EINVAL), "set_segment_base(9, 0)");
    for which in [SEGBASE_FS, SEGBASE_GS_USER, SEGBASE_GS_KERNEL] {
        // SAFETY: back to the boot state.
        let r = unsafe { cpu::set_segment_base(which, 0) };
        check_eq!(t, r, Ok(0), "set_segment_base({which}, 0)");
    }
    // SWAPGS is not emulated.
    // SAFETY: refused; if it ran, both bases are 0 anyway.
    check_eq!(t, unsafe { insn::swapgs() }, Err(GP0), "SWAPGS");
}

fn other_msrs(t: &mut Failures) {
    println!("-- other MSRs");
    let efer = insn::rdmsr(MSR_EFER);
    check_eq!(t, efer, Ok(0xd01), "RDMSR EFER (SCE LME LMA NXE)");
    let efer = efer.unwrap_or(0xd01);
    // SAFETY: the same value; changes are refused.
    unsafe {
        check_eq!(
            t,
            insn::wrmsr(MSR_EFER, efer),
            Ok(()),
            "WRMSR EFER unchanged"
        );
        check_eq!(
            t,
            insn::wrmsr(MSR_EFER, efer & !0x800),
            Err(GP0),
            "WRMSR EFER without NXE"
        );
        check_eq!(
            t,
            insn::wrmsr(MSR_EFER, efer & !1),
            Err(GP0),
            "WRMSR EFER without SCE"
        );
    }
    check_eq!(
        t,
        insn::rdmsr(MSR_EFER),
        Ok(efer),
        "EFER after the refused writes"
    );

    check_eq!(
        t,
        insn::rdmsr(MSR_APIC_BASE),
        Ok(0xfee0_0900),
        "RDMSR APIC_BASE"
    );
    check_eq!(t, insn::rdmsr(MSR_PAT), Ok(XEN_PAT_VALUE), "RDMSR PAT");
    // SAFETY: both refused, and would write the values just read.
    unsafe {
        check_eq!(
            t,
            insn::wrmsr(MSR_APIC_BASE, 0xfee0_0900),
            Err(GP0),
            "WRMSR APIC_BASE"
        );
        check_eq!(
            t,
            insn::wrmsr(MSR_PAT, XEN_PAT_VALUE),
            Err(GP0),
            "WRMSR PAT (same value)"
        );
    }

    let misc = insn::rdmsr(MSR_MISC_ENABLE);
    println!("MISC_ENABLE {misc:x?}");
    match misc {
        Ok(v) => {
            // Set by Xen: BTS unavailable (11), PEBS unavailable (12), xTPR
            // disable (23); cleared: perf monitoring (7), MONITOR (18).
            check_eq!(
                t,
                v & (1 << 11 | 1 << 12 | 1 << 23),
                1 << 11 | 1 << 12 | 1 << 23,
                "MISC_ENABLE bits Xen sets"
            );
            check_eq!(t, v & (1 << 7 | 1 << 18), 0, "MISC_ENABLE bits Xen clears");
            // SAFETY: Xen drops MISC_ENABLE writes.
            unsafe {
                check_eq!(
                    t,
                    insn::wrmsr(MSR_MISC_ENABLE, v),
                    Ok(()),
                    "WRMSR MISC_ENABLE unchanged"
                );
                check_eq!(
                    t,
                    insn::wrmsr(MSR_MISC_ENABLE, v ^ 1),
                    Ok(()),
                    "WRMSR MISC_ENABLE changed (ignored)"
                );
            }
            check_eq!(
                t,
                insn::rdmsr(MSR_MISC_ENABLE),
                Ok(v),
                "MISC_ENABLE after the writes"
            );
        }
        Err(f) => t.fail(format_args!("RDMSR MISC_ENABLE: {f:?}")),
    }

    let before = insn::rdtsc().unwrap_or(0);
    let tsc = insn::rdmsr(MSR_TSC);
    let after = insn::rdtsc().unwrap_or(0);
    check!(
        t,
        matches!(tsc, Ok(v) if before <= v && v <= after),
        "RDMSR TSC {tsc:x?} not between RDTSC {before:#x} and {after:#x}"
    );
    // SAFETY: refused.
    let r = unsafe { insn::wrmsr(MSR_TSC, after) };
    check_eq!(t, r, Err(GP0), "WRMSR TSC");

    for (name, msr) in [
        ("DEBUGCTL", MSR_DEBUGCTL),
        ("STAR", MSR_STAR),
        ("LSTAR", MSR_LSTAR),
        ("TSC_AUX", MSR_TSC_AUX),
        ("unknown 0x12345678", MSR_UNKNOWN),
    ] {
        check_eq!(t, insn::rdmsr(msr), Err(GP0), "RDMSR {name}");
        // SAFETY: refused (0 would be harmless for DEBUGCTL/TSC_AUX; Xen
        // never lets a PV guest write its STAR/LSTAR).
        let r = unsafe { insn::wrmsr(msr, 0) };
        check_eq!(t, r, Err(GP0), "WRMSR {name}");
    }
}

fn control_registers(t: &mut Failures, b: &Boot) {
    println!("-- control registers");
    let cr0 = insn::read_cr0();
    check_eq!(t, cr0, Ok(0x8005_0033), "CR0 (PE MP ET NE WP AM PG)");
    let cr0 = cr0.unwrap_or(0x8005_0033);
    // SAFETY: (CR0 writes) only TS changes; the kernel does not use the FPU
    // while TS is set (Rust code may use SSE, so TS is cleared at once).
    unsafe {
        check_eq!(t, insn::write_cr0(cr0), Ok(()), "MOV CR0 (same value)");
        check_eq!(t, insn::write_cr0(cr0 | CR0_TS), Ok(()), "MOV CR0 with TS");
        let with_ts = insn::read_cr0();
        check_eq!(t, insn::write_cr0(cr0), Ok(()), "MOV CR0 without TS");
        check_eq!(t, with_ts, Ok(cr0 | CR0_TS), "CR0 after MOV CR0 with TS");
        check_eq!(t, insn::read_cr0(), Ok(cr0), "CR0 after MOV CR0 without TS");
        check_eq!(
            t,
            insn::write_cr0(cr0 & !CR0_WP),
            Err(GP0),
            "MOV CR0 without WP"
        );
        check_eq!(
            t,
            insn::write_cr0(cr0 | CR0_CD),
            Err(GP0),
            "MOV CR0 with CD"
        );
        let ts = cpu::fpu_taskswitch(1);
        let with_ts = insn::read_cr0();
        let clts = insn::clts();
        check_eq!(t, ts, Ok(0), "fpu_taskswitch(1)");
        check_eq!(t, with_ts, Ok(cr0 | CR0_TS), "CR0 after fpu_taskswitch(1)");
        check_eq!(t, clts, Ok(()), "CLTS");
        check_eq!(t, insn::read_cr0(), Ok(cr0), "CR0 after CLTS");
    }

    // CR2: the address of the last #PF delivered, and writable.
    let s = shared_info::get().expect("mapped above");
    let _ = probe_read_u64(0x1230);
    check_eq!(t, insn::read_cr2(), Ok(0x1230), "CR2 after a #PF at 0x1230");
    // SAFETY: CR2 is only a record of the last fault address.
    let r = unsafe { insn::write_cr2(0xabc0) };
    check_eq!(t, r, Ok(()), "MOV CR2");
    check_eq!(t, insn::read_cr2(), Ok(0xabc0), "CR2 after MOV CR2");
    check_eq!(t, s.cr2(0), 0xabc0, "vcpu_info.arch.cr2 after MOV CR2");

    // CR3: the L4's MFN, shifted.
    let si = b.start_info;
    let pfn = (si.pt_base - boot::virt_base()) >> 12;
    // SAFETY: mfn_list holds nr_pages entries; pt_base is in the region.
    let mfn = unsafe { (si.mfn_list as *const u64).add(pfn as usize).read() };
    let cr3 = insn::read_cr3();
    check_eq!(t, cr3, Ok(mfn << 12), "CR3 (MFN of pt_base << 12)");
    // SAFETY: the running root, reloaded.
    let r = unsafe { insn::write_cr3(mfn << 12) };
    check_eq!(t, r, Ok(()), "MOV CR3 (same root)");
    check_eq!(t, insn::read_cr3(), Ok(mfn << 12), "CR3 after MOV CR3");

    // CR4.
    let cr4 = insn::read_cr4();
    check_eq!(t, cr4, Ok(0x660), "CR4 (PAE MCE OSFXSR OSXMMEXCPT)");
    let cr4 = cr4.unwrap_or(0x660);
    // SAFETY: (CR4 writes) TSD only makes RDTSC trap to Xen, DE only changes
    // debug-register semantics; the rest is ignored by Xen.
    unsafe {
        check_eq!(t, insn::write_cr4(cr4), Ok(()), "MOV CR4 (same value)");
        check_eq!(
            t,
            insn::write_cr4(cr4 | CR4_TSD),
            Ok(()),
            "MOV CR4 with TSD"
        );
        check_eq!(t, insn::read_cr4(), Ok(cr4 | CR4_TSD), "CR4 with TSD");
        let a = insn::rdtsc();
        let b = insn::rdtsc();
        check!(
            t,
            matches!((a, b), (Ok(x), Ok(y)) if x <= y),
            "RDTSC with CR4.TSD (emulated for the kernel): {a:x?} then {b:x?}"
        );
        check_eq!(t, insn::write_cr4(cr4 | CR4_DE), Ok(()), "MOV CR4 with DE");
        check_eq!(t, insn::read_cr4(), Ok(cr4 | CR4_DE), "CR4 with DE");
        for (name, v) in [
            ("with VMXE", cr4 | CR4_VMXE),
            ("with PGE", cr4 | CR4_PGE),
            ("without PAE", cr4 & !CR4_PAE),
        ] {
            check_eq!(t, insn::write_cr4(v), Ok(()), "MOV CR4 {name} (accepted)");
            check_eq!(
                t,
                insn::read_cr4(),
                Ok(cr4),
                "CR4 after MOV CR4 {name} (ignored)"
            );
        }
        check_eq!(t, insn::write_cr4(cr4), Ok(()), "MOV CR4 back");
    }
    check_eq!(t, insn::read_cr8(), Err(GP0), "MOV from CR8");
}

fn instructions(t: &mut Failures) {
    println!("-- other instructions");
    let a = insn::rdtsc();
    let b = insn::rdtsc();
    check!(
        t,
        matches!((a, b), (Ok(x), Ok(y)) if x < y),
        "RDTSC does not fault and advances: {a:x?} then {b:x?}"
    );
    let ext1 = insn::fep_cpuid(0x8000_0001, 0).unwrap_or_default();
    let rdtscp = insn::rdtscp();
    if ext1.edx & 1 << 27 != 0 {
        check!(t, rdtscp.is_ok(), "RDTSCP (CPUID has it): {rdtscp:x?}");
    } else {
        check_eq!(t, rdtscp.map(|_| ()), Err(UD), "RDTSCP (CPUID lacks it)");
    }
    let l1 = insn::fep_cpuid(1, 0).unwrap_or_default();
    let xcr0 = insn::xgetbv(0);
    if l1.ecx & 1 << 27 != 0 {
        // OSXSAVE: XSETBV of the current XCR0 is accepted.
        check!(t, xcr0.is_ok(), "XGETBV(0) with OSXSAVE: {xcr0:x?}");
        // SAFETY: writes back the value just read.
        let r = unsafe { insn::xsetbv(0, xcr0.unwrap_or(3)) };
        check_eq!(t, r, Ok(()), "XSETBV(0) of the current XCR0");
    } else {
        println!("no OSXSAVE in CPUID 1 ecx {:#x}", l1.ecx);
        check_eq!(t, xcr0, Err(UD), "XGETBV without OSXSAVE");
        // SAFETY: refused.
        let r = unsafe { insn::xsetbv(0, 3) };
        check_eq!(t, r, Err(UD), "XSETBV without OSXSAVE");
    }
    let zero = DescPtr::default();
    // SAFETY: (all) refused by Xen; none runs.
    unsafe {
        check_eq!(t, insn::hlt(), Err(GP0), "HLT");
        check_eq!(t, insn::lgdt(&zero), Err(GP0), "LGDT");
        check_eq!(t, insn::lidt(&zero), Err(GP0), "LIDT");
        check_eq!(t, insn::ltr(0), Err(GP0), "LTR");
        check_eq!(t, insn::lldt(0), Err(GP0), "LLDT");
        check_eq!(t, insn::invd(), Err(GP0), "INVD");
        check_eq!(t, insn::wbinvd(), Ok(()), "WBINVD (emulated)");
    }
}

fn port_io(t: &mut Failures) {
    println!("-- port I/O");
    for port in [0x80u16, 0x70, 0x71, 0x3f8] {
        check_eq!(
            t,
            insn::inb(port).map(|_| ()),
            Err(GP0),
            "IN {port:#x} without I/O rights"
        );
    }
    // SAFETY: refused.
    let r = unsafe { insn::outb(0x80, 0) };
    check_eq!(t, r, Err(GP0), "OUT 0x80 without I/O rights");
    // SAFETY: refused (the event mask stays as it is either way).
    let r = unsafe { insn::cli() };
    check_eq!(t, r, Err(GP0), "CLI without I/O rights");
    // SAFETY: as above.
    let r = unsafe { insn::sti() };
    check_eq!(t, r, Err(GP0), "STI without I/O rights");

    check_eq!(
        t,
        cpu::set_iopl(4),
        Err(Errno::EINVAL),
        "PHYSDEVOP_set_iopl(4)"
    );
    check_eq!(t, cpu::set_iopl(1), Ok(0), "PHYSDEVOP_set_iopl(1)");
    let p80 = insn::inb(0x80);
    println!("IN 0x80 with IOPL 1: {p80:x?}");
    check!(t, p80.is_ok(), "IN 0x80 with IOPL 1: {p80:x?}");
    // SAFETY: 0x70 is Xen's virtual RTC index (and selects status D, which
    // reading does not disturb); 0xcf8 dword is Xen's virtual PCI address.
    unsafe {
        check_eq!(
            t,
            insn::outb(0x70, 0x0d),
            Ok(()),
            "OUT 0x70 (RTC index 0x0d)"
        );
        check_eq!(t, insn::inb(0x70), Ok(0x0d), "IN 0x70 (virtual RTC index)");
        check_eq!(
            t,
            insn::inb(0x71),
            Ok(0x80),
            "IN 0x71 (RTC status D: valid RAM/time)"
        );
        check_eq!(
            t,
            insn::outb(0x70, 0x0a),
            Ok(()),
            "OUT 0x70 (RTC index 0x0a)"
        );
        check_eq!(t, insn::inb(0x70), Ok(0x0a), "IN 0x70 after selecting 0x0a");
        check_eq!(
            t,
            insn::inl(0xcf8),
            Ok(0),
            "IN dword 0xcf8 (virtual, initially 0)"
        );
        check_eq!(t, insn::outl(0xcf8, 0x8000_0000), Ok(()), "OUT dword 0xcf8");
        check_eq!(
            t,
            insn::inl(0xcf8),
            Ok(0x8000_0000),
            "IN dword 0xcf8 after the write"
        );
        check_eq!(t, insn::outl(0xcf8, 0), Ok(()), "OUT dword 0xcf8 back to 0");
    }
    check_eq!(t, insn::inb(0x3f8), Ok(0xff), "IN byte 0x3f8 (Xen's COM1)");
    check_eq!(t, insn::inw(0x3f8), Ok(0xffff), "IN word 0x3f8");
    check_eq!(t, insn::inl(0x3f8), Ok(0xffff_ffff), "IN dword 0x3f8");
    check_eq!(t, insn::inb(0x21), Ok(0xff), "IN 0x21 (master PIC, Xen's)");
    check_eq!(t, insn::inb(0xa1), Ok(0xff), "IN 0xa1 (slave PIC, Xen's)");
    // CLI/STI with I/O rights: accepted, and the event mask does not move.
    for mask in [0u8, 1] {
        // SAFETY: no event channel is bound, so unmasking starts no upcall.
        unsafe { cpu::set_upcall_mask(mask) };
        // SAFETY: emulated as a no-op.
        let r = unsafe { insn::cli() };
        let after_cli = cpu::upcall_mask();
        // SAFETY: as above.
        let r2 = unsafe { insn::sti() };
        let after_sti = cpu::upcall_mask();
        // SAFETY: masking is always safe.
        unsafe { cpu::set_upcall_mask(1) };
        check_eq!(t, r, Ok(()), "CLI with IOPL 1 (mask {mask})");
        check_eq!(t, after_cli, mask, "event mask after CLI (was {mask})");
        check_eq!(t, r2, Ok(()), "STI with IOPL 1 (mask {mask})");
        check_eq!(t, after_sti, mask, "event mask after STI (was {mask})");
    }
    check_eq!(t, cpu::set_iopl(3), Ok(0), "PHYSDEVOP_set_iopl(3)");
    check!(t, insn::inb(0x80).is_ok(), "IN 0x80 with IOPL 3");
    check_eq!(t, cpu::set_iopl(0), Ok(0), "PHYSDEVOP_set_iopl(0)");
    check_eq!(
        t,
        insn::inb(0x80).map(|_| ()),
        Err(GP0),
        "IN 0x80 after set_iopl(0)"
    );

    iobitmap(t);
}

/// The I/O bitmap: one bit per port, 0 = allowed; nr_ports bounds it.
#[repr(C, align(8))]
struct IoBitmap([u8; 8192]);
static mut IOBMP: IoBitmap = IoBitmap([0xff; 8192]);

fn iobitmap(t: &mut Failures) {
    let bm = (&raw mut IOBMP) as *mut u8;
    // SAFETY: the static is only touched here, before it is registered.
    unsafe {
        *bm.add(0x80 / 8) &= !(1 << (0x80 % 8));
        *bm.add(0x70 / 8) &= !(1 << (0x70 % 8));
    }
    // SAFETY: the bitmap stays mapped and unchanged while registered.
    let r = unsafe { cpu::set_iobitmap(bm as u64, 0x400) };
    check_eq!(t, r, Ok(0), "PHYSDEVOP_set_iobitmap(0x400 ports)");
    check!(t, insn::inb(0x80).is_ok(), "IN 0x80 allowed by the bitmap");
    check_eq!(
        t,
        insn::inb(0x81).map(|_| ()),
        Err(GP0),
        "IN 0x81 (bit set)"
    );
    check_eq!(
        t,
        insn::inw(0x80).map(|_| ()),
        Err(GP0),
        "IN word 0x80 (0x81's bit set)"
    );
    // SAFETY: 0x70 is Xen's virtual RTC index.
    let r = unsafe { insn::outb(0x70, 0x0d) };
    check_eq!(t, r, Ok(()), "OUT 0x70 allowed by the bitmap");
    check_eq!(
        t,
        insn::inb(0x71).map(|_| ()),
        Err(GP0),
        "IN 0x71 (bit set)"
    );
    // SAFETY: refused.
    let r = unsafe { insn::cli() };
    check_eq!(t, r, Err(GP0), "CLI with only a bitmap");
    for (n, ok) in [(0x80u32, false), (0x81, true)] {
        // SAFETY: as above.
        let r = unsafe { cpu::set_iobitmap(bm as u64, n) };
        check_eq!(t, r, Ok(0), "PHYSDEVOP_set_iobitmap({n:#x} ports)");
        check_eq!(
            t,
            insn::inb(0x80).is_ok(),
            ok,
            "IN 0x80 allowed with nr_ports {n:#x} (port + 1 <= nr_ports)"
        );
    }
    // SAFETY: refused.
    let r = unsafe { cpu::set_iobitmap(bm as u64, 0x1_0001) };
    check_eq!(
        t,
        r,
        Err(Errno::EINVAL),
        "PHYSDEVOP_set_iobitmap(65537 ports)"
    );
    // SAFETY: disables the bitmap.
    let r = unsafe { cpu::set_iobitmap(0, 0) };
    check_eq!(t, r, Ok(0), "PHYSDEVOP_set_iobitmap(NULL, 0)");
    check_eq!(
        t,
        insn::inb(0x80).map(|_| ()),
        Err(GP0),
        "IN 0x80 without a bitmap"
    );
}
