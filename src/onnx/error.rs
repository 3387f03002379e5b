//! Errors of ONNX loading, saving and graph handling. Each names the file, node or tensor it is about.

use std::path::PathBuf;

/// What went wrong, with enough context for a user to find the offending file, node or tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file system refused a read or write.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a protobuf `ModelProto` at all.
    #[error("{path}: not an ONNX model: protobuf decoding failed: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: prost::DecodeError,
    },
    /// A valid protobuf, but not a usable ONNX model.
    #[error("{path}: not an ONNX model: {reason}")]
    NotAModel { path: PathBuf, reason: String },
    /// A tensor's external data is missing, escapes the model's folder, or lies outside its file.
    #[error("{path}: tensor '{tensor}': external data: {reason}")]
    ExternalData {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    /// A tensor's contents are inconsistent with its declared type and shape.
    #[error("tensor '{tensor}': {reason}")]
    Tensor { tensor: String, reason: String },
    /// The graph's structure is broken (a cycle, an input nobody produces, a duplicate output).
    #[error("graph '{graph}': {reason}")]
    Graph { graph: String, reason: String },
    /// A node is malformed or cannot be handled.
    #[error("node '{node}' ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn tensor(tensor: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Tensor {
            tensor: tensor.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn node(node: &crate::onnx::proto::NodeProto, reason: impl Into<String>) -> Self {
        Error::Node {
            node: node_label(node),
            op: node.op_type().to_string(),
            reason: reason.into(),
        }
    }
}

/// A node's name, or its first output when the exporter left it unnamed.
pub fn node_label(node: &crate::onnx::proto::NodeProto) -> String {
    if !node.name().is_empty() {
        node.name().to_string()
    } else if let Some(out) = node.output.first() {
        format!("<unnamed, output {out}>")
    } else {
        "<unnamed>".to_string()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
