//! Saving: atomic (temporary file in the target's folder, fsync, rename, fsync the folder) and without
//! copying tensor bytes in user space. The protobuf framing is encoded into one small buffer and written
//! with `writev`; every large `raw_data` that is a view into a loaded file is copied file-to-file with
//! `copy_file_range` (other tensor bytes go to `writev` as they sit), and an unchanged external-data file is
//! linked or copied in the kernel, never rewritten. `durable: false` skips the fsyncs, not the rename.

use super::external::MappedFile;
use super::proto::{tensor_proto::DataLocation, ModelProto, StringStringEntryProto, TensorProto};
use super::{Error, Model, Result};
use bytes::Bytes;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;
use std::collections::BTreeMap;
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};

/// Tensors smaller than this are encoded inline with their record; splitting them off would cost more in
/// iovecs than it saves in copies.
const SPLIT_BYTES: usize = 4096;
/// Protobuf messages cannot exceed 2 GiB.
const PROTOBUF_LIMIT: usize = (1 << 31) - 1;
/// Field numbers used in the hand-framed parts.
const MODEL_GRAPH: u32 = 7;
const GRAPH_INITIALIZER: u32 = 5;
const TENSOR_RAW_DATA: u32 = 9;

/// What to do with tensor data that could live outside the model file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ExternalPolicy {
    /// Tensors loaded from external data and still unchanged stay there (the data file is reused); all
    /// other tensors are written inline.
    #[default]
    Keep,
    /// Everything inline in the model file.
    Inline,
    /// Every initializer of at least `threshold` bytes goes to one new data file `location` beside the model.
    Single { location: String, threshold: usize },
}

#[derive(Debug, Clone)]
pub struct SaveOptions {
    pub external: ExternalPolicy,
    /// fsync the file and its folder before returning, so the artifact survives a power loss. The rename
    /// is atomic either way: a reader never sees a half-written file. Off, a save costs what `onnx.save`
    /// costs (the data stays dirty in the page cache); on, it also waits for the disk.
    pub durable: bool,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions {
            external: ExternalPolicy::default(),
            durable: true,
        }
    }
}

/// What a save wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SaveReport {
    pub model_bytes: u64,
    /// Data files written or linked beside the model, by location.
    pub data_files: Vec<String>,
    /// Data files that were already in place and left untouched.
    pub reused_data_files: Vec<String>,
}

/// Saves `model` to `path` atomically.
pub fn save(model: &Model, path: &Path, opts: &SaveOptions) -> Result<SaveReport> {
    let dir = parent_dir(path);
    let mut graph = model.graph.to_proto();
    let mut report = SaveReport::default();
    let mut new_data: Vec<Bytes> = Vec::new();
    let mut new_data_len = 0usize;
    let mut kept: BTreeMap<String, PathBuf> = BTreeMap::new();

    for t in &mut graph.initializer {
        let origin = model
            .origins
            .get(t.name())
            .filter(|o| t.raw_data.as_ref().is_some_and(|r| o.is_unchanged(r)));
        match (&opts.external, origin) {
            (ExternalPolicy::Keep, Some(origin)) => {
                make_external(t, origin.entries.clone());
                kept.insert(origin.location.clone(), origin.file.clone());
            }
            (
                ExternalPolicy::Single {
                    location,
                    threshold,
                },
                _,
            ) if t.raw_data.as_ref().is_some_and(|r| r.len() >= *threshold) => {
                // 64-byte alignment lets a reader map tensors straight into SIMD-friendly addresses.
                let pad = (64 - new_data_len % 64) % 64;
                if pad > 0 {
                    new_data.push(Bytes::from_static(&[0u8; 64][..pad]));
                    new_data_len += pad;
                }
                let raw = t.raw_data.clone().unwrap();
                let entries = vec![
                    entry("location", location),
                    entry("offset", &new_data_len.to_string()),
                    entry("length", &raw.len().to_string()),
                ];
                new_data_len += raw.len();
                new_data.push(raw);
                make_external(t, entries);
            }
            _ => {}
        }
    }

    // Data files first: a model file must never name data that is not there yet.
    if let ExternalPolicy::Single { location, .. } = &opts.external {
        if !new_data.is_empty() {
            let target = super::external::resolve_path(&dir, location).map_err(|reason| {
                Error::ExternalData {
                    path: path.to_path_buf(),
                    tensor: "*".into(),
                    reason,
                }
            })?;
            let segments: Vec<Segment> = new_data
                .into_iter()
                .map(|b| Segment::tensor(b, &model.sources))
                .collect();
            write_atomic(&target, &[], &segments, opts.durable)?;
            report.data_files.push(location.clone());
        }
    }
    for (location, source) in &kept {
        let target = dir.join(location);
        if same_file(source, &target) {
            report.reused_data_files.push(location.clone());
        } else {
            place_data_file(source, &target)?;
            report.data_files.push(location.clone());
        }
    }

    let mut proto = model.proto.clone();
    proto.graph = Some(graph);
    let (scratch, segments) = frame_model(proto, path, &model.sources)?;
    report.model_bytes = write_atomic(path, &scratch, &segments, opts.durable)?;
    Ok(report)
}

/// Encodes the whole model into one buffer (copies every tensor). For tests and small models.
pub fn encode_to_vec(model: &Model) -> Vec<u8> {
    let mut proto = model.proto.clone();
    proto.graph = Some(model.graph.to_proto());
    proto.encode_to_vec()
}

fn make_external(t: &mut TensorProto, entries: Vec<StringStringEntryProto>) {
    t.raw_data = None;
    t.data_location = Some(DataLocation::External as i32);
    t.external_data = entries;
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: Some(key.into()),
        value: Some(value.into()),
    }
}

/// A piece of the output: a range of the framing buffer, or tensor bytes written where they lie.
enum Segment {
    Scratch(usize, usize),
    Shared(Bytes),
    /// Tensor bytes that are a view into a mapped source file: copied file-to-file in the kernel.
    FileRange {
        file: std::sync::Arc<std::fs::File>,
        offset: u64,
        bytes: Bytes,
    },
}

impl Segment {
    fn len(&self) -> usize {
        match self {
            Segment::Scratch(a, b) => b - a,
            Segment::Shared(b) | Segment::FileRange { bytes: b, .. } => b.len(),
        }
    }

    /// Tensor bytes, as a file range when they lie in one of the mapped sources.
    fn tensor(bytes: Bytes, sources: &[MappedFile]) -> Self {
        for src in sources {
            if let Some(offset) = src.offset_of(&bytes) {
                return Segment::FileRange {
                    file: src.file.clone(),
                    offset,
                    bytes,
                };
            }
        }
        Segment::Shared(bytes)
    }
}

/// Frames `proto` as the protobuf encoding of a `ModelProto`: everything except the large `raw_data`
/// fields is encoded into `scratch`, the large tensors' bytes become their own segments. Protobuf lets
/// fields come in any order, so the graph and each initializer are written after the rest of their parent.
fn frame_model(
    mut proto: ModelProto,
    path: &Path,
    sources: &[MappedFile],
) -> Result<(Vec<u8>, Vec<Segment>)> {
    let total = proto.encoded_len();
    if total > PROTOBUF_LIMIT {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the model encodes to {total} bytes, over protobuf's 2 GiB limit: save with external data"
                ),
            ),
        ));
    }
    let mut graph = proto.graph.take().expect("graph set by save");
    let inits = std::mem::take(&mut graph.initializer);
    let graph_len = graph.encoded_len()
        + inits
            .iter()
            .map(|t| {
                key_len(GRAPH_INITIALIZER)
                    + encoded_len_varint(t.encoded_len() as u64)
                    + t.encoded_len()
            })
            .sum::<usize>();

    let mut scratch = Vec::with_capacity(64 * 1024);
    let mut segments = Vec::new();
    proto.encode(&mut scratch).expect("Vec grows");
    encode_key(MODEL_GRAPH, WireType::LengthDelimited, &mut scratch);
    encode_varint(graph_len as u64, &mut scratch);
    graph.encode(&mut scratch).expect("Vec grows");
    let mut start = 0;
    for mut t in inits {
        let len = t.encoded_len();
        encode_key(GRAPH_INITIALIZER, WireType::LengthDelimited, &mut scratch);
        encode_varint(len as u64, &mut scratch);
        match t.raw_data.take() {
            Some(raw) if raw.len() >= SPLIT_BYTES => {
                t.encode(&mut scratch).expect("Vec grows");
                encode_key(TENSOR_RAW_DATA, WireType::LengthDelimited, &mut scratch);
                encode_varint(raw.len() as u64, &mut scratch);
                segments.push(Segment::Scratch(start, scratch.len()));
                start = scratch.len();
                segments.push(Segment::tensor(raw, sources));
            }
            raw => {
                t.raw_data = raw;
                t.encode(&mut scratch).expect("Vec grows");
            }
        }
    }
    segments.push(Segment::Scratch(start, scratch.len()));
    debug_assert_eq!(segments.iter().map(Segment::len).sum::<usize>(), total);
    Ok((scratch, segments))
}

/// Writes the segments to a temporary file beside `target`, syncs it, renames it over `target` and syncs
/// the folder. Returns the bytes written.
fn write_atomic(target: &Path, scratch: &[u8], segments: &[Segment], durable: bool) -> Result<u64> {
    let dir = parent_dir(target);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".ocrnet-")
        .suffix(".tmp")
        .permissions(crate::fsutil::artifact_permissions())
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    let total = write_segments(tmp.as_file_mut(), scratch, segments, durable)
        .map_err(|e| Error::io(target, e))?;
    if durable {
        tmp.as_file().sync_all().map_err(|e| Error::io(target, e))?;
    }
    tmp.persist(target)
        .map_err(|e| Error::io(target, e.error))?;
    if durable {
        sync_dir(&dir);
    }
    Ok(total as u64)
}

/// Writes the segments in order: runs of in-memory pieces with `writev`, file ranges with
/// `copy_file_range` (falling back to writing the mapped bytes where the kernel cannot copy between the two
/// files). Returns the bytes written.
fn write_segments(
    out: &mut std::fs::File,
    scratch: &[u8],
    segments: &[Segment],
    durable: bool,
) -> std::io::Result<usize> {
    let mut pending: Vec<IoSlice<'_>> = Vec::new();
    let mut total = 0;
    let mut flushed = 0;
    for seg in segments {
        total += seg.len();
        match seg {
            Segment::Scratch(a, b) => pending.push(IoSlice::new(&scratch[*a..*b])),
            Segment::Shared(b) => pending.push(IoSlice::new(b)),
            Segment::FileRange {
                file,
                offset,
                bytes,
            } => {
                write_all_vectored(out, &mut pending)?;
                pending.clear();
                if !copy_range(file, *offset, out, bytes.len())? {
                    out.write_all(bytes)?;
                }
                if durable && total - flushed >= WRITEBACK_CHUNK {
                    start_writeback(out, flushed, total - flushed);
                    flushed = total;
                }
            }
        }
    }
    write_all_vectored(out, &mut pending)?;
    Ok(total)
}

/// How much written data may pile up before the disk is asked to start writing it. Starting writeback as
/// we go overlaps the device's work with ours, so the final fsync waits only for the tail.
const WRITEBACK_CHUNK: usize = 32 << 20;

/// Asks the kernel to begin writing back a range without waiting for it (a hint: errors are ignored, the
/// final fsync reports any real failure).
fn start_writeback(out: &std::fs::File, offset: usize, len: usize) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor; it does not touch our memory.
    unsafe {
        libc::sync_file_range(
            out.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Copies `len` bytes at `offset` of `src` to the current position of `out` inside the kernel. Returns
/// false, having written nothing, when the kernel cannot do it for these two files (then the caller writes
/// the bytes itself).
fn copy_range(
    src: &std::fs::File,
    offset: u64,
    out: &mut std::fs::File,
    len: usize,
) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut off_in = offset as libc::loff_t;
    let mut left = len;
    while left > 0 {
        // SAFETY: both descriptors are open files owned by the caller; off_in is a valid pointer and a null
        // off_out means "use and advance out's file position", which keeps writev and this call in order.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                out.as_raw_fd(),
                std::ptr::null_mut(),
                left,
                0,
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL)
                    if left == len =>
                {
                    return Ok(false)
                }
                _ => return Err(err),
            }
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the source file shrank while the model was loaded",
            ));
        }
        left -= n as usize;
    }
    Ok(true)
}

/// `write_all` for iovecs, at most IOV_MAX at a time, resuming after short writes.
fn write_all_vectored(
    file: &mut std::fs::File,
    mut bufs: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    const IOV_MAX: usize = 1024;
    while !bufs.is_empty() {
        let n = bufs.len().min(IOV_MAX);
        match file.write_vectored(&bufs[..n]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut bufs, written),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Puts an unchanged data file beside the new model: a hard link when the file system allows, otherwise a
/// copy (`std::fs::copy` uses copy_file_range, so the bytes stay in the kernel). Atomic either way.
fn place_data_file(source: &Path, target: &Path) -> Result<()> {
    let dir = parent_dir(target);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".ocrnet-")
        .suffix(".tmp")
        .permissions(crate::fsutil::artifact_permissions())
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .into_temp_path();
    std::fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
    if std::fs::hard_link(source, &tmp).is_err() {
        std::fs::copy(source, &tmp).map_err(|e| Error::io(source, e))?;
    }
    tmp.persist(target)
        .map_err(|e| Error::io(target, e.error))?;
    sync_dir(&dir);
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename durable. Best effort: some file systems refuse to fsync a directory.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
