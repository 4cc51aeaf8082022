//! `lightning::nn::{gelu, gelu_tanh, silu}` equal reference loops in f64 (outputs and
//! gradients; candle's own gradients use 6-digit constants), candle's ops for the outputs, and
//! finite differences; other dtypes fall back to candle's differentiable ops.

use lightning::candle::{DType, Device, Tensor, Var};
use lightning::nn::{gelu, gelu_tanh, silu};
use proptest::prelude::*;

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

fn uniform(n: usize, seed: u64, range: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * range
        })
        .collect()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Largest |a - b| over the largest |b| (at least 1).
fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// The function and its derivative, written out in f64 from libm's erfc and tanh.
fn reference(which: u8, x: f64) -> (f64, f64) {
    match which {
        0 => {
            let cdf = 0.5 * lightning::candle::cpu::erf::erfc_f64(-x / 2f64.sqrt());
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            (x * cdf, cdf + x * pdf)
        }
        1 => {
            let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
            let th = u.tanh();
            (0.5 * x * (1.0 + th), 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du)
        }
        _ => {
            let s = 1.0 / (1.0 + (-x).exp());
            (x * s, s * (1.0 + x * (1.0 - s)))
        }
    }
}

fn ours(which: u8, x: &Tensor) -> Tensor {
    match which {
        0 => gelu(x).unwrap(),
        1 => gelu_tanh(x).unwrap(),
        _ => silu(x).unwrap(),
    }
}

/// candle's op, which has gradients (our fallback on other dtypes and devices).
fn candles(which: u8, x: &Tensor) -> Tensor {
    match which {
        0 => x.gelu_erf().unwrap(),
        1 => x.gelu().unwrap(),
        _ => x.silu().unwrap(),
    }
}

/// Our output and the gradient of `Σ y ⊙ r`.
fn output_and_grad(which: u8, x: &Tensor, r: &Tensor) -> (Vec<f64>, Vec<f64>) {
    let x = Var::from_tensor(x).unwrap();
    let y = ours(which, &x);
    assert_eq!(y.dims(), x.dims());
    let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
    (f64s(&y), f64s(g.get(&x).unwrap()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn equal_reference_loops(which in 0u8..3, rows in 1usize..4, cols in 1usize..40, range in 0.5f64..12.0, seed in 0u64..10_000) {
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
            let n = rows * cols;
            let x = Tensor::from_vec(uniform(n, seed, range), (rows, cols), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let r = Tensor::from_vec(uniform(n, seed + 1, 1.0), (rows, cols), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
            let (y, dx) = output_and_grad(which, &x, &r);
            let (want_y, want_dx): (Vec<f64>, Vec<f64>) = f64s(&x)
                .iter()
                .zip(f64s(&r))
                .map(|(&v, r)| {
                    let (f, d) = reference(which, v);
                    (f, d * r)
                })
                .unzip();
            let (dy, ddx) = (max_rel_diff(&y, &want_y), max_rel_diff(&dx, &want_dx));
            prop_assert!(dy <= tol, "op {which} {dtype:?}: output off by {dy}");
            prop_assert!(ddx <= tol, "op {which} {dtype:?}: gradient off by {ddx}");
            let candle = f64s(&candles(which, &x.to_dtype(DType::F64).unwrap()));
            let d = max_rel_diff(&y, &candle);
            prop_assert!(d <= tol, "op {which} {dtype:?}: candle's output differs by {d}");
        }
    }
}

#[test]
fn backward_matches_finite_differences() {
    let x0 = uniform(40, 3, 6.0);
    let r = Tensor::from_vec(uniform(40, 4, 1.0), 40, &Device::Cpu).unwrap();
    for which in 0u8..3 {
        let x = Tensor::from_vec(x0.clone(), 40, &Device::Cpu).unwrap();
        let (_, dx) = output_and_grad(which, &x, &r);
        let f = |x: &[f64]| {
            let x = Tensor::from_vec(x.to_vec(), 40, &Device::Cpu).unwrap();
            (ours(which, &x) * &r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let h = 1e-6;
        for i in 0..x0.len() {
            let (mut p, mut m) = (x0.clone(), x0.clone());
            p[i] += h;
            m[i] -= h;
            let fd = (f(&p) - f(&m)) / (2.0 * h);
            assert!((fd - dx[i]).abs() < 1e-7, "op {which} element {i}: finite difference {fd}, backward {}", dx[i]);
        }
    }
}

#[test]
fn f32_tails_keep_their_relative_accuracy() {
    // torch's ½·x·(1 + erf(x/√2)) and ½·x·(1 + tanh u) lose every digit below x ≈ -5.5 in
    // f32; x·Φ(x) and x·σ(2u) do not. The tanh form's u = √(2/π)(x + 0.044715x³), rounded
    // in f32, bounds it to 10⁻⁴ (its condition number reaches 200 at x = -10).
    let xs: Vec<f32> = (0..400).map(|i| -12.0 + i as f32 * 0.03).collect();
    let x = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap();
    for (which, tol) in [(0u8, 1e-5), (1, 1e-4), (2, 1e-5)] {
        let y = ours(which, &x).to_vec1::<f32>().unwrap();
        for (&v, &got) in xs.iter().zip(&y) {
            let v64 = v as f64;
            let want = match which {
                // ½(1 + tanh u) = σ(2u), without the cancellation in f64 either
                1 => v64 / (1.0 + (-2.0 * SQRT_2_OVER_PI * (v64 + 0.044715 * v64 * v64 * v64)).exp()),
                _ => reference(which, v64).0,
            };
            // beyond 10⁻³⁷ the result is subnormal in f32, or 0
            if want.abs() > 1e-37 {
                let rel = (got as f64 - want).abs() / want.abs();
                assert!(rel < tol, "op {which} at {v}: {got} vs {want} (relative {rel:e})");
            }
        }
    }
}

#[test]
fn other_dtypes_fall_back_to_differentiable_ops() {
    let x = Var::from_tensor(&Tensor::new(&[-1f32, 0.5, 2.0], &Device::Cpu).unwrap().to_dtype(DType::BF16).unwrap())
        .unwrap();
    for which in 0u8..3 {
        let g = ours(which, &x).sum_all().unwrap().backward().unwrap();
        assert!(g.get(&x).is_some(), "op {which}: no gradient on bf16");
    }
}
