//! From a histogram to an amax: NVIDIA's entropy (KL) calibration, a percentile, or the max; and the
//! per-channel max of a weight tensor.

use super::histogram::{Histogram, NUM_BINS};
use crate::tensor::Tensor;

/// Levels of an 8-bit quantized |x| (the sign takes the eighth bit).
pub const LEVELS: usize = 128;

/// The count Q takes in a bin where it is 0 but P is not (MXNet's smoothing epsilon, which is in counts).
pub const Q_EPS: f64 = 1e-4;

/// How to pick an activation's amax from its histogram.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Smallest KL divergence between the clipped distribution and its 128-level quantization
    /// (TensorRT's EntropyCalibration2).
    Entropy,
    /// The given percentile of |x| (e.g. 99.99).
    Percentile(f64),
    /// The largest |x| seen.
    Max,
}

impl Method {
    /// The amax this method picks for `h`. A histogram that saw only zeros gives 0.
    pub fn amax(&self, h: &Histogram) -> f32 {
        if h.range == 0.0 {
            return 0.0;
        }
        match *self {
            Method::Entropy => entropy_amax(h),
            Method::Percentile(p) => percentile_amax(h, p),
            Method::Max => h.max,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Entropy => write!(f, "entropy"),
            Method::Percentile(p) => write!(f, "percentile({p})"),
            Method::Max => write!(f, "max"),
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;

    /// The inverse of Display: `entropy`, `max`, `percentile(99.99)`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "entropy" => Ok(Method::Entropy),
            "max" => Ok(Method::Max),
            _ => s
                .strip_prefix("percentile(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|p| p.parse::<f64>().ok())
                .filter(|p| *p > 0.0 && *p <= 100.0)
                .map(Method::Percentile)
                .ok_or_else(|| {
                    format!("unknown calibration method '{s}': entropy, max or percentile(P)")
                }),
        }
    }
}

/// NVIDIA's entropy calibration (Migacz, "8-bit Inference with TensorRT", GTC 2017). For each cut-off `i`
/// from 128 bins up to 2048: P = the first `i` bins with every count beyond added to the last kept bin;
/// Q = the first `i` bins merged into 128 levels (bin `j` into level `j * 128 / i`, so the levels differ by
/// at most one bin, as ModelOpt's `np.digitize` over `np.linspace(0, i, 129)` groups them), each level's
/// mass spread evenly over the bins of its group that are non-zero. The `i`
/// with the smallest KL(P || Q) wins, the largest such `i` on ties (ModelOpt's choice: the wider range
/// when the clip costs nothing); amax is the edge of bin `i`, i.e. `i` bin widths, capped by the
/// running max.
///
/// Q is built from the bins *before* the outliers are folded in, as the published algorithm, MXNet and
/// ModelOpt do (ARCHITECTURE.md's one-line summary says "P merged"): merged from P itself, Q would equal
/// P exactly at `i = 128` (one bin per level), KL would be 0 there and every tensor would be clipped to
/// 128 bins. With the outliers only in P, a clip that moves a lot of mass costs divergence. Where Q is 0
/// and P is not (outliers folded into a kept bin that was empty), Q counts [`Q_EPS`], as MXNet's
/// implementation of the same algorithm smooths it: left infinite (ModelOpt), a sparse histogram (a few
/// far outliers, empty bins between) could never be clipped at all. Everywhere else this is ModelOpt's
/// `_compute_amax_entropy` exactly (the test `entropy_matches_modelopt` holds it to its cut-offs).
///
/// The first bin counts as the second (`bins[0] = bins[1]`, as ModelOpt and pytorch-quantization do).
/// After a ReLU half the values or more are exact zeros, which INT8 represents exactly at any scale;
/// left in, that spike dominates P, and every cut-off wider than 128 bins smears it over a whole level
/// of Q, so the smallest cut-off always wins: measured on the sample model, entropy clipped most ReLU
/// outputs at a quarter of their max and the INT8 output drifted to rel L2 0.25 (max calibration: 0.014).
pub fn entropy_amax(h: &Histogram) -> f32 {
    let mut counts: Vec<f64> = h.counts.iter().map(|&c| c as f64).collect();
    counts[0] = counts[1];
    let sums = PrefixSums::of(&counts);
    let mut best = (f64::INFINITY, NUM_BINS);
    for i in LEVELS..=NUM_BINS {
        let kl = sums.kl_of_clip(&counts, i);
        if kl <= best.0 {
            best = (kl, i);
        }
    }
    h.edge(best.1).min(h.max)
}

/// Prefix sums over the bins that make each cut-off's KL(P || Q) O(levels) instead of O(bins): within
/// one level of Q every non-empty bin holds the same q, so the level's part of the sum
/// Σ p·(ln p − ln Σp − ln q/Σq) needs only Σ p and Σ p·ln p over its bins. Same value as
/// [`kl_of_clip`] (the definition, kept as the test's oracle) up to rounding; on W48's 361 histograms
/// 0.53 s instead of 5.1 s, with the same scales.
struct PrefixSums {
    /// Σ counts[..j]
    mass: Vec<f64>,
    /// Σ counts·ln(counts) over the non-empty bins of ..j
    mass_ln: Vec<f64>,
    /// non-empty bins in ..j
    nonzero: Vec<u32>,
}

impl PrefixSums {
    fn of(counts: &[f64]) -> Self {
        let n = counts.len();
        let (mut mass, mut mass_ln, mut nonzero) = (
            Vec::with_capacity(n + 1),
            Vec::with_capacity(n + 1),
            Vec::with_capacity(n + 1),
        );
        let (mut m, mut ml, mut nz) = (0f64, 0f64, 0u32);
        mass.push(m);
        mass_ln.push(ml);
        nonzero.push(nz);
        for &c in counts {
            if c > 0.0 {
                m += c;
                ml += c * c.ln();
                nz += 1;
            }
            mass.push(m);
            mass_ln.push(ml);
            nonzero.push(nz);
        }
        PrefixSums {
            mass,
            mass_ln,
            nonzero,
        }
    }

    /// KL(P || Q) of clipping `counts` at `i` bins, as [`kl_of_clip`] defines it.
    fn kl_of_clip(&self, counts: &[f64], i: usize) -> f64 {
        let total = self.mass[counts.len()];
        let kept = self.mass[i];
        if total == 0.0 || kept == 0.0 {
            return f64::INFINITY;
        }
        let (ln_sp, ln_sq) = (total.ln(), kept.ln());
        let ln_eps = Q_EPS.ln() - ln_sq;
        let mut sum = 0.0;
        // ln of a level's normalised q, or None when the level is empty.
        let level_ln_q = |start: usize, stop: usize| {
            let nz = self.nonzero[stop] - self.nonzero[start];
            (nz > 0).then(|| {
                let q = (self.mass[stop] - self.mass[start]) / nz as f64;
                q.ln() - ln_sq
            })
        };
        for level in 0..LEVELS {
            let (start, stop) = (level_start(level, i), level_start(level + 1, i));
            // The last kept bin also holds the outliers in P: it is added on its own below.
            let inner = stop.min(i - 1);
            if inner <= start {
                continue;
            }
            if let Some(ln_q) = level_ln_q(start, stop) {
                let p = self.mass[inner] - self.mass[start];
                let p_ln = self.mass_ln[inner] - self.mass_ln[start];
                sum += p_ln - p * (ln_sp + ln_q);
            }
        }
        let last = counts[i - 1] + (total - kept);
        if last > 0.0 {
            let start = level_start(LEVELS - 1, i);
            let ln_q = if counts[i - 1] > 0.0 {
                level_ln_q(start, i).unwrap_or(ln_eps)
            } else {
                ln_eps
            };
            sum += last * (last.ln() - ln_sp - ln_q);
        }
        sum / total
    }
}

/// The first of the bins that make up `level` when `i` bins are quantized to [`LEVELS`] levels: bin `j`
/// goes to level `j * LEVELS / i`. `level_start(LEVELS, i)` is `i`.
fn level_start(level: usize, i: usize) -> usize {
    (level * i).div_ceil(LEVELS)
}

/// KL(P || Q) for one candidate: `p` is the clipped histogram (outliers in its last bin), `kept` the same
/// bins without the outliers (what Q quantizes), `q` scratch of the same length. A Q of 0 under a P > 0
/// counts [`Q_EPS`].
pub fn kl_of_clip(p: &[f64], kept: &[f64], q: &mut [f64]) -> f64 {
    let i = p.len();
    q.fill(0.0);
    for level in 0..LEVELS {
        let (start, stop) = (level_start(level, i), level_start(level + 1, i));
        let bins = &kept[start..stop];
        let mass: f64 = bins.iter().sum();
        let nonzero = bins.iter().filter(|&&c| c != 0.0).count();
        if nonzero == 0 {
            continue;
        }
        let each = mass / nonzero as f64;
        for (qj, &kj) in q[start..stop].iter_mut().zip(bins) {
            if kj != 0.0 {
                *qj = each;
            }
        }
    }
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp == 0.0 || sq == 0.0 {
        return f64::INFINITY;
    }
    let mut kl = 0.0;
    for (&pj, &qj) in p.iter().zip(q.iter()) {
        if pj > 0.0 {
            let (pn, qn) = (pj / sp, if qj > 0.0 { qj } else { Q_EPS } / sq);
            kl += pn * (pn / qn).ln();
        }
    }
    kl
}

/// The smallest bin edge below which at least `percentile` % of the values lie (the upper edge of the
/// bin where the cumulative count reaches it), capped by the running max.
pub fn percentile_amax(h: &Histogram, percentile: f64) -> f32 {
    let total: u64 = h.counts.iter().sum();
    let want = (percentile.clamp(0.0, 100.0) / 100.0) * total as f64;
    let mut seen = 0u64;
    for (i, &c) in h.counts.iter().enumerate() {
        seen += c;
        if seen as f64 >= want {
            return h.edge(i + 1).min(h.max);
        }
    }
    h.max
}

/// The largest |w| of each slice along `axis` (per-channel weight ranges). A rank-0 tensor or a
/// non-float one gives `None`.
pub fn per_channel_amax(w: &Tensor, axis: usize) -> Option<Vec<f32>> {
    if axis >= w.shape.len() || !matches!(w.dtype() as i32, 1 | 10 | 11 | 16) {
        return None;
    }
    let v = w.as_f32s();
    let channels = w.shape[axis];
    let inner: usize = w.shape[axis + 1..].iter().product();
    let mut amax = vec![0f32; channels];
    if inner == 0 {
        return Some(amax);
    }
    for (k, run) in v.chunks(inner).enumerate() {
        let c = k % channels;
        amax[c] = amax[c].max(super::histogram::abs_max(run));
    }
    Some(amax)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip() {
        for m in [Method::Entropy, Method::Max, Method::Percentile(99.99)] {
            assert_eq!(m.to_string().parse::<Method>(), Ok(m));
        }
        assert!("percentile(0)".parse::<Method>().is_err());
        assert!("kl".parse::<Method>().unwrap_err().contains("'kl'"));
    }

    /// A deterministic N(0, 1) sample (Box-Muller over a fixed LCG).
    fn gaussian(n: usize) -> Vec<f32> {
        let mut s = 0x2545f4914f6cdd1du64;
        let mut u = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (a, b) = (u(), u());
                ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
            })
            .collect()
    }

    #[test]
    fn uniform_data_calibrates_near_its_max() {
        let xs: Vec<f32> = (0..200_000)
            .map(|i| (i as f32 / 200_000.0) * 6.0 - 3.0)
            .collect();
        let mut h = Histogram::new();
        h.add(&xs);
        let max = h.max;
        for m in [Method::Entropy, Method::Percentile(99.99), Method::Max] {
            let a = m.amax(&h);
            assert!(a > 0.95 * max && a <= max, "{m}: {a} vs max {max}");
        }
    }

    #[test]
    fn outliers_are_clipped_by_entropy_and_percentile() {
        let mut xs = gaussian(200_000);
        xs.extend([1000.0, -800.0, 950.0]);
        let mut h = Histogram::new();
        h.add(&xs);
        assert_eq!(Method::Max.amax(&h), 1000.0);
        let e = Method::Entropy.amax(&h);
        let p = Method::Percentile(99.99).amax(&h);
        // 99.99 % of N(0,1) lies within 3.9. Bins are 1000/2048 wide, and entropy's smallest cut-off is
        // 128 bins = 62.5: it clips to a small fraction of the outliers.
        assert!(e < 150.0, "entropy amax {e}");
        assert!(p < 6.0 && p > 3.0, "percentile amax {p}");
    }

    #[test]
    fn zeros_do_not_decide_the_entropy_clip() {
        // A ReLU output: 60 % exact zeros, the rest |N(0, 1)|. Without the zeros' spike discounted, the
        // 128-bin cut-off (a quarter of the range here) won; the clip must sit in the Gaussian's tail.
        let g = gaussian(100_000);
        let relu: Vec<f32> = g
            .iter()
            .map(|v| v.abs())
            .chain(std::iter::repeat_n(0.0, 150_000))
            .collect();
        let mut with_zeros = Histogram::new();
        with_zeros.add(&relu);
        let mut without = Histogram::new();
        without.add(&relu[..100_000]);
        let (a, b) = (
            Method::Entropy.amax(&with_zeros),
            Method::Entropy.amax(&without),
        );
        assert!(
            a > 2.5 && a <= with_zeros.max,
            "entropy amax {a}, max {}",
            with_zeros.max
        );
        // The spike replaced by its neighbour leaves the clip within a few bins of the zero-free one.
        assert!((a - b).abs() < 8.0 * with_zeros.bin_width(), "{a} vs {b}");
    }

    #[test]
    fn prefix_sum_kl_equals_the_definition_at_every_cut_off() {
        let g = gaussian(50_000);
        let mut cases: Vec<Vec<f32>> = vec![
            g.clone(),
            g.iter().map(|v| v.max(0.0)).collect(),
            g.iter().map(|v| v * v * v).collect(),
        ];
        let mut sparse = g[..200].to_vec();
        sparse.extend([40.0, 41.0, 90.0]);
        cases.push(sparse);
        for (k, xs) in cases.iter().enumerate() {
            let mut h = Histogram::new();
            h.add(xs);
            let mut counts: Vec<f64> = h.counts.iter().map(|&c| c as f64).collect();
            counts[0] = counts[1];
            let sums = PrefixSums::of(&counts);
            let total: f64 = counts.iter().sum();
            let (mut p, mut q) = (vec![0f64; NUM_BINS], vec![0f64; NUM_BINS]);
            for i in LEVELS..=NUM_BINS {
                p[..i].copy_from_slice(&counts[..i]);
                p[i - 1] += total - counts[..i].iter().sum::<f64>();
                let want = kl_of_clip(&p[..i], &counts[..i], &mut q[..i]);
                let got = sums.kl_of_clip(&counts, i);
                assert!(
                    (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "case {k}, cut-off {i}: {got} vs {want}"
                );
            }
        }
    }

    /// Cut-offs from ModelOpt's `_compute_amax_entropy` (run in numpy, with scipy's `entropy` written
    /// out) on four closed-form histograms over [0, 8) with no empty bin, where the Q_EPS smoothing never
    /// applies and the two must agree exactly. The grouping this replaced (`i / 128` bins a level, the
    /// remainder in the last; a 1e-4 floor on every normalised q) picked 2047, 2047, 1919 and 1535.
    #[test]
    fn entropy_matches_modelopt() {
        let curve = |f: &dyn Fn(f64) -> f64| -> Vec<u64> {
            (0..NUM_BINS)
                .map(|j| f((j as f64 + 0.5) / 256.0) as u64)
                .collect()
        };
        let cases: [(&str, Vec<u64>, usize); 4] = [
            (
                "laplace",
                curve(&|x| (1e6 * (-x / 0.7).exp()).floor() + 1.0),
                1984,
            ),
            (
                "mixture",
                curve(&|x| {
                    (2e5 * (-x * x / 0.02).exp()).floor() + (3000.0 / (1.0 + x * x)).floor()
                }),
                2048,
            ),
            (
                "relu_like",
                curve(&|x| {
                    (5e5 * (-x * x / 2.0).exp()).floor() + (40.0 * (-x / 3.0).exp()).floor() + 1.0
                }),
                1768,
            ),
            (
                "cauchy",
                curve(&|x| (1e6 / (1.0 + (x / 0.05).powi(2))).floor() + 1.0),
                1408,
            ),
        ];
        for (name, counts, cut) in cases {
            let h = Histogram {
                total: counts.iter().sum(),
                counts,
                range: 8.0,
                max: 8.0,
                widenings: 0,
                non_finite: 0,
            };
            assert_eq!(entropy_amax(&h), h.edge(cut), "{name}: want cut-off {cut}");
        }
    }

    #[test]
    fn kl_by_hand() {
        // 256 bins, so 128 levels of 2 bins. Kept bins: 2 and 1 counts in bins 0 and 1, one in bin 255;
        // P also folds 1 outlier into bin 255. Q: level 0 = bins {0, 1} holds 3 over two non-zero bins
        // -> 1.5 each; level 127 = bins {254, 255} holds 1 over one non-zero bin. P sums to 5, Q to 4.
        let mut kept = vec![0f64; 256];
        kept[0] = 2.0;
        kept[1] = 1.0;
        kept[255] = 1.0;
        let mut p = kept.clone();
        p[255] += 1.0;
        let mut q = vec![0f64; 256];
        let kl = kl_of_clip(&p, &kept, &mut q);
        let (p0, p1, p2, q0, q2) = (0.4f64, 0.2f64, 0.4f64, 0.375f64, 0.25f64);
        let want = p0 * (p0 / q0).ln() + p1 * (p1 / q0).ln() + p2 * (p2 / q2).ln();
        assert!((kl - want).abs() < 1e-12, "{kl} vs {want}");
        assert_eq!((q[0], q[1], q[254], q[255]), (1.5, 1.5, 0.0, 1.0));
        // A P that is already flat inside each group, with nothing clipped, costs nothing.
        let flat = vec![1f64; 256];
        assert_eq!(kl_of_clip(&flat, &flat, &mut q), 0.0);
        // Outliers folded into an empty last bin: Q is 0 there and counts Q_EPS of Q's 255.
        let mut clipped = flat.clone();
        let mut empty_last = flat.clone();
        empty_last[255] = 0.0;
        clipped[255] = 5.0;
        let kl = kl_of_clip(&clipped, &empty_last, &mut q);
        let (pl, ql) = (5.0 / 260.0, Q_EPS / 255.0);
        let rest = 255.0 / 260.0 * ((1.0f64 / 260.0) / (1.0 / 255.0)).ln();
        assert!((kl - (pl * (pl / ql).ln() + rest)).abs() < 1e-12, "{kl}");
    }

    #[test]
    fn per_channel_max_along_an_axis() {
        let w = Tensor::vec_f32(vec![2, 3], vec![1., -5., 2., 0.5, 0.25, -0.75]).unwrap();
        assert_eq!(per_channel_amax(&w, 0).unwrap(), vec![5., 0.75]);
        assert_eq!(per_channel_amax(&w, 1).unwrap(), vec![1., 5., 2.]);
        assert!(per_channel_amax(&w, 2).is_none());
        assert!(per_channel_amax(&Tensor::vec_i64(vec![1]), 0).is_none());
    }
}
