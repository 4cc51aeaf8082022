//! The loop nest around the microkernel: B packed a (KC × NC) panel at a time, A a (MC × KC)
//! block at a time, then each B sliver ([`NR`] columns, kept in L1) against every A sliver of
//! the block (streamed from L2).

use std::cell::RefCell;

use super::avx512::{tile, Tile, MR, NR};
use super::pack::{pack_a, pack_b};
use super::Mat;

/// Depth of a block: a B sliver (KC × 32 floats, 32 KiB) stays in L1 beside an A sliver.
const KC: usize = 256;
/// Rows of an A block (MC × KC floats, about 300 KiB of L2).
const MC: usize = 20 * MR;
/// Columns of a B panel (KC × NC floats, 1 MiB).
const NC: usize = 1024;

thread_local! {
    /// The packed A block and B panel, kept between calls so a step allocates nothing.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `len` split into equal blocks of at most `max`, each rounded up to a multiple of `align`,
/// so that 784 is four blocks of 196 rather than three of 256 and a thin one of 16.
fn block(len: usize, max: usize, align: usize) -> usize {
    len.div_ceil(len.div_ceil(max).max(1)).next_multiple_of(align)
}

/// A buffer of at least `len` floats whose start is 64-byte aligned (so that B's vector loads
/// never split a cache line).
fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len + 16 {
        buf.resize(len + 16, 0.0);
    }
    let off = buf.as_ptr().align_offset(64).min(16);
    &mut buf[off..off + len]
}

/// `dst (m×n, rows ldc apart) = [dst +] a (m×k) · b (k×n)` with the AVX-512 microkernel.
///
/// # Safety
/// AVX-512F is available.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    ldc: usize,
    accumulate: bool,
    a: Mat<f32>,
    b: Mat<f32>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && dst.len() >= (m - 1) * ldc + n, "gemm destination too short");
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(ldc).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    let (kc_blk, mc_blk, nc_blk) = (block(k, KC, 1), block(m, MC, MR), block(n, NC, NR));
    PACKED.with_borrow_mut(|(abuf, bbuf)| {
        let abuf = aligned(abuf, mc_blk * kc_blk);
        let bbuf = aligned(bbuf, nc_blk.next_multiple_of(16) * kc_blk);
        for jc in (0..n).step_by(nc_blk) {
            let nc = nc_blk.min(n - jc);
            for pc in (0..k).step_by(kc_blk) {
                let kc = kc_blk.min(k - pc);
                pack_b(b, (pc, kc), (jc, nc), bbuf);
                for ic in (0..m).step_by(mc_blk) {
                    let mc = mc_blk.min(m - ic);
                    let a_block = if a.1 .0 == 1 {
                        // columns contiguous: a sliver is already k-major, read in place
                        ABlock { data: a.0, base: ic + pc * a.1 .1, step: Some(a.1 .1) }
                    } else {
                        pack_a(a, (ic, mc), (pc, kc), abuf);
                        ABlock { data: abuf, base: 0, step: None }
                    };
                    let panel =
                        Panel { dst: &mut *dst, ldc, at: (ic, jc), mnk: (mc, nc, kc), load_c: accumulate || pc > 0 };
                    // SAFETY: AVX-512F is available (this function's contract)
                    unsafe { panel.run(a_block, bbuf) };
                }
            }
        }
    });
}

/// An A block as the microkernel reads it: packed (sliver `s` at `s * MR * kc`, its depths
/// `rows` apart), or in place when A's columns are contiguous (row `i` at `base + i`, depths
/// `step` apart).
struct ABlock<'a> {
    data: &'a [f32],
    base: usize,
    step: Option<usize>,
}

impl ABlock<'_> {
    /// The offset of the sliver starting at block row `ir`, and its depth step.
    fn sliver(&self, ir: usize, rows: usize, kc: usize) -> (usize, usize) {
        match self.step {
            Some(step) => (self.base + ir, step),
            None => (ir * kc, rows),
        }
    }
    /// Whether every element of an `mc × kc` block lies in `data`.
    fn holds(&self, mc: usize, kc: usize) -> bool {
        match self.step {
            Some(step) => self.data.len() > self.base + (mc - 1) + (kc - 1) * step,
            None => self.data.len() >= mc * kc,
        }
    }
}

/// One A block against one packed B panel, into C's block at `at`.
struct Panel<'a> {
    dst: &'a mut [f32],
    ldc: usize,
    at: (usize, usize),
    mnk: (usize, usize, usize),
    load_c: bool,
}

impl Panel<'_> {
    /// # Safety
    /// AVX-512F is available.
    #[target_feature(enable = "avx512f")]
    unsafe fn run(self, a: ABlock, bbuf: &[f32]) {
        let (mc, nc, kc) = self.mnk;
        let (i0, j0) = self.at;
        // every element a tile touches, (i0 + mc - 1, j0 + nc - 1) at most, is in `dst`
        assert!(mc > 0 && nc > 0 && self.dst.len() >= (i0 + mc - 1) * self.ldc + j0 + nc && j0 + nc <= self.ldc);
        assert!(kc > 0 && a.holds(mc, kc) && bbuf.len() >= nc.next_multiple_of(16) * kc);
        let c = self.dst.as_mut_ptr();
        for jr in (0..nc).step_by(NR) {
            let w = NR.min(nc - jr);
            let vecs = w.div_ceil(16);
            let last_mask = (u32::MAX >> (32 - (w - (vecs - 1) * 16))) as u16;
            for ir in (0..mc).step_by(MR) {
                let rows = MR.min(mc - ir);
                let (a_at, a_step) = a.sliver(ir, rows, kc);
                // SAFETY: AVX-512F is available; the A sliver's `rows` floats at each of `kc`
                // depths `a_step` apart and the B sliver at `jr * kc`, `vecs * 16 * kc` floats
                // (pack.rs's layout), lie inside their slices by the assert above; the tile's rows
                // i0 + ir .. i0 + ir + rows ≤ i0 + mc and its unmasked columns
                // j0 + jr .. j0 + jr + w ≤ j0 + nc ≤ ldc lie inside `dst` by the assert above.
                unsafe {
                    let t = Tile {
                        c: c.add((i0 + ir) * self.ldc + j0 + jr),
                        ldc: self.ldc,
                        last_mask,
                        load_c: self.load_c,
                    };
                    tile(rows, vecs, kc, (a.data.as_ptr().add(a_at), a_step), bbuf.as_ptr().add(jr * kc), t);
                }
            }
        }
    }
}
