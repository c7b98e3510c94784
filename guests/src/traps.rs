//! Exception entry for vectors 0-31, exception-table fix-ups and probes.
//!
//! Xen bounces an exception onto the kernel stack as, from the new `rsp`
//! upward: `rcx, r11, [error code], rip, cs, rflags, rsp, ss` (error code only
//! for vectors 8, 10-14, 17 and 21). Each stub pops `rcx`/`r11`, pushes a
//! dummy error code where the CPU has none and its vector, and joins the
//! common path, which saves the GPRs and calls `handle` with a
//! [`TrapFrame`]. The return goes through `HYPERVISOR_iret`: the 5-word frame
//! plus a flags word of 0, then a jump to hypercall page slot 23.
//!
//! Fix-ups: an instruction may be listed in the `.xg_extable` section (see
//! [`extable_entry!`](crate::extable_entry)) with a fix-up address. If it
//! faults, `handle` resumes at the fix-up with `rax` = [`Fault::encode`].
//! Any other exception is reported and ends the test with ERROR.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, Ordering};

use xen_abi::hypercall::{HYPERCALL_STUB_SIZE, IRET};
use xen_abi::layout::FLAT_KERNEL_CS;
use xen_abi::trap::{TrapInfo, TI_MASK_EVENTS};
use xen_abi::Errno;

use crate::x86::{VEC_BP, VEC_OF, VEC_PF};
use crate::{hypercall, println, report, shared_info};

/// Vectors handled: the architectural exceptions.
pub const NR_VECTORS: usize = 32;

/// Whether the CPU pushes an error code for `vector` (as Xen passes it on).
pub const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21)
}

/// Register state of the interrupted context, as saved by the entry path.
#[repr(C)]
#[derive(Debug, Clone)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    /// Bits 0-15 selector; bits 32-39 the saved `evtchn_upcall_mask`.
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// One stub per vector, then the common save / call / HYPERVISOR_iret path.
global_asm!(
    ".pushsection .text.xg_traps, \"ax\", @progbits",
    ".macro xg_trap_stub vec",
    ".balign 16",
    "xg_trap_\\vec:",
    "pop rcx",
    "pop r11",
    ".if (\\vec == 8) || ((\\vec >= 10) && (\\vec <= 14)) || (\\vec == 17) || (\\vec == 21)",
    ".else",
    "push 0",
    ".endif",
    "push \\vec",
    "jmp xg_trap_common",
    ".endm",
    ".irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "xg_trap_stub \\v",
    ".endr",
    "",
    "xg_trap_common:",
    "push rax",
    "push rbx",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rbp",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov rdi, rsp",
    "mov rbx, rsp",
    "and rsp, -16",
    // Xen keeps the interrupted DF in a bounce; Rust code needs it clear
    // (HYPERVISOR_iret restores the interrupted RFLAGS).
    "cld",
    "call {handle}",
    "mov rsp, rbx",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rbp",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rbx",
    "pop rax",
    "add rsp, 16",
    "push 0",
    "jmp xg_hypercall_page + {iret_slot}",
    ".popsection",
    "",
    ".pushsection .rodata.xg_trap_stubs, \"a\", @progbits",
    ".balign 8",
    "xg_trap_stubs:",
    ".irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    ".quad xg_trap_\\v",
    ".endr",
    ".popsection",
    handle = sym handle,
    iret_slot = const IRET as usize * HYPERCALL_STUB_SIZE,
);

extern "C" {
    static xg_trap_stubs: [u64; NR_VECTORS];
    static __xg_extable_start: ExtableEntry;
    static __xg_extable_end: ExtableEntry;
}

/// Registers the stubs for vectors 0-31 with `set_trap_table`.
///
/// #BP and #OF are DPL 3 (so `int3`/`into` work), the rest DPL 0; all mask
/// events on entry.
pub fn install() -> Result<u64, Errno> {
    // The last entry stays zero: the terminator.
    let mut table = [TrapInfo::default(); NR_VECTORS + 1];
    for (vector, entry) in (0u8..).zip(table.iter_mut().take(NR_VECTORS)) {
        let dpl = if vector == VEC_BP || vector == VEC_OF {
            3
        } else {
            0
        };
        *entry = TrapInfo {
            vector,
            flags: dpl | TI_MASK_EVENTS,
            cs: FLAT_KERNEL_CS,
            pad: 0,
            // SAFETY: the stub table is constant data emitted above.
            address: unsafe { xg_trap_stubs[usize::from(vector)] },
        };
    }
    // SAFETY: every address is a stub of the entry path above, which handles
    // Xen's bounce frame; the table ends with a zero address.
    unsafe { hypercall::set_trap_table(&table) }
}

/// An exception caught by a fix-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    /// The error code (0 for vectors without one).
    pub error_code: u32,
}

impl Fault {
    const VALID: u64 = 1 << 63;

    /// `rax` as the handler sets it at the fix-up: bit 63, vector in bits
    /// 32-39, error code in bits 0-31. Probes set `rax` to 0 before the
    /// instruction, so bit 63 tells a fault from a normal completion.
    pub const fn encode(self) -> u64 {
        Self::VALID | ((self.vector as u64) << 32) | self.error_code as u64
    }

    /// The fault recorded in `rax` at a fix-up, or None if there was none.
    pub const fn decode(rax: u64) -> Option<Fault> {
        if rax & Self::VALID == 0 {
            None
        } else {
            Some(Fault {
                vector: (rax >> 32) as u8,
                error_code: rax as u32,
            })
        }
    }
}

/// One `.xg_extable` entry: if `fault` faults, resume at `fixup`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ExtableEntry {
    pub fault: u64,
    pub fixup: u64,
}

/// Assembler text adding an exception-table entry, for use inside `asm!`:
/// `extable_entry!("2b", "3f")` resumes at label 3 if the instruction at
/// label 2 faults, with `rax` = [`Fault::encode`]. Initialise `rax` to 0
/// (`inout("rax") 0u64 => info`) and decode it with [`Fault::decode`].
#[macro_export]
macro_rules! extable_entry {
    ($fault:literal, $fixup:literal) => {
        concat!(
            ".pushsection .xg_extable, \"a\"\n",
            ".balign 8\n",
            ".quad ",
            $fault,
            ", ",
            $fixup,
            "\n",
            ".popsection\n"
        )
    };
}

fn extable() -> &'static [ExtableEntry] {
    // SAFETY: the linker script brackets the `.xg_extable` entries (8-byte
    // aligned, constant after link) with these two symbols.
    unsafe {
        let start = &raw const __xg_extable_start;
        let end = &raw const __xg_extable_end;
        let len = (end as usize - start as usize) / core::mem::size_of::<ExtableEntry>();
        core::slice::from_raw_parts(start, len)
    }
}

fn fixup_for(rip: u64) -> Option<u64> {
    extable().iter().find(|e| e.fault == rip).map(|e| e.fixup)
}

/// Reads a u64, reporting a fault instead of crashing.
pub fn probe_read_u64(addr: u64) -> Result<u64, Fault> {
    let info: u64;
    let value: u64;
    // SAFETY: a load only reads; if it faults, the fix-up resumes at label 3
    // with the fault in rax.
    unsafe {
        asm!(
            "2: mov {value}, qword ptr [{addr}]",
            "3:",
            crate::extable_entry!("2b", "3b"),
            addr = in(reg) addr,
            value = lateout(reg) value,
            inout("rax") 0u64 => info,
            options(nostack, readonly),
        );
    }
    match Fault::decode(info) {
        Some(fault) => Err(fault),
        None => Ok(value),
    }
}

/// Reads a byte, reporting a fault instead of crashing.
pub fn probe_read_u8(addr: u64) -> Result<u8, Fault> {
    let info: u64;
    let value: u8;
    // SAFETY: as for `probe_read_u64`.
    unsafe {
        asm!(
            "2: mov {value}, byte ptr [{addr}]",
            "3:",
            crate::extable_entry!("2b", "3b"),
            addr = in(reg) addr,
            value = lateout(reg_byte) value,
            inout("rax") 0u64 => info,
            options(nostack, readonly),
        );
    }
    match Fault::decode(info) {
        Some(fault) => Err(fault),
        None => Ok(value),
    }
}

/// Writes a u64, reporting a fault instead of crashing.
///
/// # Safety
/// If the write succeeds it must not break anything (e.g. write back the
/// value just read).
pub unsafe fn probe_write_u64(addr: u64, value: u64) -> Result<(), Fault> {
    let info: u64;
    // SAFETY: the caller vouches for the store; if it faults, the fix-up
    // resumes at label 3 with the fault in rax.
    unsafe {
        asm!(
            "2: mov qword ptr [{addr}], {value}",
            "3:",
            crate::extable_entry!("2b", "3b"),
            addr = in(reg) addr,
            value = in(reg) value,
            inout("rax") 0u64 => info,
            options(nostack),
        );
    }
    match Fault::decode(info) {
        Some(fault) => Err(fault),
        None => Ok(()),
    }
}

fn vector_name(vector: u64) -> &'static str {
    const NAMES: [&str; 22] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#09", "#TS", "#NP", "#SS",
        "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("#??")
}

/// Called by the common entry path for every exception.
extern "C" fn handle(frame: &mut TrapFrame) {
    if let Some(fixup) = fixup_for(frame.rip) {
        let fault = Fault {
            vector: frame.vector as u8,
            error_code: frame.error_code as u32,
        };
        frame.rax = fault.encode();
        frame.rip = fixup;
        return;
    }
    unhandled(frame)
}

fn unhandled(frame: &TrapFrame) -> ! {
    static REPORTING: AtomicBool = AtomicBool::new(false);
    if REPORTING.swap(true, Ordering::SeqCst) {
        // An exception while reporting one: stop without more output.
        report::exit(report::Verdict::Error);
    }
    let f = frame;
    println!(
        "Unhandled exception: vector {} {} error code {:#x} at rip {:#018x}",
        f.vector,
        vector_name(f.vector),
        f.error_code,
        f.rip
    );
    if f.vector == u64::from(VEC_PF) {
        match shared_info::get() {
            Some(s) => println!("  cr2 {:#018x}", s.cr2(0)),
            None => println!("  cr2 unknown (shared_info not mapped)"),
        }
    }
    println!(
        "  cs {:#x} rflags {:#x} rsp {:#018x} ss {:#x}",
        f.cs, f.rflags, f.rsp, f.ss
    );
    println!(
        "  rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}",
        f.rax, f.rbx, f.rcx, f.rdx
    );
    println!(
        "  rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}",
        f.rsi, f.rdi, f.rbp, f.r8
    );
    println!(
        "  r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}",
        f.r9, f.r10, f.r11, f.r12
    );
    println!(
        "  r13 {:#018x} r14 {:#018x} r15 {:#018x}",
        f.r13, f.r14, f.r15
    );
    report::exit(report::Verdict::Error)
}
