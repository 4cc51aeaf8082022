//! Every optimizer configuration of torch 2.15's trajectories (tests/fixtures/
//! torch-optim-reference.json, a copy of the shared reference), in f64 and f32, through
//! the trainer's `Gradients`; parameter groups; saved and restored state; bad settings.

use candle_core::{DType, Device, Tensor, Var};
use lightning::optim::*;
use lightning::serde_json::{self, Value};
use lightning::{Error, Gradients};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/torch-optim-reference.json")).unwrap()
}

fn mat(v: &Value) -> Vec<Vec<f64>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn tensor(m: &[Vec<f64>], dtype: DType) -> Tensor {
    Tensor::new(m.to_vec(), &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
}

/// The fixture's optimizer for one case, over `params`.
fn make(case: &Value, params: Params) -> Box<dyn Optimizer> {
    let o = &case["options"];
    let num = |k: &str, d: f64| o.get(k).and_then(Value::as_f64).unwrap_or(d);
    let flag = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
    match case["optimizer"].as_str().unwrap() {
        "SGD" => Box::new(
            Sgd::with_config(
                params,
                SgdConfig {
                    lr: num("lr", 1e-3),
                    momentum: num("momentum", 0.0),
                    dampening: num("dampening", 0.0),
                    weight_decay: num("weight_decay", 0.0),
                    nesterov: flag("nesterov"),
                },
            )
            .unwrap(),
        ),
        "Adam" => Box::new(
            Adam::new(
                params,
                AdamConfig {
                    lr: num("lr", 1e-3),
                    weight_decay: num("weight_decay", 0.0),
                    amsgrad: flag("amsgrad"),
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
        "AdamW" => Box::new(
            AdamW::new(
                params,
                AdamWConfig {
                    lr: num("lr", 1e-3),
                    weight_decay: num("weight_decay", 1e-2),
                    amsgrad: flag("amsgrad"),
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
        "RMSprop" => Box::new(
            RmsProp::new(
                params,
                RmsPropConfig {
                    lr: num("lr", 1e-2),
                    momentum: num("momentum", 0.0),
                    centered: flag("centered"),
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
        "Adagrad" => {
            Box::new(Adagrad::new(params, AdagradConfig { lr: num("lr", 1e-2), ..Default::default() }).unwrap())
        }
        other => panic!("unknown optimizer {other}"),
    }
}

struct Problem {
    w: Var,
    target: Tensor,
    a: Tensor,
}

impl Problem {
    fn new(dtype: DType) -> Self {
        let f = fixture();
        let p = &f["problem"];
        let w = Var::from_tensor(&tensor(&mat(&p["w0"]), dtype)).unwrap();
        Problem { w, target: tensor(&mat(&p["target"]), dtype), a: tensor(&mat(&p["a"]), dtype) }
    }

    /// sum(a (w − target)²) + sum(0.1 w⁴), as in the fixture.
    fn grads(&self, grads: &mut Gradients) {
        let w = self.w.as_tensor();
        let loss = ((&self.a * (w - &self.target).unwrap().sqr().unwrap()).unwrap().sum_all().unwrap()
            + (w.powf(4.0).unwrap() * 0.1).unwrap().sum_all().unwrap())
        .unwrap();
        grads.clear();
        grads.accumulate(loss.backward().unwrap()).unwrap();
    }

    fn value(&self) -> Vec<Vec<f64>> {
        self.w.as_tensor().to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap()
    }
}

fn compare(what: &str, got: &[Vec<f64>], want: &Value, rel: f64, abs: f64) {
    for (gr, er) in got.iter().zip(mat(want)) {
        for (g, e) in gr.iter().zip(er) {
            assert!((g - e).abs() <= rel * e.abs() || (g - e).abs() <= abs, "{what}: {g} vs {e}");
        }
    }
}

fn check_case(case: &Value, dtype: DType, rel: f64, abs: f64) {
    let pb = Problem::new(dtype);
    let mut opt = make(case, vec![("w".to_string(), pb.w.clone())].into());
    let mut grads = Gradients::new(vec![pb.w.clone()]);
    let want = &case["w_after_step"];
    let mut compared = 0;
    for step in 1..=100 {
        pb.grads(&mut grads);
        opt.step(&grads).unwrap();
        if let Some(expected) = want.get(step.to_string()) {
            compare(
                &format!("{} {} {dtype:?} step {step}", case["optimizer"], case["options"]),
                &pb.value(),
                expected,
                rel,
                abs,
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 6, "steps 1, 2, 5, 10, 50 and 100");
}

#[test]
fn every_configuration_matches_torch_in_f64() {
    let f = fixture();
    let cases = f["optimizers"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        check_case(case, DType::F64, 1e-9, 1e-12);
    }
}

#[test]
fn every_configuration_matches_torch_in_f32() {
    for case in fixture()["optimizers"].as_array().unwrap() {
        check_case(case, DType::F32, 1e-5, 1e-5);
    }
}

#[test]
fn state_saved_mid_run_continues_the_same_trajectory() {
    let f = fixture();
    for case in f["optimizers"].as_array().unwrap() {
        let pb = Problem::new(DType::F64);
        let mut opt = make(case, vec![("w".to_string(), pb.w.clone())].into());
        let mut grads = Gradients::new(vec![pb.w.clone()]);
        for _ in 0..5 {
            pb.grads(&mut grads);
            opt.step(&grads).unwrap();
        }
        let saved = opt.state_dict().unwrap();
        let weights = pb.w.as_tensor().copy().unwrap();
        // a fresh optimizer over a fresh variable, restored from the state
        let pb2 = Problem::new(DType::F64);
        pb2.w.set(&weights).unwrap();
        let mut opt2 = make(case, vec![("w".to_string(), pb2.w.clone())].into());
        opt2.load_state_dict(&saved).unwrap();
        let mut grads2 = Gradients::new(vec![pb2.w.clone()]);
        for step in 6..=10 {
            pb.grads(&mut grads);
            opt.step(&grads).unwrap();
            pb2.grads(&mut grads2);
            opt2.step(&grads2).unwrap();
            assert_eq!(pb.value(), pb2.value(), "{} step {step}", case["optimizer"]);
        }
        compare("after restore", &pb2.value(), &case["w_after_step"]["10"], 1e-9, 1e-12);
    }
}

#[test]
fn state_is_keyed_by_name_and_checked() {
    let a = Var::ones(2, DType::F32, &Device::Cpu).unwrap();
    let b = Var::ones(3, DType::F32, &Device::Cpu).unwrap();
    let params: Params = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())].into();
    let mut opt = Adam::new(params, AdamConfig::default()).unwrap();
    let mut grads = Gradients::new(vec![a.clone(), b.clone()]);
    grads
        .accumulate((a.as_tensor().sum_all().unwrap() + b.as_tensor().sum_all().unwrap()).unwrap().backward().unwrap())
        .unwrap();
    opt.step(&grads).unwrap();
    let s = opt.state_dict().unwrap();
    assert_eq!(s.tensors.keys().collect::<Vec<_>>(), ["a.exp_avg", "a.exp_avg_sq", "b.exp_avg", "b.exp_avg_sq"]);
    // the same names in another order load; other names or shapes do not
    let reordered: Params = vec![("b".to_string(), b.clone()), ("a".to_string(), a.clone())].into();
    Adam::new(reordered, AdamConfig::default()).unwrap().load_state_dict(&s).unwrap();
    let renamed: Params = vec![("a".to_string(), a.clone()), ("c".to_string(), b.clone())].into();
    let e = Adam::new(renamed, AdamConfig::default()).unwrap().load_state_dict(&s).unwrap_err();
    assert!(e.to_string().contains("no parameter `c`"), "{e}");
    let c = Var::ones(4, DType::F32, &Device::Cpu).unwrap();
    let reshaped: Params = vec![("a".to_string(), a), ("b".to_string(), c)].into();
    let e = Adam::new(reshaped, AdamConfig::default()).unwrap().load_state_dict(&s).unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");
}

#[test]
fn parameter_groups_have_their_own_learning_rates() {
    let a = Var::ones(1, DType::F64, &Device::Cpu).unwrap();
    let b = Var::ones(1, DType::F64, &Device::Cpu).unwrap();
    let params = Params::from(vec![("a".to_string(), a.clone())]).group(vec![("b".to_string(), b.clone())], 0.5);
    let mut opt = Sgd::new(params, 0.1).unwrap();
    assert_eq!((opt.num_groups(), opt.learning_rate(0), opt.learning_rate(1)), (2, 0.1, 0.5));
    let mut grads = Gradients::new(vec![a.clone(), b.clone()]);
    grads.accumulate((a.as_tensor() + b.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap()).unwrap();
    opt.step(&grads).unwrap();
    assert_eq!(a.as_tensor().to_vec1::<f64>().unwrap(), [0.9]);
    assert_eq!(b.as_tensor().to_vec1::<f64>().unwrap(), [0.5]);
}

#[test]
fn bad_settings_are_typed_errors_naming_the_option() {
    let v = || vec![Var::ones(1, DType::F32, &Device::Cpu).unwrap()];
    let flag = |r: lightning::Result<()>| match r {
        Err(Error::Config { flag, .. }) => flag,
        other => panic!("{other:?}"),
    };
    assert_eq!(flag(Sgd::new(v(), 0.0).map(drop)), "lr");
    assert_eq!(flag(Sgd::new(v(), f64::NAN).map(drop)), "lr");
    assert_eq!(flag(Sgd::new(v(), -1.0).map(drop)), "lr");
    assert_eq!(flag(Adam::new(v(), AdamConfig { beta1: 1.0, ..Default::default() }).map(drop)), "beta1");
    assert_eq!(flag(AdamW::new(v(), AdamWConfig { beta2: -0.1, ..Default::default() }).map(drop)), "beta2");
    assert_eq!(
        flag(Sgd::with_config(v(), SgdConfig { lr: 0.1, weight_decay: -1.0, ..Default::default() }).map(drop)),
        "weight_decay"
    );
    assert_eq!(
        flag(RmsProp::new(v(), RmsPropConfig { weight_decay: -0.5, ..Default::default() }).map(drop)),
        "weight_decay"
    );
    assert_eq!(flag(Sgd::new(Vec::<Var>::new(), 0.1).map(drop)), "params");
    let x = Var::ones(1, DType::F32, &Device::Cpu).unwrap();
    let twice: Params = vec![("x".to_string(), x.clone()), ("x".to_string(), x)].into();
    assert_eq!(flag(Sgd::new(twice, 0.1).map(drop)), "params");
    let named = |n: &str| vec![(n.to_string(), Var::ones(1, DType::F32, &Device::Cpu).unwrap())];
    assert_eq!(flag(Sgd::new(Params::from(named("a")).group(named("b"), 0.0), 0.1).map(drop)), "lr");
}
