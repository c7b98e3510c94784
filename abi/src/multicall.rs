//! Multicall batch entries (`struct multicall_entry`, `public/xen.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// One call in a `multicall` batch (C `struct multicall_entry`), 64 bytes.
///
/// The hypervisor executes the entries in order and stores each call's
/// return value in `result`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: u64,
    /// OUT: the call's return value.
    pub result: u64,
    /// Arguments 1-6.
    pub args: [u64; 6],
}

assert_layout!(MulticallEntry, size = 64, { op: 0, result: 8, args: 16 });

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip() {
        let e = MulticallEntry {
            op: crate::hypercall::UPDATE_VA_MAPPING,
            result: crate::Errno::EINVAL.as_rax(),
            args: [0xffff_8880_0000_0000, 0x1067, 2, 0, 0, 0],
        };
        let b = e.as_bytes();
        assert_eq!(&b[0..8], &14u64.to_le_bytes());
        assert_eq!(&b[24..32], &0x1067u64.to_le_bytes());
        assert_eq!(MulticallEntry::read_from_bytes(b).unwrap(), e);
    }
}
