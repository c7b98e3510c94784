//! A small framework for writing Xen PV test kernels in Rust.
//!
//! A test kernel is a `#![no_std] #![no_main]` binary that names its test
//! function with [`test_main!`]. The framework provides everything around it:
//!
//! * [`boot`]: the Xen ELF notes, the entry point (which records the initial
//!   registers, switches to the kernel's own stack and calls the test) and the
//!   image layout;
//! * [`hypercall`]: hypercalls through the hypercall page or a raw `SYSCALL`,
//!   plus typed wrappers;
//! * [`console`]: [`print!`]/[`println!`] over `console_io`;
//! * [`traps`]: a trap table for vectors 0-31, exception fix-ups (probes that
//!   report a fault instead of crashing) and a report of unexpected exceptions;
//! * [`shared_info`]: mapping and reading the shared_info page;
//! * [`report`]: the verdict line, [`check!`]-style failure accumulation and
//!   the final `SCHEDOP_shutdown`;
//! * [`x86`]: architectural numbers (page-table bits, #PF error code bits);
//! * [`mm`]: a frame allocator over dom0's unmapped pfns, scratch mapping
//!   windows, page-table walks and building, and `mmu_update` / `mmuext_op` /
//!   `multicall` wrappers (raw ones too, for bad pointers);
//! * [`probe`]: more fault-reporting probes (4-byte stores, `LOCK CMPXCHG`,
//!   segment-register loads, `FS`-relative reads);
//! * [`smp`]: `VCPUOP_initialise` and friends for tests with more vCPUs;
//! * [`domctl`]: toolstack `XEN_DOMCTL_*` calls (Xen 4.17's structures);
//! * [`builder`]: building and starting a tiny PV domU from dom0;
//! * [`domu_script`]: a domU that runs a script of raw hypercalls, loads and
//!   stores written by dom0, and leaves each result where dom0 reads it.
//!
//! Xen's ABI (numbers and structures) comes from the `xen-abi` crate.
//!
//! Invariants: the framework runs on vCPU 0 with events masked (no event
//! callback is registered), so nothing here is re-entered except by an
//! exception; the verdict is printed exactly once. Tests that bring up more
//! vCPUs run their own code there.
#![no_std]

pub mod bench;
pub mod boot;
pub mod builder;
pub mod console;
pub mod cpu;
pub mod domctl;
pub mod domu_script;
pub mod evtchn;
pub mod hypercall;
pub mod insn;
pub mod mm;
pub mod probe;
pub mod rawtrap;
pub mod report;
pub mod shared_info;
pub mod smp;
pub mod traps;
pub mod vcpu;
pub mod x86;

pub use boot::{Boot, EntryRegs};
pub use report::{error, skip, Failures, Verdict};
pub use traps::Fault;

/// Names the test function of a test kernel: `fn(&Boot) -> Verdict`.
///
/// The framework calls it once after start-up and ends the run with the
/// returned verdict.
#[macro_export]
macro_rules! test_main {
    ($test:path) => {
        #[no_mangle]
        fn xg_test_main(boot: &$crate::Boot) -> $crate::Verdict {
            $test(boot)
        }
    };
}
