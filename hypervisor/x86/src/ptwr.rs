//! Writable-pagetable emulation: the new value of a page-table entry after a guest's write.
//!
//! A guest kernel with VMASST writable_pagetables may write its L1 entries directly; the
//! write faults (the table is mapped read-only), and the hypervisor computes what the
//! instruction would have stored, validates it as an entry update, and completes the
//! instruction. Sub-word writes are merged into the 8-byte entry.
use crate::decode::{Gpr, MemOp, Src};

/// Register access for emulation.
pub trait Regs {
    fn get(&self, r: Gpr) -> u64;
    fn set(&mut self, r: Gpr, v: u64);
}

/// What an emulated write does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effect {
    /// The new 8-byte entry, or `None` if nothing is stored (a failed CMPXCHG).
    pub new_entry: Option<u64>,
    /// RFLAGS bits to clear, then to set (ZF for CMPXCHG, CF for BTR/BTS, the logic flags
    /// for AND/OR).
    pub flags_clear: u64,
    pub flags_set: u64,
}

const CF: u64 = 1 << 0;
const PF: u64 = 1 << 2;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const OF: u64 = 1 << 11;
const AF: u64 = 1 << 4;

/// ZF, SF and PF of a `size`-byte result.
fn logic_flags(v: u64, size: u8) -> u64 {
    let mut f = 0;
    if v == 0 {
        f |= ZF;
    }
    if v >> (u32::from(size) * 8 - 1) & 1 != 0 {
        f |= SF;
    }
    if (v as u8).count_ones().is_multiple_of(2) {
        f |= PF;
    }
    f
}

/// Why a write cannot be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// The access does not lie within one naturally aligned 8-byte entry.
    Straddles,
    /// The operand size is not 1, 2, 4 or 8.
    Size,
}

fn src_value(regs: &dyn Regs, s: Src) -> u64 {
    match s {
        Src::Gpr { reg, high8: true } => (regs.get(reg) >> 8) & 0xff,
        Src::Gpr { reg, high8: false } => regs.get(reg),
        Src::Imm(v) => v,
    }
}

fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

/// Computes the effect of a write of `size` bytes at byte `offset` (0-7) within an entry whose
/// current value is `old`. Registers are updated as the instruction would (XCHG, CMPXCHG);
/// the caller applies them only if the new entry is accepted.
pub fn emulate(
    op: MemOp,
    size: u8,
    offset: usize,
    old: u64,
    regs: &mut dyn Regs,
) -> Result<Effect, Unsupported> {
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(Unsupported::Size);
    }
    if offset + usize::from(size) > 8 {
        return Err(Unsupported::Straddles);
    }
    let shift = offset * 8;
    let m = mask(size);
    let cur = (old >> shift) & m;
    let merge = |v: u64| (old & !(m << shift)) | ((v & m) << shift);
    let bits = u64::from(size) * 8;
    let (new, clear, set) = match op {
        MemOp::Mov(s) => (Some(merge(src_value(regs, s))), 0, 0),
        MemOp::Xchg(r) => {
            let v = regs.get(r);
            regs.set(r, (v & !m) | cur);
            (Some(merge(v)), 0, 0)
        }
        MemOp::Cmpxchg(r) => {
            let expected = regs.get(0) & m;
            if expected == cur {
                (Some(merge(regs.get(r))), 0, ZF)
            } else {
                let rax = regs.get(0);
                regs.set(0, (rax & !m) | cur);
                (None, ZF, 0)
            }
        }
        MemOp::And(s) => {
            let v = cur & src_value(regs, s) & m;
            (
                Some(merge(v)),
                CF | PF | AF | ZF | SF | OF,
                logic_flags(v, size),
            )
        }
        MemOp::Or(s) => {
            let v = (cur | src_value(regs, s)) & m;
            (
                Some(merge(v)),
                CF | PF | AF | ZF | SF | OF,
                logic_flags(v, size),
            )
        }
        MemOp::Btr(s) | MemOp::Bts(s) => {
            let bit = src_value(regs, s) % bits;
            let was = cur >> bit & 1 != 0;
            let v = if matches!(op, MemOp::Btr(_)) {
                cur & !(1 << bit)
            } else {
                cur | (1 << bit)
            };
            (Some(merge(v)), CF, if was { CF } else { 0 })
        }
    };
    Ok(Effect {
        new_entry: new,
        flags_clear: clear,
        flags_set: set,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R([u64; 16]);
    impl Regs for R {
        fn get(&self, r: Gpr) -> u64 {
            self.0[r as usize]
        }
        fn set(&mut self, r: Gpr, v: u64) {
            self.0[r as usize] = v;
        }
    }

    #[test]
    fn mov_and_merge() {
        let mut r = R([0; 16]);
        r.0[1] = 0x1111_2222_3333_4444;
        let e = emulate(
            MemOp::Mov(Src::Gpr {
                reg: 1,
                high8: false,
            }),
            8,
            0,
            5,
            &mut r,
        )
        .unwrap();
        assert_eq!(e.new_entry, Some(0x1111_2222_3333_4444));
        // A 4-byte write to the upper half keeps the lower half.
        let e = emulate(
            MemOp::Mov(Src::Imm(0xdead_beef)),
            4,
            4,
            0x0000_0000_1234_5678,
            &mut r,
        )
        .unwrap();
        assert_eq!(e.new_entry, Some(0xdead_beef_1234_5678));
        assert_eq!(
            emulate(MemOp::Mov(Src::Imm(0)), 8, 4, 0, &mut r),
            Err(Unsupported::Straddles)
        );
    }

    #[test]
    fn xchg_and_cmpxchg() {
        let mut r = R([0; 16]);
        r.0[6] = 0xaaaa;
        let e = emulate(MemOp::Xchg(6), 8, 0, 0x5555, &mut r).unwrap();
        assert_eq!(e.new_entry, Some(0xaaaa));
        assert_eq!(r.0[6], 0x5555);
        r.0[0] = 0x5555; // expected
        r.0[1] = 0x7777;
        let e = emulate(MemOp::Cmpxchg(1), 8, 0, 0x5555, &mut r).unwrap();
        assert_eq!(e.new_entry, Some(0x7777));
        assert_eq!(e.flags_set, ZF);
        r.0[0] = 0x1;
        let e = emulate(MemOp::Cmpxchg(1), 8, 0, 0x5555, &mut r).unwrap();
        assert_eq!(e.new_entry, None);
        assert_eq!(e.flags_clear, ZF);
        assert_eq!(r.0[0], 0x5555, "RAX gets the current value on mismatch");
    }

    #[test]
    fn bit_operations() {
        let mut r = R([0; 16]);
        let e = emulate(MemOp::Btr(Src::Imm(5)), 8, 0, 0x67, &mut r).unwrap();
        assert_eq!(e.new_entry, Some(0x47));
        assert_eq!(e.flags_set, CF, "old bit in CF");
        let e = emulate(MemOp::Bts(Src::Imm(1)), 8, 0, 0x65, &mut r).unwrap();
        assert_eq!(e.new_entry, Some(0x67));
        let e = emulate(MemOp::And(Src::Imm(!2)), 8, 0, 0x67, &mut r).unwrap();
        assert_eq!(e.new_entry, Some(0x65));
    }
}
