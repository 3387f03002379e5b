//! A fast path for the transposes HRNet-OCR's heads are made of (`permute(0, 2, 1)` of [N, C, H·W] maps):
//! after merging axes that stay adjacent, most permutations are a batch of 2-D transposes, done here in
//! cache-sized blocks, in parallel over the batch and strips of columns. Everything else takes the general path.

use super::par;
use crate::tensor::{Data, Tensor};

/// Side of the square blocks: 32×32 f32 is 4 KiB in and 4 KiB out, well inside L1.
const BLOCK: usize = 32;

/// `Some(result)` when `perm` reduces to (batched) 2-D transposes of f32 data.
pub(crate) fn try_fast(data: &Tensor, perm: &[usize]) -> Option<Tensor> {
    let Data::F32(v) = &data.data else {
        return None;
    };
    let (batch, rows, cols) = as_batched_2d(&data.shape, perm)?;
    let shape: Vec<usize> = perm.iter().map(|&a| data.shape[a]).collect();
    let mut out = crate::exec::recycle::f32_buffer(v.len());
    let plane = rows * cols;
    if plane == 0 {
        return Some(Tensor {
            shape,
            data: Data::F32(out),
        });
    }
    // Input plane b is rows×cols; output plane b is cols×rows. Work items: (plane, strip of
    // BLOCK input columns), that is of whole output rows, written front to back. On W48's
    // 512×32768 and 32768×512 planes that took 39–58 ms against 49–80 ms with strips of input
    // rows (alternating runs, 2 threads).
    let strips = cols.div_ceil(BLOCK);
    let work = batch * strips;
    let out_ptr = par::SyncPtr::new(&mut out);
    let body = |item: usize| {
        let (b, strip) = (item / strips, item % strips);
        let src = &v[b * plane..(b + 1) * plane];
        let c0 = strip * BLOCK;
        let c1 = (c0 + BLOCK).min(cols);
        let mut tmp = [[0.0f32; BLOCK]; BLOCK];
        for r0 in (0..rows).step_by(BLOCK) {
            let r1 = (r0 + BLOCK).min(rows);
            // The block's input rows go through a local copy: read down a column instead, its
            // rows sit one input row apart, at HRNet's sizes (32768 floats) a power-of-two stride
            // that maps them all to one cache set.
            for (r, t) in (r0..r1).zip(tmp.iter_mut()) {
                t[..c1 - c0].copy_from_slice(&src[r * cols + c0..r * cols + c1]);
            }
            for c in c0..c1 {
                // SAFETY: each work item writes output elements (c, r) of its own plane and strip
                // only, so no two items touch the same element; indices are within the plane.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        out_ptr.get().add(b * plane + c * rows + r0),
                        r1 - r0,
                    )
                };
                for (d, t) in dst.iter_mut().zip(&tmp) {
                    *d = t[c - c0];
                }
            }
        }
    };
    par::for_each(work, v.len(), body);
    Some(Tensor {
        shape,
        data: Data::F32(out),
    })
}

/// Reduces a transpose to `batch` independent `rows × cols → cols × rows` transposes, if it is one: size-1
/// axes dropped and axes that stay adjacent merged, the permutation must be `[1, 0]` or `[0, 2, 1]`.
fn as_batched_2d(shape: &[usize], perm: &[usize]) -> Option<(usize, usize, usize)> {
    let kept: Vec<usize> = perm.iter().copied().filter(|&a| shape[a] != 1).collect();
    // Runs of consecutive input axes in output order, each merged into one axis.
    let mut groups: Vec<(usize, usize)> = Vec::new(); // (first input axis, merged size)
    let mut prev: Option<usize> = None;
    for &a in &kept {
        match (prev, groups.last_mut()) {
            (Some(p), Some(g)) if next_kept(shape, p) == Some(a) => g.1 *= shape[a],
            _ => groups.push((a, shape[a])),
        }
        prev = Some(a);
    }
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&i| groups[i].0);
    match order.as_slice() {
        // Output group i is input group order-position; [1, 0]: output = (in1, in0).
        [1, 0] => Some((1, groups[1].1, groups[0].1)),
        [0, 2, 1] => Some((groups[0].1, groups[2].1, groups[1].1)),
        _ => None,
    }
}

/// The next input axis after `a` whose size is not 1.
fn next_kept(shape: &[usize], a: usize) -> Option<usize> {
    (a + 1..shape.len()).find(|&i| shape[i] != 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
        let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
        let strides: Vec<usize> = (0..shape.len())
            .map(|i| shape[i + 1..].iter().product())
            .collect();
        let n: usize = shape.iter().product();
        (0..n)
            .map(|o| {
                let mut rem = o;
                let mut src = 0;
                for (i, &d) in out_shape.iter().enumerate().rev() {
                    src += (rem % d) * strides[perm[i]];
                    rem /= d;
                }
                src
            })
            .map(|s| data[s])
            .collect()
    }

    #[test]
    fn matches_the_definition_where_it_applies() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[1, 37, 70], &[0, 2, 1]),
            (&[3, 5, 33, 2], &[0, 3, 1, 2]),
            (&[2, 19, 45], &[0, 2, 1]),
            (&[40, 65], &[1, 0]),
            (&[2, 3, 4, 5], &[2, 3, 0, 1]),
            (&[1, 8, 1, 9], &[0, 3, 2, 1]),
            (&[2, 96, 64], &[0, 2, 1]),
            (&[1, 70, 1, 33], &[0, 3, 2, 1]),
        ];
        for (shape, perm) in cases {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 7.0).collect();
            let t = Tensor::vec_f32(shape.to_vec(), data.clone()).unwrap();
            let got = try_fast(&t, perm).unwrap_or_else(|| panic!("{shape:?} {perm:?} not taken"));
            assert_eq!(
                got.as_f32s(),
                naive(&data, shape, perm),
                "{shape:?} {perm:?}"
            );
            let want_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
            assert_eq!(got.shape, want_shape);
        }
    }

    #[test]
    fn other_permutations_take_the_general_path() {
        let t = Tensor::vec_f32(vec![2, 3, 4], vec![0.0; 24]).unwrap();
        assert!(try_fast(&t, &[1, 0, 2]).is_none());
        assert!(try_fast(&t, &[2, 0, 1]).is_some(), "merges to [1, 0]");
        assert!(
            try_fast(&t, &[0, 1, 2]).is_none(),
            "identity is not a transpose"
        );
    }
}
