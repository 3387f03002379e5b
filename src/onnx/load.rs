//! Loading: memory-map the file, decode with prost so that tensor bytes stay views into the map, resolve
//! external data (also mapped), and check that what came out is a model we can work on.

use super::external::{self, ExternalOrigin, MappedFile};
use super::graph::Graph;
use super::proto::{tensor_proto::DataLocation, ModelProto};
use super::{Error, Model, Result};
use bytes::Bytes;
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Oldest and newest IR versions this crate reads. IR 3 introduced `opset_import`, which we rely on; the
/// newest is the schema's own `IR_VERSION`, anything later may carry fields this build cannot see.
pub const MIN_IR_VERSION: i64 = 3;
pub const MAX_IR_VERSION: i64 = 14;

/// Non-fatal findings of a load, reported to the user rather than failing it.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Bytes of the file that the schema did not account for (unknown fields from a newer exporter, or a
    /// non-canonical encoding); those fields would not survive a save.
    pub unaccounted_bytes: i64,
}

/// Loads a model file; external data is resolved relative to its folder.
pub fn load(path: &Path) -> Result<Model> {
    load_with_report(path).map(|(m, _)| m)
}

/// Like [`load`], also returning what the load noticed without failing.
pub fn load_with_report(path: &Path) -> Result<(Model, LoadReport)> {
    let mapped = external::map_file(path)?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let (mut model, report) = load_bytes(mapped.bytes.clone(), path, Some(&base))?;
    model.sources.push(mapped);
    Ok((model, report))
}

/// Decodes a model from bytes. `label` names it in errors; `base_dir` is where external data is looked up
/// (`None` refuses external data, for models that did not come from a file).
pub fn load_bytes(
    bytes: Bytes,
    label: &Path,
    base_dir: Option<&Path>,
) -> Result<(Model, LoadReport)> {
    let input_len = bytes.len();
    if input_len == 0 {
        return Err(not_a_model(label, "the file is empty"));
    }
    let mut proto = ModelProto::decode(bytes).map_err(|source| Error::Decode {
        path: label.to_path_buf(),
        source,
    })?;
    let report = LoadReport {
        unaccounted_bytes: input_len as i64 - proto.encoded_len() as i64,
    };
    if report.unaccounted_bytes != 0 {
        log::warn!(
            "{}: {} bytes were not understood by this build's ONNX schema (fields from a newer exporter, or a \
             non-canonical encoding); they will not be written back",
            label.display(),
            report.unaccounted_bytes
        );
    }
    check_header(&proto, label)?;
    let graph_proto = proto.graph.take().expect("checked by check_header");
    let mut graph = Graph::from_proto(graph_proto).map_err(|e| context(label, e))?;
    let (origins, sources) = resolve_external(&mut graph, label, base_dir)?;
    check_initializers(&graph, label)?;
    Ok((
        Model {
            proto,
            graph,
            path: Some(label.to_path_buf()),
            origins,
            sources,
        },
        report,
    ))
}

fn check_header(proto: &ModelProto, label: &Path) -> Result<()> {
    let Some(ir) = proto.ir_version else {
        return Err(not_a_model(label, "ir_version is missing"));
    };
    if ir < MIN_IR_VERSION {
        return Err(not_a_model(
            label,
            &format!("IR version {ir} is older than {MIN_IR_VERSION}, which this tool needs (opset imports)"),
        ));
    }
    if ir > MAX_IR_VERSION {
        log::warn!(
            "{}: IR version {ir} is newer than this build knows ({MAX_IR_VERSION}); reading it anyway",
            label.display()
        );
    }
    if proto.graph.is_none() {
        return Err(not_a_model(label, "it has no graph"));
    }
    if proto.opset_import.is_empty() {
        return Err(not_a_model(label, "it imports no opset"));
    }
    Ok(())
}

/// Replaces every external reference of the top-level initializers with a view into the mapped data file,
/// remembering where it came from so an unchanged tensor can be written back as the same reference.
fn resolve_external(
    graph: &mut Graph,
    label: &Path,
    base_dir: Option<&Path>,
) -> Result<(HashMap<String, ExternalOrigin>, Vec<MappedFile>)> {
    let mut maps: HashMap<PathBuf, MappedFile> = HashMap::new();
    let mut origins = HashMap::new();
    for t in &mut graph.initializers {
        if t.data_location() != DataLocation::External {
            continue;
        }
        let name = t.name().to_string();
        let err = |reason: String| Error::ExternalData {
            path: label.to_path_buf(),
            tensor: name.clone(),
            reason,
        };
        let Some(base) = base_dir else {
            return Err(err(
                "the model was not loaded from a file, so there is no folder to look in".into(),
            ));
        };
        let reference = external::Reference::parse(&t.external_data).map_err(&err)?;
        let file = external::resolve_path(base, &reference.location).map_err(&err)?;
        if !maps.contains_key(&file) {
            let mapped = external::map_file(&file)
                .map_err(|e| err(format!("cannot read '{}': {e}", reference.location)))?;
            maps.insert(file.clone(), mapped);
        }
        let whole = &maps[&file].bytes;
        let view = reference.slice(whole).map_err(&err)?;
        if let Some(expected) = expected_bytes(t) {
            if expected != view.len() {
                return Err(err(format!(
                    "length is {} bytes, but dims {:?} of this data type need {expected}",
                    view.len(),
                    t.dims
                )));
            }
        }
        origins.insert(
            name.clone(),
            ExternalOrigin {
                entries: std::mem::take(&mut t.external_data),
                file,
                location: reference.location.clone(),
                view: view.clone(),
            },
        );
        t.raw_data = Some(view);
        t.data_location = None;
    }
    external::refuse_nested_external(graph).map_err(|tensor| Error::ExternalData {
        path: label.to_path_buf(),
        tensor,
        reason: "external data is supported for graph initializers only".into(),
    })?;
    Ok((origins, maps.into_values().collect()))
}

/// Every initializer has a known data type and, when its bytes are raw, exactly as many as its dims say.
/// Only lengths are compared: the tensor bytes themselves are not touched.
fn check_initializers(graph: &Graph, label: &Path) -> Result<()> {
    use super::proto::tensor_proto::DataType;
    for t in &graph.initializers {
        let err = |reason: String| Error::NotAModel {
            path: label.to_path_buf(),
            reason: format!("initializer '{}': {reason}", t.name()),
        };
        let Ok(dtype) = DataType::try_from(t.data_type()) else {
            return Err(err(format!("unknown data type {}", t.data_type())));
        };
        if dtype == DataType::Undefined {
            return Err(err("data type is undefined".into()));
        }
        if t.dims.iter().any(|&d| d < 0) {
            return Err(err(format!("negative dimension in {:?}", t.dims)));
        }
        // Dims whose byte size cannot even be represented are corrupt, whatever data the tensor holds;
        // refusing them here spares every later stage from overflow checks.
        let size = crate::tensor::elem_size(dtype).unwrap_or(1);
        if t.dims
            .iter()
            .try_fold(size, |acc, &d| acc.checked_mul(d as usize))
            .is_none()
        {
            return Err(err(format!(
                "dims {:?} describe more bytes than a computer can address",
                t.dims
            )));
        }
        if let (Some(raw), Some(expected)) = (&t.raw_data, expected_bytes(t)) {
            if raw.len() != expected {
                return Err(err(format!(
                    "raw_data holds {} bytes, dims {:?} of {dtype:?} need {expected}",
                    raw.len(),
                    t.dims
                )));
            }
        }
    }
    Ok(())
}

fn expected_bytes(t: &super::proto::TensorProto) -> Option<usize> {
    let dtype = super::proto::tensor_proto::DataType::try_from(t.data_type()).ok()?;
    let size = crate::tensor::elem_size(dtype)?;
    t.dims.iter().try_fold(size, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

fn not_a_model(label: &Path, reason: &str) -> Error {
    Error::NotAModel {
        path: label.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Graph errors found while loading also name the file.
fn context(label: &Path, e: Error) -> Error {
    match e {
        Error::Graph { graph, reason } => Error::NotAModel {
            path: label.to_path_buf(),
            reason: format!("graph '{graph}': {reason}"),
        },
        Error::Node { node, op, reason } => Error::NotAModel {
            path: label.to_path_buf(),
            reason: format!("node '{node}' ({op}): {reason}"),
        },
        other => other,
    }
}
