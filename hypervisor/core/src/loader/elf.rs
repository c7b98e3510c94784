//! Minimal bounds-checked ELF64 little-endian reader (header, program and section headers).
//!
//! Hand-written rather than `goblin`/`elf`: we need ~100 lines of it, every offset must be
//! validated against hostile input with our own error messages, and it keeps the hypervisor's
//! dependency set small. Invariants established by [`ElfFile::parse`]: the program-header and
//! section-header tables lie entirely inside the file (as Xen's `elf_init` requires), so
//! [`ElfFile::phdr`] / [`ElfFile::shdr`] of an index below the count always succeed.

use super::bzimage::ELF_MAGIC;
use super::LoadError;

const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: u64 = 56;
const SHDR_SIZE: u64 = 64;

pub(super) const PT_LOAD: u32 = 1;
pub(super) const PT_NOTE: u32 = 4;
pub(super) const SHT_NOTE: u32 = 7;
/// PF_X | PF_W | PF_R.
pub(super) const PF_RWX: u32 = 7;

/// Read a little-endian unsigned integer of `N` bytes at `off`.
fn read<const N: usize>(b: &[u8], off: u64) -> Option<[u8; N]> {
    let off = usize::try_from(off).ok()?;
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

pub(super) fn u16_at(b: &[u8], off: u64) -> Option<u16> {
    read::<2>(b, off).map(u16::from_le_bytes)
}

pub(super) fn u32_at(b: &[u8], off: u64) -> Option<u32> {
    read::<4>(b, off).map(u32::from_le_bytes)
}

pub(super) fn u64_at(b: &[u8], off: u64) -> Option<u64> {
    read::<8>(b, off).map(u64::from_le_bytes)
}

/// `bytes[offset .. offset + size]`, or `None` if any part is outside the file.
pub(super) fn range(bytes: &[u8], offset: u64, size: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let end = usize::try_from(offset.checked_add(size)?).ok()?;
    bytes.get(start..end)
}

/// A validated ELF64 x86-64 executable.
pub(super) struct ElfFile<'a> {
    pub bytes: &'a [u8],
    pub entry: u64,
    phoff: u64,
    phentsize: u64,
    pub phnum: u16,
    shoff: u64,
    shentsize: u64,
    pub shnum: u16,
}

/// One program header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Phdr {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_paddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
}

/// One section header (the fields we use).
#[derive(Debug, Clone, Copy)]
pub(super) struct Shdr {
    pub sh_type: u32,
    pub sh_offset: u64,
    pub sh_size: u64,
}

impl<'a> ElfFile<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, LoadError> {
        let file_len = bytes.len();
        if !bytes.starts_with(ELF_MAGIC) {
            return Err(LoadError::BadElfHeader("missing ELF magic"));
        }
        let class = bytes.get(4).copied();
        if class == Some(ELFCLASS32) {
            return Err(LoadError::Elf32);
        }
        if bytes.len() < EHDR_SIZE {
            return Err(LoadError::Truncated {
                what: "ELF header",
                index: None,
                offset: 0,
                size: EHDR_SIZE as u64,
                file_len,
            });
        }
        if class != Some(ELFCLASS64) {
            return Err(LoadError::BadElfHeader("unknown ELF class"));
        }
        if bytes.get(5).copied() != Some(ELFDATA2LSB) {
            return Err(LoadError::BadElfHeader("not little-endian"));
        }
        // The header is 64 bytes long, so these reads cannot fail; map defensively anyway.
        let hdr = |off| LoadError::Truncated {
            what: "ELF header",
            index: None,
            offset: off,
            size: EHDR_SIZE as u64,
            file_len,
        };
        let e_type = u16_at(bytes, 0x10).ok_or_else(|| hdr(0x10))?;
        let e_machine = u16_at(bytes, 0x12).ok_or_else(|| hdr(0x12))?;
        if e_type != ET_EXEC {
            return Err(LoadError::ElfNotExecutable { e_type });
        }
        if e_machine != EM_X86_64 {
            return Err(LoadError::ElfWrongMachine { machine: e_machine });
        }
        let entry = u64_at(bytes, 0x18).ok_or_else(|| hdr(0x18))?;
        let phoff = u64_at(bytes, 0x20).ok_or_else(|| hdr(0x20))?;
        let shoff = u64_at(bytes, 0x28).ok_or_else(|| hdr(0x28))?;
        let phentsize = u64::from(u16_at(bytes, 0x36).ok_or_else(|| hdr(0x36))?);
        let phnum = u16_at(bytes, 0x38).ok_or_else(|| hdr(0x38))?;
        let shentsize = u64::from(u16_at(bytes, 0x3A).ok_or_else(|| hdr(0x3A))?);
        let shnum = u16_at(bytes, 0x3C).ok_or_else(|| hdr(0x3C))?;

        if phnum != 0 && phentsize < PHDR_SIZE {
            return Err(LoadError::BadElfHeader(
                "program header entry size is smaller than Elf64_Phdr",
            ));
        }
        if shnum != 0 && shentsize < SHDR_SIZE {
            return Err(LoadError::BadElfHeader(
                "section header entry size is smaller than Elf64_Shdr",
            ));
        }
        // Both tables must fit in the file (Xen elf_init does the same check).
        let table = |what, off: u64, entsize: u64, num: u16| {
            let size = entsize * u64::from(num); // <= 65535 * 65535: no overflow
            match range(bytes, off, size) {
                Some(_) => Ok(()),
                None if num == 0 => Ok(()),
                None => Err(LoadError::Truncated {
                    what,
                    index: None,
                    offset: off,
                    size,
                    file_len,
                }),
            }
        };
        table("program header table", phoff, phentsize, phnum)?;
        table("section header table", shoff, shentsize, shnum)?;
        Ok(Self {
            bytes,
            entry,
            phoff,
            phentsize,
            phnum,
            shoff,
            shentsize,
            shnum,
        })
    }

    fn truncated(&self, what: &'static str, index: u16, offset: u64, size: u64) -> LoadError {
        LoadError::Truncated {
            what,
            index: Some(u32::from(index)),
            offset,
            size,
            file_len: self.bytes.len(),
        }
    }

    /// Program header `index` (< `phnum`).
    pub fn phdr(&self, index: u16) -> Result<Phdr, LoadError> {
        let base = self
            .phentsize
            .checked_mul(u64::from(index))
            .and_then(|o| o.checked_add(self.phoff))
            .ok_or_else(|| self.truncated("program header", index, self.phoff, PHDR_SIZE))?;
        let b = range(self.bytes, base, PHDR_SIZE)
            .ok_or_else(|| self.truncated("program header", index, base, PHDR_SIZE))?;
        let field32 = |o| u32_at(b, o).unwrap_or(0);
        let field64 = |o| u64_at(b, o).unwrap_or(0);
        Ok(Phdr {
            p_type: field32(0),
            p_flags: field32(4),
            p_offset: field64(8),
            p_paddr: field64(24),
            p_filesz: field64(32),
            p_memsz: field64(40),
        })
    }

    /// Section header `index` (< `shnum`).
    pub fn shdr(&self, index: u16) -> Result<Shdr, LoadError> {
        let base = self
            .shentsize
            .checked_mul(u64::from(index))
            .and_then(|o| o.checked_add(self.shoff))
            .ok_or_else(|| self.truncated("section header", index, self.shoff, SHDR_SIZE))?;
        let b = range(self.bytes, base, SHDR_SIZE)
            .ok_or_else(|| self.truncated("section header", index, base, SHDR_SIZE))?;
        Ok(Shdr {
            sh_type: u32_at(b, 4).unwrap_or(0),
            sh_offset: u64_at(b, 24).unwrap_or(0),
            sh_size: u64_at(b, 32).unwrap_or(0),
        })
    }

    /// The file bytes `[offset, offset + size)` of program header / section `index`.
    pub fn contents(
        &self,
        what: &'static str,
        index: u16,
        offset: u64,
        size: u64,
    ) -> Result<&'a [u8], LoadError> {
        range(self.bytes, offset, size).ok_or_else(|| self.truncated(what, index, offset, size))
    }
}
