//! `cargo xtask bench`: hypervisor paths timed side by side on Xenolith and Xen 4.17.
//!
//! Each bench guest (`guests/src/bin/bench-*.rs`) boots as dom0 under QEMU with
//! `-icount shift=0`, first on Xenolith and then on Debian's Xen 4.17, with the same command
//! line. Under `-icount shift=0` the guest's TSC advances by one per instruction QEMU executes,
//! so a "cycle" here is one instruction of the whole path (guest and hypervisor) and every
//! figure repeats exactly from run to run. The guests print `bench <name> <iterations>
//! <total_cycles>` (or `bench <name> skipped: <reason>`) and check every result; this command
//! prints one table (path, cycles per operation on each hypervisor, ratio) and a whole-workload
//! section, and writes the same as Markdown to `target/bench/results.md`.
//!
//! Whole workload: Debian's Linux (see `linux.rs`) boots as dom0 on both hypervisors, also
//! under `-icount shift=0`, and the figure is the kernel's timestamp of `Run /init`: guest
//! time, i.e. instructions executed (at 1 ns each) plus idle time, until user space starts.
//! `--no-linux` leaves it out. A Linux that cannot be fetched or does not reach init gives a
//! row saying so, not a failure.
//!
//! The bench never fails on speed: it fails only if a bench guest's results were wrong (its
//! verdict is not SUCCESS) or it could not run.
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::qemu::{self, Outcome};
use crate::tests::{boot_xen_with, boot_xenolith_with, verdict};
use crate::{build_all, deps, root, target_dir};

/// QEMU arguments of every bench boot.
const ICOUNT: &[&str] = &["-icount", "shift=0"];

/// QEMU's exit status when Xenolith reports dom0's poweroff through isa-debug-exit.
const EXIT_POWEROFF: i32 = 1;

/// One bench guest and the hypervisor options it needs (added to the tests' command line).
struct BenchGuest {
    binary: &'static str,
    options: &'static str,
}

const GUESTS: &[BenchGuest] = &[
    BenchGuest {
        binary: "bench-hypercall",
        options: "",
    },
    BenchGuest {
        binary: "bench-trap",
        options: "",
    },
    BenchGuest {
        // The vCPU switch needs a second vCPU of dom0 on the one physical CPU.
        binary: "bench-event",
        options: "dom0_max_vcpus=2",
    },
];

/// The paths in table order: bench name and description.
const PATHS: &[(&str, &str)] = &[
    ("null-hypercall", "null hypercall (xen_version 0)"),
    ("multicall-32", "multicall of 32 null hypercalls"),
    ("mmu-update-512", "mmu_update of 512 PTEs, one call"),
    (
        "update-va-mapping-invlpg",
        "update_va_mapping with UVMF_INVLPG",
    ),
    ("exception-bounce-ud", "#UD bounce to the guest and iret"),
    ("int80-round-trip", "int $0x80 to the guest and iret"),
    ("syscall-round-trip", "user SYSCALL to the kernel and back"),
    ("evtchn-send-self", "event channel send to self + upcall"),
    ("vcpu-switch", "vCPU switch on one CPU (yield)"),
];

/// What a guest reported for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Figure {
    Measured { iterations: u64, total: u64 },
    Skipped(String),
}

impl Figure {
    fn per_op(&self) -> Option<f64> {
        match *self {
            Figure::Measured { iterations, total } if iterations > 0 => {
                Some(total as f64 / iterations as f64)
            }
            _ => None,
        }
    }

    fn cell(&self) -> String {
        match self {
            Figure::Measured { .. } => format!("{:.1}", self.per_op().unwrap_or(0.0)),
            Figure::Skipped(why) => format!("skipped: {why}"),
        }
    }
}

/// The `bench` lines of a console log, in order.
fn parse(output: &str) -> Vec<(String, Figure)> {
    let mut out = Vec::new();
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("bench ") else {
            continue;
        };
        let Some((name, rest)) = rest.split_once(' ') else {
            continue;
        };
        if let Some(why) = rest.strip_prefix("skipped: ") {
            out.push((name.to_string(), Figure::Skipped(why.trim().to_string())));
            continue;
        }
        let nums: Vec<u64> = rest
            .split_whitespace()
            .map_while(|w| w.parse().ok())
            .collect();
        if let [iterations, total] = nums[..] {
            out.push((name.to_string(), Figure::Measured { iterations, total }));
        }
    }
    out
}

fn save_log(name: &str, who: &str, o: &Outcome) -> Result<()> {
    let dir = root().join("target/bench/logs");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{name}.{who}.log")), &o.output)?;
    Ok(())
}

/// Where a run keeps its copies of the images it boots.
fn snapshot_dir() -> std::path::PathBuf {
    root().join("target/bench/images")
}

/// Copies the hypervisor image and the bench guests where no other build overwrites them
/// during the run (the boots read them one after another); returns the image's copy.
fn snapshot(image: &Path) -> Result<std::path::PathBuf> {
    let dir = snapshot_dir();
    std::fs::create_dir_all(&dir)?;
    for g in GUESTS {
        std::fs::copy(target_dir().join(g.binary), dir.join(g.binary))
            .with_context(|| format!("copying bench guest {}", g.binary))?;
    }
    let copy = dir.join("xenolith.elf32");
    std::fs::copy(image, &copy).context("copying the hypervisor image")?;
    Ok(copy)
}

/// Checks one boot: SUCCESS, a clean end, a figure or a skip for each path the guest printed.
fn judge(guest: &str, who: &str, o: &Outcome, clean_exit: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let v = verdict(&o.output).unwrap_or("NONE");
    if v != "SUCCESS" {
        problems.push(format!("{guest} on {who}: verdict {v}"));
        for l in o.output.lines().filter(|l| {
            l.starts_with("FAIL")
                || l.starts_with("ERROR")
                || l.starts_with("PANIC")
                || l.starts_with("Unhandled")
        }) {
            problems.push(format!("  {l}"));
        }
    }
    if o.timed_out {
        problems.push(format!("{guest} on {who}: timed out"));
    } else if clean_exit && o.exit_code != Some(EXIT_POWEROFF) {
        problems.push(format!(
            "{guest} on {who}: QEMU exit {:?}, expected {EXIT_POWEROFF} (dom0 poweroff)",
            o.exit_code
        ));
    }
    if v == "SUCCESS" && parse(&o.output).is_empty() {
        problems.push(format!("{guest} on {who}: no bench lines"));
    }
    problems
}

/// One table row: bench name, Xenolith's figure, Xen's figure.
type Row = (String, Option<Figure>, Option<Figure>);

/// Boots every bench guest on both hypervisors; returns the rows and the problems found.
fn run_guests(image: &Path, xen: &Path) -> Result<(Vec<Row>, Vec<String>)> {
    let mut rows: Vec<Row> = Vec::new();
    let mut problems = Vec::new();
    for g in GUESTS {
        let module = snapshot_dir().join(g.binary);
        let modules = module.display().to_string();
        let ours = boot_xenolith_with(image, &modules, g.options, ICOUNT)?;
        save_log(g.binary, "xenolith", &ours)?;
        let theirs = boot_xen_with(xen, &modules, g.options, ICOUNT)?;
        save_log(g.binary, "xen", &theirs)?;
        println!(
            "bench guest {} ... Xenolith {} in {:.1}s, Xen 4.17 {} in {:.1}s",
            g.binary,
            verdict(&ours.output).unwrap_or("NONE"),
            ours.elapsed.as_secs_f64(),
            verdict(&theirs.output).unwrap_or("NONE"),
            theirs.elapsed.as_secs_f64()
        );
        problems.extend(judge(g.binary, "Xenolith", &ours, true));
        // Xen halts without ending QEMU: the runner stops it once dom0 has gone.
        problems.extend(judge(g.binary, "Xen 4.17", &theirs, false));
        let (a, b) = (parse(&ours.output), parse(&theirs.output));
        for (name, _) in a.iter().chain(&b) {
            if rows.iter().any(|r| &r.0 == name) {
                continue;
            }
            let find =
                |v: &[(String, Figure)]| v.iter().find(|x| &x.0 == name).map(|x| x.1.clone());
            rows.push((name.clone(), find(&a), find(&b)));
        }
    }
    // Table order: the known paths first, then anything new.
    rows.sort_by_key(|r| PATHS.iter().position(|p| p.0 == r.0).unwrap_or(PATHS.len()));
    Ok((rows, problems))
}

fn describe(name: &str) -> &str {
    PATHS.iter().find(|p| p.0 == name).map_or(name, |p| p.1)
}

fn ratio(ours: &Option<Figure>, theirs: &Option<Figure>) -> String {
    match (
        ours.as_ref().and_then(Figure::per_op),
        theirs.as_ref().and_then(Figure::per_op),
    ) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".to_string(),
    }
}

fn cell(f: &Option<Figure>) -> String {
    f.as_ref().map_or("missing".to_string(), Figure::cell)
}

/// [`cell`] without the reason of a skip (listed under the terminal table instead).
fn short_cell(f: &Option<Figure>) -> String {
    match f {
        Some(Figure::Skipped(_)) => "skipped".to_string(),
        _ => cell(f),
    }
}

/// A whole-workload figure: seconds on each hypervisor and on bare QEMU, or why there is none.
/// Guest time is shown to 10 ms: even under `-icount` a Linux boot moves by some tens of
/// microseconds from run to run (it sees host-dependent inputs: the wall clock, console
/// timing). Wall-clock time is the host's and varies with the machine's load.
struct Workload {
    what: &'static str,
    xenolith: Result<f64, String>,
    xen: Result<f64, String>,
    native: Result<f64, String>,
}

impl Workload {
    fn cells(&self) -> [String; 4] {
        let cell = |r: &Result<f64, String>| match r {
            Ok(s) => format!("{s:.2}"),
            Err(why) => format!("not available: {why}"),
        };
        let ratio = match (&self.xenolith, &self.xen) {
            (Ok(a), Ok(b)) if *b > 0.0 => format!("{:.2}", a / b),
            _ => "-".to_string(),
        };
        [
            cell(&self.xenolith),
            cell(&self.xen),
            ratio,
            cell(&self.native),
        ]
    }
}

/// How long a Linux boot may take under `-icount` before it counts as not reaching init.
const LINUX_TIMEOUT: Duration = Duration::from_secs(300);

/// The kernel's timestamp of `Run /init as init process`, in seconds.
fn run_init_time(out: &str) -> Option<f64> {
    out.lines()
        .find(|l| l.contains("Run /init as init process"))
        .and_then(|l| l.split_once('[')?.1.split_once(']'))
        .and_then(|(t, _)| t.trim().parse().ok())
}

/// One boot to init: guest seconds (the kernel's clock) and host wall-clock seconds.
type InitTimes = Result<(f64, f64), String>;

/// Boots `image` (a hypervisor with Linux as dom0, or Linux itself) until init runs.
fn linux_to_init(image: &Path, modules: &str, append: &str, who: &str) -> InitTimes {
    let mem = crate::linux::MACHINE_MEM_MB.to_string();
    let mut args = vec!["-m", mem.as_str()];
    args.extend_from_slice(ICOUNT);
    let done = |out: &str| {
        out.contains("probe: init reached")
            || out.contains("Kernel panic")
            || out.contains("Hardware Dom0")
            || out.contains("Manual reset required")
    };
    let o = qemu::capture_with(
        image,
        modules,
        append,
        &args,
        LINUX_TIMEOUT,
        &done,
        Duration::from_millis(200),
    )
    .map_err(|e| format!("{e:#}"))?;
    let _ = save_log("linux-dom0", who, &o);
    let guest = run_init_time(&o.output).ok_or_else(|| {
        if o.timed_out {
            format!("no init within {} s", LINUX_TIMEOUT.as_secs())
        } else {
            "Linux did not reach init (see target/bench/logs)".to_string()
        }
    })?;
    let wall = o.stopped_after.unwrap_or(o.elapsed).as_secs_f64();
    Ok((guest, wall))
}

/// The whole-workload figures: Linux boot to init as dom0 on both hypervisors and on bare
/// QEMU (the same kernel and initramfs, `console=ttyS0`, memory limited to dom0's), in guest
/// time and in wall-clock time.
fn whole_workload(image: &Path, xen: &Path) -> Vec<Workload> {
    let rows = |r: [InitTimes; 3]| {
        let pick = |t: &InitTimes, wall: bool| t.clone().map(|(g, w)| if wall { w } else { g });
        vec![
            Workload {
                what: "Linux boot to /init (guest s)",
                xenolith: pick(&r[0], false),
                xen: pick(&r[1], false),
                native: pick(&r[2], false),
            },
            Workload {
                what: "Linux boot to /init (wall s)",
                xenolith: pick(&r[0], true),
                xen: pick(&r[1], true),
                native: pick(&r[2], true),
            },
        ]
    };
    let parts = match crate::linux::ensure_linux() {
        Ok(p) => p,
        Err(e) => {
            let why = format!("no Debian kernel ({e:#})");
            return rows([Err(why.clone()), Err(why.clone()), Err(why)]);
        }
    };
    let initrd = match crate::linux::write_initramfs(&parts, crate::linux::Mode::Probe) {
        Ok(p) => p,
        Err(e) => {
            let why = format!("no initramfs ({e:#})");
            return rows([Err(why.clone()), Err(why.clone()), Err(why)]);
        }
    };
    // Boot stops at init: the probe's workload size does not matter.
    let modules = crate::linux::modules(&parts, &initrd, 1, 1);
    let append = crate::linux::append();
    let ours = linux_to_init(image, &modules, &append, "xenolith");
    let theirs = linux_to_init(xen, &modules, &append, "xen");
    let native_append = format!(
        "console=ttyS0 mem={}M probe_mem_mb={} probe_work_mb=1",
        crate::linux::DOM0_MEM_MB,
        crate::linux::DOM0_MEM_MB
    );
    let native = linux_to_init(
        &parts.vmlinuz,
        &initrd.display().to_string(),
        &native_append,
        "native",
    );
    let w = rows([ours, theirs, native]);
    for r in &w {
        let [a, b, _, n] = r.cells();
        println!("{} ... Xenolith {a}, Xen 4.17 {b}, native {n}", r.what);
    }
    w
}

/// The plain-text table printed on the terminal.
fn text_table(rows: &[Row], work: &[Workload]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<40} {:>16} {:>16} {:>7}",
        "path", "Xenolith cyc/op", "Xen 4.17 cyc/op", "ratio"
    );
    for (name, ours, theirs) in rows {
        let _ = writeln!(
            s,
            "{:<40} {:>16} {:>16} {:>7}",
            describe(name),
            short_cell(ours),
            short_cell(theirs),
            ratio(ours, theirs)
        );
    }
    for (name, ours, theirs) in rows {
        for (who, f) in [("Xenolith", ours), ("Xen 4.17", theirs)] {
            if let Some(Figure::Skipped(why)) = f {
                let _ = writeln!(s, "  skipped: {name} on {who}: {why}");
            }
        }
    }
    let _ = writeln!(
        s,
        "\n{:<40} {:>16} {:>16} {:>7} {:>10}",
        "whole workload", "Xenolith", "Xen 4.17", "ratio", "native"
    );
    if work.is_empty() {
        let _ = writeln!(s, "{:<40} left out (--no-linux)", "Linux boot to /init");
    }
    for w in work {
        let [a, b, r, n] = w.cells();
        if a.len() > 16 || b.len() > 16 || n.len() > 10 {
            let _ = writeln!(
                s,
                "{:<40} Xenolith: {a}; Xen 4.17: {b}; native: {n}",
                w.what
            );
        } else {
            let _ = writeln!(s, "{:<40} {a:>16} {b:>16} {r:>7} {n:>10}", w.what);
        }
    }
    s
}

/// The same as Markdown, for docs/PERFORMANCE.md.
fn markdown_table(rows: &[Row], work: &[Workload]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| path | bench | Xenolith cycles/op | Xen 4.17 cycles/op | ratio (Xenolith/Xen) |"
    );
    let _ = writeln!(s, "|---|---|--:|--:|--:|");
    for (name, ours, theirs) in rows {
        let _ = writeln!(
            s,
            "| {} | `{name}` | {} | {} | {} |",
            describe(name).replace('|', "\\|"),
            cell(ours),
            cell(theirs),
            ratio(ours, theirs)
        );
    }
    let _ = writeln!(
        s,
        "\n| whole workload | Xenolith | Xen 4.17 | ratio (Xenolith/Xen) | native (no hypervisor) |\n|---|--:|--:|--:|--:|"
    );
    if work.is_empty() {
        let _ = writeln!(s, "| Linux boot to /init | left out (`--no-linux`) | | | |");
    }
    for w in work {
        let [a, b, r, n] = w.cells();
        let _ = writeln!(s, "| {} | {a} | {b} | {r} | {n} |", w.what);
    }
    s
}

/// The revision measured: the commit, and whether the tree had uncommitted changes.
fn revision() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match (
        git(&["rev-parse", "--short", "HEAD"]),
        git(&["status", "--porcelain", "--untracked-files=no"]),
    ) {
        (Some(c), Some(st)) if st.is_empty() => format!("commit {c}"),
        (Some(c), Some(_)) => format!("commit {c} with uncommitted changes"),
        _ => "unknown revision".to_string(),
    }
}

/// `cargo xtask bench [--no-linux]`: runs the benches and prints the table.
pub fn run_all(args: &[String]) -> Result<()> {
    let mut with_linux = true;
    for a in args {
        match a.as_str() {
            "--no-linux" => with_linux = false,
            other => bail!("cargo xtask bench: unknown argument {other:?} (only --no-linux)"),
        }
    }
    deps::ensure_build()?;
    deps::ensure_qemu()?;
    println!("== building the hypervisor and bench guests");
    let image = snapshot(&build_all()?)?;
    let xen = deps::ensure_xen()?;
    println!("== bench guests under QEMU -icount shift=0 (1 cycle = 1 instruction)");
    let (rows, problems) = run_guests(&image, &xen)?;
    let mut work = Vec::new();
    if with_linux {
        println!("== whole workload: Debian's Linux as dom0, -icount shift=0");
        work = whole_workload(&image, &xen);
    }
    let table = text_table(&rows, &work);
    println!("\n{table}");
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let md = dir.join("results.md");
    let header = format!(
        "Measured by `cargo xtask bench` at {}, QEMU `-icount shift=0` (1 cycle = 1 \
         instruction).\n\n",
        revision()
    );
    std::fs::write(&md, header + &markdown_table(&rows, &work))?;
    println!(
        "Markdown table: {}; console logs: {}",
        md.display(),
        dir.join("logs").display()
    );
    if !problems.is_empty() {
        for p in &problems {
            println!("{p}");
        }
        bail!("bench guests reported wrong results or could not run");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_figures_and_skips() {
        let log = "(XEN) noise\nbench null-hypercall 1000 341004\nIPI port 1\n\
                   bench vcpu-switch skipped: VCPUOP_is_up returned -ENOSYS\n\
                   bench broken 12\nTest result: SUCCESS\n";
        let p = parse(log);
        assert_eq!(
            p,
            vec![
                (
                    "null-hypercall".to_string(),
                    Figure::Measured {
                        iterations: 1000,
                        total: 341_004
                    }
                ),
                (
                    "vcpu-switch".to_string(),
                    Figure::Skipped("VCPUOP_is_up returned -ENOSYS".to_string())
                ),
            ]
        );
        assert_eq!(p[0].1.cell(), "341.0");
    }

    #[test]
    fn init_time_from_dmesg() {
        let log =
            "[    3.529031] Run /init as init process\nprobe: init reached at uptime 3.54 s\n";
        assert_eq!(run_init_time(log), Some(3.529031));
        assert_eq!(run_init_time("Kernel panic"), None);
    }

    #[test]
    fn ratio_needs_two_figures() {
        let a = Some(Figure::Measured {
            iterations: 10,
            total: 300,
        });
        let b = Some(Figure::Measured {
            iterations: 10,
            total: 100,
        });
        assert_eq!(ratio(&a, &b), "3.00");
        assert_eq!(ratio(&a, &Some(Figure::Skipped("x".into()))), "-");
        assert_eq!(ratio(&None, &b), "-");
    }
}
