//! The running vCPU's vcpu_info (wherever it lives), the PV clock, timers, runstate and polling.
//!
//! vcpu_info starts in shared_info (`vcpu_info[0]`); `VCPUOP_register_vcpu_info`
//! moves it into guest memory, after which Xen only updates the new copy.
//! [`set_info_va`] tells this module (and [`evtchn`](crate::evtchn)'s upcall
//! handler) where it is; every accessor here reads the current location with
//! volatile accesses.
//!
//! Events: [`enable_events`] is Linux's `xen_irq_enable` (clear
//! `evtchn_upcall_mask`, then, if an upcall is pending, `xen_version(0)` so
//! that Xen delivers it on the way back); [`disable_events`] sets the mask.
//!
//! Time: [`now_ns`] is the guest's system time, extrapolated from the current
//! `vcpu_time_info` with the TSC under the version protocol.
//!
//! Also the `vcpu_op` sub-ops, `set_timer_op` and `SCHEDOP_block`/`SCHEDOP_poll`
//! wrappers. Single vCPU (vCPU 0): callers pass vCPU ids only to probe errnos.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use xen_abi::hypercall as nr;
use xen_abi::sched::{SchedPoll, SCHEDOP_POLL};
use xen_abi::shared_info::{VcpuInfo, VcpuTimeInfo};
use xen_abi::vcpu::{
    VcpuRegisterRunstateMemoryArea, VcpuRegisterVcpuInfo, VcpuRunstateInfo, VcpuSetPeriodicTimer,
    VcpuSetSingleshotTimer, VCPUOP_GET_RUNSTATE_INFO, VCPUOP_IS_UP,
    VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, VCPUOP_REGISTER_VCPU_INFO, VCPUOP_SEND_NMI,
    VCPUOP_SET_PERIODIC_TIMER, VCPUOP_SET_SINGLESHOT_TIMER, VCPUOP_STOP_PERIODIC_TIMER,
    VCPUOP_STOP_SINGLESHOT_TIMER,
};
use xen_abi::version::XENVER_VERSION;
use xen_abi::Errno;

use crate::hypercall::{self, result};
use crate::shared_info;

/// VA of the vcpu_info in use; 0 = shared_info's `vcpu_info[0]`.
static INFO_VA: AtomicU64 = AtomicU64::new(0);

/// VA of the running vCPU's vcpu_info.
///
/// # Panics
/// If shared_info is not mapped and no other location was set.
pub fn info_va() -> u64 {
    match INFO_VA.load(Ordering::SeqCst) {
        0 => shared_info::get()
            .expect("shared_info is not mapped")
            .as_ptr() as u64,
        va => va,
    }
}

/// Records that vcpu_info now lives at `va` (after `VCPUOP_register_vcpu_info`).
pub fn set_info_va(va: u64) {
    INFO_VA.store(va, Ordering::SeqCst);
}

fn info_ptr() -> *mut VcpuInfo {
    info_va() as *mut VcpuInfo
}

/// A volatile copy of the vcpu_info in use.
pub fn read_info() -> VcpuInfo {
    // SAFETY: the location is mapped for the domain's life (shared_info or a
    // page of the kernel the test registered); a volatile copy tolerates
    // Xen's concurrent writes.
    unsafe { info_ptr().read_volatile() }
}

/// A volatile copy of the 64-byte vcpu_info at `va` (any copy, e.g. a stale one).
///
/// # Safety
/// `va` must be mapped and readable for 64 bytes.
pub unsafe fn read_info_at(va: u64) -> VcpuInfo {
    // SAFETY: forwarded to the caller.
    unsafe { (va as *const VcpuInfo).read_volatile() }
}

/// `evtchn_upcall_mask` of the vcpu_info in use.
pub fn upcall_mask() -> u8 {
    // SAFETY: as for `read_info`; a byte read.
    unsafe { (&raw const (*info_ptr()).evtchn_upcall_mask).read_volatile() }
}

/// Sets `evtchn_upcall_mask` without the pending check (see [`enable_events`]).
///
/// # Safety
/// With 0 and an upcall pending, the next exit from Xen enters the event
/// callback, which must be registered.
pub unsafe fn set_upcall_mask(mask: u8) {
    compiler_fence();
    // SAFETY: as for `read_info`; the caller vouches for the consequences.
    unsafe { (&raw mut (*info_ptr()).evtchn_upcall_mask).write_volatile(mask) };
    compiler_fence();
}

/// `evtchn_upcall_pending` of the vcpu_info in use.
pub fn upcall_pending() -> u8 {
    // SAFETY: as for `read_info`; a byte read.
    unsafe { (&raw const (*info_ptr()).evtchn_upcall_pending).read_volatile() }
}

/// Writes `evtchn_upcall_pending` (the guest clears it before scanning).
pub fn set_upcall_pending(v: u8) {
    // SAFETY: as for `read_info`; the guest owns this byte's clearing.
    unsafe { (&raw mut (*info_ptr()).evtchn_upcall_pending).write_volatile(v) }
}

/// `evtchn_pending_sel` of the vcpu_info in use.
pub fn pending_sel() -> u64 {
    // SAFETY: as for `read_info`.
    unsafe { (&raw const (*info_ptr()).evtchn_pending_sel).read_volatile() }
}

/// Atomically swaps `evtchn_pending_sel` with 0 and returns the old value.
pub fn take_pending_sel() -> u64 {
    // SAFETY: the field is an 8-byte aligned u64 that Xen updates with
    // atomic bit operations; AtomicU64 has the same layout.
    let sel = unsafe { &*((&raw const (*info_ptr()).evtchn_pending_sel) as *const AtomicU64) };
    sel.swap(0, Ordering::SeqCst)
}

fn compiler_fence() {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// `xen_version(XENVER_version)`: the cheapest hypercall, used to have Xen
/// deliver a pending upcall on its way back (Linux's `xen_force_evtchn_callback`).
pub fn kick() {
    // SAFETY: XENVER_version takes no argument.
    unsafe { hypercall::xen_version(XENVER_VERSION, 0) };
}

/// Linux's `xen_irq_enable`: clears the mask, then kicks if an upcall is pending.
///
/// # Safety
/// The event callback must be registered.
pub unsafe fn enable_events() {
    // SAFETY: forwarded to the caller.
    unsafe { set_upcall_mask(0) };
    if upcall_pending() != 0 {
        kick();
    }
}

/// Sets the mask (Linux's `xen_irq_disable`).
pub fn disable_events() {
    // SAFETY: masking is always safe.
    unsafe { set_upcall_mask(1) };
}

/// A consistent copy of the `vcpu_time_info` in use.
pub fn time() -> VcpuTimeInfo {
    loop {
        // SAFETY: as for `read_info`.
        let t = unsafe { (&raw const (*info_ptr()).time).read_volatile() };
        compiler_fence();
        // SAFETY: as for `read_info`.
        let v = unsafe { (&raw const (*info_ptr()).time.version).read_volatile() };
        if t.version & 1 == 0 && t.version == v {
            return t;
        }
    }
}

/// The time-stamp counter, ordered after earlier loads (`lfence; rdtsc`).
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: LFENCE and RDTSC only read state (Xen leaves CR4.TSD clear for PV).
    unsafe {
        asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nostack, preserves_flags))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// The system time now (ns), and the record and TSC it was computed from.
pub fn now_with() -> (u64, VcpuTimeInfo, u64) {
    loop {
        // SAFETY: as for `read_info`.
        let v1 = unsafe { (&raw const (*info_ptr()).time.version).read_volatile() };
        compiler_fence();
        // SAFETY: as for `read_info`.
        let t = unsafe { (&raw const (*info_ptr()).time).read_volatile() };
        let tsc = rdtsc();
        compiler_fence();
        // SAFETY: as for `read_info`.
        let v2 = unsafe { (&raw const (*info_ptr()).time.version).read_volatile() };
        if v1 & 1 == 0 && v1 == v2 && t.version == v1 {
            return (t.system_time_at(tsc), t, tsc);
        }
    }
}

/// The guest's system time now (ns since boot), as Linux's pvclock computes it.
pub fn now_ns() -> u64 {
    now_with().0
}

/// Spins until the system time reaches `deadline` (ns); returns the time seen.
pub fn spin_until(deadline: u64) -> u64 {
    loop {
        let now = now_ns();
        if now >= deadline {
            return now;
        }
        core::hint::spin_loop();
    }
}

/// `vcpu_op(cmd, vcpu, arg)`, raw result.
///
/// # Safety
/// `arg` must be valid for what `cmd` does with it (0 for no argument).
pub unsafe fn vcpu_op_raw(cmd: u32, vcpu: u32, arg: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall::call(nr::VCPU_OP, [cmd.into(), vcpu.into(), arg, 0, 0]) }
}

/// `VCPUOP_is_up(vcpu)`: 1 up, 0 down.
pub fn is_up(vcpu: u32) -> Result<u64, Errno> {
    // SAFETY: takes no argument.
    result(unsafe { vcpu_op_raw(VCPUOP_IS_UP, vcpu, 0) })
}

/// `VCPUOP_get_runstate_info(vcpu)`.
pub fn get_runstate_info(vcpu: u32) -> Result<VcpuRunstateInfo, Errno> {
    let mut r = VcpuRunstateInfo::default();
    // SAFETY: Xen writes one vcpu_runstate_info to `r`.
    result(unsafe { vcpu_op_raw(VCPUOP_GET_RUNSTATE_INFO, vcpu, (&raw mut r) as u64) })?;
    Ok(r)
}

/// `VCPUOP_register_runstate_memory_area(vcpu, {addr})`.
///
/// # Safety
/// Xen writes a `vcpu_runstate_info` at `addr` at every context switch from
/// now on: it must stay mapped, writable and unused by anything else.
pub unsafe fn register_runstate_area(vcpu: u32, addr: u64) -> Result<u64, Errno> {
    let a = VcpuRegisterRunstateMemoryArea { addr };
    // SAFETY: forwarded to the caller.
    result(unsafe {
        vcpu_op_raw(
            VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA,
            vcpu,
            (&raw const a) as u64,
        )
    })
}

/// `VCPUOP_set_periodic_timer(vcpu, {period_ns})`.
pub fn set_periodic_timer(vcpu: u32, period_ns: u64) -> Result<u64, Errno> {
    let a = VcpuSetPeriodicTimer { period_ns };
    // SAFETY: Xen reads `a`; a timer only raises VIRQ_TIMER.
    result(unsafe { vcpu_op_raw(VCPUOP_SET_PERIODIC_TIMER, vcpu, (&raw const a) as u64) })
}

/// `VCPUOP_stop_periodic_timer(vcpu)`.
pub fn stop_periodic_timer(vcpu: u32) -> Result<u64, Errno> {
    // SAFETY: takes no argument.
    result(unsafe { vcpu_op_raw(VCPUOP_STOP_PERIODIC_TIMER, vcpu, 0) })
}

/// `VCPUOP_set_singleshot_timer(vcpu, {timeout_abs_ns, flags})`.
pub fn set_singleshot_timer(vcpu: u32, timeout_abs_ns: u64, flags: u32) -> Result<u64, Errno> {
    let a = VcpuSetSingleshotTimer {
        timeout_abs_ns,
        flags,
        pad: 0,
    };
    // SAFETY: Xen reads `a`; a timer only raises VIRQ_TIMER.
    result(unsafe { vcpu_op_raw(VCPUOP_SET_SINGLESHOT_TIMER, vcpu, (&raw const a) as u64) })
}

/// `VCPUOP_stop_singleshot_timer(vcpu)`.
pub fn stop_singleshot_timer(vcpu: u32) -> Result<u64, Errno> {
    // SAFETY: takes no argument.
    result(unsafe { vcpu_op_raw(VCPUOP_STOP_SINGLESHOT_TIMER, vcpu, 0) })
}

/// `VCPUOP_register_vcpu_info(vcpu, {mfn, offset, rsvd: 0})`.
///
/// # Safety
/// On success Xen owns the 64 bytes at (`mfn`, `offset`) for the domain's
/// life; the caller must then [`set_info_va`] to where they are mapped.
pub unsafe fn register_vcpu_info(vcpu: u32, mfn: u64, offset: u32) -> Result<u64, Errno> {
    let a = VcpuRegisterVcpuInfo {
        mfn,
        offset,
        rsvd: 0,
    };
    // SAFETY: forwarded to the caller.
    result(unsafe { vcpu_op_raw(VCPUOP_REGISTER_VCPU_INFO, vcpu, (&raw const a) as u64) })
}

/// `VCPUOP_send_nmi(vcpu)` (NULL argument).
///
/// # Safety
/// The NMI is delivered through trap-table entry 2, which must be a handler
/// that copes with it.
pub unsafe fn send_nmi(vcpu: u32) -> Result<u64, Errno> {
    // SAFETY: forwarded to the caller.
    result(unsafe { vcpu_op_raw(VCPUOP_SEND_NMI, vcpu, 0) })
}

/// `set_timer_op(deadline)`: the single-shot timer at absolute system time
/// `deadline` (0 stops it).
pub fn set_timer_op(deadline: u64) -> Result<u64, Errno> {
    // SAFETY: takes no pointer; a timer only raises VIRQ_TIMER.
    result(unsafe { hypercall::call(nr::SET_TIMER_OP, [deadline, 0, 0, 0, 0]) })
}

/// `SCHEDOP_poll({ports, nr_ports, timeout})` with an explicit `nr_ports`
/// and pointer, raw result.
///
/// # Safety
/// `ports` must be readable for `nr_ports` u32 (or deliberately bad).
pub unsafe fn poll_raw(ports: u64, nr_ports: u32, timeout: u64) -> i64 {
    let a = SchedPoll {
        ports,
        nr_ports,
        pad: 0,
        timeout,
    };
    // SAFETY: forwarded to the caller.
    unsafe { hypercall::sched_op(SCHEDOP_POLL, (&raw const a) as u64) }
}

/// `SCHEDOP_poll` on `ports` until one is pending or system time `timeout`
/// (0: no timeout).
pub fn poll(ports: &[u32], timeout: u64) -> Result<u64, Errno> {
    // SAFETY: Xen reads `ports.len()` ports from the slice.
    result(unsafe { poll_raw(ports.as_ptr() as u64, ports.len() as u32, timeout) })
}
