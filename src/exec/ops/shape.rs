//! Ops that turn shapes into tensors and back: Shape, Size, ConstantOfShape.

use super::{numel, Ctx, OpError, OpResult};
use crate::tensor::{Data, Tensor};

/// Shape: the input's dimensions as a 1-D int64 tensor; from opset 15 the slice `[start, end)` of
/// them, with negative bounds counted from the end and both clamped to `[0, rank]`.
pub fn shape(cx: &Ctx) -> OpResult<Tensor> {
    let dims: Vec<i64> = cx.input(0)?.shape.iter().map(|&d| d as i64).collect();
    let (start, end) = if cx.opset >= 15 {
        (cx.attr_i("start")?.unwrap_or(0), cx.attr_i("end")?)
    } else {
        (0, None)
    };
    let (s, e) = shape_range(dims.len(), start, end);
    Ok(Tensor::vec_i64(dims[s..e].to_vec()))
}

/// The `[start, end)` range Shape-15 selects from `rank` dimensions, clamped; empty when start >
/// end.
pub fn shape_range(rank: usize, start: i64, end: Option<i64>) -> (usize, usize) {
    let r = rank as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let s = clamp(start);
    let e = clamp(end.unwrap_or(r));
    (s, e.max(s))
}

/// Size: the element count as an int64 scalar.
pub fn size(cx: &Ctx) -> OpResult<Tensor> {
    let n = numel(&cx.input(0)?.shape)?;
    Ok(Tensor::scalar_i64(n as i64))
}

/// ConstantOfShape: a tensor of the given shape filled with the one element of `value` (default
/// float 0). The caller bounds the size: this allocates whatever the shape asks for.
pub fn constant_of_shape(cx: &Ctx) -> OpResult<Tensor> {
    let dims = cx
        .ints_input(0)?
        .ok_or_else(|| OpError::invalid("input 0 is required"))?;
    if cx.input(0)?.shape.len() != 1 {
        return Err(OpError::invalid("the shape input must be 1-D"));
    }
    let shape = dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| OpError::invalid(format!("negative dimension {d}")))
        })
        .collect::<OpResult<Vec<_>>>()?;
    let n = numel(&shape)?;
    let value = match cx.attr_t("value")? {
        None => Tensor::new(vec![1], Data::F32(vec![0.0])).expect("one element"),
        Some(t) => Tensor::from_proto(t)
            .map_err(|e| OpError::invalid(format!("attribute 'value': {e}")))?,
    };
    if value.len() != 1 {
        return Err(OpError::invalid(format!(
            "attribute 'value' must hold one element, holds {}",
            value.len()
        )));
    }
    let data = crate::map_data!(&value.data, v => vec![v[0]; n]);
    Ok(Tensor { shape, data })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::tensor::{Data, Tensor};

    #[test]
    fn shape_with_start_end_from_opset_15() {
        let x = f32s(&[2, 3, 4, 5], &[0.0; 120]);
        let n = node("Shape", 1, vec![]);
        assert_eq!(
            run(&n, &[&x], 13).unwrap(),
            Tensor::vec_i64(vec![2, 3, 4, 5])
        );
        let n = node("Shape", 1, vec![int("start", 1), int("end", -1)]);
        assert_eq!(run(&n, &[&x], 15).unwrap(), Tensor::vec_i64(vec![3, 4]));
        // Before opset 15 the attributes do not exist: the whole shape.
        assert_eq!(
            run(&n, &[&x], 14).unwrap(),
            Tensor::vec_i64(vec![2, 3, 4, 5])
        );
        // Out-of-range bounds clamp; start past end is empty.
        let n = node("Shape", 1, vec![int("start", -10), int("end", 10)]);
        assert_eq!(
            run(&n, &[&x], 15).unwrap(),
            Tensor::vec_i64(vec![2, 3, 4, 5])
        );
        let n = node("Shape", 1, vec![int("start", 3), int("end", 1)]);
        assert_eq!(run(&n, &[&x], 15).unwrap(), Tensor::vec_i64(vec![]));
    }

    #[test]
    fn shape_of_scalar_is_empty() {
        let x = f32s(&[], &[1.0]);
        assert_eq!(
            run(&node("Shape", 1, vec![]), &[&x], 13).unwrap(),
            Tensor::vec_i64(vec![])
        );
        assert_eq!(
            run(&node("Size", 1, vec![]), &[&x], 13).unwrap(),
            Tensor::scalar_i64(1)
        );
    }

    #[test]
    fn size_counts_elements() {
        let x = f32s(&[2, 0, 3], &[]);
        assert_eq!(
            run(&node("Size", 1, vec![]), &[&x], 13).unwrap(),
            Tensor::scalar_i64(0)
        );
    }

    /// A data-computed shape too large to allocate is an error, not a "capacity overflow" panic or an
    /// aborted allocation (found by the `graphs` fuzz target: ConstantOfShape of `[i64::MAX]`).
    #[test]
    fn sizes_over_the_element_limit_are_refused() {
        let cos = node("ConstantOfShape", 1, vec![]);
        for dims in [vec![i64::MAX], vec![1 << 20, 1 << 20], vec![(1 << 32) + 1]] {
            let err = run(&cos, &[&Tensor::vec_i64(dims.clone())], 13).unwrap_err();
            assert!(err.to_string().contains("elements"), "{dims:?}: {err}");
        }
        assert!(run(&cos, &[&Tensor::vec_i64(vec![1 << 4, 1 << 4])], 13).is_ok());
        // Broadcasting two small inputs into a huge output.
        let (a, b) = (
            f32s(&[1 << 17, 1], &[0.0; 1 << 17]),
            f32s(&[1, 1 << 17], &[0.0; 1 << 17]),
        );
        let err = run(&node("Add", 2, vec![]), &[&a, &b], 13).unwrap_err();
        assert!(
            err.to_string().contains("over the executor's limit"),
            "{err}"
        );
    }

    #[test]
    fn constant_of_shape_default_and_typed() {
        let s = Tensor::vec_i64(vec![2, 2]);
        let out = run(&node("ConstantOfShape", 1, vec![]), &[&s], 13).unwrap();
        assert_eq!(out, f32s(&[2, 2], &[0.0; 4]));
        let v = Tensor::vec_i64(vec![7]).to_proto("v");
        let out = run(
            &node("ConstantOfShape", 1, vec![tensor("value", v)]),
            &[&s],
            13,
        )
        .unwrap();
        assert_eq!(out, i64s(&[2, 2], &[7; 4]));
        // An empty shape gives a scalar.
        let s = Tensor::vec_i64(vec![]);
        let out = run(&node("ConstantOfShape", 1, vec![]), &[&s], 13).unwrap();
        assert_eq!(out, Tensor::new(vec![], Data::F32(vec![0.0])).unwrap());
    }

    #[test]
    fn constant_of_shape_refuses_negative_dims() {
        let s = Tensor::vec_i64(vec![2, -1]);
        assert!(run(&node("ConstantOfShape", 1, vec![]), &[&s], 13).is_err());
    }
}
