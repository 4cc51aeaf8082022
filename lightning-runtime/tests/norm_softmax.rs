//! `lightning::nn`'s LayerNorm, RmsNorm, softmax and log_softmax equal candle's
//! differentiable reference ops (outputs and gradients) and match finite differences.

use lightning::candle::{DType, Device, IndexOp, Module, Tensor, Var, D};
use lightning::candle_nn::ops;
use lightning::nn::{log_softmax, softmax, LayerNorm, RmsNorm};
use proptest::prelude::*;

fn randn(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let data: Vec<f64> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
    a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// candle-nn's `layer_norm_slow` takes its epsilon as an `f32`.
const EPS: f32 = 1e-5;

/// Which op: 0 layer norm with bias, 1 rms norm, 2 softmax, 3 log_softmax.
fn run(which: u8, fast: bool, x: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
    match (which, fast) {
        (0, true) => LayerNorm::new(w.clone(), b.clone(), EPS as f64).forward(x).unwrap(),
        (0, false) => ops::layer_norm_slow(x, w, b, EPS).unwrap(),
        (1, true) => RmsNorm::new(w.clone(), EPS as f64).forward(x).unwrap(),
        (1, false) => {
            let ms = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
            x.broadcast_div(&(ms + EPS as f64).unwrap().sqrt().unwrap()).unwrap().broadcast_mul(w).unwrap()
        }
        (2, true) => softmax(x).unwrap(),
        (2, false) => ops::softmax(x, D::Minus1).unwrap(),
        (3, true) => log_softmax(x).unwrap(),
        _ => ops::log_softmax(x, D::Minus1).unwrap(),
    }
}

/// Output and the gradients of `Σ y ⊙ r` for x, w, b, from inputs rounded to `dtype` and
/// computed in `compute` (the reference of an f32 op is computed in f64 from the same f32
/// inputs: candle's f32 ops are themselves off by more than 1e-5 on nearly constant rows).
fn outputs(which: u8, fast: bool, shape: &[usize], dtype: DType, compute: DType, seed: u64) -> Vec<Tensor> {
    let cols = *shape.last().unwrap();
    let input = |shape: &[usize], seed| randn(shape, dtype, seed).to_dtype(compute).unwrap();
    let x = Var::from_tensor(&input(shape, seed)).unwrap();
    let w = Var::from_tensor(&input(&[cols], seed + 1)).unwrap();
    let b = Var::from_tensor(&input(&[cols], seed + 2)).unwrap();
    let y = run(which, fast, &x, &w, &b);
    let r = input(shape, seed + 3);
    let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![y, g.get(&x).unwrap().clone()];
    if which < 2 {
        out.push(g.get(&w).unwrap().clone());
    }
    if which == 0 {
        out.push(g.get(&b).unwrap().clone());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn equal_candles_reference(which in 0u8..4, rows in 1usize..5, lead in 1usize..3, cols in 1usize..19, seed in 0u64..1000) {
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
            let shape = [lead, rows, cols];
            let ours = outputs(which, true, &shape, dtype, dtype, seed);
            let reference = outputs(which, false, &shape, dtype, DType::F64, seed);
            for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
                let d = max_rel_diff(a, b);
                prop_assert!(d <= tol, "op {which} {dtype:?} shape {shape:?} output {i}: rel diff {d}");
            }
        }
    }
}

#[test]
fn backward_matches_finite_differences() {
    let (shape, h) = ([3usize, 5], 1e-6);
    for which in 0u8..4 {
        let grads = outputs(which, true, &shape, DType::F64, DType::F64, 7);
        let x0 = randn(&shape, DType::F64, 7).flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let w = randn(&[5], DType::F64, 8);
        let b = randn(&[5], DType::F64, 9);
        let r = randn(&shape, DType::F64, 10);
        let f = |x: &[f64]| {
            let x = Tensor::from_vec(x.to_vec(), &shape, &Device::Cpu).unwrap();
            (run(which, true, &x, &w, &b) * &r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let dx = grads[1].flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for i in 0..x0.len() {
            let (mut p, mut m) = (x0.clone(), x0.clone());
            p[i] += h;
            m[i] -= h;
            let fd = (f(&p) - f(&m)) / (2.0 * h);
            assert!((fd - dx[i]).abs() < 1e-6, "op {which} element {i}: finite difference {fd}, backward {}", dx[i]);
        }
    }
}

#[test]
fn other_dtypes_fall_back_to_differentiable_ops() {
    let x = Var::from_tensor(&randn(&[2, 4], DType::BF16, 1)).unwrap();
    let w = Var::from_tensor(&randn(&[4], DType::BF16, 2)).unwrap();
    let y = LayerNorm::new_no_bias(w.as_tensor().clone(), 1e-5).forward(&x).unwrap();
    let g = softmax(&y).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_some() && g.get(&w).is_some());
}

#[test]
fn masked_softmax_equals_candles_reference() {
    // a causal mask, as attention adds it: -∞ above the diagonal (exp(-∞) must be exactly 0)
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
        let t = 7;
        let mask: Vec<f64> = (0..t * t).map(|i| if i % t > i / t { f64::NEG_INFINITY } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, (t, t), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
        let x0 = randn(&[2, t, t], dtype, 5);
        let r = randn(&[2, t, t], dtype, 6).to_dtype(DType::F64).unwrap();
        let run = |fast: bool| {
            let x = Var::from_tensor(&x0.to_dtype(if fast { dtype } else { DType::F64 }).unwrap()).unwrap();
            let masked = x.broadcast_add(&mask.to_dtype(x.dtype()).unwrap()).unwrap();
            let y = if fast { softmax(&masked).unwrap() } else { ops::softmax(&masked, D::Minus1).unwrap() };
            let loss = (y.to_dtype(DType::F64).unwrap() * &r).unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            (y, g.get(&x).unwrap().clone())
        };
        let ((y, dx), (want_y, want_dx)) = (run(true), run(false));
        assert!(max_rel_diff(&y, &want_y) <= tol, "{dtype:?}: outputs differ");
        assert!(max_rel_diff(&dx, &want_dx) <= tol, "{dtype:?}: gradients differ");
        let above: f64 = y
            .to_dtype(DType::F64)
            .unwrap()
            .i((.., 0, 1..))
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(above, 0.0, "{dtype:?}: masked positions get weight");
    }
}

#[test]
fn constructors_use_candle_nns_names_and_train_every_parameter() {
    use lightning::candle_nn::{VarBuilder, VarMap};
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
    let ln = lightning::nn::layer_norm(6, 1e-5, vb.pp("ln")).unwrap();
    let rms = lightning::nn::rms_norm(6, 1e-6, vb.pp("rms")).unwrap();
    let mut names: Vec<String> = vars.data().lock().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["ln.bias", "ln.weight", "rms.weight"]);
    let x = randn(&[3, 6], DType::F32, 4);
    let y = rms.forward(&ln.forward(&x).unwrap()).unwrap();
    let g = (y * randn(&[3, 6], DType::F32, 5)).unwrap().sum_all().unwrap().backward().unwrap();
    for v in vars.all_vars() {
        assert!(g.get(&v).is_some(), "a parameter got no gradient");
    }
}
