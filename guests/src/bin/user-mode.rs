//! Test kernel `user-mode`: guest user mode via HYPERVISOR_iret, and every way back to the kernel.
//!
//! Command line: none needed (ignored). Set-up as XTF does it: the user root
//! is the kernel's own L4 (CR3 read with an emulated `mov %cr3`, which must
//! equal the MFN of pt_base << 12) installed with MMUEXT_NEW_USER_BASEPTR;
//! `stack_switch` names the kernel stack for traps from user mode. Then
//! `HYPERVISOR_iret` with CS 0xe033 (RPL 3) enters user mode, where:
//!
//! * `mov %cs` reads 0xe033 (CPL 3);
//! * `SYSCALL` with no syscall callback registered gives #UD at the SYSCALL;
//! * `int $0x20` to a DPL-3 entry is delivered on the `stack_switch` stack
//!   with CS RPL 3 in the frame (QEMU 7.2 TCG: Xen decodes vector 0x40, see
//!   `swint`); `int $0x21` to a DPL-1 entry gives #GP (user mode needs DPL 3);
//!   `int $0x80` reaches even a DPL-0 entry and `int3` a DPL-0 #BP entry
//!   (Xen checks no guest DPL on those paths);
//! * `SYSCALL` with `rax` = a hypercall number is no hypercall: it reaches
//!   the CALLBACKTYPE_syscall callback with rax unchanged, RCX = the return
//!   RIP and R11 = the user RFLAGS in the frame's RCX/R11 slots, events
//!   masked iff registered with CALLBACKF_mask_events (the callback's own
//!   RFLAGS are not checked: see `syscall_cases`);
//! * a NULL read gives #PF with error code 4 (U), a write to the read-only
//!   L4 error code 7; `mov %cr3` gives #GP(0);
//! * CLI and port I/O need virtual IOPL 3 (set_iopl 1 is not enough);
//! * GS base: user mode sees the SEGBASE_GS_USER base, the kernel the
//!   SEGBASE_GS_KERNEL one (swapped on every switch);
//! * a fault handled by the framework's handler returns to user mode through
//!   HYPERVISOR_iret (CS RPL 3) and user code carries on.
#![no_std]
#![no_main]

use core::arch::global_asm;

use xen_abi::callback::CALLBACKTYPE_EVENT;
use xen_abi::layout::{SEGBASE_GS_KERNEL, SEGBASE_GS_USER};
use xen_abi::trap::TI_MASK_EVENTS;
use xenolith_guests::rawtrap::{self, reg, RawTrap, TAG_SYSCALL};
use xenolith_guests::traps::Fault;
use xenolith_guests::x86::{PFEC_PRESENT, PFEC_USER, PFEC_WRITE};
use xenolith_guests::{
    boot, check, check_eq, cpu, hypercall, insn, println, shared_info, test_main, traps, Boot,
    Failures, Verdict,
};

test_main!(user_mode);

const UD: u64 = 6;
const BP: u64 = 3;
const GP: u64 = 13;
const PF: u64 = 14;
const USER_CS: u64 = 0xe033;
const USER_SS: u64 = 0xe02b;

const DF: u64 = 1 << 10;
const IF: u64 = 1 << 9;
/// Loaded with POPF in user mode before the trapping instruction (IF cannot
/// change there: IOPL 0).
const USER_FLAGS: u64 = 0x0002 | 0x0001 | 0x0004 | 0x0010 | 0x0040 | 0x0080 | 0x0800 | DF;

const RCX_PATTERN: u64 = 0xc0c0_0000_0000_c0c0;
const R11_PATTERN: u64 = 0x1111_0000_0000_1111;
/// __HYPERVISOR_xen_version: what a SYSCALL in user mode must *not* run.
const XEN_VERSION: u64 = 17;

// User-mode routines: r12 = RSP on entry, r13 = CS; each ends in a trap.
global_asm!(
    ".pushsection .text.um, \"ax\", @progbits",
    ".macro um_setup",
    "mov r12, rsp",
    "mov r13, cs",
    "mov rcx, {rcx}",
    "mov r11, {r11}",
    "push {flags}",
    "popfq",
    ".endm",
    "um_int20:",
    "um_setup",
    "int 0x20",
    "um_int20_end: ud2",
    "um_int21:",
    "um_setup",
    "um_int21_at: int 0x21",
    "ud2",
    "um_int80:",
    "um_setup",
    "int 0x80",
    "um_int80_end: ud2",
    "um_int3:",
    "um_setup",
    "int3",
    "um_int3_end: ud2",
    // No stack use: runs with any RSP.
    "um_int3_nostack:",
    "mov r12, rsp",
    "mov rcx, {rcx}",
    "mov r11, {r11}",
    "int3",
    "um_int3_nostack_end: ud2",
    "um_syscall:",
    "mov eax, {xen_version}",
    "xor edi, edi",
    "um_setup",
    "um_syscall_at: syscall",
    "um_syscall_end: ud2",
    "um_read:",
    "mov rdi, [rip + {args}]",
    "um_setup",
    "um_read_at: mov rax, [rdi]",
    "ud2",
    "um_write:",
    "mov rdi, [rip + {args}]",
    "mov rsi, [rip + {args} + 8]",
    "um_setup",
    "um_write_at: mov [rdi], rsi",
    "ud2",
    "um_cr3:",
    "um_setup",
    "um_cr3_at: mov rax, cr3",
    "ud2",
    "um_cli_in:",
    "um_setup",
    "um_cli_at: cli",
    "in al, 0x80",
    "sti",
    "syscall",
    "ud2",
    "um_gs:",
    "mov r14, gs:[0]",
    "syscall",
    "ud2",
    // A NULL read with a fix-up: the framework's #PF handler resumes at
    // um_probe_fixup (in user mode) with the fault in rax.
    "um_probe:",
    "xor eax, eax",
    "um_probe_at: mov rbx, [0]",
    "um_probe_fixup:",
    "mov r14, rax",
    "mov r13, cs",
    "mov eax, {xen_version}",
    "syscall",
    "ud2",
    xenolith_guests::extable_entry!("um_probe_at", "um_probe_fixup"),
    ".popsection",
    rcx = const RCX_PATTERN,
    r11 = const R11_PATTERN,
    flags = const USER_FLAGS,
    xen_version = const XEN_VERSION,
    args = sym UM_ARGS,
);

/// Operands for the user routines (rdi, rsi), read by them in user mode.
static mut UM_ARGS: [u64; 2] = [0; 2];

extern "C" {
    static um_int20: u8;
    static um_int20_end: u8;
    static um_int21: u8;
    static um_int21_at: u8;
    static um_int80: u8;
    static um_int80_end: u8;
    static um_int3: u8;
    static um_int3_end: u8;
    static um_int3_nostack: u8;
    static um_int3_nostack_end: u8;
    static um_syscall: u8;
    static um_syscall_at: u8;
    static um_syscall_end: u8;
    static um_read: u8;
    static um_read_at: u8;
    static um_write: u8;
    static um_write_at: u8;
    static um_cr3: u8;
    static um_cr3_at: u8;
    static um_cli_in: u8;
    static um_cli_at: u8;
    static um_gs: u8;
    static um_probe: u8;
}

/// Address of a label.
fn a(sym: *const u8) -> u64 {
    sym as u64
}

/// Runs user code at `rip` with `rsp` and `rflags`; returns the capture.
fn user(rip: u64, rsp: u64, rflags: u64) -> RawTrap {
    // SAFETY: setup_user_mode succeeded before any call (checked in the test);
    // every user routine ends in a trap or SYSCALL reaching a raw stub.
    unsafe { rawtrap::call_user(rip, rsp, rflags) }
}

/// What a capture from user mode must show.
struct Expect<'a> {
    what: &'a str,
    tag: u64,
    error_code: Option<u64>,
    rip: u64,
    /// The saved upcall mask (CS slot bits 32-39, !RFLAGS.IF).
    mask_saved: u64,
    /// The upcall mask at the handler.
    mask_at_entry: u64,
    /// The user RSP in the frame.
    rsp: u64,
    /// The kernel stack the frame must be on (top as given to stack_switch).
    kernel_sp: u64,
    /// The RCX/R11 slots (the user's values).
    rcx: u64,
    r11: u64,
    /// The RFLAGS slot without IF.
    rflags: u64,
}

fn check_trap(t: &mut Failures, tr: &RawTrap, e: &Expect) -> bool {
    let w = e.what;
    let ec = e.error_code.is_some();
    println!(
        "{w}: handler {:#x}, frame {:x?}",
        tr.tag,
        &tr.stack[..7 + usize::from(ec)]
    );
    if !check_eq!(t, tr.tag, e.tag, "{w}: handler reached") {
        return false;
    }
    check_eq!(
        t,
        tr.rsp,
        RawTrap::expected_rsp(e.kernel_sp, ec),
        "{w}: handler RSP (frame on the stack_switch stack)"
    );
    let f = tr.frame(ec);
    if let (Some(got), Some(want)) = (f.error_code, e.error_code) {
        check_eq!(t, got, want, "{w}: error code");
    }
    check_eq!(t, f.rcx, e.rcx, "{w}: frame RCX");
    check_eq!(t, f.r11, e.r11, "{w}: frame R11");
    check_eq!(t, f.rip, e.rip, "{w}: frame RIP");
    check_eq!(
        t,
        f.cs,
        USER_CS | e.mask_saved << 32,
        "{w}: frame CS (RPL 3, saved mask in bits 32-39)"
    );
    let if_bit = if e.mask_saved == 0 { IF } else { 0 };
    check_eq!(t, f.rflags, e.rflags | if_bit, "{w}: frame RFLAGS");
    check_eq!(t, f.rsp, e.rsp, "{w}: frame RSP (user RSP)");
    check_eq!(t, f.ss, USER_SS, "{w}: frame SS");
    check_eq!(
        t,
        tr.upcall_mask,
        e.mask_at_entry,
        "{w}: upcall mask at the handler"
    );
    // Back in kernel mode: the privileged-op emulation works again.
    check!(
        t,
        insn::read_cr3().is_ok(),
        "{w}: mov %cr3 fails after the return to the kernel"
    );
    true
}

fn user_mode(b: &Boot) -> Verdict {
    let mut t = Failures::new();
    let si = b.start_info;
    if shared_info::map(si).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    // SAFETY: the raw stub copes with any frame (only for stray events).
    let r = unsafe {
        hypercall::callback_register(
            CALLBACKTYPE_EVENT,
            0,
            rawtrap::stub_address(rawtrap::TAG_EVENT),
        )
    };
    check_eq!(t, r, Ok(0), "callback_op(register event)");
    let vectors = [
        (BP as u8, TI_MASK_EVENTS),
        (UD as u8, TI_MASK_EVENTS),
        (GP as u8, TI_MASK_EVENTS),
        (PF as u8, TI_MASK_EVENTS),
    ];
    check_eq!(t, rawtrap::install(&vectors), Ok(0), "set_trap_table");
    let factor = rawtrap::int_error_code_factor();
    println!("int $n #GP error code factor: {factor:?} (16 = QEMU TCG bug, 8 = hardware)");
    let Some(factor) = factor else {
        xenolith_guests::error("int $0x31 did not give #GP with an IDT error code");
    };
    let decoded = |n: u64| (n * factor + 2) >> 3 & 0xff;
    // Software-interrupt entries at n and at the vector Xen decodes.
    let swi = [
        (0x20u8, 3 | TI_MASK_EVENTS),
        (decoded(0x20) as u8, 3 | TI_MASK_EVENTS),
        (0x21, 1 | TI_MASK_EVENTS),
        (decoded(0x21) as u8, 1 | TI_MASK_EVENTS),
        (0x80, TI_MASK_EVENTS),
    ];
    check_eq!(
        t,
        rawtrap::install(&swi),
        Ok(0),
        "set_trap_table(0x20 DPL 3, 0x21 DPL 1, 0x80 DPL 0)"
    );

    let cr3 = match rawtrap::setup_user_mode() {
        Ok(cr3) => cr3,
        Err(e) => {
            println!("ERROR: user-mode set-up failed: {e:?}");
            xenolith_guests::error("cannot enter user mode");
        }
    };
    let pfn = (si.pt_base - boot::virt_base()) >> 12;
    // SAFETY: mfn_list holds nr_pages entries; pt_base is in the region.
    let l4_mfn = unsafe { (si.mfn_list as *const u64).add(pfn as usize).read() };
    check_eq!(t, cr3, l4_mfn << 12, "mov %cr3 (the L4 at pt_base)");
    let ksp = rawtrap::kernel_trap_stack_top();
    let usp = rawtrap::user_stack_top();

    // SYSCALL before any syscall callback exists: #UD at the SYSCALL.
    let tr = user(a(&raw const um_syscall), usp, 0x2);
    check_trap(
        &mut t,
        &tr,
        &Expect {
            what: "SYSCALL without a callback",
            tag: UD,
            error_code: None,
            rip: a(&raw const um_syscall_at),
            mask_saved: 1,
            mask_at_entry: 1,
            rsp: usp,
            kernel_sp: ksp,
            rcx: a(&raw const um_syscall_end),
            r11: USER_FLAGS | IF,
            rflags: USER_FLAGS,
        },
    );
    check_eq!(
        t,
        rawtrap::register_syscall(true),
        Ok(0),
        "callback_op(register syscall, mask events)"
    );

    // int $0x20 to a DPL-3 entry.
    let tr = user(a(&raw const um_int20), usp, 0x2);
    check_eq!(t, tr.regs[reg::R13], USER_CS, "CS in user mode (CPL 3)");
    check_eq!(t, tr.regs[reg::R12], usp, "RSP in user mode");
    let pattern = |what, tag, error_code, rip| Expect {
        what,
        tag,
        error_code,
        rip,
        mask_saved: 1,
        mask_at_entry: 1,
        rsp: usp,
        kernel_sp: ksp,
        rcx: RCX_PATTERN,
        r11: R11_PATTERN,
        rflags: USER_FLAGS,
    };
    check_trap(
        &mut t,
        &tr,
        &pattern(
            "int $0x20 (DPL 3)",
            decoded(0x20),
            None,
            a(&raw const um_int20_end),
        ),
    );
    let tr = user(a(&raw const um_int21), usp, 0x2);
    let at = a(&raw const um_int21_at);
    check_trap(
        &mut t,
        &tr,
        &pattern("int $0x21 (DPL 1)", GP, Some(0x21 * factor + 2), at),
    );
    let tr = user(a(&raw const um_int80), usp, 0x2);
    let end = a(&raw const um_int80_end);
    check_trap(&mut t, &tr, &pattern("int $0x80 (DPL 0)", 0x80, None, end));
    let tr = user(a(&raw const um_int3), usp, 0x2);
    let end = a(&raw const um_int3_end);
    check_trap(
        &mut t,
        &tr,
        &pattern("int3 (#BP entry DPL 0)", BP, None, end),
    );
    // The user RSP plays no part: the frame goes on the kernel stack.
    let odd = 0x8000_0000_0000_0000;
    let tr = user(a(&raw const um_int3_nostack), odd, 0x2);
    let end2 = a(&raw const um_int3_nostack_end);
    let mut e = pattern("int3 with a non-canonical user RSP", BP, None, end2);
    e.rsp = odd;
    // RFLAGS as HYPERVISOR_iret set them (0x2, IF folded from the mask).
    e.rflags = 0x2;
    check_trap(&mut t, &tr, &e);
    // Another stack_switch moves the frame.
    let ksp2 = ksp - 0x1000;
    check_eq!(t, cpu::stack_switch(0xe02b, ksp2), Ok(0), "stack_switch");
    let tr = user(a(&raw const um_int3), usp, 0x2);
    let mut e = pattern("int3 after stack_switch(top - 4 KiB)", BP, None, end);
    e.kernel_sp = ksp2;
    check_trap(&mut t, &tr, &e);
    check_eq!(t, cpu::stack_switch(0xe02b, ksp), Ok(0), "stack_switch");

    syscall_cases(&mut t);
    fault_cases(&mut t, si.pt_base, usp, ksp);
    iopl_cases(&mut t, usp);
    gs_case(&mut t, usp);
    round_trip(&mut t, usp);

    check_eq!(t, traps::install(), Ok(0), "restoring the trap table");
    t.verdict()
}

fn syscall_cases(t: &mut Failures) {
    let usp = rawtrap::user_stack_top();
    let ksp = rawtrap::kernel_trap_stack_top();
    let (entry, end) = (a(&raw const um_syscall), a(&raw const um_syscall_end));
    // (callback masks events, user IF): mask saved = !IF, at entry = mask || saved.
    for (masks, user_if) in [(true, false), (true, true), (false, true), (false, false)] {
        check_eq!(
            t,
            rawtrap::register_syscall(masks),
            Ok(0),
            "callback_op(register syscall)"
        );
        let tr = user(entry, usp, if user_if { 0x202 } else { 0x2 });
        let mask_saved = u64::from(!user_if);
        let what = match (masks, user_if) {
            (true, false) => "SYSCALL (callback masks events, events masked)",
            (true, true) => "SYSCALL (callback masks events, events enabled)",
            (false, true) => "SYSCALL (callback leaves events, events enabled)",
            (false, false) => "SYSCALL (callback leaves events, events masked)",
        };
        let ok = check_trap(
            t,
            &tr,
            &Expect {
                what,
                tag: TAG_SYSCALL,
                error_code: None,
                rip: end,
                mask_saved,
                mask_at_entry: if masks { 1 } else { mask_saved },
                rsp: usp,
                kernel_sp: ksp,
                rcx: end,
                r11: USER_FLAGS | IF,
                rflags: USER_FLAGS,
            },
        );
        if ok {
            check_eq!(
                t,
                tr.regs[reg::RAX],
                XEN_VERSION,
                "{what}: rax (no hypercall made)"
            );
            // The callback's own RFLAGS are not checked: Xen 4.17.7 means to
            // clear DF only, but ANDs the user's RFLAGS with a register that
            // create_bounce_frame clobbered (the low 32 bits of the new RSP).
            println!(
                "  RFLAGS at the callback {:#x} (RSP {:#x})",
                tr.rflags, tr.rsp
            );
        }
        // SAFETY: masking is always safe.
        unsafe { cpu::set_upcall_mask(1) };
    }
    check_eq!(
        t,
        rawtrap::register_syscall(true),
        Ok(0),
        "callback_op(register syscall)"
    );
}

fn fault_cases(t: &mut Failures, pt_base: u64, usp: u64, ksp: u64) {
    let s = shared_info::get().expect("mapped above");
    let expect = |what, tag, ec, rip| Expect {
        what,
        tag,
        error_code: Some(ec),
        rip,
        mask_saved: 1,
        mask_at_entry: 1,
        rsp: usp,
        kernel_sp: ksp,
        rcx: RCX_PATTERN,
        r11: R11_PATTERN,
        rflags: USER_FLAGS,
    };
    // The user routines take their operands in rdi/rsi, which survive the
    // iret from the kernel unchanged: set them through a raw call first.
    let tr = user_with(a(&raw const um_read), usp, [0, 0]);
    let at = a(&raw const um_read_at);
    if check_trap(
        t,
        &tr,
        &expect("NULL read from user mode", PF, u64::from(PFEC_USER), at),
    ) {
        check_eq!(
            t,
            s.cr2(0),
            0,
            "vcpu_info.arch.cr2 after the user NULL read"
        );
    }
    // SAFETY: reads the builder's read-only L4.
    let l4e0 = unsafe { (pt_base as *const u64).read_volatile() };
    let tr = user_with(a(&raw const um_write), usp, [pt_base, l4e0]);
    let at = a(&raw const um_write_at);
    let ec = u64::from(PFEC_USER | PFEC_WRITE | PFEC_PRESENT);
    if check_trap(
        t,
        &tr,
        &expect("write to the read-only L4 from user mode", PF, ec, at),
    ) {
        check_eq!(
            t,
            s.cr2(0),
            pt_base,
            "vcpu_info.arch.cr2 after the user write"
        );
    }
    let tr = user(a(&raw const um_cr3), usp, 0x2);
    let at = a(&raw const um_cr3_at);
    check_trap(t, &tr, &expect("mov %cr3 in user mode", GP, 0, at));
}

/// Enters user mode at `rip`, whose code loads rdi/rsi from `args`.
fn user_with(rip: u64, rsp: u64, args: [u64; 2]) -> RawTrap {
    // SAFETY: single-threaded; read only by the user routine started next.
    unsafe { (&raw mut UM_ARGS).write_volatile(args) };
    user(rip, rsp, 0x2)
}

/// CLI and IN from user mode need virtual IOPL 3.
fn iopl_cases(t: &mut Failures, usp: u64) {
    let ksp = rawtrap::kernel_trap_stack_top();
    let (entry, at) = (a(&raw const um_cli_in), a(&raw const um_cli_at));
    for iopl in [0, 1] {
        check_eq!(t, cpu::set_iopl(iopl), Ok(0), "PHYSDEVOP_set_iopl({iopl})");
        let tr = user(entry, usp, 0x2);
        let what = if iopl == 0 {
            "CLI in user mode, IOPL 0"
        } else {
            "CLI in user mode, IOPL 1"
        };
        check_trap(
            t,
            &tr,
            &Expect {
                what,
                tag: GP,
                error_code: Some(0),
                rip: at,
                mask_saved: 1,
                mask_at_entry: 1,
                rsp: usp,
                kernel_sp: ksp,
                rcx: RCX_PATTERN,
                r11: R11_PATTERN,
                rflags: USER_FLAGS,
            },
        );
    }
    check_eq!(t, cpu::set_iopl(3), Ok(0), "PHYSDEVOP_set_iopl(3)");
    let tr = user(entry, usp, 0x2);
    println!(
        "CLI; IN 0x80; STI in user mode, IOPL 3: handler {:#x}, al {:#x}",
        tr.tag,
        tr.regs[reg::RAX] & 0xff
    );
    check_eq!(
        t,
        tr.tag,
        TAG_SYSCALL,
        "CLI, IN and STI in user mode with IOPL 3 run through to the SYSCALL"
    );
    check_eq!(t, cpu::set_iopl(0), Ok(0), "PHYSDEVOP_set_iopl(0)");
}

static GS_KERNEL_WORD: u64 = 0x6b6b_6b6b_0000_0001;
static GS_USER_WORD: u64 = 0x7575_7575_0000_0002;

fn gs_read() -> u64 {
    let v: u64;
    // SAFETY: GS points at one of the two words above while this runs.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) v, options(nostack, readonly)) };
    v
}

/// The kernel and user GS bases are swapped on every kernel/user switch.
fn gs_case(t: &mut Failures, usp: u64) {
    let k = (&raw const GS_KERNEL_WORD) as u64;
    let u = (&raw const GS_USER_WORD) as u64;
    // SAFETY: nothing in the kernel uses GS.
    let r = unsafe { cpu::set_segment_base(SEGBASE_GS_KERNEL, k) };
    check_eq!(t, r, Ok(0), "set_segment_base(GS_KERNEL)");
    // SAFETY: as above.
    let r = unsafe { cpu::set_segment_base(SEGBASE_GS_USER, u) };
    check_eq!(t, r, Ok(0), "set_segment_base(GS_USER)");
    check_eq!(t, gs_read(), GS_KERNEL_WORD, "gs:[0] in kernel mode");
    let tr = user(a(&raw const um_gs), usp, 0x2);
    if check_eq!(t, tr.tag, TAG_SYSCALL, "user GS read reaches the SYSCALL") {
        check_eq!(
            t,
            tr.regs[reg::R14],
            GS_USER_WORD,
            "gs:[0] in user mode (GS_USER base)"
        );
    }
    check_eq!(t, gs_read(), GS_KERNEL_WORD, "gs:[0] back in kernel mode");
    for which in [SEGBASE_GS_USER, SEGBASE_GS_KERNEL] {
        // SAFETY: as above.
        let r = unsafe { cpu::set_segment_base(which, 0) };
        check_eq!(t, r, Ok(0), "set_segment_base({which}, 0)");
    }
}

/// A user-mode #PF handled by the framework's handler (fix-up, then
/// HYPERVISOR_iret with the frame's CS RPL 3) continues in user mode.
fn round_trip(t: &mut Failures, usp: u64) {
    check_eq!(
        t,
        traps::install(),
        Ok(0),
        "set_trap_table(framework, vectors 0-31)"
    );
    let tr = user(a(&raw const um_probe), usp, 0x2);
    println!(
        "user NULL probe via the framework: handler {:#x}, r14 {:#x}",
        tr.tag,
        tr.regs[reg::R14]
    );
    if check_eq!(
        t,
        tr.tag,
        TAG_SYSCALL,
        "user code resumed after its #PF reaches the SYSCALL"
    ) {
        let f = Fault {
            vector: PF as u8,
            error_code: PFEC_USER,
        };
        check_eq!(
            t,
            tr.regs[reg::R14],
            f.encode(),
            "fault seen by the user fix-up"
        );
        check_eq!(
            t,
            tr.regs[reg::R13],
            USER_CS,
            "CS after HYPERVISOR_iret to user mode"
        );
        check_eq!(
            t,
            tr.regs[reg::RAX],
            XEN_VERSION,
            "rax at the syscall callback"
        );
    }
}
