//! `ocrnet-edge bench io`: our load/save and load/simplify/save next to Python's `onnx.load` + `onnx.save`,
//! each a child process measured alike (wall time, peak RSS), the page cache warmed first.

use anyhow::Context;
use ocrnet_edge::bench::{Run, Summary};
use ocrnet_edge::onnx::stats::human_bytes;
use std::path::Path;
use std::process::{Command, ExitCode};

const PYTHON_ROUND_TRIP: &str =
    "import onnx, sys\nm = onnx.load(sys.argv[1])\nonnx.save(m, sys.argv[2])\n";

pub fn io(model: &Path, runs: usize, python: &str, json: bool) -> anyhow::Result<ExitCode> {
    let runs = runs.max(1);
    let file_bytes = std::fs::metadata(model)
        .with_context(|| format!("reading {}", model.display()))?
        .len();
    ocrnet_edge::bench::warm_page_cache(model)
        .with_context(|| format!("reading {}", model.display()))?;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let out = scratch.path().join("out.onnx");
    let exe = std::env::current_exe().context("locating ocrnet-edge")?;

    let repeat = |make: &dyn Fn() -> Command| -> anyhow::Result<Vec<Run>> {
        Ok(ocrnet_edge::bench::repeat(runs, &out, make)?)
    };
    // Ours with and without waiting for the disk: Python's onnx.save never fsyncs, so the --no-fsync rows
    // are the like-for-like comparison; the default rows show what durability costs on this disk.
    let mut rows = Vec::new();
    for (name, args) in [
        ("ocrnet-edge convert (load + save)", &["convert"][..]),
        (
            "ocrnet-edge convert --no-fsync",
            &["convert", "--no-fsync"][..],
        ),
        (
            "ocrnet-edge simplify (load + simplify + save)",
            &["simplify"][..],
        ),
        (
            "ocrnet-edge simplify --no-fsync",
            &["simplify", "--no-fsync"][..],
        ),
    ] {
        let runs = repeat(&|| {
            let mut c = Command::new(&exe);
            c.arg("-q").args(args).arg(model).arg("-o").arg(&out);
            c
        })
        .with_context(|| format!("running {name}"))?;
        rows.push(Summary::of(name, &runs));
    }
    let python_available = Command::new(python)
        .args(["-c", "import onnx"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let peer = if python_available {
        let runs = repeat(&|| {
            let mut c = Command::new(python);
            c.arg("-c").arg(PYTHON_ROUND_TRIP).arg(model).arg(&out);
            c
        })?;
        Some(Summary::of("python onnx.load + onnx.save", &runs))
    } else {
        None
    };
    rows.extend(peer.clone());

    if emit(model, file_bytes, runs, &rows, peer.is_some(), json, 48)? {
        return Ok(ExitCode::SUCCESS);
    }
    match &peer {
        Some(py) => {
            let ratios: Vec<String> = rows[..4]
                .iter()
                .map(|r| format!("{:.1}x", py.median_seconds / r.median_seconds))
                .collect();
            println!(
                "speed-up vs python (median): convert {} (no fsync {}), simplify {} (no fsync {})",
                ratios[0], ratios[1], ratios[2], ratios[3]
            );
        }
        None => println!("peer not measured: `{python} -c 'import onnx'` failed"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The output both file benchmarks share: the results as JSON (returns true: nothing more to print), or
/// a heading and the table.
pub(super) fn emit(
    model: &Path,
    file_bytes: u64,
    runs: usize,
    rows: &[Summary],
    peer_available: bool,
    json: bool,
    name_width: usize,
) -> anyhow::Result<bool> {
    if json {
        let report = serde_json::json!({
            "model": model.display().to_string(),
            "model_bytes": file_bytes,
            "results": rows,
            "peer_available": peer_available,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(true);
    }
    println!(
        "{} ({}), {runs} runs each, warm page cache",
        model.display(),
        human_bytes(file_bytes)
    );
    print_rows(rows, file_bytes, name_width);
    Ok(false)
}

/// The table both file benchmarks print: median and best time, peak RSS, and RSS relative to the file.
pub(super) fn print_rows(rows: &[Summary], file_bytes: u64, name_width: usize) {
    println!(
        "{:<name_width$} {:>10} {:>10} {:>12} {:>9}",
        "", "median s", "min s", "peak RSS", "RSS/file"
    );
    for r in rows {
        println!(
            "{:<name_width$} {:>10.3} {:>10.3} {:>12} {:>9.2}",
            r.name,
            r.median_seconds,
            r.min_seconds,
            human_bytes(r.peak_rss_bytes),
            r.peak_rss_bytes as f64 / file_bytes as f64
        );
    }
}
