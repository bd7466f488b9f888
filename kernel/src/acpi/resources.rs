//! Resource templates (`_CRS` buffers, ACPI 6.5 §6.4): the first memory
//! window and the first interrupt, which is all a virtio-mmio transport
//! has. Memory32Fixed, DWord or QWord memory; Extended Interrupt or the
//! legacy IRQ descriptor.
#![deny(unsafe_code)]

/// Small and large resource descriptor tags used here (ACPI 6.5 §6.4.2-3).
const SMALL_IRQ: u8 = 0x04;
const SMALL_END: u8 = 0x0f;
const LARGE_MEMORY32_FIXED: u8 = 0x86;
const LARGE_DWORD_ADDRESS: u8 = 0x87;
const LARGE_EXTENDED_INTERRUPT: u8 = 0x89;
const LARGE_QWORD_ADDRESS: u8 = 0x8a;
/// Address space descriptors' resource type for memory.
const MEMORY_RANGE: u8 = 0;

/// A device's memory window and interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WindowAndInterrupt {
    pub(crate) base: u64,
    pub(crate) size: u64,
    pub(crate) irq: u32,
}

/// The first memory window and the first interrupt of `template`.
pub(crate) fn window_and_interrupt(template: &[u8]) -> Result<WindowAndInterrupt, &'static str> {
    let mut window = None;
    let mut irq = None;
    let mut at = 0;
    while at < template.len() {
        let tag = template[at];
        let (kind, body, next) = if tag & 0x80 == 0 {
            let length = usize::from(tag & 0x07);
            ((tag >> 3) & 0x0f, at + 1, at + 1 + length)
        } else {
            let length = template
                .get(at + 1..at + 3)
                .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
                .ok_or("resource template truncated")?;
            (tag, at + 3, at + 3 + length)
        };
        let body = template
            .get(body..next)
            .ok_or("resource template truncated")?;
        let le = |offset: usize, width: usize| -> Option<u64> {
            body.get(offset..offset + width).map(|b| {
                b.iter()
                    .rev()
                    .fold(0u64, |value, &byte| (value << 8) | u64::from(byte))
            })
        };
        match kind {
            SMALL_END => break,
            // A 16-bit mask of ISA IRQs.
            SMALL_IRQ if irq.is_none() => {
                let mask = le(0, 2).ok_or("IRQ descriptor truncated")?;
                if mask != 0 {
                    irq = Some(mask.trailing_zeros());
                }
            }
            // Information, base, length.
            LARGE_MEMORY32_FIXED if window.is_none() => {
                window = Some((
                    le(1, 4).ok_or("Memory32Fixed truncated")?,
                    le(5, 4).ok_or("Memory32Fixed truncated")?,
                ));
            }
            LARGE_DWORD_ADDRESS | LARGE_QWORD_ADDRESS
                if window.is_none() && body.first() == Some(&MEMORY_RANGE) =>
            {
                let width = if kind == LARGE_DWORD_ADDRESS { 4 } else { 8 };
                let minimum = le(3 + width, width).ok_or("address descriptor truncated")?;
                let length = le(3 + 4 * width, width).ok_or("address descriptor truncated")?;
                window = Some((minimum, length));
            }
            // Flags, count, interrupts.
            LARGE_EXTENDED_INTERRUPT if irq.is_none() && body.get(1).copied().unwrap_or(0) > 0 => {
                let first = le(2, 4).ok_or("interrupt descriptor truncated")?;
                irq = Some(u32::try_from(first).unwrap_or(0));
            }
            _ => {}
        }
        at = next;
    }
    let (base, size) = window.ok_or("_CRS has no memory window")?;
    let irq = irq.ok_or("_CRS has no interrupt")?;
    if base == 0 || size == 0 || irq == 0 {
        return Err("_CRS window or interrupt is zero");
    }
    Ok(WindowAndInterrupt { base, size, irq })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_templates() {
        // Firecracker-style: Memory32Fixed + legacy IRQ mask.
        let template = [
            0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xc0, 0x00, 0x10, 0x00, 0x00, 0x22, 0x20,
            0x00, 0x79, 0x00,
        ];
        assert_eq!(
            window_and_interrupt(&template),
            Ok(WindowAndInterrupt {
                base: 0xc000_1000,
                size: 0x1000,
                irq: 5
            })
        );
        assert_eq!(
            window_and_interrupt(&[0x79, 0x00]),
            Err("_CRS has no memory window")
        );
        assert_eq!(
            window_and_interrupt(&[0x86, 0x09]),
            Err("resource template truncated")
        );
    }
}
