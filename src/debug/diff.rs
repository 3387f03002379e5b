//! `diff`: the FP32 graph and one lowered graph run side by side on the same inputs, every shared value
//! compared as it is produced.
//!
//! Two threads each run one executor with a tensor hook. The FP32 run's hook sends a copy of each float
//! value both graphs produce (matched by name) into a bounded channel; the lowered run's hook takes, for
//! each of its own values as it is produced, the FP32 copy of the same name (stashing the few the
//! lowered graph asks for out of order), compares the two in place and drops the copy. The FP32 run
//! blocks on the full channel when it is ahead, the lowered run waits in its hook when it is ahead, so
//! at any time only a couple of FP32 copies exist beside the two executors' own working sets.

use super::compare::{is_float, softmax_fp16_shift, TensorDiff};
use super::DebugError;
use crate::exec::Executor;
use crate::onnx::error::node_label;
use crate::onnx::graph::attr;
use crate::tensor::Tensor;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

/// How [`diff`] judges and reports.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Relative L2 error at which a value counts as diverged (for [`DiffReport::first`]).
    pub threshold: f64,
    /// How many of the worst values to list.
    pub worst: usize,
    /// A softmax input is flagged when FP16 rounding of its logits moves a row's distribution by more
    /// than this total-variation distance.
    pub softmax_tv: f64,
    /// A value is flagged as underflowing when more than this fraction of its non-zero values flush to
    /// zero in FP16.
    pub underflow: f64,
    /// Tensors in flight per producer (the channel bound).
    pub in_flight: usize,
}

impl DiffOptions {
    /// Defaults for a precision: FP16 keeps 11 significant bits (per-op error ~1e-3), so 1e-2 means
    /// something broke; INT8's per-op error is ~1e-2, so its threshold is 1e-1.
    pub fn for_precision(precision: &str) -> Self {
        DiffOptions {
            threshold: if precision == "int8" { 0.1 } else { 0.01 },
            worst: 10,
            softmax_tv: 0.01,
            underflow: 1e-3,
            in_flight: 1,
        }
    }
}

/// An FP16 range problem of one FP32 value, with the node that produced it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RangeFinding {
    pub kind: RangeKind,
    pub value: String,
    pub node: String,
    pub op: String,
    pub module: String,
    /// Overflow/underflow: the fraction of values; softmax: the total-variation shift (inf when a logit
    /// overflows); non-finite: the NaN + inf count in the lowered run.
    pub amount: f64,
    /// Largest |x| of the FP32 value.
    pub fp32_amax: f64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RangeKind {
    /// FP32 values beyond ±65504.
    Overflow,
    /// Non-zero FP32 values that flush to zero in FP16.
    Underflow,
    /// A softmax input whose logits FP16 would flatten or shift.
    SoftmaxLogits,
    /// The lowered run produced NaN/inf here from finite inputs (where non-finite values start).
    NonFinite,
}

/// One point of the error along the graph.
#[derive(Debug, Clone, Serialize)]
pub struct GrowthPoint {
    pub index: usize,
    pub value: String,
    pub rel_l2: f64,
}

/// The error per HRNet block, in graph order.
#[derive(Debug, Clone, Serialize)]
pub struct BlockGrowth {
    pub block: String,
    pub values: usize,
    pub max_rel_l2: f64,
    /// The error of the block's last value: what it hands on.
    pub last_rel_l2: f64,
}

/// What [`diff`] found for one lowered graph.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub precision: String,
    pub inputs: usize,
    pub threshold: f64,
    /// Values compared (float values both graphs produce).
    pub compared: usize,
    /// The first value in graph order whose error crosses the threshold (or turns non-finite).
    pub first: Option<TensorDiff>,
    /// The values whose nodes added the most error ([`TensorDiff::added`]), worst first.
    pub worst: Vec<TensorDiff>,
    /// FP16 range findings in graph order.
    pub range: Vec<RangeFinding>,
    /// The graph outputs.
    pub outputs: Vec<TensorDiff>,
    pub blocks: Vec<BlockGrowth>,
    /// Every compared value's error in graph order.
    pub growth: Vec<GrowthPoint>,
    pub seconds: f64,
    pub fp32_peak_activation_bytes: usize,
    pub lowered_peak_activation_bytes: usize,
    /// Values where the FP32 run itself had NaN/inf (a non-finite input, or a model that overflows):
    /// those elements are left out of every figure, so the figures say nothing about them.
    pub fp32_nonfinite: Option<Fp32NonFinite>,
    /// Every compared value, in graph order.
    #[serde(skip)]
    pub values: Vec<TensorDiff>,
}

/// Where the FP32 run stopped being finite.
#[derive(Debug, Clone, Serialize)]
pub struct Fp32NonFinite {
    /// Values with at least one NaN/inf element in the FP32 run.
    pub values: usize,
    /// NaN/inf elements over all of them.
    pub elements: u64,
    /// The first such value in graph order, and its producer (empty for a graph input).
    pub first: String,
    pub node: String,
}

/// What the FP32 graph says about each value: its producer and position.
struct Plan {
    /// Value name → index into `diffs`.
    index: HashMap<String, usize>,
    diffs: Vec<TensorDiff>,
    /// Index → indices of the producing node's inputs.
    inputs_of: Vec<Vec<usize>>,
    /// Index → softmax axis, for values read by a Softmax.
    softmax: HashMap<usize, i64>,
    outputs: Vec<usize>,
}

fn plan(reference: &Executor, lowered: &Executor, opset: i64) -> Plan {
    let low = lowered.graph();
    let mut low_names: HashSet<&str> = lowered.input_names().collect();
    low_names.extend(
        low.nodes
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str)),
    );
    let g = reference.graph();
    let mut p = Plan {
        index: HashMap::new(),
        diffs: Vec::new(),
        inputs_of: Vec::new(),
        softmax: HashMap::new(),
        outputs: Vec::new(),
    };
    for name in reference.input_names() {
        if low_names.contains(name) {
            p.index.insert(name.to_string(), p.diffs.len());
            p.diffs
                .push(TensorDiff::new(name, "", "input", p.diffs.len()));
            p.inputs_of.push(Vec::new());
        }
    }
    for n in &g.nodes {
        let ins: Vec<usize> = n
            .input
            .iter()
            .filter_map(|v| p.index.get(v).copied())
            .collect();
        for o in n
            .output
            .iter()
            .filter(|o| !o.is_empty() && low_names.contains(o.as_str()))
        {
            let i = p.diffs.len();
            p.index.insert(o.clone(), i);
            p.diffs
                .push(TensorDiff::new(o, &node_label(n), n.op_type(), i));
            p.inputs_of.push(ins.clone());
        }
    }
    for n in &g.nodes {
        if n.op_type() == "Softmax" && matches!(n.domain(), "" | "ai.onnx") {
            let default = if opset >= 13 { -1 } else { 1 };
            let axis = attr(n, "axis").map_or(default, |a| a.i());
            if let Some(&i) = n.input.first().and_then(|v| p.index.get(v)) {
                p.softmax.insert(i, axis);
            }
        }
    }
    p.outputs = reference
        .output_names()
        .filter_map(|o| p.index.get(o).copied())
        .collect();
    p
}

type Msg = (usize, Vec<usize>, Vec<f32>);

/// Runs `reference` (the FP32 graph) and `lowered` on every input in lockstep and compares every float
/// value they share by name. `opset` is the FP32 model's (for Softmax's default axis).
pub fn diff<I, E>(
    reference: &Executor,
    lowered: &Executor,
    precision: &str,
    opset: i64,
    inputs: I,
    opts: &DiffOptions,
) -> Result<DiffReport, DebugError>
where
    I: IntoIterator<Item = Result<HashMap<String, Tensor>, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let mut p = plan(reference, lowered, opset);
    let mut softmax_shift: HashMap<usize, f64> = HashMap::new();
    let (mut peak_ref, mut peak_low) = (0, 0);
    let mut count = 0usize;
    for (index, item) in inputs.into_iter().enumerate() {
        let feed = item.map_err(|e| DebugError::Input {
            index,
            source: e.into(),
        })?;
        let (sr, sl) = lockstep(
            reference,
            lowered,
            precision,
            feed,
            &mut p,
            &mut softmax_shift,
            opts,
        )?;
        peak_ref = peak_ref.max(sr);
        peak_low = peak_low.max(sl);
        count += 1;
    }
    if count == 0 {
        return Err(DebugError::NoInputs);
    }
    Ok(report(
        p,
        softmax_shift,
        precision,
        count,
        opts,
        started,
        peak_ref,
        peak_low,
    ))
}

/// One input through both graphs. Returns the two runs' peak activation bytes.
fn lockstep(
    reference: &Executor,
    lowered: &Executor,
    precision: &str,
    feed: HashMap<String, Tensor>,
    p: &mut Plan,
    softmax_shift: &mut HashMap<usize, f64>,
    opts: &DiffOptions,
) -> Result<(usize, usize), DebugError> {
    // The FP32 run sends copies of its values; the lowered run's hook compares each of its own values,
    // in place, with the FP32 copy of the same name as it is produced, so only FP32 copies are ever in
    // flight (the channel's bound, plus any the lowered graph asks for out of order).
    let (tx, rx) = sync_channel::<Msg>(opts.in_flight.max(1));
    let index = &p.index;
    let feed_low = feed.clone();
    let diffs = &mut p.diffs;
    let softmax = &p.softmax;
    std::thread::scope(|s| {
        let a = s.spawn(move || {
            let mut hook = move |name: &str, t: &Tensor| {
                if let Some(&i) = index.get(name) {
                    if is_float(t) {
                        // A closed channel means the comparison stopped: the run just finishes.
                        let _ = tx.send((i, t.shape.clone(), t.as_f32s()));
                    }
                }
            };
            // Watching only the compared values keeps each executor's fused plan where none of them is
            // fused away (the executors decide; watching a pre-Relu Conv output runs the plain plan).
            reference
                .run_watching(feed, index.keys().map(String::as_str), &mut hook)
                .map(|(_, stats)| stats.peak_activation_bytes)
        });
        let b = s.spawn(move || {
            let mut stash: HashMap<usize, (Vec<usize>, Vec<f32>)> = HashMap::new();
            let mut closed = false;
            let mut hook = move |name: &str, t: &Tensor| {
                let Some(&i) = index.get(name) else { return };
                if closed || !is_float(t) {
                    return;
                }
                let (shape, values) = match stash.remove(&i) {
                    Some(x) => x,
                    None => loop {
                        match rx.recv() {
                            Ok((j, sh, v)) if j == i => break (sh, v),
                            Ok((j, sh, v)) => {
                                stash.insert(j, (sh, v));
                            }
                            Err(_) => {
                                closed = true;
                                return;
                            }
                        }
                    },
                };
                let low: std::borrow::Cow<'_, [f32]> = match &t.data {
                    crate::tensor::Data::F32(v) => std::borrow::Cow::Borrowed(v),
                    _ => std::borrow::Cow::Owned(t.as_f32s()),
                };
                diffs[i].add(&values, &shape, &low, &t.shape);
                if let Some(&axis) = softmax.get(&i) {
                    let shift = softmax_fp16_shift(&values, &shape, axis);
                    let e = softmax_shift.entry(i).or_insert(0.0);
                    *e = e.max(shift);
                }
            };
            let r = lowered
                .run_watching(feed_low, index.keys().map(String::as_str), &mut hook)
                .map(|(_, stats)| stats.peak_activation_bytes);
            // Closes the channel: an FP32 run still sending finishes without waiting.
            drop(hook);
            r
        });
        let rb = b.join().map_err(|_| DebugError::Panicked {
            graph: precision.into(),
        })?;
        let ra = a.join().map_err(|_| DebugError::Panicked {
            graph: "fp32".into(),
        })?;
        let ra = ra.map_err(|source| DebugError::Exec {
            graph: "fp32".into(),
            source,
        })?;
        let rb = rb.map_err(|source| DebugError::Exec {
            graph: precision.into(),
            source,
        })?;
        Ok((ra, rb))
    })
}

#[allow(clippy::too_many_arguments)]
fn report(
    mut p: Plan,
    softmax_shift: HashMap<usize, f64>,
    precision: &str,
    inputs: usize,
    opts: &DiffOptions,
    started: Instant,
    peak_ref: usize,
    peak_low: usize,
) -> DiffReport {
    let compared: Vec<bool> = p
        .diffs
        .iter()
        .map(|d| d.elements > 0 || d.mismatch.is_some())
        .collect();
    let mut range = Vec::new();
    for (i, d) in p.diffs.iter().enumerate().filter(|(i, _)| compared[*i]) {
        let finding = |kind, amount| RangeFinding {
            kind,
            value: d.value.clone(),
            node: d.node.clone(),
            op: d.op.clone(),
            module: d.module.clone(),
            amount,
            fp32_amax: d.fp32_amax,
        };
        // Reported where they arise: a value whose producer read an input at least as far out of range
        // (a Reshape, Transpose or Relu passing it on) is left out.
        let inherited =
            |f: fn(&TensorDiff) -> f64| p.inputs_of[i].iter().any(|&j| f(&p.diffs[j]) >= f(d));
        if d.fp16_overflow > 0.0 && !inherited(|x| x.fp16_overflow) {
            range.push(finding(RangeKind::Overflow, d.fp16_overflow));
        }
        if d.fp16_underflow > opts.underflow && !inherited(|x| x.fp16_underflow) {
            range.push(finding(RangeKind::Underflow, d.fp16_underflow));
        }
        if let Some(&shift) = softmax_shift.get(&i) {
            if shift > opts.softmax_tv {
                range.push(finding(RangeKind::SoftmaxLogits, shift));
            }
        }
        // Where non-finite values start: none of the producer's inputs had them.
        if d.nonfinite() && p.inputs_of[i].iter().all(|&j| !p.diffs[j].nonfinite()) {
            range.push(finding(RangeKind::NonFinite, (d.nan + d.inf) as f64));
        }
    }
    let severity: Vec<f64> = p.diffs.iter().map(TensorDiff::severity).collect();
    for (i, d) in p.diffs.iter_mut().enumerate() {
        let upstream = p.inputs_of[i]
            .iter()
            .map(|&j| severity[j])
            .fold(0.0, f64::max);
        d.added = match (severity[i].is_finite(), upstream.is_finite()) {
            (true, true) => severity[i] - upstream,
            (false, true) => f64::INFINITY,
            _ => 0.0,
        };
    }
    let values: Vec<TensorDiff> = p
        .diffs
        .into_iter()
        .zip(&compared)
        .filter(|(_, c)| **c)
        .map(|(d, _)| d)
        .collect();
    let first = values
        .iter()
        .find(|d| d.severity() > opts.threshold)
        .cloned();
    let mut order: Vec<&TensorDiff> = values.iter().collect();
    order.sort_by(|a, b| {
        b.added
            .total_cmp(&a.added)
            .then(b.severity().total_cmp(&a.severity()))
            .then(a.index.cmp(&b.index))
    });
    let worst = order
        .iter()
        .take(opts.worst)
        .map(|d| (*d).clone())
        .collect();
    let outputs = p
        .outputs
        .iter()
        .filter_map(|&i| values.iter().find(|d| d.index == i).cloned())
        .collect();
    let mut blocks: Vec<BlockGrowth> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for d in &values {
        let block = if d.node.is_empty() {
            "input".to_string()
        } else {
            super::block_of(&d.node)
        };
        let at = *seen.entry(block.clone()).or_insert_with(|| {
            blocks.push(BlockGrowth {
                block,
                values: 0,
                max_rel_l2: 0.0,
                last_rel_l2: 0.0,
            });
            blocks.len() - 1
        });
        let b = &mut blocks[at];
        b.values += 1;
        b.max_rel_l2 = b.max_rel_l2.max(d.severity());
        b.last_rel_l2 = d.severity();
    }
    let fp32_nonfinite = values
        .iter()
        .find(|d| d.fp32_nonfinite > 0)
        .map(|d| Fp32NonFinite {
            values: values.iter().filter(|v| v.fp32_nonfinite > 0).count(),
            elements: values.iter().map(|v| v.fp32_nonfinite).sum(),
            first: d.value.clone(),
            node: d.node.clone(),
        });
    DiffReport {
        precision: precision.to_string(),
        inputs,
        threshold: opts.threshold,
        compared: values.len(),
        first,
        worst,
        range,
        outputs,
        blocks,
        growth: values
            .iter()
            .map(|d| GrowthPoint {
                index: d.index,
                value: d.value.clone(),
                rel_l2: d.severity(),
            })
            .collect(),
        seconds: started.elapsed().as_secs_f64(),
        fp32_peak_activation_bytes: peak_ref,
        lowered_peak_activation_bytes: peak_low,
        fp32_nonfinite,
        values,
    }
}

/// The report as text: the first divergence, the worst values, the FP16 range findings and the error
/// per block along the graph.
pub fn describe(r: &DiffReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let name = |d: &TensorDiff| {
        if d.node.is_empty() {
            format!("input '{}'", d.value)
        } else {
            format!(
                "{} ({}) [{}]",
                d.node,
                d.op,
                if d.module.is_empty() { "-" } else { &d.module }
            )
        }
    };
    let _ = writeln!(
        s,
        "{}: {} values compared on {} input(s) in {:.1} s (peak activations: fp32 {:.1} MiB, {} {:.1} MiB)",
        r.precision,
        r.compared,
        r.inputs,
        r.seconds,
        r.fp32_peak_activation_bytes as f64 / 1048576.0,
        r.precision,
        r.lowered_peak_activation_bytes as f64 / 1048576.0
    );
    if let Some(n) = &r.fp32_nonfinite {
        let _ = writeln!(
            s,
            "  FP32 itself is NaN/inf in {} element(s) of {} value(s), first '{}'{}: those elements are left out of every figure below",
            n.elements,
            n.values,
            n.first,
            if n.node.is_empty() {
                " (a graph input)".to_string()
            } else {
                format!(" from {}", n.node)
            }
        );
    }
    match &r.first {
        Some(d) => {
            let _ = writeln!(
                s,
                "  first value over rel L2 {:e}: '{}' from {}: rel L2 {:.3e}{}",
                r.threshold,
                d.value,
                name(d),
                d.rel_l2,
                if d.nonfinite() { ", non-finite" } else { "" }
            );
        }
        None => {
            let _ = writeln!(s, "  no value over rel L2 {:e}", r.threshold);
        }
    }
    for o in &r.outputs {
        let _ = writeln!(
            s,
            "  output '{}': rel L2 {:.3e}, max |err| {:.3e}, cosine {:.6}",
            o.value, o.rel_l2, o.max_abs, o.cosine
        );
    }
    let _ = writeln!(s, "  worst values (by the error their node adds):");
    let _ = writeln!(
        s,
        "    {:>9}  {:>9}  {:>9}  {:>9}  {:>5}  node (op) [module]",
        "added", "rel L2", "max |err|", "cosine", "NaN/inf"
    );
    for d in &r.worst {
        let _ = writeln!(
            s,
            "    {:>9.2e}  {:>9.3e}  {:>9.3e}  {:>9.6}  {:>5}  {}",
            d.added,
            d.rel_l2,
            d.max_abs,
            d.cosine,
            d.nan + d.inf,
            name(d)
        );
    }
    if r.range.is_empty() {
        let _ = writeln!(
            s,
            "  FP16 range: no overflow, underflow or flattened softmax logits"
        );
    } else {
        let _ = writeln!(s, "  FP16 range findings:");
        for f in &r.range {
            let _ = writeln!(
                s,
                "    {:<14} {:>9.3e}  amax {:>9.3e}  '{}' from {} ({})",
                format!("{:?}", f.kind),
                f.amount,
                f.fp32_amax,
                f.value,
                f.node,
                f.op
            );
        }
    }
    let _ = writeln!(s, "  error along the graph (per block, in order):");
    let _ = writeln!(s, "    {:>9}  {:>9}  {:>6}  block", "max", "last", "values");
    for b in &r.blocks {
        let _ = writeln!(
            s,
            "    {:>9.3e}  {:>9.3e}  {:>6}  {}",
            b.max_rel_l2, b.last_rel_l2, b.values, b.block
        );
    }
    s
}
