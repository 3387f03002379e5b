//! Conv: 1-D and 2-D convolution with groups, strides, dilations, pads and auto_pad, as an
//! im2col + GEMM over pixel tiles ([`kernel`]; [`avx2`] on x86-64 CPUs without AVX-512, see
//! [`f32_kernels`]), and for float32 3×3
//! stride-1 layers as Winograd F(2×2, 3×3) ([`winograd`]). f32 and f64 compute natively, f16
//! and bf16 in f32.

#[cfg(target_arch = "x86_64")]
pub mod avx2;
mod kernel;
#[cfg(test)]
mod tests;
pub mod winograd;

pub use kernel::{
    conv2d, conv2d_planes, conv2d_portable, conv2d_with_tile, default_tile, f32_kernels, planes,
    planes_of_parts, ConvFloat, F32Kernels,
};

use super::blas::Float;
use super::elem::{same, Unwrap};
use super::float::{f32_in, f32_out, f32_same, give_back, not_float};
use super::window::{Axis, Window};
use super::{numel, Ctx, OpError, OpResult};
use crate::tensor::{Data, Tensor};

/// A 2-D convolution's geometry: X `[batch, in_channels, h.input, w.input]`, W `[out_channels,
/// in_channels / groups, h.kernel, w.kernel]`, Y `[batch, out_channels, h.output, w.output]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub h: Axis,
    pub w: Axis,
    /// Apply Relu to each tile as soon as it is computed, while it is still in cache (the executor
    /// fuses a Conv whose only reader is a Relu).
    pub relu: bool,
}

impl Conv2d {
    /// The geometry of X of shape `x` and W of shape `w` under `window`'s strides, dilations and
    /// pads (its kernel must be W's).
    pub fn new(x: [usize; 4], w: [usize; 4], groups: usize, window: &Window) -> OpResult<Self> {
        if window.kernel != w[2..] {
            return Err(OpError::invalid(format!(
                "kernel_shape {:?} is not the weights' {:?}",
                window.kernel,
                &w[2..]
            )));
        }
        if groups == 0 || x[1] != w[1] * groups || w[0] % groups != 0 {
            return Err(OpError::invalid(format!(
                "input {x:?} and weights {w:?} do not fit group {groups}"
            )));
        }
        let axes = window.axes(&x[2..])?;
        Ok(Conv2d {
            batch: x[0],
            in_channels: x[1],
            out_channels: w[0],
            groups,
            h: axes[0],
            w: axes[1],
            relu: false,
        })
    }

    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.out_channels, self.h.output, self.w.output]
    }

    /// Rows of the im2col matrix (the GEMM's depth): `in_channels / groups · kh · kw`.
    pub fn depth(&self) -> usize {
        self.in_channels / self.groups * self.h.kernel * self.w.kernel
    }

    /// Multiply-adds times two.
    pub fn flops(&self) -> f64 {
        let [n, m, oh, ow] = self.output_shape();
        2.0 * (n * m * oh * ow) as f64 * self.depth() as f64
    }
}

/// The Conv op.
pub fn conv(cx: &Ctx) -> OpResult<Tensor> {
    conv_act(cx, false)
}

/// The Conv op, followed by Relu when `relu` (one pass over each output tile).
pub fn conv_act(cx: &Ctx, relu: bool) -> OpResult<Tensor> {
    let x = cx.input(0)?;
    let (geom, out_shape) = geometry(cx, &x.shape, relu)?;
    let (w, b) = (cx.input(1)?, cx.opt_input(2));
    match (&x.data, &w.data) {
        (Data::F32(xv), Data::F32(wv)) => {
            let bv = bias::<f32>(b, &x.data)?;
            let y = conv2d(&geom, xv, wv, bv);
            Ok(Tensor {
                shape: out_shape,
                data: Data::F32(y),
            })
        }
        (Data::F64(xv), Data::F64(wv)) => {
            let bv = bias::<f64>(b, &x.data)?;
            let y = conv2d(&geom, xv, wv, bv);
            Ok(Tensor {
                shape: out_shape,
                data: Data::F64(y),
            })
        }
        (Data::F16(_) | Data::BF16(_), _) => {
            let (xv, prec) = f32_in(x, "Conv")?;
            let wv = f32_same(w, prec, "Conv")?;
            let bv = b.map(|b| f32_same(b, prec, "Conv")).transpose()?;
            let y = conv2d(&geom, &xv, &wv, bv.as_deref());
            give_back(xv);
            Ok(f32_out(out_shape, y, prec))
        }
        (Data::F32(_) | Data::F64(_), other) => Err(OpError::invalid(format!(
            "Conv: weights are {:?}, input is {:?}",
            other.dtype(),
            x.dtype()
        ))),
        (other, _) => Err(not_float("Conv", other)),
    }
}

/// Which of the two nodes of [`concat_conv`] an error is about.
#[derive(Debug)]
pub enum ConcatConvError {
    Concat(OpError),
    Conv(OpError),
}

/// The Conv `conv` (then Relu when `relu`) on the output of the Concat `concat`, read in place: for
/// a Concat of float NCHW tensors along channels, the kernel packs its tiles from the parts' own
/// planes, so the Concat (HRNet-OCR's 720- and 1024-channel ones are 94 and 134 MB at 512×1024) is
/// never written. Same numbers as the two ops: the kernel reads the same values. `conv`'s input 0
/// is ignored; any other Concat runs first, as its own op.
pub fn concat_conv(concat: &Ctx, conv: &Ctx, relu: bool) -> Result<Tensor, ConcatConvError> {
    let parts: Vec<&Tensor> = (0..concat.inputs.len())
        .filter_map(|i| concat.opt_input(i))
        .collect();
    let axis = concat.attr_i("axis").map_err(ConcatConvError::Concat)?;
    let readable = match parts.first() {
        Some(first) if first.shape.len() == 4 && matches!(axis, Some(1 | -3)) => {
            let off_axis = |t: &Tensor| [t.shape[0], t.shape[2], t.shape[3]];
            parts.iter().all(|t| {
                t.shape.len() == 4
                    && off_axis(t) == off_axis(first)
                    && t.data.dtype() == first.data.dtype()
                    && matches!(t.data, Data::F32(_) | Data::F16(_) | Data::BF16(_))
            })
        }
        _ => false,
    };
    if !readable {
        let x = super::array::concat(concat).map_err(ConcatConvError::Concat)?;
        let mut inputs = conv.inputs.to_vec();
        *inputs
            .first_mut()
            .ok_or_else(|| ConcatConvError::Conv(OpError::invalid("needs an input")))? = Some(&x);
        let cx = Ctx {
            inputs: &inputs,
            ..*conv
        };
        return conv_act(&cx, relu).map_err(ConcatConvError::Conv);
    }
    let first = parts[0];
    let channels: usize = parts.iter().map(|t| t.shape[1]).sum();
    let shape = [first.shape[0], channels, first.shape[2], first.shape[3]];
    let run = || -> OpResult<Tensor> {
        let (geom, out_shape) = geometry(conv, &shape, relu)?;
        let (w, b) = (conv.input(1)?, conv.opt_input(2));
        let widened = parts
            .iter()
            .map(|t| f32_in(t, "Conv"))
            .collect::<OpResult<Vec<_>>>()?;
        let prec = widened[0].1;
        let wv = f32_same(w, prec, "Conv")?;
        let bv = b.map(|b| f32_same(b, prec, "Conv")).transpose()?;
        let layout: Vec<(&[f32], usize)> = widened
            .iter()
            .zip(&parts)
            .map(|((v, _), t)| (&v[..], t.shape[1]))
            .collect();
        let x = planes_of_parts(&layout, shape[0], shape[2] * shape[3]);
        let y = conv2d_planes(&geom, &x, &wv, bv.as_deref());
        drop((x, layout));
        widened.into_iter().for_each(|(v, _)| give_back(v));
        Ok(f32_out(out_shape, y, prec))
    };
    run().map_err(ConcatConvError::Conv)
}

/// The 2-D geometry of the Conv `cx` on an input of shape `x` (a 1-D Conv as a 2-D one over a
/// height of 1), and its output shape; checks the weights, attributes and bias against it.
fn geometry(cx: &Ctx, x: &[usize], relu: bool) -> OpResult<(Conv2d, Vec<usize>)> {
    let (w, b) = (cx.input(1)?, cx.opt_input(2));
    let rank = x.len();
    if rank < 3 || w.shape.len() != rank {
        return Err(OpError::invalid(format!(
            "input {:?} and weights {:?} do not fit",
            x, w.shape
        )));
    }
    if rank > 4 {
        return Err(OpError::unsupported(format!(
            "Conv over {} spatial dimensions",
            rank - 2
        )));
    }
    let groups = cx.attr_i("group")?.unwrap_or(1);
    let groups =
        usize::try_from(groups).map_err(|_| OpError::invalid(format!("group {groups}")))?;
    let kernel = w.shape[2..].to_vec();
    if let Some(ks) = cx.attr_ints("kernel_shape")? {
        if ks.iter().map(|&k| k as usize).ne(kernel.iter().copied()) {
            return Err(OpError::invalid(format!(
                "kernel_shape {ks:?} is not the weights' {kernel:?}"
            )));
        }
    }
    let window = Window::read(cx, kernel)?;
    if window.ceil_mode {
        return Err(OpError::unsupported("Conv with a ceil_mode attribute"));
    }
    // 1-D runs as 2-D over a height of 1.
    let (geom, out_shape) = if rank == 3 {
        let axis = window.axes(&x[2..])?[0];
        let g = Conv2d::new(
            [x[0], x[1], 1, x[2]],
            [w.shape[0], w.shape[1], 1, w.shape[2]],
            groups,
            &Window {
                kernel: vec![1, axis.kernel],
                strides: vec![1, axis.stride],
                dilations: vec![1, axis.dilation],
                pads: vec![0, axis.pad_begin, 0, axis.pad_end],
                auto_pad: "NOTSET".into(),
                ceil_mode: false,
            },
        )?;
        (g, vec![g.batch, g.out_channels, g.w.output])
    } else {
        let dims = |s: &[usize]| [s[0], s[1], s[2], s[3]];
        let g = Conv2d::new(dims(x), dims(&w.shape), groups, &window)?;
        (g, g.output_shape().to_vec())
    };
    let geom = Conv2d { relu, ..geom };
    numel(&out_shape)?;
    if let Some(b) = b {
        if b.shape != [geom.out_channels] {
            return Err(OpError::invalid(format!(
                "bias {:?} should be [{}]",
                b.shape, geom.out_channels
            )));
        }
    }
    Ok((geom, out_shape))
}

/// The bias as `T`, which must be the input's type.
fn bias<'a, T: Float + Unwrap>(b: Option<&'a Tensor>, x: &Data) -> OpResult<Option<&'a [T]>> {
    b.map(|b| same::<T>(&b.data, x, "Conv input and bias").map(Vec::as_slice))
        .transpose()
}
