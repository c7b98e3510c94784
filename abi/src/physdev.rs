//! `physdev_op` sub-operations and their arguments (`public/physdev.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Obsolete unmask notification (unsupported since interface 0x00030202).
pub const PHYSDEVOP_IRQ_UNMASK_NOTIFY: u32 = 4;
/// Query an IRQ's status flags ([`PhysdevIrqStatusQuery`]).
pub const PHYSDEVOP_IRQ_STATUS_QUERY: u32 = 5;
/// Set the vCPU's virtual I/O privilege level ([`PhysdevSetIopl`]).
pub const PHYSDEVOP_SET_IOPL: u32 = 6;
/// Set the vCPU's I/O-port permission bitmap ([`PhysdevSetIobitmap`]).
pub const PHYSDEVOP_SET_IOBITMAP: u32 = 7;
/// Read an IO-APIC register ([`PhysdevApic`]); privileged.
pub const PHYSDEVOP_APIC_READ: u32 = 8;
/// Write an IO-APIC register ([`PhysdevApic`]); privileged.
pub const PHYSDEVOP_APIC_WRITE: u32 = 9;
/// Allocate an interrupt vector for an IRQ ([`PhysdevIrq`]); privileged.
pub const PHYSDEVOP_ALLOC_IRQ_VECTOR: u32 = 10;
/// Free an IRQ's vector ([`PhysdevIrq`]); privileged.
pub const PHYSDEVOP_FREE_IRQ_VECTOR: u32 = 11;
/// Signal end-of-interrupt for a PIRQ ([`PhysdevEoi`]).
pub const PHYSDEVOP_EOI: u32 = 12;
/// Map a GSI/MSI to a PIRQ ([`PhysdevMapPirq`]).
pub const PHYSDEVOP_MAP_PIRQ: u32 = 13;
/// Unmap a PIRQ ([`PhysdevUnmapPirq`]).
pub const PHYSDEVOP_UNMAP_PIRQ: u32 = 14;
/// Report a PCI device (bus/devfn) to Xen; dom0.
pub const PHYSDEVOP_MANAGE_PCI_ADD: u32 = 15;
/// Withdraw a PCI device; dom0.
pub const PHYSDEVOP_MANAGE_PCI_REMOVE: u32 = 16;
/// Register a PIRQ-EOI bitmap page, v1 semantics ([`PhysdevPirqEoiGmfn`]).
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V1: u32 = 17;
/// Restore MSI state of a device; dom0.
pub const PHYSDEVOP_RESTORE_MSI: u32 = 19;
/// Report a PCI device with extended info; dom0.
pub const PHYSDEVOP_MANAGE_PCI_ADD_EXT: u32 = 20;
/// Configure a GSI's trigger/polarity; dom0.
pub const PHYSDEVOP_SETUP_GSI: u32 = 21;
/// Allocate a free PIRQ number.
pub const PHYSDEVOP_GET_FREE_PIRQ: u32 = 23;
/// Report a reserved MMCFG region; dom0.
pub const PHYSDEVOP_PCI_MMCFG_RESERVED: u32 = 24;
/// Report a PCI device (segment aware); dom0.
pub const PHYSDEVOP_PCI_DEVICE_ADD: u32 = 25;
/// Withdraw a PCI device (segment aware); dom0.
pub const PHYSDEVOP_PCI_DEVICE_REMOVE: u32 = 26;
/// Restore MSI state (segment aware); dom0.
pub const PHYSDEVOP_RESTORE_MSI_EXT: u32 = 27;
/// Register a PIRQ-EOI bitmap page, v2 semantics ([`PhysdevPirqEoiGmfn`]).
pub const PHYSDEVOP_PIRQ_EOI_GMFN_V2: u32 = 28;
/// USB debug-port operations; dom0.
pub const PHYSDEVOP_DBGP_OP: u32 = 29;
/// Announce that MSI-X MMIO resources will not change; dom0.
pub const PHYSDEVOP_PREPARE_MSIX: u32 = 30;
/// Announce that MSI-X MMIO resources may change; dom0.
pub const PHYSDEVOP_RELEASE_MSIX: u32 = 31;

/// `PhysdevIrqStatusQuery.flags`: the IRQ needs `PHYSDEVOP_eoi`.
pub const XENIRQSTAT_NEEDS_EOI: u32 = 1 << 0;
/// `PhysdevIrqStatusQuery.flags`: the IRQ is shared between guests.
pub const XENIRQSTAT_SHARED: u32 = 1 << 1;

/// `PhysdevMapPirq.type_`: MSI.
pub const MAP_PIRQ_TYPE_MSI: i32 = 0;
/// `PhysdevMapPirq.type_`: GSI.
pub const MAP_PIRQ_TYPE_GSI: i32 = 1;
/// `PhysdevMapPirq.type_`: unknown.
pub const MAP_PIRQ_TYPE_UNKNOWN: i32 = 2;
/// `PhysdevMapPirq.type_`: MSI with PCI segment in `bus[31:16]`.
pub const MAP_PIRQ_TYPE_MSI_SEG: i32 = 3;
/// `PhysdevMapPirq.type_`: multi-vector MSI.
pub const MAP_PIRQ_TYPE_MULTI_MSI: i32 = 4;

/// Argument of `PHYSDEVOP_set_iopl` (C `struct physdev_set_iopl`), 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevSetIopl {
    /// New virtual IOPL (0-3).
    pub iopl: u32,
}

assert_layout!(PhysdevSetIopl, size = 4, { iopl: 0 });

/// Argument of `PHYSDEVOP_set_iobitmap` (C `struct physdev_set_iobitmap`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevSetIobitmap {
    /// Guest virtual address of the bitmap (bit set = port denied, as in a TSS).
    pub bitmap: u64,
    /// Number of ports the bitmap covers.
    pub nr_ports: u32,
    /// Padding (C tail padding).
    pub pad: u32,
}

assert_layout!(PhysdevSetIobitmap, size = 16, { bitmap: 0, nr_ports: 8, pad: 12 });

/// Argument of `PHYSDEVOP_eoi` (C `struct physdev_eoi`), 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevEoi {
    /// PIRQ.
    pub irq: u32,
}

assert_layout!(PhysdevEoi, size = 4, { irq: 0 });

/// Argument of `PHYSDEVOP_pirq_eoi_gmfn_v1/v2` (C `struct physdev_pirq_eoi_gmfn`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevPirqEoiGmfn {
    /// Frame of the bitmap page.
    pub gmfn: u64,
}

assert_layout!(PhysdevPirqEoiGmfn, size = 8, { gmfn: 0 });

/// Argument of `PHYSDEVOP_irq_status_query` (C `struct physdev_irq_status_query`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevIrqStatusQuery {
    /// IN: PIRQ.
    pub irq: u32,
    /// OUT: `XENIRQSTAT_*`.
    pub flags: u32,
}

assert_layout!(PhysdevIrqStatusQuery, size = 8, { irq: 0, flags: 4 });

/// Argument of `PHYSDEVOP_apic_read/write` (C `struct physdev_apic`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevApic {
    /// IO-APIC physical base.
    pub apic_physbase: u64,
    /// Register index.
    pub reg: u32,
    /// Value read or to write.
    pub value: u32,
}

assert_layout!(PhysdevApic, size = 16, { apic_physbase: 0, reg: 8, value: 12 });

/// Argument of `PHYSDEVOP_alloc/free_irq_vector` (C `struct physdev_irq`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevIrq {
    /// IRQ.
    pub irq: u32,
    /// Vector.
    pub vector: u32,
}

assert_layout!(PhysdevIrq, size = 8, { irq: 0, vector: 4 });

/// Argument of `PHYSDEVOP_map_pirq` (C `struct physdev_map_pirq`), 40 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevMapPirq {
    /// Target domain.
    pub domid: u16,
    /// Padding (C alignment hole).
    pub pad0: u16,
    /// `MAP_PIRQ_TYPE_*`.
    pub type_: i32,
    /// GSI or MSI index.
    pub index: i32,
    /// IN/OUT: PIRQ.
    pub pirq: i32,
    /// PCI bus (segment in bits 16-31 for the `_SEG`/multi types).
    pub bus: i32,
    /// PCI devfn.
    pub devfn: i32,
    /// MSI-X entry / vector count.
    pub entry_nr: i32,
    /// Padding (C alignment hole).
    pub pad1: u32,
    /// MSI-X table base.
    pub table_base: u64,
}

assert_layout!(PhysdevMapPirq, size = 40, {
    domid: 0, pad0: 2, type_: 4, index: 8, pirq: 12, bus: 16, devfn: 20,
    entry_nr: 24, pad1: 28, table_base: 32,
});

/// Argument of `PHYSDEVOP_unmap_pirq` (C `struct physdev_unmap_pirq`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct PhysdevUnmapPirq {
    /// Target domain.
    pub domid: u16,
    /// Padding (C alignment hole).
    pub pad: u16,
    /// PIRQ.
    pub pirq: i32,
}

assert_layout!(PhysdevUnmapPirq, size = 8, { domid: 0, pad: 2, pirq: 4 });

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn iobitmap_from_guest_bytes() {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&0xffff_c900_0000_0000u64.to_le_bytes());
        raw[8..12].copy_from_slice(&65536u32.to_le_bytes());
        let b = PhysdevSetIobitmap::read_from_bytes(&raw).unwrap();
        assert_eq!(b.bitmap, 0xffff_c900_0000_0000);
        assert_eq!(b.nr_ports, 65536);
        let iopl = PhysdevSetIopl::read_from_bytes(&1u32.to_le_bytes()).unwrap();
        assert_eq!(iopl.iopl, 1);
    }
}
