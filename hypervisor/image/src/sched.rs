//! Putting vCPUs on CPUs: the credit policy of `xenolith_core::sched` wired to the domain's
//! vCPUs, the hardware side of running one (root page table, segments, FPU, debug registers),
//! and the idle loop.
//!
//! Invariants: on each CPU, `percpu::vcpu()` names the vCPU whose registers are in that CPU's
//! `CpuInfo::regs` frame and whose FPU, segment and debug state is in the hardware (or
//! `NO_VCPU` when idle); every other vCPU's state is in its `Vcpu`, and `Vcpu::cpu` says where
//! a vCPU runs. The policy's view of which vCPUs are runnable follows `Vcpu::runnable` (up and
//! not waiting): `wake` and `sleep` are called on every change. All of it runs under the
//! domain lock; a CPU with nothing to run gives the lock up and halts in `idle_loop`.
use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::Mutex;
use xen_abi::types::{DomId, VcpuId};
use xenolith_arch::instr::{swapgs, write_cr3};
use xenolith_arch::msr::{rdmsr, wrmsr, Msr};
use xenolith_core::sched::{Scheduler, UnitId, DEFAULT_WEIGHT};

use crate::domain::{Domain, Vcpu};
use crate::percpu::{GuestRegs, MAX_CPUS, NO_VCPU};
use crate::vcpu::{RUNSTATE_BLOCKED, RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING};

static POLICY: Mutex<Option<Scheduler>> = Mutex::new(None);
/// When the vCPU running on each CPU must give way (system time, ns; `u64::MAX`: never).
static SLICE_END: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];
/// A wake-up asked each CPU to choose again.
static RESCHED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

fn unit(dom: &Domain, v: usize) -> UnitId {
    UnitId {
        dom: DomId(dom.id),
        vcpu: VcpuId(v as u32),
    }
}

/// Makes `cpu` choose again soon: at once if it is this one, else through an IPI.
fn poke(cpu: usize) {
    RESCHED[cpu].store(true, Ordering::Release);
    if cpu != crate::percpu::cpu_id() {
        crate::smp::send_ipi(cpu, crate::smp::VECTOR_RESCHED);
    }
}

/// Interrupts the guest on `cpu` so that it passes through the exit path (an event or NMI is
/// waiting for the vCPU there).
pub fn kick(cpu: usize) {
    if cpu != crate::percpu::cpu_id() {
        crate::smp::send_ipi(cpu, crate::smp::VECTOR_RESCHED);
    }
}

/// Creates the policy with dom0's vCPUs and chooses the first to run on this CPU.
pub fn init(dom: &mut Domain) {
    let policy = Scheduler::new(crate::smp::online());
    *POLICY.lock() = Some(policy);
    add_domain(dom);
    let me = crate::percpu::cpu_id();
    let first = pick(me, crate::time::now_ns()).map_or(0, |u| u.vcpu.0 as usize);
    crate::percpu::set_domain(dom.id);
    crate::percpu::set_vcpu(first);
    crate::smp::set_active(true);
    dom.vcpus[first].cpu = Some(me);
    crate::vcpu::set_runstate(dom, first, RUNSTATE_RUNNING);
}

/// Registers a new domain and its vCPUs with the policy (default weight, no cap); those that
/// may run are woken.
pub fn add_domain(dom: &mut Domain) {
    if let Some(p) = POLICY.lock().as_mut() {
        let _ = p.add_domain(DomId(dom.id), DEFAULT_WEIGHT, 0);
    }
    add_vcpus(dom);
}

/// Registers a domain's vCPUs that the policy does not know yet; those that may run are woken.
pub fn add_vcpus(dom: &mut Domain) {
    if let Some(p) = POLICY.lock().as_mut() {
        for i in 0..dom.vcpus.len() {
            let _ = p.add_vcpu(unit(dom, i));
        }
    }
    for i in 0..dom.vcpus.len() {
        if dom.can_run(i) {
            wake(dom, i);
        }
    }
}

/// Removes a domain from the policy (none of its vCPUs may be on a CPU).
pub fn remove_domain(id: u16) {
    if let Some(p) = POLICY.lock().as_mut() {
        let _ = p.remove_domain(DomId(id), crate::time::now_ns());
    }
}

/// End of the running vCPU's slice on this CPU, for arming the timer.
pub fn slice_end() -> u64 {
    SLICE_END[crate::percpu::cpu_id()].load(Ordering::Relaxed)
}

/// Tells the policy that vCPU `v` became runnable (if its domain may run).
///
/// A vCPU put to sleep while running on another CPU stays there until that CPU passes through
/// the hypervisor and saves it; until then its saved registers are stale. Were the policy to
/// queue it again at once, a third CPU could enter it from those registers while it still runs.
/// So its wake-up waits for `save` (`Vcpu::wake_pending`).
pub fn wake(dom: &mut Domain, v: usize) {
    if !dom.can_run(v) {
        return;
    }
    if dom.vcpus[v]
        .cpu
        .is_some_and(|c| c != crate::percpu::cpu_id())
    {
        dom.vcpus[v].wake_pending = true;
        return;
    }
    requeue(dom, v);
}

/// The policy side of `wake`.
fn requeue(dom: &mut Domain, v: usize) {
    crate::vcpu::set_runstate(dom, v, RUNSTATE_RUNNABLE);
    let cpu = POLICY
        .lock()
        .as_mut()
        .and_then(|p| p.wake(unit(dom, v)).ok().flatten());
    if let Some(c) = cpu {
        poke(c);
    }
}

/// Tells the policy that vCPU `v` stopped being runnable (blocked, down, or its domain
/// paused or shut down).
pub fn sleep(dom: &mut Domain, v: usize) {
    dom.vcpus[v].wake_pending = false;
    if dom.vcpus[v].cpu.is_none() {
        // (One still on a CPU changes state when that CPU chooses again.)
        crate::vcpu::set_runstate(dom, v, off_cpu_state(dom, v));
    }
    let now = crate::time::now_ns();
    let cpu = POLICY
        .lock()
        .as_mut()
        .and_then(|p| p.block(unit(dom, v), now).ok().flatten());
    if let Some(c) = cpu {
        poke(c);
    }
}

/// Restricts vCPU `v` to the CPUs whose bits are set in `mask` (hard affinity); the CPU that
/// must choose again (the vCPU's, if it now may not run there, or an idle one it may now use)
/// is interrupted. `-EINVAL` if no online CPU is left.
pub fn set_affinity(dom: &mut Domain, v: usize, mask: u64) -> Result<(), xen_abi::errno::Errno> {
    let cpus: alloc::vec::Vec<usize> = (0..crate::smp::online().min(64))
        .filter(|&c| mask & (1 << c) != 0)
        .collect();
    let cpu = POLICY
        .lock()
        .as_mut()
        .ok_or(xen_abi::errno::Errno::ESRCH)?
        .set_affinity(unit(dom, v), &cpus)?;
    dom.vcpus[v].affinity = mask;
    if let Some(c) = cpu {
        poke(c);
    }
    Ok(())
}

/// Holds vCPU `v` off every CPU until `release`: the CPU running it, if any, is interrupted
/// and saves it on its way back to the guest.
pub fn kick_off(dom: &mut Domain, v: usize) {
    if !dom.vcpus[v].ctl_paused {
        dom.vcpus[v].ctl_paused = true;
        sleep(dom, v);
    }
}

/// Ends `kick_off`.
pub fn release(dom: &mut Domain, v: usize) {
    if dom.vcpus[v].ctl_paused {
        dom.vcpus[v].ctl_paused = false;
        wake(dom, v);
    }
}

/// A domain's credit weight and cap.
pub fn credit(dom: u16) -> Result<(u16, u32), xen_abi::errno::Errno> {
    POLICY
        .lock()
        .as_ref()
        .ok_or(xen_abi::errno::Errno::ESRCH)?
        .domain_params(DomId(dom))
}

/// Sets a domain's credit weight and/or cap.
pub fn set_credit(
    dom: u16,
    weight: Option<u16>,
    cap: Option<u32>,
) -> Result<(), xen_abi::errno::Errno> {
    let mut g = POLICY.lock();
    let p = g.as_mut().ok_or(xen_abi::errno::Errno::ESRCH)?;
    if let Some(w) = weight {
        p.set_weight(DomId(dom), w)?;
    }
    if let Some(c) = cap {
        p.set_cap(DomId(dom), c)?;
    }
    Ok(())
}

/// SCHEDOP_yield: the running vCPU `v` lets the policy choose again on the way out, and any
/// other vCPU that may run on this CPU goes first.
pub fn yield_now(dom: &Domain, v: usize) {
    if let Some(p) = POLICY.lock().as_mut() {
        let _ = p.yield_vcpu(unit(dom, v));
    }
    RESCHED[crate::percpu::cpu_id()].store(true, Ordering::Release);
}

/// Lets the policy choose for this CPU at `now`; also pokes the CPU it says should choose too.
fn pick(me: usize, now: u64) -> Option<UnitId> {
    RESCHED[me].store(false, Ordering::Relaxed);
    let d = POLICY.lock().as_mut()?.pick_next(me, now);
    SLICE_END[me].store(now.saturating_add(d.run_for_ns), Ordering::Relaxed);
    if let Some(t) = d.tickle {
        poke(t);
    }
    d.vcpu
}

/// Runs on every return to the guest (at system time `now`), with the current domain `dom`
/// taken out of `table`: if the slice is over, a wake-up asked for it, or the running vCPU
/// cannot go on, lets the policy choose and switches to its choice, which may belong to
/// another domain. Returns the domain now current (still taken out), or `None` if nothing is
/// left to run here: the running vCPU's state has been saved, every domain is back in
/// `table`, and the caller must give up the domain lock and go to `idle_loop`.
#[inline(always)]
pub fn schedule(
    table: &mut crate::domain::Domains,
    dom: Box<Domain>,
    regs: &mut GuestRegs,
    now: u64,
) -> Option<Box<Domain>> {
    let me = crate::percpu::cpu_id();
    if !RESCHED[me].load(Ordering::Acquire)
        && now < SLICE_END[me].load(Ordering::Relaxed)
        && dom.can_run(crate::percpu::vcpu())
    {
        return Some(dom);
    }
    choose(table, dom, regs, now)
}

/// `schedule` once the policy must choose.
#[inline(never)]
fn choose(
    table: &mut crate::domain::Domains,
    mut dom: Box<Domain>,
    regs: &mut GuestRegs,
    now: u64,
) -> Option<Box<Domain>> {
    let me = crate::percpu::cpu_id();
    let cur = crate::percpu::vcpu();
    match pick(me, now) {
        Some(u) if u.dom.0 == dom.id && u.vcpu.0 as usize == cur => {
            crate::vcpu::set_runstate(&mut dom, cur, RUNSTATE_RUNNING);
            crate::vcpu::check(&mut dom, table);
            Some(dom)
        }
        Some(u) if u.dom.0 == dom.id => {
            save(&mut dom, regs, cur);
            enter_vcpu(&mut dom, regs, u.vcpu.0 as usize);
            crate::vcpu::check(&mut dom, table);
            Some(dom)
        }
        to => {
            save(&mut dom, regs, cur);
            table.put(dom);
            crate::percpu::set_vcpu(NO_VCPU as usize);
            crate::smp::set_active(false);
            let mut next = table.take(to?.dom.0)?;
            crate::percpu::set_domain(next.id);
            enter_vcpu(&mut next, regs, to?.vcpu.0 as usize);
            crate::vcpu::check(&mut next, table);
            Some(next)
        }
    }
}

/// Where a CPU waits with nothing to run: halts until an interrupt, then (under the domain
/// lock) fires timers and asks the policy for a vCPU; enters the guest when it gets one.
pub fn idle_loop() -> ! {
    let me = crate::percpu::cpu_id();
    loop {
        crate::smp::service();
        {
            let mut guard = crate::domain::lock();
            let table = &mut *guard;
            crate::vcpu::check_idle(table);
            if let Some(u) = pick(me, crate::time::now_ns()) {
                if let Some(mut dom) = table.take(u.dom.0) {
                    let info = crate::percpu::current_cpu_info();
                    // SAFETY: this CPU's CpuInfo; nothing else uses its frame while idle.
                    let regs = unsafe { &mut (*info).regs };
                    crate::percpu::set_domain(dom.id);
                    enter_vcpu(&mut dom, regs, u.vcpu.0 as usize);
                    crate::vcpu::check(&mut dom, table);
                    if crate::traps::exit_to_guest(table, dom, regs) {
                        drop(guard);
                        // SAFETY: the frame was loaded from the vCPU's saved state and made
                        // safe to return to by the exit path.
                        unsafe { crate::entry::return_to_frame(&raw const (*info).regs) }
                    }
                    // Nothing to enter after all (the domain stopped).
                    continue;
                }
            }
        }
        xenolith_arch::instr::sti_hlt_cli();
    }
}

/// Saves the running vCPU `from` (registers from `regs`, the rest from the hardware).
fn save(dom: &mut Domain, regs: &GuestRegs, from: usize) {
    let v = &mut dom.vcpus[from];
    v.regs = *regs;
    v.fs_base = rdmsr(Msr::FsBase);
    let (active, inactive) = (rdmsr(Msr::GsBase), rdmsr(Msr::KernelGsBase));
    if v.kernel_mode {
        (v.gs_base_kernel, v.gs_base_user) = (active, inactive);
    } else {
        (v.gs_base_user, v.gs_base_kernel) = (active, inactive);
    }
    v.sel = xenolith_arch::instr::read_data_selectors();
    crate::fpu::set_ts(false);
    // SAFETY: the area is a 512-byte, 16-aligned FpuArea and TS was just cleared.
    unsafe { xenolith_arch::instr::fxsave(v.fpu.0.as_mut_ptr()) };
    v.cpu = None;
    crate::vcpu::set_runstate(dom, from, off_cpu_state(dom, from));
    if core::mem::take(&mut dom.vcpus[from].wake_pending) && dom.can_run(from) {
        requeue(dom, from);
    }
}

/// The runstate of vCPU `v` off its CPU, as Xen has it: runnable if it may run, blocked if it
/// waits for an event, offline otherwise (down, or its domain paused or shut down).
fn off_cpu_state(dom: &Domain, v: usize) -> u32 {
    let x = &dom.vcpus[v];
    if dom.can_run(v) {
        RUNSTATE_RUNNABLE
    } else if x.up && !matches!(x.wait, crate::domain::Wait::None) {
        RUNSTATE_BLOCKED
    } else {
        RUNSTATE_OFFLINE
    }
}

/// Loads vCPU `to` on this CPU: its registers into `regs`, the rest into the hardware.
fn enter_vcpu(dom: &mut Domain, regs: &mut GuestRegs, to: usize) {
    let me = crate::percpu::cpu_id();
    crate::smp::set_active(true);
    crate::percpu::set_vcpu(to);
    dom.vcpus[to].cpu = Some(me);
    dom.vcpus[to].last_cpu = me;
    *regs = dom.vcpus[to].regs;
    let bad = load(&dom.vcpus[to]);
    crate::vcpu::set_runstate(dom, to, RUNSTATE_RUNNING);
    if let Some(saved) = bad {
        crate::traps::failsafe(dom, regs, saved);
    }
}

/// Loads a vCPU's state other than its registers into the hardware. Returns the saved data
/// selectors if one of them could not be loaded (a null selector was loaded in its place; the
/// guest's failsafe callback is due, as on Xen).
fn load(v: &Vcpu) -> Option<[u16; 4]> {
    // SAFETY: the area is a 512-byte, 16-aligned FpuArea holding an FXSAVE image (reset
    // state or saved by `switch`), and TS is cleared first.
    unsafe {
        crate::fpu::set_ts(false);
        xenolith_arch::instr::fxrstor(v.fpu.0.as_ptr());
    }
    crate::fpu::set_ts(v.virtual_ts);
    crate::desc::install_gdt(v);
    crate::desc::install_ldt(v);
    let mut sel = v.sel;
    let mut bad = false;
    for s in sel.iter_mut() {
        if !crate::desc::loadable_data_selector(v, *s) {
            *s = 0;
            bad = true;
        }
    }
    // SAFETY: every selector was checked to load without faulting (or replaced by null); the
    // bases written next are canonical (checked whenever the guest set them, or read back from
    // the hardware); the root carries the hypervisor's L4 slots.
    unsafe {
        xenolith_arch::instr::load_data_selectors(sel);
        wrmsr(Msr::FsBase, v.fs_base);
        let (active, inactive) = if v.kernel_mode {
            (v.gs_base_kernel, v.gs_base_user)
        } else {
            (v.gs_base_user, v.gs_base_kernel)
        };
        wrmsr(Msr::GsBase, active);
        wrmsr(Msr::KernelGsBase, inactive);
        write_cr3(v.current_root() << 12);
    }
    crate::emulate::load_debugregs(v);
    crate::emulate::load_cr4(v);
    bad.then_some(v.sel)
}

/// Completes a switch between guest kernel and user mode: loads the new mode's root page
/// table and swaps the GS bases.
///
/// In guest kernel mode GS_BASE holds the kernel GS base and KERNEL_GS_BASE the user one;
/// switching mode swaps them, as Xen does.
pub fn switch_mode(v: &Vcpu) {
    swapgs();
    load_cr3(v);
}

/// Loads the root page table for the vCPU's current mode.
pub fn load_cr3(v: &Vcpu) {
    // SAFETY: every guest root the hypervisor accepts carries the hypervisor's L4 slots
    // (installed when the table was created), so the code and stack stay mapped.
    unsafe { write_cr3(v.current_root() << 12) };
}

/// Enters the vCPU the scheduler chose at boot, for the first time on this CPU.
pub fn enter(v: &Vcpu) -> ! {
    // The boot vCPU's selectors are null and its GDT, LDT and debug registers are empty, so
    // the load cannot fail.
    let _ = load(v);
    let info = crate::percpu::current_cpu_info();
    // SAFETY: `info` is this CPU's CpuInfo at the top of the current stack; the vCPU's saved
    // registers were built by the domain builder with flat ring-3 selectors, IF set and a
    // canonical entry point.
    unsafe {
        (*info).regs = v.regs;
        crate::entry::return_to_frame(&raw const (*info).regs)
    }
}
