//! The service loop on the target: the server over virtio-net, woken by the
//! device's interrupt (a virtio-mmio pin routed through the I/O APIC,
//! level-triggered, or a virtio-pci function's MSI-X messages,
//! edge-triggered) or by the one-shot timer; with nothing to do the CPU
//! halts.
#![deny(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use mote_boot::protocol::report::{Cidr, Line, Listening, MacAddress, Net};
use smoltcp::time::Instant;
use smoltcp::wire::Ipv4Cidr;

use super::http::Pages;
use super::ip_config::{self, IpConfig, IpConfigError};
use super::server::{HTTP_PORT, Server, UDP_ECHO_PORT};
use crate::acpi::Acpi;
use crate::arch::x86_64::apic::io::{GsiLine, IoApics};
use crate::arch::x86_64::apic::local;
use crate::arch::x86_64::apic::timer::OneShotTimer;
use crate::arch::x86_64::cpu;
use crate::arch::x86_64::interrupts::{self, EVENTS};
use crate::clock::{Clock, TscFrequency};
use crate::console;
use crate::memory;
use crate::virtio::net::VirtioNetDevice;
use crate::virtio::pci::MsixLines;

/// The turn after which the loop polls when it has no interrupt.
const POLL_INTERVAL_MICROS: u64 = 1000;
/// Share of the heap still free at start that the connection pool may take.
const CONNECTION_HEAP_SHARE_PERCENT: usize = 75;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StartError {
    #[error("ip={value:?}: {error}; network not started")]
    IpConfig {
        value: &'static str,
        error: IpConfigError,
    },
    #[error("the TSC frequency is unknown; network not started")]
    NoClock,
}

/// How the network device interrupts, as its transport allows.
pub(crate) enum Interrupt {
    /// A GSI (virtio-mmio), routed through the I/O APIC.
    Gsi(u32),
    /// MSI-X entries programmed and still masked (virtio-pci).
    Msix(MsixLines),
    /// None mote can use: the device is polled.
    None,
}

/// The interrupt as the loop waits for it.
enum Wakeup {
    Gsi(u32, GsiLine),
    /// MSI-X, unmasked: any wakeup may be the device's, and none needs
    /// handling; the entries are masked again when serving ends.
    Msi(MsixLines),
    Poll,
}

/// The served network device.
pub(crate) struct Network {
    /// Boxed: 2.7 KiB, moved on its way out of bring-up otherwise.
    server: Box<Server<VirtioNetDevice>>,
    wakeup: Wakeup,
    /// The one-shot timer, when there is a local APIC.
    timer: Option<OneShotTimer>,
    clock: &'static Clock,
    tsc: TscFrequency,
    /// The heap the connection pool may take (logged after the ready mark:
    /// formatting before it costs the boot).
    budget: usize,
}

/// Routes the device's interrupt (unmasks its MSI-X entries), or falls
/// back to polling; configures the address (`ip=`, else DHCP) and opens
/// the sockets.
pub(crate) fn start(
    device: VirtioNetDevice,
    interrupt: Interrupt,
    acpi: Option<&Acpi>,
    ip: Option<&'static str>,
    clock: &'static Clock,
) -> Result<Network, StartError> {
    let config = match ip {
        Some(value) => ip_config::parse(value)
            .map_err(|error| StartError::IpConfig { value, error })?
            .unwrap_or(IpConfig::Dhcp),
        None => IpConfig::Dhcp,
    };
    let tsc = clock.tsc().ok_or(StartError::NoClock)?;
    let apic = local::init();
    let wakeup = match (apic, interrupt) {
        (Some(_), Interrupt::Gsi(irq)) => match IoApics::discover(acpi).route_level(irq) {
            Some(line) => Wakeup::Gsi(irq, line),
            None => {
                log::warn!("no I/O APIC serves GSI {irq}: polling net0 every 1 ms");
                Wakeup::Poll
            }
        },
        (Some(_), Interrupt::Msix(mut lines)) => {
            lines.unmask();
            Wakeup::Msi(lines)
        }
        (Some(_), Interrupt::None) => {
            log::info!("net0 has no routed interrupt: polling every 1 ms");
            Wakeup::Poll
        }
        (None, _) => {
            log::warn!("no local APIC: polling net0 every 1 ms");
            Wakeup::Poll
        }
    };
    let timer = apic.map(|apic| OneShotTimer::new(apic, tsc, clock.bus_hz()));
    let mac = device.mac();
    let budget = memory::heap::free_bytes() / 100 * CONNECTION_HEAP_SHARE_PERCENT;
    let mut server = Box::new(Server::new(
        device,
        mac,
        config,
        now(clock, tsc),
        cpu::rdtsc(),
        budget,
    ));
    server.watch_heap(memory::heap::free_bytes);
    Ok(Network {
        budget,
        server,
        wakeup,
        timer,
        clock,
        tsc,
    })
}

/// The interface's clock: the monotonic clock in microseconds.
fn now(clock: &Clock, tsc: TscFrequency) -> Instant {
    let ns = clock
        .monotonic_ns()
        .map_or_else(|| tsc.nanos(cpu::rdtsc()), |(ns, _)| ns);
    Instant::from_micros(i64::try_from(ns / 1000).unwrap_or(i64::MAX))
}

impl Network {
    /// The report lines: the address (once known) and the services.
    pub(crate) fn write_report(&self, out: &mut dyn Write) -> core::fmt::Result {
        log::info!(
            "http: up to {} connections ({} bytes of heap)",
            self.server.load().capacity,
            self.budget
        );
        match self.server.address() {
            Some(cidr) => self.write_address(out, cidr),
            // The report line waits for the lease.
            None => {
                log::info!(
                    "net0 {}: waiting for DHCP",
                    MacAddress(self.server.device().mac())
                );
                Ok(())
            }
        }
    }

    fn write_address(&self, out: &mut dyn Write, cidr: Ipv4Cidr) -> core::fmt::Result {
        let net = Net {
            index: 0,
            mac: MacAddress(self.server.device().mac()),
            address: Cidr {
                address: cidr.address(),
                prefix: cidr.prefix_len(),
            },
        };
        writeln!(out, "{}", Line(net))?;
        let listening = Listening {
            http: HTTP_PORT,
            udp_echo: UDP_ECHO_PORT,
        };
        writeln!(out, "{}", Line(listening))
    }

    /// Serves until an allowed `POST /poweroff` has been answered.
    pub(crate) fn serve(&mut self, pages: &dyn Pages) {
        SERVING_SINCE.store(cpu::rdtsc(), Ordering::Relaxed);
        self.server.watch_cycles(serving_cycles);
        loop {
            let now = now(self.clock, self.tsc);
            let (gsis, _msis, _timer) = EVENTS.take();
            // A pin is acknowledged at the device and unmasked after the
            // turn; a message needs neither (virtio v1.2 §4.1.5.3: with
            // MSI-X the ISR status is not used for queue interrupts).
            let irq = match &self.wakeup {
                Wakeup::Gsi(gsi, line) if gsis & (1 << gsi) != 0 => Some(line),
                _ => None,
            };
            if irq.is_some() {
                self.server.device().ack_interrupt();
            }
            self.server.device().hold_notifications();
            let turn = self.server.poll(now, pages);
            self.server.device().release_notifications();
            if let Some(cidr) = turn.configured {
                let _ = self.write_address(&mut console::Writer, cidr);
            }
            if let Some(line) = irq {
                line.unmask();
            }
            if turn.finished {
                if let Wakeup::Msi(lines) = &mut self.wakeup {
                    lines.mask();
                }
                return;
            }
            let fallback = matches!(self.wakeup, Wakeup::Poll)
                .then_some(smoltcp::time::Duration::from_micros(POLL_INTERVAL_MICROS));
            let wakeup = [turn.wakeup, fallback].into_iter().flatten().min();
            if wakeup == Some(smoltcp::time::Duration::ZERO)
                || self.server.device().has_pending_rx()
            {
                continue;
            }
            let Some(timer) = self.timer.as_mut() else {
                // No APIC, so no interrupt will come: poll.
                core::hint::spin_loop();
                continue;
            };
            if let Some(wakeup) = wakeup {
                timer.arm(self.tsc.cycles_for_micros(wakeup.total_micros()));
            }
            let halt_from = cpu::rdtsc();
            interrupts::wait_for_interrupt();
            HALTED.fetch_add(cpu::rdtsc().wrapping_sub(halt_from), Ordering::Relaxed);
            log_odd_interrupts();
        }
    }
}

/// The TSC when the service loop started, and the cycles it has spent
/// halted since: one loop serves, on the boot CPU.
static SERVING_SINCE: AtomicU64 = AtomicU64::new(0);
static HALTED: AtomicU64 = AtomicU64::new(0);

/// What the status page shows of them: cycles since serving began, and
/// those halted.
fn serving_cycles() -> (u64, u64) {
    (
        cpu::rdtsc().wrapping_sub(SERVING_SINCE.load(Ordering::Relaxed)),
        HALTED.load(Ordering::Relaxed),
    )
}

fn log_odd_interrupts() {
    let (spurious, unexpected, last_vector) = EVENTS.take_odd();
    if unexpected > 0 {
        log::warn!("{unexpected} unexpected interrupt(s), last vector {last_vector:#x}");
    }
    if spurious > 0 {
        log::debug!("{spurious} spurious interrupt(s)");
    }
}
