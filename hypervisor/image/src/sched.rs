//! Putting vCPUs on the CPU: the credit policy of `xenolith_core::sched` wired to the domain's
//! vCPUs, and the hardware side of running one (root page table, segments, FPU, debug
//! registers).
//!
//! Invariants: `percpu::vcpu()` names the vCPU whose registers are in this CPU's
//! `CpuInfo::regs` frame and whose FPU, segment and debug state is in the hardware; every other
//! vCPU's state is in its `Vcpu`. The policy's view of which vCPUs are runnable follows
//! `Vcpu::runnable` (up and not waiting): `wake` and `sleep` are called on every change.
//!
//! One CPU runs guests for now, so the domain lock serialises everything here; the policy
//! already handles several pCPUs.
use spin::Mutex;
use xen_abi::types::{DomId, VcpuId};
use xenolith_arch::instr::{swapgs, write_cr3};
use xenolith_arch::msr::{rdmsr, wrmsr, Msr};
use xenolith_core::sched::{Scheduler, UnitId, DEFAULT_WEIGHT};

use crate::domain::{Domain, Vcpu};
use crate::percpu::GuestRegs;
use crate::vcpu::{RUNSTATE_BLOCKED, RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING};

/// The only CPU that runs guests so far.
const CPU: usize = 0;

struct State {
    policy: Scheduler,
    /// When the running vCPU's slice ends (system time, ns; `u64::MAX`: never).
    slice_end: u64,
    /// A wake-up asked this CPU to choose again.
    resched: bool,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn unit(dom: &Domain, v: usize) -> UnitId {
    UnitId {
        dom: DomId(dom.id),
        vcpu: VcpuId(v as u32),
    }
}

/// Registers a domain's vCPUs with the policy and chooses the first to run.
pub fn init(dom: &Domain) {
    let mut policy = Scheduler::new(1);
    let now = crate::time::now_ns();
    let _ = policy.add_domain(DomId(dom.id), DEFAULT_WEIGHT, 0);
    for (i, v) in dom.vcpus.iter().enumerate() {
        let _ = policy.add_vcpu(unit(dom, i));
        if v.runnable() {
            let _ = policy.wake(unit(dom, i));
        }
    }
    let d = policy.pick_next(CPU, now);
    let first = d.vcpu.map_or(0, |u| u.vcpu.0 as usize);
    *STATE.lock() = Some(State {
        policy,
        slice_end: now.saturating_add(d.run_for_ns),
        resched: false,
    });
    crate::percpu::set_vcpu(first);
}

/// End of the running vCPU's slice, for arming the timer.
pub fn slice_end() -> u64 {
    STATE.lock().as_ref().map_or(u64::MAX, |s| s.slice_end)
}

/// Tells the policy that vCPU `v` became runnable.
pub fn wake(dom: &mut Domain, v: usize) {
    crate::vcpu::set_runstate(dom, v, RUNSTATE_RUNNABLE);
    if let Some(s) = STATE.lock().as_mut() {
        if let Ok(Some(_)) = s.policy.wake(unit(dom, v)) {
            s.resched = true;
        }
    }
}

/// Tells the policy that vCPU `v` stopped being runnable (blocked or down).
pub fn sleep(dom: &mut Domain, v: usize) {
    let state = if dom.vcpus[v].up {
        RUNSTATE_BLOCKED
    } else {
        RUNSTATE_OFFLINE
    };
    crate::vcpu::set_runstate(dom, v, state);
    let now = crate::time::now_ns();
    if let Some(s) = STATE.lock().as_mut() {
        if let Ok(Some(_)) = s.policy.block(unit(dom, v), now) {
            s.resched = true;
        }
    }
}

/// Runs on every return to the guest: if the slice is over, a wake-up asked for it, or the
/// running vCPU cannot go on, lets the policy choose and switches to its choice. With nothing
/// runnable the CPU idles here, firing timers, until something is.
pub fn schedule(dom: &mut Domain, regs: &mut GuestRegs) {
    let cur = crate::percpu::vcpu();
    let mut now = crate::time::now_ns();
    {
        let mut g = STATE.lock();
        let Some(s) = g.as_mut() else { return };
        if !s.resched && now < s.slice_end && dom.vcpus[cur].runnable() {
            return;
        }
    }
    loop {
        let d = {
            let mut g = STATE.lock();
            let Some(s) = g.as_mut() else { return };
            s.resched = false;
            let d = s.policy.pick_next(CPU, now);
            s.slice_end = now.saturating_add(d.run_for_ns);
            d
        };
        if let Some(u) = d.vcpu {
            let to = u.vcpu.0 as usize;
            if to != cur {
                switch(dom, regs, cur, to);
            } else {
                crate::vcpu::set_runstate(dom, cur, RUNSTATE_RUNNING);
            }
            // Arm the timer for the new slice.
            crate::vcpu::check(dom);
            return;
        }
        if dom.shutdown.is_some() {
            return;
        }
        // Idle: wait for an interrupt, then fire timers and wake whoever they unblock.
        xenolith_arch::instr::sti_hlt_cli();
        crate::vcpu::check(dom);
        if dom.shutdown.is_some() {
            return;
        }
        now = crate::time::now_ns();
    }
}

/// Saves the running vCPU `from` (registers from `regs`, the rest from the hardware) and
/// loads `to`.
fn switch(dom: &mut Domain, regs: &mut GuestRegs, from: usize, to: usize) {
    {
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
    }
    let state = if dom.vcpus[from].runnable() {
        RUNSTATE_RUNNABLE
    } else if dom.vcpus[from].up {
        RUNSTATE_BLOCKED
    } else {
        RUNSTATE_OFFLINE
    };
    crate::vcpu::set_runstate(dom, from, state);
    crate::percpu::set_vcpu(to);
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
