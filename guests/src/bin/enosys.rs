//! Test kernel `enosys`: unknown hypercalls and sub-ops fail with -ENOSYS and change nothing else.
//!
//! Command line: none needed (ignored). Numbers below 128 go through the
//! hypercall page, larger ones through a raw `SYSCALL`. Every register is
//! loaded with a known pattern; after the call only `rax` (and, for a raw
//! `SYSCALL`, `rcx`/`r11`) may differ. Xen never clobbers argument registers
//! on an -ENOSYS return (pv/hypercall.c skips `clobber_regs` then).
#![no_std]
#![no_main]

use core::arch::global_asm;

use xen_abi::hypercall::{
    CALLBACK_OP, CONSOLE_IO, EVENT_CHANNEL_OP, HYPERCALL_STUB_SIZE, MEMORY_OP, PHYSDEV_OP,
    SCHED_OP, VCPU_OP, VM_ASSIST, XEN_VERSION,
};
use xen_abi::mmu::MmuextOp;
use xen_abi::types::DOMID_SELF;
use xen_abi::Errno;
use xenolith_guests::{check, check_eq, hypercall, println, test_main, Boot, Failures, Verdict};

test_main!(enosys);

const ENOSYS: i64 = Errno::ENOSYS.as_ret();

/// Numbers below 128 with no handler in Xen 4.17 (xen/include/hypercall-defs.c
/// and public/xen.h): 11 (unused), 38 (tmem_op, removed), 39 (argo_op, not
/// built by Debian), 43-47 (unallocated), 50-55 (arch_2..arch_7, unused on
/// x86), 56-127 (unallocated).
fn unknown_below_128() -> impl Iterator<Item = u64> {
    [11, 38, 39].into_iter().chain(43..=47).chain(50..=127)
}

/// Numbers without a page slot; the last has xen_version's number in its
/// low 32 bits (Xen decodes all 64 bits of rax).
const UNKNOWN_ABOVE_127: [u64; 7] = [128, 255, 256, 0x1000, 0x8000_0000, 0x1_0000_0011, u64::MAX];

/// Register order of the in/out arrays of `xg_regcheck` (index 7, rsp, unused).
const NAMES: [&str; 16] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

// xg_regcheck(regs_in: *const [u64; 16], regs_out: *mut [u64; 16], target: u64):
// loads every GPR but rsp from regs_in, then `call target` (a hypercall page
// slot) or, if target is 0, `syscall`; stores every GPR to regs_out.
global_asm!(
    ".pushsection .text.xg_regcheck, \"ax\", @progbits",
    "xg_regcheck:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rsi",
    "push rdx",
    "mov rax, [rdi + 0]",
    "mov rbx, [rdi + 8]",
    "mov rcx, [rdi + 16]",
    "mov rdx, [rdi + 24]",
    "mov rsi, [rdi + 32]",
    "mov rbp, [rdi + 48]",
    "mov r8, [rdi + 64]",
    "mov r9, [rdi + 72]",
    "mov r10, [rdi + 80]",
    "mov r11, [rdi + 88]",
    "mov r12, [rdi + 96]",
    "mov r13, [rdi + 104]",
    "mov r14, [rdi + 112]",
    "mov r15, [rdi + 120]",
    "mov rdi, [rdi + 40]",
    "cmp qword ptr [rsp], 0",
    "je 2f",
    "call qword ptr [rsp]",
    "jmp 3f",
    "2:",
    "syscall",
    "3:",
    "xchg rax, [rsp + 8]",
    "mov [rax + 8], rbx",
    "mov [rax + 16], rcx",
    "mov [rax + 24], rdx",
    "mov [rax + 32], rsi",
    "mov [rax + 40], rdi",
    "mov [rax + 48], rbp",
    "mov [rax + 56], rsp",
    "mov [rax + 64], r8",
    "mov [rax + 72], r9",
    "mov [rax + 80], r10",
    "mov [rax + 88], r11",
    "mov [rax + 96], r12",
    "mov [rax + 104], r13",
    "mov [rax + 112], r14",
    "mov [rax + 120], r15",
    "mov rbx, [rsp + 8]",
    "mov [rax], rbx",
    "add rsp, 16",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
    ".popsection",
);

extern "C" {
    fn xg_regcheck(regs_in: *const [u64; 16], regs_out: *mut [u64; 16], target: u64);
}

/// Makes hypercall `nr` with arguments `args` and every other register set to
/// a pattern; checks the result and that no register but the allowed ones
/// changed.
fn call_checked(
    t: &mut Failures,
    what: &str,
    nr: u64,
    args: [u64; 5],
    via_page: bool,
    expect: i64,
) {
    let mut regs_in = [0u64; 16];
    for (i, r) in regs_in.iter_mut().enumerate() {
        *r = 0x5a5a_0000_0000_0000 | (i as u64) << 32 | nr & 0xffff_ffff;
    }
    regs_in[0] = nr;
    // rdi, rsi, rdx, r10, r8
    for (slot, arg) in [5, 4, 3, 10, 8].into_iter().zip(args) {
        regs_in[slot] = arg;
    }
    let target = if via_page {
        assert!(nr < hypercall::PAGE_SLOTS);
        xenolith_guests::boot::hypercall_page() + nr * HYPERCALL_STUB_SIZE as u64
    } else {
        0
    };
    let mut regs_out = [0u64; 16];
    // SAFETY: xg_regcheck restores the callee-saved registers and the stack;
    // the caller picks hypercalls that have no effect (unknown numbers or
    // sub-ops) and arguments that Xen does not dereference on those paths.
    unsafe { xg_regcheck(&regs_in, &mut regs_out, target) };
    let how = if via_page { "page" } else { "syscall" };
    let ret = regs_out[0] as i64;
    check!(
        t,
        ret == expect,
        "{what} (hypercall {nr:#x} {args:x?} via {how}) returned {ret}, expected {expect}"
    );
    for i in 1..16 {
        let may_change = i == 7 || (!via_page && (i == 2 || i == 11));
        if !may_change {
            check_eq!(
                t,
                regs_out[i],
                regs_in[i],
                "{} after {what} (hypercall {nr:#x} via {how})",
                NAMES[i]
            );
        }
    }
}

fn enosys(_boot: &Boot) -> Verdict {
    let mut t = Failures::new();

    let mut n = 0;
    for nr in unknown_below_128() {
        call_checked(&mut t, "unknown", nr, [1, 2, 3, 4, 5], true, ENOSYS);
        call_checked(&mut t, "unknown", nr, [0; 5], false, ENOSYS);
        n += 1;
    }
    println!("{n} unknown hypercall numbers below 128 checked");
    for nr in UNKNOWN_ABOVE_127 {
        call_checked(&mut t, "unknown", nr, [1, 2, 3, 4, 5], false, ENOSYS);
    }
    println!(
        "{} unknown hypercall numbers above 127 checked",
        UNKNOWN_ABOVE_127.len()
    );

    // Unknown sub-ops of known hypercalls: (number, name, cmd, Xen's answer).
    let subops: [(u64, &str, u64, i64); 9] = [
        (XEN_VERSION, "xen_version", 0x7fff, ENOSYS),
        (SCHED_OP, "sched_op", 0x1234, ENOSYS),
        (CONSOLE_IO, "console_io", 99, ENOSYS),
        (MEMORY_OP, "memory_op", 0x3f, ENOSYS),
        (VCPU_OP, "vcpu_op", 0x7f, ENOSYS),
        (EVENT_CHANNEL_OP, "event_channel_op", 0x7f, ENOSYS),
        (CALLBACK_OP, "callback_op", 0x7f, ENOSYS),
        (PHYSDEV_OP, "physdev_op", 0x7f, ENOSYS),
        (VM_ASSIST, "vm_assist", 0x7f, ENOSYS),
    ];
    for (nr, name, cmd, expect) in subops {
        // Second argument 0: vcpu 0 for vcpu_op, a NULL handle elsewhere.
        call_checked(&mut t, name, nr, [cmd, 0, 0, 0, 0], true, expect);
    }

    // mmuext_op: an unknown command in the batch fails the batch with -ENOSYS.
    let op = MmuextOp {
        cmd: 0x7f,
        ..Default::default()
    };
    // SAFETY: the only operation is unknown, so nothing is changed.
    let r = unsafe { hypercall::mmuext_op(&[op], DOMID_SELF) };
    check_eq!(t, r, Err(Errno::ENOSYS), "mmuext_op with unknown cmd 0x7f");
    println!("unknown sub-ops checked");

    // The domain keeps running: a known hypercall still works afterwards.
    // SAFETY: XENVER_version takes no argument.
    let v = unsafe { hypercall::xen_version(0, 0) };
    check!(
        t,
        v > 0,
        "xen_version after the unknown hypercalls returned {v}"
    );
    t.verdict()
}
