//! Event channels: `event_channel_op` wrappers, an event callback and an NMI handler that
//! return with `HYPERVISOR_iret`, and Linux-style 2-level and FIFO consumers.
//!
//! Callbacks: [`install_upcall`] registers `CALLBACKTYPE_event` at an entry
//! stub, [`install_nmi`] points trap-table vector 2 (where Xen sends NMIs) at
//! another. Xen bounces both like an exception without error code (`rcx, r11,
//! rip, cs, rflags, rsp, ss`, see [`traps`](crate::traps)); each stub pops
//! `rcx`/`r11`, saves the GPRs, records a [`Snapshot`] of the vcpu_info at
//! entry, calls the test's handler with the [`CallbackFrame`] and returns
//! through `HYPERVISOR_iret` (flags 0), which restores the interrupted
//! registers and sets `evtchn_upcall_mask` from the frame's RFLAGS.IF.
//! Handlers run with events masked (Xen masks them for the event callback;
//! the NMI entry masks them too) and must not unmask them.
//!
//! Consumers: [`consume_2l`] follows Linux's `evtchn_2l_handle_events` (clear
//! `evtchn_upcall_pending`, swap the selector with 0, scan `pending & !mask`
//! word by word and bit by bit, clear each pending bit before handling it,
//! repeat while `evtchn_upcall_pending` was set again), but always scans
//! from port 0 where Linux resumes round-robin after the last port handled,
//! so the order is simply ascending; [`consume_fifo`] is
//! Linux's `events_fifo.c` (swap `ready` with 0, take the highest-priority
//! ready queue, follow the guest's own queue head or the control block's,
//! unlink each event with `cmpxchg`, handle it if pending and unmasked).
//!
//! [`Log`]: a fixed-size record of (port, time) pairs a handler can append
//! to and a test read back.
//!
//! Invariants: one vCPU; the statics here are written by handlers and read
//! by the test with events masked (or after the handler ran).

use core::arch::global_asm;
use core::mem::size_of;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use xen_abi::callback::CALLBACKTYPE_EVENT;
use xen_abi::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVcpu, EvtchnBindVirq,
    EvtchnClose, EvtchnExpandArray, EvtchnFifoControlBlock, EvtchnInitControl, EvtchnReset,
    EvtchnSend, EvtchnSetPriority, EvtchnStatus, EvtchnUnmask, EVTCHNOP_ALLOC_UNBOUND,
    EVTCHNOP_BIND_INTERDOMAIN, EVTCHNOP_BIND_IPI, EVTCHNOP_BIND_VCPU, EVTCHNOP_BIND_VIRQ,
    EVTCHNOP_CLOSE, EVTCHNOP_EXPAND_ARRAY, EVTCHNOP_INIT_CONTROL, EVTCHNOP_RESET, EVTCHNOP_SEND,
    EVTCHNOP_SET_PRIORITY, EVTCHNOP_STATUS, EVTCHNOP_UNMASK, EVTCHN_FIFO_LINKED,
    EVTCHN_FIFO_LINK_MASK, EVTCHN_FIFO_MASKED, EVTCHN_FIFO_MAX_QUEUES, EVTCHN_FIFO_PENDING,
};
use xen_abi::hypercall::{self as nr, HYPERCALL_STUB_SIZE, IRET};
use xen_abi::layout::FLAT_KERNEL_CS;
use xen_abi::shared_info::SharedInfo;
use xen_abi::trap::{TrapInfo, TI_MASK_EVENTS};
use xen_abi::Errno;

use crate::hypercall::{self, result};
use crate::{shared_info, vcpu};

// ---------------------------------------------------------------------------
// event_channel_op
// ---------------------------------------------------------------------------

/// `event_channel_op(cmd, arg)`, raw result.
///
/// # Safety
/// `arg` must be valid for what `cmd` reads and writes (or deliberately bad).
pub unsafe fn op_raw(cmd: u32, arg: u64) -> i64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall::call(nr::EVENT_CHANNEL_OP, [cmd.into(), arg, 0, 0, 0]) }
}

/// `event_channel_op(cmd, &mut arg)` for the sub-ops whose argument is `T`.
fn op<T>(cmd: u32, arg: &mut T) -> Result<u64, Errno> {
    // SAFETY: `arg` is valid for reads and writes of size_of::<T>(); the
    // callers below pick T to match `cmd`. Event channel operations change
    // no memory of the guest other than the argument.
    result(unsafe { op_raw(cmd, (arg as *mut T) as u64) })
}

/// `EVTCHNOP_alloc_unbound(dom, remote_dom)`: the new port.
pub fn alloc_unbound(dom: u16, remote_dom: u16) -> Result<u32, Errno> {
    let mut a = EvtchnAllocUnbound {
        dom,
        remote_dom,
        port: 0,
    };
    op(EVTCHNOP_ALLOC_UNBOUND, &mut a)?;
    Ok(a.port)
}

/// `EVTCHNOP_bind_interdomain(remote_dom, remote_port)`: the new local port.
pub fn bind_interdomain(remote_dom: u16, remote_port: u32) -> Result<u32, Errno> {
    let mut a = EvtchnBindInterdomain {
        remote_dom,
        pad: 0,
        remote_port,
        local_port: 0,
    };
    op(EVTCHNOP_BIND_INTERDOMAIN, &mut a)?;
    Ok(a.local_port)
}

/// `EVTCHNOP_bind_virq(virq, vcpu)`: the new port.
pub fn bind_virq(virq: u32, vcpu: u32) -> Result<u32, Errno> {
    let mut a = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    op(EVTCHNOP_BIND_VIRQ, &mut a)?;
    Ok(a.port)
}

/// `EVTCHNOP_bind_ipi(vcpu)`: the new port.
pub fn bind_ipi(vcpu: u32) -> Result<u32, Errno> {
    let mut a = EvtchnBindIpi { vcpu, port: 0 };
    op(EVTCHNOP_BIND_IPI, &mut a)?;
    Ok(a.port)
}

/// `EVTCHNOP_close(port)`.
pub fn close(port: u32) -> Result<u64, Errno> {
    op(EVTCHNOP_CLOSE, &mut EvtchnClose { port })
}

/// `EVTCHNOP_send(port)`.
pub fn send(port: u32) -> Result<u64, Errno> {
    op(EVTCHNOP_SEND, &mut EvtchnSend { port })
}

/// `EVTCHNOP_status(dom, port)`.
pub fn status_of(dom: u16, port: u32) -> Result<EvtchnStatus, Errno> {
    let mut a = EvtchnStatus {
        dom,
        port,
        ..Default::default()
    };
    op(EVTCHNOP_STATUS, &mut a)?;
    Ok(a)
}

/// `EVTCHNOP_status(DOMID_SELF, port)`.
pub fn status(port: u32) -> Result<EvtchnStatus, Errno> {
    status_of(xen_abi::types::DOMID_SELF, port)
}

/// `EVTCHNOP_bind_vcpu(port, vcpu)`.
pub fn bind_vcpu(port: u32, vcpu: u32) -> Result<u64, Errno> {
    op(EVTCHNOP_BIND_VCPU, &mut EvtchnBindVcpu { port, vcpu })
}

/// `EVTCHNOP_unmask(port)`.
pub fn unmask(port: u32) -> Result<u64, Errno> {
    op(EVTCHNOP_UNMASK, &mut EvtchnUnmask { port })
}

/// `EVTCHNOP_reset(dom)`: closes every port (and leaves the FIFO ABI).
pub fn reset(dom: u16) -> Result<u64, Errno> {
    op(EVTCHNOP_RESET, &mut EvtchnReset { dom })
}

/// `EVTCHNOP_init_control(control_gfn, offset, vcpu)`; the argument as Xen
/// left it (its `link_bits`) on success.
///
/// # Safety
/// On success Xen writes the control block in that frame from now on.
pub unsafe fn init_control(
    control_gfn: u64,
    offset: u32,
    vcpu: u32,
) -> Result<EvtchnInitControl, Errno> {
    let mut a = EvtchnInitControl {
        control_gfn,
        offset,
        vcpu,
        ..Default::default()
    };
    op(EVTCHNOP_INIT_CONTROL, &mut a)?;
    Ok(a)
}

/// `EVTCHNOP_expand_array(array_gfn)`.
///
/// # Safety
/// On success Xen writes event words in that frame from now on.
pub unsafe fn expand_array(array_gfn: u64) -> Result<u64, Errno> {
    op(EVTCHNOP_EXPAND_ARRAY, &mut EvtchnExpandArray { array_gfn })
}

/// `EVTCHNOP_set_priority(port, priority)`.
pub fn set_priority(port: u32, priority: u32) -> Result<u64, Errno> {
    op(
        EVTCHNOP_SET_PRIORITY,
        &mut EvtchnSetPriority { port, priority },
    )
}

// ---------------------------------------------------------------------------
// Callback entry
// ---------------------------------------------------------------------------

/// Registers saved by the entry stubs, then Xen's frame (rcx/r11 popped).
#[repr(C)]
#[derive(Debug, Clone)]
pub struct CallbackFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// [`TAG_UPCALL`] or [`TAG_NMI`].
    pub tag: u64,
    pub rip: u64,
    /// Bits 0-15 selector; bits 32-39 the saved `evtchn_upcall_mask`.
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl CallbackFrame {
    /// The `evtchn_upcall_mask` saved in the CS slot.
    pub const fn saved_mask(&self) -> u8 {
        (self.cs >> 32) as u8
    }
}

/// Tag of the event callback entry.
pub const TAG_UPCALL: u64 = 0;
/// Tag of the NMI entry.
pub const TAG_NMI: u64 = 1;

global_asm!(
    ".pushsection .text.xg_evt, \"ax\", @progbits",
    // Global: callers in other crates (test binaries) inline the users.
    ".globl xg_evt_upcall_entry",
    ".globl xg_evt_nmi_entry",
    ".balign 16",
    "xg_evt_upcall_entry:",
    "pop rcx",
    "pop r11",
    "push {tag_upcall}",
    "jmp xg_evt_common",
    ".balign 16",
    "xg_evt_nmi_entry:",
    "pop rcx",
    "pop r11",
    "push {tag_nmi}",
    "jmp xg_evt_common",
    "xg_evt_common:",
    "push rax",
    "push rbx",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rbp",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov rdi, rsp",
    "mov rbx, rsp",
    "and rsp, -16",
    // A bounce keeps the interrupted DF; Rust code needs it clear
    // (HYPERVISOR_iret restores the interrupted RFLAGS).
    "cld",
    "call {dispatch}",
    "mov rsp, rbx",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rbp",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rbx",
    "pop rax",
    "add rsp, 8",
    "push 0",
    "jmp xg_hypercall_page + {iret_slot}",
    ".popsection",
    tag_upcall = const TAG_UPCALL,
    tag_nmi = const TAG_NMI,
    dispatch = sym dispatch,
    iret_slot = const IRET as usize * HYPERCALL_STUB_SIZE,
);

extern "C" {
    fn xg_evt_upcall_entry();
    fn xg_evt_nmi_entry();
}

/// A callback handler.
pub type Handler = fn(&mut CallbackFrame);

static UPCALL_HANDLER: AtomicUsize = AtomicUsize::new(0);
static NMI_HANDLER: AtomicUsize = AtomicUsize::new(0);
static UPCALLS: AtomicU64 = AtomicU64::new(0);
static NMIS: AtomicU64 = AtomicU64::new(0);

/// What the vcpu_info and the frame said at the entry of a callback, before
/// its handler ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `evtchn_upcall_mask` at entry.
    pub mask: u8,
    /// `evtchn_upcall_pending` at entry.
    pub pending: u8,
    /// `evtchn_pending_sel` at entry.
    pub sel: u64,
    /// The mask saved in the frame's CS slot.
    pub saved_mask: u8,
    /// Interrupted RIP.
    pub rip: u64,
    /// Frame RFLAGS.
    pub rflags: u64,
    /// System time at entry (ns).
    pub time: u64,
}

/// Last snapshots: [upcall, NMI], as 7 words each.
static SNAPSHOTS: [[AtomicU64; 7]; 2] = [const { [const { AtomicU64::new(0) }; 7] }; 2];

fn store_snapshot(which: usize, s: &Snapshot) {
    let w = &SNAPSHOTS[which];
    let words = [
        u64::from(s.mask),
        u64::from(s.pending),
        s.sel,
        u64::from(s.saved_mask),
        s.rip,
        s.rflags,
        s.time,
    ];
    for (slot, v) in w.iter().zip(words) {
        slot.store(v, Ordering::SeqCst);
    }
}

fn load_snapshot(which: usize) -> Snapshot {
    let w = &SNAPSHOTS[which];
    let g = |i: usize| w[i].load(Ordering::SeqCst);
    Snapshot {
        mask: g(0) as u8,
        pending: g(1) as u8,
        sel: g(2),
        saved_mask: g(3) as u8,
        rip: g(4),
        rflags: g(5),
        time: g(6),
    }
}

extern "C" fn dispatch(frame: &mut CallbackFrame) {
    let info = vcpu::read_info();
    let snap = Snapshot {
        mask: info.evtchn_upcall_mask,
        pending: info.evtchn_upcall_pending,
        sel: info.evtchn_pending_sel,
        saved_mask: frame.saved_mask(),
        rip: frame.rip,
        rflags: frame.rflags,
        time: vcpu::now_ns(),
    };
    let (which, counter, handler) = if frame.tag == TAG_NMI {
        (1, &NMIS, &NMI_HANDLER)
    } else {
        (0, &UPCALLS, &UPCALL_HANDLER)
    };
    store_snapshot(which, &snap);
    counter.fetch_add(1, Ordering::SeqCst);
    let h = handler.load(Ordering::SeqCst);
    if h != 0 {
        // SAFETY: only `set_*_handler` store here, always a `Handler`.
        let h: Handler = unsafe { core::mem::transmute::<usize, Handler>(h) };
        h(frame);
    }
}

/// Registers the event callback (`CALLBACKTYPE_event`) at the entry stub and
/// sets its handler.
pub fn install_upcall(handler: Handler) -> Result<u64, Errno> {
    set_upcall_handler(handler);
    // SAFETY: the stub copes with Xen's event frame and returns with iret.
    unsafe {
        hypercall::callback_register(
            CALLBACKTYPE_EVENT,
            0,
            xg_evt_upcall_entry as *const () as u64,
        )
    }
}

/// Replaces the event callback's handler.
pub fn set_upcall_handler(handler: Handler) {
    UPCALL_HANDLER.store(handler as usize, Ordering::SeqCst);
}

/// Points trap-table vector 2 (NMI) at the NMI entry stub (DPL 0, masking
/// events) and sets its handler.
pub fn install_nmi(handler: Handler) -> Result<u64, Errno> {
    set_nmi_handler(handler);
    let table = [
        TrapInfo {
            vector: 2,
            flags: TI_MASK_EVENTS,
            cs: FLAT_KERNEL_CS,
            pad: 0,
            address: nmi_entry(),
        },
        TrapInfo::default(),
    ];
    // SAFETY: the stub copes with an exception frame without error code and
    // returns with iret.
    unsafe { hypercall::set_trap_table(&table) }
}

/// Address of the NMI entry stub (e.g. for `CALLBACKTYPE_nmi`); it expects
/// Xen's exception frame without error code and returns with iret.
pub fn nmi_entry() -> u64 {
    xg_evt_nmi_entry as *const () as u64
}

/// Replaces the NMI handler (see [`install_nmi`]).
pub fn set_nmi_handler(handler: Handler) {
    NMI_HANDLER.store(handler as usize, Ordering::SeqCst);
}

/// Number of event callbacks entered so far.
pub fn upcalls() -> u64 {
    UPCALLS.load(Ordering::SeqCst)
}

/// Number of NMIs entered so far.
pub fn nmis() -> u64 {
    NMIS.load(Ordering::SeqCst)
}

/// The snapshot taken at the last event callback.
pub fn last_upcall() -> Snapshot {
    load_snapshot(0)
}

/// The snapshot taken at the last NMI.
pub fn last_nmi() -> Snapshot {
    load_snapshot(1)
}

// ---------------------------------------------------------------------------
// 2-level ABI
// ---------------------------------------------------------------------------

fn shared() -> *mut SharedInfo {
    shared_info::get()
        .expect("shared_info is not mapped")
        .as_ptr() as *mut SharedInfo
}

fn word(array: *mut u64, port: u32) -> &'static AtomicU64 {
    assert!(port < 4096, "2-level port {port} out of range");
    // SAFETY: the arrays are 64 aligned u64 inside shared_info, mapped for
    // the domain's life; Xen changes them with atomic bit operations, so
    // AtomicU64 (same layout) is the right view.
    unsafe { &*(array.add((port / 64) as usize) as *const AtomicU64) }
}

fn pending_word(port: u32) -> &'static AtomicU64 {
    // SAFETY: projection to a field of the mapped page, no dereference.
    word(
        unsafe { (&raw mut (*shared()).evtchn_pending) as *mut u64 },
        port,
    )
}

fn mask_word(port: u32) -> &'static AtomicU64 {
    // SAFETY: projection to a field of the mapped page, no dereference.
    word(
        unsafe { (&raw mut (*shared()).evtchn_mask) as *mut u64 },
        port,
    )
}

fn bit(port: u32) -> u64 {
    1 << (port % 64)
}

/// Whether `port`'s bit in `evtchn_pending` is set.
pub fn is_pending(port: u32) -> bool {
    pending_word(port).load(Ordering::SeqCst) & bit(port) != 0
}

/// Whether `port`'s bit in `evtchn_mask` is set.
pub fn is_masked(port: u32) -> bool {
    mask_word(port).load(Ordering::SeqCst) & bit(port) != 0
}

/// Sets `port`'s mask bit (Linux's `mask_evtchn`).
pub fn mask(port: u32) {
    mask_word(port).fetch_or(bit(port), Ordering::SeqCst);
}

/// Clears `port`'s mask bit in shared_info only (no hypercall).
pub fn clear_mask_bit(port: u32) {
    mask_word(port).fetch_and(!bit(port), Ordering::SeqCst);
}

/// Clears `port`'s pending bit (Linux's `clear_evtchn`).
pub fn clear_pending(port: u32) {
    pending_word(port).fetch_and(!bit(port), Ordering::SeqCst);
}

/// Linux's 2-level upcall loop; `f` gets each port handled, in order.
/// Returns the number of ports handled.
pub fn consume_2l(mut f: impl FnMut(u32)) -> u32 {
    let mut n = 0;
    loop {
        vcpu::set_upcall_pending(0);
        let mut sel = vcpu::take_pending_sel();
        while sel != 0 {
            let w = sel.trailing_zeros();
            sel &= sel - 1;
            loop {
                let p0 = w * 64;
                let bits =
                    pending_word(p0).load(Ordering::SeqCst) & !mask_word(p0).load(Ordering::SeqCst);
                if bits == 0 {
                    break;
                }
                let port = p0 + bits.trailing_zeros();
                clear_pending(port);
                f(port);
                n += 1;
            }
        }
        if vcpu::upcall_pending() == 0 {
            return n;
        }
    }
}

// ---------------------------------------------------------------------------
// FIFO ABI
// ---------------------------------------------------------------------------

static FIFO_CB: AtomicU64 = AtomicU64::new(0);
static FIFO_ARRAY: AtomicU64 = AtomicU64::new(0);
/// The guest's own queue heads (Linux's `evtchn_fifo_queue.head`).
static FIFO_HEADS: [AtomicU32; EVTCHN_FIFO_MAX_QUEUES] =
    [const { AtomicU32::new(0) }; EVTCHN_FIFO_MAX_QUEUES];

/// Event words per event-array page.
pub const FIFO_WORDS_PER_PAGE: u32 = 1024;

/// Tells the FIFO consumer where the control block and the (one-page) event
/// array are mapped, and forgets its queue heads.
pub fn fifo_attach(control_block_va: u64, array_va: u64) {
    FIFO_CB.store(control_block_va, Ordering::SeqCst);
    FIFO_ARRAY.store(array_va, Ordering::SeqCst);
    for h in &FIFO_HEADS {
        h.store(0, Ordering::SeqCst);
    }
}

/// The event word of `port` (< 1024).
///
/// # Panics
/// Without [`fifo_attach`], or for a port beyond the first page.
pub fn fifo_word(port: u32) -> &'static AtomicU32 {
    let base = FIFO_ARRAY.load(Ordering::SeqCst);
    assert!(base != 0, "FIFO event array not attached");
    assert!(port < FIFO_WORDS_PER_PAGE, "FIFO port {port} beyond page 0");
    // SAFETY: the attached page is the guest's, mapped for the domain's
    // life and shared with Xen, which changes words with atomic operations.
    unsafe { &*((base + u64::from(port) * 4) as *const AtomicU32) }
}

fn fifo_cb() -> *mut EvtchnFifoControlBlock {
    let cb = FIFO_CB.load(Ordering::SeqCst);
    assert!(cb != 0, "FIFO control block not attached");
    cb as *mut EvtchnFifoControlBlock
}

/// The control block's `ready` word.
pub fn fifo_ready() -> &'static AtomicU32 {
    // SAFETY: the attached control block is mapped for the domain's life and
    // Xen sets `ready` bits atomically.
    unsafe { &*((&raw mut (*fifo_cb()).ready) as *const AtomicU32) }
}

/// The control block's `head[priority]`.
pub fn fifo_cb_head(priority: usize) -> u32 {
    // SAFETY: as for `fifo_ready`; `head` has EVTCHN_FIFO_MAX_QUEUES entries
    // (indexing panics beyond).
    unsafe { (&raw const (*fifo_cb()).head[priority]).read_volatile() }
}

/// FIFO event word bit `b` as a mask.
pub const fn fifo_bit(b: u32) -> u32 {
    1 << b
}

/// Linux's `clear_linked`: clears LINKED and LINK, returns the old LINK.
fn fifo_clear_linked(w: &AtomicU32) -> u32 {
    let mut old = w.load(Ordering::SeqCst);
    loop {
        let new = old & !(fifo_bit(EVTCHN_FIFO_LINKED) | EVTCHN_FIFO_LINK_MASK);
        match w.compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return old & EVTCHN_FIFO_LINK_MASK,
            Err(cur) => old = cur,
        }
    }
}

/// Linux's FIFO upcall loop; `f` gets (port, priority) of each event
/// handled, in order. Returns the number handled.
pub fn consume_fifo(mut f: impl FnMut(u32, u32)) -> u32 {
    let mut n = 0;
    loop {
        vcpu::set_upcall_pending(0);
        let ready_word = fifo_ready();
        let mut ready = ready_word.swap(0, Ordering::SeqCst);
        while ready != 0 {
            let q = ready.trailing_zeros();
            let mut head = FIFO_HEADS[q as usize].load(Ordering::SeqCst);
            if head == 0 {
                head = fifo_cb_head(q as usize);
            }
            let port = head;
            let w = fifo_word(port);
            let next = fifo_clear_linked(w);
            if next == 0 {
                ready &= !(1 << q);
            }
            let word = w.load(Ordering::SeqCst);
            if word & fifo_bit(EVTCHN_FIFO_PENDING) != 0 && word & fifo_bit(EVTCHN_FIFO_MASKED) == 0
            {
                w.fetch_and(!fifo_bit(EVTCHN_FIFO_PENDING), Ordering::SeqCst);
                f(port, q);
                n += 1;
            }
            FIFO_HEADS[q as usize].store(next, Ordering::SeqCst);
            ready |= ready_word.swap(0, Ordering::SeqCst);
        }
        if vcpu::upcall_pending() == 0 {
            return n;
        }
    }
}

// ---------------------------------------------------------------------------
// Log
// ---------------------------------------------------------------------------

/// Capacity of the [`Log`].
pub const LOG_LEN: usize = 64;

static LOG_N: AtomicUsize = AtomicUsize::new(0);
static LOG_PORTS: [AtomicU32; LOG_LEN] = [const { AtomicU32::new(0) }; LOG_LEN];
static LOG_TIMES: [AtomicU64; LOG_LEN] = [const { AtomicU64::new(0) }; LOG_LEN];

/// A copy of the event log: ports and times in the order appended.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    pub len: usize,
    pub ports: [u32; LOG_LEN],
    pub times: [u64; LOG_LEN],
}

impl Log {
    /// The ports logged.
    pub fn ports(&self) -> &[u32] {
        &self.ports[..self.len]
    }

    /// The times logged.
    pub fn times(&self) -> &[u64] {
        &self.times[..self.len]
    }
}

/// Appends (port, time); entries beyond [`LOG_LEN`] are counted but dropped.
pub fn log_push(port: u32, time: u64) {
    let i = LOG_N.fetch_add(1, Ordering::SeqCst);
    if i < LOG_LEN {
        LOG_PORTS[i].store(port, Ordering::SeqCst);
        LOG_TIMES[i].store(time, Ordering::SeqCst);
    }
}

/// Empties the log.
pub fn log_clear() {
    LOG_N.store(0, Ordering::SeqCst);
}

/// Number of entries appended since the last [`log_clear`] (may exceed [`LOG_LEN`]).
pub fn log_count() -> usize {
    LOG_N.load(Ordering::SeqCst)
}

/// A copy of the log.
pub fn log() -> Log {
    let len = LOG_N.load(Ordering::SeqCst).min(LOG_LEN);
    let mut l = Log {
        len,
        ports: [0; LOG_LEN],
        times: [0; LOG_LEN],
    };
    for i in 0..len {
        l.ports[i] = LOG_PORTS[i].load(Ordering::SeqCst);
        l.times[i] = LOG_TIMES[i].load(Ordering::SeqCst);
    }
    l
}

/// A ready-made upcall handler: [`consume_2l`], logging each port with the
/// system time.
pub fn log_2l(_frame: &mut CallbackFrame) {
    consume_2l(|port| log_push(port, vcpu::now_ns()));
}

/// A ready-made upcall handler: [`consume_fifo`], logging each port with the
/// system time.
pub fn log_fifo(_frame: &mut CallbackFrame) {
    consume_fifo(|port, _prio| log_push(port, vcpu::now_ns()));
}

const _: () = assert!(size_of::<CallbackFrame>() == 21 * 8);
