//! `cargo xtask`: build, run, test and bench driver for Xenolith.
fn main() {}
