//! Fuzz target: `loader::parse` on arbitrary boot modules, then the layout built from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenolith_core::layout::{self, LayoutRequest};
use xenolith_core::loader::{self, Limits};

fuzz_target!(|data: &[u8]| {
    // A small limit, derived from the input, exercises the limit checks of every decoder.
    let small = Limits {
        max_image_bytes: data.len().wrapping_mul(7) % 8192,
    };
    if let Ok(image) = loader::parse(data, &small) {
        assert!(image.elf().len() <= small.max_image_bytes);
    }

    let limits = Limits {
        max_image_bytes: 64 << 20,
    };
    let Ok(image) = loader::parse(data, &limits) else {
        return;
    };
    // Segment data must be exactly filesz bytes of the ELF, for every segment.
    for seg in image.segments() {
        let bytes = image.segment_data(seg);
        assert_eq!(bytes.len(), seg.filesz);
        assert!(seg.filesz as u64 <= seg.memsz);
        let info = image.info();
        assert!(seg.vaddr >= info.virt_kstart);
        assert!(seg.vaddr + seg.memsz <= info.virt_kend);
        std::hint::black_box(bytes);
    }
    let info = image.info();
    assert!(info.virt_base <= info.virt_kstart);
    assert!(info.entry >= info.virt_kstart && info.entry < info.virt_kend);
    let _ = image.unsupported_required(1);
    let _ = info.dom0_capable();

    // Lay out the initial address space for a few domain sizes derived from the input.
    let seed = data.iter().fold(0u64, |a, &b| a.rotate_left(5) ^ u64::from(b));
    for nr_pages in [1u64, 4096, 1 << 18, seed & 0xf_ffff, seed] {
        let req = LayoutRequest {
            virt_base: info.virt_base,
            kern_start: info.virt_kstart,
            kern_end: info.virt_kend,
            initrd_len: seed >> 40,
            initrd_mapped: !info.mod_start_pfn,
            nr_pages,
            domu_rings: seed & 1 != 0,
            p2m_external: info.init_p2m,
        };
        if let Ok(l) = layout::compute(&req) {
            let (a, b, c, d) = layout::tables_needed(l.v_start, l.v_end);
            assert!(a + b + c + d <= l.nr_pt_frames);
            assert!(l.initial_pages() + l.extra_pages <= nr_pages);
            assert!(l.kern.end <= l.start_info && l.start_info < l.pt_base);
            assert!(l.stack + 4096 <= l.v_end);
            if let Some(hp) = info.hypercall_page {
                assert!(l.pfn_of(hp).is_some());
            }
        }
    }
});
