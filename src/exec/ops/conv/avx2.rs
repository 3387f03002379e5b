//! The f32 convolution on x86-64 with AVX2 and FMA: the input packed straight into a
//! register-blocked micro-kernel's layout. Same orientation as [`super::kernel`] (pixels
//! vectorised, output channels broadcast, NCHW output written in place) and same tasks (one per
//! tile of output pixels); what changes is the product inside a tile.
//!
//! Two packings ([`Packing`]), one micro-kernel that walks either:
//! - **Rows**, for stride 1 along the width with 1 or 3 taps across (the 3×3 stride-1 layers
//!   that [`super::winograd`] does not take: dilated, grouped or narrow): per segment of the tile on one output row, the input rows its taps read,
//!   `[channel][ky][row]`; tap (ky, kx) of pixel j is element `j + kx·dilation` of row ky. A 3×3
//!   layer packs a third of what im2col copies: on W48 its 48/96/192-channel layers went from
//!   92–115 to 107–129 GFLOP/s (2 threads, alternating runs).
//! - **im2col** panels of 16 output pixels, `[panel][depth][16]`, for the rest (pointwise and
//!   strided layers): an interior panel's depth row is one 64-byte copy at stride 1, an unchecked
//!   gather at stride 2.
//!
//! The weights are packed once per call, in depth blocks of at most [`KC`] rows (whole input
//! channels for row packing):
//!
//! ```text
//! for each depth block kb:
//!     A = the tile's packed input for kb
//!     for each block of 6 output channels:            W panel [kc][6], in L1
//!         for each 16 pixels of the tile:             their A, streamed from L2
//!             Y[6][16] (+)= W panelᵀ · A
//! ```
//!
//! That loop order and a depth block of 512 were measured on W48 (2 threads, one run of each in
//! turn): 6.8–7.3 s a forward, against 8.2–8.8 s with the panels outside the channel blocks
//! (BLIS's order, the A panel kept in L1) and 7.0–7.9 s with blocks of 256. Row packing had
//! swapped the order back by accident; restoring it (alternating W48 runs) took the pointwise
//! layers from 44–101 to 56–113 GFLOP/s and the forward from 6.5–8.0 to 6.2–7.0 s.
//!
//! The 6×16 block is 12 ymm accumulators fed per depth step by two loads of A and six broadcasts
//! of W: the FMA units, not the loads, set the pace. Reading the input in place instead of packing
//! it was tried and was 1.2–2.5× slower: a panel's depth rows then sit one input plane apart (a
//! power-of-two stride at HRNet's sizes), which thrashes the caches' sets and the TLB.
//!
//! Tried on the Zen 4 machine (2 threads, alternating runs) and not kept:
//! - The same block as 6 zmm rows of 16 (AVX-512), or 6 × 32 over two panels: within the noise of
//!   this kernel (Zen 4 splits a 512-bit FMA in two, so the peak is the same). On a CPU with two
//!   512-bit FMA units (Emerald Rapids, 2026-12-03) the `gemm` crate's AVX-512 kernels took W48
//!   from 4.1–4.5 s to 2.9–3.3 s, so [`super::f32_kernels`] sends every AVX-512 CPU there and
//!   this kernel serves AVX2-only ones.
//! - Skipping the packing altogether (wrong numbers, to bound what packing costs): 3×3 layers 5–15%
//!   faster in the kernel bench. Packing the whole input once per call, `[image][row][channel]`,
//!   instead of per tile (each input row copied once instead of three times, and a tile's rows no
//!   longer in one cache set): W48 forward 3.83–4.28 s against 3.71–4.37 s, and 40 MB more peak.
//!
//! Not available elsewhere: [`super::kernel`]'s `gemm`-crate path is the portable twin (NEON on
//! the Jetson, AVX-512 where the CPU has it), and the tests run both on the same cases. The executor sends 3×3 stride-1 layers
//! to [`super::winograd::avx2`] instead, which runs its products through this micro-kernel.

use std::arch::x86_64::*;

use super::super::blas::with_scratch;
use super::super::par;
use super::super::window::Axis;
use super::kernel::is_pointwise;
use super::Conv2d;

/// Output channels per micro-kernel call (broadcast).
pub(super) const MR: usize = 6;
/// Output pixels per micro-kernel call (two vectors of 8).
pub(super) const NR: usize = 16;
/// The most depth rows per block: a W panel is then at most 12 KiB, an A panel 32 KiB.
const KC: usize = 512;

/// Floats per 64-byte cache line, the alignment of packed buffers.
pub(super) const LINE: usize = 16;

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// Pixels per task for `g`: 256, a row of W48's widest layers, halved while the pool would get
/// fewer than 4 tasks a thread. From `cargo bench --bench kernels -- sweep` with row packing
/// (2 threads, GFLOP/s at 128 / 256 / 1024 pixels): 3×3 48→48 126 / 138 / 132, 96→96 131 / 148 /
/// 144, 720→512 134 / 120 / 123 — within this machine's run-to-run noise of each other for the
/// wide layer, where a tile's packed rows (183 KiB at 256) still fit the 512 KiB L2.
pub fn default_tile(g: &Conv2d) -> usize {
    let p = g.h.output * g.w.output;
    let mut tile = 256;
    let want = 4 * rayon::current_num_threads();
    while tile > 4 * NR && g.batch * g.groups * p.div_ceil(tile) < want {
        tile /= 2;
    }
    tile.min(p.max(1))
}

/// Y = conv(X, W) + B, as [`super::conv2d_with_tile`], through the AVX2 micro-kernel.
///
/// # Panics
/// When the CPU lacks AVX2 or FMA ([`available`]), or a slice is shorter than `g` says.
pub fn conv2d(g: &Conv2d, x: &[f32], w: &[f32], bias: Option<&[f32]>, tile: usize) -> Vec<f32> {
    conv2d_planes(g, &super::kernel::planes(g, x), w, bias, tile)
}

/// [`conv2d`] over the input's channel planes, as [`super::conv2d_planes`] takes them: packing
/// copies each tile's input out of its planes wherever they lie.
///
/// # Panics
/// As [`conv2d`], and when there are fewer planes, or shorter ones, than `g` says.
pub fn conv2d_planes(
    g: &Conv2d,
    x: &[&[f32]],
    w: &[f32],
    bias: Option<&[f32]>,
    tile: usize,
) -> Vec<f32> {
    assert!(available(), "the AVX2 convolution needs AVX2 and FMA");
    let [n, m, oh, ow] = g.output_shape();
    let p_out = oh * ow;
    let plane = g.h.input * g.w.input;
    let k = g.depth();
    assert!(
        x.len() >= n * g.in_channels && x.iter().all(|p| p.len() >= plane),
        "input too short"
    );
    assert!(w.len() >= m * k, "weights too short");
    assert!(bias.is_none_or(|b| b.len() >= m), "bias too short");
    let len = n * m * p_out;
    if len == 0 {
        return Vec::new();
    }
    // A pointwise layer is one long row: no border inside it.
    let geom = if is_pointwise(g) {
        Conv2d {
            h: Axis::unit(1),
            w: Axis::unit(plane),
            ..*g
        }
    } else {
        *g
    };
    let g = &geom;
    // Every element is stored by the first depth block's micro-kernel calls before anything
    // reads it: a recycled buffer's old contents do no harm.
    let mut y = crate::exec::recycle::f32_buffer(len);
    let packing = packing(g);
    // Depth blocks of at most KC rows: whole input channels for row packing.
    let blocks = match packing {
        Packing::Rows(kw) => {
            let cg = g.in_channels / g.groups;
            par::split(cg, cg.div_ceil((KC / (g.h.kernel * kw)).max(1)))
        }
        Packing::Im2col => par::split(k, k.div_ceil(KC)),
    };
    let job = Job {
        g,
        x,
        weights: Weights::pack(g, w, bias),
        widest: blocks.iter().map(|b| b.len()).max().unwrap_or(0),
        blocks,
        tile: tile.clamp(1, p_out),
        p_out,
        y: par::SyncPtr::new(&mut y),
    };
    let tasks = n * g.groups * p_out.div_ceil(job.tile);
    match packing {
        Packing::Rows(1) => par::for_each(tasks, len * k, |t| job.rows::<1>(t)),
        Packing::Rows(3) => par::for_each(tasks, len * k, |t| job.rows::<3>(t)),
        Packing::Rows(kw) => unreachable!("packing() gives rows for 1 or 3 taps across, not {kw}"),
        Packing::Im2col => par::for_each(tasks, len * k, |t| job.im2col(t)),
    }
    y
}

/// How a tile's input is laid out for the micro-kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packing {
    /// im2col rows, `[panel][depth][NR]`: one copy of the input per tap.
    Im2col,
    /// The input rows the taps read, `[segment][channel][ky][row]`, each tap across (this many) a
    /// shifted read of its row: a 3×3 layer packs a third of what im2col copies. For stride 1
    /// along the width.
    Rows(usize),
}

fn packing(g: &Conv2d) -> Packing {
    match g.w.kernel {
        kw @ (1 | 3) if g.w.stride == 1 && !is_pointwise(g) => Packing::Rows(kw),
        _ => Packing::Im2col,
    }
}

/// One call's shared state: every task computes one tile of output pixels of one image and group.
struct Job<'a> {
    g: &'a Conv2d,
    /// The input's channel planes, image-major.
    x: &'a [&'a [f32]],
    weights: Weights,
    /// Depth rows (im2col) or input channels (row packing) per block, and the most in one.
    blocks: Vec<std::ops::Range<usize>>,
    widest: usize,
    tile: usize,
    p_out: usize,
    y: par::SyncPtr<f32>,
}

impl Job<'_> {
    /// Image, group, first pixel and pixel count of task `t`.
    fn task(&self, t: usize) -> (usize, usize, usize, usize) {
        let (groups, tiles) = (self.g.groups, self.p_out.div_ceil(self.tile));
        let p0 = t % tiles * self.tile;
        (
            t / (groups * tiles),
            t / tiles % groups,
            p0,
            self.tile.min(self.p_out - p0),
        )
    }

    /// The planes of group `gi`'s input channels of image `ni`.
    fn input(&self, ni: usize, gi: usize) -> &[&[f32]] {
        let g = self.g;
        let cg = g.in_channels / g.groups;
        &self.x[ni * g.in_channels + gi * cg..][..cg]
    }

    /// Task `t` through im2col panels, in depth blocks of at most [`KC`] rows.
    fn im2col(&self, t: usize) {
        let g = self.g;
        let (ni, gi, p0, pt) = self.task(t);
        let blocks = &self.blocks;
        let x_img = self.input(ni, gi);
        let panels = panels(g, p0, pt);
        with_scratch::<f32, _>(panels.len() * NR * self.widest + LINE, |buf| {
            let a = aligned(buf);
            for (bi, kb) in blocks.iter().enumerate() {
                let kc = kb.len();
                // SAFETY: AVX2 was checked by `conv2d`.
                unsafe {
                    pack(
                        g,
                        x_img,
                        &panels,
                        kb.clone(),
                        &mut a[..panels.len() * NR * kc],
                    )
                };
                let walk = Walk {
                    rows: kc,
                    stride: NR,
                    step: 0,
                };
                let cols: Vec<Cols> = panels
                    .iter()
                    .enumerate()
                    .map(|(i, panel)| Cols {
                        at: i * NR * kc,
                        first: panel.first,
                        len: panel.len,
                    })
                    .collect();
                let last = bi + 1 == blocks.len();
                self.store::<1>(ni, gi, kb.start, walk, a, &cols, bi == 0, last);
            }
        });
    }

    /// Task `t` through packed input rows ([`Packing::Rows`] with `KW` taps across), in blocks
    /// of whole channels of at most [`KC`] depth rows.
    fn rows<const KW: usize>(&self, t: usize) {
        let g = self.g;
        let (ni, gi, p0, pt) = self.task(t);
        let (kh, taps, blocks) = (g.h.kernel, g.h.kernel * KW, &self.blocks);
        let x_img = self.input(ni, gi);
        let segs = segments(g, p0, pt);
        let longest = segs.iter().map(|s| s.len).max().unwrap_or(0);
        // Room for the last panel's full 16 columns and its taps' reach, in whole cache lines so
        // that the first tap's loads are aligned.
        let row = (longest.next_multiple_of(NR) + (KW - 1) * g.w.dilation).next_multiple_of(LINE);
        with_scratch::<f32, _>(segs.len() * self.widest * kh * row + LINE, |buf| {
            let a = aligned(buf);
            for (bi, chans) in blocks.iter().enumerate() {
                let seg_len = chans.len() * kh * row;
                let a = &mut a[..segs.len() * seg_len];
                pack_rows(g, x_img, &segs, chans.clone(), row, a);
                let walk = Walk {
                    rows: chans.len() * kh,
                    stride: row,
                    step: g.w.dilation,
                };
                let (last, k0) = (bi + 1 == blocks.len(), chans.start * taps);
                let cols: Vec<Cols> = segs
                    .iter()
                    .enumerate()
                    .flat_map(|(i, seg)| {
                        (0..seg.len).step_by(NR).map(move |j| Cols {
                            at: i * seg_len + j,
                            first: seg.first + j,
                            len: NR.min(seg.len - j),
                        })
                    })
                    .collect();
                self.store::<KW>(ni, gi, k0, walk, a, &cols, bi == 0, last);
            }
        });
    }

    /// Each of `cols`' pixel runs, for every output channel of group `gi`, image `ni`, over depth
    /// rows `k0..` that `walk` reads from `a` at the run's offset: from the bias on the `first`
    /// block, Relu'd on the `last` when the layer has one. Channel blocks outside, runs inside:
    /// a block's weight panel stays in L1 while the tile's packed input streams from L2, and each
    /// block's output rows are written in order (rows one output plane apart, a power-of-two
    /// stride at HRNet's sizes).
    #[allow(clippy::too_many_arguments)]
    fn store<const KW: usize>(
        &self,
        ni: usize,
        gi: usize,
        k0: usize,
        walk: Walk,
        a: &[f32],
        cols: &[Cols],
        first: bool,
        last: bool,
    ) {
        let g = self.g;
        let (m, mg) = (g.out_channels, g.out_channels / g.groups);
        let reach = walk.reach::<KW>();
        assert!(
            cols.iter().all(|c| a.len() >= c.at + reach && c.len <= NR),
            "packed input too short"
        );
        let one = |cb: usize, c: &Cols| {
            let rows = MR.min(mg - cb * MR);
            let wp = self.weights.panel(gi, cb, k0, walk.rows * KW);
            let bp = self.weights.bias(gi, cb);
            // SAFETY: AVX2 and FMA were checked by `conv2d`; `a[c.at..]` holds what `walk` reads
            // (checked above) and `wp` its weights; this task alone writes pixels
            // `c.first..+c.len` of image ni's output channels of group gi, and `dst + r·P + j`
            // for r < rows, j < c.len lies in them.
            unsafe {
                let dst = self
                    .y
                    .get()
                    .add((ni * m + gi * mg + cb * MR) * self.p_out + c.first);
                block::<KW>(
                    walk,
                    &a[c.at..],
                    wp,
                    bp,
                    dst,
                    self.p_out,
                    rows,
                    c.len,
                    first,
                    last && g.relu,
                );
            }
        };
        for cb in 0..mg.div_ceil(MR) {
            for c in cols {
                one(cb, c);
            }
        }
    }
}

/// Up to [`NR`] output pixels on one output row, from pixel `first`, whose packed input starts
/// `at` floats into a tile's buffer.
struct Cols {
    at: usize,
    first: usize,
    len: usize,
}

/// The part of `buf` from its first 64-byte boundary on.
pub(super) fn aligned(buf: &mut [f32]) -> &mut [f32] {
    let off = buf.as_ptr().align_offset(LINE * 4).min(buf.len());
    &mut buf[off..]
}

/// Up to 16 output pixels on one output row: `len` from pixel `first` (row `oy`, column `ox`).
/// An interior panel is a full one whose every tap reads inside the input: 16 floats of one input
/// row, consecutive at stride 1.
struct Panel {
    first: usize,
    len: usize,
    oy: usize,
    ox: usize,
    interior: bool,
}

/// Pixels `p0..p0+pt` as panels that never straddle an output row.
fn panels(g: &Conv2d, p0: usize, pt: usize) -> Vec<Panel> {
    let (h, w) = (&g.h, &g.w);
    let inside_rows = |oy: usize| h.at(oy, 0) >= 0 && h.at(oy, h.kernel - 1) < h.input as isize;
    let inside_cols =
        |ox: usize| w.at(ox, 0) >= 0 && w.at(ox + NR - 1, w.kernel - 1) < w.input as isize;
    let mut out = Vec::with_capacity(pt.div_ceil(NR) + 2);
    let mut p = p0;
    while p < p0 + pt {
        let (oy, ox) = (p / w.output, p % w.output);
        let len = NR.min(w.output - ox).min(p0 + pt - p);
        let interior = len == NR && inside_rows(oy) && inside_cols(ox);
        out.push(Panel {
            first: p,
            len,
            oy,
            ox,
            interior,
        });
        p += len;
    }
    out
}

/// Writes depth rows `ks` of each panel's im2col block into `a` as `[panel][kc][NR]`: the input
/// value each tap reads, zero in the padding; columns past a panel's length are left as they were
/// (the micro-kernel computes them, nobody stores them). Depth row by depth row, so the input is
/// read along its rows; an interior panel's row is one 64-byte copy.
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
unsafe fn pack(
    g: &Conv2d,
    x_img: &[&[f32]],
    panels: &[Panel],
    ks: std::ops::Range<usize>,
    a: &mut [f32],
) {
    let (h, w) = (&g.h, &g.w);
    let (taps, plane) = (h.kernel * w.kernel, h.input * w.input);
    let kc = ks.len();
    for (kk, k) in ks.enumerate() {
        let (c, ky, kx) = (k / taps, k % taps / w.kernel, k % w.kernel);
        let src = &x_img[c][..plane];
        for (pb, panel) in panels.iter().enumerate() {
            let out: &mut [f32; NR] = (&mut a[(pb * kc + kk) * NR..][..NR])
                .try_into()
                .expect("NR");
            let iy = h.at(panel.oy, ky);
            if panel.interior {
                let at = iy as usize * w.input + w.at(panel.ox, kx) as usize;
                if w.stride == 1 {
                    *out = src[at..at + NR].try_into().expect("NR");
                } else {
                    // Strided (HRNet's stride-2 layers): every tap is inside the row, so no
                    // checks; with a check per tap, these panels were a third of the packing.
                    let run = &src[at..at + (NR - 1) * w.stride + 1];
                    for (j, v) in out.iter_mut().enumerate() {
                        *v = run[j * w.stride];
                    }
                }
                continue;
            }
            if !(0..h.input as isize).contains(&iy) {
                *out = [0.0; NR];
                continue;
            }
            let line = &src[iy as usize * w.input..][..w.input];
            let ix0 = w.at(panel.ox, kx);
            for (j, v) in out[..panel.len].iter_mut().enumerate() {
                let ix = ix0 + (j * w.stride) as isize;
                *v = if (0..w.input as isize).contains(&ix) {
                    line[ix as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

/// Up to a row of output pixels: `len` from pixel `first` (row `oy`, column `ox`).
struct Segment {
    first: usize,
    len: usize,
    oy: usize,
    ox: usize,
}

/// Pixels `p0..p0+pt` as one segment per output row they touch.
fn segments(g: &Conv2d, p0: usize, pt: usize) -> Vec<Segment> {
    let ow = g.w.output;
    let mut out = Vec::with_capacity(pt / ow.max(1) + 2);
    let mut p = p0;
    while p < p0 + pt {
        let (oy, ox) = (p / ow, p % ow);
        let len = (ow - ox).min(p0 + pt - p);
        out.push(Segment {
            first: p,
            len,
            oy,
            ox,
        });
        p += len;
    }
    out
}

/// Writes, for each segment, input channels `chans` as `[channel][ky][row]` into `a`: row ky of a
/// segment on output row oy is input row `h.at(oy, ky)` from column `w.at(ox, 0)` on, `row`
/// floats of it, zero in the padding. Tap (ky, kx) of the segment's pixel j is then element
/// `j + kx·dilation` of row ky (stride 1 along the width).
fn pack_rows(
    g: &Conv2d,
    x_img: &[&[f32]],
    segs: &[Segment],
    chans: std::ops::Range<usize>,
    row: usize,
    a: &mut [f32],
) {
    let (h, w) = (&g.h, &g.w);
    let plane = h.input * w.input;
    let mut rows = a.chunks_exact_mut(row);
    for seg in segs {
        let ix0 = w.at(seg.ox, 0);
        // The part of [ix0, ix0 + row) inside the input, as offsets into a packed row.
        let lo = (-ix0).clamp(0, row as isize) as usize;
        let hi = (w.input as isize - ix0).clamp(lo as isize, row as isize) as usize;
        for c in chans.clone() {
            let src = &x_img[c][..plane];
            for ky in 0..h.kernel {
                let out = rows.next().expect("a holds every segment's rows");
                let iy = h.at(seg.oy, ky);
                if !(0..h.input as isize).contains(&iy) || lo == hi {
                    out.fill(0.0);
                    continue;
                }
                let line = &src[iy as usize * w.input..][..w.input];
                out[..lo].fill(0.0);
                let at = (ix0 + lo as isize) as usize;
                out[lo..hi].copy_from_slice(&line[at..at + hi - lo]);
                out[hi..].fill(0.0);
            }
        }
    }
}

/// The weights as panels `[group][channel block][k][MR]` (channels past the group's end are zero)
/// and the bias padded the same way.
struct Weights {
    data: Vec<f32>,
    start: usize,
    bias: Vec<f32>,
    blocks: usize,
    k: usize,
}

impl Weights {
    fn pack(g: &Conv2d, w: &[f32], bias: Option<&[f32]>) -> Self {
        let (mg, k) = (g.out_channels / g.groups, g.depth());
        let blocks = mg.div_ceil(MR);
        let len = g.groups * blocks * k * MR;
        let mut data = vec![0.0f32; len + LINE];
        let start = data.as_ptr().align_offset(LINE * 4).min(LINE);
        par::chunks_mut(&mut data[start..start + len], k * MR, |at, panel| {
            let (gi, cb) = (at / (k * MR) / blocks, at / (k * MR) % blocks);
            for r in 0..MR.min(mg - cb * MR) {
                let src = &w[(gi * mg + cb * MR + r) * k..][..k];
                for (kk, &v) in src.iter().enumerate() {
                    panel[kk * MR + r] = v;
                }
            }
        });
        let mut padded = vec![0.0f32; g.groups * blocks * MR];
        if let Some(b) = bias {
            for gi in 0..g.groups {
                for c in 0..mg {
                    padded[(gi * blocks + c / MR) * MR + c % MR] = b[gi * mg + c];
                }
            }
        }
        Weights {
            data,
            start,
            bias: padded,
            blocks,
            k,
        }
    }

    /// Depth rows `k0..k0+kc` of group `gi`'s channel block `cb`: `[kc][MR]`.
    fn panel(&self, gi: usize, cb: usize, k0: usize, kc: usize) -> &[f32] {
        let at = self.start + ((gi * self.blocks + cb) * self.k + k0) * MR;
        &self.data[at..at + kc * MR]
    }

    fn bias(&self, gi: usize, cb: usize) -> &[f32; MR] {
        let at = (gi * self.blocks + cb) * MR;
        self.bias[at..at + MR].try_into().expect("MR floats")
    }
}

/// How the micro-kernel walks a packed input: `rows` rows `stride` floats apart, each read at
/// `KW` taps `step` floats apart; depth row `r·KW + t` is the 16 floats at `r·stride + t·step`.
/// im2col panels are `KW = 1` and `stride = NR`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Walk {
    pub rows: usize,
    pub stride: usize,
    pub step: usize,
}

impl Walk {
    /// Floats from the start of a walk to one past the last it reads.
    fn reach<const KW: usize>(&self) -> usize {
        match self.rows {
            0 => 0,
            r => (r - 1) * self.stride + (KW - 1) * self.step + NR,
        }
    }
}

/// `dst[r·ldc + j] (+)= Σ_k w[k·MR + r] · A[k][j]` for `r < rows`, `j < cols`, with depth row `k`
/// of A where `walk` puts it: starting from the bias on the first depth block and from `dst`
/// after it, and Relu'd on the last when `relu`.
///
/// # Safety
/// AVX2 and FMA must be available; `a` must hold `walk.reach()` floats and `w`
/// `walk.rows·KW·MR`; `dst + r·ldc + j` for `r < rows`, `j < cols` must be valid and written by no
/// one else meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn block<const KW: usize>(
    walk: Walk,
    a: &[f32],
    w: &[f32],
    bias: &[f32; MR],
    dst: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    first: bool,
    relu: bool,
) {
    debug_assert!(a.len() >= walk.reach::<KW>() && w.len() >= walk.rows * KW * MR);
    debug_assert!(rows <= MR && cols <= NR);
    if rows == MR && cols == NR {
        kernel::<KW>(walk, a.as_ptr(), w.as_ptr(), bias, dst, ldc, first, relu);
        return;
    }
    // An edge block runs in full on a local copy (zeroed here only: a memset per full block
    // was measured at 1.5–4% of a W48 forward).
    let mut tmp = [0.0f32; MR * NR];
    if !first {
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(dst.add(r * ldc), tmp.as_mut_ptr().add(r * NR), cols);
        }
    }
    kernel::<KW>(
        walk,
        a.as_ptr(),
        w.as_ptr(),
        bias,
        tmp.as_mut_ptr(),
        NR,
        first,
        relu,
    );
    for r in 0..rows {
        std::ptr::copy_nonoverlapping(tmp.as_ptr().add(r * NR), dst.add(r * ldc), cols);
    }
}

/// The 6×16 micro-kernel on a full block.
///
/// # Safety
/// As [`block`], with all `MR × NR` destinations valid.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kernel<const KW: usize>(
    walk: Walk,
    a: *const f32,
    w: *const f32,
    bias: &[f32; MR],
    dst: *mut f32,
    ldc: usize,
    first: bool,
    relu: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for (r, row) in acc.iter_mut().enumerate() {
        if first {
            *row = [_mm256_set1_ps(bias[r]); 2];
        } else {
            let d = dst.add(r * ldc);
            *row = [_mm256_loadu_ps(d), _mm256_loadu_ps(d.add(8))];
        }
    }
    let mut wk = w;
    for r in 0..walk.rows {
        let ar = a.add(r * walk.stride);
        for t in 0..KW {
            let ak = ar.add(t * walk.step);
            let a0 = _mm256_loadu_ps(ak);
            let a1 = _mm256_loadu_ps(ak.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let b = _mm256_broadcast_ss(&*wk.add(i));
                row[0] = _mm256_fmadd_ps(a0, b, row[0]);
                row[1] = _mm256_fmadd_ps(a1, b, row[1]);
            }
            wk = wk.add(MR);
        }
    }
    if relu {
        // max(0, v) returns its second operand when either is NaN, so a NaN stays NaN and -0
        // stays -0, as the Relu select of the portable path does.
        let zero = _mm256_setzero_ps();
        for row in acc.iter_mut() {
            *row = [_mm256_max_ps(zero, row[0]), _mm256_max_ps(zero, row[1])];
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let d = dst.add(r * ldc);
        _mm256_storeu_ps(d, row[0]);
        _mm256_storeu_ps(d.add(8), row[1]);
    }
}
