//! Verdicts: `Test result: ...` printed exactly once, then `SCHEDOP_shutdown`.
//!
//! SUCCESS, FAILURE and SKIP power the domain off; ERROR (an unexpected
//! exception, a panic, a broken environment) crashes it. Messages explaining
//! a FAILURE, SKIP or ERROR are printed before the verdict line.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use xen_abi::sched::{SHUTDOWN_CRASH, SHUTDOWN_POWEROFF};

use crate::hypercall;
use crate::println;

/// Outcome of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held.
    Success,
    /// At least one check did not hold.
    Failure,
    /// The test could not run here (reason printed before).
    Skip,
    /// The test itself or its environment broke.
    Error,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::Success => "SUCCESS",
            Verdict::Failure => "FAILURE",
            Verdict::Skip => "SKIP",
            Verdict::Error => "ERROR",
        }
    }
}

static VERDICT_PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints the verdict line (once) and shuts the domain down.
pub fn exit(verdict: Verdict) -> ! {
    if !VERDICT_PRINTED.swap(true, Ordering::SeqCst) {
        println!("Test result: {}", verdict.name());
    }
    let reason = match verdict {
        Verdict::Error => SHUTDOWN_CRASH,
        _ => SHUTDOWN_POWEROFF,
    };
    loop {
        // Returns only if Xen refuses; retrying is all that is left.
        let _ = hypercall::sched_shutdown(reason);
    }
}

/// Ends the test with SKIP, giving the reason.
pub fn skip(why: &str) -> ! {
    println!("SKIP: {why}");
    exit(Verdict::Skip)
}

/// Ends the test with ERROR, giving the reason.
pub fn error(why: &str) -> ! {
    println!("ERROR: {why}");
    exit(Verdict::Error)
}

/// Counts failed checks; the test goes on after each.
#[derive(Debug, Default)]
pub struct Failures {
    count: u32,
}

impl Failures {
    /// No failures yet.
    pub const fn new() -> Self {
        Failures { count: 0 }
    }

    /// Records and prints one failure.
    pub fn fail(&mut self, what: fmt::Arguments<'_>) {
        self.count += 1;
        println!("FAIL: {what}");
    }

    /// Number of failures so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// SUCCESS if nothing failed, else FAILURE.
    pub fn verdict(&self) -> Verdict {
        if self.count == 0 {
            Verdict::Success
        } else {
            Verdict::Failure
        }
    }
}

/// `check!(failures, condition, "format", args...)`: records a failure with
/// the message if the condition is false; evaluates to the condition.
#[macro_export]
macro_rules! check {
    ($failures:expr, $cond:expr, $($arg:tt)+) => {{
        let ok: bool = $cond;
        if !ok {
            $failures.fail(format_args!($($arg)+));
        }
        ok
    }};
}

/// `check_eq!(failures, actual, expected, "what", args...)`: records a failure
/// printing both values (integers in hex) if they differ.
#[macro_export]
macro_rules! check_eq {
    ($failures:expr, $actual:expr, $expected:expr, $($arg:tt)+) => {{
        let actual = $actual;
        let expected = $expected;
        let ok = actual == expected;
        if !ok {
            $failures.fail(format_args!(
                "{}: got {:#x?}, expected {:#x?}",
                format_args!($($arg)+),
                actual,
                expected
            ));
        }
        ok
    }};
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    static PANICKING: AtomicBool = AtomicBool::new(false);
    if !PANICKING.swap(true, Ordering::SeqCst) {
        println!("PANIC: {info}");
    }
    exit(Verdict::Error)
}
