//! The im2col/GEMM convolution against a direct loop nest, over the shapes that break tiling and
//! padding logic, and the Conv op's attribute handling.

use super::super::test_util::*;
use super::super::OpError;
use super::*;
use crate::tensor::{Data, Tensor};

/// The definition, one output at a time, in f64.
fn direct(g: &Conv2d, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let [n, m, oh, ow] = g.output_shape();
    let (cg, mg) = (g.in_channels / g.groups, m / g.groups);
    let (ih, iw, kh, kw) = (g.h.input, g.w.input, g.h.kernel, g.w.kernel);
    let mut y = Vec::with_capacity(n * m * oh * ow);
    for ni in 0..n {
        for co in 0..m {
            let gi = co / mg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b[co] as f64);
                    for ci in 0..cg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (iy, ix) = (g.h.at(oy, ky), g.w.at(ox, kx));
                                if iy < 0 || ix < 0 || iy >= ih as isize || ix >= iw as isize {
                                    continue;
                                }
                                let c = gi * cg + ci;
                                let xv = x[((ni * g.in_channels + c) * ih + iy as usize) * iw
                                    + ix as usize];
                                let wv = w[((co * cg + ci) * kh + ky) * kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y.push(acc as f32);
                }
            }
        }
    }
    y
}

/// `f` on a one-thread pool whose thread's scratch buffer is full of NaN.
fn poisoned<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        super::super::blas::with_scratch::<f32, _>(1 << 22, |b| b.fill(f32::NAN));
        f()
    })
}

struct Case {
    x: [usize; 4],
    w: [usize; 4],
    groups: usize,
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [usize; 4],
    auto_pad: &'static str,
    bias: bool,
}

impl Case {
    fn new(x: [usize; 4], w: [usize; 4]) -> Self {
        Case {
            x,
            w,
            groups: 1,
            strides: [1, 1],
            dilations: [1, 1],
            pads: [0; 4],
            auto_pad: "NOTSET",
            bias: true,
        }
    }

    fn geom(&self) -> Conv2d {
        let window = Window {
            kernel: self.w[2..].to_vec(),
            strides: self.strides.to_vec(),
            dilations: self.dilations.to_vec(),
            pads: self.pads.to_vec(),
            auto_pad: self.auto_pad.into(),
            ceil_mode: false,
        };
        Conv2d::new(self.x, self.w, self.groups, &window).unwrap()
    }

    /// Compares with the loop nest at the default tile and at `tiles`.
    fn check(&self, tiles: &[usize]) {
        let g = self.geom();
        let x = noise(self.x.iter().product(), 1);
        let w = noise(self.w.iter().product(), 2);
        let b = self.bias.then(|| noise(self.w[0], 3));
        let want = direct(&g, &x, &w, b.as_deref());
        let got = conv2d(&g, &x, &w, b.as_deref());
        let err = rel_l2(&got, &want);
        assert!(err <= 1e-5, "{g:?}: default tile, rel L2 {err}");
        // The input as the parts of a channel Concat, each its own buffer (one of them empty), read
        // in place: the same values packed, so the same bits.
        let c = self.x[1];
        let parts = split_channels(&x, self.x, &[1, c / 2, c / 2]);
        let layout: Vec<(&[f32], usize)> = parts.iter().map(|(v, c)| (&v[..], *c)).collect();
        let planes = planes_of_parts(&layout, self.x[0], self.x[2] * self.x[3]);
        assert_eq!(planes.len(), self.x[0] * c);
        let split = poisoned(|| conv2d_planes(&g, &planes, &w, b.as_deref()));
        assert!(bits(&split) == bits(&got), "{g:?}: read from concat parts");
        // Both kernels: the packed one (where the CPU has it) and its portable twin.
        // Scratch left as NaN by earlier work on the thread: whatever the kernel reads it must
        // have written first.
        for &t in tiles.iter().chain([default_tile(&g)].iter()) {
            let got = poisoned(|| conv2d_with_tile(&g, &x, &w, b.as_deref(), t));
            let err = rel_l2(&got, &want);
            assert!(err <= 1e-5, "{g:?}: tile {t}, rel L2 {err}");
            let got = poisoned(|| conv2d_portable(&g, &x, &w, b.as_deref(), t));
            let err = rel_l2(&got, &want);
            assert!(err <= 1e-5, "{g:?}: portable, tile {t}, rel L2 {err}");
            // The direct AVX2 kernel too, where the executor takes the Winograd one instead.
            #[cfg(target_arch = "x86_64")]
            if avx2::available() {
                let got = poisoned(|| avx2::conv2d(&g, &x, &w, b.as_deref(), t));
                let err = rel_l2(&got, &want);
                assert!(err <= 1e-5, "{g:?}: direct AVX2, tile {t}, rel L2 {err}");
            }
        }
    }
}

/// NCHW `x` of shape `shape` cut along channels before each of `cuts` (ascending; a repeated cut
/// makes an empty part): the parts and their channel counts.
fn split_channels<T: Copy>(x: &[T], shape: [usize; 4], cuts: &[usize]) -> Vec<(Vec<T>, usize)> {
    let [n, c, h, w] = shape;
    let plane = h * w;
    let bounds: Vec<usize> = std::iter::once(0)
        .chain(cuts.iter().map(|&k| k.min(c)))
        .chain(std::iter::once(c))
        .collect();
    bounds
        .windows(2)
        .map(|b| {
            let part = (0..n)
                .flat_map(|ni| {
                    x[(ni * c + b[0]) * plane..(ni * c + b[1]) * plane]
                        .iter()
                        .copied()
                })
                .collect();
            (part, b[1] - b[0])
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn odd_sizes_3x3_padded() {
    let mut c = Case::new([1, 3, 7, 9], [5, 3, 3, 3]);
    c.pads = [1, 1, 1, 1];
    c.check(&[1, 5, 9, 64]);
}

#[test]
fn stride_larger_than_kernel() {
    let mut c = Case::new([1, 2, 11, 10], [4, 2, 2, 2]);
    c.strides = [3, 3];
    c.check(&[2, 7]);
    c.strides = [3, 2];
    c.pads = [0, 1, 2, 0];
    c.check(&[3]);
}

#[test]
fn dilation_with_asymmetric_pads() {
    let mut c = Case::new([1, 3, 10, 12], [4, 3, 3, 2]);
    c.dilations = [2, 3];
    c.pads = [1, 0, 2, 3];
    c.check(&[7, 13]);
    c.strides = [2, 1];
    c.check(&[5]);
}

#[test]
fn groups_and_depthwise() {
    let mut c = Case::new([1, 4, 8, 8], [6, 2, 3, 3]);
    c.groups = 2;
    c.pads = [1, 1, 1, 1];
    c.check(&[10]);
    let mut d = Case::new([2, 5, 9, 7], [5, 1, 3, 3]);
    d.groups = 5;
    d.pads = [1, 1, 1, 1];
    d.strides = [2, 2];
    d.check(&[4]);
    // Depthwise with a channel multiplier of 2.
    let mut d2 = Case::new([1, 3, 6, 6], [6, 1, 3, 3]);
    d2.groups = 3;
    d2.bias = false;
    d2.check(&[5]);
}

#[test]
fn auto_pad_modes() {
    for auto in ["SAME_UPPER", "SAME_LOWER", "VALID"] {
        let mut c = Case::new([1, 2, 9, 8], [3, 2, 4, 3]);
        c.auto_pad = auto;
        c.strides = [2, 2];
        c.check(&[6]);
        let g = c.geom();
        if auto != "VALID" {
            assert_eq!((g.h.output, g.w.output), (5, 4), "{auto}");
        }
    }
}

#[test]
fn pointwise_and_its_neighbours() {
    // 1x1 stride 1 unpadded: no im2col.
    let c = Case::new([2, 6, 5, 7], [4, 6, 1, 1]);
    assert!(kernel_is_pointwise(&c.geom()));
    c.check(&[1, 8, 35]);
    let mut s = Case::new([1, 6, 5, 7], [4, 6, 1, 1]);
    s.strides = [2, 2];
    s.check(&[4]);
    let mut p = Case::new([1, 6, 5, 7], [4, 6, 1, 1]);
    p.pads = [1, 0, 0, 1];
    p.bias = false;
    p.check(&[4]);
}

fn kernel_is_pointwise(g: &Conv2d) -> bool {
    [g.h, g.w]
        .iter()
        .all(|a| a.kernel == 1 && a.stride == 1 && a.pad_begin == 0 && a.pad_end == 0)
}

#[test]
fn batch_two_without_bias() {
    let mut c = Case::new([2, 3, 6, 5], [4, 3, 3, 3]);
    c.bias = false;
    c.pads = [2, 1, 0, 1];
    c.check(&[3, 11]);
}

#[test]
fn many_tiles_across_threads() {
    // 1600 pixels in tiles that cut rows mid-way; every tile a task of the pool.
    let mut c = Case::new([1, 8, 40, 40], [16, 8, 3, 3]);
    c.pads = [1, 1, 1, 1];
    c.check(&[37, 160, 256]);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| c.check(&[61]));
    let p = Case::new([2, 16, 30, 30], [24, 16, 1, 1]);
    pool.install(|| p.check(&[100]));
}

#[test]
fn f64_kernel_matches() {
    let c = Case::new([1, 2, 5, 5], [3, 2, 3, 3]);
    let g = c.geom();
    let x = noise(50, 4);
    let w = noise(54, 5);
    let want = direct(&g, &x, &w, None);
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    let y64 = conv2d(&g, &x64, &w64, None);
    let got: Vec<f32> = y64.iter().map(|&v| v as f32).collect();
    assert!(rel_l2(&got, &want) < 1e-6);
    // The portable kernel (f64 has no other) reading a Concat's parts in place.
    let parts = split_channels(&x64, c.x, &[1]);
    let layout: Vec<(&[f64], usize)> = parts.iter().map(|(v, c)| (&v[..], *c)).collect();
    let planes = planes_of_parts(&layout, 1, 25);
    assert_eq!(conv2d_planes(&g, &planes, &w64, None), y64);
}

/// Concat (axis `axis`) of `parts`, then Conv (+Relu) with `w`, `b`: as the two ops, and as the
/// executor's fused step.
fn concat_then_conv(
    parts: &[&Tensor],
    axis: i64,
    w: &Tensor,
    b: &Tensor,
    relu: bool,
) -> (Result<Tensor, OpError>, Result<Tensor, ConcatConvError>) {
    let concat = node("Concat", parts.len(), vec![int("axis", axis)]);
    let conv = conv_node(vec![ints("pads", &[1, 1, 1, 1])], 3);
    let two = run(&concat, parts, 13).and_then(|x| {
        let y = run(&conv, &[&x, w, b], 13)?;
        Ok(if relu {
            run(&node("Relu", 1, vec![]), &[&y], 13)?
        } else {
            y
        })
    });
    let inputs: Vec<Option<&Tensor>> = parts.iter().copied().chain([w, b]).map(Some).collect();
    let fused =
        super::super::eval_concat_conv(&concat, &conv, &inputs, relu, 13).map(|mut v| v.remove(0));
    (two, fused)
}

#[test]
fn a_concat_read_in_place_gives_the_two_ops_bits() {
    let part = |c: usize, h: usize, seed: u64| {
        let shape = [2, c, h, 6];
        f32s(&shape, &noise(shape.iter().product(), seed))
    };
    let (a, bb, c) = (part(3, 5, 1), part(1, 5, 2), part(4, 5, 3));
    let w = f32s(&[5, 8, 3, 3], &noise(5 * 8 * 9, 4));
    let b = f32s(&[5], &noise(5, 5));
    for relu in [false, true] {
        for axis in [1, -3] {
            let (two, fused) = concat_then_conv(&[&a, &bb, &c], axis, &w, &b, relu);
            let (two, fused) = (two.unwrap(), fused.unwrap());
            assert_eq!(fused.shape, [2, 5, 5, 6]);
            assert!(
                bits(&fused.as_f32s()) == bits(&two.as_f32s()),
                "relu {relu}"
            );
        }
    }
    // f16 parts are widened part by part: the bits of widening the Concat.
    let half = |t: &Tensor| {
        let v = t.as_f32s().into_iter().map(half::f16::from_f32).collect();
        Tensor::new(t.shape.clone(), Data::F16(v)).unwrap()
    };
    let (ah, bh, ch, wh, b_h) = (half(&a), half(&bb), half(&c), half(&w), half(&b));
    let (two, fused) = concat_then_conv(&[&ah, &bh, &ch], 1, &wh, &b_h, true);
    let (two, fused) = (two.unwrap(), fused.unwrap());
    assert_eq!(fused.dtype(), ah.dtype());
    assert_eq!(fused, two);
    // Along another axis (heights 5 + 3 + 2) the Concat runs as its own op first.
    let (a2, c2) = (part(8, 3, 6), part(8, 2, 7));
    let a8 = part(8, 5, 8);
    let (two, fused) = concat_then_conv(&[&a8, &a2, &c2], 2, &w, &b, true);
    let (two, fused) = (two.unwrap(), fused.unwrap());
    assert_eq!(fused.shape, [2, 5, 10, 6]);
    assert!(bits(&fused.as_f32s()) == bits(&two.as_f32s()));
}

#[test]
fn a_concat_read_in_place_blames_the_node_at_fault() {
    let a = f32s(&[1, 2, 4, 4], &noise(32, 1));
    let w = f32s(&[3, 3, 3, 3], &noise(81, 2));
    let b = f32s(&[3], &noise(3, 3));
    // Parts whose heights differ cannot be concatenated along channels: the Concat's error.
    let short = f32s(&[1, 1, 3, 4], &noise(12, 4));
    let (two, fused) = concat_then_conv(&[&a, &short], 1, &w, &b, false);
    assert!(two.is_err());
    assert!(
        matches!(fused, Err(ConcatConvError::Concat(_))),
        "{fused:?}"
    );
    // Mixed element types: the Concat's error too.
    let other = Tensor::new(vec![1, 1, 4, 4], Data::F64(vec![0.0; 16])).unwrap();
    let (_, fused) = concat_then_conv(&[&a, &other], 1, &w, &b, false);
    assert!(
        matches!(fused, Err(ConcatConvError::Concat(_))),
        "{fused:?}"
    );
    // 2 + 2 channels against weights for 3: the Conv's error, read in place or not.
    let (two, fused) = concat_then_conv(&[&a, &a], 1, &w, &b, false);
    assert!(two.is_err());
    assert!(matches!(fused, Err(ConcatConvError::Conv(_))), "{fused:?}");
    let (_, fused) = concat_then_conv(&[&a, &a], 2, &w, &b, false);
    assert!(matches!(fused, Err(ConcatConvError::Conv(_))), "{fused:?}");
}

fn conv_node(
    attrs: Vec<crate::onnx::proto::AttributeProto>,
    n: usize,
) -> crate::onnx::proto::NodeProto {
    node("Conv", n, attrs)
}

#[test]
fn op_reads_attributes() {
    let x = f32s(&[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
    let w = f32s(&[1, 1, 2, 2], &[1., 0., 0., 1.]);
    let b = f32s(&[1], &[10.]);
    // x[i][j] + x[i+1][j+1], plus 10.
    let y = run(&conv_node(vec![], 3), &[&x, &w, &b], 13).unwrap();
    assert_eq!(y, f32s(&[1, 1, 2, 2], &[16., 18., 22., 24.]));
    let n = conv_node(
        vec![
            string("auto_pad", "SAME_UPPER"),
            ints("strides", &[2, 2]),
            ints("kernel_shape", &[2, 2]),
        ],
        2,
    );
    // Output 2x2, pads total (2-1)*2+2-3 = 1 at the end: windows at 0 and 2.
    let y = run(&n, &[&x, &w], 13).unwrap();
    assert_eq!(y, f32s(&[1, 1, 2, 2], &[6., 3., 7., 9.]));
    // 1-D.
    let x1 = f32s(&[1, 2, 4], &[1., 2., 3., 4., 10., 20., 30., 40.]);
    let w1 = f32s(&[1, 2, 3], &[1., 1., 1., 0., 1., 0.]);
    let n1 = conv_node(vec![ints("pads", &[1, 0])], 2);
    let y1 = run(&n1, &[&x1, &w1], 13).unwrap();
    assert_eq!(y1, f32s(&[1, 1, 3], &[13., 26., 39.]));
}

#[test]
fn op_computes_half_in_f32() {
    let x = Tensor::new(
        vec![1, 1, 2, 2],
        Data::F16([1.0f32, 2., 3., 4.].map(half::f16::from_f32).to_vec()),
    )
    .unwrap();
    let w = Tensor::new(vec![1, 1, 1, 1], Data::F16(vec![half::f16::from_f32(0.5)])).unwrap();
    let y = run(&conv_node(vec![], 2), &[&x, &w], 13).unwrap();
    assert_eq!(y.dtype(), x.dtype());
    assert_eq!(y.as_f32s(), vec![0.5, 1., 1.5, 2.]);
}

#[test]
fn op_refuses_what_it_cannot_do() {
    let x = f32s(&[1, 2, 3, 3], &[0.; 18]);
    let w = f32s(&[2, 1, 1, 1], &[1.; 2]);
    // Channels do not fit group 1.
    let e = run(&conv_node(vec![], 2), &[&x, &w], 13).unwrap_err();
    assert!(matches!(e, OpError::Invalid(_)), "{e}");
    let ok = run(&conv_node(vec![int("group", 2)], 2), &[&x, &w], 13).unwrap();
    assert_eq!(ok.shape, vec![1, 2, 3, 3]);
    let bad_bias = f32s(&[3], &[0.; 3]);
    let n = conv_node(vec![int("group", 2)], 3);
    assert!(run(&n, &[&x, &w, &bad_bias], 13).is_err());
    let x3 = f32s(&[1, 1, 2, 2, 2], &[0.; 8]);
    let w3 = f32s(&[1, 1, 1, 1, 1], &[1.]);
    let e = run(&conv_node(vec![], 2), &[&x3, &w3], 13).unwrap_err();
    assert!(matches!(e, OpError::Unsupported(_)), "{e}");
    let xi = i64s(&[1, 1, 1, 1], &[1]);
    assert!(run(&conv_node(vec![], 2), &[&xi, &xi], 13).is_err());
    let e = run(
        &conv_node(vec![ints("kernel_shape", &[3, 3])], 2),
        &[&x, &w],
        13,
    );
    assert!(e.is_err());
}

#[test]
fn deep_wide_layers_with_relu() {
    // What the AVX2 kernel splits: depth 576 (two depth blocks, the second accumulating onto the
    // first and applying Relu), 13 output channels (a short channel block), rows of 37 and 40
    // pixels (interior panels read straight from a row, border and short panels element by
    // element), a dilated tap and a stride-2 layer (every panel packed element by element).
    let mut cases = vec![Case::new([1, 64, 9, 37], [13, 64, 3, 3])];
    cases[0].pads = [1, 1, 1, 1];
    let mut dilated = Case::new([1, 60, 6, 40], [7, 60, 3, 3]);
    dilated.dilations = [1, 2];
    dilated.pads = [1, 2, 1, 2];
    cases.push(dilated);
    let mut strided = Case::new([1, 60, 11, 41], [9, 60, 3, 3]);
    strided.strides = [2, 2];
    strided.pads = [1, 1, 1, 1];
    cases.push(strided);
    for c in &cases {
        c.check(&[16, 50, 300]);
        let g = Conv2d {
            relu: true,
            ..c.geom()
        };
        let x = noise(c.x.iter().product(), 5);
        let w = noise(c.w.iter().product(), 6);
        let b = noise(c.w[0], 7);
        let want: Vec<f32> = direct(&g, &x, &w, Some(&b))
            .into_iter()
            .map(|v| v.max(0.0))
            .collect();
        assert!(want.contains(&0.0) && want.iter().any(|&v| v > 0.0));
        for got in [
            conv2d(&g, &x, &w, Some(&b)),
            conv2d_portable(&g, &x, &w, Some(&b), 64),
        ] {
            let err = rel_l2(&got, &want);
            assert!(err <= 1e-5, "{g:?} with Relu: rel L2 {err}");
        }
    }
}

#[test]
fn strided_panels_read_inside_the_row() {
    // Output rows of 40 pixels at stride 2: the middle panel of 16 reads only inside the input
    // (packed without bounds checks), the first reaches into the left pad, the last is short.
    // Also stride 3 with a dilated tap, and 2×2 kernels whose taps stop short of the pad.
    let mut s2 = Case::new([1, 8, 9, 80], [5, 8, 3, 3]);
    s2.strides = [2, 2];
    s2.pads = [1, 1, 1, 1];
    s2.check(&[16, 40, 100]);
    let mut s3 = Case::new([2, 4, 7, 110], [3, 4, 3, 3]);
    s3.strides = [1, 3];
    s3.dilations = [1, 2];
    s3.pads = [1, 2, 1, 2];
    s3.check(&[20, 37]);
    let mut k2 = Case::new([1, 6, 6, 66], [4, 6, 2, 2]);
    k2.strides = [2, 2];
    k2.check(&[33]);
}

#[test]
fn a_recycled_output_buffer_is_overwritten() {
    // Inside a run the output may be a freed buffer of the same size, full of old values.
    let mut c = Case::new([1, 16, 64, 70], [16, 16, 3, 3]);
    c.pads = [1, 1, 1, 1];
    let g = c.geom();
    let x = noise(c.x.iter().product(), 8);
    let w = noise(c.w.iter().product(), 9);
    let b = noise(16, 10);
    let _run = crate::exec::recycle::Scope::enter();
    // Both kernels, with and without a bias (without one, the portable GEMM must not read its
    // destination).
    for bias in [None, Some(b.as_slice())] {
        let want = direct(&g, &x, &w, bias);
        for portable in [false, true] {
            crate::exec::recycle::give(vec![f32::NAN; want.len()]);
            assert_eq!(crate::exec::recycle::pooled(), want.len());
            let got = if portable {
                conv2d_portable(&g, &x, &w, bias, 64)
            } else {
                conv2d(&g, &x, &w, bias)
            };
            assert_eq!(
                crate::exec::recycle::pooled(),
                0,
                "the NaN buffer was taken"
            );
            let err = rel_l2(&got, &want);
            assert!(
                err <= 1e-5,
                "portable {portable}, bias {}: rel L2 {err}",
                bias.is_some()
            );
        }
    }
}

#[test]
fn row_packed_layouts_at_their_edges() {
    // The AVX2 kernel packs input rows instead of im2col for stride 1 along the width and 1 or 3
    // taps across. What that layout has to get right: a 3×1 kernel (one tap across, three rows),
    // a 1×3 one (three taps, one row), vertical stride 2 with horizontal stride 1, tiles that
    // start mid-row and span several rows, pads wider than the kernel reaches (a column, a whole
    // segment row, in the padding), two channel blocks (depth 9·60 > 512) and a group split.
    let mut tall = Case::new([1, 5, 13, 11], [4, 5, 3, 1]);
    tall.pads = [1, 0, 1, 0];
    tall.check(&[5, 11, 40]);
    let mut wide = Case::new([2, 4, 6, 21], [7, 4, 1, 3]);
    wide.pads = [0, 1, 0, 1];
    wide.check(&[3, 21, 50]);
    let mut vertical = Case::new([1, 60, 12, 19], [5, 60, 3, 3]);
    vertical.strides = [2, 1];
    vertical.pads = [1, 1, 1, 1];
    vertical.check(&[7, 19, 45]);
    let mut padded = Case::new([1, 3, 4, 5], [2, 3, 3, 3]);
    padded.pads = [4, 5, 4, 5];
    padded.check(&[1, 13, 30]);
    let mut grouped = Case::new([1, 8, 9, 17], [6, 4, 3, 3]);
    grouped.groups = 2;
    grouped.dilations = [2, 2];
    grouped.pads = [2, 2, 2, 2];
    grouped.check(&[9, 17, 100]);
}

/// A Winograd implementation: [`winograd::portable`] or [`winograd::avx2::conv2d_planes`].
type WinogradFn = fn(&Conv2d, &[&[f32]], &[f32], Option<&[f32]>, usize) -> Vec<f32>;

/// Both Winograd implementations (the AVX2 one where the CPU has it) against the loop nest,
/// `tiles` tiles per task (and the default), from a NaN-poisoned scratch buffer and from a
/// channel Concat's parts. The worst relative L2 error.
fn check_winograd(c: &Case, relu: bool, tiles: &[usize]) -> f64 {
    let g = Conv2d { relu, ..c.geom() };
    let x = noise(c.x.iter().product(), 11);
    let w = noise(c.w.iter().product(), 12);
    let b = c.bias.then(|| noise(c.w[0], 13));
    let mut want = direct(&g, &x, &w, b.as_deref());
    if relu {
        want.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    let planes = planes(&g, &x);
    let portable: (&str, WinogradFn) = ("portable", winograd::portable);
    #[cfg(target_arch = "x86_64")]
    let kernels = std::iter::once(portable)
        .chain(avx2::available().then_some(("avx2", winograd::avx2::conv2d_planes as WinogradFn)));
    #[cfg(not(target_arch = "x86_64"))]
    let kernels = std::iter::once(portable);
    let mut worst = 0.0f64;
    for (name, kernel) in kernels {
        let mut first: Option<Vec<u32>> = None;
        for &t in tiles.iter().chain([winograd::default_tiles(&g)].iter()) {
            let got = poisoned(|| kernel(&g, &planes, &w, b.as_deref(), t));
            assert_eq!(got.len(), want.len());
            let err = rel_l2(&got, &want);
            assert!(err <= 1e-5, "{name} {g:?}: {t} tiles a task, rel L2 {err}");
            worst = worst.max(err);
            // Each tile's sums run in the same order however the tiles are split into tasks,
            // so the result does not depend on the thread count (calibration is reproducible).
            // The `gemm` crate blocks its sums by the product's size, so only the AVX2 kernel.
            if name == "avx2" {
                let got = bits(&got);
                assert!(
                    first.get_or_insert_with(|| got.clone()) == &got,
                    "{g:?}: {t} tiles a task"
                );
            }
        }
        let parts = split_channels(&x, c.x, &[c.x[1] / 3, c.x[1] / 3]);
        let layout: Vec<(&[f32], usize)> = parts.iter().map(|(v, n)| (&v[..], *n)).collect();
        let split = planes_of_parts(&layout, c.x[0], c.x[2] * c.x[3]);
        let from_parts = kernel(&g, &split, &w, b.as_deref(), 16);
        let whole = kernel(&g, &planes, &w, b.as_deref(), 16);
        assert!(
            bits(&from_parts) == bits(&whole),
            "{name} {g:?}: read from concat parts"
        );
    }
    worst
}

#[test]
fn winograd_tiles_at_the_edges() {
    // Odd output sizes (a last tile row and column with one pixel each), tile rows that are not a
    // multiple of 8 tiles (runs that start mid-vector), windows that reach into the padding on
    // every side, no padding at all (a valid convolution, output smaller than the input), pads
    // of 2 (output larger), 5 output channels (one short channel block), batch 2, no bias, and
    // tasks of 1, 3, 8, 17 and 100 tiles, which cut tile rows anywhere.
    let mut odd = Case::new([1, 7, 9, 13], [5, 7, 3, 3]);
    odd.pads = [1, 1, 1, 1];
    let mut valid = Case::new([2, 16, 10, 21], [13, 16, 3, 3]);
    valid.bias = false;
    let mut wide = Case::new([1, 3, 5, 40], [8, 3, 3, 3]);
    wide.pads = [2, 2, 2, 2];
    let mut lopsided = Case::new([1, 9, 12, 35], [7, 9, 3, 3]);
    lopsided.pads = [0, 2, 1, 0];
    for c in [&odd, &valid, &wide, &lopsided] {
        for relu in [false, true] {
            check_winograd(c, relu, &[1, 3, 8, 17, 100]);
        }
    }
}

#[test]
fn winograd_deep_layers_and_its_rounding() {
    // 600 input channels are two depth blocks (the second accumulating onto the first); a
    // 48×64 map with HRNet's 48 channels is its commonest layer. The error stays within a few
    // times the float32 rounding of the direct sums (1e-5 is the executor's bound; 2–7e-7 was
    // measured in numpy on 48–720 channels).
    let mut deep = Case::new([1, 600, 6, 20], [14, 600, 3, 3]);
    deep.pads = [1, 1, 1, 1];
    let err = check_winograd(&deep, true, &[8, 30]);
    assert!(err < 2e-6, "600 channels: rel L2 {err}");
    let mut hrnet = Case::new([1, 48, 48, 64], [48, 48, 3, 3]);
    hrnet.pads = [1, 1, 1, 1];
    let err = check_winograd(&hrnet, false, &[64]);
    assert!(err < 2e-6, "48 channels: rel L2 {err}");
    // The executor routes exactly these layers here: HRNet's, not a strided, dilated, grouped or
    // narrow one.
    assert!(winograd::applies(&hrnet.geom()));
    let mut strided = Case::new([1, 48, 8, 8], [48, 48, 3, 3]);
    strided.strides = [2, 2];
    let mut dilated = Case::new([1, 48, 8, 8], [48, 48, 3, 3]);
    dilated.dilations = [2, 2];
    let mut grouped = Case::new([1, 48, 8, 8], [48, 24, 3, 3]);
    grouped.groups = 2;
    let narrow = Case::new([1, 3, 8, 8], [48, 3, 3, 3]);
    for c in [strided, dilated, grouped, narrow] {
        assert!(!winograd::applies(&c.geom()), "{:?}", c.geom());
    }
}

#[test]
fn f32_kernel_choice() {
    use super::kernel::choose_kernels;
    use F32Kernels::{Avx2, Gemm};
    // AVX2 without AVX-512 keeps the micro-kernel; AVX-512 and non-x86 CPUs take the crate.
    assert_eq!(choose_kernels(true, false, None), (Avx2, None));
    assert_eq!(choose_kernels(true, true, None), (Gemm, None));
    assert_eq!(choose_kernels(false, false, None), (Gemm, None));
    // The override, both ways, and an empty one is no override.
    assert_eq!(choose_kernels(true, true, Some("avx2")), (Avx2, None));
    assert_eq!(choose_kernels(true, false, Some(" gemm ")), (Gemm, None));
    assert_eq!(choose_kernels(true, false, Some("")), (Avx2, None));
    // What the CPU cannot run, or a typo, falls back to the automatic choice and says why.
    let (k, note) = choose_kernels(false, false, Some("avx2"));
    assert_eq!(k, Gemm);
    assert!(note.unwrap().contains("no AVX2"));
    let (k, note) = choose_kernels(true, true, Some("avx512"));
    assert_eq!(k, Gemm);
    assert!(note
        .unwrap()
        .contains("OCRNET_CONV_KERNELS=avx512: expected avx2 or gemm"));
}
