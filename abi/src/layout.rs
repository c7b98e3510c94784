//! x86-64 PV address-space layout, flat selectors, GDT reservation, PAT, VGCF flags.
//!
//! Sources: `public/arch-x86/xen-x86_64.h`, `public/arch-x86/xen.h`, plus a few
//! values that are Xen-internal conventions a compatible hypervisor must
//! reproduce (marked as such).

pub use crate::trap::{ti_get_dpl, ti_get_if, TI_DPL_MASK, TI_MASK_EVENTS};

/// log2 of the (only) page size exposed to PV guests.
pub const PAGE_SHIFT: u64 = 12;
/// Page size in bytes.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Mask selecting the page-aligned part of an address.
pub const PAGE_MASK: u64 = !(PAGE_SIZE - 1);

/// Start of the virtual range reserved for the hypervisor in every 64-bit
/// PV address space (L4 slots 256..=271).
pub const HYPERVISOR_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End (exclusive) of the hypervisor-reserved virtual range.
pub const HYPERVISOR_VIRT_END: u64 = 0xFFFF_8800_0000_0000;
/// Start of the read-only machine-to-phys table (`unsigned long[]` indexed by MFN).
pub const MACH2PHYS_VIRT_START: u64 = 0xFFFF_8000_0000_0000;
/// End (exclusive) of the machine-to-phys table window (256 GiB).
pub const MACH2PHYS_VIRT_END: u64 = 0xFFFF_8040_0000_0000;
/// Number of 8-byte entries the M2P window can hold.
pub const MACH2PHYS_NR_ENTRIES: u64 = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3;

/// First L4 slot owned by the hypervisor (`HYPERVISOR_VIRT_START >> 39 & 511`).
/// Xen-internal (`ROOT_PAGETABLE_FIRST_XEN_SLOT`).
pub const FIRST_HYPERVISOR_L4_SLOT: usize = 256;
/// Last L4 slot owned by the hypervisor (inclusive).
/// Xen-internal (`ROOT_PAGETABLE_LAST_XEN_SLOT`).
pub const LAST_HYPERVISOR_L4_SLOT: usize = 271;
/// L4 slot holding the read-only M2P mapping (first hypervisor slot).
pub const M2P_L4_SLOT: usize = 256;

const _: () = assert!(((HYPERVISOR_VIRT_START >> 39) & 511) as usize == FIRST_HYPERVISOR_L4_SLOT);
const _: () = assert!(((HYPERVISOR_VIRT_END - 1) >> 39 & 511) as usize == LAST_HYPERVISOR_L4_SLOT);

/// Ring-3 32-bit flat code selector (GDT entry 7172).
pub const FLAT_RING3_CS32: u16 = 0xe023;
/// Ring-3 64-bit flat code selector (GDT entry 7174).
pub const FLAT_RING3_CS64: u16 = 0xe033;
/// Ring-3 32-bit flat data selector (GDT entry 7173).
pub const FLAT_RING3_DS32: u16 = 0xe02b;
/// 64-bit data segment: the NULL selector.
pub const FLAT_RING3_DS64: u16 = 0x0000;
/// Ring-3 32-bit stack selector (same descriptor as `FLAT_RING3_DS32`).
pub const FLAT_RING3_SS32: u16 = 0xe02b;
/// Ring-3 64-bit stack selector (same descriptor as `FLAT_RING3_DS32`).
pub const FLAT_RING3_SS64: u16 = 0xe02b;

/// Kernel 64-bit data selector (NULL; the kernel runs in ring 3).
pub const FLAT_KERNEL_DS64: u16 = FLAT_RING3_DS64;
/// Kernel 32-bit data selector.
pub const FLAT_KERNEL_DS32: u16 = FLAT_RING3_DS32;
/// Kernel data selector for a 64-bit guest (= `FLAT_KERNEL_DS64` = 0).
pub const FLAT_KERNEL_DS: u16 = FLAT_KERNEL_DS64;
/// Kernel 64-bit code selector.
pub const FLAT_KERNEL_CS64: u16 = FLAT_RING3_CS64;
/// Kernel 32-bit code selector.
pub const FLAT_KERNEL_CS32: u16 = FLAT_RING3_CS32;
/// Kernel code selector for a 64-bit guest (= `FLAT_KERNEL_CS64`).
pub const FLAT_KERNEL_CS: u16 = FLAT_KERNEL_CS64;
/// Kernel 64-bit stack selector.
pub const FLAT_KERNEL_SS64: u16 = FLAT_RING3_SS64;
/// Kernel 32-bit stack selector.
pub const FLAT_KERNEL_SS32: u16 = FLAT_RING3_SS32;
/// Kernel stack selector for a 64-bit guest (= `FLAT_KERNEL_SS64`).
pub const FLAT_KERNEL_SS: u16 = FLAT_KERNEL_SS64;

/// User 64-bit data selector (NULL).
pub const FLAT_USER_DS64: u16 = FLAT_RING3_DS64;
/// User 32-bit data selector.
pub const FLAT_USER_DS32: u16 = FLAT_RING3_DS32;
/// User data selector for a 64-bit guest.
pub const FLAT_USER_DS: u16 = FLAT_USER_DS64;
/// User 64-bit code selector.
pub const FLAT_USER_CS64: u16 = FLAT_RING3_CS64;
/// User 32-bit code selector.
pub const FLAT_USER_CS32: u16 = FLAT_RING3_CS32;
/// User code selector for a 64-bit guest.
pub const FLAT_USER_CS: u16 = FLAT_USER_CS64;
/// User 64-bit stack selector.
pub const FLAT_USER_SS64: u16 = FLAT_RING3_SS64;
/// User 32-bit stack selector.
pub const FLAT_USER_SS32: u16 = FLAT_RING3_SS32;
/// User stack selector for a 64-bit guest.
pub const FLAT_USER_SS: u16 = FLAT_USER_SS64;

/// First page of every vCPU GDT reserved for the hypervisor (guests own
/// pages 0..14, i.e. entries 0..7167).
pub const FIRST_RESERVED_GDT_PAGE: u64 = 14;
/// Byte offset of the hypervisor-reserved GDT area (0xE000).
pub const FIRST_RESERVED_GDT_BYTE: u64 = FIRST_RESERVED_GDT_PAGE * 4096;
/// Index of the first hypervisor-reserved GDT entry (7168).
pub const FIRST_RESERVED_GDT_ENTRY: u64 = FIRST_RESERVED_GDT_BYTE / 8;
/// Maximum number of GDT entries a guest may install with `set_gdt`.
pub const MAX_GUEST_GDT_ENTRIES: u64 = FIRST_RESERVED_GDT_ENTRY;

/// Hypervisor 64-bit code selector (ring 0). Xen-internal (`__HYPERVISOR_CS`).
pub const HYPERVISOR_CS: u16 = 0xe008;
/// Hypervisor 32-bit data selector (ring 0). Xen-internal (`__HYPERVISOR_DS32`).
pub const HYPERVISOR_DS32: u16 = 0xe010;
/// Per-CPU TSS selector in the reserved GDT area. Xen-internal (`TSS_SELECTOR`).
pub const TSS_SELECTOR: u16 = 0xe040;
/// Per-vCPU LDT selector in the reserved GDT area. Xen-internal (`LDT_SELECTOR`).
pub const LDT_SELECTOR: u16 = 0xe050;

/// Maximum vCPUs whose `vcpu_info` lives in the shared-info page.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// The IA32_PAT value PV guests run with and read back:
/// PAT0..7 = WB, WT, UC-, UC, WC, WP, UC, UC. Xen-internal (`XEN_MSR_PAT`).
pub const XEN_PAT_VALUE: u64 = 0x0000_0501_0007_0406;

/// PTE software bit Xen sets on L1 entries of guest-kernel-only mappings
/// (the kernel runs at CPL3, so `_PAGE_USER` cannot distinguish it).
/// Xen-internal (`_PAGE_GUEST_KERNEL`, bit 52).
pub const PAGE_GUEST_KERNEL: u64 = 1 << 52;

/// `vcpu_guest_context.flags`: FPU state in `fpu_ctxt` is valid.
pub const VGCF_I387_VALID: u64 = 1 << 0;
/// `vcpu_guest_context.flags`: vCPU starts in kernel mode.
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// `vcpu_guest_context.flags`: failsafe callback masks events.
pub const VGCF_FAILSAFE_DISABLES_EVENTS: u64 = 1 << 3;
/// `vcpu_guest_context.flags`: syscall callback masks events.
pub const VGCF_SYSCALL_DISABLES_EVENTS: u64 = 1 << 4;
/// `vcpu_guest_context.flags`: vCPU is online.
pub const VGCF_ONLINE: u64 = 1 << 5;
/// `HYPERVISOR_iret` frame `flags`: the guest left user mode by SYSCALL;
/// return with SYSRET (RCX/R11/CS/SS from the frame are discarded).
pub const VGCF_IN_SYSCALL: u64 = 1 << 8;

/// `set_segment_base`: set the FS base.
pub const SEGBASE_FS: u32 = 0;
/// `set_segment_base`: set the user-mode GS base (the inactive one while in kernel).
pub const SEGBASE_GS_USER: u32 = 1;
/// `set_segment_base`: set the kernel-mode GS base.
pub const SEGBASE_GS_KERNEL: u32 = 2;
/// `set_segment_base`: load the user GS selector given in `base[15:0]`.
pub const SEGBASE_GS_USER_SEL: u32 = 3;

/// CR3 value for a root page-table frame (`xen_pfn_to_cr3`).
pub const fn pfn_to_cr3(mfn: u64) -> u64 {
    mfn << PAGE_SHIFT
}

/// Frame number in a CR3 value (`xen_cr3_to_pfn`).
pub const fn cr3_to_pfn(cr3: u64) -> u64 {
    cr3 >> PAGE_SHIFT
}

/// Whether L4 slot `slot` belongs to the hypervisor.
pub const fn is_hypervisor_l4_slot(slot: usize) -> bool {
    slot >= FIRST_HYPERVISOR_L4_SLOT && slot <= LAST_HYPERVISOR_L4_SLOT
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_gdt() {
        assert_eq!(FIRST_RESERVED_GDT_BYTE, 0xE000);
        assert_eq!(FIRST_RESERVED_GDT_ENTRY, 7168);
        assert_eq!(
            u64::from(FLAT_RING3_CS64) >> 3,
            FIRST_RESERVED_GDT_ENTRY + 6
        );
        assert_eq!(FLAT_KERNEL_CS, 0xe033);
        assert_eq!(FLAT_KERNEL_SS, 0xe02b);
        assert_eq!(FLAT_KERNEL_DS, 0);
        assert_eq!(MACH2PHYS_NR_ENTRIES, 1 << 35);
        assert!(is_hypervisor_l4_slot(256) && is_hypervisor_l4_slot(271));
        assert!(!is_hypervisor_l4_slot(255) && !is_hypervisor_l4_slot(272));
    }

    #[test]
    fn pat_entries() {
        let types: [u8; 8] = XEN_PAT_VALUE.to_le_bytes();
        // WB, WT, UC-, UC, WC, WP, UC, UC
        assert_eq!(types, [6, 4, 7, 0, 1, 5, 0, 0]);
    }
}
