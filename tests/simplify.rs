//! `simplify` on the real HRNet-OCR fixtures: every shape computation of a static model folds into
//! constants, shape inference then knows every value's shape and agrees with onnxruntime's golden
//! outputs, a dynamic export pinned to one size becomes static, and input/output names never
//! change.

use ocrnet_edge::onnx::{self, Graph, Model, SaveOptions};
use ocrnet_edge::passes::{simplify, SimplifyOptions, SimplifyReport};
use ocrnet_edge::shape::{self, Dim};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

const STATIC: [&str; 4] = [
    "legacy_static_opset11",
    "legacy_static_opset13",
    "dynamo_static_opset18",
    "legacy_static_mmseg_opset13",
];
const DYNAMIC: [&str; 2] = ["legacy_dynamic_opset17", "dynamo_dynamic_opset18"];

fn dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models/fixtures")
        .join(case)
}

fn load(case: &str) -> Model {
    onnx::load(&dir(case).join("model.onnx")).unwrap_or_else(|e| panic!("{case}: {e}"))
}

/// The shape in a golden .npy file's header.
fn npy_shape(case: &str, file: &str) -> Vec<i64> {
    let f = std::fs::File::open(dir(case).join(file)).unwrap();
    let npy = npyz::NpyFile::new(std::io::BufReader::new(f)).unwrap();
    npy.shape().iter().map(|&d| d as i64).collect()
}

fn case_input_shape(case: &str) -> Vec<i64> {
    let text = std::fs::read_to_string(dir(case).join("case.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

fn run(model: &mut Model, pins: &[(&str, Vec<i64>)]) -> SimplifyReport {
    let opts = SimplifyOptions {
        input_shapes: pins
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect(),
        write_value_info: true,
    };
    simplify(model, &opts).unwrap()
}

fn names(g: &Graph) -> (Vec<String>, Vec<String>) {
    (
        g.inputs.iter().map(|v| v.name().to_string()).collect(),
        g.outputs.iter().map(|v| v.name().to_string()).collect(),
    )
}

fn known(dims: &[i64]) -> Vec<Dim> {
    dims.iter().map(|&d| Dim::Known(d)).collect()
}

/// Every Reshape's shape and every Resize's roi/scales/sizes is an initializer, and nothing of the
/// shape arithmetic that computed them is left.
fn assert_shape_inputs_constant(case: &str, g: &Graph) {
    let inits: HashSet<&str> = g.initializers.iter().map(|t| t.name()).collect();
    for n in &g.nodes {
        let shape_inputs: &[String] = match n.op_type() {
            "Reshape" => &n.input[1..],
            "Resize" => &n.input[1..],
            _ => &[],
        };
        for i in shape_inputs.iter().filter(|i| !i.is_empty()) {
            assert!(
                inits.contains(i.as_str()),
                "{case}: {} reads '{i}', not an initializer",
                n.name()
            );
        }
    }
    for op in [
        "Shape",
        "Gather",
        "Constant",
        "ConstantOfShape",
        "Identity",
        "Dropout",
        "Slice",
        "Cast",
    ] {
        assert!(
            !g.nodes.iter().any(|n| n.op_type() == op),
            "{case}: a {op} node is left"
        );
    }
}

/// Shape inference knows every value's shape, and the outputs' match the golden outputs.
fn assert_fully_static(case: &str, model: &Model, input: &[i64]) {
    let g = &model.graph;
    let inf = shape::infer(g, model.opset().unwrap()).unwrap();
    assert_eq!(
        inf.shape(g.inputs[0].name()),
        Some(known(input).as_slice()),
        "{case}: input"
    );
    for n in &g.nodes {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            assert!(
                inf.static_shape(o).is_some(),
                "{case}: '{o}' of {} is {:?}",
                n.name(),
                inf.ty(o)
            );
        }
    }
    for (name, file) in [("aux", "aux.npy"), ("out", "out.npy")] {
        assert_eq!(
            inf.shape(name),
            Some(known(&npy_shape(case, file)).as_slice()),
            "{case}: output {name}"
        );
    }
    // The written value_info and the outputs' declared types say the same.
    assert_eq!(
        g.value_info.len(),
        g.nodes.iter().flat_map(|n| &n.output).count() - g.outputs.len(),
        "{case}"
    );
    for out in &g.outputs {
        let declared = shape::ValueType::from_value_info(out).unwrap();
        assert_eq!(
            declared.shape.as_deref(),
            inf.shape(out.name()),
            "{case}: declared output {}",
            out.name()
        );
    }
}

#[test]
fn static_fixtures_fold_every_shape_computation() {
    for case in STATIC {
        let mut model = load(case);
        let report = run(&mut model, &[]);
        println!("{case}: {report:#?}");
        // The dynamo exporter already writes its shapes as initializers: nothing to fold there.
        assert!(
            report.nodes_after < report.nodes_before || case.starts_with("dynamo"),
            "{case}"
        );
        assert_eq!(
            report.ops_before.values().sum::<usize>(),
            report.nodes_before,
            "{case}"
        );
        assert_eq!(
            report.ops_after.values().sum::<usize>(),
            report.nodes_after,
            "{case}"
        );
        assert_shape_inputs_constant(case, &model.graph);
        // The model's compute is all still there.
        for op in [
            "Conv", "Relu", "Add", "MatMul", "Softmax", "Resize", "Reshape",
        ] {
            assert_eq!(
                report.ops_before.get(op),
                report.ops_after.get(op),
                "{case}: {op}"
            );
        }
    }
}

#[test]
fn static_fixtures_infer_fully_known_shapes_matching_goldens() {
    for case in STATIC {
        let mut model = load(case);
        run(&mut model, &[]);
        let input = case_input_shape(case);
        assert_eq!(input, npy_shape(case, "input.npy"), "{case}");
        assert_fully_static(case, &model, &input);
    }
}

#[test]
fn simplify_never_renames_inputs_or_outputs() {
    for case in STATIC.iter().chain(&DYNAMIC) {
        let mut model = load(case);
        let before = names(&model.graph);
        run(&mut model, &[]);
        assert_eq!(names(&model.graph), before, "{case}");
        let mut pinned = load(case);
        run(&mut pinned, &[("input", npy_shape(case, "input.npy"))]);
        assert_eq!(names(&pinned.graph), before, "{case} pinned");
    }
}

#[test]
fn simplify_reaches_a_fixpoint() {
    for case in STATIC.iter().chain(&DYNAMIC) {
        let mut model = load(case);
        run(&mut model, &[]);
        let once = model.graph.clone();
        let again = run(&mut model, &[]);
        assert_eq!(
            (
                again.folded,
                again.constants,
                again.removed_identity,
                again.dead_removed
            ),
            (0, 0, 0, 0),
            "{case}"
        );
        assert_eq!(model.graph.nodes, once.nodes, "{case}");
    }
}

#[test]
fn dynamic_fixtures_pinned_to_the_golden_size_become_static() {
    for case in DYNAMIC {
        let input = npy_shape(case, "input.npy");
        assert_eq!(input, case_input_shape(case));
        let mut model = load(case);
        let report = run(&mut model, &[("input", input.clone())]);
        assert_eq!(report.pinned_inputs, vec!["input".to_string()]);
        assert_shape_inputs_constant(case, &model.graph);
        assert_fully_static(case, &model, &input);
        // The pinned input is declared static in the graph itself.
        let declared = shape::ValueType::from_value_info(&model.graph.inputs[0]).unwrap();
        assert_eq!(declared.shape, Some(known(&input)));
    }
}

#[test]
fn dynamic_fixtures_unpinned_fold_what_is_known_and_stay_valid() {
    for case in DYNAMIC {
        unpinned(case);
    }
}

fn unpinned(case: &str) {
    let mut model = load(case);
    let report = run(&mut model, &[]);
    // The legacy exporter reads even the channel count through Shape/Gather, which folds; dynamo's
    // shape arithmetic reads only the symbolic sizes and leaves nothing to fold.
    let folds = case.starts_with("legacy");
    assert!(
        report.nodes_after <= report.nodes_before
            && (!folds || (report.folded > 0 && report.nodes_after < report.nodes_before)),
        "{case}: {report:#?}"
    );
    assert_eq!(
        report.ops_after.get("Constant"),
        None,
        "{case}: {report:#?}"
    );
    let g = &model.graph;
    // Still a valid graph: every read is produced, no cycle.
    g.clone().topo_sort().unwrap();
    let opset = model.opset().unwrap();
    let inf = shape::infer(g, opset).unwrap();
    // What is left of the shape arithmetic reads symbolic dims only: a Gather of a Shape at a known
    // channel axis is gone.
    let index = g.index();
    for n in g.nodes.iter().filter(|n| n.op_type() == "Gather") {
        let Some(p) = index.producer(&n.input[0]) else {
            continue;
        };
        if index.node(p).op_type() != "Shape" {
            continue;
        }
        let value = inf
            .data(&n.output[0])
            .unwrap_or_else(|| panic!("{}: no data", n.name()));
        assert!(
            value.iter().all(|d| !d.is_known()),
            "{} is {value:?} but was not folded",
            n.name()
        );
    }
    // The outputs' shapes are known up to the symbolic batch and size, and both exporters' roads to
    // a quarter of the input (convolutions, Resize sizes from Div nodes, torch's declared
    // `(((height - 1)//4)) + 1`) end at one normal form.
    for out in ["aux", "out"] {
        let s = inf.shape(out).unwrap();
        let want = [
            Dim::Sym("batch".into()),
            Dim::Known(19),
            Dim::Sym("floor((height+3)/4)".into()),
            Dim::Sym("floor((width+3)/4)".into()),
        ];
        assert_eq!(s, want, "{case}/{out}");
    }
    // Pinned afterwards, the symbolic graph computes the golden shapes.
    let input = npy_shape(case, "input.npy");
    let pins: HashMap<String, Vec<i64>> = [("input".to_string(), input)].into();
    let pinned = shape::infer_with(g, opset, &pins).unwrap();
    for (name, file) in [("aux", "aux.npy"), ("out", "out.npy")] {
        assert_eq!(
            pinned.shape(name),
            Some(known(&npy_shape(case, file)).as_slice()),
            "{case}/{name}"
        );
    }
}

#[test]
fn simplified_models_save_and_reload() {
    let tmp = tempfile::tempdir().unwrap();
    for case in STATIC.iter().chain(&DYNAMIC) {
        let mut model = load(case);
        run(&mut model, &[]);
        let path = tmp.path().join(format!("{case}.onnx"));
        onnx::save(&model, &path, &SaveOptions::default()).unwrap();
        let back = onnx::load(&path).unwrap();
        assert_eq!(back.graph, model.graph, "{case}");
    }
}

#[test]
fn pinning_a_contradicting_shape_is_refused() {
    let mut model = load("legacy_static_opset13");
    let opts = SimplifyOptions {
        input_shapes: [("input".to_string(), vec![1, 3, 64, 128])].into(),
        write_value_info: false,
    };
    let err = simplify(&mut model, &opts).unwrap_err().to_string();
    assert!(
        err.contains("input") && err.contains("dimension 0"),
        "{err}"
    );
    let opts = SimplifyOptions {
        input_shapes: [("image".to_string(), vec![1, 3, 64, 128])].into(),
        write_value_info: false,
    };
    let err = simplify(&mut model, &opts).unwrap_err().to_string();
    assert!(err.contains("'image'"), "{err}");
    // A refused simplify leaves the model as it was.
    assert_eq!(model.graph, load("legacy_static_opset13").graph);
}
