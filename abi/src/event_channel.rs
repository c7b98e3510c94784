//! `event_channel_op` sub-operations, their arguments, and VIRQ numbers
//! (`public/event_channel.h`, `public/xen.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Connect to an unbound port of another domain ([`EvtchnBindInterdomain`]).
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// Bind a VIRQ to a new port ([`EvtchnBindVirq`]).
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
/// Bind a physical IRQ to a new port ([`EvtchnBindPirq`]).
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
/// Close a port ([`EvtchnClose`]).
pub const EVTCHNOP_CLOSE: u32 = 3;
/// Notify the remote end of a port ([`EvtchnSend`]).
pub const EVTCHNOP_SEND: u32 = 4;
/// Query a port's state ([`EvtchnStatus`]).
pub const EVTCHNOP_STATUS: u32 = 5;
/// Allocate a port awaiting an interdomain connection ([`EvtchnAllocUnbound`]).
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
/// Allocate an IPI port for a vCPU ([`EvtchnBindIpi`]).
pub const EVTCHNOP_BIND_IPI: u32 = 7;
/// Change which vCPU a port notifies ([`EvtchnBindVcpu`]).
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// Unmask a port and re-deliver if pending ([`EvtchnUnmask`]).
pub const EVTCHNOP_UNMASK: u32 = 9;
/// Close all of a domain's ports ([`EvtchnReset`]).
pub const EVTCHNOP_RESET: u32 = 10;
/// Switch to the FIFO ABI / register a vCPU control block ([`EvtchnInitControl`]).
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
/// Add a page to the FIFO event array ([`EvtchnExpandArray`]).
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
/// Set a port's FIFO priority ([`EvtchnSetPriority`]).
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;

/// Ports available with the 2-level ABI on a 64-bit guest (64 × 64).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 4096;

/// Port state: not in use.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// Port state: waiting for an interdomain connection.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// Port state: connected to a port of a (possibly the same) domain.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// Port state: bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// Port state: bound to a virtual IRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// Port state: bound to an inter-vCPU IPI.
pub const EVTCHNSTAT_IPI: u32 = 5;

/// `EvtchnBindPirq.flags`: the PIRQ may be shared with other domains.
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

/// Per-vCPU VIRQ: timer tick / single-shot timer expiry.
pub const VIRQ_TIMER: u32 = 0;
/// Per-vCPU VIRQ: request to dump debug information.
pub const VIRQ_DEBUG: u32 = 1;
/// Global VIRQ: bytes arrived on the emergency console (dom0).
pub const VIRQ_CONSOLE: u32 = 2;
/// Global VIRQ: exceptional event for some domain (dom0).
pub const VIRQ_DOM_EXC: u32 = 3;
/// Global VIRQ: trace buffer has records (dom0).
pub const VIRQ_TBUF: u32 = 4;
/// Global VIRQ: a domain paused for debugging (dom0).
pub const VIRQ_DEBUGGER: u32 = 6;
/// Per-vCPU VIRQ: Xenoprof sample available.
pub const VIRQ_XENOPROF: u32 = 7;
/// Global VIRQ: bytes arrived on the console ring (dom0).
pub const VIRQ_CON_RING: u32 = 8;
/// Global VIRQ: physical CPU state changed (dom0).
pub const VIRQ_PCPU_STATE: u32 = 9;
/// Global VIRQ: memory event (dom0).
pub const VIRQ_MEM_EVENT: u32 = 10;
/// Per-domain VIRQ: Argo message notification.
pub const VIRQ_ARGO: u32 = 11;
/// Global VIRQ: host low on memory (dom0).
pub const VIRQ_ENOMEM: u32 = 12;
/// Per-vCPU VIRQ: PMU interrupt.
pub const VIRQ_XENPMU: u32 = 13;
/// First architecture-specific VIRQ.
pub const VIRQ_ARCH_0: u32 = 16;
/// x86: machine-check notification (`VIRQ_ARCH_0`, `arch-x86/xen-mca.h`).
pub const VIRQ_MCA: u32 = VIRQ_ARCH_0;
/// Last architecture-specific VIRQ.
pub const VIRQ_ARCH_7: u32 = 23;
/// Number of VIRQ numbers.
pub const NR_VIRQS: u32 = 24;

/// Whether a VIRQ is per-vCPU (may be bound once on each vCPU) rather than
/// global (bound once per domain, initially on vCPU 0).
pub const fn virq_is_per_vcpu(virq: u32) -> bool {
    matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

/// Index of the 64-bit word holding `port` in the 2-level bitmaps.
pub const fn evtchn_2l_word(port: u32) -> usize {
    (port / 64) as usize
}

/// Bit mask of `port` within its 2-level bitmap word.
pub const fn evtchn_2l_bit(port: u32) -> u64 {
    1 << (port % 64)
}

/// FIFO ABI: highest priority.
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
/// FIFO ABI: default priority.
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
/// FIFO ABI: lowest priority.
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// FIFO ABI: number of priority queues.
pub const EVTCHN_FIFO_MAX_QUEUES: usize = EVTCHN_FIFO_PRIORITY_MIN as usize + 1;
/// FIFO event word bit: pending.
pub const EVTCHN_FIFO_PENDING: u32 = 31;
/// FIFO event word bit: masked.
pub const EVTCHN_FIFO_MASKED: u32 = 30;
/// FIFO event word bit: linked into a queue.
pub const EVTCHN_FIFO_LINKED: u32 = 29;
/// FIFO event word bit: busy.
pub const EVTCHN_FIFO_BUSY: u32 = 28;
/// FIFO event word: number of link bits.
pub const EVTCHN_FIFO_LINK_BITS: u32 = 17;
/// FIFO event word: link field mask.
pub const EVTCHN_FIFO_LINK_MASK: u32 = (1 << EVTCHN_FIFO_LINK_BITS) - 1;
/// FIFO ABI: maximum number of ports.
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << EVTCHN_FIFO_LINK_BITS;

/// Argument of `EVTCHNOP_alloc_unbound` (C `struct evtchn_alloc_unbound`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnAllocUnbound {
    /// Domain in which to allocate (`DOMID_SELF` unless privileged).
    pub dom: u16,
    /// Domain allowed to connect.
    pub remote_dom: u16,
    /// OUT: the new port.
    pub port: u32,
}

assert_layout!(EvtchnAllocUnbound, size = 8, { dom: 0, remote_dom: 2, port: 4 });

/// Argument of `EVTCHNOP_bind_interdomain` (C `struct evtchn_bind_interdomain`), 12 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindInterdomain {
    /// Remote domain.
    pub remote_dom: u16,
    /// Padding (C alignment hole).
    pub pad: u16,
    /// Remote unbound port.
    pub remote_port: u32,
    /// OUT: the new local port.
    pub local_port: u32,
}

assert_layout!(EvtchnBindInterdomain, size = 12, {
    remote_dom: 0, pad: 2, remote_port: 4, local_port: 8,
});

/// Argument of `EVTCHNOP_bind_virq` (C `struct evtchn_bind_virq`), 12 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindVirq {
    /// `VIRQ_*`.
    pub virq: u32,
    /// vCPU to notify.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: u32,
}

assert_layout!(EvtchnBindVirq, size = 12, { virq: 0, vcpu: 4, port: 8 });

/// Argument of `EVTCHNOP_bind_pirq` (C `struct evtchn_bind_pirq`), 12 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindPirq {
    /// Physical IRQ.
    pub pirq: u32,
    /// `BIND_PIRQ_*`.
    pub flags: u32,
    /// OUT: the new port.
    pub port: u32,
}

assert_layout!(EvtchnBindPirq, size = 12, { pirq: 0, flags: 4, port: 8 });

/// Argument of `EVTCHNOP_bind_ipi` (C `struct evtchn_bind_ipi`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindIpi {
    /// vCPU to notify.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: u32,
}

assert_layout!(EvtchnBindIpi, size = 8, { vcpu: 0, port: 4 });

/// Argument of `EVTCHNOP_close` (C `struct evtchn_close`), 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnClose {
    /// Local port.
    pub port: u32,
}

assert_layout!(EvtchnClose, size = 4, { port: 0 });

/// Argument of `EVTCHNOP_send` (C `struct evtchn_send`), 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnSend {
    /// Local port whose remote end is notified.
    pub port: u32,
}

assert_layout!(EvtchnSend, size = 4, { port: 0 });

/// Argument of `EVTCHNOP_status` (C `struct evtchn_status`), 24 bytes.
///
/// The C union `u` (8 bytes at offset 16) is stored as two words; use the
/// accessors: `unbound.dom` and `interdomain.dom` are the low 16 bits of
/// word 0, `interdomain.port` is word 1, `pirq` and `virq` are word 0.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnStatus {
    /// IN: domain owning the port (`DOMID_SELF` unless privileged).
    pub dom: u16,
    /// Padding (C alignment hole).
    pub pad: u16,
    /// IN: port to query.
    pub port: u32,
    /// OUT: `EVTCHNSTAT_*`.
    pub status: u32,
    /// OUT: vCPU the port notifies.
    pub vcpu: u32,
    /// OUT: status-dependent union, see the type documentation.
    pub u: [u32; 2],
}

assert_layout!(EvtchnStatus, size = 24, {
    dom: 0, pad: 2, port: 4, status: 8, vcpu: 12, u: 16,
});

impl EvtchnStatus {
    /// `u.unbound.dom`: the domain allowed to connect (`EVTCHNSTAT_unbound`).
    pub const fn unbound_dom(&self) -> u16 {
        self.u[0] as u16
    }

    /// `u.interdomain.dom`: the remote domain (`EVTCHNSTAT_interdomain`).
    pub const fn interdomain_dom(&self) -> u16 {
        self.u[0] as u16
    }

    /// `u.interdomain.port`: the remote port (`EVTCHNSTAT_interdomain`).
    pub const fn interdomain_port(&self) -> u32 {
        self.u[1]
    }

    /// `u.pirq` (`EVTCHNSTAT_pirq`).
    pub const fn pirq(&self) -> u32 {
        self.u[0]
    }

    /// `u.virq` (`EVTCHNSTAT_virq`).
    pub const fn virq(&self) -> u32 {
        self.u[0]
    }

    /// Fill the OUT fields for a closed port.
    pub fn set_closed(&mut self, vcpu: u32) {
        self.status = EVTCHNSTAT_CLOSED;
        self.vcpu = vcpu;
        self.u = [0, 0];
    }

    /// Fill the OUT fields for an unbound port.
    pub fn set_unbound(&mut self, vcpu: u32, remote_dom: u16) {
        self.status = EVTCHNSTAT_UNBOUND;
        self.vcpu = vcpu;
        self.u = [u32::from(remote_dom), 0];
    }

    /// Fill the OUT fields for an interdomain port.
    pub fn set_interdomain(&mut self, vcpu: u32, remote_dom: u16, remote_port: u32) {
        self.status = EVTCHNSTAT_INTERDOMAIN;
        self.vcpu = vcpu;
        self.u = [u32::from(remote_dom), remote_port];
    }

    /// Fill the OUT fields for a PIRQ port.
    pub fn set_pirq(&mut self, vcpu: u32, pirq: u32) {
        self.status = EVTCHNSTAT_PIRQ;
        self.vcpu = vcpu;
        self.u = [pirq, 0];
    }

    /// Fill the OUT fields for a VIRQ port.
    pub fn set_virq(&mut self, vcpu: u32, virq: u32) {
        self.status = EVTCHNSTAT_VIRQ;
        self.vcpu = vcpu;
        self.u = [virq, 0];
    }

    /// Fill the OUT fields for an IPI port.
    pub fn set_ipi(&mut self, vcpu: u32) {
        self.status = EVTCHNSTAT_IPI;
        self.vcpu = vcpu;
        self.u = [0, 0];
    }
}

/// Argument of `EVTCHNOP_bind_vcpu` (C `struct evtchn_bind_vcpu`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnBindVcpu {
    /// Local port.
    pub port: u32,
    /// vCPU to notify from now on.
    pub vcpu: u32,
}

assert_layout!(EvtchnBindVcpu, size = 8, { port: 0, vcpu: 4 });

/// Argument of `EVTCHNOP_unmask` (C `struct evtchn_unmask`), 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnUnmask {
    /// Local port.
    pub port: u32,
}

assert_layout!(EvtchnUnmask, size = 4, { port: 0 });

/// Argument of `EVTCHNOP_reset` (C `struct evtchn_reset`), 2 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnReset {
    /// Domain whose ports are closed (`DOMID_SELF` unless privileged).
    pub dom: u16,
}

assert_layout!(EvtchnReset, size = 2, { dom: 0 });

/// Argument of `EVTCHNOP_init_control` (C `struct evtchn_init_control`), 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnInitControl {
    /// Frame holding the vCPU's FIFO control block.
    pub control_gfn: u64,
    /// Offset of the control block within the frame.
    pub offset: u32,
    /// vCPU the control block belongs to.
    pub vcpu: u32,
    /// OUT: number of link bits in event words.
    pub link_bits: u8,
    /// Padding.
    pub pad: [u8; 7],
}

assert_layout!(EvtchnInitControl, size = 24, {
    control_gfn: 0, offset: 8, vcpu: 12, link_bits: 16, pad: 17,
});

/// Argument of `EVTCHNOP_expand_array` (C `struct evtchn_expand_array`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnExpandArray {
    /// Frame to add to the event array.
    pub array_gfn: u64,
}

assert_layout!(EvtchnExpandArray, size = 8, { array_gfn: 0 });

/// Argument of `EVTCHNOP_set_priority` (C `struct evtchn_set_priority`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnSetPriority {
    /// Local port.
    pub port: u32,
    /// `EVTCHN_FIFO_PRIORITY_*` range value.
    pub priority: u32,
}

assert_layout!(EvtchnSetPriority, size = 8, { port: 0, priority: 4 });

/// Per-vCPU FIFO control block (C `struct evtchn_fifo_control_block`), 72 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct EvtchnFifoControlBlock {
    /// Bitmap of queues with work.
    pub ready: u32,
    /// Reserved.
    pub rsvd: u32,
    /// Head port of each priority queue.
    pub head: [u32; EVTCHN_FIFO_MAX_QUEUES],
}

assert_layout!(EvtchnFifoControlBlock, size = 72, { ready: 0, rsvd: 4, head: 8 });

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_union() {
        let mut s = EvtchnStatus::read_from_bytes(&{
            let mut raw = [0u8; 24];
            raw[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
            raw[4..8].copy_from_slice(&3u32.to_le_bytes());
            raw
        })
        .unwrap();
        assert_eq!(s.dom, 0x7ff0);
        assert_eq!(s.port, 3);
        s.set_interdomain(0, 0, 7);
        let b = s.as_bytes();
        assert_eq!(&b[8..12], &EVTCHNSTAT_INTERDOMAIN.to_le_bytes());
        assert_eq!(&b[16..18], &0u16.to_le_bytes());
        assert_eq!(&b[20..24], &7u32.to_le_bytes());
        assert_eq!(s.interdomain_port(), 7);
        s.set_virq(1, VIRQ_TIMER);
        assert_eq!(s.virq(), 0);
        assert_eq!(s.vcpu, 1);
        s.set_unbound(0, 5);
        assert_eq!(s.unbound_dom(), 5);
        assert_eq!(&s.as_bytes()[16..18], &5u16.to_le_bytes());
    }

    #[test]
    fn two_level_bits() {
        assert_eq!(evtchn_2l_word(67), 1);
        assert_eq!(evtchn_2l_bit(67), 1 << 3);
        assert_eq!(EVTCHN_2L_NR_CHANNELS as usize, 64 * 64);
        assert!(virq_is_per_vcpu(VIRQ_TIMER));
        assert!(!virq_is_per_vcpu(VIRQ_CONSOLE));
    }
}
