//! The initial virtual address space of a 64-bit PV guest: pure placement arithmetic.
//!
//! Follows Xen's `dom0_construct_pv` (xen/arch/x86/pv/dom0_build.c), as summarised in
//! docs/pv-guest-abi.md §1.2–1.3. One contiguous region `[v_start, v_end)`, with
//! `v_start = virt_base`, is mapped 1:1 onto pfns `0..(v_end - v_start) / 4 KiB`. In order:
//!
//! 1. the kernel `[kern_start, kern_end)` (pfns below it, from `virt_base`, are mapped too);
//! 2. the initrd, unless it is left unmapped (MOD_START_PFN);
//! 3. the p2m list, `u64[nr_pages]`, unless INIT_P2M places it outside the region;
//! 4. the start_info page (dom0 also keeps its `dom0_vga_console_info` right after it);
//! 5. domU only: the xenstore ring page, then the console ring page;
//! 6. the bootstrap page tables, `nr_pt_frames` pages starting with the L4 at `pt_base`;
//! 7. one boot-stack page (`rsp = stack + 4096`);
//! 8. padding: `v_end` is rounded up to 4 MiB, plus another 4 MiB if that leaves less than
//!    512 KiB after the stack.
//!
//! Invariants of a [`Layout`] returned by [`compute`]: every element after the kernel starts on
//! a page boundary, the elements appear in the order above without overlapping, all lie in
//! `[v_start, v_end)`, `v_end` is 4 MiB aligned with at least 512 KiB after the stack page,
//! `tables_needed(v_start, v_end)` fits in `nr_pt_frames` (and `nr_pt_frames` is the smallest
//! such count >= 2, as Xen's search finds), the region is canonical and clear of the hypervisor
//! hole, and the domain has enough pages for it (plus whatever lives outside it). [`compute`]
//! never panics; bad requests and arithmetic overflow are [`LayoutError`]s.

use core::fmt;
use core::ops::Range;

pub use xen_abi::layout::{HYPERVISOR_VIRT_END, HYPERVISOR_VIRT_START, PAGE_SIZE};

/// End of the canonical lower half (exclusive).
const LOWER_HALF_END: u64 = 0x0000_8000_0000_0000;
/// Start of the canonical upper half.
const UPPER_HALF_START: u64 = 0xffff_8000_0000_0000;
const V_END_ALIGN: u64 = 4 << 20;
const MIN_PADDING: u64 = 512 << 10;
/// sizeof(struct start_info) for x86_64 (public/xen.h).
const START_INFO_SIZE: u64 = core::mem::size_of::<xen_abi::start_info::StartInfo>() as u64;
/// sizeof(struct dom0_vga_console_info) (public/xen.h), kept after start_info for dom0.
const DOM0_VGA_CONSOLE_INFO_SIZE: u64 =
    core::mem::size_of::<xen_abi::start_info::Dom0VgaConsoleInfo>() as u64;
// Xen reserves both, rounded up to a page: one page.
const _: () = assert!(START_INFO_SIZE + DOM0_VGA_CONSOLE_INFO_SIZE <= PAGE_SIZE);
/// One p2m entry (`unsigned long`).
const P2M_ENTRY_SIZE: u64 = 8;
const L4_SHIFT: u32 = 39;
const L3_SHIFT: u32 = 30;
const L2_SHIFT: u32 = 21;

/// What to place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutRequest {
    /// VIRT_BASE: VA of pfn 0; becomes `v_start`. Must be page aligned.
    pub virt_base: u64,
    /// First kernel VA (`XenElfInfo::virt_kstart`), `>= virt_base`.
    pub kern_start: u64,
    /// End of the kernel VAs, exclusive (`XenElfInfo::virt_kend`).
    pub kern_end: u64,
    /// Initrd length in bytes; 0 = no initrd.
    pub initrd_len: u64,
    /// Map the initrd inside the region. `false` is allowed only if the kernel has
    /// MOD_START_PFN; its pages are then still given to the domain, outside the region.
    pub initrd_mapped: bool,
    /// Pages given to the domain (= p2m length).
    pub nr_pages: u64,
    /// domU: reserve xenstore and console ring pages after start_info.
    pub domu_rings: bool,
    /// INIT_P2M: VA of an external p2m list (page aligned), mapped by the builder with its own
    /// page tables outside the region.
    pub p2m_external: Option<u64>,
}

/// Where everything goes. All addresses are guest virtual addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Start of the initial region (= virt_base, pfn 0).
    pub v_start: u64,
    /// Kernel VAs as requested.
    pub kern: Range<u64>,
    /// Initrd bytes if mapped; starts on the page after the kernel.
    pub initrd: Option<Range<u64>>,
    /// The p2m array, `nr_pages * 8` bytes (inside the region, or at INIT_P2M).
    pub p2m: Range<u64>,
    /// The p2m lives at INIT_P2M, outside `[v_start, v_end)`.
    pub p2m_external: bool,
    /// start_info page (rsi at entry).
    pub start_info: u64,
    /// domU xenstore ring page.
    pub xenstore: Option<u64>,
    /// domU console ring page.
    pub console: Option<u64>,
    /// First bootstrap page-table page (the L4).
    pub pt_base: u64,
    /// Number of bootstrap page-table pages (start_info.nr_pt_frames).
    pub nr_pt_frames: u64,
    /// Boot stack page; initial rsp = stack + PAGE_SIZE.
    pub stack: u64,
    /// End of the initial region (exclusive, 4 MiB aligned).
    pub v_end: u64,
    /// Page tables needed to map `[v_start, v_end)`: L4s (always 1).
    pub nr_l4: u64,
    /// L3 tables needed.
    pub nr_l3: u64,
    /// L2 tables needed.
    pub nr_l2: u64,
    /// L1 tables needed.
    pub nr_l1: u64,
    /// Pages of the domain outside the region: unmapped initrd, plus for an external p2m its
    /// frames and an upper bound on its L3/L2/L1 tables.
    pub extra_pages: u64,
    /// Of `extra_pages`: the external p2m's frames (0 if the p2m is inside the region).
    pub p2m_external_frames: u64,
    /// Of `extra_pages`: upper bound on the page tables mapping the external p2m.
    pub p2m_external_tables: u64,
}

impl Layout {
    /// Pages in the initial region: `(v_end - v_start) / 4096`.
    pub fn initial_pages(&self) -> u64 {
        self.v_end.saturating_sub(self.v_start) / PAGE_SIZE
    }

    /// The pfn mapped at `va`, if `va` is inside the initial region.
    pub fn pfn_of(&self, va: u64) -> Option<u64> {
        if (self.v_start..self.v_end).contains(&va) {
            Some((va - self.v_start) / PAGE_SIZE)
        } else {
            None
        }
    }

    /// The bootstrap page-table pages, `[pt_base, pt_base + nr_pt_frames * 4096)`.
    pub fn page_tables(&self) -> Range<u64> {
        self.pt_base..self.stack
    }

    /// Initial stack pointer.
    pub fn initial_rsp(&self) -> u64 {
        self.stack + PAGE_SIZE
    }
}

/// Why a layout is impossible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// virt_base is not page aligned.
    VirtBaseUnaligned(u64),
    /// The kernel starts below virt_base or ends before it starts.
    BadKernelRange {
        virt_base: u64,
        start: u64,
        end: u64,
    },
    /// The domain has no pages.
    NoPages,
    /// An address or size computation overflowed 64 bits.
    Overflow(&'static str),
    /// The domain's memory cannot hold the initial region.
    TooSmall { needed: u64, available: u64 },
    /// The region overlaps the hypervisor's reserved VA range.
    HypervisorHole {
        what: &'static str,
        start: u64,
        end: u64,
    },
    /// The region straddles or lies in the non-canonical hole.
    NonCanonical {
        what: &'static str,
        start: u64,
        end: u64,
    },
    /// INIT_P2M is not page aligned.
    P2mUnaligned(u64),
    /// The external p2m overlaps the initial region.
    P2mOverlap { p2m: Range<u64>, region: Range<u64> },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::VirtBaseUnaligned(v) => {
                write!(f, "VIRT_BASE {v:#x} is not page aligned")
            }
            LayoutError::BadKernelRange {
                virt_base,
                start,
                end,
            } => write!(
                f,
                "kernel range [{start:#x}, {end:#x}) is invalid for VIRT_BASE {virt_base:#x}"
            ),
            LayoutError::NoPages => write!(f, "the domain has no memory pages"),
            LayoutError::Overflow(what) => {
                write!(
                    f,
                    "initial mapping does not fit in the address space ({what})"
                )
            }
            LayoutError::TooSmall { needed, available } => write!(
                f,
                "dom0_mem too small: initial mapping needs {needed} pages but the domain \
                 has {available}"
            ),
            LayoutError::HypervisorHole { what, start, end } => write!(
                f,
                "{what} [{start:#x}, {end:#x}) overlaps the hypervisor area \
                 [{HYPERVISOR_VIRT_START:#x}, {HYPERVISOR_VIRT_END:#x})"
            ),
            LayoutError::NonCanonical { what, start, end } => write!(
                f,
                "{what} [{start:#x}, {end:#x}) is not a canonical address range"
            ),
            LayoutError::P2mUnaligned(va) => write!(f, "INIT_P2M {va:#x} is not page aligned"),
            LayoutError::P2mOverlap { p2m, region } => write!(
                f,
                "INIT_P2M list [{:#x}, {:#x}) overlaps the initial mapping [{:#x}, {:#x})",
                p2m.start, p2m.end, region.start, region.end
            ),
        }
    }
}

fn page_up(v: u64) -> Option<u64> {
    v.checked_add(PAGE_SIZE - 1).map(|x| x & !(PAGE_SIZE - 1))
}

/// Number of `1 << shift` blocks touched by `[start, end)` (Xen's `NR()` macro, overflow-free).
fn blocks(start: u64, end: u64, shift: u32) -> u64 {
    if end <= start {
        0
    } else {
        ((end - 1) >> shift) - (start >> shift) + 1
    }
}

/// Page-table pages needed to map `[v_start, v_end)` with 4 KiB pages: (L4, L3, L2, L1).
pub fn tables_needed(v_start: u64, v_end: u64) -> (u64, u64, u64, u64) {
    (
        1,
        blocks(v_start, v_end, L4_SHIFT),
        blocks(v_start, v_end, L3_SHIFT),
        blocks(v_start, v_end, L2_SHIFT),
    )
}

/// Check `[start, end)` is canonical and clear of the hypervisor hole.
fn check_va_range(what: &'static str, start: u64, end: u64) -> Result<(), LayoutError> {
    if start < HYPERVISOR_VIRT_END && end > HYPERVISOR_VIRT_START {
        return Err(LayoutError::HypervisorHole { what, start, end });
    }
    let lower = end <= LOWER_HALF_END;
    let upper = start >= UPPER_HALF_START;
    if !(lower || upper) {
        return Err(LayoutError::NonCanonical { what, start, end });
    }
    Ok(())
}

/// Compute the initial address space.
pub fn compute(req: &LayoutRequest) -> Result<Layout, LayoutError> {
    use LayoutError::Overflow;

    let v_start = req.virt_base;
    if v_start & (PAGE_SIZE - 1) != 0 {
        return Err(LayoutError::VirtBaseUnaligned(v_start));
    }
    if req.kern_start < v_start || req.kern_end < req.kern_start {
        return Err(LayoutError::BadKernelRange {
            virt_base: v_start,
            start: req.kern_start,
            end: req.kern_end,
        });
    }
    if req.nr_pages == 0 {
        return Err(LayoutError::NoPages);
    }
    let too_small = |needed| LayoutError::TooSmall {
        needed,
        available: req.nr_pages,
    };

    let after_kernel = page_up(req.kern_end).ok_or(Overflow("kernel end"))?;
    let has_initrd = req.initrd_len != 0;
    let (initrd, after_initrd) = if has_initrd && req.initrd_mapped {
        let end = after_kernel
            .checked_add(req.initrd_len)
            .ok_or(Overflow("initrd"))?;
        (
            Some(after_kernel..end),
            page_up(end).ok_or(Overflow("initrd"))?,
        )
    } else {
        (None, after_kernel)
    };
    let initrd_pages = if has_initrd {
        page_up(req.initrd_len).ok_or(Overflow("initrd"))? / PAGE_SIZE
    } else {
        0
    };

    let p2m_bytes = req
        .nr_pages
        .checked_mul(P2M_ENTRY_SIZE)
        .ok_or(Overflow("p2m size"))?;
    let (p2m, start_info) = match req.p2m_external {
        None => {
            let end = after_initrd
                .checked_add(p2m_bytes)
                .ok_or(Overflow("p2m list"))?;
            (after_initrd..end, page_up(end).ok_or(Overflow("p2m list"))?)
        }
        Some(base) => {
            if base & (PAGE_SIZE - 1) != 0 {
                return Err(LayoutError::P2mUnaligned(base));
            }
            let end = base
                .checked_add(p2m_bytes)
                .ok_or(Overflow("INIT_P2M list"))?;
            (base..end, after_initrd)
        }
    };

    let start_info_end = start_info
        .checked_add(START_INFO_SIZE + DOM0_VGA_CONSOLE_INFO_SIZE)
        .and_then(page_up)
        .ok_or(Overflow("start_info"))?;
    let (xenstore, console, pt_base) = if req.domu_rings {
        let pt = start_info_end
            .checked_add(2 * PAGE_SIZE)
            .ok_or(Overflow("ring pages"))?;
        (Some(start_info_end), Some(start_info_end + PAGE_SIZE), pt)
    } else {
        (None, None, start_info_end)
    };

    // Fixed point: the tables map the region that contains them. needed(n) is monotone in n,
    // so jumping straight to needed(n) skips only counts that cannot be fixed points; the
    // result is the smallest n >= 2 with needed(n) <= n, exactly what Xen's n++ search finds.
    // n never exceeds the region's page count, which must fit in nr_pages, so the loop ends.
    let mut nr_pt: u64 = 2;
    let (stack, v_end, tables) = loop {
        let stack = nr_pt
            .checked_mul(PAGE_SIZE)
            .and_then(|b| pt_base.checked_add(b))
            .ok_or(Overflow("page tables"))?;
        let stack_end = stack.checked_add(PAGE_SIZE).ok_or(Overflow("boot stack"))?;
        let mut v_end = stack_end
            .checked_add(V_END_ALIGN - 1)
            .map(|x| x & !(V_END_ALIGN - 1))
            .ok_or(Overflow("padding"))?;
        if v_end - stack_end < MIN_PADDING {
            v_end = v_end.checked_add(V_END_ALIGN).ok_or(Overflow("padding"))?;
        }
        let region_pages = (v_end - v_start) / PAGE_SIZE;
        if region_pages > req.nr_pages {
            return Err(too_small(
                region_pages.saturating_add(if req.initrd_mapped { 0 } else { initrd_pages }),
            ));
        }
        let tables = tables_needed(v_start, v_end);
        let needed = tables.0 + tables.1 + tables.2 + tables.3;
        if needed <= nr_pt {
            break (stack, v_end, tables);
        }
        nr_pt = needed;
    };

    check_va_range("initial mapping", v_start, v_end)?;

    let mut extra_pages = if req.initrd_mapped { 0 } else { initrd_pages };
    let (mut p2m_external_frames, mut p2m_external_tables) = (0, 0);
    if req.p2m_external.is_some() {
        check_va_range("INIT_P2M list", p2m.start, p2m.end)?;
        if p2m.start < v_end && v_start < p2m.end {
            return Err(LayoutError::P2mOverlap {
                p2m,
                region: v_start..v_end,
            });
        }
        p2m_external_frames = page_up(p2m_bytes).ok_or(Overflow("p2m size"))? / PAGE_SIZE;
        let (_, l3, l2, l1) = tables_needed(p2m.start, p2m.end);
        p2m_external_tables = l3 + l2 + l1;
        extra_pages = extra_pages
            .checked_add(p2m_external_frames)
            .and_then(|x| x.checked_add(p2m_external_tables))
            .ok_or(Overflow("p2m size"))?;
    }
    let needed = ((v_end - v_start) / PAGE_SIZE)
        .checked_add(extra_pages)
        .ok_or(Overflow("page count"))?;
    if needed > req.nr_pages {
        return Err(too_small(needed));
    }

    Ok(Layout {
        v_start,
        kern: req.kern_start..req.kern_end,
        initrd,
        p2m,
        p2m_external: req.p2m_external.is_some(),
        start_info,
        xenstore,
        console,
        pt_base,
        nr_pt_frames: nr_pt,
        stack,
        v_end,
        nr_l4: tables.0,
        nr_l3: tables.1,
        nr_l2: tables.2,
        nr_l1: tables.3,
        extra_pages,
        p2m_external_frames,
        p2m_external_tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KBASE: u64 = 0xffff_ffff_8000_0000;

    fn req(kern_len: u64, nr_pages: u64) -> LayoutRequest {
        LayoutRequest {
            virt_base: KBASE,
            kern_start: KBASE,
            kern_end: KBASE + kern_len,
            initrd_len: 0,
            initrd_mapped: true,
            nr_pages,
            domu_rings: false,
            p2m_external: None,
        }
    }

    /// 1 MiB kernel at 0xffffffff80000000, 16384 pages (64 MiB), worked by hand from
    /// dom0_construct: p2m = 16384 * 8 = 128 KiB at +1 MiB; start_info at +0x120000;
    /// page tables at +0x121000. With n = 2: stack +0x123000, v_end = +4 MiB; tables
    /// needed = 1 L4 + 1 L3 + 1 L2 + 2 L1 (the region spans two 2 MiB blocks) = 5 > 2.
    /// With n = 5: stack +0x126000, v_end still +4 MiB, needed 5 <= 5.
    #[test]
    fn known_good_small_kernel() {
        let l = compute(&req(1 << 20, 16384)).expect("layout");
        assert_eq!(l.v_start, KBASE);
        assert_eq!(l.kern, KBASE..KBASE + 0x10_0000);
        assert_eq!(l.initrd, None);
        assert_eq!(l.p2m, KBASE + 0x10_0000..KBASE + 0x12_0000);
        assert_eq!(l.start_info, KBASE + 0x12_0000);
        assert_eq!(l.pt_base, KBASE + 0x12_1000);
        assert_eq!(l.nr_pt_frames, 5);
        assert_eq!((l.nr_l4, l.nr_l3, l.nr_l2, l.nr_l1), (1, 1, 1, 2));
        assert_eq!(l.stack, KBASE + 0x12_6000);
        assert_eq!(l.initial_rsp(), KBASE + 0x12_7000);
        assert_eq!(l.v_end, KBASE + 0x40_0000);
        assert_eq!(l.initial_pages(), 1024);
        assert_eq!(l.extra_pages, 0);
        assert_eq!(l.pfn_of(l.start_info), Some(0x120));
        assert_eq!(l.pfn_of(l.v_end), None);
        assert_eq!(l.pfn_of(KBASE - 1), None);
    }

    /// The 512 KiB padding rule: a stack ending within 512 KiB of a 4 MiB boundary
    /// pushes v_end out by another 4 MiB.
    #[test]
    fn padding_adds_4mib() {
        // Kernel ends at +0x375000; the p2m (4096 * 8 = 32 KiB) ends at +0x37d000;
        // start_info +0x37d000; tables from +0x37e000. The region now reaches past 4 MiB,
        // so it needs 1 L4 + 1 L3 + 1 L2 + 4 L1 = 7 tables; the stack is +0x385000..
        // +0x386000 and 0x400000 - 0x386000 = 0x7a000 < 512 KiB, so v_end = +8 MiB.
        let l = compute(&req(0x375000, 4096)).expect("layout");
        assert_eq!(l.start_info, KBASE + 0x37d000);
        assert_eq!(l.pt_base, KBASE + 0x37e000);
        assert_eq!(l.nr_pt_frames, 7);
        assert_eq!(l.stack, KBASE + 0x385000);
        assert_eq!(l.v_end, KBASE + 0x80_0000);
        assert_eq!(l.initial_pages(), 2048);
    }

    #[test]
    fn domu_rings_and_initrd() {
        let mut r = req(0x20_0000, 65536);
        r.domu_rings = true;
        r.initrd_len = 0x1234;
        let l = compute(&r).expect("layout");
        assert_eq!(l.initrd, Some(KBASE + 0x20_0000..KBASE + 0x20_1234));
        assert_eq!(l.p2m.start, KBASE + 0x20_2000);
        assert_eq!(l.p2m.end, KBASE + 0x20_2000 + 65536 * 8);
        assert_eq!(l.start_info, KBASE + 0x28_2000);
        assert_eq!(l.xenstore, Some(KBASE + 0x28_3000));
        assert_eq!(l.console, Some(KBASE + 0x28_4000));
        assert_eq!(l.pt_base, KBASE + 0x28_5000);
    }

    #[test]
    fn unmapped_initrd_and_external_p2m() {
        let mut r = req(0x20_0000, 65536);
        r.initrd_len = 3 * PAGE_SIZE + 1;
        r.initrd_mapped = false;
        r.p2m_external = Some(0x80_0000_0000);
        let l = compute(&r).expect("layout");
        assert_eq!(l.initrd, None);
        assert!(l.p2m_external);
        assert_eq!(l.p2m, 0x80_0000_0000..0x80_0000_0000 + 65536 * 8);
        assert_eq!(l.start_info, KBASE + 0x20_0000);
        assert_eq!(l.p2m_external_frames, 128);
        assert_eq!(l.p2m_external_tables, 3);
        assert_eq!(l.extra_pages, 4 + 128 + 3);
    }

    #[test]
    fn xtf_style_zero_base() {
        let r = LayoutRequest {
            virt_base: 0,
            kern_start: 0x1000,
            kern_end: 0x1_9000,
            ..req(0, 8192)
        };
        let l = compute(&r).expect("layout");
        assert_eq!(l.v_start, 0);
        assert_eq!(l.p2m.start, 0x1_9000);
        assert_eq!(l.v_end, 0x40_0000);
        let (l4, l3, l2, l1) = tables_needed(l.v_start, l.v_end);
        assert!(l4 + l3 + l2 + l1 <= l.nr_pt_frames);
    }

    #[test]
    fn errors() {
        assert_eq!(
            compute(&req(1 << 20, 512)),
            Err(LayoutError::TooSmall {
                needed: 1024,
                available: 512
            })
        );
        let msg = alloc::format!("{}", compute(&req(1 << 20, 512)).expect_err("too small"));
        assert!(
            msg.contains("needs 1024 pages but the domain has 512"),
            "{msg}"
        );
        let mut r = req(1 << 20, 16384);
        r.virt_base += 1;
        r.kern_start += 1;
        assert_eq!(compute(&r), Err(LayoutError::VirtBaseUnaligned(KBASE + 1)));
        let mut r = req(1 << 20, 16384);
        r.kern_start = KBASE - PAGE_SIZE;
        assert!(matches!(
            compute(&r),
            Err(LayoutError::BadKernelRange { .. })
        ));
        assert_eq!(compute(&req(1 << 20, 0)), Err(LayoutError::NoPages));
        // Region inside the hypervisor hole.
        let r = LayoutRequest {
            virt_base: HYPERVISOR_VIRT_START,
            kern_start: HYPERVISOR_VIRT_START,
            kern_end: HYPERVISOR_VIRT_START + 0x1000,
            ..req(0, 16384)
        };
        assert!(matches!(
            compute(&r),
            Err(LayoutError::HypervisorHole { .. })
        ));
        // A region ending exactly at the lower-half end is fine; one crossing it is not.
        let r = LayoutRequest {
            virt_base: LOWER_HALF_END - 0x40_0000,
            kern_start: LOWER_HALF_END - 0x40_0000,
            kern_end: LOWER_HALF_END - 0x30_0000,
            ..req(0, 16384)
        };
        assert_eq!(compute(&r).map(|l| l.v_end), Ok(LOWER_HALF_END));
        let r = LayoutRequest {
            kern_end: LOWER_HALF_END - 0x4_0000,
            ..r
        };
        assert!(matches!(compute(&r), Err(LayoutError::NonCanonical { .. })));
        // Kernel at the very top: overflow, not a panic.
        let r = LayoutRequest {
            virt_base: !(PAGE_SIZE - 1),
            kern_start: !(PAGE_SIZE - 1),
            kern_end: u64::MAX,
            ..req(0, u64::MAX)
        };
        assert!(matches!(compute(&r), Err(LayoutError::Overflow(_))));
        // Huge nr_pages: the p2m size overflows.
        assert!(matches!(
            compute(&req(1 << 20, u64::MAX)),
            Err(LayoutError::Overflow(_))
        ));
        // External p2m inside the region.
        let mut r = req(1 << 20, 16384);
        r.p2m_external = Some(KBASE + 0x20_0000);
        assert!(matches!(compute(&r), Err(LayoutError::P2mOverlap { .. })));
        r.p2m_external = Some(0x80_0000_0001);
        assert_eq!(compute(&r), Err(LayoutError::P2mUnaligned(0x80_0000_0001)));
        r.p2m_external = Some(0x7fff_ffff_f000);
        assert!(matches!(compute(&r), Err(LayoutError::NonCanonical { .. })));
        // Enough for the region but not for the external p2m.
        let mut r = req(1 << 20, 1024);
        r.p2m_external = Some(0x80_0000_0000);
        assert!(matches!(compute(&r), Err(LayoutError::TooSmall { .. })));
    }

    #[test]
    fn tables_needed_counts() {
        assert_eq!(tables_needed(0, 0), (1, 0, 0, 0));
        assert_eq!(tables_needed(0, 1), (1, 1, 1, 1));
        assert_eq!(tables_needed(0, 2 << 20), (1, 1, 1, 1));
        assert_eq!(tables_needed(0, (2 << 20) + 1), (1, 1, 1, 2));
        assert_eq!(tables_needed(KBASE, KBASE + (1 << 30)), (1, 1, 1, 512));
        assert_eq!(tables_needed(KBASE, u64::MAX), (1, 1, 2, 1024));
        // Crossing a 512 GiB boundary needs two L3s.
        let b = 1u64 << 39;
        assert_eq!(tables_needed(b - 4096, b + 4096), (1, 2, 2, 2));
    }

    /// A big guest: 4 GiB of p2m-mapped memory needs many L1s; the fixed point still holds.
    #[test]
    fn large_domain_fixed_point() {
        let l = compute(&req(32 << 20, 1 << 20)).expect("layout");
        let (l4, l3, l2, l1) = tables_needed(l.v_start, l.v_end);
        assert_eq!((l.nr_l4, l.nr_l3, l.nr_l2, l.nr_l1), (l4, l3, l2, l1));
        assert!(l4 + l3 + l2 + l1 <= l.nr_pt_frames);
    }

    fn arb_request() -> impl Strategy<Value = LayoutRequest> {
        (
            prop_oneof![
                Just(0u64),
                Just(KBASE),
                Just(0x4000_0000u64),
                (0u64..(1 << 35)).prop_map(|p| p * PAGE_SIZE),
                any::<u64>().prop_map(|v| v & !(PAGE_SIZE - 1)),
            ],
            0u64..(64 << 20),
            1u64..(256 << 20),
            prop_oneof![Just(0u64), 1u64..(64 << 20)],
            any::<bool>(),
            prop_oneof![1u64..(1 << 22), any::<u64>()],
            any::<bool>(),
            prop_oneof![
                Just(None),
                Just(Some(0x80_0000_0000u64)),
                any::<u64>().prop_map(Some)
            ],
        )
            .prop_map(
                |(virt_base, off, len, initrd_len, initrd_mapped, nr_pages, domu, p2m)| {
                    let kern_start = virt_base.saturating_add(off);
                    LayoutRequest {
                        virt_base,
                        kern_start,
                        kern_end: kern_start.saturating_add(len),
                        initrd_len,
                        initrd_mapped,
                        nr_pages,
                        domu_rings: domu,
                        p2m_external: p2m,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn layout_invariants(r in arb_request()) {
            let Ok(l) = compute(&r) else { return Ok(()); };
            // Ordered, page-aligned, non-overlapping elements inside the region.
            let mut cursor = l.kern.end;
            prop_assert!(l.v_start <= l.kern.start);
            if let Some(i) = &l.initrd {
                prop_assert_eq!(i.start % PAGE_SIZE, 0);
                prop_assert!(i.start >= cursor);
                cursor = i.end;
            }
            if !l.p2m_external {
                prop_assert_eq!(l.p2m.start % PAGE_SIZE, 0);
                prop_assert!(l.p2m.start >= cursor);
                cursor = l.p2m.end;
            } else {
                prop_assert!(l.p2m.end <= l.v_start || l.p2m.start >= l.v_end);
            }
            prop_assert_eq!(l.start_info % PAGE_SIZE, 0);
            prop_assert!(l.start_info >= cursor);
            cursor = l.start_info + PAGE_SIZE;
            if let (Some(xs), Some(con)) = (l.xenstore, l.console) {
                prop_assert_eq!(xs, cursor);
                prop_assert_eq!(con, xs + PAGE_SIZE);
                cursor = con + PAGE_SIZE;
            }
            prop_assert_eq!(l.pt_base, cursor);
            prop_assert_eq!(l.stack, l.pt_base + l.nr_pt_frames * PAGE_SIZE);
            prop_assert!(l.stack + PAGE_SIZE <= l.v_end);
            prop_assert!(l.v_end - (l.stack + PAGE_SIZE) >= MIN_PADDING);
            prop_assert_eq!(l.v_end % V_END_ALIGN, 0);
            // Fixed point, and minimal.
            let (a, b, c, d) = tables_needed(l.v_start, l.v_end);
            prop_assert!(a + b + c + d <= l.nr_pt_frames);
            prop_assert!(l.nr_pt_frames >= 2);
            // Fits in the domain.
            prop_assert!(l.initial_pages() + l.extra_pages <= r.nr_pages);
            // Canonical and clear of the hole.
            prop_assert!(l.v_end <= LOWER_HALF_END || l.v_start >= UPPER_HALF_START);
            prop_assert!(l.v_start >= HYPERVISOR_VIRT_END || l.v_end <= HYPERVISOR_VIRT_START);
            prop_assert_eq!(l.pfn_of(l.stack), Some((l.stack - l.v_start) / PAGE_SIZE));
        }

        #[test]
        fn minimal_table_count(r in arb_request()) {
            let Ok(l) = compute(&r) else { return Ok(()); };
            // Replay Xen's n++ search and compare.
            let mut n = 2u64;
            loop {
                let stack_end = l.pt_base + n * PAGE_SIZE + PAGE_SIZE;
                let mut v_end = (stack_end + V_END_ALIGN - 1) & !(V_END_ALIGN - 1);
                if v_end - stack_end < MIN_PADDING {
                    v_end += V_END_ALIGN;
                }
                let (a, b, c, d) = tables_needed(l.v_start, v_end);
                if a + b + c + d <= n {
                    break;
                }
                n += 1;
            }
            prop_assert_eq!(n, l.nr_pt_frames);
        }
    }
}
