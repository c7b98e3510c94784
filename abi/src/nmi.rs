//! `nmi_op` sub-operations and NMI reason bits (`public/nmi.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `arch_shared_info.nmi_reason` bit: I/O check error (port 0x61 bit 6).
pub const XEN_NMIREASON_IO_ERROR: u64 = 1 << 0;
/// `arch_shared_info.nmi_reason` bit: PCI SERR (port 0x61 bit 7).
pub const XEN_NMIREASON_PCI_SERR: u64 = 1 << 1;
/// `arch_shared_info.nmi_reason` bit: unknown hardware NMI.
pub const XEN_NMIREASON_UNKNOWN: u64 = 1 << 2;

/// Register an NMI handler ([`XennmiCallback`]).
pub const XENNMI_REGISTER_CALLBACK: u32 = 0;
/// Unregister the NMI handler.
pub const XENNMI_UNREGISTER_CALLBACK: u32 = 1;

/// Argument of `XENNMI_register_callback` (C `struct xennmi_callback`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XennmiCallback {
    /// Handler entry point.
    pub handler_address: u64,
    /// Unused.
    pub pad: u64,
}

assert_layout!(XennmiCallback, size = 16, { handler_address: 0, pad: 8 });
