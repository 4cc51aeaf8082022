//! SGD and AdamW against torch 2.15's trajectories (tests/fixtures/torch-optim-reference.json,
//! a copy of the shared reference), in float64, through the trainer's `Gradients`.

use candle_core::{DType, Device, Tensor, Var};
use lightning::serde_json::{self, Value};
use lightning::{AdamW, AdamWConfig, Gradients, Optimizer, Sgd, SgdConfig};

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/torch-optim-reference.json")).unwrap()
}

fn mat(v: &Value) -> Vec<Vec<f64>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn tensor(m: &[Vec<f64>]) -> Tensor {
    Tensor::new(m.to_vec(), &Device::Cpu).unwrap()
}

/// Runs `opt` for 100 steps on the fixture's problem and compares the listed steps.
fn check(name: &str, options: &Value, make: impl Fn(Vec<Var>, &Value) -> Box<dyn Optimizer>, want: &Value) {
    let f = fixture();
    let p = &f["problem"];
    let w = Var::from_tensor(&tensor(&mat(&p["w0"]))).unwrap();
    let target = tensor(&mat(&p["target"]));
    let a = tensor(&mat(&p["a"]));
    let mut opt = make(vec![w.clone()], options);
    let mut grads = Gradients::new(vec![w.clone()]);
    for step in 1..=100 {
        let diff = (w.as_tensor() - &target).unwrap();
        let loss = ((&a * diff.sqr().unwrap()).unwrap().sum_all().unwrap()
            + (w.as_tensor().powf(4.0).unwrap() * 0.1).unwrap().sum_all().unwrap())
        .unwrap();
        grads.clear();
        grads.accumulate(loss.backward().unwrap()).unwrap();
        opt.step(&grads).unwrap();
        if let Some(expected) = want.get(step.to_string()) {
            let got = w.as_tensor().to_vec2::<f64>().unwrap();
            for (gr, er) in got.iter().zip(mat(expected)) {
                for (g, e) in gr.iter().zip(er) {
                    let rel = (g - e).abs() / e.abs().max(1e-12);
                    assert!(rel < 1e-9 || (g - e).abs() < 1e-12, "{name} {options} step {step}: {g} vs {e}");
                }
            }
        }
    }
}

#[test]
fn sgd_and_adamw_match_torch_in_f64() {
    let f = fixture();
    let mut checked = 0;
    for case in f["optimizers"].as_array().unwrap() {
        let o = &case["options"];
        let num = |k: &str, d: f64| o.get(k).and_then(Value::as_f64).unwrap_or(d);
        let name = case["optimizer"].as_str().unwrap();
        match name {
            "SGD" => check(
                name,
                o,
                |vars, _| {
                    let c = SgdConfig {
                        lr: num("lr", 1e-3),
                        momentum: num("momentum", 0.0),
                        dampening: num("dampening", 0.0),
                        weight_decay: num("weight_decay", 0.0),
                        nesterov: o.get("nesterov").and_then(Value::as_bool).unwrap_or(false),
                    };
                    Box::new(Sgd::with_config(vars, c).unwrap())
                },
                &case["w_after_step"],
            ),
            "AdamW" => check(
                name,
                o,
                |vars, _| {
                    let c = AdamWConfig {
                        lr: num("lr", 1e-3),
                        weight_decay: num("weight_decay", 1e-2),
                        ..AdamWConfig::default()
                    };
                    Box::new(AdamW::new(vars, c).unwrap())
                },
                &case["w_after_step"],
            ),
            // Adam, RMSprop and Adagrad come with the optimizer issue.
            _ => continue,
        }
        checked += 1;
    }
    assert_eq!(checked, 5, "4 SGD and 1 AdamW configurations");
}

#[test]
fn f32_parameters_train_too() {
    let w = Var::ones((2, 2), DType::F32, &Device::Cpu).unwrap();
    let mut opt = AdamW::with_lr(vec![w.clone()], 0.1).unwrap();
    let mut grads = Gradients::new(vec![w.clone()]);
    grads.accumulate(w.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap()).unwrap();
    opt.step(&grads).unwrap();
    // first AdamW step: w(1 - lr·wd) - lr·sign(g)
    let got = w.as_tensor().to_vec2::<f32>().unwrap();
    assert!((got[0][0] - (0.999 - 0.1)).abs() < 1e-6, "{got:?}");
}
