//! `XENFEAT_*` feature bits (`public/features.h`) and the ELF `FEATURES` note syntax.
//!
//! Features are reported through `XENVER_get_features` as 32-bit submaps;
//! only submap 0 exists. The constants are bit numbers within it.

/// Guest may write its page tables directly (no write-protection needed).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// Guest may write its descriptor tables directly.
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// The hypervisor translates pseudo-physical to machine addresses (HVM/PVH).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// The guest kernel runs in ring 0.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// PAE page directories may live above 4 GiB.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// x86: `MMU_PT_UPDATE_PRESERVE_AD` is supported.
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// x86: `MMUEXT_CLEAR_PAGE` / `MMUEXT_COPY_PAGE` are supported.
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// `GNTTABOP_map_grant_ref` honours the guest-available PTE bits.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// x86 HVM: the callback-vector upcall type is supported.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// x86 HVM: the PV clock is safe to use.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// x86 HVM: PIRQs are delivered as event channels.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// The domain is dom0 (the kernel may also advertise support for being dom0).
pub const XENFEAT_DOM0: u32 = 11;
/// Grant mappings can be made 1:1 (ARM).
pub const XENFEAT_GRANT_MAP_IDENTITY: u32 = 12;
/// `XENMEM_*` operations accept `XENMEMF_vnode`.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// ARM: SMCCC is available.
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// x86 PVH: the ACPI RSDP may be anywhere (Linux guests).
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// The domain's GFNs are not equal to MFNs.
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// The domain's GFNs equal MFNs (always true for PV).
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// `VCPUOP_register_runstate_phys_area` is available.
pub const XENFEAT_RUNSTATE_PHYS_AREA: u32 = 18;
/// `VCPUOP_register_vcpu_time_phys_area` is available.
pub const XENFEAT_VCPU_TIME_PHYS_AREA: u32 = 19;
/// Device models see all MSI-X vector-control writes.
pub const XENFEAT_DM_MSIX_ALL_WRITES: u32 = 20;

/// Number of 32-bit feature submaps.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// The feature names Xen's ELF loader (libelf `elf_xen_feature_names`)
/// recognises in the `FEATURES` note, with their bit numbers. Other names
/// are ignored when optional and fatal when required.
pub const NOTE_FEATURE_NAMES: [(&str, u32); 7] = [
    ("writable_page_tables", XENFEAT_WRITABLE_PAGE_TABLES),
    (
        "writable_descriptor_tables",
        XENFEAT_WRITABLE_DESCRIPTOR_TABLES,
    ),
    ("auto_translated_physmap", XENFEAT_AUTO_TRANSLATED_PHYSMAP),
    ("supervisor_mode_kernel", XENFEAT_SUPERVISOR_MODE_KERNEL),
    ("pae_pgdir_above_4gb", XENFEAT_PAE_PGDIR_ABOVE_4GB),
    ("hvm_callback_vector", XENFEAT_HVM_CALLBACK_VECTOR),
    ("dom0", XENFEAT_DOM0),
];

/// Bit number of a feature name as accepted in the ELF `FEATURES` note
/// (exact, case-sensitive match on libelf's list).
pub fn by_name(name: &str) -> Option<u32> {
    NOTE_FEATURE_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bit)| *bit)
}

/// Result of parsing a `FEATURES` note string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoteFeatures {
    /// Bitmap (submap 0) of features the kernel supports (required ones included).
    pub supported: u32,
    /// Bitmap of features the kernel cannot run without (`'!'` prefix).
    pub required: u32,
}

/// Parse a `FEATURES` note string such as
/// `"!writable_page_tables|pae_pgdir_above_4gb"` the way libelf does:
/// tokens are separated by `'|'`, a leading `'!'` marks a required feature,
/// unknown optional names are ignored, and an unknown required name is an
/// error (returned as the offending token without its `'!'`).
pub fn parse(s: &str) -> Result<NoteFeatures, &str> {
    let mut out = NoteFeatures::default();
    for tok in s.split('|').filter(|t| !t.is_empty()) {
        let (req, name) = match tok.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, tok),
        };
        match by_name(name) {
            Some(bit) => {
                out.supported |= 1 << bit;
                if req {
                    out.required |= 1 << bit;
                }
            }
            None if req => return Err(name),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(by_name("writable_page_tables"), Some(0));
        assert_eq!(by_name("pae_pgdir_above_4gb"), Some(4));
        assert_eq!(by_name("hvm_callback_vector"), Some(8));
        assert_eq!(by_name("dom0"), Some(11));
        // Defined bits that libelf does not accept by name.
        assert_eq!(by_name("mmu_pt_update_preserve_ad"), None);
        assert_eq!(by_name("Dom0"), None);
        assert_eq!(by_name(""), None);
    }

    #[test]
    fn parse_note_strings() {
        let f = parse("!writable_page_tables|pae_pgdir_above_4gb").unwrap();
        assert_eq!(f.supported, (1 << 0) | (1 << 4));
        assert_eq!(f.required, 1 << 0);
        let f = parse("writable_descriptor_tables|bogus|dom0|").unwrap();
        assert_eq!(f.supported, (1 << 1) | (1 << 11));
        assert_eq!(f.required, 0);
        assert_eq!(parse("dom0|!no_such_feature"), Err("no_such_feature"));
        assert_eq!(parse(""), Ok(NoteFeatures::default()));
    }
}
