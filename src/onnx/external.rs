//! Memory-mapped files and ONNX external data references (`location`, `offset`, `length`).

use super::graph::Graph;
use super::proto::{tensor_proto::DataLocation, StringStringEntryProto};
use super::{Error, Result};
use bytes::Bytes;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Where an initializer's bytes came from when the model referenced external data; kept so that an unchanged
/// tensor is written back as the same reference and its file reused rather than rewritten.
#[derive(Debug, Clone)]
pub struct ExternalOrigin {
    /// The `external_data` entries exactly as the file had them (checksum and any other keys included).
    pub entries: Vec<StringStringEntryProto>,
    /// The data file, resolved.
    pub file: PathBuf,
    /// The `location` as written in the model.
    pub location: String,
    /// The bytes as loaded; the tensor is unchanged while its `raw_data` is this very view.
    pub view: Bytes,
}

impl ExternalOrigin {
    /// True when `raw` is still the view the loader made (same memory, same length).
    pub fn is_unchanged(&self, raw: &Bytes) -> bool {
        raw.as_ptr() == self.view.as_ptr() && raw.len() == self.view.len()
    }
}

/// A file mapped read-only, with its open handle: saving copies tensor bytes from the handle with
/// `copy_file_range`, so they never pass through user space (nor fault the map's pages in). The handle, not
/// the path, is kept because the path may be replaced (a model saved over itself) while the map lives on.
#[derive(Debug, Clone)]
pub struct MappedFile {
    pub path: PathBuf,
    pub file: Arc<std::fs::File>,
    pub bytes: Bytes,
}

impl MappedFile {
    /// Offset in the file of `view`, if `view` lies inside this map.
    pub fn offset_of(&self, view: &[u8]) -> Option<u64> {
        let base = self.bytes.as_ptr() as usize;
        let start = view.as_ptr() as usize;
        (start >= base && start + view.len() <= base + self.bytes.len())
            .then(|| (start - base) as u64)
    }
}

/// Maps a whole file read-only. The length is taken once, before mapping, and the map covers exactly that;
/// an empty file gives empty bytes (mapping zero bytes is an error on Linux).
pub fn map_file(path: &Path) -> Result<MappedFile> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    let bytes = if meta.len() == 0 {
        Bytes::new()
    } else {
        let len = usize::try_from(meta.len()).map_err(|_| {
            Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "file too large"),
            )
        })?;
        // SAFETY: the map is read-only and private to this process. Another process truncating the file
        // while it is mapped would fault on access; we take the length before mapping and never read past
        // it, which is the most a reader of a shared file can do (the contract of every mmap-based loader).
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&file) }
            .map_err(|e| Error::io(path, e))?;
        Bytes::from_owner(map)
    };
    Ok(MappedFile {
        path: path.to_path_buf(),
        file: Arc::new(file),
        bytes,
    })
}

/// A parsed `external_data` list.
#[derive(Debug, Clone)]
pub struct Reference {
    pub location: String,
    pub offset: u64,
    pub length: Option<u64>,
}

impl Reference {
    pub fn parse(entries: &[StringStringEntryProto]) -> std::result::Result<Self, String> {
        let mut location = None;
        let mut offset = 0;
        let mut length = None;
        for e in entries {
            let value = e.value();
            let number = |what: &str| {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{what} '{value}' is not a non-negative integer"))
            };
            match e.key() {
                "location" => location = Some(value.to_string()),
                "offset" => offset = number("offset")?,
                "length" => length = Some(number("length")?),
                // checksum (SHA-1) and basepath are kept verbatim but not needed to read the bytes.
                _ => {}
            }
        }
        let location = location.ok_or("the 'location' entry is missing")?;
        Ok(Reference {
            location,
            offset,
            length,
        })
    }

    /// The referenced bytes of `file`, checked to lie inside it. Without `length` the data runs to the end of
    /// the file, as the ONNX spec says.
    pub fn slice(&self, file: &Bytes) -> std::result::Result<Bytes, String> {
        let size = file.len() as u64;
        if self.offset > size {
            return Err(format!(
                "offset {} is past the end of '{}' ({size} bytes)",
                self.offset, self.location
            ));
        }
        let length = self.length.unwrap_or(size - self.offset);
        let end = self
            .offset
            .checked_add(length)
            .filter(|&e| e <= size)
            .ok_or_else(|| {
                format!(
                    "bytes {}..{} lie outside '{}' ({size} bytes)",
                    self.offset,
                    self.offset.saturating_add(length),
                    self.location
                )
            })?;
        Ok(file.slice(self.offset as usize..end as usize))
    }
}

/// Resolves `location` against the model's folder. Absolute paths and paths that leave the folder are
/// refused: a model file must not be able to make us read arbitrary files.
pub fn resolve_path(base: &Path, location: &str) -> std::result::Result<PathBuf, String> {
    let rel = Path::new(location);
    if location.is_empty() {
        return Err("the location is empty".into());
    }
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(format!("location '{location}' escapes the model's folder"));
    }
    let joined = base.join(rel);
    // Symlinks could still point outside: compare canonical paths when the file exists.
    if let (Ok(real_base), Ok(real)) = (base.canonicalize(), joined.canonicalize()) {
        if !real.starts_with(&real_base) {
            return Err(format!(
                "location '{location}' resolves outside the model's folder"
            ));
        }
    }
    Ok(joined)
}

/// External references anywhere but the top-level initializers (node attributes, subgraphs, sparse
/// initializers) are not resolved by this loader; returns the first such tensor's name.
pub fn refuse_nested_external(graph: &Graph) -> std::result::Result<(), String> {
    let is_ext = |t: &super::proto::TensorProto| t.data_location() == DataLocation::External;
    for s in &graph.rest.sparse_initializer {
        if s.values.as_ref().is_some_and(is_ext) || s.indices.as_ref().is_some_and(is_ext) {
            return Err(s
                .values
                .as_ref()
                .map(|v| v.name().to_string())
                .unwrap_or_default());
        }
    }
    for node in &graph.nodes {
        for a in &node.attribute {
            if let Some(t) = a.t.as_ref().filter(|t| is_ext(t)) {
                return Err(format!("{} (attribute of node {})", t.name(), node.name()));
            }
            if let Some(t) = a.tensors.iter().find(|t| is_ext(t)) {
                return Err(format!("{} (attribute of node {})", t.name(), node.name()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(k: &str, v: &str) -> StringStringEntryProto {
        StringStringEntryProto {
            key: Some(k.into()),
            value: Some(v.into()),
        }
    }

    #[test]
    fn reference_bounds_are_checked() {
        let file = Bytes::from_static(&[0u8; 16]);
        let r = Reference::parse(&[
            entry("location", "w.bin"),
            entry("offset", "8"),
            entry("length", "8"),
        ])
        .unwrap();
        assert_eq!(r.slice(&file).unwrap().len(), 8);
        let r = Reference::parse(&[
            entry("location", "w.bin"),
            entry("offset", "12"),
            entry("length", "8"),
        ])
        .unwrap();
        assert!(r.slice(&file).unwrap_err().contains("outside"));
        let r = Reference::parse(&[entry("location", "w.bin"), entry("offset", "4")]).unwrap();
        assert_eq!(
            r.slice(&file).unwrap().len(),
            12,
            "no length: to the end of the file"
        );
        assert!(Reference::parse(&[entry("offset", "4")])
            .unwrap_err()
            .contains("location"));
        assert!(
            Reference::parse(&[entry("location", "a"), entry("offset", "-1")])
                .unwrap_err()
                .contains("offset")
        );
    }

    #[test]
    fn locations_cannot_escape() {
        let base = Path::new("models");
        assert!(resolve_path(base, "../secret").is_err());
        assert!(resolve_path(base, "/etc/passwd").is_err());
        assert!(resolve_path(base, "a/../../b").is_err());
        assert_eq!(resolve_path(base, "w.bin").unwrap(), base.join("w.bin"));
    }
}
