//! Hypercalls for a vCPU's CPU state, and the event mask in vcpu_info.
//!
//! Wrappers for `stack_switch`, `fpu_taskswitch`, `set_debugreg`,
//! `get_debugreg`, `set_segment_base`, `physdev_op` I/O privilege sub-ops and
//! single `mmuext_op`s, plus reads and writes of vcpu_info[0]'s
//! `evtchn_upcall_mask` (the virtual "interrupts disabled" flag).

use xen_abi::hypercall as nr;
use xen_abi::mmu::MmuextOp;
use xen_abi::physdev::{
    PhysdevSetIobitmap, PhysdevSetIopl, PHYSDEVOP_SET_IOBITMAP, PHYSDEVOP_SET_IOPL,
};
use xen_abi::types::DOMID_SELF;
use xen_abi::Errno;

use crate::hypercall::{self, result};
use crate::shared_info;

/// `stack_switch(ss, sp)`: the kernel stack for traps from user mode.
pub fn stack_switch(ss: u16, sp: u64) -> Result<u64, Errno> {
    // SAFETY: only records the stack; it is used when user mode traps.
    result(unsafe { hypercall::call(nr::STACK_SWITCH, [ss.into(), sp, 0, 0, 0]) })
}

/// `fpu_taskswitch(set)`: sets (1) or clears (0) the virtual CR0.TS.
pub fn fpu_taskswitch(set: u64) -> Result<u64, Errno> {
    // SAFETY: only changes CR0.TS, which makes FPU use raise #NM.
    result(unsafe { hypercall::call(nr::FPU_TASKSWITCH, [set, 0, 0, 0, 0]) })
}

/// `set_debugreg(reg, value)`.
///
/// # Safety
/// An enabled breakpoint raises #DB, which must be handled.
pub unsafe fn set_debugreg(reg: u64, value: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded to the caller.
    result(unsafe { hypercall::call(nr::SET_DEBUGREG, [reg, value, 0, 0, 0]) })
}

/// `get_debugreg(reg)`, raw: a register value may look like an errno.
pub fn get_debugreg(reg: u64) -> i64 {
    // SAFETY: reads a register.
    unsafe { hypercall::call(nr::GET_DEBUGREG, [reg, 0, 0, 0, 0]) }
}

/// `set_segment_base(which, base)`.
///
/// # Safety
/// The kernel must not rely on the base being changed.
pub unsafe fn set_segment_base(which: u32, base: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded to the caller.
    result(unsafe { hypercall::call(nr::SET_SEGMENT_BASE, [which.into(), base, 0, 0, 0]) })
}

/// `physdev_op(PHYSDEVOP_set_iopl, {iopl})`: the virtual I/O privilege level.
pub fn set_iopl(iopl: u32) -> Result<u64, Errno> {
    let arg = PhysdevSetIopl { iopl };
    let args = [PHYSDEVOP_SET_IOPL.into(), (&raw const arg) as u64, 0, 0, 0];
    // SAFETY: Xen reads `arg`; the level only changes which I/O faults.
    result(unsafe { hypercall::call(nr::PHYSDEV_OP, args) })
}

/// `physdev_op(PHYSDEVOP_set_iobitmap, {bitmap, nr_ports})`.
///
/// # Safety
/// `bitmap` must stay mapped and unchanged while it is registered (Xen reads
/// it at each port access).
pub unsafe fn set_iobitmap(bitmap: u64, nr_ports: u32) -> Result<u64, Errno> {
    let arg = PhysdevSetIobitmap {
        bitmap,
        nr_ports,
        pad: 0,
    };
    let args = [
        PHYSDEVOP_SET_IOBITMAP.into(),
        (&raw const arg) as u64,
        0,
        0,
        0,
    ];
    // SAFETY: Xen reads `arg` now and the bitmap later; the caller vouches
    // for the bitmap.
    result(unsafe { hypercall::call(nr::PHYSDEV_OP, args) })
}

/// One `mmuext_op` on the caller's domain.
///
/// # Safety
/// As for [`hypercall::mmuext_op`].
pub unsafe fn mmuext(cmd: u32, arg1: u64, arg2: u64) -> Result<u32, Errno> {
    let op = MmuextOp {
        cmd,
        pad: 0,
        arg1,
        arg2,
    };
    // SAFETY: forwarded to the caller.
    unsafe { hypercall::mmuext_op(&[op], DOMID_SELF) }
}

/// VA of vcpu_info[0].evtchn_upcall_mask.
///
/// # Panics
/// If shared_info is not mapped.
fn upcall_mask_ptr() -> *mut u8 {
    let s = shared_info::get().expect("shared_info is not mapped");
    // evtchn_upcall_mask is byte 1 of vcpu_info[0], at the start of the page.
    (s.as_ptr() as *mut u8).wrapping_add(1)
}

/// vcpu_info[0].evtchn_upcall_mask (shared_info must be mapped).
pub fn upcall_mask() -> u8 {
    // SAFETY: the page is mapped for the life of the domain.
    unsafe { upcall_mask_ptr().read_volatile() }
}

/// Sets vcpu_info[0].evtchn_upcall_mask (shared_info must be mapped).
///
/// # Safety
/// Unmasking with an event pending enters the event callback, which must
/// then be registered.
pub unsafe fn set_upcall_mask(mask: u8) {
    // SAFETY: the page is mapped read-write for the life of the domain; the
    // caller vouches for the consequences.
    unsafe { upcall_mask_ptr().write_volatile(mask) }
}
