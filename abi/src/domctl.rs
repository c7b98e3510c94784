//! Toolstack domain control, `XEN_DOMCTL_*` (hypercall 36; `public/domctl.h` of Xen 4.17,
//! interface version 0x15). Only for the hardware domain.
//!
//! `struct xen_domctl` is 144 bytes: `cmd`, `interface_version`, `domain` (IN, and OUT for
//! createdomain and getdomaininfo), padding, then a 128-byte union at offset 16 ([`Domctl`]).
//! The union members modelled here are those of the commands built so far.

use core::mem::size_of;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_DOMCTL_INTERFACE_VERSION` of Xen 4.17; any other answers -EACCES.
pub const XEN_DOMCTL_INTERFACE_VERSION: u32 = 0x15;

/// Create a domain ([`CreateDomain`]).
pub const XEN_DOMCTL_CREATEDOMAIN: u32 = 1;
/// Destroy a domain (no argument).
pub const XEN_DOMCTL_DESTROYDOMAIN: u32 = 2;
/// Pause a domain, once more (no argument).
pub const XEN_DOMCTL_PAUSEDOMAIN: u32 = 3;
/// Drop one pause of a domain (no argument).
pub const XEN_DOMCTL_UNPAUSEDOMAIN: u32 = 4;
/// A domain's state ([`GetDomainInfo`]).
pub const XEN_DOMCTL_GETDOMAININFO: u32 = 5;
/// Set a vCPU's hard (or soft) affinity ([`VcpuAffinity`]).
pub const XEN_DOMCTL_SETVCPUAFFINITY: u32 = 9;
/// A domain's memory limit ([`MaxMem`]).
pub const XEN_DOMCTL_MAX_MEM: u32 = 11;
/// A vCPU's context ([`VcpuContext`]).
pub const XEN_DOMCTL_SETVCPUCONTEXT: u32 = 12;
/// Read a vCPU's context ([`VcpuContext`]).
pub const XEN_DOMCTL_GETVCPUCONTEXT: u32 = 13;
/// A vCPU's state ([`GetVcpuInfo`]).
pub const XEN_DOMCTL_GETVCPUINFO: u32 = 14;
/// Create a domain's vCPUs ([`MaxVcpus`]).
pub const XEN_DOMCTL_MAX_VCPUS: u32 = 15;
/// Scheduler parameters ([`SchedulerOp`]).
pub const XEN_DOMCTL_SCHEDULER_OP: u32 = 16;
/// Read a vCPU's hard (or soft) affinity ([`VcpuAffinity`]).
pub const XEN_DOMCTL_GETVCPUAFFINITY: u32 = 25;

/// `XEN_VCPUAFFINITY_HARD`: the pCPUs a vCPU may run on.
pub const XEN_VCPUAFFINITY_HARD: u32 = 1 << 0;
/// `XEN_VCPUAFFINITY_SOFT`: the pCPUs a vCPU prefers.
pub const XEN_VCPUAFFINITY_SOFT: u32 = 1 << 1;
/// `XEN_VCPUAFFINITY_FORCE`: undo a `SCHEDOP_pin_override`.
pub const XEN_VCPUAFFINITY_FORCE: u32 = 1 << 2;

/// `XEN_DOMCTL_CDF_*`: createdomain flags.
pub const XEN_DOMCTL_CDF_HVM: u32 = 1 << 0;
pub const XEN_DOMCTL_CDF_HAP: u32 = 1 << 1;
pub const XEN_DOMCTL_CDF_S3_INTEGRITY: u32 = 1 << 2;
pub const XEN_DOMCTL_CDF_OOS_OFF: u32 = 1 << 3;
pub const XEN_DOMCTL_CDF_XS_DOMAIN: u32 = 1 << 4;
pub const XEN_DOMCTL_CDF_IOMMU: u32 = 1 << 5;
pub const XEN_DOMCTL_CDF_NESTED_VIRT: u32 = 1 << 6;
pub const XEN_DOMCTL_CDF_VPMU: u32 = 1 << 7;
/// Every flag Xen 4.17 knows.
pub const XEN_DOMCTL_CDF_ALL: u32 = 0xff;
/// `XEN_DOMCTL_GRANT_version_mask`: the grant-table version in `grant_opts`.
pub const XEN_DOMCTL_GRANT_VERSION_MASK: u32 = 0xf;
/// `XEN_X86_MSR_RELAXED`, the only x86 `misc_flags` bit.
pub const XEN_X86_MSR_RELAXED: u32 = 1;

/// `XEN_DOMINF_*`: getdomaininfo flags.
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
pub const XEN_DOMINF_HVM_GUEST: u32 = 1 << 1;
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
pub const XEN_DOMINF_PAUSED: u32 = 1 << 3;
pub const XEN_DOMINF_BLOCKED: u32 = 1 << 4;
pub const XEN_DOMINF_RUNNING: u32 = 1 << 5;
/// The shutdown code sits from this bit up (Xen does not mask it: a domain that has not shut
/// down has all ones there).
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;
/// Mask of the shutdown code after the shift (`XEN_DOMINF_shutdownmask`).
pub const XEN_DOMINF_SHUTDOWNMASK: u32 = 0xff;
/// `XEN_INVALID_MAX_VCPU_ID`: `max_vcpu_id` of a domain without vCPUs.
pub const XEN_INVALID_MAX_VCPU_ID: u32 = !0;

/// `XEN_SCHEDULER_CREDIT`.
pub const XEN_SCHEDULER_CREDIT: u32 = 5;
/// `XEN_SCHEDULER_CREDIT2` (Xen 4.17's default).
pub const XEN_SCHEDULER_CREDIT2: u32 = 6;
/// `XEN_DOMCTL_SCHEDOP_putinfo`, `getinfo`, `putvcpuinfo`, `getvcpuinfo`.
pub const XEN_DOMCTL_SCHEDOP_PUTINFO: u32 = 0;
pub const XEN_DOMCTL_SCHEDOP_GETINFO: u32 = 1;
pub const XEN_DOMCTL_SCHEDOP_PUTVCPUINFO: u32 = 2;
pub const XEN_DOMCTL_SCHEDOP_GETVCPUINFO: u32 = 3;

/// `struct xen_domctl`: the header and the 128-byte union (8-byte aligned).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Domctl {
    pub cmd: u32,
    pub interface_version: u32,
    pub domain: u16,
    pub pad: [u16; 3],
    pub u: [u64; 16],
}

impl Domctl {
    /// The union read as member `T`.
    pub fn get<T: FromBytes>(&self) -> T {
        match T::read_from_prefix(self.u.as_bytes()) {
            Ok((v, _)) => v,
            Err(_) => panic!("domctl union member larger than the union"),
        }
    }

    /// Stores member `T` in the union.
    pub fn set<T: IntoBytes + Immutable>(&mut self, v: &T) {
        self.u.as_mut_bytes()[..size_of::<T>()].copy_from_slice(v.as_bytes());
    }
}

/// `struct xen_arch_domainconfig` (x86).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct ArchDomainConfig {
    /// `XEN_X86_EMU_*`: emulated devices (none for a PV domU).
    pub emulation_flags: u32,
    /// `XEN_X86_MSR_RELAXED`.
    pub misc_flags: u32,
}

/// `struct xen_domctl_createdomain`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CreateDomain {
    pub ssidref: u32,
    pub handle: [u8; 16],
    /// `XEN_DOMCTL_CDF_*`.
    pub flags: u32,
    pub iommu_opts: u32,
    pub max_vcpus: u32,
    pub max_evtchn_port: u32,
    /// Negative: the hypervisor's default.
    pub max_grant_frames: i32,
    pub max_maptrack_frames: i32,
    /// Grant-table version in the low 4 bits.
    pub grant_opts: u32,
    pub vmtrace_size: u32,
    pub cpupool_id: u32,
    pub arch: ArchDomainConfig,
}

/// `struct xen_domctl_getdomaininfo`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GetDomainInfo {
    pub domain: u16,
    pub pad1: u16,
    /// `XEN_DOMINF_*`, shutdown code from bit 16.
    pub flags: u32,
    pub tot_pages: u64,
    pub max_pages: u64,
    pub outstanding_pages: u64,
    pub shr_pages: u64,
    pub paged_pages: u64,
    /// The shared_info frame (an MFN for a PV domain).
    pub shared_info_frame: u64,
    /// Running time of all vCPUs (ns).
    pub cpu_time: u64,
    pub nr_online_vcpus: u32,
    pub max_vcpu_id: u32,
    pub ssidref: u32,
    pub handle: [u8; 16],
    pub cpupool: u32,
    pub gpaddr_bits: u8,
    pub pad2: [u8; 7],
    pub arch_config: ArchDomainConfig,
}

/// `struct xen_domctl_max_mem`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MaxMem {
    pub max_memkb: u64,
}

/// `struct xen_domctl_max_vcpus`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct MaxVcpus {
    pub max: u32,
}

/// `struct xen_domctl_vcpucontext`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuContext {
    pub vcpu: u32,
    pub pad: u32,
    /// Guest address of a `struct vcpu_guest_context` (0: reset the vCPU).
    pub ctxt: u64,
}

/// `struct xen_domctl_getvcpuinfo`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GetVcpuInfo {
    pub vcpu: u32,
    pub online: u8,
    pub blocked: u8,
    pub running: u8,
    pub pad: u8,
    /// Time in RUNSTATE_running (ns).
    pub cpu_time: u64,
    pub cpu: u32,
    pub pad2: u32,
}

/// `struct xenctl_bitmap`: a guest buffer of `nr_bits` bits, one per pCPU.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CtlBitmap {
    /// Guest address of the bytes (bit `n` of byte `n / 8` is pCPU `8 * (n / 8) + n % 8`).
    pub bitmap: u64,
    pub nr_bits: u32,
    pub pad: u32,
}

/// `struct xen_domctl_vcpuaffinity`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuAffinity {
    pub vcpu: u32,
    /// `XEN_VCPUAFFINITY_*`.
    pub flags: u32,
    pub cpumap_hard: CtlBitmap,
    pub cpumap_soft: CtlBitmap,
}

/// `struct xen_domctl_scheduler_op` with the credit (and credit2) parameters of its union.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedulerOp {
    /// `XEN_SCHEDULER_*`.
    pub sched_id: u32,
    /// `XEN_DOMCTL_SCHEDOP_*`.
    pub cmd: u32,
    pub weight: u16,
    pub cap: u16,
    pub rest: [u32; 3],
}

const _: () = assert!(size_of::<Domctl>() == 144);
const _: () = assert!(size_of::<CreateDomain>() == 64);
const _: () = assert!(size_of::<GetDomainInfo>() == 112);
const _: () = assert!(core::mem::offset_of!(GetDomainInfo, cpu_time) == 56);
const _: () = assert!(core::mem::offset_of!(GetDomainInfo, gpaddr_bits) == 96);
const _: () = assert!(size_of::<GetVcpuInfo>() == 24);
const _: () = assert!(size_of::<VcpuContext>() == 16);
const _: () = assert!(size_of::<SchedulerOp>() == 24);
const _: () = assert!(size_of::<VcpuAffinity>() == 40);
