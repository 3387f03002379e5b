//! The graph IR the passes work on: the ONNX graph's own protobuf records (so nothing is ever lost), kept in
//! topological order, with producer/consumer lookup built on demand and edits made only through a [`Patch`].

use super::error::node_label;
use super::proto::{GraphProto, NodeProto, TensorProto, ValueInfoProto};
use super::{Error, Result};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// Position of a node in [`Graph::nodes`]; valid until the next edit.
pub type NodeId = usize;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    /// Nodes in topological order.
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    pub inputs: Vec<ValueInfoProto>,
    pub outputs: Vec<ValueInfoProto>,
    pub value_info: Vec<ValueInfoProto>,
    /// The rest of the `GraphProto` (name, doc string, sparse initializers, quantization annotations,
    /// metadata), carried through untouched.
    pub rest: GraphProto,
}

impl Graph {
    /// Takes a decoded graph apart and checks it: every node input is produced exactly once, there is no
    /// cycle. Nodes stored out of order are put in order (stably).
    pub fn from_proto(mut g: GraphProto) -> Result<Self> {
        let mut graph = Graph {
            nodes: std::mem::take(&mut g.node),
            initializers: std::mem::take(&mut g.initializer),
            inputs: std::mem::take(&mut g.input),
            outputs: std::mem::take(&mut g.output),
            value_info: std::mem::take(&mut g.value_info),
            rest: g,
        };
        graph.topo_sort()?;
        Ok(graph)
    }

    /// The full `GraphProto` again (clones; tensor bytes are shared, not copied).
    pub fn to_proto(&self) -> GraphProto {
        GraphProto {
            node: self.nodes.clone(),
            initializer: self.initializers.clone(),
            input: self.inputs.clone(),
            output: self.outputs.clone(),
            value_info: self.value_info.clone(),
            ..self.rest.clone()
        }
    }

    pub fn name(&self) -> &str {
        self.rest.name()
    }

    pub fn initializer(&self, name: &str) -> Option<&TensorProto> {
        self.initializers.iter().find(|t| t.name() == name)
    }

    /// Producer and consumer lookup over the current nodes.
    pub fn index(&self) -> Index<'_> {
        Index::new(self)
    }

    fn graph_error(&self, reason: String) -> Error {
        Error::Graph {
            graph: self.name().to_string(),
            reason,
        }
    }

    /// Orders the nodes so each comes after the producers of its inputs, keeping the current order wherever
    /// it already is valid. Fails on a value with two producers, an input nobody produces, or a cycle.
    pub fn topo_sort(&mut self) -> Result<()> {
        let mut available: HashSet<&str> = self.inputs.iter().map(|v| v.name()).collect();
        available.extend(self.initializers.iter().map(|t| t.name()));
        available.insert("");
        let mut producer: HashMap<&str, NodeId> = HashMap::new();
        for (id, node) in self.nodes.iter().enumerate() {
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                if let Some(prev) = producer.insert(out.as_str(), id) {
                    return Err(self.graph_error(format!(
                        "value '{out}' is produced twice, by node '{}' and node '{}'",
                        node_label(&self.nodes[prev]),
                        node_label(node)
                    )));
                }
            }
        }
        let mut waiting = vec![0usize; self.nodes.len()];
        let mut dependents: Vec<Vec<NodeId>> = vec![Vec::new(); self.nodes.len()];
        for (id, node) in self.nodes.iter().enumerate() {
            for input in node_reads(node) {
                if let Some(&p) = producer.get(input.as_str()) {
                    waiting[id] += 1;
                    dependents[p].push(id);
                } else if !available.contains(input.as_str()) {
                    return Err(Error::node(
                        node,
                        format!(
                            "reads '{input}', which no node, graph input or initializer produces"
                        ),
                    ));
                }
            }
        }
        let mut ready: BinaryHeap<Reverse<NodeId>> = (0..self.nodes.len())
            .filter(|&i| waiting[i] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(Reverse(id)) = ready.pop() {
            order.push(id);
            for &d in &dependents[id] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.push(Reverse(d));
                }
            }
        }
        if order.len() != self.nodes.len() {
            let stuck: Vec<String> = (0..self.nodes.len())
                .filter(|&i| waiting[i] > 0)
                .take(5)
                .map(|i| node_label(&self.nodes[i]))
                .collect();
            return Err(self.graph_error(format!(
                "the nodes form a cycle (involving {})",
                stuck.join(", ")
            )));
        }
        if order.iter().enumerate().any(|(i, &id)| i != id) {
            let mut slots: Vec<Option<NodeProto>> = std::mem::take(&mut self.nodes)
                .into_iter()
                .map(Some)
                .collect();
            self.nodes = order
                .into_iter()
                .map(|id| slots[id].take().unwrap())
                .collect();
        }
        Ok(())
    }

    /// Removes nodes whose outputs reach no graph output, then initializers and value_info nobody reads.
    /// Returns the number of nodes removed.
    pub fn remove_dead(&mut self) -> usize {
        let mut live: HashSet<String> = self.outputs.iter().map(|v| v.name().to_string()).collect();
        let mut keep = vec![false; self.nodes.len()];
        for (id, node) in self.nodes.iter().enumerate().rev() {
            if node.output.iter().any(|o| live.contains(o)) {
                keep[id] = true;
                live.extend(node_reads(node));
            }
        }
        let before = self.nodes.len();
        let mut flags = keep.into_iter();
        self.nodes.retain(|_| flags.next().unwrap());
        let removed = before - self.nodes.len();
        // IR < 4 lists initializers among the graph inputs too; such an input goes with its initializer.
        let dead_inits: HashSet<String> = self
            .initializers
            .iter()
            .map(|t| t.name().to_string())
            .filter(|n| !live.contains(n))
            .collect();
        self.initializers.retain(|t| !dead_inits.contains(t.name()));
        self.inputs.retain(|v| !dead_inits.contains(v.name()));
        let produced: HashSet<&str> = self
            .nodes
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .chain(self.inputs.iter().map(|v| v.name()))
            .collect();
        let value_info = std::mem::take(&mut self.value_info);
        self.value_info = value_info
            .into_iter()
            .filter(|v| produced.contains(v.name()))
            .collect();
        removed
    }

    /// Applies a patch: removes its nodes, adds its initializers, re-routes the consumers of each shunted
    /// value, adds its nodes, and restores topological order. On error the graph is left unchanged.
    pub fn apply(&mut self, patch: Patch) -> Result<()> {
        let mut next = self.clone();
        let removed: HashSet<NodeId> = patch.removed.into_iter().collect();
        next.nodes = std::mem::take(&mut next.nodes)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !removed.contains(i))
            .map(|(_, n)| n)
            .collect();
        for t in patch.initializers {
            match next.initializers.iter_mut().find(|x| x.name() == t.name()) {
                Some(slot) => *slot = t,
                None => next.initializers.push(t),
            }
        }
        next.nodes.extend(patch.added);
        let outputs: HashSet<String> = next.outputs.iter().map(|v| v.name().to_string()).collect();
        for (old, new) in patch.shunts {
            if outputs.contains(&old) {
                // A graph output keeps its name: the new value takes it, when a node of ours produces it.
                let produced_by_node = next.nodes.iter().any(|n| n.output.contains(&new));
                if produced_by_node && !outputs.contains(&new) {
                    rename_everywhere(&mut next.nodes, &new, &old);
                    continue;
                }
                next.nodes.push(NodeProto {
                    input: vec![new.clone()],
                    output: vec![old.clone()],
                    name: Some(format!("{}/keep_output/{old}", patch.label)),
                    op_type: Some("Identity".into()),
                    ..Default::default()
                });
                continue;
            }
            for node in &mut next.nodes {
                rename_reads(node, &old, &new);
            }
        }
        next.topo_sort().map_err(|e| match e {
            Error::Graph { graph, reason } => Error::Graph {
                graph,
                reason: format!("patch '{}': {reason}", patch.label),
            },
            Error::Node { node, op, reason } => Error::Node {
                node,
                op,
                reason: format!("after patch '{}': {reason}", patch.label),
            },
            other => other,
        })?;
        *self = next;
        Ok(())
    }
}

/// A set of edits applied at once, in the manner of tract's model patches: remove some nodes, add new ones
/// and new initializers, and re-route every consumer of an old value to a new one.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    /// Names the rewrite in errors and in the nodes it has to synthesise.
    pub label: String,
    removed: Vec<NodeId>,
    added: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    shunts: Vec<(String, String)>,
}

impl Patch {
    pub fn new(label: impl Into<String>) -> Self {
        Patch {
            label: label.into(),
            ..Default::default()
        }
    }

    pub fn remove_node(&mut self, id: NodeId) -> &mut Self {
        self.removed.push(id);
        self
    }

    pub fn add_node(&mut self, node: NodeProto) -> &mut Self {
        self.added.push(node);
        self
    }

    /// Adds an initializer, replacing one of the same name.
    pub fn add_initializer(&mut self, tensor: TensorProto) -> &mut Self {
        self.initializers.push(tensor);
        self
    }

    /// Every reader of `old` reads `new` instead.
    pub fn shunt(&mut self, old: impl Into<String>, new: impl Into<String>) -> &mut Self {
        self.shunts.push((old.into(), new.into()));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.added.is_empty()
            && self.initializers.is_empty()
            && self.shunts.is_empty()
    }
}

/// Producer/consumer lookup, borrowed from a graph.
pub struct Index<'g> {
    graph: &'g Graph,
    producer: HashMap<&'g str, NodeId>,
    consumers: HashMap<&'g str, Vec<NodeId>>,
    initializers: HashMap<&'g str, &'g TensorProto>,
    outputs: HashSet<&'g str>,
}

impl<'g> Index<'g> {
    fn new(graph: &'g Graph) -> Self {
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<NodeId>> = HashMap::new();
        for (id, node) in graph.nodes.iter().enumerate() {
            for out in &node.output {
                producer.insert(out.as_str(), id);
            }
            for input in node.input.iter().filter(|i| !i.is_empty()) {
                let list = consumers.entry(input.as_str()).or_default();
                if list.last() != Some(&id) {
                    list.push(id);
                }
            }
        }
        Index {
            graph,
            producer,
            consumers,
            initializers: graph.initializers.iter().map(|t| (t.name(), t)).collect(),
            outputs: graph.outputs.iter().map(|v| v.name()).collect(),
        }
    }

    pub fn node(&self, id: NodeId) -> &'g NodeProto {
        &self.graph.nodes[id]
    }

    /// The node that produces `value`, if a node does.
    pub fn producer(&self, value: &str) -> Option<NodeId> {
        self.producer.get(value).copied()
    }

    /// The nodes that read `value` directly, each once, in graph order.
    pub fn consumers(&self, value: &str) -> &[NodeId] {
        self.consumers.get(value).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn initializer(&self, name: &str) -> Option<&'g TensorProto> {
        self.initializers.get(name).copied()
    }

    pub fn is_graph_output(&self, value: &str) -> bool {
        self.outputs.contains(value)
    }
}

/// The attribute of a node with this name.
pub fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n super::proto::AttributeProto> {
    node.attribute.iter().find(|a| a.name() == name)
}

/// Everything a node reads: its inputs and the outer-scope values its subgraphs (If/Loop/Scan bodies) use.
pub fn node_reads(node: &NodeProto) -> Vec<String> {
    let mut reads: Vec<String> = node
        .input
        .iter()
        .filter(|i| !i.is_empty())
        .cloned()
        .collect();
    for a in &node.attribute {
        for g in a.g.iter().chain(a.graphs.iter()) {
            reads.extend(outer_reads(g));
        }
    }
    reads
}

/// Names a subgraph reads that it does not define itself.
fn outer_reads(g: &GraphProto) -> Vec<String> {
    let mut defined: HashSet<&str> = g.input.iter().map(|v| v.name()).collect();
    defined.extend(g.initializer.iter().map(|t| t.name()));
    defined.extend(
        g.node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str)),
    );
    g.node
        .iter()
        .flat_map(node_reads)
        .filter(|r| !defined.contains(r.as_str()))
        .collect()
}

fn rename_reads(node: &mut NodeProto, old: &str, new: &str) {
    for i in node.input.iter_mut().filter(|i| *i == old) {
        *i = new.to_string();
    }
    for a in &mut node.attribute {
        for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
            for n in &mut g.node {
                rename_reads(n, old, new);
            }
        }
    }
}

fn rename_everywhere(nodes: &mut [NodeProto], old: &str, new: &str) {
    for node in nodes {
        rename_reads(node, old, new);
        for o in node.output.iter_mut().filter(|o| *o == old) {
            *o = new.to_string();
        }
    }
}
