//! Building a tiny 64-bit PV domU from dom0, the way libxc's builder does:
//! populate its memory, map its frames into dom0 with `mmu_update` naming
//! the domU as `foreigndom`, write a start_info page, page tables and code,
//! unmap everything, then give vCPU 0 a context with
//! `XEN_DOMCTL_setvcpucontext` (Xen types and pins the L4 as the root).
//!
//! Layout of the domU (pfn -> VA `DOMU_VIRT_BASE + pfn * 4K`):
//!
//! | pfn | page | domU mapping |
//! |---|---|---|
//! | 0 | code (entry at its start) | read-only |
//! | 1 | data | read-write |
//! | 2 | start_info (p2m list of all 8 mfns at offset 0x800) | read-write |
//! | 3 | stack (RSP = top) | read-write |
//! | 4-7 | L4, L3, L2, L1 | read-only |
//!
//! The domU starts with RSI = start_info VA, no trap table, no callbacks and
//! no hypercall page: a fault crashes it, and it can only make hypercalls
//! with a raw `SYSCALL` (rax = number, arguments in rdi, rsi, rdx, r10, r8).
//!
//! Frames are written through mm window [`BUILD_WINDOW`] (mapped writable to
//! the foreign frame, then restored); callers may use windows 1-5.

use xen_abi::hypercall::MEMORY_OP;
use xen_abi::layout::VGCF_ONLINE;
use xen_abi::memory::{XenMemoryReservation, XENMEM_POPULATE_PHYSMAP};
use xen_abi::mmu::{MmuUpdate, MMU_NORMAL_PT_UPDATE};
use xen_abi::start_info::{StartInfo, START_INFO_MAGIC_X86_64};
use xen_abi::vcpu::VcpuGuestContext;
use xen_abi::Errno;

use crate::hypercall::{self, result};
use crate::mm::{self, KERNEL_RO, KERNEL_RW, TABLE};
use crate::{domctl, smp};

/// VA of the domU's pfn 0.
pub const DOMU_VIRT_BASE: u64 = 0x40_0000;
/// Code page (entry point at its first byte).
pub const PFN_CODE: usize = 0;
/// Data page.
pub const PFN_DATA: usize = 1;
/// start_info page.
pub const PFN_START_INFO: usize = 2;
/// Stack page.
pub const PFN_STACK: usize = 3;
/// L4 (root) table.
pub const PFN_L4: usize = 4;
/// L3 table.
pub const PFN_L3: usize = 5;
/// L2 table.
pub const PFN_L2: usize = 6;
/// L1 table.
pub const PFN_L1: usize = 7;
/// Number of pfns the domU has.
pub const NR_PFNS: usize = 8;
/// Offset of the p2m list inside the start_info page.
pub const P2M_OFFSET: u64 = 0x800;
/// The mm window the builder writes foreign frames through.
pub const BUILD_WINDOW: usize = 0;

/// `XENMEM_populate_physmap` of order-0 extents for `domid`: `gpfns` in,
/// MFNs out (PV). Returns the number of extents done.
pub fn populate_physmap(domid: u16, gpfns: &mut [u64]) -> Result<u64, Errno> {
    let r = XenMemoryReservation {
        extent_start: gpfns.as_mut_ptr() as u64,
        nr_extents: gpfns.len() as u64,
        extent_order: 0,
        mem_flags: 0,
        domid,
        pad: [0; 6],
    };
    // SAFETY: Xen reads the reservation and writes one MFN per extent into
    // `gpfns`; the frames go to another domain.
    result(unsafe {
        hypercall::call(
            MEMORY_OP,
            [
                XENMEM_POPULATE_PHYSMAP.into(),
                (&raw const r) as u64,
                0,
                0,
                0,
            ],
        )
    })
}

/// Creates a PV domain with one vCPU (Xen picks the id), gives it
/// `max_mem` 256 KiB and populates its [`NR_PFNS`] pfns; returns its id and
/// the MFN of each pfn. On an error the domain may exist half built (the
/// caller destroys it or ends the test).
pub fn create_populated() -> Result<(u16, [u64; NR_PFNS]), Errno> {
    let (domid, _) = domctl::create_domain(0, &domctl::pv_domain(1))?;
    domctl::max_vcpus(domid, 1)?;
    domctl::max_mem(domid, 256)?;
    let mut mfns: [u64; NR_PFNS] = core::array::from_fn(|i| i as u64);
    if populate_physmap(domid, &mut mfns)? != NR_PFNS as u64 {
        return Err(Errno::ENOMEM);
    }
    Ok((domid, mfns))
}

/// MFN of `domid`'s shared_info page (from getdomaininfo).
pub fn shared_info_mfn(domid: u16) -> Result<u64, Errno> {
    Ok(domctl::getdomaininfo(domid)?.1.shared_info_frame)
}

/// Maps mm window `window` to frame `mfn` of domain `domid` with
/// `MMU_NORMAL_PT_UPDATE` on the window's L1 entry, `foreigndom` = `domid`
/// (what Linux's privcmd does); returns the window's VA. Undo with
/// [`mm::unmap_window`].
pub fn map_foreign(window: usize, domid: u16, mfn: u64, writable: bool) -> Result<u64, Errno> {
    let va = mm::window_va(window);
    let maddr = mm::l1e_maddr(va).ok_or(Errno::EINVAL)?;
    let flags = if writable { KERNEL_RW } else { KERNEL_RO };
    let req = [MmuUpdate {
        ptr: maddr | MMU_NORMAL_PT_UPDATE,
        val: (mfn << 12) | flags,
    }];
    mm::mmu_update_done(&req, domid).0?;
    mm::invlpg(va)?;
    Ok(va)
}

/// Clears frame `mfn` of `domid` and lets `f` write it, through a writable
/// foreign mapping in [`BUILD_WINDOW`] that is removed afterwards.
pub fn fill_foreign(domid: u16, mfn: u64, f: impl FnOnce(&mut [u64; 512])) -> Result<(), Errno> {
    let va = map_foreign(BUILD_WINDOW, domid, mfn, true)?;
    // SAFETY: the window maps the frame writable until `unmap_window` below
    // and nothing else in dom0 accesses it; the page is 4 KiB, 8-byte aligned.
    let page = unsafe { &mut *(va as *mut [u64; 512]) };
    page.fill(0);
    f(page);
    mm::unmap_window(BUILD_WINDOW)
}

/// A domU built by [`TinyDomain::build`].
#[derive(Clone, Copy, Debug)]
pub struct TinyDomain {
    pub domid: u16,
    /// MFN of each pfn.
    pub mfns: [u64; NR_PFNS],
}

impl TinyDomain {
    /// The domU VA of `pfn`.
    pub const fn va(pfn: usize) -> u64 {
        DOMU_VIRT_BASE + pfn as u64 * 4096
    }

    /// Entry point (start of the code page).
    pub const fn entry_va() -> u64 {
        Self::va(PFN_CODE)
    }

    /// Initial RSP: the top of the stack page.
    pub const fn stack_top() -> u64 {
        Self::va(PFN_STACK) + 4096
    }

    /// VA of start_info (the initial RSI).
    pub const fn start_info_va() -> u64 {
        Self::va(PFN_START_INFO)
    }

    /// MFN of `pfn`.
    pub fn mfn(&self, pfn: usize) -> u64 {
        self.mfns[pfn]
    }

    /// Writes the domU's pages (populated as `mfns`, pfn order): start_info
    /// (`shared_info_mfn` from getdomaininfo, `cmdline`), the four tables,
    /// `code` at the start of the code page, cleared data and stack pages.
    /// Every writable foreign mapping is gone when it returns.
    ///
    /// # Panics
    /// If `code` or `cmdline` does not fit.
    pub fn build(
        domid: u16,
        mfns: [u64; NR_PFNS],
        code: &[u8],
        shared_info_mfn: u64,
        cmdline: &str,
    ) -> Result<TinyDomain, Errno> {
        assert!(code.len() <= 4096, "domU code larger than a page");
        let d = TinyDomain { domid, mfns };
        let va = DOMU_VIRT_BASE;
        d.fill(PFN_L4, |p| {
            p[mm::index_of(va, 4) as usize] = d.table(PFN_L3)
        })?;
        d.fill(PFN_L3, |p| {
            p[mm::index_of(va, 3) as usize] = d.table(PFN_L2)
        })?;
        d.fill(PFN_L2, |p| {
            p[mm::index_of(va, 2) as usize] = d.table(PFN_L1)
        })?;
        d.fill(PFN_L1, |p| {
            for (pfn, &mfn) in mfns.iter().enumerate() {
                let rw = matches!(pfn, PFN_DATA | PFN_START_INFO | PFN_STACK);
                let flags = if rw { KERNEL_RW } else { KERNEL_RO };
                p[mm::index_of(Self::va(pfn), 1) as usize] = (mfn << 12) | flags;
            }
        })?;
        d.fill(PFN_START_INFO, |p| {
            // SAFETY: the page is 4 KiB and 8-byte aligned, StartInfo (0x490
            // bytes of integers) fits at its start, and all zeroes (the page
            // was cleared) is a valid value.
            let si = unsafe { &mut *(p.as_mut_ptr().cast::<StartInfo>()) };
            si.magic[..START_INFO_MAGIC_X86_64.len()].copy_from_slice(START_INFO_MAGIC_X86_64);
            si.nr_pages = NR_PFNS as u64;
            si.shared_info = shared_info_mfn << 12;
            si.flags = 0;
            si.pt_base = Self::va(PFN_L4);
            si.nr_pt_frames = 4;
            si.mfn_list = Self::start_info_va() + P2M_OFFSET;
            let cmd = cmdline.as_bytes();
            assert!(cmd.len() < si.cmd_line.len(), "domU command line too long");
            si.cmd_line[..cmd.len()].copy_from_slice(cmd);
            let p2m = (P2M_OFFSET / 8) as usize;
            p[p2m..p2m + NR_PFNS].copy_from_slice(&mfns);
        })?;
        d.fill(PFN_CODE, |p| {
            // SAFETY: `code` (at most 4096 bytes, checked above) is copied
            // into the 4096-byte page; the two do not overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    code.as_ptr(),
                    p.as_mut_ptr().cast::<u8>(),
                    code.len(),
                );
            }
        })?;
        d.fill(PFN_DATA, |_| {})?;
        d.fill(PFN_STACK, |_| {})?;
        Ok(d)
    }

    fn table(&self, pfn: usize) -> u64 {
        (self.mfns[pfn] << 12) | TABLE
    }

    /// Clears page `pfn` and lets `f` write it (see [`fill_foreign`]); for
    /// the data and stack pages also after [`Self::build`] and while the
    /// domU runs (the tables cannot be mapped writable once typed).
    pub fn fill(&self, pfn: usize, f: impl FnOnce(&mut [u64; 512])) -> Result<(), Errno> {
        fill_foreign(self.domid, self.mfns[pfn], f)
    }

    /// Machine address of the domU's L1 entry that maps `pfn` (what a
    /// `mmu_update` of that mapping names).
    pub fn l1e_maddr(&self, pfn: usize) -> u64 {
        mm::entry_maddr(self.mfn(PFN_L1), mm::index_of(Self::va(pfn), 1))
    }

    /// The address of a vCPU context for the domU's entry: kernel mode and
    /// online, RIP = entry, RSP = kernel SP = stack top, RSI = start_info,
    /// CR3 = the L4, after `edit` (valid until the next context is built).
    pub fn context(&self, edit: impl FnOnce(&mut VcpuGuestContext)) -> u64 {
        smp::build_context(Self::entry_va(), Self::stack_top(), self.mfn(PFN_L4), |c| {
            c.flags |= VGCF_ONLINE;
            c.user_regs.rsi = Self::start_info_va();
            edit(c);
        })
    }

    /// `XEN_DOMCTL_setvcpucontext` for `vcpu` with [`Self::context`].
    pub fn set_context(&self, vcpu: u32) -> Result<u64, Errno> {
        let ctx = self.context(|_| {});
        domctl::set_vcpu_context(self.domid, vcpu, ctx)
    }
}
