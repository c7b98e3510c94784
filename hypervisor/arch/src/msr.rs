//! Model-specific registers.
use core::arch::asm;

/// An MSR number the hypervisor uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Msr {
    ApicBase = 0x1b,
    Efer = 0xc000_0080,
    Star = 0xc000_0081,
    Lstar = 0xc000_0082,
    Cstar = 0xc000_0083,
    Sfmask = 0xc000_0084,
    FsBase = 0xc000_0100,
    GsBase = 0xc000_0101,
    KernelGsBase = 0xc000_0102,
    Pat = 0x277,
    SysenterCs = 0x174,
    SysenterEsp = 0x175,
    SysenterEip = 0x176,
    TscAux = 0xc000_0103,
}

/// EFER bits.
pub mod efer {
    /// SYSCALL enable.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
}

/// Reads an MSR the hypervisor knows to exist.
pub fn rdmsr(msr: Msr) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: every `Msr` variant is architectural on x86_64 long mode (TSC_AUX is only read
    // after CPUID reports RDTSCP); reading it has no memory effect.
    unsafe {
        asm!("rdmsr", in("ecx") msr as u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes an MSR.
///
/// # Safety
/// The value must keep the hypervisor's invariants: EFER must keep LME/NXE, STAR/LSTAR/SFMASK must
/// point at the hypervisor's entry code, PAT must keep write-back at index 0, and base MSRs must
/// hold canonical addresses.
pub unsafe fn wrmsr(msr: Msr, value: u64) {
    // SAFETY: the caller upholds the contract above.
    unsafe {
        asm!("wrmsr", in("ecx") msr as u32, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}
