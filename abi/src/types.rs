//! Strongly typed identifiers: frame numbers, domain ids, ports, vCPU ids.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::layout::PAGE_SHIFT;

/// Domain ids at or above this value are reserved and never name a real domain.
pub const DOMID_FIRST_RESERVED: u16 = 0x7FF0;
/// "The calling domain" in any field that takes a domain id.
pub const DOMID_SELF: u16 = 0x7FF0;
/// Pseudo-domain owning I/O memory (restricts mappings to I/O pages).
pub const DOMID_IO: u16 = 0x7FF1;
/// Pseudo-domain owning Xen's own heap pages (e.g. the M2P table).
pub const DOMID_XEN: u16 = 0x7FF2;
/// Pseudo-domain owning shared (copy-on-write) pages.
pub const DOMID_COW: u16 = 0x7FF3;
/// Marks pages with an unknown owner.
pub const DOMID_INVALID: u16 = 0x7FF4;
/// "No particular domain": pick one / wildcard. Recent Xen only.
pub const DOMID_ANY: u16 = 0x7FF5;
/// The idle domain.
pub const DOMID_IDLE: u16 = 0x7FFF;

/// A machine frame number (host-physical page index). For PV guests this is
/// also what page-table entries, CR3 values and frame lists contain.
#[repr(transparent)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
pub struct Mfn(pub u64);

impl Mfn {
    /// The all-ones "no frame" value (`INVALID_MFN`, also the M2P/P2M hole marker).
    pub const INVALID: Mfn = Mfn(!0);

    /// Frame containing machine address `maddr`.
    pub const fn from_maddr(maddr: u64) -> Mfn {
        Mfn(maddr >> PAGE_SHIFT)
    }

    /// Machine address of the start of this frame.
    pub const fn maddr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
}

/// A pseudo-physical frame number: the guest's own contiguous page index,
/// translated to an [`Mfn`] through the guest's P2M list.
#[repr(transparent)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
pub struct Pfn(pub u64);

impl Pfn {
    /// The all-ones "no frame" value.
    pub const INVALID: Pfn = Pfn(!0);

    /// Frame containing pseudo-physical address `paddr`.
    pub const fn from_paddr(paddr: u64) -> Pfn {
        Pfn(paddr >> PAGE_SHIFT)
    }

    /// Pseudo-physical address of the start of this frame.
    pub const fn paddr(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
}

/// A domain id (`domid_t`).
#[repr(transparent)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
pub struct DomId(pub u16);

impl DomId {
    /// [`DOMID_FIRST_RESERVED`] as a `DomId`.
    pub const FIRST_RESERVED: DomId = DomId(DOMID_FIRST_RESERVED);
    /// [`DOMID_SELF`] as a `DomId`.
    pub const SELF: DomId = DomId(DOMID_SELF);
    /// [`DOMID_IO`] as a `DomId`.
    pub const IO: DomId = DomId(DOMID_IO);
    /// [`DOMID_XEN`] as a `DomId`.
    pub const XEN: DomId = DomId(DOMID_XEN);
    /// [`DOMID_COW`] as a `DomId`.
    pub const COW: DomId = DomId(DOMID_COW);
    /// [`DOMID_INVALID`] as a `DomId`.
    pub const INVALID: DomId = DomId(DOMID_INVALID);
    /// [`DOMID_ANY`] as a `DomId`.
    pub const ANY: DomId = DomId(DOMID_ANY);
    /// [`DOMID_IDLE`] as a `DomId`.
    pub const IDLE: DomId = DomId(DOMID_IDLE);

    /// Whether this is one of the reserved pseudo-domain ids.
    pub const fn is_reserved(self) -> bool {
        self.0 >= DOMID_FIRST_RESERVED
    }
}

impl From<u16> for DomId {
    fn from(v: u16) -> DomId {
        DomId(v)
    }
}

impl From<DomId> for u16 {
    fn from(v: DomId) -> u16 {
        v.0
    }
}

/// An event-channel port number (`evtchn_port_t`). Port 0 is never valid.
#[repr(transparent)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
pub struct EvtchnPort(pub u32);

impl From<u32> for EvtchnPort {
    fn from(v: u32) -> EvtchnPort {
        EvtchnPort(v)
    }
}

impl From<EvtchnPort> for u32 {
    fn from(v: EvtchnPort) -> u32 {
        v.0
    }
}

/// A virtual CPU index within a domain.
#[repr(transparent)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
pub struct VcpuId(pub u32);

impl From<u32> for VcpuId {
    fn from(v: u32) -> VcpuId {
        VcpuId(v)
    }
}

impl From<VcpuId> for u32 {
    fn from(v: VcpuId) -> u32 {
        v.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_domids() {
        assert_eq!(Mfn::from_maddr(0x1234_5678).0, 0x12345);
        assert_eq!(Mfn(0x12345).maddr(), 0x1234_5000);
        assert_eq!(Pfn(3).paddr(), 0x3000);
        assert!(DomId::SELF.is_reserved());
        assert!(!DomId(0).is_reserved());
        assert_eq!(DomId::SELF, DomId(0x7FF0));
        assert_eq!(u16::from(DomId::IDLE), 0x7FFF);
    }
}
