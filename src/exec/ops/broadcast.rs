//! Multidirectional (numpy) broadcasting: the output shape of several inputs, and for one input the
//! element each output position reads.

use super::{strides, OpError, OpResult};

/// The numpy broadcast of several shapes: aligned from the right, each dimension equal or 1.
pub fn broadcast_shapes(shapes: &[&[usize]]) -> OpResult<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[off + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(OpError::invalid(format!(
                    "shapes {shapes:?} do not broadcast"
                )));
            }
        }
    }
    super::numel(&out)?;
    Ok(out)
}

/// For each position of `out` (row-major), the flat index of the element of a tensor of shape
/// `shape` that broadcasting reads there. `shape` must broadcast to `out`.
pub fn offsets(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    if shape == out {
        return (0..n).collect();
    }
    let off = out.len() - shape.len();
    let in_strides = strides(shape);
    // Stride 0 on broadcast dimensions.
    let step: Vec<usize> = (0..out.len())
        .map(|i| {
            if i < off || shape[i - off] == 1 {
                0
            } else {
                in_strides[i - off]
            }
        })
        .collect();
    let mut idx = vec![0usize; out.len()];
    let mut cur = 0usize;
    let mut res = Vec::with_capacity(n);
    for _ in 0..n {
        res.push(cur);
        // Odometer increment, updating the input offset incrementally.
        for d in (0..out.len()).rev() {
            idx[d] += 1;
            cur += step[d];
            if idx[d] < out[d] {
                break;
            }
            cur -= step[d] * idx[d];
            idx[d] = 0;
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_broadcast_from_the_right() {
        assert_eq!(
            broadcast_shapes(&[&[2, 1, 4], &[3, 1]]).unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(broadcast_shapes(&[&[], &[5]]).unwrap(), vec![5]);
        assert_eq!(broadcast_shapes(&[&[0, 1], &[1, 3]]).unwrap(), vec![0, 3]);
        assert!(broadcast_shapes(&[&[2, 3], &[4, 3]]).is_err());
    }

    #[test]
    fn offsets_repeat_broadcast_dims() {
        // [2,1] against [2,3]: each row repeats its one element.
        assert_eq!(offsets(&[2, 1], &[2, 3]), vec![0, 0, 0, 1, 1, 1]);
        // [3] against [2,3]: the row repeats.
        assert_eq!(offsets(&[3], &[2, 3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(offsets(&[], &[2]), vec![0, 0]);
        assert_eq!(offsets(&[1, 2], &[2, 2]), vec![0, 1, 0, 1]);
        assert!(offsets(&[0], &[0]).is_empty());
    }
}
