//! TensorRT's legacy calibration cache: the file an `IInt8EntropyCalibrator2` reads back from
//! `readCalibrationCache`, for users who still build weakly typed INT8 engines on TensorRT 10.x.
//!
//! ```text
//! TRT-100300-EntropyCalibration2
//! input: 3c010a14
//! /conv1/Conv_output_0: 3d7e2a1b
//! ```
//!
//! The first line names the TensorRT version (`NV_TENSORRT_VERSION`, major*10000 + minor*100 + patch
//! from 10.0 on) and the algorithm; then one `name: hex` line per tensor, where hex is the big-endian
//! IEEE-754 bit pattern of the float32 scale = amax / 127 (`3f800000` = 1.0). The header always says
//! EntropyCalibration2 whatever method produced the numbers: a calibrator only replays the scales, and
//! TensorRT matches the header against the calibrator class reading it. Lines are sorted by tensor name
//! so the same table always gives the same bytes.

use super::{CalibError, ScaleTable, TensorScale};
use std::collections::BTreeMap;

/// `NV_TENSORRT_VERSION` of TensorRT 10.3.0 (JetPack 6.1/6.2).
pub const TRT_10_3: u32 = 100300;

/// The algorithm name in the header.
pub const ALGORITHM: &str = "EntropyCalibration2";

/// The cache text for `table`.
pub fn write(table: &ScaleTable, trt_version: u32) -> String {
    let mut out = format!("TRT-{trt_version}-{ALGORITHM}\n");
    for (name, s) in &table.tensors {
        out.push_str(&format!("{name}: {:08x}\n", s.scale.to_bits()));
    }
    out
}

/// A parsed cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Cache {
    pub trt_version: u32,
    pub algorithm: String,
    /// Tensor name -> scale.
    pub scales: BTreeMap<String, f32>,
}

impl Cache {
    /// The scales as a table (amax = scale * 127).
    pub fn to_table(&self) -> ScaleTable {
        ScaleTable {
            method: format!("cache:{}", self.algorithm),
            images: 0,
            tensors: self
                .scales
                .iter()
                .map(|(n, &s)| {
                    (
                        n.clone(),
                        TensorScale {
                            amax: s * 127.0,
                            scale: s,
                            max: None,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Parses a cache. Tensor names may contain ':' (the value is after the last one); a repeated name, a
/// malformed line or a scale that is not a positive finite float is an error naming the line.
pub fn read(text: &str) -> Result<Cache, CalibError> {
    let bad =
        |line: usize, reason: String| CalibError::Format(format!("cache line {line}: {reason}"));
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let (_, header) = lines
        .next()
        .ok_or_else(|| CalibError::Format("empty calibration cache".into()))?;
    let rest = header
        .strip_prefix("TRT-")
        .ok_or_else(|| bad(1, format!("header '{header}' does not start with 'TRT-'")))?;
    let (ver, algorithm) = rest.split_once('-').ok_or_else(|| {
        bad(
            1,
            format!("header '{header}' is not TRT-<version>-<algorithm>"),
        )
    })?;
    let trt_version = ver
        .parse::<u32>()
        .map_err(|_| bad(1, format!("version '{ver}' is not a number")))?;
    let mut scales = BTreeMap::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let (name, hex) = line
            .rsplit_once(": ")
            .ok_or_else(|| bad(n, format!("'{line}' is not 'name: hex'")))?;
        let bits = u32::from_str_radix(hex.trim(), 16)
            .map_err(|_| bad(n, format!("'{hex}' is not a hex float32")))?;
        let s = f32::from_bits(bits);
        if !(s.is_finite() && s > 0.0) {
            return Err(CalibError::Tensor {
                tensor: name.to_string(),
                reason: format!("cache line {n}: scale {s} is not a positive finite number"),
            });
        }
        if scales.insert(name.to_string(), s).is_some() {
            return Err(CalibError::Tensor {
                tensor: name.to_string(),
                reason: format!("cache line {n}: listed twice"),
            });
        }
    }
    Ok(Cache {
        trt_version,
        algorithm: algorithm.to_string(),
        scales,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_round_trip() {
        let mut t = ScaleTable::default();
        t.insert("b", 127.0); // scale 1.0
        t.insert("a:odd name", 254.0); // scale 2.0
        let text = write(&t, TRT_10_3);
        assert_eq!(
            text,
            "TRT-100300-EntropyCalibration2\na:odd name: 40000000\nb: 3f800000\n"
        );
        let c = read(&text).unwrap();
        assert_eq!(c.trt_version, TRT_10_3);
        assert_eq!(c.algorithm, "EntropyCalibration2");
        assert_eq!(c.scales["b"], 1.0);
        assert_eq!(c.scales["a:odd name"], 2.0);
        let back = c.to_table();
        assert_eq!(back.get("b").unwrap().scale, t.get("b").unwrap().scale);
        assert_eq!(write(&back, TRT_10_3), text);
    }

    #[test]
    fn bad_caches_are_refused_with_the_line() {
        assert!(read("").is_err());
        assert!(read("TRT8601-x\n")
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        let e = read("TRT-8601-EntropyCalibration2\nx: zz\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = read("TRT-8601-EntropyCalibration2\nx: 00000000\n").unwrap_err();
        assert!(e.to_string().contains("'x'"), "{e}");
        let e = read("TRT-8601-EntropyCalibration2\nx: 3f800000\nx: 3f800000\n").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}
