//! Elementwise math with numpy broadcasting: arithmetic (Add, Sub, Mul, Div, Pow, Min, Max, Sum,
//! Mean), comparisons and logic (Equal, Less, Greater, And, Or, Xor, Not, Where) and unary math.
//! Integer arithmetic wraps and integer Div truncates toward zero, as onnxruntime computes them.

use super::broadcast::{broadcast_shapes, offsets};
use super::elem::{same, Elem, Num, Unwrap};
use super::fastpath;
use super::{numel, Ctx, OpError, OpResult};
use crate::tensor::{Data, Tensor};

pub fn eval(cx: &Ctx, op: &str) -> OpResult<Vec<Tensor>> {
    let out = match op {
        "Add" | "Sub" | "Mul" | "Div" => binary(cx, op)?,
        "Pow" => pow(cx)?,
        "Min" | "Max" | "Sum" | "Mean" => variadic(cx, op)?,
        "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" => compare(cx, op)?,
        "And" | "Or" | "Xor" => logic(cx, op)?,
        "Not" => not(cx)?,
        "Where" => where_(cx)?,
        "Neg" | "Abs" | "Sign" | "Relu" => unary_num(cx, op)?,
        "Floor" | "Ceil" | "Round" | "Sqrt" | "Reciprocal" | "Exp" | "Log" | "Sigmoid" | "Tanh" => {
            unary_float(cx, op)?
        }
        other => return Err(OpError::unsupported(format!("op {other}"))),
    };
    Ok(vec![out])
}

/// `f` over the broadcast of `a` and `b`.
fn zip<A: Copy, B: Copy, R>(
    a: (&[usize], &[A]),
    b: (&[usize], &[B]),
    mut f: impl FnMut(A, B) -> OpResult<R>,
) -> OpResult<(Vec<usize>, Vec<R>)> {
    let shape = broadcast_shapes(&[a.0, b.0])?;
    numel(&shape)?;
    let (ia, ib) = (offsets(a.0, &shape), offsets(b.0, &shape));
    let out = ia
        .iter()
        .zip(&ib)
        .map(|(&i, &j)| f(a.1[i], b.1[j]))
        .collect::<OpResult<Vec<R>>>()?;
    Ok((shape, out))
}

fn no_bool(op: &str) -> OpError {
    OpError::invalid(format!("{op} does not take bool tensors"))
}

fn binary(cx: &Ctx, op: &str) -> OpResult<Tensor> {
    let (a, b) = (cx.input(0)?, cx.input(1)?);
    if let (Data::F32(av), Data::F32(bv)) = (&a.data, &b.data) {
        if let Some(t) = fastpath::binary_f32(op, a, av, b, bv) {
            return Ok(t);
        }
    }
    let half = match (&a.data, &b.data) {
        (Data::F16(av), Data::F16(bv)) => {
            fastpath::binary_half(op, a, av, b, bv).map(|(s, v)| (s, Data::F16(v)))
        }
        (Data::BF16(av), Data::BF16(bv)) => {
            fastpath::binary_half(op, a, av, b, bv).map(|(s, v)| (s, Data::BF16(v)))
        }
        _ => None,
    };
    if let Some((shape, data)) = half {
        return Ok(Tensor { shape, data });
    }
    crate::dispatch_num!(&a.data, v => binary_typed(op, a, v, b), bool => Err(no_bool(op)))
}

fn binary_typed<T: Num + Unwrap>(op: &str, a: &Tensor, av: &[T], b: &Tensor) -> OpResult<Tensor> {
    let bv = same::<T>(&b.data, &a.data, "both inputs")?;
    let f: fn(T, T) -> OpResult<T> = match op {
        "Add" => |x, y| Ok(x.add(y)),
        "Sub" => |x, y| Ok(x.sub(y)),
        "Mul" => |x, y| Ok(x.mul(y)),
        _ => |x, y| x.div(y),
    };
    let (shape, out) = zip((&a.shape, av), (&b.shape, bv), f)?;
    Ok(Tensor {
        shape,
        data: T::wrap(out),
    })
}

/// Pow: the exponent may have another numeric type than the base; the result has the base's.
fn pow(cx: &Ctx) -> OpResult<Tensor> {
    let (a, b) = (cx.input(0)?, cx.input(1)?);
    if matches!(b.data, Data::Bool(_)) {
        return Err(no_bool("Pow"));
    }
    let e_is_int = !matches!(
        b.data,
        Data::F32(_) | Data::F64(_) | Data::F16(_) | Data::BF16(_)
    );
    let ev: Vec<f64> = crate::dispatch_data!(&b.data, v => v.iter().map(|x| x.to_f64()).collect());
    crate::dispatch_num!(&a.data, v => {
        let (shape, out) = zip((&a.shape, v), (&b.shape, &ev), |x, e| Ok(x.pow_f64(e, e_is_int)))?;
        Ok(Tensor { shape, data: Elem::wrap(out) })
    }, bool => Err(no_bool("Pow")))
}

/// Min, Max, Sum, Mean over one or more inputs, broadcast together. Min and Max propagate NaN.
fn variadic(cx: &Ctx, op: &str) -> OpResult<Tensor> {
    let inputs: Vec<&Tensor> = (0..cx.inputs.len())
        .filter_map(|i| cx.opt_input(i))
        .collect();
    let first = *inputs
        .first()
        .ok_or_else(|| OpError::invalid(format!("{op} needs an input")))?;
    crate::dispatch_num!(&first.data, v => variadic_typed(op, &inputs, v), bool => Err(no_bool(op)))
}

fn variadic_typed<T: Num + Unwrap>(op: &str, inputs: &[&Tensor], first: &[T]) -> OpResult<Tensor> {
    if matches!(op, "Sum" | "Mean") && !T::FLOAT {
        return Err(OpError::invalid(format!("{op} takes float tensors")));
    }
    let f: fn(T, T) -> OpResult<T> = match op {
        "Min" => |x, y| {
            Ok(if x.is_nan() || (!y.is_nan() && x <= y) {
                x
            } else {
                y
            })
        },
        "Max" => |x, y| {
            Ok(if x.is_nan() || (!y.is_nan() && x >= y) {
                x
            } else {
                y
            })
        },
        _ => |x, y| Ok(x.add(y)),
    };
    let mut shape = inputs[0].shape.clone();
    let mut acc = first.to_vec();
    for t in &inputs[1..] {
        let v = same::<T>(&t.data, &inputs[0].data, "all inputs")?;
        let (s, out) = zip((&shape, &acc), (&t.shape, v), f)?;
        shape = s;
        acc = out;
    }
    if op == "Mean" {
        let n = T::from_i64(inputs.len() as i64);
        acc = acc.into_iter().map(|x| x.div(n)).collect::<OpResult<_>>()?;
    }
    Ok(Tensor {
        shape,
        data: T::wrap(acc),
    })
}

/// Comparisons, giving bool. NaN compares unequal and unordered.
fn compare(cx: &Ctx, op: &str) -> OpResult<Tensor> {
    let (a, b) = (cx.input(0)?, cx.input(1)?);
    crate::dispatch_data!(&a.data, v => compare_typed(op, a, v, b))
}

fn compare_typed<T: Elem + Unwrap>(op: &str, a: &Tensor, av: &[T], b: &Tensor) -> OpResult<Tensor> {
    let bv = same::<T>(&b.data, &a.data, "both inputs")?;
    let f: fn(T, T) -> OpResult<bool> = match op {
        "Equal" => |x, y| Ok(x == y),
        "Less" => |x, y| Ok(x < y),
        "LessOrEqual" => |x, y| Ok(x <= y),
        "Greater" => |x, y| Ok(x > y),
        _ => |x, y| Ok(x >= y),
    };
    let (shape, out) = zip((&a.shape, av), (&b.shape, bv), f)?;
    Ok(Tensor {
        shape,
        data: Data::Bool(out),
    })
}

fn bools<'t>(t: &'t Tensor, op: &str) -> OpResult<&'t [bool]> {
    match &t.data {
        Data::Bool(v) => Ok(v),
        other => Err(OpError::invalid(format!(
            "{op} takes bool tensors, got {:?}",
            other.dtype()
        ))),
    }
}

fn logic(cx: &Ctx, op: &str) -> OpResult<Tensor> {
    let (a, b) = (cx.input(0)?, cx.input(1)?);
    let f: fn(bool, bool) -> OpResult<bool> = match op {
        "And" => |x, y| Ok(x && y),
        "Or" => |x, y| Ok(x || y),
        _ => |x, y| Ok(x ^ y),
    };
    let (shape, out) = zip((&a.shape, bools(a, op)?), (&b.shape, bools(b, op)?), f)?;
    Ok(Tensor {
        shape,
        data: Data::Bool(out),
    })
}

fn not(cx: &Ctx) -> OpResult<Tensor> {
    let x = cx.input(0)?;
    let out = bools(x, "Not")?.iter().map(|v| !v).collect();
    Ok(Tensor {
        shape: x.shape.clone(),
        data: Data::Bool(out),
    })
}

/// Where(cond, x, y): `x` where `cond`, else `y`, all three broadcast together.
fn where_(cx: &Ctx) -> OpResult<Tensor> {
    let (c, x, y) = (cx.input(0)?, cx.input(1)?, cx.input(2)?);
    let cv = bools(c, "Where's condition")?;
    let shape = broadcast_shapes(&[&c.shape, &x.shape, &y.shape])?;
    numel(&shape)?;
    let (ic, ix, iy) = (
        offsets(&c.shape, &shape),
        offsets(&x.shape, &shape),
        offsets(&y.shape, &shape),
    );
    let data = crate::dispatch_data!(&x.data, xv => {
        let yv = same(&y.data, &x.data, "x and y")?;
        Elem::wrap((0..ic.len()).map(|k| if cv[ic[k]] { xv[ix[k]] } else { yv[iy[k]] }).collect())
    });
    Ok(Tensor { shape, data })
}

/// Unary ops defined on integers too.
fn unary_num(cx: &Ctx, op: &str) -> OpResult<Tensor> {
    let x = cx.input(0)?;
    if let Some(data) = unary_fast(x, op) {
        return Ok(Tensor {
            shape: x.shape.clone(),
            data,
        });
    }
    let data = crate::dispatch_num!(&x.data, v => unary_num_typed(op, v)?,
        bool => return Err(no_bool(op)));
    Ok(Tensor {
        shape: x.shape.clone(),
        data,
    })
}

fn unary_num_typed<T: Num>(op: &str, v: &[T]) -> OpResult<Data> {
    let zero = T::default();
    let out: Vec<T> = match op {
        "Neg" if !T::SIGNED => return Err(OpError::invalid("Neg takes signed types")),
        "Neg" => v.iter().map(|x| x.neg()).collect(),
        "Abs" => v.iter().map(|x| x.abs()).collect(),
        "Relu" => v.iter().map(|&x| if x < zero { zero } else { x }).collect(),
        _ => v
            .iter()
            .map(|&x| {
                if x > zero {
                    T::from_i64(1)
                } else if x < zero {
                    T::from_i64(-1)
                } else {
                    x
                }
            })
            .collect(),
    };
    Ok(T::wrap(out))
}

/// One unary function in f32 (for f32, f16, bf16) and f64.
type FloatFns = (fn(f32) -> f32, fn(f64) -> f64);

/// Unary math defined on floats only.
fn unary_float(cx: &Ctx, op: &str) -> OpResult<Tensor> {
    let x = cx.input(0)?;
    if let Some(data) = unary_fast(x, op) {
        return Ok(Tensor {
            shape: x.shape.clone(),
            data,
        });
    }
    let (f, g): FloatFns = match op {
        "Floor" => (f32::floor, f64::floor),
        "Ceil" => (f32::ceil, f64::ceil),
        "Round" => (f32::round_ties_even, f64::round_ties_even),
        "Sqrt" => (f32::sqrt, f64::sqrt),
        "Reciprocal" => (f32::recip, f64::recip),
        "Exp" => (f32::exp, f64::exp),
        "Log" => (f32::ln, f64::ln),
        "Tanh" => (f32::tanh, f64::tanh),
        _ => (|x| 1.0 / (1.0 + (-x).exp()), |x| 1.0 / (1.0 + (-x).exp())),
    };
    if !is_float(&x.data) {
        return Err(OpError::invalid(format!(
            "{op} takes float tensors, got {:?}",
            x.dtype()
        )));
    }
    let data = crate::dispatch_num!(&x.data, v => {
        Elem::wrap(v.iter().map(|a| a.float_op(f, g)).collect())
    }, bool => return Err(no_bool(op)));
    Ok(Tensor {
        shape: x.shape.clone(),
        data,
    })
}

/// The parallel f32 path of a unary op, where there is one.
fn unary_fast(x: &Tensor, op: &str) -> Option<Data> {
    match &x.data {
        Data::F32(v) => fastpath::unary_f32(op, v),
        Data::F16(v) => fastpath::unary_half(op, v).map(Data::F16),
        Data::BF16(v) => fastpath::unary_half(op, v).map(Data::BF16),
        _ => None,
    }
}

fn is_float(d: &Data) -> bool {
    matches!(
        d,
        Data::F32(_) | Data::F64(_) | Data::F16(_) | Data::BF16(_)
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn bin(op: &str, a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
        run(&node(op, 2, vec![]), &[a, b], 13)
    }

    #[test]
    fn add_broadcasts() {
        let a = f32s(&[2, 1], &[1., 2.]);
        let b = f32s(&[3], &[10., 20., 30.]);
        assert_eq!(
            bin("Add", &a, &b).unwrap(),
            f32s(&[2, 3], &[11., 21., 31., 12., 22., 32.])
        );
        assert!(bin("Add", &f32s(&[2], &[1., 2.]), &f32s(&[3], &[1., 2., 3.])).is_err());
        assert!(bin("Add", &f32s(&[1], &[1.]), &i64s(&[1], &[1])).is_err());
    }

    #[test]
    fn integer_div_truncates_and_refuses_zero() {
        let a = i64s(&[4], &[7, -7, 7, -7]);
        let b = i64s(&[4], &[2, 2, -2, -2]);
        assert_eq!(bin("Div", &a, &b).unwrap(), i64s(&[4], &[3, -3, -3, 3]));
        assert!(bin("Div", &a, &Tensor::scalar_i64(0)).is_err());
        // Floats divide by zero to infinity.
        let z = bin("Div", &f32s(&[1], &[1.]), &f32s(&[1], &[0.])).unwrap();
        assert_eq!(z.as_f32s(), vec![f32::INFINITY]);
    }

    #[test]
    fn shape_arithmetic_on_scalars() {
        let h = Tensor::scalar_i64(64);
        assert_eq!(
            bin("Mul", &h, &Tensor::scalar_i64(2)).unwrap(),
            Tensor::scalar_i64(128)
        );
        assert_eq!(
            bin("Sub", &h, &Tensor::scalar_i64(65)).unwrap(),
            Tensor::scalar_i64(-1)
        );
        assert_eq!(
            bin("Mul", &Tensor::scalar_i64(i64::MAX), &Tensor::scalar_i64(2)).unwrap(),
            Tensor::scalar_i64(-2)
        );
    }

    #[test]
    fn pow_mixed_types() {
        let a = f32s(&[2], &[2., 9.]);
        assert_eq!(
            bin("Pow", &a, &i64s(&[1], &[2])).unwrap(),
            f32s(&[2], &[4., 81.])
        );
        assert_eq!(
            bin("Pow", &a, &f32s(&[], &[0.5])).unwrap(),
            f32s(&[2], &[2f32.sqrt(), 3.])
        );
        assert_eq!(
            bin("Pow", &i64s(&[2], &[3, 2]), &i64s(&[2], &[3, -1])).unwrap(),
            i64s(&[2], &[27, 0])
        );
    }

    #[test]
    fn min_max_variadic_and_nan() {
        let a = f32s(&[3], &[1., f32::NAN, 5.]);
        let b = f32s(&[1], &[3.]);
        let mx = bin("Max", &a, &b).unwrap().as_f32s();
        assert_eq!((mx[0], mx[2]), (3., 5.));
        assert!(mx[1].is_nan());
        let mn = bin("Min", &b, &a).unwrap().as_f32s();
        assert_eq!((mn[0], mn[2]), (1., 3.));
        assert!(mn[1].is_nan());
        let c = i64s(&[1], &[4]);
        let n = node("Max", 3, vec![]);
        let out = run(&n, &[&i64s(&[2], &[1, 9]), &c, &i64s(&[], &[2])], 13).unwrap();
        assert_eq!(out, i64s(&[2], &[4, 9]));
        let one = run(&node("Min", 1, vec![]), &[&c], 13).unwrap();
        assert_eq!(one, c);
        let mean = run(
            &node("Mean", 2, vec![]),
            &[&f32s(&[1], &[1.]), &f32s(&[1], &[2.])],
            13,
        )
        .unwrap();
        assert_eq!(mean, f32s(&[1], &[1.5]));
        assert!(run(&node("Mean", 1, vec![]), &[&c], 13).is_err());
    }

    #[test]
    fn comparisons_give_bool() {
        let a = i64s(&[3], &[1, 2, 3]);
        let b = Tensor::scalar_i64(2);
        let eq = bin("Equal", &a, &b).unwrap();
        assert_eq!(eq.data, Data::Bool(vec![false, true, false]));
        assert_eq!(
            bin("Less", &a, &b).unwrap().data,
            Data::Bool(vec![true, false, false])
        );
        assert_eq!(
            bin("Greater", &a, &b).unwrap().data,
            Data::Bool(vec![false, false, true])
        );
        let nan = f32s(&[1], &[f32::NAN]);
        assert_eq!(
            bin("Equal", &nan, &nan).unwrap().data,
            Data::Bool(vec![false])
        );
        let not = run(&node("Not", 1, vec![]), &[&eq], 13).unwrap();
        assert_eq!(not.data, Data::Bool(vec![true, false, true]));
        assert!(run(&node("Not", 1, vec![]), &[&a], 13).is_err());
    }

    #[test]
    fn where_broadcasts_three_ways() {
        // The exporters' "replace -1 in a shape" pattern.
        let shape = i64s(&[3], &[2, -1, 4]);
        let cond = bin("Equal", &shape, &Tensor::scalar_i64(-1)).unwrap();
        let n = node("Where", 3, vec![]);
        let out = run(&n, &[&cond, &Tensor::scalar_i64(1), &shape], 13).unwrap();
        assert_eq!(out, i64s(&[3], &[2, 1, 4]));
        assert!(run(&n, &[&cond, &f32s(&[], &[1.]), &shape], 13).is_err());
        assert!(run(&n, &[&shape, &shape, &shape], 13).is_err());
    }

    #[test]
    fn unary_ops() {
        let x = f32s(&[4], &[-1.5, -0.5, 0.5, 2.5]);
        let u = |op: &str, t: &Tensor| run(&node(op, 1, vec![]), &[t], 13);
        assert_eq!(u("Floor", &x).unwrap(), f32s(&[4], &[-2., -1., 0., 2.]));
        assert_eq!(u("Ceil", &x).unwrap(), f32s(&[4], &[-1., -0., 1., 3.]));
        assert_eq!(u("Round", &x).unwrap(), f32s(&[4], &[-2., -0., 0., 2.]));
        assert_eq!(u("Abs", &x).unwrap(), f32s(&[4], &[1.5, 0.5, 0.5, 2.5]));
        assert_eq!(u("Neg", &x).unwrap(), f32s(&[4], &[1.5, 0.5, -0.5, -2.5]));
        assert_eq!(u("Relu", &x).unwrap(), f32s(&[4], &[0., 0., 0.5, 2.5]));
        assert_eq!(u("Sqrt", &f32s(&[1], &[9.])).unwrap(), f32s(&[1], &[3.]));
        assert_eq!(
            u("Sigmoid", &f32s(&[1], &[0.])).unwrap(),
            f32s(&[1], &[0.5])
        );
        let i = i64s(&[3], &[-3, 0, 4]);
        assert_eq!(u("Abs", &i).unwrap(), i64s(&[3], &[3, 0, 4]));
        assert_eq!(u("Neg", &i).unwrap(), i64s(&[3], &[3, 0, -4]));
        assert_eq!(u("Sign", &i).unwrap(), i64s(&[3], &[-1, 0, 1]));
        assert!(u("Sqrt", &i).is_err());
        assert!(u("Floor", &i).is_err());
        let unsigned = Tensor::new(vec![1], Data::U8(vec![3])).unwrap();
        assert!(u("Neg", &unsigned).is_err());
    }

    #[test]
    fn unknown_op_is_unsupported() {
        let err = run(
            &node("NoSuchOp", 2, vec![]),
            &[&f32s(&[1], &[1.]), &f32s(&[1], &[1.])],
            13,
        )
        .unwrap_err();
        assert!(matches!(err, OpError::Unsupported(_)));
    }
}
