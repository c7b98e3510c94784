//! Arch-neutral, host-testable logic of the Xenolith hypervisor.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bootinfo;
pub mod cmdline;
pub mod descriptor;
pub mod evtchn;
pub mod frames;
pub mod layout;
pub mod loader;
pub mod pagetype;
pub mod sched;
