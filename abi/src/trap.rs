//! Virtual IDT entries (`struct trap_info`) and the `HYPERVISOR_iret` frame.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `trap_info.flags` bits 0-1: the lowest privilege that may raise the vector
/// with `INT n`. On x86-64, DPL 0 means nobody, 1 or 2 the guest kernel, 3
/// everyone (kernel and user).
pub const TI_DPL_MASK: u8 = 3;
/// `trap_info.flags` bit 2: mask event delivery (set `evtchn_upcall_mask`)
/// when entering the handler, like an interrupt gate clearing IF.
pub const TI_MASK_EVENTS: u8 = 4;

/// DPL encoded in trap flags (`TI_GET_DPL`).
pub const fn ti_get_dpl(flags: u8) -> u8 {
    flags & TI_DPL_MASK
}

/// Mask-events bit of trap flags (`TI_GET_IF`), as a boolean.
pub const fn ti_get_if(flags: u8) -> bool {
    flags & TI_MASK_EVENTS != 0
}

/// One entry of the array passed to `set_trap_table`
/// (C `struct trap_info`, `public/arch-x86/xen.h`).
///
/// The array ends at the first entry whose `address` is 0.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TrapInfo {
    /// Exception / interrupt vector.
    pub vector: u8,
    /// `TI_DPL_MASK` and `TI_MASK_EVENTS` bits.
    pub flags: u8,
    /// Code selector of the handler (ignored for 64-bit guests).
    pub cs: u16,
    /// Padding (C alignment hole).
    pub pad: u32,
    /// Handler address; 0 terminates the table.
    pub address: u64,
}

assert_layout!(TrapInfo, size = 16, {
    vector: 0, flags: 1, cs: 2, pad: 4, address: 8,
});

impl TrapInfo {
    /// The DPL for software `INT n` (flags bits 0-1).
    pub const fn dpl(&self) -> u8 {
        ti_get_dpl(self.flags)
    }

    /// Replace the DPL.
    pub fn set_dpl(&mut self, dpl: u8) {
        self.flags = (self.flags & !TI_DPL_MASK) | (dpl & TI_DPL_MASK);
    }

    /// Whether entering the handler masks event delivery.
    pub const fn mask_events(&self) -> bool {
        ti_get_if(self.flags)
    }

    /// Set or clear the mask-events bit.
    pub fn set_mask_events(&mut self, mask: bool) {
        if mask {
            self.flags |= TI_MASK_EVENTS;
        } else {
            self.flags &= !TI_MASK_EVENTS;
        }
    }

    /// Whether this is the terminating entry of a `set_trap_table` array.
    pub const fn is_terminator(&self) -> bool {
        self.address == 0
    }
}

/// The frame `HYPERVISOR_iret` consumes from the guest kernel stack, lowest
/// address first (C `struct iret_context`, `public/arch-x86/xen-x86_64.h`).
///
/// `rsp` at the `SYSCALL` points at `rax`. The hypercall-page stub for
/// `iret` pushes `rcx`, `r11`, `rax` on top of the guest-built part
/// (`flags` .. `ss`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct IretContext {
    /// Value to return in `rax`.
    pub rax: u64,
    /// Value for `r11` (ignored with `VGCF_IN_SYSCALL`).
    pub r11: u64,
    /// Value for `rcx` (ignored with `VGCF_IN_SYSCALL`).
    pub rcx: u64,
    /// `VGCF_IN_SYSCALL` or 0.
    pub flags: u64,
    /// Return instruction pointer.
    pub rip: u64,
    /// Return code selector; RPL 3 means return to user mode.
    pub cs: u64,
    /// Return flags; IF becomes `!evtchn_upcall_mask`.
    pub rflags: u64,
    /// Return stack pointer.
    pub rsp: u64,
    /// Return stack selector.
    pub ss: u64,
}

assert_layout!(IretContext, size = 72, {
    rax: 0, r11: 8, rcx: 16, flags: 24, rip: 32, cs: 40, rflags: 48, rsp: 56, ss: 64,
});

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use zerocopy::FromBytes;

    #[test]
    fn trap_info_flags_and_bytes() {
        let mut t = TrapInfo {
            vector: 14,
            flags: 0,
            cs: 0xe033,
            pad: 0,
            address: 0xffff_ffff_8100_0000,
        };
        t.set_dpl(3);
        t.set_mask_events(true);
        assert_eq!(t.flags, 7);
        assert_eq!(t.dpl(), 3);
        assert!(t.mask_events());
        t.set_mask_events(false);
        assert!(!t.mask_events());
        let bytes = t.as_bytes();
        assert_eq!(bytes[0], 14);
        assert_eq!(&bytes[2..4], &[0x33, 0xe0]);
        let back = TrapInfo::read_from_bytes(bytes).unwrap();
        assert_eq!(back, t);
        assert!(!back.is_terminator());
        assert!(TrapInfo::default().is_terminator());
    }
}
