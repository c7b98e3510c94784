//! Test kernel `trap-bounce`: exception bounce frames, word by word, as Xen 4.17 builds them.
//!
//! Command line: none needed (ignored). Each case loads every GPR with a
//! pattern, RFLAGS with arithmetic flags plus AC and NT, remembers RSP in r12
//! and raises one exception from guest kernel mode; a raw stub
//! (`rawtrap`) records what the handler got. Checked for each: the vector;
//! the handler's RSP, which is where Xen put the frame and so tells whether
//! an error code was pushed (`(rsp & ~15) - 56`, or `- 64` with one); the
//! frame `rcx, r11, [error code], rip, cs, rflags, rsp, ss` (CS slot
//! `0xe030 | saved_mask << 32`, RPL 0 for kernel mode; RFLAGS with IF =
//! !saved mask and IOPL 0); the handler's RFLAGS (TF, NT, RF, VM, AC
//! cleared, arithmetic flags kept, IF set); every GPR but rcx/r11 unchanged
//! at the handler (Xen enters handlers with SYSRET, so rcx/r11 hold the
//! handler's RIP/RFLAGS, which is why the frame saves them); and
//! vcpu_info.evtchn_upcall_mask at entry: set iff the trap entry has
//! TI_MASK_EVENTS, else unchanged. #PF also checks vcpu_info.arch.cr2.
//!
//! Vectors: #DE (div by 0), #BP (int3, RIP after it), #UD (ud2), #NP and
//! #SS (loading FS / SS with a not-present descriptor of a guest GDT set with
//! `set_gdt`), #GP(0) (non-canonical address), #GP(sel) (`mov fs` of an empty
//! GDT slot), #PF (NULL read: error code 0; write to the read-only L4: 3),
//! #MF (x87 divide by zero unmasked, `fwait`). Not provokable here: #TS and
//! #DF; #AC and #XM are not raised by QEMU 7.2 TCG at all.
#![no_std]
#![no_main]

use core::arch::global_asm;

use xen_abi::callback::CALLBACKTYPE_EVENT;
use xen_abi::hypercall::SET_GDT;
use xen_abi::mmu::UVMF_INVLPG;
use xen_abi::trap::TI_MASK_EVENTS;
use xen_abi::vm_assist::{VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_ARCHITECTURAL_IOPL};
use xenolith_guests::rawtrap::{self, reg, Outcome, RawTrap};
use xenolith_guests::x86::{PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT, PTE_RW};
use xenolith_guests::{
    boot, check, check_eq, cpu, hypercall, println, shared_info, test_main, traps, Boot, Failures,
    Verdict,
};

test_main!(trap_bounce);

/// Register patterns loaded before each exception, indexed like `RawTrap::regs`
/// (rdi/rsi carry the case's operands, rsp and r12 are not patterned).
const PATTERN: [u64; 16] = [
    0xa0a0_0000_0000_00a0,
    0xb0b0_0000_0000_00b0,
    0xc0c0_0000_0000_00c0,
    0xd0d0_0000_0000_00d0,
    0,
    0,
    0xe0e0_0000_0000_00e0,
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

const CF: u64 = 1 << 0;
const FIXED: u64 = 1 << 1;
const PF: u64 = 1 << 2;
const AF: u64 = 1 << 4;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const TF: u64 = 1 << 8;
const IF: u64 = 1 << 9;
const OF: u64 = 1 << 11;
const IOPL: u64 = 3 << 12;
const NT: u64 = 1 << 14;
const RF: u64 = 1 << 16;
const VM: u64 = 1 << 17;
const AC: u64 = 1 << 18;

/// RFLAGS loaded (with POPF) just before each exception.
const FLAGS: u64 = FIXED | CF | PF | AF | ZF | SF | OF | NT | AC;

const KERNEL_CS: u64 = 0xe030;
const KERNEL_SS: u64 = 0xe02b;

// Each routine: optional `sub rsp, rdx` (a2) to vary RSP alignment, then
// `tb_setup` (r12 = RSP, patterns, FLAGS), then the faulting instruction at
// a global label, then ud2 (never reached when the expected exception comes).
global_asm!(
    ".pushsection .text.tb, \"ax\", @progbits",
    ".macro tb_setup",
    "mov r12, rsp",
    "mov rax, {rax}",
    "mov rbx, {rbx}",
    "mov rcx, {rcx}",
    "mov rbp, {rbp}",
    "mov r8, {r8}",
    "mov r9, {r9}",
    "mov r10, {r10}",
    "mov r11, {r11}",
    "mov r13, {r13}",
    "mov r14, {r14}",
    "mov r15, {r15}",
    "push {flags}",
    "popfq",
    // Loaded last: nothing above may change it (mov and popf do not).
    "mov rdx, {rdx}",
    ".endm",
    "tb_div:",
    "sub rsp, rdx",
    "tb_setup",
    "tb_div_insn: div qword ptr [rdi]",
    "ud2",
    "tb_int3:",
    "sub rsp, rdx",
    "tb_setup",
    "int3",
    "tb_int3_after: ud2",
    "tb_ud2:",
    "sub rsp, rdx",
    "tb_setup",
    "tb_ud2_insn: ud2",
    "ud2",
    "tb_read:",
    "sub rsp, rdx",
    "tb_setup",
    "tb_read_insn: mov rax, [rdi]",
    "ud2",
    "tb_write:",
    "sub rsp, rdx",
    "tb_setup",
    "tb_write_insn: mov [rdi], rsi",
    "ud2",
    "tb_load_fs:",
    "sub rsp, rdx",
    "tb_setup",
    "tb_load_fs_insn: mov fs, si",
    "ud2",
    "tb_load_ss:",
    "sub rsp, rdx",
    "tb_setup",
    "tb_load_ss_insn: mov ss, si",
    "ud2",
    "tb_fwait:",
    "sub rsp, rdx",
    "fninit",
    // Unmask zero-divide (control word 0x37f without ZM), then 1/0.
    "push 0x37b",
    "fldcw [rsp]",
    "add rsp, 8",
    "fld1",
    "fldz",
    "fdivp st(1), st",
    "tb_setup",
    "tb_fwait_insn: fwait",
    "ud2",
    ".popsection",
    rax = const PATTERN[reg::RAX],
    rbx = const PATTERN[reg::RBX],
    rcx = const PATTERN[reg::RCX],
    rdx = const PATTERN[reg::RDX],
    rbp = const PATTERN[reg::RBP],
    r8 = const PATTERN[reg::R8],
    r9 = const PATTERN[reg::R9],
    r10 = const PATTERN[reg::R10],
    r11 = const PATTERN[reg::R11],
    r13 = const PATTERN[reg::R13],
    r14 = const PATTERN[reg::R14],
    r15 = const PATTERN[reg::R15],
    flags = const FLAGS,
);

type Routine = unsafe extern "C" fn(u64, u64, u64) -> u64;

extern "C" {
    fn tb_div(a0: u64, a1: u64, a2: u64) -> u64;
    fn tb_int3(a0: u64, a1: u64, a2: u64) -> u64;
    fn tb_ud2(a0: u64, a1: u64, a2: u64) -> u64;
    fn tb_read(a0: u64, a1: u64, a2: u64) -> u64;
    fn tb_write(a0: u64, a1: u64, a2: u64) -> u64;
    fn tb_load_fs(a0: u64, a1: u64, a2: u64) -> u64;
    fn tb_load_ss(a0: u64, a1: u64, a2: u64) -> u64;
    fn tb_fwait(a0: u64, a1: u64, a2: u64) -> u64;
    static tb_div_insn: u8;
    static tb_int3_after: u8;
    static tb_ud2_insn: u8;
    static tb_read_insn: u8;
    static tb_write_insn: u8;
    static tb_load_fs_insn: u8;
    static tb_load_ss_insn: u8;
    static tb_fwait_insn: u8;
}

const DE: u8 = 0;
const BP: u8 = 3;
const UD: u8 = 6;
const NP: u8 = 11;
const SS: u8 = 12;
const GP: u8 = 13;
const PFV: u8 = 14;
const MF: u8 = 16;

/// One exception to provoke and what Xen must deliver for it.
struct Case {
    name: &'static str,
    routine: Routine,
    /// rdi, rsi, and the extra RSP adjustment (0 or 8).
    args: [u64; 3],
    vector: u8,
    error_code: Option<u64>,
    rip: u64,
    /// vcpu_info.arch.cr2 after a #PF.
    cr2: Option<u64>,
}

/// A u64 of 0 to divide by.
static ZERO: u64 = 0;

#[repr(C, align(4096))]
struct Page([u64; 512]);

/// A guest GDT: entry 1 a not-present DPL 3 data segment (selector 0x0b).
static mut GDT: Page = Page([0; 512]);
/// Not-present, DPL 3, writable data, 4 GiB (type 2, S, DPL 3, P clear, G, D/B).
const NOT_PRESENT_DATA: u64 = 0x00cf_7200_0000_ffff;
const NP_SELECTOR: u64 = 0x0b;

/// Address of a label.
fn addr(sym: *const u8) -> u64 {
    sym as u64
}

/// The trap entries: raw stubs, DPL 0 (3 for #BP), events masked.
const VECTORS: [(u8, u8); 8] = [
    (DE, TI_MASK_EVENTS),
    (BP, 3 | TI_MASK_EVENTS),
    (UD, TI_MASK_EVENTS),
    (NP, TI_MASK_EVENTS),
    (SS, TI_MASK_EVENTS),
    (GP, TI_MASK_EVENTS),
    (PFV, TI_MASK_EVENTS),
    (MF, TI_MASK_EVENTS),
];

fn trap_bounce(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    let si = boot.start_info;
    if shared_info::map(si).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    // A stray event with events unmasked would otherwise hit a null callback.
    // SAFETY: the raw stub copes with any frame.
    let r = unsafe {
        hypercall::callback_register(
            CALLBACKTYPE_EVENT,
            0,
            rawtrap::stub_address(rawtrap::TAG_EVENT),
        )
    };
    check_eq!(t, r, Ok(0), "callback_op(register event)");
    check_eq!(t, rawtrap::install(&VECTORS), Ok(0), "set_trap_table");

    let cases = [
        Case {
            name: "#DE (div by 0)",
            routine: tb_div,
            args: [&raw const ZERO as u64, 0, 0],
            vector: DE,
            error_code: None,
            rip: addr(&raw const tb_div_insn),
            cr2: None,
        },
        Case {
            name: "#BP (int3)",
            routine: tb_int3,
            args: [0; 3],
            vector: BP,
            error_code: None,
            rip: addr(&raw const tb_int3_after),
            cr2: None,
        },
        Case {
            name: "#UD (ud2)",
            routine: tb_ud2,
            args: [0; 3],
            vector: UD,
            error_code: None,
            rip: addr(&raw const tb_ud2_insn),
            cr2: None,
        },
        Case {
            name: "#UD (ud2, RSP 16-byte aligned)",
            routine: tb_ud2,
            args: [0, 0, 8],
            vector: UD,
            error_code: None,
            rip: addr(&raw const tb_ud2_insn),
            cr2: None,
        },
        Case {
            name: "#GP(0) (non-canonical read)",
            routine: tb_read,
            args: [0x8000_0000_0000_0000, 0, 0],
            vector: GP,
            error_code: Some(0),
            rip: addr(&raw const tb_read_insn),
            cr2: None,
        },
        Case {
            name: "#GP(8) (mov fs of an empty GDT slot)",
            routine: tb_load_fs,
            args: [0, 0x8, 0],
            vector: GP,
            error_code: Some(0x8),
            rip: addr(&raw const tb_load_fs_insn),
            cr2: None,
        },
        Case {
            name: "#PF (NULL read)",
            routine: tb_read,
            args: [0, 0, 0],
            vector: PFV,
            error_code: Some(0),
            rip: addr(&raw const tb_read_insn),
            cr2: Some(0),
        },
        Case {
            name: "#PF (NULL read, RSP 16-byte aligned)",
            routine: tb_read,
            args: [0, 0, 8],
            vector: PFV,
            error_code: Some(0),
            rip: addr(&raw const tb_read_insn),
            cr2: Some(0),
        },
        Case {
            name: "#PF (write to the read-only L4)",
            routine: tb_write,
            // The value written, should the write succeed, is the one there.
            args: [si.pt_base, l4_entry0(si.pt_base), 0],
            vector: PFV,
            error_code: Some(3),
            rip: addr(&raw const tb_write_insn),
            cr2: Some(si.pt_base),
        },
        Case {
            name: "#MF (x87 divide by zero, fwait)",
            routine: tb_fwait,
            args: [0; 3],
            vector: MF,
            error_code: None,
            rip: addr(&raw const tb_fwait_insn),
            cr2: None,
        },
    ];
    for case in &cases {
        run_case(&mut t, case, 1);
    }
    // SAFETY: resets the x87 state the #MF case left pending.
    unsafe { core::arch::asm!("fninit") };

    // Event mask: saved in the frame, set at entry iff the entry masks events.
    let ud = &cases[2];
    println!("-- #UD with events unmasked, entry with TI_MASK_EVENTS");
    run_case(&mut t, ud, 0);
    check_eq!(
        t,
        rawtrap::install(&[(UD, 0)]),
        Ok(0),
        "set_trap_table(#UD without TI_MASK_EVENTS)"
    );
    println!("-- #UD with events masked, entry without TI_MASK_EVENTS");
    run_case_with(&mut t, ud, 1, false, 0);
    println!("-- #UD with events unmasked, entry without TI_MASK_EVENTS");
    run_case_with(&mut t, ud, 0, false, 0);
    check_eq!(
        t,
        rawtrap::install(&[(UD, TI_MASK_EVENTS)]),
        Ok(0),
        "set_trap_table(#UD)"
    );

    iopl_cases(&mut t, ud);
    segment_cases(&mut t, si);

    check_eq!(t, traps::install(), Ok(0), "restoring the trap table");
    t.verdict()
}

/// The first entry of the L4 at `pt_base` (readable, not writable).
fn l4_entry0(pt_base: u64) -> u64 {
    // SAFETY: pt_base is the builder's L4, mapped read-only in the initial
    // region for the domain's life.
    unsafe { (pt_base as *const u64).read_volatile() }
}

fn run_case(t: &mut Failures, case: &Case, mask_before: u8) {
    run_case_with(t, case, mask_before, true, 0);
}

/// Provokes `case` with vcpu_info's upcall mask at `mask_before`, the trap
/// entry masking events iff `entry_masks`, and checks the delivery (the
/// frame's RFLAGS.IOPL must be `frame_iopl`).
fn run_case_with(
    t: &mut Failures,
    case: &Case,
    mask_before: u8,
    entry_masks: bool,
    frame_iopl: u64,
) {
    // SAFETY: no event channel is bound, so unmasking cannot start an upcall;
    // should one come anyway the event callback is the raw stub.
    unsafe { cpu::set_upcall_mask(mask_before) };
    // SAFETY: each routine only loads registers and raises its exception;
    // `tb_write` writes back the value already there.
    let outcome = unsafe { rawtrap::call(case.routine, case.args) };
    // SAFETY: masking is always safe.
    unsafe { cpu::set_upcall_mask(1) };
    let tr = match outcome {
        Outcome::Trapped(tr) => tr,
        Outcome::Returned(v) => {
            t.fail(format_args!(
                "{}: no exception (returned {v:#x})",
                case.name
            ));
            return;
        }
    };
    let ec = case.error_code.is_some();
    let f = tr.frame(ec);
    println!(
        "{}: vector {} handler rsp {:#x} frame {:x?}",
        case.name,
        tr.tag,
        tr.rsp,
        &tr.stack[..7 + usize::from(ec)]
    );
    if !check_eq!(t, tr.tag, u64::from(case.vector), "{}: vector", case.name) {
        return;
    }
    let n = case.name;
    let from = tr.regs[reg::R12];
    check_eq!(
        t,
        tr.rsp,
        RawTrap::expected_rsp(from, ec),
        "{n}: handler RSP (frame below the interrupted RSP {from:#x}, {} error code)",
        if ec { "with" } else { "without" }
    );
    check_eq!(t, f.rcx, PATTERN[reg::RCX], "{n}: frame RCX");
    check_eq!(t, f.r11, PATTERN[reg::R11], "{n}: frame R11");
    // Presence is what the RSP check above proves; here the value.
    if let (Some(got), Some(want)) = (f.error_code, case.error_code) {
        check_eq!(t, got, want, "{n}: frame error code");
    }
    check_eq!(t, f.rip, case.rip, "{n}: frame RIP");
    let mask_after = if entry_masks { 1 } else { mask_before };
    check_eq!(
        t,
        f.cs,
        KERNEL_CS | u64::from(mask_before) << 32,
        "{n}: frame CS (selector RPL 0, saved mask {mask_before} in bits 32-39)"
    );
    let if_bit = if mask_before == 0 { IF } else { 0 };
    check_eq!(
        t,
        f.rflags,
        FLAGS | if_bit | frame_iopl << 12,
        "{n}: frame RFLAGS (IF = !saved mask, IOPL {frame_iopl})"
    );
    check_eq!(t, f.rsp, from, "{n}: frame RSP");
    check_eq!(t, f.ss, KERNEL_SS, "{n}: frame SS");
    check_eq!(
        t,
        tr.rflags,
        (FLAGS & !(TF | NT | RF | VM | AC | IOPL)) | IF,
        "{n}: RFLAGS at the handler (TF/NT/RF/VM/AC cleared, IF set)"
    );
    check_eq!(
        t,
        tr.upcall_mask,
        u64::from(mask_after),
        "{n}: evtchn_upcall_mask at the handler (entry {} TI_MASK_EVENTS)",
        if entry_masks { "with" } else { "without" }
    );
    for (i, &p) in PATTERN.iter().enumerate() {
        let expected = match i {
            reg::RCX | reg::R11 | reg::RSP | reg::R12 => continue,
            reg::RDI => case.args[0],
            reg::RSI => case.args[1],
            _ => p,
        };
        check_eq!(t, tr.regs[i], expected, "{n}: GPR {i} at the handler");
    }
    if let Some(cr2) = case.cr2 {
        let s = shared_info::get().expect("mapped above");
        check_eq!(t, s.cr2(0), cr2, "{n}: vcpu_info.arch.cr2");
    }
}

/// The frame's IOPL: 0 whatever `PHYSDEVOP_set_iopl` says, unless the domain
/// enabled VMASST_TYPE_architectural_iopl; the handler itself always runs
/// with IOPL 0.
fn iopl_cases(t: &mut Failures, ud: &Case) {
    check_eq!(t, cpu::set_iopl(3), Ok(0), "PHYSDEVOP_set_iopl(3)");
    println!("-- #UD with virtual IOPL 3");
    run_case_with(t, ud, 1, true, 0);
    let r = hypercall::vm_assist(VMASST_CMD_ENABLE, VMASST_TYPE_ARCHITECTURAL_IOPL);
    check_eq!(t, r, Ok(0), "vm_assist(enable, architectural_iopl)");
    println!("-- #UD with virtual IOPL 3 and VMASST architectural_iopl");
    run_case_with(t, ud, 1, true, 3);
    let r = hypercall::vm_assist(VMASST_CMD_DISABLE, VMASST_TYPE_ARCHITECTURAL_IOPL);
    check_eq!(t, r, Ok(0), "vm_assist(disable, architectural_iopl)");
    check_eq!(t, cpu::set_iopl(0), Ok(0), "PHYSDEVOP_set_iopl(0)");
}

/// #NP and #SS through a guest GDT whose entry 1 is not present.
fn segment_cases(t: &mut Failures, si: &xen_abi::start_info::StartInfo) {
    let va = (&raw const GDT) as u64;
    // SAFETY: GDT is this file's page, not yet handed to Xen.
    unsafe { (&raw mut GDT.0[1]).write_volatile(NOT_PRESENT_DATA) };
    let pfn = (va - boot::virt_base()) >> 12;
    // SAFETY: mfn_list holds nr_pages entries; pfn is inside the image.
    let mfn = unsafe { (si.mfn_list as *const u64).add(pfn as usize).read() };
    let pte = mfn << 12 | PTE_PRESENT | PTE_ACCESSED;
    // SAFETY: the GDT page becomes read-only (Xen requires that of a GDT
    // frame); nothing else uses it.
    let r = unsafe { hypercall::update_va_mapping(va, pte, UVMF_INVLPG) };
    if !check_eq!(t, r, Ok(0), "update_va_mapping(GDT page read-only)") {
        return;
    }
    let frames = [mfn];
    // SAFETY: the frame holds valid descriptors; the kernel's own selectors
    // (0xe033/0xe02b, Xen's) are not in it.
    let r = unsafe { hypercall::call(SET_GDT, [frames.as_ptr() as u64, 512, 0, 0, 0]) };
    if check_eq!(t, r, 0, "set_gdt(1 frame, 512 entries)") {
        let (fs_rip, ss_rip) = (
            addr(&raw const tb_load_fs_insn),
            addr(&raw const tb_load_ss_insn),
        );
        let cases = [
            Case {
                name: "#NP(8) (mov fs of a not-present descriptor)",
                routine: tb_load_fs,
                args: [0, NP_SELECTOR, 0],
                vector: NP,
                error_code: Some(NP_SELECTOR & !3),
                rip: fs_rip,
                cr2: None,
            },
            Case {
                name: "#SS(8) (mov ss of a not-present descriptor)",
                routine: tb_load_ss,
                args: [0, NP_SELECTOR, 0],
                vector: SS,
                error_code: Some(NP_SELECTOR & !3),
                rip: ss_rip,
                cr2: None,
            },
        ];
        for case in &cases {
            run_case(t, case, 1);
        }
        // SAFETY: no selector of the guest GDT is loaded.
        let r = unsafe { hypercall::call(SET_GDT, [frames.as_ptr() as u64, 0, 0, 0, 0]) };
        check_eq!(t, r, 0, "set_gdt(0 entries)");
    }
    let pte = pte | PTE_RW | PTE_DIRTY;
    // SAFETY: the page is no GDT any more; it becomes writable again.
    let r = unsafe { hypercall::update_va_mapping(va, pte, UVMF_INVLPG) };
    check!(t, r == Ok(0), "update_va_mapping(GDT page writable): {r:?}");
}
