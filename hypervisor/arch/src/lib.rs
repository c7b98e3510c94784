//! The unsafe x86_64 layer of Xenolith.
#![no_std]
