//! Emulation of what a deprivileged PV kernel still executes: privileged instructions on
//! #GP(0), CPUID behind the forced-emulation prefix on #UD, and page-table writes on #PF
//! (VMASST writable_pagetables). Instructions are decoded with `xenolith_x86::decode`
//! (iced-x86); anything not emulated gets the fault the hardware raised, as on Xen.
use xen_abi::errno::Errno;
use xenolith_arch::msr::{rdmsr, wrmsr, Msr};
use xenolith_core::pagetype::PageType;
use xenolith_x86::decode::{decode, Op, Port};
use xenolith_x86::ptwr;

use crate::domain::{Domain, Vcpu};
use crate::guestmem::GuestMem;
use crate::percpu::GuestRegs;

/// Xen's forced-emulation prefix: `ud2; .ascii "xen"`.
pub const FEP: [u8; 5] = [0x0f, 0x0b, b'x', b'e', b'n'];

/// Fetches up to 15 instruction bytes at RIP (fewer if the next page is not readable).
fn fetch(dom: &Domain, rip: u64) -> ([u8; 15], usize) {
    let mem = GuestMem::current(dom, dom.vcpus[crate::percpu::vcpu()].current_root());
    let mut buf = [0u8; 15];
    let first = (4096 - (rip & 0xfff) as usize).min(15);
    if mem.read(rip, &mut buf[..first]).is_err() {
        return (buf, 0);
    }
    let mut n = first;
    if first < 15 && mem.read(rip + first as u64, &mut buf[first..]).is_ok() {
        n = 15;
    }
    (buf, n)
}

/// General-purpose register by encoding number.
pub fn gpr(r: &GuestRegs, n: u8) -> u64 {
    match n & 15 {
        0 => r.rax,
        1 => r.rcx,
        2 => r.rdx,
        3 => r.rbx,
        4 => r.rsp,
        5 => r.rbp,
        6 => r.rsi,
        7 => r.rdi,
        8 => r.r8,
        9 => r.r9,
        10 => r.r10,
        11 => r.r11,
        12 => r.r12,
        13 => r.r13,
        14 => r.r14,
        _ => r.r15,
    }
}

/// Sets a general-purpose register by encoding number.
pub fn set_gpr(r: &mut GuestRegs, n: u8, v: u64) {
    let slot = match n & 15 {
        0 => &mut r.rax,
        1 => &mut r.rcx,
        2 => &mut r.rdx,
        3 => &mut r.rbx,
        4 => &mut r.rsp,
        5 => &mut r.rbp,
        6 => &mut r.rsi,
        7 => &mut r.rdi,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        _ => &mut r.r15,
    };
    *slot = v;
}

struct RegsView<'a>(&'a mut GuestRegs);

impl ptwr::Regs for RegsView<'_> {
    fn get(&self, r: u8) -> u64 {
        gpr(self.0, r)
    }
    fn set(&mut self, r: u8, v: u64) {
        set_gpr(self.0, r, v);
    }
}

/// Emulates the instruction after a forced-emulation prefix at RIP (CPUID only). Returns
/// false if RIP holds no prefix or the instruction is not CPUID, so the caller injects #UD.
pub fn forced_emulation(dom: &mut Domain, regs: &mut GuestRegs) -> bool {
    let (insn, n) = fetch(dom, regs.rip);
    if n < 7 || insn[..5] != FEP || insn[5..7] != [0x0f, 0xa2] {
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

fn is_canonical(a: u64) -> bool {
    let top = a >> 47;
    top == 0 || top == 0x1ffff
}

const EFER_VISIBLE: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11); // SCE LME LMA NXE
const MSR_TSC: u32 = 0x10;
const MSR_APIC_BASE: u32 = 0x1b;
const MSR_MISC_ENABLE: u32 = 0x1a0;
/// Xen's hypercall-page MSR (CPUID 0x40000002 EBX): writing `mfn << 12 | index` fills that
/// frame with the hypercall page.
const MSR_HYPERCALL_PAGE: u32 = 0x4000_0000;
const MSR_PAT: u32 = 0x277;
const MSR_EFER: u32 = 0xc000_0080;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_SHADOW_GS_BASE: u32 = 0xc000_0102;
/// MISC_ENABLE as Xen presents it: BTS and PEBS unavailable, xTPR messages disabled.
const MISC_ENABLE_VALUE: u64 = (1 << 11) | (1 << 12) | (1 << 23);

/// RDMSR as a PV guest sees it; `None` means #GP.
pub fn read_msr(v: &Vcpu, msr: u32) -> Option<u64> {
    Some(match msr {
        MSR_FS_BASE => rdmsr(Msr::FsBase),
        MSR_GS_BASE => rdmsr(Msr::GsBase),
        MSR_SHADOW_GS_BASE => rdmsr(Msr::KernelGsBase),
        MSR_EFER => rdmsr(Msr::Efer) & EFER_VISIBLE,
        MSR_APIC_BASE => 0xfee0_0000 | (1 << 11) | if v.id == 0 { 1 << 8 } else { 0 },
        MSR_PAT => xen_abi::layout::XEN_PAT_VALUE,
        MSR_MISC_ENABLE => MISC_ENABLE_VALUE,
        MSR_TSC => xenolith_arch::instr::rdtsc(),
        // The hypercall-page MSR reads as 0.
        MSR_HYPERCALL_PAGE => 0,
        MSR_MCG_CAP => VMCE_MCG_CAP,
        MSR_MCG_STATUS => 0,
        m if vmce_bank_msr(m) => 0,
        _ => return None,
    })
}

const MSR_MCG_CAP: u32 = 0x179;
const MSR_MCG_STATUS: u32 = 0x17a;
/// Machine-check banks the virtual MCA offers (Xen's GUEST_MC_BANK_NUM).
const VMCE_BANKS: u32 = 2;
/// Virtual MCG_CAP: MCG_TES_P and the bank count, as Xen gives PV guests on AMD hosts.
const VMCE_MCG_CAP: u64 = (1 << 11) | VMCE_BANKS as u64;

/// MCi_CTL/STATUS/ADDR/MISC of the virtual banks: they report no errors.
fn vmce_bank_msr(msr: u32) -> bool {
    (0x400..0x400 + 4 * VMCE_BANKS).contains(&msr)
}

/// WRMSR as a PV guest may do it; false means #GP.
pub fn write_msr(v: &mut Vcpu, msr: u32, val: u64) -> bool {
    let base_msr = match msr {
        MSR_FS_BASE => Some(Msr::FsBase),
        MSR_GS_BASE => Some(Msr::GsBase),
        MSR_SHADOW_GS_BASE => Some(Msr::KernelGsBase),
        _ => None,
    };
    if let Some(m) = base_msr {
        if !is_canonical(val) {
            return false;
        }
        // SAFETY: canonical base; the hypervisor never uses FS or GS.
        unsafe { wrmsr(m, val) };
        match (msr, v.kernel_mode) {
            (MSR_FS_BASE, _) => v.fs_base = val,
            (MSR_GS_BASE, true) | (MSR_SHADOW_GS_BASE, false) => v.gs_base_kernel = val,
            _ => v.gs_base_user = val,
        }
        return true;
    }
    match msr {
        // EFER may be "written" with its current value; MISC_ENABLE writes are accepted and
        // ignored; PAT, APIC_BASE and DEBUGCTL writes fault, as on Xen.
        MSR_EFER => read_msr(v, msr) == Some(val),
        MSR_MISC_ENABLE => true,
        // The virtual MCA: status may be cleared, bank control written; nothing is ever
        // reported, so the values are not kept.
        MSR_MCG_STATUS => val == 0,
        m if vmce_bank_msr(m) => (m - 0x400) % 4 == 0 || val == 0,
        _ => false,
    }
}

/// Ports the hypervisor keeps for itself: dom0 reads all ones there and its writes are
/// dropped (Xen's ioports_deny_access for the hardware domain).
fn hypervisor_port(port: u16, console: u16) -> bool {
    matches!(port, 0x20 | 0x21 | 0xa0 | 0xa1 | 0x40..=0x43)
        || (console != 0 && (console..console + 8).contains(&port))
}

/// Whether guest `v` may access `size` bytes of ports from `port` (virtual IOPL, else the
/// guest's I/O bitmap).
fn io_allowed(dom: &Domain, port: u16, size: u8) -> bool {
    let v = &dom.vcpus[crate::percpu::vcpu()];
    if v.iopl >= guest_cpl(dom) {
        return true;
    }
    let last = u32::from(port) + u32::from(size);
    if v.iobmp == 0 || last > v.iobmp_limit {
        return false;
    }
    let mem = GuestMem::current(dom, v.current_root());
    let mut b = [0u8; 2];
    if mem.read(v.iobmp + u64::from(port >> 3), &mut b).is_err() {
        return false;
    }
    let bits = u16::from_le_bytes(b) >> (port & 7);
    bits & ((1u16 << size) - 1) == 0
}

const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
const PCI_CF8: u16 = 0xcf8;

/// Whether the hypervisor reads or writes this port directly for a domain: only dom0, and
/// never the ports it keeps or virtualises (the CMOS index and the PCI address register).
fn direct_port(dom: &Domain, port: u16, size: u8) -> bool {
    dom.privileged
        && !hypervisor_port(port, crate::console::port())
        && port & !1 != CMOS_INDEX
        && !(port == PCI_CF8 && size == 4)
}

/// The PCI configuration access a CFC-CFF access means under the domain's virtual CF8.
fn pci_config_port(dom: &Domain, port: u16) -> Option<()> {
    (dom.privileged && (port & !3) == 0xcfc && dom.pci_cf8 & (1 << 31) != 0).then_some(())
}

fn port_in(dom: &mut Domain, port: u16, size: u8) -> u32 {
    let ones = u32::MAX >> (32 - 8 * u32::from(size));
    if port == PCI_CF8 && size == 4 {
        return dom.pci_cf8;
    }
    if port == CMOS_INDEX && size == 1 {
        return u32::from(dom.cmos_index);
    }
    if port == CMOS_DATA && size == 1 && dom.privileged {
        xenolith_arch::port::outb(CMOS_INDEX, dom.cmos_index & 0x7f);
        return u32::from(xenolith_arch::port::inb(CMOS_DATA));
    }
    if pci_config_port(dom, port).is_some() {
        xenolith_arch::port::outl(PCI_CF8, dom.pci_cf8);
    } else if !direct_port(dom, port, size) {
        return ones;
    }
    match size {
        1 => u32::from(xenolith_arch::port::inb(port)),
        2 => u32::from(xenolith_arch::port::inw(port)),
        _ => xenolith_arch::port::inl(port),
    }
}

fn port_out(dom: &mut Domain, port: u16, size: u8, val: u32) {
    if port == PCI_CF8 && size == 4 {
        dom.pci_cf8 = val;
        return;
    }
    if port == CMOS_INDEX && size == 1 {
        dom.cmos_index = val as u8;
        return;
    }
    if port == CMOS_DATA && size == 1 && dom.privileged {
        xenolith_arch::port::outb(CMOS_INDEX, dom.cmos_index & 0x7f);
        xenolith_arch::port::outb(CMOS_DATA, val as u8);
        return;
    }
    if pci_config_port(dom, port).is_some() {
        xenolith_arch::port::outl(PCI_CF8, dom.pci_cf8);
    } else if !direct_port(dom, port, size) {
        return;
    }
    match size {
        1 => xenolith_arch::port::outb(port, val as u8),
        2 => xenolith_arch::port::outw(port, val as u16),
        _ => xenolith_arch::port::outl(port, val),
    }
}

/// CR0 as a PV guest sees it (apart from TS): PE MP ET NE WP AM PG, as Xen shows it.
pub const GUEST_CR0: u64 = 0x8005_0033;
const CR0_TS: u64 = 1 << 3;

/// CR4 bits every PV guest sees set: PAE, MCE, OSFXSR, OSXMMEXCPT (as on Xen).
const CR4_FIXED: u64 = (1 << 5) | (1 << 6) | (1 << 9) | (1 << 10);
/// CR4 bits a PV guest may toggle: TSD and DE. (Xen also offers FSGSBASE and OSXSAVE where
/// the CPU has them; neither is offered here yet.)
const CR4_GUEST: u64 = (1 << 2) | (1 << 3);

/// The CR4 a PV guest sees.
pub fn guest_cr4(v: &Vcpu) -> u64 {
    CR4_FIXED | (v.cr4 & CR4_GUEST)
}

/// A guest write to CR4: the toggleable bits take effect (TSD and DE in the hardware while
/// the vCPU runs); everything else is silently kept as it is, as Xen's fix-up does.
fn write_guest_cr4(v: &mut Vcpu, val: u64) -> bool {
    set_guest_cr4(v, val);
    true
}

/// Sets the guest-controlled CR4 bits of a vCPU (others are ignored, as by Xen's fix-up), in
/// the hardware too if it is running.
pub fn set_guest_cr4(v: &mut Vcpu, val: u64) {
    v.cr4 = val & CR4_GUEST;
    if v.cpu == Some(crate::percpu::cpu_id()) {
        load_cr4(v);
    }
}

/// Loads a vCPU's guest-controlled CR4 bits into the hardware.
pub fn load_cr4(v: &Vcpu) {
    let hw = xenolith_arch::instr::read_cr4();
    let want = (hw & !CR4_GUEST) | v.cr4;
    if want != hw {
        // SAFETY: only TSD and DE change; they affect RDTSC at CPL 3 and debug-register I/O
        // breakpoints, nothing the hypervisor relies on.
        unsafe { xenolith_arch::instr::write_cr4(want) };
    }
}

/// Emulates a privileged instruction that raised #GP(0) in the guest. Returns false to have
/// #GP(0) injected instead.
pub fn privileged_op(dom: &mut Domain, regs: &mut GuestRegs) -> bool {
    let (bytes, n) = fetch(dom, regs.rip);
    let Some(d) = decode(&bytes[..n]) else {
        return false;
    };
    let kernel = dom.vcpus[crate::percpu::vcpu()].kernel_mode;
    let ok = match d.op {
        Op::Rdmsr if kernel => {
            let msr = regs.rcx as u32;
            // Xen quirk: before the guest has a #GP handler, an unknown MSR reads as 0.
            let no_handler = dom.vcpus[crate::percpu::vcpu()].trap_ctxt[13].address == 0;
            match read_msr(&dom.vcpus[crate::percpu::vcpu()], msr).or(no_handler.then_some(0)) {
                Some(v) => {
                    regs.rax = v & 0xffff_ffff;
                    regs.rdx = v >> 32;
                    true
                }
                None => false,
            }
        }
        Op::Wrmsr if kernel => {
            let val = (regs.rdx << 32) | (regs.rax & 0xffff_ffff);
            if regs.rcx as u32 == MSR_HYPERCALL_PAGE {
                write_hypercall_page(dom, val)
            } else {
                write_msr(&mut dom.vcpus[crate::percpu::vcpu()], regs.rcx as u32, val)
            }
        }
        Op::Cpuid => {
            let r = crate::cpuid::guest_cpuid(dom, regs.rax as u32, regs.rcx as u32);
            regs.rax = u64::from(r.eax);
            regs.rbx = u64::from(r.ebx);
            regs.rcx = u64::from(r.ecx);
            regs.rdx = u64::from(r.edx);
            true
        }
        Op::Rdtsc | Op::Rdtscp => {
            let t = xenolith_arch::instr::rdtsc();
            regs.rax = t & 0xffff_ffff;
            regs.rdx = t >> 32;
            if d.op == Op::Rdtscp {
                regs.rcx = 0;
            }
            true
        }
        Op::Clts if kernel => {
            dom.vcpus[crate::percpu::vcpu()].virtual_ts = false;
            crate::fpu::set_ts(false);
            true
        }
        Op::Wbinvd if kernel => {
            if dom.privileged {
                xenolith_arch::instr::wbinvd();
            }
            true
        }
        Op::MovFromCr { cr, gpr: g } if kernel => {
            let v = &dom.vcpus[crate::percpu::vcpu()];
            let val = match cr {
                0 => GUEST_CR0 | if v.virtual_ts { CR0_TS } else { 0 },
                2 => crate::traps::vcpu_info(v).arch.cr2,
                3 => v.current_root() << 12,
                4 => guest_cr4(v),
                _ => return false,
            };
            set_gpr(regs, g, val);
            true
        }
        Op::MovToCr { cr, gpr: g } if kernel => {
            let val = gpr(regs, g);
            match cr {
                0 => {
                    // Only TS may change.
                    if val & !CR0_TS != GUEST_CR0 {
                        false
                    } else {
                        let ts = val & CR0_TS != 0;
                        dom.vcpus[crate::percpu::vcpu()].virtual_ts = ts;
                        crate::fpu::set_ts(ts);
                        true
                    }
                }
                2 => {
                    crate::traps::vcpu_info(&dom.vcpus[crate::percpu::vcpu()])
                        .arch
                        .cr2 = val;
                    true
                }
                3 => crate::mmu::new_baseptr(dom, 0, val >> 12).is_ok(),
                4 => write_guest_cr4(&mut dom.vcpus[crate::percpu::vcpu()], val),
                _ => false,
            }
        }
        Op::MovFromDr { dr, gpr: g } if kernel => {
            match get_debugreg(&dom.vcpus[crate::percpu::vcpu()], dr) {
                Ok(v) => {
                    set_gpr(regs, g, v);
                    true
                }
                Err(_) => false,
            }
        }
        Op::MovToDr { dr, gpr: g } if kernel => {
            set_debugreg(&mut dom.vcpus[crate::percpu::vcpu()], dr, gpr(regs, g)).is_ok()
        }
        Op::In { size, port } => {
            let p = match port {
                Port::Imm(p) => u16::from(p),
                Port::Dx => regs.rdx as u16,
            };
            if !io_allowed(dom, p, size) {
                return false;
            }
            let v = u64::from(port_in(dom, p, size));
            regs.rax = match size {
                1 => (regs.rax & !0xff) | v,
                2 => (regs.rax & !0xffff) | v,
                _ => v,
            };
            true
        }
        Op::Out { size, port } => {
            let p = match port {
                Port::Imm(p) => u16::from(p),
                Port::Dx => regs.rdx as u16,
            };
            if !io_allowed(dom, p, size) {
                return false;
            }
            port_out(dom, p, size, regs.rax as u32);
            true
        }
        // With enough IOPL, CLI and STI are no-ops, as on Xen: tying them to the event mask would
        // leave it stuck whenever the guest restores IF with POPF, which cannot be trapped.
        Op::Cli | Op::Sti => dom.vcpus[crate::percpu::vcpu()].iopl >= guest_cpl(dom),
        _ => false,
    };
    if ok {
        regs.rip = regs.rip.wrapping_add(d.len as u64);
    }
    ok
}

/// Handles a guest-kernel write fault on a read-only mapping of one of its L1 tables when
/// VMASST writable_pagetables is on: emulates the write as a checked entry update. Returns
/// false if the fault is not such a write or the update is refused (the #PF then goes to
/// the guest).
pub fn ptwr(dom: &mut Domain, regs: &mut GuestRegs, cr2: u64) -> bool {
    // Xen 4.17 emulates these writes whether or not the guest enabled the assist.
    // Present, write, not an instruction fetch, no reserved bits; guest kernel mode only.
    if !dom.vcpus[crate::percpu::vcpu()].kernel_mode || regs.error_code & 0x1b != 0x3 {
        return false;
    }
    let root = dom.vcpus[crate::percpu::vcpu()].current_root();
    let Ok(table) = GuestMem::current(dom, root).translate(cr2, false) else {
        return false;
    };
    let ptdom = dom.ptdom();
    let is_l1 = crate::mm::with_frames(|ft, _| {
        ft.owned_by(table, ptdom.id)
            && ft
                .get(table)
                .is_some_and(|p| p.ty == PageType::L1 && p.type_count > 0)
    });
    if !is_l1 {
        return false;
    }
    let (bytes, n) = fetch(dom, regs.rip);
    let Some(d) = decode(&bytes[..n]) else {
        return false;
    };
    let Op::MemWrite { size, op } = d.op else {
        return false;
    };
    let idx = ((cr2 & 0xfff) >> 3) as usize;
    let old = crate::mm::table_of(table)[idx];
    let mut scratch = *regs;
    let Ok(effect) = ptwr::emulate(
        op,
        size,
        (cr2 & 7) as usize,
        old,
        &mut RegsView(&mut scratch),
    ) else {
        return false;
    };
    if let Some(new) = effect.new_entry {
        // The guest's view omits the bits the hypervisor adds; compare on what it wrote.
        let r = crate::mm::with_frames(|ft, mem| ft.mod_entry(mem, table, idx, new, ptdom, false));
        if r.is_err() {
            return false;
        }
        xenolith_arch::instr::invlpg(cr2);
        crate::mm::flush_if_needed();
    }
    *regs = scratch;
    regs.rflags = (regs.rflags & !effect.flags_clear) | effect.flags_set;
    regs.rip = regs.rip.wrapping_add(d.len as u64);
    true
}

/// DR7 general-detect enable: refused (the hypervisor owns debug-register access).
const DR7_GD: u64 = 1 << 13;
/// DR7 bits that read as zero whatever is written (11, 12, 14, 15).
const DR7_RESERVED_ZERO: u64 = 0xd800;
/// CR4.DE: with it, DR4/DR5 are not aliases and I/O breakpoints exist.
const CR4_DE: u64 = 1 << 3;

/// Maps DR4/DR5 to DR6/DR7 unless CR4.DE is set (then they, like DR8 and up, do not exist).
fn debugreg_index(v: &Vcpu, reg: u8) -> Result<u8, Errno> {
    match reg {
        0..=3 | 6 | 7 => Ok(reg),
        4 | 5 if v.cr4 & CR4_DE == 0 => Ok(reg + 2),
        _ => Err(Errno::ENODEV),
    }
}

/// The DR7 the hardware gets: the guest's, without I/O breakpoints (those would fire on the
/// hypervisor's own port accesses; they are not emulated yet).
fn hardware_dr7(dr7: u64) -> u64 {
    let mut hw = dr7;
    for i in 0..4 {
        if (dr7 >> (16 + 4 * i)) & 3 == 2 {
            hw &= !(3 << (2 * i));
        }
    }
    hw
}

/// set_debugreg semantics (and MOV to DRn): DR0-3 must be guest addresses (-EPERM), DR6/DR7
/// take 32-bit values (-EINVAL) with their fixed bits forced, DR7 may not enable general
/// detect or, without CR4.DE, I/O breakpoints (-EPERM).
pub fn set_debugreg(v: &mut Vcpu, reg: u8, val: u64) -> Result<(), Errno> {
    match debugreg_index(v, reg)? {
        r @ 0..=3 => {
            if !is_canonical(val) || !crate::guestmem::addr_ok(val) {
                return Err(Errno::EPERM);
            }
            v.dr[usize::from(r)] = val;
        }
        6 => {
            if val >> 32 != 0 {
                return Err(Errno::EINVAL);
            }
            v.dr[6] = (val & 0xe00f) | 0xffff_0ff0;
        }
        _ => {
            if val >> 32 != 0 {
                return Err(Errno::EINVAL);
            }
            if val & DR7_GD != 0 {
                return Err(Errno::EPERM);
            }
            for i in 0..4 {
                if val & (3 << (2 * i)) != 0
                    && (val >> (16 + 4 * i)) & 3 == 2
                    && v.cr4 & CR4_DE == 0
                {
                    return Err(Errno::EPERM);
                }
            }
            v.dr[7] = (val & !DR7_RESERVED_ZERO) | (1 << 10);
        }
    }
    if v.cpu == Some(crate::percpu::cpu_id()) {
        load_debugregs(v);
    }
    Ok(())
}

/// Loads a vCPU's breakpoint addresses and DR7 into the hardware.
pub fn load_debugregs(v: &Vcpu) {
    // SAFETY: DR0-3 hold guest addresses (checked when set), so a breakpoint can only fire in
    // guest context; DR7 enables no general detection or I/O breakpoints.
    unsafe {
        for r in 0..4u8 {
            xenolith_arch::instr::write_dr(r, v.dr[usize::from(r)]);
        }
        xenolith_arch::instr::write_dr(7, hardware_dr7(v.dr[7]));
    }
}

/// get_debugreg semantics (and MOV from DRn).
pub fn get_debugreg(v: &Vcpu, reg: u8) -> Result<u64, Errno> {
    Ok(v.dr[usize::from(debugreg_index(v, reg)?)])
}

/// The privilege level I/O permission is checked against: guest user 3, guest kernel 1, or
/// 0 with VMASST architectural_iopl.
fn guest_cpl(dom: &Domain) -> u8 {
    match (
        dom.vcpus[crate::percpu::vcpu()].kernel_mode,
        dom.vm_assist & crate::pv::VMASST_ARCHITECTURAL_IOPL != 0,
    ) {
        (false, _) => 3,
        (true, false) => 1,
        (true, true) => 0,
    }
}

/// WRMSR of the hypercall-page MSR: page index 0 only, into a frame the guest may write.
fn write_hypercall_page(dom: &mut Domain, val: u64) -> bool {
    if val & 0xfff != 0 {
        return false;
    }
    let mfn = val >> 12;
    let ptdom = dom.ptdom();
    crate::mm::with_frames(|ft, mem| {
        if ft
            .get_page_and_type(mem, mfn, PageType::Writable, ptdom)
            .is_err()
        {
            return false;
        }
        xen_abi::hypercall::fill_hypercall_page(crate::mm::frame_bytes(mfn));
        ft.put_page_and_type(mem, mfn);
        true
    })
}
