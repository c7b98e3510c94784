//! Xen ELF note types (`public/elfnote.h`) read by the PV domain builder.
//!
//! Notes live in `PT_NOTE` segments (or `SHT_NOTE` sections) with owner name
//! [`XEN_ELFNOTE_OWNER`]. Numeric descriptors are 4 or 8 bytes little-endian;
//! string descriptors are NUL terminated.

/// The note owner name Xen notes carry (`"Xen"`, stored with a trailing NUL).
pub const XEN_ELFNOTE_OWNER: &[u8] = b"Xen";

/// `NAME=VALUE` string (legacy; ignored by current builders).
pub const XEN_ELFNOTE_INFO: u32 = 0;
/// Entry point virtual address (numeric; default `e_entry`).
pub const XEN_ELFNOTE_ENTRY: u32 = 1;
/// Virtual address of the page the builder fills with hypercall stubs (numeric).
pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
/// Virtual address at which pseudo-physical 0 is mapped (numeric; default 0).
pub const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
/// Value to subtract from `p_paddr` (numeric; default 0 when notes are used).
pub const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
/// Xen interface version the kernel targets; must start with `"xen-3.0"` (string).
pub const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
/// Guest OS name (string); Xen accepts `"linux*"` (or any OS with a generic loader).
pub const XEN_ELFNOTE_GUEST_OS: u32 = 6;
/// Guest OS version (string, informational).
pub const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
/// Loader type (string); Xen accepts `"generic*"`.
pub const XEN_ELFNOTE_LOADER: u32 = 8;
/// PAE support, x86-32 only: `"yes"`, `"no"`, `"bimodal"` (string).
pub const XEN_ELFNOTE_PAE_MODE: u32 = 9;
/// `'|'`-separated feature names, `'!'` prefix = required (string);
/// see [`crate::features::parse`].
pub const XEN_ELFNOTE_FEATURES: u32 = 10;
/// `"yes"` if the symbol table should be loaded (string).
pub const XEN_ELFNOTE_BSD_SYMTAB: u32 = 11;
/// Lowest address the hypervisor hole may start at (numeric, 32-bit guests).
pub const XEN_ELFNOTE_HV_START_LOW: u32 = 12;
/// Mask/value pairs identifying non-present PTEs that hold MFNs (numeric array).
pub const XEN_ELFNOTE_L1_MFN_VALID: u32 = 13;
/// Guest supports cooperative suspend cancellation (numeric).
pub const XEN_ELFNOTE_SUSPEND_CANCEL: u32 = 14;
/// Virtual address at which to place the initial P2M list outside the
/// initial mapping (numeric, x86-64 only).
pub const XEN_ELFNOTE_INIT_P2M: u32 = 15;
/// Guest accepts an unmapped initrd given by PFN (numeric boolean).
pub const XEN_ELFNOTE_MOD_START_PFN: u32 = 16;
/// Bitmap of supported `XENFEAT_*` (numeric, ORed with the `FEATURES` note).
pub const XEN_ELFNOTE_SUPPORTED_FEATURES: u32 = 17;
/// 32-bit physical entry point for PVH boot (numeric); not used for PV.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// PVH relocation constraints: up to three 32-bit values (alignment,
/// minimum, maximum); not used for PV.
pub const XEN_ELFNOTE_PHYS32_RELOC: u32 = 19;
/// Highest defined note type.
pub const XEN_ELFNOTE_MAX: u32 = XEN_ELFNOTE_PHYS32_RELOC;

/// Crash-dump note: system information (written by Xen's kexec code).
pub const XEN_ELFNOTE_CRASH_INFO: u32 = 0x100_0001;
/// Crash-dump note: per-CPU registers.
pub const XEN_ELFNOTE_CRASH_REGS: u32 = 0x100_0002;
/// Dump-core note: marks a Xen dump-core file.
pub const XEN_ELFNOTE_DUMPCORE_NONE: u32 = 0x200_0000;
/// Dump-core note: header.
pub const XEN_ELFNOTE_DUMPCORE_HEADER: u32 = 0x200_0001;
/// Dump-core note: Xen version.
pub const XEN_ELFNOTE_DUMPCORE_XEN_VERSION: u32 = 0x200_0002;
/// Dump-core note: format version.
pub const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION: u32 = 0x200_0003;

/// How a note's descriptor is to be interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// NUL-terminated string.
    Str,
    /// 4- or 8-byte little-endian number.
    Numeric,
    /// Array of numbers (or a structure of them).
    NumericArray,
}

/// Name and descriptor kind of each guest-kernel note type, indexed by type.
const NOTES: [(&str, NoteKind); 20] = [
    ("INFO", NoteKind::Str),
    ("ENTRY", NoteKind::Numeric),
    ("HYPERCALL_PAGE", NoteKind::Numeric),
    ("VIRT_BASE", NoteKind::Numeric),
    ("PADDR_OFFSET", NoteKind::Numeric),
    ("XEN_VERSION", NoteKind::Str),
    ("GUEST_OS", NoteKind::Str),
    ("GUEST_VERSION", NoteKind::Str),
    ("LOADER", NoteKind::Str),
    ("PAE_MODE", NoteKind::Str),
    ("FEATURES", NoteKind::Str),
    ("BSD_SYMTAB", NoteKind::Str),
    ("HV_START_LOW", NoteKind::Numeric),
    ("L1_MFN_VALID", NoteKind::NumericArray),
    ("SUSPEND_CANCEL", NoteKind::Numeric),
    ("INIT_P2M", NoteKind::Numeric),
    ("MOD_START_PFN", NoteKind::Numeric),
    ("SUPPORTED_FEATURES", NoteKind::NumericArray),
    ("PHYS32_ENTRY", NoteKind::Numeric),
    ("PHYS32_RELOC", NoteKind::NumericArray),
];

/// Name of a guest-kernel note type without the `XEN_ELFNOTE_` prefix
/// (e.g. `1` → `"ENTRY"`).
pub fn name(ty: u32) -> Option<&'static str> {
    NOTES.get(ty as usize).map(|(n, _)| *n)
}

/// Descriptor kind of a guest-kernel note type.
pub fn kind(ty: u32) -> Option<NoteKind> {
    NOTES.get(ty as usize).map(|(_, k)| *k)
}

/// Decode a numeric note descriptor (4 or 8 bytes, little-endian).
pub fn numeric(desc: &[u8]) -> Option<u64> {
    match *desc {
        [a, b, c, d] => Some(u64::from(u32::from_le_bytes([a, b, c, d]))),
        [a, b, c, d, e, f, g, h] => Some(u64::from_le_bytes([a, b, c, d, e, f, g, h])),
        _ => None,
    }
}

/// Decode a string note descriptor: the bytes before the first NUL.
pub fn string(desc: &[u8]) -> &[u8] {
    let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
    &desc[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kinds() {
        assert_eq!(name(XEN_ELFNOTE_ENTRY), Some("ENTRY"));
        assert_eq!(name(XEN_ELFNOTE_PHYS32_RELOC), Some("PHYS32_RELOC"));
        assert_eq!(name(20), None);
        assert_eq!(kind(XEN_ELFNOTE_FEATURES), Some(NoteKind::Str));
        assert_eq!(kind(XEN_ELFNOTE_INIT_P2M), Some(NoteKind::Numeric));
        assert_eq!(NOTES.len() as u32, XEN_ELFNOTE_MAX + 1);
    }

    #[test]
    fn descriptors() {
        assert_eq!(numeric(&[1, 0, 0, 0]), Some(1));
        assert_eq!(
            numeric(&0xffff_ffff_8000_0000u64.to_le_bytes()),
            Some(0xffff_ffff_8000_0000)
        );
        assert_eq!(numeric(&[1, 2]), None);
        assert_eq!(string(b"xen-3.0\0\0"), b"xen-3.0");
        assert_eq!(string(b"linux"), b"linux");
    }
}
