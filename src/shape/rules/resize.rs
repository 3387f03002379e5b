//! Resize (and its predecessor Upsample): output sizes from `sizes` (possibly symbolic contents),
//! or from `scales`, per the opset's input layout.

use super::{axis, NodeCx, Out, RuleResult};
use crate::shape::Dim;

/// Where each opset keeps its scales and sizes inputs.
struct Layout {
    scales: Option<usize>,
    sizes: Option<usize>,
}

fn layout(cx: &NodeCx) -> Layout {
    match (cx.node.op_type(), cx.opset) {
        ("Upsample", o) if o < 9 => Layout {
            scales: None,
            sizes: None,
        },
        ("Upsample", _) | ("Resize", ..=10) => Layout {
            scales: Some(1),
            sizes: None,
        },
        _ => Layout {
            scales: Some(2),
            sizes: Some(3),
        },
    }
}

pub(super) fn resize(cx: &NodeCx) -> RuleResult {
    let elem = cx.elem(0);
    let Some(x) = cx.shape(0) else {
        return Ok(vec![Out::elem(elem)]);
    };
    let lay = layout(cx);
    let axes: Vec<usize> = match cx.attr_ints("axes")? {
        Some(a) if cx.opset >= 18 => a
            .into_iter()
            .map(|a| axis(a, x.len()))
            .collect::<Result<_, _>>()?,
        _ => (0..x.len()).collect(),
    };
    // Known contents of an input, `Some(empty)` when it is absent or empty (both mean "not given").
    let scales: Option<Vec<f32>> = match lay.scales {
        None => crate::onnx::graph::attr(cx.node, "scales").map(|a| a.floats.clone()),
        Some(i) if !cx.has(i) => Some(vec![]),
        Some(i) => cx.floats(i),
    };
    let sizes: Option<Vec<Dim>> = match lay.sizes {
        Some(i) if cx.has(i) => cx
            .data(i)
            .map(<[Dim]>::to_vec)
            .or_else(|| cx.ints(i).map(|v| v.into_iter().map(Dim::Known).collect())),
        _ => Some(vec![]),
    };
    let mut shape = x.to_vec();
    match (sizes.as_deref(), scales.as_deref()) {
        (Some(s), _) if !s.is_empty() => {
            check_len("sizes", s.len(), axes.len())?;
            let policy = cx
                .attr_s("keep_aspect_ratio_policy")?
                .unwrap_or_else(|| "stretch".into());
            if cx.opset < 18 || policy == "stretch" {
                for (&a, d) in axes.iter().zip(s) {
                    shape[a] = d.clone();
                }
            } else {
                keep_aspect(&mut shape, &axes, s, &policy)?;
            }
        }
        (_, Some(sc)) if !sc.is_empty() => {
            check_len("scales", sc.len(), axes.len())?;
            for (&a, &f) in axes.iter().zip(sc) {
                if f.is_nan() || f <= 0.0 {
                    return Err(format!("scale {f} must be positive"));
                }
                shape[a] = scaled(&x[a], f);
            }
        }
        (Some(_), Some(_)) => return Err("neither scales nor sizes is given".into()),
        // Given, but not known here.
        _ => {
            for &a in &axes {
                shape[a] = Dim::Unknown;
            }
        }
    }
    Ok(vec![Out::new(elem, shape)])
}

fn check_len(what: &str, got: usize, want: usize) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what} has {got} values for {want} axes"))
    }
}

/// `floor(x * scale)`, computed as onnxruntime does: the dimension converted to float and
/// multiplied by the float scale.
fn scaled(x: &Dim, f: f32) -> Dim {
    match x {
        _ if f == 1.0 => x.clone(),
        Dim::Known(v) => Dim::Known((*v as f32 * f).floor() as i64),
        Dim::Sym(s) => Dim::Sym(format!("floor(({s})*{f})")),
        Dim::Unknown => Dim::Unknown,
    }
}

/// keep_aspect_ratio_policy `not_larger` / `not_smaller` (opset 18): one scale for all axes, the
/// smallest or largest of `sizes / input`, and `round(scale * input)` per axis.
fn keep_aspect(
    shape: &mut [Dim],
    axes: &[usize],
    sizes: &[Dim],
    policy: &str,
) -> Result<(), String> {
    let pairs: Option<Vec<(i64, i64)>> = axes
        .iter()
        .zip(sizes)
        .map(|(&a, s)| Some((shape[a].known()?, s.known()?)))
        .collect();
    let Some(pairs) = pairs else {
        for &a in axes {
            shape[a] = Dim::Unknown;
        }
        return Ok(());
    };
    let ratios = pairs.iter().map(|&(x, s)| s as f64 / x as f64);
    let scale = match policy {
        "not_larger" => ratios.fold(f64::INFINITY, f64::min),
        "not_smaller" => ratios.fold(0.0, f64::max),
        other => return Err(format!("unknown keep_aspect_ratio_policy '{other}'")),
    };
    for (&a, &(x, _)) in axes.iter().zip(&pairs) {
        shape[a] = Dim::Known((scale * x as f64 + 0.5).floor() as i64);
    }
    Ok(())
}
