//! Event channels for PV guests: the guest-memory side of `xenolith_core::evtchn` and the
//! event_channel_op hypercall.
//!
//! The 2-level ABI lives in shared_info (pending and mask bitmaps) and each vCPU's vcpu_info
//! (selector, upcall flag); the FIFO ABI in guest frames the guest registers (control blocks,
//! event arrays), on which the hypervisor holds writable type references while they are in
//! use. All accesses are atomic, since the guest changes the same words concurrently.
use core::sync::atomic::Ordering::SeqCst;

use alloc::vec::Vec;
use xen_abi::errno::Errno;
use xen_abi::event_channel as ev;
use xen_abi::types::{DomId, EvtchnPort, VcpuId};
use xenolith_core::evtchn::{Bitmap, EventMemory, EvtchnDomain, Notify, SendAction};
use xenolith_core::pagetype::PageType;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::domain::Domain;
use crate::hypercall::{Ctx, Outcome};
use crate::mm::{atomic_u32, atomic_u64, atomic_u8, with_frames};

/// Frames of the FIFO ABI a domain registered.
#[derive(Debug, Default)]
pub struct FifoFrames {
    /// Per vCPU: (frame, offset) of its control block.
    pub control: Vec<Option<(u64, u32)>>,
    /// Event-array pages, in order.
    pub pages: Vec<u64>,
}

/// The guest memory of one domain's event channels.
pub struct DomEvents<'a> {
    domid: u16,
    shared_info: u64,
    vcpu_info: Vec<u64>,
    fifo: &'a mut FifoFrames,
}

const PENDING_OFF: u64 = 0x800;
const MASK_OFF: u64 = 0xa00;
const WORDS_PER_PAGE: u32 = 1024;

impl DomEvents<'_> {
    fn bitmap(&self, map: Bitmap, word: usize) -> &'static core::sync::atomic::AtomicU64 {
        let off = match map {
            Bitmap::Pending => PENDING_OFF,
            Bitmap::Mask => MASK_OFF,
        };
        atomic_u64((self.shared_info << 12) + off + (word as u64 % 64) * 8)
    }

    fn vcpu(&self, v: VcpuId) -> u64 {
        self.vcpu_info
            .get(v.0 as usize)
            .copied()
            .unwrap_or(self.vcpu_info[0])
    }

    fn word(&self, port: EvtchnPort) -> Option<&'static core::sync::atomic::AtomicU32> {
        let page = *self.fifo.pages.get((port.0 / WORDS_PER_PAGE) as usize)?;
        Some(atomic_u32(
            (page << 12) + u64::from(port.0 % WORDS_PER_PAGE) * 4,
        ))
    }

    fn control(&self, v: VcpuId) -> Option<u64> {
        let (mfn, off) = (*self.fifo.control.get(v.0 as usize)?)?;
        Some((mfn << 12) + u64::from(off))
    }

    fn take_writable(&self, gfn: u64) -> Result<(), Errno> {
        let dom = xenolith_core::pagetype::Dom {
            id: self.domid,
            io: false,
            xen_pages: false,
            foreign: None,
        };
        with_frames(|ft, mem| ft.get_page_and_type(mem, gfn, PageType::Writable, dom))
            .map_err(|_| Errno::EINVAL)
    }
}

fn release(mfn: u64) {
    with_frames(|ft, mem| ft.put_page_and_type(mem, mfn));
}

impl EventMemory for DomEvents<'_> {
    fn bitmap_load(&self, map: Bitmap, word: usize) -> u64 {
        self.bitmap(map, word).load(SeqCst)
    }
    fn bitmap_fetch_or(&mut self, map: Bitmap, word: usize, bits: u64) -> u64 {
        self.bitmap(map, word).fetch_or(bits, SeqCst)
    }
    fn bitmap_fetch_and(&mut self, map: Bitmap, word: usize, bits: u64) -> u64 {
        self.bitmap(map, word).fetch_and(bits, SeqCst)
    }
    fn selector_fetch_or(&mut self, vcpu: VcpuId, bits: u64) -> u64 {
        atomic_u64(self.vcpu(vcpu) + 8).fetch_or(bits, SeqCst)
    }
    fn upcall_pending_test_and_set(&mut self, vcpu: VcpuId) -> bool {
        atomic_u8(self.vcpu(vcpu)).swap(1, SeqCst) != 0
    }
    fn fifo_map_control_block(&mut self, vcpu: VcpuId, gfn: u64, offset: u32) -> Result<(), Errno> {
        self.take_writable(gfn)?;
        let slot = vcpu.0 as usize;
        if self.fifo.control.len() <= slot {
            self.fifo.control.resize(slot + 1, None);
        }
        if let Some((old, _)) = self.fifo.control[slot].replace((gfn, offset)) {
            release(old);
        }
        Ok(())
    }
    fn fifo_map_array_page(&mut self, index: u32, gfn: u64) -> Result<(), Errno> {
        if index as usize != self.fifo.pages.len() {
            return Err(Errno::EINVAL);
        }
        self.take_writable(gfn)?;
        self.fifo.pages.push(gfn);
        Ok(())
    }
    fn fifo_unmap_all(&mut self) {
        for (m, _) in self.fifo.control.drain(..).flatten() {
            release(m);
        }
        for m in self.fifo.pages.drain(..) {
            release(m);
        }
    }
    fn fifo_word_load(&self, port: EvtchnPort) -> u32 {
        self.word(port).map_or(0, |w| w.load(SeqCst))
    }
    fn fifo_word_fetch_or(&mut self, port: EvtchnPort, bits: u32) -> u32 {
        self.word(port).map_or(0, |w| w.fetch_or(bits, SeqCst))
    }
    fn fifo_word_fetch_and(&mut self, port: EvtchnPort, bits: u32) -> u32 {
        self.word(port).map_or(0, |w| w.fetch_and(bits, SeqCst))
    }
    fn fifo_word_compare_exchange(
        &mut self,
        port: EvtchnPort,
        cur: u32,
        new: u32,
    ) -> Result<u32, u32> {
        match self.word(port) {
            Some(w) => w.compare_exchange(cur, new, SeqCst, SeqCst),
            None => Err(0),
        }
    }
    fn fifo_ready_fetch_or(&mut self, vcpu: VcpuId, bits: u32) -> u32 {
        self.control(vcpu)
            .map_or(0, |a| atomic_u32(a).fetch_or(bits, SeqCst))
    }
    fn fifo_head_store(&mut self, vcpu: VcpuId, priority: u32, port: EvtchnPort) {
        if let Some(a) = self.control(vcpu) {
            atomic_u32(a + 8 + u64::from(priority % 16) * 4).store(port.0, SeqCst);
        }
    }
}

/// Splits a domain into its event table and the memory view the table works on.
pub fn parts(dom: &mut Domain) -> (&mut EvtchnDomain, DomEvents<'_>) {
    let vcpu_info = dom.vcpus.iter().map(|v| v.vcpu_info_maddr).collect();
    let mem = DomEvents {
        domid: dom.id,
        shared_info: dom.shared_info_mfn,
        vcpu_info,
        fifo: &mut dom.fifo,
    };
    (&mut dom.evtchn, mem)
}

/// Raises a VIRQ on a vCPU of a domain (no effect if the guest has not bound it).
pub fn send_virq(dom: &mut Domain, vcpu: u32, virq: u32) -> Notify {
    let (tab, mut mem) = parts(dom);
    tab.send_virq(&mut mem, VcpuId(vcpu), virq)
}

use xen_abi::types::DOMID_SELF;

/// A domain other than the caller that exists and is not a zombie.
fn live(doms: &mut crate::domain::Domains, id: u16) -> Option<&mut Domain> {
    doms.get_mut(id).filter(|d| !d.dead)
}

/// The domain an operation names in its `dom` field: the caller (or DOMID_SELF), or another
/// one if the caller is privileged (-ESRCH if it does not exist, -EPERM for the unprivileged),
/// as Xen's XSM_TARGET checks.
fn controlled<'a>(c: &'a mut Ctx<'_>, d: u16) -> Result<&'a mut Domain, Errno> {
    if d == DOMID_SELF || d == c.dom.id {
        return Ok(c.dom);
    }
    let privileged = c.dom.privileged;
    let t = live(c.doms, d).ok_or(Errno::ESRCH)?;
    if privileged {
        Ok(t)
    } else {
        Err(Errno::EPERM)
    }
}

/// Raises `port` of domain `r`, the far end of `from_dom`'s `from_port`, and interrupts the CPU
/// its notified vCPU runs on (a blocked one is woken on the way back to the guest).
fn deliver_remote(r: &mut Domain, port: EvtchnPort, from_dom: DomId, from_port: EvtchnPort) {
    let (rtab, mut rmem) = parts(r);
    match rtab.deliver_interdomain(&mut rmem, port, from_dom, from_port) {
        xenolith_core::evtchn::Delivery::Raised(n) => {
            if let Some(cpu) = n
                .kick
                .and_then(|v| r.vcpus.get(v.0 as usize))
                .and_then(|v| v.cpu)
            {
                crate::sched::kick(cpu);
            }
        }
        xenolith_core::evtchn::Delivery::Consumer { consumer, port, .. } => {
            crate::debug!(
                "d{}: notification for backend {:?} on port {}",
                r.id,
                consumer,
                port.0
            );
        }
        xenolith_core::evtchn::Delivery::Dropped => {}
    }
}

/// Tells the far ends of channels `closer` closed that their peer went (they become unbound
/// for it again). `also` is a domain taken out of `doms` that may hold such an end.
pub fn close_remote_ends(
    doms: &mut crate::domain::Domains,
    mut also: Option<&mut Domain>,
    closer: u16,
    ends: Vec<xenolith_core::evtchn::RemoteEnd>,
) {
    for e in ends {
        let d = match also.as_deref_mut() {
            Some(a) if a.id == e.dom.0 => Some(a),
            _ => doms.get_mut(e.dom.0),
        };
        if let Some(d) = d {
            d.evtchn.peer_closed(e.port, DomId(closer), e.peer_port);
        }
    }
}

/// Reads an argument struct, runs `f` on it, writes it back if `f` succeeded.
fn with_arg<T: FromBytes + IntoBytes + Immutable + KnownLayout>(
    c: &mut Ctx<'_>,
    arg: u64,
    write_back: bool,
    f: impl FnOnce(&mut Ctx<'_>, &mut T) -> Result<(), Errno>,
) -> Outcome {
    let mut a: T = match c.mem().read_obj(arg) {
        Ok(a) => a,
        Err(e) => return Err(e).into(),
    };
    if let Err(e) = f(c, &mut a) {
        return Err(e).into();
    }
    if write_back {
        if let Err(e) = c.mem().write_obj(arg, &a) {
            return Err(e).into();
        }
    }
    Ok(0).into()
}

/// event_channel_op(cmd, arg).
pub fn event_channel_op(c: &mut Ctx<'_>, a: [u64; 5]) -> Outcome {
    let (cmd, arg) = (a[0], a[1]);
    let Ok(cmd) = u32::try_from(cmd) else {
        return Err(Errno::ENOSYS).into();
    };
    match cmd {
        ev::EVTCHNOP_ALLOC_UNBOUND => {
            with_arg(c, arg, true, |c, x: &mut ev::EvtchnAllocUnbound| {
                let remote = if x.remote_dom == DOMID_SELF {
                    DomId(c.dom.id)
                } else {
                    DomId(x.remote_dom)
                };
                // In the caller's table, or (for dom0, as a toolstack does) in another's.
                let (tab, mem) = parts(controlled(c, x.dom)?);
                x.port = tab.alloc_unbound(&mem, remote)?.0;
                Ok(())
            })
        }
        ev::EVTCHNOP_BIND_INTERDOMAIN => {
            with_arg(c, arg, true, |c, x: &mut ev::EvtchnBindInterdomain| {
                let rdom = if x.remote_dom == DOMID_SELF {
                    c.dom.id
                } else {
                    x.remote_dom
                };
                let me = c.dom.id;
                let (tab, mut mem) = parts(c.dom);
                let port = if rdom == me {
                    tab.bind_interdomain(&mut mem, None, EvtchnPort(x.remote_port))?
                        .0
                } else {
                    let r = live(c.doms, rdom).ok_or(Errno::ESRCH)?;
                    tab.bind_interdomain(&mut mem, Some(&mut r.evtchn), EvtchnPort(x.remote_port))?
                        .0
                };
                x.local_port = port.0;
                Ok(())
            })
        }
        ev::EVTCHNOP_BIND_VIRQ => with_arg(c, arg, true, |c, x: &mut ev::EvtchnBindVirq| {
            let (tab, mem) = parts(c.dom);
            x.port = tab.bind_virq(&mem, x.virq, VcpuId(x.vcpu))?.0;
            Ok(())
        }),
        ev::EVTCHNOP_BIND_IPI => with_arg(c, arg, true, |c, x: &mut ev::EvtchnBindIpi| {
            let (tab, mem) = parts(c.dom);
            x.port = tab.bind_ipi(&mem, VcpuId(x.vcpu))?.0;
            Ok(())
        }),
        ev::EVTCHNOP_CLOSE => with_arg(c, arg, false, |c, x: &mut ev::EvtchnClose| {
            let port = EvtchnPort(x.port);
            let remote = c.dom.evtchn.remote_domain(port);
            let rtab = remote
                .and_then(|r| live(c.doms, r.0))
                .map(|r| &mut r.evtchn);
            let (tab, mut mem) = parts(c.dom);
            // A peer that is gone has nothing left to update.
            tab.close(&mut mem, port, rtab).map(|_| ())
        }),
        ev::EVTCHNOP_SEND => with_arg(c, arg, false, |c, x: &mut ev::EvtchnSend| {
            let me = c.dom.id;
            let (tab, mut mem) = parts(c.dom);
            match tab.send(&mut mem, EvtchnPort(x.port))? {
                SendAction::Dropped | SendAction::Local(_) => Ok(()),
                SendAction::Remote {
                    dom,
                    port,
                    from_port,
                } => {
                    if let Some(r) = live(c.doms, dom.0) {
                        deliver_remote(r, port, DomId(me), from_port);
                    }
                    Ok(())
                }
                SendAction::Consumer { consumer, port, .. } => {
                    crate::debug!(
                        "d{}: notification for backend {:?} on port {}",
                        c.dom.id,
                        consumer,
                        port.0
                    );
                    Ok(())
                }
            }
        }),
        ev::EVTCHNOP_STATUS => with_arg(c, arg, true, |c, x: &mut ev::EvtchnStatus| {
            let port = EvtchnPort(x.port);
            controlled(c, x.dom)?.evtchn.status(port, x)
        }),
        ev::EVTCHNOP_BIND_VCPU => with_arg(c, arg, false, |c, x: &mut ev::EvtchnBindVcpu| {
            c.dom.evtchn.bind_vcpu(EvtchnPort(x.port), VcpuId(x.vcpu))
        }),
        ev::EVTCHNOP_UNMASK => with_arg(c, arg, false, |c, x: &mut ev::EvtchnUnmask| {
            let (tab, mut mem) = parts(c.dom);
            tab.unmask(&mut mem, EvtchnPort(x.port)).map(|_| ())
        }),
        ev::EVTCHNOP_RESET => with_arg(c, arg, false, |c, x: &mut ev::EvtchnReset| {
            let me = c.dom.id;
            let target = if x.dom == DOMID_SELF { me } else { x.dom };
            if target == me {
                let (tab, mut mem) = parts(c.dom);
                let ends = tab.reset(&mut mem);
                close_remote_ends(c.doms, None, me, ends);
                return Ok(());
            }
            // Another domain's table (dom0 only), which must be paused, as on Xen.
            let t = controlled(c, target)?;
            if t.paused == 0 {
                return Err(Errno::EINVAL);
            }
            let mut t = c.doms.take(target).ok_or(Errno::ESRCH)?;
            let (tab, mut mem) = parts(&mut t);
            let ends = tab.reset(&mut mem);
            close_remote_ends(c.doms, Some(&mut *c.dom), target, ends);
            c.doms.put(t);
            Ok(())
        }),
        ev::EVTCHNOP_INIT_CONTROL => with_arg(c, arg, true, |c, x: &mut ev::EvtchnInitControl| {
            let (tab, mut mem) = parts(c.dom);
            x.link_bits = tab.init_control(&mut mem, VcpuId(x.vcpu), x.control_gfn, x.offset)?;
            Ok(())
        }),
        ev::EVTCHNOP_EXPAND_ARRAY => with_arg(c, arg, false, |c, x: &mut ev::EvtchnExpandArray| {
            let (tab, mut mem) = parts(c.dom);
            tab.expand_array(&mut mem, x.array_gfn).map(|_| ())
        }),
        ev::EVTCHNOP_SET_PRIORITY => with_arg(c, arg, false, |c, x: &mut ev::EvtchnSetPriority| {
            c.dom.evtchn.set_priority(EvtchnPort(x.port), x.priority)
        }),
        // EVTCHNOP_reset_cont: resets are never left half done here, so there is nothing to
        // continue (Xen's answer when no reset is in progress), after checking the argument.
        14 => match c.mem().read_obj::<ev::EvtchnReset>(arg) {
            Ok(_) => Err(Errno::EBUSY).into(),
            Err(e) => Err(e).into(),
        },
        _ => Err(Errno::ENOSYS).into(),
    }
}
