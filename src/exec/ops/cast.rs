//! Cast and CastLike between the element types [`Data`] holds.

use super::elem::Elem;
use super::float::{narrow, widen};
use super::{Ctx, OpError, OpResult};
use crate::onnx::proto::tensor_proto::DataType;
use crate::tensor::{Data, Tensor};
use half::{bf16, f16};

/// Cast to attribute `to`.
pub fn cast(cx: &Ctx) -> OpResult<Tensor> {
    let x = cx.input(0)?;
    let to = cx
        .attr_i("to")?
        .ok_or_else(|| OpError::invalid("attribute 'to' is required"))?;
    let to = i32::try_from(to)
        .ok()
        .and_then(|t| DataType::try_from(t).ok())
        .ok_or_else(|| OpError::invalid(format!("unknown data type {to}")))?;
    Ok(Tensor {
        shape: x.shape.clone(),
        data: convert(&x.data, to)?,
    })
}

/// CastLike (opset 15): to the element type of input 1.
pub fn cast_like(cx: &Ctx) -> OpResult<Tensor> {
    let x = cx.input(0)?;
    let to = cx.input(1)?.dtype();
    Ok(Tensor {
        shape: x.shape.clone(),
        data: convert(&x.data, to)?,
    })
}

/// Converts elements as ONNX Cast does: floats to integers truncate toward zero (saturating, where
/// ONNX leaves overflow undefined), integers to narrower integers wrap, anything non-zero is
/// `true`. Integers convert to floats through f64, exact up to 2^53.
pub fn convert(data: &Data, to: DataType) -> OpResult<Data> {
    // The casts around an FP16 graph's inputs and outputs: whole-slice conversions, in parallel.
    Ok(match (data, to) {
        (Data::F32(v), DataType::Float16) => Data::F16(narrow(v)),
        (Data::F32(v), DataType::Bfloat16) => Data::BF16(narrow(v)),
        (Data::F16(v), DataType::Float) => Data::F32(widen(v)),
        (Data::BF16(v), DataType::Float) => Data::F32(widen(v)),
        _ => crate::dispatch_data!(data, v => convert_vec(v, to))?,
    })
}

fn convert_vec<S: Elem>(v: &[S], to: DataType) -> OpResult<Data> {
    Ok(match to {
        DataType::Float => Data::F32(conv(v)),
        DataType::Double => Data::F64(conv(v)),
        DataType::Float16 => Data::F16(conv::<S, f16>(v)),
        DataType::Bfloat16 => Data::BF16(conv::<S, bf16>(v)),
        DataType::Int64 => Data::I64(conv(v)),
        DataType::Int32 => Data::I32(conv(v)),
        DataType::Int16 => Data::I16(conv(v)),
        DataType::Int8 => Data::I8(conv(v)),
        DataType::Uint8 => Data::U8(conv(v)),
        DataType::Uint16 => Data::U16(conv(v)),
        DataType::Uint32 => Data::U32(conv(v)),
        DataType::Uint64 => Data::U64(conv(v)),
        DataType::Bool => Data::Bool(conv(v)),
        other => return Err(OpError::unsupported(format!("cast to {other:?}"))),
    })
}

fn conv<S: Elem, D: Elem>(v: &[S]) -> Vec<D> {
    if S::FLOAT || D::FLOAT {
        v.iter().map(|x| D::from_f64(x.to_f64())).collect()
    } else {
        v.iter().map(|x| D::from_i64(x.to_i64())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn cast_to(x: &Tensor, to: DataType) -> Tensor {
        run(&node("Cast", 1, vec![int("to", to as i64)]), &[x], 13).unwrap()
    }

    #[test]
    fn float_to_int_truncates() {
        let x = f32s(&[4], &[1.9, -1.9, 0.5, 3e9]);
        assert_eq!(
            cast_to(&x, DataType::Int64),
            i64s(&[4], &[1, -1, 0, 3_000_000_000])
        );
        assert_eq!(
            cast_to(&x, DataType::Int32).data,
            Data::I32(vec![1, -1, 0, i32::MAX])
        );
    }

    #[test]
    fn int_narrowing_wraps_and_bool_is_nonzero() {
        let x = i64s(&[3], &[300, -1, 0]);
        assert_eq!(
            cast_to(&x, DataType::Uint8).data,
            Data::U8(vec![44, 255, 0])
        );
        assert_eq!(
            cast_to(&x, DataType::Bool).data,
            Data::Bool(vec![true, true, false])
        );
        let b = Tensor::new(vec![2], Data::Bool(vec![true, false])).unwrap();
        assert_eq!(cast_to(&b, DataType::Float).data, Data::F32(vec![1.0, 0.0]));
    }

    #[test]
    fn to_half_rounds_once() {
        let x = f32s(&[2], &[1.0, 65504.0]);
        assert_eq!(cast_to(&x, DataType::Float16).as_f32s(), vec![1.0, 65504.0]);
        // Shape arithmetic: int64 -> int64 is exact.
        let s = Tensor::vec_i64(vec![16, 32]);
        assert_eq!(cast_to(&s, DataType::Int64), s);
    }

    #[test]
    fn cast_like_and_unsupported_targets() {
        let x = f32s(&[1], &[2.5]);
        let like = Tensor::vec_i64(vec![0]);
        assert_eq!(
            run(&node("CastLike", 2, vec![]), &[&x, &like], 15).unwrap(),
            i64s(&[1], &[2])
        );
        let err = run(
            &node("Cast", 1, vec![int("to", DataType::String as i64)]),
            &[&x],
            13,
        )
        .unwrap_err();
        assert!(matches!(err, OpError::Unsupported(_)), "{err}");
        assert!(run(&node("Cast", 1, vec![int("to", 999)]), &[&x], 13).is_err());
    }
}
