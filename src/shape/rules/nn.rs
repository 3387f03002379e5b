//! Neural-network ops: Conv and the pools (with pads, strides, dilations, ceil_mode, auto_pad),
//! BatchNormalization, MatMul, Gemm, the Reduce family and ArgMax/ArgMin. These check that their
//! inputs fit together (channels, inner dimensions) and say which node does not.

use super::super::dim::{self, broadcast_shapes, unify};
use super::{axis, NodeCx, Out, RuleResult, INT64};
use crate::shape::Dim;

pub(super) fn rule(cx: &NodeCx, op: &str) -> Option<RuleResult> {
    Some(match op {
        "Conv" => conv(cx),
        "MaxPool" | "AveragePool" | "LpPool" => pool(cx),
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => global_pool(cx),
        "BatchNormalization" => batch_norm(cx),
        "MatMul" => matmul(cx),
        "Gemm" => gemm(cx),
        "ArgMax" | "ArgMin" => arg(cx),
        _ if op.starts_with("Reduce") => reduce(cx, op),
        _ => return None,
    })
}

/// The sliding-window attributes of Conv and the pools, for `n` spatial axes.
struct Window {
    kernel: Vec<i64>,
    strides: Vec<i64>,
    dilations: Vec<i64>,
    pads: Vec<i64>,
    auto_pad: String,
    ceil_mode: bool,
}

impl Window {
    fn read(cx: &NodeCx, kernel: Vec<i64>) -> Result<Self, String> {
        let n = kernel.len();
        let list = |name: &str, default: i64, len: usize| -> Result<Vec<i64>, String> {
            match cx.attr_ints(name)? {
                None => Ok(vec![default; len]),
                Some(v) if v.len() == len => Ok(v),
                Some(v) => Err(format!("'{name}' {v:?} should have {len} values")),
            }
        };
        let w = Window {
            strides: list("strides", 1, n)?,
            dilations: list("dilations", 1, n)?,
            pads: list("pads", 0, 2 * n)?,
            auto_pad: cx.attr_s("auto_pad")?.unwrap_or_else(|| "NOTSET".into()),
            ceil_mode: cx.attr_i("ceil_mode")?.unwrap_or(0) != 0,
            kernel,
        };
        if w.strides
            .iter()
            .chain(&w.dilations)
            .chain(&w.kernel)
            .any(|&v| v < 1)
        {
            return Err("kernel, strides and dilations must be positive".into());
        }
        if w.pads.iter().any(|&p| p < 0) {
            return Err(format!("negative pads {:?}", w.pads));
        }
        Ok(w)
    }

    /// Output size of spatial axis `i` for input size `x`.
    fn out(&self, i: usize, x: &Dim) -> Result<Dim, String> {
        let (k, s, d) = (self.kernel[i], self.strides[i], self.dilations[i]);
        let extent = d * (k - 1) + 1;
        let out = match self.auto_pad.as_str() {
            // ceil(x / s)
            "SAME_UPPER" | "SAME_LOWER" => x.add(&Dim::Known(s - 1)).div_floor(s),
            "NOTSET" | "VALID" => {
                let (pb, pe) = if self.auto_pad == "VALID" {
                    (0, 0)
                } else {
                    (self.pads[i], self.pads[i + self.kernel.len()])
                };
                let num = pb + pe - extent;
                if self.ceil_mode {
                    // ceil((x + num) / s) + 1, less one when the last window would start in the end
                    // padding (what onnxruntime and PyTorch do).
                    match x.known() {
                        Some(x) => {
                            let mut o = (x + num + s - 1).div_euclid(s) + 1;
                            if (o - 1) * s >= x + pb {
                                o -= 1;
                            }
                            Dim::Known(o)
                        }
                        None => Dim::Unknown,
                    }
                } else {
                    // floor((x + num) / s) + 1 == floor((x + num + s) / s)
                    x.add(&Dim::Known(num + s)).div_floor(s)
                }
            }
            other => return Err(format!("unknown auto_pad '{other}'")),
        };
        if let Dim::Known(o) = out {
            if o < 1 {
                return Err(format!(
                    "the window (kernel {k}, dilation {d}) does not fit spatial axis {i} of size \
                     {x} with pads {:?}",
                    self.pads
                ));
            }
        }
        Ok(out)
    }
}

/// Conv: X `[N, C, D...]`, W `[M, C/group, k...]`, optional B `[M]` → `[N, M, out...]`.
fn conv(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let (Some(x), Some(w)) = (cx.shape(0), cx.shape(1)) else {
        return Ok(vec![Out::elem(elem)]);
    };
    if x.len() < 3 || x.len() != w.len() {
        return Err(format!(
            "input {} and weights {} do not fit",
            dim::show(x),
            dim::show(w)
        ));
    }
    let group = cx.attr_i("group")?.unwrap_or(1);
    if group < 1 {
        return Err(format!("group {group} must be positive"));
    }
    if let (Dim::Known(c), Dim::Known(cw)) = (&x[1], &w[1]) {
        if *c != cw * group {
            return Err(format!(
                "input has {c} channels, the weights {} expect {} (group {group})",
                dim::show(w),
                cw * group
            ));
        }
    }
    if let Dim::Known(m) = w[0] {
        if m % group != 0 {
            return Err(format!(
                "{m} output channels do not divide into {group} groups"
            ));
        }
    }
    let mut m = w[0].clone();
    if let Some(b) = cx.shape(2) {
        if b.len() != 1 {
            return Err(format!("bias {} must be 1-D", dim::show(b)));
        }
        m = unify(&m, &b[0]).map_err(|e| format!("bias does not match the weights: {e}"))?;
    }
    let n = x.len() - 2;
    let kernel = match cx.attr_ints("kernel_shape")? {
        Some(k) => {
            if k.len() != n
                || k.iter()
                    .zip(&w[2..])
                    .any(|(a, b)| b.known().is_some_and(|b| b != *a))
            {
                return Err(format!(
                    "kernel_shape {k:?} does not match the weights {}",
                    dim::show(w)
                ));
            }
            k
        }
        None => match w[2..].iter().map(Dim::known).collect::<Option<Vec<_>>>() {
            Some(k) => k,
            None => {
                let mut shape = vec![x[0].clone(), m];
                shape.extend(std::iter::repeat_n(Dim::Unknown, n));
                return Ok(vec![Out::new(elem, shape)]);
            }
        },
    };
    let win = Window::read(cx, kernel)?;
    let mut shape = vec![x[0].clone(), m];
    for i in 0..n {
        shape.push(win.out(i, &x[i + 2])?);
    }
    Ok(vec![Out::new(elem, shape)])
}

/// MaxPool, AveragePool, LpPool: `kernel_shape` is required; MaxPool's optional second output holds
/// int64 indices.
fn pool(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let Some(x) = cx.shape(0) else {
        return Ok(vec![Out::elem(elem), Out::elem(INT64)]);
    };
    let kernel = cx
        .attr_ints("kernel_shape")?
        .ok_or("attribute 'kernel_shape' is required")?;
    if x.len() != kernel.len() + 2 {
        return Err(format!(
            "kernel_shape {kernel:?} does not fit input {}",
            dim::show(x)
        ));
    }
    let win = Window::read(cx, kernel)?;
    let mut shape = x[..2].to_vec();
    for i in 0..x.len() - 2 {
        shape.push(win.out(i, &x[i + 2])?);
    }
    Ok(vec![Out::new(elem, shape.clone()), Out::new(INT64, shape)])
}

fn global_pool(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let Some(x) = cx.shape(0) else {
        return Ok(vec![Out::elem(elem)]);
    };
    if x.len() < 2 {
        return Err(format!(
            "input {} needs a batch and a channel axis",
            dim::show(x)
        ));
    }
    let mut shape = x[..2].to_vec();
    shape.extend(std::iter::repeat_n(Dim::Known(1), x.len() - 2));
    Ok(vec![Out::new(elem, shape)])
}

/// BatchNormalization: Y as X; scale, bias, mean and var are `[C]`. Training mode's extra outputs
/// are the running mean and variance, `[C]`.
fn batch_norm(cx: &NodeCx) -> RuleResult {
    let y = cx.same_as(0);
    let mut c = cx
        .shape(0)
        .and_then(|x| x.get(1).cloned())
        .unwrap_or(Dim::Unknown);
    for i in 1..5 {
        if let Some(s) = cx.shape(i) {
            if s.len() == 1 {
                c = unify(&c, &s[0])
                    .map_err(|e| format!("input {i} does not match the channels: {e}"))?;
            }
        }
    }
    let stat = Out::new(cx.elem(3), vec![c]);
    Ok(vec![y, stat.clone(), stat.clone(), stat.clone(), stat])
}

/// MatMul with numpy semantics: 1-D operands are promoted and their axis removed again; batch axes
/// broadcast; the inner dimensions must agree.
fn matmul(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let (Some(a), Some(b)) = (cx.shape(0), cx.shape(1)) else {
        return Ok(vec![Out::elem(elem)]);
    };
    if a.is_empty() || b.is_empty() {
        return Err("MatMul does not take scalars".into());
    }
    let a2: Vec<Dim> = if a.len() == 1 {
        vec![Dim::Known(1), a[0].clone()]
    } else {
        a.to_vec()
    };
    let b2: Vec<Dim> = if b.len() == 1 {
        vec![b[0].clone(), Dim::Known(1)]
    } else {
        b.to_vec()
    };
    let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
    unify(ka, kb).map_err(|_| {
        format!(
            "inner dimensions of {} and {} differ",
            dim::show(a),
            dim::show(b)
        )
    })?;
    let mut shape = broadcast_shapes(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]])?;
    if a.len() > 1 {
        shape.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        shape.push(b2[b2.len() - 1].clone());
    }
    Ok(vec![Out::new(elem, shape)])
}

/// Gemm: `alpha * A' B' + beta * C` with A' `[M, K]` and B' `[K, N]`; C broadcasts to `[M, N]`.
fn gemm(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let (Some(a), Some(b)) = (cx.shape(0), cx.shape(1)) else {
        return Ok(vec![Out::new(elem, vec![Dim::Unknown, Dim::Unknown])]);
    };
    if a.len() != 2 || b.len() != 2 {
        return Err(format!(
            "A {} and B {} must be 2-D",
            dim::show(a),
            dim::show(b)
        ));
    }
    let ta = cx.attr_i("transA")?.unwrap_or(0) != 0;
    let tb = cx.attr_i("transB")?.unwrap_or(0) != 0;
    let (m, ka) = if ta { (&a[1], &a[0]) } else { (&a[0], &a[1]) };
    let (kb, n) = if tb { (&b[1], &b[0]) } else { (&b[0], &b[1]) };
    unify(ka, kb).map_err(|_| {
        format!(
            "inner dimensions of {} and {} differ",
            dim::show(a),
            dim::show(b)
        )
    })?;
    let shape = vec![m.clone(), n.clone()];
    if let Some(c) = cx.shape(2) {
        let out = broadcast_shapes(&[&shape, c]).map_err(|e| format!("C does not fit: {e}"))?;
        if out.len() != 2 {
            return Err(format!("C {} does not broadcast to [M, N]", dim::show(c)));
        }
    }
    Ok(vec![Out::new(elem, shape)])
}

/// The Reduce family: `axes` an attribute, or an input from opset 13 (ReduceSum) / 18 (the others).
fn reduce(cx: &NodeCx, op: &str) -> RuleResult {
    let elem = cx.elem(0);
    let Some(x) = cx.shape(0) else {
        return Ok(vec![Out::elem(elem)]);
    };
    let keep = cx.attr_i("keepdims")?.unwrap_or(1) != 0;
    let axes_as_input = cx.opset >= if op == "ReduceSum" { 13 } else { 18 };
    let axes = if axes_as_input {
        if cx.has(1) {
            match cx.ints(1) {
                Some(a) => Some(a),
                // Unknown axes: keepdims keeps the rank, nothing else is known.
                None if keep => return Ok(vec![Out::new(elem, vec![Dim::Unknown; x.len()])]),
                None => return Ok(vec![Out::elem(elem)]),
            }
        } else {
            None
        }
    } else {
        cx.attr_ints("axes")?
    };
    let axes = axes.unwrap_or_default();
    let noop = axes_as_input && cx.attr_i("noop_with_empty_axes")?.unwrap_or(0) != 0;
    if axes.is_empty() && noop {
        return Ok(vec![cx.same_as(0)]);
    }
    let mut reduced = vec![axes.is_empty(); x.len()];
    for a in axes {
        reduced[axis(a, x.len())?] = true;
    }
    let shape = x
        .iter()
        .zip(&reduced)
        .filter_map(|(d, &r)| match (r, keep) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Known(1)),
            (true, false) => None,
        })
        .collect();
    Ok(vec![Out::new(elem, shape)])
}

fn arg(cx: &NodeCx) -> RuleResult {
    let Some(x) = cx.shape(0) else {
        return Ok(vec![Out::elem(INT64)]);
    };
    let a = axis(cx.attr_i("axis")?.unwrap_or(0), x.len())?;
    let keep = cx.attr_i("keepdims")?.unwrap_or(1) != 0;
    let mut shape = x.to_vec();
    if keep {
        shape[a] = Dim::Known(1);
    } else {
        shape.remove(a);
    }
    Ok(vec![Out::new(INT64, shape)])
}
