//! The unsafe x86_64 layer of Xenolith: one typed wrapper per privileged instruction.
//!
//! Everything that touches hardware state lives here, so the unsafe surface of the
//! hypervisor can be read as a list. Callers in the image crate are safe code except where a
//! wrapper's contract cannot be expressed in types (loading CR3, descriptor tables).
#![no_std]

pub mod instr;
pub mod msr;
pub mod port;
