//! Xen ELF notes, the entry point, the boot stack and the hand-over to the test.
//!
//! The domain builder maps the image at `VIRT_BASE` (pfn 0 = first page of
//! `.text`, see `link.ld`), fills the hypercall page, and enters `xg_entry`
//! with `rsp` at the top of its boot stack and `rsi` = VA of start_info.
//! The entry stub stores every register it was handed in [`EntryRegs`] before
//! touching any of them, then moves to the kernel's own stack.

use core::arch::global_asm;
use core::mem::offset_of;

use xen_abi::elfnote::{
    XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_FEATURES, XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_GUEST_VERSION,
    XEN_ELFNOTE_HYPERCALL_PAGE, XEN_ELFNOTE_LOADER, XEN_ELFNOTE_PADDR_OFFSET,
    XEN_ELFNOTE_SUPPORTED_FEATURES, XEN_ELFNOTE_VIRT_BASE, XEN_ELFNOTE_XEN_VERSION,
};
use xen_abi::features::XENFEAT_DOM0;
use xen_abi::start_info::StartInfo;

use crate::report::{self, Verdict};
use crate::{console, hypercall, traps};

/// Bytes of the kernel's own stack.
const STACK_SIZE: usize = 16 * 1024;

/// Registers as the builder handed them to the entry point.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rflags: u64,
    pub cs: u64,
    pub ss: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

/// Written once by the entry stub, before any Rust code runs; read-only after.
static mut ENTRY_REGS: EntryRegs = EntryRegs {
    rax: 0,
    rbx: 0,
    rcx: 0,
    rdx: 0,
    rsi: 0,
    rdi: 0,
    rbp: 0,
    rsp: 0,
    r8: 0,
    r9: 0,
    r10: 0,
    r11: 0,
    r12: 0,
    r13: 0,
    r14: 0,
    r15: 0,
    rflags: 0,
    cs: 0,
    ss: 0,
    ds: 0,
    es: 0,
    fs: 0,
    gs: 0,
};

/// The kernel's stack; only ever used through `rsp`.
static mut STACK: Stack = Stack([0; STACK_SIZE]);

/// One ELF note owned by "Xen": the type (an asm operand), then the
/// descriptor as assembler text.
macro_rules! xen_note {
    ($ty:literal, $($desc:literal),+) => {
        concat!(
            ".balign 4\n",
            ".long 4\n",
            ".long 3f - 2f\n",
            ".long ", $ty, "\n",
            ".asciz \"Xen\"\n",
            "2:\n",
            $($desc, "\n",)+
            "3:\n",
            ".balign 4\n",
        )
    };
}

// The notes (public/elfnote.h), the entry point and the hypercall page live in
// one block so that they land in one object file, kept alive by ENTRY().
global_asm!(
    ".pushsection .note.Xen, \"a\", @note",
    xen_note!("{n_xen_version}", ".asciz \"xen-3.0\""),
    xen_note!("{n_guest_os}", ".asciz \"Xenolith-test\""),
    xen_note!("{n_guest_version}", ".asciz \"0\""),
    xen_note!("{n_loader}", ".asciz \"generic\""),
    xen_note!("{n_virt_base}", ".quad __xg_virt_base"),
    xen_note!("{n_paddr_offset}", ".quad 0"),
    xen_note!("{n_entry}", ".quad xg_entry"),
    xen_note!("{n_hypercall_page}", ".quad xg_hypercall_page"),
    // Optional features; none required (no leading '!').
    xen_note!("{n_features}", ".asciz \"pae_pgdir_above_4gb\""),
    // Xen 4.17 builds dom0 only from a kernel that declares dom0 support.
    xen_note!("{n_supported_features}", ".long 1 << {dom0}"),
    ".popsection",
    //
    ".pushsection .text.xg_entry, \"ax\", @progbits",
    ".global xg_entry",
    "xg_entry:",
    "mov [rip + {regs} + {rax}], rax",
    "mov [rip + {regs} + {rbx}], rbx",
    "mov [rip + {regs} + {rcx}], rcx",
    "mov [rip + {regs} + {rdx}], rdx",
    "mov [rip + {regs} + {rsi}], rsi",
    "mov [rip + {regs} + {rdi}], rdi",
    "mov [rip + {regs} + {rbp}], rbp",
    "mov [rip + {regs} + {rsp}], rsp",
    "mov [rip + {regs} + {r8}], r8",
    "mov [rip + {regs} + {r9}], r9",
    "mov [rip + {regs} + {r10}], r10",
    "mov [rip + {regs} + {r11}], r11",
    "mov [rip + {regs} + {r12}], r12",
    "mov [rip + {regs} + {r13}], r13",
    "mov [rip + {regs} + {r14}], r14",
    "mov [rip + {regs} + {r15}], r15",
    "mov word ptr [rip + {regs} + {cs}], cs",
    "mov word ptr [rip + {regs} + {ss}], ss",
    "mov word ptr [rip + {regs} + {ds}], ds",
    "mov word ptr [rip + {regs} + {es}], es",
    "mov word ptr [rip + {regs} + {fs}], fs",
    "mov word ptr [rip + {regs} + {gs}], gs",
    // One push onto the builder's boot stack, which is ours to use.
    "pushfq",
    "pop qword ptr [rip + {regs} + {rflags}]",
    "lea rsp, [rip + {stack} + {stack_size}]",
    "xor ebp, ebp",
    "mov rdi, rsi",
    "call {start}",
    "ud2",
    ".popsection",
    //
    // Filled by the builder (128 stubs of 32 bytes); pre-filled with `ret` so
    // that an unfilled page is detectable (byte 0 still 0xc3).
    ".pushsection .text.xg_hypercall_page, \"ax\", @progbits",
    ".balign 4096",
    ".global xg_hypercall_page",
    "xg_hypercall_page:",
    ".fill 4096, 1, 0xc3",
    ".popsection",
    n_xen_version = const XEN_ELFNOTE_XEN_VERSION,
    n_guest_os = const XEN_ELFNOTE_GUEST_OS,
    n_guest_version = const XEN_ELFNOTE_GUEST_VERSION,
    n_loader = const XEN_ELFNOTE_LOADER,
    n_virt_base = const XEN_ELFNOTE_VIRT_BASE,
    n_paddr_offset = const XEN_ELFNOTE_PADDR_OFFSET,
    n_entry = const XEN_ELFNOTE_ENTRY,
    n_hypercall_page = const XEN_ELFNOTE_HYPERCALL_PAGE,
    n_features = const XEN_ELFNOTE_FEATURES,
    n_supported_features = const XEN_ELFNOTE_SUPPORTED_FEATURES,
    dom0 = const XENFEAT_DOM0,
    regs = sym ENTRY_REGS,
    stack = sym STACK,
    stack_size = const STACK_SIZE,
    start = sym rust_start,
    rax = const offset_of!(EntryRegs, rax),
    rbx = const offset_of!(EntryRegs, rbx),
    rcx = const offset_of!(EntryRegs, rcx),
    rdx = const offset_of!(EntryRegs, rdx),
    rsi = const offset_of!(EntryRegs, rsi),
    rdi = const offset_of!(EntryRegs, rdi),
    rbp = const offset_of!(EntryRegs, rbp),
    rsp = const offset_of!(EntryRegs, rsp),
    r8 = const offset_of!(EntryRegs, r8),
    r9 = const offset_of!(EntryRegs, r9),
    r10 = const offset_of!(EntryRegs, r10),
    r11 = const offset_of!(EntryRegs, r11),
    r12 = const offset_of!(EntryRegs, r12),
    r13 = const offset_of!(EntryRegs, r13),
    r14 = const offset_of!(EntryRegs, r14),
    r15 = const offset_of!(EntryRegs, r15),
    rflags = const offset_of!(EntryRegs, rflags),
    cs = const offset_of!(EntryRegs, cs),
    ss = const offset_of!(EntryRegs, ss),
    ds = const offset_of!(EntryRegs, ds),
    es = const offset_of!(EntryRegs, es),
    fs = const offset_of!(EntryRegs, fs),
    gs = const offset_of!(EntryRegs, gs),
);

extern "C" {
    static xg_hypercall_page: [u8; 4096];
    static __xg_image_start: u8;
    static __xg_image_end: u8;
    static __xg_virt_base: u8;
}

extern "Rust" {
    /// Defined by [`test_main!`](crate::test_main) in the test kernel.
    fn xg_test_main(boot: &Boot) -> Verdict;
}

/// VA of the hypercall page.
pub fn hypercall_page() -> u64 {
    (&raw const xg_hypercall_page) as u64
}

/// The hypercall page as the builder left it.
pub fn hypercall_page_bytes() -> [u8; 4096] {
    // SAFETY: the page is part of the (always mapped) image; the builder wrote
    // it before entry and nothing writes it afterwards.
    unsafe { core::ptr::read_volatile(&raw const xg_hypercall_page) }
}

/// VA the image is linked for (the VIRT_BASE note).
pub fn virt_base() -> u64 {
    (&raw const __xg_virt_base) as u64
}

/// First VA of the image (page aligned).
pub fn image_start() -> u64 {
    (&raw const __xg_image_start) as u64
}

/// End of the image including .bss (page aligned): the builder's `virt_kend`.
pub fn image_end() -> u64 {
    (&raw const __xg_image_end) as u64
}

/// What a test gets to see of its boot.
#[derive(Debug)]
pub struct Boot {
    /// The start_info page the builder prepared.
    pub start_info: &'static StartInfo,
    /// Registers at the entry point, stored before anything else ran.
    pub entry: EntryRegs,
}

impl Boot {
    /// The command line from start_info, up to its NUL (None if not UTF-8).
    pub fn cmdline(&self) -> Option<&'static str> {
        let raw = &self.start_info.cmd_line;
        let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        core::str::from_utf8(&raw[..len]).ok()
    }

    /// Value of `key=value` on the command line (`Some("")` for a bare `key`).
    pub fn arg(&self, key: &str) -> Option<&'static str> {
        self.cmdline()?
            .split_ascii_whitespace()
            .find_map(|word| match word.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                None if word == key => Some(""),
                _ => None,
            })
    }

    /// Numeric `key=value` (decimal, or hexadecimal with `0x`).
    pub fn arg_u64(&self, key: &str) -> Option<u64> {
        parse_u64(self.arg(key)?)
    }
}

/// Parses decimal or `0x`-prefixed hexadecimal.
pub fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Called by the entry stub on the kernel stack with the start_info VA.
extern "C" fn rust_start(start_info: *const StartInfo) -> ! {
    if hypercall_page_bytes()[0] == 0xc3 {
        // Nothing through the page works: say so with raw SYSCALLs.
        hypercall::raw_console_write(b"hypercall page not filled by the builder\n");
        hypercall::raw_console_write(b"Test result: ERROR\n");
        hypercall::raw_shutdown_crash();
    }
    if let Err(e) = traps::install() {
        console::_print(format_args!(
            "warning: set_trap_table failed ({e:?}); exceptions will crash the domain\n"
        ));
    }
    // SAFETY: the builder passes the VA of the start_info page, mapped
    // read-write in the initial region for the lifetime of the domain; the
    // framework never writes it.
    let start_info = unsafe { &*start_info };
    // SAFETY: ENTRY_REGS was written by the entry stub before this function
    // ran and is never written again.
    let entry = unsafe { core::ptr::read_volatile(&raw const ENTRY_REGS) };
    let boot = Boot { start_info, entry };
    // SAFETY: `xg_test_main` is defined by `test_main!` with this signature.
    let verdict = unsafe { xg_test_main(&boot) };
    report::exit(verdict)
}
