//! The executor's plans: the graph's nodes resolved to value slots, one step each, and the fused plan
//! that runs some pairs of nodes as one step when nobody can observe the value between them.

use crate::onnx::Graph;
use std::collections::{HashMap, HashSet};

/// One node, resolved to value slots.
#[derive(Debug)]
pub(super) struct Step {
    pub(super) node: usize,
    /// The Relu node this step's only reader was, fused into it: Conv applies it per tile, Add in the same
    /// in-place pass or right after (the Relu's own step is gone from the fused plan).
    pub(super) relu: Option<usize>,
    /// The DequantizeLinear node that alone read this QuantizeLinear step's output, fused into it: the
    /// step writes the dequantized values and the integer tensor between never exists.
    pub(super) dequant: Option<usize>,
    /// The Concat node whose output this Conv step reads in place: the step's inputs start with the
    /// Concat's, and the Concat's output never exists.
    pub(super) concat: Option<usize>,
    pub(super) inputs: Vec<Option<usize>>,
    pub(super) outputs: Vec<Option<usize>>,
    /// Slots whose last reader is this step: freed after it runs.
    pub(super) frees: Vec<usize>,
}

/// The fused plan, and the values it never materialises:
/// - each Conv or Add whose output is read by exactly one node, a Relu, becomes one step writing the
///   Relu's output;
/// - each QuantizeLinear whose output is read by exactly one node, a DequantizeLinear (as its data),
///   becomes one step writing the DequantizeLinear's output, placed where that node was (its scale and
///   zero point exist by then); the step's inputs are the QuantizeLinear's, then the
///   DequantizeLinear's after its first;
/// - each Concat whose readers are all Convs reading it as their data input is dropped, and those
///   Convs read its inputs in place (inputs: the Concat's, then the Conv's after its first). Its
///   inputs then live until the last of those Convs, as long as the Concat would have: no extra
///   memory, one large copy (and its fresh pages) less.
///
/// Graph outputs are never fused away.
pub(super) fn fuse(
    graph: &Graph,
    steps: &[Step],
    outputs: &HashSet<usize>,
) -> (Vec<Step>, HashSet<usize>) {
    let mut readers: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        for s in step.inputs.iter().flatten() {
            readers.entry(*s).or_default().push(i);
        }
    }
    let default_domain = |i: usize| matches!(graph.nodes[steps[i].node].domain(), "" | "ai.onnx");
    let op = |i: usize| graph.nodes[steps[i].node].op_type();
    // The one reader of step i's single output, when it has exactly one and default-domain ops both.
    let only_reader = |i: usize| -> Option<usize> {
        let step = &steps[i];
        if !default_domain(i) || step.outputs.len() != 1 {
            return None;
        }
        let out = step.outputs[0]?;
        if outputs.contains(&out) {
            return None;
        }
        match readers.get(&out).map(Vec::as_slice) {
            Some([r]) if default_domain(*r) && steps[*r].outputs.len() == 1 => Some(*r),
            _ => None,
        }
    };
    let mut relu_of: HashMap<usize, usize> = HashMap::new(); // conv or add step -> relu step
    let mut quant_of: HashMap<usize, usize> = HashMap::new(); // dequantize step -> quantize step
    let mut concat_of: HashMap<usize, usize> = HashMap::new(); // conv step -> concat step
    for (i, step) in steps.iter().enumerate() {
        let out = match step.outputs.as_slice() {
            [Some(out)] if op(i) == "Concat" && default_domain(i) && !outputs.contains(out) => *out,
            _ => continue,
        };
        let Some(rs) = readers.get(&out) else {
            continue;
        };
        let reads_in_place = |r: usize| {
            let inputs = &steps[r].inputs;
            op(r) == "Conv"
                && default_domain(r)
                && inputs.first() == Some(&Some(out))
                && !inputs[1..].contains(&Some(out))
        };
        if rs.iter().all(|&r| reads_in_place(r)) {
            concat_of.extend(rs.iter().map(|&r| (r, i)));
        }
    }
    for i in 0..steps.len() {
        let Some(r) = only_reader(i) else { continue };
        match (op(i), op(r)) {
            ("Conv" | "Add", "Relu") => {
                relu_of.insert(i, r);
            }
            ("QuantizeLinear", "DequantizeLinear") if steps[r].inputs[0] == steps[i].outputs[0] => {
                quant_of.insert(r, i);
            }
            _ => {}
        }
    }
    let relus: HashSet<usize> = relu_of.values().copied().collect();
    let quants: HashSet<usize> = quant_of.values().copied().collect();
    let concats: HashSet<usize> = concat_of.values().copied().collect();
    let mut away = HashSet::new();
    let mut plan = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        if relus.contains(&i) || quants.contains(&i) || concats.contains(&i) {
            continue;
        }
        let mut s = Step {
            node: step.node,
            relu: None,
            dequant: None,
            concat: None,
            inputs: step.inputs.clone(),
            outputs: step.outputs.clone(),
            frees: Vec::new(),
        };
        if let Some(&r) = relu_of.get(&i) {
            away.extend(step.outputs.iter().flatten());
            s.relu = Some(steps[r].node);
            s.outputs = steps[r].outputs.clone();
        }
        if let Some(&q) = quant_of.get(&i) {
            away.extend(steps[q].outputs.iter().flatten());
            s.node = steps[q].node;
            s.dequant = Some(step.node);
            s.inputs = spliced(&steps[q], step);
        }
        if let Some(&c) = concat_of.get(&i) {
            away.extend(steps[c].outputs.iter().flatten());
            s.concat = Some(steps[c].node);
            s.inputs = spliced(&steps[c], step);
        }
        plan.push(s);
    }
    (plan, away)
}

/// The inputs of one step that runs `first` and hands its output to `then` as that node's first input:
/// `first`'s inputs, then `then`'s after its first.
fn spliced(first: &Step, then: &Step) -> Vec<Option<usize>> {
    first
        .inputs
        .iter()
        .chain(then.inputs.iter().skip(1))
        .copied()
        .collect()
}
