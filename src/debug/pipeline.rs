//! What the `compile`/`calibrate` pipeline asks of the debugger: the Q/DQ options of a recipe, with the
//! mixed-precision search run when the recipe sets `calibration.miou_budget`.

use super::eval::{hold_out, load_split, EvalSample, Evaluator};
use super::search::{check_held_out, search, SearchOptions, SearchReport};
use super::DebugError;
use crate::calib::ScaleTable;
use crate::onnx::Model;
use crate::passes::qdq::QdqOptions;
use crate::recipe::Recipe;

/// The labelled split the search and the sensitivity ranking are measured on (calibration reads
/// `train`, so this is held out from it).
pub const SEARCH_SPLIT: &str = "val";

/// File the pipeline writes the search's report to.
pub const MIXED_PRECISION_JSON: &str = "mixed_precision.json";

/// Of the `val` split, every `HOLD_OUT_EVERY`-th image is kept from the search and checks its result.
pub const HOLD_OUT_EVERY: usize = 3;

/// The evaluator on the recipe's labelled `val` split, at the recipe's input size.
pub fn recipe_evaluator(recipe: &Recipe, fp32: &Model) -> Result<Evaluator, DebugError> {
    let samples = recipe_samples(recipe)?;
    Evaluator::new(fp32, samples, recipe.file.num_classes as usize, 0)
}

fn recipe_samples(recipe: &Recipe) -> Result<Vec<EvalSample>, DebugError> {
    let root = recipe
        .calibration_data
        .as_ref()
        .ok_or_else(|| DebugError::NoSplit {
            root: "(the recipe has no calibration data)".into(),
            split: SEARCH_SPLIT.into(),
        })?;
    let hw = match recipe.shapes.opt.as_slice() {
        [_, _, h, w] => (*h as u32, *w as u32),
        other => {
            return Err(DebugError::Shape(format!(
                "{}: input shape {other:?} is not NCHW",
                recipe.source_name
            )))
        }
    };
    // The images compile scores accuracy on (`accuracy.images`; the recipe refuses 0 with a budget).
    let limit = recipe.file.accuracy.images as usize;
    if limit == 0 {
        return Err(DebugError::NoImages {
            recipe: recipe.source_name.clone(),
        });
    }
    let samples = load_split(root, SEARCH_SPLIT, hw, &recipe.input_name, limit).map_err(|e| {
        DebugError::Data {
            root: root.display().to_string(),
            source: Box::new(e),
        }
    })?;
    if samples.is_empty() {
        return Err(DebugError::NoSplit {
            root: root.display().to_string(),
            split: SEARCH_SPLIT.into(),
        });
    }
    Ok(samples)
}

/// The Q/DQ options for `model` under `recipe`: its `calibration.exclude`, plus the nodes the search
/// keeps out of INT8 when `calibration.miou_budget` is set (then also the search's report).
pub fn recipe_qdq_options(
    recipe: &Recipe,
    model: &Model,
    table: &ScaleTable,
    progress: bool,
) -> Result<(QdqOptions, Option<SearchReport>), DebugError> {
    let mut opts = QdqOptions::default();
    let Some(spec) = &recipe.file.calibration else {
        return Ok((opts, None));
    };
    opts.exclude_nodes.extend(spec.exclude.iter().cloned());
    let Some(budget) = spec.miou_budget else {
        return Ok((opts, None));
    };
    // The search chooses on two thirds of the split; the rest checks that its result generalises.
    let classes = recipe.file.num_classes as usize;
    let (chosen_on, held) = hold_out(recipe_samples(recipe)?, HOLD_OUT_EVERY);
    let eval = Evaluator::new(model, chosen_on, classes, 0)?;
    let search_opts = SearchOptions {
        progress,
        qdq: opts.clone(),
        ..Default::default()
    };
    let (mut report, _) = search(model, table, &eval, budget, &search_opts)?;
    if !held.is_empty() {
        let held = Evaluator::new(model, held, classes, 0)?;
        check_held_out(&mut report, model, table, &opts, &held)?;
    }
    opts.exclude_nodes.extend(report.exclude.iter().cloned());
    Ok((opts, Some(report)))
}
