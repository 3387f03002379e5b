//! The command line as a user meets it: commands on real fixtures, JSON output, exit codes and messages.

mod common;

use common::*;

#[test]
fn inspect_json_describes_the_fixture() {
    let path = fixture("legacy_static_opset11");
    let out = ocrnet(&["inspect", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["inputs"][0]["name"], "input");
    assert_eq!(
        v["inputs"][0]["shape"],
        serde_json::json!(["1", "3", "64", "128"])
    );
    let outputs: Vec<&str> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(outputs, ["aux", "out"]);
    assert_eq!(v["opsets"][0], serde_json::json!(["ai.onnx", 11]));
    assert!(v["ops"]["Conv"].as_u64().unwrap() > 20);
    assert!(v["parameters"].as_u64().unwrap() > 100_000);
    assert_eq!(
        v["parameter_bytes"].as_u64().unwrap(),
        4 * v["parameters"].as_u64().unwrap()
    );

    let text = ocrnet(&["inspect", path.to_str().unwrap()]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("IR version") && text.contains("Conv"),
        "{text}"
    );
}

/// A bad value on the command line is a usage error (exit 2) naming the flag, before any work starts.
#[test]
fn bad_flag_values_exit_2_naming_the_flag() {
    let model = fixture("legacy_static_opset11");
    for (args, flag) in [
        (vec!["calibrate", "--miou-budget", "-1"], "--miou-budget"),
        (vec!["calibrate", "--miou-budget", "nan"], "--miou-budget"),
        (
            vec!["diff", model.to_str().unwrap(), "--precisions", "fp16,fp8"],
            "--precisions",
        ),
    ] {
        let out = ocrnet(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn bad_model_exits_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("half.onnx");
    let src = std::fs::read(fixture("legacy_static_opset11")).unwrap();
    std::fs::write(&bad, &src[..1000]).unwrap();
    let out = ocrnet(&["inspect", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("half.onnx") && err.contains("not an ONNX model"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // The file is named once, though both the command's context and the loader's error name it.
    assert_eq!(err.matches("half.onnx").count(), 1, "{err}");
    let out = ocrnet(&["run", bad.to_str().unwrap(), "--input", "x.npy"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("half.onnx").count(), 1, "{err}");
    assert!(err.contains("not an ONNX model"), "{err}");

    // Each cause is said once, though the library's messages already carry their sources.
    let missing = dir.path().join("nope.onnx");
    let out = ocrnet(&["inspect", missing.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert_eq!(err.matches("nope.onnx").count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn compile_default_recipe_writes_model_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = ocrnet(&["compile", "--out", dir.path().to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["simplify"]["nodes_after"].as_u64() < report["simplify"]["nodes_before"].as_u64()
    );
    // Not a terminal: one stderr line per stage, in pipeline order, stamped with the time so far.
    let err = stderr(&out);
    let stages: Vec<(f64, &str)> = err
        .lines()
        .filter_map(|l| {
            let (time, stage) = l.strip_prefix('[')?.split_once(" s] ")?;
            Some((time.trim().parse().ok()?, stage))
        })
        .collect();
    let names: Vec<&str> = stages.iter().map(|s| s.1).collect();
    let order = [
        "loading model",
        "fusing OCR subgraphs",
        "calibrating INT8",
        "measuring accuracy per precision",
    ];
    let at: Vec<Option<usize>> = order
        .iter()
        .map(|o| names.iter().position(|n| n == o))
        .collect();
    assert!(
        at.iter().all(Option::is_some) && at.windows(2).all(|w| w[0] < w[1]),
        "{err}"
    );
    assert!(stages.windows(2).all(|w| w[0].0 <= w[1].0), "{err}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["schema"], "ocrnet-edge.manifest/1");
    assert_eq!(manifest["recipe"]["path"], "embedded default recipe");
    let input = &manifest["inputs"][0];
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sample/model.onnx");
    let (len, hash) = ocrnet_edge::fsutil::hash_file(&sample).unwrap();
    assert_eq!(input["bytes"].as_u64(), Some(len));
    assert_eq!(input["blake3"].as_str(), Some(hash.as_str()));
    let output = &manifest["outputs"][0];
    assert_eq!(output["path"], "model.simplified.onnx");
    let simplified = dir.path().join("model.simplified.onnx");
    assert_eq!(
        output["blake3"].as_str().unwrap(),
        ocrnet_edge::fsutil::hash_file(&simplified).unwrap().1
    );
    // The artifacts are loadable models, and nothing half-written was left behind. Fusion ran by default,
    // was verified on the CPU, and is recorded in the manifest.
    ocrnet_edge::onnx::load(&simplified).unwrap();
    let fused = ocrnet_edge::onnx::load(&dir.path().join("model.fused.onnx")).unwrap();
    assert_eq!(
        ocrnet_edge::passes::ocr::validate::validate(&fused)
            .unwrap()
            .plugin_nodes,
        2
    );
    assert_eq!(report["fuse"]["fused"].as_array().unwrap().len(), 2);
    assert!(report["verify"]["outputs"][0]["rel_l2"].as_f64().unwrap() <= 1e-5);
    let steps: Vec<&str> = manifest["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        steps.contains(&"fuse") && steps.contains(&"verify"),
        "{steps:?}"
    );
    // The recipe asks for fp16 and int8: calibration ran on its 32 sample images, and both lowered graphs,
    // the legacy cache and the scales are written and listed in the manifest.
    assert_eq!(report["precision"]["calibration"]["images"], 32);
    let listed: Vec<&str> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["path"].as_str().unwrap())
        .collect();
    for name in [
        "model.fp16.onnx",
        "model.int8.qdq.onnx",
        "calibration.cache",
        "scales.json",
    ] {
        assert!(listed.contains(&name), "{name} not in {listed:?}");
        assert!(dir.path().join(name).exists());
    }
    // Accuracy on the sample val split: FP32 through our executor, preprocessing and evaluation must give
    // the mIoU the training script measured with PyTorch/onnxruntime (an independent path), to within
    // 0.005 (resize implementations differ slightly); FP16 must agree with FP32 almost everywhere.
    let case: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sample.parent().unwrap().join("case.json")).unwrap())
            .unwrap();
    let python_miou = case["val"]["miou_present"].as_f64().unwrap();
    let acc = &report["precision"]["accuracy"]["precisions"];
    let fp32_miou = acc[0]["scores"]["miou"].as_f64().unwrap();
    assert!(
        (fp32_miou - python_miou).abs() < 0.005,
        "fp32 mIoU {fp32_miou} vs the training script's {python_miou}"
    );
    // The sample val split has 30 images, fewer than the default `accuracy.images` (100).
    assert_eq!(report["precision"]["accuracy"]["images"], 30);
    assert_eq!(report["precision"]["accuracy"]["split_images"], 30);
    assert_eq!(acc[1]["precision"], "fp16");
    assert!(acc[1]["agreement_with_fp32"].as_f64().unwrap() > 0.999);
    assert!(acc[2]["agreement_with_fp32"].as_f64().unwrap() > 0.8);
    let cache = std::fs::read_to_string(dir.path().join("calibration.cache")).unwrap();
    assert!(cache.starts_with("TRT-"), "{cache}");
    // The legacy cache has a scale for every activation of the graph TensorRT builds from it (a missing
    // one sends the layers around it out of INT8), though the Q/DQ graph needs fewer.
    let fused = ocrnet_edge::onnx::load(&dir.path().join("model.fused.onnx")).unwrap();
    let acts = ocrnet_edge::calib::coverage::graph_activations(&fused);
    let cached = ocrnet_edge::calib::cache::read(&cache).unwrap().scales;
    let missing: Vec<_> = acts.iter().filter(|a| !cached.contains_key(*a)).collect();
    assert!(
        missing.is_empty(),
        "{} of {}: {missing:?}",
        missing.len(),
        acts.len()
    );
    assert!(cached.len() > 100, "{}", cached.len());
    for name in ["model.fp16.onnx", "model.int8.qdq.onnx"] {
        let m = ocrnet_edge::onnx::load(&dir.path().join(name)).unwrap();
        ocrnet_edge::passes::ocr::validate::validate(&m).unwrap();
    }
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // A search result as `calibrate --miou-budget` leaves it: the report shows its ranking.
    let score = |m: f64| serde_json::json!({"miou": m, "pixel_accuracy": 0.8, "agreement": 0.9});
    let unit = |name: &str, gain: f64| {
        serde_json::json!({
            "unit": {"name": name, "nodes": [name], "op": "Conv", "module": "m", "flops": 10},
            "kept_out": score(0.34), "miou_gain": gain, "agreement_gain": gain / 2.0,
            "alone_int8": null, "miou_loss_alone": null, "agreement_loss_alone": null
        })
    };
    let search = serde_json::json!({
        "budget_points": 0.5, "met": true, "fp32": score(0.35), "int8": score(0.31), "mixed": score(0.346),
        "exclude": ["/ocr/f_up/Conv"], "pruned": [], "int8_flop_fraction": 0.53,
        "int8_flop_fraction_all": 0.98, "candidates": 3, "seconds": 1.0,
        "sensitivity": {"images": 30, "fp32": score(0.35), "int8": score(0.31), "candidates": 2,
            "seconds": 1.0, "units": [unit("/ocr/f_up/Conv", 0.02), unit("/conv2/Conv", 0.001)]}
    });
    std::fs::write(
        dir.path().join("mixed_precision.json"),
        serde_json::to_string(&search).unwrap(),
    )
    .unwrap();

    // The report on these artifacts evaluates the same graphs the same way: its numbers are compile's.
    let report_dir = dir.path().join("report");
    let out = ocrnet(&[
        "report",
        "--artifacts",
        dir.path().to_str().unwrap(),
        "--out",
        report_dir.to_str().unwrap(),
        "--latency-runs",
        "1",
        "--samples",
        "1",
        "--diff",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("report: gate passed"),
        "{}",
        stderr(&out)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["schema"], "ocrnet-edge.report");
    assert_eq!(r["data"]["images"], 30);
    assert!(r["data"]["split_images"].is_null(), "the whole split");
    for (i, name) in ["fp32", "fp16", "int8"].iter().enumerate() {
        let p = &r["precisions"][i];
        assert_eq!(p["precision"], *name);
        assert_eq!(p["miou"], acc[i]["scores"]["miou"], "{name}");
        assert_eq!(
            p["agreement_with_fp32"], acc[i]["agreement_with_fp32"],
            "{name}"
        );
        assert!(p["latency"]["median_ms"].as_f64().unwrap() > 0.0);
    }
    for f in ["report.json", "report.md", "report.html"] {
        assert!(report_dir.join(f).is_file(), "{f}");
    }
    let html = std::fs::read_to_string(report_dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("data:image/png;base64,"));
    // --diff: each lower precision compared with FP32 value by value, the worst named by node.
    let div = r["divergence"].as_array().unwrap();
    assert_eq!(div.len(), 2);
    for (d, name) in div.iter().zip(["fp16", "int8"]) {
        assert_eq!(d["precision"], name);
        assert!(d["compared"].as_u64().unwrap() > 100, "{d}");
        assert!(
            d["worst"][0]["node"].as_str().unwrap().ends_with("Conv"),
            "{d}"
        );
    }
    // INT8 departs further from FP32 than FP16 does.
    let worst = |i: usize| div[i]["worst"][0]["rel_l2"].as_f64().unwrap();
    assert!(worst(1) > 10.0 * worst(0), "{} vs {}", worst(1), worst(0));
    assert!(
        html.contains("Where the lower precisions depart from FP32") && html.contains("polyline")
    );
    assert_eq!(r["mixed_precision"]["exclude"][0], "/ocr/f_up/Conv");
    assert!(html.contains("Mixed precision: nodes kept out of INT8"));
    assert!(
        html.contains("<td>1</td><td><code>/ocr/f_up/Conv</code></td>"),
        "ranked first"
    );
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains("1 node(s) kept out of INT8"), "{md}");
}

#[test]
fn report_gate_fails_with_its_own_exit_code_and_one_line() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("models/sample/model.onnx");
    let data = root.join("calibration/sample");
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let args = |out: &std::path::Path| -> Vec<String> {
        [
            "report",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--precisions",
            "fp32",
            "--latency-runs",
            "0",
            "--out",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |a: &[String]| ocrnet(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(&args(&first));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(first.join("report.json")).unwrap();
    let mut baseline: serde_json::Value = serde_json::from_str(&text).unwrap();
    let miou = baseline["precisions"][0]["miou"].as_f64().unwrap();
    assert!((miou - 0.350).abs() < 0.005, "{miou}");
    assert!(baseline["precisions"][0]["latency"].is_null());

    // A baseline 5 points better than today: with a 1-point limit the gate fails.
    baseline["precisions"][0]["miou"] = serde_json::json!(miou + 0.05);
    let old = dir.path().join("old.json");
    std::fs::write(&old, serde_json::to_string(&baseline).unwrap()).unwrap();
    let mut a = args(&dir.path().join("second"));
    a.extend(
        [
            "--baseline",
            old.to_str().unwrap(),
            "--max-baseline-drop",
            "1",
        ]
        .map(String::from),
    );
    let out = run(&a);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let line = stderr(&out)
        .lines()
        .find(|l| l.starts_with("report: "))
        .unwrap()
        .to_string();
    assert!(
        line.starts_with("report: REGRESSION: fp32 mIoU")
            && line.contains("5.00 points below the baseline's")
            && line.ends_with("(limit 1)"),
        "{line}"
    );
    // The failed report is still written, for the CI artifact.
    let failed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("second/report.json")).unwrap())
            .unwrap();
    assert_eq!(failed["gate"]["passed"], false);

    // A build without TensorRT says so, and a split that is not there names its folder.
    let mut a = args(&dir.path().join("third"));
    a.extend(["--backend", "trt"].map(String::from));
    let out = run(&a);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not in this build"),
        "{}",
        stderr(&out)
    );
    let mut a = args(&dir.path().join("fourth"));
    a.extend(["--split", "nosuch"].map(String::from));
    let out = run(&a);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nosuch"), "{}", stderr(&out));

    // Six images of the split, spread over its three cities: scored against the full-split baseline
    // with a note that the image counts differ.
    let mut a = args(&dir.path().join("sixth"));
    a.extend(
        [
            "--images",
            "6",
            "--baseline",
            first.join("report.json").to_str().unwrap(),
        ]
        .map(String::from),
    );
    let out = run(&a);
    assert!(out.status.success(), "{}", stderr(&out));
    let part: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("sixth/report.json")).unwrap())
            .unwrap();
    assert_eq!(part["data"]["images"], 6);
    assert_eq!(part["data"]["split_images"], 30);
    let md = std::fs::read_to_string(dir.path().join("sixth/report.md")).unwrap();
    assert!(md.contains("6 of 30 images of `"), "{md}");
    let notes = part["baseline"]["notes"].to_string();
    assert!(notes.contains("30 images, this report on 6"), "{notes}");
    let mut a = args(&dir.path().join("seventh"));
    a.extend(["--images", "0"].map(String::from));
    assert_eq!(run(&a).status.code(), Some(2));

    // A baseline over other classes is refused before any evaluation, naming the file.
    baseline["classes"][18] = serde_json::json!("tram");
    let other = dir.path().join("other.json");
    std::fs::write(&other, serde_json::to_string(&baseline).unwrap()).unwrap();
    let mut a = args(&dir.path().join("fifth"));
    a.extend(["--baseline", other.to_str().unwrap()].map(String::from));
    let out = run(&a);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("other.json") && err.contains("tram") && !err.contains("evaluating"),
        "{err}"
    );
}

#[test]
fn fuse_reports_what_it_fused_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("fused.onnx");
    let model = fixture("legacy_dynamic_opset17");
    let out = ocrnet(&[
        "fuse",
        model.to_str().unwrap(),
        "-o",
        out_path.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fused = report["fuse"]["fused"].as_array().unwrap();
    let ops: Vec<&str> = fused.iter().map(|f| f["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["OcrSpatialGather", "OcrObjectAttention"]);
    assert_eq!(fused[1]["scale"].as_f64(), Some(0.25));
    assert!(fused[1]["replaced"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "/ocr_distri_head/object_context_block/Softmax"));
    assert_eq!(report["validation"]["plugin_nodes"], 2);
    assert!(out_path.exists());

    // The executor runs the plugin nodes; onnxruntime cannot load them, which the benchmark says
    // instead of failing.
    let out = ocrnet(&[
        "bench",
        "exec",
        out_path.to_str().unwrap(),
        "--shape",
        "1,3,64,128",
        "--runs",
        "1",
        "--threads",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["ocrnet_edge"]["median_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["onnxruntime"].is_null());
    let why = v["onnxruntime_missing"].as_str().unwrap();
    assert!(
        why.contains("OcrObjectAttention, OcrSpatialGather") && why.contains("before `fuse`"),
        "{why}"
    );

    // Not a model: exit 1, the message names the file, nothing written.
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"not a model").unwrap();
    let out2 = dir.path().join("never.onnx");
    let out = ocrnet(&["fuse", bad.to_str().unwrap(), "-o", out2.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad.onnx"), "{}", stderr(&out));
    assert!(!out2.exists());
}

#[test]
fn bad_recipe_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.yaml");
    let model = fixture("legacy_static_opset11");
    std::fs::write(
        &recipe,
        format!(
            "model: {}\ninput: {{name: input, shape: [1, 3, 64, 128]}}\nprecisions: [fp16, bf8]\n",
            model.display()
        ),
    )
    .unwrap();
    let out = ocrnet(&[
        "compile",
        recipe.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("r.yaml") && err.contains("bf8"), "{err}");
    // The YAML parser's snippet points into the file by its name, under one `error:` prefix.
    assert!(err.contains("--> ") && err.contains("r.yaml:3:"), "{err}");
    assert_eq!(err.matches("error:").count(), 1, "{err}");

    std::fs::write(
        &recipe,
        format!(
            "model: {}\ninput: {{name: image, shape: [1, 3, 64, 128]}}\n",
            model.display()
        ),
    )
    .unwrap();
    let out = ocrnet(&[
        "compile",
        recipe.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("input.name") && err.contains("'image'") && err.contains("input"),
        "{err}"
    );
    assert!(!dir.path().join("o/manifest.json").exists());
    // stderr is a pipe here: the stage reached gets its line, and -q keeps only the error.
    assert!(
        err.lines().any(|l| l.ends_with(" s] loading model")),
        "{err}"
    );
    let out = ocrnet(&[
        "-q",
        "compile",
        recipe.to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let quiet = stderr(&out);
    assert!(
        quiet.starts_with("error: ") && quiet.lines().count() == 1,
        "{quiet}"
    );
}

#[test]
fn convert_to_external_data_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("dynamo_static_opset18");
    let ext = dir.path().join("ext/model.onnx");
    let out = ocrnet(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        ext.to_str().unwrap(),
        "--external-data",
        "model.data",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("ext/model.data").exists());
    let back = dir.path().join("back.onnx");
    let out = ocrnet(&[
        "convert",
        ext.to_str().unwrap(),
        "-o",
        back.to_str().unwrap(),
        "--inline",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&back).unwrap().len(),
        std::fs::read(&src).unwrap().len()
    );
}

/// `bench calib` on the default recipe, with no Model Optimizer to compare against: our side is measured
/// on the images asked for, the scale table it kept covers every observed tensor, and the missing peer is
/// named instead of failing the run.
#[test]
fn bench_calib_measures_ours_and_names_a_missing_peer() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("kept");
    let out = ocrnet(&[
        "bench",
        "calib",
        "--images",
        "2",
        "--python",
        "/nonexistent/python3",
        "--keep",
        keep.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ocrnet_edge"]["images"], 2);
    assert!(v["ocrnet_edge"]["seconds"].as_f64().unwrap() > 0.0);
    assert!(v["ocrnet_edge"]["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert!(v["cost_per_image_vs_forward"].as_f64().unwrap() > 0.0);
    assert!(v["model_optimizer"].is_null());
    let why = v["model_optimizer_missing"].as_str().unwrap();
    assert!(why.contains("/nonexistent/python3"), "{why}");
    let scales: serde_json::Value =
        serde_json::from_slice(&std::fs::read(keep.join("scales.json")).unwrap()).unwrap();
    assert_eq!(scales["method"], "entropy");
    assert_eq!(
        scales["tensors"].as_object().unwrap().len() as u64,
        v["ocrnet_edge_detail"]["tensors"].as_u64().unwrap()
    );
    // The inputs both sides read: 2 images at the recipe's 128x256.
    let npy = ocrnet_edge::npy::read(&keep.join("inputs.npy")).unwrap();
    assert_eq!(npy.shape, vec![2, 3, 128, 256]);
}

/// `report --model` on a dynamic model with images of two sizes: the FP16 graph is built for the first
/// image's size, so FP32 runs at that size too; otherwise the FP32-vs-FP16 agreement on the second image
/// would measure the resize, not the precision.
#[test]
fn report_on_a_dynamic_model_runs_every_precision_at_one_size() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = root.join("calibration/sample");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (images, gt) = (
        data.join("leftImg8bit/val/frankfurt"),
        data.join("gtFine/val/frankfurt"),
    );
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&gt).unwrap();
    // The first image at 96x192, which the FP16 graph is built for; the second as it is (256x512).
    for (i, stem) in ["frankfurt_000000_000000", "frankfurt_000000_000019"]
        .iter()
        .enumerate()
    {
        let img =
            image::open(sample.join(format!("leftImg8bit/val/frankfurt/{stem}_leftImg8bit.png")))
                .unwrap();
        let label =
            image::open(sample.join(format!("gtFine/val/frankfurt/{stem}_gtFine_labelIds.png")))
                .unwrap();
        let (img, label) = if i == 0 {
            (
                img.resize_exact(192, 96, image::imageops::FilterType::Triangle),
                label.resize_exact(192, 96, image::imageops::FilterType::Nearest),
            )
        } else {
            (img, label)
        };
        img.save(images.join(format!("{stem}_leftImg8bit.png")))
            .unwrap();
        label
            .save(gt.join(format!("{stem}_gtFine_labelIds.png")))
            .unwrap();
    }
    let out_dir = dir.path().join("report");
    let model = fixture("legacy_dynamic_opset17");
    let out = ocrnet(&[
        "report",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--precisions",
        "fp32,fp16",
        "--latency-runs",
        "0",
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["data"]["images"], 2);
    assert_eq!(
        r["input_hw"],
        serde_json::json!([96, 192]),
        "{}",
        r["input_hw"]
    );
    // FP16 against FP32 at the same size: only rounding separates them (0.995 here; with FP32 at the
    // second image's own size, 0.25).
    let agreement = r["precisions"][1]["agreement_with_fp32"].as_f64().unwrap();
    assert!(agreement > 0.98, "fp16 agreement with fp32: {agreement}");
}

#[test]
fn compile_scores_the_recipes_share_of_the_val_split() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("recipe.yaml");
    std::fs::write(
        &recipe,
        format!(
            "model: {:?}\ninput: {{name: input, shape: [1, 3, 128, 256]}}\nprecisions: [fp16]\n\
             calibration: {{data: {:?}}}\naccuracy: {{images: 4}}\nverify: false\n",
            root.join("models/sample/model.onnx"),
            root.join("calibration/sample"),
        ),
    )
    .unwrap();
    let out = ocrnet(&[
        "compile",
        recipe.to_str().unwrap(),
        "--out",
        dir.path().join("out").to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let acc = &report["precision"]["accuracy"];
    assert_eq!(
        (acc["images"].as_u64(), acc["split_images"].as_u64()),
        (Some(4), Some(30))
    );
    assert_eq!(acc["precisions"].as_array().unwrap().len(), 2);
}
