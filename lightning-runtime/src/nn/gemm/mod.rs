//! The one matrix multiply the fast layers share. In `f32` on an x86-64 CPU with AVX-512, our
//! own kernel (`block.rs`, `pack.rs`, `avx512.rs`; `par.rs` over candle's threads): the `gemm`
//! crate enables its AVX-512 `f32` kernels only on nightly Rust, and its AVX2 kernel reaches
//! under half of such a core's peak. Everything else (other dtypes, no AVX-512, other CPUs,
//! products under 16 rows or columns) calls the `gemm` crate that candle itself uses on the
//! CPU, with candle's thread setting.

use std::any::TypeId;

use candle_core::WithDType;
use gemm::{gemm, Parallelism};

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod block;
#[cfg(target_arch = "x86_64")]
mod pack;
#[cfg(target_arch = "x86_64")]
mod par;
#[cfg(all(test, target_arch = "x86_64"))]
mod tests;
#[cfg(target_arch = "x86_64")]
mod transpose;
#[cfg(target_arch = "x86_64")]
pub(super) use transpose::mask;

fn parallelism() -> Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// A read-only operand: its elements and its (row stride, column stride).
#[derive(Clone, Copy)]
pub struct Mat<'a, T>(pub &'a [T], pub (usize, usize));

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

/// Whether this CPU runs our AVX-512 kernel (std caches the CPUID answer).
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `T`'s slice as `U`'s when they are the same type.
fn same<T: 'static, U: 'static>(s: &[T]) -> Option<&[U]> {
    // SAFETY: T and U are the same type, so the pointer, length and lifetime carry over
    (TypeId::of::<T>() == TypeId::of::<U>()).then(|| unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len()) })
}

fn matmul_into<T: WithDType>(
    mnk: (usize, usize, usize),
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
) {
    check_bounds(mnk, dst.len(), dst_rs, lhs, rhs);
    if let (Some(l), Some(r)) = (same::<T, f32>(lhs.0), same::<T, f32>(rhs.0)) {
        if ours_for(mnk) {
            let len = dst.len();
            // SAFETY: T is f32 (`same` returned Some), so the pointer and length carry over
            let dst = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast::<f32>(), len) };
            return ours(mnk, dst, dst_rs, accumulate, Mat(l, lhs.1), Mat(r, rhs.1));
        }
    }
    gemm_crate(mnk, dst, dst_rs, accumulate, lhs, rhs)
}

/// Whether our kernel takes this `f32` product: AVX-512, and at least 16 rows and columns:
/// with fewer (the MLP's 10-class layer, a 3×3 single-channel convolution's weight gradient)
/// packing is not repaid and the `gemm` crate measured faster (`benches/gemm.rs`).
fn ours_for((m, n, _): (usize, usize, usize)) -> bool {
    m >= 16 && n >= 16 && avx512_available()
}

fn check_bounds<T>((m, n, k): (usize, usize, usize), dst: usize, dst_rs: usize, lhs: Mat<T>, rhs: Mat<T>) {
    let Mat(lhs, (lhs_rs, lhs_cs)) = lhs;
    let Mat(rhs, (rhs_rs, rhs_cs)) = rhs;
    assert!(dst_rs >= n && (m == 0 || n == 0 || dst >= (m - 1) * dst_rs + n), "gemm destination too short");
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
}

/// Our AVX-512 kernel, with candle's thread setting (bands of rows over rayon); panics
/// without AVX-512. Public (hidden) for `benches/gemm.rs`.
#[doc(hidden)]
pub fn ours(
    mnk: (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat<f32>,
    rhs: Mat<f32>,
) {
    assert!(avx512_available(), "this CPU has no AVX-512");
    check_bounds(mnk, dst.len(), dst_rs, lhs, rhs);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX-512F was detected just above
    unsafe {
        par::gemm(candle_core::utils::get_num_threads(), mnk, dst, dst_rs, accumulate, lhs, rhs)
    }
}

/// The `gemm` crate, with candle's thread setting. Public (hidden) for `benches/gemm.rs`.
#[doc(hidden)]
pub fn gemm_crate<T: WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
) {
    check_bounds((m, n, k), dst.len(), dst_rs, lhs, rhs);
    let (Mat(lhs, (lhs_rs, lhs_cs)), Mat(rhs, (rhs_rs, rhs_cs))) = (lhs, rhs);
    // SAFETY: check_bounds bounds every element gemm reads (lhs, rhs) or writes (dst)
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
