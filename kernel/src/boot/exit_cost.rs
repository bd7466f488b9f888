//! `mote.bench=exits`: the cost of one VM exit of each kind, timed by the
//! guest over a loop of them after the report, for `cargo xtask bench
//! --exit-cost`. What a user multiplies a phase's exit count by to
//! estimate its cost on their own host (docs/bench.md).

use core::fmt::{self, Write};

use mote_boot::protocol::report::{ExitCost, ExitCostKind, Line};

use super::devices::TransportFact;
use crate::arch::x86_64::cpu::{self, Port};
use crate::clock::TscFrequency;

/// Exits of each kind per measurement: under a nested KVM that emulates
/// the guest (20-35 µs an exit) the three loops take about 0.1 s.
const COUNT: u32 = 1000;
/// COM1's scratch register (16550 datasheet): a read has no effect.
const COM1_SCRATCH: u16 = 0x3f8 + 7;

/// Times [`COUNT`] exits of each kind and writes one line per kind; the
/// MMIO loop needs a virtio-mmio transport and is left out without one.
pub(super) fn run(
    transports: &[TransportFact],
    tsc: Option<TscFrequency>,
    out: &mut dyn Write,
) -> fmt::Result {
    let Some(tsc) = tsc else {
        log::warn!("mote.bench=exits: the TSC frequency is unknown; nothing timed");
        return Ok(());
    };
    let mmio = transports.iter().find_map(|transport| match transport {
        TransportFact::Mmio { device, .. } => usize::try_from(device.base).ok(),
        TransportFact::Pci { .. } => None,
    });
    for kind in ExitCostKind::ALL {
        let start = cpu::rdtsc();
        match kind {
            ExitCostKind::Cpuid => {
                for _ in 0..COUNT {
                    core::hint::black_box(cpu::cpuid(0, 0));
                }
            }
            ExitCostKind::Port => {
                let mut scratch = Port::<u8>::new(COM1_SCRATCH);
                for _ in 0..COUNT {
                    // SAFETY: reading COM1's scratch register changes
                    // nothing (the console owns COM1 but never uses it).
                    core::hint::black_box(unsafe { scratch.read() });
                }
            }
            ExitCostKind::Mmio => {
                let Some(base) = mmio else { continue };
                let magic = base as *const u32;
                for _ in 0..COUNT {
                    // SAFETY: the transport's window was checked to be in
                    // the identity map when it was probed; its magic value
                    // register (offset 0) is read-only and reading it has
                    // no effect on the device.
                    core::hint::black_box(unsafe { core::ptr::read_volatile(magic) });
                }
            }
        }
        let cycles = cpu::rdtsc().wrapping_sub(start);
        #[allow(clippy::cast_precision_loss, reason = "a figure with one decimal")]
        let nanos = tsc.nanos(cycles) as f64 / f64::from(COUNT);
        writeln!(
            out,
            "{}",
            Line(ExitCost {
                kind,
                count: COUNT,
                nanos
            })
        )?;
    }
    Ok(())
}
