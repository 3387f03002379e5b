//! ONNX in and out: the protobuf schema, loading from memory maps, atomic zero-copy saving, the graph IR
//! the passes edit, and model statistics.

pub mod error;
pub mod external;
pub mod graph;
pub mod load;
pub mod proto;
pub mod save;
pub mod stats;

use std::collections::HashMap;
use std::path::PathBuf;

pub use error::{Error, Result};
pub use graph::{Graph, NodeId, Patch};
pub use load::{load, load_bytes, load_with_report, LoadReport};
pub use save::{save, ExternalPolicy, SaveOptions, SaveReport};

/// A loaded model: the `ModelProto` header (everything but the graph) and the graph IR.
#[derive(Debug, Clone)]
pub struct Model {
    /// The model's header: IR version, opset imports, producer, metadata, functions, training info. Its
    /// `graph` is always `None`; the graph lives in [`Model::graph`].
    pub proto: proto::ModelProto,
    pub graph: Graph,
    /// The file it was loaded from, if any.
    pub path: Option<PathBuf>,
    /// Initializers that were loaded from external data, by name.
    pub(crate) origins: HashMap<String, external::ExternalOrigin>,
    /// The mapped files tensor bytes may point into; saving copies from them in the kernel.
    pub(crate) sources: Vec<external::MappedFile>,
}

impl Model {
    /// Wraps a graph built in memory.
    pub fn new(proto: proto::ModelProto, graph: Graph) -> Self {
        let mut proto = proto;
        proto.graph = None;
        Model {
            proto,
            graph,
            path: None,
            origins: HashMap::new(),
            sources: Vec::new(),
        }
    }

    /// The version of the default (`ai.onnx`) opset this model imports.
    pub fn opset(&self) -> Option<i64> {
        self.proto
            .opset_import
            .iter()
            .find(|o| o.domain().is_empty() || o.domain() == "ai.onnx")
            .map(|o| o.version())
    }

    /// Names of initializers whose bytes still come from an external data file.
    pub fn external_tensors(&self) -> impl Iterator<Item = &str> {
        self.origins.keys().map(String::as_str)
    }
}
