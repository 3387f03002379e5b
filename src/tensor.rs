//! A typed, owned tensor: the value the constant folder and the executor compute with, and the bridge to
//! and from ONNX `TensorProto` (raw little-endian bytes or the typed repeated fields, whichever the exporter
//! wrote).

use crate::onnx::proto::{tensor_proto::DataLocation, tensor_proto::DataType, TensorProto};
use crate::onnx::{Error, Result};
use half::{bf16, f16};

/// Element storage, one variant per ONNX element type the project computes with.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I16(Vec<i16>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
}

/// Runs `$body` with `$v` bound to the inner `Vec` of any variant.
#[macro_export]
macro_rules! dispatch_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::Data::F32($v) => $body,
            $crate::tensor::Data::F64($v) => $body,
            $crate::tensor::Data::F16($v) => $body,
            $crate::tensor::Data::BF16($v) => $body,
            $crate::tensor::Data::I64($v) => $body,
            $crate::tensor::Data::I32($v) => $body,
            $crate::tensor::Data::I16($v) => $body,
            $crate::tensor::Data::I8($v) => $body,
            $crate::tensor::Data::U8($v) => $body,
            $crate::tensor::Data::U16($v) => $body,
            $crate::tensor::Data::U32($v) => $body,
            $crate::tensor::Data::U64($v) => $body,
            $crate::tensor::Data::Bool($v) => $body,
        }
    };
}

/// Maps each variant to a new `Data` of the same variant through a generic expression over its `Vec`.
#[macro_export]
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::Data::F32($v) => $crate::tensor::Data::F32($body),
            $crate::tensor::Data::F64($v) => $crate::tensor::Data::F64($body),
            $crate::tensor::Data::F16($v) => $crate::tensor::Data::F16($body),
            $crate::tensor::Data::BF16($v) => $crate::tensor::Data::BF16($body),
            $crate::tensor::Data::I64($v) => $crate::tensor::Data::I64($body),
            $crate::tensor::Data::I32($v) => $crate::tensor::Data::I32($body),
            $crate::tensor::Data::I16($v) => $crate::tensor::Data::I16($body),
            $crate::tensor::Data::I8($v) => $crate::tensor::Data::I8($body),
            $crate::tensor::Data::U8($v) => $crate::tensor::Data::U8($body),
            $crate::tensor::Data::U16($v) => $crate::tensor::Data::U16($body),
            $crate::tensor::Data::U32($v) => $crate::tensor::Data::U32($body),
            $crate::tensor::Data::U64($v) => $crate::tensor::Data::U64($body),
            $crate::tensor::Data::Bool($v) => $crate::tensor::Data::Bool($body),
        }
    };
}

impl Data {
    pub fn len(&self) -> usize {
        dispatch_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DataType {
        match self {
            Data::F32(_) => DataType::Float,
            Data::F64(_) => DataType::Double,
            Data::F16(_) => DataType::Float16,
            Data::BF16(_) => DataType::Bfloat16,
            Data::I64(_) => DataType::Int64,
            Data::I32(_) => DataType::Int32,
            Data::I16(_) => DataType::Int16,
            Data::I8(_) => DataType::Int8,
            Data::U8(_) => DataType::Uint8,
            Data::U16(_) => DataType::Uint16,
            Data::U32(_) => DataType::Uint32,
            Data::U64(_) => DataType::Uint64,
            Data::Bool(_) => DataType::Bool,
        }
    }
}

/// A dense row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Tensor {
    /// A tensor, checking that `data` holds exactly `shape.iter().product()` elements.
    pub fn new(shape: Vec<usize>, data: Data) -> Result<Self> {
        let want: usize = shape.iter().product();
        if want != data.len() {
            return Err(Error::tensor(
                "<value>",
                format!(
                    "shape {shape:?} needs {want} elements, data has {}",
                    data.len()
                ),
            ));
        }
        Ok(Tensor { shape, data })
    }

    pub fn scalar_i64(v: i64) -> Self {
        Tensor {
            shape: vec![],
            data: Data::I64(vec![v]),
        }
    }

    pub fn vec_i64(v: Vec<i64>) -> Self {
        Tensor {
            shape: vec![v.len()],
            data: Data::I64(v),
        }
    }

    pub fn vec_f32(shape: Vec<usize>, v: Vec<f32>) -> Result<Self> {
        Self::new(shape, Data::F32(v))
    }

    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes of element storage.
    pub fn byte_len(&self) -> usize {
        dispatch_data!(&self.data, v => std::mem::size_of_val(v.as_slice()))
    }

    /// The values as i64, for shape arithmetic; any integer type converts, floats do not.
    pub fn as_i64s(&self) -> Option<Vec<i64>> {
        Some(match &self.data {
            Data::I64(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I16(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U16(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U64(v) => v.iter().map(|&x| x as i64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            _ => return None,
        })
    }

    /// The values as f32 (any numeric type converts).
    pub fn as_f32s(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::F64(v) => v.iter().map(|&x| x as f32).collect(),
            Data::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            Data::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I16(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I8(v) => v.iter().map(|&x| x as f32).collect(),
            Data::U8(v) => v.iter().map(|&x| x as f32).collect(),
            Data::U16(v) => v.iter().map(|&x| x as f32).collect(),
            Data::U32(v) => v.iter().map(|&x| x as f32).collect(),
            Data::U64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Decodes an ONNX tensor from `raw_data` (little-endian) or its typed fields. External data must have
    /// been resolved into `raw_data` by the loader first.
    pub fn from_proto(t: &TensorProto) -> Result<Self> {
        let name = t.name();
        let shape = t
            .dims
            .iter()
            .map(|&d| {
                usize::try_from(d)
                    .map_err(|_| Error::tensor(name, format!("negative dimension {d}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let numel = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::tensor(name, "element count overflows"))?;
        if t.data_location() == DataLocation::External && t.raw_data.is_none() {
            return Err(Error::tensor(name, "external data was not resolved"));
        }
        let dtype = DataType::try_from(t.data_type())
            .map_err(|_| Error::tensor(name, format!("unknown data type {}", t.data_type())))?;
        let data = match &t.raw_data {
            Some(raw) => decode_raw(name, dtype, raw, numel)?,
            None => decode_typed(name, dtype, t)?,
        };
        if data.len() != numel {
            return Err(Error::tensor(
                name,
                format!(
                    "dims {:?} need {numel} elements, the tensor holds {}",
                    t.dims,
                    data.len()
                ),
            ));
        }
        Ok(Tensor { shape, data })
    }

    /// Encodes as an ONNX tensor with `raw_data`, the form exporters write and TensorRT reads fastest.
    pub fn to_proto(&self, name: &str) -> TensorProto {
        let raw: Vec<u8> = match &self.data {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::BF16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I8(v) => v.iter().map(|&x| x as u8).collect(),
            Data::U8(v) => v.clone(),
            Data::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as u8).collect(),
        };
        TensorProto {
            dims: self.shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(self.dtype() as i32),
            name: Some(name.to_string()),
            raw_data: Some(raw.into()),
            ..Default::default()
        }
    }
}

/// Size in bytes of one element, for the fixed-size types; `None` for strings and sub-byte types.
pub fn elem_size(dtype: DataType) -> Option<usize> {
    use DataType::*;
    Some(match dtype {
        Float | Int32 | Uint32 => 4,
        Double | Int64 | Uint64 | Complex64 => 8,
        Complex128 => 16,
        Float16 | Bfloat16 | Int16 | Uint16 => 2,
        Int8 | Uint8 | Bool | Float8e4m3fn | Float8e4m3fnuz | Float8e5m2 | Float8e5m2fnuz
        | Float8e8m0 => 1,
        _ => return None,
    })
}

fn decode_raw(name: &str, dtype: DataType, raw: &[u8], numel: usize) -> Result<Data> {
    let size = elem_size(dtype)
        .ok_or_else(|| Error::tensor(name, format!("data type {dtype:?} is not supported here")))?;
    let Some(need) = numel.checked_mul(size) else {
        return Err(Error::tensor(
            name,
            format!("{numel} elements of {dtype:?} overflow the byte count"),
        ));
    };
    if raw.len() != need {
        return Err(Error::tensor(
            name,
            format!(
                "raw_data holds {} bytes, {numel} elements of {dtype:?} need {need}",
                raw.len()
            ),
        ));
    }
    macro_rules! le {
        ($t:ty, $n:expr) => {
            raw.chunks_exact($n)
                .map(|c| <$t>::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
    }
    Ok(match dtype {
        DataType::Float => Data::F32(le!(f32, 4)),
        DataType::Double => Data::F64(le!(f64, 8)),
        DataType::Float16 => Data::F16(le!(f16, 2)),
        DataType::Bfloat16 => Data::BF16(le!(bf16, 2)),
        DataType::Int64 => Data::I64(le!(i64, 8)),
        DataType::Int32 => Data::I32(le!(i32, 4)),
        DataType::Int16 => Data::I16(le!(i16, 2)),
        DataType::Int8 => Data::I8(raw.iter().map(|&x| x as i8).collect()),
        DataType::Uint8 => Data::U8(raw.to_vec()),
        DataType::Uint16 => Data::U16(le!(u16, 2)),
        DataType::Uint32 => Data::U32(le!(u32, 4)),
        DataType::Uint64 => Data::U64(le!(u64, 8)),
        DataType::Bool => Data::Bool(raw.iter().map(|&x| x != 0).collect()),
        other => {
            return Err(Error::tensor(
                name,
                format!("data type {other:?} is not supported here"),
            ))
        }
    })
}

/// The typed repeated fields, as the ONNX spec assigns them: small integer types and f16 bit patterns live
/// in `int32_data`, unsigned 32/64-bit in `uint64_data`.
fn decode_typed(name: &str, dtype: DataType, t: &TensorProto) -> Result<Data> {
    let i32s = &t.int32_data;
    Ok(match dtype {
        DataType::Float => Data::F32(t.float_data.clone()),
        DataType::Double => Data::F64(t.double_data.clone()),
        DataType::Int64 => Data::I64(t.int64_data.clone()),
        DataType::Int32 => Data::I32(i32s.clone()),
        DataType::Int16 => Data::I16(i32s.iter().map(|&x| x as i16).collect()),
        DataType::Int8 => Data::I8(i32s.iter().map(|&x| x as i8).collect()),
        DataType::Uint8 => Data::U8(i32s.iter().map(|&x| x as u8).collect()),
        DataType::Uint16 => Data::U16(i32s.iter().map(|&x| x as u16).collect()),
        DataType::Bool => Data::Bool(i32s.iter().map(|&x| x != 0).collect()),
        DataType::Float16 => Data::F16(i32s.iter().map(|&x| f16::from_bits(x as u16)).collect()),
        DataType::Bfloat16 => Data::BF16(i32s.iter().map(|&x| bf16::from_bits(x as u16)).collect()),
        DataType::Uint32 => Data::U32(t.uint64_data.iter().map(|&x| x as u32).collect()),
        DataType::Uint64 => Data::U64(t.uint64_data.clone()),
        other => {
            return Err(Error::tensor(
                name,
                format!("data type {other:?} is not supported here"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_typed_fields_decode_alike() {
        let t = Tensor::vec_f32(vec![2, 2], vec![1.0, -2.5, 3.25, 0.0]).unwrap();
        let raw = t.to_proto("w");
        assert_eq!(Tensor::from_proto(&raw).unwrap(), t);
        let typed = TensorProto {
            dims: vec![2, 2],
            data_type: Some(DataType::Float as i32),
            float_data: vec![1.0, -2.5, 3.25, 0.0],
            ..Default::default()
        };
        assert_eq!(Tensor::from_proto(&typed).unwrap(), t);
    }

    #[test]
    fn f16_bits_in_int32_data() {
        let typed = TensorProto {
            dims: vec![2],
            data_type: Some(DataType::Float16 as i32),
            int32_data: vec![0x3c00, 0xc000],
            ..Default::default()
        };
        let t = Tensor::from_proto(&typed).unwrap();
        assert_eq!(t.as_f32s(), vec![1.0, -2.0]);
    }

    #[test]
    fn size_mismatch_names_the_tensor() {
        let mut p = Tensor::vec_i64(vec![1, 2, 3]).to_proto("shape_const");
        p.dims = vec![4];
        let err = Tensor::from_proto(&p).unwrap_err().to_string();
        assert!(
            err.contains("shape_const") && err.contains("24 bytes"),
            "{err}"
        );
    }
}
