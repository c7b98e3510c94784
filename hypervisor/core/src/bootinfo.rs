//! Multiboot1 and multiboot2 boot information, parsed from physical memory.
//!
//! The loader's structures are untrusted input like any other: every read goes through
//! [`PhysRead`], lengths are bounded, and a malformed structure is an error, not a panic.
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// EAX value a multiboot1 loader passes.
pub const MULTIBOOT1_MAGIC: u32 = 0x2BAD_B002;
/// EAX value a multiboot2 loader passes.
pub const MULTIBOOT2_MAGIC: u32 = 0x36D7_6289;

/// Longest string read from boot information.
const MAX_STRING: usize = 4096;
/// Most modules accepted.
const MAX_MODULES: u32 = 64;
/// Most memory-map entries accepted.
const MAX_MMAP_ENTRIES: usize = 512;

/// Reads physical memory.
pub trait PhysRead {
    /// Fills `buf` from physical address `paddr`; false if the range is not readable.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool;
}

/// A memory-map entry type: usable RAM.
pub const E820_RAM: u32 = 1;
/// A memory-map entry type: reserved.
pub const E820_RESERVED: u32 = 2;
/// A memory-map entry type: ACPI reclaimable.
pub const E820_ACPI: u32 = 3;
/// A memory-map entry type: ACPI NVS.
pub const E820_NVS: u32 = 4;

/// One region of the firmware memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    pub base: u64,
    pub len: u64,
    pub kind: u32,
}

/// A boot module: `[start, end)` in physical memory plus its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootModule {
    pub start: u64,
    pub end: u64,
    pub cmdline: String,
}

/// What the boot loader told us.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    pub cmdline: String,
    pub loader_name: Option<String>,
    pub modules: Vec<BootModule>,
    pub memory: Vec<MemRegion>,
    /// ACPI RSDP copied by a multiboot2 loader.
    pub rsdp: Option<Vec<u8>>,
    /// Which protocol delivered this information.
    pub protocol: u8,
}

/// A malformed or unusable boot information structure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    BadMagic(u32),
    Unreadable { what: &'static str, addr: u64 },
    TooMany { what: &'static str, count: u64 },
    Malformed(&'static str),
    NoMemoryMap,
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootInfoError::BadMagic(m) => {
                write!(f, "not started by a multiboot loader (magic {m:#x})")
            }
            BootInfoError::Unreadable { what, addr } => {
                write!(f, "boot information: cannot read {what} at {addr:#x}")
            }
            BootInfoError::TooMany { what, count } => {
                write!(f, "boot information: too many {what} ({count})")
            }
            BootInfoError::Malformed(why) => write!(f, "boot information malformed: {why}"),
            BootInfoError::NoMemoryMap => write!(f, "the boot loader provided no memory map"),
        }
    }
}

fn read_u32(m: &dyn PhysRead, addr: u64, what: &'static str) -> Result<u32, BootInfoError> {
    let mut b = [0u8; 4];
    if m.read(addr, &mut b) {
        Ok(u32::from_le_bytes(b))
    } else {
        Err(BootInfoError::Unreadable { what, addr })
    }
}

fn read_u64(m: &dyn PhysRead, addr: u64, what: &'static str) -> Result<u64, BootInfoError> {
    let mut b = [0u8; 8];
    if m.read(addr, &mut b) {
        Ok(u64::from_le_bytes(b))
    } else {
        Err(BootInfoError::Unreadable { what, addr })
    }
}

/// Reads a NUL-terminated string of at most `MAX_STRING` bytes (lossy UTF-8).
fn read_cstr(
    m: &dyn PhysRead,
    addr: u64,
    limit: usize,
    what: &'static str,
) -> Result<String, BootInfoError> {
    let mut bytes = Vec::new();
    let limit = limit.min(MAX_STRING);
    while bytes.len() < limit {
        let mut b = [0u8; 1];
        let a = addr
            .checked_add(bytes.len() as u64)
            .ok_or(BootInfoError::Unreadable { what, addr })?;
        if !m.read(a, &mut b) {
            return Err(BootInfoError::Unreadable { what, addr });
        }
        if b[0] == 0 {
            break;
        }
        bytes.push(b[0]);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Parses the boot information for the loader magic in EAX and the address in EBX.
pub fn parse(magic: u32, info: u64, m: &dyn PhysRead) -> Result<BootInfo, BootInfoError> {
    match magic {
        MULTIBOOT1_MAGIC => parse_mb1(info, m),
        MULTIBOOT2_MAGIC => parse_mb2(info, m),
        other => Err(BootInfoError::BadMagic(other)),
    }
}

fn parse_mb1(info: u64, m: &dyn PhysRead) -> Result<BootInfo, BootInfoError> {
    let flags = read_u32(m, info, "multiboot flags")?;
    let mut bi = BootInfo {
        protocol: 1,
        ..BootInfo::default()
    };
    if flags & (1 << 2) != 0 {
        let p = read_u32(m, info + 16, "command line pointer")?;
        bi.cmdline = read_cstr(m, u64::from(p), MAX_STRING, "command line")?;
    }
    if flags & (1 << 9) != 0 {
        let p = read_u32(m, info + 64, "loader name pointer")?;
        bi.loader_name = Some(read_cstr(m, u64::from(p), 256, "loader name")?);
    }
    if flags & (1 << 3) != 0 {
        let count = read_u32(m, info + 20, "module count")?;
        let addr = u64::from(read_u32(m, info + 24, "module list pointer")?);
        if count > MAX_MODULES {
            return Err(BootInfoError::TooMany {
                what: "modules",
                count: count.into(),
            });
        }
        for i in 0..u64::from(count) {
            let e = addr + i * 16;
            let start = u64::from(read_u32(m, e, "module start")?);
            let end = u64::from(read_u32(m, e + 4, "module end")?);
            let s = read_u32(m, e + 8, "module string")?;
            if end < start {
                return Err(BootInfoError::Malformed("module ends before it starts"));
            }
            let cmdline = if s != 0 {
                read_cstr(m, u64::from(s), MAX_STRING, "module string")?
            } else {
                String::new()
            };
            bi.modules.push(BootModule {
                start,
                end,
                cmdline,
            });
        }
    }
    if flags & (1 << 6) != 0 {
        let len = u64::from(read_u32(m, info + 44, "memory map length")?);
        let addr = u64::from(read_u32(m, info + 48, "memory map pointer")?);
        let mut off = 0u64;
        while off + 24 <= len {
            let size = u64::from(read_u32(m, addr + off, "memory map entry size")?);
            if size < 20 {
                return Err(BootInfoError::Malformed(
                    "memory map entry shorter than 20 bytes",
                ));
            }
            let base = read_u64(m, addr + off + 4, "memory map entry")?;
            let rlen = read_u64(m, addr + off + 12, "memory map entry")?;
            let kind = read_u32(m, addr + off + 20, "memory map entry")?;
            push_region(&mut bi.memory, base, rlen, kind)?;
            off += size + 4;
        }
    } else if flags & 1 != 0 {
        // Only mem_lower/mem_upper (in KiB): conventional memory and memory above 1 MiB.
        let lower = u64::from(read_u32(m, info + 4, "mem_lower")?);
        let upper = u64::from(read_u32(m, info + 8, "mem_upper")?);
        push_region(&mut bi.memory, 0, lower * 1024, E820_RAM)?;
        push_region(&mut bi.memory, 1 << 20, upper * 1024, E820_RAM)?;
    }
    if bi.memory.is_empty() {
        return Err(BootInfoError::NoMemoryMap);
    }
    Ok(bi)
}

fn push_region(
    v: &mut Vec<MemRegion>,
    base: u64,
    len: u64,
    kind: u32,
) -> Result<(), BootInfoError> {
    if v.len() >= MAX_MMAP_ENTRIES {
        return Err(BootInfoError::TooMany {
            what: "memory map entries",
            count: v.len() as u64 + 1,
        });
    }
    if len != 0 && base.checked_add(len).is_some() {
        v.push(MemRegion { base, len, kind });
    }
    Ok(())
}

fn parse_mb2(info: u64, m: &dyn PhysRead) -> Result<BootInfo, BootInfoError> {
    if !info.is_multiple_of(8) {
        return Err(BootInfoError::Malformed(
            "multiboot2 information not 8-byte aligned",
        ));
    }
    let total = u64::from(read_u32(m, info, "multiboot2 total size")?);
    if !(16..=(1 << 20)).contains(&total) {
        return Err(BootInfoError::Malformed(
            "multiboot2 total size out of range",
        ));
    }
    let mut bi = BootInfo {
        protocol: 2,
        ..BootInfo::default()
    };
    let mut off = 8u64;
    while off + 8 <= total {
        let tag = info + off;
        let ty = read_u32(m, tag, "multiboot2 tag")?;
        let size = u64::from(read_u32(m, tag + 4, "multiboot2 tag")?);
        if size < 8 || off + size > total {
            return Err(BootInfoError::Malformed("multiboot2 tag size out of range"));
        }
        let payload_len = (size - 8) as usize;
        match ty {
            0 => break,
            1 => bi.cmdline = read_cstr(m, tag + 8, payload_len, "command line")?,
            2 => bi.loader_name = Some(read_cstr(m, tag + 8, payload_len, "loader name")?),
            3 => {
                if size < 16 {
                    return Err(BootInfoError::Malformed("module tag too short"));
                }
                if bi.modules.len() as u32 >= MAX_MODULES {
                    return Err(BootInfoError::TooMany {
                        what: "modules",
                        count: u64::from(MAX_MODULES) + 1,
                    });
                }
                let start = u64::from(read_u32(m, tag + 8, "module start")?);
                let end = u64::from(read_u32(m, tag + 12, "module end")?);
                if end < start {
                    return Err(BootInfoError::Malformed("module ends before it starts"));
                }
                let cmdline = read_cstr(m, tag + 16, (size - 16) as usize, "module string")?;
                bi.modules.push(BootModule {
                    start,
                    end,
                    cmdline,
                });
            }
            6 => {
                let esize = u64::from(read_u32(m, tag + 8, "memory map entry size")?);
                if esize < 24 {
                    return Err(BootInfoError::Malformed("memory map entry size below 24"));
                }
                let mut e = 16u64;
                while e + esize <= size {
                    let base = read_u64(m, tag + e, "memory map entry")?;
                    let len = read_u64(m, tag + e + 8, "memory map entry")?;
                    let kind = read_u32(m, tag + e + 16, "memory map entry")?;
                    push_region(&mut bi.memory, base, len, kind)?;
                    e += esize;
                }
            }
            14 | 15 => {
                let mut buf = alloc::vec![0u8; payload_len.min(64)];
                if !m.read(tag + 8, &mut buf) {
                    return Err(BootInfoError::Unreadable {
                        what: "ACPI RSDP",
                        addr: tag + 8,
                    });
                }
                if bi.rsdp.is_none() || ty == 15 {
                    bi.rsdp = Some(buf);
                }
            }
            _ => {}
        }
        off += (size + 7) & !7;
    }
    if bi.memory.is_empty() {
        return Err(BootInfoError::NoMemoryMap);
    }
    Ok(bi)
}

impl BootInfo {
    /// Total bytes of usable RAM in the memory map.
    pub fn ram_bytes(&self) -> u64 {
        self.memory
            .iter()
            .filter(|r| r.kind == E820_RAM)
            .map(|r| r.len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Physical memory backed by a byte vector starting at address 0.
    struct Mem(Vec<u8>);
    impl PhysRead for Mem {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
            let Ok(start) = usize::try_from(paddr) else {
                return false;
            };
            match self.0.get(start..start.saturating_add(buf.len())) {
                Some(src) if src.len() == buf.len() => {
                    buf.copy_from_slice(src);
                    true
                }
                _ => false,
            }
        }
    }
    impl Mem {
        fn put(&mut self, at: usize, b: &[u8]) {
            self.0[at..at + b.len()].copy_from_slice(b);
        }
        fn u32(&mut self, at: usize, v: u32) {
            self.put(at, &v.to_le_bytes());
        }
        fn u64(&mut self, at: usize, v: u64) {
            self.put(at, &v.to_le_bytes());
        }
    }

    fn mb1_image() -> Mem {
        let mut m = Mem(alloc::vec![0; 0x4000]);
        // info at 0x1000
        m.u32(0x1000, (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9));
        m.u32(0x1000 + 16, 0x2000);
        m.put(0x2000, b"/xen console=com1 dom0_mem=64M\0");
        m.u32(0x1000 + 20, 2);
        m.u32(0x1000 + 24, 0x2100);
        m.u32(0x2100, 0x100000);
        m.u32(0x2104, 0x180000);
        m.u32(0x2108, 0x2200);
        m.u32(0x2110, 0x180000);
        m.u32(0x2114, 0x190000);
        m.u32(0x2118, 0);
        m.put(0x2200, b"vmlinuz console=hvc0\0");
        m.u32(0x1000 + 44, 48);
        m.u32(0x1000 + 48, 0x2300);
        for (i, (base, len, kind)) in [(0u64, 0x9fc00u64, 1u32), (0x100000, 0x1ff00000, 1)]
            .iter()
            .enumerate()
        {
            let e = 0x2300 + i * 24;
            m.u32(e, 20);
            m.u64(e + 4, *base);
            m.u64(e + 12, *len);
            m.u32(e + 20, *kind);
        }
        m.u32(0x1000 + 64, 0x2400);
        m.put(0x2400, b"qemu\0");
        m
    }

    #[test]
    fn multiboot1() {
        let m = mb1_image();
        let bi = parse(MULTIBOOT1_MAGIC, 0x1000, &m).unwrap();
        assert_eq!(bi.cmdline, "/xen console=com1 dom0_mem=64M");
        assert_eq!(bi.modules.len(), 2);
        assert_eq!(
            bi.modules[0],
            BootModule {
                start: 0x100000,
                end: 0x180000,
                cmdline: "vmlinuz console=hvc0".into()
            }
        );
        assert_eq!(bi.modules[1].cmdline, "");
        assert_eq!(bi.memory.len(), 2);
        assert_eq!(bi.ram_bytes(), 0x9fc00 + 0x1ff00000);
        assert_eq!(bi.loader_name.as_deref(), Some("qemu"));
    }

    #[test]
    fn multiboot1_bad_pointers_are_errors() {
        let mut m = mb1_image();
        m.u32(0x1000 + 24, 0xffff_0000);
        assert!(matches!(
            parse(MULTIBOOT1_MAGIC, 0x1000, &m),
            Err(BootInfoError::Unreadable { .. })
        ));
        let mut m = mb1_image();
        m.u32(0x1000 + 20, 100_000);
        assert!(matches!(
            parse(MULTIBOOT1_MAGIC, 0x1000, &m),
            Err(BootInfoError::TooMany { .. })
        ));
        let mut m = mb1_image();
        m.u32(0x2300, 4);
        assert!(matches!(
            parse(MULTIBOOT1_MAGIC, 0x1000, &m),
            Err(BootInfoError::Malformed(_))
        ));
        assert!(matches!(
            parse(0x1234, 0x1000, &m),
            Err(BootInfoError::BadMagic(0x1234))
        ));
    }

    #[test]
    fn multiboot2() {
        let mut m = Mem(alloc::vec![0; 0x4000]);
        let base = 0x1000;
        let mut off = 8;
        let mut tag = |m: &mut Mem, ty: u32, payload: &[u8]| {
            let size = 8 + payload.len();
            m.u32(base + off, ty);
            m.u32(base + off + 4, size as u32);
            m.put(base + off + 8, payload);
            off += (size + 7) & !7;
        };
        tag(&mut m, 1, b"xen.gz loglvl=all\0");
        let mut module = Vec::new();
        module.extend_from_slice(&0x200000u32.to_le_bytes());
        module.extend_from_slice(&0x280000u32.to_le_bytes());
        module.extend_from_slice(b"kernel\0");
        tag(&mut m, 3, &module);
        let mut mmap = Vec::new();
        mmap.extend_from_slice(&24u32.to_le_bytes());
        mmap.extend_from_slice(&0u32.to_le_bytes());
        for (b, l, k) in [
            (0u64, 0x9f000u64, 1u32),
            (0x100000, 0x7f00000, 1),
            (0xfee00000, 0x1000, 2),
        ] {
            mmap.extend_from_slice(&b.to_le_bytes());
            mmap.extend_from_slice(&l.to_le_bytes());
            mmap.extend_from_slice(&k.to_le_bytes());
            mmap.extend_from_slice(&0u32.to_le_bytes());
        }
        tag(&mut m, 6, &mmap);
        tag(&mut m, 14, b"RSD PTR \0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
        tag(&mut m, 0, b"");
        m.u32(base, off as u32);
        let bi = parse(MULTIBOOT2_MAGIC, base as u64, &m).unwrap();
        assert_eq!(bi.cmdline, "xen.gz loglvl=all");
        assert_eq!(
            bi.modules,
            [BootModule {
                start: 0x200000,
                end: 0x280000,
                cmdline: "kernel".into()
            }]
        );
        assert_eq!(bi.memory.len(), 3);
        assert_eq!(bi.ram_bytes(), 0x9f000 + 0x7f00000);
        assert!(bi.rsdp.as_ref().unwrap().starts_with(b"RSD PTR "));
        // A tag claiming to run past the end is rejected.
        m.u32(base + 8 + 4, 0x10000);
        assert!(matches!(
            parse(MULTIBOOT2_MAGIC, base as u64, &m),
            Err(BootInfoError::Malformed(_))
        ));
    }
}
