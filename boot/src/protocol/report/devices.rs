//! Device lines (virtio-mmio transports, disks, ramdisks) and the results
//! of the disk workloads (`mote.blk=verify|bench`, `mote.blk.write=`).

use core::fmt;

use super::{Fact, parse_after};
use crate::protocol::fields::{Fields, ParseError};
use crate::protocol::words::words;

words! {
    /// How a virtio-mmio transport was found.
    pub enum Discovery {
        /// A `virtio_mmio.device=` entry on the kernel command line.
        Cmdline => "cmdline",
        /// An `LNRO0005` device in the ACPI DSDT.
        Acpi => "acpi",
    }
}

/// `virtio-mmio <hex base> irq <irq> <kind> v<1|2> cmdline|acpi`: a
/// transport with a device behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmio<'a> {
    pub base: u64,
    pub irq: u32,
    /// The device type's word (`block`, `network`, …).
    pub kind: &'a str,
    /// 1 for the legacy transport, 2 for the modern one.
    pub version: u32,
    pub found_by: Discovery,
}

line_shape! {
    impl['a] VirtioMmio<'a>, "virtio-mmio", "virtio-mmio <hex base> irq <irq> <kind> v<1|2> cmdline|acpi",
    |line, f| {
        write!(
            f,
            "virtio-mmio {:#x} irq {} {} v{} {}",
            line.base, line.irq, line.kind, line.version, line.found_by
        )
    }
}

impl<'a> VirtioMmio<'a> {
    pub fn parse(fact: &'a str) -> Result<Self, ParseError> {
        parse_after(fact, "virtio-mmio ", "'virtio-mmio '", |fields| {
            let base = fields.hex()?;
            fields.literal(" irq ", "' irq '")?;
            let irq = fields.decimal()?;
            fields.literal(" ", "' '")?;
            let kind = fields.word()?;
            fields.literal(" v", "' v'")?;
            let version = fields.decimal()?;
            fields.literal(" ", "' '")?;
            let at = *fields;
            let found_by =
                Discovery::from_word(fields.word()?).ok_or_else(|| at.error("cmdline or acpi"))?;
            Ok(Self {
                base,
                irq,
                kind,
                version,
                found_by,
            })
        })
    }
}

words! {
    /// How a virtio-pci function's configuration space was reached.
    pub enum ConfigAccess {
        /// Memory-mapped, through the ACPI MCFG's window (PCIe ECAM).
        Ecam => "ecam",
        /// Configuration mechanism #1, ports 0xCF8/0xCFC.
        Ports => "cf8",
    }
}

/// `virtio-pci <bus:device.function> <kind> msix <vectors> ecam|cf8`: a
/// virtio function on PCI (bus, device and function in hex, as `lspci`
/// writes them), its device type's word and its MSI-X table size (0: it
/// has none, and is left unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioPci<'a> {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
    pub kind: &'a str,
    pub vectors: u16,
    pub access: ConfigAccess,
}

line_shape! {
    impl['a] VirtioPci<'a>, "virtio-pci", "virtio-pci <bus:device.function> <kind> msix <vectors> ecam|cf8",
    |line, f| {
        write!(
            f,
            "virtio-pci {:02x}:{:02x}.{:x} {} msix {} {}",
            line.bus, line.device, line.function, line.kind, line.vectors, line.access
        )
    }
}

/// `<bus:device.function>` in hex, as `lspci` writes it.
fn read_bdf(fields: &mut Fields<'_>) -> Result<(u8, u8, u8), ParseError> {
    let at = *fields;
    let bus = u8::try_from(fields.fixed_hex(2)?).map_err(|_| at.error("bus"))?;
    fields.literal(":", "':'")?;
    let at = *fields;
    let device = u8::try_from(fields.fixed_hex(2)?)
        .ok()
        .filter(|&device| device < 32)
        .ok_or_else(|| at.error("device 00-1f"))?;
    fields.literal(".", "'.'")?;
    let at = *fields;
    let function = u8::try_from(fields.fixed_hex(1)?)
        .ok()
        .filter(|&function| function < 8)
        .ok_or_else(|| at.error("function 0-7"))?;
    Ok((bus, device, function))
}

impl<'a> VirtioPci<'a> {
    pub fn parse(fact: &'a str) -> Result<Self, ParseError> {
        parse_after(fact, "virtio-pci ", "'virtio-pci '", |fields| {
            let (bus, device, function) = read_bdf(fields)?;
            fields.literal(" ", "' '")?;
            let kind = fields.word()?;
            fields.literal(" msix ", "' msix '")?;
            let vectors = fields.decimal()?;
            fields.literal(" ", "' '")?;
            let at = *fields;
            let access =
                ConfigAccess::from_word(fields.word()?).ok_or_else(|| at.error("ecam or cf8"))?;
            Ok(Self {
                bus,
                device,
                function,
                kind,
                vectors,
                access,
            })
        })
    }
}

words! {
    /// A memory BAR's width.
    pub enum BarWidth {
        Mem32 => "mem32",
        Mem64 => "mem64",
    }
}

/// `pci-bar <bus:device.function> bar<index> <hex address> size <hex size>
/// mem32|mem64 assigned`: a memory BAR the firmware left at 0, which mote
/// gave an address from the host bridge's windows (QEMU `microvm,pcie=on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciBar {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
    /// 0-5.
    pub index: u8,
    pub address: u64,
    pub size: u64,
    pub width: BarWidth,
}

line_shape! {
    impl[] PciBar, "pci-bar", "pci-bar <bus:device.function> bar<index> <hex address> size <hex size> mem32|mem64 assigned",
    |line, f| {
        write!(
            f,
            "pci-bar {:02x}:{:02x}.{:x} bar{} {:#x} size {:#x} {} assigned",
            line.bus, line.device, line.function, line.index, line.address, line.size, line.width
        )
    }
}

impl PciBar {
    pub fn parse(fact: &str) -> Result<Self, ParseError> {
        parse_after(fact, "pci-bar ", "'pci-bar '", |fields| {
            let (bus, device, function) = read_bdf(fields)?;
            fields.literal(" bar", "' bar'")?;
            let at = *fields;
            let index = fields
                .decimal::<u8>()
                .ok()
                .filter(|&index| index < 6)
                .ok_or_else(|| at.error("BAR 0-5"))?;
            fields.literal(" ", "' '")?;
            let address = fields.hex()?;
            fields.literal(" size ", "' size '")?;
            let size = fields.hex()?;
            fields.literal(" ", "' '")?;
            let at = *fields;
            let width =
                BarWidth::from_word(fields.word()?).ok_or_else(|| at.error("mem32 or mem64"))?;
            fields.literal(" assigned", "' assigned'")?;
            Ok(Self {
                bus,
                device,
                function,
                index,
                address,
                size,
                width,
            })
        })
    }
}

/// A disk's name in the report: `blk<index>` (virtio-blk) or
/// `ramdisk<index>` (a `start_info` module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskName {
    Blk(usize),
    Ramdisk(usize),
}

impl DiskName {
    fn read(fields: &mut Fields<'_>) -> Result<Self, ParseError> {
        if fields.optional("blk") {
            Ok(Self::Blk(fields.decimal()?))
        } else {
            fields.literal("ramdisk", "'blk' or 'ramdisk'")?;
            Ok(Self::Ramdisk(fields.decimal()?))
        }
    }
}

impl fmt::Display for DiskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Blk(index) => write!(f, "blk{index}"),
            Self::Ramdisk(index) => write!(f, "ramdisk{index}"),
        }
    }
}

/// `blk<index> <sectors> sectors ro|rw`: a virtio-blk disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disk {
    pub index: usize,
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    pub read_only: bool,
}

line_shape! {
    impl[] Disk, "blk", "blk<index> <sectors> sectors ro|rw",
    |line, f| {
        let access = if line.read_only { "ro" } else { "rw" };
        write!(f, "blk{} {} sectors {access}", line.index, line.sectors)
    }
}

/// `ramdisk<index> <bytes> bytes <kind>`: a module as a read-only disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ramdisk<'a> {
    pub index: usize,
    pub bytes: u64,
    /// What its first bytes look like (`elf`, `gzip`, …, `image`).
    pub kind: &'a str,
}

line_shape! {
    impl[] Ramdisk<'_>, "ramdisk", "ramdisk<index> <bytes> bytes <kind>",
    |line, f| {
        write!(
            f,
            "ramdisk{} {} bytes {}",
            line.index, line.bytes, line.kind
        )
    }
}

/// `blk<index>|ramdisk<index> crc32 <8 hex digits>`: `mote.blk=verify`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crc32 {
    pub disk: DiskName,
    /// CRC-32/IEEE (zlib's `crc32`) of every sector (every byte of a ramdisk).
    pub crc: u32,
}

line_shape! {
    impl[] Crc32, "blk", "blk<index>|ramdisk<index> crc32 <8 hex digits>",
    |line, f| write!(f, "{} crc32 {:08x}", line.disk, line.crc)
}

/// `blk<index>|ramdisk<index> verify <MiB, 1 decimal> MiB on <cpus> cpus
/// in <ms, 3 decimals> ms: <MiB/s, 1 decimal> MiB/s, crc32 in <ms, 3
/// decimals> ms: <MiB/s, 1 decimal> MiB/s`: how fast `mote.blk=verify`
/// went, with the CRC split across `cpus` CPUs. The first time and rate
/// are the whole verify's (reading included), the second the CRC
/// computation's alone. The times keep their precision on a slow host,
/// where a rate with one decimal does not.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verified {
    pub disk: DiskName,
    /// Printed with one decimal.
    pub mib: f64,
    /// The CPUs that computed the CRC, the boot CPU included.
    pub cpus: usize,
    /// Printed with three decimals.
    pub milliseconds: f64,
    /// Printed with one decimal.
    pub mib_per_second: f64,
    /// Printed with three decimals.
    pub crc_milliseconds: f64,
    /// Printed with one decimal.
    pub crc_mib_per_second: f64,
}

line_shape! {
    impl[] Verified, "blk", "blk<index>|ramdisk<index> verify <MiB, 1 decimal> MiB on <cpus> cpus in <ms, 3 decimals> ms: <MiB/s, 1 decimal> MiB/s, crc32 in <ms, 3 decimals> ms: <MiB/s, 1 decimal> MiB/s",
    |line, f| {
        write!(
            f,
            "{} verify {:.1} MiB on {} cpus in {:.3} ms: {:.1} MiB/s, crc32 in {:.3} ms: {:.1} MiB/s",
            line.disk,
            line.mib,
            line.cpus,
            line.milliseconds,
            line.mib_per_second,
            line.crc_milliseconds,
            line.crc_mib_per_second
        )
    }
}

/// `blk<index> verify failed: <why>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyFailed<E> {
    pub index: usize,
    pub error: E,
}

line_shape! {
    impl[E: fmt::Display] VerifyFailed<E>, "blk", "blk<index> verify failed: <why>",
    |line, f| write!(f, "blk{} verify failed: {}", line.index, line.error)
}

/// `blk<index> wrote <sectors> sectors at <lba> crc32 <8 hex digits>`:
/// `mote.blk.write=` wrote and flushed the pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wrote {
    pub index: usize,
    pub sectors: u64,
    pub lba: u64,
    /// CRC-32 of what was written.
    pub crc: u32,
}

line_shape! {
    impl[] Wrote, "blk", "blk<index> wrote <sectors> sectors at <lba> crc32 <8 hex digits>",
    |line, f| {
        write!(
            f,
            "blk{} wrote {} sectors at {} crc32 {:08x}",
            line.index, line.sectors, line.lba, line.crc
        )
    }
}

/// `blk<index> write refused: <why>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRefused<E> {
    pub index: usize,
    pub error: E,
}

line_shape! {
    impl[E: fmt::Display] WriteRefused<E>, "blk", "blk<index> write refused: <why>",
    |line, f| write!(f, "blk{} write refused: {}", line.index, line.error)
}

/// `blk<index> bench read <bytes> bytes qd <depth>: <MiB/s> MiB/s (<MiB> MiB
/// in <ms> ms)`: `mote.blk=bench`, one line per request size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchRead {
    pub index: usize,
    /// Bytes per request.
    pub request: usize,
    /// Requests in flight.
    pub depth: usize,
    /// Printed with one decimal.
    pub mib_per_second: f64,
    /// Printed with none.
    pub mib: f64,
    /// Printed with one decimal.
    pub milliseconds: f64,
}

line_shape! {
    impl[] BenchRead, "blk", "blk<index> bench read <bytes> bytes qd <depth>: <MiB/s, 1 decimal> MiB/s (<MiB, 0 decimals> MiB in <ms, 1 decimal> ms)",
    |line, f| {
        write!(
            f,
            "blk{} bench read {} bytes qd {}: {:.1} MiB/s ({:.0} MiB in {:.1} ms)",
            line.index, line.request, line.depth, line.mib_per_second, line.mib, line.milliseconds
        )
    }
}

/// `blk<index> bench read <bytes> bytes failed: <why>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchFailed<E> {
    pub index: usize,
    pub request: usize,
    pub error: E,
}

line_shape! {
    impl[E: fmt::Display] BenchFailed<E>, "blk", "blk<index> bench read <bytes> bytes failed: <why>",
    |line, f| {
        write!(
            f,
            "blk{} bench read {} bytes failed: {}",
            line.index, line.request, line.error
        )
    }
}

/// Every `blk<index> …` and `ramdisk<index> …` shape.
pub(crate) fn parse_disk_fact(fact: &str) -> Result<Fact<'_>, ParseError> {
    let mut fields = Fields::new(fact);
    let disk = DiskName::read(&mut fields)?;
    fields.literal(" ", "' '")?;
    if fields.optional("crc32 ") {
        let crc = u32::try_from(fields.fixed_hex(8)?).map_err(|_| fields.error("a CRC-32"))?;
        fields.end()?;
        return Ok(Fact::Crc32(Crc32 { disk, crc }));
    }
    if fields.optional("verify ") {
        if let DiskName::Blk(index) = disk
            && fields.optional("failed: ")
        {
            let error = fields.text()?;
            return Ok(Fact::VerifyFailed(VerifyFailed { index, error }));
        }
        let mib = fields.fraction()?;
        fields.literal(" MiB on ", "' MiB on '")?;
        let cpus = fields.decimal()?;
        fields.literal(" cpus in ", "' cpus in '")?;
        let milliseconds = fields.fraction()?;
        fields.literal(" ms: ", "' ms: '")?;
        let mib_per_second = fields.fraction()?;
        fields.literal(" MiB/s, crc32 in ", "' MiB/s, crc32 in '")?;
        let crc_milliseconds = fields.fraction()?;
        fields.literal(" ms: ", "' ms: '")?;
        let crc_mib_per_second = fields.fraction()?;
        fields.literal(" MiB/s", "' MiB/s'")?;
        fields.end()?;
        return Ok(Fact::Verified(Verified {
            disk,
            mib,
            cpus,
            milliseconds,
            mib_per_second,
            crc_milliseconds,
            crc_mib_per_second,
        }));
    }
    match disk {
        DiskName::Ramdisk(index) => {
            let bytes = fields.decimal()?;
            fields.literal(" bytes ", "' bytes '")?;
            let kind = fields.word()?;
            fields.end()?;
            Ok(Fact::Ramdisk(Ramdisk { index, bytes, kind }))
        }
        DiskName::Blk(index) => parse_blk(index, fields),
    }
}

fn parse_blk(index: usize, mut fields: Fields<'_>) -> Result<Fact<'_>, ParseError> {
    if fields.optional("write refused: ") {
        let error = fields.text()?;
        return Ok(Fact::WriteRefused(WriteRefused { index, error }));
    }
    if fields.optional("wrote ") {
        let sectors = fields.decimal()?;
        fields.literal(" sectors at ", "' sectors at '")?;
        let lba = fields.decimal()?;
        fields.literal(" crc32 ", "' crc32 '")?;
        let crc = u32::try_from(fields.fixed_hex(8)?).map_err(|_| fields.error("a CRC-32"))?;
        fields.end()?;
        return Ok(Fact::Wrote(Wrote {
            index,
            sectors,
            lba,
            crc,
        }));
    }
    if fields.optional("bench read ") {
        let request = fields.decimal()?;
        fields.literal(" bytes ", "' bytes '")?;
        if fields.optional("failed: ") {
            let error = fields.text()?;
            return Ok(Fact::BenchFailed(BenchFailed {
                index,
                request,
                error,
            }));
        }
        fields.literal("qd ", "'qd ' or 'failed: '")?;
        let depth = fields.decimal()?;
        fields.literal(": ", "': '")?;
        let mib_per_second = fields.fraction()?;
        fields.literal(" MiB/s (", "' MiB/s ('")?;
        let mib = fields.fraction()?;
        fields.literal(" MiB in ", "' MiB in '")?;
        let milliseconds = fields.fraction()?;
        fields.literal(" ms)", "' ms)'")?;
        fields.end()?;
        return Ok(Fact::BenchRead(BenchRead {
            index,
            request,
            depth,
            mib_per_second,
            mib,
            milliseconds,
        }));
    }
    let sectors = fields.decimal()?;
    fields.literal(" sectors ", "' sectors '")?;
    let read_only = if fields.optional("ro") {
        true
    } else {
        fields.literal("rw", "'ro' or 'rw'")?;
        false
    };
    fields.end()?;
    Ok(Fact::Disk(Disk {
        index,
        sectors,
        read_only,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::report::testing::{malformed, round_trip};

    #[test]
    fn device_lines_round_trip() {
        for found_by in [Discovery::Cmdline, Discovery::Acpi] {
            let transport = VirtioMmio {
                base: 0xfeb0_0e00,
                irq: 12,
                kind: "block",
                version: 1,
                found_by,
            };
            let text = format!("virtio-mmio 0xfeb00e00 irq 12 block v1 {found_by}");
            round_trip(&transport, &text, Fact::VirtioMmio(transport));
        }
        for access in [ConfigAccess::Ecam, ConfigAccess::Ports] {
            let function = VirtioPci {
                bus: 0,
                device: 0x1f,
                function: 7,
                kind: "network",
                vectors: 3,
                access,
            };
            let text = format!("virtio-pci 00:1f.7 network msix 3 {access}");
            round_trip(&function, &text, Fact::VirtioPci(function));
        }
        let bar = PciBar {
            bus: 0,
            device: 2,
            function: 0,
            index: 4,
            address: 0xc0_0000_4000,
            size: 0x4000,
            width: BarWidth::Mem64,
        };
        round_trip(
            &bar,
            "pci-bar 00:02.0 bar4 0xc000004000 size 0x4000 mem64 assigned",
            Fact::PciBar(bar),
        );
        malformed(&[
            "pci-bar 00:02.0 bar6 0xc000004000 size 0x4000 mem64 assigned",
            "pci-bar 00:20.0 bar4 0xc000004000 size 0x4000 mem64 assigned",
            "pci-bar 00:02.0 bar4 0xc000004000 size 0x4000 io assigned",
            "pci-bar 00:02.0 bar4 0xc000004000 size 0x4000 mem64",
        ]);
        let disk = Disk {
            index: 0,
            sectors: 131_072,
            read_only: false,
        };
        round_trip(&disk, "blk0 131072 sectors rw", Fact::Disk(disk));
        let disk = Disk {
            index: 2,
            sectors: 4096,
            read_only: true,
        };
        round_trip(&disk, "blk2 4096 sectors ro", Fact::Disk(disk));
        let ramdisk = Ramdisk {
            index: 0,
            bytes: 123_457,
            kind: "gzip",
        };
        round_trip(
            &ramdisk,
            "ramdisk0 123457 bytes gzip",
            Fact::Ramdisk(ramdisk),
        );
    }

    #[test]
    fn workload_lines_round_trip() {
        let crc = Crc32 {
            disk: DiskName::Blk(1),
            crc: 0x00c0_ffee,
        };
        round_trip(&crc, "blk1 crc32 00c0ffee", Fact::Crc32(crc));
        let crc = Crc32 {
            disk: DiskName::Ramdisk(0),
            crc: 0xdead_beef,
        };
        round_trip(&crc, "ramdisk0 crc32 deadbeef", Fact::Crc32(crc));
        let verified = Verified {
            disk: DiskName::Blk(0),
            mib: 8.0,
            cpus: 4,
            milliseconds: 130.081,
            mib_per_second: 61.5,
            crc_milliseconds: 33.305,
            crc_mib_per_second: 240.2,
        };
        round_trip(
            &verified,
            "blk0 verify 8.0 MiB on 4 cpus in 130.081 ms: 61.5 MiB/s, crc32 in 33.305 ms: 240.2 MiB/s",
            Fact::Verified(verified),
        );
        let verified = Verified {
            disk: DiskName::Ramdisk(1),
            mib: 0.5,
            cpus: 1,
            milliseconds: 41.667,
            mib_per_second: 12.0,
            crc_milliseconds: 41.667,
            crc_mib_per_second: 12.0,
        };
        round_trip(
            &verified,
            "ramdisk1 verify 0.5 MiB on 1 cpus in 41.667 ms: 12.0 MiB/s, crc32 in 41.667 ms: 12.0 MiB/s",
            Fact::Verified(verified),
        );
        let failed = VerifyFailed {
            index: 0,
            error: "device error: I/O error status",
        };
        round_trip(
            &failed,
            "blk0 verify failed: device error: I/O error status",
            Fact::VerifyFailed(failed),
        );
        let wrote = Wrote {
            index: 0,
            sectors: 16,
            lba: 2048,
            crc: 0x1234_5678,
        };
        round_trip(
            &wrote,
            "blk0 wrote 16 sectors at 2048 crc32 12345678",
            Fact::Wrote(wrote),
        );
        let refused = WriteRefused {
            index: 0,
            error: "the device is read-only",
        };
        round_trip(
            &refused,
            "blk0 write refused: the device is read-only",
            Fact::WriteRefused(refused),
        );
        let bench = BenchRead {
            index: 0,
            request: 4096,
            depth: 8,
            mib_per_second: 321.5,
            mib: 8.0,
            milliseconds: 24.9,
        };
        round_trip(
            &bench,
            "blk0 bench read 4096 bytes qd 8: 321.5 MiB/s (8 MiB in 24.9 ms)",
            Fact::BenchRead(bench),
        );
        let failed = BenchFailed {
            index: 0,
            request: 65536,
            error: "queue full",
        };
        round_trip(
            &failed,
            "blk0 bench read 65536 bytes failed: queue full",
            Fact::BenchFailed(failed),
        );
    }

    #[test]
    fn bench_figures_are_rounded_as_printed() {
        let bench = BenchRead {
            index: 0,
            request: 4096,
            depth: 8,
            mib_per_second: 321.46,
            mib: 7.6,
            milliseconds: 24.94,
        };
        let text = bench.to_string();
        assert_eq!(
            text,
            "blk0 bench read 4096 bytes qd 8: 321.5 MiB/s (8 MiB in 24.9 ms)"
        );
        let Some(Ok(Fact::BenchRead(parsed))) = Fact::parse(&text) else {
            panic!("{text}");
        };
        assert_eq!(parsed.to_string(), text);
    }

    #[test]
    fn malformed_device_lines_are_errors() {
        malformed(&[
            "virtio-mmio feb00e00 irq 12 block v1 cmdline",
            "virtio-mmio 0xfeb00e00 irq 12 block v1 dhcp",
            "virtio-mmio 0xfeb00e00 irq 12 block cmdline",
            "blk0 crc32 c0ffee",
            "blk0 crc32 00c0ffee00",
            "blk0 131072 sectors rx",
            "blk0 131072",
            "blk0 wrote 16 sectors at 2048",
            "blk0 write refused: ",
            "blk0 bench read 4096 bytes qd 8: fast",
            "blk0 bench read 4096 bytes qd 8: 1.0 MiB/s (8 MiB in 2.0 ms) extra",
            "blk0 frobnicated",
            "blk0 verify 8.0 MiB on 4 cpus in 1.0 ms: 61.5 MiB/s",
            "blk0 verify 8.0 MiB on 4 cpus: 61.5 MiB/s, crc32 1.0 MiB/s",
            "blk0 verify 8.0 MiB on four cpus in 1.0 ms: 61.5 MiB/s, crc32 in 1.0 ms: 1.0 MiB/s",
            "ramdisk0 verify failed: no",
            "ramdisk0 12 bytes",
            "ramdisk0 12 sectors rw",
        ]);
    }
}
