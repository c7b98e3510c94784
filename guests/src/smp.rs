//! Bringing up more vCPUs: `VCPUOP_initialise` with a kernel-mode context, and
//! the other `vcpu_op` calls that take a vCPU up and down.
//!
//! Only vCPU 0 calls these (the context buffer is a single static); the code a
//! secondary vCPU runs is the test's own and must not use the rest of this
//! framework, which assumes one vCPU.

use xen_abi::layout::{FLAT_KERNEL_CS, FLAT_KERNEL_SS, VGCF_IN_KERNEL};
use xen_abi::vcpu::{VcpuGuestContext, VCPUOP_INITIALISE};
use xen_abi::Errno;

use crate::hypercall::result;
use crate::{mm, vcpu};

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
