//! Direct paging hypercalls: mmu_update, mmuext_op, set_gdt, update_descriptor.
//!
//! Every change to a guest page table goes through `FrameTable::mod_entry`, every pin and root
//! through typed references, so the rules of `xenolith_core::pagetype` hold at all times.
//! Batches are preemptible with Xen's continuation encoding (count | MMU_UPDATE_PREEMPTED,
//! progress accumulated in *pdone).
use xen_abi::errno::Errno;
use xenolith_core::pagetype::PageType;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::hypercall::{Ctx, Outcome};
use crate::mm::{pte, table_of, with_frames};

/// Marks a continued batch in the count argument.
const PREEMPTED: u64 = 1 << 31;
/// Requests handled per invocation before a continuation.
const BATCH: u64 = 512;
const DOMID_SELF: u64 = xen_abi::types::DOMID_SELF as u64;

/// The L1 table that maps `va` under root `root`, if the upper levels are present.
pub fn l1_table_of(root: u64, va: u64) -> Option<u64> {
    let mut table = root;
    for level in (2..=4).rev() {
        let e = table_of(table)[((va >> (12 + 9 * (level - 1))) & 511) as usize];
        if e & pte::PRESENT == 0 || e & pte::PSE != 0 {
            return None;
        }
        table = (e & pte::ADDR_MASK) >> 12;
    }
    Some(table)
}

/// Performs the TLB flush an update_va_mapping `flags` word asks for (UVMF_*). With a vCPU
/// bitmap pointer in the upper bits (UVMF_MULTI), the bitmap must be readable.
pub fn flush_for_uvmf(c: &mut Ctx<'_>, flags: u64, va: u64) -> Result<(), Errno> {
    let ptr = flags & !7;
    if flags & 4 == 0 && ptr != 0 {
        c.mem().read_obj::<u64>(ptr)?;
    }
    // UVMF_ALL or a vCPU mask reaches other CPUs: a full flush on every CPU.
    let remote = flags & 4 != 0 || ptr != 0;
    match flags & 3 {
        1 | 2 if remote => crate::smp::flush_tlb_all(),
        1 => xenolith_arch::instr::flush_tlb_local(),
        2 => xenolith_arch::instr::invlpg(va),
        3 => return Err(Errno::EINVAL),
        _ => {}
    }
    Ok(())
}

const DOMID_IO: u64 = xen_abi::types::DOMID_IO as u64;
const DOMID_XEN: u64 = xen_abi::types::DOMID_XEN as u64;

/// Whose pages a batch may reference (mmu_update/mmuext_op `foreigndom`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum PgOwner {
    /// The caller (DOMID_SELF, or DOMID_IO for a domain with I/O rights).
    Caller,
    /// DOMID_XEN: the hypervisor's shared read-only pages (privileged callers).
    Xen,
    /// Another domain (privileged callers): its frames are mapped, or its tables pinned.
    Foreign(u16),
}

/// How a refused `foreigndom` ends the batch, as Xen's do_mmu_update / do_mmuext_op do.
#[derive(Clone, Copy)]
enum Refusal {
    /// At once, *pdone untouched.
    Now(Errno),
    /// At once, with *pdone written (Xen's `goto out`).
    Out(Errno),
    /// At the first request, *pdone written (the permission check inside Xen's loop); a batch
    /// without requests succeeds.
    AtFirst(Errno),
}

/// Decodes `foreigndom`: bits 0-15 name the owner of the pages mapped, bits 16-31 (if not 0)
/// the page-table owner plus one. Naming oneself explicitly as page owner is refused (Xen's
/// "cannot specify itself"); another domain needs privilege (XSM_TARGET). Editing another
/// domain's page tables is not built (-EOPNOTSUPP). `mmu_update` says which hypercall asks:
/// mmuext_op refuses everything at once.
fn check_foreigndom(c: &Ctx<'_>, foreigndom: u64, mmu_update: bool) -> Result<PgOwner, Refusal> {
    let me = u64::from(c.dom.id);
    let exists = |d: u64| d < DOMID_SELF && c.doms.get(d as u16).is_some_and(|x| !x.dead);
    let pt_owner = (foreigndom >> 16) & 0xffff;
    let mut deny = None;
    if pt_owner != 0 && pt_owner - 1 != me {
        if !exists(pt_owner - 1) {
            return Err(Refusal::Now(Errno::ESRCH));
        }
        deny = Some(if c.dom.privileged {
            Errno::EOPNOTSUPP
        } else {
            Errno::EPERM
        });
    }
    let pg = match foreigndom & 0xffff {
        DOMID_SELF => PgOwner::Caller,
        DOMID_IO if c.dom.privileged => PgOwner::Caller,
        DOMID_IO => return Err(Refusal::Now(Errno::ESRCH)),
        DOMID_XEN if c.dom.privileged => PgOwner::Xen,
        DOMID_XEN => {
            deny = Some(Errno::EPERM);
            PgOwner::Caller
        }
        d if d != me && exists(d) => {
            if !c.dom.privileged {
                deny = Some(Errno::EPERM);
            }
            PgOwner::Foreign(d as u16)
        }
        _ => return Err(Refusal::Out(Errno::ESRCH)),
    };
    match deny {
        None => Ok(pg),
        Some(e) if mmu_update => Err(Refusal::AtFirst(e)),
        Some(e) => Err(Refusal::Now(e)),
    }
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct MmuUpdate {
    ptr: u64,
    val: u64,
}

/// Applies one mmu_update request.
fn mmu_update_one(c: &mut Ctx<'_>, req: &MmuUpdate, pg: PgOwner) -> Result<(), Errno> {
    let ptdom = xenolith_core::pagetype::Dom {
        xen_pages: pg == PgOwner::Xen,
        foreign: match pg {
            PgOwner::Foreign(d) => Some(d),
            _ => None,
        },
        ..c.dom.ptdom()
    };
    let cmd = req.ptr & 7;
    let mfn = req.ptr >> 12;
    match cmd {
        // MMU_PT_UPDATE_NO_TRANSLATE (3) is a normal update for a PV guest (gfn == mfn).
        0 | 2 | 3 => {
            let idx = ((req.ptr & 0xfff) >> 3) as usize;
            with_frames(|ft, mem| {
                if !ft.owned_by(mfn, ptdom.id) {
                    return Err(Errno::EINVAL);
                }
                let p = *ft.get(mfn).ok_or(Errno::EINVAL)?;
                if p.ty.level().is_some() && p.type_count > 0 {
                    ft.mod_entry(mem, mfn, idx, req.val, ptdom, cmd == 2)
                } else {
                    // Not a page table: an ordinary write to a page the guest may write.
                    ft.get_page_type(mem, mfn, PageType::Writable, ptdom)?;
                    table_of(mfn)[idx] = req.val;
                    ft.put_page_type(mem, mfn);
                    Ok(())
                }
            })
        }
        1 => {
            if !with_frames(|ft, _| ft.owned_by(mfn, ptdom.pg_owner())) {
                return Err(Errno::EINVAL);
            }
            crate::mm::set_m2p(mfn, req.val);
            Ok(())
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// The page of an `mmu_update` list being read, translated once for all the requests on it.
///
/// The translation stays right as long as no request rewrites one of the four entries its walk
/// went through (see `GuestMem::translate_path`); `changed` hears of every entry a request
/// rewrites, before it is applied. This saves a walk per request, which is most of what reading
/// a request costs.
#[derive(Default)]
struct ListPage {
    /// Page-aligned guest address, frame, and the walk's entries.
    cached: Option<(u64, u64, [u64; 4])>,
}

impl ListPage {
    /// Reads a plain-data request at `va`.
    fn read<T: FromBytes + IntoBytes>(&mut self, c: &Ctx<'_>, va: u64) -> Result<T, Errno> {
        let size = core::mem::size_of::<T>() as u64;
        let off = va & 0xfff;
        if off + size > 4096 {
            // Across a page boundary: the ordinary checked read.
            return c.mem().read_obj(va);
        }
        let page = va & !0xfff;
        let mfn = match self.cached {
            Some((p, mfn, _)) if p == page => mfn,
            _ => {
                let (mfn, path) = c.mem().translate_path(va)?;
                self.cached = Some((page, mfn, path));
                mfn
            }
        };
        let bytes = &crate::mm::frame_bytes(mfn)[off as usize..(off + size) as usize];
        T::read_from_bytes(bytes).map_err(|_| Errno::EFAULT)
    }

    /// A request is about to rewrite the entry at machine address `maddr`.
    fn changed(&mut self, maddr: u64) {
        if self
            .cached
            .is_some_and(|(_, _, path)| path.contains(&maddr))
        {
            self.cached = None;
        }
    }
}

/// Runs a batch of `count` fixed-size requests at `list`, with continuation and *pdone
/// bookkeeping shared by mmu_update (`mmu_update`) and mmuext_op.
fn batch<T: FromBytes + IntoBytes + Immutable>(
    c: &mut Ctx<'_>,
    a: [u64; 5],
    one: fn(&mut Ctx<'_>, &T, PgOwner) -> Result<(), Errno>,
    mmu_update: bool,
) -> Outcome {
    let (list, count_arg, pdone, foreigndom) = (a[0], a[1], a[2], a[3]);
    let size = core::mem::size_of::<T>() as u64;
    let mut done_before = 0u64;
    let count = if count_arg & PREEMPTED != 0 {
        if pdone != 0 {
            done_before = u64::from(c.mem().read_obj::<u32>(pdone).unwrap_or(0));
        }
        count_arg & !PREEMPTED & 0xffff_ffff
    } else {
        count_arg & 0xffff_ffff
    };
    let (pg, deny) = match check_foreigndom(c, foreigndom, mmu_update) {
        Ok(p) => (p, None),
        Err(Refusal::Now(e)) => return Err(e).into(),
        Err(Refusal::Out(e)) => {
            if pdone != 0 {
                let _ = c.mem().write_obj(pdone, &(done_before as u32));
            }
            return Err(e).into();
        }
        Err(Refusal::AtFirst(e)) => (PgOwner::Caller, Some(e)),
    };
    let mut list_page = ListPage::default();
    let mut i = 0u64;
    let mut rc = Ok(0);
    while i < count {
        if i == BATCH {
            if pdone != 0 {
                let _ = c.mem().write_obj(pdone, &((done_before + i) as u32));
            }
            c.regs.rdi = list + i * size;
            c.regs.rsi = (count - i) | PREEMPTED;
            crate::mm::flush_if_needed();
            return Outcome::Continue;
        }
        let at = list.wrapping_add(i * size);
        let read = if mmu_update {
            list_page.read(c, at)
        } else {
            c.mem().read_obj(at)
        };
        let req: T = match read {
            Ok(r) => r,
            Err(e) => {
                rc = Err(e);
                break;
            }
        };
        if let Some(e) = deny {
            rc = Err(e);
            break;
        }
        if mmu_update {
            // A request that rewrites an entry on the list page's walk ends the shortcut.
            let ptr = u64::from_le_bytes(req.as_bytes()[..8].try_into().unwrap_or([0; 8]));
            if ptr & 7 != 1 {
                list_page.changed(ptr & !7);
            }
        }
        if let Err(e) = one(c, &req, pg) {
            if crate::hypercall::TRACE.load(core::sync::atomic::Ordering::Relaxed) {
                let w: &[u8] = req.as_bytes();
                let (a, b) = (
                    u64::from_le_bytes(w[0..8].try_into().unwrap_or([0; 8])),
                    u64::from_le_bytes(w[8..16].try_into().unwrap_or([0; 8])),
                );
                crate::info!(
                    "d{}: request {i} ({a:#x}, {b:#x}) refused: {}",
                    c.dom.id,
                    e.name()
                );
            }
            rc = Err(e);
            break;
        }
        i += 1;
    }
    if pdone != 0 {
        let _ = c.mem().write_obj(pdone, &((done_before + i) as u32));
    }
    crate::mm::flush_if_needed();
    rc.into()
}

/// mmu_update(reqs, count, pdone, foreigndom).
pub fn mmu_update(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    batch::<MmuUpdate>(c, a, mmu_update_one, true)
}

#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
struct MmuextOp {
    cmd: u32,
    pad: u32,
    arg1: u64,
    arg2: u64,
}

/// MMUEXT_NEW_BASEPTR (and MOV to CR3): installs a new kernel root for vCPU `v`.
pub fn new_baseptr(dom: &mut crate::domain::Domain, v: usize, mfn: u64) -> Result<(), Errno> {
    let old = dom.vcpus[v].guest_table;
    if mfn == old {
        xenolith_arch::instr::flush_tlb_local();
        return Ok(());
    }
    replace_root_of(dom, old, mfn)?;
    crate::mm::fill_ro_mpt(mfn);
    dom.vcpus[v].guest_table = mfn;
    if dom.vcpus[v].kernel_mode && dom.vcpus[v].cpu == Some(crate::percpu::cpu_id()) {
        crate::sched::load_cr3(&dom.vcpus[v]);
    }
    Ok(())
}

/// Replaces a root reference: takes an L4 type reference on `new` (0 = none), drops `old`.
fn replace_root(c: &Ctx<'_>, old: u64, new: u64) -> Result<(), Errno> {
    replace_root_of(c.dom, old, new)
}

pub fn replace_root_of(dom: &crate::domain::Domain, old: u64, new: u64) -> Result<(), Errno> {
    let ptdom = dom.ptdom();
    with_frames(|ft, mem| {
        if new != 0 {
            ft.get_page_and_type(mem, new, PageType::L4, ptdom)?;
        }
        if old != 0 {
            ft.put_page_and_type(mem, old);
        }
        Ok(())
    })
}

fn mmuext_one(c: &mut Ctx<'_>, op: &MmuextOp, pg: PgOwner) -> Result<(), Errno> {
    let ptdom = match pg {
        // Another domain's tables are pinned and validated as that domain's.
        PgOwner::Foreign(id) => xenolith_core::pagetype::Dom {
            id,
            io: false,
            xen_pages: false,
            foreign: None,
        },
        _ => c.dom.ptdom(),
    };
    let v = c.vcpu;
    // Operations on the caller's own state need the caller as page owner.
    if pg != PgOwner::Caller && !matches!(op.cmd, 0..=4) {
        return Err(Errno::EPERM);
    }
    match op.cmd {
        0..=3 => with_frames(|ft, mem| ft.pin(mem, op.arg1, op.cmd as u8 + 1, ptdom)),
        4 => with_frames(|ft, mem| ft.unpin(mem, op.arg1, ptdom)),
        5 => new_baseptr(c.dom, v, op.arg1),
        15 => {
            let old = c.dom.vcpus[v].guest_table_user;
            if op.arg1 == old {
                return Ok(());
            }
            replace_root(c, old, op.arg1)?;
            c.dom.vcpus[v].guest_table_user = op.arg1;
            if !c.dom.vcpus[v].kernel_mode && c.dom.vcpus[v].cpu == Some(crate::percpu::cpu_id()) {
                crate::sched::load_cr3(&c.dom.vcpus[v]);
            }
            Ok(())
        }
        6 => {
            xenolith_arch::instr::flush_tlb_local();
            Ok(())
        }
        7 => {
            invlpg_guest(op.arg1);
            Ok(())
        }
        // The MULTI and ALL forms reach the other CPUs: a full flush on every CPU.
        8 | 9 => {
            c.mem()
                .read_obj::<u64>(op.arg2)
                .map_err(|_| Errno::EINVAL)?;
            crate::smp::flush_tlb_all();
            Ok(())
        }
        10 | 11 => {
            crate::smp::flush_tlb_all();
            Ok(())
        }
        12 | 18 => {
            if !c.dom.privileged {
                return Err(Errno::EACCES);
            }
            xenolith_arch::instr::wbinvd();
            Ok(())
        }
        13 => crate::desc::set_ldt(c, op.arg1, op.arg2),
        16 => with_frames(|ft, mem| {
            ft.get_page_and_type(mem, op.arg1, PageType::Writable, ptdom)
                .map_err(|_| Errno::EINVAL)?;
            crate::mm::frame_bytes(op.arg1).fill(0);
            ft.put_page_and_type(mem, op.arg1);
            Ok(())
        }),
        17 => with_frames(|ft, mem| {
            ft.get_page(op.arg2, ptdom.id).map_err(|_| Errno::EINVAL)?;
            if ft
                .get_page_and_type(mem, op.arg1, PageType::Writable, ptdom)
                .is_err()
            {
                ft.put_page(op.arg2);
                return Err(Errno::EINVAL);
            }
            let src = *crate::mm::frame_bytes(op.arg2);
            crate::mm::frame_bytes(op.arg1).copy_from_slice(&src);
            ft.put_page_and_type(mem, op.arg1);
            ft.put_page(op.arg2);
            Ok(())
        }),
        // MARK_SUPER / UNMARK_SUPER: superpage tracking is not offered (nor by Xen 4.17).
        19 | 20 => Err(Errno::EOPNOTSUPP),
        _ => Err(Errno::ENOSYS),
    }
}

/// INVLPG of a guest address; a non-canonical one is ignored (as on Xen), since the
/// instruction would fault in the hypervisor.
fn invlpg_guest(va: u64) {
    let top = va >> 47;
    if top == 0 || top == 0x1ffff {
        xenolith_arch::instr::invlpg(va);
    }
}

/// mmuext_op(ops, count, pdone, foreigndom).
pub fn mmuext_op(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    batch::<MmuextOp>(c, a, mmuext_one, false)
}
