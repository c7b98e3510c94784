//! A small framework for Xen PV test kernels.
#![no_std]
