//! Domains and vCPUs as the hypervisor holds them.
//!
//! Invariants: `p2m[pfn]` is the machine frame backing guest pfn `pfn`, and the M2P maps it
//! back; a frame belongs to a domain iff both agree. A vCPU's `trap_ctxt` and callback
//! addresses are canonical (checked when registered), so entering them cannot fault in the
//! hypervisor.
use alloc::boxed::Box;
use alloc::vec::Vec;

use spin::Mutex;

use crate::percpu::GuestRegs;

/// A registered guest entry point with its flags (e.g. mask events).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Callback {
    pub address: u64,
    pub flags: u16,
}

/// One trap-table entry (struct trap_info without the vector).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrapEntry {
    pub flags: u8,
    pub cs: u16,
    pub address: u64,
}

/// A virtual CPU of a PV domain.
#[derive(Debug)]
pub struct Vcpu {
    pub id: u32,
    /// Saved registers while the vCPU is not on a CPU.
    pub regs: GuestRegs,
    /// Guest kernel mode (as opposed to guest user mode); both run at CPL 3.
    pub kernel_mode: bool,
    /// Kernel root page table (MFN), guest_table in Xen.
    pub guest_table: u64,
    /// User root page table (MFN) or 0, guest_table_user in Xen.
    pub guest_table_user: u64,
    pub kernel_ss: u64,
    pub kernel_sp: u64,
    pub trap_ctxt: [TrapEntry; 256],
    pub event_callback: Callback,
    pub failsafe_callback: Callback,
    pub syscall_callback: Callback,
    pub syscall32_callback: Callback,
    pub sysenter_callback: Callback,
    pub nmi_callback: Callback,
    pub fs_base: u64,
    pub gs_base_kernel: u64,
    pub gs_base_user: u64,
    /// Machine address of this vCPU's vcpu_info.
    pub vcpu_info_maddr: u64,
    /// Virtual CR0.TS.
    pub virtual_ts: bool,
    /// Single-shot timer deadline (system time, ns).
    pub timer_deadline: Option<u64>,
    /// Periodic timer period (0 = off), next expiry and last tick.
    pub periodic_ns: u64,
    pub periodic_next: u64,
    pub periodic_last: u64,
    /// When vcpu_info's clock record was last published.
    pub time_published: u64,
    /// An NMI waits for delivery; NMIs are masked until the guest's next iret.
    pub nmi_pending: bool,
    pub nmi_masked: bool,
    /// Runstate and the guest virtual address it is published at (0 = none).
    pub runstate: crate::vcpu::Runstate,
    pub runstate_area: u64,
    /// Guest frame holding vcpu_info after VCPUOP_register_vcpu_info (0 = in shared_info).
    pub vcpu_info_frame: u64,
    /// Guest-controlled CR4 bits (TSD, DE).
    pub cr4: u64,
    /// Virtual IOPL (PHYSDEVOP_set_iopl).
    pub iopl: u8,
    /// Guest virtual address and port count of the I/O bitmap (PHYSDEVOP_set_iobitmap).
    pub iobmp: u64,
    pub iobmp_limit: u32,
    /// Virtual debug registers (index 0-3, 6, 7).
    pub dr: [u64; 8],
    /// Guest GDT frames (set_gdt) and entry count.
    pub gdt_frames: [u64; 14],
    pub gdt_nr: usize,
    pub gdt_ents: u64,
    /// Guest LDT (MMUEXT_SET_LDT): linear base, entries, and the frames mapped so far
    /// (0 = not mapped yet).
    pub ldt_base: u64,
    pub ldt_ents: u64,
    pub ldt_frames: [u64; 16],
    /// Initialised (vCPU 0 by the builder, others by VCPUOP_initialise).
    pub initialised: bool,
    /// Up: not taken down by VCPUOP_down and not yet brought up (Xen's _VPF_down clear).
    pub up: bool,
    /// What a blocked vCPU waits for.
    pub wait: Wait,
    /// Data segment selectors (DS, ES, FS, GS) while the vCPU is off the CPU.
    pub sel: [u16; 4],
    /// FPU and SSE registers while the vCPU is off the CPU.
    pub fpu: Box<FpuArea>,
    /// The CPU running this vCPU, if any.
    pub cpu: Option<usize>,
    /// The CPU it last ran on.
    pub last_cpu: usize,
    /// Held off its CPU for the toolstack (XEN_DOMCTL_getvcpucontext), as Xen's vcpu_pause.
    pub ctl_paused: bool,
    /// Woken while still on another CPU after being put to sleep: the policy hears of it only
    /// once that CPU has saved it (see `sched::wake`).
    pub wake_pending: bool,
    /// Hard affinity as last set (bit n: CPU n; all ones: any CPU).
    pub affinity: u64,
}

/// What keeps a vCPU from running besides being down.
#[derive(Debug, Default)]
pub enum Wait {
    /// Runnable.
    #[default]
    None,
    /// SCHEDOP_block: until an upcall can be delivered.
    Block,
    /// SCHEDOP_poll: until one of the ports is pending (see `vcpu::poll`).
    Poll(Box<crate::vcpu::PollWait>),
}

/// An FXSAVE image.
#[repr(C, align(16))]
#[derive(Clone, Debug)]
pub struct FpuArea(pub [u8; 512]);

impl FpuArea {
    /// The state after FNINIT with SSE exceptions masked (FCW 0x37f, MXCSR 0x1f80).
    pub fn reset() -> Self {
        let mut a = [0u8; 512];
        a[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        a[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        FpuArea(a)
    }
}

impl Vcpu {
    /// A vCPU with reset state whose vcpu_info lives at `vcpu_info_maddr`.
    pub fn new(id: u32, vcpu_info_maddr: u64) -> Self {
        Vcpu {
            id,
            regs: GuestRegs::default(),
            kernel_mode: true,
            guest_table: 0,
            guest_table_user: 0,
            kernel_ss: 0,
            kernel_sp: 0,
            trap_ctxt: [TrapEntry::default(); 256],
            event_callback: Callback::default(),
            failsafe_callback: Callback::default(),
            syscall_callback: Callback::default(),
            syscall32_callback: Callback::default(),
            sysenter_callback: Callback::default(),
            nmi_callback: Callback::default(),
            fs_base: 0,
            gs_base_kernel: 0,
            gs_base_user: 0,
            vcpu_info_maddr,
            virtual_ts: false,
            timer_deadline: None,
            // Xen starts every vCPU with a 100 Hz periodic timer.
            periodic_ns: crate::vcpu::DEFAULT_PERIOD_NS,
            periodic_next: crate::vcpu::DEFAULT_PERIOD_NS,
            periodic_last: 0,
            time_published: 0,
            nmi_pending: false,
            nmi_masked: false,
            runstate: crate::vcpu::Runstate::default(),
            runstate_area: 0,
            vcpu_info_frame: 0,
            cr4: 0,
            iopl: 0,
            iobmp: 0,
            iobmp_limit: 0,
            dr: [0, 0, 0, 0, 0, 0, 0xffff_0ff0, 0x400],
            gdt_frames: [0; 14],
            gdt_nr: 0,
            gdt_ents: 0,
            ldt_base: 0,
            ldt_ents: 0,
            ldt_frames: [0; 16],
            initialised: false,
            up: false,
            wait: Wait::None,
            sel: [0; 4],
            fpu: Box::new(FpuArea::reset()),
            cpu: None,
            last_cpu: 0,
            ctl_paused: false,
            wake_pending: false,
            affinity: !0,
        }
    }

    /// Whether the vCPU may be scheduled.
    pub fn runnable(&self) -> bool {
        self.up && matches!(self.wait, Wait::None) && !self.ctl_paused
    }

    /// The root page table for the current guest mode.
    pub fn current_root(&self) -> u64 {
        if self.kernel_mode || self.guest_table_user == 0 {
            self.guest_table
        } else {
            self.guest_table_user
        }
    }
}

/// Why and how a domain stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// SCHEDOP_shutdown with a reason code (SHUTDOWN_*).
    Requested(u32),
    /// Crashed by the hypervisor for misbehaviour.
    Crashed,
}

/// A domain.
#[derive(Debug)]
pub struct Domain {
    pub id: u16,
    pub privileged: bool,
    /// pfn -> mfn.
    pub p2m: Vec<u64>,
    pub max_pages: u64,
    /// Pages the domain holds as RAM.
    pub tot_pages: u64,
    pub shared_info_mfn: u64,
    /// Enabled VMASST_TYPE_* bits.
    pub vm_assist: u64,
    pub shutdown: Option<Shutdown>,
    pub vcpus: Vec<Vcpu>,
    /// Event channels.
    pub evtchn: xenolith_core::evtchn::EvtchnDomain,
    /// Frames of the FIFO event-channel ABI, if the guest switched to it.
    pub fifo: crate::events::FifoFrames,
    /// When the next timer event of any vCPU is due (system time; 0: work it out again).
    pub next_due: u64,
    /// vCPUs whose `wait` is not `Wait::None`.
    pub waiting: u32,
    /// Virtual CMOS index register (port 0x70) and PCI address register (0xcf8).
    pub cmos_index: u8,
    pub pci_cf8: u32,
    /// Pauses by the toolstack (XEN_DOMCTL_pausedomain; a new domain starts with one).
    pub paused: u32,
    /// The shutdown has been acted on: the vCPUs left the scheduler and dom0 was told.
    pub parked: bool,
    /// Being destroyed: never runs again.
    pub dying: bool,
    /// Torn down; the domain stays (a zombie) while other domains still map its pages.
    pub dead: bool,
    /// vCPUs the domain may have (createdomain); `vcpus` holds them once created.
    pub max_vcpus: u32,
    /// The toolstack's handle (a UUID) from createdomain.
    pub handle: [u8; 16],
}

impl Domain {
    /// A domain with no memory, vCPUs or shared_info yet, room for `max_vcpus` vCPUs and
    /// event-channel ports up to `max_port`, running (not paused) and not shut down.
    pub fn new(id: u16, privileged: bool, max_vcpus: u32, max_port: u32) -> Domain {
        Domain {
            id,
            privileged,
            p2m: Vec::new(),
            max_pages: 0,
            tot_pages: 0,
            shared_info_mfn: 0,
            vm_assist: 0,
            shutdown: None,
            vcpus: Vec::new(),
            evtchn: xenolith_core::evtchn::EvtchnDomain::new(
                xen_abi::types::DomId(id),
                max_vcpus,
                max_port,
            ),
            fifo: crate::events::FifoFrames::default(),
            next_due: 0,
            waiting: 0,
            cmos_index: 0,
            pci_cf8: 0,
            paused: 0,
            parked: false,
            dying: false,
            dead: false,
            max_vcpus,
            handle: [0; 16],
        }
    }

    /// Whether vCPU `v` may be scheduled: the domain runs and the vCPU is up and not waiting.
    #[inline]
    pub fn can_run(&self, v: usize) -> bool {
        self.vcpus[v].runnable() && self.paused == 0 && self.shutdown.is_none() && !self.dying
    }

    /// The page-type view of this domain.
    pub fn ptdom(&self) -> xenolith_core::pagetype::Dom {
        xenolith_core::pagetype::Dom {
            id: self.id,
            io: self.privileged,
            xen_pages: false,
            foreign: None,
        }
    }
}

/// Highest domain id plus one that this hypervisor hands out.
pub const MAX_DOMAINS: usize = 64;

/// Every domain, by id. A domain is taken out of its slot while a CPU works on it as the
/// current domain (see `trap_dispatch`), so that the others stay reachable alongside it.
pub struct Domains {
    slots: [Option<Box<Domain>>; MAX_DOMAINS],
    /// Ids of the domains that exist, in creation order (including one taken out).
    pub ids: Vec<u16>,
}

impl Domains {
    const fn new() -> Self {
        Domains {
            slots: [const { None }; MAX_DOMAINS],
            ids: Vec::new(),
        }
    }

    /// The domain with this id, unless it does not exist or is taken out.
    pub fn get_mut(&mut self, id: u16) -> Option<&mut Domain> {
        self.slots.get_mut(usize::from(id))?.as_deref_mut()
    }

    /// The domain with this id, unless it does not exist or is taken out.
    pub fn get(&self, id: u16) -> Option<&Domain> {
        self.slots.get(usize::from(id))?.as_deref()
    }

    /// Takes a domain out of its slot.
    #[inline]
    pub fn take(&mut self, id: u16) -> Option<Box<Domain>> {
        self.slots.get_mut(usize::from(id))?.take()
    }

    /// Puts a domain taken out back in its slot.
    #[inline]
    pub fn put(&mut self, dom: Box<Domain>) {
        let slot = &mut self.slots[usize::from(dom.id)];
        // The slot is empty (its domain was taken out): nothing to drop.
        if slot.is_none() {
            *slot = Some(dom);
        } else {
            panic!("domain {} put back twice", dom.id);
        }
    }

    /// Adds a new domain.
    pub fn insert(&mut self, dom: Box<Domain>) {
        self.ids.push(dom.id);
        self.put(dom);
    }

    /// Removes a domain for good.
    pub fn remove(&mut self, id: u16) -> Option<Box<Domain>> {
        self.ids.retain(|&d| d != id);
        self.take(id)
    }

    /// Whether an id is in use (taken out or not).
    pub fn exists(&self, id: u16) -> bool {
        self.ids.contains(&id)
    }
}

/// The domain table.
pub static DOMAINS: Mutex<Domains> = Mutex::new(Domains::new());

/// Takes the domain lock, doing any TLB flush other CPUs ask of this one while it waits (they
/// may hold the lock and wait for that flush).
pub fn lock() -> spin::MutexGuard<'static, Domains> {
    loop {
        if let Some(g) = DOMAINS.try_lock() {
            return g;
        }
        crate::smp::service();
        if crate::STOPPED.load(core::sync::atomic::Ordering::Relaxed) {
            xenolith_arch::instr::halt_forever();
        }
        core::hint::spin_loop();
    }
}
