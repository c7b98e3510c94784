//! `print!`/`println!` over `console_io(CONSOLEIO_write)`.
//!
//! Each macro call formats into a small stack buffer that is flushed when
//! full and at the end, so output costs few hypercalls and a print from an
//! exception handler cannot corrupt one in progress.

use core::fmt::{self, Write};

use crate::hypercall;

struct Console {
    buf: [u8; 256],
    len: usize,
}

impl Console {
    fn flush(&mut self) {
        if self.len > 0 {
            // Nothing sensible to do if the console refuses output.
            let _ = hypercall::console_write(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let mut console = Console {
        buf: [0; 256],
        len: 0,
    };
    let _ = console.write_fmt(args);
    console.flush();
}

/// Prints to the Xen console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(format_args!($($arg)*))
    };
}

/// Prints a line to the Xen console.
#[macro_export]
macro_rules! println {
    () => {
        $crate::print!("\n")
    };
    ($($arg:tt)*) => {
        $crate::console::_print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
