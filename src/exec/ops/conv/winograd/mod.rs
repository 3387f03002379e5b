//! Winograd F(2×2, 3×3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016) for 3×3 convolutions with stride 1 and no dilation: each 2×2 tile of output pixels is 16
//! products of a 4×4 transformed input tile and 4×4 transformed weights, summed over input
//! channels, instead of 36 multiply-adds per channel. Those 3×3 layers were 68% of a W48 forward
//! with the direct kernel, which ran them near the FMA units' peak.
//!
//! ```text
//! U[ξ][m][c] = (G · w[m][c] · Gᵀ)[ξ]        once per call
//! V[ξ][c][t] = (Bᵀ · d[c][t] · B)[ξ]        per task: d = the tile's 4×4 input window
//! M[ξ][m][t] = Σ_c U[ξ][m][c] · V[ξ][c][t]  16 GEMMs
//! y[m][t]    = Aᵀ · M[·][m][t] · A + bias    per task, Relu'd when the layer has one
//! ```
//!
//! Two implementations of the same plan, one per route of [`super::f32_kernels`]: [`avx2`] (x86-64
//! with AVX2 and FMA but no AVX-512: the direct kernel's micro-kernel, AVX2 transforms) and
//! [`portable`] (the Jetson's CPU fallback and AVX-512 CPUs: the `gemm` crate, transforms in plain
//! loops the compiler vectorises).
//!
//! Numbers: the transforms use only ±1 and ½, so the error stays within about twice the direct
//! kernel's (relative L2 2–7e-7 against 1–3e-7 on 48–720 channels, against float64). F(4×4, 3×3)
//! would do 4× fewer multiplications instead of 2.25×, but its ¼, ⅙ and 1/24 coefficients give
//! 1–4e-6 a layer, which HRNet's depth compounds towards the 1e-5 the executor is held to.

#[cfg(target_arch = "x86_64")]
pub mod avx2;

use super::super::blas::{gemm, with_scratch, MatRef};
use super::super::par::{self, SyncPtr};
use super::Conv2d;

/// Transform points: a 4×4 input window per 2×2 output tile.
const XI: usize = 16;
/// Fewer channels than this on either side leave too little product to pay for the transforms.
const MIN_CHANNELS: usize = 16;
/// Tiles per task, at most: 512 output pixels, as the direct kernel's widest tile and for the
/// same reason (each task reads all the weights once).
const TASK_TILES: usize = 128;

/// Whether the executor computes `g` this way: a 3×3 window with unit strides and dilations,
/// no groups and enough channels.
pub fn applies(g: &Conv2d) -> bool {
    fits(g) && g.in_channels >= MIN_CHANNELS && g.out_channels >= MIN_CHANNELS
}

/// The geometry this kernel computes at all.
fn fits(g: &Conv2d) -> bool {
    g.groups == 1
        && [g.h, g.w]
            .iter()
            .all(|a| a.kernel == 3 && a.stride == 1 && a.dilation == 1)
}

/// Tiles per task for `g` in [`avx2`]: [`TASK_TILES`], halved while the pool would get fewer
/// than 4 tasks a thread.
pub fn default_tiles(g: &Conv2d) -> usize {
    split(g, 4, 16)
}

/// Tiles per task for `g` in [`portable`]: as [`default_tiles`], but 1 task a thread and never
/// under 32 tiles. The `gemm` crate reads all of U per call, so every task reads all the
/// transformed weights (9.4 MB at 384→384), and a narrow product is their bandwidth. 3×3
/// 384→384 at 16×32 (128 tiles), 2 threads, on chains of layers (`cargo bench --bench kernels --
/// chain`): 64 tiles a task took 10–15% less time than 32 in 6 runs out of 6; 16 tiles was 25–35%
/// slower than 32, and 128 (one thread idle) 50% slower. Only layers with few tiles change: the
/// others keep [`TASK_TILES`].
pub fn portable_tiles(g: &Conv2d) -> usize {
    split(g, 1, 32)
}

/// [`TASK_TILES`] tiles a task, halved (not under `floor`) while the pool would get fewer than
/// `per_thread` tasks a thread.
fn split(g: &Conv2d, per_thread: usize, floor: usize) -> usize {
    let tiles = g.h.output.div_ceil(2) * g.w.output.div_ceil(2);
    let want = per_thread * rayon::current_num_threads();
    let mut per = TASK_TILES;
    while per > floor && g.batch * tiles.div_ceil(per) < want {
        per /= 2;
    }
    per.min(tiles.max(1))
}

/// G·k·Gᵀ for a 3×3 kernel `k` (row-major), in float64 (then rounded once): the 4×4 result
/// row-major, point ξ = 4·row + column.
fn weight_transform(k: &[f32; 9]) -> [f32; XI] {
    // G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1] applied to three values.
    let g = |a: f64, b: f64, c: f64| [a, (a + b + c) / 2.0, (a - b + c) / 2.0, c];
    let col = |j: usize| g(k[j] as f64, k[3 + j] as f64, k[6 + j] as f64);
    let cols = [col(0), col(1), col(2)];
    let mut u = [0.0f32; XI];
    for (row, out) in u.chunks_exact_mut(4).enumerate() {
        for (v, o) in g(cols[0][row], cols[1][row], cols[2][row])
            .into_iter()
            .zip(out)
        {
            *o = v as f32;
        }
    }
    u
}

/// Checks the slices against `g` (as the direct kernels do).
fn check_args(g: &Conv2d, x: &[&[f32]], w: &[f32], bias: Option<&[f32]>) {
    assert!(
        fits(g),
        "Winograd F(2x2, 3x3) needs a 3x3 stride-1 window: {g:?}"
    );
    let (n, m, c) = (g.batch, g.out_channels, g.in_channels);
    let plane = g.h.input * g.w.input;
    assert!(
        x.len() >= n * c && x.iter().all(|p| p.len() >= plane),
        "input too short"
    );
    assert!(w.len() >= m * c * 9, "weights too short");
    assert!(bias.is_none_or(|b| b.len() >= m), "bias too short");
}

/// Y = conv(X, W) + B over the input's channel planes (as [`super::conv2d_planes`] takes them),
/// `tiles_per_task` 2×2 output tiles per task, on any CPU: one `gemm`-crate call per point and
/// task (`[M × C] · [C × tiles]`).
///
/// # Panics
/// When `g` is not a 3×3 stride-1 undilated ungrouped layer, or a slice is shorter than `g` says.
pub fn portable(
    g: &Conv2d,
    x: &[&[f32]],
    w: &[f32],
    bias: Option<&[f32]>,
    tiles_per_task: usize,
) -> Vec<f32> {
    check_args(g, x, w, bias);
    let [n, m, oh, ow] = g.output_shape();
    let c = g.in_channels;
    let len = n * m * oh * ow;
    if len == 0 {
        return Vec::new();
    }
    let tw = ow.div_ceil(2);
    let tiles = oh.div_ceil(2) * tw;
    let per = tiles_per_task.clamp(1, tiles);
    // U as [m][ξ][c]: point ξ's matrix is rows XI·C apart.
    let mut u = vec![0.0f32; m * XI * c];
    par::chunks_mut(&mut u, XI * c, |at, part| {
        let mi = at / (XI * c);
        for ch in 0..c {
            let k: &[f32; 9] = w[(mi * c + ch) * 9..][..9].try_into().expect("9 taps");
            for (xi, v) in weight_transform(k).into_iter().enumerate() {
                part[xi * c + ch] = v;
            }
        }
    });
    // Every output pixel is written by exactly one task's output transform.
    let mut y = crate::exec::recycle::f32_buffer(len);
    let yp = SyncPtr::new(&mut y);
    let per_image = tiles.div_ceil(per);
    par::for_each(n * per_image, len * c * 9, |t| {
        let (ni, k0) = (t / per_image, t % per_image * per);
        let count = per.min(tiles - k0);
        let task = Task { g, tw, k0, count };
        with_scratch::<f32, _>(XI * (c + m) * count, |buf| {
            let (v, prod) = buf.split_at_mut(XI * c * count);
            task.transform_input(&x[ni * c..][..c], v);
            for xi in 0..XI {
                // SAFETY: `prod` holds XI matrices M × count and `v` XI matrices C × count, both
                // row-major; U's rows for point ξ start at xi·C, XI·C apart; `prod` is this
                // task's own scratch.
                unsafe {
                    gemm(
                        m,
                        count,
                        c,
                        prod[xi * m * count..].as_mut_ptr(),
                        count,
                        1,
                        false,
                        MatRef::new(u[xi * c..].as_ptr(), XI * c, 1),
                        MatRef::new(v[xi * c * count..].as_ptr(), count, 1),
                        1.0,
                    )
                };
            }
            // SAFETY: this task alone writes its tiles' pixels of image ni.
            let out = unsafe { yp.get().add(ni * m * oh * ow) };
            task.transform_output(prod, bias, out);
        });
    });
    y
}

/// One task of [`portable`]: tiles `k0..k0+count` (raster order over a grid `tw` tiles wide).
struct Task<'a> {
    g: &'a Conv2d,
    tw: usize,
    k0: usize,
    count: usize,
}

impl Task<'_> {
    /// The task's tiles as runs along tile rows: (tile row, first tile column, first slot, length).
    fn runs(&self) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        let mut s = 0;
        std::iter::from_fn(move || {
            (s < self.count).then(|| {
                let (ty, tx0) = ((self.k0 + s) / self.tw, (self.k0 + s) % self.tw);
                let run = (self.tw - tx0).min(self.count - s);
                s += run;
                (ty, tx0, s - run, run)
            })
        })
    }

    /// Bᵀ·d·B of every channel's window into `v` as `[ξ][c][slot]`. Per run and channel, each of the
    /// window's four input rows is split into even and odd columns (tile i's window row is then
    /// E[i], O[i], E[i+1], O[i+1]), so every step below is a loop along the run.
    fn transform_input(&self, x_img: &[&[f32]], v: &mut [f32]) {
        let (g, count) = (self.g, self.count);
        let (iw, ih, c) = (g.w.input, g.h.input, x_img.len());
        for (ty, tx0, s, run) in self.runs() {
            let mut eo = vec![0.0f32; 8 * (run + 1)];
            let mut rt = vec![0.0f32; 16 * run];
            for (ch, src) in x_img.iter().enumerate() {
                for (r, (e, o)) in eo
                    .chunks_exact_mut(2 * (run + 1))
                    .map(|b| b.split_at_mut(run + 1))
                    .enumerate()
                {
                    let iy = (2 * ty + r) as isize - g.h.pad_begin as isize;
                    if !(0..ih as isize).contains(&iy) {
                        e.fill(0.0);
                        o.fill(0.0);
                        continue;
                    }
                    let line = &src[iy as usize * iw..][..iw];
                    // Window i reads columns col0 + 2i and col0 + 2i + 1 (as E[i], O[i]): a copy
                    // where both are inside the row, zero-or-value checks at its two ends only.
                    let col0 = 2 * tx0 as isize - g.w.pad_begin as isize;
                    let lo = ((-col0).max(0) as usize).div_ceil(2).min(run + 1);
                    let hi = ((iw as isize - col0).max(0) as usize / 2).clamp(lo, run + 1);
                    let at = |ix: isize| {
                        if (0..iw as isize).contains(&ix) {
                            line[ix as usize]
                        } else {
                            0.0
                        }
                    };
                    for i in (0..lo).chain(hi..run + 1) {
                        let ix = col0 + 2 * i as isize;
                        (e[i], o[i]) = (at(ix), at(ix + 1));
                    }
                    let inner = &line[(col0 + 2 * lo as isize).max(0) as usize..][..2 * (hi - lo)];
                    for (pair, (e, o)) in inner
                        .chunks_exact(2)
                        .zip(e[lo..hi].iter_mut().zip(o[lo..hi].iter_mut()))
                    {
                        (*e, *o) = (pair[0], pair[1]);
                    }
                    // Bᵀ along the row: rt[r][b] for b in 0..4.
                    let rows = &mut rt[4 * r * run..][..4 * run];
                    let (e0, e1, o0, o1) = (&e[..run], &e[1..], &o[..run], &o[1..]);
                    let (b0, rest) = rows.split_at_mut(run);
                    let (b1, rest) = rest.split_at_mut(run);
                    let (b2, b3) = rest.split_at_mut(run);
                    for i in 0..run {
                        b0[i] = e0[i] - e1[i];
                        b1[i] = o0[i] + e1[i];
                        b2[i] = e1[i] - o0[i];
                        b3[i] = o0[i] - o1[i];
                    }
                }
                // Bᵀ down the rows: point 4a + b from component b of rows 0..4.
                let comp = |r: usize, b: usize| &rt[(4 * r + b) * run..][..run];
                for b in 0..4 {
                    let (r0, r1, r2, r3) = (comp(0, b), comp(1, b), comp(2, b), comp(3, b));
                    let at = |a: usize| ((4 * a + b) * c + ch) * count + s;
                    for (o, (p, q)) in v[at(0)..][..run].iter_mut().zip(r0.iter().zip(r2)) {
                        *o = p - q;
                    }
                    for (o, (p, q)) in v[at(1)..][..run].iter_mut().zip(r1.iter().zip(r2)) {
                        *o = p + q;
                    }
                    for (o, (p, q)) in v[at(2)..][..run].iter_mut().zip(r2.iter().zip(r1)) {
                        *o = p - q;
                    }
                    for (o, (p, q)) in v[at(3)..][..run].iter_mut().zip(r1.iter().zip(r3)) {
                        *o = p - q;
                    }
                }
            }
        }
    }

    /// Aᵀ·M·A plus the bias, Relu'd when the layer has one, for every output channel, into image
    /// `out`'s planes.
    ///
    /// # Safety (of the caller's pointer)
    /// `out` must point at one image's output, written by no other task at these tiles' pixels.
    fn transform_output(&self, prod: &[f32], bias: Option<&[f32]>, out: *mut f32) {
        let g = self.g;
        let [_, m, oh, ow] = g.output_shape();
        let count = self.count;
        let act = |v: f32| if g.relu && v < 0.0 { 0.0 } else { v };
        for (ty, tx0, s, run) in self.runs() {
            let mut ys = vec![0.0f32; 4 * run];
            for co in 0..m {
                let pts: [&[f32]; XI] =
                    std::array::from_fn(|xi| &prod[(xi * m + co) * count + s..][..run]);
                let b = bias.map_or(0.0, |b| b[co]);
                // Aᵀ = [1 1 1 0; 0 1 -1 -1] down, then across, each a loop along the run.
                let (y0, rest) = ys.split_at_mut(run);
                let (y1, rest) = rest.split_at_mut(run);
                let (y2, y3) = rest.split_at_mut(run);
                for i in 0..run {
                    let s0 = |j: usize| pts[j][i] + pts[4 + j][i] + pts[8 + j][i];
                    let s1 = |j: usize| pts[4 + j][i] - pts[8 + j][i] - pts[12 + j][i];
                    let (a0, a1, a2, a3) = (s0(0), s0(1), s0(2), s0(3));
                    let (c0, c1, c2, c3) = (s1(0), s1(1), s1(2), s1(3));
                    y0[i] = act(a0 + a1 + a2 + b);
                    y1[i] = act(a1 - a2 - a3 + b);
                    y2[i] = act(c0 + c1 + c2 + b);
                    y3[i] = act(c1 - c2 - c3 + b);
                }
                for (p, (left, right)) in [(y0, y1), (y2, y3)].into_iter().enumerate() {
                    let oy = 2 * ty + p;
                    if oy >= oh {
                        continue;
                    }
                    // The run's pixels on this output row: 2·run of them, less one when the last
                    // tile's right column falls past the edge.
                    let first = 2 * tx0;
                    let width = (2 * run).min(ow - first);
                    // SAFETY: pixels first..first+width of row oy of channel co lie in this
                    // image's output, and only this task writes them.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(out.add((co * oh + oy) * ow + first), width)
                    };
                    for (pair, (l, r)) in dst.chunks_mut(2).zip(left.iter().zip(right.iter())) {
                        pair[0] = *l;
                        if let Some(second) = pair.get_mut(1) {
                            *second = *r;
                        }
                    }
                }
            }
        }
    }
}
