//! A domU that runs a script of raw hypercalls, loads and stores written by
//! dom0, for tests that make another domain do something and check what the
//! hypervisor answered it.
//!
//! The domU code ([`code`]) is a small position-independent interpreter
//! copied into the code page of a [`TinyDomain`]. It runs a script of
//! 64-byte steps that dom0 writes into the domU's data page (the page after
//! the code) before unpausing it: a hypercall number and five arguments
//! (issued with a raw `SYSCALL`: rax, rdi, rsi, rdx, r10, r8; the domU has no
//! hypercall page), a load from an address ([`OP_LOAD`]), or a store to one
//! ([`OP_STORE`]). The value in rax after each step (the load's value, 0 for
//! a store) goes into consecutive 8-byte result slots, which [`put_script`]
//! pre-fills with [`SENTINEL`]; a slot still holding it was never reached.
//! After the last step the interpreter sets the word at [`FINISHED`] to 1
//! and spins (`pause`) for ever.
//!
//! Data page layout: result slots from [`RESULTS`], the finished flag at
//! [`FINISHED`], the script from [`SCRIPT`] (at most [`MAX_STEPS`] steps and
//! the end marker), and from [`ARGS`] on free space for the argument
//! structures the steps point at ([`data_va`] gives their domU address).

use core::arch::global_asm;
use core::fmt;
use core::mem::size_of;

use xen_abi::Errno;

use crate::builder::{self, TinyDomain, PFN_DATA};
use crate::report::Failures;
use crate::{check_eq, println};

/// Result slots, one per step.
pub const RESULTS: usize = 0x000;
/// Set to 1 when the interpreter reaches the end of its script.
pub const FINISHED: usize = 0x1f8;
/// The script: up to [`MAX_STEPS`] entries of 8 words (op, five arguments,
/// pad), then [`OP_END`].
pub const SCRIPT: usize = 0x200;
/// Bytes per script step.
pub const STEP_BYTES: usize = 64;
/// First byte after the script area: argument structures go from here on.
pub const ARGS: usize = 0x800;
/// Most steps a script may have (one slot is kept for the end marker).
pub const MAX_STEPS: usize = (ARGS - SCRIPT) / STEP_BYTES - 1;

/// Op: load 8 bytes from the address in argument 0.
pub const OP_LOAD: u64 = 0x1000;
/// Op: store argument 1 (8 bytes) at the address in argument 0.
pub const OP_STORE: u64 = 0x1001;
/// Op: end of the script.
pub const OP_END: u64 = u64::MAX;

/// What a result slot holds until its step runs.
pub const SENTINEL: u64 = 0x5e57_0000_dead_beef;

// rbx = data page, r12 = current step, r13 = current result slot; SYSCALL
// clobbers only rcx and r11 (and rax).
global_asm!(
    ".pushsection .text.domu_script, \"ax\", @progbits",
    ".balign 16",
    "xg_domu_script_start:",
    "lea rbx, [rip + xg_domu_script_start]",
    "add rbx, 4096",
    "lea r12, [rbx + {script}]",
    "lea r13, [rbx + {results}]",
    "2:",
    "mov rax, [r12]",
    "cmp rax, -1",
    "je 6f",
    "mov rdi, [r12 + 8]",
    "mov rsi, [r12 + 16]",
    "mov rdx, [r12 + 24]",
    "mov r10, [r12 + 32]",
    "mov r8, [r12 + 40]",
    "cmp rax, {op_load}",
    "je 3f",
    "cmp rax, {op_store}",
    "je 4f",
    "syscall",
    "jmp 5f",
    "3:",
    "mov rax, [rdi]",
    "jmp 5f",
    "4:",
    "mov [rdi], rsi",
    "xor eax, eax",
    "5:",
    "mov [r13], rax",
    "add r12, {step}",
    "add r13, 8",
    "jmp 2b",
    "6:",
    "mov qword ptr [rbx + {finished}], 1",
    "7:",
    "pause",
    "jmp 7b",
    "xg_domu_script_end:",
    ".popsection",
    script = const SCRIPT,
    results = const RESULTS,
    op_load = const OP_LOAD,
    op_store = const OP_STORE,
    step = const STEP_BYTES,
    finished = const FINISHED,
);

extern "C" {
    static xg_domu_script_start: u8;
    static xg_domu_script_end: u8;
}

/// The interpreter's machine code (for the domU's code page).
pub fn code() -> &'static [u8] {
    let start = (&raw const xg_domu_script_start) as usize;
    let end = (&raw const xg_domu_script_end) as usize;
    // SAFETY: the two labels delimit the assembled bytes in .text, mapped
    // read-only for the kernel's life.
    unsafe { core::slice::from_raw_parts(start as *const u8, end - start) }
}

/// A result slot's value, printed as an errno where it is one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rax(pub u64);

impl fmt::Debug for Rax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == SENTINEL {
            return write!(f, "(not reached)");
        }
        match Errno::from_ret(self.0 as i64) {
            Some(e) => write!(f, "-{}", e.name()),
            None => write!(f, "{:#x}", self.0),
        }
    }
}

/// The result slot value of a hypercall failing with `e`.
pub fn ret(e: Errno) -> Rax {
    Rax(e.as_rax())
}

/// The result slot value of a step never reached.
pub const NOT_REACHED: Rax = Rax(SENTINEL);

/// One script step and the result expected in its slot.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub what: &'static str,
    /// Hypercall number, [`OP_LOAD`] or [`OP_STORE`].
    pub op: u64,
    pub args: [u64; 5],
    pub expect: Rax,
}

/// A hypercall step.
pub const fn hc(what: &'static str, nr: u64, args: [u64; 5], expect: Rax) -> Step {
    Step {
        what,
        op: nr,
        args,
        expect,
    }
}

/// The domU VA of byte `off` of its data page.
pub const fn data_va(off: usize) -> u64 {
    TinyDomain::va(PFN_DATA) + off as u64
}

/// Writes `v` at byte `off` of `page`.
///
/// # Panics
/// If it does not fit in the page.
pub fn put<T: Copy>(page: &mut [u64; 512], off: usize, v: T) {
    assert!(off + size_of::<T>() <= 4096);
    // SAFETY: the range is inside the page (checked); T is plain data and
    // the write is unaligned-safe.
    unsafe {
        page.as_mut_ptr()
            .cast::<u8>()
            .add(off)
            .cast::<T>()
            .write_unaligned(v);
    }
}

/// Reads a `T` at byte `off` of the page mapped at `va` (a window mapping a
/// whole page; `T` plain integers, valid for any bit pattern).
///
/// # Panics
/// If it does not fit in the page.
pub fn get<T: Copy>(va: u64, off: usize) -> T {
    assert!(off + size_of::<T>() <= 4096);
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    let src = (va + off as u64) as *const u8;
    let dst = v.as_mut_ptr().cast::<u8>();
    for i in 0..size_of::<T>() {
        // SAFETY: `va` is a window mapping a whole page and the range is
        // inside it; `dst` has room for size_of::<T>() bytes. Byte-wise
        // volatile reads: the other domain may write the page meanwhile, and
        // `off` need not be aligned for T.
        unsafe { dst.add(i).write(src.add(i).read_volatile()) };
    }
    // SAFETY: every byte was written above and T is plain data valid for
    // any bit pattern (the caller's contract).
    unsafe { v.assume_init() }
}

/// Writes the script (and clears the result slots to the sentinel).
///
/// # Panics
/// If there are more than [`MAX_STEPS`] steps.
pub fn put_script(p: &mut [u64; 512], steps: &[Step]) {
    assert!(steps.len() <= MAX_STEPS);
    for i in 0..=MAX_STEPS {
        p[RESULTS / 8 + i] = SENTINEL;
    }
    for (i, s) in steps.iter().enumerate() {
        let w = (SCRIPT + i * STEP_BYTES) / 8;
        p[w] = s.op;
        p[w + 1..w + 6].copy_from_slice(&s.args);
    }
    p[(SCRIPT + steps.len() * STEP_BYTES) / 8] = OP_END;
}

/// The result of step `i` in the data page mapped at `data`.
pub fn result(data: u64, i: usize) -> Rax {
    Rax(get::<u64>(data, RESULTS + i * 8))
}

/// Whether the interpreter reached the end of its script.
pub fn finished(data: u64) -> bool {
    get::<u64>(data, FINISHED) != 0
}

/// Prints and checks each step's result slot.
pub fn check_results(t: &mut Failures, data: u64, steps: &[Step]) {
    for (i, s) in steps.iter().enumerate() {
        let got = result(data, i);
        println!("step {i:2} {:<58} {got:?}", s.what);
        check_eq!(t, got, s.expect, "step {i} ({})", s.what);
    }
}

/// Creates a domU running the interpreter ([`builder::create_populated`],
/// [`TinyDomain::build`], vCPU 0's context set), still paused; its data page
/// is cleared (the caller writes the script with [`TinyDomain::fill`]). Ends
/// the test with ERROR if any of this fails. [`crate::mm::Mm::new`] must
/// have run (the builder maps the domU's frames through mm windows).
pub fn new_domain(t: &mut Failures, cmdline: &str) -> TinyDomain {
    let (domid, mfns) = match builder::create_populated() {
        Ok(r) => r,
        Err(e) => {
            println!("creating the domU: {e:?}");
            crate::error("cannot create a domU");
        }
    };
    let si = builder::shared_info_mfn(domid).unwrap_or_else(|e| {
        println!("getdomaininfo of the domU: {e:?}");
        crate::error("no shared_info for the domU");
    });
    let code = code();
    let d = match TinyDomain::build(domid, mfns, code, si, cmdline) {
        Ok(d) => d,
        Err(e) => {
            println!("building the domU: {e:?}");
            crate::error("cannot write the domU's pages");
        }
    };
    println!(
        "domain {domid}: {} bytes of code, mfns {mfns:#x?}",
        code.len()
    );
    if !check_eq!(t, d.set_context(0), Ok(0), "setvcpucontext(0)") {
        crate::error("the domU has no vCPU context");
    }
    d
}
