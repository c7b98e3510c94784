//! Test kernel `crash-nohandler`: an exception on a vector with no trap-table entry crashes the domain.
//!
//! Command line: `fault=ud` (default, `ud2` → #UD), `fault=pf` (read of
//! address 0 → #PF) or `fault=bp` (`int3`). The kernel clears its whole trap
//! table (`set_trap_table(NULL)`), checks that the call succeeded, then
//! raises the exception. Xen finds a null trap bounce and crashes the domain
//! (x86_64/entry.S create_bounce_frame), so the correct outcome is a crashed
//! domain and no verdict line (`expect=crash`).
#![no_std]
#![no_main]

use core::arch::asm;

use xenolith_guests::{error, hypercall, println, test_main, Boot, Verdict};

test_main!(crash_nohandler);

fn crash_nohandler(boot: &Boot) -> Verdict {
    let fault = boot.arg("fault").unwrap_or("ud");
    if !matches!(fault, "ud" | "pf" | "bp") {
        error("fault= must be ud, pf or bp");
    }
    // SAFETY: a NULL table clears every entry; no exception is expected
    // until the deliberate one below.
    let r = unsafe { hypercall::call(xen_abi::hypercall::SET_TRAP_TABLE, [0; 5]) };
    println!("crash-nohandler: set_trap_table(NULL) returned {r}");
    if r != 0 {
        error("set_trap_table(NULL) failed");
    }
    println!("crash-nohandler: raising {fault} with no handler; the hypervisor must crash the domain now");
    // SAFETY: deliberately unrecoverable: nothing after the faulting
    // instruction runs in a correct hypervisor.
    unsafe {
        match fault {
            "ud" => asm!("ud2", options(noreturn)),
            "pf" => asm!("mov rax, [0]", "ud2", options(noreturn)),
            _ => asm!("int3", "ud2", options(noreturn)),
        }
    }
}
