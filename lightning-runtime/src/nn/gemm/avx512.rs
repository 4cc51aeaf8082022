//! The AVX-512 microkernel: one tile of C, up to [`MR`] rows by [`NV`] vectors of 16 columns,
//! from a packed A sliver and a packed B sliver, all accumulators in zmm registers.

use std::arch::x86_64::*;

/// Rows of a full tile: 14 rows × 2 vectors are 28 accumulators, leaving 2 of the 32 zmm
/// registers for the B vectors (A is broadcast from memory into the FMA).
pub(super) const MR: usize = 14;
/// 16-lane vectors across a full tile.
pub(super) const NV: usize = 2;
/// Columns of a full tile.
pub(super) const NR: usize = NV * 16;

/// Where one tile goes: its first element, the row stride, the mask of the last vector's
/// valid columns, and whether C's old values are added.
#[derive(Clone, Copy)]
pub(super) struct Tile {
    pub c: *mut f32,
    pub ldc: usize,
    pub last_mask: __mmask16,
    pub load_c: bool,
}

/// C tile (`R` × `V`·16, the last vector masked) `[+]=` A (`k` × `R`, `a[p * a_step + i]`:
/// packed, `a_step = R`, or in place) · B (`k` × `V`·16, packed `b[p * V * 16 + j]`).
///
/// # Safety
/// AVX-512F is available; `a[p * a_step + i]` (p < k, i < R) and `b[..k * V * 16]` are
/// readable; for
/// every row `i < R`, the `V`·16 columns from `t.c + i * t.ldc` whose lanes are set (every lane
/// of all but the last vector, `t.last_mask` of the last) are valid for reads and writes.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn kernel<const R: usize, const V: usize>(k: usize, (a, a_step): (*const f32, usize), b: *const f32, t: Tile) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    if t.load_c {
        // C's tile is read after the k loop: start fetching it now
        for i in 0..R {
            for v in 0..V {
                _mm_prefetch::<_MM_HINT_T0>(t.c.wrapping_add(i * t.ldc + v * 16).cast());
            }
        }
    }
    for p in 0..k {
        // SAFETY: p < k, so these reads stay in the packed slivers (caller's contract)
        unsafe {
            let bp = b.add(p * V * 16);
            // a loop, not `array::from_fn`: a closure does not inherit the target feature
            let mut bv = [_mm512_setzero_ps(); V];
            for (v, bv) in bv.iter_mut().enumerate() {
                *bv = _mm512_loadu_ps(bp.add(v * 16));
            }
            let ap = a.add(p * a_step);
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*ap.add(i));
                for (acc, bv) in row.iter_mut().zip(bv) {
                    *acc = _mm512_fmadd_ps(ai, bv, *acc);
                }
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (v, acc) in row.iter().enumerate() {
            let mask = if v + 1 == V { t.last_mask } else { 0xFFFF };
            // SAFETY: row i < R, and only the lanes set in `mask` are read or written: the
            // caller's contract
            unsafe {
                let c = t.c.add(i * t.ldc + v * 16);
                let sum = if t.load_c { _mm512_add_ps(*acc, _mm512_maskz_loadu_ps(mask, c)) } else { *acc };
                _mm512_mask_storeu_ps(c, mask, sum);
            }
        }
    }
}

/// [`kernel`] for `rows` (1..=[`MR`]) × `vecs` (1..=[`NV`]) chosen at run time.
///
/// # Safety
/// As [`kernel`] with `R = rows`, `V = vecs`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn tile(rows: usize, vecs: usize, k: usize, a: (*const f32, usize), b: *const f32, t: Tile) {
    macro_rules! rows {
        ($v:literal) => {
            // SAFETY: the caller's contract, with R = rows and V = $v
            unsafe {
                match rows {
                    1 => kernel::<1, $v>(k, a, b, t),
                    2 => kernel::<2, $v>(k, a, b, t),
                    3 => kernel::<3, $v>(k, a, b, t),
                    4 => kernel::<4, $v>(k, a, b, t),
                    5 => kernel::<5, $v>(k, a, b, t),
                    6 => kernel::<6, $v>(k, a, b, t),
                    7 => kernel::<7, $v>(k, a, b, t),
                    8 => kernel::<8, $v>(k, a, b, t),
                    9 => kernel::<9, $v>(k, a, b, t),
                    10 => kernel::<10, $v>(k, a, b, t),
                    11 => kernel::<11, $v>(k, a, b, t),
                    12 => kernel::<12, $v>(k, a, b, t),
                    13 => kernel::<13, $v>(k, a, b, t),
                    14 => kernel::<14, $v>(k, a, b, t),
                    _ => unreachable!("a tile has 1..={MR} rows"),
                }
            }
        };
    }
    const { assert!(MR == 14 && NV == 2) };
    match vecs {
        1 => rows!(1),
        2 => rows!(2),
        _ => unreachable!("a tile has 1..={NV} vectors"),
    }
}
