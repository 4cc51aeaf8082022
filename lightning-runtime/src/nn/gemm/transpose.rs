//! 16×16 in-register transposes, for packing operands stored the other way round: A with
//! contiguous rows (the kernel broadcasts A k-major) and B with contiguous columns
//! (Linear's transposed weight). 64 shuffles move 256 floats, where a scalar copy takes a
//! load and a store a float.

use std::arch::x86_64::*;

/// Lanes `0..n` set (n ≤ 16).
pub(super) fn mask(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as u16
}

/// The transpose of the 16×16 matrix whose rows are `r`.
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    // 32-bit then 64-bit interleaves: u[g][c], lane L = column 4L + c of rows 4g..4g + 4
    let u: [[__m512; 4]; 4] = std::array::from_fn(|g| {
        let r = &r[4 * g..4 * g + 4];
        let (t0, t1) = (_mm512_unpacklo_ps(r[0], r[1]), _mm512_unpackhi_ps(r[0], r[1]));
        let (t2, t3) = (_mm512_unpacklo_ps(r[2], r[3]), _mm512_unpackhi_ps(r[2], r[3]));
        let (t0, t1, t2, t3) = (_mm512_castps_pd(t0), _mm512_castps_pd(t1), _mm512_castps_pd(t2), _mm512_castps_pd(t3));
        [_mm512_unpacklo_pd(t0, t2), _mm512_unpackhi_pd(t0, t2), _mm512_unpacklo_pd(t1, t3), _mm512_unpackhi_pd(t1, t3)]
            .map(|v| _mm512_castpd_ps(v))
    });
    // then 128-bit lanes: column 4L + c gathers lane L of u[0..4][c]
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        let lo01 = _mm512_shuffle_f32x4(u[0][c], u[1][c], 0x44);
        let hi01 = _mm512_shuffle_f32x4(u[0][c], u[1][c], 0xEE);
        let lo23 = _mm512_shuffle_f32x4(u[2][c], u[3][c], 0x44);
        let hi23 = _mm512_shuffle_f32x4(u[2][c], u[3][c], 0xEE);
        out[c] = _mm512_shuffle_f32x4(lo01, lo23, 0x88);
        out[4 + c] = _mm512_shuffle_f32x4(lo01, lo23, 0xDD);
        out[8 + c] = _mm512_shuffle_f32x4(hi01, hi23, 0x88);
        out[12 + c] = _mm512_shuffle_f32x4(hi01, hi23, 0xDD);
    }
    out
}

/// `out[q * ld + j] = src[j * stride + q]` for `j < rows`, `q < len` (both ≤ 16): a
/// `rows × len` block transposed; nothing else of `out` is written.
#[target_feature(enable = "avx512f")]
pub(super) fn block16(src: &[f32], stride: usize, rows: usize, len: usize, out: &mut [f32], ld: usize) {
    assert!(rows <= 16 && len <= 16);
    let r: [__m512; 16] = std::array::from_fn(|j| {
        if j >= rows {
            return _mm512_setzero_ps();
        }
        let row = &src[j * stride..][..len];
        // SAFETY: the mask reads lanes 0..len, all inside `row`
        unsafe { _mm512_maskz_loadu_ps(mask(len), row.as_ptr()) }
    });
    for (q, col) in transpose16(r).iter().take(len).enumerate() {
        let o = &mut out[q * ld..][..rows];
        // SAFETY: the mask writes lanes 0..rows, all inside `o`
        unsafe { _mm512_mask_storeu_ps(o.as_mut_ptr(), mask(rows), *col) };
    }
}
