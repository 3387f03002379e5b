//! Runs a graph on the CPU: nodes in topological order through the op kernels of [`super::ops`], each
//! intermediate tensor dropped right after its last reader so that peak memory is the weights plus the
//! largest live set of activations. A hook sees every tensor as it is produced (calibration builds its
//! histograms there; the precision debugger compares runs there) and any value can be asked for by name.

use super::ops::{self, OpError};
use super::plan::{fuse, Step};
use super::recycle;
use crate::onnx::error::node_label;
use crate::onnx::{Graph, Model};
use crate::tensor::{Data, Tensor};
use half::f16;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

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

/// The most worker threads an executor takes. Far above any core count it runs on; a typo such as
/// `--threads 100000` would otherwise spend minutes creating threads before the first op.
pub const MAX_THREADS: usize = 1024;

#[derive(Debug, Clone, Copy)]
pub struct ExecOptions {
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    pub numerics: Numerics,
    /// Time every node and report the totals per op type in [`RunStats::profile`] and each node's
    /// time in [`RunStats::nodes`].
    pub profile: bool,
    /// Keep freed float buffers for reuse within a run ([`super::recycle`]): fewer page faults,
    /// but up to a run's freed buffers wait in the pool. Off where two executors run at once
    /// and memory is the goal: `diff`'s lockstep runs peaked at 1.94 GB with it on W48, 1.75 GB
    /// without, in the same time.
    pub reuse_buffers: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            threads: 0,
            numerics: Numerics::Fp32,
            profile: false,
            reuse_buffers: true,
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
    /// Large float buffers (256 KiB and up) this run allocated new instead of reusing a freed
    /// one: every one is fresh pages from the system, zeroed one page fault at a time. Counted
    /// only with [`ExecOptions::reuse_buffers`] on.
    pub fresh_buffers: usize,
    /// Time per node in execution order, when [`ExecOptions::profile`] is on: where a per-op total
    /// hides which layer is slow (one 720→512 Conv against a hundred 48-channel ones).
    pub nodes: Vec<NodeTime>,
}

/// One node's time in a profiled run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeTime {
    /// The node's name (`<unnamed, output …>` when it has none).
    pub name: String,
    /// Its first output: unique in the graph, where names may be missing or repeated.
    pub output: String,
    /// The op type, `Conv+Relu` / `Add+Relu` when a Relu ran fused with it,
    /// `QuantizeLinear+DequantizeLinear` for a fused pair (named after the QuantizeLinear).
    pub op: String,
    pub seconds: f64,
}

/// Where a run spent its time, by op type: (op, seconds, nodes), slowest first.
pub type OpProfile = Vec<(String, f64, usize)>;

/// A plan that materialises some fused-away values, and those values' slots.
type ShownPlan = (HashSet<usize>, Arc<Vec<Step>>);

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
    /// The same plan with pairs of nodes run as one step ([`super::plan::fuse`]): used unless a hook
    /// watches every value, or a value it never materialises is watched or requested by name.
    fused: Vec<Step>,
    /// Values that exist only in the unfused plan (pre-Relu Conv/Add outputs, fused quantized levels).
    fused_away: HashSet<usize>,
    /// The last plan [`Executor::plan_showing`] made, and the values it shows.
    shown: Mutex<Option<ShownPlan>>,
    graph_inputs: Vec<(String, usize)>,
    graph_outputs: Vec<(String, usize)>,
    pool: rayon::ThreadPool,
}

impl Executor {
    pub fn new(model: &Model, options: ExecOptions) -> Result<Self, ExecError> {
        // Before any work on the graph (W48's weights take a while).
        if options.threads > MAX_THREADS {
            return Err(ExecError::Threads(format!(
                "{} worker threads asked for, at most {MAX_THREADS}",
                options.threads
            )));
        }
        let opset = model.opset().unwrap_or(1);
        let graph = model.graph.clone();
        let unsupported: Vec<String> = graph
            .nodes
            .iter()
            .filter_map(|n| {
                let why = ops::check_node(n).err()?;
                Some(format!(
                    "node '{}' ({}): {why}",
                    node_label(n),
                    qualified_op(n)
                ))
            })
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
                relu: None,
                dequant: None,
                concat: None,
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
        let outputs: HashSet<usize> = graph_outputs.iter().map(|(_, s)| *s).collect();
        let (fused, fused_away) = fuse(&graph, &steps, &outputs);
        let mut exec = Executor {
            graph,
            opset,
            options,
            slot_of,
            names,
            constants,
            steps,
            fused,
            fused_away,
            shown: Mutex::new(None),
            graph_inputs,
            graph_outputs,
            pool,
        };
        let steps = std::mem::take(&mut exec.steps);
        exec.steps = exec.plan_frees(steps);
        let fused = std::mem::take(&mut exec.fused);
        exec.fused = exec.plan_frees(fused);
        Ok(exec)
    }

    /// Records, for each step, the slots it is the last reader of (constants and graph outputs excepted;
    /// values a run asks to keep are skipped at run time).
    fn plan_frees(&self, mut steps: Vec<Step>) -> Vec<Step> {
        let mut last_use: HashMap<usize, usize> = HashMap::new();
        for (i, step) in steps.iter().enumerate() {
            for s in step.inputs.iter().flatten() {
                last_use.insert(*s, i);
            }
        }
        let outputs: HashSet<usize> = self.graph_outputs.iter().map(|(_, s)| *s).collect();
        for step in &mut steps {
            step.frees.clear();
        }
        for (slot, step) in last_use {
            if self.constants[slot].is_none() && !outputs.contains(&slot) {
                steps[step].frees.push(slot);
            }
        }
        steps
    }

    /// The fused plan with `visible` values materialised: the pairs that would hide one of them stay
    /// two steps. Calibration watches the inputs of the Convs it quantizes; on HRNet two of those are
    /// Concats the fused plan reads in place, and falling back to the whole unfused plan for them cost
    /// W48 every Conv+Relu fusion and Concat elision (about 0.3 s of a 5 s forward per calibration image).
    /// The last plan is cached: calibration and the debugger ask for the same set run after run.
    fn plan_showing(&self, visible: &HashSet<usize>) -> Arc<Vec<Step>> {
        let mut last = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((set, plan)) = last.as_ref() {
            if set == visible {
                return Arc::clone(plan);
            }
        }
        let split = visible
            .iter()
            .filter(|s| self.fused_away.contains(s))
            .count();
        log::debug!("{split} requested value(s) hidden by fused pairs: splitting those pairs");
        let mut never_away: HashSet<usize> = self.graph_outputs.iter().map(|(_, s)| *s).collect();
        never_away.extend(visible);
        let (plan, _) = fuse(&self.graph, &self.steps, &never_away);
        let plan = Arc::new(self.plan_frees(plan));
        *last = Some((visible.clone(), Arc::clone(&plan)));
        plan
    }

    /// Applies a fused Relu node to a step's single output: in place for float32, through the kernel
    /// otherwise.
    fn apply_relu(&self, relu: usize, mut outs: Vec<Tensor>) -> Result<Vec<Tensor>, ExecError> {
        let node = &self.graph.nodes[relu];
        match outs.as_mut_slice() {
            [Tensor {
                data: Data::F32(v), ..
            }] => {
                ops::relu_in_place(v);
                Ok(outs)
            }
            [t] => ops::eval(node, &[Some(&*t)], self.opset).map_err(|e| node_error(node, e)),
            _ => Err(node_error(
                node,
                OpError::invalid("a fused Relu needs exactly one input"),
            )),
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
            .install(|| self.run_inner(inputs, &keep, extra, &mut hook, None))
    }

    /// Runs `f` on this executor's threads with one buffer pool around every run it makes: the
    /// buffers freed by one run are reused by the next, instead of each run starting from fresh
    /// pages (a candidate scored over a split of images, a daemon's stream). Between runs the
    /// pool holds at most what a run freed, which the next run's peak needs anyway.
    pub fn with_reused_buffers<R: Send>(&self, f: impl FnOnce(&Self) -> R + Send) -> R {
        self.pool.install(|| {
            let _buffers = self.options.reuse_buffers.then(recycle::Scope::enter);
            f(self)
        })
    }

    /// Runs the graph with a hook that sees only the values named in `watch` (names the graph does not
    /// have are ignored). Unlike a hook on every value, this keeps the fused plan, less the pairs that
    /// would hide a watched value ([`Executor::plan_showing`]).
    pub fn run_watching<'w>(
        &self,
        inputs: HashMap<String, Tensor>,
        watch: impl IntoIterator<Item = &'w str>,
        hook: Hook<'_>,
    ) -> Result<(HashMap<String, Tensor>, RunStats), ExecError> {
        let slots: HashSet<usize> = watch
            .into_iter()
            .filter_map(|n| self.slot_of.get(n).copied())
            .collect();
        let mut hook = Some(hook);
        self.pool
            .install(|| self.run_inner(inputs, &HashSet::new(), &[], &mut hook, Some(&slots)))
    }

    fn run_inner(
        &self,
        mut inputs: HashMap<String, Tensor>,
        keep: &HashSet<usize>,
        extra: &[&str],
        hook: &mut Option<Hook<'_>>,
        watch: Option<&HashSet<usize>>,
    ) -> Result<(HashMap<String, Tensor>, RunStats), ExecError> {
        let watched = |slot: usize| watch.is_none_or(|w| w.contains(&slot));
        let _buffers = self.options.reuse_buffers.then(recycle::Scope::enter);
        let fresh_before = recycle::fresh();
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
            if let (Some(h), true) = (hook.as_mut(), watched(*slot)) {
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
        // The fused plan computes the same numbers but never materialises the values between its fused
        // pairs. A hook on every value gets the unfused plan; values watched or kept by name get a fused
        // plan that leaves just their pairs unfused.
        let visible: HashSet<usize> = match (hook.is_some(), watch) {
            (true, None) => HashSet::new(),
            (true, Some(w)) => w.union(keep).copied().collect(),
            (false, _) => keep.clone(),
        };
        let custom;
        let steps: &[Step] = if hook.is_some() && watch.is_none() {
            &self.steps
        } else if visible.iter().all(|s| !self.fused_away.contains(s)) {
            &self.fused
        } else {
            custom = self.plan_showing(&visible);
            &custom[..]
        };
        for step in steps {
            let node = &self.graph.nodes[step.node];
            let started = self.options.profile.then(std::time::Instant::now);
            let outs = match in_place(node, self.opset, step, &mut values, keep) {
                Some((t, taken)) => {
                    live -= taken;
                    vec![t]
                }
                None => {
                    let args: Vec<Option<&Tensor>> = step
                        .inputs
                        .iter()
                        .map(|s| s.and_then(|s| values[s].as_deref()))
                        .collect();
                    let conv_relu = step.relu.is_some() && node.op_type() == "Conv";
                    let result = if let Some(dq) = step.dequant {
                        ops::eval_quantize_dequantize(
                            node,
                            &self.graph.nodes[dq],
                            &args,
                            self.opset,
                        )
                        .map_err(|e| node_error(node, e))
                    } else if let Some(c) = step.concat {
                        let concat = &self.graph.nodes[c];
                        ops::eval_concat_conv(concat, node, &args, conv_relu, self.opset).map_err(
                            |e| match e {
                                ops::ConcatConvError::Concat(e) => node_error(concat, e),
                                ops::ConcatConvError::Conv(e) => node_error(node, e),
                            },
                        )
                    } else if conv_relu {
                        ops::eval_conv_relu(node, &args, self.opset)
                            .map_err(|e| node_error(node, e))
                    } else {
                        ops::eval(node, &args, self.opset).map_err(|e| node_error(node, e))
                    };
                    let mut outs = result?;
                    if let (Some(r), false) = (step.relu, conv_relu) {
                        outs = self.apply_relu(r, outs)?;
                    }
                    outs
                }
            };
            if let Some(t0) = started {
                let op = match (step.relu, step.dequant, node.op_type()) {
                    (Some(_), _, "Conv") if step.concat.is_some() => "Concat+Conv+Relu",
                    (None, _, "Conv") if step.concat.is_some() => "Concat+Conv",
                    (Some(_), _, "Conv") => "Conv+Relu",
                    (Some(_), _, "Add") => "Add+Relu",
                    (_, Some(_), _) => "QuantizeLinear+DequantizeLinear",
                    (_, _, op) => op,
                };
                let seconds = t0.elapsed().as_secs_f64();
                let e = per_op.entry(op).or_default();
                e.0 += seconds;
                e.1 += 1;
                stats.nodes.push(NodeTime {
                    name: node_label(node),
                    output: node.output.first().cloned().unwrap_or_default(),
                    op: op.to_string(),
                    seconds,
                });
            }
            for (slot, mut t) in step.outputs.iter().zip(outs) {
                let Some(slot) = slot else { continue };
                if self.options.numerics == Numerics::Fp16 {
                    round_to_f16(&mut t);
                }
                if let (Some(h), true) = (hook.as_mut(), watched(*slot)) {
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
                        if let Ok(Tensor {
                            data: Data::F32(v), ..
                        }) = Arc::try_unwrap(t)
                        {
                            recycle::give(v);
                        }
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
        stats.fresh_buffers = recycle::fresh() - fresh_before;
        stats.profile = per_op
            .into_iter()
            .map(|(op, (s, n))| (op.to_string(), s, n))
            .collect();
        stats.profile.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok((result, stats))
    }

    /// The input's rank and every fixed dimension must match the graph's declaration.
    fn check_input(&self, name: &str, t: &Tensor) -> Result<(), ExecError> {
        use crate::onnx::proto::{
            tensor_proto::DataType, tensor_shape_proto::dimension::Value, type_proto,
        };
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
                    "element type {:?}, the graph declares {}",
                    t.dtype(),
                    DataType::try_from(tt.elem_type())
                        .map_or_else(|_| format!("type {}", tt.elem_type()), |d| format!("{d:?}"))
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

/// Relu, Add of two same-shape float tensors (f32, f16 or bf16), and Reshape, computed into an input that dies here: the step is the
/// input's last reader, nobody else holds it, and the run does not keep it. Saves an allocation and a pass
/// of page faults per residual block. Returns the result and the bytes of the input it took.
fn in_place(
    node: &crate::onnx::proto::NodeProto,
    opset: i64,
    step: &Step,
    values: &mut [Option<Arc<Tensor>>],
    keep: &HashSet<usize>,
) -> Option<(Tensor, usize)> {
    let conv_relu = step.relu.is_some() && node.op_type() == "Conv";
    if !matches!(node.domain(), "" | "ai.onnx") || conv_relu || step.outputs.len() != 1 {
        return None;
    }
    step.outputs[0]?;
    let dying = |slot: usize, values: &[Option<Arc<Tensor>>]| {
        step.frees.contains(&slot)
            && !keep.contains(&slot)
            && step.inputs.iter().filter(|s| **s == Some(slot)).count() == 1
            && values[slot]
                .as_ref()
                .is_some_and(|t| Arc::strong_count(t) == 1)
    };
    let take = |slot: usize, values: &mut [Option<Arc<Tensor>>]| -> Option<Tensor> {
        Arc::try_unwrap(values[slot].take()?).ok()
    };
    match (node.op_type(), step.inputs.as_slice()) {
        ("Relu", [Some(x)]) if dying(*x, values) => {
            let mut t = take(*x, values)?;
            let bytes = t.byte_len();
            match &mut t.data {
                Data::F32(v) => ops::relu_in_place(v),
                Data::F16(v) => ops::relu_in_place_half(v),
                Data::BF16(v) => ops::relu_in_place_half(v),
                _ => {
                    values[*x] = Some(Arc::new(t));
                    return None;
                }
            }
            Some((t, bytes))
        }
        ("Add", [Some(a), Some(b)]) => {
            let (own, other) = if dying(*a, values) {
                (*a, *b)
            } else if dying(*b, values) {
                (*b, *a)
            } else {
                return None;
            };
            let same = matches!(
                (values[own].as_deref(), values[other].as_deref()),
                (Some(x), Some(y)) if x.shape == y.shape
                    && matches!((&x.data, &y.data),
                        (Data::F32(_), Data::F32(_))
                        | (Data::F16(_), Data::F16(_))
                        | (Data::BF16(_), Data::BF16(_)))
            );
            if !same {
                return None;
            }
            let mut t = take(own, values)?;
            let bytes = t.byte_len();
            let relu = step.relu.is_some();
            match (&mut t.data, values[other].as_deref().map(|t| &t.data)) {
                (Data::F32(acc), Some(Data::F32(y))) => ops::add_in_place(acc, y, relu),
                (Data::F16(acc), Some(Data::F16(y))) => ops::add_in_place_half(acc, y, relu),
                (Data::BF16(acc), Some(Data::BF16(y))) => ops::add_in_place_half(acc, y, relu),
                _ => unreachable!("checked above: same shape and element type"),
            }
            Some((t, bytes))
        }
        // A Reshape only renames dims: the kernel works out the new shape on a data-less stand-in and
        // the dying buffer moves over, instead of being copied.
        ("Reshape", [Some(x), rest @ ..]) if dying(*x, values) => {
            let stand_in = Tensor {
                shape: values[*x].as_ref()?.shape.clone(),
                data: Data::F32(Vec::new()),
            };
            let args: Vec<Option<&Tensor>> = std::iter::once(Some(&stand_in))
                .chain(rest.iter().map(|s| s.and_then(|s| values[s].as_deref())))
                .collect();
            let shape = ops::eval(node, &args, opset).ok()?.pop()?.shape;
            let mut t = take(*x, values)?;
            let bytes = t.byte_len();
            if shape.iter().product::<usize>() != t.len() {
                values[*x] = Some(Arc::new(t));
                return None;
            }
            t.shape = shape;
            Some((t, bytes))
        }
        _ => None,
    }
}

fn node_error(node: &crate::onnx::proto::NodeProto, e: OpError) -> ExecError {
    ExecError::Node {
        node: node_label(node),
        op: node.op_type().to_string(),
        reason: match e {
            OpError::Unsupported(m) => format!("unsupported: {m}"),
            OpError::Invalid(m) => m,
        },
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
