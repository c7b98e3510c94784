//! XENFEAT_* feature names and the FEATURES note string ("a|!b|c", '!' = required).
//!
//! Xen's libelf (and `xen_abi::features::by_name`) only knows 7 names; we accept every name in
//! `xen/include/public/features.h` so that a kernel requiring a newer feature is refused by
//! the builder with that feature's name ([`super::XenElfInfo::unsupported_required`]) rather
//! than as "unknown". As in Xen, an unknown name is ignored unless it is required.

use alloc::string::String;
use core::fmt;

pub(super) use xen_abi::features::XENFEAT_DOM0;

/// XENFEAT names indexed by bit number (public/features.h), submap 0.
const NAMES: [&str; 21] = [
    "writable_page_tables",       // 0
    "writable_descriptor_tables", // 1
    "auto_translated_physmap",    // 2
    "supervisor_mode_kernel",     // 3
    "pae_pgdir_above_4gb",        // 4
    "mmu_pt_update_preserve_ad",  // 5
    "highmem_assist",             // 6
    "gnttab_map_avail_bits",      // 7
    "hvm_callback_vector",        // 8
    "hvm_safe_pvclock",           // 9
    "hvm_pirqs",                  // 10
    "dom0",                       // 11
    "grant_map_identity",         // 12
    "memory_op_vnode_supported",  // 13
    "ARM_SMCCC_supported",        // 14
    "linux_rsdp_unrestricted",    // 15
    "not_direct_mapped",          // 16
    "direct_mapped",              // 17
    "runstate_phys_area",         // 18
    "vcpu_time_phys_area",        // 19
    "dm_msix_all_writes",         // 20
];

/// A XENFEAT bit number (submap 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature(pub u32);

impl Feature {
    /// The XENFEAT name without the prefix, if the bit is a known feature.
    pub fn name(self) -> Option<&'static str> {
        NAMES.get(self.0 as usize).copied()
    }

    /// Bitmap with only this feature set (0 for bits >= 32).
    pub fn mask(self) -> u32 {
        1u32.checked_shl(self.0).unwrap_or(0)
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} (XENFEAT bit {})", self.0),
            None => write!(f, "XENFEAT bit {}", self.0),
        }
    }
}

/// Look up a XENFEAT name ("writable_page_tables") → bit.
pub fn feature_by_name(name: &str) -> Option<Feature> {
    NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| Feature(i as u32))
}

/// Parse a FEATURES note string, OR-ing into `supported` / `required`. Returns the name of
/// the first unknown *required* feature as an error.
pub(super) fn parse_features(
    s: &str,
    supported: &mut u32,
    required: &mut u32,
) -> Result<(), String> {
    for token in s.split('|') {
        let (name, is_required) = match token.strip_prefix('!') {
            Some(rest) => (rest, true),
            None => (token, false),
        };
        match feature_by_name(name) {
            Some(feat) => {
                *supported |= feat.mask();
                if is_required {
                    *required |= feat.mask();
                }
            }
            None if is_required => return Err(String::from(name)),
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use xen_abi::features as abi;

    #[test]
    fn names_match_abi_bits() {
        let expect = [
            ("writable_page_tables", abi::XENFEAT_WRITABLE_PAGE_TABLES),
            (
                "writable_descriptor_tables",
                abi::XENFEAT_WRITABLE_DESCRIPTOR_TABLES,
            ),
            (
                "auto_translated_physmap",
                abi::XENFEAT_AUTO_TRANSLATED_PHYSMAP,
            ),
            (
                "supervisor_mode_kernel",
                abi::XENFEAT_SUPERVISOR_MODE_KERNEL,
            ),
            ("pae_pgdir_above_4gb", abi::XENFEAT_PAE_PGDIR_ABOVE_4GB),
            (
                "mmu_pt_update_preserve_ad",
                abi::XENFEAT_MMU_PT_UPDATE_PRESERVE_AD,
            ),
            ("highmem_assist", abi::XENFEAT_HIGHMEM_ASSIST),
            ("gnttab_map_avail_bits", abi::XENFEAT_GNTTAB_MAP_AVAIL_BITS),
            ("hvm_callback_vector", abi::XENFEAT_HVM_CALLBACK_VECTOR),
            ("hvm_safe_pvclock", abi::XENFEAT_HVM_SAFE_PVCLOCK),
            ("hvm_pirqs", abi::XENFEAT_HVM_PIRQS),
            ("dom0", abi::XENFEAT_DOM0),
            ("grant_map_identity", abi::XENFEAT_GRANT_MAP_IDENTITY),
            (
                "memory_op_vnode_supported",
                abi::XENFEAT_MEMORY_OP_VNODE_SUPPORTED,
            ),
            ("ARM_SMCCC_supported", abi::XENFEAT_ARM_SMCCC_SUPPORTED),
            (
                "linux_rsdp_unrestricted",
                abi::XENFEAT_LINUX_RSDP_UNRESTRICTED,
            ),
            ("not_direct_mapped", abi::XENFEAT_NOT_DIRECT_MAPPED),
            ("direct_mapped", abi::XENFEAT_DIRECT_MAPPED),
            ("runstate_phys_area", abi::XENFEAT_RUNSTATE_PHYS_AREA),
            ("vcpu_time_phys_area", abi::XENFEAT_VCPU_TIME_PHYS_AREA),
            ("dm_msix_all_writes", abi::XENFEAT_DM_MSIX_ALL_WRITES),
        ];
        assert_eq!(expect.len(), NAMES.len());
        for (name, bit) in expect {
            assert_eq!(feature_by_name(name), Some(Feature(bit)), "{name}");
        }
        // Every name libelf accepts is accepted here with the same bit.
        for (name, bit) in abi::NOTE_FEATURE_NAMES {
            assert_eq!(feature_by_name(name), Some(Feature(bit)), "{name}");
        }
        assert_eq!(Feature(40).mask(), 0);
        assert_eq!(Feature(40).to_string(), "XENFEAT bit 40");
    }

    #[test]
    fn parse_feature_strings() {
        let (mut s, mut r) = (0, 0);
        assert_eq!(parse_features("", &mut s, &mut r), Ok(()));
        assert_eq!(
            parse_features("|dom0||!writable_page_tables|", &mut s, &mut r),
            Ok(())
        );
        assert_eq!((s, r), (1 << 11 | 1, 1));
        assert_eq!(parse_features("!", &mut s, &mut r), Err(String::new()));
    }
}
