//! The CPUID view of a PV guest: the host's leaves with virtualization-only features hidden,
//! the hypervisor bit set, and Xen's leaves at 0x40000000.
use xenolith_arch::instr::{cpuid, CpuidResult};

use crate::domain::Domain;

const XEN_SIGNATURE: [u32; 3] = [0x566e_6558, 0x65584d4d, 0x4d4d566e]; // "XenVMMXenVMM"

/// CPUID as a PV guest sees it.
pub fn guest_cpuid(_dom: &Domain, leaf: u32, subleaf: u32) -> CpuidResult {
    match leaf {
        0x4000_0000 => CpuidResult {
            eax: 0x4000_0005,
            ebx: XEN_SIGNATURE[0],
            ecx: XEN_SIGNATURE[1],
            edx: XEN_SIGNATURE[2],
        },
        0x4000_0001 => CpuidResult {
            eax: ((crate::pv::XEN_MAJOR << 16) | crate::pv::XEN_MINOR) as u32,
            ..Default::default()
        },
        // One hypercall page, set up through MSR 0x40000000.
        0x4000_0002 => CpuidResult {
            eax: 1,
            ebx: 0x4000_0000,
            ecx: 0,
            edx: 0,
        },
        0x4000_0003 => match subleaf {
            2 => CpuidResult {
                eax: crate::time::tsc_khz() as u32,
                ..Default::default()
            },
            _ => CpuidResult::default(),
        },
        0x4000_0004 => CpuidResult::default(),
        0x4000_0005 => {
            let width = cpuid(0x8000_0008, 0).eax & 0xff;
            CpuidResult {
                ebx: width,
                ..Default::default()
            }
        }
        0x4000_0006..=0x4000_ffff => CpuidResult::default(),
        1 => {
            let mut r = cpuid(1, subleaf);
            r.ecx &= !((1 << 5) | (1 << 3) | (1 << 21) | (1 << 6)); // VMX, MONITOR, x2APIC, SMX
            r.ecx |= 1 << 31; // running on a hypervisor
            r
        }
        0x8000_0001 => {
            let mut r = cpuid(leaf, subleaf);
            r.ecx &= !(1 << 2); // SVM
            r
        }
        _ => cpuid(leaf, subleaf),
    }
}
