//! Per-vCPU time and state hypercalls: timers (set_timer_op, vcpu_op single-shot and
//! periodic) delivering VIRQ_TIMER, runstate areas, vcpu_info placement, and the blocking
//! sched_ops (block, poll).
//!
//! Timers are kept in system time (ns since boot, the clock guests read from vcpu_time_info).
//! `check` fires expired timers and programs the local APIC for the next one; it runs on every
//! return to the guest and while the vCPU waits.
use xen_abi::errno::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::domain::Domain;
use crate::hypercall::{Ctx, Outcome};

/// VIRQ_TIMER.
const VIRQ_TIMER: u32 = 0;
/// VIRQ_CONSOLE: console input for the hardware domain.
const VIRQ_CONSOLE: u32 = 2;
/// Shortest periodic timer Xen accepts (1 ms).
const MIN_PERIOD_NS: u64 = 1_000_000;

/// Runstate values.
pub const RUNSTATE_RUNNING: u32 = 0;
pub const RUNSTATE_BLOCKED: u32 = 2;

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

/// Fires expired timers of vCPU 0, refreshes its clock record when due, and arms the local
/// APIC for the next event (timers, a poll timeout, the next refresh).
pub fn check(dom: &mut Domain) {
    let now = crate::time::now_ns();
    let v = &mut dom.vcpus[0];
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
    let refresh = now.saturating_sub(v.time_published) >= TIME_REFRESH_NS;
    if refresh {
        v.time_published = now;
        crate::time::stamp();
    }
    let mut next = v.time_published + TIME_REFRESH_NS;
    if let Some(d) = v.timer_deadline {
        next = next.min(d);
    }
    if v.periodic_ns != 0 {
        next = next.min(v.periodic_next);
    }
    if let Some(d) = v.poll_deadline {
        next = next.min(d);
    }
    crate::time::set_deadline(Some(next));
    if refresh {
        crate::time::update_vcpu_time(crate::traps::vcpu_info(&dom.vcpus[0]));
    }
    if fire {
        let _ = crate::events::send_virq(dom, 0, VIRQ_TIMER);
    }
    if dom.privileged && crate::console::take_rx_notify() {
        let _ = crate::events::send_virq(dom, 0, VIRQ_CONSOLE);
    }
}

/// Changes the vCPU's runstate, accounting the time spent in the old one, and publishes it.
pub fn set_runstate(dom: &mut Domain, state: u32) {
    let now = crate::time::now_ns();
    let v = &mut dom.vcpus[0];
    let r = &mut v.runstate;
    let old = (r.state as usize).min(3);
    r.time[old] += now.saturating_sub(r.state_entry_time);
    r.state = state;
    r.state_entry_time = now;
    publish_runstate(dom);
}

/// Writes the runstate into the guest's registered area, if any.
fn publish_runstate(dom: &Domain) {
    let v = &dom.vcpus[0];
    if v.runstate_area != 0 {
        let mem = crate::guestmem::GuestMem::current(dom, v.current_root());
        // An area that stopped being writable is the guest's problem, as on Xen.
        let _ = mem.write_obj(v.runstate_area, &v.runstate);
    }
}

/// Waits with events enabled until `done` holds, firing timers meanwhile.
fn wait(dom: &mut Domain, mut done: impl FnMut(&mut Domain) -> bool) {
    set_runstate(dom, RUNSTATE_BLOCKED);
    loop {
        check(dom);
        if done(dom) {
            break;
        }
        xenolith_arch::instr::sti_hlt_cli();
    }
    set_runstate(dom, RUNSTATE_RUNNING);
}

fn upcall_deliverable(dom: &Domain) -> bool {
    let vi = crate::traps::vcpu_info(&dom.vcpus[0]);
    // SAFETY: valid references; volatile reads of bytes the guest and interrupt paths change.
    let (pending, mask) = unsafe {
        (
            core::ptr::read_volatile(&raw const vi.evtchn_upcall_pending),
            core::ptr::read_volatile(&raw const vi.evtchn_upcall_mask),
        )
    };
    pending != 0 && mask == 0
}

/// SCHEDOP_block: enable event delivery and wait for an event.
pub fn block(dom: &mut Domain) {
    crate::traps::vcpu_info(&dom.vcpus[0]).evtchn_upcall_mask = 0;
    wait(dom, |d| upcall_deliverable(d));
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct SchedPoll {
    ports: u64,
    nr_ports: u32,
    pad: u32,
    timeout: u64,
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
    if upcall_deliverable(c.dom) {
        return Ok(0).into();
    }
    if p.nr_ports > 128 {
        return Err(Errno::EINVAL).into();
    }
    let mut ports = alloc::vec::Vec::with_capacity(p.nr_ports as usize);
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
    let any_pending = |dom: &mut Domain| {
        let (tab, mem) = crate::events::parts(dom);
        ports
            .iter()
            .any(|&port| tab.is_pending(&mem, xen_abi::types::EvtchnPort(port)))
    };
    let upcall_pending = |dom: &Domain| {
        let vi = crate::traps::vcpu_info(&dom.vcpus[0]);
        // SAFETY: a valid reference; a volatile read of a byte the guest and events change.
        unsafe { core::ptr::read_volatile(&raw const vi.evtchn_upcall_pending) != 0 }
    };
    let was_pending = upcall_pending(c.dom);
    let wake_on_any = ports.len() > 1 || !was_pending;
    // New events show as pending bits that were clear when the poll began.
    let snapshot = pending_words(c.dom);
    let new_event = |dom: &mut Domain| {
        pending_words(dom)
            .iter()
            .zip(snapshot.iter())
            .any(|(now, then)| now & !then != 0)
    };
    if p.timeout != 0 {
        c.dom.vcpus[0].poll_deadline = Some(p.timeout);
    }
    wait(c.dom, |dom| {
        any_pending(dom)
            || (wake_on_any && (new_event(dom) || upcall_pending(dom) && !was_pending))
            || dom.vcpus[0]
                .poll_deadline
                .is_some_and(|t| crate::time::now_ns() >= t)
    });
    c.dom.vcpus[0].poll_deadline = None;
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
    check(c.dom);
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
        VCPUOP_IS_UP => Ok(1).into(),
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
                set_runstate(c.dom, RUNSTATE_RUNNING);
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
                check(c.dom);
                Ok(0).into()
            }
            Err(e) => Err(e).into(),
        },
        VCPUOP_STOP_PERIODIC_TIMER => {
            c.dom.vcpus[v].periodic_ns = 0;
            check(c.dom);
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
                    check(c.dom);
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
            check(c.dom);
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
