//! A credit scheduler policy after Xen's credit1: weights, caps, UNDER/OVER/BOOST, driven with explicit time.
//!
//! The hypervisor owns the mechanism (timers, IPIs, context switches); this module only decides.
//! It is driven with the current time in nanoseconds:
//!
//! * [`Scheduler::pick_next`] when a pCPU's slice timer fires, after its vCPU blocked, or when
//!   told to reschedule (the pCPU returned by [`Scheduler::wake`]). It charges the time the
//!   previous vCPU ran, returns the next vCPU (or idle) and how long it may run.
//! * [`Scheduler::wake`] / [`Scheduler::block`] on vCPU state changes.
//!
//! Every call that returns a pCPU (`wake`, `block`, `set_affinity`, `remove_*`,
//! [`Decision::tickle`]) asks the caller to make that pCPU call `pick_next` promptly. Following
//! them keeps the work-conserving invariant: no pCPU idles while a queued vCPU may run on it.
//!
//! Policy (Xen `common/sched/credit.c`): every accounting period (3 ticks of 10 ms) the
//! `nr_cpus × period` of CPU time is handed out as credit to the *active* domains in proportion to
//! their weight, water-filled so that no domain gets more than its active vCPUs can use or than
//! its cap allows, then split evenly among the domain's active vCPUs (so a domain's share does not
//! depend on how many vCPUs it has). Running burns credit 1:1 with time. A vCPU with credit ≥ 0 is
//! UNDER, < 0 OVER; a vCPU that wakes while UNDER is BOOSTed for up to one tick. The run queue is
//! served BOOST, then UNDER, then OVER, round-robin within each class (a descheduled vCPU goes to
//! the tail of its class). A capped domain's vCPU whose credit falls below minus its share of the
//! cap at accounting time is parked (not runnable) until an accounting period leaves it with
//! credit ≥ 0 again. Credit is clamped to ±one period.
//!
//! Invariants (checked by the tests): a vCPU is in exactly one of blocked, queued (runnable and not
//! parked), parked, or running on exactly one pCPU; only running vCPUs are charged; `pick_next`
//! answers idle only when no runnable, unparked vCPU whose affinity includes that pCPU is queued;
//! all arithmetic is saturating or bounded (time may be passed non-monotonically without panics).
//!
//! Differences from Xen's credit1, on purpose: one global run queue instead of per-pCPU queues
//! with work stealing (no cache affinity; equivalent to perfect stealing); a domain's credit
//! depends on its weight only, not weight × active vCPUs as in Xen ≥ 4.2; credit is water-filled
//! among domains instead of Xen's single pass, and clamped to ±one period instead of halving and
//! deactivating; a vCPU is active for accounting while runnable or if it ran during the period;
//! there is no rate limit (Xen's 1 ms `ratelimit_us`) and no per-tick preemption check (the slice
//! returned by `pick_next` ends at the next tick of a boosted vCPU and at every accounting).
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec;
use alloc::vec::Vec;

use xen_abi::errno::Errno;
use xen_abi::types::{DomId, VcpuId};

#[cfg(test)]
mod tests;

/// Xen's default domain weight.
pub const DEFAULT_WEIGHT: u16 = 256;

/// A schedulable vCPU: domain and vCPU index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitId {
    /// The owning domain.
    pub dom: DomId,
    /// vCPU index within the domain.
    pub vcpu: VcpuId,
}

/// Timing parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Tick length: granularity of boost expiry (Xen: 10 ms).
    pub tick_ns: u64,
    /// Ticks per accounting period (Xen: 3, i.e. 30 ms).
    pub ticks_per_acct: u32,
    /// Longest uninterrupted run of one vCPU (Xen `sched_credit_tslice_ms`: 30 ms).
    pub tslice_ns: u64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            tick_ns: 10_000_000,
            ticks_per_acct: 3,
            tslice_ns: 30_000_000,
        }
    }
}

impl Params {
    fn period_ns(&self) -> u64 {
        self.tick_ns
            .saturating_mul(u64::from(self.ticks_per_acct))
            .max(1)
    }
}

/// Scheduling class, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Just woke with credit left: runs ahead of everyone for up to one tick.
    Boost = 0,
    /// Credit ≥ 0.
    Under = 1,
    /// Credit < 0: runs only when nothing better is runnable.
    Over = 2,
}

/// Run state of a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Not runnable until woken.
    Blocked,
    /// Runnable, waiting for a pCPU (or parked by its cap).
    Runnable,
    /// Running on this pCPU.
    Running(usize),
}

/// A scheduling decision for one pCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The vCPU to run; `None`: idle.
    pub vcpu: Option<UnitId>,
    /// Call `pick_next` again after this long at the latest (`u64::MAX`: only when woken).
    pub run_for_ns: u64,
    /// Another pCPU that is idle while a queued vCPU may run on it (e.g. the vCPU this pCPU just
    /// descheduled): make it call `pick_next` too.
    pub tickle: Option<usize>,
}

/// What the scheduler knows about a vCPU (for introspection and runstate accounting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuStatus {
    /// Run state.
    pub state: RunState,
    /// Credit in nanoseconds of CPU time.
    pub credit: i64,
    /// Current class.
    pub priority: Priority,
    /// Parked by its domain's cap.
    pub parked: bool,
    /// Total time charged (time it ran), in ns.
    pub runtime_ns: u64,
}

#[derive(Clone, Debug)]
struct Dom {
    weight: u16,
    /// Percent of one pCPU, 0 = uncapped.
    cap: u32,
}

#[derive(Clone, Debug)]
struct Vcpu {
    state: RunState,
    credit: i64,
    pri: Priority,
    parked: bool,
    /// Ran during the current accounting period.
    ran: bool,
    /// Time run since the last wake while boosted.
    boost_used: u64,
    runtime: u64,
    /// Allowed pCPUs (bitmap); `None`: all.
    affinity: Option<Vec<u64>>,
    /// Yielded while running: the next `pick_next` on its pCPU prefers any other vCPU.
    yielded: bool,
}

impl Vcpu {
    fn may_run_on(&self, cpu: usize) -> bool {
        match &self.affinity {
            None => true,
            Some(m) => m
                .get(cpu / 64)
                .is_some_and(|w| w & (1u64 << (cpu % 64)) != 0),
        }
    }

    fn class_by_credit(&self) -> Priority {
        if self.credit < 0 {
            Priority::Over
        } else {
            Priority::Under
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    curr: Option<UnitId>,
    /// Time up to which `curr` has been charged.
    since: u64,
}

/// The scheduler state for all pCPUs.
#[derive(Debug)]
pub struct Scheduler {
    params: Params,
    cpus: Vec<Cpu>,
    doms: BTreeMap<DomId, Dom>,
    vcpus: BTreeMap<UnitId, Vcpu>,
    /// Run queues indexed by `Priority as usize`.
    runq: [VecDeque<UnitId>; 3],
    /// End of the current accounting period (`None` before the first call with a time).
    next_acct: Option<u64>,
}

/// Accounting periods caught up at most per call (credits saturate within a few periods anyway).
const MAX_CATCHUP_PERIODS: u32 = 8;

impl Scheduler {
    /// A scheduler for `nr_cpus` pCPUs (at least 1) with Xen's default timing.
    pub fn new(nr_cpus: usize) -> Scheduler {
        Scheduler::with_params(nr_cpus, Params::default())
    }

    /// A scheduler with explicit timing parameters.
    pub fn with_params(nr_cpus: usize, params: Params) -> Scheduler {
        Scheduler {
            params,
            cpus: vec![Cpu::default(); nr_cpus.max(1)],
            doms: BTreeMap::new(),
            vcpus: BTreeMap::new(),
            runq: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            next_acct: None,
        }
    }

    /// Number of pCPUs.
    pub fn nr_cpus(&self) -> usize {
        self.cpus.len()
    }

    /// Registers a domain with `weight` (1..=65535) and `cap` (% of one pCPU, 0 = none).
    /// Errors: `-EEXIST`, `-EINVAL` (weight 0).
    pub fn add_domain(&mut self, dom: DomId, weight: u16, cap: u32) -> Result<(), Errno> {
        if weight == 0 {
            return Err(Errno::EINVAL);
        }
        if self.doms.contains_key(&dom) {
            return Err(Errno::EEXIST);
        }
        self.doms.insert(dom, Dom { weight, cap });
        Ok(())
    }

    /// Removes a domain and all its vCPUs. Returns the pCPUs that were running one of them and
    /// must reschedule. Errors: `-ESRCH`.
    pub fn remove_domain(&mut self, dom: DomId, now_ns: u64) -> Result<Vec<usize>, Errno> {
        if !self.doms.contains_key(&dom) {
            return Err(Errno::ESRCH);
        }
        let ids: Vec<UnitId> = self
            .vcpus
            .keys()
            .filter(|u| u.dom == dom)
            .copied()
            .collect();
        let mut cpus = Vec::new();
        for id in ids {
            if let Ok(Some(c)) = self.remove_vcpu(id, now_ns) {
                cpus.push(c);
            }
        }
        self.doms.remove(&dom);
        Ok(cpus)
    }

    /// Adds a vCPU of a registered domain, blocked, with zero credit.
    /// Errors: `-ESRCH` (unknown domain), `-EEXIST`.
    pub fn add_vcpu(&mut self, id: UnitId) -> Result<(), Errno> {
        if !self.doms.contains_key(&id.dom) {
            return Err(Errno::ESRCH);
        }
        if self.vcpus.contains_key(&id) {
            return Err(Errno::EEXIST);
        }
        self.vcpus.insert(
            id,
            Vcpu {
                state: RunState::Blocked,
                credit: 0,
                pri: Priority::Under,
                parked: false,
                ran: false,
                boost_used: 0,
                runtime: 0,
                affinity: None,
                yielded: false,
            },
        );
        Ok(())
    }

    /// Removes a vCPU. Returns the pCPU that was running it (it must reschedule).
    /// Errors: `-ENOENT`.
    pub fn remove_vcpu(&mut self, id: UnitId, now_ns: u64) -> Result<Option<usize>, Errno> {
        let cpu = self.block(id, now_ns)?;
        self.vcpus.remove(&id);
        Ok(cpu)
    }

    /// Sets a domain's weight (1..=65535). Errors: `-ESRCH`, `-EINVAL`.
    pub fn set_weight(&mut self, dom: DomId, weight: u16) -> Result<(), Errno> {
        if weight == 0 {
            return Err(Errno::EINVAL);
        }
        self.doms.get_mut(&dom).ok_or(Errno::ESRCH)?.weight = weight;
        Ok(())
    }

    /// A domain's weight and cap. Errors: `-ESRCH`.
    pub fn domain_params(&self, dom: DomId) -> Result<(u16, u32), Errno> {
        let d = self.doms.get(&dom).ok_or(Errno::ESRCH)?;
        Ok((d.weight, d.cap))
    }

    /// Sets a domain's cap in percent of one pCPU (0 = none); takes effect at the next accounting.
    /// Errors: `-ESRCH`.
    pub fn set_cap(&mut self, dom: DomId, cap: u32) -> Result<(), Errno> {
        self.doms.get_mut(&dom).ok_or(Errno::ESRCH)?.cap = cap;
        Ok(())
    }

    /// Restricts a vCPU to the pCPUs in `cpus`. Returns the pCPU that must reschedule: the one
    /// running the vCPU outside its new affinity, or an idle one the queued vCPU may now use.
    /// Errors: `-ENOENT`, `-EINVAL` (no valid pCPU).
    pub fn set_affinity(&mut self, id: UnitId, cpus: &[usize]) -> Result<Option<usize>, Errno> {
        let n = self.cpus.len();
        let mut mask = vec![0u64; n.div_ceil(64)];
        let mut any = false;
        for &c in cpus.iter().filter(|&&c| c < n) {
            if let Some(w) = mask.get_mut(c / 64) {
                *w |= 1u64 << (c % 64);
                any = true;
            }
        }
        if !any {
            return Err(Errno::EINVAL);
        }
        let v = self.vcpus.get_mut(&id).ok_or(Errno::ENOENT)?;
        v.affinity = Some(mask);
        Ok(match v.state {
            RunState::Running(c) if !v.may_run_on(c) => Some(c),
            RunState::Runnable if !v.parked => self.idle_cpu_for_queued(None),
            _ => None,
        })
    }

    /// What the scheduler knows about `id`.
    pub fn status(&self, id: UnitId) -> Option<VcpuStatus> {
        self.vcpus.get(&id).map(|v| VcpuStatus {
            state: v.state,
            credit: v.credit,
            priority: v.pri,
            parked: v.parked,
            runtime_ns: v.runtime,
        })
    }

    /// The vCPU `cpu` is running, if any.
    pub fn current(&self, cpu: usize) -> Option<UnitId> {
        self.cpus.get(cpu).and_then(|c| c.curr)
    }

    /// Makes a blocked vCPU runnable (a no-op for a runnable or running one). It is BOOSTed if it
    /// has credit left and is not parked. Returns a pCPU that should call `pick_next` now: an idle
    /// one it may run on, else one running something of a lower class. Errors: `-ENOENT`.
    pub fn wake(&mut self, id: UnitId) -> Result<Option<usize>, Errno> {
        let v = self.vcpus.get_mut(&id).ok_or(Errno::ENOENT)?;
        if v.state != RunState::Blocked {
            return Ok(None);
        }
        v.state = RunState::Runnable;
        v.boost_used = 0;
        v.pri = if v.credit >= 0 && !v.parked {
            Priority::Boost
        } else {
            v.class_by_credit()
        };
        if v.parked {
            return Ok(None);
        }
        let pri = v.pri;
        self.enqueue(id);
        Ok(self.tickle(id, pri))
    }

    /// Chooses the pCPU to poke for a newly queued vCPU of class `pri`.
    fn tickle(&self, id: UnitId, pri: Priority) -> Option<usize> {
        let v = self.vcpus.get(&id)?;
        let mut victim: Option<(usize, Priority)> = None;
        for (i, c) in self.cpus.iter().enumerate() {
            if !v.may_run_on(i) {
                continue;
            }
            match c.curr.and_then(|u| self.vcpus.get(&u)) {
                None => return Some(i),
                Some(cur) => {
                    if cur.pri > pri && victim.is_none_or(|(_, vp)| cur.pri > vp) {
                        victim = Some((i, cur.pri));
                    }
                }
            }
        }
        victim.map(|(i, _)| i)
    }

    /// The running vCPU `id` yields: at the next `pick_next` of its pCPU, any other vCPU that
    /// may run there goes first, whatever its class. Errors: `-ENOENT`.
    pub fn yield_vcpu(&mut self, id: UnitId) -> Result<(), Errno> {
        let v = self.vcpus.get_mut(&id).ok_or(Errno::ENOENT)?;
        v.yielded = matches!(v.state, RunState::Running(_));
        Ok(())
    }

    /// Blocks a vCPU (if running, it is charged up to `now_ns`). Returns the pCPU that was running
    /// it and must call `pick_next`. Errors: `-ENOENT`.
    pub fn block(&mut self, id: UnitId, now_ns: u64) -> Result<Option<usize>, Errno> {
        let Some(v) = self.vcpus.get(&id) else {
            return Err(Errno::ENOENT);
        };
        if let RunState::Running(c) = v.state {
            self.charge_cpu(c, now_ns);
        }
        let Some(v) = self.vcpus.get_mut(&id) else {
            return Err(Errno::ENOENT);
        };
        let prev = v.state;
        v.state = RunState::Blocked;
        Ok(match prev {
            RunState::Blocked => None,
            RunState::Runnable => {
                self.dequeue(id);
                None
            }
            RunState::Running(c) => {
                if let Some(cpu) = self.cpus.get_mut(c) {
                    if cpu.curr == Some(id) {
                        cpu.curr = None;
                    }
                }
                Some(c)
            }
        })
    }

    /// Brings accounting up to `now_ns`: charges every running vCPU and runs the accounting periods
    /// that ended (only from `pick_next`, whose tickle covers vCPUs that accounting unparks).
    fn account(&mut self, now_ns: u64) {
        let period = self.params.period_ns();
        let next = *self.next_acct.get_or_insert(now_ns.saturating_add(period));
        for c in 0..self.cpus.len() {
            self.charge_cpu(c, now_ns);
        }
        if now_ns < next {
            return;
        }
        let behind = (now_ns - next) / period + 1;
        for _ in 0..behind.min(u64::from(MAX_CATCHUP_PERIODS)) {
            self.do_acct();
        }
        self.next_acct = Some(next.saturating_add(behind.saturating_mul(period)));
    }

    /// Charges the vCPU running on `cpu` for the time since it was last charged.
    fn charge_cpu(&mut self, cpu: usize, now: u64) {
        let Some(c) = self.cpus.get_mut(cpu) else {
            return;
        };
        let ran = now.saturating_sub(c.since);
        c.since = c.since.max(now);
        let Some(id) = c.curr else {
            return;
        };
        let tick = self.params.tick_ns;
        let Some(v) = self.vcpus.get_mut(&id) else {
            return;
        };
        v.runtime = v.runtime.saturating_add(ran);
        v.credit = v
            .credit
            .saturating_sub(i64::try_from(ran).unwrap_or(i64::MAX));
        v.ran = true;
        // As in Xen, UNDER/OVER only change at accounting; a boost ends after one tick of running.
        if v.pri == Priority::Boost {
            v.boost_used = v.boost_used.saturating_add(ran);
            if v.boost_used >= tick {
                v.pri = v.class_by_credit();
            }
        }
    }

    /// One accounting period: distribute credit, reclassify, park and unpark.
    fn do_acct(&mut self) {
        let period = i64::try_from(self.params.period_ns()).unwrap_or(i64::MAX);
        // Active vCPUs per domain: runnable, running or ran during the period.
        let mut active: BTreeMap<DomId, u64> = BTreeMap::new();
        for (id, v) in &self.vcpus {
            if v.state != RunState::Blocked || v.ran {
                *active.entry(id.dom).or_default() += 1;
            }
        }
        // Water-fill nr_cpus × period among active domains by weight, each limited by its peak.
        let mut remaining = i128::from(period) * self.cpus.len() as i128;
        let mut open: Vec<(DomId, i128, i128)> = active
            .iter()
            .filter_map(|(d, &n)| {
                let dom = self.doms.get(d)?;
                let mut peak = i128::from(period) * i128::from(n);
                if dom.cap != 0 {
                    peak = peak.min(i128::from(period) * i128::from(dom.cap) / 100);
                }
                Some((*d, i128::from(dom.weight), peak))
            })
            .collect();
        let mut grant: BTreeMap<DomId, i128> = BTreeMap::new();
        while !open.is_empty() {
            let wsum: i128 = open.iter().map(|&(_, w, _)| w).sum::<i128>().max(1);
            let saturated: Vec<usize> = open
                .iter()
                .enumerate()
                .filter(|(_, &(_, w, peak))| remaining * w / wsum >= peak)
                .map(|(i, _)| i)
                .collect();
            if saturated.is_empty() {
                for &(d, w, _) in &open {
                    grant.insert(d, remaining * w / wsum);
                }
                break;
            }
            for &i in saturated.iter().rev() {
                let (d, _, peak) = open.swap_remove(i);
                remaining -= peak;
                grant.insert(d, peak);
            }
        }
        // Per-vCPU credit and classification.
        for (id, v) in self.vcpus.iter_mut() {
            let is_active = v.state != RunState::Blocked || v.ran;
            v.ran = false;
            if !is_active {
                continue;
            }
            let n = i128::from(*active.get(&id.dom).unwrap_or(&1)).max(1);
            let share = grant.get(&id.dom).copied().unwrap_or(0);
            let per = i64::try_from((share + n - 1) / n).unwrap_or(i64::MAX);
            let cap = self.doms.get(&id.dom).map_or(0, |d| d.cap);
            v.credit = v.credit.saturating_add(per);
            if v.credit < 0 {
                v.pri = Priority::Over;
                if cap != 0 {
                    let cap_credit = i128::from(period) * i128::from(cap) / 100;
                    let per_cap = i64::try_from((cap_credit + n - 1) / n).unwrap_or(i64::MAX);
                    if v.credit < -per_cap {
                        v.parked = true;
                    }
                }
                v.credit = v.credit.max(-period);
            } else {
                v.pri = Priority::Under;
                v.parked = false;
                v.credit = v.credit.min(period);
            }
        }
        self.rebuild_runq();
    }

    /// Re-sorts the queues after reclassification (stable within each class), dropping parked
    /// vCPUs and adding unparked runnable ones at the tail.
    fn rebuild_runq(&mut self) {
        let mut queued: Vec<UnitId> = Vec::new();
        for q in self.runq.iter_mut() {
            queued.extend(q.drain(..));
        }
        let mut in_queue: BTreeSet<UnitId> = BTreeSet::new();
        for id in queued {
            if in_queue.insert(id) {
                self.enqueue(id);
            }
        }
        let unparked: Vec<UnitId> = self
            .vcpus
            .iter()
            .filter(|(id, v)| v.state == RunState::Runnable && !v.parked && !in_queue.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in unparked {
            self.enqueue(id);
        }
    }

    /// Appends a runnable, unparked vCPU to the tail of its class.
    fn enqueue(&mut self, id: UnitId) {
        let Some(v) = self.vcpus.get(&id) else {
            return;
        };
        if v.state != RunState::Runnable || v.parked {
            return;
        }
        if let Some(q) = self.runq.get_mut(v.pri as usize) {
            q.push_back(id);
        }
    }

    fn dequeue(&mut self, id: UnitId) {
        for q in self.runq.iter_mut() {
            q.retain(|&u| u != id);
        }
    }

    /// Decides what `cpu` runs next at `now_ns`: the previous vCPU is charged and, if still
    /// runnable, goes to the tail of its class; the best queued vCPU allowed on `cpu` is chosen.
    /// An out-of-range `cpu` gets idle.
    pub fn pick_next(&mut self, cpu: usize, now_ns: u64) -> Decision {
        if cpu >= self.cpus.len() {
            return Decision {
                vcpu: None,
                run_for_ns: u64::MAX,
                tickle: None,
            };
        }
        self.account(now_ns);
        let mut yielded = None;
        if let Some(prev) = self.cpus.get_mut(cpu).and_then(|c| c.curr.take()) {
            if let Some(v) = self.vcpus.get_mut(&prev) {
                if core::mem::take(&mut v.yielded) {
                    yielded = Some(prev);
                }
                if v.state == RunState::Running(cpu) {
                    v.state = RunState::Runnable;
                    self.enqueue(prev);
                }
            }
        }
        let next_acct = self.next_acct.unwrap_or(now_ns);
        let to_acct = next_acct.saturating_sub(now_ns).max(1);
        let mut chosen = None;
        // A vCPU that yielded runs again only if nothing else may run here, whatever the
        // other's class (Xen's credit puts it behind one lower-priority vCPU).
        'passes: for skip in [yielded, None] {
            for q in self.runq.iter_mut() {
                for (i, id) in q.iter().enumerate() {
                    if Some(*id) != skip && self.vcpus.get(id).is_some_and(|v| v.may_run_on(cpu)) {
                        chosen = q.remove(i);
                        break 'passes;
                    }
                }
            }
        }
        let Some(id) = chosen else {
            let parked = self
                .vcpus
                .values()
                .any(|v| v.parked && v.state == RunState::Runnable);
            return Decision {
                vcpu: None,
                run_for_ns: if parked { to_acct } else { u64::MAX },
                tickle: self.idle_cpu_for_queued(Some(cpu)),
            };
        };
        let mut run_for = self.params.tslice_ns.max(1).min(to_acct);
        if let Some(v) = self.vcpus.get_mut(&id) {
            v.state = RunState::Running(cpu);
            if v.pri == Priority::Boost {
                let left = self.params.tick_ns.saturating_sub(v.boost_used).max(1);
                run_for = run_for.min(left);
            }
        }
        if let Some(c) = self.cpus.get_mut(cpu) {
            c.curr = Some(id);
            c.since = now_ns;
        }
        Decision {
            vcpu: Some(id),
            run_for_ns: run_for,
            tickle: self.idle_cpu_for_queued(Some(cpu)),
        }
    }

    /// An idle pCPU (other than `except`) on which some queued vCPU may run.
    fn idle_cpu_for_queued(&self, except: Option<usize>) -> Option<usize> {
        self.cpus.iter().enumerate().find_map(|(c, cpu)| {
            if Some(c) == except || cpu.curr.is_some() {
                return None;
            }
            self.runq
                .iter()
                .flatten()
                .any(|id| self.vcpus.get(id).is_some_and(|v| v.may_run_on(c)))
                .then_some(c)
        })
    }

    /// Checks the internal invariants (tests and debug builds).
    #[cfg(test)]
    fn check_invariants(&self) {
        for (id, v) in &self.vcpus {
            let queued = self
                .runq
                .iter()
                .map(|q| q.iter().filter(|&&u| u == *id).count())
                .sum::<usize>();
            let running_on: Vec<usize> = self
                .cpus
                .iter()
                .enumerate()
                .filter(|(_, c)| c.curr == Some(*id))
                .map(|(i, _)| i)
                .collect();
            match v.state {
                RunState::Blocked => assert!(queued == 0 && running_on.is_empty(), "{id:?}"),
                RunState::Runnable => {
                    assert!(running_on.is_empty(), "{id:?}");
                    assert_eq!(queued, usize::from(!v.parked), "{id:?} {v:?}");
                    if !v.parked {
                        assert!(
                            self.runq[v.pri as usize].contains(id),
                            "{id:?} in wrong class"
                        );
                    }
                }
                RunState::Running(c) => {
                    assert_eq!(queued, 0, "{id:?}");
                    assert_eq!(running_on, vec![c], "{id:?}");
                }
            }
        }
    }
}
