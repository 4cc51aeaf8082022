//! A character-level GPT with candle-lightning, as nanoGPT's Shakespeare-char run: a
//! character vocabulary, the last tenth of the text held out for validation, pre-LN
//! transformer blocks with GPT-2's parameter names, the loss on every position, AdamW with
//! OneCycleLR (a warm-up then a cosine decay over `estimated_stepping_batches`), dropout from
//! a seeded generator that checkpoints keep, a generated sample written each epoch, and
//! `predict_step` generating from a prompt with a temperature and top-k.
//!
//! ```text
//! cargo run --release --example gpt                                  # embedded fortunes sample
//! cargo run --release --example gpt -- --preset small                # 2 layers, d = 64, context 16
//! cargo run --release --example gpt -- --data /usr/share/games/fortunes   # scripts/fortunes.sh
//! cargo run --release --example gpt -- --predict-only --ckpt-path last --prompt "A horse" --top-k 10
//! ```
//! The embedded sample (examples/data/fortunes-sample) is Debian's `fortunes-min` (the
//! `fortunes`, `literature` and `riddles` files of fortune-mod, BSD licence, copyright file
//! beside them): 98 KB of quotations.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Init, VarBuilder, VarMap};
use clap::Parser;
use lightning::callbacks::Mode;
use lightning::prelude::*;
use lightning::{serde_json, OnExceptionCheckpoint};
use rand::{Rng, SeedableRng};

/// The generator of the dropout masks (and, seeded apart, of sampling): ChaCha12, whose
/// position can be read and set, so checkpoints hold it and a resume draws what an
/// uninterrupted run would.
pub type Gen = rand_chacha::ChaCha12Rng;

/// Debian's `fortunes-min`: the files `fortunes`, `literature`, `riddles`, gzipped.
const SAMPLE: [(&str, &[u8]); 3] = [
    ("fortunes", include_bytes!("data/fortunes-sample/fortunes.gz")),
    ("literature", include_bytes!("data/fortunes-sample/literature.gz")),
    ("riddles", include_bytes!("data/fortunes-sample/riddles.gz")),
];

/// Train a character-level GPT on a text.
#[derive(Parser, Debug, Clone)]
// a later flag overrides an earlier one (a script can append its own)
#[command(allow_negative_numbers = true, args_override_self = true)]
pub struct Args {
    /// A text file, or a directory whose files without an extension are read in name order
    /// (Debian's fortunes at /usr/share/games/fortunes); default: the embedded sample.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// `gpt` (4 layers, 4 heads, d = 128, context 128, batch 16) or `small` (2 layers,
    /// 4 heads, d = 64, context 16, batch 128); the flags below override single sizes.
    #[arg(long, default_value = "gpt")]
    pub preset: Preset,
    /// Transformer blocks.
    #[arg(long, value_parser = at_least(1).range(1..=64))]
    pub n_layer: Option<usize>,
    /// Attention heads per block.
    #[arg(long, value_parser = at_least(1).range(1..=64))]
    pub n_head: Option<usize>,
    /// The model width; a multiple of `--n-head`.
    #[arg(long, value_parser = at_least(1).range(1..=8192))]
    pub n_embd: Option<usize>,
    /// The context length in characters.
    #[arg(long, value_parser = at_least(1).range(1..=8192))]
    pub block_size: Option<usize>,
    /// Sequences per batch.
    #[arg(long, value_parser = at_least(1))]
    pub batch_size: Option<usize>,
    /// Dropout on the embeddings and on each residual branch while training.
    #[arg(long, default_value_t = 0.1, value_parser = probability)]
    pub dropout: f64,
    /// Epochs to train (Lightning's `max_epochs`).
    #[arg(long, default_value_t = 12, value_parser = at_least(0))]
    pub epochs: usize,
    /// The peak learning rate of the one-cycle schedule.
    #[arg(long, default_value_t = 3e-3, value_parser = positive, allow_hyphen_values = true)]
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.01, value_parser = non_negative)]
    pub weight_decay: f64,
    /// Training batches per epoch (Lightning's `limit_train_batches`); default: all.
    #[arg(long, value_parser = at_least(1))]
    pub limit_train_batches: Option<usize>,
    /// Seeds the weights, the batch order, dropout and sampling.
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
    /// auto, cpu, cuda or metal.
    #[arg(long, default_value = "auto")]
    pub accelerator: String,
    /// Where logs, samples and checkpoints go.
    #[arg(long, default_value = "target/gpt-example")]
    pub root_dir: PathBuf,
    /// Resume from this checkpoint, `last` (the newest under `--root-dir`) or `best`.
    #[arg(long)]
    pub ckpt_path: Option<lightning::CkptPath>,
    /// Checkpoints kept by `val_loss` (Lightning's `save_top_k`; -1: every epoch's), besides `last.ckpt`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(-1..))]
    pub save_top_k: i64,
    /// Only generate from `--prompt` with the weights of `--ckpt-path` (no training).
    #[arg(long, requires = "ckpt_path")]
    pub predict_only: bool,
    /// The text generation starts from (after training, and each epoch's sample).
    #[arg(long, default_value = "\n")]
    pub prompt: String,
    /// Characters to generate from `--prompt`.
    #[arg(long, default_value_t = 300)]
    pub max_new_tokens: usize,
    /// Characters of the sample written to the log each epoch (0: none).
    #[arg(long, default_value_t = 200)]
    pub sample_chars: usize,
    /// Divides the logits before sampling: below 1 sharper, above 1 flatter.
    #[arg(long, default_value_t = 0.8, value_parser = positive, allow_hyphen_values = true)]
    pub temperature: f64,
    /// Sample among the `k` likeliest characters only (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
}

/// A model size (`--preset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 4 layers, 4 heads, d = 128, context 128, batch 16.
    Gpt,
    /// 2 layers, 4 heads, d = 64, context 16, batch 128.
    Small,
}

fn at_least(min: i64) -> clap::builder::RangedI64ValueParser<usize> {
    clap::builder::RangedI64ValueParser::<usize>::new().range(min..)
}

fn number(s: &str, ok: impl Fn(f64) -> bool, what: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if ok(v) => Ok(v),
        Ok(v) => Err(format!("{v} is not {what}")),
        Err(e) => Err(format!("{e}")),
    }
}
fn positive(s: &str) -> Result<f64, String> {
    number(s, |v| v > 0.0 && v.is_finite(), "a positive finite number")
}
fn non_negative(s: &str) -> Result<f64, String> {
    number(s, |v| v >= 0.0 && v.is_finite(), "a finite number of at least 0")
}
fn probability(s: &str) -> Result<f64, String> {
    number(s, |v| (0.0..1.0).contains(&v), "in [0, 1)")
}

/// The model's sizes and training settings; `hparams.yaml` and every checkpoint hold them.
#[derive(serde::Serialize, Clone, Debug, PartialEq)]
pub struct Config {
    /// The preset the sizes started from.
    pub preset: Preset,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// The model width.
    pub n_embd: usize,
    /// The context length in characters.
    pub block_size: usize,
    /// Distinct characters of the text.
    pub vocab_size: usize,
    /// Sequences per batch.
    pub batch_size: usize,
    /// Dropout probability on the embeddings and residual branches.
    pub dropout: f64,
    /// The peak learning rate.
    pub lr: f64,
    /// AdamW's weight decay.
    pub weight_decay: f64,
    /// The run's seed.
    pub seed: u64,
}

impl Config {
    /// The preset's sizes with the flags' overrides; the width must split into the heads.
    pub fn from_args(args: &Args, vocab_size: usize) -> lightning::Result<Config> {
        let (layers, heads, width, context, batch) = match args.preset {
            // batch 16: twice the steps of 32 in about the same time; a lower loss (README)
            Preset::Gpt => (4, 4, 128, 128, 16),
            Preset::Small => (2, 4, 64, 16, 128),
        };
        let cfg = Config {
            preset: args.preset,
            n_layer: args.n_layer.unwrap_or(layers),
            n_head: args.n_head.unwrap_or(heads),
            n_embd: args.n_embd.unwrap_or(width),
            block_size: args.block_size.unwrap_or(context),
            vocab_size,
            batch_size: args.batch_size.unwrap_or(batch),
            dropout: args.dropout,
            lr: args.lr,
            weight_decay: args.weight_decay,
            seed: args.seed,
        };
        if !cfg.n_embd.is_multiple_of(cfg.n_head) {
            return Err(lightning::Error::msg(format!(
                "--n-embd {} does not split into {} heads: give a multiple of --n-head",
                cfg.n_embd, cfg.n_head
            )));
        }
        Ok(cfg)
    }
}

// ---- the operations the model is built from --------------------------------------------

/// The layers and functions the GPT is made of, as one type parameter, so the same model runs
/// on `lightning::nn` ([`Fast`]) and on candle's slow-but-correct ops ([`Reference`], for the
/// benchmark). Static dispatch: no cost per call.
pub trait Kernels: 'static {
    /// A linear layer.
    type Linear: Module + Relocate;
    /// A LayerNorm.
    type Norm: Module + Relocate;
    /// An embedding table.
    type Embedding: Module + Relocate;
    /// A linear layer from `inp` to `out` features (weights `weight` and, with `bias`, `bias`).
    fn linear(inp: usize, out: usize, bias: bool, vb: VarBuilder) -> candle_core::Result<Self::Linear>;
    /// A LayerNorm over the last dimension (weights `weight` and `bias`, eps 1e-5).
    fn layer_norm(size: usize, vb: VarBuilder) -> candle_core::Result<Self::Norm>;
    /// A table of `n` embeddings of `size` (weight `weight`).
    fn embedding(n: usize, size: usize, vb: VarBuilder) -> candle_core::Result<Self::Embedding>;
    /// Causal self-attention of (B, H, T, head size) queries, keys and values.
    fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Tensor>;
    /// GELU, tanh form (GPT-2's).
    fn gelu(x: &Tensor) -> candle_core::Result<Tensor>;
    /// Mean cross-entropy of (N, V) logits against (N,) `u32` targets.
    fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor>;
}

/// candle's ops that have a backward pass: `ops::layer_norm_slow`, `ops::softmax`,
/// `loss::cross_entropy`, candle-nn's `Linear` and `Embedding`. Never candle-nn's fast
/// `LayerNorm` or `softmax_last_dim`: they have no backward, and nothing before the last
/// layer would train.
pub struct Reference;

/// `lightning::nn`'s layers and functions: `Linear`, `LayerNorm`, `Embedding`, the fused
/// causal `scaled_dot_product_attention`, `gelu_tanh` and the fused `cross_entropy`.
pub struct Fast;

/// A LayerNorm through `candle_nn::ops::layer_norm_slow` (with gradients).
#[derive(Relocate)]
pub struct SlowLayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl SlowLayerNorm {
    fn new(size: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let weight = vb.get_with_hints(size, "weight", Init::Const(1.0))?;
        Ok(SlowLayerNorm { weight, bias: vb.get_with_hints(size, "bias", Init::Const(0.0))? })
    }
}

impl Module for SlowLayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, 1e-5)
    }
}

/// Attention as tensor ops: `softmax(q kᵀ / √d + causal mask) v`, with a softmax over the
/// last dimension.
fn composed_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    softmax: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Tensor> {
    let (t, hd) = (q.dim(2)?, q.dim(3)?);
    let mask: Vec<f32> = (0..t * t).map(|i| if i % t > i / t { f32::NEG_INFINITY } else { 0.0 }).collect();
    let mask = Tensor::from_vec(mask, (t, t), q.device())?.to_dtype(q.dtype())?;
    let att = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?.broadcast_add(&mask)?;
    softmax(&att)?.matmul(v)
}

impl Kernels for Reference {
    type Linear = candle_nn::Linear;
    type Norm = SlowLayerNorm;
    type Embedding = candle_nn::Embedding;
    fn linear(inp: usize, out: usize, bias: bool, vb: VarBuilder) -> candle_core::Result<Self::Linear> {
        if bias {
            candle_nn::linear(inp, out, vb)
        } else {
            candle_nn::linear_no_bias(inp, out, vb)
        }
    }
    fn layer_norm(size: usize, vb: VarBuilder) -> candle_core::Result<Self::Norm> {
        SlowLayerNorm::new(size, vb)
    }
    fn embedding(n: usize, size: usize, vb: VarBuilder) -> candle_core::Result<Self::Embedding> {
        candle_nn::embedding(n, size, vb)
    }
    fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
        composed_attention(q, k, v, |x| candle_nn::ops::softmax(x, D::Minus1))
    }
    fn gelu(x: &Tensor) -> candle_core::Result<Tensor> {
        x.gelu()
    }
    fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::loss::cross_entropy(logits, targets)
    }
}

impl Kernels for Fast {
    type Linear = lightning::nn::Linear;
    type Norm = lightning::nn::LayerNorm;
    type Embedding = lightning::nn::Embedding;
    fn linear(inp: usize, out: usize, bias: bool, vb: VarBuilder) -> candle_core::Result<Self::Linear> {
        if bias {
            lightning::nn::linear(inp, out, vb)
        } else {
            lightning::nn::linear_no_bias(inp, out, vb)
        }
    }
    fn layer_norm(size: usize, vb: VarBuilder) -> candle_core::Result<Self::Norm> {
        lightning::nn::layer_norm(size, 1e-5, vb)
    }
    fn embedding(n: usize, size: usize, vb: VarBuilder) -> candle_core::Result<Self::Embedding> {
        lightning::nn::embedding(n, size, vb)
    }
    fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Tensor> {
        lightning::nn::scaled_dot_product_attention(q, k, v, &lightning::nn::AttentionOptions::new().causal(true))
    }
    fn gelu(x: &Tensor) -> candle_core::Result<Tensor> {
        lightning::nn::gelu_tanh(x)
    }
    fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
        lightning::nn::cross_entropy(logits, targets)
    }
}

// ---- the model ------------------------------------------------------------------------

/// Inverted dropout with a mask from the module's generator (`None`: evaluation, no dropout).
fn dropout(x: Tensor, p: f64, rng: Option<&mut Gen>) -> candle_core::Result<Tensor> {
    let Some(rng) = rng.filter(|_| p > 0.0) else { return Ok(x) };
    // keep a value when a uniform u32 is at or above p·2³²
    let cut = (p * 4_294_967_296.0) as u64;
    let keep = (1.0 / (1.0 - p)) as f32;
    let mask: Vec<f32> =
        (0..x.elem_count()).map(|_| if u64::from(rng.random::<u32>()) < cut { 0.0 } else { keep }).collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x * mask
}

/// One pre-LN block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`, GPT-2's names.
#[derive(Relocate)]
pub struct Block<K: Kernels> {
    ln_1: K::Norm,
    c_attn: K::Linear,
    attn_proj: K::Linear,
    ln_2: K::Norm,
    c_fc: K::Linear,
    mlp_proj: K::Linear,
}

impl<K: Kernels> Block<K> {
    fn new(d: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Block {
            ln_1: K::layer_norm(d, vb.pp("ln_1"))?,
            c_attn: K::linear(d, 3 * d, true, vb.pp("attn.c_attn"))?,
            attn_proj: K::linear(d, d, true, vb.pp("attn.c_proj"))?,
            ln_2: K::layer_norm(d, vb.pp("ln_2"))?,
            c_fc: K::linear(d, 4 * d, true, vb.pp("mlp.c_fc"))?,
            mlp_proj: K::linear(4 * d, d, true, vb.pp("mlp.c_proj"))?,
        })
    }

    /// `x` is (B·T, d); returns the same shape.
    fn forward(
        &self,
        x: &Tensor,
        (b, t, heads): (usize, usize, usize),
        p: f64,
        mut rng: Option<&mut Gen>,
    ) -> candle_core::Result<Tensor> {
        let d = x.dim(1)?;
        let qkv = self.c_attn.forward(&self.ln_1.forward(x)?)?;
        // (B·T, d) → (B, H, T, d/H)
        let head = |i: usize| qkv.narrow(1, i * d, d)?.reshape((b, t, heads, d / heads))?.transpose(1, 2)?.contiguous();
        let y = K::causal_attention(&head(0)?, &head(1)?, &head(2)?)?;
        let y = y.transpose(1, 2)?.reshape((b * t, d))?;
        let x = (x + dropout(self.attn_proj.forward(&y)?, p, rng.as_deref_mut())?)?;
        let h = K::gelu(&self.c_fc.forward(&self.ln_2.forward(&x)?)?)?;
        x + dropout(self.mlp_proj.forward(&h)?, p, rng)?
    }
}

/// Token and position embeddings, the blocks, a final LayerNorm and the output layer
/// (`transformer.wte`, `transformer.wpe`, `transformer.h.N.*`, `transformer.ln_f`, `lm_head`).
#[derive(Relocate)]
pub struct Net<K: Kernels> {
    wte: K::Embedding,
    wpe: K::Embedding,
    blocks: Vec<Block<K>>,
    ln_f: K::Norm,
    lm_head: K::Linear,
    heads: usize,
    block_size: usize,
    dropout: f64,
}

impl<K: Kernels> Net<K> {
    /// The network `cfg` sizes, with its weights on `vb` under GPT-2's names.
    pub fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let (d, tf) = (cfg.n_embd, vb.pp("transformer"));
        let blocks =
            (0..cfg.n_layer).map(|i| Block::new(d, tf.pp(format!("h.{i}")))).collect::<candle_core::Result<_>>()?;
        Ok(Net {
            wte: K::embedding(cfg.vocab_size, d, tf.pp("wte"))?,
            wpe: K::embedding(cfg.block_size, d, tf.pp("wpe"))?,
            blocks,
            ln_f: K::layer_norm(d, tf.pp("ln_f"))?,
            lm_head: K::linear(d, cfg.vocab_size, false, vb.pp("lm_head"))?,
            heads: cfg.n_head,
            block_size: cfg.block_size,
            dropout: cfg.dropout,
        })
    }

    /// (B, T) `u32` character ids, T ≤ the context, to (B·T, vocabulary) logits; `rng`
    /// while training (dropout), `None` in evaluation.
    pub fn forward(&self, ids: &Tensor, mut rng: Option<&mut Gen>) -> candle_core::Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if t > self.block_size {
            candle_core::bail!("a sequence of {t} characters is longer than the context of {}", self.block_size)
        }
        let pos = self.wpe.forward(&Tensor::arange(0u32, t as u32, ids.device())?)?;
        let x = self.wte.forward(ids)?.broadcast_add(&pos)?;
        let d = x.dim(2)?;
        let mut x = dropout(x, self.dropout, rng.as_deref_mut())?.reshape((b * t, d))?;
        for block in &self.blocks {
            x = block.forward(&x, (b, t, self.heads), self.dropout, rng.as_deref_mut())?;
        }
        self.lm_head.forward(&self.ln_f.forward(&x)?)
    }

    /// `n` characters after `prompt`, sampled one at a time from the last `block_size`.
    pub fn generate(
        &self,
        prompt: &[u32],
        n: usize,
        how: &Sampling,
        rng: &mut Gen,
        device: &Device,
    ) -> candle_core::Result<Vec<u32>> {
        let mut ids = prompt.to_vec();
        for _ in 0..n {
            let ctx = &ids[ids.len().saturating_sub(self.block_size)..];
            let x = Tensor::new(ctx, device)?.unsqueeze(0)?;
            let logits = self.forward(&x, None)?;
            let last = logits.get(ctx.len() - 1)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            ids.push(how.sample(&last, rng));
        }
        Ok(ids.split_off(prompt.len()))
    }
}

/// How characters are drawn from the logits.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// Divides the logits: below 1 sharper, above 1 flatter.
    pub temperature: f64,
    /// Only the `k` likeliest (0: all).
    pub top_k: usize,
}

impl Sampling {
    fn sample(&self, logits: &[f64], rng: &mut Gen) -> u32 {
        let mut scaled: Vec<f64> = logits.iter().map(|l| l / self.temperature).collect();
        if self.top_k > 0 && self.top_k < scaled.len() {
            let mut sorted = scaled.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let kth = sorted[self.top_k - 1];
            scaled.iter_mut().filter(|l| **l < kth).for_each(|l| *l = f64::NEG_INFINITY);
        }
        let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scaled.iter().map(|l| (l - max).exp()).collect();
        let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return i as u32;
            }
            u -= w;
        }
        // rounding left `u` past the last weight: the likeliest character
        weights.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
    }
}

// ---- the corpus -----------------------------------------------------------------------

/// A text and its character vocabulary (every character of the text, sorted).
pub struct Corpus {
    /// Where the text came from, for messages.
    pub source: String,
    /// The vocabulary: every character of the text, sorted; a character's id is its index.
    pub chars: Vec<char>,
    /// The text as ids.
    pub ids: Vec<u32>,
}

impl Corpus {
    /// `text`'s vocabulary and ids; `source` says where it came from.
    pub fn new(text: &str, source: String) -> Corpus {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        let ids = text.chars().map(|c| chars.binary_search(&c).unwrap_or(0) as u32).collect();
        Corpus { source, chars, ids }
    }

    /// The embedded sample.
    pub fn embedded() -> lightning::Result<Corpus> {
        let mut text = String::new();
        for (name, gz) in SAMPLE {
            flate2::read::GzDecoder::new(gz).read_to_string(&mut text).map_err(|e| {
                lightning::Error::Data(format!("the embedded sample's `{name}` does not decompress: {e}"))
            })?;
        }
        Ok(Corpus::new(&text, "the embedded sample (Debian's fortunes-min)".into()))
    }

    /// A file, or a directory's files without an extension (fortune's data files; the `.dat`
    /// indexes and `.u8` links are skipped), in name order. Invalid UTF-8 becomes U+FFFD.
    pub fn load(path: &Path) -> lightning::Result<Corpus> {
        let io = |p: &Path, e: std::io::Error| lightning::Error::Data(format!("cannot read {}: {e}", p.display()));
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_none())
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        let mut text = String::new();
        for f in &files {
            text.push_str(&String::from_utf8_lossy(&std::fs::read(f).map_err(|e| io(f, e))?));
        }
        let source = format!("{} ({} file{})", path.display(), files.len(), if files.len() == 1 { "" } else { "s" });
        Ok(Corpus::new(&text, source))
    }

    /// The text of `ids`; an id outside the vocabulary becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().map(|&i| self.chars.get(i as usize).copied().unwrap_or('\u{FFFD}')).collect()
    }

    /// Ids of `text`'s characters; a character the corpus lacks is an error naming it.
    pub fn encode(&self, text: &str) -> lightning::Result<Vec<u32>> {
        text.chars()
            .map(|c| {
                self.chars.binary_search(&c).map(|i| i as u32).map_err(|_| {
                    lightning::Error::msg(format!("the prompt's character {c:?} is not in the corpus's vocabulary"))
                })
            })
            .collect()
    }
}

/// Non-overlapping windows of `t` inputs and their next characters: (N, T) `u32` each.
fn windows(ids: &[u32], t: usize, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let n = ids.len().saturating_sub(1) / t;
    let x: Vec<u32> = (0..n).flat_map(|i| ids[i * t..i * t + t].iter().copied()).collect();
    let y: Vec<u32> = (0..n).flat_map(|i| ids[i * t + 1..i * t + t + 1].iter().copied()).collect();
    Ok((Tensor::from_vec(x, (n, t), device)?, Tensor::from_vec(y, (n, t), device)?))
}

/// Validation losses (nats per character) of a unigram and a bigram model counted on the
/// training text (add-one smoothing), over the validation windows' (input, target) pairs,
/// the very positions the model's `val_loss` averages.
pub fn baselines(train: &[u32], val_x: &[u32], val_y: &[u32], vocab: usize) -> (f64, f64) {
    let mut uni = vec![1.0f64; vocab];
    let mut bi = vec![1.0f64; vocab * vocab];
    for w in train.windows(2) {
        uni[w[1] as usize] += 1.0;
        bi[w[0] as usize * vocab + w[1] as usize] += 1.0;
    }
    let uni_total: f64 = uni.iter().sum();
    let rows: Vec<f64> = bi.chunks(vocab).map(|r| r.iter().sum()).collect();
    let n = val_y.len() as f64;
    let unigram = -val_y.iter().map(|&c| (uni[c as usize] / uni_total).ln()).sum::<f64>() / n;
    let bigram = -val_x
        .iter()
        .zip(val_y)
        .map(|(&a, &c)| (bi[a as usize * vocab + c as usize] / rows[a as usize]).ln())
        .sum::<f64>()
        / n;
    (unigram, bigram)
}

// ---- the Lightning module ------------------------------------------------------------

/// The GPT as a Lightning module, on any [`Kernels`].
#[lightning_module]
pub struct Gpt<K: Kernels> {
    vars: VarMap,
    /// The network.
    pub net: Net<K>,
    #[hparams]
    config: Config,
    /// Dropout's generator, saved in checkpoints.
    rng: Gen,
    /// Turns ids back into text for the samples; `None` in the benchmark.
    chars: Option<std::sync::Arc<Corpus>>,
    /// The prompt, length and sampling of each epoch's sample (`sample_chars` 0: none).
    sample: (Vec<u32>, usize, Sampling),
    /// Each epoch's sample, as written to `<log dir>/samples.txt`.
    pub samples: Vec<String>,
}

impl<K: Kernels> Gpt<K> {
    /// The model `config` describes, its weights and dropout seeded from `config.seed`, on `device`.
    pub fn new(config: Config, device: &Device) -> lightning::Result<Self> {
        let vars = VarMap::new();
        let net = Net::new(&config, lightning::seeded_var_builder(&vars, config.seed, DType::F32, device))?;
        let rng = Gen::seed_from_u64(config.seed);
        let sample = (Vec::new(), 0, Sampling { temperature: 1.0, top_k: 0 });
        Ok(Gpt { vars, net, config, rng, chars: None, sample, samples: Vec::new() })
    }

    /// The generator of epoch `epoch`'s sample and of predictions: apart from dropout's, so
    /// sampling never changes what training draws.
    fn sampling_rng(&self, epoch: usize) -> Gen {
        Gen::seed_from_u64(self.config.seed ^ 0x5eed_0000_0000 ^ epoch as u64)
    }
}

#[lightning_module]
impl<K: Kernels> Gpt<K> {
    fn training_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<Tensor> {
        let logits = self.net.forward(&batch.0, Some(&mut self.rng))?;
        let loss = K::cross_entropy(&logits, &batch.1.flatten_all()?)?;
        // the step's value in the bar, the epoch's mean as `train_loss_epoch`
        trainer.log_with("train_loss", &loss, Log::new().prog_bar(true).on_epoch(true))?;
        Ok(loss)
    }

    fn validation_step(&mut self, batch: &(Tensor, Tensor), trainer: &mut TrainerState) -> lightning::Result<()> {
        let logits = self.net.forward(&batch.0, None)?;
        let loss = K::cross_entropy(&logits, &batch.1.flatten_all()?)?;
        trainer.log_with("val_loss", loss, Log::new().prog_bar(true))?;
        Ok(())
    }

    /// Generates from the batch's prompt (its first row) with the module's sampling.
    fn predict_step(&mut self, batch: &(Tensor, Tensor)) -> lightning::Result<Vec<u32>> {
        let prompt = batch.0.get(0)?.to_vec1::<u32>()?;
        let mut rng = self.sampling_rng(usize::MAX);
        Ok(self.net.generate(&prompt, batch.1.dim(1)?, &self.sample.2, &mut rng, batch.0.device())?)
    }

    /// A sample of the model's text each epoch, printed and appended to `<log dir>/samples.txt`.
    fn on_train_epoch_end(&mut self, trainer: &mut TrainerState) -> lightning::Result<()> {
        let (Some(chars), (prompt, n @ 1.., how)) = (&self.chars, &self.sample) else { return Ok(()) };
        let mut rng = self.sampling_rng(trainer.current_epoch());
        let ids = self.net.generate(prompt, *n, how, &mut rng, trainer.device())?;
        let text = format!("{}{}", chars.decode(prompt), chars.decode(&ids));
        if trainer.is_global_zero() {
            println!("--- sample after epoch {} ---\n{text}\n---", trainer.current_epoch());
            if let Some(dir) = trainer.log_dir() {
                use std::io::Write;
                let path = dir.join("samples.txt");
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
                writeln!(f, "--- epoch {} (step {}) ---\n{text}", trainer.current_epoch(), trainer.global_step())?;
            }
        }
        self.samples.push(text);
        Ok(())
    }

    fn on_save_checkpoint(&mut self, checkpoint: &mut Checkpoint) {
        checkpoint.extra.insert(RNG_KEY.into(), rng_state(&self.rng));
    }

    fn on_load_checkpoint(&mut self, checkpoint: &mut Checkpoint) -> lightning::Result<()> {
        match checkpoint.extra.get(RNG_KEY) {
            Some(state) => self.rng = rng_from_state(state)?,
            None => eprintln!("warning: the checkpoint has no `{RNG_KEY}`: dropout restarts from the seed, so this resume is not exact"),
        }
        Ok(())
    }

    /// AdamW (β = 0.9, 0.99 as nanoGPT's char model) and OneCycleLR over every step of the
    /// fit: 10% warm-up from lr/25, then a cosine decay.
    fn configure_optimizers(
        &mut self,
        trainer: &mut TrainerState,
    ) -> lightning::Result<(AdamW, OneCycleLr, SchedulerConfig)> {
        let cfg = AdamWConfig {
            lr: self.config.lr,
            beta2: 0.99,
            weight_decay: self.config.weight_decay,
            ..Default::default()
        };
        let steps = trainer.estimated_stepping_batches()?;
        // the warm-up spans more than one step: with pct_start·steps ≤ 1 the first phase
        // has no length and OneCycleLR's rate is 0/0 (torch raises ZeroDivisionError there)
        let warmup = (0.1f64).max(1.5 / steps.max(2) as f64);
        let schedule = OneCycleLr::new(self.config.lr, steps).pct_start(warmup).cycle_momentum(false);
        Ok((AdamW::new(&self.vars, cfg)?, schedule, SchedulerConfig::every_step()))
    }
}

const RNG_KEY: &str = "dropout_rng";

/// The generator's seed, stream and position (a string: JSON numbers stop at 64 bits).
fn rng_state(rng: &Gen) -> serde_json::Value {
    let seed: String = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
    serde_json::json!({ "seed": seed, "stream": rng.get_stream(), "word_pos": rng.get_word_pos().to_string() })
}

fn rng_from_state(v: &serde_json::Value) -> lightning::Result<Gen> {
    let bad = || lightning::Error::msg(format!("checkpoint `{RNG_KEY}` is malformed: {v}"));
    let hex = v["seed"].as_str().filter(|s| s.len() == 64 && s.is_ascii()).ok_or_else(bad)?;
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    let mut rng = Gen::from_seed(seed);
    rng.set_stream(v["stream"].as_u64().ok_or_else(bad)?);
    rng.set_word_pos(v["word_pos"].as_str().and_then(|s| s.parse().ok()).ok_or_else(bad)?);
    Ok(rng)
}

// ---- the run -------------------------------------------------------------------------

/// Prints one line per epoch: losses against the baselines, and time.
pub struct EpochSummary {
    started: Option<Instant>,
    baselines: (f64, f64),
    /// The lines printed so far, one per epoch.
    pub lines: Vec<String>,
    /// Each finished epoch's validation loss, unrounded.
    pub val_losses: Vec<f64>,
}

#[callback]
impl EpochSummary {
    fn on_train_epoch_start(&mut self) {
        self.started = Some(Instant::now());
    }

    fn on_train_epoch_end(&mut self, trainer: &TrainerState) -> lightning::Result<()> {
        let get = |k| trainer.metric(k).map(|v| v.unwrap_or(f64::NAN));
        let (val, secs) = (get("val_loss")?, self.started.map_or(0.0, |t| t.elapsed().as_secs_f64()));
        let (uni, bi) = self.baselines;
        let line = format!(
            "epoch {:>2}  train_loss {:.4}  val_loss {val:.4}  (unigram {uni:.4}, bigram {bi:.4})  {secs:.1}s",
            trainer.current_epoch(),
            get("train_loss_epoch")?,
        );
        if trainer.is_global_zero() {
            println!("{line}");
        }
        self.lines.push(line);
        self.val_losses.push(val);
        Ok(())
    }
}

/// What a run reports.
pub struct Report {
    /// Where the text came from.
    pub data: String,
    /// Distinct characters of the text.
    pub vocab_size: usize,
    /// The model's parameter count.
    pub parameters: usize,
    /// Validation loss of the unigram baseline (nats per character).
    pub unigram: f64,
    /// Validation loss of the bigram baseline (nats per character).
    pub bigram: f64,
    /// [`EpochSummary`]'s lines.
    pub epoch_lines: Vec<String>,
    /// Each epoch's validation loss.
    pub val_losses: Vec<f64>,
    /// Each epoch's sample.
    pub samples: Vec<String>,
    /// The text generated from `--prompt` after training (the prompt not included).
    pub generated: String,
    /// The fit's last checkpoint (`None` with `--predict-only`).
    pub last_checkpoint: Option<PathBuf>,
    /// The model's final weights, by name.
    pub weights: Vec<(String, Tensor)>,
}

fn accelerator(name: &str) -> lightning::Result<Accelerator> {
    Ok(match name {
        "auto" => Accelerator::Auto,
        "cpu" => Accelerator::Cpu,
        "cuda" => Accelerator::Cuda(0),
        "metal" => Accelerator::Metal(0),
        other => {
            return Err(lightning::Error::msg(format!("unknown accelerator `{other}`: use auto, cpu, cuda or metal")))
        }
    })
}

/// The train and validation windows, or an error when the text is too short for one of each.
fn split(corpus: &Corpus, t: usize, device: &Device) -> lightning::Result<[(Tensor, Tensor); 2]> {
    let n_val = corpus.ids.len() / 10;
    let (train, val) = corpus.ids.split_at(corpus.ids.len() - n_val);
    if train.len() <= t || val.len() <= t {
        return Err(lightning::Error::Data(format!(
            "{} has {} characters: its first 90% for training and last 10% for validation each need more than the context of {t}; give a longer text or a smaller --block-size",
            corpus.source,
            corpus.ids.len()
        )));
    }
    Ok([windows(train, t, device)?, windows(val, t, device)?])
}

/// Trains on the text `args` names (unless `--predict-only`), then generates from `--prompt`.
pub fn run(args: &Args) -> lightning::Result<Report> {
    let corpus = std::sync::Arc::new(match &args.data {
        Some(path) => Corpus::load(path)?,
        None => Corpus::embedded()?,
    });
    let config = Config::from_args(args, corpus.chars.len())?;
    let mut builder = Trainer::builder()
        .max_epochs(args.epochs)
        .accelerator(accelerator(&args.accelerator)?)
        .default_root_dir(&args.root_dir)
        .checkpoint(
            ModelCheckpoint::new().monitor("val_loss").mode(Mode::Min).save_top_k(args.save_top_k).save_last(true),
        );
    if let Some(n) = args.limit_train_batches {
        builder = builder.limit_train_batches(n);
    }
    // windows on the host (the baselines read them); the loader moves batches to the device
    let [(tx, ty), (vx, vy)] = split(&corpus, config.block_size, &Device::Cpu)?;
    let n_val = corpus.ids.len() / 10;
    let train_ids = &corpus.ids[..corpus.ids.len() - n_val];
    let baselines =
        baselines(train_ids, &vx.flatten_all()?.to_vec1()?, &vy.flatten_all()?.to_vec1()?, config.vocab_size);
    let summary = EpochSummary { started: None, baselines, lines: Vec::new(), val_losses: Vec::new() };
    let mut trainer = builder.callbacks((summary, OnExceptionCheckpoint::default())).build()?;
    if let Some(path) = &args.ckpt_path {
        trainer.ckpt_path(path.clone());
    }
    let device = trainer.device().clone();
    let mut model = Gpt::<Fast>::new(config.clone(), &device)?;
    let how = Sampling { temperature: args.temperature, top_k: args.top_k };
    let prompt = corpus.encode(&args.prompt)?;
    if prompt.is_empty() {
        return Err(lightning::Error::msg("--prompt is empty: generation starts from at least one character"));
    }
    model.chars = Some(corpus.clone());
    model.sample = (prompt.clone(), args.sample_chars, how);
    let parameters = model.vars.all_vars().iter().map(|v| v.elem_count()).sum();
    println!(
        "{}: {} characters ({} distinct); {} training and {} validation windows of {}; {parameters} parameters",
        corpus.source,
        corpus.ids.len(),
        config.vocab_size,
        tx.dim(0)?,
        vx.dim(0)?,
        config.block_size
    );
    println!(
        "validation loss of a unigram model {:.4}, of a bigram model {:.4} (nats per character)",
        baselines.0, baselines.1
    );
    let mut last_checkpoint = None;
    if !args.predict_only {
        let train = DataLoader::new(tx, ty, config.batch_size)?.shuffle(config.seed);
        let val = DataLoader::new(vx, vy, config.batch_size)?;
        last_checkpoint = trainer.fit(&mut model, Data::loader(train).val(val))?.last_checkpoint;
    }
    // predict_step reads the prompt from the batch and the length from the target's width
    let prompt_batch = (
        Tensor::new(prompt.as_slice(), &device)?.unsqueeze(0)?,
        Tensor::zeros((1, args.max_new_tokens), DType::U32, &device)?,
    );
    let predictions = trainer.predict(&mut model, Data::loader(DataLoader::new(prompt_batch.0, prompt_batch.1, 1)?))?;
    let generated = corpus.decode(predictions.first().map_or(&[][..], |p| p.as_slice()));
    let callbacks = trainer.callbacks_mut();
    Ok(Report {
        data: corpus.source.clone(),
        vocab_size: config.vocab_size,
        parameters,
        unigram: baselines.0,
        bigram: baselines.1,
        epoch_lines: std::mem::take(&mut callbacks.0.lines),
        val_losses: std::mem::take(&mut callbacks.0.val_losses),
        samples: std::mem::take(&mut model.samples),
        generated,
        last_checkpoint,
        weights: named_weights(&model.vars)?,
    })
}

/// Raises glibc's mmap threshold to 32 MiB (and the trim threshold to 64 MiB), so the
/// activation and gradient buffers of every step are reused from the heap instead of being
/// mapped, zero-filled by the kernel and unmapped on every op. Measured with `perf stat` on
/// `cargo bench --bench gpt` (BENCHMARKS.md): page faults 875k → 14k and CPU time −15% on the
/// small configuration, −9% on the example's; peak memory +2%.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread runs
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// The variables of `vars` by name, sorted.
fn named_weights(vars: &VarMap) -> lightning::Result<Vec<(String, Tensor)>> {
    let vars = vars.data().lock().map_err(|_| lightning::Error::msg("the VarMap's lock is poisoned"))?;
    let mut named: Vec<_> = vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(named)
}

#[allow(dead_code)] // the test and the benchmark include this file as a module
fn main() {
    tune_malloc();
    let args = Args::parse();
    match run(&args) {
        Ok(r) => {
            if let Some(p) = &r.last_checkpoint {
                println!("resume with: --ckpt-path {}", p.display());
            }
            println!("generated from {:?}:\n{}{}", args.prompt, args.prompt, r.generated);
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
