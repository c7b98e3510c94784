//! Bench kernel `bench-event`: event channel send to self through the upcall, and vCPU switch on one CPU.
//!
//! Command line: none needed (ignored). Prints `bench <name> <iterations>
//! <total_cycles>` for each path (see `xenolith_guests::bench`), or
//! `bench <name> skipped: <reason>` when the hypervisor answers a needed
//! hypercall with -ENOSYS (or, for the vCPU switch, when dom0 has no vCPU 1:
//! Xen 4.17 gives dom0 a second vCPU on one CPU with `dom0_max_vcpus=2`,
//! which `cargo xtask bench` passes).
//!
//! * `evtchn-send-self`: an IPI port bound to vCPU 0 (`EVTCHNOP_bind_ipi`),
//!   events unmasked, then `EVTCHNOP_send` on it: the hypervisor marks the
//!   port pending and, on the way out of the hypercall, enters the event
//!   callback, which clears `evtchn_upcall_pending`, the selector and the
//!   port's pending bit and returns with `HYPERVISOR_iret` to just after the
//!   send. Every send must return 0 and be followed by exactly one upcall
//!   that finds exactly this port pending.
//! * `vcpu-switch`: vCPU 1 (`VCPUOP_initialise` + `VCPUOP_up`, same page
//!   tables) and vCPU 0 play ping-pong on one physical CPU with
//!   `SCHEDOP_yield`: vCPU 0 hands the turn over and yields until it gets it
//!   back; vCPU 1 yields in a loop and hands the turn back whenever it has
//!   it. One figure is one switch (yield hypercall, schedule, context
//!   switch, return into the other vCPU's yield). vCPU 1 must take every
//!   turn exactly once and every yield must return 0; at the end vCPU 1 takes
//!   itself down (`VCPUOP_down`).
#![no_std]
#![no_main]

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use xen_abi::callback::CALLBACKTYPE_EVENT;
use xen_abi::event_channel::{
    EvtchnBindIpi, EvtchnClose, EvtchnSend, EVTCHNOP_BIND_IPI, EVTCHNOP_CLOSE, EVTCHNOP_SEND,
};
use xen_abi::hypercall::{self as nr, HYPERCALL_STUB_SIZE};
use xen_abi::layout::{FLAT_KERNEL_CS, FLAT_KERNEL_SS, VGCF_IN_KERNEL};
use xen_abi::sched::SCHEDOP_YIELD;
use xen_abi::shared_info::{SharedInfo, VcpuInfo};
use xen_abi::vcpu::{VcpuGuestContext, VCPUOP_DOWN, VCPUOP_INITIALISE, VCPUOP_IS_UP, VCPUOP_UP};
use xen_abi::Errno;
use xenolith_guests::bench::{self, is_enosys};
use xenolith_guests::{
    check, check_eq, cpu, hypercall, insn, println, shared_info, smp, test_main, Boot, Failures,
    Verdict,
};

test_main!(run);

fn run(b: &Boot) -> Verdict {
    let mut t = Failures::new();
    if shared_info::map(b.start_info).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    evtchn_send_self(&mut t);
    vcpu_switch(&mut t);
    t.verdict()
}

/// `event_channel_op(cmd, arg)`, raw result.
fn evtchn_op<T>(cmd: u32, arg: &mut T) -> i64 {
    // SAFETY: the sub-ops used here read and write only `arg`.
    unsafe {
        hypercall::call(
            nr::EVENT_CHANNEL_OP,
            [cmd.into(), (arg as *mut T) as u64, 0, 0, 0],
        )
    }
}

/// `vcpu_op(cmd, vcpu, arg)`, raw result.
///
/// # Safety
/// `arg` must be valid for `cmd`; bringing a vCPU up must give it a context
/// that cannot harm the kernel.
unsafe fn vcpu_op(cmd: u32, vcpu: u64, arg: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall::call(nr::VCPU_OP, [cmd.into(), vcpu, arg, 0, 0]) }
}

// ---- event channel send to self ----

/// The port the bench sends on, and the upcall handler's tallies.
static PORT: AtomicU64 = AtomicU64::new(u64::MAX);
static UPCALLS: AtomicU64 = AtomicU64::new(0);
/// Upcalls that found the expected port pending.
static HITS: AtomicU64 = AtomicU64::new(0);
/// Ports other than PORT found pending.
static STRAY: AtomicU64 = AtomicU64::new(0);
/// VA of shared_info (0 until mapped).
static SI: AtomicU64 = AtomicU64::new(0);

/// The event upcall (entered through the framework's stub, see
/// `smp::upcall_entry`): the 2-level protocol as Linux runs it (clear
/// `evtchn_upcall_pending`, take the selector, take each word's pending and
/// unmasked bits).
extern "C" fn upcall() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    let si = SI.load(Ordering::Relaxed) as *mut SharedInfo;
    let port = PORT.load(Ordering::Relaxed);
    // SAFETY: shared_info is mapped read-write at SI for the domain's life;
    // the words are only accessed atomically or volatilely, as the
    // hypervisor updates them concurrently.
    unsafe {
        let vi: *mut VcpuInfo = &raw mut (*si).vcpu_info[0];
        (&raw mut (*vi).evtchn_upcall_pending).write_volatile(0);
        let mut sel =
            AtomicU64::from_ptr(&raw mut (*vi).evtchn_pending_sel).swap(0, Ordering::SeqCst);
        while sel != 0 {
            let w = sel.trailing_zeros() as usize;
            sel &= sel - 1;
            let pending = AtomicU64::from_ptr(&raw mut (*si).evtchn_pending[w]);
            let mask = (&raw const (*si).evtchn_mask[w]).read_volatile();
            let mut bits = pending.load(Ordering::SeqCst) & !mask;
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                pending.fetch_and(!(1u64 << b), Ordering::SeqCst);
                if (w as u64) * 64 + u64::from(b) == port {
                    HITS.fetch_add(1, Ordering::Relaxed);
                } else {
                    STRAY.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn evtchn_send_self(t: &mut Failures) {
    const NAME: &str = "evtchn-send-self";
    let mut bind = EvtchnBindIpi { vcpu: 0, port: 0 };
    let r = evtchn_op(EVTCHNOP_BIND_IPI, &mut bind);
    if is_enosys(r) {
        bench::skipped(NAME, format_args!("EVTCHNOP_bind_ipi returned -ENOSYS"));
        return;
    }
    if !check_eq!(t, r, 0, "EVTCHNOP_bind_ipi(vcpu 0)") {
        return;
    }
    let port = bind.port;
    println!("IPI port {port}");
    let si = shared_info::get().expect("mapped at start");
    SI.store(si.as_ptr() as u64, Ordering::SeqCst);
    PORT.store(port.into(), Ordering::SeqCst);
    // SAFETY: the stub handles the event callback's frame and returns with
    // HYPERVISOR_iret, preserving every register.
    let r =
        unsafe { hypercall::callback_register(CALLBACKTYPE_EVENT, 0, smp::upcall_entry(upcall)) };
    check_eq!(t, r, Ok(0), "callback_op(register event)");
    // The port starts unmasked (shared_info is zeroed and bind_ipi leaves
    // the mask alone); make sure, and that nothing is pending yet.
    let word = port as usize / 64;
    let bit = 1u64 << (port % 64);
    // SAFETY: shared_info is mapped read-write; the word is updated atomically.
    unsafe {
        let sip = si.as_ptr() as *mut SharedInfo;
        AtomicU64::from_ptr(&raw mut (*sip).evtchn_mask[word]).fetch_and(!bit, Ordering::SeqCst);
    }
    let mut send = EvtchnSend { port };
    let mut bad = 0u64;
    let mut last = 0i64;
    // SAFETY: the event callback is registered.
    unsafe { cpu::set_upcall_mask(0) };
    let m = bench::measure(NAME, 500, || {
        let r = evtchn_op(EVTCHNOP_SEND, &mut send);
        if r != 0 {
            bad += 1;
            last = r;
        }
    });
    // SAFETY: masking is always safe.
    unsafe { cpu::set_upcall_mask(1) };
    check_eq!(
        t,
        bad,
        0,
        "EVTCHNOP_send calls of {} not returning 0 (last {last})",
        m.calls
    );
    check_eq!(
        t,
        UPCALLS.load(Ordering::SeqCst),
        m.calls,
        "upcalls for {} sends",
        m.calls
    );
    check_eq!(
        t,
        HITS.load(Ordering::SeqCst),
        m.calls,
        "upcalls that found port {port} pending"
    );
    check_eq!(
        t,
        STRAY.load(Ordering::SeqCst),
        0,
        "other ports found pending"
    );
    check_eq!(
        t,
        si.evtchn_pending(word) & bit,
        0,
        "port {port} still pending after the bench"
    );
    let mut close = EvtchnClose { port };
    check_eq!(
        t,
        evtchn_op(EVTCHNOP_CLOSE, &mut close),
        0,
        "EVTCHNOP_close"
    );
}

// ---- vCPU switch ----

/// Whose turn it is: 0 = vCPU 0, 1 = vCPU 1.
static TURN: AtomicU64 = AtomicU64::new(0);
/// Turns vCPU 1 took, and its yields that did not return 0.
static V1_TURNS: AtomicU64 = AtomicU64::new(0);
static V1_BAD: AtomicU64 = AtomicU64::new(0);
/// Set to make vCPU 1 take itself down.
static STOP: AtomicU64 = AtomicU64::new(0);

#[repr(C, align(4096))]
struct Stack([u8; 16384]);
static mut V1_STACK: Stack = Stack([0; 16384]);
// SAFETY: the context is plain integers (FromBytes): all-zero bytes are a valid value.
static mut V1_CTXT: VcpuGuestContext = unsafe { core::mem::zeroed() };

global_asm!(
    ".pushsection .text.bench_vcpu1, \"ax\", @progbits",
    "bench_vcpu1_entry:",
    "2:",
    "cmp qword ptr [rip + {turn}], 1",
    "jne 3f",
    "lock inc qword ptr [rip + {turns}]",
    "mov qword ptr [rip + {turn}], 0",
    "3:",
    "cmp qword ptr [rip + {stop}], 0",
    "jne 4f",
    "mov edi, {yield_op}",
    "xor esi, esi",
    "call xg_hypercall_page + {sched_op}",
    "test rax, rax",
    "jz 2b",
    "lock inc qword ptr [rip + {bad}]",
    "jmp 2b",
    "4:",
    "mov edi, {down}",
    "mov esi, 1",
    "xor edx, edx",
    "call xg_hypercall_page + {vcpu_op}",
    "jmp 4b",
    ".popsection",
    turn = sym TURN,
    turns = sym V1_TURNS,
    bad = sym V1_BAD,
    stop = sym STOP,
    yield_op = const SCHEDOP_YIELD,
    down = const VCPUOP_DOWN,
    sched_op = const nr::SCHED_OP as usize * HYPERCALL_STUB_SIZE,
    vcpu_op = const nr::VCPU_OP as usize * HYPERCALL_STUB_SIZE,
);

extern "C" {
    static bench_vcpu1_entry: u8;
}

fn vcpu_switch(t: &mut Failures) {
    const NAME: &str = "vcpu-switch";
    // SAFETY: VCPUOP_is_up takes no argument.
    let r = unsafe { vcpu_op(VCPUOP_IS_UP, 1, 0) };
    if is_enosys(r) {
        bench::skipped(NAME, format_args!("VCPUOP_is_up returned -ENOSYS"));
        return;
    }
    if r == Errno::ENOENT.as_ret() {
        bench::skipped(
            NAME,
            format_args!("dom0 has no vCPU 1 (VCPUOP_is_up(1): -ENOENT)"),
        );
        return;
    }
    if !check_eq!(t, r, 0, "VCPUOP_is_up(1) before it is started") {
        return;
    }
    let cr3 = match insn::read_cr3() {
        Ok(v) => v,
        Err(f) => {
            t.fail(format_args!("mov %cr3 faulted: {f:?}"));
            return;
        }
    };
    let stack_top = (&raw const V1_STACK) as u64 + 16384 - 64;
    // SAFETY: single-threaded until vCPU 1 is up; the context is only read
    // by the hypervisor.
    let ctxt = unsafe { &mut *(&raw mut V1_CTXT).cast::<VcpuGuestContext>() };
    ctxt.flags = VGCF_IN_KERNEL;
    ctxt.user_regs.rip = (&raw const bench_vcpu1_entry) as u64;
    ctxt.user_regs.rsp = stack_top;
    ctxt.user_regs.cs = FLAT_KERNEL_CS;
    ctxt.user_regs.ss = FLAT_KERNEL_SS;
    ctxt.user_regs.rflags = 0x2;
    ctxt.kernel_ss = FLAT_KERNEL_SS.into();
    ctxt.kernel_sp = stack_top;
    ctxt.ctrlreg[3] = cr3;
    // SAFETY: the context runs the loop above on its own stack with the
    // kernel's page tables; it touches only the bench's statics.
    let r = unsafe { vcpu_op(VCPUOP_INITIALISE, 1, (&raw const *ctxt) as u64) };
    if is_enosys(r) {
        bench::skipped(NAME, format_args!("VCPUOP_initialise returned -ENOSYS"));
        return;
    }
    if !check_eq!(t, r, 0, "VCPUOP_initialise(1)") {
        return;
    }
    // SAFETY: vCPU 1 is initialised with the context above.
    let r = unsafe { vcpu_op(VCPUOP_UP, 1, 0) };
    if is_enosys(r) {
        bench::skipped(NAME, format_args!("VCPUOP_up returned -ENOSYS"));
        return;
    }
    if !check_eq!(t, r, 0, "VCPUOP_up(1)") {
        return;
    }
    let (mut yields, mut bad, mut turns) = (0u64, 0u64, 0u64);
    // One iteration = one switch; a ping-pong is two.
    let m = bench::measure_rounds(NAME, 400, |n| {
        let start = bench::rdtsc();
        for _ in 0..n / 2 {
            TURN.store(1, Ordering::SeqCst);
            turns += 1;
            while TURN.load(Ordering::SeqCst) == 1 {
                if hypercall::sched_yield().is_err() {
                    bad += 1;
                }
                yields += 1;
            }
        }
        Some(bench::rdtsc().wrapping_sub(start))
    });
    check!(t, m.is_some(), "{NAME}: no measurement");
    check_eq!(t, bad, 0, "vCPU 0 yields not returning 0");
    check_eq!(
        t,
        V1_BAD.load(Ordering::SeqCst),
        0,
        "vCPU 1 yields not returning 0"
    );
    check_eq!(
        t,
        V1_TURNS.load(Ordering::SeqCst),
        turns,
        "turns vCPU 1 took of {turns}"
    );
    if yields != turns {
        println!(
            "note: vCPU 0 yielded {yields} times for {turns} turns (some yields did not switch)"
        );
    }
    STOP.store(1, Ordering::SeqCst);
    let mut up = 1;
    for _ in 0..1000 {
        let _ = hypercall::sched_yield();
        // SAFETY: VCPUOP_is_up takes no argument.
        up = unsafe { vcpu_op(VCPUOP_IS_UP, 1, 0) };
        if up == 0 {
            break;
        }
    }
    check_eq!(t, up, 0, "VCPUOP_is_up(1) after vCPU 1 took itself down");
}
