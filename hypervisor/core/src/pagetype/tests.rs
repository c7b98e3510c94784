//! Host tests of page types and reference counts, including a property test that checks
//! every count against a recount from first principles after random operation sequences.
use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

/// Frame contents for tests, and the number of TLB flushes asked for.
#[derive(Default)]
struct Mem(HashMap<Mfn, [u64; 512]>, usize);

impl FrameMemory for Mem {
    fn read(&self, mfn: Mfn, idx: usize) -> u64 {
        self.0.get(&mfn).map_or(0, |t| t[idx])
    }
    fn write(&mut self, mfn: Mfn, idx: usize, val: u64) {
        self.0.entry(mfn).or_insert([0; 512])[idx] = val;
    }
    fn init_hypervisor_l4_slots(&mut self, mfn: Mfn) {
        // A marker the tests can see; validation never looks at these slots.
        self.write(mfn, 257, 0xdead_0000);
    }
    fn flush_tlbs(&mut self) {
        self.1 += 1;
    }
}

const D: Dom = Dom {
    id: 1,
    io: false,
    xen_pages: false,
    foreign: None,
};
const OTHER: u16 = 2;
/// Frames 0..OWNED belong to domain 1; OWNED..OWNED+2 to domain 2; one shared page; rest free.
const OWNED: u64 = 12;
const SHARED: u64 = OWNED + 2;
const TOTAL: u64 = OWNED + 4;

fn setup() -> (FrameTable, Mem) {
    let mut ft = FrameTable::new(TOTAL);
    for m in 0..OWNED {
        ft.assign(m, D.id).unwrap();
    }
    for m in OWNED..OWNED + 2 {
        ft.assign(m, OTHER).unwrap();
    }
    ft.share(SHARED, D.id).unwrap();
    (ft, Mem::default())
}

fn e(mfn: Mfn, flags: u64) -> u64 {
    (mfn << 12) | flags | pte::PRESENT
}

#[test]
fn pin_l1_takes_writable_refs_of_rw_mappings() {
    let (mut ft, mut mem) = setup();
    mem.write(1, 0, e(2, pte::RW));
    mem.write(1, 1, e(3, 0));
    ft.pin(&mut mem, 1, 1, D).unwrap();
    assert_eq!(ft.get(1).unwrap().ty, PageType::L1);
    assert!(ft.get(1).unwrap().pinned);
    assert_eq!(ft.get(2).unwrap().ty, PageType::Writable);
    assert_eq!(ft.get(2).unwrap().count, 2);
    assert_eq!(ft.get(3).unwrap().type_count, 0);
    // The hardware view is user-accessible, kernel-only mappings tagged.
    assert_eq!(
        mem.read(1, 0),
        e(2, pte::RW | pte::USER | pte::GUEST_KERNEL)
    );
    ft.unpin(&mut mem, 1, D).unwrap();
    assert_eq!(ft.get(2).unwrap().count, 1);
    assert_eq!(ft.get(2).unwrap().type_count, 0);
    assert_eq!(ft.get(1).unwrap().count, 1);
}

#[test]
fn retyping_after_a_dropped_mapping_flushes_first() {
    let (mut ft, mut mem) = setup();
    // Frame 2 mapped writable by L1 frame 1, then the mapping goes.
    mem.write(1, 0, e(2, pte::RW));
    ft.pin(&mut mem, 1, 1, D).unwrap();
    assert_eq!(mem.1, 0);
    ft.mod_entry(&mut mem, 1, 0, 0, D, false).unwrap();
    assert_eq!(ft.get(2).unwrap().type_count, 0);
    // No flush to map it writable again; a flush before it becomes a table.
    ft.get_page_and_type(&mut mem, 2, PageType::Writable, D)
        .unwrap();
    assert_eq!(mem.1, 0);
    ft.put_page_and_type(&mut mem, 2);
    ft.pin(&mut mem, 2, 1, D).unwrap();
    assert_eq!(mem.1, 1);
    // A frame never mapped becomes a table without a flush; after a flush, an old drop no
    // longer asks for one.
    ft.pin(&mut mem, 3, 1, D).unwrap();
    assert_eq!(mem.1, 1);
    ft.unpin(&mut mem, 3, D).unwrap();
    // Frame 3 stopped being a table: even a writable mapping of it waits for a flush.
    ft.get_page_and_type(&mut mem, 3, PageType::Writable, D)
        .unwrap();
    assert_eq!(mem.1, 2);
    ft.put_page_and_type(&mut mem, 3);
    ft.get_page_and_type(&mut mem, 3, PageType::Writable, D)
        .unwrap();
    assert_eq!(mem.1, 2);
    ft.put_page_and_type(&mut mem, 3);
    ft.unpin(&mut mem, 2, D).unwrap();
    ft.unpin(&mut mem, 1, D).unwrap();
}

#[test]
fn page_table_cannot_be_mapped_writable() {
    let (mut ft, mut mem) = setup();
    ft.pin(&mut mem, 1, 1, D).unwrap();
    // An L1 that maps the pinned L1 writable cannot be validated.
    mem.write(2, 0, e(1, pte::RW));
    assert_eq!(ft.pin(&mut mem, 2, 1, D), Err(Errno::EBUSY));
    assert_eq!(
        ft.get(2).unwrap().type_count,
        0,
        "failed validation leaves no type"
    );
    // Read-only is fine.
    mem.write(2, 0, e(1, 0));
    ft.pin(&mut mem, 2, 1, D).unwrap();
    // And updating the entry to RW is refused, leaving it as it was.
    assert_eq!(
        ft.mod_entry(&mut mem, 2, 0, e(1, pte::RW), D, false),
        Err(Errno::EBUSY)
    );
    assert_eq!(mem.read(2, 0) & pte::RW, 0);
}

#[test]
fn writable_frame_cannot_become_a_table() {
    let (mut ft, mut mem) = setup();
    mem.write(1, 0, e(2, pte::RW));
    ft.pin(&mut mem, 1, 1, D).unwrap();
    assert_eq!(ft.pin(&mut mem, 2, 1, D), Err(Errno::EINVAL));
    // Once the writable mapping is gone, it can.
    ft.mod_entry(&mut mem, 1, 0, 0, D, false).unwrap();
    ft.pin(&mut mem, 2, 1, D).unwrap();
}

#[test]
fn self_mapping_and_foreign_frames_refused() {
    let (mut ft, mut mem) = setup();
    mem.write(1, 5, e(1, pte::RW));
    assert_eq!(
        ft.pin(&mut mem, 1, 1, D),
        Err(Errno::EBUSY),
        "writable self-map"
    );
    mem.write(1, 5, e(1, 0));
    ft.pin(&mut mem, 1, 1, D).unwrap();
    ft.unpin(&mut mem, 1, D).unwrap();
    mem.write(2, 0, e(2, pte::RW));
    assert_eq!(
        ft.pin(&mut mem, 2, 2, D),
        Err(Errno::EINVAL),
        "writable linear L2"
    );
    mem.write(2, 0, e(2, 0));
    ft.pin(&mut mem, 2, 2, D).unwrap();
    assert_eq!(
        ft.get(2).unwrap().count,
        2,
        "a recursive entry holds no reference"
    );
    ft.unpin(&mut mem, 2, D).unwrap();
    mem.write(3, 0, e(2, 0));
    ft.pin(&mut mem, 2, 2, D).unwrap();
    assert_eq!(
        ft.pin(&mut mem, 3, 2, D),
        Err(Errno::EINVAL),
        "linear reference to another L2"
    );
    mem.write(1, 5, e(OWNED, 0));
    assert_eq!(
        ft.pin(&mut mem, 1, 1, D),
        Err(Errno::EBUSY),
        "other domain's frame"
    );
    mem.write(1, 5, e(TOTAL + 100, 0));
    assert_eq!(
        ft.pin(&mut mem, 1, 1, D),
        Err(Errno::EPERM),
        "device memory without I/O rights"
    );
    let io = Dom { io: true, ..D };
    ft.pin(&mut mem, 1, 1, io).unwrap();
    assert_eq!(
        mem.read(1, 5) & (pte::PCD | pte::PWT),
        pte::PCD | pte::PWT,
        "device memory mapped uncached"
    );
    ft.unpin(&mut mem, 1, io).unwrap();
    ft.set_phys_bits(40);
    mem.write(1, 5, e(1 << 28, 0));
    assert_eq!(
        ft.pin(&mut mem, 1, 1, io),
        Err(Errno::EPERM),
        "beyond the physical address width"
    );
    mem.write(1, 5, e(SHARED, pte::RW));
    ft.pin(&mut mem, 1, 1, D).unwrap();
    assert_eq!(
        ft.get(SHARED).unwrap().ty,
        PageType::None,
        "shared pages take no writable type"
    );
}

#[test]
fn flags_and_superpages() {
    let (mut ft, mut mem) = setup();
    mem.write(1, 0, e(2, pte::PCD));
    assert_eq!(
        ft.pin(&mut mem, 1, 1, D),
        Err(Errno::EINVAL),
        "cache attrs without I/O rights"
    );
    let io = Dom { io: true, ..D };
    ft.pin(&mut mem, 1, 1, io).unwrap();
    mem.write(3, 0, e(4, pte::PSE | pte::RW));
    assert_eq!(ft.pin(&mut mem, 3, 2, D), Err(Errno::EINVAL), "superpage");
    mem.write(3, 0, e(4, pte::GNTTAB));
    assert_eq!(ft.pin(&mut mem, 3, 1, D), Err(Errno::EINVAL), "grant bit");
}

#[test]
fn hierarchy_and_hypervisor_slots() {
    let (mut ft, mut mem) = setup();
    mem.write(1, 0, e(5, pte::RW)); // L1 -> data
    mem.write(2, 0, e(1, pte::RW)); // L2 -> L1
    mem.write(3, 0, e(2, pte::RW)); // L3 -> L2
    mem.write(4, 0, e(3, pte::RW)); // L4 -> L3
    mem.write(4, 256, e(OWNED, pte::RW)); // hypervisor slot: ignored by validation
    ft.pin(&mut mem, 4, 4, D).unwrap();
    assert_eq!(
        mem.read(4, 257),
        0xdead_0000,
        "hypervisor slots stamped after validation"
    );
    for (m, ty) in [
        (1, PageType::L1),
        (2, PageType::L2),
        (3, PageType::L3),
        (4, PageType::L4),
    ] {
        assert_eq!(ft.get(m).unwrap().ty, ty);
    }
    assert_eq!(
        ft.mod_entry(&mut mem, 4, 260, 0, D, false),
        Err(Errno::EINVAL),
        "hypervisor slot"
    );
    // Wrong level is refused: an L2 entry pointing at an L2.
    assert_eq!(
        ft.mod_entry(&mut mem, 3, 1, e(2, 0), D, false).err(),
        None,
        "L3 -> L2 again is fine"
    );
    assert_eq!(
        ft.mod_entry(&mut mem, 2, 1, e(3, 0), D, false),
        Err(Errno::EINVAL),
        "L2 -> L3"
    );
    ft.unpin(&mut mem, 4, D).unwrap();
    for m in 1..=5 {
        assert_eq!(
            ft.get(m).unwrap().type_count,
            0,
            "frame {m} untyped after unpin"
        );
        assert_eq!(
            ft.get(m).unwrap().count,
            1,
            "frame {m} back to its allocation ref"
        );
    }
}

#[test]
fn pin_rules() {
    let (mut ft, mut mem) = setup();
    ft.pin(&mut mem, 1, 1, D).unwrap();
    assert_eq!(ft.pin(&mut mem, 1, 1, D), Err(Errno::EINVAL), "pin twice");
    assert_eq!(
        ft.pin(&mut mem, 1, 2, D),
        Err(Errno::EINVAL),
        "pin as another level"
    );
    assert_eq!(
        ft.unpin(&mut mem, 2, D),
        Err(Errno::EINVAL),
        "unpin unpinned"
    );
    assert_eq!(
        ft.pin(&mut mem, OWNED, 1, D),
        Err(Errno::EINVAL),
        "pin foreign"
    );
    // A pinned frame can be given back; it is freed when the pin goes.
    assert_eq!(ft.release(1, D.id), Ok(()));
    assert!(ft.freed.is_empty());
    ft.unpin(&mut mem, 1, D).unwrap();
    assert_eq!(ft.freed, [(1, D.id)]);
}

#[test]
fn preserve_ad_and_fast_path() {
    let (mut ft, mut mem) = setup();
    mem.write(1, 0, e(2, pte::RW));
    ft.pin(&mut mem, 1, 1, D).unwrap();
    let hw = mem.read(1, 0) | pte::ACCESSED | pte::DIRTY;
    mem.write(1, 0, hw); // the CPU set A/D
    ft.mod_entry(&mut mem, 1, 0, e(2, pte::RW), D, true)
        .unwrap();
    assert_ne!(mem.read(1, 0) & pte::DIRTY, 0);
    assert_eq!(ft.get(2).unwrap().type_count, 1, "no reference moved");
}

#[test]
fn seg_desc_frames() {
    let (mut ft, mut mem) = setup();
    mem.write(6, 0, 0x00cf_9a00_0000_ffff); // DPL0 code
    ft.get_page_and_type(&mut mem, 6, PageType::SegDesc, D)
        .unwrap();
    assert_eq!(mem.read(6, 0), 0x00cf_fa00_0000_ffff, "DPL raised to 3");
    ft.put_page_and_type(&mut mem, 6);
    mem.write(7, 3, 0x0000_8900_0000_0067); // TSS
    assert_eq!(
        ft.get_page_and_type(&mut mem, 7, PageType::SegDesc, D),
        Err(Errno::EINVAL)
    );
}

#[test]
fn released_frame_freed_on_last_reference() {
    let (mut ft, mut mem) = setup();
    mem.write(1, 0, e(2, 0));
    ft.pin(&mut mem, 1, 1, D).unwrap();
    assert_eq!(ft.release(2, D.id), Ok(()));
    assert!(ft.freed.is_empty(), "still mapped, not freed yet");
    assert_eq!(ft.release(2, D.id), Err(Errno::EINVAL), "released twice");
    assert!(!ft.owned_by(2, D.id));
    ft.unpin(&mut mem, 1, D).unwrap();
    assert_eq!(ft.get(2).unwrap().owner, Owner::None, "freed once unmapped");
    assert_eq!(ft.freed, [(2, D.id)]);
}

// ---- property test ----

#[derive(Clone, Debug)]
enum Op {
    /// A raw guest write into a frame that is not a validated table.
    Write {
        frame: u64,
        idx: usize,
        target: u64,
        flags: u64,
        present: bool,
    },
    Pin {
        frame: u64,
        level: u8,
    },
    Unpin {
        frame: u64,
    },
    Mod {
        frame: u64,
        idx: usize,
        target: u64,
        flags: u64,
        present: bool,
    },
    /// Take a root reference (NEW_BASEPTR) on a frame as L4, dropping the previous one.
    Root {
        frame: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let frame = 0..TOTAL + 1;
    let idx = prop_oneof![0usize..3, Just(256usize)];
    let flags = prop_oneof![
        Just(0u64),
        Just(pte::RW),
        Just(pte::PSE),
        Just(pte::PCD),
        Just(pte::RW | pte::DIRTY)
    ];
    prop_oneof![
        (
            frame.clone(),
            idx.clone(),
            0..TOTAL + 1,
            flags.clone(),
            any::<bool>()
        )
            .prop_map(|(frame, idx, target, flags, present)| Op::Write {
                frame,
                idx,
                target,
                flags,
                present
            }),
        (frame.clone(), 1u8..=4).prop_map(|(frame, level)| Op::Pin { frame, level }),
        frame.clone().prop_map(|frame| Op::Unpin { frame }),
        (frame.clone(), idx, 0..TOTAL + 1, flags, any::<bool>()).prop_map(
            |(frame, idx, target, flags, present)| Op::Mod {
                frame,
                idx,
                target,
                flags,
                present
            }
        ),
        frame.prop_map(|frame| Op::Root { frame }),
    ]
}

/// Recounts every reference from the validated tables, pins, the root and allocations.
fn check_counts(ft: &FrameTable, mem: &Mem, root: Option<Mfn>) {
    let mut count = vec![0u32; TOTAL as usize];
    let mut tcount = vec![0u32; TOTAL as usize];
    for m in 0..TOTAL {
        let p = ft.get(m).unwrap();
        if p.allocated || matches!(p.owner, Owner::Shared(_)) {
            count[m as usize] += 1;
        }
        if p.pinned {
            count[m as usize] += 1;
            tcount[m as usize] += 1;
        }
        if let Some(level) = p.ty.level().filter(|_| p.type_count > 0) {
            assert!(p.validated, "typed table {m} not validated");
            for i in FrameTable::entries(level) {
                let ent = mem.read(m, i);
                if ent & pte::PRESENT == 0 {
                    continue;
                }
                if FrameTable::is_self_linear(level, m, ent) {
                    continue;
                }
                let t = mfn_of(ent) as usize;
                count[t] += 1;
                let shared = matches!(ft.get(t as u64).unwrap().owner, Owner::Shared(_));
                if level > 1 || (ent & pte::RW != 0 && !shared) {
                    tcount[t] += 1;
                    let want = if level > 1 {
                        PageType::table(level - 1).unwrap()
                    } else {
                        PageType::Writable
                    };
                    assert_eq!(
                        ft.get(t as u64).unwrap().ty,
                        want,
                        "frame {t} referenced as {want:?}"
                    );
                }
            }
        }
    }
    if let Some(r) = root {
        count[r as usize] += 1;
        tcount[r as usize] += 1;
    }
    for m in 0..TOTAL {
        let p = ft.get(m).unwrap();
        assert_eq!(
            p.count, count[m as usize],
            "general count of frame {m}: {p:?}"
        );
        assert_eq!(
            p.type_count, tcount[m as usize],
            "type count of frame {m}: {p:?}"
        );
        if p.type_count == 0 {
            assert_eq!(p.ty, PageType::None);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn counts_always_match_a_recount(ops in proptest::collection::vec(op(), 1..60)) {
        let (mut ft, mut mem) = setup();
        let mut root: Option<Mfn> = None;
        for o in ops {
            match o {
                Op::Write { frame, idx, target, flags, present } => {
                    let typed_table = ft.get(frame).is_some_and(|p| p.type_count > 0 && p.ty != PageType::Writable);
                    if !typed_table && frame < TOTAL {
                        mem.write(frame, idx, if present { e(target, flags) } else { 0 });
                    }
                }
                Op::Pin { frame, level } => { let _ = ft.pin(&mut mem, frame, level, D); }
                Op::Unpin { frame } => { let _ = ft.unpin(&mut mem, frame, D); }
                Op::Mod { frame, idx, target, flags, present } => {
                    let _ = ft.mod_entry(&mut mem, frame, idx, if present { e(target, flags) } else { 0 }, D, false);
                }
                Op::Root { frame } => {
                    if ft.get_page_and_type(&mut mem, frame, PageType::L4, D).is_ok() {
                        if let Some(old) = root.replace(frame) {
                            ft.put_page_and_type(&mut mem, old);
                        }
                    }
                }
            }
            check_counts(&ft, &mem, root);
        }
        // Teardown: drop the root and every pin; only allocation references remain.
        if let Some(r) = root.take() {
            ft.put_page_and_type(&mut mem, r);
        }
        ft.unpin_all(&mut mem, D.id);
        for m in 0..TOTAL {
            let p = ft.get(m).unwrap();
            prop_assert_eq!(p.type_count, 0, "frame {} still typed", m);
            let alloc = u32::from(p.allocated || matches!(p.owner, Owner::Shared(_)));
            prop_assert_eq!(p.count, alloc, "frame {} count {}", m, p.count);
        }
        // Giving every frame back frees it.
        for m in 0..OWNED {
            prop_assert_eq!(ft.release(m, D.id), Ok(()));
            prop_assert_eq!(ft.freed.last().copied(), Some((m, D.id)), "frame {} freed at once", m);
        }
    }
}

#[test]
fn foreign_mappings_map_only_the_foreign_domains_frames() {
    let (mut ft, mut mem) = setup();
    ft.pin(&mut mem, 1, 1, D).unwrap();
    let f = Dom {
        foreign: Some(OTHER),
        ..D
    };
    // The other domain's frame, writable: a general reference (beside the owner's) and a
    // writable type.
    ft.mod_entry(&mut mem, 1, 0, e(OWNED, pte::RW), f, false)
        .unwrap();
    assert_eq!(ft.get(OWNED).unwrap().count, 2);
    assert_eq!(ft.get(OWNED).unwrap().ty, PageType::Writable);
    // The caller's own frames and the shared page are not the foreign domain's.
    assert_eq!(
        ft.mod_entry(&mut mem, 1, 1, e(2, pte::RW), f, false),
        Err(Errno::EBUSY)
    );
    assert_eq!(
        ft.mod_entry(&mut mem, 1, 1, e(SHARED, 0), f, false),
        Err(Errno::EBUSY)
    );
    // Without foreigndom, the other domain's frames stay out of reach.
    assert_eq!(
        ft.mod_entry(&mut mem, 1, 1, e(OWNED + 1, 0), D, false),
        Err(Errno::EBUSY)
    );
    // The owner gives the frame up while it is mapped: freed with the last reference.
    ft.release(OWNED, OTHER).unwrap();
    assert!(ft.freed.is_empty());
    ft.mod_entry(&mut mem, 1, 0, 0, D, false).unwrap();
    assert_eq!(ft.freed, vec![(OWNED, OTHER)]);
}

#[test]
fn an_unshared_page_is_freed_with_its_last_mapping() {
    let (mut ft, mut mem) = setup();
    ft.pin(&mut mem, 1, 1, D).unwrap();
    ft.mod_entry(&mut mem, 1, 0, e(SHARED, pte::RW), D, false)
        .unwrap();
    ft.unshare(SHARED, D.id).unwrap();
    assert!(ft.freed.is_empty());
    assert_eq!(ft.unshare(SHARED, OTHER), Err(Errno::EINVAL));
    ft.mod_entry(&mut mem, 1, 0, 0, D, false).unwrap();
    assert_eq!(ft.freed, vec![(SHARED, NO_DOMAIN)]);
}

#[test]
fn generation_moves_with_every_change_a_walk_depends_on() {
    let (mut ft, mut mem) = setup();
    let mut g = ft.generation;
    let mut moved = |ft: &FrameTable| {
        let m = ft.generation != g;
        g = ft.generation;
        m
    };
    ft.pin(&mut mem, 1, 1, D).unwrap();
    assert!(moved(&ft), "a new table type");
    ft.mod_entry(&mut mem, 1, 0, e(2, 0), D, false).unwrap();
    assert!(moved(&ft), "an entry");
    ft.mod_entry(&mut mem, 1, 0, e(2, pte::ACCESSED), D, false)
        .unwrap();
    assert!(moved(&ft), "an entry with the same references");
    assert!(ft.mod_entry(&mut mem, 1, 1, e(OWNED, 0), D, false).is_err());
    assert!(!moved(&ft), "a refused entry");
    ft.release(3, D.id).unwrap();
    assert!(moved(&ft), "a frame given up");
    let _ = ft.get(5);
    assert!(!moved(&ft), "a read");
    ft.unpin(&mut mem, 1, D).unwrap();
    assert!(moved(&ft), "a table devalidated");
}
