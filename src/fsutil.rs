//! Small file-system helpers every stage uses: atomic writes and content hashes.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file in the same folder, fsynced and renamed into place,
/// so a reader never sees a half-written artifact.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".ocrnet-")
        .suffix(".tmp")
        .permissions(artifact_permissions())
        .tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// rw-r--r--: artifacts are read by other users (a daemon's service account, a CI artifact uploader),
/// while a temporary file would otherwise be created 0600.
pub fn artifact_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o644)
}

/// Size and BLAKE3 hash (hex) of a file, read through a memory map.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_mmap(path)?;
    let len = std::fs::metadata(path)?.len();
    Ok((len, hasher.finalize().to_hex().to_string()))
}

pub fn hash_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// `path` with `.` components dropped and each `name/..` pair removed, without touching the disk (as Go's
/// `filepath.Clean`): `models/recipes/../../out` becomes `out`. Leading `..` of a relative path stay.
pub fn lexical_clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

#[cfg(test)]
mod clean_tests {
    use super::lexical_clean;
    use std::path::Path;

    #[test]
    fn removes_dots_and_parent_pairs() {
        let c = |s: &str| lexical_clean(Path::new(s)).display().to_string();
        assert_eq!(c("models/recipes/../../out/default"), "out/default");
        assert_eq!(c("/a/./b/../c"), "/a/c");
        assert_eq!(c("../x/../../y"), "../../y");
        assert_eq!(c("/../a"), "/a");
        assert_eq!(c("a/.."), ".");
    }
}
