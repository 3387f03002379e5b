//! MaxPool (with the optional Indices output) and AveragePool over 1-D and 2-D windows (pads,
//! strides, dilations, ceil_mode, auto_pad, count_include_pad), and GlobalAveragePool /
//! GlobalMaxPool. As in onnxruntime, MaxPool ignores NaN and gives the lowest f32 for a window
//! entirely in the padding, and AveragePool sums in f32.

use super::float::{f32_in, f32_out};
use super::par::{self, SyncPtr};
use super::reduce::reduce_data;
use super::window::{Axis, Window};
use super::{numel, Ctx, OpError, OpResult};
use crate::tensor::{Data, Tensor};

pub fn pool(cx: &Ctx, max: bool) -> OpResult<Vec<Tensor>> {
    let op = if max { "MaxPool" } else { "AveragePool" };
    let x = cx.input(0)?;
    let (xv, prec) = f32_in(x, op)?;
    let rank = x.shape.len();
    if rank < 3 {
        return Err(OpError::invalid(format!(
            "{op} takes [N, C, ...], got {:?}",
            x.shape
        )));
    }
    if rank > 4 {
        return Err(OpError::unsupported(format!(
            "{op} over {} spatial dimensions",
            rank - 2
        )));
    }
    let kernel = cx
        .attr_ints("kernel_shape")?
        .ok_or_else(|| OpError::invalid("attribute 'kernel_shape' is required"))?;
    let kernel = kernel
        .iter()
        .map(|&k| usize::try_from(k).map_err(|_| OpError::invalid(format!("kernel {kernel:?}"))))
        .collect::<OpResult<Vec<_>>>()?;
    let axes = Window::read(cx, kernel)?.axes(&x.shape[2..])?;
    let (h, w) = if rank == 3 {
        (Axis::unit(1), axes[0])
    } else {
        (axes[0], axes[1])
    };
    let count_pad = cx.attr_i("count_include_pad")?.unwrap_or(0) != 0;
    let column_major = cx.attr_i("storage_order")?.unwrap_or(0) != 0;
    let want_indices = max && cx.node.output.len() > 1;
    numel(&[x.shape[0], x.shape[1], h.output, w.output])?;
    let planes = x.shape[0] * x.shape[1];
    let (plane_in, plane_out) = (h.input * w.input, h.output * w.output);
    let mut y = vec![0f32; planes * plane_out];
    let mut idx = vec![0i64; if want_indices { y.len() } else { 0 }];
    let (yp, ip) = (SyncPtr::new(&mut y), SyncPtr::new(&mut idx));
    let work = y.len() * h.kernel * w.kernel;
    par::for_each(planes, work, |p| {
        let src = &xv[p * plane_in..][..plane_in];
        // SAFETY: plane p of the outputs is this task's alone, and inside them.
        let out = unsafe { std::slice::from_raw_parts_mut(yp.get().add(p * plane_out), plane_out) };
        if max {
            let at = unsafe {
                want_indices
                    .then(|| std::slice::from_raw_parts_mut(ip.get().add(p * plane_out), plane_out))
            };
            max_plane(src, out, at, &h, &w, (p * plane_in) as i64, column_major);
        } else {
            avg_plane(src, out, &h, &w, count_pad);
        }
    });
    let mut shape = x.shape[..2].to_vec();
    if rank == 4 {
        shape.push(h.output);
    }
    shape.push(w.output);
    let mut outs = vec![f32_out(shape.clone(), y, prec)];
    if want_indices {
        outs.push(Tensor {
            shape,
            data: Data::I64(idx),
        });
    }
    Ok(outs)
}

fn max_plane(
    src: &[f32],
    out: &mut [f32],
    mut at: Option<&mut [i64]>,
    h: &Axis,
    w: &Axis,
    base: i64,
    column_major: bool,
) {
    for oy in 0..h.output {
        let ry = h.taps(oy);
        for ox in 0..w.output {
            let rx = w.taps(ox);
            let (mut best, mut pos) = (f32::MIN, None);
            for ky in ry.clone() {
                let iy = h.at(oy, ky) as usize;
                for kx in rx.clone() {
                    let ix = w.at(ox, kx) as usize;
                    let v = src[iy * w.input + ix];
                    if v > best || (pos.is_none() && v == best) {
                        best = v;
                        pos = Some((iy, ix));
                    }
                }
            }
            let o = oy * w.output + ox;
            out[o] = best;
            if let Some(at) = at.as_deref_mut() {
                let (iy, ix) = pos.unwrap_or((0, 0));
                let flat = if column_major {
                    ix * h.input + iy
                } else {
                    iy * w.input + ix
                };
                at[o] = base + flat as i64;
            }
        }
    }
}

fn avg_plane(src: &[f32], out: &mut [f32], h: &Axis, w: &Axis, count_pad: bool) {
    for oy in 0..h.output {
        let ry = h.taps(oy);
        for ox in 0..w.output {
            let rx = w.taps(ox);
            let mut sum = 0f32;
            for ky in ry.clone() {
                let row = &src[h.at(oy, ky) as usize * w.input..][..w.input];
                for kx in rx.clone() {
                    sum += row[w.at(ox, kx) as usize];
                }
            }
            let count = if count_pad {
                h.padded_taps(oy) * w.padded_taps(ox)
            } else {
                ry.len() * rx.len()
            };
            out[oy * w.output + ox] = sum / count as f32;
        }
    }
}

/// GlobalAveragePool / GlobalMaxPool: one value per `[n, c]` plane, spatial dimensions kept as 1.
pub fn global_pool(cx: &Ctx, max: bool) -> OpResult<Tensor> {
    let op = if max {
        "GlobalMaxPool"
    } else {
        "GlobalAveragePool"
    };
    let x = cx.input(0)?;
    if !matches!(
        x.data,
        Data::F32(_) | Data::F64(_) | Data::F16(_) | Data::BF16(_)
    ) {
        return Err(OpError::invalid(format!(
            "{op} takes float tensors, got {:?}",
            x.dtype()
        )));
    }
    if x.shape.len() < 2 {
        return Err(OpError::invalid(format!(
            "{op} takes [N, C, ...], got {:?}",
            x.shape
        )));
    }
    let reduced: Vec<bool> = (0..x.shape.len()).map(|i| i >= 2).collect();
    let how = if max { "ReduceMax" } else { "ReduceMean" };
    let data = reduce_data(how, &x.data, &x.shape, &reduced)?;
    let shape = x
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < 2 { d } else { 1 })
        .collect();
    Ok(Tensor { shape, data })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::OpError;
    use crate::tensor::{Data, Tensor};

    fn iota(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        f32s(shape, &(1..=n).map(|i| i as f32).collect::<Vec<_>>())
    }

    #[test]
    fn max_pool_with_pads_strides_and_indices() {
        // 4x4 of 1..16, kernel 3, stride 2, pads 1: windows centred on (0,0), (0,2), (2,0), (2,2).
        let x = iota(&[1, 1, 4, 4]);
        let mut n = node(
            "MaxPool",
            1,
            vec![
                ints("kernel_shape", &[3, 3]),
                ints("strides", &[2, 2]),
                ints("pads", &[1, 1, 1, 1]),
            ],
        );
        n.output.push("indices".into());
        let out = super::super::eval(&n, &[Some(&x)], 12).unwrap();
        assert_eq!(out[0], f32s(&[1, 1, 2, 2], &[6., 8., 14., 16.]));
        assert_eq!(out[1].data, Data::I64(vec![5, 7, 13, 15]));
        let mut cm = n.clone();
        cm.attribute.push(int("storage_order", 1));
        let out = super::super::eval(&cm, &[Some(&x)], 12).unwrap();
        // Column-major: (1,1) -> 1*4+1 = 5, (1,3) -> 3*4+1 = 13, (3,1) -> 7, (3,3) -> 15.
        assert_eq!(out[1].data, Data::I64(vec![5, 13, 7, 15]));
    }

    #[test]
    fn ceil_mode_and_dilation() {
        // 5x5, kernel 2, stride 2: 2x2 floor, 3x3 ceil (the last window half outside).
        let x = iota(&[1, 1, 5, 5]);
        let k = vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])];
        let y = run(&node("MaxPool", 1, k.clone()), &[&x], 12).unwrap();
        assert_eq!(y, f32s(&[1, 1, 2, 2], &[7., 9., 17., 19.]));
        let mut kc = k.clone();
        kc.push(int("ceil_mode", 1));
        let y = run(&node("MaxPool", 1, kc.clone()), &[&x], 12).unwrap();
        assert_eq!(
            y,
            f32s(&[1, 1, 3, 3], &[7., 9., 10., 17., 19., 20., 22., 24., 25.])
        );
        // Average over the clipped last windows counts only what is inside.
        let y = run(&node("AveragePool", 1, kc), &[&x], 12).unwrap();
        assert_eq!(
            y,
            f32s(
                &[1, 1, 3, 3],
                &[4., 6., 7.5, 14., 16., 17.5, 21.5, 23.5, 25.]
            )
        );
        // Dilation 2, kernel 2 on 5 wide, 1-D: taps (0, 2), (1, 3), (2, 4).
        let x1 = f32s(&[1, 1, 5], &[3., 1., 4., 1., 5.]);
        let n = node(
            "MaxPool",
            1,
            vec![ints("kernel_shape", &[2]), ints("dilations", &[2])],
        );
        assert_eq!(
            run(&n, &[&x1], 12).unwrap(),
            f32s(&[1, 1, 3], &[4., 1., 5.])
        );
    }

    #[test]
    fn average_pool_counts_pads_or_not() {
        let x = iota(&[1, 1, 3, 3]);
        let base = vec![ints("kernel_shape", &[2, 2]), ints("pads", &[1, 1, 0, 0])];
        // Windows at (-1,-1), (-1,0), ... : corners see 1 value, edges 2, inside 4.
        let y = run(&node("AveragePool", 1, base.clone()), &[&x], 11).unwrap();
        assert_eq!(
            y,
            f32s(&[1, 1, 3, 3], &[1., 1.5, 2.5, 2.5, 3., 4., 5.5, 6., 7.])
        );
        let mut inc = base;
        inc.push(int("count_include_pad", 1));
        let y = run(&node("AveragePool", 1, inc), &[&x], 11).unwrap();
        assert_eq!(
            y,
            f32s(
                &[1, 1, 3, 3],
                &[0.25, 0.75, 1.25, 1.25, 3., 4., 2.75, 6., 7.]
            )
        );
        // SAME_UPPER, stride 1, kernel 2: the pad goes at the end.
        let s = node(
            "AveragePool",
            1,
            vec![
                ints("kernel_shape", &[2, 2]),
                string("auto_pad", "SAME_UPPER"),
            ],
        );
        let y = run(&s, &[&x], 11).unwrap();
        assert_eq!(
            y,
            f32s(&[1, 1, 3, 3], &[3., 4., 4.5, 6., 7., 7.5, 7.5, 8.5, 9.])
        );
    }

    #[test]
    fn ceil_mode_windows_count_only_the_explicit_pads() {
        // 6x6, kernel 3, stride 2, pads 1, ceil_mode, count_include_pad: 4x4, the last window per
        // axis starts at 5 and reaches 7, of which only 5 and 6 (the end pad) count.
        let x = iota(&[1, 1, 6, 6]);
        let attrs = vec![
            ints("kernel_shape", &[3, 3]),
            ints("strides", &[2, 2]),
            ints("pads", &[1, 1, 1, 1]),
            int("ceil_mode", 1),
            int("count_include_pad", 1),
        ];
        let y = run(&node("AveragePool", 1, attrs), &[&x], 12).unwrap();
        #[rustfmt::skip]
        let want = [
            2., 4., 16. / 3., 3.,
            9., 15., 17., 9.,
            17., 27., 29., 15.,
            10.5, 16.5, 17.5, 9.,
        ];
        let got = y.as_f32s();
        assert_eq!(y.shape, vec![1, 1, 4, 4]);
        assert!(
            got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{got:?}"
        );
        // The same with dilation 2 and kernel 2 (opset 19): taps at -1 and 1, ..., 5 and 7.
        let attrs = vec![
            ints("kernel_shape", &[2, 2]),
            ints("strides", &[2, 2]),
            ints("dilations", &[2, 2]),
            ints("pads", &[1, 1, 1, 1]),
            int("ceil_mode", 1),
            int("count_include_pad", 1),
        ];
        let y = run(&node("AveragePool", 1, attrs), &[&x], 19).unwrap();
        #[rustfmt::skip]
        let want = [
            2., 4.5, 5.5, 6.,
            7., 15., 17., 18.,
            13., 27., 29., 30.,
            16., 33., 35., 36.,
        ];
        assert_eq!(y, f32s(&[1, 1, 4, 4], &want));
    }

    #[test]
    fn global_pools_and_refusals() {
        let x = iota(&[1, 2, 2, 2]);
        let y = run(&node("GlobalAveragePool", 1, vec![]), &[&x], 13).unwrap();
        assert_eq!(y, f32s(&[1, 2, 1, 1], &[2.5, 6.5]));
        let y = run(&node("GlobalMaxPool", 1, vec![]), &[&x], 13).unwrap();
        assert_eq!(y, f32s(&[1, 2, 1, 1], &[4., 8.]));
        assert!(run(&node("MaxPool", 1, vec![]), &[&x], 13).is_err());
        let x3 = iota(&[1, 1, 2, 2, 2]);
        let n = node("MaxPool", 1, vec![ints("kernel_shape", &[1, 1, 1])]);
        assert!(matches!(run(&n, &[&x3], 13), Err(OpError::Unsupported(_))));
        let i = i64s(&[1, 1, 1, 1], &[1]);
        assert!(run(&node("GlobalAveragePool", 1, vec![]), &[&i], 13).is_err());
    }
}
