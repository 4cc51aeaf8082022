//! Our AVX-512 f32 GEMM against the `gemm` crate (what candle uses), in one process, on the
//! shapes the MLP and CNN epochs run: GFLOP/s, % of one core's peak, and the ratio.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench gemm [-- --only NAME]
//! ```
//! `--only fc1` runs the products whose name contains `fc1`.
//! Each shape: the two interleaved, best of 5 rounds of about 30 ms each.

use std::time::Instant;

use lightning::nn::gemm::{avx512_available, gemm_crate, ours, Mat};

#[path = "common/peak.rs"]
mod peak;

/// One product: its name, (m, n, k), the (row, column) strides of A and B as the layer
/// passes them, and the accumulate flag.
struct Shape {
    name: String,
    mnk: (usize, usize, usize),
    a: (usize, usize),
    b: (usize, usize),
    accumulate: bool,
}

fn shape(name: impl Into<String>, (m, n, k): (usize, usize, usize), a_t: bool, b_t: bool, accumulate: bool) -> Shape {
    let a = if a_t { (1, m) } else { (k, 1) };
    let b = if b_t { (1, k) } else { (n, 1) };
    Shape { name: name.into(), mnk: (m, n, k), a, b, accumulate }
}

/// Linear's three products (forward, input gradient, weight gradient) and the CNN's im2col
/// products per image (conv2d_kernels.rs).
fn shapes() -> Vec<Shape> {
    // the microkernel alone, near its best: one B sliver (256 × 32, in L1) against 20 A slivers
    let mut v = vec![shape("kernel: 1 B sliver", (280, 32, 256), true, false, false)];
    for b in [64, 256, 1024, 4096] {
        v.push(shape(format!("fc1 fwd B={b}"), (b, 128, 784), false, true, false));
        v.push(shape(format!("fc1 dW  B={b}"), (128, 784, b), true, false, false));
        v.push(shape(format!("fc2 fwd B={b}"), (b, 10, 128), false, true, false));
        v.push(shape(format!("fc2 dx  B={b}"), (b, 128, 10), false, false, false));
        v.push(shape(format!("fc2 dW  B={b}"), (10, 128, b), true, false, false));
    }
    v.push(shape("conv1 fwd", (32, 676, 9), false, false, true));
    v.push(shape("conv1 dW", (32, 9, 676), false, true, true));
    v.push(shape("conv2 fwd", (64, 121, 288), false, false, true));
    v.push(shape("conv2 dcol", (288, 121, 64), true, false, false));
    v.push(shape("conv2 dW", (64, 288, 121), false, true, true));
    v.push(shape("cnn fc1 fwd B=64", (64, 128, 1600), false, true, false));
    v.push(shape("cnn fc1 dW B=64", (128, 1600, 64), true, false, false));
    v
}

/// One way to compute a shape's product: `c = [c +] a · b`.
type Product<'a> = &'a dyn Fn(&mut [f32], Mat<f32>, Mat<f32>);

/// Best GFLOP/s of each way over 5 rounds, the two interleaved.
fn time(s: &Shape, fs: [Product; 2]) -> [f64; 2] {
    let (m, n, k) = s.mnk;
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
    let mut c = vec![0f32; m * n];
    let flops = 2.0 * (m * n * k) as f64;
    let iters = ((30e-3 * 50e9 / flops) as usize).max(1);
    let mut best = [0f64; 2];
    for _ in 0..5 {
        for (f, best) in fs.iter().zip(&mut best) {
            f(&mut c, Mat(&a, s.a), Mat(&b, s.b));
            let start = Instant::now();
            for _ in 0..iters {
                f(&mut c, Mat(&a, s.a), Mat(&b, s.b));
            }
            *best = best.max(flops * iters as f64 / start.elapsed().as_secs_f64() / 1e9);
        }
    }
    best
}

fn main() {
    if !avx512_available() {
        return println!("this CPU has no AVX-512: nothing to compare");
    }
    let peak = peak::peak();
    println!(
        "threads: {}; one core's FP32 peak: {}",
        candle_core::utils::get_num_threads(),
        peak.as_ref().map_or("not measured".into(), |p| p.to_string())
    );
    let pct = |g: f64| peak.as_ref().map_or(String::new(), |p| format!(" ({:.0}%)", 100.0 * g / p.gflops));
    println!("| product | (m, n, k) | ours GFLOP/s (% of peak) | gemm crate | ours / crate |");
    println!("| --- | --- | --- | --- | --- |");
    let only = std::env::args().skip_while(|a| a != "--only").nth(1).unwrap_or_default();
    for s in shapes().into_iter().filter(|s| s.name.contains(&only)) {
        let (mnk, n, acc) = (s.mnk, s.mnk.1, s.accumulate);
        let [o, g] = time(&s, [&|c, a, b| ours(mnk, c, n, acc, a, b), &|c, a, b| gemm_crate(mnk, c, n, acc, a, b)]);
        println!("| {} | {:?} | {o:.1}{} | {g:.1}{} | {:.2}× |", s.name, mnk, pct(o), pct(g), o / g);
    }
}
