//! Ops that change only the shape, never the elements: Reshape, Unsqueeze, Squeeze, Flatten. The
//! shape rules are generic over the dimension type so that shape inference applies the very same
//! rules to symbolic dimensions.

use super::{norm_axis, numel, Ctx, OpError, OpResult};
use crate::tensor::{Data, Tensor};

/// Reshape's target: `0` copies the input's dimension (unless `allowzero`, opset 14+), one `-1`
/// takes whatever is left.
pub fn reshape_dims(input: &[usize], spec: &[i64], allowzero: bool) -> OpResult<Vec<usize>> {
    if allowzero && spec.contains(&0) && spec.contains(&-1) {
        return Err(OpError::invalid(
            "with allowzero, a shape cannot hold both 0 and -1",
        ));
    }
    let total = numel(input)?;
    let mut infer_at = None;
    let mut out = Vec::with_capacity(spec.len());
    for (i, &d) in spec.iter().enumerate() {
        out.push(match d {
            -1 if infer_at.is_some() => return Err(OpError::invalid("shape holds -1 twice")),
            -1 => {
                infer_at = Some(i);
                1
            }
            0 if !allowzero => *input.get(i).ok_or_else(|| {
                OpError::invalid(format!(
                    "shape {spec:?} copies dimension {i} the input lacks"
                ))
            })?,
            d if d < 0 => {
                return Err(OpError::invalid(format!(
                    "invalid dimension {d} in shape {spec:?}"
                )))
            }
            d => d as usize,
        });
    }
    let known = numel(&out)?;
    if let Some(i) = infer_at {
        if known == 0 || total % known != 0 {
            return Err(OpError::invalid(format!(
                "cannot reshape {input:?} to {spec:?}"
            )));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(OpError::invalid(format!(
            "cannot reshape {input:?} ({total} elements) to {spec:?}"
        )));
    }
    Ok(out)
}

/// Reshape: the target shape from attribute `shape` before opset 5, from input 1 since.
pub fn reshape(cx: &Ctx) -> OpResult<Tensor> {
    let data = cx.input(0)?;
    let spec = if cx.opset < 5 {
        cx.attr_ints("shape")?
    } else {
        cx.ints_input(1)?
    };
    let spec = spec.ok_or_else(|| OpError::invalid("the target shape is missing"))?;
    let allowzero = cx.opset >= 14 && cx.attr_i("allowzero")?.unwrap_or(0) != 0;
    let shape = reshape_dims(&data.shape, &spec, allowzero)?;
    Ok(Tensor {
        shape,
        data: copied(&data.data),
    })
}

/// The input's elements for the output. Reshape moves a dying input's buffer instead (the
/// executor's `in_place`); this copy is for an input read again later (W48's 67 MB feature map of
/// the OCR gather), into a recycled buffer: a fresh one was 16 K page faults, 66 ms.
fn copied(data: &Data) -> Data {
    match data {
        Data::F32(v) => {
            let mut out = crate::exec::recycle::f32_buffer(v.len());
            super::par::chunks_mut(&mut out, super::par::CHUNK, |start, dst| {
                dst.copy_from_slice(&v[start..start + dst.len()]);
            });
            Data::F32(out)
        }
        other => other.clone(),
    }
}

/// The axes of Unsqueeze/Squeeze: attribute before opset 13, optional input since.
fn axes(cx: &Ctx) -> OpResult<Option<Vec<i64>>> {
    if cx.opset < 13 {
        cx.attr_ints("axes")
    } else {
        cx.ints_input(1)
    }
}

/// Inserts a `one` at each of `axes`, which refer to the output's positions (negative from its
/// end).
pub fn unsqueeze_dims<D: Clone>(dims: &[D], axes: &[i64], one: D) -> OpResult<Vec<D>> {
    let rank = dims.len() + axes.len();
    let mut at = vec![false; rank];
    for &a in axes {
        let a = norm_axis(a, rank)?;
        if std::mem::replace(&mut at[a], true) {
            return Err(OpError::invalid(format!("axes {axes:?} repeat an axis")));
        }
    }
    let mut src = dims.iter();
    Ok(at
        .into_iter()
        .map(|new| {
            if new {
                one.clone()
            } else {
                src.next().expect("counted").clone()
            }
        })
        .collect())
}

/// Removes `axes`, each of which `is_one` must accept.
pub fn squeeze_dims<D: Clone + std::fmt::Debug>(
    dims: &[D],
    axes: &[i64],
    is_one: impl Fn(&D) -> bool,
) -> OpResult<Vec<D>> {
    let mut drop = vec![false; dims.len()];
    for &a in axes {
        let i = norm_axis(a, dims.len())?;
        if !is_one(&dims[i]) {
            return Err(OpError::invalid(format!(
                "cannot squeeze axis {a} of {dims:?}: it is not 1"
            )));
        }
        drop[i] = true;
    }
    Ok(dims
        .iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(x, _)| x.clone())
        .collect())
}

pub fn unsqueeze(cx: &Ctx) -> OpResult<Tensor> {
    let data = cx.input(0)?;
    let axes = axes(cx)?.ok_or_else(|| OpError::invalid("axes are required"))?;
    let shape = unsqueeze_dims(&data.shape, &axes, 1)?;
    Ok(Tensor {
        shape,
        data: copied(&data.data),
    })
}

/// Squeeze; without axes every dimension of size 1 goes.
pub fn squeeze(cx: &Ctx) -> OpResult<Tensor> {
    let data = cx.input(0)?;
    let shape = match axes(cx)? {
        Some(axes) => squeeze_dims(&data.shape, &axes, |&d| d == 1)?,
        None => data.shape.iter().copied().filter(|&d| d != 1).collect(),
    };
    Ok(Tensor {
        shape,
        data: copied(&data.data),
    })
}

/// Flatten's split point: `axis` in `[-rank, rank]` (negative from opset 11), default 1.
pub fn flatten_axis(axis: Option<i64>, rank: usize) -> OpResult<usize> {
    let a = axis.unwrap_or(1);
    let r = rank as i64;
    let n = if a < 0 { a + r } else { a };
    if (0..=r).contains(&n) {
        Ok(n as usize)
    } else {
        Err(OpError::invalid(format!(
            "axis {a} is out of range for rank {rank}"
        )))
    }
}

/// Flatten: `[prod(d[..axis]), prod(d[axis..])]`.
pub fn flatten(cx: &Ctx) -> OpResult<Tensor> {
    let data = cx.input(0)?;
    let axis = flatten_axis(cx.attr_i("axis")?, data.shape.len())?;
    let shape = vec![numel(&data.shape[..axis])?, numel(&data.shape[axis..])?];
    Ok(Tensor {
        shape,
        data: copied(&data.data),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn reshape_zero_and_minus_one() {
        assert_eq!(
            reshape_dims(&[2, 19, 16, 32], &[0, 19, -1], false).unwrap(),
            vec![2, 19, 512]
        );
        assert_eq!(reshape_dims(&[2, 3], &[-1], false).unwrap(), vec![6]);
        assert_eq!(
            reshape_dims(&[2, 3, 4], &[0, 0, 4], false).unwrap(),
            vec![2, 3, 4]
        );
        // A zero-sized input: -1 next to a 0 cannot be inferred.
        assert!(reshape_dims(&[0, 3], &[0, -1], false).is_err());
        assert!(reshape_dims(&[2, 3], &[3, 0], false).is_err());
        assert!(reshape_dims(&[2, 3], &[-1, -1], false).is_err());
        assert!(reshape_dims(&[2, 3], &[4, -1], false).is_err());
        assert!(reshape_dims(&[2, 3], &[-2, 3], false).is_err());
        assert!(reshape_dims(&[2, 3], &[0, 0, 0], false).is_err());
    }

    #[test]
    fn reshape_allowzero_keeps_zeros() {
        assert_eq!(reshape_dims(&[0, 3], &[3, 0], true).unwrap(), vec![3, 0]);
        assert!(reshape_dims(&[0, 3], &[0, -1], true).is_err());
        let x = f32s(&[2, 0], &[]);
        let spec = Tensor::vec_i64(vec![0, 2]);
        let n = node("Reshape", 2, vec![int("allowzero", 1)]);
        assert_eq!(run(&n, &[&x, &spec], 14).unwrap().shape, vec![0, 2]);
        // Before opset 14 the attribute does not exist and 0 copies.
        assert!(run(&n, &[&x, &spec], 13).is_err());
    }

    #[test]
    fn reshape_attribute_before_opset_5() {
        let x = f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let n = node("Reshape", 1, vec![ints("shape", &[3, -1])]);
        assert_eq!(
            run(&n, &[&x], 4).unwrap(),
            f32s(&[3, 2], &[1., 2., 3., 4., 5., 6.])
        );
    }

    #[test]
    fn unsqueeze_axes_attribute_then_input() {
        let x = Tensor::scalar_i64(5);
        let out = run(&node("Unsqueeze", 1, vec![ints("axes", &[0])]), &[&x], 11).unwrap();
        assert_eq!(out, Tensor::vec_i64(vec![5]));
        let axes = Tensor::vec_i64(vec![0]);
        assert_eq!(
            run(&node("Unsqueeze", 2, vec![]), &[&x, &axes], 13).unwrap(),
            Tensor::vec_i64(vec![5])
        );
        // At 13 the attribute is no longer read: no axes input is an error.
        assert!(run(&node("Unsqueeze", 1, vec![ints("axes", &[0])]), &[&x], 13).is_err());
        assert_eq!(
            unsqueeze_dims(&[3, 4], &[-1, 0], 1).unwrap(),
            vec![1, 3, 4, 1]
        );
        assert_eq!(
            unsqueeze_dims(&[3, 4], &[1, 3], 1).unwrap(),
            vec![3, 1, 4, 1]
        );
        assert!(unsqueeze_dims(&[3], &[0, -3], 1).is_err());
        assert!(unsqueeze_dims(&[3], &[2], 1).is_err());
    }

    #[test]
    fn squeeze_named_or_all_ones() {
        let x = f32s(&[1, 3, 1], &[1., 2., 3.]);
        let out = run(&node("Squeeze", 1, vec![]), &[&x], 13).unwrap();
        assert_eq!(out.shape, vec![3]);
        let out = run(&node("Squeeze", 1, vec![ints("axes", &[-1])]), &[&x], 11).unwrap();
        assert_eq!(out.shape, vec![1, 3]);
        let axes = Tensor::vec_i64(vec![1]);
        assert!(run(&node("Squeeze", 2, vec![]), &[&x, &axes], 13).is_err());
    }

    #[test]
    fn flatten_axis_range() {
        let x = f32s(&[2, 3, 4], &[0.0; 24]);
        assert_eq!(
            run(&node("Flatten", 1, vec![]), &[&x], 13).unwrap().shape,
            vec![2, 12]
        );
        assert_eq!(
            run(&node("Flatten", 1, vec![int("axis", 0)]), &[&x], 13)
                .unwrap()
                .shape,
            vec![1, 24]
        );
        assert_eq!(
            run(&node("Flatten", 1, vec![int("axis", 3)]), &[&x], 13)
                .unwrap()
                .shape,
            vec![24, 1]
        );
        assert_eq!(
            run(&node("Flatten", 1, vec![int("axis", -1)]), &[&x], 13)
                .unwrap()
                .shape,
            vec![6, 4]
        );
        assert!(run(&node("Flatten", 1, vec![int("axis", 4)]), &[&x], 13).is_err());
    }
}
