//! Bench kernel `bench-hypercall`: null hypercall, 32-call multicall, 512-PTE mmu_update, update_va_mapping.
//!
//! Command line: none needed (ignored). Prints `bench <name> <iterations>
//! <total_cycles>` for each path (see `xenolith_guests::bench`) and checks
//! every result:
//!
//! * `null-hypercall`: `xen_version(XENVER_version)` through the hypercall
//!   page; every call must return 4.17.
//! * `multicall-32`: one `multicall` of 32 `xen_version(XENVER_version)`
//!   entries; it must return 0 and every entry's result must be 4.17.
//! * `mmu-update-512`: one `mmu_update` of all 512 entries of a pinned L1
//!   (hooked into the kernel tables), each a read-write mapping; every call
//!   repoints each entry to the other of two data frames, so every update
//!   drops one reference and takes another. Each call must return 0 with
//!   `done` = 512; afterwards the L1 holds the last values and all 512 pages
//!   read back as the expected frame.
//! * `update-va-mapping-invlpg`: `update_va_mapping(va, pte, UVMF_INVLPG)`
//!   alternating a page between the two frames; after every call a read of
//!   the page must show the new frame (the stale TLB entry was flushed).
#![no_std]
#![no_main]

use xen_abi::hypercall as nr;
use xen_abi::mmu::{MmuUpdate, MMU_NORMAL_PT_UPDATE, UVMF_INVLPG};
use xen_abi::multicall::MulticallEntry;
use xen_abi::types::DOMID_SELF;
use xen_abi::version::XENVER_VERSION;
use xenolith_guests::mm::{self, entry_maddr, fill_page, read_entry, Mm, KERNEL_RW};
use xenolith_guests::traps::probe_read_u64;
use xenolith_guests::x86::PTE_ADDR_MASK;
use xenolith_guests::{bench, check, check_eq, hypercall, println, test_main, Boot, Failures};
use xenolith_guests::{error, Verdict};

test_main!(run);

/// What `xen_version(XENVER_version)` returns on a 4.17 interface.
const XEN_4_17: u64 = (4 << 16) | 17;
/// Where the benched L1 maps its 512 pages (an unused L4 slot of the lower half).
const VA_BATCH: u64 = 0x0000_4000_0000_0000;
/// First words of the two data frames.
const PATTERN: [u64; 2] = [0x5858_5858_0000_0000, 0x5959_5959_0000_0001];

fn run(b: &Boot) -> Verdict {
    let mut t = Failures::new();
    null_hypercall(&mut t);
    multicall(&mut t);
    let mut mm = Mm::new(b.start_info);
    let data = [mm.alloc(), mm.alloc()];
    for (f, p) in data.iter().zip(PATTERN) {
        let r = fill_page(f.mfn, |page| {
            page.fill(p);
        });
        if r.is_err() {
            error("cannot fill the data frames");
        }
    }
    let mfns = [data[0].mfn, data[1].mfn];
    let l1 = match mm::map_va(&mut mm, VA_BATCH, (mfns[0] << 12) | KERNEL_RW) {
        Ok(l1) => l1,
        Err(e) => {
            println!("ERROR: map_va({VA_BATCH:#x}): {e:?}");
            error("cannot build page tables for the batch region");
        }
    };
    mmu_update_batch(&mut t, l1, mfns);
    update_va_mapping(&mut t, mfns);
    t.verdict()
}

fn null_hypercall(t: &mut Failures) {
    let mut bad = 0u64;
    let mut last = 0i64;
    let m = bench::measure("null-hypercall", 1000, || {
        // SAFETY: XENVER_version takes no argument.
        let r = unsafe { hypercall::xen_version(XENVER_VERSION, 0) };
        if r as u64 != XEN_4_17 {
            bad += 1;
            last = r;
        }
    });
    check_eq!(
        t,
        bad,
        0,
        "xen_version(XENVER_version) calls of {} not returning 4.17 (last {last:#x})",
        m.calls
    );
}

const MC_ENTRIES: usize = 32;
static mut MC: [MulticallEntry; MC_ENTRIES] = [MulticallEntry {
    op: 0,
    result: 0,
    args: [0; 6],
}; MC_ENTRIES];

/// Sets every entry to `xen_version(XENVER_version)` with a result that no call returns.
fn mc_reset() -> &'static mut [MulticallEntry; MC_ENTRIES] {
    // SAFETY: single-threaded kernel; MC is only used by this bench.
    let mc = unsafe { &mut *(&raw mut MC).cast::<[MulticallEntry; MC_ENTRIES]>() };
    for e in mc.iter_mut() {
        *e = mm::mc_entry(nr::XEN_VERSION, &[XENVER_VERSION.into(), 0]);
    }
    mc
}

fn mc_bad_results(mc: &[MulticallEntry; MC_ENTRIES]) -> usize {
    mc.iter().filter(|e| e.result != XEN_4_17).count()
}

fn multicall(t: &mut Failures) {
    let mc = mc_reset();
    // SAFETY: every entry is xen_version(XENVER_version), which has no effect.
    let r = unsafe { mm::multicall(mc) };
    check_eq!(t, r, Ok(0), "multicall of 32 xen_version");
    check_eq!(t, mc_bad_results(mc), 0, "multicall entries without 4.17");
    let mc = mc_reset();
    let (list, count) = (mc.as_ptr() as u64, mc.len() as u64);
    let mut bad = 0u64;
    let m = bench::measure("multicall-32", 100, || {
        // SAFETY: as above; the list stays valid.
        let r = unsafe { mm::multicall_raw(list, count) };
        if r != 0 {
            bad += 1;
        }
    });
    check_eq!(t, bad, 0, "multicalls of {} not returning 0", m.calls);
    // SAFETY: single-threaded; the hypervisor wrote the results.
    let mc = unsafe { &*(&raw const MC).cast::<[MulticallEntry; MC_ENTRIES]>() };
    check_eq!(
        t,
        mc_bad_results(mc),
        0,
        "entries without 4.17 after the timed multicalls"
    );
}

const PTES: usize = 512;
/// Two request lists: [0] maps even pages to frame 0 and odd ones to frame 1,
/// [1] the other way round.
static mut REQS: [[MmuUpdate; PTES]; 2] = [[MmuUpdate { ptr: 0, val: 0 }; PTES]; 2];

/// The frame `phase` maps at page `i` of the batch region.
fn frame_of(phase: usize, i: usize) -> usize {
    (i + phase) % 2
}

fn mmu_update_batch(t: &mut Failures, l1: u64, mfns: [u64; 2]) {
    // SAFETY: single-threaded; REQS is only used by this bench.
    let reqs = unsafe { &mut *(&raw mut REQS).cast::<[[MmuUpdate; PTES]; 2]>() };
    for (phase, list) in reqs.iter_mut().enumerate() {
        for (i, r) in list.iter_mut().enumerate() {
            *r = MmuUpdate {
                ptr: entry_maddr(l1, i as u64) | MMU_NORMAL_PT_UPDATE,
                val: (mfns[frame_of(phase, i)] << 12) | KERNEL_RW,
            };
        }
    }
    let mut phase = 0;
    let mut bad = 0u64;
    let mut last = (0i64, 0u32);
    let m = bench::measure("mmu-update-512", 16, || {
        let mut done = 0u32;
        // SAFETY: the requests only change entries of the bench's own L1,
        // which maps nothing else; `done` is valid.
        let r = unsafe {
            mm::mmu_update_raw(
                reqs[phase].as_ptr() as u64,
                PTES as u64,
                (&raw mut done) as u64,
                DOMID_SELF.into(),
            )
        };
        if r != 0 || done != PTES as u32 {
            bad += 1;
            last = (r, done);
        }
        phase ^= 1;
    });
    check_eq!(
        t,
        bad,
        0,
        "mmu_update calls of {} not returning 0 with done 512 (last {last:x?})",
        m.calls
    );
    // The last call used list `phase ^ 1`.
    let phase = phase ^ 1;
    if mm::flush_tlb().is_err() {
        t.fail(format_args!("MMUEXT_TLB_FLUSH_LOCAL failed"));
    }
    let (mut wrong_entry, mut wrong_page) = (0, 0);
    for i in 0..PTES {
        let want = mfns[frame_of(phase, i)];
        let e = read_entry(l1, i as u64);
        if (e & PTE_ADDR_MASK) >> 12 != want {
            if wrong_entry == 0 {
                println!("  L1 entry {i}: {e:#x}, expected mfn {want:#x}");
            }
            wrong_entry += 1;
        }
        let got = probe_read_u64(VA_BATCH + i as u64 * 4096);
        if got != Ok(PATTERN[frame_of(phase, i)]) {
            if wrong_page == 0 {
                println!("  page {i} of the batch region reads {got:x?}");
            }
            wrong_page += 1;
        }
    }
    check_eq!(
        t,
        wrong_entry,
        0,
        "L1 entries not as the last batch set them"
    );
    check_eq!(t, wrong_page, 0, "pages not showing the frame mapped last");
}

fn update_va_mapping(t: &mut Failures, mfns: [u64; 2]) {
    let mut which = 0;
    let (mut bad_ret, mut bad_read) = (0u64, 0u64);
    let m = bench::measure("update-va-mapping-invlpg", 500, || {
        which ^= 1;
        // SAFETY: VA_BATCH maps one of the bench's data frames, used by
        // nothing else.
        let r = unsafe {
            mm::update_va_mapping_raw(VA_BATCH, (mfns[which] << 12) | KERNEL_RW, UVMF_INVLPG)
        };
        if r != 0 {
            bad_ret += 1;
        }
        // SAFETY: VA_BATCH is mapped to a data frame (either one).
        let seen = unsafe { (VA_BATCH as *const u64).read_volatile() };
        if seen != PATTERN[which] {
            bad_read += 1;
        }
    });
    check_eq!(
        t,
        bad_ret,
        0,
        "update_va_mapping calls of {} not returning 0",
        m.calls
    );
    check!(
        t,
        bad_read == 0,
        "{bad_read} reads after update_va_mapping(UVMF_INVLPG) saw the old frame"
    );
}
