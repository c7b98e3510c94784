//! `vcpu_op` sub-operations and their arguments (`public/vcpu.h`), plus the
//! x86-64 vCPU context used by `VCPUOP_initialise` (`public/arch-x86/xen*.h`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::trap::TrapInfo;

/// Initialise a vCPU from a [`VcpuGuestContext`] (once per vCPU).
pub const VCPUOP_INITIALISE: u32 = 0;
/// Make an initialised vCPU runnable.
pub const VCPUOP_UP: u32 = 1;
/// Take a vCPU offline.
pub const VCPUOP_DOWN: u32 = 2;
/// Returns 1 if the vCPU is up, 0 if down, `-ENOENT` if it does not exist.
pub const VCPUOP_IS_UP: u32 = 3;
/// Copy a [`VcpuRunstateInfo`] to the guest.
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
/// Register a guest *virtual* address ([`VcpuRegisterRunstateMemoryArea`])
/// that the hypervisor keeps updated with [`VcpuRunstateInfo`].
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// Start a periodic timer ([`VcpuSetPeriodicTimer`]).
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
/// Stop the periodic timer (no argument).
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// Arm the single-shot timer ([`VcpuSetSingleshotTimer`]).
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// Disarm the single-shot timer (no argument).
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// Move this vCPU's `vcpu_info` into guest memory ([`VcpuRegisterVcpuInfo`]).
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
/// Send an NMI to the vCPU (no argument).
pub const VCPUOP_SEND_NMI: u32 = 11;
/// Physical CPU id of a pinned vCPU ([`VcpuGetPhysid`]).
pub const VCPUOP_GET_PHYSID: u32 = 12;
/// Register a secondary `vcpu_time_info` copy by virtual address
/// ([`VcpuRegisterTimeMemoryArea`]).
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;
/// As `REGISTER_RUNSTATE_MEMORY_AREA` but with a guest physical address.
pub const VCPUOP_REGISTER_RUNSTATE_PHYS_AREA: u32 = 14;
/// As `REGISTER_VCPU_TIME_MEMORY_AREA` but with a guest physical address.
pub const VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA: u32 = 15;

/// Runstate: running on a physical CPU.
pub const RUNSTATE_RUNNING: i32 = 0;
/// Runstate: runnable, waiting for a physical CPU.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// Runstate: blocked (idle).
pub const RUNSTATE_BLOCKED: i32 = 2;
/// Runstate: neither runnable nor blocked (paused, offline, ...).
pub const RUNSTATE_OFFLINE: i32 = 3;

/// Bit set in `state_entry_time` while the hypervisor rewrites a registered
/// runstate area (only with `VMASST_TYPE_runstate_update_flag`).
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

/// `vcpu_set_singleshot_timer.flags`: fail with `-ETIME` if the deadline
/// has already passed.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// vCPU run-state accounting (C `struct vcpu_runstate_info`, `public/vcpu.h`), 48 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRunstateInfo {
    /// Current `RUNSTATE_*`.
    pub state: i32,
    /// Padding (C alignment hole).
    pub pad: u32,
    /// System time (ns) when `state` was entered; bit 63 may be
    /// [`XEN_RUNSTATE_UPDATE`].
    pub state_entry_time: u64,
    /// Total ns spent in each `RUNSTATE_*`.
    pub time: [u64; 4],
}

assert_layout!(VcpuRunstateInfo, size = 48, {
    state: 0, pad: 4, state_entry_time: 8, time: 16,
});

/// Argument of `VCPUOP_register_runstate_memory_area`
/// (C `struct vcpu_register_runstate_memory_area`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterRunstateMemoryArea {
    /// Guest virtual address of a [`VcpuRunstateInfo`] (physical address
    /// for the `_PHYS_AREA` variant).
    pub addr: u64,
}

assert_layout!(VcpuRegisterRunstateMemoryArea, size = 8, { addr: 0 });

/// Argument of `VCPUOP_register_vcpu_time_memory_area`
/// (C `struct vcpu_register_time_memory_area`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterTimeMemoryArea {
    /// Guest virtual address of a `vcpu_time_info` copy (physical address
    /// for the `_PHYS_AREA` variant).
    pub addr: u64,
}

assert_layout!(VcpuRegisterTimeMemoryArea, size = 8, { addr: 0 });

/// Argument of `VCPUOP_set_periodic_timer` (C `struct vcpu_set_periodic_timer`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuSetPeriodicTimer {
    /// Period in nanoseconds.
    pub period_ns: u64,
}

assert_layout!(VcpuSetPeriodicTimer, size = 8, { period_ns: 0 });

/// Argument of `VCPUOP_set_singleshot_timer`
/// (C `struct vcpu_set_singleshot_timer`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time (ns) of the deadline.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
    /// Padding (C tail padding).
    pub pad: u32,
}

assert_layout!(VcpuSetSingleshotTimer, size = 16, {
    timeout_abs_ns: 0, flags: 8, pad: 12,
});

/// Argument of `VCPUOP_register_vcpu_info` (C `struct vcpu_register_vcpu_info`), 16 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuRegisterVcpuInfo {
    /// MFN of the page that will hold the `vcpu_info`.
    pub mfn: u64,
    /// Byte offset in that page; the 64-byte structure must not cross the page end.
    pub offset: u32,
    /// Unused, must be zero.
    pub rsvd: u32,
}

assert_layout!(VcpuRegisterVcpuInfo, size = 16, { mfn: 0, offset: 8, rsvd: 12 });

/// Argument of `VCPUOP_get_physid` (C `struct vcpu_get_physid`), 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuGetPhysid {
    /// x86: APIC id in bits 0-31, ACPI id in bits 32-63.
    pub phys_id: u64,
}

assert_layout!(VcpuGetPhysid, size = 8, { phys_id: 0 });

/// x86-64 guest register file (C `struct cpu_user_regs`,
/// `public/arch-x86/xen-x86_64.h`), 200 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CpuUserRegs {
    /// `r15`.
    pub r15: u64,
    /// `r14`.
    pub r14: u64,
    /// `r13`.
    pub r13: u64,
    /// `r12`.
    pub r12: u64,
    /// `rbp`.
    pub rbp: u64,
    /// `rbx`.
    pub rbx: u64,
    /// `r11`.
    pub r11: u64,
    /// `r10`.
    pub r10: u64,
    /// `r9`.
    pub r9: u64,
    /// `r8`.
    pub r8: u64,
    /// `rax`.
    pub rax: u64,
    /// `rcx`.
    pub rcx: u64,
    /// `rdx`.
    pub rdx: u64,
    /// `rsi`.
    pub rsi: u64,
    /// `rdi`.
    pub rdi: u64,
    /// Hypervisor-private.
    pub error_code: u32,
    /// Hypervisor-private.
    pub entry_vector: u32,
    /// `rip`.
    pub rip: u64,
    /// `cs`.
    pub cs: u16,
    /// Padding.
    pub pad0: u16,
    /// Event mask saved with the frame (`rflags.IF == !saved_upcall_mask`).
    pub saved_upcall_mask: u8,
    /// Padding.
    pub pad1: [u8; 3],
    /// `rflags`.
    pub rflags: u64,
    /// `rsp`.
    pub rsp: u64,
    /// `ss`.
    pub ss: u16,
    /// Padding.
    pub pad2: [u16; 3],
    /// `es`.
    pub es: u16,
    /// Padding.
    pub pad3: [u16; 3],
    /// `ds`.
    pub ds: u16,
    /// Padding.
    pub pad4: [u16; 3],
    /// `fs` (non-zero takes precedence over `fs_base`).
    pub fs: u16,
    /// Padding.
    pub pad5: [u16; 3],
    /// `gs` (non-zero takes precedence over `gs_base_user`).
    pub gs: u16,
    /// Padding.
    pub pad6: [u16; 3],
}

assert_layout!(CpuUserRegs, size = 200, {
    r15: 0, r14: 8, r13: 16, r12: 24, rbp: 32, rbx: 40, r11: 48, r10: 56,
    r9: 64, r8: 72, rax: 80, rcx: 88, rdx: 96, rsi: 104, rdi: 112,
    error_code: 120, entry_vector: 124, rip: 128, cs: 136, pad0: 138,
    saved_upcall_mask: 140, pad1: 141, rflags: 144, rsp: 152,
    ss: 160, pad2: 162, es: 168, pad3: 170, ds: 176, pad4: 178,
    fs: 184, pad5: 186, gs: 192, pad6: 194,
});

/// Complete PV vCPU state for `VCPUOP_initialise` (C `struct
/// vcpu_guest_context`, `public/arch-x86/xen.h`), 0x1430 bytes on x86-64.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuGuestContext {
    /// FXSAVE image (valid with `VGCF_I387_VALID`).
    pub fpu_ctxt: [u8; 512],
    /// `VGCF_*` flags (see [`crate::layout`]).
    pub flags: u64,
    /// General registers.
    pub user_regs: CpuUserRegs,
    /// Virtual IDT.
    pub trap_ctxt: [TrapInfo; 256],
    /// LDT linear address.
    pub ldt_base: u64,
    /// LDT entry count.
    pub ldt_ents: u64,
    /// GDT frames (MFNs).
    pub gdt_frames: [u64; 16],
    /// GDT entry count.
    pub gdt_ents: u64,
    /// Kernel stack selector (`stack_switch`).
    pub kernel_ss: u64,
    /// Kernel stack pointer (`stack_switch`).
    pub kernel_sp: u64,
    /// CR0..CR7; `ctrlreg[3]` is the kernel root, `ctrlreg[1]` the user root
    /// (both in `xen_pfn_to_cr3` format).
    pub ctrlreg: [u64; 8],
    /// DR0..DR7.
    pub debugreg: [u64; 8],
    /// Event upcall entry point.
    pub event_callback_eip: u64,
    /// Failsafe callback entry point.
    pub failsafe_callback_eip: u64,
    /// 64-bit SYSCALL callback entry point.
    pub syscall_callback_eip: u64,
    /// `VMASST_TYPE_*` bitmap.
    pub vm_assist: u64,
    /// FS base.
    pub fs_base: u64,
    /// Kernel-mode GS base.
    pub gs_base_kernel: u64,
    /// User-mode GS base.
    pub gs_base_user: u64,
}

assert_layout!(VcpuGuestContext, size = 0x1430, {
    fpu_ctxt: 0, flags: 512, user_regs: 520, trap_ctxt: 720,
    ldt_base: 4816, ldt_ents: 4824, gdt_frames: 4832, gdt_ents: 4960,
    kernel_ss: 4968, kernel_sp: 4976, ctrlreg: 4984, debugreg: 5048,
    event_callback_eip: 5112, failsafe_callback_eip: 5120,
    syscall_callback_eip: 5128, vm_assist: 5136, fs_base: 5144,
    gs_base_kernel: 5152, gs_base_user: 5160,
});

impl_zeroed_default!(VcpuGuestContext);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn runstate_and_timer_bytes() {
        let r = VcpuRunstateInfo {
            state: RUNSTATE_BLOCKED,
            pad: 0,
            state_entry_time: XEN_RUNSTATE_UPDATE | 77,
            time: [1, 2, 3, 4],
        };
        let b = r.as_bytes();
        assert_eq!(&b[0..4], &2i32.to_le_bytes());
        assert_eq!(b[15], 0x80);
        assert_eq!(&b[40..48], &4u64.to_le_bytes());
        assert_eq!(VcpuRunstateInfo::read_from_bytes(b).unwrap(), r);

        let t = VcpuSetSingleshotTimer::read_from_bytes(&[
            0x10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
        ])
        .unwrap();
        assert_eq!(t.timeout_abs_ns, 16);
        assert_eq!(t.flags, VCPU_SSHOTTMR_FUTURE);
    }

    #[test]
    fn guest_context_default_is_zero() {
        let c = VcpuGuestContext::default();
        assert!(c.as_bytes().iter().all(|&b| b == 0));
    }
}
