//! Per-CPU descriptor tables: GDT with Xen's reserved selectors, TSS with IST stacks, IDT,
//! and the SYSCALL MSRs.
//!
//! Selectors follow Xen (pv-guest-abi.md §1.8): the hypervisor's entries live at byte 0xE000 of
//! a 15-page GDT so a PV guest may own entries below. Guest kernel and user both run in ring 3
//! with FLAT_RING3_CS64 (0xe033) / FLAT_RING3_SS64 (0xe02b).
use core::cell::UnsafeCell;

use xenolith_arch::instr::{lgdt, lidt, ltr, DescriptorTablePointer};
use xenolith_arch::msr::{rdmsr, wrmsr, Msr};

use crate::percpu::{Stack, MAX_CPUS};

/// Hypervisor 64-bit code selector.
pub const HYPERVISOR_CS: u16 = 0xe008;
/// Hypervisor data selector.
pub const HYPERVISOR_DS: u16 = 0xe010;
/// Ring-3 32-bit code selector.
pub const FLAT_RING3_CS32: u16 = 0xe023;
/// Ring-3 data/stack selector.
pub const FLAT_RING3_DS: u16 = 0xe02b;
/// Ring-3 64-bit code selector (PV guest kernel and user).
pub const FLAT_RING3_CS64: u16 = 0xe033;
/// TSS selector.
pub const TSS_SELECTOR: u16 = 0xe040;

/// Bytes of the whole GDT (15 pages: 14 for the guest, 1 reserved).
const GDT_BYTES: usize = 15 * 4096;

/// 64-bit TSS.
#[repr(C, packed)]
struct Tss {
    _reserved0: u32,
    rsp: [u64; 3],
    _reserved1: u64,
    ist: [u64; 7],
    _reserved2: u64,
    _reserved3: u16,
    iomap_base: u16,
}
const _: () = assert!(core::mem::size_of::<Tss>() == 104);

struct TssCell(UnsafeCell<[Tss; MAX_CPUS]>);
// SAFETY: each CPU writes only its own entry, once, during its bring-up.
unsafe impl Sync for TssCell {}
static TSS: TssCell = TssCell(UnsafeCell::new(
    [const {
        Tss {
            _reserved0: 0,
            rsp: [0; 3],
            _reserved1: 0,
            ist: [0; 7],
            _reserved2: 0,
            _reserved3: 0,
            iomap_base: 104,
        }
    }; MAX_CPUS],
));

/// IST slots.
pub const IST_DF: u8 = 1;
pub const IST_NMI: u8 = 2;
pub const IST_MC: u8 = 3;

const IST_SIZE: usize = 16 * 1024;
#[repr(C, align(16))]
struct IstStacks(UnsafeCell<[[[u8; IST_SIZE]; 3]; MAX_CPUS]>);
// SAFETY: each IST stack is used only by its own exception on its own CPU.
unsafe impl Sync for IstStacks {}
static IST_STACKS: IstStacks = IstStacks(UnsafeCell::new([[[0; IST_SIZE]; 3]; MAX_CPUS]));

#[repr(C, align(16))]
struct Idt(UnsafeCell<[u128; 256]>);
// SAFETY: written during bring-up only.
unsafe impl Sync for Idt {}
static IDT: Idt = Idt(UnsafeCell::new([0; 256]));

fn gate(handler: u64, dpl: u8, ist: u8) -> u128 {
    let lo = (handler & 0xffff)
        | (u64::from(HYPERVISOR_CS) << 16)
        | (u64::from(ist) << 32)
        | (0x8e_u64 << 40) // present, interrupt gate
        | (u64::from(dpl) << 45)
        | ((handler >> 16) & 0xffff) << 48;
    u128::from(lo) | (u128::from(handler >> 32) << 64)
}

/// Loads CPU `cpu`'s GDT and TSS and the shared IDT (filled by the boot CPU), and programs
/// the SYSCALL MSRs. `stack` is the stack the CPU runs on.
pub fn init_cpu(cpu: usize, stack: &Stack) {
    init_fpu();
    let hyp_page = crate::desc::init_window(cpu);
    // SAFETY: `cpu` < MAX_CPUS (checked by the caller); each CPU takes only its own entry.
    let tss_ptr = unsafe { (TSS.0.get() as *mut Tss).add(cpu) };
    let tss_addr = tss_ptr as u64;
    // SAFETY: bring-up runs once per CPU; the boot CPU fills the IDT before any other CPU
    // starts, and the other tables here are this CPU's own.
    unsafe {
        let g = crate::mm::table_of(hyp_page);
        let r = 0;
        g[r] = 0;
        g[r + 1] = 0x00af_9b00_0000_ffff; // 0xe008 ring-0 code, 64-bit
        g[r + 2] = 0x00cf_9300_0000_ffff; // 0xe010 ring-0 data
        g[r + 3] = 0;
        g[r + 4] = 0x00cf_fb00_0000_ffff; // 0xe023 ring-3 code, compatibility
        g[r + 5] = 0x00cf_f300_0000_ffff; // 0xe02b ring-3 data
        g[r + 6] = 0x00af_fb00_0000_ffff; // 0xe033 ring-3 code, 64-bit
        g[r + 7] = 0x00cf_9b00_0000_ffff; // 0xe038 ring-0 code, compatibility
        let limit = core::mem::size_of::<Tss>() as u64 - 1;
        g[r + 8] = (limit & 0xffff)
            | ((tss_addr & 0xff_ffff) << 16)
            | (0x89 << 40)
            | (((tss_addr >> 24) & 0xff) << 56);
        g[r + 9] = tss_addr >> 32;

        let tss = &mut *tss_ptr;
        tss.rsp = [stack.rsp0(), 0, 0];
        let ist = IST_STACKS.0.get() as u64 + (cpu * 3 * IST_SIZE) as u64;
        tss.ist[usize::from(IST_DF) - 1] = ist + IST_SIZE as u64;
        tss.ist[usize::from(IST_NMI) - 1] = ist + 2 * IST_SIZE as u64;
        tss.ist[usize::from(IST_MC) - 1] = ist + 3 * IST_SIZE as u64;

        let idt = &mut *IDT.0.get();
        for (v, e) in idt.iter_mut().enumerate().filter(|_| cpu == 0) {
            let (dpl, ist) = match v {
                3 | 4 | 0x80 => (3, 0),
                2 => (0, IST_NMI),
                8 => (0, IST_DF),
                18 => (0, IST_MC),
                _ => (0, 0),
            };
            *e = gate(crate::entry::stub_address(v as u8), dpl, ist);
        }

        lgdt(&DescriptorTablePointer {
            limit: (GDT_BYTES - 1) as u16,
            base: crate::desc::gdt_virt(cpu),
        });
        crate::entry::reload_segments(HYPERVISOR_CS, HYPERVISOR_DS);
        ltr(TSS_SELECTOR);
        lidt(&DescriptorTablePointer {
            limit: (256 * 16 - 1) as u16,
            base: IDT.0.get() as u64,
        });

        // SYSCALL: kernel CS/SS from 0xe008; SYSRET to 0xe033/0xe02b.
        wrmsr(
            Msr::Star,
            (u64::from(FLAT_RING3_CS32) << 48) | (u64::from(HYPERVISOR_CS) << 32),
        );
        wrmsr(Msr::Lstar, crate::entry::syscall_entry_address(cpu));
        wrmsr(Msr::Cstar, crate::entry::syscall_entry_address(cpu));
        // Clear AC, VM, RF, NT, DF, IF, TF on entry (Xen's mask).
        wrmsr(
            Msr::Sfmask,
            (1 << 18) | (1 << 17) | (1 << 16) | (1 << 14) | (1 << 10) | (1 << 9) | (1 << 8),
        );
        wrmsr(Msr::SysenterCs, 0);
        let efer = rdmsr(Msr::Efer);
        wrmsr(
            Msr::Efer,
            efer | xenolith_arch::msr::efer::SCE | xenolith_arch::msr::efer::NXE,
        );
    }
}

/// Lets guests use the FPU and SSE: CR0.MP and NE set, EM clear; CR4.OSFXSR and OSXMMEXCPT
/// set; the x87 unit reset. Native #MF reporting (NE) is what Xen gives PV guests.
fn init_fpu() {
    use xenolith_arch::instr::{read_cr0, read_cr4, write_cr0, write_cr4};
    const MP: u64 = 1 << 1;
    const EM: u64 = 1 << 2;
    const TS: u64 = 1 << 3;
    const NE: u64 = 1 << 5;
    const OSFXSR: u64 = 1 << 9;
    const OSXMMEXCPT: u64 = 1 << 10;
    // SAFETY: only FPU-related bits change; paging and protection bits are kept.
    unsafe {
        write_cr0((read_cr0() | MP | NE) & !(EM | TS));
        write_cr4(read_cr4() | OSFXSR | OSXMMEXCPT);
    }
    xenolith_arch::instr::fninit();
}
