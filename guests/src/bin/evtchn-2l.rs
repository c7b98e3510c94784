//! Test kernel `evtchn-2l`: 2-level event channels with an event callback, as Xen 4.17.
//!
//! Command line: none needed (ignored). The default 100 Hz periodic timer is
//! stopped first so that nothing but the test raises events. The event
//! callback consumes events like Linux (`evtchn_2l_handle_events`) and logs
//! each port; "one upcall" means the callback was entered exactly once.
//!
//! Checked, with Xen 4.17's answers:
//! * loopback: `alloc_unbound(SELF, SELF)` gives the lowest free port (1),
//!   status unbound with `u.unbound.dom` = 0 (SELF resolved to dom0);
//!   sending on it succeeds and raises nothing. `bind_interdomain(SELF, it)`
//!   gives port 2 and (Xen "may have lost notifications") leaves the new
//!   port pending with its selector bit and `evtchn_upcall_pending` set;
//!   both ends report interdomain, dom 0, the other port.
//! * delivery: unmasking like Linux (clear the mask, `xen_version(0)` if an
//!   upcall is pending) enters the callback once, with mask 1 at entry, the
//!   saved mask 0 in the frame's CS and RFLAGS.IF set, upcall_pending 1 and
//!   the selector bit set; the consumer leaves pending bit, selector and
//!   upcall_pending clear. A send with events enabled is delivered on the
//!   hypercall's return, once, to the other end; two sends while masked
//!   coalesce into one event.
//! * per-port mask: a masked port's send sets only its pending bit (no
//!   selector, no upcall_pending, no upcall); `EVTCHNOP_unmask` clears the
//!   mask and delivers at once. Xen re-raises only if *it* cleared the mask
//!   bit: after the guest cleared the bit itself, `EVTCHNOP_unmask` raises
//!   nothing.
//! * `EVTCHNOP_status` of each kind: port 0 (reserved) closed, unbound 1,
//!   interdomain 2, virq 4 (`u.virq`), ipi 5; vcpu 0; unused union words 0.
//!   Beyond the allocated ports: -EINVAL.
//! * IPI: `bind_ipi(0)` + send delivers that port to itself.
//! * errnos: close port 0, a closed port, beyond the ports: -EINVAL; send on
//!   a closed port: -EINVAL; `bind_virq` twice: -EEXIST, virq 24: -EINVAL,
//!   vCPU 1 (absent): -ENOENT, global VIRQ on vCPU 1: -EINVAL; `bind_ipi`
//!   vCPU 1: -ENOENT; `bind_interdomain` to a non-unbound port: -EINVAL, to
//!   an absent domain: -ESRCH; `alloc_unbound` in an absent domain: -ESRCH;
//!   `EVTCHNOP_reset_cont` with no reset in progress: -EBUSY (NULL: -EFAULT);
//!   unknown sub-op 99: -ENOSYS.
//! * `bind_vcpu`: interdomain/unbound/global-VIRQ ports to vCPU 0: 0; IPI and
//!   per-vCPU VIRQ ports: -EINVAL; vCPU 1: -ENOENT; closed port: -EINVAL.
//! * close: the peer of a closed interdomain port becomes unbound (dom 0);
//!   closing clears the pending bit but keeps the mask bit; the lowest free
//!   port is reused.
//! * `EVTCHNOP_reset(SELF)` closes every port.
#![no_std]
#![no_main]

use xen_abi::event_channel::{
    EvtchnStatus, EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_IPI, EVTCHNSTAT_UNBOUND,
    EVTCHNSTAT_VIRQ, VIRQ_DOM_EXC, VIRQ_TIMER,
};
use xen_abi::types::DOMID_SELF;
use xen_abi::Errno;
use xenolith_guests::evtchn::{self, CallbackFrame};
use xenolith_guests::{
    check, check_eq, println, shared_info, test_main, vcpu, Boot, Failures, Verdict,
};

test_main!(run);

/// RFLAGS.IF.
const IF: u64 = 1 << 9;
/// `EVTCHNOP_reset_cont` (public/event_channel.h; not in xen-abi).
const EVTCHNOP_RESET_CONT: u32 = 14;
/// A domain id that does not exist.
const NO_DOMAIN: u16 = 5;

fn handler(_f: &mut CallbackFrame) {
    evtchn::consume_2l(|port| evtchn::log_push(port, vcpu::now_ns()));
}

/// Checks that exactly `n` callbacks ran since `before` and that the ports
/// handled were `ports`, then clears the log.
fn expect_upcalls(t: &mut Failures, what: &str, before: u64, n: u64, ports: &[u32]) {
    check_eq!(
        t,
        evtchn::upcalls() - before,
        n,
        "{what}: event callbacks entered"
    );
    let log = evtchn::log();
    check_eq!(t, log.ports(), ports, "{what}: ports handled");
    evtchn::log_clear();
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    if shared_info::map(boot.start_info).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    check_eq!(t, vcpu::upcall_mask(), 1, "evtchn_upcall_mask at start");
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

    let (a, b) = loopback(&mut t);
    delivery(&mut t, a, b);
    port_masks(&mut t, a, b);
    upcall_mask(&mut t, a, b);
    statuses(&mut t, a, b);
    ipi(&mut t);
    errnos(&mut t, a);
    bind_vcpu(&mut t, a, b);
    closing(&mut t, a, b);

    vcpu::disable_events();
    check_eq!(t, evtchn::reset(DOMID_SELF), Ok(0), "EVTCHNOP_reset(SELF)");
    for p in 1..8 {
        let s = evtchn::status(p).map(|s| s.status);
        check_eq!(t, s, Ok(EVTCHNSTAT_CLOSED), "status({p}) after reset");
    }
    t.verdict()
}

fn status_words(s: &EvtchnStatus) -> (u32, u32, [u32; 2]) {
    (s.status, s.vcpu, s.u)
}

/// alloc_unbound + bind_interdomain to it; returns (unbound end, bound end).
fn loopback(t: &mut Failures) -> (u32, u32) {
    let a = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF);
    println!("alloc_unbound(SELF, SELF) = {a:?}");
    check_eq!(t, a, Ok(1), "alloc_unbound(SELF, SELF): lowest free port");
    let a = a.unwrap_or(1);
    let s = evtchn::status(a).map(|s| status_words(&s));
    check_eq!(
        t,
        s,
        Ok((EVTCHNSTAT_UNBOUND, 0, [0, 0])),
        "status(unbound {a}): unbound, vcpu 0, u.unbound.dom 0"
    );
    check_eq!(t, evtchn::send(a), Ok(0), "send on an unbound port");
    check!(
        t,
        !evtchn::is_pending(a),
        "send on unbound port {a} set it pending"
    );
    check_eq!(
        t,
        vcpu::upcall_pending(),
        0,
        "upcall_pending after send on unbound"
    );

    let b = evtchn::bind_interdomain(DOMID_SELF, a);
    println!("bind_interdomain(SELF, {a}) = {b:?}");
    check_eq!(t, b, Ok(2), "bind_interdomain(SELF, {a}): next free port");
    let b = b.unwrap_or(2);
    // Xen sets the new local port pending ("may have lost notifications").
    check!(
        t,
        evtchn::is_pending(b),
        "bound port {b} not pending after bind_interdomain"
    );
    check!(
        t,
        !evtchn::is_pending(a),
        "remote port {a} pending after bind_interdomain"
    );
    check_eq!(
        t,
        vcpu::pending_sel(),
        1,
        "evtchn_pending_sel after bind_interdomain"
    );
    check_eq!(
        t,
        vcpu::upcall_pending(),
        1,
        "upcall_pending after bind_interdomain"
    );
    check_eq!(t, evtchn::upcalls(), 0, "callbacks while masked");
    let s = evtchn::status(a).map(|s| status_words(&s));
    check_eq!(
        t,
        s,
        Ok((EVTCHNSTAT_INTERDOMAIN, 0, [0, b])),
        "status({a}): interdomain, dom 0, port {b}"
    );
    let s = evtchn::status(b).map(|s| status_words(&s));
    check_eq!(
        t,
        s,
        Ok((EVTCHNSTAT_INTERDOMAIN, 0, [0, a])),
        "status({b}): interdomain, dom 0, port {a}"
    );
    (a, b)
}

/// The pending event from the bind, then sends with events enabled.
fn delivery(t: &mut Failures, a: u32, b: u32) {
    let before = evtchn::upcalls();
    // SAFETY: the event callback is registered.
    unsafe { vcpu::enable_events() };
    expect_upcalls(
        t,
        "enabling events with the bind's event pending",
        before,
        1,
        &[b],
    );
    let snap = evtchn::last_upcall();
    println!("upcall snapshot: {snap:x?}");
    check_eq!(t, snap.mask, 1, "evtchn_upcall_mask at callback entry");
    check_eq!(
        t,
        snap.pending,
        1,
        "evtchn_upcall_pending at callback entry"
    );
    check_eq!(t, snap.sel, 1, "evtchn_pending_sel at callback entry");
    check_eq!(t, snap.saved_mask, 0, "saved mask in the frame's CS");
    check_eq!(
        t,
        snap.rflags & IF,
        IF,
        "frame RFLAGS.IF (events were enabled)"
    );
    check!(
        t,
        !evtchn::is_pending(b),
        "port {b} still pending after the callback"
    );
    check_eq!(t, vcpu::pending_sel(), 0, "selector after the callback");
    check_eq!(
        t,
        vcpu::upcall_pending(),
        0,
        "upcall_pending after the callback"
    );
    check_eq!(t, vcpu::upcall_mask(), 0, "mask after the callback's iret");

    let before = evtchn::upcalls();
    check_eq!(t, evtchn::send(a), Ok(0), "send({a})");
    expect_upcalls(t, "send({a}) with events enabled", before, 1, &[b]);
    let before = evtchn::upcalls();
    check_eq!(t, evtchn::send(b), Ok(0), "send({b})");
    expect_upcalls(t, "send({b}) with events enabled", before, 1, &[a]);
    // Nothing more arrives later.
    vcpu::spin_until(vcpu::now_ns() + 2_000_000);
    check_eq!(
        t,
        evtchn::upcalls() - before,
        1,
        "callbacks 2 ms after send({b})"
    );

    vcpu::disable_events();
    let before = evtchn::upcalls();
    check_eq!(t, evtchn::send(a), Ok(0), "send({a}) masked (1)");
    check_eq!(t, evtchn::send(a), Ok(0), "send({a}) masked (2)");
    check!(
        t,
        evtchn::is_pending(b),
        "port {b} not pending after masked sends"
    );
    check_eq!(t, evtchn::upcalls(), before, "callbacks while masked");
    // SAFETY: the event callback is registered.
    unsafe { vcpu::enable_events() };
    expect_upcalls(t, "two masked sends then enabling", before, 1, &[b]);
}

/// Per-port mask bits and EVTCHNOP_unmask, with events enabled.
fn port_masks(t: &mut Failures, a: u32, b: u32) {
    evtchn::mask(b);
    let before = evtchn::upcalls();
    check_eq!(t, evtchn::send(a), Ok(0), "send({a}) to masked {b}");
    check!(
        t,
        evtchn::is_pending(b),
        "masked port {b} not pending after send"
    );
    check_eq!(
        t,
        vcpu::pending_sel(),
        0,
        "selector after send to a masked port"
    );
    check_eq!(
        t,
        vcpu::upcall_pending(),
        0,
        "upcall_pending after send to a masked port"
    );
    check_eq!(
        t,
        evtchn::upcalls(),
        before,
        "callbacks after send to a masked port"
    );
    check_eq!(t, evtchn::unmask(b), Ok(0), "EVTCHNOP_unmask({b})");
    check!(
        t,
        !evtchn::is_masked(b),
        "port {b} still masked after EVTCHNOP_unmask"
    );
    expect_upcalls(t, "EVTCHNOP_unmask of a pending port", before, 1, &[b]);

    // The guest clears the mask bit itself: Xen's unmask finds it clear and
    // re-raises nothing.
    evtchn::mask(b);
    check_eq!(t, evtchn::send(a), Ok(0), "send({a}) to masked {b} (2)");
    evtchn::clear_mask_bit(b);
    let before = evtchn::upcalls();
    check_eq!(
        t,
        evtchn::unmask(b),
        Ok(0),
        "EVTCHNOP_unmask({b}) with the bit already clear"
    );
    check_eq!(
        t,
        evtchn::upcalls(),
        before,
        "callbacks after EVTCHNOP_unmask of an unmasked pending port"
    );
    check!(t, evtchn::is_pending(b), "port {b} no longer pending");
    check_eq!(t, vcpu::pending_sel(), 0, "selector after that unmask");
    // Linux re-masks before the hypercall; then it is delivered.
    evtchn::mask(b);
    check_eq!(
        t,
        evtchn::unmask(b),
        Ok(0),
        "EVTCHNOP_unmask({b}) after re-masking"
    );
    expect_upcalls(t, "EVTCHNOP_unmask after re-masking", before, 1, &[b]);
}

/// Events held while vcpu_info's mask is set, released by clearing it plus a kick.
fn upcall_mask(t: &mut Failures, a: u32, b: u32) {
    vcpu::disable_events();
    let before = evtchn::upcalls();
    check_eq!(t, evtchn::send(a), Ok(0), "send({a}) with events disabled");
    check_eq!(t, evtchn::send(b), Ok(0), "send({b}) with events disabled");
    vcpu::spin_until(vcpu::now_ns() + 2_000_000);
    check_eq!(
        t,
        evtchn::upcalls(),
        before,
        "callbacks while the upcall mask is set"
    );
    check_eq!(t, vcpu::upcall_pending(), 1, "upcall_pending while masked");
    check_eq!(t, vcpu::pending_sel(), 1, "selector while masked");
    // SAFETY: the event callback is registered; Linux's xen_irq_enable.
    unsafe { vcpu::enable_events() };
    // One callback handles both, lowest port first.
    expect_upcalls(t, "clearing the mask + xen_version(0)", before, 1, &[a, b]);
    check_eq!(
        t,
        evtchn::last_upcall().saved_mask,
        0,
        "saved mask after the kick"
    );
}

fn statuses(t: &mut Failures, a: u32, b: u32) {
    vcpu::disable_events();
    let s = evtchn::status(0).map(|s| status_words(&s));
    check_eq!(
        t,
        s,
        Ok((EVTCHNSTAT_CLOSED, 0, [0, 0])),
        "status(0): closed"
    );
    let s = evtchn::status(a).map(|s| s.status);
    check_eq!(t, s, Ok(EVTCHNSTAT_INTERDOMAIN), "status({a})");
    let s = evtchn::status(b).map(|s| s.status);
    check_eq!(t, s, Ok(EVTCHNSTAT_INTERDOMAIN), "status({b})");
    let v = evtchn::bind_virq(VIRQ_DOM_EXC, 0);
    check_eq!(t, v, Ok(3), "bind_virq(VIRQ_DOM_EXC, 0)");
    let v = v.unwrap_or(3);
    let s = evtchn::status(v).map(|s| status_words(&s));
    check_eq!(
        t,
        s,
        Ok((EVTCHNSTAT_VIRQ, 0, [VIRQ_DOM_EXC, 0])),
        "status(virq {v}): virq, u.virq 3"
    );
    let i = evtchn::bind_ipi(0);
    check_eq!(t, i, Ok(4), "bind_ipi(0)");
    let i = i.unwrap_or(4);
    let s = evtchn::status(i).map(|s| status_words(&s));
    check_eq!(t, s, Ok((EVTCHNSTAT_IPI, 0, [0, 0])), "status(ipi {i})");
    let u = evtchn::alloc_unbound(DOMID_SELF, 0);
    check_eq!(t, u, Ok(5), "alloc_unbound(SELF, 0)");
    let u = u.unwrap_or(5);
    let s = evtchn::status(u).map(|s| status_words(&s));
    check_eq!(
        t,
        s,
        Ok((EVTCHNSTAT_UNBOUND, 0, [0, 0])),
        "status(unbound {u})"
    );
    // A port never allocated but inside the first bucket, and ports beyond.
    let s = evtchn::status(6).map(|s| status_words(&s));
    check_eq!(
        t,
        s,
        Ok((EVTCHNSTAT_CLOSED, 0, [0, 0])),
        "status(6): free port"
    );
    check_eq!(
        t,
        evtchn::status(4095).map(|s| s.status),
        Err(Errno::EINVAL),
        "status(4095): beyond the allocated ports"
    );
    check_eq!(
        t,
        evtchn::status(4096).map(|s| s.status),
        Err(Errno::EINVAL),
        "status(4096): beyond the 2-level ABI"
    );
    check_eq!(
        t,
        evtchn::status_of(NO_DOMAIN, 1).map(|s| s.status),
        Err(Errno::ESRCH),
        "status of an absent domain"
    );
    for p in [v, i, u] {
        check_eq!(t, evtchn::close(p), Ok(0), "close({p})");
    }
}

fn ipi(t: &mut Failures) {
    let i = evtchn::bind_ipi(0);
    check_eq!(t, i, Ok(3), "bind_ipi(0): lowest free port again");
    let Ok(i) = i else { return };
    // SAFETY: the event callback is registered.
    unsafe { vcpu::enable_events() };
    let before = evtchn::upcalls();
    check_eq!(t, evtchn::send(i), Ok(0), "send(ipi {i})");
    expect_upcalls(t, "send on an IPI port", before, 1, &[i]);
    vcpu::disable_events();
    check_eq!(t, evtchn::close(i), Ok(0), "close(ipi {i})");
}

fn errnos(t: &mut Failures, a: u32) {
    vcpu::disable_events();
    check_eq!(t, evtchn::close(0), Err(Errno::EINVAL), "close(0)");
    let u = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF).unwrap_or(0);
    check_eq!(t, evtchn::close(u), Ok(0), "close(unbound {u})");
    check_eq!(t, evtchn::close(u), Err(Errno::EINVAL), "close({u}) again");
    check_eq!(t, evtchn::close(4095), Err(Errno::EINVAL), "close(4095)");
    check_eq!(t, evtchn::send(u), Err(Errno::EINVAL), "send on closed {u}");
    check_eq!(t, evtchn::send(0), Err(Errno::EINVAL), "send on port 0");
    check_eq!(t, evtchn::send(4096), Err(Errno::EINVAL), "send(4096)");
    check_eq!(t, evtchn::unmask(4096), Err(Errno::EINVAL), "unmask(4096)");

    let tp = evtchn::bind_virq(VIRQ_TIMER, 0);
    check_eq!(t, tp, Ok(u), "bind_virq(VIRQ_TIMER, 0): lowest free port");
    check_eq!(
        t,
        evtchn::bind_virq(VIRQ_TIMER, 0),
        Err(Errno::EEXIST),
        "bind_virq(VIRQ_TIMER, 0) twice"
    );
    check_eq!(
        t,
        evtchn::bind_virq(24, 0),
        Err(Errno::EINVAL),
        "bind_virq(24)"
    );
    check_eq!(
        t,
        evtchn::bind_virq(u32::MAX, 0),
        Err(Errno::EINVAL),
        "bind_virq(0xffffffff)"
    );
    check_eq!(
        t,
        evtchn::bind_virq(VIRQ_TIMER, 1),
        Err(Errno::ENOENT),
        "bind_virq(VIRQ_TIMER, vcpu 1)"
    );
    check_eq!(
        t,
        evtchn::bind_virq(VIRQ_DOM_EXC, 1),
        Err(Errno::EINVAL),
        "bind_virq(global VIRQ_DOM_EXC, vcpu 1)"
    );
    check_eq!(
        t,
        evtchn::bind_ipi(1),
        Err(Errno::ENOENT),
        "bind_ipi(vcpu 1)"
    );
    if let Ok(tp) = tp {
        let s = evtchn::status(tp).map(|s| status_words(&s));
        check_eq!(
            t,
            s,
            Ok((EVTCHNSTAT_VIRQ, 0, [VIRQ_TIMER, 0])),
            "status(VIRQ_TIMER)"
        );
        check_eq!(
            t,
            evtchn::bind_interdomain(DOMID_SELF, tp),
            Err(Errno::EINVAL),
            "bind_interdomain to a VIRQ port"
        );
        check_eq!(t, evtchn::close(tp), Ok(0), "close(VIRQ_TIMER port)");
    }
    check_eq!(
        t,
        evtchn::bind_interdomain(DOMID_SELF, a),
        Err(Errno::EINVAL),
        "bind_interdomain to an interdomain port"
    );
    check_eq!(
        t,
        evtchn::bind_interdomain(DOMID_SELF, 4095),
        Err(Errno::EINVAL),
        "bind_interdomain to port 4095"
    );
    check_eq!(
        t,
        evtchn::bind_interdomain(NO_DOMAIN, 1),
        Err(Errno::ESRCH),
        "bind_interdomain to an absent domain"
    );
    check_eq!(
        t,
        evtchn::alloc_unbound(NO_DOMAIN, DOMID_SELF),
        Err(Errno::ESRCH),
        "alloc_unbound in an absent domain"
    );
    // EVTCHNOP_reset_cont (14) resumes a preempted reset: with none in
    // progress, -EBUSY.
    let mut reset_arg = [0u64; 1];
    // SAFETY: Xen reads a domid from the buffer.
    let r = unsafe { evtchn::op_raw(EVTCHNOP_RESET_CONT, (&raw mut reset_arg) as u64) };
    check_eq!(
        t,
        r,
        -(Errno::EBUSY as i64),
        "EVTCHNOP_reset_cont(dom 0), no reset in progress"
    );
    // SAFETY: a NULL argument is only read, and faults in Xen.
    let r = unsafe { evtchn::op_raw(EVTCHNOP_RESET_CONT, 0) };
    check_eq!(t, r, -(Errno::EFAULT as i64), "EVTCHNOP_reset_cont(NULL)");
    // SAFETY: an unknown sub-op reads nothing.
    let r = unsafe { evtchn::op_raw(99, 0) };
    check_eq!(t, r, -(Errno::ENOSYS as i64), "event_channel_op(99)");
}

fn bind_vcpu(t: &mut Failures, a: u32, b: u32) {
    vcpu::disable_events();
    check_eq!(
        t,
        evtchn::bind_vcpu(b, 0),
        Ok(0),
        "bind_vcpu(interdomain {b}, 0)"
    );
    check_eq!(
        t,
        evtchn::bind_vcpu(a, 1),
        Err(Errno::ENOENT),
        "bind_vcpu({a}, vcpu 1)"
    );
    let u = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF).unwrap_or(0);
    check_eq!(
        t,
        evtchn::bind_vcpu(u, 0),
        Ok(0),
        "bind_vcpu(unbound {u}, 0)"
    );
    let g = evtchn::bind_virq(VIRQ_DOM_EXC, 0).unwrap_or(0);
    check_eq!(
        t,
        evtchn::bind_vcpu(g, 0),
        Ok(0),
        "bind_vcpu(global virq {g}, 0)"
    );
    let tp = evtchn::bind_virq(VIRQ_TIMER, 0).unwrap_or(0);
    check_eq!(
        t,
        evtchn::bind_vcpu(tp, 0),
        Err(Errno::EINVAL),
        "bind_vcpu(per-vCPU virq {tp}, 0)"
    );
    let i = evtchn::bind_ipi(0).unwrap_or(0);
    check_eq!(
        t,
        evtchn::bind_vcpu(i, 0),
        Err(Errno::EINVAL),
        "bind_vcpu(ipi {i}, 0)"
    );
    for p in [u, g, tp, i] {
        check_eq!(t, evtchn::close(p), Ok(0), "close({p})");
    }
    check_eq!(
        t,
        evtchn::bind_vcpu(u, 0),
        Err(Errno::EINVAL),
        "bind_vcpu(closed {u}, 0)"
    );
    check_eq!(
        t,
        evtchn::bind_vcpu(4095, 0),
        Err(Errno::EINVAL),
        "bind_vcpu(4095, 0)"
    );
}

fn closing(t: &mut Failures, a: u32, b: u32) {
    vcpu::disable_events();
    // A pending, masked port: closing clears pending, keeps the mask bit.
    evtchn::mask(b);
    check_eq!(t, evtchn::send(a), Ok(0), "send({a}) before close");
    check!(
        t,
        evtchn::is_pending(b),
        "port {b} not pending before close"
    );
    check_eq!(t, evtchn::close(b), Ok(0), "close(interdomain {b})");
    check!(t, !evtchn::is_pending(b), "closed port {b} still pending");
    check!(
        t,
        evtchn::is_masked(b),
        "closing port {b} cleared its mask bit"
    );
    let s = evtchn::status(a).map(|s| status_words(&s));
    check_eq!(
        t,
        s,
        Ok((EVTCHNSTAT_UNBOUND, 0, [0, 0])),
        "status({a}) after its peer closed: unbound, dom 0"
    );
    check_eq!(t, evtchn::send(a), Ok(0), "send on the now unbound {a}");
    let s = evtchn::status(b).map(|s| status_words(&s));
    check_eq!(
        t,
        s,
        Ok((EVTCHNSTAT_CLOSED, 0, [0, 0])),
        "status(closed {b})"
    );
    // The freed port is the lowest free one; it comes back masked.
    let again = evtchn::bind_interdomain(DOMID_SELF, a);
    check_eq!(t, again, Ok(b), "bind_interdomain(SELF, {a}) reuses {b}");
    check!(
        t,
        evtchn::is_masked(b),
        "re-bound port {b} lost its mask bit"
    );
    evtchn::clear_mask_bit(b);
    evtchn::clear_pending(b);
    vcpu::set_upcall_pending(0);
    vcpu::take_pending_sel();
}
