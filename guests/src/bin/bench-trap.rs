//! Bench kernel `bench-trap`: exception bounce, software interrupt and user-mode syscall round trips.
//!
//! Command line: none needed (ignored). Prints `bench <name> <iterations>
//! <total_cycles>` for each path (see `xenolith_guests::bench`). The handlers
//! are minimal assembly stubs (pop RCX/R11, count, `HYPERVISOR_iret`), so the
//! figures are almost all hypervisor work:
//!
//! * `exception-bounce-ud`: `ud2` in kernel mode, #UD bounced to the trap
//!   table's handler, which skips the `ud2` and returns with
//!   `HYPERVISOR_iret`; the handler must run once per `ud2`.
//! * `int80-round-trip`: `int $0x80` in kernel mode to a trap-table entry and
//!   back through `HYPERVISOR_iret`; the handler must run once per `int`.
//! * `syscall-round-trip`: `SYSCALL` in guest user mode, delivered to the
//!   registered syscall callback, which returns to user mode with
//!   `HYPERVISOR_iret` and `VGCF_in_syscall` (the way Linux returns from a
//!   system call). The loop runs in user mode and reads the TSC there; it
//!   ends with `int3`, caught by a raw stub back in the kernel. The callback
//!   must run once per `SYSCALL` and the loop must have run in user mode.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

use xen_abi::callback::{CALLBACKF_MASK_EVENTS, CALLBACKTYPE_SYSCALL};
use xen_abi::hypercall::{HYPERCALL_STUB_SIZE, IRET};
use xen_abi::layout::{FLAT_KERNEL_CS, FLAT_USER_CS, VGCF_IN_SYSCALL};
use xen_abi::trap::{TrapInfo, TI_MASK_EVENTS};
use xenolith_guests::rawtrap::{self, reg};
use xenolith_guests::{
    bench, check, check_eq, hypercall, println, shared_info, test_main, traps, Boot, Failures,
    Verdict,
};

test_main!(run);

/// Handler runs, counted by the stubs.
static mut UD_COUNT: u64 = 0;
static mut INT80_COUNT: u64 = 0;
static mut SYSCALL_COUNT: u64 = 0;
/// Iterations of the user-mode loop (read in user mode).
static mut USER_ITERS: u64 = 0;

global_asm!(
    ".pushsection .text.bench_trap, \"ax\", @progbits",
    // #UD: skip the 2-byte ud2 in the frame's RIP and return.
    "bench_ud_handler:",
    "pop rcx",
    "pop r11",
    "add qword ptr [rsp], 2",
    "inc qword ptr [rip + {ud_count}]",
    "push 0",
    "jmp xg_hypercall_page + {iret}",
    // int $0x80: RIP already points past the int.
    "bench_int80_handler:",
    "pop rcx",
    "pop r11",
    "inc qword ptr [rip + {int80_count}]",
    "push 0",
    "jmp xg_hypercall_page + {iret}",
    // Syscall callback: back to user mode the way Linux does it.
    "bench_syscall_handler:",
    "pop rcx",
    "pop r11",
    "inc qword ptr [rip + {syscall_count}]",
    "push {in_syscall}",
    "jmp xg_hypercall_page + {iret}",
    // User mode: r12/r13 = TSC before/after USER_ITERS syscalls, r14 = CS,
    // rbx = iterations left; then int3 back to the kernel.
    "bench_user_loop:",
    "mov rbx, [rip + {user_iters}]",
    "mov r14, cs",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "mov r12, rax",
    "test rbx, rbx",
    "jz 3f",
    "2:",
    "mov eax, 17",
    "xor edi, edi",
    "syscall",
    "dec rbx",
    "jnz 2b",
    "3:",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "mov r13, rax",
    "int3",
    "ud2",
    ".popsection",
    ud_count = sym UD_COUNT,
    int80_count = sym INT80_COUNT,
    syscall_count = sym SYSCALL_COUNT,
    user_iters = sym USER_ITERS,
    in_syscall = const VGCF_IN_SYSCALL,
    iret = const IRET as usize * HYPERCALL_STUB_SIZE,
);

extern "C" {
    static bench_ud_handler: u8;
    static bench_int80_handler: u8;
    static bench_syscall_handler: u8;
    static bench_user_loop: u8;
}

fn addr(sym: &u8) -> u64 {
    sym as *const u8 as u64
}

fn count(c: *const u64) -> u64 {
    // SAFETY: the counters are plain statics, written only by the stubs.
    unsafe { c.read_volatile() }
}

fn run(b: &Boot) -> Verdict {
    let mut t = Failures::new();
    if shared_info::map(b.start_info).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    // SAFETY: labels of the stubs above.
    let (ud, int80) = unsafe { (addr(&bench_ud_handler), addr(&bench_int80_handler)) };
    let table = [
        TrapInfo {
            vector: 6,
            flags: TI_MASK_EVENTS,
            cs: FLAT_KERNEL_CS,
            pad: 0,
            address: ud,
        },
        TrapInfo {
            vector: 0x80,
            flags: 3 | TI_MASK_EVENTS,
            cs: FLAT_KERNEL_CS,
            pad: 0,
            address: int80,
        },
        TrapInfo::default(),
    ];
    // SAFETY: both stubs cope with Xen's bounce frame for their vector.
    let r = unsafe { hypercall::set_trap_table(&table) };
    if r != Ok(0) {
        println!("ERROR: set_trap_table: {r:?}");
        xenolith_guests::error("cannot install the bench handlers");
    }

    let m = bench::measure("exception-bounce-ud", 500, || {
        // SAFETY: the #UD handler skips the ud2 and restores every register
        // and RFLAGS.
        unsafe { asm!("ud2") };
    });
    check_eq!(
        t,
        count(&raw const UD_COUNT),
        m.calls,
        "#UD handler runs for {} ud2",
        m.calls
    );

    let m = bench::measure("int80-round-trip", 500, || {
        // SAFETY: the handler restores every register and RFLAGS.
        unsafe { asm!("int 0x80") };
    });
    check_eq!(
        t,
        count(&raw const INT80_COUNT),
        m.calls,
        "int $0x80 handler runs for {} int $0x80",
        m.calls
    );

    user_syscall(&mut t);
    check_eq!(t, traps::install(), Ok(0), "restoring the trap table");
    t.verdict()
}

fn user_syscall(t: &mut Failures) {
    const NAME: &str = "syscall-round-trip";
    if let Err(e) = rawtrap::setup_user_mode() {
        println!("FAIL: user-mode set-up: {e:?}");
        t.fail(format_args!("{NAME}: cannot enter user mode"));
        return;
    }
    // #BP (DPL 3) ends the user loop in a raw stub.
    check_eq!(
        t,
        rawtrap::install(&[(3, 3 | TI_MASK_EVENTS)]),
        Ok(0),
        "set_trap_table(#BP to a raw stub)"
    );
    // SAFETY: the stub returns to user mode with HYPERVISOR_iret, restoring
    // every register but RCX/R11 (which SYSCALL clobbers anyway).
    let r = unsafe {
        hypercall::callback_register(
            CALLBACKTYPE_SYSCALL,
            CALLBACKF_MASK_EVENTS,
            addr(&bench_syscall_handler),
        )
    };
    check_eq!(t, r, Ok(0), "callback_op(register syscall)");
    let mut rounds = 0u64;
    let mut problem = None;
    let m = bench::measure_rounds(NAME, 500, |n| {
        let before = count(&raw const SYSCALL_COUNT);
        // SAFETY: single-threaded; read by the user loop started next.
        unsafe { (&raw mut USER_ITERS).write_volatile(n) };
        // SAFETY: user mode is set up; the loop ends in int3, which reaches
        // the raw #BP stub; the syscall stub only counts.
        let tr =
            unsafe { rawtrap::call_user(addr(&bench_user_loop), rawtrap::user_stack_top(), 0x2) };
        rounds += 1;
        let ran = count(&raw const SYSCALL_COUNT) - before;
        if tr.tag != 3
            || tr.regs[reg::RBX] != 0
            || tr.regs[reg::R14] != u64::from(FLAT_USER_CS | 3)
            || ran != n
        {
            problem = Some((tr.tag, tr.regs[reg::RBX], tr.regs[reg::R14], ran));
            return None;
        }
        Some(tr.regs[reg::R13].wrapping_sub(tr.regs[reg::R12]))
    });
    if let Some((tag, rbx, cs, ran)) = problem {
        t.fail(format_args!(
            "{NAME}: round {rounds}: the user loop ended at handler {tag:#x} with {rbx} \
             iterations left, CS {cs:#x}, after {ran} syscall callbacks"
        ));
    }
    check!(t, m.is_some(), "{NAME}: no measurement");
}
