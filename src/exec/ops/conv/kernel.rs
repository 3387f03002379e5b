//! The convolution kernel: im2col over tiles of output pixels, each tile one single-threaded GEMM,
//! tiles spread over the rayon pool.
//!
//! Activations stay NCHW. For a tile of `pt` output pixels starting at `p0`, the GEMM is
//!
//! ```text
//! dst (pt × Mg) = lhs (pt × K) · rhs (K × Mg)
//! lhs(p, k)  = im2col[k][p]        row stride 1, column stride pt   (a plain copy for 1×1)
//! rhs(k, c)  = weights[c][k]       row stride 1, column stride K    (the weights as stored)
//! dst(p, c)  = y[n][g·Mg + c][p0 + p]   row stride 1, column stride P   (NCHW itself)
//! ```
//!
//! with the pixels as the GEMM's M, which is where the `gemm` crate is fastest. The bias is written
//! into the tile first and the product accumulated onto it. Nothing larger than one tile's im2col
//! (a per-thread scratch buffer) is ever materialised.

use super::super::blas::{gemm, with_scratch, Float, MatRef};
use super::super::par::{self, SyncPtr};
use super::super::window::Axis;
use super::Conv2d;

/// Pixels per tile of the `gemm` crate path for `g` on the current pool, from `cargo bench --bench kernels -- sweep` on
/// the 2-core AVX2 bench machine: the `gemm` crate runs at its best for M of 128 to 512 rows
/// (105–115 GFLOP/s a core, 55–90 from M = 1024 up); a tile's im2col should stay small for its
/// locality when the product is narrow (48 output channels: 91 GFLOP/s at 64–128 pixels, 82 at
/// 256), while a wide product re-reads all its weights per tile (720→512 3×3: 98 at 256, 93 at
/// 64). A tiny depth (first layer, depthwise) gets longer tiles so a call is not all overhead,
/// and tiles shrink when the pool would get under 4 a thread.
pub fn default_tile(g: &Conv2d) -> usize {
    let p = g.h.output * g.w.output;
    let base = if g.out_channels / g.groups >= 256 {
        256
    } else {
        128
    };
    let mut tile = base.max(((1usize << 14) / g.depth().max(1)).min(4096));
    let others = g.batch * g.groups;
    let want = 4 * rayon::current_num_threads();
    while tile > 64 && others * p.div_ceil(tile) < want {
        tile /= 2;
    }
    tile.min(p.max(1))
}

/// The element types a convolution runs in, and the fastest kernel each has on this CPU.
pub trait ConvFloat: Float {
    /// [`conv2d_planes`] through a faster kernel than the `gemm` crate's, where there is one,
    /// at that kernel's own tile when `tile` is `None`.
    fn fast_conv(
        _g: &Conv2d,
        _x: &[&[Self]],
        _w: &[Self],
        _bias: Option<&[Self]>,
        _tile: Option<usize>,
    ) -> Option<Vec<Self>> {
        None
    }

    /// An output buffer of `len` elements whose contents the kernel overwrites in full.
    fn output(len: usize) -> Vec<Self> {
        vec![Self::ZERO; len]
    }
}

impl ConvFloat for f64 {}

impl ConvFloat for f32 {
    /// Inside a run, a freed buffer of about that size (old values and all).
    fn output(len: usize) -> Vec<f32> {
        crate::exec::recycle::f32_buffer(len)
    }

    fn fast_conv(
        g: &Conv2d,
        x: &[&[f32]],
        w: &[f32],
        bias: Option<&[f32]>,
        tile: Option<usize>,
    ) -> Option<Vec<f32>> {
        use super::winograd;
        // `tile` counts output pixels; a Winograd tile is four of them.
        let tiles =
            |default: fn(&Conv2d) -> usize| tile.map_or_else(|| default(g), |t| (t / 4).max(1));
        #[cfg(target_arch = "x86_64")]
        if f32_kernels() == F32Kernels::Avx2 {
            if winograd::applies(g) {
                let tiles = tiles(winograd::default_tiles);
                return Some(winograd::avx2::conv2d_planes(g, x, w, bias, tiles));
            }
            let tile = tile.unwrap_or_else(|| super::avx2::default_tile(g));
            return Some(super::avx2::conv2d_planes(g, x, w, bias, tile));
        }
        winograd::applies(g)
            .then(|| winograd::portable(g, x, w, bias, tiles(winograd::portable_tiles)))
    }
}

/// The kernels that run float32 convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F32Kernels {
    /// The packed AVX2 micro-kernel ([`super::avx2`], [`super::winograd::avx2`]).
    Avx2,
    /// The `gemm` crate, with the 3×3 stride-1 layers as [`super::winograd::portable`]: its
    /// AVX-512 kernels on x86-64 CPUs that have them, NEON on aarch64.
    Gemm,
}

impl F32Kernels {
    /// The name `OCRNET_CONV_KERNELS` takes and the benches print.
    pub fn name(self) -> &'static str {
        match self {
            F32Kernels::Avx2 => "avx2",
            F32Kernels::Gemm => "gemm",
        }
    }
}

/// Which kernels run float32 convolutions on this CPU: `OCRNET_CONV_KERNELS=avx2|gemm` where set
/// (avx2 only where the CPU has AVX2 and FMA), otherwise the AVX2 ones on x86-64 CPUs with AVX2
/// and FMA but no AVX-512F, the `gemm` crate's everywhere else.
///
/// Why AVX-512 goes to the crate: on a CPU with two 512-bit FMA units (Xeon, Emerald Rapids, 2
/// threads, `cargo bench --bench kernels`) the crate runs HRNet's pointwise layers at 1.1–2× our
/// AVX2 kernel and Winograd through it the 3×3 720→512 head layer at 2.3×; on Zen 4, which splits
/// a 512-bit FMA in two, the crate was 6–35% ahead on pointwise layers and level or ahead on
/// Winograd layers.
pub fn f32_kernels() -> F32Kernels {
    static KERNELS: std::sync::OnceLock<F32Kernels> = std::sync::OnceLock::new();
    *KERNELS.get_or_init(|| {
        let env = std::env::var("OCRNET_CONV_KERNELS").ok();
        let (kernels, note) = choose_kernels(has_avx2(), has_avx512(), env.as_deref());
        if let Some(note) = note {
            log::warn!("{note}");
        }
        kernels
    })
}

/// [`f32_kernels`]'s rule, and a warning when the override names nothing this CPU runs.
pub(super) fn choose_kernels(
    has_avx2: bool,
    has_avx512: bool,
    env: Option<&str>,
) -> (F32Kernels, Option<String>) {
    let auto = if has_avx2 && !has_avx512 {
        F32Kernels::Avx2
    } else {
        F32Kernels::Gemm
    };
    match env.map(str::trim) {
        None | Some("") => (auto, None),
        Some("gemm") => (F32Kernels::Gemm, None),
        Some("avx2") if has_avx2 => (F32Kernels::Avx2, None),
        Some(other) => {
            let why = if other == "avx2" {
                "this CPU has no AVX2 and FMA"
            } else {
                "expected avx2 or gemm"
            };
            let note = format!("OCRNET_CONV_KERNELS={other}: {why}; using {auto:?}");
            (auto, Some(note))
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    super::avx2::available()
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx512() -> bool {
    false
}

/// Y = conv(X, W) + B for NCHW `x`, `[M][C/g][kh][kw]` `w` and `[M]` `bias`.
pub fn conv2d<T: ConvFloat>(g: &Conv2d, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    conv2d_planes(g, &planes(g, x), w, bias)
}

/// [`conv2d`] of an input given as its channel planes, image-major: `x[n·C + c]` is channel c of
/// image n, `h·w` elements. The kernels read every plane where it lies, so the parts of a channel
/// Concat are read in place and the Concat is never written (see [`planes_of_parts`]).
///
/// # Panics
/// When there are fewer planes, or shorter ones, than `g` says, or a slice is shorter than `g`
/// says.
pub fn conv2d_planes<T: ConvFloat>(g: &Conv2d, x: &[&[T]], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    if let Some(y) = T::fast_conv(g, x, w, bias, None) {
        return y;
    }
    portable(g, x, w, bias, default_tile(g))
}

/// [`conv2d`] with `tile` output pixels per task, through the kernels [`f32_kernels`] names for
/// f32 (the `gemm` crate's for other types); for f32, the 3×3 stride-1 layers Winograd takes run
/// as Winograd, with `tile / 4` 2×2 tiles a task.
///
/// # Panics
/// When a slice is shorter than `g` says.
pub fn conv2d_with_tile<T: ConvFloat>(
    g: &Conv2d,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    tile: usize,
) -> Vec<T> {
    let x = planes(g, x);
    if let Some(y) = T::fast_conv(g, &x, w, bias, Some(tile)) {
        return y;
    }
    portable(g, &x, w, bias, tile)
}

/// [`conv2d_with_tile`] through the `gemm` crate, one call per tile, on every CPU: the portable
/// twin of the packed kernel.
///
/// # Panics
/// When a slice is shorter than `g` says.
pub fn conv2d_portable<T: ConvFloat>(
    g: &Conv2d,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    tile: usize,
) -> Vec<T> {
    portable(g, &planes(g, x), w, bias, tile)
}

/// The channel planes of NCHW `x`, as [`conv2d_planes`] takes them.
///
/// # Panics
/// When `x` is shorter than `g` says.
pub fn planes<'a, T>(g: &Conv2d, x: &'a [T]) -> Vec<&'a [T]> {
    let (count, plane) = (g.batch * g.in_channels, g.h.input * g.w.input);
    assert!(x.len() >= count * plane, "input too short");
    (0..count).map(|i| &x[i * plane..][..plane]).collect()
}

/// The channel planes of the Concat along channels of NCHW `parts` (each `[batch, c_i, h, w]`,
/// `c_i` given with it), as [`conv2d_planes`] takes them.
///
/// # Panics
/// When a part is shorter than `batch · c_i · plane`.
pub fn planes_of_parts<'a, T>(
    parts: &[(&'a [T], usize)],
    batch: usize,
    plane: usize,
) -> Vec<&'a [T]> {
    let mut out = Vec::with_capacity(batch * parts.iter().map(|p| p.1).sum::<usize>());
    for n in 0..batch {
        for &(x, c) in parts {
            assert!(x.len() >= batch * c * plane, "concat part too short");
            out.extend((0..c).map(|i| &x[(n * c + i) * plane..][..plane]));
        }
    }
    out
}

/// The `gemm`-crate convolution over channel planes.
fn portable<T: ConvFloat>(
    g: &Conv2d,
    x: &[&[T]],
    w: &[T],
    bias: Option<&[T]>,
    tile: usize,
) -> Vec<T> {
    let [n, m, oh, ow] = g.output_shape();
    let p_out = oh * ow;
    let plane = g.h.input * g.w.input;
    let (cg, mg, k) = (g.in_channels / g.groups, m / g.groups, g.depth());
    assert!(
        x.len() >= n * g.in_channels && x.iter().all(|p| p.len() >= plane),
        "input too short"
    );
    assert!(w.len() >= m * k, "weights too short");
    assert!(bias.is_none_or(|b| b.len() >= m), "bias too short");
    // Every element is written before it is read: the bias (or the GEMM without reading its
    // destination) comes first.
    let mut y = T::output(n * m * p_out);
    if y.is_empty() {
        return y;
    }
    let tile = tile.clamp(1, p_out);
    let tiles = p_out.div_ceil(tile);
    let yp = SyncPtr::new(&mut y);
    par::for_each(n * g.groups * tiles, n * m * p_out * k, |task| {
        let (ni, gi, ti) = (
            task / (g.groups * tiles),
            task / tiles % g.groups,
            task % tiles,
        );
        let p0 = ti * tile;
        let pt = tile.min(p_out - p0);
        let x_img = &x[ni * g.in_channels + gi * cg..][..cg];
        let w_g = &w[gi * mg * k..][..mg * k];
        let b_g = bias.map(|b| &b[gi * mg..][..mg]);
        // SAFETY: `y` holds n·m·P elements and outlives the tasks; this task alone writes pixels
        // p0..p0+pt of output channels gi·mg..(gi+1)·mg of image ni.
        unsafe {
            let dst = yp.get().add((ni * m + gi * mg) * p_out + p0);
            tile_product(g, x_img, w_g, b_g, dst, p0, pt);
        }
    });
    y
}

/// One tile: `dst` points at pixel `p0` of the group's first output channel.
///
/// # Safety
/// `dst + c·P + p` for `c < Mg`, `p < pt` must be valid and written by no one else meanwhile.
unsafe fn tile_product<T: Float>(
    g: &Conv2d,
    x_img: &[&[T]],
    w_g: &[T],
    bias: Option<&[T]>,
    dst: *mut T,
    p0: usize,
    pt: usize,
) {
    let p_out = g.h.output * g.w.output;
    let (mg, k) = (g.out_channels / g.groups, g.depth());
    if let Some(b) = bias {
        for (c, &v) in b.iter().enumerate() {
            std::slice::from_raw_parts_mut(dst.add(c * p_out), pt).fill(v);
        }
    }
    let rhs = MatRef::new(w_g.as_ptr(), 1, k);
    with_scratch(k * pt, |buf: &mut [T]| {
        if is_pointwise(g) {
            // The input planes are the lhs already (pixel p of channel k at k·HW + p), but with
            // the plane as column stride the crate slows down badly (40 against 110 GFLOP/s at
            // HW = 32768, N = 48), so the tile is copied out, one run per channel.
            for (row, src) in buf.chunks_exact_mut(pt).zip(x_img) {
                row.copy_from_slice(&src[p0..p0 + pt]);
            }
        } else {
            im2col(g, x_img, p0, pt, buf);
        }
        let lhs = MatRef::new(buf.as_ptr(), 1, pt);
        gemm(pt, mg, k, dst, 1, p_out, bias.is_some(), lhs, rhs, T::ONE);
    });
    if g.relu {
        for c in 0..mg {
            for v in std::slice::from_raw_parts_mut(dst.add(c * p_out), pt) {
                // Written as a select, not max(), so a NaN stays NaN as Relu's definition keeps it.
                if *v < T::ZERO {
                    *v = T::ZERO;
                }
            }
        }
    }
}

/// A 1×1 convolution with unit strides and no padding: output pixels are input pixels.
pub(super) fn is_pointwise(g: &Conv2d) -> bool {
    [g.h, g.w]
        .iter()
        .all(|a| a.kernel == 1 && a.stride == 1 && a.pad_begin == 0 && a.pad_end == 0)
}

/// Writes rows `k = (c, ky, kx)` of the im2col matrix for output pixels `p0..p0+pt` into `buf`
/// (`[K][pt]`): the input value each pixel's tap reads, zero in the padding.
fn im2col<T: Float>(g: &Conv2d, x_img: &[&[T]], p0: usize, pt: usize, buf: &mut [T]) {
    let (h, w) = (&g.h, &g.w);
    // The tile as runs along output rows, and for each run and kx the part of it that reads
    // inside the input row: the same for every channel and ky.
    let mut runs = Vec::new();
    let mut o = 0;
    while o < pt {
        let (oy, ox) = ((p0 + o) / w.output, (p0 + o) % w.output);
        let len = (w.output - ox).min(pt - o);
        let spans: Vec<Span> = (0..w.kernel).map(|kx| Span::new(w, kx, ox, len)).collect();
        runs.push((o, len, oy, spans));
        o += len;
    }
    let mut rows = buf.chunks_exact_mut(pt);
    for src in x_img {
        for ky in 0..h.kernel {
            for kx in 0..w.kernel {
                let Some(row) = rows.next() else { return };
                for (o, len, oy, spans) in &runs {
                    let out = &mut row[*o..*o + *len];
                    let iy = h.at(*oy, ky);
                    if (0..h.input as isize).contains(&iy) {
                        let line = &src[iy as usize * w.input..][..w.input];
                        spans[kx].gather(line, w.stride, out);
                    } else {
                        out.fill(T::ZERO);
                    }
                }
            }
        }
    }
}

/// Of `len` output columns from `ox0`, those `lo..hi` whose tap `kx` reads inside the input row,
/// the first of them at input column `start`.
#[derive(Debug, Clone, Copy)]
struct Span {
    lo: usize,
    hi: usize,
    start: usize,
}

impl Span {
    fn new(a: &Axis, kx: usize, ox0: usize, len: usize) -> Self {
        let s = a.stride;
        // Input column of output column ox: ox·s + off.
        let off = (kx * a.dilation) as isize - a.pad_begin as isize;
        let first_in = if off >= 0 {
            0
        } else {
            off.unsigned_abs().div_ceil(s)
        };
        let end_in = if off >= a.input as isize {
            0
        } else {
            (a.input as isize - off) as usize
        }
        .div_ceil(s);
        let lo = first_in.saturating_sub(ox0).min(len);
        let hi = end_in.saturating_sub(ox0).clamp(lo, len);
        let start = if hi > lo {
            (((ox0 + lo) * s) as isize + off) as usize
        } else {
            0
        };
        Span { lo, hi, start }
    }

    /// `out[j]` = what its column reads from `line`, zero in the padding.
    fn gather<T: Float>(&self, line: &[T], stride: usize, out: &mut [T]) {
        let (lo, hi) = (self.lo, self.hi);
        out[..lo].fill(T::ZERO);
        out[hi..].fill(T::ZERO);
        if stride == 1 {
            out[lo..hi].copy_from_slice(&line[self.start..self.start + hi - lo]);
        } else {
            let src = line[self.start..].iter().step_by(stride);
            for (v, &x) in out[lo..hi].iter_mut().zip(src) {
                *v = x;
            }
        }
    }
}
