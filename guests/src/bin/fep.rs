//! Test kernel `fep`: Xen's forced-emulation prefix (`ud2; .ascii "xen"; cpuid`) and its CPUID leaves.
//!
//! Command line: none needed (ignored). A PV kernel's plain CPUID runs on the
//! hardware (no CPUID faulting here), so Xen's view of CPUID is reached by the
//! 7-byte forced-emulation sequence: #UD at the prefix, which Xen
//! (pv/emul-inv-op.c) recognises, emulates the CPUID against the domain's
//! policy and skips. Checked:
//!
//! * leaf 0x40000000: eax = 0x40000005 (last leaf), ebx/ecx/edx =
//!   "XenVMMXenVMM"; the subleaf is ignored;
//! * leaf 0x40000001: eax = XENVER_version (major << 16 | minor), the rest 0;
//! * leaf 0x40000002: eax = 1 hypercall page, ebx = 0x40000000 (its MSR),
//!   ecx = 1 (XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD), edx = 0; WRMSR of
//!   that MSR with a page's machine address makes Xen write a hypercall page
//!   there, byte for byte the one the builder filled; a non-zero page index
//!   (low 12 bits) gives #GP(0); RDMSR of it reads 0;
//! * leaves 0x40000006 and 0x40000100 (past the last) read all zeros;
//! * leaf 1 has the hypervisor bit (ecx bit 31); leaf 0 has the hardware's
//!   vendor string;
//! * only EAX-EDX change and RIP moves exactly past the CPUID (an `int3`
//!   right after it reports RIP and every register); it works from user mode
//!   too;
//! * the prefix before anything but CPUID, a damaged prefix and a plain
//!   `ud2` each give #UD at the `ud2`, with no error code.
#![no_std]
#![no_main]

use core::arch::global_asm;

use xen_abi::cpuid::{signature, XEN_CPUID_FIRST_LEAF};
use xen_abi::trap::TI_MASK_EVENTS;
use xen_abi::version::XENVER_VERSION;
use xenolith_guests::insn::{self, Cpuid};
use xenolith_guests::rawtrap::{self, reg, RawTrap};
use xenolith_guests::traps::Fault;
use xenolith_guests::{
    boot, check, check_eq, hypercall, println, shared_info, test_main, traps, Boot, Failures,
    Verdict,
};

test_main!(fep);

const BP: u64 = 3;
const UD: u64 = 6;
const GP: u8 = 13;

/// Register patterns around the emulated CPUID (index as `RawTrap::regs`).
const PATTERN: [u64; 16] = [
    0, // rax: the leaf
    0, // rbx: result
    0, // rcx: the subleaf
    0, // rdx: result
    0x0404_0000_0000_0004,
    0x0505_0000_0000_0005,
    0x0606_0000_0000_0006,
    0,
    0x0808_0000_0000_0008,
    0x0909_0000_0000_0009,
    0x1010_0000_0000_0010,
    0x1111_0000_0000_0011,
    0,
    0x1313_0000_0000_0013,
    0x1414_0000_0000_0014,
    0x1515_0000_0000_0015,
];

global_asm!(
    ".pushsection .text.fep, \"ax\", @progbits",
    ".macro fep_setup",
    "mov r12, rsp",
    "mov rsi, {rsi}",
    "mov rdi, {rdi}",
    "mov rbp, {rbp}",
    "mov r8, {r8}",
    "mov r9, {r9}",
    "mov r10, {r10}",
    "mov r11, {r11}",
    "mov r13, {r13}",
    "mov r14, {r14}",
    "mov r15, {r15}",
    ".endm",
    // fep_cpuid_int3(leaf, subleaf): FEP CPUID, then int3 to report.
    "fep_cpuid_int3:",
    "mov eax, edi",
    "mov ecx, esi",
    "mov rbx, 0xbbbb",
    "mov rdx, 0xdddd",
    "fep_setup",
    "ud2",
    ".ascii \"xen\"",
    "cpuid",
    "int3",
    "fep_cpuid_after: ud2",
    // The same in user mode, leaf 0x40000000.
    "fep_user:",
    "mov eax, 0x40000000",
    "xor ecx, ecx",
    "fep_setup",
    "ud2",
    ".ascii \"xen\"",
    "cpuid",
    "int3",
    "fep_user_after: ud2",
    "fep_nop:",
    "mov r12, rsp",
    "fep_nop_at: ud2",
    ".ascii \"xen\"",
    "nop",
    "ud2",
    "fep_bad:",
    "mov r12, rsp",
    "fep_bad_at: ud2",
    ".ascii \"xeN\"",
    "cpuid",
    "ud2",
    "fep_plain:",
    "mov r12, rsp",
    "fep_plain_at: ud2",
    "ud2",
    ".popsection",
    rsi = const PATTERN[reg::RSI],
    rdi = const PATTERN[reg::RDI],
    rbp = const PATTERN[reg::RBP],
    r8 = const PATTERN[reg::R8],
    r9 = const PATTERN[reg::R9],
    r10 = const PATTERN[reg::R10],
    r11 = const PATTERN[reg::R11],
    r13 = const PATTERN[reg::R13],
    r14 = const PATTERN[reg::R14],
    r15 = const PATTERN[reg::R15],
);

extern "C" {
    fn fep_cpuid_int3(leaf: u64, subleaf: u64, a2: u64) -> u64;
    fn fep_nop(a0: u64, a1: u64, a2: u64) -> u64;
    fn fep_bad(a0: u64, a1: u64, a2: u64) -> u64;
    fn fep_plain(a0: u64, a1: u64, a2: u64) -> u64;
    static fep_cpuid_after: u8;
    static fep_user: u8;
    static fep_user_after: u8;
    static fep_nop_at: u8;
    static fep_bad_at: u8;
    static fep_plain_at: u8;
}

/// Address of a label.
fn a(sym: *const u8) -> u64 {
    sym as u64
}

/// A page for Xen to write a hypercall page into.
#[repr(C, align(4096))]
struct Page([u8; 4096]);
static mut HC_PAGE: Page = Page([0; 4096]);

fn leaf(t: &mut Failures, n: u32, sub: u32) -> Cpuid {
    let r = insn::fep_cpuid(n, sub);
    println!("FEP CPUID {n:#x}/{sub}: {r:x?}");
    check!(t, r.is_ok(), "FEP CPUID {n:#x}: {r:x?}");
    r.unwrap_or_default()
}

fn fep(b: &Boot) -> Verdict {
    let mut t = Failures::new();
    if shared_info::map(b.start_info).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    // SAFETY: XENVER_version takes no argument.
    let version = unsafe { hypercall::xen_version(XENVER_VERSION, 0) } as u32;
    println!("XENVER_version {version:#x}");

    let [sb, sc, sd] = signature();
    let l0 = leaf(&mut t, XEN_CPUID_FIRST_LEAF, 0);
    check_eq!(
        t,
        l0,
        Cpuid {
            eax: XEN_CPUID_FIRST_LEAF + 5,
            ebx: sb,
            ecx: sc,
            edx: sd
        },
        "leaf 0x40000000 (last leaf 0x40000005, \"XenVMMXenVMM\")"
    );
    check_eq!(
        t,
        leaf(&mut t, XEN_CPUID_FIRST_LEAF, 7),
        l0,
        "leaf 0x40000000 subleaf 7"
    );
    let l1 = leaf(&mut t, XEN_CPUID_FIRST_LEAF + 1, 0);
    check_eq!(
        t,
        l1,
        Cpuid {
            eax: version,
            ..Default::default()
        },
        "leaf 0x40000001 (eax = XENVER_version)"
    );
    let l2 = leaf(&mut t, XEN_CPUID_FIRST_LEAF + 2, 0);
    check_eq!(
        t,
        l2,
        Cpuid {
            eax: 1,
            ebx: 0x4000_0000,
            ecx: 1,
            edx: 0
        },
        "leaf 0x40000002 (1 page, MSR 0x40000000, PRESERVE_AD)"
    );
    for n in [XEN_CPUID_FIRST_LEAF + 6, XEN_CPUID_FIRST_LEAF + 0x100] {
        check_eq!(
            t,
            leaf(&mut t, n, 0),
            Cpuid::default(),
            "leaf {n:#x} (past the last Xen leaf)"
        );
    }
    for n in [3, 4, 5] {
        leaf(&mut t, XEN_CPUID_FIRST_LEAF + n, 0);
    }
    let basic1 = leaf(&mut t, 1, 0);
    check!(
        t,
        basic1.ecx & 1 << 31 != 0,
        "leaf 1 ecx {:#x} lacks the hypervisor bit",
        basic1.ecx
    );
    let basic0 = leaf(&mut t, 0, 0);
    let hw0 = insn::cpuid(0, 0).unwrap_or_default();
    check_eq!(
        t,
        (basic0.ebx, basic0.edx, basic0.ecx),
        (hw0.ebx, hw0.edx, hw0.ecx),
        "leaf 0 vendor (the hardware's)"
    );

    hypercall_page_msr(&mut t, b, l2.ebx);
    raw_cases(&mut t);
    check_eq!(t, traps::install(), Ok(0), "restoring the trap table");
    t.verdict()
}

/// WRMSR of the hypercall-page MSR: Xen writes a hypercall page.
fn hypercall_page_msr(t: &mut Failures, b: &Boot, msr: u32) {
    let va = (&raw const HC_PAGE) as u64;
    let pfn = (va - boot::virt_base()) >> 12;
    // SAFETY: mfn_list holds nr_pages entries; the page is in the image.
    let mfn = unsafe {
        (b.start_info.mfn_list as *const u64)
            .add(pfn as usize)
            .read()
    };
    check_eq!(t, insn::rdmsr(msr), Ok(0), "RDMSR {msr:#x}");
    // SAFETY: Xen writes stubs into HC_PAGE, which nothing else uses.
    let r = unsafe { insn::wrmsr(msr, mfn << 12) };
    check_eq!(
        t,
        r,
        Ok(()),
        "WRMSR {msr:#x} (page at machine address {:#x})",
        mfn << 12
    );
    let page = boot::hypercall_page();
    let mut differ = 0;
    for i in 0..4096u64 {
        // SAFETY: both pages are mapped for the domain's life; volatile
        // because Xen wrote HC_PAGE behind the compiler's back.
        let (x, y) = unsafe {
            (
                ((va + i) as *const u8).read_volatile(),
                ((page + i) as *const u8).read_volatile(),
            )
        };
        differ += u32::from(x != y);
    }
    check_eq!(
        t,
        differ,
        0,
        "bytes where Xen's page differs from the builder's hypercall page"
    );
    let gp = Err(Fault {
        vector: GP,
        error_code: 0,
    });
    // SAFETY: refused by Xen; if not, it writes HC_PAGE again.
    let r = unsafe { insn::wrmsr(msr, mfn << 12 | 1) };
    check_eq!(t, r, gp, "WRMSR {msr:#x} with page index 1");
}

/// Exact checks through raw stubs: registers, RIP, #UD cases.
fn raw_cases(t: &mut Failures) {
    check_eq!(
        t,
        rawtrap::install(&[(BP as u8, 3 | TI_MASK_EVENTS), (UD as u8, TI_MASK_EVENTS)]),
        Ok(0),
        "set_trap_table(#BP, #UD)"
    );
    // SAFETY: the routine runs FEP CPUID and int3.
    let r = unsafe { rawtrap::call(fep_cpuid_int3, [u64::from(XEN_CPUID_FIRST_LEAF), 0, 0]) };
    let after = a(&raw const fep_cpuid_after);
    match r.trapped() {
        Some(tr) if tr.tag == BP => {
            check_eq!(
                t,
                tr.frame(false).rip,
                after,
                "RIP after FEP CPUID + int3 (7 bytes skipped)"
            );
            check_regs(t, &tr, "kernel mode");
        }
        other => t.fail(format_args!(
            "FEP CPUID + int3: expected #BP, got {other:x?}"
        )),
    }
    match rawtrap::setup_user_mode() {
        Ok(_) => {
            // SAFETY: user mode is set up; the routine ends in int3.
            let tr = unsafe {
                rawtrap::call_user(a(&raw const fep_user), rawtrap::user_stack_top(), 0x2)
            };
            let after = a(&raw const fep_user_after);
            if check_eq!(t, tr.tag, BP, "FEP CPUID in user mode: int3 reached") {
                check_eq!(t, tr.frame(false).rip, after, "user RIP after FEP CPUID");
                check_eq!(t, tr.frame(false).cs & 3, 3, "FEP CPUID ran in user mode");
                check_regs(t, &tr, "user mode");
            }
        }
        Err(e) => t.fail(format_args!("user-mode set-up failed: {e:?}")),
    }
    let (nop_at, bad_at, plain_at) = (
        a(&raw const fep_nop_at),
        a(&raw const fep_bad_at),
        a(&raw const fep_plain_at),
    );
    let cases: [(&str, unsafe extern "C" fn(u64, u64, u64) -> u64, u64); 3] = [
        ("FEP prefix before NOP", fep_nop, nop_at),
        ("damaged prefix ud2; \"xeN\"; cpuid", fep_bad, bad_at),
        ("plain ud2", fep_plain, plain_at),
    ];
    for (what, routine, at) in cases {
        // SAFETY: the routine raises #UD.
        let r = unsafe { rawtrap::call(routine, [0; 3]) };
        let Some(tr) = r.trapped() else {
            t.fail(format_args!("{what}: no exception"));
            continue;
        };
        println!("{what}: vector {} frame {:x?}", tr.tag, &tr.stack[..7]);
        if check_eq!(t, tr.tag, UD, "{what}: #UD") {
            check_eq!(t, tr.frame(false).rip, at, "{what}: RIP at the ud2");
            check_eq!(
                t,
                tr.rsp,
                RawTrap::expected_rsp(tr.regs[reg::R12], false),
                "{what}: handler RSP (no error code)"
            );
        }
    }
}

/// After FEP CPUID of leaf 0x40000000: the leaf's values in EAX-EDX, every
/// other register as loaded.
fn check_regs(t: &mut Failures, tr: &RawTrap, mode: &str) {
    let [sb, sc, sd] = signature();
    let expect_abcd = [
        u64::from(XEN_CPUID_FIRST_LEAF + 5),
        u64::from(sb),
        u64::from(sc),
        u64::from(sd),
    ];
    check_eq!(
        t,
        [tr.regs[0], tr.regs[1], tr.frame(false).rcx, tr.regs[3]],
        expect_abcd,
        "{mode}: RAX-RDX after FEP CPUID 0x40000000 (RCX from the #BP frame)"
    );
    for (i, &p) in PATTERN.iter().enumerate().skip(4) {
        if i == reg::RSP || i == reg::R12 {
            continue;
        }
        // The bounce to the #BP handler clobbers R11 (and RCX); the frame
        // keeps the values CPUID left.
        let got = if i == reg::R11 {
            tr.frame(false).r11
        } else {
            tr.regs[i]
        };
        check_eq!(t, got, p, "{mode}: GPR {i} after FEP CPUID");
    }
}
