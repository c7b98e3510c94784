//! Bounded decompression of a kernel payload (gzip, xz, lz4 legacy, zstd) into an ELF buffer.
//!
//! Invariants: every decoder checks the output size *while* decoding, so no output buffer
//! grows past `max_image_bytes + 1` bytes (plus, for xz and zstd, the decoder's own
//! dictionary/window, capped at [`MAX_XZ_DICT`] / [`MAX_ZSTD_WINDOW`]). Corrupt or truncated
//! input gives [`LoadError::Decompress`]; nothing here panics. Bytes after the end of the
//! compressed stream (Linux appends the decompressed size as a u32) are ignored, except for
//! lz4 legacy frames, which have no end marker: there a final 4-byte word is taken as that
//! size trailer and must match the output length.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::bzimage::ELF_MAGIC;
use super::{Compression, Limits, LoadError};

/// Largest xz dictionary accepted. Linux's `scripts/xz_wrap.sh` uses 32 MiB.
pub(super) const MAX_XZ_DICT: usize = 64 << 20;
/// Largest zstd window accepted: `zstd -22 --ultra` reading a pipe declares 128 MiB.
pub(super) const MAX_ZSTD_WINDOW: u64 = 128 << 20;
/// An lz4 legacy chunk never decompresses to more than this.
const LZ4_CHUNK_MAX: usize = 8 << 20;
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;

/// Identify a compressed stream by its magic. `Ok(None)`: not a known compressed stream;
/// `Err`: a known but unsupported compression.
pub(super) fn sniff(data: &[u8]) -> Result<Option<Compression>, LoadError> {
    let unsupported = |name| Err(LoadError::UnsupportedCompression(name));
    if data.starts_with(&[0x1f, 0x8b]) {
        Ok(Some(Compression::Gzip))
    } else if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Ok(Some(Compression::Xz))
    } else if data.starts_with(&LZ4_LEGACY_MAGIC.to_le_bytes()) {
        Ok(Some(Compression::Lz4))
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Some(Compression::Zstd))
    } else if data.starts_with(b"BZh") && matches!(data.get(3), Some(b'1'..=b'9')) {
        unsupported("bzip2")
    } else if data.starts_with(&[0x5d, 0x00, 0x00]) {
        unsupported("lzma")
    } else if data.starts_with(&[0x89, b'L', b'Z', b'O']) {
        unsupported("lzo")
    } else if data.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        unsupported("lz4 frame format (Linux uses the legacy lz4 format)")
    } else if data.starts_with(&[0x1f, 0x9e]) {
        unsupported("old-style gzip (1f 9e)")
    } else {
        Ok(None)
    }
}

/// Turn a bzImage payload (or a bare compressed module) into ELF bytes.
pub(super) fn payload_to_elf(
    payload: &[u8],
    limits: &Limits,
) -> Result<(Vec<u8>, Compression), LoadError> {
    let limit = limits.max_image_bytes;
    if payload.starts_with(ELF_MAGIC) {
        if payload.len() > limit {
            return Err(LoadError::ImageTooLarge {
                len: payload.len(),
                limit,
            });
        }
        return Ok((payload.to_vec(), Compression::None));
    }
    let compression = match sniff(payload)? {
        Some(c) => c,
        None => {
            let mut first_bytes = [0u8; 4];
            for (dst, src) in first_bytes.iter_mut().zip(payload) {
                *dst = *src;
            }
            return Err(LoadError::UnknownFormat {
                first_bytes,
                len: payload.len(),
            });
        }
    };
    let out = match compression {
        Compression::Gzip => gunzip(payload, limit),
        Compression::Xz => unxz(payload, limit),
        Compression::Lz4 => unlz4(payload, limit),
        Compression::Zstd => unzstd(payload, limit),
        Compression::None => Ok(Vec::new()),
    }
    .map_err(|e| e.into_load_error(compression, limit))?;
    if !out.starts_with(ELF_MAGIC) {
        return Err(LoadError::PayloadNotElf { compression });
    }
    Ok((out, compression))
}

/// Decoder-internal error, tagged with the compression by the caller.
#[derive(Debug)]
enum DecodeError {
    TooLarge,
    Corrupt(String),
}

impl DecodeError {
    fn into_load_error(self, compression: Compression, limit: usize) -> LoadError {
        match self {
            DecodeError::TooLarge => LoadError::DecompressedTooLarge { compression, limit },
            DecodeError::Corrupt(detail) => LoadError::Decompress {
                compression,
                detail,
            },
        }
    }
}

fn corrupt(msg: &str) -> DecodeError {
    DecodeError::Corrupt(msg.to_string())
}

/// Hard cap on the output buffer: one byte over the limit, so "exactly the limit" is accepted
/// and anything larger is detected.
fn cap(limit: usize) -> usize {
    limit.saturating_add(1)
}

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3, reflected, as used by gzip)

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32_TABLE: [u32; 256] = crc32_table();

pub(super) fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        let idx = ((c ^ u32::from(b)) & 0xff) as usize;
        c = CRC32_TABLE.get(idx).copied().unwrap_or(0) ^ (c >> 8);
    }
    !c
}

// ---------------------------------------------------------------------------------------------
// gzip (RFC 1952) around raw DEFLATE

const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;
const FRESERVED: u8 = 0xe0;

fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let hdr_truncated = || corrupt("truncated gzip header");
    let fixed = data.get(..10).ok_or_else(hdr_truncated)?;
    let (method, flags) = match fixed {
        [_, _, m, f, ..] => (*m, *f),
        _ => return Err(hdr_truncated()),
    };
    if method != 8 {
        return Err(DecodeError::Corrupt(format!(
            "compression method {method} is not deflate"
        )));
    }
    if flags & FRESERVED != 0 {
        return Err(corrupt("reserved gzip header flags are set"));
    }
    let mut pos = 10usize;
    if flags & FEXTRA != 0 {
        let xlen = data.get(pos..pos + 2).ok_or_else(hdr_truncated)?;
        let xlen = usize::from(u16::from_le_bytes([
            *xlen.first().ok_or_else(hdr_truncated)?,
            *xlen.get(1).ok_or_else(hdr_truncated)?,
        ]));
        pos = pos + 2 + xlen;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let rest = data.get(pos..).ok_or_else(hdr_truncated)?;
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(hdr_truncated)?;
            pos = pos + nul + 1;
        }
    }
    if flags & FHCRC != 0 {
        let stored = data.get(pos..pos + 2).ok_or_else(hdr_truncated)?;
        let header = data.get(..pos).ok_or_else(hdr_truncated)?;
        let want = (crc32(header) & 0xffff) as u16;
        if stored != want.to_le_bytes() {
            return Err(corrupt("gzip header CRC mismatch"));
        }
        pos += 2;
    }
    let deflate = data.get(pos..).ok_or_else(hdr_truncated)?;
    let (out, used) = inflate(deflate, limit)?;

    let trailer = used
        .checked_add(8)
        .and_then(|end| deflate.get(used..end))
        .ok_or_else(|| corrupt("truncated: missing CRC32/size trailer"))?;
    let (crc, isize) = match trailer {
        [a, b, c, d, e, f, g, h] => (
            u32::from_le_bytes([*a, *b, *c, *d]),
            u32::from_le_bytes([*e, *f, *g, *h]),
        ),
        _ => return Err(corrupt("truncated: missing CRC32/size trailer")),
    };
    let actual = crc32(&out);
    if crc != actual {
        return Err(DecodeError::Corrupt(format!(
            "CRC32 mismatch (stored {crc:#010x}, computed {actual:#010x})"
        )));
    }
    if isize != out.len() as u32 {
        return Err(DecodeError::Corrupt(format!(
            "size mismatch (trailer says {isize} bytes, decompressed {})",
            out.len()
        )));
    }
    Ok(out)
}

/// Inflate raw DEFLATE into a buffer grown up to `limit + 1`; returns output and input used.
fn inflate(input: &[u8], limit: usize) -> Result<(Vec<u8>, usize), DecodeError> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;

    let hard_cap = cap(limit);
    let mut decomp = Box::<DecompressorOxide>::default();
    let mut out: Vec<u8> = vec![0; input.len().saturating_mul(4).max(4096).min(hard_cap)];
    let mut in_pos = 0usize;
    let mut out_pos = 0usize;
    loop {
        let rest = input.get(in_pos..).unwrap_or(&[]);
        let (status, in_used, out_used) = decompress(
            &mut decomp,
            rest,
            &mut out,
            out_pos,
            inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
        );
        in_pos = in_pos.saturating_add(in_used).min(input.len());
        out_pos = out_pos.saturating_add(out_used).min(out.len());
        match status {
            TINFLStatus::Done => {
                if out_pos > limit {
                    return Err(DecodeError::TooLarge);
                }
                out.truncate(out_pos);
                return Ok((out, in_pos));
            }
            TINFLStatus::HasMoreOutput => {
                if out.len() >= hard_cap {
                    return Err(DecodeError::TooLarge);
                }
                let new_len = out.len().saturating_mul(2).min(hard_cap);
                out.resize(new_len, 0);
            }
            TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                return Err(corrupt("truncated deflate stream"));
            }
            other => {
                return Err(DecodeError::Corrupt(format!(
                    "invalid deflate data ({other:?}) after {out_pos} output bytes"
                )));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// xz (Linux: --check=crc32 plus the x86 BCJ filter)

fn unxz(data: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    use xz4rust::XzDecoder;

    const STEP: usize = 1 << 20;
    let hard_cap = cap(limit);
    // Heap-allocated decoder (its state is ~32 KiB; keep it off the hypervisor stack). The
    // dictionary starts small and grows to the size the stream declares, at most MAX_XZ_DICT.
    let mut dec = XzDecoder::in_heap_with_alloc_dict_size(4096, MAX_XZ_DICT);
    let mut out: Vec<u8> = Vec::new();
    let mut in_pos = 0usize;
    loop {
        let start = out.len();
        if start >= hard_cap {
            return Err(DecodeError::TooLarge);
        }
        out.resize(start.saturating_add(STEP).min(hard_cap), 0);
        let rest = data.get(in_pos..).unwrap_or(&[]);
        let dst = out.get_mut(start..).unwrap_or(&mut []);
        let result = dec.decode(rest, dst);
        let res = match result {
            Ok(r) => r,
            Err(xz4rust::XzError::NeedsLargerInputBuffer) => {
                return Err(corrupt("truncated xz stream"));
            }
            Err(e) => return Err(DecodeError::Corrupt(format!("{e}"))),
        };
        in_pos = in_pos.saturating_add(res.input_consumed()).min(data.len());
        out.truncate(start.saturating_add(res.output_produced()));
        if res.is_end_of_stream() {
            if out.len() > limit {
                return Err(DecodeError::TooLarge);
            }
            return Ok(out);
        }
        if !res.made_progress() {
            return Err(if in_pos >= data.len() {
                corrupt("truncated xz stream")
            } else {
                corrupt("xz decoder made no progress")
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// lz4 legacy frame: magic, then { u32 LE compressed size, lz4 block } chunks of <= 8 MiB output

fn unlz4(data: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let hard_cap = cap(limit);
    let mut out: Vec<u8> = Vec::new();
    let mut pos = 4usize; // the magic was checked by sniff()
    let mut chunks = 0u32;
    loop {
        let remaining = data.len().saturating_sub(pos);
        if remaining == 0 {
            break;
        }
        let word = data
            .get(pos..pos.saturating_add(4))
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| corrupt("truncated lz4 chunk header"))?;
        if word == LZ4_LEGACY_MAGIC {
            pos += 4;
            continue;
        }
        if remaining == 4 && chunks > 0 {
            // Linux's size_append trailer: the total decompressed size.
            if word != out.len() as u32 {
                return Err(DecodeError::Corrupt(format!(
                    "size trailer says {word} bytes but {} were decompressed \
                     (truncated stream?)",
                    out.len()
                )));
            }
            break;
        }
        pos += 4;
        let size = usize::try_from(word).map_err(|_| corrupt("lz4 chunk too large"))?;
        let block = pos
            .checked_add(size)
            .and_then(|end| data.get(pos..end))
            .ok_or_else(|| {
                DecodeError::Corrupt(format!(
                    "truncated: lz4 chunk {chunks} needs {size} bytes but only {} remain",
                    data.len().saturating_sub(pos)
                ))
            })?;
        let start = out.len();
        let room = hard_cap.saturating_sub(start);
        if room == 0 {
            return Err(DecodeError::TooLarge);
        }
        let avail = room.min(LZ4_CHUNK_MAX);
        out.resize(start + avail, 0);
        let dst = out.get_mut(start..).unwrap_or(&mut []);
        match lz4_flex::block::decompress_into(block, dst) {
            Ok(n) => out.truncate(start.saturating_add(n)),
            Err(lz4_flex::block::DecompressError::OutputTooSmall { .. })
                if avail < LZ4_CHUNK_MAX =>
            {
                return Err(DecodeError::TooLarge);
            }
            Err(e) => {
                return Err(DecodeError::Corrupt(format!("lz4 chunk {chunks}: {e}")));
            }
        }
        if out.len() > limit {
            return Err(DecodeError::TooLarge);
        }
        pos += size;
        chunks = chunks.saturating_add(1);
    }
    if chunks == 0 {
        return Err(corrupt("lz4 stream holds no data"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// zstd (one frame)

fn unzstd(data: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

    let zerr = |e: &dyn core::fmt::Display| DecodeError::Corrupt(format!("{e}"));
    let mut src: &[u8] = data;
    let mut dec = FrameDecoder::new();
    dec.set_max_window_size(MAX_ZSTD_WINDOW);
    dec.init(&mut src).map_err(|e| zerr(&e))?;
    let mut out: Vec<u8> = Vec::new();
    loop {
        dec.decode_blocks(&mut src, BlockDecodingStrategy::UptoBytes(1 << 20))
            .map_err(|e| zerr(&e))?;
        if out.len().saturating_add(dec.can_collect()) > limit {
            return Err(DecodeError::TooLarge);
        }
        dec.collect_to_writer(&mut out).map_err(|e| zerr(&e))?;
        if dec.is_finished() {
            // After the last block everything is collectable; drain what remains.
            if out.len().saturating_add(dec.can_collect()) > limit {
                return Err(DecodeError::TooLarge);
            }
            dec.collect_to_writer(&mut out).map_err(|e| zerr(&e))?;
            break;
        }
    }
    if let (Some(stored), Some(computed)) =
        (dec.get_checksum_from_data(), dec.get_calculated_checksum())
    {
        if stored != computed {
            return Err(DecodeError::Corrupt(format!(
                "content checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            )));
        }
    }
    Ok(out)
}
