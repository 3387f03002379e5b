//! Resize (opset 10 onwards) and its predecessor Upsample (7–9), in modes nearest (any element
//! type) and linear (floats; N-linear, one separable pass per resized axis), following
//! onnxruntime's CPU arithmetic: coordinates in f32, linear sources clamped to the edges.
//!
//! Before opset 11 (and for Upsample) the coordinate transform is `asymmetric` and nearest
//! rounding is onnxruntime's legacy rule (truncate when upsampling, ceil when downsampling).
//! From 11: `coordinate_transformation_mode` half_pixel (default), half_pixel_symmetric,
//! pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn, and `nearest_mode`
//! round_prefer_floor (default), round_prefer_ceil, floor, ceil. Refused: cubic,
//! tf_crop_and_resize, antialias, and keep_aspect_ratio_policy other than stretch.

use super::float::{f32_in, f32_out};
use super::par::{self, CHUNK};
use super::{attr_s, norm_axis, numel, strides, Ctx, OpError, OpResult};
use crate::tensor::{Data, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfHalfPixelForNn,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Nearest {
    /// Opset 10 and Upsample.
    Legacy,
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// The input coordinate output coordinate `x` maps to on one axis.
fn original(c: Coord, x: usize, scale: f32, len_out: usize, len_in: usize) -> f32 {
    let (x, lo, li) = (x as f32, len_out as f32, len_in as f32);
    match c {
        Coord::HalfPixel => (x + 0.5) / scale - 0.5,
        Coord::HalfPixelSymmetric => {
            let adjustment = lo / (scale * li);
            let offset = li / 2.0 * (1.0 - adjustment);
            offset + (x + 0.5) / scale - 0.5
        }
        Coord::PytorchHalfPixel if len_out > 1 => (x + 0.5) / scale - 0.5,
        Coord::PytorchHalfPixel => 0.0,
        Coord::AlignCorners if len_out == 1 => 0.0,
        Coord::AlignCorners => x * (li - 1.0) / (lo - 1.0),
        Coord::Asymmetric => x / scale,
        Coord::TfHalfPixelForNn => (x + 0.5) / scale,
    }
}

fn nearest_index(n: Nearest, x: f32, downsample: bool, len_in: usize) -> usize {
    let i = match n {
        Nearest::Legacy if downsample => x.ceil(),
        Nearest::Legacy => x.trunc(),
        Nearest::RoundPreferFloor if x == x.trunc() + 0.5 => x.floor(),
        Nearest::RoundPreferFloor | Nearest::RoundPreferCeil => x.round(),
        Nearest::Floor => x.floor(),
        Nearest::Ceil => x.ceil(),
    };
    (i.max(0.0) as usize).min(len_in - 1)
}

/// Linear interpolation on one axis: output `j` is `w0[j]·x[i0[j]] + w1[j]·x[i1[j]]`.
#[derive(Debug, Default)]
struct Linear {
    i0: Vec<usize>,
    i1: Vec<usize>,
    w0: Vec<f32>,
    w1: Vec<f32>,
}

impl Linear {
    fn new(c: Coord, scale: f32, len_out: usize, len_in: usize) -> Self {
        let mut l = Linear::default();
        for j in 0..len_out {
            let x = original(c, j, scale, len_out, len_in).clamp(0.0, (len_in - 1) as f32);
            let i0 = (x as usize).min(len_in - 1);
            let i1 = (i0 + 1).min(len_in - 1);
            let (w0, w1) = if i0 == i1 {
                (0.5, 0.5)
            } else {
                ((x - i1 as f32).abs(), (x - i0 as f32).abs())
            };
            l.i0.push(i0);
            l.i1.push(i1);
            l.w0.push(w0);
            l.w1.push(w1);
        }
        l
    }

    fn is_identity(&self, len_in: usize) -> bool {
        self.i0.len() == len_in
            && (0..len_in).all(|j| self.i0[j] == j && (self.w1[j] == 0.0 || self.i1[j] == j))
    }
}

/// The attributes and the target shape of a Resize or Upsample node.
struct Plan {
    linear: bool,
    coord: Coord,
    nearest: Nearest,
    scales: Vec<f32>,
    out_shape: Vec<usize>,
}

fn plan(cx: &Ctx, x: &Tensor) -> OpResult<Plan> {
    let s = |name: &str| attr_s(cx.node, name).map_err(OpError::invalid);
    let upsample = cx.node.op_type() == "Upsample";
    let legacy = upsample || cx.opset < 11;
    let linear = match s("mode")?.as_deref().unwrap_or("nearest") {
        "nearest" => false,
        "linear" => true,
        "bilinear" if upsample => true,
        "cubic" => return Err(OpError::unsupported("cubic Resize")),
        other => return Err(OpError::invalid(format!("unknown mode '{other}'"))),
    };
    let coord = if legacy {
        Coord::Asymmetric
    } else {
        match s("coordinate_transformation_mode")?
            .as_deref()
            .unwrap_or("half_pixel")
        {
            "half_pixel" => Coord::HalfPixel,
            "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
            "pytorch_half_pixel" => Coord::PytorchHalfPixel,
            "align_corners" => Coord::AlignCorners,
            "asymmetric" => Coord::Asymmetric,
            "tf_half_pixel_for_nn" => Coord::TfHalfPixelForNn,
            "tf_crop_and_resize" => return Err(OpError::unsupported("tf_crop_and_resize")),
            other => {
                return Err(OpError::invalid(format!(
                    "unknown coordinate mode '{other}'"
                )))
            }
        }
    };
    let nearest = if legacy {
        Nearest::Legacy
    } else {
        match s("nearest_mode")?
            .as_deref()
            .unwrap_or("round_prefer_floor")
        {
            "round_prefer_floor" => Nearest::RoundPreferFloor,
            "round_prefer_ceil" => Nearest::RoundPreferCeil,
            "floor" => Nearest::Floor,
            "ceil" => Nearest::Ceil,
            other => return Err(OpError::invalid(format!("unknown nearest_mode '{other}'"))),
        }
    };
    if cx.attr_i("antialias")?.unwrap_or(0) != 0 {
        return Err(OpError::unsupported("antialiased Resize"));
    }
    if cx.attr_i("exclude_outside")?.unwrap_or(0) != 0 {
        return Err(OpError::unsupported("Resize with exclude_outside"));
    }
    let rank = x.shape.len();
    let axes: Vec<usize> = match cx.attr_ints("axes")? {
        Some(a) if cx.opset >= 18 && !upsample => {
            let axes = a
                .iter()
                .map(|&v| norm_axis(v, rank))
                .collect::<OpResult<Vec<_>>>()?;
            if (1..axes.len()).any(|i| axes[..i].contains(&axes[i])) {
                return Err(OpError::invalid(format!("axes {a:?} repeat an axis")));
            }
            axes
        }
        _ => (0..rank).collect(),
    };
    // Absent and empty inputs both mean "not given".
    let given = |i: usize| cx.opt_input(i).filter(|t| !t.is_empty());
    let (scales_in, sizes_in) = match (upsample, cx.opset) {
        (true, ..=8) => (None, None),
        (true, _) | (false, ..=10) => (given(1), None),
        _ => (given(2), given(3)),
    };
    let mut scales = vec![1f32; rank];
    let mut out_shape = x.shape.clone();
    match (scales_in, sizes_in) {
        (Some(_), Some(_)) => return Err(OpError::invalid("both scales and sizes are given")),
        (None, Some(t)) => {
            let sizes = cx.ints_input(3)?.unwrap_or_default();
            check_len("sizes", sizes.len(), axes.len())?;
            let policy = s("keep_aspect_ratio_policy")?;
            if cx.opset >= 18 && policy.as_deref().is_some_and(|p| p != "stretch") {
                return Err(OpError::unsupported(format!(
                    "keep_aspect_ratio_policy {policy:?}"
                )));
            }
            for (&a, &d) in axes.iter().zip(&sizes) {
                let d = usize::try_from(d)
                    .map_err(|_| OpError::invalid(format!("sizes {:?}", t.as_i64s())))?;
                let din = x.shape[a];
                scales[a] = if din == 0 { 1.0 } else { d as f32 / din as f32 };
                out_shape[a] = d;
            }
        }
        (given_scales, None) => {
            let list: Vec<f32> = match given_scales {
                Some(t) if matches!(t.data, Data::F32(_)) => t.as_f32s(),
                Some(t) => {
                    return Err(OpError::invalid(format!(
                        "scales must be float, are {:?}",
                        t.dtype()
                    )))
                }
                None if upsample && cx.opset <= 8 => match cx.attr("scales") {
                    Some(a) => a.floats.clone(),
                    None => return Err(OpError::invalid("attribute 'scales' is required")),
                },
                None => return Err(OpError::invalid("neither scales nor sizes is given")),
            };
            check_len("scales", list.len(), axes.len())?;
            for (&a, &f) in axes.iter().zip(&list) {
                if !(f > 0.0 && f.is_finite()) {
                    return Err(OpError::invalid(format!("scale {f} must be positive")));
                }
                scales[a] = f;
                out_shape[a] = (x.shape[a] as f32 * f).floor() as usize;
            }
        }
    }
    numel(&out_shape)?;
    for (a, (&i, &o)) in x.shape.iter().zip(&out_shape).enumerate() {
        if i == 0 && o > 0 {
            return Err(OpError::invalid(format!(
                "axis {a} of size 0 cannot resize to {o}"
            )));
        }
    }
    Ok(Plan {
        linear,
        coord,
        nearest,
        scales,
        out_shape,
    })
}

fn check_len(what: &str, got: usize, want: usize) -> OpResult<()> {
    if got == want {
        Ok(())
    } else {
        Err(OpError::invalid(format!(
            "{what} has {got} values for {want} axes"
        )))
    }
}

/// Resize and Upsample.
pub fn resize(cx: &Ctx) -> OpResult<Tensor> {
    let x = cx.input(0)?;
    if x.shape.is_empty() {
        return Err(OpError::invalid("cannot resize a scalar"));
    }
    let p = plan(cx, x)?;
    if numel(&p.out_shape)? == 0 {
        let data = crate::map_data!(&x.data, _v => Vec::new());
        return Ok(Tensor {
            shape: p.out_shape,
            data,
        });
    }
    if !p.linear {
        let maps: Vec<Vec<usize>> = (0..x.shape.len())
            .map(|a| {
                let (i, o, s) = (x.shape[a], p.out_shape[a], p.scales[a]);
                (0..o)
                    .map(|j| nearest_index(p.nearest, original(p.coord, j, s, o, i), s < 1.0, i))
                    .collect()
            })
            .collect();
        let data = crate::map_data!(&x.data, v => gather(v, &x.shape, &maps, &p.out_shape));
        return Ok(Tensor {
            shape: p.out_shape,
            data,
        });
    }
    let (v, prec) = match f32_in(x, "Resize") {
        Ok(v) => v,
        Err(OpError::Invalid(_)) => {
            return Err(OpError::unsupported(format!(
                "linear Resize on {:?}",
                x.dtype()
            )))
        }
        Err(e) => return Err(e),
    };
    let order = pass_order(&x.shape, &p.out_shape, &p.scales);
    let mut shape = x.shape.clone();
    let mut cur = v.into_owned();
    for a in order {
        let (i, o) = (x.shape[a], p.out_shape[a]);
        let lin = Linear::new(p.coord, p.scales[a], o, i);
        if !lin.is_identity(i) {
            cur = linear_pass(&cur, &shape, a, &lin);
            shape[a] = o;
        }
    }
    Ok(f32_out(p.out_shape, cur, prec))
}

/// The order of the linear passes over the axes that change: the cheapest by output elements
/// written, a pass along the innermost axis counted 4× (it gathers element by element; the others
/// blend whole rows). HRNet's 2×–8× bilinear upsampling then widens the rows first, on the small
/// input, instead of last, on the large output.
/// Axes whose size stays are kept when their scale is not 1 (a pass may still move values).
fn pass_order(from: &[usize], to: &[usize], scales: &[f32]) -> Vec<usize> {
    let axes: Vec<usize> = (0..from.len())
        .filter(|&a| from[a] != to[a] || scales.get(a).is_some_and(|&s| s != 1.0))
        .collect();
    let cost = |order: &[usize]| {
        let mut shape = from.to_vec();
        let mut total = 0.0f64;
        for &a in order {
            shape[a] = to[a];
            let inner: usize = shape[a + 1..].iter().product();
            let written = shape.iter().map(|&d| d as f64).product::<f64>();
            total += written * if inner == 1 { 4.0 } else { 1.0 };
        }
        total
    };
    let mut best = axes.clone();
    if axes.len() <= 4 {
        let mut order = axes;
        permutations(&mut order, 0, &mut |o| {
            if cost(o) < cost(&best) {
                best = o.to_vec();
            }
        });
    }
    best
}

/// Calls `f` with every ordering of `v[k..]` (after `v[..k]`).
fn permutations(v: &mut [usize], k: usize, f: &mut impl FnMut(&[usize])) {
    if k == v.len() {
        f(v);
        return;
    }
    for i in k..v.len() {
        v.swap(k, i);
        permutations(v, k + 1, f);
        v.swap(k, i);
    }
}

/// Nearest: output element at multi-index `j` is input element `maps[d][j_d]` on each axis.
fn gather<T: Copy + Default + Send + Sync>(
    v: &[T],
    in_shape: &[usize],
    maps: &[Vec<usize>],
    out_shape: &[usize],
) -> Vec<T> {
    let rank = in_shape.len();
    let offs: Vec<Vec<usize>> = maps
        .iter()
        .zip(strides(in_shape))
        .map(|(m, s)| m.iter().map(|&i| i * s).collect())
        .collect();
    let row = out_shape[rank - 1];
    let mut out = vec![T::default(); out_shape.iter().product()];
    par::chunks_mut(&mut out, row * (CHUNK / row).max(1), |start, part| {
        for (r, o) in part.chunks_mut(row).enumerate() {
            let (mut rem, mut base) = (start / row + r, 0);
            for d in (0..rank - 1).rev() {
                base += offs[d][rem % out_shape[d]];
                rem /= out_shape[d];
            }
            for (y, &off) in o.iter_mut().zip(&offs[rank - 1]) {
                *y = v[base + off];
            }
        }
    });
    out
}

/// Interpolates axis `axis` of `cur` (of `shape`) to `lin`'s length.
fn linear_pass(cur: &[f32], shape: &[usize], axis: usize, lin: &Linear) -> Vec<f32> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let (din, dout) = (shape[axis], lin.i0.len());
    let block = dout * inner;
    let mut out = crate::exec::recycle::f32_buffer(outer * block);
    par::chunks_mut(&mut out, block * (CHUNK / block).max(1), |start, part| {
        for (b, blk) in part.chunks_mut(block).enumerate() {
            let src = &cur[(start / block + b) * din * inner..][..din * inner];
            if inner == 1 {
                for (j, y) in blk.iter_mut().enumerate() {
                    *y = lin.w0[j] * src[lin.i0[j]] + lin.w1[j] * src[lin.i1[j]];
                }
                continue;
            }
            for (j, row) in blk.chunks_mut(inner).enumerate() {
                let a = &src[lin.i0[j] * inner..][..inner];
                let c = &src[lin.i1[j] * inner..][..inner];
                let (w0, w1) = (lin.w0[j], lin.w1[j]);
                for ((y, &p), &q) in row.iter_mut().zip(a).zip(c) {
                    *y = w0 * p + w1 * q;
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests;
