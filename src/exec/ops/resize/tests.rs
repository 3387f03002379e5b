//! Resize against values worked out from the spec's formulas (and matching onnxruntime 1.31's CPU
//! provider), per coordinate mode, nearest mode and opset.

use super::super::test_util::*;
use super::super::OpError;
use crate::onnx::proto::AttributeProto;
use crate::tensor::{Data, Tensor};

fn close(got: &Tensor, shape: &[usize], want: &[f32]) {
    assert_eq!(got.shape, shape);
    let g = got.as_f32s();
    for (a, b) in g.iter().zip(want) {
        assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{g:?} vs {want:?}");
    }
}

/// A Resize-11+ node fed (x, roi, scales, sizes), "" where absent.
fn resize(
    x: &Tensor,
    scales: Option<&[f32]>,
    sizes: Option<&[i64]>,
    attrs: Vec<AttributeProto>,
    opset: i64,
) -> Result<Tensor, OpError> {
    let n = node("Resize", 4, attrs);
    let s = scales.map(|s| f32s(&[s.len()], s));
    let z = sizes.map(|z| i64s(&[z.len()], z));
    let ins = [Some(x), None, s.as_ref(), z.as_ref()];
    super::super::eval(&n, &ins, opset).map(|mut v| v.remove(0))
}

fn linear(mode: &str) -> Vec<AttributeProto> {
    vec![
        string("mode", "linear"),
        string("coordinate_transformation_mode", mode),
    ]
}

fn two_by_two() -> Tensor {
    f32s(&[1, 1, 2, 2], &[1., 2., 3., 4.])
}

#[test]
fn bilinear_2x2_to_4x4_per_coordinate_mode() {
    let x = two_by_two();
    let up = Some(&[1., 1., 2., 2.][..]);
    // half_pixel: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
    let half = [
        1., 1.25, 1.75, 2., 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3., 3.25, 3.75, 4.,
    ];
    close(
        &resize(&x, up, None, linear("half_pixel"), 13).unwrap(),
        &[1, 1, 4, 4],
        &half,
    );
    close(
        &resize(&x, up, None, linear("pytorch_half_pixel"), 13).unwrap(),
        &[1, 1, 4, 4],
        &half,
    );
    // align_corners: sources 0, 1/3, 2/3, 1.
    let t = 1. / 3.;
    let ac: Vec<f32> = (0..4)
        .flat_map(|i| (0..4).map(move |j| 1. + 2. * t * i as f32 + t * j as f32))
        .collect();
    close(
        &resize(&x, up, None, linear("align_corners"), 13).unwrap(),
        &[1, 1, 4, 4],
        &ac,
    );
    // asymmetric: sources 0, 0.5, 1, 1.5 (clamped to 1).
    let asym = [
        1., 1.5, 2., 2., 2., 2.5, 3., 3., 3., 3.5, 4., 4., 3., 3.5, 4., 4.,
    ];
    close(
        &resize(&x, up, None, linear("asymmetric"), 13).unwrap(),
        &[1, 1, 4, 4],
        &asym,
    );
}

#[test]
fn sizes_and_single_pixel_outputs() {
    let x = two_by_two();
    // One output row: half_pixel reads source 0.5 (the mean), pytorch_half_pixel source 0.
    let sizes = Some(&[1, 1, 1, 4][..]);
    let hp = resize(&x, None, sizes, linear("half_pixel"), 13).unwrap();
    close(&hp, &[1, 1, 1, 4], &[2., 2.25, 2.75, 3.]);
    let pt = resize(&x, None, sizes, linear("pytorch_half_pixel"), 13).unwrap();
    close(&pt, &[1, 1, 1, 4], &[1., 1.25, 1.75, 2.]);
    // Opset 18 axes: sizes for H and W only; W 2 -> 3 reads sources 0, 0.5, 1.
    let mut attrs = linear("half_pixel");
    attrs.push(ints("axes", &[2, 3]));
    let y = resize(&x, None, Some(&[4, 3]), attrs, 18).unwrap();
    close(
        &y,
        &[1, 1, 4, 3],
        &[1., 1.5, 2., 1.5, 2., 2.5, 2.5, 3., 3.5, 3., 3.5, 4.],
    );
    // Both or neither of scales and sizes.
    assert!(resize(&x, Some(&[1., 1., 2., 2.]), sizes, linear("half_pixel"), 13).is_err());
    assert!(resize(&x, None, None, linear("half_pixel"), 13).is_err());
    assert!(resize(&x, Some(&[1., 2.]), None, linear("half_pixel"), 13).is_err());
}

#[test]
fn fractional_scales_and_downsampling() {
    let x = f32s(&[1, 3], &[0., 3., 6.]);
    // half_pixel, 3 -> floor(4.5) = 4 with the given scale 1.5 (not 4/3): sources
    // (j + 0.5) / 1.5 - 0.5 = -1/6 (clamped to 0), 1/2, 7/6, 11/6.
    let y = resize(&x, Some(&[1., 1.5]), None, linear("half_pixel"), 13).unwrap();
    close(&y, &[1, 4], &[0., 1.5, 3.5, 5.5]);
    // half_pixel_symmetric (opset 19) keeps the result centred: sources 0, 2/3, 4/3, 2.
    let y = resize(
        &x,
        Some(&[1., 1.5]),
        None,
        linear("half_pixel_symmetric"),
        19,
    )
    .unwrap();
    close(&y, &[1, 4], &[0., 2., 4., 6.]);
    // Linear downsampling without antialias: 5 -> 3 reads 1/3, 2, 11/3.
    let x5 = f32s(&[1, 5], &[10., 20., 30., 40., 50.]);
    let y = resize(&x5, Some(&[1., 0.6]), None, linear("half_pixel"), 13).unwrap();
    close(&y, &[1, 3], &[40. / 3., 30., 140. / 3.]);
}

fn nearest(coord: &str, mode: &str) -> Vec<AttributeProto> {
    vec![
        string("mode", "nearest"),
        string("coordinate_transformation_mode", coord),
        string("nearest_mode", mode),
    ]
}

#[test]
fn nearest_modes() {
    let x = f32s(&[1, 2], &[1., 2.]);
    let up = Some(&[1., 2.][..]);
    let cases = [
        // half_pixel sources -0.25, 0.25, 0.75, 1.25.
        ("half_pixel", "round_prefer_floor", [1., 1., 2., 2.]),
        ("half_pixel", "round_prefer_ceil", [1., 1., 2., 2.]),
        ("half_pixel", "floor", [1., 1., 1., 2.]),
        ("half_pixel", "ceil", [1., 2., 2., 2.]),
        // asymmetric sources 0, 0.5, 1, 1.5: the ties decide.
        ("asymmetric", "round_prefer_floor", [1., 1., 2., 2.]),
        ("asymmetric", "round_prefer_ceil", [1., 2., 2., 2.]),
        ("asymmetric", "floor", [1., 1., 2., 2.]),
        ("asymmetric", "ceil", [1., 2., 2., 2.]),
    ];
    for (coord, mode, want) in cases {
        let y = resize(&x, up, None, nearest(coord, mode), 13).unwrap();
        assert_eq!(y, f32s(&[1, 4], &want), "{coord} {mode}");
    }
    // Default attributes: mode nearest, half_pixel, round_prefer_floor.
    assert_eq!(
        resize(&x, up, None, vec![], 13).unwrap(),
        f32s(&[1, 4], &[1., 1., 2., 2.])
    );
    // Any element type.
    let q = Tensor::new(vec![1, 2], Data::I8(vec![-3, 7])).unwrap();
    let y = resize(&q, up, None, vec![], 13).unwrap();
    assert_eq!(y.data, Data::I8(vec![-3, -3, 7, 7]));
    let e = resize(&q, up, None, linear("half_pixel"), 13).unwrap_err();
    assert!(matches!(e, OpError::Unsupported(_)), "{e}");
}

#[test]
fn opset_10_and_upsample_semantics() {
    let x5 = f32s(&[1, 5], &[10., 20., 30., 40., 50.]);
    let s = f32s(&[2], &[1., 0.4]);
    // Resize-10: asymmetric, and downsampling rounds up: sources 0 and 2.5 -> 0 and 3.
    let n10 = node("Resize", 2, vec![string("mode", "nearest")]);
    assert_eq!(
        run(&n10, &[&x5, &s], 10).unwrap(),
        f32s(&[1, 2], &[10., 40.])
    );
    // From 11 round_prefer_floor takes the tie down.
    let y = resize(
        &x5,
        Some(&[1., 0.4]),
        None,
        nearest("asymmetric", "round_prefer_floor"),
        13,
    );
    assert_eq!(y.unwrap(), f32s(&[1, 2], &[10., 30.]));
    // Upsample-9 (scales input) and -7 (scales attribute): truncating asymmetric.
    let x = f32s(&[1, 2], &[1., 2.]);
    let up = f32s(&[2], &[1., 2.]);
    let u9 = node("Upsample", 2, vec![]);
    assert_eq!(
        run(&u9, &[&x, &up], 9).unwrap(),
        f32s(&[1, 4], &[1., 1., 2., 2.])
    );
    let u7 = node(
        "Upsample",
        1,
        vec![string("mode", "linear"), floats("scales", &[1., 2.])],
    );
    assert_eq!(
        run(&u7, &[&x], 7).unwrap(),
        f32s(&[1, 4], &[1., 1.5, 2., 2.])
    );
}

#[test]
fn refusals() {
    let x = two_by_two();
    let up = Some(&[1., 1., 2., 2.][..]);
    let unsupported = |attrs: Vec<AttributeProto>, opset: i64| {
        let e = resize(&x, up, None, attrs, opset).unwrap_err();
        assert!(matches!(e, OpError::Unsupported(_)), "{e}");
    };
    unsupported(vec![string("mode", "cubic")], 13);
    unsupported(linear("tf_crop_and_resize"), 13);
    unsupported(vec![int("antialias", 1)], 18);
    let policy = vec![string("keep_aspect_ratio_policy", "not_larger")];
    let e = resize(&x, None, Some(&[1, 1, 4, 4]), policy, 18).unwrap_err();
    assert!(matches!(e, OpError::Unsupported(_)), "{e}");
    assert!(resize(&x, Some(&[1., 1., -2., 2.]), None, vec![], 13).is_err());
}

/// Bilinear by onnxruntime's four-term formula, in f64.
fn bilinear_reference(x: &[f32], c: usize, h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let src = |o: usize, n_out: usize, n_in: usize| {
        let s = n_out as f64 / n_in as f64;
        let v = ((o as f64 + 0.5) / s - 0.5).clamp(0.0, (n_in - 1) as f64);
        let i0 = v.floor() as usize;
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, v - i0 as f64)
    };
    let mut y = Vec::new();
    for ch in 0..c {
        let p = &x[ch * h * w..];
        for oy in 0..oh {
            let (y0, y1, fy) = src(oy, oh, h);
            for ox in 0..ow {
                let (x0, x1, fx) = src(ox, ow, w);
                let at = |r: usize, q: usize| p[r * w + q] as f64;
                let v = at(y0, x0) * (1. - fy) * (1. - fx)
                    + at(y0, x1) * (1. - fy) * fx
                    + at(y1, x0) * fy * (1. - fx)
                    + at(y1, x1) * fy * fx;
                y.push(v as f32);
            }
        }
    }
    y
}

#[test]
fn large_bilinear_matches_the_four_term_formula() {
    // HRNet's branch upsampling, small: [1, 3, 12, 20] x4, over several threads.
    let (c, h, w) = (3, 12, 20);
    let v = noise(c * h * w, 11);
    let x = f32s(&[1, c, h, w], &v);
    let want = bilinear_reference(&v, c, h, w, 4 * h, 4 * w);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let y = pool
        .install(|| resize(&x, Some(&[1., 1., 4., 4.]), None, linear("half_pixel"), 13))
        .unwrap();
    assert_eq!(y.shape, vec![1, c, 4 * h, 4 * w]);
    assert!(rel_l2(&y.as_f32s(), &want) < 1e-6);
    // f16 in, f16 out.
    let hx = Tensor::new(
        vec![1, 1, 2, 2],
        Data::F16([1f32, 2., 3., 4.].map(half::f16::from_f32).to_vec()),
    )
    .unwrap();
    let y = resize(&hx, Some(&[1., 1., 2., 2.]), None, linear("asymmetric"), 13).unwrap();
    assert_eq!(y.dtype(), hx.dtype());
    assert_eq!(y.as_f32s()[..4], [1., 1.5, 2., 2.]);
}

#[test]
fn upsampling_widens_rows_first_and_downsampling_last() {
    use super::pass_order;
    // The innermost axis's pass gathers element by element: on the small side of the resize.
    assert_eq!(
        pass_order(&[1, 48, 16, 32], &[1, 48, 128, 256], &[1., 1., 8., 8.]),
        [3, 2]
    );
    assert_eq!(
        pass_order(&[1, 1, 64, 64], &[1, 1, 8, 8], &[1., 1., 0.125, 0.125]),
        [2, 3]
    );
    // A kept size with a scale other than 1 still gets its pass.
    assert_eq!(
        pass_order(&[1, 1, 4, 4], &[1, 1, 4, 8], &[1., 1., 1.1, 2.]).len(),
        2
    );
    assert!(pass_order(&[2, 3], &[2, 3], &[1., 1.]).is_empty());
}
