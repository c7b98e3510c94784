//! Xen ELF notes (public/elfnote.h) and the checks of Xen's libelf-dominfo.c.
//!
//! Notes are read from `PT_NOTE` program headers (skipping ones with `p_offset == 0`, which
//! old binutils emitted), falling back to `SHT_NOTE` sections when no segment held a Xen note.
//! A note counts as Xen's if its owner name is "Xen". When a note type repeats, the last one
//! wins, except FEATURES / SUPPORTED_FEATURES, which accumulate (as in Xen).
//! Invariant: the returned [`XenElfInfo`] and [`Segment`]s satisfy the guarantees listed in
//! the `loader` module documentation.

use alloc::string::String;
use alloc::vec::Vec;

use super::elf::{ElfFile, Phdr, PF_RWX, PT_LOAD, PT_NOTE, SHT_NOTE};
use super::features::parse_features;
use super::{LoadError, Segment, XenElfInfo};

use xen_abi::elfnote::{
    XEN_ELFNOTE_ENTRY as ENTRY, XEN_ELFNOTE_FEATURES as FEATURES, XEN_ELFNOTE_GUEST_OS as GUEST_OS,
    XEN_ELFNOTE_GUEST_VERSION as GUEST_VERSION, XEN_ELFNOTE_HV_START_LOW as HV_START_LOW,
    XEN_ELFNOTE_HYPERCALL_PAGE as HYPERCALL_PAGE, XEN_ELFNOTE_INIT_P2M as INIT_P2M,
    XEN_ELFNOTE_LOADER as LOADER, XEN_ELFNOTE_MOD_START_PFN as MOD_START_PFN, XEN_ELFNOTE_OWNER,
    XEN_ELFNOTE_PADDR_OFFSET as PADDR_OFFSET, XEN_ELFNOTE_PAE_MODE as PAE_MODE,
    XEN_ELFNOTE_PHYS32_ENTRY as PHYS32_ENTRY, XEN_ELFNOTE_SUPPORTED_FEATURES as SUPPORTED_FEATURES,
    XEN_ELFNOTE_SUSPEND_CANCEL as SUSPEND_CANCEL, XEN_ELFNOTE_VIRT_BASE as VIRT_BASE,
    XEN_ELFNOTE_XEN_VERSION as XEN_VERSION,
};

/// Xen's ELF_MAX_TOTAL_NOTE_COUNT.
const MAX_TOTAL_NOTES: u32 = 65536;
/// Longest note string we keep (Xen keeps 16 bytes of most; prefix checks are unaffected).
const MAX_NOTE_STRING: usize = 256;
/// Longest feature name echoed back in an error.
const MAX_ECHOED_NAME: usize = 64;
const PAGE_SIZE: u64 = 4096;

/// Raw note values before defaults and checks.
#[derive(Default)]
struct RawNotes {
    entry: Option<u64>,
    hypercall_page: Option<u64>,
    virt_base: Option<u64>,
    paddr_offset: Option<u64>,
    hv_start_low: Option<u64>,
    init_p2m: Option<u64>,
    mod_start_pfn: bool,
    suspend_cancel: bool,
    phys32_entry: Option<u32>,
    xen_version: String,
    guest_os: String,
    guest_version: String,
    loader: String,
    pae_mode: String,
    supported: u32,
    required: u32,
    has_supported_features_note: bool,
}

fn truncate_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A NUL-terminated (or descriptor-bounded) string, lossily decoded.
fn note_str(desc: &[u8]) -> String {
    let end = desc.iter().position(|&b| b == 0).unwrap_or(desc.len());
    let raw = desc.get(..end).unwrap_or(&[]);
    String::from_utf8_lossy(raw).into_owned()
}

/// A 1, 2, 4 or 8-byte little-endian number (Xen's `elf_note_numeric`).
fn note_num(desc: &[u8], note_type: u32) -> Result<u64, LoadError> {
    match *desc {
        [a] => Ok(u64::from(a)),
        [a, b] => Ok(u64::from(u16::from_le_bytes([a, b]))),
        [a, b, c, d] => Ok(u64::from(u32::from_le_bytes([a, b, c, d]))),
        [a, b, c, d, e, f, g, h] => Ok(u64::from_le_bytes([a, b, c, d, e, f, g, h])),
        _ => Err(LoadError::BadNote {
            reason: "numeric Xen note must have a 1, 2, 4 or 8-byte descriptor",
            note_type,
        }),
    }
}

fn parse_one(note_type: u32, desc: &[u8], raw: &mut RawNotes) -> Result<(), LoadError> {
    match note_type {
        ENTRY => raw.entry = Some(note_num(desc, note_type)?),
        HYPERCALL_PAGE => raw.hypercall_page = Some(note_num(desc, note_type)?),
        VIRT_BASE => raw.virt_base = Some(note_num(desc, note_type)?),
        PADDR_OFFSET => raw.paddr_offset = Some(note_num(desc, note_type)?),
        HV_START_LOW => raw.hv_start_low = Some(note_num(desc, note_type)?),
        INIT_P2M => raw.init_p2m = Some(note_num(desc, note_type)?),
        MOD_START_PFN => raw.mod_start_pfn = note_num(desc, note_type)? != 0,
        SUSPEND_CANCEL => raw.suspend_cancel = note_num(desc, note_type)? != 0,
        // PVH-only; a value beyond 4 GiB is meaningless there and is simply not recorded.
        PHYS32_ENTRY => raw.phys32_entry = u32::try_from(note_num(desc, note_type)?).ok(),
        XEN_VERSION => raw.xen_version = truncate_chars(&note_str(desc), MAX_NOTE_STRING),
        GUEST_OS => raw.guest_os = truncate_chars(&note_str(desc), MAX_NOTE_STRING),
        GUEST_VERSION => raw.guest_version = truncate_chars(&note_str(desc), MAX_NOTE_STRING),
        LOADER => raw.loader = truncate_chars(&note_str(desc), MAX_NOTE_STRING),
        PAE_MODE => raw.pae_mode = truncate_chars(&note_str(desc), MAX_NOTE_STRING),
        FEATURES => parse_features(&note_str(desc), &mut raw.supported, &mut raw.required)
            .map_err(|name| {
                LoadError::UnknownRequiredFeature(truncate_chars(&name, MAX_ECHOED_NAME))
            })?,
        SUPPORTED_FEATURES => {
            // An array of u32 submaps; we use submap 0.
            let submap0 = match *desc {
                [a, b, c, d, ..] if desc.len() & 3 == 0 => u32::from_le_bytes([a, b, c, d]),
                _ => {
                    return Err(LoadError::BadNote {
                        reason: "SUPPORTED_FEATURES must be a non-empty array of u32",
                        note_type,
                    })
                }
            };
            raw.supported |= submap0;
            raw.has_supported_features_note = true;
        }
        // BSD_SYMTAB, L1_MFN_VALID, PHYS32_RELOC and unknown types are ignored.
        _ => {}
    }
    Ok(())
}

fn align4(n: u64) -> u64 {
    // n < 2^32 + 3 here, so this never overflows.
    (n + 3) & !3
}

/// Walk one note area; returns how many Xen notes it held.
fn parse_notes(area: &[u8], raw: &mut RawNotes, total: &mut u32) -> Result<u32, LoadError> {
    let len = area.len() as u64;
    let mut off = 0u64;
    let mut xen = 0u32;
    while off < len {
        let rest = super::elf::range(area, off, len - off).unwrap_or(&[]);
        if rest.len() < 12 {
            if rest.iter().all(|&b| b == 0) {
                break; // alignment padding
            }
            return Err(LoadError::BadNote {
                reason: "note header runs past the end of the note area",
                note_type: 0,
            });
        }
        if *total >= MAX_TOTAL_NOTES {
            return Err(LoadError::TooManyNotes);
        }
        *total += 1;
        let namesz = u64::from(super::elf::u32_at(rest, 0).unwrap_or(0));
        let descsz = u64::from(super::elf::u32_at(rest, 4).unwrap_or(0));
        let note_type = super::elf::u32_at(rest, 8).unwrap_or(0);
        let name_off = 12u64;
        let desc_off = name_off + align4(namesz);
        let next = desc_off + align4(descsz);
        let name = super::elf::range(rest, name_off, namesz).ok_or(LoadError::BadNote {
            reason: "note name runs past the end of the note area",
            note_type,
        })?;
        let desc = super::elf::range(rest, desc_off, descsz).ok_or(LoadError::BadNote {
            reason: "note descriptor runs past the end of the note area",
            note_type,
        })?;
        let owner = match name.iter().position(|&b| b == 0) {
            Some(nul) => name.get(..nul).unwrap_or(&[]),
            None => name,
        };
        if owner == XEN_ELFNOTE_OWNER {
            parse_one(note_type, desc, raw)?;
            xen += 1;
        }
        off = off.saturating_add(next);
    }
    Ok(xen)
}

/// Parse an ELF64 x86-64 Xen PV kernel: segments, Xen notes, and Xen's consistency checks.
pub(super) fn parse_xen_elf(bytes: &[u8]) -> Result<(XenElfInfo, Vec<Segment>), LoadError> {
    let elf = ElfFile::parse(bytes)?;
    let mut raw = RawNotes::default();
    let mut total_notes = 0u32;
    let mut xen_notes = 0u32;
    let mut loads: Vec<(u16, Phdr)> = Vec::new();

    for i in 0..elf.phnum {
        let ph = elf.phdr(i)?;
        if ph.p_type == PT_LOAD && ph.p_flags & PF_RWX != 0 {
            if ph.p_filesz > ph.p_memsz {
                return Err(LoadError::BadProgramHeader {
                    index: i,
                    reason: "p_filesz is larger than p_memsz",
                });
            }
            if ph.p_paddr.checked_add(ph.p_memsz).is_none() {
                return Err(LoadError::BadProgramHeader {
                    index: i,
                    reason: "p_paddr + p_memsz overflows",
                });
            }
            elf.contents("program header", i, ph.p_offset, ph.p_filesz)?;
            loads.push((i, ph));
        } else if ph.p_type == PT_NOTE && ph.p_offset != 0 {
            let area = elf.contents(
                "note segment of program header",
                i,
                ph.p_offset,
                ph.p_filesz,
            )?;
            xen_notes += parse_notes(area, &mut raw, &mut total_notes)?;
        }
    }

    let mut notes_from_sections = false;
    if xen_notes == 0 {
        for i in 1..elf.shnum {
            let sh = elf.shdr(i)?;
            if sh.sh_type != SHT_NOTE {
                continue;
            }
            let area = elf.contents("note section", i, sh.sh_offset, sh.sh_size)?;
            xen_notes += parse_notes(area, &mut raw, &mut total_notes)?;
        }
        notes_from_sections = xen_notes > 0;
    }
    if xen_notes == 0 {
        return Err(LoadError::NotXenKernel);
    }

    // elf_xen_note_check
    if !raw.loader.starts_with("generic") && !raw.guest_os.starts_with("linux") {
        return Err(LoadError::UnsupportedLoader {
            loader: raw.loader,
            guest_os: raw.guest_os,
        });
    }
    if !raw.xen_version.starts_with("xen-3.0") {
        return Err(LoadError::BadXenVersion(raw.xen_version));
    }

    // elf_xen_addr_calc_check
    if raw.paddr_offset.is_some() && raw.virt_base.is_none() {
        return Err(LoadError::PaddrOffsetWithoutVirtBase);
    }
    let virt_base = raw.virt_base.unwrap_or(0);
    let paddr_offset = raw.paddr_offset.unwrap_or(0);
    let virt_offset = virt_base.wrapping_sub(paddr_offset);

    let pstart = loads.iter().map(|(_, p)| p.p_paddr).min();
    // p_paddr + p_memsz was checked above; saturate rather than trust that twice.
    let pend = loads
        .iter()
        .map(|(_, p)| p.p_paddr.saturating_add(p.p_memsz))
        .max();
    let (Some(pstart), Some(pend)) = (pstart, pend) else {
        return Err(LoadError::NoLoadableSegments);
    };
    let virt_kstart = pstart.wrapping_add(virt_offset);
    let virt_kend = pend.wrapping_add(virt_offset);
    if virt_kstart > virt_kend {
        return Err(LoadError::BadKernelRange {
            reason: "kernel addresses wrap around the top of the address space",
        });
    }
    let entry = raw.entry.unwrap_or(elf.entry);
    if virt_base > virt_kstart {
        return Err(LoadError::VirtBaseAboveKernel {
            virt_base,
            virt_kstart,
        });
    }
    // Xen accepts entry == virt_kend; an entry point must be an instruction of the kernel.
    if entry < virt_kstart || entry >= virt_kend {
        return Err(LoadError::EntryOutsideKernel {
            entry,
            virt_kstart,
            virt_kend,
        });
    }
    if let Some(va) = raw.init_p2m {
        if va >= virt_kstart && va < virt_kend {
            return Err(LoadError::P2mInsideKernel {
                va,
                virt_kstart,
                virt_kend,
            });
        }
    }
    if let Some(va) = raw.hypercall_page {
        // Stricter than Xen (which only needs it inside the initial mapping): the builder
        // writes a whole 4 KiB page there, so the page must be part of the kernel image.
        let kernel_pages_end = virt_kend
            .checked_add(PAGE_SIZE - 1)
            .map(|e| e & !(PAGE_SIZE - 1));
        let inside = match (va.checked_add(PAGE_SIZE), kernel_pages_end) {
            (Some(hp_end), Some(k_end)) => va >= virt_kstart && hp_end <= k_end,
            _ => false,
        };
        if !inside {
            return Err(LoadError::HypercallPageOutsideKernel {
                va,
                virt_kstart,
                virt_kend,
            });
        }
    }

    let mut segments = Vec::with_capacity(loads.len());
    for (index, ph) in loads {
        let bad = |reason| LoadError::BadProgramHeader { index, reason };
        let vaddr = ph.p_paddr.wrapping_add(virt_offset);
        if vaddr.checked_add(ph.p_memsz).is_none() {
            return Err(bad("segment wraps around the top of the address space"));
        }
        segments.push(Segment {
            phdr_index: index,
            vaddr,
            paddr: ph.p_paddr,
            file_offset: usize::try_from(ph.p_offset).map_err(|_| bad("p_offset too large"))?,
            filesz: usize::try_from(ph.p_filesz).map_err(|_| bad("p_filesz too large"))?,
            memsz: ph.p_memsz,
            flags: ph.p_flags,
        });
    }

    let info = XenElfInfo {
        entry,
        virt_base,
        paddr_offset,
        virt_kstart,
        virt_kend,
        hypercall_page: raw.hypercall_page,
        init_p2m: raw.init_p2m,
        mod_start_pfn: raw.mod_start_pfn,
        suspend_cancel: raw.suspend_cancel,
        phys32_entry: raw.phys32_entry,
        hv_start_low: raw.hv_start_low,
        xen_version: raw.xen_version,
        guest_os: raw.guest_os,
        guest_version: raw.guest_version,
        loader: raw.loader,
        pae_mode: raw.pae_mode,
        features_supported: raw.supported,
        features_required: raw.required,
        has_supported_features_note: raw.has_supported_features_note,
        notes_from_sections,
    };
    Ok((info, segments))
}
