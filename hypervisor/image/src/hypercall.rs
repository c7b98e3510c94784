//! The hypercall table and the hypercalls built so far.
//!
//! The table is data: number, name and handler, in one place. Registers are decoded into
//! arguments before dispatch; handlers return `Result<u64, Errno>` and the negative return
//! value is made only here. Anything not in the table answers -ENOSYS, as do unknown
//! sub-ops. Long operations return `Continue` after rewriting their arguments, and the guest
//! re-executes the hypercall (Xen's continuation).
use xen_abi::errno::Errno;

use crate::domain::Domain;
use crate::percpu::GuestRegs;

/// Outcome of a hypercall handler.
pub enum Outcome {
    /// Return this value in RAX.
    Done(Result<u64, Errno>),
    /// The handler rewrote the argument registers; re-execute the SYSCALL.
    Continue,
    /// The handler set up the whole guest frame itself (HYPERVISOR_iret).
    NoReturn,
}

impl From<Result<u64, Errno>> for Outcome {
    fn from(r: Result<u64, Errno>) -> Self {
        Outcome::Done(r)
    }
}

/// Everything a handler may touch.
pub struct Ctx<'a> {
    /// The calling domain (taken out of `doms`).
    pub dom: &'a mut Domain,
    /// Every other domain.
    pub doms: &'a mut crate::domain::Domains,
    pub vcpu: usize,
    pub regs: &'a mut GuestRegs,
}

impl Ctx<'_> {
    /// The guest's memory through the vCPU's current root.
    pub fn mem(&self) -> crate::guestmem::GuestMem<'_> {
        crate::guestmem::GuestMem::current(self.dom, self.dom.vcpus[self.vcpu].current_root())
    }
}

/// A hypercall handler: arguments in rdi, rsi, rdx, r10, r8 order.
pub type Handler = fn(&mut Ctx<'_>, [u64; 5]) -> Outcome;

/// One entry of the table.
#[derive(Clone, Copy)]
pub struct Hypercall {
    /// Xen's name for it (`__HYPERVISOR_<name>`), for reports.
    pub name: &'static str,
    pub handler: Handler,
}

/// The name of a hypercall this hypervisor implements.
pub fn implemented(nr: u64) -> Option<&'static str> {
    TABLE
        .get(usize::try_from(nr).ok()?)
        .copied()
        .flatten()
        .map(|h| h.name)
}

/// Number of table slots (the hypercall page has 128).
pub const NR_HYPERCALLS: usize = 64;

const fn table() -> [Option<Hypercall>; NR_HYPERCALLS] {
    use xen_abi::hypercall as nr;
    let mut t: [Option<Hypercall>; NR_HYPERCALLS] = [None; NR_HYPERCALLS];
    macro_rules! hc {
        ($nr:expr, $name:literal, $h:path) => {
            t[$nr as usize] = Some(Hypercall {
                name: $name,
                handler: $h,
            });
        };
    }
    hc!(
        nr::SET_TRAP_TABLE,
        "set_trap_table",
        crate::pv::set_trap_table
    );
    hc!(nr::STACK_SWITCH, "stack_switch", crate::pv::stack_switch);
    hc!(
        nr::FPU_TASKSWITCH,
        "fpu_taskswitch",
        crate::pv::fpu_taskswitch
    );
    hc!(nr::MEMORY_OP, "memory_op", crate::pv::memory_op);
    hc!(
        nr::UPDATE_VA_MAPPING,
        "update_va_mapping",
        crate::pv::update_va_mapping
    );
    hc!(nr::XEN_VERSION, "xen_version", crate::pv::xen_version);
    hc!(nr::CONSOLE_IO, "console_io", crate::pv::console_io);
    hc!(nr::VM_ASSIST, "vm_assist", crate::pv::vm_assist);
    hc!(nr::IRET, "iret", crate::pv::iret);
    hc!(
        nr::SET_SEGMENT_BASE,
        "set_segment_base",
        crate::pv::set_segment_base
    );
    hc!(nr::SCHED_OP, "sched_op", crate::pv::sched_op);
    hc!(nr::CALLBACK_OP, "callback_op", crate::pv::callback_op);
    hc!(nr::MMU_UPDATE, "mmu_update", crate::mmu::mmu_update);
    hc!(nr::SET_GDT, "set_gdt", crate::desc::set_gdt);
    hc!(
        nr::UPDATE_DESCRIPTOR,
        "update_descriptor",
        crate::desc::update_descriptor
    );
    hc!(nr::MULTICALL, "multicall", multicall);
    hc!(nr::MMUEXT_OP, "mmuext_op", crate::mmu::mmuext_op);
    hc!(nr::PHYSDEV_OP, "physdev_op", crate::pv::physdev_op);
    hc!(nr::DOMCTL, "domctl", crate::domctl::domctl);
    hc!(nr::PLATFORM_OP, "platform_op", crate::pv::platform_op);
    hc!(
        nr::EVENT_CHANNEL_OP,
        "event_channel_op",
        crate::events::event_channel_op
    );
    hc!(nr::VCPU_OP, "vcpu_op", crate::vcpu::vcpu_op);
    hc!(nr::SET_TIMER_OP, "set_timer_op", crate::vcpu::set_timer_op);
    hc!(nr::SET_DEBUGREG, "set_debugreg", crate::pv::set_debugreg);
    hc!(nr::GET_DEBUGREG, "get_debugreg", crate::pv::get_debugreg);
    t
}

/// The hypercall table.
pub static TABLE: [Option<Hypercall>; NR_HYPERCALLS] = table();

/// Whether every hypercall is logged (`hypercall_trace` on the command line).
pub static TRACE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Handles a hypercall made by the guest kernel with SYSCALL.
pub fn dispatch(
    dom: &mut Domain,
    doms: &mut crate::domain::Domains,
    vcpu: usize,
    regs: &mut GuestRegs,
) {
    let nr = regs.rax;
    let args = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8];
    let entry = usize::try_from(nr)
        .ok()
        .and_then(|n| TABLE.get(n))
        .copied()
        .flatten();
    let outcome = match entry {
        Some(h) => (h.handler)(
            &mut Ctx {
                dom,
                doms,
                vcpu,
                regs,
            },
            args,
        ),
        None => {
            note_unimplemented(dom.id, nr);
            Outcome::Done(Err(Errno::ENOSYS))
        }
    };
    if TRACE.load(core::sync::atomic::Ordering::Relaxed) {
        let name = xen_abi::hypercall::name(nr).unwrap_or("?");
        let res = match &outcome {
            Outcome::Done(Ok(v)) => alloc::format!("{v:#x}"),
            Outcome::Done(Err(e)) => alloc::format!("-{}", e.name()),
            Outcome::Continue => alloc::string::String::from("continue"),
            Outcome::NoReturn => alloc::string::String::from("-"),
        };
        crate::info!(
            "d{} hc {name}({:#x}, {:#x}, {:#x}, {:#x}) = {res} @{:#x}",
            dom.id,
            args[0],
            args[1],
            args[2],
            args[3],
            regs.rip
        );
    }
    match outcome {
        Outcome::Done(Ok(v)) => regs.rax = v,
        Outcome::Done(Err(e)) => regs.rax = e.as_ret() as u64,
        Outcome::Continue => regs.rip = regs.rip.wrapping_sub(2),
        Outcome::NoReturn => {}
    }
}

/// Logs (at debug level, once per number) that a guest asked for a hypercall that is not built.
fn note_unimplemented(domid: u16, nr: u64) {
    use core::sync::atomic::{AtomicU64, Ordering};
    static SEEN: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
    static OTHERS: AtomicU64 = AtomicU64::new(0);
    let first = match usize::try_from(nr) {
        Ok(n) if n < 128 => {
            SEEN[n / 64].fetch_or(1 << (n % 64), Ordering::Relaxed) & (1 << (n % 64)) == 0
        }
        _ => OTHERS.fetch_add(1, Ordering::Relaxed) == 0,
    };
    if first {
        let name = xen_abi::hypercall::name(nr).unwrap_or("unknown");
        crate::debug!("d{domid}: hypercall {nr} ({name}) is not implemented: -ENOSYS");
    }
}

/// One multicall entry (struct multicall_entry).
#[repr(C)]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable, zerocopy::KnownLayout)]
struct MulticallEntry {
    op: u64,
    result: u64,
    args: [u64; 6],
}

/// Entries run per invocation before a continuation.
const MULTICALL_BATCH: u64 = 64;

/// Runs one multicall entry to completion and returns its result value.
fn run_entry(c: &mut Ctx<'_>, op: u64, mut args: [u64; 5]) -> u64 {
    use xen_abi::hypercall as nr;
    let handler = match op {
        nr::MULTICALL | nr::IRET => None,
        _ => usize::try_from(op)
            .ok()
            .and_then(|n| TABLE.get(n))
            .copied()
            .flatten(),
    };
    let Some(h) = handler else {
        let e = if op == nr::MULTICALL || op == nr::IRET {
            Errno::EINVAL
        } else {
            Errno::ENOSYS
        };
        return e.as_ret() as u64;
    };
    // Handlers report progress by rewriting argument registers; give them scratch ones and
    // re-run until the operation completes.
    let saved = *c.regs;
    let result = loop {
        c.regs.rdi = args[0];
        c.regs.rsi = args[1];
        c.regs.rdx = args[2];
        c.regs.r10 = args[3];
        c.regs.r8 = args[4];
        match (h.handler)(c, args) {
            Outcome::Done(Ok(v)) => break v,
            Outcome::Done(Err(e)) => break e.as_ret() as u64,
            Outcome::Continue => {
                let next = [c.regs.rdi, c.regs.rsi, c.regs.rdx, c.regs.r10, c.regs.r8];
                if next == args {
                    // No progress: it waits for another CPU (destroydomain), which cannot
                    // move while this one holds the domain lock. The caller retries.
                    break Errno::EAGAIN.as_ret() as u64;
                }
                args = next;
            }
            Outcome::NoReturn => break Errno::EINVAL.as_ret() as u64,
        }
    };
    *c.regs = saved;
    result
}

/// multicall(list, nr): runs each entry in order, storing each result in its entry.
pub fn multicall(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (list, count) = (a[0], a[1] & 0xffff_ffff);
    let size = core::mem::size_of::<MulticallEntry>() as u64;
    for i in 0..count {
        if i == MULTICALL_BATCH {
            c.regs.rdi = list + i * size;
            c.regs.rsi = count - i;
            return Outcome::Continue;
        }
        let at = list + i * size;
        let e: MulticallEntry = match c.mem().read_obj(at) {
            Ok(e) => e,
            Err(err) => return Err(err).into(),
        };
        let args = [e.args[0], e.args[1], e.args[2], e.args[3], e.args[4]];
        let result = run_entry(c, e.op, args);
        if let Err(err) = c.mem().write_obj(at + 8, &result) {
            return Err(err).into();
        }
        if c.dom.shutdown.is_some() {
            break;
        }
    }
    Ok(0).into()
}
