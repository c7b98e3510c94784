//! Xen's public guest ABI (`xen/include/public`) as plain Rust data.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
