//! Sensitivity of each quantizable node (or HRNet block) to INT8, and the search for the smallest set of
//! nodes to keep out of INT8 so the Q/DQ graph loses at most a budget of mIoU against FP32.
//!
//! Candidates are Q/DQ graphs of the same FP32 model and scale table with different
//! [`QdqOptions::exclude_nodes`]; each is scored by an [`Evaluator`] that holds the split and the FP32
//! class maps, so a candidate costs one pass over the split. Candidates of a sensitivity sweep run in
//! parallel (one single-threaded executor each, results gathered in candidate order, so the outcome does
//! not depend on the thread count); the greedy and pruning steps are sequential by nature and run one
//! candidate at a time on all threads.

use super::eval::{executor, Evaluator, Score};
use super::{block_of, module_of, DebugError};
use crate::calib::ScaleTable;
use crate::onnx::error::node_label;
use crate::onnx::Model;
use crate::passes::qdq::{self, QdqOptions};
use crate::runtime::memory;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// How sensitivity and search run.
#[derive(Debug, Clone, Default)]
pub struct SearchOptions {
    /// One unit per HRNet block ([`block_of`]) instead of one per node.
    pub by_block: bool,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// A progress bar on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
    /// The Q/DQ options every candidate starts from (their exclusions stay excluded).
    pub qdq: QdqOptions,
    /// Also measure each unit alone in INT8 in an otherwise unquantized graph (doubles the work).
    pub alone_int8: bool,
}

/// A quantizable node, or a block of them.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Unit {
    /// The node name, or the block name.
    pub name: String,
    pub nodes: Vec<String>,
    /// Op types of its nodes ("Conv", "Conv+Add", ...).
    pub op: String,
    pub module: String,
    /// Floating-point operations of its nodes (one forward).
    pub flops: u64,
}

/// One unit's effect on the split.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Sensitivity {
    pub unit: Unit,
    /// The INT8 graph with this unit alone kept out of INT8.
    pub kept_out: Score,
    /// mIoU and agreement it wins back against the all-INT8 graph.
    pub miou_gain: f64,
    pub agreement_gain: f64,
    /// The unquantized graph with this unit alone in INT8 (when measured).
    pub alone_int8: Option<Score>,
    /// mIoU and agreement it costs against FP32 on its own.
    pub miou_loss_alone: Option<f64>,
    pub agreement_loss_alone: Option<f64>,
}

/// Units ranked, most sensitive first.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SensitivityReport {
    pub images: usize,
    pub fp32: Score,
    pub int8: Score,
    pub units: Vec<Sensitivity>,
    pub candidates: usize,
    pub seconds: f64,
}

/// What [`search`] found.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SearchReport {
    /// The budget in mIoU points (0.5 = 0.005 absolute mIoU).
    pub budget_points: f64,
    pub met: bool,
    pub fp32: Score,
    pub int8: Score,
    /// The Q/DQ graph with the exclusions.
    pub mixed: Score,
    /// Node names kept out of INT8 (for the recipe's `calibration.exclude`), in graph order.
    pub exclude: Vec<String>,
    /// Units added by the greedy pass and removed again by pruning.
    pub pruned: Vec<String>,
    /// Fraction of the model's Conv/MatMul/Gemm FLOPs that still compute in INT8.
    pub int8_flop_fraction: f64,
    /// ... and with no exclusions, for comparison.
    pub int8_flop_fraction_all: f64,
    pub candidates: usize,
    pub seconds: f64,
    pub sensitivity: SensitivityReport,
    /// The result checked on images the search never saw ([`check_held_out`]); the search's own
    /// "met" is measured on the images it chose by, so it is optimistic.
    #[serde(default)]
    pub held_out: Option<HeldOut>,
}

/// All-INT8 and the search's graph scored on held-out images.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct HeldOut {
    pub samples: usize,
    pub fp32: Score,
    pub int8: Score,
    pub mixed: Score,
    /// The budget holds on these images too.
    pub met: bool,
}

/// Scores all-INT8 and the search's exclusions on `held_out` (images the search did not see) and records
/// the result in `report`.
pub fn check_held_out(
    report: &mut SearchReport,
    model: &Model,
    table: &ScaleTable,
    qdq: &QdqOptions,
    held_out: &Evaluator,
) -> Result<(), DebugError> {
    let score = |exclude: &BTreeSet<String>| -> Result<Score, DebugError> {
        let m = qdq_graph(model, table, qdq, exclude)?;
        held_out.score(&m, "held-out check", 0)
    };
    let int8 = score(&BTreeSet::new())?;
    let mixed = score(&report.exclude.iter().cloned().collect())?;
    let fp32 = held_out.fp32;
    report.held_out = Some(HeldOut {
        samples: held_out.samples(),
        fp32,
        int8,
        mixed,
        met: fp32.miou - mixed.miou <= report.budget_points / 100.0 + 1e-12,
    });
    Ok(())
}

fn lowering(e: qdq::QdqError) -> DebugError {
    DebugError::Lowering {
        what: "INT8 (Q/DQ)".into(),
        source: Box::new(e),
    }
}

/// The Q/DQ graph of `model` with `exclude` added to `base`'s exclusions.
pub fn qdq_graph(
    model: &Model,
    table: &ScaleTable,
    base: &QdqOptions,
    exclude: &BTreeSet<String>,
) -> Result<Model, DebugError> {
    let mut m = model.clone();
    let mut opts = base.clone();
    opts.exclude_nodes.extend(exclude.iter().cloned());
    qdq::run(&mut m, table, &opts).map_err(lowering)?;
    Ok(m)
}

/// The nodes the Q/DQ pass quantizes (some input rewired to a dequantized value), in graph order.
pub fn quantized_nodes(
    model: &Model,
    table: &ScaleTable,
    opts: &QdqOptions,
) -> Result<Vec<String>, DebugError> {
    let q = qdq_graph(model, table, opts, &BTreeSet::new())?;
    let after: BTreeMap<&str, &Vec<String>> =
        q.graph.nodes.iter().map(|n| (n.name(), &n.input)).collect();
    Ok(model
        .graph
        .nodes
        .iter()
        .filter(|n| !n.name().is_empty())
        .filter(|n| after.get(n.name()).is_some_and(|i| **i != n.input))
        .map(|n| n.name().to_string())
        .collect())
}

/// Per-node FLOPs (Conv, MatMul, Gemm) from inferred shapes.
fn node_flops(model: &Model) -> BTreeMap<String, u64> {
    let opset = model.opset().unwrap_or(1);
    let Ok(shapes) = crate::shape::infer(&model.graph, opset) else {
        return BTreeMap::new();
    };
    model
        .graph
        .nodes
        .iter()
        .map(|n| {
            let f = crate::exec::flops::of_node(n, &shapes).unwrap_or(0);
            (node_label(n), f)
        })
        .collect()
}

fn units(nodes: &[String], model: &Model, by_block: bool) -> Vec<Unit> {
    let flops = node_flops(model);
    let op_of: BTreeMap<&str, &str> = model
        .graph
        .nodes
        .iter()
        .map(|n| (n.name(), n.op_type()))
        .collect();
    let mut out: Vec<Unit> = Vec::new();
    let mut at: BTreeMap<String, usize> = BTreeMap::new();
    for n in nodes {
        let key = if by_block { block_of(n) } else { n.clone() };
        let i = *at.entry(key.clone()).or_insert_with(|| {
            out.push(Unit {
                module: if by_block { key.clone() } else { module_of(n) },
                name: key,
                nodes: Vec::new(),
                op: String::new(),
                flops: 0,
            });
            out.len() - 1
        });
        let u = &mut out[i];
        u.nodes.push(n.clone());
        u.flops += flops.get(n).copied().unwrap_or(0);
        let op = op_of.get(n.as_str()).copied().unwrap_or("");
        if !u.op.split('+').any(|o| o == op) {
            if !u.op.is_empty() {
                u.op.push('+');
            }
            u.op.push_str(op);
        }
    }
    out
}

fn pool(threads: usize) -> Result<rayon::ThreadPool, DebugError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| DebugError::Exec {
            graph: "candidates".into(),
            source: crate::exec::ExecError::Threads(e.to_string()),
        })
}

fn bar(show: bool, len: u64, msg: &'static str) -> indicatif::ProgressBar {
    let b = if show {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    };
    b.set_message(msg);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} [{elapsed}]")
    {
        b.set_style(style);
    }
    b
}

/// Scores the Q/DQ graph for each exclusion set, in parallel, results in input order.
fn score_all(
    model: &Model,
    table: &ScaleTable,
    eval: &Evaluator,
    opts: &SearchOptions,
    sets: &[BTreeSet<String>],
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Score>, DebugError> {
    // Each candidate in flight holds its Q/DQ graph, its executor's weights and one run's activations:
    // as many at once as fit in memory (W48 at 512x1024: about 1.3 GB each), at most one per thread.
    let threads = match opts.threads {
        0 => rayon::current_num_threads(),
        n => n,
    };
    let weights = crate::onnx::stats::ModelStats::of(model).parameter_bytes;
    let need = 2 * weights + 2 * eval.peak_bytes as u64;
    let at_once = memory::at_once(Some(need), memory::available_bytes(), threads);
    if at_once < threads {
        log::info!(
            "scoring {at_once} candidate(s) at once, not {threads}: each needs about {} MB",
            need >> 20
        );
    }
    // Plain threads (memory::run_bounded): a rayon worker waiting on a candidate's executor would start
    // other candidates meanwhile, each with its own graph and weights.
    let scored = memory::run_bounded(0..sets.len(), at_once, Vec::new, |i, acc| {
        let m = qdq_graph(model, table, &opts.qdq, &sets[i])?;
        acc.push((i, eval.score(&m, "candidate", 1)?));
        progress.inc(1);
        Ok::<_, DebugError>(())
    })?;
    let mut scored: Vec<(usize, Score)> = scored.into_iter().flatten().collect();
    scored.sort_by_key(|(i, _)| *i);
    Ok(scored.into_iter().map(|(_, s)| s).collect())
}

/// Ranks every quantizable unit: the mIoU and agreement it wins back when it alone is kept out of an
/// otherwise INT8 graph (and, with [`SearchOptions::alone_int8`], what it costs alone in INT8).
pub fn sensitivity(
    model: &Model,
    table: &ScaleTable,
    eval: &Evaluator,
    opts: &SearchOptions,
) -> Result<SensitivityReport, DebugError> {
    let started = Instant::now();
    let nodes = quantized_nodes(model, table, &opts.qdq)?;
    let units = units(&nodes, model, opts.by_block);
    let all: BTreeSet<String> = nodes.iter().cloned().collect();
    let mut sets: Vec<BTreeSet<String>> = vec![BTreeSet::new()];
    sets.extend(units.iter().map(|u| u.nodes.iter().cloned().collect()));
    if opts.alone_int8 {
        sets.extend(units.iter().map(|u| {
            let own: BTreeSet<&String> = u.nodes.iter().collect();
            all.iter().filter(|n| !own.contains(n)).cloned().collect()
        }));
    }
    let progress = bar(opts.progress, sets.len() as u64, "sensitivity");
    let scores = score_all(model, table, eval, opts, &sets, &progress)?;
    progress.finish_and_clear();
    let int8 = scores[0];
    let n = units.len();
    let fp32 = eval.fp32;
    let mut ranked: Vec<Sensitivity> = units
        .into_iter()
        .enumerate()
        .map(|(i, unit)| {
            let kept_out = scores[1 + i];
            let alone = opts.alone_int8.then(|| scores[1 + n + i]);
            Sensitivity {
                unit,
                kept_out,
                miou_gain: kept_out.miou - int8.miou,
                agreement_gain: kept_out.agreement - int8.agreement,
                alone_int8: alone,
                miou_loss_alone: alone.map(|a| fp32.miou - a.miou),
                agreement_loss_alone: alone.map(|a| fp32.agreement - a.agreement),
            }
        })
        .collect();
    // Most sensitive first: what keeping it out wins back (agreement breaks mIoU ties: it moves with
    // every pixel), then what it costs alone; graph order last, so the ranking is deterministic.
    let key = |s: &Sensitivity| {
        (
            s.miou_gain + s.miou_loss_alone.unwrap_or(0.0),
            s.agreement_gain + s.agreement_loss_alone.unwrap_or(0.0),
        )
    };
    ranked.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0).then(kb.1.total_cmp(&ka.1))
    });
    Ok(SensitivityReport {
        images: eval.samples(),
        fp32,
        int8,
        units: ranked,
        candidates: sets.len(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Finds a small set of nodes to keep out of INT8 so that the Q/DQ graph's mIoU on the split is at most
/// `budget_points` mIoU points (0.5 = 0.005 absolute) below FP32's: units are added in sensitivity order
/// until the budget is met, then each added unit is dropped again (least sensitive first) when the budget
/// still holds without it. Returns the report and the final Q/DQ graph.
pub fn search(
    model: &Model,
    table: &ScaleTable,
    eval: &Evaluator,
    budget_points: f64,
    opts: &SearchOptions,
) -> Result<(SearchReport, Model), DebugError> {
    if !budget_points.is_finite() || budget_points < 0.0 {
        return Err(DebugError::Budget(budget_points));
    }
    let started = Instant::now();
    let budget = budget_points / 100.0;
    let sens = sensitivity(model, table, eval, opts)?;
    let fp32 = eval.fp32;
    let within = |s: &Score| fp32.miou - s.miou <= budget + 1e-12;
    let mut candidates = sens.candidates;
    let pool = pool(opts.threads)?;
    let score = |ex: &BTreeSet<String>| -> Result<Score, DebugError> {
        let m = qdq_graph(model, table, &opts.qdq, ex)?;
        let exec = executor(&m, "candidate", 0)?;
        pool.install(|| eval.score_exec(&exec, "candidate"))
    };
    let progress = bar(opts.progress, sens.units.len() as u64, "greedy search");
    let mut chosen: Vec<usize> = Vec::new();
    let mut exclude: BTreeSet<String> = BTreeSet::new();
    let mut current = sens.int8;
    for (i, s) in sens.units.iter().enumerate() {
        if within(&current) {
            break;
        }
        chosen.push(i);
        exclude.extend(s.unit.nodes.iter().cloned());
        current = score(&exclude)?;
        candidates += 1;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let progress = bar(opts.progress, chosen.len() as u64, "pruning");
    let mut pruned = Vec::new();
    if within(&current) {
        for &i in chosen.clone().iter().rev() {
            let nodes = &sens.units[i].unit.nodes;
            let trial: BTreeSet<String> = exclude
                .iter()
                .filter(|n| !nodes.contains(n))
                .cloned()
                .collect();
            let s = score(&trial)?;
            candidates += 1;
            progress.inc(1);
            if within(&s) {
                exclude = trial;
                current = s;
                chosen.retain(|&c| c != i);
                pruned.push(sens.units[i].unit.name.clone());
            }
        }
    }
    progress.finish_and_clear();
    let mixed = qdq_graph(model, table, &opts.qdq, &exclude)?;
    let flops = node_flops(model);
    let total: u64 = flops.values().sum();
    let quantized_after = quantized_nodes(model, table, &{
        let mut o = opts.qdq.clone();
        o.exclude_nodes.extend(exclude.iter().cloned());
        o
    })?;
    let fraction = |nodes: &[String]| {
        let f: u64 = nodes
            .iter()
            .map(|n| flops.get(n).copied().unwrap_or(0))
            .sum();
        f as f64 / total.max(1) as f64
    };
    let all_nodes: Vec<String> = sens
        .units
        .iter()
        .flat_map(|u| u.unit.nodes.clone())
        .collect();
    let order: BTreeMap<&str, usize> = model
        .graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name(), i))
        .collect();
    let mut exclude: Vec<String> = exclude.into_iter().collect();
    exclude.sort_by_key(|n| order.get(n.as_str()).copied().unwrap_or(usize::MAX));
    let report = SearchReport {
        budget_points,
        met: within(&current),
        fp32,
        int8: sens.int8,
        mixed: current,
        exclude,
        pruned,
        int8_flop_fraction: fraction(&quantized_after),
        int8_flop_fraction_all: fraction(&all_nodes),
        candidates,
        seconds: started.elapsed().as_secs_f64(),
        sensitivity: sens,
        held_out: None,
    };
    Ok((report, mixed))
}

/// The sensitivity ranking as a table (the first `top` units).
pub fn describe_sensitivity(r: &SensitivityReport, top: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "sensitivity on {} images ({} candidates, {:.1} s): fp32 mIoU {:.4}, all-int8 mIoU {:.4} (agreement {:.4})",
        r.images, r.candidates, r.seconds, r.fp32.miou, r.int8.miou, r.int8.agreement
    );
    let _ = writeln!(
        s,
        "  {:>4}  {:>9}  {:>9}  {:>10}  {:>10}  {:>8}  unit (op) [module]",
        "rank", "mIoU gain", "agr gain", "mIoU alone", "agr alone", "GFLOP"
    );
    for (i, u) in r.units.iter().take(top).enumerate() {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.4}"));
        let _ = writeln!(
            s,
            "  {:>4}  {:>+9.4}  {:>+9.4}  {:>10}  {:>10}  {:>8.3}  {} ({}) [{}]",
            i + 1,
            u.miou_gain,
            u.agreement_gain,
            opt(u.miou_loss_alone.map(|v| -v)),
            opt(u.agreement_loss_alone.map(|v| -v)),
            u.unit.flops as f64 / 1e9,
            u.unit.name,
            u.unit.op,
            u.unit.module
        );
    }
    s
}

/// The search's outcome as text, with the recipe lines to reuse its exclusions.
pub fn describe_search(r: &SearchReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "mixed precision: budget {} mIoU points ({}), fp32 mIoU {:.4}, all-int8 {:.4}, with {} node(s) kept out of INT8 {:.4} (agreement with fp32 {:.4}); {:.1}% of the FLOPs stay INT8 ({:.1}% with none kept out); {} candidates in {:.1} s",
        r.budget_points,
        if r.met { "met" } else { "NOT met" },
        r.fp32.miou,
        r.int8.miou,
        r.exclude.len(),
        r.mixed.miou,
        r.mixed.agreement,
        100.0 * r.int8_flop_fraction,
        100.0 * r.int8_flop_fraction_all,
        r.candidates,
        r.seconds
    );
    if let Some(h) = &r.held_out {
        let _ = writeln!(
            s,
            "held out ({} images the search did not see): fp32 mIoU {:.4}, all-int8 {:.4}, with the exclusions {:.4} (agreement with fp32 {:.4}): budget {}",
            h.samples,
            h.fp32.miou,
            h.int8.miou,
            h.mixed.miou,
            h.mixed.agreement,
            if h.met { "met" } else { "NOT met" }
        );
    }
    if !r.exclude.is_empty() {
        let _ = writeln!(s, "recipe lines (calibration section):\n  exclude:");
        for n in &r.exclude {
            let _ = writeln!(
                s,
                "    - \"{}\"",
                n.replace('\\', "\\\\").replace('"', "\\\"")
            );
        }
    }
    s
}
