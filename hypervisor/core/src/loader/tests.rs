//! Loader tests: synthetic ELF64 PV kernels, bzImages in every supported compression, and
//! hostile inputs (truncation at every length, garbage, overflowing headers, bombs).

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use std::io::Write;

use super::*;

const VIRT_BASE: u64 = 0xffff_ffff_8000_0000;
const PHYS_START: u64 = 0x100_0000;
const KSTART: u64 = VIRT_BASE + PHYS_START;

// XEN_ELFNOTE_* numbers used by the tests.
const N_ENTRY: u32 = 1;
const N_HYPERCALL_PAGE: u32 = 2;
const N_VIRT_BASE: u32 = 3;
const N_PADDR_OFFSET: u32 = 4;
const N_XEN_VERSION: u32 = 5;
const N_GUEST_OS: u32 = 6;
const N_GUEST_VERSION: u32 = 7;
const N_LOADER: u32 = 8;
const N_PAE_MODE: u32 = 9;
const N_FEATURES: u32 = 10;
const N_INIT_P2M: u32 = 15;
const N_MOD_START_PFN: u32 = 16;
const N_SUPPORTED_FEATURES: u32 = 17;
const N_PHYS32_ENTRY: u32 = 18;

/// One note: owner, type, descriptor.
#[derive(Clone)]
struct Note {
    owner: &'static [u8],
    ty: u32,
    desc: Vec<u8>,
}

fn xnum(ty: u32, v: u64) -> Note {
    Note {
        owner: b"Xen\0",
        ty,
        desc: v.to_le_bytes().to_vec(),
    }
}

fn xnum32(ty: u32, v: u32) -> Note {
    Note {
        owner: b"Xen\0",
        ty,
        desc: v.to_le_bytes().to_vec(),
    }
}

fn xstr(ty: u32, s: &str) -> Note {
    let mut desc = s.as_bytes().to_vec();
    desc.push(0);
    Note {
        owner: b"Xen\0",
        ty,
        desc,
    }
}

#[derive(Clone)]
struct Load {
    paddr: u64,
    data: Vec<u8>,
    memsz: u64,
    flags: u32,
}

/// Where the notes go.
#[derive(Clone, Copy, PartialEq)]
enum NotePlace {
    Segment,
    Section,
    /// A PT_NOTE with p_offset 0 (which Xen skips) plus an SHT_NOTE section.
    ZeroOffsetSegmentAndSection,
}

/// A tiny ELF64 writer for tests.
#[derive(Clone)]
struct TestElf {
    class: u8,
    e_type: u16,
    machine: u16,
    entry: u64,
    notes: Vec<Note>,
    loads: Vec<Load>,
    place: NotePlace,
    /// File alignment of the loadable data (4096 like a real kernel; small for fuzz seeds).
    align: usize,
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

impl TestElf {
    /// A Linux-like PV kernel: text + data/bss at phys 16 MiB, linked at virt_base + 16 MiB.
    fn linux() -> Self {
        Self {
            class: 2,
            e_type: 2,
            machine: 62,
            entry: KSTART + 0x123,
            notes: vec![
                xstr(N_GUEST_OS, "linux"),
                xstr(N_GUEST_VERSION, "2.6"),
                xstr(N_XEN_VERSION, "xen-3.0"),
                xnum(N_VIRT_BASE, VIRT_BASE),
                xnum(N_PADDR_OFFSET, 0),
                xnum(N_ENTRY, KSTART + 0x40),
                xnum(N_HYPERCALL_PAGE, KSTART + 0x1000),
                xnum(N_INIT_P2M, 0x80_0000_0000),
                xstr(N_FEATURES, "!writable_page_tables|pae_pgdir_above_4gb"),
                xnum32(N_SUPPORTED_FEATURES, 1 | 1 << 11 | 1 << 15),
                xstr(N_PAE_MODE, "yes"),
                xstr(N_LOADER, "generic"),
                xnum32(N_MOD_START_PFN, 1),
                xnum32(N_PHYS32_ENTRY, 0x100_0200),
            ],
            loads: vec![
                Load {
                    paddr: PHYS_START,
                    data: pattern(0x3000, 1),
                    memsz: 0x3000,
                    flags: 5,
                },
                Load {
                    paddr: PHYS_START + 0x3000,
                    data: pattern(0x800, 2),
                    memsz: 0x5000,
                    flags: 6,
                },
            ],
            place: NotePlace::Segment,
            align: 0x1000,
        }
    }

    /// A compact variant (small segments, 16-byte file alignment) for fuzz seeds.
    fn compact(mut self) -> Self {
        self.align = 16;
        for l in &mut self.loads {
            l.data.truncate(0x40);
        }
        self
    }

    /// An XTF-like image: no VIRT_BASE/PADDR_OFFSET/ENTRY, loads at low addresses.
    fn xtf() -> Self {
        Self {
            entry: 0x1_0000,
            notes: vec![
                xstr(N_GUEST_OS, "XTF"),
                xstr(N_XEN_VERSION, "xen-3.0"),
                xstr(N_LOADER, "generic"),
                xnum(N_HYPERCALL_PAGE, 0x1_1000),
                xstr(N_FEATURES, "!writable_page_tables|pae_pgdir_above_4gb"),
            ],
            loads: vec![Load {
                paddr: 0x1_0000,
                data: pattern(0x2000, 3),
                memsz: 0x3000,
                flags: 7,
            }],
            ..Self::linux()
        }
    }

    fn without_note(mut self, ty: u32) -> Self {
        self.notes.retain(|n| n.ty != ty);
        self
    }

    fn with_note(mut self, n: Note) -> Self {
        self.notes.retain(|m| m.ty != n.ty);
        self.notes.push(n);
        self
    }

    fn note_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for n in &self.notes {
            out.extend_from_slice(&(n.owner.len() as u32).to_le_bytes());
            out.extend_from_slice(&(n.desc.len() as u32).to_le_bytes());
            out.extend_from_slice(&n.ty.to_le_bytes());
            out.extend_from_slice(n.owner);
            while out.len() % 4 != 0 {
                out.push(0);
            }
            out.extend_from_slice(&n.desc);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        out
    }

    /// Byte offset of program header `i` in the built file.
    fn phdr_offset(i: usize) -> usize {
        64 + 56 * i
    }

    fn build(&self) -> Vec<u8> {
        let notes = self.note_bytes();
        let note_phdr = self.place != NotePlace::Section && !notes.is_empty();
        let nphdr = self.loads.len() + usize::from(note_phdr);
        let notes_off = 64 + 56 * nphdr;
        let a = self.align - 1;
        let mut data_off = (notes_off + notes.len() + a) & !a;
        let mut load_offs = Vec::new();
        for l in &self.loads {
            load_offs.push(data_off);
            data_off = (data_off + l.data.len() + a) & !a;
        }
        let shoff = data_off;
        let shnum = 2u16;
        let total = shoff + 64 * usize::from(shnum);

        let mut f = vec![0u8; total];
        let put = |f: &mut Vec<u8>, off: usize, b: &[u8]| {
            f[off..off + b.len()].copy_from_slice(b);
        };
        put(&mut f, 0, b"\x7fELF");
        f[4] = self.class;
        f[5] = 1;
        f[6] = 1;
        put(&mut f, 0x10, &self.e_type.to_le_bytes());
        put(&mut f, 0x12, &self.machine.to_le_bytes());
        put(&mut f, 0x14, &1u32.to_le_bytes());
        put(&mut f, 0x18, &self.entry.to_le_bytes());
        put(&mut f, 0x20, &64u64.to_le_bytes());
        put(&mut f, 0x28, &(shoff as u64).to_le_bytes());
        put(&mut f, 0x34, &64u16.to_le_bytes());
        put(&mut f, 0x36, &56u16.to_le_bytes());
        put(&mut f, 0x38, &(nphdr as u16).to_le_bytes());
        put(&mut f, 0x3A, &64u16.to_le_bytes());
        put(&mut f, 0x3C, &shnum.to_le_bytes());

        let phdr = |f: &mut Vec<u8>,
                    i: usize,
                    ty: u32,
                    flags: u32,
                    off: u64,
                    paddr: u64,
                    filesz: u64,
                    memsz: u64| {
            let b = Self::phdr_offset(i);
            put(f, b, &ty.to_le_bytes());
            put(f, b + 4, &flags.to_le_bytes());
            put(f, b + 8, &off.to_le_bytes());
            put(f, b + 16, &paddr.wrapping_add(VIRT_BASE).to_le_bytes());
            put(f, b + 24, &paddr.to_le_bytes());
            put(f, b + 32, &filesz.to_le_bytes());
            put(f, b + 40, &memsz.to_le_bytes());
            put(f, b + 48, &0x1000u64.to_le_bytes());
        };
        for (i, l) in self.loads.iter().enumerate() {
            phdr(
                &mut f,
                i,
                1,
                l.flags,
                load_offs[i] as u64,
                l.paddr,
                l.data.len() as u64,
                l.memsz,
            );
            put(&mut f, load_offs[i], &l.data);
        }
        if note_phdr {
            let off = if self.place == NotePlace::ZeroOffsetSegmentAndSection {
                0
            } else {
                notes_off as u64
            };
            let n = notes.len() as u64;
            phdr(&mut f, self.loads.len(), 4, 4, off, 0, n, n);
        }
        put(&mut f, notes_off, &notes);
        // Section 0 is the null section; section 1 is SHT_NOTE (or SHT_PROGBITS when the notes
        // are only meant to be found through the segment).
        let sh = shoff + 64;
        let sh_type: u32 = if self.place == NotePlace::Segment {
            1
        } else {
            7
        };
        put(&mut f, sh + 4, &sh_type.to_le_bytes());
        put(&mut f, sh + 24, &(notes_off as u64).to_le_bytes());
        put(&mut f, sh + 32, &(notes.len() as u64).to_le_bytes());
        f
    }
}

fn lim() -> Limits {
    Limits::default()
}

fn parse_ok(bytes: &[u8]) -> KernelImage {
    match parse(bytes, &lim()) {
        Ok(k) => k,
        Err(e) => panic!("parse failed: {e}"),
    }
}

fn parse_err(bytes: &[u8]) -> LoadError {
    match parse(bytes, &lim()) {
        Ok(_) => panic!("parse unexpectedly succeeded"),
        Err(e) => e,
    }
}

fn set_phdr_u64(f: &mut [u8], i: usize, field: usize, v: u64) {
    let b = TestElf::phdr_offset(i) + field;
    f[b..b + 8].copy_from_slice(&v.to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// ELF and notes

#[test]
fn good_linux_image() {
    let t = TestElf::linux();
    let bytes = t.build();
    let k = parse_ok(&bytes);
    let i = k.info();
    assert_eq!(k.format(), ImageFormat::Elf);
    assert_eq!(i.entry, KSTART + 0x40);
    assert_eq!(i.virt_base, VIRT_BASE);
    assert_eq!(i.paddr_offset, 0);
    assert_eq!(i.virt_kstart, KSTART);
    assert_eq!(i.virt_kend, KSTART + 0x8000);
    assert_eq!(i.hypercall_page, Some(KSTART + 0x1000));
    assert_eq!(i.init_p2m, Some(0x80_0000_0000));
    assert!(i.mod_start_pfn);
    assert_eq!(i.phys32_entry, Some(0x100_0200));
    assert_eq!(i.xen_version, "xen-3.0");
    assert_eq!(i.guest_os, "linux");
    assert_eq!(i.guest_version, "2.6");
    assert_eq!(i.loader, "generic");
    assert_eq!(i.pae_mode, "yes");
    assert_eq!(i.features_required, 1);
    assert_eq!(i.features_supported, 1 | 1 << 4 | 1 << 11 | 1 << 15);
    assert!(i.has_supported_features_note);
    assert!(i.dom0_capable());
    assert!(!i.notes_from_sections);

    let segs = k.segments();
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[0].vaddr, KSTART);
    assert_eq!(segs[0].memsz, 0x3000);
    assert_eq!(k.segment_data(&segs[0]), &t.loads[0].data[..]);
    assert_eq!(segs[1].vaddr, KSTART + 0x3000);
    assert_eq!(segs[1].filesz, 0x800);
    assert_eq!(segs[1].memsz, 0x5000);
    assert_eq!(k.segment_data(&segs[1]), &t.loads[1].data[..]);
    // A foreign segment gives an empty slice, not a panic.
    let bogus = Segment {
        file_offset: usize::MAX,
        ..segs[0]
    };
    assert!(k.segment_data(&bogus).is_empty());
    assert_eq!(k.elf(), &bytes[..]);
}

#[test]
fn xtf_style_defaults() {
    let k = parse_ok(&TestElf::xtf().build());
    let i = k.info();
    assert_eq!(i.virt_base, 0);
    assert_eq!(i.paddr_offset, 0);
    assert_eq!(i.entry, 0x1_0000, "entry defaults to e_entry");
    assert_eq!((i.virt_kstart, i.virt_kend), (0x1_0000, 0x1_3000));
    assert_eq!(i.hypercall_page, Some(0x1_1000));
    assert_eq!(i.guest_os, "XTF");
    assert!(!i.has_supported_features_note);
    assert!(i.dom0_capable());
    assert_eq!(k.segments()[0].vaddr, 0x1_0000);
}

#[test]
fn paddr_offset_moves_kernel() {
    // Old-style: p_paddr holds virtual addresses, PADDR_OFFSET = VIRT_BASE.
    let mut t = TestElf::linux().with_note(xnum(N_PADDR_OFFSET, VIRT_BASE));
    for l in &mut t.loads {
        l.paddr = l.paddr.wrapping_add(VIRT_BASE);
    }
    let k = parse_ok(&t.build());
    assert_eq!(k.info().virt_kstart, KSTART);
    assert_eq!(k.segments()[1].vaddr, KSTART + 0x3000);

    let e = parse_err(&TestElf::linux().without_note(N_VIRT_BASE).build());
    assert_eq!(e, LoadError::PaddrOffsetWithoutVirtBase);
}

#[test]
fn missing_notes() {
    let e = parse_err(
        &TestElf {
            notes: vec![],
            ..TestElf::linux()
        }
        .build(),
    );
    assert_eq!(e, LoadError::NotXenKernel);
    assert_eq!(e.to_string(), "not a Xen PV kernel (no Xen ELF notes)");
    // Only non-Xen notes.
    let gnu = Note {
        owner: b"GNU\0",
        ty: 3,
        desc: vec![1, 2, 3, 4],
    };
    let e = parse_err(
        &TestElf {
            notes: vec![gnu],
            ..TestElf::linux()
        }
        .build(),
    );
    assert_eq!(e, LoadError::NotXenKernel);
}

#[test]
fn notes_from_section_fallback() {
    for place in [NotePlace::Section, NotePlace::ZeroOffsetSegmentAndSection] {
        let k = parse_ok(
            &TestElf {
                place,
                ..TestElf::linux()
            }
            .build(),
        );
        assert!(k.info().notes_from_sections);
        assert_eq!(k.info().entry, KSTART + 0x40);
    }
}

#[test]
fn bad_xen_version() {
    let e = parse_err(
        &TestElf::linux()
            .with_note(xstr(N_XEN_VERSION, "xen-2.0"))
            .build(),
    );
    assert_eq!(e, LoadError::BadXenVersion("xen-2.0".to_string()));
    let e = parse_err(&TestElf::linux().without_note(N_XEN_VERSION).build());
    assert_eq!(e, LoadError::BadXenVersion(String::new()));
    // A longer version string with the right prefix is fine.
    parse_ok(
        &TestElf::linux()
            .with_note(xstr(N_XEN_VERSION, "xen-3.0.4"))
            .build(),
    );
}

#[test]
fn loader_and_guest_os_rule() {
    // Either LOADER=generic* or GUEST_OS=linux* suffices.
    parse_ok(&TestElf::linux().without_note(N_LOADER).build());
    parse_ok(
        &TestElf::linux()
            .with_note(xstr(N_GUEST_OS, "FreeBSD"))
            .build(),
    );
    parse_ok(
        &TestElf::linux()
            .with_note(xstr(N_LOADER, "bogus"))
            .with_note(xstr(N_GUEST_OS, "linux-6.1"))
            .build(),
    );
    let e = parse_err(
        &TestElf::linux()
            .with_note(xstr(N_LOADER, "bogus"))
            .with_note(xstr(N_GUEST_OS, "NetBSD"))
            .build(),
    );
    assert_eq!(
        e,
        LoadError::UnsupportedLoader {
            loader: "bogus".into(),
            guest_os: "NetBSD".into()
        }
    );
    let e = parse_err(
        &TestElf::linux()
            .without_note(N_LOADER)
            .without_note(N_GUEST_OS)
            .build(),
    );
    assert!(matches!(e, LoadError::UnsupportedLoader { .. }));
}

#[test]
fn entry_must_be_inside_kernel() {
    for entry in [KSTART - 1, KSTART + 0x8000, KSTART + 0x10_0000, 0] {
        let e = parse_err(&TestElf::linux().with_note(xnum(N_ENTRY, entry)).build());
        assert_eq!(
            e,
            LoadError::EntryOutsideKernel {
                entry,
                virt_kstart: KSTART,
                virt_kend: KSTART + 0x8000
            }
        );
    }
    // e_entry is used without an ENTRY note, and checked the same way.
    let t = TestElf {
        entry: 0x1234,
        ..TestElf::linux().without_note(N_ENTRY)
    };
    assert!(matches!(
        parse_err(&t.build()),
        LoadError::EntryOutsideKernel { .. }
    ));
    // 4-byte numeric descriptors are accepted too.
    let k = parse_ok(&TestElf::xtf().with_note(xnum32(N_ENTRY, 0x1_0010)).build());
    assert_eq!(k.info().entry, 0x1_0010);
}

#[test]
fn virt_base_above_kernel() {
    // PADDR_OFFSET above the lowest p_paddr puts the kernel below VIRT_BASE.
    let e = parse_err(
        &TestElf::linux()
            .with_note(xnum(N_PADDR_OFFSET, PHYS_START + 0x1000))
            .build(),
    );
    assert_eq!(
        e,
        LoadError::VirtBaseAboveKernel {
            virt_base: VIRT_BASE,
            virt_kstart: VIRT_BASE - 0x1000
        }
    );
}

#[test]
fn hypercall_page_must_be_inside_kernel() {
    for va in [
        KSTART - 0x1000,
        KSTART + 0x8000,
        KSTART + 0x7001,
        u64::MAX - 5,
    ] {
        let e = parse_err(
            &TestElf::linux()
                .with_note(xnum(N_HYPERCALL_PAGE, va))
                .build(),
        );
        assert!(
            matches!(e, LoadError::HypercallPageOutsideKernel { va: v, .. } if v == va),
            "{va:#x}: {e}"
        );
    }
    // The last page of the kernel is fine.
    parse_ok(
        &TestElf::linux()
            .with_note(xnum(N_HYPERCALL_PAGE, KSTART + 0x7000))
            .build(),
    );
}

#[test]
fn init_p2m_must_not_overlap_kernel() {
    let e = parse_err(
        &TestElf::linux()
            .with_note(xnum(N_INIT_P2M, KSTART + 0x2000))
            .build(),
    );
    assert!(matches!(e, LoadError::P2mInsideKernel { .. }));
}

#[test]
fn required_feature_reporting() {
    let k = parse_ok(&TestElf::linux().build());
    let missing = k
        .unsupported_required(0)
        .expect("writable_page_tables is required");
    assert_eq!(missing, Feature(0));
    assert_eq!(missing.name(), Some("writable_page_tables"));
    assert_eq!(missing.to_string(), "writable_page_tables (XENFEAT bit 0)");
    assert_eq!(k.unsupported_required(1), None);

    let k = parse_ok(
        &TestElf::linux()
            .with_note(xstr(
                N_FEATURES,
                "!dom0|!auto_translated_physmap|hvm_pirqs|some_future_thing",
            ))
            .build(),
    );
    assert_eq!(k.info().features_required, 1 << 11 | 1 << 2);
    assert_eq!(k.unsupported_required(1 << 11), Some(Feature(2)));
    assert_eq!(k.unsupported_required(1 << 2 | 1 << 11), None);
    assert_ne!(k.info().features_supported & 1 << 10, 0);

    let e = parse_err(
        &TestElf::linux()
            .with_note(xstr(N_FEATURES, "!frobnicate"))
            .build(),
    );
    assert_eq!(e, LoadError::UnknownRequiredFeature("frobnicate".into()));
    assert_eq!(feature_by_name("dom0"), Some(Feature(11)));
    assert_eq!(feature_by_name("nope"), None);

    // SUPPORTED_FEATURES without dom0: not a dom0 kernel.
    let k = parse_ok(
        &TestElf::linux()
            .with_note(xnum32(N_SUPPORTED_FEATURES, 1))
            .build(),
    );
    assert!(!k.info().dom0_capable());
}

#[test]
fn bad_notes() {
    // A 3-byte numeric descriptor.
    let n = Note {
        owner: b"Xen\0",
        ty: N_ENTRY,
        desc: vec![1, 2, 3],
    };
    assert!(matches!(
        parse_err(&TestElf::linux().with_note(n).build()),
        LoadError::BadNote {
            note_type: N_ENTRY,
            ..
        }
    ));
    // A note whose descriptor size runs past the note area.
    let t = TestElf::linux();
    let mut f = t.build();
    let notes_off = 64 + 56 * 3;
    f[notes_off + 4..notes_off + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    assert!(matches!(parse_err(&f), LoadError::BadNote { .. }));
    // A string without NUL is read to the end of its descriptor.
    let n = Note {
        owner: b"Xen\0",
        ty: N_GUEST_OS,
        desc: b"linux".to_vec(),
    };
    assert_eq!(
        parse_ok(&TestElf::linux().with_note(n).build())
            .info()
            .guest_os,
        "linux"
    );
    // Owner "Xen" without a NUL terminator also counts (namesz 3).
    let mut t = TestElf::linux();
    for n in &mut t.notes {
        n.owner = b"Xen";
    }
    parse_ok(&t.build());
}

#[test]
fn header_rejections() {
    let mut t = TestElf::linux();
    t.class = 1;
    assert_eq!(parse_err(&t.build()), LoadError::Elf32);
    assert!(parse_err(&t.build()).to_string().contains("32-bit"));
    let mut t = TestElf::linux();
    t.machine = 3;
    assert_eq!(
        parse_err(&t.build()),
        LoadError::ElfWrongMachine { machine: 3 }
    );
    let mut t = TestElf::linux();
    t.e_type = 3;
    assert_eq!(
        parse_err(&t.build()),
        LoadError::ElfNotExecutable { e_type: 3 }
    );
    let mut f = TestElf::linux().build();
    f[5] = 2;
    assert!(matches!(parse_err(&f), LoadError::BadElfHeader(_)));
    let mut f = TestElf::linux().build();
    f[0x36] = 40; // phentsize < 56
    assert!(matches!(parse_err(&f), LoadError::BadElfHeader(_)));
    let t = TestElf {
        loads: vec![],
        ..TestElf::linux()
    };
    assert_eq!(parse_err(&t.build()), LoadError::NoLoadableSegments);
    // A PT_LOAD with no R/W/X flag is not loadable (as in Xen).
    let mut t = TestElf::xtf();
    t.loads[0].flags = 0;
    assert_eq!(parse_err(&t.build()), LoadError::NoLoadableSegments);
}

#[test]
fn overflowing_program_headers() {
    let base = TestElf::linux().build();
    // p_offset near u64::MAX.
    let mut f = base.clone();
    set_phdr_u64(&mut f, 0, 8, u64::MAX - 10);
    let e = parse_err(&f);
    assert!(
        matches!(
            e,
            LoadError::Truncated {
                what: "program header",
                index: Some(0),
                ..
            }
        ),
        "{e}"
    );
    assert!(e
        .to_string()
        .starts_with("kernel image truncated: program header 0 extends past end of file"));
    // Huge p_filesz (and p_memsz so filesz <= memsz).
    let mut f = base.clone();
    set_phdr_u64(&mut f, 1, 32, u64::MAX);
    set_phdr_u64(&mut f, 1, 40, u64::MAX);
    assert!(matches!(
        parse_err(&f),
        LoadError::BadProgramHeader { index: 1, .. }
    ));
    let mut f = base.clone();
    set_phdr_u64(&mut f, 1, 32, 1 << 40);
    set_phdr_u64(&mut f, 1, 40, 1 << 41);
    assert!(matches!(
        parse_err(&f),
        LoadError::Truncated { index: Some(1), .. }
    ));
    // p_filesz > p_memsz.
    let mut f = base.clone();
    set_phdr_u64(&mut f, 1, 40, 0x10);
    assert!(matches!(
        parse_err(&f),
        LoadError::BadProgramHeader { index: 1, .. }
    ));
    // p_paddr + p_memsz overflows.
    let mut f = base.clone();
    set_phdr_u64(&mut f, 1, 24, u64::MAX - 0x100);
    assert!(matches!(
        parse_err(&f),
        LoadError::BadProgramHeader { index: 1, .. }
    ));
    // Kernel VAs wrapping the address space.
    let mut f = base.clone();
    set_phdr_u64(&mut f, 1, 24, 0x7fff_ffff_0000);
    let e = parse_err(&f);
    assert!(
        matches!(
            e,
            LoadError::BadKernelRange { .. }
                | LoadError::EntryOutsideKernel { .. }
                | LoadError::HypercallPageOutsideKernel { .. }
        ),
        "{e}"
    );
    // Program header table offset / count beyond the file.
    let mut f = base.clone();
    f[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        parse_err(&f),
        LoadError::Truncated {
            what: "program header table",
            ..
        }
    ));
    let mut f = base.clone();
    f[0x38..0x3A].copy_from_slice(&0xffffu16.to_le_bytes());
    assert!(matches!(parse_err(&f), LoadError::Truncated { .. }));
    let mut f = base.clone();
    f[0x28..0x30].copy_from_slice(&(u64::MAX - 63).to_le_bytes());
    assert!(matches!(
        parse_err(&f),
        LoadError::Truncated {
            what: "section header table",
            ..
        }
    ));
}

#[test]
fn truncated_at_every_length() {
    for t in [
        TestElf::linux(),
        TestElf::xtf(),
        TestElf {
            place: NotePlace::Section,
            ..TestElf::linux()
        },
    ] {
        let full = t.build();
        parse_ok(&full);
        for len in 0..full.len() {
            assert!(parse(&full[..len], &lim()).is_err(), "len {len} parsed");
        }
    }
}

/// xorshift64*, deterministic garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let prefixes: [&[u8]; 7] = [
        b"",
        b"\x7fELF",
        b"\x7fELF\x02\x01\x01",
        &[0x1f, 0x8b, 8, 0],
        &[0xfd, b'7', b'z', b'X', b'Z', 0],
        &[0x02, 0x21, 0x4c, 0x18],
        &[0x28, 0xb5, 0x2f, 0xfd],
    ];
    for round in 0..400 {
        let len = (rng.next() % 2048) as usize;
        let mut data = prefixes[round % prefixes.len()].to_vec();
        data.extend(rng.bytes(len));
        let _ = parse(&data, &lim());
        // Also as a bzImage payload.
        let _ = parse(&bzimage(&data, 1, 0x020f), &lim());
    }
    assert!(matches!(parse_err(b""), LoadError::UnknownFormat { .. }));
    assert!(matches!(
        parse_err(b"hello world"),
        LoadError::UnknownFormat { .. }
    ));
}

#[test]
fn mutated_images_never_panic() {
    let mut rng = Rng(42);
    let base = TestElf::linux().build();
    for _ in 0..3000 {
        let mut f = base.clone();
        for _ in 0..1 + rng.next() % 4 {
            // Bias mutations towards the headers and notes, where the parsing happens.
            let span = if rng.next() & 3 == 0 { f.len() } else { 0x300 };
            let pos = (rng.next() as usize) % span;
            f[pos] = rng.next() as u8;
        }
        let _ = parse(&f, &lim());
    }
}

#[test]
fn raw_elf_over_limit() {
    let f = TestElf::linux().build();
    let small = Limits {
        max_image_bytes: f.len() - 1,
    };
    assert_eq!(
        parse(&f, &small).err(),
        Some(LoadError::ImageTooLarge {
            len: f.len(),
            limit: f.len() - 1
        })
    );
    let exact = Limits {
        max_image_bytes: f.len(),
    };
    assert!(parse(&f, &exact).is_ok());
}

// ---------------------------------------------------------------------------------------------
// bzImage and compression

const PAYLOAD_OFFSET: usize = 0x1c0;

/// A fake bzImage: setup sectors with the header, then protected-mode code whose
/// `PAYLOAD_OFFSET` bytes of filler precede the payload, then a few trailing bytes.
fn bzimage(payload: &[u8], setup_sects: u8, version: u16) -> Vec<u8> {
    let sects = if setup_sects == 0 {
        4
    } else {
        usize::from(setup_sects)
    };
    let pm_start = (sects + 1) * 512;
    let mut f = vec![0u8; pm_start + PAYLOAD_OFFSET];
    f[0x1f1] = setup_sects;
    f[0x1fe] = 0x55;
    f[0x1ff] = 0xaa;
    f[0x202..0x206].copy_from_slice(b"HdrS");
    f[0x206..0x208].copy_from_slice(&version.to_le_bytes());
    f[0x248..0x24c].copy_from_slice(&(PAYLOAD_OFFSET as u32).to_le_bytes());
    f[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(payload);
    f.extend_from_slice(&[0xcc; 64]);
    f
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .filename("vmlinux.bin")
        .comment("test")
        .extra(vec![1, 2, 3])
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn size_append(mut v: Vec<u8>, len: usize) -> Vec<u8> {
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v
}

fn xz(data: &[u8]) -> Vec<u8> {
    use xz2::stream::{Check, Filters, LzmaOptions, Stream};
    let mut opts = LzmaOptions::new_preset(6).expect("xz opts");
    opts.dict_size(1 << 20);
    let mut filters = Filters::new();
    filters.x86();
    filters.lzma2(&opts);
    let stream = Stream::new_stream_encoder(&filters, Check::Crc32).expect("xz stream");
    let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
    enc.write_all(data).expect("xz");
    size_append(enc.finish().expect("xz"), data.len())
}

/// LZ4 legacy frame, as `lz4 -l`: magic, then per 8 MiB chunk a u32 size and a block.
fn lz4_legacy(data: &[u8]) -> Vec<u8> {
    let mut out = 0x184C_2102u32.to_le_bytes().to_vec();
    for chunk in data.chunks(8 << 20) {
        let block = lz4_flex::block::compress(chunk);
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(&block);
    }
    size_append(out, data.len())
}

fn zstd(data: &[u8]) -> Vec<u8> {
    let c = ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest);
    size_append(c, data.len())
}

type Compressor = fn(&[u8]) -> Vec<u8>;

fn compressors() -> [(Compression, Compressor); 4] {
    [
        (Compression::Gzip, gzip),
        (Compression::Xz, xz),
        (Compression::Lz4, lz4_legacy),
        (Compression::Zstd, zstd),
    ]
}

#[test]
fn bzimage_every_compression() {
    let elf = TestElf::linux().build();
    for (c, compress) in compressors() {
        let payload = compress(&elf);
        for sects in [0u8, 1, 27] {
            let k = parse_ok(&bzimage(&payload, sects, 0x020f));
            assert_eq!(k.format(), ImageFormat::BzImage { compression: c });
            assert_eq!(k.elf(), &elf[..], "{c:?}");
            assert_eq!(k.info().entry, KSTART + 0x40);
        }
        // A bare compressed vmlinux, as Xen also accepts.
        let k = parse_ok(&payload);
        assert_eq!(k.format(), ImageFormat::Compressed { compression: c });
        assert_eq!(k.elf(), &elf[..]);
    }
    // Uncompressed payload.
    let k = parse_ok(&bzimage(&elf, 2, 0x0208));
    assert_eq!(
        k.format(),
        ImageFormat::BzImage {
            compression: Compression::None
        }
    );
}

#[test]
fn bzimage_header_errors() {
    let elf = TestElf::linux().build();
    let payload = gzip(&elf);
    assert_eq!(
        parse_err(&bzimage(&payload, 1, 0x0207)),
        LoadError::BzImageTooOld { version: 0x0207 }
    );
    assert!(parse_err(&bzimage(&payload, 1, 0x0206))
        .to_string()
        .contains("2.06"));
    // payload_length past the end.
    let mut f = bzimage(&payload, 1, 0x020f);
    f[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        parse_err(&f),
        LoadError::BzImagePayloadOutOfBounds { .. }
    ));
    let mut f = bzimage(&payload, 1, 0x020f);
    f[0x248..0x24c].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        parse_err(&f),
        LoadError::BzImagePayloadOutOfBounds { .. }
    ));
    // Header cut short.
    let f = bzimage(&payload, 1, 0x020f);
    for len in 0x206..0x250 {
        assert!(parse(&f[..len], &lim()).is_err());
    }
    // Payload not an ELF.
    let junk = gzip(b"this is not an elf file at all");
    assert_eq!(
        parse_err(&bzimage(&junk, 1, 0x020f)),
        LoadError::PayloadNotElf {
            compression: Compression::Gzip
        }
    );
}

#[test]
fn bzimage_unknown_compression() {
    let cases: [(&[u8], &str); 5] = [
        (b"BZh91AY&SY....", "bzip2"),
        (&[0x5d, 0, 0, 0x80, 0, 0xff, 0xff], "lzma"),
        (&[0x89, b'L', b'Z', b'O', 0, 0x0d, 0x0a, 0x1a, 0x0a], "lzo"),
        (
            &[0x04, 0x22, 0x4d, 0x18, 0x64, 0x40],
            "lz4 frame format (Linux uses the legacy lz4 format)",
        ),
        (&[0x1f, 0x9e, 0, 0], "old-style gzip (1f 9e)"),
    ];
    for (payload, name) in cases {
        let e = parse_err(&bzimage(payload, 1, 0x020f));
        assert_eq!(e, LoadError::UnsupportedCompression(name));
        assert!(e.to_string().starts_with("Unsupported compression: "));
    }
    assert_eq!(
        parse_err(&bzimage(b"BZh9", 1, 0x020f)).to_string(),
        "Unsupported compression: bzip2 (rebuild the kernel with gzip, xz, lz4 or zstd)"
    );
    let e = parse_err(&bzimage(&[0xde, 0xad, 0xbe, 0xef, 1, 2], 1, 0x020f));
    assert!(matches!(
        e,
        LoadError::UnknownFormat {
            first_bytes: [0xde, 0xad, 0xbe, 0xef],
            ..
        }
    ));
}

#[test]
fn corrupt_payloads() {
    let elf = TestElf::linux().build();
    for (c, compress) in compressors() {
        let payload = compress(&elf);
        // Truncated inside the stream (with the header's payload_length matching).
        for cut in [payload.len() / 3, payload.len() / 2, payload.len() - 9] {
            let e = parse_err(&bzimage(&payload[..cut], 1, 0x020f));
            assert!(
                matches!(e, LoadError::Decompress { compression, .. } if compression == c),
                "{c:?} cut at {cut}: {e}"
            );
        }
        // Random byte flips anywhere: an error or (if the flip hit slack) a result, never a
        // panic.
        let mut rng = Rng(7 + c as u64);
        for _ in 0..200 {
            let mut p = payload.clone();
            let pos = (rng.next() as usize) % p.len();
            p[pos] ^= 1 << (rng.next() % 8);
            let _ = parse(&bzimage(&p, 1, 0x020f), &lim());
        }
    }
    // Checksummed formats detect a flipped data byte.
    for (c, compress) in [
        (Compression::Gzip, gzip as Compressor),
        (Compression::Xz, xz),
    ] {
        let mut p = compress(&elf);
        let mid = p.len() / 2;
        p[mid] ^= 0x55;
        let e = parse_err(&bzimage(&p, 1, 0x020f));
        assert!(
            matches!(e, LoadError::Decompress { compression, .. } if compression == c),
            "{e}"
        );
        assert!(e
            .to_string()
            .starts_with(&alloc::format!("{} payload corrupt: ", c.name())));
    }
    // lz4: a chunk size pointing past the end.
    let mut p = lz4_legacy(&elf);
    p[4..8].copy_from_slice(&0x7fff_0000u32.to_le_bytes());
    assert!(matches!(
        parse_err(&bzimage(&p, 1, 0x020f)),
        LoadError::Decompress { .. }
    ));
    // lz4: the size trailer must match (catches truncation at a chunk boundary).
    let mut p = lz4_legacy(&elf);
    let n = p.len();
    p[n - 4..].copy_from_slice(&1u32.to_le_bytes());
    assert!(matches!(
        parse_err(&bzimage(&p, 1, 0x020f)),
        LoadError::Decompress { .. }
    ));
    // gzip: header CRC (FHCRC) is checked.
    let mut g = gzip(&elf);
    g[3] |= 1 << 1; // claim FHCRC: the deflate stream's first bytes become a bogus CRC
    assert!(matches!(parse_err(&g), LoadError::Decompress { .. }));
}

/// A payload that inflates beyond the limit is stopped while decompressing.
#[test]
fn decompression_bomb() {
    let mut big = TestElf::linux().build();
    big.resize(8 << 20, 0);
    let limit = Limits {
        max_image_bytes: 1 << 20,
    };
    for (c, compress) in compressors() {
        let payload = compress(&big);
        assert!(payload.len() < 1 << 20, "{c:?} compresses zeros");
        let e = parse(&bzimage(&payload, 1, 0x020f), &limit).err();
        assert_eq!(
            e,
            Some(LoadError::DecompressedTooLarge {
                compression: c,
                limit: 1 << 20
            })
        );
        assert_eq!(
            e.map(|e| e.to_string()).unwrap_or_default(),
            alloc::format!(
                "decompressed kernel exceeds 1 MiB limit ({} payload)",
                c.name()
            )
        );
    }
}

/// The limit is exact: a payload decompressing to exactly the limit is accepted.
#[test]
fn decompression_limit_is_exact() {
    let elf = TestElf::linux().build();
    for (c, compress) in compressors() {
        let payload = compress(&elf);
        let exact = Limits {
            max_image_bytes: elf.len(),
        };
        let less = Limits {
            max_image_bytes: elf.len() - 1,
        };
        assert!(parse(&payload, &exact).is_ok(), "{c:?}");
        assert_eq!(
            parse(&payload, &less).err(),
            Some(LoadError::DecompressedTooLarge {
                compression: c,
                limit: elf.len() - 1
            })
        );
    }
}

/// Tiny limits (smaller than any decoder's initial buffer) are errors, never panics.
#[test]
fn tiny_limits() {
    let elf = TestElf::linux().build();
    for max_image_bytes in [0, 1, 100, 4095, 4096, 4097] {
        let l = Limits { max_image_bytes };
        assert!(matches!(
            parse(&elf, &l),
            Err(LoadError::ImageTooLarge { .. })
        ));
        for (c, compress) in compressors() {
            let e = parse(&compress(&elf), &l).err();
            assert_eq!(
                e,
                Some(LoadError::DecompressedTooLarge {
                    compression: c,
                    limit: max_image_bytes
                })
            );
        }
    }
}

#[test]
fn lz4_multi_chunk_and_concatenated_magic() {
    // Three chunks (8 MiB + 8 MiB + rest), with a repeated magic between chunks.
    let mut big = TestElf::linux().build();
    big.resize((16 << 20) + 12345, 0x90);
    let mut out = 0x184C_2102u32.to_le_bytes().to_vec();
    for (i, chunk) in big.chunks(8 << 20).enumerate() {
        if i == 1 {
            out.extend_from_slice(&0x184C_2102u32.to_le_bytes());
        }
        let block = lz4_flex::block::compress(chunk);
        out.extend_from_slice(&(block.len() as u32).to_le_bytes());
        out.extend_from_slice(&block);
    }
    // Without the size trailer.
    let k = parse_ok(&bzimage(&out, 1, 0x020f));
    assert_eq!(k.elf().len(), big.len());
    assert!(k.elf() == &big[..]);
}

/// Writes fuzz seeds (compact valid images in every container format) into the directory
/// named by XENOLITH_FUZZ_SEEDS: `XENOLITH_FUZZ_SEEDS=fuzz/seeds/loader cargo test -p
/// xenolith-core write_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("XENOLITH_FUZZ_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("seed dir");
    let linux = TestElf::linux().compact().build();
    let mut seeds: Vec<(String, Vec<u8>)> = vec![
        ("linux.elf".into(), linux.clone()),
        ("xtf.elf".into(), TestElf::xtf().compact().build()),
        (
            "linux-sections.elf".into(),
            TestElf {
                place: NotePlace::Section,
                ..TestElf::linux().compact()
            }
            .build(),
        ),
        ("bz-none".into(), bzimage(&linux, 1, 0x020f)),
    ];
    for (c, compress) in compressors() {
        seeds.push((
            alloc::format!("bz-{}", c.name()),
            bzimage(&compress(&linux), 1, 0x020f),
        ));
    }
    for (name, bytes) in seeds {
        assert!(parse(&bytes, &lim()).is_ok(), "{name}");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    }
}
