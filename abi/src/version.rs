//! `xen_version` sub-operations and their argument buffers (`public/version.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// No argument; returns `(major << 16) | minor`. Also used by guests as a
/// cheap "deliver pending events now" hypercall.
pub const XENVER_VERSION: u32 = 0;
/// Fill a `[u8; XEN_EXTRAVERSION_LEN]` with the extra version string (e.g. `".0"`).
pub const XENVER_EXTRAVERSION: u32 = 1;
/// Fill a [`XenCompileInfo`].
pub const XENVER_COMPILE_INFO: u32 = 2;
/// Fill a `[u8; XEN_CAPABILITIES_INFO_LEN]` with a space-separated list
/// such as `"xen-3.0-x86_64 xen-3.0-x86_32p"`.
pub const XENVER_CAPABILITIES: u32 = 3;
/// Fill a `[u8; XEN_CHANGESET_INFO_LEN]` with the source changeset.
pub const XENVER_CHANGESET: u32 = 4;
/// Fill a [`XenPlatformParameters`] (hypervisor virtual start).
pub const XENVER_PLATFORM_PARAMETERS: u32 = 5;
/// Read/write a [`XenFeatureInfo`]: return feature submap `submap_idx`.
pub const XENVER_GET_FEATURES: u32 = 6;
/// No argument; returns the page size.
pub const XENVER_PAGESIZE: u32 = 7;
/// Fill a 16-byte domain handle (the guest's UUID).
pub const XENVER_GUEST_HANDLE: u32 = 8;
/// Fill a `[u8; XEN_COMMANDLINE_LEN]` with Xen's command line.
pub const XENVER_COMMANDLINE: u32 = 9;
/// Variable-length build id ([`XenVarbuf`] header); returns bytes written.
pub const XENVER_BUILD_ID: u32 = 10;
/// Non-truncating [`XENVER_EXTRAVERSION`] ([`XenVarbuf`]).
pub const XENVER_EXTRAVERSION2: u32 = 11;
/// Non-truncating [`XENVER_CAPABILITIES`] ([`XenVarbuf`]).
pub const XENVER_CAPABILITIES2: u32 = 12;
/// Non-truncating [`XENVER_CHANGESET`] ([`XenVarbuf`]).
pub const XENVER_CHANGESET2: u32 = 13;
/// Non-truncating [`XENVER_COMMANDLINE`] ([`XenVarbuf`]).
pub const XENVER_COMMANDLINE2: u32 = 14;

/// Size of the `XENVER_extraversion` buffer (`xen_extraversion_t`).
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// Size of the `XENVER_capabilities` buffer (`xen_capabilities_info_t`).
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// Size of the `XENVER_changeset` buffer (`xen_changeset_info_t`).
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// Size of the `XENVER_commandline` buffer (`xen_commandline_t`).
pub const XEN_COMMANDLINE_LEN: usize = 1024;
/// Size of the `XENVER_guest_handle` buffer (`xen_domain_handle_t`).
pub const XEN_DOMAIN_HANDLE_LEN: usize = 16;

/// `XENVER_version` return value for Xen `major.minor`.
pub const fn version_value(major: u16, minor: u16) -> u64 {
    ((major as u64) << 16) | minor as u64
}

/// Argument of `XENVER_compile_info` (C `struct xen_compile_info`,
/// `public/version.h`), 144 bytes of NUL-padded strings.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenCompileInfo {
    /// Compiler identification.
    pub compiler: [u8; 64],
    /// User who built Xen.
    pub compile_by: [u8; 16],
    /// Build host domain.
    pub compile_domain: [u8; 32],
    /// Build date.
    pub compile_date: [u8; 32],
}

assert_layout!(XenCompileInfo, size = 144, {
    compiler: 0, compile_by: 64, compile_domain: 80, compile_date: 112,
});

impl_zeroed_default!(XenCompileInfo);

/// Argument of `XENVER_platform_parameters` (C `struct
/// xen_platform_parameters`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenPlatformParameters {
    /// Start of the hypervisor's virtual range (`HYPERVISOR_VIRT_START`).
    pub virt_start: u64,
}

assert_layout!(XenPlatformParameters, size = 8, { virt_start: 0 });

/// Argument of `XENVER_get_features` (C `struct xen_feature_info`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenFeatureInfo {
    /// IN: which 32-bit submap (only 0 exists).
    pub submap_idx: u32,
    /// OUT: bitmap of `XENFEAT_*` bits.
    pub submap: u32,
}

assert_layout!(XenFeatureInfo, size = 8, { submap_idx: 0, submap: 4 });

/// Header of the variable-length buffer used by `XENVER_build_id` and the
/// `*2` sub-ops (C `struct xen_varbuf`); `len` bytes of data follow it.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct XenVarbuf {
    /// IN: size of the buffer following this header.
    pub len: u32,
}

assert_layout!(XenVarbuf, size = 4, { len: 0 });

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn feature_info_round_trip() {
        let f = XenFeatureInfo {
            submap_idx: 0,
            submap: 0x2_0060,
        };
        let b = f.as_bytes();
        assert_eq!(b, &[0, 0, 0, 0, 0x60, 0, 2, 0]);
        assert_eq!(XenFeatureInfo::read_from_bytes(b).unwrap(), f);
        assert_eq!(version_value(4, 19), 0x4_0013);
    }
}
