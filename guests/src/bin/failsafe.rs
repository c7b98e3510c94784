//! Test kernel `failsafe`: the failsafe callback, entered when the hypervisor
//! cannot reload a data segment register on switching back to a vCPU.
//!
//! Command line: none. Run with the hypervisor option `dom0_max_vcpus=2` on
//! one CPU, so that vCPU 1 (a spinner) runs whenever vCPU 0 sleeps, and
//! vCPU 0 is switched back in afterwards.
//!
//! Checked, with Xen 4.17's answers:
//! * DS loaded with a present GDT data selector survives a switch away and
//!   back (no failsafe callback).
//! * With that descriptor made not-present by `update_descriptor` while DS
//!   still holds it, the next switch back enters the failsafe callback once,
//!   with Xen's frame: RCX, R11, DS (the saved selector), ES, FS, GS, then
//!   RIP (inside the hypercall page's sched_op slot), CS 0xe030 (kernel mode
//!   returning to itself, RPL cleared) with the event mask (1) in bits
//!   32-39, RFLAGS without IF (events were masked), RSP, SS 0xe02b; the
//!   frame sits 16-byte aligned below the saved RSP. DS reads null
//!   afterwards, and the next switch enters no callback.
#![no_std]
#![no_main]

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use xen_abi::callback::CALLBACKTYPE_FAILSAFE;
use xen_abi::hypercall::{HYPERCALL_STUB_SIZE, IRET, SCHED_OP, SET_GDT, UPDATE_DESCRIPTOR};
use xen_abi::vcpu::VCPUOP_UP;
use xen_abi::Errno;
use xenolith_guests::mm::{fill_page, Mm};
use xenolith_guests::probe::{probe_load_ds, read_ds, read_es, read_fs};
use xenolith_guests::smp::IdlePort;
use xenolith_guests::{
    boot, check, check_eq, hypercall, println, shared_info, smp, test_main, Boot, Failures, Verdict,
};

test_main!(run);

const MS: u64 = 1_000_000;
/// Flat 4 GiB data, read/write, DPL 3.
const DATA_DPL3: u64 = 0x00cf_f200_0000_ffff;
/// The same, not present.
const NOT_PRESENT: u64 = 0x00cf_7200_0000_ffff;
/// GDT entry 1 with RPL 3.
const SEL: u16 = 0x0b;

#[repr(C, align(16))]
struct Stack([u8; 8192]);
static mut SPIN_STACK: Stack = Stack([0; 8192]);

#[no_mangle]
static FS_FRAME: [AtomicU64; 11] = [const { AtomicU64::new(0) }; 11];
#[no_mangle]
static FS_COUNT: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static FS_ENTRY_RSP: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static FS_IRET_SLOT: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static SPINS: AtomicU64 = AtomicU64::new(0);

// The failsafe entry records the frame and its address, drops RCX, R11 and
// the four selectors (RCX and R11 are still live), and returns through the
// iret slot with a flags word of 0. The spinner counts forever.
global_asm!(
    ".global failsafe_entry",
    "failsafe_entry:",
    "mov [rip + FS_ENTRY_RSP], rsp",
    "push rax",
    "push rcx",
    "push rsi",
    "push rdi",
    "lea rsi, [rsp + 32]",
    "lea rdi, [rip + FS_FRAME]",
    "mov ecx, 11",
    "cld",
    "rep movsq",
    "lock inc qword ptr [rip + FS_COUNT]",
    "pop rdi",
    "pop rsi",
    "pop rcx",
    "pop rax",
    "add rsp, 48",
    "push 0",
    "jmp qword ptr [rip + FS_IRET_SLOT]",
    ".global failsafe_spinner",
    "failsafe_spinner:",
    "lock inc qword ptr [rip + SPINS]",
    "pause",
    "jmp failsafe_spinner",
);

extern "C" {
    fn failsafe_entry();
    fn failsafe_spinner();
}

fn set_gdt(frames: &[u64], entries: u64) -> Result<u64, Errno> {
    // SAFETY: Xen reads the frame list; the kernel's CS/SS are Xen's flat
    // selectors, which no guest GDT affects.
    hypercall::result(unsafe {
        hypercall::call(SET_GDT, [frames.as_ptr() as u64, entries, 0, 0, 0])
    })
}

fn update_descriptor(maddr: u64, desc: u64) -> Result<u64, Errno> {
    // SAFETY: the target is the test's own GDT frame.
    hypercall::result(unsafe { hypercall::call(UPDATE_DESCRIPTOR, [maddr, desc, 0, 0, 0]) })
}

fn read_gs() -> u16 {
    let sel: u16;
    // SAFETY: reading a segment register has no side effects.
    unsafe {
        core::arch::asm!("mov {0:x}, gs", out(reg) sel, options(nomem, nostack, preserves_flags))
    };
    sel
}

/// Sleeps `ns` on the idle port so that vCPU 1 runs meanwhile; returns how
/// far vCPU 1 got.
fn sleep(idle: IdlePort, ns: u64) -> u64 {
    let before = SPINS.load(SeqCst);
    idle.sleep(ns);
    SPINS.load(SeqCst) - before
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    let si = boot.start_info;
    if shared_info::map(si).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    let mut mm = Mm::new(si);
    FS_IRET_SLOT.store(
        boot::hypercall_page() + IRET * HYPERCALL_STUB_SIZE as u64,
        SeqCst,
    );
    let idle = IdlePort::bind();
    // SAFETY: the entry point above handles Xen's failsafe frame.
    let r = unsafe {
        hypercall::callback_register(CALLBACKTYPE_FAILSAFE, 0, failsafe_entry as *const () as u64)
    };
    check_eq!(t, r, Ok(0), "register the failsafe callback");

    // vCPU 1 spins.
    let top = (&raw const SPIN_STACK) as u64 + 8192;
    let r = smp::initialise(1, failsafe_spinner as *const () as u64, top, |_| {});
    if r.is_err() {
        println!("initialise(1): {r:?}; is dom0_max_vcpus=2 given?");
        return Verdict::Failure;
    }
    check_eq!(t, smp::vcpu_op(VCPUOP_UP, 1, 0), Ok(0), "up(1)");

    // A GDT whose entry 1 is a DPL-3 data segment, loaded into DS.
    let gdt = mm.alloc();
    let filled = fill_page(gdt.mfn, |p| {
        p.fill(0);
        p[1] = DATA_DPL3;
    });
    check_eq!(t, filled, Ok(()), "fill the GDT frame");
    check_eq!(t, set_gdt(&[gdt.mfn], 16), Ok(0), "set_gdt");
    // SAFETY: the kernel does not use DS for addressing in 64-bit mode.
    let loaded = unsafe { probe_load_ds(SEL) };
    check_eq!(t, loaded, Ok(()), "load DS with {SEL:#x}");
    let (es, fs, gs) = (read_es(), read_fs(), read_gs());

    // A switch away and back keeps a valid DS and enters no callback.
    let spun = sleep(idle, 50 * MS);
    check!(t, spun > 0, "vCPU 1 did not run while vCPU 0 slept");
    check_eq!(t, read_ds(), SEL, "DS after a switch away and back");
    check_eq!(
        t,
        FS_COUNT.load(SeqCst),
        0,
        "failsafe callbacks with a valid DS"
    );

    // The descriptor goes away while DS holds it: the reload fails.
    check_eq!(
        t,
        update_descriptor(gdt.maddr(8), NOT_PRESENT),
        Ok(0),
        "update_descriptor to not present"
    );
    check_eq!(t, read_ds(), SEL, "DS right after the update");
    let spun = sleep(idle, 50 * MS);
    check!(t, spun > 0, "vCPU 1 did not run while vCPU 0 slept (2)");
    check_eq!(
        t,
        FS_COUNT.load(SeqCst),
        1,
        "failsafe callbacks after the reload failed"
    );
    check_eq!(t, read_ds(), 0, "DS after the failsafe callback");
    let f: [u64; 11] = core::array::from_fn(|i| FS_FRAME[i].load(SeqCst));
    println!("failsafe frame: {f:#x?}");
    check_eq!(t, f[2], u64::from(SEL), "frame DS");
    check_eq!(t, f[3], u64::from(es), "frame ES");
    check_eq!(t, f[4], u64::from(fs), "frame FS");
    check_eq!(t, f[5], u64::from(gs), "frame GS");
    let slot = boot::hypercall_page() + SCHED_OP * HYPERCALL_STUB_SIZE as u64;
    check!(
        t,
        (slot..slot + HYPERCALL_STUB_SIZE as u64).contains(&f[6]),
        "frame RIP {:#x} not in the sched_op slot at {slot:#x}",
        f[6]
    );
    check_eq!(t, f[7] & 0xffff, 0xe030, "frame CS");
    check_eq!(t, (f[7] >> 32) & 0xff, 1, "frame CS saved event mask");
    check_eq!(t, f[8] & (1 << 9), 0, "frame RFLAGS.IF");
    check_eq!(t, f[10], 0xe02b, "frame SS");
    check_eq!(
        t,
        FS_ENTRY_RSP.load(SeqCst),
        (f[9] & !15) - 0x58,
        "frame address below the saved RSP"
    );

    // DS is null now: the next switch has nothing to fail on.
    idle.sleep(50 * MS);
    check_eq!(
        t,
        FS_COUNT.load(SeqCst),
        1,
        "failsafe callbacks after DS became null"
    );
    check_eq!(t, set_gdt(&[], 0), Ok(0), "set_gdt with 0 entries");
    t.verdict()
}
