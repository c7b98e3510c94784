//! `vm_assist` commands and assist types (`public/xen.h`).

/// `vm_assist(VMASST_CMD_enable, type)`.
pub const VMASST_CMD_ENABLE: u32 = 0;
/// `vm_assist(VMASST_CMD_disable, type)`.
pub const VMASST_CMD_DISABLE: u32 = 1;

/// x86-32: emulate full 4 GiB segment limits. Accepted (no effect) for 64-bit PV.
pub const VMASST_TYPE_4GB_SEGMENTS: u32 = 0;
/// x86-32: raise #15 when the 4gb_segments assist is used.
pub const VMASST_TYPE_4GB_SEGMENTS_NOTIFY: u32 = 1;
/// Emulate guest-kernel writes to read-only mapped L1 page tables.
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u32 = 2;
/// x86 PAE: page directories may live above 4 GiB.
pub const VMASST_TYPE_PAE_EXTENDED_CR3: u32 = 3;
/// Virtual IOPL checks use architectural semantics (guest kernel counts as CPL 0).
pub const VMASST_TYPE_ARCHITECTURAL_IOPL: u32 = 4;
/// Set `XEN_RUNSTATE_UPDATE` in `state_entry_time` while rewriting runstate areas.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;
/// x86-64: keep the read-only M2P out of user-mode page tables.
pub const VMASST_TYPE_M2P_STRICT: u32 = 32;

/// Assists Xen accepts for a 32-bit PV guest (`PV32_VM_ASSIST_MASK`, Xen's
/// `asm/domain.h`): types 0-5.
pub const PV32_ALLOWED_VM_ASSISTS: u64 = (1 << VMASST_TYPE_4GB_SEGMENTS)
    | (1 << VMASST_TYPE_4GB_SEGMENTS_NOTIFY)
    | (1 << VMASST_TYPE_WRITABLE_PAGETABLES)
    | (1 << VMASST_TYPE_PAE_EXTENDED_CR3)
    | (1 << VMASST_TYPE_ARCHITECTURAL_IOPL)
    | (1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG);

/// Assists Xen accepts for a 64-bit PV guest (`PV64_VM_ASSIST_MASK`): the
/// 32-bit set (kept for compatibility even where meaningless) plus
/// `m2p_strict`. Enabling a type outside this mask fails with `-EINVAL`.
pub const PV64_ALLOWED_VM_ASSISTS: u64 = PV32_ALLOWED_VM_ASSISTS | (1 << VMASST_TYPE_M2P_STRICT);

/// Assists Xen accepts for an HVM guest (`HVM_VM_ASSIST_MASK`).
pub const HVM_ALLOWED_VM_ASSISTS: u64 = 1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG;

/// Whether a 64-bit PV guest may enable assist `ty`.
pub const fn pv64_allowed(ty: u32) -> bool {
    ty < 64 && PV64_ALLOWED_VM_ASSISTS & (1 << ty) != 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(PV64_ALLOWED_VM_ASSISTS, 0x1_0000_003F);
        assert!(pv64_allowed(VMASST_TYPE_WRITABLE_PAGETABLES));
        assert!(pv64_allowed(VMASST_TYPE_M2P_STRICT));
        assert!(!pv64_allowed(6));
        assert!(!pv64_allowed(64));
        assert!(!pv64_allowed(u32::MAX));
    }
}
