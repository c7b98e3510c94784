//! Bringing up more vCPUs: `VCPUOP_initialise` with a kernel-mode context, and
//! the other `vcpu_op` calls that take a vCPU up and down; an [`IdlePort`]
//! for vCPU 0 to sleep on while the others run, and an event-callback entry
//! that any vCPU can use ([`upcall_entry`]).
//!
//! Only vCPU 0 calls these (the context buffer is a single static); the code a
//! secondary vCPU runs is the test's own and must not use the rest of this
//! framework, which assumes one vCPU. The one exception is the entry stub
//! behind [`upcall_entry`], which touches only the interrupted stack and the
//! handler slot.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use xen_abi::hypercall::{HYPERCALL_STUB_SIZE, IRET};
use xen_abi::layout::{FLAT_KERNEL_CS, FLAT_KERNEL_SS, VGCF_IN_KERNEL};
use xen_abi::vcpu::{VcpuGuestContext, VCPUOP_INITIALISE};
use xen_abi::Errno;

use crate::hypercall::result;
use crate::{evtchn, mm, vcpu};

/// The context handed to `VCPUOP_initialise` (5 KiB: too big for the stack).
static mut CTX: VcpuGuestContext = {
    // SAFETY: VcpuGuestContext is plain integers; all zeroes is a valid value.
    unsafe { core::mem::zeroed() }
};

/// `vcpu_op(cmd, vcpu, arg)`.
pub fn vcpu_op(cmd: u32, vcpu: u32, arg: u64) -> Result<u64, Errno> {
    // SAFETY: callers pass null or a pointer to what `cmd` reads.
    result(unsafe { vcpu::vcpu_op_raw(cmd, vcpu, arg) })
}

/// Fills the static context buffer with a guest-kernel context entering
/// `rip` with `rsp` (also the kernel stack), flat kernel selectors, IF set,
/// kernel root `l4_mfn` and nothing else, lets `edit` change it, and returns
/// its address: what `VCPUOP_initialise` and `XEN_DOMCTL_setvcpucontext`
/// read. The buffer stays valid until the next call.
pub fn build_context(
    rip: u64,
    rsp: u64,
    l4_mfn: u64,
    edit: impl FnOnce(&mut VcpuGuestContext),
) -> u64 {
    let p: *mut VcpuGuestContext = &raw mut CTX;
    // SAFETY: only vCPU 0 uses CTX, and only through this function and the
    // hypercall its caller makes next; all zeroes is a valid value.
    let c = unsafe {
        core::ptr::write_bytes(p, 0, 1);
        &mut *p
    };
    c.flags = VGCF_IN_KERNEL;
    c.user_regs.rip = rip;
    c.user_regs.rsp = rsp;
    c.user_regs.cs = FLAT_KERNEL_CS;
    c.user_regs.ss = FLAT_KERNEL_SS;
    c.user_regs.rflags = 1 << 9;
    c.kernel_ss = u64::from(FLAT_KERNEL_SS);
    c.kernel_sp = rsp;
    c.ctrlreg[3] = l4_mfn << 12;
    edit(c);
    p as u64
}

/// `VCPUOP_initialise(vcpu)` with a guest-kernel context entering `rip` with
/// `rsp` (also the kernel stack), flat kernel selectors, IF set, the current
/// kernel page tables and nothing else, after `edit` has changed it.
pub fn initialise(
    vcpu: u32,
    rip: u64,
    rsp: u64,
    edit: impl FnOnce(&mut VcpuGuestContext),
) -> Result<u64, Errno> {
    let ctx = build_context(rip, rsp, mm::current_l4(), edit);
    vcpu_op(VCPUOP_INITIALISE, vcpu, ctx)
}

/// An IPI port bound to vCPU 0 that nobody sends: `SCHEDOP_poll` on it
/// returns only at its timeout, so vCPU 0 sleeps there and leaves its CPU to
/// the other vCPUs without taking any of their events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePort(pub u32);

impl IdlePort {
    /// Masks events on vCPU 0 (with an upcall deliverable `SCHEDOP_poll`
    /// would return at once) and binds an IPI port to vCPU 0; ends the test
    /// with ERROR if the bind fails. shared_info must be mapped.
    pub fn bind() -> IdlePort {
        vcpu::disable_events();
        match evtchn::bind_ipi(0) {
            Ok(port) => IdlePort(port),
            Err(_) => crate::error("bind_ipi(0) failed"),
        }
    }

    /// Sleeps in `SCHEDOP_poll` on the port until system time `deadline`.
    pub fn sleep_until(self, deadline: u64) {
        while vcpu::now_ns() < deadline {
            let _ = vcpu::poll(&[self.0], deadline);
        }
    }

    /// Sleeps `ns` (see [`sleep_until`](Self::sleep_until)).
    pub fn sleep(self, ns: u64) {
        self.sleep_until(vcpu::now_ns() + ns);
    }

    /// Checks `cond` every millisecond, sleeping in between, until it holds
    /// (true) or `ns` have passed (false).
    pub fn wait_for(self, ns: u64, mut cond: impl FnMut() -> bool) -> bool {
        const STEP: u64 = 1_000_000;
        let end = vcpu::now_ns() + ns;
        loop {
            if cond() {
                return true;
            }
            let now = vcpu::now_ns();
            if now >= end {
                return false;
            }
            self.sleep_until((now + STEP).min(end));
        }
    }
}

/// The handler `xg_smp_upcall_entry` calls: an `extern "C" fn()` (0 until
/// [`upcall_entry`] sets it).
static UPCALL_HANDLER: AtomicU64 = AtomicU64::new(0);

// Event callback for any vCPU. Xen's frame is rcx, r11, rip, cs, rflags, rsp,
// ss, events are masked. The stub pops rcx/r11, saves the caller-saved GPRs
// (and rbx, which keeps the unaligned RSP), calls the handler on the
// interrupted stack aligned to 16 with DF clear (a bounce keeps the
// interrupted DF), and returns through the hypercall page's iret slot (which
// pushes rcx, r11 and rax itself) with a flags word of 0 in front of the
// 5-word frame. It touches no memory but the stack and the handler slot.
global_asm!(
    ".pushsection .text.xg_smp_upcall, \"ax\", @progbits",
    // Global: callers in other crates (test binaries) inline `upcall_entry`.
    ".globl xg_smp_upcall_entry",
    ".balign 16",
    "xg_smp_upcall_entry:",
    "pop rcx",
    "pop r11",
    "push rax",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push rbx",
    "mov rbx, rsp",
    "and rsp, -16",
    "cld",
    "call qword ptr [rip + {handler}]",
    "mov rsp, rbx",
    "pop rbx",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rax",
    "push 0",
    "jmp xg_hypercall_page + {iret_slot}",
    ".popsection",
    handler = sym UPCALL_HANDLER,
    iret_slot = const IRET as usize * HYPERCALL_STUB_SIZE,
);

extern "C" {
    fn xg_smp_upcall_entry();
}

/// Makes `handler` the one handler of the shared event-callback entry and
/// returns the entry's address: for `callback_register(CALLBACKTYPE_event)`
/// on vCPU 0 or `event_callback_eip` in a context for [`initialise`]. Every
/// vCPU registered there runs `handler` on an event, with events masked, on
/// the interrupted stack; the stub saves only the GPRs the C ABI lets
/// `handler` clobber (no x87/SSE state: the target is soft-float).
pub fn upcall_entry(handler: extern "C" fn()) -> u64 {
    UPCALL_HANDLER.store(handler as usize as u64, Ordering::SeqCst);
    xg_smp_upcall_entry as *const () as u64
}
