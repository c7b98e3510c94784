//! Test kernel `fpu-ts`: virtual CR0.TS: one #NM per set, cleared by Xen on delivery, FPU/SSE state kept.
//!
//! Command line: none needed (ignored). `fpu_taskswitch(1)` (or MOV to CR0
//! with TS) sets the guest's virtual CR0.TS; the next x87 or SSE instruction
//! raises #NM, which Xen delivers (no error code, RIP at the instruction)
//! after clearing TS, so the handler's HYPERVISOR_iret re-runs the
//! instruction, which then completes. Checked with a counting #NM handler:
//! exactly one #NM per set, the x87 stack and XMM registers loaded before TS
//! was set still hold their values afterwards (the results are right),
//! `fpu_taskswitch(0)` and CLTS clear TS without any #NM, and CR0.TS reads
//! as set / clear at each step. The handler also records the #NM frame,
//! checked word by word for one FLD1.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

use xen_abi::hypercall::{FPU_TASKSWITCH, HYPERCALL_STUB_SIZE, IRET};
use xen_abi::layout::FLAT_KERNEL_CS;
use xen_abi::trap::{TrapInfo, TI_MASK_EVENTS};
use xenolith_guests::rawtrap::RawTrap;
use xenolith_guests::{
    check, check_eq, hypercall, insn, println, test_main, traps, Boot, Failures, Verdict,
};

test_main!(fpu_ts);

const NM: u8 = 7;
const CR0_TS: u64 = 1 << 3;

/// #NM deliveries counted by `fts_nm_handler`.
static mut NM_COUNT: u64 = 0;
/// RSP at the last #NM handler entry.
static mut NM_RSP: u64 = 0;
/// The last #NM frame: rcx, r11, rip, cs, rflags, rsp, ss.
static mut NM_FRAME: [u64; 7] = [0; 7];
/// NM_COUNT at the start of the current case (see the handler's guard).
static mut NM_BASE: u64 = 0;

// The #NM handler: count, then HYPERVISOR_iret to the faulting instruction
// (Xen already cleared TS, so it runs this time). The stub page's iret slot
// restores rcx/r11 from the frame values popped here.
global_asm!(
    ".pushsection .text.fts, \"ax\", @progbits",
    "fts_nm_handler:",
    // Record where the frame is and its 7 words: rcx, r11, rip, cs,
    // rflags, rsp, ss.
    "mov [rip + {last_rsp}], rsp",
    "push rax",
    "mov rax, [rsp + 8]",
    "mov [rip + {frame}], rax",
    "mov rax, [rsp + 16]",
    "mov [rip + {frame} + 8], rax",
    "mov rax, [rsp + 24]",
    "mov [rip + {frame} + 16], rax",
    "mov rax, [rsp + 32]",
    "mov [rip + {frame} + 24], rax",
    "mov rax, [rsp + 40]",
    "mov [rip + {frame} + 32], rax",
    "mov rax, [rsp + 48]",
    "mov [rip + {frame} + 40], rax",
    "mov rax, [rsp + 56]",
    "mov [rip + {frame} + 48], rax",
    "pop rax",
    "pop rcx",
    "pop r11",
    "inc qword ptr [rip + {count}]",
    // A hypervisor that does not clear TS would loop here forever: after
    // 64 #NMs in one case clear it with fpu_taskswitch(0), so the test ends
    // in FAILURE.
    "push rax",
    "mov rax, [rip + {count}]",
    "sub rax, [rip + {base}]",
    "cmp rax, 64",
    "jb 2f",
    "push rdi",
    "push rsi",
    "push rdx",
    "push r10",
    "push r8",
    "push r9",
    "xor edi, edi",
    "call xg_hypercall_page + {fpu_taskswitch}",
    "pop r9",
    "pop r8",
    "pop r10",
    "pop rdx",
    "pop rsi",
    "pop rdi",
    "2:",
    "pop rax",
    "push 0",
    "jmp xg_hypercall_page + {iret}",
    ".popsection",
    count = sym NM_COUNT,
    last_rsp = sym NM_RSP,
    frame = sym NM_FRAME,
    base = sym NM_BASE,
    iret = const IRET as usize * HYPERCALL_STUB_SIZE,
    fpu_taskswitch = const FPU_TASKSWITCH as usize * HYPERCALL_STUB_SIZE,
);

extern "C" {
    static fts_nm_handler: u8;
}

/// The #NM count so far; also starts a new case for the handler's guard.
fn nm_count() -> u64 {
    // SAFETY: written only by the handler, on this vCPU.
    let n = unsafe { (&raw const NM_COUNT).read_volatile() };
    // SAFETY: read only by the handler, on this vCPU.
    unsafe { (&raw mut NM_BASE).write_volatile(n) };
    n
}

/// How TS is set before the FPU instruction.
#[derive(Clone, Copy, Debug)]
enum SetTs {
    /// Not at all.
    No,
    /// `fpu_taskswitch(1)`.
    Hypercall,
    /// `fpu_taskswitch(1)` then `fpu_taskswitch(0)`.
    HypercallThenClear,
    /// `fpu_taskswitch(1)` then CLTS.
    HypercallThenClts,
}

/// Loads st(0) = `x` and, with TS set as asked, doubles it with FADD;
/// returns 2x. All inside one asm block, so no compiler-generated FPU/SSE
/// code runs while TS is set.
fn x87_double(x: f64, how: SetTs) -> f64 {
    let (set, clear, clts) = match how {
        SetTs::No => (0u64, 0u64, 0u64),
        SetTs::Hypercall => (1, 0, 0),
        SetTs::HypercallThenClear => (1, 1, 0),
        SetTs::HypercallThenClts => (1, 0, 1),
    };
    let mut v = x;
    // SAFETY: the block loads and stores `v` only; the hypercalls change
    // CR0.TS only; the #NM they may cause is handled by fts_nm_handler,
    // which returns to the FADD. All clobbered registers are declared.
    unsafe {
        asm!(
            "fld qword ptr [{v}]",
            "test {set}, {set}",
            "jz 2f",
            "mov edi, 1",
            "lea rax, [rip + xg_hypercall_page + {slot}]",
            "call rax",
            "test {clear}, {clear}",
            "jz 3f",
            "xor edi, edi",
            "lea rax, [rip + xg_hypercall_page + {slot}]",
            "call rax",
            "3:",
            "test {clts}, {clts}",
            "jz 2f",
            "clts",
            "2:",
            "fadd st(0), st(0)",
            "fstp qword ptr [{v}]",
            v = in(reg) &raw mut v,
            set = in(reg) set,
            clear = in(reg) clear,
            clts = in(reg) clts,
            slot = const FPU_TASKSWITCH as usize * HYPERCALL_STUB_SIZE,
            out("rax") _, out("rdi") _, out("rsi") _, out("rdx") _,
            out("r10") _, out("r8") _, out("r9") _, out("rcx") _, out("r11") _,
        );
    }
    v
}

/// XMM0 = `a`; TS set by MOV CR0 (when `set`); PADDQ XMM0, XMM0; returns it.
fn sse_double(a: [u64; 2], set: bool) -> [u64; 2] {
    let mut v = a;
    let cr0 = insn::read_cr0().unwrap_or(0x8005_0033);
    let info: u64;
    // SAFETY: as for x87_double; MOV CR0 with TS is emulated by Xen (the
    // same as fpu_taskswitch(1)); a fault would resume at label 3 with the
    // fault in rax, reported as a failure below.
    unsafe {
        asm!(
            "movdqu xmm0, [{v}]",
            "test {set}, {set}",
            "jz 4f",
            "2: mov cr0, {cr0ts}",
            "3:",
            xenolith_guests::extable_entry!("2b", "3b"),
            "4:",
            "paddq xmm0, xmm0",
            "movdqu [{v}], xmm0",
            v = in(reg) &raw mut v,
            set = in(reg) u64::from(set),
            cr0ts = in(reg) cr0 | CR0_TS,
            inout("rax") 0u64 => info,
            out("xmm0") _,
        );
    }
    if info != 0 {
        println!("MOV CR0 with TS faulted: {info:#x}");
    }
    v
}

/// Sets TS with fpu_taskswitch(1), then FLD1 (and FSTP to pop it): returns
/// RSP and the FLD1's address.
fn fld1_with_ts() -> (u64, u64) {
    let (sp, at): (u64, u64);
    // SAFETY: as for x87_double: one asm block, balanced x87 stack, the #NM
    // goes to fts_nm_handler and FLD1 re-runs.
    unsafe {
        asm!(
            "mov edi, 1",
            "lea rax, [rip + xg_hypercall_page + {slot}]",
            "call rax",
            "mov {sp}, rsp",
            "lea {at}, [rip + 2f]",
            "2: fld1",
            "fstp st(0)",
            sp = out(reg) sp,
            at = out(reg) at,
            slot = const FPU_TASKSWITCH as usize * HYPERCALL_STUB_SIZE,
            out("rax") _, out("rdi") _, out("rsi") _, out("rdx") _,
            out("r10") _, out("r8") _, out("r9") _, out("rcx") _, out("r11") _,
        );
    }
    (sp, at)
}

fn fpu_ts(_b: &Boot) -> Verdict {
    let mut t = Failures::new();
    let table = [
        TrapInfo {
            vector: NM,
            flags: TI_MASK_EVENTS,
            cs: FLAT_KERNEL_CS,
            pad: 0,
            address: (&raw const fts_nm_handler) as u64,
        },
        TrapInfo::default(),
    ];
    // SAFETY: the handler copes with Xen's #NM frame (no error code).
    let r = unsafe { hypercall::set_trap_table(&table) };
    check_eq!(t, r, Ok(0), "set_trap_table(#NM counting handler)");
    check_eq!(
        t,
        insn::read_cr0().map(|c| c & CR0_TS),
        Ok(0),
        "CR0.TS at boot"
    );

    // x87: one #NM per set, TS clear afterwards, value right.
    let cases = [
        (SetTs::No, 0),
        (SetTs::Hypercall, 1),
        (SetTs::No, 0),
        (SetTs::Hypercall, 1),
        (SetTs::HypercallThenClear, 0),
        (SetTs::HypercallThenClts, 0),
    ];
    for (how, nms) in cases {
        let before = nm_count();
        let r = x87_double(1.5, how);
        let n = nm_count() - before;
        println!("x87 FADD with TS {how:?}: {n} #NM, result {r}");
        check_eq!(t, n, nms, "#NM count for FADD with TS {how:?}");
        check!(t, r == 3.0, "FADD with TS {how:?}: 1.5 + 1.5 = {r}");
        check_eq!(
            t,
            insn::read_cr0().map(|c| c & CR0_TS),
            Ok(0),
            "CR0.TS after FADD with TS {how:?}"
        );
    }

    // SSE with TS from MOV CR0.
    let a = [0x1111_2222_3333_4444u64, 0x0101_0202_0303_0404];
    let want = [a[0].wrapping_mul(2), a[1].wrapping_mul(2)];
    for (set, nms) in [(true, 1), (false, 0), (true, 1)] {
        let before = nm_count();
        let r = sse_double(a, set);
        let n = nm_count() - before;
        println!(
            "SSE PADDQ, TS {}: {n} #NM, result {r:x?}",
            if set { "set by MOV CR0" } else { "clear" }
        );
        check_eq!(t, n, nms, "#NM count for PADDQ (TS set: {set})");
        check_eq!(t, r, want, "PADDQ result (TS set: {set})");
    }

    // The frame, exactly, as the counting handler recorded it.
    let before = nm_count();
    let (sp, at) = fld1_with_ts();
    let n = nm_count() - before;
    let cr0_after = insn::read_cr0();
    // SAFETY: written by the handler only, which is not running now.
    let (last_rsp, f) = unsafe {
        (
            (&raw const NM_RSP).read_volatile(),
            (&raw const NM_FRAME).read_volatile(),
        )
    };
    println!("FLD1 with TS: {n} #NM, handler RSP {last_rsp:#x}, frame {f:x?}");
    if check_eq!(t, n, 1, "#NM count for FLD1 with TS") {
        check_eq!(
            t,
            last_rsp,
            RawTrap::expected_rsp(sp, false),
            "#NM handler RSP (frame below the interrupted RSP, no error code)"
        );
        check_eq!(t, f[2], at, "#NM frame RIP (at FLD1)");
        check_eq!(t, f[3], 0xe030 | 1 << 32, "#NM frame CS");
        check_eq!(t, f[5], sp, "#NM frame RSP");
        check_eq!(t, f[6], 0xe02b, "#NM frame SS");
    }
    check_eq!(
        t,
        cr0_after.map(|c| c & CR0_TS),
        Ok(0),
        "CR0.TS after the #NM was delivered"
    );
    // SAFETY: clears the x87 stack FLD1 left (if it ran) or nothing.
    unsafe { asm!("fninit") };
    check_eq!(t, traps::install(), Ok(0), "restoring the trap table");
    t.verdict()
}
