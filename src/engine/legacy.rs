//! Serving the legacy calibration cache to TensorRT 10.x's `IInt8EntropyCalibrator2` (the weakly typed
//! INT8 path, `engine.legacy: true`). The calibrator never sees images: `getBatch` says there are none and
//! `readCalibrationCache` hands TensorRT the bytes prepared here.
//!
//! The cache `compile` writes (`calib::cache`) is checked and re-emitted for the TensorRT that builds:
//! its header carries that TensorRT's version (the scales, amax / 127, do not depend on it), its tensors
//! are checked against the graph being built, and the result is byte-for-byte what `calib::cache::write`
//! makes of the same table.

use super::manifest::TrtVersion;
use super::EngineError;
use crate::calib::cache;
use std::collections::BTreeSet;
use std::path::Path;

/// The cache as the calibrator will serve it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedCache {
    /// The bytes `readCalibrationCache` returns.
    pub bytes: Vec<u8>,
    /// Tensors with a scale that the graph has.
    pub served: usize,
    /// Graph activations without a scale: TensorRT leaves them out of INT8 (it warns per tensor).
    pub missing: Vec<String>,
    /// Scales for tensors the graph does not have (ignored by TensorRT).
    pub unknown: Vec<String>,
}

/// Reads `path` (a cache `compile` or `calibrate` wrote), checks it and prepares it for TensorRT
/// `version` building a graph whose activations are `graph_tensors`. A cache that names none of the
/// graph's tensors belongs to another graph and is refused.
pub fn serve(
    path: &Path,
    version: TrtVersion,
    graph_tensors: &BTreeSet<String>,
) -> Result<ServedCache, EngineError> {
    let err = |reason: String| EngineError::LegacyCache {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed = cache::read(&text).map_err(|e| err(e.to_string()))?;
    if parsed.algorithm != cache::ALGORITHM {
        return Err(err(format!(
            "its algorithm is '{}', but the legacy calibrator is {} (IInt8EntropyCalibrator2), which TensorRT would make recalibrate without data",
            parsed.algorithm,
            cache::ALGORITHM
        )));
    }
    if parsed.scales.is_empty() {
        return Err(err("it holds no scales".into()));
    }
    let table = parsed.to_table();
    let names: BTreeSet<&String> = table.tensors.keys().collect();
    let served = names.iter().filter(|n| graph_tensors.contains(**n)).count();
    if served == 0 {
        let example = names.iter().next().map(|s| s.as_str()).unwrap_or("");
        return Err(err(format!(
            "none of its {} tensors (e.g. '{example}') is in the graph being built: it was made for another graph; run `ocrnet-edge calibrate` on this recipe",
            names.len()
        )));
    }
    let missing: Vec<String> = graph_tensors
        .iter()
        .filter(|t| !table.tensors.contains_key(*t))
        .cloned()
        .collect();
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| !graph_tensors.contains(**n))
        .map(|n| n.to_string())
        .collect();
    Ok(ServedCache {
        bytes: cache::write(&table, version.code()).into_bytes(),
        served,
        missing,
        unknown,
    })
}

pub use crate::calib::coverage::graph_activations;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calib::ScaleTable;

    fn graph(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn serves_what_calib_cache_wrote_restamped_for_the_running_tensorrt() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = ScaleTable::default();
        t.insert("input", 2.64);
        t.insert("/conv1/Conv_output_0", 12.7);
        t.insert("gone", 1.0);
        let written = cache::write(&t, cache::TRT_10_3);
        let p = dir.path().join("calibration.cache");
        std::fs::write(&p, &written).unwrap();

        let g = graph(&["input", "/conv1/Conv_output_0", "/relu/Relu_output_0"]);
        // Same version: the served bytes are exactly the file calib::cache wrote.
        let s = serve(&p, TrtVersion::from_code(cache::TRT_10_3), &g).unwrap();
        assert_eq!(String::from_utf8(s.bytes.clone()).unwrap(), written);
        assert_eq!(s.served, 2);
        assert_eq!(s.missing, vec!["/relu/Relu_output_0".to_string()]);
        assert_eq!(s.unknown, vec!["gone".to_string()]);

        // Another 10.x: only the header changes, every scale keeps its bits.
        let s = serve(&p, TrtVersion::from_code(100700), &g).unwrap();
        let text = String::from_utf8(s.bytes).unwrap();
        assert!(
            text.starts_with("TRT-100700-EntropyCalibration2\n"),
            "{text}"
        );
        let back = cache::read(&text).unwrap();
        let orig = cache::read(&written).unwrap();
        assert_eq!(back.scales, orig.scales);
        assert_eq!(
            back.scales["/conv1/Conv_output_0"].to_bits(),
            (12.7f32 / 127.0).to_bits()
        );
    }

    #[test]
    fn refuses_caches_it_cannot_serve() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.cache");
        let g = graph(&["input"]);
        let v = TrtVersion::from_code(100300);

        std::fs::write(&p, "TRT-100300-MinMaxCalibration\ninput: 3f800000\n").unwrap();
        let e = serve(&p, v, &g).unwrap_err().to_string();
        assert!(
            e.contains("MinMaxCalibration") && e.contains("c.cache"),
            "{e}"
        );

        std::fs::write(&p, "TRT-100300-EntropyCalibration2\nother: 3f800000\n").unwrap();
        let e = serve(&p, v, &g).unwrap_err().to_string();
        assert!(e.contains("another graph"), "{e}");

        std::fs::write(&p, "TRT-100300-EntropyCalibration2\n").unwrap();
        assert!(serve(&p, v, &g)
            .unwrap_err()
            .to_string()
            .contains("no scales"));

        std::fs::write(&p, "not a cache\n").unwrap();
        assert!(serve(&p, v, &g).unwrap_err().to_string().contains("line 1"));

        let e = serve(&dir.path().join("absent"), v, &g)
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent"), "{e}");
    }
}
