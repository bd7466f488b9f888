//! The load lines at the end of the guest's status page (`GET /`), written
//! by `kernel/src/net/server.rs` (`PagesWithLoad::status`):
//!
//! ```text
//! http connections <n> open, <n> peak, <n> sockets of <n>; <n> accepted, <n> requests, <n> refused
//! heap <n> bytes free, <n> at the least
//! tsc <n> cycles serving, <n> halted, <n> busy
//! ```

use serde::{Deserialize, Serialize};

/// The server's counters as one status page showed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoadCounters {
    pub(crate) open: u64,
    pub(crate) peak: u64,
    pub(crate) sockets: u64,
    pub(crate) capacity: u64,
    pub(crate) accepted: u64,
    pub(crate) requests: u64,
    /// SYNs dropped because the connection pool was full.
    pub(crate) refused: u64,
    /// Heap bytes free at the last turn of the service loop, and the
    /// fewest at the end of any turn (absent when the page has no heap line).
    pub(crate) heap_free: Option<u64>,
    pub(crate) heap_low: Option<u64>,
    /// TSC cycles the service loop spent not halted since it started
    /// (absent on a page without the `tsc` line).
    #[serde(default)]
    pub(crate) busy_cycles: Option<u64>,
}

/// The numbers of `line` after each of `labels` in turn (`"<n> open"`: the
/// number comes before its label), if every one is there.
fn numbers_before(line: &str, labels: &[&str]) -> Option<Vec<u64>> {
    let words: Vec<&str> = line
        .split([' ', ',', ';'])
        .filter(|word| !word.is_empty())
        .collect();
    let mut found = Vec::with_capacity(labels.len());
    let mut from = 0;
    for label in labels {
        let at = from + words[from..].iter().position(|word| word == label)?;
        found.push(words.get(at.checked_sub(1)?)?.parse().ok()?);
        from = at + 1;
    }
    Some(found)
}

impl LoadCounters {
    /// Reads the counters from a status page; `None` without its
    /// `http connections` line.
    pub(crate) fn parse(page: &str) -> Option<Self> {
        let connections = page
            .lines()
            .find_map(|line| line.strip_prefix("http connections "))?;
        let values = numbers_before(
            &format!("x {connections}"),
            &["open", "peak", "sockets", "accepted", "requests", "refused"],
        )?;
        // `<n> sockets of <n>`: the capacity follows its label.
        let capacity = connections
            .split_once(" sockets of ")?
            .1
            .split(';')
            .next()?
            .trim()
            .parse()
            .ok()?;
        let heap = page
            .lines()
            .find_map(|line| line.strip_prefix("heap "))
            .and_then(|rest| numbers_before(&format!("x {rest}"), &["bytes", "at"]));
        let busy_cycles = page
            .lines()
            .filter_map(|line| line.strip_prefix("tsc "))
            .find(|rest| rest.contains(" cycles serving, "))
            .and_then(|rest| numbers_before(&format!("x {rest}"), &["busy"]))
            .map(|busy| busy[0]);
        Some(Self {
            open: values[0],
            peak: values[1],
            sockets: values[2],
            capacity,
            accepted: values[3],
            requests: values[4],
            refused: values[5],
            heap_free: heap.as_ref().map(|heap| heap[0]),
            heap_low: heap.as_ref().map(|heap| heap[1]),
            busy_cycles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_load_lines_of_a_status_page() {
        let page = "mote up 12.5 s\ntsc 2596138283 Hz from calibrated\nmemory_init 10 us\n\
            http connections 3 open, 1000 peak, 1008 sockets of 1520; 2041 accepted, 9000 requests, 2 refused\n\
            heap 90000000 bytes free, 81234567 at the least\n\
            tsc 5000000 cycles serving, 3000000 halted, 2000000 busy\n";
        assert_eq!(
            LoadCounters::parse(page),
            Some(LoadCounters {
                open: 3,
                peak: 1000,
                sockets: 1008,
                capacity: 1520,
                accepted: 2041,
                requests: 9000,
                refused: 2,
                heap_free: Some(90_000_000),
                heap_low: Some(81_234_567),
                busy_cycles: Some(2_000_000),
            })
        );
    }

    #[test]
    fn the_heap_line_is_optional_the_connections_line_is_not() {
        let page =
            "http connections 0 open, 0 peak, 8 sockets of 16; 0 accepted, 0 requests, 0 refused\n";
        let counters = LoadCounters::parse(page).unwrap();
        assert_eq!(counters.capacity, 16);
        assert_eq!(counters.heap_low, None);
        assert_eq!(LoadCounters::parse("mote up 1 s\n"), None);
        assert_eq!(
            LoadCounters::parse("http connections x open, 0 peak\n"),
            None
        );
    }
}
