//! Where `compile` writes its graphs and calibration files before it commits them: a hidden folder inside
//! the output folder, so a run that fails late (a corrupt val image in the accuracy pass, a lowering error)
//! leaves the previous build untouched instead of half replaced under a manifest that no longer matches it.
//!
//! Committing moves the staged files into the output folder by rename (same file system, each atomic) after
//! removing the old `manifest.json`, and the pipeline writes the new manifest last: the manifest is the
//! commit marker, so a folder with one holds the files it names, and a folder without one is mid-commit or
//! a failed engine build.

use crate::manifest::MANIFEST_FILE;
use std::io;
use std::path::{Path, PathBuf};

/// Staging folders are named `<PREFIX><pid>@<host>-<random>`; pid and host let a later run on the same
/// machine remove what a killed one left. The host keeps a container that shares the output folder (a CI
/// cache volume) from taking another container's live compile, whose pid it cannot see, for dead.
const PREFIX: &str = ".ocrnet-edge-staging-";

/// A staging folder inside an output folder. Dropped without [`Staging::commit`], it removes itself (and
/// the output folder, when this run created it and left it empty).
pub struct Staging {
    dir: Option<tempfile::TempDir>,
    out_dir: PathBuf,
    created_out_dir: bool,
}

impl Staging {
    /// Creates `out_dir` if needed, removes staging folders of processes that no longer run, and opens a
    /// fresh staging folder.
    pub fn open(out_dir: &Path) -> io::Result<Staging> {
        let created_out_dir = !out_dir.exists();
        std::fs::create_dir_all(out_dir)?;
        remove_abandoned(out_dir);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}@{}-", std::process::id(), host()))
            .tempdir_in(out_dir)?;
        Ok(Staging {
            dir: Some(dir),
            out_dir: out_dir.to_path_buf(),
            created_out_dir,
        })
    }

    /// The folder the stages write into.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("open until committed").path()
    }

    /// Moves `files` (paths relative to the staging folder) into the output folder, replacing files of
    /// the same name. The old manifest goes first: from then on until the pipeline writes the new one, the
    /// folder does not claim to be a consistent build.
    pub fn commit(mut self, files: &[String]) -> Result<(), (PathBuf, io::Error)> {
        let manifest = self.out_dir.join(MANIFEST_FILE);
        match std::fs::remove_file(&manifest) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err((manifest, e)),
            _ => {}
        }
        let mut dirs = vec![self.out_dir.clone()];
        for name in files {
            let from = self.path().join(name);
            let to = self.out_dir.join(name);
            if let Some(parent) = to.parent() {
                if !dirs.iter().any(|d| d == parent) {
                    std::fs::create_dir_all(parent).map_err(|e| (parent.to_path_buf(), e))?;
                    dirs.push(parent.to_path_buf());
                }
            }
            std::fs::rename(&from, &to).map_err(|e| (to.clone(), e))?;
        }
        // The renames are durable once the folders that hold the new names are.
        for d in &dirs {
            if let Ok(f) = std::fs::File::open(d) {
                let _ = f.sync_all();
            }
        }
        self.created_out_dir = false;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        drop(self.dir.take());
        if self.created_out_dir {
            // Only succeeds when empty: a failed first run leaves no trace.
            let _ = std::fs::remove_dir(&self.out_dir);
        }
    }
}

/// Removes the staging folders in `out_dir` whose process is gone (a compile killed mid-way). Only where
/// `/proc` tells which processes run; elsewhere they stay, hidden, for the user to remove.
fn remove_abandoned(out_dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(out_dir) else {
        return;
    };
    let ours = format!("{}-", host());
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, rest)) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split_once('@'))
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if rest.starts_with(&ours) && !Path::new("/proc").join(pid.to_string()).exists() {
            let path = entry.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => log::info!("removed {}, left by a compile that stopped", path.display()),
                Err(e) => log::warn!("{}: left by a compile that stopped: {e}", path.display()),
            }
        }
    }
}

/// This machine's (or container's) host name, as file names may carry it.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_replaces_files_and_drops_the_old_manifest() {
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join(MANIFEST_FILE), "old").unwrap();
        std::fs::write(out.path().join("a.onnx"), "old a").unwrap();
        std::fs::write(out.path().join("keep.txt"), "kept").unwrap();
        let staging = Staging::open(out.path()).unwrap();
        let staged = staging.path().to_path_buf();
        std::fs::write(staged.join("a.onnx"), "new a").unwrap();
        std::fs::create_dir(staged.join("data")).unwrap();
        std::fs::write(staged.join("data/w.bin"), "weights").unwrap();
        staging
            .commit(&["a.onnx".into(), "data/w.bin".into()])
            .unwrap();
        let read = |n: &str| std::fs::read_to_string(out.path().join(n)).unwrap();
        assert_eq!(read("a.onnx"), "new a");
        assert_eq!(read("data/w.bin"), "weights");
        assert_eq!(read("keep.txt"), "kept");
        assert!(!out.path().join(MANIFEST_FILE).exists());
        assert!(!staged.exists());
    }

    #[test]
    fn a_dropped_staging_leaves_the_folder_as_it_was() {
        let parent = tempfile::tempdir().unwrap();
        let out = parent.path().join("new/out");
        let staging = Staging::open(&out).unwrap();
        std::fs::write(staging.path().join("a.onnx"), "partial").unwrap();
        drop(staging);
        assert!(!out.exists(), "a first run that failed leaves no folder");

        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join(MANIFEST_FILE), "old").unwrap();
        let staging = Staging::open(&out).unwrap();
        std::fs::write(staging.path().join("a.onnx"), "partial").unwrap();
        drop(staging);
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [MANIFEST_FILE]);
    }

    #[test]
    fn staging_of_a_process_that_is_gone_is_removed() {
        if !Path::new("/proc/self").exists() {
            return; // nothing tells which processes run
        }
        let out = tempfile::tempdir().unwrap();
        // No pid is this large on Linux (pid_max is at most 2^22).
        let dead = out
            .path()
            .join(format!("{PREFIX}4294967295@{}-abc", host()));
        let alive = out
            .path()
            .join(format!("{PREFIX}{}@{}-abc", std::process::id(), host()));
        // Another host's (container's) pid says nothing here.
        let elsewhere = out
            .path()
            .join(format!("{PREFIX}4294967295@{}x-abc", host()));
        for d in [&dead, &alive, &elsewhere] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("x"), "x").unwrap();
        }
        let _staging = Staging::open(out.path()).unwrap();
        assert!(!dead.exists());
        assert!(alive.exists());
        assert!(elsewhere.exists());
    }
}
