//! Pins graph inputs to static shapes: rewrites their ValueInfo so that every later pass, and the
//! saved model, see the static size.

use crate::onnx::proto::tensor_shape_proto::{dimension::Value as DimValue, Dimension};
use crate::onnx::proto::{type_proto, TensorShapeProto};
use crate::onnx::{Error, Graph};
use std::collections::HashMap;

/// Sets the dims of each named graph input. A declared known dim must match; a symbolic one is
/// replaced. Returns the names pinned, sorted. On error the graph is unchanged.
pub fn run(graph: &mut Graph, shapes: &HashMap<String, Vec<i64>>) -> Result<Vec<String>, Error> {
    let graph_name = graph.name().to_string();
    let fail = |reason: String| Error::Graph {
        graph: graph_name.clone(),
        reason,
    };
    let mut pinned = Vec::new();
    let mut inputs = graph.inputs.clone();
    for (name, dims) in shapes {
        let input = inputs
            .iter_mut()
            .find(|v| v.name() == name)
            .ok_or_else(|| {
                fail(format!(
                    "a shape is given for '{name}', which is not a graph input"
                ))
            })?;
        if let Some(&d) = dims.iter().find(|&&d| d < 0) {
            return Err(fail(format!(
                "input '{name}': dimension {d} of {dims:?} is negative"
            )));
        }
        let Some(type_proto::Value::TensorType(t)) =
            input.r#type.as_mut().and_then(|t| t.value.as_mut())
        else {
            return Err(fail(format!("input '{name}' is not a tensor")));
        };
        match &mut t.shape {
            // Declared: same rank, known dims equal; symbolic dims take the numbers, keeping any
            // denotation.
            Some(shape) => {
                if shape.dim.len() != dims.len() {
                    return Err(fail(format!(
                        "input '{name}' has rank {}, the pinned shape {dims:?} rank {}",
                        shape.dim.len(),
                        dims.len()
                    )));
                }
                for (i, (d, &want)) in shape.dim.iter_mut().zip(dims).enumerate() {
                    if let Some(DimValue::DimValue(v)) = d.value {
                        if v != want {
                            return Err(fail(format!(
                                "input '{name}' dimension {i} is {v}, cannot pin it to {want}"
                            )));
                        }
                    }
                    d.value = Some(DimValue::DimValue(want));
                }
            }
            None => {
                t.shape = Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(DimValue::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                })
            }
        }
        pinned.push(name.clone());
    }
    graph.inputs = inputs;
    pinned.sort();
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::{Dim, ValueType};

    fn graph(dims: Vec<Dim>) -> Graph {
        Graph {
            inputs: vec![ValueType::new(1, dims).to_value_info("x")],
            ..Default::default()
        }
    }

    fn pins(dims: &[i64]) -> HashMap<String, Vec<i64>> {
        [("x".to_string(), dims.to_vec())].into()
    }

    #[test]
    fn symbolic_dims_take_the_numbers() {
        let mut g = graph(vec![Dim::Sym("n".into()), Dim::Known(3), Dim::Unknown]);
        assert_eq!(
            run(&mut g, &pins(&[2, 3, 8])).unwrap(),
            vec!["x".to_string()]
        );
        let t = ValueType::from_value_info(&g.inputs[0]).unwrap();
        assert_eq!(
            t.shape,
            Some(vec![Dim::Known(2), Dim::Known(3), Dim::Known(8)])
        );
    }

    #[test]
    fn contradictions_are_refused() {
        let mut g = graph(vec![Dim::Sym("n".into()), Dim::Known(3)]);
        assert!(run(&mut g, &pins(&[1, 4]))
            .unwrap_err()
            .to_string()
            .contains("dimension 1 is 3"));
        assert!(run(&mut g, &pins(&[1, 3, 1]))
            .unwrap_err()
            .to_string()
            .contains("rank 2"));
        assert!(run(&mut g, &pins(&[-1, 3]))
            .unwrap_err()
            .to_string()
            .contains("negative"));
        let other: HashMap<String, Vec<i64>> = [("y".to_string(), vec![1])].into();
        assert!(run(&mut g, &other).unwrap_err().to_string().contains("'y'"));
        // A scalar input stays a scalar.
        let mut s = graph(vec![]);
        assert!(run(&mut s, &pins(&[1])).is_err());
        assert!(run(&mut s, &pins(&[])).is_ok());
    }
}
