//! Checked access to guest virtual memory.
//!
//! A guest address is never turned into a reference. Accesses walk the guest's current page
//! tables in software, require Present and User at every level (and RW for writes), refuse
//! the hypervisor's reserved range the way Xen's `access_ok` does, and only touch frames the
//! domain may map. Any failure is `EFAULT`.
//!
//! Each CPU keeps the last walks it made in a small cache, keyed by the frame table's
//! generation: any change a walk depends on (a validated table's entry, a frame's owner or
//! allocation, a type) moves the generation, so a cached translation is exactly what a new walk
//! would find. Changes only happen under the domain lock, which every guest-memory access
//! holds.
use core::cell::UnsafeCell;
use core::sync::atomic::Ordering;

use xen_abi::errno::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::domain::Domain;
use crate::mm::{frame_bytes, pte, table_of};

/// Whether a guest pointer may be dereferenced on the guest's behalf (canonical, not in the
/// hypervisor's reserved range).
pub fn addr_ok(va: u64) -> bool {
    !((1 << 47)..xen_abi::layout::HYPERVISOR_VIRT_END).contains(&va)
}

/// A view of one domain's memory through a root page table.
pub struct GuestMem<'a> {
    /// The domain whose frames the walk may touch.
    id: u16,
    pub root: u64,
    _dom: core::marker::PhantomData<&'a Domain>,
}

impl GuestMem<'_> {
    /// Access to `dom`'s memory through the root page table `root`.
    pub fn current(dom: &Domain, root: u64) -> GuestMem<'static> {
        GuestMem {
            id: dom.id,
            root,
            _dom: core::marker::PhantomData,
        }
    }

    /// Translates a guest VA to the frame an access of it touches: from this CPU's
    /// translation cache if the frame table has not changed since the same walk was made,
    /// else by a walk that holds the frame table's lock once, for all four levels.
    pub fn translate(&self, va: u64, write: bool) -> Result<u64, Errno> {
        if !addr_ok(va) {
            return Err(Errno::EFAULT);
        }
        let key = Key {
            generation: crate::mm::FRAMES_GENERATION.load(Ordering::Acquire),
            root: self.root,
            dom: self.id,
            vpn: va >> 12,
        };
        let cache = this_cpu_cache();
        if let Some(mfn) = cache.lookup(&key, write) {
            return Ok(mfn);
        }
        let mfn = self.walk(va, write)?;
        cache.insert(key, write, mfn);
        Ok(mfn)
    }

    /// The page walk behind `translate`.
    fn walk(&self, va: u64, write: bool) -> Result<u64, Errno> {
        self.walk_path(va, write).map(|(mfn, _)| mfn)
    }

    /// Translates `va` for a read by a fresh walk, also returning the machine addresses of
    /// the four entries the walk went through (L4 to L1). The translation holds for as long
    /// as none of those entries changes: the tables on the path keep their type and owner
    /// while the entries above them reference them, the root while it is the vCPU's root,
    /// and the leaf frame its owner while it is mapped.
    pub fn translate_path(&self, va: u64) -> Result<(u64, [u64; 4]), Errno> {
        if !addr_ok(va) {
            return Err(Errno::EFAULT);
        }
        self.walk_path(va, false)
    }

    fn walk_path(&self, va: u64, write: bool) -> Result<(u64, [u64; 4]), Errno> {
        let id = self.id;
        crate::mm::with_frames(|ft, _| {
            let mut table = self.root;
            let mut path = [0u64; 4];
            let need = pte::PRESENT | pte::USER | if write { pte::RW } else { 0 };
            for level in (1..=4).rev() {
                if !ft.owned_by(table, id) {
                    return Err(Errno::EFAULT);
                }
                let idx = ((va >> (12 + 9 * (level - 1))) & 511) as usize;
                path[4 - level as usize] = (table << 12) + idx as u64 * 8;
                let e = table_of(table)[idx];
                if e & need != need || (level > 1 && e & pte::PSE != 0) {
                    return Err(Errno::EFAULT);
                }
                table = (e & pte::ADDR_MASK) >> 12;
            }
            if !ft.mappable_by(table, id) {
                return Err(Errno::EFAULT);
            }
            Ok((table, path))
        })
    }

    /// Copies guest memory at `va` into `buf`.
    pub fn read(&self, va: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut done = 0usize;
        while done < buf.len() {
            let a = va.checked_add(done as u64).ok_or(Errno::EFAULT)?;
            let mfn = self.translate(a, false)?;
            let off = (a & 0xfff) as usize;
            let n = (4096 - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&frame_bytes(mfn)[off..off + n]);
            done += n;
        }
        Ok(())
    }

    /// Copies `buf` into guest memory at `va`. Every page is checked before any byte is
    /// written, so a failing copy leaves guest memory untouched.
    pub fn write(&self, va: u64, buf: &[u8]) -> Result<(), Errno> {
        let off = (va & 0xfff) as usize;
        if buf.is_empty() {
            return Ok(());
        }
        if off + buf.len() <= 4096 {
            // Within one page: one check covers it.
            let mfn = self.translate(va, true)?;
            frame_bytes(mfn)[off..off + buf.len()].copy_from_slice(buf);
            return Ok(());
        }
        for pass in 0..2 {
            let mut done = 0usize;
            while done < buf.len() {
                let a = va.checked_add(done as u64).ok_or(Errno::EFAULT)?;
                let mfn = self.translate(a, true)?;
                let off = (a & 0xfff) as usize;
                let n = (4096 - off).min(buf.len() - done);
                if pass == 1 {
                    frame_bytes(mfn)[off..off + n].copy_from_slice(&buf[done..done + n]);
                }
                done += n;
            }
        }
        Ok(())
    }

    /// Reads a plain-data value.
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, va: u64) -> Result<T, Errno> {
        let mut v = T::new_zeroed();
        self.read(va, v.as_mut_bytes())?;
        Ok(v)
    }

    /// Writes a plain-data value.
    pub fn write_obj<T: IntoBytes + Immutable>(&self, va: u64, v: &T) -> Result<(), Errno> {
        self.write(va, v.as_bytes())
    }
}

/// What a cached translation depends on: the frame table as it was (its generation moves with
/// every change of a validated table, an owner or a type), the root walked from, the domain
/// whose frames the walk accepted, and the page.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    generation: u64,
    root: u64,
    dom: u16,
    vpn: u64,
}

/// A cached translation; `write` says the walk allowed writes (it then serves reads too).
#[derive(Clone, Copy)]
struct Entry {
    key: Key,
    write: bool,
    mfn: u64,
}

/// Slots of each CPU's cache, indexed by the low bits of the page number.
const SLOTS: usize = 16;

/// One CPU's translation cache.
struct Cache(UnsafeCell<[Option<Entry>; SLOTS]>);

// SAFETY: each CPU only touches its own cache (`this_cpu_cache`), with interrupts off.
unsafe impl Sync for Cache {}

static CACHES: [Cache; crate::percpu::MAX_CPUS] =
    [const { Cache(UnsafeCell::new([None; SLOTS])) }; crate::percpu::MAX_CPUS];

fn this_cpu_cache() -> &'static Cache {
    &CACHES[crate::percpu::cpu_id()]
}

impl Cache {
    fn lookup(&self, key: &Key, write: bool) -> Option<u64> {
        // SAFETY: this CPU's cache; no reference into it outlives this call, and nothing else
        // runs on this CPU meanwhile (interrupts are off in the hypervisor).
        let slots = unsafe { &*self.0.get() };
        match slots[(key.vpn as usize) % SLOTS] {
            Some(e) if e.key == *key && (e.write || !write) => Some(e.mfn),
            _ => None,
        }
    }

    fn insert(&self, key: Key, write: bool, mfn: u64) {
        // SAFETY: as in `lookup`.
        let slots = unsafe { &mut *self.0.get() };
        slots[(key.vpn as usize) % SLOTS] = Some(Entry { key, write, mfn });
    }
}
