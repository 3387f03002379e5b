//! What `inspect` shows: inputs and outputs with their shapes, opsets, IR version, op histogram, parameters.

use super::proto::{tensor_shape_proto::dimension::Value as DimValue, type_proto, ValueInfoProto};
use super::Model;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct ModelStats {
    pub path: Option<String>,
    pub ir_version: i64,
    pub producer: String,
    pub producer_version: String,
    pub graph_name: String,
    /// Opset imports as (domain, version); the default domain is written as "ai.onnx".
    pub opsets: Vec<(String, i64)>,
    pub inputs: Vec<ValueStats>,
    pub outputs: Vec<ValueStats>,
    pub nodes: usize,
    /// Node count per op type (domain-qualified when not the default domain).
    pub ops: BTreeMap<String, usize>,
    pub initializers: usize,
    /// Elements across all initializers.
    pub parameters: u64,
    /// Bytes of tensor data across all initializers.
    pub parameter_bytes: u64,
    /// Initializers whose data lives in external files.
    pub external_initializers: usize,
}

/// A graph input or output: name, element type and dims (numbers, symbolic names, or "?").
#[derive(Debug, Clone, Serialize)]
pub struct ValueStats {
    pub name: String,
    pub elem_type: String,
    pub shape: Option<Vec<String>>,
}

impl ModelStats {
    pub fn of(model: &Model) -> Self {
        let g = &model.graph;
        let initializer_names: std::collections::HashSet<&str> =
            g.initializers.iter().map(|t| t.name()).collect();
        let mut ops = BTreeMap::new();
        for n in &g.nodes {
            let key = match n.domain() {
                "" | "ai.onnx" => n.op_type().to_string(),
                d => format!("{d}::{}", n.op_type()),
            };
            *ops.entry(key).or_insert(0) += 1;
        }
        let mut parameters = 0u64;
        let mut parameter_bytes = 0u64;
        for t in &g.initializers {
            // Saturating: dims are the file's claim, not memory we hold, and may multiply past u64.
            let numel = t
                .dims
                .iter()
                .fold(1u64, |acc, &d| acc.saturating_mul(d.max(0) as u64));
            parameters = parameters.saturating_add(numel);
            let elem = super::proto::tensor_proto::DataType::try_from(t.data_type())
                .ok()
                .and_then(crate::tensor::elem_size)
                .unwrap_or(0) as u64;
            parameter_bytes = parameter_bytes.saturating_add(numel.saturating_mul(elem));
        }
        ModelStats {
            path: model.path.as_ref().map(|p| p.display().to_string()),
            ir_version: model.proto.ir_version(),
            producer: model.proto.producer_name().to_string(),
            producer_version: model.proto.producer_version().to_string(),
            graph_name: g.name().to_string(),
            opsets: model
                .proto
                .opset_import
                .iter()
                .map(|o| {
                    let d = if o.domain().is_empty() {
                        "ai.onnx"
                    } else {
                        o.domain()
                    };
                    (d.to_string(), o.version())
                })
                .collect(),
            // IR < 4 lists initializers among the inputs; those are weights, not inputs a user feeds.
            inputs: g
                .inputs
                .iter()
                .filter(|v| !initializer_names.contains(v.name()))
                .map(value_stats)
                .collect(),
            outputs: g.outputs.iter().map(value_stats).collect(),
            nodes: g.nodes.len(),
            ops,
            initializers: g.initializers.len(),
            parameters,
            parameter_bytes,
            external_initializers: model.origins.len(),
        }
    }

    /// The human-readable form `inspect` prints.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        if let Some(p) = &self.path {
            let _ = writeln!(s, "model       {p}");
        }
        let _ = writeln!(s, "producer    {} {}", self.producer, self.producer_version);
        let _ = writeln!(s, "IR version  {}", self.ir_version);
        let opsets: Vec<String> = self
            .opsets
            .iter()
            .map(|(d, v)| format!("{d} {v}"))
            .collect();
        let _ = writeln!(s, "opsets      {}", opsets.join(", "));
        let _ = writeln!(s, "graph       {} ({} nodes)", self.graph_name, self.nodes);
        for (label, values) in [("input ", &self.inputs), ("output", &self.outputs)] {
            for v in values {
                let shape = v
                    .shape
                    .as_ref()
                    .map(|d| format!("[{}]", d.join(", ")))
                    .unwrap_or("unknown".into());
                let _ = writeln!(s, "{label}      {} {} {}", v.name, v.elem_type, shape);
            }
        }
        let _ = writeln!(
            s,
            "parameters  {} in {} initializers, {} ({} external)",
            self.parameters,
            self.initializers,
            human_bytes(self.parameter_bytes),
            self.external_initializers
        );
        let _ = writeln!(s, "ops");
        let mut ops: Vec<_> = self.ops.iter().collect();
        ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (op, n) in ops {
            let _ = writeln!(s, "  {n:>6}  {op}");
        }
        s
    }
}

fn value_stats(v: &ValueInfoProto) -> ValueStats {
    let (elem_type, shape) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => {
            let elem = super::proto::tensor_proto::DataType::try_from(t.elem_type())
                .map(|d| d.as_str_name().to_lowercase())
                .unwrap_or_else(|_| format!("type{}", t.elem_type()));
            let shape = t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(DimValue::DimValue(n)) => n.to_string(),
                        Some(DimValue::DimParam(p)) => p.clone(),
                        None => "?".to_string(),
                    })
                    .collect()
            });
            (elem, shape)
        }
        _ => ("non-tensor".to_string(), None),
    };
    ValueStats {
        name: v.name().to_string(),
        elem_type,
        shape,
    }
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
