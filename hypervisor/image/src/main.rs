//! The bootable Xenolith hypervisor image: boot, command line, console, dom0, and wiring.
#![no_std]
#![no_main]

extern crate alloc;

mod boot;
mod console;
mod cpu;
mod cpuid;
mod desc;
mod dom0;
mod domain;
mod domctl;
mod emulate;
mod entry;
mod events;
mod fpu;
mod guestmem;
mod heap;
mod hypercall;
mod mm;
mod mmu;
mod percpu;
mod power;
mod pv;
mod sched;
mod smp;
mod time;
mod traps;
mod vcpu;

use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use spin::Once;
use xenolith_core::bootinfo::{self, BootInfo};
use xenolith_core::cmdline::{strip_image_name, CmdLine};
use xenolith_core::frames::{carve, FrameAllocator};

use crate::domain::Shutdown;
use crate::percpu::GuestRegs;

static CMDLINE: Once<(String, CmdLine)> = Once::new();
static HOST_MEMORY_MAP: Once<alloc::vec::Vec<bootinfo::MemRegion>> = Once::new();

/// The firmware memory map the hypervisor booted with.
pub fn host_memory_map() -> &'static [bootinfo::MemRegion] {
    HOST_MEMORY_MAP.get().map_or(&[], |v| v.as_slice())
}
static NOREBOOT: AtomicBool = AtomicBool::new(false);
/// isa-debug-exit port + 1 (0 = none).
static DEBUG_EXIT: AtomicU32 = AtomicU32::new(0);

/// Exit code reported through isa-debug-exit when the hypervisor cannot boot dom0 or panics.
const EXIT_HYPERVISOR_FAILURE: u8 = 0x10;

/// The hypervisor command line as given (without the image name).
pub fn boot_cmdline() -> String {
    CMDLINE.get().map(|(s, _)| s.clone()).unwrap_or_default()
}

/// The isa-debug-exit port, if `debug_exit=` was given.
pub fn debug_exit_port() -> Option<u16> {
    match DEBUG_EXIT.load(Ordering::Relaxed) {
        0 => None,
        p => Some((p - 1) as u16),
    }
}

/// Rust entry on the boot CPU, called by `boot.rs` in long mode on the boot stack.
pub extern "C" fn rust_start(magic: u32, info: u32) -> ! {
    heap::init_bootstrap();
    let bi = match bootinfo::parse(magic, u64::from(info), &mm::DirectMap) {
        Ok(bi) => bi,
        Err(e) => {
            console::init(0x3f8);
            console::force(format_args!("Xenolith: {e}\n"));
            xenolith_arch::instr::halt_forever();
        }
    };
    let line = String::from(strip_image_name(&bi.cmdline));
    let cmd = CmdLine::parse(&line);
    if let Some(base) = cmd.serial_base() {
        console::init(base);
    }
    console::set_levels(cmd.loglvl, cmd.guest_loglvl);
    NOREBOOT.store(cmd.noreboot, Ordering::Relaxed);
    hypercall::TRACE.store(cmd.hypercall_trace, Ordering::Relaxed);
    if let Some(p) = cmd.debug_exit {
        DEBUG_EXIT.store(u32::from(p) + 1, Ordering::Relaxed);
    }
    let (_, cmd) = CMDLINE.call_once(|| (line, cmd));
    boot(cmd, &bi)
}

fn boot(cmd: &CmdLine, bi: &BootInfo) -> ! {
    info!(
        "Xenolith {} (Xen 4.17 PV ABI), a Xen-compatible hypervisor",
        env!("CARGO_PKG_VERSION")
    );
    info!("Command line: {}", boot_cmdline());
    for opt in &cmd.unknown {
        warn!("parameter \"{opt}\" unknown!");
    }
    for (opt, why) in &cmd.invalid {
        warn!("parameter \"{opt}\" has an invalid value: {why}");
    }
    if let Some(name) = &bi.loader_name {
        info!("Boot loader: {name} (multiboot{})", bi.protocol);
    }
    info!("Physical memory map:");
    for r in &bi.memory {
        let kind = match r.kind {
            bootinfo::E820_RAM => "usable",
            bootinfo::E820_ACPI => "ACPI data",
            bootinfo::E820_NVS => "ACPI NVS",
            _ => "reserved",
        };
        info!(" {:016x} - {:016x} ({kind})", r.base, r.base + r.len);
    }

    HOST_MEMORY_MAP.call_once(|| bi.memory.clone());
    // Memory: reserve the image and modules, carve the heap, then the frame allocator.
    let mut reserved = alloc::vec![0..(1 << 20), mm::image_range()];
    for m in &bi.modules {
        reserved.push(m.start & !0xfff..(m.end + 0xfff) & !0xfff);
    }
    let ram = bi.ram_bytes();
    let heap_size = (ram / 4).clamp(16 << 20, 256 << 20) & !0xfffff;
    let Some(heap_base) = carve(
        &bi.memory,
        &reserved,
        heap_size,
        2 << 20,
        mm::BOOT_DIRECTMAP_LIMIT,
    ) else {
        fatal("not enough memory for the hypervisor heap");
    };
    // SAFETY: the carved range is RAM outside every reserved range, mapped by the direct map,
    // and handed to the heap forever (it is reserved from the frame allocator below).
    unsafe { heap::add_region(mm::phys_to_virt(heap_base) as usize, heap_size as usize) };
    reserved.push(heap_base..heap_base + heap_size);
    let mut frames = FrameAllocator::new(&bi.memory, &reserved);
    // The boot tables map only the first 4 GiB; frames above are not used yet.
    let limit_pfn = mm::BOOT_DIRECTMAP_LIMIT / 4096;
    let mut claimed = 0u64;
    for pfn in limit_pfn..frames.max_pfn() {
        if frames.claim(pfn) {
            claimed += 1;
        }
    }
    if claimed != 0 {
        warn!("{} MiB above 4 GiB left unused", claimed >> 8);
    }
    let max_pfn = frames.max_pfn();
    mm::init_frames(frames);
    info!(
        "Memory: {} MiB RAM, {} MiB heap at {:#x}, {} MiB free",
        ram >> 20,
        heap_size >> 20,
        heap_base,
        mm::free_frames() >> 8
    );
    mm::init_frame_table(max_pfn, &bi.memory);
    if mm::init_m2p(max_pfn).is_none() {
        fatal("not enough memory for the machine-to-phys table");
    }

    cpu::init_cpu(0, &percpu::STACKS[0]);
    let names: alloc::vec::Vec<&str> = (0..64).filter_map(hypercall::implemented).collect();
    debug!("Hypercalls implemented: {}", names.join(" "));
    time::init();
    console::enable_rx_interrupt();
    smp::start_aps();

    let dom = match dom0::build(cmd, bi) {
        Ok(d) => d,
        Err(e) => {
            error!("{}", e.0);
            fatal("Could not set up dom0");
        }
    };
    info!(
        "Scrubbing done; starting dom0 ({} MiB heap in use)",
        heap::stats().0 >> 20
    );
    let mut dom = dom;
    sched::init(&mut dom);
    let v = &dom.vcpus[percpu::vcpu()] as *const domain::Vcpu;
    domain::lock().insert(dom);
    // SAFETY: dom0 lives in a Box in the domain table for the rest of the hypervisor's life
    // (it is never destroyed), and nothing else runs until this vCPU is entered.
    sched::enter(unsafe { &*v })
}

/// Stops the machine after dom0 has shut down or crashed, as Xen does for the hardware
/// domain: power off, reboot (or halt with `noreboot`).
pub fn domain_stopped(id: u16, how: Shutdown) -> ! {
    STOPPED.store(true, Ordering::SeqCst);
    let (code, reason) = match how {
        Shutdown::Requested(r) => (r, pv::shutdown_name(r)),
        Shutdown::Crashed => (3, "crash"),
    };
    power::debug_exit(code as u8);
    let noreboot = NOREBOOT.load(Ordering::Relaxed);
    match (code, noreboot) {
        (0, _) => {
            info!("Hardware Dom{id} halted: powering off the machine");
            power::power_off()
        }
        (_, true) => {
            info!("Hardware Dom{id} shutdown ({reason}): 'noreboot' set - not rebooting");
            xenolith_arch::instr::halt_forever()
        }
        (_, false) => {
            info!("Hardware Dom{id} shutdown ({reason}): rebooting machine");
            power::reboot()
        }
    }
}

/// Set once the domain has stopped: other CPUs halt instead of waiting for it.
pub static STOPPED: AtomicBool = AtomicBool::new(false);

/// Ends the hypervisor after an unrecoverable boot problem.
pub fn fatal(why: &str) -> ! {
    console::force(format_args!("\n****************************************\n"));
    console::force(format_args!("Panic on CPU 0:\n{why}\n"));
    console::force(format_args!("****************************************\n\n"));
    stop()
}

fn stop() -> ! {
    power::debug_exit(EXIT_HYPERVISOR_FAILURE);
    if NOREBOOT.load(Ordering::Relaxed) {
        console::force(format_args!(
            "Manual reset required ('noreboot' specified)\n"
        ));
        xenolith_arch::instr::halt_forever()
    } else {
        console::force(format_args!("Rebooting machine.\n"));
        power::reboot()
    }
}

/// Reports an unexpected exception in the hypervisor with its frame, then stops.
pub fn fatal_frame(why: &str, r: &GuestRegs) -> ! {
    console::force(format_args!("\n****************************************\n"));
    console::force(format_args!(
        "Panic on CPU 0: {why}: {} (vector {}, error {:#x})\n",
        traps::vector_name(r.vector),
        r.vector,
        r.error_code
    ));
    console::force(format_args!(
        "RIP: {:04x}:{:016x} RFLAGS: {:016x}\n",
        r.cs, r.rip, r.rflags
    ));
    console::force(format_args!(
        "RSP: {:04x}:{:016x} CR2: {:016x}\n",
        r.ss,
        r.rsp,
        xenolith_arch::instr::read_cr2()
    ));
    console::force(format_args!(
        "RAX: {:016x} RBX: {:016x} RCX: {:016x}\n",
        r.rax, r.rbx, r.rcx
    ));
    console::force(format_args!(
        "RDX: {:016x} RSI: {:016x} RDI: {:016x}\n",
        r.rdx, r.rsi, r.rdi
    ));
    console::force(format_args!(
        "RBP: {:016x} R8:  {:016x} R9:  {:016x}\n",
        r.rbp, r.r8, r.r9
    ));
    console::force(format_args!(
        "R10: {:016x} R11: {:016x} R12: {:016x}\n",
        r.r10, r.r11, r.r12
    ));
    console::force(format_args!(
        "R13: {:016x} R14: {:016x} R15: {:016x}\n",
        r.r13, r.r14, r.r15
    ));
    console::force(format_args!(
        "CR3: {:016x}\n",
        xenolith_arch::instr::read_cr3()
    ));
    console::force(format_args!("****************************************\n\n"));
    stop()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::force(format_args!("\n****************************************\n"));
    console::force(format_args!("Panic on CPU 0: hypervisor bug: {info}\n"));
    // The current guest, if any, for context.
    if let Some(guard) = domain::DOMAINS.try_lock() {
        for d in guard.ids.iter().filter_map(|&id| guard.get(id)) {
            // Saved state only: the running vCPU's live registers are in the reported frame.
            for (i, v) in d.vcpus.iter().enumerate().filter(|(_, v)| v.up) {
                console::force(format_args!(
                    "d{} vcpu{} saved rip {:#x} rsp {:#x}\n",
                    d.id, i, v.regs.rip, v.regs.rsp
                ));
            }
        }
    }
    console::force(format_args!("****************************************\n\n"));
    stop()
}
