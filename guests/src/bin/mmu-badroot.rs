//! Test kernel `mmu-badroot`: installing a valid root that does not map the kernel crashes the domain (expect=crash).
//!
//! Command line: none. An empty L4 validates and pins (Xen fills only its
//! own slots), and MMUEXT_NEW_BASEPTR accepts it. Back in the guest the
//! next instruction fetch faults, the #PF cannot be delivered (the trap
//! handlers and the kernel stack are unmapped too), and Xen 4.17 crashes the
//! domain: no verdict line, "Hardware Dom0 crashed". Listed in the manifest
//! with `expect=crash`; a verdict line means the hypervisor got it wrong.
#![no_std]
#![no_main]

use xenolith_guests::mm::{self, Mm};
use xenolith_guests::{println, test_main, Boot, Verdict};

test_main!(run);

fn run(boot: &Boot) -> Verdict {
    let mut mm = Mm::new(boot.start_info);
    let l4 = mm.alloc_zeroed();
    if let Err(e) = mm::pin(4, l4.mfn) {
        println!("ERROR: PIN_L4_TABLE of an empty L4 failed: {e:?}");
        return Verdict::Error;
    }
    println!(
        "switching to an empty L4 {:#x}: the domain must crash now",
        l4.mfn
    );
    let r = mm::new_baseptr(l4.mfn);
    // Only reachable if the switch was refused (or did not take effect).
    println!("FAIL: NEW_BASEPTR of an empty L4 returned {r:?} and the kernel still runs");
    Verdict::Failure
}
