//! Test kernel `debugreg`: set_debugreg/get_debugreg and MOV DR: values, refusals, and the #DBs they arm.
//!
//! Command line: none needed (ignored). Checked (Xen 4.17, pv/misc-hypercalls.c
//! set_debugreg, x86emul_read_dr):
//!
//! * boot values: DR0-3 0, DR6 0xffff0ff0, DR7 0x400; with CR4.DE clear DR4
//!   and DR5 alias DR6 and DR7 (get and set); with CR4.DE set both give
//!   -ENODEV; DR8 and up -ENODEV;
//! * DR0-3 take any address below 0x0000800000000000 or from
//!   0xffff880000000000 up, and refuse with -EPERM the hypervisor range
//!   0xffff800000000000-0xffff87ffffffffff and non-canonical addresses,
//!   leaving the register unchanged;
//! * DR6: upper 32 bits set -> -EINVAL; the reserved bits are forced (bits
//!   4-11 and 16-31 to 1, bit 12 to 0): 0 reads 0xffff0ff0, 0xffffffff reads
//!   0xffffefff;
//! * DR7: upper 32 bits -> -EINVAL; GD (bit 13) -> -EPERM; reserved bits
//!   11, 12, 14, 15 are dropped and bit 10 forced: 0xd800 reads 0x400; an
//!   I/O breakpoint (R/W = 10) needs CR4.DE (-EPERM without);
//! * MOV to/from DR0/DR6/DR7 is emulated with the same rules (#GP(0) for a
//!   refused value);
//! * armed breakpoints fire in guest kernel mode as #DB (no error code):
//!   execute (DR0 with L0, DR1 with G1) at the instruction; data write (DR2)
//!   and read/write (DR3) after the access; DR6 shows B0-B3, stays set until
//!   the guest clears it (bits accumulate), and TF single-step reports BS
//!   with RIP after the next instruction, TF set in the frame's RFLAGS and
//!   clear in the handler's. With DR7 = 0 nothing fires.
//!
//! Not tested: `int1` (icebp) — QEMU 7.2 TCG raises #UD for it instead of
//! #DB.
#![no_std]
#![no_main]

use core::arch::global_asm;

use xen_abi::trap::TI_MASK_EVENTS;
use xen_abi::Errno;
use xenolith_guests::rawtrap::{self, reg, RawTrap};
use xenolith_guests::traps::Fault;
use xenolith_guests::{
    check, check_eq, cpu, insn, println, test_main, traps, Boot, Failures, Verdict,
};

test_main!(debugreg);

const DB: u8 = 1;
const DR6_INIT: u64 = 0xffff_0ff0;
const DR7_INIT: u64 = 0x400;
const ENODEV: i64 = Errno::ENODEV.as_ret();
const TF: u64 = 1 << 8;
const CR4_DE: u64 = 1 << 3;

const GP0: Fault = Fault {
    vector: 13,
    error_code: 0,
};

/// A word to watch with data breakpoints.
#[repr(C, align(8))]
struct Watched(u64);
static mut WATCHED: Watched = Watched(0);

global_asm!(
    ".pushsection .text.dbg, \"ax\", @progbits",
    // dbg_exec: the breakpoint target is dbg_exec_at.
    "dbg_exec:",
    "mov r12, rsp",
    "nop",
    "dbg_exec_at: nop",
    "nop",
    "ret",
    // dbg_write(addr): a store to addr, then dbg_write_after.
    "dbg_write:",
    "mov r12, rsp",
    "mov qword ptr [rdi], 5",
    "dbg_write_after: nop",
    "ret",
    // dbg_read(addr): a load from addr.
    "dbg_read:",
    "mov r12, rsp",
    "mov rax, qword ptr [rdi]",
    "dbg_read_after: nop",
    "ret",
    // dbg_step: set TF; the trap comes after the instruction after POPF.
    "dbg_step:",
    "mov r12, rsp",
    "pushfq",
    "or qword ptr [rsp], {tf}",
    "popfq",
    "nop",
    "dbg_step_after: nop",
    "ud2",
    ".popsection",
    tf = const TF,
);

extern "C" {
    fn dbg_exec(a0: u64, a1: u64, a2: u64) -> u64;
    fn dbg_write(a0: u64, a1: u64, a2: u64) -> u64;
    fn dbg_read(a0: u64, a1: u64, a2: u64) -> u64;
    fn dbg_step(a0: u64, a1: u64, a2: u64) -> u64;
    static dbg_exec_at: u8;
    static dbg_write_after: u8;
    static dbg_read_after: u8;
    static dbg_step_after: u8;
}

fn get(reg: u64) -> i64 {
    cpu::get_debugreg(reg)
}

fn set(reg: u64, value: u64) -> Result<u64, Errno> {
    // SAFETY: breakpoints armed here only fire inside the raw-captured
    // routines; every other test leaves DR7 disarmed.
    unsafe { cpu::set_debugreg(reg, value) }
}

fn debugreg(_b: &Boot) -> Verdict {
    let mut t = Failures::new();
    boot_values(&mut t);
    address_checks(&mut t);
    dr6_dr7(&mut t);
    mov_dr(&mut t);
    breakpoints(&mut t);
    check_eq!(t, set(7, 0), Ok(0), "set_debugreg(7, 0) at the end");
    check_eq!(t, set(6, 0), Ok(0), "set_debugreg(6, 0) at the end");
    t.verdict()
}

fn boot_values(t: &mut Failures) {
    println!("-- boot values");
    for r in 0..4 {
        check_eq!(t, get(r), 0, "get_debugreg({r}) at boot");
    }
    check_eq!(t, get(6) as u64, DR6_INIT, "get_debugreg(6) at boot");
    check_eq!(t, get(7) as u64, DR7_INIT, "get_debugreg(7) at boot");
    check_eq!(
        t,
        get(4) as u64,
        DR6_INIT,
        "get_debugreg(4) (= DR6, CR4.DE clear)"
    );
    check_eq!(
        t,
        get(5) as u64,
        DR7_INIT,
        "get_debugreg(5) (= DR7, CR4.DE clear)"
    );
    for r in [8, 9, 15, 0x100] {
        check_eq!(t, get(r), ENODEV, "get_debugreg({r})");
        check_eq!(t, set(r, 0), Err(Errno::ENODEV), "set_debugreg({r}, 0)");
    }
}

fn address_checks(t: &mut Failures) {
    println!("-- DR0-3 addresses");
    let kernel = (&raw const dbg_exec_at) as u64;
    let good = [
        0,
        0x1000,
        0x0000_7fff_ffff_fff8,
        0x0000_7fff_ffff_ffff,
        0xffff_8800_0000_0000,
        kernel,
        0xffff_ffff_ffff_f000,
    ];
    let bad = [
        0x0000_8000_0000_0000,
        0x7fff_0000_0000_0000,
        0xffff_7fff_ffff_f000,
        0xffff_8000_0000_0000,
        0xffff_8300_0000_0000,
        0xffff_87ff_ffff_fff8,
    ];
    for r in 0..4 {
        for &v in &good {
            check_eq!(t, set(r, v), Ok(0), "set_debugreg({r}, {v:#x})");
            check_eq!(
                t,
                get(r) as u64,
                v,
                "get_debugreg({r}) after setting {v:#x}"
            );
        }
        let keep = 0x1000 * (r + 1);
        check_eq!(t, set(r, keep), Ok(0), "set_debugreg({r}, {keep:#x})");
        for &v in &bad {
            check_eq!(t, set(r, v), Err(Errno::EPERM), "set_debugreg({r}, {v:#x})");
            check_eq!(
                t,
                get(r) as u64,
                keep,
                "get_debugreg({r}) after refusing {v:#x}"
            );
        }
        check_eq!(t, set(r, 0), Ok(0), "set_debugreg({r}, 0)");
    }
}

fn dr6_dr7(t: &mut Failures) {
    println!("-- DR6/DR7 reserved bits");
    let dr6 = [
        (0u64, DR6_INIT),
        (0xffff_ffff, 0xffff_efff),
        (0xf00f, 0xffff_efff),
        (0x4000, 0xffff_4ff0),
        (0x1, 0xffff_0ff1),
    ];
    for (v, want) in dr6 {
        check_eq!(t, set(6, v), Ok(0), "set_debugreg(6, {v:#x})");
        check_eq!(
            t,
            get(6) as u64,
            want,
            "get_debugreg(6) after setting {v:#x}"
        );
    }
    check_eq!(
        t,
        set(6, 1 << 32),
        Err(Errno::EINVAL),
        "set_debugreg(6, 1 << 32)"
    );
    check_eq!(
        t,
        get(6) as u64,
        0xffff_0ff1,
        "DR6 unchanged by the refused write"
    );
    check_eq!(
        t,
        set(4, 0),
        Ok(0),
        "set_debugreg(4, 0) (= DR6, CR4.DE clear)"
    );
    check_eq!(t, get(6) as u64, DR6_INIT, "DR6 after set_debugreg(4, 0)");

    let dr7 = [
        (0u64, DR7_INIT),
        (0xd800, DR7_INIT),
        (0x0003_0001, 0x0003_0401),
        (0x0000_0008, 0x0000_0408),
    ];
    for (v, want) in dr7 {
        check_eq!(t, set(7, v), Ok(0), "set_debugreg(7, {v:#x})");
        check_eq!(
            t,
            get(7) as u64,
            want,
            "get_debugreg(7) after setting {v:#x}"
        );
    }
    for (v, e) in [
        (0x2000u64, Errno::EPERM),
        (0xffff_ffff, Errno::EPERM),
        (1 << 32, Errno::EINVAL),
        (0x0002_0001, Errno::EPERM),
    ] {
        check_eq!(t, set(7, v), Err(e), "set_debugreg(7, {v:#x})");
    }
    check_eq!(
        t,
        get(7) as u64,
        0x408,
        "DR7 unchanged by the refused writes"
    );
    check_eq!(
        t,
        set(5, 0),
        Ok(0),
        "set_debugreg(5, 0) (= DR7, CR4.DE clear)"
    );
    check_eq!(t, get(7) as u64, DR7_INIT, "DR7 after set_debugreg(5, 0)");

    // With CR4.DE: I/O breakpoints allowed, DR4/DR5 gone.
    let cr4 = insn::read_cr4().unwrap_or(0x660);
    // SAFETY: DE only changes debug-register semantics.
    let r = unsafe { insn::write_cr4(cr4 | CR4_DE) };
    check_eq!(t, r, Ok(()), "MOV CR4 with DE");
    check_eq!(
        t,
        set(7, 0x0002_0001),
        Ok(0),
        "set_debugreg(7, I/O breakpoint) with CR4.DE"
    );
    check_eq!(t, get(7) as u64, 0x0002_0401, "DR7 with an I/O breakpoint");
    check_eq!(t, set(7, 0), Ok(0), "set_debugreg(7, 0)");
    check_eq!(t, get(4), ENODEV, "get_debugreg(4) with CR4.DE");
    check_eq!(t, get(5), ENODEV, "get_debugreg(5) with CR4.DE");
    check_eq!(
        t,
        set(4, 0),
        Err(Errno::ENODEV),
        "set_debugreg(4, 0) with CR4.DE"
    );
    check_eq!(
        t,
        set(5, 0),
        Err(Errno::ENODEV),
        "set_debugreg(5, 0) with CR4.DE"
    );
    // SAFETY: back to the boot value.
    let r = unsafe { insn::write_cr4(cr4) };
    check_eq!(t, r, Ok(()), "MOV CR4 without DE");
}

fn mov_dr(t: &mut Failures) {
    println!("-- MOV DR (emulated)");
    check_eq!(t, insn::read_dr7(), Ok(DR7_INIT), "MOV from DR7");
    check_eq!(t, insn::read_dr6(), Ok(DR6_INIT), "MOV from DR6");
    // SAFETY: (writes) disarmed addresses and DR7 values only.
    unsafe {
        check_eq!(t, insn::write_dr0(0x5000), Ok(()), "MOV to DR0");
        check_eq!(t, get(0), 0x5000, "get_debugreg(0) after MOV to DR0");
        check_eq!(t, insn::read_dr0(), Ok(0x5000), "MOV from DR0");
        check_eq!(
            t,
            insn::write_dr0(0xffff_8300_0000_0000),
            Err(GP0),
            "MOV to DR0 of a hypervisor address"
        );
        check_eq!(t, get(0), 0x5000, "DR0 after the refused MOV");
        check_eq!(t, insn::write_dr7(0x2000), Err(GP0), "MOV to DR7 with GD");
        check_eq!(
            t,
            insn::write_dr7(0xd800),
            Ok(()),
            "MOV to DR7 with reserved bits"
        );
        check_eq!(t, insn::read_dr7(), Ok(DR7_INIT), "DR7 after MOV of 0xd800");
        check_eq!(t, insn::write_dr0(0), Ok(()), "MOV to DR0 (0)");
    }
}

/// Runs `routine(arg)` and expects #DB with RIP `rip`, DR6 `dr6` after.
fn expect_db(
    t: &mut Failures,
    what: &str,
    routine: unsafe extern "C" fn(u64, u64, u64) -> u64,
    arg: u64,
    rip: u64,
    dr6: u64,
) -> Option<RawTrap> {
    // SAFETY: each routine only touches WATCHED and its own stack; the #DB
    // reaches the raw stub.
    let r = unsafe { rawtrap::call(routine, [arg, 0, 0]) };
    let got6 = get(6) as u64;
    let Some(tr) = r.trapped() else {
        t.fail(format_args!("{what}: no #DB"));
        return None;
    };
    println!(
        "{what}: vector {} frame {:x?} DR6 {got6:#x}",
        tr.tag,
        &tr.stack[..7]
    );
    if !check_eq!(t, tr.tag, u64::from(DB), "{what}: vector") {
        return None;
    }
    let f = tr.frame(false);
    check_eq!(
        t,
        tr.rsp,
        RawTrap::expected_rsp(tr.regs[reg::R12], false),
        "{what}: handler RSP (no error code)"
    );
    check_eq!(t, f.rip, rip, "{what}: RIP");
    check_eq!(t, f.cs, 0xe030 | 1 << 32, "{what}: frame CS");
    check_eq!(t, f.rsp, tr.regs[reg::R12], "{what}: frame RSP");
    check_eq!(t, got6, dr6, "{what}: DR6");
    Some(tr)
}

fn breakpoints(t: &mut Failures) {
    println!("-- breakpoints");
    check_eq!(
        t,
        rawtrap::install(&[(DB, TI_MASK_EVENTS)]),
        Ok(0),
        "set_trap_table(#DB raw)"
    );
    let exec_at = (&raw const dbg_exec_at) as u64;
    let watched = (&raw mut WATCHED) as u64;

    // Execute breakpoint, DR0 / L0.
    check_eq!(t, set(0, exec_at), Ok(0), "set_debugreg(0, instruction)");
    check_eq!(t, set(6, 0), Ok(0), "set_debugreg(6, 0)");
    check_eq!(t, set(7, 0x1), Ok(0), "set_debugreg(7, L0 execute)");
    check_eq!(t, get(7) as u64, 0x401, "DR7 with L0");
    expect_db(
        t,
        "DR0 execute breakpoint",
        dbg_exec,
        0,
        exec_at,
        0xffff_0ff1,
    );
    // DR6 keeps B0 until cleared; the next hit adds nothing new.
    expect_db(
        t,
        "DR0 again, DR6 not cleared",
        dbg_exec,
        0,
        exec_at,
        0xffff_0ff1,
    );

    // Execute breakpoint, DR1 / G1.
    check_eq!(t, set(0, 0), Ok(0), "set_debugreg(0, 0)");
    check_eq!(t, set(1, exec_at), Ok(0), "set_debugreg(1, instruction)");
    check_eq!(t, set(6, 0), Ok(0), "set_debugreg(6, 0)");
    check_eq!(t, set(7, 0x8), Ok(0), "set_debugreg(7, G1 execute)");
    expect_db(
        t,
        "DR1 execute breakpoint (G1)",
        dbg_exec,
        0,
        exec_at,
        0xffff_0ff2,
    );

    // Data write breakpoint, DR2: L2, R/W2 = 01 (write), LEN2 = 10 (8 bytes).
    check_eq!(t, set(1, 0), Ok(0), "set_debugreg(1, 0)");
    check_eq!(t, set(2, watched), Ok(0), "set_debugreg(2, data)");
    check_eq!(t, set(6, 0), Ok(0), "set_debugreg(6, 0)");
    check_eq!(
        t,
        set(7, 0x0900_0010),
        Ok(0),
        "set_debugreg(7, L2 write 8 bytes)"
    );
    let after = (&raw const dbg_write_after) as u64;
    expect_db(
        t,
        "DR2 write breakpoint",
        dbg_write,
        watched,
        after,
        0xffff_0ff4,
    );
    // A read does not trigger a write breakpoint.
    // SAFETY: dbg_read only loads WATCHED.
    let r = unsafe { rawtrap::call(dbg_read, [watched, 0, 0]) };
    check!(
        t,
        r.trapped().is_none(),
        "a read hit the DR2 write-only breakpoint: {r:x?}"
    );

    // Data read/write breakpoint, DR3: L3, R/W3 = 11, LEN3 = 10.
    check_eq!(t, set(2, 0), Ok(0), "set_debugreg(2, 0)");
    check_eq!(t, set(3, watched), Ok(0), "set_debugreg(3, data)");
    check_eq!(t, set(6, 0), Ok(0), "set_debugreg(6, 0)");
    check_eq!(
        t,
        set(7, 0xb000_0040),
        Ok(0),
        "set_debugreg(7, L3 read/write 8 bytes)"
    );
    let after = (&raw const dbg_read_after) as u64;
    expect_db(
        t,
        "DR3 read/write breakpoint, read",
        dbg_read,
        watched,
        after,
        0xffff_0ff8,
    );

    // Disarmed: nothing fires.
    check_eq!(t, set(7, 0), Ok(0), "set_debugreg(7, 0)");
    check_eq!(t, set(6, 0), Ok(0), "set_debugreg(6, 0)");
    // SAFETY: plain routines.
    let r = unsafe { rawtrap::call(dbg_read, [watched, 0, 0]) };
    check!(t, r.trapped().is_none(), "#DB with DR7 = 0: {r:x?}");
    // SAFETY: as above.
    let r = unsafe { rawtrap::call(dbg_exec, [0, 0, 0]) };
    check!(t, r.trapped().is_none(), "#DB with DR7 = 0: {r:x?}");
    check_eq!(t, set(3, 0), Ok(0), "set_debugreg(3, 0)");

    // Single step.
    let after = (&raw const dbg_step_after) as u64;
    if let Some(tr) = expect_db(t, "TF single step", dbg_step, 0, after, 0xffff_4ff0) {
        check_eq!(
            t,
            tr.frame(false).rflags & TF,
            TF,
            "single step: TF in the frame RFLAGS"
        );
        check_eq!(t, tr.rflags & TF, 0, "single step: TF at the handler");
    }
    // BS stays; an execute hit adds B0.
    check_eq!(t, set(0, exec_at), Ok(0), "set_debugreg(0, instruction)");
    check_eq!(t, set(7, 0x1), Ok(0), "set_debugreg(7, L0 execute)");
    expect_db(
        t,
        "DR0 hit after a single step, DR6 not cleared",
        dbg_exec,
        0,
        exec_at,
        0xffff_4ff1,
    );
    check_eq!(t, set(7, 0), Ok(0), "set_debugreg(7, 0)");
    check_eq!(t, set(0, 0), Ok(0), "set_debugreg(0, 0)");
    check_eq!(t, traps::install(), Ok(0), "restoring the trap table");
}
