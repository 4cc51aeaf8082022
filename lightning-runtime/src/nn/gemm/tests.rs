//! Our AVX-512 kernel (and the dispatching wrapper) against a naive f64-accumulated triple
//! loop, over random shapes, layouts, strides and the accumulate flag.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{avx512_available, matmul_into, ours, Mat};

/// An m×k matrix in a buffer with the given element strides (gaps filled with noise).
struct Operand {
    data: Vec<f32>,
    strides: (usize, usize),
}

impl Operand {
    /// Row-major, column-major (a transposed operand) or both strides padded, at random.
    fn random(rows: usize, cols: usize, rng: &mut StdRng) -> Self {
        let strides = match rng.random_range(0..3) {
            0 => (cols + rng.random_range(0..3), 1),
            1 => (1, rows + rng.random_range(0..3)),
            _ => ((cols * 2 + 1) * 3, 2),
        };
        let len = if rows == 0 || cols == 0 { 0 } else { (rows - 1) * strides.0 + (cols - 1) * strides.1 + 1 };
        Self { data: (0..len).map(|_| rng.random_range(-1.0..1.0)).collect(), strides }
    }
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.strides.0 + j * self.strides.1]
    }
    fn mat(&self) -> Mat<'_, f32> {
        Mat(&self.data, self.strides)
    }
}

type Gemm = fn((usize, usize, usize), &mut [f32], usize, bool, Mat<f32>, Mat<f32>);

/// Runs `f` on one random case and compares every element of `dst`, gaps included.
fn check(f: Gemm, (m, n, k): (usize, usize, usize), rng: &mut StdRng) {
    let (a, b) = (Operand::random(m, k, rng), Operand::random(k, n, rng));
    let accumulate = rng.random_bool(0.5);
    let ldc = n + if rng.random_bool(0.5) { rng.random_range(1..5) } else { 0 };
    let before: Vec<f32> = (0..m * ldc).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut dst = before.clone();
    f((m, n, k), &mut dst, ldc, accumulate, a.mat(), b.mat());
    for i in 0..m {
        for j in 0..ldc {
            let (got, old) = (dst[i * ldc + j] as f64, before[i * ldc + j] as f64);
            if j >= n {
                assert_eq!(got, old, "({m}, {n}, {k}): the gap at ({i}, {j}) was written");
                continue;
            }
            let terms = (0..k).map(|p| a.at(i, p) as f64 * b.at(p, j) as f64);
            let (sum, abs) = terms.fold((0.0, 0.0), |(s, t), x| (s + x, t + x.abs()));
            let want = if accumulate { old + sum } else { sum };
            // f32 accumulation over k terms: |error| ≤ ~k·eps·Σ|a·b|
            let tol = 2.0 * f32::EPSILON as f64 * (k as f64 + 2.0) * (abs + old.abs()) + 1e-30;
            assert!((got - want).abs() <= tol, "({m}, {n}, {k}) acc {accumulate} at ({i}, {j}): {got} vs {want}");
        }
    }
}

fn ours_or_skip() -> Option<Gemm> {
    avx512_available().then_some(ours as Gemm)
}

#[test]
fn random_small_shapes_match_the_naive_product() {
    let mut rng = StdRng::seed_from_u64(20);
    let fs: Vec<Gemm> = ours_or_skip().into_iter().chain([matmul_into::<f32> as Gemm]).collect();
    for _ in 0..600 {
        let mnk = (rng.random_range(1..=40), rng.random_range(1..=40), rng.random_range(1..=40));
        fs.iter().for_each(|f| check(*f, mnk, &mut rng));
    }
}

#[test]
fn large_and_layer_shapes_match_the_naive_product() {
    let mut rng = StdRng::seed_from_u64(21);
    let Some(f) = ours_or_skip() else { return eprintln!("no AVX-512: the gemm crate's path only") };
    // blocks past one KC / MC / NC, and the MLP's and CNN's shapes with tails
    for mnk in [
        (300, 784, 129),
        (64, 128, 784),
        (128, 784, 64),
        (77, 10, 128),
        (10, 128, 93),
        (8, 676, 9),
        (16, 1100, 600),
        (299, 33, 513),
    ] {
        check(f, mnk, &mut rng);
    }
}

#[test]
fn zero_sizes_write_nothing_or_zeros() {
    let mut rng = StdRng::seed_from_u64(22);
    let fs: Vec<Gemm> = ours_or_skip().into_iter().chain([matmul_into::<f32> as Gemm]).collect();
    for f in fs {
        for mnk in [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0), (1, 1, 0)] {
            for _ in 0..4 {
                check(f, mnk, &mut rng);
            }
        }
    }
}

/// [`super::par::gemm`] on 3 threads, whatever candle's setting.
fn par3(mnk: (usize, usize, usize), dst: &mut [f32], ldc: usize, accumulate: bool, a: Mat<f32>, b: Mat<f32>) {
    assert!(avx512_available());
    // SAFETY: AVX-512F was detected just above
    unsafe { super::par::gemm(3, mnk, dst, ldc, accumulate, a, b) }
}

#[test]
fn bands_of_rows_on_several_threads_match_the_naive_product() {
    let mut rng = StdRng::seed_from_u64(23);
    if !avx512_available() {
        return eprintln!("no AVX-512: the gemm crate's path only");
    }
    // 3 bands, 2 (m / 8 = 2), uneven last band, and one below the size that splits
    for mnk in [(300, 129, 784), (17, 700, 300), (64, 128, 200), (40, 40, 40)] {
        check(par3, mnk, &mut rng);
    }
}
