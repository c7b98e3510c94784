//! Toolstack domain control: `XEN_DOMCTL_*` (hypercall 36) with the
//! structures of Xen 4.17 (`public/domctl.h`, interface version 0x15).
//!
//! `struct xen_domctl` is 144 bytes: `cmd` (u32), `interface_version` (u32),
//! `domain` (u16, IN/OUT), 6 bytes of padding, then a 128-byte union at
//! offset 16. Xen copies the whole structure back for the commands that
//! return something (createdomain, getdomaininfo, getvcpuinfo,
//! scheduler_op, ...). Only the union members the tests use are modelled.
//!
//! Facts about Xen 4.17 the wrappers rely on (from its public headers and
//! `common/domctl.c`):
//! * a wrong `interface_version` is -EACCES before anything else;
//! * every command but createdomain and getdomaininfo looks the domain up
//!   first: -ESRCH if it does not exist;
//! * createdomain with `domain` 0 (or >= `DOMID_FIRST_RESERVED`) picks the
//!   next free id after the last one picked (a static rover starting at 0)
//!   and writes it to `domain`; a given free id below 0x7ff0 is taken as is,
//!   a used one is -EEXIST. The new domain has no vCPU until
//!   `XEN_DOMCTL_max_vcpus` with the same count as `max_vcpus`, `max_pages`
//!   0 and a controller pause count of 1 (one unpausedomain starts it);
//! * getdomaininfo of an id that does not exist answers for the first
//!   domain with a larger id (-ESRCH if there is none; -EINVAL for the
//!   reserved ids from 0x7ff0 on). Its `flags` carry the shutdown code in
//!   bits 16 and up, all ones until the domain shuts down
//!   ([`DOMINF_NO_SHUTDOWN_CODE`]).

use core::mem::{offset_of, size_of};

use xen_abi::Errno;

use crate::hypercall::{self, result};

pub use xen_abi::domctl::{
    ArchDomainConfig, CreateDomain, GetDomainInfo, GetVcpuInfo, SchedulerOp, VcpuContext,
};
pub use xen_abi::domctl::{
    XEN_DOMCTL_CDF_HAP as CDF_HAP, XEN_DOMCTL_CDF_HVM as CDF_HVM,
    XEN_DOMCTL_CDF_OOS_OFF as CDF_OOS_OFF, XEN_DOMCTL_CDF_VPMU as CDF_VPMU,
    XEN_DOMCTL_CREATEDOMAIN as CREATEDOMAIN, XEN_DOMCTL_DESTROYDOMAIN as DESTROYDOMAIN,
    XEN_DOMCTL_GETDOMAININFO as GETDOMAININFO, XEN_DOMCTL_GETVCPUINFO as GETVCPUINFO,
    XEN_DOMCTL_INTERFACE_VERSION as INTERFACE_VERSION, XEN_DOMCTL_MAX_MEM as MAX_MEM,
    XEN_DOMCTL_MAX_VCPUS as MAX_VCPUS, XEN_DOMCTL_PAUSEDOMAIN as PAUSEDOMAIN,
    XEN_DOMCTL_SCHEDOP_GETINFO as SCHEDOP_GETINFO, XEN_DOMCTL_SCHEDOP_PUTINFO as SCHEDOP_PUTINFO,
    XEN_DOMCTL_SCHEDULER_OP as SCHEDULER_OP, XEN_DOMCTL_SETVCPUCONTEXT as SETVCPUCONTEXT,
    XEN_DOMCTL_UNPAUSEDOMAIN as UNPAUSEDOMAIN, XEN_DOMINF_BLOCKED as DOMINF_BLOCKED,
    XEN_DOMINF_DYING as DOMINF_DYING, XEN_DOMINF_PAUSED as DOMINF_PAUSED,
    XEN_DOMINF_RUNNING as DOMINF_RUNNING, XEN_DOMINF_SHUTDOWN as DOMINF_SHUTDOWN,
    XEN_DOMINF_SHUTDOWNMASK as DOMINF_SHUTDOWN_MASK,
    XEN_DOMINF_SHUTDOWNSHIFT as DOMINF_SHUTDOWN_SHIFT, XEN_SCHEDULER_CREDIT as SCHEDULER_CREDIT,
};

/// What Xen 4.17 reports in the shutdown-code bits (16 and up) of a domain
/// that has not shut down: its `SHUTDOWN_CODE_INVALID` (`~0u`) shifted left
/// by 16, unmasked, so bits 16-31 are all set.
pub const DOMINF_NO_SHUTDOWN_CODE: u32 = 0xffff_0000;

pub use xen_abi::types::DOMID_FIRST_RESERVED;

/// A plain PV domain with `max_vcpus` vCPUs, 1024 event channels, Xen's
/// default grant limits and grant table version 1 (as libxl asks for one).
pub const fn pv_domain(max_vcpus: u32) -> CreateDomain {
    CreateDomain {
        ssidref: 0,
        handle: [0; 16],
        flags: 0,
        iommu_opts: 0,
        max_vcpus,
        max_evtchn_port: 1023,
        max_grant_frames: -1,
        max_maptrack_frames: -1,
        grant_opts: 1,
        vmtrace_size: 0,
        cpupool_id: 0,
        arch: ArchDomainConfig {
            emulation_flags: 0,
            misc_flags: 0,
        },
    }
}

/// The 128-byte union of `struct xen_domctl`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union DomctlU {
    pub createdomain: CreateDomain,
    pub getdomaininfo: GetDomainInfo,
    pub max_mem_kb: u64,
    pub vcpucontext: VcpuContext,
    pub getvcpuinfo: GetVcpuInfo,
    pub max_vcpus: u32,
    pub scheduler_op: SchedulerOp,
    pub vcpuaffinity: xen_abi::domctl::VcpuAffinity,
    pub raw: [u64; 16],
}

/// `struct xen_domctl` (144 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Domctl {
    pub cmd: u32,
    pub interface_version: u32,
    pub domain: u16,
    pub pad: [u16; 3],
    pub u: DomctlU,
}

const _: () = {
    assert!(size_of::<CreateDomain>() == 64);
    assert!(offset_of!(CreateDomain, flags) == 20);
    assert!(offset_of!(CreateDomain, max_vcpus) == 28);
    assert!(offset_of!(CreateDomain, grant_opts) == 44);
    assert!(offset_of!(CreateDomain, cpupool_id) == 52);
    assert!(offset_of!(CreateDomain, arch) == 56);
    assert!(size_of::<GetDomainInfo>() == 112);
    assert!(offset_of!(GetDomainInfo, tot_pages) == 8);
    assert!(offset_of!(GetDomainInfo, shared_info_frame) == 48);
    assert!(offset_of!(GetDomainInfo, cpu_time) == 56);
    assert!(offset_of!(GetDomainInfo, nr_online_vcpus) == 64);
    assert!(offset_of!(GetDomainInfo, handle) == 76);
    assert!(offset_of!(GetDomainInfo, cpupool) == 92);
    assert!(offset_of!(GetDomainInfo, gpaddr_bits) == 96);
    assert!(offset_of!(GetDomainInfo, arch_config) == 104);
    assert!(size_of::<VcpuContext>() == 16);
    assert!(size_of::<GetVcpuInfo>() == 24);
    assert!(offset_of!(GetVcpuInfo, cpu_time) == 8);
    assert!(offset_of!(GetVcpuInfo, cpu) == 16);
    assert!(size_of::<DomctlU>() == 128);
    assert!(size_of::<Domctl>() == 144);
    assert!(offset_of!(Domctl, u) == 16);
};

impl Domctl {
    /// Command `cmd` for `domain` with interface version 0x15 and an
    /// all-zero union.
    pub const fn new(cmd: u32, domain: u16) -> Domctl {
        Domctl {
            cmd,
            interface_version: INTERFACE_VERSION,
            domain,
            pad: [0; 3],
            u: DomctlU { raw: [0; 16] },
        }
    }

    /// Issues the domctl; Xen may write the structure back.
    pub fn call(&mut self) -> Result<u64, Errno> {
        // SAFETY: Xen reads and may write back the 144-byte structure; the
        // commands issued through this module only affect other domains'
        // state or dom0's scheduling parameters.
        result(unsafe {
            hypercall::call(
                xen_abi::hypercall::DOMCTL,
                [(&raw mut *self) as u64, 0, 0, 0, 0],
            )
        })
    }

    /// The union as raw words.
    pub fn raw(&self) -> [u64; 16] {
        // SAFETY: every member is plain integers and the union was fully
        // initialised (zeroes, then members, then Xen's copy).
        unsafe { self.u.raw }
    }
}

/// Reads member `T` of the union (any of the plain-integer structures).
fn member<T: Copy>(d: &Domctl) -> T {
    const { assert!(size_of::<T>() <= 128) };
    // SAFETY: the union is 128 fully initialised bytes at an 8-aligned
    // offset; `T` is one of this module's plain-integer structures, valid for
    // any bit pattern, and fits.
    unsafe { core::ptr::read((&raw const d.u).cast::<T>()) }
}

/// `XEN_DOMCTL_createdomain`: `domain` 0 lets Xen pick. Returns the id Xen
/// wrote back and the configuration as copied back (Xen adjusts `flags`).
pub fn create_domain(domain: u16, cfg: &CreateDomain) -> Result<(u16, CreateDomain), Errno> {
    let mut d = Domctl::new(CREATEDOMAIN, domain);
    d.u.createdomain = *cfg;
    d.call()?;
    Ok((d.domain, member(&d)))
}

/// A command that only names the domain (pause, unpause, destroy).
pub fn simple(cmd: u32, domain: u16) -> Result<u64, Errno> {
    Domctl::new(cmd, domain).call()
}

/// `XEN_DOMCTL_destroydomain`.
pub fn destroy_domain(domain: u16) -> Result<u64, Errno> {
    simple(DESTROYDOMAIN, domain)
}

/// `XEN_DOMCTL_pausedomain`.
pub fn pause_domain(domain: u16) -> Result<u64, Errno> {
    simple(PAUSEDOMAIN, domain)
}

/// `XEN_DOMCTL_unpausedomain`.
pub fn unpause_domain(domain: u16) -> Result<u64, Errno> {
    simple(UNPAUSEDOMAIN, domain)
}

/// `XEN_DOMCTL_getdomaininfo`: the echoed `domain` field and the info.
pub fn getdomaininfo(domain: u16) -> Result<(u16, GetDomainInfo), Errno> {
    let mut d = Domctl::new(GETDOMAININFO, domain);
    d.call()?;
    Ok((d.domain, member(&d)))
}

/// `XEN_DOMCTL_max_mem` (KiB).
pub fn max_mem(domain: u16, kb: u64) -> Result<u64, Errno> {
    let mut d = Domctl::new(MAX_MEM, domain);
    d.u.max_mem_kb = kb;
    d.call()
}

/// `XEN_DOMCTL_max_vcpus`.
pub fn max_vcpus(domain: u16, max: u32) -> Result<u64, Errno> {
    let mut d = Domctl::new(MAX_VCPUS, domain);
    d.u.max_vcpus = max;
    d.call()
}

/// `XEN_DOMCTL_setvcpucontext` with a `vcpu_guest_context` at guest address
/// `ctxt` (see [`crate::smp::build_context`]).
pub fn set_vcpu_context(domain: u16, vcpu: u32, ctxt: u64) -> Result<u64, Errno> {
    let mut d = Domctl::new(SETVCPUCONTEXT, domain);
    d.u.vcpucontext = VcpuContext { vcpu, pad: 0, ctxt };
    d.call()
}

/// `XEN_DOMCTL_getvcpucontext` into the `vcpu_guest_context` at guest
/// address `ctxt`.
pub fn get_vcpu_context(domain: u16, vcpu: u32, ctxt: u64) -> Result<u64, Errno> {
    let mut d = Domctl::new(xen_abi::domctl::XEN_DOMCTL_GETVCPUCONTEXT, domain);
    d.u.vcpucontext = VcpuContext { vcpu, pad: 0, ctxt };
    d.call()
}

/// `XEN_DOMCTL_getvcpuinfo`.
pub fn getvcpuinfo(domain: u16, vcpu: u32) -> Result<GetVcpuInfo, Errno> {
    let mut d = Domctl::new(GETVCPUINFO, domain);
    d.u.getvcpuinfo = GetVcpuInfo {
        vcpu,
        ..GetVcpuInfo::default()
    };
    d.call()?;
    Ok(member(&d))
}

/// `XEN_DOMCTL_scheduler_op` for the credit scheduler: `op` is
/// [`SCHEDOP_PUTINFO`] or [`SCHEDOP_GETINFO`]; returns (weight, cap) as
/// copied back (for putinfo: what was passed).
pub fn sched_credit(domain: u16, op: u32, weight: u16, cap: u16) -> Result<(u16, u16), Errno> {
    let mut d = Domctl::new(SCHEDULER_OP, domain);
    d.u.scheduler_op = SchedulerOp {
        sched_id: SCHEDULER_CREDIT,
        cmd: op,
        weight,
        cap,
        rest: [0; 3],
    };
    d.call()?;
    let s: SchedulerOp = member(&d);
    Ok((s.weight, s.cap))
}

/// `XEN_DOMCTL_setvcpuaffinity` (`set`) or `getvcpuaffinity` of `vcpu` with
/// `flags` (`XEN_VCPUAFFINITY_*`); `hard` and `soft` are the guest buffers
/// (`None`: a NULL handle), each `nr_bits` long, read and written by Xen.
pub fn vcpu_affinity(
    set: bool,
    domain: u16,
    vcpu: u32,
    flags: u32,
    hard: Option<&mut [u8]>,
    soft: Option<&mut [u8]>,
    nr_bits: u32,
) -> Result<u64, Errno> {
    use xen_abi::domctl::{CtlBitmap, VcpuAffinity};
    let cmd = if set {
        xen_abi::domctl::XEN_DOMCTL_SETVCPUAFFINITY
    } else {
        xen_abi::domctl::XEN_DOMCTL_GETVCPUAFFINITY
    };
    let map = |b: Option<&mut [u8]>| CtlBitmap {
        bitmap: b.map_or(0, |b| b.as_mut_ptr() as u64),
        nr_bits,
        pad: 0,
    };
    let mut d = Domctl::new(cmd, domain);
    d.u.vcpuaffinity = VcpuAffinity {
        vcpu,
        flags,
        cpumap_hard: map(hard),
        cpumap_soft: map(soft),
    };
    d.call()
}
