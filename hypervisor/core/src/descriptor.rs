//! Validation of guest segment descriptors (GDT/LDT entries of a PV guest).
//!
//! Rules (Xen's check_descriptor for 64-bit PV guests): a not-present descriptor is harmless;
//! code and data descriptors are accepted with any base and limit, their DPL raised to 3 (the
//! guest kernel runs in ring 3); type 0 is accepted (it is the upper half of a 16-byte call
//! gate); a call gate is accepted only with an acceptable target selector and is stored with
//! DPL 0, so using it faults into the hypervisor; every other system type (TSS, LDT,
//! interrupt and trap gates) is refused.

const P: u64 = 1 << 47;
const S: u64 = 1 << 44;
const DPL_SHIFT: u32 = 45;
const DPL: u64 = 3 << DPL_SHIFT;
const TYPE_SHIFT: u32 = 40;
const TYPE: u64 = 0xf << TYPE_SHIFT;
const CALL_GATE: u64 = 0xc << TYPE_SHIFT;
/// Byte offset of the hypervisor's reserved GDT entries.
const FIRST_RESERVED_GDT_BYTE: u16 = 0xe000;

/// Whether a call gate may name `sel` as its target code segment.
fn gate_selector_ok(sel: u16) -> bool {
    let ldt = sel & 4 != 0;
    let index_byte = sel & !7;
    if ldt {
        return true;
    }
    if index_byte == 0 {
        return false;
    }
    if index_byte < FIRST_RESERVED_GDT_BYTE {
        return true;
    }
    // Among the hypervisor's entries only the flat ring-3 code selectors.
    matches!(sel & !3, 0xe020 | 0xe030)
}

/// The descriptor as it is installed, or `None` if the guest may not have it.
pub fn fixup(desc: u64) -> Option<u64> {
    if desc & P == 0 {
        return Some(desc);
    }
    if desc & S != 0 {
        // Code or data: raise the DPL to 3.
        return Some(desc | DPL);
    }
    match desc & TYPE {
        0 => Some(desc),
        CALL_GATE => {
            let sel = ((desc >> 16) & 0xffff) as u16;
            if !gate_selector_ok(sel) {
                return None;
            }
            // Reserved bits (parameter count and the bits above it) must be zero.
            if (desc >> 32) & 0xff != 0 {
                return None;
            }
            let dpl = ((desc & DPL) >> DPL_SHIFT) as u16;
            // Store the guest's DPL in the target selector's RPL, and DPL 0 in the gate.
            let sel = (sel & !3) | dpl.max(3);
            Some((desc & !DPL & !(0xffff << 16)) | (u64::from(sel) << 16))
        }
        _ => None,
    }
}

/// Whether a descriptor is acceptable at all.
pub fn check(desc: u64) -> bool {
    fixup(desc).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a code/data descriptor.
    fn seg(ty: u64, dpl: u64, s: bool) -> u64 {
        0x00cf_0000_0000_ffff | P | (ty << TYPE_SHIFT) | (dpl << DPL_SHIFT) | if s { S } else { 0 }
    }

    #[test]
    fn code_and_data_get_dpl3() {
        let d = seg(0xa, 0, true);
        assert_eq!(fixup(d), Some(d | DPL));
        let d = seg(0x2, 3, true);
        assert_eq!(fixup(d), Some(d));
    }

    #[test]
    fn not_present_and_type0_are_harmless() {
        assert_eq!(fixup(0x1234_5678), Some(0x1234_5678));
        let upper_half = P; // type 0, system
        assert_eq!(fixup(upper_half), Some(upper_half));
    }

    #[test]
    fn system_types_refused() {
        for ty in [0x1, 0x2, 0x3, 0x9, 0xb, 0xe, 0xf] {
            assert_eq!(fixup(seg(ty, 3, false)), None, "type {ty:#x}");
        }
    }

    #[test]
    fn call_gates() {
        let gate = |sel: u64, dpl: u64| P | CALL_GATE | (dpl << DPL_SHIFT) | (sel << 16) | 0x1000;
        let fixed = fixup(gate(0xe033, 3)).unwrap();
        assert_eq!(fixed & DPL, 0, "gate stored with DPL 0");
        assert_eq!((fixed >> 16) & 3, 3, "guest DPL kept in the selector RPL");
        assert_eq!(fixup(gate(0xe008, 3)), None, "hypervisor code selector");
        assert_eq!(fixup(gate(0, 3)), None, "null selector");
        assert!(fixup(gate(0x10, 3)).is_some(), "guest GDT selector");
        assert_eq!(fixup(gate(0x10, 3) | (1 << 32)), None, "parameter count");
    }
}
