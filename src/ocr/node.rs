//! The fused ONNX nodes: what the fusion pass writes, what the executor and shape inference read, and what
//! TensorRT's parser hands to the plugin creators. The field list is declared once here (and mirrored by the
//! C++ creators, whose README table is checked against [`FIELDS`] by a test).

use super::{ATTENTION_OP, DOMAIN, GATHER_OP, PLUGIN_NAMESPACE, PLUGIN_VERSION};
use crate::onnx::graph::attr;
use crate::onnx::proto::{attribute_proto::AttributeType, AttributeProto, NodeProto};

/// Which of the two OCR ops a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum OcrKind {
    /// `OcrSpatialGather(probs [N,K,H,W], feats [N,C,H,W]) -> [N,C,K,1]`.
    SpatialGather,
    /// `OcrObjectAttention(query [N,Ck,H,W], key [N,Ck,K,1], value [N,Ck,K,1]) -> [N,Ck,H,W]`.
    ObjectAttention,
}

impl OcrKind {
    pub fn op_type(self) -> &'static str {
        match self {
            OcrKind::SpatialGather => GATHER_OP,
            OcrKind::ObjectAttention => ATTENTION_OP,
        }
    }

    /// Input names in order, as the plugin README documents them.
    pub fn inputs(self) -> &'static [&'static str] {
        match self {
            OcrKind::SpatialGather => &["probs", "feats"],
            OcrKind::ObjectAttention => &["query", "key", "value"],
        }
    }

    fn from_op_type(op: &str) -> Option<Self> {
        match op {
            GATHER_OP => Some(OcrKind::SpatialGather),
            ATTENTION_OP => Some(OcrKind::ObjectAttention),
            _ => None,
        }
    }
}

/// One plugin field: its ONNX attribute name, type and default. TensorRT's parser passes only the
/// attributes a creator lists, FLOAT as float32.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: &'static str,
    /// Default when the attribute is absent (`None`: required).
    pub default: Option<f32>,
    pub range: &'static str,
}

/// The plugin fields of both ops (they share one: the softmax's logit scale).
pub const FIELDS: &[Field] = &[Field {
    name: "scale",
    ty: "float32",
    default: Some(1.0),
    range: "finite, non-zero",
}];

/// A parsed OCR node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OcrNode {
    pub kind: OcrKind,
    pub scale: f32,
}

impl OcrNode {
    /// Whether `node` claims to be one of ours (our domain, or one of our op types in any domain, since
    /// TensorRT ignores the domain).
    pub fn is_ocr(node: &NodeProto) -> bool {
        node.domain() == DOMAIN || OcrKind::from_op_type(node.op_type()).is_some()
    }

    /// Reads and checks an OCR node: op type, input/output counts, the plugin triple TensorRT needs, and
    /// the scale. The error says what is wrong, not where (callers add the node name).
    pub fn parse(node: &NodeProto) -> Result<Self, String> {
        let kind = OcrKind::from_op_type(node.op_type())
            .ok_or_else(|| format!("unknown op '{}' in domain '{DOMAIN}'", node.op_type()))?;
        let want = kind.inputs().len();
        if node.input.len() != want || node.input.iter().any(String::is_empty) {
            return Err(format!(
                "takes {want} inputs ({}), has {}",
                kind.inputs().join(", "),
                node.input.len()
            ));
        }
        if node.output.len() != 1 {
            return Err(format!("has one output, not {}", node.output.len()));
        }
        for (name, want) in [
            ("plugin_version", PLUGIN_VERSION),
            ("plugin_namespace", PLUGIN_NAMESPACE),
        ] {
            let got = attr(node, name).and_then(|a| a.s.as_ref());
            if got.map(|s| s.as_ref()) != Some(want.as_bytes()) {
                return Err(format!(
                    "attribute {name} must be the string \"{want}\" (TensorRT picks the plugin creator by it), got {}",
                    got.map_or("nothing".to_string(), |s| format!("{:?}", String::from_utf8_lossy(s)))
                ));
            }
        }
        let scale = match attr(node, "scale") {
            None => FIELDS[0].default.unwrap_or(1.0),
            Some(a) if a.r#type() == AttributeType::Float || a.f.is_some() => a.f(),
            Some(_) => return Err("attribute scale must be a FLOAT".into()),
        };
        if !scale.is_finite() || scale == 0.0 {
            return Err(format!(
                "attribute scale must be finite and non-zero, got {scale}"
            ));
        }
        Ok(OcrNode { kind, scale })
    }

    /// The ONNX node, with every attribute TensorRT's parser and our creators need.
    pub fn to_node(&self, name: String, inputs: Vec<String>, output: String) -> NodeProto {
        NodeProto {
            name: Some(name),
            op_type: Some(self.kind.op_type().into()),
            domain: Some(DOMAIN.into()),
            input: inputs,
            output: vec![output],
            attribute: vec![
                string_attr("plugin_version", PLUGIN_VERSION),
                string_attr("plugin_namespace", PLUGIN_NAMESPACE),
                AttributeProto {
                    name: Some("scale".into()),
                    r#type: Some(AttributeType::Float as i32),
                    f: Some(self.scale),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }
}

fn string_attr(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(value.as_bytes().to_vec().into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_nodes_parse_back() {
        let n = OcrNode {
            kind: OcrKind::ObjectAttention,
            scale: 0.0625,
        };
        let node = n.to_node(
            "att".into(),
            vec!["q".into(), "k".into(), "v".into()],
            "o".into(),
        );
        assert_eq!(node.domain(), DOMAIN);
        assert_eq!(OcrNode::parse(&node).unwrap(), n);
    }

    #[test]
    fn parse_names_what_tensorrt_would_miss() {
        let n = OcrNode {
            kind: OcrKind::SpatialGather,
            scale: 1.0,
        };
        let mut node = n.to_node("g".into(), vec!["p".into(), "f".into()], "o".into());
        node.attribute.retain(|a| a.name() != "plugin_namespace");
        let err = OcrNode::parse(&node).unwrap_err();
        assert!(
            err.contains("plugin_namespace must be the string \"ocrnet\""),
            "{err}"
        );

        let mut node = n.to_node("g".into(), vec!["p".into()], "o".into());
        assert!(OcrNode::parse(&node)
            .unwrap_err()
            .contains("takes 2 inputs"));
        node.op_type = Some("OcrNothing".into());
        assert!(OcrNode::parse(&node).unwrap_err().contains("unknown op"));

        let mut node = n.to_node("g".into(), vec!["p".into(), "f".into()], "o".into());
        node.attribute[2].f = Some(f32::INFINITY);
        assert!(OcrNode::parse(&node).unwrap_err().contains("finite"));
    }

    /// The plugin README is what a user reads when TensorRT says "plugin not found": its triple and its
    /// fields table must say what this module writes.
    #[test]
    fn plugin_readme_matches_the_node_definition() {
        let readme = include_str!("../../cpp/plugin/README.md");
        for op in [GATHER_OP, ATTENTION_OP] {
            let row = format!("| `{op}` | `\"{PLUGIN_VERSION}\"` | `\"{PLUGIN_NAMESPACE}\"` |");
            assert!(readme.contains(&row), "README lacks the row {row}");
        }
        assert!(readme.contains(&format!("domain `{DOMAIN}`")));
        for f in FIELDS {
            let default = f
                .default
                .map_or("required".to_string(), |d| format!("{d:?}"));
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", f.name)))
                .unwrap_or_else(|| panic!("README has no row for field {}", f.name));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            assert_eq!(cells[3], format!("`{default}`"), "default of {}", f.name);
            assert_eq!(cells[4], f.range, "range of {}", f.name);
        }
    }
}
