//! Boot-module format detection and the Linux bzImage setup header (boot protocol >= 2.08).
//!
//! Facts used (Linux `Documentation/arch/x86/boot.rst`, `asm/bootparam.h`): the setup header
//! starts at 0x1F1; `setup_sects` (u8 at 0x1F1, 0 means 4); "HdrS" at 0x202; protocol version
//! (u16 at 0x206); `payload_offset` (u32 at 0x248) and `payload_length` (u32 at 0x24C), valid
//! from 2.08. The payload starts `(setup_sects + 1) * 512 + payload_offset` bytes into the file.
//! Invariant: a returned payload slice always lies inside the input.

use super::{decompress, LoadError};

pub(super) const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

const OFF_SETUP_SECTS: usize = 0x1F1;
const OFF_HEADER_MAGIC: usize = 0x202;
const OFF_VERSION: usize = 0x206;
const OFF_PAYLOAD_OFFSET: usize = 0x248;
const OFF_PAYLOAD_LENGTH: usize = 0x24C;
/// End of the setup header fields we read.
const SETUP_HEADER_END: usize = 0x250;
const MIN_VERSION: u16 = 0x0208;

/// What a boot module is.
#[derive(Debug)]
pub(super) enum Detected<'a> {
    /// A raw ELF file.
    Elf,
    /// A bzImage; `payload` is the (usually compressed) vmlinux inside it.
    BzImage { payload: &'a [u8] },
    /// A bare compressed stream of a supported kind.
    Compressed,
}

fn le16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([*s.first()?, *s.get(1)?]))
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(s))
}

/// Classify a boot module.
pub(super) fn detect(bytes: &[u8]) -> Result<Detected<'_>, LoadError> {
    if bytes.starts_with(ELF_MAGIC) {
        return Ok(Detected::Elf);
    }
    if bytes.get(OFF_HEADER_MAGIC..OFF_HEADER_MAGIC + 4) == Some(b"HdrS") {
        return bzimage_payload(bytes).map(|payload| Detected::BzImage { payload });
    }
    if decompress::sniff(bytes)?.is_some() {
        return Ok(Detected::Compressed);
    }
    let mut first_bytes = [0u8; 4];
    for (dst, src) in first_bytes.iter_mut().zip(bytes) {
        *dst = *src;
    }
    Err(LoadError::UnknownFormat {
        first_bytes,
        len: bytes.len(),
    })
}

/// Locate the payload of a bzImage whose "HdrS" magic has been seen.
fn bzimage_payload(bytes: &[u8]) -> Result<&[u8], LoadError> {
    let truncated = || LoadError::Truncated {
        what: "bzImage setup header",
        index: None,
        offset: OFF_SETUP_SECTS as u64,
        size: (SETUP_HEADER_END - OFF_SETUP_SECTS) as u64,
        file_len: bytes.len(),
    };
    let version = le16(bytes, OFF_VERSION).ok_or_else(truncated)?;
    if version < MIN_VERSION {
        return Err(LoadError::BzImageTooOld { version });
    }
    if bytes.len() < SETUP_HEADER_END {
        return Err(truncated());
    }
    let setup_sects = match bytes.get(OFF_SETUP_SECTS).copied().ok_or_else(truncated)? {
        0 => 4,
        n => u64::from(n),
    };
    let payload_offset = le32(bytes, OFF_PAYLOAD_OFFSET).ok_or_else(truncated)?;
    let payload_length = le32(bytes, OFF_PAYLOAD_LENGTH).ok_or_else(truncated)?;
    // (setup_sects + 1) * 512 <= 256 * 512, + u32: cannot overflow u64.
    let start = (setup_sects + 1) * 512 + u64::from(payload_offset);
    let end = start + u64::from(payload_length);
    let out_of_bounds = || LoadError::BzImagePayloadOutOfBounds {
        offset: start,
        length: u64::from(payload_length),
        file_len: bytes.len(),
    };
    let start = usize::try_from(start).map_err(|_| out_of_bounds())?;
    let end = usize::try_from(end).map_err(|_| out_of_bounds())?;
    bytes.get(start..end).ok_or_else(out_of_bounds)
}
