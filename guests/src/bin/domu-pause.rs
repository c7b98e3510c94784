//! Test kernel `domu-pause`: pausing and at once unpausing a domU whose vCPU
//! is running on another CPU never lets that vCPU run twice.
//!
//! Command line: none. Run on two CPUs (`cpus=2`, default scheduler).
//!
//! The domU counts in a register and stores every new value to its data
//! page, so a second copy of its vCPU started from older registers would
//! make the stored count go backwards. dom0 (on the other CPU) issues 2000
//! multicalls of `pausedomain`, `unpausedomain` and `SCHEDOP_yield`: inside
//! one multicall the vCPU cannot have left its CPU when it is woken again,
//! and the yield makes dom0's CPU choose at once, when the woken vCPU is
//! the best candidate.
//!
//! Checked, with Xen 4.17's answers: every entry of every multicall returns
//! 0; the count read by dom0 never decreases and keeps growing (the domU
//! still runs at the end); getdomaininfo shows the domU neither shut down
//! nor paused.
#![no_std]
#![no_main]

use core::arch::global_asm;

use xen_abi::hypercall::{DOMCTL, SCHED_OP};
use xen_abi::sched::SCHEDOP_YIELD;
use xenolith_guests::builder::{self, map_foreign, TinyDomain, PFN_DATA};
use xenolith_guests::domctl::UNPAUSEDOMAIN;
use xenolith_guests::domctl::{self, Domctl, DOMINF_PAUSED, DOMINF_SHUTDOWN, PAUSEDOMAIN};
use xenolith_guests::mm::{self, mc_entry, Mm};
use xenolith_guests::{check, check_eq, println, shared_info, test_main, vcpu};
use xenolith_guests::{Boot, Failures, Verdict};

test_main!(run);

const MS: u64 = 1_000_000;
const ROUNDS: u32 = 2000;
/// mm window used to watch the domU's data page.
const WATCH: usize = 1;

// rbx = data page; rax counts; every value goes to [rbx].
global_asm!(
    ".pushsection .text.domu_pause, \"ax\", @progbits",
    ".balign 16",
    "xg_domu_pause_start:",
    "lea rbx, [rip + xg_domu_pause_start]",
    "add rbx, 4096",
    "xor eax, eax",
    "2:",
    "inc rax",
    "mov [rbx], rax",
    "jmp 2b",
    "xg_domu_pause_end:",
    ".popsection",
);

extern "C" {
    static xg_domu_pause_start: u8;
    static xg_domu_pause_end: u8;
}

fn domu_code() -> &'static [u8] {
    let start = (&raw const xg_domu_pause_start) as usize;
    let end = (&raw const xg_domu_pause_end) as usize;
    // SAFETY: the two labels delimit the assembled bytes in .text, mapped
    // read-only for the kernel's life.
    unsafe { core::slice::from_raw_parts(start as *const u8, end - start) }
}

/// The domU's count as stored last.
fn count(data: u64) -> u64 {
    // SAFETY: `data` is a window mapping the domU's data page read-only; the
    // domU writes the word meanwhile, hence the volatile read.
    unsafe { core::ptr::read_volatile(data as *const u64) }
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    if shared_info::map(boot.start_info).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    let _mm = Mm::new(boot.start_info);
    let (domid, mfns) = match builder::create_populated() {
        Ok(r) => r,
        Err(e) => {
            println!("creating the domU: {e:?}");
            xenolith_guests::error("cannot create a domU");
        }
    };
    let si = builder::shared_info_mfn(domid).unwrap_or_else(|e| {
        println!("getdomaininfo: {e:?}");
        xenolith_guests::error("no shared_info for the domU");
    });
    let d = match TinyDomain::build(domid, mfns, domu_code(), si, "domu-pause") {
        Ok(d) => d,
        Err(e) => {
            println!("building the domU: {e:?}");
            xenolith_guests::error("cannot write the domU's pages");
        }
    };
    if !check_eq!(t, d.set_context(0), Ok(0), "setvcpucontext(0)") {
        xenolith_guests::error("the domU has no vCPU context");
    }
    let Ok(data) = map_foreign(WATCH, domid, d.mfn(PFN_DATA), false) else {
        xenolith_guests::error("cannot map the domU's data page");
    };
    check_eq!(t, domctl::unpause_domain(domid), Ok(0), "unpausedomain");
    let deadline = vcpu::now_ns() + 1000 * MS;
    while count(data) < 1000 && vcpu::now_ns() < deadline {
        core::hint::spin_loop();
    }
    check!(t, count(data) >= 1000, "the domU counts");

    let mut pause = Domctl::new(PAUSEDOMAIN, domid);
    let mut unpause = Domctl::new(UNPAUSEDOMAIN, domid);
    let mut last = count(data);
    let (mut backwards, mut failed) = (0u32, 0u32);
    for _ in 0..ROUNDS {
        let mut entries = [
            mc_entry(DOMCTL, &[(&raw mut pause) as u64]),
            mc_entry(DOMCTL, &[(&raw mut unpause) as u64]),
            mc_entry(SCHED_OP, &[u64::from(SCHEDOP_YIELD), 0]),
        ];
        // SAFETY: two domctls on the domU, with their structures alive, and a
        // yield.
        let r = unsafe { mm::multicall(&mut entries) };
        if r.is_err() || entries.iter().any(|e| e.result != 0) {
            failed += 1;
        }
        let now = count(data);
        if now < last {
            backwards += 1;
        }
        last = now;
    }
    check_eq!(t, failed, 0, "multicalls with a failing entry");
    check_eq!(t, backwards, 0, "times the domU's count went backwards");
    let before = count(data);
    let deadline = vcpu::now_ns() + 1000 * MS;
    while count(data) <= before + 1000 && vcpu::now_ns() < deadline {
        core::hint::spin_loop();
    }
    check!(
        t,
        count(data) > before + 1000,
        "the domU still runs ({before} -> {})",
        count(data)
    );
    if let Ok((_, i)) = domctl::getdomaininfo(domid) {
        check_eq!(
            t,
            i.flags & (DOMINF_PAUSED | DOMINF_SHUTDOWN),
            0,
            "domU neither paused nor shut down"
        );
    }
    println!("{ROUNDS} pause/unpause pairs; count {}", count(data));
    mm::unmap_window(WATCH).expect("restoring the watch window");
    check_eq!(t, domctl::pause_domain(domid), Ok(0), "pausedomain");
    check_eq!(t, domctl::destroy_domain(domid), Ok(0), "destroydomain");
    t.verdict()
}
