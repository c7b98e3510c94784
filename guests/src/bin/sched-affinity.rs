//! Test kernel `sched-affinity`: a vCPU's hard affinity through
//! `XEN_DOMCTL_setvcpuaffinity` / `getvcpuaffinity`, and that it really moves
//! the vCPU between CPUs.
//!
//! Command line: none. Run on two CPUs with two dom0 vCPUs and the credit
//! scheduler (`hv:dom0_max_vcpus=2 hv:sched=credit cpus=2`). vCPU 1 is never
//! brought up.
//!
//! Checked, with Xen 4.17's answers (8-bit CPU maps, two CPUs):
//! * getvcpuaffinity of vCPU 0: hard 0x03 (every CPU), soft 0x03.
//! * setvcpuaffinity hard {1}: 0, the effective map 0x02 written back; once
//!   the vCPU has yielded it runs on CPU 1 (getvcpuinfo: running, cpu 1);
//!   hard {0}: back on CPU 0; the map reads back as set.
//! * hard {0, 1, 5}: effective map 0x03 (CPU 5 does not exist); get reads
//!   0x03.
//! * vCPU 1 (down): setvcpuaffinity hard {1}: 0; get reads 0x02.
//! * Errors: an empty map, a map of only CPU 5, flags 0, a NULL hard map,
//!   vCPU 2 (past max_vcpus): -EINVAL; a domain that does not exist: -ESRCH.
#![no_std]
#![no_main]

use xen_abi::domctl::{XEN_VCPUAFFINITY_HARD, XEN_VCPUAFFINITY_SOFT};
use xen_abi::Errno;
use xenolith_guests::domctl::{getvcpuinfo, vcpu_affinity};
use xenolith_guests::hypercall::sched_yield;
use xenolith_guests::{check_eq, println, test_main};
use xenolith_guests::{Boot, Failures, Verdict};

test_main!(run);

const DOM0: u16 = 0;
const HARD: u32 = XEN_VCPUAFFINITY_HARD;

/// Sets vCPU `v`'s hard affinity to `map` (8 bits); returns the result and
/// the map as written back.
fn set_hard(v: u32, map: u8) -> (Result<u64, Errno>, u8) {
    let mut b = [map];
    let r = vcpu_affinity(true, DOM0, v, HARD, Some(&mut b), None, 8);
    (r, b[0])
}

/// vCPU `v`'s hard and soft maps (8 bits each).
fn get_maps(v: u32) -> (Result<u64, Errno>, u8, u8) {
    let (mut h, mut s) = ([0xeeu8], [0xeeu8]);
    let r = vcpu_affinity(
        false,
        DOM0,
        v,
        HARD | XEN_VCPUAFFINITY_SOFT,
        Some(&mut h),
        Some(&mut s),
        8,
    );
    (r, h[0], s[0])
}

/// Where vCPU 0 (the caller) runs after yielding a few times.
fn my_cpu() -> Option<(u8, u32)> {
    for _ in 0..4 {
        let _ = sched_yield();
    }
    getvcpuinfo(DOM0, 0).ok().map(|i| (i.running, i.cpu))
}

fn run(_boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    check_eq!(t, get_maps(0), (Ok(0), 0x03, 0x03), "vCPU 0's default maps");

    check_eq!(t, set_hard(0, 0x02), (Ok(0), 0x02), "hard affinity CPU 1");
    let on1 = my_cpu();
    println!("pinned to CPU 1: running, cpu = {on1:?}");
    check_eq!(t, on1, Some((1, 1)), "vCPU 0 runs on CPU 1");
    check_eq!(t, get_maps(0), (Ok(0), 0x02, 0x03), "maps after CPU 1");

    check_eq!(t, set_hard(0, 0x01), (Ok(0), 0x01), "hard affinity CPU 0");
    let on0 = my_cpu();
    println!("pinned to CPU 0: running, cpu = {on0:?}");
    check_eq!(t, on0, Some((1, 0)), "vCPU 0 runs on CPU 0");

    check_eq!(
        t,
        set_hard(0, 0x23),
        (Ok(0), 0x03),
        "hard affinity CPUs 0, 1, 5: the effective map"
    );
    check_eq!(
        t,
        get_maps(0),
        (Ok(0), 0x03, 0x03),
        "maps after CPUs 0, 1, 5"
    );

    check_eq!(
        t,
        set_hard(1, 0x02),
        (Ok(0), 0x02),
        "vCPU 1 (down) to CPU 1"
    );
    check_eq!(t, get_maps(1), (Ok(0), 0x02, 0x03), "vCPU 1's maps");

    check_eq!(t, set_hard(0, 0).0, Err(Errno::EINVAL), "an empty map");
    check_eq!(t, set_hard(0, 0x20).0, Err(Errno::EINVAL), "only CPU 5");
    let mut b = [0x01u8];
    check_eq!(
        t,
        vcpu_affinity(true, DOM0, 0, 0, Some(&mut b), None, 8),
        Err(Errno::EINVAL),
        "flags 0"
    );
    check_eq!(
        t,
        vcpu_affinity(true, DOM0, 0, HARD, None, None, 8),
        Err(Errno::EINVAL),
        "a NULL hard map"
    );
    check_eq!(t, set_hard(2, 0x01).0, Err(Errno::EINVAL), "vCPU 2");
    check_eq!(
        t,
        vcpu_affinity(true, 0x7000, 0, HARD, Some(&mut b), None, 8),
        Err(Errno::ESRCH),
        "a domain that does not exist"
    );
    // The vCPU still runs where its (restored) affinity lets it.
    check_eq!(
        t,
        set_hard(0, 0x03),
        (Ok(0), 0x03),
        "hard affinity CPUs 0, 1"
    );
    t.verdict()
}
