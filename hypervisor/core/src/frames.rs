//! The machine frame allocator.
//!
//! Invariants: a frame is handed out only if it lies wholly inside a RAM region of the
//! firmware memory map, outside every reserved range (the image, boot modules, loader data,
//! the first MiB), and is not already allocated. Freeing a frame that is not allocated is
//! reported as an error rather than corrupting the free set.
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::bootinfo::{MemRegion, E820_RAM};

/// Size of a machine frame.
pub const PAGE_SIZE: u64 = 4096;

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Finds `bytes` of RAM, aligned to `align`, below `limit`, that overlap no reserved range.
/// The highest such place is chosen so low memory stays free for devices and guests that
/// need it. Used to bootstrap the heap before the allocator exists.
pub fn carve(
    ram: &[MemRegion],
    reserved: &[Range<u64>],
    bytes: u64,
    align: u64,
    limit: u64,
) -> Option<u64> {
    let align = align.max(PAGE_SIZE);
    let mut best: Option<u64> = None;
    for r in ram.iter().filter(|r| r.kind == E820_RAM) {
        let start = r.base;
        let end = r.base.saturating_add(r.len).min(limit);
        // Candidate ends: the region end and the start of every reserved range inside it.
        let mut ends: Vec<u64> = vec![end];
        ends.extend(
            reserved
                .iter()
                .map(|x| x.start)
                .filter(|&s| s > start && s <= end),
        );
        for cand_end in ends {
            let Some(base) = cand_end.checked_sub(bytes) else {
                continue;
            };
            let base = base & !(align - 1);
            if base < start || base < (1 << 20) {
                continue;
            }
            let want = base..base + bytes;
            if reserved.iter().any(|x| overlaps(x, &want)) {
                continue;
            }
            if best.is_none_or(|b| base > b) {
                best = Some(base);
            }
        }
    }
    best
}

/// A frame allocator over a bitmap of free frames.
#[derive(Debug)]
pub struct FrameAllocator {
    /// One bit per frame below `max_pfn`; set = free.
    free_map: Vec<u64>,
    max_pfn: u64,
    free: u64,
    hint: usize,
}

/// Freeing a frame that was not allocated from this allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAllocated(pub u64);

impl FrameAllocator {
    /// Builds the free set from the memory map, minus reserved byte ranges.
    pub fn new(ram: &[MemRegion], reserved: &[Range<u64>]) -> Self {
        let max_pfn = ram
            .iter()
            .filter(|r| r.kind == E820_RAM)
            .map(|r| r.base.saturating_add(r.len) / PAGE_SIZE)
            .max()
            .unwrap_or(0);
        let mut a = FrameAllocator {
            free_map: vec![0; max_pfn.div_ceil(64) as usize],
            max_pfn,
            free: 0,
            hint: 0,
        };
        for r in ram.iter().filter(|r| r.kind == E820_RAM) {
            let first = r.base.div_ceil(PAGE_SIZE).max((1 << 20) / PAGE_SIZE);
            let last = r.base.saturating_add(r.len) / PAGE_SIZE;
            for pfn in first..last {
                let range = pfn * PAGE_SIZE..(pfn + 1) * PAGE_SIZE;
                if !reserved.iter().any(|x| overlaps(x, &range)) && !a.is_free(pfn) {
                    a.set(pfn, true);
                    a.free += 1;
                }
            }
        }
        a
    }

    fn is_free(&self, pfn: u64) -> bool {
        self.free_map
            .get((pfn / 64) as usize)
            .is_some_and(|w| w & (1 << (pfn % 64)) != 0)
    }

    fn set(&mut self, pfn: u64, free: bool) {
        if let Some(w) = self.free_map.get_mut((pfn / 64) as usize) {
            if free {
                *w |= 1 << (pfn % 64);
            } else {
                *w &= !(1 << (pfn % 64));
            }
        }
    }

    /// Number of free frames.
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    /// One past the highest RAM frame.
    pub fn max_pfn(&self) -> u64 {
        self.max_pfn
    }

    /// Allocates one frame.
    pub fn alloc(&mut self) -> Option<u64> {
        let n = self.free_map.len();
        for i in 0..n {
            let idx = (self.hint + i) % n;
            let w = self.free_map[idx];
            if w != 0 {
                let bit = u64::from(w.trailing_zeros());
                let pfn = idx as u64 * 64 + bit;
                self.set(pfn, false);
                self.free -= 1;
                self.hint = idx;
                return Some(pfn);
            }
        }
        None
    }

    /// Allocates `count` physically contiguous frames whose first frame number is a multiple
    /// of `align` (in frames). Searches from the top of memory down.
    pub fn alloc_contiguous(&mut self, count: u64, align: u64) -> Option<u64> {
        if count == 0 {
            return None;
        }
        let align = align.max(1);
        let mut start = self.max_pfn.checked_sub(count)? / align * align;
        loop {
            match (start..start + count).rev().find(|&p| !self.is_free(p)) {
                None => {
                    for p in start..start + count {
                        self.set(p, false);
                    }
                    self.free -= count;
                    return Some(start);
                }
                Some(busy) => {
                    let next = busy.checked_sub(count)?;
                    start = next / align * align;
                }
            }
        }
    }

    /// Returns a frame to the free set.
    pub fn free(&mut self, pfn: u64) -> Result<(), NotAllocated> {
        if pfn >= self.max_pfn || self.is_free(pfn) {
            return Err(NotAllocated(pfn));
        }
        self.set(pfn, true);
        self.free += 1;
        Ok(())
    }

    /// Marks a frame allocated if free (used for frames handed out before the allocator existed).
    pub fn claim(&mut self, pfn: u64) -> bool {
        if self.is_free(pfn) {
            self.set(pfn, false);
            self.free -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use crate::bootinfo::E820_RESERVED;

    fn map() -> Vec<MemRegion> {
        vec![
            MemRegion {
                base: 0,
                len: 0x9fc00,
                kind: E820_RAM,
            },
            MemRegion {
                base: 0xf0000,
                len: 0x10000,
                kind: E820_RESERVED,
            },
            MemRegion {
                base: 0x100000,
                len: 0x3ff000,
                kind: E820_RAM,
            }, // up to 0x4ff000
        ]
    }

    #[test]
    fn excludes_low_mem_reserved_and_partial_frames() {
        let reserved = [0x200000..0x300000];
        let a = FrameAllocator::new(&map(), &reserved);
        assert_eq!(a.max_pfn(), 0x4ff);
        // 0x100..0x4ff minus 0x200..0x300.
        assert_eq!(a.free_frames(), (0x4ff - 0x100) - 0x100);
    }

    #[test]
    fn alloc_free_roundtrip_and_double_free() {
        let mut a = FrameAllocator::new(&map(), &[]);
        let total = a.free_frames();
        let mut got = Vec::new();
        while let Some(p) = a.alloc() {
            assert!((0x100..0x4ff).contains(&p));
            got.push(p);
        }
        assert_eq!(got.len() as u64, total);
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len() as u64, total, "no frame handed out twice");
        for p in &got {
            a.free(*p).unwrap();
        }
        assert_eq!(a.free_frames(), total);
        assert_eq!(a.free(0x150), Err(NotAllocated(0x150)));
        assert_eq!(a.free(0x10_0000), Err(NotAllocated(0x10_0000)));
    }

    #[test]
    fn contiguous_respects_alignment_and_holes() {
        let reserved = [0x400000..0x401000];
        let mut a = FrameAllocator::new(&map(), &reserved);
        let p = a.alloc_contiguous(0x10, 0x10).unwrap();
        assert_eq!(p % 0x10, 0);
        assert!(p + 0x10 <= 0x400 || p >= 0x401);
        let q = a.alloc_contiguous(0x100, 1).unwrap();
        assert!(q + 0x100 <= p || q >= p + 0x10);
        assert!(a.alloc_contiguous(0x10_0000, 1).is_none());
    }

    #[test]
    fn carve_avoids_reserved() {
        let reserved = [0x200000..0x300000, 0x480000..0x4ff000];
        let base = carve(&map(), &reserved, 0x100000, 0x100000, u64::MAX).unwrap();
        assert_eq!(base, 0x300000);
        assert!(carve(&map(), &reserved, 0x200000, 0x1000, u64::MAX).is_none());
    }
}
