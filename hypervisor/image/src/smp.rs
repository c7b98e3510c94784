//! Secondary CPUs: finding them (ACPI MADT), starting them (INIT-SIPI-SIPI into a real-mode
//! trampoline), and the IPIs the hypervisor sends between CPUs (reschedule, TLB shootdown).
//!
//! Invariants: CPU indices are dense, 0 for the boot CPU, in the order CPUs checked in;
//! `online()` only grows. A TLB shootdown is answered by every online CPU before the
//! initiator goes on; CPUs that wait for the domain lock answer while they wait, so an
//! initiator holding it cannot deadlock with them.
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use crate::percpu::{CPU_INFO_SIZE, MAX_CPUS, STACKS, STACK_SIZE};

/// Physical address the trampoline is copied to (SIPI vector 0x08).
const TRAMPOLINE: u64 = 0x8000;

/// Vector of the reschedule / event-check IPI.
pub const VECTOR_RESCHED: u64 = 0xf1;
/// Vector of the TLB-shootdown IPI.
pub const VECTOR_FLUSH: u64 = 0xf2;

const APIC_ICR_LO: u64 = 0x300;
const APIC_ICR_HI: u64 = 0x310;
const ICR_PENDING: u32 = 1 << 12;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_ALL_BUT_SELF: u32 = 3 << 18;
const ICR_INIT: u32 = 5 << 8;
const ICR_STARTUP: u32 = 6 << 8;

/// CPUs running (the boot CPU counts).
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// Local APIC id of each CPU.
static APIC_ID: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// A TLB flush asked of each CPU and not yet done.
static FLUSH: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Each CPU runs a vCPU (changed under the domain lock). An idle CPU needs no shootdown: it
/// reloads CR3, which flushes its TLB, before it runs guest code again.
static ACTIVE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Records whether this CPU runs a vCPU.
pub fn set_active(on: bool) {
    ACTIVE[crate::percpu::cpu_id()].store(on, Ordering::Release);
}

// Real mode at TRAMPOLINE with CS = 0x800: load a flat GDT, enter protected mode, turn on PAE,
// long mode and paging with the boot page tables (they identity-map low memory and map the
// hypervisor), take the next CPU index, switch to that CPU's stack and call `ap_start`. All
// addresses are absolute: the code runs from its copy at TRAMPOLINE.
global_asm!(
    r#"
    .section .text.xenolith_ap, "ax"
    .global xenolith_ap_start
    .global xenolith_ap_end
    .global xenolith_ap_cr3
    .global xenolith_ap_stacks
    .global xenolith_ap_entry
    .global xenolith_ap_next
    .code16
xenolith_ap_start:
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl ({base} + (10f - xenolith_ap_start))
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $({base} + (2f - xenolith_ap_start))
    .code32
2:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl ({base} + (xenolith_ap_cr3 - xenolith_ap_start)), %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $(1 << 5), %eax
    movl %eax, %cr4
    movl $0xc0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11) | 1), %eax
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | 1), %eax
    movl %eax, %cr0
    ljmpl $0x18, $({base} + (3f - xenolith_ap_start))
    .code64
3:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $1, %eax
    lock xaddl %eax, ({base} + (xenolith_ap_next - xenolith_ap_start))
    cmpl ${max_cpus}, %eax
    jae 4f
    movl %eax, %edi
    movq ({base} + (xenolith_ap_stacks - xenolith_ap_start)), %rsp
    movl %edi, %eax
    imulq ${stack_size}, %rax
    addq %rax, %rsp
    addq ${stack_top}, %rsp
    movq ({base} + (xenolith_ap_entry - xenolith_ap_start)), %rax
    callq *%rax
4:
    cli
    hlt
    jmp 4b
    .balign 8
11:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
10:
    .word 31
    .long {base} + (11b - xenolith_ap_start)
    .balign 8
xenolith_ap_cr3:
    .quad 0
xenolith_ap_stacks:
    .quad 0
xenolith_ap_entry:
    .quad 0
xenolith_ap_next:
    .long 1
    .balign 8
xenolith_ap_end:
    .text
"#,
    base = const TRAMPOLINE,
    max_cpus = const MAX_CPUS,
    stack_size = const STACK_SIZE,
    stack_top = const STACK_SIZE - CPU_INFO_SIZE,
    options(att_syntax),
);

extern "C" {
    static xenolith_ap_start: u8;
    static xenolith_ap_end: u8;
    static xenolith_ap_cr3: u8;
    static xenolith_ap_stacks: u8;
    static xenolith_ap_entry: u8;
    static xenolith_ap_next: u8;
}

/// Number of CPUs running.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// ACPI processor id of each CPU (from the MADT entry with its local APIC id).
static ACPI_ID: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// (ACPI processor id, local APIC id) of the enabled processors the MADT lists.
static MADT: spin::Mutex<alloc::vec::Vec<(u8, u8)>> = spin::Mutex::new(alloc::vec::Vec::new());

/// A CPU's local APIC id and ACPI processor id, if it is online (XENPF_get_cpuinfo).
pub fn cpu_ids(cpu: usize) -> Option<(u32, u32)> {
    (cpu < online()).then(|| {
        (
            APIC_ID[cpu].load(Ordering::Relaxed),
            ACPI_ID[cpu].load(Ordering::Relaxed),
        )
    })
}

/// Records CPU `cpu`'s ACPI processor id, found by its local APIC id in the MADT.
fn record_acpi_id(cpu: usize) {
    let apic = APIC_ID[cpu].load(Ordering::Relaxed);
    if let Some(&(acpi, _)) = MADT.lock().iter().find(|&&(_, a)| u32::from(a) == apic) {
        ACPI_ID[cpu].store(u32::from(acpi), Ordering::Relaxed);
    }
}

/// Enabled processors listed in the ACPI MADT (None without ACPI tables); their ids are kept
/// for `cpu_ids`.
fn madt_cpus() -> Option<usize> {
    let read = |pa: u64, len: usize| -> &'static [u8] {
        // SAFETY: firmware tables below 4 GiB, inside the direct map, read only.
        unsafe { core::slice::from_raw_parts(crate::mm::phys_to_virt(pa) as *const u8, len) }
    };
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    // The RSDP lies on a 16-byte boundary in the BIOS area.
    let rsdp = (0xe0000u64..0x100000)
        .step_by(16)
        .find(|&a| read(a, 8) == b"RSD PTR ")?;
    let rsdt = u64::from(u32_at(read(rsdp, 20), 16));
    let len = u32_at(read(rsdt, 8), 4) as usize;
    if !(36..=4096).contains(&len) {
        return None;
    }
    let t = read(rsdt, len);
    for i in (36..len).step_by(4) {
        let table = u64::from(u32_at(t, i));
        if read(table, 4) != b"APIC" {
            continue;
        }
        let mlen = (u32_at(read(table, 8), 4) as usize).min(64 * 1024);
        let m = read(table, mlen);
        let (mut off, mut n) = (44, 0);
        while off + 2 <= mlen {
            let (ty, l) = (m[off], usize::from(m[off + 1]));
            if l < 2 {
                break;
            }
            // Type 0: processor local APIC (ACPI id, APIC id, flags); flags bit 0: enabled.
            if ty == 0 && off + 8 <= mlen && u32_at(m, off + 4) & 1 != 0 {
                n += 1;
                MADT.lock().push((m[off + 2], m[off + 3]));
            }
            off += l;
        }
        return Some(n);
    }
    None
}

fn icr_wait() {
    let start = crate::time::now_ns();
    while crate::time::lapic_read(APIC_ICR_LO) & ICR_PENDING != 0 {
        if crate::time::now_ns() - start > 10_000_000 {
            crate::warn!("local APIC: IPI still pending after 10 ms");
            return;
        }
        core::hint::spin_loop();
    }
}

fn delay_us(us: u64) {
    let end = crate::time::now_ns() + us * 1000;
    while crate::time::now_ns() < end {
        core::hint::spin_loop();
    }
}

/// Starts every other CPU the firmware lists (at most `MAX_CPUS` in all) and waits for them.
pub fn start_aps() {
    APIC_ID[0].store(crate::time::lapic_id(), Ordering::Relaxed);
    let want = madt_cpus().unwrap_or(1).clamp(1, MAX_CPUS);
    record_acpi_id(0);
    if want == 1 {
        return;
    }
    // SAFETY: the symbols delimit the trampoline in the image; the copy goes to low memory
    // that is reserved from the frame allocator (the first MiB) and is not otherwise used.
    unsafe {
        let start = &raw const xenolith_ap_start as u64;
        let end = &raw const xenolith_ap_end as u64;
        let len = (end - start) as usize;
        let dst = crate::mm::phys_to_virt(TRAMPOLINE) as *mut u8;
        core::ptr::copy_nonoverlapping(start as *const u8, dst, len);
        let put = |sym: *const u8, v: u64| {
            let off = sym as u64 - start;
            core::ptr::write_unaligned(dst.add(off as usize) as *mut u64, v);
        };
        put(&raw const xenolith_ap_cr3, crate::mm::idle_l4());
        put(&raw const xenolith_ap_stacks, STACKS.as_ptr() as u64);
        put(&raw const xenolith_ap_entry, ap_start as *const () as u64);
        let _ = &raw const xenolith_ap_next;
    }
    crate::time::lapic_write(APIC_ICR_HI, 0);
    crate::time::lapic_write(APIC_ICR_LO, ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_INIT);
    icr_wait();
    delay_us(10_000);
    for _ in 0..2 {
        crate::time::lapic_write(
            APIC_ICR_LO,
            ICR_ALL_BUT_SELF | ICR_ASSERT | ICR_STARTUP | (TRAMPOLINE >> 12) as u32,
        );
        icr_wait();
        delay_us(200);
    }
    let start = crate::time::now_ns();
    while online() < want && crate::time::now_ns() - start < 1_000_000_000 {
        core::hint::spin_loop();
    }
    if online() < want {
        crate::warn!("{} of {} CPUs came up", online(), want);
    }
    crate::info!("{} CPUs online", online());
}

/// A secondary CPU's first Rust code, on its own stack, with the boot page tables.
extern "C" fn ap_start(cpu: u32) -> ! {
    let i = cpu as usize;
    let info = crate::percpu::current_cpu_info();
    // SAFETY: this CPU's CpuInfo at the top of its own stack, not yet used by anyone.
    unsafe {
        (*info).cpu_id = cpu;
        (*info).vcpu = crate::percpu::NO_VCPU;
    }
    crate::cpu::init_cpu(i, &STACKS[i]);
    crate::time::init_ap();
    APIC_ID[i].store(crate::time::lapic_id(), Ordering::Relaxed);
    record_acpi_id(i);
    ONLINE.fetch_add(1, Ordering::AcqRel);
    crate::sched::idle_loop()
}

/// Sends interrupt `vector` to CPU `cpu`.
pub fn send_ipi(cpu: usize, vector: u64) {
    icr_wait();
    crate::time::lapic_write(APIC_ICR_HI, APIC_ID[cpu].load(Ordering::Relaxed) << 24);
    crate::time::lapic_write(APIC_ICR_LO, ICR_ASSERT | vector as u32);
}

/// Flushes the TLB of this CPU and of every other online CPU that runs a vCPU, and returns when
/// all are done. Called with the domain lock held; the others answer from the IPI or while
/// they wait for that lock (`service`).
pub fn flush_tlb_all() {
    xenolith_arch::instr::flush_tlb_local();
    let me = crate::percpu::cpu_id();
    let n = online();
    if n == 1 {
        return;
    }
    for (c, f) in FLUSH.iter().enumerate().take(n) {
        if c != me && ACTIVE[c].load(Ordering::Acquire) {
            f.store(true, Ordering::Release);
            send_ipi(c, VECTOR_FLUSH);
        }
    }
    for (c, f) in FLUSH.iter().enumerate().take(n) {
        while c != me && f.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
    }
}

/// Does a TLB flush asked of this CPU, if any.
pub fn service() {
    let f = &FLUSH[crate::percpu::cpu_id()];
    if f.load(Ordering::Acquire) {
        xenolith_arch::instr::flush_tlb_local();
        f.store(false, Ordering::Release);
    }
}
