//! Strided matrix products on plain `f32` slices through the `gemm` crate (the kernels burn's
//! CPU backend uses), shared by the per-example gradient engine and Deep Packet's
//! hand-differentiated convolution block.

/// A matrix operand: `m[i, j] = data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    /// Backing storage.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat { data, rs: cols, cs: 1 }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Mat {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn fits(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }
}

/// `dst[m×n] (+)= a[m×k] · b[k×n]`, `dst` row-major with row stride `dst_rs`; `parallel` splits
/// the product over rayon's threads (leave it off inside a parallel loop).
///
/// Panics if an operand is out of bounds: that is a programming error, never bad input.
#[allow(clippy::too_many_arguments)]
pub fn gemm_into(
    dst: &mut [f32],
    dst_rs: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    [m, n, k]: [usize; 3],
    accumulate: bool,
    parallel: bool,
) {
    assert!(
        a.fits(m, k) && b.fits(k, n) && (m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len()),
        "gemm operands out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    let par = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the bounds of all three operands were checked above; `dst` is borrowed mutably
    // and cannot alias the shared `a` and `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_naive_loops() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut c = vec![1f32; m * n];
        gemm_into(&mut c, n, Mat::rows(&a, k), Mat::rows(&b, n), [m, n, k], true, false);
        // aᵀ-of-the-transpose: (bᵀ aᵀ)ᵀ = a b, written transposed.
        let mut ct = vec![0f32; n * m];
        gemm_into(
            &mut ct,
            m,
            Mat::rows(&b, n).t(),
            Mat::rows(&a, k).t(),
            [n, m, k],
            false,
            true,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
                assert!((c[i * n + j] - 1.0 - want).abs() < 1e-5);
                assert!((ct[j * m + i] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn empty_inner_dimension_zeroes_or_keeps() {
        let mut c = vec![3f32; 4];
        gemm_into(&mut c, 2, Mat::rows(&[], 0), Mat::rows(&[], 2), [2, 2, 0], true, false);
        assert_eq!(c, [3.0; 4]);
        gemm_into(&mut c, 2, Mat::rows(&[], 0), Mat::rows(&[], 2), [2, 2, 0], false, false);
        assert_eq!(c, [0.0; 4]);
    }
}
