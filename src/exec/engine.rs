//! Runs a graph on the CPU: nodes in topological order through the op kernels of [`super::ops`], each
//! intermediate tensor dropped right after its last reader so that peak memory is the weights plus the
//! largest live set of activations. A hook sees every tensor as it is produced (calibration builds its
//! histograms there; the precision debugger compares runs there) and any value can be asked for by name.

use super::ops::{self, OpError};
use crate::onnx::error::node_label;
use crate::onnx::{Graph, Model};
use crate::tensor::{Data, Tensor};
use half::f16;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// How the executor computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Numerics {
    /// Plain float32.
    #[default]
    Fp32,
    /// Every float tensor and weight rounded to float16 (round to nearest even) after it is produced, as
    /// an FP16 engine stores them; arithmetic inside an op stays float32.
    Fp16,
}

#[derive(Debug, Clone, Copy)]
pub struct ExecOptions {
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    pub numerics: Numerics,
    /// Time every node and report the totals per op type in [`RunStats::profile`].
    pub profile: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            threads: 0,
            numerics: Numerics::Fp32,
            profile: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    #[error("the executor does not support {}: {}", if .0.len() == 1 { "this node" } else { "these nodes" }, .0.join("; "))]
    Unsupported(Vec<String>),
    #[error("node '{node}' ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    #[error("graph input '{name}': {reason}")]
    Input { name: String, reason: String },
    #[error("no value named '{0}' in the graph")]
    UnknownValue(String),
    #[error("initializer '{name}': {reason}")]
    Initializer { name: String, reason: String },
    #[error("building the thread pool: {0}")]
    Threads(String),
}

/// A tensor observer: called with each value's name and contents as soon as the value is produced
/// (graph inputs included), before it can be freed.
pub type Hook<'a> = &'a mut (dyn FnMut(&str, &Tensor) + Send);

/// What one run held.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunStats {
    /// The most bytes of activations (everything but the weights) alive at once.
    pub peak_activation_bytes: usize,
    /// Time per op type, when [`ExecOptions::profile`] is on.
    pub profile: OpProfile,
}

/// Where a run spent its time, by op type: (op, seconds, nodes), slowest first.
pub type OpProfile = Vec<(String, f64, usize)>;

/// One node, resolved to value slots.
#[derive(Debug)]
struct Step {
    node: usize,
    inputs: Vec<Option<usize>>,
    outputs: Vec<Option<usize>>,
    /// Slots whose last reader is this step: freed after it runs.
    frees: Vec<usize>,
}

/// A graph prepared for repeated runs: weights decoded once, every node checked for support, value
/// lifetimes computed.
pub struct Executor {
    graph: Graph,
    opset: i64,
    options: ExecOptions,
    slot_of: HashMap<String, usize>,
    names: Vec<String>,
    constants: Vec<Option<Arc<Tensor>>>,
    steps: Vec<Step>,
    graph_inputs: Vec<(String, usize)>,
    graph_outputs: Vec<(String, usize)>,
    pool: rayon::ThreadPool,
}

impl Executor {
    pub fn new(model: &Model, options: ExecOptions) -> Result<Self, ExecError> {
        let opset = model.opset().unwrap_or(1);
        let graph = model.graph.clone();
        let unsupported: Vec<String> = graph
            .nodes
            .iter()
            .filter(|n| !matches!(n.domain(), "" | "ai.onnx") || !ops::supports(n.op_type()))
            .map(|n| format!("node '{}' ({})", node_label(n), qualified_op(n)))
            .collect();
        if !unsupported.is_empty() {
            return Err(ExecError::Unsupported(unsupported));
        }

        let mut slot_of = HashMap::new();
        let mut names = Vec::new();
        let mut slot = |name: &str, slot_of: &mut HashMap<String, usize>| -> usize {
            *slot_of.entry(name.to_string()).or_insert_with(|| {
                names.push(name.to_string());
                names.len() - 1
            })
        };
        let mut constants_by_slot = HashMap::new();
        for t in &graph.initializers {
            let s = slot(t.name(), &mut slot_of);
            let mut tensor = Tensor::from_proto(t).map_err(|e| ExecError::Initializer {
                name: t.name().to_string(),
                reason: e.to_string(),
            })?;
            if options.numerics == Numerics::Fp16 {
                round_to_f16(&mut tensor);
            }
            constants_by_slot.insert(s, Arc::new(tensor));
        }
        let initializer_names: HashSet<&str> =
            graph.initializers.iter().map(|t| t.name()).collect();
        let graph_inputs: Vec<(String, usize)> = graph
            .inputs
            .iter()
            .filter(|v| !initializer_names.contains(v.name()))
            .map(|v| (v.name().to_string(), slot(v.name(), &mut slot_of)))
            .collect();
        let mut steps = Vec::with_capacity(graph.nodes.len());
        for (i, node) in graph.nodes.iter().enumerate() {
            let inputs = node
                .input
                .iter()
                .map(|n| (!n.is_empty()).then(|| slot(n, &mut slot_of)))
                .collect();
            let outputs = node
                .output
                .iter()
                .map(|n| (!n.is_empty()).then(|| slot(n, &mut slot_of)))
                .collect();
            steps.push(Step {
                node: i,
                inputs,
                outputs,
                frees: Vec::new(),
            });
        }
        let graph_outputs: Vec<(String, usize)> = graph
            .outputs
            .iter()
            .map(|v| {
                slot_of
                    .get(v.name())
                    .map(|&s| (v.name().to_string(), s))
                    .ok_or_else(|| ExecError::UnknownValue(v.name().to_string()))
            })
            .collect::<Result<_, _>>()?;
        let mut constants = vec![None; names.len()];
        for (s, t) in constants_by_slot {
            constants[s] = Some(t);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads)
            .build()
            .map_err(|e| ExecError::Threads(e.to_string()))?;
        let mut exec = Executor {
            graph,
            opset,
            options,
            slot_of,
            names,
            constants,
            steps,
            graph_inputs,
            graph_outputs,
            pool,
        };
        exec.plan_frees(&HashSet::new());
        Ok(exec)
    }

    /// Records, for each step, the slots it is the last reader of (constants and kept values excepted).
    fn plan_frees(&mut self, keep: &HashSet<usize>) {
        let mut last_use: HashMap<usize, usize> = HashMap::new();
        for (i, step) in self.steps.iter().enumerate() {
            for s in step.inputs.iter().flatten() {
                last_use.insert(*s, i);
            }
        }
        let outputs: HashSet<usize> = self.graph_outputs.iter().map(|(_, s)| *s).collect();
        for step in &mut self.steps {
            step.frees.clear();
        }
        for (slot, step) in last_use {
            if self.constants[slot].is_none() && !outputs.contains(&slot) && !keep.contains(&slot) {
                self.steps[step].frees.push(slot);
            }
        }
    }

    /// Names of the graph inputs a run needs.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.graph_inputs.iter().map(|(n, _)| n.as_str())
    }

    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.graph_outputs.iter().map(|(n, _)| n.as_str())
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Runs the graph. Returns the graph outputs, plus the values named in `extra` (any intermediate).
    pub fn run(
        &self,
        inputs: HashMap<String, Tensor>,
        extra: &[&str],
        hook: Option<Hook<'_>>,
    ) -> Result<HashMap<String, Tensor>, ExecError> {
        self.run_with_stats(inputs, extra, hook).map(|(out, _)| out)
    }

    /// [`Executor::run`], also reporting what the run held in memory.
    pub fn run_with_stats(
        &self,
        inputs: HashMap<String, Tensor>,
        extra: &[&str],
        mut hook: Option<Hook<'_>>,
    ) -> Result<(HashMap<String, Tensor>, RunStats), ExecError> {
        let mut keep: HashSet<usize> = HashSet::new();
        for name in extra {
            keep.insert(
                *self
                    .slot_of
                    .get(*name)
                    .ok_or_else(|| ExecError::UnknownValue(name.to_string()))?,
            );
        }
        self.pool
            .install(|| self.run_inner(inputs, &keep, extra, &mut hook))
    }

    fn run_inner(
        &self,
        mut inputs: HashMap<String, Tensor>,
        keep: &HashSet<usize>,
        extra: &[&str],
        hook: &mut Option<Hook<'_>>,
    ) -> Result<(HashMap<String, Tensor>, RunStats), ExecError> {
        let mut values: Vec<Option<Arc<Tensor>>> = self.constants.clone();
        let mut stats = RunStats::default();
        let mut live = 0usize;
        let mut per_op: HashMap<&str, (f64, usize)> = HashMap::new();
        for (name, slot) in &self.graph_inputs {
            let mut t = inputs.remove(name).ok_or_else(|| ExecError::Input {
                name: name.clone(),
                reason: "not given".into(),
            })?;
            self.check_input(name, &t)?;
            if self.options.numerics == Numerics::Fp16 {
                round_to_f16(&mut t);
            }
            if let Some(h) = hook.as_mut() {
                h(name, &t);
            }
            live += t.byte_len();
            values[*slot] = Some(Arc::new(t));
        }
        stats.peak_activation_bytes = live;
        if let Some(name) = inputs.keys().next() {
            return Err(ExecError::Input {
                name: name.clone(),
                reason: "the graph has no such input".into(),
            });
        }
        for step in &self.steps {
            let node = &self.graph.nodes[step.node];
            let args: Vec<Option<&Tensor>> = step
                .inputs
                .iter()
                .map(|s| s.and_then(|s| values[s].as_deref()))
                .collect();
            let started = self.options.profile.then(std::time::Instant::now);
            let outs = ops::eval(node, &args, self.opset).map_err(|e| ExecError::Node {
                node: node_label(node),
                op: node.op_type().to_string(),
                reason: match e {
                    OpError::Unsupported(m) => format!("unsupported: {m}"),
                    OpError::Invalid(m) => m,
                },
            })?;
            drop(args);
            if let Some(t0) = started {
                let e = per_op.entry(node.op_type()).or_default();
                e.0 += t0.elapsed().as_secs_f64();
                e.1 += 1;
            }
            for (slot, mut t) in step.outputs.iter().zip(outs) {
                let Some(slot) = slot else { continue };
                if self.options.numerics == Numerics::Fp16 {
                    round_to_f16(&mut t);
                }
                if let Some(h) = hook.as_mut() {
                    h(&self.names[*slot], &t);
                }
                live += t.byte_len();
                values[*slot] = Some(Arc::new(t));
            }
            stats.peak_activation_bytes = stats.peak_activation_bytes.max(live);
            for s in &step.frees {
                if !keep.contains(s) {
                    if let Some(t) = values[*s].take() {
                        live -= t.byte_len();
                    }
                }
            }
        }
        let mut result = HashMap::new();
        let wanted = self
            .graph_outputs
            .iter()
            .map(|(n, s)| (n.as_str(), *s))
            .chain(extra.iter().map(|n| (*n, self.slot_of[*n])));
        for (name, slot) in wanted {
            let t = values[slot]
                .clone()
                .ok_or_else(|| ExecError::UnknownValue(name.to_string()))?;
            result.insert(name.to_string(), Arc::unwrap_or_clone(t));
        }
        stats.profile = per_op
            .into_iter()
            .map(|(op, (s, n))| (op.to_string(), s, n))
            .collect();
        stats.profile.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok((result, stats))
    }

    /// The input's rank and every fixed dimension must match the graph's declaration.
    fn check_input(&self, name: &str, t: &Tensor) -> Result<(), ExecError> {
        use crate::onnx::proto::{tensor_shape_proto::dimension::Value, type_proto};
        let Some(v) = self.graph.inputs.iter().find(|v| v.name() == name) else {
            return Ok(());
        };
        let Some(type_proto::Value::TensorType(tt)) =
            v.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Ok(());
        };
        if tt.elem_type.is_some() && tt.elem_type() != t.dtype() as i32 {
            return Err(ExecError::Input {
                name: name.into(),
                reason: format!(
                    "element type {:?}, the graph declares type {}",
                    t.dtype(),
                    tt.elem_type()
                ),
            });
        }
        let Some(shape) = &tt.shape else {
            return Ok(());
        };
        let declared: Vec<Option<i64>> = shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Value::DimValue(v)) => Some(v),
                _ => None,
            })
            .collect();
        let fits = declared.len() == t.shape.len()
            && declared
                .iter()
                .zip(&t.shape)
                .all(|(d, &s)| d.is_none_or(|d| d == s as i64));
        if !fits {
            let shown: Vec<String> = declared
                .iter()
                .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
                .collect();
            return Err(ExecError::Input {
                name: name.into(),
                reason: format!(
                    "shape {:?} does not fit the declared [{}]",
                    t.shape,
                    shown.join(", ")
                ),
            });
        }
        Ok(())
    }
}

fn qualified_op(n: &crate::onnx::proto::NodeProto) -> String {
    match n.domain() {
        "" | "ai.onnx" => n.op_type().to_string(),
        d => format!("{d}::{}", n.op_type()),
    }
}

/// Rounds float32 data through float16 (nearest even, overflow to ±inf), as FP16 storage would.
pub fn round_to_f16(t: &mut Tensor) {
    if let Data::F32(v) = &mut t.data {
        for x in v.iter_mut() {
            *x = f16::from_f32(*x).to_f32();
        }
    }
}
