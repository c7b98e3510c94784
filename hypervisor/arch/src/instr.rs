//! Privileged and special instructions other than port I/O and MSRs.
use core::arch::asm;

/// Result of CPUID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Executes CPUID for a leaf and subleaf.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    CpuidResult {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effect; the hypervisor never sets CR4.TSD for itself.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Halts until the next interrupt (interrupts are enabled for the duration of the wait).
pub fn sti_hlt_cli() {
    // SAFETY: the hypervisor's interrupt handlers are installed before this is called; STI;HLT
    // is atomic with respect to interrupt delivery, and CLI restores the hypervisor's
    // interrupts-off discipline.
    unsafe { asm!("sti; hlt; cli", options(nomem, nostack)) }
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: disabling interrupts and halting only stops this CPU.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) }
    }
}

/// Disables maskable interrupts.
pub fn cli() {
    // SAFETY: masking interrupts cannot break memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Reads CR0.
pub fn read_cr0() -> u64 {
    let v;
    // SAFETY: reading a control register has no side effect.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Writes CR0.
///
/// # Safety
/// Must keep PE, PG, WP and the FPU bits the hypervisor relies on.
pub unsafe fn write_cr0(v: u64) {
    // SAFETY: per the caller's contract.
    unsafe { asm!("mov cr0, {}", in(reg) v, options(nostack, preserves_flags)) }
}

/// Reads CR2 (the last page-fault address).
pub fn read_cr2() -> u64 {
    let v;
    // SAFETY: reading a control register has no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Reads CR3.
pub fn read_cr3() -> u64 {
    let v;
    // SAFETY: reading a control register has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Loads CR3, switching address space and flushing non-global TLB entries.
///
/// # Safety
/// `v` must be the physical address of a valid L4 table that maps the hypervisor (slots
/// 256-271 as in the idle table), including the code and stack currently executing.
pub unsafe fn write_cr3(v: u64) {
    // SAFETY: per the caller's contract.
    unsafe { asm!("mov cr3, {}", in(reg) v, options(nostack, preserves_flags)) }
}

/// Reads CR4.
pub fn read_cr4() -> u64 {
    let v;
    // SAFETY: reading a control register has no side effect.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Writes CR4.
///
/// # Safety
/// Must keep PAE and the features the hypervisor relies on.
pub unsafe fn write_cr4(v: u64) {
    // SAFETY: per the caller's contract.
    unsafe { asm!("mov cr4, {}", in(reg) v, options(nostack, preserves_flags)) }
}

/// Invalidates the TLB entry for one virtual address.
pub fn invlpg(va: u64) {
    // SAFETY: dropping a TLB entry only forces a fresh page walk.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) }
}

/// Flushes all non-global TLB entries by reloading CR3.
pub fn flush_tlb_local() {
    // SAFETY: reloading the current CR3 keeps the same address space.
    unsafe { write_cr3(read_cr3()) }
}

/// Flushes all TLB entries including global ones by toggling CR4.PGE.
pub fn flush_tlb_global() {
    let cr4 = read_cr4();
    const PGE: u64 = 1 << 7;
    if cr4 & PGE != 0 {
        // SAFETY: toggling PGE off and on only flushes the TLB.
        unsafe {
            write_cr4(cr4 & !PGE);
            write_cr4(cr4);
        }
    } else {
        flush_tlb_local();
    }
}

/// A pseudo-descriptor for LGDT/LIDT.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug)]
pub struct DescriptorTablePointer {
    pub limit: u16,
    pub base: u64,
}

/// Loads the GDT register.
///
/// # Safety
/// The table must stay mapped and valid for as long as it is loaded, and must hold the
/// hypervisor's code and data selectors at the indices the entry code uses.
pub unsafe fn lgdt(ptr: &DescriptorTablePointer) {
    // SAFETY: per the caller's contract.
    unsafe { asm!("lgdt [{}]", in(reg) ptr, options(readonly, nostack, preserves_flags)) }
}

/// Loads the IDT register.
///
/// # Safety
/// The table must stay mapped and valid for as long as it is loaded, with every present gate
/// pointing at hypervisor entry code.
pub unsafe fn lidt(ptr: &DescriptorTablePointer) {
    // SAFETY: per the caller's contract.
    unsafe { asm!("lidt [{}]", in(reg) ptr, options(readonly, nostack, preserves_flags)) }
}

/// Loads the task register.
///
/// # Safety
/// `sel` must name an available 64-bit TSS descriptor in the loaded GDT whose TSS stays valid.
pub unsafe fn ltr(sel: u16) {
    // SAFETY: per the caller's contract.
    unsafe { asm!("ltr {0:x}", in(reg) sel, options(nostack, preserves_flags)) }
}

/// Loads the LDT register with a selector (0 disables the LDT).
///
/// # Safety
/// A non-zero `sel` must name a valid LDT descriptor in the loaded GDT.
pub unsafe fn lldt(sel: u16) {
    // SAFETY: per the caller's contract.
    unsafe { asm!("lldt {0:x}", in(reg) sel, options(nostack, preserves_flags)) }
}

/// Reloads the data segment registers with a selector.
///
/// # Safety
/// `sel` must be null or a valid data selector in the loaded GDT.
pub unsafe fn load_data_segments(sel: u16) {
    // SAFETY: per the caller's contract.
    unsafe {
        asm!("mov ds, {0:x}", "mov es, {0:x}", "mov ss, {0:x}", in(reg) sel, options(nostack, preserves_flags))
    }
}

/// Writes the extended control register XCR0.
///
/// # Safety
/// CR4.OSXSAVE must be set and `value` must be a combination the CPU supports (x87 set).
pub unsafe fn xsetbv(xcr: u32, value: u64) {
    // SAFETY: per the caller's contract.
    unsafe {
        asm!("xsetbv", in("ecx") xcr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// Swaps GS_BASE with KERNEL_GS_BASE.
///
/// The hypervisor keeps no data behind GS, so this only exchanges which of a PV guest's two
/// GS bases is live (Xen's toggle_guest_mode does the same).
pub fn swapgs() {
    // SAFETY: the hypervisor never dereferences GS; swapping the bases only affects the guest.
    unsafe { asm!("swapgs", options(nomem, nostack, preserves_flags)) }
}

/// Writes back and invalidates all caches.
pub fn wbinvd() {
    // SAFETY: flushing caches has no effect on memory contents.
    unsafe { asm!("wbinvd", options(nostack, preserves_flags)) }
}

/// Reads debug register `n` (0-3, 6, 7).
pub fn read_dr(n: u8) -> u64 {
    let v: u64;
    // SAFETY: reading a debug register has no side effect.
    unsafe {
        match n {
            0 => asm!("mov {}, dr0", out(reg) v, options(nomem, nostack, preserves_flags)),
            1 => asm!("mov {}, dr1", out(reg) v, options(nomem, nostack, preserves_flags)),
            2 => asm!("mov {}, dr2", out(reg) v, options(nomem, nostack, preserves_flags)),
            3 => asm!("mov {}, dr3", out(reg) v, options(nomem, nostack, preserves_flags)),
            6 => asm!("mov {}, dr6", out(reg) v, options(nomem, nostack, preserves_flags)),
            _ => asm!("mov {}, dr7", out(reg) v, options(nomem, nostack, preserves_flags)),
        }
    }
    v
}

/// Writes debug register `n` (0-3, 6, 7).
///
/// # Safety
/// Breakpoint addresses must not cover hypervisor code or data the hypervisor cannot take a
/// #DB on, and DR7 must not enable general detection or I/O breakpoints.
pub unsafe fn write_dr(n: u8, v: u64) {
    // SAFETY: per the caller's contract.
    unsafe {
        match n {
            0 => asm!("mov dr0, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            1 => asm!("mov dr1, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            2 => asm!("mov dr2, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            3 => asm!("mov dr3, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            6 => asm!("mov dr6, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
            _ => asm!("mov dr7, {}", in(reg) v, options(nomem, nostack, preserves_flags)),
        }
    }
}

/// Resets the x87 FPU to its initial state.
pub fn fninit() {
    // SAFETY: only FPU state changes; the hypervisor itself never uses the FPU.
    unsafe { asm!("fninit", options(nomem, nostack)) }
}

/// Loads a selector into the inactive (user) GS: SWAPGS, MOV GS, SWAPGS.
///
/// # Safety
/// `sel` must be null or name a present, readable data or code descriptor in the loaded
/// GDT/LDT (the load must not fault), and interrupts must be disabled.
pub unsafe fn load_user_gs(sel: u16) {
    // SAFETY: per the caller's contract; the hypervisor never uses GS.
    unsafe {
        asm!("swapgs", "mov gs, {0:x}", "swapgs", in(reg) sel, options(nostack, preserves_flags))
    }
}

/// Reads the data segment selectors DS, ES, FS, GS.
pub fn read_data_selectors() -> [u16; 4] {
    let (ds, es, fs, gs): (u16, u16, u16, u16);
    // SAFETY: reading segment selectors has no side effect.
    unsafe {
        asm!("mov {0:x}, ds", "mov {1:x}, es", "mov {2:x}, fs", "mov {3:x}, gs",
             out(reg) ds, out(reg) es, out(reg) fs, out(reg) gs,
             options(nomem, nostack, preserves_flags))
    }
    [ds, es, fs, gs]
}

/// Loads DS, ES, FS and GS. Loading FS or GS replaces its base with the descriptor's (zero for
/// null), so the caller writes the 64-bit bases afterwards.
///
/// # Safety
/// Each selector must be null or name a present data (or readable code) descriptor with a DPL
/// that allows the selector's RPL in the loaded GDT/LDT, so that no load faults.
pub unsafe fn load_data_selectors(sel: [u16; 4]) {
    // SAFETY: per the caller's contract; the hypervisor uses none of these in 64-bit mode.
    unsafe {
        asm!("mov ds, {0:x}", "mov es, {1:x}", "mov fs, {2:x}", "mov gs, {3:x}",
             in(reg) sel[0], in(reg) sel[1], in(reg) sel[2], in(reg) sel[3],
             options(nostack, preserves_flags))
    }
}

/// Saves the x87/SSE state into a 512-byte, 16-byte aligned FXSAVE area.
///
/// # Safety
/// `area` must point to 512 writable bytes aligned to 16, and CR0.TS must be clear.
pub unsafe fn fxsave(area: *mut u8) {
    // SAFETY: per the caller's contract.
    unsafe { asm!("fxsave64 [{}]", in(reg) area, options(nostack, preserves_flags)) }
}

/// Loads the x87/SSE state from a 512-byte, 16-byte aligned FXSAVE area.
///
/// # Safety
/// `area` must point to 512 bytes aligned to 16 holding a valid image (reserved MXCSR bits
/// clear), and CR0.TS must be clear.
pub unsafe fn fxrstor(area: *const u8) {
    // SAFETY: per the caller's contract.
    unsafe { asm!("fxrstor64 [{}]", in(reg) area, options(nostack, preserves_flags)) }
}
