//! Hypercall numbers (`__HYPERVISOR_*` in `public/xen.h`) and their names.
//!
//! A 64-bit PV guest kernel issues hypercall `nr` with `SYSCALL`, `rax = nr`
//! and up to six arguments in `rdi, rsi, rdx, r10, r8, r9`; the result comes
//! back in `rax` (negative values are `-errno`, see [`crate::errno`]).

/// `set_trap_table(const trap_info *traps)`: install the virtual IDT.
pub const SET_TRAP_TABLE: u64 = 0;
/// `mmu_update(reqs, count, done*, foreigndom)`: checked page-table / M2P writes.
pub const MMU_UPDATE: u64 = 1;
/// `set_gdt(frames, entries)`: install a guest GDT made of the given frames.
pub const SET_GDT: u64 = 2;
/// `stack_switch(ss, sp)`: kernel stack used on entry from user mode.
pub const STACK_SWITCH: u64 = 3;
/// `set_callbacks(...)`: legacy callback registration (superseded by `callback_op`).
pub const SET_CALLBACKS: u64 = 4;
/// `fpu_taskswitch(set)`: set or clear the virtual CR0.TS.
pub const FPU_TASKSWITCH: u64 = 5;
/// Pre-3.0.2 `sched_op` taking an integer argument.
pub const SCHED_OP_COMPAT: u64 = 6;
/// `platform_op` (was `dom0_op` before interface 0x00030204); privileged.
pub const PLATFORM_OP: u64 = 7;
/// `set_debugreg(reg, value)`.
pub const SET_DEBUGREG: u64 = 8;
/// `get_debugreg(reg)`: returns the value, or `-EINVAL` as an unsigned long.
pub const GET_DEBUGREG: u64 = 9;
/// `update_descriptor(maddr, desc)`: checked write of one GDT/LDT entry.
pub const UPDATE_DESCRIPTOR: u64 = 10;
/// `memory_op(cmd, arg)`: `XENMEM_*` sub-operations.
pub const MEMORY_OP: u64 = 12;
/// `multicall(entries, count)`: batch of hypercalls.
pub const MULTICALL: u64 = 13;
/// `update_va_mapping(va, pte, flags)`: write the L1 entry mapping `va`.
pub const UPDATE_VA_MAPPING: u64 = 14;
/// `set_timer_op(deadline_ns)`: one-shot timer at absolute system time.
pub const SET_TIMER_OP: u64 = 15;
/// Pre-3.2.2 `event_channel_op` taking a `struct evtchn_op`.
pub const EVENT_CHANNEL_OP_COMPAT: u64 = 16;
/// `xen_version(cmd, arg)`: `XENVER_*` sub-operations.
pub const XEN_VERSION: u64 = 17;
/// `console_io(cmd, count, buffer)`: emergency console.
pub const CONSOLE_IO: u64 = 18;
/// Pre-3.2.2 `physdev_op` taking a `struct physdev_op`.
pub const PHYSDEV_OP_COMPAT: u64 = 19;
/// `grant_table_op(cmd, args, count)`: `GNTTABOP_*` sub-operations.
pub const GRANT_TABLE_OP: u64 = 20;
/// `vm_assist(cmd, type)`: enable/disable `VMASST_TYPE_*` assists.
pub const VM_ASSIST: u64 = 21;
/// `update_va_mapping_otherdomain(va, pte, flags, domid)`.
pub const UPDATE_VA_MAPPING_OTHERDOMAIN: u64 = 22;
/// `iret()`: return from an exception/event frame (x86 only).
pub const IRET: u64 = 23;
/// `vcpu_op(cmd, vcpuid, arg)`: `VCPUOP_*` sub-operations.
pub const VCPU_OP: u64 = 24;
/// `set_segment_base(which, base)`: FS/GS bases (x86-64 only).
pub const SET_SEGMENT_BASE: u64 = 25;
/// `mmuext_op(ops, count, done*, foreigndom)`: pinning, base pointers, TLB ops.
pub const MMUEXT_OP: u64 = 26;
/// `xsm_op(arg)`: security module (was `acm_op`).
pub const XSM_OP: u64 = 27;
/// `nmi_op(cmd, arg)`.
pub const NMI_OP: u64 = 28;
/// `sched_op(cmd, arg)`: `SCHEDOP_*` sub-operations.
pub const SCHED_OP: u64 = 29;
/// `callback_op(cmd, arg)`: `CALLBACKOP_*` sub-operations.
pub const CALLBACK_OP: u64 = 30;
/// `xenoprof_op(cmd, arg)`: profiling.
pub const XENOPROF_OP: u64 = 31;
/// `event_channel_op(cmd, arg)`: `EVTCHNOP_*` sub-operations.
pub const EVENT_CHANNEL_OP: u64 = 32;
/// `physdev_op(cmd, arg)`: `PHYSDEVOP_*` sub-operations.
pub const PHYSDEV_OP: u64 = 33;
/// `hvm_op(cmd, arg)`.
pub const HVM_OP: u64 = 34;
/// `sysctl(arg)`: toolstack system control; privileged.
pub const SYSCTL: u64 = 35;
/// `domctl(arg)`: toolstack domain control; privileged.
pub const DOMCTL: u64 = 36;
/// `kexec_op(cmd, arg)`.
pub const KEXEC_OP: u64 = 37;
/// `tmem_op(arg)`: transcendent memory (removed from Xen; number reserved).
pub const TMEM_OP: u64 = 38;
/// `argo_op(cmd, ...)`: Argo inter-domain messaging (was `xc_reserved_op`).
pub const ARGO_OP: u64 = 39;
/// `xenpmu_op(cmd, arg)`: virtual PMU.
pub const XENPMU_OP: u64 = 40;
/// `dm_op(domid, nr_bufs, bufs)`: device-model operations.
pub const DM_OP: u64 = 41;
/// `hypfs_op(cmd, ...)`: hypervisor filesystem.
pub const HYPFS_OP: u64 = 42;

/// First architecture-specific hypercall number (`__HYPERVISOR_arch_0`).
pub const ARCH_0: u64 = 48;
/// Last architecture-specific hypercall number (`__HYPERVISOR_arch_7`).
pub const ARCH_7: u64 = 55;
/// x86 `mca(arg)`: machine-check architecture (`__HYPERVISOR_arch_0`, `arch-x86/xen-mca.h`).
pub const MCA: u64 = 48;
/// x86 `paging_domctl_cont`: Xen-internal continuation (`__HYPERVISOR_arch_1`,
/// defined in Xen's private `asm/hypercall.h`, not in the public headers).
pub const PAGING_DOMCTL_CONT: u64 = 49;

/// Number of 32-byte slots in the hypercall transfer page.
pub const HYPERCALL_PAGE_SLOTS: usize = 128;
/// Size in bytes of one hypercall stub in the hypercall page (slot `nr` is at
/// `nr * HYPERCALL_STUB_SIZE`).
pub const HYPERCALL_STUB_SIZE: usize = 32;

/// Filler byte (`int3`) for unused hypercall-page bytes.
pub const HYPERCALL_PAGE_FILL: u8 = 0xCC;

/// The 32-byte stub a 64-bit PV hypercall page holds in slot `nr`.
///
/// Ordinary slots are `push %rcx; push %r11; mov $nr,%eax; syscall;
/// pop %r11; pop %rcx; ret`. The [`IRET`] slot is `push %rcx; push %r11;
/// push %rax; mov $23,%eax; syscall` and never returns (guests jump to it).
/// Unused bytes are [`HYPERCALL_PAGE_FILL`].
pub const fn hypercall_stub(nr: u32) -> [u8; HYPERCALL_STUB_SIZE] {
    let mut s = [HYPERCALL_PAGE_FILL; HYPERCALL_STUB_SIZE];
    let imm = nr.to_le_bytes();
    s[0] = 0x51; // push %rcx
    s[1] = 0x41; // push %r11
    s[2] = 0x53;
    let mut i = 3;
    if nr as u64 == IRET {
        s[i] = 0x50; // push %rax
        i += 1;
    }
    s[i] = 0xB8; // mov $imm32,%eax
    s[i + 1] = imm[0];
    s[i + 2] = imm[1];
    s[i + 3] = imm[2];
    s[i + 4] = imm[3];
    s[i + 5] = 0x0F; // syscall
    s[i + 6] = 0x05;
    if nr as u64 != IRET {
        s[i + 7] = 0x41; // pop %r11
        s[i + 8] = 0x5B;
        s[i + 9] = 0x59; // pop %rcx
        s[i + 10] = 0xC3; // ret
    }
    s
}

/// Fill a 4 KiB hypercall page the way Xen's PV domain builder does:
/// every one of the [`HYPERCALL_PAGE_SLOTS`] slots gets [`hypercall_stub`].
pub fn fill_hypercall_page(page: &mut [u8; 4096]) {
    for (nr, slot) in page.chunks_exact_mut(HYPERCALL_STUB_SIZE).enumerate() {
        slot.copy_from_slice(&hypercall_stub(nr as u32));
    }
}

/// Every hypercall number defined by Xen with its Xen name
/// (the `__HYPERVISOR_` suffix), sorted by number.
pub const NAMES: [(u64, &str); 43] = [
    (SET_TRAP_TABLE, "set_trap_table"),
    (MMU_UPDATE, "mmu_update"),
    (SET_GDT, "set_gdt"),
    (STACK_SWITCH, "stack_switch"),
    (SET_CALLBACKS, "set_callbacks"),
    (FPU_TASKSWITCH, "fpu_taskswitch"),
    (SCHED_OP_COMPAT, "sched_op_compat"),
    (PLATFORM_OP, "platform_op"),
    (SET_DEBUGREG, "set_debugreg"),
    (GET_DEBUGREG, "get_debugreg"),
    (UPDATE_DESCRIPTOR, "update_descriptor"),
    (MEMORY_OP, "memory_op"),
    (MULTICALL, "multicall"),
    (UPDATE_VA_MAPPING, "update_va_mapping"),
    (SET_TIMER_OP, "set_timer_op"),
    (EVENT_CHANNEL_OP_COMPAT, "event_channel_op_compat"),
    (XEN_VERSION, "xen_version"),
    (CONSOLE_IO, "console_io"),
    (PHYSDEV_OP_COMPAT, "physdev_op_compat"),
    (GRANT_TABLE_OP, "grant_table_op"),
    (VM_ASSIST, "vm_assist"),
    (
        UPDATE_VA_MAPPING_OTHERDOMAIN,
        "update_va_mapping_otherdomain",
    ),
    (IRET, "iret"),
    (VCPU_OP, "vcpu_op"),
    (SET_SEGMENT_BASE, "set_segment_base"),
    (MMUEXT_OP, "mmuext_op"),
    (XSM_OP, "xsm_op"),
    (NMI_OP, "nmi_op"),
    (SCHED_OP, "sched_op"),
    (CALLBACK_OP, "callback_op"),
    (XENOPROF_OP, "xenoprof_op"),
    (EVENT_CHANNEL_OP, "event_channel_op"),
    (PHYSDEV_OP, "physdev_op"),
    (HVM_OP, "hvm_op"),
    (SYSCTL, "sysctl"),
    (DOMCTL, "domctl"),
    (KEXEC_OP, "kexec_op"),
    (TMEM_OP, "tmem_op"),
    (ARGO_OP, "argo_op"),
    (XENPMU_OP, "xenpmu_op"),
    (DM_OP, "dm_op"),
    (HYPFS_OP, "hypfs_op"),
    (MCA, "mca"),
];

/// Xen's name for hypercall `nr` (e.g. `17` → `"xen_version"`), if defined.
pub fn name(nr: u64) -> Option<&'static str> {
    NAMES.iter().find(|(n, _)| *n == nr).map(|(_, s)| *s)
}

/// Hypercall number for a Xen hypercall name (inverse of [`name`]).
pub fn by_name(s: &str) -> Option<u64> {
    NAMES.iter().find(|(_, n)| *n == s).map(|(nr, _)| *nr)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sorted_and_unique() {
        for w in NAMES.windows(2) {
            assert!(w[0].0 < w[1].0, "{:?} !< {:?}", w[0], w[1]);
        }
        for (i, (_, a)) in NAMES.iter().enumerate() {
            for (_, b) in &NAMES[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn lookup() {
        assert_eq!(name(XEN_VERSION), Some("xen_version"));
        assert_eq!(name(0), Some("set_trap_table"));
        assert_eq!(name(IRET), Some("iret"));
        assert_eq!(name(HYPFS_OP), Some("hypfs_op"));
        assert_eq!(name(11), None);
        assert_eq!(name(1000), None);
        assert_eq!(by_name("sched_op"), Some(29));
        assert_eq!(by_name("nope"), None);
        for (nr, n) in NAMES {
            assert_eq!(by_name(n), Some(nr));
        }
    }

    #[test]
    fn stubs() {
        let s = hypercall_stub(17);
        assert_eq!(
            &s[..14],
            &[0x51, 0x41, 0x53, 0xB8, 17, 0, 0, 0, 0x0F, 0x05, 0x41, 0x5B, 0x59, 0xC3]
        );
        assert!(s[14..].iter().all(|&b| b == 0xCC));
        let i = hypercall_stub(IRET as u32);
        assert_eq!(
            &i[..11],
            &[0x51, 0x41, 0x53, 0x50, 0xB8, 23, 0, 0, 0, 0x0F, 0x05]
        );
        assert!(i[11..].iter().all(|&b| b == 0xCC));
        let mut page = [0u8; 4096];
        fill_hypercall_page(&mut page);
        assert_eq!(page[32 * 29 + 4], 29);
        assert_eq!(page[0], 0x51);
    }
}
