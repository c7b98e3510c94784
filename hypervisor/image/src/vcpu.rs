//! Per-vCPU time and state hypercalls: timers (set_timer_op, vcpu_op single-shot and
//! periodic) delivering VIRQ_TIMER, runstate areas, vcpu_info placement, and the blocking
//! sched_ops (block, poll).
//!
//! Timers are kept in system time (ns since boot, the clock guests read from vcpu_time_info).
//! `check` fires expired timers and programs the local APIC for the next one; it runs on every
//! return to the guest and while the vCPU waits.
use xen_abi::errno::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use alloc::vec::Vec;

use crate::domain::{Domain, Wait};
use crate::hypercall::{Ctx, Outcome};

/// VIRQ_TIMER.
const VIRQ_TIMER: u32 = 0;
/// VIRQ_CONSOLE: console input for the hardware domain.
const VIRQ_CONSOLE: u32 = 2;
/// Shortest periodic timer Xen accepts (1 ms).
const MIN_PERIOD_NS: u64 = 1_000_000;

/// Runstate values.
pub const RUNSTATE_RUNNING: u32 = 0;
pub const RUNSTATE_RUNNABLE: u32 = 1;
pub const RUNSTATE_BLOCKED: u32 = 2;
pub const RUNSTATE_OFFLINE: u32 = 3;

/// The vCPU's runstate as the guest sees it (struct vcpu_runstate_info).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Runstate {
    pub state: u32,
    pub pad: u32,
    pub state_entry_time: u64,
    pub time: [u64; 4],
}

/// How often the published vcpu_time_info is refreshed (Xen recalibrates once a second).
const TIME_REFRESH_NS: u64 = 1_000_000_000;
/// Xen's default periodic timer for every vCPU (100 Hz).
pub const DEFAULT_PERIOD_NS: u64 = 10_000_000;

/// Set when a domain other than dom0 shut down or crashed: dom0 gets VIRQ_DOM_EXC.
pub static DOM_EXC: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
/// VIRQ_DOM_EXC.
const VIRQ_DOM_EXC: u32 = 3;

/// Fires expired timers, refreshes clock records when due, wakes vCPUs whose wait is over,
/// and arms the local APIC for the next event (a timer, a poll timeout, a refresh, the end of
/// the running vCPU's slice), for the current domain `dom` (forced) and every domain in
/// `table`. Runs whenever the running vCPU changes.
pub fn check(dom: &mut Domain, table: &mut crate::domain::Domains) {
    dom.next_due = 0;
    check_exit(dom, table);
}

/// `check` as every return to the guest runs it: a domain's timers are only looked at once
/// the earliest of them is due (callers that change a timer set `next_due` to 0). Returns the
/// system time it worked with.
pub fn check_exit(dom: &mut Domain, table: &mut crate::domain::Domains) -> u64 {
    let now = crate::time::now_ns();
    let mut next = timers(dom, now);
    if table.ids.len() > 1 {
        next = next.min(others(table, now));
    }
    crate::time::set_deadline(Some(next.min(crate::sched::slice_end())));
    now
}

/// `timers` for every domain in `table` (the current one is taken out); returns when the
/// earliest next timer event of theirs is due.
#[inline(never)]
fn others(table: &mut crate::domain::Domains, now: u64) -> u64 {
    let mut next = u64::MAX;
    for i in 0..table.ids.len() {
        if let Some(d) = table.get_mut(table.ids[i]) {
            next = next.min(timers(d, now));
        }
    }
    next
}

/// `check` for an idle CPU: every domain is in `table`.
pub fn check_idle(table: &mut crate::domain::Domains) {
    let now = crate::time::now_ns();
    let mut next = u64::MAX;
    for i in 0..table.ids.len() {
        if let Some(d) = table.get_mut(table.ids[i]) {
            d.next_due = 0;
            next = next.min(timers(d, now));
        }
    }
    crate::time::set_deadline(Some(next.min(crate::sched::slice_end())));
}

/// The work of `check` for one domain at system time `now`; returns when its next timer
/// event is due.
#[inline(always)]
fn timers(dom: &mut Domain, now: u64) -> u64 {
    if dom.privileged && crate::console::rx_notify_pending() && crate::console::take_rx_notify() {
        let _ = crate::events::send_virq(dom, 0, VIRQ_CONSOLE);
    }
    if dom.id == 0
        && DOM_EXC.load(core::sync::atomic::Ordering::Relaxed)
        && DOM_EXC.swap(false, core::sync::atomic::Ordering::AcqRel)
    {
        let _ = crate::events::send_virq(dom, 0, VIRQ_DOM_EXC);
    }
    let next = if now >= dom.next_due {
        let n = fire_timers(dom, now);
        dom.next_due = n;
        n
    } else {
        dom.next_due
    };
    if dom.waiting > 0 || (dom.vcpus.len() > 1 && crate::smp::online() > 1) {
        end_waits(dom, now);
    }
    next
}

/// Fires due timers of every vCPU and refreshes clock records; returns when the next is due.
fn fire_timers(dom: &mut Domain, now: u64) -> u64 {
    let mut next = u64::MAX;
    let mut stamped = false;
    for i in 0..dom.vcpus.len() {
        let v = &mut dom.vcpus[i];
        if !v.up {
            continue;
        }
        let mut fire = false;
        if v.timer_deadline.is_some_and(|d| now >= d) {
            v.timer_deadline = None;
            fire = true;
        }
        if v.periodic_ns != 0 && now >= v.periodic_next {
            fire = true;
            v.periodic_last = now;
            let behind = (now - v.periodic_next) / v.periodic_ns + 1;
            v.periodic_next += behind * v.periodic_ns;
        }
        if now.saturating_sub(v.time_published) >= TIME_REFRESH_NS {
            if !stamped {
                crate::time::stamp();
                stamped = true;
            }
            v.time_published = now;
            crate::time::update_vcpu_time(crate::traps::vcpu_info(v));
        }
        next = next.min(v.time_published + TIME_REFRESH_NS);
        if let Some(d) = v.timer_deadline {
            next = next.min(d);
        }
        if v.periodic_ns != 0 {
            next = next.min(v.periodic_next);
        }
        if let Wait::Poll(p) = &v.wait {
            if let Some(d) = p.deadline {
                next = next.min(d);
            }
        }
        if fire {
            let _ = crate::events::send_virq(dom, i as u32, VIRQ_TIMER);
        }
    }
    next
}

/// Ends the waits that are over (events raised by the timers or by the hypercall that led
/// here), and interrupts other CPUs whose vCPU has an event or NMI to take.
fn end_waits(dom: &mut Domain, now: u64) {
    let me = crate::percpu::cpu_id();
    for i in 0..dom.vcpus.len() {
        if !dom.vcpus[i].up {
            continue;
        }
        if !matches!(dom.vcpus[i].wait, Wait::None) {
            if wait_over(dom, i, now) {
                dom.vcpus[i].wait = Wait::None;
                dom.waiting -= 1;
                crate::sched::wake(dom, i);
            }
        } else if let Some(c) = dom.vcpus[i].cpu.filter(|&c| c != me) {
            if upcall_deliverable(dom, i) || dom.vcpus[i].nmi_pending {
                crate::sched::kick(c);
            }
        }
    }
}

/// Changes vCPU `i`'s runstate, accounting the time spent in the old one, and publishes it.
/// No change, no write: the area is only rewritten when the state changes, as on Xen.
pub fn set_runstate(dom: &mut Domain, i: usize, state: u32) {
    let now = crate::time::now_ns();
    let r = &mut dom.vcpus[i].runstate;
    if r.state == state {
        return;
    }
    let old = (r.state as usize).min(3);
    r.time[old] += now.saturating_sub(r.state_entry_time);
    r.state = state;
    r.state_entry_time = now;
    publish_runstate(dom, i);
}

/// Writes vCPU `i`'s runstate into its registered area, if any.
fn publish_runstate(dom: &Domain, i: usize) {
    let v = &dom.vcpus[i];
    if v.runstate_area != 0 {
        let mem = crate::guestmem::GuestMem::current(dom, v.current_root());
        // An area that stopped being writable is the guest's problem, as on Xen.
        let _ = mem.write_obj(v.runstate_area, &v.runstate);
    }
}

fn upcall_pending(dom: &Domain, i: usize) -> bool {
    let vi = crate::traps::vcpu_info(&dom.vcpus[i]);
    // SAFETY: a valid reference; a volatile read of a byte the guest and events change.
    unsafe { core::ptr::read_volatile(&raw const vi.evtchn_upcall_pending) != 0 }
}

fn upcall_deliverable(dom: &Domain, i: usize) -> bool {
    let vi = crate::traps::vcpu_info(&dom.vcpus[i]);
    // SAFETY: valid references; volatile reads of bytes the guest and interrupt paths change.
    let (pending, mask) = unsafe {
        (
            core::ptr::read_volatile(&raw const vi.evtchn_upcall_pending),
            core::ptr::read_volatile(&raw const vi.evtchn_upcall_mask),
        )
    };
    pending != 0 && mask == 0
}

/// Whether what vCPU `i` waits for has happened.
fn wait_over(dom: &mut Domain, i: usize, now: u64) -> bool {
    match &dom.vcpus[i].wait {
        Wait::None => true,
        Wait::Block => upcall_deliverable(dom, i),
        Wait::Poll(p) => {
            if p.deadline.is_some_and(|t| now >= t) {
                return true;
            }
            let (ports, wake_on_any, was_pending) = (p.ports.clone(), p.wake_on_any, p.was_pending);
            let any = {
                let (tab, mem) = crate::events::parts(dom);
                ports
                    .iter()
                    .any(|&port| tab.is_pending(&mem, xen_abi::types::EvtchnPort(port)))
            };
            if any {
                return true;
            }
            if !wake_on_any {
                return false;
            }
            if upcall_pending(dom, i) && !was_pending {
                return true;
            }
            let now_words = pending_words(dom);
            match &dom.vcpus[i].wait {
                Wait::Poll(p) => now_words
                    .iter()
                    .zip(p.snapshot.iter())
                    .any(|(n, then)| n & !then != 0),
                _ => true,
            }
        }
    }
}

/// SCHEDOP_block: enable event delivery and wait for an event.
pub fn block(dom: &mut Domain) {
    let i = crate::percpu::vcpu();
    crate::traps::vcpu_info(&dom.vcpus[i]).evtchn_upcall_mask = 0;
    if upcall_deliverable(dom, i) {
        return;
    }
    dom.vcpus[i].wait = Wait::Block;
    dom.waiting += 1;
    crate::sched::sleep(dom, i);
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct SchedPoll {
    ports: u64,
    nr_ports: u32,
    pad: u32,
    timeout: u64,
}

/// What a vCPU in SCHEDOP_poll waits for.
#[derive(Debug)]
pub struct PollWait {
    ports: Vec<u32>,
    /// An upcall was pending when the poll began.
    was_pending: bool,
    /// Any new event ends the wait (more than one port, or no upcall pending at the start).
    wake_on_any: bool,
    /// The 2-level pending words when the poll began: new events are bits set since.
    snapshot: [u64; 64],
    /// Absolute timeout (system time).
    deadline: Option<u64>,
}

/// SCHEDOP_poll: wait until one of the ports is pending, an upcall is deliverable, or the
/// absolute timeout (0: none) passes. As on Xen: a deliverable upcall returns at once, before
/// the ports are looked at; with more than one port listed any new event wakes the vCPU, and
/// so does any event at all if no upcall was pending when the poll began.
pub fn poll(c: &mut Ctx<'_>, arg: u64) -> Outcome {
    let p: SchedPoll = match c.mem().read_obj(arg) {
        Ok(p) => p,
        Err(e) => return Err(e).into(),
    };
    if upcall_deliverable(c.dom, c.vcpu) {
        return Ok(0).into();
    }
    if p.nr_ports > 128 {
        return Err(Errno::EINVAL).into();
    }
    let mut ports = Vec::with_capacity(p.nr_ports as usize);
    for i in 0..u64::from(p.nr_ports) {
        match c.mem().read_obj::<u32>(p.ports.wrapping_add(i * 4)) {
            Ok(port)
                if c.dom
                    .evtchn
                    .state(xen_abi::types::EvtchnPort(port))
                    .is_some() =>
            {
                ports.push(port)
            }
            Ok(_) => return Err(Errno::EINVAL).into(),
            Err(e) => return Err(e).into(),
        }
    }
    let was_pending = upcall_pending(c.dom, c.vcpu);
    let wait = PollWait {
        wake_on_any: ports.len() > 1 || !was_pending,
        ports,
        was_pending,
        snapshot: pending_words(c.dom),
        deadline: (p.timeout != 0).then_some(p.timeout),
    };
    let i = c.vcpu;
    c.dom.vcpus[i].wait = Wait::Poll(alloc::boxed::Box::new(wait));
    c.dom.next_due = 0;
    if wait_over(c.dom, i, crate::time::now_ns()) {
        c.dom.vcpus[i].wait = Wait::None;
    } else {
        c.dom.waiting += 1;
        crate::sched::sleep(c.dom, i);
    }
    Ok(0).into()
}

/// set_timer_op(timeout): the single-shot timer at an absolute system time (0 cancels). A
/// deadline with bit 63 set or more than 2^50 ns away is taken as "soon" (100 ms), as Xen
/// does for guests that pass a relative or overflowed value.
pub fn set_timer_op(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let now = crate::time::now_ns();
    let t = a[0];
    let deadline = if t == 0 {
        None
    } else if t >> 63 != 0 || t > now.saturating_add(1 << 50) {
        Some(now + 100_000_000)
    } else {
        Some(t)
    };
    c.dom.vcpus[c.vcpu].timer_deadline = deadline;
    c.dom.next_due = 0;
    Ok(0).into()
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct SingleShot {
    timeout_abs_ns: u64,
    flags: u32,
    pad: u32,
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct RegisterVcpuInfo {
    mfn: u64,
    offset: u32,
    rsvd: u32,
}

const VCPUOP_INITIALISE: u64 = 0;
const VCPUOP_UP: u64 = 1;
const VCPUOP_DOWN: u64 = 2;
const VCPUOP_IS_UP: u64 = 3;
const VCPUOP_GET_RUNSTATE_INFO: u64 = 4;
const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
const VCPUOP_SET_PERIODIC_TIMER: u64 = 6;
const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;
const VCPUOP_STOP_SINGLESHOT_TIMER: u64 = 9;
const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;
const VCPUOP_SEND_NMI: u64 = 11;

/// vcpu_op(cmd, vcpu, arg).
pub fn vcpu_op(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (cmd, vcpu, arg) = (a[0], a[1], a[2]);
    if vcpu >= c.dom.vcpus.len() as u64 {
        return Err(Errno::ENOENT).into();
    }
    let v = vcpu as usize;
    match cmd {
        VCPUOP_INITIALISE => initialise(c, v, arg).map(|()| 0).into(),
        VCPUOP_UP => {
            if !c.dom.vcpus[v].initialised {
                return Err(Errno::EINVAL).into();
            }
            if !c.dom.vcpus[v].up {
                c.dom.vcpus[v].up = true;
                c.dom.next_due = 0;
                if c.dom.vcpus[v].runnable() {
                    crate::sched::wake(c.dom, v);
                } else {
                    set_runstate(c.dom, v, RUNSTATE_BLOCKED);
                }
            }
            Ok(0).into()
        }
        VCPUOP_DOWN => {
            if !c.dom.vcpus.iter().enumerate().any(|(i, x)| i != v && x.up) {
                // The last vCPU going down takes the domain with it, as on Xen.
                crate::info!("d{}: last vCPU down, powering off", c.dom.id);
                c.dom.shutdown = Some(crate::domain::Shutdown::Requested(0));
            } else if c.dom.vcpus[v].up {
                c.dom.vcpus[v].up = false;
                crate::sched::sleep(c.dom, v);
            }
            Ok(0).into()
        }
        VCPUOP_IS_UP => Ok(u64::from(c.dom.vcpus[v].up)).into(),
        VCPUOP_GET_RUNSTATE_INFO => {
            // A read-only view: the current state's time so far is included.
            let mut r = c.dom.vcpus[v].runstate;
            let now = crate::time::now_ns();
            r.time[(r.state as usize).min(3)] += now.saturating_sub(r.state_entry_time);
            c.mem().write_obj(arg, &r).map(|()| 0).into()
        }
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => match c.mem().read_obj::<u64>(arg) {
            Ok(area) if area != 0 && !crate::guestmem::addr_ok(area) => Err(Errno::EFAULT).into(),
            Ok(area) => {
                c.dom.vcpus[v].runstate_area = area;
                publish_runstate(c.dom, v);
                Ok(0).into()
            }
            Err(e) => Err(e).into(),
        },
        VCPUOP_SET_PERIODIC_TIMER => match c.mem().read_obj::<u64>(arg) {
            Ok(p) if p < MIN_PERIOD_NS => Err(Errno::EINVAL).into(),
            Ok(p) => {
                let now = crate::time::now_ns();
                let x = &mut c.dom.vcpus[v];
                x.periodic_ns = p;
                // The first tick is due at once if the last one was a period or more ago.
                x.periodic_next = if now.saturating_sub(x.periodic_last) >= p {
                    now
                } else {
                    x.periodic_last + p
                };
                c.dom.next_due = 0;
                Ok(0).into()
            }
            Err(e) => Err(e).into(),
        },
        VCPUOP_STOP_PERIODIC_TIMER => {
            c.dom.vcpus[v].periodic_ns = 0;
            c.dom.next_due = 0;
            Ok(0).into()
        }
        VCPUOP_SET_SINGLESHOT_TIMER => {
            if v != c.vcpu {
                return Err(Errno::EINVAL).into();
            }
            // Xen 4.17 ignores VCPU_SSHOTTMR_future: a deadline in the past fires at once.
            match c.mem().read_obj::<SingleShot>(arg) {
                Ok(s) => {
                    c.dom.vcpus[v].timer_deadline = Some(s.timeout_abs_ns);
                    c.dom.next_due = 0;
                    Ok(0).into()
                }
                Err(e) => Err(e).into(),
            }
        }
        VCPUOP_STOP_SINGLESHOT_TIMER => {
            if v != c.vcpu {
                return Err(Errno::EINVAL).into();
            }
            c.dom.vcpus[v].timer_deadline = None;
            c.dom.next_due = 0;
            Ok(0).into()
        }
        VCPUOP_SEND_NMI => {
            if arg != 0 {
                return Err(Errno::EINVAL).into();
            }
            c.dom.vcpus[v].nmi_pending = true;
            Ok(0).into()
        }
        VCPUOP_REGISTER_VCPU_INFO => match c.mem().read_obj::<RegisterVcpuInfo>(arg) {
            Ok(r) => register_vcpu_info(c, v, r.mfn, r.offset).map(|()| 0).into(),
            Err(e) => Err(e).into(),
        },
        _ => Err(Errno::ENOSYS).into(),
    }
}

/// Whether an address is canonical.
fn canonical(a: u64) -> bool {
    ((a as i64) >> 47) == ((a as i64) >> 63)
}

/// VCPUOP_initialise: gives a vCPU that was never initialised its whole context
/// (`set_context`). The vCPU stays down unless the context says VGCF_online.
fn initialise(c: &mut Ctx<'_>, v: usize, arg: u64) -> Result<(), Errno> {
    let ctx = read_context(&c.mem(), arg)?;
    if c.dom.vcpus[v].initialised {
        return Err(Errno::EEXIST);
    }
    set_context(c.dom, v, &ctx)
}

/// Reads a struct vcpu_guest_context (5 KiB, so on the heap) from guest memory.
pub fn read_context(
    mem: &crate::guestmem::GuestMem<'_>,
    arg: u64,
) -> Result<alloc::boxed::Box<xen_abi::vcpu::VcpuGuestContext>, Errno> {
    let mut ctx = alloc::boxed::Box::<xen_abi::vcpu::VcpuGuestContext>::default();
    mem.read(arg, ctx.as_mut_bytes())?;
    Ok(ctx)
}

/// Gives vCPU `v` of `dom`, which was never initialised, the whole context `ctx`: registers,
/// trap table, callbacks, GDT, LDT, root page tables, FPU, debug registers, checked as Xen's
/// arch_set_info_guest checks them (VCPUOP_initialise, XEN_DOMCTL_setvcpucontext). The vCPU
/// comes up if the context says VGCF_online.
pub fn set_context(
    dom: &mut Domain,
    v: usize,
    ctx: &xen_abi::vcpu::VcpuGuestContext,
) -> Result<(), Errno> {
    use xen_abi::layout::{VGCF_FAILSAFE_DISABLES_EVENTS, VGCF_I387_VALID, VGCF_IN_KERNEL};
    use xen_abi::layout::{VGCF_ONLINE, VGCF_SYSCALL_DISABLES_EVENTS};
    let r = &ctx.user_regs;
    let ldt_used = ctx.ldt_ents != 0;
    let addresses = [
        r.rip,
        r.rsp,
        ctx.kernel_sp,
        if ldt_used { ctx.ldt_base } else { 0 },
        ctx.fs_base,
        ctx.gs_base_kernel,
        ctx.gs_base_user,
        ctx.event_callback_eip,
        ctx.syscall_callback_eip,
        ctx.failsafe_callback_eip,
    ];
    if !addresses.iter().all(|&a| canonical(a))
        || !ctx.trap_ctxt.iter().all(|t| canonical(t.address))
    {
        return Err(Errno::EINVAL);
    }
    if ldt_used
        && (!crate::guestmem::addr_ok(ctx.ldt_base)
            || ctx.ldt_base & 0xfff != 0
            || ctx.ldt_ents > 8192)
    {
        return Err(Errno::EINVAL);
    }
    if ctx.gdt_ents > crate::desc::MAX_GDT_ENTRIES {
        return Err(Errno::EINVAL);
    }
    let in_kernel = ctx.flags & VGCF_IN_KERNEL != 0;
    if !in_kernel && ctx.ctrlreg[1] == 0 {
        return Err(Errno::EINVAL);
    }
    // References: the GDT frames, then the kernel and user roots; undone on failure.
    let mut gdt = [0u64; crate::desc::GUEST_GDT_PAGES];
    gdt.copy_from_slice(&ctx.gdt_frames[..crate::desc::GUEST_GDT_PAGES]);
    crate::desc::replace_gdt(dom, v, gdt, ctx.gdt_ents)?;
    let (root, user_root) = (ctx.ctrlreg[3] >> 12, ctx.ctrlreg[1] >> 12);
    let undo_gdt = |dom: &mut Domain| {
        let _ = crate::desc::replace_gdt(dom, v, [0; crate::desc::GUEST_GDT_PAGES], 0);
    };
    if crate::mmu::replace_root_of(dom, 0, root).is_err() {
        undo_gdt(dom);
        return Err(Errno::EINVAL);
    }
    crate::mm::fill_ro_mpt(root);
    if user_root != 0 {
        if crate::mmu::replace_root_of(dom, 0, user_root).is_err() {
            let _ = crate::mmu::replace_root_of(dom, root, 0);
            undo_gdt(dom);
            return Err(Errno::EINVAL);
        }
        crate::mm::fill_ro_mpt(user_root);
    }
    let x = &mut dom.vcpus[v];
    x.guest_table = root;
    x.guest_table_user = user_root;
    x.kernel_mode = in_kernel;
    x.regs = crate::percpu::GuestRegs {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        rbp: r.rbp,
        rbx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rax: r.rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        vector: 0,
        error_code: 0,
        rip: r.rip,
        cs: u64::from(r.cs | 3),
        // IOPL is virtual; the real flags always have IF (the event mask is the virtual IF).
        rflags: (r.rflags & !(3 << 12 | 1 << 17)) | 1 << 9 | 2,
        rsp: r.rsp,
        ss: u64::from(r.ss | 3),
    };
    x.iopl = ((r.rflags >> 12) & 3) as u8;
    x.sel = [r.ds, r.es, r.fs, r.gs];
    for (i, t) in ctx.trap_ctxt.iter().enumerate() {
        x.trap_ctxt[i] = crate::domain::TrapEntry {
            flags: t.flags,
            cs: t.cs | 3,
            address: t.address,
        };
    }
    let nmi = x.trap_ctxt[2];
    x.nmi_callback = crate::domain::Callback {
        address: nmi.address,
        flags: u16::from(nmi.address != 0),
    };
    let mask_if = |f: u64| u16::from(ctx.flags & f != 0);
    x.event_callback = crate::domain::Callback {
        address: ctx.event_callback_eip,
        flags: 0,
    };
    x.failsafe_callback = crate::domain::Callback {
        address: ctx.failsafe_callback_eip,
        flags: mask_if(VGCF_FAILSAFE_DISABLES_EVENTS),
    };
    x.syscall_callback = crate::domain::Callback {
        address: ctx.syscall_callback_eip,
        flags: mask_if(VGCF_SYSCALL_DISABLES_EVENTS),
    };
    x.kernel_ss = ctx.kernel_ss | 3;
    x.kernel_sp = ctx.kernel_sp;
    x.ldt_base = if ldt_used { ctx.ldt_base } else { 0 };
    x.ldt_ents = ctx.ldt_ents;
    x.fs_base = ctx.fs_base;
    x.gs_base_kernel = ctx.gs_base_kernel;
    x.gs_base_user = ctx.gs_base_user;
    x.virtual_ts = ctx.ctrlreg[0] & (1 << 3) != 0;
    crate::emulate::set_guest_cr4(x, ctx.ctrlreg[4]);
    if ctx.flags & VGCF_I387_VALID != 0 {
        x.fpu.0.copy_from_slice(&ctx.fpu_ctxt);
        // FXRSTOR faults on reserved MXCSR bits; keep the architectural ones (DAZ aside,
        // which not every CPU has). Xen instead recovers from the fault.
        let mxcsr = u32::from_le_bytes([x.fpu.0[24], x.fpu.0[25], x.fpu.0[26], x.fpu.0[27]]);
        x.fpu.0[24..28].copy_from_slice(&(mxcsr & 0xffbf).to_le_bytes());
    }
    // Bad debug register values are dropped, as Xen 4.17 does here.
    for reg in [0u8, 1, 2, 3, 6, 7] {
        let _ = crate::emulate::set_debugreg(x, reg, ctx.debugreg[usize::from(reg)]);
    }
    x.initialised = true;
    if ctx.flags & VGCF_ONLINE != 0 {
        x.up = true;
        dom.next_due = 0;
        crate::sched::wake(dom, v);
    }
    Ok(())
}

/// The context of vCPU `v` of `dom`, which is not on a CPU, as Xen's arch_get_info_guest
/// gives it (XEN_DOMCTL_getvcpucontext): registers with the virtual IOPL, trap table,
/// callbacks, GDT/LDT, roots, control and debug registers, FPU, bases, VM assists. The FPU
/// image is always marked valid (it is the vCPU's real state; Xen marks it only once the
/// guest used the FPU).
pub fn get_context(dom: &Domain, v: usize) -> alloc::boxed::Box<xen_abi::vcpu::VcpuGuestContext> {
    use xen_abi::layout::{VGCF_FAILSAFE_DISABLES_EVENTS, VGCF_I387_VALID, VGCF_IN_KERNEL};
    use xen_abi::layout::{VGCF_ONLINE, VGCF_SYSCALL_DISABLES_EVENTS};
    let x = &dom.vcpus[v];
    let mut c = alloc::boxed::Box::<xen_abi::vcpu::VcpuGuestContext>::default();
    c.fpu_ctxt.copy_from_slice(&x.fpu.0);
    c.flags = VGCF_I387_VALID;
    if x.up {
        c.flags |= VGCF_ONLINE;
    }
    if x.kernel_mode {
        c.flags |= VGCF_IN_KERNEL;
    }
    if x.failsafe_callback.flags & 1 != 0 {
        c.flags |= VGCF_FAILSAFE_DISABLES_EVENTS;
    }
    if x.syscall_callback.flags & 1 != 0 {
        c.flags |= VGCF_SYSCALL_DISABLES_EVENTS;
    }
    let r = &x.regs;
    let u = &mut c.user_regs;
    (u.r15, u.r14, u.r13, u.r12, u.rbp, u.rbx) = (r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx);
    (u.r11, u.r10, u.r9, u.r8, u.rax, u.rcx) = (r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx);
    (u.rdx, u.rsi, u.rdi, u.rip, u.rsp) = (r.rdx, r.rsi, r.rdi, r.rip, r.rsp);
    u.cs = r.cs as u16;
    u.ss = r.ss as u16;
    u.rflags = r.rflags | (u64::from(x.iopl) << 12);
    [u.ds, u.es, u.fs, u.gs] = x.sel;
    for (i, t) in x.trap_ctxt.iter().enumerate() {
        c.trap_ctxt[i] = xen_abi::trap::TrapInfo {
            vector: i as u8,
            flags: t.flags,
            cs: t.cs,
            pad: 0,
            address: t.address,
        };
    }
    c.ldt_base = if x.ldt_ents != 0 { x.ldt_base } else { 0 };
    c.ldt_ents = x.ldt_ents;
    c.gdt_frames[..x.gdt_frames.len()].copy_from_slice(&x.gdt_frames);
    c.gdt_ents = x.gdt_ents;
    c.kernel_ss = x.kernel_ss;
    c.kernel_sp = x.kernel_sp;
    c.ctrlreg[0] = crate::emulate::GUEST_CR0 | if x.virtual_ts { 1 << 3 } else { 0 };
    c.ctrlreg[1] = x.guest_table_user << 12;
    c.ctrlreg[2] = crate::traps::vcpu_info(x).arch.cr2;
    c.ctrlreg[3] = x.guest_table << 12;
    c.ctrlreg[4] = crate::emulate::guest_cr4(x);
    c.debugreg = x.dr;
    c.event_callback_eip = x.event_callback.address;
    c.failsafe_callback_eip = x.failsafe_callback.address;
    c.syscall_callback_eip = x.syscall_callback.address;
    c.vm_assist = dom.vm_assist;
    c.fs_base = x.fs_base;
    c.gs_base_kernel = x.gs_base_kernel;
    c.gs_base_user = x.gs_base_user;
    c
}

/// VCPUOP_register_vcpu_info: moves the vCPU's vcpu_info into a guest frame, once.
fn register_vcpu_info(c: &mut Ctx<'_>, v: usize, mfn: u64, offset: u32) -> Result<(), Errno> {
    if u64::from(offset) + 64 > 4096 || !offset.is_multiple_of(8) {
        return Err(Errno::ENXIO);
    }
    if c.dom.vcpus[v].vcpu_info_frame != 0 {
        return Err(Errno::EINVAL);
    }
    let ptdom = c.dom.ptdom();
    crate::mm::with_frames(|ft, mem| {
        ft.get_page_and_type(mem, mfn, xenolith_core::pagetype::PageType::Writable, ptdom)
            .map_err(|_| Errno::EINVAL)
    })?;
    let old = crate::traps::vcpu_info(&c.dom.vcpus[v]).as_bytes().to_vec();
    let new = (mfn << 12) + u64::from(offset);
    crate::mm::frame_bytes(mfn)[offset as usize..offset as usize + 64].copy_from_slice(&old);
    let x = &mut c.dom.vcpus[v];
    x.vcpu_info_maddr = new;
    x.vcpu_info_frame = mfn;
    // Make the guest re-scan every event word: nothing raised during the move is lost.
    let vi = crate::traps::vcpu_info(&c.dom.vcpus[v]);
    vi.evtchn_upcall_pending = 1;
    vi.evtchn_pending_sel = !0;
    // And publish the clock there at once.
    crate::time::update_vcpu_time(vi);
    c.dom.vcpus[v].time_published = crate::time::now_ns();
    Ok(())
}

/// The 2-level pending bitmap (all zeros under the FIFO ABI, whose events are seen through the
/// upcall flag and the listed ports).
fn pending_words(dom: &mut Domain) -> [u64; 64] {
    use xenolith_core::evtchn::{Bitmap, EventMemory};
    let mut w = [0u64; 64];
    let (_, mem) = crate::events::parts(dom);
    for (i, x) in w.iter_mut().enumerate() {
        *x = mem.bitmap_load(Bitmap::Pending, i);
    }
    w
}
