//! Shape-manipulating ops and the shape arithmetic exporters emit: Shape, Size, ConstantOfShape,
//! Constant, Gather, Slice, Concat, Unsqueeze, Squeeze, Reshape, Flatten, Transpose, Expand, Range,
//! Split, Tile, Pad. These carry contents (data) through wherever the value is shape-like.

use super::super::dim::{self, broadcast_shapes, unify, Product};
use super::{axis, NodeCx, Out, RuleResult, FLOAT, INT64};
use crate::exec::ops as kernels;
use crate::shape::{Dim, ValueType};
use crate::tensor::Tensor;

pub(super) fn rule(cx: &NodeCx, op: &str) -> Option<RuleResult> {
    Some(match op {
        "Shape" => shape(cx),
        "Size" => Ok(vec![size(cx)]),
        "ConstantOfShape" => constant_of_shape(cx),
        "Constant" => constant(cx),
        "Gather" => gather(cx),
        "Slice" => slice(cx),
        "Concat" => concat(cx),
        "Unsqueeze" => unsqueeze(cx),
        "Squeeze" => squeeze(cx),
        "Reshape" => reshape(cx),
        "Flatten" => flatten(cx),
        "Transpose" => transpose(cx),
        "Expand" => expand(cx),
        "Range" => range(cx),
        "Split" => split(cx),
        "Tile" => tile(cx),
        "Pad" => pad(cx),
        _ => return None,
    })
}

fn err(e: kernels::OpError) -> String {
    e.to_string()
}

/// Shape: `[rank]` int64, whose contents are the input's dims (from opset 15, `dims[start..end]`).
fn shape(cx: &NodeCx) -> RuleResult {
    let Some(dims) = cx.shape(0) else {
        return Ok(vec![Out::new(INT64, vec![Dim::Unknown])]);
    };
    let (start, end) = if cx.opset >= 15 {
        (cx.attr_i("start")?.unwrap_or(0), cx.attr_i("end")?)
    } else {
        (0, None)
    };
    let (s, e) = kernels::shape_range(dims.len(), start, end);
    let data = dims[s..e].to_vec();
    Ok(vec![
        Out::new(INT64, vec![Dim::Known(data.len() as i64)]).with_data(Some(data))
    ])
}

fn size(cx: &NodeCx) -> Out {
    let n = cx
        .shape(0)
        .and_then(Product::of)
        .map_or(Dim::Unknown, |p| p.to_dim());
    Out::new(INT64, vec![]).with_data(Some(vec![n]))
}

/// The dims a shape-like input describes: from its contents, else as many unknowns as its length.
fn dims_from(cx: &NodeCx, i: usize) -> Option<Vec<Dim>> {
    if let Some(d) = cx.data(i) {
        return Some(d.to_vec());
    }
    if let Some(v) = cx.ints(i) {
        return Some(v.into_iter().map(Dim::Known).collect());
    }
    let len = cx.shape(i)?.first()?.known()?;
    Some(vec![Dim::Unknown; usize::try_from(len).ok()?])
}

fn constant_of_shape(cx: &NodeCx) -> RuleResult {
    let value = crate::onnx::graph::attr(cx.node, "value").and_then(|a| a.t.as_ref());
    let elem = value.map_or(FLOAT, |t| t.data_type());
    let shape = dims_from(cx, 0);
    if let Some(d) = shape
        .as_ref()
        .and_then(|s| s.iter().find_map(|d| d.known().filter(|&v| v < 0)))
    {
        return Err(format!("negative dimension {d} in the shape"));
    }
    Ok(vec![Out::of(ValueType { elem, shape })])
}

/// Constant: the type of whichever value attribute it has; the value itself is computed afterwards.
fn constant(cx: &NodeCx) -> RuleResult {
    let Some(a) = cx.node.attribute.first() else {
        return Ok(vec![]);
    };
    let ty = match a.name() {
        "value" => match &a.t {
            Some(t) => ValueType::new(
                t.data_type(),
                t.dims.iter().map(|&d| Dim::Known(d)).collect(),
            ),
            None => return Ok(vec![]),
        },
        "value_float" => ValueType::new(FLOAT, vec![]),
        "value_floats" => ValueType::new(FLOAT, vec![Dim::Known(a.floats.len() as i64)]),
        "value_int" => ValueType::new(INT64, vec![]),
        "value_ints" => ValueType::new(INT64, vec![Dim::Known(a.ints.len() as i64)]),
        _ => return Ok(vec![]),
    };
    Ok(vec![Out::of(ty)])
}

fn gather(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let (Some(data), Some(idx)) = (cx.shape(0), cx.shape(1)) else {
        return Ok(vec![Out::elem(elem)]);
    };
    if data.is_empty() {
        return Err("data must have rank >= 1".into());
    }
    let ax = axis(cx.attr_i("axis")?.unwrap_or(0), data.len())?;
    let picks = cx.ints(1);
    if let (Some(p), Dim::Known(d)) = (&picks, &data[ax]) {
        if let Some(bad) = p.iter().find(|&&i| i < -d || i >= *d) {
            return Err(format!(
                "index {bad} is out of range for dimension {d} of axis {ax}"
            ));
        }
    }
    let mut shape = data[..ax].to_vec();
    shape.extend(idx.iter().cloned());
    shape.extend(data[ax + 1..].iter().cloned());
    let contents = match (cx.data(0), picks) {
        (Some(v), Some(p)) if data.len() == 1 && idx.len() <= 1 => {
            let n = v.len() as i64;
            p.iter()
                .map(|&i| v.get((if i < 0 { i + n } else { i }) as usize).cloned())
                .collect()
        }
        _ => None,
    };
    Ok(vec![Out::new(elem, shape).with_data(contents)])
}

fn slice(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let Some(dims) = cx.shape(0) else {
        return Ok(vec![Out::elem(elem)]);
    };
    let params = if cx.opset < 10 {
        match (cx.attr_ints("starts")?, cx.attr_ints("ends")?) {
            (Some(s), Some(e)) => Some((s, e, cx.attr_ints("axes")?, None)),
            _ => return Err("attributes 'starts' and 'ends' are required".into()),
        }
    } else {
        let opt = |i: usize| {
            if cx.has(i) {
                cx.ints(i).map(Some)
            } else {
                Some(None)
            }
        };
        match (cx.ints(1), cx.ints(2), opt(3), opt(4)) {
            (Some(s), Some(e), Some(a), Some(st)) => Some((s, e, a, st)),
            _ => None,
        }
    };
    let Some((starts, ends, axes, steps)) = params else {
        // Bounds not known: the rank stays, the sliced axes (all, if those are unknown too) do not.
        let mut shape = dims.to_vec();
        match cx.ints(3) {
            Some(axes) => {
                for a in axes {
                    shape[axis(a, dims.len())?] = Dim::Unknown;
                }
            }
            None => shape.iter_mut().for_each(|d| *d = Dim::Unknown),
        }
        return Ok(vec![Out::new(elem, shape)]);
    };
    // Plan against the known dims; an unknown one is planned as huge and read only if the slice
    // keeps it whole.
    const BIG: i64 = i64::MAX / 4;
    let planned: Vec<i64> = dims.iter().map(|d| d.known().unwrap_or(BIG)).collect();
    let plan = kernels::slice_plan(&planned, &starts, &ends, axes.as_deref(), steps.as_deref())
        .map_err(err)?;
    let shape: Vec<Dim> = plan
        .iter()
        .zip(dims)
        .map(|(p, d)| match d {
            Dim::Known(_) => Dim::Known(p.len as i64),
            _ if p.start == 0 && p.step == 1 && p.len as i64 == BIG => d.clone(),
            _ => Dim::Unknown,
        })
        .collect();
    let contents = match cx.data(0) {
        Some(v) if dims.len() == 1 && dims[0].is_known() => {
            let p = plan[0];
            Some(
                (0..p.len)
                    .map(|k| v[(p.start + p.step * k as i64) as usize].clone())
                    .collect(),
            )
        }
        _ => None,
    };
    Ok(vec![Out::new(elem, shape).with_data(contents)])
}

fn concat(cx: &NodeCx) -> RuleResult {
    let ids: Vec<usize> = (0..cx.n_inputs()).filter(|&i| cx.has(i)).collect();
    let mut elem = 0;
    for &i in &ids {
        match (elem, cx.elem(i)) {
            (0, e) => elem = e,
            (a, b) if b != 0 && a != b => {
                return Err(format!("inputs have different element types ({a} and {b})"))
            }
            _ => {}
        }
    }
    let Some(rank) = ids.iter().find_map(|&i| cx.rank(i)) else {
        return Ok(vec![Out::elem(elem)]);
    };
    let a = match cx.attr_i("axis")? {
        Some(a) => axis(a, rank)?,
        None if cx.opset < 4 => 1,
        None => return Err("attribute 'axis' is required".into()),
    };
    let mut shape: Option<Vec<Dim>> = None;
    let mut along = Dim::Known(0);
    for &i in &ids {
        let Some(s) = cx.shape(i) else {
            along = Dim::Unknown;
            continue;
        };
        if s.len() != rank {
            return Err(format!("inputs have ranks {rank} and {}", s.len()));
        }
        along = along.add(&s[a]);
        shape = Some(match shape {
            None => s.to_vec(),
            Some(prev) => prev
                .iter()
                .zip(s)
                .enumerate()
                .map(|(k, (x, y))| if k == a { Ok(x.clone()) } else { unify(x, y) })
                .collect::<Result<_, _>>()
                .map_err(|e| format!("inputs disagree off axis {a}: {e}"))?,
        });
    }
    let mut shape = shape.expect("one input has a shape");
    shape[a] = along;
    let contents = if rank == 1 {
        ids.iter()
            .map(|&i| cx.data(i))
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.concat())
    } else {
        None
    };
    Ok(vec![Out::new(elem, shape).with_data(contents)])
}

/// Axes of Unsqueeze/Squeeze: the attribute before opset 13, the input since.
fn axes(cx: &NodeCx) -> Result<Option<Vec<i64>>, String> {
    if cx.opset < 13 {
        cx.attr_ints("axes")
    } else {
        Ok(cx.ints(1))
    }
}

fn unsqueeze(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let (Some(dims), Some(axes)) = (cx.shape(0), axes(cx)?) else {
        return Ok(vec![Out::elem(elem)]);
    };
    let shape = kernels::unsqueeze_dims(dims, &axes, Dim::Known(1)).map_err(err)?;
    let contents = (shape.len() <= 1)
        .then(|| cx.data(0).map(<[Dim]>::to_vec))
        .flatten();
    Ok(vec![Out::new(elem, shape).with_data(contents)])
}

fn squeeze(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let Some(dims) = cx.shape(0) else {
        return Ok(vec![Out::elem(elem)]);
    };
    let shape = match axes(cx)? {
        // A symbolic dim may well be 1 at run time: only a known other value is an error.
        Some(axes) => {
            kernels::squeeze_dims(dims, &axes, |d| d.known().is_none_or(|v| v == 1)).map_err(err)?
        }
        None if cx.opset >= 13 && cx.has(1) => return Ok(vec![Out::elem(elem)]),
        None if dims.iter().all(Dim::is_known) => dims
            .iter()
            .filter(|d| **d != Dim::Known(1))
            .cloned()
            .collect(),
        None => return Ok(vec![Out::elem(elem)]),
    };
    let contents = (shape.len() <= 1)
        .then(|| cx.data(0).map(<[Dim]>::to_vec))
        .flatten();
    Ok(vec![Out::new(elem, shape).with_data(contents)])
}

fn reshape(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let spec = if cx.opset < 5 {
        cx.attr_ints("shape")?
            .map(|v| v.into_iter().map(Dim::Known).collect())
    } else {
        dims_from(cx, 1)
    };
    let Some(spec) = spec else {
        return Ok(vec![Out::elem(elem)]);
    };
    let allowzero = cx.opset >= 14 && cx.attr_i("allowzero")?.unwrap_or(0) != 0;
    let input = cx.shape(0);
    let shape = reshape_dims(input, &spec, allowzero)?;
    let contents = (shape.len() <= 1)
        .then(|| cx.data(0).map(<[Dim]>::to_vec))
        .flatten();
    Ok(vec![Out::new(elem, shape).with_data(contents)])
}

/// Reshape's output over possibly symbolic dims: `0` copies, `-1` is what the input's product
/// leaves after the other dims' (symbols cancelling), and a fully known reshape must fit exactly.
fn reshape_dims(input: Option<&[Dim]>, spec: &[Dim], allowzero: bool) -> Result<Vec<Dim>, String> {
    let show = || {
        format!(
            "cannot reshape {} to {}",
            input.map_or("?".into(), dim::show),
            dim::show(spec)
        )
    };
    if allowzero && spec.contains(&Dim::Known(0)) && spec.contains(&Dim::Known(-1)) {
        return Err("with allowzero, a shape cannot hold both 0 and -1".into());
    }
    if spec.iter().filter(|d| **d == Dim::Known(-1)).count() > 1 {
        return Err(format!("shape {} holds -1 twice", dim::show(spec)));
    }
    let mut out = Vec::with_capacity(spec.len());
    let mut infer_at = None;
    for (i, d) in spec.iter().enumerate() {
        out.push(match d {
            Dim::Known(-1) => {
                infer_at = Some(i);
                Dim::Known(1)
            }
            Dim::Known(0) if !allowzero => match input {
                Some(s) => s.get(i).cloned().ok_or_else(show)?,
                None => Dim::Unknown,
            },
            Dim::Known(v) if *v < 0 => {
                return Err(format!(
                    "invalid dimension {v} in shape {}",
                    dim::show(spec)
                ))
            }
            d => d.clone(),
        });
    }
    let total = input.and_then(Product::of);
    let rest = Product::of(&out);
    match (infer_at, total, rest) {
        (Some(i), Some(t), Some(r)) => {
            out[i] = match t.divide(&r) {
                Some(q) => q.to_dim(),
                None if t.syms.is_empty() && r.syms.is_empty() => return Err(show()),
                None => Dim::Unknown,
            };
        }
        (Some(i), _, _) => out[i] = Dim::Unknown,
        (None, Some(t), Some(r))
            if t.syms.is_empty() && r.syms.is_empty() && t.known != r.known =>
        {
            return Err(show())
        }
        _ => {}
    }
    Ok(out)
}

fn flatten(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let Some(dims) = cx.shape(0) else {
        return Ok(vec![Out::new(elem, vec![Dim::Unknown, Dim::Unknown])]);
    };
    let a = kernels::flatten_axis(cx.attr_i("axis")?, dims.len()).map_err(err)?;
    let prod = |d: &[Dim]| Product::of(d).map_or(Dim::Unknown, |p| p.to_dim());
    Ok(vec![Out::new(
        elem,
        vec![prod(&dims[..a]), prod(&dims[a..])],
    )])
}

fn transpose(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let Some(dims) = cx.shape(0) else {
        return Ok(vec![Out::elem(elem)]);
    };
    let perm = kernels::transpose_perm(cx.attr_ints("perm")?, dims.len()).map_err(err)?;
    Ok(vec![Out::new(
        elem,
        perm.iter().map(|&p| dims[p].clone()).collect(),
    )])
}

fn expand(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let (Some(dims), Some(target)) = (cx.shape(0), dims_from(cx, 1)) else {
        return Ok(vec![Out::elem(elem)]);
    };
    if let Some(v) = target.iter().find_map(|d| d.known().filter(|&v| v < 0)) {
        return Err(format!("negative dimension {v} in the shape"));
    }
    Ok(vec![Out::new(elem, broadcast_shapes(&[dims, &target])?)])
}

/// Range: its length when start, limit and delta are known.
fn range(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let len = match (cx.konst(0), cx.konst(1), cx.konst(2)) {
        (Some(s), Some(l), Some(d)) => range_len(s, l, d).map_or(Dim::Unknown, Dim::Known),
        _ => Dim::Unknown,
    };
    Ok(vec![Out::new(elem, vec![len])])
}

fn range_len(s: &Tensor, l: &Tensor, d: &Tensor) -> Option<i64> {
    if let (Some(s), Some(l), Some(d)) = (s.as_i64s(), l.as_i64s(), d.as_i64s()) {
        let (s, l, d) = (
            *s.first()? as i128,
            *l.first()? as i128,
            *d.first()? as i128,
        );
        if d == 0 {
            return None;
        }
        let span = l - s;
        let n = span / d + i128::from(span % d != 0 && (span < 0) == (d < 0));
        return i64::try_from(n.max(0)).ok();
    }
    let (s, l, d) = (s.as_f32s(), l.as_f32s(), d.as_f32s());
    let n = ((*l.first()? as f64 - *s.first()? as f64) / *d.first()? as f64).ceil();
    (n.is_finite()).then_some(n.max(0.0) as i64)
}

/// Split: sizes from `split` (attribute before 13, input since), else equal parts (`num_outputs` at
/// 18).
fn split(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let n = cx.node.output.len();
    let Some(dims) = cx.shape(0) else {
        return Ok(vec![Out::elem(elem); n]);
    };
    let a = axis(cx.attr_i("axis")?.unwrap_or(0), dims.len())?;
    let sizes = if cx.opset < 13 {
        cx.attr_ints("split")?
    } else {
        cx.ints(1)
    };
    let parts: Vec<Dim> = match (sizes, &dims[a]) {
        (Some(s), d) => {
            if s.len() != n {
                return Err(format!("split {s:?} does not match {n} outputs"));
            }
            if let Dim::Known(total) = d {
                if s.iter().sum::<i64>() != *total {
                    return Err(format!("split {s:?} does not add up to dimension {total}"));
                }
            }
            s.into_iter().map(Dim::Known).collect()
        }
        (None, Dim::Known(total)) if cx.opset < 13 || !cx.has(1) => {
            // Equal parts; from opset 18 the last one may be smaller.
            let chunk = (total + n as i64 - 1) / n as i64;
            if cx.opset < 18 && total % n as i64 != 0 {
                return Err(format!(
                    "dimension {total} does not split into {n} equal parts"
                ));
            }
            (0..n as i64)
                .map(|k| Dim::Known((total - k * chunk).clamp(0, chunk)))
                .collect()
        }
        _ => vec![Dim::Unknown; n],
    };
    Ok(parts
        .into_iter()
        .map(|p| {
            let mut s = dims.to_vec();
            s[a] = p;
            Out::new(elem, s)
        })
        .collect())
}

fn tile(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let Some(dims) = cx.shape(0) else {
        return Ok(vec![Out::elem(elem)]);
    };
    let shape = match cx.ints(1) {
        Some(r) if r.len() == dims.len() => dims
            .iter()
            .zip(r)
            .map(|(d, k)| d.mul(&Dim::Known(k)))
            .collect(),
        Some(r) => return Err(format!("repeats {r:?} do not match rank {}", dims.len())),
        None => vec![Dim::Unknown; dims.len()],
    };
    Ok(vec![Out::new(elem, shape)])
}

/// Pad: `pads` (attribute before opset 11, input since) adds begin and end amounts per axis.
fn pad(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let Some(dims) = cx.shape(0) else {
        return Ok(vec![Out::elem(elem)]);
    };
    let pads = if cx.opset < 11 {
        cx.attr_ints("pads")?
    } else {
        cx.ints(1)
    };
    let axes: Vec<usize> = match (cx.has(3), cx.ints(3)) {
        (false, _) => (0..dims.len()).collect(),
        (true, Some(a)) => a
            .into_iter()
            .map(|a| axis(a, dims.len()))
            .collect::<Result<_, _>>()?,
        (true, None) => return Ok(vec![Out::new(elem, vec![Dim::Unknown; dims.len()])]),
    };
    let Some(pads) = pads else {
        return Ok(vec![Out::new(elem, vec![Dim::Unknown; dims.len()])]);
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("pads {pads:?} do not match {} axes", axes.len()));
    }
    let mut shape = dims.to_vec();
    for (k, &a) in axes.iter().enumerate() {
        shape[a] = shape[a].add(&Dim::Known(pads[k] + pads[k + axes.len()]));
    }
    Ok(vec![Out::new(elem, shape)])
}
