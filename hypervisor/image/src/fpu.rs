//! The guest's virtual CR0.TS, reflected in the hardware TS bit so the guest's next FPU
//! instruction raises #NM exactly when it asked for one.
//!
//! The hypervisor itself never uses the FPU or SIMD registers (the bare-metal target is
//! soft-float), so with one vCPU the guest's FPU state simply stays in the registers.
use xenolith_arch::instr::{read_cr0, write_cr0};

const CR0_TS: u64 = 1 << 3;

/// Sets or clears the hardware TS bit.
pub fn set_ts(on: bool) {
    let cr0 = read_cr0();
    let want = if on { cr0 | CR0_TS } else { cr0 & !CR0_TS };
    if want != cr0 {
        // SAFETY: only TS changes; the hypervisor does not use the FPU.
        unsafe { write_cr0(want) };
    }
}
