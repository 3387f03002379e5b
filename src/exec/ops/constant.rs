//! Constant: the one value among its attributes `value`, `value_float(s)`, `value_int(s)`.

use super::{Ctx, OpError, OpResult};
use crate::tensor::{Data, Tensor};

pub fn constant(cx: &Ctx) -> OpResult<Tensor> {
    let attrs = &cx.node.attribute;
    if attrs.len() != 1 {
        return Err(OpError::invalid(format!(
            "needs exactly one value attribute, has {}",
            attrs.len()
        )));
    }
    let a = &attrs[0];
    match a.name() {
        "value" => {
            let t =
                a.t.as_ref()
                    .ok_or_else(|| OpError::invalid("attribute 'value' is not a tensor"))?;
            Tensor::from_proto(t)
                .map_err(|e| OpError::unsupported(format!("attribute 'value': {e}")))
        }
        "value_float" => {
            let f =
                a.f.ok_or_else(|| OpError::invalid("attribute 'value_float' is not a float"))?;
            Ok(Tensor {
                shape: vec![],
                data: Data::F32(vec![f]),
            })
        }
        "value_floats" => Ok(Tensor {
            shape: vec![a.floats.len()],
            data: Data::F32(a.floats.clone()),
        }),
        "value_int" => {
            let i =
                a.i.ok_or_else(|| OpError::invalid("attribute 'value_int' is not an int"))?;
            Ok(Tensor::scalar_i64(i))
        }
        "value_ints" => Ok(Tensor::vec_i64(a.ints.clone())),
        other => Err(OpError::unsupported(format!(
            "Constant attribute '{other}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use crate::onnx::proto::AttributeProto;

    #[test]
    fn each_value_attribute() {
        let t = Tensor::vec_i64(vec![1, 19, -1]);
        let c = |a: AttributeProto| run(&node("Constant", 0, vec![a]), &[], 13);
        assert_eq!(c(tensor("value", t.to_proto("c"))).unwrap(), t);
        assert_eq!(c(float("value_float", 0.25)).unwrap(), f32s(&[], &[0.25]));
        assert_eq!(c(int("value_int", 3)).unwrap(), Tensor::scalar_i64(3));
        assert_eq!(
            c(ints("value_ints", &[2, 3])).unwrap(),
            Tensor::vec_i64(vec![2, 3])
        );
        let floats = AttributeProto {
            name: Some("value_floats".into()),
            floats: vec![1.0, 2.0],
            ..Default::default()
        };
        assert_eq!(c(floats).unwrap(), f32s(&[2], &[1.0, 2.0]));
    }

    #[test]
    fn sparse_and_string_values_are_unsupported() {
        let a = AttributeProto {
            name: Some("sparse_value".into()),
            ..Default::default()
        };
        let err = run(&node("Constant", 0, vec![a]), &[], 13).unwrap_err();
        assert!(matches!(err, OpError::Unsupported(_)), "{err}");
        assert!(run(&node("Constant", 0, vec![]), &[], 13).is_err());
    }
}
