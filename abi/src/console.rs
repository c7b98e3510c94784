//! `console_io` commands (`public/xen.h`) and the PV console ring (`public/io/console.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `console_io(CONSOLEIO_write, count, buf)`: write `count` bytes to Xen's console.
pub const CONSOLEIO_WRITE: u32 = 0;
/// `console_io(CONSOLEIO_read, count, buf)`: read from Xen's console (privileged).
pub const CONSOLEIO_READ: u32 = 1;

/// Size of the backend→guest ring (`in`).
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of the guest→backend ring (`out`).
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `connection`: the backend is servicing the ring.
pub const XENCONSOLE_CONNECTED: u8 = 0;
/// `connection`: no backend is servicing the ring yet.
pub const XENCONSOLE_DISCONNECTED: u8 = 1;

/// The PV console ring page (C `struct xencons_interface`,
/// `public/io/console.h`), 0xC14 bytes at the start of the page.
///
/// Indices are free-running `u32`s; a byte's slot is `idx & (size - 1)`.
/// The producer writes data, issues a write barrier, then advances `*_prod`;
/// the consumer reads data, issues a barrier, then advances `*_cons`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenconsInterface {
    /// Input ring (backend produces, guest consumes).
    pub r#in: [u8; XENCONS_IN_SIZE],
    /// Output ring (guest produces, backend consumes).
    pub out: [u8; XENCONS_OUT_SIZE],
    /// Input consumer index (guest).
    pub in_cons: u32,
    /// Input producer index (backend).
    pub in_prod: u32,
    /// Output consumer index (backend).
    pub out_cons: u32,
    /// Output producer index (guest).
    pub out_prod: u32,
    /// `XENCONSOLE_CONNECTED` or `XENCONSOLE_DISCONNECTED` (written by the backend).
    pub connection: u8,
    /// Padding (C tail padding).
    pub pad: [u8; 3],
}

assert_layout!(XenconsInterface, size = 0xC14, {
    r#in: 0x000,
    out: 0x400,
    in_cons: 0xC00,
    in_prod: 0xC04,
    out_cons: 0xC08,
    out_prod: 0xC0C,
    connection: 0xC10,
    pad: 0xC11,
});

impl_zeroed_default!(XenconsInterface);

impl XenconsInterface {
    /// Byte offset of `in_cons` within the page.
    pub const IN_CONS_OFFSET: usize = 0xC00;
    /// Byte offset of `in_prod` within the page.
    pub const IN_PROD_OFFSET: usize = 0xC04;
    /// Byte offset of `out_cons` within the page.
    pub const OUT_CONS_OFFSET: usize = 0xC08;
    /// Byte offset of `out_prod` within the page.
    pub const OUT_PROD_OFFSET: usize = 0xC0C;

    /// Ring slot of a free-running index into `in`.
    pub const fn in_slot(idx: u32) -> usize {
        idx as usize & (XENCONS_IN_SIZE - 1)
    }

    /// Ring slot of a free-running index into `out`.
    pub const fn out_slot(idx: u32) -> usize {
        idx as usize & (XENCONS_OUT_SIZE - 1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ring_layout() {
        let mut r = XenconsInterface::default();
        r.out[..5].copy_from_slice(b"hello");
        r.out_prod = 5;
        r.connection = XENCONSOLE_DISCONNECTED;
        let b = r.as_bytes();
        assert_eq!(&b[0x400..0x405], b"hello");
        assert_eq!(
            &b[XenconsInterface::OUT_PROD_OFFSET..][..4],
            &5u32.to_le_bytes()
        );
        assert_eq!(b[0xC10], 1);
        assert_eq!(XenconsInterface::out_slot(2048 + 3), 3);
        assert_eq!(XenconsInterface::in_slot(1024), 0);
        assert_eq!(XenconsInterface::read_from_bytes(b).unwrap(), r);
    }
}
