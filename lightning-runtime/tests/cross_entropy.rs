//! `lightning::nn::cross_entropy` equals candle-nn's `loss::cross_entropy` (over the targets
//! not ignored), torch's label-smoothing formula written out here, and finite differences;
//! bad targets and options are typed errors.

use lightning::candle::{DType, Device, Tensor, Var};
use lightning::candle_nn::loss;
use lightning::nn::{cross_entropy, cross_entropy_with, CrossEntropyOptions, LossError};
use proptest::prelude::*;

fn uniform(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

/// Logits in ±4 rounded to `dtype`, and targets with about a quarter set to `ignore`.
fn inputs(dims: &[usize], dtype: DType, ignore: i64, seed: u64) -> (Tensor, Vec<i64>) {
    let classes = *dims.last().unwrap();
    let n: usize = dims.iter().product();
    let x: Vec<f64> = uniform(n, seed).iter().map(|u| u * 8.0 - 4.0).collect();
    let x = Tensor::from_vec(x, dims, &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
    let t = uniform(n / classes, seed + 1)
        .iter()
        .map(|u| if *u < 0.25 { ignore } else { ((u - 0.25) / 0.75 * classes as f64) as i64 % classes as i64 })
        .collect();
    (x, t)
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Largest |a - b| over the largest |b| (at least 1).
fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Our loss and gradient (of `3·loss`, so that the upstream gradient is not 1).
fn ours(x: &Tensor, t: &Tensor, dims: &[usize], opts: CrossEntropyOptions) -> (f64, Vec<f64>) {
    let x = Var::from_tensor(x).unwrap();
    let t = t.reshape(&dims[..dims.len() - 1]).unwrap();
    let loss = cross_entropy_with(&x, &t, opts).unwrap();
    let g = (&loss * 3.0).unwrap().backward().unwrap();
    let dx = g.get(&x).unwrap();
    assert_eq!(dx.dims(), dims);
    (f64s(&loss)[0], f64s(dx))
}

/// torch's loss and gradient written out, in f64: per row not ignored,
/// `(1-ε)·(lse - x_t) + ε·(lse - mean x)` and `softmax - (1-ε)·onehot - ε/C`, over the count.
fn formula(x: &[f64], t: &[i64], classes: usize, opts: CrossEntropyOptions) -> (f64, Vec<f64>) {
    let eps = opts.label_smoothing;
    let count = t.iter().filter(|&&v| v != opts.ignore_index).count() as f64;
    let (mut loss, mut dx) = (0.0, vec![0.0; x.len()]);
    for ((row, &target), d) in x.chunks(classes).zip(t).zip(dx.chunks_mut(classes)) {
        if target == opts.ignore_index {
            continue;
        }
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        let mean = row.iter().sum::<f64>() / classes as f64;
        loss += (1.0 - eps) * (lse - row[target as usize]) + eps * (lse - mean);
        for (c, (d, v)) in d.iter_mut().zip(row).enumerate() {
            let onehot = if c as i64 == target { 1.0 } else { 0.0 };
            *d = 3.0 * ((v - lse).exp() - (1.0 - eps) * onehot - eps / classes as f64) / count;
        }
    }
    (loss / count, dx)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn equals_the_formula_and_candle_nn(
        n in 1usize..5, steps in 0usize..4, classes in 1usize..19, smoothing in 0u8..3, use_u32 in any::<bool>(), seed in 0u64..10_000,
    ) {
        // steps 0: (N, C) logits; otherwise (N, T, C)
        let dims = if steps == 0 { vec![n, classes] } else { vec![n, steps, classes] };
        let eps = [0.0, 0.1, 0.37][smoothing as usize];
        // u32 targets cannot hold -100: they ignore a large index instead
        let ignore = if use_u32 { 1000 } else { -100 };
        let opts = CrossEntropyOptions::default().ignore_index(ignore).label_smoothing(eps);
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
            let (x, t) = inputs(&dims, dtype, ignore, seed);
            let targets = if use_u32 {
                Tensor::new(t.iter().map(|&v| v as u32).collect::<Vec<_>>(), &Device::Cpu).unwrap()
            } else {
                Tensor::new(t.as_slice(), &Device::Cpu).unwrap()
            };
            let (loss, dx) = ours(&x, &targets, &dims, opts);
            let (want, want_dx) = formula(&f64s(&x), &t, classes, opts);
            if t.iter().all(|&v| v == ignore) {
                prop_assert!(loss.is_nan() && dx.iter().all(|&v| v == 0.0));
                continue;
            }
            prop_assert!(max_rel_diff(&[loss], &[want]) <= tol, "{dtype:?} {dims:?}: loss {loss}, formula {want}");
            let d = max_rel_diff(&dx, &want_dx);
            prop_assert!(d <= tol, "{dtype:?} {dims:?}: gradient off by {d}");
            if eps == 0.0 {
                // candle-nn's loss on the rows not ignored (its f32 ops against ours, both f32)
                let keep: Vec<u32> = (0..t.len() as u32).filter(|&i| t[i as usize] != ignore).collect();
                let keep = Tensor::new(keep.as_slice(), &Device::Cpu).unwrap();
                let rows = x.reshape(((), classes)).unwrap().index_select(&keep, 0).unwrap();
                let kept = targets.index_select(&keep, 0).unwrap();
                let reference = f64s(&loss::cross_entropy(&rows, &kept).unwrap())[0];
                prop_assert!(max_rel_diff(&[loss], &[reference]) <= tol, "{dtype:?}: loss {loss}, candle-nn {reference}");
            }
        }
    }
}

#[test]
fn backward_matches_finite_differences() {
    let dims = [2usize, 3, 5];
    let (x, t) = inputs(&dims, DType::F64, -100, 11);
    let targets = Tensor::new(t.as_slice(), &Device::Cpu).unwrap().reshape((2, 3)).unwrap();
    let opts = CrossEntropyOptions::default().label_smoothing(0.2);
    let (_, dx) = ours(&x, &targets, &dims, opts);
    let x0 = f64s(&x);
    let f = |x: &[f64]| {
        let x = Tensor::from_vec(x.to_vec(), &dims[..], &Device::Cpu).unwrap();
        3.0 * cross_entropy_with(&x, &targets, opts).unwrap().to_scalar::<f64>().unwrap()
    };
    let h = 1e-6;
    for i in 0..x0.len() {
        let (mut p, mut m) = (x0.clone(), x0.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (f(&p) - f(&m)) / (2.0 * h);
        assert!((fd - dx[i]).abs() < 1e-7, "element {i}: finite difference {fd}, backward {}", dx[i]);
    }
}

#[test]
fn other_dtypes_use_differentiable_candle_ops() {
    let (x, t) = inputs(&[4, 7], DType::F64, 3, 5);
    let targets = Tensor::new(t.as_slice(), &Device::Cpu).unwrap();
    let opts = CrossEntropyOptions::default().ignore_index(3).label_smoothing(0.1);
    let want = cross_entropy_with(&x, &targets, opts).unwrap().to_scalar::<f64>().unwrap();
    let xb = Var::from_tensor(&x.to_dtype(DType::BF16).unwrap()).unwrap();
    let loss = cross_entropy_with(&xb, &targets, opts).unwrap();
    let got = loss.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
    assert!((got - want).abs() < 0.05 * want.abs().max(1.0), "bf16 {got}, f64 {want}");
    let g = loss.backward().unwrap();
    assert!(g.get(&xb).is_some(), "no gradient through the bf16 fallback");
}

/// Whether a candle error carries `want` (candle keeps a wrapped error as `dyn Display`, so
/// the message is what can be compared).
fn carries(r: lightning::candle::Result<Tensor>, want: LossError) -> bool {
    let got = r.unwrap_err().to_string();
    assert!(got.contains(&want.to_string()), "got {got:?}, want {want}");
    true
}

#[test]
fn bad_inputs_are_typed_errors() {
    let x = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    let t = Tensor::new(&[0u32, 3], &Device::Cpu).unwrap();
    let out_of_range = LossError::Target { target: 3, position: 1, classes: 3, ignore_index: -100 };
    assert!(out_of_range.to_string().contains("neither a class in 0..3 nor the ignore_index -100"));
    assert!(carries(cross_entropy(&x, &t), out_of_range));
    let t = Tensor::new(&[0i64, -5], &Device::Cpu).unwrap();
    assert!(carries(
        cross_entropy(&x, &t),
        LossError::Target { target: -5, position: 1, classes: 3, ignore_index: -100 }
    ));
    let t = Tensor::new(&[0u32, 1, 2], &Device::Cpu).unwrap();
    assert!(carries(cross_entropy(&x, &t), LossError::Shape { logits: vec![2, 3], targets: vec![3] }));
    let t = Tensor::new(&[0f32, 1.], &Device::Cpu).unwrap();
    assert!(carries(cross_entropy(&x, &t), LossError::TargetDType(DType::F32)));
    let t = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
    let opts = CrossEntropyOptions::default().label_smoothing(1.5);
    assert!(carries(cross_entropy_with(&x, &t, opts), LossError::LabelSmoothing(1.5)));
    // the fallback checks its targets too
    let xb = x.to_dtype(DType::BF16).unwrap();
    let t = Tensor::new(&[0u32, 7], &Device::Cpu).unwrap();
    assert!(carries(
        cross_entropy(&xb, &t),
        LossError::Target { target: 7, position: 1, classes: 3, ignore_index: -100 }
    ));
}
