//! Host tests of the credit scheduler: simulated CPU time shares (weights, caps, domains with
//! different vCPU counts), blocking and waking, affinity, and a property test of the invariants.
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;

fn u(dom: u16, vcpu: u32) -> UnitId {
    UnitId {
        dom: DomId(dom),
        vcpu: VcpuId(vcpu),
    }
}

/// A discrete-event model of the hypervisor driving the scheduler: each pCPU calls `pick_next`
/// when its slice expires or when it is tickled; the CPU time each vCPU gets is measured here,
/// independently of the scheduler's own accounting.
struct Sim {
    s: Scheduler,
    now: u64,
    next: Vec<u64>,
    cur: Vec<Option<(UnitId, u64)>>,
    got: BTreeMap<UnitId, u64>,
}

impl Sim {
    fn new(nr_cpus: usize) -> Sim {
        Sim {
            s: Scheduler::new(nr_cpus),
            now: 0,
            next: vec![0; nr_cpus],
            cur: vec![None; nr_cpus],
            got: BTreeMap::new(),
        }
    }

    fn domain(&mut self, dom: u16, weight: u16, cap: u32, vcpus: u32) {
        self.s.add_domain(DomId(dom), weight, cap).unwrap();
        for v in 0..vcpus {
            self.s.add_vcpu(u(dom, v)).unwrap();
            self.wake(u(dom, v));
        }
    }

    fn settle(&mut self, cpu: usize) {
        if let Some((id, since)) = self.cur[cpu].take() {
            *self.got.entry(id).or_default() += self.now - since;
        }
    }

    fn resched(&mut self, cpu: usize) {
        self.settle(cpu);
        let d = self.s.pick_next(cpu, self.now);
        assert!(d.run_for_ns > 0);
        if let Some(id) = d.vcpu {
            assert_eq!(self.s.status(id).unwrap().state, RunState::Running(cpu));
            for (c, other) in self.cur.iter().enumerate() {
                assert!(
                    other.is_none_or(|(o, _)| o != id),
                    "{id:?} already on cpu {c}"
                );
            }
        }
        self.cur[cpu] = d.vcpu.map(|id| (id, self.now));
        self.next[cpu] = self.now.saturating_add(d.run_for_ns);
        self.s.check_invariants();
        if let Some(t) = d.tickle {
            assert_ne!(t, cpu);
            self.resched(t);
        }
    }

    fn wake(&mut self, id: UnitId) {
        if let Some(cpu) = self.s.wake(id).unwrap() {
            self.resched(cpu);
        }
    }

    fn block(&mut self, id: UnitId) {
        if let Some(cpu) = self.s.block(id, self.now).unwrap() {
            self.resched(cpu);
        }
    }

    /// Runs until `until`, calling `hook` at every scheduling event.
    fn run_with(&mut self, until: u64, mut hook: impl FnMut(&mut Sim)) {
        loop {
            let (cpu, &t) = self
                .next
                .iter()
                .enumerate()
                .min_by_key(|&(_, t)| *t)
                .unwrap();
            if t > until {
                break;
            }
            self.now = t;
            self.resched(cpu);
            hook(self);
        }
        self.now = until;
        for c in 0..self.cur.len() {
            if let Some((id, since)) = self.cur[c] {
                *self.got.entry(id).or_default() += until - since;
                self.cur[c] = Some((id, until));
            }
        }
    }

    fn run(&mut self, until: u64) {
        self.run_with(until, |_| {});
    }

    fn got(&self, id: UnitId) -> u64 {
        self.got.get(&id).copied().unwrap_or(0)
    }

    fn dom_total(&self, dom: u16) -> u64 {
        self.got
            .iter()
            .filter(|(id, _)| id.dom == DomId(dom))
            .map(|(_, t)| t)
            .sum()
    }
}

fn within(actual: f64, expected: f64, tol: f64) -> bool {
    (actual - expected).abs() <= expected * tol
}

#[test]
fn weights_256_512_share_one_cpu_1_to_2() {
    let mut sim = Sim::new(1);
    sim.domain(1, 256, 0, 1);
    sim.domain(2, 512, 0, 1);
    sim.run(3 * SEC);
    let (a, b) = (sim.got(u(1, 0)), sim.got(u(2, 0)));
    assert_eq!(a + b, 3 * SEC, "work conserving");
    let ratio = b as f64 / a as f64;
    assert!(within(ratio, 2.0, 0.10), "ratio {ratio} ({a} vs {b})");
    // The scheduler's own accounting agrees with the measured time.
    assert_eq!(sim.s.status(u(1, 0)).unwrap().runtime_ns, a);
}

#[test]
fn four_vcpus_on_two_cpus_all_progress() {
    let mut sim = Sim::new(2);
    sim.domain(1, 256, 0, 4);
    sim.run(3 * SEC);
    for v in 0..4 {
        let g = sim.got(u(1, v));
        assert!(within(g as f64, 1.5 * SEC as f64, 0.10), "vcpu {v}: {g}");
    }
    assert_eq!(sim.dom_total(1), 6 * SEC);
}

#[test]
fn domains_share_by_weight_not_vcpu_count() {
    // One pCPU: a 1-vCPU and a 3-vCPU domain of equal weight get half each.
    let mut sim = Sim::new(1);
    sim.domain(1, 256, 0, 1);
    sim.domain(2, 256, 0, 3);
    sim.run(3 * SEC);
    let (a, b) = (sim.dom_total(1) as f64, sim.dom_total(2) as f64);
    assert!(within(a, 1.5 * SEC as f64, 0.10), "{a} vs {b}");
    assert!(within(b, 1.5 * SEC as f64, 0.10), "{a} vs {b}");
    for v in 0..3 {
        assert!(sim.got(u(2, v)) > 300 * MS, "vcpu {v} starved");
    }

    // Two pCPUs, weights 1:2, the lighter domain with 4 vCPUs: 2 s vs 4 s of CPU.
    let mut sim = Sim::new(2);
    sim.domain(1, 256, 0, 4);
    sim.domain(2, 512, 0, 2);
    sim.run(3 * SEC);
    let (a, b) = (sim.dom_total(1) as f64, sim.dom_total(2) as f64);
    assert!(within(a, 2.0 * SEC as f64, 0.10), "{a} vs {b}");
    assert!(within(b, 4.0 * SEC as f64, 0.10), "{a} vs {b}");
}

#[test]
fn cap_50_percent_holds() {
    // Alone on an otherwise idle pCPU.
    let mut sim = Sim::new(1);
    sim.domain(1, 256, 50, 1);
    sim.run(3 * SEC);
    let g = sim.got(u(1, 0)) as f64;
    assert!(within(g, 1.5 * SEC as f64, 0.10), "capped alone: {g}");

    // A 2-vCPU domain capped at 50 % of one pCPU on two pCPUs, next to an uncapped domain.
    let mut sim = Sim::new(2);
    sim.domain(1, 256, 50, 2);
    sim.domain(2, 256, 0, 1);
    sim.run(3 * SEC);
    let capped = sim.dom_total(1) as f64;
    assert!(
        within(capped, 1.5 * SEC as f64, 0.10),
        "capped domain: {capped}"
    );
    assert!(sim.dom_total(2) as f64 > 2.9 * SEC as f64);

    // Removing the cap lets it use the idle time again.
    let mut sim = Sim::new(1);
    sim.domain(1, 256, 50, 1);
    sim.run(SEC);
    sim.s.set_cap(DomId(1), 0).unwrap();
    let before = sim.got(u(1, 0));
    sim.run(3 * SEC);
    assert!(sim.got(u(1, 0)) - before > 1_900 * MS);
}

#[test]
fn blocked_vcpus_get_nothing_and_waking_preempts() {
    let mut sim = Sim::new(1);
    sim.domain(1, 256, 0, 1); // CPU hog
    sim.s.add_domain(DomId(2), 256, 0).unwrap();
    sim.s.add_vcpu(u(2, 0)).unwrap(); // added blocked
    sim.run(SEC);
    assert_eq!(sim.got(u(2, 0)), 0);
    assert_eq!(sim.got(u(1, 0)), SEC);
    // The hog is OVER-ish or UNDER; the waker has credit 0 → BOOST, preempting it at once.
    let cpu = sim.s.wake(u(2, 0)).unwrap();
    assert_eq!(cpu, Some(0));
    assert_eq!(sim.s.status(u(2, 0)).unwrap().priority, Priority::Boost);
    sim.resched(0);
    assert_eq!(sim.s.current(0), Some(u(2, 0)));
    assert!(
        sim.next[0] - sim.now <= 10 * MS,
        "boost lasts at most a tick"
    );
    // Waking twice is harmless.
    assert_eq!(sim.s.wake(u(2, 0)), Ok(None));

    // An interactive vCPU (1 ms of work, then 9 ms asleep) next to a hog gets all it asks for
    // with low latency, and the hog gets the rest.
    let mut sim = Sim::new(1);
    sim.domain(1, 256, 0, 1);
    sim.domain(2, 256, 0, 1);
    let io = u(2, 0);
    let mut wake_at: Option<u64> = None;
    let mut ran_since: Option<u64> = None;
    let mut worst_latency = 0;
    let mut t = 0;
    while t < 2 * SEC {
        t += MS / 2;
        sim.run(t);
        if let Some(w) = wake_at {
            if sim.s.current(0) == Some(io) {
                // Before the first accounting period nobody has credit: skip the warm-up.
                if w > 100 * MS {
                    worst_latency = worst_latency.max(t - w);
                }
                wake_at = None;
                ran_since = Some(t);
            }
        } else if let Some(r) = ran_since {
            if t - r >= MS {
                sim.block(io);
                ran_since = None;
            }
        } else if sim.s.status(io).unwrap().state == RunState::Blocked && t % (10 * MS) == 0 {
            wake_at = Some(t);
            sim.wake(io);
        }
        if sim.s.current(0) == Some(io) && ran_since.is_none() && wake_at.is_none() {
            ran_since = Some(t);
        }
    }
    assert!(worst_latency <= MS, "wake-up latency {worst_latency}");
    let io_time = sim.got(io);
    assert!(
        io_time > 150 * MS && io_time < 400 * MS,
        "interactive got {io_time}"
    );
}

#[test]
fn affinity_is_respected() {
    let mut sim = Sim::new(2);
    sim.domain(1, 256, 0, 2);
    sim.s.set_affinity(u(1, 0), &[1]).unwrap();
    sim.s.set_affinity(u(1, 1), &[1]).unwrap();
    sim.resched(0);
    sim.resched(1);
    sim.run_with(SEC, |sim| {
        assert!(sim.s.current(0).is_none(), "cpu 0 must stay idle");
    });
    assert!(within(sim.got(u(1, 0)) as f64, 0.5 * SEC as f64, 0.10));
    assert_eq!(sim.s.set_affinity(u(1, 0), &[]), Err(Errno::EINVAL));
    assert_eq!(sim.s.set_affinity(u(1, 0), &[7]), Err(Errno::EINVAL));
    assert_eq!(sim.s.set_affinity(u(9, 0), &[0]), Err(Errno::ENOENT));
}

#[test]
fn management_errors() {
    let mut s = Scheduler::new(0);
    assert_eq!(s.nr_cpus(), 1);
    assert_eq!(s.add_vcpu(u(1, 0)), Err(Errno::ESRCH));
    assert_eq!(s.add_domain(DomId(1), 0, 0), Err(Errno::EINVAL));
    s.add_domain(DomId(1), DEFAULT_WEIGHT, 0).unwrap();
    assert_eq!(s.add_domain(DomId(1), 1, 0), Err(Errno::EEXIST));
    s.add_vcpu(u(1, 0)).unwrap();
    assert_eq!(s.add_vcpu(u(1, 0)), Err(Errno::EEXIST));
    assert_eq!(s.wake(u(1, 1)), Err(Errno::ENOENT));
    assert_eq!(s.block(u(1, 1), 0), Err(Errno::ENOENT));
    assert_eq!(s.set_weight(DomId(2), 5), Err(Errno::ESRCH));
    assert_eq!(s.set_weight(DomId(1), 0), Err(Errno::EINVAL));
    assert_eq!(s.set_cap(DomId(2), 5), Err(Errno::ESRCH));
    assert_eq!(s.domain_params(DomId(2)), Err(Errno::ESRCH));
    assert_eq!(s.domain_params(DomId(1)), Ok((DEFAULT_WEIGHT, 0)));
    s.set_weight(DomId(1), 512).unwrap();
    s.set_cap(DomId(1), 50).unwrap();
    assert_eq!(s.domain_params(DomId(1)), Ok((512, 50)));
    let idle = Decision {
        vcpu: None,
        run_for_ns: u64::MAX,
        tickle: None,
    };
    assert_eq!(s.pick_next(5, 0), idle);
    // Nothing runnable: idle until woken.
    assert_eq!(s.pick_next(0, 0), idle);
    assert_eq!(s.wake(u(1, 0)), Ok(Some(0)));
    let d = s.pick_next(0, 5);
    assert_eq!(d.vcpu, Some(u(1, 0)));
    // Removing the running vCPU (or its domain) frees its pCPU.
    assert_eq!(s.remove_domain(DomId(1), 7), Ok(vec![0]));
    assert_eq!(s.current(0), None);
    assert_eq!(s.status(u(1, 0)), None);
    assert_eq!(s.remove_domain(DomId(1), 7), Err(Errno::ESRCH));
    // Time going backwards does not panic or charge anything.
    s.add_domain(DomId(2), 1, 0).unwrap();
    s.add_vcpu(u(2, 0)).unwrap();
    let _ = s.wake(u(2, 0));
    let _ = s.pick_next(0, 1_000);
    let _ = s.pick_next(0, 10);
    let _ = s.pick_next(0, u64::MAX);
    s.check_invariants();
}

#[test]
fn yield_lets_a_lower_class_run() {
    let mut s = Scheduler::new(1);
    s.add_domain(DomId(1), DEFAULT_WEIGHT, 0).unwrap();
    s.add_vcpu(u(1, 0)).unwrap();
    s.add_vcpu(u(1, 1)).unwrap();
    s.wake(u(1, 0)).unwrap();
    assert_eq!(s.pick_next(0, 0).vcpu, Some(u(1, 0)));
    // vCPU 1 wakes and runs its boost out; vCPU 0 then runs until vCPU 1 is the only one in
    // a worse class.
    s.wake(u(1, 1)).unwrap();
    let mut now = 0;
    let mut other_ran = false;
    for _ in 0..200 {
        now += 1_000_000;
        let d = s.pick_next(0, now);
        if d.vcpu == Some(u(1, 1)) {
            other_ran = true;
        }
    }
    assert!(other_ran);
    // Whichever runs, a yield hands the CPU to the other at once.
    for _ in 0..20 {
        let cur = s.current(0).unwrap();
        s.yield_vcpu(cur).unwrap();
        now += 1000;
        let next = s.pick_next(0, now).vcpu.unwrap();
        assert_ne!(next, cur, "a yield did not switch");
    }
    // Alone, a yielding vCPU keeps the CPU.
    s.block(u(1, 1), now).unwrap();
    let cur = s.pick_next(0, now).vcpu.unwrap();
    s.yield_vcpu(cur).unwrap();
    assert_eq!(s.pick_next(0, now + 1000).vcpu, Some(cur));
    assert_eq!(s.yield_vcpu(u(1, 7)), Err(Errno::ENOENT));
}

#[test]
fn set_weight_changes_shares() {
    let mut sim = Sim::new(1);
    sim.domain(1, 256, 0, 1);
    sim.domain(2, 256, 0, 1);
    sim.run(SEC);
    sim.s.set_weight(DomId(2), 768).unwrap();
    let (a0, b0) = (sim.got(u(1, 0)), sim.got(u(2, 0)));
    sim.run(4 * SEC);
    let ratio = (sim.got(u(2, 0)) - b0) as f64 / (sim.got(u(1, 0)) - a0) as f64;
    assert!(within(ratio, 3.0, 0.10), "ratio {ratio}");
}

#[derive(Clone, Debug)]
enum Op {
    Wake(usize),
    Block(usize),
    /// Advance time by this many µs and run the CPU whose timer is due.
    Advance(u64),
    Resched(usize),
    SetCap(u16, u32),
    SetWeight(u16, u16),
    Affinity(usize, u8),
}

const IDS: [(u16, u32); 5] = [(1, 0), (1, 1), (1, 2), (2, 0), (3, 0)];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..5).prop_map(Op::Wake),
        2 => (0usize..5).prop_map(Op::Block),
        4 => (1u64..40_000).prop_map(Op::Advance),
        2 => (0usize..3).prop_map(Op::Resched),
        1 => (1u16..4, 0u32..150).prop_map(|(d, c)| Op::SetCap(d, c)),
        1 => (1u16..4, 1u16..1000).prop_map(|(d, w)| Op::SetWeight(d, w)),
        1 => (0usize..5, 1u8..8).prop_map(|(i, m)| Op::Affinity(i, m)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Time is never given to a blocked vCPU, a pCPU idles only when nothing runnable may run on
    /// it, and the internal invariants hold.
    #[test]
    fn never_runs_blocked_and_idles_only_when_nothing_runnable(
        ops in proptest::collection::vec(op(), 1..200)
    ) {
        let mut sim = Sim::new(3);
        for d in 1..=3u16 {
            sim.s.add_domain(DomId(d), 256, 0).unwrap();
        }
        for &(d, v) in &IDS {
            sim.s.add_vcpu(u(d, v)).unwrap();
        }
        let mut blocked_runtime: BTreeMap<UnitId, u64> =
            IDS.iter().map(|&(d, v)| (u(d, v), 0)).collect();
        for o in &ops {
            match *o {
                Op::Wake(i) => {
                    let id = u(IDS[i].0, IDS[i].1);
                    sim.wake(id);
                }
                Op::Block(i) => {
                    let id = u(IDS[i].0, IDS[i].1);
                    sim.block(id);
                    blocked_runtime.insert(id, sim.s.status(id).unwrap().runtime_ns);
                }
                Op::Advance(us) => {
                    let until = sim.now + us * 1_000;
                    sim.run(until);
                }
                Op::Resched(c) => sim.resched(c),
                Op::SetCap(d, c) => sim.s.set_cap(DomId(d), c).unwrap(),
                Op::SetWeight(d, w) => sim.s.set_weight(DomId(d), w).unwrap(),
                Op::Affinity(i, m) => {
                    let cpus: Vec<usize> = (0..3).filter(|c| m & (1 << c) != 0).collect();
                    let id = u(IDS[i].0, IDS[i].1);
                    if let Some(c) = sim.s.set_affinity(id, &cpus).unwrap() {
                        sim.resched(c);
                    }
                }
            }
            sim.s.check_invariants();
            for (id, rt) in blocked_runtime.clone() {
                let st = sim.s.status(id).unwrap();
                if st.state == RunState::Blocked {
                    prop_assert_eq!(st.runtime_ns, rt, "blocked {:?} was charged", id);
                    for c in &sim.cur {
                        prop_assert!(c.is_none_or(|(r, _)| r != id));
                    }
                } else {
                    blocked_runtime.insert(id, st.runtime_ns);
                }
            }
            // Work conservation: no pCPU idles while a queued vCPU may run on it.
            for cpu in 0..3 {
                if sim.s.current(cpu).is_none() {
                    prop_assert!(sim.cur[cpu].is_none());
                    for &(d, v) in &IDS {
                        let id = u(d, v);
                        let st = sim.s.status(id).unwrap();
                        let allowed = sim.s.vcpus.get(&id).unwrap().may_run_on(cpu);
                        prop_assert!(
                            !(st.state == RunState::Runnable && !st.parked && allowed),
                            "cpu {} idles with {:?} runnable", cpu, id
                        );
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `pick_next` itself never answers idle while a runnable vCPU may run on that pCPU.
    #[test]
    fn pick_next_idle_only_when_nothing_runnable(
        wakes in proptest::collection::vec(any::<bool>(), 5),
        masks in proptest::collection::vec(1u8..8, 5),
        t in 0u64..10 * SEC,
    ) {
        let mut s = Scheduler::new(3);
        for d in 1..=3u16 {
            s.add_domain(DomId(d), 256, 0).unwrap();
        }
        for (i, &(d, v)) in IDS.iter().enumerate() {
            s.add_vcpu(u(d, v)).unwrap();
            let cpus: Vec<usize> = (0..3).filter(|c| masks[i] & (1 << c) != 0).collect();
            s.set_affinity(u(d, v), &cpus).unwrap();
            if wakes[i] {
                let _ = s.wake(u(d, v));
            }
        }
        for cpu in 0..3 {
            let d = s.pick_next(cpu, t);
            let runnable_here = IDS.iter().any(|&(dd, v)| {
                let id = u(dd, v);
                s.status(id).unwrap().state == RunState::Runnable
                    && s.vcpus.get(&id).unwrap().may_run_on(cpu)
            });
            if d.vcpu.is_none() {
                prop_assert!(!runnable_here);
            } else {
                let id = d.vcpu.unwrap();
                prop_assert!(s.vcpus.get(&id).unwrap().may_run_on(cpu));
            }
            s.check_invariants();
        }
    }
}
