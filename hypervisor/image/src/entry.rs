//! Entry and exit assembly: IDT stubs, the SYSCALL stub, and the return to a guest.
//!
//! Every entry builds a `GuestRegs` frame and calls `trap_dispatch` with it. From a guest the
//! frame lands at `CpuInfo::regs` (TSS.RSP0 points just above it; the SYSCALL stub switches to
//! the same place), so `return_to_guest` can always resume the current vCPU from there.
//! The hypervisor itself runs with interrupts disabled; only NMI and #MC can nest.
use core::arch::global_asm;

use crate::percpu::{GuestRegs, CPU_INFO_SIZE, STACKS, STACK_SIZE, VECTOR_SYSCALL};

/// Bytes per IDT stub.
const STUB_SIZE: u64 = 16;

global_asm!(
    r#"
    .text
    .balign 16
    .global xenolith_idt_stubs
xenolith_idt_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    push 0
    .endif
    push vec
    jmp xenolith_trap_common
    .set vec, vec + 1
    .endr

    /* One SYSCALL entry per CPU, 64 bytes apart: SYSCALL leaves RSP alone, so each entry
       knows its CPU's stack. The guest RSP goes to CpuInfo.syscall_scratch, which lies 8
       bytes above the frame's top (RSP0). */
    .balign 64
    .global xenolith_syscall_entries
xenolith_syscall_entries:
    .set cpu, 0
    .rept {max_cpus}
    .balign 64
    mov [rip + {stacks} + cpu * {stack_size} + {scratch_off}], rsp
    lea rsp, [rip + {stacks} + cpu * {stack_size} + {rsp0_off}]
    jmp xenolith_syscall_common
    .set cpu, cpu + 1
    .endr

xenolith_syscall_common:
    push {flat_ss}
    push qword ptr [rsp + 16]
    push r11
    push {flat_cs}
    push rcx
    push 0
    push {vector_syscall}
    jmp xenolith_trap_common

xenolith_trap_common:
    push rdi
    push rsi
    push rdx
    push rcx
    push rax
    push r8
    push r9
    push r10
    push r11
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    cld
    mov rdi, rsp
    call {dispatch}
    .global xenolith_restore_frame
xenolith_restore_frame:
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    pop r11
    pop r10
    pop r9
    pop r8
    pop rax
    pop rcx
    pop rdx
    pop rsi
    pop rdi
    add rsp, 16
    .global xenolith_iretq
xenolith_iretq:
    iretq

    .global xenolith_return_to_frame
xenolith_return_to_frame:
    mov rsp, rdi
    jmp xenolith_restore_frame
"#,
    stacks = sym STACKS,
    stack_size = const STACK_SIZE,
    max_cpus = const crate::percpu::MAX_CPUS,
    scratch_off = const STACK_SIZE - CPU_INFO_SIZE + core::mem::offset_of!(crate::percpu::CpuInfo, syscall_scratch),
    rsp0_off = const STACK_SIZE - CPU_INFO_SIZE + core::mem::size_of::<GuestRegs>(),
    flat_ss = const crate::cpu::FLAT_RING3_DS,
    flat_cs = const crate::cpu::FLAT_RING3_CS64,
    vector_syscall = const VECTOR_SYSCALL,
    dispatch = sym crate::traps::trap_dispatch,
);

unsafe extern "C" {
    static xenolith_idt_stubs: u8;
    static xenolith_syscall_entries: u8;
    static xenolith_iretq: u8;
    fn xenolith_return_to_frame(frame: *const GuestRegs) -> !;
}

/// Address of the IDT stub for a vector.
pub fn stub_address(vector: u8) -> u64 {
    let base = &raw const xenolith_idt_stubs as u64;
    base + u64::from(vector) * STUB_SIZE
}

/// Address of CPU `cpu`'s SYSCALL entry.
pub fn syscall_entry_address(cpu: usize) -> u64 {
    &raw const xenolith_syscall_entries as u64 + cpu as u64 * 64
}

/// Address of the IRETQ that returns to guests (a fault there is the guest's fault).
pub fn iretq_address() -> u64 {
    &raw const xenolith_iretq as u64
}

/// Resumes the context in `frame`, discarding the current hypervisor stack above it.
///
/// # Safety
/// `frame` must be the `CpuInfo::regs` of this CPU (or otherwise lie at the top of the
/// current stack), hold a context that is safe to enter: a guest frame with CS/SS from the
/// flat ring-3 selectors, a canonical RIP, and RFLAGS with IF set and IOPL 0.
pub unsafe fn return_to_frame(frame: *const GuestRegs) -> ! {
    // SAFETY: per the caller's contract.
    unsafe { xenolith_return_to_frame(frame) }
}

/// Reloads CS with a far return and the data segments.
///
/// # Safety
/// `cs` and `ds` must be valid selectors in the loaded GDT.
pub unsafe fn reload_segments(cs: u16, ds: u16) {
    // SAFETY: per the caller's contract; the far return lands on the next instruction.
    unsafe {
        core::arch::asm!(
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            cs = in(reg) u64::from(cs),
            ds = in(reg) ds,
            tmp = out(reg) _,
        );
        // FS and GS hold the guest's selectors; null is the hypervisor's choice.
        core::arch::asm!("mov fs, {0:x}", "mov gs, {0:x}", in(reg) 0u16);
    }
}
