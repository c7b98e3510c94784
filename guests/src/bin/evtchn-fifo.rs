//! Test kernel `evtchn-fifo`: the FIFO event channel ABI (control block, queues) as Xen 4.17.
//!
//! Command line: none needed (ignored). The control block and the one-page
//! event array are pages of the kernel's `.bss`; every event word starts
//! MASKED, as Linux initialises them. The event callback consumes like
//! Linux's `events_fifo.c` and logs each port.
//!
//! Checked, with Xen 4.17's answers:
//! * before `init_control`: `expand_array` -EOPNOTSUPP, `set_priority`
//!   -ENOSYS (2-level has no priorities).
//! * `init_control`: vCPU 1 -ENOENT; offset past `4096 - 72` or not 8-byte
//!   aligned -EINVAL; a frame beyond RAM or a page-table frame (the L4)
//!   -EINVAL; success sets
//!   `link_bits` 17; a second one for the same vCPU -EINVAL.
//! * `expand_array`: a frame beyond RAM or the L4's -EINVAL; the page: 0. A port left
//!   pending by the 2-level ABI (the new end of a loopback bind) becomes
//!   PENDING in its word when the page arrives, but stays unlinked while
//!   MASKED; `EVTCHNOP_unmask` links it (LINKED, ready bit 7, head[7]) and
//!   it is delivered.
//! * `set_priority`: 16 -EINVAL, a port beyond the valid ones -EINVAL.
//! * with events masked, IPI ports at priorities 9, 3, 3, 12 and 7 (default)
//!   sent in that order: each word PENDING|LINKED with LINK = the next port
//!   of its queue (0 at the tail); control block `head[p]` = first port of
//!   each queue; `ready` = the priorities used; upcall_pending 1. Enabling
//!   events: one callback, ports in priority order (3, 3, 7, 9, 12; FIFO
//!   within a queue); words left clear, `ready` 0.
//! * word masking: a MASKED port's send sets only PENDING (no LINKED, no
//!   ready bit, no callback); `EVTCHNOP_unmask` clears MASKED and delivers
//!   at once. Unlike 2-level, Xen relinks any pending port on
//!   `EVTCHNOP_unmask`, even one whose MASKED bit the guest already cleared.
//! * `EVTCHNOP_reset(SELF)` closes every port and returns to 2-level:
//!   ports restart at 1, `expand_array` -EOPNOTSUPP again, and a loopback
//!   bind is delivered through shared_info's bitmaps. The 2-level pending
//!   bit left from before the switch is still set in shared_info.
#![no_std]
#![no_main]

use xen_abi::event_channel::{
    EVTCHNSTAT_CLOSED, EVTCHN_FIFO_LINKED, EVTCHN_FIFO_LINK_BITS, EVTCHN_FIFO_LINK_MASK,
    EVTCHN_FIFO_MASKED, EVTCHN_FIFO_PENDING,
};
use xen_abi::types::DOMID_SELF;
use xen_abi::Errno;
use xenolith_guests::evtchn::{self, fifo_bit};
use xenolith_guests::mm::{self, Mm};
use xenolith_guests::{
    boot, check, check_eq, println, shared_info, test_main, vcpu, Boot, Failures, Verdict,
};

test_main!(run);

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// Holds the control block at [`CB_OFFSET`].
static mut CONTROL: Page = Page([0; 4096]);
/// Event array page 0 (ports 0-1023).
static mut ARRAY: Page = Page([0; 4096]);
/// A frame number beyond the machine's RAM.
const NO_FRAME: u64 = 0x7fff_ffff;
/// Where in its page the control block is.
const CB_OFFSET: u32 = 0x80;

const PENDING: u32 = fifo_bit(EVTCHN_FIFO_PENDING);
const MASKED: u32 = fifo_bit(EVTCHN_FIFO_MASKED);
const LINKED: u32 = fifo_bit(EVTCHN_FIFO_LINKED);

fn mfn_of(va: u64) -> u64 {
    mm::p2m((va - boot::virt_base()) / 4096)
}

fn word(port: u32) -> u32 {
    evtchn::fifo_word(port).load(core::sync::atomic::Ordering::SeqCst)
}

fn set_word(port: u32, v: u32) {
    evtchn::fifo_word(port).store(v, core::sync::atomic::Ordering::SeqCst);
}

fn ready() -> u32 {
    evtchn::fifo_ready().load(core::sync::atomic::Ordering::SeqCst)
}

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
    let si = boot.start_info;
    if shared_info::map(si).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    let _mm = Mm::new(si);
    check_eq!(
        t,
        evtchn::install_upcall(evtchn::log_2l),
        Ok(0),
        "callback_op(register event)"
    );
    check_eq!(
        t,
        vcpu::stop_periodic_timer(0),
        Ok(0),
        "VCPUOP_stop_periodic_timer"
    );

    // A loopback pair under the 2-level ABI; the bind leaves b pending.
    let a = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF).unwrap_or(0);
    let b = evtchn::bind_interdomain(DOMID_SELF, a).unwrap_or(0);
    check_eq!(t, (a, b), (1, 2), "loopback ports");
    check!(
        t,
        evtchn::is_pending(b),
        "2-level: bound port {b} not pending"
    );

    check_eq!(
        t,
        // SAFETY: refused before anything is mapped.
        unsafe { evtchn::expand_array(mfn_of((&raw const ARRAY) as u64)) },
        Err(Errno::EOPNOTSUPP),
        "expand_array before init_control"
    );
    check_eq!(
        t,
        evtchn::set_priority(b, 3),
        Err(Errno::ENOSYS),
        "set_priority under the 2-level ABI"
    );

    if !init(&mut t, mm::boot_l4()) {
        return t.verdict();
    }
    carried_over(&mut t, b);
    priorities(&mut t);
    masking(&mut t);
    back_to_2l(&mut t, b);
    t.verdict()
}

/// init_control and expand_array, their errnos, the words initialised MASKED.
/// `table`: the frame of the kernel's L4 (typed as a page table, so it cannot
/// become writable).
fn init(t: &mut Failures, table: u64) -> bool {
    let cb_va = (&raw const CONTROL) as u64;
    let cb_mfn = mfn_of(cb_va);
    let array_va = (&raw const ARRAY) as u64;
    let array_mfn = mfn_of(array_va);
    // SAFETY: the control block frame is this kernel's own page, used for nothing else; bad
    // arguments are refused.
    let r = unsafe { evtchn::init_control(cb_mfn, CB_OFFSET, 1) }.map(|c| c.link_bits);
    check_eq!(t, r, Err(Errno::ENOENT), "init_control(vcpu 1)");
    // SAFETY: the control block frame is this kernel's own page, used for nothing else; bad
    // arguments are refused.
    let r = unsafe { evtchn::init_control(cb_mfn, 4096 - 72 + 8, 0) }.map(|c| c.link_bits);
    check_eq!(
        t,
        r,
        Err(Errno::EINVAL),
        "init_control(offset 4032: crosses the page)"
    );
    // SAFETY: the control block frame is this kernel's own page, used for nothing else; bad
    // arguments are refused.
    let r = unsafe { evtchn::init_control(cb_mfn, CB_OFFSET + 4, 0) }.map(|c| c.link_bits);
    check_eq!(
        t,
        r,
        Err(Errno::EINVAL),
        "init_control(offset not 8-byte aligned)"
    );
    // SAFETY: the control block frame is this kernel's own page, used for nothing else; bad
    // arguments are refused.
    let r = unsafe { evtchn::init_control(NO_FRAME, CB_OFFSET, 0) }.map(|c| c.link_bits);
    check_eq!(t, r, Err(Errno::EINVAL), "init_control(a frame beyond RAM)");
    // SAFETY: the control block frame is this kernel's own page, used for nothing else; bad
    // arguments are refused.
    let r = unsafe { evtchn::init_control(table, CB_OFFSET, 0) }.map(|c| c.link_bits);
    check_eq!(t, r, Err(Errno::EINVAL), "init_control(the L4's frame)");
    // SAFETY: the control block frame is this kernel's own page, used for nothing else; bad
    // arguments are refused.
    let r = unsafe { evtchn::init_control(cb_mfn, CB_OFFSET, 0) }.map(|c| c.link_bits);
    println!("init_control(mfn {cb_mfn:#x}, {CB_OFFSET:#x}, 0) = {r:?}");
    if !check_eq!(
        t,
        r,
        Ok(EVTCHN_FIFO_LINK_BITS as u8),
        "init_control: link_bits"
    ) {
        return false;
    }
    // SAFETY: the control block frame is this kernel's own page, used for nothing else; bad
    // arguments are refused.
    let r = unsafe { evtchn::init_control(cb_mfn, CB_OFFSET, 0) }.map(|c| c.link_bits);
    check_eq!(t, r, Err(Errno::EINVAL), "init_control twice for vCPU 0");

    evtchn::fifo_attach(cb_va + u64::from(CB_OFFSET), array_va);
    for p in 0..evtchn::FIFO_WORDS_PER_PAGE {
        set_word(p, MASKED);
    }
    // SAFETY: the event array frame is this kernel's own page, used for nothing else; bad frames
    // are refused.
    let r = unsafe { evtchn::expand_array(NO_FRAME) };
    check_eq!(t, r, Err(Errno::EINVAL), "expand_array(a frame beyond RAM)");
    // SAFETY: refused (a page table cannot become writable).
    let r = unsafe { evtchn::expand_array(table) };
    check_eq!(t, r, Err(Errno::EINVAL), "expand_array(the L4's frame)");
    // SAFETY: the event array frame is this kernel's own page, used for nothing else; bad frames
    // are refused.
    let r = unsafe { evtchn::expand_array(array_mfn) };
    check_eq!(t, r, Ok(0), "expand_array(page 0)")
}

/// The 2-level pending state of `b` arrives with the array page.
fn carried_over(t: &mut Failures, b: u32) {
    check_eq!(t, word(b), PENDING | MASKED, "word({b}) after expand_array");
    check_eq!(t, ready(), 0, "ready while {b} is masked");
    evtchn::set_upcall_handler(evtchn::log_fifo);
    let before = evtchn::upcalls();
    check_eq!(t, evtchn::unmask(b), Ok(0), "EVTCHNOP_unmask({b})");
    check_eq!(t, word(b), PENDING | LINKED, "word({b}) after unmask");
    check_eq!(
        t,
        ready(),
        1 << 7,
        "ready after unmask (default priority 7)"
    );
    check_eq!(t, evtchn::fifo_cb_head(7), b, "control block head[7]");
    check_eq!(t, vcpu::upcall_pending(), 1, "upcall_pending after unmask");
    check_eq!(t, evtchn::upcalls(), before, "callbacks while masked");
    // SAFETY: the event callback is registered.
    unsafe { vcpu::enable_events() };
    expect_upcalls(t, "the carried-over event", before, 1, &[b]);
    check_eq!(t, word(b), 0, "word({b}) after consumption");
    check_eq!(t, ready(), 0, "ready after consumption");
    vcpu::disable_events();
}

fn priorities(t: &mut Failures) {
    let prios = [9u32, 3, 3, 12, 7];
    let mut ports = [0u32; 5];
    for (i, port) in ports.iter_mut().enumerate() {
        *port = evtchn::bind_ipi(0).unwrap_or(0);
        check_eq!(t, *port, 3 + i as u32, "bind_ipi #{i}");
        // Linux unmasks a non-pending port by clearing MASKED itself.
        set_word(*port, 0);
    }
    println!("IPI ports {ports:?}, priorities {prios:?}");
    for (&p, &prio) in ports.iter().zip(&prios) {
        if prio != 7 {
            check_eq!(
                t,
                evtchn::set_priority(p, prio),
                Ok(0),
                "set_priority({p}, {prio})"
            );
        }
    }
    check_eq!(
        t,
        evtchn::set_priority(ports[0], 16),
        Err(Errno::EINVAL),
        "set_priority(16)"
    );
    check_eq!(
        t,
        evtchn::set_priority(1 << 17, 3),
        Err(Errno::EINVAL),
        "set_priority(port 2^17)"
    );
    let before = evtchn::upcalls();
    for &p in &ports {
        check_eq!(t, evtchn::send(p), Ok(0), "send({p})");
    }
    check_eq!(t, evtchn::upcalls(), before, "callbacks while masked");
    let [p9, p3a, p3b, p12, p7] = ports;
    let links = [(p9, 0), (p3a, p3b), (p3b, 0), (p12, 0), (p7, 0)];
    for (p, link) in links {
        check_eq!(
            t,
            word(p),
            PENDING | LINKED | link,
            "word({p}): PENDING|LINKED, LINK {link}"
        );
    }
    for (prio, head) in [(3, p3a), (7, p7), (9, p9), (12, p12)] {
        check_eq!(t, evtchn::fifo_cb_head(prio), head, "head[{prio}]");
    }
    check_eq!(t, ready(), 1 << 3 | 1 << 7 | 1 << 9 | 1 << 12, "ready");
    check_eq!(t, vcpu::upcall_pending(), 1, "upcall_pending");
    // SAFETY: the event callback is registered.
    unsafe { vcpu::enable_events() };
    expect_upcalls(t, "five queued events", before, 1, &[p3a, p3b, p7, p9, p12]);
    for p in ports {
        check_eq!(
            t,
            word(p) & !EVTCHN_FIFO_LINK_MASK,
            0,
            "word({p}) after consumption"
        );
    }
    check_eq!(t, ready(), 0, "ready after consumption");

    // Queue 3 again: the tail of its last run (p3b) is unlinked, so Xen
    // starts the queue at its head again.
    let before = evtchn::upcalls();
    vcpu::disable_events();
    check_eq!(t, evtchn::send(p3b), Ok(0), "send({p3b})");
    check_eq!(t, evtchn::send(p3a), Ok(0), "send({p3a})");
    check_eq!(
        t,
        word(p3b),
        PENDING | LINKED | p3a,
        "word({p3b}) queued first"
    );
    check_eq!(t, word(p3a), PENDING | LINKED, "word({p3a}) queued second");
    check_eq!(t, evtchn::fifo_cb_head(3), p3b, "head[3] after re-queueing");
    // SAFETY: the event callback is registered.
    unsafe { vcpu::enable_events() };
    expect_upcalls(t, "queue 3 re-used", before, 1, &[p3b, p3a]);
}

fn masking(t: &mut Failures) {
    // Port 3 has priority 9.
    let p = 3;
    // SAFETY: the event callback is registered.
    unsafe { vcpu::enable_events() };
    set_word(p, MASKED);
    let before = evtchn::upcalls();
    check_eq!(t, evtchn::send(p), Ok(0), "send({p}) masked");
    check_eq!(
        t,
        word(p),
        PENDING | MASKED,
        "word({p}) after a masked send"
    );
    check_eq!(t, ready(), 0, "ready after a masked send");
    check_eq!(
        t,
        evtchn::upcalls(),
        before,
        "callbacks after a masked send"
    );
    check_eq!(t, evtchn::unmask(p), Ok(0), "EVTCHNOP_unmask({p})");
    expect_upcalls(
        t,
        "EVTCHNOP_unmask of a pending masked port",
        before,
        1,
        &[p],
    );
    check_eq!(t, word(p), 0, "word({p}) after delivery");

    // The guest clears MASKED itself with the event pending: nothing
    // happens until EVTCHNOP_unmask, which relinks it anyway.
    set_word(p, MASKED);
    let before = evtchn::upcalls();
    check_eq!(t, evtchn::send(p), Ok(0), "send({p}) masked (2)");
    evtchn::fifo_word(p).fetch_and(!MASKED, core::sync::atomic::Ordering::SeqCst);
    vcpu::spin_until(vcpu::now_ns() + 1_000_000);
    check_eq!(
        t,
        word(p),
        PENDING,
        "word({p}) after the guest cleared MASKED"
    );
    check_eq!(
        t,
        evtchn::upcalls(),
        before,
        "callbacks before EVTCHNOP_unmask"
    );
    check_eq!(
        t,
        evtchn::unmask(p),
        Ok(0),
        "EVTCHNOP_unmask({p}) with MASKED clear"
    );
    expect_upcalls(
        t,
        "EVTCHNOP_unmask of an unmasked pending port",
        before,
        1,
        &[p],
    );

    // Events held by the vcpu_info mask.
    vcpu::disable_events();
    let before = evtchn::upcalls();
    check_eq!(t, evtchn::send(p), Ok(0), "send({p}) with events disabled");
    vcpu::spin_until(vcpu::now_ns() + 1_000_000);
    check_eq!(
        t,
        evtchn::upcalls(),
        before,
        "callbacks with events disabled"
    );
    check_eq!(t, word(p), PENDING | LINKED, "word({p}) held");
    // SAFETY: the event callback is registered.
    unsafe { vcpu::enable_events() };
    expect_upcalls(t, "clearing the mask + xen_version(0)", before, 1, &[p]);
    vcpu::disable_events();
}

fn back_to_2l(t: &mut Failures, b: u32) {
    vcpu::disable_events();
    check_eq!(t, evtchn::reset(DOMID_SELF), Ok(0), "EVTCHNOP_reset(SELF)");
    for p in 1..8 {
        let s = evtchn::status(p).map(|s| s.status);
        check_eq!(t, s, Ok(EVTCHNSTAT_CLOSED), "status({p}) after reset");
    }
    check_eq!(
        t,
        // SAFETY: refused (no FIFO any more).
        unsafe { evtchn::expand_array(mfn_of((&raw const ARRAY) as u64)) },
        Err(Errno::EOPNOTSUPP),
        "expand_array after reset"
    );
    check_eq!(
        t,
        evtchn::set_priority(1, 3),
        Err(Errno::ENOSYS),
        "set_priority after reset"
    );
    // The 2-level bit set by the first bind is still there.
    check!(
        t,
        evtchn::is_pending(b),
        "2-level pending bit of {b} gone after reset"
    );
    evtchn::clear_pending(b);
    vcpu::set_upcall_pending(0);
    vcpu::take_pending_sel();

    evtchn::set_upcall_handler(evtchn::log_2l);
    let a = evtchn::alloc_unbound(DOMID_SELF, DOMID_SELF);
    check_eq!(t, a, Ok(1), "alloc_unbound after reset");
    let a = a.unwrap_or(1);
    let b2 = evtchn::bind_interdomain(DOMID_SELF, a);
    check_eq!(t, b2, Ok(2), "bind_interdomain after reset");
    let b2 = b2.unwrap_or(2);
    check!(
        t,
        evtchn::is_pending(b2),
        "2-level bit of {b2} not set by the bind"
    );
    let before = evtchn::upcalls();
    // SAFETY: the event callback is registered.
    unsafe { vcpu::enable_events() };
    expect_upcalls(t, "2-level delivery after reset", before, 1, &[b2]);
    check_eq!(t, evtchn::send(a), Ok(0), "send({a})");
    expect_upcalls(t, "2-level send after reset", before + 1, 1, &[b2]);
    vcpu::disable_events();
}
