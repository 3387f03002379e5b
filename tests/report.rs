//! The accuracy report: scores of committed prediction/label pairs checked against numbers worked out by
//! hand, the evaluation over a Cityscapes-layout split with stand-in backends, and the gate.

use ocrnet_edge::data::cityscapes::{load_train_ids, Dataset, IGNORE};
use ocrnet_edge::data::ImageLimits;
use ocrnet_edge::recipe::Precision;
use ocrnet_edge::report::evaluate::{evaluate, EvalOptions};
use ocrnet_edge::report::{
    gate::Check, markdown, ConfusionMatrix, DataInfo, Measured, Meta, Report, Thresholds,
};
use ocrnet_edge::runtime::backend::{Backend, BackendError};
use ocrnet_edge::tensor::Tensor;
use std::path::{Path, PathBuf};

const K: usize = 19;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/report")
        .join(name)
}

fn labels(pair: &str) -> Vec<u8> {
    load_train_ids(
        &data(&format!("{pair}_gtFine_labelIds.png")),
        ImageLimits::default(),
    )
    .unwrap()
    .data
}

fn predictions(pair: &str) -> Vec<u8> {
    image::open(data(&format!("{pair}_pred_trainIds.png")))
        .unwrap()
        .to_luma8()
        .into_raw()
}

/// The matrix of both committed pairs.
fn pairs_matrix() -> ConfusionMatrix {
    let mut m = ConfusionMatrix::new(K);
    for pair in ["a", "b"] {
        m.add(&labels(pair), &predictions(pair));
    }
    m
}

// Worked out from tests/data/report/make_pairs.py (rows: ground truth → prediction), both images together:
//   road (0):      TP 10; FN 2 (→ sidewalk); FP 2 (sidewalk → road)                  IoU 10/14
//   sidewalk (1):  TP 9;  FN 3 (1 → building, 2 → road); FP 2 (road → sidewalk)     IoU 9/14
//   building (2):  TP 11; FN 1 (→ car); FP 2 (sidewalk → building, car → building)  IoU 11/14
//   car (13):      TP 9;  FN 1 (→ building); FP 1 (building → car)                  IoU 9/11
// The two `unlabeled` pixels of image a (predicted road and car) count nowhere. 46 labelled pixels, 39 correct.
const IOU: [(usize, f64); 4] = [
    (0, 10.0 / 14.0),
    (1, 9.0 / 14.0),
    (2, 11.0 / 14.0),
    (13, 9.0 / 11.0),
];
const MIOU: f64 = 57.0 / 77.0;
const PIXEL_ACCURACY: f64 = 39.0 / 46.0;

#[test]
fn committed_pairs_score_as_worked_out_by_hand() {
    let labels_a = labels("a");
    assert_eq!(labels_a.iter().filter(|&&l| l == IGNORE).count(), 2);
    let s = pairs_matrix().scores();
    for c in 0..K {
        match IOU.iter().find(|(k, _)| *k == c) {
            Some((_, want)) => {
                let got = s.iou[c].unwrap();
                assert!((got - want).abs() < 1e-12, "class {c}: {got} vs {want}");
            }
            // Neither labelled nor predicted: undefined, and left out of the mean.
            None => assert_eq!(s.iou[c], None, "class {c}"),
        }
    }
    assert!((s.miou - MIOU).abs() < 1e-12, "{}", s.miou);
    assert!((s.pixel_accuracy - PIXEL_ACCURACY).abs() < 1e-12);
    assert_eq!(s.pixels, 46);
}

/// Builds a Cityscapes-layout `val` split of the two pairs. Image a is black and image b white, so that a
/// stand-in backend can tell them apart from the preprocessed tensor alone.
fn split(dir: &Path) {
    for (pair, shade) in [("a", 0u8), ("b", 255u8)] {
        let images = dir.join("leftImg8bit/val/testcity");
        let gt = dir.join("gtFine/val/testcity");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&gt).unwrap();
        image::RgbImage::from_pixel(6, 4, image::Rgb([shade; 3]))
            .save(images.join(format!("{pair}_leftImg8bit.png")))
            .unwrap();
        std::fs::copy(
            data(&format!("{pair}_gtFine_labelIds.png")),
            gt.join(format!("{pair}_gtFine_labelIds.png")),
        )
        .unwrap();
    }
}

/// Answers with one-hot logits of a fixed class map per image, at the image's size, so that the argmax
/// gives the map back exactly.
struct Fixed {
    maps: [Vec<u8>; 2],
}

impl Backend for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }
    fn input_hw(&self) -> Option<(u32, u32)> {
        None
    }
    fn infer(&self, input: Tensor) -> Result<Tensor, BackendError> {
        assert_eq!(input.shape, vec![1, 3, 4, 6]);
        let bright = input.as_f32s()[0] > 0.0;
        let map = &self.maps[bright as usize];
        let mut logits = vec![0f32; K * 24];
        for (i, &c) in map.iter().enumerate() {
            logits[c as usize * 24 + i] = 1.0;
        }
        Ok(Tensor::vec_f32(vec![1, K, 4, 6], logits).unwrap())
    }
}

#[test]
fn evaluation_accumulates_one_matrix_per_backend_over_the_split() {
    let dir = tempfile::tempdir().unwrap();
    split(dir.path());
    let dataset = Dataset::open(dir.path(), Some("val")).unwrap();
    assert_eq!(dataset.samples.len(), 2);
    // "fp32" predicts the labels (road where unlabelled); "int8" predicts the committed maps.
    let perfect = |p: &str| -> Vec<u8> {
        labels(p)
            .into_iter()
            .map(|l| if l == IGNORE { 0 } else { l })
            .collect()
    };
    let fp32 = Fixed {
        maps: [perfect("a"), perfect("b")],
    };
    let int8 = Fixed {
        maps: [predictions("a"), predictions("b")],
    };
    let eval = evaluate(&dataset, &[&fp32, &int8], &EvalOptions::default()).unwrap();
    assert_eq!((eval.images, eval.pixels), (2, 48));
    assert_eq!(eval.matrices[1], pairs_matrix());
    let fp32_scores = eval.matrices[0].scores();
    assert_eq!(fp32_scores.miou, 1.0);
    // Agreement counts every pixel, the unlabelled ones too: of image a's two, one is road in both maps.
    let same: usize = ["a", "b"]
        .iter()
        .map(|p| {
            perfect(p)
                .iter()
                .zip(predictions(p))
                .filter(|(x, y)| **x == *y)
                .count()
        })
        .sum();
    assert_eq!(same, 39 + 1);
    assert_eq!(eval.agreeing, vec![48, same as u64]);
    assert!((eval.agreement(1) - 40.0 / 48.0).abs() < 1e-12);
    // Overlay samples keep the maps in backend order.
    assert_eq!(eval.samples.len(), 2);
    assert_eq!(eval.samples[0].maps[1], predictions("a"));
    assert_eq!(eval.samples[1].labels, labels("b"));

    // Logits with other than the evaluated classes are refused, naming the image and both counts:
    // predictions past the classes would count nowhere and lift the scores.
    let opts = EvalOptions {
        classes: K + 2,
        ..Default::default()
    };
    let err = evaluate(&dataset, &[&fp32], &opts).unwrap_err().to_string();
    assert!(
        err.contains("_leftImg8bit.png")
            && err.contains(&format!("has {K} classes"))
            && err.contains(&format!("has {}", K + 2)),
        "{err}"
    );
}

/// Answers road everywhere, claims `peak` bytes per inference, and records the most inferences that
/// were ever in flight at once. Like the CPU executor, it works on a rayon pool of its own.
struct Counting {
    peak: usize,
    pool: rayon::ThreadPool,
    active: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl Counting {
    fn new(peak: usize) -> Self {
        Counting {
            peak,
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap(),
            active: Default::default(),
            most: Default::default(),
        }
    }
}

impl Backend for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn input_hw(&self) -> Option<(u32, u32)> {
        None
    }
    fn infer(&self, _input: Tensor) -> Result<Tensor, BackendError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.active.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        self.pool.install(|| {
            rayon::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|_| std::thread::sleep(std::time::Duration::from_millis(10)));
                }
            })
        });
        self.active.fetch_sub(1, SeqCst);
        Ok(Tensor::vec_f32(vec![1, K, 4, 6], vec![0.0; K * 24]).unwrap())
    }
    fn last_peak_bytes(&self) -> Option<usize> {
        Some(self.peak)
    }
}

/// The number of images in flight follows the memory one inference takes: a backend whose peak exceeds
/// the machine's memory runs one image at a time (rather than one per thread, each holding that peak);
/// a small one runs several at once.
#[test]
fn images_in_flight_are_bounded_by_memory() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("leftImg8bit/val/testcity");
    let gt = dir.path().join("gtFine/val/testcity");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&gt).unwrap();
    for i in 0..8 {
        image::RgbImage::new(6, 4)
            .save(images.join(format!("x{i}_leftImg8bit.png")))
            .unwrap();
        std::fs::copy(
            data("a_gtFine_labelIds.png"),
            gt.join(format!("x{i}_gtFine_labelIds.png")),
        )
        .unwrap();
    }
    let dataset = Dataset::open(dir.path(), Some("val")).unwrap();
    let huge = Counting::new(usize::MAX / 4);
    let eval = evaluate(&dataset, &[&huge], &EvalOptions::default()).unwrap();
    assert_eq!(eval.images, 8);
    assert_eq!(huge.most.into_inner(), 1, "one image at a time");

    if rayon::current_num_threads() >= 2 {
        let small = Counting::new(1 << 10);
        let eval = evaluate(&dataset, &[&small], &EvalOptions::default()).unwrap();
        assert_eq!(eval.images, 8);
        assert!(small.most.into_inner() >= 2, "several images at once");
    }
}

fn report(thresholds: &Thresholds, baseline: Option<(&str, &Report)>) -> Report {
    let mut perfect = ConfusionMatrix::new(K);
    for p in ["a", "b"] {
        let l = labels(p);
        perfect.add(&l, &l);
    }
    let pairs = pairs_matrix();
    let names: Vec<String> = ocrnet_edge::data::cityscapes::CLASS_NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    Report::assemble(
        Meta {
            source: "pairs".into(),
            backend: "fixed".into(),
            data: DataInfo {
                root: "tests/data/report".into(),
                split: "val".into(),
                images: 2,
                pixels: 48,
                split_images: None,
            },
            input_hw: None,
            class_names: names,
        },
        &[
            Measured {
                precision: Precision::Fp32,
                model: "fp32.onnx".into(),
                matrix: &perfect,
                agreement_with_fp32: 1.0,
                latency: None,
            },
            Measured {
                precision: Precision::Int8,
                model: "int8.onnx".into(),
                matrix: &pairs,
                agreement_with_fp32: 40.0 / 48.0,
                latency: None,
            },
        ],
        baseline,
        thresholds,
    )
}

#[test]
fn deltas_against_fp32_and_the_gate() {
    let lenient = report(&Thresholds::default(), None);
    let int8 = lenient.precision(Precision::Int8).unwrap();
    assert!((int8.miou_delta_vs_fp32 - (MIOU - 1.0)).abs() < 1e-12);
    for (c, iou) in IOU {
        assert!((int8.classes[c].iou_delta_vs_fp32.unwrap() - (iou - 1.0)).abs() < 1e-12);
    }
    assert_eq!(int8.classes[0].label_pixels, 12);
    assert_eq!(int8.classes[5].iou, None);
    assert!(lenient.gate.passed);
    assert_eq!(lenient.weakest().precision, Precision::Int8);

    // Drops: mIoU 25.97 points; classes road 28.57, sidewalk 35.71, building 21.43, car 18.18.
    let strict = report(
        &Thresholds {
            max_miou_drop: Some(20.0),
            max_class_iou_drop: Some(30.0),
            max_baseline_drop: None,
        },
        None,
    );
    assert!(!strict.gate.passed);
    let v = &strict.gate.violations;
    assert_eq!(v.len(), 2, "{v:?}");
    // Worst first: mIoU is 5.97 points past its limit, sidewalk 5.71.
    assert_eq!(v[0].check, Check::MiouVsFp32);
    assert!((v[0].drop_points - (1.0 - MIOU) * 100.0).abs() < 1e-9);
    assert_eq!(v[1].check, Check::ClassIouVsFp32);
    assert_eq!(v[1].class.as_deref(), Some("sidewalk"));
    assert_eq!(
        strict.gate.summary(),
        "REGRESSION: int8 mIoU 74.03 is 25.97 points below fp32 (limit 20) (and 1 more threshold broken)"
    );
    let md = markdown::render(&strict);
    assert!(
        md.contains("| int8 | 74.03 | -25.97 | 84.78 | 83.33 % |"),
        "{md}"
    );
    assert!(
        md.contains("| sidewalk | 100.00 | 64.29 | -35.71 |"),
        "{md}"
    );
    assert!(md.contains("**Failed:**"));
}

#[test]
fn baseline_comparison_and_schema_checks() {
    let old = report(&Thresholds::default(), None);
    let text = serde_json::to_string(&old).unwrap();
    let mut better = Report::from_json(&text, "old.json").unwrap();
    // A baseline whose int8 was 2 points better than now.
    better.precisions[1].miou += 0.02;
    let t = Thresholds {
        max_baseline_drop: Some(1.5),
        ..Default::default()
    };
    let now = report(&t, Some(("old.json", &better)));
    let b = now.baseline.as_ref().unwrap();
    assert_eq!(b.entries.len(), 2);
    assert!((b.entries[1].delta + 0.02).abs() < 1e-12);
    assert_eq!(now.gate.violations.len(), 1);
    assert_eq!(now.gate.violations[0].check, Check::MiouVsBaseline);
    assert!(now.gate.summary().contains("below the baseline's 76.03"));
    assert!(now.gate.warnings.is_empty(), "{:?}", now.gate.warnings);

    // A drop exactly at the limit passes: 2 points against a limit of 2 computes as 2.0000000000000018.
    let at_limit = Thresholds {
        max_baseline_drop: Some(2.0),
        ..Default::default()
    };
    let now = report(&at_limit, Some(("old.json", &better)));
    assert!((-now.baseline.as_ref().unwrap().entries[1].delta * 100.0 - 2.0).abs() < 1e-9);
    assert!(now.gate.passed, "{:?}", now.gate.violations);

    // A limit the gate cannot apply passes, but says so, in the gate and in the report.
    let alone = report(&t, None);
    assert!(alone.gate.passed);
    assert_eq!(
        alone.gate.warnings,
        ["mIoU drop vs baseline: not checked, no baseline report was given"]
    );
    let md = markdown::render(&alone);
    assert!(
        md.contains("mIoU drop vs baseline not checked (no baseline)")
            && md.contains("- mIoU drop vs baseline: not checked"),
        "{md}"
    );
    // A baseline without int8, measured on another split and size: compared where it can be, and
    // every difference named.
    let mut partial = Report::from_json(&text, "old.json").unwrap();
    partial.precisions.truncate(1);
    partial.data.split = "test".into();
    partial.input_hw = Some((512, 1024));
    let now = report(&t, Some(("old.json", &partial)));
    assert_eq!(now.baseline.as_ref().unwrap().entries.len(), 1);
    assert_eq!(
        now.gate.warnings,
        [
            "int8: not compared with the baseline, which has no int8",
            "the baseline was measured on the 'test' split, this report on 'val'",
            "the baseline ran at input 512x1024, this report at each image's own size",
        ]
    );

    let wrong = text.replace("\"schema_version\":1", "\"schema_version\":99");
    let err = Report::from_json(&wrong, "old.json").unwrap_err();
    assert!(
        err.contains("old.json") && err.contains("version 99"),
        "{err}"
    );
    assert!(Report::from_json("{}", "x.json")
        .unwrap_err()
        .contains("x.json"));
}
