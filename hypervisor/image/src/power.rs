//! Machine power: ACPI S5 power-off, reset, and the test harness's isa-debug-exit.
//!
//! ACPI is read only as far as needed: RSDP → RSDT/XSDT → FADT for PM1a/PM1b control blocks
//! and the reset register, and the DSDT's `\_S5` package for the sleep type values.
use xenolith_arch::port::{inb, outb, outw};

use crate::mm::DirectMap;
use xenolith_core::bootinfo::PhysRead;

fn read_bytes(pa: u64, len: usize) -> Option<alloc::vec::Vec<u8>> {
    let mut v = alloc::vec![0u8; len];
    DirectMap.read(pa, &mut v).then_some(v)
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x)) == 0
}

/// Finds the RSDP in the EBDA or the BIOS area.
fn find_rsdp() -> Option<u64> {
    let ebda = read_bytes(0x40e, 2).map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])) << 4);
    let mut ranges = alloc::vec![(0xe0000u64, 0x20000usize)];
    if let Some(e) = ebda.filter(|e| (0x80000..0xa0000).contains(e)) {
        ranges.insert(0, (e, 1024));
    }
    for (base, len) in ranges {
        let area = read_bytes(base, len)?;
        for off in (0..len.saturating_sub(20)).step_by(16) {
            if &area[off..off + 8] == b"RSD PTR " && checksum_ok(&area[off..off + 20]) {
                return Some(base + off as u64);
            }
        }
    }
    None
}

fn table(pa: u64) -> Option<alloc::vec::Vec<u8>> {
    let hdr = read_bytes(pa, 36)?;
    let len = u32_at(&hdr, 4)? as usize;
    if !(36..=1 << 20).contains(&len) {
        return None;
    }
    let t = read_bytes(pa, len)?;
    checksum_ok(&t).then_some(t)
}

/// What power-off and reset need from ACPI.
#[derive(Clone, Copy, Debug, Default)]
struct Acpi {
    pm1a_cnt: u16,
    pm1b_cnt: u16,
    slp_typ_a: u16,
    slp_typ_b: u16,
    reset_port: Option<(u16, u8)>,
}

fn parse_s5(dsdt: &[u8]) -> Option<(u16, u16)> {
    let pos = dsdt.windows(4).position(|w| w == b"_S5_")?;
    let mut i = pos + 4;
    if *dsdt.get(i)? != 0x12 {
        return None;
    }
    i += 1;
    let lead = *dsdt.get(i)?;
    i += 1 + usize::from(lead >> 6);
    i += 1; // element count
    let mut vals = [0u16; 2];
    for v in &mut vals {
        match *dsdt.get(i)? {
            0x0a => {
                *v = u16::from(*dsdt.get(i + 1)?);
                i += 2;
            }
            0x00 => i += 1,
            0x01 => {
                *v = 1;
                i += 1;
            }
            _ => return None,
        }
    }
    Some((vals[0], vals[1]))
}

fn probe() -> Option<Acpi> {
    let rsdp_pa = find_rsdp()?;
    let rsdp = read_bytes(rsdp_pa, 36)?;
    let (sdt, entry) = if rsdp[15] >= 2 && u64_at(&rsdp, 24)? != 0 {
        (table(u64_at(&rsdp, 24)?)?, 8)
    } else {
        (table(u64::from(u32_at(&rsdp, 16)?))?, 4)
    };
    let mut fadt = None;
    for off in (36..sdt.len()).step_by(entry) {
        let pa = if entry == 8 {
            u64_at(&sdt, off)?
        } else {
            u64::from(u32_at(&sdt, off)?)
        };
        if read_bytes(pa, 4).as_deref() == Some(b"FACP") {
            fadt = table(pa);
            break;
        }
    }
    let fadt = fadt?;
    let mut acpi = Acpi {
        pm1a_cnt: u32_at(&fadt, 64)? as u16,
        pm1b_cnt: u32_at(&fadt, 68).unwrap_or(0) as u16,
        ..Acpi::default()
    };
    // RESET_REG (generic address at 116) in system I/O space, if the reset flag is set.
    let flags = u32_at(&fadt, 112).unwrap_or(0);
    if fadt.len() >= 129 && flags & (1 << 10) != 0 && fadt[116] == 1 {
        acpi.reset_port = Some((u64_at(&fadt, 120)? as u16, fadt[128]));
    }
    let dsdt_pa = match u64_at(&fadt, 140) {
        Some(x) if fadt.len() >= 148 && x != 0 => x,
        _ => u64::from(u32_at(&fadt, 40)?),
    };
    if let Some((a, b)) = table(dsdt_pa).as_deref().and_then(parse_s5) {
        acpi.slp_typ_a = a;
        acpi.slp_typ_b = b;
    }
    Some(acpi)
}

/// Reports `code` to QEMU's isa-debug-exit device, if configured; QEMU then exits with
/// status `code * 2 + 1`.
pub fn debug_exit(code: u8) {
    if let Some(port) = crate::debug_exit_port() {
        outb(port, code);
    }
}

/// Powers the machine off (ACPI S5); halts if that is impossible.
pub fn power_off() -> ! {
    match probe() {
        Some(a) if a.pm1a_cnt != 0 => {
            outw(a.pm1a_cnt, (a.slp_typ_a << 10) | (1 << 13));
            if a.pm1b_cnt != 0 {
                outw(a.pm1b_cnt, (a.slp_typ_b << 10) | (1 << 13));
            }
            crate::error!("ACPI power-off did not take effect; halting");
        }
        _ => crate::error!("no ACPI power-off method found; halting"),
    }
    xenolith_arch::instr::halt_forever()
}

/// Resets the machine: the ACPI reset register, then port 0xCF9, then the keyboard
/// controller; halts if none works.
pub fn reboot() -> ! {
    if let Some((port, val)) = probe().and_then(|a| a.reset_port) {
        outb(port, val);
    }
    outb(0xcf9, 0x02);
    outb(0xcf9, 0x06);
    for _ in 0..100_000 {
        if inb(0x64) & 2 == 0 {
            break;
        }
    }
    outb(0x64, 0xfe);
    crate::error!("reset did not take effect; halting");
    xenolith_arch::instr::halt_forever()
}
