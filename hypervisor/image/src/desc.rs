//! Guest descriptor tables: the GDT window, set_gdt, update_descriptor and MMUEXT_SET_LDT.
//!
//! The hardware GDT of each CPU is a 15-page window of its own in the hypervisor's slot 260:
//! pages 0-13 show the running vCPU's GDT frames (or a zero page), page 14 that CPU's own
//! hypervisor entries at byte 0xE000 as Xen lays them out (its TSS, its LDT descriptor). The
//! LDT is a 16-page window after it, described by the LDT selector 0xe050. Guest descriptor frames are typed `SegDesc` while
//! installed, so the guest can never map them writable; the window maps them writable for the
//! hypervisor only, because the CPU sets accessed bits in descriptors it loads.
use xen_abi::errno::Errno;
use xenolith_core::pagetype::PageType;

use crate::guestmem::addr_ok;
use crate::hypercall::{Ctx, Outcome};
use crate::mm::{pte, with_frames};

/// Virtual base of the boot CPU's GDT window; each CPU has its own windows, 32 pages apart.
const GDT_VIRT: u64 = 0xffff_8200_0000_0000;
const CPU_WINDOW_STRIDE: u64 = 32 * 4096;

/// Virtual base of `cpu`'s GDT window.
pub fn gdt_virt(cpu: usize) -> u64 {
    GDT_VIRT + cpu as u64 * CPU_WINDOW_STRIDE
}

/// Virtual base of `cpu`'s LDT window.
pub fn ldt_virt(cpu: usize) -> u64 {
    gdt_virt(cpu) + 16 * 4096
}
/// Guest-owned GDT pages (entries below byte 0xE000).
pub const GUEST_GDT_PAGES: usize = 14;
/// Most guest GDT entries.
pub const MAX_GDT_ENTRIES: u64 = (GUEST_GDT_PAGES * 512) as u64;
/// Most LDT entries.
pub const MAX_LDT_ENTRIES: u64 = 8192;
/// LDT selector in the hypervisor's GDT page.
pub const LDT_SELECTOR: u16 = 0xe050;

const WINDOW_FLAGS: u64 = pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY | pte::NX;
const TABLE_FLAGS: u64 = pte::PRESENT | pte::RW | pte::ACCESSED;

static ZERO_PAGE: spin::Once<u64> = spin::Once::new();
/// Each CPU's page of hypervisor GDT entries (0: not set up).
static HYP_GDT_PAGE: [core::sync::atomic::AtomicU64; crate::percpu::MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; crate::percpu::MAX_CPUS];

fn hyp_gdt_page(cpu: usize) -> Option<u64> {
    match HYP_GDT_PAGE[cpu].load(core::sync::atomic::Ordering::Relaxed) {
        0 => None,
        p => Some(p),
    }
}

fn zero_page() -> u64 {
    *ZERO_PAGE.call_once(|| {
        crate::mm::alloc_frame().unwrap_or_else(|| crate::fatal("out of memory for the GDT"))
    })
}

fn unmap_window_page(va: u64) {
    if crate::mm::unmap_hypervisor_page(va).is_none() {
        crate::fatal("descriptor-table window not set up");
    }
    xenolith_arch::instr::invlpg(va);
}

fn map_window_page(va: u64, mfn: u64, writable: bool) {
    let flags = if writable {
        WINDOW_FLAGS
    } else {
        WINDOW_FLAGS & !pte::RW
    };
    if crate::mm::map_hypervisor_page(va, mfn, flags, TABLE_FLAGS).is_none() {
        crate::fatal("out of memory for the descriptor-table window");
    }
    xenolith_arch::instr::invlpg(va);
}

/// Builds `cpu`'s windows with a fresh page of hypervisor GDT entries and returns its frame.
pub fn init_window(cpu: usize) -> u64 {
    let hyp = crate::mm::alloc_frame().unwrap_or_else(|| crate::fatal("out of memory for the GDT"));
    crate::mm::frame_bytes(hyp).fill(0);
    HYP_GDT_PAGE[cpu].store(hyp, core::sync::atomic::Ordering::Relaxed);
    for i in 0..GUEST_GDT_PAGES {
        map_window_page(gdt_virt(cpu) + i as u64 * 4096, zero_page(), false);
    }
    map_window_page(gdt_virt(cpu) + GUEST_GDT_PAGES as u64 * 4096, hyp, true);
    for i in 0..16 {
        // Mapped on demand: a fault here is an LDT access (see `ldt_fault`).
        map_window_page(ldt_virt(cpu) + i * 4096, zero_page(), false);
        unmap_window_page(ldt_virt(cpu) + i * 4096);
    }
    hyp
}

/// set_gdt(frame_list, entries).
pub fn set_gdt(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (list, entries) = (a[0], a[1]);
    if entries > MAX_GDT_ENTRIES {
        return Err(Errno::EINVAL).into();
    }
    let nr = entries.div_ceil(512) as usize;
    let mut frames = [0u64; GUEST_GDT_PAGES];
    for (i, f) in frames.iter_mut().enumerate().take(nr) {
        match c.mem().read_obj::<u64>(list + i as u64 * 8) {
            Ok(m) => *f = m,
            Err(e) => return Err(e).into(),
        }
    }
    replace_gdt(c.dom, c.vcpu, frames, entries)
        .map(|()| 0)
        .into()
}

/// Gives vCPU `vi` the GDT in `frames` with `entries` entries (at most `MAX_GDT_ENTRIES`):
/// takes a descriptor-page type reference on each new frame (all or nothing, -EINVAL if one
/// cannot be), drops those of the old GDT, and maps it if the vCPU is running.
pub fn replace_gdt(
    dom: &mut crate::domain::Domain,
    vi: usize,
    frames: [u64; GUEST_GDT_PAGES],
    entries: u64,
) -> Result<(), Errno> {
    let nr = entries.div_ceil(512) as usize;
    let ptdom = dom.ptdom();
    // Take the new frames first: all or nothing.
    with_frames(|ft, mem| {
        for (i, &m) in frames.iter().enumerate().take(nr) {
            if let Err(e) = ft.get_page_and_type(mem, m, PageType::SegDesc, ptdom) {
                for &t in &frames[..i] {
                    ft.put_page_and_type(mem, t);
                }
                return Err(e);
            }
        }
        Ok(())
    })?;
    let v = &mut dom.vcpus[vi];
    let old = v.gdt_frames;
    let old_nr = v.gdt_nr;
    v.gdt_frames[..GUEST_GDT_PAGES].copy_from_slice(&frames);
    v.gdt_nr = nr;
    v.gdt_ents = entries;
    with_frames(|ft, mem| {
        for &m in &old[..old_nr] {
            ft.put_page_and_type(mem, m);
        }
    });
    if v.cpu == Some(crate::percpu::cpu_id()) {
        install_gdt(v);
    }
    Ok(())
}

/// Maps a vCPU's GDT frames into the window.
pub fn install_gdt(v: &crate::domain::Vcpu) {
    for i in 0..GUEST_GDT_PAGES {
        let va = gdt_virt(crate::percpu::cpu_id()) + i as u64 * 4096;
        if i < v.gdt_nr {
            map_window_page(va, v.gdt_frames[i], true);
        } else {
            map_window_page(va, zero_page(), false);
        }
    }
}

/// update_descriptor(machine address, descriptor).
pub fn update_descriptor(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (pa, desc) = (a[0], a[1]);
    if pa & 7 != 0 {
        return Err(Errno::EINVAL).into();
    }
    let Some(fixed) = xenolith_core::descriptor::fixup(desc) else {
        return Err(Errno::EINVAL).into();
    };
    let mfn = pa >> 12;
    let idx = ((pa & 0xfff) >> 3) as usize;
    let ptdom = c.dom.ptdom();
    let r = with_frames(|ft, mem| {
        if !ft.owned_by(mfn, ptdom.id) {
            return Err(Errno::EINVAL);
        }
        let ty = ft.get(mfn).map(|p| (p.ty, p.type_count));
        let as_type = match ty {
            Some((PageType::SegDesc, n)) if n > 0 => PageType::SegDesc,
            _ => PageType::Writable,
        };
        ft.get_page_and_type(mem, mfn, as_type, ptdom)
            .map_err(|_| Errno::EINVAL)?;
        crate::mm::table_of(mfn)[idx] = fixed;
        ft.put_page_and_type(mem, mfn);
        Ok(())
    });
    r.map(|()| 0).into()
}

/// MMUEXT_SET_LDT(linear address, entries). Like Xen, the LDT's pages are not looked at
/// here: each is mapped on the first fault the CPU takes on it (`ldt_fault`).
pub fn set_ldt(c: &mut Ctx<'_>, base: u64, ents: u64) -> Result<(), Errno> {
    if base & 0xfff != 0 || !addr_ok(base) || ents > MAX_LDT_ENTRIES {
        return Err(Errno::EINVAL);
    }
    let v = &mut c.dom.vcpus[c.vcpu];
    release_ldt(v);
    v.ldt_base = base;
    v.ldt_ents = ents;
    install_ldt(v);
    Ok(())
}

/// Drops the references of the LDT pages mapped so far.
pub fn release_ldt(v: &mut crate::domain::Vcpu) {
    let old = core::mem::take(&mut v.ldt_frames);
    with_frames(|ft, mem| {
        for m in old.into_iter().filter(|&m| m != 0) {
            ft.put_page_and_type(mem, m);
        }
    });
}

/// Handles a fault on the LDT window: maps the guest's LDT page behind it (typed as a
/// descriptor page). On failure returns the guest linear address the CPU was reading, so
/// the fault can be reflected to the guest as Xen does.
pub fn ldt_fault(dom: &mut crate::domain::Domain, cr2: u64) -> Result<(), u64> {
    let v = &dom.vcpus[crate::percpu::vcpu()];
    let off = cr2 - ldt_virt(crate::percpu::cpu_id());
    let linear = v.ldt_base.wrapping_add(off);
    if off >= v.ldt_ents * 8 {
        return Err(linear);
    }
    let page = (off / 4096) as usize;
    let mem = crate::guestmem::GuestMem::current(dom, v.current_root());
    let mfn = mem
        .translate(v.ldt_base + page as u64 * 4096, false)
        .map_err(|_| linear)?;
    let ptdom = dom.ptdom();
    with_frames(|ft, fm| ft.get_page_and_type(fm, mfn, PageType::SegDesc, ptdom))
        .map_err(|_| linear)?;
    let v = &mut dom.vcpus[crate::percpu::vcpu()];
    if v.ldt_frames[page] != 0 {
        let old = v.ldt_frames[page];
        with_frames(|ft, fm| ft.put_page_and_type(fm, old));
    }
    v.ldt_frames[page] = mfn;
    map_window_page(
        ldt_virt(crate::percpu::cpu_id()) + page as u64 * 4096,
        mfn,
        true,
    );
    Ok(())
}

/// Whether a fault address lies in the LDT window.
pub fn in_ldt_window(va: u64) -> bool {
    let base = ldt_virt(crate::percpu::cpu_id());
    (base..base + 16 * 4096).contains(&va)
}

/// Maps a vCPU's LDT and loads the LDT register (or disables the LDT).
pub fn install_ldt(v: &crate::domain::Vcpu) {
    let cpu = crate::percpu::cpu_id();
    let ldt = ldt_virt(cpu);
    for i in 0..16 {
        let va = ldt_virt(cpu) + i as u64 * 4096;
        match v.ldt_frames[i] {
            0 => unmap_window_page(va),
            m => map_window_page(va, m, true),
        }
    }
    let Some(hyp) = hyp_gdt_page(cpu) else {
        return;
    };
    let gdt = crate::mm::table_of(hyp);
    if v.ldt_ents == 0 {
        gdt[(LDT_SELECTOR as usize & 0xfff) / 8] = 0;
        gdt[(LDT_SELECTOR as usize & 0xfff) / 8 + 1] = 0;
        // SAFETY: a null selector disables the LDT.
        unsafe { xenolith_arch::instr::lldt(0) };
        return;
    }
    let limit = v.ldt_ents * 8 - 1;
    let lo = (limit & 0xffff)
        | ((ldt & 0xff_ffff) << 16)
        | (0x82 << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((ldt >> 24) & 0xff) << 56);
    gdt[(LDT_SELECTOR as usize & 0xfff) / 8] = lo;
    gdt[(LDT_SELECTOR as usize & 0xfff) / 8 + 1] = ldt >> 32;
    // SAFETY: the selector names the LDT descriptor just written, describing the LDT window
    // whose pages are mapped above.
    unsafe { xenolith_arch::instr::lldt(LDT_SELECTOR) };
}

/// Whether `sel` may be loaded into a data segment register without faulting: null, or a
/// present data (or readable code) descriptor in the guest's GDT, LDT (pages already mapped)
/// or the hypervisor's flat ring-3 entries.
pub fn loadable_data_selector(v: &crate::domain::Vcpu, sel: u16) -> bool {
    if sel & !3 == 0 {
        return true;
    }
    let index = usize::from(sel >> 3);
    let desc = if sel & 4 != 0 {
        if index as u64 >= v.ldt_ents {
            return false;
        }
        match v.ldt_frames[index / 512] {
            0 => return false,
            m => crate::mm::table_of(m)[index % 512],
        }
    } else if index < GUEST_GDT_PAGES * 512 {
        match v
            .gdt_frames
            .get(index / 512)
            .copied()
            .filter(|_| index / 512 < v.gdt_nr)
        {
            Some(m) => crate::mm::table_of(m)[index % 512],
            None => return false,
        }
    } else {
        // The hypervisor's page: only the flat ring-3 data and code selectors.
        return matches!(sel & !3, 0xe028 | 0xe020 | 0xe030);
    };
    let present = desc & (1 << 47) != 0;
    let user = desc & (1 << 44) != 0;
    let code = desc & (1 << 43) != 0;
    let readable = desc & (1 << 41) != 0;
    let dpl = (desc >> 45) & 3;
    present && user && (!code || readable) && dpl >= u64::from(sel & 3)
}
