//! Converts the linked ELF64 hypervisor into a flat ELF32 image for multiboot loaders.
//!
//! QEMU's `-kernel` accepts a multiboot1 kernel only as ELF32 (or with load addresses in the
//! header); Xen ships its image the same way. The output has one PT_LOAD segment holding the
//! bytes of every loadable segment at its physical address, with the bss as memsz beyond
//! filesz, and the 32-bit entry point.
use anyhow::{bail, ensure, Context, Result};

fn u16_at(b: &[u8], o: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(
        b.get(o..o + 2).context("truncated ELF")?.try_into()?,
    ))
}
fn u32_at(b: &[u8], o: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(
        b.get(o..o + 4).context("truncated ELF")?.try_into()?,
    ))
}
fn u64_at(b: &[u8], o: usize) -> Result<u64> {
    Ok(u64::from_le_bytes(
        b.get(o..o + 8).context("truncated ELF")?.try_into()?,
    ))
}

struct Load {
    paddr: u64,
    offset: u64,
    filesz: u64,
    memsz: u64,
}

/// Builds the ELF32 image from ELF64 bytes.
pub fn convert(elf64: &[u8]) -> Result<Vec<u8>> {
    ensure!(elf64.get(0..4) == Some(b"\x7fELF"), "not an ELF file");
    ensure!(elf64.get(4) == Some(&2), "not ELF64");
    let entry = u64_at(elf64, 24)?;
    let phoff = u64_at(elf64, 32)? as usize;
    let phentsize = u16_at(elf64, 54)? as usize;
    let phnum = u16_at(elf64, 56)? as usize;
    let mut loads = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if u32_at(elf64, p)? != 1 {
            continue;
        }
        let l = Load {
            offset: u64_at(elf64, p + 8)?,
            paddr: u64_at(elf64, p + 24)?,
            filesz: u64_at(elf64, p + 32)?,
            memsz: u64_at(elf64, p + 40)?,
        };
        if l.memsz > 0 {
            loads.push(l);
        }
    }
    ensure!(!loads.is_empty(), "no loadable segments");
    loads.sort_by_key(|l| l.paddr);
    let base = loads[0].paddr;
    let file_end = loads
        .iter()
        .filter(|l| l.filesz > 0)
        .map(|l| l.paddr + l.filesz)
        .max()
        .unwrap_or(base);
    let mem_end = loads
        .iter()
        .map(|l| l.paddr + l.memsz)
        .max()
        .unwrap_or(base);
    ensure!(mem_end < 1 << 32, "image must load below 4 GiB");
    let mut flat = vec![0u8; (file_end - base) as usize];
    for l in &loads {
        if l.filesz == 0 {
            continue;
        }
        let src = elf64
            .get(l.offset as usize..(l.offset + l.filesz) as usize)
            .context("segment outside file")?;
        let at = (l.paddr - base) as usize;
        flat[at..at + src.len()].copy_from_slice(src);
    }
    if entry >= 1 << 32 {
        bail!("entry point {entry:#x} is not a 32-bit physical address");
    }
    // ELF32 header (52 bytes) + one program header (32 bytes), image at file offset 0x60 so the
    // multiboot headers stay within the first 8 KiB.
    const DATA: usize = 0x60;
    let mut out = Vec::with_capacity(DATA + flat.len());
    out.extend_from_slice(b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0");
    out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out.extend_from_slice(&3u16.to_le_bytes()); // EM_386
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(entry as u32).to_le_bytes());
    out.extend_from_slice(&52u32.to_le_bytes()); // phoff
    out.extend_from_slice(&0u32.to_le_bytes()); // shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // flags
    out.extend_from_slice(&52u16.to_le_bytes()); // ehsize
    out.extend_from_slice(&32u16.to_le_bytes()); // phentsize
    out.extend_from_slice(&1u16.to_le_bytes()); // phnum
    out.extend_from_slice(&40u16.to_le_bytes()); // shentsize
    out.extend_from_slice(&0u16.to_le_bytes()); // shnum
    out.extend_from_slice(&0u16.to_le_bytes()); // shstrndx
    out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    out.extend_from_slice(&(DATA as u32).to_le_bytes());
    out.extend_from_slice(&(base as u32).to_le_bytes()); // vaddr
    out.extend_from_slice(&(base as u32).to_le_bytes()); // paddr
    out.extend_from_slice(&(flat.len() as u32).to_le_bytes());
    out.extend_from_slice(&((mem_end - base) as u32).to_le_bytes());
    out.extend_from_slice(&7u32.to_le_bytes()); // RWX
    out.extend_from_slice(&0x1000u32.to_le_bytes());
    out.resize(DATA, 0);
    out.extend_from_slice(&flat);
    // The multiboot1 header must sit in the first 8 KiB, 4-byte aligned.
    let mb1 = out
        .windows(4)
        .position(|w| w == 0x1BAD_B002u32.to_le_bytes())
        .context("no multiboot1 header")?;
    ensure!(
        mb1 < 8192 && mb1 % 4 == 0,
        "multiboot1 header at {mb1:#x} is not usable"
    );
    Ok(out)
}
