//! Decoding a faulting instruction into the small set of operations the hypervisor emulates.
//!
//! Everything else decodes to `Op::Other` (the caller injects the fault the hardware raised).
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// A general-purpose register by its encoding number (RAX = 0 ... R15 = 15).
pub type Gpr = u8;

/// Where an I/O port number comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    Imm(u8),
    Dx,
}

/// The source operand of a memory write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    /// A register; `high8` for AH/CH/DH/BH.
    Gpr { reg: Gpr, high8: bool },
    /// An immediate, already sign-extended to the operand size.
    Imm(u64),
}

/// A read-modify-write or store to memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemOp {
    Mov(Src),
    Xchg(Gpr),
    Cmpxchg(Gpr),
    And(Src),
    Or(Src),
    /// Bit test and reset / set with an immediate or register bit index.
    Btr(Src),
    Bts(Src),
}

/// An instruction the hypervisor may emulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Rdmsr,
    Wrmsr,
    Cpuid,
    Rdtsc,
    Rdtscp,
    Clts,
    Wbinvd,
    Hlt,
    Cli,
    Sti,
    Xsetbv,
    MovFromCr {
        cr: u8,
        gpr: Gpr,
    },
    MovToCr {
        cr: u8,
        gpr: Gpr,
    },
    MovFromDr {
        dr: u8,
        gpr: Gpr,
    },
    MovToDr {
        dr: u8,
        gpr: Gpr,
    },
    In {
        size: u8,
        port: Port,
    },
    Out {
        size: u8,
        port: Port,
    },
    /// INS/OUTS (string I/O), with or without REP.
    StringIo,
    /// A write to memory of `size` bytes.
    MemWrite {
        size: u8,
        op: MemOp,
    },
    Other,
}

/// A decoded instruction and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub op: Op,
    pub len: usize,
}

fn gpr(r: Register) -> Option<(Gpr, bool)> {
    let full = r.full_register();
    let n: Gpr = match full {
        Register::RAX => 0,
        Register::RCX => 1,
        Register::RDX => 2,
        Register::RBX => 3,
        Register::RSP => 4,
        Register::RBP => 5,
        Register::RSI => 6,
        Register::RDI => 7,
        Register::R8 => 8,
        Register::R9 => 9,
        Register::R10 => 10,
        Register::R11 => 11,
        Register::R12 => 12,
        Register::R13 => 13,
        Register::R14 => 14,
        Register::R15 => 15,
        _ => return None,
    };
    let high8 = matches!(r, Register::AH | Register::CH | Register::DH | Register::BH);
    Some((n, high8))
}

fn src(i: &Instruction, operand: u32) -> Option<Src> {
    match i.op_kind(operand) {
        OpKind::Register => {
            let (reg, high8) = gpr(i.op_register(operand))?;
            Some(Src::Gpr { reg, high8 })
        }
        OpKind::Immediate8
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Some(Src::Imm(i.immediate(operand))),
        _ => None,
    }
}

fn reg_size(r: Register) -> u8 {
    r.size() as u8
}

/// Decodes the instruction at the start of `bytes` (64-bit mode).
pub fn decode(bytes: &[u8]) -> Option<Decoded> {
    let mut d = Decoder::new(64, bytes, DecoderOptions::NONE);
    let i = d.decode();
    if i.is_invalid() {
        return None;
    }
    let len = i.len();
    let op = match i.mnemonic() {
        Mnemonic::Rdmsr => Op::Rdmsr,
        Mnemonic::Wrmsr => Op::Wrmsr,
        Mnemonic::Cpuid => Op::Cpuid,
        Mnemonic::Rdtsc => Op::Rdtsc,
        Mnemonic::Rdtscp => Op::Rdtscp,
        Mnemonic::Clts => Op::Clts,
        Mnemonic::Wbinvd => Op::Wbinvd,
        Mnemonic::Hlt => Op::Hlt,
        Mnemonic::Cli => Op::Cli,
        Mnemonic::Sti => Op::Sti,
        Mnemonic::Xsetbv => Op::Xsetbv,
        Mnemonic::In => {
            let size = reg_size(i.op0_register());
            let port = if i.op1_kind() == OpKind::Register {
                Port::Dx
            } else {
                Port::Imm(i.immediate8())
            };
            Op::In { size, port }
        }
        Mnemonic::Out => {
            let size = reg_size(i.op1_register());
            let port = if i.op0_kind() == OpKind::Register {
                Port::Dx
            } else {
                Port::Imm(i.immediate8())
            };
            Op::Out { size, port }
        }
        Mnemonic::Insb
        | Mnemonic::Insw
        | Mnemonic::Insd
        | Mnemonic::Outsb
        | Mnemonic::Outsw
        | Mnemonic::Outsd => Op::StringIo,
        Mnemonic::Mov => mov(&i).unwrap_or(Op::Other),
        Mnemonic::Xchg
        | Mnemonic::Cmpxchg
        | Mnemonic::And
        | Mnemonic::Or
        | Mnemonic::Btr
        | Mnemonic::Bts
            if i.op0_kind() == OpKind::Memory =>
        {
            rmw(&i).unwrap_or(Op::Other)
        }
        _ => Op::Other,
    };
    Some(Decoded { op, len })
}

fn control_index(r: Register, base: Register) -> u8 {
    (r as u32 - base as u32) as u8
}

fn mov(i: &Instruction) -> Option<Op> {
    let (k0, k1) = (i.op0_kind(), i.op1_kind());
    if k0 == OpKind::Register && k1 == OpKind::Register {
        let (r0, r1) = (i.op0_register(), i.op1_register());
        if r0.is_cr() {
            return Some(Op::MovToCr {
                cr: control_index(r0, Register::CR0),
                gpr: gpr(r1)?.0,
            });
        }
        if r1.is_cr() {
            return Some(Op::MovFromCr {
                cr: control_index(r1, Register::CR0),
                gpr: gpr(r0)?.0,
            });
        }
        if r0.is_dr() {
            return Some(Op::MovToDr {
                dr: control_index(r0, Register::DR0),
                gpr: gpr(r1)?.0,
            });
        }
        if r1.is_dr() {
            return Some(Op::MovFromDr {
                dr: control_index(r1, Register::DR0),
                gpr: gpr(r0)?.0,
            });
        }
        return None;
    }
    if k0 == OpKind::Memory {
        let size = i.memory_size().size() as u8;
        return Some(Op::MemWrite {
            size,
            op: MemOp::Mov(src(i, 1)?),
        });
    }
    None
}

fn rmw(i: &Instruction) -> Option<Op> {
    let size = i.memory_size().size() as u8;
    let op = match i.mnemonic() {
        Mnemonic::Xchg => MemOp::Xchg(gpr(i.op1_register())?.0),
        Mnemonic::Cmpxchg => MemOp::Cmpxchg(gpr(i.op1_register())?.0),
        Mnemonic::And => MemOp::And(src(i, 1)?),
        Mnemonic::Or => MemOp::Or(src(i, 1)?),
        Mnemonic::Btr => MemOp::Btr(src(i, 1)?),
        Mnemonic::Bts => MemOp::Bts(src(i, 1)?),
        _ => return None,
    };
    Some(Op::MemWrite { size, op })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(bytes: &[u8]) -> (Op, usize) {
        let d = decode(bytes).expect("decodes");
        (d.op, d.len)
    }

    #[test]
    fn privileged_instructions() {
        assert_eq!(op(&[0x0f, 0x32]), (Op::Rdmsr, 2));
        assert_eq!(op(&[0x0f, 0x30]), (Op::Wrmsr, 2));
        assert_eq!(op(&[0x0f, 0x06]), (Op::Clts, 2));
        assert_eq!(op(&[0xf4]), (Op::Hlt, 1));
        assert_eq!(op(&[0x0f, 0x01, 0xd1]), (Op::Xsetbv, 3));
        assert_eq!(op(&[0x0f, 0x09]), (Op::Wbinvd, 2));
        // mov %cr3, %rax ; mov %rbx, %cr0 ; mov %cr4, %r9
        assert_eq!(
            op(&[0x0f, 0x20, 0xd8]),
            (Op::MovFromCr { cr: 3, gpr: 0 }, 3)
        );
        assert_eq!(op(&[0x0f, 0x22, 0xc3]), (Op::MovToCr { cr: 0, gpr: 3 }, 3));
        assert_eq!(
            op(&[0x41, 0x0f, 0x20, 0xe1]),
            (Op::MovFromCr { cr: 4, gpr: 9 }, 4)
        );
        // mov %db7, %rax ; mov %rcx, %db0
        assert_eq!(
            op(&[0x0f, 0x21, 0xf8]),
            (Op::MovFromDr { dr: 7, gpr: 0 }, 3)
        );
        assert_eq!(op(&[0x0f, 0x23, 0xc1]), (Op::MovToDr { dr: 0, gpr: 1 }, 3));
    }

    #[test]
    fn port_io() {
        assert_eq!(
            op(&[0xe4, 0x71]),
            (
                Op::In {
                    size: 1,
                    port: Port::Imm(0x71)
                },
                2
            )
        );
        assert_eq!(
            op(&[0xed]),
            (
                Op::In {
                    size: 4,
                    port: Port::Dx
                },
                1
            )
        );
        assert_eq!(
            op(&[0x66, 0xef]),
            (
                Op::Out {
                    size: 2,
                    port: Port::Dx
                },
                2
            )
        );
        assert_eq!(
            op(&[0xe6, 0x80]),
            (
                Op::Out {
                    size: 1,
                    port: Port::Imm(0x80)
                },
                2
            )
        );
        assert_eq!(op(&[0xf3, 0x6c]), (Op::StringIo, 2));
    }

    #[test]
    fn memory_writes() {
        // mov %rax, (%rdi)
        assert_eq!(
            op(&[0x48, 0x89, 0x07]).0,
            Op::MemWrite {
                size: 8,
                op: MemOp::Mov(Src::Gpr {
                    reg: 0,
                    high8: false
                })
            }
        );
        // movl $0x12345678, (%rdi)
        assert_eq!(
            op(&[0xc7, 0x07, 0x78, 0x56, 0x34, 0x12]).0,
            Op::MemWrite {
                size: 4,
                op: MemOp::Mov(Src::Imm(0x1234_5678))
            }
        );
        // movq $-1, (%rdi): sign-extended
        assert_eq!(
            op(&[0x48, 0xc7, 0x07, 0xff, 0xff, 0xff, 0xff]).0,
            Op::MemWrite {
                size: 8,
                op: MemOp::Mov(Src::Imm(u64::MAX))
            }
        );
        // xchg %rsi, (%rdi)
        assert_eq!(
            op(&[0x48, 0x87, 0x37]).0,
            Op::MemWrite {
                size: 8,
                op: MemOp::Xchg(6)
            }
        );
        // lock cmpxchg %rcx, (%rdx)
        assert_eq!(
            op(&[0xf0, 0x48, 0x0f, 0xb1, 0x0a]).0,
            Op::MemWrite {
                size: 8,
                op: MemOp::Cmpxchg(1)
            }
        );
        // lock btrq $5, (%rdi)
        assert_eq!(
            op(&[0xf0, 0x48, 0x0f, 0xba, 0x37, 0x05]).0,
            Op::MemWrite {
                size: 8,
                op: MemOp::Btr(Src::Imm(5))
            }
        );
        // mov %ah, (%rbx)
        assert_eq!(
            op(&[0x88, 0x23]).0,
            Op::MemWrite {
                size: 1,
                op: MemOp::Mov(Src::Gpr {
                    reg: 0,
                    high8: true
                })
            }
        );
        // a load is not a write
        assert_eq!(op(&[0x48, 0x8b, 0x07]).0, Op::Other);
    }

    #[test]
    fn garbage_and_truncation() {
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[0x0f]), None);
        assert_eq!(decode(&[0x0f, 0x0b]).map(|d| d.op), Some(Op::Other)); // ud2
        for b in 0..=255u8 {
            let _ = decode(&[b, 0x0f, 0x20, 0xd8, 0, 0, 0, 0]);
        }
    }
}
