//! Conv: 1-D and 2-D convolution with groups, strides, dilations, pads and auto_pad, as an
//! im2col + GEMM over pixel tiles ([`kernel`]). f32 and f64 compute natively, f16 and bf16 in
//! f32.

#[cfg(target_arch = "x86_64")]
pub mod avx2;
mod kernel;
#[cfg(test)]
mod tests;

pub use kernel::{conv2d, conv2d_portable, conv2d_with_tile, default_tile, ConvFloat};

use super::blas::Float;
use super::elem::{same, Unwrap};
use super::float::{f32_in, f32_out, f32_same, not_float};
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
    let (x, w, b) = (cx.input(0)?, cx.input(1)?, cx.opt_input(2));
    let rank = x.shape.len();
    if rank < 3 || w.shape.len() != rank {
        return Err(OpError::invalid(format!(
            "input {:?} and weights {:?} do not fit",
            x.shape, w.shape
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
        let axis = window.axes(&x.shape[2..])?[0];
        let g = Conv2d::new(
            [x.shape[0], x.shape[1], 1, x.shape[2]],
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
        let g = Conv2d::new(dims(&x.shape), dims(&w.shape), groups, &window)?;
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

/// The bias as `T`, which must be the input's type.
fn bias<'a, T: Float + Unwrap>(b: Option<&'a Tensor>, x: &Data) -> OpResult<Option<&'a [T]>> {
    b.map(|b| same::<T>(&b.data, x, "Conv input and bias").map(Vec::as_slice))
        .transpose()
}
