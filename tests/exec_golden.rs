//! The executor against onnxruntime: every fixture's outputs, computed by onnxruntime when the fixture was
//! made (models/fixtures/make_fixtures.py), must be reproduced within relative L2 1e-5 — before and after
//! simplification, which is how we know simplification keeps the numbers.

mod common;

use common::*;
use ocrnet_edge::exec::{ExecOptions, Executor, Numerics, RunStats};
use ocrnet_edge::onnx;
use ocrnet_edge::passes::{self, fp16, SimplifyOptions};
use ocrnet_edge::tensor::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// The bound the executor issue sets for float32 against onnxruntime.
const REL_L2: f64 = 1e-5;

fn run_case(model: &onnx::Model, dir: &Path, options: ExecOptions) -> HashMap<String, Tensor> {
    let exec = Executor::new(model, options).unwrap();
    let input = ocrnet_edge::npy::read(&dir.join("input.npy")).unwrap();
    exec.run(HashMap::from([("input".to_string(), input)]), &[], None)
        .unwrap()
}

fn check(case: &str, outputs: &HashMap<String, Tensor>, dir: &Path, bound: f64) {
    for name in ["aux", "out"] {
        let want = ocrnet_edge::npy::read(&dir.join(format!("{name}.npy"))).unwrap();
        let err = rel_l2(&outputs[name], &want);
        assert!(
            err <= bound,
            "{case}/{name}: relative L2 {err:.3e} > {bound:e}"
        );
    }
}

#[test]
fn every_fixture_matches_onnxruntime() {
    for case in FIXTURES {
        let path = fixture(case);
        let dir = path.parent().unwrap();
        let model = onnx::load(&path).unwrap();
        let outputs = run_case(
            &model,
            dir,
            ExecOptions {
                threads: 2,
                ..Default::default()
            },
        );
        check(case, &outputs, dir, REL_L2);
    }
}

#[test]
fn simplified_fixtures_still_match_onnxruntime() {
    for case in FIXTURES {
        let path = fixture(case);
        let dir = path.parent().unwrap();
        let mut model = onnx::load(&path).unwrap();
        let input = ocrnet_edge::npy::read(&dir.join("input.npy")).unwrap();
        let dims = input.shape.iter().map(|&d| d as i64).collect();
        let opts = SimplifyOptions {
            input_shapes: HashMap::from([("input".to_string(), dims)]),
            write_value_info: true,
        };
        passes::simplify(&mut model, &opts).unwrap();
        let outputs = run_case(&model, dir, ExecOptions::default());
        check(case, &outputs, dir, REL_L2);
    }
}

#[test]
fn fp16_simulation_stays_close_but_is_not_exact() {
    let path = fixture("legacy_static_opset11");
    let dir = path.parent().unwrap();
    let model = onnx::load(&path).unwrap();
    let fp16 = run_case(
        &model,
        dir,
        ExecOptions {
            threads: 1,
            numerics: Numerics::Fp16,
            ..Default::default()
        },
    );
    let want = ocrnet_edge::npy::read(&dir.join("out.npy")).unwrap();
    let err = rel_l2(&fp16["out"], &want);
    // float16 keeps 11 significant bits (unit roundoff 4.9e-4); a few dozen layers compound that.
    assert!(err > 1e-5 && err < 2e-2, "fp16 relative L2 {err:.3e}");
    // Every float value it produced is exactly representable in float16.
    for v in fp16["out"].as_f32s() {
        assert_eq!(half::f16::from_f32(v).to_f32(), v);
    }
}

#[test]
fn hook_sees_every_value_once_and_extra_outputs_are_returned() {
    let path = fixture("dynamo_static_opset18");
    let dir = path.parent().unwrap();
    let model = onnx::load(&path).unwrap();
    let exec = Executor::new(&model, ExecOptions::default()).unwrap();
    let input = ocrnet_edge::npy::read(&dir.join("input.npy")).unwrap();
    let mut seen: Vec<(String, Vec<usize>)> = Vec::new();
    let mut hook = |name: &str, t: &Tensor| seen.push((name.to_string(), t.shape.clone()));
    // An intermediate: the first Softmax's output (the gather's region weights).
    let softmax = model
        .graph
        .nodes
        .iter()
        .find(|n| n.op_type() == "Softmax")
        .unwrap()
        .output[0]
        .clone();
    let (outputs, stats) = exec
        .run_with_stats(
            HashMap::from([("input".to_string(), input.clone())]),
            &[&softmax],
            Some(&mut hook),
        )
        .unwrap();
    let produced: usize = model.graph.nodes.iter().map(|n| n.output.len()).sum();
    assert_eq!(
        seen.len(),
        produced + 1,
        "every node output and the graph input"
    );
    assert_eq!(seen[0], ("input".to_string(), input.shape.clone()));
    let mut names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), seen.len(), "each value once");
    let probs = &outputs[&softmax];
    let k = probs.shape[1];
    // Softmax over H·W: each region's weights sum to one.
    let v = probs.as_f32s();
    let hw = v.len() / k;
    for region in v.chunks(hw) {
        assert!((region.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    // Intermediates are freed as soon as their last reader ran: the peak live set is far below the sum of
    // every activation the graph produces.
    let total: usize = seen
        .iter()
        .map(|(_, s)| s.iter().product::<usize>() * 4)
        .sum();
    assert!(
        stats.peak_activation_bytes * 4 < total,
        "peak {} of total {total}",
        stats.peak_activation_bytes
    );
}

#[test]
fn bad_inputs_and_unsupported_nodes_are_errors_naming_them() {
    let model = onnx::load(&fixture("legacy_static_opset11")).unwrap();
    let exec = Executor::new(&model, ExecOptions::default()).unwrap();
    let wrong = Tensor::vec_f32(vec![1, 3, 32, 32], vec![0.0; 3 * 32 * 32]).unwrap();
    let e = exec
        .run(HashMap::from([("input".to_string(), wrong)]), &[], None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'input'") && e.contains("[1, 3, 64, 128]"),
        "{e}"
    );
    let e = exec.run(HashMap::new(), &[], None).unwrap_err().to_string();
    assert!(e.contains("'input'") && e.contains("not given"), "{e}");

    let mut odd = model.clone();
    odd.graph.nodes[3].op_type = Some("OcrMystery".into());
    let name = odd.graph.nodes[3].name().to_string();
    let e = Executor::new(&odd, ExecOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains(&name) && e.contains("OcrMystery"), "{e}");

    // A thread count far past any machine is refused at once rather than spent creating threads.
    let many = ExecOptions {
        threads: ocrnet_edge::exec::engine::MAX_THREADS + 1,
        ..Default::default()
    };
    let e = Executor::new(&model, many).err().unwrap().to_string();
    assert!(
        e.contains("1025 worker threads") && e.contains("at most 1024"),
        "{e}"
    );
}

#[test]
fn fused_and_in_place_plan_gives_the_same_bits_as_the_plain_one() {
    // Without a hook the executor fuses Conv+Relu and computes Relu/Add into dying inputs; with a hook it
    // runs every node as written. Both must produce identical bits, in FP32 and in the FP16 graph
    // (whose Add, Relu and Conv take the f16 paths).
    for (case, half) in [
        ("legacy_static_opset11", false),
        ("legacy_static_mmseg_opset13", false),
        ("legacy_static_opset11", true),
    ] {
        let path = fixture(case);
        let mut model = onnx::load(&path).unwrap();
        if half {
            let report = fp16::run(&mut model, &fp16::Fp16Options::default()).unwrap();
            assert!(report.fp16_nodes > 100, "{report:?}");
        }
        let exec = Executor::new(&model, ExecOptions::default()).unwrap();
        let input = ocrnet_edge::npy::read(&path.parent().unwrap().join("input.npy")).unwrap();
        let feed = || HashMap::from([("input".to_string(), input.clone())]);
        let fast = exec.run(feed(), &[], None).unwrap();
        let mut seen = 0;
        let mut hook = |_: &str, _: &Tensor| seen += 1;
        let plain = exec.run(feed(), &[], Some(&mut hook)).unwrap();
        assert!(seen > 100);
        for name in ["aux", "out"] {
            assert_eq!(
                fast[name], plain[name],
                "{case}/{name} (fp16 graph: {half})"
            );
        }
    }
}

/// A fixture's model, a profiling executor for it and its input.
fn profiled(case: &str) -> (onnx::Model, Executor, Tensor) {
    let path = fixture(case);
    let model = onnx::load(&path).unwrap();
    let options = ExecOptions {
        profile: true,
        ..Default::default()
    };
    let exec = Executor::new(&model, options).unwrap();
    let input = ocrnet_edge::npy::read(&path.parent().unwrap().join("input.npy")).unwrap();
    (model, exec, input)
}

#[test]
fn watching_some_values_keeps_the_fused_plan_and_sees_only_them() {
    let (model, exec, input) = profiled("legacy_static_opset11");
    let feed = || HashMap::from([("input".to_string(), input.clone())]);
    // A Conv read only by a Relu: its output exists only in the unfused plan, the Relu's in both.
    let nodes = &model.graph.nodes;
    let (conv, relu) = nodes
        .iter()
        .filter(|n| n.op_type() == "Relu")
        .find_map(|r| {
            let c = nodes.iter().find(|c| c.output[0] == r.input[0])?;
            (c.op_type() == "Conv").then(|| (c.output[0].clone(), r.output[0].clone()))
        })
        .unwrap();
    let mut all = HashMap::new();
    let mut hook = |n: &str, t: &Tensor| {
        all.insert(n.to_string(), t.clone());
    };
    let plain = exec.run(feed(), &[], Some(&mut hook)).unwrap();

    let mut seen = Vec::new();
    let mut hook = |n: &str, t: &Tensor| seen.push((n.to_string(), t.clone()));
    let watch = [relu.as_str(), "input", "no such value"];
    let (out, stats) = exec.run_watching(feed(), watch, &mut hook).unwrap();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["input", relu.as_str()]);
    assert_eq!(seen[1].1, all[&relu]);
    assert!(stats.profile.iter().any(|(op, _, _)| op == "Conv+Relu"));
    for name in ["aux", "out"] {
        assert_eq!(out[name], plain[name], "{name}");
    }

    // Watching the pre-Relu Conv output, or a Concat that Convs read in place (what calibration
    // watches: the Convs' inputs), unfuses just that pair: the other pairs stay fused.
    let readers = |v: &str| {
        nodes
            .iter()
            .filter(|n| n.input.iter().any(|i| i == v))
            .count()
    };
    let concat = nodes
        .iter()
        .find(|c| {
            let out = &c.output[0];
            let convs = nodes
                .iter()
                .filter(|n| n.op_type() == "Conv" && &n.input[0] == out);
            c.op_type() == "Concat" && convs.count() == readers(out)
        })
        .map(|n| n.output[0].clone())
        .unwrap();
    let count = |stats: &RunStats, op: &str| stats.nodes.iter().filter(|t| t.op == op).count();
    let (_, fused) = exec.run_with_stats(feed(), &[], None).unwrap();
    for (value, op, unfused) in [
        (&conv, "Conv+Relu", 1),
        (&concat, "Concat+Conv+Relu", readers(&concat)),
    ] {
        let check = |stats: &RunStats| {
            // One step more than the fused plan (the unfused one has a step per Relu), and only this
            // value's pairs split.
            assert_eq!(stats.nodes.len(), fused.nodes.len() + 1, "{value}");
            assert_eq!(count(stats, op), count(&fused, op) - unfused, "{value}");
        };
        let mut seen = Vec::new();
        let mut hook = |n: &str, t: &Tensor| seen.push((n.to_string(), t.clone()));
        let (out, stats) = exec
            .run_watching(feed(), [value.as_str()], &mut hook)
            .unwrap();
        assert_eq!(seen.len(), 1, "{value}");
        assert_eq!(seen[0].1, all[value], "{value}");
        check(&stats);
        assert_eq!(out["out"], plain["out"], "{value}");
        // Asking for it by name does the same without a hook.
        let (out, stats) = exec.run_with_stats(feed(), &[value], None).unwrap();
        assert_eq!(out[value.as_str()], all[value], "{value}");
        check(&stats);
    }
}

#[test]
fn a_profiled_run_times_every_node_and_counts_every_convolution() {
    let (model, exec, input) = profiled("legacy_static_opset11");
    let [_, _, h, w] = <[usize; 4]>::try_from(input.shape.clone()).unwrap();
    let (_, stats) = exec
        .run_with_stats(HashMap::from([("input".to_string(), input)]), &[], None)
        .unwrap();
    // The fused plan runs each Conv+Relu pair as one step: one time per Conv, none for its Relu; the
    // Concats that only Convs read (HRNet's four branches, OCR's context + features) are read in place
    // by those Convs and have no time of their own.
    let convs = model.graph.nodes.iter().filter(|n| n.op_type() == "Conv");
    let is_conv = |op: &str| op.split('+').any(|o| o == "Conv");
    assert_eq!(
        stats.nodes.iter().filter(|t| is_conv(&t.op)).count(),
        convs.count()
    );
    let read_in_place = stats
        .nodes
        .iter()
        .filter(|t| t.op.starts_with("Concat+Conv"))
        .count();
    let concats = model.graph.nodes.iter().filter(|n| n.op_type() == "Concat");
    let timed = stats.nodes.iter().filter(|t| t.op == "Concat").count();
    assert!(read_in_place >= 3, "{read_in_place}");
    assert!(timed < concats.count());
    let per_op: f64 = stats.profile.iter().map(|(_, s, _)| s).sum();
    let per_node: f64 = stats.nodes.iter().map(|t| t.seconds).sum();
    assert!((per_op - per_node).abs() <= 1e-9 * per_op.max(1.0));

    let shapes = ocrnet_edge::shape::infer(&model.graph, model.opset().unwrap()).unwrap();
    let p = ocrnet_edge::exec::profile::Profile::new(&model.graph, &shapes, &stats.nodes);
    assert!(p.nodes.windows(2).all(|w| w[0].seconds >= w[1].seconds));
    // Every counted operation lands on exactly one node, and every Conv in exactly one geometry.
    let total = ocrnet_edge::exec::flops::count(&model.graph, &shapes) as f64 / 1e9;
    let counted: f64 = p.nodes.iter().filter_map(|r| r.gflop).sum();
    assert!(
        total > 0.0 && (counted - total).abs() <= 1e-9 * total,
        "{counted} vs {total}"
    );
    let in_layers: f64 = p.layers.iter().map(|l| l.gflop).sum();
    let conv_gflop: f64 = p
        .nodes
        .iter()
        .filter(|r| is_conv(&r.op))
        .filter_map(|r| r.gflop)
        .sum();
    assert!((in_layers - conv_gflop).abs() <= 1e-9 * total);
    // The stem: a 3×3 stride-2 Conv from the 3 image channels at half the input's resolution.
    let stem_layer = p
        .layers
        .iter()
        .find(|l| l.layer.starts_with("3x3 3->"))
        .unwrap_or_else(|| panic!("no stem layer in {:?}", p.layers));
    assert!(
        stem_layer
            .layer
            .ends_with(&format!("@{}x{} s2,2", h / 2, w / 2)),
        "{}",
        stem_layer.layer
    );
}

/// x → Softmax(channels) → Transpose(H, W) → Transpose back → + the softmax: every value 2 MiB,
/// large enough for the executor's buffer pool.
fn pooled_chain() -> onnx::Model {
    use ocrnet_edge::onnx::proto::AttributeProto;
    let ints = |name: &str, v: &[i64]| AttributeProto {
        name: Some(name.into()),
        r#type: Some(7),
        ints: v.to_vec(),
        ..Default::default()
    };
    let mut softmax = node("softmax", "Softmax", &["x"], &["s"]);
    softmax.attribute.push(AttributeProto {
        name: Some("axis".into()),
        r#type: Some(2),
        i: Some(1),
        ..Default::default()
    });
    let mut there = node("there", "Transpose", &["s"], &["t"]);
    there.attribute.push(ints("perm", &[0, 1, 3, 2]));
    let mut back = node("back", "Transpose", &["t"], &["u"]);
    back.attribute.push(ints("perm", &[0, 1, 3, 2]));
    let mut proto = tiny_model(1);
    let graph = proto.graph.as_mut().unwrap();
    graph.node = vec![
        softmax,
        there,
        back,
        node("add", "Add", &["u", "s"], &["y"]),
    ];
    graph.initializer.clear();
    graph.input = vec![value("x", &[1, 16, 128, 256])];
    graph.output = vec![value("y", &[1, 16, 128, 256])];
    let graph = onnx::Graph::from_proto(proto.graph.take().unwrap()).unwrap();
    onnx::Model::new(proto, graph)
}

#[test]
fn runs_inside_one_buffer_pool_reuse_each_others_buffers() {
    let exec = Executor::new(&pooled_chain(), ExecOptions::default()).unwrap();
    let n = 16 * 128 * 256;
    let x: Vec<f32> = (0..n).map(|i| (i % 997) as f32 / 250.0).collect();
    let feed = || {
        HashMap::from([(
            "x".to_string(),
            Tensor::vec_f32(vec![1, 16, 128, 256], x.clone()).unwrap(),
        )])
    };
    let run = |e: &Executor| e.run_with_stats(feed(), &[], None).unwrap();
    // Separate runs: each starts from an empty pool, so each allocates the same fresh buffers.
    let (first, a) = run(&exec);
    let (_, b) = run(&exec);
    assert!(a.fresh_buffers >= 2, "{a:?}");
    assert_eq!(a.fresh_buffers, b.fresh_buffers);
    // In one pool, the second run takes what the first freed: only the output it hands back
    // to the caller (never freed into the pool) has to be new.
    let (c, d, out) = exec.with_reused_buffers(|e| {
        let (_, c) = run(e);
        let (out, d) = run(e);
        (c, d, out)
    });
    assert_eq!(c.fresh_buffers, a.fresh_buffers);
    assert!(d.fresh_buffers < c.fresh_buffers, "{c:?} then {d:?}");
    // Recycled buffers hold old values: the results must not depend on them.
    assert_eq!(out["y"], first["y"]);
}
