//! Test kernel `sched-weight`: dom0 as a minimal toolstack builds a tiny PV
//! domU (createdomain, max_vcpus, max_mem, populate_physmap, foreign
//! mappings, setvcpucontext), gives it credit weight 512 against dom0's 256
//! and checks that it gets twice dom0's CPU time; then pauses and destroys it.
//!
//! Command line: none. Run with the hypervisor option `sched=credit` on one
//! CPU (dom0 and the domU share it).
//!
//! Checked, with Xen 4.17's answers:
//! * Before any domain exists: getdomaininfo of id 0x7000 (no domain with a
//!   larger id) -ESRCH, of 0x7ff0 -EINVAL; max_mem of 0x7000 -ESRCH;
//!   pausedomain and setvcpucontext of dom0 itself -EINVAL; unpausedomain of
//!   dom0 (controller pause count already 0) -EINVAL. createdomain (id
//!   0x100) with max_vcpus 0, grant_opts 0 (no grant version), an unknown
//!   CDF flag (bit 8), or HAP without HVM: -EINVAL; with emulation flags
//!   (LAPIC) for PV: -EOPNOTSUPP.
//! * createdomain with `domain` 0: 0, id 1 written back into `domain` (first
//!   free id after the rover), `flags` copied back with `CDF_oos_off` added.
//!   createdomain with id 1 again: -EEXIST.
//! * getdomaininfo of the new domain: echoes the id; flags = paused and
//!   bits 16-31 set (Xen shifts its "no shutdown code" ~0u into the
//!   shutdown-code field unmasked, for every domain not shut down);
//!   tot_pages 0, max_pages 0; no vCPU yet (nr_online 0, max_vcpu_id ~0);
//!   cpupool 0; a shared_info frame. getvcpuinfo(0) -ESRCH and
//!   setvcpucontext(0) -EINVAL before max_vcpus; max_vcpus 2 (not the
//!   createdomain count) -EINVAL, 1 -> 0; then max_vcpu_id 0, nr_online 0,
//!   getvcpuinfo(0) offline, not running, no time; getvcpuinfo(1) -EINVAL.
//! * populate_physmap of 8 pfns before max_mem: 0 extents done; after
//!   max_mem 256 KiB: 8 done, distinct MFNs written back, the M2P maps them
//!   to pfns 0-7; tot_pages 8, max_pages 64.
//! * mmu_update of a dom0 L1 entry to a domU frame with foreigndom =
//!   DOMID_SELF: -EBUSY (done 0); with foreigndom = the domU: 0 (writable,
//!   used to write every page, then unmapped).
//! * setvcpucontext(1): -EINVAL; setvcpucontext(0) while dom0 still maps the
//!   L1 table writable: -EINVAL (table cannot be typed), and so is pinning
//!   its L4 with foreigndom = the domU; after unmapping, pinning the L4 as
//!   dom0's own (foreigndom DOMID_SELF) -EINVAL, with foreigndom = the domU
//!   0 (as libxc's builder pins it); then setvcpucontext(0): 0,
//!   nr_online 1, flags unchanged. Now a writable foreign mapping of the L4
//!   is refused (-EBUSY), a read-only one shows the L3 in slot 0.
//! * scheduler_op credit getinfo of the domU: 256/0; putinfo 512/0; getinfo
//!   512/0; dom0 stays 256/0.
//! * unpausedomain: 0, a second one -EINVAL. The domU runs: its counter
//!   advances, it found the start_info magic at RSI = start_info VA, RSP =
//!   stack top, and read its L4 (the L3 in slot 0) through `pt_base`.
//! * Over 1.5 s of system time with both busy, the domU's running time
//!   (getvcpuinfo `cpu_time`) / dom0's (runstate) is 1.8-2.2 and together
//!   they cover at least 90 % of the window (Xen 4.17 under QEMU: dom0
//!   ~0.50 s, domU ~1.0 s of 1.51-1.53 s, ratio 1.98-2.05; weight 768 gives
//!   3.0). Then getdomaininfo flags are
//!   0xffff0000 (neither paused, blocked nor running: runnable) and
//!   getvcpuinfo says online, not running, CPU 0.
//! * pausedomain: 0, flags paused again, vCPU not running, counter stops.
//! * destroydomain while dom0 still maps the data page read-only: 0 at once
//!   (Xen continues internally; the guest never sees -ERESTART), but the
//!   domain stays as a zombie: getdomaininfo still finds it, flags dying |
//!   paused (| 0xffff0000), tot_pages 1. Once the mapping is dropped:
//!   getdomaininfo -ESRCH, destroydomain -ESRCH.
#![no_std]
#![no_main]

use core::arch::global_asm;

use xen_abi::mmu::{MmuUpdate, MmuextOp, MMUEXT_PIN_L4_TABLE, MMU_NORMAL_PT_UPDATE};
use xen_abi::types::DOMID_SELF;
use xen_abi::Errno;
use xenolith_guests::builder::{
    self, map_foreign, TinyDomain, NR_PFNS, PFN_DATA, PFN_L1, PFN_L3, PFN_L4,
};
use xenolith_guests::domctl::{
    self, pv_domain, ArchDomainConfig, CreateDomain, CDF_HAP, CDF_OOS_OFF, DOMINF_DYING,
    DOMINF_NO_SHUTDOWN_CODE, DOMINF_PAUSED, SCHEDOP_GETINFO, SCHEDOP_PUTINFO,
};
use xenolith_guests::mm::{self, Mm, KERNEL_RO};
use xenolith_guests::x86::PTE_ADDR_MASK;
use xenolith_guests::{check, check_eq, println, shared_info, smp, test_main, vcpu};
use xenolith_guests::{Boot, Failures, Verdict};

test_main!(run);

const MS: u64 = 1_000_000;
/// An id no domain has (and none above it).
const ABSENT: u16 = 0x7000;
/// The explicit id the refused createdomains ask for.
const SPARE: u16 = 0x100;
/// Window watching the domU's data page (read-only).
const WATCH: usize = 1;
/// getdomaininfo flags of a paused domain that has not shut down.
const PAUSED: u32 = DOMINF_PAUSED | DOMINF_NO_SHUTDOWN_CODE;
/// Window for probing mappings.
const PROBE: usize = 2;

// The domU's code, copied to the start of its code page (position
// independent). Data page words: 0 counter, 1 flag (1 = start_info magic
// found at RSI, 2 = not), 2 RSI at entry, 3 RSP at entry, 4 the L4 entry 0
// read through start_info.pt_base.
global_asm!(
    ".pushsection .text.domu, \"ax\", @progbits",
    ".balign 16",
    "xg_domu_start:",
    "lea rbx, [rip + xg_domu_start]",
    "add rbx, 4096",
    "mov [rbx + 16], rsi",
    "mov [rbx + 24], rsp",
    // "xen-3.0-x86_64\0"
    "movabs rax, 0x2d302e332d6e6578",
    "cmp [rsi], rax",
    "jne 2f",
    "cmp dword ptr [rsi + 8], 0x5f363878",
    "jne 2f",
    "cmp word ptr [rsi + 12], 0x3436",
    "jne 2f",
    "cmp byte ptr [rsi + 14], 0",
    "jne 2f",
    "mov rax, [rsi + 0x58]",
    "mov rax, [rax]",
    "mov [rbx + 32], rax",
    "mov qword ptr [rbx + 8], 1",
    "jmp 3f",
    "2:",
    "mov qword ptr [rbx + 8], 2",
    "3:",
    "call 4f",
    "jmp 3b",
    "4:",
    "inc qword ptr [rbx]",
    "ret",
    "xg_domu_end:",
    ".popsection",
);

extern "C" {
    static xg_domu_start: u8;
    static xg_domu_end: u8;
}

fn domu_code() -> &'static [u8] {
    let start = (&raw const xg_domu_start) as usize;
    let end = (&raw const xg_domu_end) as usize;
    // SAFETY: the two labels delimit the assembled bytes in .text, mapped
    // read-only for the kernel's life.
    unsafe { core::slice::from_raw_parts(start as *const u8, end - start) }
}

const COUNTER: usize = 0;
const FLAG: usize = 1;
const SEEN_RSI: usize = 2;
const SEEN_RSP: usize = 3;
const SEEN_L4E: usize = 4;

/// Word `i` of the page mapped at `va`.
fn word(va: u64, i: usize) -> u64 {
    // SAFETY: `va` is a window mapping a whole page; `i` < 512.
    unsafe { (va as *const u64).add(i).read_volatile() }
}

fn spin_ms(ms: u64) {
    vcpu::spin_until(vcpu::now_ns() + ms * MS);
}

/// dom0's own running time (ns).
fn dom0_running() -> u64 {
    vcpu::get_runstate_info(0).map_or(0, |r| r.time[0])
}

fn domu_running(domid: u16) -> u64 {
    domctl::getvcpuinfo(domid, 0).map_or(0, |v| v.cpu_time)
}

fn create_refused(t: &mut Failures, what: &str, edit: impl FnOnce(&mut CreateDomain)) {
    let mut cfg = pv_domain(1);
    edit(&mut cfg);
    check_eq!(
        t,
        domctl::create_domain(SPARE, &cfg).map(|r| r.0),
        Err(Errno::EINVAL),
        "createdomain with {what}"
    );
}

/// Errors that need no domU.
fn errors_before(t: &mut Failures) {
    check_eq!(
        t,
        domctl::getdomaininfo(ABSENT).map(|r| r.0),
        Err(Errno::ESRCH),
        "getdomaininfo of {ABSENT:#x}"
    );
    check_eq!(
        t,
        domctl::getdomaininfo(domctl::DOMID_FIRST_RESERVED).map(|r| r.0),
        Err(Errno::EINVAL),
        "getdomaininfo of 0x7ff0"
    );
    check_eq!(
        t,
        domctl::max_mem(ABSENT, 1024),
        Err(Errno::ESRCH),
        "max_mem of {ABSENT:#x}"
    );
    check_eq!(
        t,
        domctl::pause_domain(0),
        Err(Errno::EINVAL),
        "pausedomain of dom0"
    );
    check_eq!(
        t,
        domctl::unpause_domain(0),
        Err(Errno::EINVAL),
        "unpausedomain of dom0"
    );
    let ctx = smp::build_context(0, 0, mm::current_l4(), |_| {});
    check_eq!(
        t,
        domctl::set_vcpu_context(0, 0, ctx),
        Err(Errno::EINVAL),
        "setvcpucontext of dom0"
    );
    create_refused(t, "max_vcpus 0", |c| c.max_vcpus = 0);
    create_refused(t, "grant_opts 0", |c| c.grant_opts = 0);
    create_refused(t, "CDF bit 8", |c| c.flags = 1 << 8);
    create_refused(t, "HAP without HVM", |c| c.flags = CDF_HAP);
    check_eq!(
        t,
        domctl::create_domain(
            SPARE,
            &CreateDomain {
                arch: ArchDomainConfig {
                    emulation_flags: 1,
                    misc_flags: 0,
                },
                ..pv_domain(1)
            }
        )
        .map(|r| r.0),
        Err(Errno::EOPNOTSUPP),
        "createdomain of PV with emulation flags (LAPIC)"
    );
}

/// Creates the domU and gives it its vCPU and memory; returns its id and
/// the populated MFNs.
fn create(t: &mut Failures) -> (u16, [u64; NR_PFNS]) {
    let cfg = pv_domain(1);
    let (domid, back) = match domctl::create_domain(0, &cfg) {
        Ok(r) => r,
        Err(e) => {
            println!("createdomain: {e:?}");
            xenolith_guests::error("cannot create a domain");
        }
    };
    println!("created domain {domid}");
    check_eq!(t, domid, 1, "id picked by createdomain");
    check_eq!(t, back.flags, CDF_OOS_OFF, "createdomain flags copied back");
    check_eq!(
        t,
        domctl::create_domain(domid, &cfg).map(|r| r.0),
        Err(Errno::EEXIST),
        "createdomain of an existing id"
    );

    match domctl::getdomaininfo(domid) {
        Ok((echo, i)) => {
            check_eq!(t, echo, domid, "getdomaininfo: domctl.domain");
            check_eq!(t, i.domain, domid, "getdomaininfo: domain");
            check_eq!(t, i.flags, PAUSED, "getdomaininfo: flags at creation");
            check_eq!(t, i.tot_pages, 0, "tot_pages at creation");
            check_eq!(t, i.max_pages, 0, "max_pages at creation");
            check_eq!(t, i.nr_online_vcpus, 0, "nr_online_vcpus at creation");
            check_eq!(t, i.max_vcpu_id, u32::MAX, "max_vcpu_id at creation");
            check_eq!(t, i.cpupool, 0, "cpupool");
            check!(t, i.shared_info_frame != 0, "no shared_info frame");
            println!(
                "shared_info frame {:#x}, gpaddr_bits {}",
                i.shared_info_frame, i.gpaddr_bits
            );
        }
        Err(e) => {
            check!(t, false, "getdomaininfo of the new domain: {e:?}");
        }
    }
    check_eq!(
        t,
        domctl::getvcpuinfo(domid, 0).map(|v| v.online),
        Err(Errno::ESRCH),
        "getvcpuinfo(0) before max_vcpus"
    );
    let ctx = smp::build_context(0, 0, 0, |_| {});
    check_eq!(
        t,
        domctl::set_vcpu_context(domid, 0, ctx),
        Err(Errno::EINVAL),
        "setvcpucontext(0) before max_vcpus"
    );
    check_eq!(
        t,
        domctl::max_vcpus(domid, 2),
        Err(Errno::EINVAL),
        "max_vcpus 2"
    );
    check_eq!(t, domctl::max_vcpus(domid, 1), Ok(0), "max_vcpus 1");
    if let Ok((_, i)) = domctl::getdomaininfo(domid) {
        check_eq!(t, i.max_vcpu_id, 0, "max_vcpu_id after max_vcpus");
        check_eq!(t, i.nr_online_vcpus, 0, "nr_online_vcpus after max_vcpus");
        check_eq!(t, i.flags, PAUSED, "flags after max_vcpus");
    }
    match domctl::getvcpuinfo(domid, 0) {
        Ok(v) => {
            check_eq!(
                t,
                (v.vcpu, v.online, v.running, v.cpu_time),
                (0, 0, 0, 0),
                "getvcpuinfo(0) after max_vcpus (vcpu, online, running, cpu_time)"
            );
        }
        Err(e) => {
            check!(t, false, "getvcpuinfo(0): {e:?}");
        }
    }
    check_eq!(
        t,
        domctl::getvcpuinfo(domid, 1).map(|v| v.online),
        Err(Errno::EINVAL),
        "getvcpuinfo(1)"
    );

    let mut mfns = [0u64; NR_PFNS];
    let mut gpfns: [u64; NR_PFNS] = core::array::from_fn(|i| i as u64);
    check_eq!(
        t,
        builder::populate_physmap(domid, &mut gpfns),
        Ok(0),
        "populate_physmap before max_mem"
    );
    check_eq!(t, domctl::max_mem(domid, 256), Ok(0), "max_mem 256 KiB");
    for (i, g) in mfns.iter_mut().enumerate() {
        *g = i as u64;
    }
    if !check_eq!(
        t,
        builder::populate_physmap(domid, &mut mfns),
        Ok(NR_PFNS as u64),
        "populate_physmap of 8 pfns"
    ) {
        xenolith_guests::error("the domU has no memory");
    }
    println!("domU mfns {mfns:#x?}");
    for (pfn, &mfn) in mfns.iter().enumerate() {
        check_eq!(t, mm::m2p(mfn), Some(pfn as u64), "M2P of mfn {mfn:#x}");
        check!(
            t,
            mfns[..pfn].iter().all(|&m| m != mfn),
            "mfn {mfn:#x} written back twice"
        );
    }
    if let Ok((_, i)) = domctl::getdomaininfo(domid) {
        check_eq!(
            t,
            (i.tot_pages, i.max_pages),
            (8, 64),
            "tot_pages, max_pages after populate"
        );
    }
    (domid, mfns)
}

/// Builds the domU's pages and gives vCPU 0 its context.
fn build(t: &mut Failures, domid: u16, mfns: [u64; NR_PFNS]) -> TinyDomain {
    let si_frame = match domctl::getdomaininfo(domid) {
        Ok((_, i)) => i.shared_info_frame,
        Err(_) => xenolith_guests::error("getdomaininfo of the domU failed"),
    };
    // A domU frame mapped as if it were dom0's.
    let maddr = mm::l1e_maddr(mm::window_va(PROBE)).expect("window L1 entry");
    let req = [MmuUpdate {
        ptr: maddr | MMU_NORMAL_PT_UPDATE,
        val: (mfns[PFN_DATA] << 12) | KERNEL_RO,
    }];
    let (r, done) = mm::mmu_update_done(&req, DOMID_SELF);
    check_eq!(
        t,
        (r, done),
        (Err(Errno::EBUSY), 0),
        "mapping a domU frame with foreigndom DOMID_SELF (result, done)"
    );
    mm::unmap_window(PROBE).expect("restoring the probe window");

    let code = domu_code();
    println!("domU code: {} bytes", code.len());
    let d = match TinyDomain::build(domid, mfns, code, si_frame, "sched-weight domU") {
        Ok(d) => d,
        Err(e) => {
            println!("building the domU: {e:?}");
            xenolith_guests::error("cannot write the domU's pages");
        }
    };
    check_eq!(t, d.set_context(1), Err(Errno::EINVAL), "setvcpucontext(1)");
    // While dom0 maps the L1 writable, Xen cannot type it as a table.
    match map_foreign(PROBE, domid, d.mfn(PFN_L1), true) {
        Ok(_) => {
            check_eq!(
                t,
                d.set_context(0),
                Err(Errno::EINVAL),
                "setvcpucontext(0) with the L1 mapped writable by dom0"
            );
            check_eq!(
                t,
                pin_l4(&d, domid),
                Err(Errno::EINVAL),
                "pinning the domU's L4 with its L1 mapped writable by dom0"
            );
        }
        Err(e) => {
            check!(t, false, "writable foreign mapping of the L1: {e:?}");
        }
    }
    mm::unmap_window(PROBE).expect("restoring the probe window");
    // As libxc's builder: the root is pinned on the domU's behalf first.
    check_eq!(
        t,
        pin_l4(&d, DOMID_SELF),
        Err(Errno::EINVAL),
        "pinning the domU's L4 as dom0's own"
    );
    check_eq!(
        t,
        pin_l4(&d, domid),
        Ok(0),
        "pinning the domU's L4 with foreigndom"
    );
    if !check_eq!(t, d.set_context(0), Ok(0), "setvcpucontext(0)") {
        xenolith_guests::error("the domU has no vCPU context");
    }
    if let Ok((_, i)) = domctl::getdomaininfo(domid) {
        check_eq!(
            t,
            i.nr_online_vcpus,
            1,
            "nr_online_vcpus after setvcpucontext"
        );
        check_eq!(t, i.flags, PAUSED, "flags after setvcpucontext");
    }
    if let Ok(v) = domctl::getvcpuinfo(domid, 0) {
        check_eq!(
            t,
            (v.online, v.running),
            (1, 0),
            "getvcpuinfo(0) after setvcpucontext (online, running)"
        );
    }
    check_eq!(
        t,
        map_foreign(PROBE, domid, d.mfn(PFN_L4), true).map(|_| ()),
        Err(Errno::EBUSY),
        "writable foreign mapping of the domU's L4"
    );
    match map_foreign(PROBE, domid, d.mfn(PFN_L4), false) {
        Ok(va) => {
            check_eq!(
                t,
                word(va, 0) & PTE_ADDR_MASK,
                d.mfn(PFN_L3) << 12,
                "domU L4 slot 0"
            );
        }
        Err(e) => {
            check!(t, false, "read-only foreign mapping of the L4: {e:?}");
        }
    }
    mm::unmap_window(PROBE).expect("restoring the probe window");
    d
}

fn sched(t: &mut Failures, domid: u16) {
    check_eq!(
        t,
        domctl::sched_credit(domid, SCHEDOP_GETINFO, 0, 0),
        Ok((256, 0)),
        "credit getinfo of the domU"
    );
    check_eq!(
        t,
        domctl::sched_credit(domid, SCHEDOP_PUTINFO, 512, 0),
        Ok((512, 0)),
        "credit putinfo 512 for the domU"
    );
    check_eq!(
        t,
        domctl::sched_credit(domid, SCHEDOP_GETINFO, 0, 0),
        Ok((512, 0)),
        "credit getinfo of the domU after putinfo"
    );
    check_eq!(
        t,
        domctl::sched_credit(0, SCHEDOP_GETINFO, 0, 0),
        Ok((256, 0)),
        "credit getinfo of dom0"
    );
}

/// Runs the domU against dom0 and measures their shares.
fn measure(t: &mut Failures, d: &TinyDomain) {
    let domid = d.domid;
    check_eq!(t, domctl::unpause_domain(domid), Ok(0), "unpausedomain");
    check_eq!(
        t,
        domctl::unpause_domain(domid),
        Err(Errno::EINVAL),
        "second unpausedomain"
    );
    let data = match map_foreign(WATCH, domid, d.mfn(PFN_DATA), false) {
        Ok(va) => va,
        Err(e) => {
            println!("mapping the data page: {e:?}");
            xenolith_guests::error("cannot watch the domU");
        }
    };
    let deadline = vcpu::now_ns() + 500 * MS;
    while word(data, COUNTER) == 0 && vcpu::now_ns() < deadline {
        core::hint::spin_loop();
    }
    if !check!(
        t,
        word(data, COUNTER) != 0,
        "the domU's counter did not move"
    ) {
        return;
    }
    check_eq!(t, word(data, FLAG), 1, "domU start_info magic flag");
    check_eq!(
        t,
        word(data, SEEN_RSI),
        TinyDomain::start_info_va(),
        "domU RSI at entry"
    );
    check_eq!(
        t,
        word(data, SEEN_RSP),
        TinyDomain::stack_top(),
        "domU RSP at entry"
    );
    check_eq!(
        t,
        word(data, SEEN_L4E) & PTE_ADDR_MASK,
        d.mfn(PFN_L3) << 12,
        "L4 slot 0 as the domU reads it"
    );

    // Let the credit accounting settle, then measure.
    spin_ms(100);
    let (w0, r0, u0, k0) = (
        vcpu::now_ns(),
        dom0_running(),
        domu_running(domid),
        word(data, COUNTER),
    );
    let span = 1500 * MS;
    vcpu::spin_until(w0 + span);
    let (w1, r1, u1, k1) = (
        vcpu::now_ns(),
        dom0_running(),
        domu_running(domid),
        word(data, COUNTER),
    );
    let window = w1 - w0;
    let dom0 = r1 - r0;
    let domu = u1 - u0;
    let permille = domu * 1000 / dom0.max(1);
    println!(
        "window {} ms: dom0 ran {} ms, domU ran {} ms, ratio {}.{:03}, counter +{}",
        window / MS,
        dom0 / MS,
        domu / MS,
        permille / 1000,
        permille % 1000,
        k1 - k0
    );
    check!(
        t,
        k1 > k0,
        "the domU's counter did not advance in the window"
    );
    check!(
        t,
        (1800..=2200).contains(&permille),
        "domU/dom0 running time {}.{:03}, expected 1.8-2.2",
        permille / 1000,
        permille % 1000
    );
    check!(
        t,
        (dom0 + domu) * 10 >= window * 9,
        "dom0 + domU ran {} ms of {} ms",
        (dom0 + domu) / MS,
        window / MS
    );
    if let Ok((_, i)) = domctl::getdomaininfo(domid) {
        check_eq!(
            t,
            i.flags,
            DOMINF_NO_SHUTDOWN_CODE,
            "flags of the runnable domU while dom0 runs"
        );
    }
    if let Ok(v) = domctl::getvcpuinfo(domid, 0) {
        check_eq!(
            t,
            (v.online, v.running, v.cpu),
            (1, 0, 0),
            "getvcpuinfo(0) while dom0 runs (online, running, cpu)"
        );
    }
}

/// Pauses and destroys the domU, `WATCH` still mapping its data page.
fn destroy(t: &mut Failures, domid: u16) {
    check_eq!(t, domctl::pause_domain(domid), Ok(0), "pausedomain");
    let data = mm::window_va(WATCH);
    let k0 = word(data, COUNTER);
    spin_ms(20);
    check_eq!(t, word(data, COUNTER), k0, "counter while paused");
    if let Ok((_, i)) = domctl::getdomaininfo(domid) {
        check_eq!(t, i.flags, PAUSED, "flags after pausedomain");
    }
    if let Ok(v) = domctl::getvcpuinfo(domid, 0) {
        check_eq!(t, v.running, 0, "vCPU running after pausedomain");
    }
    let mut calls = 0;
    let r = loop {
        calls += 1;
        match domctl::destroy_domain(domid) {
            Err(Errno::ERESTART | Errno::EAGAIN) if calls < 100 => {}
            r => break r,
        }
    };
    println!("destroydomain: {r:?} after {calls} call(s)");
    check_eq!(t, (r, calls), (Ok(0), 1), "destroydomain (result, calls)");
    match domctl::getdomaininfo(domid) {
        Ok((echo, i)) => {
            println!(
                "after destroy, mapping held: domain {echo}, flags {:#x}, tot_pages {}",
                i.flags, i.tot_pages
            );
            check_eq!(
                t,
                (echo, i.flags, i.tot_pages),
                (domid, DOMINF_DYING | PAUSED, 1),
                "zombie domain (id, flags, tot_pages)"
            );
        }
        Err(e) => {
            check!(t, false, "getdomaininfo with a page still mapped: {e:?}");
        }
    }
    mm::unmap_window(WATCH).expect("restoring the watch window");
    check_eq!(
        t,
        domctl::getdomaininfo(domid).map(|r| r.0),
        Err(Errno::ESRCH),
        "getdomaininfo after destroy and unmap"
    );
    check_eq!(
        t,
        domctl::destroy_domain(domid),
        Err(Errno::ESRCH),
        "destroydomain of a gone domain"
    );
    check_eq!(
        t,
        domctl::sched_credit(0, SCHEDOP_GETINFO, 0, 0),
        Ok((256, 0)),
        "credit getinfo of dom0 at the end"
    );
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    if shared_info::map(boot.start_info).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    let _mm = Mm::new(boot.start_info);
    if let Err(e) = domctl::sched_credit(0, SCHEDOP_GETINFO, 0, 0) {
        println!("credit getinfo of dom0: {e:?}; is sched=credit given?");
        return Verdict::Failure;
    }
    errors_before(&mut t);
    let (domid, mfns) = create(&mut t);
    let d = build(&mut t, domid, mfns);
    sched(&mut t, domid);
    measure(&mut t, &d);
    destroy(&mut t, domid);
    t.verdict()
}

/// MMUEXT_PIN_L4_TABLE of the domU's L4 with `foreigndom`.
fn pin_l4(d: &TinyDomain, foreigndom: u16) -> Result<u64, Errno> {
    let op = MmuextOp {
        cmd: MMUEXT_PIN_L4_TABLE,
        pad: 0,
        arg1: d.mfn(PFN_L4),
        arg2: 0,
    };
    mm::mmuext_done(&[op], foreigndom).0
}
