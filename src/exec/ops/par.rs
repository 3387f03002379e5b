//! Parallel helpers for the kernels: everything runs on the current rayon pool (the caller picks it
//! with `ThreadPool::install`), and small work stays on the calling thread.

use rayon::prelude::*;
use std::ops::Range;

/// Below this many elements touched, a kernel runs on the calling thread.
pub(crate) const PAR_MIN: usize = 1 << 15;

/// Elements per parallel chunk of an elementwise kernel (64 KiB of f32).
pub(crate) const CHUNK: usize = 1 << 14;

/// A raw pointer that may cross threads, for tasks that write disjoint but interleaved parts of one
/// output (a pixel tile of every output channel). Read it through [`SyncPtr::get`] so closures
/// capture the wrapper, not the bare pointer.
#[derive(Debug)]
pub(crate) struct SyncPtr<T>(*mut T);

impl<T> Clone for SyncPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SyncPtr<T> {}

// SAFETY: the pointer is only dereferenced by tasks writing disjoint elements of a buffer that
// outlives them (every user joins its tasks before returning the buffer).
unsafe impl<T: Send> Send for SyncPtr<T> {}
unsafe impl<T: Send> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    pub fn new(v: &mut [T]) -> Self {
        SyncPtr(v.as_mut_ptr())
    }

    pub fn get(self) -> *mut T {
        self.0
    }
}

/// Whether `work` elements are worth spreading over the pool.
pub(crate) fn worth(work: usize) -> bool {
    work >= PAR_MIN && rayon::current_num_threads() > 1
}

/// `f(i)` for `i` in `0..n`, in parallel when `work` (elements touched in all) is large.
pub(crate) fn for_each(n: usize, work: usize, f: impl Fn(usize) + Sync + Send) {
    if n > 1 && worth(work) {
        (0..n).into_par_iter().for_each(f)
    } else {
        (0..n).for_each(f)
    }
}

/// `f(start, chunk)` over `out` in chunks of `chunk` elements (the last shorter), in parallel when
/// `out` is large; `start` is the chunk's first index.
pub(crate) fn chunks_mut<T: Send>(
    out: &mut [T],
    chunk: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let chunk = chunk.max(1);
    if out.len() > chunk && worth(out.len()) {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i * chunk, c));
    } else {
        out.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i * chunk, c));
    }
}

/// `f(o, lane, part)` over `out` seen as `[outer][inner]`, in parts of at most `lanes` elements
/// that never straddle two rows: `part` is `out[o·inner + lane..][..part.len()]`. Parallel when
/// `work` (elements touched in all) is large.
pub(crate) fn lanes_mut<T: Send>(
    out: &mut [T],
    inner: usize,
    lanes: usize,
    work: usize,
    f: impl Fn(usize, usize, &mut [T]) + Sync + Send,
) {
    let (inner, lanes) = (inner.max(1), lanes.max(1));
    if worth(work) {
        out.par_chunks_mut(inner).enumerate().for_each(|(o, row)| {
            row.par_chunks_mut(lanes)
                .enumerate()
                .for_each(|(c, part)| f(o, c * lanes, part))
        });
    } else {
        for (o, row) in out.chunks_mut(inner).enumerate() {
            for (c, part) in row.chunks_mut(lanes).enumerate() {
                f(o, c * lanes, part);
            }
        }
    }
}

/// `f` over every element of `x` into a new vector, in parallel chunks when large.
pub(crate) fn map<T: Copy + Sync, U: Copy + Default + Send>(
    x: &[T],
    f: impl Fn(T) -> U + Sync + Send,
) -> Vec<U> {
    let mut out = vec![U::default(); x.len()];
    chunks_mut(&mut out, CHUNK, |start, o| {
        let n = o.len();
        for (y, &v) in o.iter_mut().zip(&x[start..start + n]) {
            *y = f(v);
        }
    });
    out
}

/// `0..len` cut into `parts` (at least one) near-equal ranges, none empty unless `len` is 0.
pub(crate) fn split(len: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, len.max(1));
    (0..parts)
        .map(|i| (i * len / parts)..((i + 1) * len / parts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_the_range() {
        assert_eq!(split(10, 3), vec![0..3, 3..6, 6..10]);
        assert_eq!(split(2, 5), vec![0..1, 1..2]);
        assert_eq!(split(0, 4), vec![0..0]);
    }

    #[test]
    fn chunked_map_matches_serial() {
        let x: Vec<f32> = (0..(3 * CHUNK + 17)).map(|i| i as f32).collect();
        let y = map(&x, |v| v * 2.0);
        assert!(y.iter().enumerate().all(|(i, &v)| v == 2.0 * i as f32));
    }
}
