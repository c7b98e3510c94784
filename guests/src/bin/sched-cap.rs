//! Test kernel `sched-cap`: the credit scheduler's per-domain weight and cap
//! through `XEN_DOMCTL_scheduler_op`, and a cap that really limits CPU time.
//!
//! Command line: none. Run with the hypervisor option `sched=credit` (Xen
//! 4.17's default is credit2; Xenolith has only credit) on one CPU.
//!
//! Checked, with Xen 4.17's answers:
//! * getinfo: dom0 starts with weight 256 and no cap (0).
//! * putinfo: weight 512 with cap 0xffff (unchanged) -> 512/0; weight 0
//!   (unchanged) with cap 50 -> 512/50.
//! * Errors: another scheduler id -EINVAL, putvcpuinfo -EINVAL, a wrong
//!   interface version -EACCES, a domain that does not exist -ESRCH.
//! * With cap 50, a busy vCPU gets 40-60 % of 1.5 s of system time as
//!   running time (runstate); with the cap removed, over 90 %.
#![no_std]
#![no_main]

use xen_abi::Errno;
use xenolith_guests::hypercall::result;
use xenolith_guests::{check, check_eq, hypercall, println, shared_info, test_main, vcpu};
use xenolith_guests::{Boot, Failures, Verdict};

test_main!(run);

const MS: u64 = 1_000_000;
const SCHEDULER_CREDIT: u32 = 5;
const SCHEDULER_CREDIT2: u32 = 6;
const PUTINFO: u32 = 0;
const GETINFO: u32 = 1;
const PUTVCPUINFO: u32 = 2;

/// `struct xen_domctl` (public/domctl.h, interface version 0x15) with the
/// `scheduler_op` member (credit parameters) of its 128-byte union.
#[repr(C)]
struct DomctlSched {
    cmd: u32,
    interface_version: u32,
    domain: u16,
    pad: [u16; 3],
    sched_id: u32,
    op: u32,
    weight: u16,
    cap: u16,
    rest: [u32; 29],
}

fn sched_op(
    version: u32,
    domain: u16,
    sched_id: u32,
    op: u32,
    w: u16,
    c: u16,
) -> Result<(u16, u16), Errno> {
    let mut d = DomctlSched {
        cmd: 16,
        interface_version: version,
        domain,
        pad: [0; 3],
        sched_id,
        op,
        weight: w,
        cap: c,
        rest: [0; 29],
    };
    // SAFETY: the hypervisor reads and writes back the 144-byte structure.
    result(unsafe {
        hypercall::call(
            xen_abi::hypercall::DOMCTL,
            [(&raw mut d) as u64, 0, 0, 0, 0],
        )
    })?;
    Ok((d.weight, d.cap))
}

fn getinfo() -> Result<(u16, u16), Errno> {
    sched_op(0x15, 0, SCHEDULER_CREDIT, GETINFO, 0, 0)
}

fn putinfo(w: u16, c: u16) -> Result<(u16, u16), Errno> {
    sched_op(0x15, 0, SCHEDULER_CREDIT, PUTINFO, w, c).map(|_| (w, c))
}

/// Busy for `ns` of system time; returns the running time the runstate
/// accounted meanwhile.
fn busy(ns: u64) -> u64 {
    let r0 = vcpu::get_runstate_info(0).map_or(0, |r| r.time[0]);
    let end = vcpu::now_ns() + ns;
    while vcpu::now_ns() < end {
        core::hint::spin_loop();
    }
    let r1 = vcpu::get_runstate_info(0).map_or(0, |r| r.time[0]);
    r1 - r0
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    if shared_info::map(boot.start_info).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    match getinfo() {
        Ok(v) => {
            check_eq!(t, v, (256, 0), "getinfo at boot (weight, cap)");
        }
        Err(Errno::EINVAL) => {
            println!("the domain's scheduler is not credit; is sched=credit given?");
            return Verdict::Failure;
        }
        Err(e) => {
            check!(t, false, "getinfo: {e:?}");
        }
    }
    check_eq!(
        t,
        putinfo(512, 0xffff).map(|_| ()),
        Ok(()),
        "putinfo weight 512"
    );
    check_eq!(t, getinfo(), Ok((512, 0)), "getinfo after weight 512");
    check_eq!(t, putinfo(0, 50).map(|_| ()), Ok(()), "putinfo cap 50");
    check_eq!(t, getinfo(), Ok((512, 50)), "getinfo after cap 50");
    check_eq!(
        t,
        sched_op(0x15, 0, SCHEDULER_CREDIT2, GETINFO, 0, 0),
        Err(Errno::EINVAL),
        "getinfo for credit2"
    );
    check_eq!(
        t,
        sched_op(0x15, 0, SCHEDULER_CREDIT, PUTVCPUINFO, 0, 0),
        Err(Errno::EINVAL),
        "putvcpuinfo"
    );
    check_eq!(
        t,
        sched_op(0x14, 0, SCHEDULER_CREDIT, GETINFO, 0, 0),
        Err(Errno::EACCES),
        "interface version 0x14"
    );
    check_eq!(
        t,
        sched_op(0x15, 7, SCHEDULER_CREDIT, GETINFO, 0, 0),
        Err(Errno::ESRCH),
        "getinfo of domain 7"
    );

    // Let the cap settle over an accounting period or two, then measure.
    busy(100 * MS);
    let span = 1500 * MS;
    let ran = busy(span);
    println!("cap 50: ran {} ms of {} ms", ran / MS, span / MS);
    check!(
        t,
        ran >= span * 40 / 100 && ran <= span * 60 / 100,
        "with cap 50 the vCPU ran {} ms of {} ms",
        ran / MS,
        span / MS
    );
    check_eq!(t, putinfo(0, 0).map(|_| ()), Ok(()), "putinfo cap 0");
    busy(100 * MS);
    let ran = busy(span);
    println!("no cap: ran {} ms of {} ms", ran / MS, span / MS);
    check!(
        t,
        ran >= span * 90 / 100,
        "without a cap the vCPU ran {} ms of {} ms",
        ran / MS,
        span / MS
    );
    check_eq!(
        t,
        putinfo(256, 0xffff).map(|_| ()),
        Ok(()),
        "putinfo weight 256"
    );
    t.verdict()
}
