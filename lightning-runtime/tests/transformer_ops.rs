//! `lightning::nn`'s transformer ops. `scaled_dot_product_attention` equals the candle composition
//! (`attention_composed`) in outputs and gradients, matches finite differences, and matches
//! torch's `scaled_dot_product_attention` on the inputs `scripts/attention-reference.py`
//! recorded in `tests/fixtures/attention-reference.json`. `Embedding` equals candle-nn's
//! in outputs and gradients; `Dropout` draws its masks from the seeded counter-based
//! generator, the same on its CPU kernel and on candle's ops.

use lightning::candle::{DType, Device, Tensor, Var};
use lightning::nn::{
    attention_composed, scaled_dot_product_attention, self_attention_packed, set_dropout_state, AttentionOptions,
    DropoutState,
};
use lightning::serde_json::Value;
use proptest::prelude::*;

fn randn(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let data: Vec<f64> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Largest |a - b| relative to the largest |b| (at least 1).
fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (f64s(a), f64s(b));
    let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
    a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

type Attn = fn(&Tensor, &Tensor, &Tensor, &AttentionOptions) -> lightning::candle::Result<Tensor>;

/// The output and the gradients of q, k, v for the loss `sum(out * w)`.
fn run(f: Attn, qkv: [&Tensor; 3], w: &Tensor, opts: &AttentionOptions) -> [Tensor; 4] {
    let vars = qkv.map(|t| Var::from_tensor(t).unwrap());
    let out = f(vars[0].as_tensor(), vars[1].as_tensor(), vars[2].as_tensor(), opts).unwrap();
    let grads = (&out * w).unwrap().sum_all().unwrap().backward().unwrap();
    let g = |i: usize| grads.get(vars[i].as_tensor()).expect("a gradient").clone();
    [out, g(0), g(1), g(2)]
}

#[derive(Debug, Clone)]
struct Case {
    b: usize,
    h: usize,
    tq: usize,
    tk: usize,
    d: usize,
    dv: usize,
    causal: bool,
    /// 0: none; 1: a u8 (Tq, Tk) mask; 2: a float (B, 1, Tq, Tk) mask.
    mask: u8,
    scale: Option<f64>,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    let sizes = (1usize..3, 1usize..4, 1usize..7, 1usize..7, 1usize..6, 1usize..6);
    let opts = (any::<bool>(), 0u8..3, proptest::option::of(0.1f64..2.0), any::<u64>());
    (sizes, opts).prop_map(|((b, h, tq, tk, d, dv), (causal, mask, scale, seed))| Case {
        b,
        h,
        tq,
        tk,
        d,
        dv,
        causal,
        mask,
        scale,
        seed,
    })
}

fn inputs(c: &Case, dtype: DType) -> ([Tensor; 3], Tensor, AttentionOptions) {
    let q = randn(&[c.b, c.h, c.tq, c.d], dtype, c.seed);
    let k = randn(&[c.b, c.h, c.tk, c.d], dtype, c.seed ^ 1);
    let v = randn(&[c.b, c.h, c.tk, c.dv], dtype, c.seed ^ 2);
    let w = randn(&[c.b, c.h, c.tq, c.dv], dtype, c.seed ^ 3);
    let mut opts = AttentionOptions::new().causal(c.causal);
    if let Some(s) = c.scale {
        opts = opts.scale(s);
    }
    match c.mask {
        1 => {
            let bits = randn(&[c.tq, c.tk], DType::F64, c.seed ^ 4).gt(-0.4).unwrap();
            opts = opts.mask(&bits);
        }
        2 => opts = opts.mask(&randn(&[c.b, 1, c.tq, c.tk], dtype, c.seed ^ 5)),
        _ => {}
    }
    ([q, k, v], w, opts)
}

fn check_against_composed(c: &Case, dtype: DType, tol: f64) -> Result<(), TestCaseError> {
    let ([q, k, v], w, opts) = inputs(c, dtype);
    let fast = run(scaled_dot_product_attention, [&q, &k, &v], &w, &opts);
    let slow = run(attention_composed, [&q, &k, &v], &w, &opts);
    for (what, (a, b)) in ["output", "dq", "dk", "dv"].iter().zip(fast.iter().zip(&slow)) {
        let diff = max_rel_diff(a, b);
        prop_assert!(diff <= tol, "{what} differs by {diff:e} ({dtype:?}, {c:?})");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn equals_the_candle_composition_f32(c in case()) {
        check_against_composed(&c, DType::F32, 1e-5)?;
    }

    #[test]
    fn equals_the_candle_composition_f64(c in case()) {
        check_against_composed(&c, DType::F64, 1e-12)?;
    }
}

#[test]
fn dropout_draws_the_same_mask_as_the_composition() {
    let c = Case { b: 2, h: 3, tq: 5, tk: 7, d: 4, dv: 3, causal: true, mask: 0, scale: None, seed: 9 };
    let ([q, k, v], w, opts) = inputs(&c, DType::F64);
    let opts = opts.dropout(0.3);
    let state = DropoutState { seed: 42, counter: 1000 };
    set_dropout_state(state);
    let fast = run(scaled_dot_product_attention, [&q, &k, &v], &w, &opts);
    set_dropout_state(state);
    let slow = run(attention_composed, [&q, &k, &v], &w, &opts);
    for (what, (a, b)) in ["output", "dq", "dk", "dv"].iter().zip(fast.iter().zip(&slow)) {
        assert!(max_rel_diff(a, b) <= 1e-12, "{what} differs");
    }
    // the draw advanced the generator by one bit per score, and dropped some
    assert_eq!(lightning::nn::dropout_state(), DropoutState { seed: 42, counter: 1000 + 2 * 3 * 5 * 7 });
    set_dropout_state(state);
    let plain = run(scaled_dot_product_attention, [&q, &k, &v], &w, &AttentionOptions::new().causal(true));
    assert!(max_rel_diff(&fast[0], &plain[0]) > 1e-3, "dropout changed nothing");
}

#[test]
fn gradients_match_finite_differences() {
    let c = Case { b: 1, h: 2, tq: 3, tk: 4, d: 3, dv: 2, causal: true, mask: 2, scale: Some(0.7), seed: 3 };
    let ([q, k, v], w, opts) = inputs(&c, DType::F64);
    let [_, dq, dk, dv] = run(scaled_dot_product_attention, [&q, &k, &v], &w, &opts);
    let loss = |qkv: [&Tensor; 3]| -> f64 {
        let out = scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], &opts).unwrap();
        (&out * &w).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
    };
    let eps = 1e-6;
    for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
        let base = [&q, &k, &v][which];
        let (shape, data, analytic) = (base.dims().to_vec(), f64s(base), f64s(grad));
        for i in 0..data.len() {
            let nudged = |delta: f64| {
                let mut d = data.clone();
                d[i] += delta;
                Tensor::from_vec(d, shape.as_slice(), &Device::Cpu).unwrap()
            };
            let (plus, minus) = (nudged(eps), nudged(-eps));
            let mut args = [&q, &k, &v];
            args[which] = &plus;
            let lp = loss(args);
            args[which] = &minus;
            let numeric = (lp - loss(args)) / (2.0 * eps);
            assert!((numeric - analytic[i]).abs() < 1e-7, "operand {which} element {i}: {numeric} vs {}", analytic[i]);
        }
    }
}

fn tensor(v: &Value, dtype: DType) -> Tensor {
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let data: Vec<f64> = v["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

#[test]
fn matches_torch_on_recorded_inputs() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/attention-reference.json"))
            .expect("tests/fixtures/attention-reference.json (scripts/attention-reference.py writes it)");
    let r: Value = lightning::serde_json::from_str(&text).unwrap();
    let cases = r["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-5)] {
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let [q, k, v, w] = ["q", "k", "v", "weight"].map(|key| tensor(&c[key], dtype));
            let mut opts = AttentionOptions::new().causal(c["is_causal"].as_bool().unwrap());
            if let Some(s) = c["scale"].as_f64() {
                opts = opts.scale(s);
            }
            if !c["mask"].is_null() {
                let m = tensor(&c["mask"], DType::F64);
                let m =
                    if c["mask_is_bool"].as_bool().unwrap() { m.ne(0.0).unwrap() } else { m.to_dtype(dtype).unwrap() };
                opts = opts.mask(&m);
            }
            let got = run(scaled_dot_product_attention, [&q, &k, &v], &w, &opts);
            for (key, t) in ["out", "dq", "dk", "dv"].iter().zip(&got) {
                let diff = max_rel_diff(t, &tensor(&c[*key], DType::F64));
                assert!(diff <= tol, "case {name}, {key} ({dtype:?}): differs from torch by {diff:e}");
            }
        }
    }
}

#[test]
fn bad_shapes_and_options_are_errors() {
    let q = Tensor::zeros((1, 2, 3, 4), DType::F32, &Device::Cpu).unwrap();
    let k = Tensor::zeros((1, 2, 5, 3), DType::F32, &Device::Cpu).unwrap();
    let e = scaled_dot_product_attention(&q, &k, &k, &AttentionOptions::new()).unwrap_err();
    assert!(e.to_string().contains("k must have q's width"), "{e}");
    let m = Tensor::zeros((2, 3), DType::U8, &Device::Cpu).unwrap();
    let e = scaled_dot_product_attention(&q, &q, &q, &AttentionOptions::new().mask(&m)).unwrap_err();
    assert!(e.to_string().contains("does not broadcast"), "{e}");
    let e = scaled_dot_product_attention(&q, &q, &q, &AttentionOptions::new().dropout(1.0)).unwrap_err();
    assert!(e.to_string().contains("[0, 1)"), "{e}");
}

fn embedding_case(dtype: DType, ids: &Tensor) -> [Tensor; 3] {
    let table = randn(&[7, 5], dtype, 11);
    let w = randn(&[ids.elem_count(), 5], dtype, 12).reshape([ids.dims(), &[5]].concat()).unwrap();
    let var = Var::from_tensor(&table).unwrap();
    let ours = lightning::nn::Embedding::new(var.as_tensor().clone());
    let out = lightning::candle::Module::forward(&ours, ids).unwrap();
    let g = (&out * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let var2 = Var::from_tensor(&table).unwrap();
    let theirs = lightning::candle_nn::Embedding::new(var2.as_tensor().clone(), 5);
    let out2 = lightning::candle::Module::forward(&theirs, ids).unwrap();
    let g2 = (&out2 * &w).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(f64s(&out), f64s(&out2));
    [g.get(var.as_tensor()).unwrap().clone(), g2.get(var2.as_tensor()).unwrap().clone(), out]
}

#[test]
fn embedding_equals_candle_nn_with_repeated_indices() {
    let ids = Tensor::new(&[[1u32, 6, 1], [0, 1, 6]], &Device::Cpu).unwrap();
    for (dtype, tol) in [(DType::F32, 1e-6), (DType::F64, 1e-14)] {
        let [ours, theirs, out] = embedding_case(dtype, &ids);
        assert_eq!(out.dims(), &[2, 3, 5]);
        assert!(max_rel_diff(&ours, &theirs) <= tol, "table gradients differ ({dtype:?})");
        // rows never used get zero gradient, row 1 (used three times) the sum of three
        assert!(f64s(&ours.narrow(0, 2, 4).unwrap()).iter().all(|&v| v == 0.0));
    }
    for ids in [Tensor::new(&[3u8, 3], &Device::Cpu).unwrap(), Tensor::new(&[[2i64], [5]], &Device::Cpu).unwrap()] {
        let [ours, theirs, _] = embedding_case(DType::F64, &ids);
        assert!(max_rel_diff(&ours, &theirs) <= 1e-14);
    }
}

#[test]
fn embedding_refuses_out_of_range_indices() {
    let e = lightning::nn::Embedding::new(randn(&[4, 2], DType::F32, 1));
    for ids in [Tensor::new(&[4u32], &Device::Cpu).unwrap(), Tensor::new(&[-1i64], &Device::Cpu).unwrap()] {
        let err = lightning::candle::Module::forward(&e, &ids).unwrap_err();
        assert!(err.to_string().contains("out of range for a table of 4 rows"), "{err}");
    }
}

#[test]
fn dropout_masks_come_from_the_seeded_generator() {
    use lightning::candle_nn::ModuleT;
    let drop = lightning::nn::Dropout::new(0.5);
    let x = randn(&[64, 33], DType::F32, 5);
    assert_eq!(f64s(&drop.forward(&x).unwrap()), f64s(&x), "evaluation (the default outside a trainer)");
    let state = DropoutState { seed: 3, counter: 17 };
    set_dropout_state(state);
    let var = Var::from_tensor(&x).unwrap();
    let y = drop.forward_t(var.as_tensor(), true).unwrap();
    assert_eq!(lightning::nn::dropout_state(), DropoutState { seed: 3, counter: 17 + 64 * 33 });
    let grad = y.sum_all().unwrap().backward().unwrap().get(var.as_tensor()).unwrap().clone();
    let (xs, ys, gs) = (f64s(&x), f64s(&y), f64s(&grad));
    let kept = ys.iter().filter(|v| **v != 0.0).count() as f64 / ys.len() as f64;
    assert!((kept - 0.5).abs() < 0.05, "kept {kept}");
    for i in 0..xs.len() {
        let on = ys[i] != 0.0;
        assert_eq!(ys[i], if on { 2.0 * xs[i] } else { 0.0 });
        assert_eq!(gs[i], if on { 2.0 } else { 0.0 }, "the backward pass recomputes the same mask");
    }
    // candle's ops (here bf16, which the CPU kernel leaves to them) draw the same mask
    set_dropout_state(state);
    let y16 = drop.forward_t(&x.to_dtype(DType::BF16).unwrap(), true).unwrap();
    assert_eq!(f64s(&y16), f64s(&y.to_dtype(DType::BF16).unwrap()));
    assert!(lightning::nn::Dropout::try_new(1.0).is_err());
}

#[test]
fn the_packed_form_equals_three_tensors() {
    for (dtype, tol) in [(DType::F32, 1e-6), (DType::F64, 1e-14)] {
        for (t, mask, drop) in [(1, 0, 0.0), (5, 2, 0.0), (7, 1, 0.25)] {
            let c = Case { b: 2, h: 3, tq: t, tk: t, d: 5, dv: 5, causal: true, mask, scale: None, seed: t as u64 };
            let ([q, k, v], w, opts) = inputs(&c, dtype);
            let opts = opts.dropout(drop);
            set_dropout_state(DropoutState { seed: 1, counter: 0 });
            let apart = run(scaled_dot_product_attention, [&q, &k, &v], &w, &opts);
            let stacked = Var::from_tensor(&Tensor::stack(&[&q, &k, &v], 0).unwrap()).unwrap();
            set_dropout_state(DropoutState { seed: 1, counter: 0 });
            let out = self_attention_packed(stacked.as_tensor(), &opts).unwrap();
            let grads = (&out * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let g = grads.get(stacked.as_tensor()).unwrap();
            assert!(max_rel_diff(&out, &apart[0]) <= tol, "output ({dtype:?}, T={t})");
            for i in 0..3 {
                assert!(max_rel_diff(&g.get(i).unwrap(), &apart[i + 1]) <= tol, "gradient {i} ({dtype:?}, T={t})");
            }
        }
    }
    let bad = Tensor::zeros((2, 4, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(self_attention_packed(&bad, &AttentionOptions::new()).unwrap_err().to_string().contains("(3, …, T, D)"));
}
