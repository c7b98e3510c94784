//! `sched_op` sub-operations and shutdown reasons (`public/sched.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Give up the CPU (argument ignored).
pub const SCHEDOP_YIELD: u32 = 0;
/// Block until an event is pending; atomically unmasks event delivery first
/// (argument ignored).
pub const SCHEDOP_BLOCK: u32 = 1;
/// Shut the whole domain down ([`SchedShutdown`]).
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// Wait for any of a set of ports to become pending ([`SchedPoll`]).
pub const SCHEDOP_POLL: u32 = 3;
/// Shut another domain down ([`SchedRemoteShutdown`]); privileged.
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// Record a reason to report when the domain later shuts down ([`SchedShutdown`]).
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// Create, poke or destroy a domain watchdog ([`SchedWatchdog`]).
pub const SCHEDOP_WATCHDOG: u32 = 6;
/// Temporarily pin the vCPU to a physical CPU ([`SchedPinOverride`]); hardware domain only.
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// Shutdown reason: normal exit, destroy the domain.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// Shutdown reason: restart the domain.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// Shutdown reason: suspended (save state, then destroy).
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// Shutdown reason: the guest crashed.
pub const SHUTDOWN_CRASH: u32 = 3;
/// Shutdown reason: the watchdog fired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// Shutdown reason: soft reset (restart with memory preserved).
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
/// Highest defined shutdown reason.
pub const SHUTDOWN_MAX: u32 = SHUTDOWN_SOFT_RESET;

/// Name of a shutdown reason (e.g. `"poweroff"`).
pub fn shutdown_reason_name(reason: u32) -> Option<&'static str> {
    Some(match reason {
        SHUTDOWN_POWEROFF => "poweroff",
        SHUTDOWN_REBOOT => "reboot",
        SHUTDOWN_SUSPEND => "suspend",
        SHUTDOWN_CRASH => "crash",
        SHUTDOWN_WATCHDOG => "watchdog",
        SHUTDOWN_SOFT_RESET => "soft_reset",
        _ => return None,
    })
}

/// Argument of `SCHEDOP_shutdown` / `SCHEDOP_shutdown_code`
/// (C `struct sched_shutdown`, `public/sched.h`), 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

assert_layout!(SchedShutdown, size = 4, { reason: 0 });

/// Argument of `SCHEDOP_poll` (C `struct sched_poll`), 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedPoll {
    /// Guest virtual address of an `evtchn_port_t[nr_ports]` array.
    pub ports: u64,
    /// Number of ports in the array.
    pub nr_ports: u32,
    /// Padding (C alignment hole).
    pub pad: u32,
    /// Absolute system-time deadline in ns (0: none).
    pub timeout: u64,
}

assert_layout!(SchedPoll, size = 24, { ports: 0, nr_ports: 8, pad: 12, timeout: 16 });

/// Argument of `SCHEDOP_remote_shutdown` (C `struct sched_remote_shutdown`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedRemoteShutdown {
    /// Domain to shut down.
    pub domain_id: u16,
    /// Padding (C alignment hole).
    pub pad: u16,
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

assert_layout!(SchedRemoteShutdown, size = 8, { domain_id: 0, pad: 2, reason: 4 });

/// Argument of `SCHEDOP_watchdog` (C `struct sched_watchdog`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedWatchdog {
    /// 0 to create a watchdog (its id is returned), otherwise the id to poke/destroy.
    pub id: u32,
    /// Seconds until expiry; 0 with a non-zero id destroys the watchdog.
    pub timeout: u32,
}

assert_layout!(SchedWatchdog, size = 8, { id: 0, timeout: 4 });

/// Argument of `SCHEDOP_pin_override` (C `struct sched_pin_override`), 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedPinOverride {
    /// Physical CPU to pin to; negative undoes the override.
    pub pcpu: i32,
}

assert_layout!(SchedPinOverride, size = 4, { pcpu: 0 });

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn poll_from_guest_bytes() {
        let mut raw = [0u8; 24];
        raw[..8].copy_from_slice(&0xffff_8880_0000_1000u64.to_le_bytes());
        raw[8..12].copy_from_slice(&2u32.to_le_bytes());
        raw[16..24].copy_from_slice(&1_000_000u64.to_le_bytes());
        let p = SchedPoll::read_from_bytes(&raw).unwrap();
        assert_eq!(p.ports, 0xffff_8880_0000_1000);
        assert_eq!(p.nr_ports, 2);
        assert_eq!(p.timeout, 1_000_000);
        assert_eq!(p.as_bytes(), &raw);
        assert_eq!(shutdown_reason_name(SHUTDOWN_CRASH), Some("crash"));
        assert_eq!(shutdown_reason_name(9), None);
    }
}
