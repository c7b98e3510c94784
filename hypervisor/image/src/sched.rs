//! Putting a vCPU on the CPU.
//!
//! With one CPU and one domain there is nothing to choose between yet; this module owns the
//! hardware side of running a vCPU: its root page table and its GS bases.
use xenolith_arch::instr::{swapgs, write_cr3};

use crate::domain::Vcpu;

/// Completes a switch between guest kernel and user mode: loads the new mode's root page
/// table and swaps the GS bases.
///
/// In guest kernel mode GS_BASE holds the kernel GS base and KERNEL_GS_BASE the user one;
/// switching mode swaps them, as Xen does.
pub fn switch_mode(v: &Vcpu) {
    swapgs();
    load_cr3(v);
}

/// Loads the root page table for the vCPU's current mode.
pub fn load_cr3(v: &Vcpu) {
    // SAFETY: every guest root the hypervisor accepts carries the hypervisor's L4 slots
    // (installed when the table was created), so the code and stack stay mapped.
    unsafe { write_cr3(v.current_root() << 12) };
}

/// Enters a vCPU for the first time on this CPU.
pub fn enter(v: &Vcpu) -> ! {
    use xenolith_arch::msr::{wrmsr, Msr};
    // SAFETY: the bases come from the vCPU (zero at creation, canonical when set); the root
    // was built by the domain builder with the hypervisor slots installed.
    unsafe {
        wrmsr(Msr::FsBase, v.fs_base);
        wrmsr(
            Msr::GsBase,
            if v.kernel_mode {
                v.gs_base_kernel
            } else {
                v.gs_base_user
            },
        );
        wrmsr(
            Msr::KernelGsBase,
            if v.kernel_mode {
                v.gs_base_user
            } else {
                v.gs_base_kernel
            },
        );
        write_cr3(v.current_root() << 12);
    }
    let info = crate::percpu::current_cpu_info();
    // SAFETY: `info` is this CPU's CpuInfo at the top of the current stack; the vCPU's saved
    // registers were built by the domain builder with flat ring-3 selectors, IF set and a
    // canonical entry point.
    unsafe {
        (*info).regs = v.regs;
        crate::entry::return_to_frame(&raw const (*info).regs)
    }
}
