//! `.npy` files in and out (golden outputs, `run --input X.npy`, `--logits`), through `npyz`.

use crate::tensor::{Data, Tensor};
use npyz::WriterBuilder;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct NpyError {
    pub path: PathBuf,
    pub reason: String,
}

fn err(path: &Path, reason: impl ToString) -> NpyError {
    NpyError {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads a C-order array of f32, f64 (kept as f64), f16, i64, i32 or u8.
pub fn read(path: &Path) -> Result<Tensor, NpyError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e))?;
    let file = npyz::NpyFile::new(bytes.as_slice())
        .map_err(|e| err(path, format!("not a .npy file: {e}")))?;
    if file.order() != npyz::Order::C {
        return Err(err(
            path,
            "Fortran-order arrays are not supported; save it with np.ascontiguousarray",
        ));
    }
    let shape: Vec<usize> = file.shape().iter().map(|&d| d as usize).collect();
    let descr = file.dtype().descr();
    let data = match descr.trim_matches('\'') {
        "<f4" => Data::F32(file.into_vec().map_err(|e| err(path, e))?),
        "<f8" => Data::F64(file.into_vec().map_err(|e| err(path, e))?),
        "<f2" => Data::F16(file.into_vec().map_err(|e| err(path, e))?),
        "<i8" => Data::I64(file.into_vec().map_err(|e| err(path, e))?),
        "<i4" => Data::I32(file.into_vec().map_err(|e| err(path, e))?),
        "|u1" => Data::U8(file.into_vec().map_err(|e| err(path, e))?),
        other => {
            return Err(err(
                path,
                format!("element type {other} is not supported (use float32)"),
            ))
        }
    };
    Tensor::new(shape, data).map_err(|e| err(path, e))
}

/// Writes a tensor (f32, i64 or u8) atomically.
pub fn write(path: &Path, t: &Tensor) -> Result<(), NpyError> {
    let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
    let mut buf = Vec::new();
    macro_rules! put {
        ($v:expr, $ty:ty) => {{
            let mut w = npyz::WriteOptions::<$ty>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut buf)
                .begin_nd()
                .map_err(|e| err(path, e))?;
            w.extend($v.iter().copied()).map_err(|e| err(path, e))?;
            w.finish().map_err(|e| err(path, e))?;
        }};
    }
    match &t.data {
        Data::F32(v) => put!(v, f32),
        Data::I64(v) => put!(v, i64),
        Data::U8(v) => put!(v, u8),
        other => {
            return Err(err(
                path,
                format!("writing {:?} tensors is not supported", other.dtype()),
            ))
        }
    }
    crate::fsutil::write_atomic(path, &buf).map_err(|e| err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::vec_f32(vec![2, 3], vec![1.0, 2.0, 3.0, -4.0, 5.5, 6.0]).unwrap();
        let p = dir.path().join("a.npy");
        write(&p, &t).unwrap();
        assert_eq!(read(&p).unwrap(), t);
        std::fs::write(&p, b"not numpy").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("a.npy") && e.contains("not a .npy"), "{e}");
    }
}
