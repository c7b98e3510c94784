//! Test kernel `boot-abi`: the initial domain state, field by field, as a dom0 sees it.
//!
//! Command line: `expect_pages=N` (dom0's page count, e.g. 16384 for
//! `dom0_mem=64M`); nothing else. Checks start_info and the layout of the
//! initial region (Xen's dom0 builder, pv/dom0_build.c), the bootstrap page
//! tables, p2m/M2P agreement, shared_info and time, the hypercall page bytes,
//! xen_version and the initial vCPU registers.
#![no_std]
#![no_main]

use xen_abi::features::XENFEAT_DOM0;
use xen_abi::hypercall::{HYPERCALL_STUB_SIZE, IRET};
use xen_abi::layout::{
    FLAT_KERNEL_CS, FLAT_KERNEL_DS, FLAT_KERNEL_SS, MACH2PHYS_VIRT_END, MACH2PHYS_VIRT_START,
    PAGE_GUEST_KERNEL, PAGE_SIZE as PAGE, XEN_LEGACY_MAX_VCPUS,
};
use xen_abi::shared_info::EVTCHN_WORDS;
use xen_abi::start_info::{
    StartInfo, SIF_INITDOMAIN, SIF_PM_MASK, SIF_PRIVILEGED, START_INFO_MAGIC_X86_64,
};
use xen_abi::version::{
    XenFeatureInfo, XENVER_CAPABILITIES, XENVER_EXTRAVERSION, XENVER_GET_FEATURES, XENVER_VERSION,
    XEN_CAPABILITIES_INFO_LEN, XEN_EXTRAVERSION_LEN,
};
use xen_abi::Errno;
use xenolith_guests::shared_info::{self, rdtsc};
use xenolith_guests::traps::{probe_read_u64, probe_write_u64, Fault};
use xenolith_guests::x86::{
    PFEC_PRESENT, PFEC_WRITE, PTE_ACCESSED, PTE_ADDR_MASK, PTE_DIRTY, PTE_PRESENT, PTE_RW,
    PTE_USER, VEC_PF,
};
use xenolith_guests::{
    boot, check, check_eq, hypercall, println, test_main, Boot, Failures, Verdict,
};

test_main!(boot_abi);

fn round_up(x: u64, align: u64) -> u64 {
    x.div_ceil(align) * align
}

/// The initial region as Xen's dom0 builder lays it out for this image.
#[derive(Debug)]
struct Layout {
    v_start: u64,
    p2m: u64,
    start_info: u64,
    pt_base: u64,
    nr_pt: u64,
    stack_top: u64,
    v_end: u64,
}

/// Tables needed to map [v_start, v_end): 1 L4 + L3s + L2s + L1s. Rounding
/// v_end up wraps at the top of the address space, as in Xen's `NR()` macro.
fn tables_for(v_start: u64, v_end: u64) -> u64 {
    let nr = |shift: u32| {
        let mask = (1u64 << shift) - 1;
        ((v_end.wrapping_add(mask) & !mask).wrapping_sub(v_start & !mask)) >> shift
    };
    1 + nr(39) + nr(30) + nr(21)
}

/// Xen's algorithm: kernel, p2m, start_info (+ dom0 console info, within one
/// page), page tables, one stack page; v_end rounded up to 4 MiB with at
/// least 512 KiB after the stack; the table count is the smallest fixed point.
fn expected_layout(nr_pages: u64) -> Layout {
    let v_start = boot::virt_base();
    let p2m = round_up(boot::image_end(), PAGE);
    let start_info = round_up(p2m + nr_pages * 8, PAGE);
    let pt_base = start_info + PAGE;
    let mut nr_pt = 2;
    loop {
        let stack_top = pt_base + (nr_pt + 1) * PAGE;
        let mut v_end = round_up(stack_top, 4 << 20);
        if v_end - stack_top < 512 << 10 {
            v_end += 4 << 20;
        }
        if tables_for(v_start, v_end) <= nr_pt {
            return Layout {
                v_start,
                p2m,
                start_info,
                pt_base,
                nr_pt,
                stack_top,
                v_end,
            };
        }
        nr_pt += 1;
    }
}

fn boot_abi(boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    let si = boot.start_info;
    let Some(expect_pages) = boot.arg_u64("expect_pages") else {
        xenolith_guests::error("command line lacks expect_pages=N");
    };

    check_start_info(&mut t, boot, expect_pages);
    let layout = expected_layout(si.nr_pages);
    println!(
        "expected layout: p2m {:#x} start_info {:#x} pt_base {:#x} nr_pt {} stack top {:#x} v_end {:#x}",
        layout.p2m, layout.start_info, layout.pt_base, layout.nr_pt, layout.stack_top, layout.v_end
    );
    check_layout(&mut t, boot, &layout);
    check_page_tables(&mut t, si, &layout);
    check_m2p(&mut t, si);
    check_shared_info(&mut t, si, &layout);
    check_hypercall_page(&mut t);
    check_xen_version(&mut t);
    check_entry_regs(&mut t, boot);
    t.verdict()
}

fn check_start_info(t: &mut Failures, boot: &Boot, expect_pages: u64) {
    let si = boot.start_info;
    let magic = START_INFO_MAGIC_X86_64;
    check!(
        t,
        si.magic[..magic.len()] == magic[..] && si.magic[magic.len()..].iter().all(|&b| b == 0),
        "start_info.magic is {:x?}",
        si.magic
    );
    check_eq!(t, si.nr_pages, expect_pages, "start_info.nr_pages");
    println!(
        "start_info: nr_pages {:#x} shared_info {:#x} flags {:#x} pt_base {:#x} nr_pt_frames {} mfn_list {:#x}",
        si.nr_pages, si.shared_info, si.flags, si.pt_base, si.nr_pt_frames, si.mfn_list
    );
    println!(
        "            store {:#x}/{} dom0 console info {:x?} mod {:#x}+{:#x} first_p2m_pfn {:#x} nr_p2m_frames {}",
        si.store_mfn,
        si.store_evtchn,
        si.dom0_console(),
        si.mod_start,
        si.mod_len,
        si.first_p2m_pfn,
        si.nr_p2m_frames
    );
    println!("            cmd_line {:?}", boot.cmdline());
    check_eq!(
        t,
        si.flags & !SIF_PM_MASK,
        SIF_PRIVILEGED | SIF_INITDOMAIN,
        "start_info.flags (without the PM bits)"
    );
    check_eq!(
        t,
        si.shared_info % PAGE,
        0,
        "start_info.shared_info page offset"
    );
    check!(t, si.shared_info != 0, "start_info.shared_info is 0");
    check_eq!(
        t,
        si.store_mfn,
        0,
        "start_info.store_mfn (dom0 has no xenstore)"
    );
    check_eq!(t, si.store_evtchn, 0, "start_info.store_evtchn");
    check_eq!(t, si.mod_start, 0, "start_info.mod_start (no initrd)");
    check_eq!(t, si.mod_len, 0, "start_info.mod_len (no initrd)");
    check_eq!(
        t,
        si.nr_p2m_frames,
        0,
        "start_info.nr_p2m_frames (no INIT_P2M)"
    );
    // The command line is exactly what the runner gave: only known words.
    check!(
        t,
        boot.cmdline().is_some_and(|c| c
            .split_ascii_whitespace()
            .all(|w| w.starts_with("expect_pages="))),
        "start_info.cmd_line {:?} is not the expected `expect_pages=N`",
        boot.cmdline()
    );
}

fn check_layout(t: &mut Failures, boot: &Boot, l: &Layout) {
    let si = boot.start_info;
    let si_va = si as *const StartInfo as u64;
    check_eq!(t, boot::image_start(), l.v_start, "image start = VIRT_BASE");
    check_eq!(
        t,
        si.mfn_list,
        l.p2m,
        "mfn_list (p2m right after the image)"
    );
    check_eq!(
        t,
        si_va,
        l.start_info,
        "start_info VA (right after the p2m)"
    );
    check_eq!(t, boot.entry.rsi, si_va, "rsi at entry");
    check_eq!(t, si.pt_base, l.pt_base, "pt_base (page after start_info)");
    check_eq!(t, si.nr_pt_frames, l.nr_pt, "nr_pt_frames");
    check_eq!(
        t,
        boot.entry.rsp,
        l.stack_top,
        "rsp at entry (top of the page after the tables)"
    );
    // The region ends exactly at v_end: its last page reads, v_end faults.
    check!(
        t,
        probe_read_u64(l.v_end - 8).is_ok(),
        "last page of the initial region {:#x} is not mapped",
        l.v_end - PAGE
    );
    let beyond = probe_read_u64(l.v_end);
    check_eq!(
        t,
        beyond,
        Err(Fault {
            vector: VEC_PF,
            error_code: 0
        }),
        "read of v_end {:#x}",
        l.v_end
    );
}

/// Reads entry `index` of the page table at machine frame `mfn`, through the
/// table's read-only mapping in the initial region.
fn table_entry(si: &StartInfo, l: &Layout, mfn: u64, index: u64) -> Option<u64> {
    let pfn = probe_read_u64(MACH2PHYS_VIRT_START + mfn * 8).ok()?;
    let va = l.v_start + pfn * PAGE;
    if va < si.pt_base || va >= si.pt_base + si.nr_pt_frames * PAGE {
        return None;
    }
    probe_read_u64(va + index * 8).ok()
}

/// Walks the bootstrap tables for `va`: the entries of L4, L3, L2, L1.
fn walk(si: &StartInfo, l: &Layout, va: u64) -> Option<[u64; 4]> {
    let mut entries = [0; 4];
    let mut mfn = p2m(si, (si.pt_base - l.v_start) / PAGE);
    for (level, shift) in [39u32, 30, 21, 12].into_iter().enumerate() {
        let e = table_entry(si, l, mfn, (va >> shift) & 511)?;
        entries[level] = e;
        if e & PTE_PRESENT == 0 {
            return Some(entries);
        }
        mfn = (e & PTE_ADDR_MASK) >> 12;
    }
    Some(entries)
}

fn p2m(si: &StartInfo, pfn: u64) -> u64 {
    assert!(pfn < si.nr_pages);
    // SAFETY: mfn_list is the builder's p2m array of nr_pages entries, mapped
    // in the initial region; pfn is in bounds.
    unsafe { (si.mfn_list as *const u64).add(pfn as usize).read() }
}

fn check_page_tables(t: &mut Failures, si: &StartInfo, l: &Layout) {
    let pt_range = si.pt_base..si.pt_base + si.nr_pt_frames * PAGE;
    // Xen's dom0 builder: L4-L2 entries P|RW|A|D|U; L1 entries P|RW|A|U plus
    // _PAGE_GUEST_KERNEL, RW cleared for the tables themselves (the CPU may
    // have set A and D since).
    let upper = PTE_PRESENT | PTE_RW | PTE_USER | PTE_ACCESSED | PTE_DIRTY;
    let mut bad = 0;
    let mut first_bad = 0;
    let mut shown = false;
    for va in (l.v_start..l.v_end).step_by(PAGE as usize) {
        let pfn = (va - l.v_start) / PAGE;
        let Some(e) = walk(si, l, va) else {
            t.fail(format_args!("cannot walk the bootstrap tables for {va:#x}"));
            return;
        };
        if !shown {
            println!(
                "tables for {va:#x}: L4e {:#x} L3e {:#x} L2e {:#x} L1e {:#x}",
                e[0], e[1], e[2], e[3]
            );
            shown = true;
        }
        let writable = !pt_range.contains(&va);
        let l1_flags =
            PTE_PRESENT | PTE_USER | PAGE_GUEST_KERNEL | if writable { PTE_RW } else { 0 };
        let ok = e[..3].iter().all(|&x| x & !PTE_ADDR_MASK == upper)
            && e[3] & !(PTE_ADDR_MASK | PTE_ACCESSED | PTE_DIRTY) == l1_flags
            && (e[3] & PTE_ADDR_MASK) >> 12 == p2m(si, pfn);
        if !ok {
            if bad == 0 {
                first_bad = va;
                println!(
                    "  {va:#x}: L4e {:#x} L3e {:#x} L2e {:#x} L1e {:#x}",
                    e[0], e[1], e[2], e[3]
                );
            }
            bad += 1;
        }
    }
    check!(
        t,
        bad == 0,
        "{bad} pages of the initial region mapped wrongly, first {first_bad:#x}"
    );
    // The tables themselves are read-only: writing the L4 faults (present, write).
    // SAFETY: writes back the value just read, should the write succeed.
    let r = probe_read_u64(si.pt_base).and_then(|v| unsafe { probe_write_u64(si.pt_base, v) });
    check_eq!(
        t,
        r,
        Err(Fault {
            vector: VEC_PF,
            error_code: PFEC_PRESENT | PFEC_WRITE
        }),
        "write to the L4 at pt_base"
    );
}

fn check_m2p(t: &mut Failures, si: &StartInfo) {
    let m = match hypercall::machphys_mapping() {
        Ok(m) => m,
        Err(e) => {
            t.fail(format_args!("XENMEM_machphys_mapping failed: {e:?}"));
            return;
        }
    };
    println!(
        "machphys_mapping: v_start {:#x} v_end {:#x} max_mfn {:#x}",
        m.v_start, m.v_end, m.max_mfn
    );
    check_eq!(
        t,
        m.v_start,
        MACH2PHYS_VIRT_START,
        "machphys_mapping.v_start"
    );
    check_eq!(t, m.v_end, MACH2PHYS_VIRT_END, "machphys_mapping.v_end");
    check!(
        t,
        m.max_mfn < (m.v_end - m.v_start) / 8,
        "machphys_mapping.max_mfn {:#x} beyond the table",
        m.max_mfn
    );
    let mut bad = 0;
    for pfn in 0..si.nr_pages {
        let mfn = p2m(si, pfn);
        let back = if mfn <= m.max_mfn {
            probe_read_u64(MACH2PHYS_VIRT_START + mfn * 8)
        } else {
            Ok(u64::MAX)
        };
        if back != Ok(pfn) {
            if bad == 0 {
                println!("  p2m[{pfn:#x}] = {mfn:#x}, M2P[{mfn:#x}] = {back:x?}");
            }
            bad += 1;
        }
    }
    check!(t, bad == 0, "{bad} pfns whose p2m and M2P entries disagree");
    // The M2P is read-only: writing an entry faults (present, write).
    let entry = MACH2PHYS_VIRT_START + p2m(si, 0) * 8;
    // SAFETY: writes back the value just read, should the write succeed.
    let r = probe_read_u64(entry).and_then(|v| unsafe { probe_write_u64(entry, v) });
    check_eq!(
        t,
        r,
        Err(Fault {
            vector: VEC_PF,
            error_code: PFEC_PRESENT | PFEC_WRITE
        }),
        "write to the M2P"
    );
}

fn check_shared_info(t: &mut Failures, si: &StartInfo, l: &Layout) {
    let s = match shared_info::map(si) {
        Ok(s) => s,
        Err(e) => {
            t.fail(format_args!("mapping shared_info failed: {e:?}"));
            return;
        }
    };
    for n in 0..XEN_LEGACY_MAX_VCPUS {
        let v = s.vcpu_info(n);
        check_eq!(
            t,
            v.evtchn_upcall_mask,
            1,
            "vcpu_info[{n}].evtchn_upcall_mask"
        );
        check_eq!(
            t,
            v.evtchn_upcall_pending,
            0,
            "vcpu_info[{n}].evtchn_upcall_pending"
        );
        check_eq!(
            t,
            v.evtchn_pending_sel,
            0,
            "vcpu_info[{n}].evtchn_pending_sel"
        );
    }
    for i in 0..EVTCHN_WORDS {
        check_eq!(t, s.evtchn_pending(i), 0, "evtchn_pending[{i}]");
        check_eq!(t, s.evtchn_mask(i), 0, "evtchn_mask[{i}]");
    }
    let t0 = s.time(0);
    println!(
        "vcpu_time_info[0]: version {} tsc_timestamp {:#x} system_time {} mul {:#x} shift {} flags {:#x}",
        t0.version, t0.tsc_timestamp, t0.system_time, t0.tsc_to_system_mul, t0.tsc_shift, t0.flags
    );
    check!(t, t0.tsc_to_system_mul != 0, "tsc_to_system_mul is 0");
    let before = t0.system_time_at(rdtsc());
    let start = rdtsc();
    while rdtsc() - start < 5_000_000 {
        core::hint::spin_loop();
    }
    let t1 = s.time(0);
    let after = t1.system_time_at(rdtsc());
    println!("system time {before} ns -> {after} ns");
    check!(
        t,
        after > before,
        "system time does not advance: {before} -> {after}"
    );
    let (wc_version, wc_sec, wc_nsec) = s.wallclock();
    println!("wallclock: version {wc_version} sec {wc_sec} nsec {wc_nsec}");
    check!(
        t,
        wc_sec > 1_577_836_800,
        "wallclock {wc_sec} s is before 2020"
    );
    check!(t, wc_nsec < 1_000_000_000, "wc_nsec {wc_nsec} out of range");
    // arch.max_pfn is the guest's to fill in (Linux does, for the tools).
    check_eq!(t, s.max_pfn(), 0, "shared_info.arch.max_pfn at boot");
    // shared_info is Xen's page, not one of the guest's pfns.
    check_eq!(
        t,
        probe_read_u64(MACH2PHYS_VIRT_START + (si.shared_info >> 12) * 8),
        Ok(u64::MAX),
        "M2P entry of the shared_info frame"
    );
    // A #PF now reports its address in vcpu_info[0].arch.cr2.
    let _ = probe_read_u64(l.v_end);
    check_eq!(
        t,
        s.cr2(0),
        l.v_end,
        "vcpu_info[0].arch.cr2 after a #PF at v_end"
    );
}

fn check_hypercall_page(t: &mut Failures) {
    let page = boot::hypercall_page_bytes();
    for slot in 0..hypercall::PAGE_SLOTS as usize {
        let mut expected = [0xccu8; 32];
        let nr = (slot as u32).to_le_bytes();
        let code: &[u8] = if slot as u64 == IRET {
            // push rcx; push r11; push rax; mov eax, 23; syscall
            &[
                0x51, 0x41, 0x53, 0x50, 0xb8, nr[0], nr[1], nr[2], nr[3], 0x0f, 0x05,
            ]
        } else {
            // push rcx; push r11; mov eax, slot; syscall; pop r11; pop rcx; ret
            &[
                0x51, 0x41, 0x53, 0xb8, nr[0], nr[1], nr[2], nr[3], 0x0f, 0x05, 0x41, 0x5b, 0x59,
                0xc3,
            ]
        };
        expected[..code.len()].copy_from_slice(code);
        let actual = &page[slot * HYPERCALL_STUB_SIZE..(slot + 1) * HYPERCALL_STUB_SIZE];
        if slot < 2 || slot == IRET as usize {
            println!("hypercall page slot {slot}: {actual:02x?}");
        }
        check!(
            t,
            actual == expected,
            "hypercall page slot {slot} is {actual:02x?}"
        );
    }
}

fn check_xen_version(t: &mut Failures) {
    // SAFETY: XENVER_version takes no argument.
    let version = unsafe { hypercall::xen_version(XENVER_VERSION, 0) };
    println!("xen_version: {}.{}", version >> 16, version & 0xffff);
    check!(
        t,
        version >> 16 >= 4,
        "XENVER_version {version:#x}: major < 4"
    );

    let mut extra = [0u8; XEN_EXTRAVERSION_LEN];
    let r = hypercall::xen_version_into(XENVER_EXTRAVERSION, &mut extra);
    check_eq!(t, r, Ok(0), "XENVER_extraversion");
    check!(
        t,
        extra.contains(&0),
        "XENVER_extraversion not NUL-terminated"
    );
    println!("extraversion: {:?}", cstr(&extra));

    let mut caps = [0u8; XEN_CAPABILITIES_INFO_LEN];
    let r = hypercall::xen_version_into(XENVER_CAPABILITIES, &mut caps);
    check_eq!(t, r, Ok(0), "XENVER_capabilities");
    let caps = cstr(&caps);
    println!("capabilities: {caps:?}");
    check!(
        t,
        caps.split(' ').any(|c| c == "xen-3.0-x86_64"),
        "XENVER_capabilities lacks xen-3.0-x86_64"
    );

    let mut fi = XenFeatureInfo::default();
    let r = hypercall::xen_version_into(XENVER_GET_FEATURES, &mut fi);
    check_eq!(t, r, Ok(0), "XENVER_get_features(0)");
    println!("features submap 0: {:#x}", fi.submap);
    check!(
        t,
        fi.submap & (1 << XENFEAT_DOM0) != 0,
        "XENFEAT_dom0 not reported"
    );
    let mut fi = XenFeatureInfo {
        submap_idx: 1,
        submap: 0,
    };
    let r = hypercall::xen_version_into(XENVER_GET_FEATURES, &mut fi);
    check_eq!(t, r, Err(Errno::EINVAL), "XENVER_get_features(1)");
}

fn check_entry_regs(t: &mut Failures, boot: &Boot) {
    let r = &boot.entry;
    println!(
        "entry: cs {:#x} ss {:#x} ds {:#x} es {:#x} fs {:#x} gs {:#x} rflags {:#x} rsi {:#x} rsp {:#x}",
        r.cs, r.ss, r.ds, r.es, r.fs, r.gs, r.rflags, r.rsi, r.rsp
    );
    check_eq!(t, r.cs, u64::from(FLAT_KERNEL_CS), "cs at entry");
    check_eq!(t, r.ss, u64::from(FLAT_KERNEL_SS), "ss at entry");
    for (name, v) in [("ds", r.ds), ("es", r.es), ("fs", r.fs), ("gs", r.gs)] {
        check_eq!(t, v, u64::from(FLAT_KERNEL_DS), "{name} at entry");
    }
    check_eq!(
        t,
        r.rflags,
        0x202,
        "rflags at entry (IF, as the hardware runs it)"
    );
    let zero = [
        ("rax", r.rax),
        ("rbx", r.rbx),
        ("rcx", r.rcx),
        ("rdx", r.rdx),
        ("rdi", r.rdi),
        ("rbp", r.rbp),
        ("r8", r.r8),
        ("r9", r.r9),
        ("r10", r.r10),
        ("r11", r.r11),
        ("r12", r.r12),
        ("r13", r.r13),
        ("r14", r.r14),
        ("r15", r.r15),
    ];
    for (name, v) in zero {
        check_eq!(t, v, 0, "{name} at entry");
    }
}

fn cstr(bytes: &[u8]) -> &str {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..len]).unwrap_or("<not UTF-8>")
}
