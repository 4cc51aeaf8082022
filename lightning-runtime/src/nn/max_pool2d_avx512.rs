//! The 2×2, stride-2 max-pool row of [`MaxPool2d`](super::MaxPool2d) for `f32` with AVX-512:
//! 16 windows a step, the pixel pairs split into even and odd columns by two permutes, and the
//! scalar row's branch-free tournament done with compare masks. Rows shorter than 16 windows
//! (a 26-wide conv output has 13) run as one masked step. It was 10% of the CNN epoch scalar.

use std::arch::x86_64::*;

use super::gemm::mask;

/// Proof that the CPU has AVX-512F: the only way to reach the kernel.
#[derive(Clone, Copy)]
pub(super) struct Avx512(());

impl Avx512 {
    pub(super) fn detect() -> Option<Avx512> {
        super::gemm::avx512_available().then_some(Avx512(()))
    }

    /// The scalar `pool_2x2_row` and, when `relu`, its `relu_row`, in one pass, with the same
    /// results bit for bit: ties go to the earlier pixel, a NaN wins only as a window's first
    /// pixel (the compares are ordered, as `>` is), and a non-positive maximum becomes 0 with
    /// no argmax.
    pub(super) fn pool_2x2_row(self, rows: &[f32], w: usize, base: u32, relu: bool, y: &mut [f32], arg: &mut [u32]) {
        let (top, bottom) = rows.split_at(w);
        assert!(bottom.len() == w && 2 * y.len() <= w && arg.len() == y.len(), "max_pool2d row geometry");
        // SAFETY: `self` proves the CPU has AVX-512F; the lengths are checked just above
        unsafe { row(top, bottom, base, relu, y, arg) }
    }
}

/// Requires AVX-512F, `top` and `bottom` of equal length `w` and `2·y.len() ≤ w`.
#[target_feature(enable = "avx512f")]
unsafe fn row(top: &[f32], bottom: &[f32], base: u32, relu: bool, y: &mut [f32], arg: &mut [u32]) {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    let two_lanes = _mm512_slli_epi32::<1>(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    let (one, width) = (_mm512_set1_epi32(1), _mm512_set1_epi32(top.len() as i32));
    let mut o = 0;
    while o < y.len() {
        let n = (y.len() - o).min(16);
        // the 2n pixels of n windows: lanes past them are neither read nor written
        let (lo, hi) = (mask(2 * n), mask((2 * n).saturating_sub(16)));
        let pairs = |p: *const f32| {
            // SAFETY: `p` points at column 2·o of a row of `w ≥ 2·(o + n)` pixels, and the masks
            // read only its first 2n; masked-off lanes do not fault (wrapping_add: no UB past the end)
            let (a, b) = unsafe { (_mm512_maskz_loadu_ps(lo, p), _mm512_maskz_loadu_ps(hi, p.wrapping_add(16))) };
            (_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b))
        };
        let (t0, t1) = pairs(top.as_ptr().wrapping_add(2 * o));
        let (b0, b1) = pairs(bottom.as_ptr().wrapping_add(2 * o));
        let right_top = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(t1, t0);
        let top_max = _mm512_mask_blend_ps(right_top, t0, t1);
        let right_bottom = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b1, b0);
        let bottom_max = _mm512_mask_blend_ps(right_bottom, b0, b1);
        let down = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(bottom_max, top_max);
        let mut v = _mm512_mask_blend_ps(down, top_max, bottom_max);
        // base + 2·(o + lane), + 1 for a right column, + w for the bottom row
        let mut a = _mm512_add_epi32(_mm512_set1_epi32(base.wrapping_add(2 * o as u32) as i32), two_lanes);
        a = _mm512_mask_add_epi32(a, right_top & !down, a, one);
        a = _mm512_mask_add_epi32(a, down, a, width);
        a = _mm512_mask_add_epi32(a, down & right_bottom, a, one);
        if relu {
            let cut = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, _mm512_setzero_ps());
            v = _mm512_mask_mov_ps(v, cut, _mm512_setzero_ps());
            a = _mm512_mask_mov_epi32(a, cut, _mm512_set1_epi32(super::max_pool2d::NONE as i32));
        }
        // SAFETY: lanes 0..n of y[o..] and arg[o..], both at least o + n long
        unsafe {
            _mm512_mask_storeu_ps(y.as_mut_ptr().add(o), mask(n), v);
            _mm512_mask_storeu_epi32(arg.as_mut_ptr().add(o).cast(), mask(n), a);
        }
        o += 16;
    }
}
