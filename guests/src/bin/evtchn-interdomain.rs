//! Test kernel `evtchn-interdomain`: event channels between dom0 and a domU
//! (2-level ABI), as Xen 4.17.
//!
//! Command line: none.
//!
//! dom0 acts as a toolstack: it builds a domU running the script interpreter
//! of [`domu_script`] (raw `SYSCALL` hypercalls from a script in its data
//! page, results read back through a read-only foreign mapping) and looks at
//! the domU's event state in its shared_info page through foreign mappings
//! of that frame (getdomaininfo `shared_info_frame`, `mmu_update` with
//! `foreigndom` = the domU). dom0 runs with events masked and waits with
//! `SCHEDOP_poll`. Before unpausing the domU it sets `evtchn_upcall_mask` in
//! the domU's vcpu_infos, as libxc's builder does: the domU has no event
//! callback, and an upcall would crash it.
//!
//! Checked, with Xen 4.17's answers (dom0 ports P0 = 1, P1 = 2; domU ports
//! PU = 1, L = 2, PX = 3):
//! * The new domU's shared_info: no port pending or masked, vCPU 0's
//!   `evtchn_upcall_pending`, `evtchn_upcall_mask` and selector 0 (Xen
//!   leaves masking to the toolstack).
//! * dom0 `alloc_unbound {dom: SELF, remote_dom: domU}`: port P0 = 1, status
//!   unbound, vCPU 0, `u.unbound.dom` = domU. dom0 `alloc_unbound {dom: domU,
//!   remote_dom: 0}` (privileged, as a toolstack does for xenstore/console):
//!   port PU = 1 in the domU's table (its port 0 is reserved), and
//!   `status {dom: domU}` from dom0 shows it unbound for dom 0; the domU's
//!   port 0 shows closed.
//! * The domU's script, each step's result:
//!   - `bind_interdomain {remote_dom: 0, remote_port: P0}`: 0, local port
//!     L = 2 written back;
//!   - the same again: -EINVAL (P0 is no longer unbound), local port not
//!     written;
//!   - `bind_interdomain {remote_dom: SELF, remote_port: PU}`: -EINVAL (PU
//!     waits for dom0, not for the domU);
//!   - `status {dom: SELF, port: PU}`: 0, unbound, vCPU 0, dom 0;
//!   - `status {dom: 0, port: P0}`: -EPERM (another domain's port);
//!   - `send` on L: 0.
//! * dom0: P0 was not pending before; the send wakes dom0's `SCHEDOP_poll`
//!   on P0 with P0 pending, selector bit 0 and `evtchn_upcall_pending` set.
//!   Status of P0: interdomain (domU, L); of the domU's L (asked by dom0):
//!   interdomain (0, P0). The domU's shared_info: L pending (the bind's
//!   "lost notification" on the new local port), selector bit 0 and
//!   `evtchn_upcall_pending` set, the mask dom0 set still 1, nothing else.
//! * dom0 (the domU paused, its pending state cleared through a writable
//!   mapping) `bind_interdomain {remote_dom: domU, remote_port: PU}`: P1 = 2,
//!   P1 pending in dom0, nothing raised in the domU; status of P1:
//!   interdomain (domU, PU), of PU: interdomain (0, P1). `send` on P1 sets PU
//!   pending in the domU with its selector bit and `evtchn_upcall_pending`;
//!   `send` on P0 adds L; neither sets anything in dom0.
//! * dom0 closes P0: 0; P0 closed, the domU's L unbound for dom 0 (still
//!   pending: the peer's state is not touched); `send` on P0: -EINVAL.
//!   `bind_interdomain {domU, L}` reconnects: port 1 (P0's number reused),
//!   interdomain both ways.
//! * Errors: dom0 `alloc_unbound {dom: domU, remote_dom: domU}` gives PX = 3,
//!   unbound for the domU itself; `bind_interdomain` to PX: -EINVAL, to PU
//!   (connected): -EINVAL, to the domU's reserved port 0: -EINVAL, to a port
//!   beyond the domU's table: -EINVAL; to a domain that does not exist:
//!   -ESRCH; `alloc_unbound` and `status` with a domain that does not exist:
//!   -ESRCH. None of these used up a dom0 port (the next `alloc_unbound` in
//!   dom0 gives 3).
//! * destroydomain while P1 and the reconnected port are connected: 0 (one
//!   call), getdomaininfo -ESRCH; both dom0 ports become unbound for the
//!   destroyed domain's id; `send` on P1: 0, nothing pending (dropped);
//!   `bind_interdomain`, `alloc_unbound` and `status` naming the destroyed
//!   domain: -ESRCH; closing both ports: 0.
#![no_std]
#![no_main]

use core::mem::{offset_of, size_of};

use xen_abi::event_channel::{
    EvtchnBindInterdomain, EvtchnStatus, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_SEND, EVTCHNOP_STATUS,
    EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_UNBOUND,
};
use xen_abi::hypercall::EVENT_CHANNEL_OP;
use xen_abi::layout::XEN_LEGACY_MAX_VCPUS;
use xen_abi::shared_info::{SharedInfo, VcpuInfo, EVTCHN_WORDS};
use xen_abi::types::DOMID_SELF;
use xen_abi::Errno;
use xenolith_guests::builder::{self, map_foreign, TinyDomain, PFN_DATA};
use xenolith_guests::domu_script::{
    self, check_results, data_va, get, hc, put, put_script, ret, Rax, Step, ARGS,
};
use xenolith_guests::mm::{self, Mm};
use xenolith_guests::{check, check_eq, domctl, evtchn, println, shared_info, test_main};
use xenolith_guests::{vcpu, Boot, Failures, Verdict};

test_main!(run);

const MS: u64 = 1_000_000;
/// Window through which dom0 reads the domU's data page (read-only).
const WATCH: usize = 1;
/// Window for the domU's shared_info.
const SHINFO: usize = 2;
/// A domain id that does not exist.
const NO_DOMAIN: u16 = 77;
/// What dom0 puts in fields Xen should write (or leave alone).
const UNSET: u32 = 0xdead;

// Argument structures in the domU's data page.
const ARG_BIND: usize = ARGS;
const ARG_BIND_AGAIN: usize = ARGS + 0x10;
const ARG_BIND_SELF: usize = ARGS + 0x20;
const ARG_STATUS_OWN: usize = ARGS + 0x40;
const ARG_STATUS_DOM0: usize = ARGS + 0x60;
/// `EVTCHNOP_send`'s argument is just the port: the `local_port` Xen wrote
/// back into the first bind's argument.
const ARG_SEND: usize = ARG_BIND + offset_of!(EvtchnBindInterdomain, local_port);

// shared_info layout.
const VCPU_INFO: usize = offset_of!(SharedInfo, vcpu_info);
const UPCALL_PENDING: usize = VCPU_INFO + offset_of!(VcpuInfo, evtchn_upcall_pending);
const UPCALL_MASK: usize = VCPU_INFO + offset_of!(VcpuInfo, evtchn_upcall_mask);
const PENDING_SEL: usize = VCPU_INFO + offset_of!(VcpuInfo, evtchn_pending_sel);
const EVTCHN_PENDING: usize = offset_of!(SharedInfo, evtchn_pending);
const EVTCHN_MASK: usize = offset_of!(SharedInfo, evtchn_mask);

/// Ports Xen 4.17 hands out.
const EXPECT_P0: u32 = 1;
const EXPECT_P1: u32 = 2;
const EXPECT_PU: u32 = 1;
const EXPECT_L: u32 = 2;
const EXPECT_PX: u32 = 3;

type Words = (u32, u32, [u32; 2]);

fn words(s: &EvtchnStatus) -> Words {
    (s.status, s.vcpu, s.u)
}

const fn unbound(dom: u16) -> Words {
    (EVTCHNSTAT_UNBOUND, 0, [dom as u32, 0])
}

const fn interdomain(dom: u16, port: u32) -> Words {
    (EVTCHNSTAT_INTERDOMAIN, 0, [dom as u32, port])
}

const CLOSED: Words = (EVTCHNSTAT_CLOSED, 0, [0, 0]);

/// Checks `EVTCHNOP_status {dom, port}` from dom0.
fn check_status(t: &mut Failures, dom: u16, port: u32, expect: Result<Words, Errno>, what: &str) {
    let got = evtchn::status_of(dom, port).map(|s| words(&s));
    check_eq!(
        t,
        got,
        expect,
        "status {{dom {dom:#x}, port {port}}} ({what})"
    );
}

const fn bit(port: u32) -> u64 {
    1 << (port % 64)
}

/// The domU's event state as its shared_info shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Events {
    /// `evtchn_pending` word 0 (ports 0-63).
    pending0: u64,
    /// OR of `evtchn_pending` words 1-63.
    pending_rest: u64,
    /// OR of every `evtchn_mask` word.
    mask: u64,
    /// vCPU 0's `evtchn_upcall_pending`.
    upcall_pending: u8,
    /// vCPU 0's `evtchn_upcall_mask`.
    upcall_mask: u8,
    /// vCPU 0's `evtchn_pending_sel`.
    sel: u64,
}

/// What a domU looks like with `pending0` pending (the toolstack masked
/// upcalls if `masked`).
fn events(pending0: u64, masked: bool) -> Events {
    Events {
        pending0,
        pending_rest: 0,
        mask: 0,
        upcall_pending: u8::from(pending0 != 0),
        upcall_mask: u8::from(masked),
        sel: u64::from(pending0 != 0),
    }
}

/// The domU and its shared_info frame.
struct Domu {
    d: TinyDomain,
    shinfo: u64,
}

impl Domu {
    fn id(&self) -> u16 {
        self.d.domid
    }

    /// Reads the domU's event state through a read-only mapping.
    fn events(&self) -> Result<Events, Errno> {
        let va = map_foreign(SHINFO, self.id(), self.shinfo, false)?;
        let pending_rest =
            (1..EVTCHN_WORDS).fold(0, |a, i| a | get::<u64>(va, EVTCHN_PENDING + i * 8));
        let mask = (0..EVTCHN_WORDS).fold(0, |a, i| a | get::<u64>(va, EVTCHN_MASK + i * 8));
        let e = Events {
            pending0: get(va, EVTCHN_PENDING),
            pending_rest,
            mask,
            upcall_pending: get(va, UPCALL_PENDING),
            upcall_mask: get(va, UPCALL_MASK),
            sel: get(va, PENDING_SEL),
        };
        mm::unmap_window(SHINFO)?;
        Ok(e)
    }

    /// Lets `f` write the domU's shared_info through a writable mapping
    /// (its VA), then removes the mapping.
    fn edit(&self, f: impl FnOnce(u64)) -> Result<(), Errno> {
        let va = map_foreign(SHINFO, self.id(), self.shinfo, true)?;
        f(va);
        mm::unmap_window(SHINFO)
    }

    fn check_events(&self, t: &mut Failures, expect: Events, what: &str) {
        let got = self.events();
        println!("domU events {what}: {got:x?}");
        check_eq!(t, got, Ok(expect), "the domU's event state {what}");
    }
}

/// Writes `v` at byte `off` of the page mapped at `va`.
fn set<T: Copy>(va: u64, off: usize, v: T) {
    assert!(off.is_multiple_of(size_of::<T>()) && off + size_of::<T>() <= 4096);
    // SAFETY: `va` maps a whole page writable; the aligned range is inside
    // it and T is plain data.
    unsafe { ((va + off as u64) as *mut T).write_volatile(v) }
}

/// The domU's script (its arguments are in the data page).
fn steps() -> [Step; 6] {
    let ev = |op: u32, arg: usize| [op.into(), data_va(arg), 0, 0, 0];
    [
        hc(
            "bind_interdomain {0, P0}",
            EVENT_CHANNEL_OP,
            ev(EVTCHNOP_BIND_INTERDOMAIN, ARG_BIND),
            Rax(0),
        ),
        hc(
            "bind_interdomain {0, P0} again",
            EVENT_CHANNEL_OP,
            ev(EVTCHNOP_BIND_INTERDOMAIN, ARG_BIND_AGAIN),
            ret(Errno::EINVAL),
        ),
        hc(
            "bind_interdomain {SELF, PU} (PU waits for dom0)",
            EVENT_CHANNEL_OP,
            ev(EVTCHNOP_BIND_INTERDOMAIN, ARG_BIND_SELF),
            ret(Errno::EINVAL),
        ),
        hc(
            "status {SELF, PU}",
            EVENT_CHANNEL_OP,
            ev(EVTCHNOP_STATUS, ARG_STATUS_OWN),
            Rax(0),
        ),
        hc(
            "status {0, P0} (dom0's port)",
            EVENT_CHANNEL_OP,
            ev(EVTCHNOP_STATUS, ARG_STATUS_DOM0),
            ret(Errno::EPERM),
        ),
        hc(
            "send on L",
            EVENT_CHANNEL_OP,
            ev(EVTCHNOP_SEND, ARG_SEND),
            Rax(0),
        ),
    ]
}

fn script_data(p: &mut [u64; 512], p0: u32, pu: u32) {
    put_script(p, &steps());
    let bind = |remote_dom, remote_port| EvtchnBindInterdomain {
        remote_dom,
        pad: 0,
        remote_port,
        local_port: UNSET,
    };
    put(p, ARG_BIND, bind(0, p0));
    put(p, ARG_BIND_AGAIN, bind(0, p0));
    put(p, ARG_BIND_SELF, bind(DOMID_SELF, pu));
    let status = |dom, port| EvtchnStatus {
        dom,
        pad: 0,
        port,
        status: UNSET,
        vcpu: UNSET,
        u: [0, 0],
    };
    put(p, ARG_STATUS_OWN, status(DOMID_SELF, pu));
    put(p, ARG_STATUS_DOM0, status(0, p0));
}

/// Waits up to `timeout_ms` (SCHEDOP_poll) for `port` to be pending in dom0;
/// the ms it took.
fn wait_pending(port: u32, timeout_ms: u64) -> Option<u64> {
    let start = vcpu::now_ns();
    let deadline = start + timeout_ms * MS;
    while !evtchn::is_pending(port) {
        if vcpu::now_ns() >= deadline {
            return None;
        }
        let _ = vcpu::poll(&[port], deadline);
    }
    Some((vcpu::now_ns() - start) / MS)
}

/// Waits up to `timeout_ms` for the interpreter to finish, blocking 1 ms at
/// a time in `SCHEDOP_poll` on `port` (not pending) so that the domU runs.
fn wait_finished(data: u64, port: u32, timeout_ms: u64) -> bool {
    let deadline = vcpu::now_ns() + timeout_ms * MS;
    while !domu_script::finished(data) {
        let now = vcpu::now_ns();
        if now >= deadline {
            return false;
        }
        let _ = vcpu::poll(&[port], now + MS);
    }
    true
}

/// Clears dom0's own pending state for `ports` (selector, upcall_pending).
fn clear_dom0(ports: &[u32]) {
    for &p in ports {
        evtchn::clear_pending(p);
    }
    vcpu::take_pending_sel();
    vcpu::set_upcall_pending(0);
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    if shared_info::map(boot.start_info).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    vcpu::disable_events();
    // Records the p2m and the boot tables, which the mapping windows need.
    let _ = Mm::new(boot.start_info);

    let d = domu_script::new_domain(&mut t, "evtchn-interdomain");
    let shinfo = builder::shared_info_mfn(d.domid).unwrap_or_else(|e| {
        println!("getdomaininfo of the domU: {e:?}");
        xenolith_guests::error("no shared_info for the domU");
    });
    let u = Domu { d, shinfo };
    let dom = u.id();
    println!("domU {dom}, shared_info mfn {shinfo:#x}");
    u.check_events(&mut t, Events::default(), "when built");

    // 1. An unbound port in dom0 for the domU.
    let p0 = evtchn::alloc_unbound(DOMID_SELF, dom);
    println!("alloc_unbound {{SELF, {dom}}} = {p0:?}");
    check_eq!(t, p0, Ok(EXPECT_P0), "alloc_unbound {{SELF, domU}}");
    let p0 = p0.unwrap_or(EXPECT_P0);
    check_status(
        &mut t,
        DOMID_SELF,
        p0,
        Ok(unbound(dom)),
        "P0 unbound for the domU",
    );

    // 2. An unbound port in the domU's table for dom0.
    let pu = evtchn::alloc_unbound(dom, 0);
    println!("alloc_unbound {{{dom}, 0}} = {pu:?}");
    check_eq!(t, pu, Ok(EXPECT_PU), "alloc_unbound {{domU, 0}}");
    let pu = pu.unwrap_or(EXPECT_PU);
    check_status(&mut t, dom, pu, Ok(unbound(0)), "PU unbound for dom 0");
    check_status(&mut t, dom, 0, Ok(CLOSED), "the domU's reserved port 0");

    // The toolstack masks upcalls in the new domain (libxc does the same).
    let masked = u.edit(|va| {
        for i in 0..XEN_LEGACY_MAX_VCPUS {
            set::<u8>(va, UPCALL_MASK + i * size_of::<VcpuInfo>(), 1);
        }
    });
    if !check_eq!(
        t,
        masked,
        Ok(()),
        "writable mapping of the domU's shared_info"
    ) {
        xenolith_guests::error("cannot mask the domU's upcalls");
    }

    // 3. The domU binds to P0 and sends.
    u.d.fill(PFN_DATA, |p| script_data(p, p0, pu))
        .expect("writing the data page");
    let data = match map_foreign(WATCH, dom, u.d.mfn(PFN_DATA), false) {
        Ok(va) => va,
        Err(e) => {
            println!("mapping the data page: {e:?}");
            xenolith_guests::error("cannot read the domU's results");
        }
    };
    check!(t, !evtchn::is_pending(p0), "P0 pending before the domU ran");
    check_eq!(t, domctl::unpause_domain(dom), Ok(0), "unpausedomain");
    let woken = wait_pending(p0, 2000);
    println!("P0 pending after {woken:?} ms");
    check!(t, woken.is_some(), "P0 not pending within 2 s");
    // 4. (dom0's side of the domU's send.)
    check_eq!(
        t,
        (
            evtchn::is_pending(p0),
            vcpu::pending_sel(),
            vcpu::upcall_pending()
        ),
        (true, 1, 1),
        "dom0 after the domU's send (P0 pending, selector, upcall_pending)"
    );
    clear_dom0(&[p0]);
    let finished = wait_finished(data, p0, 2000);
    check_eq!(t, domctl::pause_domain(dom), Ok(0), "pausedomain");
    if !finished {
        let flags = domctl::getdomaininfo(dom).map(|(_, i)| i.flags);
        check!(
            t,
            false,
            "the domU did not finish its script (flags {flags:#x?})"
        );
    }
    let script = steps();
    check_results(&mut t, data, &script);
    let l = get::<EvtchnBindInterdomain>(data, ARG_BIND).local_port;
    check_eq!(
        t,
        (
            l,
            get::<EvtchnBindInterdomain>(data, ARG_BIND_AGAIN).local_port
        ),
        (EXPECT_L, UNSET),
        "local ports written back by the two binds"
    );
    let own = get::<EvtchnStatus>(data, ARG_STATUS_OWN);
    check_eq!(t, words(&own), unbound(0), "the domU's status of PU");
    mm::unmap_window(WATCH).expect("restoring the watch window");
    println!("domU bound port L = {l}");

    check_status(
        &mut t,
        DOMID_SELF,
        p0,
        Ok(interdomain(dom, l)),
        "P0 connected to L",
    );
    check_status(&mut t, dom, l, Ok(interdomain(0, p0)), "L connected to P0");
    check_status(&mut t, dom, pu, Ok(unbound(0)), "PU still unbound");
    u.check_events(&mut t, events(bit(l), true), "after its bind and send");
    check_eq!(
        t,
        u.edit(|va| {
            set::<u64>(va, EVTCHN_PENDING, 0);
            set::<u64>(va, PENDING_SEL, 0);
            set::<u8>(va, UPCALL_PENDING, 0);
        }),
        Ok(()),
        "clearing the domU's pending state"
    );

    // dom0 connects to PU.
    let p1 = evtchn::bind_interdomain(dom, pu);
    println!("bind_interdomain {{{dom}, {pu}}} = {p1:?}");
    check_eq!(t, p1, Ok(EXPECT_P1), "bind_interdomain {{domU, PU}}");
    let p1 = p1.unwrap_or(EXPECT_P1);
    check_eq!(
        t,
        (
            evtchn::is_pending(p1),
            vcpu::pending_sel(),
            vcpu::upcall_pending()
        ),
        (true, 1, 1),
        "dom0 after its bind (P1 pending, selector, upcall_pending)"
    );
    clear_dom0(&[p1]);
    check_status(
        &mut t,
        DOMID_SELF,
        p1,
        Ok(interdomain(dom, pu)),
        "P1 connected to PU",
    );
    check_status(
        &mut t,
        dom,
        pu,
        Ok(interdomain(0, p1)),
        "PU connected to P1",
    );
    u.check_events(&mut t, events(0, true), "after dom0's bind");

    // 5. dom0 sends on both connections.
    check_eq!(t, evtchn::send(p1), Ok(0), "send on P1");
    u.check_events(&mut t, events(bit(pu), true), "after send on P1");
    check_eq!(t, evtchn::send(p0), Ok(0), "send on P0");
    u.check_events(&mut t, events(bit(pu) | bit(l), true), "after send on P0");
    check_eq!(
        t,
        (
            evtchn::is_pending(p0),
            evtchn::is_pending(p1),
            vcpu::upcall_pending()
        ),
        (false, false, 0),
        "dom0 after its sends (P0, P1 pending, upcall_pending)"
    );

    // 6. dom0 closes P0.
    check_eq!(t, evtchn::close(p0), Ok(0), "close P0");
    check_status(&mut t, DOMID_SELF, p0, Ok(CLOSED), "P0 after close");
    check_status(&mut t, dom, l, Ok(unbound(0)), "L after P0's close");
    u.check_events(&mut t, events(bit(pu) | bit(l), true), "after P0's close");
    check_eq!(t, evtchn::send(p0), Err(Errno::EINVAL), "send on closed P0");
    let p0b = evtchn::bind_interdomain(dom, l);
    println!("bind_interdomain {{{dom}, {l}}} = {p0b:?}");
    check_eq!(t, p0b, Ok(p0), "bind_interdomain {{domU, L}} again");
    let p0b = p0b.unwrap_or(p0);
    clear_dom0(&[p0b]);
    check_status(
        &mut t,
        DOMID_SELF,
        p0b,
        Ok(interdomain(dom, l)),
        "reconnected to L",
    );
    check_status(&mut t, dom, l, Ok(interdomain(0, p0b)), "L reconnected");

    // 8. Errors.
    let px = evtchn::alloc_unbound(dom, dom);
    println!("alloc_unbound {{{dom}, {dom}}} = {px:?}");
    check_eq!(t, px, Ok(EXPECT_PX), "alloc_unbound {{domU, domU}}");
    let px = px.unwrap_or(EXPECT_PX);
    check_status(&mut t, dom, px, Ok(unbound(dom)), "PX unbound for the domU");
    check_eq!(
        t,
        evtchn::bind_interdomain(dom, px),
        Err(Errno::EINVAL),
        "bind_interdomain to a port unbound for another domain"
    );
    check_eq!(
        t,
        evtchn::bind_interdomain(dom, pu),
        Err(Errno::EINVAL),
        "bind_interdomain to a connected port"
    );
    check_eq!(
        t,
        evtchn::bind_interdomain(dom, 0),
        Err(Errno::EINVAL),
        "bind_interdomain to the domU's port 0"
    );
    check_eq!(
        t,
        evtchn::bind_interdomain(dom, 1000),
        Err(Errno::EINVAL),
        "bind_interdomain to a port beyond the domU's table"
    );
    check_eq!(
        t,
        evtchn::bind_interdomain(NO_DOMAIN, 1),
        Err(Errno::ESRCH),
        "bind_interdomain to a domain that does not exist"
    );
    check_eq!(
        t,
        evtchn::alloc_unbound(NO_DOMAIN, 0),
        Err(Errno::ESRCH),
        "alloc_unbound in a domain that does not exist"
    );
    check_status(&mut t, NO_DOMAIN, 1, Err(Errno::ESRCH), "no such domain");
    let spare = evtchn::alloc_unbound(DOMID_SELF, dom);
    check_eq!(t, spare, Ok(3), "dom0's next free port after the refusals");
    if let Ok(p) = spare {
        check_eq!(t, evtchn::close(p), Ok(0), "close the spare port");
    }

    // 7. Destroy the domU with P1 and P0b connected.
    let mut calls = 0;
    let r = loop {
        calls += 1;
        match domctl::destroy_domain(dom) {
            Err(Errno::ERESTART | Errno::EAGAIN) if calls < 100 => {}
            r => break r,
        }
    };
    check_eq!(t, (r, calls), (Ok(0), 1), "destroydomain (result, calls)");
    check_eq!(
        t,
        domctl::getdomaininfo(dom).map(|r| r.0),
        Err(Errno::ESRCH),
        "getdomaininfo of the destroyed domU"
    );
    check_status(
        &mut t,
        DOMID_SELF,
        p1,
        Ok(unbound(dom)),
        "P1 after the destroy",
    );
    check_status(
        &mut t,
        DOMID_SELF,
        p0b,
        Ok(unbound(dom)),
        "the reconnected port after the destroy",
    );
    clear_dom0(&[p1, p0b]);
    check_eq!(t, evtchn::send(p1), Ok(0), "send on P1 (peer destroyed)");
    check_eq!(
        t,
        (evtchn::is_pending(p1), vcpu::upcall_pending()),
        (false, 0),
        "dom0 after the send on P1 (P1 pending, upcall_pending)"
    );
    check_eq!(
        t,
        evtchn::bind_interdomain(dom, pu),
        Err(Errno::ESRCH),
        "bind_interdomain to the destroyed domain"
    );
    check_eq!(
        t,
        evtchn::alloc_unbound(dom, 0),
        Err(Errno::ESRCH),
        "alloc_unbound in the destroyed domain"
    );
    check_status(&mut t, dom, pu, Err(Errno::ESRCH), "the destroyed domain");
    check_eq!(t, evtchn::close(p1), Ok(0), "close P1");
    check_eq!(t, evtchn::close(p0b), Ok(0), "close the reconnected port");
    check_status(&mut t, DOMID_SELF, p1, Ok(CLOSED), "P1 after close");
    t.verdict()
}
