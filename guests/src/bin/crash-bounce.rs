//! Test kernel `crash-bounce`: an exception whose bounce frame cannot be written crashes the domain.
//!
//! Command line: `rsp=hole` (default; RSP inside the hypervisor's reserved
//! range 0xffff800000000000-0xffff87ffffffffff), `rsp=unmapped` (RSP in an
//! unmapped guest page) or `rsp=noncanonical`. The kernel loads that RSP and
//! executes `ud2`. Xen (x86_64/entry.S create_bounce_frame) refuses a frame in
//! its own range and crashes the domain when writing the frame faults, so the
//! correct outcome is a crashed domain and no verdict line (`expect=crash`).
//! Registered handlers exist for every exception: the crash is about the
//! stack, not a missing handler.
#![no_std]
#![no_main]

use core::arch::asm;

use xenolith_guests::{error, println, test_main, Boot, Verdict};

test_main!(crash_bounce);

fn crash_bounce(boot: &Boot) -> Verdict {
    let which = boot.arg("rsp").unwrap_or("hole");
    let rsp: u64 = match which {
        // Middle of the hypervisor's 16 L4 slots (not the read-only M2P).
        "hole" => 0xffff_8400_0000_0000,
        // 1 MiB: the image lives at 0xffffffff80000000, nothing maps low memory.
        "unmapped" => 0x10_0000,
        "noncanonical" => 0x8000_0000_0000_0000,
        _ => error("rsp= must be hole, unmapped or noncanonical"),
    };
    println!("crash-bounce: executing ud2 with RSP = {rsp:#x} ({which})");
    println!(
        "crash-bounce: the hypervisor must crash the domain now; a verdict line means it did not"
    );
    // SAFETY: deliberately unrecoverable: the exception cannot be delivered,
    // and the hypervisor is expected to crash the domain. Nothing after the
    // ud2 runs in a correct hypervisor.
    unsafe {
        asm!("mov rsp, {rsp}", "ud2", rsp = in(reg) rsp, options(noreturn));
    }
}
