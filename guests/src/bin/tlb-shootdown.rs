//! Test kernel `tlb-shootdown`: TLB flushes reach the other CPUs, and a frame
//! cannot become a page table while another CPU may still write it through a
//! stale translation.
//!
//! Command line: none. Run with the hypervisor option `dom0_max_vcpus=2` on
//! two CPUs, so that vCPU 1 spins on a CPU of its own and keeps the
//! translations it has cached (QEMU's TCG keeps a TLB per CPU, like hardware).
//!
//! Checked, with Xen 4.17's answers:
//! * vCPU 1 reads VA X (frame A) in a loop; vCPU 0 remaps X to frame B with
//!   `update_va_mapping(UVMF_INVLPG | UVMF_ALL)`: vCPU 1 reads B's contents
//!   soon after. Then back to A with `mmu_update` (no flush) plus
//!   `MMUEXT_TLB_FLUSH_ALL`: vCPU 1 reads A's again.
//! * vCPU 1 writes VA W (frame F, writable) in a loop; vCPU 0, in one
//!   multicall, unmaps W with no flush requested and pins F as an L1 table
//!   (0 each): from then on vCPU 1's next write faults (#PF through its own
//!   trap table) instead of landing in the page table, whose entry 0 stays as
//!   it was at the pin.
#![no_std]
#![no_main]

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use xen_abi::hypercall as nr;
use xen_abi::layout::FLAT_KERNEL_CS;
use xen_abi::mmu::{
    MmuUpdate, MmuextOp, MMUEXT_PIN_L1_TABLE, MMUEXT_TLB_FLUSH_ALL, MMU_NORMAL_PT_UPDATE, UVMF_ALL,
    UVMF_INVLPG, UVMF_NONE,
};
use xen_abi::trap::TrapInfo;
use xen_abi::types::DOMID_SELF;
use xen_abi::vcpu::{VCPUOP_DOWN, VCPUOP_UP};
use xenolith_guests::mm::{self, fill_page, Mm, KERNEL_RO, KERNEL_RW};
use xenolith_guests::smp::IdlePort;
use xenolith_guests::{
    check, check_eq, hypercall, println, shared_info, smp, test_main, Boot, Failures, Verdict,
};

test_main!(run);

const MS: u64 = 1_000_000;
const VA_X: u64 = 0x3000_0000;
const VA_W: u64 = 0x3000_1000;
const PATTERN_A: u64 = 0xaaaa_0000_0000_aaaa;
const PATTERN_B: u64 = 0xbbbb_0000_0000_bbbb;

/// What vCPU 1 does.
const MODE_READ: u64 = 1;
const MODE_WRITE: u64 = 2;

static MODE: AtomicU64 = AtomicU64::new(MODE_READ);
static COUNT: AtomicU64 = AtomicU64::new(0);
static LAST: AtomicU64 = AtomicU64::new(0);
#[no_mangle]
static TLB_PF_COUNT: AtomicU64 = AtomicU64::new(0);

#[repr(C, align(16))]
struct Stack([u8; 8192]);
static mut STACK: Stack = Stack([0; 8192]);

// vCPU 1's #PF handler: count, then stay here (vCPU 1 has nothing else to do).
global_asm!(
    ".global tlb_pf_entry",
    "tlb_pf_entry:",
    "lock inc qword ptr [rip + TLB_PF_COUNT]",
    "2:",
    "pause",
    "jmp 2b",
);

extern "C" {
    fn tlb_pf_entry();
}

/// vCPU 1: reads X or writes W, counting.
extern "C" fn worker() -> ! {
    loop {
        match MODE.load(SeqCst) {
            MODE_READ => {
                // SAFETY: X is mapped (to A or B) for as long as this mode lasts.
                let v = unsafe { (VA_X as *const u64).read_volatile() };
                LAST.store(v, SeqCst);
                COUNT.fetch_add(1, SeqCst);
            }
            MODE_WRITE => {
                let n = COUNT.fetch_add(1, SeqCst) + 1;
                // SAFETY: W is mapped writable when this mode starts; once vCPU 0
                // unmaps it, the write faults into `tlb_pf_entry`, never returning.
                unsafe { (VA_W as *mut u64).write_volatile(n << 1) };
            }
            _ => core::hint::spin_loop(),
        }
    }
}

fn run(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    let si = boot.start_info;
    if shared_info::map(si).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    let mut mm = Mm::new(si);
    let idle = IdlePort::bind();
    let (a, b, f) = (mm.alloc(), mm.alloc(), mm.alloc());
    let ok = fill_page(a.mfn, |p| p.fill(PATTERN_A)).is_ok()
        && fill_page(b.mfn, |p| p.fill(PATTERN_B)).is_ok()
        && fill_page(f.mfn, |p| p.fill(0)).is_ok()
        && mm::map_va(&mut mm, VA_X, (a.mfn << 12) | KERNEL_RO).is_ok()
        && mm::map_va(&mut mm, VA_W, (f.mfn << 12) | KERNEL_RW).is_ok();
    if !ok {
        xenolith_guests::error("setting up the test frames failed");
    }
    let Some(x_pte) = mm::l1e_maddr(VA_X) else {
        xenolith_guests::error("no L1 entry for X");
    };

    let top = (&raw const STACK) as u64 + 8192;
    let r = smp::initialise(1, worker as *const () as u64, top, |c| {
        c.trap_ctxt[14] = TrapInfo {
            vector: 14,
            flags: 0,
            cs: FLAT_KERNEL_CS,
            pad: 0,
            address: tlb_pf_entry as *const () as u64,
        };
    });
    if r.is_err() {
        println!("initialise(1): {r:?}; is dom0_max_vcpus=2 given?");
        return Verdict::Failure;
    }
    check_eq!(t, smp::vcpu_op(VCPUOP_UP, 1, 0), Ok(0), "up(1)");

    // Remap with a flush of every CPU.
    let reading = idle.wait_for(1000 * MS, || LAST.load(SeqCst) == PATTERN_A);
    check!(t, reading, "vCPU 1 does not read A through X");
    // SAFETY: X is the test's own mapping; B is a frame it owns.
    let r = unsafe {
        hypercall::update_va_mapping(VA_X, (b.mfn << 12) | KERNEL_RO, UVMF_INVLPG | UVMF_ALL)
    };
    check_eq!(t, r, Ok(0), "update_va_mapping(X -> B, INVLPG | ALL)");
    let seen_b = idle.wait_for(1000 * MS, || LAST.load(SeqCst) == PATTERN_B);
    check!(
        t,
        seen_b,
        "vCPU 1 still reads {:#x} after the remap",
        LAST.load(SeqCst)
    );

    // Back to A without a flush, then a flush of every CPU.
    let req = [MmuUpdate {
        ptr: x_pte | MMU_NORMAL_PT_UPDATE,
        val: (a.mfn << 12) | KERNEL_RO,
    }];
    // SAFETY: the request rewrites the test's own L1 entry for X.
    let r = unsafe { hypercall::mmu_update(&req, DOMID_SELF) };
    check_eq!(t, r, Ok(1), "mmu_update(X -> A)");
    check_eq!(
        t,
        mm::mmuext(MMUEXT_TLB_FLUSH_ALL, 0, 0),
        Ok(()),
        "MMUEXT_TLB_FLUSH_ALL"
    );
    let seen_a = idle.wait_for(1000 * MS, || LAST.load(SeqCst) == PATTERN_A);
    check!(
        t,
        seen_a,
        "vCPU 1 still reads {:#x} after TLB_FLUSH_ALL",
        LAST.load(SeqCst)
    );

    // A frame vCPU 1 writes becomes a page table: its writes must stop.
    MODE.store(MODE_WRITE, SeqCst);
    let c0 = COUNT.load(SeqCst);
    let writing = idle.wait_for(1000 * MS, || COUNT.load(SeqCst) > c0 + 1000);
    check!(t, writing, "vCPU 1 does not write W");
    // Unmap and pin in one multicall: the flush cannot wait for the end of the hypercall.
    let pin = [MmuextOp {
        cmd: MMUEXT_PIN_L1_TABLE,
        pad: 0,
        arg1: f.mfn,
        arg2: 0,
    }];
    let mut calls = [
        mm::mc_entry(nr::UPDATE_VA_MAPPING, &[VA_W, 0, UVMF_NONE]),
        mm::mc_entry(
            nr::MMUEXT_OP,
            &[pin.as_ptr() as u64, 1, 0, u64::from(DOMID_SELF)],
        ),
    ];
    // SAFETY: the calls unmap the test's own W and pin its own frame F.
    let r = unsafe { mm::multicall(&mut calls) };
    check_eq!(t, r, Ok(0), "multicall");
    check_eq!(
        t,
        calls[0].result,
        0,
        "update_va_mapping(W -> none, no flush)"
    );
    check_eq!(t, calls[1].result, 0, "pin F as an L1 table");
    let at_pin = mm::read_entry(f.mfn, 0);
    let faulted = idle.wait_for(1000 * MS, || TLB_PF_COUNT.load(SeqCst) >= 1);
    check!(
        t,
        faulted,
        "vCPU 1 kept writing after W was unmapped and F pinned"
    );
    idle.sleep(20 * MS);
    check_eq!(
        t,
        mm::read_entry(f.mfn, 0),
        at_pin,
        "entry 0 of the pinned table (vCPU 1 wrote into it)"
    );
    check_eq!(t, TLB_PF_COUNT.load(SeqCst), 1, "faults on vCPU 1");
    println!(
        "vCPU 1 wrote {} times before the fault",
        COUNT.load(SeqCst) - c0
    );

    check_eq!(t, smp::vcpu_op(VCPUOP_DOWN, 1, 0), Ok(0), "down(1)");
    check_eq!(t, mm::unpin(f.mfn), Ok(()), "unpin F");
    t.verdict()
}
