//! Fuzzes page types and reference counts: arbitrary operation sequences from the input
//! bytes, with the invariant that no frame is ever both a page table (or descriptor page)
//! and mapped writable by a validated L1, and that teardown leaves only allocation references.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use xenolith_core::pagetype::{pte, Dom, FrameMemory, FrameTable, Mfn, Owner, PageType};

#[derive(Default)]
struct Mem(HashMap<Mfn, [u64; 512]>);

impl FrameMemory for Mem {
    fn read(&self, mfn: Mfn, idx: usize) -> u64 {
        self.0.get(&mfn).map_or(0, |t| t[idx])
    }
    fn write(&mut self, mfn: Mfn, idx: usize, val: u64) {
        self.0.entry(mfn).or_insert([0; 512])[idx] = val;
    }
    fn init_hypervisor_l4_slots(&mut self, _mfn: Mfn) {}
    fn flush_tlbs(&mut self) {}
}

const D: Dom = Dom {
    id: 1,
    io: false,
    xen_pages: false,
    foreign: None,
};
const FRAMES: u64 = 10;

fn entry(b: &[u8]) -> (u64, usize, u64) {
    let frame = u64::from(b[0]) % (FRAMES + 1);
    let idx = [0usize, 1, 2, 256, 511][usize::from(b[1]) % 5];
    let target = u64::from(b[2]) % (FRAMES + 2);
    let flags = u64::from(b[3]) & (pte::PRESENT | pte::RW | pte::USER | pte::PCD | pte::PSE | pte::ACCESSED | pte::DIRTY);
    (frame, idx, (target << 12) | flags)
}

fn check(ft: &FrameTable, mem: &Mem) {
    for m in 0..FRAMES {
        let p = ft.get(m).unwrap();
        let Some(level) = p.ty.level().filter(|_| p.type_count > 0) else { continue };
        if level != 1 {
            continue;
        }
        for i in 0..512 {
            let e = mem.read(m, i);
            if e & pte::PRESENT != 0 && e & pte::RW != 0 {
                let t = ft.get((e & pte::ADDR_MASK) >> 12).unwrap();
                assert!(
                    !matches!(t.ty, PageType::L1 | PageType::L2 | PageType::L3 | PageType::L4 | PageType::SegDesc),
                    "frame {:#x} is {:?} and mapped writable by L1 {m:#x}",
                    (e & pte::ADDR_MASK) >> 12,
                    t.ty
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut ft = FrameTable::new(FRAMES + 2);
    let mut mem = Mem::default();
    for m in 0..FRAMES {
        ft.assign(m, D.id).unwrap();
    }
    ft.share(FRAMES, D.id).unwrap();
    let mut root: Option<Mfn> = None;
    for chunk in data.chunks_exact(5) {
        let (frame, idx, val) = entry(&chunk[1..]);
        match chunk[0] % 6 {
            0 => {
                let busy = ft.get(frame).is_some_and(|p| p.type_count > 0 && p.ty != PageType::Writable);
                if !busy && frame < FRAMES {
                    mem.write(frame, idx, val);
                }
            }
            1 => {
                let _ = ft.pin(&mut mem, frame, chunk[2] % 4 + 1, D);
            }
            2 => {
                let _ = ft.unpin(&mut mem, frame, D);
            }
            3 => {
                let _ = ft.mod_entry(&mut mem, frame, idx, val, D, chunk[3] & 1 != 0);
            }
            4 => {
                if ft.get_page_and_type(&mut mem, frame, PageType::L4, D).is_ok() {
                    if let Some(old) = root.replace(frame) {
                        ft.put_page_and_type(&mut mem, old);
                    }
                }
            }
            _ => {
                let _ = ft.get_page_and_type(&mut mem, frame, PageType::SegDesc, D).map(|()| ft.put_page_and_type(&mut mem, frame));
            }
        }
        check(&ft, &mem);
    }
    if let Some(r) = root.take() {
        ft.put_page_and_type(&mut mem, r);
    }
    ft.unpin_all(&mut mem, D.id);
    for m in 0..=FRAMES {
        let p = ft.get(m).unwrap();
        assert_eq!(p.type_count, 0, "frame {m} still typed after teardown");
        let alloc = u32::from(p.allocated || matches!(p.owner, Owner::Shared(_)));
        assert_eq!(p.count, alloc, "frame {m} keeps references after teardown");
    }
});
