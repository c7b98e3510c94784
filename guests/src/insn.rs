//! Privileged and emulated instructions, each with a fix-up: `Err(Fault)` instead of a crash.
//!
//! A PV kernel runs at CPL 3, so most of these raise #GP(0) in hardware and
//! are either emulated by the hypervisor (MSRs, control and debug registers,
//! port I/O with I/O rights, CLTS) or passed on as #GP. Each wrapper is one
//! instruction listed in `.xg_extable`, so whatever Xen decides comes back as
//! a value or as the [`Fault`] the guest was given. The framework's trap
//! table (vectors 0-31) must be installed for the fix-ups to work.

use core::arch::asm;

use crate::extable_entry;
use crate::traps::Fault;

fn done<T>(info: u64, value: T) -> Result<T, Fault> {
    match Fault::decode(info) {
        Some(f) => Err(f),
        None => Ok(value),
    }
}

/// `rdmsr`.
pub fn rdmsr(msr: u32) -> Result<u64, Fault> {
    let info: u64;
    let hi: u32;
    // SAFETY: reading an MSR changes nothing; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: rdmsr",
            "3:",
            extable_entry!("2b", "3b"),
            in("ecx") msr,
            inout("rax") 0u64 => info,
            inout("edx") 0u32 => hi,
            options(nostack),
        );
    }
    done(info, u64::from(hi) << 32 | (info & 0xffff_ffff))
}

/// `wrmsr`.
///
/// # Safety
/// The write, if it takes effect, must not break the kernel.
pub unsafe fn wrmsr(msr: u32, value: u64) -> Result<(), Fault> {
    let info: u64;
    // SAFETY: the caller vouches for the write; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: wrmsr",
            "3:",
            extable_entry!("2b", "3b"),
            in("ecx") msr,
            in("edx") (value >> 32) as u32,
            inout("rax") value & 0xffff_ffff => info,
            options(nostack),
        );
    }
    done(info, ())
}

macro_rules! read_reg {
    ($name:ident, $reg:literal, $doc:literal) => {
        #[doc = $doc]
        pub fn $name() -> Result<u64, Fault> {
            let info: u64;
            let value: u64;
            // SAFETY: reading a control or debug register changes nothing; a
            // fault resumes at label 3.
            unsafe {
                asm!(
                    concat!("2: mov {v}, ", $reg),
                    "3:",
                    extable_entry!("2b", "3b"),
                    v = inout(reg) 0u64 => value,
                    inout("rax") 0u64 => info,
                    options(nostack),
                );
            }
            done(info, value)
        }
    };
}

macro_rules! write_reg {
    ($name:ident, $reg:literal, $doc:literal) => {
        #[doc = $doc]
        ///
        /// # Safety
        /// The write, if it takes effect, must not break the kernel.
        pub unsafe fn $name(value: u64) -> Result<(), Fault> {
            let info: u64;
            // SAFETY: the caller vouches for the write; a fault resumes at
            // label 3.
            unsafe {
                asm!(
                    concat!("2: mov ", $reg, ", {v}"),
                    "3:",
                    extable_entry!("2b", "3b"),
                    v = in(reg) value,
                    inout("rax") 0u64 => info,
                    options(nostack),
                );
            }
            done(info, ())
        }
    };
}

read_reg!(read_cr0, "cr0", "`mov %cr0, reg`.");
read_reg!(read_cr2, "cr2", "`mov %cr2, reg`.");
read_reg!(read_cr3, "cr3", "`mov %cr3, reg`.");
read_reg!(read_cr4, "cr4", "`mov %cr4, reg`.");
read_reg!(read_cr8, "cr8", "`mov %cr8, reg`.");
write_reg!(write_cr0, "cr0", "`mov reg, %cr0`.");
write_reg!(write_cr2, "cr2", "`mov reg, %cr2`.");
write_reg!(write_cr3, "cr3", "`mov reg, %cr3`.");
write_reg!(write_cr4, "cr4", "`mov reg, %cr4`.");
read_reg!(read_dr0, "dr0", "`mov %dr0, reg`.");
read_reg!(read_dr6, "dr6", "`mov %dr6, reg`.");
read_reg!(read_dr7, "dr7", "`mov %dr7, reg`.");
write_reg!(write_dr0, "dr0", "`mov reg, %dr0`.");
write_reg!(write_dr7, "dr7", "`mov reg, %dr7`.");

/// Runs one instruction with no operands (given as assembler text).
macro_rules! plain {
    ($name:ident, $insn:literal, $doc:literal) => {
        #[doc = $doc]
        ///
        /// # Safety
        /// The instruction, if it takes effect, must not break the kernel.
        pub unsafe fn $name() -> Result<(), Fault> {
            let info: u64;
            // SAFETY: the caller vouches for the instruction; a fault resumes
            // at label 3.
            unsafe {
                asm!(
                    concat!("2: ", $insn),
                    "3:",
                    extable_entry!("2b", "3b"),
                    inout("rax") 0u64 => info,
                    options(nostack),
                );
            }
            done(info, ())
        }
    };
}

plain!(clts, "clts", "`clts`.");
plain!(hlt, "hlt", "`hlt`.");
plain!(cli, "cli", "`cli`.");
plain!(sti, "sti", "`sti`.");
plain!(swapgs, "swapgs", "`swapgs`.");
plain!(wbinvd, "wbinvd", "`wbinvd`.");
plain!(invd, "invd", "`invd`.");
plain!(ud2, "ud2", "`ud2`.");
plain!(int3, "int3", "`int3`.");
plain!(icebp, ".byte 0xf1", "`int1` (icebp).");

/// A 10-byte descriptor-table pointer (limit, base), as LGDT/LIDT take it.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DescPtr {
    pub limit: u16,
    pub base: u64,
}

/// `lgdt [ptr]`.
///
/// # Safety
/// If it takes effect, the kernel must still run with the new GDT.
pub unsafe fn lgdt(ptr: &DescPtr) -> Result<(), Fault> {
    let info: u64;
    // SAFETY: the caller vouches for the load; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: lgdt [{p}]",
            "3:",
            extable_entry!("2b", "3b"),
            p = in(reg) ptr as *const DescPtr,
            inout("rax") 0u64 => info,
            options(nostack),
        );
    }
    done(info, ())
}

/// `lidt [ptr]`.
///
/// # Safety
/// If it takes effect, exceptions must still be handled.
pub unsafe fn lidt(ptr: &DescPtr) -> Result<(), Fault> {
    let info: u64;
    // SAFETY: the caller vouches for the load; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: lidt [{p}]",
            "3:",
            extable_entry!("2b", "3b"),
            p = in(reg) ptr as *const DescPtr,
            inout("rax") 0u64 => info,
            options(nostack),
        );
    }
    done(info, ())
}

/// `sgdt [buf]`: not privileged without UMIP.
pub fn sgdt() -> Result<DescPtr, Fault> {
    let info: u64;
    let mut d = DescPtr::default();
    // SAFETY: stores 10 bytes into `d`; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: sgdt [{p}]",
            "3:",
            extable_entry!("2b", "3b"),
            p = in(reg) &raw mut d,
            inout("rax") 0u64 => info,
            options(nostack),
        );
    }
    done(info, d)
}

/// `ltr reg`.
///
/// # Safety
/// If it takes effect, the task register must still be usable.
pub unsafe fn ltr(sel: u16) -> Result<(), Fault> {
    let info: u64;
    // SAFETY: the caller vouches for the load; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: ltr {s:x}",
            "3:",
            extable_entry!("2b", "3b"),
            s = in(reg) sel,
            inout("rax") 0u64 => info,
            options(nostack),
        );
    }
    done(info, ())
}

/// `lldt reg`.
///
/// # Safety
/// If it takes effect, the kernel must not use the LDT.
pub unsafe fn lldt(sel: u16) -> Result<(), Fault> {
    let info: u64;
    // SAFETY: the caller vouches for the load; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: lldt {s:x}",
            "3:",
            extable_entry!("2b", "3b"),
            s = in(reg) sel,
            inout("rax") 0u64 => info,
            options(nostack),
        );
    }
    done(info, ())
}

/// `in al, dx`.
pub fn inb(port: u16) -> Result<u8, Fault> {
    let info: u64;
    // SAFETY: callers pick ports whose reads have no side effects that
    // matter; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: in al, dx",
            "3:",
            extable_entry!("2b", "3b"),
            in("dx") port,
            inout("rax") 0u64 => info,
            options(nostack, nomem),
        );
    }
    done(info, info as u8)
}

/// `in ax, dx`.
pub fn inw(port: u16) -> Result<u16, Fault> {
    let info: u64;
    // SAFETY: as for `inb`.
    unsafe {
        asm!(
            "2: in ax, dx",
            "3:",
            extable_entry!("2b", "3b"),
            in("dx") port,
            inout("rax") 0u64 => info,
            options(nostack, nomem),
        );
    }
    done(info, info as u16)
}

/// `in eax, dx`.
pub fn inl(port: u16) -> Result<u32, Fault> {
    let info: u64;
    // SAFETY: as for `inb`.
    unsafe {
        asm!(
            "2: in eax, dx",
            "3:",
            extable_entry!("2b", "3b"),
            in("dx") port,
            inout("rax") 0u64 => info,
            options(nostack, nomem),
        );
    }
    done(info, info as u32)
}

/// `out dx, al`.
///
/// # Safety
/// The write, if it reaches a device, must not break anything.
pub unsafe fn outb(port: u16, value: u8) -> Result<(), Fault> {
    let info: u64;
    // SAFETY: the caller vouches for the write; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: out dx, al",
            "3:",
            extable_entry!("2b", "3b"),
            in("dx") port,
            inout("rax") u64::from(value) => info,
            options(nostack, nomem),
        );
    }
    done(info, ())
}

/// `out dx, ax`.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outw(port: u16, value: u16) -> Result<(), Fault> {
    let info: u64;
    // SAFETY: the caller vouches for the write; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: out dx, ax",
            "3:",
            extable_entry!("2b", "3b"),
            in("dx") port,
            inout("rax") u64::from(value) => info,
            options(nostack, nomem),
        );
    }
    done(info, ())
}

/// `out dx, eax`.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outl(port: u16, value: u32) -> Result<(), Fault> {
    let info: u64;
    // SAFETY: the caller vouches for the write; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: out dx, eax",
            "3:",
            extable_entry!("2b", "3b"),
            in("dx") port,
            inout("rax") u64::from(value) => info,
            options(nostack, nomem),
        );
    }
    done(info, ())
}

/// `rdtsc`.
pub fn rdtsc() -> Result<u64, Fault> {
    let info: u64;
    let hi: u32;
    // SAFETY: reads the counter; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: rdtsc",
            "3:",
            extable_entry!("2b", "3b"),
            inout("rax") 0u64 => info,
            inout("edx") 0u32 => hi,
            options(nostack, nomem),
        );
    }
    done(info, u64::from(hi) << 32 | (info & 0xffff_ffff))
}

/// `rdtscp`: (TSC, TSC_AUX).
pub fn rdtscp() -> Result<(u64, u32), Fault> {
    let info: u64;
    let hi: u32;
    let aux: u32;
    // SAFETY: reads the counter; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: rdtscp",
            "3:",
            extable_entry!("2b", "3b"),
            inout("rax") 0u64 => info,
            inout("edx") 0u32 => hi,
            inout("ecx") 0u32 => aux,
            options(nostack, nomem),
        );
    }
    done(info, (u64::from(hi) << 32 | (info & 0xffff_ffff), aux))
}

/// `xgetbv` of XCR `index`.
pub fn xgetbv(index: u32) -> Result<u64, Fault> {
    let info: u64;
    let hi: u32;
    // SAFETY: reads an XCR; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: xgetbv",
            "3:",
            extable_entry!("2b", "3b"),
            in("ecx") index,
            inout("rax") 0u64 => info,
            inout("edx") 0u32 => hi,
            options(nostack, nomem),
        );
    }
    done(info, u64::from(hi) << 32 | (info & 0xffff_ffff))
}

/// `xsetbv` of XCR `index`.
///
/// # Safety
/// The write, if it takes effect, must keep the enabled state components
/// usable.
pub unsafe fn xsetbv(index: u32, value: u64) -> Result<(), Fault> {
    let info: u64;
    // SAFETY: the caller vouches for the write; a fault resumes at label 3.
    unsafe {
        asm!(
            "2: xsetbv",
            "3:",
            extable_entry!("2b", "3b"),
            in("ecx") index,
            in("edx") (value >> 32) as u32,
            inout("rax") value & 0xffff_ffff => info,
            options(nostack, nomem),
        );
    }
    done(info, ())
}

/// CPUID result registers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cpuid {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Plain `cpuid` (native on hardware without CPUID faulting).
pub fn cpuid(leaf: u32, subleaf: u32) -> Result<Cpuid, Fault> {
    let info: u64;
    let (b, c, d): (u64, u32, u32);
    // SAFETY: CPUID only reads; rbx is saved in a scratch register because
    // LLVM reserves it; a fault resumes at label 3.
    unsafe {
        asm!(
            "mov {b}, rbx",
            "2: cpuid",
            "3:",
            "xchg {b}, rbx",
            extable_entry!("2b", "3b"),
            b = out(reg) b,
            inout("rax") u64::from(leaf) => info,
            inout("ecx") subleaf => c,
            out("edx") d,
            options(nostack, nomem),
        );
    }
    done(
        info,
        Cpuid {
            eax: info as u32,
            ebx: b as u32,
            ecx: c,
            edx: d,
        },
    )
}

/// CPUID through Xen's forced-emulation prefix `ud2; .ascii "xen"; cpuid`:
/// the hypervisor's view of the guest's CPUID policy.
pub fn fep_cpuid(leaf: u32, subleaf: u32) -> Result<Cpuid, Fault> {
    let info: u64;
    let (b, c, d): (u64, u32, u32);
    // SAFETY: as for `cpuid`; the fix-up covers the prefix (where Xen injects
    // #UD if it does not emulate) and the CPUID itself.
    unsafe {
        asm!(
            "mov {b}, rbx",
            "2: ud2",
            ".ascii \"xen\"",
            "4: cpuid",
            "3:",
            "xchg {b}, rbx",
            extable_entry!("2b", "3b"),
            extable_entry!("4b", "3b"),
            b = out(reg) b,
            inout("rax") u64::from(leaf) => info,
            inout("ecx") subleaf => c,
            out("edx") d,
            options(nostack, nomem),
        );
    }
    done(
        info,
        Cpuid {
            eax: info as u32,
            ebx: b as u32,
            ecx: c,
            edx: d,
        },
    )
}

/// RFLAGS as `pushf` sees it.
pub fn rflags() -> u64 {
    let f: u64;
    // SAFETY: pushf/pop only use the stack.
    unsafe { asm!("pushfq", "pop {}", out(reg) f, options(nomem, preserves_flags)) };
    f
}

/// The CS selector (`mov %cs`).
pub fn cs() -> u16 {
    let v: u16;
    // SAFETY: reads a selector.
    unsafe { asm!("mov {:x}, cs", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}
