//! Micro-benchmarks of hypervisor paths: RDTSC timing and machine-readable result lines.
//!
//! A bench kernel times one path (a hypercall, an exception bounce, ...) over
//! many iterations and prints one line per path for `cargo xtask bench`:
//!
//! ```text
//! bench <name> <iterations> <total_cycles>
//! bench <name> skipped: <reason>
//! ```
//!
//! [`measure`] runs one warm-up round and then [`ROUNDS`] timed rounds of
//! `iterations` operations and reports the cheapest round: under QEMU with
//! `-icount shift=0` the TSC counts guest instructions, so rounds differ only
//! by the interrupts that happened to land in them, and the minimum removes
//! those. The cycle figures are therefore instruction counts of the whole
//! path (guest and hypervisor), identical from run to run.
//!
//! A bench is also a correctness test: the caller checks every operation's
//! result (cheaply, inside the timed loop, and thoroughly outside it) and the
//! kernel ends with SUCCESS only if every result was right. A path that needs
//! a hypercall the hypervisor does not implement (-ENOSYS) prints a
//! `skipped` line instead of a figure and does not fail.

use core::fmt;

use xen_abi::Errno;

use crate::println;

/// Timed rounds per bench (after one warm-up round).
pub const ROUNDS: u64 = 5;

/// The time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    crate::shared_info::rdtsc()
}

/// The outcome of [`measure`] or [`measure_rounds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    /// Operations per round.
    pub iterations: u64,
    /// Cycles of the cheapest round.
    pub best: u64,
    /// Operations run in all, warm-up included (for checking handler counts).
    pub calls: u64,
}

impl Measurement {
    /// Cycles per operation of the cheapest round.
    pub fn per_op(&self) -> u64 {
        self.best / self.iterations.max(1)
    }
}

/// Prints the result line of a bench.
pub fn report(name: &str, m: &Measurement) {
    println!("bench {name} {} {}", m.iterations, m.best);
}

/// Prints `bench <name> skipped: <reason>`.
pub fn skipped(name: &str, why: fmt::Arguments<'_>) {
    println!("bench {name} skipped: {why}");
}

/// Runs one warm-up round and [`ROUNDS`] timed rounds of `round(iterations)`,
/// which runs `iterations` operations and returns the cycles they took (or
/// None if it could not run; the bench then stops there and None is
/// returned). Prints the result line.
pub fn measure_rounds(
    name: &str,
    iterations: u64,
    mut round: impl FnMut(u64) -> Option<u64>,
) -> Option<Measurement> {
    round(iterations)?;
    let mut best = u64::MAX;
    for _ in 0..ROUNDS {
        best = best.min(round(iterations)?);
    }
    let m = Measurement {
        iterations,
        best,
        calls: iterations * (ROUNDS + 1),
    };
    report(name, &m);
    Some(m)
}

/// Times `op` (one operation per call) as [`measure_rounds`] does and prints
/// the result line.
pub fn measure(name: &str, iterations: u64, mut op: impl FnMut()) -> Measurement {
    let m = measure_rounds(name, iterations, |n| {
        let start = rdtsc();
        for _ in 0..n {
            op();
        }
        Some(rdtsc().wrapping_sub(start))
    });
    // The closure never gives up.
    m.unwrap_or(Measurement {
        iterations,
        best: 0,
        calls: 0,
    })
}

/// Whether a raw hypercall result says the hypercall or sub-op is not
/// implemented; a bench that needs it should print [`skipped`].
pub fn is_enosys(ret: i64) -> bool {
    ret == Errno::ENOSYS.as_ret()
}
