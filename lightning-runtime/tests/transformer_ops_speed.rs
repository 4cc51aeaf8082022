//! Forward + backward time of `lightning::nn`'s transformer ops against candle's correct
//! (differentiable) ops, one op at a time, on the small GPT's shapes (batch 128, context 16,
//! d = 64, 4 heads, MLP 256, 65 classes). A measurement, not a test; run it optimised, on one
//! thread, with glibc's mmap threshold raised (otherwise page faults on every fresh 2 MB buffer,
//! which candle's autograd allocates several of per op, dominate both sides):
//!
//! ```sh
//! GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824 \
//! RAYON_NUM_THREADS=1 cargo test -p lightning-runtime --test transformer_ops_speed \
//!   --config 'profile.dev.package.lightning-runtime.opt-level=3' \
//!   --config 'profile.dev.package.lightning-runtime.debug-assertions=false' \
//!   --config 'profile.dev.package.lightning-runtime.overflow-checks=false' \
//!   -- --ignored --nocapture
//! ```

use std::time::Instant;

use lightning::candle::{DType, Device, Module, Tensor, Var, D};
use lightning::candle_nn::{loss, ops};
use lightning::nn::{cross_entropy, gelu, gelu_tanh, log_softmax, silu, softmax, LayerNorm};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0) as f32
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// The best of 5 rounds of `iters` calls of `run`, in microseconds per call.
fn best(run: &dyn Fn()) -> f64 {
    let iters = 20;
    (0..5)
        .map(|_| {
            let start = Instant::now();
            (0..iters).for_each(|_| run());
            start.elapsed().as_secs_f64() * 1e6 / iters as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Microseconds of `f`'s forward pass alone, and of its forward and backward passes: the
/// gradient of `Σ f(x) ⊙ r` less the same for `f = identity` (the multiplication, the sum
/// and their backward, which both sides pay alike).
fn time(x: &Var, f: &dyn Fn(&Tensor) -> Tensor) -> (f64, f64) {
    let r = randn(x.dims(), 99);
    let both = |f: &dyn Fn(&Tensor) -> Tensor| {
        best(&|| {
            let y = f(x);
            let y = if y.rank() == 0 { y } else { (&y * &r).unwrap().sum_all().unwrap() };
            let g = y.backward().unwrap();
            assert!(g.get(x).is_some());
        })
    };
    let harness = if f(x).rank() == 0 { 0.0 } else { both(&|x| x.clone()) };
    (best(&|| drop(f(x))), both(f) - harness)
}

fn report(name: &str, ours: (f64, f64), candle: (f64, f64)) {
    println!(
        "{name:<28} forward: ours {:>8.1} µs, candle {:>8.1} µs, {:>5.2}×   forward+backward: ours {:>8.1} µs, candle {:>8.1} µs, {:>5.2}×",
        ours.0,
        candle.0,
        candle.0 / ours.0,
        ours.1,
        candle.1,
        candle.1 / ours.1
    );
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture, optimised (see the file's doc)"]
fn forward_backward_speed_against_candles_correct_ops() {
    let rows = 128 * 16;
    let x = Var::from_tensor(&randn(&[rows, 64], 1)).unwrap();
    let (w, b) = (Var::from_tensor(&randn(&[64], 2)).unwrap(), Var::from_tensor(&randn(&[64], 3)).unwrap());
    let ln = LayerNorm::new(w.as_tensor().clone(), b.as_tensor().clone(), 1e-5);
    report(
        "layer_norm (2048×64)",
        time(&x, &|x| ln.forward(x).unwrap()),
        time(&x, &|x| ops::layer_norm_slow(x, &w, &b, 1e-5).unwrap()),
    );

    let att = Var::from_tensor(&randn(&[128, 4, 16, 16], 4)).unwrap();
    report(
        "softmax (128×4×16×16)",
        time(&att, &|x| softmax(x).unwrap()),
        time(&att, &|x| ops::softmax(x, D::Minus1).unwrap()),
    );
    report(
        "log_softmax (128×4×16×16)",
        time(&att, &|x| log_softmax(x).unwrap()),
        time(&att, &|x| ops::log_softmax(x, D::Minus1).unwrap()),
    );

    let logits = Var::from_tensor(&randn(&[rows, 65], 5)).unwrap();
    let targets =
        Tensor::from_vec((0..rows as u32).map(|i| i * 7 % 65).collect::<Vec<_>>(), rows, &Device::Cpu).unwrap();
    report(
        "cross_entropy (2048×65)",
        time(&logits, &|x| cross_entropy(x, &targets).unwrap()),
        time(&logits, &|x| loss::cross_entropy(x, &targets).unwrap()),
    );

    let h = Var::from_tensor(&randn(&[rows, 256], 6)).unwrap();
    report("gelu erf (2048×256)", time(&h, &|x| gelu(x).unwrap()), time(&h, &|x| x.gelu_erf().unwrap()));
    report("gelu tanh (2048×256)", time(&h, &|x| gelu_tanh(x).unwrap()), time(&h, &|x| x.gelu().unwrap()));
    report("silu (2048×256)", time(&h, &|x| silu(x).unwrap()), time(&h, &|x| x.silu().unwrap()));
    assert_eq!(h.dtype(), DType::F32);
}
