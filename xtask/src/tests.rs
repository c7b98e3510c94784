//! `cargo xtask test`: every test.
//!
//! 1. Host: unit and property tests of the pure crates, rustfmt and clippy (warnings are
//!    errors), for host and bare-metal crates.
//! 2. Guests: each test kernel in `guests/manifest` boots as dom0 on Xenolith and on Debian's
//!    Xen 4.17 with the same QEMU and command line. A test passes only if Xenolith's verdict is
//!    SUCCESS and Xen 4.17 agrees, or `guests/expect/<test>.xen` records which verdict Xen
//!    gives and why it differs.
//! 3. Boot failures: malformed dom0 kernels must end with a clear message and a clean stop on
//!    Xenolith, as they do on Xen.
//!
//! The last line is `N passed, M failed`.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::qemu::{self, Outcome, DEBUG_EXIT, DEFAULT_APPEND};
use crate::{build_all, cargo_cmd, deps, root, run, target_dir};

/// QEMU exit status for isa-debug-exit code `c`.
const fn exit_status(c: i32) -> i32 {
    c * 2 + 1
}
/// dom0 powered off (SHUTDOWN_poweroff).
const EXIT_POWEROFF: i32 = exit_status(0);
/// dom0 crashed (SHUTDOWN_crash or crashed by the hypervisor).
const EXIT_CRASH: i32 = exit_status(3);
/// The hypervisor could not build dom0 or panicked.
const EXIT_HYPERVISOR_FAILURE: i32 = exit_status(0x10);

const XENOLITH_TIMEOUT: Duration = Duration::from_secs(90);
const XEN_TIMEOUT: Duration = Duration::from_secs(180);

/// One test guest from the manifest.
#[derive(Debug, Clone)]
pub struct GuestTest {
    pub name: String,
    pub binary: String,
    pub args: String,
    /// The correct outcome is that the hypervisor crashes the domain (no verdict line).
    pub expect_crash: bool,
    /// Extra hypervisor options (`hv:OPTION` words), given to Xenolith and Xen alike.
    pub hv_options: String,
    /// CPUs QEMU gives the machine (`cpus=N`; 1 by default).
    pub cpus: u32,
}

/// Splits a guest's words into its own command line, hypervisor options (`hv:OPTION`) and the
/// machine's CPU count (`cpus=N`).
pub fn split_words(words: &[&str]) -> Result<(String, String, u32)> {
    let (mut guest, mut hv, mut cpus) = (Vec::new(), Vec::new(), 1);
    for w in words {
        if let Some(o) = w.strip_prefix("hv:") {
            hv.push(o);
        } else if let Some(n) = w.strip_prefix("cpus=") {
            cpus = n
                .parse()
                .ok()
                .filter(|&n| (1..=8).contains(&n))
                .with_context(|| format!("cpus={n}: expected 1 to 8"))?;
        } else {
            guest.push(*w);
        }
    }
    Ok((guest.join(" "), hv.join(" "), cpus))
}

/// QEMU arguments for a machine with `cpus` CPUs (the base command has one).
fn cpu_args(cpus: u32) -> Vec<String> {
    if cpus == 1 {
        Vec::new()
    } else {
        vec!["-smp".into(), cpus.to_string()]
    }
}

/// Reads `guests/manifest`: `name  binary [args...] [expect=crash]` per line, `#` comments.
pub fn manifest() -> Result<Vec<GuestTest>> {
    let path = root().join("guests/manifest");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(binary)) = (words.next(), words.next()) else {
            bail!("guests/manifest: bad line {line:?}");
        };
        let mut args: Vec<&str> = words.collect();
        let expect_crash = args.last() == Some(&"expect=crash");
        if expect_crash {
            args.pop();
        }
        let (args, hv_options, cpus) = split_words(&args)?;
        out.push(GuestTest {
            name: name.into(),
            binary: binary.into(),
            args,
            hv_options,
            cpus,
            expect_crash,
        });
    }
    Ok(out)
}

/// The verdict a test kernel printed, if exactly one.
pub fn verdict(output: &str) -> Option<&str> {
    let mut found = output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Test result: "))
        .map(str::trim);
    let first = found.next()?;
    match found.next() {
        None => Some(first.split_whitespace().next().unwrap_or(first)),
        Some(_) => Some("MULTIPLE"),
    }
}

fn log_dir() -> PathBuf {
    root().join("target/test-logs")
}

fn save_log(name: &str, who: &str, o: &Outcome) -> Result<PathBuf> {
    std::fs::create_dir_all(log_dir())?;
    let p = log_dir().join(format!("{name}.{who}.log"));
    std::fs::write(&p, &o.output)?;
    Ok(p)
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Boots a module line on Xenolith until QEMU exits by itself.
pub fn boot_xenolith(image: &Path, modules: &str) -> Result<Outcome> {
    qemu::capture(
        image,
        modules,
        &format!("{DEFAULT_APPEND} {DEBUG_EXIT}"),
        XENOLITH_TIMEOUT,
        &|_| false,
        Duration::ZERO,
    )
}

/// The hypervisor command line of the tests, plus `options` if not empty.
fn append_with(options: &str) -> String {
    if options.is_empty() {
        format!("{DEFAULT_APPEND} {DEBUG_EXIT}")
    } else {
        format!("{DEFAULT_APPEND} {DEBUG_EXIT} {options}")
    }
}

/// [`boot_xenolith`] with extra hypervisor options and QEMU arguments (the benches use
/// `-icount shift=0`).
pub fn boot_xenolith_with(
    image: &Path,
    modules: &str,
    options: &str,
    qemu_args: &[&str],
) -> Result<Outcome> {
    qemu::capture_with(
        image,
        modules,
        &append_with(options),
        qemu_args,
        XENOLITH_TIMEOUT,
        &|_| false,
        Duration::ZERO,
    )
}

/// Whether Xen 4.17's console shows that it halted or gave up (it does not end QEMU).
fn xen_done(out: &str) -> bool {
    out.contains("Hardware Dom0 halted")
        || out.contains("Hardware Dom0 shutdown")
        || out.contains("Hardware Dom0 crashed")
        || out.contains("Manual reset required")
        || out.contains("Resetting with ACPI")
}

/// Boots a module line on Xen 4.17, stopping QEMU once Xen has halted or given up.
pub fn boot_xen(xen: &Path, modules: &str) -> Result<Outcome> {
    qemu::capture(
        xen,
        modules,
        &format!("{DEFAULT_APPEND} {DEBUG_EXIT}"),
        XEN_TIMEOUT,
        &xen_done,
        Duration::from_millis(300),
    )
}

/// [`boot_xen`] with extra hypervisor options and QEMU arguments.
pub fn boot_xen_with(
    xen: &Path,
    modules: &str,
    options: &str,
    qemu_args: &[&str],
) -> Result<Outcome> {
    qemu::capture_with(
        xen,
        modules,
        &append_with(options),
        qemu_args,
        XEN_TIMEOUT,
        &xen_done,
        Duration::from_millis(300),
    )
}

/// A recorded difference with Xen: the verdict Xen gives, and why.
fn xen_expectation(name: &str) -> Result<Option<(String, String)>> {
    let p = root().join("guests/expect").join(format!("{name}.xen"));
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p)?;
    let mut lines = text.lines();
    let v = lines.next().unwrap_or("").trim().to_string();
    Ok(Some((
        v,
        lines.collect::<Vec<_>>().join(" ").trim().to_string(),
    )))
}

struct Tally {
    passed: u32,
    failed: Vec<String>,
}

impl Tally {
    fn record(&mut self, name: &str, ok: bool, detail: &str) {
        if ok {
            self.passed += 1;
            println!("test {name} ... ok ({detail})");
        } else {
            self.failed.push(name.to_string());
            println!("test {name} ... FAILED ({detail})");
        }
    }
}

/// Runs a guest test on both hypervisors and judges it.
fn guest_test(t: &GuestTest, image: &Path, xen: &Path, tally: &mut Tally) -> Result<()> {
    let module = target_dir().join(&t.binary);
    let modules = if t.args.is_empty() {
        module.display().to_string()
    } else {
        format!("{} {}", module.display(), t.args)
    };
    let qargs = cpu_args(t.cpus);
    let qargs: Vec<&str> = qargs.iter().map(String::as_str).collect();
    let ours = boot_xenolith_with(image, &modules, &t.hv_options, &qargs)?;
    let ours_log = save_log(&t.name, "xenolith", &ours)?;
    let theirs = boot_xen_with(xen, &modules, &t.hv_options, &qargs)?;
    let theirs_log = save_log(&t.name, "xen", &theirs)?;
    let v_ours = verdict(&ours.output).unwrap_or("NONE");
    let v_xen = verdict(&theirs.output).unwrap_or("NONE");
    let mut problems = Vec::new();
    if t.expect_crash {
        // The guest must be crashed by the hypervisor before it can print a verdict.
        if v_ours != "NONE"
            || ours.exit_code != Some(EXIT_CRASH)
            || !ours.output.contains("crashed")
        {
            problems.push(format!(
                "Xenolith did not crash the domain (verdict {v_ours}, exit {:?})",
                ours.exit_code
            ));
        }
        if v_xen != "NONE" || !theirs.output.contains("Hardware Dom0 crashed") {
            problems.push(format!(
                "Xen 4.17 did not crash the domain (verdict {v_xen})"
            ));
        }
        let detail = format!(
            "domain crashed as expected: xenolith in {:.1}s, xen-4.17 in {:.1}s",
            ours.elapsed.as_secs_f64(),
            theirs.elapsed.as_secs_f64()
        );
        if !problems.is_empty() {
            println!("  {}", problems.join("; "));
            println!(
                "  --- Xenolith ({}) ---\n{}",
                ours_log.display(),
                tail(&ours.output, 25)
            );
            println!(
                "  --- Xen 4.17 ({}) ---\n{}",
                theirs_log.display(),
                tail(&theirs.output, 15)
            );
        }
        tally.record(&t.name, problems.is_empty(), &detail);
        return Ok(());
    }
    if v_ours != "SUCCESS" {
        problems.push(format!("Xenolith verdict {v_ours}"));
    }
    let expected_exit = if v_ours == "ERROR" {
        EXIT_CRASH
    } else {
        EXIT_POWEROFF
    };
    if ours.exit_code != Some(expected_exit) {
        problems.push(format!(
            "Xenolith ended with {} (expected QEMU exit {expected_exit})",
            match (ours.exit_code, ours.timed_out) {
                (_, true) => "a timeout".to_string(),
                (Some(c), _) => format!("QEMU exit {c}"),
                (None, _) => "no exit".to_string(),
            }
        ));
    }
    match xen_expectation(&t.name)? {
        Some((expect, why)) if v_xen == expect => {
            println!("  note: Xen 4.17 gives {v_xen} here, as recorded: {why}");
        }
        Some((expect, _)) => problems.push(format!(
            "Xen 4.17 verdict {v_xen}, recorded expectation {expect}"
        )),
        None if v_xen != v_ours => problems.push(format!("Xen 4.17 disagrees: {v_xen}")),
        None => {}
    }
    let detail = format!(
        "xenolith {v_ours} in {:.1}s, xen-4.17 {v_xen} in {:.1}s",
        ours.elapsed.as_secs_f64(),
        theirs.elapsed.as_secs_f64()
    );
    if !problems.is_empty() {
        println!("  {}", problems.join("; "));
        println!(
            "  --- Xenolith ({}) ---\n{}",
            ours_log.display(),
            tail(&ours.output, 25)
        );
        println!(
            "  --- Xen 4.17 ({}) ---\n{}",
            theirs_log.display(),
            tail(&theirs.output, 15)
        );
    }
    tally.record(&t.name, problems.is_empty(), &detail);
    Ok(())
}

/// A malformed dom0 kernel: both hypervisors must refuse it with a clear message and stop.
fn bad_kernel_test(
    name: &str,
    bytes: &[u8],
    our_message: &str,
    image: &Path,
    xen: &Path,
    tally: &mut Tally,
) -> Result<()> {
    let dir = root().join("target/test-modules");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    let modules = path.display().to_string();
    let ours = boot_xenolith(image, &modules)?;
    save_log(name, "xenolith", &ours)?;
    let theirs = boot_xen(xen, &modules)?;
    save_log(name, "xen", &theirs)?;
    let mut problems = Vec::new();
    if !ours.output.contains(our_message) {
        problems.push(format!("Xenolith did not say {our_message:?}"));
    }
    if !ours.output.contains("Could not set up dom0") {
        problems.push("Xenolith did not stop with \"Could not set up dom0\"".to_string());
    }
    if ours.exit_code != Some(EXIT_HYPERVISOR_FAILURE) {
        problems.push(format!(
            "Xenolith QEMU exit {:?}, expected {EXIT_HYPERVISOR_FAILURE}",
            ours.exit_code
        ));
    }
    if ours.output.contains("hypervisor bug") || ours.output.contains("unexpected exception") {
        problems.push("Xenolith crashed instead of refusing".to_string());
    }
    // Xen refuses with a panic whose wording depends on where parsing stopped ("Could not
    // construct domain 0", "Not enough memory to relocate the dom0 kernel image", ...).
    let xen_refused = theirs.output.contains("Panic on CPU 0")
        && theirs.output.contains("Manual reset required")
        && verdict(&theirs.output).is_none();
    if !xen_refused {
        problems.push("Xen 4.17 did not refuse the image (it should)".to_string());
    }
    if !problems.is_empty() {
        println!("  {}", problems.join("; "));
        println!("  --- Xenolith ---\n{}", tail(&ours.output, 15));
        println!("  --- Xen 4.17 ---\n{}", tail(&theirs.output, 10));
    }
    let detail = format!(
        "Xenolith refused in {:.1}s, Xen 4.17 refused: {xen_refused}",
        ours.elapsed.as_secs_f64()
    );
    tally.record(name, problems.is_empty(), &detail);
    Ok(())
}

/// Deterministic pseudo-random bytes (xorshift), so the garbage test is repeatable.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Host-side checks: unit/property tests, formatting and lints.
fn host_checks() -> Result<()> {
    println!("== host tests");
    run(cargo_cmd().args(["test"]))?;
    println!("== formatting");
    run(cargo_cmd().args(["fmt", "--all", "--check"]))?;
    println!("== clippy (host crates)");
    run(cargo_cmd().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    println!("== clippy (bare-metal crates)");
    run(cargo_cmd().args([
        "clippy",
        "--release",
        "--target",
        "x86_64-unknown-none",
        "-p",
        "xenolith",
        "-p",
        "xenolith-arch",
        "-p",
        "xenolith-guests",
        "--bins",
        "--lib",
        "--",
        "-D",
        "warnings",
    ]))?;
    Ok(())
}

/// Fuzz targets and how long each runs in the suite.
const FUZZ_TARGETS: &[&str] = &["loader", "pagetype"];
const FUZZ_SECONDS: u32 = 30;

/// Bounded cargo-fuzz runs of every target; a crash fails the suite.
fn fuzz_runs() -> Result<()> {
    println!("== bounded fuzz runs ({FUZZ_SECONDS} s per target)");
    deps::ensure_fuzz()?;
    let dir = root().join("fuzz");
    for t in FUZZ_TARGETS {
        let corpus = dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus)?;
        let mut cmd = std::process::Command::new("cargo");
        cmd.current_dir(&dir)
            .args(["+nightly", "fuzz", "run", t])
            .arg(&corpus);
        let seeds = dir.join("seeds").join(t);
        if seeds.exists() {
            cmd.arg(&seeds);
        }
        cmd.args([
            "--",
            &format!("-max_total_time={FUZZ_SECONDS}"),
            "-print_final_stats=1",
        ]);
        let out = cmd
            .output()
            .with_context(|| format!("starting cargo fuzz for {t}"))?;
        let mut log = out.stdout;
        log.extend_from_slice(&out.stderr);
        std::fs::create_dir_all(log_dir())?;
        let log_path = log_dir().join(format!("fuzz-{t}.log"));
        std::fs::write(&log_path, &log)?;
        let text = String::from_utf8_lossy(&log);
        if !out.status.success() {
            println!("{}", tail(&text, 40));
            bail!(
                "fuzz target {t} found a failure (log {}, input in fuzz/artifacts/{t})",
                log_path.display()
            );
        }
        let runs = text
            .lines()
            .find(|l| l.contains("stat::number_of_executed_units"))
            .unwrap_or("")
            .trim();
        println!("fuzz {t}: no failure in {FUZZ_SECONDS} s ({runs})");
    }
    Ok(())
}

/// Runs the whole suite.
pub fn run_all() -> Result<()> {
    host_checks()?;
    fuzz_runs()?;
    println!("== building the hypervisor and test guests");
    let image = build_all()?;
    let xen = deps::ensure_xen()?;
    let mut tally = Tally {
        passed: 0,
        failed: Vec::new(),
    };
    println!("== test guests on Xenolith and Xen 4.17");
    for t in manifest()? {
        guest_test(&t, &image, &xen, &mut tally)?;
    }
    println!("== Debian Linux as dom0");
    linux_probe(&image, &xen, None, PROBE_UP, &mut tally)?;
    linux_probe(&image, &xen, None, PROBE_SMP, &mut tally)?;
    println!("== malformed dom0 kernels");
    let hello = std::fs::read(target_dir().join("hello"))?;
    bad_kernel_test(
        "truncated-kernel",
        &hello[..hello.len() / 3],
        "kernel image truncated",
        &image,
        &xen,
        &mut tally,
    )?;
    bad_kernel_test(
        "garbage-kernel",
        &garbage(64 * 1024, 0x5eed),
        "kernel image format not recognised",
        &image,
        &xen,
        &mut tally,
    )?;
    let mut summary = String::new();
    if !tally.failed.is_empty() {
        let _ = writeln!(summary, "failed: {}", tally.failed.join(", "));
    }
    print!("{summary}");
    println!("{} passed, {} failed", tally.passed, tally.failed.len());
    if !tally.failed.is_empty() {
        bail!("{} test(s) failed", tally.failed.len());
    }
    Ok(())
}

/// `cargo xtask try [--xen|--both] GUEST [ARGS...]`: one guest, headless, console printed.
pub fn try_guest(args: &[String]) -> Result<()> {
    let (mut on_xen, mut on_ours) = (false, true);
    let mut rest = args;
    match rest.first().map(String::as_str) {
        Some("--xen") => {
            on_xen = true;
            on_ours = false;
            rest = &rest[1..];
        }
        Some("--both") => {
            on_xen = true;
            rest = &rest[1..];
        }
        _ => {}
    }
    let Some((guest, guest_args)) = rest.split_first() else {
        bail!("usage: cargo xtask try [--xen|--both] GUEST [ARGS...]");
    };
    // Only build the hypervisor when it is going to run.
    let image = if on_ours {
        build_all()?
    } else {
        crate::build_guests()?;
        PathBuf::new()
    };
    let module = crate::guest_path(guest)?;
    let words: Vec<&str> = guest_args.iter().map(String::as_str).collect();
    let (guest_args, hv_options, cpus) = split_words(&words)?;
    let qargs = cpu_args(cpus);
    let qargs: Vec<&str> = qargs.iter().map(String::as_str).collect();
    let modules = if guest_args.is_empty() {
        module.display().to_string()
    } else {
        format!("{} {}", module.display(), guest_args)
    };
    if on_ours {
        let o = boot_xenolith_with(&image, &modules, &hv_options, &qargs)?;
        println!("{}", o.output);
        println!(
            "== Xenolith: verdict {}, QEMU exit {:?}{}, {:.1}s",
            verdict(&o.output).unwrap_or("NONE"),
            o.exit_code,
            if o.timed_out { " (timed out)" } else { "" },
            o.elapsed.as_secs_f64()
        );
    }
    if on_xen {
        let xen = deps::ensure_xen()?;
        let o = boot_xen_with(&xen, &modules, &hv_options, &qargs)?;
        println!("{}", o.output);
        println!(
            "== Xen 4.17: verdict {}{}, {:.1}s",
            verdict(&o.output).unwrap_or("NONE"),
            if o.timed_out { " (timed out)" } else { "" },
            o.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// MB of data the Linux probe compresses and verifies.
const LINUX_WORK_MB: u64 = 256;
const LINUX_TIMEOUT: Duration = Duration::from_secs(900);

/// One Linux probe run: its test name, CPUs (dom0 gets a vCPU per CPU) and workload.
#[derive(Clone, Copy)]
pub struct Probe {
    pub name: &'static str,
    pub cpus: u32,
    pub work_mb: u64,
}

/// The main probe: one CPU, the full workload.
pub const PROBE_UP: Probe = Probe {
    name: "linux-dom0",
    cpus: 1,
    work_mb: LINUX_WORK_MB,
};

/// The SMP probe: two CPUs (dom0 with two vCPUs), a shorter workload.
pub const PROBE_SMP: Probe = Probe {
    name: "linux-dom0-smp",
    cpus: 2,
    work_mb: 32,
};

/// Debian's Linux as dom0 on Xenolith and on Xen 4.17, running the probe initramfs.
fn linux_probe(
    image: &Path,
    xen: &Path,
    only: Option<&str>,
    probe: Probe,
    tally: &mut Tally,
) -> Result<()> {
    let parts = crate::linux::ensure_linux()?;
    let initrd = crate::linux::write_initramfs(&parts, crate::linux::Mode::Probe)?;
    let mut results = Vec::new();
    for (who, img) in [("xenolith", image), ("xen-4.17", xen)] {
        // "xen" names Xen 4.17 only, not Xenolith.
        if only.is_some_and(|o| !(who == o || who == "xen-4.17" && o == "xen")) {
            continue;
        }
        let modules = crate::linux::modules(&parts, &initrd, probe.work_mb, probe.cpus);
        let o = crate::linux::boot_probe(img, &modules, probe.cpus, LINUX_TIMEOUT)?;
        save_log(probe.name, who, &o)?;
        let passed = o.output.contains("probe: RESULT PASS");
        let init = crate::linux::time_to_init(&o.output);
        for l in o.output.lines().filter(|l| l.contains("probe: ")) {
            println!("  [{who}] {}", l.trim());
        }
        if !passed {
            println!("  --- {who} ---\n{}", tail(&o.output, 30));
        }
        results.push((who, passed, init, o.elapsed));
    }
    if results.len() == 1 {
        let (who, ok, init, wall) = results[0];
        let init = init.map_or("-".to_string(), |s| format!("{s:.2} s"));
        println!(
            "  {who}: time to init {init}, whole run {:.1} s",
            wall.as_secs_f64()
        );
        tally.record(
            probe.name,
            ok,
            &format!(
                "Debian {} as dom0 with {} vCPU(s) on {who}",
                parts.version, probe.cpus
            ),
        );
        return Ok(());
    }
    let fmt = |i: Option<f64>| i.map_or("-".to_string(), |s| format!("{s:.2} s"));
    println!(
        "  time to init (guest uptime):  Xenolith {}   Xen 4.17 {}",
        fmt(results[0].2),
        fmt(results[1].2)
    );
    println!(
        "  whole run (wall clock):       Xenolith {:.1} s   Xen 4.17 {:.1} s",
        results[0].3.as_secs_f64(),
        results[1].3.as_secs_f64()
    );
    let ok = results.iter().all(|r| r.1);
    let detail = format!(
        "Debian {} as dom0 with {} vCPU(s): Xenolith {}, Xen 4.17 {}",
        parts.version,
        probe.cpus,
        if results[0].1 { "PASS" } else { "FAIL" },
        if results[1].1 { "PASS" } else { "FAIL" }
    );
    tally.record(probe.name, ok, &detail);
    Ok(())
}

/// `cargo xtask linux-probe [xenolith|xen] [--smp]`: only a Linux dom0 probe (the main one, or
/// the two-CPU one), on both hypervisors or one.
pub fn linux_only(args: &[String]) -> Result<()> {
    let smp = args.iter().any(|a| a == "--smp");
    let only = args.iter().map(String::as_str).find(|a| *a != "--smp");
    let probe = if smp { PROBE_SMP } else { PROBE_UP };
    if let Some(o) = only.filter(|o| !["xenolith", "xen"].contains(o)) {
        bail!("linux-probe: unknown hypervisor {o:?} (xenolith or xen)");
    }
    let image = build_all()?;
    let xen = deps::ensure_xen()?;
    let mut tally = Tally {
        passed: 0,
        failed: Vec::new(),
    };
    linux_probe(&image, &xen, only, probe, &mut tally)?;
    println!("{} passed, {} failed", tally.passed, tally.failed.len());
    if !tally.failed.is_empty() {
        bail!("the Linux probe failed");
    }
    Ok(())
}
