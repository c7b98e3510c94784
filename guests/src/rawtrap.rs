//! Raw trap capture: run code, catch the first exception or callback exactly as Xen delivered it.
//!
//! The framework's own entry path ([`traps`](crate::traps)) assumes Xen's frame
//! layout and returns with `HYPERVISOR_iret`. Tests of the delivery itself need
//! the opposite: see the stack words and registers exactly as the handler got
//! them, whatever the layout, and never depend on them to get back. So:
//!
//! * [`call`] saves the callee-saved registers and the stack pointer, then calls
//!   a target (an `extern "C"` routine, usually a test's assembly) with three
//!   arguments. If it returns, the result is [`Outcome::Returned`].
//! * A raw stub (one per vector 0-255, plus the syscall, event and failsafe
//!   callbacks, see [`install`] and [`callback_address`]) records every GPR, the
//!   RSP and RFLAGS at entry, 16 stack words from RSP upwards and the vCPU's
//!   `evtchn_upcall_mask` at entry (read before the stub touches anything the
//!   hypervisor looks at), clears DF (an exception bounce keeps the
//!   interrupted DF) and resumes [`call`]'s caller with
//!   [`Outcome::Trapped`]. The bounce frame is abandoned, never returned through:
//!   a trap from user mode therefore ends in kernel mode.
//! * [`call_user`] enters guest user mode with `HYPERVISOR_iret` at a given RIP,
//!   RSP and RFLAGS; the first exception, software interrupt or `SYSCALL` from
//!   there comes back as a [`RawTrap`] (user mode needs a user root and a kernel
//!   stack: [`setup_user_mode`]).
//!
//! Invariants: one capture at a time (a static holds the resume context); the
//! stubs read 16 words above the entry RSP, so the kernel stack registered for
//! traps from user mode ([`setup_user_mode`]) leaves room above its top.

use core::arch::global_asm;
use core::mem::offset_of;

use xen_abi::callback::{CALLBACKF_MASK_EVENTS, CALLBACKTYPE_SYSCALL};
use xen_abi::hypercall::{HYPERCALL_STUB_SIZE, IRET};
use xen_abi::layout::{FLAT_KERNEL_CS, FLAT_KERNEL_SS, FLAT_USER_CS, FLAT_USER_SS};
use xen_abi::mmu::{MmuextOp, MMUEXT_NEW_USER_BASEPTR};
use xen_abi::trap::TrapInfo;
use xen_abi::types::DOMID_SELF;
use xen_abi::Errno;

use crate::{cpu, hypercall, insn, shared_info, Fault};

/// Tag of a capture by the syscall callback stub (not an IDT vector).
pub const TAG_SYSCALL: u64 = 0x100;
/// Tag of a capture by the event callback stub.
pub const TAG_EVENT: u64 = 0x101;
/// Tag of a capture by the failsafe callback stub.
pub const TAG_FAILSAFE: u64 = 0x102;

/// Index of each GPR in [`RawTrap::regs`].
pub mod reg {
    pub const RAX: usize = 0;
    pub const RBX: usize = 1;
    pub const RCX: usize = 2;
    pub const RDX: usize = 3;
    pub const RSI: usize = 4;
    pub const RDI: usize = 5;
    pub const RBP: usize = 6;
    pub const RSP: usize = 7;
    pub const R8: usize = 8;
    pub const R9: usize = 9;
    pub const R10: usize = 10;
    pub const R11: usize = 11;
    pub const R12: usize = 12;
    pub const R13: usize = 13;
    pub const R14: usize = 14;
    pub const R15: usize = 15;
}

/// Everything a raw stub saw at entry.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawTrap {
    /// The vector whose stub ran (0-255), or `TAG_SYSCALL`/`TAG_EVENT`/`TAG_FAILSAFE`.
    pub tag: u64,
    /// RSP at entry: the lowest word of the frame Xen built.
    pub rsp: u64,
    /// RFLAGS at entry (the hardware value the handler runs with).
    pub rflags: u64,
    /// vcpu_info[0].evtchn_upcall_mask at entry, or `u64::MAX` if shared_info
    /// was not mapped.
    pub upcall_mask: u64,
    /// GPRs at entry, indexed by [`reg`] (`regs[RSP]` = `rsp`).
    pub regs: [u64; 16],
    /// The 16 stack words from `rsp` upwards.
    pub stack: [u64; 16],
}

/// The interrupted context as described by a bounce frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BounceFrame {
    pub rcx: u64,
    pub r11: u64,
    /// The error code, if the frame has one.
    pub error_code: Option<u64>,
    pub rip: u64,
    /// Bits 0-15 the selector, bits 32-39 the saved upcall mask.
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl RawTrap {
    /// The frame read as Xen's `rcx, r11, [error code], rip, cs, rflags, rsp, ss`.
    pub fn frame(&self, with_error_code: bool) -> BounceFrame {
        let s = &self.stack;
        let o = usize::from(with_error_code);
        BounceFrame {
            rcx: s[0],
            r11: s[1],
            error_code: with_error_code.then_some(s[2]),
            rip: s[2 + o],
            cs: s[3 + o],
            rflags: s[4 + o],
            rsp: s[5 + o],
            ss: s[6 + o],
        }
    }

    /// Where the handler's RSP must be for a frame built below an interrupted
    /// RSP `from` (Xen aligns down to 16 first): 7 words, 8 with an error code.
    pub const fn expected_rsp(from: u64, with_error_code: bool) -> u64 {
        (from & !15) - 8 * (7 + with_error_code as u64)
    }
}

/// How [`call`] ended.
// No allocator to box the capture in; a 300-byte copy per call is nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target returned this value.
    Returned(u64),
    /// A raw stub ran first.
    Trapped(RawTrap),
}

impl Outcome {
    /// The capture, if there was one.
    pub fn trapped(self) -> Option<RawTrap> {
        match self {
            Outcome::Trapped(t) => Some(t),
            Outcome::Returned(_) => None,
        }
    }
}

/// Resume context: rsp after saving the callee-saved registers.
static mut RAW_JMP_RSP: u64 = 0;
/// The target's return value.
static mut RAW_RET: u64 = 0;
/// VA of vcpu_info[0].evtchn_upcall_mask, or 0.
static mut RAW_MASK_PTR: u64 = 0;
/// Written by a stub, read by `call` after the resume.
static mut RAW_OUT: RawTrap = RawTrap {
    tag: 0,
    rsp: 0,
    rflags: 0,
    upcall_mask: 0,
    regs: [0; 16],
    stack: [0; 16],
};

global_asm!(
    ".pushsection .text.xg_raw, \"ax\", @progbits",
    // xg_raw_call(a0, a1, a2, target) -> 0 returned / 1 trapped
    "xg_raw_call:",
    "push rbx",
    "push rbp",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "sub rsp, 8",
    "mov [rip + {jmp}], rsp",
    "call rcx",
    "mov [rip + {ret}], rax",
    "xor eax, eax",
    "jmp 5f",
    "xg_raw_resume:",
    "mov rsp, [rip + {jmp}]",
    "mov eax, 1",
    "5:",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbp",
    "pop rbx",
    "ret",
    "",
    // xg_raw_enter_user(rip, rsp, rflags): HYPERVISOR_iret to user mode.
    "xg_raw_enter_user:",
    "push {user_ss}",
    "push rsi",
    "push rdx",
    "push {user_cs}",
    "push rdi",
    "push 0",
    "jmp xg_hypercall_page + {iret_slot}",
    "",
    // Stub for tag t at xg_raw_stubs + 16 * t: push t, join the common path.
    ".balign 16",
    "xg_raw_stubs:",
    ".set xg_raw_i, 0",
    ".rept {nr_stubs}",
    ".balign 16",
    "push xg_raw_i",
    "jmp xg_raw_common",
    ".set xg_raw_i, xg_raw_i + 1",
    ".endr",
    "",
    "xg_raw_common:",
    "mov [rip + {out} + {regs} + 0], rax",
    "pushfq",
    "pop rax",
    "mov [rip + {out} + {rflags}], rax",
    // A bounced exception keeps the interrupted DF; Rust code needs it clear.
    "cld",
    "mov [rip + {out} + {regs} + 8], rbx",
    "mov [rip + {out} + {regs} + 16], rcx",
    "mov [rip + {out} + {regs} + 24], rdx",
    "mov [rip + {out} + {regs} + 32], rsi",
    "mov [rip + {out} + {regs} + 40], rdi",
    "mov [rip + {out} + {regs} + 48], rbp",
    "mov [rip + {out} + {regs} + 64], r8",
    "mov [rip + {out} + {regs} + 72], r9",
    "mov [rip + {out} + {regs} + 80], r10",
    "mov [rip + {out} + {regs} + 88], r11",
    "mov [rip + {out} + {regs} + 96], r12",
    "mov [rip + {out} + {regs} + 104], r13",
    "mov [rip + {out} + {regs} + 112], r14",
    "mov [rip + {out} + {regs} + 120], r15",
    "mov rax, [rip + {mask_ptr}]",
    "test rax, rax",
    "jz 2f",
    "movzx eax, byte ptr [rax]",
    "jmp 3f",
    "2:",
    "mov rax, -1",
    "3:",
    "mov [rip + {out} + {mask}], rax",
    "pop rax",
    "mov [rip + {out} + {tag}], rax",
    "mov [rip + {out} + {rsp}], rsp",
    "mov [rip + {out} + {regs} + 56], rsp",
    "lea rdx, [rip + {out} + {stack}]",
    "xor ecx, ecx",
    "4:",
    "mov rax, [rsp + rcx * 8]",
    "mov [rdx + rcx * 8], rax",
    "inc ecx",
    "cmp ecx, 16",
    "jb 4b",
    "jmp xg_raw_resume",
    "",
    ".popsection",
    jmp = sym RAW_JMP_RSP,
    ret = sym RAW_RET,
    out = sym RAW_OUT,
    mask_ptr = sym RAW_MASK_PTR,
    regs = const offset_of!(RawTrap, regs),
    mask = const offset_of!(RawTrap, upcall_mask),
    tag = const offset_of!(RawTrap, tag),
    rsp = const offset_of!(RawTrap, rsp),
    rflags = const offset_of!(RawTrap, rflags),
    stack = const offset_of!(RawTrap, stack),
    user_ss = const FLAT_USER_SS | 3,
    user_cs = const FLAT_USER_CS | 3,
    iret_slot = const IRET as usize * HYPERCALL_STUB_SIZE,
    nr_stubs = const NR_STUBS,
);

/// Stubs: one per vector 0-255, then the three callback tags.
const NR_STUBS: usize = 256 + 3;
/// Bytes between consecutive stubs.
const STUB_SIZE: u64 = 16;

extern "C" {
    static xg_raw_stubs: u8;
    fn xg_raw_call(a0: u64, a1: u64, a2: u64, target: u64) -> u64;
    fn xg_raw_enter_user(rip: u64, rsp: u64, rflags: u64);
}

/// Address of the raw stub for `tag` (a vector, or one of the `TAG_*`).
///
/// # Panics
/// If `tag` has no stub.
pub fn stub_address(tag: u64) -> u64 {
    assert!(tag < NR_STUBS as u64, "no raw stub for tag {tag:#x}");
    (&raw const xg_raw_stubs) as u64 + STUB_SIZE * tag
}

/// A trap-table entry sending `vector` to its raw stub with `flags` (DPL in
/// bits 0-1, `TI_MASK_EVENTS`).
pub fn trap_info(vector: u8, flags: u8) -> TrapInfo {
    TrapInfo {
        vector,
        flags,
        cs: FLAT_KERNEL_CS,
        pad: 0,
        address: stub_address(u64::from(vector)),
    }
}

/// Points the listed vectors at their raw stubs with `set_trap_table`; other
/// vectors keep their entries. `traps::install()` gives 0-31 back to the
/// framework.
///
/// # Panics
/// With more than 64 entries.
pub fn install(entries: &[(u8, u8)]) -> Result<u64, Errno> {
    let mut table = [TrapInfo::default(); 65];
    assert!(entries.len() < table.len(), "too many trap entries");
    for (slot, &(vector, flags)) in table.iter_mut().zip(entries) {
        *slot = trap_info(vector, flags);
    }
    // SAFETY: every address is a raw stub, which copes with any frame; the
    // table ends with a zero entry.
    unsafe { hypercall::set_trap_table(&table[..=entries.len()]) }
}

/// Runs `target(args[0], args[1], args[2])`; a raw stub entered before it
/// returns ends the run with [`Outcome::Trapped`].
///
/// # Safety
/// `target` must follow the C ABI, and whatever it does (including the
/// exception it provokes) must leave the kernel's memory intact; between its
/// start and the exception it must not depend on its stack frame surviving.
pub unsafe fn call(target: unsafe extern "C" fn(u64, u64, u64) -> u64, args: [u64; 3]) -> Outcome {
    let mask_ptr = shared_info::get().map_or(0, |s| {
        // evtchn_upcall_mask is byte 1 of vcpu_info[0].
        s.as_ptr() as u64 + 1
    });
    // SAFETY: single-threaded; the stubs read this only during the call.
    unsafe { (&raw mut RAW_MASK_PTR).write_volatile(mask_ptr) };
    // SAFETY: xg_raw_call preserves the callee-saved registers and the stack
    // on both of its exits; the caller vouches for the target.
    let trapped = unsafe { xg_raw_call(args[0], args[1], args[2], target as usize as u64) };
    if trapped == 0 {
        // SAFETY: written by xg_raw_call just now.
        Outcome::Returned(unsafe { (&raw const RAW_RET).read_volatile() })
    } else {
        // SAFETY: written completely by the stub before it resumed here.
        Outcome::Trapped(unsafe { (&raw const RAW_OUT).read_volatile() })
    }
}

#[repr(C, align(4096))]
struct Stack([u8; 16384]);

/// Kernel stack for traps and syscalls from user mode (see [`setup_user_mode`]).
static mut KERNEL_TRAP_STACK: Stack = Stack([0; 16384]);
/// Stack for user-mode code run by tests.
static mut USER_STACK: Stack = Stack([0; 16384]);

/// Top of the kernel stack registered by [`setup_user_mode`]: 256 bytes below
/// the end of its area, so that a stub can read 16 words above a frame.
pub fn kernel_trap_stack_top() -> u64 {
    (&raw const KERNEL_TRAP_STACK) as u64 + 16384 - 256
}

/// Top of a 16 KiB stack for user-mode code (256 bytes of slack above).
pub fn user_stack_top() -> u64 {
    (&raw const USER_STACK) as u64 + 16384 - 256
}

/// What [`setup_user_mode`] could not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// `mov %cr3` faulted.
    ReadCr3(Fault),
    /// `MMUEXT_NEW_USER_BASEPTR` failed.
    UserBaseptr(Errno),
    /// `stack_switch` failed.
    StackSwitch(Errno),
}

/// Makes user mode usable the way XTF does: the user root is the kernel's own
/// L4 (read with an emulated `mov %cr3`), installed with
/// `MMUEXT_NEW_USER_BASEPTR`; `stack_switch` registers
/// [`kernel_trap_stack_top`] as the kernel stack for traps from user mode.
/// Returns the CR3 value read.
pub fn setup_user_mode() -> Result<u64, SetupError> {
    let cr3 = insn::read_cr3().map_err(SetupError::ReadCr3)?;
    let op = MmuextOp {
        cmd: MMUEXT_NEW_USER_BASEPTR,
        pad: 0,
        arg1: cr3 >> 12,
        arg2: 0,
    };
    // SAFETY: the user root is the running kernel root, which stays in use;
    // only one more type reference is taken on it.
    unsafe { hypercall::mmuext_op(&[op], DOMID_SELF) }.map_err(SetupError::UserBaseptr)?;
    cpu::stack_switch(FLAT_KERNEL_SS, kernel_trap_stack_top()).map_err(SetupError::StackSwitch)?;
    Ok(cr3)
}

/// Registers the raw syscall stub as `CALLBACKTYPE_syscall` (events masked on
/// entry if `mask_events`).
pub fn register_syscall(mask_events: bool) -> Result<u64, Errno> {
    let flags = if mask_events {
        CALLBACKF_MASK_EVENTS
    } else {
        0
    };
    // SAFETY: the raw stub copes with any frame.
    unsafe { hypercall::callback_register(CALLBACKTYPE_SYSCALL, flags, stub_address(TAG_SYSCALL)) }
}

/// Enters guest user mode at `rip` with `rsp` and `rflags` (through
/// `HYPERVISOR_iret`, CS `0xe033`, SS `0xe02b`) and returns the first capture:
/// an exception, software interrupt or syscall that reached a raw stub.
///
/// # Safety
/// [`setup_user_mode`] must have succeeded; the code at `rip` must end in
/// something that reaches a raw stub (e.g. `SYSCALL` with
/// [`register_syscall`] done), and must not break the kernel's memory.
pub unsafe fn call_user(rip: u64, rsp: u64, rflags: u64) -> RawTrap {
    let enter: unsafe extern "C" fn(u64, u64, u64) -> u64 =
        // SAFETY: xg_raw_enter_user never returns (its only way back is a
        // stub); the fn-pointer type only serves `call`.
        unsafe { core::mem::transmute(xg_raw_enter_user as unsafe extern "C" fn(u64, u64, u64)) };
    // SAFETY: forwarded to the caller.
    match unsafe { call(enter, [rip, rsp, rflags]) } {
        Outcome::Trapped(t) => t,
        Outcome::Returned(v) => panic!("HYPERVISOR_iret to user mode returned {v:#x}"),
    }
}

global_asm!(
    ".pushsection .text.xg_raw_int31, \"ax\", @progbits",
    "xg_raw_int31:",
    "int 0x31",
    "ud2",
    ".popsection",
);

extern "C" {
    fn xg_raw_int31(a0: u64, a1: u64, a2: u64) -> u64;
}

/// How this CPU encodes the #GP error code of `int $n` through a DPL-0 gate:
/// the factor `f` in `n * f + 2`. Real hardware: 8 (IDT vector << 3 | IDT
/// bit). QEMU 7.2 TCG in 64-bit mode: 16 (a bug), so Xen, which decodes
/// `ec >> 3`, sees vector `2n mod 256`. Measured with `int $0x31`, which must
/// have no trap entry at 0x31 or 0x62; #GP must go to its raw stub
/// ([`install`]). None if the result is neither.
pub fn int_error_code_factor() -> Option<u64> {
    // SAFETY: the routine only raises #GP (or, wrongly, a software interrupt).
    let trap = unsafe { call(xg_raw_int31, [0; 3]) }.trapped()?;
    if trap.tag != 13 {
        return None;
    }
    match trap.frame(true).error_code {
        Some(0x312) => Some(16),
        Some(0x18a) => Some(8),
        _ => None,
    }
}
