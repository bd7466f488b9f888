//! CRC-32/IEEE (zlib's `crc32`) computed by several CPUs at once: the
//! bytes are cut into pieces, each CPU takes the next piece with one
//! atomic add and records its CRC, and the pieces' CRCs are then combined
//! in order (crc32fast's `Hasher::combine`, the method of zlib's
//! `crc32_combine`: the first CRC times x^(8·len) modulo the polynomial,
//! plus the second), so the result is the CRC of the whole.
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crc32fast::Hasher;

use crate::smp::work::Workers;

/// Bytes one CPU takes at a time.
pub(crate) const PIECE: usize = 64 * 1024;
/// Bytes shared out in one job: 32 pieces, enough for every CPU to have
/// several (so a slow one does not hold the rest up), and little enough
/// that the pieces' CRCs live on the stack.
pub(crate) const WINDOW: usize = 32 * PIECE;

/// Appends the bytes of `bytes` to `hasher`, their CRC computed by every
/// CPU of `workers`, one job per [`WINDOW`].
pub(crate) fn update(hasher: &mut Hasher, bytes: &[u8], workers: &dyn Workers) {
    for window in bytes.chunks(WINDOW) {
        update_window(hasher, window, workers);
    }
}

/// [`update`] for at most [`WINDOW`] bytes.
fn update_window(hasher: &mut Hasher, window: &[u8], workers: &dyn Workers) {
    let partials = [const { AtomicU32::new(0) }; WINDOW / PIECE];
    let pieces = window.len().div_ceil(PIECE).min(partials.len());
    let piece = |index: usize| {
        let start = index * PIECE;
        &window[start..window.len().min(start + PIECE)]
    };
    let next = AtomicUsize::new(0);
    workers.run(&|| {
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= pieces {
                break;
            }
            partials[index].store(crc32fast::hash(piece(index)), Ordering::Relaxed);
        }
    });
    // `run` returned after every CPU did: their stores are visible (each
    // worker's end synchronises with the return of `run`).
    for (index, partial) in partials.iter().enumerate().take(pieces) {
        let length = piece(index).len() as u64;
        hasher.combine(&Hasher::new_with_initial_len(
            partial.load(Ordering::Relaxed),
            length,
        ));
    }
}

/// The CRC-32 of `bytes`, computed by every CPU of `workers`.
pub(crate) fn hash(bytes: &[u8], workers: &dyn Workers) -> u32 {
    let mut hasher = Hasher::new();
    update(&mut hasher, bytes, workers);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smp::work::{ThisCpu, Threads};

    /// xorshift64*, so the "random" bytes and splits are the same each run.
    fn random(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A random number below `bound`.
    fn below(state: &mut u64, bound: usize) -> usize {
        usize::try_from(random(state) % bound as u64).unwrap()
    }

    fn random_bytes(length: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..length)
            .map(|_| random(&mut state).to_le_bytes()[0])
            .collect()
    }

    #[test]
    fn known_answers_of_zlib() {
        // zlib.crc32(b"123456789") == 0xcbf43926; zlib.crc32(b"") == 0.
        assert_eq!(hash(b"123456789", &Threads(4)), 0xcbf4_3926);
        assert_eq!(hash(b"", &Threads(4)), 0);
        assert_eq!(hash(b"", &ThisCpu), 0);
        // zlib.crc32(bytes(1 << 20)) (a MiB of zeros: 16 pieces) == 0xa738ea1c.
        assert_eq!(hash(&vec![0; 1 << 20], &Threads(3)), 0xa738_ea1c);
    }

    #[test]
    fn any_split_across_any_cpus_equals_the_whole() {
        let bytes = random_bytes(3 * WINDOW + 12_345, 0x6d6f_7465);
        let whole = crc32fast::hash(&bytes);
        for cpus in [1, 2, 3, 4, 8] {
            assert_eq!(hash(&bytes, &Threads(cpus)), whole, "{cpus} cpus");
        }
        assert_eq!(hash(&bytes, &ThisCpu), whole);
        // Random cuts, each part appended through its own update.
        let mut state = 7;
        for _ in 0..20 {
            let mut hasher = Hasher::new();
            let mut at = 0;
            while at < bytes.len() {
                let take = below(&mut state, WINDOW + PIECE).min(bytes.len() - at);
                let workers = Threads(1 + below(&mut state, 4));
                update(&mut hasher, &bytes[at..at + take], &workers);
                at += take;
            }
            assert_eq!(hasher.finalize(), whole);
        }
    }

    #[test]
    fn lengths_around_the_piece_and_window_sizes() {
        for length in [
            1,
            PIECE - 1,
            PIECE,
            PIECE + 1,
            WINDOW - 1,
            WINDOW,
            WINDOW + 1,
        ] {
            let bytes = random_bytes(length, length as u64);
            assert_eq!(
                hash(&bytes, &Threads(4)),
                crc32fast::hash(&bytes),
                "{length}"
            );
        }
    }
}
