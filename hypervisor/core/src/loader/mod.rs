//! PV kernel image loader: bzImage / compressed / raw ELF64 → validated Xen PV kernel description.
//!
//! [`parse`] takes the bytes of a boot module (untrusted: a hostile or broken file) and
//! returns a [`KernelImage`]: the ELF bytes (decompressed when the input was a bzImage or a
//! compressed vmlinux), the `PT_LOAD` segments with their final guest virtual addresses, and
//! the Xen ELF notes ([`XenElfInfo`]) checked the way Xen's libelf checks them
//! (`elf_xen_parse`, `elf_xen_note_check`, `elf_xen_addr_calc_check`).
//!
//! Invariants of a successfully parsed [`KernelImage`]:
//! - `elf().len() <= limits.max_image_bytes`. Decompression checks the limit as it goes: no
//!   output buffer ever grows past `max_image_bytes + 1` bytes (decoder state is bounded
//!   separately: xz dictionary <= 64 MiB, zstd window <= 128 MiB).
//! - Every [`Segment`] satisfies `file_offset + filesz <= elf().len()` and `filesz <= memsz`,
//!   and its guest range `[vaddr, vaddr + memsz)` lies inside
//!   `[info.virt_kstart, info.virt_kend)` without overflow.
//! - `info.virt_base <= info.virt_kstart <= info.entry < info.virt_kend`.
//! - `info.hypercall_page`, if any, names a 4 KiB window inside the kernel's pages;
//!   `info.init_p2m`, if any, is outside `[virt_kstart, virt_kend)`.
//! - No function here panics on any input, and all offset arithmetic is checked.
//!
//! Not supported (rejected with a clear error): 32-bit / big-endian / non-x86-64 ELF, the legacy
//! `__xen_guest` section (pre-2006 kernels), `BSD_SYMTAB` symbol loading (ignored), and
//! bzip2 / lzma / lzo payloads.

mod bzimage;
mod decompress;
mod elf;
mod features;
mod notes;
#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use features::{feature_by_name, Feature};

/// Resource limits applied while parsing an untrusted image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest ELF accepted, in bytes: the size of a raw ELF module, or the decompressed size
    /// of a bzImage payload (checked while decompressing).
    pub max_image_bytes: usize,
}

impl Limits {
    /// The default limit: 256 MiB (a Debian vmlinux is ~60 MiB).
    pub const DEFAULT_MAX_IMAGE_BYTES: usize = 256 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_image_bytes: Self::DEFAULT_MAX_IMAGE_BYTES,
        }
    }
}

/// Compression of the kernel ELF inside the boot module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// The payload is a plain ELF.
    None,
    Gzip,
    Xz,
    /// LZ4 "legacy" frame, as produced by `lz4 -l` for Linux.
    Lz4,
    Zstd,
}

impl Compression {
    /// Short lower-case name ("gzip", "xz", ...).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Container format of the boot module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// A raw ELF64 file.
    Elf,
    /// A Linux bzImage (boot protocol >= 2.08) whose payload was (de)compressed as given.
    BzImage { compression: Compression },
    /// A bare compressed ELF (e.g. `vmlinux.gz`), as Xen's `bzimage_parse` also accepts.
    Compressed { compression: Compression },
}

/// One loadable segment (`PT_LOAD` with at least one of R/W/X set, as Xen's
/// `elf_phdr_is_loadable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Index of the program header this came from.
    pub phdr_index: u16,
    /// Final guest virtual address: `p_paddr + (virt_base - paddr_offset)`.
    pub vaddr: u64,
    /// The ELF `p_paddr`.
    pub paddr: u64,
    /// Offset of the file bytes inside [`KernelImage::elf`].
    pub file_offset: usize,
    /// Bytes copied from the file; the rest up to `memsz` is zero-filled.
    pub filesz: usize,
    /// Size in guest memory.
    pub memsz: u64,
    /// `p_flags` (PF_X = 1, PF_W = 2, PF_R = 4).
    pub flags: u32,
}

/// What the Xen ELF notes say about the kernel, after Xen's defaults and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenElfInfo {
    /// Entry point VA (note ENTRY, else `e_entry`).
    pub entry: u64,
    /// VA that pfn 0 maps to (note VIRT_BASE, default 0).
    pub virt_base: u64,
    /// Subtracted from `p_paddr` (note PADDR_OFFSET, default 0).
    pub paddr_offset: u64,
    /// First kernel VA: lowest loadable `p_paddr` + virt_offset.
    pub virt_kstart: u64,
    /// End (exclusive) of the kernel VAs: highest `p_paddr + p_memsz` + virt_offset.
    pub virt_kend: u64,
    /// VA of the page the builder fills with hypercall stubs (note HYPERCALL_PAGE).
    pub hypercall_page: Option<u64>,
    /// VA where the kernel wants its p2m list, outside the initial mapping (note INIT_P2M).
    pub init_p2m: Option<u64>,
    /// The initrd may be left unmapped and passed as a pfn (note MOD_START_PFN != 0).
    pub mod_start_pfn: bool,
    /// Kernel supports cooperative suspend cancel (note SUSPEND_CANCEL != 0).
    pub suspend_cancel: bool,
    /// PVH 32-bit entry point (note PHYS32_ENTRY); recorded only, PV ignores it.
    pub phys32_entry: Option<u32>,
    /// Note HV_START_LOW (32-bit guests only; recorded).
    pub hv_start_low: Option<u64>,
    /// Note XEN_VERSION, e.g. "xen-3.0".
    pub xen_version: String,
    /// Note GUEST_OS, e.g. "linux".
    pub guest_os: String,
    /// Note GUEST_VERSION, e.g. "2.6".
    pub guest_version: String,
    /// Note LOADER, e.g. "generic".
    pub loader: String,
    /// Note PAE_MODE, e.g. "yes" (empty if absent).
    pub pae_mode: String,
    /// XENFEAT bitmap (submap 0) the kernel can use: FEATURES names plus SUPPORTED_FEATURES.
    pub features_supported: u32,
    /// XENFEAT bitmap (submap 0) the kernel cannot run without ('!' in FEATURES).
    pub features_required: u32,
    /// A SUPPORTED_FEATURES note was present (then `dom0` must be in it for a dom0 kernel).
    pub has_supported_features_note: bool,
    /// The notes came from `SHT_NOTE` sections because no `PT_NOTE` segment held Xen notes.
    pub notes_from_sections: bool,
}

impl XenElfInfo {
    /// The first feature the kernel requires that `hypervisor_supports` (a XENFEAT submap 0
    /// bitmap) lacks, so the builder can refuse the kernel and name the feature.
    pub fn unsupported_required(&self, hypervisor_supports: u32) -> Option<Feature> {
        let missing = self.features_required & !hypervisor_supports;
        if missing == 0 {
            None
        } else {
            Some(Feature(missing.trailing_zeros()))
        }
    }

    /// Whether the kernel may run as dom0: Xen refuses a kernel whose SUPPORTED_FEATURES note
    /// exists but lacks XENFEAT_dom0 (dom0_build.c).
    pub fn dom0_capable(&self) -> bool {
        !self.has_supported_features_note
            || self.features_supported & (1 << features::XENFEAT_DOM0) != 0
    }
}

/// A parsed, validated PV kernel.
#[derive(Debug, Clone)]
pub struct KernelImage {
    elf: Vec<u8>,
    info: XenElfInfo,
    segments: Vec<Segment>,
    format: ImageFormat,
}

impl KernelImage {
    /// The ELF file (decompressed if the module was compressed).
    pub fn elf(&self) -> &[u8] {
        &self.elf
    }

    /// Xen note information.
    pub fn info(&self) -> &XenElfInfo {
        &self.info
    }

    /// Loadable segments, in program-header order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// What the boot module was.
    pub fn format(&self) -> ImageFormat {
        self.format
    }

    /// The `filesz` file bytes of a segment of this image. Segments from [`Self::segments`]
    /// are always in bounds; a foreign segment that is not yields an empty slice.
    pub fn segment_data(&self, s: &Segment) -> &[u8] {
        s.file_offset
            .checked_add(s.filesz)
            .and_then(|end| self.elf.get(s.file_offset..end))
            .unwrap_or(&[])
    }

    /// Shorthand for [`XenElfInfo::unsupported_required`].
    pub fn unsupported_required(&self, hypervisor_supports: u32) -> Option<Feature> {
        self.info.unsupported_required(hypervisor_supports)
    }

    /// Give up the ELF buffer (e.g. to free it once loaded).
    pub fn into_elf(self) -> Vec<u8> {
        self.elf
    }
}

/// Why a kernel image was refused. `Display` gives a message for the serial console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The raw ELF (or an uncompressed bzImage payload) is over the limit.
    ImageTooLarge { len: usize, limit: usize },
    /// Decompression produced more than the limit.
    DecompressedTooLarge {
        compression: Compression,
        limit: usize,
    },
    /// Neither ELF, bzImage, nor a known compressed stream.
    UnknownFormat { first_bytes: [u8; 4], len: usize },
    /// A recognised but unsupported compression ("bzip2", "lzma", "lzo").
    UnsupportedCompression(&'static str),
    /// The bzImage boot protocol is older than 2.08 (no payload fields).
    BzImageTooOld { version: u16 },
    /// The bzImage setup header points outside the file.
    BzImagePayloadOutOfBounds {
        offset: u64,
        length: u64,
        file_len: usize,
    },
    /// The compressed stream is corrupt or truncated.
    Decompress {
        compression: Compression,
        detail: String,
    },
    /// The (decompressed) payload is not an ELF file.
    PayloadNotElf { compression: Compression },
    /// An ELF32 file.
    Elf32,
    /// The ELF header is unusable.
    BadElfHeader(&'static str),
    /// e_type is not ET_EXEC.
    ElfNotExecutable { e_type: u16 },
    /// e_machine is not EM_X86_64.
    ElfWrongMachine { machine: u16 },
    /// A structure extends past the end of the file.
    Truncated {
        what: &'static str,
        index: Option<u32>,
        offset: u64,
        size: u64,
        file_len: usize,
    },
    /// A program header is inconsistent.
    BadProgramHeader { index: u16, reason: &'static str },
    /// No loadable segment.
    NoLoadableSegments,
    /// An ELF note is malformed.
    BadNote {
        reason: &'static str,
        note_type: u32,
    },
    /// More notes than Xen's ELF_MAX_TOTAL_NOTE_COUNT.
    TooManyNotes,
    /// No Xen notes at all.
    NotXenKernel,
    /// XEN_VERSION does not start with "xen-3.0".
    BadXenVersion(String),
    /// Neither LOADER="generic*" nor GUEST_OS="linux*".
    UnsupportedLoader { loader: String, guest_os: String },
    /// FEATURES requires ('!') a feature name this hypervisor does not know.
    UnknownRequiredFeature(String),
    /// PADDR_OFFSET given without VIRT_BASE.
    PaddrOffsetWithoutVirtBase,
    /// Kernel VA range arithmetic overflowed or the range is inverted.
    BadKernelRange { reason: &'static str },
    /// VIRT_BASE lies above the kernel's first address.
    VirtBaseAboveKernel { virt_base: u64, virt_kstart: u64 },
    /// The entry point is outside the kernel.
    EntryOutsideKernel {
        entry: u64,
        virt_kstart: u64,
        virt_kend: u64,
    },
    /// HYPERCALL_PAGE is outside the kernel.
    HypercallPageOutsideKernel {
        va: u64,
        virt_kstart: u64,
        virt_kend: u64,
    },
    /// INIT_P2M lies inside the kernel.
    P2mInsideKernel {
        va: u64,
        virt_kstart: u64,
        virt_kend: u64,
    },
}

/// Print a byte count as "N MiB" when exact, else "N bytes".
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 != 0 && self.0 & ((1 << 20) - 1) == 0 {
            write!(f, "{} MiB", self.0 >> 20)
        } else {
            write!(f, "{} bytes", self.0)
        }
    }
}

fn bytes(n: usize) -> Bytes {
    Bytes(n as u64)
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LoadError::*;
        match self {
            ImageTooLarge { len, limit } => write!(
                f,
                "kernel image is {} bytes, over the {} limit",
                len,
                bytes(*limit)
            ),
            DecompressedTooLarge { compression, limit } => write!(
                f,
                "decompressed kernel exceeds {} limit ({} payload)",
                bytes(*limit),
                compression.name()
            ),
            UnknownFormat { first_bytes, len } => {
                let [a, b, c, d] = first_bytes;
                write!(
                    f,
                    "kernel image format not recognised ({len} bytes starting \
                     {a:02x} {b:02x} {c:02x} {d:02x}): expected ELF64, a bzImage, \
                     or a gzip/xz/lz4/zstd compressed ELF"
                )
            }
            UnsupportedCompression(name) => write!(
                f,
                "Unsupported compression: {name} (rebuild the kernel with gzip, xz, lz4 or zstd)"
            ),
            BzImageTooOld { version } => write!(
                f,
                "bzImage boot protocol {}.{:02} is too old: at least 2.08 is required",
                version >> 8,
                version & 0xff
            ),
            BzImagePayloadOutOfBounds {
                offset,
                length,
                file_len,
            } => write!(
                f,
                "bzImage truncated: payload at offset {offset:#x}, length {length} extends \
                 past end of file ({file_len} bytes)"
            ),
            Decompress {
                compression,
                detail,
            } => write!(f, "{} payload corrupt: {}", compression.name(), detail),
            PayloadNotElf { compression } => write!(
                f,
                "{} payload is not an ELF file (expected the kernel's vmlinux)",
                compression.name()
            ),
            Elf32 => write!(
                f,
                "32-bit ELF kernels are not supported: need a 64-bit x86-64 PV kernel"
            ),
            BadElfHeader(reason) => write!(f, "bad ELF header: {reason}"),
            ElfNotExecutable { e_type } => write!(
                f,
                "ELF type {e_type} is not an executable (ET_EXEC): not a kernel image"
            ),
            ElfWrongMachine { machine } => write!(
                f,
                "ELF machine {machine:#x} is not x86-64 (EM_X86_64 = 0x3e)"
            ),
            Truncated {
                what,
                index,
                offset,
                size,
                file_len,
            } => {
                write!(f, "kernel image truncated: {what}")?;
                if let Some(i) = index {
                    write!(f, " {i}")?;
                }
                write!(
                    f,
                    " extends past end of file (offset {offset:#x}, size {size}, \
                     file is {file_len} bytes)"
                )
            }
            BadProgramHeader { index, reason } => {
                write!(f, "bad ELF program header {index}: {reason}")
            }
            NoLoadableSegments => write!(f, "ELF has no loadable (PT_LOAD) segments"),
            BadNote { reason, note_type } => {
                write!(f, "malformed ELF note (type {note_type}): {reason}")
            }
            TooManyNotes => write!(f, "too many ELF notes (more than 65536)"),
            NotXenKernel => write!(f, "not a Xen PV kernel (no Xen ELF notes)"),
            BadXenVersion(v) => write!(
                f,
                "kernel is built for '{v}': Xen ELF note XEN_VERSION must start with 'xen-3.0'"
            ),
            UnsupportedLoader { loader, guest_os } => write!(
                f,
                "will only load images built for the generic loader or Linux images \
                 (LOADER '{loader}', GUEST_OS '{guest_os}')"
            ),
            UnknownRequiredFeature(name) => write!(
                f,
                "kernel requires Xen feature '{name}', which this hypervisor does not know"
            ),
            PaddrOffsetWithoutVirtBase => {
                write!(f, "Xen ELF note PADDR_OFFSET is set but VIRT_BASE is not")
            }
            BadKernelRange { reason } => write!(f, "bad kernel address range: {reason}"),
            VirtBaseAboveKernel {
                virt_base,
                virt_kstart,
            } => write!(
                f,
                "VIRT_BASE {virt_base:#x} is above the kernel start {virt_kstart:#x}"
            ),
            EntryOutsideKernel {
                entry,
                virt_kstart,
                virt_kend,
            } => write!(
                f,
                "entry point {entry:#x} is outside the kernel [{virt_kstart:#x}, {virt_kend:#x})"
            ),
            HypercallPageOutsideKernel {
                va,
                virt_kstart,
                virt_kend,
            } => write!(
                f,
                "HYPERCALL_PAGE {va:#x} is not a page inside the kernel \
                 [{virt_kstart:#x}, {virt_kend:#x})"
            ),
            P2mInsideKernel {
                va,
                virt_kstart,
                virt_kend,
            } => write!(
                f,
                "INIT_P2M {va:#x} lies inside the kernel [{virt_kstart:#x}, {virt_kend:#x})"
            ),
        }
    }
}

/// Parse a boot module holding a PV kernel: raw ELF64, bzImage, or compressed ELF.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<KernelImage, LoadError> {
    let (elf, format) = match bzimage::detect(bytes)? {
        bzimage::Detected::Elf => {
            if bytes.len() > limits.max_image_bytes {
                return Err(LoadError::ImageTooLarge {
                    len: bytes.len(),
                    limit: limits.max_image_bytes,
                });
            }
            (bytes.to_vec(), ImageFormat::Elf)
        }
        bzimage::Detected::BzImage { payload } => {
            let (elf, compression) = decompress::payload_to_elf(payload, limits)?;
            (elf, ImageFormat::BzImage { compression })
        }
        bzimage::Detected::Compressed => {
            let (elf, compression) = decompress::payload_to_elf(bytes, limits)?;
            (elf, ImageFormat::Compressed { compression })
        }
    };
    let (info, segments) = notes::parse_xen_elf(&elf)?;
    Ok(KernelImage {
        elf,
        info,
        segments,
        format,
    })
}
