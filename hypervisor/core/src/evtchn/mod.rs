//! Event channels: per-domain port tables with Xen's `EVTCHNOP_*` semantics, delivered through the 2-level or FIFO ABI.
//!
//! Model (Xen `common/event_channel.c`, `event_2l.c`, `event_fifo.c`; pv-guest-abi.md §3.4, §6):
//!
//! * An [`EvtchnDomain`] is one domain's port table. Ports are allocated lowest-first in buckets of
//!   [`EVTCHNS_PER_BUCKET`]; a port is *valid* once its bucket exists (buckets are never freed, as in
//!   Xen, so `status` of a never-used port in an existing bucket answers "closed" and beyond it
//!   `-EINVAL`). The allocation limit is the smaller of the domain's `max_port` and the ABI's limit
//!   (4096 ports with the 2-level ABI, 2^17 with FIFO).
//! * Guest-visible delivery state (pending/mask bits, selectors, `evtchn_upcall_pending`, FIFO event
//!   words and control blocks) lives in guest-visible memory and is reached only through
//!   [`EventMemory`]. Everything read from it is untrusted: it is used for bit tests only, never as an
//!   index or a loop bound, and every compare-exchange retry loop is bounded.
//! * Operations that involve two domains take the remote table explicitly (`bind_interdomain`,
//!   `close`), or return a [`RemoteEnd`] / [`SendAction`] the caller applies to the remote table. A
//!   connection to the same domain (loopback) is handled inside one table.
//! * Raising a port returns a [`Notify`]: the vCPU to kick when its `evtchn_upcall_pending` went 0→1,
//!   and the port to report to `SCHEDOP_poll` waiters. Delivering the upcall (bounce to the event
//!   callback when `evtchn_upcall_mask == 0`) and waking blocked/polling vCPUs is the caller's job.
//!
//! Invariants (checked by the property test in `tests.rs`):
//!
//! * Port 0 is `Reserved` and never allocated, closed or re-bound.
//! * An `Interdomain` port's peer is `Interdomain` and names it back (same table for loopback, the
//!   remote table otherwise; [`EvtchnDomain::close`] returns a [`RemoteEnd`] when it could not fix
//!   the peer itself).
//! * Every non-zero entry of the VIRQ lookup table (per vCPU; global and per-domain VIRQs on vCPU 0)
//!   names a `Virq` port bound to that VIRQ, and every `Virq` port is named by its entry.
//! * Every bound port's notify vCPU is `< nr_vcpus`; a freed port notifies vCPU 0, has its pending
//!   bit cleared and its Xen-consumer tag removed.
//! * Ports used by the hypervisor's own backends ([`XenConsumer`]) cannot be closed, rebound,
//!   re-prioritised, unmasked or sent on by the guest.
//! * FIFO: a port is linked into at most one queue at a time (the `LINKED` bit is test-and-set before
//!   linking), the hypervisor-private tail of each queue only names ports inside the event array,
//!   and after `EVTCHNOP_init_control` the 2-level bitmaps are no longer touched.
//!
//! Left to the caller: copying arguments from/to the guest (`-EFAULT`), resolving `DOMID_SELF` and
//! unknown domains (`-ESRCH`), privilege checks for `dom != DOMID_SELF`, `EVTCHNOP_bind_pirq`
//! (PIRQ ports are never created here), and waking vCPUs. Differences from Xen: `EVTCHNOP_reset`
//! is not preemptible (no `-ERESTART`/`reset_cont`), and a port freed while its FIFO event word
//! was missing forgets the remembered pending state (Xen would re-raise it when the page appears).
use alloc::vec::Vec;
use core::num::NonZeroU8;

use xen_abi::errno::Errno;
use xen_abi::event_channel::{
    evtchn_2l_bit, evtchn_2l_word, virq_is_per_vcpu, EvtchnStatus, EVTCHN_2L_NR_CHANNELS,
    EVTCHN_FIFO_LINK_BITS, EVTCHN_FIFO_NR_CHANNELS, EVTCHN_FIFO_PRIORITY_DEFAULT,
    EVTCHN_FIFO_PRIORITY_MIN, NR_VIRQS, VIRQ_ARGO,
};
use xen_abi::types::{DomId, EvtchnPort, VcpuId};

mod fifo;
#[cfg(test)]
mod tests;

pub use fifo::{
    FIFO_CONTROL_BLOCK_SIZE, FIFO_EVENT_WORDS_PER_PAGE, FIFO_MAX_ARRAY_PAGES, FIFO_WORD_BUSY,
    FIFO_WORD_LINKED, FIFO_WORD_MASKED, FIFO_WORD_PENDING,
};

/// Ports per allocation bucket (Xen: `PAGE_SIZE / sizeof(struct evtchn)` rounded, 64 on x86-64).
pub const EVTCHNS_PER_BUCKET: u32 = 64;

/// Which of the two shared-info bitmaps of the 2-level ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bitmap {
    /// `shared_info.evtchn_pending`.
    Pending,
    /// `shared_info.evtchn_mask`.
    Mask,
}

/// The guest-visible memory an event-channel table delivers through, implemented by the
/// hypervisor (over the shared-info page, each vCPU's current `vcpu_info` and the guest frames
/// registered for FIFO) and by a fake in tests.
///
/// Every operation must be atomic with respect to the guest (x86 `lock`-prefixed accesses); the
/// core calls them in Xen's order so that the guest never sees an upcall without the pending state
/// that caused it. `vcpu` arguments are always `< nr_vcpus` of the table, `word` arguments `< 64`,
/// `priority` arguments `< 16`, and FIFO ports always lie in a mapped event-array page.
pub trait EventMemory {
    /// Loads word `word` of a 2-level bitmap.
    fn bitmap_load(&self, map: Bitmap, word: usize) -> u64;
    /// Atomically ORs `bits` into word `word` of a 2-level bitmap; returns the previous value.
    fn bitmap_fetch_or(&mut self, map: Bitmap, word: usize, bits: u64) -> u64;
    /// Atomically ANDs `bits` into word `word` of a 2-level bitmap; returns the previous value.
    fn bitmap_fetch_and(&mut self, map: Bitmap, word: usize, bits: u64) -> u64;
    /// Atomically ORs `bits` into `vcpu`'s `vcpu_info.evtchn_pending_sel`; returns the previous value.
    fn selector_fetch_or(&mut self, vcpu: VcpuId, bits: u64) -> u64;
    /// Sets `vcpu`'s `vcpu_info.evtchn_upcall_pending` to 1; returns whether it was already non-zero.
    fn upcall_pending_test_and_set(&mut self, vcpu: VcpuId) -> bool;

    /// FIFO: validates and maps the guest frame `gfn` as `vcpu`'s control block at byte `offset`
    /// (already checked: 8-byte aligned, block inside the page). The hypervisor takes a writable
    /// type reference on the frame (Xen: `-EINVAL` if it cannot).
    fn fifo_map_control_block(&mut self, vcpu: VcpuId, gfn: u64, offset: u32) -> Result<(), Errno>;
    /// FIFO: validates and maps guest frame `gfn` as event-array page `index` (ports
    /// `index * 1024 ..`).
    fn fifo_map_array_page(&mut self, index: u32, gfn: u64) -> Result<(), Errno>;
    /// FIFO: unmaps every control block and event-array page (ABI reset or domain teardown).
    fn fifo_unmap_all(&mut self);
    /// FIFO: loads the event word of `port`.
    fn fifo_word_load(&self, port: EvtchnPort) -> u32;
    /// FIFO: atomically ORs `bits` into the event word of `port`; returns the previous value.
    fn fifo_word_fetch_or(&mut self, port: EvtchnPort, bits: u32) -> u32;
    /// FIFO: atomically ANDs `bits` into the event word of `port`; returns the previous value.
    fn fifo_word_fetch_and(&mut self, port: EvtchnPort, bits: u32) -> u32;
    /// FIFO: compare-exchange on the event word of `port`: `Ok(current)` if it held `current` and
    /// now holds `new`, `Err(actual)` otherwise.
    fn fifo_word_compare_exchange(
        &mut self,
        port: EvtchnPort,
        current: u32,
        new: u32,
    ) -> Result<u32, u32>;
    /// FIFO: atomically ORs `bits` into `vcpu`'s control block `ready` word; returns the previous value.
    fn fifo_ready_fetch_or(&mut self, vcpu: VcpuId, bits: u32) -> u32;
    /// FIFO: stores `port` into `head[priority]` of `vcpu`'s control block.
    fn fifo_head_store(&mut self, vcpu: VcpuId, priority: u32, port: EvtchnPort);
}

/// The delivery ABI a domain uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    /// Shared-info bitmaps and per-vCPU selectors (the default).
    TwoLevel,
    /// Per-vCPU priority queues of event words (after `EVTCHNOP_init_control`).
    Fifo,
}

/// A hypervisor-internal consumer of a port (Xen's `xen_consumer`): the port belongs to a backend
/// inside the hypervisor, which is notified instead of the port being raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct XenConsumer(pub NonZeroU8);

/// The binding of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// Not in use.
    Free,
    /// Port 0: never usable.
    Reserved,
    /// Waiting for `remote_dom` to connect with `EVTCHNOP_bind_interdomain`.
    Unbound {
        /// The only domain allowed to connect.
        remote_dom: DomId,
    },
    /// Connected to `remote_port` of `remote_dom` (possibly this domain).
    Interdomain {
        /// Domain of the other end.
        remote_dom: DomId,
        /// Port of the other end in `remote_dom`'s table.
        remote_port: EvtchnPort,
    },
    /// Bound to a physical IRQ (never created by this module; PIRQs are not supported).
    Pirq {
        /// The PIRQ number.
        pirq: u32,
    },
    /// Bound to a virtual IRQ.
    Virq {
        /// `VIRQ_*`.
        virq: u32,
    },
    /// An inter-vCPU interrupt.
    Ipi,
}

/// The other end of an interdomain channel that the caller has to update in the remote table
/// (with [`EvtchnDomain::peer_closed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteEnd {
    /// Remote domain.
    pub dom: DomId,
    /// Port in the remote domain's table.
    pub port: EvtchnPort,
    /// The local port it was connected to.
    pub peer_port: EvtchnPort,
}

/// What the caller must do after raising a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Notify {
    /// This vCPU's `evtchn_upcall_pending` went from 0 to 1: kick it (wake it if blocked, make
    /// its pCPU leave guest mode if running, and deliver the upcall on its next exit to the guest if
    /// `evtchn_upcall_mask` is clear).
    pub kick: Option<VcpuId>,
    /// This port just became pending: wake the domain's vCPUs in `SCHEDOP_poll` on it (or on any port).
    pub pollers: Option<EvtchnPort>,
}

impl Notify {
    /// Nothing to do.
    pub const NONE: Notify = Notify {
        kick: None,
        pollers: None,
    };

    /// Whether there is anything to do.
    pub fn is_none(&self) -> bool {
        self.kick.is_none() && self.pollers.is_none()
    }
}

/// The outcome of `EVTCHNOP_send`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum SendAction {
    /// The port is unbound: the notification is silently dropped.
    Dropped,
    /// A port of this domain was raised (IPI, or an interdomain loopback).
    Local(Notify),
    /// The remote end is in another domain: call
    /// `remote.deliver_interdomain(mem, port, from_dom, from_port)` on `dom`'s table.
    Remote {
        /// Remote domain.
        dom: DomId,
        /// Remote port.
        port: EvtchnPort,
        /// The sending (local) port.
        from_port: EvtchnPort,
    },
    /// The remote end (in this domain) is consumed by a hypervisor backend: notify it.
    Consumer {
        /// Which backend.
        consumer: XenConsumer,
        /// The backend's port.
        port: EvtchnPort,
        /// The backend port's notify vCPU.
        vcpu: VcpuId,
    },
}

/// The outcome of delivering a notification to the remote end of an interdomain channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Delivery {
    /// The port no longer names the sender (closed meanwhile): nothing happened.
    Dropped,
    /// The port was raised.
    Raised(Notify),
    /// The port belongs to a hypervisor backend: notify it.
    Consumer {
        /// Which backend.
        consumer: XenConsumer,
        /// The backend's port.
        port: EvtchnPort,
        /// The backend port's notify vCPU.
        vcpu: VcpuId,
    },
}

#[derive(Clone, Copy, Debug)]
struct Channel {
    state: PortState,
    notify: u32,
    consumer: Option<XenConsumer>,
    /// FIFO priority (0 highest .. 15).
    priority: u8,
    /// FIFO: raised while its event-array page was missing; re-raised when the page is added.
    fifo_pending: bool,
    /// FIFO: queue (vCPU, priority) the port was last linked on.
    last_vcpu: u32,
    last_priority: u8,
}

impl Channel {
    const FREE: Channel = Channel {
        state: PortState::Free,
        notify: 0,
        consumer: None,
        priority: EVTCHN_FIFO_PRIORITY_DEFAULT as u8,
        fifo_pending: false,
        last_vcpu: 0,
        last_priority: 0,
    };
}

/// Number of VIRQ slots per vCPU.
const NVIRQ: usize = NR_VIRQS as usize;

/// Whether a VIRQ is bound once per domain on vCPU 0 and delivered to a domain-wide handler
/// (Xen's `VIRQ_GLOBAL`), as opposed to per-vCPU or per-domain VIRQs.
fn virq_is_global(virq: u32) -> bool {
    !virq_is_per_vcpu(virq) && virq != VIRQ_ARGO
}

/// One domain's event-channel table.
#[derive(Debug)]
pub struct EvtchnDomain {
    domid: DomId,
    nr_vcpus: u32,
    max_port: u32,
    global_virq_handler: bool,
    dying: bool,
    chans: Vec<Channel>,
    /// `virq_to_port[vcpu][virq]`, 0 = unbound.
    virq_to_port: Vec<[u32; NVIRQ]>,
    fifo: Option<fifo::FifoState>,
}

impl EvtchnDomain {
    /// A table for domain `domid` with `nr_vcpus` vCPUs (at least 1) whose ports may go up to
    /// `max_port` (Xen's per-domain `max_evtchn_port`; `u32::MAX` for no limit beyond the ABI's).
    /// Port 0 is reserved. The domain may bind global VIRQs (see
    /// [`EvtchnDomain::set_global_virq_handler`]).
    pub fn new(domid: DomId, nr_vcpus: u32, max_port: u32) -> EvtchnDomain {
        let nr_vcpus = nr_vcpus.max(1);
        let mut chans = Vec::new();
        chans.resize(EVTCHNS_PER_BUCKET as usize, Channel::FREE);
        if let Some(c) = chans.first_mut() {
            c.state = PortState::Reserved;
        }
        let mut virq_to_port = Vec::new();
        virq_to_port.resize(nr_vcpus as usize, [0; NVIRQ]);
        EvtchnDomain {
            domid,
            nr_vcpus,
            max_port,
            global_virq_handler: true,
            dying: false,
            chans,
            virq_to_port,
            fifo: None,
        }
    }

    /// Whether this domain is the handler of global VIRQs (`VIRQ_CONSOLE`, `VIRQ_DOM_EXC`, ...).
    /// Recent Xen refuses `EVTCHNOP_bind_virq` of a global VIRQ with `-EBUSY` in other domains.
    pub fn set_global_virq_handler(&mut self, handler: bool) {
        self.global_virq_handler = handler;
    }

    /// The domain this table belongs to.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// Number of vCPUs.
    pub fn nr_vcpus(&self) -> u32 {
        self.nr_vcpus
    }

    /// The delivery ABI in use.
    pub fn abi(&self) -> Abi {
        if self.fifo.is_some() {
            Abi::Fifo
        } else {
            Abi::TwoLevel
        }
    }

    /// Ports the current ABI can address (4096 or 2^17).
    pub fn abi_max_ports(&self) -> u32 {
        if self.fifo.is_some() {
            EVTCHN_FIFO_NR_CHANNELS
        } else {
            EVTCHN_2L_NR_CHANNELS
        }
    }

    /// Number of valid ports (allocated buckets): ports `0..valid_ports()` have a state.
    pub fn valid_ports(&self) -> u32 {
        self.chans.len() as u32
    }

    /// The state of `port`, `None` if it is not valid.
    pub fn state(&self, port: EvtchnPort) -> Option<PortState> {
        self.chan(port).map(|c| c.state)
    }

    /// The vCPU `port` notifies, `None` if it is not valid.
    pub fn notify_vcpu(&self, port: EvtchnPort) -> Option<VcpuId> {
        self.chan(port).map(|c| VcpuId(c.notify))
    }

    /// The FIFO priority of `port`, `None` if it is not valid.
    pub fn priority(&self, port: EvtchnPort) -> Option<u32> {
        self.chan(port).map(|c| u32::from(c.priority))
    }

    /// The hypervisor consumer of `port`, if any.
    pub fn consumer(&self, port: EvtchnPort) -> Option<XenConsumer> {
        self.chan(port).and_then(|c| c.consumer)
    }

    /// All ports that are neither free nor reserved, with their state.
    pub fn bound_ports(&self) -> impl Iterator<Item = (EvtchnPort, PortState)> + '_ {
        self.chans
            .iter()
            .enumerate()
            .filter(|(_, c)| !matches!(c.state, PortState::Free | PortState::Reserved))
            .map(|(p, c)| (EvtchnPort(p as u32), c.state))
    }

    /// The port bound to `virq` for `vcpu` (global VIRQs: look on vCPU 0).
    pub fn virq_port(&self, vcpu: VcpuId, virq: u32) -> Option<EvtchnPort> {
        let p = *self.virq_to_port.get(vcpu.0 as usize)?.get(virq as usize)?;
        (p != 0).then_some(EvtchnPort(p))
    }

    /// The IPI ports that notify `vcpu`.
    pub fn ipi_ports(&self, vcpu: VcpuId) -> impl Iterator<Item = EvtchnPort> + '_ {
        self.chans
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.state == PortState::Ipi && c.notify == vcpu.0)
            .map(|(p, _)| EvtchnPort(p as u32))
    }

    /// If `port` is connected to another domain, that domain: the table to pass to
    /// [`EvtchnDomain::close`].
    pub fn remote_domain(&self, port: EvtchnPort) -> Option<DomId> {
        match self.chan(port)?.state {
            PortState::Interdomain { remote_dom, .. } if remote_dom != self.domid => {
                Some(remote_dom)
            }
            _ => None,
        }
    }

    fn chan(&self, port: EvtchnPort) -> Option<&Channel> {
        self.chans.get(port.0 as usize)
    }

    fn chan_mut(&mut self, port: EvtchnPort) -> Option<&mut Channel> {
        self.chans.get_mut(port.0 as usize)
    }

    fn vcpu_exists(&self, vcpu: VcpuId) -> bool {
        vcpu.0 < self.nr_vcpus
    }

    /// Whether a free port may not be reused yet (FIFO: still linked in a queue).
    fn port_busy<M: EventMemory>(&self, mem: &M, port: u32) -> bool {
        match &self.fifo {
            Some(f) => {
                f.has_word(port) && mem.fifo_word_load(EvtchnPort(port)) & FIFO_WORD_LINKED != 0
            }
            None => false,
        }
    }

    /// Xen's `get_free_port`: the lowest free, non-busy port, growing the table by buckets.
    fn get_free_port<M: EventMemory>(&mut self, mem: &M) -> Result<EvtchnPort, Errno> {
        if self.dying {
            return Err(Errno::EINVAL);
        }
        let limit = self.abi_max_ports();
        let mut port: u32 = 0;
        while port <= self.max_port {
            if port >= limit {
                return Err(Errno::ENOSPC);
            }
            match self.chans.get(port as usize) {
                Some(c) => {
                    if c.state == PortState::Free && !self.port_busy(mem, port) {
                        return Ok(EvtchnPort(port));
                    }
                }
                None => {
                    let new_len = self.chans.len() + EVTCHNS_PER_BUCKET as usize;
                    self.chans
                        .try_reserve(EVTCHNS_PER_BUCKET as usize)
                        .map_err(|_| Errno::ENOMEM)?;
                    self.chans.resize(new_len, Channel::FREE);
                    return Ok(EvtchnPort(port));
                }
            }
            port += 1;
        }
        Err(Errno::ENOSPC)
    }

    /// Binds a freshly allocated port (Xen's `evtchn_port_init`: FIFO priority back to default).
    fn bind(&mut self, port: EvtchnPort, state: PortState, notify: u32) {
        if let Some(c) = self.chan_mut(port) {
            c.state = state;
            c.notify = notify;
            c.priority = EVTCHN_FIFO_PRIORITY_DEFAULT as u8;
        }
    }

    /// `EVTCHNOP_alloc_unbound` in this domain: a port that `remote_dom` may connect to.
    /// The caller resolves `DOMID_SELF` (to the *calling* domain) and checks privilege (`dom`
    /// other than self). Errors: `-ENOSPC` (table full), `-ENOMEM`, `-EINVAL` (domain dying).
    pub fn alloc_unbound<M: EventMemory>(
        &mut self,
        mem: &M,
        remote_dom: DomId,
    ) -> Result<EvtchnPort, Errno> {
        let port = self.get_free_port(mem)?;
        self.bind(port, PortState::Unbound { remote_dom }, 0);
        Ok(port)
    }

    /// Xen's `alloc_unbound_xen_event_channel`: an unbound port owned by hypervisor backend
    /// `consumer`, notifying `vcpu`, that `remote_dom` may connect to. The guest cannot close,
    /// send on, rebind, unmask or re-prioritise it.
    pub fn alloc_unbound_xen<M: EventMemory>(
        &mut self,
        mem: &M,
        vcpu: VcpuId,
        remote_dom: DomId,
        consumer: XenConsumer,
    ) -> Result<EvtchnPort, Errno> {
        if !self.vcpu_exists(vcpu) {
            return Err(Errno::ENOENT);
        }
        let port = self.get_free_port(mem)?;
        self.bind(port, PortState::Unbound { remote_dom }, vcpu.0);
        if let Some(c) = self.chan_mut(port) {
            c.consumer = Some(consumer);
        }
        Ok(port)
    }

    /// `EVTCHNOP_bind_interdomain`: connects a new local port to `remote_port`, an unbound port of
    /// `remote` (or of this domain when `remote` is `None`) that names this domain. Both ends become
    /// `Interdomain`, and the new local port is raised (notifications sent to the unbound remote port
    /// may have been lost). The caller resolves `remote_dom` (`DOMID_SELF`, `-ESRCH`).
    ///
    /// Errors: `-ENOSPC`/`-ENOMEM` allocating the local port (checked first, as in Xen), `-EINVAL`
    /// if `remote_port` is invalid, not unbound, or reserved for another domain.
    pub fn bind_interdomain<M: EventMemory>(
        &mut self,
        mem: &mut M,
        remote: Option<&mut EvtchnDomain>,
        remote_port: EvtchnPort,
    ) -> Result<(EvtchnPort, Notify), Errno> {
        let lport = self.get_free_port(mem)?;
        let me = self.domid;
        let unbound_for_me = |c: Option<&Channel>| matches!(c, Some(c) if c.state == PortState::Unbound { remote_dom: me });
        let rdom = match remote {
            None => {
                if !unbound_for_me(self.chan(remote_port)) {
                    return Err(Errno::EINVAL);
                }
                if let Some(r) = self.chan_mut(remote_port) {
                    r.state = PortState::Interdomain {
                        remote_dom: me,
                        remote_port: lport,
                    };
                }
                me
            }
            Some(rd) => {
                if !unbound_for_me(rd.chan(remote_port)) {
                    return Err(Errno::EINVAL);
                }
                if let Some(r) = rd.chan_mut(remote_port) {
                    r.state = PortState::Interdomain {
                        remote_dom: me,
                        remote_port: lport,
                    };
                }
                rd.domid
            }
        };
        self.bind(
            lport,
            PortState::Interdomain {
                remote_dom: rdom,
                remote_port,
            },
            0,
        );
        let n = self.raise(mem, lport);
        Ok((lport, n))
    }

    /// `EVTCHNOP_bind_virq`. Per-vCPU VIRQs (`TIMER`, `DEBUG`, `XENOPROF`, `XENPMU`) bind once per
    /// vCPU; global and per-domain VIRQs only on vCPU 0.
    ///
    /// Errors, in Xen's order: `-EINVAL` (`virq >= NR_VIRQS`, or a non-per-vCPU VIRQ with
    /// `vcpu != 0`), `-ENOENT` (no such vCPU), `-EBUSY` (global VIRQ and this domain is not its
    /// handler), `-EEXIST` (already bound for that vCPU), `-ENOSPC`/`-ENOMEM`.
    pub fn bind_virq<M: EventMemory>(
        &mut self,
        mem: &M,
        virq: u32,
        vcpu: VcpuId,
    ) -> Result<EvtchnPort, Errno> {
        if virq >= NR_VIRQS {
            return Err(Errno::EINVAL);
        }
        if !virq_is_per_vcpu(virq) && vcpu.0 != 0 {
            return Err(Errno::EINVAL);
        }
        if !self.vcpu_exists(vcpu) {
            return Err(Errno::ENOENT);
        }
        if virq_is_global(virq) && !self.global_virq_handler {
            return Err(Errno::EBUSY);
        }
        if self.virq_port(vcpu, virq).is_some() {
            return Err(Errno::EEXIST);
        }
        let port = self.get_free_port(mem)?;
        self.bind(port, PortState::Virq { virq }, vcpu.0);
        if let Some(slot) = self
            .virq_to_port
            .get_mut(vcpu.0 as usize)
            .and_then(|t| t.get_mut(virq as usize))
        {
            *slot = port.0;
        }
        Ok(port)
    }

    /// `EVTCHNOP_bind_ipi`: a port that raises itself on `vcpu` when sent on.
    /// Errors: `-ENOENT` (no such vCPU), `-ENOSPC`/`-ENOMEM`.
    pub fn bind_ipi<M: EventMemory>(&mut self, mem: &M, vcpu: VcpuId) -> Result<EvtchnPort, Errno> {
        if !self.vcpu_exists(vcpu) {
            return Err(Errno::ENOENT);
        }
        let port = self.get_free_port(mem)?;
        self.bind(port, PortState::Ipi, vcpu.0);
        Ok(port)
    }

    /// `EVTCHNOP_close` by the guest. For an interdomain port the other end reverts to `Unbound`
    /// (naming this domain): in this table for a loopback, in `remote` if it is the table of
    /// [`EvtchnDomain::remote_domain`]; otherwise the end is returned for the caller to pass to
    /// [`EvtchnDomain::peer_closed`]. The freed port's pending bit is cleared.
    ///
    /// Errors: `-EINVAL` (invalid, free or reserved port, or a hypervisor-consumer port).
    pub fn close<M: EventMemory>(
        &mut self,
        mem: &mut M,
        port: EvtchnPort,
        remote: Option<&mut EvtchnDomain>,
    ) -> Result<Option<RemoteEnd>, Errno> {
        self.close_common(mem, port, remote, true)
    }

    /// Closes a hypervisor-consumer port (Xen's `free_xen_event_channel`); also closes guest ports.
    pub fn close_xen<M: EventMemory>(
        &mut self,
        mem: &mut M,
        port: EvtchnPort,
        remote: Option<&mut EvtchnDomain>,
    ) -> Result<Option<RemoteEnd>, Errno> {
        self.close_common(mem, port, remote, false)
    }

    fn close_common<M: EventMemory>(
        &mut self,
        mem: &mut M,
        port: EvtchnPort,
        remote: Option<&mut EvtchnDomain>,
        guest: bool,
    ) -> Result<Option<RemoteEnd>, Errno> {
        let c = *self.chan(port).ok_or(Errno::EINVAL)?;
        if guest && c.consumer.is_some() {
            return Err(Errno::EINVAL);
        }
        let mut leftover = None;
        match c.state {
            PortState::Free | PortState::Reserved => return Err(Errno::EINVAL),
            PortState::Unbound { .. } | PortState::Ipi | PortState::Pirq { .. } => {}
            PortState::Virq { virq } => {
                let v = if virq_is_per_vcpu(virq) { c.notify } else { 0 };
                if let Some(slot) = self
                    .virq_to_port
                    .get_mut(v as usize)
                    .and_then(|t| t.get_mut(virq as usize))
                {
                    if *slot == port.0 {
                        *slot = 0;
                    }
                }
            }
            PortState::Interdomain {
                remote_dom,
                remote_port,
            } => {
                let me = self.domid;
                if remote_dom == me {
                    self.peer_closed(remote_port, me, port);
                } else {
                    match remote {
                        Some(rd) if rd.domid == remote_dom => {
                            rd.peer_closed(remote_port, me, port);
                        }
                        _ => {
                            leftover = Some(RemoteEnd {
                                dom: remote_dom,
                                port: remote_port,
                                peer_port: port,
                            });
                        }
                    }
                }
            }
        }
        self.free(mem, port);
        Ok(leftover)
    }

    /// The other end of `port` (`from_dom`'s `from_port`) was closed: if `port` is still connected
    /// to it, it reverts to `Unbound` for `from_dom`. Returns whether it changed.
    pub fn peer_closed(
        &mut self,
        port: EvtchnPort,
        from_dom: DomId,
        from_port: EvtchnPort,
    ) -> bool {
        match self.chan_mut(port) {
            Some(c)
                if c.state
                    == (PortState::Interdomain {
                        remote_dom: from_dom,
                        remote_port: from_port,
                    }) =>
            {
                c.state = PortState::Unbound {
                    remote_dom: from_dom,
                };
                true
            }
            _ => false,
        }
    }

    /// Xen's `evtchn_free`: clear pending, back to `Free` on vCPU 0.
    fn free<M: EventMemory>(&mut self, mem: &mut M, port: EvtchnPort) {
        self.clear_pending(mem, port);
        if let Some(c) = self.chan_mut(port) {
            c.state = PortState::Free;
            c.notify = 0;
            c.consumer = None;
            c.fifo_pending = false;
        }
    }

    fn clear_pending<M: EventMemory>(&mut self, mem: &mut M, port: EvtchnPort) {
        match &self.fifo {
            Some(f) => {
                if f.has_word(port.0) {
                    mem.fifo_word_fetch_and(port, !FIFO_WORD_PENDING);
                }
            }
            None => {
                if port.0 < EVTCHN_2L_NR_CHANNELS {
                    mem.bitmap_fetch_and(
                        Bitmap::Pending,
                        evtchn_2l_word(port.0),
                        !evtchn_2l_bit(port.0),
                    );
                }
            }
        }
    }

    /// `EVTCHNOP_send` on local `port`: an interdomain port notifies its remote end, an IPI port
    /// raises itself, an unbound port drops the notification.
    ///
    /// Errors: `-EINVAL` (invalid port, hypervisor-consumer port, or a free/reserved/VIRQ/PIRQ port).
    pub fn send<M: EventMemory>(
        &mut self,
        mem: &mut M,
        port: EvtchnPort,
    ) -> Result<SendAction, Errno> {
        let c = *self.chan(port).ok_or(Errno::EINVAL)?;
        if c.consumer.is_some() {
            return Err(Errno::EINVAL);
        }
        match c.state {
            PortState::Interdomain {
                remote_dom,
                remote_port,
            } => {
                if remote_dom != self.domid {
                    return Ok(SendAction::Remote {
                        dom: remote_dom,
                        port: remote_port,
                        from_port: port,
                    });
                }
                Ok(
                    match self.deliver_interdomain(mem, remote_port, remote_dom, port) {
                        Delivery::Dropped => SendAction::Dropped,
                        Delivery::Raised(n) => SendAction::Local(n),
                        Delivery::Consumer {
                            consumer,
                            port,
                            vcpu,
                        } => SendAction::Consumer {
                            consumer,
                            port,
                            vcpu,
                        },
                    },
                )
            }
            PortState::Ipi => Ok(SendAction::Local(self.raise(mem, port))),
            PortState::Unbound { .. } => Ok(SendAction::Dropped),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Delivers a send from `from_dom`'s `from_port` to `port` of this table: raises it, or reports
    /// its hypervisor consumer. Nothing happens if `port` is no longer connected to that sender.
    pub fn deliver_interdomain<M: EventMemory>(
        &mut self,
        mem: &mut M,
        port: EvtchnPort,
        from_dom: DomId,
        from_port: EvtchnPort,
    ) -> Delivery {
        let Some(c) = self.chan(port).copied() else {
            return Delivery::Dropped;
        };
        if c.state
            != (PortState::Interdomain {
                remote_dom: from_dom,
                remote_port: from_port,
            })
        {
            return Delivery::Dropped;
        }
        match c.consumer {
            Some(consumer) => Delivery::Consumer {
                consumer,
                port,
                vcpu: VcpuId(c.notify),
            },
            None => Delivery::Raised(self.raise(mem, port)),
        }
    }

    /// Xen's `notify_via_xen_event_channel`: a hypervisor backend signals through its consumer
    /// port `port`. Returns the guest end to raise: `Local` (loopback, already raised), `Remote`
    /// (the caller calls `deliver_interdomain` on that table), or `Dropped` when not connected.
    pub fn notify_via_xen<M: EventMemory>(&mut self, mem: &mut M, port: EvtchnPort) -> SendAction {
        let Some(c) = self.chan(port).copied() else {
            return SendAction::Dropped;
        };
        match c.state {
            PortState::Interdomain {
                remote_dom,
                remote_port,
            } if remote_dom == self.domid => SendAction::Local(self.raise(mem, remote_port)),
            PortState::Interdomain {
                remote_dom,
                remote_port,
            } => SendAction::Remote {
                dom: remote_dom,
                port: remote_port,
                from_port: port,
            },
            _ => SendAction::Dropped,
        }
    }

    /// Raises `port` on its notify vCPU (Xen's `evtchn_port_set_pending`), whatever its state (the
    /// caller raises only ports it bound). Invalid ports and ports the ABI cannot represent are
    /// ignored.
    pub fn raise<M: EventMemory>(&mut self, mem: &mut M, port: EvtchnPort) -> Notify {
        match self.chan(port) {
            Some(c) => {
                let v = c.notify;
                self.raise_on(mem, port, v)
            }
            None => Notify::NONE,
        }
    }

    fn raise_on<M: EventMemory>(&mut self, mem: &mut M, port: EvtchnPort, vcpu: u32) -> Notify {
        if !self.vcpu_exists(VcpuId(vcpu)) || self.chan(port).is_none() {
            return Notify::NONE;
        }
        if self.fifo.is_some() {
            self.fifo_set_pending(mem, port, vcpu)
        } else {
            two_level_set_pending(mem, port, VcpuId(vcpu))
        }
    }

    /// Raises `virq` (Xen's `send_guest_vcpu_virq` / `send_guest_global_virq`): a per-vCPU VIRQ on
    /// `vcpu`'s binding, a global or per-domain VIRQ on vCPU 0's binding (delivered to the port's
    /// notify vCPU). Nothing happens if it is not bound.
    pub fn send_virq<M: EventMemory>(&mut self, mem: &mut M, vcpu: VcpuId, virq: u32) -> Notify {
        if virq_is_per_vcpu(virq) {
            match self.virq_port(vcpu, virq) {
                Some(p) => self.raise_on(mem, p, vcpu.0),
                None => Notify::NONE,
            }
        } else {
            match self.virq_port(VcpuId(0), virq) {
                Some(p) => self.raise(mem, p),
                None => Notify::NONE,
            }
        }
    }

    /// `EVTCHNOP_status` of `port`: fills the OUT fields of `out`. The caller resolves `dom`
    /// (`-ESRCH`, privilege). Errors: `-EINVAL` (port not valid).
    pub fn status(&self, port: EvtchnPort, out: &mut EvtchnStatus) -> Result<(), Errno> {
        let c = self.chan(port).ok_or(Errno::EINVAL)?;
        match c.state {
            PortState::Free | PortState::Reserved => out.set_closed(c.notify),
            PortState::Unbound { remote_dom } => out.set_unbound(c.notify, remote_dom.0),
            PortState::Interdomain {
                remote_dom,
                remote_port,
            } => out.set_interdomain(c.notify, remote_dom.0, remote_port.0),
            PortState::Pirq { pirq } => out.set_pirq(c.notify, pirq),
            PortState::Virq { virq } => out.set_virq(c.notify, virq),
            PortState::Ipi => out.set_ipi(c.notify),
        }
        Ok(())
    }

    /// `EVTCHNOP_bind_vcpu`: changes the vCPU `port` notifies. Allowed for unbound, interdomain and
    /// PIRQ ports and global VIRQs. Errors: `-ENOENT` (no such vCPU, checked first), `-EINVAL`
    /// (invalid port, hypervisor-consumer port, or any other state).
    pub fn bind_vcpu(&mut self, port: EvtchnPort, vcpu: VcpuId) -> Result<(), Errno> {
        if !self.vcpu_exists(vcpu) {
            return Err(Errno::ENOENT);
        }
        let c = self.chan_mut(port).ok_or(Errno::EINVAL)?;
        if c.consumer.is_some() {
            return Err(Errno::EINVAL);
        }
        match c.state {
            PortState::Virq { virq } if !virq_is_per_vcpu(virq) => c.notify = vcpu.0,
            PortState::Unbound { .. } | PortState::Interdomain { .. } | PortState::Pirq { .. } => {
                c.notify = vcpu.0
            }
            _ => return Err(Errno::EINVAL),
        }
        Ok(())
    }

    /// `EVTCHNOP_unmask`: clears the port's mask and, if it is pending, re-does the delivery step
    /// (2-level: selector and upcall; FIFO: link into its queue). Valid ports in any state are
    /// accepted (as in Xen); hypervisor-consumer ports are left alone. Errors: `-EINVAL` (invalid).
    pub fn unmask<M: EventMemory>(
        &mut self,
        mem: &mut M,
        port: EvtchnPort,
    ) -> Result<Notify, Errno> {
        let c = *self.chan(port).ok_or(Errno::EINVAL)?;
        if c.consumer.is_some() {
            return Ok(Notify::NONE);
        }
        if !self.vcpu_exists(VcpuId(c.notify)) {
            return Ok(Notify::NONE);
        }
        if self.fifo.is_some() {
            Ok(self.fifo_unmask(mem, port, c.notify))
        } else {
            Ok(two_level_unmask(mem, port, VcpuId(c.notify)))
        }
    }

    /// `EVTCHNOP_set_priority` (FIFO only). Errors: `-EINVAL` (invalid port), `-ENOSYS` (2-level
    /// ABI), `-EACCES` (hypervisor-consumer port), `-EINVAL` (`priority > 15`). Takes effect for
    /// the next time the port is linked.
    pub fn set_priority(&mut self, port: EvtchnPort, priority: u32) -> Result<(), Errno> {
        let fifo = self.fifo.is_some();
        let c = self.chan_mut(port).ok_or(Errno::EINVAL)?;
        if !fifo {
            return Err(Errno::ENOSYS);
        }
        if c.consumer.is_some() {
            return Err(Errno::EACCES);
        }
        if priority > EVTCHN_FIFO_PRIORITY_MIN {
            return Err(Errno::EINVAL);
        }
        c.priority = priority as u8;
        Ok(())
    }

    /// `EVTCHNOP_reset`: closes every guest port (hypervisor-consumer ports stay) and returns to the
    /// 2-level ABI if FIFO was in use. Interdomain peers in other domains are returned for the caller
    /// to pass to their table's [`EvtchnDomain::peer_closed`]. The caller checks that the target is
    /// the caller itself or a paused domain (`-EINVAL`). Not preemptible (Xen restarts every 64
    /// ports).
    pub fn reset<M: EventMemory>(&mut self, mem: &mut M) -> Vec<RemoteEnd> {
        let mut leftovers = Vec::new();
        for p in 1..self.chans.len() as u32 {
            if let Ok(Some(r)) = self.close_common(mem, EvtchnPort(p), None, true) {
                leftovers.push(r);
            }
        }
        if self.fifo.take().is_some() {
            mem.fifo_unmap_all();
        }
        leftovers
    }

    /// Domain teardown: no more allocations, every port (including hypervisor-consumer ones) closed,
    /// FIFO pages unmapped. Returns the interdomain peers the caller must update.
    pub fn destroy<M: EventMemory>(&mut self, mem: &mut M) -> Vec<RemoteEnd> {
        self.dying = true;
        let mut leftovers = Vec::new();
        for p in (1..self.chans.len() as u32).rev() {
            if let Ok(Some(r)) = self.close_common(mem, EvtchnPort(p), None, false) {
                leftovers.push(r);
            }
        }
        if self.fifo.take().is_some() {
            mem.fifo_unmap_all();
        }
        leftovers
    }

    /// Whether `port` is pending (for `SCHEDOP_poll`); false for invalid ports and ports the ABI
    /// cannot represent.
    pub fn is_pending<M: EventMemory>(&self, mem: &M, port: EvtchnPort) -> bool {
        if self.chan(port).is_none() {
            return false;
        }
        match &self.fifo {
            Some(f) => f.has_word(port.0) && mem.fifo_word_load(port) & FIFO_WORD_PENDING != 0,
            None => {
                port.0 < EVTCHN_2L_NR_CHANNELS
                    && mem.bitmap_load(Bitmap::Pending, evtchn_2l_word(port.0))
                        & evtchn_2l_bit(port.0)
                        != 0
            }
        }
    }

    /// Whether `port` is masked; true for invalid ports and ports the ABI cannot represent.
    pub fn is_masked<M: EventMemory>(&self, mem: &M, port: EvtchnPort) -> bool {
        if self.chan(port).is_none() {
            return true;
        }
        match &self.fifo {
            Some(f) => !f.has_word(port.0) || mem.fifo_word_load(port) & FIFO_WORD_MASKED != 0,
            None => {
                port.0 >= EVTCHN_2L_NR_CHANNELS
                    || mem.bitmap_load(Bitmap::Mask, evtchn_2l_word(port.0)) & evtchn_2l_bit(port.0)
                        != 0
            }
        }
    }

    /// `EVTCHNOP_init_control`: registers `vcpu`'s FIFO control block at `offset` in guest frame
    /// `gfn`. The first call switches the domain to the FIFO ABI: pending 2-level ports are
    /// remembered and re-raised once their event-array page exists, and every port's priority is
    /// reset to the default. Returns `link_bits` (17) for the OUT field.
    ///
    /// Errors: `-ENOENT` (no such vCPU), `-EINVAL` (`offset` lets the block cross the page or is not
    /// 8-byte aligned; this vCPU already has a control block), errors of
    /// [`EventMemory::fifo_map_control_block`] (the switch is undone).
    pub fn init_control<M: EventMemory>(
        &mut self,
        mem: &mut M,
        vcpu: VcpuId,
        gfn: u64,
        offset: u32,
    ) -> Result<u8, Errno> {
        if !self.vcpu_exists(vcpu) {
            return Err(Errno::ENOENT);
        }
        if offset > fifo::PAGE_SIZE - FIFO_CONTROL_BLOCK_SIZE || !offset.is_multiple_of(8) {
            return Err(Errno::EINVAL);
        }
        match &mut self.fifo {
            Some(f) => {
                let v = f.vcpu_mut(vcpu.0).ok_or(Errno::ENOENT)?;
                if v.control {
                    return Err(Errno::EINVAL);
                }
                mem.fifo_map_control_block(vcpu, gfn, offset)?;
                v.control = true;
            }
            None => {
                if let Err(e) = mem.fifo_map_control_block(vcpu, gfn, offset) {
                    mem.fifo_unmap_all();
                    return Err(e);
                }
                let mut f = fifo::FifoState::new(self.nr_vcpus);
                if let Some(v) = f.vcpu_mut(vcpu.0) {
                    v.control = true;
                }
                // Xen's setup_ports: remember 2-level pending state, default priority.
                let n = (self.chans.len() as u32).min(EVTCHN_2L_NR_CHANNELS);
                for p in 1..n {
                    let pending =
                        mem.bitmap_load(Bitmap::Pending, evtchn_2l_word(p)) & evtchn_2l_bit(p) != 0;
                    if let Some(c) = self.chans.get_mut(p as usize) {
                        if pending {
                            c.fifo_pending = true;
                        }
                        c.priority = EVTCHN_FIFO_PRIORITY_DEFAULT as u8;
                    }
                }
                self.fifo = Some(f);
            }
        }
        Ok(EVTCHN_FIFO_LINK_BITS as u8)
    }

    /// `EVTCHNOP_expand_array`: adds guest frame `gfn` as the next event-array page and re-raises
    /// the ports of that page that were raised while it was missing.
    ///
    /// Errors: `-EOPNOTSUPP` (not using FIFO), `-ENOSPC` (all 128 pages present), errors of
    /// [`EventMemory::fifo_map_array_page`].
    pub fn expand_array<M: EventMemory>(
        &mut self,
        mem: &mut M,
        gfn: u64,
    ) -> Result<Vec<Notify>, Errno> {
        let f = self.fifo.as_mut().ok_or(Errno::EOPNOTSUPP)?;
        let slot = f.pages;
        if slot >= FIFO_MAX_ARRAY_PAGES {
            return Err(Errno::ENOSPC);
        }
        mem.fifo_map_array_page(slot, gfn)?;
        f.pages += 1;
        let first = slot * FIFO_EVENT_WORDS_PER_PAGE;
        let end = (first + FIFO_EVENT_WORDS_PER_PAGE).min(self.chans.len() as u32);
        let mut out = Vec::new();
        for p in first..end {
            let Some(c) = self.chans.get_mut(p as usize) else {
                break;
            };
            if core::mem::take(&mut c.fifo_pending) {
                let v = c.notify;
                let n = self.raise_on(mem, EvtchnPort(p), v);
                if !n.is_none() {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    /// FIFO: number of event-array pages (0 with the 2-level ABI).
    pub fn fifo_array_pages(&self) -> u32 {
        self.fifo.as_ref().map_or(0, |f| f.pages)
    }
}

/// 2-level `set_pending` (Xen's `evtchn_2l_set_pending`).
fn two_level_set_pending<M: EventMemory>(mem: &mut M, port: EvtchnPort, vcpu: VcpuId) -> Notify {
    if port.0 >= EVTCHN_2L_NR_CHANNELS {
        return Notify::NONE;
    }
    let word = evtchn_2l_word(port.0);
    let bit = evtchn_2l_bit(port.0);
    if mem.bitmap_fetch_or(Bitmap::Pending, word, bit) & bit != 0 {
        return Notify::NONE;
    }
    let mut n = Notify {
        kick: None,
        pollers: Some(port),
    };
    if mem.bitmap_load(Bitmap::Mask, word) & bit == 0 {
        n.kick = select_and_mark(mem, vcpu, word);
    }
    n
}

/// 2-level `unmask` (Xen's `evtchn_2l_unmask`): only a mask bit that was set re-delivers.
fn two_level_unmask<M: EventMemory>(mem: &mut M, port: EvtchnPort, vcpu: VcpuId) -> Notify {
    if port.0 >= EVTCHN_2L_NR_CHANNELS {
        return Notify::NONE;
    }
    let word = evtchn_2l_word(port.0);
    let bit = evtchn_2l_bit(port.0);
    let was_masked = mem.bitmap_fetch_and(Bitmap::Mask, word, !bit) & bit != 0;
    if was_masked && mem.bitmap_load(Bitmap::Pending, word) & bit != 0 {
        Notify {
            kick: select_and_mark(mem, vcpu, word),
            pollers: None,
        }
    } else {
        Notify::NONE
    }
}

/// Sets selector bit `word` of `vcpu`; if it was clear, marks the upcall pending. Returns the
/// vCPU to kick if `evtchn_upcall_pending` went 0→1.
fn select_and_mark<M: EventMemory>(mem: &mut M, vcpu: VcpuId, word: usize) -> Option<VcpuId> {
    let sel = 1u64 << (word % 64);
    if mem.selector_fetch_or(vcpu, sel) & sel != 0 {
        return None;
    }
    mark_events_pending(mem, vcpu)
}

/// Xen's `vcpu_mark_events_pending`.
fn mark_events_pending<M: EventMemory>(mem: &mut M, vcpu: VcpuId) -> Option<VcpuId> {
    (!mem.upcall_pending_test_and_set(vcpu)).then_some(vcpu)
}
