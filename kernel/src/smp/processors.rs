//! The processors a table lists, as one list of APIC ids: duplicates and
//! disabled entries counted and left out, so every id in the list is one
//! CPU the kernel may start. Both the MADT reader (`acpi`) and the MP-table
//! reader ([`super::mp_table`]) fill it.
#![deny(unsafe_code)]

use arrayvec::ArrayVec;

/// Most CPUs kept; more are counted in [`Processors::beyond_limit`].
/// (Firecracker allows 32 vCPUs, QEMU microvm 288; 64 is plenty for mote.)
pub(crate) const MAX_CPUS: usize = 64;

/// Where a processor list came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// ACPI's MADT (local APIC and x2APIC entries).
    Madt,
    /// The Intel MultiProcessor Specification 1.4 configuration table.
    MpTable,
}

/// The enabled processors of one table, by APIC id, in table order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Processors {
    pub(crate) source: Source,
    apic_ids: ArrayVec<u32, MAX_CPUS>,
    /// The APIC id the table marks as the boot processor (MP table only).
    pub(crate) boot_processor: Option<u32>,
    /// Entries whose APIC id an earlier entry already had.
    pub(crate) duplicates: usize,
    /// Entries not enabled (not present; perhaps online-capable later).
    pub(crate) disabled: usize,
    /// Entries that could be enabled later (ACPI 6.3 "Online Capable").
    pub(crate) online_capable: usize,
    /// Enabled entries past [`MAX_CPUS`].
    pub(crate) beyond_limit: usize,
    /// The table's entries ended early (a zero or overlong entry length,
    /// an unknown entry type or a count beyond the table).
    pub(crate) truncated: bool,
}

impl Processors {
    pub(crate) fn new(source: Source) -> Self {
        Self {
            source,
            apic_ids: ArrayVec::new(),
            boot_processor: None,
            duplicates: 0,
            disabled: 0,
            online_capable: 0,
            beyond_limit: 0,
            truncated: false,
        }
    }

    /// Adds one entry of the table.
    pub(crate) fn add(&mut self, apic_id: u32, enabled: bool, online_capable: bool) {
        if !enabled {
            self.disabled += 1;
            if online_capable {
                self.online_capable += 1;
            }
            return;
        }
        if self.apic_ids.contains(&apic_id) {
            self.duplicates += 1;
        } else if self.apic_ids.try_push(apic_id).is_err() {
            self.beyond_limit += 1;
        }
    }

    /// The APIC ids of the enabled processors, each once, in table order.
    pub(crate) fn apic_ids(&self) -> &[u32] {
        &self.apic_ids
    }

    /// How many CPUs were found.
    pub(crate) fn count(&self) -> usize {
        self.apic_ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_disabled_entries_are_counted_not_kept() {
        let mut processors = Processors::new(Source::Madt);
        processors.add(0, true, false);
        processors.add(1, true, false);
        processors.add(1, true, false);
        processors.add(2, false, true);
        processors.add(3, false, false);
        assert_eq!(processors.apic_ids(), [0, 1]);
        assert_eq!(processors.count(), 2);
        assert_eq!(processors.duplicates, 1);
        assert_eq!(processors.disabled, 2);
        assert_eq!(processors.online_capable, 1);
    }

    #[test]
    fn at_most_max_cpus() {
        let mut processors = Processors::new(Source::MpTable);
        for id in 0..u32::try_from(MAX_CPUS).unwrap() + 3 {
            processors.add(id, true, false);
        }
        assert_eq!(processors.count(), MAX_CPUS);
        assert_eq!(processors.beyond_limit, 3);
    }
}
