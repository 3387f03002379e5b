//! The f32 convolution on x86-64 with AVX2 and FMA: im2col written straight into a register-blocked
//! micro-kernel's packed layout. Same orientation as [`super::kernel`] (pixels vectorised, output
//! channels broadcast, NCHW output written in place) and same tasks (one per tile of output
//! pixels); what changes is the product inside a tile.
//!
//! A tile is cut into panels of 16 output pixels on one output row. For each block of at most
//! [`KC`] depth rows, the tile's im2col rows are written straight into the packed layout
//! (`[panel][kc][16]`, per-thread scratch), instead of into a plain matrix that the `gemm` crate
//! then copies again into its own; the weights are packed once per call.
//!
//! ```text
//! for each depth block kb:
//!     A = im2col rows kb.. of the tile's panels       (an interior panel's row: one 64-byte copy)
//!     for each block of 6 output channels:            W panel [kc][6], in L1
//!         for each panel of 16 pixels:                A panel [kc][16], streamed from L2
//!             Y[6][16] (+)= W panelᵀ · A panel
//! ```
//!
//! That loop order and a depth block of 512 were measured on W48 (2 threads, one run of each in
//! turn): 6.8–7.3 s a forward, against 8.2–8.8 s with the panels outside the channel blocks
//! (BLIS's order, the A panel kept in L1) and 7.0–7.9 s with blocks of 256.
//!
//! The 6×16 block is 12 ymm accumulators fed per depth step by two loads of A and six broadcasts
//! of W: the FMA units, not the loads, set the pace. Reading the input in place instead of packing
//! it was tried and was 1.2–2.5× slower: a panel's depth rows then sit one input plane apart (a
//! power-of-two stride at HRNet's sizes), which thrashes the caches' sets and the TLB.
//!
//! Not available elsewhere: [`super::kernel`]'s `gemm`-crate path is the portable twin (NEON on
//! the Jetson), and the tests run both on the same cases.

use std::arch::x86_64::*;

use super::super::blas::with_scratch;
use super::super::par;
use super::super::window::Axis;
use super::kernel::is_pointwise;
use super::Conv2d;

/// Output channels per micro-kernel call (broadcast).
const MR: usize = 6;
/// Output pixels per micro-kernel call (two vectors of 8).
const NR: usize = 16;
/// The most depth rows per block: a W panel is then at most 12 KiB, an A panel 32 KiB.
const KC: usize = 512;

/// Floats per 64-byte cache line, the alignment of packed buffers.
const LINE: usize = 16;

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// Pixels per task for `g`: large tiles re-read the weights less often (a 720→512 3×3 layer's
/// are 13 MiB, streamed once per tile), small ones spread better; the pool should get at least 4
/// tasks a thread.
pub fn default_tile(g: &Conv2d) -> usize {
    let p = g.h.output * g.w.output;
    let mut tile = if g.out_channels / g.groups >= 256 {
        256
    } else {
        128
    };
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
    assert!(available(), "the AVX2 convolution needs AVX2 and FMA");
    let [n, m, oh, ow] = g.output_shape();
    let p_out = oh * ow;
    let plane = g.h.input * g.w.input;
    let (cg, mg, k) = (g.in_channels / g.groups, m / g.groups, g.depth());
    assert!(x.len() >= n * g.in_channels * plane, "input too short");
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
    let packed = Weights::pack(g, w, bias);
    let blocks = par::split(k, k.div_ceil(KC));
    let kc_max = blocks.iter().map(|b| b.len()).max().unwrap_or(0);
    let tile = tile.clamp(1, p_out);
    let tiles = p_out.div_ceil(tile);
    // Every element is stored by the first depth block's micro-kernel calls before anything
    // reads it: a recycled buffer's old contents do no harm.
    let mut y = crate::exec::recycle::f32_buffer(len);
    let yp = par::SyncPtr::new(&mut y);
    par::for_each(n * g.groups * tiles, len * k, |task| {
        let (ni, gi, ti) = (
            task / (g.groups * tiles),
            task / tiles % g.groups,
            task % tiles,
        );
        let p0 = ti * tile;
        let pt = tile.min(p_out - p0);
        let x_img = &x[(ni * g.in_channels + gi * cg) * plane..][..cg * plane];
        let panels = panels(g, p0, pt);
        with_scratch::<f32, _>(panels.len() * NR * kc_max + LINE, |buf| {
            let a = aligned(buf);
            for (bi, kb) in blocks.iter().enumerate() {
                let kc = kb.len();
                // SAFETY: AVX2 was checked above.
                unsafe {
                    pack(
                        g,
                        x_img,
                        &panels,
                        kb.clone(),
                        &mut a[..panels.len() * NR * kc],
                    )
                };
                let (first, relu) = (bi == 0, g.relu && bi + 1 == blocks.len());
                for cb in 0..mg.div_ceil(MR) {
                    let rows = MR.min(mg - cb * MR);
                    let wp = packed.panel(gi, cb, kb.start, kc);
                    let bp = packed.bias(gi, cb);
                    for (panel, ap) in panels.iter().zip(a.chunks_exact(NR * kc)) {
                        // SAFETY: AVX2 and FMA were checked above; `ap` holds kc·NR floats; this
                        // task alone writes pixels p0..p0+pt of image ni's output channels of
                        // group gi, and `dst + r·P + j` for r < rows, j < panel.len lies in them.
                        unsafe {
                            let dst = yp
                                .get()
                                .add((ni * m + gi * mg + cb * MR) * p_out + panel.first);
                            block(ap, wp, bp, dst, p_out, rows, panel.len, first, relu);
                        }
                    }
                }
            }
        });
    });
    y
}

/// The part of `buf` from its first 64-byte boundary on.
fn aligned(buf: &mut [f32]) -> &mut [f32] {
    let off = buf.as_ptr().align_offset(LINE * 4).min(buf.len());
    &mut buf[off..]
}

/// Up to 16 output pixels on one output row: `len` from pixel `first` (row `oy`, column `ox`).
/// An interior panel is a full one whose every tap reads inside the input, 16 consecutive floats
/// of one input row.
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
    let inside_cols = |ox: usize| {
        w.stride == 1 && w.at(ox, 0) >= 0 && w.at(ox + NR - 1, w.kernel - 1) < w.input as isize
    };
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
    x_img: &[f32],
    panels: &[Panel],
    ks: std::ops::Range<usize>,
    a: &mut [f32],
) {
    let (h, w) = (&g.h, &g.w);
    let (taps, plane) = (h.kernel * w.kernel, h.input * w.input);
    let kc = ks.len();
    for (kk, k) in ks.enumerate() {
        let (c, ky, kx) = (k / taps, k % taps / w.kernel, k % w.kernel);
        let src = &x_img[c * plane..][..plane];
        for (pb, panel) in panels.iter().enumerate() {
            let out: &mut [f32; NR] = (&mut a[(pb * kc + kk) * NR..][..NR])
                .try_into()
                .expect("NR");
            let iy = h.at(panel.oy, ky);
            if panel.interior {
                let at = iy as usize * w.input + w.at(panel.ox, kx) as usize;
                *out = src[at..at + NR].try_into().expect("NR");
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

/// `dst[r·ldc + j] (+)= Σ_k w[k·MR + r] · a[k·NR + j]` for `r < rows`, `j < cols`: starting from the
/// bias on the first depth block and from `dst` after it, and Relu'd on the last when `relu`.
///
/// # Safety
/// AVX2 and FMA must be available; `a` must hold `kc·NR` floats and `w` `kc·MR`; `dst + r·ldc + j` for `r < rows`, `j < cols` must be valid and written by no one else
/// meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn block(
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
    let kc = w.len() / MR;
    debug_assert!(a.len() >= kc * NR && rows <= MR && cols <= NR);
    let full = rows == MR && cols == NR;
    // An edge block runs in full on a local copy.
    let mut tmp = [0.0f32; MR * NR];
    let (d, ld) = if full {
        (dst, ldc)
    } else {
        if !first {
            for r in 0..rows {
                std::ptr::copy_nonoverlapping(dst.add(r * ldc), tmp.as_mut_ptr().add(r * NR), cols);
            }
        }
        (tmp.as_mut_ptr(), NR)
    };
    kernel(kc, a.as_ptr(), w.as_ptr(), bias, d, ld, first, relu);
    if !full {
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(tmp.as_ptr().add(r * NR), dst.add(r * ldc), cols);
        }
    }
}

/// The 6×16 micro-kernel on a full block.
///
/// # Safety
/// As [`block`], with all `MR × NR` destinations valid.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel(
    kc: usize,
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
    for k in 0..kc {
        let ak = a.add(k * NR);
        let a0 = _mm256_loadu_ps(ak);
        let a1 = _mm256_loadu_ps(ak.add(8));
        let wk = w.add(k * MR);
        for (r, row) in acc.iter_mut().enumerate() {
            let b = _mm256_broadcast_ss(&*wk.add(r));
            row[0] = _mm256_fmadd_ps(a0, b, row[0]);
            row[1] = _mm256_fmadd_ps(a1, b, row[1]);
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
