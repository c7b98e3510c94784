//! Mapping the shared_info page and reading it (vcpu_info, time, events).
//!
//! The page is mapped over a page-aligned window in the kernel's own .bss
//! (inside the builder's initial mapping, so an L1 entry exists for it) with
//! `update_va_mapping`. Xen writes the page at any time, so every read is a
//! volatile copy; nothing hands out references into it.

use core::arch::asm;
use core::sync::atomic::{AtomicPtr, Ordering};

use xen_abi::layout::XEN_LEGACY_MAX_VCPUS;
use xen_abi::mmu::UVMF_INVLPG;
use xen_abi::shared_info::{SharedInfo, VcpuInfo, VcpuTimeInfo, EVTCHN_WORDS};
use xen_abi::start_info::StartInfo;
use xen_abi::Errno;

use crate::hypercall;
use crate::x86::{PTE_ACCESSED, PTE_DIRTY, PTE_PRESENT, PTE_RW};

#[repr(C, align(4096))]
struct Window([u8; 4096]);

/// Never accessed as a Rust object: its page is remapped to shared_info.
static mut WINDOW: Window = Window([0; 4096]);

static MAPPED: AtomicPtr<SharedInfo> = AtomicPtr::new(core::ptr::null_mut());

/// VA at which [`map`] maps shared_info.
pub fn window_va() -> u64 {
    (&raw const WINDOW) as u64
}

/// Maps shared_info (once; later calls return the same mapping).
pub fn map(start_info: &StartInfo) -> Result<SharedInfoPage, Errno> {
    if let Some(page) = get() {
        return Ok(page);
    }
    let va = window_va();
    let pte = start_info.shared_info | PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_DIRTY;
    // SAFETY: the window page is used by nothing else; its old frame simply
    // becomes unmapped.
    unsafe { hypercall::update_va_mapping(va, pte, UVMF_INVLPG)? };
    MAPPED.store(va as *mut SharedInfo, Ordering::SeqCst);
    Ok(SharedInfoPage(va as *const SharedInfo))
}

/// The mapping made by [`map`], if any.
pub fn get() -> Option<SharedInfoPage> {
    let p = MAPPED.load(Ordering::SeqCst);
    (!p.is_null()).then_some(SharedInfoPage(p))
}

/// The mapped shared_info page.
#[derive(Debug, Clone, Copy)]
pub struct SharedInfoPage(*const SharedInfo);

impl SharedInfoPage {
    /// Raw pointer to the page, for reads not covered by a method.
    pub fn as_ptr(self) -> *const SharedInfo {
        self.0
    }

    /// Copy of vCPU `n`'s vcpu_info (`n` < 32).
    pub fn vcpu_info(self, n: usize) -> VcpuInfo {
        assert!(n < XEN_LEGACY_MAX_VCPUS);
        // SAFETY: the page is mapped for the life of the domain (see `map`);
        // `n` is in bounds; a volatile copy tolerates concurrent writes.
        unsafe { (&raw const (*self.0).vcpu_info[n]).read_volatile() }
    }

    /// The fault address Xen stored for vCPU `n`'s last #PF.
    pub fn cr2(self, n: usize) -> u64 {
        self.vcpu_info(n).arch.cr2
    }

    /// Word `i` (< 64) of `evtchn_pending`.
    pub fn evtchn_pending(self, i: usize) -> u64 {
        assert!(i < EVTCHN_WORDS);
        // SAFETY: as for `vcpu_info`; `i` is in bounds.
        unsafe { (&raw const (*self.0).evtchn_pending[i]).read_volatile() }
    }

    /// Word `i` (< 64) of `evtchn_mask`.
    pub fn evtchn_mask(self, i: usize) -> u64 {
        assert!(i < EVTCHN_WORDS);
        // SAFETY: as for `vcpu_info`; `i` is in bounds.
        unsafe { (&raw const (*self.0).evtchn_mask[i]).read_volatile() }
    }

    /// A consistent copy of vCPU `n`'s time record (even version, unchanged
    /// across the copy).
    pub fn time(self, n: usize) -> VcpuTimeInfo {
        assert!(n < XEN_LEGACY_MAX_VCPUS);
        loop {
            // SAFETY: as for `vcpu_info`.
            let t = unsafe { (&raw const (*self.0).vcpu_info[n].time).read_volatile() };
            // SAFETY: as for `vcpu_info`.
            let v = unsafe { (&raw const (*self.0).vcpu_info[n].time.version).read_volatile() };
            if t.version & 1 == 0 && t.version == v {
                return t;
            }
        }
    }

    /// A consistent copy of the wallclock: (wc_version, seconds, nanoseconds).
    pub fn wallclock(self) -> (u32, u64, u32) {
        loop {
            // SAFETY: as for `vcpu_info` (all reads are volatile).
            let (v1, lo, hi, ns, v2) = unsafe {
                let s = self.0;
                (
                    (&raw const (*s).wc_version).read_volatile(),
                    (&raw const (*s).wc_sec).read_volatile(),
                    (&raw const (*s).wc_sec_hi).read_volatile(),
                    (&raw const (*s).wc_nsec).read_volatile(),
                    (&raw const (*s).wc_version).read_volatile(),
                )
            };
            if v1 & 1 == 0 && v1 == v2 {
                return (v1, u64::from(hi) << 32 | u64::from(lo), ns);
            }
        }
    }

    /// `arch.max_pfn`.
    pub fn max_pfn(self) -> u64 {
        // SAFETY: as for `vcpu_info`.
        unsafe { (&raw const (*self.0).arch.max_pfn).read_volatile() }
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: RDTSC only reads the counter (Xen does not set CR4.TSD for PV).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}
