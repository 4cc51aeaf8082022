//! The 2×2, stride-2 max pool of one output row in `f32` with AVX-512: 16 windows a step, the
//! same tournament as the scalar `pool_2x2_row` (ties and NaNs resolved alike), with the
//! fused ReLU. The CNN benchmark spent 12% of its time in the scalar row loop.

use std::arch::x86_64::*;

/// Lanes' masks for the first `n` (≤ 16) of 16.
fn first(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as u16
}

/// Two vectors of `row` from float `2·o`: the lanes set in `lo`, then in `hi`.
///
/// # Safety
/// AVX-512F is available; the set lanes lie inside `row`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_pair(row: &[f32], o: usize, (lo, hi): (__mmask16, __mmask16)) -> (__m512, __m512) {
    // SAFETY: the caller's contract; masked-off lanes are not read
    unsafe {
        let p = row.as_ptr().add(2 * o);
        (_mm512_maskz_loadu_ps(lo, p), _mm512_maskz_loadu_ps(hi, p.add(16)))
    }
}

/// One output row: `rows` holds the two input rows (`w` floats each) starting at plane index
/// `base`; writes `y.len()` (≤ w / 2) maxima and their plane indices, or 0 and `none` where
/// `relu` cuts a non-positive maximum.
///
/// # Safety
/// AVX-512F is available.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pool_2x2_row(rows: &[f32], w: usize, base: u32, relu: bool, none: u32, y: &mut [f32], arg: &mut [u32]) {
    let ow = y.len();
    assert!(rows.len() >= 2 * w && 2 * ow <= w && arg.len() == ow && w < i32::MAX as usize);
    let (top, bottom) = rows.split_at(w);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let one = _mm512_set1_epi32(1);
    let below = _mm512_set1_epi32(w as i32);
    for o in (0..ow).step_by(16) {
        let n = (ow - o).min(16);
        let (lo, hi) = (first(2 * n), first((2 * n).saturating_sub(16)));
        // SAFETY: lanes set in `lo` and `hi` read floats 2·o .. 2·(o + n) ≤ 2·ow ≤ w of each
        // row, inside `top` and `bottom` (asserted above); masked-off lanes are not read
        let (te, to, be, bo) = unsafe {
            let ((t0, t1), (b0, b1)) = (load_pair(top, o, (lo, hi)), load_pair(bottom, o, (lo, hi)));
            (
                _mm512_permutex2var_ps(t0, even, t1),
                _mm512_permutex2var_ps(t0, odd, t1),
                _mm512_permutex2var_ps(b0, even, b1),
                _mm512_permutex2var_ps(b0, odd, b1),
            )
        };
        // `>` (ordered): a NaN loses every comparison, so it wins only as the first pixel
        let t_right = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(to, te);
        let t_max = _mm512_mask_blend_ps(t_right, te, to);
        let b_right = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(bo, be);
        let b_max = _mm512_mask_blend_ps(b_right, be, bo);
        let down = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b_max, t_max);
        let mut max = _mm512_mask_blend_ps(down, t_max, b_max);
        let left = _mm512_add_epi32(_mm512_set1_epi32((base as usize + 2 * o) as i32), even);
        let top_arg = _mm512_mask_add_epi32(left, t_right, left, one);
        let bottom_left = _mm512_add_epi32(left, below);
        let bottom_arg = _mm512_mask_add_epi32(bottom_left, b_right, bottom_left, one);
        let mut at = _mm512_mask_blend_epi32(down, top_arg, bottom_arg);
        if relu {
            let cut = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(max, _mm512_setzero_ps());
            max = _mm512_mask_mov_ps(max, cut, _mm512_setzero_ps());
            at = _mm512_mask_mov_epi32(at, cut, _mm512_set1_epi32(none as i32));
        }
        // SAFETY: lanes set in `first(n)` write y[o .. o + n] and arg[o .. o + n], n ≤ ow − o
        unsafe {
            _mm512_mask_storeu_ps(y.as_mut_ptr().add(o), first(n), max);
            _mm512_mask_storeu_epi32(arg.as_mut_ptr().add(o).cast(), first(n), at);
        }
    }
}
