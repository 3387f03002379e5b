//! Element types as a trait, so that kernels are written once, generically, and instantiated per
//! [`Data`] variant by the dispatch macros below.

use super::{OpError, OpResult};
use crate::tensor::Data;
use half::{bf16, f16};

/// Any element type a tensor can hold: conversions (with ONNX `Cast` semantics) and wrapping into
/// [`Data`].
pub trait Elem: Copy + PartialOrd + PartialEq + Default + std::fmt::Debug + 'static {
    const FLOAT: bool;
    fn to_f64(self) -> f64;
    /// Floats to integers truncate toward zero and saturate (NaN gives 0); to bool, non-zero is
    /// true.
    fn from_f64(v: f64) -> Self;
    /// Integer to integer conversion wraps, like a C cast.
    fn to_i64(self) -> i64;
    fn from_i64(v: i64) -> Self;
    fn wrap(v: Vec<Self>) -> Data;
}

/// Numeric element types: the arithmetic the ONNX math ops need, with ONNX semantics. Integer ops
/// wrap on overflow; integer division truncates and refuses a zero divisor.
pub trait Num: Elem {
    const SIGNED: bool;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> OpResult<Self>;
    fn neg(self) -> Self;
    fn abs(self) -> Self;
    /// `self` raised to `e`, where `e` may be of another numeric type (Pow's T1).
    fn pow_f64(self, e: f64, e_is_int: bool) -> Self;
    fn is_nan(self) -> bool;
    /// Float-only unary math, in the type's own precision (f16/bf16 compute in f32 and round once).
    fn float_op(self, f: fn(f32) -> f32, g: fn(f64) -> f64) -> Self;
}

macro_rules! int_elem {
    ($($t:ty => $variant:ident, $signed:expr;)*) => {$(
        impl Elem for $t {
            const FLOAT: bool = false;
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn to_i64(self) -> i64 { self as i64 }
            fn from_i64(v: i64) -> Self { v as $t }
            fn wrap(v: Vec<Self>) -> Data { Data::$variant(v) }
        }
        impl Num for $t {
            const SIGNED: bool = $signed;
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn div(self, o: Self) -> OpResult<Self> {
                if o == 0 {
                    return Err(OpError::invalid("integer division by zero"));
                }
                Ok(self.wrapping_div(o))
            }
            #[allow(unused_comparisons)]
            fn neg(self) -> Self { (0 as $t).wrapping_sub(self) }
            #[allow(unused_comparisons)]
            fn abs(self) -> Self { if self < 0 { (0 as $t).wrapping_sub(self) } else { self } }
            fn pow_f64(self, e: f64, e_is_int: bool) -> Self {
                // Exact (wrapping) for non-negative integer exponents; otherwise through f64 and
                // truncated, as C++'s std::pow followed by a cast does it in onnxruntime.
                if e_is_int && e >= 0.0 && e <= u32::MAX as f64 {
                    self.wrapping_pow(e as u32)
                } else {
                    (self as f64).powf(e) as $t
                }
            }
            fn is_nan(self) -> bool { false }
            fn float_op(self, _: fn(f32) -> f32, g: fn(f64) -> f64) -> Self { g(self as f64) as $t }
        }
    )*};
}

int_elem! {
    i64 => I64, true;
    i32 => I32, true;
    i16 => I16, true;
    i8 => I8, true;
    u8 => U8, false;
    u16 => U16, false;
    u32 => U32, false;
    u64 => U64, false;
}

macro_rules! native_float {
    ($($t:ty => $variant:ident;)*) => {$(
        impl Elem for $t {
            const FLOAT: bool = true;
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn to_i64(self) -> i64 { self as i64 }
            fn from_i64(v: i64) -> Self { v as $t }
            fn wrap(v: Vec<Self>) -> Data { Data::$variant(v) }
        }
    )*};
}

native_float! {
    f32 => F32;
    f64 => F64;
}

impl Num for f32 {
    const SIGNED: bool = true;
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn sub(self, o: Self) -> Self {
        self - o
    }
    fn mul(self, o: Self) -> Self {
        self * o
    }
    fn div(self, o: Self) -> OpResult<Self> {
        Ok(self / o)
    }
    fn neg(self) -> Self {
        -self
    }
    fn abs(self) -> Self {
        self.abs()
    }
    fn pow_f64(self, e: f64, _: bool) -> Self {
        self.powf(e as f32)
    }
    fn is_nan(self) -> bool {
        self.is_nan()
    }
    fn float_op(self, f: fn(f32) -> f32, _: fn(f64) -> f64) -> Self {
        f(self)
    }
}

impl Num for f64 {
    const SIGNED: bool = true;
    fn add(self, o: Self) -> Self {
        self + o
    }
    fn sub(self, o: Self) -> Self {
        self - o
    }
    fn mul(self, o: Self) -> Self {
        self * o
    }
    fn div(self, o: Self) -> OpResult<Self> {
        Ok(self / o)
    }
    fn neg(self) -> Self {
        -self
    }
    fn abs(self) -> Self {
        self.abs()
    }
    fn pow_f64(self, e: f64, _: bool) -> Self {
        self.powf(e)
    }
    fn is_nan(self) -> bool {
        self.is_nan()
    }
    fn float_op(self, _: fn(f32) -> f32, g: fn(f64) -> f64) -> Self {
        g(self)
    }
}

/// f16 and bf16 compute in f32 and round to nearest even once per op, which is how a
/// reduced-precision tensor behaves when it is stored after every op.
macro_rules! half_float {
    ($($t:ty => $variant:ident;)*) => {$(
        impl Elem for $t {
            const FLOAT: bool = true;
            fn to_f64(self) -> f64 { self.to_f64() }
            fn from_f64(v: f64) -> Self { <$t>::from_f64(v) }
            fn to_i64(self) -> i64 { self.to_f32() as i64 }
            fn from_i64(v: i64) -> Self { <$t>::from_f64(v as f64) }
            fn wrap(v: Vec<Self>) -> Data { Data::$variant(v) }
        }
        impl Num for $t {
            const SIGNED: bool = true;
            fn add(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() + o.to_f32()) }
            fn sub(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() - o.to_f32()) }
            fn mul(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() * o.to_f32()) }
            fn div(self, o: Self) -> OpResult<Self> {
                Ok(<$t>::from_f32(self.to_f32() / o.to_f32()))
            }
            fn neg(self) -> Self { -self }
            fn abs(self) -> Self { <$t>::from_f32(self.to_f32().abs()) }
            fn pow_f64(self, e: f64, _: bool) -> Self {
                <$t>::from_f32(self.to_f32().powf(e as f32))
            }
            fn is_nan(self) -> bool { self.is_nan() }
            fn float_op(self, f: fn(f32) -> f32, _: fn(f64) -> f64) -> Self {
                <$t>::from_f32(f(self.to_f32()))
            }
        }
    )*};
}

half_float! {
    f16 => F16;
    bf16 => BF16;
}

impl Elem for bool {
    const FLOAT: bool = false;
    fn to_f64(self) -> f64 {
        self as u8 as f64
    }
    fn from_f64(v: f64) -> Self {
        // NaN is non-zero, as in numpy.
        v != 0.0
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
    fn from_i64(v: i64) -> Self {
        v != 0
    }
    fn wrap(v: Vec<Self>) -> Data {
        Data::Bool(v)
    }
}

/// Runs `$body` with `$v: &Vec<T>` bound for every numeric variant (not bool); `$bool` handles
/// bool.
#[macro_export]
#[doc(hidden)]
macro_rules! dispatch_num {
    ($data:expr, $v:ident => $body:expr, bool => $bool:expr) => {
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
            $crate::tensor::Data::Bool(_) => $bool,
        }
    };
}

/// The same variant's `Vec` out of another `Data`, for ops whose inputs must share one element
/// type.
pub trait Unwrap: Sized {
    fn unwrap_same(d: &Data) -> Option<&Vec<Self>>;
}

macro_rules! unwrap_same {
    ($($t:ty => $variant:ident;)*) => {$(
        impl Unwrap for $t {
            fn unwrap_same(d: &Data) -> Option<&Vec<Self>> {
                match d { Data::$variant(v) => Some(v), _ => None }
            }
        }
    )*};
}

unwrap_same! {
    f32 => F32; f64 => F64; f16 => F16; bf16 => BF16; i64 => I64; i32 => I32; i16 => I16; i8 => I8;
    u8 => U8; u16 => U16; u32 => U32; u64 => U64; bool => Bool;
}

/// `d`'s values as `T`, or an error naming both types when `d` holds another type.
pub fn same<'d, T: Unwrap>(d: &'d Data, want: &Data, what: &str) -> OpResult<&'d Vec<T>> {
    T::unwrap_same(d).ok_or_else(|| {
        OpError::invalid(format!(
            "{what} must have the same element type, got {:?} and {:?}",
            want.dtype(),
            d.dtype()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_division_truncates_toward_zero() {
        assert_eq!(Num::div(-7i64, 2).unwrap(), -3);
        assert_eq!(Num::div(7i32, -2).unwrap(), -3);
        assert!(Num::div(1u8, 0).is_err());
        // i64::MIN / -1 overflows: it wraps instead of panicking.
        assert_eq!(Num::div(i64::MIN, -1).unwrap(), i64::MIN);
    }

    #[test]
    fn float_to_int_truncates_and_saturates() {
        assert_eq!(i32::from_f64(-2.7), -2);
        assert_eq!(u8::from_f64(300.0), 255);
        assert_eq!(i64::from_f64(f64::NAN), 0);
        assert!(bool::from_f64(f64::NAN));
        assert_eq!(i8::from_i64(200), -56);
    }

    #[test]
    fn integer_pow() {
        assert_eq!(3i64.pow_f64(4.0, true), 81);
        assert_eq!(2i64.pow_f64(-1.0, true), 0);
        assert_eq!(4i32.pow_f64(0.5, false), 2);
    }
}
