//! Emulation of what a PV kernel still executes and Xen emulates: so far CPUID through the
//! forced-emulation prefix. Privileged-instruction emulation on #GP(0) is not built yet: those
//! instructions get #GP, as Xen gives for everything it does not emulate.
use crate::domain::Domain;
use crate::guestmem::GuestMem;
use crate::percpu::GuestRegs;

/// Xen's forced-emulation prefix: `ud2; .ascii "xen"`.
pub const FEP: [u8; 5] = [0x0f, 0x0b, b'x', b'e', b'n'];

/// Emulates the instruction after a forced-emulation prefix at RIP (CPUID only). Returns
/// false if RIP holds no prefix or the instruction is not CPUID, so the caller injects #UD.
pub fn forced_emulation(dom: &mut Domain, regs: &mut GuestRegs) -> bool {
    let v = &dom.vcpus[0];
    let mem = GuestMem::current(dom, v.current_root());
    let mut insn = [0u8; 7];
    if mem.read(regs.rip, &mut insn).is_err() || insn[..5] != FEP || insn[5..] != [0x0f, 0xa2] {
        return false;
    }
    let r = crate::cpuid::guest_cpuid(dom, regs.rax as u32, regs.rcx as u32);
    regs.rax = u64::from(r.eax);
    regs.rbx = u64::from(r.ebx);
    regs.rcx = u64::from(r.ecx);
    regs.rdx = u64::from(r.edx);
    regs.rip = regs.rip.wrapping_add(7);
    true
}

/// Privileged-operation emulation on #GP(0): not built yet.
pub fn privileged_op(_dom: &mut Domain, _regs: &mut GuestRegs) -> bool {
    false
}
