//! The manifest beside every engine (`model.fp16.engine.json`): which TensorRT and which device built it,
//! on which JetPack/L4T release, in which precision, from which inputs (hashed) with which settings, and
//! the hash of the engine itself. A load reads it first and refuses an engine built by another TensorRT or
//! for another device, or whose bytes are not the ones the manifest names.

use super::settings::BuildSettings;
use super::EngineError;
use crate::fsutil;
use crate::manifest::FileEntry;
use crate::recipe::Precision;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const ENGINE_MANIFEST_SCHEMA: &str = "ocrnet-edge.engine/1";
/// Where the L4T release of a Jetson is written.
pub const NV_TEGRA_RELEASE: &str = "/etc/nv_tegra_release";

/// A TensorRT version as `getInferLibVersion()` / `NV_TENSORRT_VERSION` encode it from 10.0 on:
/// major * 10000 + minor * 100 + patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TrtVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl TrtVersion {
    pub fn from_code(code: u32) -> Self {
        TrtVersion {
            major: code / 10000,
            minor: code / 100 % 100,
            patch: code % 100,
        }
    }

    /// The number a legacy calibration cache's header carries (`TRT-100300-...`).
    pub fn code(&self) -> u32 {
        self.major * 10000 + self.minor * 100 + self.patch
    }
}

impl std::fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The GPU an engine was built on (engines are specific to the compute capability; TensorRT also tunes
/// for the particular device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    /// Compute capability, e.g. [8, 7] for Orin.
    pub compute_capability: [u32; 2],
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b] = self.compute_capability;
        write!(f, "{} (sm_{a}{b})", self.name)
    }
}

/// Where an engine is built or run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub tensorrt: TrtVersion,
    pub device: Device,
    /// The L4T release, e.g. "36.4.3", on a Jetson.
    pub l4t: Option<String>,
    /// The JetPack release that L4T belongs to, where known.
    pub jetpack: Option<String>,
}

impl Platform {
    /// A platform with the L4T/JetPack release of this machine, where it has one.
    pub fn with_release(tensorrt: TrtVersion, device: Device) -> Self {
        let l4t = std::fs::read_to_string(NV_TEGRA_RELEASE)
            .ok()
            .and_then(|t| parse_nv_tegra_release(&t));
        let jetpack = l4t.as_deref().and_then(jetpack_of).map(str::to_string);
        Platform {
            tensorrt,
            device,
            l4t,
            jetpack,
        }
    }
}

/// The L4T release from `/etc/nv_tegra_release`, whose first line reads
/// `# R36 (release), REVISION: 4.3, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ...` → "36.4.3".
pub fn parse_nv_tegra_release(text: &str) -> Option<String> {
    let line = text.lines().next()?.trim().trim_start_matches('#').trim();
    let major = line.strip_prefix('R')?.split_whitespace().next()?;
    if major.is_empty() || !major.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let revision = line
        .split(',')
        .find_map(|f| f.trim().strip_prefix("REVISION:"))?
        .trim();
    if revision.is_empty() || !revision.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    Some(format!("{major}.{revision}"))
}

/// JetPack releases of the L4T versions this project targets (NVIDIA's JetPack archive).
pub fn jetpack_of(l4t: &str) -> Option<&'static str> {
    Some(match l4t {
        "36.2.0" => "6.0 DP",
        "36.3.0" => "6.0",
        "36.4.0" => "6.1",
        "36.4.3" => "6.2",
        "36.4.4" => "6.2.1",
        "35.4.1" => "5.1.2",
        "35.5.0" => "5.1.3",
        "35.6.0" => "5.1.4",
        _ => return None,
    })
}

/// The plugin code an engine's plugin layers were built with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginLibrary {
    /// How the plugins got to TensorRT: "linked" (compiled into this binary and registered explicitly).
    pub origin: String,
    /// BLAKE3 of the plugin and kernel sources compiled in (see [`plugin_library`]).
    pub blake3: String,
}

/// The sources of the OCR plugin library, as compiled into this binary.
const PLUGIN_SOURCES: &[(&str, &[u8])] = &[
    (
        "cpp/plugin/common/ocrPluginCommon.h",
        include_bytes!("../../cpp/plugin/common/ocrPluginCommon.h"),
    ),
    (
        "cpp/plugin/common/ocrPluginCommon.cpp",
        include_bytes!("../../cpp/plugin/common/ocrPluginCommon.cpp"),
    ),
    (
        "cpp/plugin/ocrSpatialGatherPlugin/ocrSpatialGatherPlugin.h",
        include_bytes!("../../cpp/plugin/ocrSpatialGatherPlugin/ocrSpatialGatherPlugin.h"),
    ),
    (
        "cpp/plugin/ocrSpatialGatherPlugin/ocrSpatialGatherPlugin.cpp",
        include_bytes!("../../cpp/plugin/ocrSpatialGatherPlugin/ocrSpatialGatherPlugin.cpp"),
    ),
    (
        "cpp/plugin/ocrObjectAttentionPlugin/ocrObjectAttentionPlugin.h",
        include_bytes!("../../cpp/plugin/ocrObjectAttentionPlugin/ocrObjectAttentionPlugin.h"),
    ),
    (
        "cpp/plugin/ocrObjectAttentionPlugin/ocrObjectAttentionPlugin.cpp",
        include_bytes!("../../cpp/plugin/ocrObjectAttentionPlugin/ocrObjectAttentionPlugin.cpp"),
    ),
    (
        "cpp/plugin/ocrPluginLibrary.cpp",
        include_bytes!("../../cpp/plugin/ocrPluginLibrary.cpp"),
    ),
    (
        "cpp/ocr/ocrGatherKernel.cu",
        include_bytes!("../../cpp/ocr/ocrGatherKernel.cu"),
    ),
    (
        "cpp/ocr/ocrAttentionKernel.cu",
        include_bytes!("../../cpp/ocr/ocrAttentionKernel.cu"),
    ),
    (
        "cpp/ocr/ocrCudaCommon.cuh",
        include_bytes!("../../cpp/ocr/ocrCudaCommon.cuh"),
    ),
    (
        "cpp/ocr/ocr_params.cpp",
        include_bytes!("../../cpp/ocr/ocr_params.cpp"),
    ),
];

/// The identity of the plugin library compiled into this binary: a hash over each source's path and bytes.
/// Any change to a plugin or kernel changes it, and with it the rebuild key of every engine.
pub fn plugin_library() -> PluginLibrary {
    let mut h = blake3::Hasher::new();
    for (path, bytes) in PLUGIN_SOURCES {
        h.update(path.as_bytes());
        h.update(&[0]);
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    PluginLibrary {
        origin: "linked".into(),
        blake3: h.finalize().to_hex().to_string(),
    }
}

/// The hashed inputs of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInputs {
    /// The ONNX graph, then its external data files.
    pub onnx: Vec<FileEntry>,
    /// The calibration cache (INT8).
    pub calibration: Option<FileEntry>,
    pub plugin_library: PluginLibrary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineManifest {
    pub schema: String,
    pub tool: ToolInfo,
    pub created_unix: u64,
    pub precision: Precision,
    pub platform: Platform,
    pub settings: BuildSettings,
    /// The graph's outputs in order; the last is the main one (the CPU backend's choice too).
    pub outputs: Vec<String>,
    pub inputs: EngineInputs,
    /// The timing cache the build read and updated (not part of the key: it speeds builds up).
    pub timing_cache: Option<String>,
    /// BLAKE3 over everything that decides the engine's content; equal keys mean a rebuild can be skipped.
    pub build_key: String,
    /// The engine file, its name relative to the manifest's folder.
    pub engine: FileEntry,
}

/// `model.fp16.engine` → `model.fp16.engine.json`.
pub fn manifest_path(engine: &Path) -> PathBuf {
    let mut name = engine.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    engine.with_file_name(name)
}

/// The rebuild key: a hash of the tool version, the platform (TensorRT version, device; not the L4T
/// release, which TensorRT's version already pins), the settings and the input hashes.
pub fn build_key(platform: &Platform, settings: &BuildSettings, inputs: &EngineInputs) -> String {
    let value = serde_json::json!({
        "tool": crate::VERSION,
        "tensorrt": platform.tensorrt,
        "device": platform.device,
        "settings": settings,
        "inputs": inputs,
    });
    // serde_json's maps are ordered by key, so equal values give equal text.
    fsutil::hash_bytes(value.to_string().as_bytes())
}

impl EngineManifest {
    pub fn read(path: &Path) -> Result<Self, EngineError> {
        let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let m: EngineManifest = serde_json::from_str(&text).map_err(|e| EngineError::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if m.schema != ENGINE_MANIFEST_SCHEMA {
            return Err(EngineError::Manifest {
                path: path.to_path_buf(),
                reason: format!("schema '{}' is not '{ENGINE_MANIFEST_SCHEMA}'", m.schema),
            });
        }
        Ok(m)
    }

    /// Writes the manifest atomically.
    pub fn write(&self, path: &Path) -> Result<(), EngineError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| EngineError::Manifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        fsutil::write_atomic(path, text.as_bytes()).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Why this engine cannot run on `running`, if it cannot: TensorRT deserializes only engines of its
    /// own version, and an engine holds kernels for one compute capability, tuned for one device.
    pub fn incompatibility(&self, running: &Platform) -> Option<String> {
        let built = &self.platform;
        if built.tensorrt != running.tensorrt {
            return Some(format!(
                "it was built with TensorRT {}, this process has TensorRT {}: rebuild it here (`compile --force`)",
                built.tensorrt, running.tensorrt
            ));
        }
        if built.device.compute_capability != running.device.compute_capability
            || built.device.name != running.device.name
        {
            return Some(format!(
                "it was built for {}, this device is {}: rebuild it on this device (`compile --force`)",
                built.device, running.device
            ));
        }
        None
    }
}

/// Reads the manifest beside `engine` and checks it before the engine is deserialized: it must exist,
/// name the engine's bytes (hash), and be compatible with `running`. Returns the manifest.
pub fn check_for_load(engine: &Path, running: &Platform) -> Result<EngineManifest, EngineError> {
    let mpath = manifest_path(engine);
    if !mpath.exists() {
        return Err(EngineError::Incompatible {
            engine: engine.to_path_buf(),
            reason: format!(
                "there is no manifest {} beside it, so its TensorRT version and device are unknown; build engines with `ocrnet-edge compile`",
                mpath.display()
            ),
        });
    }
    let m = EngineManifest::read(&mpath)?;
    if let Some(reason) = m.incompatibility(running) {
        return Err(EngineError::Incompatible {
            engine: engine.to_path_buf(),
            reason,
        });
    }
    let (bytes, hash) = fsutil::hash_file(engine).map_err(|source| EngineError::Io {
        path: engine.to_path_buf(),
        source,
    })?;
    if hash != m.engine.blake3 || bytes != m.engine.bytes {
        return Err(EngineError::Incompatible {
            engine: engine.to_path_buf(),
            reason: format!(
                "its content ({bytes} bytes, blake3 {}) is not what {} names ({} bytes, blake3 {}): the file was replaced or damaged",
                &hash[..16],
                mpath.display(),
                m.engine.bytes,
                m.engine.blake3.get(..16).unwrap_or(&m.engine.blake3)
            ),
        });
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l4t_release_and_jetpack() {
        let text = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\n";
        let l4t = parse_nv_tegra_release(text).unwrap();
        assert_eq!(l4t, "36.4.3");
        assert_eq!(jetpack_of(&l4t), Some("6.2"));
        assert_eq!(
            parse_nv_tegra_release("# R35 (release), REVISION: 5.0, GCID: 1\n").as_deref(),
            Some("35.5.0")
        );
        assert_eq!(jetpack_of("36.9.9"), None);
        for bad in [
            "",
            "garbage",
            "# R36 (release)",
            "# Rxx (release), REVISION: 4.3",
            "# R36 (release), REVISION: a b",
        ] {
            assert_eq!(parse_nv_tegra_release(bad), None, "{bad}");
        }
    }

    #[test]
    fn trt_version_codes() {
        let v = TrtVersion::from_code(100300);
        assert_eq!((v.major, v.minor, v.patch), (10, 3, 0));
        assert_eq!(v.to_string(), "10.3.0");
        assert_eq!(v.code(), 100300);
        assert_eq!(TrtVersion::from_code(110102).to_string(), "11.1.2");
    }

    #[test]
    fn manifest_path_appends_json() {
        assert_eq!(
            manifest_path(Path::new("/o/model.fp16.engine")),
            Path::new("/o/model.fp16.engine.json")
        );
    }

    #[test]
    fn plugin_identity_is_stable_and_covers_the_sources() {
        let a = plugin_library();
        assert_eq!(a, plugin_library());
        assert_eq!(a.blake3.len(), 64);
        assert!(PLUGIN_SOURCES.iter().all(|(_, b)| !b.is_empty()));
    }
}
