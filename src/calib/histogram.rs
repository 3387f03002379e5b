//! Histograms of |x| for one tensor, accumulated batch after batch in fixed memory.
//!
//! A histogram has [`NUM_BINS`] bins of equal width covering `[0, range)`; `range` is set by the first
//! batch with a non-zero value (its max |x|). When a later batch holds a larger |x|, the histogram is
//! widened by the smallest integer factor `k` with `k * range >= max`: every `k` neighbouring bins merge
//! into one (bin boundaries line up, so counts move exactly, nothing is split or interpolated) and the
//! new batch is binned at the new width. ModelOpt's (and pytorch-quantization's) histogram calibrator keep
//! the bin width instead and append bins, so their memory grows with the range; TensorRT's entropy
//! calibration only ever looks at 2048 bins of the final range, which is what the merge keeps, in memory
//! that does not depend on the number of images. The price is that the first batch decides the finest
//! resolution; a range that grows a lot over the run ends coarser than a two-pass (max, then histogram)
//! collection would give.
//!
//! Collection is one pass over the tensor once the range is set, split over rayon: binning into per-chunk
//! local histograms (no atomics, summed at the end) while taking the max of |x|; only a batch wider than
//! the range is binned a second time, after the widening. The first batch takes its max first.
//! Non-finite values (NaN, ±inf) are counted apart, in [`Histogram::non_finite`]: not in any bin, so they
//! neither move the range nor weigh on the calibrators. (Counted in the top bin, a widening would merge
//! them into a finite bin further down, where they read as real activations.)

use rayon::prelude::*;

/// Bins per histogram, as TensorRT's entropy calibration uses.
pub const NUM_BINS: usize = 2048;

/// Elements per rayon task: large enough that the 8 KiB local histogram of a task is amortised.
const CHUNK: usize = 1 << 16;

/// A histogram of |x| over `[0, range)`, with the running max of |x|.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Histogram {
    pub counts: Vec<u64>,
    /// The upper edge of the last bin; 0 until a non-zero value has been seen.
    pub range: f32,
    /// The largest finite |x| seen.
    pub max: f32,
    /// Elements seen, NaN and inf included.
    pub total: u64,
    /// NaN and ±inf elements seen (in no bin).
    #[serde(default)]
    pub non_finite: u64,
    /// Times the histogram was widened (merged into a coarser one).
    pub widenings: u32,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; NUM_BINS],
            range: 0.0,
            max: 0.0,
            total: 0,
            non_finite: 0,
            widenings: 0,
        }
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self::default()
    }

    /// Width of one bin (0 before the range is set).
    pub fn bin_width(&self) -> f32 {
        self.range / NUM_BINS as f32
    }

    /// Adds one batch of values.
    pub fn add(&mut self, xs: &[f32]) {
        if xs.is_empty() {
            return;
        }
        self.total += xs.len() as u64;
        if self.range > 0.0 {
            // Once the range is set it usually covers the next batch too: bin and take the max in one
            // pass over the tensor, and only when the batch turns out wider, widen and bin it again.
            let (local, m) = bin(xs, NUM_BINS as f32 / self.range);
            self.max = self.max.max(m);
            if m <= self.range {
                self.accumulate(local);
                return;
            }
            self.widen(m);
        } else {
            let m = abs_max(xs);
            self.max = self.max.max(m);
            if m == 0.0 {
                // All zeros so far: they belong in bin 0 whatever the range turns out to be.
                let non_finite = xs.iter().filter(|x| !x.is_finite()).count() as u64;
                self.counts[0] += xs.len() as u64 - non_finite;
                self.non_finite += non_finite;
                return;
            }
            self.range = m;
        }
        let (local, _) = bin(xs, NUM_BINS as f32 / self.range);
        self.accumulate(local);
    }

    /// Adds [`bin`]'s counts: the bins, then the non-finite slot.
    fn accumulate(&mut self, local: Vec<u32>) {
        for (c, &l) in self.counts.iter_mut().zip(&local) {
            *c += l as u64;
        }
        self.non_finite += local[NUM_BINS] as u64;
    }

    /// Merges every `k` bins into one so that the range covers `m`.
    fn widen(&mut self, m: f32) {
        let mut k = (m / self.range).ceil() as usize;
        // Rounding in the division could leave `k * range` a hair below `m`.
        while (self.range as f64) * (k as f64) < m as f64 {
            k += 1;
        }
        let mut merged = vec![0u64; NUM_BINS];
        for (i, c) in self.counts.iter().enumerate() {
            merged[i / k] += c;
        }
        self.counts = merged;
        self.range = (self.range as f64 * k as f64) as f32;
        self.widenings += 1;
    }

    /// Adds another histogram of the same tensor (e.g. collected on another thread).
    pub fn merge(&mut self, other: &Histogram) {
        if other.total == 0 {
            return;
        }
        if other.range > self.range {
            if self.range == 0.0 {
                let zeros = self.counts[0];
                let (total, non_finite, max) = (self.total, self.non_finite, self.max);
                *self = other.clone();
                self.counts[0] += zeros;
                self.total += total;
                self.non_finite += non_finite;
                self.max = self.max.max(max);
                return;
            }
            self.widen(other.range);
        }
        // Each of the other's bins goes where its centre falls in ours.
        let w = other.bin_width() as f64;
        let inv = NUM_BINS as f64 / self.range.max(f32::MIN_POSITIVE) as f64;
        for (i, &c) in other.counts.iter().enumerate() {
            let centre = (i as f64 + 0.5) * w;
            let j = ((centre * inv) as usize).min(NUM_BINS - 1);
            self.counts[j] += c;
        }
        self.max = self.max.max(other.max);
        self.total += other.total;
        self.non_finite += other.non_finite;
    }

    /// Upper edge of bin `i` (bin `i` covers `[i, i+1) * width`).
    pub fn edge(&self, i: usize) -> f32 {
        (i as f64 * self.range as f64 / NUM_BINS as f64) as f32
    }
}

/// The largest finite |x|: inf and NaN count as 0 (a select, not a branch, so it vectorises).
pub fn abs_max(xs: &[f32]) -> f32 {
    let chunk_max = |c: &[f32]| {
        c.iter().fold(0f32, |m, &x| {
            let a = x.abs();
            m.max(if a < f32::INFINITY { a } else { 0.0 })
        })
    };
    if xs.len() <= CHUNK {
        return chunk_max(xs);
    }
    xs.par_chunks(CHUNK).map(chunk_max).reduce(|| 0.0, f32::max)
}

/// Values per block of [`bin`]: indices first, then increments.
const BLOCK: usize = 256;
/// How many blocks ahead of the one being binned [`bin_chunk`] asks for the data. The hardware
/// prefetcher does not keep up with a loop that alternates a block's loads with its scattered
/// increments. Measured on 16 M ReLU-like values, one thread, Zen 4, each variant alternated with the
/// loop before this change in one process (`benches/histogram.rs` has the figure for the current one):
/// that loop 0.88-0.96 ns a value; built for AVX2 0.81-0.86; plus the prefetch 0.44 / 0.40 / 0.38 at
/// 1 / 2 / 4 blocks ahead (0.60 with the prefetch on baseline SSE2).
const PREFETCH_BLOCKS: usize = 4;

/// Asks the cache for the `BLOCK` values of `c` from `at`. Only a hint, and a prefetch never faults, so
/// it may run past the chunk's end into the next one (which this thread often bins next). x86-64 only,
/// where `prefetcht0` is stable; elsewhere the hardware prefetcher is on its own.
#[inline(always)]
fn prefetch(c: &[f32], at: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = c.as_ptr().wrapping_add(at);
        for line in (0..BLOCK).step_by(16) {
            // SAFETY: `_mm_prefetch` reads nothing the program sees and never faults, whatever the
            // address; `wrapping_add` computes it without claiming it is in bounds.
            unsafe {
                core::arch::x86_64::_mm_prefetch(
                    p.wrapping_add(line) as *const i8,
                    core::arch::x86_64::_MM_HINT_T0,
                )
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (c, at);
}

/// Independent max accumulators (one SIMD register of f32 on AVX2 and two on NEON).
const LANES: usize = 8;

/// The bin of `a = |x|`, or `NUM_BINS` (the slot past the bins) for inf and NaN. Both are selects, so the
/// loop still vectorises: `min` caps the product at `top` (NaN too, which `min` drops in favour of
/// `top`), so the conversion is always in range, and the non-finite slot is chosen afterwards. This
/// costs 5-7% of the binning time; a per-lane count of non-finite values, or a rescan of the chunks that
/// reach the top bin, cost 15-20%.
#[inline(always)]
fn bin_index(a: f32, inv_width: f32, top: f32) -> u32 {
    let v = (a * inv_width).min(top);
    debug_assert!((0.0..=top).contains(&v));
    // SAFETY: `v` is finite and in 0..=2047 (a >= 0, inv_width > 0, capped at top), so it fits in u32.
    let i = unsafe { v.to_int_unchecked::<u32>() };
    if a < f32::INFINITY {
        i
    } else {
        NUM_BINS as u32
    }
}

/// Slots of a chunk's counts: the bins, then the non-finite count.
const SLOTS: usize = NUM_BINS + 1;

/// Counts of `|x| * inv_width`, clamped into the bins, with the non-finite count after them (`NUM_BINS
/// + 1` slots), and the largest finite |x|, in one pass over parallel chunks.
fn bin(xs: &[f32], inv_width: f32) -> (Vec<u32>, f32) {
    if xs.len() <= CHUNK {
        return bin_chunk_dispatch(xs, inv_width);
    }
    xs.par_chunks(CHUNK)
        .map(|c| bin_chunk_dispatch(c, inv_width))
        .reduce(
            || (vec![0u32; SLOTS], 0.0),
            |(mut a, ma), (b, mb)| {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y;
                }
                (a, ma.max(mb))
            },
        )
}

/// [`bin_chunk`] compiled for the widest vectors this CPU has. The crate is built for baseline x86-64
/// (SSE2: 4 lanes); the AVX2 build of the same code computes indices 8 lanes a step, which pays once
/// the prefetch keeps the loads fed (0.38 against 0.60 ns a value; see [`PREFETCH_BLOCKS`]). Same
/// arithmetic, so the same counts.
fn bin_chunk_dispatch(c: &[f32], inv_width: f32) -> (Vec<u32>, f32) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { bin_chunk_avx2(c, inv_width) };
    }
    bin_chunk(c, inv_width)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bin_chunk_avx2(c: &[f32], inv_width: f32) -> (Vec<u32>, f32) {
    bin_chunk(c, inv_width)
}

/// One chunk's counts and max (see [`bin`]).
#[inline(always)]
fn bin_chunk(c: &[f32], inv_width: f32) -> (Vec<u32>, f32) {
    let top = (NUM_BINS - 1) as f32;
    // Four interleaved sub-histograms: runs of equal values (the zeros after a Relu) would otherwise
    // serialise on one counter's load-add-store chain.
    let mut h = vec![0u32; 4 * SLOTS];
    let mut m = [0f32; LANES];
    let mut idx = [0u32; BLOCK];
    let mut blocks = c.chunks_exact(BLOCK);
    for (b, block) in (&mut blocks).enumerate() {
        prefetch(c, (b + PREFETCH_BLOCKS) * BLOCK);
        // Bin indices and the max first, in lanes the compiler vectorises; then the scattered
        // increments, which cannot be. Mixed in one scalar loop, the saturating float-to-int cast
        // and the NaN-aware min cost about 12 cycles a value on the bench machine.
        for (xs, is) in block.chunks_exact(LANES).zip(idx.chunks_exact_mut(LANES)) {
            for k in 0..LANES {
                let a = xs[k].abs();
                m[k] = m[k].max(if a < f32::INFINITY { a } else { 0.0 });
                is[k] = bin_index(a, inv_width, top);
            }
        }
        for q in idx.chunks_exact(4) {
            for k in 0..4 {
                h[k * SLOTS + q[k] as usize] += 1;
            }
        }
    }
    for &x in blocks.remainder() {
        let a = x.abs();
        m[0] = m[0].max(if a < f32::INFINITY { a } else { 0.0 });
        h[bin_index(a, inv_width, top) as usize] += 1;
    }
    let (first, rest) = h.split_at_mut(SLOTS);
    for sub in rest.chunks_exact(SLOTS) {
        for (a, b) in first.iter_mut().zip(sub) {
            *a += b;
        }
    }
    h.truncate(SLOTS);
    (h, m.iter().fold(0f32, |a, &b| a.max(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_batch_sets_the_range_and_the_max_lands_in_the_top_bin() {
        let mut h = Histogram::new();
        h.add(&[0.0, -1.0, 2.0, -4.0]);
        assert_eq!(h.range, 4.0);
        assert_eq!(h.max, 4.0);
        assert_eq!(h.total, 4);
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[512], 1); // 1.0 * 2048 / 4
        assert_eq!(h.counts[1024], 1);
        assert_eq!(h.counts[NUM_BINS - 1], 1);
        assert_eq!(h.counts.iter().sum::<u64>(), 4);
    }

    #[test]
    fn a_wider_batch_merges_bins_exactly() {
        let mut h = Histogram::new();
        // Range 2048, bin width 1: one value per bin, two in the top bin.
        let mut xs: Vec<f32> = (0..2048).map(|i| i as f32 + 0.5).collect();
        xs.push(2048.0);
        h.add(&xs);
        assert_eq!(h.range, 2048.0);
        h.add(&[5120.0]); // 2.5 ranges: k = 3
        assert_eq!(h.widenings, 1);
        assert_eq!(h.range, 6144.0);
        assert_eq!(h.counts.iter().sum::<u64>(), 2050);
        // Old bins merged by three: 683 groups of 3 (the last one is two old bins holding 1 + 2).
        assert!(h.counts[..683].iter().all(|&c| c == 3));
        // 5120 / 3 = 1706.7 in the new bins.
        assert_eq!(h.counts[1706], 1);
        assert_eq!(h.counts[683..].iter().sum::<u64>(), 1);
    }

    #[test]
    fn zeros_first_then_values_and_non_finite() {
        let mut h = Histogram::new();
        h.add(&[0.0; 10]);
        assert_eq!((h.range, h.counts[0]), (0.0, 10));
        h.add(&[1.0, f32::NAN, f32::INFINITY]);
        assert_eq!(h.range, 1.0);
        assert_eq!(h.max, 1.0);
        assert_eq!(h.counts[0], 10);
        assert_eq!(h.counts[NUM_BINS - 1], 1); // 1.0; NaN and inf are in no bin
        assert_eq!((h.non_finite, h.total), (2, 13));
        assert_eq!(h.counts.iter().sum::<u64>(), 11);
    }

    /// NaN and inf stay out of every bin through a widening (in the top bin, the merge would have moved
    /// them down among the finite values), in a zero-only first batch, in a parallel batch and in a merge.
    #[test]
    fn non_finite_values_stay_out_of_the_bins() {
        let mut h = Histogram::new();
        h.add(&[0.0, f32::NAN, 0.0, f32::NEG_INFINITY]);
        assert_eq!((h.counts[0], h.non_finite, h.range), (2, 2, 0.0));
        h.add(&[2.0, f32::INFINITY]);
        h.add(&[8.0]); // k = 4: the old top bin merges into bin 511
        assert_eq!(h.widenings, 1);
        assert_eq!(h.counts[511], 1); // 2.0 alone
        assert_eq!(h.counts[NUM_BINS - 1], 1); // 8.0 alone
        let mut big: Vec<f32> = (0..200_000).map(|i| (i % 7) as f32).collect();
        for i in (0..big.len()).step_by(1000) {
            big[i] = if i % 2000 == 0 {
                f32::NAN
            } else {
                f32::INFINITY
            };
        }
        h.add(&big);
        assert_eq!(h.non_finite, 3 + 200);
        let mut other = Histogram::new();
        other.add(&[f32::NAN, 1.0]);
        h.merge(&other);
        assert_eq!(h.non_finite, 204);
        assert_eq!(h.total, 4 + 2 + 1 + 200_000 + 2);
        assert_eq!(h.counts.iter().sum::<u64>() + h.non_finite, h.total);
    }

    #[test]
    fn parallel_binning_equals_serial() {
        let xs: Vec<f32> = (0..300_001u64)
            .map(|i| ((i * 7919) % 10007) as f32 / 1000.0 - 5.0)
            .collect();
        let mut a = Histogram::new();
        a.add(&xs);
        let mut b = Histogram::new();
        b.add(&xs[..1]);
        for c in xs[1..].chunks(1000) {
            b.add(c);
        }
        assert_eq!(a.total, b.total);
        assert_eq!(a.max, b.max);
        // Serial reference of the one-shot histogram.
        let inv = NUM_BINS as f32 / a.range;
        let mut want = vec![0u64; NUM_BINS];
        for &x in &xs {
            want[((x.abs() * inv).min((NUM_BINS - 1) as f32)) as usize] += 1;
        }
        assert_eq!(a.counts, want);
    }

    /// The AVX2 build of the chunk loop against the baseline one and a scalar count, on values that
    /// land on every bin edge, past the range, and NaN/±inf, in a length that leaves a remainder.
    #[test]
    fn avx2_binning_counts_what_the_baseline_counts() {
        let inv = NUM_BINS as f32 / 3.0;
        let mut xs: Vec<f32> = (0..CHUNK as u64 - 37)
            .map(|i| ((i * 7919) % 20011) as f32 / 6000.0 - 1.7)
            .collect();
        for (i, e) in (0..=NUM_BINS).enumerate() {
            xs[i * 11] = e as f32 / inv; // bin edges, and the range itself
        }
        for (i, x) in [f32::NAN, f32::INFINITY, -f32::INFINITY, -0.0, 1e30]
            .into_iter()
            .enumerate()
        {
            xs[i * 997 + 5] = x;
        }
        let mut want = vec![0u32; SLOTS];
        for &x in &xs {
            let a = x.abs();
            let i = if a.is_finite() {
                ((a * inv).min((NUM_BINS - 1) as f32)) as usize
            } else {
                NUM_BINS
            };
            want[i] += 1;
        }
        let baseline = bin_chunk(&xs, inv);
        assert_eq!(baseline.0, want);
        assert_eq!(baseline.1, 1e30);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            let wide = unsafe { bin_chunk_avx2(&xs, inv) };
            assert_eq!(wide, baseline);
        }
    }

    #[test]
    fn one_pass_binning_matches_two_passes_with_and_without_widening() {
        let xs: Vec<f32> = (0..200_003u64)
            .map(|i| ((i * 104_729) % 65_521) as f32 / 4096.0 - 8.0)
            .collect();
        let reference = |batches: &[&[f32]]| {
            // Two passes per batch: the max, then binning at the (possibly widened) range.
            let mut h = Histogram::new();
            for b in batches {
                let m = abs_max(b);
                h.total += b.len() as u64;
                h.max = h.max.max(m);
                if h.range == 0.0 {
                    h.range = m;
                } else if m > h.range {
                    h.widen(m);
                }
                let inv = NUM_BINS as f32 / h.range;
                for &x in *b {
                    h.counts[((x.abs() * inv).min((NUM_BINS - 1) as f32)) as usize] += 1;
                }
            }
            h
        };
        // Narrow first (no widening after), and wide-after-narrow (one widening).
        let narrow: Vec<f32> = xs.iter().map(|x| x * 0.5).collect();
        for batches in [[&xs[..], &narrow[..]], [&narrow[..], &xs[..]]] {
            let mut h = Histogram::new();
            for b in batches {
                h.add(b);
            }
            assert_eq!(h, reference(&batches));
        }
        let mut h = Histogram::new();
        h.add(&narrow);
        h.add(&xs);
        assert_eq!(h.widenings, 1);
    }

    #[test]
    fn merge_of_two_histograms_keeps_counts() {
        let mut a = Histogram::new();
        a.add(&[0.5, 1.0]);
        let mut b = Histogram::new();
        b.add(&[3.0, 0.1, 2.0]);
        a.merge(&b);
        assert_eq!(a.total, 5);
        assert_eq!(a.counts.iter().sum::<u64>(), 5);
        assert_eq!(a.max, 3.0);
        assert!(a.range >= 3.0);
    }
}
