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
use xen_abi::domctl::*;
use xen_abi::errno::Errno;
use xen_abi::types::DOMID_FIRST_RESERVED;
use xenolith_core::pagetype::Owner;
use zerocopy::FromBytes;

use crate::domain::{Domain, Vcpu, MAX_DOMAINS};
use crate::hypercall::{Ctx, Outcome};

/// Most vCPUs a domain may have: their vcpu_info must fit in shared_info.
const MAX_DOMAIN_VCPUS: u32 = 32;
/// Most controller pauses stacked on one domain (Xen's limit).
const MAX_PAUSES: u32 = 255;

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
    let mut op: Domctl = match c.mem().read_obj(a[0]) {
        Ok(op) => op,
        Err(e) => return Err(e).into(),
    };
    if op.interface_version != XEN_DOMCTL_INTERFACE_VERSION {
        return Err(Errno::EACCES).into();
    }
    let (cmd, domain) = (op.cmd, op.domain);
    let reply = match cmd {
        XEN_DOMCTL_CREATEDOMAIN => create(c, &mut op),
        XEN_DOMCTL_GETDOMAININFO => getdomaininfo(c, &mut op, domain),
        _ if domain != c.dom.id && !c.doms.exists(domain) => Reply::Done(Err(Errno::ESRCH), false),
        // A zombie only waits for its last pages: only destroy and getdomaininfo see it.
        _ if cmd != XEN_DOMCTL_DESTROYDOMAIN && target(c, domain).dead => {
            Reply::Done(Err(Errno::EINVAL), false)
        }
        XEN_DOMCTL_DESTROYDOMAIN => destroy(c, domain),
        XEN_DOMCTL_PAUSEDOMAIN => Reply::Done(pause(c, domain), false),
        XEN_DOMCTL_UNPAUSEDOMAIN => Reply::Done(unpause(c, domain), false),
        XEN_DOMCTL_MAX_MEM => {
            let pages = op.get::<MaxMem>().max_memkb >> 2;
            target(c, domain).max_pages = pages.min(u64::from(u32::MAX));
            Reply::Done(Ok(0), false)
        }
        XEN_DOMCTL_MAX_VCPUS => Reply::Done(max_vcpus(c, domain, op.get::<MaxVcpus>().max), false),
        XEN_DOMCTL_SETVCPUCONTEXT => Reply::Done(setvcpucontext(c, &op, domain), false),
        XEN_DOMCTL_GETVCPUCONTEXT => getvcpucontext(c, &op, domain),
        XEN_DOMCTL_GETVCPUINFO => getvcpuinfo(c, &mut op, domain),
        XEN_DOMCTL_SCHEDULER_OP => scheduler_op(&mut op, domain),
        XEN_DOMCTL_SETVCPUAFFINITY | XEN_DOMCTL_GETVCPUAFFINITY => {
            Reply::Done(vcpu_affinity(c, &op, domain), false)
        }
        _ => Reply::Done(Err(Errno::ENOSYS), false),
    };
    match reply {
        Reply::Continue => Outcome::Continue,
        Reply::Done(r, copyback) => {
            if copyback && r.is_ok() {
                if let Err(e) = c.mem().write_obj(a[0], &op) {
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
fn create(c: &mut Ctx<'_>, op: &mut Domctl) -> Reply {
    let r = (|| {
        let mut cfg: CreateDomain = op.get();
        let flags = cfg.flags;
        let grant_version = cfg.grant_opts & XEN_DOMCTL_GRANT_VERSION_MASK;
        let invalid = flags & !XEN_DOMCTL_CDF_ALL != 0
            || cfg.grant_opts & !XEN_DOMCTL_GRANT_VERSION_MASK != 0
            // Grant table version 1 or 2 (Xen's grant_table_init).
            || !(1..=2).contains(&grant_version)
            || cfg.max_vcpus < 1
            || (flags & XEN_DOMCTL_CDF_HAP != 0 && flags & XEN_DOMCTL_CDF_HVM == 0)
            || flags & XEN_DOMCTL_CDF_IOMMU != 0
            || cfg.iommu_opts != 0
            || cfg.vmtrace_size != 0
            || flags & XEN_DOMCTL_CDF_VPMU != 0
            || cfg.arch.misc_flags & !XEN_X86_MSR_RELAXED != 0
            || cfg.max_vcpus > MAX_DOMAIN_VCPUS;
        if invalid {
            return Err(Errno::EINVAL);
        }
        if flags & XEN_DOMCTL_CDF_HVM != 0 {
            crate::info!("createdomain: HVM and PVH domains are not supported yet");
            return Err(Errno::EOPNOTSUPP);
        }
        if cfg.arch.emulation_flags != 0 {
            // Xen: no emulated devices for a PV domU.
            return Err(Errno::EOPNOTSUPP);
        }
        if cfg.cpupool_id != 0 {
            return Err(Errno::ENOENT);
        }
        let id = pick_domid(c, op.domain)?;
        let max_vcpus = cfg.max_vcpus;
        let mut dom = new_domain(id, max_vcpus, cfg.max_evtchn_port, cfg.handle)?;
        crate::sched::add_domain(&mut dom);
        crate::info!("d{id}: created (up to {max_vcpus} vCPUs), paused");
        c.doms.insert(Box::new(dom));
        op.domain = id;
        cfg.flags |= XEN_DOMCTL_CDF_OOS_OFF;
        op.set(&cfg);
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
        // Upcalls start unmasked, as on Xen: masking them is the builder's business.
        if let Ok(si) = xen_abi::shared_info::SharedInfo::mut_from_bytes(page) {
            crate::time::update_wallclock(si);
            for vi in si.vcpu_info.iter_mut().take(nr_vcpus as usize) {
                crate::time::update_vcpu_time(vi);
            }
        }
    }
    Ok(Domain {
        shared_info_mfn: si_mfn,
        paused: 1,
        handle,
        ..Domain::new(id, false, nr_vcpus, max_port)
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
        if let Some(mut d) = c.doms.take(id) {
            // Channels to other domains first: their ends become unbound.
            let (tab, mut mem) = crate::events::parts(&mut d);
            let ends = tab.destroy(&mut mem);
            crate::events::close_remote_ends(c.doms, Some(&mut *c.dom), id, ends);
            teardown(&mut d, c.doms);
            d.dead = true;
            c.doms.put(d);
        }
        crate::info!("d{id}: destroyed");
        // dom0 hears of it, as on Xen, and again when the domain is finally gone.
        crate::vcpu::DOM_EXC.store(true, Ordering::Release);
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
            crate::vcpu::DOM_EXC.store(true, Ordering::Release);
        }
    }
}

/// Drops every reference a domain that no vCPU runs holds: LDT, GDT, roots and vcpu_info of
/// each vCPU, the FIFO event frames, its pins, its RAM and its shared_info page.
fn teardown(d: &mut Domain, others: &mut crate::domain::Domains) {
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
    crate::mm::reap_freed(d, others);
    for v in d.vcpus.iter_mut() {
        v.up = false;
    }
}

/// XEN_DOMCTL_getdomaininfo: the state of the first domain whose id is at least the one
/// asked for (as Xen walks its domain list), echoed in the header's `domain`.
fn getdomaininfo(c: &mut Ctx<'_>, op: &mut Domctl, asked: u16) -> Reply {
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
            flags |= XEN_DOMINF_BLOCKED;
        }
        if online.iter().any(|v| v.cpu.is_some()) {
            flags |= XEN_DOMINF_RUNNING;
        }
    }
    let code = match d.shutdown {
        Some(crate::domain::Shutdown::Requested(r)) => r,
        Some(crate::domain::Shutdown::Crashed) => xen_abi::sched::SHUTDOWN_CRASH,
        None => u32::MAX,
    };
    if d.shutdown.is_some() {
        flags |= XEN_DOMINF_SHUTDOWN;
    }
    if d.dead {
        flags |= XEN_DOMINF_DYING;
    }
    if d.paused > 0 {
        flags |= XEN_DOMINF_PAUSED;
    }
    flags |= code << XEN_DOMINF_SHUTDOWNSHIFT;
    let nr_online = online.len() as u32;
    let cpu_time: u64 = d.vcpus.iter().map(|v| running_time(v, now)).sum();
    let tot_pages = if d.dead {
        frames_owned(id)
    } else {
        d.tot_pages
    };
    let info = GetDomainInfo {
        domain: id,
        flags,
        tot_pages,
        max_pages: d.max_pages,
        shared_info_frame: d.shared_info_mfn,
        cpu_time,
        nr_online_vcpus: nr_online,
        max_vcpu_id: (d.vcpus.len() as u32).wrapping_sub(1),
        handle: d.handle,
        gpaddr_bits: (xenolith_arch::instr::cpuid(0x8000_0008, 0).eax & 0xff) as u8,
        ..GetDomainInfo::default()
    };
    *op = Domctl {
        domain: id,
        u: [0; 16],
        ..*op
    };
    op.set(&info);
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
fn getvcpuinfo(c: &mut Ctx<'_>, op: &mut Domctl, id: u16) -> Reply {
    let vcpu = op.get::<GetVcpuInfo>().vcpu as usize;
    let d = target(c, id);
    if vcpu >= d.max_vcpus as usize {
        return Reply::Done(Err(Errno::EINVAL), false);
    }
    let Some(v) = d.vcpus.get(vcpu) else {
        return Reply::Done(Err(Errno::ESRCH), false);
    };
    let now = crate::time::now_ns();
    op.set(&GetVcpuInfo {
        vcpu: vcpu as u32,
        online: u8::from(v.up),
        blocked: u8::from(!matches!(v.wait, crate::domain::Wait::None)),
        running: u8::from(v.cpu.is_some()),
        cpu_time: running_time(v, now),
        cpu: v.cpu.unwrap_or(v.last_cpu) as u32,
        ..GetVcpuInfo::default()
    });
    Reply::Done(Ok(0), true)
}

/// XEN_DOMCTL_setvcpucontext: gives a vCPU of another domain its first context (see
/// `vcpu::set_context`). Setting the context of a vCPU that already has one, or resetting
/// it (a null context), is not built: -EOPNOTSUPP.
fn setvcpucontext(c: &mut Ctx<'_>, op: &Domctl, id: u16) -> Result<u64, Errno> {
    let VcpuContext { vcpu, ctxt, .. } = op.get();
    let vcpu = vcpu as usize;
    if id == c.dom.id || vcpu >= target(c, id).vcpus.len() {
        return Err(Errno::EINVAL);
    }
    if ctxt == 0 || target(c, id).vcpus[vcpu].initialised {
        return Err(Errno::EOPNOTSUPP);
    }
    let ctx = crate::vcpu::read_context(&c.mem(), ctxt)?;
    crate::vcpu::set_context(target(c, id), vcpu, &ctx).map(|()| 0)
}

/// XEN_DOMCTL_scheduler_op for the credit scheduler: getinfo reads a domain's weight and cap,
/// putinfo sets them (weight 0 and cap 0xffff leave them as they are). Another scheduler id, or
/// the per-vCPU sub-ops, get -EINVAL as from Xen's credit scheduler.
fn scheduler_op(op: &mut Domctl, id: u16) -> Reply {
    let mut s: SchedulerOp = op.get();
    if s.sched_id != XEN_SCHEDULER_CREDIT {
        return Reply::Done(Err(Errno::EINVAL), false);
    }
    let (weight, cap) = (s.weight, s.cap);
    match s.cmd {
        XEN_DOMCTL_SCHEDOP_PUTINFO => Reply::Done(
            crate::sched::set_credit(
                id,
                (weight != 0).then_some(weight),
                (cap != u16::MAX).then_some(u32::from(cap)),
            )
            .map(|()| 0),
            false,
        ),
        XEN_DOMCTL_SCHEDOP_GETINFO => match crate::sched::credit(id) {
            Ok((w, cap)) => {
                s.weight = w;
                s.cap = cap.min(0xfffe) as u16;
                op.set(&s);
                Reply::Done(Ok(0), true)
            }
            Err(e) => Reply::Done(Err(e), false),
        },
        _ => Reply::Done(Err(Errno::EINVAL), false),
    }
}

/// Bits a guest's CPU bitmap gives for the CPUs there are (bits past `nr_bits` or past the
/// online CPUs are dropped, as Xen's xenctl_bitmap_to_bitmap drops those past nr_cpu_ids).
fn read_cpumap(c: &Ctx<'_>, map: &CtlBitmap) -> Result<u64, Errno> {
    let cpus = crate::smp::online().min(64) as u32;
    let bits = map.nr_bits.min(cpus);
    let mut bytes = [0u8; 8];
    let n = bits.div_ceil(8) as usize;
    c.mem().read(map.bitmap, &mut bytes[..n])?;
    Ok(u64::from_le_bytes(bytes) & low_bits(bits))
}

/// Writes `mask` into a guest's CPU bitmap: `nr_bits` bits rounded up to bytes, zero past the
/// CPUs there are (Xen's cpumask_to_xenctl_bitmap).
fn write_cpumap(c: &Ctx<'_>, map: &CtlBitmap, mask: u64) -> Result<(), Errno> {
    let cpus = crate::smp::online().min(64) as u32;
    let bytes = (map.nr_bits.div_ceil(8) as usize).min(4096);
    let mut buf = alloc::vec![0u8; bytes];
    let m = (mask & low_bits(cpus.min(map.nr_bits))).to_le_bytes();
    let n = bytes.min(8);
    buf[..n].copy_from_slice(&m[..n]);
    c.mem().write(map.bitmap, &buf)
}

fn low_bits(n: u32) -> u64 {
    if n >= 64 {
        !0
    } else {
        (1u64 << n) - 1
    }
}

/// XEN_DOMCTL_setvcpuaffinity / getvcpuaffinity with the hard affinity: set restricts the vCPU
/// to the CPUs given and writes back the effective set (those of them that are online); get
/// writes back the mask as set (all CPUs by default). Soft affinity (a preference the credit
/// scheduler does not have here) reads as every CPU, and setting it is -EOPNOTSUPP.
fn vcpu_affinity(c: &mut Ctx<'_>, op: &Domctl, id: u16) -> Result<u64, Errno> {
    let a: VcpuAffinity = op.get();
    let v = a.vcpu as usize;
    let d = target(c, id);
    if v >= d.max_vcpus as usize {
        return Err(Errno::EINVAL);
    }
    if v >= d.vcpus.len() {
        return Err(Errno::ESRCH);
    }
    let hard = a.flags & XEN_VCPUAFFINITY_HARD != 0;
    let soft = a.flags & XEN_VCPUAFFINITY_SOFT != 0;
    if (!hard && !soft)
        || (hard && a.cpumap_hard.bitmap == 0)
        || (soft && a.cpumap_soft.bitmap == 0)
    {
        return Err(Errno::EINVAL);
    }
    let all = low_bits(crate::smp::online().min(64) as u32);
    if op.cmd == XEN_DOMCTL_GETVCPUAFFINITY {
        if hard {
            let mask = target(c, id).vcpus[v].affinity & all;
            write_cpumap(c, &a.cpumap_hard, mask)?;
        }
        if soft {
            write_cpumap(c, &a.cpumap_soft, all)?;
        }
        return Ok(0);
    }
    if soft {
        return Err(Errno::EOPNOTSUPP);
    }
    let mask = read_cpumap(c, &a.cpumap_hard)?;
    crate::sched::set_affinity(target(c, id), v, mask)?;
    write_cpumap(c, &a.cpumap_hard, mask & all)?;
    Ok(0)
}

/// XEN_DOMCTL_getvcpucontext: the context of an initialised vCPU (`vcpu::get_context`), not
/// the caller's own: -EINVAL past max_vcpus, for a vCPU not created or the caller, -ENODATA
/// before it has a context. A vCPU still on another CPU is first taken off it (the hypercall
/// continues until it is, -EAGAIN inside a multicall), as Xen pauses it.
fn getvcpucontext(c: &mut Ctx<'_>, op: &Domctl, id: u16) -> Reply {
    let VcpuContext { vcpu, ctxt, .. } = op.get();
    let v = vcpu as usize;
    let caller = (c.dom.id, c.vcpu);
    let d = target(c, id);
    if v >= d.vcpus.len() || (id, v) == caller {
        return Reply::Done(Err(Errno::EINVAL), false);
    }
    if !d.vcpus[v].initialised {
        return Reply::Done(Err(Errno::ENODATA), false);
    }
    if d.vcpus[v].cpu.is_some() {
        // Its registers are live on another CPU: have it save them, and ask again.
        crate::sched::kick_off(d, v);
        return Reply::Continue;
    }
    let ctx = crate::vcpu::get_context(d, v);
    crate::sched::release(d, v);
    let r = c.mem().write_obj(ctxt, &*ctx).map(|()| 0);
    Reply::Done(r, false)
}
