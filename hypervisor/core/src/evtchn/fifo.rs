//! FIFO event-channel ABI: linking raised ports into per-vCPU priority queues in guest memory.
//!
//! Layout (public `event_channel.h`, "FIFO ABI"): the event array is up to 128 guest pages of
//! 1024 32-bit event words (bit 31 PENDING, 30 MASKED, 29 LINKED, 28 BUSY, bits 0-16 LINK = next
//! port in the queue). Each vCPU registers a control block (`ready` bitmap, `head[16]`).
//!
//! The hypervisor keeps each queue's tail privately; the guest consumes from the head, clearing
//! LINKED (and LINK) of each word it takes off. Raising a port (Xen's `evtchn_fifo_set_pending`):
//! set PENDING; if not MASKED and LINKED was clear (test-and-set, so a port is never linked twice),
//! append it: compare-exchange the port into the LINK field of the tail word *if the tail is still
//! LINKED*, otherwise the queue is empty (the guest consumed the tail) and the port becomes the new
//! head. Only an append to an empty queue sets the `ready` bit and may mark the upcall pending.
//!
//! Invariants: a tail always names a port inside the event array (the array never shrinks while
//! FIFO is in use); the tail of the queue a port was last linked on is cleared when that port is
//! linked again, so a port is never appended after itself; every compare-exchange loop on a guest
//! word is bounded (Xen: at most 4 retries once the tail is marked BUSY, which stops the guest from
//! unmasking it).
use alloc::vec::Vec;

use xen_abi::event_channel::{
    EVTCHN_FIFO_BUSY, EVTCHN_FIFO_LINKED, EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_MASKED,
    EVTCHN_FIFO_MAX_QUEUES, EVTCHN_FIFO_NR_CHANNELS, EVTCHN_FIFO_PENDING,
};
use xen_abi::types::{EvtchnPort, VcpuId};

use super::{mark_events_pending, EventMemory, EvtchnDomain, Notify};

/// Event-word bit: pending.
pub const FIFO_WORD_PENDING: u32 = 1 << EVTCHN_FIFO_PENDING;
/// Event-word bit: masked.
pub const FIFO_WORD_MASKED: u32 = 1 << EVTCHN_FIFO_MASKED;
/// Event-word bit: linked into a queue.
pub const FIFO_WORD_LINKED: u32 = 1 << EVTCHN_FIFO_LINKED;
/// Event-word bit: the hypervisor is updating LINK (the guest must not unmask meanwhile).
pub const FIFO_WORD_BUSY: u32 = 1 << EVTCHN_FIFO_BUSY;
/// Event words in one event-array page.
pub const FIFO_EVENT_WORDS_PER_PAGE: u32 = 1024;
/// Maximum number of event-array pages.
pub const FIFO_MAX_ARRAY_PAGES: u32 = EVTCHN_FIFO_NR_CHANNELS / FIFO_EVENT_WORDS_PER_PAGE;
/// Size of `struct evtchn_fifo_control_block`.
pub const FIFO_CONTROL_BLOCK_SIZE: u32 = 72;
pub(super) const PAGE_SIZE: u32 = 4096;

/// Retries of the LINK compare-exchange once the tail word is BUSY.
const LINK_RETRIES: usize = 4;

/// Hypervisor-private FIFO state of one vCPU.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct FifoVcpu {
    /// The control block is mapped.
    pub(super) control: bool,
    /// Tail port of each priority queue (0: none).
    tail: [u32; EVTCHN_FIFO_MAX_QUEUES],
}

/// Hypervisor-private FIFO state of a domain.
#[derive(Debug)]
pub(super) struct FifoState {
    /// Event-array pages mapped.
    pub(super) pages: u32,
    vcpus: Vec<FifoVcpu>,
}

impl FifoState {
    pub(super) fn new(nr_vcpus: u32) -> FifoState {
        let mut vcpus = Vec::new();
        vcpus.resize(nr_vcpus as usize, FifoVcpu::default());
        FifoState { pages: 0, vcpus }
    }

    /// Whether `port` has an event word (its page is mapped).
    pub(super) fn has_word(&self, port: u32) -> bool {
        port / FIFO_EVENT_WORDS_PER_PAGE < self.pages
    }

    pub(super) fn vcpu_mut(&mut self, vcpu: u32) -> Option<&mut FifoVcpu> {
        self.vcpus.get_mut(vcpu as usize)
    }

    fn tail(&self, vcpu: u32, priority: u8) -> u32 {
        self.vcpus
            .get(vcpu as usize)
            .and_then(|v| v.tail.get(usize::from(priority)))
            .copied()
            .unwrap_or(0)
    }

    fn set_tail(&mut self, vcpu: u32, priority: u8, port: u32) {
        if let Some(t) = self
            .vcpus
            .get_mut(vcpu as usize)
            .and_then(|v| v.tail.get_mut(usize::from(priority)))
        {
            *t = port;
        }
    }

    /// The tail of `vcpu`'s queue at `priority`, for tests and debugging.
    #[cfg(test)]
    pub(super) fn tail_of(&self, vcpu: u32, priority: u8) -> u32 {
        self.tail(vcpu, priority)
    }
}

/// One attempt at writing `link` into the LINK field of `tail`, whose last seen value is `*w`.
/// `Ok(false)`: the tail is no longer linked; `Ok(true)`: linked; `Err(())`: the word changed
/// (`*w` now holds the new value).
fn try_set_link<M: EventMemory>(
    mem: &mut M,
    tail: EvtchnPort,
    w: &mut u32,
    link: u32,
) -> Result<bool, ()> {
    if *w & FIFO_WORD_LINKED == 0 {
        return Ok(false);
    }
    let new = (*w & !(FIFO_WORD_BUSY | EVTCHN_FIFO_LINK_MASK)) | (link & EVTCHN_FIFO_LINK_MASK);
    match mem.fifo_word_compare_exchange(tail, *w, new) {
        Ok(_) => Ok(true),
        Err(actual) => {
            *w = actual;
            Err(())
        }
    }
}

/// Xen's `evtchn_fifo_set_link`: links `link` after `tail` iff `tail` is still linked. Returns
/// whether it is now linked (if the guest keeps changing the word, gives up and reports linked, as
/// Xen does: the event stays pending and is found on the next unmask or raise).
fn set_link<M: EventMemory>(mem: &mut M, tail: EvtchnPort, link: u32) -> bool {
    let mut w = mem.fifo_word_load(tail);
    if let Ok(r) = try_set_link(mem, tail, &mut w, link) {
        return r;
    }
    // Lock the word against guest unmasking; the guest may then only clear PENDING/LINKED or set
    // MASKED, so the retries below succeed unless the guest misbehaves.
    mem.fifo_word_fetch_or(tail, FIFO_WORD_BUSY);
    let mut w = mem.fifo_word_load(tail);
    for _ in 0..LINK_RETRIES {
        if let Ok(r) = try_set_link(mem, tail, &mut w, link) {
            if !r {
                mem.fifo_word_fetch_and(tail, !FIFO_WORD_BUSY);
            }
            return r;
        }
    }
    mem.fifo_word_fetch_and(tail, !FIFO_WORD_BUSY);
    true
}

impl EvtchnDomain {
    /// Xen's `evtchn_fifo_set_pending` for `port` on `vcpu`'s queues.
    pub(super) fn fifo_set_pending<M: EventMemory>(
        &mut self,
        mem: &mut M,
        port: EvtchnPort,
        vcpu: u32,
    ) -> Notify {
        let Some(c) = self.chans.get(port.0 as usize).copied() else {
            return Notify::NONE;
        };
        let Some(f) = self.fifo.as_mut() else {
            return Notify::NONE;
        };
        if !f.has_word(port.0) {
            // No event word yet: remember it for expand_array.
            if let Some(c) = self.chans.get_mut(port.0 as usize) {
                c.fifo_pending = true;
            }
            return Notify::NONE;
        }
        let has_control = f.vcpus.get(vcpu as usize).is_some_and(|v| v.control);
        if !has_control {
            // The guest must not unmask an event before the control block exists: drop it.
            return Notify::NONE;
        }
        let priority = c.priority;
        let was_pending = mem.fifo_word_fetch_or(port, FIFO_WORD_PENDING) & FIFO_WORD_PENDING != 0;

        let mut linked = true;
        if mem.fifo_word_load(port) & FIFO_WORD_MASKED == 0
            && mem.fifo_word_fetch_or(port, FIFO_WORD_LINKED) & FIFO_WORD_LINKED == 0
        {
            // If it was the tail of the queue it was last on, that queue is now empty.
            if f.tail(c.last_vcpu, c.last_priority) == port.0 {
                f.set_tail(c.last_vcpu, c.last_priority, 0);
            }
            if (c.last_vcpu, c.last_priority) != (vcpu, priority) {
                if let Some(cm) = self.chans.get_mut(port.0 as usize) {
                    cm.last_vcpu = vcpu;
                    cm.last_priority = priority;
                }
            }
            let tail = f.tail(vcpu, priority);
            linked = tail != 0 && set_link(mem, EvtchnPort(tail), port.0);
            if !linked {
                mem.fifo_head_store(VcpuId(vcpu), u32::from(priority), port);
            }
            f.set_tail(vcpu, priority, port.0);
        }

        let mut n = Notify::NONE;
        let ready = 1u32 << (priority % 32);
        if !linked && mem.fifo_ready_fetch_or(VcpuId(vcpu), ready) & ready == 0 {
            n.kick = mark_events_pending(mem, VcpuId(vcpu));
        }
        if !was_pending {
            n.pollers = Some(port);
        }
        n
    }

    /// Xen's `evtchn_fifo_unmask`: clear MASKED, relink if pending.
    pub(super) fn fifo_unmask<M: EventMemory>(
        &mut self,
        mem: &mut M,
        port: EvtchnPort,
        vcpu: u32,
    ) -> Notify {
        if !self.fifo.as_ref().is_some_and(|f| f.has_word(port.0)) {
            return Notify::NONE;
        }
        mem.fifo_word_fetch_and(port, !FIFO_WORD_MASKED);
        if mem.fifo_word_load(port) & FIFO_WORD_PENDING != 0 {
            self.fifo_set_pending(mem, port, vcpu)
        } else {
            Notify::NONE
        }
    }

    /// The hypervisor-private tail of `vcpu`'s queue at `priority` (0: empty or not FIFO).
    #[cfg(test)]
    pub(super) fn fifo_tail(&self, vcpu: u32, priority: u8) -> u32 {
        self.fifo.as_ref().map_or(0, |f| f.tail_of(vcpu, priority))
    }
}
