//! Time: TSC calibration against the PIT, the CMOS real-time clock, the local APIC timer, and
//! the guest-visible clock (vcpu_time_info and the shared_info wallclock).
//!
//! System time is nanoseconds since the TSC was calibrated, computed with the same
//! (mul, shift) scale guests use, so the hypervisor and its guests agree exactly.
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use xen_abi::shared_info::{SharedInfo, VcpuInfo};
use xenolith_arch::instr::{rdtsc, sti_hlt_cli};
use xenolith_arch::port::{inb, outb};

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static MUL: AtomicU32 = AtomicU32::new(0);
static SHIFT: AtomicI32 = AtomicI32::new(0);
static BOOT_UNIX_NS: AtomicU64 = AtomicU64::new(0);
static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);
static LAPIC_BASE: AtomicU64 = AtomicU64::new(0);
static LAPIC_TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);

const PIT_HZ: u64 = 1_193_182;

/// TSC frequency in kHz.
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Xen's time scale for a counter of `hz`: ns = ((ticks shifted by `shift`) * mul) >> 32.
pub fn time_scale(hz: u64) -> (u32, i8) {
    const NS: u64 = 1_000_000_000;
    let mut tps = hz.max(1);
    let mut shift: i8 = 0;
    while tps > 2 * NS {
        tps >>= 1;
        shift -= 1;
    }
    while tps <= NS {
        tps <<= 1;
        shift += 1;
    }
    (((NS << 32) / tps) as u32, shift)
}

fn scale_delta(delta: u64) -> u64 {
    let shift = SHIFT.load(Ordering::Relaxed);
    let d = if shift >= 0 {
        delta << shift
    } else {
        delta >> (-shift)
    };
    ((u128::from(d) * u128::from(MUL.load(Ordering::Relaxed))) >> 32) as u64
}

/// Nanoseconds since boot.
pub fn now_ns() -> u64 {
    scale_delta(rdtsc().wrapping_sub(BOOT_TSC.load(Ordering::Relaxed)))
}

/// Measures the TSC against PIT channel 2 over 50 ms.
fn calibrate_tsc() -> u64 {
    let latch = PIT_HZ / 20;
    outb(0x61, (inb(0x61) & !0x02) | 0x01);
    outb(0x43, 0xb0);
    outb(0x42, (latch & 0xff) as u8);
    outb(0x42, (latch >> 8) as u8);
    let t0 = rdtsc();
    let mut spins = 0u64;
    while inb(0x61) & 0x20 == 0 {
        spins += 1;
        if spins > 100_000_000 {
            crate::warn!("PIT did not count: assuming a 1 GHz TSC");
            return 1_000_000_000;
        }
    }
    let t1 = rdtsc();
    (t1 - t0) * PIT_HZ / latch
}

fn cmos(reg: u8) -> u8 {
    outb(0x70, reg);
    inb(0x71)
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Reads the CMOS clock as seconds since the Unix epoch.
fn read_rtc() -> u64 {
    for _ in 0..1_000_000 {
        if cmos(0x0a) & 0x80 == 0 {
            break;
        }
    }
    let b = cmos(0x0b);
    let bcd = |v: u8| {
        if b & 4 == 0 {
            (v & 0x0f) + (v >> 4) * 10
        } else {
            v
        }
    };
    let sec = bcd(cmos(0x00));
    let min = bcd(cmos(0x02));
    let hour_raw = cmos(0x04);
    let mut hour = bcd(hour_raw & 0x7f);
    if b & 2 == 0 && hour_raw & 0x80 != 0 {
        hour = (hour % 12) + 12;
    }
    let day = bcd(cmos(0x07));
    let month = bcd(cmos(0x08));
    let year = 2000 + i64::from(bcd(cmos(0x09)));
    let days = days_from_civil(year, u32::from(month), u32::from(day));
    (days * 86400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec)).max(0) as u64
}

pub fn lapic_write(reg: u64, v: u32) {
    let base = LAPIC_BASE.load(Ordering::Relaxed);
    // SAFETY: the local APIC page is MMIO in the direct map; `reg` is an APIC register
    // offset below 0x400.
    unsafe { core::ptr::write_volatile(crate::mm::phys_to_virt(base + reg) as *mut u32, v) }
}

pub fn lapic_read(reg: u64) -> u32 {
    let base = LAPIC_BASE.load(Ordering::Relaxed);
    // SAFETY: as for `lapic_write`.
    unsafe { core::ptr::read_volatile(crate::mm::phys_to_virt(base + reg) as *const u32) }
}

const APIC_EOI: u64 = 0xb0;
const APIC_SVR: u64 = 0xf0;
const APIC_LVT_TIMER: u64 = 0x320;
const APIC_TIMER_INIT: u64 = 0x380;
const APIC_TIMER_CUR: u64 = 0x390;
const APIC_TIMER_DIV: u64 = 0x3e0;

/// Calibrates the clocks, reads the RTC and brings up the local APIC timer.
pub fn init() {
    let hz = calibrate_tsc();
    BOOT_TSC.store(rdtsc(), Ordering::Relaxed);
    TSC_KHZ.store(hz / 1000, Ordering::Relaxed);
    let (mul, shift) = time_scale(hz);
    MUL.store(mul, Ordering::Relaxed);
    SHIFT.store(i32::from(shift), Ordering::Relaxed);
    let unix = read_rtc();
    BOOT_UNIX_NS.store(unix * 1_000_000_000, Ordering::Relaxed);
    crate::info!(
        "TSC: {}.{:03} MHz; wallclock {} s since the epoch",
        hz / 1_000_000,
        (hz / 1000) % 1000,
        unix
    );

    // Mask the legacy PICs: all interrupts come through the local APIC.
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    let apic_base = xenolith_arch::msr::rdmsr(xenolith_arch::msr::Msr::ApicBase);
    LAPIC_BASE.store(apic_base & 0xf_ffff_f000, Ordering::Relaxed);
    lapic_write(APIC_SVR, 0x100 | crate::traps::VECTOR_SPURIOUS as u32);
    lapic_write(APIC_TIMER_DIV, 0b1011);
    lapic_write(
        APIC_LVT_TIMER,
        crate::traps::VECTOR_TIMER as u32 | (1 << 16),
    );
    lapic_write(APIC_TIMER_INIT, u32::MAX);
    let t0 = now_ns();
    while now_ns() - t0 < 1_000_000 {}
    let ticks = u64::from(u32::MAX - lapic_read(APIC_TIMER_CUR));
    lapic_write(APIC_TIMER_INIT, 0);
    LAPIC_TICKS_PER_MS.store(ticks.max(1), Ordering::Relaxed);
    lapic_write(APIC_LVT_TIMER, crate::traps::VECTOR_TIMER as u32);

    // Prove the timer interrupt path works before any guest depends on it.
    let before = TIMER_TICKS.load(Ordering::Relaxed);
    arm_oneshot_us(100);
    let start = now_ns();
    while TIMER_TICKS.load(Ordering::Relaxed) == before && now_ns() - start < 100_000_000 {
        sti_hlt_cli();
    }
    if TIMER_TICKS.load(Ordering::Relaxed) == before {
        crate::warn!("local APIC timer interrupt did not arrive");
    } else {
        crate::info!("local APIC timer: {} ticks/ms, interrupt delivered", ticks);
    }
}

/// Enables this (secondary) CPU's local APIC with the timer set up as on the boot CPU (same
/// bus clock, so the boot CPU's calibration holds).
pub fn init_ap() {
    lapic_write(APIC_SVR, 0x100 | crate::traps::VECTOR_SPURIOUS as u32);
    lapic_write(APIC_TIMER_DIV, 0b1011);
    lapic_write(APIC_LVT_TIMER, crate::traps::VECTOR_TIMER as u32);
    lapic_write(APIC_TIMER_INIT, 0);
}

/// This CPU's local APIC id.
pub fn lapic_id() -> u32 {
    lapic_read(0x20) >> 24
}

/// Arms the local APIC timer to fire once after `us` microseconds.
pub fn arm_oneshot_us(us: u64) {
    let t = (LAPIC_TICKS_PER_MS.load(Ordering::Relaxed) * us / 1000).clamp(1, u64::from(u32::MAX));
    lapic_write(APIC_TIMER_INIT, t as u32);
}

/// Handles a local APIC interrupt (timer or spurious).
pub fn interrupt(vector: u64) {
    if vector == crate::traps::VECTOR_TIMER {
        TIMER_TICKS.fetch_add(1, Ordering::Relaxed);
        ARMED[crate::percpu::cpu_id()].store(u64::MAX, Ordering::Relaxed);
    }
    if vector != crate::traps::VECTOR_SPURIOUS {
        lapic_write(APIC_EOI, 0);
    }
}

static STAMP_TSC: AtomicU64 = AtomicU64::new(0);
static STAMP_STIME: AtomicU64 = AtomicU64::new(0);

/// Takes a new calibration stamp: the (TSC, system time) pair vcpu_time_info records are
/// published from until the next one (Xen takes one a second).
pub fn stamp() {
    let tsc = rdtsc();
    STAMP_TSC.store(tsc, Ordering::Relaxed);
    STAMP_STIME.store(
        scale_delta(tsc.wrapping_sub(BOOT_TSC.load(Ordering::Relaxed))),
        Ordering::Relaxed,
    );
}

/// Publishes the current calibration stamp in a vcpu_info with Xen's version protocol.
pub fn update_vcpu_time(vi: &mut VcpuInfo) {
    if STAMP_TSC.load(Ordering::Relaxed) == 0 {
        stamp();
    }
    let t = &mut vi.time;
    t.version = t.version.wrapping_add(1) | 1;
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    t.tsc_timestamp = STAMP_TSC.load(Ordering::Relaxed);
    t.system_time = STAMP_STIME.load(Ordering::Relaxed);
    t.tsc_to_system_mul = MUL.load(Ordering::Relaxed);
    t.tsc_shift = SHIFT.load(Ordering::Relaxed) as i8;
    t.flags = 0;
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    t.version = t.version.wrapping_add(1);
}

/// Publishes the wallclock at system time zero in shared_info.
pub fn update_wallclock(si: &mut SharedInfo) {
    let ns = BOOT_UNIX_NS.load(Ordering::Relaxed);
    si.wc_version = si.wc_version.wrapping_add(1) | 1;
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    let sec = ns / 1_000_000_000;
    si.wc_sec = sec as u32;
    si.wc_sec_hi = (sec >> 32) as u32;
    si.wc_nsec = (ns % 1_000_000_000) as u32;
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    si.wc_version = si.wc_version.wrapping_add(1);
}

/// The deadline each CPU's local APIC timer is armed for (`u64::MAX`: none, or it fired).
static ARMED: [AtomicU64; crate::percpu::MAX_CPUS] =
    [const { AtomicU64::new(u64::MAX) }; crate::percpu::MAX_CPUS];

/// Programs the local APIC timer to fire at system time `deadline` (ns), or stops it.
/// Reprograms only on a change: every return to a guest asks, and an APIC write is not free.
#[inline]
pub fn set_deadline(deadline: Option<u64>) {
    let want = deadline.unwrap_or(u64::MAX);
    let armed = &ARMED[crate::percpu::cpu_id()];
    if armed.load(Ordering::Relaxed) != want {
        armed.store(want, Ordering::Relaxed);
        program(deadline);
    }
}

/// The APIC write of `set_deadline`.
#[inline(never)]
fn program(deadline: Option<u64>) {
    match deadline {
        None => lapic_write(APIC_TIMER_INIT, 0),
        Some(d) => {
            let delta_ns = d.saturating_sub(now_ns()).max(1000);
            let per_ms = LAPIC_TICKS_PER_MS.load(Ordering::Relaxed);
            let ticks = (u128::from(delta_ns) * u128::from(per_ms) / 1_000_000)
                .clamp(1, u128::from(u32::MAX));
            lapic_write(APIC_TIMER_INIT, ticks as u32);
        }
    }
}
