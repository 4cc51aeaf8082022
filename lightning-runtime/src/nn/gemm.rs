//! The one matrix multiply the fast layers share: the `gemm` crate candle itself uses on the
//! CPU, with candle's thread setting.

use candle_core::WithDType;
use gemm::{gemm, Parallelism};

fn parallelism() -> Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// A read-only operand: its elements and its (row stride, column stride).
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T>(pub &'a [T], pub (usize, usize));

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)`.
pub(crate) fn matmul<T: WithDType>(
    mnk: (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
) {
    matmul_into(mnk, dst, mnk.1, accumulate, lhs, rhs)
}

/// [`matmul`] into a destination whose rows are `dst_rs` apart (≥ n), overwriting it.
pub(crate) fn matmul_strided<T: WithDType>(
    mnk: (usize, usize, usize),
    dst: &mut [T],
    dst_rs: usize,
    lhs: Mat<T>,
    rhs: Mat<T>,
) {
    matmul_into(mnk, dst, dst_rs, false, lhs, rhs)
}

fn matmul_into<T: WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    Mat(lhs, (lhs_rs, lhs_cs)): Mat<T>,
    Mat(rhs, (rhs_rs, rhs_cs)): Mat<T>,
) {
    assert!(dst_rs >= n && (m == 0 || n == 0 || dst.len() >= (m - 1) * dst_rs + n), "gemm destination too short");
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts above bound every element gemm reads (lhs, rhs) or writes (dst)
    // inside the slices; the slices do not overlap (one is `&mut`).
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            T::from_f64(1.0),
            T::from_f64(1.0),
            false,
            false,
            false,
            parallelism(),
        )
    }
}
