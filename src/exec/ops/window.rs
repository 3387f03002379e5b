//! Sliding-window geometry shared by Conv and the pools: per spatial axis the kernel, stride,
//! dilation and the pads that `pads` or `auto_pad` give, and the output size.

use super::{attr_s, Ctx, OpError, OpResult};

/// One spatial axis of a window op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axis {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
    pub output: usize,
}

impl Axis {
    /// An axis of size `input` that a window passes over unchanged (kernel 1, stride 1, no pads):
    /// the height of a 1-D op run as 2-D.
    pub fn unit(input: usize) -> Self {
        Axis {
            input,
            kernel: 1,
            stride: 1,
            dilation: 1,
            pad_begin: 0,
            pad_end: 0,
            output: input,
        }
    }

    /// Input position of window tap `k` at output position `o`, negative or past the end in the
    /// padding.
    pub fn at(&self, o: usize, k: usize) -> isize {
        (o * self.stride + k * self.dilation) as isize - self.pad_begin as isize
    }

    /// How many taps of output position `o` fall inside the input and its explicit pads (the
    /// divisor of an AveragePool that counts padding): taps past the end padding, which only
    /// ceil_mode produces, do not count.
    pub fn padded_taps(&self, o: usize) -> usize {
        let end = (self.input + self.pad_end) as isize;
        (0..self.kernel).filter(|&k| self.at(o, k) < end).count()
    }

    /// The taps `k` of output position `o` that fall inside the input.
    pub fn taps(&self, o: usize) -> std::ops::Range<usize> {
        let start = self.at(o, 0);
        let d = self.dilation as isize;
        // First k with start + k*d >= 0, and one past the last with start + k*d < input.
        let lo = if start >= 0 { 0 } else { (-start + d - 1) / d };
        let hi = if start >= self.input as isize {
            0
        } else {
            (self.input as isize - start + d - 1) / d
        };
        let hi = (hi as usize).min(self.kernel);
        (lo as usize).min(hi)..hi
    }
}

/// The window attributes of a node, before they meet an input shape.
#[derive(Debug, Clone)]
pub struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub auto_pad: String,
    pub ceil_mode: bool,
}

impl Window {
    /// Reads `strides`, `dilations`, `pads`, `auto_pad` and `ceil_mode` for a window of `kernel`.
    pub(crate) fn read(cx: &Ctx, kernel: Vec<usize>) -> OpResult<Self> {
        let n = kernel.len();
        let list = |name: &str, default: usize, len: usize| -> OpResult<Vec<usize>> {
            match cx.attr_ints(name)? {
                None => Ok(vec![default; len]),
                Some(v) if v.is_empty() => Ok(vec![default; len]),
                Some(v) if v.len() != len => Err(OpError::invalid(format!(
                    "'{name}' {v:?} should have {len} values"
                ))),
                Some(v) => v
                    .iter()
                    .map(|&x| {
                        usize::try_from(x).map_err(|_| {
                            OpError::unsupported(format!("negative value in '{name}' {v:?}"))
                        })
                    })
                    .collect(),
            }
        };
        let w = Window {
            strides: list("strides", 1, n)?,
            dilations: list("dilations", 1, n)?,
            pads: list("pads", 0, 2 * n)?,
            auto_pad: attr_s(cx.node, "auto_pad")
                .map_err(OpError::invalid)?
                .unwrap_or_else(|| "NOTSET".into()),
            ceil_mode: cx.attr_i("ceil_mode")?.unwrap_or(0) != 0,
            kernel,
        };
        if w.kernel
            .iter()
            .chain(&w.strides)
            .chain(&w.dilations)
            .any(|&v| v == 0)
        {
            return Err(OpError::invalid(format!(
                "kernel {:?}, strides {:?} and dilations {:?} must be positive",
                w.kernel, w.strides, w.dilations
            )));
        }
        Ok(w)
    }

    /// The axes over spatial input sizes `input`.
    pub fn axes(&self, input: &[usize]) -> OpResult<Vec<Axis>> {
        let n = self.kernel.len();
        if input.len() != n {
            return Err(OpError::invalid(format!(
                "kernel {:?} does not fit spatial dimensions {input:?}",
                self.kernel
            )));
        }
        (0..n).map(|i| self.axis(i, input[i])).collect()
    }

    fn axis(&self, i: usize, input: usize) -> OpResult<Axis> {
        let n = self.kernel.len();
        let (kernel, stride, dilation) = (self.kernel[i], self.strides[i], self.dilations[i]);
        let extent = dilation * (kernel - 1) + 1;
        let (pad_begin, pad_end) = match self.auto_pad.as_str() {
            "NOTSET" => (self.pads[i], self.pads[i + n]),
            "VALID" => (0, 0),
            "SAME_UPPER" | "SAME_LOWER" => {
                // Output ceil(input / stride); the pads that takes, the odd one at the end
                // (SAME_UPPER) or the beginning (SAME_LOWER).
                let out = input.div_ceil(stride);
                let total = ((out.max(1) - 1) * stride + extent).saturating_sub(input);
                let small = total / 2;
                if self.auto_pad == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            }
            other => return Err(OpError::unsupported(format!("auto_pad '{other}'"))),
        };
        let span = input + pad_begin + pad_end;
        if span < extent {
            return Err(OpError::invalid(format!(
                "the window (kernel {kernel}, dilation {dilation}) does not fit spatial axis {i} \
                 of size {input} with pads ({pad_begin}, {pad_end})"
            )));
        }
        let mut output = if self.ceil_mode {
            (span - extent).div_ceil(stride) + 1
        } else {
            (span - extent) / stride + 1
        };
        // With ceil_mode, a last window that would start in the end padding is dropped (what
        // onnxruntime and PyTorch do).
        if self.ceil_mode && (output - 1) * stride >= input + pad_begin {
            output -= 1;
        }
        Ok(Axis {
            input,
            kernel,
            stride,
            dilation,
            pad_begin,
            pad_end,
            output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(kernel: usize, stride: usize, dil: usize, pads: [usize; 2], auto: &str) -> Window {
        Window {
            kernel: vec![kernel],
            strides: vec![stride],
            dilations: vec![dil],
            pads: pads.to_vec(),
            auto_pad: auto.into(),
            ceil_mode: false,
        }
    }

    #[test]
    fn output_sizes_and_same_pads() {
        let a = win(3, 2, 1, [1, 1], "NOTSET").axes(&[7]).unwrap()[0];
        assert_eq!(a.output, 4);
        let v = win(3, 2, 2, [0, 0], "VALID").axes(&[9]).unwrap()[0];
        assert_eq!(v.output, 3);
        // SAME: out = ceil(7/2) = 4, pads total (4-1)*2 + 3 - 7 = 2.
        let u = win(3, 2, 1, [0, 0], "SAME_UPPER").axes(&[7]).unwrap()[0];
        assert_eq!((u.output, u.pad_begin, u.pad_end), (4, 1, 1));
        // Kernel 4: total (4-1)*2 + 4 - 7 = 3, the odd pad at the beginning for SAME_LOWER.
        let l = win(4, 2, 1, [0, 0], "SAME_LOWER").axes(&[7]).unwrap()[0];
        assert_eq!((l.output, l.pad_begin, l.pad_end), (4, 2, 1));
        let u = win(4, 2, 1, [0, 0], "SAME_UPPER").axes(&[7]).unwrap()[0];
        assert_eq!((u.pad_begin, u.pad_end), (1, 2));
        assert!(win(5, 1, 1, [0, 0], "NOTSET").axes(&[3]).is_err());
        assert!(win(1, 1, 1, [0, 0], "WEIRD").axes(&[3]).is_err());
    }

    #[test]
    fn ceil_mode_drops_a_window_starting_in_the_padding() {
        let mut w = win(2, 2, 1, [0, 0], "NOTSET");
        w.ceil_mode = true;
        assert_eq!(w.axes(&[5]).unwrap()[0].output, 3);
        // in 4, pads (0, 1), kernel 2, stride 2: ceil(3/2)+1 = 3, but window 2 starts at 4 = in.
        w.pads = vec![0, 1];
        assert_eq!(w.axes(&[4]).unwrap()[0].output, 2);
    }

    #[test]
    fn taps_inside_the_input() {
        let a = win(3, 1, 2, [2, 2], "NOTSET").axes(&[4]).unwrap()[0];
        // o=0 reads -2, 0, 2 -> taps 1..3; o=3 reads 1, 3, 5 -> taps 0..2.
        assert_eq!(a.taps(0), 1..3);
        assert_eq!(a.taps(3), 0..2);
    }
}
