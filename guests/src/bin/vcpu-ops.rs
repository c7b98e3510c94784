//! Test kernel `vcpu-ops`: VCPUOP is_up, runstate, send_nmi, register_vcpu_info, as Xen 4.17.
//!
//! Command line: none needed (ignored). dom0 has one vCPU here. Sleeps use
//! the single-shot timer and `SCHEDOP_block`; the event callback consumes
//! events like Linux and logs them.
//!
//! Checked, with Xen 4.17's answers:
//! * `VCPUOP_is_up`: vCPU 0 -> 1; vCPU 1 and 0xffffffff -> -ENOENT; an
//!   unknown sub-op -> -ENOSYS.
//! * `get_runstate_info`: state running; the current state's time includes
//!   the time since `state_entry_time`, so `sum(time) = now - t0` where t0
//!   is when the runstate began (the same t0 for every later reading: the
//!   state_entry_time - sum(time) invariant); vCPU 1 -ENOENT; a bad buffer
//!   -EFAULT.
//! * `register_runstate_memory_area`: a Xen-range or non-canonical address
//!   -EFAULT; vCPU 1 -ENOENT; a good one is filled at once (state running,
//!   `state_entry_time - sum(time)` = t0, not counting the time since
//!   `state_entry_time`) and is not rewritten while the vCPU keeps running;
//!   after a 20 ms block it shows running again, `time[blocked]` grown by
//!   ~20 ms, and matches `get_runstate_info` exactly except for the running
//!   time since the wake-up. Registering another area stops updates of the
//!   first; address 0 stops them all (0 returned).
//! * `send_nmi`: vCPU 1 -ENOENT; a non-NULL argument -EINVAL; vCPU 0 -> 0
//!   and the NMI arrives through trap-table entry 2 on the hypercall's
//!   return (RIP in the vcpu_op slot of the hypercall page, saved mask in
//!   CS, events masked at entry); HYPERVISOR_iret re-arms it (a second NMI
//!   arrives); after `CALLBACKOP_unregister(CALLBACKTYPE_nmi)` an NMI is
//!   dropped (and not delivered when a handler is registered again with
//!   `CALLBACKTYPE_nmi`, which then works).
//! * `register_vcpu_info`: an offset crossing the page end or not 8-byte
//!   aligned -> -ENXIO; a frame beyond RAM or a page-table frame -> -EINVAL;
//!   vCPU 1 -ENOENT; a good one -> 0: the new copy holds the old contents
//!   (mask, cr2, time record, the latter then rewritten once: version + 2)
//!   with `evtchn_upcall_pending` 1 and `evtchn_pending_sel` all ones (Xen
//!   marks everything pending); the bytes around it untouched; enabling
//!   events gives one callback that finds no port; from then on Xen
//!   delivers through the new copy only (its mask holds events, the old
//!   mask byte is ignored, the old copy is never written again, the time
//!   record is updated in the new copy); a second registration -> -EINVAL.
#![no_std]
#![no_main]

use xen_abi::callback::{CallbackUnregister, CALLBACKOP_UNREGISTER, CALLBACKTYPE_NMI};
use xen_abi::hypercall::{CALLBACK_OP, HYPERCALL_STUB_SIZE, VCPU_OP};
use xen_abi::vcpu::{
    VcpuRunstateInfo, RUNSTATE_RUNNING, VCPUOP_GET_RUNSTATE_INFO, VCPUOP_SEND_NMI,
};
use xen_abi::Errno;
use xenolith_guests::evtchn::{self, CallbackFrame};
use xenolith_guests::mm::{self, Mm};
use xenolith_guests::{
    boot, check, check_eq, hypercall, println, shared_info, test_main, vcpu, Boot, Failures,
    Verdict,
};

test_main!(run);

const MS: u64 = 1_000_000;
/// Slack for comparing the guest's clock with Xen's.
const SKEW: u64 = 50_000;
/// QEMU TCG lateness tolerance for a wake-up.
const LATE: u64 = 10 * MS;
/// A frame number beyond the machine's RAM.
const NO_FRAME: u64 = 0x7fff_ffff;
/// RFLAGS.IF.
const IF: u64 = 1 << 9;

#[repr(C, align(64))]
struct Area(VcpuRunstateInfo);

static mut AREA_A: Area = Area(VcpuRunstateInfo {
    state: 0,
    pad: 0,
    state_entry_time: 0,
    time: [0; 4],
});
static mut AREA_B: Area = Area(VcpuRunstateInfo {
    state: 0,
    pad: 0,
    state_entry_time: 0,
    time: [0; 4],
});

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// Receives vcpu_info at [`VI_OFFSET`].
static mut VI_PAGE: Page = Page([0xaa; 4096]);
const VI_OFFSET: u32 = 0x100;

fn area_a() -> u64 {
    (&raw mut AREA_A) as u64
}

fn area_b() -> u64 {
    (&raw mut AREA_B) as u64
}

fn read_area(va: u64) -> VcpuRunstateInfo {
    // SAFETY: one of the two statics above; Xen writes them at context
    // switches, hence the volatile copy.
    unsafe { (va as *const VcpuRunstateInfo).read_volatile() }
}

fn sum(r: &VcpuRunstateInfo) -> u64 {
    r.time.iter().sum()
}

/// `state_entry_time - sum(time)`: when the runstate accounting began.
fn origin(r: &VcpuRunstateInfo) -> i64 {
    r.state_entry_time as i64 - sum(r) as i64
}

fn handler(_f: &mut CallbackFrame) {
    evtchn::consume_2l(|port| evtchn::log_push(port, vcpu::now_ns()));
}

fn nmi_handler(_f: &mut CallbackFrame) {}

/// Sleeps `ns` with the single-shot timer and SCHEDOP_block; returns the
/// deadline. Leaves events disabled.
fn sleep(t: &mut Failures, ns: u64) -> u64 {
    vcpu::disable_events();
    let deadline = vcpu::now_ns() + ns;
    check_eq!(t, vcpu::set_timer_op(deadline), Ok(0), "set_timer_op");
    check_eq!(t, hypercall::sched_block(), Ok(0), "SCHEDOP_block");
    vcpu::disable_events();
    evtchn::log_clear();
    deadline
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    let si = boot.start_info;
    if shared_info::map(si).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    let _mm = Mm::new(si);
    check_eq!(
        t,
        evtchn::install_upcall(handler),
        Ok(0),
        "callback_op(register event)"
    );
    check_eq!(
        t,
        vcpu::stop_periodic_timer(0),
        Ok(0),
        "VCPUOP_stop_periodic_timer"
    );
    if evtchn::bind_virq(xen_abi::event_channel::VIRQ_TIMER, 0).is_err() {
        xenolith_guests::error("bind_virq(VIRQ_TIMER) failed");
    }

    check_eq!(t, vcpu::is_up(0), Ok(1), "VCPUOP_is_up(0)");
    check_eq!(t, vcpu::is_up(1), Err(Errno::ENOENT), "VCPUOP_is_up(1)");
    check_eq!(
        t,
        vcpu::is_up(u32::MAX),
        Err(Errno::ENOENT),
        "VCPUOP_is_up(0xffffffff)"
    );
    // SAFETY: an unknown sub-op reads nothing.
    let r = unsafe { vcpu::vcpu_op_raw(99, 0, 0) };
    check_eq!(t, r, -(Errno::ENOSYS as i64), "vcpu_op(99)");

    runstate(&mut t);
    nmi(&mut t);
    vcpu_info(&mut t, mm::boot_l4());
    vcpu::disable_events();
    t.verdict()
}

fn runstate(t: &mut Failures) {
    let before = vcpu::now_ns();
    let g = vcpu::get_runstate_info(0);
    let after = vcpu::now_ns();
    println!("get_runstate_info(0) = {g:?}");
    let Ok(g) = g else {
        t.fail(format_args!("get_runstate_info(0) failed: {g:?}"));
        return;
    };
    check_eq!(t, g.state, RUNSTATE_RUNNING, "get_runstate_info: state");
    check!(
        t,
        g.state_entry_time <= after,
        "get_runstate_info: state_entry_time in the future"
    );
    check!(t, g.time[0] > 0, "get_runstate_info: no running time");
    // sum(time) = NOW - t0 with NOW between `before` and `after`.
    let t0_lo = before as i64 - sum(&g) as i64 - SKEW as i64;
    let t0_hi = after as i64 - sum(&g) as i64 + SKEW as i64;
    println!("runstate began between {t0_lo} and {t0_hi}");
    check_eq!(
        t,
        vcpu::get_runstate_info(1).map(|r| r.state),
        Err(Errno::ENOENT),
        "get_runstate_info(1)"
    );
    // SAFETY: Xen refuses to write to a non-canonical address.
    let r = unsafe { vcpu::vcpu_op_raw(VCPUOP_GET_RUNSTATE_INFO, 0, 0x8000_0000_0000_0000) };
    check_eq!(
        t,
        r,
        -(Errno::EFAULT as i64),
        "get_runstate_info(bad buffer)"
    );

    // SAFETY: the area is one of this file's statics, used for nothing else; bad addresses are
    // refused.
    let r = unsafe { vcpu::register_runstate_area(0, 0xffff_8000_0000_0000) };
    check_eq!(
        t,
        r,
        Err(Errno::EFAULT),
        "register_runstate_memory_area(Xen's range)"
    );
    // SAFETY: the area is one of this file's statics, used for nothing else; bad addresses are
    // refused.
    let r = unsafe { vcpu::register_runstate_area(0, 0x8000_0000_0000_0000) };
    check_eq!(
        t,
        r,
        Err(Errno::EFAULT),
        "register_runstate_memory_area(non-canonical)"
    );
    // SAFETY: the area is one of this file's statics, used for nothing else; bad addresses are
    // refused.
    let r = unsafe { vcpu::register_runstate_area(1, area_a()) };
    check_eq!(
        t,
        r,
        Err(Errno::ENOENT),
        "register_runstate_memory_area(vcpu 1)"
    );
    // SAFETY: the area is one of this file's statics, used for nothing else; bad addresses are
    // refused.
    let r = unsafe { vcpu::register_runstate_area(0, area_a()) };
    let now = vcpu::now_ns();
    check_eq!(t, r, Ok(0), "register_runstate_memory_area(A)");
    let a = read_area(area_a());
    println!("area A at registration: {a:?}");
    check_eq!(t, a.state, RUNSTATE_RUNNING, "area A: state");
    check!(
        t,
        a.state_entry_time <= now,
        "area A: state_entry_time in the future"
    );
    check!(
        t,
        (t0_lo..=t0_hi).contains(&origin(&a)),
        "area A: state_entry_time - sum(time) = {}, expected the runstate origin",
        origin(&a)
    );
    // Not written while the vCPU keeps running.
    vcpu::spin_until(vcpu::now_ns() + 5 * MS);
    check_eq!(t, read_area(area_a()), a, "area A after 5 ms of running");

    let deadline = sleep(t, 20 * MS);
    let a2 = read_area(area_a());
    let g2 = vcpu::get_runstate_info(0).unwrap_or_default();
    println!("area A after a 20 ms block: {a2:?}");
    check_eq!(
        t,
        a2.state,
        RUNSTATE_RUNNING,
        "area A after the block: state"
    );
    check!(
        t,
        a2.state_entry_time + SKEW >= deadline && a2.state_entry_time <= deadline + LATE,
        "area A: running again at {} (timer deadline {deadline})",
        a2.state_entry_time
    );
    let blocked = a2.time[2] - a.time[2];
    println!("blocked time grew by {} us", blocked / 1000);
    check!(
        t,
        blocked + LATE >= 20 * MS && blocked <= 20 * MS + LATE,
        "area A: blocked time grew by {blocked} ns for a 20 ms block"
    );
    check!(
        t,
        a2.time[0] > a.time[0],
        "area A: running time did not grow"
    );
    check_eq!(
        t,
        origin(&a2),
        origin(&a),
        "area A: state_entry_time - sum(time) after the block"
    );
    check_eq!(
        t,
        g2.state_entry_time,
        a2.state_entry_time,
        "get_runstate_info vs area: state_entry_time"
    );
    check_eq!(
        t,
        &g2.time[1..],
        &a2.time[1..],
        "get_runstate_info vs area: runnable/blocked/offline"
    );
    check!(
        t,
        g2.time[0] >= a2.time[0],
        "get_runstate_info: running time below the area's"
    );

    // A second area: the first is no longer written.
    // SAFETY: the area is one of this file's statics, used for nothing else; bad addresses are
    // refused.
    let r = unsafe { vcpu::register_runstate_area(0, area_b()) };
    check_eq!(t, r, Ok(0), "register_runstate_memory_area(B)");
    let _ = sleep(t, 5 * MS);
    check_eq!(
        t,
        read_area(area_a()),
        a2,
        "area A after re-registering elsewhere and a block"
    );
    let b = read_area(area_b());
    check!(t, b.time[2] > a2.time[2], "area B not updated by the block");
    // Address 0: nothing is written any more.
    // SAFETY: the area is one of this file's statics, used for nothing else; bad addresses are
    // refused.
    let r = unsafe { vcpu::register_runstate_area(0, 0) };
    check_eq!(t, r, Ok(0), "register_runstate_memory_area(0)");
    let _ = sleep(t, 5 * MS);
    check_eq!(
        t,
        read_area(area_b()),
        b,
        "area B after registering 0 and a block"
    );
}

fn nmi(t: &mut Failures) {
    vcpu::disable_events();
    check_eq!(
        t,
        evtchn::install_nmi(nmi_handler),
        Ok(0),
        "set_trap_table(NMI entry)"
    );
    // SAFETY (send_nmi): trap entry 2 is the NMI stub, which returns with iret.
    check_eq!(
        t,
        // SAFETY: the NMI entry (trap entry 2 / CALLBACKTYPE_nmi) is the NMI stub, which returns
        // with iret; without one Xen drops the NMI.
        unsafe { vcpu::send_nmi(1) },
        Err(Errno::ENOENT),
        "send_nmi(vcpu 1)"
    );
    let dummy = 0u64;
    // SAFETY: Xen refuses a non-NULL argument without reading it.
    let r = unsafe { vcpu::vcpu_op_raw(VCPUOP_SEND_NMI, 0, (&raw const dummy) as u64) };
    check_eq!(t, r, -(Errno::EINVAL as i64), "send_nmi(non-NULL argument)");
    check_eq!(t, evtchn::nmis(), 0, "NMIs after refused send_nmi");

    let slot = boot::hypercall_page() + VCPU_OP * HYPERCALL_STUB_SIZE as u64;
    for (events, mask) in [(false, 1u8), (true, 0)] {
        if events {
            // SAFETY: the event callback is registered.
            unsafe { vcpu::enable_events() };
        }
        let before = evtchn::nmis();
        // SAFETY: as above.
        let r = unsafe { vcpu::send_nmi(0) };
        let after = evtchn::nmis();
        check_eq!(t, r, Ok(0), "send_nmi(0), saved mask {mask}");
        check_eq!(
            t,
            after - before,
            1,
            "NMIs by the time send_nmi returned (mask {mask})"
        );
        let s = evtchn::last_nmi();
        println!("NMI snapshot (mask {mask}): {s:x?}");
        check!(
            t,
            (slot..slot + HYPERCALL_STUB_SIZE as u64).contains(&s.rip),
            "NMI RIP {:#x} not in the vcpu_op slot at {slot:#x}",
            s.rip
        );
        check_eq!(t, s.saved_mask, mask, "NMI frame: saved mask");
        check_eq!(
            t,
            s.rflags & IF,
            if mask == 0 { IF } else { 0 },
            "NMI frame: RFLAGS.IF"
        );
        check_eq!(t, s.mask, 1, "NMI entry: events masked");
        check_eq!(
            t,
            vcpu::upcall_mask(),
            mask,
            "event mask after the NMI's iret"
        );
        vcpu::disable_events();
    }

    // Unregistered: the NMI is dropped.
    let u = CallbackUnregister {
        type_: CALLBACKTYPE_NMI,
        unused: 0,
    };
    let args = [CALLBACKOP_UNREGISTER.into(), (&raw const u) as u64, 0, 0, 0];
    // SAFETY: Xen reads `u`; without an NMI handler an NMI is dropped.
    let r = unsafe { hypercall::call(CALLBACK_OP, args) };
    check_eq!(t, r, 0, "callback_op(unregister NMI)");
    let before = evtchn::nmis();
    // SAFETY: no NMI handler: Xen drops the NMI.
    check_eq!(
        t,
        // SAFETY: the NMI entry (trap entry 2 / CALLBACKTYPE_nmi) is the NMI stub, which returns
        // with iret; without one Xen drops the NMI.
        unsafe { vcpu::send_nmi(0) },
        Ok(0),
        "send_nmi(0) without a handler"
    );
    vcpu::spin_until(vcpu::now_ns() + MS);
    check_eq!(t, evtchn::nmis(), before, "NMIs without a handler");
    // SAFETY: the NMI stub copes with Xen's NMI frame.
    let r = unsafe { hypercall::callback_register(CALLBACKTYPE_NMI, 0, evtchn::nmi_entry()) };
    check_eq!(t, r, Ok(0), "callback_op(register NMI)");
    vcpu::spin_until(vcpu::now_ns() + MS);
    check_eq!(
        t,
        evtchn::nmis(),
        before,
        "dropped NMI delivered after re-registering"
    );
    // SAFETY: as above.
    check_eq!(
        t,
        // SAFETY: the NMI entry (trap entry 2 / CALLBACKTYPE_nmi) is the NMI stub, which returns
        // with iret; without one Xen drops the NMI.
        unsafe { vcpu::send_nmi(0) },
        Ok(0),
        "send_nmi(0) via CALLBACKTYPE_nmi"
    );
    check_eq!(t, evtchn::nmis() - before, 1, "NMIs via CALLBACKTYPE_nmi");
    check_eq!(
        t,
        evtchn::last_nmi().mask,
        1,
        "CALLBACKTYPE_nmi entry: events masked"
    );
}

fn vcpu_info(t: &mut Failures, table: u64) {
    vcpu::disable_events();
    let page_va = (&raw mut VI_PAGE) as u64;
    let mfn = mm::p2m((page_va - boot::virt_base()) / 4096);
    let old_va = vcpu::info_va();
    let new_va = page_va + u64::from(VI_OFFSET);
    // SAFETY: VI_PAGE is this file's page, used for nothing else; refused registrations change
    // nothing.
    let r = unsafe { vcpu::register_vcpu_info(0, mfn, 4096 - 63) };
    check_eq!(
        t,
        r,
        Err(Errno::ENXIO),
        "register_vcpu_info(offset 4033: crosses the page)"
    );
    // SAFETY: VI_PAGE is this file's page, used for nothing else; refused registrations change
    // nothing.
    let r = unsafe { vcpu::register_vcpu_info(0, mfn, VI_OFFSET + 4) };
    check_eq!(
        t,
        r,
        Err(Errno::ENXIO),
        "register_vcpu_info(offset not 8-byte aligned)"
    );
    // SAFETY: VI_PAGE is this file's page, used for nothing else; refused registrations change
    // nothing.
    let r = unsafe { vcpu::register_vcpu_info(0, NO_FRAME, VI_OFFSET) };
    check_eq!(
        t,
        r,
        Err(Errno::EINVAL),
        "register_vcpu_info(frame beyond RAM)"
    );
    // SAFETY: VI_PAGE is this file's page, used for nothing else; refused registrations change
    // nothing.
    let r = unsafe { vcpu::register_vcpu_info(0, table, VI_OFFSET) };
    check_eq!(
        t,
        r,
        Err(Errno::EINVAL),
        "register_vcpu_info(the L4's frame)"
    );
    // SAFETY: VI_PAGE is this file's page, used for nothing else; refused registrations change
    // nothing.
    let r = unsafe { vcpu::register_vcpu_info(1, mfn, VI_OFFSET) };
    check_eq!(t, r, Err(Errno::ENOENT), "register_vcpu_info(vcpu 1)");

    let ipi = evtchn::bind_ipi(0).unwrap_or(0);
    // SAFETY: the old location is shared_info's vcpu_info[0], mapped.
    let old = unsafe { vcpu::read_info_at(old_va) };
    // SAFETY: VI_PAGE is this file's page, used for nothing else; refused registrations change
    // nothing.
    let r = unsafe { vcpu::register_vcpu_info(0, mfn, VI_OFFSET) };
    check_eq!(t, r, Ok(0), "register_vcpu_info(page, {VI_OFFSET:#x})");
    if r.is_err() {
        return;
    }
    vcpu::set_info_va(new_va);
    // SAFETY: the new location is in VI_PAGE.
    let new = unsafe { vcpu::read_info_at(new_va) };
    println!("old vcpu_info {old:x?}");
    println!("new vcpu_info {new:x?}");
    check_eq!(
        t,
        new.evtchn_upcall_pending,
        1,
        "new vcpu_info: upcall_pending"
    );
    check_eq!(
        t,
        new.evtchn_upcall_mask,
        old.evtchn_upcall_mask,
        "new vcpu_info: mask copied"
    );
    check_eq!(t, new.evtchn_pending_sel, !0, "new vcpu_info: pending_sel");
    check_eq!(t, new.arch, old.arch, "new vcpu_info: arch (cr2) copied");
    // Copied, then rewritten once by Xen's forced time update (version + 2).
    let mut expect_time = old.time;
    expect_time.version += 2;
    check_eq!(
        t,
        new.time,
        expect_time,
        "new vcpu_info: time record copied and updated once"
    );
    // SAFETY: VI_PAGE bytes around the 64 registered ones are plain memory.
    let (below, above) = unsafe {
        (
            ((page_va + u64::from(VI_OFFSET) - 1) as *const u8).read_volatile(),
            ((new_va + 64) as *const u8).read_volatile(),
        )
    };
    check_eq!(
        t,
        (below, above),
        (0xaa, 0xaa),
        "bytes around the new vcpu_info untouched"
    );

    // The spurious callback: finds no port.
    let before = evtchn::upcalls();
    // SAFETY: the event callback is registered (and now reads the new copy).
    unsafe { vcpu::enable_events() };
    check_eq!(
        t,
        evtchn::upcalls() - before,
        1,
        "callbacks after enabling events"
    );
    let s = evtchn::last_upcall();
    check_eq!(
        t,
        (s.mask, s.pending, s.sel),
        (1, 1, !0),
        "new vcpu_info at that callback"
    );
    check_eq!(t, evtchn::log().len, 0, "ports handled by that callback");

    // Delivery through the new copy.
    let before = evtchn::upcalls();
    check_eq!(t, evtchn::send(ipi), Ok(0), "send(ipi)");
    check_eq!(
        t,
        evtchn::upcalls() - before,
        1,
        "callbacks after send(ipi)"
    );
    let log = evtchn::log();
    check_eq!(t, log.ports(), &[ipi][..], "ports handled after send(ipi)");
    check_eq!(t, evtchn::last_upcall().sel, 1, "selector at that callback");
    evtchn::log_clear();

    // The new mask holds events; the old mask byte means nothing.
    vcpu::disable_events();
    let before = evtchn::upcalls();
    check_eq!(
        t,
        evtchn::send(ipi),
        Ok(0),
        "send(ipi) masked in the new copy"
    );
    check_eq!(
        t,
        evtchn::upcalls(),
        before,
        "callbacks with the new mask set"
    );
    check_eq!(t, vcpu::upcall_pending(), 1, "new upcall_pending");
    // SAFETY: the event callback is registered.
    unsafe { vcpu::enable_events() };
    check_eq!(
        t,
        evtchn::upcalls() - before,
        1,
        "callbacks after clearing the new mask"
    );
    evtchn::log_clear();
    // SAFETY: the old copy is plain shared_info memory now.
    unsafe { ((old_va + 1) as *mut u8).write_volatile(1) };
    let before = evtchn::upcalls();
    check_eq!(
        t,
        evtchn::send(ipi),
        Ok(0),
        "send(ipi) with the old mask set"
    );
    check_eq!(
        t,
        evtchn::upcalls() - before,
        1,
        "callbacks with only the old mask set"
    );
    evtchn::log_clear();

    // The time record moves too; the old copy is never written again.
    vcpu::disable_events();
    // SAFETY: as above.
    let stale = unsafe { vcpu::read_info_at(old_va) };
    let v0 = vcpu::time().version;
    let start = vcpu::now_ns();
    while vcpu::time().version == v0 && vcpu::now_ns() < start + 3000 * MS {}
    let v1 = vcpu::time().version;
    println!("new time record version {v0} -> {v1}");
    check!(
        t,
        v1 != v0,
        "the new copy's time record was not updated in 3 s"
    );
    // SAFETY: as above.
    let stale2 = unsafe { vcpu::read_info_at(old_va) };
    check_eq!(t, stale2, stale, "old vcpu_info written after the move");

    // SAFETY: VI_PAGE is this file's page, used for nothing else; refused registrations change
    // nothing.
    let r = unsafe { vcpu::register_vcpu_info(0, mfn, VI_OFFSET) };
    check_eq!(t, r, Err(Errno::EINVAL), "register_vcpu_info again");
    // SAFETY: VI_PAGE is this file's page, used for nothing else; refused registrations change
    // nothing.
    let r = unsafe { vcpu::register_vcpu_info(0, mfn, VI_OFFSET + 64) };
    check_eq!(
        t,
        r,
        Err(Errno::EINVAL),
        "register_vcpu_info again, elsewhere"
    );
}
