//! Test kernel `swint`: `int $n` from guest kernel mode: delivery by trap-table DPL, #GP otherwise.
//!
//! Command line: none needed (ignored). Xen's IDT gates are DPL 0 except #BP,
//! #OF and 0x80, so `int $n` raises #GP with the IDT bit in the error code;
//! Xen takes the vector from the error code (`ec >> 3`) and, if the guest's
//! trap entry for it has DPL >= 1 (the guest kernel counts as ring 1), skips
//! the instruction and delivers the vector as a software interrupt: no error
//! code, RIP after the `int`. Otherwise the guest gets #GP with that error
//! code at the `int`.
//!
//! QEMU 7.2 TCG bug: in 64-bit mode the #GP of `int $n` carries `n*16+2`
//! instead of `n*8+2`, so Xen reads vector `2n mod 256` and delivers to (or
//! checks the DPL of) *that* entry. Real hardware gives `n*8+2` and vector
//! `n`. The test measures which error code the CPU produces (an `int` to an
//! unregistered vector) and expects Xen's behaviour for it: under this QEMU,
//! `int $0x20` lands in the handler for 0x40. Every entry is registered at
//! both `n` and `2n`, with the same DPL, and the handler reports which one
//! ran.
//!
//! `int $0x80` is special: Xen's IDT gate for it is DPL 3 and its direct
//! path (x86_64/entry.S int80_direct_trap) bounces to trap_ctxt[0x80]
//! without looking at the entry's DPL, so even a DPL-0 entry gets it; with no
//! entry Xen builds #GP(0x402) itself (so no QEMU bug there).
#![no_std]
#![no_main]

use core::arch::global_asm;

use xen_abi::callback::CALLBACKTYPE_EVENT;
use xen_abi::trap::TI_MASK_EVENTS;
use xenolith_guests::rawtrap::{self, reg, RawTrap};
use xenolith_guests::{
    check_eq, cpu, hypercall, println, shared_info, test_main, traps, Boot, Failures, Verdict,
};

test_main!(swint);

const GP: u64 = 13;
const BP: u64 = 3;
const KERNEL_CS: u64 = 0xe030;

// sw_int(target): r12 = RSP, then jump to one of the `int` instructions
// below (each followed by ud2, never reached when the int is delivered).
global_asm!(
    ".pushsection .text.sw, \"ax\", @progbits",
    "sw_int:",
    "mov r12, rsp",
    "mov rcx, 0x5c5c",
    "mov r11, 0x5b5b",
    "jmp rdi",
    "sw_int_20: int 0x20",
    "sw_int_20_end: ud2",
    "sw_int_21: int 0x21",
    "sw_int_21_end: ud2",
    "sw_int_22: int 0x22",
    "sw_int_22_end: ud2",
    "sw_int_31: int 0x31",
    "sw_int_31_end: ud2",
    "sw_int_33: int 0x33",
    "sw_int_33_end: ud2",
    "sw_int_80: int 0x80",
    "sw_int_80_end: ud2",
    "sw_int_3: int 3",
    "sw_int_3_end: ud2",
    ".popsection",
);

extern "C" {
    fn sw_int(target: u64, a1: u64, a2: u64) -> u64;
    static sw_int_20: u8;
    static sw_int_20_end: u8;
    static sw_int_21: u8;
    static sw_int_21_end: u8;
    static sw_int_22: u8;
    static sw_int_22_end: u8;
    static sw_int_31: u8;
    static sw_int_31_end: u8;
    static sw_int_33: u8;
    static sw_int_33_end: u8;
    static sw_int_80: u8;
    static sw_int_80_end: u8;
    static sw_int_3: u8;
    static sw_int_3_end: u8;
}

/// An `int` instruction: its address and the address after it.
#[derive(Clone, Copy)]
struct Int {
    n: u8,
    at: u64,
    end: u64,
}

fn int(n: u8, at: *const u8, end: *const u8) -> Int {
    Int {
        n,
        at: at as u64,
        end: end as u64,
    }
}

/// Runs `int $n` and returns the capture.
fn raise(i: Int) -> Option<RawTrap> {
    // SAFETY: sw_int only loads registers and jumps to an `int` of the list.
    unsafe { rawtrap::call(sw_int, [i.at, 0, 0]) }.trapped()
}

/// The #GP error code the CPU gives `int $n` through a DPL-0 gate.
fn int_gp_code(n: u8, qemu_bug: bool) -> u64 {
    u64::from(n) * if qemu_bug { 16 } else { 8 } + 2
}

/// The vector Xen decodes from that error code.
fn decoded(n: u8, qemu_bug: bool) -> u8 {
    (int_gp_code(n, qemu_bug) >> 3) as u8
}

fn swint(_boot: &Boot) -> Verdict {
    let mut t = Failures::new();
    if shared_info::map(_boot.start_info).is_err() {
        xenolith_guests::error("mapping shared_info failed");
    }
    // SAFETY: the raw stub copes with any frame (only for stray events).
    let r = unsafe {
        hypercall::callback_register(
            CALLBACKTYPE_EVENT,
            0,
            rawtrap::stub_address(rawtrap::TAG_EVENT),
        )
    };
    check_eq!(t, r, Ok(0), "callback_op(register event)");
    // #GP and #BP to raw stubs.
    check_eq!(
        t,
        rawtrap::install(&[(GP as u8, TI_MASK_EVENTS), (BP as u8, 3 | TI_MASK_EVENTS)]),
        Ok(0),
        "set_trap_table(#GP, #BP)"
    );

    let ints = [
        int(0x20, &raw const sw_int_20, &raw const sw_int_20_end),
        int(0x21, &raw const sw_int_21, &raw const sw_int_21_end),
        int(0x22, &raw const sw_int_22, &raw const sw_int_22_end),
        int(0x31, &raw const sw_int_31, &raw const sw_int_31_end),
        int(0x33, &raw const sw_int_33, &raw const sw_int_33_end),
        int(0x80, &raw const sw_int_80, &raw const sw_int_80_end),
        int(3, &raw const sw_int_3, &raw const sw_int_3_end),
    ];
    let [i20, i21, i22, i31, i33, i80, i3] = ints;

    // Which error code does this CPU give? `int $0x31`: neither 0x31 nor
    // 0x62 has an entry, so Xen passes the #GP on with the CPU's code.
    let qemu_bug = match rawtrap::int_error_code_factor() {
        Some(16) => {
            println!(
                "int $n gives #GP(n*16+2): QEMU TCG's wrong IDT error code; Xen decodes vector 2n"
            );
            true
        }
        Some(_) => false,
        None => {
            t.fail(format_args!(
                "int $0x31 (no entry) did not give #GP(0x18a or 0x312)"
            ));
            false
        }
    };
    // The #GP itself, exactly: at the int, error code, frame below RSP.
    expect_gp(&mut t, "int $0x31 (no entry)", i31, qemu_bug);

    // Entries with DPL 3, 1 and 0 at n and at Xen's decoded vector.
    let entries = [(i20, 3u8), (i21, 1), (i22, 0)];
    let mut table = [(0u8, 0u8); 6];
    for (k, &(i, dpl)) in entries.iter().enumerate() {
        table[2 * k] = (i.n, dpl | TI_MASK_EVENTS);
        table[2 * k + 1] = (decoded(i.n, qemu_bug), dpl | TI_MASK_EVENTS);
    }
    check_eq!(
        t,
        rawtrap::install(&table),
        Ok(0),
        "set_trap_table(DPL 3/1/0 entries)"
    );
    expect_delivered(
        &mut t,
        "int $0x20 (entry DPL 3)",
        i20,
        decoded(0x20, qemu_bug),
        1,
        true,
    );
    expect_delivered(
        &mut t,
        "int $0x21 (entry DPL 1)",
        i21,
        decoded(0x21, qemu_bug),
        1,
        true,
    );
    expect_gp(&mut t, "int $0x22 (entry DPL 0)", i22, qemu_bug);
    // An entry at n alone is not used when Xen decodes another vector (QEMU
    // only): 0x33 has a DPL-3 entry, 0x66 none.
    check_eq!(
        t,
        rawtrap::install(&[(0x33, 3 | TI_MASK_EVENTS)]),
        Ok(0),
        "set_trap_table(0x33 DPL 3)"
    );
    if qemu_bug {
        expect_gp(
            &mut t,
            "int $0x33 (entry at 0x33 only, QEMU)",
            i33,
            qemu_bug,
        );
    } else {
        expect_delivered(&mut t, "int $0x33 (entry DPL 3)", i33, 0x33, 1, true);
    }

    // Events: an entry without TI_MASK_EVENTS leaves the mask as it was.
    check_eq!(
        t,
        rawtrap::install(&[(i20.n, 3), (decoded(0x20, qemu_bug), 3)]),
        Ok(0),
        "set_trap_table(0x20 DPL 3 without TI_MASK_EVENTS)"
    );
    // SAFETY: nothing is bound, so unmasking starts no upcall (a stray one
    // would reach the raw stub).
    unsafe { cpu::set_upcall_mask(0) };
    expect_delivered(
        &mut t,
        "int $0x20 (events unmasked, entry not masking)",
        i20,
        decoded(0x20, qemu_bug),
        0,
        false,
    );
    // SAFETY: as above.
    unsafe { cpu::set_upcall_mask(0) };
    check_eq!(
        t,
        rawtrap::install(&[
            (i20.n, 3 | TI_MASK_EVENTS),
            (decoded(0x20, qemu_bug), 3 | TI_MASK_EVENTS)
        ]),
        Ok(0),
        "set_trap_table(0x20 DPL 3)"
    );
    expect_delivered(
        &mut t,
        "int $0x20 (events unmasked, entry masking)",
        i20,
        decoded(0x20, qemu_bug),
        0,
        true,
    );
    // SAFETY: masking is always safe.
    unsafe { cpu::set_upcall_mask(1) };

    // int $0x80: no entry -> #GP(0x402) built by Xen; any entry -> delivered.
    expect_gp_code(&mut t, "int $0x80 (no entry)", i80, 0x402);
    for dpl in [0u8, 1, 3] {
        check_eq!(
            t,
            rawtrap::install(&[(0x80, dpl | TI_MASK_EVENTS)]),
            Ok(0),
            "set_trap_table(0x80 DPL {dpl})"
        );
        println!("-- trap entry 0x80 with DPL {dpl}");
        expect_delivered(&mut t, "int $0x80", i80, 0x80, 1, true);
    }

    // `int $3` (CD 03) goes through Xen's DPL-3 #BP gate: #BP after it.
    expect_delivered(&mut t, "int $3 (CD 03)", i3, BP as u8, 1, true);

    check_eq!(t, traps::install(), Ok(0), "restoring the trap table");
    t.verdict()
}

/// `i` must reach the handler of `vector` as a software interrupt: no error
/// code, RIP after the `int`, kernel CS with the mask before (`mask_saved`)
/// in bits 32-39; at the handler the mask is set iff `entry_masks`.
fn expect_delivered(
    t: &mut Failures,
    what: &str,
    i: Int,
    vector: u8,
    mask_saved: u64,
    entry_masks: bool,
) {
    let Some(tr) = raise(i) else {
        t.fail(format_args!("{what}: no exception"));
        return;
    };
    println!("{what}: handler {:#x}, frame {:x?}", tr.tag, &tr.stack[..7]);
    if !check_eq!(t, tr.tag, u64::from(vector), "{what}: handler reached") {
        return;
    }
    let from = tr.regs[reg::R12];
    check_eq!(
        t,
        tr.rsp,
        RawTrap::expected_rsp(from, false),
        "{what}: handler RSP (no error code)"
    );
    let f = tr.frame(false);
    check_eq!(t, f.rcx, 0x5c5c, "{what}: frame RCX");
    check_eq!(t, f.r11, 0x5b5b, "{what}: frame R11");
    check_eq!(t, f.rip, i.end, "{what}: frame RIP (after the int)");
    check_eq!(t, f.cs, KERNEL_CS | mask_saved << 32, "{what}: frame CS");
    check_eq!(t, f.rsp, from, "{what}: frame RSP");
    check_eq!(t, f.ss, 0xe02b, "{what}: frame SS");
    let expect_mask = if entry_masks { 1 } else { mask_saved };
    check_eq!(
        t,
        tr.upcall_mask,
        expect_mask,
        "{what}: upcall mask at the handler"
    );
}

/// `i` must give #GP with the CPU's IDT error code, at the `int`.
fn expect_gp(t: &mut Failures, what: &str, i: Int, qemu_bug: bool) {
    expect_gp_code(t, what, i, int_gp_code(i.n, qemu_bug));
}

fn expect_gp_code(t: &mut Failures, what: &str, i: Int, code: u64) {
    let Some(tr) = raise(i) else {
        t.fail(format_args!("{what}: no exception"));
        return;
    };
    println!("{what}: handler {:#x}, frame {:x?}", tr.tag, &tr.stack[..8]);
    if !check_eq!(t, tr.tag, GP, "{what}: #GP") {
        return;
    }
    let from = tr.regs[reg::R12];
    check_eq!(
        t,
        tr.rsp,
        RawTrap::expected_rsp(from, true),
        "{what}: handler RSP (with error code)"
    );
    let f = tr.frame(true);
    check_eq!(t, f.error_code.unwrap_or(0), code, "{what}: error code");
    check_eq!(t, f.rip, i.at, "{what}: frame RIP (at the int)");
    check_eq!(t, f.cs, KERNEL_CS | 1 << 32, "{what}: frame CS");
    check_eq!(t, f.rsp, from, "{what}: frame RSP");
}
