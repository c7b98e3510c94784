//! x86 architecture numbers the tests need: page-table bits, #PF error code, vectors.

/// Page-table entry: present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Page-table entry: writable.
pub const PTE_RW: u64 = 1 << 1;
/// Page-table entry: user-accessible.
pub const PTE_USER: u64 = 1 << 2;
/// Page-table entry: accessed (set by the CPU).
pub const PTE_ACCESSED: u64 = 1 << 5;
/// Page-table entry: dirty (set by the CPU).
pub const PTE_DIRTY: u64 = 1 << 6;
/// Page-table entry: the frame address bits (12-51).
pub const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// #PF error code: the page was present (protection fault).
pub const PFEC_PRESENT: u32 = 1 << 0;
/// #PF error code: the access was a write.
pub const PFEC_WRITE: u32 = 1 << 1;
/// #PF error code: the access came from user mode.
pub const PFEC_USER: u32 = 1 << 2;

/// Breakpoint (`int3`).
pub const VEC_BP: u8 = 3;
/// Overflow (`into`).
pub const VEC_OF: u8 = 4;
/// Invalid opcode.
pub const VEC_UD: u8 = 6;
/// General protection fault.
pub const VEC_GP: u8 = 13;
/// Page fault.
pub const VEC_PF: u8 = 14;
