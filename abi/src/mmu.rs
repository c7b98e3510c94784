//! `mmu_update`, `mmuext_op` and `update_va_mapping` definitions (`public/xen.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `mmu_update` request type in `ptr[1:0]`: checked write of a page-table
/// entry at machine address `ptr & !3`.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `ptr[1:0]`: set the M2P entry of the frame containing `ptr` to `val`.
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// `ptr[1:0]`: as `MMU_NORMAL_PT_UPDATE`, keeping the A/D bits currently set.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;
/// `ptr[1:0]`: as `MMU_NORMAL_PT_UPDATE` with `val` holding an MFN even for
/// translated guests.
pub const MMU_PT_UPDATE_NO_TRANSLATE: u64 = 3;
/// Mask of the request type in `MmuUpdate::ptr`.
pub const MMU_UPDATE_CMD_MASK: u64 = 3;

/// Flag in the `count` argument of `mmu_update` / `mmuext_op` marking a
/// preempted (continued) call; the rest of `count` is what remains.
/// Xen-internal (`MMU_UPDATE_PREEMPTED`).
pub const MMU_UPDATE_PREEMPTED: u32 = 1 << 31;

/// One request to `mmu_update` (C `struct mmu_update`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MmuUpdate {
    /// Machine address of the target, with the request type in bits 0-1.
    pub ptr: u64,
    /// New value.
    pub val: u64,
}

assert_layout!(MmuUpdate, size = 16, { ptr: 0, val: 8 });

impl MmuUpdate {
    /// The request type (`MMU_*`).
    pub const fn cmd(&self) -> u64 {
        self.ptr & MMU_UPDATE_CMD_MASK
    }

    /// The machine address with the type bits cleared.
    pub const fn maddr(&self) -> u64 {
        self.ptr & !MMU_UPDATE_CMD_MASK
    }
}

/// Pin an MFN as a validated L1 table.
pub const MMUEXT_PIN_L1_TABLE: u32 = 0;
/// Pin an MFN as a validated L2 table.
pub const MMUEXT_PIN_L2_TABLE: u32 = 1;
/// Pin an MFN as a validated L3 table.
pub const MMUEXT_PIN_L3_TABLE: u32 = 2;
/// Pin an MFN as a validated L4 table.
pub const MMUEXT_PIN_L4_TABLE: u32 = 3;
/// Drop the pin on a page-table MFN.
pub const MMUEXT_UNPIN_TABLE: u32 = 4;
/// Install a new kernel root page table (MFN).
pub const MMUEXT_NEW_BASEPTR: u32 = 5;
/// Flush the local TLB.
pub const MMUEXT_TLB_FLUSH_LOCAL: u32 = 6;
/// Invalidate one linear address locally.
pub const MMUEXT_INVLPG_LOCAL: u32 = 7;
/// Flush the TLBs of the vCPUs in a bitmap (`arg2` = bitmap address).
pub const MMUEXT_TLB_FLUSH_MULTI: u32 = 8;
/// Invalidate one linear address on the vCPUs in a bitmap.
pub const MMUEXT_INVLPG_MULTI: u32 = 9;
/// Flush the TLBs of all the domain's vCPUs.
pub const MMUEXT_TLB_FLUSH_ALL: u32 = 10;
/// Invalidate one linear address on all the domain's vCPUs.
pub const MMUEXT_INVLPG_ALL: u32 = 11;
/// Write back and invalidate caches (local CPU).
pub const MMUEXT_FLUSH_CACHE: u32 = 12;
/// Install an LDT (`arg1` = page-aligned linear base, `arg2` = entry count).
pub const MMUEXT_SET_LDT: u32 = 13;
/// Install a new user-mode root page table (MFN; 0 = none). x86-64 only.
pub const MMUEXT_NEW_USER_BASEPTR: u32 = 15;
/// Zero a page (MFN).
pub const MMUEXT_CLEAR_PAGE: u32 = 16;
/// Copy page `arg2` (source MFN) to page `arg1` (destination MFN).
pub const MMUEXT_COPY_PAGE: u32 = 17;
/// Write back and invalidate caches on all CPUs.
pub const MMUEXT_FLUSH_CACHE_GLOBAL: u32 = 18;
/// Mark a superpage head MFN (obsolete).
pub const MMUEXT_MARK_SUPER: u32 = 19;
/// Unmark a superpage head MFN (obsolete).
pub const MMUEXT_UNMARK_SUPER: u32 = 20;

/// One request to `mmuext_op` (C `struct mmuext_op`), 24 bytes.
///
/// `arg1` is an MFN (pin/unpin, base pointers, clear/copy page) or a linear
/// address (`INVLPG_*`, `SET_LDT`). `arg2` is an entry count (`SET_LDT`), a
/// guest virtual address of a vCPU bitmap (`*_MULTI`) or a source MFN (`COPY_PAGE`).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MmuextOp {
    /// `MMUEXT_*`.
    pub cmd: u32,
    /// Padding (C alignment hole).
    pub pad: u32,
    /// First argument union.
    pub arg1: u64,
    /// Second argument union.
    pub arg2: u64,
}

assert_layout!(MmuextOp, size = 24, { cmd: 0, pad: 4, arg1: 8, arg2: 16 });

/// `update_va_mapping` flags: no TLB flush.
pub const UVMF_NONE: u64 = 0;
/// Flush the entire TLB(s).
pub const UVMF_TLB_FLUSH: u64 = 1;
/// Flush only the one entry.
pub const UVMF_INVLPG: u64 = 2;
/// Mask of the flush-type bits.
pub const UVMF_FLUSHTYPE_MASK: u64 = 3;
/// Flush the vCPUs in a bitmap whose guest address is ORed into the flags
/// (bits 3 and up; the address must be 8-byte aligned).
pub const UVMF_MULTI: u64 = 0;
/// Flush the local vCPU only (`UVMF_MULTI` with a NULL bitmap).
pub const UVMF_LOCAL: u64 = 0;
/// Flush all of the domain's vCPUs.
pub const UVMF_ALL: u64 = 4;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn batches_from_guest_bytes() {
        let reqs = [
            MmuUpdate {
                ptr: 0x1234_5008 | MMU_PT_UPDATE_PRESERVE_AD,
                val: 0x8000_0000_0abc_d067,
            },
            MmuUpdate {
                ptr: 0x2000 | MMU_MACHPHYS_UPDATE,
                val: 7,
            },
        ];
        let b = reqs.as_bytes();
        let back = <[MmuUpdate]>::ref_from_bytes(b).unwrap();
        assert_eq!(back[0].cmd(), MMU_PT_UPDATE_PRESERVE_AD);
        assert_eq!(back[0].maddr(), 0x1234_5008);
        assert_eq!(back[1].cmd(), MMU_MACHPHYS_UPDATE);

        let op = MmuextOp {
            cmd: MMUEXT_PIN_L4_TABLE,
            pad: 0,
            arg1: 0x1234,
            arg2: 0,
        };
        assert_eq!(&op.as_bytes()[..4], &3u32.to_le_bytes());
        assert_eq!(&op.as_bytes()[8..16], &0x1234u64.to_le_bytes());
    }
}
