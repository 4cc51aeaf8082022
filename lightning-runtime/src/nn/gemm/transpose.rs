//! 16×16 in-register transposes, for packing operands stored the other way round: A with
//! contiguous rows (the kernel broadcasts A k-major) and B with contiguous columns
//! (Linear's transposed weight). 64 shuffles move 256 floats, where a scalar copy takes a
//! load and a store a float.

use std::arch::x86_64::*;

/// Lanes `0..n` set (n ≤ 16); also the pool's row masks.
pub(in crate::nn) fn mask(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as u16
}

/// The transpose of the 16×16 matrix whose rows are `r`. Plain loops, no closures: a
/// closure does not inherit the target feature, so its intrinsics would not inline.
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose16(r: &[__m512; 16]) -> [__m512; 16] {
    // 32-bit then 64-bit interleaves: u[g][c], lane L = column 4L + c of rows 4g..4g + 4
    let mut u = [[_mm512_setzero_pd(); 4]; 4];
    for (g, u) in u.iter_mut().enumerate() {
        let r = &r[4 * g..4 * g + 4];
        let t0 = _mm512_castps_pd(_mm512_unpacklo_ps(r[0], r[1]));
        let t1 = _mm512_castps_pd(_mm512_unpackhi_ps(r[0], r[1]));
        let t2 = _mm512_castps_pd(_mm512_unpacklo_ps(r[2], r[3]));
        let t3 = _mm512_castps_pd(_mm512_unpackhi_ps(r[2], r[3]));
        *u = [
            _mm512_unpacklo_pd(t0, t2),
            _mm512_unpackhi_pd(t0, t2),
            _mm512_unpacklo_pd(t1, t3),
            _mm512_unpackhi_pd(t1, t3),
        ];
    }
    // then 128-bit lanes: column 4L + c gathers lane L of u[0..4][c]
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        let (u0, u1) = (_mm512_castpd_ps(u[0][c]), _mm512_castpd_ps(u[1][c]));
        let (u2, u3) = (_mm512_castpd_ps(u[2][c]), _mm512_castpd_ps(u[3][c]));
        let (lo01, hi01) = (_mm512_shuffle_f32x4(u0, u1, 0x44), _mm512_shuffle_f32x4(u0, u1, 0xEE));
        let (lo23, hi23) = (_mm512_shuffle_f32x4(u2, u3, 0x44), _mm512_shuffle_f32x4(u2, u3, 0xEE));
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
    let mut r = [_mm512_setzero_ps(); 16];
    for (j, r) in r.iter_mut().enumerate().take(rows) {
        let row = &src[j * stride..][..len];
        // SAFETY: the mask reads lanes 0..len, all inside `row`
        *r = unsafe { _mm512_maskz_loadu_ps(mask(len), row.as_ptr()) };
    }
    for (q, col) in transpose16(&r).iter().take(len).enumerate() {
        let o = &mut out[q * ld..][..rows];
        // SAFETY: the mask writes lanes 0..rows, all inside `o`
        unsafe { _mm512_mask_storeu_ps(o.as_mut_ptr(), mask(rows), *col) };
    }
}

/// `dst = src` followed by zeros, 16 floats a vector: the packing's short row copies (a
/// sliver's 14 or 32 floats), which `copy_from_slice` turns into a call to `memcpy` each.
#[target_feature(enable = "avx512f")]
pub(super) fn copy_pad(src: &[f32], dst: &mut [f32]) {
    assert!(src.len() <= dst.len());
    for off in (0..dst.len()).step_by(16) {
        let (n_src, n_dst) = (src.len().saturating_sub(off), dst.len() - off);
        // SAFETY: the masks read lanes off..off + n_src of `src` and write lanes
        // off..off + n_dst of `dst`, all inside the slices (a pointer past them is never
        // dereferenced: its mask is empty)
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask(n_src), src.as_ptr().wrapping_add(off));
            _mm512_mask_storeu_ps(dst.as_mut_ptr().wrapping_add(off), mask(n_dst), v);
        }
    }
}
