//! Test kernel `smp`: guest SMP as Xen 4.17 gives it to a PV dom0 with
//! `dom0_max_vcpus=4`: bringing vCPUs up and down, IPIs through event
//! channels, and every vCPU making progress on fewer CPUs than vCPUs.
//!
//! Command line: none. Run with the hypervisor option `dom0_max_vcpus=4`.
//!
//! vCPU 0 runs the test with events masked (it sleeps with `SCHEDOP_poll`
//! timeouts, so it never consumes another vCPU's events). vCPUs 1-3 run
//! [`secondary`]: each loads its own pattern into XMM0-7 and MXCSR, then
//! spins checking them and counting, so any vCPU switch that lost FPU state
//! shows. Each has an IPI port bound to it and an upcall handler that clears
//! only its own port. Checked, with Xen 4.17's answers:
//! * `is_up`: vCPU 0 -> 1, vCPUs 1-3 -> 0 (created down), vCPU 4 -ENOENT.
//! * `VCPUOP_up` before `VCPUOP_initialise` -> -EINVAL; `initialise` of
//!   vCPU 4 -> -ENOENT, of vCPU 0 -> -EEXIST, with a non-canonical RIP ->
//!   -EINVAL (the vCPU stays uninitialised); a good context -> 0, the vCPU
//!   still down; a second `initialise` -> -EEXIST.
//! * After `VCPUOP_up`: each vCPU starts at the context's RIP with its RSP,
//!   RDI and kernel GS base; all four vCPUs make progress together.
//! * An IPI to vCPU 1 gives exactly one upcall there; its handler's IPI back
//!   to vCPU 0 ends vCPU 0's `SCHEDOP_poll` on that port early.
//! * A masked port's event is held (no upcall, port pending) until
//!   `EVTCHNOP_unmask`, which delivers it once.
//! * A vCPU blocked in `SCHEDOP_block` shows runstate blocked, makes no
//!   progress, and is woken by an IPI (one upcall).
//! * `VCPUOP_down` of vCPU 2 from vCPU 0: is_up 0, runstate offline, no
//!   progress; `initialise` -EEXIST; `up` resumes it where it was.
//! * vCPU 1, never blocked, has runstate blocked time 0 and running +
//!   runnable time covering the time since it came up.
//! * Every vCPU's XMM0-7 and MXCSR survive the whole run; at the end each
//!   secondary takes itself down (`VCPUOP_down` on itself) and is_up says 0.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use xen_abi::vcpu::{VcpuGuestContext, RUNSTATE_BLOCKED, RUNSTATE_OFFLINE, VCPUOP_DOWN, VCPUOP_UP};
use xen_abi::Errno;
use xenolith_guests::mm::Mm;
use xenolith_guests::smp::IdlePort;
use xenolith_guests::{
    check, check_eq, evtchn, println, shared_info, smp, test_main, vcpu, Boot, Failures, Verdict,
};

test_main!(run);

const MS: u64 = 1_000_000;
const NR: usize = 4;
const STACK: usize = 16 * 1024;

/// What vCPU 0 asks a secondary to do next.
const CMD_NONE: u64 = 0;
const CMD_BLOCK: u64 = 1;
const CMD_STOP: u64 = 2;

#[repr(C, align(16))]
struct Stacks([[u8; STACK]; NR]);
static mut STACKS: Stacks = Stacks([[0; STACK]; NR]);

/// Per-vCPU block the kernel GS base points at: word 0 is the vCPU id.
#[repr(C, align(64))]
struct PerCpu {
    id: u64,
    _pad: [u64; 7],
}
static PERCPU: [PerCpu; NR] = [
    PerCpu {
        id: 0,
        _pad: [0; 7],
    },
    PerCpu {
        id: 1,
        _pad: [0; 7],
    },
    PerCpu {
        id: 2,
        _pad: [0; 7],
    },
    PerCpu {
        id: 3,
        _pad: [0; 7],
    },
];

static PROGRESS: [AtomicU64; NR] = [const { AtomicU64::new(0) }; NR];
static UPCALLS: [AtomicU64; NR] = [const { AtomicU64::new(0) }; NR];
static WOKE: [AtomicU64; NR] = [const { AtomicU64::new(0) }; NR];
static CMD: [AtomicU64; NR] = [const { AtomicU64::new(0) }; NR];
static FPU_BAD: [AtomicU64; NR] = [const { AtomicU64::new(0) }; NR];
/// Entry state seen by each secondary: RSP, RDI, the id read through GS.
static ENTRY_RSP: [AtomicU64; NR] = [const { AtomicU64::new(0) }; NR];
static ENTRY_RDI: [AtomicU64; NR] = [const { AtomicU64::new(0) }; NR];
static ENTRY_GS_ID: [AtomicU64; NR] = [const { AtomicU64::new(0) }; NR];
/// IPI port bound to each vCPU (index 0: the reply port vCPU 1 sends).
static PORT: [AtomicU64; NR] = [const { AtomicU64::new(0) }; NR];

fn stack_top(i: usize) -> u64 {
    (&raw const STACKS) as u64 + ((i + 1) * STACK) as u64
}

// Secondary entry: RDI = id from the context; RSI = RSP as entered. Events
// go to `upcall` through the framework's entry (`smp::upcall_entry`).
global_asm!(
    ".global smp_secondary_entry",
    "smp_secondary_entry:",
    "mov rsi, rsp",
    "and rsp, -16",
    "call {main}",
    "ud2",
    main = sym secondary,
);

extern "C" {
    fn smp_secondary_entry();
}

/// The id of the running vCPU, through the kernel GS base.
fn my_id() -> usize {
    let id: u64;
    // SAFETY: GS base is this vCPU's PerCpu (set by VCPUOP_initialise).
    unsafe { asm!("mov {}, gs:[0]", out(reg) id, options(nostack, readonly)) };
    id as usize
}

/// vCPU `i`'s vcpu_info in shared_info.
fn vcpu_info_va(i: usize) -> u64 {
    shared_info::get().expect("shared_info mapped").as_ptr() as u64 + i as u64 * 64
}

fn pattern(id: usize, k: u64) -> u64 {
    0x5a00_0000_0000_0000 | ((id as u64) << 48) | k
}

/// MXCSR with all exceptions masked and a rounding mode per vCPU.
fn mxcsr_of(id: usize) -> u32 {
    0x1f80 | (((id as u32) & 3) << 13)
}

fn load_fpu(id: usize) {
    let mut v = [0u64; 16];
    for (k, w) in v.iter_mut().enumerate() {
        *w = pattern(id, k as u64);
    }
    let mx = mxcsr_of(id);
    // SAFETY: loads XMM0-7 and MXCSR from local buffers; the test kernel's
    // own code never uses SSE (soft-float target).
    unsafe {
        asm!(
            "movdqu xmm0, [{v}]",
            "movdqu xmm1, [{v} + 16]",
            "movdqu xmm2, [{v} + 32]",
            "movdqu xmm3, [{v} + 48]",
            "movdqu xmm4, [{v} + 64]",
            "movdqu xmm5, [{v} + 80]",
            "movdqu xmm6, [{v} + 96]",
            "movdqu xmm7, [{v} + 112]",
            "ldmxcsr [{mx}]",
            v = in(reg) v.as_ptr(),
            mx = in(reg) &raw const mx,
            options(nostack),
        );
    }
}

fn fpu_intact(id: usize) -> bool {
    let mut v = [0u64; 16];
    let mut mx = 0u32;
    // SAFETY: stores XMM0-7 and MXCSR into local buffers.
    unsafe {
        asm!(
            "movdqu [{v}], xmm0",
            "movdqu [{v} + 16], xmm1",
            "movdqu [{v} + 32], xmm2",
            "movdqu [{v} + 48], xmm3",
            "movdqu [{v} + 64], xmm4",
            "movdqu [{v} + 80], xmm5",
            "movdqu [{v} + 96], xmm6",
            "movdqu [{v} + 112], xmm7",
            "stmxcsr [{mx}]",
            v = in(reg) v.as_mut_ptr(),
            mx = in(reg) &raw mut mx,
            options(nostack),
        );
    }
    mx == mxcsr_of(id)
        && v.iter()
            .enumerate()
            .all(|(k, &w)| w == pattern(id, k as u64))
}

use xenolith_guests::smp::vcpu_op;

extern "C" fn secondary(id: u64, entry_rsp: u64) -> ! {
    let gs_id = my_id() as u64;
    let i = (id as usize).min(NR - 1);
    ENTRY_RSP[i].store(entry_rsp, SeqCst);
    ENTRY_RDI[i].store(id, SeqCst);
    ENTRY_GS_ID[i].store(gs_id, SeqCst);
    load_fpu(i);
    // Take events: clear this vCPU's mask in its vcpu_info.
    // SAFETY: byte 1 of this vCPU's vcpu_info in the mapped shared_info.
    unsafe { ((vcpu_info_va(i) + 1) as *mut u8).write_volatile(0) };
    loop {
        if !fpu_intact(i) {
            FPU_BAD[i].fetch_add(1, SeqCst);
            load_fpu(i);
        }
        PROGRESS[i].fetch_add(1, SeqCst);
        match CMD[i].swap(CMD_NONE, SeqCst) {
            CMD_BLOCK => {
                let _ = xenolith_guests::hypercall::sched_block();
                WOKE[i].fetch_add(1, SeqCst);
            }
            CMD_STOP => {
                let _ = vcpu_op(VCPUOP_DOWN, i as u32, 0);
            }
            _ => {}
        }
    }
}

/// A secondary's upcall: handles only its own IPI port.
extern "C" fn upcall() {
    let i = my_id().min(NR - 1);
    let vi = vcpu_info_va(i);
    // SAFETY: this vCPU's vcpu_info: upcall_pending at +0, pending_sel at +8.
    let sel = unsafe {
        (vi as *mut u8).write_volatile(0);
        (*((vi + 8) as *const AtomicU64)).swap(0, SeqCst)
    };
    let port = PORT[i].load(SeqCst) as u32;
    if sel & (1 << (port / 64)) != 0 && evtchn::is_pending(port) && !evtchn::is_masked(port) {
        evtchn::clear_pending(port);
        UPCALLS[i].fetch_add(1, SeqCst);
        if i == 1 {
            let _ = evtchn::send(PORT[0].load(SeqCst) as u32);
        }
    }
}

/// VCPUOP_initialise(vcpu) with the context that starts `smp_secondary_entry`
/// as vCPU `i`, changed by `edit`.
fn initialise(vcpu: u32, i: usize, edit: impl FnOnce(&mut VcpuGuestContext)) -> Result<u64, Errno> {
    smp::initialise(
        vcpu,
        smp_secondary_entry as *const () as u64,
        stack_top(i),
        |c| {
            c.user_regs.rdi = i as u64;
            c.gs_base_kernel = (&raw const PERCPU[i]) as u64;
            c.event_callback_eip = smp::upcall_entry(upcall);
            edit(c);
        },
    )
}

fn progress() -> [u64; NR] {
    core::array::from_fn(|i| PROGRESS[i].load(SeqCst))
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    let si = boot.start_info;
    if shared_info::map(si).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    let _mm = Mm::new(si);
    let idle = IdlePort::bind();
    let Ok(reply) = evtchn::bind_ipi(0) else {
        xenolith_guests::error("bind_ipi(0) failed");
    };
    PORT[0].store(u64::from(reply), SeqCst);
    for (i, port) in PORT.iter().enumerate().skip(1) {
        match evtchn::bind_ipi(i as u32) {
            Ok(p) => port.store(u64::from(p), SeqCst),
            Err(e) => {
                println!("bind_ipi({i}): {e:?}; is dom0_max_vcpus=4 given?");
                return Verdict::Failure;
            }
        }
    }

    // Before anything runs.
    check_eq!(t, vcpu::is_up(0), Ok(1), "is_up(0)");
    for i in 1..NR as u32 {
        check_eq!(t, vcpu::is_up(i), Ok(0), "is_up({i}) at boot");
    }
    check_eq!(t, vcpu::is_up(4), Err(Errno::ENOENT), "is_up(4)");
    check_eq!(
        t,
        vcpu_op(VCPUOP_UP, 1, 0),
        Err(Errno::EINVAL),
        "up(1) uninitialised"
    );
    check_eq!(
        t,
        initialise(1, 1, |c| c.user_regs.rip = 0x8000_0000_0000_0000),
        Err(Errno::EINVAL),
        "initialise(1) with a non-canonical rip"
    );
    check_eq!(
        t,
        vcpu_op(VCPUOP_UP, 1, 0),
        Err(Errno::EINVAL),
        "up(1) after a refused initialise"
    );
    check_eq!(
        t,
        initialise(4, 0, |_| {}),
        Err(Errno::ENOENT),
        "initialise(4)"
    );
    check_eq!(
        t,
        initialise(0, 0, |_| {}),
        Err(Errno::EEXIST),
        "initialise(0)"
    );
    for i in 1..NR {
        check_eq!(t, initialise(i as u32, i, |_| {}), Ok(0), "initialise({i})");
    }
    check_eq!(
        t,
        initialise(1, 1, |_| {}),
        Err(Errno::EEXIST),
        "initialise(1) again"
    );
    check_eq!(t, vcpu::is_up(1), Ok(0), "is_up(1) after initialise");
    idle.sleep(20 * MS);
    check_eq!(t, progress(), [0; NR], "progress before up");

    // Up: everyone runs.
    let t_up = vcpu::now_ns();
    for i in 1..NR as u32 {
        check_eq!(t, vcpu_op(VCPUOP_UP, i, 0), Ok(0), "up({i})");
        check_eq!(t, vcpu::is_up(i), Ok(1), "is_up({i}) after up");
    }
    check_eq!(t, vcpu_op(VCPUOP_UP, 1, 0), Ok(0), "up(1) when up");
    let started = idle.wait_for(2000 * MS, || progress()[1..].iter().all(|&p| p > 0));
    check!(
        t,
        started,
        "secondaries did not start: progress {:?}",
        progress()
    );
    for i in 1..NR {
        check_eq!(
            t,
            ENTRY_RSP[i].load(SeqCst),
            stack_top(i),
            "vCPU {i} entry rsp"
        );
        check_eq!(t, ENTRY_RDI[i].load(SeqCst), i as u64, "vCPU {i} entry rdi");
        check_eq!(
            t,
            ENTRY_GS_ID[i].load(SeqCst),
            i as u64,
            "vCPU {i} id through GS"
        );
    }
    let before = progress();
    idle.sleep(200 * MS);
    let after = progress();
    for i in 1..NR {
        check!(
            t,
            after[i] > before[i],
            "vCPU {i} made no progress in 200 ms ({} -> {})",
            before[i],
            after[i]
        );
    }
    println!(
        "progress in 200 ms: {:?}",
        core::array::from_fn::<u64, NR, _>(|i| after[i] - before[i])
    );

    // IPI to vCPU 1, answered by an IPI back that ends vCPU 0's poll.
    evtchn::clear_pending(reply);
    check_eq!(
        t,
        evtchn::send(PORT[1].load(SeqCst) as u32),
        Ok(0),
        "send to vCPU 1"
    );
    let t0 = vcpu::now_ns();
    let _ = vcpu::poll(&[reply], t0 + 1000 * MS);
    let waited = vcpu::now_ns() - t0;
    check!(
        t,
        evtchn::is_pending(reply),
        "no reply from vCPU 1 within {waited} ns"
    );
    check!(
        t,
        waited < 900 * MS,
        "poll on the reply port ran to its timeout"
    );
    evtchn::clear_pending(reply);
    idle.wait_for(1000 * MS, || UPCALLS[1].load(SeqCst) >= 1);
    idle.sleep(50 * MS);
    check_eq!(
        t,
        UPCALLS[1].load(SeqCst),
        1,
        "upcalls on vCPU 1 after one IPI"
    );

    // A masked port holds its event until unmasked.
    let p2 = PORT[2].load(SeqCst) as u32;
    evtchn::mask(p2);
    check_eq!(t, evtchn::send(p2), Ok(0), "send to masked vCPU 2 port");
    idle.sleep(50 * MS);
    check_eq!(
        t,
        UPCALLS[2].load(SeqCst),
        0,
        "upcalls on vCPU 2 while masked"
    );
    check!(t, evtchn::is_pending(p2), "masked port not pending");
    check_eq!(t, evtchn::unmask(p2), Ok(0), "unmask");
    idle.wait_for(1000 * MS, || UPCALLS[2].load(SeqCst) >= 1);
    idle.sleep(50 * MS);
    check_eq!(
        t,
        UPCALLS[2].load(SeqCst),
        1,
        "upcalls on vCPU 2 after unmask"
    );

    // A blocked vCPU is woken by an IPI.
    CMD[3].store(CMD_BLOCK, SeqCst);
    let blocked = idle.wait_for(1000 * MS, || {
        vcpu::get_runstate_info(3).is_ok_and(|r| r.state == RUNSTATE_BLOCKED)
    });
    check!(t, blocked, "vCPU 3 not blocked after SCHEDOP_block");
    let p3a = PROGRESS[3].load(SeqCst);
    idle.sleep(50 * MS);
    check_eq!(
        t,
        PROGRESS[3].load(SeqCst),
        p3a,
        "vCPU 3 progress while blocked"
    );
    check_eq!(t, WOKE[3].load(SeqCst), 0, "vCPU 3 woke without an event");
    check_eq!(
        t,
        evtchn::send(PORT[3].load(SeqCst) as u32),
        Ok(0),
        "send to vCPU 3"
    );
    let woke = idle.wait_for(1000 * MS, || WOKE[3].load(SeqCst) == 1);
    check!(t, woke, "vCPU 3 not woken by its IPI");
    check_eq!(t, UPCALLS[3].load(SeqCst), 1, "upcalls on vCPU 3");

    // Down and up again from vCPU 0.
    check_eq!(t, vcpu_op(VCPUOP_DOWN, 2, 0), Ok(0), "down(2)");
    check_eq!(t, vcpu::is_up(2), Ok(0), "is_up(2) after down");
    let offline = idle.wait_for(1000 * MS, || {
        vcpu::get_runstate_info(2).is_ok_and(|r| r.state == RUNSTATE_OFFLINE)
    });
    check!(t, offline, "vCPU 2 runstate not offline after down");
    let p2a = PROGRESS[2].load(SeqCst);
    idle.sleep(50 * MS);
    check_eq!(
        t,
        PROGRESS[2].load(SeqCst),
        p2a,
        "vCPU 2 progress while down"
    );
    check_eq!(
        t,
        initialise(2, 2, |_| {}),
        Err(Errno::EEXIST),
        "initialise(2) while down"
    );
    check_eq!(t, vcpu_op(VCPUOP_UP, 2, 0), Ok(0), "up(2) again");
    let resumed = idle.wait_for(1000 * MS, || PROGRESS[2].load(SeqCst) > p2a);
    check!(t, resumed, "vCPU 2 did not resume after up");

    // Runstate of vCPU 1, which never blocked.
    match vcpu::get_runstate_info(1) {
        Ok(r) => {
            let since_up = vcpu::now_ns() - t_up;
            let busy = r.time[0] + r.time[1];
            check_eq!(t, r.time[2], 0, "vCPU 1 blocked time");
            check!(
                t,
                busy + 20 * MS >= since_up && busy <= since_up + 20 * MS,
                "vCPU 1 running+runnable {busy} ns vs {since_up} ns since up"
            );
            println!(
                "vCPU 1 runstate: running {} ms, runnable {} ms",
                r.time[0] / MS,
                r.time[1] / MS
            );
        }
        Err(e) => {
            check!(t, false, "get_runstate_info(1): {e:?}");
        }
    }

    // Stop: each secondary takes itself down.
    for c in &CMD[1..] {
        c.store(CMD_STOP, SeqCst);
    }
    let all_down = idle.wait_for(2000 * MS, || {
        (1..NR as u32).all(|i| vcpu::is_up(i) == Ok(0))
    });
    check!(t, all_down, "secondaries did not take themselves down");
    for (i, bad) in FPU_BAD.iter().enumerate().skip(1) {
        check_eq!(t, bad.load(SeqCst), 0, "vCPU {i} FPU state lost");
    }
    t.verdict()
}
