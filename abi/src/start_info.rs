//! The start-of-day page handed to a PV kernel in `rsi` (`struct start_info`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Magic string a 64-bit x86 PV guest finds at the start of `start_info`
/// (NUL padded to 32 bytes).
pub const START_INFO_MAGIC_X86_64: &[u8] = b"xen-3.0-x86_64";
/// Size of `start_info.cmd_line`, including the terminating NUL.
pub const MAX_GUEST_CMDLINE: usize = 1024;

/// Domain is privileged (may use privileged hypercalls).
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// Domain is the initial control domain (dom0).
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// `mod_start` points at a multiboot-style module package.
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// `mod_start` is a PFN (the initrd is not mapped in the initial region).
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// The toolstack understands a virtually mapped P2M list (`p2m_vaddr`).
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// Bits reserved for power-management options.
pub const SIF_PM_MASK: u32 = 0xFF << 8;

/// The start-info page (C `struct start_info`, `public/xen.h`), 0x490 bytes.
///
/// `console` is a C union: for a domU it holds the console ring `mfn`
/// (word 0) and its event channel (low half of word 1); for dom0 it holds
/// `info_off`/`info_size` (low/high half of word 0) locating a
/// [`Dom0VgaConsoleInfo`] inside this page. Use the accessors.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct StartInfo {
    /// `"xen-<version>-<platform>"`, NUL padded.
    pub magic: [u8; 32],
    /// Total pages given to the domain (= length of the P2M list).
    pub nr_pages: u64,
    /// Machine address of the shared-info page.
    pub shared_info: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Padding (C alignment hole).
    pub pad0: u32,
    /// MFN of the xenstore ring page (0: none).
    pub store_mfn: u64,
    /// Event channel for xenstore.
    pub store_evtchn: u32,
    /// Padding (C alignment hole).
    pub pad1: u32,
    /// Console union, see the type documentation.
    pub console: [u64; 2],
    /// Virtual address of the bootstrap L4 table.
    pub pt_base: u64,
    /// Number of bootstrap page-table frames.
    pub nr_pt_frames: u64,
    /// Virtual address of the P2M list (`unsigned long[nr_pages]`).
    pub mfn_list: u64,
    /// Virtual address of the initrd, or its PFN with `SIF_MOD_START_PFN`.
    pub mod_start: u64,
    /// Initrd size in bytes.
    pub mod_len: u64,
    /// NUL-terminated kernel command line.
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    /// First PFN of the relocated initial P2M and its page tables
    /// (only with the `INIT_P2M` ELF note).
    pub first_p2m_pfn: u64,
    /// Number of PFNs from `first_p2m_pfn`.
    pub nr_p2m_frames: u64,
}

assert_layout!(StartInfo, size = 0x490, {
    magic: 0x00,
    nr_pages: 0x20,
    shared_info: 0x28,
    flags: 0x30,
    pad0: 0x34,
    store_mfn: 0x38,
    store_evtchn: 0x40,
    pad1: 0x44,
    console: 0x48,
    pt_base: 0x58,
    nr_pt_frames: 0x60,
    mfn_list: 0x68,
    mod_start: 0x70,
    mod_len: 0x78,
    cmd_line: 0x80,
    first_p2m_pfn: 0x480,
    nr_p2m_frames: 0x488,
});

impl_zeroed_default!(StartInfo);

impl StartInfo {
    /// Store `magic`, truncated to 31 bytes and NUL padded.
    pub fn set_magic(&mut self, magic: &[u8]) {
        copy_cstr(&mut self.magic, magic);
    }

    /// The magic string up to its first NUL.
    pub fn magic(&self) -> &[u8] {
        until_nul(&self.magic)
    }

    /// Store a kernel command line, truncated to 1023 bytes and NUL padded.
    pub fn set_cmd_line(&mut self, cmdline: &[u8]) {
        copy_cstr(&mut self.cmd_line, cmdline);
    }

    /// The command line up to its first NUL.
    pub fn cmd_line(&self) -> &[u8] {
        until_nul(&self.cmd_line)
    }

    /// domU console ring MFN (`console.domU.mfn`).
    pub const fn console_mfn(&self) -> u64 {
        self.console[0]
    }

    /// domU console event channel (`console.domU.evtchn`).
    pub const fn console_evtchn(&self) -> u32 {
        self.console[1] as u32
    }

    /// Fill the console union for a domU.
    pub fn set_domu_console(&mut self, mfn: u64, evtchn: u32) {
        self.console = [mfn, u64::from(evtchn)];
    }

    /// dom0 console info location: (`info_off`, `info_size`), the byte
    /// offset from the start of this page and the size of a
    /// [`Dom0VgaConsoleInfo`].
    pub const fn dom0_console(&self) -> (u32, u32) {
        (self.console[0] as u32, (self.console[0] >> 32) as u32)
    }

    /// Fill the console union for dom0.
    pub fn set_dom0_console(&mut self, info_off: u32, info_size: u32) {
        self.console = [u64::from(info_off) | (u64::from(info_size) << 32), 0];
    }
}

/// `dom0_vga_console_info.video_type`: VGA text mode 3.
pub const XEN_VGATYPE_TEXT_MODE_3: u8 = 0x03;
/// `dom0_vga_console_info.video_type`: VESA linear framebuffer.
pub const XEN_VGATYPE_VESA_LFB: u8 = 0x23;
/// `dom0_vga_console_info.video_type`: EFI linear framebuffer.
pub const XEN_VGATYPE_EFI_LFB: u8 = 0x70;

/// The `vesa_lfb` arm of the `dom0_vga_console_info` union.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VesaLfbInfo {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Bytes per scan line.
    pub bytes_per_line: u16,
    /// Bits per pixel.
    pub bits_per_pixel: u16,
    /// Low 32 bits of the framebuffer physical address.
    pub lfb_base: u32,
    /// Framebuffer size in 64 KiB units.
    pub lfb_size: u32,
    /// Red field position.
    pub red_pos: u8,
    /// Red field size.
    pub red_size: u8,
    /// Green field position.
    pub green_pos: u8,
    /// Green field size.
    pub green_size: u8,
    /// Blue field position.
    pub blue_pos: u8,
    /// Blue field size.
    pub blue_size: u8,
    /// Reserved field position.
    pub rsvd_pos: u8,
    /// Reserved field size.
    pub rsvd_size: u8,
    /// VESA capabilities (VBE function 0x4f00, offset 0xa).
    pub gbl_caps: u32,
    /// Mode attributes (VBE function 0x4f01, offset 0).
    pub mode_attrs: u16,
    /// Padding.
    pub pad: u16,
    /// High 32 bits of the framebuffer address.
    pub ext_lfb_base: u32,
}

assert_layout!(VesaLfbInfo, size = 36, {
    width: 0, height: 2, bytes_per_line: 4, bits_per_pixel: 6,
    lfb_base: 8, lfb_size: 12,
    red_pos: 16, red_size: 17, green_pos: 18, green_size: 19,
    blue_pos: 20, blue_size: 21, rsvd_pos: 22, rsvd_size: 23,
    gbl_caps: 24, mode_attrs: 28, pad: 30, ext_lfb_base: 32,
});

/// The `text_mode_3` arm of the `dom0_vga_console_info` union.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TextMode3Info {
    /// Font height in pixels.
    pub font_height: u16,
    /// Cursor column.
    pub cursor_x: u16,
    /// Cursor row.
    pub cursor_y: u16,
    /// Number of text rows.
    pub rows: u16,
    /// Number of text columns.
    pub columns: u16,
}

assert_layout!(TextMode3Info, size = 10, {
    font_height: 0, cursor_x: 2, cursor_y: 4, rows: 6, columns: 8,
});

/// dom0 console description placed after `start_info`
/// (C `struct dom0_vga_console_info`, `public/xen.h`), 40 bytes.
///
/// The C union `u` is stored as its larger arm ([`VesaLfbInfo`]); use
/// [`Dom0VgaConsoleInfo::text_mode_3`] for the text-mode view.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Dom0VgaConsoleInfo {
    /// `XEN_VGATYPE_*`.
    pub video_type: u8,
    /// Padding (C alignment hole before the union).
    pub pad: [u8; 3],
    /// The union, viewed as its VESA arm.
    pub vesa_lfb: VesaLfbInfo,
}

assert_layout!(Dom0VgaConsoleInfo, size = 40, {
    video_type: 0, pad: 1, vesa_lfb: 4,
});

impl Dom0VgaConsoleInfo {
    /// The union viewed as its `text_mode_3` arm.
    pub fn text_mode_3(&self) -> TextMode3Info {
        let bytes = self.vesa_lfb.as_bytes();
        match TextMode3Info::read_from_prefix(bytes) {
            Ok((t, _)) => t,
            Err(_) => TextMode3Info::default(),
        }
    }

    /// Overwrite the union with a `text_mode_3` value (rest zeroed).
    pub fn set_text_mode_3(&mut self, t: TextMode3Info) {
        self.vesa_lfb = VesaLfbInfo::default();
        self.vesa_lfb.as_mut_bytes()[..core::mem::size_of::<TextMode3Info>()]
            .copy_from_slice(t.as_bytes());
    }
}

/// Copy `src` into `dst` as a NUL-terminated, NUL-padded C string.
fn copy_cstr(dst: &mut [u8], src: &[u8]) {
    let n = src.len().min(dst.len().saturating_sub(1));
    dst[..n].copy_from_slice(&src[..n]);
    dst[n..].fill(0);
}

/// The prefix of `s` before its first NUL (all of `s` if none).
fn until_nul(s: &[u8]) -> &[u8] {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    &s[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn start_info_round_trip() {
        let mut si = StartInfo::default();
        si.set_magic(START_INFO_MAGIC_X86_64);
        si.nr_pages = 0x4000;
        si.shared_info = 0x1234_5000;
        si.flags = SIF_MOD_START_PFN;
        si.set_domu_console(0xabcde, 3);
        si.set_cmd_line(b"console=hvc0 root=/dev/xvda1");
        let bytes = si.as_bytes();
        assert_eq!(bytes.len(), 0x490);
        assert_eq!(&bytes[..14], b"xen-3.0-x86_64");
        assert_eq!(bytes[14], 0);
        assert_eq!(&bytes[0x48..0x50], &0xabcdeu64.to_le_bytes());
        assert_eq!(&bytes[0x50..0x54], &3u32.to_le_bytes());
        assert_eq!(&bytes[0x80..0x84], b"cons");
        let back = StartInfo::read_from_bytes(bytes).unwrap();
        assert_eq!(back.magic(), START_INFO_MAGIC_X86_64);
        assert_eq!(back.cmd_line(), b"console=hvc0 root=/dev/xvda1");
        assert_eq!(back.console_mfn(), 0xabcde);
        assert_eq!(back.console_evtchn(), 3);
        assert_eq!(back.nr_pages, 0x4000);
    }

    #[test]
    fn cmdline_truncates_and_dom0_console() {
        let mut si = StartInfo::default();
        si.set_cmd_line(&[b'x'; 2000]);
        assert_eq!(si.cmd_line().len(), MAX_GUEST_CMDLINE - 1);
        assert_eq!(si.cmd_line[MAX_GUEST_CMDLINE - 1], 0);
        si.set_dom0_console(0x490, 40);
        assert_eq!(si.dom0_console(), (0x490, 40));
        assert_eq!(&si.as_bytes()[0x48..0x50], &[0x90, 0x04, 0, 0, 40, 0, 0, 0]);
        assert_eq!(SIF_PM_MASK, 0xff00);
    }

    #[test]
    fn vga_text_view() {
        let mut v = Dom0VgaConsoleInfo {
            video_type: XEN_VGATYPE_TEXT_MODE_3,
            ..Default::default()
        };
        let t = TextMode3Info {
            font_height: 16,
            cursor_x: 1,
            cursor_y: 2,
            rows: 25,
            columns: 80,
        };
        v.set_text_mode_3(t);
        assert_eq!(v.text_mode_3(), t);
        assert_eq!(&v.as_bytes()[4..6], &16u16.to_le_bytes());
        assert_eq!(&v.as_bytes()[12..14], &80u16.to_le_bytes());
    }
}
