//! The hypervisor console: a 16550 UART (com1/com2) with Xen's log levels.
//!
//! Output before the UART is configured is dropped; after `init`, every line is prefixed with
//! `(XEN) ` like Xen's console so existing log tooling and habits carry over. Guest console
//! output (console_io from dom0) is written raw.
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU16, AtomicU8, Ordering};

use xenolith_arch::port::{inb, outb};
use xenolith_core::cmdline::LogLevel;

static PORT: AtomicU16 = AtomicU16::new(0);
static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);
static GUEST_LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);
static AT_LINE_START: AtomicU8 = AtomicU8::new(1);

/// Programs the UART at `base` for 115200 8N1 and starts using it.
pub fn init(base: u16) {
    outb(base + 1, 0x00); // no interrupts
    outb(base + 3, 0x80); // DLAB
    outb(base, 0x01); // divisor 1 = 115200 baud
    outb(base + 1, 0x00);
    outb(base + 3, 0x03); // 8N1
    outb(base + 2, 0xC7); // FIFO on, cleared, 14-byte threshold
    outb(base + 4, 0x03); // DTR, RTS
    PORT.store(base, Ordering::Relaxed);
}

/// Sets the hypervisor and guest log thresholds.
pub fn set_levels(hyp: LogLevel, guest: LogLevel) {
    LEVEL.store(hyp as u8, Ordering::Relaxed);
    GUEST_LEVEL.store(guest as u8, Ordering::Relaxed);
}

fn put_byte(b: u8) {
    let base = PORT.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    // Wait for the transmit holding register; bounded so a missing UART cannot hang us.
    for _ in 0..100_000 {
        if inb(base + 5) & 0x20 != 0 {
            break;
        }
    }
    outb(base, b);
}

/// Writes raw bytes, translating `\n` to `\r\n`.
pub fn write_raw(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            put_byte(b'\r');
        }
        put_byte(b);
        AT_LINE_START.store(u8::from(b == b'\n'), Ordering::Relaxed);
    }
}

struct Prefixed;

impl Write for Prefixed {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if AT_LINE_START.load(Ordering::Relaxed) != 0 {
                write_raw(b"(XEN) ");
            }
            write_raw(&[b]);
        }
        Ok(())
    }
}

/// Prints a hypervisor message at `level` if the threshold allows.
pub fn log(level: LogLevel, args: fmt::Arguments<'_>) {
    if level as u8 > LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let _ = Prefixed.write_fmt(args);
}

/// Prints regardless of level (panics, fatal errors).
pub fn force(args: fmt::Arguments<'_>) {
    let _ = Prefixed.write_fmt(args);
}

/// Prints a line at a level.
#[macro_export]
macro_rules! log {
    ($lvl:expr, $($arg:tt)*) => { $crate::console::log($lvl, format_args!("{}\n", format_args!($($arg)*))) };
}
/// Prints an error line.
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log!(xenolith_core::cmdline::LogLevel::Error, $($arg)*) }; }
/// Prints a warning line.
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log!(xenolith_core::cmdline::LogLevel::Warning, $($arg)*) }; }
/// Prints an informational line.
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log!(xenolith_core::cmdline::LogLevel::Info, $($arg)*) }; }
/// Prints a debug line.
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log!(xenolith_core::cmdline::LogLevel::Debug, $($arg)*) }; }

/// Reads one byte of console input if the UART has one.
pub fn read_byte() -> Option<u8> {
    let base = PORT.load(Ordering::Relaxed);
    if base == 0 || inb(base + 5) & 1 == 0 {
        return None;
    }
    Some(inb(base))
}

/// The UART base in use (0 if none).
pub fn port() -> u16 {
    PORT.load(Ordering::Relaxed)
}
