//! The one door to the `gemm` crate: a strided matrix product on one thread (callers split the
//! work across the rayon pool themselves, which scales better than the crate's own threading on
//! convolution shapes), and per-thread scratch buffers for packing operands such as im2col tiles.

use std::cell::RefCell;
use std::ops::{Add, Mul};
use std::thread::LocalKey;

/// The element types the products run in.
pub trait Float:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + std::fmt::Debug
    + Add<Output = Self>
    + Mul<Output = Self>
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    #[doc(hidden)]
    fn scratch() -> &'static LocalKey<RefCell<Vec<Self>>>;
}

thread_local! {
    static SCRATCH_F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static SCRATCH_F64: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn scratch() -> &'static LocalKey<RefCell<Vec<Self>>> {
        &SCRATCH_F32
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn scratch() -> &'static LocalKey<RefCell<Vec<Self>>> {
        &SCRATCH_F64
    }
}

/// Scratch buffers up to this many elements stay allocated on their thread between calls.
const KEEP_SCRATCH: usize = 1 << 22;

/// Runs `f` on a buffer of `len` elements of unspecified contents, reusing this thread's buffer.
pub(crate) fn with_scratch<T: Float, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    if len > KEEP_SCRATCH {
        return f(&mut vec![T::ZERO; len]);
    }
    T::scratch().with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len {
                v.resize(len, T::ZERO);
            }
            f(&mut v[..len])
        }
        // Re-entered on this thread (cannot happen today): use a fresh buffer.
        Err(_) => f(&mut vec![T::ZERO; len]),
    })
}

/// A read-only strided matrix: element `(i, j)` at `ptr + i*rs + j*cs`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<T> {
    pub ptr: *const T,
    pub rs: isize,
    pub cs: isize,
}

// SAFETY: a read-only view; whoever builds one vouches that its elements stay alive and unwritten
// while the tasks that share it run.
unsafe impl<T: Sync> Send for MatRef<T> {}
unsafe impl<T: Sync> Sync for MatRef<T> {}

impl<T> MatRef<T> {
    pub fn new(ptr: *const T, rs: usize, cs: usize) -> Self {
        MatRef {
            ptr,
            rs: rs as isize,
            cs: cs as isize,
        }
    }

    /// The submatrix starting at element `(i, j)`.
    pub fn at(self, i: usize, j: usize) -> Self {
        MatRef {
            ptr: self
                .ptr
                .wrapping_offset(i as isize * self.rs + j as isize * self.cs),
            ..self
        }
    }
}

/// `dst = (accumulate ? dst : 0) + scale · lhs · rhs`, with `lhs` m×k, `rhs` k×n and `dst` m×n
/// at `dst + i*dst_rs + j*dst_cs`, on the calling thread.
///
/// # Safety
/// Every element the strides address must be in bounds of live allocations, and `dst`'s elements
/// must not be read or written by anyone else during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: usize,
    dst_cs: usize,
    accumulate: bool,
    lhs: MatRef<T>,
    rhs: MatRef<T>,
    scale: T,
) {
    if m == 0 || n == 0 {
        return;
    }
    // The crate computes dst := alpha·dst + beta·lhs·rhs, reading dst only when asked to.
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_cs as isize,
        dst_rs as isize,
        accumulate,
        lhs.ptr,
        lhs.cs,
        lhs.rs,
        rhs.ptr,
        rhs.cs,
        rhs.rs,
        T::ONE,
        scale,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_product_and_accumulate() {
        // lhs 2x3 row-major, rhs 3x2 column-major, dst column-major.
        let a = [1.0f32, 2., 3., 4., 5., 6.];
        let b = [1.0f32, 0., 1., 0., 1., 1.]; // columns (1,0,1) and (0,1,1)
        let mut d = [10.0f32; 4];
        unsafe {
            gemm(
                2,
                2,
                3,
                d.as_mut_ptr(),
                1,
                2,
                true,
                MatRef::new(a.as_ptr(), 3, 1),
                MatRef::new(b.as_ptr(), 1, 3),
                2.0,
            )
        };
        // [[4, 5], [10, 11]] doubled, plus 10.
        assert_eq!(d, [18., 30., 20., 32.]);
        let mut z = [f32::NAN; 4];
        let k0 = MatRef::new(a.as_ptr(), 0, 0);
        unsafe { gemm(2, 2, 0, z.as_mut_ptr(), 2, 1, false, k0, k0, 1.0) };
        assert_eq!(z, [0.0; 4]);
    }

    #[test]
    fn scratch_is_reused_and_sized() {
        let p1 = with_scratch::<f32, _>(64, |b| {
            assert_eq!(b.len(), 64);
            b.as_ptr() as usize
        });
        let p2 = with_scratch::<f32, _>(32, |b| b.as_ptr() as usize);
        assert_eq!(p1, p2);
    }
}
