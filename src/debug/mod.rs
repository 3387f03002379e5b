//! The precision debugger: where does FP16 or INT8 break a model, and which nodes must stay out of INT8 —
//! answered on the CPU, before any engine exists.
//!
//! - [`diff`]: the FP32 graph and a lowered graph (FP16 from [`crate::passes::fp16`], Q/DQ INT8 from
//!   [`crate::passes::qdq`]) run side by side in lockstep on two threads; every tensor the two graphs share
//!   by name is compared as it is produced and dropped (relative L2, max |error|, cosine, FP16 range,
//!   NaN/Inf), so memory stays near two forwards' working sets whatever the depth of the model.
//! - [`sensitivity`]: per quantizable node (or per HRNet block), the mIoU and pixel agreement with FP32 on a
//!   labelled split when that node alone is kept out of INT8, and when it alone is INT8.
//! - [`search`]: the smallest set of nodes (greedy by sensitivity, then pruned) to keep out of INT8 so that
//!   the Q/DQ graph loses at most a budget of mIoU against FP32.
//!
//! Names: the passes keep every value name of the FP32 graph (Q/DQ rewires inputs to new
//! `<v>_dequantized` values; FP16 keeps names, adds `<v>_to_fp16`/`<v>_to_fp32` casts and renames a
//! graph output's producer to `<out>_fp16` with a Cast writing `<out>`), so values are matched by name
//! and the values only one graph has (casts, Q/DQ) are not compared. "Kept in FP16" is simulated as
//! unquantized float32: FP16 rounding is three orders of magnitude below INT8's and [`diff`] measures it
//! on its own.

pub mod compare;
pub mod diff;
pub mod eval;
pub mod pipeline;
pub mod search;
pub mod svg;

pub use compare::{TensorDiff, FP16_MAX};
pub use diff::{diff, DiffOptions, DiffReport};
pub use eval::{EvalSample, Evaluator, Score};
pub use search::{
    search, sensitivity, SearchOptions, SearchReport, Sensitivity, SensitivityReport,
};
pub use svg::error_growth_svg;

/// Errors of the debugger, each naming the graph, node or value involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DebugError {
    #[error("running the {graph} graph: {source}")]
    Exec {
        graph: String,
        #[source]
        source: crate::exec::ExecError,
    },
    #[error("lowering to {what}: {source}")]
    Lowering {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("input {index}: {source}")]
    Input {
        index: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no inputs to run")]
    NoInputs,
    #[error(
        "the {graph} graph's output '{output}' is not [1, K, h, w] float logits (shape {shape:?})"
    )]
    Logits {
        graph: String,
        output: String,
        shape: Vec<usize>,
    },
    #[error("sample {index}: labels hold {labels} pixels, {height}x{width} expected")]
    Labels {
        index: usize,
        labels: usize,
        height: usize,
        width: usize,
    },
    #[error("the {graph} graph's thread panicked")]
    Panicked { graph: String },
    #[error("mIoU budget {0} is not a finite number of points >= 0")]
    Budget(f64),
    #[error("{root}: no labelled '{split}' split to measure mIoU on")]
    NoSplit { root: String, split: String },
    #[error("{recipe}: accuracy.images is 0, which leaves no val images to measure mIoU on")]
    NoImages { recipe: String },
    #[error("reading {root}: {source}")]
    Data {
        root: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Shape(String),
}

/// The model module a node belongs to, from the PyTorch exporter's scoped node names
/// (`/backbone/stage4/stage4.0/branches.2/branches.2.0/conv1/Conv` → `stage4.0/branches.2.0/conv1`):
/// the op's own last component dropped, and each component that the next one merely extends
/// (`stage4` before `stage4.0`) folded into it. Names without scopes (`Conv_12`, hand-built graphs)
/// give "".
pub fn module_of(node_name: &str) -> String {
    let parts: Vec<&str> = node_name
        .trim_start_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() < 2 {
        return String::new();
    }
    let scopes = &parts[..parts.len() - 1];
    let mut kept: Vec<&str> = Vec::new();
    for (i, p) in scopes.iter().enumerate() {
        let extended = scopes.get(i + 1).is_some_and(|next| {
            next.len() > p.len() && next.starts_with(p) && next[p.len()..].starts_with('.')
        });
        if !extended {
            kept.push(p);
        }
    }
    kept.join("/")
}

/// The HRNet block a node belongs to, from [`module_of`]: a basic block of a stage branch
/// (`stage4.0/branches.2.0`), the fuse layers of a stage module (`stage4.0/fuse`), a bottleneck of
/// layer1 (`layer1.0`), a transition (`transition2`), the stem (`stem`), the first two scopes of a head
/// (`ocr_distri_head/object_context_block`); `top` for the model's own ops (`/Concat`), and the node's
/// name when it has no scopes at all.
pub fn block_of(node_name: &str) -> String {
    let m = module_of(node_name);
    if m.is_empty() {
        return if node_name.starts_with('/') {
            "top".to_string()
        } else {
            node_name.to_string()
        };
    }
    let parts: Vec<&str> = m.split('/').collect();
    let first = parts[0];
    let family = first.split('.').next().unwrap_or(first);
    if family.starts_with("stage") {
        return match parts.get(1) {
            Some(b) if b.starts_with("branches") => format!("{first}/{b}"),
            _ => format!("{first}/fuse"),
        };
    }
    if family.starts_with("transition") {
        return family.to_string();
    }
    if family.starts_with("layer") {
        return first.to_string();
    }
    if matches!(
        family,
        "conv1" | "conv2" | "bn1" | "bn2" | "relu" | "relu_1"
    ) && parts.len() == 1
    {
        return "stem".to_string();
    }
    parts[..parts.len().min(2)].join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_come_from_exporter_scopes() {
        assert_eq!(
            module_of("/stage4/stage4.0/branches.2/branches.2.0/conv1/Conv"),
            "stage4.0/branches.2.0/conv1"
        );
        assert_eq!(
            module_of("/ocr_distri_head/object_context_block/f_pixel/f_pixel.0/Conv"),
            "ocr_distri_head/object_context_block/f_pixel.0"
        );
        assert_eq!(module_of("/conv1/Conv"), "conv1");
        assert_eq!(module_of("Conv_12"), "");
        assert_eq!(module_of("/Resize_2"), "");
        assert_eq!(
            block_of("/stage4/stage4.0/branches.2/branches.2.0/conv1/Conv"),
            "stage4.0/branches.2.0"
        );
        assert_eq!(block_of("/layer1/layer1.0/conv2/Conv"), "layer1.0");
        assert_eq!(
            block_of("/ocr_distri_head/object_context_block/f_up/f_up.1/Conv"),
            "ocr_distri_head/object_context_block"
        );
        assert_eq!(block_of("Conv_12"), "Conv_12");
        assert_eq!(block_of("/Concat"), "top");
        assert_eq!(block_of("/conv2/Conv"), "stem");
        assert_eq!(
            block_of("/stage3/stage3.0/fuse_layers.2.0/fuse_layers.2.0.1/fuse_layers.2.0.1.0/Conv"),
            "stage3.0/fuse"
        );
        assert_eq!(block_of("/stage3/stage3.0/Add_1"), "stage3.0/fuse");
        assert_eq!(
            block_of("/transition2/transition2.2/transition2.2.0/transition2.2.0.0/Conv"),
            "transition2"
        );
    }
}
