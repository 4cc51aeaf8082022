//! The fast CPU layers equal candle's reference ops (outputs and gradients), match finite
//! differences, and reject bad shapes with typed errors.

use lightning::candle::{DType, Device, Module, Tensor, Var};
use lightning::candle_nn::Conv2dConfig;
use lightning::nn::{Conv2d, LayerError, Linear, MaxPool2d};
use proptest::prelude::*;

fn randn(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    // a small deterministic generator, so a failing case reproduces from its printed inputs
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

/// Largest |a - b| relative to the largest |b| (at least 1).
fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let a = a.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let b = b.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let scale = b.iter().fold(1f64, |m, v| m.max(v.abs()));
    a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[derive(Debug, Clone)]
struct ConvCase {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    bias: bool,
    seed: u64,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        1usize..4,
        1usize..4,
        1usize..10,
        1usize..10,
        1usize..5,
        1usize..4,
        1usize..4,
        0usize..3,
        1usize..3,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(n, c, h, w, o, k, stride, padding, dilation, bias, seed)| ConvCase {
            n,
            c,
            h,
            w,
            o,
            k,
            stride,
            padding,
            dilation,
            bias,
            seed,
        })
        .prop_filter("the window must fit the padded input", |c| {
            let span = c.dilation * (c.k - 1) + 1;
            span <= c.h + 2 * c.padding && span <= c.w + 2 * c.padding
        })
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// The convolution and the gradients of `sum(y * r)`, written as plain loops in f64:
/// (y, dx, dw, db).
fn conv_reference(c: &ConvCase, x: &[f64], w: &[f64], b: &[f64], r: &[f64], oh: usize, ow: usize) -> [Vec<f64>; 4] {
    let mut y = vec![0.0; c.n * c.o * oh * ow];
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; c.o]);
    for n in 0..c.n {
        for o in 0..c.o {
            for i in 0..oh {
                for j in 0..ow {
                    let at = ((n * c.o + o) * oh + i) * ow + j;
                    let mut acc = if c.bias { b[o] } else { 0.0 };
                    if c.bias {
                        db[o] += r[at];
                    }
                    for ch in 0..c.c {
                        for ki in 0..c.k {
                            for kj in 0..c.k {
                                let ih = (i * c.stride + ki * c.dilation) as isize - c.padding as isize;
                                let iw = (j * c.stride + kj * c.dilation) as isize - c.padding as isize;
                                if ih < 0 || iw < 0 || ih as usize >= c.h || iw as usize >= c.w {
                                    continue;
                                }
                                let xi = ((n * c.c + ch) * c.h + ih as usize) * c.w + iw as usize;
                                let wi = ((o * c.c + ch) * c.k + ki) * c.k + kj;
                                acc += x[xi] * w[wi];
                                dx[xi] += r[at] * w[wi];
                                dw[wi] += r[at] * x[xi];
                            }
                        }
                    }
                    y[at] = acc;
                }
            }
        }
    }
    [y, dx, dw, db]
}

/// Output, input gradient, weight gradient and bias gradient of `sum(conv(x) * r)`: ours, the
/// plain-loop reference, and candle's `conv2d` + `broadcast_add` (its backward fails on some
/// strided or padded shapes, candle 0.11 bugs: then `None`).
#[allow(clippy::type_complexity)]
fn conv_all(case: &ConvCase, dtype: DType) -> (Vec<Tensor>, [Vec<f64>; 4], Tensor, Option<Vec<Tensor>>) {
    let x = Var::from_tensor(&randn(&[case.n, case.c, case.h, case.w], dtype, case.seed)).unwrap();
    let w = Var::from_tensor(&randn(&[case.o, case.c, case.k, case.k], dtype, case.seed + 1)).unwrap();
    let b = Var::from_tensor(&randn(&[case.o], dtype, case.seed + 2)).unwrap();
    let cfg =
        Conv2dConfig { padding: case.padding, stride: case.stride, dilation: case.dilation, ..Default::default() };
    let ours = Conv2d::new(w.as_tensor().clone(), case.bias.then(|| b.as_tensor().clone()), cfg);
    let y = ours.forward(x.as_tensor()).unwrap();
    let (_, _, oh, ow) = y.dims4().unwrap();
    let r = randn(y.dims(), dtype, case.seed + 3);
    let grad = |g: &lightning::candle::backprop::GradStore, v: &Var| {
        g.get(v).cloned().unwrap_or_else(|| v.zeros_like().unwrap())
    };
    let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let ours_all = vec![y.clone(), grad(&g, &x), grad(&g, &w), grad(&g, &b)];
    let plain = conv_reference(case, &f64s(&x), &f64s(&w), &f64s(&b), &f64s(&r), oh, ow);
    let mut candle = x.conv2d(&w, case.padding, case.stride, case.dilation, 1).unwrap();
    if case.bias {
        candle = candle.broadcast_add(&b.reshape((1, case.o, 1, 1)).unwrap()).unwrap();
    }
    // candle's transposed convolution underflows when twice the padding exceeds its output
    let span = |o: usize| (o - 1) * case.stride + case.dilation * (case.k - 1) + 1;
    let candle_grads = (2 * case.padding <= span(oh).min(span(ow)))
        .then(|| (&candle * &r).unwrap().sum_all().unwrap().backward().ok())
        .flatten()
        .map(|g| vec![grad(&g, &x), grad(&g, &w), grad(&g, &b)]);
    (ours_all, plain, candle, candle_grads)
}

fn check_conv(case: &ConvCase, dtype: DType, tol: f64) -> Result<(), TestCaseError> {
    let (ours, plain, candle, candle_grads) = conv_all(case, dtype);
    let names = ["output", "input grad", "weight grad", "bias grad"];
    for ((what, t), want) in names.iter().zip(&ours).zip(&plain) {
        let want = Tensor::from_vec(want.clone(), t.dims(), &Device::Cpu).unwrap();
        let d = max_rel_diff(t, &want);
        prop_assert!(d <= tol, "{} differs from the plain loops by {} in {:?}", what, d, case);
    }
    let d = max_rel_diff(&ours[0], &candle);
    prop_assert!(d <= tol, "output differs from candle's by {} in {:?}", d, case);
    if let Some(grads) = candle_grads {
        for ((what, t), want) in names[1..].iter().zip(&ours[1..]).zip(&grads) {
            let d = max_rel_diff(t, want);
            prop_assert!(d <= tol, "{} differs from candle's by {} in {:?}", what, d, case);
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct PoolCase {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    relu: bool,
    seed: u64,
}

fn pool_case() -> impl Strategy<Value = PoolCase> {
    (
        1usize..4,
        1usize..4,
        1usize..12,
        1usize..12,
        1usize..4,
        1usize..4,
        1usize..4,
        1usize..4,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(n, c, h, w, kh, kw, sh, sw, relu, seed)| PoolCase {
            n,
            c,
            h,
            w,
            kernel: (kh, kw),
            stride: (sh, sw),
            relu,
            seed,
        })
        .prop_filter("the window must fit the input", |c| c.kernel.0 <= c.h && c.kernel.1 <= c.w)
}

/// PyTorch's max-pool gradient, written plainly: each window's gradient goes to its first
/// maximum (after the ReLU when fused, and nowhere when that maximum is not positive).
fn pool_grad_reference(case: &PoolCase, x: &[f64], dy: &[f64], oh: usize, ow: usize) -> Vec<f64> {
    let mut dx = vec![0.0; x.len()];
    for p in 0..case.n * case.c {
        let plane = &x[p * case.h * case.w..][..case.h * case.w];
        for i in 0..oh {
            for j in 0..ow {
                let mut at = (i * case.stride.0) * case.w + j * case.stride.1;
                for r in i * case.stride.0..i * case.stride.0 + case.kernel.0 {
                    for c in j * case.stride.1..j * case.stride.1 + case.kernel.1 {
                        if plane[r * case.w + c] > plane[at] {
                            at = r * case.w + c;
                        }
                    }
                }
                if !case.relu || plane[at] > 0.0 {
                    dx[p * case.h * case.w + at] += dy[(p * oh + i) * ow + j];
                }
            }
        }
    }
    dx
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn conv2d_equals_references_f32(case in conv_case()) {
        check_conv(&case, DType::F32, 1e-5)?;
    }

    #[test]
    fn conv2d_equals_references_f64(case in conv_case()) {
        check_conv(&case, DType::F64, 1e-12)?;
    }

    #[test]
    fn max_pool2d_equals_candle_forward_and_torch_backward(case in pool_case()) {
        let x = randn(&[case.n, case.c, case.h, case.w], DType::F32, case.seed);
        check_pool(&case, x)?;
    }

    /// The 2×2, stride-2 pool has its own rows (AVX-512 for f32, 16 windows a step): rows of
    /// 1 to 20 windows, odd widths, and pixels in steps of ½ so that windows hold ties.
    #[test]
    fn max_pool2d_2x2_rows_with_ties(n in 1usize..3, c in 1usize..3, h in 2usize..7, w in 2usize..42, relu: bool, seed: u64) {
        let case = PoolCase { n, c, h, w, kernel: (2, 2), stride: (2, 2), relu, seed };
        let x = (randn(&[n, c, h, w], DType::F32, seed) * 2.0).unwrap().round().unwrap();
        check_pool(&case, (x / 2.0).unwrap())?;
    }
}

/// Ours against candle's forward (of the ReLU'd input when fused) and the plain-loop gradient.
fn check_pool(case: &PoolCase, x: Tensor) -> Result<(), TestCaseError> {
    let x = Var::from_tensor(&x).unwrap();
    let mut pool = MaxPool2d::new(1).kernel(case.kernel.0, case.kernel.1).stride(case.stride.0, case.stride.1);
    if case.relu {
        pool = pool.with_relu();
    }
    let y = pool.forward(x.as_tensor()).unwrap();
    let input = if case.relu { x.relu().unwrap() } else { x.as_tensor().clone() };
    let reference = input.max_pool2d_with_stride(case.kernel, case.stride).unwrap();
    prop_assert_eq!(max_rel_diff(&y, &reference), 0.0, "output differs in {:?}", case);
    let r = randn(y.dims(), DType::F32, case.seed.wrapping_add(1));
    let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let dx = g.get(&x).cloned().unwrap_or_else(|| x.zeros_like().unwrap());
    let (_, _, oh, ow) = y.dims4().unwrap();
    let expected = pool_grad_reference(case, &f64s(x.as_tensor()), &f64s(&r), oh, ow);
    let expected = Tensor::from_vec(expected, dx.dims(), &Device::Cpu).unwrap();
    // overlapping windows add several gradients in f32
    let d = max_rel_diff(&dx, &expected);
    prop_assert!(d <= 1e-6, "input gradient differs by {} in {:?}", d, case);
    Ok(())
}

#[derive(Debug, Clone)]
struct LinearCase {
    lead: Vec<usize>,
    inp: usize,
    out: usize,
    bias: bool,
    input_grad: bool,
    seed: u64,
}

fn linear_case() -> impl Strategy<Value = LinearCase> {
    (proptest::collection::vec(1usize..5, 1..3), 1usize..9, 1usize..7, any::<bool>(), any::<bool>(), any::<u64>())
        .prop_map(|(lead, inp, out, bias, input_grad, seed)| LinearCase { lead, inp, out, bias, input_grad, seed })
}

/// Ours against candle-nn's `Linear`: output, and the gradients of the input (when it is a
/// variable; none when it is not), the weight and the bias.
fn check_linear(case: &LinearCase, dtype: DType, tol: f64) -> Result<(), TestCaseError> {
    let mut xs = case.lead.clone();
    xs.push(case.inp);
    let x = randn(&xs, dtype, case.seed);
    let x = if case.input_grad { Var::from_tensor(&x).unwrap().as_tensor().clone() } else { x };
    let w = Var::from_tensor(&randn(&[case.out, case.inp], dtype, case.seed + 1)).unwrap();
    let b = Var::from_tensor(&randn(&[case.out], dtype, case.seed + 2)).unwrap();
    let bias = case.bias.then(|| b.as_tensor().clone());
    let ours = Linear::new(w.as_tensor().clone(), bias.clone()).forward(&x).unwrap();
    let theirs = lightning::candle_nn::Linear::new(w.as_tensor().clone(), bias).forward(&x).unwrap();
    prop_assert!(max_rel_diff(&ours, &theirs) <= tol, "output differs in {:?}", case);
    let r = randn(ours.dims(), dtype, case.seed + 3);
    let g1 = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let g2 = (&theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
    // candle also computes a gradient for an input that is no variable (wasted work); ours doesn't
    prop_assert!(case.input_grad || g1.get(&x).is_none(), "an input gradient nobody needs in {:?}", case);
    let wanted: &[(&str, &Tensor)] = if case.input_grad {
        &[("weight", w.as_tensor()), ("bias", b.as_tensor()), ("input", &x)]
    } else {
        &[("weight", w.as_tensor()), ("bias", b.as_tensor())]
    };
    for &(what, t) in wanted {
        match (g1.get(t), g2.get(t)) {
            (Some(a), Some(e)) => {
                let d = max_rel_diff(a, e);
                prop_assert!(d <= tol, "{} gradient differs by {} in {:?}", what, d, case);
            }
            (None, None) => {}
            (a, e) => prop_assert!(
                false,
                "{} gradient: ours {:?}, candle's {:?} in {:?}",
                what,
                a.is_some(),
                e.is_some(),
                case
            ),
        }
    }
    Ok(())
}

/// Sizes of 16 and more rows and columns, where an AVX-512 CPU runs our own GEMM for f32
/// (smaller products, as in the proptests, use the `gemm` crate).
#[test]
fn layers_at_our_gemm_sizes_equal_the_references() {
    for (i, (lead, inp, out)) in
        [(vec![37], 50, 33), (vec![2, 40], 200, 40), (vec![64], 784, 128)].into_iter().enumerate()
    {
        let case = LinearCase { lead, inp, out, bias: i != 1, input_grad: true, seed: 40 + i as u64 };
        check_linear(&case, DType::F32, 1e-5).unwrap();
    }
    for (i, (c, o, hw, stride, padding)) in [(4, 20, 12, 1, 1), (3, 17, 11, 2, 0)].into_iter().enumerate() {
        let case =
            ConvCase { n: 2, c, h: hw, w: hw, o, k: 3, stride, padding, dilation: 1, bias: true, seed: 50 + i as u64 };
        check_conv(&case, DType::F32, 1e-5).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn linear_equals_candle_nn(case in linear_case()) {
        check_linear(&case, DType::F32, 1e-5)?;
        check_linear(&case, DType::F64, 1e-12)?;
    }
}

#[test]
fn conv2d_matches_finite_differences() {
    let case = ConvCase { n: 2, c: 2, h: 7, w: 6, o: 3, k: 3, stride: 2, padding: 1, dilation: 1, bias: true, seed: 7 };
    let x = randn(&[case.n, case.c, case.h, case.w], DType::F64, 1);
    let w = randn(&[case.o, case.c, case.k, case.k], DType::F64, 2);
    let b = randn(&[case.o], DType::F64, 3);
    let cfg = Conv2dConfig { padding: 1, stride: 2, ..Default::default() };
    let r = randn(&[2, 3, 4, 3], DType::F64, 4);
    let loss = |x: &Tensor, w: &Tensor, b: &Tensor| -> f64 {
        let y = Conv2d::new(w.clone(), Some(b.clone()), cfg).forward(x).unwrap();
        (y * &r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
    };
    let (xv, wv, bv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap(), Var::from_tensor(&b).unwrap());
    let y = Conv2d::new(wv.as_tensor().clone(), Some(bv.as_tensor().clone()), cfg).forward(xv.as_tensor()).unwrap();
    let grads = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let eps = 1e-6;
    for (i, v) in [&xv, &wv, &bv].into_iter().enumerate() {
        let analytic = grads.get(v).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let base = v.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for (j, a) in analytic.iter().enumerate() {
            let bump = |d: f64| {
                let mut data = base.clone();
                data[j] += d;
                Tensor::from_vec(data, v.dims(), &Device::Cpu).unwrap()
            };
            let mut args = [x.clone(), w.clone(), b.clone()];
            args[i] = bump(eps);
            let plus = loss(&args[0], &args[1], &args[2]);
            args[i] = bump(-eps);
            let minus = loss(&args[0], &args[1], &args[2]);
            let numeric = (plus - minus) / (2.0 * eps);
            assert!((numeric - a).abs() < 1e-6, "argument {i}, element {j}: finite difference {numeric}, backward {a}");
        }
    }
}

/// candle 0.11's own max-pool backward passes (number of maxima) / (window size) of the
/// gradient: a quarter for a 2×2 pool with one maximum. Ours passes all of it, as torch does.
#[test]
fn candle_max_pool_backward_is_scaled_ours_is_not() {
    let x = Var::from_tensor(&Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu).unwrap()).unwrap();
    let theirs = x.max_pool2d(2).unwrap().sum_all().unwrap().backward().unwrap();
    let ours = MaxPool2d::new(2).forward(x.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    let flat = |g: &lightning::candle::backprop::GradStore| {
        g.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    assert_eq!(flat(&theirs), [0., 0., 0., 0.25]);
    assert_eq!(flat(&ours), [0., 0., 0., 1.]);
}

#[test]
fn bad_shapes_and_settings_are_typed_errors_naming_the_layer() {
    let dev = Device::Cpu;
    let w = Tensor::zeros((4, 3, 5, 5), DType::F32, &dev).unwrap();
    let conv = Conv2d::new(w.clone(), None, Conv2dConfig::default()).named("c1");
    let small = Tensor::zeros((2, 3, 4, 4), DType::F32, &dev).unwrap();
    assert_eq!(
        conv.check(small.dims()),
        Err(LayerError::KernelTooLarge { layer: "c1".into(), kernel: (5, 5), padded: (4, 4), input: vec![2, 3, 4, 4] })
    );
    let msg = conv.forward(&small).unwrap_err().to_string();
    assert!(msg.contains("`c1`") && msg.contains("[2, 3, 4, 4]"), "{msg}");
    // padding makes it fit
    let padded = Conv2d::new(w.clone(), None, Conv2dConfig { padding: 1, ..Default::default() });
    assert_eq!(padded.forward(&small).unwrap().dims(), &[2, 4, 2, 2]);

    let wrong_channels = Tensor::zeros((2, 1, 9, 9), DType::F32, &dev).unwrap();
    assert_eq!(
        conv.check(wrong_channels.dims()),
        Err(LayerError::Channels { layer: "c1".into(), expected: 3, input: vec![2, 1, 9, 9] })
    );
    assert!(conv.forward(&wrong_channels).is_err());
    assert!(matches!(conv.check(&[3, 9, 9]), Err(LayerError::Rank { .. })));

    let zero_stride = Conv2d::new(w, None, Conv2dConfig { stride: 0, ..Default::default() }).named("c2");
    assert_eq!(zero_stride.check(&[1, 3, 9, 9]), Err(LayerError::Zero { layer: "c2".into(), setting: "stride" }));
    let vars = lightning::candle_nn::VarMap::new();
    let vb = lightning::candle_nn::VarBuilder::from_varmap(&vars, DType::F32, &dev);
    let err =
        lightning::nn::conv2d(3, 4, 3, Conv2dConfig { stride: 0, ..Default::default() }, vb.pp("c3")).unwrap_err();
    assert!(err.to_string().contains("`c3`: stride must be at least 1"), "{err}");

    let pool = MaxPool2d::new(3).named("pool1");
    assert_eq!(
        pool.check(&[1, 2, 2, 8]),
        Err(LayerError::KernelTooLarge {
            layer: "pool1".into(),
            kernel: (3, 3),
            padded: (2, 8),
            input: vec![1, 2, 2, 8]
        })
    );
    assert_eq!(
        MaxPool2d::new(2).stride(0, 1).check(&[1, 1, 4, 4]),
        Err(LayerError::Zero { layer: "max_pool2d".into(), setting: "stride" })
    );
    let as_lightning: lightning::Error = LayerError::Zero { layer: "p".into(), setting: "stride" }.into();
    assert!(matches!(as_lightning, lightning::Error::Layer(LayerError::Zero { .. })));
}

/// Zero sizes (a panic in the backward pass before) and sizes whose weight is too large (an
/// allocation abort before) are typed errors at construction, before anything is allocated.
#[test]
fn zero_and_huge_sizes_are_refused_before_allocating() {
    let dev = Device::Cpu;
    let vars = lightning::candle_nn::VarMap::new();
    let vb = lightning::candle_nn::VarBuilder::from_varmap(&vars, DType::F32, &dev);
    // candle appends a backtrace under RUST_BACKTRACE
    let msg = |e: lightning::candle::Error| e.to_string().lines().next().unwrap().to_string();
    let e = msg(lightning::nn::linear(784, 0, vb.pp("fc1")).unwrap_err());
    assert_eq!(e, "layer `fc1`: out_dim must be at least 1, got 0");
    let e = msg(lightning::nn::linear_no_bias(0, 10, vb.pp("fc2")).unwrap_err());
    assert_eq!(e, "layer `fc2`: in_dim must be at least 1, got 0");
    let e = msg(lightning::nn::linear(784, 100_000_000_000, vb.pp("fc1")).unwrap_err());
    assert!(
        e.starts_with("layer `fc1`: a weight of shape [100000000000, 784] would hold 78400000000000 elements"),
        "{e}"
    );
    let e = msg(lightning::nn::linear(usize::MAX, usize::MAX, vb.pp("big")).unwrap_err());
    assert!(e.contains("more than the 8589934592"), "{e}");
    let e = msg(lightning::nn::conv2d(0, 4, 3, Conv2dConfig::default(), vb.pp("c1")).unwrap_err());
    assert_eq!(e, "layer `c1`: in_channels must be at least 1, got 0");
    let e = msg(lightning::nn::conv2d_no_bias(3, 1 << 40, 3, Conv2dConfig::default(), vb.pp("c2")).unwrap_err());
    assert!(e.contains("a weight of shape [1099511627776, 3, 3, 3]"), "{e}");
    assert!(vars.all_vars().is_empty(), "nothing was allocated");
    assert_eq!(lightning::nn::linear(3, 2, vb.pp("ok")).unwrap().weight().dims(), &[2, 3]);

    // a layer built from tensors of a zero dimension fails in forward, not in backward
    let x = Var::zeros((4, 3), DType::F32, &dev).unwrap();
    let empty = Linear::new(Tensor::zeros((0, 3), DType::F32, &dev).unwrap(), None);
    let e = msg(empty.forward(x.as_tensor()).unwrap_err());
    assert_eq!(e, "layer `linear`: out_dim must be at least 1, got 0");
}

/// Grouped convolutions and other dtypes go to candle's ops, with the same results.
#[test]
fn groups_and_other_dtypes_fall_back_to_candle() {
    let x = randn(&[2, 4, 8, 8], DType::F32, 1);
    let w = randn(&[6, 2, 3, 3], DType::F32, 2);
    let conv = Conv2d::new(w.clone(), None, Conv2dConfig { groups: 2, ..Default::default() });
    let y = conv.forward(&x).unwrap();
    assert_eq!(max_rel_diff(&y, &x.conv2d(&w, 0, 1, 1, 2).unwrap()), 0.0);
    let y = y.to_dtype(DType::BF16).unwrap();
    let p = MaxPool2d::new(2).with_relu().forward(&y).unwrap();
    assert_eq!(p.dtype(), DType::BF16);
    assert_eq!(max_rel_diff(&p, &y.relu().unwrap().max_pool2d(2).unwrap()), 0.0);
}
