//! Xen's hypervisor boot command line (`console=com1 loglvl=all dom0_mem=512M noreboot`).
//!
//! Options follow Xen's spelling and value syntax (docs/misc/xen-command-line.pandoc). An
//! option this hypervisor does not know is collected in `unknown` so the caller can report
//! and ignore it, as Xen does; a known option with a bad value is collected in `invalid`.
use alloc::string::String;
use alloc::vec::Vec;

/// Console message severity, most severe first (Xen's XENLOG_* thresholds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum LogLevel {
    None = 0,
    Error = 1,
    Warning = 2,
    Info = 3,
    Debug = 4,
}

impl LogLevel {
    fn parse(s: &str) -> Option<LogLevel> {
        // Xen accepts "<lower>[/<upper>]"; the rate-limit part has no meaning here.
        let lower = s.split('/').next().unwrap_or(s);
        Some(match lower {
            "none" => LogLevel::None,
            "error" => LogLevel::Error,
            "warning" => LogLevel::Warning,
            "info" => LogLevel::Info,
            "debug" | "all" => LogLevel::Debug,
            _ => return None,
        })
    }
}

/// A console device named by `console=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleDevice {
    Com1,
    Com2,
    Vga,
    None,
}

/// One `dom0_mem=` constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MemSpec {
    /// Exact amount, if given without a `min:`/`max:` prefix.
    pub amount: Option<MemAmount>,
    pub min: Option<MemAmount>,
    pub max: Option<MemAmount>,
}

/// A memory amount: bytes, or a percentage of host memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemAmount {
    Bytes(u64),
    Percent(u8),
}

impl MemAmount {
    /// Resolves to bytes given the host's total memory.
    pub fn bytes(self, host_bytes: u64) -> u64 {
        match self {
            MemAmount::Bytes(b) => b,
            MemAmount::Percent(p) => (u128::from(host_bytes) * u128::from(p) / 100) as u64,
        }
    }
}

impl MemSpec {
    /// The dom0 allocation in bytes for a host with `avail` bytes free, per Xen's rules: the
    /// amount (or all available memory less a reserve if none), clamped to [min, max].
    pub fn resolve(&self, host_bytes: u64, avail: u64) -> u64 {
        let reserve = core::cmp::min(avail / 16, 128 << 20);
        let mut want = match self.amount {
            Some(a) => a.bytes(host_bytes),
            None => avail.saturating_sub(reserve),
        };
        if let Some(max) = self.max {
            want = want.min(max.bytes(host_bytes));
        }
        if let Some(min) = self.min {
            want = want.max(min.bytes(host_bytes));
        }
        want.min(avail)
    }
}

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmdLine {
    pub consoles: Vec<ConsoleDevice>,
    pub com1_base: u16,
    pub com2_base: u16,
    pub loglvl: LogLevel,
    pub guest_loglvl: LogLevel,
    pub noreboot: bool,
    pub dom0_mem: MemSpec,
    pub dom0_max_vcpus: Option<(u32, u32)>,
    /// `sched=`: only Xen's credit scheduler exists here.
    pub sched: Option<String>,
    pub sync_console: bool,
    /// Port of an `isa-debug-exit` device to report dom0's shutdown reason to (test harness).
    pub debug_exit: Option<u16>,
    /// Log every hypercall with its arguments and result (Xenolith's own debugging option).
    pub hypercall_trace: bool,
    /// Options this hypervisor does not know, reported and ignored.
    pub unknown: Vec<String>,
    /// Known options whose values could not be parsed, with the reason.
    pub invalid: Vec<(String, &'static str)>,
}

impl Default for CmdLine {
    fn default() -> Self {
        CmdLine {
            consoles: Vec::new(),
            com1_base: 0x3f8,
            com2_base: 0x2f8,
            loglvl: LogLevel::Info,
            guest_loglvl: LogLevel::Info,
            noreboot: false,
            dom0_mem: MemSpec::default(),
            dom0_max_vcpus: None,
            sched: None,
            sync_console: false,
            debug_exit: None,
            hypercall_trace: false,
            unknown: Vec::new(),
            invalid: Vec::new(),
        }
    }
}

/// Parses a size with Xen's units: K/M/G/T/B suffix, kilobytes when none is given.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits_end, radix_ok): (usize, fn(char) -> bool) =
        if s.starts_with("0x") || s.starts_with("0X") {
            (2, |c: char| c.is_ascii_hexdigit())
        } else {
            (0, |c: char| c.is_ascii_digit())
        };
    let digits_end = digits_end
        + s[digits_end..]
            .find(|c: char| !radix_ok(c))
            .unwrap_or(s.len() - digits_end);
    let (num, unit) = s.split_at(digits_end);
    let value = parse_int(num)?;
    let shift = match unit {
        "" => 10,
        "b" | "B" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "t" | "T" => 40,
        _ => return None,
    };
    value.checked_mul(1u64 << shift)
}

/// Parses a decimal or 0x-prefixed hexadecimal integer.
pub fn parse_int(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// Parses Xen's boolean spellings.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "yes" | "on" | "true" | "enable" => Some(true),
        "0" | "no" | "off" | "false" | "disable" => Some(false),
        _ => None,
    }
}

fn parse_amount(s: &str) -> Option<MemAmount> {
    if let Some(p) = s.strip_suffix('%') {
        let v: u8 = p.parse().ok()?;
        (v <= 100).then_some(MemAmount::Percent(v))
    } else {
        parse_size(s).map(MemAmount::Bytes)
    }
}

fn parse_dom0_mem(s: &str) -> Option<MemSpec> {
    let mut spec = MemSpec::default();
    for part in s.split(',') {
        if let Some(v) = part.strip_prefix("min:") {
            spec.min = Some(parse_amount(v)?);
        } else if let Some(v) = part.strip_prefix("max:") {
            spec.max = Some(parse_amount(v)?);
        } else {
            spec.amount = Some(parse_amount(part)?);
        }
    }
    Some(spec)
}

fn parse_com(s: &str) -> Option<Option<u16>> {
    // com1=<baud>[/<clock>][,DPS[,<io-base>[,<irq>]]]: only the I/O base matters here.
    let mut fields = s.split(',');
    let _baud = fields.next();
    let _dps = fields.next();
    match fields.next() {
        Some(base) if !base.is_empty() => {
            let v = parse_int(base)?;
            Some(Some(u16::try_from(v).ok()?))
        }
        _ => Some(None),
    }
}

/// Splits a command line into options, honouring double quotes.
fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split_ascii_whitespace()
}

impl CmdLine {
    /// Parses a hypervisor command line (without the image name).
    pub fn parse(line: &str) -> CmdLine {
        let mut c = CmdLine::default();
        for tok in tokens(line) {
            let (key, value) = match tok.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (tok, None),
            };
            let key_norm: String = key
                .chars()
                .map(|ch| if ch == '-' { '_' } else { ch })
                .collect();
            let mut bad = |why: &'static str| c.invalid.push((String::from(tok), why));
            match (key_norm.as_str(), value) {
                ("console", Some(v)) => {
                    let mut devs = Vec::new();
                    for d in v.split(',') {
                        match d {
                            "com1" => devs.push(ConsoleDevice::Com1),
                            "com2" => devs.push(ConsoleDevice::Com2),
                            "vga" => devs.push(ConsoleDevice::Vga),
                            "none" => devs.push(ConsoleDevice::None),
                            "" => {}
                            _ => bad("unknown console device"),
                        }
                    }
                    c.consoles = devs;
                }
                ("com1", Some(v)) => match parse_com(v) {
                    Some(Some(b)) => c.com1_base = b,
                    Some(None) => {}
                    None => bad("bad serial port parameters"),
                },
                ("com2", Some(v)) => match parse_com(v) {
                    Some(Some(b)) => c.com2_base = b,
                    Some(None) => {}
                    None => bad("bad serial port parameters"),
                },
                ("loglvl", Some(v)) => match LogLevel::parse(v) {
                    Some(l) => c.loglvl = l,
                    None => bad("expected none, error, warning, info, debug or all"),
                },
                ("guest_loglvl", Some(v)) => match LogLevel::parse(v) {
                    Some(l) => c.guest_loglvl = l,
                    None => bad("expected none, error, warning, info, debug or all"),
                },
                ("noreboot", None) => c.noreboot = true,
                ("noreboot", Some(v)) => match parse_bool(v) {
                    Some(b) => c.noreboot = b,
                    None => bad("expected a boolean"),
                },
                ("sync_console", None) => c.sync_console = true,
                ("sync_console", Some(v)) => match parse_bool(v) {
                    Some(b) => c.sync_console = b,
                    None => bad("expected a boolean"),
                },
                ("dom0_mem", Some(v)) => match parse_dom0_mem(v) {
                    Some(spec) => c.dom0_mem = spec,
                    None => {
                        bad("expected <size>, min:<size> or max:<size> (units K, M, G, T or %)")
                    }
                },
                ("dom0_max_vcpus", Some(v)) => {
                    let parsed = match v.split_once('-') {
                        Some((lo, hi)) => parse_int(lo).zip(parse_int(hi)),
                        None => parse_int(v).map(|n| (n, n)),
                    };
                    match parsed {
                        Some((lo, hi)) if lo >= 1 && lo <= hi && hi <= u64::from(u32::MAX) => {
                            c.dom0_max_vcpus = Some((lo as u32, hi as u32))
                        }
                        _ => bad("expected <n> or <min>-<max>"),
                    }
                }
                ("sched", Some("credit")) => c.sched = Some(String::from("credit")),
                ("sched", Some(_)) => bad("only the credit scheduler is available"),
                ("hypercall_trace", None) => c.hypercall_trace = true,
                ("hypercall_trace", Some(v)) => match parse_bool(v) {
                    Some(b) => c.hypercall_trace = b,
                    None => bad("expected a boolean"),
                },
                ("debug_exit", Some(v)) => match parse_int(v).and_then(|p| u16::try_from(p).ok()) {
                    Some(p) => c.debug_exit = Some(p),
                    None => bad("expected an I/O port number"),
                },
                _ => c.unknown.push(String::from(tok)),
            }
        }
        c
    }

    /// The UART base to use, if a serial console was requested.
    pub fn serial_base(&self) -> Option<u16> {
        self.consoles.iter().find_map(|d| match d {
            ConsoleDevice::Com1 => Some(self.com1_base),
            ConsoleDevice::Com2 => Some(self.com2_base),
            _ => None,
        })
    }
}

/// Drops the leading image name that multiboot loaders put before the arguments.
///
/// Both QEMU and GRUB pass `"<image path> <args>"`; a first word that already looks like an
/// option (contains `=`) is kept.
pub fn strip_image_name(line: &str) -> &str {
    let trimmed = line.trim_start();
    match trimmed.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((first, rest)) if !first.contains('=') => rest.trim_start(),
        None if !trimmed.contains('=') => "",
        _ => trimmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xen_reference_line() {
        let c = CmdLine::parse("console=com1 loglvl=all noreboot dom0_mem=512M");
        assert_eq!(c.consoles, [ConsoleDevice::Com1]);
        assert_eq!(c.serial_base(), Some(0x3f8));
        assert_eq!(c.loglvl, LogLevel::Debug);
        assert!(c.noreboot);
        assert_eq!(c.dom0_mem.amount, Some(MemAmount::Bytes(512 << 20)));
        assert!(c.unknown.is_empty() && c.invalid.is_empty());
    }

    #[test]
    fn sizes_follow_xen_units() {
        assert_eq!(parse_size("1024"), Some(1 << 20)); // kilobytes by default
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("16m"), Some(16 << 20));
        assert_eq!(parse_size("100B"), Some(100));
        assert_eq!(parse_size("0x10M"), Some(16 << 20));
        assert_eq!(parse_size("12Q"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn sched_option() {
        assert_eq!(
            CmdLine::parse("sched=credit").sched.as_deref(),
            Some("credit")
        );
        let c = CmdLine::parse("sched=credit2");
        assert_eq!(c.sched, None);
        assert_eq!(c.invalid.len(), 1);
    }

    #[test]
    fn dom0_mem_forms() {
        let c = CmdLine::parse("dom0_mem=1G,max:2G,min:512M");
        assert_eq!(c.dom0_mem.amount, Some(MemAmount::Bytes(1 << 30)));
        assert_eq!(c.dom0_mem.max, Some(MemAmount::Bytes(2 << 30)));
        assert_eq!(c.dom0_mem.min, Some(MemAmount::Bytes(512 << 20)));
        let c = CmdLine::parse("dom0_mem=50%");
        assert_eq!(c.dom0_mem.amount, Some(MemAmount::Percent(50)));
        assert_eq!(c.dom0_mem.resolve(1 << 30, 1 << 30), 512 << 20);
        let c = CmdLine::parse("dom0_mem=banana");
        assert_eq!(c.invalid.len(), 1);
    }

    #[test]
    fn dom0_mem_resolution_is_clamped() {
        let spec = CmdLine::parse("dom0_mem=8G").dom0_mem;
        assert_eq!(spec.resolve(1 << 30, 900 << 20), 900 << 20);
        let spec = CmdLine::parse("dom0_mem=max:256M").dom0_mem;
        assert_eq!(spec.resolve(1 << 30, 1 << 30), 256 << 20);
        let spec = MemSpec::default();
        assert_eq!(spec.resolve(1 << 30, 1 << 30), (1 << 30) - (64 << 20));
    }

    #[test]
    fn unknown_options_are_collected() {
        let c = CmdLine::parse("console=com1 frobnicate=3 bogus noreboot=off");
        assert_eq!(c.unknown, ["frobnicate=3", "bogus"]);
        assert!(!c.noreboot);
    }

    #[test]
    fn log_levels() {
        let c = CmdLine::parse("loglvl=warning/debug guest_loglvl=none");
        assert_eq!(c.loglvl, LogLevel::Warning);
        assert_eq!(c.guest_loglvl, LogLevel::None);
        assert_eq!(CmdLine::parse("loglvl=loud").invalid.len(), 1);
    }

    #[test]
    fn com_port_base() {
        let c = CmdLine::parse("console=com2 com2=115200,8n1,0x2e8");
        assert_eq!(c.serial_base(), Some(0x2e8));
        assert_eq!(CmdLine::parse("com1=115200,8n1,0x1ffff").invalid.len(), 1);
    }

    #[test]
    fn vcpus_and_debug_exit() {
        let c = CmdLine::parse("dom0_max_vcpus=2-4 dom0-max-vcpus=1 debug_exit=0xf4");
        assert_eq!(c.dom0_max_vcpus, Some((1, 1)));
        assert_eq!(c.debug_exit, Some(0xf4));
        assert_eq!(CmdLine::parse("dom0_max_vcpus=4-2").invalid.len(), 1);
    }

    #[test]
    fn image_name_is_stripped() {
        assert_eq!(
            strip_image_name("/boot/xen.gz console=com1"),
            "console=com1"
        );
        assert_eq!(strip_image_name("console=com1 x"), "console=com1 x");
        assert_eq!(strip_image_name("xenolith"), "");
        assert_eq!(strip_image_name(""), "");
        assert_eq!(strip_image_name("vmlinuz"), "");
    }
}
