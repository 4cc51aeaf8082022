//! Our kernel over several threads: C split into bands of rows, one a thread on rayon's pool,
//! each band a whole one-thread product (its own packing buffers: they are thread-local).
//! Every band packs all of B again, which costs one copy per `2 × band rows` FLOPs.

use rayon::prelude::*;

use super::{block, Mat};

/// Below this many multiply-adds a product stays on one thread (rayon's hand-off costs
/// microseconds, a whole 64×128×128 product about ten).
const MIN_MACS: usize = 1 << 20;

/// `dst (m×n, rows ldc apart) = [dst +] a · b` on up to `threads` threads.
///
/// # Safety
/// AVX-512F is available.
pub(super) unsafe fn gemm(
    threads: usize,
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    ldc: usize,
    accumulate: bool,
    Mat(a, (rs, cs)): Mat<f32>,
    b: Mat<f32>,
) {
    let bands = threads.min(m / 8).max(1);
    if bands == 1 || m * n * k < MIN_MACS {
        // SAFETY: AVX-512F is available (this function's contract)
        return unsafe { block::gemm((m, n, k), dst, ldc, accumulate, Mat(a, (rs, cs)), b) };
    }
    let rows = m.div_ceil(bands);
    dst.par_chunks_mut(rows * ldc).enumerate().for_each(|(band, dst)| {
        let i0 = band * rows;
        if i0 < m {
            let band_a = Mat(&a[i0 * rs..], (rs, cs));
            // SAFETY: AVX-512F is available (this function's contract)
            unsafe { block::gemm((rows.min(m - i0), n, k), dst, ldc, accumulate, band_a, b) };
        }
    });
}
