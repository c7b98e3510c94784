//! Test kernel `vcpu-context`: `XEN_DOMCTL_getvcpucontext` of a domU built
//! by dom0, before it runs and while it runs on the other CPU.
//!
//! Command line: none. Run on two CPUs (`cpus=2`): the domU (the script
//! interpreter of `domu_script`, with an empty script, so it spins at once)
//! gets a CPU of its own.
//!
//! Checked, with Xen 4.17's answers:
//! * Before the domU runs: the context reads back what setvcpucontext gave
//!   it: VGCF_online and VGCF_in_kernel, RIP = entry, RSP = stack top, RSI =
//!   start_info, CS 0xe033 and SS 0xe02b, IF set, IOPL 0, kernel SS/SP,
//!   CR3 = the L4 (CR1 0: no user root), no GDT, LDT, callbacks, trap table
//!   or VM assists.
//! * vCPU 1 of the one-vCPU domU: -EINVAL; a domain that does not exist:
//!   -ESRCH; dom0's own running vCPU 0: -EINVAL.
//! * While the domU spins on the other CPU (unpaused, FINISHED set): the
//!   context shows RIP inside the interpreter's code page, the same CR3 and
//!   selectors, IF set; the call returns at once (Xen pauses the vCPU for
//!   it) and the domU goes on running afterwards (getvcpuinfo online and not
//!   blocked, its running time still growing).
#![no_std]
#![no_main]

use xen_abi::layout::{VGCF_IN_KERNEL, VGCF_ONLINE};
use xen_abi::vcpu::VcpuGuestContext;
use xen_abi::Errno;
use xenolith_guests::builder::{map_foreign, TinyDomain, PFN_CODE, PFN_DATA, PFN_L4};
use xenolith_guests::domctl;
use xenolith_guests::domu_script::{self, finished, put_script};
use xenolith_guests::mm::{self, Mm};
use xenolith_guests::{check, check_eq, println, shared_info, test_main, vcpu};
use xenolith_guests::{Boot, Failures, Verdict};

test_main!(run);

const MS: u64 = 1_000_000;
/// mm window used to watch the domU's data page.
const WATCH: usize = 1;

/// Where the hypervisor writes the context.
static mut CTX: core::mem::MaybeUninit<VcpuGuestContext> = core::mem::MaybeUninit::zeroed();

/// XEN_DOMCTL_getvcpucontext into [`CTX`].
fn get(domid: u16, v: u32) -> Result<VcpuGuestContext, Errno> {
    let p = (&raw mut CTX) as u64;
    domctl::get_vcpu_context(domid, v, p)?;
    // SAFETY: CTX is only used here, on vCPU 0; the hypervisor filled it
    // (all-zero is also a valid context).
    Ok(unsafe { core::ptr::read((&raw const CTX).cast::<VcpuGuestContext>()) })
}

/// The checks both contexts pass: selectors, root, IF, and what was never
/// set.
fn common(t: &mut Failures, c: &VcpuGuestContext, d: &TinyDomain, when: &str) {
    let r = &c.user_regs;
    check_eq!(t, (r.cs, r.ss), (0xe033, 0xe02b), "CS, SS ({when})");
    check_eq!(t, r.rflags & (1 << 9), 1 << 9, "IF ({when})");
    check_eq!(t, r.rflags & (3 << 12), 0, "IOPL ({when})");
    check_eq!(
        t,
        (c.ctrlreg[3], c.ctrlreg[1]),
        (d.mfn(PFN_L4) << 12, 0),
        "CR3, CR1 ({when})"
    );
    check_eq!(
        t,
        c.flags & (VGCF_ONLINE | VGCF_IN_KERNEL),
        VGCF_ONLINE | VGCF_IN_KERNEL,
        "online, in kernel ({when})"
    );
    check_eq!(
        t,
        (
            c.gdt_ents,
            c.ldt_ents,
            c.event_callback_eip,
            c.failsafe_callback_eip
        ),
        (0, 0, 0, 0),
        "no GDT, LDT or callbacks ({when})"
    );
    check!(
        t,
        c.trap_ctxt.iter().all(|e| e.address == 0),
        "an empty trap table ({when})"
    );
    check_eq!(t, c.vm_assist, 0, "VM assists ({when})");
    check_eq!(
        t,
        (c.kernel_ss, c.kernel_sp),
        (0xe02b, TinyDomain::stack_top()),
        "kernel SS, SP ({when})"
    );
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    if shared_info::map(boot.start_info).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    let _mm = Mm::new(boot.start_info);
    let d = domu_script::new_domain(&mut t, "vcpu-context domU");
    d.fill(PFN_DATA, |p| put_script(p, &[]))
        .expect("writing the data page");

    match get(d.domid, 0) {
        Ok(c) => {
            let r = &c.user_regs;
            check_eq!(
                t,
                (r.rip, r.rsp, r.rsi),
                (
                    TinyDomain::entry_va(),
                    TinyDomain::stack_top(),
                    TinyDomain::start_info_va()
                ),
                "RIP, RSP, RSI before the domU runs"
            );
            common(&mut t, &c, &d, "before it runs");
        }
        Err(e) => {
            check!(t, false, "getvcpucontext before the domU runs: {e:?}");
        }
    }
    check_eq!(t, get(d.domid, 1).err(), Some(Errno::EINVAL), "vCPU 1");
    check_eq!(
        t,
        get(0x7000, 0).err(),
        Some(Errno::ESRCH),
        "a domain that does not exist"
    );
    check_eq!(
        t,
        get(0, 0).err(),
        Some(Errno::EINVAL),
        "dom0's own running vCPU"
    );

    check_eq!(t, domctl::unpause_domain(d.domid), Ok(0), "unpausedomain");
    let Ok(data) = map_foreign(WATCH, d.domid, d.mfn(PFN_DATA), false) else {
        xenolith_guests::error("cannot map the domU's data page");
    };
    let deadline = vcpu::now_ns() + 1000 * MS;
    while !finished(data) && vcpu::now_ns() < deadline {
        core::hint::spin_loop();
    }
    check!(t, finished(data), "the domU ran its (empty) script");
    let before = domctl::getvcpuinfo(d.domid, 0).map(|i| i.cpu_time);
    let start = vcpu::now_ns();
    match get(d.domid, 0) {
        Ok(c) => {
            let took = (vcpu::now_ns() - start) / MS;
            let code = TinyDomain::va(PFN_CODE);
            let rip = c.user_regs.rip;
            println!("running domU: rip {rip:#x}, call took {took} ms");
            check!(
                t,
                (code..code + 4096).contains(&rip),
                "RIP {rip:#x} inside the code page"
            );
            common(&mut t, &c, &d, "while it runs");
        }
        Err(e) => {
            check!(t, false, "getvcpucontext of the running domU: {e:?}");
        }
    }
    let spin_until = vcpu::now_ns() + 50 * MS;
    while vcpu::now_ns() < spin_until {
        core::hint::spin_loop();
    }
    match (before, domctl::getvcpuinfo(d.domid, 0)) {
        (Ok(b), Ok(i)) => {
            check_eq!(t, (i.online, i.blocked), (1, 0), "online, not blocked");
            check!(
                t,
                i.cpu_time > b + 20 * MS,
                "the domU kept running ({} -> {} ns)",
                b,
                i.cpu_time
            );
        }
        (b, i) => {
            check!(t, false, "getvcpuinfo: {b:?} {i:?}");
        }
    }
    mm::unmap_window(WATCH).expect("restoring the watch window");
    check_eq!(t, domctl::pause_domain(d.domid), Ok(0), "pausedomain");
    check_eq!(t, domctl::destroy_domain(d.domid), Ok(0), "destroydomain");
    t.verdict()
}
