//! The ELF note that makes an image bootable through PVH: type
//! `XEN_ELFNOTE_PHYS32_ENTRY` (xen `include/public/elfnote.h`), name "Xen",
//! and the 32-bit physical entry point as its descriptor (xen
//! `docs/misc/pvh.pandoc`). Loaders find it in a `PT_NOTE` program header
//! that must have 4-byte alignment, because QEMU pads the name and
//! descriptor to the segment's `p_align` (QEMU `include/hw/elf_ops.h`,
//! `get_elf_note_type`); QEMU reads the descriptor as a `size_t` and keeps
//! its low 32 bits, Firecracker and Cloud Hypervisor (`linux-loader`) read
//! 32 bits of a descriptor of at least 4 bytes. See docs/pvh.md.
//!
//! The note is a typed static rather than assembly directives, as in
//! rust-hypervisor-firmware: the entry address is a relocation the linker
//! fills in, 8 bytes wide like Linux's own note (`arch/x86/platform/pvh/head.S`).
//! [`pvh_note!`](crate::pvh_note) places one in `.note.Xen`; the kernel's stub
//! and the null guest both use it.

use core::mem::{offset_of, size_of};

/// `XEN_ELFNOTE_PHYS32_ENTRY`.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// The note's name, NUL included.
pub const NAME: [u8; 4] = *b"Xen\0";
/// `n_namesz`: the name's length.
const NAME_SIZE: u32 = 4;
/// `n_descsz`: the descriptor is a 64-bit address.
const DESCRIPTOR_SIZE: u32 = 8;

/// The entry point's type: 32-bit code the loader jumps to, never returns.
/// Only its address is used.
pub type Entry = unsafe extern "C" fn() -> !;

/// One ELF note (`Elf64_Nhdr` followed by name and descriptor), packed to
/// 4 bytes so the note segment keeps `p_align` 4.
#[repr(C, packed(4))]
pub struct PvhNote {
    name_size: u32,
    descriptor_size: u32,
    kind: u32,
    name: [u8; 4],
    entry: Entry,
}

impl PvhNote {
    /// The note naming `entry` as the PVH entry point.
    pub const fn new(entry: Entry) -> Self {
        Self {
            name_size: NAME_SIZE,
            descriptor_size: DESCRIPTOR_SIZE,
            kind: XEN_ELFNOTE_PHYS32_ENTRY,
            name: NAME,
            entry,
        }
    }
}

const _: () = assert!(NAME.len() == NAME_SIZE as usize);
const _: () = assert!(size_of::<Entry>() == DESCRIPTOR_SIZE as usize);
const _: () = assert!(
    align_of::<PvhNote>() == 4,
    "QEMU pads note fields to p_align"
);
const _: () = assert!(offset_of!(PvhNote, name) == 12);
const _: () = assert!(offset_of!(PvhNote, entry) == 16);
const _: () = assert!(size_of::<PvhNote>() == 24);

/// Places the PVH note for `$entry` (a symbol declared as
/// [`Entry`](crate::protocol::pvh_note::Entry)) in the `.note.Xen` section,
/// which the linker script puts in the `PT_NOTE` segment.
#[macro_export]
macro_rules! pvh_note {
    ($entry:path) => {
        /// The PVH entry note (`mote_boot::protocol::pvh_note`).
        #[used]
        #[unsafe(link_section = ".note.Xen")]
        static PVH_NOTE: $crate::protocol::pvh_note::PvhNote =
            $crate::protocol::pvh_note::PvhNote::new($entry);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" fn entry() -> ! {
        unreachable!("only the address is taken")
    }

    #[test]
    fn header_fields_as_a_loader_reads_them() {
        let note = PvhNote::new(entry);
        let (name_size, descriptor_size, kind) = (note.name_size, note.descriptor_size, note.kind);
        assert_eq!((name_size, descriptor_size, kind), (4, 8, 18));
        assert_eq!(note.name, *b"Xen\0");
        let address = note.entry as usize;
        assert_eq!(address, entry as *const () as usize);
    }
}
