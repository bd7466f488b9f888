//! Physical frame allocator: the usable RAM of the memory map minus what is
//! already in use (low memory, the kernel image, modules), handed out in
//! contiguous runs of 4 KiB frames and taken back on free.
#![deny(unsafe_code)]

use arrayvec::ArrayVec;

const FRAME_SHIFT: u32 = 12;
/// Bytes per frame, as an address step and as a buffer length.
pub(crate) const FRAME_SIZE: u64 = 1 << FRAME_SHIFT;
pub(crate) const FRAME_BYTES: usize = 1 << FRAME_SHIFT;
/// Most disjoint free ranges tracked; freeing into a full table fails loudly.
pub(crate) const MAX_FREE_RANGES: usize = 128;

/// `[start, end)`, page aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameRange {
    start: u64,
    end: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// No free run of that many frames.
    #[error("no free run of {frames} frames")]
    OutOfMemory { frames: u64 },
    /// The range table is full (only after heavy fragmentation).
    #[error("the free-range table is full")]
    TooFragmented,
    /// Freed memory that was not allocated, or not page aligned.
    #[error("{frames} frames at {start:#x} were not allocated")]
    BadFree { start: u64, frames: u64 },
}

#[derive(Clone, Debug, Default)]
pub(crate) struct FrameAllocator {
    /// Sorted, disjoint, non-adjacent free ranges.
    free: ArrayVec<FrameRange, MAX_FREE_RANGES>,
}

impl FrameAllocator {
    /// An allocator with nothing to give, for statics.
    pub(crate) const fn new_empty() -> Self {
        Self {
            free: ArrayVec::new_const(),
        }
    }

    /// Frees every whole frame inside `usable` that no `reserved` range
    /// touches. Both lists may be in any order and may overlap.
    #[cfg(test)]
    pub(crate) fn new(usable: &[(u64, u64)], reserved: &[(u64, u64)]) -> Self {
        let mut allocator = Self::default();
        allocator.refill(usable, reserved);
        allocator
    }

    /// As [`Self::new`], in place: what was free is forgotten. The boot
    /// fills the static allocator this way (a 2 KiB table moved three
    /// times cost 800 instructions).
    pub(crate) fn refill(&mut self, usable: &[(u64, u64)], reserved: &[(u64, u64)]) {
        self.free.clear();
        let allocator = self;
        for &(start, end) in usable {
            let start = align_up(start);
            let end = end & !(FRAME_SIZE - 1);
            if start >= end {
                continue;
            }
            // Overlapping input: take the overlap out first so the union
            // is inserted once. Ranges that do not fit the table are left
            // out, not an error: 128 disjoint RAM regions do not occur in a VM.
            allocator.remove(start, end);
            let _ = allocator.insert(FrameRange { start, end });
        }
        for &(start, end) in reserved {
            allocator.remove(start & !(FRAME_SIZE - 1), align_up(end));
        }
    }

    pub(crate) fn free_bytes(&self) -> u64 {
        self.free.iter().map(|r| r.end - r.start).sum()
    }

    /// Allocates `frames` contiguous frames, the lowest that fit, aligned to
    /// `align_frames` frames (a power of two).
    pub(crate) fn allocate(&mut self, frames: u64, align_frames: u64) -> Result<u64, FrameError> {
        let align = align_frames.max(1) * FRAME_SIZE;
        let bytes = frames * FRAME_SIZE;
        let found = self.free.iter().find_map(|range| {
            let start = range.start.checked_add(align - 1)? & !(align - 1);
            let end = start.checked_add(bytes)?;
            (frames > 0 && end <= range.end).then_some(start)
        });
        let start = found.ok_or(FrameError::OutOfMemory { frames })?;
        // Splitting a range in two can need one more slot.
        if self.free.is_full() {
            return Err(FrameError::TooFragmented);
        }
        self.remove(start, start + bytes);
        Ok(start)
    }

    /// Returns frames obtained from [`allocate`](Self::allocate).
    pub(crate) fn deallocate(&mut self, start: u64, frames: u64) -> Result<(), FrameError> {
        let bad = FrameError::BadFree { start, frames };
        let end = frames
            .checked_mul(FRAME_SIZE)
            .and_then(|bytes| start.checked_add(bytes))
            .ok_or(bad)?;
        if !start.is_multiple_of(FRAME_SIZE) || frames == 0 {
            return Err(bad);
        }
        if self.free.iter().any(|r| r.start < end && start < r.end) {
            return Err(bad);
        }
        self.insert(FrameRange { start, end })
    }

    /// Adds a range that overlaps nothing free, merging with neighbours.
    fn insert(&mut self, range: FrameRange) -> Result<(), FrameError> {
        let index = self.free.partition_point(|r| r.start < range.start);
        let joins_left = index > 0 && self.free[index - 1].end == range.start;
        let joins_right = index < self.free.len() && self.free[index].start == range.end;
        match (joins_left, joins_right) {
            (true, true) => {
                self.free[index - 1].end = self.free[index].end;
                self.free.remove(index);
            }
            (true, false) => self.free[index - 1].end = range.end,
            (false, true) => self.free[index].start = range.start,
            (false, false) => self
                .free
                .try_insert(index, range)
                .map_err(|_| FrameError::TooFragmented)?,
        }
        Ok(())
    }

    /// Takes `[start, end)` out of the free ranges, wherever it overlaps.
    fn remove(&mut self, start: u64, end: u64) {
        let mut index = 0;
        while index < self.free.len() {
            let range = self.free[index];
            if range.end <= start || end <= range.start {
                index += 1;
                continue;
            }
            let left = FrameRange {
                start: range.start,
                end: start,
            };
            let right = FrameRange {
                start: end,
                end: range.end,
            };
            self.free.remove(index);
            if right.start < right.end {
                // Cannot fail: a slot was just freed.
                let _ = self.free.try_insert(index, right);
            }
            if left.start < left.end {
                if self.free.try_insert(index, left).is_err() {
                    // The table was full and both halves remain: lose the
                    // lower half rather than hand out reserved memory.
                    continue;
                }
                index += 1;
            }
            if right.start < right.end {
                index += 1;
            }
        }
    }
}

fn align_up(address: u64) -> u64 {
    address.saturating_add(FRAME_SIZE - 1) & !(FRAME_SIZE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn ranges(allocator: &FrameAllocator) -> Vec<(u64, u64)> {
        allocator.free.iter().map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn reservations_are_cut_out() {
        let allocator = FrameAllocator::new(
            &[(0, 0x9fc00), (MIB, 128 * MIB)],
            &[(0, MIB), (MIB, 0x180123), (0x7fff000, 0x8000000)],
        );
        assert_eq!(ranges(&allocator), [(0x181000, 0x7fff000)]);
    }

    #[test]
    fn partial_frames_at_region_edges_are_not_usable() {
        let allocator = FrameAllocator::new(&[(0x1800, 0x5800)], &[]);
        assert_eq!(ranges(&allocator), [(0x2000, 0x5000)]);
        let allocator = FrameAllocator::new(&[(0x1800, 0x1900)], &[]);
        assert!(allocator.free.is_empty());
    }

    #[test]
    fn overlapping_and_unsorted_usable_ranges_merge() {
        let allocator = FrameAllocator::new(&[(0x4000, 0x8000), (0x1000, 0x5000)], &[]);
        assert_eq!(ranges(&allocator), [(0x1000, 0x8000)]);
    }

    #[test]
    fn allocate_lowest_fit_with_alignment() {
        let mut allocator = FrameAllocator::new(&[(0x1000, 0x10000), (0x100000, 0x200000)], &[]);
        assert_eq!(allocator.allocate(2, 1), Ok(0x1000));
        assert_eq!(allocator.allocate(1, 4), Ok(0x4000));
        assert_eq!(
            allocator.allocate(16, 1),
            Ok(0x100000),
            "too big for the low range"
        );
        assert_eq!(
            allocator.allocate(1 << 20, 1),
            Err(FrameError::OutOfMemory { frames: 1 << 20 })
        );
        assert_eq!(
            allocator.allocate(0, 1),
            Err(FrameError::OutOfMemory { frames: 0 })
        );
    }

    #[test]
    fn free_merges_back_and_rejects_double_free() {
        let mut allocator = FrameAllocator::new(&[(0x1000, 0x9000)], &[]);
        let a = allocator.allocate(2, 1).unwrap();
        let b = allocator.allocate(2, 1).unwrap();
        allocator.deallocate(a, 2).unwrap();
        allocator.deallocate(b, 2).unwrap();
        assert_eq!(ranges(&allocator), [(0x1000, 0x9000)]);
        assert_eq!(
            allocator.deallocate(a, 2),
            Err(FrameError::BadFree {
                start: a,
                frames: 2
            })
        );
        assert!(allocator.deallocate(0x20001, 1).is_err(), "unaligned");
        assert!(allocator.deallocate(!0xfff_u64, 4).is_err(), "wraps");
    }

    #[test]
    fn fragmentation_is_an_error_not_a_panic() {
        let mut allocator = FrameAllocator::new(&[(0, 1024 * FRAME_SIZE)], &[]);
        let mut allocated = Vec::new();
        while let Ok(frame) = allocator.allocate(1, 1) {
            allocated.push(frame);
        }
        assert_eq!(allocated.len(), 1024);
        // Free every other frame: 512 disjoint ranges do not fit in 128.
        let results: Vec<_> = allocated
            .iter()
            .step_by(2)
            .map(|&frame| allocator.deallocate(frame, 1))
            .collect();
        assert!(results.contains(&Err(FrameError::TooFragmented)));
        assert_eq!(allocator.free.len(), MAX_FREE_RANGES);
    }

    #[test]
    fn ram_above_4g_is_allocatable() {
        let mut allocator =
            FrameAllocator::new(&[(MIB, 3 << 30), (1 << 32, 6 << 30)], &[(0, 3 << 30)]);
        assert_eq!(allocator.allocate(1, 1), Ok(1 << 32));
        assert_eq!(allocator.free_bytes(), (2 << 30) - FRAME_SIZE);
    }
}
