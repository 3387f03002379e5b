//! Ops that move elements without computing on them: Gather, Concat, Slice, Transpose, Expand. Each
//! computes, for every output position, which input element it reads, and [`take`]s them.

use super::broadcast::{broadcast_shapes, offsets};
use super::elem::{same, Elem, Unwrap};
use super::{norm_axis, numel, strides, take, Ctx, OpError, OpResult};
use crate::tensor::{Data, Tensor};

/// Gather: `out[i.., j.., k..] = data[i.., indices[j..], k..]` along `axis`; negative indices count
/// from the end.
pub fn gather(cx: &Ctx) -> OpResult<Tensor> {
    let data = cx.input(0)?;
    let indices_t = cx.input(1)?;
    if !matches!(indices_t.data, Data::I64(_) | Data::I32(_)) {
        return Err(OpError::invalid(format!(
            "indices must be int32 or int64, are {:?}",
            indices_t.dtype()
        )));
    }
    let indices = indices_t.as_i64s().expect("integer indices");
    if data.shape.is_empty() {
        return Err(OpError::invalid("data must have rank >= 1"));
    }
    let axis = norm_axis(cx.attr_i("axis")?.unwrap_or(0), data.shape.len())?;
    let dim = data.shape[axis];
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis + 1..].iter().product();
    let picks = indices
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + dim as i64 } else { i };
            if (0..dim as i64).contains(&j) {
                Ok(j as usize)
            } else {
                Err(OpError::invalid(format!(
                    "index {i} is out of range for dimension {dim}"
                )))
            }
        })
        .collect::<OpResult<Vec<_>>>()?;
    let mut shape = data.shape[..axis].to_vec();
    shape.extend(&indices_t.shape);
    shape.extend(&data.shape[axis + 1..]);
    let mut index = Vec::with_capacity(numel(&shape)?);
    for o in 0..outer {
        for &p in &picks {
            let base = (o * dim + p) * inner;
            index.extend(base..base + inner);
        }
    }
    Ok(take(data, shape, &index))
}

/// Concat along `axis` (required from opset 4, 1 before); all inputs share rank, type and the other
/// dimensions.
pub fn concat(cx: &Ctx) -> OpResult<Tensor> {
    let inputs: Vec<&Tensor> = (0..cx.inputs.len())
        .filter_map(|i| cx.opt_input(i))
        .collect();
    let first = *inputs
        .first()
        .ok_or_else(|| OpError::invalid("needs at least one input"))?;
    let axis = match cx.attr_i("axis")? {
        Some(a) => a,
        None if cx.opset < 4 => 1,
        None => return Err(OpError::invalid("attribute 'axis' is required")),
    };
    let rank = first.shape.len();
    let axis = norm_axis(axis, rank)?;
    let mut shape = first.shape.clone();
    shape[axis] = 0;
    for t in &inputs {
        let compatible = t.shape.len() == rank
            && t.shape
                .iter()
                .zip(&first.shape)
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        if !compatible {
            return Err(OpError::invalid(format!(
                "input shapes {:?} do not agree off axis {axis}",
                inputs.iter().map(|t| &t.shape).collect::<Vec<_>>()
            )));
        }
        shape[axis] += t.shape[axis];
    }
    let outer: usize = first.shape[..axis].iter().product();
    if let Some(data) = concat_f32(&inputs, axis, outer) {
        return Ok(Tensor { shape, data });
    }
    let data = crate::dispatch_data!(&first.data, v => concat_vecs(v, &inputs, axis, outer)?);
    Ok(Tensor { shape, data })
}

fn concat_vecs<T: Elem + Unwrap>(
    _: &[T],
    inputs: &[&Tensor],
    axis: usize,
    outer: usize,
) -> OpResult<Data> {
    let parts = inputs
        .iter()
        .map(|t| {
            let chunk: usize = t.shape[axis..].iter().product();
            same::<T>(&t.data, &inputs[0].data, "Concat inputs").map(|v| (v, chunk))
        })
        .collect::<OpResult<Vec<_>>>()?;
    let mut out = Vec::with_capacity(parts.iter().map(|(v, _)| v.len()).sum());
    for o in 0..outer {
        for (v, chunk) in &parts {
            out.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
        }
    }
    Ok(T::wrap(out))
}

/// Concat of float32 tensors into a recycled buffer, in parallel chunks: HRNet's branch and OCR
/// concatenations are 30–130 MB each.
fn concat_f32(inputs: &[&Tensor], axis: usize, outer: usize) -> Option<Data> {
    let parts: Vec<(&[f32], usize)> = inputs
        .iter()
        .map(|t| match &t.data {
            Data::F32(v) => Some((v.as_slice(), t.shape[axis..].iter().product::<usize>())),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let row: usize = parts.iter().map(|(_, chunk)| chunk).sum();
    let mut out = crate::exec::recycle::f32_buffer(outer * row);
    super::par::chunks_mut(&mut out, super::par::CHUNK, |start, dst| {
        // Output element i is element (i / row)·chunk + off of the part its offset in the row
        // falls in.
        let mut i = start;
        let mut dst = dst;
        while !dst.is_empty() {
            let (o, mut r) = (i / row, i % row);
            for (v, chunk) in &parts {
                if r < *chunk {
                    let n = (chunk - r).min(dst.len());
                    dst[..n].copy_from_slice(&v[o * chunk + r..][..n]);
                    dst = &mut dst[n..];
                    i += n;
                    break;
                }
                r -= chunk;
            }
        }
    });
    Some(Data::F32(out))
}

/// One axis of a Slice after ONNX's clamping: the first index read, the step, and how many are
/// read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceAxis {
    pub start: i64,
    pub step: i64,
    pub len: usize,
}

/// Clamps `start`/`end` against `dim` as the Slice spec says: negative values count from the end,
/// then
/// `[0, dim]` for positive steps and `[0, dim-1]` / `[-1, dim-1]` for negative ones.
pub fn slice_axis(dim: i64, start: i64, end: i64, step: i64) -> OpResult<SliceAxis> {
    if step == 0 {
        return Err(OpError::invalid("slice step must not be 0"));
    }
    let start = if start < 0 {
        start.saturating_add(dim)
    } else {
        start
    };
    let end = if end < 0 {
        end.saturating_add(dim)
    } else {
        end
    };
    let (start, end) = if step > 0 {
        (start.clamp(0, dim), end.clamp(0, dim))
    } else {
        (start.clamp(0, (dim - 1).max(0)), end.clamp(-1, dim - 1))
    };
    let span = if step > 0 { end - start } else { start - end };
    // An empty axis reads nothing whatever the clamping made of its bounds.
    let len = if dim <= 0 || span <= 0 {
        0
    } else {
        (span as u64 - 1) / step.unsigned_abs() + 1
    };
    Ok(SliceAxis {
        start,
        step,
        len: len as usize,
    })
}

/// Slice: attributes `starts`/`ends`/`axes` before opset 10, inputs `starts, ends, axes?, steps?`
/// from 10.
pub fn slice(cx: &Ctx) -> OpResult<Tensor> {
    let data = cx.input(0)?;
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        let starts = cx
            .attr_ints("starts")?
            .ok_or_else(|| OpError::invalid("attribute 'starts' is required"))?;
        let ends = cx
            .attr_ints("ends")?
            .ok_or_else(|| OpError::invalid("attribute 'ends' is required"))?;
        (starts, ends, cx.attr_ints("axes")?, None)
    } else {
        let starts = cx
            .ints_input(1)?
            .ok_or_else(|| OpError::invalid("input 'starts' is required"))?;
        let ends = cx
            .ints_input(2)?
            .ok_or_else(|| OpError::invalid("input 'ends' is required"))?;
        (starts, ends, cx.ints_input(3)?, cx.ints_input(4)?)
    };
    let dims: Vec<i64> = data.shape.iter().map(|&d| d as i64).collect();
    let plan = slice_plan(&dims, &starts, &ends, axes.as_deref(), steps.as_deref())?;
    let shape: Vec<usize> = plan.iter().map(|a| a.len).collect();
    let in_strides = strides(&data.shape);
    let mut index = Vec::with_capacity(numel(&shape)?);
    let mut pos = vec![0usize; shape.len()];
    if shape.iter().all(|&d| d > 0) {
        loop {
            let at: i64 = plan
                .iter()
                .zip(&pos)
                .zip(&in_strides)
                .map(|((a, &p), &s)| (a.start + a.step * p as i64) * s as i64)
                .sum();
            index.push(at as usize);
            if !advance(&mut pos, &shape) {
                break;
            }
        }
    }
    Ok(take(data, shape, &index))
}

/// The per-axis plan of a Slice over a tensor with dimensions `dims`: axes not named are read
/// whole.
pub fn slice_plan(
    dims: &[i64],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> OpResult<Vec<SliceAxis>> {
    let n = starts.len();
    let axes: Vec<i64> = axes
        .map(<[i64]>::to_vec)
        .unwrap_or_else(|| (0..n as i64).collect());
    let steps: Vec<i64> = steps.map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; n]);
    if ends.len() != n || axes.len() != n || steps.len() != n {
        return Err(OpError::invalid(format!(
            "starts, ends, axes and steps differ in length ({n}, {}, {}, {})",
            ends.len(),
            axes.len(),
            steps.len()
        )));
    }
    let mut plan: Vec<Option<SliceAxis>> = vec![None; dims.len()];
    for i in 0..n {
        let a = norm_axis(axes[i], dims.len())?;
        if plan[a].is_some() {
            return Err(OpError::invalid(format!(
                "axis {} is sliced twice",
                axes[i]
            )));
        }
        plan[a] = Some(slice_axis(dims[a], starts[i], ends[i], steps[i])?);
    }
    Ok(plan
        .into_iter()
        .zip(dims)
        .map(|(p, &d)| {
            p.unwrap_or(SliceAxis {
                start: 0,
                step: 1,
                len: d as usize,
            })
        })
        .collect())
}

/// Odometer increment of a multi-index; false once it wraps around.
fn advance(pos: &mut [usize], shape: &[usize]) -> bool {
    for d in (0..shape.len()).rev() {
        pos[d] += 1;
        if pos[d] < shape[d] {
            return true;
        }
        pos[d] = 0;
    }
    false
}

/// The permutation of a Transpose: `perm`, or the reversed axes when absent.
pub fn transpose_perm(perm: Option<Vec<i64>>, rank: usize) -> OpResult<Vec<usize>> {
    let perm: Vec<usize> = match perm {
        None => (0..rank).rev().collect(),
        Some(p) => p
            .iter()
            .map(|&a| norm_axis(a, rank))
            .collect::<OpResult<_>>()?,
    };
    let mut seen = vec![false; rank];
    for &a in &perm {
        if std::mem::replace(&mut seen[a], true) {
            return Err(OpError::invalid(format!("perm {perm:?} repeats axis {a}")));
        }
    }
    if perm.len() != rank {
        return Err(OpError::invalid(format!(
            "perm {perm:?} does not match rank {rank}"
        )));
    }
    Ok(perm)
}

/// Transpose: `out.shape[i] = in.shape[perm[i]]`.
pub fn transpose(cx: &Ctx) -> OpResult<Tensor> {
    let data = cx.input(0)?;
    let perm = transpose_perm(cx.attr_ints("perm")?, data.shape.len())?;
    if let Some(fast) = super::transpose::try_fast(data, &perm) {
        return Ok(fast);
    }
    let shape: Vec<usize> = perm.iter().map(|&a| data.shape[a]).collect();
    let in_strides = strides(&data.shape);
    let step: Vec<usize> = perm.iter().map(|&a| in_strides[a]).collect();
    let mut index = Vec::with_capacity(numel(&shape)?);
    let mut pos = vec![0usize; shape.len()];
    if shape.iter().all(|&d| d > 0) {
        loop {
            index.push(pos.iter().zip(&step).map(|(p, s)| p * s).sum());
            if !advance(&mut pos, &shape) {
                break;
            }
        }
    }
    Ok(take(data, shape, &index))
}

/// Expand: broadcasts the input against the `shape` input (both ways: a 1 in `shape` keeps the
/// input's dimension).
pub fn expand(cx: &Ctx) -> OpResult<Tensor> {
    let data = cx.input(0)?;
    let dims = cx
        .ints_input(1)?
        .ok_or_else(|| OpError::invalid("input 'shape' is required"))?;
    let target = dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| OpError::invalid(format!("negative dimension {d}")))
        })
        .collect::<OpResult<Vec<_>>>()?;
    let shape = broadcast_shapes(&[&data.shape, &target])?;
    numel(&shape)?;
    let index = offsets(&data.shape, &shape);
    Ok(take(data, shape, &index))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn iota(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        f32s(shape, &(0..n).map(|i| i as f32).collect::<Vec<_>>())
    }

    #[test]
    fn gather_scalar_index_drops_the_axis() {
        let shape = Tensor::vec_i64(vec![1, 3, 64, 128]);
        let out = run(
            &node("Gather", 2, vec![int("axis", 0)]),
            &[&shape, &Tensor::scalar_i64(2)],
            13,
        );
        assert_eq!(out.unwrap(), Tensor::scalar_i64(64));
        let out = run(
            &node("Gather", 2, vec![]),
            &[&shape, &Tensor::scalar_i64(-1)],
            13,
        );
        assert_eq!(out.unwrap(), Tensor::scalar_i64(128));
    }

    #[test]
    fn gather_inner_axis_with_index_tensor() {
        let x = iota(&[2, 3]);
        let idx = i64s(&[2, 2], &[2, 0, -1, 1]);
        let out = run(&node("Gather", 2, vec![int("axis", 1)]), &[&x, &idx], 13).unwrap();
        assert_eq!(out, f32s(&[2, 2, 2], &[2., 0., 2., 1., 5., 3., 5., 4.]));
    }

    #[test]
    fn gather_refuses_out_of_range() {
        let x = iota(&[3]);
        assert!(run(
            &node("Gather", 2, vec![]),
            &[&x, &Tensor::scalar_i64(3)],
            13
        )
        .is_err());
        assert!(run(
            &node("Gather", 2, vec![]),
            &[&x, &Tensor::scalar_i64(-4)],
            13
        )
        .is_err());
        let fidx = f32s(&[], &[0.0]);
        assert!(run(&node("Gather", 2, vec![]), &[&x, &fidx], 13).is_err());
    }

    #[test]
    fn concat_along_axes() {
        let a = iota(&[2, 1]);
        let b = f32s(&[2, 2], &[10., 11., 12., 13.]);
        let out = run(&node("Concat", 2, vec![int("axis", -1)]), &[&a, &b], 13).unwrap();
        assert_eq!(out, f32s(&[2, 3], &[0., 10., 11., 1., 12., 13.]));
        let v = run(
            &node("Concat", 3, vec![int("axis", 0)]),
            &[
                &Tensor::vec_i64(vec![1]),
                &Tensor::vec_i64(vec![]),
                &Tensor::vec_i64(vec![2, 3]),
            ],
            13,
        );
        assert_eq!(v.unwrap(), Tensor::vec_i64(vec![1, 2, 3]));
    }

    #[test]
    fn large_f32_concat_in_parallel_chunks_into_a_recycled_buffer() {
        // Outer 3 along axis 1, parts of 5000, 0, 70001 and 1 elements per row: the parallel
        // chunks start mid-part and mid-row, and the output buffer comes out of the pool full of
        // NaN.
        let parts: Vec<Tensor> = [5000usize, 0, 70001, 1]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let v = (0..3 * n).map(|j| (i * 1_000_000 + j) as f32).collect();
                Tensor::vec_f32(vec![3, n], v).unwrap()
            })
            .collect();
        let row = 5000 + 70001 + 1;
        let mut want = Vec::with_capacity(3 * row);
        for o in 0..3 {
            for t in &parts {
                let n = t.shape[1];
                want.extend_from_slice(&t.as_f32s()[o * n..(o + 1) * n]);
            }
        }
        let _run = crate::exec::recycle::Scope::enter();
        crate::exec::recycle::give(vec![f32::NAN; 3 * row]);
        let refs: Vec<&Tensor> = parts.iter().collect();
        let out = run(&node("Concat", 4, vec![int("axis", 1)]), &refs, 13).unwrap();
        assert_eq!(
            crate::exec::recycle::pooled(),
            0,
            "the NaN buffer was taken"
        );
        assert_eq!(out.shape, vec![3, row]);
        assert!(out.as_f32s() == want);
    }

    #[test]
    fn concat_refuses_mixed_types_and_shapes() {
        let a = Tensor::vec_i64(vec![1]);
        let b = f32s(&[1], &[1.0]);
        assert!(run(&node("Concat", 2, vec![int("axis", 0)]), &[&a, &b], 13).is_err());
        let c = iota(&[2, 2]);
        let d = iota(&[3, 3]);
        assert!(run(&node("Concat", 2, vec![int("axis", 0)]), &[&c, &d], 13).is_err());
        assert!(run(&node("Concat", 2, vec![]), &[&c, &c], 13).is_err());
    }

    #[test]
    fn slice_clamps_like_the_spec() {
        assert_eq!(
            slice_axis(10, 0, i64::MAX, 1).unwrap(),
            SliceAxis {
                start: 0,
                step: 1,
                len: 10
            }
        );
        assert_eq!(
            slice_axis(10, -3, -1, 1).unwrap(),
            SliceAxis {
                start: 7,
                step: 1,
                len: 2
            }
        );
        assert_eq!(slice_axis(10, 20, 30, 1).unwrap().len, 0);
        assert_eq!(slice_axis(10, 1, 8, 3).unwrap().len, 3);
        // Negative steps: start clamps to dim-1, end to -1 ("before the first").
        assert_eq!(
            slice_axis(10, i64::MAX, i64::MIN, -1).unwrap(),
            SliceAxis {
                start: 9,
                step: -1,
                len: 10
            }
        );
        assert_eq!(
            slice_axis(10, -1, -11, -2).unwrap(),
            SliceAxis {
                start: 9,
                step: -2,
                len: 5
            }
        );
        assert_eq!(slice_axis(0, 0, -1, -1).unwrap().len, 0);
        assert_eq!(slice_axis(5, 4, i64::MIN, i64::MIN).unwrap().len, 1);
        assert!(slice_axis(4, 0, 4, 0).is_err());
    }

    #[test]
    fn slice_inputs_from_opset_10() {
        let x = iota(&[3, 4]);
        let n = node("Slice", 5, vec![]);
        let out = run(
            &n,
            &[
                &x,
                &Tensor::vec_i64(vec![-1, 1]),
                &Tensor::vec_i64(vec![i64::MIN, 3]),
                &Tensor::vec_i64(vec![1, 0]),
                &Tensor::vec_i64(vec![-2, 1]),
            ],
            13,
        )
        .unwrap();
        // rows 1..3, columns 3, 1 (step -2 from the last).
        assert_eq!(out, f32s(&[2, 2], &[7., 5., 11., 9.]));
        // The Shape -> Slice(0, 2) of the exporters' Resize sizes.
        let shape = Tensor::vec_i64(vec![1, 8, 16, 32]);
        let n3 = node("Slice", 4, vec![]);
        let out = run(
            &n3,
            &[
                &shape,
                &Tensor::vec_i64(vec![0]),
                &Tensor::vec_i64(vec![2]),
                &Tensor::vec_i64(vec![0]),
            ],
            13,
        );
        assert_eq!(out.unwrap(), Tensor::vec_i64(vec![1, 8]));
    }

    #[test]
    fn slice_attributes_before_opset_10() {
        let x = iota(&[3, 4]);
        let n = node(
            "Slice",
            1,
            vec![
                ints("starts", &[1]),
                ints("ends", &[100]),
                ints("axes", &[1]),
            ],
        );
        let out = run(&n, &[&x], 9).unwrap();
        assert_eq!(out, f32s(&[3, 3], &[1., 2., 3., 5., 6., 7., 9., 10., 11.]));
        // The same node at opset 10 lacks its inputs.
        assert!(run(&n, &[&x], 10).is_err());
    }

    #[test]
    fn slice_refuses_repeated_axes() {
        let x = iota(&[3, 4]);
        let s = Tensor::vec_i64(vec![0, 0]);
        let e = Tensor::vec_i64(vec![1, 1]);
        let a = Tensor::vec_i64(vec![1, -1]);
        assert!(run(&node("Slice", 4, vec![]), &[&x, &s, &e, &a], 13).is_err());
    }

    #[test]
    fn transpose_default_and_perm() {
        let x = iota(&[2, 3]);
        let out = run(&node("Transpose", 1, vec![]), &[&x], 13).unwrap();
        assert_eq!(out, f32s(&[3, 2], &[0., 3., 1., 4., 2., 5.]));
        let y = iota(&[1, 2, 3]);
        let out = run(
            &node("Transpose", 1, vec![ints("perm", &[0, 2, 1])]),
            &[&y],
            13,
        )
        .unwrap();
        assert_eq!(out, f32s(&[1, 3, 2], &[0., 3., 1., 4., 2., 5.]));
        assert!(run(
            &node("Transpose", 1, vec![ints("perm", &[0, 0, 1])]),
            &[&y],
            13
        )
        .is_err());
        assert!(run(
            &node("Transpose", 1, vec![ints("perm", &[0, 1])]),
            &[&y],
            13
        )
        .is_err());
    }

    #[test]
    fn expand_broadcasts_both_ways() {
        let x = f32s(&[3, 1], &[1., 2., 3.]);
        let out = run(
            &node("Expand", 2, vec![]),
            &[&x, &Tensor::vec_i64(vec![2, 1, 2])],
            13,
        )
        .unwrap();
        assert_eq!(
            out,
            f32s(
                &[2, 3, 2],
                &[1., 1., 2., 2., 3., 3., 1., 1., 2., 2., 3., 3.]
            )
        );
        assert!(run(
            &node("Expand", 2, vec![]),
            &[&x, &Tensor::vec_i64(vec![4, 2])],
            13
        )
        .is_err());
    }
}
