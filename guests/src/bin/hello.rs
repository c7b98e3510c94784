//! Test kernel `hello`: boots, prints a greeting and the start_info magic.
//!
//! Command line: none needed (ignored). The smallest test: console output,
//! the verdict and shutdown, plus one check that start_info is the 64-bit PV
//! one ("xen-3.0-x86_64" magic).
#![no_std]
#![no_main]

use xenolith_guests::{check, println, test_main, Boot, Failures, Verdict};

test_main!(hello);

fn hello(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    let magic = &boot.start_info.magic;
    let len = magic.iter().position(|&b| b == 0).unwrap_or(magic.len());
    let magic = core::str::from_utf8(&magic[..len]).unwrap_or("<not UTF-8>");
    println!("Hello from a Xenolith test kernel!");
    println!("start_info magic: {magic:?}");
    check!(
        t,
        magic.starts_with("xen-3.0-x86_64"),
        "unexpected start_info magic {magic:?}"
    );
    t.verdict()
}
