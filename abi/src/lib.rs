//! Xen's public guest ABI (`xen/include/public`) as plain Rust data.
//!
//! Everything here describes the interface a 64-bit x86 PV guest sees:
//! hypercall numbers, sub-operation numbers, flag bits, the in-memory layout
//! of every structure exchanged with the guest, and Xen's errno numbering.
//! Nothing in this crate performs a hypercall or touches hardware.
//!
//! Conventions:
//! * Constants keep Xen's prefix but are upper-cased
//!   (`SCHEDOP_shutdown` → [`sched::SCHEDOP_SHUTDOWN`]); hypercall numbers drop
//!   the `__HYPERVISOR_` prefix ([`hypercall::XEN_VERSION`]).
//! * Structures are `#[repr(C)]` with every padding byte spelled out, derive
//!   the zerocopy traits so they can be read from / written to guest memory
//!   as bytes, and carry compile-time checks of their size and field offsets
//!   (the numbers match Xen's headers compiled for x86_64).
//! * Guest handles (guest pointers) are plain `u64` guest virtual addresses.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// Compile-time check of a structure's total size and of each field offset.
macro_rules! assert_layout {
    ($ty:ty, size = $size:expr, { $($field:ident : $off:expr),* $(,)? }) => {
        const _: () = assert!(core::mem::size_of::<$ty>() == $size);
        $(const _: () = assert!(core::mem::offset_of!($ty, $field) == $off);)*
    };
}

/// `Default` as "all bytes zero", for structures whose arrays are too large
/// for the standard library's derived `Default`.
macro_rules! impl_zeroed_default {
    ($($ty:ty),* $(,)?) => {
        $(
            impl Default for $ty {
                fn default() -> Self {
                    <Self as zerocopy::FromZeros>::new_zeroed()
                }
            }
        )*
    };
}

pub mod callback;
pub mod console;
pub mod cpuid;
pub mod domctl;
pub mod elfnote;
pub mod errno;
pub mod event_channel;
pub mod features;
pub mod grant_table;
pub mod hypercall;
pub mod layout;
pub mod memory;
pub mod mmu;
pub mod multicall;
pub mod nmi;
pub mod physdev;
pub mod sched;
pub mod shared_info;
pub mod start_info;
pub mod trap;
pub mod types;
pub mod vcpu;
pub mod version;
pub mod vm_assist;
pub mod xenstore;

pub use errno::Errno;
pub use types::{DomId, EvtchnPort, Mfn, Pfn, VcpuId};
