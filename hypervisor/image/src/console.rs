//! The hypervisor console: a 16550 UART (com1/com2) with Xen's log levels.
//!
//! Output before the UART is configured is dropped; after `init`, every line is prefixed with
//! `(XEN) ` like Xen's console so existing log tooling and habits carry over. Guest console
//! output (console_io from dom0) is written raw.
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU8, AtomicUsize, Ordering};

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

/// Console input received by the UART interrupt and not yet read by dom0 (Xen's
/// serial_rx_ring: input past its size is dropped, oldest kept).
const RX_SIZE: usize = 1024;
struct RxRing {
    buf: [AtomicU8; RX_SIZE],
    head: AtomicUsize,
    tail: AtomicUsize,
}
static RX: RxRing = RxRing {
    buf: [const { AtomicU8::new(0) }; RX_SIZE],
    head: AtomicUsize::new(0),
    tail: AtomicUsize::new(0),
};
/// Set when input arrived since dom0 was last told (VIRQ_CONSOLE).
static RX_NOTIFY: AtomicBool = AtomicBool::new(false);
static RX_VECTOR: AtomicU8 = AtomicU8::new(0);

/// Vector base of the master 8259 after remapping (IRQ n arrives at `PIC_BASE + n`).
const PIC_BASE: u8 = 0x20;

/// Turns on the UART's receive interrupt through the legacy PIC (IRQ4 for the first serial
/// port, IRQ3 for the second), masking every other PIC input.
pub fn enable_rx_interrupt() {
    let base = PORT.load(Ordering::Relaxed);
    let irq = match base {
        0x3f8 | 0x3e8 => 4,
        0x2f8 | 0x2e8 => 3,
        _ => return,
    };
    // ICW1-4: edge triggered, cascaded, vectors PIC_BASE.. and PIC_BASE+8.., 8086 mode.
    outb(0x20, 0x11);
    outb(0xa0, 0x11);
    outb(0x21, PIC_BASE);
    outb(0xa1, PIC_BASE + 8);
    outb(0x21, 0x04);
    outb(0xa1, 0x02);
    outb(0x21, 0x01);
    outb(0xa1, 0x01);
    outb(0x21, !(1u8 << irq));
    outb(0xa1, 0xff);
    RX_VECTOR.store(PIC_BASE + irq, Ordering::Relaxed);
    drain_uart();
    outb(base + 4, 0x0b); // DTR, RTS, OUT2 (gates the IRQ line on PCs)
    outb(base + 1, 0x01); // received-data interrupt
}

/// Whether `vector` is the console's receive interrupt.
pub fn is_rx_vector(vector: u64) -> bool {
    let v = RX_VECTOR.load(Ordering::Relaxed);
    v != 0 && vector == u64::from(v)
}

fn drain_uart() -> bool {
    let base = PORT.load(Ordering::Relaxed);
    let mut any = false;
    // Bounded: a UART that always claims data cannot hold the CPU.
    for _ in 0..256 {
        if base == 0 || inb(base + 5) & 1 == 0 {
            break;
        }
        let b = inb(base);
        let head = RX.head.load(Ordering::Relaxed);
        let tail = RX.tail.load(Ordering::Acquire);
        if head.wrapping_sub(tail) < RX_SIZE {
            RX.buf[head % RX_SIZE].store(b, Ordering::Relaxed);
            RX.head.store(head.wrapping_add(1), Ordering::Release);
        }
        any = true;
    }
    any
}

/// The UART's receive interrupt: move its bytes into the ring and acknowledge the PIC.
pub fn rx_interrupt() {
    if drain_uart() {
        RX_NOTIFY.store(true, Ordering::Release);
    }
    outb(0x20, 0x20);
}

/// Whether input arrived since the last `take_rx_notify` (dom0 should get VIRQ_CONSOLE).
#[inline]
pub fn rx_notify_pending() -> bool {
    RX_NOTIFY.load(Ordering::Relaxed)
}

/// Takes the console-input notification (see `rx_notify_pending`).
pub fn take_rx_notify() -> bool {
    RX_NOTIFY.swap(false, Ordering::AcqRel)
}

/// Reads one byte of console input, if any arrived.
pub fn read_byte() -> Option<u8> {
    if RX_VECTOR.load(Ordering::Relaxed) == 0 {
        // No receive interrupt: poll the UART directly.
        drain_uart();
    }
    let tail = RX.tail.load(Ordering::Relaxed);
    if tail == RX.head.load(Ordering::Acquire) {
        return None;
    }
    let b = RX.buf[tail % RX_SIZE].load(Ordering::Relaxed);
    RX.tail.store(tail.wrapping_add(1), Ordering::Release);
    Some(b)
}

/// The UART base in use (0 if none).
pub fn port() -> u16 {
    PORT.load(Ordering::Relaxed)
}
