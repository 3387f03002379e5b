//! Winograd F(2×2, 3×3) on x86-64 with AVX2 and FMA: the 16 GEMMs through the direct kernel's
//! 6×16 micro-kernel ([`super::super::avx2`]), the transforms in AVX2 adds.
//!
//! A task is a run of tiles in raster order of one image; its transformed input (all channels)
//! and products stay in its thread's scratch while the 16 GEMMs walk them, each weight panel
//! reused across the task's panels of 16 tiles.

use std::arch::x86_64::*;

use super::super::super::blas::with_scratch;
use super::super::super::par;
use super::super::avx2::{self as packed, aligned, Walk, LINE, MR, NR};
use super::super::Conv2d;
use super::{check_args, weight_transform, XI};

/// Input channels per depth block: a weight panel is then at most 12 KiB, in L1.
const KC: usize = 512;
/// Y = conv(X, W) + B over the input's channel planes (as [`super::conv2d_planes`] takes them),
/// `tiles_per_task` 2×2 output tiles per task.
///
/// # Panics
/// When the CPU lacks AVX2 or FMA, when `g` is not a 3×3 stride-1 undilated ungrouped layer, or
/// when a slice is shorter than `g` says.
pub fn conv2d_planes(
    g: &Conv2d,
    x: &[&[f32]],
    w: &[f32],
    bias: Option<&[f32]>,
    tiles_per_task: usize,
) -> Vec<f32> {
    assert!(
        packed::available(),
        "the Winograd kernel needs AVX2 and FMA"
    );
    check_args(g, x, w, bias);
    let [n, m, oh, ow] = g.output_shape();
    let c = g.in_channels;
    let len = n * m * oh * ow;
    if len == 0 {
        return Vec::new();
    }
    let tiles = oh.div_ceil(2) * ow.div_ceil(2);
    let per = tiles_per_task.clamp(1, tiles);
    // Every output pixel is written by exactly one task's output transform.
    let mut y = crate::exec::recycle::f32_buffer(len);
    let job = Job {
        g,
        x,
        weights: Transformed::pack(g, w, bias),
        blocks: par::split(c, c.div_ceil(KC)),
        tw: ow.div_ceil(2),
        tiles,
        per,
        y: par::SyncPtr::new(&mut y),
    };
    let tasks = n * tiles.div_ceil(per);
    par::for_each(tasks, len * c * 9, |t| job.task(t));
    y
}

/// The weights transformed, as micro-kernel panels `[channel block][ξ][c][MR]` (output channels
/// past M zero), and the bias padded the same way.
struct Transformed {
    data: Vec<f32>,
    start: usize,
    bias: Vec<f32>,
    blocks: usize,
    c: usize,
}

impl Transformed {
    fn pack(g: &Conv2d, w: &[f32], bias: Option<&[f32]>) -> Self {
        let (m, c) = (g.out_channels, g.in_channels);
        let blocks = m.div_ceil(MR);
        let len = blocks * XI * c * MR;
        let mut data = vec![0.0f32; len + LINE];
        let start = data.as_ptr().align_offset(LINE * 4).min(LINE);
        par::chunks_mut(&mut data[start..start + len], XI * c * MR, |at, part| {
            let cb = at / (XI * c * MR);
            for r in 0..MR.min(m - cb * MR) {
                for ch in 0..c {
                    let k: &[f32; 9] = w[((cb * MR + r) * c + ch) * 9..][..9]
                        .try_into()
                        .expect("9 taps");
                    for (xi, u) in weight_transform(k).into_iter().enumerate() {
                        part[(xi * c + ch) * MR + r] = u;
                    }
                }
            }
        });
        let mut padded = vec![0.0f32; blocks * MR];
        if let Some(b) = bias {
            padded[..m].copy_from_slice(&b[..m]);
        }
        Transformed {
            data,
            start,
            bias: padded,
            blocks,
            c,
        }
    }

    /// Channels `c0..c0+kc` of point `xi`'s panel for output channel block `cb`: `[kc][MR]`.
    fn panel(&self, xi: usize, cb: usize, c0: usize, kc: usize) -> &[f32] {
        let at = self.start + ((cb * XI + xi) * self.c + c0) * MR;
        &self.data[at..at + kc * MR]
    }
}

struct Job<'a> {
    g: &'a Conv2d,
    /// The input's channel planes, image-major.
    x: &'a [&'a [f32]],
    weights: Transformed,
    /// Input channels per depth block.
    blocks: Vec<std::ops::Range<usize>>,
    /// Tiles across the output, and in an image.
    tw: usize,
    tiles: usize,
    /// Tiles per task.
    per: usize,
    y: par::SyncPtr<f32>,
}

/// The zero bias the products start from (the layer's own is added after the output transform).
const NO_BIAS: [f32; MR] = [0.0; MR];

impl Job<'_> {
    /// Task `t`: tiles `k0..k0+count` of image `ni` (raster order over the tile grid).
    fn task(&self, t: usize) {
        let per_image = self.tiles.div_ceil(self.per);
        let (ni, k0) = (t / per_image, t % per_image * self.per);
        let count = self.per.min(self.tiles - k0);
        let panels = count.div_ceil(NR);
        let (c, mp) = (self.g.in_channels, self.weights.blocks * MR);
        // One spare line between points: their planes would otherwise often lie a multiple of
        // 4 KiB apart (8 panels of 48 channels: 24 KiB), and the transforms' 16 streams would
        // share a handful of cache sets.
        let v_step = panels * c * NR + LINE;
        let m_step = panels * mp * NR + LINE;
        with_scratch::<f32, _>(XI * (v_step + m_step) + LINE, |buf| {
            let buf = aligned(buf);
            let (v, prod) = buf.split_at_mut(XI * v_step);
            // SAFETY: AVX2 was checked by `conv2d_planes`; `v` holds XI planes of `panels`
            // panels of `c` rows of NR floats, `v_step` apart.
            unsafe { self.transform_input(ni, k0, count, v, v_step) };
            for xi in 0..XI {
                for (bi, chans) in self.blocks.iter().enumerate() {
                    let walk = Walk {
                        rows: chans.len(),
                        stride: NR,
                        step: 0,
                    };
                    for cb in 0..self.weights.blocks {
                        let wp = self.weights.panel(xi, cb, chans.start, chans.len());
                        for p in 0..panels {
                            let a = &v[xi * v_step + (p * c + chans.start) * NR..];
                            let dst = &mut prod[xi * m_step + (p * mp + cb * MR) * NR..][..MR * NR];
                            // SAFETY: AVX2 and FMA were checked; `a` holds the walk's `kc` rows
                            // of NR floats (panel p's channels of this block), `wp` its weights,
                            // and `dst` is a whole MR × NR block of this task's scratch.
                            unsafe {
                                packed::kernel::<1>(
                                    walk,
                                    a[..walk.rows * NR].as_ptr(),
                                    wp.as_ptr(),
                                    &NO_BIAS,
                                    dst.as_mut_ptr(),
                                    NR,
                                    bi == 0,
                                    false,
                                )
                            };
                        }
                    }
                }
            }
            // SAFETY: as above; this task alone writes its tiles' output pixels.
            unsafe { self.transform_output(ni, k0, count, prod, m_step) };
        });
    }

    /// Writes Bᵀ·d·B of every channel's input window for tiles `k0..k0+count` into `v`: point ξ,
    /// tile s (of the task), channel ch at `ξ·step + ((s / NR)·C + ch)·NR + s % NR`. Eight tiles
    /// of a tile row at a time, their four input rows split into even and odd columns.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[target_feature(enable = "avx2")]
    unsafe fn transform_input(
        &self,
        ni: usize,
        k0: usize,
        count: usize,
        v: &mut [f32],
        step: usize,
    ) {
        let g = self.g;
        let c = g.in_channels;
        let (iw, ih) = (g.w.input, g.h.input);
        let x_img = &self.x[ni * c..][..c];
        let mut s = 0;
        while s < count {
            let (ty, tx0) = ((k0 + s) / self.tw, (k0 + s) % self.tw);
            let run = (self.tw - tx0).min(count - s);
            for i in (0..run).step_by(8) {
                let lanes = 8.min(run - i);
                let slot = s + i;
                // Input column of the first tile's window; its 8 tiles read 18 columns from there.
                let col = 2 * (tx0 + i) as isize - g.w.pad_begin as isize;
                let inside = col >= 0 && col + 18 <= iw as isize;
                for (ch, src) in x_img.iter().enumerate() {
                    let mut rows = [[_mm256_setzero_ps(); 4]; 4];
                    for (r, row) in rows.iter_mut().enumerate() {
                        let iy = (2 * ty + r) as isize - g.h.pad_begin as isize;
                        if !(0..ih as isize).contains(&iy) {
                            continue;
                        }
                        let line = &src[iy as usize * iw..][..iw];
                        // Two cache lines ahead: a task reads 4·C rows side by side, more streams
                        // than the hardware prefetchers follow.
                        _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().wrapping_offset(col + 32).cast());
                        let mut edge = [0.0f32; 18];
                        let at = if inside {
                            line[col as usize..][..18].as_ptr()
                        } else {
                            for (j, e) in edge.iter_mut().enumerate() {
                                let ix = col + j as isize;
                                if (0..iw as isize).contains(&ix) {
                                    *e = line[ix as usize];
                                }
                            }
                            edge.as_ptr()
                        };
                        *row = row_transform(at);
                    }
                    let points = column_transform(&rows);
                    let at = (slot / NR * c + ch) * NR + slot % NR;
                    if lanes == 8 && slot % 8 == 0 {
                        for (xi, p) in points.iter().enumerate() {
                            _mm256_storeu_ps(v[xi * step + at..][..8].as_mut_ptr(), *p);
                        }
                    } else {
                        // A run that starts mid-vector or stops short: lane by lane, each to its
                        // own tile's slot.
                        for (xi, p) in points.iter().enumerate() {
                            let mut lane = [0.0f32; 8];
                            _mm256_storeu_ps(lane.as_mut_ptr(), *p);
                            for (l, &val) in lane[..lanes].iter().enumerate() {
                                let t = slot + l;
                                v[xi * step + (t / NR * c + ch) * NR + t % NR] = val;
                            }
                        }
                    }
                }
            }
            s += run;
        }
    }

    /// Aᵀ·M·A plus the bias, Relu'd when the layer has one, for tiles `k0..k0+count`, into the
    /// output: their pixels, every output channel.
    ///
    /// # Safety
    /// AVX2 must be available, and no other task may write these tiles' pixels meanwhile.
    #[target_feature(enable = "avx2")]
    unsafe fn transform_output(
        &self,
        ni: usize,
        k0: usize,
        count: usize,
        prod: &[f32],
        step: usize,
    ) {
        let g = self.g;
        let [_, m, oh, ow] = g.output_shape();
        let mp = self.weights.blocks * MR;
        let p_out = oh * ow;
        let zero = _mm256_setzero_ps();
        for slot in (0..count).step_by(8) {
            let lanes = 8.min(count - slot);
            let (ty, tx) = ((k0 + slot) / self.tw, (k0 + slot) % self.tw);
            // Eight whole tiles side by side: two rows of 16 pixels each.
            let whole = lanes == 8 && tx + 8 <= self.tw && 2 * tx + 16 <= ow && 2 * ty + 2 <= oh;
            let at = (slot / NR * mp) * NR + slot % NR;
            // Bounds checked once here for the last point and channel, not per load: the checks
            // were a quarter of this transform's perf samples.
            assert!(
                (XI - 1) * step + at + (m - 1) * NR + 8 <= prod.len(),
                "products too short"
            );
            let first = prod[at..].as_ptr();
            for co in 0..m {
                let mut pts = [zero; XI];
                let mut q = first.add(co * NR);
                for p in pts.iter_mut() {
                    *p = _mm256_loadu_ps(q);
                    q = q.wrapping_add(step);
                }
                let b = _mm256_set1_ps(self.weights.bias[co]);
                let mut out = output_transform(&pts).map(|v| _mm256_add_ps(v, b));
                if g.relu {
                    // max(0, v) returns its second operand when either is NaN: NaN stays NaN, as
                    // in the direct kernel.
                    out = out.map(|v| _mm256_max_ps(zero, v));
                }
                let plane = self.y.get().add((ni * m + co) * p_out);
                if whole {
                    for (p, pair) in out.chunks_exact(2).enumerate() {
                        let lo = _mm256_unpacklo_ps(pair[0], pair[1]);
                        let hi = _mm256_unpackhi_ps(pair[0], pair[1]);
                        let dst = plane.add((2 * ty + p) * ow + 2 * tx);
                        _mm256_storeu_ps(dst, _mm256_permute2f128_ps::<0x20>(lo, hi));
                        _mm256_storeu_ps(dst.add(8), _mm256_permute2f128_ps::<0x31>(lo, hi));
                    }
                    continue;
                }
                let mut vals = [[0.0f32; 8]; 4];
                for (v, o) in vals.iter_mut().zip(&out) {
                    _mm256_storeu_ps(v.as_mut_ptr(), *o);
                }
                for l in 0..lanes {
                    let (ty, tx) = ((k0 + slot + l) / self.tw, (k0 + slot + l) % self.tw);
                    for (pq, v) in vals.iter().enumerate() {
                        let (oy, ox) = (2 * ty + pq / 2, 2 * tx + pq % 2);
                        if oy < oh && ox < ow {
                            *plane.add(oy * ow + ox) = v[l];
                        }
                    }
                }
            }
        }
    }
}

/// Bᵀ along one input row for eight tiles side by side, whose 18 input columns start at `at`:
/// with E and O the row's even and odd columns, tile i's window is (E[i], O[i], E[i+1], O[i+1])
/// and Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
///
/// # Safety
/// AVX2 must be available and `at` must point at 18 readable floats.
#[target_feature(enable = "avx2")]
unsafe fn row_transform(at: *const f32) -> [__m256; 4] {
    let split = |lo: __m256, hi: __m256| {
        // Within each 128-bit half: lo0 lo2 hi0 hi2 (evens), lo1 lo3 hi1 hi3 (odds); the
        // 64-bit permute then puts the halves' pairs in column order.
        let order = |v: __m256| {
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
        };
        (
            order(_mm256_shuffle_ps::<0b10_00_10_00>(lo, hi)),
            order(_mm256_shuffle_ps::<0b11_01_11_01>(lo, hi)),
        )
    };
    let (e0, o0) = split(_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8)));
    let (e1, o1) = split(_mm256_loadu_ps(at.add(2)), _mm256_loadu_ps(at.add(10)));
    [
        _mm256_sub_ps(e0, e1),
        _mm256_add_ps(o0, e1),
        _mm256_sub_ps(e1, o0),
        _mm256_sub_ps(o0, o1),
    ]
}

/// Bᵀ down the four row-transformed input rows: point ξ = 4·a + b is row a of Bᵀ applied to
/// component b of each row.
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
unsafe fn column_transform(rows: &[[__m256; 4]; 4]) -> [__m256; XI] {
    let mut v = [_mm256_setzero_ps(); XI];
    for b in 0..4 {
        let [r0, r1, r2, r3] = [rows[0][b], rows[1][b], rows[2][b], rows[3][b]];
        v[b] = _mm256_sub_ps(r0, r2);
        v[4 + b] = _mm256_add_ps(r1, r2);
        v[8 + b] = _mm256_sub_ps(r2, r1);
        v[12 + b] = _mm256_sub_ps(r1, r3);
    }
    v
}

/// Aᵀ·M·A for eight tiles, Aᵀ = [1 1 1 0; 0 1 -1 -1]: the 2×2 outputs as (y00, y01, y10, y11).
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
unsafe fn output_transform(m: &[__m256; XI]) -> [__m256; 4] {
    let (add, sub) = (|a, b| _mm256_add_ps(a, b), |a, b| _mm256_sub_ps(a, b));
    // Down the columns: s[p][j] = Σ_i Aᵀ[p][i]·M[i][j].
    let mut s = [[_mm256_setzero_ps(); 4]; 2];
    for j in 0..4 {
        s[0][j] = add(add(m[j], m[4 + j]), m[8 + j]);
        s[1][j] = sub(sub(m[4 + j], m[8 + j]), m[12 + j]);
    }
    let across = |r: &[__m256; 4]| (add(add(r[0], r[1]), r[2]), sub(sub(r[1], r[2]), r[3]));
    let (y00, y01) = across(&s[0]);
    let (y10, y11) = across(&s[1]);
    [y00, y01, y10, y11]
}
