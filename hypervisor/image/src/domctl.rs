//! XEN_DOMCTL, the toolstack's control of domains (the hardware domain only): creating a PV
//! domain, giving its vCPU a context, pausing, destroying, and reading its state; weight and
//! cap through the credit scheduler.
//!
//! A new domain starts paused (once, by the controller), with no memory (max_mem 0) and its
//! vCPUs down and uninitialised, as on Xen: the builder in dom0 gives it memory with
//! XENMEM_populate_physmap, writes its page tables and kernel through foreign mappings, hands
//! vCPU 0 its context with setvcpucontext, and unpauses it.
//!
//! Invariants: a domain in the table other than the caller is never on a CPU while it is
//! changed here except through the scheduler's own calls (`sched::wake`/`sleep`), and it is
//! torn down only once none of its vCPUs is on a CPU.
use alloc::boxed::Box;
use core::sync::atomic::{AtomicU16, Ordering};
use xen_abi::errno::Errno;
use zerocopy::FromBytes;

use crate::domain::{Domain, Vcpu, MAX_DOMAINS};
use crate::hypercall::{Ctx, Outcome};
use xenolith_core::pagetype::Owner;

/// The domctl interface version of Xen 4.17.
const INTERFACE_VERSION: u32 = 0x15;
const CREATEDOMAIN: u32 = 1;
const DESTROYDOMAIN: u32 = 2;
const PAUSEDOMAIN: u32 = 3;
const UNPAUSEDOMAIN: u32 = 4;
const GETDOMAININFO: u32 = 5;
const MAX_MEM: u32 = 11;
const SETVCPUCONTEXT: u32 = 12;
const GETVCPUINFO: u32 = 14;
const MAX_VCPUS: u32 = 15;
const SCHEDULER_OP: u32 = 16;

/// DOMID_FIRST_RESERVED: ids from here up are special (DOMID_SELF, DOMID_IO, ...).
const DOMID_FIRST_RESERVED: u16 = 0x7ff0;
/// Most vCPUs a domain may have: their vcpu_info must fit in shared_info.
const MAX_DOMAIN_VCPUS: u32 = 32;
/// Most controller pauses stacked on one domain (Xen's limit).
const MAX_PAUSES: u32 = 255;

/// XEN_DOMCTL_CDF_* flags.
const CDF_HVM: u32 = 1 << 0;
const CDF_HAP: u32 = 1 << 1;
const CDF_OOS_OFF: u32 = 1 << 3;
const CDF_IOMMU: u32 = 1 << 5;
const CDF_VPMU: u32 = 1 << 7;
const CDF_KNOWN: u32 = 0xff;
/// XEN_X86_MSR_RELAXED, the only arch misc flag.
const MISC_MSR_RELAXED: u32 = 1;

/// XEN_DOMINF_* flags.
const DOMINF_DYING: u32 = 1 << 0;
const DOMINF_SHUTDOWN: u32 = 1 << 2;
const DOMINF_PAUSED: u32 = 1 << 3;
const DOMINF_BLOCKED: u32 = 1 << 4;
const DOMINF_RUNNING: u32 = 1 << 5;
const DOMINF_SHUTDOWN_SHIFT: u32 = 16;
/// SHUTDOWN_crash.
const SHUTDOWN_CRASH: u32 = 3;

/// struct xen_domctl: a 16-byte header (cmd, interface_version, domain) and a 128-byte union.
const SIZE: usize = 16 + 128;
/// Offset of the union.
const U: usize = 16;

fn get_u32(op: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([op[at], op[at + 1], op[at + 2], op[at + 3]])
}

fn get_u64(op: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&op[at..at + 8]);
    u64::from_le_bytes(b)
}

fn put(op: &mut [u8], at: usize, bytes: &[u8]) {
    op[at..at + bytes.len()].copy_from_slice(bytes);
}

/// What a sub-op gives back: a result, and whether the structure goes back to the caller.
enum Reply {
    Done(Result<u64, Errno>, bool),
    Continue,
}

/// domctl(op).
pub fn domctl(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    if !c.dom.privileged {
        return Err(Errno::EPERM).into();
    }
    let mut op = [0u8; SIZE];
    if let Err(e) = c.mem().read(a[0], &mut op) {
        return Err(e).into();
    }
    if get_u32(&op, 4) != INTERFACE_VERSION {
        return Err(Errno::EACCES).into();
    }
    let cmd = get_u32(&op, 0);
    let domain = u16::from_le_bytes([op[8], op[9]]);
    let reply = match cmd {
        CREATEDOMAIN => create(c, &mut op),
        GETDOMAININFO => getdomaininfo(c, &mut op, domain),
        _ if domain != c.dom.id && !c.doms.exists(domain) => Reply::Done(Err(Errno::ESRCH), false),
        // A zombie only waits for its last pages: only destroy and getdomaininfo see it.
        _ if cmd != DESTROYDOMAIN && target(c, domain).dead => {
            Reply::Done(Err(Errno::EINVAL), false)
        }
        DESTROYDOMAIN => destroy(c, domain),
        PAUSEDOMAIN => Reply::Done(pause(c, domain), false),
        UNPAUSEDOMAIN => Reply::Done(unpause(c, domain), false),
        MAX_MEM => {
            let pages = get_u64(&op, U) >> 2;
            target(c, domain).max_pages = pages.min(u64::from(u32::MAX));
            Reply::Done(Ok(0), false)
        }
        MAX_VCPUS => Reply::Done(max_vcpus(c, domain, get_u32(&op, U)), false),
        SETVCPUCONTEXT => Reply::Done(setvcpucontext(c, &op, domain), false),
        GETVCPUINFO => getvcpuinfo(c, &mut op, domain),
        SCHEDULER_OP => scheduler_op(c, &mut op, domain),
        _ => Reply::Done(Err(Errno::ENOSYS), false),
    };
    match reply {
        Reply::Continue => Outcome::Continue,
        Reply::Done(r, copyback) => {
            if copyback && r.is_ok() {
                if let Err(e) = c.mem().write(a[0], &op) {
                    return Err(e).into();
                }
            }
            r.into()
        }
    }
}

/// The domain `id`, which exists (the caller or one in the table).
fn target<'a>(c: &'a mut Ctx<'_>, id: u16) -> &'a mut Domain {
    if id == c.dom.id {
        c.dom
    } else {
        match c.doms.get_mut(id) {
            Some(d) => d,
            None => panic!("domain {id} vanished under the domain lock"),
        }
    }
}

/// The next id `createdomain` tries when the caller names none.
static ROVER: AtomicU16 = AtomicU16::new(0);

/// XEN_DOMCTL_createdomain: a paused PV domain, configured as struct
/// xen_domctl_createdomain says (checked as Xen's sanitise_domain_config checks it), with no
/// vCPUs until XEN_DOMCTL_max_vcpus. Its id goes back in the header's `domain`, and the flags
/// with CDF_oos_off added as Xen does for PV.
fn create(c: &mut Ctx<'_>, op: &mut [u8; SIZE]) -> Reply {
    let r = (|| {
        let flags = get_u32(op, U + 20);
        let iommu_opts = get_u32(op, U + 24);
        let max_vcpus = get_u32(op, U + 28);
        let max_evtchn_port = get_u32(op, U + 32);
        let grant_opts = get_u32(op, U + 44);
        let vmtrace_size = get_u32(op, U + 48);
        let cpupool = get_u32(op, U + 52);
        let emulation = get_u32(op, U + 56);
        let misc = get_u32(op, U + 60);
        let invalid = flags & !CDF_KNOWN != 0
            || grant_opts & !0xf != 0
            // Grant table version 1 or 2 (Xen's grant_table_init).
            || !(1..=2).contains(&(grant_opts & 0xf))
            || max_vcpus < 1
            || (flags & CDF_HAP != 0 && flags & CDF_HVM == 0)
            || flags & CDF_IOMMU != 0
            || iommu_opts != 0
            || vmtrace_size != 0
            || flags & CDF_VPMU != 0
            || misc & !MISC_MSR_RELAXED != 0
            || max_vcpus > MAX_DOMAIN_VCPUS;
        if invalid {
            return Err(Errno::EINVAL);
        }
        if flags & CDF_HVM != 0 {
            crate::info!("createdomain: HVM and PVH domains are not supported yet");
            return Err(Errno::EOPNOTSUPP);
        }
        if emulation != 0 {
            // Xen: no emulated devices for a PV domU.
            return Err(Errno::EOPNOTSUPP);
        }
        if cpupool != 0 {
            return Err(Errno::ENOENT);
        }
        let id = pick_domid(c, u16::from_le_bytes([op[8], op[9]]))?;
        let mut handle = [0u8; 16];
        handle.copy_from_slice(&op[U + 4..U + 20]);
        let mut dom = new_domain(id, max_vcpus, max_evtchn_port, handle)?;
        crate::sched::add_domain(&mut dom);
        crate::info!("d{id}: created (up to {max_vcpus} vCPUs), paused");
        c.doms.insert(Box::new(dom));
        put(op, 8, &id.to_le_bytes());
        put(op, U + 20, &(flags | CDF_OOS_OFF).to_le_bytes());
        Ok(0)
    })();
    Reply::Done(r, true)
}

/// The id for a new domain: the one asked for (1 up to the first reserved id) if free, else
/// the next free one after the last handed out.
fn pick_domid(c: &Ctx<'_>, asked: u16) -> Result<u16, Errno> {
    let used = |id: u16| id == c.dom.id || c.doms.exists(id);
    if asked > 0 && asked < DOMID_FIRST_RESERVED {
        if used(asked) {
            return Err(Errno::EEXIST);
        }
        if usize::from(asked) >= MAX_DOMAINS {
            crate::info!("createdomain: domain ids stop at {}", MAX_DOMAINS - 1);
            return Err(Errno::EINVAL);
        }
        return Ok(asked);
    }
    let rover = ROVER.load(Ordering::Relaxed);
    let n = MAX_DOMAINS as u16;
    for k in 1..n {
        let id = (rover + k) % n;
        if id != 0 && !used(id) {
            ROVER.store(id, Ordering::Relaxed);
            return Ok(id);
        }
    }
    Err(Errno::ENOMEM)
}

/// A new PV domain: its own shared_info page, room for `nr_vcpus` vCPUs (created by
/// `max_vcpus`), no memory yet, one controller pause.
fn new_domain(id: u16, nr_vcpus: u32, max_port: u32, handle: [u8; 16]) -> Result<Domain, Errno> {
    let si_mfn = crate::mm::alloc_frame().ok_or(Errno::ENOMEM)?;
    if crate::mm::with_frames(|ft, _| ft.share(si_mfn, id)).is_err() {
        crate::mm::free_frame(si_mfn);
        return Err(Errno::ENOMEM);
    }
    {
        let page = &mut crate::mm::frame_bytes(si_mfn)[..0xc40];
        if let Ok(si) = xen_abi::shared_info::SharedInfo::mut_from_bytes(page) {
            for vi in si.vcpu_info.iter_mut() {
                vi.evtchn_upcall_mask = 1;
            }
            crate::time::update_wallclock(si);
            for vi in si.vcpu_info.iter_mut().take(nr_vcpus as usize) {
                crate::time::update_vcpu_time(vi);
            }
        }
    }
    Ok(Domain {
        id,
        privileged: false,
        p2m: alloc::vec::Vec::new(),
        max_pages: 0,
        tot_pages: 0,
        shared_info_mfn: si_mfn,
        vm_assist: 0,
        shutdown: None,
        vcpus: alloc::vec::Vec::new(),
        evtchn: xenolith_core::evtchn::EvtchnDomain::new(
            xen_abi::types::DomId(id),
            nr_vcpus,
            max_port,
        ),
        fifo: crate::events::FifoFrames::default(),
        next_due: 0,
        waiting: 0,
        cmos_index: 0,
        pci_cf8: 0,
        paused: 1,
        parked: false,
        dying: false,
        dead: false,
        max_vcpus: nr_vcpus,
        handle,
    })
}

/// XEN_DOMCTL_max_vcpus: creates the vCPUs createdomain made room for (the count must be
/// the same), down and uninitialised; again, it changes nothing.
fn max_vcpus(c: &mut Ctx<'_>, id: u16, max: u32) -> Result<u64, Errno> {
    if id == c.dom.id || max != target(c, id).max_vcpus {
        return Err(Errno::EINVAL);
    }
    let d = target(c, id);
    let now = crate::time::now_ns();
    for i in d.vcpus.len() as u32..max {
        let mut v = Vcpu::new(i, (d.shared_info_mfn << 12) + u64::from(i) * 64);
        v.runstate.state = crate::vcpu::RUNSTATE_OFFLINE;
        v.runstate.state_entry_time = now;
        d.vcpus.push(v);
    }
    crate::sched::add_vcpus(d);
    Ok(0)
}

/// XEN_DOMCTL_pausedomain: one more controller pause (not of the caller itself). The vCPUs
/// leave their CPUs at those CPUs' next pass through the hypervisor, which a reschedule
/// interrupt forces at once.
fn pause(c: &mut Ctx<'_>, id: u16) -> Result<u64, Errno> {
    if id == c.dom.id {
        return Err(Errno::EINVAL);
    }
    let d = target(c, id);
    if d.paused >= MAX_PAUSES {
        return Err(Errno::EOVERFLOW);
    }
    d.paused += 1;
    if d.paused == 1 {
        for v in 0..d.vcpus.len() {
            crate::sched::sleep(d, v);
        }
    }
    Ok(0)
}

/// XEN_DOMCTL_unpausedomain: drops a controller pause; the last one lets the vCPUs run.
fn unpause(c: &mut Ctx<'_>, id: u16) -> Result<u64, Errno> {
    let d = target(c, id);
    if d.paused == 0 {
        return Err(Errno::EINVAL);
    }
    d.paused -= 1;
    if d.paused == 0 {
        for v in 0..d.vcpus.len() {
            crate::sched::wake(d, v);
        }
    }
    Ok(0)
}

/// XEN_DOMCTL_destroydomain: the domain stops for good and gives back every page and
/// reference it holds; pages other domains still map are freed when the last mapping goes.
/// While one of its vCPUs is still on another CPU the hypercall continues (Xen's -ERESTART).
fn destroy(c: &mut Ctx<'_>, id: u16) -> Reply {
    if id == c.dom.id {
        return Reply::Done(Err(Errno::EINVAL), false);
    }
    let d = target(c, id);
    if !d.dying {
        d.dying = true;
        for v in 0..d.vcpus.len() {
            crate::sched::sleep(d, v);
        }
    }
    if d.vcpus.iter().any(|v| v.cpu.is_some()) {
        return Reply::Continue;
    }
    if !d.dead {
        crate::sched::remove_domain(id);
        teardown(d);
        d.dead = true;
        crate::info!("d{id}: destroyed");
    }
    reap_zombies(c);
    Reply::Done(Ok(0), false)
}

/// Frames a domain still owns (given up or not); a zombie's are mapped by other domains.
fn frames_owned(id: u16) -> u64 {
    crate::mm::with_frames(|ft, _| {
        (0..ft.len())
            .filter(|&m| ft.get(m).is_some_and(|p| p.owner == Owner::Domain(id)))
            .count() as u64
    })
}

/// Removes destroyed domains whose last page has gone.
fn reap_zombies(c: &mut Ctx<'_>) {
    let dead: alloc::vec::Vec<u16> = c
        .doms
        .ids
        .iter()
        .copied()
        .filter(|&i| c.doms.get(i).is_some_and(|d| d.dead))
        .collect();
    for id in dead {
        if frames_owned(id) == 0 {
            c.doms.remove(id);
        }
    }
}

/// Drops every reference a domain that no vCPU runs holds: LDT, GDT, roots and vcpu_info of
/// each vCPU, the FIFO event frames, its pins, its RAM and its shared_info page.
fn teardown(d: &mut Domain) {
    use crate::mm::with_frames;
    for v in 0..d.vcpus.len() {
        crate::desc::release_ldt(&mut d.vcpus[v]);
        let _ = crate::desc::replace_gdt(d, v, [0; crate::desc::GUEST_GDT_PAGES], 0);
        let (k, u) = (d.vcpus[v].guest_table, d.vcpus[v].guest_table_user);
        for root in [k, u].into_iter().filter(|&r| r != 0) {
            let _ = crate::mmu::replace_root_of(d, root, 0);
        }
        let vi = core::mem::take(&mut d.vcpus[v].vcpu_info_frame);
        if vi != 0 {
            with_frames(|ft, mem| ft.put_page_and_type(mem, vi));
        }
    }
    let fifo = core::mem::take(&mut d.fifo);
    with_frames(|ft, mem| {
        for m in fifo.control.into_iter().flatten().map(|(m, _)| m) {
            ft.put_page_and_type(mem, m);
        }
        for m in fifo.pages {
            ft.put_page_and_type(mem, m);
        }
        ft.unpin_all(mem, d.id);
        for mfn in 0..ft.len() {
            if ft.owned_by(mfn, d.id) {
                let _ = ft.release(mfn, d.id);
            }
        }
        let _ = ft.unshare(d.shared_info_mfn, d.id);
    });
    crate::mm::reap_freed(d);
    for v in d.vcpus.iter_mut() {
        v.up = false;
    }
}

/// XEN_DOMCTL_getdomaininfo: the state of the first domain whose id is at least the one
/// asked for (as Xen walks its domain list), echoed in the header's `domain`.
fn getdomaininfo(c: &mut Ctx<'_>, op: &mut [u8; SIZE], asked: u16) -> Reply {
    if asked >= DOMID_FIRST_RESERVED {
        return Reply::Done(Err(Errno::EINVAL), false);
    }
    reap_zombies(c);
    let mut ids: alloc::vec::Vec<u16> = c.doms.ids.clone();
    ids.sort_unstable();
    let Some(id) = ids.into_iter().find(|&i| i >= asked) else {
        return Reply::Done(Err(Errno::ESRCH), false);
    };
    let d = target(c, id);
    let now = crate::time::now_ns();
    // As Xen: blocked if every online vCPU is, running if one is on a CPU; neither if no vCPU
    // is online; the shutdown code (all ones for none) in the top half.
    let online: alloc::vec::Vec<&Vcpu> = d.vcpus.iter().filter(|v| v.up).collect();
    let mut flags = 0;
    if !online.is_empty() {
        if online
            .iter()
            .all(|v| !matches!(v.wait, crate::domain::Wait::None))
        {
            flags |= DOMINF_BLOCKED;
        }
        if online.iter().any(|v| v.cpu.is_some()) {
            flags |= DOMINF_RUNNING;
        }
    }
    let code = match d.shutdown {
        Some(crate::domain::Shutdown::Requested(r)) => r,
        Some(crate::domain::Shutdown::Crashed) => SHUTDOWN_CRASH,
        None => u32::MAX,
    };
    if d.shutdown.is_some() {
        flags |= DOMINF_SHUTDOWN;
    }
    if d.dead {
        flags |= DOMINF_DYING;
    }
    if d.paused > 0 {
        flags |= DOMINF_PAUSED;
    }
    flags |= code << DOMINF_SHUTDOWN_SHIFT;
    let nr_online = online.len() as u32;
    let cpu_time: u64 = d.vcpus.iter().map(|v| running_time(v, now)).sum();
    let tot_pages = if d.dead {
        frames_owned(id)
    } else {
        d.tot_pages
    };
    let phys_bits = xenolith_arch::instr::cpuid(0x8000_0008, 0).eax & 0xff;
    let out = &mut op[U..];
    out.fill(0);
    put(out, 0, &id.to_le_bytes());
    put(out, 4, &flags.to_le_bytes());
    put(out, 8, &tot_pages.to_le_bytes());
    put(out, 16, &d.max_pages.to_le_bytes());
    put(out, 48, &d.shared_info_mfn.to_le_bytes());
    put(out, 56, &cpu_time.to_le_bytes());
    put(out, 64, &nr_online.to_le_bytes());
    put(
        out,
        68,
        &(d.vcpus.len() as u32).wrapping_sub(1).to_le_bytes(),
    );
    put(out, 76, &d.handle);
    out[96] = phys_bits as u8;
    put(op, 8, &id.to_le_bytes());
    Reply::Done(Ok(0), true)
}

/// A vCPU's time in RUNSTATE_running, up to `now`.
fn running_time(v: &Vcpu, now: u64) -> u64 {
    let r = &v.runstate;
    let mut t = r.time[crate::vcpu::RUNSTATE_RUNNING as usize];
    if r.state == crate::vcpu::RUNSTATE_RUNNING {
        t += now.saturating_sub(r.state_entry_time);
    }
    t
}

/// XEN_DOMCTL_getvcpuinfo: whether a vCPU is up, blocked and running, its running time
/// (runstate) and its CPU.
fn getvcpuinfo(c: &mut Ctx<'_>, op: &mut [u8; SIZE], id: u16) -> Reply {
    let vcpu = get_u32(op, U) as usize;
    let d = target(c, id);
    if vcpu >= d.max_vcpus as usize {
        return Reply::Done(Err(Errno::EINVAL), false);
    }
    let Some(v) = d.vcpus.get(vcpu) else {
        return Reply::Done(Err(Errno::ESRCH), false);
    };
    let now = crate::time::now_ns();
    op[U + 4] = u8::from(v.up);
    op[U + 5] = u8::from(!matches!(v.wait, crate::domain::Wait::None));
    op[U + 6] = u8::from(v.cpu.is_some());
    put(op, U + 8, &running_time(v, now).to_le_bytes());
    put(op, U + 16, &(v.cpu.unwrap_or(0) as u32).to_le_bytes());
    Reply::Done(Ok(0), true)
}

/// XEN_DOMCTL_setvcpucontext: gives a vCPU of another domain its first context (see
/// `vcpu::set_context`). Setting the context of a vCPU that already has one, or resetting
/// it (a null context), is not built: -EOPNOTSUPP.
fn setvcpucontext(c: &mut Ctx<'_>, op: &[u8; SIZE], id: u16) -> Result<u64, Errno> {
    let vcpu = get_u32(op, U) as usize;
    let ctxt = get_u64(op, U + 8);
    if id == c.dom.id || vcpu >= target(c, id).vcpus.len() {
        return Err(Errno::EINVAL);
    }
    if ctxt == 0 || target(c, id).vcpus[vcpu].initialised {
        return Err(Errno::EOPNOTSUPP);
    }
    let words = crate::vcpu::read_context(&c.mem(), ctxt)?;
    let ctx = xen_abi::vcpu::VcpuGuestContext::ref_from_bytes(zerocopy::IntoBytes::as_bytes(
        words.as_slice(),
    ))
    .map_err(|_| Errno::EFAULT)?;
    crate::vcpu::set_context(target(c, id), vcpu, ctx).map(|()| 0)
}

/// XEN_SCHEDULER_CREDIT: the only scheduler here.
const SCHEDULER_CREDIT: u32 = 5;

/// XEN_DOMCTL_scheduler_op for the credit scheduler: getinfo reads a domain's weight and cap,
/// putinfo sets them (weight 0 and cap 0xffff leave them as they are). Another scheduler id, or
/// the per-vCPU sub-ops, get -EINVAL as from Xen's credit scheduler.
fn scheduler_op(c: &mut Ctx<'_>, op: &mut [u8; SIZE], id: u16) -> Reply {
    let sched_id = get_u32(op, U);
    let cmd = get_u32(op, U + 4);
    if sched_id != SCHEDULER_CREDIT {
        return Reply::Done(Err(Errno::EINVAL), false);
    }
    let weight = u16::from_le_bytes([op[U + 8], op[U + 9]]);
    let cap = u16::from_le_bytes([op[U + 10], op[U + 11]]);
    let _ = c;
    match cmd {
        0 => Reply::Done(
            crate::sched::set_credit(
                id,
                (weight != 0).then_some(weight),
                (cap != u16::MAX).then_some(u32::from(cap)),
            )
            .map(|()| 0),
            false,
        ),
        1 => match crate::sched::credit(id) {
            Ok((w, cap)) => {
                put(op, U + 8, &w.to_le_bytes());
                put(op, U + 10, &(cap.min(0xfffe) as u16).to_le_bytes());
                Reply::Done(Ok(0), true)
            }
            Err(e) => Reply::Done(Err(e), false),
        },
        _ => Reply::Done(Err(Errno::EINVAL), false),
    }
}
