//! `lightning::nn`'s transformer layers in the trainer: a tiny GPT (Embedding, a pre-LN
//! TransformerBlock with dropout, a linear head) trains with every parameter getting a
//! gradient (the unused-parameter guard is on), dropout is on in training batches only,
//! a fit interrupted and resumed from its checkpoint ends bit-identical to an uninterrupted
//! one (the dropout generator's state is in the checkpoint), and a block loads GPT-2-named
//! weights.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use lightning::nn::{self, TransformerBlock, TransformerConfig};
use lightning::prelude::*;

const V: usize = 11;
const T: usize = 6;

#[lightning_module]
struct Gpt {
    vars: VarMap,
    wte: nn::Embedding,
    wpe: nn::Embedding,
    h: TransformerBlock,
    head: nn::Linear,
    /// The dropout flag each step saw: (training steps, validation steps) with it on.
    flags: (usize, usize),
}

impl Gpt {
    fn new(dropout: f64) -> Gpt {
        let vars = VarMap::new();
        let vb = lightning::seeded_var_builder(&vars, 3, DType::F32, &Device::Cpu);
        Gpt {
            wte: nn::embedding(V, 16, vb.pp("wte")).unwrap(),
            wpe: nn::embedding(T, 16, vb.pp("wpe")).unwrap(),
            h: TransformerBlock::new(TransformerConfig::new(16, 2).dropout(dropout), vb.pp("h.0")).unwrap(),
            head: nn::linear(16, V, vb.pp("head")).unwrap(),
            vars,
            flags: (0, 0),
        }
    }

    fn loss(&self, batch: &(Tensor, Tensor)) -> candle_core::Result<Tensor> {
        let pos = Tensor::arange(0u32, T as u32, &Device::Cpu)?;
        let x = self.wte.forward(&batch.0)?.broadcast_add(&self.wpe.forward(&pos)?)?;
        let logits = self.head.forward(&self.h.forward(&x)?)?;
        candle_nn::loss::cross_entropy(&logits.flatten_to(1)?, &batch.1.flatten_all()?)
    }

    fn weights(&self) -> Vec<(String, Vec<f32>)> {
        let mut named: Vec<_> = self.vars.data().lock().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named.into_iter().map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect()
    }
}

#[lightning_module]
impl Gpt {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        self.flags.0 += nn::is_training() as usize;
        let loss = self.loss(batch)?;
        trainer.log("train_loss", &loss)?;
        Ok(loss)
    }
    fn validation_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        self.flags.1 += nn::is_training() as usize;
        trainer.log("val_loss", self.loss(batch)?)?;
        Ok(())
    }
    fn configure_optimizers(&mut self) -> lightning::Result<AdamW> {
        AdamW::new(&self.vars, AdamWConfig { lr: 0.01, ..Default::default() })
    }
}

/// Sequences that count up modulo V from a varying start: the next token is predictable.
fn data() -> DataLoader {
    let x: Vec<u32> = (0..24 * T).map(|i| ((i / T * 7 + i % T) % V) as u32).collect();
    let y: Vec<u32> = x.iter().map(|t| (t + 1) % V as u32).collect();
    let x = Tensor::from_vec(x, (24, T), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(y, (24, T), &Device::Cpu).unwrap();
    DataLoader::new(x, y, 8).unwrap().shuffle(4)
}

fn trainer(dir: &std::path::Path, epochs: usize, seed: u64) -> Trainer {
    Trainer::builder()
        .accelerator(Accelerator::Cpu)
        .default_root_dir(dir)
        .max_epochs(epochs)
        .enable_progress_bar(false)
        .seed(seed)
        .build()
        .unwrap()
}

#[test]
fn a_tiny_gpt_trains_every_parameter_with_dropout_in_training_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut gpt = Gpt::new(0.1);
    let before = gpt.loss(&data().batches(0).next().unwrap().unwrap()).unwrap().to_scalar::<f32>().unwrap();
    // the unused-parameter guard is on: a parameter without a gradient would fail this fit
    let out = trainer(dir.path(), 8, 1).fit(&mut gpt, Data::loader(data()).val(data())).unwrap();
    assert_eq!(out.global_step, 24);
    assert_eq!(gpt.flags.0, 24, "dropout is on in every training step");
    assert_eq!(gpt.flags.1, 0, "and off in validation (sanity check included)");
    assert!(!nn::is_training(), "the flag is off again after fit");
    let after = gpt.loss(&data().batches(0).next().unwrap().unwrap()).unwrap().to_scalar::<f32>().unwrap();
    assert!(after < 0.6 * before, "loss {before} -> {after}");
}

#[test]
fn a_resumed_fit_with_dropout_ends_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let mut straight = Gpt::new(0.3);
    trainer(&dir.path().join("a"), 3, 7).fit(&mut straight, Data::loader(data())).unwrap();

    let mut first = Gpt::new(0.3);
    let ckpt =
        trainer(&dir.path().join("b"), 1, 7).fit(&mut first, Data::loader(data())).unwrap().last_checkpoint.unwrap();
    let saved = Checkpoint::load(&ckpt).unwrap().dropout.expect("the dropout state is in the checkpoint");
    assert_eq!(saved.seed, 7);
    assert!(saved.counter > 0, "the first epoch drew masks");

    let mut resumed = Gpt::new(0.3);
    let mut t = trainer(&dir.path().join("b"), 3, 7);
    t.resume_from(&ckpt);
    t.fit(&mut resumed, Data::loader(data())).unwrap();
    assert!(resumed.weights() == straight.weights(), "bit-identical after resume");

    // the masks matter: another seed ends elsewhere
    let mut other = Gpt::new(0.3);
    trainer(&dir.path().join("c"), 3, 8).fit(&mut other, Data::loader(data())).unwrap();
    assert!(other.weights() != straight.weights());
}

/// A block's output from GPT-2-named tensors, computed here with plain candle ops.
fn reference(w: &HashMap<String, Tensor>, x: &Tensor, heads: usize, causal: bool) -> candle_core::Result<Tensor> {
    let ln = |x: &Tensor, p: &str| {
        candle_nn::ops::layer_norm_slow(x, &w[&format!("{p}.weight")], &w[&format!("{p}.bias")], 1e-5)
    };
    let lin = |x: &Tensor, p: &str| {
        x.broadcast_matmul(&w[&format!("{p}.weight")].t()?)?.broadcast_add(&w[&format!("{p}.bias")])
    };
    let (b, t, c) = x.dims3()?;
    let qkv = lin(&ln(x, "ln_1")?, "attn.c_attn")?;
    let split = |i: usize| qkv.narrow(2, i * c, c)?.reshape((b, t, heads, c / heads))?.transpose(1, 2)?.contiguous();
    let (q, k, v) = (split(0)?, split(1)?, split(2)?);
    let s = (q.matmul(&k.t()?)? / ((c / heads) as f64).sqrt())?;
    let mask: Vec<f32> = (0..t * t).map(|ij| if causal && ij % t > ij / t { f32::NEG_INFINITY } else { 0.0 }).collect();
    let s = s.broadcast_add(&Tensor::from_vec(mask, (t, t), x.device())?)?;
    let y = candle_nn::ops::softmax(&s, D::Minus1)?.matmul(&v)?.transpose(1, 2)?.reshape((b, t, c))?;
    let x = (x + lin(&y, "attn.c_proj")?)?;
    let m = lin(&lin(&ln(&x, "ln_2")?, "mlp.c_fc")?.gelu()?, "mlp.c_proj")?;
    x + m
}

#[test]
fn a_block_loads_gpt2_named_weights() {
    let c = 8;
    let shapes: [(&str, &[usize]); 12] = [
        ("ln_1.weight", &[c]),
        ("ln_1.bias", &[c]),
        ("attn.c_attn.weight", &[3 * c, c]),
        ("attn.c_attn.bias", &[3 * c]),
        ("attn.c_proj.weight", &[c, c]),
        ("attn.c_proj.bias", &[c]),
        ("ln_2.weight", &[c]),
        ("ln_2.bias", &[c]),
        ("mlp.c_fc.weight", &[4 * c, c]),
        ("mlp.c_fc.bias", &[4 * c]),
        ("mlp.c_proj.weight", &[c, 4 * c]),
        ("mlp.c_proj.bias", &[c]),
    ];
    let weights: HashMap<String, Tensor> = shapes
        .iter()
        .map(|(name, shape)| (name.to_string(), Tensor::randn(0f32, 0.5, *shape, &Device::Cpu).unwrap()))
        .collect();
    let named: HashMap<String, Tensor> = weights.iter().map(|(k, v)| (format!("h.3.{k}"), v.clone())).collect();
    let vb = VarBuilder::from_tensors(named, DType::F32, &Device::Cpu);
    let x = Tensor::randn(0f32, 1.0, (2, 5, c), &Device::Cpu).unwrap();
    let max_diff =
        |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    // GPT's causal decoder (the default) and an encoder that attends to every position
    let mut outputs = Vec::new();
    for causal in [true, false] {
        let config = TransformerConfig::new(c, 2).causal(causal);
        let block = TransformerBlock::new(config, vb.pp("h.3")).unwrap();
        let got = block.forward_t(&x, false).unwrap();
        let diff = max_diff(&got, &reference(&weights, &x, 2, causal).unwrap());
        assert!(diff < 1e-5, "causal {causal}: differs from the reference by {diff}");
        outputs.push(got);
    }
    assert!(max_diff(&outputs[0], &outputs[1]) > 1e-3, "the encoder must see later positions");
    // a missing tensor is an error naming it
    let vb = VarBuilder::from_tensors(HashMap::new(), DType::F32, &Device::Cpu);
    let e = TransformerBlock::new(TransformerConfig::new(c, 2), vb.pp("h.0")).unwrap_err();
    assert!(e.to_string().contains("h.0.ln_1.weight"), "{e}");
}
