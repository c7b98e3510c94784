//! Grant-table entries, `grant_table_op` sub-operations and status codes
//! (`public/grant_table.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Map a grant ([`GnttabMapGrantRef`]).
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// Unmap a grant mapping ([`GnttabUnmapGrantRef`]).
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// Get the frames of the domain's grant table ([`GnttabSetupTable`]).
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// Dump the grant table to Xen's console (debug).
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
/// Transfer page ownership to another domain.
pub const GNTTABOP_TRANSFER: u32 = 4;
/// Hypervisor-mediated copy between grants/frames ([`GnttabCopy`]).
pub const GNTTABOP_COPY: u32 = 5;
/// Current and maximum table size ([`GnttabQuerySize`]).
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
/// Unmap and replace a mapping atomically.
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
/// Select grant-table format version 1 or 2 ([`GnttabSetVersion`]).
pub const GNTTABOP_SET_VERSION: u32 = 8;
/// Get the v2 status frames ([`GnttabGetStatusFrames`]).
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
/// Get the format version in use ([`GnttabGetVersion`]).
pub const GNTTABOP_GET_VERSION: u32 = 10;
/// Swap two grant entries.
pub const GNTTABOP_SWAP_GRANT_REF: u32 = 11;
/// Cache maintenance on granted memory (ARM).
pub const GNTTABOP_CACHE_FLUSH: u32 = 12;

/// Leading entries reserved for the toolstack.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// Reserved entry granting the console ring to the console backend.
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// Reserved entry granting the xenstore ring to xenstored.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

/// Entry type: grants nothing.
pub const GTF_INVALID: u16 = 0;
/// Entry type: allow `domid` to map/access `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// Entry type: allow `domid` to transfer a page to this domain.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// Entry type: transitive grant (v2 only).
pub const GTF_TRANSITIVE: u16 = 3;
/// Mask of the entry type.
pub const GTF_TYPE_MASK: u16 = 3;
/// Permit-access subflag: read-only access only.
pub const GTF_READONLY: u16 = 1 << 2;
/// Permit-access subflag (set by Xen): currently mapped for reading.
pub const GTF_READING: u16 = 1 << 3;
/// Permit-access subflag (set by Xen): currently mapped for writing.
pub const GTF_WRITING: u16 = 1 << 4;
/// Permit-access subflag: x86 PWT cache attribute.
pub const GTF_PWT: u16 = 1 << 5;
/// Permit-access subflag: x86 PCD cache attribute.
pub const GTF_PCD: u16 = 1 << 6;
/// Permit-access subflag: x86 PAT cache attribute.
pub const GTF_PAT: u16 = 1 << 7;
/// Permit-access subflag (v2): only a sub-range of the page is granted.
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// Accept-transfer subflag (set by Xen): transfer committed.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// Accept-transfer subflag (set by Xen): transfer complete, `frame` valid.
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

/// Map flag: map for device (I/O) access.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// Map flag: map for CPU access.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// Map flag: read-only mapping.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// Map flag: mapping usable by the current application too.
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// Map flag: `host_addr` is the machine address of a PTE to write.
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
/// Map flag: the map may fail without side effects.
pub const GNTMAP_CAN_FAIL: u32 = 1 << 5;
/// Map flags: bits copied into guest-available PTE bits (with
/// `XENFEAT_gnttab_map_avail_bits`).
pub const GNTMAP_GUEST_AVAIL_MASK: u32 = !0 << 16;

/// Copy flag: the source is a grant reference (else a GMFN).
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// Copy flag: the destination is a grant reference (else a GMFN).
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// Status: success.
pub const GNTST_OKAY: i16 = 0;
/// Status: unspecified error.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// Status: unknown domain.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// Status: bad grant reference.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// Status: bad mapping handle.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// Status: bad virtual address.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// Status: bad device address.
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
/// Status: no IOMMU space.
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
/// Status: permission denied.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// Status: bad page.
pub const GNTST_BAD_PAGE: i16 = -9;
/// Status: copy crosses a page boundary.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// Status: transfer address too large.
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
/// Status: try again.
pub const GNTST_EAGAIN: i16 = -12;
/// Status: out of space (handles etc.).
pub const GNTST_NO_SPACE: i16 = -13;

/// Version 1 grant entry (C `struct grant_entry_v1`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GrantEntryV1 {
    /// `GTF_*` type and flags.
    pub flags: u16,
    /// Domain being granted access.
    pub domid: u16,
    /// Frame being granted (or transferred into).
    pub frame: u32,
}

assert_layout!(GrantEntryV1, size = 8, { flags: 0, domid: 2, frame: 4 });

/// Number of v1 entries in one 4 KiB grant frame.
pub const GRANT_ENTRIES_V1_PER_FRAME: usize = 4096 / core::mem::size_of::<GrantEntryV1>();

/// Version 2 grant entry (C `union grant_entry_v2`), 16 bytes.
///
/// Header (`flags`, `domid`) is shared by all arms. Full-page grants use
/// `frame`; sub-page grants put `page_off`/`length` in `w0`/`w1`; transitive
/// grants put `trans_domid` in `w0` and the referenced grant in the low 32
/// bits of `frame`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GrantEntryV2 {
    /// `GTF_*` type and flags.
    pub flags: u16,
    /// Domain being granted access.
    pub domid: u16,
    /// `sub_page.page_off` / `transitive.trans_domid` / padding.
    pub w0: u16,
    /// `sub_page.length` / padding.
    pub w1: u16,
    /// `full_page.frame` / `sub_page.frame` / `transitive.gref` (low 32 bits).
    pub frame: u64,
}

assert_layout!(GrantEntryV2, size = 16, { flags: 0, domid: 2, w0: 4, w1: 6, frame: 8 });

/// Argument of `GNTTABOP_map_grant_ref` (C `struct gnttab_map_grant_ref`), 32 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabMapGrantRef {
    /// Virtual address, or PTE machine address with `GNTMAP_contains_pte`.
    pub host_addr: u64,
    /// `GNTMAP_*`.
    pub flags: u32,
    /// Grant reference in `dom`'s table.
    pub r#ref: u32,
    /// Granting domain.
    pub dom: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: handle for unmapping.
    pub handle: u32,
    /// OUT: bus address for device mappings.
    pub dev_bus_addr: u64,
}

assert_layout!(GnttabMapGrantRef, size = 32, {
    host_addr: 0, flags: 8, r#ref: 12, dom: 16, status: 18, handle: 20, dev_bus_addr: 24,
});

/// Argument of `GNTTABOP_unmap_grant_ref` (C `struct gnttab_unmap_grant_ref`), 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabUnmapGrantRef {
    /// Host mapping to remove (0: none).
    pub host_addr: u64,
    /// Device mapping to remove (0: none).
    pub dev_bus_addr: u64,
    /// Handle from the map operation.
    pub handle: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding (C tail padding).
    pub pad: u16,
}

assert_layout!(GnttabUnmapGrantRef, size = 24, {
    host_addr: 0, dev_bus_addr: 8, handle: 16, status: 20, pad: 22,
});

/// Argument of `GNTTABOP_setup_table` (C `struct gnttab_setup_table`), 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabSetupTable {
    /// Domain (`DOMID_SELF` unless privileged).
    pub dom: u16,
    /// Padding (C alignment hole).
    pub pad0: u16,
    /// Number of frames wanted (the table grows to at least this size).
    pub nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding (C alignment hole).
    pub pad1: [u8; 6],
    /// Guest virtual address of a `xen_pfn_t[nr_frames]` array receiving the frames.
    pub frame_list: u64,
}

assert_layout!(GnttabSetupTable, size = 24, {
    dom: 0, pad0: 2, nr_frames: 4, status: 8, pad1: 10, frame_list: 16,
});

/// Argument of `GNTTABOP_copy` source/destination (C `struct gnttab_copy_ptr`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCopyPtr {
    /// Grant reference (low 32 bits) or GMFN, per `GNTCOPY_*` flags.
    pub u: u64,
    /// Owning domain.
    pub domid: u16,
    /// Byte offset within the page.
    pub offset: u16,
    /// Padding (C tail padding).
    pub pad: u32,
}

assert_layout!(GnttabCopyPtr, size = 16, { u: 0, domid: 8, offset: 10, pad: 12 });

/// Argument of `GNTTABOP_copy` (C `struct gnttab_copy`), 40 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabCopy {
    /// Source.
    pub source: GnttabCopyPtr,
    /// Destination.
    pub dest: GnttabCopyPtr,
    /// Bytes to copy.
    pub len: u16,
    /// `GNTCOPY_*`.
    pub flags: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding (C tail padding).
    pub pad: u16,
}

assert_layout!(GnttabCopy, size = 40, {
    source: 0, dest: 16, len: 32, flags: 34, status: 36, pad: 38,
});

/// Argument of `GNTTABOP_query_size` (C `struct gnttab_query_size`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabQuerySize {
    /// Domain (`DOMID_SELF` unless privileged).
    pub dom: u16,
    /// Padding (C alignment hole).
    pub pad0: u16,
    /// OUT: current number of frames.
    pub nr_frames: u32,
    /// OUT: maximum number of frames.
    pub max_nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding (C tail padding).
    pub pad1: u16,
}

assert_layout!(GnttabQuerySize, size = 16, {
    dom: 0, pad0: 2, nr_frames: 4, max_nr_frames: 8, status: 12, pad1: 14,
});

/// Argument of `GNTTABOP_set_version` (C `struct gnttab_set_version`), 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabSetVersion {
    /// IN: requested version (1 or 2); OUT: version in effect.
    pub version: u32,
}

assert_layout!(GnttabSetVersion, size = 4, { version: 0 });

/// Argument of `GNTTABOP_get_version` (C `struct gnttab_get_version`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabGetVersion {
    /// Domain.
    pub dom: u16,
    /// Padding.
    pub pad: u16,
    /// OUT: version in effect.
    pub version: u32,
}

assert_layout!(GnttabGetVersion, size = 8, { dom: 0, pad: 2, version: 4 });

/// Argument of `GNTTABOP_get_status_frames` (C `struct gnttab_get_status_frames`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GnttabGetStatusFrames {
    /// Number of entries in `frame_list`.
    pub nr_frames: u32,
    /// Domain.
    pub dom: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Guest virtual address of a `uint64_t[nr_frames]` array.
    pub frame_list: u64,
}

assert_layout!(GnttabGetStatusFrames, size = 16, {
    nr_frames: 0, dom: 4, status: 6, frame_list: 8,
});

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn setup_table_from_guest_bytes() {
        let mut raw = [0u8; 24];
        raw[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
        raw[4..8].copy_from_slice(&1u32.to_le_bytes());
        raw[16..24].copy_from_slice(&0x10_2000u64.to_le_bytes());
        let mut s = GnttabSetupTable::read_from_bytes(&raw).unwrap();
        assert_eq!(s.dom, crate::types::DOMID_SELF);
        assert_eq!(s.nr_frames, 1);
        assert_eq!(s.frame_list, 0x10_2000);
        s.status = GNTST_GENERAL_ERROR;
        assert_eq!(&s.as_bytes()[8..10], &(-1i16).to_le_bytes());
    }

    #[test]
    fn grant_entries() {
        let e = GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS | GTF_READONLY,
            domid: 0,
            frame: 0x1234,
        };
        assert_eq!(e.as_bytes(), &[5, 0, 0, 0, 0x34, 0x12, 0, 0]);
        assert_eq!(GRANT_ENTRIES_V1_PER_FRAME, 512);
        assert_eq!(e.flags & GTF_TYPE_MASK, GTF_PERMIT_ACCESS);
    }
}
