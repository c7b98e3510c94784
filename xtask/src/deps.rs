//! Installs what the commands need: QEMU, the bare-metal Rust target, Debian's Xen 4.17.
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{root, run};

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// `apt-get` with root rights (directly as root, else through sudo).
fn apt_get(args: &[&str]) -> Result<()> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let mut cmd = if is_root {
        Command::new("apt-get")
    } else {
        let mut c = Command::new("sudo");
        c.arg("apt-get");
        c
    };
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    run(&mut cmd)
}

static APT_UPDATED: std::sync::Once = std::sync::Once::new();

/// Refreshes apt's package lists once per run.
pub fn apt_update() -> Result<()> {
    let mut res = Ok(());
    APT_UPDATED.call_once(|| res = apt_get(&["update", "-qq"]));
    res
}

fn apt_install(pkgs: &[&str]) -> Result<()> {
    let mut res = Ok(());
    APT_UPDATED.call_once(|| res = apt_get(&["update", "-qq"]));
    res?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(pkgs);
    apt_get(&args)
}

/// The bare-metal target for the hypervisor and guests.
pub fn ensure_build() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root())
        .output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("x86_64-unknown-none") => Ok(()),
        Ok(_) => run(Command::new("rustup")
            .args(["target", "add", "x86_64-unknown-none"])
            .current_dir(root())),
        Err(_) => bail!("rustup is required to add the x86_64-unknown-none target"),
    }
}

/// QEMU for x86_64.
pub fn ensure_qemu() -> Result<()> {
    if !have("qemu-system-x86_64") {
        eprintln!("xtask: installing qemu-system-x86");
        apt_install(&["qemu-system-x86"])?;
    }
    Ok(())
}

/// Cache directory for downloaded packages.
pub fn cache_dir() -> PathBuf {
    root().join(".cache")
}

/// Debian's Xen 4.17 hypervisor as an uncompressed multiboot ELF32, downloaded once.
pub fn ensure_xen() -> Result<PathBuf> {
    let dir = cache_dir().join("xen-4.17");
    let image = dir.join("xen-4.17.elf32");
    if image.exists() {
        return Ok(image);
    }
    std::fs::create_dir_all(&dir)?;
    if !have("dpkg-deb") {
        bail!("dpkg-deb is needed to unpack Debian's Xen package");
    }
    let mut res = Ok(());
    APT_UPDATED.call_once(|| res = apt_get(&["update", "-qq"]));
    res?;
    eprintln!("xtask: downloading Debian's xen-hypervisor-4.17-amd64");
    run(Command::new("apt-get")
        .args(["download", "-q", "xen-hypervisor-4.17-amd64"])
        .current_dir(&dir))?;
    let deb = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download produced no .deb")?;
    let unpack = dir.join("pkg");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpack))?;
    let gz = std::fs::read_dir(unpack.join("boot"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with("-amd64.gz"))
        })
        .context("no /boot/xen-*.gz in the package")?;
    let mut dec = flate2::read::GzDecoder::new(std::fs::File::open(&gz)?);
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut dec, &mut out)?;
    std::fs::write(&image, out)?;
    Ok(image)
}

/// A nightly toolchain and cargo-fuzz, for the bounded fuzz runs.
pub fn ensure_fuzz() -> Result<()> {
    let nightly = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()?;
    if !String::from_utf8_lossy(&nightly.stdout)
        .lines()
        .any(|l| l.starts_with("nightly"))
    {
        eprintln!("xtask: installing the nightly toolchain for cargo-fuzz");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if !have("cargo-fuzz") {
        eprintln!("xtask: installing cargo-fuzz");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}
