//! Running a hypervisor image with a dom0 module under QEMU (TCG).
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The hypervisor command line used by `run` and by the tests, on Xenolith and Xen alike.
pub const DEFAULT_APPEND: &str = "console=com1 loglvl=all noreboot dom0_mem=64M";
/// The extra option through which tests get dom0's shutdown reason as QEMU's exit status.
/// Xen reports it as unknown and ignores it.
pub const DEBUG_EXIT: &str = "debug_exit=0xf4";

fn base_command(image: &Path, modules: &str, append: &str) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args([
        "-M",
        "pc",
        "-cpu",
        "qemu64",
        "-m",
        "512",
        "-smp",
        "1",
        "-no-reboot",
    ]);
    c.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    c.arg("-kernel").arg(image);
    c.arg("-initrd").arg(modules);
    c.arg("-append").arg(append);
    c
}

/// Boots interactively with the serial console on the terminal (Ctrl-A X quits QEMU).
pub fn interactive(image: &Path, guest: &Path, extra_modules: &[&Path]) -> Result<()> {
    let mut modules = guest.display().to_string();
    for m in extra_modules {
        modules.push(',');
        modules.push_str(&m.display().to_string());
    }
    let mut c = base_command(image, &modules, &format!("{DEFAULT_APPEND} {DEBUG_EXIT}"));
    c.arg("-nographic");
    eprintln!("xtask: {c:?}");
    let status = c.status().context("starting qemu-system-x86_64")?;
    eprintln!("xtask: QEMU exited with {status}");
    Ok(())
}

/// How a captured boot ended.
#[derive(Debug)]
pub struct Outcome {
    pub output: String,
    /// QEMU's exit code, if it exited by itself.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    /// Wall-clock time from QEMU's start until `stop_when` first held (within 20 ms).
    pub stopped_after: Option<Duration>,
}

/// Boots headless, capturing the serial console, until QEMU exits, `stop_when` says the run is
/// over (then QEMU is killed after `grace`), or `timeout` passes.
pub fn capture(
    image: &Path,
    modules: &str,
    append: &str,
    timeout: Duration,
    stop_when: &dyn Fn(&str) -> bool,
    grace: Duration,
) -> Result<Outcome> {
    capture_with(image, modules, append, &[], timeout, stop_when, grace)
}

/// [`capture`] with extra QEMU arguments (e.g. `-icount shift=0` for the benches).
pub fn capture_with(
    image: &Path,
    modules: &str,
    append: &str,
    qemu_args: &[&str],
    timeout: Duration,
    stop_when: &dyn Fn(&str) -> bool,
    grace: Duration,
) -> Result<Outcome> {
    let mut c = base_command(image, modules, append);
    c.args(qemu_args);
    c.args(["-display", "none", "-serial", "stdio", "-monitor", "none"]);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = c.spawn().context("starting qemu-system-x86_64")?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut output = Vec::new();
    let mut stop_at: Option<Instant> = None;
    let mut stopped_after = None;
    let mut timed_out = false;
    let exit_code = loop {
        while let Ok(chunk) = rx.try_recv() {
            output.extend_from_slice(&chunk);
        }
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if stop_at.is_none() && stop_when(&String::from_utf8_lossy(&output)) {
            stop_at = Some(Instant::now() + grace);
            stopped_after = Some(start.elapsed());
        }
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Drain what is left.
    std::thread::sleep(Duration::from_millis(50));
    while let Ok(chunk) = rx.try_recv() {
        output.extend_from_slice(&chunk);
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let mut text = String::from_utf8_lossy(&output).replace('\r', "");
    if !err.trim().is_empty() {
        text.push_str("\n[qemu stderr] ");
        text.push_str(&err);
    }
    Ok(Outcome {
        output: text,
        exit_code,
        timed_out,
        elapsed: start.elapsed(),
        stopped_after,
    })
}
