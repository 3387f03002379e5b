//! The manifest written beside every set of artifacts: what went in (hashed), which tool made it, what was
//! done, and what came out. A CI can diff two manifests to see why two builds differ.

use crate::fsutil;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const MANIFEST_SCHEMA: &str = "ocrnet-edge.manifest/1";
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub schema: &'static str,
    pub tool: Tool,
    /// Seconds since the Unix epoch when the manifest was written.
    pub created_unix: u64,
    pub recipe: Option<FileEntry>,
    pub inputs: Vec<FileEntry>,
    /// Each pipeline step with its own report, in order.
    pub steps: Vec<Step>,
    /// Artifacts, with paths relative to the manifest's folder.
    pub outputs: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
}

/// A file and its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
    pub blake3: String,
}

impl FileEntry {
    /// Hashes `path`; `shown` is how the manifest names it.
    pub fn hash(path: &Path, shown: impl Into<String>) -> std::io::Result<Self> {
        let (bytes, blake3) = fsutil::hash_file(path)?;
        Ok(FileEntry {
            path: shown.into(),
            bytes,
            blake3,
        })
    }

    pub fn of_text(shown: impl Into<String>, text: &str) -> Self {
        FileEntry {
            path: shown.into(),
            bytes: text.len() as u64,
            blake3: fsutil::hash_bytes(text.as_bytes()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub seconds: f64,
    pub report: serde_json::Value,
}

impl Manifest {
    pub fn new() -> Self {
        Manifest {
            schema: MANIFEST_SCHEMA,
            tool: Tool {
                name: "ocrnet-edge",
                version: crate::VERSION,
            },
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            recipe: None,
            inputs: Vec::new(),
            steps: Vec::new(),
            outputs: Vec::new(),
        }
    }

    pub fn step(&mut self, name: &str, seconds: f64, report: impl Serialize) {
        self.steps.push(Step {
            name: name.to_string(),
            seconds,
            report: serde_json::to_value(report).unwrap_or(serde_json::Value::Null),
        });
    }

    /// Writes `manifest.json` into `dir` atomically; returns its path.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join(MANIFEST_FILE);
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        fsutil::write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }
}

impl Default for Manifest {
    fn default() -> Self {
        Self::new()
    }
}
