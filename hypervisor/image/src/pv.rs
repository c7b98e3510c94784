//! PV hypercall handlers built so far (see docs/SUPPORT.md for status per sub-op).
use xen_abi::errno::Errno;
use xen_abi::layout::VGCF_IN_SYSCALL;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::guestmem::addr_ok;
use crate::hypercall::{Ctx, Outcome};
use crate::traps::{crash, toggle_guest_mode, vcpu_info};

/// Xen interface version reported to guests: the 4.17 ABI is the one implemented.
pub const XEN_MAJOR: u64 = 4;
pub const XEN_MINOR: u64 = 17;
/// XENVER_extraversion.
pub const EXTRAVERSION: &str = ".0-xenolith";

fn is_canonical(a: u64) -> bool {
    let top = a >> 47;
    top == 0 || top == 0x1ffff
}

// ---- console_io ----

const CONSOLEIO_WRITE: u64 = 0;
const CONSOLEIO_READ: u64 = 1;
/// Bytes written per invocation before a continuation.
const CONSOLE_CHUNK: u64 = 4096;

/// console_io(cmd, count, buffer).
pub fn console_io(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (cmd, count, buf) = (a[0], a[1], a[2]);
    match cmd {
        CONSOLEIO_WRITE | CONSOLEIO_READ if !c.dom.privileged => Err(Errno::EPERM).into(),
        CONSOLEIO_WRITE => {
            if count > i32::MAX as u64 {
                return Err(Errno::EINVAL).into();
            }
            let n = count.min(CONSOLE_CHUNK);
            let mut tmp = [0u8; 256];
            let mut done = 0;
            while done < n {
                let k = (n - done).min(tmp.len() as u64) as usize;
                if let Err(e) = c.mem().read(buf + done, &mut tmp[..k]) {
                    return Err(e).into();
                }
                crate::console::write_raw(&tmp[..k]);
                done += k as u64;
            }
            if n < count {
                c.regs.rsi = count - n;
                c.regs.rdx = buf + n;
                return Outcome::Continue;
            }
            Ok(0).into()
        }
        CONSOLEIO_READ => {
            let mut got = 0u64;
            while got < count.min(4096) {
                let Some(b) = crate::console::read_byte() else {
                    break;
                };
                if let Err(e) = c.mem().write(buf + got, &[b]) {
                    return Err(e).into();
                }
                got += 1;
            }
            Ok(got).into()
        }
        _ => Err(Errno::ENOSYS).into(),
    }
}

// ---- xen_version ----

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct FeatureInfo {
    submap_idx: u32,
    submap: u32,
}

/// xen_version(cmd, arg).
pub fn xen_version(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (cmd, arg) = (a[0], a[1]);
    let put_str = |c: &Ctx<'_>, s: &str, len: usize| -> Result<u64, Errno> {
        let mut b = alloc::vec![0u8; len];
        let n = s.len().min(len - 1);
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        c.mem().write(arg, &b).map(|()| 0)
    };
    let r = match cmd {
        0 => Ok((XEN_MAJOR << 16) | XEN_MINOR),
        1 => put_str(c, EXTRAVERSION, 16),
        2 => {
            // compiler[64], compile_by[16], compile_domain[32], compile_date[32]
            let mut b = [0u8; 144];
            b[..5].copy_from_slice(b"rustc");
            b[64..72].copy_from_slice(b"xenolith");
            c.mem().write(arg, &b).map(|()| 0)
        }
        3 => put_str(c, "xen-3.0-x86_64", 1024),
        4 => put_str(c, "unavailable", 64),
        5 => c
            .mem()
            .write(arg, &xen_abi::layout::HYPERVISOR_VIRT_START.to_le_bytes())
            .map(|()| 0),
        6 => match c.mem().read_obj::<FeatureInfo>(arg) {
            // XENFEAT_NR_SUBMAPS is 1.
            Ok(fi) if fi.submap_idx != 0 => Err(Errno::EINVAL),
            Ok(mut fi) => {
                fi.submap = supported_features(c.dom);
                c.mem().write_obj(arg, &fi).map(|()| 0)
            }
            Err(e) => Err(e),
        },
        7 => Ok(4096),
        8 => c.mem().write(arg, &[0u8; 16]).map(|()| 0),
        9 if c.dom.privileged => put_str(c, &crate::boot_cmdline(), 1024),
        9 => Err(Errno::EPERM),
        _ => Err(Errno::ENOSYS),
    };
    r.into()
}

/// XENFEAT bits (submap 0) reported by XENVER_get_features: what is really provided.
pub fn supported_features(dom: &crate::domain::Domain) -> u32 {
    const MMU_PT_UPDATE_PRESERVE_AD: u32 = 1 << 5;
    const HIGHMEM_ASSIST: u32 = 1 << 6;
    const DOM0: u32 = 1 << 11;
    // Grant mappings keep the PTE AVAIL bits (9-11) the guest asks for. There are no grant
    // mappings yet, so this holds trivially; Linux refuses to boot PV without it. Whoever
    // builds GNTTABOP_map_grant_ref must honour it.
    const GNTTAB_MAP_AVAIL_BITS: u32 = 1 << 7;
    const DIRECT_MAPPED: u32 = 1 << 17;
    let mut f = MMU_PT_UPDATE_PRESERVE_AD | HIGHMEM_ASSIST | GNTTAB_MAP_AVAIL_BITS | DIRECT_MAPPED;
    if dom.privileged {
        f |= DOM0;
    }
    f
}

/// XENFEAT bits a kernel may list as required in its ELF notes: the reported ones plus the
/// assists a PV kernel may rely on (writable page tables are always emulated, and 64-bit
/// page directories above 4 GiB are the only kind there is).
pub fn builder_features(dom: &crate::domain::Domain) -> u32 {
    const WRITABLE_PAGE_TABLES: u32 = 1 << 0;
    const PAE_PGDIR_ABOVE_4GB: u32 = 1 << 4;
    supported_features(dom) | WRITABLE_PAGE_TABLES | PAE_PGDIR_ABOVE_4GB
}

// ---- vm_assist ----

/// VMASST types whose behaviour is implemented: writable_pagetables (L1 write emulation,
/// which Xen 4.17 performs with or without it), architectural_iopl,
/// and the 4 GiB-segment and PAE-extended-CR3 assists, which have no meaning for 64-bit PV
/// guests and are accepted as no-ops as on Xen.
const VMASST_IMPLEMENTED: u64 = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4);
/// VMASST_TYPE_architectural_iopl: IOPL is architectural (kernel counts as CPL 0, IOPL in
/// RFLAGS of iret and bounce frames).
pub const VMASST_ARCHITECTURAL_IOPL: u64 = 1 << 4;

/// VMASST types Xen accepts for 64-bit PV guests.
const VMASST_VALID_PV64: u64 =
    (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 32);

/// vm_assist(cmd, type).
pub fn vm_assist(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (cmd, ty) = (a[0], a[1]);
    if ty >= 64 || VMASST_VALID_PV64 & (1 << ty) == 0 {
        return Err(Errno::EINVAL).into();
    }
    match cmd {
        0 if VMASST_IMPLEMENTED & (1 << ty) == 0 => {
            crate::warn!("d{}: vm_assist type {ty} is not supported yet", c.dom.id);
            Err(Errno::EINVAL).into()
        }
        0 => {
            c.dom.vm_assist |= 1 << ty;
            Ok(0).into()
        }
        1 => {
            c.dom.vm_assist &= !(1 << ty);
            Ok(0).into()
        }
        _ => Err(Errno::ENOSYS).into(),
    }
}

// ---- traps and callbacks ----

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct RawTrapInfo {
    vector: u8,
    flags: u8,
    cs: u16,
    _pad: u32,
    address: u64,
}

/// Entries handled per invocation before a continuation.
const TRAP_BATCH: u64 = 256;

/// set_trap_table(traps).
pub fn set_trap_table(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let mut p = a[0];
    if p == 0 {
        c.dom.vcpus[c.vcpu].trap_ctxt = [crate::domain::TrapEntry::default(); 256];
        return Ok(0).into();
    }
    for _ in 0..TRAP_BATCH {
        let t: RawTrapInfo = match c.mem().read_obj(p) {
            Ok(t) => t,
            Err(e) => return Err(e).into(),
        };
        if t.address == 0 {
            return Ok(0).into();
        }
        if !is_canonical(t.address) {
            return Err(Errno::EINVAL).into();
        }
        if t.vector == 2 {
            // The NMI trap entry is also the NMI callback, as on Xen.
            c.dom.vcpus[c.vcpu].nmi_callback = crate::domain::Callback {
                address: t.address,
                flags: 1,
            };
        }
        c.dom.vcpus[c.vcpu].trap_ctxt[usize::from(t.vector)] = crate::domain::TrapEntry {
            flags: t.flags,
            cs: t.cs | 3,
            address: t.address,
        };
        p += 16;
    }
    c.regs.rdi = p;
    Outcome::Continue
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct CallbackRegister {
    ty: u16,
    flags: u16,
    _pad: u32,
    address: u64,
}

/// callback_op(cmd, arg).
pub fn callback_op(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (cmd, arg) = (a[0], a[1]);
    match cmd {
        0 => {
            let r: CallbackRegister = match c.mem().read_obj(arg) {
                Ok(r) => r,
                Err(e) => return Err(e).into(),
            };
            if !is_canonical(r.address) {
                return Err(Errno::EINVAL).into();
            }
            let cb = crate::domain::Callback {
                address: r.address,
                flags: r.flags,
            };
            let v = &mut c.dom.vcpus[c.vcpu];
            match r.ty {
                0 => v.event_callback = cb,
                1 => v.failsafe_callback = cb,
                2 => v.syscall_callback = cb,
                4 => v.nmi_callback = cb,
                5 => v.sysenter_callback = cb,
                7 => v.syscall32_callback = cb,
                _ => return Err(Errno::ENOSYS).into(),
            }
            Ok(0).into()
        }
        1 => {
            let ty: u16 = match c.mem().read_obj(arg) {
                Ok(t) => t,
                Err(e) => return Err(e).into(),
            };
            match ty {
                4 => {
                    c.dom.vcpus[c.vcpu].nmi_callback = crate::domain::Callback::default();
                    Ok(0).into()
                }
                0 | 1 | 2 | 5 | 7 => Err(Errno::EINVAL).into(),
                _ => Err(Errno::ENOSYS).into(),
            }
        }
        _ => Err(Errno::ENOSYS).into(),
    }
}

/// stack_switch(ss, sp): the kernel stack used when an exception arrives in user mode.
pub fn stack_switch(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let v = &mut c.dom.vcpus[c.vcpu];
    v.kernel_ss = a[0] | 3;
    v.kernel_sp = a[1];
    Ok(0).into()
}

/// fpu_taskswitch(set): the guest's virtual CR0.TS.
pub fn fpu_taskswitch(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let set = a[0] != 0;
    c.dom.vcpus[c.vcpu].virtual_ts = set;
    crate::fpu::set_ts(set);
    Ok(0).into()
}

/// set_segment_base(which, base).
pub fn set_segment_base(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    use xenolith_arch::msr::{wrmsr, Msr};
    let (which, base) = (a[0], a[1]);
    if which <= 2 && !is_canonical(base) {
        return Err(Errno::EINVAL).into();
    }
    let v = &mut c.dom.vcpus[c.vcpu];
    let msr = match which {
        0 => {
            v.fs_base = base;
            Msr::FsBase
        }
        1 => {
            v.gs_base_user = base;
            if v.kernel_mode {
                Msr::KernelGsBase
            } else {
                Msr::GsBase
            }
        }
        2 => {
            v.gs_base_kernel = base;
            if v.kernel_mode {
                Msr::GsBase
            } else {
                Msr::KernelGsBase
            }
        }
        3 => {
            // SEGBASE_GS_USER_SEL: load the user GS selector; one that would fault loads
            // null instead, as Xen's fix-up does.
            let sel = base as u16;
            let sel = if crate::desc::loadable_data_selector(v, sel) {
                sel
            } else {
                0
            };
            // SAFETY: the selector was checked to load without faulting; interrupts are off.
            unsafe { xenolith_arch::instr::load_user_gs(sel) };
            // The load replaced the user GS base with the descriptor's.
            let user_msr = if v.kernel_mode {
                Msr::KernelGsBase
            } else {
                Msr::GsBase
            };
            v.gs_base_user = xenolith_arch::msr::rdmsr(user_msr);
            return Ok(0).into();
        }
        _ => return Err(Errno::EINVAL).into(),
    };
    // SAFETY: the base is canonical (checked above) and the hypervisor never uses FS or GS.
    unsafe { wrmsr(msr, base) };
    Ok(0).into()
}

// ---- iret ----

/// HYPERVISOR_iret: at RSP the guest left {rax, r11, rcx, flags, rip, cs, rflags, rsp, ss}.
pub fn iret(c: &mut Ctx<'_>, _a: [u64; 5]) -> Outcome {
    let mut f = [0u64; 9];
    let mut bytes = [0u8; 72];
    if c.mem().read(c.regs.rsp, &mut bytes).is_err() {
        crash(c.dom, "HYPERVISOR_iret with an unreadable frame");
        return Outcome::NoReturn;
    }
    for (i, w) in f.iter_mut().enumerate() {
        *w = u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    }
    let [rax, r11, rcx, flags, rip, cs, rflags, rsp, ss] = f;
    if !is_canonical(rip) {
        crash(c.dom, "HYPERVISOR_iret to a non-canonical address");
        return Outcome::NoReturn;
    }
    if cs & 3 == 3 && c.dom.vcpus[c.vcpu].kernel_mode {
        if c.dom.vcpus[c.vcpu].guest_table_user == 0 {
            crash(
                c.dom,
                "HYPERVISOR_iret to user mode without a user page table",
            );
            return Outcome::NoReturn;
        }
        toggle_guest_mode(&mut c.dom.vcpus[c.vcpu]);
    }
    let r = &mut *c.regs;
    r.rip = rip;
    r.cs = (cs & 0xffff) | 3;
    r.rsp = rsp;
    r.ss = (ss & 0xffff) | 3;
    r.rflags = (rflags & !((3 << 12) | (1 << 17))) | (1 << 9);
    if c.dom.vm_assist & VMASST_ARCHITECTURAL_IOPL != 0 {
        // The guest's IOPL travels in RFLAGS, as on hardware.
        c.dom.vcpus[c.vcpu].iopl = ((rflags >> 12) & 3) as u8;
    }
    r.rax = rax;
    if flags & VGCF_IN_SYSCALL == 0 {
        r.r11 = r11;
        r.rcx = rcx;
    } else {
        r.r11 = r.rflags;
        r.rcx = rip;
    }
    vcpu_info(&c.dom.vcpus[c.vcpu]).evtchn_upcall_mask = u8::from(rflags & (1 << 9) == 0);
    // iret ends NMI handling.
    c.dom.vcpus[c.vcpu].nmi_masked = false;
    Outcome::NoReturn
}

// ---- sched_op ----

/// sched_op(cmd, arg).
pub fn sched_op(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (cmd, arg) = (a[0], a[1]);
    match cmd {
        0 => {
            crate::sched::yield_now(c.dom, c.vcpu);
            Ok(0).into()
        }
        1 => {
            crate::vcpu::block(c.dom);
            Ok(0).into()
        }
        3 => crate::vcpu::poll(c, arg),
        2 => match c.mem().read_obj::<u32>(arg) {
            Ok(reason) => {
                crate::info!(
                    "d{} shutdown: reason {} ({})",
                    c.dom.id,
                    reason,
                    shutdown_name(reason)
                );
                c.dom.shutdown = Some(crate::domain::Shutdown::Requested(reason));
                Ok(0).into()
            }
            Err(e) => Err(e).into(),
        },
        4 => remote_shutdown(c, arg).into(),
        _ => Err(Errno::ENOSYS).into(),
    }
}

/// SCHEDOP_remote_shutdown (struct sched_remote_shutdown: domain id, reason): the hardware
/// domain shuts another domain down (or itself); others get -EPERM, as from Xen's XSM check.
fn remote_shutdown(c: &mut Ctx<'_>, arg: u64) -> Result<u64, Errno> {
    let op: xen_abi::sched::SchedRemoteShutdown = c.mem().read_obj(arg)?;
    let (id, reason) = (op.domain_id, op.reason);
    let me = id == c.dom.id;
    if !me && (!c.doms.exists(id) || c.doms.get(id).is_some_and(|d| d.dead)) {
        return Err(Errno::ESRCH);
    }
    if !c.dom.privileged {
        return Err(Errno::EPERM);
    }
    let caller = c.dom.id;
    let d = if me {
        &mut *c.dom
    } else {
        c.doms.get_mut(id).ok_or(Errno::ESRCH)?
    };
    if d.shutdown.is_none() {
        crate::info!(
            "d{} shut down by d{}: reason {} ({})",
            id,
            caller,
            reason,
            shutdown_name(reason)
        );
        d.shutdown = Some(crate::domain::Shutdown::Requested(reason));
    }
    if !me {
        // Its vCPUs leave their CPUs now; the caller's own shutdown is acted on on its way out.
        crate::traps::park(d);
    }
    Ok(0)
}

/// Name of a SHUTDOWN_* reason.
pub fn shutdown_name(reason: u32) -> &'static str {
    match reason {
        0 => "poweroff",
        1 => "reboot",
        2 => "suspend",
        3 => "crash",
        4 => "watchdog",
        5 => "soft_reset",
        _ => "unknown",
    }
}

// ---- memory_op ----

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct MachphysMapping {
    v_start: u64,
    v_end: u64,
    max_mfn: u64,
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct Reservation {
    extent_start: u64,
    nr_extents: u64,
    extent_order: u32,
    mem_flags: u32,
    domid: u16,
    pad: [u8; 6],
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct MachphysMfnList {
    max_extents: u32,
    pad: u32,
    extent_start: u64,
    nr_extents: u32,
    pad2: u32,
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct MemoryMap {
    nr_entries: u32,
    pad: u32,
    buffer: u64,
}

use xen_abi::types::DOMID_SELF;
/// Extents handled per invocation before a continuation (memory_op encodes progress in
/// the command's upper bits: start_extent << 6).
const EXTENT_BATCH: u64 = 256;

fn target_is_self(c: &Ctx<'_>, domid: u16) -> Result<(), Errno> {
    if domid == DOMID_SELF || domid == c.dom.id {
        Ok(())
    } else {
        Err(Errno::ESRCH)
    }
}

/// Largest extent order dom0 may ask for (Xen's default for the hardware domain).
const MAX_ORDER_DOM0: u32 = 18;
/// Largest extent order other domains may ask for.
const MAX_ORDER_DOMU: u32 = 9;

/// increase_reservation (0), decrease_reservation (1), populate_physmap (6) for a PV guest,
/// on the caller or (for a privileged caller) on another domain, as a domain builder does.
///
/// As on Xen the result is the number of extents completed, never an errno: a bad argument,
/// a domain that does not exist or may not be named, an oversized order or a failing extent
/// stops the operation there.
fn reservation(c: &mut Ctx<'_>, op: u64, start: u64, arg: u64) -> Outcome {
    let Ok(r) = c.mem().read_obj::<Reservation>(arg) else {
        return Ok(start).into();
    };
    let max_order = if c.dom.privileged {
        MAX_ORDER_DOM0
    } else {
        MAX_ORDER_DOMU
    };
    if r.extent_order > max_order || r.nr_extents > (1 << 40) {
        return Ok(start).into();
    }
    let mem = crate::guestmem::GuestMem::current(c.dom, c.dom.vcpus[c.vcpu].current_root());
    if target_is_self(c, r.domid).is_ok() {
        return reserve(&mem, c.regs, c.dom, c.doms, &r, op, start);
    }
    if !c.dom.privileged || r.domid >= DOMID_SELF {
        return Ok(start).into();
    }
    let Some(mut t) = c.doms.take(r.domid) else {
        return Ok(start).into();
    };
    let out = reserve(&mem, c.regs, &mut t, c.doms, &r, op, start);
    c.doms.put(t);
    out
}

/// The extents of `r` from `start` on, for domain `dom`; the extent list is in the caller's
/// memory `mem`.
fn reserve(
    mem: &crate::guestmem::GuestMem<'_>,
    regs: &mut crate::percpu::GuestRegs,
    dom: &mut crate::domain::Domain,
    others: &mut crate::domain::Domains,
    r: &Reservation,
    op: u64,
    start: u64,
) -> Outcome {
    let order = r.extent_order;
    let ptdom = dom.ptdom();
    let mut i = start;
    while i < r.nr_extents {
        if i - start == EXTENT_BATCH {
            regs.rdi = op | (i << 6);
            return Outcome::Continue;
        }
        let slot = r.extent_start.wrapping_add(i * 8);
        let done = match op {
            1 => {
                let Ok(first) = mem.read_obj::<u64>(slot) else {
                    break;
                };
                // Each frame of the extent in turn; a frame that is not ours stops here.
                let mut all = true;
                for k in 0..(1u64 << order) {
                    let mfn = first + k;
                    if crate::mm::with_frames(|ft, _| ft.release(mfn, ptdom.id)).is_err() {
                        all = false;
                        break;
                    }
                }
                crate::mm::reap_freed(dom, others);
                all
            }
            _ => {
                let n = 1u64 << order;
                if dom.tot_pages + n > dom.max_pages {
                    break;
                }
                let gpfn = if op == 6 {
                    let Ok(p) = mem.read_obj::<u64>(slot) else {
                        break;
                    };
                    Some(p)
                } else {
                    None
                };
                let base = if order == 0 {
                    crate::mm::alloc_frame()
                } else {
                    crate::mm::alloc_frames_contiguous(n, n)
                };
                let Some(base) = base else { break };
                for k in 0..n {
                    if order != 0 {
                        crate::mm::frame_bytes(base + k).fill(0);
                    }
                    let _ = crate::mm::with_frames(|ft, _| ft.assign(base + k, ptdom.id));
                    if let Some(p) = gpfn {
                        crate::mm::set_m2p(base + k, p + k);
                    }
                }
                dom.tot_pages += n;
                // A NULL list is allowed for increase_reservation: the frames are not reported.
                if (r.extent_start != 0 || op == 6) && mem.write_obj(slot, &base).is_err() {
                    // Unreportable: give the frames back rather than leak them.
                    crate::mm::with_frames(|ft, _| {
                        for k in 0..n {
                            let _ = ft.release(base + k, ptdom.id);
                        }
                    });
                    crate::mm::reap_freed(dom, others);
                    break;
                }
                true
            }
        };
        if !done {
            break;
        }
        i += 1;
    }
    Ok(i).into()
}

/// memory_op(cmd, arg).
pub fn memory_op(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (cmd, arg) = (a[0] & 0x3f, a[1]);
    let start = a[0] >> 6;
    match cmd {
        0 | 1 | 6 => reservation(c, cmd, start, arg),
        // Sub-ops without extents take no continuation start.
        2 | 3 | 4 | 14 if start != 0 => Err(Errno::EINVAL).into(),
        2 => Ok(crate::mm::max_pfn()).into(),
        14 => {
            let domid: u16 = match c.mem().read_obj(arg) {
                Ok(d) => d,
                Err(e) => return Err(e).into(),
            };
            if let Err(e) = target_is_self(c, domid) {
                return Err(e).into();
            }
            // The guest's own idea of its highest pfn, from shared_info.
            let si = crate::mm::frame_bytes(c.dom.shared_info_mfn);
            let max_pfn = u64::from_le_bytes(si[0xc10..0xc18].try_into().unwrap_or([0; 8]));
            Ok(max_pfn.saturating_sub(1)).into()
        }
        3 | 4 => {
            let domid: u16 = match c.mem().read_obj(arg) {
                Ok(d) => d,
                Err(e) => return Err(e).into(),
            };
            if let Err(e) = target_is_self(c, domid) {
                return Err(e).into();
            }
            Ok(if cmd == 3 {
                c.dom.tot_pages
            } else {
                c.dom.max_pages
            })
            .into()
        }
        5 => {
            let mut l: MachphysMfnList = match c.mem().read_obj(arg) {
                Ok(l) => l,
                Err(e) => return Err(e).into(),
            };
            let chunks = crate::mm::m2p_chunk_mfns();
            let n = chunks.len().min(l.max_extents as usize);
            for (i, m) in chunks.iter().take(n).enumerate() {
                if let Err(e) = c.mem().write_obj(l.extent_start + i as u64 * 8, m) {
                    return Err(e).into();
                }
            }
            l.nr_extents = n as u32;
            c.mem().write_obj(arg, &l).map(|()| 0).into()
        }
        // A PV domain has no pseudo-physical memory map unless its builder set one (Xen
        // answers -ENOSYS for dom0 too), after checking the argument.
        9 => match c.mem().read_obj::<MemoryMap>(arg) {
            Ok(_) => Err(Errno::ENOSYS).into(),
            Err(e) => Err(e).into(),
        },
        11 => exchange(c, arg),
        10 if !c.dom.privileged => Err(Errno::EPERM).into(),
        10 => {
            let mut m: MemoryMap = match c.mem().read_obj(arg) {
                Ok(m) => m,
                Err(e) => return Err(e).into(),
            };
            let map = crate::host_memory_map();
            if m.buffer == 0 {
                // Just the number of entries.
                m.nr_entries = map.len() as u32;
                return c.mem().write_obj(arg, &m).map(|()| 0).into();
            }
            if (m.nr_entries as usize) < map.len() {
                return Err(Errno::EINVAL).into();
            }
            let n = map.len();
            for (i, r) in map.iter().take(n).enumerate() {
                let mut e = [0u8; 20];
                e[..8].copy_from_slice(&r.base.to_le_bytes());
                e[8..16].copy_from_slice(&r.len.to_le_bytes());
                e[16..].copy_from_slice(&r.kind.to_le_bytes());
                if let Err(err) = c.mem().write(m.buffer + i as u64 * 20, &e) {
                    return Err(err).into();
                }
            }
            m.nr_entries = n as u32;
            c.mem().write_obj(arg, &m).map(|()| 0).into()
        }
        12 => {
            let m = MachphysMapping {
                v_start: xen_abi::layout::MACH2PHYS_VIRT_START,
                v_end: xen_abi::layout::MACH2PHYS_VIRT_END,
                // Xen reports the highest machine frame the M2P describes.
                max_mfn: crate::mm::max_pfn().saturating_sub(1),
            };
            c.mem().write_obj(arg, &m).map(|()| 0).into()
        }
        _ => Err(Errno::ENOSYS).into(),
    }
}

// ---- update_va_mapping ----

/// update_va_mapping(va, new PTE, flags): replaces the L1 entry mapping `va` in the current
/// kernel page tables, with the same checks as mmu_update.
pub fn update_va_mapping(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (va, val, flags) = (a[0], a[1], a[2]);
    if !addr_ok(va) || !is_canonical(va) {
        return Err(Errno::EINVAL).into();
    }
    let Some(l1) = crate::mmu::l1_table_of(c.dom.vcpus[c.vcpu].guest_table, va) else {
        return Err(Errno::EINVAL).into();
    };
    let ptdom = c.dom.ptdom();
    let r = crate::mm::with_frames(|ft, mem| {
        ft.mod_entry(mem, l1, ((va >> 12) & 511) as usize, val, ptdom, false)
    });
    if let Err(e) = r {
        return Err(e).into();
    }
    if let Err(e) = crate::mmu::flush_for_uvmf(c, flags, va) {
        return Err(e).into();
    }
    Ok(0).into()
}

// ---- physdev_op ----

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct SetIobitmap {
    bitmap: u64,
    nr_ports: u32,
    pad: u32,
}

/// physdev_op(cmd, arg): set_iopl and set_iobitmap so far.
pub fn physdev_op(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (cmd, arg) = (a[0], a[1]);
    match cmd {
        6 => match c.mem().read_obj::<u32>(arg) {
            Ok(iopl) if iopl > 3 => Err(Errno::EINVAL).into(),
            Ok(iopl) => {
                c.dom.vcpus[c.vcpu].iopl = iopl as u8;
                Ok(0).into()
            }
            Err(e) => Err(e).into(),
        },
        7 => match c.mem().read_obj::<SetIobitmap>(arg) {
            Ok(b) if b.nr_ports > 65536 => Err(Errno::EINVAL).into(),
            Ok(b) => {
                let v = &mut c.dom.vcpus[c.vcpu];
                v.iobmp = b.bitmap;
                v.iobmp_limit = b.nr_ports;
                Ok(0).into()
            }
            Err(e) => Err(e).into(),
        },
        _ => Err(Errno::ENOSYS).into(),
    }
}

// ---- debug registers ----

/// set_debugreg(reg, value).
pub fn set_debugreg(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let Ok(reg) = u8::try_from(a[0]) else {
        return Err(Errno::ENODEV).into();
    };
    crate::emulate::set_debugreg(&mut c.dom.vcpus[c.vcpu], reg, a[1])
        .map(|()| 0)
        .into()
}

/// get_debugreg(reg).
pub fn get_debugreg(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let Ok(reg) = u8::try_from(a[0]) else {
        return Err(Errno::ENODEV).into();
    };
    crate::emulate::get_debugreg(&c.dom.vcpus[c.vcpu], reg).into()
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct Exchange {
    input: Reservation,
    output: Reservation,
    nr_exchanged: u64,
}

/// XENMEM_exchange: trade the caller's frames for others of a different extent order (used
/// for contiguous DMA buffers). Each input frame must be held only by its allocation.
fn exchange(c: &mut Ctx<'_>, arg: u64) -> Outcome {
    let mut x: Exchange = match c.mem().read_obj(arg) {
        Ok(x) => x,
        Err(e) => return Err(e).into(),
    };
    let (i, o) = (&x.input, &x.output);
    let max_order = if c.dom.privileged {
        MAX_ORDER_DOM0
    } else {
        MAX_ORDER_DOMU
    };
    if x.nr_exchanged > i.nr_extents
        || i.domid != o.domid
        || i.nr_extents > (1 << 40)
        || o.nr_extents > (1 << 40)
    {
        return Err(Errno::EINVAL).into();
    }
    if i.extent_order > max_order || o.extent_order > max_order {
        return Err(Errno::EPERM).into();
    }
    if (i.nr_extents << i.extent_order) != (o.nr_extents << o.extent_order) {
        return Err(Errno::EINVAL).into();
    }
    if let Err(e) = target_is_self(c, i.domid) {
        return Err(e).into();
    }
    let (in_order, out_order) = (i.extent_order, o.extent_order);
    // One chunk: enough input extents for one output extent, or the other way round.
    let (in_per, out_per) = if in_order >= out_order {
        (1u64, 1u64 << (in_order - out_order))
    } else {
        (1u64 << (out_order - in_order), 1u64)
    };
    let ptdom = c.dom.ptdom();
    while x.nr_exchanged < x.input.nr_extents {
        let first_in = x.nr_exchanged;
        let first_out = first_in / in_per * out_per;
        // Collect and check the input frames.
        let mut frames = alloc::vec::Vec::new();
        for k in 0..in_per {
            let slot = x.input.extent_start.wrapping_add((first_in + k) * 8);
            let Ok(m) = c.mem().read_obj::<u64>(slot) else {
                return Err(Errno::EFAULT).into();
            };
            for f in 0..(1u64 << in_order) {
                frames.push(m + f);
            }
        }
        let free = crate::mm::with_frames(|ft, _| {
            frames.iter().all(|&m| {
                ft.owned_by(m, ptdom.id)
                    && ft
                        .get(m)
                        .is_some_and(|p| p.count == 1 && p.type_count == 0 && !p.pinned)
            })
        });
        if !free {
            return Err(Errno::EINVAL).into();
        }
        // New extents.
        let n = 1u64 << out_order;
        let mut out = alloc::vec::Vec::new();
        for k in 0..out_per {
            let slot = x.output.extent_start.wrapping_add((first_out + k) * 8);
            let Ok(gpfn) = c.mem().read_obj::<u64>(slot) else {
                return Err(Errno::EFAULT).into();
            };
            let Some(base) = crate::mm::alloc_frames_contiguous(n, n) else {
                for &(b, _, _) in &out {
                    for f in 0..n {
                        crate::mm::free_frame(b + f);
                    }
                }
                return Err(Errno::ENOMEM).into();
            };
            out.push((base, gpfn, slot));
        }
        for &(base, gpfn, slot) in &out {
            for f in 0..n {
                crate::mm::frame_bytes(base + f).fill(0);
                let _ = crate::mm::with_frames(|ft, _| ft.assign(base + f, ptdom.id));
                crate::mm::set_m2p(base + f, gpfn + f);
            }
            let _ = c.mem().write_obj(slot, &base);
        }
        crate::mm::with_frames(|ft, _| {
            for &m in &frames {
                let _ = ft.release(m, ptdom.id);
            }
        });
        // The trade leaves the reservation unchanged.
        c.dom.tot_pages += out_per * n;
        crate::mm::reap_freed(c.dom, c.doms);
        x.nr_exchanged += in_per;
        let _ = c.mem().write_obj(arg + 64, &x.nr_exchanged);
    }
    Ok(0).into()
}

/// XENPF_INTERFACE_VERSION.
const PLATFORM_INTERFACE_VERSION: u32 = 0x0300_0001;
/// XENPF_get_cpuinfo.
const XENPF_GET_CPUINFO: u32 = 55;
const XEN_PCPU_FLAGS_ONLINE: u32 = 1;
const XEN_PCPU_FLAGS_INVALID: u32 = 2;

/// platform_op(op), for the hardware domain. Only XENPF_get_cpuinfo so far: a physical CPU's
/// local APIC id, ACPI processor id and online flag (INVALID past the last CPU), and the
/// highest CPU index; the rest answers -ENOSYS.
pub fn platform_op(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    if !c.dom.privileged {
        return Err(Errno::EPERM).into();
    }
    // struct xen_platform_op: cmd, interface_version, then the union; pcpu_info is
    // xen_cpuid, max_present, flags, apic_id, acpi_id.
    let mut op = [0u8; 28];
    if let Err(e) = c.mem().read(a[0], &mut op) {
        return Err(e).into();
    }
    let word = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if word(&op, 4) != PLATFORM_INTERFACE_VERSION {
        return Err(Errno::EACCES).into();
    }
    match word(&op, 0) {
        XENPF_GET_CPUINFO => {
            let cpu = word(&op, 8) as usize;
            let (flags, apic, acpi) = match crate::smp::cpu_ids(cpu) {
                Some((apic, acpi)) => (XEN_PCPU_FLAGS_ONLINE, apic, acpi),
                None => (XEN_PCPU_FLAGS_INVALID, word(&op, 20), word(&op, 24)),
            };
            let max_present = crate::smp::online() as u32 - 1;
            for (i, v) in [(12, max_present), (16, flags), (20, apic), (24, acpi)] {
                op[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            c.mem().write(a[0], &op).map(|()| 0).into()
        }
        _ => Err(Errno::ENOSYS).into(),
    }
}
