//! Test kernel `domu-hostile`: a domU attacks the hypervisor and dom0, and
//! dom0 (acting as a toolstack, with [`builder`] and [`domctl`]) checks that
//! it was contained, that its shutdown and its crash are reported to dom0
//! with `VIRQ_DOM_EXC`, and that neither stops the machine.
//!
//! Command line: none.
//!
//! The domU runs the script interpreter of [`domu_script`]: a list of raw
//! `SYSCALL` hypercalls, loads and stores that dom0 writes into the domU's
//! data page before unpausing it; dom0 reads each step's result back through
//! a read-only foreign mapping (a slot still holding the sentinel was never
//! reached). Every argument structure (with the dom0 MFN to map, the machine address of
//! the domU's own L1 entry, dom0's L1 entry, the domU's own id, dom0's
//! VIRQ_DOM_EXC port) is also in the data page.
//!
//! Checked, with Xen 4.17's answers:
//! * dom0 binds `VIRQ_DOM_EXC` (port 1) before anything else.
//! * First domU (built as in `sched-weight`: one vCPU, 8 pages; `max_mem`
//!   then lowered to 32 KiB, exactly its 8 pages: tot_pages 8, max_pages 8),
//!   each step's result:
//!   - `domctl` getdomaininfo of dom0: -EPERM, the buffer not filled in;
//!   - `console_io` CONSOLEIO_write: -EPERM (release build: only the
//!     control domain may write);
//!   - `platform_op` XENPF_settime64 (to 1970): -EPERM; dom0's wallclock
//!     seconds unchanged;
//!   - `mmu_update` of its own L1 entry (the one mapping its stack page) to
//!     a dom0 frame, writable and read-only, foreigndom DOMID_SELF: -EBUSY
//!     (Xen cannot take a reference for a frame of another owner), done 0;
//!   - the same with foreigndom 0 (dom0): -EPERM, done 0; with its own id as
//!     foreigndom: -ESRCH, done 0;
//!   - `mmu_update` of dom0's L1 entry (mapping one of dom0's pages) to the
//!     dom0 frame writable: -EINVAL (the table is not the domU's), done 0;
//!     the same naming dom0 as page-table owner (`foreigndom` = 1 << 16 |
//!     DOMID_SELF): -EPERM, done 0;
//!   - a load through its stack mapping: its own stack page (the marker dom0
//!     put there), not dom0's frame;
//!   - `memory_op` populate_physmap with domid 0: 0 extents;
//!     increase_reservation and populate_physmap (pfn 8) for itself beyond
//!     max_mem: 0 extents; decrease_reservation of the dom0 frame: 0
//!     extents; no extent array written to;
//!   - `sched_op` SCHEDOP_remote_shutdown of dom0 (poweroff): -EPERM;
//!   - `event_channel_op` alloc_unbound in dom0: -EPERM; bind_interdomain
//!     to dom0's VIRQ_DOM_EXC port: -EINVAL; bind_virq VIRQ_DOM_EXC for
//!     itself: 0, port 1 (allowed, but the global VIRQ still goes to dom0);
//!   - `sched_op` SCHEDOP_shutdown(reboot): never returns to the domU.
//! * dom0 is woken from `SCHEDOP_poll` by `VIRQ_DOM_EXC`; getdomaininfo of
//!   the domU then gives flags 0x10004 (`XEN_DOMINF_shutdown`, code 1 =
//!   reboot in bits 16-23, not paused, blocked nor running); dom0 is still
//!   running (flags have no shutdown/dying bit and bits 16-31 all set);
//!   the dom0 frame keeps its contents, its M2P entry and can still be
//!   mapped writable; dom0's L1 entry is unchanged; the domU's L1 entry
//!   still maps its own stack page; dom0's tot_pages unchanged; the domU's
//!   tot_pages still 8.
//! * destroydomain: 0 (once); then getdomaininfo -ESRCH, and VIRQ_DOM_EXC
//!   fires again (Xen raises it when the domain is dead).
//! * Second domU: stores a marker (done), then writes a writable self-map
//!   into slot 511 of its own L4, which it maps read-only: the #PF has no
//!   handler (no trap table), so Xen crashes the domain; the marker store
//!   after it never runs. dom0 gets VIRQ_DOM_EXC, flags 0x30004 (shutdown,
//!   code 3 = crash), the L4 slot is still 0; destroydomain 0, then
//!   getdomaininfo -ESRCH.
//! * Third domU: stores a marker, binds an IPI port (0) and sends on it with
//!   upcalls unmasked (a new domain's vcpu_info starts with the mask clear)
//!   and no event callback registered: Xen has nowhere to bounce the upcall
//!   and crashes the domain on the way back from the send (flags 0x30004);
//!   the marker after it never runs.
//! * At the end dom0 is still running and its frames untouched.
#![no_std]
#![no_main]

use xen_abi::console::CONSOLEIO_WRITE;
use xen_abi::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVirq,
    EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_IPI, EVTCHNOP_BIND_VIRQ,
    EVTCHNOP_SEND, VIRQ_DOM_EXC,
};
use xen_abi::hypercall::{CONSOLE_IO, DOMCTL, EVENT_CHANNEL_OP, MEMORY_OP, MMU_UPDATE, SCHED_OP};
use xen_abi::memory::{
    XenMemoryReservation, XENMEM_DECREASE_RESERVATION, XENMEM_INCREASE_RESERVATION,
    XENMEM_POPULATE_PHYSMAP,
};
use xen_abi::mmu::{MmuUpdate, MMU_NORMAL_PT_UPDATE};
use xen_abi::sched::{
    SchedRemoteShutdown, SchedShutdown, SCHEDOP_REMOTE_SHUTDOWN, SCHEDOP_SHUTDOWN, SHUTDOWN_CRASH,
    SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT,
};
use xen_abi::types::DOMID_SELF;
use xen_abi::Errno;
use xenolith_guests::builder::{
    map_foreign, TinyDomain, NR_PFNS, PFN_DATA, PFN_L1, PFN_L4, PFN_STACK,
};
use xenolith_guests::domctl::{
    self, Domctl, GetDomainInfo, DOMINF_DYING, DOMINF_NO_SHUTDOWN_CODE, DOMINF_SHUTDOWN,
    DOMINF_SHUTDOWN_MASK, DOMINF_SHUTDOWN_SHIFT, GETDOMAININFO,
};
use xenolith_guests::domu_script::{
    self, check_results, data_va, get, hc, put, put_script, ret, Rax, Step, ARGS, FINISHED,
    NOT_REACHED, OP_LOAD, OP_STORE,
};
use xenolith_guests::mm::{self, Frame, Mm, KERNEL_RO, KERNEL_RW};
use xenolith_guests::x86::PTE_ADDR_MASK;
use xenolith_guests::{check, check_eq, evtchn, println, shared_info, test_main, vcpu};
use xenolith_guests::{Boot, Failures, Verdict};

test_main!(run);

const MS: u64 = 1_000_000;
/// Window through which dom0 reads the domU's data page (read-only).
const WATCH: usize = 1;
/// Window for other read-only looks at domU frames and the dom0 frame.
const PROBE: usize = 2;
/// dom0 window whose L1 entry the domU tries to rewrite (left mapping its
/// own page).
const VICTIM: usize = 3;

/// Argument structures.
const ARG_DOMCTL: usize = ARGS;
const ARG_PLATFORM: usize = 0x900;
const ARG_MESSAGE: usize = 0x9a0;
const ARG_REQ_OWN_RW: usize = 0xa00;
const ARG_REQ_OWN_RO: usize = 0xa10;
const ARG_REQ_DOM0: usize = 0xa20;
/// `done` counts of the mmu_updates (u32 each, 8 bytes apart).
const ARG_DONE: usize = 0xa40;
const ARG_RES_POP_DOM0: usize = 0xa80;
const ARG_RES_INC: usize = 0xaa0;
const ARG_RES_POP_SELF: usize = 0xac0;
const ARG_RES_DEC: usize = 0xae0;
/// Extent arrays (one u64 each) of the four reservations, in that order.
const ARG_EXTENTS: usize = 0xb00;
const ARG_REMOTE_SHUTDOWN: usize = 0xb40;
const ARG_SHUTDOWN: usize = 0xb48;
const ARG_ALLOC_UNBOUND: usize = 0xb60;
const ARG_BIND_INTERDOMAIN: usize = 0xb70;
const ARG_BIND_VIRQ: usize = 0xb80;
/// Markers the crash domU stores before and after its fault.
const ARG_BIND_IPI: usize = 0xb90;
const MARK_BEFORE: usize = 0xc00;
const MARK_AFTER: usize = 0xc08;

/// What dom0 puts in a port field Xen should not write.
const PORT_UNSET: u32 = 0xdead;
/// What dom0 puts in the `done` counts.
const DONE_UNSET: u32 = 0xffff_ffff;
/// Word 0 of the domU's stack page.
const STACK_MARK: u64 = 0x57ac_0000_0000_0001;
/// Pattern of dom0's frame: word i is `PATTERN ^ i`.
const PATTERN: u64 = 0xd0d0_0000_0000_0000;
/// A gpfn the domU asks Xen to populate in dom0.
const DOM0_GPFN: u64 = 0x100;

const MESSAGE: &[u8] = b"domu-hostile: this line must not reach the console\n";

/// What the attacking domU needs to know.
struct Targets {
    domid: u16,
    /// A dom0 frame (pattern-filled, not mapped by dom0).
    dom0_frame: Frame,
    /// Machine address of dom0's L1 entry for window `VICTIM`.
    dom0_l1e: u64,
    /// dom0's VIRQ_DOM_EXC port.
    dom0_port: u32,
    /// Machine address of the domU's L1 entry mapping its stack page.
    own_l1e: u64,
}

fn reservation(extent: usize, domid: u16) -> XenMemoryReservation {
    XenMemoryReservation {
        extent_start: data_va(ARG_EXTENTS + extent * 8),
        nr_extents: 1,
        extent_order: 0,
        mem_flags: 0,
        domid,
        pad: [0; 6],
    }
}

/// The extent array inputs, in `ARG_EXTENTS` order.
fn extents(tg: &Targets) -> [u64; 4] {
    [DOM0_GPFN, NR_PFNS as u64, NR_PFNS as u64, tg.dom0_frame.mfn]
}

fn done_va(i: usize) -> u64 {
    data_va(ARG_DONE + i * 8)
}

const N_HOSTILE: usize = 19;
/// Number of mmu_update steps (one `done` count each).
const N_MMU: usize = 6;

fn hostile_steps(tg: &Targets) -> [Step; N_HOSTILE] {
    let own = u64::from(DOMID_SELF);
    let mem = u64::from;
    [
        hc(
            "domctl getdomaininfo of dom0",
            DOMCTL,
            [data_va(ARG_DOMCTL), 0, 0, 0, 0],
            ret(Errno::EPERM),
        ),
        hc(
            "console_io CONSOLEIO_write",
            CONSOLE_IO,
            [
                mem(CONSOLEIO_WRITE),
                MESSAGE.len() as u64,
                data_va(ARG_MESSAGE),
                0,
                0,
            ],
            ret(Errno::EPERM),
        ),
        hc(
            "platform_op XENPF_settime64",
            xen_abi::hypercall::PLATFORM_OP,
            [data_va(ARG_PLATFORM), 0, 0, 0, 0],
            ret(Errno::EPERM),
        ),
        hc(
            "mmu_update own L1e -> dom0 frame RW (DOMID_SELF)",
            MMU_UPDATE,
            [data_va(ARG_REQ_OWN_RW), 1, done_va(0), own, 0],
            ret(Errno::EBUSY),
        ),
        hc(
            "mmu_update own L1e -> dom0 frame RO (DOMID_SELF)",
            MMU_UPDATE,
            [data_va(ARG_REQ_OWN_RO), 1, done_va(1), own, 0],
            ret(Errno::EBUSY),
        ),
        hc(
            "mmu_update own L1e -> dom0 frame, foreigndom 0",
            MMU_UPDATE,
            [data_va(ARG_REQ_OWN_RW), 1, done_va(2), 0, 0],
            ret(Errno::EPERM),
        ),
        hc(
            "mmu_update own L1e, foreigndom = own id",
            MMU_UPDATE,
            [data_va(ARG_REQ_OWN_RW), 1, done_va(3), tg.domid.into(), 0],
            ret(Errno::ESRCH),
        ),
        hc(
            "mmu_update dom0's L1e (DOMID_SELF)",
            MMU_UPDATE,
            [data_va(ARG_REQ_DOM0), 1, done_va(4), own, 0],
            ret(Errno::EINVAL),
        ),
        hc(
            "mmu_update dom0's L1e, page-table owner dom0",
            MMU_UPDATE,
            [data_va(ARG_REQ_DOM0), 1, done_va(5), (1 << 16) | own, 0],
            ret(Errno::EPERM),
        ),
        Step {
            what: "load through its stack mapping",
            op: OP_LOAD,
            args: [TinyDomain::va(PFN_STACK), 0, 0, 0, 0],
            expect: Rax(STACK_MARK),
        },
        hc(
            "memory_op populate_physmap for dom0",
            MEMORY_OP,
            [
                mem(XENMEM_POPULATE_PHYSMAP),
                data_va(ARG_RES_POP_DOM0),
                0,
                0,
                0,
            ],
            Rax(0),
        ),
        hc(
            "memory_op increase_reservation beyond max_mem",
            MEMORY_OP,
            [
                mem(XENMEM_INCREASE_RESERVATION),
                data_va(ARG_RES_INC),
                0,
                0,
                0,
            ],
            Rax(0),
        ),
        hc(
            "memory_op populate_physmap beyond max_mem",
            MEMORY_OP,
            [
                mem(XENMEM_POPULATE_PHYSMAP),
                data_va(ARG_RES_POP_SELF),
                0,
                0,
                0,
            ],
            Rax(0),
        ),
        hc(
            "memory_op decrease_reservation of the dom0 frame",
            MEMORY_OP,
            [
                mem(XENMEM_DECREASE_RESERVATION),
                data_va(ARG_RES_DEC),
                0,
                0,
                0,
            ],
            Rax(0),
        ),
        hc(
            "sched_op remote_shutdown of dom0",
            SCHED_OP,
            [
                mem(SCHEDOP_REMOTE_SHUTDOWN),
                data_va(ARG_REMOTE_SHUTDOWN),
                0,
                0,
                0,
            ],
            ret(Errno::EPERM),
        ),
        hc(
            "evtchn alloc_unbound in dom0",
            EVENT_CHANNEL_OP,
            [
                mem(EVTCHNOP_ALLOC_UNBOUND),
                data_va(ARG_ALLOC_UNBOUND),
                0,
                0,
                0,
            ],
            ret(Errno::EPERM),
        ),
        hc(
            "evtchn bind_interdomain to dom0's VIRQ_DOM_EXC port",
            EVENT_CHANNEL_OP,
            [
                mem(EVTCHNOP_BIND_INTERDOMAIN),
                data_va(ARG_BIND_INTERDOMAIN),
                0,
                0,
                0,
            ],
            ret(Errno::EINVAL),
        ),
        hc(
            "evtchn bind_virq VIRQ_DOM_EXC",
            EVENT_CHANNEL_OP,
            [mem(EVTCHNOP_BIND_VIRQ), data_va(ARG_BIND_VIRQ), 0, 0, 0],
            Rax(0),
        ),
        hc(
            "sched_op shutdown(reboot)",
            SCHED_OP,
            [mem(SCHEDOP_SHUTDOWN), data_va(ARG_SHUTDOWN), 0, 0, 0],
            NOT_REACHED,
        ),
    ]
}

/// The first domU's data page: script and argument structures.
fn hostile_data(p: &mut [u64; 512], tg: &Targets) {
    put_script(p, &hostile_steps(tg));
    put(p, ARG_DOMCTL, Domctl::new(GETDOMAININFO, 0));
    // struct xen_platform_op: cmd XENPF_settime64 (62), interface version
    // 0x03000001, then settime64 {secs 1, nsecs 0, mbz 0, system_time 0};
    // 136 bytes in all.
    let mut pf = [0u64; 17];
    pf[0] = 62 | (0x0300_0001 << 32);
    pf[1] = 1;
    put(p, ARG_PLATFORM, pf);
    assert!(MESSAGE.len() <= ARG_REQ_OWN_RW - ARG_MESSAGE);
    for (i, &b) in MESSAGE.iter().enumerate() {
        put(p, ARG_MESSAGE + i, b);
    }
    let dom0_rw = (tg.dom0_frame.mfn << 12) | KERNEL_RW;
    put(
        p,
        ARG_REQ_OWN_RW,
        MmuUpdate {
            ptr: tg.own_l1e | MMU_NORMAL_PT_UPDATE,
            val: dom0_rw,
        },
    );
    put(
        p,
        ARG_REQ_OWN_RO,
        MmuUpdate {
            ptr: tg.own_l1e | MMU_NORMAL_PT_UPDATE,
            val: (tg.dom0_frame.mfn << 12) | KERNEL_RO,
        },
    );
    put(
        p,
        ARG_REQ_DOM0,
        MmuUpdate {
            ptr: tg.dom0_l1e | MMU_NORMAL_PT_UPDATE,
            val: dom0_rw,
        },
    );
    for i in 0..N_MMU {
        put(p, ARG_DONE + i * 8, DONE_UNSET);
    }
    put(p, ARG_RES_POP_DOM0, reservation(0, 0));
    put(p, ARG_RES_INC, reservation(1, DOMID_SELF));
    put(p, ARG_RES_POP_SELF, reservation(2, DOMID_SELF));
    put(p, ARG_RES_DEC, reservation(3, DOMID_SELF));
    put(p, ARG_EXTENTS, extents(tg));
    put(
        p,
        ARG_REMOTE_SHUTDOWN,
        SchedRemoteShutdown {
            domain_id: 0,
            pad: 0,
            reason: SHUTDOWN_POWEROFF,
        },
    );
    put(
        p,
        ARG_SHUTDOWN,
        SchedShutdown {
            reason: SHUTDOWN_REBOOT,
        },
    );
    put(
        p,
        ARG_ALLOC_UNBOUND,
        EvtchnAllocUnbound {
            dom: 0,
            remote_dom: DOMID_SELF,
            port: PORT_UNSET,
        },
    );
    put(
        p,
        ARG_BIND_INTERDOMAIN,
        EvtchnBindInterdomain {
            remote_dom: 0,
            pad: 0,
            remote_port: tg.dom0_port,
            local_port: PORT_UNSET,
        },
    );
    put(
        p,
        ARG_BIND_VIRQ,
        EvtchnBindVirq {
            virq: VIRQ_DOM_EXC,
            vcpu: 0,
            port: PORT_UNSET,
        },
    );
}

/// The crash domU's steps: a marker, the faulting store, a marker.
fn crash_steps(l4_mfn: u64) -> [Step; 3] {
    [
        Step {
            what: "store a marker",
            op: OP_STORE,
            args: [data_va(MARK_BEFORE), 1, 0, 0, 0],
            expect: Rax(0),
        },
        Step {
            what: "store a writable self-map into its read-only L4",
            op: OP_STORE,
            args: [
                TinyDomain::va(PFN_L4) + 511 * 8,
                (l4_mfn << 12) | KERNEL_RW,
                0,
                0,
                0,
            ],
            expect: NOT_REACHED,
        },
        Step {
            what: "store a marker after the fault",
            op: OP_STORE,
            args: [data_va(MARK_AFTER), 1, 0, 0, 0],
            expect: NOT_REACHED,
        },
    ]
}

/// The third domU's steps: a marker, an IPI port bound and sent to itself
/// with upcalls unmasked (as a new domain has them) and no event callback,
/// a marker.
fn upcall_steps() -> [Step; 4] {
    [
        Step {
            what: "store a marker",
            op: OP_STORE,
            args: [data_va(MARK_BEFORE), 1, 0, 0, 0],
            expect: Rax(0),
        },
        hc(
            "bind_ipi for vCPU 0",
            EVENT_CHANNEL_OP,
            [u64::from(EVTCHNOP_BIND_IPI), data_va(ARG_BIND_IPI), 0, 0, 0],
            Rax(0),
        ),
        // struct evtchn_send is the port alone: the one bind_ipi wrote back.
        hc(
            "send on the IPI port (an upcall is then due, with nowhere to go)",
            EVENT_CHANNEL_OP,
            [u64::from(EVTCHNOP_SEND), data_va(ARG_BIND_IPI + 4), 0, 0, 0],
            NOT_REACHED,
        ),
        Step {
            what: "store a marker after the send",
            op: OP_STORE,
            args: [data_va(MARK_AFTER), 1, 0, 0, 0],
            expect: NOT_REACHED,
        },
    ]
}

/// The third domU: an event upcall falls due while it has registered no
/// event callback, which Xen answers by crashing the domain.
fn upcall_crash(t: &mut Failures, port: u32) {
    let d = new_domu(t, "domu-hostile upcall");
    let steps = upcall_steps();
    d.fill(PFN_DATA, |p| {
        put_script(p, &steps);
        put(
            p,
            ARG_BIND_IPI,
            EvtchnBindIpi {
                vcpu: 0,
                port: PORT_UNSET,
            },
        );
    })
    .expect("writing the data page");
    run_crasher(t, &d, port, &steps, "upcall with no callback", |t, data| {
        check!(
            t,
            get::<u32>(data, ARG_BIND_IPI + 4) != PORT_UNSET,
            "bind_ipi wrote its port back"
        );
    });
    destroy(t, d.domid, port);
}

/// Runs a domU whose script must get it crashed (`what`): unpauses it, waits
/// for dom0's VIRQ_DOM_EXC and the crash code, checks dom0 is unharmed, the
/// script's results and that the marker before the crash was stored and the
/// one after it was not; `extra` then looks at the data page (mapped at
/// `data`).
fn run_crasher(
    t: &mut Failures,
    d: &TinyDomain,
    port: u32,
    steps: &[Step],
    what: &str,
    extra: impl FnOnce(&mut Failures, u64),
) {
    let shut = run_until_shutdown(t, d, port, SHUTDOWN_CRASH, what);
    if !shut {
        let _ = domctl::pause_domain(d.domid);
    }
    check_dom0_alive(t, "after the domU's crash");
    match map_foreign(WATCH, d.domid, d.mfn(PFN_DATA), false) {
        Ok(data) => {
            check_results(t, data, steps);
            check_eq!(
                t,
                (get::<u64>(data, MARK_BEFORE), get::<u64>(data, MARK_AFTER)),
                (1, 0),
                "markers before and after the crash"
            );
            extra(t, data);
        }
        Err(e) => {
            check!(t, false, "mapping the crashed domU's data page: {e:?}");
        }
    }
    mm::unmap_window(WATCH).expect("restoring the watch window");
}

/// Creates and builds a domU running the interpreter: vCPU context set,
/// max_mem lowered to its 8 pages, still paused.
fn new_domu(t: &mut Failures, cmdline: &str) -> TinyDomain {
    let d = domu_script::new_domain(t, cmdline);
    let domid = d.domid;
    check_eq!(t, domctl::max_mem(domid, 32), Ok(0), "max_mem 32 KiB");
    if let Ok((_, i)) = domctl::getdomaininfo(domid) {
        check_eq!(
            t,
            (i.tot_pages, i.max_pages),
            (8, 8),
            "domU tot_pages, max_pages"
        );
    }
    d
}

/// Waits (SCHEDOP_poll on `port`) until VIRQ_DOM_EXC arrives and `domid`
/// shows as shut down; returns its info and the ms it took.
fn wait_shutdown(port: u32, domid: u16, timeout_ms: u64) -> Option<(GetDomainInfo, u64)> {
    let start = vcpu::now_ns();
    let deadline = start + timeout_ms * MS;
    loop {
        if evtchn::is_pending(port) {
            evtchn::clear_pending(port);
            if let Ok((_, i)) = domctl::getdomaininfo(domid) {
                if i.flags & DOMINF_SHUTDOWN != 0 {
                    return Some((i, (vcpu::now_ns() - start) / MS));
                }
            }
        }
        if vcpu::now_ns() >= deadline {
            return None;
        }
        let _ = vcpu::poll(&[port], deadline);
    }
}

/// Waits up to `timeout_ms` for `port` to be pending; clears it.
fn wait_event(port: u32, timeout_ms: u64) -> bool {
    let deadline = vcpu::now_ns() + timeout_ms * MS;
    while !evtchn::is_pending(port) && vcpu::now_ns() < deadline {
        let _ = vcpu::poll(&[port], deadline);
    }
    let seen = evtchn::is_pending(port);
    evtchn::clear_pending(port);
    seen
}

/// Unpauses `d` and waits for it to shut down with `code`.
fn run_until_shutdown(t: &mut Failures, d: &TinyDomain, port: u32, code: u32, what: &str) -> bool {
    evtchn::clear_pending(port);
    check_eq!(t, domctl::unpause_domain(d.domid), Ok(0), "unpausedomain");
    match wait_shutdown(port, d.domid, 2000) {
        Some((i, ms)) => {
            println!(
                "domain {}: VIRQ_DOM_EXC after {ms} ms, flags {:#x} (shutdown code {})",
                d.domid,
                i.flags,
                (i.flags >> DOMINF_SHUTDOWN_SHIFT) & DOMINF_SHUTDOWN_MASK
            );
            check_eq!(
                t,
                i.flags,
                DOMINF_SHUTDOWN | (code << DOMINF_SHUTDOWN_SHIFT),
                "getdomaininfo flags after the {what}"
            );
            true
        }
        None => {
            let info = domctl::getdomaininfo(d.domid).map(|(_, i)| i.flags);
            check!(
                t,
                false,
                "no VIRQ_DOM_EXC with domain {} shut down within 2 s (flags now {info:#x?})",
                d.domid
            );
            false
        }
    }
}

/// dom0 must still be running.
fn check_dom0_alive(t: &mut Failures, when: &str) {
    match domctl::getdomaininfo(0) {
        Ok((_, i)) => {
            check_eq!(
                t,
                (
                    i.domain,
                    i.flags & (DOMINF_SHUTDOWN | DOMINF_DYING),
                    i.flags & DOMINF_NO_SHUTDOWN_CODE
                ),
                (0, 0, DOMINF_NO_SHUTDOWN_CODE),
                "dom0 {when} (domain, shutdown|dying, shutdown code bits)"
            );
        }
        Err(e) => {
            check!(t, false, "getdomaininfo of dom0 {when}: {e:?}");
        }
    }
}

fn dom0_tot_pages() -> u64 {
    domctl::getdomaininfo(0).map_or(0, |(_, i)| i.tot_pages)
}

/// Destroys `domid` (no page of it mapped) and checks it is gone.
fn destroy(t: &mut Failures, domid: u16, port: u32) {
    evtchn::clear_pending(port);
    let mut calls = 0;
    let r = loop {
        calls += 1;
        match domctl::destroy_domain(domid) {
            Err(Errno::ERESTART | Errno::EAGAIN) if calls < 100 => {}
            r => break r,
        }
    };
    check_eq!(
        t,
        (r, calls),
        (Ok(0), 1),
        "destroydomain {domid} (result, calls)"
    );
    check_eq!(
        t,
        domctl::getdomaininfo(domid).map(|r| r.0),
        Err(Errno::ESRCH),
        "getdomaininfo of destroyed domain {domid}"
    );
    check!(
        t,
        wait_event(port, 200),
        "no VIRQ_DOM_EXC after destroying domain {domid}"
    );
    // Xen raises it once more when the last reference goes; let it pass.
    spin_ms(20);
    evtchn::clear_pending(port);
}

fn spin_ms(ms: u64) {
    vcpu::spin_until(vcpu::now_ns() + ms * MS);
}

/// dom0's state the attacks must not change.
struct Dom0State {
    frame: Frame,
    l1e: u64,
    tot_pages: u64,
    wc_sec: u64,
}

fn check_dom0_state(t: &mut Failures, s: &Dom0State, when: &str) {
    match mm::map_window(PROBE, s.frame.mfn, false) {
        Ok(va) => {
            let bad = (0..512).find(|&i| get::<u64>(va, i * 8) != PATTERN ^ i as u64);
            check_eq!(t, bad, None, "first changed word of dom0's frame {when}");
        }
        Err(e) => {
            check!(t, false, "mapping dom0's frame read-only {when}: {e:?}");
        }
    }
    check_eq!(
        t,
        mm::map_window(PROBE, s.frame.mfn, true).map(|_| ()),
        Ok(()),
        "mapping dom0's frame writable {when}"
    );
    mm::unmap_window(PROBE).expect("restoring the probe window");
    check_eq!(
        t,
        mm::m2p(s.frame.mfn),
        Some(s.frame.pfn),
        "M2P of dom0's frame {when}"
    );
    check_eq!(
        t,
        mm::walk(mm::window_va(VICTIM)).entries[3],
        s.l1e,
        "dom0's L1 entry {when}"
    );
    check_eq!(t, dom0_tot_pages(), s.tot_pages, "dom0 tot_pages {when}");
    let wc = shared_info::get().map_or(0, |si| si.wallclock().1);
    check_eq!(t, wc, s.wc_sec, "dom0 wallclock seconds {when}");
    check_dom0_alive(t, when);
}

/// The first domU: runs the hostile script and shuts down (reboot).
fn hostile(t: &mut Failures, port: u32, s: &Dom0State) {
    let d = new_domu(t, "domu-hostile attacker");
    let tg = Targets {
        domid: d.domid,
        dom0_frame: s.frame,
        dom0_l1e: mm::l1e_maddr(mm::window_va(VICTIM)).expect("victim L1 entry"),
        dom0_port: port,
        own_l1e: d.l1e_maddr(PFN_STACK),
    };
    let steps = hostile_steps(&tg);
    d.fill(PFN_STACK, |p| p[0] = STACK_MARK)
        .expect("writing the stack page");
    d.fill(PFN_DATA, |p| hostile_data(p, &tg))
        .expect("writing the data page");

    let shut = run_until_shutdown(t, &d, port, SHUTDOWN_REBOOT, "shutdown(reboot)");
    if !shut {
        let _ = domctl::pause_domain(d.domid);
    }
    check_dom0_alive(t, "after the domU's shutdown");

    let data = match map_foreign(WATCH, d.domid, d.mfn(PFN_DATA), false) {
        Ok(va) => va,
        Err(e) => {
            println!("mapping the data page: {e:?}");
            xenolith_guests::error("cannot read the domU's results");
        }
    };
    check_results(t, data, &steps);
    check_eq!(
        t,
        get::<u64>(data, FINISHED),
        0,
        "the interpreter ran past shutdown"
    );
    let union: [u64; 16] = get(data, ARG_DOMCTL + 16);
    check_eq!(
        t,
        union,
        [0; 16],
        "domctl getdomaininfo buffer after -EPERM"
    );
    let done: [u32; N_MMU] = core::array::from_fn(|i| get::<u32>(data, ARG_DONE + i * 8));
    check_eq!(t, done, [0; N_MMU], "mmu_update done counts");
    let ext: [u64; 4] = get(data, ARG_EXTENTS);
    check_eq!(t, ext, extents(&tg), "extent arrays after the memory_ops");
    let ports: [u32; 3] = [
        get::<EvtchnAllocUnbound>(data, ARG_ALLOC_UNBOUND).port,
        get::<EvtchnBindInterdomain>(data, ARG_BIND_INTERDOMAIN).local_port,
        get::<EvtchnBindVirq>(data, ARG_BIND_VIRQ).port,
    ];
    check_eq!(
        t,
        ports,
        [PORT_UNSET, PORT_UNSET, 1],
        "ports written back (alloc_unbound, bind_interdomain, bind_virq)"
    );
    mm::unmap_window(WATCH).expect("restoring the watch window");

    // Its stack mapping still points at its own page.
    match map_foreign(PROBE, d.domid, d.mfn(PFN_L1), false) {
        Ok(va) => {
            let i = mm::index_of(TinyDomain::va(PFN_STACK), 1) as usize;
            check_eq!(
                t,
                get::<u64>(va, i * 8) & PTE_ADDR_MASK,
                d.mfn(PFN_STACK) << 12,
                "the domU's stack L1 entry"
            );
        }
        Err(e) => {
            check!(t, false, "read-only mapping of the domU's L1: {e:?}");
        }
    }
    mm::unmap_window(PROBE).expect("restoring the probe window");
    if let Ok((_, i)) = domctl::getdomaininfo(d.domid) {
        check_eq!(t, i.tot_pages, 8, "domU tot_pages after its attacks");
    }
    check_dom0_state(t, s, "after the attacks");
    destroy(t, d.domid, port);
}

/// The second domU: crashes on a store to its read-only L4.
fn crash(t: &mut Failures, port: u32) {
    let d = new_domu(t, "domu-hostile crasher");
    let steps = crash_steps(d.mfn(PFN_L4));
    d.fill(PFN_DATA, |p| put_script(p, &steps))
        .expect("writing the data page");
    run_crasher(t, &d, port, &steps, "crash", |_, _| {});
    match map_foreign(PROBE, d.domid, d.mfn(PFN_L4), false) {
        Ok(va) => {
            check_eq!(
                t,
                get::<u64>(va, 511 * 8),
                0,
                "the crashed domU's L4 slot 511"
            );
        }
        Err(e) => {
            check!(
                t,
                false,
                "read-only mapping of the crashed domU's L4: {e:?}"
            );
        }
    }
    mm::unmap_window(PROBE).expect("restoring the probe window");
    destroy(t, d.domid, port);
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    if shared_info::map(boot.start_info).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    let mut mm = Mm::new(boot.start_info);
    vcpu::disable_events();
    let port = match evtchn::bind_virq(VIRQ_DOM_EXC, 0) {
        Ok(p) => p,
        Err(e) => {
            println!("bind_virq(VIRQ_DOM_EXC): {e:?}");
            xenolith_guests::error("cannot bind VIRQ_DOM_EXC");
        }
    };
    println!("VIRQ_DOM_EXC on port {port}");
    check_eq!(t, port, 1, "dom0's VIRQ_DOM_EXC port");

    let frame = mm.alloc();
    mm::fill_page(frame.mfn, |p| {
        for (i, w) in p.iter_mut().enumerate() {
            *w = PATTERN ^ i as u64;
        }
    })
    .expect("filling dom0's frame");
    let s = Dom0State {
        frame,
        l1e: mm::walk(mm::window_va(VICTIM)).entries[3],
        tot_pages: dom0_tot_pages(),
        wc_sec: shared_info::get().map_or(0, |si| si.wallclock().1),
    };
    println!(
        "dom0 frame {:#x} (pfn {:#x}), tot_pages {}, wallclock {} s",
        frame.mfn, frame.pfn, s.tot_pages, s.wc_sec
    );
    check_dom0_alive(&mut t, "at start");

    hostile(&mut t, port, &s);
    crash(&mut t, port);
    upcall_crash(&mut t, port);

    check_dom0_state(&mut t, &s, "at the end");
    println!("dom0 still running");
    t.verdict()
}
