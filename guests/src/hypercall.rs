//! Hypercalls: through the hypercall page or a raw `SYSCALL`, and typed wrappers.
//!
//! 64-bit PV ABI: number in `rax`, arguments in `rdi, rsi, rdx, r10, r8`,
//! result in `rax`. A page slot saves and restores `rcx`/`r11` around its
//! `SYSCALL`; a raw `SYSCALL` loses them (Xen may return with `SYSRET`). Xen
//! may clobber argument registers (debug builds do), so all five are treated
//! as clobbered.

use core::arch::asm;

use xen_abi::callback::{CallbackRegister, CALLBACKOP_REGISTER};
use xen_abi::hypercall::{self as nr, HYPERCALL_PAGE_SLOTS, HYPERCALL_STUB_SIZE};
use xen_abi::memory::{XenMachphysMapping, XENMEM_MACHPHYS_MAPPING};
use xen_abi::mmu::{MmuUpdate, MmuextOp};
use xen_abi::sched::{self, SchedShutdown};
use xen_abi::{console, trap::TrapInfo, Errno};

use crate::boot;

/// Turns a raw hypercall return value into `Ok(value)` or `Err(errno)`.
///
/// # Panics
/// On a value in the error range (-4095..=-1) that is not a Xen errno: the
/// hypervisor broke the ABI, which ends the test with ERROR.
pub fn result(ret: i64) -> Result<u64, Errno> {
    if (-4095..0).contains(&ret) {
        match Errno::from_ret(ret) {
            Some(e) => Err(e),
            None => panic!("hypercall returned {ret}, which is no Xen errno"),
        }
    } else {
        Ok(ret as u64)
    }
}

/// Number of slots in the hypercall page.
pub const PAGE_SLOTS: u64 = HYPERCALL_PAGE_SLOTS as u64;

/// Hypercall `nr` through slot `nr` of the hypercall page.
///
/// # Safety
/// The hypercall must not break the kernel's memory safety: pointer arguments
/// must be valid for what Xen does with them, and page-table or trap changes
/// must leave the running code, data and stack mapped.
///
/// # Panics
/// If `nr` has no slot in the page (≥ 128); use [`call_syscall`] for those.
pub unsafe fn call(nr: u64, args: [u64; 5]) -> i64 {
    assert!(nr < PAGE_SLOTS, "hypercall {nr} has no hypercall page slot");
    let target = boot::hypercall_page() + nr * HYPERCALL_STUB_SIZE as u64;
    let ret: i64;
    // SAFETY: the slot is the builder's stub `push rcx; push r11; mov eax, nr;
    // syscall; pop r11; pop rcx; ret` (checked at start-up that the page was
    // filled); the caller vouches for the hypercall's effects.
    unsafe {
        asm!(
            "call {target}",
            target = in(reg) target,
            lateout("rax") ret,
            inlateout("rdi") args[0] => _,
            inlateout("rsi") args[1] => _,
            inlateout("rdx") args[2] => _,
            inlateout("r10") args[3] => _,
            inlateout("r8") args[4] => _,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// Hypercall `nr` with an inline `SYSCALL` (works for any number).
///
/// # Safety
/// As for [`call`].
pub unsafe fn call_syscall(nr: u64, args: [u64; 5]) -> i64 {
    let ret: i64;
    // SAFETY: a SYSCALL from the guest kernel is a hypercall; rcx/r11 are
    // declared clobbered; the caller vouches for the hypercall's effects.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret,
            inlateout("rdi") args[0] => _,
            inlateout("rsi") args[1] => _,
            inlateout("rdx") args[2] => _,
            inlateout("r10") args[3] => _,
            inlateout("r8") args[4] => _,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// `console_io(cmd, count, buffer)`, raw result.
///
/// # Safety
/// `buffer` must be valid for `count` bytes of whatever `cmd` does with it.
pub unsafe fn console_io(cmd: u64, count: u64, buffer: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { call(nr::CONSOLE_IO, [cmd, count, buffer, 0, 0]) }
}

/// Writes bytes to the Xen console (`CONSOLEIO_write`).
pub fn console_write(bytes: &[u8]) -> Result<u64, Errno> {
    // SAFETY: CONSOLEIO_write only reads `bytes`.
    result(unsafe {
        console_io(
            console::CONSOLEIO_WRITE.into(),
            bytes.len() as u64,
            bytes.as_ptr() as u64,
        )
    })
}

/// `console_io(CONSOLEIO_write)` by raw SYSCALL, for when the page is unusable.
pub fn raw_console_write(bytes: &[u8]) {
    let args = [
        console::CONSOLEIO_WRITE.into(),
        bytes.len() as u64,
        bytes.as_ptr() as u64,
        0,
        0,
    ];
    // SAFETY: CONSOLEIO_write only reads `bytes`.
    unsafe { call_syscall(nr::CONSOLE_IO, args) };
}

/// `SCHEDOP_shutdown(crash)` by raw SYSCALL, for when the page is unusable.
pub fn raw_shutdown_crash() -> ! {
    let arg = SchedShutdown {
        reason: sched::SHUTDOWN_CRASH,
    };
    loop {
        let args = [
            sched::SCHEDOP_SHUTDOWN.into(),
            (&raw const arg) as u64,
            0,
            0,
            0,
        ];
        // SAFETY: SCHEDOP_shutdown only reads `reason`.
        unsafe { call_syscall(nr::SCHED_OP, args) };
    }
}

/// `xen_version(cmd, arg)`, raw result.
///
/// # Safety
/// `arg` must be valid for what `cmd` writes (up to 1 KiB for the string
/// sub-ops), or 0 where `cmd` takes no argument.
pub unsafe fn xen_version(cmd: u32, arg: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { call(nr::XEN_VERSION, [cmd.into(), arg, 0, 0, 0]) }
}

/// `xen_version` for a sub-op that fills a buffer of type `T`.
pub fn xen_version_into<T>(cmd: u32, buf: &mut T) -> Result<u64, Errno> {
    // SAFETY: `buf` is valid for writes of size_of::<T>(), which the caller
    // picks to match `cmd`'s output type.
    result(unsafe { xen_version(cmd, (buf as *mut T) as u64) })
}

/// `sched_op(cmd, arg)`, raw result.
///
/// # Safety
/// `arg` must be valid for `cmd`.
pub unsafe fn sched_op(cmd: u32, arg: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { call(nr::SCHED_OP, [cmd.into(), arg, 0, 0, 0]) }
}

/// `SCHEDOP_yield`.
pub fn sched_yield() -> Result<u64, Errno> {
    // SAFETY: takes no argument.
    result(unsafe { sched_op(sched::SCHEDOP_YIELD, 0) })
}

/// `SCHEDOP_block` (returns when an event is pending; unmasks events).
pub fn sched_block() -> Result<u64, Errno> {
    // SAFETY: takes no argument.
    result(unsafe { sched_op(sched::SCHEDOP_BLOCK, 0) })
}

/// `SCHEDOP_shutdown(reason)`; returns only if Xen refuses.
pub fn sched_shutdown(reason: u32) -> Result<u64, Errno> {
    let arg = SchedShutdown { reason };
    // SAFETY: SCHEDOP_shutdown only reads `arg`.
    result(unsafe { sched_op(sched::SCHEDOP_SHUTDOWN, (&raw const arg) as u64) })
}

/// `set_trap_table(table)`: the table ends at an entry whose address is 0.
///
/// # Safety
/// Every handler address must be an entry stub that copes with Xen's bounce
/// frame.
pub unsafe fn set_trap_table(table: &[TrapInfo]) -> Result<u64, Errno> {
    assert!(
        table.last().is_some_and(|t| t.address == 0),
        "unterminated trap table"
    );
    // SAFETY: Xen reads the table up to its terminator; the caller vouches for
    // the handlers.
    result(unsafe { call(nr::SET_TRAP_TABLE, [table.as_ptr() as u64, 0, 0, 0, 0]) })
}

/// `callback_op(CALLBACKOP_register, {type, flags, address})`.
///
/// # Safety
/// `address` must be an entry stub that copes with Xen's frame for `kind`.
pub unsafe fn callback_register(kind: u16, flags: u16, address: u64) -> Result<u64, Errno> {
    let arg = CallbackRegister {
        type_: kind,
        flags,
        pad: 0,
        address,
    };
    let args = [CALLBACKOP_REGISTER.into(), (&raw const arg) as u64, 0, 0, 0];
    // SAFETY: Xen reads `arg`; the caller vouches for the handler.
    result(unsafe { call(nr::CALLBACK_OP, args) })
}

/// `vm_assist(cmd, type)`.
pub fn vm_assist(cmd: u32, kind: u32) -> Result<u64, Errno> {
    // SAFETY: vm_assist takes no pointers; the assists only change how Xen
    // treats later page-table writes and segment loads.
    result(unsafe { call(nr::VM_ASSIST, [cmd.into(), kind.into(), 0, 0, 0]) })
}

/// `memory_op(cmd, arg)`, raw result.
///
/// # Safety
/// `arg` must be valid for `cmd`, and `cmd` must not give away pages in use.
pub unsafe fn memory_op(cmd: u64, arg: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { call(nr::MEMORY_OP, [cmd, arg, 0, 0, 0]) }
}

/// `XENMEM_machphys_mapping`: where the read-only M2P table is.
pub fn machphys_mapping() -> Result<XenMachphysMapping, Errno> {
    let mut m = XenMachphysMapping::default();
    // SAFETY: Xen writes one `struct xen_machphys_mapping` to `m`.
    result(unsafe { memory_op(XENMEM_MACHPHYS_MAPPING.into(), (&raw mut m) as u64) })?;
    Ok(m)
}

/// `update_va_mapping(va, pte, flags)`.
///
/// # Safety
/// The old mapping of `va` must not be in use by anything but the caller.
pub unsafe fn update_va_mapping(va: u64, pte: u64, flags: u64) -> Result<u64, Errno> {
    // SAFETY: forwarded to the caller.
    result(unsafe { call(nr::UPDATE_VA_MAPPING, [va, pte, flags, 0, 0]) })
}

/// `mmu_update(reqs, count, &done, foreigndom)`; returns the number done.
///
/// # Safety
/// The updates must not unmap anything in use.
pub unsafe fn mmu_update(reqs: &[MmuUpdate], foreigndom: u16) -> Result<u32, Errno> {
    let mut done: u32 = 0;
    let args = [
        reqs.as_ptr() as u64,
        reqs.len() as u64,
        (&raw mut done) as u64,
        u64::from(foreigndom),
        0,
    ];
    // SAFETY: Xen reads `reqs` and writes `done`; the caller vouches for the
    // updates.
    result(unsafe { call(nr::MMU_UPDATE, args) })?;
    Ok(done)
}

/// `mmuext_op(ops, count, &done, foreigndom)`; returns the number done.
///
/// # Safety
/// The operations must not unmap or retype anything in use.
pub unsafe fn mmuext_op(ops: &[MmuextOp], foreigndom: u16) -> Result<u32, Errno> {
    let mut done: u32 = 0;
    let args = [
        ops.as_ptr() as u64,
        ops.len() as u64,
        (&raw mut done) as u64,
        u64::from(foreigndom),
        0,
    ];
    // SAFETY: Xen reads `ops` and writes `done`; the caller vouches for the
    // operations.
    result(unsafe { call(nr::MMUEXT_OP, args) })?;
    Ok(done)
}
