//! More fault-reporting probes (see [`crate::traps`]): 4-byte stores,
//! `LOCK CMPXCHG`, segment-register loads and `FS`-relative reads.
//!
//! Each faulting instruction has an `.xg_extable` entry; the handler resumes
//! at the fix-up with `rax` = [`Fault::encode`]. The `CMPXCHG` probe needs
//! `rax` itself, so its fix-up also sets a flag register.

use core::arch::asm;

use crate::traps::Fault;

/// Stores a u32, reporting a fault instead of crashing.
///
/// # Safety
/// If the store succeeds it must not break anything.
pub unsafe fn probe_write_u32(addr: u64, value: u32) -> Result<(), Fault> {
    let info: u64;
    // SAFETY: the caller vouches for the store; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: mov dword ptr [{addr}], {value:e}",
            "3:",
            crate::extable_entry!("2b", "3b"),
            addr = in(reg) addr,
            value = in(reg) value,
            inout("rax") 0u64 => info,
            options(nostack),
        );
    }
    Fault::decode(info).map_or(Ok(()), Err)
}

/// `LOCK CMPXCHG qword [addr]`: Ok((true, old)) if the value was `old` and
/// is now `new`, Ok((false, current)) if it was `current` (unchanged).
///
/// # Safety
/// If the exchange succeeds it must not break anything.
pub unsafe fn probe_cmpxchg_u64(addr: u64, old: u64, new: u64) -> Result<(bool, u64), Fault> {
    let rax: u64;
    let flag: u64;
    // SAFETY: the caller vouches for the store; a fault resumes at label 3
    // with the fault in rax and flag 2.
    unsafe {
        asm!(
            "xor ecx, ecx",
            "2: lock cmpxchg qword ptr [{addr}], {new}",
            "setz cl",
            "jmp 4f",
            "3: mov ecx, 2",
            "4:",
            crate::extable_entry!("2b", "3b"),
            addr = in(reg) addr,
            new = in(reg) new,
            inout("rax") old => rax,
            out("rcx") flag,
            options(nostack),
        );
    }
    match flag {
        2 => Err(Fault::decode(rax).expect("fix-up without a fault")),
        f => Ok((f == 1, rax)),
    }
}

macro_rules! segment_probes {
    ($load:ident, $read:ident, $seg:literal) => {
        #[doc = concat!("Loads `", $seg, "` with `sel`, reporting a fault instead of crashing.")]
        ///
        /// # Safety
        /// The kernel must not depend on the segment register's old value.
        pub unsafe fn $load(sel: u16) -> Result<(), Fault> {
            let info: u64;
            // SAFETY: a segment load changes only that register (the kernel's
            // code uses none of DS/ES/FS for addressing in 64-bit mode); a
            // fault resumes at label 3.
            unsafe {
                asm!(
                    concat!("2: mov ", $seg, ", {sel:x}"),
                    "3:",
                    crate::extable_entry!("2b", "3b"),
                    sel = in(reg) sel,
                    inout("rax") 0u64 => info,
                    options(nostack),
                );
            }
            Fault::decode(info).map_or(Ok(()), Err)
        }

        #[doc = concat!("The selector in `", $seg, "`.")]
        pub fn $read() -> u16 {
            let sel: u16;
            // SAFETY: reading a segment register has no side effects.
            unsafe {
                asm!(
                    concat!("mov {sel:x}, ", $seg),
                    sel = out(reg) sel,
                    options(nomem, nostack, preserves_flags),
                );
            }
            sel
        }
    };
}

segment_probes!(probe_load_ds, read_ds, "ds");
segment_probes!(probe_load_es, read_es, "es");
segment_probes!(probe_load_fs, read_fs, "fs");

/// Reads the u64 at `fs:[offset]`, reporting a fault instead of crashing.
pub fn probe_read_fs_u64(offset: u64) -> Result<u64, Fault> {
    let info: u64;
    let value: u64;
    // SAFETY: a load only reads; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: mov {value}, qword ptr fs:[{offset}]",
            "3:",
            crate::extable_entry!("2b", "3b"),
            offset = in(reg) offset,
            value = lateout(reg) value,
            inout("rax") 0u64 => info,
            options(nostack, readonly),
        );
    }
    Fault::decode(info).map_or(Ok(value), Err)
}
