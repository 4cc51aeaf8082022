//! Packing of A and B blocks into the contiguous slivers the microkernel streams: A in
//! slivers of [`MR`] rows stored k-major (`a[p * rows + i]`), B in slivers of [`NR`] columns
//! stored k-major (`b[p * width + j]`, the width rounded up to 16 with zeros). Every sliver
//! but the last of a block is full, so sliver `s` starts at `s * MR * kc` (`s * NR * kc`).

use super::avx512::{MR, NR};
use super::transpose::{block16, copy_pad};
use super::Mat;

/// Packs rows `i0..i0 + mc`, depths `p0..p0 + kc` of `a` into `out` (at least `mc * kc`).
/// An A with contiguous columns is not packed: block.rs reads it in place.
#[target_feature(enable = "avx512f")]
pub(super) fn pack_a(Mat(a, (rs, cs)): Mat<f32>, (i0, mc): (usize, usize), (p0, kc): (usize, usize), out: &mut [f32]) {
    for ir in (0..mc).step_by(MR) {
        let r = MR.min(mc - ir);
        let dst = &mut out[ir * kc..][..r * kc];
        let row0 = i0 + ir;
        if cs == 1 {
            // rows contiguous: 16 depths of the sliver's rows at a time, transposed
            for p in (0..kc).step_by(16) {
                block16(&a[row0 * rs + p0 + p..], rs, r, 16.min(kc - p), &mut dst[p * r..], r);
            }
        } else {
            for (p, d) in dst.chunks_exact_mut(r).enumerate() {
                d.iter_mut().enumerate().for_each(|(i, d)| *d = a[(row0 + i) * rs + (p0 + p) * cs]);
            }
        }
    }
}

/// Packs depths `p0..p0 + kc`, columns `j0..j0 + nc` of `b` into `out` (at least
/// `kc * nc.next_multiple_of(16)`).
#[target_feature(enable = "avx512f")]
pub(super) fn pack_b(Mat(b, (rs, cs)): Mat<f32>, (p0, kc): (usize, usize), (j0, nc): (usize, usize), out: &mut [f32]) {
    if cs == 1 {
        // rows contiguous: each row read once, front to back (one stream through memory
        // rather than a stride of `rs` a sliver), its `NR`-float pieces to each sliver
        for p in 0..kc {
            let row = &b[(p0 + p) * rs + j0..][..nc];
            for jr in (0..nc).step_by(NR) {
                let w = NR.min(nc - jr);
                let wv = w.next_multiple_of(16);
                copy_pad(&row[jr..][..w], &mut out[jr * kc + p * wv..][..wv]);
            }
        }
        return;
    }
    for jr in (0..nc).step_by(NR) {
        let w = NR.min(nc - jr);
        let wv = w.next_multiple_of(16);
        let dst = &mut out[jr * kc..][..kc * wv];
        let col0 = j0 + jr;
        if rs == 1 {
            // columns contiguous (a transposed weight): 16 depths of 16 columns at a time,
            // transposed
            for j in (0..w).step_by(16) {
                for p in (0..kc).step_by(16) {
                    let src = &b[(col0 + j) * cs + p0 + p..];
                    block16(src, cs, 16.min(w - j), 16.min(kc - p), &mut dst[p * wv + j..], wv);
                }
            }
        } else {
            for (p, d) in dst.chunks_exact_mut(wv).enumerate() {
                d[..w].iter_mut().enumerate().for_each(|(j, d)| *d = b[(p0 + p) * rs + (col0 + j) * cs]);
            }
        }
        dst.chunks_exact_mut(wv).for_each(|d| d[w..].fill(0.0));
    }
}
