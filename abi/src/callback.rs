//! `callback_op` sub-operations, callback types and flags (`public/callback.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Event (upcall) callback.
pub const CALLBACKTYPE_EVENT: u16 = 0;
/// Failsafe callback, entered when segment state cannot be restored.
pub const CALLBACKTYPE_FAILSAFE: u16 = 1;
/// x86-64: 64-bit user-mode `SYSCALL` entry.
pub const CALLBACKTYPE_SYSCALL: u16 = 2;
/// Old x86-32 `sysenter` type; not to be used.
pub const CALLBACKTYPE_SYSENTER_DEPRECATED: u16 = 3;
/// x86: NMI delivery.
pub const CALLBACKTYPE_NMI: u16 = 4;
/// x86: `SYSENTER` from (32-bit) user mode.
pub const CALLBACKTYPE_SYSENTER: u16 = 5;
/// x86-64: `SYSCALL` from 32-bit user mode.
pub const CALLBACKTYPE_SYSCALL32: u16 = 7;

/// Bit number of [`CALLBACKF_MASK_EVENTS`].
pub const CALLBACKF_MASK_EVENTS_BIT: u16 = 0;
/// Mask event delivery while entering the callback (ignored for the event
/// and NMI callbacks, which always mask).
pub const CALLBACKF_MASK_EVENTS: u16 = 1 << CALLBACKF_MASK_EVENTS_BIT;

/// Register a callback ([`CallbackRegister`]).
pub const CALLBACKOP_REGISTER: u32 = 0;
/// Unregister a callback ([`CallbackUnregister`]); not all types may be unregistered.
pub const CALLBACKOP_UNREGISTER: u32 = 1;

/// Argument of `CALLBACKOP_register` (C `struct callback_register`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CallbackRegister {
    /// `CALLBACKTYPE_*`.
    pub type_: u16,
    /// `CALLBACKF_*`.
    pub flags: u16,
    /// Padding (C alignment hole).
    pub pad: u32,
    /// Entry point (guest virtual address).
    pub address: u64,
}

assert_layout!(CallbackRegister, size = 16, { type_: 0, flags: 2, pad: 4, address: 8 });

impl CallbackRegister {
    /// Whether the callback was registered with `CALLBACKF_MASK_EVENTS`.
    pub const fn mask_events(&self) -> bool {
        self.flags & CALLBACKF_MASK_EVENTS != 0
    }
}

/// Argument of `CALLBACKOP_unregister` (C `struct callback_unregister`), 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CallbackUnregister {
    /// `CALLBACKTYPE_*`.
    pub type_: u16,
    /// Unused.
    pub unused: u16,
}

assert_layout!(CallbackUnregister, size = 4, { type_: 0, unused: 2 });

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn register_from_guest_bytes() {
        let mut raw = [0u8; 16];
        raw[0] = CALLBACKTYPE_SYSCALL as u8;
        raw[2] = 1;
        raw[8..].copy_from_slice(&0xffff_ffff_8100_2000u64.to_le_bytes());
        let c = CallbackRegister::read_from_bytes(&raw).unwrap();
        assert_eq!(c.type_, CALLBACKTYPE_SYSCALL);
        assert!(c.mask_events());
        assert_eq!(c.address, 0xffff_ffff_8100_2000);
        assert_eq!(c.as_bytes(), &raw);
    }
}
