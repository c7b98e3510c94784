//! Per-CPU stacks and the `CpuInfo` block at the top of each.
//!
//! Invariant: every CPU runs hypervisor code on a `STACK_SIZE`-aligned stack whose top
//! `CPU_INFO_SIZE` bytes hold that CPU's `CpuInfo`. Entries from a guest (exceptions,
//! interrupts through TSS.RSP0, and SYSCALL through its stub) build the guest's register frame
//! exactly at `CpuInfo::regs`, so the current guest state is always at a fixed place.
use core::cell::UnsafeCell;

/// Most CPUs the hypervisor brings up.
pub const MAX_CPUS: usize = 8;

/// `CpuInfo::vcpu` of a CPU that runs no vCPU (idle).
pub const NO_VCPU: u32 = u32::MAX;

/// Size of each per-CPU hypervisor stack.
pub const STACK_SIZE: usize = 32 * 1024;
/// Size reserved for `CpuInfo` at the top of each stack.
pub const CPU_INFO_SIZE: usize = 256;

/// The register frame of an interrupted context, in the order the entry code pushes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// Entry vector: an exception or interrupt vector, or `VECTOR_SYSCALL`.
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Pseudo-vector recorded for SYSCALL entries.
pub const VECTOR_SYSCALL: u64 = 0x100;

impl GuestRegs {
    /// Whether this frame interrupted a guest (CPL 3) rather than the hypervisor.
    pub fn is_guest(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// Per-CPU data at the top of the stack.
#[repr(C)]
#[derive(Debug)]
pub struct CpuInfo {
    pub regs: GuestRegs,
    pub cpu_id: u32,
    /// Index of the vCPU whose state is in `regs` (in domain `dom`).
    pub vcpu: u32,
    /// Guest RSP saved by the SYSCALL stub before it switches stacks.
    pub syscall_scratch: u64,
    /// Id of the domain of that vCPU.
    pub dom: u32,
    _pad: u32,
    _reserved: [u64; 7],
}

const _: () = assert!(core::mem::size_of::<GuestRegs>() == 22 * 8);
const _: () = assert!(core::mem::size_of::<CpuInfo>() == CPU_INFO_SIZE);
const _: () = assert!(core::mem::offset_of!(CpuInfo, regs) == 0);
const _: () = assert!(core::mem::size_of::<GuestRegs>().is_multiple_of(16));

/// A per-CPU stack.
#[repr(C, align(32768))]
pub struct Stack(UnsafeCell<[u8; STACK_SIZE]>);
const _: () = assert!(core::mem::align_of::<Stack>() == STACK_SIZE);

// SAFETY: each stack is used by exactly one CPU; other CPUs never touch it.
unsafe impl Sync for Stack {}

impl Stack {
    /// Creates a zeroed stack.
    pub const fn new() -> Self {
        Stack(UnsafeCell::new([0; STACK_SIZE]))
    }

    /// The address of the `CpuInfo` at the top of this stack.
    pub fn cpu_info(&self) -> *mut CpuInfo {
        (self.0.get() as usize + STACK_SIZE - CPU_INFO_SIZE) as *mut CpuInfo
    }

    /// The TSS.RSP0 value: just above the guest register frame.
    pub fn rsp0(&self) -> u64 {
        (self.cpu_info() as u64) + core::mem::size_of::<GuestRegs>() as u64
    }
}

/// Every CPU's stack, by CPU index (0: the boot CPU).
pub static STACKS: [Stack; MAX_CPUS] = [const { Stack::new() }; MAX_CPUS];

/// Returns the current CPU's `CpuInfo`, found from the stack pointer.
///
/// Only valid on a per-CPU main stack (not on an IST stack).
pub fn current_cpu_info() -> *mut CpuInfo {
    let rsp: usize;
    // SAFETY: reading RSP has no effect.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    ((rsp & !(STACK_SIZE - 1)) + STACK_SIZE - CPU_INFO_SIZE) as *mut CpuInfo
}

/// Index of the vCPU this CPU is running (its registers are in `CpuInfo::regs`).
#[inline]
pub fn vcpu() -> usize {
    // SAFETY: the CpuInfo at the top of the current stack is this CPU's, written only by it.
    unsafe { (*current_cpu_info()).vcpu as usize }
}

/// Records which vCPU this CPU now runs.
pub fn set_vcpu(index: usize) {
    // SAFETY: as in `vcpu`; only this CPU writes its own CpuInfo.
    unsafe { (*current_cpu_info()).vcpu = index as u32 };
}

/// Id of the domain whose vCPU this CPU is running.
#[inline]
pub fn domain() -> u16 {
    // SAFETY: as in `vcpu`.
    unsafe { (*current_cpu_info()).dom as u16 }
}

/// Records which domain's vCPU this CPU now runs.
pub fn set_domain(id: u16) {
    // SAFETY: as in `set_vcpu`.
    unsafe { (*current_cpu_info()).dom = u32::from(id) };
}

/// This CPU's index (0 = the boot CPU).
#[inline]
pub fn cpu_id() -> usize {
    // SAFETY: as in `vcpu`.
    unsafe { (*current_cpu_info()).cpu_id as usize }
}

// The SYSCALL entry finds the scratch slot 8 bytes above the frame's top (RSP0).
const _: () = assert!(
    core::mem::offset_of!(CpuInfo, syscall_scratch) == core::mem::size_of::<GuestRegs>() + 8
);
