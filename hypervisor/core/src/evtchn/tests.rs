//! Host tests of event channels: every operation and errno, 2-level and FIFO delivery against a fake
//! guest memory with Linux-like consumers, and property tests of the table invariants.
use std::collections::HashMap;

use proptest::prelude::*;
use xen_abi::event_channel::{
    EVTCHNSTAT_CLOSED, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_IPI, EVTCHNSTAT_UNBOUND, EVTCHNSTAT_VIRQ,
    EVTCHN_FIFO_LINK_MASK, VIRQ_CONSOLE, VIRQ_DEBUG, VIRQ_TIMER,
};

use super::*;

const NV: usize = 4;

#[derive(Clone, Copy, Debug, Default)]
struct Control {
    ready: u32,
    head: [u32; 16],
}

/// Guest memory of one domain, plus the guest's private FIFO consumer state (Linux's per-CPU
/// `cpu_queue.head`).
#[derive(Clone, Debug)]
struct Mem {
    pending: [u64; 64],
    mask: [u64; 64],
    sel: [u64; NV],
    upcall: [u8; NV],
    pages: HashMap<u32, Vec<u32>>,
    control: [Option<Control>; NV],
    local_head: [[u32; 16]; NV],
    /// Next `n` compare-exchanges fail after the "guest" toggles MASKED.
    cmpxchg_interference: u32,
    fail_map: Option<Errno>,
    new_pages_unmasked: bool,
    unmapped: u32,
}

impl Default for Mem {
    fn default() -> Mem {
        Mem {
            pending: [0; 64],
            mask: [0; 64],
            sel: [0; NV],
            upcall: [0; NV],
            pages: HashMap::new(),
            control: [None; NV],
            local_head: [[0; 16]; NV],
            cmpxchg_interference: 0,
            fail_map: None,
            new_pages_unmasked: false,
            unmapped: 0,
        }
    }
}

impl Mem {
    fn map(&mut self, m: Bitmap) -> &mut [u64; 64] {
        match m {
            Bitmap::Pending => &mut self.pending,
            Bitmap::Mask => &mut self.mask,
        }
    }

    fn word(&mut self, port: EvtchnPort) -> &mut u32 {
        let page = self
            .pages
            .get_mut(&(port.0 / 1024))
            .expect("core touched an unmapped event word");
        &mut page[(port.0 % 1024) as usize]
    }

    fn w(&self, port: u32) -> u32 {
        self.pages
            .get(&(port / 1024))
            .map_or(0, |p| p[(port % 1024) as usize])
    }

    fn is_pending_2l(&self, port: u32) -> bool {
        self.pending[(port / 64) as usize] & (1 << (port % 64)) != 0
    }

    // ---- guest actions ----

    fn guest_mask_2l(&mut self, port: u32) {
        self.mask[(port / 64) as usize] |= 1 << (port % 64);
    }

    fn guest_mask_fifo(&mut self, port: u32) {
        *self.word(EvtchnPort(port)) |= FIFO_WORD_MASKED;
    }

    /// Linux 2-level upcall handler: returns the ports handled (pending bits cleared).
    fn guest_drain_2l(&mut self, vcpu: usize) -> Vec<u32> {
        let mut out = Vec::new();
        self.upcall[vcpu] = 0;
        let words = core::mem::take(&mut self.sel[vcpu]);
        for w in 0..64 {
            if words & (1 << w) == 0 {
                continue;
            }
            let bits = self.pending[w] & !self.mask[w];
            for b in 0..64 {
                if bits & (1 << b) != 0 {
                    self.pending[w] &= !(1 << b);
                    out.push((w * 64 + b) as u32);
                }
            }
        }
        out
    }

    /// Linux FIFO upcall handler (`__evtchn_fifo_handle_events`); bounded so that a corrupted queue
    /// fails the test instead of hanging it.
    fn guest_drain_fifo(&mut self, vcpu: usize) -> Vec<u32> {
        let mut out = Vec::new();
        self.upcall[vcpu] = 0;
        let Some(cb) = self.control[vcpu].as_mut() else {
            return out;
        };
        let mut ready = core::mem::take(&mut cb.ready);
        let mut steps = 0;
        while ready != 0 {
            steps += 1;
            assert!(steps < 100_000, "FIFO queue does not terminate");
            let q = ready.trailing_zeros() as usize;
            let mut head = self.local_head[vcpu][q];
            if head == 0 {
                head = self.control[vcpu].as_ref().unwrap().head[q];
            }
            let port = head;
            let w = self.w(port);
            // clear_linked
            let word = self.word(EvtchnPort(port));
            *word &= !(FIFO_WORD_LINKED | EVTCHN_FIFO_LINK_MASK);
            let next = w & EVTCHN_FIFO_LINK_MASK;
            if next == 0 {
                ready &= !(1 << q);
            }
            let now = self.w(port);
            if now & FIFO_WORD_PENDING != 0 && now & FIFO_WORD_MASKED == 0 {
                *self.word(EvtchnPort(port)) &= !FIFO_WORD_PENDING;
                out.push(port);
            }
            self.local_head[vcpu][q] = next;
            let cb = self.control[vcpu].as_mut().unwrap();
            ready |= core::mem::take(&mut cb.ready);
        }
        out
    }
}

impl EventMemory for Mem {
    fn bitmap_load(&self, map: Bitmap, word: usize) -> u64 {
        match map {
            Bitmap::Pending => self.pending[word],
            Bitmap::Mask => self.mask[word],
        }
    }
    fn bitmap_fetch_or(&mut self, map: Bitmap, word: usize, bits: u64) -> u64 {
        let w = &mut self.map(map)[word];
        let old = *w;
        *w |= bits;
        old
    }
    fn bitmap_fetch_and(&mut self, map: Bitmap, word: usize, bits: u64) -> u64 {
        let w = &mut self.map(map)[word];
        let old = *w;
        *w &= bits;
        old
    }
    fn selector_fetch_or(&mut self, vcpu: VcpuId, bits: u64) -> u64 {
        let old = self.sel[vcpu.0 as usize];
        self.sel[vcpu.0 as usize] |= bits;
        old
    }
    fn upcall_pending_test_and_set(&mut self, vcpu: VcpuId) -> bool {
        let old = self.upcall[vcpu.0 as usize] != 0;
        self.upcall[vcpu.0 as usize] = 1;
        old
    }
    fn fifo_map_control_block(
        &mut self,
        vcpu: VcpuId,
        _gfn: u64,
        _offset: u32,
    ) -> Result<(), Errno> {
        if let Some(e) = self.fail_map {
            return Err(e);
        }
        self.control[vcpu.0 as usize] = Some(Control::default());
        Ok(())
    }
    fn fifo_map_array_page(&mut self, index: u32, _gfn: u64) -> Result<(), Errno> {
        if let Some(e) = self.fail_map {
            return Err(e);
        }
        // Linux initialises new pages with every event masked.
        let init = if self.new_pages_unmasked {
            0
        } else {
            FIFO_WORD_MASKED
        };
        assert!(self.pages.insert(index, vec![init; 1024]).is_none());
        Ok(())
    }
    fn fifo_unmap_all(&mut self) {
        self.pages.clear();
        self.control = [None; NV];
        self.local_head = [[0; 16]; NV];
        self.unmapped += 1;
    }
    fn fifo_word_load(&self, port: EvtchnPort) -> u32 {
        assert!(self.pages.contains_key(&(port.0 / 1024)));
        self.w(port.0)
    }
    fn fifo_word_fetch_or(&mut self, port: EvtchnPort, bits: u32) -> u32 {
        let w = self.word(port);
        let old = *w;
        *w |= bits;
        old
    }
    fn fifo_word_fetch_and(&mut self, port: EvtchnPort, bits: u32) -> u32 {
        let w = self.word(port);
        let old = *w;
        *w &= bits;
        old
    }
    fn fifo_word_compare_exchange(
        &mut self,
        port: EvtchnPort,
        cur: u32,
        new: u32,
    ) -> Result<u32, u32> {
        if self.cmpxchg_interference > 0 {
            self.cmpxchg_interference -= 1;
            *self.word(port) ^= FIFO_WORD_MASKED;
        }
        let w = self.word(port);
        if *w == cur {
            *w = new;
            Ok(cur)
        } else {
            Err(*w)
        }
    }
    fn fifo_ready_fetch_or(&mut self, vcpu: VcpuId, bits: u32) -> u32 {
        let cb = self.control[vcpu.0 as usize]
            .as_mut()
            .expect("no control block");
        let old = cb.ready;
        cb.ready |= bits;
        old
    }
    fn fifo_head_store(&mut self, vcpu: VcpuId, priority: u32, port: EvtchnPort) {
        let cb = self.control[vcpu.0 as usize]
            .as_mut()
            .expect("no control block");
        cb.head[priority as usize] = port.0;
    }
}

const A: DomId = DomId(1);
const B: DomId = DomId(2);

fn dom(id: DomId) -> (EvtchnDomain, Mem) {
    (EvtchnDomain::new(id, 2, u32::MAX), Mem::default())
}

fn p(n: u32) -> EvtchnPort {
    EvtchnPort(n)
}

fn v(n: u32) -> VcpuId {
    VcpuId(n)
}

fn status(d: &EvtchnDomain, port: u32) -> Result<EvtchnStatus, Errno> {
    let mut s = EvtchnStatus::default();
    d.status(p(port), &mut s).map(|_| s)
}

// ------------------------------------------------------------------ table operations

#[test]
fn alloc_unbound_lowest_first_and_port0_reserved() {
    let (mut a, m) = dom(A);
    assert_eq!(a.state(p(0)), Some(PortState::Reserved));
    assert_eq!(a.alloc_unbound(&m, B).unwrap(), p(1));
    assert_eq!(a.alloc_unbound(&m, B).unwrap(), p(2));
    let s = status(&a, 1).unwrap();
    assert_eq!(s.status, EVTCHNSTAT_UNBOUND);
    assert_eq!(s.unbound_dom(), 2);
    assert_eq!(s.vcpu, 0);
    // Port 0 and unused ports of the first bucket are "closed"; beyond the bucket -EINVAL.
    assert_eq!(status(&a, 0).unwrap().status, EVTCHNSTAT_CLOSED);
    assert_eq!(status(&a, 63).unwrap().status, EVTCHNSTAT_CLOSED);
    assert_eq!(status(&a, 64), Err(Errno::EINVAL));
    assert_eq!(status(&a, u32::MAX), Err(Errno::EINVAL));
    // Closed ports are reused lowest-first.
    let (mut a2, mut m2) = (a, m);
    a2.close(&mut m2, p(1), None).unwrap();
    assert_eq!(a2.alloc_unbound(&m2, B).unwrap(), p(1));
}

#[test]
fn table_grows_in_buckets_up_to_limits() {
    let (mut a, m) = dom(A);
    for i in 1..=64 {
        assert_eq!(a.alloc_unbound(&m, B).unwrap(), p(i));
    }
    assert_eq!(a.valid_ports(), 128);
    assert_eq!(status(&a, 127).unwrap().status, EVTCHNSTAT_CLOSED);
    // 2-level: 4096 ports including port 0.
    while a.alloc_unbound(&m, B).is_ok() {}
    assert_eq!(a.alloc_unbound(&m, B), Err(Errno::ENOSPC));
    assert_eq!(a.bound_ports().count(), 4095);
    assert_eq!(a.valid_ports(), 4096);
    // Per-domain max_evtchn_port.
    let mut small = EvtchnDomain::new(A, 1, 3);
    for i in 1..=3 {
        assert_eq!(small.bind_ipi(&m, v(0)).unwrap(), p(i));
    }
    assert_eq!(small.bind_ipi(&m, v(0)), Err(Errno::ENOSPC));
}

#[test]
fn interdomain_connect_send_close() {
    let (mut a, mut ma) = dom(A);
    let (mut b, mut mb) = dom(B);
    let pa = a.alloc_unbound(&ma, B).unwrap();
    // B connects; its new local port is raised conservatively.
    let (pb, n) = b.bind_interdomain(&mut mb, Some(&mut a), pa).unwrap();
    assert_eq!(pb, p(1));
    assert_eq!(n.kick, Some(v(0)));
    assert!(mb.is_pending_2l(1));
    assert_eq!(
        a.state(pa),
        Some(PortState::Interdomain {
            remote_dom: B,
            remote_port: pb
        })
    );
    assert_eq!(
        b.state(pb),
        Some(PortState::Interdomain {
            remote_dom: A,
            remote_port: pa
        })
    );
    let s = status(&b, 1).unwrap();
    assert_eq!(s.status, EVTCHNSTAT_INTERDOMAIN);
    assert_eq!((s.interdomain_dom(), s.interdomain_port()), (1, 1));
    assert_eq!(b.remote_domain(pb), Some(A));

    // A sends: B's port is raised (once while pending).
    mb.guest_drain_2l(0);
    let act = a.send(&mut ma, pa).unwrap();
    assert_eq!(
        act,
        SendAction::Remote {
            dom: B,
            port: pb,
            from_port: pa
        }
    );
    let d = b.deliver_interdomain(&mut mb, pb, A, pa);
    assert_eq!(
        d,
        Delivery::Raised(Notify {
            kick: Some(v(0)),
            pollers: Some(pb)
        })
    );
    assert_eq!(
        b.deliver_interdomain(&mut mb, pb, A, pa),
        Delivery::Raised(Notify::NONE)
    );
    // A stale delivery (wrong sender) is dropped.
    assert_eq!(
        b.deliver_interdomain(&mut mb, pb, A, p(9)),
        Delivery::Dropped
    );

    // B closes with A's table at hand: A's end reverts to unbound for B.
    assert_eq!(b.close(&mut mb, pb, Some(&mut a)), Ok(None));
    assert!(!mb.is_pending_2l(1), "close clears pending");
    assert_eq!(b.state(pb), Some(PortState::Free));
    assert_eq!(a.state(pa), Some(PortState::Unbound { remote_dom: B }));
    // Sending on an unbound port is silently dropped.
    assert_eq!(a.send(&mut ma, pa), Ok(SendAction::Dropped));
    assert_eq!(b.deliver_interdomain(&mut mb, pb, A, pa), Delivery::Dropped);

    // Reconnect, then close from A without B's table: the caller fixes B later.
    let (pb, _) = b.bind_interdomain(&mut mb, Some(&mut a), pa).unwrap();
    let left = a.close(&mut ma, pa, None).unwrap();
    assert_eq!(
        left,
        Some(RemoteEnd {
            dom: B,
            port: pb,
            peer_port: pa
        })
    );
    assert!(b.peer_closed(pb, A, pa));
    assert_eq!(b.state(pb), Some(PortState::Unbound { remote_dom: A }));
    assert!(!b.peer_closed(pb, A, pa));
}

#[test]
fn bind_interdomain_errors() {
    let (mut a, ma) = dom(A);
    let (mut b, mut mb) = dom(B);
    let other = a.alloc_unbound(&ma, DomId(7)).unwrap();
    let ipi = a.bind_ipi(&ma, v(0)).unwrap();
    for port in [other, ipi, p(0), p(5), p(64), p(u32::MAX)] {
        assert_eq!(
            b.bind_interdomain(&mut mb, Some(&mut a), port),
            Err(Errno::EINVAL),
            "{port:?}"
        );
    }
    // The failed attempts allocated nothing.
    assert_eq!(b.bound_ports().count(), 0);
    // A full local table fails with -ENOSPC before the remote port is looked at.
    let mut full = EvtchnDomain::new(B, 1, 1);
    full.bind_ipi(&mb, v(0)).unwrap();
    assert_eq!(
        full.bind_interdomain(&mut mb, Some(&mut a), p(99)),
        Err(Errno::ENOSPC)
    );
}

#[test]
fn loopback_interdomain() {
    let (mut a, mut m) = dom(A);
    let p1 = a.alloc_unbound(&m, A).unwrap();
    let (p2, _) = a.bind_interdomain(&mut m, None, p1).unwrap();
    m.guest_drain_2l(0);
    assert_eq!(a.remote_domain(p2), None);
    let act = a.send(&mut m, p2).unwrap();
    assert_eq!(
        act,
        SendAction::Local(Notify {
            kick: Some(v(0)),
            pollers: Some(p1)
        })
    );
    assert_eq!(m.guest_drain_2l(0), vec![p1.0]);
    assert_eq!(a.close(&mut m, p1, None), Ok(None));
    assert_eq!(a.state(p2), Some(PortState::Unbound { remote_dom: A }));
}

#[test]
fn bind_virq_rules() {
    let (mut a, mut m) = dom(A);
    let t0 = a.bind_virq(&m, VIRQ_TIMER, v(0)).unwrap();
    let t1 = a.bind_virq(&m, VIRQ_TIMER, v(1)).unwrap();
    assert_ne!(t0, t1);
    assert_eq!(a.bind_virq(&m, VIRQ_TIMER, v(1)), Err(Errno::EEXIST));
    assert_eq!(a.virq_port(v(1), VIRQ_TIMER), Some(t1));
    assert_eq!(a.bind_virq(&m, VIRQ_CONSOLE, v(1)), Err(Errno::EINVAL));
    assert_eq!(a.bind_virq(&m, NR_VIRQS, v(0)), Err(Errno::EINVAL));
    assert_eq!(a.bind_virq(&m, u32::MAX, v(0)), Err(Errno::EINVAL));
    // Bad virq is checked before the vCPU; the vCPU before EEXIST.
    assert_eq!(a.bind_virq(&m, VIRQ_DEBUG, v(2)), Err(Errno::ENOENT));
    assert_eq!(a.bind_virq(&m, VIRQ_TIMER, v(9)), Err(Errno::ENOENT));
    assert_eq!(a.bind_virq(&m, VIRQ_CONSOLE, v(9)), Err(Errno::EINVAL));
    let c = a.bind_virq(&m, VIRQ_CONSOLE, v(0)).unwrap();
    assert_eq!(a.bind_virq(&m, VIRQ_CONSOLE, v(0)), Err(Errno::EEXIST));
    let s = status(&a, t1.0).unwrap();
    assert_eq!(
        (s.status, s.virq(), s.vcpu),
        (EVTCHNSTAT_VIRQ, VIRQ_TIMER, 1)
    );

    // Per-vCPU delivery goes to the vCPU whose binding it is.
    let n = a.send_virq(&mut m, v(1), VIRQ_TIMER);
    assert_eq!(n.kick, Some(v(1)));
    assert_eq!(m.guest_drain_2l(1), vec![t1.0]);
    assert!(
        a.send_virq(&mut m, v(0), VIRQ_DEBUG).is_none(),
        "unbound VIRQ"
    );
    // A global VIRQ moved to vCPU 1 is delivered there.
    a.bind_vcpu(c, v(1)).unwrap();
    assert_eq!(a.send_virq(&mut m, v(0), VIRQ_CONSOLE).kick, Some(v(1)));
    assert_eq!(a.virq_port(v(0), VIRQ_CONSOLE), Some(c));
    // Closing clears the lookup entry (on vCPU 0 for the moved global VIRQ).
    a.close(&mut m, c, None).unwrap();
    assert_eq!(a.virq_port(v(0), VIRQ_CONSOLE), None);
    a.close(&mut m, t1, None).unwrap();
    assert_eq!(a.virq_port(v(1), VIRQ_TIMER), None);
    assert_eq!(a.bind_virq(&m, VIRQ_TIMER, v(1)), Ok(t1));

    // A domain that is not the global VIRQ handler.
    let (mut b, mb) = dom(B);
    b.set_global_virq_handler(false);
    assert_eq!(b.bind_virq(&mb, VIRQ_CONSOLE, v(0)), Err(Errno::EBUSY));
    assert!(b.bind_virq(&mb, VIRQ_TIMER, v(0)).is_ok());
}

#[test]
fn bind_ipi_and_send() {
    let (mut a, mut m) = dom(A);
    assert_eq!(a.bind_ipi(&m, v(2)), Err(Errno::ENOENT));
    let i1 = a.bind_ipi(&m, v(1)).unwrap();
    let s = status(&a, i1.0).unwrap();
    assert_eq!((s.status, s.vcpu), (EVTCHNSTAT_IPI, 1));
    assert_eq!(a.ipi_ports(v(1)).collect::<Vec<_>>(), vec![i1]);
    assert_eq!(a.ipi_ports(v(0)).count(), 0);
    let act = a.send(&mut m, i1).unwrap();
    assert_eq!(
        act,
        SendAction::Local(Notify {
            kick: Some(v(1)),
            pollers: Some(i1)
        })
    );
    assert_eq!(m.upcall, [0, 1, 0, 0]);
}

#[test]
fn send_errors() {
    let (mut a, mut m) = dom(A);
    let t = a.bind_virq(&m, VIRQ_TIMER, v(0)).unwrap();
    assert_eq!(a.send(&mut m, t), Err(Errno::EINVAL));
    assert_eq!(a.send(&mut m, p(0)), Err(Errno::EINVAL));
    assert_eq!(a.send(&mut m, p(5)), Err(Errno::EINVAL));
    assert_eq!(a.send(&mut m, p(64)), Err(Errno::EINVAL));
}

#[test]
fn close_errors() {
    let (mut a, mut m) = dom(A);
    assert_eq!(a.close(&mut m, p(0), None), Err(Errno::EINVAL));
    assert_eq!(a.close(&mut m, p(3), None), Err(Errno::EINVAL));
    assert_eq!(a.close(&mut m, p(640), None), Err(Errno::EINVAL));
    let i = a.bind_ipi(&m, v(0)).unwrap();
    assert_eq!(a.close(&mut m, i, None), Ok(None));
    assert_eq!(a.close(&mut m, i, None), Err(Errno::EINVAL));
}

#[test]
fn bind_vcpu_rules() {
    let (mut a, m) = dom(A);
    let t = a.bind_virq(&m, VIRQ_TIMER, v(0)).unwrap();
    let g = a.bind_virq(&m, VIRQ_CONSOLE, v(0)).unwrap();
    let u = a.alloc_unbound(&m, B).unwrap();
    let i = a.bind_ipi(&m, v(0)).unwrap();
    assert_eq!(a.bind_vcpu(t, v(1)), Err(Errno::EINVAL));
    assert_eq!(a.bind_vcpu(g, v(1)), Ok(()));
    assert_eq!(a.bind_vcpu(u, v(1)), Ok(()));
    assert_eq!(a.notify_vcpu(u), Some(v(1)));
    assert_eq!(a.bind_vcpu(i, v(1)), Err(Errno::EINVAL));
    assert_eq!(a.bind_vcpu(p(10), v(1)), Err(Errno::EINVAL));
    assert_eq!(a.bind_vcpu(p(0), v(1)), Err(Errno::EINVAL));
    assert_eq!(a.bind_vcpu(p(1000), v(1)), Err(Errno::EINVAL));
    assert_eq!(a.bind_vcpu(p(1000), v(2)), Err(Errno::ENOENT));
    assert_eq!(a.bind_vcpu(u, v(5)), Err(Errno::ENOENT));
}

#[test]
fn freed_port_notifies_vcpu0_again() {
    let (mut a, mut m) = dom(A);
    let u = a.alloc_unbound(&m, B).unwrap();
    a.bind_vcpu(u, v(1)).unwrap();
    a.close(&mut m, u, None).unwrap();
    assert_eq!(status(&a, u.0).unwrap().vcpu, 0);
}

#[test]
fn hypervisor_consumer_ports() {
    let (mut a, mut ma) = dom(A); // the backend side
    let (mut b, mut mb) = dom(B); // the guest
    let cons = XenConsumer(NonZeroU8::new(3).unwrap());
    assert_eq!(a.alloc_unbound_xen(&ma, v(5), B, cons), Err(Errno::ENOENT));
    let xp = a.alloc_unbound_xen(&ma, v(1), B, cons).unwrap();
    assert_eq!(a.consumer(xp), Some(cons));
    let (gp, _) = b.bind_interdomain(&mut mb, Some(&mut a), xp).unwrap();
    // Guest sends: the backend is told instead of raising a port.
    let SendAction::Remote {
        dom,
        port,
        from_port,
    } = b.send(&mut mb, gp).unwrap()
    else {
        panic!("expected remote");
    };
    assert_eq!((dom, port, from_port), (A, xp, gp));
    assert_eq!(
        a.deliver_interdomain(&mut ma, xp, B, gp),
        Delivery::Consumer {
            consumer: cons,
            port: xp,
            vcpu: v(1)
        }
    );
    // The backend notifies the guest.
    assert_eq!(
        a.notify_via_xen(&mut ma, xp),
        SendAction::Remote {
            dom: B,
            port: gp,
            from_port: xp
        }
    );
    // The owning domain cannot touch it.
    assert_eq!(a.close(&mut ma, xp, None), Err(Errno::EINVAL));
    assert_eq!(a.send(&mut ma, xp), Err(Errno::EINVAL));
    assert_eq!(a.bind_vcpu(xp, v(0)), Err(Errno::EINVAL));
    assert_eq!(a.unmask(&mut ma, xp), Ok(Notify::NONE));
    // Reset keeps it; the hypervisor can close it.
    assert!(a.reset(&mut ma).is_empty());
    assert_eq!(a.consumer(xp), Some(cons));
    assert_eq!(a.close_xen(&mut ma, xp, Some(&mut b)), Ok(None));
    assert_eq!(b.state(gp), Some(PortState::Unbound { remote_dom: A }));
    assert_eq!(a.consumer(xp), None);
}

#[test]
fn loopback_consumer() {
    let (mut a, mut m) = dom(A);
    let cons = XenConsumer(NonZeroU8::new(1).unwrap());
    let xp = a.alloc_unbound_xen(&m, v(0), A, cons).unwrap();
    let (gp, _) = a.bind_interdomain(&mut m, None, xp).unwrap();
    m.guest_drain_2l(0);
    assert_eq!(
        a.send(&mut m, gp),
        Ok(SendAction::Consumer {
            consumer: cons,
            port: xp,
            vcpu: v(0)
        })
    );
    assert_eq!(
        a.notify_via_xen(&mut m, xp),
        SendAction::Local(Notify {
            kick: Some(v(0)),
            pollers: Some(gp)
        })
    );
}

#[test]
fn reset_closes_everything_and_reports_peers() {
    let (mut a, mut ma) = dom(A);
    let (mut b, mut mb) = dom(B);
    let pa = a.alloc_unbound(&ma, B).unwrap();
    let (pb, _) = b.bind_interdomain(&mut mb, Some(&mut a), pa).unwrap();
    a.bind_virq(&ma, VIRQ_TIMER, v(1)).unwrap();
    a.bind_ipi(&ma, v(0)).unwrap();
    let left = a.reset(&mut ma);
    assert_eq!(
        left,
        vec![RemoteEnd {
            dom: B,
            port: pb,
            peer_port: pa
        }]
    );
    assert_eq!(a.bound_ports().count(), 0);
    assert_eq!(a.virq_port(v(1), VIRQ_TIMER), None);
    for r in left {
        assert!(b.peer_closed(r.port, A, r.peer_port));
    }
    assert_eq!(b.state(pb), Some(PortState::Unbound { remote_dom: A }));
    // The table is usable again.
    assert_eq!(a.bind_ipi(&ma, v(0)), Ok(p(1)));
}

#[test]
fn destroy_closes_consumers_and_stops_allocation() {
    let (mut a, mut m) = dom(A);
    let cons = XenConsumer(NonZeroU8::new(1).unwrap());
    a.alloc_unbound_xen(&m, v(0), B, cons).unwrap();
    a.bind_ipi(&m, v(0)).unwrap();
    a.init_control(&mut m, v(0), 0x100, 0).unwrap();
    assert!(a.destroy(&mut m).is_empty());
    assert_eq!(a.bound_ports().count(), 0);
    assert_eq!(a.abi(), Abi::TwoLevel);
    assert_eq!(m.unmapped, 1);
    assert_eq!(a.bind_ipi(&m, v(0)), Err(Errno::EINVAL));
}

// ------------------------------------------------------------------ 2-level delivery

#[test]
fn two_level_upcall_once_per_raise_while_pending() {
    let (mut a, mut m) = dom(A);
    let i = a.bind_ipi(&m, v(0)).unwrap();
    let j = a.bind_ipi(&m, v(0)).unwrap();
    let n = a.raise(&mut m, i);
    assert_eq!(
        n,
        Notify {
            kick: Some(v(0)),
            pollers: Some(i)
        }
    );
    assert_eq!((m.upcall[0], m.sel[0]), (1, 1));
    // Re-raise while pending: nothing at all.
    assert_eq!(a.raise(&mut m, i), Notify::NONE);
    // Another port in the same word: pollers only (selector already set).
    assert_eq!(
        a.raise(&mut m, j),
        Notify {
            kick: None,
            pollers: Some(j)
        }
    );
    assert_eq!(m.guest_drain_2l(0), vec![i.0, j.0]);
    assert_eq!(m.guest_drain_2l(0), Vec::<u32>::new());
    // Drained: the next raise delivers again.
    assert_eq!(a.raise(&mut m, i).kick, Some(v(0)));
    assert!(a.is_pending(&m, i));
    assert!(!a.is_masked(&m, i));
}

#[test]
fn two_level_masked_held_until_unmask() {
    let (mut a, mut m) = dom(A);
    let i = a.bind_ipi(&m, v(1)).unwrap();
    m.guest_mask_2l(i.0);
    assert!(a.is_masked(&m, i));
    let n = a.raise(&mut m, i);
    assert_eq!(
        n,
        Notify {
            kick: None,
            pollers: Some(i)
        },
        "pollers see masked ports"
    );
    assert_eq!((m.upcall[1], m.sel[1]), (0, 0));
    assert!(m.is_pending_2l(i.0));
    assert_eq!(m.guest_drain_2l(1), Vec::<u32>::new());
    assert_eq!(
        a.unmask(&mut m, i),
        Ok(Notify {
            kick: Some(v(1)),
            pollers: None
        })
    );
    assert_eq!(m.guest_drain_2l(1), vec![i.0]);
    // Unmasking an unmasked or non-pending port does nothing.
    assert_eq!(a.unmask(&mut m, i), Ok(Notify::NONE));
    m.guest_mask_2l(i.0);
    assert_eq!(a.unmask(&mut m, i), Ok(Notify::NONE));
    // Unmask accepts any valid port, rejects invalid ones.
    assert_eq!(a.unmask(&mut m, p(40)), Ok(Notify::NONE));
    assert_eq!(a.unmask(&mut m, p(64)), Err(Errno::EINVAL));
}

#[test]
fn two_level_selector_semantics() {
    let (mut a, mut m) = dom(A);
    // Ports 1..=65 so that port 65 is in word 1.
    for _ in 1..=65 {
        a.bind_ipi(&m, v(0)).unwrap();
    }
    assert_eq!(a.raise(&mut m, p(65)).kick, Some(v(0)));
    assert_eq!(m.sel[0], 0b10);
    // Guest cleared upcall_pending but has not yet swapped the selector: a raise in the same word
    // relies on the guest's ongoing scan (no new upcall), a raise in a new word marks it.
    m.upcall[0] = 0;
    assert_eq!(a.raise(&mut m, p(64)).kick, None);
    assert_eq!(m.upcall[0], 0);
    assert_eq!(a.raise(&mut m, p(3)).kick, Some(v(0)));
    assert_eq!(m.sel[0], 0b11);
    let mut got = m.guest_drain_2l(0);
    got.sort_unstable();
    assert_eq!(got, vec![3, 64, 65]);
}

// ------------------------------------------------------------------ FIFO

fn fifo_dom(pages: u32) -> (EvtchnDomain, Mem) {
    let (mut a, mut m) = dom(A);
    assert_eq!(a.init_control(&mut m, v(0), 0x1000, 0), Ok(17));
    assert_eq!(a.init_control(&mut m, v(1), 0x1001, 64), Ok(17));
    for i in 0..pages {
        assert_eq!(a.expand_array(&mut m, 0x2000 + u64::from(i)), Ok(vec![]));
    }
    (a, m)
}

/// Binds `n` IPI ports on `vcpu` and unmasks them the way Linux does before use.
fn fifo_ipis(a: &mut EvtchnDomain, m: &mut Mem, vcpu: u32, n: usize) -> Vec<EvtchnPort> {
    (0..n)
        .map(|_| {
            let port = a.bind_ipi(m, v(vcpu)).unwrap();
            *m.word(port) &= !FIFO_WORD_MASKED;
            port
        })
        .collect()
}

#[test]
fn fifo_init_control_and_expand_errors() {
    let (mut a, mut m) = dom(A);
    assert_eq!(a.expand_array(&mut m, 1), Err(Errno::EOPNOTSUPP));
    assert_eq!(a.set_priority(p(1), 3), Err(Errno::ENOSYS));
    assert_eq!(a.init_control(&mut m, v(2), 1, 0), Err(Errno::ENOENT));
    assert_eq!(a.init_control(&mut m, v(0), 1, 4), Err(Errno::EINVAL));
    assert_eq!(
        a.init_control(&mut m, v(0), 1, 4096 - 64),
        Err(Errno::EINVAL)
    );
    assert_eq!(a.init_control(&mut m, v(0), 1, !7), Err(Errno::EINVAL));
    m.fail_map = Some(Errno::EINVAL);
    assert_eq!(a.init_control(&mut m, v(0), 1, 0), Err(Errno::EINVAL));
    assert_eq!(
        a.abi(),
        Abi::TwoLevel,
        "failed first init leaves 2-level in place"
    );
    m.fail_map = None;
    assert_eq!(a.init_control(&mut m, v(0), 1, 4096 - 72), Ok(17));
    assert_eq!(a.abi(), Abi::Fifo);
    assert_eq!(a.abi_max_ports(), 1 << 17);
    assert_eq!(
        a.init_control(&mut m, v(0), 1, 0),
        Err(Errno::EINVAL),
        "twice"
    );
    m.fail_map = Some(Errno::ENOMEM);
    assert_eq!(a.init_control(&mut m, v(1), 1, 0), Err(Errno::ENOMEM));
    assert_eq!(a.expand_array(&mut m, 1), Err(Errno::ENOMEM));
    assert_eq!(a.fifo_array_pages(), 0);
    m.fail_map = None;
    for i in 0..FIFO_MAX_ARRAY_PAGES {
        assert!(a.expand_array(&mut m, u64::from(i)).is_ok());
    }
    assert_eq!(a.expand_array(&mut m, 1), Err(Errno::ENOSPC));
}

#[test]
fn fifo_set_priority_errors() {
    let (mut a, mut m) = fifo_dom(1);
    let i = a.bind_ipi(&m, v(0)).unwrap();
    assert_eq!(a.priority(i), Some(7));
    assert_eq!(a.set_priority(i, 16), Err(Errno::EINVAL));
    assert_eq!(a.set_priority(p(64), 1), Err(Errno::EINVAL));
    assert_eq!(a.set_priority(i, 0), Ok(()));
    let cons = XenConsumer(NonZeroU8::new(1).unwrap());
    let x = a.alloc_unbound_xen(&m, v(0), B, cons).unwrap();
    assert_eq!(a.set_priority(x, 1), Err(Errno::EACCES));
    // Re-binding resets the priority.
    a.close(&mut m, i, None).unwrap();
    let j = a.bind_ipi(&m, v(0)).unwrap();
    assert_eq!((j, a.priority(j)), (i, Some(7)));
}

#[test]
fn fifo_order_within_priority() {
    let (mut a, mut m) = fifo_dom(1);
    let ports = fifo_ipis(&mut a, &mut m, 0, 6);
    let order = [ports[3], ports[0], ports[5], ports[1]];
    let mut kicks = 0;
    for &port in &order {
        let n = a.raise(&mut m, port);
        assert_eq!(n.pollers, Some(port));
        kicks += usize::from(n.kick.is_some());
    }
    assert_eq!(kicks, 1, "only the first event of an empty queue kicks");
    assert_eq!(m.control[0].unwrap().ready, 1 << 7);
    assert_eq!(m.control[0].unwrap().head[7], order[0].0);
    assert_eq!(m.guest_drain_fifo(0), order.map(|p| p.0).to_vec());
    assert_eq!(m.guest_drain_fifo(0), Vec::<u32>::new());
    // The queue is reusable after draining (the old tail was consumed).
    assert_eq!(a.raise(&mut m, ports[2]).kick, Some(v(0)));
    assert_eq!(m.guest_drain_fifo(0), vec![ports[2].0]);
}

#[test]
fn fifo_priorities() {
    let (mut a, mut m) = fifo_dom(1);
    let ports = fifo_ipis(&mut a, &mut m, 0, 4);
    a.set_priority(ports[0], 10).unwrap();
    a.set_priority(ports[1], 2).unwrap();
    a.set_priority(ports[2], 10).unwrap();
    a.set_priority(ports[3], 0).unwrap();
    for &port in &ports {
        let _ = a.raise(&mut m, port);
    }
    assert_eq!(m.control[0].unwrap().ready, (1 << 10) | (1 << 2) | 1);
    assert_eq!(
        m.guest_drain_fifo(0),
        vec![ports[3].0, ports[1].0, ports[0].0, ports[2].0]
    );
}

#[test]
fn fifo_relink_does_not_double_link() {
    let (mut a, mut m) = fifo_dom(1);
    let ports = fifo_ipis(&mut a, &mut m, 0, 2);
    let _ = a.raise(&mut m, ports[0]);
    let _ = a.raise(&mut m, ports[1]);
    let w0 = m.w(ports[0].0);
    // Raising linked events again changes nothing (not even for pollers).
    assert_eq!(a.raise(&mut m, ports[0]), Notify::NONE);
    assert_eq!(a.raise(&mut m, ports[1]), Notify::NONE);
    assert_eq!(m.w(ports[0].0), w0);
    assert_eq!(w0 & EVTCHN_FIFO_LINK_MASK, ports[1].0);
    assert_eq!(a.fifo_tail(0, 7), ports[1].0);
    // Consumed-but-pending (handler not yet run) events that are raised again are re-linked once.
    *m.word(ports[0]) &= !(FIFO_WORD_LINKED | EVTCHN_FIFO_LINK_MASK);
    m.control[0].as_mut().unwrap().head[7] = ports[1].0;
    let _ = a.raise(&mut m, ports[0]);
    assert_eq!(m.w(ports[1].0) & EVTCHN_FIFO_LINK_MASK, ports[0].0);
    assert_eq!(m.guest_drain_fifo(0), vec![ports[1].0, ports[0].0]);
}

#[test]
fn fifo_masked_then_unmask_links() {
    let (mut a, mut m) = fifo_dom(1);
    let ports = fifo_ipis(&mut a, &mut m, 1, 2);
    m.guest_mask_fifo(ports[0].0);
    let n = a.raise(&mut m, ports[0]);
    assert_eq!(
        n,
        Notify {
            kick: None,
            pollers: Some(ports[0])
        }
    );
    assert_eq!(m.w(ports[0].0) & FIFO_WORD_LINKED, 0);
    assert_eq!(m.control[1].unwrap().ready, 0);
    assert!(a.is_masked(&m, ports[0]) && a.is_pending(&m, ports[0]));
    assert_eq!(m.guest_drain_fifo(1), Vec::<u32>::new());
    let n = a.unmask(&mut m, ports[0]).unwrap();
    assert_eq!(
        n,
        Notify {
            kick: Some(v(1)),
            pollers: None
        }
    );
    assert_ne!(m.w(ports[0].0) & FIFO_WORD_LINKED, 0);
    assert_eq!(m.guest_drain_fifo(1), vec![ports[0].0]);
    // Unmask of a non-pending event only clears MASKED.
    m.guest_mask_fifo(ports[1].0);
    assert_eq!(a.unmask(&mut m, ports[1]), Ok(Notify::NONE));
    assert_eq!(m.w(ports[1].0), 0);
}

#[test]
fn fifo_queue_moves_with_notify_vcpu() {
    let (mut a, mut m) = fifo_dom(1);
    let u = a.alloc_unbound(&m, B).unwrap();
    *m.word(u) &= !FIFO_WORD_MASKED;
    assert_eq!(a.raise(&mut m, u).kick, Some(v(0)));
    assert_eq!(m.guest_drain_fifo(0), vec![u.0]);
    a.bind_vcpu(u, v(1)).unwrap();
    assert_eq!(a.raise(&mut m, u).kick, Some(v(1)));
    // The old queue's tail was invalidated: a new event on vCPU 0 starts a fresh queue.
    let i = fifo_ipis(&mut a, &mut m, 0, 1)[0];
    assert_eq!(a.raise(&mut m, i).kick, Some(v(0)));
    assert_eq!(a.fifo_tail(0, 7), i.0);
    assert_eq!(m.guest_drain_fifo(0), vec![i.0]);
    assert_eq!(m.guest_drain_fifo(1), vec![u.0]);
}

#[test]
fn fifo_busy_link_retries_are_bounded() {
    let (mut a, mut m) = fifo_dom(1);
    let ports = fifo_ipis(&mut a, &mut m, 0, 3);
    let _ = a.raise(&mut m, ports[0]);
    // The guest keeps flipping MASKED on the tail: Xen gives up after bounded retries and clears BUSY.
    m.cmpxchg_interference = 1000;
    let n = a.raise(&mut m, ports[1]);
    assert_eq!(n.kick, None);
    assert_eq!(m.w(ports[0].0) & FIFO_WORD_BUSY, 0);
    assert!(m.cmpxchg_interference >= 1000 - 5);
    // A single interference is absorbed by the BUSY retry.
    m.cmpxchg_interference = 1;
    *m.word(ports[0]) &= !FIFO_WORD_MASKED;
    let _ = a.raise(&mut m, ports[2]);
    assert_eq!(m.w(ports[1].0) & EVTCHN_FIFO_LINK_MASK, ports[2].0);
    assert_eq!(m.w(ports[1].0) & FIFO_WORD_BUSY, 0);
}

#[test]
fn fifo_pending_carried_from_two_level_and_missing_pages() {
    let (mut a, mut m) = dom(A);
    let i = a.bind_ipi(&m, v(0)).unwrap();
    let _ = a.raise(&mut m, i); // pending in 2-level, not yet handled
    m.upcall[0] = 0;
    a.init_control(&mut m, v(0), 1, 0).unwrap();
    // Raised before any event-array page exists: remembered.
    let j = a.bind_ipi(&m, v(0)).unwrap();
    assert_eq!(a.raise(&mut m, j), Notify::NONE);
    assert!(!a.is_pending(&m, j) && a.is_masked(&m, j));
    // Linux maps pages with every event masked: re-raised as pending (pollers), not linked.
    assert_eq!(
        a.expand_array(&mut m, 9),
        Ok(vec![
            Notify {
                kick: None,
                pollers: Some(i)
            },
            Notify {
                kick: None,
                pollers: Some(j)
            }
        ])
    );
    assert!(a.is_pending(&m, i) && a.is_pending(&m, j));
    // Linux's unmask of a pending event goes through EVTCHNOP_unmask, which links it.
    *m.word(i) &= !FIFO_WORD_MASKED;
    *m.word(j) &= !FIFO_WORD_MASKED;
    assert_eq!(a.unmask(&mut m, i).unwrap().kick, Some(v(0)));
    assert_eq!(a.unmask(&mut m, j).unwrap().kick, None);
    assert_eq!(m.guest_drain_fifo(0), vec![i.0, j.0]);
}

#[test]
fn fifo_expand_reraises_unmasked() {
    let (mut a, mut m) = fifo_dom(0);
    let i = a.bind_ipi(&m, v(1)).unwrap();
    assert_eq!(a.raise(&mut m, i), Notify::NONE);
    // A guest may also hand over pages with events unmasked.
    m.new_pages_unmasked = true;
    let n = a.expand_array(&mut m, 5).unwrap();
    assert_eq!(
        n,
        vec![Notify {
            kick: Some(v(1)),
            pollers: Some(i)
        }]
    );
    assert_eq!(m.guest_drain_fifo(1), vec![i.0]);
    // Expanding again does not re-raise it.
    assert_eq!(a.expand_array(&mut m, 6), Ok(vec![]));
    assert!(!a.is_pending(&m, i));
}

#[test]
fn fifo_no_control_block_drops_event() {
    let (mut a, mut m) = dom(A);
    a.init_control(&mut m, v(0), 1, 0).unwrap();
    a.expand_array(&mut m, 2).unwrap();
    let i = fifo_ipis(&mut a, &mut m, 1, 1)[0];
    assert_eq!(a.raise(&mut m, i), Notify::NONE);
    assert!(!a.is_pending(&m, i));
}

#[test]
fn fifo_free_linked_port_is_busy_for_allocation() {
    let (mut a, mut m) = fifo_dom(1);
    let ports = fifo_ipis(&mut a, &mut m, 0, 2);
    let _ = a.raise(&mut m, ports[0]);
    a.close(&mut m, ports[0], None).unwrap();
    assert_eq!(
        m.w(ports[0].0) & FIFO_WORD_PENDING,
        0,
        "close clears PENDING"
    );
    // Still LINKED in the guest's queue: not reused until the guest consumed it.
    let next = a.bind_ipi(&m, v(0)).unwrap();
    assert_eq!(next, p(3));
    assert_eq!(m.guest_drain_fifo(0), Vec::<u32>::new());
    assert_eq!(a.bind_ipi(&m, v(0)).unwrap(), ports[0]);
}

#[test]
fn fifo_reset_returns_to_two_level() {
    let (mut a, mut m) = fifo_dom(1);
    fifo_ipis(&mut a, &mut m, 0, 3);
    assert!(a.reset(&mut m).is_empty());
    assert_eq!(a.abi(), Abi::TwoLevel);
    assert_eq!(a.fifo_array_pages(), 0);
    assert_eq!(m.unmapped, 1);
    let i = a.bind_ipi(&m, v(0)).unwrap();
    assert_eq!(a.raise(&mut m, i).kick, Some(v(0)));
    assert!(m.is_pending_2l(i.0));
}

// ------------------------------------------------------------------ properties

#[derive(Clone, Debug)]
enum Op {
    AllocUnbound {
        d: bool,
        remote: bool,
    },
    BindInterdomain {
        d: bool,
        port: u32,
    },
    BindVirq {
        d: bool,
        virq: u32,
        vcpu: u32,
    },
    BindIpi {
        d: bool,
        vcpu: u32,
    },
    BindVcpu {
        d: bool,
        port: u32,
        vcpu: u32,
    },
    Close {
        d: bool,
        port: u32,
        with_remote: bool,
    },
    Send {
        d: bool,
        port: u32,
    },
    Unmask {
        d: bool,
        port: u32,
    },
    GuestMask {
        d: bool,
        port: u32,
    },
    Drain {
        d: bool,
        vcpu: u32,
    },
    Reset {
        d: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let port = 0u32..72;
    let vcpu = 0u32..3;
    prop_oneof![
        (any::<bool>(), any::<bool>()).prop_map(|(d, remote)| Op::AllocUnbound { d, remote }),
        (any::<bool>(), port.clone()).prop_map(|(d, port)| Op::BindInterdomain { d, port }),
        (any::<bool>(), 0u32..26, vcpu.clone()).prop_map(|(d, virq, vcpu)| Op::BindVirq {
            d,
            virq,
            vcpu
        }),
        (any::<bool>(), vcpu.clone()).prop_map(|(d, vcpu)| Op::BindIpi { d, vcpu }),
        (any::<bool>(), port.clone(), vcpu.clone()).prop_map(|(d, port, vcpu)| Op::BindVcpu {
            d,
            port,
            vcpu
        }),
        (any::<bool>(), port.clone(), any::<bool>()).prop_map(|(d, port, with_remote)| Op::Close {
            d,
            port,
            with_remote
        }),
        (any::<bool>(), port.clone()).prop_map(|(d, port)| Op::Send { d, port }),
        (any::<bool>(), port.clone()).prop_map(|(d, port)| Op::Unmask { d, port }),
        (any::<bool>(), port.clone()).prop_map(|(d, port)| Op::GuestMask { d, port }),
        (any::<bool>(), vcpu).prop_map(|(d, vcpu)| Op::Drain { d, vcpu }),
        any::<bool>().prop_map(|d| Op::Reset { d }),
    ]
}

struct World {
    doms: [EvtchnDomain; 2],
    mems: [Mem; 2],
}

impl World {
    fn new() -> World {
        World {
            doms: [EvtchnDomain::new(A, 2, 200), EvtchnDomain::new(B, 2, 200)],
            mems: [Mem::default(), Mem::default()],
        }
    }

    fn idx(dom: DomId) -> usize {
        usize::from(dom == B)
    }

    /// (this, other) tables and this domain's memory.
    fn split(&mut self, d: usize) -> (&mut EvtchnDomain, &mut EvtchnDomain, &mut Mem) {
        let [a, b] = &mut self.doms;
        if d == 0 {
            (a, b, &mut self.mems[0])
        } else {
            (b, a, &mut self.mems[1])
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::AllocUnbound { d, remote } => {
                let d = usize::from(d);
                let r = if remote {
                    self.doms[1 - d].domid()
                } else {
                    self.doms[d].domid()
                };
                let _ = self.doms[d].alloc_unbound(&self.mems[d], r);
            }
            Op::BindInterdomain { d, port } => {
                let d = usize::from(d);
                // Alternate loopback and remote connections depending on the port parity.
                let (me, other, mem) = self.split(d);
                let _ = if port % 2 == 0 {
                    me.bind_interdomain(mem, Some(other), p(port / 2))
                } else {
                    me.bind_interdomain(mem, None, p(port / 2))
                };
            }
            Op::BindVirq { d, virq, vcpu } => {
                let d = usize::from(d);
                let _ = self.doms[d].bind_virq(&self.mems[d], virq, v(vcpu));
            }
            Op::BindIpi { d, vcpu } => {
                let d = usize::from(d);
                let _ = self.doms[d].bind_ipi(&self.mems[d], v(vcpu));
            }
            Op::BindVcpu { d, port, vcpu } => {
                let _ = self.doms[usize::from(d)].bind_vcpu(p(port), v(vcpu));
            }
            Op::Close {
                d,
                port,
                with_remote,
            } => {
                let d = usize::from(d);
                let (me, other, mem) = self.split(d);
                let res = if with_remote {
                    me.close(mem, p(port), Some(other))
                } else {
                    me.close(mem, p(port), None)
                };
                if let Ok(Some(r)) = res {
                    let from = self.doms[d].domid();
                    assert!(self.doms[Self::idx(r.dom)].peer_closed(r.port, from, r.peer_port));
                }
            }
            Op::Send { d, port } => {
                let d = usize::from(d);
                let res = self.doms[d].send(&mut self.mems[d], p(port));
                match res {
                    Ok(SendAction::Remote {
                        dom,
                        port,
                        from_port,
                    }) => {
                        let from = self.doms[d].domid();
                        let r = Self::idx(dom);
                        let del = self.doms[r].deliver_interdomain(
                            &mut self.mems[r],
                            port,
                            from,
                            from_port,
                        );
                        assert!(matches!(del, Delivery::Raised(_)), "{del:?}");
                    }
                    Ok(SendAction::Local(n)) => {
                        if let Some(k) = n.kick {
                            assert_eq!(self.mems[d].upcall[k.0 as usize], 1);
                        }
                    }
                    Ok(SendAction::Dropped) => {}
                    Ok(SendAction::Consumer { .. }) => panic!("no consumers here"),
                    Err(e) => assert_eq!(e, Errno::EINVAL),
                }
            }
            Op::Unmask { d, port } => {
                let d = usize::from(d);
                let _ = self.doms[d].unmask(&mut self.mems[d], p(port));
            }
            Op::GuestMask { d, port } => {
                if port < 4096 {
                    self.mems[usize::from(d)].guest_mask_2l(port);
                }
            }
            Op::Drain { d, vcpu } => {
                if vcpu < 2 {
                    self.mems[usize::from(d)].guest_drain_2l(vcpu as usize);
                }
            }
            Op::Reset { d } => {
                let d = usize::from(d);
                let left = self.doms[d].reset(&mut self.mems[d]);
                let from = self.doms[d].domid();
                for r in left {
                    assert!(self.doms[Self::idx(r.dom)].peer_closed(r.port, from, r.peer_port));
                }
            }
        }
    }

    fn check(&self) {
        for (i, d) in self.doms.iter().enumerate() {
            assert_eq!(d.state(p(0)), Some(PortState::Reserved));
            assert!(d.valid_ports() % EVTCHNS_PER_BUCKET == 0);
            for port in 0..d.valid_ports() {
                let st = d.state(p(port)).unwrap();
                let nv = d.notify_vcpu(p(port)).unwrap();
                assert!(nv.0 < d.nr_vcpus());
                match st {
                    PortState::Free => {
                        assert_eq!(nv.0, 0);
                        assert!(
                            !self.mems[i].is_pending_2l(port),
                            "free port {port} pending"
                        );
                    }
                    PortState::Interdomain {
                        remote_dom,
                        remote_port,
                    } => {
                        let rd = &self.doms[Self::idx(remote_dom)];
                        assert_eq!(
                            rd.state(remote_port),
                            Some(PortState::Interdomain {
                                remote_dom: d.domid(),
                                remote_port: p(port)
                            }),
                            "peer of {:?}:{port}",
                            d.domid()
                        );
                    }
                    PortState::Virq { virq } => {
                        let owner = if virq_is_per_vcpu(virq) { nv } else { v(0) };
                        assert_eq!(d.virq_port(owner, virq), Some(p(port)));
                    }
                    _ => {}
                }
            }
            for vc in 0..d.nr_vcpus() {
                for virq in 0..NR_VIRQS {
                    if let Some(port) = d.virq_port(v(vc), virq) {
                        assert_eq!(d.state(port), Some(PortState::Virq { virq }));
                        if virq_is_per_vcpu(virq) {
                            assert_eq!(d.notify_vcpu(port), Some(v(vc)));
                        } else {
                            assert_eq!(vc, 0);
                        }
                    }
                }
            }
            // Upcall bookkeeping: a set selector bit for an unmasked pending port implies the upcall
            // flag, unless the guest is mid-drain (we drain atomically, so never).
            for vc in 0..2usize {
                let sel = self.mems[i].sel[vc];
                if sel != 0 {
                    assert_eq!(self.mems[i].upcall[vc], 1);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn table_invariants_hold(ops in proptest::collection::vec(op(), 1..120)) {
        let mut w = World::new();
        w.check();
        for o in &ops {
            w.apply(o);
            w.check();
        }
    }
}

#[derive(Clone, Debug)]
enum FifoOp {
    Raise(usize),
    GuestMask(usize),
    /// Linux's unmask: clear MASKED locally if not pending, otherwise EVTCHNOP_unmask.
    GuestUnmask(usize),
    SetPriority(usize, u32),
    BindVcpu(usize, u32),
    Drain(u32),
    Close(usize),
}

fn fifo_op() -> impl Strategy<Value = FifoOp> {
    prop_oneof![
        4 => (0usize..12).prop_map(FifoOp::Raise),
        1 => (0usize..12).prop_map(FifoOp::GuestMask),
        1 => (0usize..12).prop_map(FifoOp::GuestUnmask),
        1 => (0usize..12, 0u32..16).prop_map(|(i, pr)| FifoOp::SetPriority(i, pr)),
        1 => (0usize..12, 0u32..2).prop_map(|(i, vc)| FifoOp::BindVcpu(i, vc)),
        2 => (0u32..2).prop_map(FifoOp::Drain),
        1 => (0usize..12).prop_map(FifoOp::Close),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random raises, masks, priority and vCPU changes and Linux-style consumption never lose an
    /// event, never corrupt a queue, and never deliver a masked event.
    #[test]
    fn fifo_never_loses_events(ops in proptest::collection::vec(fifo_op(), 1..150)) {
        let (mut a, mut m) = fifo_dom(1);
        // Unbound ports (so bind_vcpu is allowed), unmasked by the "guest".
        let mut ports: Vec<EvtchnPort> = (0..12)
            .map(|_| {
                let port = a.alloc_unbound(&m, B).unwrap();
                *m.word(port) &= !FIFO_WORD_MASKED;
                port
            })
            .collect();
        for o in &ops {
            match *o {
                FifoOp::Raise(i) => {
                    let n = a.raise(&mut m, ports[i]);
                    if let Some(k) = n.kick {
                        prop_assert_eq!(m.upcall[k.0 as usize], 1);
                    }
                }
                FifoOp::GuestMask(i) => m.guest_mask_fifo(ports[i].0),
                FifoOp::GuestUnmask(i) => {
                    if m.w(ports[i].0) & FIFO_WORD_PENDING == 0 {
                        *m.word(ports[i]) &= !FIFO_WORD_MASKED;
                    } else {
                        let _ = a.unmask(&mut m, ports[i]).unwrap();
                    }
                }
                FifoOp::SetPriority(i, pr) => a.set_priority(ports[i], pr).unwrap(),
                FifoOp::BindVcpu(i, vc) => a.bind_vcpu(ports[i], v(vc)).unwrap(),
                FifoOp::Drain(vc) => {
                    for port in m.guest_drain_fifo(vc as usize) {
                        prop_assert_eq!(m.w(port) & FIFO_WORD_MASKED, 0);
                    }
                }
                FifoOp::Close(i) => {
                    a.close(&mut m, ports[i], None).unwrap();
                    prop_assert_eq!(m.w(ports[i].0) & FIFO_WORD_PENDING, 0);
                    let np = a.alloc_unbound(&m, B).unwrap();
                    *m.word(np) &= !FIFO_WORD_MASKED;
                    ports[i] = np;
                }
            }
            // Tails only ever name ports inside the event array.
            for vc in 0..2 {
                for pr in 0..16 {
                    prop_assert!(a.fifo_tail(vc, pr) < 1024);
                }
            }
        }
        // Drain until quiescent (bounded): every pending unmasked event must have been delivered.
        for _ in 0..4 {
            m.guest_drain_fifo(0);
            m.guest_drain_fifo(1);
        }
        for port in 1..1024u32 {
            let w = m.w(port);
            prop_assert!(
                !(w & FIFO_WORD_PENDING != 0 && w & FIFO_WORD_MASKED == 0),
                "port {} lost: word {:#x}", port, w
            );
            prop_assert_eq!(w & FIFO_WORD_BUSY, 0);
        }
    }
}
