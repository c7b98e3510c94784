//! The CPUID view of a PV guest: the host's features limited to what Xen offers PV guests by
//! default (the features tagged `A` in Xen's public cpufeatureset.h: no PSE, PGE, MTRR, PSE36,
//! VME or VMX/SVM, which PV guests cannot use), minus XSAVE and what depends on it (not
//! offered yet), with the hypervisor bit set and Xen's leaves at 0x40000000.
use xenolith_arch::instr::{cpuid, CpuidResult};

use crate::domain::Domain;

const XEN_SIGNATURE: [u32; 3] = [0x566e_6558, 0x65584d4d, 0x4d4d566e]; // "XenVMMXenVMM"

const fn bits(list: &[u32]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < list.len() {
        m |= 1 << list[i];
        i += 1;
    }
    m
}

/// Leaf 1 EDX: FPU DE TSC MSR PAE MCE CX8 APIC SEP MCA CMOV PAT CLFLUSH ACPI MMX FXSR SSE SSE2
/// SS HTT. APIC stays visible as on Xen (its policy marks it "!A"): Linux's PV dom0 then takes
/// its processors from the ACPI MADT (through XENPF_get_cpuinfo) instead of disabling the APIC
/// facility and starting as a uniprocessor.
const LEAF1_EDX: u32 = bits(&[
    0, 2, 4, 5, 6, 7, 8, 9, 11, 14, 15, 16, 19, 22, 23, 24, 25, 26, 27, 28,
]);
/// Leaf 1 ECX: SSE3 PCLMULQDQ SSSE3 CX16 SSE4.1 SSE4.2 MOVBE POPCNT AESNI RDRAND.
const LEAF1_ECX: u32 = bits(&[0, 1, 9, 13, 19, 20, 22, 23, 25, 30]);
/// Leaf 1 ECX: running on a hypervisor.
const HYPERVISOR: u32 = 1 << 31;
/// Leaf 0x80000001 EDX: the leaf-1 bits AMD mirrors, SYSCALL NX MMXEXT FFXSR RDTSCP LM 3DNow.
const EXT1_EDX: u32 = (LEAF1_EDX & bits(&[0, 2, 4, 5, 6, 7, 8, 14, 15, 16, 23, 24]))
    | bits(&[11, 20, 22, 25, 27, 29, 30, 31]);
/// Leaf 0x80000001 ECX: LAHF_LM CMP_LEGACY ABM SSE4A MISALIGNSSE 3DNOWPREFETCH TBM DBEXT.
const EXT1_ECX: u32 = bits(&[0, 1, 5, 6, 7, 8, 21, 26]);
/// Leaf 7 EBX: BMI1 BMI2 ERMS RTM RDSEED ADX CLFLUSHOPT CLWB SHA.
const LEAF7_EBX: u32 = bits(&[3, 8, 9, 11, 18, 19, 23, 24, 29]);
/// Leaf 7 ECX: PREFETCHWT1 RDPID CLDEMOTE.
const LEAF7_ECX: u32 = bits(&[0, 22, 25]);
/// Leaf 7 EDX: MD_CLEAR.
const LEAF7_EDX: u32 = bits(&[10]);

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
        // One hypercall page, set up through MSR 0x40000000; ECX bit 0: MMU_PT_UPDATE_PRESERVE_AD.
        0x4000_0002 => CpuidResult {
            eax: 1,
            ebx: 0x4000_0000,
            ecx: 1,
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
            // No initial APIC id for PV guests (Xen clears it too): otherwise each vCPU would
            // report the id of whichever CPU it happens to run on.
            r.ebx &= 0x00ff_ffff;
            r.edx &= LEAF1_EDX;
            r.ecx = (r.ecx & LEAF1_ECX) | HYPERVISOR;
            r
        }
        7 => {
            let mut r = cpuid(7, subleaf);
            if subleaf == 0 {
                r.ebx &= LEAF7_EBX;
                r.ecx &= LEAF7_ECX;
                r.edx &= LEAF7_EDX;
            } else {
                r = CpuidResult::default();
            }
            r
        }
        // XSAVE state enumeration: XSAVE is not offered.
        0xd => CpuidResult::default(),
        0x8000_0001 => {
            let mut r = cpuid(leaf, subleaf);
            r.edx &= EXT1_EDX;
            r.ecx &= EXT1_ECX;
            r
        }
        // Invariant TSC and power features are not offered to PV guests.
        0x8000_0007 => CpuidResult::default(),
        _ => cpuid(leaf, subleaf),
    }
}
