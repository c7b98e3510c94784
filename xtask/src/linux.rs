//! Debian's Linux as PV dom0: fetching the kernel, building the initramfs, and the probe that
//! checks what a user would on Xenolith and on Xen 4.17.
//!
//! The kernel is Debian's generic one (`linux-image-amd64`, resolved through the metapackage
//! and downloaded with apt, cached under `.cache/linux/`); the initramfs is Debian's
//! `busybox-static` plus the xenfs modules and an init script, written here as a newc cpio.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::deps::cache_dir;
use crate::qemu::{self, Outcome};
use crate::run;

/// The dom0 memory the Linux runs use (the reference command line Xen 4.17 boots Debian's kernel with).
pub const DOM0_MEM_MB: u64 = 512;
/// Machine memory for the Linux runs.
pub const MACHINE_MEM_MB: u64 = 1024;

/// The unpacked kernel and userland.
pub struct LinuxParts {
    pub vmlinuz: PathBuf,
    pub busybox: PathBuf,
    pub modules: Vec<PathBuf>,
    pub version: String,
}

fn apt_download(dir: &Path, pkg: &str) -> Result<PathBuf> {
    let before: Vec<PathBuf> = debs(dir)?;
    if let Some(p) = before
        .iter()
        .find(|p| deb_name(p).is_some_and(|n| n == pkg))
    {
        return Ok(p.clone());
    }
    run(Command::new("apt-get")
        .args(["download", "-q", pkg])
        .current_dir(dir))?;
    debs(dir)?
        .into_iter()
        .find(|p| deb_name(p).is_some_and(|n| n == pkg))
        .with_context(|| format!("apt-get download {pkg} produced no package"))
}

fn debs(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect())
}

fn deb_name(p: &Path) -> Option<String> {
    Some(p.file_name()?.to_str()?.split('_').next()?.to_string())
}

/// The concrete kernel package the `linux-image-amd64` metapackage depends on.
fn resolve_kernel_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .context("apt-cache could not resolve linux-image-amd64 (run apt-get update?)")
}

/// Downloads (once) and unpacks Debian's kernel and busybox-static.
pub fn ensure_linux() -> Result<LinuxParts> {
    let dir = cache_dir().join("linux");
    std::fs::create_dir_all(&dir)?;
    let unpack = dir.join("root");
    let stamp = dir.join("kernel-package");
    let pkg = match std::fs::read_to_string(&stamp) {
        Ok(p) if unpack.exists() => p.trim().to_string(),
        _ => {
            crate::deps::apt_update()?;
            let pkg = resolve_kernel_package()?;
            eprintln!("xtask: downloading {pkg} and busybox-static");
            for p in [pkg.as_str(), "busybox-static"] {
                let deb = apt_download(&dir, p)?;
                run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpack))?;
            }
            std::fs::write(&stamp, &pkg)?;
            pkg
        }
    };
    let version = pkg.trim_start_matches("linux-image-").to_string();
    let vmlinuz = unpack.join(format!("boot/vmlinuz-{version}"));
    let moddir = unpack.join(format!("lib/modules/{version}/kernel/drivers/xen"));
    let modules = vec![moddir.join("xen-privcmd.ko"), moddir.join("xenfs/xenfs.ko")];
    for p in modules.iter().chain([&vmlinuz]) {
        if !p.exists() {
            bail!("{} is missing from {pkg}", p.display());
        }
    }
    Ok(LinuxParts {
        vmlinuz,
        busybox: unpack.join("bin/busybox"),
        modules,
        version,
    })
}

/// A newc cpio archive, gzip-compressed.
struct Cpio {
    data: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn new() -> Self {
        Cpio {
            data: Vec::new(),
            ino: 1,
        }
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    fn entry(&mut self, name: &str, mode: u32, body: &[u8], rdev: (u32, u32)) {
        let namez = name.len() + 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            body.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            namez as u32,
            0,
        ];
        self.data.extend_from_slice(b"070701");
        for f in fields {
            self.data.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
        self.ino += 1;
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[], (0, 0));
    }

    fn file(&mut self, name: &str, mode: u32, body: &[u8]) {
        self.entry(name, 0o100000 | mode, body, (0, 0));
    }

    fn chardev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020600, &[], (major, minor));
    }

    fn finish(mut self) -> Result<Vec<u8>> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&self.data)?;
        Ok(gz.finish()?)
    }
}

/// What the initramfs's init does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Check the system and power off.
    Probe,
    /// A shell on the console.
    Shell,
}

/// The probe: each check prints `probe: ok ...` or `probe: FAIL ...`, then one result line.
const PROBE: &str = r#"
fail() { echo "probe: FAIL $*"; failed=1; }
ok() { echo "probe: ok $*"; }
echo "probe: init reached at uptime $(cut -d' ' -f1 /proc/uptime) s"

t=$(cat /sys/hypervisor/type 2>/dev/null)
[ "$t" = xen ] && ok "hypervisor type is xen" || fail "hypervisor type is '$t'"
maj=$(cat /sys/hypervisor/version/major 2>/dev/null); min=$(cat /sys/hypervisor/version/minor 2>/dev/null)
[ -n "$maj" ] && ok "hypervisor version $maj.$min$(cat /sys/hypervisor/version/extra 2>/dev/null)" || fail "no hypervisor version"

insmod /lib/modules/xen-privcmd.ko && insmod /lib/modules/xenfs.ko || fail "loading xenfs"
mkdir -p /proc/xen
if mount -t xenfs xenfs /proc/xen; then
    caps=$(cat /proc/xen/capabilities)
    [ "$caps" = control_d ] && ok "xenfs capabilities: $caps" || fail "xenfs capabilities: '$caps'"
else
    fail "mounting xenfs"
fi

kb=$(awk '/MemTotal/ {print $2}' /proc/meminfo)
want=$((probe_mem_mb * 1024))
# The kernel, its reservations and the swiotlb bounce buffer come off the top: on Xen 4.17
# MemTotal is about three quarters of dom0_mem for 512M.
if [ "$kb" -le "$want" ] && [ "$kb" -ge $((want * 70 / 100)) ]; then
    ok "MemTotal ${kb} kB for dom0_mem=${probe_mem_mb}M"
else
    fail "MemTotal ${kb} kB for dom0_mem=${probe_mem_mb}M"
fi

n=$(grep -c ^processor /proc/cpuinfo)
[ "$n" = "$probe_cpus" ] && ok "$n CPUs online (dom0 has a vCPU per CPU)" || fail "$n CPUs online, expected $probe_cpus"

now=$(date +%s)
skew=$((now - probe_host_time))
[ "$skew" -ge -5 ] && [ "$skew" -le 300 ] && ok "wallclock $now, $skew s after the host started QEMU" \
    || fail "wallclock $now is $skew s from the host's $probe_host_time"
u0=$(cut -d' ' -f1 /proc/uptime); d0=$(date +%s)
sleep 3
u1=$(cut -d' ' -f1 /proc/uptime); d1=$(date +%s)
du=$(awk "BEGIN { printf \"%d\", ($u1 - $u0) * 1000 }")
dd=$((d1 - d0))
if [ "$du" -ge 2900 ] && [ "$du" -le 4500 ] && [ "$dd" -ge 2 ] && [ "$dd" -le 5 ]; then
    ok "sleep 3 took ${du} ms of uptime and ${dd} s of wallclock"
else
    fail "sleep 3 took ${du} ms of uptime and ${dd} s of wallclock"
fi

echo "probe: workload: ${probe_work_mb} MB compress, decompress, verify"
# Deterministic data, generated once and not stored: tee hands one copy to sha256sum and
# byte counting through FIFOs while the other makes a gzip round trip through pipes.
gen() { seq 1 $((probe_work_mb * 1024 * 1024 / 7)) | head -c $((probe_work_mb * 1024 * 1024)); }
mkfifo /tmp/raw /tmp/cnt
sha256sum < /tmp/raw > /tmp/s0 &
wc -c < /tmp/cnt > /tmp/n &
s1=$(gen | tee /tmp/raw /tmp/cnt | gzip -1 | gunzip | sha256sum)
wait
s0=$(cat /tmp/s0)
n=$(cat /tmp/n)
[ "$s0" = "$s1" ] && [ "$n" -eq $((probe_work_mb * 1024 * 1024)) ] && ok "workload: ${n} bytes survive compression intact" \
    || fail "workload checksum mismatch (${n} bytes)"

bad=$(dmesg | grep -E "BUG|WARNING|Oops|Call Trace" | head -5)
[ -z "$bad" ] && ok "dmesg has no BUG, WARNING or Oops" || fail "dmesg: $bad"

[ -z "$failed" ] && echo "probe: RESULT PASS" || echo "probe: RESULT FAIL"
poweroff -f
"#;

/// Builds the initramfs for a mode.
pub fn initramfs(parts: &LinuxParts, mode: Mode) -> Result<Vec<u8>> {
    let mut c = Cpio::new();
    for d in [
        "bin",
        "sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "lib",
        "lib/modules",
        "etc",
        "root",
    ] {
        c.dir(d);
    }
    c.chardev("dev/console", 5, 1);
    c.file("bin/busybox", 0o755, &std::fs::read(&parts.busybox)?);
    for m in &parts.modules {
        let name = m
            .file_name()
            .and_then(|n| n.to_str())
            .context("module name")?;
        c.file(&format!("lib/modules/{name}"), 0o644, &std::fs::read(m)?);
    }
    let mut init = String::from(
        "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nexport PATH=/bin\n\
         mount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t devtmpfs dev /dev\nmount -t tmpfs tmp /tmp\n",
    );
    match mode {
        Mode::Probe => init.push_str(PROBE),
        Mode::Shell => init.push_str(
            "echo\necho \"Debian $(uname -r) running as dom0 on $(cat /sys/hypervisor/type) \
             $(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor)$(cat /sys/hypervisor/version/extra)\"\n\
             echo 'BusyBox shell; \"poweroff -f\" ends QEMU.'\n\
             insmod /lib/modules/xen-privcmd.ko; insmod /lib/modules/xenfs.ko\nmkdir -p /proc/xen; mount -t xenfs xenfs /proc/xen\n\
             exec setsid cttyhack sh\n",
        ),
    }
    c.file("init", 0o755, init.as_bytes());
    c.finish()
}

/// Writes the initramfs for a mode into the target directory and returns its path.
pub fn write_initramfs(parts: &LinuxParts, mode: Mode) -> Result<PathBuf> {
    let name = if mode == Mode::Probe {
        "initrd-probe.gz"
    } else {
        "initrd-shell.gz"
    };
    let path = crate::root().join("target").join(name);
    std::fs::write(&path, initramfs(parts, mode)?)?;
    Ok(path)
}

/// The hypervisor command line of the Linux runs (the reference line Xen 4.17 boots Debian's kernel with).
pub fn append() -> String {
    format!(
        "console=com1 loglvl=all noreboot dom0_mem={DOM0_MEM_MB}M {}",
        qemu::DEBUG_EXIT
    )
}

/// The module line: kernel with its command line, then the initrd.
pub fn modules(parts: &LinuxParts, initrd: &Path, work_mb: u64, cpus: u32) -> String {
    let host = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{} console=hvc0 earlyprintk=xen probe_host_time={host} probe_mem_mb={DOM0_MEM_MB} probe_work_mb={work_mb} probe_cpus={cpus},{}",
        parts.vmlinuz.display(),
        initrd.display()
    )
}

/// Boots the probe on one hypervisor image and waits for it to finish.
pub fn boot_probe(image: &Path, modules: &str, cpus: u32, timeout: Duration) -> Result<Outcome> {
    let done = |out: &str| {
        out.contains("probe: RESULT")
            && (out.contains("reboot: ")
                || out.contains("Hardware Dom0")
                || out.contains("Power down"))
            || out.contains("Kernel panic")
            || out.contains("Manual reset required")
    };
    let mem = MACHINE_MEM_MB.to_string();
    let cpus = cpus.to_string();
    qemu::capture_with(
        image,
        modules,
        &append(),
        &["-m", &mem, "-smp", &cpus],
        timeout,
        &done,
        Duration::from_millis(500),
    )
}

/// Guest uptime at which init ran, from the probe's first line.
pub fn time_to_init(out: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.split("probe: init reached at uptime ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
}

/// Boots Linux dom0 interactively with a shell on the console (Ctrl-A X quits QEMU).
pub fn interactive(image: &Path, parts: &LinuxParts) -> Result<()> {
    let initrd = write_initramfs(parts, Mode::Shell)?;
    let modules = format!(
        "{} console=hvc0 earlyprintk=xen,{}",
        parts.vmlinuz.display(),
        initrd.display()
    );
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-M",
        "pc",
        "-cpu",
        "qemu64",
        "-m",
        &MACHINE_MEM_MB.to_string(),
        "-smp",
        "1",
        "-no-reboot",
        "-nographic",
    ]);
    c.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    c.arg("-kernel")
        .arg(image)
        .arg("-initrd")
        .arg(&modules)
        .arg("-append")
        .arg(append());
    eprintln!("xtask: {c:?}");
    let status = c.status().context("starting qemu-system-x86_64")?;
    eprintln!("xtask: QEMU exited with {status}");
    Ok(())
}
