//! `cargo xtask`: build, run, test and bench driver for Xenolith.
//!
//! Every command installs what it needs on a Debian machine (QEMU, the bare-metal Rust target,
//! Debian's Xen 4.17 for side-by-side runs), so a fresh clone needs nothing else.
mod bench;
mod deps;
mod elf32;
mod linux;
mod qemu;
mod tests;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  build            build the hypervisor image and the test guests
  run [GUEST]      boot Xenolith under QEMU with Debian's Linux as dom0 and a shell on the
                   console (or a test guest by name) 
  run-xen [GUEST]  the same guest on Debian's Xen 4.17, for comparison
  test             every test: host unit tests, clippy, and test guests on Xenolith and Xen 4.17
  linux-probe [xenolith|xen] [--smp]
                   boot Debian's Linux as dom0 on Xenolith and Xen 4.17 (or one) and run the probe
  bench [--no-linux]
                   time hypervisor paths (and Linux dom0 boot) on Xenolith and Xen 4.17 under
                   QEMU -icount, print a table
  try [--xen|--both] GUEST [ARGS...]
                   boot one test guest headless (default on Xenolith), print its console and verdict
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cmd = args.first().map(String::as_str).unwrap_or("help");
    match cmd {
        "build" => {
            deps::ensure_build()?;
            build_all()?;
        }
        "run" => {
            deps::ensure_build()?;
            deps::ensure_qemu()?;
            let image = build_all()?;
            match args.get(1).map(String::as_str) {
                // The default: Debian's Linux as dom0 with a shell on the console.
                None | Some("linux") => linux::interactive(&image, &linux::ensure_linux()?)?,
                Some(guest) => qemu::interactive(&image, &guest_path(guest)?, &[])?,
            }
        }
        "run-xen" => {
            deps::ensure_qemu()?;
            deps::ensure_build()?;
            build_all()?;
            let xen = deps::ensure_xen()?;
            let guest = args.get(1).map(String::as_str).unwrap_or("hello");
            qemu::interactive(&xen, &guest_path(guest)?, &[])?;
        }
        "test" => {
            deps::ensure_build()?;
            deps::ensure_qemu()?;
            tests::run_all()?;
        }
        "bench" => bench::run_all(&args[1..])?,
        "linux-probe" => {
            deps::ensure_build()?;
            deps::ensure_qemu()?;
            tests::linux_only(&args[1..])?;
        }
        "try" => {
            deps::ensure_build()?;
            deps::ensure_qemu()?;
            tests::try_guest(&args[1..])?;
        }
        "help" | "-h" | "--help" => print!("{USAGE}"),
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
    Ok(())
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where bare-metal artifacts land.
pub fn target_dir() -> PathBuf {
    root().join("target/x86_64-unknown-none/release")
}

/// Runs a command, failing with its name if it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// A cargo command in the workspace root.
pub fn cargo_cmd() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Builds the test guests.
pub fn build_guests() -> Result<()> {
    run(cargo_cmd().args([
        "build",
        "--release",
        "--target",
        "x86_64-unknown-none",
        "-p",
        "xenolith-guests",
        "--bins",
    ]))
}

/// Builds the hypervisor image (as a multiboot ELF32) and all test guests; returns the image.
pub fn build_all() -> Result<PathBuf> {
    run(cargo_cmd().args([
        "build",
        "--release",
        "--target",
        "x86_64-unknown-none",
        "-p",
        "xenolith",
        "-p",
        "xenolith-guests",
        "--bins",
    ]))?;
    let elf64 = target_dir().join("xenolith");
    let bytes = std::fs::read(&elf64).with_context(|| format!("reading {}", elf64.display()))?;
    let image = elf32::convert(&bytes).context("converting the hypervisor to ELF32")?;
    let out = root().join("target/xenolith.elf32");
    std::fs::write(&out, image)?;
    Ok(out)
}

/// The path of a built test guest.
pub fn guest_path(name: &str) -> Result<PathBuf> {
    let p = target_dir().join(name);
    if !p.exists() {
        bail!("no test guest named {name:?} (looked for {})", p.display());
    }
    Ok(p)
}
