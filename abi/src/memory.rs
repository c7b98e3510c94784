//! `memory_op` sub-operations and their arguments (`public/memory.h`), E820 entries.
//!
//! For the batched reservation operations the `cmd` argument carries a
//! continuation start extent in bits `MEMOP_EXTENT_SHIFT..`; the sub-op is
//! `cmd & MEMOP_CMD_MASK`.

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Allocate extents to the domain ([`XenMemoryReservation`]); returns the
/// number of extents done. OUT: MFNs of the new extents.
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// Release extents given by GMFN ([`XenMemoryReservation`]).
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// No argument; returns the highest machine frame number of RAM.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// Argument: `domid_t`; returns the domain's current page count.
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// Argument: `domid_t`; returns the domain's maximum page count.
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// List the 2 MiB extents making up the M2P table ([`XenMachphysMfnList`]).
pub const XENMEM_MACHPHYS_MFN_LIST: u32 = 5;
/// Populate GPFNs with fresh memory ([`XenMemoryReservation`]).
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// Map a special page at a GPFN ([`XenAddToPhysmap`]); translated guests.
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// Return the guest's pseudo-physical E820 map ([`XenMemoryMap`] of [`E820Entry`]).
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// Return the host E820 map ([`XenMemoryMap`]); privileged.
pub const XENMEM_MACHINE_MEMORY_MAP: u32 = 10;
/// Atomically exchange extents for new ones ([`XenMemoryExchange`]).
pub const XENMEM_EXCHANGE: u32 = 11;
/// Where the M2P is mapped in guest virtual space ([`XenMachphysMapping`]).
pub const XENMEM_MACHPHYS_MAPPING: u32 = 12;
/// Set another domain's E820 map ([`XenForeignMemoryMap`]); toolstack.
pub const XENMEM_SET_MEMORY_MAP: u32 = 13;
/// Argument: `domid_t`; returns the highest GPFN in use.
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// Unmap the page at a GPFN ([`XenRemoveFromPhysmap`]); translated guests.
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;
/// Set the populate-on-demand target; toolstack.
pub const XENMEM_SET_POD_TARGET: u32 = 16;
/// Get the populate-on-demand target; toolstack.
pub const XENMEM_GET_POD_TARGET: u32 = 17;
/// Pages freed by memory sharing; toolstack.
pub const XENMEM_GET_SHARING_FREED_PAGES: u32 = 18;
/// Pages shared by memory sharing; toolstack.
pub const XENMEM_GET_SHARING_SHARED_PAGES: u32 = 19;
/// Memory paging operations; toolstack.
pub const XENMEM_PAGING_OP: u32 = 20;
/// Memory access (vm_event) operations; toolstack.
pub const XENMEM_ACCESS_OP: u32 = 21;
/// Memory sharing operations; toolstack.
pub const XENMEM_SHARING_OP: u32 = 22;
/// Batched [`XENMEM_ADD_TO_PHYSMAP`] ([`XenAddToPhysmapBatch`]).
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u32 = 23;
/// Stake a claim on free pages; toolstack.
pub const XENMEM_CLAIM_PAGES: u32 = 24;
/// As [`XENMEM_MACHPHYS_MFN_LIST`] for the compat (32-bit) M2P.
pub const XENMEM_MACHPHYS_COMPAT_MFN_LIST: u32 = 25;
/// vNUMA topology ([`XenVnumaTopologyInfo`]).
pub const XENMEM_GET_VNUMAINFO: u32 = 26;
/// Reserved device memory regions; toolstack.
pub const XENMEM_RESERVED_DEVICE_MEMORY_MAP: u32 = 27;
/// Map a hypervisor resource (ioreq pages, grant frames, vmtrace buffers).
pub const XENMEM_ACQUIRE_RESOURCE: u32 = 28;

/// Bit position of the continuation start extent in `memory_op`'s `cmd`
/// (Xen-internal `MEMOP_EXTENT_SHIFT`).
pub const MEMOP_EXTENT_SHIFT: u32 = 6;
/// Mask of the sub-op number in `memory_op`'s `cmd`.
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;

/// `mem_flags`: address-width restriction in bits 0-7 (0: none).
pub const fn xenmemf_address_bits(bits: u32) -> u32 {
    bits
}
/// Address-width restriction encoded in `mem_flags`.
pub const fn xenmemf_get_address_bits(flags: u32) -> u32 {
    flags & 0xff
}
/// `mem_flags`: allocate from NUMA node `node` (bits 8-15 hold `node + 1`).
pub const fn xenmemf_node(node: u32) -> u32 {
    (node + 1) << 8
}
/// NUMA node encoded in `mem_flags` (0xff when none was given).
pub const fn xenmemf_get_node(flags: u32) -> u32 {
    ((flags >> 8).wrapping_sub(1)) & 0xff
}
/// `mem_flags`: populate with populate-on-demand entries.
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
/// `mem_flags`: allocate only from the given node.
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
/// `mem_flags`: the node is a virtual (vNUMA) node.
pub const XENMEMF_VNODE: u32 = 1 << 18;

/// Argument of the reservation sub-ops (C `struct xen_memory_reservation`), 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryReservation {
    /// Guest virtual address of a `xen_pfn_t[nr_extents]` array (may be 0
    /// for increase_reservation when the caller does not want the MFNs).
    pub extent_start: u64,
    /// Number of extents.
    pub nr_extents: u64,
    /// Each extent is `2^extent_order` pages.
    pub extent_order: u32,
    /// `XENMEMF_*` flags.
    pub mem_flags: u32,
    /// Target domain (`DOMID_SELF` for unprivileged callers).
    pub domid: u16,
    /// Padding (C tail padding).
    pub pad: [u8; 6],
}

assert_layout!(XenMemoryReservation, size = 32, {
    extent_start: 0, nr_extents: 8, extent_order: 16, mem_flags: 20, domid: 24, pad: 26,
});

/// Argument of `XENMEM_exchange` (C `struct xen_memory_exchange`), 72 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryExchange {
    /// Extents to give up (GMFN bases).
    pub r#in: XenMemoryReservation,
    /// Replacement extents: IN GPFN bases, OUT new GMFN bases.
    pub out: XenMemoryReservation,
    /// OUT: input extents exchanged so far (caller must pass 0).
    pub nr_exchanged: u64,
}

assert_layout!(XenMemoryExchange, size = 72, { r#in: 0, out: 32, nr_exchanged: 64 });

/// Argument of `XENMEM_machphys_mfn_list` (C `struct xen_machphys_mfn_list`), 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMachphysMfnList {
    /// Capacity of the `extent_start` array.
    pub max_extents: u32,
    /// Padding (C alignment hole).
    pub pad0: u32,
    /// Guest virtual address of a `xen_pfn_t[max_extents]` array.
    pub extent_start: u64,
    /// OUT: entries written.
    pub nr_extents: u32,
    /// Padding (C tail padding).
    pub pad1: u32,
}

assert_layout!(XenMachphysMfnList, size = 24, {
    max_extents: 0, pad0: 4, extent_start: 8, nr_extents: 16, pad1: 20,
});

/// Argument of `XENMEM_machphys_mapping` (C `struct xen_machphys_mapping`), 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMachphysMapping {
    /// Start of the M2P's virtual mapping.
    pub v_start: u64,
    /// End (exclusive) of the M2P's virtual mapping.
    pub v_end: u64,
    /// Highest MFN that can be looked up.
    pub max_mfn: u64,
}

assert_layout!(XenMachphysMapping, size = 24, { v_start: 0, v_end: 8, max_mfn: 16 });

/// `XenAddToPhysmap.space`: the shared-info page.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XenAddToPhysmap.space`: a grant-table frame (`idx`, optionally
/// `| XENMAPIDX_GRANT_TABLE_STATUS`).
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// `XenAddToPhysmap.space`: move an existing GMFN.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// `XenAddToPhysmap.space`: a range of GMFNs (`size` pages).
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// `XenAddToPhysmap.space`: a GMFN of another domain (batch op only).
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// `XenAddToPhysmap.space`: device MMIO (ARM only).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// Grant-table `idx` flag selecting a status frame instead of a shared frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// Argument of `XENMEM_add_to_physmap` (C `struct xen_add_to_physmap`), 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenAddToPhysmap {
    /// Domain whose physmap changes.
    pub domid: u16,
    /// Page count for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space.
    pub idx: u64,
    /// GPFN at which the page should appear.
    pub gpfn: u64,
}

assert_layout!(XenAddToPhysmap, size = 24, { domid: 0, size: 2, space: 4, idx: 8, gpfn: 16 });

/// Argument of `XENMEM_add_to_physmap_batch` (C `struct
/// xen_add_to_physmap_batch`), 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenAddToPhysmapBatch {
    /// Domain whose physmap changes.
    pub domid: u16,
    /// `XENMAPSPACE_*`.
    pub space: u16,
    /// Number of entries.
    pub size: u16,
    /// Source domain for `XENMAPSPACE_gmfn_foreign`, else 0.
    pub foreign_domid: u16,
    /// Guest virtual address of `xen_ulong_t idxs[size]`.
    pub idxs: u64,
    /// Guest virtual address of `xen_pfn_t gpfns[size]`.
    pub gpfns: u64,
    /// Guest virtual address of `int errs[size]` (OUT).
    pub errs: u64,
}

assert_layout!(XenAddToPhysmapBatch, size = 32, {
    domid: 0, space: 2, size: 4, foreign_domid: 6, idxs: 8, gpfns: 16, errs: 24,
});

/// Argument of `XENMEM_remove_from_physmap` (C `struct xen_remove_from_physmap`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenRemoveFromPhysmap {
    /// Domain whose physmap changes.
    pub domid: u16,
    /// Padding (C alignment hole).
    pub pad: [u8; 6],
    /// GPFN to unmap.
    pub gpfn: u64,
}

assert_layout!(XenRemoveFromPhysmap, size = 16, { domid: 0, pad: 2, gpfn: 8 });

/// Argument of `XENMEM_memory_map` / `XENMEM_machine_memory_map`
/// (C `struct xen_memory_map`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenMemoryMap {
    /// IN: capacity of `buffer` in entries; OUT: entries written.
    pub nr_entries: u32,
    /// Padding (C alignment hole).
    pub pad: u32,
    /// Guest virtual address of an [`E820Entry`] array.
    pub buffer: u64,
}

assert_layout!(XenMemoryMap, size = 16, { nr_entries: 0, pad: 4, buffer: 8 });

/// Argument of `XENMEM_set_memory_map` (C `struct xen_foreign_memory_map`), 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenForeignMemoryMap {
    /// Target domain.
    pub domid: u16,
    /// Padding (C alignment hole).
    pub pad: [u8; 6],
    /// The map.
    pub map: XenMemoryMap,
}

assert_layout!(XenForeignMemoryMap, size = 24, { domid: 0, pad: 2, map: 8 });

/// E820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 type: reserved.
pub const E820_RESERVED: u32 = 2;
/// E820 type: ACPI reclaimable.
pub const E820_ACPI: u32 = 3;
/// E820 type: ACPI NVS.
pub const E820_NVS: u32 = 4;
/// E820 type: unusable.
pub const E820_UNUSABLE: u32 = 5;

/// One BIOS E820 map entry as `XENMEM_memory_map` returns it (C `struct
/// e820entry`, packed, `public/hvm/e820.h`): 20 bytes, no alignment.
#[repr(C)]
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
    Unaligned,
)]
pub struct E820Entry {
    /// Start address.
    pub addr: U64,
    /// Length in bytes.
    pub size: U64,
    /// `E820_*` type.
    pub type_: U32,
}

assert_layout!(E820Entry, size = 20, { addr: 0, size: 8, type_: 16 });

impl E820Entry {
    /// An entry covering `[addr, addr + size)` of type `ty`.
    pub fn new(addr: u64, size: u64, ty: u32) -> E820Entry {
        E820Entry {
            addr: U64::new(addr),
            size: U64::new(size),
            type_: U32::new(ty),
        }
    }

    /// Start address.
    pub fn addr(&self) -> u64 {
        self.addr.get()
    }

    /// Length in bytes.
    pub fn size(&self) -> u64 {
        self.size.get()
    }

    /// `E820_*` type.
    pub fn ty(&self) -> u32 {
        self.type_.get()
    }
}

/// A vNUMA memory range (C `struct xen_vmemrange`), 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenVmemrange {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Flags (none defined).
    pub flags: u32,
    /// vNUMA node id.
    pub nid: u32,
}

assert_layout!(XenVmemrange, size = 24, { start: 0, end: 8, flags: 16, nid: 20 });

/// Argument of `XENMEM_get_vnumainfo` (C `struct xen_vnuma_topology_info`), 40 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenVnumaTopologyInfo {
    /// Domain queried.
    pub domid: u16,
    /// Padding.
    pub pad: u16,
    /// IN/OUT: number of vNUMA nodes.
    pub nr_vnodes: u32,
    /// IN/OUT: number of vCPUs.
    pub nr_vcpus: u32,
    /// IN/OUT: number of memory ranges.
    pub nr_vmemranges: u32,
    /// Guest address of `unsigned int vdistance[nr_vnodes * nr_vnodes]`.
    pub vdistance: u64,
    /// Guest address of `unsigned int vcpu_to_vnode[nr_vcpus]`.
    pub vcpu_to_vnode: u64,
    /// Guest address of `XenVmemrange[nr_vmemranges]`.
    pub vmemrange: u64,
}

assert_layout!(XenVnumaTopologyInfo, size = 40, {
    domid: 0, pad: 2, nr_vnodes: 4, nr_vcpus: 8, nr_vmemranges: 12,
    vdistance: 16, vcpu_to_vnode: 24, vmemrange: 32,
});

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn e820_is_packed() {
        let entries = [
            E820Entry::new(0, 0xa_0000, E820_RAM),
            E820Entry::new(0x10_0000, 0x3ff0_0000, E820_RAM),
        ];
        let b = entries.as_bytes();
        assert_eq!(b.len(), 40);
        assert_eq!(&b[20..28], &0x10_0000u64.to_le_bytes());
        assert_eq!(&b[36..40], &1u32.to_le_bytes());
        let back = <[E820Entry]>::ref_from_bytes(b).unwrap();
        assert_eq!(back[1].size(), 0x3ff0_0000);
        assert_eq!(back[1].ty(), E820_RAM);
        assert_eq!(back[0].addr(), 0);
    }

    #[test]
    fn reservation_and_flags() {
        let r = XenMemoryReservation {
            extent_start: 0xffff_8880_0000_0000,
            nr_extents: 3,
            extent_order: 9,
            mem_flags: xenmemf_address_bits(32) | xenmemf_node(1),
            domid: crate::types::DOMID_SELF,
            pad: [0; 6],
        };
        let b = r.as_bytes();
        assert_eq!(&b[24..26], &0x7ff0u16.to_le_bytes());
        let back = XenMemoryReservation::read_from_bytes(b).unwrap();
        assert_eq!(back, r);
        assert_eq!(xenmemf_get_address_bits(back.mem_flags), 32);
        assert_eq!(xenmemf_get_node(back.mem_flags), 1);
        assert_eq!(xenmemf_get_node(0), 0xff);
        assert_eq!((5 << MEMOP_EXTENT_SHIFT | 6) & MEMOP_CMD_MASK, 6);
    }
}
