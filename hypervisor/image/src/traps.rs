//! Exceptions, interrupts and SYSCALL: routing to the hypervisor or bouncing to the guest.
//!
//! Exceptions raised by a guest are delivered to the guest's trap table with Xen's bounce
//! frame (pv-guest-abi.md §3.3) or, where Xen emulates, emulated; a guest without a handler is
//! crashed, never the hypervisor. An exception raised by the hypervisor itself is a bug and
//! ends in a panic that reports the frame.
use xen_abi::shared_info::VcpuInfo;
use xenolith_arch::instr::read_cr2;
use zerocopy::FromBytes;

use crate::domain::{Domain, Shutdown, Vcpu};
use crate::guestmem::GuestMem;
use crate::mm::frame_bytes;
use crate::percpu::{GuestRegs, VECTOR_SYSCALL};

const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_IF: u64 = 1 << 9;
const RFLAGS_IOPL: u64 = 3 << 12;
const RFLAGS_NT: u64 = 1 << 14;
const RFLAGS_RF: u64 = 1 << 16;
const RFLAGS_VM: u64 = 1 << 17;
const RFLAGS_AC: u64 = 1 << 18;

/// Vector of the local APIC timer.
pub const VECTOR_TIMER: u64 = 0xf0;
/// Vector of spurious local APIC interrupts.
pub const VECTOR_SPURIOUS: u64 = 0xff;

/// Exception names for reports.
pub fn vector_name(v: u64) -> &'static str {
    const NAMES: [&str; 22] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "coproc", "#TS", "#NP",
        "#SS", "#GP", "#PF", "reserved", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
    ];
    match v {
        VECTOR_SYSCALL => "syscall",
        _ => NAMES.get(v as usize).copied().unwrap_or("interrupt"),
    }
}

/// Whether an exception vector pushes an error code.
pub fn has_error_code(v: u64) -> bool {
    matches!(v, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

/// The vcpu_info of a vCPU, viewed through the direct map.
pub fn vcpu_info(v: &Vcpu) -> &'static mut VcpuInfo {
    let maddr = v.vcpu_info_maddr;
    let page = frame_bytes(maddr >> 12);
    let off = (maddr & 0xfff) as usize;
    match VcpuInfo::mut_from_bytes(&mut page[off..off + 64]) {
        Ok(vi) => vi,
        Err(_) => panic!("vcpu_info at {maddr:#x} is misaligned"),
    }
}

/// Entry from the assembly stubs for every exception, interrupt and SYSCALL.
pub extern "C" fn trap_dispatch(regs: &mut GuestRegs) {
    if !regs.is_guest() {
        hypervisor_trap(regs);
        return;
    }
    if regs.vector == crate::smp::VECTOR_FLUSH {
        // A TLB shootdown: answered at once, without the domain lock its sender holds.
        external_interrupt(regs.vector);
        return;
    }
    let mut guard = crate::domain::lock();
    let table = &mut *guard;
    let Some(mut dom) = table.take(crate::percpu::domain()) else {
        drop(guard);
        crate::fatal_frame("guest entry with no domain", regs);
    };
    match regs.vector {
        VECTOR_SYSCALL => {
            if dom.vcpus[crate::percpu::vcpu()].kernel_mode {
                crate::hypercall::dispatch(&mut dom, table, crate::percpu::vcpu(), regs);
            } else {
                guest_user_syscall(&mut dom, regs);
            }
        }
        0x80 => int80(&mut dom, regs),
        v if v >= 32 => external_interrupt(v),
        2 => crate::warn!("NMI while running d{}", dom.id),
        v => guest_exception(&mut dom, regs, v),
    }
    let run = exit_to_guest(table, dom, regs);
    drop(guard);
    if !run {
        crate::sched::idle_loop();
    }
}

/// Work done on every return to a guest, for the current domain `dom` (taken out of `table`,
/// and put back here): act on a shutdown, fire timers, let the scheduler switch vCPUs (maybe to
/// another domain's), deliver a pending NMI or event upcall, and make the frame safe to IRET
/// to. Returns false if this CPU has nothing left to run (see `sched::schedule`).
pub fn exit_to_guest(
    table: &mut crate::domain::Domains,
    mut dom: alloc::boxed::Box<Domain>,
    regs: &mut GuestRegs,
) -> bool {
    crate::mm::reap_freed(&mut dom, table);
    let now = crate::vcpu::check_exit(&mut dom, table);
    loop {
        park(&mut dom);
        match crate::sched::schedule(table, dom, regs, now) {
            None => return false,
            Some(d) => dom = d,
        }
        let ok = deliver(&mut dom, regs);
        if ok {
            table.put(dom);
            return true;
        }
        // Delivery crashed the domain: act on it and choose again.
    }
}

/// Acts once on a domain's shutdown: the hardware domain's stops the machine, as on Xen;
/// another domain's vCPUs leave the scheduler (the domain stays until destroyed) and dom0 gets
/// VIRQ_DOM_EXC.
#[inline]
pub fn park(dom: &mut Domain) {
    if dom.shutdown.is_some() && !dom.parked {
        park_now(dom);
    }
}

#[inline(never)]
fn park_now(dom: &mut Domain) {
    let Some(s) = dom.shutdown else { return };
    if dom.id == 0 {
        crate::domain_stopped(dom.id, s);
    }
    dom.parked = true;
    match s {
        Shutdown::Requested(r) => {
            crate::info!("d{}: shut down ({})", dom.id, crate::pv::shutdown_name(r))
        }
        Shutdown::Crashed => crate::info!("d{}: crashed", dom.id),
    }
    for v in 0..dom.vcpus.len() {
        crate::sched::sleep(dom, v);
    }
    crate::vcpu::DOM_EXC.store(true, core::sync::atomic::Ordering::Release);
}

/// The last part of the way back into the running vCPU: a pending NMI, then a pending event
/// upcall, then the frame made safe for IRET. Returns false if the domain stopped instead.
pub fn deliver(dom: &mut Domain, regs: &mut GuestRegs) -> bool {
    if dom.shutdown.is_some() {
        return false;
    }
    let cur = crate::percpu::vcpu();
    // A pending NMI goes first, through the NMI callback (dropped if there is none); further
    // NMIs wait until the guest's iret.
    if dom.vcpus[cur].nmi_pending && !dom.vcpus[cur].nmi_masked {
        dom.vcpus[cur].nmi_pending = false;
        let cb = dom.vcpus[cur].nmi_callback;
        if cb.address != 0 {
            dom.vcpus[cur].nmi_masked = true;
            if bounce(dom, regs, cb.address, &[], true).is_err() {
                crash(dom, "fault while delivering an NMI");
                return false;
            }
        }
    }
    let v = &mut dom.vcpus[cur];
    let vi = vcpu_info(v);
    if vi.evtchn_upcall_pending != 0 && vi.evtchn_upcall_mask == 0 {
        let cb = v.event_callback;
        if cb.address == 0 {
            // Xen's create_bounce_frame has nowhere to go either: the domain crashes.
            crash(dom, "event upcall due with no event callback registered");
            return false;
        }
        if bounce(dom, regs, cb.address, &[], true).is_err() {
            crash(dom, "fault while delivering an event upcall");
            return false;
        }
    }
    regs.cs |= 3;
    regs.ss |= 3;
    regs.rflags = (regs.rflags | RFLAGS_IF | 2) & !(RFLAGS_IOPL | RFLAGS_NT | RFLAGS_VM);
    true
}

/// A data segment selector of the vCPU being loaded could not be loaded (null was loaded in
/// its place): enter the guest's failsafe callback with the selectors it had saved, as Xen's
/// load_segments does, or crash the guest if it registered none.
pub fn failsafe(dom: &mut Domain, regs: &mut GuestRegs, saved: [u16; 4]) {
    let cb = dom.vcpus[crate::percpu::vcpu()].failsafe_callback;
    if cb.address == 0 {
        crash(
            dom,
            "a segment register could not be reloaded and there is no failsafe callback",
        );
        return;
    }
    let extra = saved.map(u64::from);
    if bounce(dom, regs, cb.address, &extra, cb.flags & 1 != 0).is_err() {
        crash(dom, "fault writing the failsafe callback frame");
    }
}

/// Crashes a domain, logging why. Its vCPUs never run again.
pub fn crash(dom: &mut Domain, why: &str) {
    crate::error!(
        "d{}v{} crashed: {}",
        dom.id,
        dom.vcpus[crate::percpu::vcpu()].id,
        why
    );
    dom.shutdown = Some(Shutdown::Crashed);
}

/// Switches a vCPU between guest kernel and user mode (Xen's toggle_guest_mode): the other
/// root page table and the other GS base.
pub fn toggle_guest_mode(v: &mut Vcpu) {
    v.kernel_mode = !v.kernel_mode;
    crate::sched::switch_mode(v);
}

/// Pushes Xen's bounce frame on the guest kernel stack and points the guest at `handler`.
///
/// Frame, from the new RSP upward: RCX, R11, `extra` (the error code, or the failsafe
/// callback's DS, ES, FS, GS), RIP, CS (with the saved event mask in bits 32-39), RFLAGS, RSP,
/// SS. A fault while writing it is the caller's to handle (Xen crashes the domain).
pub fn bounce(
    dom: &mut Domain,
    regs: &mut GuestRegs,
    handler: u64,
    extra: &[u64],
    mask: bool,
) -> Result<(), ()> {
    let was_kernel = dom.vcpus[crate::percpu::vcpu()].kernel_mode;
    if !was_kernel {
        toggle_guest_mode(&mut dom.vcpus[crate::percpu::vcpu()]);
    }
    let v = &dom.vcpus[crate::percpu::vcpu()];
    let stack = if was_kernel { regs.rsp } else { v.kernel_sp };
    let vi = vcpu_info(v);
    let saved_mask = u64::from(vi.evtchn_upcall_mask);
    let cs = if was_kernel {
        regs.cs & !3
    } else {
        regs.cs | 3
    } & 0xffff;
    let arch_iopl = if dom.vm_assist & crate::pv::VMASST_ARCHITECTURAL_IOPL != 0 {
        u64::from(v.iopl) << 12
    } else {
        0
    };
    let rflags = (regs.rflags & !(RFLAGS_IF | RFLAGS_IOPL))
        | if saved_mask == 0 { RFLAGS_IF } else { 0 }
        | arch_iopl;
    let mut frame = [0u64; 11];
    let mut n = 0;
    let tail = [regs.rip, cs | (saved_mask << 32), rflags, regs.rsp, regs.ss];
    for &word in [regs.rcx, regs.r11]
        .iter()
        .chain(extra.iter().take(4))
        .chain(tail.iter())
    {
        frame[n] = word;
        n += 1;
    }
    let new_rsp = (stack & !15).wrapping_sub(8 * n as u64);
    let mut bytes = [0u8; 88];
    for (i, w) in frame[..n].iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let mem = GuestMem::current(dom, v.current_root());
    if mem.write(new_rsp, &bytes[..n * 8]).is_err() {
        return Err(());
    }
    regs.rip = handler;
    regs.rsp = new_rsp;
    regs.cs = u64::from(crate::cpu::FLAT_RING3_CS64);
    regs.ss = u64::from(crate::cpu::FLAT_RING3_DS);
    regs.rflags &= !(RFLAGS_TF | RFLAGS_NT | RFLAGS_RF | RFLAGS_VM | RFLAGS_AC);
    if mask {
        vi.evtchn_upcall_mask = 1;
    }
    Ok(())
}

/// Injects exception `vector` into the guest through its trap table, or crashes it if it has
/// no handler or the bounce faults.
pub fn inject(dom: &mut Domain, regs: &mut GuestRegs, vector: u64, error_code: Option<u64>) {
    let t = dom.vcpus[crate::percpu::vcpu()].trap_ctxt[vector as usize & 0xff];
    if t.address == 0 {
        dump_guest(dom, regs);
        let msg = alloc::format!(
            "unhandled {} (vector {vector}, error {:#x}) at {:#x} with no guest handler",
            vector_name(vector),
            error_code.unwrap_or(0),
            regs.rip
        );
        crash(dom, &msg);
        return;
    }
    if bounce(
        dom,
        regs,
        t.address,
        error_code.as_slice(),
        t.flags & 4 != 0,
    )
    .is_err()
    {
        let msg = alloc::format!(
            "fault writing the {} bounce frame below rsp {:#x}",
            vector_name(vector),
            regs.rsp
        );
        crash(dom, &msg);
    }
}

fn guest_exception(dom: &mut Domain, regs: &mut GuestRegs, vector: u64) {
    match vector {
        14 => {
            let mut cr2 = read_cr2();
            if crate::desc::in_ldt_window(cr2) {
                match crate::desc::ldt_fault(dom, cr2) {
                    Ok(()) => return,
                    // Reflect the fault at the LDT entry's guest address, as Xen does.
                    Err(linear) => cr2 = linear,
                }
            }
            if crate::emulate::ptwr(dom, regs, cr2) {
                return;
            }
            let v = &dom.vcpus[crate::percpu::vcpu()];
            vcpu_info(v).arch.cr2 = cr2;
            // The guest kernel runs at CPL 3 too: report U/S as the guest's own mode.
            let ec = (regs.error_code & !4) | if v.kernel_mode { 0 } else { 4 };
            inject(dom, regs, 14, Some(ec));
        }
        13 if regs.error_code & 2 != 0 => {
            // INT n through a gate the hardware refused: a software interrupt for the guest.
            let n = regs.error_code >> 3;
            let t = dom.vcpus[crate::percpu::vcpu()].trap_ctxt[n as usize & 0xff];
            let cpl = if dom.vcpus[crate::percpu::vcpu()].kernel_mode {
                1
            } else {
                3
            };
            if n < 256 && t.address != 0 && u64::from(t.flags & 3) >= cpl {
                regs.rip = regs.rip.wrapping_add(2);
                if bounce(dom, regs, t.address, &[], t.flags & 4 != 0).is_err() {
                    crash(dom, "fault writing a software-interrupt bounce frame");
                }
            } else {
                inject(dom, regs, 13, Some(regs.error_code));
            }
        }
        13 if regs.error_code == 0 => {
            if !crate::emulate::privileged_op(dom, regs) {
                inject(dom, regs, 13, Some(0));
            }
        }
        6 => {
            if !crate::emulate::forced_emulation(dom, regs) {
                inject(dom, regs, 6, None);
            }
        }
        7 => {
            // Xen clears TS before delivering #NM, so the guest's handler can retry the
            // instruction right away.
            dom.vcpus[crate::percpu::vcpu()].virtual_ts = false;
            crate::fpu::set_ts(false);
            inject(dom, regs, 7, None);
        }
        8 => crash(dom, "double fault"),
        1 => {
            // Fold the hardware status into the guest's virtual DR6 and reset the hardware.
            let dr6 = xenolith_arch::instr::read_dr(6);
            // SAFETY: writing DR6's reset value only clears the status bits.
            unsafe { xenolith_arch::instr::write_dr(6, 0xffff_0ff0) };
            let v = &mut dom.vcpus[crate::percpu::vcpu()];
            v.dr[6] = (v.dr[6] & !0xf) | (dr6 & 0x600f) | 0xffff_0ff0;
            inject(dom, regs, 1, None);
        }
        v => {
            let ec = has_error_code(v).then_some(regs.error_code);
            inject(dom, regs, v, ec);
        }
    }
}

fn guest_user_syscall(dom: &mut Domain, regs: &mut GuestRegs) {
    let cb = dom.vcpus[crate::percpu::vcpu()].syscall_callback;
    if cb.address == 0 {
        // No syscall callback: #UD at the SYSCALL instruction.
        regs.rip = regs.rip.wrapping_sub(2);
        inject(dom, regs, 6, None);
        return;
    }
    if bounce(dom, regs, cb.address, &[], cb.flags & 1 != 0).is_err() {
        crash(dom, "fault writing the syscall bounce frame");
    }
}

/// Routes an interrupt vector to its device: the console's UART, else the local APIC.
fn external_interrupt(vector: u64) {
    if crate::console::is_rx_vector(vector) {
        crate::console::rx_interrupt();
    } else {
        if vector == crate::smp::VECTOR_FLUSH {
            crate::smp::service();
        }
        // The reschedule IPI needs nothing more: the exit path looks at the flag its sender
        // set. The local APIC gets its EOI here for it, the flush and the timer.
        crate::time::interrupt(vector);
    }
}

fn hypervisor_trap(regs: &mut GuestRegs) {
    match regs.vector {
        2 => crate::warn!("NMI in the hypervisor at {:#x}", regs.rip),
        1 => {
            // A guest breakpoint or single step seen on the way into the hypervisor: the
            // guest never observes it here, so just clear the status.
            // SAFETY: writing DR6's reset value only clears the status bits.
            unsafe { xenolith_arch::instr::write_dr(6, 0xffff_0ff0) };
        }
        v if v >= 32 => external_interrupt(v),
        13 if regs.rip == crate::entry::iretq_address() => {
            // The guest context we tried to enter was refused by the CPU.
            let mut guard = crate::domain::lock();
            let table = &mut *guard;
            let Some(mut dom) = table.take(crate::percpu::domain()) else {
                drop(guard);
                crate::fatal_frame("fault returning to a guest", regs);
            };
            crash(&mut dom, "invalid context on return to guest");
            let info = crate::percpu::current_cpu_info();
            // SAFETY: this CPU's CpuInfo; its frame holds the guest context that was refused,
            // and the exit path below replaces it before anything returns to it.
            let frame = unsafe { &mut (*info).regs };
            let run = exit_to_guest(table, dom, frame);
            drop(guard);
            if run {
                // SAFETY: the frame was loaded from another vCPU's saved state and made safe
                // to return to by the exit path.
                unsafe { crate::entry::return_to_frame(&raw const (*info).regs) }
            }
            crate::sched::idle_loop();
        }
        _ => crate::fatal_frame("unexpected exception in the hypervisor", regs),
    }
}

/// `int $0x80` reaches the hypervisor through a DPL-3 gate (RIP already past it): like Xen's
/// direct path, it goes to the guest's trap-table entry 0x80 whatever that entry's DPL, or
/// becomes #GP(0x402) if there is no entry.
fn int80(dom: &mut Domain, regs: &mut GuestRegs) {
    let t = dom.vcpus[crate::percpu::vcpu()].trap_ctxt[0x80];
    if t.address != 0 {
        if bounce(dom, regs, t.address, &[], t.flags & 4 != 0).is_err() {
            crash(dom, "fault writing an int $0x80 bounce frame");
        }
    } else {
        regs.rip = regs.rip.wrapping_sub(2);
        inject(dom, regs, 13, Some(0x80 * 8 + 2));
    }
}

/// Logs a guest's registers and the top of its stack (before crashing it).
pub fn dump_guest(dom: &Domain, r: &GuestRegs) {
    crate::error!(
        "d{}v0 {} mode: rip {:016x} rsp {:016x} rflags {:08x}",
        dom.id,
        if dom.vcpus[crate::percpu::vcpu()].kernel_mode {
            "kernel"
        } else {
            "user"
        },
        r.rip,
        r.rsp,
        r.rflags
    );
    crate::error!(
        "  rax {:016x} rbx {:016x} rcx {:016x} rdx {:016x}",
        r.rax,
        r.rbx,
        r.rcx,
        r.rdx
    );
    crate::error!(
        "  rsi {:016x} rdi {:016x} rbp {:016x} r8  {:016x}",
        r.rsi,
        r.rdi,
        r.rbp,
        r.r8
    );
    crate::error!(
        "  r9  {:016x} r10 {:016x} r11 {:016x} r12 {:016x}",
        r.r9,
        r.r10,
        r.r11,
        r.r12
    );
    crate::error!(
        "  r13 {:016x} r14 {:016x} r15 {:016x} cr2 {:016x}",
        r.r13,
        r.r14,
        r.r15,
        read_cr2()
    );
    let mem = GuestMem::current(dom, dom.vcpus[crate::percpu::vcpu()].current_root());
    let mut words = [0u64; 8];
    for (i, w) in words.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        if mem.read(r.rsp.wrapping_add(i as u64 * 8), &mut b).is_err() {
            break;
        }
        *w = u64::from_le_bytes(b);
    }
    crate::error!(
        "  stack: {:016x} {:016x} {:016x} {:016x}",
        words[0],
        words[1],
        words[2],
        words[3]
    );
    crate::error!(
        "         {:016x} {:016x} {:016x} {:016x}",
        words[4],
        words[5],
        words[6],
        words[7]
    );
}
