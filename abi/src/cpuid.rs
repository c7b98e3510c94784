//! Xen's hypervisor CPUID leaves (`public/arch-x86/cpuid.h`) and the
//! forced-emulation prefix (`public/arch-x86/xen.h`).
//!
//! Leaves live at `XEN_CPUID_FIRST_LEAF + n` (or `0x40000100 + n` when
//! Viridian leaves occupy the first block):
//! * `+0`: EAX = highest Xen leaf, EBX:ECX:EDX = `"XenVMMXenVMM"`.
//! * `+1`: EAX = `(major << 16) | minor`.
//! * `+2`: EAX = number of hypercall pages (1), EBX = MSR base for writing
//!   the hypercall page, ECX = `XEN_CPUID_FEAT1_*`, EDX = features 2.
//! * `+3`: TSC information (sub-leaves 0-2).
//! * `+4`: HVM features (`XEN_HVM_CPUID_*`).
//! * `+5`: PV parameters: EBX bits 0-7 = machine address width.

/// First Xen CPUID leaf.
pub const XEN_CPUID_FIRST_LEAF: u32 = 0x4000_0000;

/// Xen leaf number `i` relative to [`XEN_CPUID_FIRST_LEAF`].
pub const fn xen_cpuid_leaf(i: u32) -> u32 {
    XEN_CPUID_FIRST_LEAF + i
}

/// Signature in EBX: `"XenV"`.
pub const XEN_CPUID_SIGNATURE_EBX: u32 = 0x566e_6558;
/// Signature in ECX: `"MMXe"`.
pub const XEN_CPUID_SIGNATURE_ECX: u32 = 0x6558_4d4d;
/// Signature in EDX: `"nVMM"`.
pub const XEN_CPUID_SIGNATURE_EDX: u32 = 0x4d4d_566e;

/// Leaf `+2` ECX: `MMU_PT_UPDATE_PRESERVE_AD` is supported for this guest.
pub const XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD: u32 = 1 << 0;

/// Leaf `+3` sub-leaf 0 EAX: TSC is emulated.
pub const XEN_CPUID_TSC_EMULATED: u32 = 1 << 0;
/// Leaf `+3` sub-leaf 0 EAX: host TSC is known reliable.
pub const XEN_CPUID_HOST_TSC_RELIABLE: u32 = 1 << 1;
/// Leaf `+3` sub-leaf 0 EAX: RDTSCP is available.
pub const XEN_CPUID_RDTSCP_INSTR_AVAIL: u32 = 1 << 2;

/// Leaf `+4` EAX: virtualised APIC registers.
pub const XEN_HVM_CPUID_APIC_ACCESS_VIRT: u32 = 1 << 0;
/// Leaf `+4` EAX: virtualised x2APIC accesses.
pub const XEN_HVM_CPUID_X2APIC_VIRT: u32 = 1 << 1;
/// Leaf `+4` EAX: foreign mappings have IOMMU entries.
pub const XEN_HVM_CPUID_IOMMU_MAPPINGS: u32 = 1 << 2;
/// Leaf `+4` EAX: EBX holds the vCPU id.
pub const XEN_HVM_CPUID_VCPU_ID_PRESENT: u32 = 1 << 3;
/// Leaf `+4` EAX: ECX holds the domain id.
pub const XEN_HVM_CPUID_DOMID_PRESENT: u32 = 1 << 4;

/// Leaf `+5` EBX: mask of the maximum machine address width (bits).
pub const XEN_CPUID_MACHINE_ADDRESS_WIDTH_MASK: u32 = 0xff;

/// Highest Xen leaf offset (EAX of leaf `+0` is `XEN_CPUID_FIRST_LEAF + this`).
pub const XEN_CPUID_MAX_NUM_LEAVES: u32 = 5;

/// The byte sequence (`ud2; .ascii "xen"`) a PV guest puts before an
/// instruction to have it emulated; only `CPUID` is supported after it.
pub const XEN_EMULATE_PREFIX: [u8; 5] = [0x0f, 0x0b, b'x', b'e', b'n'];
/// The `CPUID` opcode that may follow [`XEN_EMULATE_PREFIX`].
pub const CPUID_OPCODE: [u8; 2] = [0x0f, 0xa2];

/// The 12-byte signature as EBX, ECX, EDX.
pub const fn signature() -> [u32; 3] {
    [
        XEN_CPUID_SIGNATURE_EBX,
        XEN_CPUID_SIGNATURE_ECX,
        XEN_CPUID_SIGNATURE_EDX,
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signature_spells_xenvmm() {
        let mut s = [0u8; 12];
        for (i, r) in signature().iter().enumerate() {
            s[i * 4..i * 4 + 4].copy_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&s, b"XenVMMXenVMM");
        assert_eq!(xen_cpuid_leaf(XEN_CPUID_MAX_NUM_LEAVES), 0x4000_0005);
    }
}
