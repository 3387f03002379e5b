//! `ocrnet-edge bench io`: our load/save and load/simplify/save next to Python's `onnx.load` + `onnx.save`,
//! each a child process measured alike (wall time, peak RSS), the page cache warmed first.

use anyhow::Context;
use ocrnet_edge::bench::{measure, Run, Summary};
use ocrnet_edge::onnx::stats::human_bytes;
use std::path::Path;
use std::process::{Command, ExitCode};

const PYTHON_ROUND_TRIP: &str = "import onnx, sys\nm = onnx.load(sys.argv[1])\nonnx.save(m, sys.argv[2])\n";

pub fn io(model: &Path, runs: usize, python: &str, json: bool) -> anyhow::Result<ExitCode> {
    let runs = runs.max(1);
    let file_bytes = std::fs::metadata(model).with_context(|| format!("reading {}", model.display()))?.len();
    // Read the file once so every contender starts from a warm page cache.
    std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let scratch = tempfile::tempdir().context("creating a scratch folder")?;
    let out = scratch.path().join("out.onnx");
    let exe = std::env::current_exe().context("locating ocrnet-edge")?;

    let repeat = |make: &dyn Fn() -> Command| -> anyhow::Result<Vec<Run>> {
        (0..runs).map(|_| measure(&mut make()).map_err(anyhow::Error::from)).collect()
    };
    let ours_convert = repeat(&|| {
        let mut c = Command::new(&exe);
        c.arg("-q").arg("convert").arg(model).arg("-o").arg(&out);
        c
    })
    .context("running ocrnet-edge convert")?;
    let ours_simplify = repeat(&|| {
        let mut c = Command::new(&exe);
        c.arg("-q").arg("simplify").arg(model).arg("-o").arg(&out);
        c
    })
    .context("running ocrnet-edge simplify")?;
    let python_available = Command::new(python)
        .args(["-c", "import onnx"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let peer = if python_available {
        Some(repeat(&|| {
            let mut c = Command::new(python);
            c.arg("-c").arg(PYTHON_ROUND_TRIP).arg(model).arg(&out);
            c
        })?)
    } else {
        None
    };

    let mut rows = vec![
        Summary::of("ocrnet-edge convert (load + save)", &ours_convert),
        Summary::of("ocrnet-edge simplify (load + simplify + save)", &ours_simplify),
    ];
    if let Some(peer) = &peer {
        rows.push(Summary::of("python onnx.load + onnx.save", peer));
    }
    if json {
        let report = serde_json::json!({
            "model": model.display().to_string(),
            "model_bytes": file_bytes,
            "results": rows,
            "peer_available": peer.is_some(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} ({}), {runs} runs each, warm page cache", model.display(), human_bytes(file_bytes));
    println!("{:<48} {:>10} {:>10} {:>12} {:>9}", "", "median s", "min s", "peak RSS", "RSS/file");
    for r in &rows {
        println!(
            "{:<48} {:>10.3} {:>10.3} {:>12} {:>9.2}",
            r.name,
            r.median_seconds,
            r.min_seconds,
            human_bytes(r.peak_rss_bytes),
            r.peak_rss_bytes as f64 / file_bytes as f64
        );
    }
    match rows.get(2) {
        Some(py) => {
            println!("speed-up vs python: convert {:.1}x, simplify {:.1}x", py.median_seconds / rows[0].median_seconds, py.median_seconds / rows[1].median_seconds)
        }
        None => println!("peer not measured: `{python} -c 'import onnx'` failed"),
    }
    Ok(ExitCode::SUCCESS)
}
