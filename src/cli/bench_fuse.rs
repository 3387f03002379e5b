//! `ocrnet-edge bench fuse`: our `fuse` (load + simplify + fuse + validate + save) next to the same fusion
//! done with onnx-graphsurgeon in Python (`models/bench/fuse_graphsurgeon.py`: load, fold constants, match,
//! replace, clean up, save), each a child process measured alike (wall time, peak RSS), warm page cache.

use anyhow::Context;
use ocrnet_edge::bench::{repeat, warm_page_cache, Summary};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

/// The peer script, embedded so the benchmark works from any folder.
const GRAPHSURGEON_FUSE: &str = include_str!("../../models/bench/fuse_graphsurgeon.py");

pub fn fuse(model: &Path, runs: usize, python: &str, json: bool) -> anyhow::Result<ExitCode> {
    let runs = runs.max(1);
    let file_bytes =
        warm_page_cache(model).with_context(|| format!("reading {}", model.display()))?;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let out = scratch.path().join("out.onnx");
    let exe = std::env::current_exe().context("locating ocrnet-edge")?;

    let mut rows = Vec::new();
    // Python's onnx.save never fsyncs: the --no-fsync row is like for like, the default row shows what
    // durability costs.
    for (name, extra) in [
        ("ocrnet-edge fuse (load + simplify + fuse + save)", &[][..]),
        ("ocrnet-edge fuse --no-fsync", &["--no-fsync"][..]),
    ] {
        let runs = repeat(runs, &out, &|| {
            let mut c = Command::new(&exe);
            c.arg("-q")
                .arg("fuse")
                .arg(model)
                .arg("-o")
                .arg(&out)
                .args(extra);
            c.stdout(Stdio::null());
            c
        })
        .with_context(|| format!("running {name}"))?;
        rows.push(Summary::of(name, &runs));
    }
    let peer_available = Command::new(python)
        .args(["-c", "import onnx, onnx_graphsurgeon"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let peer = if peer_available {
        let runs = repeat(runs, &out, &|| {
            let mut c = Command::new(python);
            c.arg("-c").arg(GRAPHSURGEON_FUSE).arg(model).arg(&out);
            c.stdout(Stdio::null());
            c
        })
        .context("running the onnx-graphsurgeon fusion")?;
        Some(Summary::of("python onnx-graphsurgeon (fold + fuse)", &runs))
    } else {
        None
    };
    rows.extend(peer.clone());

    if super::bench::emit(model, file_bytes, runs, &rows, peer.is_some(), json, 50)? {
        return Ok(ExitCode::SUCCESS);
    }
    match &peer {
        Some(py) => println!(
            "speed-up vs onnx-graphsurgeon (median): {:.1}x durable, {:.1}x without fsync (goal 10x); peak RSS {:.2}x the file (goal < 1.3x)",
            py.median_seconds / rows[0].median_seconds,
            py.median_seconds / rows[1].median_seconds,
            rows[0].peak_rss_bytes as f64 / file_bytes as f64
        ),
        None => println!(
            "peer not measured: `{python} -c 'import onnx, onnx_graphsurgeon'` failed (pip install onnx-graphsurgeon)"
        ),
    }
    Ok(ExitCode::SUCCESS)
}
