//! The dom0 builder: lays out the initial PV address space exactly as pv-guest-abi.md §1 says
//! and prepares vCPU 0 to enter the kernel.
//!
//! The kernel module is untrusted input. Every problem with it is a `BuildError` carrying a
//! message for the console, never a panic.
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use xen_abi::start_info::StartInfo;
use xenolith_core::bootinfo::{BootInfo, BootModule};
use xenolith_core::cmdline::{strip_image_name, CmdLine};
use xenolith_core::layout::{self, LayoutRequest};
use xenolith_core::loader::{self, Limits};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::domain::{Domain, Vcpu};
use crate::mm::{alloc_frame, frame_bytes, pte, set_m2p, table_of};
use crate::percpu::GuestRegs;

/// Why dom0 could not be built.
#[derive(Debug)]
pub struct BuildError(pub String);

macro_rules! fail {
    ($($t:tt)*) => { return Err(BuildError(format!($($t)*))) };
}

const SIF_PRIVILEGED: u32 = 1;
const SIF_INITDOMAIN: u32 = 2;
const SIF_MOD_START_PFN: u32 = 8;
const DOMID_DOM0: u16 = 0;

/// Views a boot module's bytes in the direct map.
fn module_bytes(m: &BootModule) -> Result<&'static [u8], BuildError> {
    let len = m.end.saturating_sub(m.start);
    if m.end > crate::mm::BOOT_DIRECTMAP_LIMIT {
        fail!("module at {:#x}-{:#x} lies above 4 GiB", m.start, m.end);
    }
    // SAFETY: the module's range was reserved from the frame allocator at boot, is mapped in
    // the direct map (checked above) and is never written while dom0 is built.
    Ok(unsafe {
        core::slice::from_raw_parts(crate::mm::phys_to_virt(m.start) as *const u8, len as usize)
    })
}

/// Builds dom0 from the first boot module (kernel) and the optional second (initrd).
/// Xen's legacy vcpu_info slots in shared_info; more vCPUs would need register_vcpu_info
/// before they can be initialised, which is not offered yet.
const LEGACY_MAX_VCPUS: u32 = 32;

/// dom0's vCPU count: one per CPU, within `dom0_max_vcpus`'s `<min>-<max>` as Xen reads it,
/// and at most the legacy shared_info slots.
fn dom0_vcpus(cmd: &CmdLine) -> u32 {
    let cpus = crate::smp::online() as u32;
    let n = match cmd.dom0_max_vcpus {
        Some((lo, hi)) => cpus.clamp(lo, hi),
        None => cpus,
    };
    if n > LEGACY_MAX_VCPUS {
        crate::warn!("dom0_max_vcpus: {n} vCPUs asked for, {LEGACY_MAX_VCPUS} given");
    }
    n.min(LEGACY_MAX_VCPUS)
}

pub fn build(cmd: &CmdLine, bi: &BootInfo) -> Result<Box<Domain>, BuildError> {
    let Some(kmod) = bi.modules.first() else {
        fail!("no dom0 kernel given: pass it as the first boot module");
    };
    let kbytes = module_bytes(kmod)?;
    let initrd = match bi.modules.get(1) {
        Some(m) => Some(module_bytes(m)?),
        None => None,
    };
    let (_, heap_free) = crate::heap::stats();
    let limits = Limits {
        max_image_bytes: (heap_free / 2).min(Limits::DEFAULT_MAX_IMAGE_BYTES),
    };
    let image = match loader::parse(kbytes, &limits) {
        Ok(i) => i,
        Err(e) => fail!("dom0 kernel ({} bytes): {e}", kbytes.len()),
    };
    let info = image.info().clone();
    crate::info!(
        "dom0 kernel: {:?}, entry {:#x}, virtual {:#x}-{:#x}, guest os {:?}, loader {:?}",
        image.format(),
        info.entry,
        info.virt_kstart,
        info.virt_kend,
        info.guest_os,
        info.loader
    );
    if !info.dom0_capable() {
        fail!("dom0 kernel does not declare dom0 support (XENFEAT_dom0 missing from its supported features)");
    }
    let nr_vcpus = dom0_vcpus(cmd);
    let dom_template = Domain::new(DOMID_DOM0, true, nr_vcpus, 1 << 17);
    let supported = crate::pv::builder_features(&dom_template);
    if let Some(f) = image.unsupported_required(supported) {
        fail!(
            "dom0 kernel requires feature {} ({}), which this hypervisor does not provide yet",
            f.name().unwrap_or("unknown"),
            f.0
        );
    }

    // Memory.
    let free_bytes = crate::mm::free_frames() * 4096;
    let want = cmd
        .dom0_mem
        .resolve(bi.ram_bytes(), free_bytes.saturating_sub(16 << 20));
    let nr_pages = want / 4096;
    let initrd_len = initrd.map_or(0, |b| b.len() as u64);
    let req = LayoutRequest {
        virt_base: info.virt_base,
        kern_start: info.virt_kstart,
        kern_end: info.virt_kend,
        initrd_len,
        initrd_mapped: !info.mod_start_pfn,
        nr_pages,
        domu_rings: false,
        p2m_external: None,
    };
    let lay = match layout::compute(&req) {
        Ok(l) => l,
        Err(e) => fail!("dom0 address space: {e}"),
    };
    let initrd_pages = initrd_len.div_ceil(4096);
    // Xen allocates the initial mapping as one power-of-two chunk first.
    let first_alloc = lay.initial_pages().next_power_of_two();
    if !info.mod_start_pfn && lay.initial_pages() > nr_pages
        || info.mod_start_pfn && first_alloc + initrd_pages > nr_pages
    {
        fail!(
            "dom0_mem too small: the initial mapping needs {} pages (+{} for the initrd) but dom0 has {}",
            lay.initial_pages(),
            initrd_pages,
            nr_pages
        );
    }
    crate::info!(
        "dom0: {} pages ({} MiB), initial mapping {:#x}-{:#x}, {} page-table frames",
        nr_pages,
        nr_pages >> 8,
        lay.v_start,
        lay.v_end,
        lay.nr_pt_frames
    );

    let mut dom = Box::new(dom_template);
    // dom0 handles the global VIRQs (console, debug...), as on Xen.
    dom.evtchn.set_global_virq_handler(true);
    // Like Xen, dom0 may grow without a limit of its own unless dom0_mem=max: says so.
    dom.max_pages = cmd
        .dom0_mem
        .max
        .map_or(u64::from(u32::MAX), |m| m.bytes(bi.ram_bytes()) / 4096);
    dom.tot_pages = nr_pages;
    dom.p2m.reserve_exact(nr_pages as usize);
    for pfn in 0..nr_pages {
        let Some(mfn) = alloc_frame() else {
            for &m in &dom.p2m {
                crate::mm::free_frame(m);
            }
            fail!("out of memory allocating dom0 page {pfn} of {nr_pages}");
        };
        set_m2p(mfn, pfn);
        if crate::mm::with_frames(|ft, _| ft.assign(mfn, DOMID_DOM0)).is_err() {
            fail!("internal: frame {mfn:#x} from the allocator is already in use");
        }
        dom.p2m.push(mfn);
    }
    let p2m = dom.p2m.clone();
    let page_of = |va: u64| -> &'static mut [u8; 4096] {
        let pfn = (va - lay.v_start) / 4096;
        frame_bytes(p2m[pfn as usize])
    };
    let write_va = |va: u64, data: &[u8]| {
        let mut done = 0usize;
        while done < data.len() {
            let a = va + done as u64;
            let off = (a & 0xfff) as usize;
            let n = (4096 - off).min(data.len() - done);
            page_of(a & !0xfff)[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    };

    // Kernel image.
    for seg in image.segments() {
        let data = image.segment_data(seg);
        write_va(seg.vaddr, data);
    }

    // Initrd: mapped after the kernel, or left unmapped at the top of dom0's memory.
    let (mod_start, mod_len, mod_flag) = match (initrd, &lay.initrd) {
        (Some(bytes), Some(r)) => {
            write_va(r.start, bytes);
            (r.start, bytes.len() as u64, 0)
        }
        (Some(bytes), None) => {
            // Like Xen: right after the power-of-two first allocation that holds the
            // initial mapping.
            let first = first_alloc;
            for (i, chunk) in bytes.chunks(4096).enumerate() {
                frame_bytes(p2m[first as usize + i])[..chunk.len()].copy_from_slice(chunk);
            }
            (first, bytes.len() as u64, SIF_MOD_START_PFN)
        }
        _ => (0, 0, 0),
    };

    // The p2m list.
    let mut p2m_bytes = Vec::with_capacity(p2m.len() * 8);
    for m in &p2m {
        p2m_bytes.extend_from_slice(&m.to_le_bytes());
    }
    write_va(lay.p2m.start, &p2m_bytes);

    // Bootstrap page tables, allocated in order from the page-table area.
    let pt_first_pfn = (lay.pt_base - lay.v_start) / 4096;
    let pt_end_pfn = pt_first_pfn + lay.nr_pt_frames;
    let mut next_pt = pt_first_pfn;
    let mut take_pt = |_dom: &mut Domain| -> Result<u64, BuildError> {
        if next_pt >= pt_end_pfn {
            fail!(
                "internal: bootstrap page tables exceed the {} reserved frames",
                lay.nr_pt_frames
            );
        }
        let mfn = p2m[next_pt as usize];
        next_pt += 1;
        table_of(mfn).fill(0);
        Ok(mfn)
    };
    let upper = pte::PRESENT | pte::RW | pte::ACCESSED | pte::DIRTY | pte::USER;
    let l4 = take_pt(&mut dom)?;
    for pfn in 0..lay.initial_pages() {
        let va = lay.v_start + pfn * 4096;
        let mut table = l4;
        for level in (2..=4).rev() {
            let idx = ((va >> (12 + 9 * (level - 1))) & 511) as usize;
            let e = table_of(table)[idx];
            table = if e & pte::PRESENT != 0 {
                (e & pte::ADDR_MASK) >> 12
            } else {
                let t = take_pt(&mut dom)?;
                table_of(table)[idx] = (t << 12) | upper;
                t
            };
        }
        let mfn = p2m[pfn as usize];
        let mut leaf =
            (mfn << 12) | pte::PRESENT | pte::ACCESSED | pte::DIRTY | pte::USER | (1 << 52);
        if !(pt_first_pfn..pt_end_pfn).contains(&pfn) {
            leaf |= pte::RW;
        }
        table_of(table)[((va >> 12) & 511) as usize] = leaf;
    }

    // shared_info.
    let Some(si_mfn) = alloc_frame() else {
        fail!("out of memory for shared_info")
    };
    dom.shared_info_mfn = si_mfn;
    if crate::mm::with_frames(|ft, _| ft.share(si_mfn, DOMID_DOM0)).is_err() {
        fail!("internal: shared_info frame {si_mfn:#x} is already in use");
    }
    {
        let si =
            xen_abi::shared_info::SharedInfo::mut_from_bytes(&mut frame_bytes(si_mfn)[..0xc40])
                .map_err(|_| BuildError("shared_info layout".into()))?;
        for vi in si.vcpu_info.iter_mut() {
            vi.evtchn_upcall_mask = 1;
        }
        crate::time::update_wallclock(si);
        crate::time::update_vcpu_time(&mut si.vcpu_info[0]);
    }

    // start_info.
    let mut si = StartInfo::new_zeroed();
    si.magic[..14].copy_from_slice(b"xen-3.0-x86_64");
    si.nr_pages = nr_pages;
    si.shared_info = si_mfn << 12;
    si.flags = SIF_PRIVILEGED | SIF_INITDOMAIN | mod_flag;
    si.pt_base = lay.pt_base;
    si.nr_pt_frames = lay.nr_pt_frames;
    si.mfn_list = lay.p2m.start;
    si.mod_start = mod_start;
    // Xen reports the first pfn past its initial allocation (and an unmapped initrd), even
    // without an INIT_P2M note.
    si.first_p2m_pfn = first_alloc + if mod_flag != 0 { initrd_pages } else { 0 };
    si.mod_len = mod_len;
    let kcmd = strip_image_name(&kmod.cmdline);
    let n = kcmd.len().min(si.cmd_line.len() - 1);
    si.cmd_line[..n].copy_from_slice(&kcmd.as_bytes()[..n]);
    write_va(lay.start_info, si.as_bytes());

    if let Some(hp) = info.hypercall_page {
        xen_abi::hypercall::fill_hypercall_page(page_of(hp & !0xfff));
    }

    // vCPU 0.
    // Validate the bootstrap tables exactly as if the guest had built and pinned them, and
    // take the root reference of vCPU 0's kernel page table.
    let ptdom = dom.ptdom();
    let pinned = crate::mm::with_frames(|ft, mem| {
        ft.pin(mem, l4, 4, ptdom)?;
        ft.get_page_and_type(mem, l4, xenolith_core::pagetype::PageType::L4, ptdom)
    });
    if let Err(e) = pinned {
        fail!(
            "internal: the bootstrap page tables failed validation ({})",
            e.name()
        );
    }
    crate::mm::fill_ro_mpt(l4);

    let mut v = Vcpu::new(0, si_mfn << 12);
    v.guest_table = l4;
    v.regs = GuestRegs {
        rip: info.entry,
        rsp: lay.initial_rsp(),
        rsi: lay.start_info,
        cs: u64::from(crate::cpu::FLAT_RING3_CS64),
        ss: u64::from(crate::cpu::FLAT_RING3_DS),
        rflags: (1 << 9) | 2,
        ..GuestRegs::default()
    };
    v.kernel_ss = u64::from(crate::cpu::FLAT_RING3_DS);
    v.kernel_sp = lay.initial_rsp();
    v.initialised = true;
    v.up = true;
    dom.vcpus.push(v);
    // The others start down, with their vcpu_info in shared_info, until the guest initialises
    // them and brings them up (VCPUOP_initialise, VCPUOP_up).
    let now = crate::time::now_ns();
    for id in 1..nr_vcpus {
        let mut v = Vcpu::new(id, (si_mfn << 12) + u64::from(id) * 64);
        v.runstate.state = crate::vcpu::RUNSTATE_OFFLINE;
        v.runstate.state_entry_time = now;
        dom.vcpus.push(v);
    }
    crate::info!(
        "dom0: entry {:#x}, start_info {:#x}, stack {:#x}",
        info.entry,
        lay.start_info,
        lay.initial_rsp()
    );
    Ok(dom)
}
