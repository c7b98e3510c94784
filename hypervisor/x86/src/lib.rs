//! Pure x86 logic of Xenolith: decoding and emulating the few instructions a PV kernel still
//! executes deprivileged (privileged operations on #GP, page-table writes on #PF).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod decode;
pub mod ptwr;
