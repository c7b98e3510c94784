//! The shared-info page, per-vCPU `vcpu_info` and the PV clock (`public/xen.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::layout::XEN_LEGACY_MAX_VCPUS;

pub use crate::vcpu::{
    VcpuRegisterVcpuInfo, VcpuRunstateInfo, RUNSTATE_BLOCKED, RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE,
    RUNSTATE_RUNNING, XEN_RUNSTATE_UPDATE,
};

/// `vcpu_time_info.flags`: the TSC is synchronised across vCPUs, so time
/// computed on different vCPUs is monotonic.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// `vcpu_time_info.flags`: the vCPU was paused by the host (clock jump is expected).
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// Number of `u64` words in the 2-level event-channel pending/mask bitmaps.
pub const EVTCHN_WORDS: usize = 64;

/// PV clock parameters (C `struct vcpu_time_info`, `public/xen.h`), 32 bytes.
///
/// Readers compute
/// `system_time + ((((tsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul) >> 32)`
/// (a negative `tsc_shift` shifts right). Writers make `version` odd, update
/// the fields, then make it even again.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuTimeInfo {
    /// Update sequence counter; odd while an update is in progress.
    pub version: u32,
    /// Padding.
    pub pad0: u32,
    /// TSC value at the time of the last update.
    pub tsc_timestamp: u64,
    /// System time (ns since boot) at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC-delta to nanoseconds multiplier (32.32 fixed point).
    pub tsc_to_system_mul: u32,
    /// Power-of-two shift applied to the TSC delta before multiplying.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
    /// Padding.
    pub pad1: [u8; 2],
}

assert_layout!(VcpuTimeInfo, size = 32, {
    version: 0, pad0: 4, tsc_timestamp: 8, system_time: 16,
    tsc_to_system_mul: 24, tsc_shift: 28, flags: 29, pad1: 30,
});

impl VcpuTimeInfo {
    /// System time in ns for TSC value `tsc`, using these parameters.
    pub fn system_time_at(&self, tsc: u64) -> u64 {
        let mut delta = tsc.wrapping_sub(self.tsc_timestamp);
        if self.tsc_shift >= 0 {
            delta <<= self.tsc_shift as u32;
        } else {
            delta >>= self.tsc_shift.unsigned_abs() as u32;
        }
        let ns = ((u128::from(delta) * u128::from(self.tsc_to_system_mul)) >> 32) as u64;
        self.system_time.wrapping_add(ns)
    }
}

/// x86-specific part of `vcpu_info` (C `struct arch_vcpu_info`,
/// `public/arch-x86/xen-x86_64.h`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchVcpuInfo {
    /// Faulting linear address of the last #PF delivered to the guest.
    pub cr2: u64,
    /// Padding to keep `vcpu_info` at 64 bytes.
    pub pad: u64,
}

assert_layout!(ArchVcpuInfo, size = 16, { cr2: 0, pad: 8 });

/// Per-vCPU event and time state (C `struct vcpu_info`, `public/xen.h`), 64 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuInfo {
    /// Set non-zero by the hypervisor when an event upcall is pending.
    pub evtchn_upcall_pending: u8,
    /// Non-zero masks event upcalls (the PV equivalent of clearing IF).
    pub evtchn_upcall_mask: u8,
    /// Padding (C alignment hole).
    pub pad: [u8; 6],
    /// Selector: bit `i` set means word `i` of `evtchn_pending` may have
    /// unmasked pending ports for this vCPU.
    pub evtchn_pending_sel: u64,
    /// Architecture-specific state (CR2).
    pub arch: ArchVcpuInfo,
    /// PV clock parameters.
    pub time: VcpuTimeInfo,
}

assert_layout!(VcpuInfo, size = 64, {
    evtchn_upcall_pending: 0, evtchn_upcall_mask: 1, pad: 2,
    evtchn_pending_sel: 8, arch: 16, time: 32,
});

/// x86-specific part of `shared_info` (C `struct arch_shared_info`,
/// `public/arch-x86/xen.h`), 48 bytes on x86-64.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchSharedInfo {
    /// Number of valid P2M entries (guest written).
    pub max_pfn: u64,
    /// MFN of the top of the 3-level P2M frame-list tree (0: not set up,
    /// all-ones: invalid, use `p2m_vaddr`). Guest written.
    pub pfn_to_mfn_frame_list_list: u64,
    /// `XEN_NMIREASON_*` bits (see [`crate::nmi`]).
    pub nmi_reason: u64,
    /// CR3 value of the address space in which `p2m_vaddr` is valid (0: unused).
    pub p2m_cr3: u64,
    /// Virtual address of the linear P2M list.
    pub p2m_vaddr: u64,
    /// Incremented by the guest around P2M mapping changes (odd = in progress).
    pub p2m_generation: u64,
}

assert_layout!(ArchSharedInfo, size = 48, {
    max_pfn: 0, pfn_to_mfn_frame_list_list: 8, nmi_reason: 16,
    p2m_cr3: 24, p2m_vaddr: 32, p2m_generation: 40,
});

/// The shared-info page (C `struct shared_info`, `public/xen.h`), 0xC40 bytes
/// at the start of a hypervisor-owned page the guest maps writable.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SharedInfo {
    /// `vcpu_info` for vCPUs 0..32 (until a vCPU registers its own copy).
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// 2-level event channels: pending bit per port (port `p` is bit
    /// `p % 64` of word `p / 64`).
    pub evtchn_pending: [u64; EVTCHN_WORDS],
    /// 2-level event channels: mask bit per port.
    pub evtchn_mask: [u64; EVTCHN_WORDS],
    /// Wall-clock update sequence counter (odd while updating).
    pub wc_version: u32,
    /// Wall-clock seconds at system time 0 (low 32 bits).
    pub wc_sec: u32,
    /// Wall-clock nanoseconds at system time 0.
    pub wc_nsec: u32,
    /// Wall-clock seconds, high 32 bits.
    pub wc_sec_hi: u32,
    /// Architecture-specific part.
    pub arch: ArchSharedInfo,
}

assert_layout!(SharedInfo, size = 0xC40, {
    vcpu_info: 0x000,
    evtchn_pending: 0x800,
    evtchn_mask: 0xA00,
    wc_version: 0xC00,
    wc_sec: 0xC04,
    wc_nsec: 0xC08,
    wc_sec_hi: 0xC0C,
    arch: 0xC10,
});

impl_zeroed_default!(SharedInfo);

impl SharedInfo {
    /// Byte offset of `vcpu_info[vcpu]` within the page.
    pub const fn vcpu_info_offset(vcpu: usize) -> usize {
        vcpu * core::mem::size_of::<VcpuInfo>()
    }

    /// Full 64-bit wall-clock seconds (`wc_sec_hi:wc_sec`).
    pub const fn wc_sec_full(&self) -> u64 {
        ((self.wc_sec_hi as u64) << 32) | self.wc_sec as u64
    }

    /// Store 64-bit wall-clock seconds into `wc_sec`/`wc_sec_hi`.
    pub fn set_wc_sec_full(&mut self, sec: u64) {
        self.wc_sec = sec as u32;
        self.wc_sec_hi = (sec >> 32) as u32;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shared_info_bytes() {
        let mut s = SharedInfo::default();
        s.vcpu_info[1].evtchn_upcall_mask = 1;
        s.vcpu_info[1].arch.cr2 = 0xdead_b000;
        s.vcpu_info[0].time.flags = XEN_PVCLOCK_TSC_STABLE_BIT;
        s.evtchn_pending[1] = 1 << 3; // port 67
        s.set_wc_sec_full(0x1_2345_6789);
        s.arch.max_pfn = 0x4000;
        let b = s.as_bytes();
        assert_eq!(b.len(), 0xC40);
        assert_eq!(b[SharedInfo::vcpu_info_offset(1) + 1], 1);
        assert_eq!(&b[0x40 + 16..0x40 + 24], &0xdead_b000u64.to_le_bytes());
        assert_eq!(b[32 + 29], XEN_PVCLOCK_TSC_STABLE_BIT);
        assert_eq!(b[0x808], 8);
        assert_eq!(&b[0xC04..0xC08], &0x2345_6789u32.to_le_bytes());
        assert_eq!(&b[0xC0C..0xC10], &1u32.to_le_bytes());
        let back = SharedInfo::read_from_bytes(b).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.wc_sec_full(), 0x1_2345_6789);
    }

    #[test]
    fn pv_clock_math() {
        let t = VcpuTimeInfo {
            tsc_timestamp: 1000,
            system_time: 5_000,
            // 2 GHz TSC: 0.5 ns per tick = 0x8000_0000 / 2^32.
            tsc_to_system_mul: 0x8000_0000,
            tsc_shift: 0,
            ..Default::default()
        };
        assert_eq!(t.system_time_at(3000), 6_000);
        let t2 = VcpuTimeInfo {
            tsc_shift: -1,
            tsc_to_system_mul: 0xFFFF_FFFF,
            ..t
        };
        assert_eq!(t2.system_time_at(1000 + 4000), 5_000 + 1999);
    }
}
